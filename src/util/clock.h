/* clock.h - wall-clock and monotonic time in milliseconds / nanoseconds. Thread-safe. */
#ifndef FV_UTIL_CLOCK_H
#define FV_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t fv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t fv_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
