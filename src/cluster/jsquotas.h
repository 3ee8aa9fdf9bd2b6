/*
 * jsquotas.h - the daily quotas (privacy/guard.h G5) counted for the whole cluster, in a NATS
 * JetStream KV bucket (docs/cluster.md, "Quotas across the cluster"; value format:
 * docs/formats.md, "Quota counts in the KV bucket").
 *
 * The bucket (cluster.quotas_bucket, default fv-quotas; history 1, TTL one day, file storage,
 * cluster.replicas; made by the first node that needs it) holds, per node, per counter name
 * (a principal, or "role:NAME") and per UTC day, that node's own counts: K
 * "DAY.HASH.NODE" (DAY the UTC day number, HASH the first 16 hex digits of the SHA-256 of the
 * name, NODE the node's name), its value wrapped by the master key as jskeys.h's are (format
 * FVKV version 1, kind 'Q'): name, day, subjects, rows, bytes, bulk, node.
 * Rules:
 *  Q1 grow-only per node: a node writes only its own entries, so writes never race (a plain
 *     put, no compare-and-set); a reader keeps, per entry, the larger of each counter it has
 *     seen (a value read out of order never lowers a count).
 *  Q2 the sum: every node follows the bucket (kvfollow.h) into a table; a request is judged
 *     on this node's own counts plus the sum of every other node's latest counts for the name
 *     and day (fv_jsquotas_others, the guard's share hook).
 *  Q3 publishing: the guard hands this node's new counts over as it counts
 *     (fv_jsquotas_publish); the sync's thread publishes what changed every FLUSH_MS (0.5 s);
 *     with now set (the sum within the last fifth of a limit) the caller's thread publishes
 *     before returning, so the answer goes out only once the other nodes can see it. Puts
 *     are serialised: a batch never overwrites a newer count published at once.
 *  Q4 restart: a node's own entries are read back at open (fv_jsquotas_own) and raise its
 *     counters (fv_guard_quota_raise): a restart, even with DATA/quota.db behind, resets no
 *     count the cluster saw.
 *  Q5 old days: entries expire with the bucket's TTL (one day after their last write, so a
 *     day's counts are gone before the day after next starts); the table drops days before
 *     yesterday.
 *  Q6 NATS lost: the node keeps counting and deciding locally, on its own counts plus the last
 *     other nodes' counts it saw (stale: they may be low by what the others served
 *     meanwhile); it says so in the log (once per outage) and the metrics (stale 1); what it
 *     could not publish stays pending and is published when NATS answers again. An immediate
 *     publish (Q3) is not attempted while publishing or following is failing: answers do not
 *     wait on a NATS timeout each (the first answer after NATS is lost may wait once, up to
 *     the put's 2 s).
 *  Q7 a value that is short, of another kind or version, wrapped by another master key, moved
 *     to another entry or altered is refused (FV_ECORRUPT, logged naming the entry, counted
 *     as malformed) and left out of the sum.
 *
 * Threads: open/close on one thread (start, shutdown); fv_jsquotas_others and _publish from
 * any thread (the guard's); the pure functions anywhere.
 */
#ifndef FV_CLUSTER_JSQUOTAS_H
#define FV_CLUSTER_JSQUOTAS_H

#include <stddef.h>
#include <stdint.h>

#include "config/cluster_config.h"
#include "crypto/keys.h"
#include "privacy/policy.h"
#include "util/buf.h"
#include "util/map.h"

#define FV_JSQUOTA_KIND     'Q'
#define FV_JSQUOTA_NODE_MAX 64
#define FV_JSQUOTA_NAME_MAX 100 /* "role:" and a role, or a principal's name */
#define FV_JSQUOTA_KEY_MAX  (20 + 1 + 16 + 1 + FV_JSQUOTA_NODE_MAX + 1)
#define FV_JSQUOTA_TTL_MS   86400000 /* Q5 */

/* ---- values (pure) ------------------------------------------------------------------------ */

/* The KV key of name's counts of day written by node. FV_OK, FV_EINVAL (an empty name or
 * node, a negative day). */
int fv_jsquotas_key(const char *name, int64_t day, const char *node, char out[FV_JSQUOTA_KEY_MAX]);
/* The wrapped value of node's counts u (u->day the day) of name. */
int fv_jsquotas_encode(const struct fv_kek *kek, const char *name, const char *node,
                       const struct fv_quota_usage *u, struct fv_buf *out);
/* Q7: value v of entry key into name, node and *u. FV_OK, FV_ECORRUPT (err names key),
 * FV_ENOMEM. */
int fv_jsquotas_decode(const struct fv_kek *kek, const char *key, const unsigned char *v,
                       size_t len, char name[FV_JSQUOTA_NAME_MAX + 1],
                       char node[FV_JSQUOTA_NODE_MAX + 1], struct fv_quota_usage *u, char *err,
                       size_t errlen);

/* ---- the table of counts (pure; one owner at a time) --------------------------------------- */

struct fv_jsquotas_table {
    struct fv_map by; /* day (8 bytes) and name -> the nodes' counts */
};

/* Q1: node's counts u of name (u->day) into t, counter by counter the larger. 1: t changed,
 * 0: it held as much already, FV_ENOMEM (< 0: t unchanged). */
int fv_jsquotas_table_apply(struct fv_jsquotas_table *t, const char *name, const char *node,
                            const struct fv_quota_usage *u);
/* Q2: adds to *sum (its counters; sum->day is not read) every node's counts of name for day
 * but those of node except (NULL: every node's). */
void fv_jsquotas_table_sum(const struct fv_jsquotas_table *t, const char *name, int64_t day,
                           const char *except, struct fv_quota_usage *sum);
/* Calls fn for each of node's entries of day (Q4). */
void fv_jsquotas_table_each(const struct fv_jsquotas_table *t, const char *node, int64_t day,
                            void (*fn)(void *arg, const char *name, const struct fv_quota_usage *u),
                            void *arg);
/* Q5: drops the days before today - 1. FV_OK or FV_ENOMEM (nothing dropped). */
int fv_jsquotas_table_prune(struct fv_jsquotas_table *t, int64_t today);
void fv_jsquotas_table_free(struct fv_jsquotas_table *t);

/* ---- the sync ------------------------------------------------------------------------------ */

struct fv_jsquotas;

struct fv_jsquotas_stats {
    uint64_t applied;   /* other nodes' values that changed this node's table */
    uint64_t published; /* values this node wrote */
    uint64_t failed;    /* puts that failed (Q6: the counts stay pending) */
    uint64_t malformed; /* Q7 */
    uint64_t stale;     /* 1 while following or publishing fails (Q6), else 0 */
    uint64_t pending;   /* names whose counts wait for the batch (or for NATS) now */
    uint64_t position;  /* the bucket stream's sequence followed up to (kvfollow.h) */
};

/* Connects, binds the bucket (making it when missing), reads it whole, and starts the thread.
 * node: this node's name (its entries' keys). kek is copied. */
int fv_jsquotas_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek, const char *node,
                     struct fv_jsquotas **out, char *err, size_t errlen);
/* Q2, the guard's share.others (arg: the struct fv_jsquotas). */
void fv_jsquotas_others(void *arg, const char *name, int64_t day, struct fv_quota_usage *sum);
/* Q3, the guard's share.publish (arg: the struct fv_jsquotas). */
void fv_jsquotas_publish(void *arg, const char *name, const struct fv_quota_usage *own, int now);
/* Q4: this node's own entries of day as the bucket held them, to fn. */
void fv_jsquotas_own(struct fv_jsquotas *s, int64_t day,
                     void (*fn)(void *arg, const char *name, const struct fv_quota_usage *u),
                     void *arg);
void fv_jsquotas_stats(struct fv_jsquotas *s, struct fv_jsquotas_stats *out);
/* Publishes what is pending (one try), stops the thread, closes, wipes and frees. NULL:
 * nothing. */
void fv_jsquotas_close(struct fv_jsquotas *s);

#endif
