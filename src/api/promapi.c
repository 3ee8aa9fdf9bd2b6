/*
 * promapi.c - the Prometheus-compatible query API (promapi.h): request parsing, the privacy
 * decision, reading samples from the store for the evaluator (promeval.h), and the
 * Prometheus JSON answers.
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
#include "api/promeval.h"
#include "api/promql.h"
#include "api/query.h"
#include "crypto/keys.h"
#include "privacy/guard.h"
#include "privacy/subjects.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/fmt.h"
#include "util/urlquery.h"
#include "wire/places.h"
#include "wire/signals.h"

#define MAX_SIGNALS 512

static void prom_error(struct fv_http_response *out, int status, const char *type, const char *msg)
{
    fv_api_respond_json(
        out, status,
        json_pack("{s:s,s:s,s:s}", "status", "error", "errorType", type, "error", msg));
}

static void prom_data(struct fv_http_response *out, json_t *data)
{
    if (data == NULL) {
        prom_error(out, 500, "internal", "out of memory");
        return;
    }
    fv_api_respond_json(out, 200, json_pack("{s:s,s:o}", "status", "success", "data", data));
}

/* G5: the whole answer checked against the quota before it is sent (api/query.h); a refusal
 * in Prometheus's shape. */
static void quota_send(const struct fv_api_view *v, struct fv_guard_ctx *ctx, uint64_t rows,
                       const struct fv_guard_served *served, struct fv_http_response *out)
{
    fv_api_quota_send(v, ctx, rows, served, out);
    if (out->status == 200) return;
    json_t *j = json_loadb((const char *)out->body.data, out->body.len, 0, NULL);
    const char *why = j ? json_string_value(json_object_get(j, "error")) : NULL;
    char msg[300];
    snprintf(msg, sizeof msg, "%s", why ? why : "quota");
    json_decref(j);
    prom_error(out, out->status, out->status == 503 ? "unavailable" : "forbidden", msg);
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

/* ---- what the expression reads ---------------------------------------------------------- */

struct plan {
    uint32_t sig[MAX_SIGNALS]; /* the signals any selector may read */
    size_t nsig;
    int64_t window;     /* the longest look back of a selector */
    const char *device; /* the one device every selector names (device="ID"), or NULL */
    int nsel, all_one;
    char err[200];
};

/* Only the signal's matchers, or only the device's (promql.h: NULL is not checked). */
static int sig_matches(const struct fv_pq_node *sel, const char *name)
{
    return fv_pq_matches(sel, name, NULL);
}

static int dev_matches(const struct fv_pq_node *sel, const char *dev)
{
    return fv_pq_matches(sel, NULL, dev);
}

static void plan_add(struct plan *p, uint32_t f)
{
    for (size_t i = 0; i < p->nsig; i++)
        if (p->sig[i] == f) return;
    if (p->nsig < MAX_SIGNALS) p->sig[p->nsig++] = f;
}

/* The signals a selector may read: named ones of the table, or the one it names exactly
 * (which may be beyond the table: a site signal). A place signal named exactly: refused. */
static int plan_sel(struct plan *p, const struct fv_pq_node *sel)
{
    const char *eq = fv_pq_eq_value(sel, FV_PQ_L_SIGNAL);
    if (eq) {
        long f = fv_signal_lookup(eq);
        if (f < 0) return FV_OK; /* selects nothing */
        if (fv_signal_place((unsigned)f) != FV_PLACE_NONE) {
            snprintf(p->err, sizeof p->err,
                     "signal %.64s reveals a place: location signals are not served by the "
                     "Prometheus API (use /api/v1/query)",
                     eq);
            return FV_EINVAL;
        }
        if (sig_matches(sel, eq)) plan_add(p, (uint32_t)f);
        return FV_OK;
    }
    for (unsigned f = 0; f < fv_signal_count; f++) {
        const char *name = fv_signal_name(f);
        if (name && fv_signal_place(f) == FV_PLACE_NONE && sig_matches(sel, name)) plan_add(p, f);
    }
    return FV_OK;
}

static int plan_walk(struct plan *p, const struct fv_pq_node *n)
{
    if (n == NULL) return FV_OK;
    if (n->kind == FV_PQ_SEL) {
        int64_t w = n->range_ms ? n->range_ms : FV_PE_LOOKBACK_MS;
        if (w > p->window) p->window = w;
        const char *d = fv_pq_eq_value(n, FV_PQ_L_DEVICE);
        if (p->nsel++ == 0) {
            p->device = d;
            p->all_one = d != NULL;
        } else if (d == NULL || p->device == NULL || strcmp(d, p->device) != 0) {
            p->all_one = 0;
        }
        return plan_sel(p, n);
    }
    int rc = plan_walk(p, n->arg);
    if (rc == FV_OK) rc = plan_walk(p, n->lhs);
    if (rc == FV_OK) rc = plan_walk(p, n->rhs);
    return rc;
}

/* ---- reading samples -------------------------------------------------------------------- */

struct reader {
    const struct fv_api_view *v;
    struct fv_guard_ctx *ctx;
    const struct fv_device *one; /* a single-subject read's device, else NULL: the fleet */
    const struct plan *plan;
    struct fv_guard_served served;
    uint64_t rows, samples;
};

static int to_double(const struct fv_value *x, double *d)
{
    switch (x->kind) {
    case FV_VK_DOUBLE:
        *d = x->u.d;
        return 1;
    case FV_VK_INT:
    case FV_VK_ENUM:
    case FV_VK_BOOL:
        *d = (double)x->u.i;
        return 1;
    default:
        return 0;
    }
}

/* One device's series of sel into *raw (appended). */
static int read_device(struct reader *rd, const struct fv_device *d, const struct fv_pq_node *sel,
                       int64_t from, int64_t to, struct fv_pe_raw **raw, size_t *nraw, size_t *cap,
                       char *err, size_t errlen)
{
    const struct fv_api_view *v = rd->v;
    char shown[65];
    fv_guard_show_id(v->guard, rd->ctx, d->id, shown);
    if (!dev_matches(sel, shown)) return FV_OK;
    uint32_t f[MAX_SIGNALS];
    size_t nf = 0;
    for (size_t i = 0; i < rd->plan->nsig; i++) {
        char name[32];
        fv_signal_label(rd->plan->sig[i], name, sizeof name);
        if (sig_matches(sel, name)) f[nf++] = rd->plan->sig[i];
    }
    if (nf == 0) return FV_OK;
    char subject[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1];
    const unsigned char *dek;
    if (fv_subject_current(v->keys, d->id, subject, NULL) != FV_OK)
        snprintf(subject, sizeof subject, "%s", d->id);
    if (fv_keystore_dek(v->keys, subject, 0, &dek, pseudo) != FV_OK) return FV_OK;    /* erased */
    if (fv_guard_load_consent(v->guard, rd->ctx, d->id, from, to) == 0) return FV_OK; /* G4 */
    fv_guard_load_zones(v->guard, rd->ctx, d->id);
    size_t base = *nraw;
    if (*cap - *nraw < nf) {
        size_t nc = (*nraw + nf) * 2;
        struct fv_pe_raw *m = realloc(*raw, nc * sizeof *m);
        if (m == NULL) return FV_ENOMEM;
        *raw = m;
        *cap = nc;
    }
    memset(*raw + base, 0, nf * sizeof **raw);
    for (size_t j = 0; j < nf; j++) {
        struct fv_pe_labels *l = &(*raw)[base + j].l;
        fv_signal_label(f[j], l->name, sizeof l->name);
        snprintf(l->signal, sizeof l->signal, "%s", l->name);
        snprintf(l->device, sizeof l->device, "%s", shown);
    }
    *nraw += nf;
    struct fv_store_cursor *c = NULL;
    char serr[256];
    int rc = fv_store_query(v->store, pseudo, dek, from, to, f, nf, 0, &c, serr, sizeof serr);
    struct fv_store_chunk ch;
    int got = 0;
    while (rc == FV_OK && (got = fv_store_next(c, &ch, serr, sizeof serr)) == 1) {
        for (size_t i = 0; rc == FV_OK && i < ch.n; i++) {
            if (!fv_guard_in_consent(rd->ctx, ch.t[i])) continue; /* G4 */
            int any = 0;
            for (size_t k = 0; rc == FV_OK && k < ch.ncols; k++) {
                struct fv_value tmp;
                const struct fv_value *x =
                    fv_guard_oblige(rd->ctx, ch.field[k], ch.t[i], &ch.col[k][i], &tmp);
                double dv;
                if (!to_double(x, &dv)) continue;
                size_t j = 0;
                while (j < nf && f[j] != ch.field[k])
                    j++;
                if (j == nf) continue;
                if (++rd->samples > FV_PROM_MAX_SAMPLES) {
                    snprintf(err, errlen,
                             "the query reads more than %d samples; ask for a shorter range or "
                             "fewer series",
                             FV_PROM_MAX_SAMPLES);
                    rc = FV_ELIMIT;
                    break;
                }
                rc = fv_pe_raw_add(&(*raw)[base + j], ch.t[i], dv);
                any = 1;
            }
            if (any) rd->rows++;
        }
    }
    if (rc == FV_OK && got < 0) {
        snprintf(err, errlen, "reading the store failed");
        rc = got;
    }
    if (rc == FV_OK) {
        int served = 0;
        for (size_t j = 0; j < nf; j++)
            served |= (*raw)[base + j].n > 0;
        if (served) fv_guard_served_add_pseudonym(&rd->served, pseudo); /* G12 */
    }
    fv_store_cursor_free(c);
    fv_guard_ctx_clear(rd->ctx);
    return rc;
}

static int fetch(void *arg, const struct fv_pq_node *sel, int64_t from, int64_t to,
                 struct fv_pe_raw **out, size_t *n, char *err, size_t errlen)
{
    struct reader *rd = arg;
    struct fv_pe_raw *raw = NULL;
    size_t nraw = 0, cap = 0;
    int rc = FV_OK;
    if (rd->one) {
        rc = read_device(rd, rd->one, sel, from, to, &raw, &nraw, &cap, err, errlen);
    } else {
        struct fv_device **all = NULL;
        size_t ndev = 0;
        if (fv_fleet_list(rd->v->fleet, &all, &ndev) != FV_OK) return FV_ENOMEM;
        for (size_t i = 0; rc == FV_OK && i < ndev; i++)
            if (fv_api_in_scope(rd->ctx, all[i]))
                rc = read_device(rd, all[i], sel, from, to, &raw, &nraw, &cap, err, errlen);
        free(all);
    }
    /* series without a sample do not exist for Prometheus */
    size_t keep = 0;
    for (size_t i = 0; i < nraw; i++) {
        if (raw[i].n == 0) {
            free(raw[i].t);
            free(raw[i].v);
            continue;
        }
        raw[keep++] = raw[i];
    }
    nraw = keep;
    if (rc) {
        for (size_t i = 0; i < nraw; i++) {
            free(raw[i].t);
            free(raw[i].v);
        }
        free(raw);
        return rc;
    }
    *out = raw;
    *n = nraw;
    return FV_OK;
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

/* The decision: what /api/v1/query (one device) or /api/v1/fleet would decide. FV_OK, or
 * an error answered in out. */
static int decide(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const struct plan *p,
                  struct reader *rd, const char *action, int64_t from, int64_t to,
                  struct fv_http_response *out)
{
    const char *sn[MAX_SIGNALS];
    char names[MAX_SIGNALS][32], msg[400];
    uint32_t classes = 0;
    for (size_t j = 0; j < p->nsig; j++) {
        fv_signal_label(p->sig[j], names[j], sizeof names[j]);
        sn[j] = names[j];
        classes |= fv_api_signal_class(v, p->sig[j]);
    }
    if (classes == 0) classes = fv_api_signal_class(v, 0);
    const char *dev = p->all_one ? p->device : NULL;
    int rc;
    if (dev) {
        rd->one = fv_api_find_device(v, ctx, dev); /* G11: decided whatever dev names */
        const char *subj[1] = {rd->one ? rd->one->id : dev};
        rc = fv_guard_read(v->guard, ctx, v->query, action, classes, subj, 1, 0, sn, p->nsig, from,
                           to, msg, sizeof msg);
        if (rc == FV_OK && rd->one == NULL) rc = FV_ENOENT;
    } else {
        size_t nfleet = fv_fleet_count(v->fleet);
        ctx->energy_sites = 1; /* energy-site roles: other devices are left out */
        rc = fv_guard_read(v->guard, ctx, v->query, action, classes, NULL, nfleet ? nfleet : 1, 0,
                           sn, p->nsig, from, to, msg, sizeof msg);
    }
    if (rc == FV_ENOENT) {
        snprintf(msg, sizeof msg, "unknown device '%.64s'", dev);
        prom_error(out, 404, "not_found", msg);
    } else if (rc) {
        prom_error(out, rc == FV_EIO ? 503 : 403, rc == FV_EIO ? "unavailable" : "forbidden", msg);
    }
    return rc;
}

/* ---- query and query_range -------------------------------------------------------------- */

static void query(const struct fv_api_view *v, struct fv_guard_ctx *ctx, int instant,
                  struct fv_http_response *out)
{
    char text[4096], a[64], msg[400];
    if (!fv_query_param(v->query, "query", text, sizeof text) || text[0] == '\0' ||
        strlen(text) == sizeof text - 1) {
        prom_error(out, 400, "bad_data", "invalid parameter \"query\": missing or too long");
        return;
    }
    struct fv_pe_query q = {
        .fetch = fetch, .max_series = FV_PROM_MAX_SERIES, .max_points = FV_PROM_MAX_POINTS_HELD};
    if (instant) {
        q.start = (int64_t)fv_now_ms();
        if (fv_query_param(v->query, "time", a, sizeof a) && a[0] && parse_time(a, &q.start)) {
            prom_error(out, 400, "bad_data", "invalid parameter \"time\": not a time");
            return;
        }
        q.end = q.start;
        q.step = 1000;
    } else {
        static const char *const names[3] = {"start", "end", "step"};
        int64_t *dst[3] = {&q.start, &q.end, &q.step};
        for (int i = 0; i < 3; i++)
            if (!fv_query_param(v->query, names[i], a, sizeof a) ||
                (i < 2 ? parse_time(a, dst[i]) : parse_step(a, dst[i]))) {
                snprintf(msg, sizeof msg, "invalid parameter \"%s\": missing or not a %s", names[i],
                         i < 2 ? "time" : "duration");
                prom_error(out, 400, "bad_data", msg);
                return;
            }
        if (q.end < q.start) {
            prom_error(out, 400, "bad_data",
                       "invalid parameter \"end\": end timestamp must not be before start time");
            return;
        }
        if ((uint64_t)(q.end - q.start) / (uint64_t)q.step >= FV_PROM_MAX_POINTS) {
            prom_error(out, 400, "bad_data",
                       "exceeded maximum resolution of 11,000 points per timeseries. Try "
                       "decreasing the query resolution (?step=XX)");
            return;
        }
    }
    struct fv_pq_node *e = NULL;
    size_t pos = 0;
    char perr[200];
    int rc = fv_pq_parse(text, &e, &pos, perr, sizeof perr);
    if (rc) {
        snprintf(msg, sizeof msg, "1:%zu: parse error: %s", pos + 1, perr);
        prom_error(out, rc == FV_ENOMEM ? 500 : 400, rc == FV_ENOMEM ? "internal" : "bad_data",
                   msg);
        return;
    }
    struct plan *p = calloc(1, sizeof *p);
    struct reader rd = {.v = v, .ctx = ctx};
    struct fv_pe_result res = {0};
    if (p == NULL) {
        prom_error(out, 500, "internal", "out of memory");
        goto done;
    }
    if (plan_walk(p, e)) {
        prom_error(out, 400, "bad_data", p->err);
        goto done;
    }
    rd.plan = p;
    int64_t from = q.start > INT64_MIN + p->window ? q.start - p->window : INT64_MIN;
    /* Numbers alone ("1+1": Grafana's connection test) read nothing: no decision needed. */
    int reads = p->nsel > 0;
    rc = reads ? decide(v, ctx, p, &rd, "prom.query", from, q.end, out) : FV_OK;
    if (rc) goto done;
    q.arg = &rd;
    rc = fv_pe_eval(&q, e, &res, msg, sizeof msg);
    if (rc) {
        if (rc == FV_ELIMIT)
            prom_error(out, 422, "execution", msg);
        else if (rc == FV_ENOMEM)
            prom_error(out, 500, "internal", "out of memory");
        else
            prom_error(out, 500, "internal", msg[0] ? msg : "the query failed");
        if (reads) fv_guard_done_served(v->guard, ctx, &rd.served, 0, 0); /* nothing served */
    } else {
        prom_data(out, render(&q, &res, instant));
        if (!reads)
            ;
        else if (out->status == 200)
            quota_send(v, ctx, rd.rows, &rd.served, out); /* G5 before sending; G12 */
        else
            fv_guard_done_served(v->guard, ctx, &rd.served, 0, 0);
    }
done:
    fv_pe_free(&res);
    fv_guard_served_free(&rd.served);
    free(p);
    fv_pq_free(e);
}

/* ---- series ---------------------------------------------------------------------------- */

static void series(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                   struct fv_http_response *out)
{
    char text[4096], a[64];
    if (!fv_query_param(v->query, "match[]", text, sizeof text) || text[0] == '\0' ||
        strlen(text) == sizeof text - 1) {
        prom_error(out, 400, "bad_data", "invalid parameter \"match[]\": missing or too long");
        return;
    }
    int64_t end = (int64_t)fv_now_ms(), start;
    if (fv_query_param(v->query, "end", a, sizeof a) && parse_time(a, &end)) {
        prom_error(out, 400, "bad_data", "invalid parameter \"end\": not a time");
        return;
    }
    start = end - 3600000; /* Prometheus's default is all time: here the last hour */
    if (fv_query_param(v->query, "start", a, sizeof a) && parse_time(a, &start)) {
        prom_error(out, 400, "bad_data", "invalid parameter \"start\": not a time");
        return;
    }
    struct fv_pq_node *e = NULL;
    size_t pos = 0;
    char perr[200], msg[300];
    int rc = fv_pq_parse(text, &e, &pos, perr, sizeof perr);
    if (rc == FV_OK && (e->kind != FV_PQ_SEL || e->range_ms)) {
        snprintf(perr, sizeof perr, "match[] must be a series selector");
        pos = 0;
        rc = FV_EINVAL;
    }
    if (rc) {
        snprintf(msg, sizeof msg, "1:%zu: parse error: %s", pos + 1, perr);
        prom_error(out, 400, "bad_data", msg);
        fv_pq_free(e);
        return;
    }
    struct plan *p = calloc(1, sizeof *p);
    struct reader rd = {.v = v, .ctx = ctx, .plan = p};
    struct fv_pe_raw *raw = NULL;
    size_t n = 0;
    if (p == NULL) {
        prom_error(out, 500, "internal", "out of memory");
    } else if (plan_walk(p, e)) {
        prom_error(out, 400, "bad_data", p->err);
    } else if (decide(v, ctx, p, &rd, "prom.series", start, end, out) == FV_OK) {
        rc = fetch(&rd, e, start, end, &raw, &n, msg, sizeof msg);
        json_t *arr = rc ? NULL : json_array();
        for (size_t i = 0; arr && i < n; i++)
            json_array_append_new(arr, jlabels(&raw[i].l));
        if (rc == FV_ELIMIT)
            prom_error(out, 422, "execution", msg);
        else
            prom_data(out, arr);
        if (out->status == 200)
            quota_send(v, ctx, n, &rd.served, out); /* G5, G12 */
        else
            fv_guard_done_served(v->guard, ctx, &rd.served, 0, 0);
    }
    for (size_t i = 0; i < n; i++) {
        free(raw[i].t);
        free(raw[i].v);
    }
    free(raw);
    fv_guard_served_free(&rd.served);
    free(p);
    fv_pq_free(e);
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
    prom_data(out, a);
}

static void device_names(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                         struct fv_http_response *out)
{
    char msg[300];
    size_t nfleet = fv_fleet_count(v->fleet);
    ctx->energy_sites = 1;
    int rc = fv_guard_read(v->guard, ctx, v->query, "prom.devices", fv_api_signal_class(v, 0), NULL,
                           nfleet ? nfleet : 1, 0, NULL, 0, INT64_MIN, INT64_MAX, msg, sizeof msg);
    if (rc) {
        prom_error(out, rc == FV_EIO ? 503 : 403, rc == FV_EIO ? "unavailable" : "forbidden", msg);
        return;
    }
    struct fv_guard_served served = {0};
    struct fv_device **all = NULL;
    size_t ndev = 0;
    json_t *a = json_array();
    if (a == NULL || fv_fleet_list(v->fleet, &all, &ndev) != FV_OK) ndev = 0;
    for (size_t i = 0; a && i < ndev; i++) {
        const struct fv_device *d = all[i];
        const unsigned char *dek;
        char subject[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1], shown[65];
        if (!fv_api_in_scope(ctx, d)) continue;
        if (fv_subject_current(v->keys, d->id, subject, NULL) != FV_OK)
            snprintf(subject, sizeof subject, "%s", d->id);
        if (fv_keystore_dek(v->keys, subject, 0, &dek, pseudo) != FV_OK) continue;     /* erased */
        if (!fv_guard_consented(v->guard, ctx, d->id, (int64_t)fv_now_ms())) continue; /* G4 */
        fv_guard_show_id(v->guard, ctx, d->id, shown);
        json_array_append_new(a, json_string(shown));
        fv_guard_served_add_pseudonym(&served, pseudo);
    }
    free(all);
    prom_data(out, a);
    if (out->status == 200) quota_send(v, ctx, served.n, &served, out);
    fv_guard_served_free(&served);
}

/* ---- routing ---------------------------------------------------------------------------- */

void fv_api_prometheus(const struct fv_api_view *v0, const char *method, const char *path,
                       const char *authorization, struct fv_http_response *out)
{
    out->www_authenticate = 0;
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0) {
        prom_error(out, 405, "bad_data", "method not allowed: use GET or POST");
        return;
    }
    if (v0->guard == NULL) {
        prom_error(out, 503, "unavailable", "access control is not set up");
        return;
    }
    struct fv_guard_ctx ctx;
    char why[400];
    if (fv_guard_auth(v0->guard, authorization, &ctx, why, sizeof why) != FV_OK) {
        out->www_authenticate = 1;
        prom_error(out, 401, "unauthorized", why);
        return;
    }
    /* A POST's form body holds parameters too (Grafana and promtool POST by default): decoded
     * as the URL's are, and read after them. */
    struct fv_api_view view = *v0;
    const struct fv_api_view *v = &view;
    char *qs = NULL;
    size_t bl = v0->body ? strnlen(v0->body, v0->body_len) : 0; /* body_len counts a NUL */
    if (strcmp(method, "POST") == 0 && bl) {
        size_t ql = v0->query ? strlen(v0->query) : 0;
        qs = malloc(ql + bl + 2);
        if (qs == NULL) {
            prom_error(out, 500, "internal", "out of memory");
            return;
        }
        memcpy(qs, v0->query ? v0->query : "", ql);
        qs[ql] = '&';
        memcpy(qs + ql + 1, v0->body, bl);
        size_t n = fv_form_decode(qs + ql + 1, bl);
        qs[ql + 1 + n] = '\0';
        view.query = qs;
    }
    if (strcmp(path, "/api/v1/query") == 0 && v->store) {
        query(v, &ctx, 1, out);
    } else if (strcmp(path, "/api/v1/query_range") == 0 && v->store) {
        query(v, &ctx, 0, out);
    } else if (strcmp(path, "/api/v1/series") == 0 && v->store) {
        series(v, &ctx, out);
    } else if (strcmp(path, "/api/v1/labels") == 0) {
        prom_data(out, json_pack("[s,s,s]", "__name__", "device", "signal"));
    } else if (strcmp(path, "/api/v1/label/__name__/values") == 0 ||
               strcmp(path, "/api/v1/label/signal/values") == 0) {
        signal_names(out);
    } else if (strcmp(path, "/api/v1/label/device/values") == 0) {
        device_names(v, &ctx, out);
    } else if (strncmp(path, "/api/v1/label/", 14) == 0) {
        prom_data(out, json_array()); /* no other label has values */
    } else if (strcmp(path, "/api/v1/metadata") == 0) {
        prom_data(out, json_object());
    } else if (strcmp(path, "/api/v1/status/buildinfo") == 0) {
        prom_data(out, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "version", "2.42.0", "revision",
                                 "fleetvault", "branch", "", "buildUser", "", "buildDate", "",
                                 "goVersion", ""));
    } else {
        prom_error(out, 404, "not_found", "no such endpoint (docs/prometheus.md)");
    }
    free(qs);
}
