/* test_fleet.c - the txid window (dedup), latest-state ordering (late and far-future values),
 * many signals in one record, and token buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    assert_int_equal(fv_device_signal(d, 4)->time_ms, 2000);
    assert_null(fv_device_signal(d, 5));
    fv_fleet_free(&f);
}

/* Issue 8: signals were kept in a sorted array with a memmove per new signal, so a record
 * with many signals in descending order cost O(n^2) on the event loop (20 s for 300,000).
 * Bounded: well under a second with a hashed index; the test allows 3 s of CPU. */
static void test_many_signals_descending(void **state)
{
    (void)state;
    struct fv_fleet f = {0};
    struct fv_device *d = fv_fleet_device(&f, "DEV", "vehicle_device");
    enum { N = 300000 };
    struct fv_datum *a = calloc(N, sizeof *a);
    assert_non_null(a);
    for (uint32_t i = 0; i < N; i++)
        a[i] = (struct fv_datum){N - i, {.kind = FV_VK_INT, .u.i = i}};
    struct fv_vrecord r = {.n = N, .data = a};
    clock_t c0 = clock();
    assert_int_equal(fv_device_apply(d, 1000, 1000, &r), FV_OK);
    double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
    print_message("%d signals in descending order applied in %.3f s of CPU\n", N, secs);
    assert_true(secs < 3.0);
    assert_int_equal(d->nsignals, N);
    for (uint32_t fld = 1; fld <= N; fld += 997)
        assert_int_equal(fv_device_signal(d, fld)->value.u.i, N - fld);
    fv_device_wipe(d);
    assert_null(fv_device_signal(d, 7));
    assert_int_equal(fv_device_apply(d, 2000, 2000, &r), FV_OK); /* usable after a wipe */
    assert_int_equal(fv_device_signal(d, 7)->time_ms, 2000);
    free(a);
    fv_fleet_free(&f);
}

/* Issue 8 D: a value stamped far in the future (a device clock gone wrong) is not the
 * latest state; later values with sane times still are. */
static void test_future_time_does_not_freeze_latest(void **state)
{
    (void)state;
    struct fv_fleet f = {0};
    struct fv_device *d = fv_fleet_device(&f, "DEV", "vehicle_device");
    uint64_t now = 1795000000000ULL;
    struct fv_datum a[1] = {{4, {.kind = FV_VK_DOUBLE, .u.d = 1}}};
    struct fv_vrecord r = {.n = 1, .data = a};
    assert_int_equal(fv_device_apply(d, now, now, &r), FV_OK);
    a[0].value.u.d = 999; /* the year 2100 */
    assert_int_equal(fv_device_apply(d, 4102444800000ULL, now + 10, &r), FV_OK);
    assert_true(fv_device_signal(d, 4)->value.u.d == 1);
    a[0].value.u.d = 2;
    assert_int_equal(fv_device_apply(d, now + 1000, now + 1000, &r), FV_OK);
    assert_true(fv_device_signal(d, 4)->value.u.d == 2);
    assert_int_equal(fv_device_signal(d, 4)->time_ms, now + 1000);
    /* within the tolerance it is still the device's time that counts */
    a[0].value.u.d = 3;
    assert_int_equal(fv_device_apply(d, now + 2000 + FV_FLEET_FUTURE_MS, now + 2000, &r), FV_OK);
    assert_true(fv_device_signal(d, 4)->value.u.d == 3);
    /* received_ms 0 (rebuilt from the store): the server's clock decides */
    a[0].value.u.d = 4;
    assert_int_equal(fv_device_apply(d, 4102444800000ULL, 0, &r), FV_OK);
    assert_true(fv_device_signal(d, 4)->value.u.d == 3);
    assert_int_equal(d->records, 5);
    fv_fleet_free(&f);
}

/* Issue 13 (memory per connected vehicle <= 30 KB at 10,000 connections): what a device that
 * sent one record of 20 signals holds on the heap, its struct included. It was 3.4 KB: the
 * signals array grown 8 -> 16 -> 32 (1,280 bytes for 20), a map slot of 40 bytes per index entry
 * (1,280), 16 rate buckets inline that --no-rate-limit never uses. Sized by need it is
 * about 1.5 KB; the bound leaves room for allocator rounding. */
static void test_device_memory_by_need(void **state)
{
    (void)state;
    enum { DEVICES = 2000, SIGNALS = 20 };
    struct fv_fleet f;
    fv_fleet_init(&f);
    struct fv_datum a[SIGNALS];
    for (uint32_t i = 0; i < SIGNALS; i++) /* fields spread like the signal table's */
        a[i] = (struct fv_datum){3 + i * 7, {.kind = FV_VK_DOUBLE, .u.d = i}};
    struct fv_vrecord r = {.n = SIGNALS, .data = a};
    size_t before = mallinfo2().uordblks;
    for (int k = 0; k < DEVICES; k++) {
        char id[32];
        snprintf(id, sizeof id, "5YJSIM%011d", k);
        struct fv_device *d = fv_fleet_device(&f, id, "vehicle_device");
        assert_non_null(d);
        assert_int_equal(fv_device_apply(d, 1000, 1000, &r), FV_OK);
    }
    double per = (double)(mallinfo2().uordblks - before) / DEVICES;
    print_message("a device with one record of %d signals holds %.0f heap bytes\n", SIGNALS, per);
    assert_true(per <= 1800);
    struct fv_device *d = fv_fleet_find(&f, "5YJSIM00000000007");
    assert_non_null(d);
    for (uint32_t i = 0; i < SIGNALS; i++)
        assert_true(fv_device_signal(d, 3 + i * 7)->value.u.d == i);
    assert_null(fv_device_signal(d, 4));
    fv_fleet_free(&f);
}

/* A full txid window (FV_DEDUP_WINDOW ids: a vehicle connected for 2.8 hours at 0.1 Hz) held
 * 24 KB per device, 8 in the ring of hashes and 16 in a set of hashes; the set holds 2-byte
 * ring positions now: 12 KB. Every id in the window is still found, none before it. */
static void test_txid_window_memory(void **state)
{
    (void)state;
    enum { DEVICES = 40, IDS = FV_DEDUP_WINDOW + 77 };
    struct fv_fleet f;
    fv_fleet_init(&f);
    char tx[48];
    size_t before = mallinfo2().uordblks;
    for (int k = 0; k < DEVICES; k++) {
        snprintf(tx, sizeof tx, "DEV%d", k);
        struct fv_device *d = fv_fleet_device(&f, tx, "vehicle_device");
        assert_non_null(d);
        for (int i = 0; i < IDS; i++) {
            snprintf(tx, sizeof tx, "%d-tx-%d", k, i);
            assert_int_equal(fv_device_add_txid(d, tx, strlen(tx)), FV_OK);
        }
    }
    double per = (double)(mallinfo2().uordblks - before) / DEVICES;
    print_message("a device with a full txid window holds %.0f heap bytes\n", per);
    assert_true(per <= 14000);
    struct fv_device *d = fv_fleet_find(&f, "DEV7");
    for (int i = 0; i < IDS; i++) {
        snprintf(tx, sizeof tx, "7-tx-%d", i);
        assert_int_equal(fv_device_has_txid(d, tx, strlen(tx)), i >= IDS - FV_DEDUP_WINDOW);
    }
    fv_fleet_free(&f);
}

/* A device's rate buckets exist once it is limited, one per configured rule, full at first. */
static void test_device_buckets_on_first_use(void **state)
{
    (void)state;
    struct fv_fleet f = {0};
    struct fv_device *d = fv_fleet_device(&f, "DEV", "vehicle_device");
    struct fv_rate_config c;
    fv_rate_defaults(&c);
    assert_null(d->buckets);
    assert_null(fv_device_bucket(d, c.n, c.n)); /* no such rule */
    int rule = fv_rate_rule_for(&c, "V", 1);
    struct fv_bucket *b = fv_device_bucket(d, rule, c.n);
    assert_non_null(b);
    assert_int_equal(d->nbuckets, c.n);
    uint64_t t = 1000000000ULL;
    int n = 0;
    while (fv_bucket_take(b, &c.rules[rule], t))
        n++;
    assert_int_equal(n, (int)c.rules[rule].burst);
    assert_ptr_equal(fv_device_bucket(d, rule, c.n), b); /* the same bucket, still spent */
    assert_false(fv_bucket_take(fv_device_bucket(d, rule, c.n), &c.rules[rule], t));
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
        cmocka_unit_test(test_many_signals_descending),
        cmocka_unit_test(test_future_time_does_not_freeze_latest),
        cmocka_unit_test(test_token_bucket),
        cmocka_unit_test(test_device_memory_by_need),
        cmocka_unit_test(test_device_buckets_on_first_use),
        cmocka_unit_test(test_txid_window_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
