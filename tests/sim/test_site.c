/* test_site.c - the simulator's home-energy site (src/sim/site.c): every sample of 200 homes
 * over 14 days passes the server's checks and the power balance; determinism; the sun and
 * the loads by time of day and season; homes that discharge every evening; dispatch obeyed
 * within the physics (inverter, export limit, reserve), its end and cancel; refusals at the
 * reserve and by owners who opt out; outages; and the SiteCommand wire round trip. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sim/site.h"
#include "util/buf.h"
#include "util/err.h"
#include "wire/site.h"

#define MIN  60000ULL
#define HOUR 3600000ULL
#define DAY  86400000ULL
/* 2026-07-01T00:00:00Z and 2026-12-01T00:00:00Z */
#define JULY 1782864000000ULL
#define DEC  1796083200000ULL

static const struct fv_sim_site_cfg CFG = {.opt_out_pct = 5, .offline_pct = 3, .utc_offset_h = -8};

/* Local hour h (UTC-8) of day d after t0 (t0 is a UTC midnight). */
static uint64_t at(uint64_t t0, int d, double h)
{
    return t0 + (uint64_t)d * DAY + (uint64_t)((h + 8.0) * (double)HOUR);
}

static void check_sample(const struct fv_sim_site *s, const struct fv_site_sample *x)
{
    char err[160];
    if (fv_site_check(x, err, sizeof err) != FV_OK) fail_msg("site %u: %s", s->index, err);
    assert_true(fabs(x->grid_kw - (x->load_kw - x->solar_kw - x->battery_kw)) < 0.0015);
    assert_true(x->grid_kw >= -x->export_limit_kw - 0.0015); /* the export permit holds */
    assert_true(x->battery_kw <= x->inverter_kw + 1e-9 && x->battery_kw >= -x->inverter_kw - 1e-9);
    assert_true(x->energy_kwh <= x->capacity_kwh + 1e-9);
    /* never below the reserve by more than rounding */
    assert_true(x->energy_kwh >= x->capacity_kwh * x->reserve_pct / 100.0 - 0.002);
}

static void test_samples_pass_the_checks(void **state)
{
    (void)state;
    int evening_homes = 0, modes[5] = {0};
    for (uint32_t i = 0; i < 200; i++) {
        struct fv_sim_site s;
        fv_sim_site_init(&s, 42, i, &CFG, JULY - HOUR);
        const struct fv_sim_site_params *p = &s.p;
        assert_true(p->reserve_pct >= 10 && p->reserve_pct <= 30);
        assert_true(p->export_limit_kw >= 4 && p->export_limit_kw <= 5);
        assert_true(p->capacity_kwh == 13.5 || p->capacity_kwh == 27.0);
        modes[p->mode]++;
        double evening_kwh = 0;
        for (uint64_t t = JULY; t < JULY + 14 * DAY; t += 5 * MIN) {
            fv_sim_site_step(&s, t);
            struct fv_site_sample x;
            fv_sim_site_sample(&s, &x);
            assert_int_equal(x.created_at_ms, t);
            assert_int_equal(x.mode, p->mode);
            check_sample(&s, &x);
            double h = (double)((t - 8 * HOUR) % DAY) / (double)HOUR;
            if (h >= 17 && h < 21 && x.battery_kw > 0) evening_kwh += x.battery_kw / 12.0;
        }
        if (p->mode == FV_SITE_MODE_TIME_BASED) {
            /* these homes discharge every evening: 14 days x most of 2-4 kW x 4 h */
            assert_true(evening_kwh > 14 * 3.0);
            evening_homes++;
        }
        if (p->mode == FV_SITE_MODE_BACKUP) assert_true(evening_kwh == 0);
    }
    assert_true(evening_homes > 20 && modes[FV_SITE_MODE_SELF_POWERED] > 100);
    assert_true(modes[FV_SITE_MODE_BACKUP] > 5);
}

static void test_deterministic(void **state)
{
    (void)state;
    struct fv_sim_site a, b, c;
    fv_sim_site_init(&a, 7, 3, &CFG, JULY);
    fv_sim_site_init(&b, 7, 3, &CFG, JULY);
    fv_sim_site_init(&c, 8, 3, &CFG, JULY);
    assert_memory_equal(&a.p, &b.p, sizeof a.p);
    assert_true(memcmp(&a.p, &c.p, sizeof a.p) != 0);
    struct fv_site_command d = {.id = "c1",
                                .event_id = "e1",
                                .kind = FV_SITE_CMD_DISPATCH,
                                .target_kw = 3,
                                .start_ms = JULY + 2 * HOUR,
                                .end_ms = JULY + 3 * HOUR};
    char why[64];
    for (uint64_t t = JULY; t < JULY + 2 * DAY; t += 37 * 1000) {
        fv_sim_site_step(&a, t);
        fv_sim_site_step(&b, t);
        if (t == JULY + 37 * 1000) {
            assert_int_equal(fv_sim_site_command(&a, &d, why, sizeof why),
                             fv_sim_site_command(&b, &d, why, sizeof why));
        }
        struct fv_site_sample x, y;
        fv_sim_site_sample(&a, &x);
        fv_sim_site_sample(&b, &y);
        assert_memory_equal(&x, &y, sizeof x);
    }
    /* the inputs do not depend on how often the site is sampled */
    struct fv_sim_site e;
    fv_sim_site_init(&e, 7, 3, &CFG, JULY);
    assert_true(fv_sim_site_solar_kw(&e, JULY + 20 * HOUR) ==
                fv_sim_site_solar_kw(&a, JULY + 20 * HOUR));
    assert_true(fv_sim_site_load_kw(&e, JULY + 20 * HOUR) ==
                fv_sim_site_load_kw(&a, JULY + 20 * HOUR));
}

static void test_sun_and_load(void **state)
{
    (void)state;
    double summer = 0, winter = 0, night = 0, morning = 0, midnight = 0, evening = 0;
    for (uint32_t i = 0; i < 50; i++) {
        struct fv_sim_site s;
        fv_sim_site_init(&s, 1, i, &CFG, JULY);
        for (int d = 0; d < 10; d++) {
            summer += fv_sim_site_solar_kw(&s, at(JULY, d, 12.5));
            winter += fv_sim_site_solar_kw(&s, at(DEC, d, 12.5));
            night += fv_sim_site_solar_kw(&s, at(JULY, d, 2.0)) +
                     fv_sim_site_solar_kw(&s, at(DEC, d, 22.0));
            morning += fv_sim_site_load_kw(&s, at(JULY, d, 7.5));
            evening += fv_sim_site_load_kw(&s, at(JULY, d, 19.0));
            midnight += fv_sim_site_load_kw(&s, at(JULY, d, 3.0));
        }
        assert_true(fv_sim_site_solar_kw(&s, at(JULY, 0, 12.5)) <= s.p.solar_kwp);
    }
    assert_true(night == 0);
    assert_true(summer > 1.5 * winter && winter > 0);
    assert_true(morning > 1.5 * midnight && evening > morning);
}

/* A self-powered site at 12:00 local with its battery full enough to deliver. */
static void charged_site(struct fv_sim_site *s, double utc_offset)
{
    struct fv_sim_site_cfg cfg = {.opt_out_pct = 0, .offline_pct = 0, .utc_offset_h = utc_offset};
    for (uint32_t i = 0;; i++) {
        fv_sim_site_init(s, 5, i, &cfg, JULY);
        if (s->p.mode == FV_SITE_MODE_SELF_POWERED && s->p.capacity_kwh == 13.5 &&
            s->p.export_limit_kw < 5 && s->p.reserve_pct <= 20)
            break;
    }
    fv_sim_site_step(s, JULY + 20 * HOUR); /* 12:00 local, after a morning of sun */
}

static void test_dispatch_obeyed_within_physics(void **state)
{
    (void)state;
    struct fv_sim_site s;
    charged_site(&s, -8);
    char why[96];
    uint64_t t0 = s.t_ms;
    /* 5 kW asked, the export limit (4 or 4.5 kW) is what the site may give */
    struct fv_site_command d = {.id = "c1",
                                .event_id = "ev1",
                                .kind = FV_SITE_CMD_DISPATCH,
                                .target_kw = 5.0,
                                .start_ms = t0 + 10 * MIN,
                                .end_ms = t0 + 40 * MIN};
    assert_int_equal(fv_sim_site_command(&s, &d, why, sizeof why), 1);
    assert_string_equal(why, "");
    struct fv_site_sample x;
    fv_sim_site_step(&s, t0 + 5 * MIN); /* before the start: normal behaviour */
    fv_sim_site_sample(&s, &x);
    assert_int_equal(x.mode, FV_SITE_MODE_SELF_POWERED);
    for (uint64_t t = t0 + 11 * MIN; t <= t0 + 40 * MIN; t += MIN) {
        fv_sim_site_step(&s, t);
        fv_sim_site_sample(&s, &x);
        check_sample(&s, &x);
        assert_int_equal(x.mode, FV_SITE_MODE_VPP);
        assert_true(fabs(x.battery_kw - s.p.export_limit_kw) < 1e-9);
    }
    fv_sim_site_step(&s, t0 + 42 * MIN); /* after the end: back to normal */
    fv_sim_site_sample(&s, &x);
    assert_int_equal(x.mode, FV_SITE_MODE_SELF_POWERED);
    assert_true(x.battery_kw < s.p.export_limit_kw);
    /* a smaller target is met exactly; a cancel ends it at once */
    d.id = "c2";
    d.event_id = "ev2";
    d.target_kw = 1.25;
    d.start_ms = t0 + 45 * MIN;
    d.end_ms = t0 + 3 * HOUR;
    assert_int_equal(fv_sim_site_command(&s, &d, why, sizeof why), 1);
    fv_sim_site_step(&s, t0 + 50 * MIN);
    fv_sim_site_sample(&s, &x);
    assert_int_equal(x.mode, FV_SITE_MODE_VPP);
    assert_true(fabs(x.battery_kw - 1.25) < 1e-9);
    struct fv_site_command c = {.id = "c3", .event_id = "ev2", .kind = FV_SITE_CMD_CANCEL};
    assert_int_equal(fv_sim_site_command(&s, &c, why, sizeof why), 1);
    fv_sim_site_step(&s, t0 + 51 * MIN);
    fv_sim_site_sample(&s, &x);
    assert_int_equal(x.mode, FV_SITE_MODE_SELF_POWERED);
}

static void test_reserve_and_refusals(void **state)
{
    (void)state;
    struct fv_sim_site s;
    charged_site(&s, -8);
    char why[96];
    uint64_t t0 = s.t_ms;
    double reserve = s.p.capacity_kwh * s.p.reserve_pct / 100.0;
    /* ten hours at the most it can give: it stops at the reserve, not below */
    struct fv_site_command d = {.id = "c1",
                                .event_id = "ev1",
                                .kind = FV_SITE_CMD_DISPATCH,
                                .target_kw = 10.0,
                                .start_ms = t0,
                                .end_ms = t0 + 10 * HOUR};
    assert_int_equal(fv_sim_site_command(&s, &d, why, sizeof why), 1);
    struct fv_site_sample x;
    for (uint64_t t = t0 + MIN; t <= t0 + 10 * HOUR; t += MIN) {
        fv_sim_site_step(&s, t);
        fv_sim_site_sample(&s, &x);
        check_sample(&s, &x);
    }
    assert_true(fabs(s.energy_kwh - reserve) < 0.01);
    /* at the reserve: a new dispatch is refused with the reason */
    d.id = "c2";
    d.event_id = "ev2";
    d.start_ms = s.t_ms + MIN;
    d.end_ms = s.t_ms + HOUR;
    fv_sim_site_step(&s, s.t_ms + 1000); /* 22:00 local: no sun */
    assert_int_equal(fv_sim_site_command(&s, &d, why, sizeof why), 2);
    assert_non_null(strstr(why, "reserve"));
    /* over: refused; unknown kind: refused; notice: accepted */
    charged_site(&s, -8);
    d.start_ms = s.t_ms - 2 * HOUR;
    d.end_ms = s.t_ms - HOUR;
    assert_int_equal(fv_sim_site_command(&s, &d, why, sizeof why), 2);
    assert_non_null(strstr(why, "over"));
    struct fv_site_command k = {.id = "c3", .event_id = "ev3", .kind = 9};
    assert_int_equal(fv_sim_site_command(&s, &k, why, sizeof why), 2);
    k.kind = FV_SITE_CMD_NOTICE;
    assert_int_equal(fv_sim_site_command(&s, &k, why, sizeof why), 1);
    /* owners who opt out refuse notices and dispatches; everyone, at 100 % */
    struct fv_sim_site_cfg all = {.opt_out_pct = 100, .offline_pct = 0, .utc_offset_h = -8};
    fv_sim_site_init(&s, 5, 0, &all, JULY);
    assert_int_equal(fv_sim_site_command(&s, &k, why, sizeof why), 2);
    assert_non_null(strstr(why, "opt"));
    d.start_ms = JULY + MIN;
    d.end_ms = JULY + HOUR;
    assert_int_equal(fv_sim_site_command(&s, &d, why, sizeof why), 2);
    /* the share is about what was asked */
    int out = 0;
    for (uint32_t i = 0; i < 1000; i++) {
        fv_sim_site_init(&s, 5, i, &CFG, JULY);
        out += s.p.opts_out;
    }
    assert_true(out > 25 && out < 80);
}

static void test_outages(void **state)
{
    (void)state;
    struct fv_sim_site s;
    struct fv_sim_site_cfg none = {.opt_out_pct = 0, .offline_pct = 0, .utc_offset_h = -8};
    struct fv_sim_site_cfg every = {.opt_out_pct = 0, .offline_pct = 100, .utc_offset_h = -8};
    fv_sim_site_init(&s, 3, 1, &none, JULY);
    for (uint64_t t = JULY; t < JULY + 30 * DAY; t += 5 * MIN)
        assert_true(fv_sim_site_online(&s, t));
    fv_sim_site_init(&s, 3, 1, &every, JULY);
    for (int d = 0; d < 30; d++) {
        int off = 0;
        for (uint64_t t = at(JULY, d, 0); t < at(JULY, d + 1, 0); t += MIN) /* a local day */
            off += !fv_sim_site_online(&s, t);
        assert_true(off > 0 && off <= 2 * 180); /* its own outage, maybe the end of the last */
    }
}

static void test_command_wire_roundtrip(void **state)
{
    (void)state;
    struct fv_site_command c = {.id = "ev7.3",
                                .event_id = "ev7",
                                .kind = FV_SITE_CMD_DISPATCH,
                                .target_kw = 2.5,
                                .start_ms = JULY + 1500,
                                .end_ms = JULY + HOUR};
    struct fv_buf b = {0};
    assert_int_equal(fv_site_command_encode(&c, &b), FV_OK);
    struct fv_site_command d;
    char id[16], ev[16];
    assert_int_equal(fv_site_command_decode(b.data, b.len, &d, id, sizeof id, ev, sizeof ev),
                     FV_OK);
    assert_string_equal(d.id, "ev7.3");
    assert_string_equal(d.event_id, "ev7");
    assert_int_equal(d.kind, FV_SITE_CMD_DISPATCH);
    assert_true(d.target_kw == 2.5);
    assert_int_equal(d.start_ms, JULY + 1500);
    assert_int_equal(d.end_ms, JULY + HOUR);
    char small[4];
    assert_int_equal(fv_site_command_decode(b.data, b.len, &d, small, sizeof small, ev, sizeof ev),
                     FV_EPROTO);
    const unsigned char junk[] = {0xff, 0xff, 0xff};
    assert_int_equal(fv_site_command_decode(junk, sizeof junk, &d, id, sizeof id, ev, sizeof ev),
                     FV_EPROTO);
    fv_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samples_pass_the_checks),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_sun_and_load),
        cmocka_unit_test(test_dispatch_obeyed_within_physics),
        cmocka_unit_test(test_reserve_and_refusals),
        cmocka_unit_test(test_outages),
        cmocka_unit_test(test_command_wire_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
