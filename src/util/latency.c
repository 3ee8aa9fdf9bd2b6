/*
 * latency.c - see latency.h.
 */
#include "util/latency.h"

const double fv_latency_bounds_ms[FV_LATENCY_BOUNDS] = {0.1, 0.25, 0.5, 1,   2.5, 5,
                                                        10,  25,   50,  100, 250, 1000};

int fv_latency_bucket(uint64_t ns)
{
    double ms = (double)ns / 1e6;
    int b = 0;
    while (b < FV_LATENCY_BOUNDS && ms > fv_latency_bounds_ms[b])
        b++;
    return b;
}

void fv_latency_add(struct fv_latency *h, uint64_t ns)
{
    h->n[fv_latency_bucket(ns)]++;
    h->sum_ns += ns;
}
