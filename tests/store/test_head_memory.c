/* test_head_memory.c - what the store's head holds per subject (src/store/store.c), issue 13:
 * memory per connected vehicle <= 30 KB at 10,000 connections. A vehicle that connected and
 * sent one record has, in the head, one frame of its datums and one connectivity event; the
 * head's arrays started at 16 frames, 32 datums and 16 events (about 2 KB a subject), then
 * were sized by need at first, doubling after (1,121 bytes at one record; about 3,100 at three,
 * room for 80 datums of 32 bytes); now a datum takes a 12-byte slot (two for a location or a
 * time, one more for a signal number above 65535) and the arrays grow by half. Also: many records
 * to one subject still all land (the arrays grow past their first size), and values of every kind
 * read back the same from the head, through the fleet view's fv_store_last and after a flush. */
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
    /* 240 bytes of datums, the subject's entry, a frame, an event and its bytes (674); it was
     * about 2,100 with the arrays' first sizes of 16 and 32, 1,121 with 32-byte datums */
    assert_true(per <= 800);
    /* Two more records each, as a vehicle at 0.1 Hz sends in the memory benchmark's half
     * minute (bench/ingest/run.sh): 60 datums, room for 80 (2,560 bytes) when doubling. */
    size_t before3 = mallinfo2().uordblks;
    for (int r = 1; r <= 2; r++)
        for (int k = 0; k < SUBJECTS; k++) {
            char pseudo[33];
            snprintf(pseudo, sizeof pseudo, "%032x", k + 1);
            assert_int_equal(fv_store_add_frame(s, pseudo, dek, t + r * 10000, 0, &v), FV_OK);
        }
    double per3 = per + (double)(mallinfo2().uordblks - before3) / SUBJECTS;
    print_message("and %.0f bytes after three records\n", per3);
    fv_store_stats(s, &st);
    assert_int_equal(st.head_datums, (uint64_t)SUBJECTS * SIGNALS * 3);
    assert_true(per3 <= 1400); /* 720 bytes of datums */
    fv_store_close(s);
}

/* One value of every kind, distinct in every byte that matters (a wide value's second half
 * above all). */
enum { NKIND = 13, BIGFIELD = 70000 };
static void every_kind(struct fv_datum *d, int salt, char *str)
{
    memset(d, 0, NKIND * sizeof *d);
    for (int i = 0; i < NKIND; i++) {
        d[i].field = 5 + (uint32_t)i;
        d[i].value.member = (uint8_t)(i + 1);
    }
    d[0].value.kind = FV_VK_DOUBLE, d[0].value.u.d = 12.5 + salt;
    d[1].value.kind = FV_VK_INT, d[1].value.u.i = -1234567890123LL - salt;
    snprintf(str, 16, "gear-%d", salt);
    d[2].value.kind = FV_VK_STRING, d[2].value.u.s = str;
    d[3].value.kind = FV_VK_BOOL, d[3].value.u.i = salt & 1;
    d[4].value.kind = FV_VK_LOCATION, d[4].value.u.loc.lat = 37.25 + salt;
    d[4].value.u.loc.lon = -122.125 - salt;
    d[5].value.kind = FV_VK_ENUM, d[5].value.u.i = 7 + salt;
    d[6].value.kind = FV_VK_INVALID;
    d[7].value.kind = FV_VK_DOORS, d[7].value.u.bits = 0x15u + (uint32_t)salt;
    d[8].value.kind = FV_VK_TIME, d[8].value.u.time.h = 23 - salt;
    d[8].value.u.time.m = 59 - salt, d[8].value.u.time.s = 58 - salt;
    d[9].value.kind = FV_VK_TIRES, d[9].value.u.bits = 0x9u + (uint32_t)salt;
    d[10].value.kind = FV_VK_OTHER;
    d[11].value.kind = FV_VK_LOCATION, d[11].value.u.loc.lat = -1.5 - salt;
    d[11].value.u.loc.lon = 179.75 + salt;
    /* a signal number above 16 bits (a record stored before the payload limits) */
    d[12].field = BIGFIELD;
    d[12].value.kind = FV_VK_TIME, d[12].value.u.time.h = 1 + salt;
    d[12].value.u.time.m = 2 + salt, d[12].value.u.time.s = 3 + salt;
}

static size_t kind_at(uint32_t field)
{
    return field == BIGFIELD ? 12 : field - 5;
}

/* Every row of the subject's query equals the records (one per time, NKIND columns). */
static void check_rows(struct fv_store *s, const char *pseudo, const unsigned char *dek, int64_t t0,
                       int nrec, const char *when)
{
    struct fv_store_cursor *c;
    char err[256] = "";
    assert_int_equal(
        fv_store_query(s, pseudo, dek, t0, t0 + 1000 * nrec, NULL, 0, 0, &c, err, sizeof err),
        FV_OK);
    struct fv_store_chunk ch;
    int rows = 0, rc;
    while ((rc = fv_store_next(c, &ch, err, sizeof err)) == 1) {
        assert_int_equal(ch.ncols, NKIND);
        for (size_t i = 0; i < ch.n; i++, rows++) {
            int r = (int)((ch.t[i] - t0) / 1000);
            struct fv_datum want[NKIND];
            char str[16];
            every_kind(want, r, str);
            for (size_t j = 0; j < ch.ncols; j++) {
                const struct fv_datum *w = &want[kind_at(ch.field[j])];
                if (!fv_value_equal(&ch.col[j][i], &w->value))
                    fail_msg("%s: record %d signal %u (kind %d) differs", when, r, ch.field[j],
                             w->value.kind);
            }
        }
    }
    assert_int_equal(rc, 0);
    assert_int_equal(rows, nrec);
    fv_store_cursor_free(c);
    /* the fleet view's newest sample of each wide or owned value */
    static const uint32_t probe[] = {5 + 2, 5 + 4, 5 + 8, 5 + 11, BIGFIELD};
    struct fv_datum want[NKIND];
    char str[16];
    every_kind(want, nrec - 1, str);
    for (size_t p = 0; p < sizeof probe / sizeof probe[0]; p++) {
        int found = 0;
        int64_t t = 0;
        struct fv_value v = {0};
        assert_int_equal(
            fv_store_last(s, pseudo, dek, probe[p], t0, t0 + 1000 * nrec, 0, &found, &t, &v),
            FV_OK);
        assert_int_equal(found, 1);
        assert_int_equal(t, t0 + 1000 * (nrec - 1));
        if (!fv_value_equal(&v, &want[kind_at(probe[p])].value))
            fail_msg("%s: last value of signal %u differs", when, probe[p]);
        fv_value_clear(&v);
    }
}

static int key_one(void *arg, const char *pseudo, unsigned char key[32])
{
    (void)pseudo;
    memcpy(key, arg, 32);
    return FV_OK;
}

static void test_every_kind_round_trip(void **state)
{
    (void)state;
    struct fv_store *s = open_store("kinds");
    unsigned char dek[32];
    memset(dek, 0x6b, sizeof dek);
    const char *pseudo = "00000000000000000000000000000abc";
    int64_t t0 = (int64_t)fv_now_ms() - 3600000;
    enum { NREC = 5 };
    for (int r = 0; r < NREC; r++) {
        struct fv_datum d[NKIND];
        char str[16];
        every_kind(d, r, str);
        struct fv_vrecord v = {.n = NKIND, .data = d};
        assert_int_equal(fv_store_add_frame(s, pseudo, dek, t0 + 1000 * r, 0, &v), FV_OK);
    }
    struct fv_store_stats st;
    fv_store_stats(s, &st);
    assert_int_equal(st.head_datums, NREC * NKIND);
    check_rows(s, pseudo, dek, t0, NREC, "head");
    fv_store_compact_all(s);
    assert_int_equal(fv_store_drain(s, NULL, key_one, dek), FV_OK);
    fv_store_stats(s, &st);
    assert_int_equal(st.head_records, 0);
    check_rows(s, pseudo, dek, t0, NREC, "flushed");
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
        cmocka_unit_test(test_every_kind_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
