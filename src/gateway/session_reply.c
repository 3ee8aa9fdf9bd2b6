/*
 * session_reply.c - the replies of device sessions (session_int.h): queued frames, batched
 * writes, the error replies, and acks released once their record is durable (S1, S2, S5).
 *
 * Threads: the ingest loop only.
 */
#include <stdlib.h>
#include <string.h>

#include "gateway/session_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "wire/wsframe.h"

/* ---- replies ------------------------------------------------------------------------- */

/* Closes the connection from its next writable callback, or after a second at the latest
 * (a peer that does not read keeps its socket unwritable, and lws then never calls it
 * writable). Queued replies are dropped. */
void fv_session__close_soon(struct session *s)
{
    s->closing = 1;
    lws_callback_on_writable(s->wsi);
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, 1);
}

/* Queues a reply; a device whose queue passes FV_SESSION_OUT_MAX bytes does not read its
 * replies and is closed (S6). */
int fv_session__push_frame(struct session *s, const void *msg, size_t len, int ping,
                                   uint64_t rx_ns)
{
    if (s->closing) return FV_ESTATE;
    if (s->out_bytes + len > FV_SESSION_OUT_MAX) {
        fv_warn("device %s does not read its replies (%zu bytes queued); closing",
                fv_session__log_name(s), s->out_bytes);
        fv_session__close_soon(s);
        return FV_ELIMIT;
    }
    struct frame *f = malloc(sizeof *f + LWS_PRE + len);
    if (f == NULL) {
        fv_error("out of memory queueing a reply; closing %s", fv_session__log_name(s));
        fv_session__close_soon(s);
        return FV_ENOMEM;
    }
    f->next = NULL;
    f->len = len;
    f->ping = ping;
    f->rx_ns = rx_ns;
    memcpy(f->data + LWS_PRE, msg, len);
    if (s->out_tail)
        s->out_tail->next = f;
    else
        s->out_head = f;
    s->out_tail = f;
    s->out_bytes += len;
    lws_callback_on_writable(s->wsi);
    return FV_OK;
}

/* Queued replies leave together, in one write: framed here as WebSocket messages (server to
 * client: FIN, opcode, unmasked length) and handed to lws as raw bytes, so that acks released
 * together by one group commit cost one TLS record and one system call per connection, not
 * one each (issue 13: a write per ack was ~16% of the ingest loop). No extension is ever
 * negotiated on this protocol, so the frames are plain RFC 6455 ones (wire/wsframe.h). At most
 * WRITE_BATCH_MAX bytes per turn (always at least one frame); the rest on the next. */
#define WRITE_BATCH_MAX 16000

int fv_session__write_batch(struct session *s, struct lws *wsi)
{
    struct fv_buf *b = &s->ing->tx_buf;
    fv_buf_reset(b);
    if (fv_buf_reserve(b, LWS_PRE) != FV_OK) return -1;
    b->len = LWS_PRE;
    uint64_t acks[256]; /* when each ack's record arrived (the ack latency metric) */
    size_t nacks = 0, frames = 0;
    while (s->out_head && nacks < sizeof acks / sizeof acks[0] &&
           (b->len == LWS_PRE || b->len - LWS_PRE + s->out_head->len + 10 <= WRITE_BATCH_MAX)) {
        struct frame *f = s->out_head;
        if (fv_ws_frame_encode(b, f->ping ? FV_WS_PING : FV_WS_BINARY, 1, f->data + LWS_PRE, f->len,
                               NULL) != FV_OK)
            return -1;
        if (f->rx_ns) acks[nacks++] = f->rx_ns;
        frames++;
        s->out_head = f->next;
        if (s->out_head == NULL) s->out_tail = NULL;
        s->out_bytes -= f->len;
        free(f);
    }
    size_t n = b->len - LWS_PRE;
    if (lws_write(wsi, b->data + LWS_PRE, n, LWS_WRITE_RAW) < (int)n) return -1;
    s->ing->d.metrics->reply_frames += frames;
    s->ing->d.metrics->reply_writes++;
    uint64_t now = fv_mono_ns();
    for (size_t i = 0; i < nacks; i++)
        fv_latency_add(&s->ing->d.metrics->ack_latency, now - acks[i]);
    return 0;
}

int fv_session__push(struct session *s, const void *msg, size_t len)
{
    return fv_session__push_frame(s, msg, len, 0, 0);
}

/* rx_ns: when the acked record's first bytes were read (0: not timed). */
void fv_session__send_ack(struct session *s, const void *txid, size_t txid_len, const void *topic,
                          size_t topic_len, uint64_t rx_ns)
{
    struct fv_buf b = {0};
    if (fv_envelope_build_ack(&b, txid, txid_len, topic, topic_len) == FV_OK &&
        fv_session__push_frame(s, b.data, b.len, 0, rx_ns) == FV_OK)
        s->ing->d.metrics->acks_sent++;
    fv_buf_free(&b);
}

/* The error reply echoes the txid only when it is within FV_TXID_MAX (S6). */
void fv_session__send_error(struct session *s, enum fv_reject why, const struct fv_bytes *txid,
                            const char *detail)
{
    struct fv_buf b = {0};
    s->ing->d.metrics->rejected[why]++;
    fv_debug("device %s: refused (%s): %s", fv_session__log_name(s), fv_reject_names[why],
             detail ? detail : "");
    const char *text = why == FV_REJ_RATE      ? ERR_TEXT_RATE
                       : why == FV_REJ_STORAGE ? ERR_TEXT_STORE
                                               : ERR_TEXT_FORMAT;
    int echo = txid && txid->len <= FV_TXID_MAX;
    if (fv_envelope_build_error(&b, echo ? txid->p : (const void *)"", echo ? txid->len : 0,
                                text) == FV_OK &&
        fv_session__push(s, b.data, b.len) == FV_OK)
        s->ing->d.metrics->errors_sent++;
    fv_buf_free(&b);
}

/* Queues an ack to be sent once log seq is durable (S1, S2). */
void fv_session__queue_ack(struct session *s, uint64_t seq, const struct fv_bytes *txid,
                           const struct fv_bytes *topic)
{
    struct fv_ingest *ing = s->ing;
    if (seq <= ing->d.log.durable(ing->d.log.impl)) {
        fv_session__send_ack(s, txid->p, txid->len, topic->p, topic->len, s->msg_rx_ns);
        return;
    }
    struct pending *p = malloc(sizeof *p + txid->len + topic->len);
    if (p == NULL) {
        fv_error("out of memory queueing an ack; the device will resend");
        return;
    }
    p->next = NULL;
    p->seq = seq;
    p->rx_ns = s->msg_rx_ns;
    p->session_id = s->id;
    p->txid_len = (uint16_t)txid->len;
    p->topic_len = (uint8_t)topic->len;
    memcpy(p->data, txid->p, txid->len);
    memcpy(p->data + txid->len, topic->p, topic->len);
    if (ing->pend_tail)
        ing->pend_tail->next = p;
    else
        ing->pend_head = p;
    ing->pend_tail = p;
}

void fv_ingest_flush_durable(struct fv_ingest *ing)
{
    uint64_t durable = ing->d.log.durable(ing->d.log.impl);
    while (ing->pend_head && ing->pend_head->seq <= durable) {
        struct pending *p = ing->pend_head;
        ing->pend_head = p->next;
        if (ing->pend_head == NULL) ing->pend_tail = NULL;
        struct session *s = fv_map_get_u64(&ing->sessions, p->session_id);
        if (s) /* S5 */
            fv_session__send_ack(s, p->data, p->txid_len, p->data + p->txid_len, p->topic_len,
                                 p->rx_ns);
        free(p);
    }
}
