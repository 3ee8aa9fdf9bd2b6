/* metrics.c - names for the metric label values in metrics.h (the latency histogram is
 * util/latency.h). */
#include <string.h>

#include "gateway/metrics.h"

const char *const fv_reject_names[FV_REJ_COUNT] = {
    "envelope", "payload",      "too_large",  "sender_mismatch",
    "topic",    "rate_limited", "text_frame", "storage",
};

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
