/*
 * mqtt.h - live values over MQTT for Home Assistant (docs/mqtt.md): the latest value of each
 * configured signal of each consenting owner's vehicle or energy site, published retained to
 * PREFIX/DEVICE/SIGNAL, with Home Assistant MQTT discovery messages
 * (DISCOVERY/sensor/UNIQUE_ID/config, retained) so the sensors appear by themselves.
 *
 * Rules:
 *  Q1 a device is published only while its current subject (owner period) consents to
 *     FV_MQTT_PURPOSE now, and a value only if that consent also held at the value's time
 *     (privacy/subjects.h fv_consent_servable: data collected without consent is never
 *     published). Nothing recorded means nothing published (opt-in).
 *  Q2 DEVICE is the per-purpose pseudonym of the device for FV_MQTT_PURPOSE (privacy/guard.h
 *     G10): stable for one owner period (the owner's Home Assistant keeps its entities),
 *     different for the next owner, unlinkable to other purposes' pseudonyms and to the VIN.
 *  Q3 nothing of a subject is published before its "mqtt.start" audit entry is written: the
 *     publisher queues audit records, the API thread (the audit log's owner) writes them
 *     (fv_mqtt_audit_drain), and the publisher waits for the write. "mqtt.stop" records the
 *     end (consent withdrawn, new owner, erasure, shutdown); "mqtt.publish" summarises the
 *     values sent per subject every audit_summary and when publishing stops.
 *  Q4 when a device stops, each retained topic published for it (values and discovery) is
 *     cleared with an empty retained message, retried each cycle until the broker took it.
 *  Q5 only changed values are sent, at most once per interval; after a (re)connection to the
 *     broker everything is sent again (a broker without persistence lost it).
 *  Q6 no place: signals that reveal one (wire/places.h) are refused by the configuration and
 *     never published.
 *  Q7 after each connection the publisher reads what the broker retains under its prefixes
 *     (for ORPHAN_WINDOW_MS) and empties the topics of every device it does not publish now:
 *     an owner who withdrew, changed or was erased while the server was stopped or the
 *     broker unreachable leaves nothing behind. One server per topic and discovery prefix.
 *
 * Threads: fv_mqtt_start, fv_mqtt_stop and fv_mqtt_free on the server's thread. The publisher
 * runs on a thread of its own with a keystore of its own (crypto/keys.h: one per thread); it
 * reads the fleet under F1 (gateway/fleet.h: copy under the lock, publish outside it) and
 * never touches the ingest loop. libmosquitto runs the connection on its network thread
 * (reconnecting with backoff). fv_mqtt_audit_drain from any thread (a short-held mutex; in
 * the server, the API thread).
 */
#ifndef FV_MQTT_MQTT_H
#define FV_MQTT_MQTT_H

#include <stddef.h>
#include <stdint.h>

#include "config/mqtt_config.h"
#include "crypto/keys.h"
#include "gateway/fleet.h"
#include "gateway/metrics.h"
#include "privacy/policy.h"

#define FV_MQTT_PURPOSE     "home_automation"
#define FV_MQTT_AUDIT_QUEUE 4096 /* queued audit records; past it the publisher waits */

struct fv_mqtt;

struct fv_mqtt_deps {
    const struct fv_mqtt_cfg *cfg; /* enabled */
    struct fv_fleet *fleet;
    struct fv_metrics *metrics;
    const char *catalog_path;           /* DATA/catalog.db: the publisher's own keystore */
    const struct fv_kek *kek;           /* copied */
    const unsigned char *pseudo_secret; /* 32 bytes (guard.h), copied */
    const struct fv_policy *policy;     /* the purposes consent may name; outlives the publisher */
    void (*wake_audit)(void *arg);      /* wakes the thread that drains (may be NULL) */
    void *wake_arg;
};

/* Opens the publisher's keystore, reads the password file, sets up the client (TLS when
 * configured) and starts the publisher and network threads. The broker may be unreachable:
 * that is logged and retried, not an error. cfg, fleet, metrics and policy must outlive
 * fv_mqtt_free. FV_OK, or an error with err saying why (never the password). */
int fv_mqtt_start(const struct fv_mqtt_deps *d, struct fv_mqtt **out, char *err, size_t errlen);

/* Stops both threads (retained values stay on the broker: they are the last known values);
 * queues the last summaries and "mqtt.stop" records. NULL is a no-op. */
void fv_mqtt_stop(struct fv_mqtt *m);

/* One queued audit record (Q3): kind "mqtt", principal "mqtt-publisher", purpose
 * FV_MQTT_PURPOSE, the subject by its keyed pseudonym (guard.h G6). Valid during the call. */
struct fv_mqtt_audit {
    const char *action; /* "mqtt.start", "mqtt.stop", "mqtt.publish" */
    const char *subject;
    const char *reason;
    const char *extra_json; /* {"device":PSEUDONYM,...} */
};

/* Calls fn for each queued record, oldest first, and forgets those fn returned 0 for (it
 * stops at the first failure: the rest stay queued). Returns the number written. */
size_t fv_mqtt_audit_drain(struct fv_mqtt *m, int (*fn)(void *arg, const struct fv_mqtt_audit *r),
                           void *arg);

/* Frees a stopped publisher (its queued records are lost: drain first). NULL is a no-op. */
void fv_mqtt_free(struct fv_mqtt *m);

#endif
