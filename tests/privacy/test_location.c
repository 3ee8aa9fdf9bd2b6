/* test_location.c - location privacy (rules L1-L4 of location.h) with expectations worked
 * out by hand: along the equator 0.001 degree of longitude is 111.195 m (R = 6371008.8 m),
 * so a track of such steps has its along-track distances at multiples of 111.195 m.
 * Edge cases: empty, one point, all in a zone, the antimeridian, the poles, NaN. Withheld
 * times (L5, L6): stops by gear P and by speed, kept spans, zones without trimming. */
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

#include "privacy/location.h"
#include "util/err.h"

#define STEP_M 111.19508023 /* 0.001 degree of a great circle */
#define MAXN   64

struct track {
    size_t n;
    int64_t t[MAXN];
    double lat[MAXN], lon[MAXN];
    unsigned char keep[MAXN];
};

/* n points east along the equator from lon0, step 0.001 degree, dt_ms apart from t0. */
static void equator(struct track *tr, size_t n, double lon0, int64_t t0, int64_t dt_ms)
{
    size_t base = tr->n;
    for (size_t i = 0; i < n; i++) {
        tr->t[base + i] = t0 + (int64_t)i * dt_ms;
        tr->lat[base + i] = 0;
        tr->lon[base + i] = lon0 + 0.001 * (double)i;
        tr->keep[base + i] = 1;
    }
    tr->n += n;
}

/* "0000011111" style mask string. */
static void mask(const struct track *tr, char *out)
{
    for (size_t i = 0; i < tr->n; i++)
        out[i] = tr->keep[i] ? '1' : '0';
    out[tr->n] = '\0';
}

static void assert_mask(const struct track *tr, const char *want)
{
    char got[MAXN + 1];
    mask(tr, got);
    if (strcmp(got, want) != 0) fail_msg("mask %s, want %s", got, want);
}

static void test_distance(void **state)
{
    (void)state;
    assert_float_equal(fv_geo_distance_m(0, 0, 0, 1), 111195.080, 0.01);
    assert_float_equal(fv_geo_distance_m(0, 0, 0, 0.001), STEP_M, 1e-6);
    assert_float_equal(fv_geo_distance_m(48.8566, 2.3522, 51.5074, -0.1278), 343556.5, 1);
    /* across the antimeridian: 0.001 degree, not 360 */
    assert_float_equal(fv_geo_distance_m(0, 179.9995, 0, -179.9995), STEP_M, 1e-6);
    /* at a pole every longitude is one point; across it is 0.01 degree */
    assert_float_equal(fv_geo_distance_m(90, 0, 90, 120), 0, 1e-6);
    assert_float_equal(fv_geo_distance_m(89.995, 0, 89.995, 180), 10 * STEP_M, 1e-4);
    /* antipodes: half the circumference, not NaN */
    assert_float_equal(fv_geo_distance_m(0, 0, 0, 180), M_PI * FV_GEO_EARTH_RADIUS_M, 1e-3);
    assert_float_equal(fv_geo_distance_m(45, 10, -45, -170), M_PI * FV_GEO_EARTH_RADIUS_M, 1e-3);
    assert_true(isnan(fv_geo_distance_m(NAN, 0, 0, 0)));
    assert_true(fv_geo_valid(90, 180));
    assert_true(fv_geo_valid(-90, -180));
    assert_false(fv_geo_valid(90.0001, 0));
    assert_false(fv_geo_valid(0, -180.0001));
    assert_false(fv_geo_valid(NAN, 0));
    assert_false(fv_geo_valid(0, INFINITY));
}

static void test_zones(void **state)
{
    (void)state;
    struct track tr = {0};
    equator(&tr, 11, 0, 0, 1000);
    /* 200 m around lon 0.005: points 4, 5, 6 (0 and 111 m away) in, 3 and 7 (222 m) out */
    struct fv_zone home = {0, 0.005, 200};
    assert_int_equal(fv_loc_zones(tr.n, tr.lat, tr.lon, &home, 1, tr.keep), FV_OK);
    assert_mask(&tr, "11110001111");
    /* a second zone of 1 m drops just the point at its centre; zones only ever clear */
    struct fv_zone two[2] = {{0, 0.005, 200}, {0, 0.009, 1}};
    assert_int_equal(fv_loc_zones(tr.n, tr.lat, tr.lon, two, 2, tr.keep), FV_OK);
    assert_mask(&tr, "11110001101");
    /* a zone of 120 m reaches 111.195 m but not 222.39 m */
    memset(tr.keep, 1, tr.n);
    struct fv_zone work = {0, 0.0, 120};
    assert_int_equal(fv_loc_zones(tr.n, tr.lat, tr.lon, &work, 1, tr.keep), FV_OK);
    assert_mask(&tr, "00111111111");
    /* all in one zone */
    memset(tr.keep, 1, tr.n);
    struct fv_zone big = {0, 0.005, 1000};
    assert_int_equal(fv_loc_zones(tr.n, tr.lat, tr.lon, &big, 1, tr.keep), FV_OK);
    assert_mask(&tr, "00000000000");
    /* a zone at the pole, points at 556 m on both sides of it */
    double plat[3] = {89.995, 89.995, 89.98}, plon[3] = {0, 180, 45};
    unsigned char pk[3] = {1, 1, 1};
    struct fv_zone pole = {90, 0, 1000};
    assert_int_equal(fv_loc_zones(3, plat, plon, &pole, 1, pk), FV_OK);
    assert_int_equal(pk[0] + pk[1] * 2 + pk[2] * 4, 4);
    /* a zone across the antimeridian */
    double alat[2] = {0, 0}, alon[2] = {-179.9995, 179.99};
    unsigned char ak[2] = {1, 1};
    struct fv_zone anti = {0, 179.9995, 150};
    assert_int_equal(fv_loc_zones(2, alat, alon, &anti, 1, ak), FV_OK);
    assert_int_equal(ak[0], 0);
    assert_int_equal(ak[1], 1);
    /* bad zones are refused and change nothing */
    memset(tr.keep, 1, tr.n);
    struct fv_zone bad[] = {{0, 0, -1}, {0, 0, NAN}, {0, 0, INFINITY}, {91, 0, 10}, {NAN, 0, 10}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(fv_loc_zones(tr.n, tr.lat, tr.lon, &bad[i], 1, tr.keep), FV_EINVAL);
    assert_int_equal(fv_loc_zones(tr.n, tr.lat, tr.lon, NULL, 1, tr.keep), FV_EINVAL);
    assert_mask(&tr, "11111111111");
    assert_int_equal(fv_loc_zones(0, NULL, NULL, NULL, 0, NULL), FV_OK);
}

static void test_trim(void **state)
{
    (void)state;
    struct track tr = {0};
    /* one trip of 20 points: along-track 0, 111, 222, 333, 445 (<= 500: dropped), 556 ...;
     * the same from the end */
    equator(&tr, 20, 0, 1000000, 10000);
    assert_int_equal(fv_loc_trim(tr.n, tr.t, tr.lat, tr.lon, 500, 300000, tr.keep), FV_OK);
    assert_mask(&tr, "00000111111111100000");
    /* a second trip after a gap of 301 s is trimmed on its own */
    tr.n = 0;
    equator(&tr, 20, 0, 1000000, 10000);
    equator(&tr, 20, 1, 1000000 + 19 * 10000 + 301000, 10000);
    assert_int_equal(fv_loc_trim(tr.n, tr.t, tr.lat, tr.lon, 500, 300000, tr.keep), FV_OK);
    assert_mask(&tr, "0000011111111110000000000111111111100000");
    /* a gap of exactly 300 s does not end a trip (the jump of 1 degree is just a long leg) */
    tr.n = 0;
    equator(&tr, 20, 0, 1000000, 10000);
    equator(&tr, 20, 1, 1000000 + 19 * 10000 + 300000, 10000);
    assert_int_equal(fv_loc_trim(tr.n, tr.t, tr.lat, tr.lon, 500, 300000, tr.keep), FV_OK);
    assert_mask(&tr, "0000011111111111111111111111111111100000");
    /* time going backwards starts a new trip */
    tr.n = 0;
    equator(&tr, 20, 0, 1000000, 10000);
    equator(&tr, 20, 0.019, 500000, 10000);
    assert_int_equal(fv_loc_trim(tr.n, tr.t, tr.lat, tr.lon, 500, 300000, tr.keep), FV_OK);
    assert_mask(&tr, "0000011111111110000000000111111111100000");
    /* a trip shorter than twice the trim distance (7 legs = 778 m) disappears */
    tr.n = 0;
    equator(&tr, 8, 0, 0, 1000);
    assert_int_equal(fv_loc_trim(tr.n, tr.t, tr.lat, tr.lon, 500, 300000, tr.keep), FV_OK);
    assert_mask(&tr, "00000000");
    /* one point is its own start and end */
    tr.n = 0;
    equator(&tr, 1, 0, 0, 1000);
    assert_int_equal(fv_loc_trim(tr.n, tr.t, tr.lat, tr.lon, 500, 300000, tr.keep), FV_OK);
    assert_mask(&tr, "0");
    /* trim 0: nothing; empty: fine */
    tr.n = 0;
    equator(&tr, 3, 0, 0, 1000);
    assert_int_equal(fv_loc_trim(tr.n, tr.t, tr.lat, tr.lon, 0, 300000, tr.keep), FV_OK);
    assert_mask(&tr, "111");
    assert_int_equal(fv_loc_trim(0, NULL, NULL, NULL, 500, 300000, NULL), FV_OK);
    /* an invalid point is skipped: no leg to or from it, no trip boundary */
    tr.n = 0;
    equator(&tr, 21, 0, 0, 10000);
    tr.lat[2] = NAN;
    assert_int_equal(fv_loc_trim(tr.n, tr.t, tr.lat, tr.lon, 500, 300000, tr.keep), FV_OK);
    assert_int_equal(fv_loc_drop_invalid(tr.n, tr.lat, tr.lon, tr.keep), FV_OK);
    assert_mask(&tr, "000001111111111100000");
    /* ... whatever its time says */
    tr.n = 0;
    equator(&tr, 21, 0, 0, 10000);
    tr.lat[10] = NAN;
    tr.t[10] = -5;
    assert_int_equal(fv_loc_trim(tr.n, tr.t, tr.lat, tr.lon, 500, 300000, tr.keep), FV_OK);
    assert_mask(&tr, "000001111111111100000");
    /* across the antimeridian: 11 points, 1112 m in all: only the middle one stays */
    tr.n = 0;
    equator(&tr, 11, 179.995, 0, 1000);
    for (size_t i = 0; i < tr.n; i++)
        if (tr.lon[i] > 180) tr.lon[i] -= 360;
    assert_int_equal(fv_loc_trim(tr.n, tr.t, tr.lat, tr.lon, 500, 300000, tr.keep), FV_OK);
    assert_mask(&tr, "00000100000");
    /* over the north pole in steps of 0.002 degree (222.39 m): only the pole stays */
    double plat[5] = {89.996, 89.998, 90, 89.998, 89.996}, plon[5] = {0, 0, 77, 180, 180};
    int64_t pt[5] = {0, 1000, 2000, 3000, 4000};
    unsigned char pk[5] = {1, 1, 1, 1, 1};
    assert_int_equal(fv_loc_trim(5, pt, plat, plon, 300, 300000, pk), FV_OK);
    assert_int_equal(pk[0] + pk[1] + pk[3] + pk[4], 0);
    assert_int_equal(pk[2], 1);
    /* bad parameters */
    assert_int_equal(fv_loc_trim(tr.n, tr.t, tr.lat, tr.lon, -1, 300000, tr.keep), FV_EINVAL);
    assert_int_equal(fv_loc_trim(tr.n, tr.t, tr.lat, tr.lon, NAN, 300000, tr.keep), FV_EINVAL);
    assert_int_equal(fv_loc_trim(tr.n, tr.t, tr.lat, tr.lon, 500, 0, tr.keep), FV_EINVAL);
    assert_int_equal(fv_loc_trim(tr.n, NULL, tr.lat, tr.lon, 500, 1, tr.keep), FV_EINVAL);
    /* extreme times do not overflow */
    int64_t et[2] = {INT64_MIN, INT64_MAX};
    double el[2] = {0, 0}, eo[2] = {0, 0.01};
    unsigned char ek[2] = {1, 1};
    assert_int_equal(fv_loc_trim(2, et, el, eo, 500, INT64_MAX, ek), FV_OK);
    assert_int_equal(ek[0] + ek[1], 0);
}

static void test_coarsen(void **state)
{
    (void)state;
    /* A grid of pi R / 180 m is one degree of latitude: 180 bands, the band of 48.8566 is
     * 138 (from -90), centre 48.5; it has floor(360 cos 48.5) = 238 cells of 360/238
     * degrees; 2.3522 is in cell floor(182.3522 / (360/238)) = 120, centre
     * -180 + 120.5 * 360 / 238 = 2.268907563. */
    const double g = M_PI * FV_GEO_EARTH_RADIUS_M / 180;
    double lat = 48.8566, lon = 2.3522;
    assert_int_equal(fv_loc_coarsen_point(g, &lat, &lon), FV_OK);
    assert_float_equal(lat, 48.5, 1e-9);
    assert_float_equal(lon, -180 + 120.5 * 360.0 / 238, 1e-9);
    /* a point nearby in the same cell comes out identical */
    double lat2 = 48.9, lon2 = 2.4;
    assert_int_equal(fv_loc_coarsen_point(g, &lat2, &lon2), FV_OK);
    assert_true(lat2 == lat && lon2 == lon);
    /* across the band border: band 139, centre 49.5, floor(360 cos 49.5) = 233 cells,
     * cell floor(182.3522 / (360/233)) = 118 */
    lat2 = 49.01;
    lon2 = 2.3522;
    assert_int_equal(fv_loc_coarsen_point(g, &lat2, &lon2), FV_OK);
    assert_float_equal(lat2, 49.5, 1e-9);
    assert_float_equal(lon2, -180 + 118.5 * 360.0 / 233, 1e-9);
    /* idempotent: a cell centre stays */
    assert_int_equal(fv_loc_coarsen_point(g, &lat2, &lon2), FV_OK);
    assert_float_equal(lat2, 49.5, 1e-9);
    assert_float_equal(lon2, -180 + 118.5 * 360.0 / 233, 1e-9);
    /* the antimeridian: 359 cells at latitude 0.5; 179.9 is in the last, -179.9, -180 and
     * 180 (the same meridian) in the first: no sliver cell, no value beyond +-180 */
    double la[4] = {0.2, 0.2, 0.2, 0.2}, lo[4] = {179.9, -179.9, -180, 180};
    assert_int_equal(fv_loc_coarsen(4, la, lo, g, NULL), FV_OK);
    assert_float_equal(lo[0], -180 + 358.5 * 360.0 / 359, 1e-9);
    assert_float_equal(lo[1], -180 + 0.5 * 360.0 / 359, 1e-9);
    assert_true(lo[2] == lo[1] && lo[3] == lo[1]);
    /* the poles: the top band (89.5) has floor(360 cos 89.5) = 3 cells of 120 degrees */
    double pl[4] = {90, 89.7, -90, 89.2}, po[4] = {10, -170, 0, 179};
    assert_int_equal(fv_loc_coarsen(4, pl, po, g, NULL), FV_OK);
    assert_float_equal(pl[0], 89.5, 1e-9);
    assert_float_equal(po[0], 0, 1e-9); /* cell 1: -180 + 1.5 * 120 */
    assert_float_equal(pl[1], 89.5, 1e-9);
    assert_float_equal(po[1], -120, 1e-9); /* cell 0 */
    assert_float_equal(pl[2], -89.5, 1e-9);
    assert_float_equal(po[3], -180 + 2.5 * 120, 1e-9);
    /* a grid wider than the earth: one cell, (0, 0) */
    lat = 48.8566;
    lon = 2.3522;
    assert_int_equal(fv_loc_coarsen_point(1e9, &lat, &lon), FV_OK);
    assert_true(lat == 0 && lon == 0);
    /* only kept points are changed; invalid ones are left alone */
    double ml[3] = {48.8566, 48.8566, NAN}, mo[3] = {2.3522, 2.3522, 2.3522};
    unsigned char mk[3] = {0, 1, 1};
    assert_int_equal(fv_loc_coarsen(3, ml, mo, g, mk), FV_OK);
    assert_true(ml[0] == 48.8566 && ml[1] == 48.5 && isnan(ml[2]) && mo[2] == 2.3522);
    /* bad grids and points */
    lat = 1;
    lon = 1;
    assert_int_equal(fv_loc_coarsen_point(0.5, &lat, &lon), FV_EINVAL);
    assert_int_equal(fv_loc_coarsen_point(NAN, &lat, &lon), FV_EINVAL);
    assert_int_equal(fv_loc_coarsen_point(INFINITY, &lat, &lon), FV_EINVAL);
    lat = NAN;
    assert_int_equal(fv_loc_coarsen_point(1000, &lat, &lon), FV_EINVAL);
    assert_int_equal(fv_loc_coarsen(1, ml, mo, 0, NULL), FV_EINVAL);
    assert_int_equal(fv_loc_coarsen(0, NULL, NULL, 1000, NULL), FV_OK);
}

/* Every point lands within about half a cell diagonal of where it was (cells about grid_m
 * wide away from the poles), on a cell centre (idempotent), inside the valid range. */
static void test_coarsen_random(void **state)
{
    (void)state;
    unsigned seed = (unsigned)time(NULL);
    printf("seed %u\n", seed);
    srand(seed);
    const double grids[] = {1, 250, 1000, 5000, 100000};
    for (int i = 0; i < 20000; i++) {
        double g = grids[i % 5];
        double lat = -90 + 180.0 * rand() / RAND_MAX, lon = -180 + 360.0 * rand() / RAND_MAX;
        double a = lat, b = lon;
        assert_int_equal(fv_loc_coarsen_point(g, &a, &b), FV_OK);
        assert_true(fv_geo_valid(a, b));
        if (fabs(lat) < 80) {
            double moved = fv_geo_distance_m(lat, lon, a, b);
            if (moved > 0.75 * g)
                fail_msg("seed %u: (%f, %f) moved %f m on grid %f", seed, lat, lon, moved, g);
        }
        double c = a, d = b;
        assert_int_equal(fv_loc_coarsen_point(g, &c, &d), FV_OK);
        if (fabs(c - a) > 1e-9 || fabs(d - b) > 1e-9)
            fail_msg("seed %u: (%f, %f) grid %f not idempotent", seed, lat, lon, g);
    }
}

static void test_apply(void **state)
{
    (void)state;
    struct track tr = {0};
    equator(&tr, 30, 0, 0, 10000);
    tr.lon[12] = NAN;
    struct fv_zone home = {0, 0.020, 300}; /* points 18..22 (<= 222 m) */
    struct fv_loc_params p;
    fv_loc_params_default(&p);
    assert_float_equal(p.trim_m, 500, 0);
    assert_int_equal(p.trip_gap_ms, 300000);
    p.zones = &home;
    p.nzones = 1;
    p.grid_m = 1000;
    memset(tr.keep, 7, tr.n); /* fv_loc_apply sets every entry */
    assert_int_equal(fv_loc_apply(&p, tr.n, tr.t, tr.lat, tr.lon, tr.keep), FV_OK);
    /* trimmed 0..4 and 25..29; NaN 12; zone 18..22 */
    assert_mask(&tr, "000001111111011111000001100000");
    for (size_t i = 0; i < tr.n; i++) {
        if (tr.keep[i]) {
            assert_true(fv_geo_valid(tr.lat[i], tr.lon[i]));
            double a = tr.lat[i], b = tr.lon[i];
            assert_int_equal(fv_loc_coarsen_point(p.grid_m, &a, &b), FV_OK); /* a centre */
            assert_float_equal(a, tr.lat[i], 1e-9);
            assert_float_equal(b, tr.lon[i], 1e-9);
        } else {
            assert_true(isnan(tr.lat[i]) && isnan(tr.lon[i]));
        }
    }
    /* 1 km cells: the 111 m apart points 5..9 share a few cells only */
    assert_true(tr.lat[5] == tr.lat[6]);
    /* all in a zone: nothing survives */
    tr.n = 0;
    equator(&tr, 30, 0, 0, 10000);
    struct fv_zone all = {0, 0.015, 5000};
    p.zones = &all;
    p.grid_m = 0;
    p.trim_m = 0;
    assert_int_equal(fv_loc_apply(&p, tr.n, tr.t, tr.lat, tr.lon, tr.keep), FV_OK);
    assert_mask(&tr, "000000000000000000000000000000");
    /* nothing at all: empty and one point */
    fv_loc_params_default(&p);
    assert_int_equal(fv_loc_apply(&p, 0, NULL, NULL, NULL, NULL), FV_OK);
    tr.n = 0;
    equator(&tr, 1, 0, 0, 1000);
    assert_int_equal(fv_loc_apply(&p, tr.n, tr.t, tr.lat, tr.lon, tr.keep), FV_OK);
    assert_mask(&tr, "0");
    p.trim_m = 0;
    tr.n = 0;
    equator(&tr, 1, 0, 0, 1000);
    assert_int_equal(fv_loc_apply(&p, tr.n, tr.t, tr.lat, tr.lon, tr.keep), FV_OK);
    assert_mask(&tr, "1");
    assert_float_equal(tr.lon[0], 0, 0);
    /* bad parameters change nothing */
    tr.keep[0] = 9;
    p.grid_m = 0.5;
    assert_int_equal(fv_loc_apply(&p, tr.n, tr.t, tr.lat, tr.lon, tr.keep), FV_EINVAL);
    p.grid_m = 0;
    p.trip_gap_ms = -1;
    assert_int_equal(fv_loc_apply(&p, tr.n, tr.t, tr.lat, tr.lon, tr.keep), FV_EINVAL);
    p.trip_gap_ms = 1000;
    p.nzones = 1;
    p.zones = NULL;
    assert_int_equal(fv_loc_apply(&p, tr.n, tr.t, tr.lat, tr.lon, tr.keep), FV_EINVAL);
    assert_int_equal(fv_loc_apply(NULL, tr.n, tr.t, tr.lat, tr.lon, tr.keep), FV_EINVAL);
    assert_int_equal(tr.keep[0], 9);
    assert_float_equal(tr.lon[0], 0, 0);
}

/* ---- L5, L6: withheld times ---------------------------------------------------------- */

struct spans {
    size_t n;
    int64_t from[MAXN], to[MAXN];
};

static int collect(void *arg, int64_t from, int64_t to)
{
    struct spans *w = arg;
    assert_true(w->n < MAXN);
    assert_true(from <= to);
    if (w->n) assert_true(from >= w->from[w->n - 1]); /* in increasing order of from */
    w->from[w->n] = from;
    w->to[w->n++] = to;
    return 0;
}

static int withheld_at(const struct spans *w, int64_t t)
{
    for (size_t i = 0; i < w->n; i++)
        if (t >= w->from[i] && t <= w->to[i]) return 1;
    return 0;
}

/* n moving samples east along the equator, 0.001 degree and 10 s apart, from sample k0. */
static size_t drive(struct fv_loc_sample *s, size_t at, size_t n, double lon0, int64_t t0)
{
    for (size_t i = 0; i < n; i++)
        s[at + i] =
            (struct fv_loc_sample){t0 + (int64_t)i * 10000, 0, lon0 + 0.001 * (double)i, 10.0, 0};
    return at + n;
}

static void test_withheld(void **state)
{
    (void)state;
    struct fv_loc_params p;
    fv_loc_params_default(&p);
    p.trim_m = 300; /* 2.7 steps: the first and last 3 points of a trip go */
    struct fv_loc_sample s[MAXN];
    struct spans w = {0};
    /* No samples: no trip, everything withheld. */
    assert_int_equal(fv_loc_withheld(&p, s, 0, collect, &w), FV_OK);
    assert_int_equal(w.n, 1);
    assert_true(w.from[0] == INT64_MIN && w.to[0] == INT64_MAX);

    /* One trip of 10 points: kept span from point 3 to point 6. */
    size_t n = drive(s, 0, 10, 0, 0);
    memset(&w, 0, sizeof w);
    assert_int_equal(fv_loc_withheld(&p, s, n, collect, &w), FV_OK);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(withheld_at(&w, s[i].t), i < 3 || i > 6);
    assert_true(withheld_at(&w, 35000) == 0 && withheld_at(&w, 60000) == 0);
    assert_true(withheld_at(&w, 29999) && withheld_at(&w, 60001) && withheld_at(&w, INT64_MAX));

    /* Parked in P between two trips (no gap): the stop and both trips' ends go. */
    n = drive(s, 0, 10, 0, 0);
    for (size_t i = 0; i < 5; i++) /* 5 samples in P at the last point, 60 s apart */
        s[n++] = (struct fv_loc_sample){100000 + (int64_t)i * 60000, 0, 0.009, NAN, 1};
    n = drive(s, n, 10, 0.010, 400000);
    s[15].park = 0; /* drives off in D */
    memset(&w, 0, sizeof w);
    assert_int_equal(fv_loc_withheld(&p, s, n, collect, &w), FV_OK);
    for (size_t i = 0; i < n; i++) {
        int kept = (i >= 3 && i <= 6) || (i >= 18 && i <= 21);
        assert_int_equal(withheld_at(&w, s[i].t), !kept);
    }
    /* Speed 0 for less than stop_ms does not stop a trip; for longer it does. */
    for (int longer = 0; longer < 2; longer++) {
        n = drive(s, 0, 10, 0, 0);
        int64_t halt = longer ? 200000 : 100000;
        s[n++] = (struct fv_loc_sample){95000, 0, 0.009, 0.0, -1};
        n = drive(s, n, 10, 0.010, 95000 + halt);
        memset(&w, 0, sizeof w);
        assert_int_equal(fv_loc_withheld(&p, s, n, collect, &w), FV_OK);
        assert_int_equal(withheld_at(&w, s[9].t), longer); /* the halt's neighbour */
        assert_int_equal(withheld_at(&w, 95000), longer);  /* the halt itself */
    }
    /* trim 0: zones only, from a point inside one to just before the next point. */
    struct fv_zone z = {0, 0.004, 10};
    p.trim_m = 0;
    p.zones = &z;
    p.nzones = 1;
    n = drive(s, 0, 10, 0, 0);
    memset(&w, 0, sizeof w);
    assert_int_equal(fv_loc_withheld(&p, s, n, collect, &w), FV_OK);
    assert_int_equal(w.n, 1);
    assert_true(w.from[0] == 40000 && w.to[0] == 49999);
    /* Bad parameters. */
    p.stop_speed = -1;
    assert_int_equal(fv_loc_withheld(&p, s, n, collect, &w), FV_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distance),       cmocka_unit_test(test_zones),
        cmocka_unit_test(test_trim),           cmocka_unit_test(test_coarsen),
        cmocka_unit_test(test_coarsen_random), cmocka_unit_test(test_apply),
        cmocka_unit_test(test_withheld),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
