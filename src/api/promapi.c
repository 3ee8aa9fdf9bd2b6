/*
 * promapi.c - the Prometheus-compatible query API (promapi.h): request parsing, evaluation
 * (promeval.h) and the Prometheus JSON answers, routing; promread.c decides and reads.
 *
 * The read is decided once per request (fv_guard_read, action "prom.query"): as a
 * single-subject read when every selector names one device with device="ID" (as
 * /api/v1/query decides it, G11 included), else as a fleet read (as /api/v1/fleet). Then
 * device by device: the requester's scope, the current owner period's key, consent (G4),
 * the value as the requester may see it (fv_guard_oblige); rows counted against the quota
 * (G5) and the periods served named in the result entry (G12).
 *
 * Threading: the API thread only (promapi.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/promapi.h"
#include "api/promapi_int.h"
#include "api/promeval.h"
#include "api/promql.h"
#include "api/query.h"
#include "privacy/guard.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/fmt.h"
#include "util/urlquery.h"
#include "wire/places.h"
#include "wire/signals.h"

void fv_prom__error(struct fv_http_response *out, int status, const char *type, const char *msg)
{
    fv_api_respond_json(
        out, status,
        json_pack("{s:s,s:s,s:s}", "status", "error", "errorType", type, "error", msg));
}

void fv_prom__data(struct fv_http_response *out, json_t *data)
{
    if (data == NULL) {
        fv_prom__error(out, 500, "internal", "out of memory");
        return;
    }
    fv_api_respond_json(out, 200, json_pack("{s:s,s:o}", "status", "success", "data", data));
}

/* G5: the whole answer checked against the quota before it is sent (api/query.h); a refusal
 * in Prometheus's shape. */
void fv_prom__quota_send(const struct fv_api_view *v, struct fv_guard_ctx *ctx, uint64_t rows,
                         const struct fv_guard_served *served, struct fv_http_response *out)
{
    fv_api_quota_send(v, ctx, rows, served, out);
    if (out->status == 200) return;
    json_t *j = json_loadb((const char *)out->body.data, out->body.len, 0, NULL);
    const char *why = j ? json_string_value(json_object_get(j, "error")) : NULL;
    char msg[300];
    snprintf(msg, sizeof msg, "%s", why ? why : "quota");
    json_decref(j);
    fv_prom__error(out, out->status, out->status == 503 ? "unavailable" : "forbidden", msg);
}

/* ---- times ------------------------------------------------------------------------------ */

/* Unix seconds (with a fraction) or RFC 3339, as Prometheus takes them. */
static int parse_time(const char *s, int64_t *ms)
{
    char *end;
    double sec = strtod(s, &end);
    if (end != s && *end == '\0') {
        if (!isfinite(sec) || fabs(sec) > 9e12) return FV_EINVAL;
        *ms = (int64_t)llround(sec * 1000.0);
        return FV_OK;
    }
    if (strchr(s, 'T') == NULL) return FV_EINVAL; /* not epoch milliseconds here */
    return fv_parse_time_ms(s, ms);
}

/* Seconds (with a fraction) or a duration ("15s", "1m"). */
static int parse_step(const char *s, int64_t *ms)
{
    char *end;
    double sec = strtod(s, &end);
    if (end != s && *end == '\0') {
        if (!(sec > 0) || sec > 1e10) return FV_EINVAL;
        *ms = (int64_t)llround(sec * 1000.0);
        return *ms > 0 ? FV_OK : FV_EINVAL;
    }
    return fv_pq_duration(s, strlen(s), ms);
}

/* ---- answers ---------------------------------------------------------------------------- */

static json_t *jtime(int64_t ms)
{
    return json_real((double)ms / 1000.0);
}

static json_t *jvalue(double d)
{
    char s[FV_FMT_DOUBLE_MAX];
    if (isnan(d)) return json_string("NaN");
    if (isinf(d)) return json_string(d > 0 ? "+Inf" : "-Inf");
    fv_fmt_double(s, d);
    return json_string(s);
}

static json_t *jlabels(const struct fv_pe_labels *l)
{
    json_t *m = json_object();
    if (m == NULL) return NULL;
    if (l->name[0]) json_object_set_new(m, "__name__", json_string(l->name));
    if (l->device[0]) json_object_set_new(m, "device", json_string(l->device));
    if (l->signal[0]) json_object_set_new(m, "signal", json_string(l->signal));
    return m;
}

static int cmp_series(const void *a, const void *b)
{
    const struct fv_pe_series *x = a, *y = b;
    int c = strcmp(x->l.name, y->l.name);
    if (c == 0) c = strcmp(x->l.device, y->l.device);
    return c ? c : strcmp(x->l.signal, y->l.signal);
}

static json_t *render(const struct fv_pe_query *q, struct fv_pe_result *r, int instant)
{
    size_t ns = fv_pe_steps(q);
    if (instant && r->scalar)
        return json_pack("{s:s,s:[o,o]}", "resultType", "scalar", "result", jtime(q->start),
                         jvalue(r->sv[0]));
    json_t *res = json_array();
    if (res == NULL) return NULL;
    if (r->scalar) { /* a range query of a scalar: one series without labels */
        json_t *vals = json_array();
        for (size_t k = 0; k < ns; k++)
            json_array_append_new(
                vals, json_pack("[o,o]", jtime(q->start + (int64_t)k * q->step), jvalue(r->sv[k])));
        json_array_append_new(res, json_pack("{s:o,s:o}", "metric", json_object(), "values", vals));
        return json_pack("{s:s,s:o}", "resultType", "matrix", "result", res);
    }
    if (r->nseries > 1) qsort(r->s, r->nseries, sizeof *r->s, cmp_series);
    for (size_t i = 0; i < r->nseries; i++) {
        const struct fv_pe_series *s = &r->s[i];
        if (instant) {
            if (isnan(s->v[0])) continue;
            json_array_append_new(res, json_pack("{s:o,s:[o,o]}", "metric", jlabels(&s->l), "value",
                                                 jtime(q->start), jvalue(s->v[0])));
            continue;
        }
        json_t *vals = json_array();
        for (size_t k = 0; vals && k < ns; k++)
            if (!isnan(s->v[k]))
                json_array_append_new(
                    vals,
                    json_pack("[o,o]", jtime(q->start + (int64_t)k * q->step), jvalue(s->v[k])));
        if (vals && json_array_size(vals) == 0) {
            json_decref(vals);
            continue;
        }
        json_array_append_new(res,
                              json_pack("{s:o,s:o}", "metric", jlabels(&s->l), "values", vals));
    }
    return json_pack("{s:s,s:o}", "resultType", instant ? "vector" : "matrix", "result", res);
}

/* ---- requests --------------------------------------------------------------------------- */

enum fv_prom_kind fv_prom_kind(const char *path)
{
    if (strcmp(path, "/api/v1/query") == 0) return FV_PROM_QUERY;
    if (strcmp(path, "/api/v1/query_range") == 0) return FV_PROM_RANGE;
    if (strcmp(path, "/api/v1/series") == 0) return FV_PROM_SERIES;
    if (strcmp(path, "/api/v1/label/device/values") == 0) return FV_PROM_DEVICES;
    return FV_PROM_NONE;
}

/* The times of a query (time, or start, end, step) or of a series request (start, end):
 * FV_OK or the 400 answered. */
static int parse_times(const char *query, enum fv_prom_kind kind, struct fv_pe_query *q,
                       struct fv_http_response *out)
{
    char a[64], msg[200];
    if (kind == FV_PROM_QUERY) {
        q->start = (int64_t)fv_now_ms();
        if (fv_query_param(query, "time", a, sizeof a) && a[0] && parse_time(a, &q->start)) {
            fv_prom__error(out, 400, "bad_data", "invalid parameter \"time\": not a time");
            return FV_EINVAL;
        }
        q->end = q->start;
        q->step = 1000;
        return FV_OK;
    }
    if (kind == FV_PROM_SERIES) {
        q->end = (int64_t)fv_now_ms();
        if (fv_query_param(query, "end", a, sizeof a) && parse_time(a, &q->end)) {
            fv_prom__error(out, 400, "bad_data", "invalid parameter \"end\": not a time");
            return FV_EINVAL;
        }
        q->start = q->end - 3600000; /* Prometheus's default is all time: here the last hour */
        if (fv_query_param(query, "start", a, sizeof a) && parse_time(a, &q->start)) {
            fv_prom__error(out, 400, "bad_data", "invalid parameter \"start\": not a time");
            return FV_EINVAL;
        }
        q->step = 1000;
        return FV_OK;
    }
    static const char *const names[3] = {"start", "end", "step"};
    int64_t *dst[3] = {&q->start, &q->end, &q->step};
    for (int i = 0; i < 3; i++)
        if (!fv_query_param(query, names[i], a, sizeof a) ||
            (i < 2 ? parse_time(a, dst[i]) : parse_step(a, dst[i]))) {
            snprintf(msg, sizeof msg, "invalid parameter \"%s\": missing or not a %s", names[i],
                     i < 2 ? "time" : "duration");
            fv_prom__error(out, 400, "bad_data", msg);
            return FV_EINVAL;
        }
    if (q->end < q->start) {
        fv_prom__error(out, 400, "bad_data",
                       "invalid parameter \"end\": end timestamp must not be before start time");
        return FV_EINVAL;
    }
    if ((uint64_t)(q->end - q->start) / (uint64_t)q->step >= FV_PROM_MAX_POINTS) {
        fv_prom__error(out, 400, "bad_data",
                       "exceeded maximum resolution of 11,000 points per timeseries. Try "
                       "decreasing the query resolution (?step=XX)");
        return FV_EINVAL;
    }
    return FV_OK;
}

int fv_prom_req_parse(const char *query, enum fv_prom_kind kind, struct fv_prom_req *r,
                      struct fv_http_response *out)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->q.max_series = FV_PROM_MAX_SERIES;
    r->q.max_points = FV_PROM_MAX_POINTS_HELD;
    if (kind == FV_PROM_DEVICES) return FV_OK;
    const char *pname = kind == FV_PROM_SERIES ? "match[]" : "query";
    char text[4096], msg[400];
    if (!fv_query_param(query, pname, text, sizeof text) || text[0] == '\0' ||
        strlen(text) == sizeof text - 1) {
        snprintf(msg, sizeof msg, "invalid parameter \"%s\": missing or too long", pname);
        fv_prom__error(out, 400, "bad_data", msg);
        return FV_EINVAL;
    }
    if (parse_times(query, kind, &r->q, out)) return FV_EINVAL;
    size_t pos = 0;
    char perr[200];
    int rc = fv_pq_parse(text, &r->e, &pos, perr, sizeof perr);
    if (rc == FV_OK && kind == FV_PROM_SERIES && (r->e->kind != FV_PQ_SEL || r->e->range_ms)) {
        snprintf(perr, sizeof perr, "match[] must be a series selector");
        pos = 0;
        rc = FV_EINVAL;
    }
    if (rc) {
        snprintf(msg, sizeof msg, "1:%zu: parse error: %s", pos + 1, perr);
        fv_prom__error(out, rc == FV_ENOMEM ? 500 : 400, rc == FV_ENOMEM ? "internal" : "bad_data",
                       msg);
        fv_prom_req_free(r);
        return rc;
    }
    struct plan *p = calloc(1, sizeof *p);
    if (p == NULL) {
        fv_prom__error(out, 500, "internal", "out of memory");
        rc = FV_ENOMEM;
    } else if (fv_prom__plan(p, r->e)) { /* a place signal named exactly */
        fv_prom__error(out, 400, "bad_data", p->err);
        rc = FV_EINVAL;
    }
    r->reads = p && p->nsel > 0;
    free(p);
    if (rc) fv_prom_req_free(r);
    return rc;
}

void fv_prom_req_free(struct fv_prom_req *r)
{
    fv_pq_free(r->e);
    r->e = NULL;
}

static size_t count_sel(const struct fv_pq_node *n, const struct fv_pq_node **out, size_t i)
{
    if (n == NULL) return i;
    if (n->kind == FV_PQ_SEL) {
        if (out) out[i] = n;
        return i + 1;
    }
    i = count_sel(n->arg, out, i);
    i = count_sel(n->lhs, out, i);
    return count_sel(n->rhs, out, i);
}

int fv_prom_selectors(const struct fv_pq_node *e, const struct fv_pq_node ***out, size_t *n)
{
    *n = count_sel(e, NULL, 0);
    *out = *n ? calloc(*n, sizeof **out) : NULL;
    if (*n && *out == NULL) return FV_ENOMEM;
    count_sel(e, *out, 0);
    return FV_OK;
}

/* r's answer from the series fetch gives; *nseries: a series or devices answer's count. */
static void answer(struct fv_prom_req *r, fv_pe_fetch fetch, void *arg,
                   struct fv_http_response *out, size_t *nseries)
{
    char msg[400] = "";
    *nseries = 0;
    if (r->kind == FV_PROM_QUERY || r->kind == FV_PROM_RANGE) {
        struct fv_pe_result res = {0};
        r->q.fetch = fetch;
        r->q.arg = arg;
        int rc = fv_pe_eval(&r->q, r->e, &res, msg, sizeof msg);
        if (rc == FV_ELIMIT)
            fv_prom__error(out, 422, "execution", msg);
        else if (rc == FV_ENOMEM)
            fv_prom__error(out, 500, "internal", "out of memory");
        else if (rc)
            fv_prom__error(out, 500, "internal", msg[0] ? msg : "the query failed");
        else
            fv_prom__data(out, render(&r->q, &res, r->kind == FV_PROM_QUERY));
        fv_pe_free(&res);
        return;
    }
    struct fv_pe_raw *raw = NULL;
    size_t n = 0;
    int rc = fetch(arg, r->kind == FV_PROM_SERIES ? r->e : NULL, r->q.start, r->q.end, &raw, &n,
                   msg, sizeof msg);
    json_t *arr = rc ? NULL : json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, r->kind == FV_PROM_SERIES ? jlabels(&raw[i].l)
                                                             : json_string(raw[i].l.device));
    if (rc == FV_ELIMIT)
        fv_prom__error(out, 422, "execution", msg);
    else if (rc && rc != FV_ENOMEM)
        fv_prom__error(out, 500, "internal", msg[0] ? msg : "the query failed");
    else
        fv_prom__data(out, arr);
    for (size_t i = 0; i < n; i++) {
        free(raw[i].t);
        free(raw[i].v);
    }
    free(raw);
    *nseries = n;
}

void fv_prom_answer(struct fv_prom_req *r, fv_pe_fetch fetch, void *arg,
                    struct fv_http_response *out)
{
    size_t n;
    answer(r, fetch, arg, out, &n);
}

/* ---- query, query_range, series ---------------------------------------------------------- */

static void query(const struct fv_api_view *v, struct fv_guard_ctx *ctx, enum fv_prom_kind kind,
                  struct fv_http_response *out)
{
    struct fv_prom_req r;
    if (fv_prom_req_parse(v->query, kind, &r, out)) return;
    struct plan *p = calloc(1, sizeof *p);
    struct reader rd = {.v = v, .ctx = ctx, .plan = p};
    if (p == NULL || fv_prom__plan(p, r.e)) {
        fv_prom__error(out, 500, "internal", "out of memory");
        goto done;
    }
    int series = kind == FV_PROM_SERIES;
    int64_t from = fv_prom__from(p, &r, kind);
    /* Numbers alone ("1+1": Grafana's connection test) read nothing: no decision needed. */
    int reads = p->nsel > 0;
    if (reads &&
        fv_prom__decide(v, ctx, p, &rd, series ? "prom.series" : "prom.query", from, r.q.end, out))
        goto done;
    size_t n;
    answer(&r, fv_prom__fetch, &rd, out, &n);
    if (!reads)
        ;
    else if (out->status == 200) /* G5 before sending; G12 */
        fv_prom__quota_send(v, ctx, series ? n : rd.rows, &rd.served, out);
    else
        fv_guard_done_served(v->guard, ctx, &rd.served, 0, 0); /* nothing served */
done:
    fv_guard_served_free(&rd.served);
    free(p);
    fv_prom_req_free(&r);
}

/* ---- labels ----------------------------------------------------------------------------- */

static void signal_names(struct fv_http_response *out)
{
    json_t *a = json_array();
    for (unsigned f = 0; a && f < fv_signal_count; f++) {
        const char *name = fv_signal_name(f);
        if (name && fv_signal_place(f) == FV_PLACE_NONE)
            json_array_append_new(a, json_string(name));
    }
    fv_prom__data(out, a);
}

/* ---- routing ---------------------------------------------------------------------------- */

/* The request of an authenticated principal. */
static void route(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *path,
                  struct fv_http_response *out)
{
    enum fv_prom_kind kind = fv_prom_kind(path);
    if (kind && v->prom_forward && v->prom_forward(v->forward_arg, v, ctx, path, out)) return;
    if (kind != FV_PROM_NONE && kind != FV_PROM_DEVICES && v->store) {
        query(v, ctx, kind, out);
    } else if (strcmp(path, "/api/v1/labels") == 0) {
        fv_prom__data(out, json_pack("[s,s,s]", "__name__", "device", "signal"));
    } else if (strcmp(path, "/api/v1/label/__name__/values") == 0 ||
               strcmp(path, "/api/v1/label/signal/values") == 0) {
        signal_names(out);
    } else if (kind == FV_PROM_DEVICES) {
        fv_prom__device_names(v, ctx, 0, out);
    } else if (strncmp(path, "/api/v1/label/", 14) == 0) {
        fv_prom__data(out, json_array()); /* no other label has values */
    } else if (strcmp(path, "/api/v1/metadata") == 0) {
        fv_prom__data(out, json_object());
    } else if (strcmp(path, "/api/v1/status/buildinfo") == 0) {
        fv_prom__data(out, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "version", "2.42.0", "revision",
                                     "fleetvault", "branch", "", "buildUser", "", "buildDate", "",
                                     "goVersion", ""));
    } else {
        fv_prom__error(out, 404, "not_found", "no such endpoint (docs/prometheus.md)");
    }
}

void fv_api_prometheus_as(const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                          const char *path, struct fv_http_response *out)
{
    struct fv_api_view view = *v;
    view.prom_forward = NULL;
    struct fv_guard_ctx c = *ctx;
    route(&view, &c, path, out);
}

void fv_api_prometheus(const struct fv_api_view *v0, const char *method, const char *path,
                       const char *authorization, struct fv_http_response *out)
{
    out->www_authenticate = 0;
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0) {
        fv_prom__error(out, 405, "bad_data", "method not allowed: use GET or POST");
        return;
    }
    if (v0->guard == NULL) {
        fv_prom__error(out, 503, "unavailable", "access control is not set up");
        return;
    }
    struct fv_guard_ctx ctx;
    char why[400];
    if (fv_guard_auth(v0->guard, authorization, &ctx, why, sizeof why) != FV_OK) {
        out->www_authenticate = 1;
        fv_prom__error(out, 401, "unauthorized", why);
        return;
    }
    /* A POST's form body holds parameters too (Grafana and promtool POST by default): decoded
     * as the URL's are, and read after them. */
    struct fv_api_view view = *v0;
    char *qs = NULL;
    size_t bl = v0->body ? strnlen(v0->body, v0->body_len) : 0; /* body_len counts a NUL */
    if (strcmp(method, "POST") == 0 && bl) {
        size_t ql = v0->query ? strlen(v0->query) : 0;
        qs = malloc(ql + bl + 2);
        if (qs == NULL) {
            fv_prom__error(out, 500, "internal", "out of memory");
            return;
        }
        memcpy(qs, v0->query ? v0->query : "", ql);
        qs[ql] = '&';
        memcpy(qs + ql + 1, v0->body, bl);
        size_t n = fv_form_decode(qs + ql + 1, bl);
        qs[ql + 1 + n] = '\0';
        view.query = qs;
    }
    route(&view, &ctx, path, out);
    free(qs);
}
