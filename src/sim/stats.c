/*
 * stats.c - the simulator's statistics: the ack-latency histogram and its quantiles, the
 * progress line, peak memory, and the final JSON line (fv_sim_stats_print_json).
 *
 * Histogram: log-linear over microseconds, exact below HIST_EXACT us, then HIST_SUB buckets
 * per power of two (<= 1.6 % error); a quantile is the midpoint of the bucket it falls in.
 *
 * Threading: the run's thread (simulate_int.h); fv_sim_stats_print_json on any thread.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <sys/resource.h>

#include "sim/simulate_int.h"

void fv_sim__hist_add(struct run *r, uint64_t us)
{
    size_t i;
    if (us < HIST_EXACT) {
        i = (size_t)us;
    } else {
        int msb = 63 - __builtin_clzll(us); /* >= 7 */
        int shift = msb - 6;
        size_t sub = (size_t)(us >> shift) - HIST_SUB; /* 0..63 */
        i = HIST_EXACT + (size_t)(msb - 7) * HIST_SUB + sub;
        if (i >= HIST_N) i = HIST_N - 1;
    }
    r->hist[i]++;
    r->hist_n++;
}

/* Midpoint of bucket i, in microseconds. */
static double hist_value(size_t i)
{
    if (i < HIST_EXACT) return (double)i;
    size_t k = i - HIST_EXACT;
    int msb = (int)(k / HIST_SUB) + 7;
    int shift = msb - 6;
    double lo = (double)((uint64_t)(HIST_SUB + k % HIST_SUB) << shift);
    return lo + (double)(1ULL << shift) / 2.0;
}

double fv_sim__hist_quantile_ms(const struct run *r, double q)
{
    if (r->hist_n == 0) return 0;
    uint64_t want = (uint64_t)ceil(q * (double)r->hist_n);
    if (want == 0) want = 1;
    uint64_t cum = 0;
    for (size_t i = 0; i < HIST_N; i++) {
        cum += r->hist[i];
        if (cum >= want) return hist_value(i) / 1000.0;
    }
    return hist_value(HIST_N - 1) / 1000.0;
}

void fv_sim__progress(struct run *r, uint64_t now)
{
    if (r->log) fflush(r->log);
    if (!r->o->progress) return;
    const struct fv_sim_stats *st = r->st;
    fprintf(stderr,
            "simulate: %6.1fs connected %u/%u sent %" PRIu64 " acked %" PRIu64 " errors %" PRIu64
            " datums/s %" PRIu64 " unacked %" PRIu64 "%s\n",
            (double)(now - r->t0_ns) / 1e9, r->connected, r->n, st->sent, st->acked, st->errors,
            st->datums - r->prev_datums, r->outstanding, r->phase == PH_DRAIN ? " (draining)" : "");
    r->prev_datums = st->datums;
}

double fv_sim__peak_rss_mb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

void fv_sim_stats_print_json(const struct fv_sim_stats *st, FILE *f)
{
    fprintf(f,
            "{\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"datums\":%" PRIu64
            ",\"ack_p50_ms\":%.3f,\"ack_p99_ms\":%.3f"
            ",\"ack_max_ms\":%.3f,\"unacked\":%" PRIu64 ",\"resent\":%" PRIu64
            ",\"reconnects\":%" PRIu64 ",\"conn_failures\":%" PRIu64 ",\"paused\":%" PRIu64
            ",\"lagged\":%" PRIu64 ",\"dup_acks\":%" PRIu64 ",\"bad_replies\":%" PRIu64
            ",\"vehicles\":%u,\"connected_peak\":%u,\"elapsed_s\":%.3f,\"peak_rss_mb\":%.1f"
            ",\"interrupted\":%s,\"datums_sent\":%" PRIu64 ",\"sites\":%u,\"site_samples\":%" PRIu64
            ",\"backfilled\":%" PRIu64 ",\"commands\":%" PRIu64 ",\"commands_refused\":%" PRIu64
            ",\"rate_limited\":%" PRIu64 ",\"campaigns\":%" PRIu64 ",\"campaign_hits\":%" PRIu64
            ",\"clip_failures\":%" PRIu64 ",\"clips_uploaded\":%" PRIu64
            ",\"clips_resumed\":%" PRIu64 "}\n",
            st->sent, st->acked, st->errors, st->datums, st->ack_p50_ms, st->ack_p99_ms,
            st->ack_max_ms, st->unacked, st->resent, st->reconnects, st->conn_failures, st->paused,
            st->lagged, st->dup_acks, st->bad_replies, st->vehicles, st->connected_peak,
            st->elapsed_s, st->peak_rss_mb, st->interrupted ? "true" : "false", st->datums_sent,
            st->sites, st->site_samples, st->backfilled, st->commands, st->commands_refused,
            st->rate_limited, st->campaigns, st->campaign_hits, st->clip_failures,
            st->clips_uploaded, st->clips_resumed);
    fflush(f);
}
