/*
 * presences.h - a cluster node's presence (gateway/presence.h over cluster/jspresence.h):
 * opened for roles gateway and storage, nothing for role all (a single node's sessions are
 * its presence). docs/cluster.md, "Presence".
 *
 * Threads: open and close on the starting/stopping thread (close after the devices' lws
 * context is destroyed: closing sessions announce GONE); turn on the ingest loop.
 */
#ifndef FV_SERVER_PRESENCES_H
#define FV_SERVER_PRESENCES_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "crypto/keys.h"
#include "gateway/fleet.h"

struct fv_ingest;
struct fv_jspresence;
struct fv_presence;

struct fv_presences {
    struct fv_jspresence *js;
    struct fv_presence *p;
    uint64_t takeovers; /* as of the last turn */
    void (*wake)(void *);
    void *wake_arg;
};

/* wanted: a storage node's (presence.h fv_presence_deps); wake: wakes the loop (any thread). */
int fv_presences_open(struct fv_presences *ps, const struct fv_config *cfg,
                      const struct fv_kek *kek, struct fv_fleet *fleet, struct fv_ingest *ing,
                      int (*wanted)(void *, const char *), void *wanted_arg, void (*wake)(void *),
                      void *wake_arg, char *err, size_t errlen);
/* What arrived, then the timers (presence.h fv_presence_tick); takeovers: a storage node's
 * shards taken so far (a change asks the gateways again, P5). */
void fv_presences_turn(struct fv_presences *ps, uint64_t takeovers);
/* Logs the counts, closes the transport, frees. */
void fv_presences_close(struct fv_presences *ps);

#endif
