/*
 * metrics.h - the gateway's counters, exported by the API as Prometheus text.
 *
 * Written by the event-loop thread only (the TLS verify counter is bumped from OpenSSL's
 * verify callback, which also runs on that thread). Read by the API on the same thread.
 */
#ifndef FV_GATEWAY_METRICS_H
#define FV_GATEWAY_METRICS_H

#include <stdint.h>

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

struct fv_metrics {
    uint64_t connections_total, connections_open;
    uint64_t connections_refused; /* over FV_SESSIONS_PER_DEVICE (gateway/session.h) */
    uint64_t idle_closed;         /* connections closed: silent past device_idle_timeout */
    uint64_t ingest_pauses;       /* times ingest stopped reading: the store's head was full */
    uint64_t tls_rejected;        /* client certificate failed verification */
    uint64_t identity_rejected;   /* verified, but no valid device identity */
    uint64_t messages_total, bytes_received;
    uint64_t records_stored[FV_TOPIC_SLOTS];
    uint64_t datums_stored;
    uint64_t datums_minimised; /* not stored: no purpose of their class had consent */
    uint64_t acks_sent, errors_sent;
    uint64_t rejected[FV_REJ_COUNT];
    uint64_t duplicates;
    uint64_t unknown_message_type;
    uint64_t replayed_records;
    uint64_t shredded_records; /* records whose data key was destroyed (erased) */
    uint64_t http_requests, http_unauthorized;
    uint64_t http_auth_throttled; /* 429: too many failed authentications (api/http.h H1) */
};

/* Slot of a topic in records_stored. */
int fv_metrics_topic_slot(const char *topic, size_t len);
extern const char *const fv_metrics_topic_names[FV_TOPIC_SLOTS];

#endif
