/*
 * api.h - the HTTP API, independent of the transport: a request (method, path, query,
 * Authorization header) in, a response (status, content type, body) out. The gateway's
 * libwebsockets glue calls it on the event-loop thread, which owns the state it reads.
 *
 * Endpoints (docs/operations.md, "HTTP API"):
 *   GET /status                       liveness and summary (no token)
 *   GET /metrics                      Prometheus text (no token; holds no personal data)
 *   GET /api/v1/vehicles              known devices            (Bearer token)
 *   GET /api/v1/vehicles/{id}/state   latest value and time of every signal (Bearer token)
 *   GET /api/v1/signals/{name}/latest one signal's latest value on every vehicle (Bearer token)
 *   GET /api/v1/query, /api/v1/fleet  the store's queries (api/query.h)      (Bearer token)
 *   GET /api/v1/store                 parts, blocks, bytes, head, compaction  (Bearer token)
 *   POST /api/v1/store/compact        flush the head and compact everything  (Bearer token)
 * Errors are JSON {"error": "..."} with 400/401/404/405.
 */
#ifndef FV_API_API_H
#define FV_API_API_H

#include <stdint.h>

#include "gateway/fleet.h"
#include "gateway/metrics.h"
#include "util/buf.h"
#include "wal/wal.h"

struct fv_store;
struct fv_keystore;

struct fv_api_view {
    const struct fv_fleet *fleet;
    const struct fv_metrics *metrics;
    struct fv_wal *wal;
    const char *admin_token; /* the Bearer token that opens /api/ */
    uint64_t start_ms;
    struct fv_store *store;
    struct fv_keystore *keys;
    const char *query; /* the URL's query string (after '?'), or NULL */
};

/* A response is either whole (body) or streamed: when more is set, the transport sends
 * body, then calls more(ctx, buf) for each next piece until it returns 0 (done) or a
 * negative error (the connection is closed), and finally free_ctx(ctx). */
struct fv_http_response {
    int status;
    const char *content_type;
    int www_authenticate; /* add WWW-Authenticate: Bearer */
    struct fv_buf body;
    int (*more)(void *ctx, struct fv_buf *out);
    void (*free_ctx)(void *ctx);
    void *ctx;
};

void fv_api_handle(const struct fv_api_view *v, const char *method, const char *path,
                   const char *authorization, struct fv_http_response *out);

/* Renders a value as JSON text appended to out (used by the API and inspect). */
int fv_api_value_json(const struct fv_value *v, struct fv_buf *out);

/* Formats epoch milliseconds as RFC 3339 UTC with milliseconds into buf (>= 25 bytes). */
void fv_format_time_ms(uint64_t ms, char *buf, size_t len);

#endif
