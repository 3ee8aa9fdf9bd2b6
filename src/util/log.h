/*
 * log.h - leveled logging to stderr, one line per event, with a UTC timestamp.
 *
 * The level is process-wide (set once at start-up by the CLI, before any thread starts).
 * Never pass secrets (keys, tokens) to these functions. Thread-safe: each line is written
 * with one fprintf call.
 */
#ifndef FV_UTIL_LOG_H
#define FV_UTIL_LOG_H

enum fv_log_level { FV_LOG_DEBUG = 0, FV_LOG_INFO = 1, FV_LOG_WARN = 2, FV_LOG_ERROR = 3 };

void fv_log_set_level(enum fv_log_level level);
enum fv_log_level fv_log_get_level(void);
void fv_log(enum fv_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define fv_debug(...) fv_log(FV_LOG_DEBUG, __VA_ARGS__)
#define fv_info(...)  fv_log(FV_LOG_INFO, __VA_ARGS__)
#define fv_warn(...)  fv_log(FV_LOG_WARN, __VA_ARGS__)
#define fv_error(...) fv_log(FV_LOG_ERROR, __VA_ARGS__)

#endif
