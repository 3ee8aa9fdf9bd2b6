/*
 * http.h - the API's HTTP transport (libwebsockets): turns each request into a call of
 * fv_api_handle (api.h) and sends its response, whole or streamed with chunked encoding (a
 * large result never sits in memory whole: the producer runs again only once the previous
 * piece was written).
 *
 * Threads: the thread that services the lws context holding the API vhost. Today that is
 * the ingest loop (one context); the handlers then run there and own what they read.
 */
#ifndef FV_API_HTTP_H
#define FV_API_HTTP_H

#include <libwebsockets.h>

#include "api/api.h"
#include "gateway/metrics.h"

/* The API vhost's user pointer (vi.user): the view every request starts from (its query is
 * set per request) and the counters of requests. Owned by the caller, outliving the vhost. */
struct fv_http_ctx {
    struct fv_api_view view;
    struct fv_metrics *metrics; /* http_requests, http_unauthorized */
};

/* The protocol table for lws_create_vhost. */
const struct lws_protocols *fv_http_protocols(void);

#endif
