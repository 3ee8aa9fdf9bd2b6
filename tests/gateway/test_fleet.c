/* test_fleet.c - the txid window (dedup), latest-state ordering, and token buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "gateway/fleet.h"
#include "util/ratelimit.h"
#include "util/err.h"

static void test_txid_window(void **state)
{
    (void)state;
    struct fv_fleet f = {0};
    struct fv_device *d = fv_fleet_device(&f, "DEV", "vehicle_device");
    assert_non_null(d);
    assert_ptr_equal(fv_fleet_device(&f, "DEV", "x"), d);
    char tx[32];
    for (int i = 0; i < FV_DEDUP_WINDOW + 100; i++) {
        snprintf(tx, sizeof tx, "tx-%d", i);
        assert_false(fv_device_has_txid(d, tx, strlen(tx)));
        assert_int_equal(fv_device_add_txid(d, tx, strlen(tx)), FV_OK);
        assert_true(fv_device_has_txid(d, tx, strlen(tx)));
    }
    /* the oldest 100 fell out of the window; the rest are remembered */
    for (int i = 0; i < FV_DEDUP_WINDOW + 100; i++) {
        snprintf(tx, sizeof tx, "tx-%d", i);
        assert_int_equal(fv_device_has_txid(d, tx, strlen(tx)), i >= 100);
    }
    assert_int_equal(d->recent.ring_n, FV_DEDUP_WINDOW);
    fv_fleet_free(&f);
}

static void test_latest_state(void **state)
{
    (void)state;
    struct fv_fleet f = {0};
    struct fv_device *d = fv_fleet_device(&f, "DEV", "vehicle_device");
    char s1[] = "first", s2[] = "late";
    struct fv_datum a[2] = {{64, {.kind = FV_VK_STRING, .u.s = s1}},
                            {4, {.kind = FV_VK_DOUBLE, .u.d = 10}}};
    struct fv_vrecord r1 = {.n = 2, .data = a};
    assert_int_equal(fv_device_apply(d, 2000, 2000, &r1), FV_OK);
    struct fv_datum b[1] = {{64, {.kind = FV_VK_STRING, .u.s = s2}}};
    struct fv_vrecord r0 = {.n = 1, .data = b};
    assert_int_equal(fv_device_apply(d, 1000, 3000, &r0), FV_OK); /* older: ignored */
    const struct fv_signal_state *s = fv_device_signal(d, 64);
    assert_string_equal(s->value.u.s, "first");
    assert_int_equal(s->time_ms, 2000);
    assert_int_equal(d->records, 2);
    assert_int_equal(d->datums, 3);
    assert_int_equal(d->first_ms, 1000);
    assert_int_equal(d->last_ms, 2000);
    assert_int_equal(d->nsignals, 2);
    assert_int_equal(d->signals[0].field, 4); /* sorted */
    fv_fleet_free(&f);
}

static void test_token_bucket(void **state)
{
    (void)state;
    struct fv_rate_config c;
    fv_rate_defaults(&c);
    assert_int_equal(fv_rate_set(&c, "V", 2, 3), FV_OK);
    assert_int_equal(fv_rate_set(&c, "V", 0, 3), FV_EINVAL);
    int rule = fv_rate_rule_for(&c, "V", 1);
    assert_true(rule >= 0);
    assert_string_equal(c.rules[fv_rate_rule_for(&c, "other", 5)].topic, "*");
    struct fv_bucket b = {0};
    uint64_t t = 1000000000ULL;
    assert_true(fv_bucket_take(&b, &c.rules[rule], t));
    assert_true(fv_bucket_take(&b, &c.rules[rule], t));
    assert_true(fv_bucket_take(&b, &c.rules[rule], t));
    assert_false(fv_bucket_take(&b, &c.rules[rule], t));               /* burst of 3 spent */
    assert_true(fv_bucket_take(&b, &c.rules[rule], t + 500000000ULL)); /* +0.5 s = 1 token */
    assert_false(fv_bucket_take(&b, &c.rules[rule], t + 500000000ULL));
    /* refill caps at the burst */
    int n = 0;
    while (fv_bucket_take(&b, &c.rules[rule], t + 100000000000ULL))
        n++;
    assert_int_equal(n, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_txid_window),
        cmocka_unit_test(test_latest_state),
        cmocka_unit_test(test_token_bucket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
