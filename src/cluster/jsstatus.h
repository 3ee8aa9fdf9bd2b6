/*
 * jsstatus.h - the cluster's state as NATS JetStream reports it, for `fleetvault cluster
 * status` (docs/cluster.md, "Status"): the record stream (state, its cluster leader and
 * replicas), the storage nodes and the shards' leases (jslease.h: the live node.* keys, each
 * shard's owner) and per shard the durable consumers reading PREFIX.SHARD (jsconsume.h:
 * fv-NODE-shard-N) with their positions and lag.
 *
 * Read-only: it connects with fv_natsconn_connect and asks info calls only (stream info, the
 * stream's consumers) and reads the lease bucket; it never makes or changes a stream, a
 * consumer, the bucket or a key.
 *
 * Health: FV_HEALTH_OK; FV_HEALTH_DEGRADED when a shard has no live lease or a stream replica is
 * offline, not current or lagging; FV_HEALTH_DOWN when NATS cannot be reached or the stream is
 * missing (err says which).
 *
 * Threads: any one thread (it owns its connection for the call).
 */
#ifndef FV_CLUSTER_JSSTATUS_H
#define FV_CLUSTER_JSSTATUS_H

#include <stddef.h>

#include "config/cluster_config.h"

struct json_t;

enum fv_health { FV_HEALTH_OK = 0, FV_HEALTH_DEGRADED = 1, FV_HEALTH_DOWN = 2 };

/* The status as a new JSON object into *out (fields: docs/cluster.md, "Status") and its health
 * as the return value; FV_HEALTH_DOWN leaves *out NULL and err saying what failed. wait_ms:
 * how long each JetStream request may take. */
enum fv_health fv_cluster_status(const struct fv_cluster_cfg *cfg, int wait_ms, struct json_t **out,
                                 char *err, size_t errlen);

#endif
