/*
 * promapi.h - the Prometheus-compatible query API for Grafana (docs/prometheus.md):
 *
 *   GET|POST /prometheus/api/v1/query?query=EXPR[&time=T]
 *   GET|POST /prometheus/api/v1/query_range?query=EXPR&start=T&end=T&step=S
 *   GET|POST /prometheus/api/v1/labels, /label/NAME/values, /series?match[]=SEL,
 *            /metadata, /status/buildinfo
 *
 * Answers have the Prometheus HTTP API's JSON shapes ({"status":"success","data":...} or
 * {"status":"error","errorType":...,"error":...}). A POST's form body is read as more query
 * parameters. Every read of personal data is decided and audited by the privacy guard like
 * /api/v1/query: the token is the Authorization Bearer header, purpose and ticket are
 * query parameters (Grafana's "custom query parameters"). Place-revealing signals
 * (wire/places.h) are not served here: named exactly they are refused, matched by a regular
 * expression they are left out.
 *
 * Threading: the API thread only (server/apiloop.h), like api.h.
 */
#ifndef FV_API_PROMAPI_H
#define FV_API_PROMAPI_H

#include "api/api.h"
#include "api/promeval.h"
#include "api/promql.h"

/* Points per series at most (as Prometheus), series per answer at most. */
#define FV_PROM_MAX_POINTS 11000
#define FV_PROM_MAX_SERIES 10000
/* Series x steps one selector's result may hold (the JSON answer is built in memory: a
 * point costs about 150 bytes there). */
#define FV_PROM_MAX_POINTS_HELD 2000000
/* Samples read from the store for one query at most. */
#define FV_PROM_MAX_SAMPLES 20000000

/* path: what follows "/prometheus" ("/api/v1/query", ...). */
void fv_api_prometheus(const struct fv_api_view *v, const char *method, const char *path,
                       const char *authorization, struct fv_http_response *out);

/* ---- across a cluster (docs/cluster.md, "Prometheus through an api node") ----------------
 * An api node checks a request (fv_prom_req_parse: its 400s are the single node's), asks
 * every shard's owner for the raw series of its selectors (fv_api_prometheus_shard: the
 * owner decides, obliges and audits with this module's code, for its shard's devices), and
 * evaluates the expression over their joined series (fv_prom_answer). */

/* The endpoints that read the store: an api node asks the shards' owners for them. */
enum fv_prom_kind { FV_PROM_NONE, FV_PROM_QUERY, FV_PROM_RANGE, FV_PROM_SERIES, FV_PROM_DEVICES };
enum fv_prom_kind fv_prom_kind(const char *path);

struct fv_prom_req {
    enum fv_prom_kind kind;
    struct fv_pe_query q; /* start, end, step (a series request: its start and end) */
    struct fv_pq_node *e; /* the expression or match[] selector; NULL for FV_PROM_DEVICES */
    int reads;            /* e has a selector (else "1+1": nothing is read) */
};
/* The request's parameters (query: the URL's and a POST's form) checked and parsed: FV_OK,
 * or the single node's answer (400 bad_data, 500) in out. Free with fv_prom_req_free. */
int fv_prom_req_parse(const char *query, enum fv_prom_kind kind, struct fv_prom_req *r,
                      struct fv_http_response *out);
void fv_prom_req_free(struct fv_prom_req *r);
/* e's selectors, in the order of a raw series encoding (promraw.h); *out freed by the
 * caller. FV_OK or FV_ENOMEM. */
int fv_prom_selectors(const struct fv_pq_node *e, const struct fv_pq_node ***out, size_t *n);
/* r answered in Prometheus's shape from the series fetch gives (the api node's: the
 * owners' joined; fetch's sel is NULL for FV_PROM_DEVICES, whose series name the devices). */
void fv_prom_answer(struct fv_prom_req *r, fv_pe_fetch fetch, void *arg,
                    struct fv_http_response *out);
/* A shard's owner (v->keep: its shard): the raw series of a request (path as
 * fv_api_prometheus's, v->query its parameters) for the principal and role the api node
 * authenticated, decided, obliged, audited and counted against the quota as a single
 * node's request is, for its shard's devices (docs/formats.md, "Raw series of a Prometheus
 * query"), or an error in Prometheus's shape. *here 0: a request of one device
 * (device="ID" in every selector) that this shard does not hold (404; nothing decided or
 * audited). */
void fv_api_prometheus_shard(const struct fv_api_view *v, const char *path, const char *principal,
                             const char *role, int *here, struct fv_http_response *out);
/* The request of a principal the api node authenticated answered by this node itself (no
 * shard holds the device it names), as fv_api_prometheus would without prom_forward. */
void fv_api_prometheus_as(const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                          const char *path, struct fv_http_response *out);

#endif
