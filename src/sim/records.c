/*
 * records.c - the simulator's delivery window: each vehicle's ring of unfinished records,
 * generating them, queueing and resending them on its connection, and finishing them when
 * the server acks or refuses them (delivery contract in simulate.h).
 *
 * Records carry a topic (enum rec_topic): a vehicle's V records, a site's samples and its
 * command acks (sites.c adds the last two with fv_sim__push).
 *
 * Invariants R1-R6 (simulate_int.h) hold between calls: generate appends at hi, finish
 * clears a slot and advances lo past finished ones, pump advances send_next, a new
 * connection (simulate.c on_open) resets send_next to lo.
 *
 * Threading: the run's thread only (simulate_int.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/campaign.h"
#include "sim/simulate_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "wire/envelope.h"
#include "wire/payload.h"
#include "wire/signals.h"

static struct rec *slot(struct veh *v, uint64_t seq)
{
    return &v->ring[seq & (v->ring_cap - 1)];
}

/* Makes room for seq hi in the ring (R1 guarantees hi - lo < max_inflight here). */
static int ring_grow(struct veh *v)
{
    if (v->ring_cap != 0 && v->hi - v->lo < v->ring_cap) return FV_OK;
    uint32_t cap = v->ring_cap ? v->ring_cap * 2 : 4;
    struct rec *nr = calloc(cap, sizeof *nr);
    if (nr == NULL) return FV_ENOMEM;
    for (uint64_t s = v->lo; s < v->hi; s++)
        nr[s & (cap - 1)] = *slot(v, s);
    free(v->ring);
    v->ring = nr;
    v->ring_cap = cap;
    return FV_OK;
}

static void txid_of(const struct run *r, const struct veh *v, uint64_t seq, char *out, size_t len)
{
    snprintf(out, len, "%s-%s-%" PRIu64, v->vin, r->runid, seq);
}

/* Parses a reply's txid back into a seq of this vehicle; 0 if it is not one of ours. */
static uint64_t seq_of(const struct run *r, const struct veh *v, const struct fv_bytes *t)
{
    char pre[64];
    int pl = snprintf(pre, sizeof pre, "%s-%s-", v->vin, r->runid);
    if (!t->present || pl < 0 || t->len <= (uint32_t)pl || t->len > (uint32_t)pl + 20 ||
        memcmp(t->p, pre, (size_t)pl) != 0)
        return 0;
    uint64_t s = 0;
    for (uint32_t i = (uint32_t)pl; i < t->len; i++) {
        if (t->p[i] < '0' || t->p[i] > '9' || s > (UINT64_MAX - 9) / 10) return 0;
        s = s * 10 + (uint64_t)(t->p[i] - '0');
    }
    return s;
}

/* Writes record k of v (the model's current values) to the line-protocol file. */
static int write_influx(struct run *r, struct veh *v, uint64_t created_ms)
{
    size_t nd = fv_sim_vehicle_sample(v->model, r->o->signals, r->sample);
    r->line.len = 0;
    int rc = fv_sim_influx_line(&r->line, v->vin, r->sample, nd, created_ms);
    if (rc == FV_OK && r->line.len > 0 &&
        fwrite(r->line.data, 1, r->line.len, r->influx) != r->line.len) {
        snprintf(r->fatal_msg, sizeof r->fatal_msg, "writing %s: %s", r->o->influx_path,
                 strerror(errno));
        r->fatal = FV_EIO;
        rc = FV_EIO;
    }
    return rc;
}

int fv_sim__window_full(const struct run *r, const struct veh *v)
{
    return v->hi - v->lo >= r->o->max_inflight;
}

int fv_sim__push(struct run *r, struct veh *v, const struct fv_buf *payload, uint32_t ndatums,
                 uint64_t created_ms, enum rec_topic topic)
{
    int rc = ring_grow(v);
    unsigned char *copy = rc ? NULL : malloc(payload->len ? payload->len : 1);
    if (copy == NULL) return FV_ENOMEM;
    memcpy(copy, payload->data, payload->len);
    struct rec *x = slot(v, v->hi);
    memset(x, 0, sizeof *x);
    x->payload = copy;
    x->len = (uint32_t)payload->len;
    x->ndatums = (uint16_t)ndatums;
    x->created_ms = created_ms;
    x->topic = (uint8_t)topic;
    v->outstanding++;
    r->outstanding++;
    v->hi++;
    r->st->sent++;
    r->st->datums_sent += ndatums;
    if (!v->full && fv_sim__window_full(r, v)) { /* R5 */
        v->full = 1;
        r->vt_full++;
    }
    return FV_OK;
}

/* R7: the wall-clock time of v's next live record, 1 ms past its previous one if the clock
 * has not moved on. Ticks keep to a grid of 1/R s and `now` is read once per loop turn, so
 * a turn late by nearly a period makes one tick and the next within one millisecond: two
 * records of a vehicle at one time, which a query by time cannot tell apart (the acked log
 * names records by time for the e2e tests; test_crash_store counted such a pair as a record
 * stored twice). */
static uint64_t wall_stamp(struct veh *v)
{
    uint64_t ms = fv_now_ms();
    if (v->last_wall_ms != 0 && ms <= v->last_wall_ms) ms = v->last_wall_ms + 1;
    v->last_wall_ms = ms;
    return ms;
}

/* Generates v's next record (k = hi - 1): steps the model 1/hz s, stamps the record, writes
 * it to the line-protocol file, and (with a server) keeps it in the ring until finished.
 * A site samples the wall clock instead (sites.c), once its history is made. */
void fv_sim__generate(struct run *r, struct veh *v)
{
    const struct fv_sim_opts *o = r->o;
    if (v->site && v->bf_next_ms < r->bf_end_ms) return; /* its history first */
    if (!o->no_server && fv_sim__window_full(r, v)) {
        r->st->paused++;
        return;
    }
    if (v->site) {
        fv_sim__site_sample(r, v, wall_stamp(v));
        return;
    }
    fv_sim_vehicle_step(v->model, 1.0 / o->hz);
    uint32_t idx = (uint32_t)(v - r->v);
    uint64_t k = v->hi - 1;
    uint64_t created_ms =
        o->virtual_time
            ? fv_sim_virtual_ms(o, idx, k)
            : fv_sim__add_offset(wall_stamp(v), fv_sim_jitter_ms(o->seed, idx, k, o->jitter_ms));
    size_t nd = o->signals < fv_sim_signal_count() ? o->signals : fv_sim_signal_count();
    int rc;
    if (!o->no_server) {
        r->pl.len = 0;
        if ((rc = fv_sim_vehicle_encode(v->model, v->vin, o->signals, created_ms, &r->pl, &nd))) {
            fv_sim__set_fatal(r, rc, "encoding a record");
            return;
        }
    }
    if (r->influx && (rc = write_influx(r, v, created_ms))) {
        fv_sim__set_fatal(r, rc, "line protocol"); /* no-op when write_influx set a reason */
        return;
    }
    if (!o->no_server) {
        if ((rc = fv_sim__push(r, v, &r->pl, (uint32_t)nd, created_ms, REC_V)))
            fv_sim__set_fatal(r, rc, "record buffer");
        else if (v->camp)
            fv_sim__campaign_sample(r, v, created_ms);
        return;
    }
    v->hi++;
    r->st->sent++;
    r->st->datums_sent += nd;
}

/* Rewrites a record's payload with is_resend = true (once; later resends reuse it). An ack
 * has no such flag: its bytes stay. */
static int to_resend_form(struct run *r, struct veh *v, struct rec *x)
{
    if (x->topic >= REC_ACK) { /* acks and campaign messages: no resend flag */
        x->resend_form = 1;
        return FV_OK;
    }
    int rc;
    if (x->topic == REC_SITE) {
        rc = fv_sim__site_resend_form(r, v, x->payload, x->len);
    } else {
        struct fv_vrecord vr;
        char err[128];
        rc = fv_payload_decode_v(x->payload, x->len, &vr, err, sizeof err);
        if (rc == FV_OK) {
            vr.is_resend = 1;
            r->pl.len = 0;
            rc = fv_payload_encode_v(&vr, &r->pl);
        }
        fv_vrecord_free(&vr);
    }
    if (rc) return rc;
    unsigned char *p = malloc(r->pl.len ? r->pl.len : 1);
    if (p == NULL) return FV_ENOMEM;
    memcpy(p, r->pl.data, r->pl.len);
    free(x->payload);
    x->payload = p;
    x->len = (uint32_t)r->pl.len;
    x->resend_form = 1;
    return FV_OK;
}

static int send_record(struct run *r, struct veh *v, uint64_t seq, struct rec *x, uint64_t now)
{
    int resend = x->first_send_ns != 0;
    int rc;
    if (resend && !x->resend_form && (rc = to_resend_form(r, v, x))) return rc;
    char txid[64];
    txid_of(r, v, seq, txid, sizeof txid);
    struct fv_stream_msg m;
    memset(&m, 0, sizeof m);
    m.txid = txid;
    m.txid_len = strlen(txid);
    static const char *const topics[] = {FV_TOPIC_V, FV_TOPIC_SITE, FV_TOPIC_SITE_COMMAND_ACK,
                                         FV_TOPIC_CAMPAIGN_ACK, FV_TOPIC_CAMPAIGN_HIT};
    const char *dt = v->site ? "energy_device" : "vehicle_device";
    m.topic = topics[x->topic];
    m.topic_len = strlen(topics[x->topic]);
    m.created_at = (uint32_t)(x->created_ms / 1000u);
    m.payload = x->payload;
    m.payload_len = x->len;
    m.device_type = dt;
    m.device_type_len = strlen(dt);
    m.device_id = v->vin;
    m.device_id_len = strlen(v->vin);
    r->env.len = 0;
    if (v->away) return FV_ESTATE; /* connector.h C1 */
    if ((rc = fv_envelope_build_stream(&r->env, &m)) ||
        (rc = fv_sim_ws_send(v->ws, FV_WS_BINARY, r->env.data, r->env.len)))
        return rc;
    if (resend)
        r->st->resent++;
    else
        x->first_send_ns = now;
    x->last_send_ns = now;
    return FV_OK;
}

/* Queues waiting records on an open connection while its send queue has room (R2). */
void fv_sim__pump(struct run *r, struct veh *v, uint64_t now)
{
    if (v->away || fv_sim_ws_state(v->ws) != FV_SIM_WS_OPEN) return;
    while (v->send_next < v->hi && fv_sim_ws_pending(v->ws) < SEND_QUEUE_MAX) {
        uint64_t s = v->send_next++;
        struct rec *x = slot(v, s);
        if (x->payload == NULL) continue;
        int rc = send_record(r, v, s, x, now);
        if (rc) {
            fv_sim__set_fatal(r, rc, "queueing a record");
            return;
        }
    }
}

/* Resends records of this connection unanswered for resend_after_s. */
void fv_sim__resend_scan(struct run *r, struct veh *v, uint64_t now)
{
    uint64_t after = (uint64_t)(r->o->resend_after_s * (double)NS_PER_S);
    for (uint64_t s = v->lo; s < v->send_next; s++) {
        if (fv_sim_ws_pending(v->ws) >= SEND_QUEUE_MAX) return;
        struct rec *x = slot(v, s);
        if (x->payload == NULL || now - x->last_send_ns < after) continue;
        int rc = send_record(r, v, s, x, now);
        if (rc) {
            fv_sim__set_fatal(r, rc, "queueing a resend");
            return;
        }
    }
}

static void finish(struct run *r, struct veh *v, uint64_t seq, int refused, uint64_t now)
{
    struct rec *x = slot(v, seq);
    if (r->log) {
        char txid[64];
        txid_of(r, v, seq, txid, sizeof txid);
        if (refused)
            fprintf(r->log, "%s %s E\n", v->vin, txid);
        else /* the record's time too: the store is queried by time, not txid */
            fprintf(r->log, "%s %s %llu\n", v->vin, txid, (unsigned long long)x->created_ms);
    }
    if (refused) {
        r->st->errors++;
    } else {
        r->st->acked++;
        r->st->datums += x->ndatums;
        if (x->first_send_ns) {
            uint64_t us = (now - x->first_send_ns) / 1000u;
            fv_sim__hist_add(r, us);
            if (r->slow && us >= FV_SIM_SLOW_MS * 1000u)
                fprintf(r->slow, "%.3f %.3f %s\n", (double)(now - r->t0_ns) / 1e9, (double)us / 1e3,
                        v->vin);
        }
    }
    free(x->payload);
    x->payload = NULL;
    v->outstanding--;
    r->outstanding--;
    while (v->lo < v->hi && slot(v, v->lo)->payload == NULL)
        v->lo++;
    if (v->send_next < v->lo) v->send_next = v->lo;
    if (v->full && v->hi - v->lo < r->o->max_inflight) { /* R5 */
        v->full = 0;
        r->vt_full--;
    }
}

/* A reply from the server: an ack or an error reply for one of our records. */
int fv_sim__on_message(void *ud, unsigned opcode, const unsigned char *p, size_t len)
{
    struct msg_ctx *c = ud;
    struct run *r = c->r;
    struct veh *v = c->v;
    struct fv_envelope env;
    char err[160];
    if (opcode != FV_WS_BINARY || fv_envelope_decode(p, len, &env, err, sizeof err)) {
        r->st->bad_replies++;
        if (r->st->bad_replies == 1)
            fv_warn("simulate: %s: unexpected %s reply from the server (not an envelope)", v->vin,
                    opcode == FV_WS_BINARY ? "binary" : "text");
        return 0;
    }
    int is_ack = env.message_type == FV_MSG_STREAM_ACK;
    int is_err = env.message_type == FV_MSG_STREAM;
    static const char cmd_topic[] = FV_TOPIC_SITE_COMMAND;
    if (is_err && v->site && env.topic.present && env.topic.len == sizeof cmd_topic - 1 &&
        memcmp(env.topic.p, cmd_topic, sizeof cmd_topic - 1) == 0) {
        fv_sim__site_command(r, v, env.payload.p, env.payload.present ? env.payload.len : 0);
        return 0;
    }
    static const char camp_topic[] = FV_TOPIC_CAMPAIGN;
    if (is_err && v->model && env.topic.present && env.topic.len == sizeof camp_topic - 1 &&
        memcmp(env.topic.p, camp_topic, sizeof camp_topic - 1) == 0) {
        fv_sim__campaign_message(r, v, env.payload.p, env.payload.present ? env.payload.len : 0);
        return 0;
    }
    uint64_t seq = seq_of(r, v, &env.txid);
    if (is_err && v->site && seq >= v->lo && seq < v->hi && slot(v, seq)->payload &&
        env.payload.present && memmem(env.payload.p, env.payload.len, "rate limit", 10)) {
        r->st->rate_limited++; /* not final for a site: sent again after the resend timeout */
        return 0;
    }
    if (is_err && c->now - r->last_reply_err_ns >= ERR_LOG_EVERY_NS) {
        r->last_reply_err_ns = c->now;
        fv_warn("simulate: %s: server refused record %.*s: %.*s", v->vin, (int)env.txid.len,
                (const char *)env.txid.p, (int)(env.payload.present ? env.payload.len : 0),
                env.payload.present ? (const char *)env.payload.p : "");
    }
    if (!is_ack && !is_err) {
        r->st->bad_replies++;
        return 0;
    }
    if (seq == 0 || seq < v->lo || seq >= v->hi || slot(v, seq)->payload == NULL) {
        r->st->dup_acks++;
        return 0;
    }
    finish(r, v, seq, is_err, c->now);
    return 0;
}
