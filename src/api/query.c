/*
 * query.c - the /api/v1/query endpoint (query.h): parsing its arguments and times, deciding
 * the read (privacy/guard.h), streaming raw rows, and rendering values as JSON or CSV;
 * trimming trip ends (G8) for it and the fleet view. Aggregation over buckets is in
 * query_agg.c, the fleet view in fleetview.c, what they share in query_int.h.
 *
 * Threading: the API thread only (query.h).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api/query_int.h"
#include "util/urlquery.h"
#include "crypto/keys.h"
#include "privacy/guard.h"
#include "privacy/subjects.h"
#include "privacy/location.h"
#include "store/store.h"
#include "util/err.h"
#include "util/fmt.h"
#include "util/log.h"
#include "wire/places.h"
#include "wire/signals.h"

/* A response is produced this much at a time: answers up to this size go out whole (with
 * Content-Length, keeping the connection alive); larger ones stream in pieces of it. */
#define CHUNK_BYTES (1u << 20)
#define MAX_BUCKETS 10000000
/* Samples of a track held to compute its withheld times (40 bytes each: 160 MiB). */
#define TRACK_MAX_SAMPLES (4u << 20)

/* ---- parsing ----------------------------------------------------------------------------- */

int fv_parse_time_ms(const char *s, int64_t *out)
{
    if (*s == '\0') return FV_EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end == '\0' && errno == 0) {
        *out = v;
        return FV_OK;
    }
    int Y, M, D, h, m, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &n) != 6 || n != 19)
        return FV_EINVAL;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60) return FV_EINVAL;
    const char *p = s + 19;
    int64_t ms = 0;
    if (*p == '.') {
        int digits = 0;
        p++;
        while (isdigit((unsigned char)*p)) {
            if (digits < 3) ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0) return FV_EINVAL;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5 || oh > 23 || om > 59)
            return FV_EINVAL;
        off = (int64_t)(oh * 60 + om) * 60000 * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return FV_EINVAL;
    }
    if (*p != '\0') return FV_EINVAL;
    struct tm tm = {0};
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    *out = (int64_t)t * 1000 + ms - off;
    return FV_OK;
}

int fv_parse_span_ms(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v > 0)) return FV_EINVAL;
    double unit;
    if (strcmp(end, "ms") == 0 || *end == '\0')
        unit = 1;
    else if (strcmp(end, "s") == 0)
        unit = 1000;
    else if (strcmp(end, "m") == 0)
        unit = 60000;
    else if (strcmp(end, "h") == 0)
        unit = 3600000;
    else if (strcmp(end, "d") == 0)
        unit = 86400000;
    else
        return FV_EINVAL;
    double ms = v * unit;
    if (ms < 1 || ms > 1e15) return FV_EINVAL;
    *out = (int64_t)ms;
    return FV_OK;
}

int fv_query__putf(struct fv_buf *b, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return FV_EINVAL;
    return fv_buf_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

void fv_query__json_error(struct fv_http_response *r, int status, const char *msg)
{
    r->status = status;
    r->content_type = "application/json";
    fv_buf_reset(&r->body);
    json_t *j = json_pack("{s:s}", "error", msg);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s) {
        fv_buf_append(&r->body, s, strlen(s));
        fv_buf_append(&r->body, "\n", 1);
    }
    free(s);
    json_decref(j);
}

/* ---- value rendering --------------------------------------------------------------------- */

static int put_json_value(struct fv_buf *b, const struct fv_value *v);
static int put_csv_value(struct fv_buf *b, const struct fv_value *v);

/* The value as this requester may see it (privacy/guard.h obligations). */
int fv_put_value(struct fv_buf *b, const struct fv_guard_ctx *ctx, uint32_t field, int64_t t,
                 const struct fv_value *v, int csv)
{
    struct fv_value tmp;
    const struct fv_value *x = fv_guard_oblige(ctx, field, t, v, &tmp);
    return csv ? put_csv_value(b, x) : put_json_value(b, x);
}

static int put_json_value(struct fv_buf *b, const struct fv_value *v)
{
    switch (v->kind) {
    case FV_VK_DOUBLE:
        return fv_buf_put_double(b, v->u.d);
    case FV_VK_INT:
    case FV_VK_ENUM:
        return fv_buf_put_i64(b, v->u.i);
    case FV_VK_BOOL:
        return v->u.i ? fv_buf_append(b, "true", 4) : fv_buf_append(b, "false", 5);
    case FV_VK_NONE:
    case FV_VK_INVALID:
    case FV_VK_OTHER:
        return fv_buf_append(b, "null", 4);
    case FV_VK_LOCATION: {
        int rc = fv_buf_append(b, "{\"latitude\":", 12);
        if (rc == FV_OK) rc = fv_buf_put_double(b, v->u.loc.lat);
        if (rc == FV_OK) rc = fv_buf_append(b, ",\"longitude\":", 13);
        if (rc == FV_OK) rc = fv_buf_put_double(b, v->u.loc.lon);
        return rc ? rc : fv_buf_append(b, "}", 1);
    }
    default:
        return fv_api_value_json(v, b);
    }
}

static int put_csv_value(struct fv_buf *b, const struct fv_value *v)
{
    switch (v->kind) {
    case FV_VK_NONE:
        return FV_OK;
    case FV_VK_INVALID:
        return fv_buf_append(b, "invalid", 7);
    case FV_VK_DOUBLE:
        return isfinite(v->u.d) ? fv_buf_put_double(b, v->u.d) : fv_query__putf(b, "%g", v->u.d);
    case FV_VK_INT:
    case FV_VK_ENUM:
    case FV_VK_BOOL:
        return put_json_value(b, v);
    default: {
        /* Composite values and strings: their JSON text, quoted the CSV way. */
        struct fv_buf t = {0};
        int rc = v->kind == FV_VK_STRING
                     ? fv_buf_append(&t, v->u.s ? v->u.s : "", v->u.s ? strlen(v->u.s) : 0)
                     : put_json_value(&t, v);
        if (rc == FV_OK) rc = fv_buf_append(b, "\"", 1);
        for (size_t i = 0; rc == FV_OK && i < t.len; i++)
            rc = t.data[i] == '"' ? fv_buf_append(b, "\"\"", 2) : fv_buf_append(b, &t.data[i], 1);
        if (rc == FV_OK) rc = fv_buf_append(b, "\"", 1);
        fv_buf_free(&t);
        return rc;
    }
    }
}

int fv_query__put_label(struct fv_buf *b, uint32_t field)
{
    char name[32];
    fv_signal_label(field, name, sizeof name);
    return fv_buf_append(b, name, strlen(name));
}

/* ---- withheld times (privacy/guard.h G8, privacy/location.h L5, L6) ---------------------- */

static int add_trim(void *arg, int64_t from, int64_t to)
{
    struct fv_guard_ctx *ctx = arg;
    if (ctx->ntrim && from <= ctx->trim[ctx->ntrim - 1].to) {
        if (to > ctx->trim[ctx->ntrim - 1].to) ctx->trim[ctx->ntrim - 1].to = to;
        return FV_OK;
    }
    if (ctx->ntrim == ctx->captrim) {
        size_t nc = ctx->captrim ? ctx->captrim * 2 : 16;
        struct fv_consent_range *m = realloc(ctx->trim, nc * sizeof *m);
        if (m == NULL) return FV_ENOMEM;
        ctx->trim = m;
        ctx->captrim = nc;
    }
    ctx->trim[ctx->ntrim++] = (struct fv_consent_range){from, to};
    return FV_OK;
}

/* Gear P: the ShiftState enum's P (2), or the value as a string ("P", "ShiftStateP"). */
static int gear_park(const struct fv_value *x)
{
    if (x->kind == FV_VK_ENUM) return x->u.i == 2;
    if (x->kind == FV_VK_STRING && x->u.s)
        return strcmp(x->u.s, "P") == 0 || strcmp(x->u.s, "ShiftStateP") == 0;
    return 0;
}

/* The withheld times of a subject's track around [from, to] (a trip may begin or end, a
 * stop last, beyond it), from its positions, speeds and gears. Fails closed: on an error
 * every location is withheld. */
void fv_query__load_trim(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *pseudo,
                         const unsigned char *dek, int64_t from, int64_t to)
{
    fv_guard_ctx_clear(ctx);
    if (!(ctx->d.obligations & FV_OBLIGE_LOCATION_PRIVACY)) return;
    struct fv_loc_params lp;
    fv_guard_loc_params(v->guard, ctx, &lp);
    /* Look far enough around the range to see where its trips begin and end. */
    int64_t gap = lp.trip_gap_ms > lp.stop_ms ? lp.trip_gap_ms : lp.stop_ms;
    uint32_t f[3] = {(uint32_t)fv_signal_lookup("VehicleSpeed"), (uint32_t)fv_signal_lookup("Gear"),
                     (uint32_t)fv_signal_lookup("Location")};
    int64_t lo = from > INT64_MIN + gap ? from - gap : INT64_MIN;
    int64_t hi = to < INT64_MAX - gap ? to + gap : INT64_MAX;
    struct fv_store_cursor *c = NULL;
    char err[256];
    struct fv_loc_sample *sm = NULL;
    size_t n = 0, cap = 0;
    int rc = fv_store_query(v->store, pseudo, dek, lo, hi, f, 3, 0, &c, err, sizeof err);
    struct fv_store_chunk ch;
    int got = 0;
    while (rc == FV_OK && (got = fv_store_next(c, &ch, err, sizeof err)) == 1) {
        for (size_t i = 0; rc == FV_OK && i < ch.n; i++) {
            struct fv_loc_sample x = {ch.t[i], NAN, NAN, NAN, -1};
            int any = 0;
            for (size_t j = 0; j < ch.ncols; j++) {
                const struct fv_value *val = &ch.col[j][i];
                if (val->kind == FV_VK_NONE) continue;
                any = 1;
                if (ch.field[j] == f[2] && val->kind == FV_VK_LOCATION) {
                    x.lat = val->u.loc.lat;
                    x.lon = val->u.loc.lon;
                } else if (ch.field[j] == f[1]) {
                    x.park = (signed char)gear_park(val);
                } else if (ch.field[j] == f[0]) {
                    x.speed = val->kind == FV_VK_DOUBLE ? val->u.d
                              : val->kind == FV_VK_INT  ? (double)val->u.i
                                                        : NAN;
                }
            }
            if (!any) continue;
            if (n == TRACK_MAX_SAMPLES) {
                /* Bounded memory: a longer range fails closed (the caller pages by time). */
                fv_warn("location privacy: a track of more than %u samples; its locations "
                        "are withheld (ask for a shorter range)",
                        TRACK_MAX_SAMPLES);
                rc = FV_ELIMIT;
                break;
            }
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 256;
                struct fv_loc_sample *m = realloc(sm, nc * sizeof *m);
                if (m == NULL) {
                    rc = FV_ENOMEM;
                    break;
                }
                sm = m;
                cap = nc;
            }
            sm[n++] = x;
        }
    }
    if (rc == FV_OK && got < 0) rc = got;
    if (rc == FV_OK) rc = fv_loc_withheld(&lp, sm, n, add_trim, ctx);
    fv_store_cursor_free(c);
    free(sm);
    if (rc) {
        fv_guard_ctx_clear(ctx);
        add_trim(ctx, INT64_MIN, INT64_MAX); /* fail closed */
    }
    ctx->trim_loaded = 1;
}

int fv_api_any_place(const uint32_t *fields, size_t n)
{
    for (size_t j = 0; j < n; j++)
        if (fv_signal_place(fields[j]) != FV_PLACE_NONE) return 1;
    return n == 0;
}

void fv_api_load_withheld(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *device,
                          int64_t from, int64_t to)
{
    fv_guard_ctx_clear(ctx);
    if (v->guard == NULL || !(ctx->d.obligations & FV_OBLIGE_LOCATION_PRIVACY)) return;
    char subject[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1];
    const unsigned char *dek;
    if (fv_subject_current(v->keys, device, subject, NULL) != FV_OK)
        snprintf(subject, sizeof subject, "%s", device);
    if (v->store == NULL || fv_keystore_dek(v->keys, subject, 0, &dek, pseudo) != FV_OK) {
        add_trim(ctx, INT64_MIN, INT64_MAX); /* fail closed */
        ctx->trim_loaded = 1;
        return;
    }
    fv_query__load_trim(v, ctx, pseudo, dek, from, to);
}

void fv_api_quota_send(const struct fv_api_view *v, struct fv_guard_ctx *ctx, uint64_t rows,
                       const struct fv_guard_served *served, struct fv_http_response *out)
{
    if (v->guard == NULL) return;
    char why[300];
    int rc = fv_guard_quota_more(v->guard, ctx, rows, out->body.len, 1, why, sizeof why);
    if (rc) {
        fv_query__json_error(out, rc == FV_EIO ? 503 : 403, why);
        return;
    }
    if (served)
        fv_guard_done_served(v->guard, ctx, served, rows, out->body.len);
    else
        fv_guard_done(v->guard, ctx, rows, out->body.len);
}

/* ---- the streaming query ----------------------------------------------------------------- */

int fv_query__row_room(struct qctx *q)
{
    if (q->limit && q->rows >= q->limit) {
        q->truncated = 1;
        return 0;
    }
    if (q->guard && !fv_guard_meter_room(&q->meter)) { /* G5: before, not after serving */
        q->truncated = 1;
        return 0;
    }
    return 1;
}

int fv_query__row_done(struct qctx *q, struct fv_buf *b, size_t mark)
{
    if (q->guard && !fv_guard_meter_row(&q->meter, b->len)) {
        b->len = mark; /* G5: this row would pass the bytes left today */
        q->truncated = 1;
        return 0;
    }
    q->rows++;
    return 1;
}

/* Room for a row's fixed parts and one number per column: reserved once per row, so the
 * common values (numbers, after the guard's obligations) are written without a check each. */
#define ROW_ROOM(ncols) (16 + FV_FMT_INT_MAX + (ncols) * (4 + 32 + FV_FMT_DOUBLE_MAX))

static inline void put_raw(struct fv_buf *b, const void *p, size_t n)
{
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* Row i of ch as one JSON object: {"t":T,"<label>":<value>,...} (after the first row, led
 * by ",\n"); values the guard withholds (G7, G8, G10) are null. */
static int put_json_row(struct qctx *q, const struct fv_store_chunk *ch, size_t i, char label[][32],
                        const size_t *lablen, size_t nlabel, struct fv_buf *b)
{
    int rc = fv_buf_reserve(b, ROW_ROOM(ch->ncols));
    if (rc) return rc;
    if (q->rows)
        put_raw(b, ",\n{\"t\":", 7);
    else
        put_raw(b, "{\"t\":", 5);
    b->len += fv_fmt_i64((char *)b->data + b->len, ch->t[i]);
    for (size_t j = 0; j < ch->ncols; j++) {
        const struct fv_value *v = &ch->col[j][i];
        if (v->kind == FV_VK_NONE) continue;
        if (j >= nlabel) { /* past the labels looked up: the general path */
            rc = fv_buf_append(b, ",\"", 2);
            if (rc == FV_OK) rc = fv_query__put_label(b, ch->field[j]);
            if (rc == FV_OK) rc = fv_buf_append(b, "\":", 2);
            if (rc == FV_OK) rc = fv_put_value(b, &q->ctx, ch->field[j], ch->t[i], v, 0);
            if (rc == FV_OK) rc = fv_buf_reserve(b, ROW_ROOM(ch->ncols - j));
            if (rc) return rc;
            continue;
        }
        put_raw(b, ",\"", 2);
        put_raw(b, label[j], lablen[j]);
        put_raw(b, "\":", 2);
        struct fv_value tmp;
        const struct fv_value *x = fv_guard_oblige(&q->ctx, ch->field[j], ch->t[i], v, &tmp);
        if (x->kind == FV_VK_DOUBLE && isfinite(x->u.d)) {
            b->len += fv_fmt_double((char *)b->data + b->len, x->u.d);
        } else if (x->kind == FV_VK_INT || x->kind == FV_VK_ENUM) {
            b->len += fv_fmt_i64((char *)b->data + b->len, x->u.i);
        } else {
            rc = fv_put_value(b, &q->ctx, ch->field[j], ch->t[i], v, 0);
            /* the room for the columns left, after what that value took */
            if (rc == FV_OK) rc = fv_buf_reserve(b, ROW_ROOM(ch->ncols - j));
            if (rc) return rc;
        }
    }
    put_raw(b, "}", 1);
    return FV_OK;
}

static int put_raw_rows(struct qctx *q, const struct fv_store_chunk *ch, struct fv_buf *b)
{
    int rc = FV_OK;
    /* the columns' JSON keys, looked up once a chunk rather than once a value */
    char label[64][32];
    size_t nlabel = q->csv ? 0 : ch->ncols < 64 ? ch->ncols : 64;
    size_t lablen[64];
    for (size_t j = 0; j < nlabel; j++) {
        fv_signal_label(ch->field[j], label[j], sizeof label[j]);
        lablen[j] = strlen(label[j]);
    }
    for (size_t i = 0; i < ch->n && rc == FV_OK; i++) {
        if (!fv_guard_in_consent(&q->ctx, ch->t[i])) continue; /* G4 */
        if (!fv_query__row_room(q)) break;
        size_t mark = b->len;
        if (q->csv) {
            rc = fv_buf_put_i64(b, ch->t[i]);
            for (size_t j = 0; rc == FV_OK && j < ch->ncols; j++) {
                rc = fv_buf_append(b, ",", 1);
                if (rc == FV_OK)
                    rc = fv_put_value(b, &q->ctx, ch->field[j], ch->t[i], &ch->col[j][i], 1);
            }
            if (rc == FV_OK) rc = fv_buf_append(b, "\n", 1);
        } else {
            rc = put_json_row(q, ch, i, label, lablen, nlabel, b);
        }
        if (rc == FV_OK && !fv_query__row_done(q, b, mark)) break;
    }
    return rc;
}

static int put_header(struct qctx *q, struct fv_buf *b)
{
    int rc = FV_OK;
    if (q->csv) {
        rc = fv_buf_append(b, q->aggs ? "bucket" : "t", q->aggs ? 6 : 1);
        for (size_t j = 0; rc == FV_OK && j < q->nfields; j++) {
            if (!q->aggs || fv_query__single_agg(q->aggs)) {
                rc = fv_buf_append(b, ",", 1);
                if (rc == FV_OK) rc = fv_query__put_label(b, q->fields[j]);
                continue;
            }
            for (unsigned k = 0; rc == FV_OK && k < 7; k++)
                if (q->aggs & (1u << k)) {
                    rc = fv_buf_append(b, ",", 1);
                    if (rc == FV_OK) rc = fv_query__put_label(b, q->fields[j]);
                    if (rc == FV_OK) rc = fv_query__putf(b, "_%s", fv_query__ag_names[k]);
                }
        }
        return rc ? rc : fv_buf_append(b, "\n", 1);
    }
    json_t *dev = json_string(q->device);
    char *ds = dev ? json_dumps(dev, JSON_ENCODE_ANY) : NULL;
    json_decref(dev);
    if (ds == NULL) return FV_ENOMEM;
    rc = fv_query__putf(b, "{\"device\":%s", ds);
    if (rc == FV_OK)
        rc = q->from == INT64_MIN ? fv_query__putf(b, ",\"from\":null")
                                  : fv_query__putf(b, ",\"from\":%lld", (long long)q->from);
    if (rc == FV_OK)
        rc = q->to == INT64_MAX ? fv_query__putf(b, ",\"to\":null")
                                : fv_query__putf(b, ",\"to\":%lld", (long long)q->to);
    free(ds);
    if (rc == FV_OK && q->nfields) {
        rc = fv_buf_append(b, ",\"signals\":[", 12);
        for (size_t j = 0; rc == FV_OK && j < q->nfields; j++) {
            rc = fv_buf_append(b, j ? ",\"" : "\"", j ? 2 : 1);
            if (rc == FV_OK) rc = fv_query__put_label(b, q->fields[j]);
            if (rc == FV_OK) rc = fv_buf_append(b, "\"", 1);
        }
        if (rc == FV_OK) rc = fv_buf_append(b, "]", 1);
    }
    if (rc == FV_OK && q->aggs) {
        if (q->step) rc = fv_query__putf(b, ",\"step\":%lld", (long long)q->step);
        for (unsigned k = 0, first = 1; rc == FV_OK && k < 7; k++)
            if (q->aggs & (1u << k)) {
                rc = fv_query__putf(b, "%s\"%s\"", first ? ",\"agg\":[" : ",",
                                    fv_query__ag_names[k]);
                first = 0;
            }
        if (rc == FV_OK) rc = fv_buf_append(b, "]", 1);
    }
    if (rc == FV_OK) rc = fv_buf_append(b, ",\"rows\":[\n", 10);
    return rc;
}

static int q_more_inner(struct qctx *q, struct fv_buf *b);

static int q_more(void *ctx, struct fv_buf *b)
{
    struct qctx *q = ctx;
    size_t before = b->len;
    if (q->guard) fv_guard_meter_start(q->guard, &q->ctx, &q->meter, before); /* G5 */
    int rc = q_more_inner(q, b);
    q->bytes += b->len - before;
    if (q->guard) fv_guard_meter_end(q->guard, &q->ctx, &q->meter, b->len);
    return rc;
}

static int q_more_inner(struct qctx *q, struct fv_buf *b)
{
    int rc = FV_OK;
    if (!q->started) {
        q->started = 1;
        rc = put_header(q, b);
        if (rc) return rc;
    }
    char err[512];
    while (b->len < CHUNK_BYTES && !q->truncated) {
        struct fv_store_chunk ch;
        int n = fv_store_next(q->cur, &ch, err, sizeof err);
        if (n < 0) {
            fv_error("query of subject %s: %s", q->pseudo, err);
            /* Headers may be gone: end the body with the reason so a reader sees it. */
            fv_query__putf(b, q->csv ? "# error: %s\n" : "],\"error\":\"%s\"}\n",
                           n == FV_ECORRUPT ? "stored data failed verification" : fv_strerror(n));
            return n;
        }
        if (n == 0) break;
        rc = q->aggs ? fv_query__add_to_buckets(q, &ch, b) : put_raw_rows(q, &ch, b);
        if (rc) return rc;
    }
    if (b->len >= CHUNK_BYTES && !q->truncated) return 1;
    if (q->aggs) {
        rc = fv_query__emit_bucket(q, b);
        if (rc) return rc;
    }
    /* G5: a stream stopped at the quota says so where every client sees it */
    const char *note = fv_guard_meter_note(&q->meter);
    if (q->csv && note[0])
        rc = fv_query__putf(b, "# %s\n", note);
    else if (!q->csv && q->min_records)
        rc = fv_query__putf(b, "\n],\"count\":%llu,\"suppressed\":%llu%s%s%s%s}\n",
                            (unsigned long long)q->rows, (unsigned long long)q->suppressed,
                            q->truncated ? ",\"truncated\":true" : "",
                            note[0] ? ",\"stopped\":\"" : "", note, note[0] ? "\"" : "");
    else if (!q->csv)
        rc = fv_query__putf(b, "\n],\"count\":%llu%s%s%s%s}\n", (unsigned long long)q->rows,
                            q->truncated ? ",\"truncated\":true" : "",
                            note[0] ? ",\"stopped\":\"" : "", note, note[0] ? "\"" : "");
    return rc ? rc : 0;
}

static void q_free(void *ctx)
{
    struct qctx *q = ctx;
    if (q == NULL) return;
    if (q->guard) fv_guard_done(q->guard, &q->ctx, q->rows, q->bytes);
    fv_guard_ctx_clear(&q->ctx);
    fv_query__agg_reset(q);
    fv_store_cursor_free(q->cur);
    free(q);
}

static int parse_fields(const char *s, uint32_t *f, size_t *n, char *bad, size_t badlen)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        long v = fv_signal_lookup(t);
        if (v < 0 || v > UINT32_MAX) {
            snprintf(bad, badlen, "%s", t);
            return FV_ENOENT;
        }
        int dup = 0;
        for (size_t i = 0; i < *n; i++)
            dup |= f[i] == (uint32_t)v;
        if (dup) continue;
        if (*n == MAX_FIELDS) return FV_ELIMIT;
        f[(*n)++] = (uint32_t)v;
    }
    return *n ? FV_OK : FV_EINVAL;
}

/* Looks the device up: its pseudonym and data key, or an error response. */
static int device_key(const struct fv_api_view *v, const char *id, const char *shown,
                      const unsigned char **dek, char pseudo[FV_PSEUDONYM_LEN + 1],
                      struct fv_http_response *out)
{
    char msg[200];
    /* The device's current owner period (privacy/subjects.h): earlier owners' data is
     * theirs, not served with the device's. */
    char subject[FV_SUBJECT_NAME_MAX + 1];
    if (fv_subject_current(v->keys, id, subject, NULL) != FV_OK)
        snprintf(subject, sizeof subject, "%s", id);
    int rc = fv_keystore_dek(v->keys, subject, 0, dek, pseudo);
    if (rc == FV_ESTATE) {
        fv_api_unknown_device(out, shown); /* G11: erased since the decision */
    } else if (rc) {
        snprintf(msg, sizeof msg, "device '%.64s': no data key (%s)", shown, fv_strerror(rc));
        fv_query__json_error(out, rc == FV_ENOENT ? 404 : 500, msg);
    }
    return rc;
}

/* The set of signals a device has in [from, to] (for CSV headers and aggregation over all). */
static int discover_fields(const struct fv_api_view *v, const char *pseudo,
                           const unsigned char *dek, int64_t from, int64_t to, uint32_t *f,
                           size_t *n)
{
    struct fv_store_cursor *c;
    char err[256];
    int rc = fv_store_query(v->store, pseudo, dek, from, to, NULL, 0, 0, &c, err, sizeof err);
    if (rc) return rc;
    struct fv_store_chunk ch;
    *n = 0;
    while ((rc = fv_store_next(c, &ch, err, sizeof err)) == 1)
        for (size_t j = 0; j < ch.ncols; j++) {
            size_t at = 0;
            while (at < *n && f[at] < ch.field[j])
                at++;
            if (at < *n && f[at] == ch.field[j]) continue;
            if (*n == MAX_FIELDS) break;
            memmove(f + at + 1, f + at, (*n - at) * sizeof *f);
            f[at] = ch.field[j];
            (*n)++;
        }
    fv_store_cursor_free(c);
    return rc < 0 ? rc : FV_OK;
}

void fv_api_query(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                  struct fv_http_response *out)
{
    char dev[128], sig[4096], from_s[64], to_s[64], step_s[32], agg_s[128], fmt[16], lim[32];
    char msg[300];
    if (!fv_query_param(v->query, "device", dev, sizeof dev) || dev[0] == '\0') {
        fv_query__json_error(out, 400, "missing device=ID");
        return;
    }
    struct qctx *q = calloc(1, sizeof *q);
    if (q == NULL) {
        fv_query__json_error(out, 500, "out of memory");
        return;
    }
    snprintf(q->device, sizeof q->device, "%s", dev);
    q->from = INT64_MIN;
    q->to = INT64_MAX;
    if (fv_query_param(v->query, "from", from_s, sizeof from_s) &&
        fv_parse_time_ms(from_s, &q->from) != FV_OK) {
        snprintf(msg, sizeof msg, "bad from '%.40s': use epoch milliseconds or RFC 3339", from_s);
        goto bad;
    }
    if (fv_query_param(v->query, "to", to_s, sizeof to_s) &&
        fv_parse_time_ms(to_s, &q->to) != FV_OK) {
        snprintf(msg, sizeof msg, "bad to '%.40s': use epoch milliseconds or RFC 3339", to_s);
        goto bad;
    }
    if (q->from > q->to) {
        snprintf(msg, sizeof msg, "empty range: from is after to");
        goto bad;
    }
    if (fv_query_param(v->query, "signals", sig, sizeof sig) && sig[0]) {
        char badname[80] = "";
        int rc = parse_fields(sig, q->fields, &q->nfields, badname, sizeof badname);
        if (rc) {
            snprintf(msg, sizeof msg,
                     rc == FV_ENOENT ? "unknown signal '%.64s': use names from the protocol's "
                                       "Field enum (e.g. VehicleSpeed) or numbers"
                                     : "bad signals list%.0s",
                     badname);
            goto bad;
        }
    }
    if (fv_query_param(v->query, "format", fmt, sizeof fmt)) {
        if (strcmp(fmt, "csv") == 0)
            q->csv = 1;
        else if (strcmp(fmt, "json") != 0) {
            snprintf(msg, sizeof msg, "bad format '%.16s': json or csv", fmt);
            goto bad;
        }
    }
    if (fv_query_param(v->query, "agg", agg_s, sizeof agg_s) &&
        fv_query__parse_aggs(agg_s, &q->aggs)) {
        snprintf(msg, sizeof msg, "bad agg '%.60s': min, max, avg, sum, count, first, last", agg_s);
        goto bad;
    }
    if (fv_query_param(v->query, "step", step_s, sizeof step_s)) {
        if (fv_parse_span_ms(step_s, &q->step) != FV_OK) {
            snprintf(msg, sizeof msg, "bad step '%.30s': e.g. 10s, 5m, 1h or milliseconds", step_s);
            goto bad;
        }
        if (!q->aggs) q->aggs = AG_AVG;
        /* from <= to, so the span fits in 64 unsigned bits; to - from in signed ones
         * overflows for far-apart times (from=-9e18&to=9e18) and let any step through. */
        if (q->from != INT64_MIN && q->to != INT64_MAX &&
            ((uint64_t)q->to - (uint64_t)q->from) / (uint64_t)q->step > MAX_BUCKETS) {
            snprintf(msg, sizeof msg, "too many buckets: more than %d; use a larger step",
                     MAX_BUCKETS);
            goto bad;
        }
    }
    if (fv_query_param(v->query, "limit", lim, sizeof lim)) {
        char *e;
        unsigned long long l = strtoull(lim, &e, 10);
        if (*e || l == 0) {
            snprintf(msg, sizeof msg, "bad limit '%.30s'", lim);
            goto bad;
        }
        q->limit = l;
    }
    /* G11: decided and audited whatever dev names; one answer for what cannot be read */
    const struct fv_device *d = fv_api_find_device(v, ctx, dev);
    if (d == NULL && v->guard == NULL) {
        fv_api_unknown_device(out, dev);
        free(q);
        return;
    }
    if (v->guard) {
        const char *subj[1] = {d ? d->id : dev};
        fv_query__agg_limits(v, ctx, q); /* P8 */
        const char *sn[MAX_FIELDS];
        char names[MAX_FIELDS][32];
        uint32_t classes = q->nfields ? 0 : fv_api_all_classes(v);
        for (size_t j = 0; j < q->nfields; j++) {
            fv_signal_label(q->fields[j], names[j], sizeof names[j]);
            sn[j] = names[j];
            classes |= fv_api_signal_class(v, q->fields[j]);
        }
        int rc = fv_guard_read(v->guard, ctx, v->query, q->aggs ? "query.aggregate" : "query.raw",
                               classes, subj, 1, q->aggs != 0, sn, q->nfields, q->from, q->to, msg,
                               sizeof msg);
        if (rc == FV_ENOENT || (rc == FV_OK && d == NULL)) {
            fv_api_unknown_device(out, dev);
            free(q);
            return;
        }
        if (rc) {
            fv_query__json_error(out, rc == FV_EIO ? 503 : 403, msg);
            free(q);
            return;
        }
        fv_guard_load_zones(v->guard, ctx, d->id);
        q->guard = v->guard;
        q->ctx = *ctx;
        fv_guard_show_id(v->guard, ctx, d->id, q->device);
    }
    const unsigned char *dek;
    char pseudo[FV_PSEUDONYM_LEN + 1];
    if (device_key(v, d->id, dev, &dek, pseudo, out)) {
        q_free(q);
        return;
    }
    snprintf(q->pseudo, sizeof q->pseudo, "%s", pseudo);
    char err[512];
    if (fv_api_any_place(q->fields, q->nfields))
        fv_query__load_trim(v, &q->ctx, pseudo, dek, q->from, q->to); /* G8 */
    if (q->nfields == 0 && (q->csv || q->aggs)) {
        int rc = discover_fields(v, pseudo, dek, q->from, q->to, q->fields, &q->nfields);
        if (rc) {
            fv_query__json_error(out, 500, "reading the store failed");
            q_free(q);
            return;
        }
    }
    int rc = fv_store_query(v->store, pseudo, dek, q->from, q->to, q->nfields ? q->fields : NULL,
                            q->nfields, 0, &q->cur, err, sizeof err);
    if (rc) {
        fv_query__json_error(out, 500, "reading the store failed");
        q_free(q);
        return;
    }
    out->status = 200;
    out->content_type = q->csv ? "text/csv" : "application/json";
    out->more = q_more;
    out->free_ctx = q_free;
    out->ctx = q;
    return;
bad:
    fv_query__json_error(out, 400, msg);
    free(q);
}
