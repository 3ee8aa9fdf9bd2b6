/*
 * session.h - the device side of the gateway: fleet-telemetry WebSocket sessions over mutual
 * TLS, and the record pipeline that each binary message goes through:
 *
 *   frame -> envelope decode -> identity checks -> rate limit -> de-duplication -> payload
 *   normalised (vin := certificate id) and minimised -> sealed with the subject's data key ->
 *   appended to the record log -> handed to the storage sink -> latest state -> ack queued;
 *   the ack is sent once the log says the record is durable (wal/reclog.h, L2).
 *
 * Invariants:
 *  S1 an ack for a stored record is queued only when its log seq <= durable;
 *  S2 an ack for a duplicate is queued no earlier than the original's (it waits for the
 *     log's last appended seq at the time the duplicate arrived);
 *  S3 identity comes only from the verified chain's leaf (SSL_get0_verified_chain), never
 *     from the payload or from certificates the client appended;
 *  S4 a message that is refused leaves no trace in the log, the fleet state or the dedup
 *     window; only metrics change;
 *  S5 a session's pending acks refer to it by id; a closed session's acks are dropped;
 *  S6 memory is bounded per connection: replies queued for a device that does not read them
 *     are capped in bytes (FV_SESSION_OUT_MAX), an echoed txid is at most FV_TXID_MAX bytes,
 *     a device has at most FV_SESSIONS_PER_DEVICE connections (a further one is refused; in
 *     a cluster all on one gateway: gateway/presence.h P2), and a peer that answers no ping
 *     within the idle timeout is closed.
 *
 * Threads: everything here runs on the ingest loop (the lws service thread of the devices'
 * vhost), except what the log's notify and other threads may call: nothing; they wake the
 * loop (lws_cancel_service), which then calls fv_ingest_flush_durable.
 */
#ifndef FV_GATEWAY_SESSION_H
#define FV_GATEWAY_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "config/config.h"
#include "gateway/fleet.h"
#include "gateway/metrics.h"
#include "wal/reclog.h"
#include "wire/downlink.h"

struct fv_keystore;
struct fv_policy;
struct fv_presence;

#define FV_TXID_MAX            1024       /* longer txids are refused (never echoed) */
#define FV_SESSION_OUT_MAX     (1u << 20) /* queued reply bytes before a device is dropped */
#define FV_SESSIONS_PER_DEVICE 4          /* a 5th connection closes the oldest */

/* What the ingest loop works with; all owned by the caller and outliving the ingest. */
struct fv_keyfetch;

struct fv_ingest_deps {
    const struct fv_config *cfg;
    struct fv_fleet *fleet;
    struct fv_metrics *metrics;
    struct fv_reclog log;
    struct fv_record_sink sink;
    struct fv_keystore *keys;
    const struct fv_store_config *store_cfg; /* signal classes (minimisation) */
    const struct fv_policy *policy;          /* which purposes use each class */
    /* When may the ingest take more records? 0: yes; else the loop stops reading from
     * sockets (backpressure: the storage side is behind) until it returns 0 again. */
    int (*storage_full)(void *arg);
    void *storage_full_arg;
    /* A cluster gateway's key fetcher (keyfetch.h), with the keystore in async mode
     * (crypto/keys.h fv_keystore_set_async); NULL elsewhere. */
    struct fv_keyfetch *keyfetch;
};

struct fv_ingest;

/* Makes the ingest context. FV_OK or FV_ENOMEM. */
int fv_ingest_new(const struct fv_ingest_deps *deps, struct fv_ingest **out);
/* Frees it: call after the lws context holding its sessions was destroyed. */
void fv_ingest_free(struct fv_ingest *ing);

/* The devices' protocol table for lws_create_vhost; the vhost's user pointer (vi.user) must
 * be the struct fv_ingest. */
const struct lws_protocols *fv_ingest_protocols(void);

/* Ingest loop, after the key fetcher's wake (keyfetch.h K4): stores each fetched key and
 * resumes the connections that waited for it (a key that could not be fetched closes its
 * connection; the device reconnects). */
void fv_ingest_keys_fetched(struct fv_ingest *ing);

/* Sends the acks of every record now durable (S1). Ingest loop. */
void fv_ingest_flush_durable(struct fv_ingest *ing);

/* Tells the ingest that the subjects registry changed (an owner change, consent): every
 * device's subject and kept classes are looked up again on its next record. */
void fv_ingest_registry_changed(struct fv_ingest *ing);
/* Any thread: data keys were destroyed through another keystore (crypto/keys.h); before its
 * next record the ingest drops its cached keys and subjects and reads them again. */
void fv_ingest_keys_changed(struct fv_ingest *ing);
/* Ingest loop: acts on fv_ingest_keys_changed now (the ingest does it before each record;
 * the server also before the store's maintenance, which reads keys through the same
 * keystore). The keystore's earlier key pointers are then invalid. */
void fv_ingest_refresh_keys(struct fv_ingest *ing);

/* The device's current subject (owner period, privacy/subjects.h), cached per device and
 * looked up again after fv_ingest_registry_changed. A new period wipes the device's state. */
const char *fv_ingest_subject(struct fv_ingest *ing, struct fv_device *d);
/* The same for a given registry generation (start-up recovery uses generation 0, which the
 * ingest starts at, so what recovery looked up stays cached). fleet: the device's fleet, whose
 * lock a wipe takes (fleet.h F1); NULL before other threads run. */
const char *fv_device_subject(struct fv_keystore *keys, const struct fv_fleet *fleet, uint64_t gen,
                              struct fv_device *d);

/* Backpressure: re-evaluates storage_full and pauses or resumes reading from every session
 * (lws_rx_flow_control). Ingest loop; call on every loop turn. */
void fv_ingest_pace(struct fv_ingest *ing);

/* Idle check (S6), at most once a second: pings a device silent for a third of
 * cfg->device_idle_ms and closes one silent (no message, no pong) for all of it. Ingest loop;
 * call on every loop turn. */
void fv_ingest_sweep(struct fv_ingest *ing);

/* Downlink: queues one binary frame to a connected device (its newest session).
 * FV_ENOENT if not connected, FV_ELIMIT if its reply queue is full. */
int fv_ingest_downlink(struct fv_ingest *ing, const char *device_id, const void *msg, size_t len);
/* Sets the capability that hears devices' replies and connections (wire/downlink.h D2); at
 * most one, set before the loop runs; NULL: none. The listener must outlive the ingest. */
void fv_ingest_set_listener(struct fv_ingest *ing, const struct fv_downlink_listener *l);
/* A cluster's gateway: connections and closes are announced (gateway/presence.h P1, P4);
 * set before the loop runs; p must outlive the ingest. NULL: none. */
void fv_ingest_set_presence(struct fv_ingest *ing, struct fv_presence *p);
/* Closes every connection of d (presence.h P2: the device connected on another gateway), as
 * the idle check closes one; counted in connections_moved. The number closed. Ingest loop. */
int fv_ingest_close_device(struct fv_ingest *ing, const struct fv_device *d);

#endif
