/* test_vehicle.c - the simulator's vehicle model (src/sim/vehicle.c): determinism from the
 * seed, value kinds and ranges of every signal over a simulated day, state transitions, VIN
 * formatting, and payloads that decode with fv_payload_decode_v to the sampled datums. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim/vehicle.h"
#include "util/err.h"
#include "wire/payload.h"

#define NSIG 64

static size_t find(const struct fv_datum *d, size_t n, uint32_t field)
{
    for (size_t i = 0; i < n; i++)
        if (d[i].field == field) return i;
    fail_msg("signal %u missing", field);
    return 0;
}

static void test_vin(void **state)
{
    (void)state;
    char vin[FV_SIM_VIN_LEN + 1], err[128];
    assert_int_equal(fv_sim_vin("5YJSIM", 42, vin, err, sizeof err), FV_OK);
    assert_string_equal(vin, "5YJSIM00000000042");
    assert_int_equal(strlen(vin), 17);
    assert_int_equal(fv_sim_vin("ABCDEFGHIJKLMNOP", 9, vin, err, sizeof err), FV_OK);
    assert_string_equal(vin, "ABCDEFGHIJKLMNOP9");
    assert_int_equal(fv_sim_vin("ABCDEFGHIJKLMNOP", 10, vin, err, sizeof err), FV_EINVAL);
    assert_int_equal(fv_sim_vin("", 1, vin, err, sizeof err), FV_EINVAL);
    assert_int_equal(fv_sim_vin("BAD.PREFIX", 1, vin, err, sizeof err), FV_EINVAL);
    assert_int_equal(fv_sim_vin("ABCDEFGHIJKLMNOPQ", 1, vin, err, sizeof err), FV_EINVAL);
}

static void test_signal_list(void **state)
{
    (void)state;
    size_t n = fv_sim_signal_count();
    assert_true(n >= 23 && n <= NSIG);
    /* The first signals are the ones the brief names, in that order. */
    static const uint32_t first[] = {4,  5,  6,  7,  8,  10, 21, 23,  40, 42, 49, 37,
                                     59, 69, 70, 71, 72, 85, 86, 179, 98, 99, 32};
    for (size_t i = 0; i < sizeof first / sizeof first[0]; i++)
        assert_int_equal(fv_sim_signal_field(i), first[i]);
    /* No duplicates. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            assert_int_not_equal(fv_sim_signal_field(i), fv_sim_signal_field(j));
}

static void test_determinism(void **state)
{
    (void)state;
    struct fv_sim_vehicle *a, *b, *c;
    assert_int_equal(fv_sim_vehicle_new(7, 3, &a), FV_OK);
    assert_int_equal(fv_sim_vehicle_new(7, 3, &b), FV_OK);
    assert_int_equal(fv_sim_vehicle_new(7, 4, &c), FV_OK);
    size_t n = fv_sim_signal_count();
    struct fv_datum da[NSIG], db[NSIG], dc[NSIG];
    int differ = 0;
    for (int step = 0; step < 3000; step++) {
        fv_sim_vehicle_step(a, 0.5);
        fv_sim_vehicle_step(b, 0.5);
        fv_sim_vehicle_step(c, 0.5);
        assert_int_equal(fv_sim_vehicle_sample(a, n, da), n);
        assert_int_equal(fv_sim_vehicle_sample(b, n, db), n);
        fv_sim_vehicle_sample(c, n, dc);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(da[i].field, db[i].field);
            assert_true(fv_value_equal(&da[i].value, &db[i].value));
            if (!fv_value_equal(&da[i].value, &dc[i].value)) differ = 1;
        }
    }
    assert_true(differ); /* another index is another car */
    fv_sim_vehicle_free(a);
    fv_sim_vehicle_free(b);
    fv_sim_vehicle_free(c);
}

/* Is x a multiple of 1/scale, as printed (e.g. 12.3 for scale 10)? */
static int rounded(double x, double scale)
{
    return fabs(x * scale - round(x * scale)) < 1e-6;
}

static void check_ranges(const struct fv_datum *d, size_t n, enum fv_sim_vstate st)
{
    for (size_t i = 0; i < n; i++) {
        const struct fv_value *v = &d[i].value;
        if (v->kind == FV_VK_DOUBLE) assert_true(isfinite(v->u.d));
    }
    const struct fv_value *speed = &d[find(d, n, 4)].value;
    assert_int_equal(speed->kind, FV_VK_DOUBLE);
    assert_int_equal(speed->member, 5);
    assert_true(speed->u.d >= 0 && speed->u.d <= 135);
    assert_true(rounded(speed->u.d, 10));
    double soc = d[find(d, n, 8)].value.u.d;
    assert_true(soc >= 0 && soc <= 100 && rounded(soc, 100));
    double volts = d[find(d, n, 6)].value.u.d;
    assert_true(volts > 280 && volts < 430);
    const struct fv_value *gear = &d[find(d, n, 10)].value;
    assert_int_equal(gear->kind, FV_VK_ENUM);
    assert_int_equal(gear->member, 9);
    assert_true(gear->u.i == 2 || gear->u.i == 3 || gear->u.i == 5);
    if (st != FV_SIM_DRIVE) assert_int_equal(gear->u.i, 2);
    if (gear->u.i == 2) assert_true(speed->u.d == 0);
    const struct fv_value *loc = &d[find(d, n, 21)].value;
    assert_int_equal(loc->kind, FV_VK_LOCATION);
    assert_true(fabs(loc->u.loc.lat) <= 90 && fabs(loc->u.loc.lon) <= 180);
    double heading = d[find(d, n, 23)].value.u.d;
    assert_true(heading >= 0 && heading < 360);
    assert_true(d[find(d, n, 40)].value.u.d >= 0);
    assert_true(d[find(d, n, 32)].value.u.d >= 0 && d[find(d, n, 32)].value.u.d < 800);
    double amps = d[find(d, n, 49)].value.u.d;
    assert_true(amps >= 0 && amps <= 48);
    if (st != FV_SIM_CHARGE) assert_true(amps == 0);
    assert_int_equal(d[find(d, n, 59)].value.kind, FV_VK_BOOL);
    for (uint32_t f = 69; f <= 72; f++) {
        double bar = d[find(d, n, f)].value.u.d;
        assert_true(bar > 2.4 && bar < 3.4);
    }
    double in = d[find(d, n, 85)].value.u.d, out = d[find(d, n, 86)].value.u.d;
    assert_true(in > -30 && in < 50 && out > -30 && out < 50);
    const struct fv_value *dcs = &d[find(d, n, 179)].value;
    assert_int_equal(dcs->kind, FV_VK_ENUM);
    assert_int_equal(dcs->member, 32);
    assert_true(dcs->u.i >= 1 && dcs->u.i <= 5);
    if (st != FV_SIM_CHARGE) assert_int_equal(dcs->u.i, 1);
    assert_true(fabs(d[find(d, n, 98)].value.u.d) < 10);
    assert_true(fabs(d[find(d, n, 99)].value.u.d) < 5);
}

/* A fleet of cars over a simulated day: values stay in range; all three states occur,
 * and the odometer only grows. */
static void test_day_of_driving(void **state)
{
    (void)state;
    size_t n = fv_sim_signal_count();
    struct fv_datum d[NSIG];
    int seen[3] = {0, 0, 0};
    int transitions = 0;
    for (uint32_t car = 0; car < 12; car++) {
        struct fv_sim_vehicle *v;
        assert_int_equal(fv_sim_vehicle_new(99, car, &v), FV_OK);
        double odo = -1;
        enum fv_sim_vstate prev = fv_sim_vehicle_state(v);
        for (int t = 0; t < 24 * 3600; t++) {
            fv_sim_vehicle_step(v, 1.0);
            enum fv_sim_vstate st = fv_sim_vehicle_state(v);
            seen[st] = 1;
            if (st != prev) transitions++;
            prev = st;
            if (t % 10 != 0) continue;
            fv_sim_vehicle_sample(v, n, d);
            check_ranges(d, n, st);
            double o = d[find(d, n, 5)].value.u.d;
            assert_true(o >= odo);
            odo = o;
        }
        fv_sim_vehicle_free(v);
    }
    assert_true(seen[FV_SIM_DRIVE] && seen[FV_SIM_STOP] && seen[FV_SIM_CHARGE]);
    assert_true(transitions > 24);
}

/* Location moves along a path at the reported speed. */
static void test_location_follows_speed(void **state)
{
    (void)state;
    /* Find a car that starts driving. */
    struct fv_sim_vehicle *v = NULL;
    for (uint32_t i = 0; i < 100; i++) {
        assert_int_equal(fv_sim_vehicle_new(5, i, &v), FV_OK);
        if (fv_sim_vehicle_state(v) == FV_SIM_DRIVE) break;
        fv_sim_vehicle_free(v);
        v = NULL;
    }
    assert_non_null(v);
    struct fv_datum d0[NSIG], d1[NSIG];
    size_t n = fv_sim_signal_count();
    fv_sim_vehicle_sample(v, n, d0);
    fv_sim_vehicle_step(v, 10.0);
    fv_sim_vehicle_sample(v, n, d1);
    double lat0 = d0[6].value.u.loc.lat, lon0 = d0[6].value.u.loc.lon;
    double lat1 = d1[6].value.u.loc.lat, lon1 = d1[6].value.u.loc.lon;
    double dy = (lat1 - lat0) * 111320.0;
    double dx = (lon1 - lon0) * 111320.0 * cos(lat0 * 3.14159265358979 / 180.0);
    double moved = sqrt(dx * dx + dy * dy);
    double odo_m = (d1[1].value.u.d - d0[1].value.u.d) * 1000.0;
    /* Straight-line distance <= path length (odometer), and close to it. */
    assert_true(moved <= odo_m + 2.0);
    assert_true(moved >= odo_m * 0.5 - 2.0);
    fv_sim_vehicle_free(v);
}

static void test_payload_roundtrip(void **state)
{
    (void)state;
    struct fv_sim_vehicle *v;
    assert_int_equal(fv_sim_vehicle_new(1, 0, &v), FV_OK);
    char vin[FV_SIM_VIN_LEN + 1];
    assert_int_equal(fv_sim_vin("5YJSIM", 0, vin, NULL, 0), FV_OK);
    size_t n = fv_sim_signal_count();
    for (size_t k = 1; k <= n; k += 7) {
        fv_sim_vehicle_step(v, 30);
        struct fv_buf out = {0};
        size_t nd = 0;
        assert_int_equal(fv_sim_vehicle_encode(v, vin, k, 1795000000123ULL, &out, &nd), FV_OK);
        assert_int_equal(nd, k);
        struct fv_datum want[NSIG];
        assert_int_equal(fv_sim_vehicle_sample(v, k, want), k);
        struct fv_vrecord r;
        char err[128];
        assert_int_equal(fv_payload_decode_v(out.data, out.len, &r, err, sizeof err), FV_OK);
        assert_string_equal(r.vin, vin);
        assert_int_equal(r.created_at_ms, 1795000000123ULL);
        assert_false(r.is_resend);
        assert_int_equal(r.n, k);
        for (size_t i = 0; i < k; i++) {
            assert_int_equal(r.data[i].field, want[i].field);
            assert_true(fv_value_equal(&r.data[i].value, &want[i].value));
        }
        /* Re-encoding as a resend keeps the datums and sets the flag. */
        r.is_resend = 1;
        struct fv_buf again = {0};
        assert_int_equal(fv_payload_encode_v(&r, &again), FV_OK);
        struct fv_vrecord r2;
        assert_int_equal(fv_payload_decode_v(again.data, again.len, &r2, err, sizeof err), FV_OK);
        assert_true(r2.is_resend);
        assert_int_equal(r2.n, k);
        fv_vrecord_free(&r2);
        fv_vrecord_free(&r);
        fv_buf_free(&again);
        fv_buf_free(&out);
    }
    fv_sim_vehicle_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vin),
        cmocka_unit_test(test_signal_list),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_day_of_driving),
        cmocka_unit_test(test_location_follows_speed),
        cmocka_unit_test(test_payload_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
