/*
 * metrics.h - the gateway's counters, exported by the API as Prometheus text.
 *
 * Written by the ingest loop (the TLS verify counter is bumped from OpenSSL's verify
 * callback, which also runs on that thread) and, for the http_* counters, by the API thread;
 * read by the API thread. Each counter is atomic (fv_counter: ++ and += are atomic, a read
 * is an atomic load), so no lock is needed and a reader never sees a torn value; counters
 * are independent (a scrape is not a consistent snapshot of all of them).
 */
#ifndef FV_GATEWAY_METRICS_H
#define FV_GATEWAY_METRICS_H

#include <stdint.h>

#include "util/latency.h"

/* Why a message got the error reply (or the socket closed). On-the-wire text is the same
 * for all of them (the reference's "incorrect message format") except rate limiting. */
enum fv_reject {
    FV_REJ_ENVELOPE = 0, /* not a valid FlatBuffers envelope */
    FV_REJ_PAYLOAD,      /* payload of a known topic is not valid protobuf */
    FV_REJ_TOO_LARGE,    /* over the 1,000,000-byte limit */
    FV_REJ_SENDER,       /* stream sender_id names another device */
    FV_REJ_TOPIC,        /* empty topic, or a topic devices may not send */
    FV_REJ_RATE,         /* rate limit (its own error text) */
    FV_REJ_TEXT_FRAME,   /* a text frame: socket closed */
    FV_REJ_STORAGE,      /* the WAL refused the record (too large, failed) */
    FV_REJ_COUNT
};
extern const char *const fv_reject_names[FV_REJ_COUNT];

#define FV_TOPIC_SLOTS 5 /* V, alerts, errors, connectivity, other */

/* A counter any thread may bump and read. */
typedef _Atomic uint64_t fv_counter;

/* A cluster node's sync of a KV bucket with its catalog (cluster/kvsync.h), as copied by the
 * loop from its counters: values applied here, published, conflicts, malformed. */
struct fv_sync_metrics {
    fv_counter applied, published, conflicts, malformed;
};

struct fv_metrics {
    fv_counter connections_total, connections_open;
    fv_counter connections_refused; /* over FV_SESSIONS_PER_DEVICE (gateway/session.h) */
    fv_counter idle_closed;         /* connections closed: silent past device_idle_timeout */
    fv_counter connections_moved;   /* gateway: closed, the device connected on another one
                                       (gateway/presence.h P2) */
    fv_counter ingest_pauses;       /* times ingest stopped reading: the store's head was full */
    /* The devices' listener (server/acceptor.h): loop turns that accepted accepts_per_turn
     * connections with more waiting (a burst admitted over several turns), waits for the
     * accept_rate (A5), and the pauses for want of descriptors. */
    fv_counter accept_full_turns, accept_paced, accept_pauses;
    fv_counter tls_rejected;      /* client certificate failed verification */
    fv_counter identity_rejected; /* verified, but no valid device identity */
    fv_counter messages_total, bytes_received;
    fv_counter records_stored[FV_TOPIC_SLOTS];
    fv_counter datums_stored;
    fv_counter datums_minimised; /* not stored: no purpose of their class had consent */
    fv_counter acks_sent, errors_sent;
    fv_counter reply_frames, reply_writes; /* replies to devices, and the writes that sent
                                              them (several per write when queued together) */
    fv_counter rejected[FV_REJ_COUNT];
    fv_counter duplicates;
    fv_counter unknown_message_type;
    fv_counter replayed_records;
    fv_counter shredded_records; /* records whose data key was destroyed (erased) */
    fv_counter key_waits; /* storage node: stream records left unacked, their key in no KV entry */
    fv_counter resubjected; /* storage node: records sealed again under their period's subject */
    fv_counter moved; /* storage node: of those, published to their new subject's shard (C13) */
    fv_counter http_requests, http_unauthorized;
    fv_counter http_auth_throttled; /* 429: too many failed authentications (api/http.h H1) */
    fv_counter downlink_sent;       /* messages to devices handed to a session */
    fv_counter downlink_dropped;    /* messages to devices not connected (wire/downlink.h D1) */
    fv_counter downlink_not_here;   /* gateway: commands from the cluster for a device it does
                                       not hold (another gateway may) */
    /* The downlink across a cluster (cluster/jsdownlink.h): commands (storage node) or uplinks
     * (gateway) published on NATS, publishes refused (dropped), commands (gateway) or uplinks
     * (storage node) received, and malformed ones ignored. */
    fv_counter cluster_dl_published, cluster_dl_failed, cluster_dl_received;
    fv_counter cluster_dl_malformed; /* envelopes received that did not open or decode */
    /* A gateway's record log on the stream (cluster/jsreclog.h fv_jsreclog_counts), copied
     * by the ingest loop's housekeeping. */
    fv_counter cluster_published, cluster_pubacks, cluster_pubacks_duplicate;
    fv_counter cluster_publish_retries, cluster_publish_refused, cluster_publish_outstanding;
    /* the subjects sync (cluster/jssubjects.h), copied from its counters by the loop */
    struct fv_sync_metrics subj;
    /* the principals and zones syncs (cluster/jsprincipals.h, jszones.h), the same way */
    struct fv_sync_metrics princ, zones;
    /* the quotas sync (cluster/jsquotas.h), copied the same way; stale is 0 or 1, pending
     * and position gauges */
    fv_counter quota_applied, quota_published, quota_failed, quota_malformed, quota_stale;
    fv_counter quota_pending, quota_position;
    /* Clips stored with the store's signals added, without (none in the window), as uploaded
     * after a failure (data/clip_server.h X4; bumped by the clip thread). */
    fv_counter clip_signals[3];
    /* The MQTT publisher (mqtt/mqtt.h), bumped from its thread: connected to the broker now
     * (0/1), subjects being published now, messages handed to the broker, failures. */
    fv_counter mqtt_connected, mqtt_subjects, mqtt_published, mqtt_errors;
    /* A storage node (cluster/jslease.h): shard leases held now; shards acquired (ever). */
    fv_counter cluster_shards_owned, cluster_takeovers;
    /* Reads across a cluster (server/clusterapi.h): an api node's reads sent to the shards'
     * owners, and those answered 503/504 (a shard did not answer); a storage node's answers
     * to them; an api node's reads waiting for the owners now (Q9). */
    fv_counter cluster_q_forwarded, cluster_q_unanswered, cluster_q_answered, cluster_q_waiting;
    /* Server-side ack latency: from the first bytes of a record read from its connection to
     * its ack handed to the socket (after the record is durable, S1). */
    struct fv_latency ack_latency;
};

/* Slot of a topic in records_stored. */
int fv_metrics_topic_slot(const char *topic, size_t len);
extern const char *const fv_metrics_topic_names[FV_TOPIC_SLOTS];

#endif
