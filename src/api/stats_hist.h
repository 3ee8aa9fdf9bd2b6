/*
 * stats_hist.h - the server's own counters over time, for the console's fleet page
 * (GET /api/v1/stats/history, docs/api.md): a ring of samples of the ingest counters
 * (gateway/metrics.h) taken every FV_STATS_INTERVAL_MS, the last FV_STATS_SAMPLES kept.
 * Counters only (connections, devices, records, acks, errors): no personal data, so a
 * valid token is enough (no purpose, no audit entry), like /metrics.
 *
 * Threads: the API thread only (sampled from its housekeeping, read by its requests); the
 * counters it reads are atomic (metrics.h), the fleet's size is read as api.c does.
 */
#ifndef FV_API_STATS_HIST_H
#define FV_API_STATS_HIST_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/fleet.h"
#include "gateway/metrics.h"

#define FV_STATS_INTERVAL_MS 2000
#define FV_STATS_SAMPLES     1800 /* an hour */

struct fv_stats_sample {
    uint64_t t_ms;
    uint64_t connections, devices, messages, records, datums, acks, errors, rejected, duplicates;
};

struct fv_stats_hist {
    struct fv_stats_sample s[FV_STATS_SAMPLES];
    size_t next, n;   /* the slot written next; samples held */
    uint64_t last_ms; /* when the last sample was taken */
};

/* Takes a sample when FV_STATS_INTERVAL_MS has passed since the last one (or none was
 * taken yet). */
void fv_stats_hist_tick(struct fv_stats_hist *h, const struct fv_metrics *m,
                        const struct fv_fleet *fleet, uint64_t now_ms);

struct json_t;
/* {"interval_ms": N, "samples": [{"t": MS, "connections": N, ...}, ...]}, oldest first,
 * those taken after since_ms; NULL when out of memory. */
struct json_t *fv_stats_hist_json(const struct fv_stats_hist *h, uint64_t since_ms);

struct fv_api_view;
struct fv_http_response;
/* GET /api/v1/stats/history[?since=MS] (the caller authenticated the token): v->stats as
 * JSON; 404 without a history, 500 out of memory. */
void fv_api_stats_history(const struct fv_api_view *v, struct fv_http_response *out);

#endif
