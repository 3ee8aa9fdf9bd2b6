/*
 * clusterven.h - the OpenADR VEN's history reports across a cluster (docs/cluster.md rule
 * 17): a storage node's store holds only the shards it leases, so the VEN that runs on it
 * asks every shard's owner for its part of a history report and adds the parts.
 *
 *  V1 history (the VEN's store op, openadr/ven.h N11): one sealed request to every shard
 *     (cluster/jsquery.h; path FV_CLUSTER_XOADR, principal and role "openadr-ven") with the
 *     window and the sites the VEN's VPP has enrolled now; each owner answers the sums over
 *     those of them its shard holds (api/oadr_store.h H1, audited there: H2); their sums,
 *     added, are the report (the intervals' online flags or'ed). An answer in pieces (J1) is
 *     pulled whole.
 *  V2 all or nothing: a shard whose owner does not answer within cluster.query_timeout_ms, or
 *     answers anything but 200 with n intervals, fails the report (err names the shard and
 *     why): the VEN sends nothing rather than a report that counts that shard's sites as 0
 *     (it logs and audits the failure, N11). The sites go in each request: a list longer
 *     than the NATS connection's max_payload fails the same way, saying so.
 *  V3 the forecast op (SIMPLE levels) stays the local store's: a site whose shard another
 *     node holds is forecast from its latest sample (api/api.h fv_api_vpp_forecast).
 *
 * Threads: open and close on the server's thread; the ops on the VEN's thread only (the
 * calls of one jsquery asker, one at a time); the wake from nats.c's threads.
 */
#ifndef FV_SERVER_CLUSTERVEN_H
#define FV_SERVER_CLUSTERVEN_H

#include <stddef.h>

#include "openadr/ven.h"

struct fv_config;
struct fv_kek;
struct fv_vpp;
struct fv_clusterven;

/* The request's path (never an HTTP endpoint: only fvq.> carries it). */
#define FV_CLUSTER_XOADR "/cluster/openadr/history"

/* Connects an asker of its own to the cluster's NATS. vpp: the enrolled sites (must outlive
 * it). FV_OK, FV_ENOMEM, or FV_EIO with err. */
int fv_clusterven_open(const struct fv_config *cfg, const struct fv_kek *kek, struct fv_vpp *vpp,
                       struct fv_clusterven **out, char *err, size_t errlen);
/* local's ops with history replaced by V1's (arg: c for history; local's forecast is kept,
 * called with local->arg). */
struct fv_ven_store_ops fv_clusterven_ops(struct fv_clusterven *c,
                                          const struct fv_ven_store_ops *local);
/* After the VEN is closed. NULL is fine. */
void fv_clusterven_close(struct fv_clusterven *c);

#endif
