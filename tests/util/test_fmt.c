/* test_fmt.c - the API's number printing (util/fmt.h): every double reads back bit for bit
 * with the fewest significant digits (issue 16 item 11: the smallest subnormal is "5e-324";
 * issue 8: 37.4 is "37.4"), and JSON trees dump as jansson would, reals aside. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ctype.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "../support/testutil.h"

#include "util/err.h"
#include "util/fmt.h"

static uint64_t rng;

static uint64_t next(void)
{
    return fv_test_xorshift(&rng);
}

static double from_bits(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static int same_bits(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Significant digits of a decimal text: leading zeros never count, nor trailing zeros of a
 * number written without a point or an exponent ("1500" has two, like %.2g's "1.5e+03"). */
static int sig_digits(const char *s)
{
    const char *e = strpbrk(s, "eE");
    size_t end = e ? (size_t)(e - s) : strlen(s);
    char dig[64];
    size_t n = 0;
    int point = 0;
    for (size_t i = 0; i < end; i++) {
        if (isdigit((unsigned char)s[i]) && n < sizeof dig) dig[n++] = s[i];
        if (s[i] == '.') point = 1;
    }
    size_t lo = 0;
    while (lo < n && dig[lo] == '0')
        lo++;
    if (!point && !e)
        while (n > lo && dig[n - 1] == '0')
            n--;
    return lo == n ? 1 : (int)(n - lo);
}

/* The fewest digits n for which "%.{n}g" reads back as d. */
static int fewest_g(double d)
{
    char b[64];
    for (int n = 1; n <= 17; n++) {
        snprintf(b, sizeof b, "%.*g", n, d);
        if (same_bits(strtod(b, NULL), d)) return n;
    }
    return 99;
}

static regex_t json_number;

static void check(double d)
{
    char out[FV_FMT_DOUBLE_MAX];
    size_t n = fv_fmt_double(out, d);
    if (n != strlen(out) || n >= FV_FMT_DOUBLE_MAX) fail_msg("length of %s", out);
    double back = strtod(out, NULL);
    if (!same_bits(back, d)) fail_msg("%.17g printed as %s reads back as %.17g", d, out, back);
    int want = fewest_g(d), got = sig_digits(out);
    if (got != want)
        fail_msg("%.17g printed as %s: %d digits, but %%.%dg reads back", d, out, got, want);
    if (regexec(&json_number, out, 0, NULL, 0) != 0) fail_msg("%s is not a JSON number", out);
}

static void test_known_values(void **state)
{
    (void)state;
    static const struct {
        double d;
        const char *text;
    } cases[] = {
        {4.9406564584124654e-324, "5e-324"}, /* issue 16 item 11 */
        {37.4, "37.4"},                      /* issue 8: the state endpoint's latitude */
        {-122.1, "-122.1"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1e-7, "0.0000001"},
        {100, "100"},
        {0, "0"},
        {-0.0, "-0"},
        {77.25, "77.25"},
        {1e300, "1e+300"},
        {DBL_MAX, "1.7976931348623157e+308"},
        {DBL_MIN, "2.2250738585072014e-308"},
        {9007199254740993.0, "9007199254740992"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[FV_FMT_DOUBLE_MAX];
        fv_fmt_double(out, cases[i].d);
        if (strcmp(out, cases[i].text) != 0)
            fail_msg("%.17g: got %s, want %s", cases[i].d, out, cases[i].text);
        check(cases[i].d);
    }
    char out[FV_FMT_DOUBLE_MAX];
    fv_fmt_double(out, NAN);
    assert_string_equal(out, "nan");
    fv_fmt_double(out, -INFINITY);
    assert_string_equal(out, "-inf");
    struct fv_buf b = {0};
    assert_int_equal(fv_buf_put_double(&b, INFINITY), FV_OK);
    assert_int_equal(fv_buf_put_double(&b, 2.5), FV_OK);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "null2.5", 7);
    fv_buf_free(&b);
}

static void test_random_doubles(void **state)
{
    (void)state;
    uint64_t seed = getenv("FV_SEED") ? strtoull(getenv("FV_SEED"), NULL, 10)
                                      : (uint64_t)time(NULL) * 2654435761u + 1;
    print_message("seed %llu (set FV_SEED to repeat)\n", (unsigned long long)seed);
    rng = seed ? seed : 1;
    for (int i = 0; i < 100000; i++) {
        double d = from_bits(next());
        if (isfinite(d)) check(d);
    }
    /* subnormals: exponent bits zero */
    for (int i = 0; i < 50000; i++)
        check(from_bits(next() & 0x800fffffffffffffull));
    for (uint64_t u = 1; u < 4096; u++)
        check(from_bits(u));
    /* every power of two (the one case whose values reading back lie closer below it than
     * above: fv_fmt_double searches their digits apart) and its neighbours, both signs */
    for (int k = -1074; k <= 1023; k++) {
        double p = ldexp(1.0, k);
        check(p);
        check(-p);
        check(nextafter(p, 0));
        check(nextafter(p, INFINITY));
    }
    /* telemetry-like: short decimals, integers, powers of ten, neighbours of each */
    for (int i = 0; i < 50000; i++) {
        char txt[64];
        int digits = 1 + (int)(next() % 17), exp10 = (int)(next() % 40) - 20;
        uint64_t m = next() % 100000000000000000ull;
        snprintf(txt, sizeof txt, "%llu", (unsigned long long)m);
        txt[digits] = '\0';
        snprintf(txt + strlen(txt), sizeof txt - strlen(txt), "e%d", exp10);
        double d = strtod(txt, NULL) * (next() & 1 ? -1 : 1);
        check(d);
        check(nextafter(d, INFINITY));
        check(nextafter(d, -INFINITY));
    }
    for (int e = -324; e <= 308; e++) {
        char txt[32];
        snprintf(txt, sizeof txt, "1e%d", e);
        check(strtod(txt, NULL));
    }
}

static void test_json_dump(void **state)
{
    (void)state;
    json_error_t je;
    const char *text = "{\"id\":\"5YJ3\\\"\\\\\\n\\t\\u0001 \xc3\xa9/\",\"n\":-42,\"ok\":true,"
                       "\"no\":false,\"none\":null,\"a\":[1,[],{},[\"x\",{\"k\":0}]],\"e\":{}}";
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    for (int indent = 0; indent <= 2; indent += 2) {
        char *want = json_dumps(j, indent ? JSON_INDENT(2) : JSON_COMPACT);
        struct fv_buf b = {0};
        assert_int_equal(fv_json_append(&b, j, indent), FV_OK);
        assert_non_null(want);
        if (b.len != strlen(want) || memcmp(b.data, want, b.len) != 0)
            fail_msg("got %.*s, want %s", (int)b.len, (const char *)b.data, want);
        free(want);
        fv_buf_free(&b);
    }
    json_decref(j);
    /* reals: the fewest digits (jansson's own dump says 37.399999999999999) */
    j = json_pack("{s:f,s:f,s:f}", "latitude", 37.4, "longitude", -122.1, "tiny",
                  4.9406564584124654e-324);
    struct fv_buf b = {0};
    assert_int_equal(fv_json_append(&b, j, 0), FV_OK);
    const char *want = "{\"latitude\":37.4,\"longitude\":-122.1,\"tiny\":5e-324}";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    fv_buf_free(&b);
    json_decref(j);
    assert_int_equal(fv_json_append(&b, NULL, 0), FV_ENOMEM);
}

/* Integers: exactly what printf prints, at the edges and at random. */
static void test_integers(void **state)
{
    (void)state;
    char got[FV_FMT_INT_MAX], want[32];
    const int64_t edges[] = {0,
                             1,
                             -1,
                             9,
                             10,
                             -10,
                             99,
                             100,
                             INT64_MAX,
                             INT64_MIN,
                             INT64_MIN + 1,
                             1795000000000,
                             -1795000000000};
    uint64_t x = 88172645463325252ull; /* xorshift64 */
    for (size_t i = 0; i < 10000 + sizeof edges / sizeof *edges; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t v = i < sizeof edges / sizeof *edges ? edges[i] : (int64_t)(x >> (x % 64));
        if (i % 2 && v != INT64_MIN) v = -v; /* -INT64_MIN overflows: printed as is */
        size_t n = fv_fmt_i64(got, v);
        snprintf(want, sizeof want, "%" PRId64, v);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(got, want, n);
        n = fv_fmt_u64(got, x);
        snprintf(want, sizeof want, "%" PRIu64, x);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(got, want, n);
    }
    assert_int_equal(fv_fmt_u64(got, UINT64_MAX), 20);
    assert_memory_equal(got, "18446744073709551615", 20);
    struct fv_buf b = {0};
    assert_int_equal(fv_buf_put_i64(&b, -42), FV_OK);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "-42", 3);
    fv_buf_free(&b);
}

int main(void)
{
    if (regcomp(&json_number, "^-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?$",
                REG_EXTENDED | REG_NOSUB) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_random_doubles),
        cmocka_unit_test(test_json_dump),
        cmocka_unit_test(test_integers),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    regfree(&json_number);
    return rc;
}
