/* log.c - see log.h. The level is the only process-wide state: logging has no context. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "util/log.h"

static enum fv_log_level log_level = FV_LOG_INFO;

void fv_log_set_level(enum fv_log_level level)
{
    log_level = level;
}

enum fv_log_level fv_log_get_level(void)
{
    return log_level;
}

void fv_log(enum fv_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < log_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            names[level], msg);
}
