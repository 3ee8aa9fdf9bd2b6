/*
 * presence.h - where a device is connected, across a cluster's gateways (docs/cluster.md,
 * "Presence"): announcements over core NATS (cluster/jspresence.h carries them), never
 * per-record shared state, nothing durable on a gateway.
 *
 *  P1 A gateway announces every connection it accepts: CLAIM (device D connected on gateway G
 *     with stamp T). T is the gateway's clock in ms, raised above every stamp it heard for D
 *     (T = max(now, last + 1)), so a reconnection is newer than what the gateway knew.
 *  P2 The newest claim wins: (T, G) compared as a pair, G by name on equal T. A gateway
 *     holding connections of D that hears a newer claim closes them (as a single node closes
 *     a connection it will not keep; counted in connections_moved); one that hears an older
 *     claim while it holds D announces its own again, so both sides agree. One device, one
 *     gateway, within a NATS round trip.
 *  P3 The rate buckets travel with the device: the gateway that meters D (its last claim was
 *     D's newest) answers a newer claim with BUCKETS (its levels now, per rule topic) to the
 *     claimant, and stops metering D. The claimant sets each bucket to
 *     min(its own level, handed level - tokens it took since its claim): below zero is a debt
 *     that refills at the rule's rate. Every gateway must have the same rate_limits.
 *  P4 A gateway announces GONE when D's last connection here closes, and ALIVE (with its boot
 *     time) every FV_PRES_ALIVE_MS. A storage node shows D connected while the newest claim
 *     it heard is not gone and its gateway is alive: heard within FV_PRES_DEAD_MS, same boot.
 *  P5 A storage node starting asks with SYNC; every gateway announces its connected devices
 *     again (P1 stamps unchanged). It asks again when it took shards over
 *     (fv_presence_resync) or hears a gateway it had given up (FV_PRES_SYNC_GAP_MS apart).
 *  P6 The bound: a device gets at most rate x T + burst records of a rule over T seconds,
 *     plus, per claim, what the claimant accepted before the BUCKETS arrived (at most one
 *     burst; repaid as debt once they arrive) or, if the metering gateway died, one burst.
 *  P7 Counters: a gateway sums each device's refusals for the rate limit and duplicates it
 *     acked again, and publishes COUNTS (the deltas) at most once a second per device that
 *     had any; a storage node adds them to the device's rate_limited and duplicates.
 *
 * Threads: everything on the ingest loop (the storage node's loop), including
 * fv_presence_take for the messages the transport queued; the fleet's fields are written
 * under fv_fleet_lock (fleet.h F1). The codec is pure.
 */
#ifndef FV_GATEWAY_PRESENCE_H
#define FV_GATEWAY_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/fleet.h"
#include "util/ratelimit.h"

#define FV_PRES_ALIVE_MS    1000
#define FV_PRES_DEAD_MS     4000
#define FV_PRES_SYNC_GAP_MS 2000 /* P5: SYNCs at least this far apart after the first */
#define FV_PRES_NAME_MAX    64
#define FV_PRES_VERSION     1
#define FV_PRES_MSG_MAX     (4 + 3 * (FV_PRES_NAME_MAX + 1) + 8 + FV_RATE_MAX_RULES * 40)

enum {
    FV_PRES_CLAIM = 1,
    FV_PRES_GONE,
    FV_PRES_ALIVE,
    FV_PRES_SYNC,
    FV_PRES_BUCKETS,
    FV_PRES_COUNTS
};
#define FV_PRES_DUPLICATES   "duplicates" /* COUNTS: the levels' topics (P7) */
#define FV_PRES_RATE_LIMITED "rate_limited"

struct fv_pres_level {
    char topic[32];
    double tokens;
};

struct fv_pres_msg {
    int kind;
    char gateway[FV_PRES_NAME_MAX + 1]; /* the sender ("" from a storage node: SYNC) */
    char device[FV_PRES_NAME_MAX + 1];  /* CLAIM, GONE, BUCKETS */
    char extra[FV_PRES_NAME_MAX + 1];   /* CLAIM: the client type; BUCKETS: the claimant */
    uint64_t stamp;                     /* the claim's (P1); ALIVE: the gateway's boot time */
    int nlevels;                        /* BUCKETS; COUNTS (P7: the deltas by name) */
    struct fv_pres_level levels[FV_RATE_MAX_RULES];
};

/* Into buf (FV_PRES_MSG_MAX bytes will do): the length, or -1 for a name too long. Pure. */
long fv_pres_encode(const struct fv_pres_msg *m, unsigned char *buf, size_t cap);
/* FV_OK or FV_EPROTO (another version, a bad kind, truncated, a NUL in a name). Pure. */
int fv_pres_decode(const unsigned char *data, size_t n, struct fv_pres_msg *m);

struct fv_ingest;
struct fv_presence;

struct fv_presence_deps {
    int gateway;      /* 1: a gateway (P1-P3, P4's announcements); 0: a storage node */
    const char *name; /* this node's name (a gateway's, unique in the cluster) */
    struct fv_fleet *fleet;
    struct fv_ingest *ing;              /* gateway: whose connections P2 closes */
    const struct fv_rate_config *rates; /* gateway: NULL when rate limits are off */
    /* Sends a message to every node (the transport copies it). */
    void (*publish)(void *arg, const struct fv_pres_msg *m);
    void *publish_arg;
    /* Storage node: may a device this node does not know yet be added (its shard is this
     * node's)? NULL: yes. */
    int (*wanted)(void *arg, const char *device_id);
    void *wanted_arg;
};

struct fv_presence_counts {
    uint64_t moved;         /* gateway: connections closed for a newer claim elsewhere (P2) */
    uint64_t handed;        /* BUCKETS sent (P3) */
    uint64_t taken;         /* BUCKETS applied (P3) */
    uint64_t gateways_lost; /* storage: gateways not heard for FV_PRES_DEAD_MS or restarted */
};

int fv_presence_new(const struct fv_presence_deps *d, struct fv_presence **out);
void fv_presence_free(struct fv_presence *p);

/* Gateway (session.c): a connection of d was established / closed (d->sessions counts it
 * already / no longer). */
void fv_presence_connected(struct fv_presence *p, struct fv_device *d);
void fv_presence_closed(struct fv_presence *p, struct fv_device *d);
/* Gateway (session.c): d had a duplicate acked again / a record refused for the rate limit
 * (P7: sent with the next tick). */
void fv_presence_counted(struct fv_presence *p, struct fv_device *d, int duplicate);
/* Any node: one message from the transport. */
void fv_presence_take(struct fv_presence *p, const struct fv_pres_msg *m);
/* Every loop turn: ALIVE on a gateway (P4), SYNC once and the dead gateways' devices on a
 * storage node (P4, P5). */
void fv_presence_tick(struct fv_presence *p);
void fv_presence_counts(const struct fv_presence *p, struct fv_presence_counts *out);
/* Storage node: its shards changed (a takeover); SYNC again at the next tick (P5). */
void fv_presence_resync(struct fv_presence *p);

#endif
