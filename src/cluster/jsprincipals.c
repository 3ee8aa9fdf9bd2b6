/* jsprincipals.c - principals in a NATS JetStream KV bucket (jsprincipals.h).
 *
 * Built as jssubjects.c is: entries are never deleted (a revocation is a value), so nats.c's
 * kvStore_Get/Create/Update serve for compare-and-set; the connection, the bucket followed in
 * sequence and the thread's rounds are kvsync.h's; what is in sync is remembered per principal as
 * the hash of its canonical plaintext, so a round that finds the catalog changed publishes only the
 * rows that differ.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

#include "cluster/jskeys.h"
#include "cluster/jsprincipals.h"
#include "cluster/kvbytes.h"
#include "cluster/kvsync.h"
#include "cluster/natsconn.h"
#include "util/err.h"
#include "util/log.h"
#include "util/map.h"

#define CAS_TRIES 3

struct fv_jsprincipals {
    const struct fv_cluster_cfg *cfg;
    struct fv_kek kek;
    char node[FV_JSPRINC_NODE_MAX + 1];
    struct fv_kvsync sync;  /* U1: connection, bucket, thread (kvsync.h) */
    struct fv_keystore *ks; /* the sync's own catalog connection */
    struct fv_map synced;   /* principal name -> hash of the plaintext last in sync */
};

/* ---- values -------------------------------------------------------------------------------- */

int fv_jsprincipals_pt(const struct fv_principal_row *r, struct fv_buf *out)
{
    const struct fv_principal *p = &r->p;
    int rc = fv_kvb_put_str(out, p->name);
    if (rc == FV_OK) rc = fv_kvb_put_str(out, p->role);
    if (rc == FV_OK) rc = fv_buf_append(out, r->token_hash, sizeof r->token_hash);
    if (rc == FV_OK) rc = fv_kvb_put_be(out, (uint64_t)p->created_ms, 8);
    if (rc == FV_OK) rc = fv_kvb_put_str(out, p->created_by);
    if (rc == FV_OK) rc = fv_kvb_put_be(out, (uint64_t)p->approved_ms, 8);
    if (rc == FV_OK) rc = fv_kvb_put_str(out, p->approved_by);
    if (rc == FV_OK) rc = fv_kvb_put_be(out, (uint64_t)p->revoked_ms, 8);
    return rc;
}

static void pt_free(struct fv_buf *pt)
{
    if (pt->data) OPENSSL_cleanse(pt->data, pt->cap);
    fv_buf_free(pt);
}

static void key_of(const char *name, char key[16 + FV_PRINCIPAL_NAME_MAX])
{
    snprintf(key, 16 + FV_PRINCIPAL_NAME_MAX, "%s%s", FV_JSPRINC_PREFIX, name);
}

int fv_jsprincipals_encode(const struct fv_kek *kek, const struct fv_principal_row *r,
                           const char *node, struct fv_buf *out)
{
    struct fv_buf pt = {0};
    char key[16 + FV_PRINCIPAL_NAME_MAX];
    key_of(r->p.name, key);
    int rc = fv_jsprincipals_pt(r, &pt);
    if (rc == FV_OK) rc = fv_kvb_put_str(&pt, node);
    if (rc == FV_OK) rc = fv_jskeys_wrap(kek, key, FV_JSPRINC_KIND, pt.data, pt.len, out);
    pt_free(&pt);
    return rc;
}

int fv_jsprincipals_decode(const struct fv_kek *kek, const char *key, const unsigned char *v,
                           size_t len, struct fv_principal_row *out,
                           char node[FV_JSPRINC_NODE_MAX + 1], char *err, size_t errlen)
{
    struct fv_buf pt = {0};
    memset(out, 0, sizeof *out);
    node[0] = '\0';
    int rc = fv_jskeys_unwrap(kek, key, FV_JSPRINC_KIND, v, len, &pt, err, errlen);
    if (rc) {
        pt_free(&pt);
        return rc;
    }
    struct fv_principal *p = &out->p;
    struct fv_kvb_rd r = {.p = pt.data, .n = pt.len};
    fv_kvb_get_str(&r, p->name, sizeof p->name, 0, 0x21);
    fv_kvb_get_str(&r, p->role, sizeof p->role, 0, 0x21);
    if (!r.bad && r.n - r.off >= sizeof out->token_hash) {
        memcpy(out->token_hash, r.p + r.off, sizeof out->token_hash);
        r.off += sizeof out->token_hash;
    } else {
        r.bad = 1;
    }
    p->created_ms = (int64_t)fv_kvb_get_be(&r, 8);
    fv_kvb_get_str(&r, p->created_by, sizeof p->created_by, 1, 0x21);
    p->approved_ms = (int64_t)fv_kvb_get_be(&r, 8);
    fv_kvb_get_str(&r, p->approved_by, sizeof p->approved_by, 1, 0x21);
    p->revoked_ms = (int64_t)fv_kvb_get_be(&r, 8);
    fv_kvb_get_str(&r, node, FV_JSPRINC_NODE_MAX + 1, 0, 0x21);
    size_t pl = strlen(FV_JSPRINC_PREFIX);
    if (!r.bad && (r.off != r.n || strncmp(key, FV_JSPRINC_PREFIX, pl) != 0 ||
                   strcmp(key + pl, p->name) != 0 || !fv_principal_name_valid(p->name) ||
                   p->created_ms <= 0 || p->approved_ms < 0 || p->revoked_ms < 0))
        r.bad = 1;
    pt_free(&pt);
    if (r.bad) {
        memset(out, 0, sizeof *out);
        node[0] = '\0';
        fv_seterr(err, errlen, "KV entry %s: not a valid principal", key);
        return FV_ECORRUPT;
    }
    return FV_OK;
}

/* ---- merge (U2) ---------------------------------------------------------------------------- */

/* M1: which of two principals of one name is kept: <0 a, >0 b. */
static int precedes(const struct fv_principal_row *a, const struct fv_principal_row *b)
{
    if (a->p.created_ms != b->p.created_ms) return a->p.created_ms < b->p.created_ms ? -1 : 1;
    int c = memcmp(a->token_hash, b->token_hash, sizeof a->token_hash);
    if (c) return c;
    return strcmp(a->p.role, b->p.role);
}

int fv_jsprincipals_merge(const struct fv_principal_row *a, const struct fv_principal_row *b,
                          struct fv_principal_row *out)
{
    if (memcmp(a->token_hash, b->token_hash, sizeof a->token_hash) != 0 ||
        strcmp(a->p.role, b->p.role) != 0) {
        *out = precedes(a, b) <= 0 ? *a : *b;
        return 1;
    }
    struct fv_principal_row m = *a;
    struct fv_principal *x = &m.p;
    const struct fv_principal *y = &b->p;
    if (y->created_ms < x->created_ms) x->created_ms = y->created_ms;
    if (x->created_by[0] == '\0' || (y->created_by[0] && strcmp(y->created_by, x->created_by) < 0))
        snprintf(x->created_by, sizeof x->created_by, "%s", y->created_by);
    /* M2: the earlier approval, then the smaller approver */
    if (y->approved_ms &&
        (x->approved_ms == 0 || y->approved_ms < x->approved_ms ||
         (y->approved_ms == x->approved_ms && strcmp(y->approved_by, x->approved_by) < 0))) {
        x->approved_ms = y->approved_ms;
        snprintf(x->approved_by, sizeof x->approved_by, "%s", y->approved_by);
    }
    /* M3: revoked on either side is revoked, at the earlier time */
    if (y->revoked_ms && (x->revoked_ms == 0 || y->revoked_ms < x->revoked_ms))
        x->revoked_ms = y->revoked_ms;
    *out = m;
    return 0;
}

/* ---- the sync ------------------------------------------------------------------------------ */

static uint64_t row_hash(const struct fv_principal_row *r)
{
    struct fv_buf pt = {0};
    uint64_t h = 0;
    if (fv_jsprincipals_pt(r, &pt) == FV_OK) h = fv_hash64(pt.data, pt.len) | 1;
    pt_free(&pt);
    return h; /* 0 (unknown): never in sync, so tried again */
}

static int same_row(const struct fv_principal_row *x, const struct fv_principal_row *y)
{
    struct fv_buf a = {0}, b = {0};
    int same = fv_jsprincipals_pt(x, &a) == FV_OK && fv_jsprincipals_pt(y, &b) == FV_OK &&
               a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
    pt_free(&a);
    pt_free(&b);
    return same;
}

/* U4: the merged row m into the catalog over the local one (have_a: there was one), with its
 * audit event; what the change is decides the action. */
static int apply_local(struct fv_jsprincipals *s, const struct fv_principal_row *a, int have_a,
                       const struct fv_principal_row *m, int conflict, const char *from)
{
    const char *action = "principal.create";
    char detail[128];
    if (have_a && conflict)
        action = "principal.replace";
    else if (have_a && m->p.revoked_ms && !a->p.revoked_ms)
        action = "principal.revoke";
    else if (have_a && m->p.approved_ms && !a->p.approved_ms)
        action = "principal.approve";
    else if (have_a)
        action = "principal.update";
    snprintf(detail, sizeof detail, "cluster: from node %s%s", from,
             m->p.revoked_ms    ? ", revoked"
             : m->p.approved_ms ? ", active"
                                : ", pending approval");
    char err[256] = "";
    int rc = fv_principal_row_put(fv_keystore_db(s->ks), m, action, detail, err, sizeof err);
    if (rc) {
        fv_error("cluster: principal %s not applied to this catalog: %s", m->p.name,
                 err[0] ? err : fv_strerror(rc));
        return rc;
    }
    fv_info("cluster: principal %s (%s) applied to this catalog: %s, from node %s", m->p.name,
            m->p.role, action, from);
    fv_kvsync_count(&s->sync.stats.applied);
    return FV_OK;
}

static int entry_write(struct fv_jsprincipals *s, const char *key, const struct fv_principal_row *m,
                       uint64_t rev)
{
    struct fv_buf v = {0};
    int rc = fv_jsprincipals_encode(&s->kek, m, s->node, &v);
    if (rc) {
        fv_buf_free(&v);
        return rc;
    }
    rc = fv_kvsync_put(&s->sync, key, &v, rev);
    fv_buf_free(&v);
    return rc;
}

/* M1: logged by every node that sees it (names, roles and times only; a is this catalog's,
 * b the bucket's, written by node from). */
static void log_conflict(const struct fv_principal_row *a, const struct fv_principal_row *b,
                         const struct fv_principal_row *m, const char *from)
{
    fv_warn("cluster: principal %s was created on two nodes at once (role %s created at %lld ms "
            "here, role %s created at %lld ms in the value of node %s): the one of role %s "
            "created at %lld ms is kept on every node, the other one's token is refused "
            "everywhere",
            m->p.name, a->p.role, (long long)a->p.created_ms, b->p.role, (long long)b->p.created_ms,
            from, m->p.role, (long long)m->p.created_ms);
}

/* A principal brought in sync both ways from the bucket's value v at revision rev (NULL:
 * read it). */
static int sync_entry(struct fv_jsprincipals *s, const char *name, const unsigned char *v,
                      size_t len, uint64_t rev)
{
    char key[16 + FV_PRINCIPAL_NAME_MAX], err[256];
    if (!fv_principal_name_valid(name)) return FV_OK;
    key_of(name, key);
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
        struct fv_principal_row a, b, m;
        char from[FV_JSPRINC_NODE_MAX + 1] = "";
        rc = fv_principal_row_get(fv_keystore_db(s->ks), name, &a);
        int have_a = rc == FV_OK, have_b = v != NULL, conflict = 0;
        if (rc == FV_ENOENT) rc = FV_OK;
        if (rc == FV_OK && have_b) {
            rc = fv_jsprincipals_decode(&s->kek, key, v, len, &b, from, err, sizeof err);
            if (rc == FV_ECORRUPT) {
                fv_error("cluster: %s; ignored", err);
                fv_kvsync_count(&s->sync.stats.malformed);
            }
        }
        if (rc) break;
        if (!have_a && !have_b) break;
        if (have_a && have_b)
            conflict = fv_jsprincipals_merge(&a, &b, &m);
        else
            m = have_a ? a : b;
        if (conflict) {
            log_conflict(&a, &b, &m, from);
            fv_kvsync_count(&s->sync.stats.conflicts);
        }
        if (have_b && (!have_a || !same_row(&a, &m)))
            rc = apply_local(s, &a, have_a, &m, conflict, from);
        if (rc == FV_OK && (!have_b || !same_row(&b, &m))) rc = entry_write(s, key, &m, rev);
        if (rc == FV_OK) {
            uint64_t h = row_hash(&m);
            rc = fv_map_put(&s->synced, name, strlen(name), (void *)(uintptr_t)h);
        }
        OPENSSL_cleanse(&a, sizeof a);
        OPENSSL_cleanse(&b, sizeof b);
        OPENSSL_cleanse(&m, sizeof m);
        if (rc != FV_EAGAIN) break;
    }
    kvEntry_Destroy(ke);
    if (rc && rc != FV_ECORRUPT) s->sync.dirty = 1;
    return rc;
}

struct names {
    char (*v)[FV_PRINCIPAL_NAME_MAX + 1];
    size_t n, cap;
};

static int name_one(void *arg, const char *name)
{
    struct names *ns = arg;
    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? 2 * ns->cap : 32;
        char(*v)[FV_PRINCIPAL_NAME_MAX + 1] = realloc(ns->v, cap * sizeof *v);
        if (v == NULL) return FV_ENOMEM;
        ns->v = v;
        ns->cap = cap;
    }
    snprintf(ns->v[ns->n++], FV_PRINCIPAL_NAME_MAX + 1, "%s", name);
    return FV_OK;
}

/* U1: the catalog's principals that differ from what was last in sync, published. */
static int publish_changes(struct fv_jsprincipals *s)
{
    struct names ns = {0};
    int rc = fv_principal_names(fv_keystore_db(s->ks), name_one, &ns);
    s->sync.dirty = rc != FV_OK;
    for (size_t i = 0; rc == FV_OK && i < ns.n; i++) {
        struct fv_principal_row a;
        if (fv_principal_row_get(fv_keystore_db(s->ks), ns.v[i], &a) != FV_OK) continue;
        uint64_t h = row_hash(&a);
        OPENSSL_cleanse(&a, sizeof a);
        if (h && (uint64_t)(uintptr_t)fv_map_get(&s->synced, ns.v[i], strlen(ns.v[i])) == h)
            continue;
        sync_entry(s, ns.v[i], NULL, 0, 0); /* failures: dirty, next round */
    }
    free(ns.v);
    return rc;
}

/* kvsync.h ops */
static void entry_op(void *arg, const char *name, const unsigned char *v, size_t len, uint64_t rev,
                     int *changed)
{
    (void)changed; /* the guard sees the catalog's change itself (G1) */
    sync_entry(arg, name, v, len, rev);
}

static int publish_op(void *arg, int *changed)
{
    (void)changed;
    return publish_changes(arg);
}

static const struct fv_kvsync_ops sync_ops = {
    .what = "principals",
    .conn_name = "fleetvault-principals",
    .description = "fleetvault: the API's principals (token hashes), wrapped by the master key",
    .prefix = FV_JSPRINC_PREFIX,
    .entry = entry_op,
    .publish = publish_op,
};

int fv_jsprincipals_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek,
                         const char *catalog_path, const char *node, struct fv_jsprincipals **out,
                         char *err, size_t errlen)
{
    *out = NULL;
    struct fv_jsprincipals *s = calloc(1, sizeof *s);
    if (s == NULL) return FV_ENOMEM;
    s->cfg = cfg;
    s->kek = *kek;
    snprintf(s->node, sizeof s->node, "%s", node && node[0] ? node : "unnamed");
    int rc = fv_keystore_open(catalog_path, kek, &s->ks, err, errlen);
    if (rc == FV_OK) rc = fv_principals_init(fv_keystore_db(s->ks), err, errlen);
    if (rc == FV_OK)
        rc = fv_kvsync_open(&s->sync, cfg, cfg->principals_bucket, &sync_ops, s,
                            fv_keystore_db(s->ks), err, errlen);
    if (rc) {
        fv_jsprincipals_close(s);
        return rc;
    }
    *out = s;
    return FV_OK;
}

void fv_jsprincipals_stats(struct fv_jsprincipals *s, struct fv_kvsync_stats *out)
{
    fv_kvsync_stats(&s->sync, out);
}

void fv_jsprincipals_close(struct fv_jsprincipals *s)
{
    if (s == NULL) return;
    fv_kvsync_close(&s->sync); /* first: its thread uses the rest */
    fv_keystore_close(s->ks);
    fv_map_free(&s->synced);
    OPENSSL_cleanse(&s->kek, sizeof s->kek);
    free(s);
}
