/*
 * lineproto.c - what the simulator's records are stamped with and how they are written as
 * line protocol: the created_at jitter, virtual time, and fv_sim_influx_line (contracts in
 * simulate.h).
 *
 * Pure functions of their arguments: no state, no clock, no libc rand(), so that in virtual
 * time the line-protocol file is a function of the options alone.
 *
 * Threading: any thread.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/simulate_int.h"
#include "util/err.h"
#include "wire/signals.h"

/* The splitmix64 finaliser (public-domain algorithm by S. Vigna). */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

int64_t fv_sim_jitter_ms(uint64_t seed, uint32_t vehicle, uint64_t k, uint32_t jitter_ms)
{
    if (jitter_ms == 0) return 0;
    /* One finaliser round per input; the first constant keeps this stream apart from the
     * vehicle models', which are seeded from the same seed. */
    uint64_t h = mix64(seed ^ 0x6A09E667F3BCC909ULL);
    h = mix64(h + 0x9E3779B97F4A7C15ULL * ((uint64_t)vehicle + 1));
    h = mix64(h + 0xD1B54A32D192ED03ULL * (k + 1));
    uint64_t span = 2 * (uint64_t)jitter_ms + 1;
    return (int64_t)(h % span) - (int64_t)jitter_ms;
}

/* base + off, clamped at 0 (|off| < 2^33, so neither side overflows). */
uint64_t fv_sim__add_offset(uint64_t base, int64_t off)
{
    if (off < 0) return base < (uint64_t)(-off) ? 0 : base - (uint64_t)(-off);
    return base + (uint64_t)off;
}

uint64_t fv_sim_virtual_ms(const struct fv_sim_opts *o, uint32_t vehicle, uint64_t k)
{
    uint64_t step = o->hz > 0 ? (uint64_t)llround((double)k * 1000.0 / o->hz) : 0;
    return fv_sim__add_offset(o->virtual_start_ms + step,
                              fv_sim_jitter_ms(o->seed, vehicle, k, o->jitter_ms));
}

/* Appends s, with a backslash before every character found in `special`. */
static int put_escaped(struct fv_buf *b, const char *s, const char *special)
{
    for (const char *p = s; *p; p++) {
        if (strchr(special, *p) != NULL && fv_buf_append(b, "\\", 1)) return FV_ENOMEM;
        if (fv_buf_append(b, p, 1)) return FV_ENOMEM;
    }
    return FV_OK;
}

/* Shortest of %.15g..%.17g that reads back as x (%.17g always does). */
static void fmt_double(double x, char *out, size_t len)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, len, "%.*g", prec, x);
        if (strtod(out, NULL) == x) return;
    }
}

/* Appends ",<name><suffix>=<value>" (no comma before the first field of a line). */
static int put_field(struct fv_buf *b, size_t *nfields, const char *name, const char *suffix,
                     const char *value)
{
    if ((*nfields)++ > 0 && fv_buf_append(b, ",", 1)) return FV_ENOMEM;
    if (put_escaped(b, name, ",= ") || put_escaped(b, suffix, ",= ") || fv_buf_append(b, "=", 1) ||
        fv_buf_append(b, value, strlen(value)))
        return FV_ENOMEM;
    return FV_OK;
}

/* Appends a string field: the value quoted, '"' and '\\' escaped, line breaks as \n, \r. */
static int put_string_field(struct fv_buf *b, size_t *nfields, const char *name, const char *s)
{
    if (put_field(b, nfields, name, "", "\"")) return FV_ENOMEM;
    for (const char *p = s; *p; p++) {
        const char *e = *p == '"'    ? "\\\""
                        : *p == '\\' ? "\\\\"
                        : *p == '\n' ? "\\n"
                        : *p == '\r' ? "\\r"
                                     : NULL;
        if (e ? fv_buf_append(b, e, 2) : fv_buf_append(b, p, 1)) return FV_ENOMEM;
    }
    return fv_buf_append(b, "\"", 1);
}

static int put_datum(struct fv_buf *b, size_t *nf, const struct fv_datum *d)
{
    char name[32], num[48], num2[48];
    const struct fv_value *v = &d->value;
    fv_signal_label(d->field, name, sizeof name);
    switch (v->kind) {
    case FV_VK_DOUBLE:
        if (!isfinite(v->u.d)) return FV_OK;
        fmt_double(v->u.d, num, sizeof num);
        return put_field(b, nf, name, "", num);
    case FV_VK_INT:
    case FV_VK_ENUM:
        snprintf(num, sizeof num, "%" PRId64 "i", v->u.i);
        return put_field(b, nf, name, "", num);
    case FV_VK_DOORS:
    case FV_VK_TIRES:
        snprintf(num, sizeof num, "%" PRIu32 "i", v->u.bits);
        return put_field(b, nf, name, "", num);
    case FV_VK_TIME:
        snprintf(num, sizeof num, "%" PRId64 "i",
                 (int64_t)v->u.time.h * 3600 + (int64_t)v->u.time.m * 60 + v->u.time.s);
        return put_field(b, nf, name, "", num);
    case FV_VK_BOOL:
        return put_field(b, nf, name, "", v->u.i ? "true" : "false");
    case FV_VK_LOCATION:
        if (!isfinite(v->u.loc.lat) || !isfinite(v->u.loc.lon)) return FV_OK;
        fmt_double(v->u.loc.lat, num, sizeof num);
        fmt_double(v->u.loc.lon, num2, sizeof num2);
        if (put_field(b, nf, name, "_lat", num)) return FV_ENOMEM;
        return put_field(b, nf, name, "_lon", num2);
    case FV_VK_STRING:
        return v->u.s ? put_string_field(b, nf, name, v->u.s) : FV_OK;
    default: /* no value: none, invalid, a member this build does not know */
        return FV_OK;
    }
}

int fv_sim_influx_line(struct fv_buf *out, const char *vin, const struct fv_datum *d, size_t n,
                       uint64_t ts_ms)
{
    size_t start = out->len, nf = 0;
    char ts[32];
    if (fv_buf_append(out, "telemetry,vin=", 14) || put_escaped(out, vin, ",= ") ||
        fv_buf_append(out, " ", 1))
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (put_datum(out, &nf, &d[i])) goto fail;
    if (nf == 0) {
        out->len = start;
        return FV_OK;
    }
    snprintf(ts, sizeof ts, " %" PRIu64 "\n", ts_ms);
    if (fv_buf_append(out, ts, strlen(ts))) goto fail;
    return FV_OK;
fail:
    out->len = start;
    return FV_ENOMEM;
}
