/* test_baseline.c - baselines (energy/baseline.h) against hand-computed cases: A.4 discharge
 * and Group A load with its day-of adjustment clamped at both bounds; excluded days (fleet
 * and site) and days with missing data skipped; fewer than baseline_days eligible days; below
 * the program's minimum (no baseline); windows and outage days by local time across DST. */
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

#include "energy/baseline.h"
#include "util/err.h"

#define CLOSE(a, b) assert_true(fabs((a) - (double)(b)) <= 1e-9 * (1 + fabs((double)(b))))

static int64_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm t = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&t) * 1000;
}

/* Event 2026-08-17 16:00-18:00 PDT (23:00Z-01:00Z): 24 intervals, 2 slots; 2 adjustment hours
 * (24 intervals) before it; 15 prior days looked at. Day k is 2026-08-(17 - k). */
struct fixture {
    struct fv_vpp_program p;
    struct fv_vpp_baseline_plan plan;
    double kwh[16 * 48];
};

static void setup(struct fixture *f, enum fv_vpp_method m, const int32_t *excl, size_t nexcl)
{
    fv_vpp_program_defaults(&f->p, "t");
    f->p.method = m;
    f->p.adj_hours = 2;
    f->p.lookback_days = 15;
    char err[256];
    assert_int_equal(fv_vpp_baseline_plan(&f->p, utc(2026, 8, 17, 23, 0), utc(2026, 8, 18, 1, 0),
                                          excl, nexcl, &f->plan, err, sizeof err),
                     FV_OK);
    assert_int_equal(f->plan.win_len, 48);
    assert_int_equal(f->plan.nslots, 2);
    assert_int_equal(f->plan.ndays, 15);
}

/* Day k's pre-event (adjustment) intervals to pre, its event intervals to ev. */
static void fill(struct fixture *f, int k, double pre, double ev)
{
    for (int i = 0; i < 48; i++)
        f->kwh[k * 48 + i] = i < 24 ? pre : ev;
}

static void test_plan_windows(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, FV_VPP_A4_DISCHARGE, NULL, 0);
    assert_int_equal(f.plan.date[0], 20260817);
    assert_int_equal(f.plan.date[1], 20260816);
    assert_int_equal(f.plan.date[15], 20260802);
    assert_true(f.plan.win_start_ms[0] == utc(2026, 8, 17, 21, 0));
    assert_true(f.plan.win_start_ms[3] == utc(2026, 8, 14, 21, 0));
    /* Across the spring change: 16:00 local is 23:00Z after it, 00:00Z (next day) before. */
    struct fv_vpp_baseline_plan plan;
    char err[256];
    assert_int_equal(fv_vpp_baseline_plan(&f.p, utc(2026, 3, 9, 23, 0), utc(2026, 3, 10, 0, 0),
                                          NULL, 0, &plan, err, sizeof err),
                     FV_OK);
    assert_true(plan.win_start_ms[1] == utc(2026, 3, 8, 21, 0));
    assert_true(plan.win_start_ms[2] == utc(2026, 3, 7, 22, 0));
    assert_int_equal(plan.date[2], 20260307);
    assert_int_equal(fv_vpp_baseline_plan(&f.p, utc(2026, 8, 17, 23, 1), utc(2026, 8, 18, 0, 0),
                                          NULL, 0, &plan, err, sizeof err),
                     FV_EINVAL);
    assert_string_equal(err, "an event to settle starts and ends on its program's 5-minute "
                             "boundaries");
}

static void test_a4(void **state)
{
    (void)state;
    /* The fleet excludes 08-15 (k 2, an ELRP event day), the site 08-12 (k 5, an outage). */
    int32_t fleet[] = {20260815}, site[] = {20260812};
    struct fixture f;
    setup(&f, FV_VPP_A4_DISCHARGE, fleet, 1);
    for (int k = 1; k <= 15; k++)
        fill(&f, k, 0.3, k % 2 ? 0.1 : 0.2);
    fill(&f, 2, 0, 5.0);
    fill(&f, 5, 0, 5.0);
    f.kwh[3 * 48 + 30] = NAN; /* k 3: an event-hour interval missing: skipped */
    f.kwh[4 * 48 + 3] = NAN;  /* k 4: missing before the event only: A.4 does not read it */
    fill(&f, 0, 0, 0.4);
    struct fv_vpp_site_series s = {f.kwh, site, 1};
    struct fv_vpp_baseline_result r;
    assert_int_equal(fv_vpp_baseline(&f.plan, &s, &r), FV_OK);
    assert_int_equal(r.status, FV_VPP_BL_OK);
    assert_string_equal(r.reason, "");
    /* k 1, 4, 6..13: 08-16, 08-13, 08-11 .. 08-04. */
    static const int32_t want[10] = {20260816, 20260813, 20260811, 20260810, 20260809,
                                     20260808, 20260807, 20260806, 20260805, 20260804};
    assert_int_equal(r.ndays, 10);
    assert_memory_equal(r.days, want, sizeof want);
    assert_int_equal(r.skipped_excluded, 2);
    assert_int_equal(r.skipped_missing, 1);
    /* Odd k (1, 7, 9, 11, 13) at 0.1/interval, even (4, 6, 8, 10, 12) at 0.2: slot average
     * 12 * 0.15 = 1.8 kWh; 2 slots: 3.6. Metered 24 * 0.4 = 9.6; incremental 6.0. */
    CLOSE(r.slot_baseline_kwh[0], 1.8);
    CLOSE(r.slot_baseline_kwh[1], 1.8);
    CLOSE(r.baseline_kwh, 3.6);
    CLOSE(r.metered_kwh, 9.6);
    CLOSE(r.incremental_kwh, 6.0);
    assert_true(r.adj == 1);
    /* A missing event interval counts as no discharge; an owner who always discharges at the
     * peak earns nothing. */
    f.kwh[24] = NAN;
    assert_int_equal(fv_vpp_baseline(&f.plan, &s, &r), FV_OK);
    CLOSE(r.metered_kwh, 9.2);
    CLOSE(r.incremental_kwh, 5.6);
    fill(&f, 0, 0, 0.1);
    assert_int_equal(fv_vpp_baseline(&f.plan, &s, &r), FV_OK);
    CLOSE(r.metered_kwh, 2.4);
    assert_true(r.incremental_kwh == 0);
}

static void test_group_a_adjustment(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, FV_VPP_GROUP_A, NULL, 0);
    /* Prior days: 1.0 kWh/interval before the event (24 kWh over the 2 h), 0.5 during it (6 kWh
     * an hour, 12 in all). The event day exports during the event: -0.2/interval, -4.8 kWh. */
    for (int k = 1; k <= 15; k++)
        fill(&f, k, 1.0, 0.5);
    f.kwh[1 * 48 + 5] = NAN; /* k 1 misses a pre-event interval: Group A reads it: skipped */
    struct fv_vpp_site_series s = {f.kwh, NULL, 0};
    struct fv_vpp_baseline_result r;
    static const struct {
        double pre, raw, adj, baseline, incremental;
    } cases[] = {
        {2.0, 2.0, 1.4, 16.8, 21.6}, /* clamped at the upper bound */
        {0.5, 0.5, 1.0, 12.0, 16.8}, /* clamped at the lower bound */
        {1.2, 1.2, 1.2, 14.4, 19.2}, /* inside */
    };
    for (size_t c = 0; c < 3; c++) {
        fill(&f, 0, cases[c].pre, -0.2);
        assert_int_equal(fv_vpp_baseline(&f.plan, &s, &r), FV_OK);
        assert_int_equal(r.status, FV_VPP_BL_OK);
        assert_int_equal(r.ndays, 10);
        assert_int_equal(r.days[0], 20260815);
        assert_int_equal(r.days[9], 20260806);
        assert_int_equal(r.skipped_missing, 1);
        CLOSE(r.adj_raw, cases[c].raw);
        CLOSE(r.adj, cases[c].adj);
        CLOSE(r.slot_baseline_kwh[0], 6 * cases[c].adj);
        CLOSE(r.baseline_kwh, cases[c].baseline);
        CLOSE(r.metered_kwh, -4.8);
        CLOSE(r.incremental_kwh, cases[c].incremental);
    }
    /* A load above the baseline: no reduction, nothing paid. */
    fill(&f, 0, 1.0, 2.0);
    assert_int_equal(fv_vpp_baseline(&f.plan, &s, &r), FV_OK);
    CLOSE(r.baseline_kwh, 12);
    assert_true(r.incremental_kwh == 0);
    /* Undefined factor (prior days exporting before the event): the lower bound. */
    for (int k = 1; k <= 15; k++)
        fill(&f, k, -1.0, 0.5);
    fill(&f, 0, 3.0, -0.2);
    assert_int_equal(fv_vpp_baseline(&f.plan, &s, &r), FV_OK);
    assert_true(isnan(r.adj_raw));
    assert_true(r.adj == 1.0);
    CLOSE(r.baseline_kwh, 12);
    /* A missing interval during the event: no baseline. */
    f.kwh[30] = NAN;
    assert_int_equal(fv_vpp_baseline(&f.plan, &s, &r), FV_OK);
    assert_int_equal(r.status, FV_VPP_BL_NONE);
    assert_string_equal(r.reason,
                        "1 of the event's 24 intervals missing: the load reduction cannot be "
                        "measured");
    assert_true(r.incremental_kwh == 0 && r.baseline_kwh == 0);
}

static void test_few_days(void **state)
{
    (void)state;
    int32_t fleet[] = {20260814, 20260811};
    struct fixture f;
    setup(&f, FV_VPP_A4_DISCHARGE, fleet, 2);
    f.plan.ndays = 8;             /* 8 days looked at, 2 excluded: 6 eligible */
    f.plan.min_eligible_days = 5; /* ... at least 5 needed */
    for (int k = 0; k <= 15; k++)
        fill(&f, k, 0, 0.1 * k);
    struct fv_vpp_site_series s = {f.kwh, NULL, 0};
    struct fv_vpp_baseline_result r;
    assert_int_equal(fv_vpp_baseline(&f.plan, &s, &r), FV_OK);
    assert_int_equal(r.status, FV_VPP_BL_FEW);
    assert_int_equal(r.ndays, 6);
    assert_string_equal(r.reason, "6 eligible days in the 8 before the event, fewer than the "
                                  "program's 10: baseline from 6 days");
    /* k 1, 2, 4, 5, 7, 8: mean 0.1 * 27 / 6 = 0.45/interval, 5.4 an hour, 10.8 in all; the
     * event day (k 0) discharged nothing. */
    CLOSE(r.baseline_kwh, 10.8);
    assert_true(r.incremental_kwh == 0);
    /* Below the program's minimum: no baseline, and the reason. */
    f.plan.min_eligible_days = 7;
    assert_int_equal(fv_vpp_baseline(&f.plan, &s, &r), FV_OK);
    assert_int_equal(r.status, FV_VPP_BL_NONE);
    assert_string_equal(r.reason, "6 eligible days in the 8 before the event (2 excluded, 0 with "
                                  "missing data), the program needs 7");
    assert_true(r.baseline_kwh == 0 && r.incremental_kwh == 0);
    assert_int_equal(fv_vpp_baseline(&f.plan, NULL, &r), FV_EINVAL);
}

static void test_interval_energy(void **state)
{
    (void)state;
    int64_t t0 = utc(2026, 8, 17, 23, 0), S = 1000, IV = 300 * S;
    const int64_t t[] = {t0, t0 + 60 * S, t0 + 240 * S, t0 + 300 * S, t0 + 330 * S, t0 + 400 * S};
    const double kw[] = {2, 4, -1, 3, NAN, 1};
    double e[4];
    /* Held up to 5 min: [0, 300 s) is 2 kW x 60 s + 4 x 180 - 1 x 60 = 780 kWs; the next
     * meets a NaN power at 330 s; the third a gap after 400 + 300 s; the last no sample. */
    assert_int_equal(fv_vpp_interval_energy(t, kw, 6, 300 * S, 0, t0, IV, 4, e), FV_OK);
    CLOSE(e[0], 780.0 / 3600);
    assert_true(isnan(e[1]) && isnan(e[2]) && isnan(e[3]));
    /* Discharge only (battery kW, + discharge): the -1 kW minute counts 0. */
    assert_int_equal(fv_vpp_interval_energy(t, kw, 6, 300 * S, 1, t0, IV, 1, e), FV_OK);
    CLOSE(e[0], 840.0 / 3600);
    /* Held up to 2 min: 180-240 s is uncovered. Before the first sample: missing. */
    assert_int_equal(fv_vpp_interval_energy(t, kw, 6, 120 * S, 0, t0, IV, 1, e), FV_OK);
    assert_true(isnan(e[0]));
    assert_int_equal(fv_vpp_interval_energy(t, kw, 6, 300 * S, 0, t0 - 300 * S, IV, 2, e), FV_OK);
    assert_true(isnan(e[0]));
    CLOSE(e[1], 780.0 / 3600);
    assert_int_equal(fv_vpp_interval_energy(t, kw, 0, 300 * S, 0, t0, IV, 1, e), FV_OK);
    assert_true(isnan(e[0]));
    /* 1 Hz at 6 kW for 10 minutes: 0.5 kWh an interval, exactly. */
    int64_t tt[600];
    double p[600];
    for (int i = 0; i < 600; i++) {
        tt[i] = t0 + i * S;
        p[i] = 6;
    }
    assert_int_equal(fv_vpp_interval_energy(tt, p, 600, 2 * S, 1, t0, IV, 2, e), FV_OK);
    assert_true(e[0] == 0.5 && e[1] == 0.5);
    assert_int_equal(fv_vpp_interval_energy(t, kw, 6, 300 * S, 0, t0 + 1, IV, 1, e), FV_EINVAL);
    assert_int_equal(fv_vpp_interval_energy(t, kw, 6, 0, 0, t0, IV, 1, e), FV_EINVAL);
    const int64_t back[] = {t0 + S, t0};
    assert_int_equal(fv_vpp_interval_energy(back, kw, 2, 300 * S, 0, t0, IV, 1, e), FV_EINVAL);
}

static void test_outage_dates(void **state)
{
    (void)state;
    struct fv_vpp_program p;
    fv_vpp_program_defaults(&p, "t");
    /* Three local days from 2026-03-07 00:00 PST (08:00Z); 03-08 has 23 hours (276 intervals). */
    int64_t t0 = utc(2026, 3, 7, 8, 0);
    size_t n = 288 + 276 + 288;
    double *v = calloc(n, sizeof *v);
    assert_non_null(v);
    /* 03-07: 13 missing (> 12): an outage day. 03-09 00:00 PDT is interval 564: 12 missing
     * from there and 1 just before it (on 03-08): neither day is over the threshold. A day
     * cut at 288 intervals would put all 13 on 03-08. */
    for (int i = 100; i < 113; i++)
        v[i] = NAN;
    for (int i = 563; i < 576; i++)
        v[i] = NAN;
    int32_t dates[4];
    size_t nd;
    assert_int_equal(fv_vpp_outage_dates(&p, t0, v, n, dates, 4, &nd), FV_OK);
    assert_int_equal(nd, 1);
    assert_int_equal(dates[0], 20260307);
    v[562] = NAN; /* 2 on 03-08 now; 03-09 still 12 */
    p.outage_missing = 1;
    assert_int_equal(fv_vpp_outage_dates(&p, t0, v, n, dates, 4, &nd), FV_OK);
    assert_int_equal(nd, 3);
    assert_int_equal(dates[1], 20260308);
    assert_int_equal(dates[2], 20260309);
    assert_int_equal(fv_vpp_outage_dates(&p, t0, v, n, dates, 2, &nd), FV_ELIMIT);
    assert_int_equal(fv_vpp_outage_dates(&p, t0 + 1, v, n, dates, 4, &nd), FV_EINVAL);
    free(v);
}

/* The program's interval_minutes: 1-minute intervals, an hour slot of 60 of them. */
static void test_one_minute_intervals(void **state)
{
    (void)state;
    struct fv_vpp_program p;
    fv_vpp_program_defaults(&p, "t");
    p.interval_min = 1;
    p.adj_hours = 1;
    p.lookback_days = 12;
    struct fv_vpp_baseline_plan plan;
    char err[256];
    /* A4, 2026-08-17 23:00-23:03Z: 60 + 3 intervals a window, one (short) slot. */
    int64_t t0 = utc(2026, 8, 17, 23, 0);
    assert_int_equal(
        fv_vpp_baseline_plan(&p, t0 + 60000, t0 + 240000, NULL, 0, &plan, err, sizeof err), FV_OK);
    assert_int_equal(
        fv_vpp_baseline_plan(&p, t0 + 30000, t0 + 240000, NULL, 0, &plan, err, sizeof err),
        FV_EINVAL);
    assert_string_equal(err, "an event to settle starts and ends on its program's 1-minute "
                             "boundaries");
    int32_t fleet[] = {20260815}, site[] = {20260813};
    assert_int_equal(fv_vpp_baseline_plan(&p, t0, t0 + 180000, fleet, 1, &plan, err, sizeof err),
                     FV_OK);
    assert_true(plan.interval_ms == 60000);
    assert_int_equal(plan.slot_len, 60);
    assert_int_equal(plan.adj_len, 60);
    assert_int_equal(plan.event_len, 3);
    assert_int_equal(plan.win_len, 63);
    assert_int_equal(plan.nslots, 1);
    assert_true(plan.win_start_ms[1] == utc(2026, 8, 16, 22, 0));
    double kwh[13 * 63];
    for (int k = 0; k <= 12; k++)
        for (int i = 0; i < 63; i++)
            kwh[k * 63 + i] = i < 60 ? 0.5 : (k ? 0.01 * k : 0.1);
    struct fv_vpp_site_series s = {kwh, site, 1};
    struct fv_vpp_baseline_result r;
    assert_int_equal(fv_vpp_baseline(&plan, &s, &r), FV_OK);
    assert_int_equal(r.status, FV_VPP_BL_OK);
    assert_int_equal(r.skipped_excluded, 2);
    assert_int_equal(r.ndays, 10);
    assert_int_equal(r.days[1], 20260814); /* k 3: k 2 (fleet) and k 4 (site) left out */
    assert_int_equal(r.days[2], 20260812);
    /* k 1, 3, 5..12: sum 72, so 0.072 kWh an interval on average, 0.216 over 3; metered
     * 0.3. */
    CLOSE(r.baseline_kwh, 0.216);
    CLOSE(r.metered_kwh, 0.3);
    CLOSE(r.incremental_kwh, 0.084);

    /* Group A, 23:00-00:30Z: slots of 60 and 30 intervals; adjustment over the hour before. */
    p.method = FV_VPP_GROUP_A;
    p.lookback_days = 10;
    struct fv_vpp_baseline_plan ga;
    assert_int_equal(fv_vpp_baseline_plan(&p, t0, t0 + 90 * 60000, NULL, 0, &ga, err, sizeof err),
                     FV_OK);
    assert_int_equal(ga.nslots, 2);
    assert_int_equal(ga.win_len, 150);
    double *v = malloc(11 * 150 * sizeof *v);
    assert_non_null(v);
    for (int k = 0; k <= 10; k++)
        for (int i = 0; i < 150; i++)
            v[k * 150 + i] = k == 0    ? (i < 60 ? 0.025 : -0.01)
                             : i < 60  ? 0.02
                             : i < 120 ? 0.03
                                       : 0.01;
    s = (struct fv_vpp_site_series){v, NULL, 0};
    assert_int_equal(fv_vpp_baseline(&ga, &s, &r), FV_OK);
    /* adj 0.025 / 0.02 = 1.25; slots 60 x 0.03 x 1.25 = 2.25 and 30 x 0.01 x 1.25 = 0.375;
     * metered -0.9; incremental 2.625 + 0.9. */
    CLOSE(r.adj, 1.25);
    CLOSE(r.slot_baseline_kwh[0], 2.25);
    CLOSE(r.slot_baseline_kwh[1], 0.375);
    CLOSE(r.metered_kwh, -0.9);
    CLOSE(r.incremental_kwh, 3.525);
    free(v);

    /* Interval energy by the minute: 3 kW sampled every 2 s is 0.05 kWh a minute. */
    int64_t tt[90];
    double kw[90], e[3];
    for (int i = 0; i < 90; i++) {
        tt[i] = t0 + i * 2000;
        kw[i] = 3;
    }
    assert_int_equal(fv_vpp_interval_energy(tt, kw, 90, 4000, 1, t0, 60000, 3, e), FV_OK);
    CLOSE(e[0], 0.05);
    CLOSE(e[2], 0.05);
    assert_int_equal(fv_vpp_interval_energy(tt, kw, 90, 4000, 1, t0 + 30000, 60000, 1, e),
                     FV_EINVAL);
    assert_int_equal(fv_vpp_interval_energy(tt, kw, 90, 4000, 1, t0, 0, 1, e), FV_EINVAL);

    /* Outage days count 1-minute intervals: 1440 a day (08-17 PDT from 07:00Z). */
    double *day = calloc(2 * 1440, sizeof *day);
    assert_non_null(day);
    for (int i = 1440 + 100; i < 1440 + 113; i++)
        day[i] = NAN; /* 13 minutes missing on 08-18 */
    int32_t dates[2];
    size_t nd;
    assert_int_equal(fv_vpp_outage_dates(&p, utc(2026, 8, 17, 7, 0), day, 2 * 1440, dates, 2, &nd),
                     FV_OK);
    assert_int_equal(nd, 1);
    assert_int_equal(dates[0], 20260818);
    p.outage_missing = 13;
    assert_int_equal(fv_vpp_outage_dates(&p, utc(2026, 8, 17, 7, 0), day, 2 * 1440, dates, 2, &nd),
                     FV_OK);
    assert_int_equal(nd, 0);
    free(day);
}

/* A site's outage days among a plan's prior days, from its samples over the days whole. */
static void test_site_outages(void **state)
{
    (void)state;
    struct fv_vpp_program p;
    fv_vpp_program_defaults(&p, "t");
    p.lookback_days = 3;
    struct fv_vpp_baseline_plan plan;
    char err[256];
    /* 2026-08-17 16:00-17:00 PDT; prior days 08-16, 08-15, 08-14 from 08-14 00:00 PDT. */
    assert_int_equal(fv_vpp_baseline_plan(&p, utc(2026, 8, 17, 23, 0), utc(2026, 8, 18, 0, 0), NULL,
                                          0, &plan, err, sizeof err),
                     FV_OK);
    assert_true(plan.days_from_ms == utc(2026, 8, 14, 7, 0));
    assert_true(plan.days_to_ms == utc(2026, 8, 17, 7, 0));
    /* A sample every 5 minutes, but none for 2 h on 08-15 (an outage: 23 intervals missing
     * with a 10-minute hold), none from 19:05 to 20:10 on 08-16 (the 19:00 sample holds to
     * 19:10: 13 missing, one over the threshold; a 20-minute hold would leave 11) and none for
     * 30 minutes on 08-14 (5 missing: not an outage). */
    int64_t t0 = plan.days_from_ms, M = 60000;
    size_t cap = 4 * 288, n = 0;
    int64_t *t = malloc(cap * sizeof *t);
    double *kw = malloc(cap * sizeof *kw);
    assert_true(t && kw);
    for (int64_t x = t0; x < plan.end_ms; x += 5 * M) {
        if ((x >= utc(2026, 8, 15, 19, 0) && x < utc(2026, 8, 15, 21, 0)) ||
            (x > utc(2026, 8, 16, 19, 0) && x < utc(2026, 8, 16, 20, 15)) ||
            (x > utc(2026, 8, 14, 19, 0) && x < utc(2026, 8, 14, 19, 35)))
            continue;
        t[n] = x;
        kw[n++] = 1;
    }
    int32_t out[4];
    size_t nout;
    assert_int_equal(fv_vpp_site_outages(&p, &plan, t, kw, n, 10 * M, out, &nout), FV_OK);
    assert_int_equal(nout, 2);
    assert_int_equal(out[0], 20260815);
    assert_int_equal(out[1], 20260816);
    /* No sample at all: every prior day is an outage day. */
    assert_int_equal(fv_vpp_site_outages(&p, &plan, t, kw, 0, 10 * M, out, &nout), FV_OK);
    assert_int_equal(nout, 3);
    assert_int_equal(out[0], 20260814);
    assert_int_equal(out[2], 20260816);
    free(t);
    free(kw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_windows),         cmocka_unit_test(test_a4),
        cmocka_unit_test(test_group_a_adjustment),   cmocka_unit_test(test_few_days),
        cmocka_unit_test(test_interval_energy),      cmocka_unit_test(test_outage_dates),
        cmocka_unit_test(test_one_minute_intervals), cmocka_unit_test(test_site_outages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
