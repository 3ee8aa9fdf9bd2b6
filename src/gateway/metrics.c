/* metrics.c - names for the metric label values in metrics.h. */
#include <string.h>

#include "gateway/metrics.h"

const char *const fv_reject_names[FV_REJ_COUNT] = {
    "envelope", "payload",      "too_large",  "sender_mismatch",
    "topic",    "rate_limited", "text_frame", "storage",
};

const double fv_latency_bounds_ms[FV_LATENCY_BOUNDS] = {0.1, 0.25, 0.5, 1,   2.5, 5,
                                                        10,  25,   50,  100, 250, 1000};

void fv_latency_add(struct fv_latency *h, uint64_t ns)
{
    double ms = (double)ns / 1e6;
    int b = 0;
    while (b < FV_LATENCY_BOUNDS && ms > fv_latency_bounds_ms[b])
        b++;
    h->n[b]++;
    h->sum_ns += ns;
}

const char *const fv_metrics_topic_names[FV_TOPIC_SLOTS] = {"V", "alerts", "errors", "connectivity",
                                                            "other"};

int fv_metrics_topic_slot(const char *topic, size_t len)
{
    for (int i = 0; i < FV_TOPIC_SLOTS - 1; i++)
        if (strlen(fv_metrics_topic_names[i]) == len &&
            memcmp(fv_metrics_topic_names[i], topic, len) == 0)
            return i;
    return FV_TOPIC_SLOTS - 1;
}
