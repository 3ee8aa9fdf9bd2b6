/*
 * query_agg.c - downsampling for /api/v1/query?agg=...: rows grouped into buckets of `step`
 * ms aligned to multiples of step since the epoch (one bucket for the whole range without
 * step), with min, max, avg, sum (over numeric values), count, first and last per signal.
 *
 * Invariants: rows arrive in time order, so a bucket is complete once a row of a later one
 * arrives; at most one bucket is open (q->open) and its first/last values are owned copies,
 * freed by fv_query__agg_reset. Consent (G4) and location privacy (G7, G8, G10:
 * fv_guard_oblige) apply before a value is counted, as for raw rows: a withheld value is
 * not counted, first/last hold the value as served.
 *
 * Aggregate-only roles (privacy/policy.h P8): buckets of at least the role's step, whole
 * (the range is widened to bucket boundaries), no first/last/min/max, and a value of fewer
 * than the role's minimum records is not served (counted in "suppressed").
 *
 * Threading: the API thread only (query.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/query_int.h"
#include "privacy/policy.h"
#include "util/err.h"
#include "util/fmt.h"

const char *const fv_query__ag_names[7] = {"min", "max", "avg", "sum", "count", "first", "last"};

static int numeric(const struct fv_value *v, double *d)
{
    switch (v->kind) {
    case FV_VK_DOUBLE:
        *d = v->u.d;
        return isfinite(v->u.d);
    case FV_VK_INT:
    case FV_VK_BOOL:
        *d = (double)v->u.i;
        return 1;
    default:
        return 0;
    }
}

void fv_query__agg_reset(struct qctx *q)
{
    for (size_t j = 0; j < q->nfields; j++) {
        fv_value_clear(&q->ag[j].first);
        fv_value_clear(&q->ag[j].last);
        memset(&q->ag[j], 0, sizeof q->ag[j]);
    }
    q->open = 0;
}

int fv_query__single_agg(unsigned a)
{
    return a && (a & (a - 1)) == 0;
}

static int put_agg(struct fv_buf *b, const struct agg *g, unsigned which, int csv)
{
    switch (which) {
    case AG_COUNT:
        return fv_query__putf(b, "%llu", (unsigned long long)g->count);
    case AG_SUM:
        return g->nnum ? fv_buf_put_double(b, g->sum) : (csv ? FV_OK : fv_buf_append(b, "null", 4));
    case AG_AVG:
        return g->nnum ? fv_buf_put_double(b, g->sum / (double)g->nnum)
                       : (csv ? FV_OK : fv_buf_append(b, "null", 4));
    case AG_MIN:
        return g->nnum ? fv_buf_put_double(b, g->min) : (csv ? FV_OK : fv_buf_append(b, "null", 4));
    case AG_MAX:
        return g->nnum ? fv_buf_put_double(b, g->max) : (csv ? FV_OK : fv_buf_append(b, "null", 4));
    case AG_FIRST: /* obligations were applied as the value was taken */
        return fv_put_value(b, NULL, 0, 0, &g->first, csv);
    default:
        return fv_put_value(b, NULL, 0, 0, &g->last, csv);
    }
}

int fv_query__emit_bucket(struct qctx *q, struct fv_buf *b)
{
    if (!q->open) return FV_OK;
    /* P8: a value of fewer records than the role's minimum is not served; a bucket left
     * with none is not either. */
    int any = 0;
    for (size_t j = 0; j < q->nfields; j++) {
        if (q->ag[j].count && q->ag[j].count < q->min_records) {
            fv_value_clear(&q->ag[j].first);
            fv_value_clear(&q->ag[j].last);
            memset(&q->ag[j], 0, sizeof q->ag[j]);
            q->suppressed++;
        }
        any |= q->ag[j].count != 0;
    }
    if (!any && q->min_records) {
        fv_query__agg_reset(q);
        return FV_OK;
    }
    if (!fv_query__row_room(q)) {
        fv_query__agg_reset(q);
        return FV_OK;
    }
    size_t mark = b->len;
    int rc;
    if (q->csv) {
        rc = fv_query__putf(b, "%lld", (long long)q->bucket);
        for (size_t j = 0; rc == FV_OK && j < q->nfields; j++)
            for (unsigned k = 0; rc == FV_OK && k < 7; k++)
                if (q->aggs & (1u << k)) {
                    rc = fv_buf_append(b, ",", 1);
                    if (rc == FV_OK && q->ag[j].count) rc = put_agg(b, &q->ag[j], 1u << k, 1);
                }
        if (rc == FV_OK) rc = fv_buf_append(b, "\n", 1);
    } else {
        rc = fv_query__putf(b, "%s{\"t\":%lld", q->rows ? ",\n" : "", (long long)q->bucket);
        for (size_t j = 0; rc == FV_OK && j < q->nfields; j++) {
            if (q->ag[j].count == 0) continue;
            rc = fv_buf_append(b, ",\"", 2);
            if (rc == FV_OK) rc = fv_query__put_label(b, q->fields[j]);
            if (rc == FV_OK) rc = fv_buf_append(b, "\":", 2);
            if (rc == FV_OK && fv_query__single_agg(q->aggs)) {
                rc = put_agg(b, &q->ag[j], q->aggs, 0);
                continue;
            }
            if (rc == FV_OK) rc = fv_buf_append(b, "{", 1);
            int first = 1;
            for (unsigned k = 0; rc == FV_OK && k < 7; k++)
                if (q->aggs & (1u << k)) {
                    rc = fv_query__putf(b, "%s\"%s\":", first ? "" : ",", fv_query__ag_names[k]);
                    if (rc == FV_OK) rc = put_agg(b, &q->ag[j], 1u << k, 0);
                    first = 0;
                }
            if (rc == FV_OK) rc = fv_buf_append(b, "}", 1);
        }
        if (rc == FV_OK) rc = fv_buf_append(b, "}", 1);
    }
    if (rc == FV_OK) fv_query__row_done(q, b, mark);
    fv_query__agg_reset(q);
    return rc;
}

static int64_t bucket_of(const struct qctx *q, int64_t t)
{
    if (q->step == 0) return q->from;
    int64_t r = t % q->step;
    if (r < 0) r += q->step;
    return t < INT64_MIN + r ? INT64_MIN : t - r; /* the first bucket would start before time */
}

int fv_query__add_to_buckets(struct qctx *q, const struct fv_store_chunk *ch, struct fv_buf *b)
{
    int rc = FV_OK;
    for (size_t i = 0; i < ch->n && rc == FV_OK; i++) {
        if (!fv_guard_in_consent(&q->ctx, ch->t[i])) continue; /* G4 */
        int64_t bk = bucket_of(q, ch->t[i]);
        if (q->open && bk != q->bucket) rc = fv_query__emit_bucket(q, b);
        if (rc) break;
        q->bucket = bk;
        q->open = 1;
        for (size_t j = 0; j < ch->ncols && rc == FV_OK; j++) {
            struct fv_value tmp;
            const struct fv_value *v =
                fv_guard_oblige(&q->ctx, ch->field[j], ch->t[i], &ch->col[j][i], &tmp);
            if (v->kind == FV_VK_NONE) continue;
            if (v == &tmp && v->kind == FV_VK_INVALID) continue; /* withheld (G7, G8, G10) */
            struct agg *g = &q->ag[j];
            double d;
            if (numeric(v, &d)) {
                if (g->nnum == 0 || d < g->min) g->min = d;
                if (g->nnum == 0 || d > g->max) g->max = d;
                g->sum += d;
                g->nnum++;
            }
            if (g->count == 0 && (q->aggs & AG_FIRST)) rc = fv_value_copy(&g->first, v);
            if (rc == FV_OK && (q->aggs & AG_LAST)) {
                fv_value_clear(&g->last);
                rc = fv_value_copy(&g->last, v);
            }
            g->count++;
        }
    }
    return rc;
}

/* "1h", "15m", "90s" or "1500ms": the shortest exact form, for messages. */
static void span_text(uint64_t ms, char *out, size_t len)
{
    if (ms % 3600000 == 0)
        snprintf(out, len, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms % 60000 == 0)
        snprintf(out, len, "%llum", (unsigned long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(out, len, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(out, len, "%llums", (unsigned long long)ms);
}

void fv_query__agg_limits(const struct fv_api_view *v, struct fv_guard_ctx *ctx, struct qctx *q)
{
    uint64_t step, records;
    if (v->guard == NULL || !q->aggs ||
        !fv_policy_aggregate_limits(v->guard->policy, ctx->role, &step, &records))
        return;
    char st[32];
    span_text(step, st, sizeof st);
    if (q->aggs & (AG_FIRST | AG_LAST | AG_MIN | AG_MAX)) {
        snprintf(ctx->refuse, sizeof ctx->refuse,
                 "aggregate limit: role %s may not use first, last, min or max (each is one "
                 "record of one subject); count, sum and avg over at least %llu records are "
                 "served",
                 ctx->role, (unsigned long long)records);
        return;
    }
    if (q->step <= 0 || (uint64_t)q->step < step) {
        snprintf(ctx->refuse, sizeof ctx->refuse,
                 "aggregate limit: role %s needs step=%s or more (buckets of at least %s)",
                 ctx->role, st, st);
        return;
    }
    /* Whole buckets only: a range cut inside a bucket would let two requests that differ
     * by one record tell its value (differencing). */
    int64_t r;
    if (q->from != INT64_MIN) {
        r = q->from % q->step;
        if (r < 0) r += q->step;
        q->from = q->from >= INT64_MIN + r ? q->from - r : INT64_MIN;
    }
    if (q->to != INT64_MAX) {
        r = q->to % q->step;
        if (r < 0) r += q->step;
        q->to = q->to - r <= INT64_MAX - q->step ? q->to - r + q->step - 1 : INT64_MAX;
    }
    q->min_records = records;
}

int fv_query__parse_aggs(const char *s, unsigned *out)
{
    *out = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        unsigned k = 0;
        while (k < 7 && strcmp(fv_query__ag_names[k], t) != 0)
            k++;
        if (k == 7) return FV_EINVAL;
        *out |= 1u << k;
    }
    return *out ? FV_OK : FV_EINVAL;
}
