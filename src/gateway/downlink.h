/*
 * downlink.h - the in-process downlink (wire/downlink.h D1): a queue any thread appends to,
 * drained on the ingest loop into the devices' sessions.
 *
 * Threads: fv_gw_downlink_port's send from any thread (it takes the queue's mutex for a
 * list append and wakes the loop); new, drain and free on the ingest loop's thread.
 */
#ifndef FV_GATEWAY_DOWNLINK_H
#define FV_GATEWAY_DOWNLINK_H

#include "gateway/session.h"
#include "wire/downlink.h"

struct fv_gw_downlink;

/* wake(arg) is called after each send (any thread; it must only wake the loop). */
int fv_gw_downlink_new(struct fv_ingest *ing, struct fv_metrics *m, void (*wake)(void *),
                       void *wake_arg, struct fv_gw_downlink **out);
struct fv_downlink fv_gw_downlink_port(struct fv_gw_downlink *dl);
/* The same queue for commands from the cluster (cluster/jsdownlink.h N2): every gateway gets
 * each one, so a device not connected here counts in downlink_not_here, not as dropped. */
struct fv_downlink fv_gw_downlink_remote_port(struct fv_gw_downlink *dl);
/* Ingest loop: hands every queued message to its device's newest session (D1). */
void fv_gw_downlink_drain(struct fv_gw_downlink *dl);
/* Frees what is still queued. */
void fv_gw_downlink_free(struct fv_gw_downlink *dl);

#endif
