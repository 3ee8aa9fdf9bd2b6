/* jszones.c - privacy zones in a NATS JetStream KV bucket (jszones.h Z6-Z9).
 *
 * Built as jsprincipals.c is: the connection, the bucket followed in sequence and the
 * thread's rounds are kvsync.h's; kvStore_Get/Create/Update serve for compare-and-set (a
 * removal is a value, entries are never deleted); what is in sync is remembered per entry as
 * a hash of its state with a bit saying whether a zone was there, so a round finds both the
 * zones that changed and those removed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>
#include <openssl/crypto.h>

#include "cluster/jskeys.h"
#include "cluster/jszones.h"
#include "cluster/kvbytes.h"
#include "cluster/kvsync.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/map.h"

#define CAS_TRIES 3
#define KEY_CAP   80

struct fv_jszones {
    struct fv_kek kek;
    char node[65];
    struct fv_kvsync sync;  /* Z6: connection, bucket, thread (kvsync.h) */
    struct fv_keystore *ks; /* the sync's own catalog connection */
    struct fv_map synced;   /* entry key -> state hash << 1 | a zone was there */
};

/* ---- values -------------------------------------------------------------------------------- */

void fv_jszones_key(const char *pseudo, const char *label, char *key, size_t cap)
{
    snprintf(key, cap, "%s%s.%s", FV_JSZONE_PREFIX, pseudo, label);
}

int fv_jszones_encode(const struct fv_kek *kek, const struct fv_jszone *z, const char *node,
                      struct fv_buf *out)
{
    char key[KEY_CAP];
    fv_jszones_key(z->pseudo, z->label, key, sizeof key);
    struct fv_buf pt = {0};
    int rc = fv_kvb_put_be(&pt, 1, 1);
    if (rc == FV_OK) rc = fv_kvb_put_be(&pt, z->removed ? 1 : 0, 1);
    if (rc == FV_OK) rc = fv_kvb_put_be(&pt, (uint64_t)z->ms, 8);
    if (rc == FV_OK) rc = fv_kvb_put_be(&pt, z->removed ? 0 : z->len, 2);
    if (rc == FV_OK && !z->removed) rc = fv_buf_append(&pt, z->blob, z->len);
    if (rc == FV_OK) rc = fv_kvb_put_str(&pt, node);
    if (rc == FV_OK) rc = fv_jskeys_wrap(kek, key, FV_JSZONE_KIND, pt.data, pt.len, out);
    fv_buf_free(&pt); /* sealed bytes only: nothing in clear */
    return rc;
}

/* The pseudonym and label an entry key names, into z; 0 if key is not zone.PSEUDONYM.LABEL. */
static int key_parse(const char *key, struct fv_jszone *z)
{
    size_t pl = strlen(FV_JSZONE_PREFIX);
    if (strncmp(key, FV_JSZONE_PREFIX, pl) != 0) return 0;
    const char *rest = key + pl, *dot = strchr(rest, '.');
    if (dot == NULL || !fv_pseudonym_valid(rest, (size_t)(dot - rest)) ||
        !fv_zone_label_valid(dot + 1))
        return 0;
    memcpy(z->pseudo, rest, FV_PSEUDONYM_LEN);
    z->pseudo[FV_PSEUDONYM_LEN] = '\0';
    snprintf(z->label, sizeof z->label, "%s", dot + 1);
    return 1;
}

int fv_jszones_decode(const struct fv_kek *kek, const char *key, const unsigned char *v, size_t n,
                      struct fv_jszone *z, char node[65], char *err, size_t errlen)
{
    memset(z, 0, sizeof *z);
    node[0] = '\0';
    if (!key_parse(key, z)) {
        fv_seterr(err, errlen, "KV entry %s: not a privacy zone's entry", key);
        return FV_ECORRUPT;
    }
    struct fv_buf pt = {0};
    int rc = fv_jskeys_unwrap(kek, key, FV_JSZONE_KIND, v, n, &pt, err, errlen);
    if (rc) {
        fv_buf_free(&pt);
        return rc;
    }
    struct fv_kvb_rd r = {.p = pt.data, .n = pt.len};
    int version = (int)fv_kvb_get_be(&r, 1);
    z->removed = (int)fv_kvb_get_be(&r, 1);
    z->ms = (int64_t)fv_kvb_get_be(&r, 8);
    z->len = (size_t)fv_kvb_get_be(&r, 2);
    const unsigned char *b = z->len <= sizeof z->blob ? fv_kvb_get_bytes(&r, z->len) : NULL;
    if (b) memcpy(z->blob, b, z->len);
    fv_kvb_get_str(&r, node, 65, 0, 0x21);
    if (r.bad || b == NULL || r.off != r.n || version != 1 || z->removed > 1 || z->ms <= 0 ||
        (z->removed ? z->len != 0 : z->len == 0)) {
        fv_buf_free(&pt);
        memset(z, 0, sizeof *z);
        node[0] = '\0';
        fv_seterr(err, errlen, "KV entry %s: not a valid privacy zone", key);
        return FV_ECORRUPT;
    }
    fv_buf_free(&pt);
    return FV_OK;
}

int fv_jszones_winner(const struct fv_jszone *a, const struct fv_jszone *b)
{
    if (a->ms != b->ms) return a->ms < b->ms;
    if (a->removed != b->removed) return b->removed;
    if (a->removed) return 0;
    if (a->len != b->len) return b->len < a->len;
    return memcmp(b->blob, a->blob, a->len) < 0;
}

static int same_state(const struct fv_jszone *x, const struct fv_jszone *y)
{
    return x->removed == y->removed && x->ms == y->ms && x->len == y->len &&
           memcmp(x->blob, y->blob, x->len) == 0;
}

/* What is remembered as in sync: never 0 (a map value), bit 0 set when a zone was there. */
static uintptr_t state_mark(const struct fv_jszone *z)
{
    unsigned char h[8 + 1 + FV_ZONE_ROW_MAX];
    memcpy(h, &z->ms, 8);
    h[8] = (unsigned char)z->removed;
    memcpy(h + 9, z->blob, z->len);
    uint64_t v = fv_hash64(h, 9 + z->len);
    return (uintptr_t)((v | 1) << 1 | (z->removed ? 0 : 1));
}

/* ---- the sync ------------------------------------------------------------------------------ */

/* This catalog's state of the entry: its row, or a removal seen now (it was in sync as a zone,
 * its row is gone). 1: there is one; 0: none; negative: an error. */
static int local_state(struct fv_jszones *s, const char *key, struct fv_jszone *a)
{
    struct fv_buf blob = {0};
    char err[256];
    int rc = fv_zone_row_get(s->ks, a->pseudo, a->label, &blob, &a->ms, err, sizeof err);
    if (rc == FV_OK && blob.len <= sizeof a->blob) {
        memcpy(a->blob, blob.data, blob.len);
        a->len = blob.len;
        a->removed = 0;
    }
    fv_buf_free(&blob);
    if (rc == FV_OK) return a->len ? 1 : FV_ECORRUPT;
    if (rc != FV_ENOENT) {
        fv_warn("cluster: privacy zone %s: %s", key, err);
        return rc;
    }
    uintptr_t m = (uintptr_t)fv_map_get(&s->synced, key, strlen(key));
    if ((m & 1) == 0) return 0;
    a->removed = 1; /* Z6: removed here since it was in sync */
    a->len = 0;
    a->ms = (int64_t)fv_now_ms();
    return 1;
}

/* Z7: the catalog takes m (a had one, or not: have_a). */
static int apply_local(struct fv_jszones *s, const struct fv_jszone *a, int have_a,
                       const struct fv_jszone *m, const char *from)
{
    char err[256] = "";
    int rc = FV_OK;
    if (m->removed) {
        if (!have_a || a->removed) return FV_OK; /* no row here */
        rc = fv_zone_row_delete(s->ks, m->pseudo, m->label, err, sizeof err);
    } else {
        struct fv_zone_row r = {.blob = m->blob, .len = m->len, .created_ms = m->ms};
        memcpy(r.pseudo, m->pseudo, sizeof r.pseudo);
        memcpy(r.label, m->label, sizeof r.label);
        rc = fv_zone_row_put(s->ks, &r, err, sizeof err);
    }
    if (rc) {
        fv_error("cluster: privacy zone %s of subject %s not applied to this catalog: %s", m->label,
                 m->pseudo, err);
        return rc;
    }
    fv_info("cluster: privacy zone %s of subject %s %s in this catalog, from node %s", m->label,
            m->pseudo, m->removed ? "removed" : "set", from);
    fv_kvsync_count(&s->sync.stats.applied);
    return FV_OK;
}

static int entry_write(struct fv_jszones *s, const char *key, const struct fv_jszone *m,
                       uint64_t rev)
{
    struct fv_buf v = {0};
    int rc = fv_jszones_encode(&s->kek, m, s->node, &v);
    if (rc) {
        fv_buf_free(&v);
        return rc;
    }
    rc = fv_kvsync_put(&s->sync, key, &v, rev);
    fv_buf_free(&v);
    return rc;
}

/* An entry brought in sync both ways from the bucket's value v at revision rev (NULL: read
 * it). key is the whole KV key. */
static int sync_entry(struct fv_jszones *s, const char *key, const unsigned char *v, size_t len,
                      uint64_t rev)
{
    struct fv_jszone a, b, m, named;
    char from[65], err[256];
    if (!key_parse(key, &named)) return FV_OK; /* not a zone's entry */
    kvEntry *ke = NULL;
    int rc = FV_OK;
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
        memset(&a, 0, sizeof a);
        memcpy(a.pseudo, named.pseudo, sizeof a.pseudo);
        memcpy(a.label, named.label, sizeof a.label);
        int have_a = local_state(s, key, &a), have_b = v != NULL;
        rc = have_a < 0 ? have_a : FV_OK;
        snprintf(from, sizeof from, "%s", s->node);
        if (rc == FV_OK && have_b) {
            rc = fv_jszones_decode(&s->kek, key, v, len, &b, from, err, sizeof err);
            if (rc == FV_ECORRUPT) {
                fv_error("cluster: %s; ignored", err);
                fv_kvsync_count(&s->sync.stats.malformed);
            }
        }
        if (rc || (!have_a && !have_b)) break;
        m = have_a && have_b ? (fv_jszones_winner(&a, &b) ? b : a) : have_a ? a : b;
        if (have_b && (!have_a || !same_state(&a, &m))) rc = apply_local(s, &a, have_a, &m, from);
        if (rc == FV_OK && (!have_b || !same_state(&b, &m))) rc = entry_write(s, key, &m, rev);
        if (rc == FV_OK) rc = fv_map_put(&s->synced, key, strlen(key), (void *)state_mark(&m));
        if (rc != FV_EAGAIN) break;
    }
    kvEntry_Destroy(ke);
    OPENSSL_cleanse(&a, sizeof a);
    OPENSSL_cleanse(&b, sizeof b);
    OPENSSL_cleanse(&m, sizeof m);
    if (rc && rc != FV_ECORRUPT) s->sync.dirty = 1;
    return rc;
}

struct keys {
    char (*v)[KEY_CAP];
    size_t n, cap;
    struct fv_map here; /* the keys of the catalog's rows */
    struct fv_jszones *s;
};

static int add_key(struct keys *k, const char *key)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 32;
        char(*v)[KEY_CAP] = realloc(k->v, cap * sizeof *v);
        if (v == NULL) return FV_ENOMEM;
        k->v = v;
        k->cap = cap;
    }
    snprintf(k->v[k->n++], KEY_CAP, "%s", key);
    return FV_OK;
}

static int row_one(void *arg, const struct fv_zone_row *r)
{
    struct keys *k = arg;
    char key[KEY_CAP];
    fv_jszones_key(r->pseudo, r->label, key, sizeof key);
    struct fv_jszone z = {.ms = r->created_ms, .len = r->len};
    memcpy(z.blob, r->blob, r->len);
    uintptr_t mark = state_mark(&z);
    OPENSSL_cleanse(&z, sizeof z);
    if (fv_map_put(&k->here, key, strlen(key), (void *)1) != FV_OK) return FV_ENOMEM;
    if ((uintptr_t)fv_map_get(&k->s->synced, key, strlen(key)) == mark) return FV_OK;
    return add_key(k, key);
}

/* Z6: the catalog's zones that differ from what was last in sync, and those removed,
 * published. */
static int publish_changes(void *arg, int *changed)
{
    (void)changed;
    struct fv_jszones *s = arg;
    struct keys k = {.s = s};
    char err[256];
    int rc = fv_zone_rows(s->ks, row_one, &k, err, sizeof err);
    if (rc == FV_EIO) fv_warn("cluster: privacy zones: %s", err);
    for (size_t i = 0; rc == FV_OK && i < s->synced.cap; i++) {
        const struct fv_map_slot *sl = &s->synced.slots[i];
        if (sl->hash && ((uintptr_t)sl->val & 1) &&
            fv_map_get(&k.here, sl->key, sl->klen) == NULL) {
            char key[KEY_CAP];
            snprintf(key, sizeof key, "%.*s", (int)sl->klen, sl->key);
            rc = add_key(&k, key);
        }
    }
    s->sync.dirty = rc != FV_OK;
    for (size_t i = 0; rc == FV_OK && i < k.n; i++)
        sync_entry(s, k.v[i], NULL, 0, 0); /* failures: dirty, next round */
    free(k.v);
    fv_map_free(&k.here);
    return rc;
}

static void entry_op(void *arg, const char *key, const unsigned char *v, size_t len, uint64_t rev,
                     int *changed)
{
    (void)changed; /* the guard reads the zones of each request from the catalog */
    sync_entry(arg, key, v, len, rev);
}

static const struct fv_kvsync_ops sync_ops = {
    .what = "privacy zones",
    .conn_name = "fleetvault-zones",
    .description = "fleetvault: privacy zones (sealed by their subject's key), wrapped by the "
                   "master key",
    .entry = entry_op,
    .publish = publish_changes,
};

int fv_jszones_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek,
                    const char *catalog_path, const char *node, struct fv_jszones **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    struct fv_jszones *s = calloc(1, sizeof *s);
    if (s == NULL) return FV_ENOMEM;
    s->kek = *kek;
    snprintf(s->node, sizeof s->node, "%s", node && node[0] ? node : "unnamed");
    int rc = fv_keystore_open(catalog_path, kek, &s->ks, err, errlen);
    if (rc == FV_OK) rc = fv_zones_init(s->ks, err, errlen);
    if (rc == FV_OK)
        rc = fv_kvsync_open(&s->sync, cfg, cfg->zones_bucket, &sync_ops, s, fv_keystore_db(s->ks),
                            err, errlen);
    if (rc) {
        fv_jszones_close(s);
        return rc;
    }
    *out = s;
    return FV_OK;
}

void fv_jszones_stats(struct fv_jszones *s, struct fv_kvsync_stats *out)
{
    fv_kvsync_stats(&s->sync, out);
}

void fv_jszones_close(struct fv_jszones *s)
{
    if (s == NULL) return;
    fv_kvsync_close(&s->sync); /* first: its thread uses the rest */
    fv_keystore_close(s->ks);
    fv_map_free(&s->synced);
    OPENSSL_cleanse(&s->kek, sizeof s->kek);
    free(s);
}
