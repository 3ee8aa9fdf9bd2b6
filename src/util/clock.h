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

/* The CLOCK_MONOTONIC instant mono_ns (as fv_mono_ns gives) as a timespec: the deadline of a
 * pthread_cond_timedwait on a condition variable made with that clock. */
static inline struct timespec fv_mono_timespec(uint64_t mono_ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(mono_ns / 1000000000u);
    ts.tv_nsec = (long)(mono_ns % 1000000000u);
    return ts;
}

#endif
