/* test_head_memory.c - what the store's head holds per subject (src/store/store.c), issue 13:
 * memory per connected vehicle <= 30 KB at 10,000 connections. A vehicle that connected and
 * sent one record has, in the head, one frame of its datums and one connectivity event; the
 * head's arrays started at 16 frames, 32 datums and 16 events (about 2 KB a subject), and are
 * now sized by need at first, doubling after. Also: many records to one subject still all
 * land (the arrays grow past their first size). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "wire/payload.h"

#include "../support/testutil.h"

enum { SUBJECTS = 2000, SIGNALS = 20 };

static char root[64];

static int setup(void **state)
{
    (void)state;
    return fv_test_mkdtemp(root, sizeof root, "fv-headmem");
}

static int teardown(void **state)
{
    (void)state;
    return fv_test_rmtree(root) == 0 ? 0 : -1;
}

static struct fv_store *open_store(const char *name)
{
    struct fv_store_config cfg;
    char data[128];
    snprintf(data, sizeof data, "%s/%s", root, name);
    fv_store_config_defaults(&cfg, data);
    cfg.flush_interval_ms = 3600000; /* nothing leaves the head during the test */
    struct fv_store *s;
    char err[512] = "";
    int rc = fv_store_open(&cfg, 0, &s, err, sizeof err);
    if (rc) fail_msg("fv_store_open: %s (%d)", err, rc);
    return s;
}

static void record(struct fv_datum *d, double base)
{
    for (uint32_t i = 0; i < SIGNALS; i++)
        d[i] = (struct fv_datum){3 + i * 7, {.kind = FV_VK_DOUBLE, .u.d = base + i}};
}

static void test_one_record_per_subject(void **state)
{
    (void)state;
    struct fv_store *s = open_store("one");
    unsigned char dek[32];
    memset(dek, 0x5a, sizeof dek);
    struct fv_datum d[SIGNALS];
    record(d, 1);
    struct fv_vrecord v = {.n = SIGNALS, .data = d};
    /* a connectivity payload of a typical size */
    unsigned char conn[96];
    memset(conn, 'c', sizeof conn);
    int64_t t = (int64_t)fv_now_ms();
    size_t before = mallinfo2().uordblks;
    for (int k = 0; k < SUBJECTS; k++) {
        char pseudo[33];
        snprintf(pseudo, sizeof pseudo, "%032x", k + 1);
        assert_int_equal(
            fv_store_add_event(s, pseudo, dek, t, 0, "connectivity", 12, conn, sizeof conn), FV_OK);
        assert_int_equal(fv_store_add_frame(s, pseudo, dek, t, 0, &v), FV_OK);
    }
    double per = (double)(mallinfo2().uordblks - before) / SUBJECTS;
    print_message("the head holds %.0f bytes for a subject with one record of %d signals and "
                  "one event\n",
                  per, SIGNALS);
    struct fv_store_stats st;
    fv_store_stats(s, &st);
    assert_int_equal(st.head_subjects, SUBJECTS);
    assert_int_equal(st.head_datums, (uint64_t)SUBJECTS * SIGNALS);
    assert_int_equal(st.head_records, 2 * SUBJECTS);
    /* 640 bytes of datums, the subject's entry, a frame, an event and its bytes; it was
     * about 2,100 with the arrays' first sizes of 16 and 32 */
    assert_true(per <= 1400);
    fv_store_close(s);
}

static void test_many_records_one_subject(void **state)
{
    (void)state;
    struct fv_store *s = open_store("many");
    unsigned char dek[32];
    memset(dek, 0x33, sizeof dek);
    struct fv_datum d[SIGNALS];
    int64_t t = (int64_t)fv_now_ms() - 100000;
    for (int i = 0; i < 1000; i++) {
        record(d, i);
        struct fv_vrecord v = {.n = (size_t)(1 + i % SIGNALS), .data = d};
        assert_int_equal(
            fv_store_add_frame(s, "000000000000000000000000000000ff", dek, t + i, 0, &v), FV_OK);
        assert_int_equal(fv_store_add_event(s, "000000000000000000000000000000ff", dek, t + i, 0,
                                            "alerts", 6, (const unsigned char *)"x", 1),
                         FV_OK);
    }
    struct fv_store_stats st;
    fv_store_stats(s, &st);
    uint64_t datums = 0;
    for (int i = 0; i < 1000; i++)
        datums += 1 + i % SIGNALS;
    assert_int_equal(st.head_datums, datums);
    assert_int_equal(st.head_records, 2000);
    assert_int_equal(st.head_subjects, 1);
    fv_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_record_per_subject),
        cmocka_unit_test(test_many_records_one_subject),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
