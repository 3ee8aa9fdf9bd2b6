/*
 * simulate.c - the simulator's run loop (contract in simulate.h): setup, the connections,
 * the timers and the phases (the server's address, TLS context and certificates: simnet.c). The
 * records each vehicle keeps until they are answered are in records.c (invariants R1-R6 in
 * simulate_int.h), statistics in stats.c, timestamps and line protocol in lineproto.c.
 *
 * One thread, one epoll set, N vehicles. Each vehicle owns: its model (vehicle.c), its
 * connection (wsclient.c), its minted certificate, and a ring of unfinished records.
 *
 * Timers: every vehicle sits in one binary min-heap keyed by wake_ns, the earliest of its
 * next tick, reconnect time, handshake deadline and resend scan (vehicle_deadline). A
 * vehicle whose backoff expired joins a FIFO of connection requests served at
 * --connect-rate (a token bucket), so a server restart does not meet N handshakes at once.
 *
 * Sites (sites.c) are devices of the same run after the vehicles: bf_generate makes their
 * history while their windows have room, and GEN lasts until it is made as long as any
 * connection is open (a server that cannot be reached does not keep the run going).
 *
 * Phases: GEN (generate for S s) -> DRAIN (wait for outstanding, reconnecting as needed, up
 * to --drain s) -> CLOSE (send close frames, wait up to 1 s) -> done. A stop request (signal)
 * skips to done.
 *
 * Virtual time (simulate.h) replaces the ticks: vt_generate makes whole rounds while no
 * vehicle's window is full (R5, R6), and GEN ends when the last round is made.
 * Without a server (no_server) there are no connections, rings or epoll set: run_offline
 * makes the rounds and writes the line-protocol file.
 *
 * Threading: fv_sim_run on the calling thread only; see simulate.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crypto/certs.h"
#include "sim/simulate_int.h"
#include "sim/vehicle.h"
#include "sim/clipworker.h"
#include "sim/wsclient.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

void fv_sim_opts_default(struct fv_sim_opts *o)
{
    memset(o, 0, sizeof *o);
    o->signals = 20;
    o->drain_s = 30;
    o->seed = 1;
    o->id_prefix = "5YJSIM";
    o->connect_rate = 1000;
    o->max_inflight = 1000;
    o->resend_after_s = 5;
    o->handshake_timeout_s = 10;
    o->progress = 1;
    o->site_prefix = "SITESIM";
    o->opt_out_pct = 5;
    o->offline_pct = 3;
    o->site_utc_offset_h = -8;
}

/* ---- small helpers ----------------------------------------------------------------------- */

static uint64_t rnd(struct run *r)
{
    uint64_t z = (r->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void fv_sim__set_fatal(struct run *r, int rc, const char *what)
{
    if (r->fatal) return;
    r->fatal = rc;
    snprintf(r->fatal_msg, sizeof r->fatal_msg, "%s: %s", what, fv_strerror(rc));
}

/*
 * Logs a connection problem without flooding stderr when thousands of vehicles fail alike:
 * each distinct message (up to ERR_KINDS of them) is logged the first time it is seen;
 * repeats are counted and summarised at most every ERR_LOG_EVERY_NS.
 */
static void log_conn_error(struct run *r, const struct veh *v, const char *msg, uint64_t now)
{
    snprintf(r->last_err, sizeof r->last_err, "%s", msg);
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = msg; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    int known = 0;
    for (int i = 0; i < r->err_kinds_n; i++)
        known |= r->err_kinds[i] == h;
    if (!known) {
        if (r->err_kinds_n < ERR_KINDS) r->err_kinds[r->err_kinds_n++] = h;
        fv_warn("simulate: %s: %s", v->vin, msg);
        if (r->err_suppressed == 0) r->last_err_ns = now; /* repeats are summarised from now on */
        return;
    }
    r->err_suppressed++;
    if (now - r->last_err_ns >= ERR_LOG_EVERY_NS) {
        fv_warn("simulate: %" PRIu64 " more connection failures (latest: %s: %s)",
                r->err_suppressed, v->vin, msg);
        r->err_suppressed = 0;
        r->last_err_ns = now;
    }
}

/* ---- timer heap ---------------------------------------------------------------------------- */

static void heap_swap(struct run *r, uint32_t i, uint32_t j)
{
    uint32_t a = r->heap[i], b = r->heap[j];
    r->heap[i] = b;
    r->heap[j] = a;
    r->v[b].heap_pos = i;
    r->v[a].heap_pos = j;
}

static void heap_fix(struct run *r, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (r->v[r->heap[p]].wake_ns <= r->v[r->heap[i]].wake_ns) break;
        heap_swap(r, i, p);
        i = p;
    }
    for (;;) {
        uint32_t l = 2 * i + 1, m = i;
        if (l < r->n && r->v[r->heap[l]].wake_ns < r->v[r->heap[m]].wake_ns) m = l;
        if (l + 1 < r->n && r->v[r->heap[l + 1]].wake_ns < r->v[r->heap[m]].wake_ns) m = l + 1;
        if (m == i) break;
        heap_swap(r, i, m);
        i = m;
    }
}

static int needs_conn(const struct run *r, const struct veh *v)
{
    return r->phase == PH_GEN || (r->phase == PH_DRAIN && v->outstanding > 0);
}

static uint64_t min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* The state of a vehicle's connection; CONNECTING while the connector holds it (C1). */
static enum fv_sim_ws_state vstate(const struct veh *v)
{
    return v->away ? FV_SIM_WS_CONNECTING : fv_sim_ws_state(v->ws);
}

/* The earliest moment the vehicle has something to do (see the top comment). */
static void reschedule(struct run *r, struct veh *v)
{
    uint64_t d = NEVER;
    if (r->phase == PH_GEN && !r->o->virtual_time) d = v->next_tick_ns;
    switch (vstate(v)) {
    case FV_SIM_WS_CLOSED:
        if (needs_conn(r, v) && !v->in_queue) d = min64(d, v->reconnect_at_ns);
        break;
    case FV_SIM_WS_OPEN:
        if (v->outstanding > 0) d = min64(d, v->next_scan_ns);
        break;
    default: /* connecting, handshaking, closing (the connector keeps its own deadline) */
        if (!v->away) d = min64(d, v->conn_deadline_ns);
        break;
    }
    if (d != v->wake_ns) {
        v->wake_ns = d;
        heap_fix(r, v->heap_pos);
    }
}

/* ---- connections --------------------------------------------------------------------------- */

static void update_mask(struct run *r, struct veh *v)
{
    int fd = fv_sim_ws_fd(v->ws);
    uint32_t want = fv_sim_ws_events(v->ws);
    if (fd < 0 || want == v->epoll_mask) return;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = want;
    ev.data.ptr = v;
    int op = v->epoll_mask == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(r->ep, op, fd, &ev) != 0) {
        fv_sim__set_fatal(r, FV_EIO, "epoll_ctl");
        return;
    }
    v->epoll_mask = want;
}

static void conn_lost(struct run *r, struct veh *v, const char *msg, uint64_t now)
{
    if (v->open) {
        v->open = 0;
        r->connected--;
    }
    if (fv_sim_ws_state(v->ws) != FV_SIM_WS_CLOSED) r->live_conns--;
    fv_sim_ws_close(v->ws); /* closing the fd also removes it from the epoll set */
    v->epoll_mask = 0;
    if (r->phase >= PH_CLOSE) return;
    r->st->conn_failures++;
    char full[512];
    snprintf(full, sizeof full, "%s: %s", r->hostport, msg);
    log_conn_error(r, v, full, now);
    /* Exponential backoff with jitter in [b/2, b]. */
    uint32_t b = v->backoff_ms ? v->backoff_ms : BACKOFF_MIN_MS;
    uint64_t delay_ms = b / 2 + rnd(r) % (b / 2 + 1);
    v->reconnect_at_ns = now + delay_ms * NS_PER_MS;
    v->backoff_ms = b * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b * 2;
}

static void start_connect(struct run *r, struct veh *v, uint64_t now)
{
    char err[256];
    int rc;
    int type = v->site ? FV_CT_ENERGY_DEVICE : FV_CT_VEHICLE_DEVICE;
    if (v->cert == NULL &&
        (rc = fv_ca_mint(r->ca, v->vin, type, &v->cert, &v->key, err, sizeof err))) {
        snprintf(r->fatal_msg, sizeof r->fatal_msg, "minting a certificate for %s: %s", v->vin,
                 err);
        r->fatal = rc;
        return;
    }
    if (v->attempts++ > 0) r->st->reconnects++;
    v->conn_deadline_ns = now + (uint64_t)(r->o->handshake_timeout_s * (double)NS_PER_S);
    if (r->conn) { /* the connect and the TLS handshake on the connector's thread */
        v->job = (struct fv_sim_conn_job){.owner = v,
                                          .ws = v->ws,
                                          .ctx = r->ctx,
                                          .target = v->site ? &r->site_target : &r->target,
                                          .cert = v->cert,
                                          .key = v->key,
                                          .deadline_ns = v->conn_deadline_ns};
        if (fv_sim_connector_submit(r->conn, &v->job) != FV_OK) {
            conn_lost(r, v, "closing", now);
            return;
        }
        v->away = 1;
        r->live_conns++;
        return;
    }
    rc = fv_sim_ws_connect(v->ws, r->ctx, v->site ? &r->site_target : &r->target, v->cert, v->key,
                           err, sizeof err);
    if (rc) {
        conn_lost(r, v, err, now);
        return;
    }
    r->live_conns++;
    update_mask(r, v);
}

static void on_open(struct run *r, struct veh *v, uint64_t now)
{
    v->open = 1;
    v->backoff_ms = 0;
    r->connected++;
    if (r->connected > r->st->connected_peak) r->st->connected_peak = r->connected;
    v->send_next = v->lo; /* everything unfinished goes again on a new connection (R2) */
    v->next_scan_ns = now + r->scan_ns;
}

/* Drives a vehicle's connection after an epoll event (or to flush what was queued). */
static void vehicle_io(struct run *r, struct veh *v, uint64_t now)
{
    if (v->away || fv_sim_ws_state(v->ws) == FV_SIM_WS_CLOSED)
        return; /* a stale event for a connection closed earlier in this batch */
    char err[512];
    struct msg_ctx c = {r, v, now};
    int rc = fv_sim_ws_io(v->ws, fv_sim__on_message, &c, err, sizeof err);
    if (rc == FV_OK && !v->open && fv_sim_ws_state(v->ws) == FV_SIM_WS_OPEN) on_open(r, v, now);
    if (rc == FV_OK && v->send_next < v->hi && fv_sim_ws_pending(v->ws) < SEND_QUEUE_MAX) {
        fv_sim__pump(r, v, now);
        rc = fv_sim_ws_flush(v->ws, err, sizeof err);
    }
    if (rc)
        conn_lost(r, v, err, now);
    else
        update_mask(r, v);
    reschedule(r, v);
}

/* Queues waiting records on v's connection, if it is open, and writes what it can. */
static void pump_and_flush(struct run *r, struct veh *v, uint64_t now)
{
    if (vstate(v) != FV_SIM_WS_OPEN) return;
    fv_sim__pump(r, v, now);
    if (fv_sim_ws_pending(v->ws) > 0) {
        char err[512];
        if (fv_sim_ws_flush(v->ws, err, sizeof err))
            conn_lost(r, v, err, now);
        else
            update_mask(r, v);
    }
}

/* Takes the connections the connector finished (C2): a handshake done goes on here with the
 * upgrade; a failed one is lost as any connection failure is. */
static void connector_done(struct run *r, uint64_t now)
{
    struct fv_sim_conn_job *j = fv_sim_connector_take(r->conn);
    while (j) {
        struct fv_sim_conn_job *next = j->next;
        struct veh *v = j->owner;
        v->away = 0;
        if (j->rc) {
            if (fv_sim_ws_state(v->ws) == FV_SIM_WS_CLOSED) r->live_conns--; /* never opened */
            conn_lost(r, v, j->err, now);
            reschedule(r, v);
        } else {
            update_mask(r, v);
            vehicle_io(r, v, now); /* the upgrade request goes out now */
        }
        j = next;
    }
}

/* Timer work of one vehicle: tick, reconnect, deadlines, resends. */
static void vehicle_wake(struct run *r, struct veh *v, uint64_t now)
{
    if (r->phase == PH_GEN && !r->o->virtual_time && now >= v->next_tick_ns) {
        fv_sim__generate(r, v);
        v->next_tick_ns += r->period_ns;
        if (v->next_tick_ns <= now) { /* the loop fell behind: skip, do not burst */
            uint64_t missed = (now - v->next_tick_ns) / r->period_ns + 1;
            r->st->lagged += missed;
            v->next_tick_ns += missed * r->period_ns;
        }
    }
    enum fv_sim_ws_state s = vstate(v);
    if (v->away) {
        /* the connector's: it keeps the deadline (C2) */
    } else if (s == FV_SIM_WS_CLOSED) {
        if (needs_conn(r, v) && !v->in_queue && now >= v->reconnect_at_ns) {
            v->in_queue = 1;
            r->cq[(r->cq_head + r->cq_len) % r->n] = (uint32_t)(v - r->v);
            r->cq_len++;
        }
    } else if (s != FV_SIM_WS_OPEN && now >= v->conn_deadline_ns) {
        conn_lost(r, v,
                  s == FV_SIM_WS_CLOSING ? "no close reply"
                                         : "timed out connecting (TCP, TLS or upgrade)",
                  now);
    } else if (s == FV_SIM_WS_OPEN) {
        if (now >= v->next_scan_ns) {
            fv_sim__resend_scan(r, v, now);
            v->next_scan_ns = now + r->scan_ns;
        }
        pump_and_flush(r, v, now);
    }
    reschedule(r, v);
}

/*
 * Virtual time: makes rounds while no vehicle's window is full (R5, R6), at most
 * VT_ROUNDS_PER_TURN of them so that replies keep being read, then queues the new records
 * on the open connections.
 */
static void vt_generate(struct run *r, uint64_t now)
{
    uint64_t made = 0;
    while (r->vt_k < r->vt_total && r->vt_full == 0 && made < VT_ROUNDS_PER_TURN && !r->fatal) {
        for (uint32_t i = 0; i < r->n && !r->fatal; i++)
            fv_sim__generate(r, &r->v[i]);
        r->vt_k++;
        made++;
    }
    for (uint32_t i = 0; made > 0 && i < r->n && !r->fatal; i++) {
        pump_and_flush(r, &r->v[i], now);
        reschedule(r, &r->v[i]);
    }
}

/* Sites: makes history samples while their windows have room (simulate.h "Sites"), then
 * queues them on the open connections; returns how many were made. */
static uint64_t bf_generate(struct run *r, uint64_t now)
{
    if (r->phase != PH_GEN || r->bf_pending == 0) return 0;
    uint64_t made = fv_sim__sites_backfill(r, BF_PER_TURN);
    for (uint32_t i = r->o->vehicles; made > 0 && i < r->n && !r->fatal; i++) {
        pump_and_flush(r, &r->v[i], now);
        reschedule(r, &r->v[i]);
    }
    return made;
}

/* Serves the connection FIFO at connect_rate. */
static void serve_connect_queue(struct run *r, uint64_t now)
{
    double rate = r->o->connect_rate;
    if (rate > 0) {
        r->tokens += (double)(now - r->tokens_ns) / (double)NS_PER_S * rate;
        double burst = rate / 20.0 > 1.0 ? rate / 20.0 : 1.0;
        if (r->tokens > burst) r->tokens = burst;
    }
    r->tokens_ns = now;
    while (r->cq_len > 0 && (rate <= 0 || r->tokens >= 1.0) && !r->fatal) {
        struct veh *v = &r->v[r->cq[r->cq_head]];
        r->cq_head = (r->cq_head + 1) % r->n;
        r->cq_len--;
        v->in_queue = 0;
        if (rate > 0) r->tokens -= 1.0;
        if (vstate(v) == FV_SIM_WS_CLOSED && needs_conn(r, v)) start_connect(r, v, now);
        reschedule(r, v);
    }
}

/* ---- phases -------------------------------------------------------------------------------- */

static void begin_close(struct run *r, uint64_t now)
{
    r->phase = PH_CLOSE;
    r->close_end_ns = now + CLOSE_WAIT_NS;
    if (r->conn) { /* handshakes in progress come back cancelled (C2) and are closed */
        fv_sim_connector_stop(r->conn);
        connector_done(r, now);
    }
    for (uint32_t i = 0; i < r->n; i++) {
        struct veh *v = &r->v[i];
        v->in_queue = 0;
        enum fv_sim_ws_state s = vstate(v);
        if (s == FV_SIM_WS_OPEN) {
            char err[256];
            if (fv_sim_ws_start_close(v->ws, 1000) || fv_sim_ws_flush(v->ws, err, sizeof err))
                conn_lost(r, v, "close", now);
            else {
                v->conn_deadline_ns = r->close_end_ns;
                update_mask(r, v);
            }
        } else if (s != FV_SIM_WS_CLOSED) {
            conn_lost(r, v, "closing", now);
        }
        reschedule(r, v);
    }
    r->cq_len = 0;
}

/* ---- setup --------------------------------------------------------------------------------- */

static int setup(struct run *r, char *err, size_t errlen)
{
    const struct fv_sim_opts *o = r->o;
    int rc;
    if (!o->no_server && (rc = fv_sim__setup_network(r, err, errlen))) return rc;
    if (o->acked_log) {
        r->log = fopen(o->acked_log, "a");
        if (r->log == NULL) {
            fv_seterr(err, errlen, "cannot open acked log %s: %s", o->acked_log, strerror(errno));
            return FV_EIO;
        }
    }
    if (o->slow_log) {
        r->slow = fopen(o->slow_log, "a");
        if (r->slow == NULL) {
            fv_seterr(err, errlen, "cannot open slow-ack log %s: %s", o->slow_log, strerror(errno));
            return FV_EIO;
        }
    }
    if (o->influx_path) {
        r->influx = fopen(o->influx_path, "w");
        if (r->influx == NULL) {
            fv_seterr(err, errlen, "cannot create line-protocol file %s: %s", o->influx_path,
                      strerror(errno));
            return FV_EIO;
        }
        /* Our own buffer: glibc ignores the size asked for with a NULL buffer. */
        r->influx_buf = malloc(INFLUX_BUF);
        if (r->influx_buf == NULL) {
            fv_seterr(err, errlen, "out of memory");
            return FV_ENOMEM;
        }
        if (setvbuf(r->influx, r->influx_buf, _IOFBF, INFLUX_BUF) != 0) {
            fv_seterr(err, errlen, "setvbuf on %s failed", o->influx_path);
            return FV_EIO;
        }
    }

    /* Descriptors: one per vehicle plus a few; raise the soft limit to the hard one. */
    struct rlimit rl;
    if (!o->no_server && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o->vehicles + o->sites + 64)
            fv_warn("simulate: only %llu file descriptors allowed (ulimit -n) for %u devices: "
                    "some connections will fail",
                    (unsigned long long)rl.rlim_cur, o->vehicles + o->sites);
    }

    r->n = o->vehicles + o->sites;
    r->v = calloc(r->n, sizeof *r->v);
    r->heap = calloc(r->n, sizeof *r->heap);
    r->cq = calloc(r->n, sizeof *r->cq);
    r->sample = calloc(fv_sim_signal_count(), sizeof *r->sample);
    if (r->v == NULL || r->heap == NULL || r->cq == NULL || r->sample == NULL) {
        fv_seterr(err, errlen, "out of memory for %u devices", r->n);
        return FV_ENOMEM;
    }
    if (!o->no_server && (r->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        fv_seterr(err, errlen, "epoll_create1: %s", strerror(errno));
        return FV_EIO;
    }
    if (!o->no_server) {
        if ((rc = fv_sim_connector_start(&r->conn, err, errlen))) return rc;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &r->conn_tag};
        if (epoll_ctl(r->ep, EPOLL_CTL_ADD, fv_sim_connector_fd(r->conn), &ev) != 0) {
            fv_seterr(err, errlen, "epoll_ctl: %s", strerror(errno));
            return FV_EIO;
        }
    }
    for (uint32_t i = 0; i < r->n; i++) {
        struct veh *v = &r->v[i];
        if (i < o->vehicles && (rc = fv_sim_vin(o->id_prefix, i, v->vin, err, errlen))) return rc;
        if ((i < o->vehicles && (rc = fv_sim_vehicle_new(o->seed, i, &v->model))) ||
            (!o->no_server && (rc = fv_sim_ws_new(&v->ws)))) {
            fv_seterr(err, errlen, "out of memory for %u devices", r->n);
            return rc;
        }
        v->lo = v->hi = v->send_next = 1;
    }
    if (o->sites > 0 && (rc = fv_sim__sites_setup(r, err, errlen))) return rc;
    /* Every device's certificate before the run: a key pair and a signature each, which on
     * the loop would hold up the acks of the devices already streaming (and the latency this
     * tool measures is the server's, not its own). */
    if (!o->no_server && (rc = fv_sim__mint_all(r, err, errlen))) return rc;
    uint64_t now = fv_mono_ns();
    r->period_ns = (uint64_t)((double)NS_PER_S / o->hz);
    if (r->period_ns == 0) r->period_ns = 1;
    r->t0_ns = now;
    r->gen_end_ns = o->virtual_time ? NEVER : now + (uint64_t)(o->seconds * (double)NS_PER_S);
    r->vt_total = (uint64_t)llround(o->seconds * o->hz);
    r->tokens_ns = now;
    r->tokens = 1;
    /* The clip hook of campaign hits (campaign.h VC4): the clip worker uploads each hit's
     * clip off this loop; without a clip server the stub counts them as failures. */
    r->clip_upload = fv_sim_clip_upload_stub;
    r->clip_upload_arg = r;
    if (o->clip_server && !o->no_server) {
        if ((rc = fv_sim_clipworker_start(o->clip_server, o->certs_dir, o->clip_interrupt,
                                          &r->clipw, err, errlen)))
            return rc;
        r->clip_upload = fv_sim_clipworker_hook;
        r->clip_upload_arg = r->clipw;
    }
    r->scan_ns = (uint64_t)(o->resend_after_s * (double)NS_PER_S);
    if (r->scan_ns > SCAN_EVERY_NS || r->scan_ns == 0) r->scan_ns = SCAN_EVERY_NS;
    r->rng = o->seed ^ now;
    snprintf(r->runid, sizeof r->runid, "%" PRIx64, fv_now_ms());
    for (uint32_t i = 0; i < r->n; i++) {
        struct veh *v = &r->v[i];
        /* Spread ticks over the period so the fleet does not report in lockstep. */
        v->next_tick_ns = now + r->period_ns * i / r->n;
        v->reconnect_at_ns = now;
        v->wake_ns = NEVER;
        v->heap_pos = i;
        r->heap[i] = i;
    }
    for (uint32_t i = 0; !o->no_server && i < r->n; i++)
        reschedule(r, &r->v[i]);
    return FV_OK;
}

/* Stops the clip worker (after at most wait_s for its queue) and counts its clips. */
static void stop_clips(struct run *r, double wait_s)
{
    struct fv_sim_clip_counts c = {0};
    fv_sim_clipworker_stop(r->clipw, wait_s, &c);
    r->clipw = NULL;
    r->st->clips_uploaded += c.uploaded;
    r->st->clip_failures += c.failed;
    r->st->clips_resumed += c.resumed;
}

static void teardown(struct run *r)
{
    stop_clips(r, 0);
    fv_sim_connector_free(r->conn); /* before the connections it may hold */
    r->conn = NULL;
    for (uint32_t i = 0; r->v && i < r->n; i++) {
        struct veh *v = &r->v[i];
        fv_sim_ws_free(v->ws);
        fv_sim_vehicle_free(v->model);
        fv_sim_campaigns_free(v->camp);
        free(v->site);
        X509_free(v->cert);
        EVP_PKEY_free(v->key);
        for (uint32_t k = 0; k < v->ring_cap; k++)
            free(v->ring[k].payload);
        free(v->ring);
    }
    free(r->v);
    free(r->heap);
    free(r->cq);
    if (r->ep >= 0) close(r->ep);
    if (r->log) fclose(r->log);
    if (r->slow) fclose(r->slow);
    if (r->influx) fclose(r->influx); /* only after a failure: fv_sim_run closes it */
    free(r->influx_buf);
    fv_buf_free(&r->line);
    for (size_t i = 0; i < CAMPAIGN_HITS_MAX; i++)
        fv_buf_free(&r->hits[i]);
    free(r->sample);
    SSL_CTX_free(r->ctx);
    fv_ca_free(r->ca);
    fv_buf_free(&r->pl);
    fv_buf_free(&r->env);
}

/* No server: every round in order, straight to the line-protocol file (R6). */
static void run_offline(struct run *r)
{
    uint64_t next_progress = r->t0_ns + NS_PER_S;
    for (; r->vt_k < r->vt_total && !r->fatal; r->vt_k++) {
        if (r->o->stop && *r->o->stop) {
            r->st->interrupted = 1;
            return;
        }
        for (uint32_t i = 0; i < r->n && !r->fatal; i++)
            fv_sim__generate(r, &r->v[i]);
        uint64_t now = fv_mono_ns();
        if (now >= next_progress) {
            fv_sim__progress(r, now);
            next_progress = now + NS_PER_S;
        }
    }
}

/* The epoll loop through the phases GEN, DRAIN, CLOSE (top comment); ends on a stop request
 * or a fatal error too. */
static void run_online(struct run *r)
{
    const struct fv_sim_opts *o = r->o;
    struct fv_sim_stats *st = r->st;
    struct epoll_event evs[MAX_EVENTS];
    uint64_t next_progress = r->t0_ns + NS_PER_S;
    for (;;) {
        uint64_t now = fv_mono_ns();
        if (r->fatal) break;
        if (o->stop && *o->stop) {
            st->interrupted = 1;
            break;
        }
        int history_done = r->bf_pending == 0 || r->connected == 0;
        if (r->phase == PH_GEN &&
            (o->virtual_time ? r->vt_k >= r->vt_total : now >= r->gen_end_ns && history_done)) {
            r->phase = PH_DRAIN;
            r->drain_end_ns = now + (uint64_t)(o->drain_s * (double)NS_PER_S);
            for (uint32_t i = 0; i < r->n; i++)
                reschedule(r, &r->v[i]);
        }
        if (r->phase == PH_DRAIN && (r->outstanding == 0 || now >= r->drain_end_ns))
            begin_close(r, now);
        if (r->phase == PH_CLOSE && (r->live_conns == 0 || now >= r->close_end_ns)) break;

        serve_connect_queue(r, now);
        while (r->n > 0 && r->v[r->heap[0]].wake_ns <= now && !r->fatal)
            vehicle_wake(r, &r->v[r->heap[0]], now);
        if (r->phase == PH_GEN && o->virtual_time) vt_generate(r, now);
        uint64_t backfilled = bf_generate(r, now);
        if (now >= next_progress) {
            fv_sim__progress(r, now);
            next_progress += NS_PER_S;
            if (next_progress <= now) next_progress = now + NS_PER_S;
        }

        uint64_t until = min64(r->v[r->heap[0]].wake_ns, next_progress);
        if (r->phase == PH_GEN && o->virtual_time && (r->vt_k >= r->vt_total || r->vt_full == 0))
            until = now; /* more rounds to make now, or GEN is over */
        else if (r->phase == PH_GEN && backfilled > 0)
            until = now; /* more history to make while the windows have room */
        else if (r->phase == PH_GEN)
            until = min64(until, r->gen_end_ns);
        else if (r->phase == PH_DRAIN)
            until = min64(until, r->drain_end_ns);
        else if (r->phase == PH_CLOSE)
            until = min64(until, r->close_end_ns);
        if (r->cq_len > 0) {
            double wait_s =
                o->connect_rate > 0 && r->tokens < 1.0 ? (1.0 - r->tokens) / o->connect_rate : 0.0;
            until = min64(until, now + (uint64_t)(wait_s * (double)NS_PER_S));
        }
        int timeout_ms = 0;
        if (until > now) {
            uint64_t ms = (until - now + NS_PER_MS - 1) / NS_PER_MS;
            timeout_ms = ms > 1000 ? 1000 : (int)ms;
        }
        int nev = epoll_wait(r->ep, evs, MAX_EVENTS, timeout_ms);
        if (nev < 0) {
            if (errno == EINTR) continue;
            fv_sim__set_fatal(r, FV_EIO, "epoll_wait");
            break;
        }
        now = fv_mono_ns();
        for (int i = 0; i < nev; i++) {
            if (evs[i].data.ptr == &r->conn_tag)
                connector_done(r, now);
            else
                vehicle_io(r, evs[i].data.ptr, now);
        }
    }
}

int fv_sim_run(const struct fv_sim_opts *o, struct fv_sim_stats *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    st->vehicles = o->vehicles;
    st->sites = o->sites;
    struct run *r = calloc(1, sizeof *r);
    if (r == NULL) {
        fv_seterr(err, errlen, "out of memory");
        return FV_ENOMEM;
    }
    r->o = o;
    r->st = st;
    r->ep = -1;
    int rc = FV_EINVAL;
    if (o->sites > 0 && (o->virtual_time || o->no_server || o->influx_path)) {
        fv_seterr(err, errlen,
                  "sites run in wall-clock time against a server only (no "
                  "--virtual-time, --no-server or --influx with --sites)");
        goto done;
    }
    if (o->sites > 0 &&
        (!(o->site_days >= 0) || !(o->opt_out_pct >= 0) || !(o->opt_out_pct <= 100) ||
         !(o->offline_pct >= 0) || !(o->offline_pct <= 100) || !(o->site_utc_offset_h >= -14) ||
         !(o->site_utc_offset_h <= 14))) {
        fv_seterr(err, errlen, "invalid site options");
        goto done;
    }
    if (o->vehicles + (uint64_t)o->sites == 0 || !(o->hz > 0) || o->signals == 0 ||
        o->max_inflight == 0 || o->seconds < 0 || o->drain_s < 0) {
        fv_seterr(err, errlen, "invalid simulation options");
        goto done;
    }
    if (o->no_server && (!o->virtual_time || o->influx_path == NULL)) {
        fv_seterr(err, errlen,
                  "a run without a server needs virtual time and a line-protocol file");
        goto done;
    }
    if ((rc = setup(r, err, errlen))) goto done;
    if (o->no_server)
        run_offline(r);
    else
        run_online(r);
    /* the clips of the last hits: as long as the drain */
    stop_clips(r, o->drain_s);
    if (r->fatal) {
        fv_seterr(err, errlen, "%s", r->fatal_msg);
        rc = r->fatal;
    } else {
        rc = FV_OK;
    }
    fv_sim__progress(r, fv_mono_ns());
    if (st->connected_peak == 0 && st->sent > 0 && r->last_err[0])
        fv_error("simulate: no device could connect; last error: %s", r->last_err);
    if (r->influx) {
        int bad = ferror(r->influx);
        int cerr = fclose(r->influx) != 0 ? errno : 0;
        r->influx = NULL;
        if ((bad || cerr) && rc == FV_OK) {
            fv_seterr(err, errlen, "writing the line-protocol file %s failed: %s", o->influx_path,
                      cerr ? strerror(cerr) : "write error");
            rc = FV_EIO;
        }
    }
done:
    st->unacked = r->outstanding;
    st->ack_p50_ms = fv_sim__hist_quantile_ms(r, 0.50);
    st->ack_p99_ms = fv_sim__hist_quantile_ms(r, 0.99);
    st->ack_max_ms = fv_sim__hist_quantile_ms(r, 1.0);
    st->elapsed_s = r->t0_ns ? (double)(fv_mono_ns() - r->t0_ns) / 1e9 : 0;
    teardown(r);
    st->peak_rss_mb = fv_sim__peak_rss_mb();
    free(r);
    return rc;
}
