/*
 * jslease.h - a storage node's shard leases in a NATS JetStream KV bucket (docs/cluster.md,
 * "Leases"): which node takes (consumes, stores and answers for) which shard.
 *
 * The bucket cluster.lease_bucket (made by the first node when missing: history 1, file
 * storage, cluster.replicas, TTL = cluster.lease_ttl_ms, i.e. the server removes a key
 * lease_ttl_ms after its last write). Keys:
 *   node.NAME -> the shards the node may take: "*" (all) or "0,1,5" (cluster.owned_shards)
 *   shard.N   -> the owner's NAME; "" when its owner released it
 *
 *  E1 acquire: kvStore_Create (the key absent: never written, expired or deleted) or
 *     kvStore_Update at the revision of a released ("") value; renew: kvStore_Update at the
 *     revision this node last wrote, every cluster.lease_renew_ms. Every write is a
 *     compare-and-set: of two nodes, one wins.
 *  E2 the deadline: a lease is held until t0 + ttl - margin, t0 being this node's monotonic
 *     time just before it sent the request that wrote the key (margin: ttl / 10). The server
 *     stamps that write no earlier than t0 and removes the key no earlier than stamp + ttl,
 *     so the node stops (fv_jslease_holds false, whatever its loop is doing) at least margin
 *     before any other node can create the key. The margin covers the two clocks' rates
 *     differing; a NATS server clock stepped forward by more than it breaks the argument.
 *  E3 a renewal that fails: the key is read back; owned by another node or at another
 *     revision, the lease is lost at once; unreadable, it is kept until its deadline (E2)
 *     and renewed again at the next round.
 *  E4 fair share: K live nodes (node.* keys), share = ceil(shards / K). A node takes unowned
 *     shards it may take while it holds fewer than its share, and beyond its share those
 *     that no other live node below its share may take (so that owned_shards restrictions
 *     leave no shard unowned that some node may take). A node above its share releases, the
 *     highest numbers first, shards that a live node below its share may take: it stops
 *     holding first, then writes "" (compare-and-set).
 *  E5 a node.NAME key that exists when the node starts (its previous run's, until it
 *     expires, or another node given the same name) is never taken over: the node waits for
 *     it to expire, so two processes never hold leases under one name.
 *  E6 close: every lease released and the node key deleted (another node takes the shards
 *     at its next round, without waiting for the TTL).
 *
 * Threads: open, tick and close on the storage node's loop thread (KV requests wait at most
 * min(renew, 2 s)); fv_jslease_holds and fv_jslease_counts from any thread (atomics).
 */
#ifndef FV_CLUSTER_JSLEASE_H
#define FV_CLUSTER_JSLEASE_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "config/cluster_config.h"

struct fv_jslease;

/* Opens (or makes) the bucket on the connection nc with a JetStream context of its own.
 * node: this node's name. FV_OK, or FV_EIO with err saying what failed. */
int fv_jslease_open(const struct fv_cluster_cfg *cfg, const char *node, natsConnection *nc,
                    struct fv_jslease **out, char *err, size_t errlen);
/* One round when one is due (every lease_renew_ms; at once after open): the node key, the
 * renewals (E2, E3), the fair share (E4). now_ns: fv_mono_ns(). */
void fv_jslease_tick(struct fv_jslease *l, uint64_t now_ns);
/* 1 while this node holds shard's lease (E2): it may take its records and answer for its
 * subjects. Any thread. */
int fv_jslease_holds(const struct fv_jslease *l, uint32_t shard, uint64_t now_ns);
/* Leases held now, and shards acquired that this node did not hold the moment before
 * (takeovers), ever. Any thread. */
void fv_jslease_counts(const struct fv_jslease *l, uint32_t *held, uint64_t *takeovers);
/* E6, then frees. NULL is fine. */
void fv_jslease_close(struct fv_jslease *l);

/* ---- the bucket as `fleetvault cluster status` reads it -------------------------------- */

struct fv_lease_node {
    char name[65];
    int64_t seen_ns; /* the server's time of its key's last write (ns since the epoch) */
    uint32_t held;   /* shard keys naming it */
    uint8_t allowed[FV_CLUSTER_MAX_SHARDS];
};
struct fv_lease_view {
    int bucket;                 /* 0: the bucket does not exist (no storage node ran yet) */
    struct fv_lease_node *node; /* the live nodes, in key order */
    size_t nnodes;
    char (*owner)[65]; /* per shard: the owner's name, "" none or released */
    uint64_t *rev;     /* per shard: the key's revision (0: absent) */
    int64_t *shard_ns; /* per shard: when its key was last written (server time, ns) */
};
/* Reads every key of cfg's bucket on js (requests waiting wait_ms): FV_OK (a missing bucket
 * too: bucket 0), FV_ENOMEM, or FV_EIO with err. Free with fv_lease_view_free. */
int fv_lease_read(const struct fv_cluster_cfg *cfg, jsCtx *js, int64_t wait_ms,
                  struct fv_lease_view *v, char *err, size_t errlen);
void fv_lease_view_free(struct fv_lease_view *v);

#endif
