/*
 * promeval.h - evaluates a parsed PromQL expression (promql.h) at the steps of a range
 * (an instant query is a range of one step), over samples a fetch callback supplies.
 *
 * Semantics follow Prometheus: an instant selector takes, at each step t, a series' last
 * sample in (t - 5m, t]; range functions look at the samples in (t - range, t]; rate and
 * increase extrapolate as Prometheus does (counter resets included); functions,
 * aggregations and arithmetic drop the metric name (__name__), selectors keep it.
 * A value absent at a step is NaN in fv_pe_series.v (not served).
 *
 * Contract: the evaluator owns nothing the callback returns once it has copied it; the
 * callback decides what may be read (the privacy guard is the caller's, promapi.c).
 * Reentrant: any thread (promapi.c calls it on the API thread).
 */
#ifndef FV_API_PROMEVAL_H
#define FV_API_PROMEVAL_H

#include <stddef.h>
#include <stdint.h>

#include "api/promql.h"

#define FV_PE_LOOKBACK_MS 300000

struct fv_pe_labels {
    char name[64];   /* __name__ ("": dropped) */
    char signal[64]; /* "": none */
    char device[80]; /* "": none */
};

/* Raw samples of one series, times ascending (the fetch callback's output). */
struct fv_pe_raw {
    struct fv_pe_labels l;
    size_t n, cap;
    int64_t *t;
    double *v;
};

/* Appends a sample to r (times must not go back). FV_OK or FV_ENOMEM. */
int fv_pe_raw_add(struct fv_pe_raw *r, int64_t t, double v);

/* fetch: the series sel selects, with their samples in [from, to] (ms). *out is an array the
 * evaluator frees (with each raw's arrays). Returns FV_OK, or an error with err set. */
typedef int (*fv_pe_fetch)(void *arg, const struct fv_pq_node *sel, int64_t from, int64_t to,
                           struct fv_pe_raw **out, size_t *n, char *err, size_t errlen);

struct fv_pe_series {
    struct fv_pe_labels l;
    double *v; /* one per step; NaN: no value */
};

struct fv_pe_result {
    int scalar;     /* 1: sv is the value at every step */
    double *sv;     /* scalar: one per step */
    size_t nseries; /* vector */
    struct fv_pe_series *s;
};

struct fv_pe_query {
    int64_t start, end, step; /* ms; step > 0; start <= end */
    size_t max_series;        /* per selector; 0: no limit */
    size_t max_points;        /* series x steps held per selector; 0: no limit */
    fv_pe_fetch fetch;
    void *arg;
};

/* Evaluates e at start, start + step, ... <= end. FV_OK and *res (free with fv_pe_free),
 * FV_ELIMIT (too many series or points, err says), FV_ENOMEM, or the fetch's error. */
int fv_pe_eval(const struct fv_pe_query *q, const struct fv_pq_node *e, struct fv_pe_result *res,
               char *err, size_t errlen);
void fv_pe_free(struct fv_pe_result *res);
/* The number of steps of q. */
size_t fv_pe_steps(const struct fv_pe_query *q);

#endif
