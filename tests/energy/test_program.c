/* test_program.c - VPP programs (energy/program.h): config parsing and its errors, every
 * refusal of fv_vpp_event_check, local time through ICU across daylight-saving changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "energy/program.h"
#include "util/err.h"
#include "wire/site.h"

static int64_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm t = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&t) * 1000;
}

/* Parses text as the programs object; returns the rc, the programs in *out (or NULL). */
static int parse(const char *text, struct fv_vpp_program **out, size_t *n, char *err, size_t len)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    int rc = fv_vpp_programs_parse(j, out, n, err, len);
    json_decref(j);
    return rc;
}

static void test_defaults_and_keys(void **state)
{
    (void)state;
    struct fv_vpp_program *p;
    size_t n;
    char err[512];
    assert_int_equal(parse("{\"elrp\": {}}", &p, &n, err, sizeof err), FV_OK);
    assert_int_equal(n, 1);
    assert_string_equal(p[0].name, "elrp");
    assert_string_equal(p[0].tz, "America/Los_Angeles");
    assert_int_equal(p[0].season_from, 501);
    assert_int_equal(p[0].season_to, 1031);
    assert_int_equal(p[0].window_from_min, 960);
    assert_int_equal(p[0].window_to_min, 1260);
    assert_int_equal(p[0].min_len_ms, 3600000);
    assert_int_equal(p[0].max_len_ms, 18000000);
    assert_true(p[0].yearly_cap_h == 60 && p[0].rate == 2.0);
    assert_string_equal(p[0].currency, "USD");
    assert_int_equal(p[0].method, FV_VPP_A4_DISCHARGE);
    assert_int_equal(p[0].baseline_days, 10);
    assert_int_equal(p[0].min_eligible_days, 10);
    assert_true(p[0].adj_min == 1.0 && p[0].adj_max == 1.4);
    assert_int_equal(p[0].interval_min, 5);
    free(p);

    assert_int_equal(parse("{\"a\": {\"timezone\": \"Europe/Berlin\", \"season\": [\"11-01\", "
                           "\"02-29\"], \"window\": [\"17:30\", \"24:00\"], \"event_length\": "
                           "[\"90m\", \"4h\"], \"yearly_hours_cap\": 40.5, \"rate\": 1.25, "
                           "\"currency\": \"EUR\", \"baseline\": \"group_a\", \"baseline_days\": "
                           "5, \"min_eligible_days\": 3, \"baseline_lookback_days\": 20, "
                           "\"adjustment_bounds\": [0.8, 1.2], \"adjustment_hours\": 2, "
                           "\"outage_missing_intervals\": 0, \"interval_minutes\": 1}, "
                           "\"b\": {\"outage_missing_intervals\": 200, \"interval_minutes\": "
                           "6}}",
                           &p, &n, err, sizeof err),
                     FV_OK);
    assert_int_equal(n, 2);
    assert_string_equal(p[0].tz, "Europe/Berlin");
    assert_int_equal(p[0].season_from, 1101);
    assert_int_equal(p[0].season_to, 229);
    assert_int_equal(p[0].window_from_min, 17 * 60 + 30);
    assert_int_equal(p[0].window_to_min, 1440);
    assert_int_equal(p[0].min_len_ms, 5400000);
    assert_int_equal(p[0].max_len_ms, 4 * 3600000);
    assert_true(p[0].yearly_cap_h == 40.5 && p[0].rate == 1.25);
    assert_string_equal(p[0].currency, "EUR");
    assert_int_equal(p[0].method, FV_VPP_GROUP_A);
    assert_int_equal(p[0].baseline_days, 5);
    assert_int_equal(p[0].min_eligible_days, 3);
    assert_int_equal(p[0].lookback_days, 20);
    assert_true(p[0].adj_min == 0.8 && p[0].adj_max == 1.2);
    assert_int_equal(p[0].adj_hours, 2);
    assert_int_equal(p[0].outage_missing, 0);
    assert_int_equal(p[0].interval_min, 1);
    assert_int_equal(p[1].interval_min, 6);
    assert_int_equal(p[1].outage_missing, 200);
    assert_ptr_equal(fv_vpp_program_find(p, n, "b"), &p[1]);
    assert_null(fv_vpp_program_find(p, n, "c"));
    free(p);
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *json, *prefix;
    } cases[] = {
        {"{}", "vpp.programs: expected an object"},
        {"[]", "vpp.programs: expected an object"},
        {"{\"elrp\": 3}", "vpp.programs.elrp: expected an object"},
        {"{\"a,b\": {}}", "vpp.programs: a program's name has 1 to 63"},
        {"{\"\": {}}", "vpp.programs: a program's name has 1 to 63"},
        {"{\"elrp\": {\"windows\": [\"16:00\", \"21:00\"]}}",
         "vpp.programs.elrp.windows: unknown key"},
        {"{\"elrp\": {\"timezone\": \"America/Springfield\"}}",
         "vpp.programs.elrp.timezone: expected an IANA"},
        {"{\"elrp\": {\"timezone\": \"../etc/passwd\"}}",
         "vpp.programs.elrp.timezone: expected an IANA"},
        {"{\"elrp\": {\"season\": [\"13-01\", \"10-31\"]}}", "vpp.programs.elrp.season: expected"},
        {"{\"elrp\": {\"season\": [\"04-31\", \"10-31\"]}}", "vpp.programs.elrp.season: expected"},
        {"{\"elrp\": {\"season\": \"05-01..10-31\"}}", "vpp.programs.elrp.season: expected"},
        {"{\"elrp\": {\"window\": [\"21:00\", \"16:00\"]}}", "vpp.programs.elrp.window: expected"},
        {"{\"elrp\": {\"window\": [\"16:00\", \"24:30\"]}}", "vpp.programs.elrp.window: expected"},
        {"{\"elrp\": {\"event_length\": [\"5h\", \"1h\"]}}",
         "vpp.programs.elrp.event_length: expected"},
        {"{\"elrp\": {\"event_length\": [\"1x\", \"5h\"]}}",
         "vpp.programs.elrp.event_length: expected"},
        {"{\"elrp\": {\"event_length\": [\"1h\", \"6h\"]}}",
         "vpp.programs.elrp.event_length: the longest event is longer than the window"},
        {"{\"elrp\": {\"yearly_hours_cap\": -1}}", "vpp.programs.elrp.yearly_hours_cap: expected"},
        {"{\"elrp\": {\"rate\": \"2.00\"}}", "vpp.programs.elrp.rate: expected"},
        {"{\"elrp\": {\"currency\": \"usd\"}}", "vpp.programs.elrp.currency: expected"},
        {"{\"elrp\": {\"baseline\": \"group_b\"}}",
         "vpp.programs.elrp.baseline: expected \"group_a\" or"},
        {"{\"elrp\": {\"baseline_days\": 0}}", "vpp.programs.elrp.baseline_days: expected"},
        {"{\"elrp\": {\"baseline_days\": 5}}", "vpp.programs.elrp.min_eligible_days: need"},
        {"{\"elrp\": {\"adjustment_bounds\": [1.4, 1.0]}}",
         "vpp.programs.elrp.adjustment_bounds: expected"},
        {"{\"elrp\": {\"adjustment_hours\": 13}}", "vpp.programs.elrp.adjustment_hours: expected"},
        {"{\"ok\": {}, \"bad\": {\"rate\": null}}", "vpp.programs.bad.rate: expected"},
        {"{\"elrp\": {\"interval_minutes\": 7}}",
         "vpp.programs.elrp.interval_minutes: expected the metering interval in minutes"},
        {"{\"elrp\": {\"interval_minutes\": 0}}", "vpp.programs.elrp.interval_minutes: expected"},
        {"{\"elrp\": {\"interval_minutes\": 2.5}}", "vpp.programs.elrp.interval_minutes: expected"},
        /* 15-minute intervals: 96 a day, whatever the order of the keys */
        {"{\"elrp\": {\"outage_missing_intervals\": 97, \"interval_minutes\": 15}}",
         "vpp.programs.elrp.outage_missing_intervals: 97 is more than the 96 intervals of 15 "
         "minutes in a day"},
        {"{\"elrp\": {\"outage_missing_intervals\": 289}}",
         "vpp.programs.elrp.outage_missing_intervals: 289 is more than the 288"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fv_vpp_program *p = (void *)1;
        size_t n = 7;
        char err[512] = "";
        int rc = parse(cases[i].json, &p, &n, err, sizeof err);
        if (rc != FV_EINVAL || strncmp(err, cases[i].prefix, strlen(cases[i].prefix)) != 0)
            fail_msg("case %zu: %s -> rc %d, \"%s\"", i, cases[i].json, rc, err);
        assert_null(p);
        assert_int_equal(n, 0);
    }
}

static struct fv_vpp_program prog(const char *tz, int season_from, int season_to)
{
    struct fv_vpp_program p;
    fv_vpp_program_defaults(&p, "t");
    snprintf(p.tz, sizeof p.tz, "%s", tz);
    p.season_from = season_from;
    p.season_to = season_to;
    return p;
}

/* Checks an event; want NULL: accepted, else the exact reason. */
static void check(const struct fv_vpp_program *p, int64_t s, int64_t e, double used,
                  const char *want)
{
    char reason[256] = "";
    int rc = fv_vpp_event_check(p, s, e, used, reason, sizeof reason);
    if (want == NULL) {
        if (rc != FV_OK) fail_msg("refused: %s", reason);
    } else {
        assert_int_equal(rc, FV_EINVAL);
        assert_string_equal(reason, want);
    }
}

static void test_event_refusals(void **state)
{
    (void)state;
    struct fv_vpp_program p = prog("America/Los_Angeles", 501, 1031);
    /* 2026-08-17: PDT, UTC-7; 16:00 local is 23:00Z. */
    int64_t h16 = utc(2026, 8, 17, 23, 0), H = 3600000;
    check(&p, h16, h16 + 3 * H, 0, NULL);
    check(&p, h16, h16 + 5 * H, 55, NULL); /* the whole window, to the cap exactly */
    check(&p, h16 - H, h16 + 2 * H, 0,
          "starts 15:00 local, before the program's window 16:00-21:00");
    check(&p, h16 + 3 * H, h16 + 5 * H + H / 2, 0,
          "ends 21:30 local, after the program's window 16:00-21:00");
    check(&p, h16, h16 + H / 2, 0, "too short: 0.50 h, the program's events last 1h to 5h");
    check(&p, h16, h16 + 6 * H, 0, "too long: 6.00 h, the program's events last 1h to 5h");
    check(&p, h16, h16, 0, "ends before it starts");
    check(&p, h16, h16 + 3 * H, 58, "over the yearly cap: 58.0 h used + 3.0 h > 60 h");
    check(&p, h16, h16 + 3 * H, 57, NULL);
    int64_t apr30 = utc(2026, 4, 30, 23, 0), may1 = utc(2026, 5, 1, 23, 0);
    check(&p, apr30, apr30 + H, 0, "outside the season 05-01..10-31 (2026-04-30 local)");
    check(&p, may1, may1 + H, 0, NULL);
    /* 2026-10-31 16:00 PDT is in, 2026-11-01 (after the change: PST, UTC-8) is out. */
    check(&p, utc(2026, 10, 31, 23, 0), utc(2026, 11, 1, 0, 0), 0, NULL);
    check(&p, utc(2026, 11, 2, 0, 0), utc(2026, 11, 2, 1, 0), 0,
          "outside the season 05-01..10-31 (2026-11-01 local)");
    /* A season across the new year. */
    struct fv_vpp_program w = prog("America/Los_Angeles", 1101, 228);
    check(&w, utc(2027, 1, 15, 0, 0), utc(2027, 1, 15, 1, 0), 0, NULL); /* 01-14 16:00 PST */
    check(&w, utc(2026, 8, 17, 23, 0), utc(2026, 8, 18, 0, 0), 0,
          "outside the season 11-01..02-28 (2026-08-17 local)");
    /* Up to local midnight, not across it. */
    struct fv_vpp_program late = prog("America/Los_Angeles", 101, 1231);
    late.window_from_min = 20 * 60;
    late.window_to_min = 1440;
    check(&late, utc(2026, 8, 18, 5, 0), utc(2026, 8, 18, 7, 0), 0, NULL); /* 22:00-24:00 */
    check(&late, utc(2026, 8, 18, 6, 0), utc(2026, 8, 18, 8, 0), 0,
          "crosses local midnight (2026-08-17 to 2026-08-18)");
}

static void test_dst_days(void **state)
{
    (void)state;
    int64_t H = 3600000;
    struct fv_vpp_program p = prog("America/Los_Angeles", 101, 1231);
    /* 2026-03-08: PST -> PDT at 02:00. 16:00-21:00 PDT is 23:00Z-04:00Z; a fixed -8 h offset
     * would have taken 00:00Z-05:00Z, which is 17:00-22:00 PDT. */
    check(&p, utc(2026, 3, 8, 23, 0), utc(2026, 3, 9, 4, 0), 0, NULL);
    check(&p, utc(2026, 3, 9, 0, 0), utc(2026, 3, 9, 5, 0), 0,
          "ends 22:00 local, after the program's window 16:00-21:00");
    /* The day before, still PST: 16:00 is 00:00Z, 15:00 is 23:00Z. */
    check(&p, utc(2026, 3, 8, 0, 0), utc(2026, 3, 8, 5, 0), 0, NULL);
    check(&p, utc(2026, 3, 7, 23, 0), utc(2026, 3, 8, 2, 0), 0,
          "starts 15:00 local, before the program's window 16:00-21:00");
    /* Europe/Berlin, 2026-10-25 (inside the ELRP season): CEST -> CET at 03:00. */
    struct fv_vpp_program b = prog("Europe/Berlin", 501, 1031);
    check(&b, utc(2026, 10, 25, 15, 0), utc(2026, 10, 25, 20, 0), 0, NULL);
    check(&b, utc(2026, 10, 25, 14, 0), utc(2026, 10, 25, 17, 0), 0,
          "starts 15:00 local, before the program's window 16:00-21:00");
    check(&b, utc(2026, 10, 24, 14, 0), utc(2026, 10, 24, 17, 0), 0, NULL); /* CEST */
    /* Across the change itself: 00:00 PST to 05:00 PDT is 4 hours elapsed, not 5. */
    struct fv_vpp_program n = prog("America/Los_Angeles", 101, 1231);
    n.window_from_min = 0;
    n.window_to_min = 6 * 60;
    n.max_len_ms = 4 * H;
    int64_t s = utc(2026, 3, 8, 8, 0), e = utc(2026, 3, 8, 12, 0);
    check(&n, s, e, 56, NULL);
    check(&n, s, e, 57, "over the yearly cap: 57.0 h used + 4.0 h > 60 h");
}

/* Eligibility: none by default; an export permit, a capacity and an inverter minimum, each
 * with its reason; no sample: unknown; bad keys refused naming the key. */
static void test_eligibility(void **state)
{
    (void)state;
    struct fv_vpp_program *p = NULL;
    size_t n = 0;
    char err[300], why[200];
    assert_int_equal(parse("{\"a\": {}, \"b\": {\"eligibility\": {\"export_permit\": true, "
                           "\"min_capacity_kwh\": 10, \"min_inverter_kw\": 4.5}}}",
                           &p, &n, err, sizeof err),
                     FV_OK);
    struct fv_site_sample s = {.capacity_kwh = 13.5, .inverter_kw = 5, .export_limit_kw = 4};
    assert_int_equal(fv_vpp_site_eligible(&p[0], NULL, why, sizeof why), FV_OK);
    assert_int_equal(fv_vpp_site_eligible(&p[1], &s, why, sizeof why), FV_OK);
    assert_int_equal(fv_vpp_site_eligible(&p[1], NULL, why, sizeof why), FV_EINVAL);
    assert_non_null(strstr(why, "no sample"));
    s.export_limit_kw = 0;
    assert_int_equal(fv_vpp_site_eligible(&p[0], &s, why, sizeof why), FV_OK);
    assert_int_equal(fv_vpp_site_eligible(&p[1], &s, why, sizeof why), FV_EINVAL);
    assert_non_null(strstr(why, "export permit"));
    s.export_limit_kw = 4;
    s.capacity_kwh = 9.9;
    assert_int_equal(fv_vpp_site_eligible(&p[1], &s, why, sizeof why), FV_EINVAL);
    assert_non_null(strstr(why, "capacity 9.9 kWh below"));
    s.capacity_kwh = 10;
    s.inverter_kw = 4.4;
    assert_int_equal(fv_vpp_site_eligible(&p[1], &s, why, sizeof why), FV_EINVAL);
    assert_non_null(strstr(why, "inverter 4.4 kW below"));
    free(p);
    const char *bad[] = {"{\"a\": {\"eligibility\": true}}",
                         "{\"a\": {\"eligibility\": {\"export_permit\": 1}}}",
                         "{\"a\": {\"eligibility\": {\"min_capacity_kwh\": -1}}}",
                         "{\"a\": {\"eligibility\": {\"permit\": true}}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p = NULL;
        assert_int_equal(parse(bad[i], &p, &n, err, sizeof err), FV_EINVAL);
        assert_non_null(strstr(err, "vpp.programs.a.eligibility"));
        assert_null(p);
    }
}

static void test_local_time(void **state)
{
    (void)state;
    struct fv_vpp_program p = prog("America/Los_Angeles", 501, 1031);
    struct fv_vpp_local l;
    assert_int_equal(fv_vpp_local_time(&p, utc(2026, 3, 9, 23, 0), &l), FV_OK);
    assert_int_equal(l.date, 20260309);
    assert_int_equal(l.hour, 16);
    assert_int_equal(l.ms_in_day, 16 * 3600000);
    int64_t t;
    assert_int_equal(fv_vpp_utc_of_local(&p, 20260309, 16, 0, &t), FV_OK);
    assert_true(t == utc(2026, 3, 9, 23, 0));
    assert_int_equal(fv_vpp_utc_of_local(&p, 20260307, 16, 30, &t), FV_OK);
    assert_true(t == utc(2026, 3, 8, 0, 30));
    assert_int_equal(fv_vpp_utc_of_local(&p, 20261399, 16, 0, &t), FV_EINVAL);
    assert_int_equal(fv_vpp_utc_of_local(&p, 20260231, 16, 0, &t), FV_EINVAL);
    /* 02:30 does not exist on 2026-03-08: read as 03:30 PDT (10:30Z). */
    assert_int_equal(fv_vpp_utc_of_local(&p, 20260308, 2, 30, &t), FV_OK);
    assert_true(t == utc(2026, 3, 8, 10, 30));
    /* The same wall-clock hour on prior days, across the change. */
    int32_t d;
    assert_int_equal(fv_vpp_days_back(&p, utc(2026, 3, 9, 23, 0), 1, &t, &d), FV_OK);
    assert_true(t == utc(2026, 3, 8, 23, 0));
    assert_int_equal(d, 20260308);
    assert_int_equal(fv_vpp_days_back(&p, utc(2026, 3, 9, 23, 0), 2, &t, &d), FV_OK);
    assert_true(t == utc(2026, 3, 8, 0, 0));
    assert_int_equal(d, 20260307);
    struct fv_vpp_program bad = prog("Mars/Olympus_Mons", 501, 1031);
    assert_int_equal(fv_vpp_local_time(&bad, 0, &l), FV_EINVAL);
    char reason[128];
    assert_int_equal(fv_vpp_event_check(&bad, utc(2026, 8, 17, 23, 0), utc(2026, 8, 18, 0, 0), 0,
                                        reason, sizeof reason),
                     FV_EINVAL);
    assert_string_equal(reason, "the program's time zone Mars/Olympus_Mons is unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_keys), cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_event_refusals),    cmocka_unit_test(test_dst_days),
        cmocka_unit_test(test_local_time),        cmocka_unit_test(test_eligibility),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
