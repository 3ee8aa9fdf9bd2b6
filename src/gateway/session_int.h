/*
 * session_int.h - what the two halves of the device session share (session.h: S1-S6):
 * session.c (connections, the record pipeline) and session_reply.c (replies: queued frames,
 * batched writes, acks released once their record is durable). Not for other modules.
 *
 * Threads: the ingest loop only.
 */
#ifndef FV_GATEWAY_SESSION_INT_H
#define FV_GATEWAY_SESSION_INT_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/certs.h"
#include "crypto/keys.h"
#include "gateway/minimise.h"
#include "gateway/session.h"
#include "util/buf.h"
#include "util/map.h"
#include "wire/envelope.h"

#define ERR_TEXT_FORMAT "incorrect message format"
#define ERR_TEXT_RATE   "rate limit exceeded"
#define ERR_TEXT_STORE  "storage unavailable"

struct frame {
    struct frame *next;
    size_t len;
    int ping;             /* a WebSocket ping (idle check), else a binary message */
    uint64_t rx_ns;       /* an ack: when its record's first bytes were read (0: other) */
    unsigned char data[]; /* LWS_PRE bytes of headroom, then len bytes */
};

struct session {
    struct fv_ingest *ing;
    struct lws *wsi;
    uint64_t id;
    struct fv_identity ident;
    struct fv_device *dev;
    char conn_id[40];
    char netif[16];
    struct fv_buf rx;
    int in_msg, discarding, text;
    uint64_t msg_rx_ns; /* when the message being received began to arrive */
    struct frame *out_head, *out_tail;
    size_t out_bytes;
    int established, closing, paused;
    int key_wait;        /* a cluster gateway fetches its subject's key (keyfetch.h): not read */
    uint64_t last_rx_ns; /* the peer's last message or pong (S6: idle timeout) */
    int pinged;          /* a ping is out since last_rx_ns */
    int http_status;     /* GET /status on the device port */
    char log_id[FV_PSEUDONYM_LEN + 5]; /* "dev-" + the device's keyed pseudonym: what logs name
                                          (never the VIN, which is personal data) */
};

/* The name logs give s's device ("dev-?" until it is identified). */
static inline const char *fv_session__log_name(const struct session *s)
{
    return s->log_id[0] ? s->log_id : "dev-?";
}

struct pending {
    struct pending *next;
    uint64_t seq;
    uint64_t rx_ns; /* when the record's first bytes were read */
    uint64_t session_id;
    uint16_t txid_len;
    uint8_t topic_len;
    unsigned char data[]; /* txid then topic */
};

struct fv_ingest {
    struct fv_ingest_deps d;
    struct fv_map sessions; /* id -> struct session* */
    uint64_t next_session_id;
    struct pending *pend_head, *pend_tail;
    uint64_t registry_gen;  /* bumped when the subjects registry changed */
    int64_t period_cursor;  /* owner periods seen so far (gateway/owners.h O2) */
    int keys_stale;         /* atomic: another keystore destroyed keys (fv_ingest_keys_changed) */
    struct fv_minimiser mz; /* minimisation (gateway/minimise.h) */
    struct fv_buf seal_buf, aad_buf;             /* scratch for sealing */
    struct fv_buf tx_buf;                        /* scratch for batched replies */
    int paused;                                  /* backpressure: sockets are not read */
    const struct fv_downlink_listener *listener; /* D2, or NULL */
    struct fv_presence *presence;                /* a cluster's gateway, or NULL */
    uint64_t paced_ns, swept_ns;
};

/* ---- replies (session_reply.c) ------------------------------------------------------- */

/* Closes the connection from its next writable callback, or after a second at the latest;
 * queued replies are dropped. */
void fv_session__close_soon(struct session *s);
/* Queues a reply (a ping when ping); rx_ns: when the acked record's first bytes were read
 * (0: not an ack, or not timed). A device whose queue passes FV_SESSION_OUT_MAX is closed. */
int fv_session__push_frame(struct session *s, const void *msg, size_t len, int ping,
                           uint64_t rx_ns);
int fv_session__push(struct session *s, const void *msg, size_t len);
/* Sends the queued replies in one write (at most WRITE_BATCH_MAX bytes). -1: close. */
int fv_session__write_batch(struct session *s, struct lws *wsi);
void fv_session__send_ack(struct session *s, const void *txid, size_t txid_len, const void *topic,
                          size_t topic_len, uint64_t rx_ns);
/* The error reply of why; echoes the txid only within FV_TXID_MAX (S6). */
void fv_session__send_error(struct session *s, enum fv_reject why, const struct fv_bytes *txid,
                            const char *detail);
/* Queues an ack to be sent once log seq is durable (S1, S2). */
void fv_session__queue_ack(struct session *s, uint64_t seq, const struct fv_bytes *txid,
                           const struct fv_bytes *topic);

#endif
