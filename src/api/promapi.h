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

#endif
