/*
 * report_int.h - internal to the records-of-processing report (report.c, report_measures.c);
 * not a public contract: callers use report.h.
 *
 * The builder (struct rb): every insertion records an out-of-memory in b->oom instead of
 * stopping, and the report is thrown away at the end if one failed; set and push steal the
 * value they are given, also on failure, and a NULL value counts as out of memory. Its
 * helpers are small and defined here (static inline), so both files use the same short
 * names.
 *
 * Threading: a build's state lives in its struct ctx, on the caller's stack; no shared state.
 */
#ifndef FV_PRIVACY_REPORT_INT_H
#define FV_PRIVACY_REPORT_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "privacy/policy.h"
#include "privacy/report.h"

#define DAY_MS  86400000ull
#define HOUR_MS 3600000ull
#define MIN_MS  60000ull

struct rb {
    int oom;
};

/* v, counting a NULL as out of memory. */
static inline json_t *J(struct rb *b, json_t *v)
{
    if (v == NULL) b->oom = 1;
    return v;
}

/* o[k] = v (stolen, also on failure). */
static inline void set(struct rb *b, json_t *o, const char *k, json_t *v)
{
    if (v == NULL || json_object_set_new(o, k, v) != 0) b->oom = 1;
}

/* a += v (stolen, also on failure). */
static inline void push(struct rb *b, json_t *a, json_t *v)
{
    if (v == NULL || json_array_append_new(a, v) != 0) b->oom = 1;
}

/* A JSON string of s; a path that is not UTF-8 is named as such rather than failing. */
static inline json_t *str(const char *s)
{
    json_t *v = json_string(s);
    return v ? v : json_string("(not UTF-8)");
}

static inline json_t *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline json_t *strf(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return str(buf);
}

static inline void warn(struct rb *b, json_t *warnings, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void warn(struct rb *b, json_t *warnings, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    push(b, warnings, str(buf));
}

/* "730 days", "12 hours", "90 minutes", "45 s", "forever" (0). */
static inline void fmt_duration(uint64_t ms, char *out, size_t n)
{
    if (ms == 0)
        snprintf(out, n, "forever");
    else if (ms % DAY_MS == 0)
        snprintf(out, n, "%llu day%s", (unsigned long long)(ms / DAY_MS), ms == DAY_MS ? "" : "s");
    else if (ms % HOUR_MS == 0)
        snprintf(out, n, "%llu hour%s", (unsigned long long)(ms / HOUR_MS),
                 ms == HOUR_MS ? "" : "s");
    else if (ms % MIN_MS == 0)
        snprintf(out, n, "%llu minute%s", (unsigned long long)(ms / MIN_MS),
                 ms == MIN_MS ? "" : "s");
    else
        snprintf(out, n, "%.3f s", (double)ms / 1000.0);
}

/* One fv_report_build: its inputs, the policy, and what the sections add to. */
struct ctx {
    struct rb b;
    const struct fv_report_input *in;
    const struct fv_config *cfg;
    const struct fv_policy *pol;
    json_t *pj;       /* the policy as JSON */
    json_t *warnings; /* array */
    const char *const *contract;
    json_t *principals; /* array, from the catalog */
    char *err;
    size_t errlen;
};

/* report_measures.c: the sections that state what the code does. */
/* "security_measures": [{"measure", "detail"}]. */
json_t *fv_report__security(struct ctx *c);
/* "retention": per data class, the WAL, erasure, tombstones, principals, the audit log. */
json_t *fv_report__retention(struct ctx *c);
/* "audit_log": where it is, its format, keys, witness, retention, how to verify and query. */
json_t *fv_report__audit_log(struct ctx *c);
/* Adds the warnings that depend on the configuration alone. */
void fv_report__config_warnings(struct ctx *c);

#endif
