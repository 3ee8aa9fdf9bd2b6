/*
 * jspresence.h - the transport of presence announcements (gateway/presence.h P1-P6) over
 * core NATS: one subject per cluster, fvdl.STREAM.presence, to which every gateway and
 * storage node publishes and subscribes (docs/cluster.md, "Presence"). Core NATS: at most
 * once, nothing replayed after a restart (P4's liveness and P5's SYNC cover what is lost).
 * Every message is sealed under the master key for the subject (jsenvelope.h E1-E2); one
 * that does not open is counted malformed, dropped, and logged at most once a minute.
 *
 * Received messages are decoded on nats.c's subscription thread and queued (at most
 * FV_JSPRES_QUEUE_MAX; beyond, dropped and counted); wake(arg) then wakes the loop, which
 * drains them with fv_jspresence_next.
 *
 * Threads: open and close on the starting/stopping thread; publish and next on the ingest
 * loop (a storage node's loop); counts from any thread.
 */
#ifndef FV_CLUSTER_JSPRESENCE_H
#define FV_CLUSTER_JSPRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include "config/cluster_config.h"
#include "crypto/keys.h"
#include "gateway/presence.h"

#define FV_JSPRES_QUEUE_MAX 100000

struct fv_jspresence;

/* Connects (its own connection, named name) and subscribes; kek (copied) seals and opens.
 * FV_OK, FV_ENOMEM or FV_EIO (err). */
int fv_jspresence_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek, const char *name,
                       void (*wake)(void *), void *wake_arg, struct fv_jspresence **out, char *err,
                       size_t errlen);
/* presence.h's publish (arg: the struct fv_jspresence): encodes and hands to nats.c. */
void fv_jspresence_publish(void *arg, const struct fv_pres_msg *m);
/* The next queued message into m: 1, or 0 when none. */
int fv_jspresence_next(struct fv_jspresence *p, struct fv_pres_msg *m);
/* Unsubscribes (waiting for a callback in progress), flushes, closes. NULL: nothing. */
void fv_jspresence_close(struct fv_jspresence *p);

struct fv_jspres_counts {
    uint64_t published, failed, received, malformed, dropped;
};
void fv_jspresence_counts(struct fv_jspresence *p, struct fv_jspres_counts *out);

#endif
