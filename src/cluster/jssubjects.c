/* jssubjects.c - owner periods and consents in a NATS JetStream KV bucket (jssubjects.h).
 *
 * Unlike the keys bucket, entries here are never deleted or purged (an erasure is a value:
 * forgotten rows), so nats.c's kvStore_Get/Create/Update serve: a create fails on any
 * existing entry, an update on any revision but the one read (P4); the connection, the
 * bucket followed in sequence (no kvWatcher, whose consumer nats-server 2.9 may place on a
 * dead server) and the thread's rounds are kvsync.h's. The catalog side is privacy/subjects_rows.h;
 * what is in sync is remembered per entry as the hash of its plaintext, so a round that finds the
 * catalog changed (PRAGMA data_version) publishes only the entries whose rows differ from what was
 * last synced.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

#include "cluster/jskeys.h"
#include "cluster/jssubjects.h"
#include "cluster/kvbytes.h"
#include "cluster/kvsync.h"
#include "cluster/natsconn.h"
#include "util/err.h"
#include "util/log.h"
#include "util/map.h"

#define CAS_TRIES 3

struct fv_jssubjects {
    const struct fv_cluster_cfg *cfg;
    struct fv_kek kek;
    struct fv_kvsync sync;  /* P1, P2: connection, bucket, thread (kvsync.h) */
    struct fv_keystore *ks; /* the sync's own catalog connection */
    struct fv_keysource keys;
    struct fv_map synced; /* entry key -> hash of the plaintext last in sync (P4) */
    void (*changed)(void *arg);
    void *changed_arg;
};

/* ---- values -------------------------------------------------------------------------------- */

int fv_jssubjects_periods_pt(const struct fv_period_row *rows, size_t n, struct fv_buf *out)
{
    int rc = fv_kvb_put_be(out, n, 2);
    for (size_t i = 0; rc == FV_OK && i < n; i++) {
        const struct fv_period_row *r = &rows[i];
        rc = fv_kvb_put_be(out, (uint32_t)r->epoch, 4);
        if (rc == FV_OK) rc = fv_buf_append(out, r->subject, FV_PSEUDONYM_LEN);
        if (rc == FV_OK) rc = fv_kvb_put_be(out, (uint64_t)r->since, 8);
        if (rc == FV_OK) rc = fv_kvb_put_be(out, (uint64_t)r->until, 8);
        if (rc == FV_OK) rc = fv_kvb_put_be(out, (uint64_t)r->forgotten, 8);
        if (rc == FV_OK) rc = fv_kvb_put_be(out, r->owner_len, 2);
        if (rc == FV_OK) rc = fv_buf_append(out, r->owner, r->owner_len);
    }
    return rc;
}

int fv_jssubjects_consents_pt(const struct fv_consent_rows *c, struct fv_buf *out)
{
    size_t n = c->forgotten ? 0 : c->n;
    int rc = fv_kvb_put_be(out, c->forgotten ? 1 : 0, 1);
    if (rc == FV_OK) rc = fv_kvb_put_be(out, n, 4);
    for (size_t i = 0; rc == FV_OK && i < n; i++) {
        const struct fv_consent_row *r = &c->v[i];
        rc = fv_kvb_put_be(out, r->granted ? 1 : 0, 1);
        if (rc == FV_OK) rc = fv_kvb_put_be(out, (uint64_t)r->at, 8);
        if (rc == FV_OK) rc = fv_kvb_put_str(out, r->purpose);
        if (rc == FV_OK) rc = fv_kvb_put_str(out, r->by);
    }
    return rc;
}

/* A plaintext wiped (owner ids sealed, but consents and periods are personal data) and freed. */
static void pt_free(struct fv_buf *pt)
{
    if (pt->data) OPENSSL_cleanse(pt->data, pt->cap);
    fv_buf_free(pt);
}

static int encode(const struct fv_kek *kek, const char *key, char kind, const struct fv_buf *pt,
                  struct fv_buf *out)
{
    return fv_jskeys_wrap(kek, key, kind, pt->data, pt->len, out);
}

int fv_jssubjects_encode_periods(const struct fv_kek *kek, const char *key,
                                 const struct fv_period_row *rows, size_t n, struct fv_buf *out)
{
    struct fv_buf pt = {0};
    int rc = fv_jssubjects_periods_pt(rows, n, &pt);
    if (rc == FV_OK) rc = encode(kek, key, FV_JSSUBJ_KIND_PERIODS, &pt, out);
    pt_free(&pt);
    return rc;
}

int fv_jssubjects_encode_consents(const struct fv_kek *kek, const char *key,
                                  const struct fv_consent_rows *c, struct fv_buf *out)
{
    struct fv_buf pt = {0};
    int rc = fv_jssubjects_consents_pt(c, &pt);
    if (rc == FV_OK) rc = encode(kek, key, FV_JSSUBJ_KIND_CONSENTS, &pt, out);
    pt_free(&pt);
    return rc;
}

static int is_hex_pseudo(const char *s)
{
    return fv_pseudonym_valid(s, strlen(s));
}

/* S1 over decoded rows; 0 if they keep it. */
static int s1_broken(const struct fv_period_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct fv_period_row *r = &rows[i];
        if (r->epoch != (int)i + 1 || (i == 0 && r->since != FV_SUBJECT_ORIGIN) ||
            (i > 0 && r->since != rows[i - 1].until) ||
            ((i + 1 == n) != (r->until == FV_SUBJECT_FOREVER)) || r->until <= r->since ||
            !is_hex_pseudo(r->subject) || r->forgotten < 0)
            return 1;
    }
    return 0;
}

static int unwrap(const struct fv_kek *kek, const char *key, char kind, const unsigned char *v,
                  size_t len, struct fv_buf *pt, char *err, size_t errlen)
{
    return fv_jskeys_unwrap(kek, key, kind, v, len, pt, err, errlen);
}

int fv_jssubjects_decode_periods(const struct fv_kek *kek, const char *key, const unsigned char *v,
                                 size_t len, struct fv_period_row *rows, size_t cap, size_t *n,
                                 char *err, size_t errlen)
{
    struct fv_buf pt = {0};
    *n = 0;
    int rc = unwrap(kek, key, FV_JSSUBJ_KIND_PERIODS, v, len, &pt, err, errlen);
    if (rc) {
        pt_free(&pt);
        return rc;
    }
    struct fv_kvb_rd r = {.p = pt.data, .n = pt.len};
    size_t cnt = (size_t)fv_kvb_get_be(&r, 2);
    if (cnt > cap || cnt == 0) r.bad = 1;
    for (size_t i = 0; !r.bad && i < cnt; i++) {
        struct fv_period_row *x = &rows[i];
        memset(x, 0, sizeof *x);
        x->epoch = (int)fv_kvb_get_be(&r, 4);
        const unsigned char *s = fv_kvb_get_bytes(&r, FV_PSEUDONYM_LEN);
        if (s) memcpy(x->subject, s, FV_PSEUDONYM_LEN);
        x->since = (int64_t)fv_kvb_get_be(&r, 8);
        x->until = (int64_t)fv_kvb_get_be(&r, 8);
        x->forgotten = (int64_t)fv_kvb_get_be(&r, 8);
        x->owner_len = (size_t)fv_kvb_get_be(&r, 2);
        if (x->owner_len > sizeof x->owner || (x->owner_len && x->forgotten)) r.bad = 1;
        const unsigned char *o = fv_kvb_get_bytes(&r, r.bad ? 0 : x->owner_len);
        if (o && x->owner_len) memcpy(x->owner, o, x->owner_len);
    }
    if (!r.bad && (r.off != r.n || s1_broken(rows, cnt))) r.bad = 1;
    pt_free(&pt);
    if (r.bad) {
        fv_seterr(err, errlen, "KV entry %s: not a valid list of owner periods", key);
        return FV_ECORRUPT;
    }
    *n = cnt;
    return FV_OK;
}

int fv_jssubjects_decode_consents(const struct fv_kek *kek, const char *key, const unsigned char *v,
                                  size_t len, struct fv_consent_rows *out, char *err, size_t errlen)
{
    struct fv_buf pt = {0};
    out->n = 0;
    out->forgotten = 0;
    int rc = unwrap(kek, key, FV_JSSUBJ_KIND_CONSENTS, v, len, &pt, err, errlen);
    if (rc) {
        pt_free(&pt);
        return rc;
    }
    struct fv_kvb_rd r = {.p = pt.data, .n = pt.len};
    uint64_t forgotten = fv_kvb_get_be(&r, 1);
    uint64_t cnt = fv_kvb_get_be(&r, 4);
    if (forgotten > 1 || (forgotten && cnt) || cnt > pt.len) r.bad = 1;
    for (uint64_t i = 0; !r.bad && rc == FV_OK && i < cnt; i++) {
        struct fv_consent_row x = {0};
        uint64_t g = fv_kvb_get_be(&r, 1);
        x.granted = (int)g;
        x.at = (int64_t)fv_kvb_get_be(&r, 8);
        fv_kvb_get_str(&r, x.purpose, sizeof x.purpose, 0, 0x20);
        fv_kvb_get_str(&r, x.by, sizeof x.by, 1, 0x20);
        if (g > 1) r.bad = 1;
        if (!r.bad) rc = fv_consent_rows_add(out, &x);
    }
    if (!r.bad && r.off != r.n) r.bad = 1;
    pt_free(&pt);
    if (rc) return rc;
    if (r.bad) {
        out->n = 0;
        fv_seterr(err, errlen, "KV entry %s: not a valid consent history", key);
        return FV_ECORRUPT;
    }
    out->forgotten = (int)forgotten;
    return FV_OK;
}

/* ---- merge (P3) ---------------------------------------------------------------------------- */

int fv_jssubjects_merge_periods(const struct fv_period_row *a, size_t na,
                                const struct fv_period_row *b, size_t nb, struct fv_period_row *out,
                                size_t *n)
{
    size_t common = na < nb ? na : nb, longer = na > nb ? na : nb;
    int conflict = 0;
    for (size_t i = 0; i < longer && !conflict; i++) {
        if (i >= common) {
            out[i] = na > nb ? a[i] : b[i];
            continue;
        }
        const struct fv_period_row *x = &a[i], *y = &b[i];
        if (x->epoch != y->epoch || x->since != y->since || strcmp(x->subject, y->subject) != 0) {
            conflict = 1;
            break;
        }
        struct fv_period_row m = *y;
        if (x->until != y->until) {
            /* one side still has it open: the other's later epoch closed it */
            if (x->until == FV_SUBJECT_FOREVER)
                m.until = y->until;
            else if (y->until == FV_SUBJECT_FOREVER)
                m.until = x->until;
            else
                conflict = 1;
        }
        if (x->forgotten || y->forgotten) {
            m.forgotten = x->forgotten && y->forgotten
                              ? (x->forgotten < y->forgotten ? x->forgotten : y->forgotten)
                              : (x->forgotten ? x->forgotten : y->forgotten);
            m.owner_len = 0;
            memset(m.owner, 0, sizeof m.owner);
        } else if (y->owner_len == 0 && x->owner_len) {
            memcpy(m.owner, x->owner, x->owner_len);
            m.owner_len = x->owner_len;
        } else if (x->owner_len && (x->owner_len != y->owner_len ||
                                    memcmp(x->owner, y->owner, x->owner_len) != 0)) {
            conflict = 1; /* two owners recorded for one period */
        }
        out[i] = m;
    }
    if (!conflict && s1_broken(out, longer)) conflict = 1;
    if (conflict) {
        memcpy(out, b, nb * sizeof *b);
        *n = nb;
        return 1;
    }
    *n = longer;
    return 0;
}

static int same_consent(const struct fv_consent_row *x, const struct fv_consent_row *y)
{
    return x->granted == y->granted && x->at == y->at && strcmp(x->purpose, y->purpose) == 0 &&
           strcmp(x->by, y->by) == 0;
}

int fv_jssubjects_merge_consents(const struct fv_consent_rows *a, const struct fv_consent_rows *b,
                                 struct fv_consent_rows *out)
{
    out->n = 0;
    out->forgotten = a->forgotten || b->forgotten;
    if (out->forgotten) return FV_OK;
    int rc = FV_OK;
    for (size_t i = 0; rc == FV_OK && i < b->n; i++)
        rc = fv_consent_rows_add(out, &b->v[i]);
    if (rc) return rc;
    /* a's rows that b lacks (as a multiset: a repeated change counts each time) */
    unsigned char *used = calloc(b->n + 1, 1);
    if (used == NULL) return FV_ENOMEM;
    for (size_t i = 0; rc == FV_OK && i < a->n; i++) {
        size_t j = 0;
        while (j < b->n && (used[j] || !same_consent(&a->v[i], &b->v[j])))
            j++;
        if (j < b->n) {
            used[j] = 1;
            continue;
        }
        rc = fv_consent_rows_add(out, &a->v[i]);
    }
    free(used);
    /* in time order, ties as they came (insertion sort: stable; histories are short) */
    for (size_t i = 1; rc == FV_OK && i < out->n; i++) {
        struct fv_consent_row x = out->v[i];
        size_t j = i;
        while (j > 0 && out->v[j - 1].at > x.at) {
            out->v[j] = out->v[j - 1];
            j--;
        }
        out->v[j] = x;
    }
    return rc;
}

/* ---- the sync ------------------------------------------------------------------------------ */

static uint64_t pt_hash(const struct fv_buf *pt)
{
    return fv_hash64(pt->data, pt->len) | 1; /* never 0: a map value of NULL is "unknown" */
}

static int remember(struct fv_jssubjects *s, const char *key, const struct fv_buf *pt)
{
    return fv_map_put(&s->synced, key, strlen(key), (void *)(uintptr_t)pt_hash(pt));
}

static int in_sync(struct fv_jssubjects *s, const char *key, const struct fv_buf *pt)
{
    return (uint64_t)(uintptr_t)fv_map_get(&s->synced, key, strlen(key)) == pt_hash(pt);
}

/* One entry's state on both sides, merged (the work of apply and publish alike). */
struct entry {
    char key[80];
    int periods; /* else consents */
    const char *pseudo;
    struct fv_period_row *pa, *pb, *pm; /* local, bucket, merged */
    size_t na, nb, nm;
    struct fv_consent_rows ca, cb, cm;
    struct fv_buf pt_a, pt_b, pt_m;
};

static void entry_free(struct entry *e)
{
    free(e->pa);
    fv_consent_rows_free(&e->ca);
    fv_consent_rows_free(&e->cb);
    fv_consent_rows_free(&e->cm);
    fv_buf_free(&e->pt_a);
    fv_buf_free(&e->pt_b);
    fv_buf_free(&e->pt_m);
}

static int entry_init(struct entry *e, const char *key)
{
    memset(e, 0, sizeof *e);
    snprintf(e->key, sizeof e->key, "%s", key);
    size_t pl = strlen(FV_JSSUBJ_PERIODS), cl = strlen(FV_JSSUBJ_CONSENTS);
    if (strncmp(key, FV_JSSUBJ_PERIODS, pl) == 0 && is_hex_pseudo(key + pl)) {
        e->periods = 1;
        e->pseudo = e->key + pl;
        e->pa = calloc(3 * FV_PERIOD_ROWS_MAX, sizeof *e->pa);
        if (e->pa == NULL) return FV_ENOMEM;
        e->pb = e->pa + FV_PERIOD_ROWS_MAX;
        e->pm = e->pb + FV_PERIOD_ROWS_MAX;
        return FV_OK;
    }
    if (strncmp(key, FV_JSSUBJ_CONSENTS, cl) == 0 && is_hex_pseudo(key + cl)) {
        e->pseudo = e->key + cl;
        return FV_OK;
    }
    return FV_EINVAL;
}

static int entry_local(struct fv_jssubjects *s, struct entry *e)
{
    int rc = e->periods ? fv_period_rows_get(s->ks, e->pseudo, e->pa, FV_PERIOD_ROWS_MAX, &e->na)
                        : fv_consent_rows_get(s->ks, e->pseudo, &e->ca);
    fv_buf_reset(&e->pt_a);
    if (rc == FV_OK)
        rc = e->periods ? fv_jssubjects_periods_pt(e->pa, e->na, &e->pt_a)
                        : fv_jssubjects_consents_pt(&e->ca, &e->pt_a);
    return rc;
}

/* The bucket's value v (NULL: none) decoded, and merged with the local rows (P3). */
static int entry_merge(struct fv_jssubjects *s, struct entry *e, const unsigned char *v, size_t len)
{
    char err[256];
    int rc = FV_OK, conflict = 0;
    e->nb = 0;
    e->cb.n = 0;
    e->cb.forgotten = 0;
    if (v && e->periods)
        rc = fv_jssubjects_decode_periods(&s->kek, e->key, v, len, e->pb, FV_PERIOD_ROWS_MAX,
                                          &e->nb, err, sizeof err);
    else if (v)
        rc = fv_jssubjects_decode_consents(&s->kek, e->key, v, len, &e->cb, err, sizeof err);
    if (rc == FV_ECORRUPT) {
        fv_error("cluster: %s; ignored", err); /* names the entry (pseudonyms only) */
        fv_kvsync_count(&s->sync.stats.malformed);
    }
    if (rc) return rc;
    fv_buf_reset(&e->pt_b);
    fv_buf_reset(&e->pt_m);
    if (e->periods) {
        if (v == NULL) {
            memcpy(e->pm, e->pa, e->na * sizeof *e->pa);
            e->nm = e->na;
        } else if (e->na == 0) {
            memcpy(e->pm, e->pb, e->nb * sizeof *e->pb);
            e->nm = e->nb;
        } else {
            conflict = fv_jssubjects_merge_periods(e->pa, e->na, e->pb, e->nb, e->pm, &e->nm);
        }
        rc = fv_jssubjects_periods_pt(e->pb, e->nb, &e->pt_b);
        if (rc == FV_OK) rc = fv_jssubjects_periods_pt(e->pm, e->nm, &e->pt_m);
    } else {
        rc = fv_jssubjects_merge_consents(&e->ca, &e->cb, &e->cm);
        if (rc == FV_OK) rc = fv_jssubjects_consents_pt(&e->cb, &e->pt_b);
        if (rc == FV_OK) rc = fv_jssubjects_consents_pt(&e->cm, &e->pt_m);
    }
    if (conflict) {
        fv_error("cluster: KV entry %s: owner periods that differ from this node's (two owner "
                 "changes made at once on two nodes?); the cluster's are kept here",
                 e->key);
        fv_kvsync_count(&s->sync.stats.conflicts);
    }
    return rc;
}

static int same_pt(const struct fv_buf *x, const struct fv_buf *y)
{
    return x->len == y->len && (x->len == 0 || memcmp(x->data, y->data, x->len) == 0);
}

/* The merged rows into the catalog when they differ from the local ones. */
static int entry_apply_local(struct fv_jssubjects *s, struct entry *e, int *changed)
{
    if (same_pt(&e->pt_a, &e->pt_m) && !(!e->periods && e->ca.stale)) return FV_OK;
    char err[256] = "";
    int rc = e->periods ? fv_period_rows_put(s->ks, e->pseudo, e->pm, e->nm, err, sizeof err)
                        : fv_consent_rows_put(s->ks, e->pseudo, &e->cm, err, sizeof err);
    if (rc) {
        fv_error("cluster: KV entry %s not applied to this catalog: %s", e->key,
                 err[0] ? err : fv_strerror(rc));
        return rc;
    }
    /* (the connection's own commits do not change its PRAGMA data_version: not republished) */
    fv_info("cluster: KV entry %s applied to this catalog", e->key); /* pseudonyms only */
    fv_kvsync_count(&s->sync.stats.applied);
    *changed = 1;
    return FV_OK;
}

/* P4: the data keys of the periods' subjects into the keys bucket before the periods. */
static int push_keys(struct fv_jssubjects *s, const struct entry *e)
{
    for (size_t i = 0; e->periods && i < e->nm; i++) {
        const unsigned char *dek;
        const char *name;
        if (e->pm[i].forgotten ||
            fv_keystore_subject(s->ks, e->pm[i].subject, &dek, &name) != FV_OK)
            continue; /* erased, or not made here: the node that made it put it there */
        unsigned char k[FV_KEY_LEN];
        char n[FV_NAME_MAX + 1];
        memcpy(k, dek, FV_KEY_LEN);
        snprintf(n, sizeof n, "%s", name);
        int rc = s->keys.subject(s->keys.arg, e->pm[i].subject, 1, k, n);
        int same = rc == FV_OK && memcmp(k, dek, FV_KEY_LEN) == 0;
        OPENSSL_cleanse(k, sizeof k);
        OPENSSL_cleanse(n, sizeof n);
        if (rc == FV_ESTATE) continue; /* erased in the cluster: the period says so next */
        if (rc) return rc;
        if (!same) {
            fv_error("cluster: subject %s: the keys bucket holds another data key than this "
                     "catalog; its owner period is not published",
                     e->pm[i].subject);
            return FV_ESTATE;
        }
    }
    return FV_OK;
}

/* P4: the merged value written over revision rev (0: a new entry). FV_OK, FV_EAGAIN (the
 * entry changed meanwhile), FV_EIO. */
static int entry_write(struct fv_jssubjects *s, struct entry *e, uint64_t rev)
{
    int rc = push_keys(s, e);
    if (rc) return rc;
    struct fv_buf v = {0};
    rc = e->periods ? fv_jssubjects_encode_periods(&s->kek, e->key, e->pm, e->nm, &v)
                    : fv_jssubjects_encode_consents(&s->kek, e->key, &e->cm, &v);
    if (rc) {
        fv_buf_free(&v);
        return rc;
    }
    rc = fv_kvsync_put(&s->sync, e->key, &v, rev);
    fv_buf_free(&v);
    return rc;
}

/* An entry brought in sync both ways from the bucket's value v at revision rev (NULL, 0:
 * read it). The loser of a race reads again (P4). */
static int sync_entry(struct fv_jssubjects *s, const char *key, const unsigned char *v, size_t len,
                      uint64_t rev, int *changed)
{
    struct entry e;
    int rc = entry_init(&e, key);
    if (rc) return rc == FV_EINVAL ? FV_OK : rc; /* not ours: left alone */
    kvEntry *ke = NULL;
    for (int tries = 0; tries < CAS_TRIES; tries++) {
        if (v == NULL || tries) {
            kvEntry_Destroy(ke);
            ke = NULL;
            natsStatus st = kvStore_Get(&ke, s->sync.kv, key);
            if (st != NATS_OK && st != NATS_NOT_FOUND) {
                fv_warn("cluster: reading KV entry %s: %s", key, natsStatus_GetText(st));
                rc = FV_EIO;
                break;
            }
            v = ke ? (const unsigned char *)kvEntry_Value(ke) : NULL;
            len = ke ? (size_t)kvEntry_ValueLen(ke) : 0;
            rev = ke ? kvEntry_Revision(ke) : 0;
        }
        rc = entry_local(s, &e);
        if (rc == FV_OK) rc = entry_merge(s, &e, v, len);
        if (rc == FV_OK) rc = entry_apply_local(s, &e, changed);
        if (rc == FV_OK && (v == NULL || !same_pt(&e.pt_b, &e.pt_m)))
            rc = entry_write(s, &e, v ? rev : 0);
        if (rc == FV_OK) rc = remember(s, key, &e.pt_m);
        if (rc != FV_EAGAIN) break;
    }
    kvEntry_Destroy(ke);
    entry_free(&e);
    if (rc && rc != FV_ECORRUPT) s->sync.dirty = 1;
    return rc;
}

/* P1: the catalog's entries that differ from what was last in sync, published. */
struct scan {
    struct fv_jssubjects *s;
    const char *prefix;
    char (*keys)[80];
    size_t n, cap;
};

static int scan_one(void *arg, const char *pseudo)
{
    struct scan *sc = arg;
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? 2 * sc->cap : 64;
        char(*k)[80] = realloc(sc->keys, cap * sizeof *k);
        if (k == NULL) return FV_ENOMEM;
        sc->keys = k;
        sc->cap = cap;
    }
    snprintf(sc->keys[sc->n++], 80, "%s%s", sc->prefix, pseudo);
    return 0;
}

static int publish_changes(struct fv_jssubjects *s, int *changed)
{
    struct scan sc = {.s = s, .prefix = FV_JSSUBJ_PERIODS};
    int rc = fv_period_devices(s->ks, scan_one, &sc);
    sc.prefix = FV_JSSUBJ_CONSENTS;
    if (rc == FV_OK) rc = fv_consent_subjects(s->ks, scan_one, &sc);
    s->sync.dirty = 0;
    fv_keystore_forget(s->ks); /* keys destroyed by another connection are seen as such */
    for (size_t i = 0; rc == FV_OK && i < sc.n; i++) {
        struct entry e;
        int r = entry_init(&e, sc.keys[i]);
        if (r == FV_OK) r = entry_local(s, &e);
        int skip = r == FV_OK && in_sync(s, e.key, &e.pt_a) && !(!e.periods && e.ca.stale);
        entry_free(&e);
        if (r == FV_ENOMEM) rc = r;
        if (r || skip) continue;
        sync_entry(s, sc.keys[i], NULL, 0, 0, changed); /* failures: dirty, next round */
    }
    free(sc.keys);
    return rc;
}

/* kvsync.h ops */
static void entry_op(void *arg, const char *key, const unsigned char *v, size_t len, uint64_t rev,
                     int *changed)
{
    sync_entry(arg, key, v, len, rev, changed);
}

static int publish_op(void *arg, int *changed)
{
    return publish_changes(arg, changed);
}

static void changed_op(void *arg)
{
    struct fv_jssubjects *s = arg;
    if (s->changed) s->changed(s->changed_arg);
}

static const struct fv_kvsync_ops sync_ops = {
    .what = "owner periods and consents",
    .conn_name = "fleetvault-subjects",
    .description = "fleetvault: owner periods and consents, wrapped by the master key",
    .entry = entry_op,
    .publish = publish_op,
    .changed = changed_op,
};

int fv_jssubjects_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek,
                       const char *catalog_path, struct fv_keysource keys,
                       void (*changed)(void *arg), void *arg, struct fv_jssubjects **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    struct fv_jssubjects *s = calloc(1, sizeof *s);
    if (s == NULL) return FV_ENOMEM;
    s->cfg = cfg;
    s->kek = *kek;
    s->keys = keys;
    s->changed = changed;
    s->changed_arg = arg;
    int rc = fv_keystore_open(catalog_path, kek, &s->ks, err, errlen);
    if (rc == FV_OK)
        rc = fv_kvsync_open(&s->sync, cfg, cfg->subjects_bucket, &sync_ops, s,
                            fv_keystore_db(s->ks), err, errlen);
    if (rc) {
        fv_jssubjects_close(s);
        return rc;
    }
    *out = s;
    return FV_OK;
}

void fv_jssubjects_stats(struct fv_jssubjects *s, struct fv_kvsync_stats *out)
{
    fv_kvsync_stats(&s->sync, out);
}

void fv_jssubjects_close(struct fv_jssubjects *s)
{
    if (s == NULL) return;
    fv_kvsync_close(&s->sync); /* first: its thread uses the rest */
    fv_keystore_close(s->ks);
    fv_map_free(&s->synced);
    OPENSSL_cleanse(&s->kek, sizeof s->kek);
    free(s);
}
