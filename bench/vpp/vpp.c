/*
 * vpp.c - the virtual power plant's core on one core: dispatch of SITES sites and their
 * settlement for a 5-hour event (src/energy/).
 *
 *   build/vpp_bench [SITES [ROUNDS]]          (defaults 1,000,000 sites, 5 rounds)
 *
 * Dispatch: SITES sites (seeded: Powerwall 2 or 3 sizes, random state of charge, reserve,
 * export limit; 10 % offline, 8 % opted out), 5 h left, a target of half the fleet's
 * deliverable power (the case that sorts), then mode max; ROUNDS times, min and median.
 *
 * Settlement: an event 2026-08-17 16:00-21:00 America/Los_Angeles, baselines over the 10
 * newest eligible of the 14 prior days (2 fleet-wide ELRP event days excluded; 1 site in 50
 * with an outage day of its own; 1 in 200 with missing intervals), 3 adjustment hours, for
 * each method (a4_discharge, group_a): per site, its 15 windows of 96 five-minute values
 * (1,440 values: the 5 h event and 3 h before it, on the event day and 14 prior days) are
 * generated into one buffer (timed apart: "gen_s"), then the baseline, the settlement row
 * (rounded), then the CSV of all rows and the season total. Prints one JSON line.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "energy/baseline.h"
#include "energy/dispatch.h"
#include "energy/settle.h"
#include "util/clock.h"
#include "util/err.h"

static double now_s(void)
{
    return (double)fv_mono_ns() / 1e9;
}

static uint64_t rng = 88172645463325252ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double uni(void)
{
    return (double)(next() >> 11) / 9007199254740992.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_dispatch(size_t n, int rounds, double *tgt_min, double *tgt_med, double *max_min,
                           size_t *active)
{
    struct fv_vpp_site *s = malloc(n * sizeof *s);
    double *x = malloc(n * sizeof *x), *t = malloc((size_t)rounds * sizeof *t);
    if (!s || !x || !t) exit(1);
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        int pw3 = next() % 3 == 0;
        s[i].online = next() % 10 != 0;
        s[i].opted_out = next() % 12 == 0;
        s[i].inverter_kw = pw3 ? 11.5 : 5;
        s[i].export_limit_kw = (double)(3 + next() % 8);
        s[i].capacity_kwh = 13.5;
        s[i].energy_kwh = 13.5 * uni();
        s[i].reserve_pct = (double)(next() % 5) * 10;
        total += fv_vpp_deliverable_kw(&s[i], 5);
    }
    struct fv_vpp_plan plan;
    for (int r = 0; r < rounds; r++) {
        double t0 = now_s();
        if (fv_vpp_dispatch(s, n, 5, FV_VPP_TARGET, total / 2, x, &plan) != FV_OK) exit(1);
        t[r] = now_s() - t0;
    }
    *active = plan.sites_active;
    qsort(t, (size_t)rounds, sizeof *t, cmp_double);
    *tgt_min = t[0];
    *tgt_med = t[rounds / 2];
    *max_min = 1e9;
    for (int r = 0; r < rounds; r++) {
        double t0 = now_s();
        if (fv_vpp_dispatch(s, n, 5, FV_VPP_MAX, 0, x, &plan) != FV_OK) exit(1);
        double d = now_s() - t0;
        if (d < *max_min) *max_min = d;
    }
    free(s);
    free(x);
    free(t);
}

struct settle_out {
    double gen_s, baseline_s, csv_s;
    size_t csv_bytes, no_baseline;
    struct fv_vpp_settle_total total;
};

static int bench_settle(size_t n, enum fv_vpp_method m, struct settle_out *o)
{
    struct fv_vpp_program p;
    fv_vpp_program_defaults(&p, "elrp");
    p.method = m;
    p.lookback_days = 14;
    static const int32_t fleet_excl[] = {20260814, 20260811};
    struct fv_vpp_baseline_plan plan;
    char err[256];
    /* 2026-08-17 16:00 PDT = 23:00Z; 5 h. */
    int64_t start = 1787007600000ll, end = start + 5 * 3600000ll;
    if (fv_vpp_baseline_plan(&p, start, end, fleet_excl, 2, &plan, err, sizeof err) != FV_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t win = plan.win_len, days = (size_t)plan.ndays + 1, len = win * days;
    /* Day profiles: load (or discharge) with an evening peak, 15 variants. */
    double *prof = malloc(len * sizeof *prof), *kwh = malloc(len * sizeof *kwh);
    struct fv_vpp_settle_row *rows = malloc(n * sizeof *rows);
    char(*names)[16] = malloc(n * 16);
    if (!prof || !kwh || !rows || !names) return 1;
    for (size_t d = 0; d < days; d++)
        for (size_t i = 0; i < win; i++)
            prof[d * win + i] =
                (m == FV_VPP_GROUP_A ? 0.12 : 0.05) * (0.5 + uni()) +
                (d == 0 && i >= plan.adj_len ? (m == FV_VPP_GROUP_A ? -0.2 : 0.3) : 0);
    struct fv_vpp_baseline_result r;
    int32_t outage[1];
    o->gen_s = o->baseline_s = 0;
    o->no_baseline = 0;
    for (size_t i = 0; i < n; i++) {
        double t0 = now_s();
        double scale = 0.5 + (double)(i % 97) / 97.0;
        for (size_t j = 0; j < len; j++)
            kwh[j] = prof[j] * scale;
        if (i % 200 == 7) kwh[win * (1 + i % 14) + 40] = NAN;
        struct fv_vpp_site_series s = {kwh, outage, 0};
        if (i % 50 == 3) {
            outage[0] = plan.date[1 + i % 14];
            s.nexcluded = 1;
        }
        snprintf(names[i], 16, "s%07zu", i);
        double t1 = now_s();
        if (fv_vpp_baseline(&plan, &s, &r) != FV_OK ||
            fv_vpp_settle_row(&rows[i], names[i], "ev-20260817", &p, &r) != FV_OK)
            return 1;
        o->no_baseline += r.status == FV_VPP_BL_NONE;
        double t2 = now_s();
        o->gen_s += t1 - t0;
        o->baseline_s += t2 - t1;
    }
    double t0 = now_s();
    struct fv_buf csv = {0};
    if (fv_vpp_settle_csv(&csv, rows, n, 1) != FV_OK) return 1;
    fv_vpp_settle_sum(rows, n, &o->total);
    o->csv_s = now_s() - t0;
    o->csv_bytes = csv.len;
    fv_buf_free(&csv);
    free(prof);
    free(kwh);
    free(rows);
    free(names);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 1000000;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (n == 0 || rounds < 1) {
        fprintf(stderr, "usage: vpp_bench [SITES [ROUNDS]]\n");
        return 2;
    }
    double tmin, tmed, mmin;
    size_t active;
    bench_dispatch(n, rounds, &tmin, &tmed, &mmin, &active);
    printf("{\"sites\":%zu,\"dispatch_target_s_min\":%.3f,\"dispatch_target_s_median\":%.3f,"
           "\"dispatch_max_s_min\":%.3f,\"sites_active\":%zu",
           n, tmin, tmed, mmin, active);
    static const enum fv_vpp_method methods[2] = {FV_VPP_A4_DISCHARGE, FV_VPP_GROUP_A};
    for (int k = 0; k < 2; k++) {
        struct settle_out o;
        if (bench_settle(n, methods[k], &o) != 0) return 1;
        const char *mn = fv_vpp_method_name(methods[k]);
        printf(",\"%s\":{\"gen_s\":%.3f,\"baseline_and_rows_s\":%.3f,\"csv_and_total_s\":%.3f,"
               "\"settle_s\":%.3f,\"csv_bytes\":%zu,\"no_baseline\":%zu,\"incremental_kwh\":"
               "%" PRId64 ".%03" PRId64 ",\"payment\":%" PRId64 ".%02" PRId64 "}",
               mn, o.gen_s, o.baseline_s, o.csv_s, o.baseline_s + o.csv_s, o.csv_bytes,
               o.no_baseline, o.total.incremental_wh / 1000, o.total.incremental_wh % 1000,
               o.total.payment_cents / 100, o.total.payment_cents % 100);
    }
    printf("}\n");
    return 0;
}
