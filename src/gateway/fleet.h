/*
 * fleet.h - the server's in-memory view of every device: latest value and time of every
 * signal, counters, the recent-txid window that de-duplicates resends, rate-limit buckets.
 *
 * It is derived state: rebuilt at start-up by replaying the WAL (fv_fleet_apply for every
 * stored record), then kept up to date as records are accepted.
 *
 * Threads (rule F1): the ingest loop is the only writer. The HTTP API reads it from its own
 * thread, so:
 *  - the device map is locked inside fv_fleet_device, fv_fleet_find, fv_fleet_count and
 *    fv_fleet_list (do not call them holding fv_fleet_lock);
 *  - a device, once created, lives until fv_fleet_free, and its id and client_type never
 *    change: a pointer from fv_fleet_find or fv_fleet_list may be kept and those two fields
 *    read without the lock;
 *  - every other field another thread reads (signals, counters, times, sessions, subject) is
 *    written under fv_fleet_lock and read by other threads only under it (the ingest loop
 *    reads its own writes without it). Holders do no I/O and nothing slow: copy, unlock,
 *    then render. The txid window and rate buckets are the ingest loop's alone.
 *  - on a storage node, sessions is not a count of connections here: 1 while a gateway's
 *    announcement says the device is connected there (gateway/presence.h P4), written on
 *    the node's loop under the lock like the rest.
 *
 * De-duplication window: the last FV_DEDUP_WINDOW txids of each device (a resend of anything
 * older is stored again). Devices resend within seconds to minutes; at 1 record/s the window
 * covers 17 minutes.
 */
#ifndef FV_GATEWAY_FLEET_H
#define FV_GATEWAY_FLEET_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "util/ratelimit.h"
#include "util/map.h"
#include "wire/payload.h"

#define FV_DEDUP_WINDOW 1024 /* at most 65535: the set holds ring positions in 16 bits */

/* Latest state follows the device's clock, within reason: a value stamped more than this far
 * ahead of the server's clock (at receipt) is stored and queryable but never becomes a
 * signal's latest value, so one bogus far-future time cannot freeze it (docs/operations.md,
 * "Device clocks"). */
#define FV_FLEET_FUTURE_MS (5 * 60 * 1000)

struct fv_signal_state {
    uint32_t field;
    uint64_t time_ms;
    struct fv_value value;
};

/* The ring holds the txid hashes in insertion order (for eviction); the set indexes it by
 * hash: open addressing of 1 + a ring position, 0 = empty (2 bytes a slot, not a hash's 8: a
 * full window is 8 KB + 4 KB, it was 8 + 16). */
struct fv_txwindow {
    uint16_t *set;
    uint32_t set_cap;
    uint64_t *ring;
    uint32_t ring_cap, ring_head, ring_n;
};

struct fv_device {
    char id[65];
    char client_type[32];
    char subject[72];     /* the owner period the state belongs to: the current one's subject
                             name ("" until looked up) */
    uint64_t subject_gen; /* the registry generation it was looked up at */
    /* The ingest loop's alone (gateway/owners.h): the current period's start, and the last
     * earlier period a record fell in (records go to the period of their creation time). */
    int64_t subject_since;
    char past_subject[72];
    int64_t past_since, past_until;
    uint64_t past_gen;      /* registry generation + 1 it was looked up at (0: none) */
    uint32_t past_keep;     /* minimisation: the classes that period's consents keep */
    uint64_t past_keep_gen; /* registry generation + 1 past_keep was computed at */
    uint32_t keep_classes;  /* store classes its consents let us store (minimisation) */
    uint64_t keep_gen;      /* registry generation + 1 it was computed at (0: never) */
    uint64_t records, datums, duplicates, rate_limited;
    uint64_t first_ms, last_ms; /* record times (device clock) */
    uint64_t last_received_ms;  /* server clock */
    int sessions;               /* connections open now */
    uint64_t session_id;        /* the newest open session (downlink target), 0 if none */
    /* Presence across gateways (gateway/presence.h), the ingest loop's: the stamp of the
     * newest connection heard of anywhere; on a gateway, whether this one meters the device
     * (its rate buckets are the device's); on a storage node, which gateway holds it (1 + an
     * index into the gateways heard, 0: none). */
    uint64_t claim_ms;
    uint16_t claim_gw;
    uint8_t claim_here;
    /* Sized by need (issue 13: memory per connected vehicle): the first record sizes signals
     * exactly, later ones grow it by half; the index is 4 bytes a slot, not a map's 40. */
    struct fv_signal_state *signals; /* in the order first seen */
    uint32_t nsignals, capsignals;
    uint32_t *sigidx;   /* open addressing on field: 1 + index in signals, 0 = empty */
    uint32_t capsigidx; /* a power of two, or 0 */
    uint32_t nbuckets;  /* rate limiting: buckets, allocated on first use (fv_device_bucket) */
    struct fv_bucket *buckets;
    struct fv_txwindow recent;
};

struct fv_fleet {
    struct fv_map devices; /* id -> struct fv_device* (under mu) */
    pthread_mutex_t mu;    /* F1 */
};

/* Initialises an empty fleet (a zeroed struct is one too, on glibc). */
void fv_fleet_init(struct fv_fleet *f);
/* F1: the lock for reading (other threads) or writing (ingest loop) devices' fields. */
void fv_fleet_lock(const struct fv_fleet *f);
void fv_fleet_unlock(const struct fv_fleet *f);

/* Finds or creates a device; NULL on out-of-memory. */
struct fv_device *fv_fleet_device(struct fv_fleet *f, const char *id, const char *client_type);
struct fv_device *fv_fleet_find(const struct fv_fleet *f, const char *id);
size_t fv_fleet_count(const struct fv_fleet *f);
/* Every device now, in no particular order: *out is a malloc'd array (free it) of *n
 * pointers. FV_OK or FV_ENOMEM. */
int fv_fleet_list(const struct fv_fleet *f, struct fv_device ***out, size_t *n);

/* The device's token bucket for rate rule `rule` of a configuration of nrules rules (ingest
 * loop): allocated on the first call (a device that is never limited holds none); NULL when
 * out of memory or rule is not below nrules. */
struct fv_bucket *fv_device_bucket(struct fv_device *d, int rule, int nrules);

/* Has this device stored a record with this txid recently? */
int fv_device_has_txid(const struct fv_device *d, const void *txid, size_t len);
/* Remembers a stored txid (evicting the oldest past the window). FV_OK or FV_ENOMEM. */
int fv_device_add_txid(struct fv_device *d, const void *txid, size_t len);

/* Accounts one stored record: counters, times and, for a decoded V record, the latest state
 * of each signal (a value older than the one held is ignored, and so is one stamped more than
 * FV_FLEET_FUTURE_MS after received_ms, or after the server's clock now if received_ms is 0).
 * FV_OK or FV_ENOMEM. */
int fv_device_apply(struct fv_device *d, uint64_t record_ms, uint64_t received_ms,
                    const struct fv_vrecord *v);

/* Erasure: drops the device's latest values and counters (its connections stay; what it
 * sends next is refused while its subject is erased). Call holding fv_fleet_lock. */
void fv_device_wipe(struct fv_device *d);

const struct fv_signal_state *fv_device_signal(const struct fv_device *d, uint32_t field);

void fv_fleet_free(struct fv_fleet *f);

#endif
