/*
 * kvsync.h - a catalog table kept the same as a NATS KV bucket, both ways, by a thread of
 * its own: the life cycle that the owner periods and consents (jssubjects.h P1, P2) and the
 * principals (jsprincipals.h U1) share. What an entry holds, how it merges and how it is
 * written are the user's (ops); this module connects, follows and schedules:
 *
 *  K1 open: its own NATS connection (named ops->conn_name), the bucket bound (made when
 *     missing: ops->description, cfg->replicas) and followed in sequence (kvfollow.h: no
 *     consumer). Then the initial sync, before open returns (the node serves only after it):
 *     the bucket's current state applied entry by entry (ops->entry), then the catalog's own
 *     published (ops->publish); a publish that left something behind (dirty) is a failure.
 *     NATS failures are tried again (FV_NATS_START_TRIES, 0.5 s apart; a retried initial
 *     sync goes on from where the failed one stopped, kvfollow.h F2). Logged once in sync,
 *     with what was applied and published.
 *  K2 the thread's round (at most 0.5 s): the next entry of the bucket, waiting for one,
 *     applied; then, when another connection committed to the catalog since the last round
 *     (PRAGMA data_version on db) or a round left something unpublished (dirty),
 *     ops->publish. A round that changed the catalog calls ops->changed.
 *  K3 a bucket that cannot be read is logged once per outage ("...; asking again") and
 *     once when it is read again; the round waits 0.5 s and asks again from the same place.
 *  K4 only put entries are given to ops->entry (a delete or purge marker is none of ours:
 *     the users never delete), and only those whose key begins with ops->prefix (when set),
 *     without it.
 *
 * Threads: fv_kvsync_open and fv_kvsync_close on the server's thread; ops are called on the
 * opener's thread during open, then on the sync's thread only. kv and dirty are for the ops
 * (the sync's thread; kv is nats.c's, thread-safe).
 */
#ifndef FV_CLUSTER_KVSYNC_H
#define FV_CLUSTER_KVSYNC_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "cluster/natsconn.h"
#include "util/buf.h"

struct sqlite3;
struct fv_kvfollow;

struct fv_kvsync_ops {
    const char *what;        /* what is kept in sync, for messages ("principals") */
    const char *conn_name;   /* the NATS connection's name */
    const char *description; /* the bucket's, should this node make it */
    const char *prefix;      /* K4: the entries kept in sync (NULL: all) */
    /* An entry put in the bucket at revision rev (key without the prefix), brought in sync;
     * failures set dirty (the next round publishes again). *changed: the catalog changed. */
    void (*entry)(void *arg, const char *key, const unsigned char *v, size_t len, uint64_t rev,
                  int *changed);
    /* What differs between the catalog and what was last in sync published; sets dirty when
     * something is left for the next round. FV_OK or an FV_E* (the round's failure). */
    int (*publish)(void *arg, int *changed);
    void (*changed)(void *arg); /* K2, or NULL */
};

/* What a sync did since it was opened (fields atomic in struct fv_kvsync; fv_kvsync_stats
 * reads them). The users count applied and malformed; fv_kvsync_put counts the rest. */
struct fv_kvsync_stats {
    uint64_t applied;   /* changes the bucket brought to this catalog */
    uint64_t published; /* values this node wrote to the bucket */
    uint64_t conflicts; /* merge conflicts and compare-and-set races lost */
    uint64_t malformed; /* values refused (logged with the entry) */
};

struct fv_kvsync {
    const struct fv_cluster_cfg *cfg;
    const char *bucket;
    const struct fv_kvsync_ops *ops;
    void *arg;
    struct sqlite3 *db; /* the catalog connection the ops use (K2: its data_version) */
    struct fv_natsconn conn;
    kvStore *kv; /* the bucket, for the ops' reads and compare-and-set writes */
    struct fv_kvfollow *follow;
    int failing; /* K3: the bucket could not be read (logged) */
    int64_t data_version;
    int dirty; /* something left unpublished: the next round publishes */
    pthread_t thread;
    int thread_started;
    int stop;                     /* atomic */
    struct fv_kvsync_stats stats; /* atomic fields */
};

/* K1: k (zeroed by the caller) opened on bucket for ops and arg, db the catalog connection
 * the ops write through; the thread started. FV_OK, or an FV_E* with err set (everything
 * opened is closed again). */
int fv_kvsync_open(struct fv_kvsync *k, const struct fv_cluster_cfg *cfg, const char *bucket,
                   const struct fv_kvsync_ops *ops, void *arg, struct sqlite3 *db, char *err,
                   size_t errlen);
/* value written to entry key compare-and-set: at revision rev (an update), or created when
 * rev is 0. FV_OK (counted published), FV_EAGAIN (another node's write won: counted a
 * conflict; read again and merge), FV_EIO (NATS: logged). The sync's thread (or open's). */
int fv_kvsync_put(struct fv_kvsync *k, const char *key, const struct fv_buf *value, uint64_t rev);
/* One of k's counters up by one (stats.applied or .malformed, from an op). Any thread. */
void fv_kvsync_count(uint64_t *counter);
/* k's counters, read atomically. Any thread while k is open. */
void fv_kvsync_stats(const struct fv_kvsync *k, struct fv_kvsync_stats *out);
/* The thread stopped and joined, the follower, bucket and connection closed (not db). Safe on
 * a zeroed k and after a failed open. */
void fv_kvsync_close(struct fv_kvsync *k);

#endif
