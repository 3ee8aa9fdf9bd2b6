/* jsquotas.c - the daily quotas counted for the whole cluster in a NATS KV bucket
 * (jsquotas.h Q1-Q7).
 *
 * One thread per node follows the bucket in sequence (kvfollow.h) into a table of every
 * node's counts and publishes this node's pending counts every FLUSH_MS. Two locks: mu guards
 * the table, the pending counts and the failing flags (held for map operations only, never
 * across a NATS request); pub serialises the puts (the batch on the sync's thread, an
 * immediate publish on the guard's), so a put of older counts never lands after a newer one.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "cluster/jskeys.h"
#include "cluster/jsquotas.h"
#include "cluster/kvbytes.h"
#include "cluster/kvfollow.h"
#include "cluster/natsconn.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define SYNC_WAIT_MS 250  /* a follow's wait */
#define FLUSH_MS     500  /* Q3: the batch */
#define PUT_WAIT_MS  2000 /* a put's wait for the stream's answer */
#define DAY_MS       86400000ull

/* ---- values -------------------------------------------------------------------------------- */

static int name_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] >= 0x7f) return 0;
    return 1;
}

/* A node name in a KV key: A-Z a-z 0-9 _ - (cluster_config.h, fv_cluster_node_default). */
static int node_ok(const char *s)
{
    size_t n = strnlen(s, FV_JSQUOTA_NODE_MAX + 1);
    if (n == 0 || n > FV_JSQUOTA_NODE_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int fv_jsquotas_key(const char *name, int64_t day, const char *node, char out[FV_JSQUOTA_KEY_MAX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    out[0] = '\0';
    if (!name_ok(name, FV_JSQUOTA_NAME_MAX) || !node_ok(node) || day < 0) return FV_EINVAL;
    if (EVP_Digest(name, strlen(name), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 8)
        return FV_EIO;
    char hex[17];
    for (int i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    snprintf(out, FV_JSQUOTA_KEY_MAX, "%lld.%s.%s", (long long)day, hex, node);
    return FV_OK;
}

static void pt_free(struct fv_buf *pt)
{
    if (pt->data) OPENSSL_cleanse(pt->data, pt->cap);
    fv_buf_free(pt);
}

int fv_jsquotas_encode(const struct fv_kek *kek, const char *name, const char *node,
                       const struct fv_quota_usage *u, struct fv_buf *out)
{
    char key[FV_JSQUOTA_KEY_MAX];
    int rc = fv_jsquotas_key(name, u->day, node, key);
    if (rc) return rc;
    struct fv_buf pt = {0};
    rc = fv_kvb_put_str(&pt, name);
    if (rc == FV_OK) rc = fv_kvb_put_be(&pt, (uint64_t)u->day, 8);
    if (rc == FV_OK) rc = fv_kvb_put_be(&pt, u->subjects, 8);
    if (rc == FV_OK) rc = fv_kvb_put_be(&pt, u->rows, 8);
    if (rc == FV_OK) rc = fv_kvb_put_be(&pt, u->bytes, 8);
    if (rc == FV_OK) rc = fv_kvb_put_be(&pt, u->bulk, 8);
    if (rc == FV_OK) rc = fv_kvb_put_str(&pt, node);
    if (rc == FV_OK) rc = fv_jskeys_wrap(kek, key, FV_JSQUOTA_KIND, pt.data, pt.len, out);
    pt_free(&pt);
    return rc;
}

int fv_jsquotas_decode(const struct fv_kek *kek, const char *key, const unsigned char *v,
                       size_t len, char name[FV_JSQUOTA_NAME_MAX + 1],
                       char node[FV_JSQUOTA_NODE_MAX + 1], struct fv_quota_usage *u, char *err,
                       size_t errlen)
{
    struct fv_buf pt = {0};
    memset(u, 0, sizeof *u);
    name[0] = node[0] = '\0';
    int rc = fv_jskeys_unwrap(kek, key, FV_JSQUOTA_KIND, v, len, &pt, err, errlen);
    if (rc) {
        pt_free(&pt);
        return rc;
    }
    struct fv_kvb_rd r = {.p = pt.data, .n = pt.len};
    fv_kvb_get_str(&r, name, FV_JSQUOTA_NAME_MAX + 1, 0, 0x21);
    u->day = (int64_t)fv_kvb_get_be(&r, 8);
    u->subjects = fv_kvb_get_be(&r, 8);
    u->rows = fv_kvb_get_be(&r, 8);
    u->bytes = fv_kvb_get_be(&r, 8);
    u->bulk = fv_kvb_get_be(&r, 8);
    fv_kvb_get_str(&r, node, FV_JSQUOTA_NODE_MAX + 1, 0, 0x21);
    pt_free(&pt);
    char want[FV_JSQUOTA_KEY_MAX];
    if (r.bad || r.off != r.n || fv_jsquotas_key(name, u->day, node, want) != FV_OK ||
        strcmp(want, key) != 0) {
        memset(u, 0, sizeof *u);
        name[0] = node[0] = '\0';
        fv_seterr(err, errlen, "KV entry %s: not a valid quota count", key);
        return FV_ECORRUPT;
    }
    return FV_OK;
}

/* ---- the table ----------------------------------------------------------------------------- */

struct node_counts {
    char node[FV_JSQUOTA_NODE_MAX + 1];
    struct fv_quota_usage u;
};

struct slot {
    char name[FV_JSQUOTA_NAME_MAX + 1];
    int64_t day;
    size_t n;
    struct node_counts *v;
};

/* The map's key: the day's 8 bytes, then the name (no NUL). */
static size_t slot_key(int64_t day, const char *name, unsigned char out[8 + FV_JSQUOTA_NAME_MAX])
{
    size_t n = strnlen(name, FV_JSQUOTA_NAME_MAX);
    memcpy(out, &day, 8);
    memcpy(out + 8, name, n);
    return 8 + n;
}

static uint64_t larger(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

int fv_jsquotas_table_apply(struct fv_jsquotas_table *t, const char *name, const char *node,
                            const struct fv_quota_usage *u)
{
    unsigned char k[8 + FV_JSQUOTA_NAME_MAX];
    size_t kl = slot_key(u->day, name, k);
    struct slot *s = fv_map_get(&t->by, k, kl);
    if (s == NULL) {
        if ((s = calloc(1, sizeof *s)) == NULL) return FV_ENOMEM;
        snprintf(s->name, sizeof s->name, "%s", name);
        s->day = u->day;
        if (fv_map_put(&t->by, k, kl, s) != FV_OK) {
            free(s);
            return FV_ENOMEM;
        }
    }
    for (size_t i = 0; i < s->n; i++) {
        struct fv_quota_usage *h = &s->v[i].u;
        if (strcmp(s->v[i].node, node) != 0) continue;
        if (u->subjects <= h->subjects && u->rows <= h->rows && u->bytes <= h->bytes &&
            u->bulk <= h->bulk)
            return 0;
        h->subjects = larger(h->subjects, u->subjects);
        h->rows = larger(h->rows, u->rows);
        h->bytes = larger(h->bytes, u->bytes);
        h->bulk = larger(h->bulk, u->bulk);
        return 1;
    }
    struct node_counts *v = realloc(s->v, (s->n + 1) * sizeof *v);
    if (v == NULL) return FV_ENOMEM;
    s->v = v;
    snprintf(v[s->n].node, sizeof v[s->n].node, "%s", node);
    v[s->n].u = *u;
    s->n++;
    return 1;
}

void fv_jsquotas_table_sum(const struct fv_jsquotas_table *t, const char *name, int64_t day,
                           const char *except, struct fv_quota_usage *sum)
{
    unsigned char k[8 + FV_JSQUOTA_NAME_MAX];
    size_t kl = slot_key(day, name, k);
    const struct slot *s = fv_map_get(&t->by, k, kl);
    if (s == NULL || strcmp(s->name, name) != 0) return;
    for (size_t i = 0; i < s->n; i++)
        if (except == NULL || strcmp(s->v[i].node, except) != 0) {
            int64_t d = sum->day;
            fv_quota_usage_add(sum, &s->v[i].u);
            sum->day = d;
        }
}

void fv_jsquotas_table_each(const struct fv_jsquotas_table *t, const char *node, int64_t day,
                            void (*fn)(void *arg, const char *name, const struct fv_quota_usage *u),
                            void *arg)
{
    for (size_t i = 0; i < t->by.cap; i++) {
        const struct slot *s = t->by.slots[i].hash ? t->by.slots[i].val : NULL;
        if (s == NULL || s->day != day) continue;
        for (size_t j = 0; j < s->n; j++)
            if (strcmp(s->v[j].node, node) == 0) fn(arg, s->name, &s->v[j].u);
    }
}

static void slot_free(struct slot *s)
{
    if (s == NULL) return;
    free(s->v);
    free(s);
}

int fv_jsquotas_table_prune(struct fv_jsquotas_table *t, int64_t today)
{
    size_t n = 0;
    for (size_t i = 0; i < t->by.cap; i++) {
        const struct slot *s = t->by.slots[i].hash ? t->by.slots[i].val : NULL;
        if (s && s->day < today - 1) n++;
    }
    if (n == 0) return FV_OK;
    struct slot **old = calloc(n, sizeof *old);
    if (old == NULL) return FV_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < t->by.cap && m < n; i++) {
        struct slot *s = t->by.slots[i].hash ? t->by.slots[i].val : NULL;
        if (s && s->day < today - 1) old[m++] = s;
    }
    for (size_t i = 0; i < m; i++) {
        unsigned char k[8 + FV_JSQUOTA_NAME_MAX];
        size_t kl = slot_key(old[i]->day, old[i]->name, k);
        slot_free(fv_map_del(&t->by, k, kl));
    }
    free(old);
    return FV_OK;
}

void fv_jsquotas_table_free(struct fv_jsquotas_table *t)
{
    for (size_t i = 0; i < t->by.cap; i++)
        if (t->by.slots[i].hash) slot_free(t->by.slots[i].val);
    fv_map_free(&t->by);
}

/* ---- the sync ------------------------------------------------------------------------------ */

struct pending {
    char name[FV_JSQUOTA_NAME_MAX + 1];
    struct fv_quota_usage u;
};

struct fv_jsquotas {
    const struct fv_cluster_cfg *cfg;
    struct fv_kek kek;
    char node[FV_JSQUOTA_NODE_MAX + 1];
    struct fv_natsconn conn;
    kvStore *kv;
    struct fv_kvfollow *follow;
    pthread_mutex_t mu;  /* table, pending, the failing flags */
    pthread_mutex_t pub; /* the puts, one at a time (Q3) */
    int locks;           /* how many of the two were made */
    struct fv_jsquotas_table table;
    struct fv_map pending; /* name -> struct pending: this node's counts not yet published */
    int follow_failing, publish_failing;
    uint64_t flushed_ms;
    pthread_t thread;
    int thread_started;
    int stop;
    struct fv_jsquotas_stats stats;
};

static void count(uint64_t *c)
{
    __atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

static void set_stale(struct fv_jsquotas *s)
{
    __atomic_store_n(&s->stats.stale, (uint64_t)(s->follow_failing || s->publish_failing),
                     __ATOMIC_RELAXED);
}

/* Under mu: the pending gauge. */
static void set_pending(struct fv_jsquotas *s)
{
    __atomic_store_n(&s->stats.pending, (uint64_t)s->pending.n, __ATOMIC_RELAXED);
}

static int64_t today(void)
{
    return (int64_t)(fv_now_ms() / DAY_MS);
}

void fv_jsquotas_others(void *arg, const char *name, int64_t day, struct fv_quota_usage *sum)
{
    struct fv_jsquotas *s = arg;
    pthread_mutex_lock(&s->mu);
    fv_jsquotas_table_sum(&s->table, name, day, s->node, sum);
    pthread_mutex_unlock(&s->mu);
}

/* Under mu: name's counts pending, replacing older ones (Q1: never lower). */
static int pending_put(struct fv_jsquotas *s, const char *name, const struct fv_quota_usage *u)
{
    size_t kl = strlen(name);
    struct pending *p = fv_map_get(&s->pending, name, kl);
    if (p == NULL) {
        if ((p = calloc(1, sizeof *p)) == NULL) return FV_ENOMEM;
        snprintf(p->name, sizeof p->name, "%s", name);
        p->u = *u;
        if (fv_map_put(&s->pending, name, kl, p) != FV_OK) {
            free(p);
            return FV_ENOMEM;
        }
        return FV_OK;
    }
    if (u->day > p->u.day) {
        p->u = *u;
    } else if (u->day == p->u.day) {
        p->u.subjects = larger(p->u.subjects, u->subjects);
        p->u.rows = larger(p->u.rows, u->rows);
        p->u.bytes = larger(p->u.bytes, u->bytes);
        p->u.bulk = larger(p->u.bulk, u->bulk);
    }
    return FV_OK;
}

/* Under pub: one put of name's counts u. FV_OK or FV_EIO. */
static int put_one(struct fv_jsquotas *s, const char *name, const struct fv_quota_usage *u)
{
    char key[FV_JSQUOTA_KEY_MAX];
    struct fv_buf v = {0};
    int rc = fv_jsquotas_key(name, u->day, s->node, key);
    if (rc == FV_OK) rc = fv_jsquotas_encode(&s->kek, name, s->node, u, &v);
    if (rc) {
        fv_buf_free(&v);
        fv_error("cluster: the quota counts of %s cannot be encoded (%s)", name, fv_strerror(rc));
        return FV_OK; /* never publishable: dropped, not retried */
    }
    uint64_t rev = 0;
    natsStatus st = kvStore_Put(&rev, s->kv, key, v.data, (int)v.len);
    fv_buf_free(&v);
    pthread_mutex_lock(&s->mu);
    int was = s->publish_failing;
    s->publish_failing = st != NATS_OK;
    set_stale(s);
    if (st == NATS_OK) fv_jsquotas_table_apply(&s->table, name, s->node, u); /* Q4 */
    pthread_mutex_unlock(&s->mu);
    if (st != NATS_OK) {
        count(&s->stats.failed);
        if (!was)
            fv_warn("cluster: quota counts not published to KV bucket %s (%s): this node "
                    "decides on its own counts and the other nodes' last seen (stale) until "
                    "NATS answers again",
                    s->cfg->quotas_bucket, natsStatus_GetText(st));
        return FV_EIO;
    }
    if (was)
        fv_info("cluster: quota counts published to KV bucket %s again", s->cfg->quotas_bucket);
    count(&s->stats.published);
    return FV_OK;
}

/* Under pub: name's pending counts, if any, published (and put back if that failed). */
static int publish_pending(struct fv_jsquotas *s, const char *name)
{
    pthread_mutex_lock(&s->mu);
    struct pending *p = fv_map_del(&s->pending, name, strlen(name));
    pthread_mutex_unlock(&s->mu);
    if (p == NULL) return FV_OK;
    int rc = put_one(s, p->name, &p->u);
    pthread_mutex_lock(&s->mu);
    if (rc && pending_put(s, p->name, &p->u) != FV_OK)
        fv_error("cluster: out of memory keeping the quota counts of %s", p->name);
    set_pending(s);
    pthread_mutex_unlock(&s->mu);
    free(p);
    return rc;
}

void fv_jsquotas_publish(void *arg, const char *name, const struct fv_quota_usage *own, int now)
{
    struct fv_jsquotas *s = arg;
    pthread_mutex_lock(&s->mu);
    if (pending_put(s, name, own) != FV_OK)
        fv_error("cluster: out of memory keeping the quota counts of %s", name);
    set_pending(s);
    int failing = s->publish_failing || s->follow_failing;
    pthread_mutex_unlock(&s->mu);
    if (!now || failing) return; /* Q6: the batch tries again; no wait on a timeout here */
    pthread_mutex_lock(&s->pub);
    publish_pending(s, name);
    pthread_mutex_unlock(&s->pub);
}

/* Q3: the batch: every name pending, until a put fails (the rest wait for the next). */
static void flush(struct fv_jsquotas *s)
{
    s->flushed_ms = fv_now_ms();
    pthread_mutex_lock(&s->mu);
    size_t n = s->pending.n, m = 0;
    char(*names)[FV_JSQUOTA_NAME_MAX + 1] = n ? calloc(n, sizeof *names) : NULL;
    for (size_t i = 0; names && i < s->pending.cap; i++)
        if (s->pending.slots[i].hash && m < n) {
            const struct pending *p = s->pending.slots[i].val;
            snprintf(names[m++], sizeof *names, "%s", p->name);
        }
    pthread_mutex_unlock(&s->mu);
    if (n && names == NULL) {
        fv_error("cluster: out of memory publishing quota counts; trying again");
        return;
    }
    pthread_mutex_lock(&s->pub);
    for (size_t i = 0; i < m; i++)
        if (publish_pending(s, names[i]) != FV_OK) break;
    pthread_mutex_unlock(&s->pub);
    free(names);
}

static void followed(struct fv_jsquotas *s, const struct fv_kventry *e)
{
    if (e->op != FV_KV_PUT || e->value == NULL) return; /* a purge: nothing to count */
    char name[FV_JSQUOTA_NAME_MAX + 1], node[FV_JSQUOTA_NODE_MAX + 1], err[256] = "";
    struct fv_quota_usage u;
    int rc = fv_jsquotas_decode(&s->kek, e->key, e->value, e->len, name, node, &u, err, sizeof err);
    if (rc) {
        count(&s->stats.malformed);
        fv_warn("cluster: %s: left out of the quotas' sum", err[0] ? err : fv_strerror(rc));
        return;
    }
    if (u.day < today() - 1) return; /* Q5: worth nothing */
    pthread_mutex_lock(&s->mu);
    rc = fv_jsquotas_table_apply(&s->table, name, node, &u);
    pthread_mutex_unlock(&s->mu);
    if (rc < 0)
        fv_error("cluster: out of memory applying the quota counts of %s from node %s", name, node);
    else if (rc == 1 && strcmp(node, s->node) != 0)
        count(&s->stats.applied);
}

static int follow_one(struct fv_jsquotas *s, int64_t wait_ms)
{
    struct fv_kventry e;
    char err[256];
    int rc = fv_kvfollow_next(s->follow, &e, wait_ms, err, sizeof err);
    pthread_mutex_lock(&s->mu);
    int was = s->follow_failing;
    s->follow_failing = rc == FV_EIO;
    set_stale(s);
    pthread_mutex_unlock(&s->mu);
    if (rc == FV_EIO) {
        if (!was)
            fv_warn("%s; the other nodes' quota counts are stale (this node keeps counting "
                    "and deciding on its own and their last seen) until NATS answers again",
                    err);
        return rc;
    }
    if (was) fv_info("cluster: following KV bucket %s again", s->cfg->quotas_bucket);
    if (rc == FV_OK) followed(s, &e);
    __atomic_store_n(&s->stats.position, fv_kvfollow_position(s->follow), __ATOMIC_RELAXED);
    return rc;
}

static void *sync_main(void *arg)
{
    struct fv_jsquotas *s = arg;
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        if (follow_one(s, SYNC_WAIT_MS) == FV_EIO) usleep(SYNC_WAIT_MS * 1000u);
        if (fv_now_ms() - s->flushed_ms >= FLUSH_MS) {
            flush(s);
            pthread_mutex_lock(&s->mu);
            fv_jsquotas_table_prune(&s->table, today());
            pthread_mutex_unlock(&s->mu);
        }
    }
    return NULL;
}

static int bind_bucket(struct fv_jsquotas *s, char *err, size_t errlen)
{
    return fv_natsconn_bucket_ttl(&s->conn, s->cfg->quotas_bucket,
                                  "fleetvault: each node's daily quota counts, wrapped by the "
                                  "master key",
                                  s->cfg->replicas, FV_JSQUOTA_TTL_MS, &s->kv, err, errlen);
}

static int initial_sync(struct fv_jsquotas *s, char *err, size_t errlen)
{
    int rc;
    struct fv_kventry e;
    while ((rc = fv_kvfollow_next(s->follow, &e, 0, err, errlen)) == FV_OK)
        followed(s, &e);
    if (rc != FV_ENOENT) return rc;
    fv_info("cluster: quota counts read from KV bucket %s (%llu of other nodes)",
            s->cfg->quotas_bucket, (unsigned long long)s->stats.applied);
    return FV_OK;
}

int fv_jsquotas_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek, const char *node,
                     struct fv_jsquotas **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!node_ok(node)) {
        fv_seterr(err, errlen, "cluster: node name \"%s\" cannot name quota counts", node);
        return FV_EINVAL;
    }
    struct fv_jsquotas *s = calloc(1, sizeof *s);
    if (s == NULL) return FV_ENOMEM;
    s->cfg = cfg;
    s->kek = *kek;
    snprintf(s->node, sizeof s->node, "%s", node);
    int rc = FV_ENOMEM;
    if (pthread_mutex_init(&s->mu, NULL) == 0) {
        s->locks = 1;
        if (pthread_mutex_init(&s->pub, NULL) == 0) {
            s->locks = 2;
            rc = FV_OK;
        }
    }
    if (rc == FV_OK)
        rc = fv_natsconn_connect(&s->conn, cfg, "fleetvault-quotas", NULL, PUT_WAIT_MS, 0, err,
                                 errlen);
    if (rc == FV_OK) rc = bind_bucket(s, err, errlen);
    for (int i = 0; rc == FV_EIO && s->conn.js && i < FV_NATS_START_TRIES; i++) {
        fv_warn("%s; trying again", err);
        usleep(500000);
        rc = bind_bucket(s, err, errlen);
    }
    if (rc == FV_OK)
        rc = fv_kvfollow_open(s->conn.nc, s->conn.js, s->kv, cfg->quotas_bucket, &s->follow, err,
                              errlen);
    if (rc == FV_OK) rc = initial_sync(s, err, errlen);
    for (int i = 0; rc == FV_EIO && s->follow && i < FV_NATS_START_TRIES; i++) {
        fv_warn("%s; trying again", err);
        usleep(500000);
        rc = initial_sync(s, err, errlen);
    }
    s->flushed_ms = fv_now_ms();
    if (rc == FV_OK && pthread_create(&s->thread, NULL, sync_main, s) != 0) {
        fv_seterr(err, errlen, "cluster: cannot start the quotas sync's thread");
        rc = FV_ENOMEM;
    }
    if (rc) {
        fv_jsquotas_close(s);
        return rc;
    }
    s->thread_started = 1;
    *out = s;
    return FV_OK;
}

void fv_jsquotas_own(struct fv_jsquotas *s, int64_t day,
                     void (*fn)(void *arg, const char *name, const struct fv_quota_usage *u),
                     void *arg)
{
    pthread_mutex_lock(&s->mu);
    fv_jsquotas_table_each(&s->table, s->node, day, fn, arg);
    pthread_mutex_unlock(&s->mu);
}

void fv_jsquotas_stats(struct fv_jsquotas *s, struct fv_jsquotas_stats *out)
{
    out->applied = __atomic_load_n(&s->stats.applied, __ATOMIC_RELAXED);
    out->published = __atomic_load_n(&s->stats.published, __ATOMIC_RELAXED);
    out->failed = __atomic_load_n(&s->stats.failed, __ATOMIC_RELAXED);
    out->malformed = __atomic_load_n(&s->stats.malformed, __ATOMIC_RELAXED);
    out->stale = __atomic_load_n(&s->stats.stale, __ATOMIC_RELAXED);
    out->pending = __atomic_load_n(&s->stats.pending, __ATOMIC_RELAXED);
    out->position = __atomic_load_n(&s->stats.position, __ATOMIC_RELAXED);
}

void fv_jsquotas_close(struct fv_jsquotas *s)
{
    if (s == NULL) return;
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    if (s->thread_started) {
        pthread_join(s->thread, NULL);
        if (!s->publish_failing) flush(s); /* the last counts, one try */
    }
    fv_kvfollow_close(s->follow);
    kvStore_Destroy(s->kv);
    fv_natsconn_close(&s->conn);
    for (size_t i = 0; i < s->pending.cap; i++)
        if (s->pending.slots[i].hash) free(s->pending.slots[i].val);
    fv_map_free(&s->pending);
    fv_jsquotas_table_free(&s->table);
    if (s->locks >= 1) pthread_mutex_destroy(&s->mu);
    if (s->locks >= 2) pthread_mutex_destroy(&s->pub);
    OPENSSL_cleanse(&s->kek, sizeof s->kek);
    free(s);
}
