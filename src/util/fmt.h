/*
 * fmt.h - how numbers are printed in every answer of the API (JSON, CSV, export archives),
 * so that a value reads back exactly as it was stored (docs/operations.md, "Queries").
 *
 * A double is printed as the decimal with the fewest significant digits that strtod reads
 * back as the same 64 bits: 37.4 as "37.4" (not %.17g's "37.399999999999999"), 1e-7 as
 * "0.0000001", 4.9406564584124654e-324 (the smallest subnormal) as "5e-324". Values that
 * are m / 10^e for an integer m < 2^53 print in plain decimal notation with e decimals;
 * others as C's "%.{n}g" with the smallest such n (1 <= n <= 17). -0.0 prints as "-0".
 *
 * JSON trees built with jansson are dumped through fv_json_append, which prints reals this
 * way (jansson itself prints them with one fixed precision).
 *
 * Thread-safe: no shared state.
 */
#ifndef FV_UTIL_FMT_H
#define FV_UTIL_FMT_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define FV_FMT_DOUBLE_MAX 32 /* longest text of fv_fmt_double, with its NUL */

/* Writes the shortest text that reads back as exactly d into out (NUL-terminated) and
 * returns its length. Not finite: "nan", "inf" or "-inf" (C's spelling; JSON has none). */
size_t fv_fmt_double(char out[FV_FMT_DOUBLE_MAX], double d);

/* Appends d as JSON: fv_fmt_double's text, or null when d is not finite. FV_OK, FV_ENOMEM. */
int fv_buf_put_double(struct fv_buf *out, double d);

#define FV_FMT_INT_MAX 21 /* longest text of a 64-bit integer ("-9223372036854775808") */

/* An integer in decimal, as printf's "%" PRIu64 / "%" PRId64 print it (no NUL written);
 * returns its length. Without printf's parsing of a format: for hot paths. */
size_t fv_fmt_u64(char out[FV_FMT_INT_MAX], uint64_t v);
size_t fv_fmt_i64(char out[FV_FMT_INT_MAX], int64_t v);
/* Appends v in decimal. FV_OK, FV_ENOMEM. */
int fv_buf_put_i64(struct fv_buf *out, int64_t v);

struct json_t;
/* Appends the JSON text of j (any jansson value) to out, reals as fv_buf_put_double prints
 * them, object keys in insertion order. indent 0: compact (as JSON_COMPACT); indent n > 0:
 * one member per line, n spaces per level (as JSON_INDENT(n)). FV_OK, FV_ENOMEM. */
int fv_json_append(struct fv_buf *out, const struct json_t *j, int indent);

#endif
