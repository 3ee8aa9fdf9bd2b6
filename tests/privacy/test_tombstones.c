/* test_tombstones.c - the erasure list (privacy/tombstones.h): lines replay in order; a torn
 * last line is skipped, and the next append cuts it so that the list stays readable (issue
 * 8: the append went after the fragment, making one malformed line that every later start
 * refused); any other malformed line is refused naming the line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "privacy/tombstones.h"
#include "util/err.h"

#define P1 "0123456789abcdef0123456789abcdef"
#define P2 "fedcba9876543210fedcba9876543210"
#define P3 "00000000000000001111111111111111"

static char dir[64], path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fv-tombstones-XXXXXX");
    if (mkdtemp(dir) == NULL) return -1;
    snprintf(path, sizeof path, "%s/list.tombstones", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

struct seen {
    int n;
    char pseudo[8][33];
    uint64_t at[8];
};

static int collect(void *arg, const char *pseudo, uint64_t at_ms)
{
    struct seen *s = arg;
    if (s->n >= 8) return FV_ELIMIT;
    snprintf(s->pseudo[s->n], sizeof s->pseudo[0], "%s", pseudo);
    s->at[s->n++] = at_ms;
    return FV_OK;
}

static void append_raw(const char *bytes)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, strlen(bytes)), (ssize_t)strlen(bytes));
    close(fd);
}

static off_t file_size(void)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void test_append_replay(void **state)
{
    (void)state;
    char err[256] = "";
    struct seen s = {0};
    assert_int_equal(fv_tombstone_replay(path, collect, &s, err, sizeof err), FV_OK);
    assert_int_equal(s.n, 0); /* no file: no tombstone */
    assert_int_equal(fv_tombstone_append(path, P1, 1000, "paula", "GDPR-1", err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_tombstone_append(path, P2, 2000, NULL, NULL, err, sizeof err), FV_OK);
    assert_int_equal(fv_tombstone_append(path, "not-a-pseudonym", 3, NULL, NULL, err, sizeof err),
                     FV_EINVAL);
    assert_int_equal(fv_tombstone_replay(path, collect, &s, err, sizeof err), FV_OK);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.pseudo[0], P1);
    assert_string_equal(s.pseudo[1], P2);
    assert_int_equal(s.at[0], 1000);
    assert_int_equal(s.at[1], 2000);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

/* Every cut of the last line, then an append: the list replays the complete lines, never
 * the fragment, and never refuses. */
static void test_torn_tail_cut_by_next_append(void **state)
{
    (void)state;
    char err[256] = "";
    assert_int_equal(fv_tombstone_append(path, P1, 1000, "paula", "GDPR-1", err, sizeof err),
                     FV_OK);
    off_t good = file_size();
    assert_int_equal(fv_tombstone_append(path, P2, 2000, "paula", "GDPR-2", err, sizeof err),
                     FV_OK);
    off_t full = file_size();
    char *img = malloc((size_t)full);
    assert_non_null(img);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(img, 1, (size_t)full, f), (size_t)full);
    fclose(f);
    for (off_t cut = good + 1; cut < full; cut++) { /* full - 1: all but the newline */
        assert_int_equal(truncate(path, good), 0);
        f = fopen(path, "ab");
        assert_non_null(f);
        assert_int_equal(fwrite(img + good, 1, (size_t)(cut - good), f), (size_t)(cut - good));
        fclose(f);
        struct seen s = {0};
        assert_int_equal(fv_tombstone_replay(path, collect, &s, err, sizeof err), FV_OK);
        assert_int_equal(s.n, 1); /* the torn line is skipped */
        assert_int_equal(fv_tombstone_append(path, P3, 3000, NULL, NULL, err, sizeof err), FV_OK);
        memset(&s, 0, sizeof s);
        if (fv_tombstone_replay(path, collect, &s, err, sizeof err) != FV_OK)
            fail_msg("cut at %lld of %lld: after the next append: %s", (long long)cut,
                     (long long)full, err);
        assert_int_equal(s.n, 2);
        assert_string_equal(s.pseudo[0], P1);
        assert_string_equal(s.pseudo[1], P3);
        assert_int_equal(s.at[1], 3000);
    }
    free(img);
    /* A list that is all fragment (the first append torn) */
    assert_int_equal(truncate(path, 0), 0);
    append_raw("{\"subject\":\"01234");
    assert_int_equal(fv_tombstone_append(path, P2, 2000, NULL, NULL, err, sizeof err), FV_OK);
    struct seen s = {0};
    assert_int_equal(fv_tombstone_replay(path, collect, &s, err, sizeof err), FV_OK);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.pseudo[0], P2);
}

static void test_damaged_line_refused(void **state)
{
    (void)state;
    char err[256] = "";
    assert_int_equal(fv_tombstone_append(path, P1, 1000, NULL, NULL, err, sizeof err), FV_OK);
    append_raw("{\"subject\":\"xyz\",\"erased_ms\":1}\n");
    assert_int_equal(fv_tombstone_append(path, P2, 2000, NULL, NULL, err, sizeof err), FV_OK);
    struct seen s = {0};
    assert_int_equal(fv_tombstone_replay(path, collect, &s, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, ":2: not a tombstone"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_cut_by_next_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_line_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
