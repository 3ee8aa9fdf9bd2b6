/* test_promql.c - api/promql.h and api/promeval.h: the PromQL subset's parser (what it
 * accepts, errors with their positions, anchored regular expressions) and its evaluator over
 * fixed samples (instant selectors with the 5-minute lookback, the range functions, rate and
 * increase as Prometheus extrapolates them, aggregations with by/without, scalar arithmetic,
 * the series limit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/promeval.h"
#include "api/promql.h"
#include "util/err.h"

static struct fv_pq_node *parse_ok(const char *s)
{
    struct fv_pq_node *n = NULL;
    size_t pos = 0;
    char err[200];
    int rc = fv_pq_parse(s, &n, &pos, err, sizeof err);
    if (rc != FV_OK) fprintf(stderr, "%s: at %zu: %s\n", s, pos, err);
    assert_int_equal(rc, FV_OK);
    assert_non_null(n);
    return n;
}

static void parses(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "Soc",
        "Soc{device=\"V1\"}",
        "{signal=\"Soc\", device!=\"V1\"}",
        "{__name__=~\"So.*\",device!~'X|Y'}",
        "{device=~\"[]a*+{]+|[[:alpha:]]+x?\"}",
        "rate(Odometer[5m])",
        "increase(Odometer{device=\"V\"}[1h30m])",
        "avg_over_time(Soc[5m]) * 2",
        "sum by (device) (Soc)",
        "sum(Soc) by (device)",
        "count without (device) (last_over_time(Soc[10m]))",
        "-Soc + 1",
        "(Soc - 32) / 1.8",
        "2 * 3 - 1",
        "max(min_over_time(Soc[1m]))",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        fv_pq_free(parse_ok(ok[i]));

    struct fv_pq_node *n = parse_ok("sum by (device) (rate(Odometer{device=~\"V.*\"}[5m]))");
    assert_int_equal(n->kind, FV_PQ_AGG);
    assert_int_equal(n->agg, FV_PQ_SUM);
    assert_int_equal(n->without, 0);
    assert_int_equal(n->keep, 1u << FV_PQ_L_DEVICE);
    assert_int_equal(n->arg->kind, FV_PQ_FUNC);
    assert_int_equal(n->arg->func, FV_PQ_RATE);
    assert_int_equal(n->arg->arg->range_ms, 300000);
    /* regular expressions are anchored at both ends */
    const struct fv_pq_node *sel = n->arg->arg;
    assert_true(fv_pq_matches(sel, "Odometer", "V1"));
    assert_false(fv_pq_matches(sel, "Odometer", "XV1"));
    assert_false(fv_pq_matches(sel, "Soc", "V1"));
    assert_true(fv_pq_matches(sel, NULL, "V1")); /* signal not checked */
    fv_pq_free(n);
}

static void errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t pos;
        const char *msg;
    } bad[] = {
        {"sum(Soc", 7, "unexpected end of input"},
        {"Soc{device=\"V\"", 14, "expected"},
        {"Soc{owner=\"x\"}", 4, "unknown label"},
        {"rate(Soc)", 5, "range vector"},
        {"rate(Soc[5x])", 9, "bad duration"},
        {"Soc[5m]", 0, "range vector"},
        {"Soc * Soc", 4, "two vectors"},
        {"histogram_quantile(0.9, Soc)", 0, "unsupported function"},
        {"Soc{device=~\"(\"}", 12, "bad regular expression"},
        {"Soc{device=~\"a++++\"}", 12, "nested repetition"},
        {"Soc{device=~\"(a{99}){99}\"}", 12, "counted repetitions"},
        {"Soc{device=~\"[a-z\"}", 12, "unterminated bracket"},
        {"Soc{device=~\"(a*)*\\\\1\"}", 12, "back-references"},
        {"Soc )", 4, "unexpected"},
        {"", 0, "unexpected end"},
        {"{}", 0, "at least one"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct fv_pq_node *n = (struct fv_pq_node *)1;
        size_t pos = 999;
        char err[200] = "";
        assert_int_equal(fv_pq_parse(bad[i].text, &n, &pos, err, sizeof err), FV_EINVAL);
        assert_null(n);
        if (pos != bad[i].pos || strstr(err, bad[i].msg) == NULL)
            fail_msg("%s: at %zu (want %zu): %s (want %s)", bad[i].text, pos, bad[i].pos, err,
                     bad[i].msg);
    }
    /* nesting is bounded */
    char deep[400];
    memset(deep, '(', 200);
    strcpy(deep + 200, "1");
    memset(deep + 201, ')', 198);
    deep[399] = '\0';
    struct fv_pq_node *n = NULL;
    size_t pos;
    char err[200];
    assert_int_equal(fv_pq_parse(deep, &n, &pos, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "nested"));
}

/* Two devices' Soc and Odometer; samples every 10 s from t = 0 to 600 s. */
static int fake_fetch(void *arg, const struct fv_pq_node *sel, int64_t from, int64_t to,
                      struct fv_pe_raw **out, size_t *n, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    int *calls = arg;
    (*calls)++;
    static const char *const sig[2] = {"Soc", "Odometer"}, *const dev[2] = {"A", "B"};
    struct fv_pe_raw *r = calloc(4, sizeof *r);
    size_t k = 0;
    for (int s = 0; s < 2; s++)
        for (int d = 0; d < 2; d++) {
            if (!fv_pq_matches(sel, sig[s], dev[d])) continue;
            struct fv_pe_raw *x = &r[k++];
            snprintf(x->l.name, sizeof x->l.name, "%s", sig[s]);
            snprintf(x->l.signal, sizeof x->l.signal, "%s", sig[s]);
            snprintf(x->l.device, sizeof x->l.device, "%s", dev[d]);
            for (int64_t t = 0; t <= 600000; t += 10000) {
                if (t < from || t > to) continue;
                /* Soc: A 50 + t/60s, B 20; Odometer: A counts 1 per 10 s, resets at 300 s */
                double v = s == 0   ? (d == 0 ? 50 + (double)t / 60000 : 20)
                           : d == 0 ? (double)(t % 300000) / 10000
                                    : 1000 + (double)t / 10000;
                assert_int_equal(fv_pe_raw_add(x, t, v), FV_OK);
            }
        }
    *out = r;
    *n = k;
    return FV_OK;
}

static struct fv_pe_result eval_ok(const char *text, int64_t start, int64_t end, int64_t step)
{
    struct fv_pq_node *e = parse_ok(text);
    int calls = 0;
    struct fv_pe_query q = {
        .start = start, .end = end, .step = step, .fetch = fake_fetch, .arg = &calls};
    struct fv_pe_result r;
    char err[200] = "";
    assert_int_equal(fv_pe_eval(&q, e, &r, err, sizeof err), FV_OK);
    fv_pq_free(e);
    return r;
}

static const struct fv_pe_series *find(const struct fv_pe_result *r, const char *dev)
{
    for (size_t i = 0; i < r->nseries; i++)
        if (strcmp(r->s[i].l.device, dev) == 0) return &r->s[i];
    fail_msg("no series of device %s", dev);
    return NULL;
}

static void evaluates(void **state)
{
    (void)state;
    /* instant selector: the last sample at or before t, within 5 minutes */
    struct fv_pe_result r = eval_ok("Soc{device=\"A\"}", 15000, 905000, 10000);
    assert_int_equal(r.nseries, 1);
    assert_string_equal(r.s[0].l.name, "Soc");
    assert_true(r.s[0].v[0] == 50 + 10000.0 / 60000); /* t = 15 s: the sample at 10 s */
    size_t at600 = (600000 - 15000) / 10000 + 1;      /* t = 605 s */
    assert_true(r.s[0].v[at600] == 60);
    assert_true(r.s[0].v[at600 + 29] == 60);  /* t = 895 s: 295 s after the last */
    assert_true(isnan(r.s[0].v[at600 + 30])); /* t = 905 s: beyond the lookback */
    fv_pe_free(&r);

    /* range functions at t = 300 s over 1 minute: samples at 250 ... 300 s */
    r = eval_ok("max_over_time(Soc[1m])", 300000, 300000, 1000);
    assert_int_equal(r.nseries, 2);
    assert_string_equal(find(&r, "A")->l.name, ""); /* functions drop the name */
    assert_true(find(&r, "A")->v[0] == 55);
    fv_pe_free(&r);
    r = eval_ok("count_over_time(Soc{device=\"B\"}[1m])", 300000, 300000, 1000);
    assert_true(r.s[0].v[0] == 6);
    fv_pe_free(&r);
    r = eval_ok("avg_over_time(Soc{device=\"A\"}[1m])", 300000, 300000, 1000);
    assert_true(fabs(r.s[0].v[0] - (50 + 275000.0 / 60000)) < 1e-9);
    fv_pe_free(&r);

    /* increase and rate: B counts 1 per 10 s; samples 240..300 s over (240, 300]: 50..60
     * s, extrapolated to the whole minute as Prometheus does (the window starts 10 s before
     * the first sample, within 1.1 intervals: 5 in 50 s -> 6 in 60 s) */
    r = eval_ok("increase(Odometer{device=\"B\"}[1m])", 300000, 300000, 1000);
    assert_true(fabs(r.s[0].v[0] - 6) < 1e-9);
    fv_pe_free(&r);
    r = eval_ok("rate(Odometer{device=\"B\"}[1m])", 300000, 300000, 1000);
    assert_true(fabs(r.s[0].v[0] - 0.1) < 1e-9);
    fv_pe_free(&r);
    /* a counter reset (A: 29 at 290 s, 0 at 300 s) counts as an increase, not a drop */
    r = eval_ok("increase(Odometer{device=\"A\"}[1m])", 320000, 320000, 1000);
    assert_true(r.s[0].v[0] > 0);
    fv_pe_free(&r);

    /* aggregations */
    r = eval_ok("sum(Soc)", 60000, 60000, 1000);
    assert_int_equal(r.nseries, 1);
    assert_true(r.s[0].v[0] == 51 + 20);
    assert_string_equal(r.s[0].l.device, "");
    fv_pe_free(&r);
    r = eval_ok("avg by (device) ({device=\"A\"})", 60000, 60000, 1000);
    assert_int_equal(r.nseries, 1);
    assert_string_equal(r.s[0].l.device, "A");
    assert_true(r.s[0].v[0] == (51 + 6) / 2.0);
    fv_pe_free(&r);
    r = eval_ok("count without (device) ({device=~\"A|B\"})", 60000, 60000, 1000);
    assert_int_equal(r.nseries, 2); /* one per signal */
    assert_true(r.s[0].v[0] == 2 && r.s[1].v[0] == 2);
    fv_pe_free(&r);

    /* arithmetic with scalars */
    r = eval_ok("(Soc{device=\"B\"} - 2) / 2 * -1", 0, 0, 1000);
    assert_string_equal(r.s[0].l.name, "");
    assert_true(r.s[0].v[0] == -9);
    fv_pe_free(&r);
    r = eval_ok("1 + 2 * 3", 0, 20000, 10000);
    assert_true(r.scalar);
    assert_true(r.sv[0] == 7 && r.sv[2] == 7);
    fv_pe_free(&r);
}

static void series_limit(void **state)
{
    (void)state;
    struct fv_pq_node *e = parse_ok("{device=~\".*\"}");
    int calls = 0;
    struct fv_pe_query q = {
        .start = 0, .end = 0, .step = 1000, .fetch = fake_fetch, .arg = &calls, .max_series = 3};
    struct fv_pe_result r;
    char err[200] = "";
    assert_int_equal(fv_pe_eval(&q, e, &r, err, sizeof err), FV_ELIMIT);
    assert_non_null(strstr(err, "limit of 3"));
    /* series x steps held */
    q.max_series = 0;
    q.end = 99000; /* 100 steps, 4 series */
    q.max_points = 399;
    assert_int_equal(fv_pe_eval(&q, e, &r, err, sizeof err), FV_ELIMIT);
    assert_non_null(strstr(err, "limit of 399 points"));
    q.max_points = 400;
    assert_int_equal(fv_pe_eval(&q, e, &r, err, sizeof err), FV_OK);
    assert_int_equal(r.nseries, 4);
    fv_pe_free(&r);
    fv_pq_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses),
        cmocka_unit_test(errors),
        cmocka_unit_test(evaluates),
        cmocka_unit_test(series_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
