/*
 * promapi_int.h - what the two halves of the Prometheus API share (promapi.h): promapi.c
 * (requests, evaluation, answers, routing) and promread.c (what an expression reads, the
 * decision, reading the store as the principal, and a shard's owner's raw answer for an api
 * node). Not for other modules. API thread only, as promapi.h.
 */
#ifndef FV_API_PROMAPI_INT_H
#define FV_API_PROMAPI_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api/promapi.h"
#include "api/promeval.h"
#include "api/promql.h"
#include "privacy/guard.h"

#define MAX_SIGNALS 512

/* What an expression reads (fv_prom__plan). */
struct plan {
    uint32_t sig[MAX_SIGNALS]; /* the signals any selector may read */
    size_t nsig;
    int64_t window;     /* the longest look back of a selector */
    const char *device; /* the one device every selector names (device="ID"), or NULL */
    int nsel, all_one;
    char err[200];
};

struct reader {
    const struct fv_api_view *v;
    struct fv_guard_ctx *ctx;
    const struct fv_device *one; /* a single-subject read's device, else NULL: the fleet */
    const struct plan *plan;
    struct fv_guard_served served;
    uint64_t rows, samples;
};

/* promapi.c: answers in Prometheus's shape; the quota checked before one is sent (G5). */
void fv_prom__error(struct fv_http_response *out, int status, const char *type, const char *msg);
void fv_prom__data(struct fv_http_response *out, json_t *data);
void fv_prom__quota_send(const struct fv_api_view *v, struct fv_guard_ctx *ctx, uint64_t rows,
                         const struct fv_guard_served *served, struct fv_http_response *out);

/* promread.c: the signals, look-back and device of e's selectors into p (zeroed); FV_EINVAL
 * with p->err for a place signal named exactly. */
int fv_prom__plan(struct plan *p, const struct fv_pq_node *e);
/* The decision (what /api/v1/query for one device, or /api/v1/fleet, would decide): FV_OK,
 * or the refusal answered in out. Sets rd->one for a single-subject read. */
int fv_prom__decide(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const struct plan *p,
                    struct reader *rd, const char *action, int64_t from, int64_t to,
                    struct fv_http_response *out);
/* The first time a request of kind reads (its decision's from): series asks [start, end];
 * the others look back the plan's longest window before start. */
static inline int64_t fv_prom__from(const struct plan *p, const struct fv_prom_req *r,
                                    enum fv_prom_kind kind)
{
    if (kind == FV_PROM_SERIES) return r->q.start;
    return r->q.start > INT64_MIN + p->window ? r->q.start - p->window : INT64_MIN;
}
/* promeval.h's fetch reading the store as rd's principal (arg: a struct reader). */
int fv_prom__fetch(void *arg, const struct fv_pq_node *sel, int64_t from, int64_t to,
                   struct fv_pe_raw **out, size_t *n, char *err, size_t errlen);
/* GET /label/device/values decided, read and audited; raw: a shard's owner's answer
 * (promraw.h), else the JSON one. */
void fv_prom__device_names(const struct fv_api_view *v, struct fv_guard_ctx *ctx, int raw,
                           struct fv_http_response *out);

#endif
