/* test_settle.c - settlement rows (energy/settle.h): the rounding rule on hand-computed rows,
 * the CSV and JSON bytes, a total equal to the sum of its printed rows, determinism. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "energy/settle.h"
#include "util/err.h"

static struct fv_vpp_baseline_result result(enum fv_vpp_method m, double base, double metered,
                                            int ndays)
{
    struct fv_vpp_baseline_result r;
    memset(&r, 0, sizeof r);
    r.method = m;
    r.status = ndays ? FV_VPP_BL_OK : FV_VPP_BL_NONE;
    r.ndays = ndays;
    for (int i = 0; i < ndays; i++)
        r.days[i] = 20260816 - i;
    r.baseline_kwh = base;
    r.metered_kwh = metered;
    if (!ndays) snprintf(r.reason, sizeof r.reason, "no days");
    return r;
}

static void test_rows_csv_json(void **state)
{
    (void)state;
    struct fv_vpp_program p;
    fv_vpp_program_defaults(&p, "elrp");
    struct fv_vpp_settle_row rows[5];
    struct fv_vpp_baseline_result r;
    r = result(FV_VPP_A4_DISCHARGE, 3.6, 9.6, 2);
    assert_int_equal(fv_vpp_settle_row(&rows[0], "site-a", "ev1", &p, &r), FV_OK);
    assert_true(rows[0].baseline_wh == 3600 && rows[0].metered_wh == 9600);
    assert_true(rows[0].incremental_wh == 6000 && rows[0].payment_cents == 1200);
    /* Rounded first (1234.56 Wh -> 1235, 5000.4 -> 5000), then the difference: 3765 Wh;
     * at 2.00: 7.53. */
    r = result(FV_VPP_A4_DISCHARGE, 1.23456, 5.0004, 1);
    assert_int_equal(fv_vpp_settle_row(&rows[1], "b,\"x\"", "ev1", &p, &r), FV_OK);
    assert_true(rows[1].incremental_wh == 3765 && rows[1].payment_cents == 753);
    /* Group A: a reduction, from a negative metered load (exporting). */
    r = result(FV_VPP_GROUP_A, 16.8, -4.8, 1);
    assert_int_equal(fv_vpp_settle_row(&rows[2], "c", "ev1", &p, &r), FV_OK);
    assert_true(rows[2].incremental_wh == 21600 && rows[2].payment_cents == 4320);
    /* No baseline: nothing paid, empty days and baseline. */
    r = result(FV_VPP_GROUP_A, 0, 2.5, 0);
    assert_int_equal(fv_vpp_settle_row(&rows[3], "d", "ev1", &p, &r), FV_OK);
    assert_true(rows[3].incremental_wh == 0 && rows[3].payment_cents == 0);
    /* A rate with 4 decimals: 3765 * 0.3333 / 10 = 125.487... cents -> 125; -0.005 kWh. */
    p.rate = 0.3333;
    r = result(FV_VPP_A4_DISCHARGE, -0.005, 3.76, 1);
    assert_int_equal(fv_vpp_settle_row(&rows[4], "e", "ev1", &p, &r), FV_OK);
    assert_true(rows[4].incremental_wh == 3765 && rows[4].payment_cents == 125);

    struct fv_buf b = {0};
    assert_int_equal(fv_vpp_settle_csv(&b, rows, 5, 1), FV_OK);
    const char *want =
        "site,event,method,baseline_days,baseline_kwh,metered_kwh,incremental_kwh,rate,payment\n"
        "site-a,ev1,a4_discharge,2026-08-16;2026-08-15,3.600,9.600,6.000,2.00,12.00\n"
        "\"b,\"\"x\"\"\",ev1,a4_discharge,2026-08-16,1.235,5.000,3.765,2.00,7.53\n"
        "c,ev1,group_a,2026-08-16,16.800,-4.800,21.600,2.00,43.20\n"
        "d,ev1,group_a,,,2.500,0.000,2.00,0.00\n"
        "e,ev1,a4_discharge,2026-08-16,-0.005,3.760,3.765,0.3333,1.25\n";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);

    fv_buf_reset(&b);
    assert_int_equal(fv_vpp_settle_json(&b, rows + 3, 2), FV_OK);
    const char *wj =
        "{\"rows\":[{\"site\":\"d\",\"event\":\"ev1\",\"method\":\"group_a\",\"baseline_days\":[],"
        "\"baseline_kwh\":null,\"metered_kwh\":2.500,\"incremental_kwh\":0.000,\"rate\":2.00,"
        "\"currency\":\"USD\",\"payment\":0.00,\"note\":\"no days\"},{\"site\":\"e\",\"event\":"
        "\"ev1\",\"method\":\"a4_discharge\",\"baseline_days\":[\"2026-08-16\"],"
        "\"baseline_kwh\":-0.005,\"metered_kwh\":3.760,\"incremental_kwh\":3.765,\"rate\":0.3333,"
        "\"currency\":\"USD\",\"payment\":1.25,\"note\":\"\"}],\"total\":{\"rows\":2,"
        "\"baseline_kwh\":-0.005,\"metered_kwh\":6.260,\"incremental_kwh\":3.765,\"payment\":1.25}"
        "}";
    assert_int_equal(b.len, strlen(wj));
    assert_memory_equal(b.data, wj, b.len);
    fv_buf_free(&b);

    /* Out of range: refused. */
    r = result(FV_VPP_A4_DISCHARGE, 0, 2e6, 1);
    assert_int_equal(fv_vpp_settle_row(&rows[0], "x", "ev1", &p, &r), FV_ELIMIT);
    r = result(FV_VPP_A4_DISCHARGE, NAN, 1, 1);
    assert_int_equal(fv_vpp_settle_row(&rows[0], "x", "ev1", &p, &r), FV_ELIMIT);
}

/* Sums column col (0-based) of the CSV's data lines as integers of its printed decimals. */
static int64_t csv_column_sum(const char *csv, int col, int dec)
{
    int64_t total = 0;
    const char *line = strchr(csv, '\n') + 1;
    while (*line) {
        const char *f = line;
        for (int c = 0; c < col; c++)
            f = strchr(f, ',') + 1;
        char *end;
        double v = strtod(f, &end);
        total += (int64_t)llround(v * (dec == 3 ? 1000.0 : 100.0));
        line = strchr(line, '\n') + 1;
    }
    return total;
}

static void test_total_is_sum_of_rows(void **state)
{
    (void)state;
    uint64_t seed = (uint64_t)time(NULL);
    printf("seed %llu\n", (unsigned long long)seed);
    srand((unsigned)seed);
    struct fv_vpp_program p;
    fv_vpp_program_defaults(&p, "elrp");
    p.rate = 1.7777;
    size_t n = 5000;
    struct fv_vpp_settle_row *rows = calloc(n, sizeof *rows);
    char(*names)[16] = calloc(n, 16);
    assert_true(rows && names);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], 16, "s%zu", i);
        struct fv_vpp_baseline_result r =
            result(i % 3 ? FV_VPP_A4_DISCHARGE : FV_VPP_GROUP_A, rand() / (double)RAND_MAX * 30 - 5,
                   rand() / (double)RAND_MAX * 30 - 5, (int)(i % 11));
        assert_int_equal(fv_vpp_settle_row(&rows[i], names[i], "ev", &p, &r), FV_OK);
    }
    struct fv_buf csv = {0}, csv2 = {0}, js = {0};
    assert_int_equal(fv_vpp_settle_csv(&csv, rows, n, 1), FV_OK);
    assert_int_equal(fv_vpp_settle_csv(&csv2, rows, n, 1), FV_OK);
    assert_int_equal(csv.len, csv2.len);
    assert_memory_equal(csv.data, csv2.data, csv.len); /* same rows, same bytes */
    assert_int_equal(fv_buf_append(&csv, "", 1), FV_OK);
    struct fv_vpp_settle_total t;
    fv_vpp_settle_sum(rows, n, &t);
    assert_true(csv_column_sum((char *)csv.data, 5, 3) == t.metered_wh);
    assert_true(csv_column_sum((char *)csv.data, 6, 3) == t.incremental_wh);
    assert_true(csv_column_sum((char *)csv.data, 8, 2) == t.payment_cents);
    /* The JSON total is the same integers, printed. */
    assert_int_equal(fv_vpp_settle_json(&js, rows, n), FV_OK);
    json_error_t je;
    json_t *j = json_loadb((char *)js.data, js.len, 0, &je);
    assert_non_null(j);
    json_t *tot = json_object_get(j, "total");
    assert_int_equal(json_integer_value(json_object_get(tot, "rows")), (json_int_t)n);
    char want[64];
    snprintf(want, sizeof want, "\"payment\":%lld.%02lld}}", (long long)(t.payment_cents / 100),
             (long long)(t.payment_cents % 100));
    assert_true(t.payment_cents > 0);
    assert_memory_equal(js.data + js.len - strlen(want), want, strlen(want));
    json_decref(j);
    fv_buf_free(&csv);
    fv_buf_free(&csv2);
    fv_buf_free(&js);
    free(rows);
    free(names);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_csv_json),
        cmocka_unit_test(test_total_is_sum_of_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
