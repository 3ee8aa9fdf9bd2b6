/*
 * clusteraudit.h - an audit search across a cluster (docs/cluster.md, "Queries through an
 * api node", rule 12; clusterapi.h Q8): every node keeps its own audit log, so a privacy
 * officer's GET /api/v1/audit on an api node is the api node's own search joined with each
 * storage node's, every entry tagged with the node whose log holds it (an entry's seq and
 * hash chain belong to that node's log: `fleetvault audit verify` runs there).
 *
 * The answer: {"entries": [...], "count": N, "matched": M, "truncated": bool, "nodes":
 * [names]} - the newest `limit` entries of all logs, oldest first (by ts, then node name,
 * then seq), each with "node"; matched summed over the logs; nodes: the logs searched.
 *
 * Threads: the API thread of the node answering (no I/O: JSON in, JSON out).
 */
#ifndef FV_SERVER_CLUSTERAUDIT_H
#define FV_SERVER_CLUSTERAUDIT_H

#include <stdint.h>

#include "api/api.h"
#include "cluster/jsquery.h"
#include "util/buf.h"

/* A single node's search answer (api/audit_api.c) in body, rewritten with "node" in each
 * entry and "nodes": [node]. FV_OK, FV_EINVAL (not such an answer), FV_ENOMEM. */
int fv_clusteraudit_tag(struct fv_buf *body, const char *node);

/* Joins own (a tagged answer: the api node's) with the storage nodes' tagged answers in
 * ans[0..n) (status 200; the others are skipped: an owner that answers "not here", Fv-Here
 * 0, for every shard but its lowest), one per node (a node answering twice, its leases
 * moving meanwhile, counts once), and keeps the newest limit. out gets the answer, or a 502
 * naming the shard whose answer is malformed. */
void fv_clusteraudit_join(const struct fv_buf *own, const struct fv_jsq_answer *ans, uint32_t n,
                          long limit, struct fv_http_response *out);

#endif
