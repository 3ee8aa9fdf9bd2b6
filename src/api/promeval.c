/*
 * promeval.c - the PromQL subset's evaluator (promeval.h): every node is evaluated at all
 * steps at once, giving a scalar per step or series of one value per step.
 * Reentrant: any thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/promeval.h"
#include "util/err.h"

int fv_pe_raw_add(struct fv_pe_raw *r, int64_t t, double v)
{
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 64;
        int64_t *nt = realloc(r->t, nc * sizeof *nt);
        if (nt == NULL) return FV_ENOMEM;
        r->t = nt;
        double *nv = realloc(r->v, nc * sizeof *nv);
        if (nv == NULL) return FV_ENOMEM;
        r->v = nv;
        r->cap = nc;
    }
    r->t[r->n] = t;
    r->v[r->n] = v;
    r->n++;
    return FV_OK;
}

size_t fv_pe_steps(const struct fv_pe_query *q)
{
    return (size_t)((q->end - q->start) / q->step) + 1;
}

void fv_pe_free(struct fv_pe_result *res)
{
    free(res->sv);
    for (size_t i = 0; i < res->nseries; i++)
        free(res->s[i].v);
    free(res->s);
    memset(res, 0, sizeof *res);
}

static void free_raws(struct fv_pe_raw *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].t);
        free(r[i].v);
    }
    free(r);
}

static double *nan_steps(size_t ns)
{
    double *v = malloc(ns * sizeof *v);
    if (v)
        for (size_t k = 0; k < ns; k++)
            v[k] = NAN;
    return v;
}

/* Prometheus's extrapolated rate/increase over the samples t[lo..hi] of a window
 * (from, to], counter resets included. */
static double extrapolated(const int64_t *t, const double *v, size_t lo, size_t hi, int64_t from,
                           int64_t to, int is_rate)
{
    size_t n = hi - lo + 1;
    double result = v[hi] - v[lo];
    for (size_t i = lo + 1; i <= hi; i++)
        if (v[i] < v[i - 1]) result += v[i - 1];
    double to_start = (double)(t[lo] - from) / 1000.0;
    double to_end = (double)(to - t[hi]) / 1000.0;
    double sampled = (double)(t[hi] - t[lo]) / 1000.0;
    if (sampled <= 0) return NAN;
    double avg_gap = sampled / (double)(n - 1);
    if (result > 0 && v[lo] >= 0) {
        double to_zero = sampled * (v[lo] / result);
        if (to_zero < to_start) to_start = to_zero;
    }
    double threshold = avg_gap * 1.1, interval = sampled;
    interval += to_start < threshold ? to_start : avg_gap / 2;
    interval += to_end < threshold ? to_end : avg_gap / 2;
    result *= interval / sampled;
    if (is_rate) result /= (double)(to - from) / 1000.0;
    return result;
}

static double over_time(enum fv_pq_func f, const int64_t *t, const double *v, size_t lo, size_t hi,
                        int64_t from, int64_t to)
{
    double acc;
    switch (f) {
    case FV_PQ_RATE:
    case FV_PQ_INCREASE:
        if (hi == lo) return NAN;
        return extrapolated(t, v, lo, hi, from, to, f == FV_PQ_RATE);
    case FV_PQ_AVG_OT: {
        /* a running mean, as Prometheus computes it, avoids overflow for large values */
        double mean = 0;
        for (size_t i = lo; i <= hi; i++)
            mean += (v[i] - mean) / (double)(i - lo + 1);
        return mean;
    }
    case FV_PQ_MIN_OT:
        acc = v[lo];
        for (size_t i = lo + 1; i <= hi; i++)
            if (v[i] < acc || isnan(acc)) acc = v[i];
        return acc;
    case FV_PQ_MAX_OT:
        acc = v[lo];
        for (size_t i = lo + 1; i <= hi; i++)
            if (v[i] > acc || isnan(acc)) acc = v[i];
        return acc;
    case FV_PQ_LAST_OT:
        return v[hi];
    case FV_PQ_COUNT_OT:
        return (double)(hi - lo + 1);
    }
    return NAN;
}

static int eval(const struct fv_pe_query *q, const struct fv_pq_node *e, struct fv_pe_result *r,
                char *err, size_t errlen);

/* A selector, instant (f < 0: the last sample within the lookback) or under a range
 * function f. */
static int eval_sel(const struct fv_pe_query *q, const struct fv_pq_node *sel, int f,
                    struct fv_pe_result *r, char *err, size_t errlen)
{
    int64_t window = f < 0 ? FV_PE_LOOKBACK_MS : sel->range_ms;
    int64_t from = q->start > INT64_MIN + window ? q->start - window + 1 : INT64_MIN;
    struct fv_pe_raw *raw = NULL;
    size_t nraw = 0;
    int rc = q->fetch(q->arg, sel, from, q->end, &raw, &nraw, err, errlen);
    if (rc) return rc;
    if (q->max_series && nraw > q->max_series) {
        snprintf(err, errlen, "the query selects %zu series, more than the limit of %zu", nraw,
                 q->max_series);
        free_raws(raw, nraw);
        return FV_ELIMIT;
    }
    size_t ns = fv_pe_steps(q);
    if (q->max_points && nraw > q->max_points / ns) {
        snprintf(err, errlen,
                 "the query would hold %zu series of %zu points, more than the limit of %zu "
                 "points; use a larger step or fewer series",
                 nraw, ns, q->max_points);
        free_raws(raw, nraw);
        return FV_ELIMIT;
    }
    r->s = nraw ? calloc(nraw, sizeof *r->s) : NULL;
    if (nraw && r->s == NULL) {
        free_raws(raw, nraw);
        return FV_ENOMEM;
    }
    for (size_t i = 0; i < nraw; i++) {
        struct fv_pe_raw *x = &raw[i];
        struct fv_pe_series *s = &r->s[r->nseries];
        s->v = nan_steps(ns);
        if (s->v == NULL) {
            free_raws(raw, nraw);
            return FV_ENOMEM;
        }
        r->nseries++;
        s->l = x->l;
        if (f >= 0) s->l.name[0] = '\0';
        size_t lo = 0, hi = 0; /* window: [lo, hi) */
        for (size_t k = 0; k < ns; k++) {
            int64_t t = q->start + (int64_t)k * q->step;
            int64_t wfrom = t > INT64_MIN + window ? t - window : INT64_MIN;
            while (hi < x->n && x->t[hi] <= t)
                hi++;
            while (lo < hi && x->t[lo] <= wfrom)
                lo++;
            if (lo == hi) continue;
            if (f < 0)
                s->v[k] = x->v[hi - 1];
            else
                s->v[k] = over_time((enum fv_pq_func)f, x->t, x->v, lo, hi - 1, wfrom, t);
        }
    }
    free_raws(raw, nraw);
    return FV_OK;
}

static void group_labels(const struct fv_pq_node *e, const struct fv_pe_labels *in,
                         struct fv_pe_labels *out)
{
    memset(out, 0, sizeof *out);
    int sig = (e->keep >> FV_PQ_L_SIGNAL) & 1, dev = (e->keep >> FV_PQ_L_DEVICE) & 1;
    if (e->without) {
        sig = !sig;
        dev = !dev;
    }
    if (sig) memcpy(out->signal, in->signal, sizeof out->signal);
    if (dev) memcpy(out->device, in->device, sizeof out->device);
}

static int eval_agg(const struct fv_pe_query *q, const struct fv_pq_node *e, struct fv_pe_result *r,
                    char *err, size_t errlen)
{
    struct fv_pe_result in = {0};
    int rc = eval(q, e->arg, &in, err, errlen);
    if (rc) {
        fv_pe_free(&in);
        return rc;
    }
    size_t ns = fv_pe_steps(q);
    size_t *grp = in.nseries ? malloc(in.nseries * sizeof *grp) : NULL;
    r->s = in.nseries ? calloc(in.nseries, sizeof *r->s) : NULL;
    if (in.nseries && (grp == NULL || r->s == NULL)) {
        free(grp);
        fv_pe_free(&in);
        return FV_ENOMEM;
    }
    for (size_t i = 0; i < in.nseries; i++) {
        struct fv_pe_labels l;
        group_labels(e, &in.s[i].l, &l);
        size_t g = 0;
        while (g < r->nseries && memcmp(&r->s[g].l, &l, sizeof l) != 0)
            g++;
        if (g == r->nseries) {
            r->s[g].l = l;
            r->s[g].v = nan_steps(ns);
            if (r->s[g].v == NULL) {
                free(grp);
                fv_pe_free(&in);
                return FV_ENOMEM;
            }
            r->nseries++;
        }
        grp[i] = g;
    }
    double *cnt = calloc(r->nseries ? r->nseries : 1, sizeof *cnt);
    if (cnt == NULL) {
        free(grp);
        fv_pe_free(&in);
        return FV_ENOMEM;
    }
    for (size_t k = 0; k < ns; k++) {
        memset(cnt, 0, (r->nseries ? r->nseries : 1) * sizeof *cnt);
        for (size_t i = 0; i < in.nseries; i++) {
            double x = in.s[i].v[k];
            if (isnan(x)) continue;
            double *acc = &r->s[grp[i]].v[k];
            double c = ++cnt[grp[i]];
            switch (e->agg) {
            case FV_PQ_SUM:
                *acc = c == 1 ? x : *acc + x;
                break;
            case FV_PQ_AVG:
                *acc = c == 1 ? x : *acc + (x - *acc) / c;
                break;
            case FV_PQ_MIN:
                *acc = c == 1 || x < *acc ? x : *acc;
                break;
            case FV_PQ_MAX:
                *acc = c == 1 || x > *acc ? x : *acc;
                break;
            case FV_PQ_COUNT:
                *acc = c;
                break;
            }
        }
    }
    free(cnt);
    free(grp);
    fv_pe_free(&in);
    return FV_OK;
}

static double arith(char op, double a, double b)
{
    switch (op) {
    case '+':
        return a + b;
    case '-':
        return a - b;
    case '*':
        return a * b;
    default:
        return a / b;
    }
}

static int eval(const struct fv_pe_query *q, const struct fv_pq_node *e, struct fv_pe_result *r,
                char *err, size_t errlen)
{
    size_t ns = fv_pe_steps(q);
    memset(r, 0, sizeof *r);
    switch (e->kind) {
    case FV_PQ_NUM:
        r->scalar = 1;
        r->sv = malloc(ns * sizeof *r->sv);
        if (r->sv == NULL) return FV_ENOMEM;
        for (size_t k = 0; k < ns; k++)
            r->sv[k] = e->num;
        return FV_OK;
    case FV_PQ_SEL:
        return eval_sel(q, e, -1, r, err, errlen);
    case FV_PQ_FUNC:
        return eval_sel(q, e->arg, (int)e->func, r, err, errlen);
    case FV_PQ_AGG:
        return eval_agg(q, e, r, err, errlen);
    case FV_PQ_NEG: {
        int rc = eval(q, e->arg, r, err, errlen);
        if (rc) return rc;
        for (size_t k = 0; r->scalar && k < ns; k++)
            r->sv[k] = -r->sv[k];
        for (size_t i = 0; i < r->nseries; i++) {
            r->s[i].l.name[0] = '\0';
            for (size_t k = 0; k < ns; k++)
                r->s[i].v[k] = -r->s[i].v[k];
        }
        return FV_OK;
    }
    case FV_PQ_BIN: {
        struct fv_pe_result a = {0}, b = {0};
        int rc = eval(q, e->lhs, &a, err, errlen);
        if (rc == FV_OK) rc = eval(q, e->rhs, &b, err, errlen);
        if (rc) {
            fv_pe_free(&a);
            fv_pe_free(&b);
            return rc;
        }
        /* the parser allows no vector-vector arithmetic: one side is a scalar */
        struct fv_pe_result *vec = a.scalar ? &b : &a, *sc = a.scalar ? &a : &b;
        for (size_t k = 0; vec->scalar && k < ns; k++)
            vec->sv[k] = arith(e->op, a.sv[k], b.sv[k]);
        for (size_t i = 0; i < vec->nseries; i++) {
            vec->s[i].l.name[0] = '\0';
            for (size_t k = 0; k < ns; k++) {
                double x = vec->s[i].v[k];
                if (isnan(x)) continue; /* absent stays absent */
                vec->s[i].v[k] =
                    vec == &a ? arith(e->op, x, sc->sv[k]) : arith(e->op, sc->sv[k], x);
            }
        }
        *r = *vec;
        memset(vec, 0, sizeof *vec);
        fv_pe_free(sc);
        return FV_OK;
    }
    }
    return FV_EINVAL;
}

int fv_pe_eval(const struct fv_pe_query *q, const struct fv_pq_node *e, struct fv_pe_result *res,
               char *err, size_t errlen)
{
    int rc = eval(q, e, res, err, errlen);
    if (rc) fv_pe_free(res);
    return rc;
}
