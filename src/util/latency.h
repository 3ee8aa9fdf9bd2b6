/*
 * latency.h - latency histograms with fixed buckets, shared by every histogram the server
 * exports (ack latency, WAL fsync latency): upper bounds in ms, fv_latency_bounds_ms; the
 * last slot counts what is over the last bound (Prometheus' +Inf).
 *
 * fv_latency_bucket is pure (any thread). A struct fv_latency's counters are atomic: any
 * thread may add to it and read it without a lock (a read is not a consistent snapshot of
 * all the buckets).
 */
#ifndef FV_UTIL_LATENCY_H
#define FV_UTIL_LATENCY_H

#include <stdint.h>

#define FV_LATENCY_BOUNDS 12
extern const double fv_latency_bounds_ms[FV_LATENCY_BOUNDS];

/* The slot of a duration: 0..FV_LATENCY_BOUNDS (FV_LATENCY_BOUNDS: over the last bound). */
int fv_latency_bucket(uint64_t ns);

struct fv_latency {
    _Atomic uint64_t n[FV_LATENCY_BOUNDS + 1];
    _Atomic uint64_t sum_ns;
};
void fv_latency_add(struct fv_latency *h, uint64_t ns);

#endif
