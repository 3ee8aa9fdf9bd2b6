/* fmt.c - see fmt.h. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util/err.h"
#include "util/fmt.h"

static const double p10[] = {1e0, 1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,
                             1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17};

#define TWO53 9007199254740992.0

/* Writes the decimal digits of m (< 2^53) with e digits after the point into b; returns
 * the length. */
static size_t fmt_decimal(char *b, uint64_t m, int neg, int e)
{
    char tmp[32];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    while ((int)n <= e)
        tmp[n++] = '0';
    size_t o = 0;
    if (neg) b[o++] = '-';
    for (size_t i = n; i-- > 0;) {
        b[o++] = tmp[i];
        if ((int)i == e && e > 0) b[o++] = '.';
    }
    b[o] = '\0';
    return o;
}

static int same_bits(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Whether "%.{prec}g" of d (written to out) reads back as d. */
static int reads_back(char out[FV_FMT_DOUBLE_MAX], double d, int prec)
{
    snprintf(out, FV_FMT_DOUBLE_MAX, "%.*g", prec, d);
    return same_bits(strtod(out, NULL), d);
}

size_t fv_fmt_double(char out[FV_FMT_DOUBLE_MAX], double d)
{
    if (isnan(d)) return (size_t)snprintf(out, FV_FMT_DOUBLE_MAX, "nan");
    if (isinf(d)) return (size_t)snprintf(out, FV_FMT_DOUBLE_MAX, d < 0 ? "-inf" : "inf");
    /* Fast path, exact: the smallest e with d == m / 10^e for an integer m < 2^53 prints as
     * m with e decimals, and that text reads back as d (both are the correctly rounded
     * quotient; 10^e is exact for e <= 22). Telemetry values are mostly like this with
     * e <= 3. */
    double a = fabs(d);
    if (a < TWO53 && !(d == 0 && signbit(d))) {
        for (int e = 0; e < (int)(sizeof p10 / sizeof p10[0]); e++) {
            double m = a * p10[e];
            if (m >= TWO53) break;
            double r = floor(m + 0.5);
            if (r / p10[e] == a) return fmt_decimal(out, (uint64_t)r, d < 0, e);
        }
    }
    /* Otherwise the fewest significant digits that read back: %.17g always does, and
     * fewer often do - very small and very large values too (the smallest subnormal is
     * "5e-324"). Reading back is monotonic in the digits (p + 1 correctly rounded digits are
     * at least as close to d as p digits, the p-digit text being one of the (p + 1)-digit
     * candidates), when the values that read back as d lie as far below it as above: every
     * d but a power of two, whose neighbour below is half as far. So the fewest is found in
     * two or three tries for the values that need 16 or 17 digits (noisy measurements,
     * 3.8 us each with one try per digit count), by bisection below 15; a power of two is
     * searched from one digit up, as every value was. */
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    if ((bits & 0xfffffffffffffull) == 0) {
        for (int prec = 1; !reads_back(out, d, prec); prec++) /* 17 always reads back */
            ;
        return strlen(out);
    }
    int lo = 1, hi = 15; /* the fewest is in [lo, hi] */
    if (!reads_back(out, d, 15)) {
        lo = reads_back(out, d, 16) ? 16 : 17; /* 17 digits always read back */
        hi = lo;
    }
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (reads_back(out, d, mid))
            hi = mid;
        else
            lo = mid + 1;
    }
    return (size_t)snprintf(out, FV_FMT_DOUBLE_MAX, "%.*g", lo, d);
}

int fv_buf_put_double(struct fv_buf *out, double d)
{
    if (!isfinite(d)) return fv_buf_append(out, "null", 4);
    char b[FV_FMT_DOUBLE_MAX];
    size_t n = fv_fmt_double(b, d);
    return fv_buf_append(out, b, n);
}

/* v's decimal digits (at most 20) into out; returns how many. Two digits per division (a
 * query's answer prints a 13-digit time per row). */
static size_t put_digits(char *out, uint64_t v)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930"
                                "31323334353637383940414243444546474849505152535455565758596061"
                                "6263646566676869707172737475767778798081828384858687888990919293"
                                "949596979899";
    char tmp[20];
    size_t i = sizeof tmp;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        tmp[--i] = pairs[2 * r + 1];
        tmp[--i] = pairs[2 * r];
    }
    if (v >= 10) {
        tmp[--i] = pairs[2 * v + 1];
        tmp[--i] = pairs[2 * v];
    } else {
        tmp[--i] = (char)('0' + v);
    }
    size_t n = sizeof tmp - i;
    memcpy(out, tmp + i, n);
    return n;
}

size_t fv_fmt_u64(char out[FV_FMT_INT_MAX], uint64_t v)
{
    return put_digits(out, v);
}

size_t fv_fmt_i64(char out[FV_FMT_INT_MAX], int64_t v)
{
    if (v >= 0) return put_digits(out, (uint64_t)v);
    out[0] = '-';
    return 1 + put_digits(out + 1, 0 - (uint64_t)v); /* INT64_MIN too */
}

int fv_buf_put_i64(struct fv_buf *out, int64_t v)
{
    char b[FV_FMT_INT_MAX];
    return fv_buf_append(out, b, fv_fmt_i64(b, v));
}

/* ---- JSON -------------------------------------------------------------------------------- */

/* A JSON string, escaped as jansson does by default (UTF-8 kept, control characters, '"'
 * and '\\' escaped). */
static int put_string(struct fv_buf *out, const char *s, size_t len)
{
    int rc = fv_buf_append(out, "\"", 1);
    size_t run = 0; /* bytes copied as they are, pending */
    for (size_t i = 0; rc == FV_OK && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        rc = fv_buf_append(out, s + i - run, run);
        run = 0;
        char esc[8];
        const char *e = esc;
        switch (c) {
        case '"':
            e = "\\\"";
            break;
        case '\\':
            e = "\\\\";
            break;
        case '\b':
            e = "\\b";
            break;
        case '\f':
            e = "\\f";
            break;
        case '\n':
            e = "\\n";
            break;
        case '\r':
            e = "\\r";
            break;
        case '\t':
            e = "\\t";
            break;
        default:
            snprintf(esc, sizeof esc, "\\u%04X", c);
        }
        if (rc == FV_OK) rc = fv_buf_append(out, e, strlen(e));
    }
    if (rc == FV_OK) rc = fv_buf_append(out, s + len - run, run);
    return rc == FV_OK ? fv_buf_append(out, "\"", 1) : rc;
}

static int newline(struct fv_buf *out, int indent, int depth)
{
    int rc = indent ? fv_buf_append(out, "\n", 1) : FV_OK;
    for (int i = 0; rc == FV_OK && i < indent * depth; i++)
        rc = fv_buf_append(out, " ", 1);
    return rc;
}

static int put_json(struct fv_buf *out, const json_t *j, int indent, int depth)
{
    char b[32];
    int rc = FV_OK;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        if (json_object_size(j) == 0) return fv_buf_append(out, "{}", 2);
        rc = fv_buf_append(out, "{", 1);
        const char *k;
        json_t *x;
        int first = 1;
        json_object_foreach((json_t *)j, k, x)
        {
            if (rc == FV_OK && !first) rc = fv_buf_append(out, ",", 1);
            if (rc == FV_OK) rc = newline(out, indent, depth + 1);
            if (rc == FV_OK) rc = put_string(out, k, strlen(k));
            if (rc == FV_OK) rc = fv_buf_append(out, indent ? ": " : ":", indent ? 2 : 1);
            if (rc == FV_OK) rc = put_json(out, x, indent, depth + 1);
            first = 0;
        }
        if (rc == FV_OK) rc = newline(out, indent, depth);
        return rc == FV_OK ? fv_buf_append(out, "}", 1) : rc;
    }
    case JSON_ARRAY: {
        if (json_array_size(j) == 0) return fv_buf_append(out, "[]", 2);
        rc = fv_buf_append(out, "[", 1);
        for (size_t i = 0; rc == FV_OK && i < json_array_size(j); i++) {
            if (i) rc = fv_buf_append(out, ",", 1);
            if (rc == FV_OK) rc = newline(out, indent, depth + 1);
            if (rc == FV_OK) rc = put_json(out, json_array_get(j, i), indent, depth + 1);
        }
        if (rc == FV_OK) rc = newline(out, indent, depth);
        return rc == FV_OK ? fv_buf_append(out, "]", 1) : rc;
    }
    case JSON_STRING:
        return put_string(out, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: {
        int n = snprintf(b, sizeof b, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        return fv_buf_append(out, b, (size_t)n);
    }
    case JSON_REAL:
        return fv_buf_put_double(out, json_real_value(j));
    case JSON_TRUE:
        return fv_buf_append(out, "true", 4);
    case JSON_FALSE:
        return fv_buf_append(out, "false", 5);
    default:
        return fv_buf_append(out, "null", 4);
    }
}

int fv_json_append(struct fv_buf *out, const struct json_t *j, int indent)
{
    return j ? put_json(out, j, indent, 0) : FV_ENOMEM;
}
