/*
 * http.h - the API's HTTP transport (libwebsockets): turns each request into a call of
 * fv_api_handle (api.h) and sends its response, whole or streamed with chunked encoding (a
 * large result never sits in memory whole: the producer runs again only once the previous
 * piece was written).
 *
 * Threads: the thread that services the lws context holding the API vhost: the server's API
 * thread (server/apiloop.h), never the ingest loop. Parked answers are woken by the audit
 * syncer through that context (LWS_CALLBACK_EVENT_WAIT_CANCELLED).
 */
#ifndef FV_API_HTTP_H
#define FV_API_HTTP_H

#include <libwebsockets.h>

#include "api/api.h"
#include "api/stats_hist.h"
#include "gateway/metrics.h"
#include "util/map.h"

/* The API vhost's user pointer (vi.user): the view every request starts from (its query is
 * set per request) and the counters of requests. Owned by the caller, outliving the vhost. */
struct fv_http_ctx {
    struct fv_api_view view;
    struct fv_metrics *metrics;  /* http_requests, http_unauthorized, http_auth_throttled */
    struct fv_map auth_failures; /* client address -> struct fv_bucket* (H1) */
    unsigned parked;             /* responses waiting for their audit entries (H2) */
    unsigned waiting;            /* responses not known yet (H3) */
    struct fv_stats_hist stats;  /* counters over time (stats_hist.h), sampled by the loop */
};

/* H2: a response whose request wrote audit entries (the guard's decision, admin actions) is
 * held, headers and all, until those entries are durable (privacy/audit.h A13: the log syncs
 * many entries at once on its own thread, and wakes the loop); if the log fails meanwhile,
 * the answer is a 500 instead. So an access is on disk before its data is released, and no
 * request makes the loop wait for a disk. The decision is written before the query runs, so
 * its sync overlaps the query; a one-subject read's access.result (rows and bytes only, after
 * the query) does not hold the answer (fv_guard_gate_seq), a fleet read's (the subjects
 * served, G12) does; that result is appended lazily (audit.h A13: synced with the next
 * decision), and a parked answer asks the syncer for what it waits on (fv_audit_need). */

/* H3: a response whose wait is set (api.h: an api node's request to the shards' owners,
 * server/clusterapi.h Q9) is held without a byte sent while the API thread serves other
 * requests; each wake of the loop (fv_loopref_wake: an owner's answer came, a deadline
 * passed) has every waiting response call its wait, and the one done goes out as any other
 * (its first piece, H2's parking for the audit entries its wait wrote). A client that
 * disconnects meanwhile is noticed within FV_HTTP_WAIT_CHECK_MS (lws reads nothing from a
 * connection whose response is being made: the transport looks at the socket) and the state
 * is freed with the connection (free_ctx). A streamed response whose producer answers
 * FV_HTTP_MORE_LATER (api.h: its next piece asked for, not here yet) waits the same way:
 * nothing written, its producer called again at each wake. */
#define FV_HTTP_WAIT_CHECK_MS 200

/* H1: failed authentications are limited per client address: a token bucket of
 * FV_HTTP_AUTH_FAIL_RATE per second, burst FV_HTTP_AUTH_FAIL_BURST, takes one token per 401;
 * while it is empty the address gets 429 for any request without a valid token, before
 * anything else is done (no audit entry, no sampling); requests with a valid token are
 * served as usual. At most FV_HTTP_AUTH_ADDRS addresses are tracked (then all are
 * forgotten). */
#define FV_HTTP_AUTH_FAIL_RATE  5.0
#define FV_HTTP_AUTH_FAIL_BURST 20.0
#define FV_HTTP_AUTH_ADDRS      4096

/* A POST's body (read whole before the request is handled) may be at most this long; a
 * longer one is answered 413. */
#define FV_HTTP_BODY_MAX (64u << 10)

/* Frees what the transport keeps in hc (not hc itself). */
void fv_http_ctx_free(struct fv_http_ctx *hc);

/* The protocol table for lws_create_vhost. */
const struct lws_protocols *fv_http_protocols(void);

#endif
