/* kvsync.c - a catalog table kept the same as a NATS KV bucket (kvsync.h). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cluster/jskeys.h"
#include "cluster/kvfollow.h"
#include "cluster/kvsync.h"
#include "util/err.h"
#include "util/log.h"

#define SYNC_WAIT_MS 500 /* K2: the thread's round */

/* K2: the catalog changed by another connection since the last look? */
static int catalog_changed(struct fv_kvsync *k)
{
    sqlite3_stmt *st = NULL;
    int changed = 0;
    if (sqlite3_prepare_v2(k->db, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        int64_t v = sqlite3_column_int64(st, 0);
        changed = v != k->data_version;
        k->data_version = v;
    }
    sqlite3_finalize(st);
    return changed;
}

/* K4 */
static void followed(struct fv_kvsync *k, const struct fv_kventry *e, int *changed)
{
    size_t pl = k->ops->prefix ? strlen(k->ops->prefix) : 0;
    if (e->op == FV_KV_PUT && e->value && (pl == 0 || strncmp(e->key, k->ops->prefix, pl) == 0))
        k->ops->entry(k->arg, e->key + pl, e->value, e->len, e->revision, changed);
}

/* The next entry, waiting up to wait_ms: FV_OK (applied), FV_ENOENT (none), FV_EIO (K3). */
static int follow_one(struct fv_kvsync *k, int64_t wait_ms, int *changed)
{
    struct fv_kventry e;
    char err[256];
    int rc = fv_kvfollow_next(k->follow, &e, wait_ms, err, sizeof err);
    if (rc == FV_EIO) {
        if (!k->failing) fv_warn("%s; asking again", err);
        k->failing = 1;
        return rc;
    }
    if (k->failing) fv_info("cluster: following KV bucket %s again", k->bucket);
    k->failing = 0;
    if (rc == FV_OK) followed(k, &e, changed);
    return rc;
}

static void *sync_main(void *arg)
{
    struct fv_kvsync *k = arg;
    while (!__atomic_load_n(&k->stop, __ATOMIC_ACQUIRE)) {
        int changed = 0;
        if (follow_one(k, SYNC_WAIT_MS, &changed) == FV_EIO) usleep(SYNC_WAIT_MS * 1000u);
        if (catalog_changed(k) || k->dirty) k->ops->publish(k->arg, &changed);
        if (changed && k->ops->changed) k->ops->changed(k->arg);
    }
    return NULL;
}

/* K1: the bucket's current state applied (to its last message: a retry goes on from where
 * the failed one stopped), then the catalog's own published. */
static int initial_sync(struct fv_kvsync *k, char *err, size_t errlen)
{
    int changed = 0, rc;
    struct fv_kventry e;
    while ((rc = fv_kvfollow_next(k->follow, &e, 0, err, errlen)) == FV_OK)
        followed(k, &e, &changed);
    if (rc != FV_ENOENT) return rc;
    catalog_changed(k);
    rc = k->ops->publish(k->arg, &changed);
    if (rc == FV_OK && k->dirty) {
        fv_seterr(err, errlen,
                  "cluster: KV bucket %s: this catalog's %s could not all be published (see the "
                  "log)",
                  k->bucket, k->ops->what);
        rc = FV_EIO;
    }
    return rc;
}

static int bind_bucket(struct fv_kvsync *k, char *err, size_t errlen)
{
    return fv_natsconn_bucket(&k->conn, k->bucket, k->ops->description, k->cfg->replicas, &k->kv,
                              err, errlen);
}

int fv_kvsync_open(struct fv_kvsync *k, const struct fv_cluster_cfg *cfg, const char *bucket,
                   const struct fv_kvsync_ops *ops, void *arg, struct sqlite3 *db, char *err,
                   size_t errlen)
{
    k->cfg = cfg;
    k->bucket = bucket;
    k->ops = ops;
    k->arg = arg;
    k->db = db;
    int rc =
        fv_natsconn_connect(&k->conn, cfg, ops->conn_name, NULL, FV_JSKEYS_WAIT_MS, 0, err, errlen);
    if (rc == FV_OK) rc = bind_bucket(k, err, errlen);
    for (int i = 0; rc == FV_EIO && k->conn.js && i < FV_NATS_START_TRIES; i++) {
        fv_warn("%s; trying again", err);
        usleep(500000);
        rc = bind_bucket(k, err, errlen);
    }
    /* the follower and the initial sync, tried again while NATS does not answer */
    for (int i = 0; rc == FV_OK; i++) {
        if (k->follow == NULL)
            rc = fv_kvfollow_open(k->conn.nc, k->conn.js, k->kv, bucket, &k->follow, err, errlen);
        if (rc == FV_OK) rc = initial_sync(k, err, errlen);
        if (rc != FV_EIO || i == FV_NATS_START_TRIES) break;
        fv_warn("%s; trying again", err);
        usleep(500000);
        rc = FV_OK;
    }
    if (rc == FV_OK && pthread_create(&k->thread, NULL, sync_main, k) != 0) {
        fv_seterr(err, errlen, "cluster: cannot start the thread keeping the %s in sync",
                  ops->what);
        rc = FV_ENOMEM;
    }
    if (rc) {
        fv_kvsync_close(k);
        return rc;
    }
    k->thread_started = 1;
    struct fv_kvsync_stats st;
    fv_kvsync_stats(k, &st);
    fv_info("cluster: %s in sync with KV bucket %s (%llu applied here, %llu published)", ops->what,
            bucket, (unsigned long long)st.applied, (unsigned long long)st.published);
    return FV_OK;
}

void fv_kvsync_count(uint64_t *counter)
{
    __atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

void fv_kvsync_stats(const struct fv_kvsync *k, struct fv_kvsync_stats *out)
{
    out->applied = __atomic_load_n(&k->stats.applied, __ATOMIC_RELAXED);
    out->published = __atomic_load_n(&k->stats.published, __ATOMIC_RELAXED);
    out->conflicts = __atomic_load_n(&k->stats.conflicts, __ATOMIC_RELAXED);
    out->malformed = __atomic_load_n(&k->stats.malformed, __ATOMIC_RELAXED);
}

int fv_kvsync_put(struct fv_kvsync *k, const char *key, const struct fv_buf *value, uint64_t rev)
{
    uint64_t nrev = 0;
    natsStatus st = rev ? kvStore_Update(&nrev, k->kv, key, value->data, (int)value->len, rev)
                        : kvStore_Create(&nrev, k->kv, key, value->data, (int)value->len);
    if (st == NATS_OK) {
        fv_kvsync_count(&k->stats.published);
        return FV_OK;
    }
    if (st == NATS_ERR) { /* JetStream refused the revision: another node's write won */
        fv_kvsync_count(&k->stats.conflicts);
        return FV_EAGAIN;
    }
    fv_warn("cluster: writing KV entry %s: %s", key, natsStatus_GetText(st));
    return FV_EIO;
}

void fv_kvsync_close(struct fv_kvsync *k)
{
    __atomic_store_n(&k->stop, 1, __ATOMIC_RELEASE);
    if (k->thread_started) pthread_join(k->thread, NULL);
    k->thread_started = 0;
    fv_kvfollow_close(k->follow);
    k->follow = NULL;
    kvStore_Destroy(k->kv);
    k->kv = NULL;
    fv_natsconn_close(&k->conn);
}
