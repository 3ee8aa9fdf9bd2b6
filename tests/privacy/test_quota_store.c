/* test_quota_store.c - the daily quota counters in the catalog (privacy/quota_store.h): saved
 * counters come back after reopening, also past INT64_MAX (capped, still over any limit);
 * yesterday's are not loaded and are deleted; a second save replaces the first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "privacy/policy.h"
#include "privacy/quota_store.h"
#include "../support/testutil.h"
#include "util/err.h"

#define DAY 86400000ull

static char dir[64];

static int setup(void **state)
{
    (void)state;
    return fv_test_mkdtemp(dir, sizeof dir, "fv-quota");
}

static int teardown(void **state)
{
    (void)state;
    return fv_test_rmtree(dir);
}

static sqlite3 *open_db(void)
{
    char p[128], err[256];
    snprintf(p, sizeof p, "%s/quota.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(fv_quota_store_open(p, &db, err, sizeof err), FV_OK);
    return db;
}

static int count(void *arg, const char *name, const struct fv_quota_usage *u)
{
    (void)name;
    (void)u;
    ++*(int *)arg;
    return 0;
}

static void test_saved_and_loaded(void **state)
{
    (void)state;
    uint64_t today = 20400 * DAY + 5000;
    sqlite3 *db = open_db();
    struct fv_quota_usage a = {.day = 20400, .subjects = 3, .rows = 10, .bytes = 999, .bulk = 7};
    struct fv_quota_usage r = {.day = 20400, .rows = UINT64_MAX}; /* saturated */
    struct fv_quota_usage old = {.day = 20399, .rows = 5};
    sqlite3_stmt *keep = NULL; /* one statement for all (the guard's way), then none */
    assert_int_equal(fv_quota_store_save(db, &keep, "alice", &old), FV_OK);
    assert_non_null(keep);
    assert_int_equal(fv_quota_store_save(db, &keep, "alice", &a), FV_OK); /* replaces */
    assert_int_equal(fv_quota_store_save(db, &keep, "role:analyst", &r), FV_OK);
    assert_int_equal(fv_quota_store_save(db, NULL, "bob", &old), FV_OK); /* yesterday's */
    sqlite3_finalize(keep);
    sqlite3_close(db);

    db = open_db();
    struct fv_quota *q;
    char err[256];
    assert_int_equal(fv_quota_new(&q), FV_OK);
    assert_int_equal(fv_quota_store_load(db, q, today, err, sizeof err), FV_OK);
    struct fv_quota_usage u;
    fv_quota_get(q, "alice", today, &u);
    assert_int_equal(u.subjects, 3);
    assert_int_equal(u.rows, 10);
    assert_int_equal(u.bytes, 999);
    assert_int_equal(u.bulk, 7);
    fv_quota_get(q, "role:analyst", today, &u);
    assert_true(u.rows == (uint64_t)INT64_MAX);
    struct fv_quota_limits lim = {FV_UNLIMITED, 1000000000000ull, FV_UNLIMITED};
    assert_int_equal(fv_quota_check(q, "role:analyst", &lim, today, 0, 0, 0, NULL, 0), FV_ELIMIT);
    int n = 0;
    fv_quota_foreach(q, count, &n);
    assert_int_equal(n, 2); /* bob's day is over */
    fv_quota_free(q);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM quota_usage", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 2); /* and deleted */
    sqlite3_finalize(st);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_saved_and_loaded)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
