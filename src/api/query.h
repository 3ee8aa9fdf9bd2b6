/*
 * query.h - the store's query endpoints (docs/operations.md, "Queries"):
 *
 *   GET /api/v1/query?device=ID[&signals=A,B][&from=T][&to=T][&step=S&agg=F[,F...]]
 *                    [&format=json|csv][&limit=N]
 *       raw frames of one device (JSON rows {"t": ms, "Signal": value, ...}, or CSV), or,
 *       with agg, one row per bucket of step (aligned to multiples of step since the epoch;
 *       without step, one bucket for the whole range) with min/max/avg/sum/count/first/last
 *       per signal. Times: epoch milliseconds or RFC 3339. Responses stream in chunks.
 *   GET /api/v1/fleet?signal=NAME&at=T[&lookback=D][&format=json|csv]
 *       every device's last value of one signal at or before T (within lookback, default 1 h).
 *
 * Parsing helpers are exposed for the CLI and the tests. API thread only (server/apiloop.h).
 */
#ifndef FV_API_QUERY_H
#define FV_API_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "api/api.h"

/* Epoch milliseconds, or RFC 3339 ("2026-11-25T06:00:00.250Z", "...+01:00"). */
int fv_parse_time_ms(const char *s, int64_t *out);
/* "500ms", "10s", "5m", "2h", "1d", or plain milliseconds; > 0. */
int fv_parse_span_ms(const char *s, int64_t *out);

/* ctx: the authenticated requester (privacy/guard.h); the read is decided and audited here
 * once the request is understood. */
/* Appends a value of signal field at time t as JSON (csv = 0) or as a CSV cell, as ctx may
 * see it (obligations of privacy/guard.h, fv_guard_oblige; ctx NULL: as stored). Doubles
 * print exactly (util/fmt.h). */
int fv_put_value(struct fv_buf *b, const struct fv_guard_ctx *ctx, uint32_t field, int64_t t,
                 const struct fv_value *v, int csv);
/* G8: loads into ctx the times at which device's current subject's location is withheld
 * around [from, to] (nothing unless ctx's read is location-private); fails closed. */
void fv_api_load_withheld(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *device,
                          int64_t from, int64_t to);
/* Does a read of these signals (n = 0: all) touch a place (wire/places.h)? Only then are
 * the withheld times worth loading. */
int fv_api_any_place(const uint32_t *fields, size_t n);
/* G5 for an answer built whole in memory (out->body, rows of it): checked against what the
 * quota leaves before it is sent; within it, counted (fv_guard_done), else replaced by a
 * 403 naming the quota (audited). */
struct fv_guard_served;
void fv_api_quota_send(const struct fv_api_view *v, struct fv_guard_ctx *ctx, uint64_t rows,
                       const struct fv_guard_served *served, struct fv_http_response *out);

void fv_api_query(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                  struct fv_http_response *out);
void fv_api_fleet(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                  struct fv_http_response *out);

#endif
