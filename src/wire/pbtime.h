/*
 * pbtime.h - internal to src/wire: protobuf Timestamps (telemetry.proto) <-> epoch ms, for
 * the payload codecs (payload.c, site.c). Not a contract outside src/wire. Pure.
 */
#ifndef FV_WIRE_PBTIME_H
#define FV_WIRE_PBTIME_H

#include <stdint.h>

#include "telemetry.pb-c.h"

/* Epoch ms of ts; 0 when it is absent or before 1970 (negative nanos count as 0). */
static inline uint64_t fv_pbtime_ms(const Fvpb__Timestamp *ts)
{
    if (ts == NULL || ts->seconds < 0) return 0;
    return (uint64_t)ts->seconds * 1000u + (uint64_t)(ts->nanos > 0 ? ts->nanos : 0) / 1000000u;
}

/* ms as a Timestamp (ts already initialised). */
static inline void fv_pbtime_set(Fvpb__Timestamp *ts, uint64_t ms)
{
    ts->seconds = (int64_t)(ms / 1000u);
    ts->nanos = (int32_t)(ms % 1000u) * 1000000;
}

#endif
