/* test_guard_quota.c - privacy/guard.h G5 across a cluster (struct fv_guard_share): a request
 * is judged on this node's counts plus the other nodes' (a principal's and its role's), the
 * meter leaves only what the sum leaves, this node's counts are handed to publish as they
 * change - at once ("now") only when the sum is within the last fifth of a limit (the disk
 * rule), in the batch otherwise - and a restart's counters are raised to what this node had
 * published (fv_guard_quota_raise), never lowered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "privacy/guard.h"
#include "privacy/guard_int.h"
#include "util/clock.h"
#include "util/err.h"

/* The other nodes, as the server layer's hook would report them. */
struct fake {
    struct fv_quota_usage principal, role; /* the others' counts of "ops" and "role:ops" */
    int publishes, now_publishes;
    struct fv_quota_usage last; /* the last own counts published for "ops" */
};

static void others(void *arg, const char *name, int64_t day, struct fv_quota_usage *sum)
{
    struct fake *f = arg;
    const struct fv_quota_usage *u = strcmp(name, "ops") == 0        ? &f->principal
                                     : strcmp(name, "role:ops") == 0 ? &f->role
                                                                     : NULL;
    if (u == NULL || u->day != day) return;
    fv_quota_usage_add(sum, u);
}

static void publish(void *arg, const char *name, const struct fv_quota_usage *own, int now)
{
    struct fake *f = arg;
    f->publishes++;
    f->now_publishes += now != 0;
    if (strcmp(name, "ops") == 0) f->last = *own;
}

static int64_t today(void)
{
    return (int64_t)(fv_now_ms() / 86400000u);
}

static void setup(struct fv_guard *g, struct fv_guard_ctx *ctx, struct fake *f)
{
    memset(g, 0, sizeof *g);
    memset(ctx, 0, sizeof *ctx);
    memset(f, 0, sizeof *f);
    assert_int_equal(fv_quota_new(&g->quota), FV_OK);
    g->share = (struct fv_guard_share){.others = others, .publish = publish, .arg = f};
    snprintf(ctx->principal, sizeof ctx->principal, "ops");
    snprintf(ctx->role, sizeof ctx->role, "ops");
    ctx->d.quota = (struct fv_quota_limits){
        .subjects_per_day = FV_UNLIMITED, .rows_per_day = 100, .bytes_per_day = FV_UNLIMITED};
    ctx->d.role_quota = (struct fv_quota_limits){.subjects_per_day = FV_UNLIMITED,
                                                 .rows_per_day = FV_UNLIMITED,
                                                 .bytes_per_day = FV_UNLIMITED};
    f->principal.day = f->role.day = today();
}

static void test_sum_decides(void **state)
{
    (void)state;
    struct fv_guard g;
    struct fv_guard_ctx ctx;
    struct fake f;
    char why[200];
    setup(&g, &ctx, &f);
    fv_guard__quota_count(&g, &ctx, 0, 30, 0, 0); /* this node: 30 of 100 rows */
    assert_int_equal(fv_guard_quota_more(&g, &ctx, 70, 0, 0, why, sizeof why), FV_OK);
    f.principal.rows = 60; /* the others: 60 -> the sum is 90 */
    assert_int_equal(fv_guard_quota_more(&g, &ctx, 70, 0, 0, why, sizeof why), FV_ELIMIT);
    assert_non_null(strstr(why, "used 90"));
    assert_int_equal(fv_guard_quota_more(&g, &ctx, 10, 0, 0, why, sizeof why), FV_OK);
    struct fv_guard_meter m = {0};
    fv_guard_meter_start(&g, &ctx, &m, 0);
    assert_int_equal(m.rows_left, 10);
    f.principal.rows = 70; /* the sum reaches the limit: refused with nothing asked more */
    assert_int_equal(fv_guard_quota_more(&g, &ctx, 0, 0, 0, why, sizeof why), FV_ELIMIT);
    /* another day's counts of the others are not today's */
    f.principal.day = today() - 1;
    assert_int_equal(fv_guard_quota_more(&g, &ctx, 70, 0, 0, why, sizeof why), FV_OK);
    /* the role's budget: the others' counts of the role too */
    ctx.d.role_quota.rows_per_day = 50;
    f.role.rows = 15;
    assert_int_equal(fv_guard_quota_more(&g, &ctx, 5, 0, 0, why, sizeof why), FV_OK);
    assert_int_equal(fv_guard_quota_more(&g, &ctx, 6, 0, 0, why, sizeof why), FV_ELIMIT);
    assert_non_null(strstr(why, "role:ops"));
    fv_guard__quota_close(&g);
}

static void test_near_publishes_now(void **state)
{
    (void)state;
    struct fv_guard g;
    struct fv_guard_ctx ctx;
    struct fake f;
    setup(&g, &ctx, &f);
    /* 50 of 100 here, none elsewhere: in the batch (both keys, principal and role) */
    fv_guard__quota_count(&g, &ctx, 0, 50, 0, 0);
    assert_int_equal(f.publishes, 2);
    assert_int_equal(f.now_publishes, 0);
    assert_int_equal(f.last.rows, 50);
    /* 10 more here (60 own) while the others hold 20: the sum is 80, the last fifth: now */
    f.principal.rows = 20;
    fv_guard__quota_count(&g, &ctx, 0, 10, 0, 0);
    assert_int_equal(f.publishes, 4);
    assert_int_equal(f.now_publishes, 2);
    assert_int_equal(f.last.rows, 60); /* own counts only: never the others' */
    assert_int_equal(f.last.day, today());
    /* the sum at 79 is not near: the batch again */
    f.principal.rows = 18;
    fv_guard__quota_count(&g, &ctx, 0, 1, 0, 0);
    assert_int_equal(f.now_publishes, 2);
    fv_guard__quota_close(&g);
}

static void test_raise(void **state)
{
    (void)state;
    struct fv_guard g;
    struct fv_guard_ctx ctx;
    struct fake f;
    setup(&g, &ctx, &f);
    fv_guard__quota_count(&g, &ctx, 2, 30, 400, 0);
    struct fv_quota_usage pub = {.day = today(), .subjects = 1, .rows = 45, .bytes = 100};
    fv_guard_quota_raise(&g, "ops", &pub);
    struct fv_quota_usage u;
    fv_quota_get(g.quota, "ops", fv_now_ms(), &u);
    assert_int_equal(u.subjects, 2); /* never lowered */
    assert_int_equal(u.rows, 45);    /* raised */
    assert_int_equal(u.bytes, 400);
    struct fv_quota_usage old = {.day = today() - 1, .rows = 99};
    fv_guard_quota_raise(&g, "ops", &old); /* yesterday's: worth nothing today */
    fv_quota_get(g.quota, "ops", fv_now_ms(), &u);
    assert_int_equal(u.rows, 45);
    fv_guard_quota_raise(&g, "newcomer", &pub);
    fv_quota_get(g.quota, "newcomer", fv_now_ms(), &u);
    assert_int_equal(u.rows, 45);
    fv_guard__quota_close(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sum_decides),
                                       cmocka_unit_test(test_near_publishes_now),
                                       cmocka_unit_test(test_raise)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
