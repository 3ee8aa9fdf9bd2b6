/*
 * downlinks.h - per role, which downlink the capabilities (the VPP, campaigns) send with and
 * who hears the devices' replies and connects (wire/downlink.h; docs/cluster.md, "Downlink"):
 *
 *  all      the in-process downlink (gateway/downlink.h); the ingest's listener hands replies
 *           and connects to the capability that listens for them.
 *  gateway  commands from NATS go into the in-process downlink as remote ones
 *           (cluster/jsdownlink.h N2); the ingest's listener publishes replies and connects
 *           on NATS (N3). The gateway's own VPP and campaigns hear nothing (no API drives
 *           them there).
 *  storage  the capabilities send over NATS (N1); replies and connects from the gateways
 *           reach them from nats.c's thread (N4).
 *  api      as all, with no devices: its VPP and campaigns send to no one and hear nothing
 *           (they run on the storage nodes; server/clusterapi.h).
 *
 * Threads: open, wire and close on the starting/stopping thread; fv_downlinks_metrics on the
 * ingest loop.
 */
#ifndef FV_SERVER_DOWNLINKS_H
#define FV_SERVER_DOWNLINKS_H

#include <stddef.h>

#include "config/config.h"
#include "crypto/keys.h"
#include "wire/downlink.h"

struct fv_gw_downlink;
struct fv_jsdownlink;
struct fv_vpp;
struct fv_campaign;
struct fv_ingest;
struct fv_metrics;

struct fv_downlinks {
    const struct fv_config *cfg;
    struct fv_gw_downlink *local; /* the in-process downlink (not owned) */
    struct fv_jsdownlink *js;     /* gateway, storage: over NATS */
    struct fv_vpp *vpp;
    struct fv_campaign *campaigns;
    struct fv_downlink_listener listen; /* both capabilities' */
};

/* Before the capabilities open: connects to NATS on a gateway or storage node. */
int fv_downlinks_open(struct fv_downlinks *d, const struct fv_config *cfg, const struct fv_kek *kek,
                      struct fv_gw_downlink *local, char *err, size_t errlen);
/* The downlink the capabilities are given. */
struct fv_downlink fv_downlinks_port(struct fv_downlinks *d);
/* Once they are open: the ingest's listener and, in a cluster, the subscription. */
int fv_downlinks_wire(struct fv_downlinks *d, struct fv_ingest *ing, struct fv_vpp *vpp,
                      struct fv_campaign *campaigns, char *err, size_t errlen);
/* Copies the cluster downlink's counters into m. */
void fv_downlinks_metrics(struct fv_downlinks *d, struct fv_metrics *m);
/* Unsubscribes and closes (before the capabilities and the in-process downlink go); logs a
 * gateway's or storage node's counts. */
void fv_downlinks_close(struct fv_downlinks *d, struct fv_metrics *m);

#endif
