/*
 * envelope.h - the FlatBuffers envelope of the fleet-telemetry protocol (docs/protocol.md).
 *
 * Decoding is zero-copy: a decoded envelope points into the caller's buffer and is valid as
 * long as that buffer is. Every offset is bounds-checked; a malformed buffer yields
 * FV_EPROTO with a reason, never a read outside the buffer.
 *
 * Encoding reproduces, byte for byte, what the reference receiver (Go FlatBuffers builder)
 * sends: acks (message_type 5) and error replies (message_type 4 with the error text as the
 * Stream payload). The builder is also used by the simulator to build device messages.
 * All functions are pure and thread-safe.
 */
#ifndef FV_WIRE_ENVELOPE_H
#define FV_WIRE_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Union tags of Envelope.message (on-wire values). */
#define FV_MSG_NONE       0
#define FV_MSG_STREAM     4
#define FV_MSG_STREAM_ACK 5

/* A byte string inside a decoded buffer; present == 0 when the field is absent. */
struct fv_bytes {
    const unsigned char *p;
    uint32_t len;
    int present;
};

struct fv_envelope {
    struct fv_bytes txid;
    struct fv_bytes topic;
    uint8_t message_type;
    int has_message;
    struct fv_bytes message_id;
    /* Stream fields, valid when message_type == FV_MSG_STREAM and has_message. */
    uint32_t created_at;
    struct fv_bytes sender_id;
    struct fv_bytes payload;
    struct fv_bytes device_type;
    struct fv_bytes device_id;
    uint64_t delivered_at_epoch_ms;
};

/* Decodes buf[0..len). Returns FV_OK, or FV_EPROTO with a reason in err. */
int fv_envelope_decode(const unsigned char *buf, size_t len, struct fv_envelope *env, char *err,
                       size_t errlen);

/* Appends to out an ack for (txid, topic), exactly as the reference sends it. */
int fv_envelope_build_ack(struct fv_buf *out, const void *txid, size_t txid_len, const void *topic,
                          size_t topic_len);

/* Appends to out an error reply carrying text, exactly as the reference sends it. */
int fv_envelope_build_error(struct fv_buf *out, const void *txid, size_t txid_len,
                            const char *text);

/* What a device sends: an Envelope holding a Stream. Absent byte fields: NULL. */
struct fv_stream_msg {
    const void *txid;
    size_t txid_len;
    const void *topic;
    size_t topic_len;
    const void *message_id;
    size_t message_id_len;
    uint32_t created_at;
    const void *sender_id;
    size_t sender_id_len;
    const void *payload;
    size_t payload_len;
    const void *device_type;
    size_t device_type_len;
    const void *device_id;
    size_t device_id_len;
    uint64_t delivered_at_epoch_ms;
};

/* Appends to out an Envelope(Stream) built the way the Go builder builds it. */
int fv_envelope_build_stream(struct fv_buf *out, const struct fv_stream_msg *m);

#endif
