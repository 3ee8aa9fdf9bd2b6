/* test_tombstones.c - the erasure list: appended lines replay in order; a torn last line (a
 * failed write, a crash) is skipped and cut by the next append instead of gluing onto it; a
 * damaged line elsewhere is an error naming the line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "os/fsio.h"
#include "privacy/tombstones.h"
#include "util/err.h"
#include "../support/testutil.h"

static char dir[64], path[128];

static int setup(void **state)
{
    (void)state;
    fv_os_fault_clear();
    if (fv_test_mkdtemp(dir, sizeof dir, "fv-tomb")) return -1;
    snprintf(path, sizeof path, "%s/erasures.jsonl", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fv_os_fault_clear();
    return fv_test_rmtree(dir);
}

struct seen {
    int n;
    char pseudo[8][33];
    uint64_t at[8];
};

static int collect(void *arg, const char *pseudo, uint64_t at_ms)
{
    struct seen *s = arg;
    if (s->n == 8) return FV_ELIMIT;
    snprintf(s->pseudo[s->n], sizeof s->pseudo[0], "%s", pseudo);
    s->at[s->n++] = at_ms;
    return FV_OK;
}

static const char *P1 = "0123456789abcdef0123456789abcdef",
                  *P2 = "fedcba9876543210fedcba9876543210",
                  *P3 = "00000000000000000000000000000003";

static void test_append_and_replay(void **state)
{
    (void)state;
    char err[256];
    struct seen s = {0};
    assert_int_equal(fv_tombstone_replay(path, collect, &s, err, sizeof err), FV_OK); /* none */
    assert_int_equal(s.n, 0);
    assert_int_equal(fv_tombstone_append(path, P1, 10, "po", "T-1", err, sizeof err), FV_OK);
    assert_int_equal(fv_tombstone_append(path, P2, 20, NULL, NULL, err, sizeof err), FV_OK);
    assert_int_equal(fv_tombstone_append(path, "not-hex", 30, NULL, NULL, err, sizeof err),
                     FV_EINVAL);
    assert_int_equal(fv_tombstone_replay(path, collect, &s, err, sizeof err), FV_OK);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.pseudo[0], P1);
    assert_string_equal(s.pseudo[1], P2);
    assert_int_equal(s.at[1], 20);
}

/* A write that fails midway (a full disk) leaves half a line; the erasure is retried and
 * succeeds: the list still replays (before the fix the retry glued onto the half line and
 * every later start failed with "the erasure list is damaged"). The same for a crash. */
static void test_torn_line_cut_by_next_append(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(fv_tombstone_append(path, P1, 10, "po", "T-1", err, sizeof err), FV_OK);
    assert_int_equal(fv_os_fault_set(FV_OS_WRITE, fv_os_fault_calls(FV_OS_WRITE) + 1, ENOSPC, 0),
                     FV_OK);
    assert_int_equal(fv_tombstone_append(path, P2, 20, "po", "T-2", err, sizeof err), FV_EIO);
    assert_non_null(strstr(err, "No space left on device"));
    struct seen s = {0};
    assert_int_equal(fv_tombstone_replay(path, collect, &s, err, sizeof err), FV_OK);
    assert_int_equal(s.n, 1); /* the torn line is skipped: never confirmed */
    assert_int_equal(fv_tombstone_append(path, P2, 21, "po", "T-2", err, sizeof err), FV_OK);
    /* a crash mid-append: a line without its newline at the end */
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs("{\"subject\":\"0000", f);
    fclose(f);
    assert_int_equal(fv_tombstone_append(path, P3, 30, NULL, NULL, err, sizeof err), FV_OK);
    s.n = 0;
    assert_int_equal(fv_tombstone_replay(path, collect, &s, err, sizeof err), FV_OK);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.pseudo[1], P2);
    assert_int_equal(s.at[1], 21);
    assert_string_equal(s.pseudo[2], P3);
}

static void test_damaged_line_is_an_error(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(fv_tombstone_append(path, P1, 10, NULL, NULL, err, sizeof err), FV_OK);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs("{\"subject\":\"xyz\"}\n", f);
    fclose(f);
    assert_int_equal(fv_tombstone_append(path, P2, 20, NULL, NULL, err, sizeof err), FV_OK);
    struct seen s = {0};
    assert_int_equal(fv_tombstone_replay(path, collect, &s, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "erasures.jsonl:2:"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_and_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_line_cut_by_next_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_line_is_an_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
