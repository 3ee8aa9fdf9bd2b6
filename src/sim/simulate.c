/*
 * simulate.c - the simulator's run loop (contract in simulate.h).
 *
 * One thread, one epoll set, N vehicles. Each vehicle owns: its model (vehicle.c), its
 * connection (wsclient.c), its minted certificate, and a ring of unfinished records.
 *
 * Records of a vehicle are numbered by seq (1, 2, ...). The ring holds the window
 * [lo, hi): seq s lives in slot s & (cap - 1); a slot whose payload is NULL is finished
 * (acked or refused). Invariants:
 *  R1 lo is the oldest unfinished seq (or hi when none); hi - lo <= max_inflight <= cap.
 *  R2 records in [lo, send_next) were queued on the current connection; [send_next, hi)
 *     wait for it to be OPEN and for room in its send queue (pump).
 *  R3 a record's first_send_ns is set once, when first queued; every later transmission is
 *     a resend (is_resend = true in the payload, same txid).
 *  R4 the run's `outstanding` equals the sum over vehicles of unfinished records.
 *
 * Timers: every vehicle sits in one binary min-heap keyed by wake_ns, the earliest of its
 * next tick, reconnect time, handshake deadline and resend scan (vehicle_deadline). A
 * vehicle whose backoff expired joins a FIFO of connection requests served at
 * --connect-rate (a token bucket), so a server restart does not meet N handshakes at once.
 *
 * Phases: GEN (generate for S s) -> DRAIN (wait for outstanding, reconnecting as needed, up
 * to --drain s) -> CLOSE (send close frames, wait up to 1 s) -> done. A stop request (signal)
 * skips to done.
 *
 * Virtual time (simulate.h) replaces the ticks: vt_generate makes whole rounds while no
 * vehicle's window is full, and GEN ends when the last round is made. Besides R1-R4:
 *  R5 vt_full counts the vehicles whose `full` flag is set, and `full` is set exactly when
 *     hi - lo >= max_inflight (updated in generate and finish).
 *  R6 vt_k rounds are made: every vehicle has generated records 0..vt_k-1, no more.
 * Without a server (no_server) there are no connections, rings or epoll set: run_offline
 * makes the rounds and writes the line-protocol file.
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
#include "sim/simulate.h"
#include "sim/vehicle.h"
#include "sim/wsclient.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "wire/envelope.h"
#include "wire/payload.h"
#include "wire/signals.h"

#define NS_PER_MS          1000000ULL
#define NS_PER_S           1000000000ULL
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000
#define SCAN_EVERY_NS      NS_PER_S    /* at most; less when resend_after_s is shorter */
#define SEND_QUEUE_MAX     (64 * 1024) /* bytes queued per connection before pump waits */
#define CLOSE_WAIT_NS      NS_PER_S
#define MAX_EVENTS         1024
#define NEVER              UINT64_MAX
#define ERR_LOG_EVERY_NS   (5 * NS_PER_S)
#define ERR_KINDS          16
#define VT_ROUNDS_PER_TURN 8 /* virtual time: rounds made between two looks at the sockets */
#define INFLUX_BUF         (1u << 20) /* line-protocol file written in blocks this large */

/* Latency histogram: log-linear over microseconds, exact below 128 us, then 64 buckets per
 * power of two (<= 1.6 % error). */
#define HIST_EXACT 128
#define HIST_SUB   64
#define HIST_N     (HIST_EXACT + 58 * HIST_SUB)

static const char DEVICE_HEADERS[] = "X-Network-Interface: wifi\r\n"
                                     "User-Agent: Hermes/1.16.2 (vehicle_device)\r\n"
                                     "Version: 2025.20\r\n";

enum phase { PH_GEN, PH_DRAIN, PH_CLOSE, PH_DONE };

struct rec {
    unsigned char *payload; /* protobuf V payload; NULL = finished slot */
    uint64_t created_ms;
    uint64_t first_send_ns; /* 0 = never sent (R3) */
    uint64_t last_send_ns;
    uint32_t len;
    uint16_t ndatums;
    uint8_t resend_form; /* payload already has is_resend = true */
};

struct veh {
    char vin[FV_SIM_VIN_LEN + 1];
    struct fv_sim_vehicle *model;
    struct fv_sim_ws *ws;
    X509 *cert;
    EVP_PKEY *key;
    struct rec *ring;
    uint32_t ring_cap; /* power of two, 0 before the first record */
    uint32_t outstanding;
    uint64_t lo, hi, send_next; /* R1, R2 */
    uint64_t next_tick_ns, reconnect_at_ns, conn_deadline_ns, next_scan_ns, wake_ns;
    uint32_t backoff_ms;
    uint32_t heap_pos;
    uint32_t attempts;
    uint32_t epoll_mask; /* events registered; 0 = not registered */
    uint8_t in_queue;
    uint8_t open;
    uint8_t full; /* R5 */
};

struct run {
    const struct fv_sim_opts *o;
    struct fv_sim_stats *st;
    SSL_CTX *ctx;
    struct fv_ca *ca;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host[256], port[16], hostport[300], path[512];
    struct fv_sim_ws_target target;
    char runid[24];
    struct veh *v;
    uint32_t n;
    uint32_t *heap; /* vehicle indexes, min-heap on wake_ns */
    uint32_t *cq;   /* FIFO of vehicles waiting for a connection token */
    uint32_t cq_head, cq_len;
    double tokens;
    uint64_t tokens_ns;
    int ep;
    FILE *log;
    struct fv_buf pl, env;
    uint64_t period_ns, t0_ns, gen_end_ns, drain_end_ns, close_end_ns;
    uint64_t scan_ns; /* how often open connections look for records to resend */
    enum phase phase;
    uint64_t outstanding; /* R4 */
    uint32_t connected, live_conns;
    uint64_t rng;
    uint64_t hist[HIST_N];
    uint64_t hist_n;
    int fatal;
    char fatal_msg[256];
    char last_err[512];
    uint64_t err_kinds[ERR_KINDS];
    int err_kinds_n;
    uint64_t last_err_ns, err_suppressed;
    uint64_t last_reply_err_ns;
    uint64_t prev_datums;
    FILE *influx;            /* line-protocol output, or NULL */
    char *influx_buf;        /* its stdio buffer (INFLUX_BUF bytes), freed after fclose */
    struct fv_buf line;      /* the line being built */
    struct fv_datum *sample; /* fv_sim_signal_count() datums, for the line */
    uint64_t vt_total, vt_k; /* virtual time: rounds to make, rounds made (R6) */
    uint32_t vt_full;        /* R5 */
};

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
}

/* ---- small helpers ----------------------------------------------------------------------- */

static uint64_t rnd(struct run *r)
{
    uint64_t z = (r->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* ---- virtual time, jitter, line protocol --------------------------------------------------- */

/* The splitmix64 finaliser (public-domain algorithm by S. Vigna). */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

int64_t fv_sim_jitter_ms(uint64_t seed, uint32_t vehicle, uint64_t k, uint32_t jitter_ms)
{
    if (jitter_ms == 0) return 0;
    /* One finaliser round per input; the first constant keeps this stream apart from the
     * vehicle models', which are seeded from the same seed. */
    uint64_t h = mix64(seed ^ 0x6A09E667F3BCC909ULL);
    h = mix64(h + 0x9E3779B97F4A7C15ULL * ((uint64_t)vehicle + 1));
    h = mix64(h + 0xD1B54A32D192ED03ULL * (k + 1));
    uint64_t span = 2 * (uint64_t)jitter_ms + 1;
    return (int64_t)(h % span) - (int64_t)jitter_ms;
}

/* base + off, clamped at 0 (|off| < 2^33, so neither side overflows). */
static uint64_t add_offset(uint64_t base, int64_t off)
{
    if (off < 0) return base < (uint64_t)(-off) ? 0 : base - (uint64_t)(-off);
    return base + (uint64_t)off;
}

uint64_t fv_sim_virtual_ms(const struct fv_sim_opts *o, uint32_t vehicle, uint64_t k)
{
    uint64_t step = o->hz > 0 ? (uint64_t)llround((double)k * 1000.0 / o->hz) : 0;
    return add_offset(o->virtual_start_ms + step,
                      fv_sim_jitter_ms(o->seed, vehicle, k, o->jitter_ms));
}

/* Appends s, with a backslash before every character found in `special`. */
static int put_escaped(struct fv_buf *b, const char *s, const char *special)
{
    for (const char *p = s; *p; p++) {
        if (strchr(special, *p) != NULL && fv_buf_append(b, "\\", 1)) return FV_ENOMEM;
        if (fv_buf_append(b, p, 1)) return FV_ENOMEM;
    }
    return FV_OK;
}

/* Shortest of %.15g..%.17g that reads back as x (%.17g always does). */
static void fmt_double(double x, char *out, size_t len)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, len, "%.*g", prec, x);
        if (strtod(out, NULL) == x) return;
    }
}

/* Appends ",<name><suffix>=<value>" (no comma before the first field of a line). */
static int put_field(struct fv_buf *b, size_t *nfields, const char *name, const char *suffix,
                     const char *value)
{
    if ((*nfields)++ > 0 && fv_buf_append(b, ",", 1)) return FV_ENOMEM;
    if (put_escaped(b, name, ",= ") || put_escaped(b, suffix, ",= ") || fv_buf_append(b, "=", 1) ||
        fv_buf_append(b, value, strlen(value)))
        return FV_ENOMEM;
    return FV_OK;
}

/* Appends a string field: the value quoted, '"' and '\\' escaped, line breaks as \n, \r. */
static int put_string_field(struct fv_buf *b, size_t *nfields, const char *name, const char *s)
{
    if (put_field(b, nfields, name, "", "\"")) return FV_ENOMEM;
    for (const char *p = s; *p; p++) {
        const char *e = *p == '"'    ? "\\\""
                        : *p == '\\' ? "\\\\"
                        : *p == '\n' ? "\\n"
                        : *p == '\r' ? "\\r"
                                     : NULL;
        if (e ? fv_buf_append(b, e, 2) : fv_buf_append(b, p, 1)) return FV_ENOMEM;
    }
    return fv_buf_append(b, "\"", 1);
}

static int put_datum(struct fv_buf *b, size_t *nf, const struct fv_datum *d)
{
    char name[32], num[48], num2[48];
    const struct fv_value *v = &d->value;
    fv_signal_label(d->field, name, sizeof name);
    switch (v->kind) {
    case FV_VK_DOUBLE:
        if (!isfinite(v->u.d)) return FV_OK;
        fmt_double(v->u.d, num, sizeof num);
        return put_field(b, nf, name, "", num);
    case FV_VK_INT:
    case FV_VK_ENUM:
        snprintf(num, sizeof num, "%" PRId64 "i", v->u.i);
        return put_field(b, nf, name, "", num);
    case FV_VK_DOORS:
    case FV_VK_TIRES:
        snprintf(num, sizeof num, "%" PRIu32 "i", v->u.bits);
        return put_field(b, nf, name, "", num);
    case FV_VK_TIME:
        snprintf(num, sizeof num, "%" PRId64 "i",
                 (int64_t)v->u.time.h * 3600 + (int64_t)v->u.time.m * 60 + v->u.time.s);
        return put_field(b, nf, name, "", num);
    case FV_VK_BOOL:
        return put_field(b, nf, name, "", v->u.i ? "true" : "false");
    case FV_VK_LOCATION:
        if (!isfinite(v->u.loc.lat) || !isfinite(v->u.loc.lon)) return FV_OK;
        fmt_double(v->u.loc.lat, num, sizeof num);
        fmt_double(v->u.loc.lon, num2, sizeof num2);
        if (put_field(b, nf, name, "_lat", num)) return FV_ENOMEM;
        return put_field(b, nf, name, "_lon", num2);
    case FV_VK_STRING:
        return v->u.s ? put_string_field(b, nf, name, v->u.s) : FV_OK;
    default: /* no value: none, invalid, a member this build does not know */
        return FV_OK;
    }
}

int fv_sim_influx_line(struct fv_buf *out, const char *vin, const struct fv_datum *d, size_t n,
                       uint64_t ts_ms)
{
    size_t start = out->len, nf = 0;
    char ts[32];
    if (fv_buf_append(out, "telemetry,vin=", 14) || put_escaped(out, vin, ",= ") ||
        fv_buf_append(out, " ", 1))
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (put_datum(out, &nf, &d[i])) goto fail;
    if (nf == 0) {
        out->len = start;
        return FV_OK;
    }
    snprintf(ts, sizeof ts, " %" PRIu64 "\n", ts_ms);
    if (fv_buf_append(out, ts, strlen(ts))) goto fail;
    return FV_OK;
fail:
    out->len = start;
    return FV_ENOMEM;
}

static void set_fatal(struct run *r, int rc, const char *what)
{
    if (r->fatal) return;
    r->fatal = rc;
    snprintf(r->fatal_msg, sizeof r->fatal_msg, "%s: %s", what, fv_strerror(rc));
}

static void hist_add(struct run *r, uint64_t us)
{
    size_t i;
    if (us < HIST_EXACT) {
        i = (size_t)us;
    } else {
        int msb = 63 - __builtin_clzll(us); /* >= 7 */
        int shift = msb - 6;
        size_t sub = (size_t)(us >> shift) - HIST_SUB; /* 0..63 */
        i = HIST_EXACT + (size_t)(msb - 7) * HIST_SUB + sub;
        if (i >= HIST_N) i = HIST_N - 1;
    }
    r->hist[i]++;
    r->hist_n++;
}

/* Midpoint of bucket i, in microseconds. */
static double hist_value(size_t i)
{
    if (i < HIST_EXACT) return (double)i;
    size_t k = i - HIST_EXACT;
    int msb = (int)(k / HIST_SUB) + 7;
    int shift = msb - 6;
    double lo = (double)((uint64_t)(HIST_SUB + k % HIST_SUB) << shift);
    return lo + (double)(1ULL << shift) / 2.0;
}

static double hist_quantile_ms(const struct run *r, double q)
{
    if (r->hist_n == 0) return 0;
    uint64_t want = (uint64_t)ceil(q * (double)r->hist_n);
    if (want == 0) want = 1;
    uint64_t cum = 0;
    for (size_t i = 0; i < HIST_N; i++) {
        cum += r->hist[i];
        if (cum >= want) return hist_value(i) / 1000.0;
    }
    return hist_value(HIST_N - 1) / 1000.0;
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

/* The earliest moment the vehicle has something to do (see the top comment). */
static void reschedule(struct run *r, struct veh *v)
{
    uint64_t d = NEVER;
    if (r->phase == PH_GEN && !r->o->virtual_time) d = v->next_tick_ns;
    switch (fv_sim_ws_state(v->ws)) {
    case FV_SIM_WS_CLOSED:
        if (needs_conn(r, v) && !v->in_queue) d = min64(d, v->reconnect_at_ns);
        break;
    case FV_SIM_WS_OPEN:
        if (v->outstanding > 0) d = min64(d, v->next_scan_ns);
        break;
    default: /* connecting, handshaking, closing */
        d = min64(d, v->conn_deadline_ns);
        break;
    }
    if (d != v->wake_ns) {
        v->wake_ns = d;
        heap_fix(r, v->heap_pos);
    }
}

/* ---- records ------------------------------------------------------------------------------- */

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

/* Generates v's next record (k = hi - 1): steps the model 1/hz s, stamps the record, writes
 * it to the line-protocol file, and (with a server) keeps it in the ring until finished. */
static void generate(struct run *r, struct veh *v)
{
    const struct fv_sim_opts *o = r->o;
    if (!o->no_server && v->hi - v->lo >= o->max_inflight) {
        r->st->paused++;
        return;
    }
    int rc = o->no_server ? FV_OK : ring_grow(v);
    if (rc) {
        set_fatal(r, rc, "record buffer");
        return;
    }
    fv_sim_vehicle_step(v->model, 1.0 / o->hz);
    uint32_t idx = (uint32_t)(v - r->v);
    uint64_t k = v->hi - 1;
    uint64_t created_ms =
        o->virtual_time ? fv_sim_virtual_ms(o, idx, k)
                        : add_offset(fv_now_ms(), fv_sim_jitter_ms(o->seed, idx, k, o->jitter_ms));
    size_t nd = o->signals < fv_sim_signal_count() ? o->signals : fv_sim_signal_count();
    unsigned char *copy = NULL;
    if (!o->no_server) {
        r->pl.len = 0;
        rc = fv_sim_vehicle_encode(v->model, v->vin, o->signals, created_ms, &r->pl, &nd);
        copy = rc ? NULL : malloc(r->pl.len ? r->pl.len : 1);
        if (copy == NULL) {
            set_fatal(r, rc ? rc : FV_ENOMEM, "encoding a record");
            return;
        }
        memcpy(copy, r->pl.data, r->pl.len);
    }
    if (r->influx && (rc = write_influx(r, v, created_ms))) {
        free(copy);
        set_fatal(r, rc, "line protocol"); /* no-op when write_influx set a reason */
        return;
    }
    if (copy) {
        struct rec *x = slot(v, v->hi);
        memset(x, 0, sizeof *x);
        x->payload = copy;
        x->len = (uint32_t)r->pl.len;
        x->ndatums = (uint16_t)nd;
        x->created_ms = created_ms;
        v->outstanding++;
        r->outstanding++;
    }
    v->hi++;
    r->st->sent++;
    r->st->datums_sent += nd;
    if (!o->no_server && !v->full && v->hi - v->lo >= o->max_inflight) { /* R5 */
        v->full = 1;
        r->vt_full++;
    }
}

/* Rewrites a record's payload with is_resend = true (once; later resends reuse it). */
static int to_resend_form(struct run *r, struct rec *x)
{
    struct fv_vrecord vr;
    char err[128];
    int rc = fv_payload_decode_v(x->payload, x->len, &vr, err, sizeof err);
    if (rc == FV_OK) {
        vr.is_resend = 1;
        r->pl.len = 0;
        rc = fv_payload_encode_v(&vr, &r->pl);
    }
    fv_vrecord_free(&vr);
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
    if (resend && !x->resend_form && (rc = to_resend_form(r, x))) return rc;
    char txid[64];
    txid_of(r, v, seq, txid, sizeof txid);
    struct fv_stream_msg m;
    memset(&m, 0, sizeof m);
    m.txid = txid;
    m.txid_len = strlen(txid);
    m.topic = FV_TOPIC_V;
    m.topic_len = 1;
    m.created_at = (uint32_t)(x->created_ms / 1000u);
    m.payload = x->payload;
    m.payload_len = x->len;
    m.device_type = "vehicle_device";
    m.device_type_len = strlen("vehicle_device");
    m.device_id = v->vin;
    m.device_id_len = strlen(v->vin);
    r->env.len = 0;
    if ((rc = fv_envelope_build_stream(&r->env, &m)) ||
        (rc = fv_sim_ws_send(v->ws, FV_SIM_WS_BINARY, r->env.data, r->env.len)))
        return rc;
    if (resend)
        r->st->resent++;
    else
        x->first_send_ns = now;
    x->last_send_ns = now;
    return FV_OK;
}

/* Queues waiting records on an open connection while its send queue has room (R2). */
static void pump(struct run *r, struct veh *v, uint64_t now)
{
    if (fv_sim_ws_state(v->ws) != FV_SIM_WS_OPEN) return;
    while (v->send_next < v->hi && fv_sim_ws_pending(v->ws) < SEND_QUEUE_MAX) {
        uint64_t s = v->send_next++;
        struct rec *x = slot(v, s);
        if (x->payload == NULL) continue;
        int rc = send_record(r, v, s, x, now);
        if (rc) {
            set_fatal(r, rc, "queueing a record");
            return;
        }
    }
}

/* Resends records of this connection unanswered for resend_after_s. */
static void resend_scan(struct run *r, struct veh *v, uint64_t now)
{
    uint64_t after = (uint64_t)(r->o->resend_after_s * (double)NS_PER_S);
    for (uint64_t s = v->lo; s < v->send_next; s++) {
        if (fv_sim_ws_pending(v->ws) >= SEND_QUEUE_MAX) return;
        struct rec *x = slot(v, s);
        if (x->payload == NULL || now - x->last_send_ns < after) continue;
        int rc = send_record(r, v, s, x, now);
        if (rc) {
            set_fatal(r, rc, "queueing a resend");
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
        if (x->first_send_ns) hist_add(r, (now - x->first_send_ns) / 1000u);
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

struct msg_ctx {
    struct run *r;
    struct veh *v;
    uint64_t now;
};

/* A reply from the server: an ack or an error reply for one of our records. */
static int on_message(void *ud, unsigned opcode, const unsigned char *p, size_t len)
{
    struct msg_ctx *c = ud;
    struct run *r = c->r;
    struct veh *v = c->v;
    struct fv_envelope env;
    char err[160];
    if (opcode != FV_SIM_WS_BINARY || fv_envelope_decode(p, len, &env, err, sizeof err)) {
        r->st->bad_replies++;
        if (r->st->bad_replies == 1)
            fv_warn("simulate: %s: unexpected %s reply from the server (not an envelope)", v->vin,
                    opcode == FV_SIM_WS_BINARY ? "binary" : "text");
        return 0;
    }
    int is_ack = env.message_type == FV_MSG_STREAM_ACK;
    int is_err = env.message_type == FV_MSG_STREAM;
    uint64_t seq = seq_of(r, v, &env.txid);
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
        set_fatal(r, FV_EIO, "epoll_ctl");
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
    if (v->cert == NULL && (rc = fv_ca_mint(r->ca, v->vin, FV_CT_VEHICLE_DEVICE, &v->cert, &v->key,
                                            err, sizeof err))) {
        snprintf(r->fatal_msg, sizeof r->fatal_msg, "minting a certificate for %s: %s", v->vin,
                 err);
        r->fatal = rc;
        return;
    }
    if (v->attempts++ > 0) r->st->reconnects++;
    rc = fv_sim_ws_connect(v->ws, r->ctx, &r->target, v->cert, v->key, err, sizeof err);
    if (rc) {
        conn_lost(r, v, err, now);
        return;
    }
    r->live_conns++;
    v->conn_deadline_ns = now + (uint64_t)(r->o->handshake_timeout_s * (double)NS_PER_S);
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
    if (fv_sim_ws_state(v->ws) == FV_SIM_WS_CLOSED)
        return; /* a stale event for a connection closed earlier in this batch */
    char err[512];
    struct msg_ctx c = {r, v, now};
    int rc = fv_sim_ws_io(v->ws, on_message, &c, err, sizeof err);
    if (rc == FV_OK && !v->open && fv_sim_ws_state(v->ws) == FV_SIM_WS_OPEN) on_open(r, v, now);
    if (rc == FV_OK && v->send_next < v->hi && fv_sim_ws_pending(v->ws) < SEND_QUEUE_MAX) {
        pump(r, v, now);
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
    if (fv_sim_ws_state(v->ws) != FV_SIM_WS_OPEN) return;
    pump(r, v, now);
    if (fv_sim_ws_pending(v->ws) > 0) {
        char err[512];
        if (fv_sim_ws_flush(v->ws, err, sizeof err))
            conn_lost(r, v, err, now);
        else
            update_mask(r, v);
    }
}

/* Timer work of one vehicle: tick, reconnect, deadlines, resends. */
static void vehicle_wake(struct run *r, struct veh *v, uint64_t now)
{
    if (r->phase == PH_GEN && !r->o->virtual_time && now >= v->next_tick_ns) {
        generate(r, v);
        v->next_tick_ns += r->period_ns;
        if (v->next_tick_ns <= now) { /* the loop fell behind: skip, do not burst */
            uint64_t missed = (now - v->next_tick_ns) / r->period_ns + 1;
            r->st->lagged += missed;
            v->next_tick_ns += missed * r->period_ns;
        }
    }
    enum fv_sim_ws_state s = fv_sim_ws_state(v->ws);
    if (s == FV_SIM_WS_CLOSED) {
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
            resend_scan(r, v, now);
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
            generate(r, &r->v[i]);
        r->vt_k++;
        made++;
    }
    for (uint32_t i = 0; made > 0 && i < r->n && !r->fatal; i++) {
        pump_and_flush(r, &r->v[i], now);
        reschedule(r, &r->v[i]);
    }
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
        if (fv_sim_ws_state(v->ws) == FV_SIM_WS_CLOSED && needs_conn(r, v))
            start_connect(r, v, now);
        reschedule(r, v);
    }
}

/* ---- phases and progress ------------------------------------------------------------------- */

static void begin_close(struct run *r, uint64_t now)
{
    r->phase = PH_CLOSE;
    r->close_end_ns = now + CLOSE_WAIT_NS;
    for (uint32_t i = 0; i < r->n; i++) {
        struct veh *v = &r->v[i];
        v->in_queue = 0;
        enum fv_sim_ws_state s = fv_sim_ws_state(v->ws);
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

static void progress(struct run *r, uint64_t now)
{
    if (r->log) fflush(r->log);
    if (!r->o->progress) return;
    const struct fv_sim_stats *st = r->st;
    fprintf(stderr,
            "simulate: %6.1fs connected %u/%u sent %" PRIu64 " acked %" PRIu64 " errors %" PRIu64
            " datums/s %" PRIu64 " unacked %" PRIu64 "%s\n",
            (double)(now - r->t0_ns) / 1e9, r->connected, r->n, st->sent, st->acked, st->errors,
            st->datums - r->prev_datums, r->outstanding, r->phase == PH_DRAIN ? " (draining)" : "");
    r->prev_datums = st->datums;
}

/* ---- setup --------------------------------------------------------------------------------- */

int fv_sim_parse_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen,
                     char *hostport, size_t hostportlen, char *path, size_t pathlen, char *err,
                     size_t errlen)
{
    if (strncmp(url, "wss://", 6) != 0) {
        fv_seterr(err, errlen, "server URL '%s' must start with wss://", url);
        return FV_EINVAL;
    }
    const char *h = url + 6;
    const char *slash = strchr(h, '/');
    size_t auth_len = slash ? (size_t)(slash - h) : strlen(h);
    const char *hs = h, *he, *ps = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', auth_len);
        if (rb == NULL) {
            fv_seterr(err, errlen, "server URL '%s': unclosed '[' in the host", url);
            return FV_EINVAL;
        }
        hs = h + 1;
        he = rb;
        if (rb + 1 < h + auth_len) {
            if (rb[1] != ':') {
                fv_seterr(err, errlen, "server URL '%s': expected ':' after ']'", url);
                return FV_EINVAL;
            }
            ps = rb + 2;
        }
    } else {
        const char *colon = memchr(h, ':', auth_len);
        he = colon ? colon : h + auth_len;
        ps = colon ? colon + 1 : NULL;
    }
    size_t hl = (size_t)(he - hs);
    size_t pl = ps ? (size_t)(h + auth_len - ps) : 0;
    if (hl == 0 || hl >= hostlen) {
        fv_seterr(err, errlen, "server URL '%s' has no valid host", url);
        return FV_EINVAL;
    }
    memcpy(host, hs, hl);
    host[hl] = '\0';
    if (ps == NULL) {
        snprintf(port, portlen, "443");
    } else {
        unsigned long pn = 0;
        if (pl == 0 || pl > 5) {
            fv_seterr(err, errlen, "server URL '%s' has an invalid port", url);
            return FV_EINVAL;
        }
        for (size_t i = 0; i < pl; i++) {
            if (ps[i] < '0' || ps[i] > '9') {
                fv_seterr(err, errlen, "server URL '%s' has an invalid port", url);
                return FV_EINVAL;
            }
            pn = pn * 10 + (unsigned long)(ps[i] - '0');
        }
        if (pn == 0 || pn > 65535) {
            fv_seterr(err, errlen, "server URL '%s': port must be 1..65535", url);
            return FV_EINVAL;
        }
        snprintf(port, portlen, "%lu", pn);
    }
    int v6 = *h == '[';
    if ((size_t)snprintf(hostport, hostportlen, "%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "",
                         port) >= hostportlen ||
        (size_t)snprintf(path, pathlen, "%s", slash ? slash : "/") >= pathlen) {
        fv_seterr(err, errlen, "server URL '%s' is too long", url);
        return FV_EINVAL;
    }
    return FV_OK;
}

/* Resolves the server, loads the CA and makes the TLS context. */
static int setup_network(struct run *r, char *err, size_t errlen)
{
    const struct fv_sim_opts *o = r->o;
    int rc =
        fv_sim_parse_url(o->server, r->host, sizeof r->host, r->port, sizeof r->port, r->hostport,
                         sizeof r->hostport, r->path, sizeof r->path, err, errlen);
    if (rc) return rc;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(r->host, r->port, &hints, &ai);
    if (g != 0 || ai == NULL) {
        fv_seterr(err, errlen, "cannot resolve server host '%s': %s", r->host,
                  g ? gai_strerror(g) : "no address");
        return FV_EINVAL;
    }
    memcpy(&r->addr, ai->ai_addr, ai->ai_addrlen);
    r->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);

    unsigned char ipbuf[16];
    int is_ip = inet_pton(AF_INET, r->host, ipbuf) == 1 || inet_pton(AF_INET6, r->host, ipbuf) == 1;
    r->target.addr = (const struct sockaddr *)&r->addr;
    r->target.addrlen = r->addrlen;
    r->target.host_header = r->hostport;
    r->target.sni = is_ip ? NULL : r->host;
    r->target.path = r->path;
    r->target.headers = DEVICE_HEADERS;

    char ca_file[4096];
    if ((size_t)snprintf(ca_file, sizeof ca_file, "%s/ca.crt", o->certs_dir) >= sizeof ca_file) {
        fv_seterr(err, errlen, "certificate directory path too long");
        return FV_EINVAL;
    }
    char e2[512];
    if ((rc = fv_ca_load(o->certs_dir, &r->ca, e2, sizeof e2))) {
        fv_seterr(err, errlen,
                  "cannot load the CA from %s (make it with 'fleetvault certs init "
                  "%s'): %s",
                  o->certs_dir, o->certs_dir, e2);
        return rc;
    }
    return fv_sim_ws_ctx_new(ca_file, r->host, &r->ctx, err, errlen);
}

static int setup(struct run *r, char *err, size_t errlen)
{
    const struct fv_sim_opts *o = r->o;
    int rc;
    if (!o->no_server && (rc = setup_network(r, err, errlen))) return rc;
    if (o->acked_log) {
        r->log = fopen(o->acked_log, "a");
        if (r->log == NULL) {
            fv_seterr(err, errlen, "cannot open acked log %s: %s", o->acked_log, strerror(errno));
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
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o->vehicles + 64)
            fv_warn("simulate: only %llu file descriptors allowed (ulimit -n) for %u vehicles: "
                    "some connections will fail",
                    (unsigned long long)rl.rlim_cur, o->vehicles);
    }

    r->n = o->vehicles;
    r->v = calloc(r->n, sizeof *r->v);
    r->heap = calloc(r->n, sizeof *r->heap);
    r->cq = calloc(r->n, sizeof *r->cq);
    r->sample = calloc(fv_sim_signal_count(), sizeof *r->sample);
    if (r->v == NULL || r->heap == NULL || r->cq == NULL || r->sample == NULL) {
        fv_seterr(err, errlen, "out of memory for %u vehicles", r->n);
        return FV_ENOMEM;
    }
    if (!o->no_server && (r->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        fv_seterr(err, errlen, "epoll_create1: %s", strerror(errno));
        return FV_EIO;
    }
    uint64_t now = fv_mono_ns();
    r->period_ns = (uint64_t)((double)NS_PER_S / o->hz);
    if (r->period_ns == 0) r->period_ns = 1;
    r->t0_ns = now;
    r->gen_end_ns = o->virtual_time ? NEVER : now + (uint64_t)(o->seconds * (double)NS_PER_S);
    r->vt_total = (uint64_t)llround(o->seconds * o->hz);
    r->tokens_ns = now;
    r->tokens = 1;
    r->scan_ns = (uint64_t)(o->resend_after_s * (double)NS_PER_S);
    if (r->scan_ns > SCAN_EVERY_NS || r->scan_ns == 0) r->scan_ns = SCAN_EVERY_NS;
    r->rng = o->seed ^ now;
    snprintf(r->runid, sizeof r->runid, "%" PRIx64, fv_now_ms());
    for (uint32_t i = 0; i < r->n; i++) {
        struct veh *v = &r->v[i];
        if ((rc = fv_sim_vin(o->id_prefix, i, v->vin, err, errlen))) return rc;
        if ((rc = fv_sim_vehicle_new(o->seed, i, &v->model)) ||
            (!o->no_server && (rc = fv_sim_ws_new(&v->ws)))) {
            fv_seterr(err, errlen, "out of memory for %u vehicles", r->n);
            return rc;
        }
        v->lo = v->hi = v->send_next = 1;
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

static void teardown(struct run *r)
{
    for (uint32_t i = 0; r->v && i < r->n; i++) {
        struct veh *v = &r->v[i];
        fv_sim_ws_free(v->ws);
        fv_sim_vehicle_free(v->model);
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
    if (r->influx) fclose(r->influx); /* only after a failure: fv_sim_run closes it */
    free(r->influx_buf);
    fv_buf_free(&r->line);
    free(r->sample);
    SSL_CTX_free(r->ctx);
    fv_ca_free(r->ca);
    fv_buf_free(&r->pl);
    fv_buf_free(&r->env);
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
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
            generate(r, &r->v[i]);
        uint64_t now = fv_mono_ns();
        if (now >= next_progress) {
            progress(r, now);
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
        if (r->phase == PH_GEN &&
            (o->virtual_time ? r->vt_k >= r->vt_total : now >= r->gen_end_ns)) {
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
        if (now >= next_progress) {
            progress(r, now);
            next_progress += NS_PER_S;
            if (next_progress <= now) next_progress = now + NS_PER_S;
        }

        uint64_t until = min64(r->v[r->heap[0]].wake_ns, next_progress);
        if (r->phase == PH_GEN && o->virtual_time && (r->vt_k >= r->vt_total || r->vt_full == 0))
            until = now; /* more rounds to make now, or GEN is over */
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
            set_fatal(r, FV_EIO, "epoll_wait");
            break;
        }
        now = fv_mono_ns();
        for (int i = 0; i < nev; i++)
            vehicle_io(r, evs[i].data.ptr, now);
    }
}

int fv_sim_run(const struct fv_sim_opts *o, struct fv_sim_stats *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    st->vehicles = o->vehicles;
    struct run *r = calloc(1, sizeof *r);
    if (r == NULL) {
        fv_seterr(err, errlen, "out of memory");
        return FV_ENOMEM;
    }
    r->o = o;
    r->st = st;
    r->ep = -1;
    int rc = FV_EINVAL;
    if (o->vehicles == 0 || !(o->hz > 0) || o->signals == 0 || o->max_inflight == 0 ||
        o->seconds < 0 || o->drain_s < 0) {
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
    if (r->fatal) {
        fv_seterr(err, errlen, "%s", r->fatal_msg);
        rc = r->fatal;
    } else {
        rc = FV_OK;
    }
    progress(r, fv_mono_ns());
    if (st->connected_peak == 0 && st->sent > 0 && r->last_err[0])
        fv_error("simulate: no vehicle could connect; last error: %s", r->last_err);
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
    st->ack_p50_ms = hist_quantile_ms(r, 0.50);
    st->ack_p99_ms = hist_quantile_ms(r, 0.99);
    st->ack_max_ms = hist_quantile_ms(r, 1.0);
    st->elapsed_s = r->t0_ns ? (double)(fv_mono_ns() - r->t0_ns) / 1e9 : 0;
    teardown(r);
    st->peak_rss_mb = peak_rss_mb();
    free(r);
    return rc;
}

void fv_sim_stats_print_json(const struct fv_sim_stats *st, FILE *f)
{
    fprintf(f,
            "{\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"datums\":%" PRIu64
            ",\"ack_p50_ms\":%.3f,\"ack_p99_ms\":%.3f"
            ",\"ack_max_ms\":%.3f,\"unacked\":%" PRIu64 ",\"resent\":%" PRIu64
            ",\"reconnects\":%" PRIu64 ",\"conn_failures\":%" PRIu64 ",\"paused\":%" PRIu64
            ",\"lagged\":%" PRIu64 ",\"dup_acks\":%" PRIu64 ",\"bad_replies\":%" PRIu64
            ",\"vehicles\":%u,\"connected_peak\":%u,\"elapsed_s\":%.3f,\"peak_rss_mb\":%.1f"
            ",\"interrupted\":%s,\"datums_sent\":%" PRIu64 "}\n",
            st->sent, st->acked, st->errors, st->datums, st->ack_p50_ms, st->ack_p99_ms,
            st->ack_max_ms, st->unacked, st->resent, st->reconnects, st->conn_failures, st->paused,
            st->lagged, st->dup_acks, st->bad_replies, st->vehicles, st->connected_peak,
            st->elapsed_s, st->peak_rss_mb, st->interrupted ? "true" : "false", st->datums_sent);
    fflush(f);
}
