/* test_wal.c - WAL append/replay, group commit durability, torn tails cut at every offset
 * (rule I3 in src/wal/wal.c), corruption reported with file and offset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/fsio.h"
#include "util/err.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

struct seen {
    int n;
    char txids[4096][16];
};

static int on_rec(void *arg, const struct fv_wal_record *r, const char *file, uint64_t off)
{
    (void)file;
    (void)off;
    struct seen *s = arg;
    if (s->n < 4096) {
        snprintf(s->txids[s->n], sizeof s->txids[0], "%.*s", (int)r->txid_len,
                 (const char *)r->txid);
        s->n++;
    }
    return 0;
}

static void make_rec(struct fv_wal_record *r, char *txid, int i)
{
    static const unsigned char payload[] = {1, 2, 3, 4, 5, 6, 7, 8};
    snprintf(txid, 16, "tx-%d", i);
    *r = (struct fv_wal_record){.type = FV_WAL_REC_DATA,
                                .received_ms = 1000u + (uint64_t)i,
                                .device_id = "DEV1",
                                .device_id_len = 4,
                                .client_type = "vehicle_device",
                                .client_type_len = 14,
                                .topic = "V",
                                .topic_len = 1,
                                .txid = (const unsigned char *)txid,
                                .txid_len = (uint16_t)strlen(txid),
                                .payload = payload,
                                .payload_len = (uint32_t)(i % 9)};
}

static char *tmpdir(void)
{
    char *d = strdup("/tmp/fv-wal-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rmrf(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static void write_n(const char *dir, int n, uint64_t seg)
{
    struct fv_wal *w;
    char err[512];
    struct fv_wal_opts o = {.segment_bytes = seg};
    assert_int_equal(fv_wal_open(dir, &o, NULL, NULL, &w, err, sizeof err), FV_OK);
    for (int i = 0; i < n; i++) {
        struct fv_wal_record r;
        char tx[16];
        make_rec(&r, tx, i);
        assert_int_equal(fv_wal_append(w, &r), i + 1);
        /* With small segments, let each record become durable so rotation can happen. */
        while (seg < 65536 && fv_wal_durable_seq(w) < (uint64_t)(i + 1))
            usleep(100);
    }
    fv_wal_close(w); /* close makes everything durable */
}

static void test_roundtrip_and_rotation(void **state)
{
    (void)state;
    char *d = tmpdir();
    write_n(d, 500, 4096); /* small segments force many files */
    struct seen *s = calloc(1, sizeof *s);
    struct fv_wal *w;
    char err[512];
    assert_int_equal(fv_wal_open(d, NULL, on_rec, s, &w, err, sizeof err), FV_OK);
    assert_int_equal(s->n, 500);
    for (int i = 0; i < 500; i++) {
        char tx[16];
        snprintf(tx, sizeof tx, "tx-%d", i);
        assert_string_equal(s->txids[i], tx);
    }
    struct fv_wal_stats st;
    fv_wal_stats(w, &st);
    assert_true(st.files > 5);
    /* Appending after replay continues the sequence in the newest file. */
    struct fv_wal_record r;
    char tx[16];
    make_rec(&r, tx, 500);
    assert_int_equal(fv_wal_append(w, &r), 1);
    fv_wal_close(w);
    s->n = 0;
    assert_int_equal(fv_wal_open(d, NULL, on_rec, s, &w, err, sizeof err), FV_OK);
    assert_int_equal(s->n, 501);
    fv_wal_close(w);
    free(s);
    rmrf(d);
    free(d);
}

static void test_durable_seq_advances(void **state)
{
    (void)state;
    char *d = tmpdir();
    struct fv_wal *w;
    char err[512];
    assert_int_equal(fv_wal_open(d, NULL, NULL, NULL, &w, err, sizeof err), FV_OK);
    int64_t last = 0;
    for (int i = 0; i < 100; i++) {
        struct fv_wal_record r;
        char tx[16];
        make_rec(&r, tx, i);
        last = fv_wal_append(w, &r);
    }
    for (int i = 0; i < 2000 && fv_wal_durable_seq(w) < (uint64_t)last; i++)
        usleep(1000);
    assert_int_equal(fv_wal_durable_seq(w), last);
    struct fv_wal_stats st;
    fv_wal_stats(w, &st);
    assert_true(st.fsyncs >= 1 && st.fsyncs <= 100); /* group commit */
    fv_wal_close(w);
    rmrf(d);
    free(d);
}

/* Cut the single file at every offset: replay keeps exactly the whole records before the
 * cut and leaves a file that accepts appends. */
static void test_torn_tail_every_offset(void **state)
{
    (void)state;
    char *d = tmpdir();
    write_n(d, 6, 1 << 20);
    char path[600];
    snprintf(path, sizeof path, "%s/wal-0000000000000001.log", d);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    size_t full = (size_t)st.st_size;
    unsigned char *img = malloc(full);
    FILE *f = fopen(path, "rb");
    assert_int_equal(fread(img, 1, full, f), full);
    fclose(f);
    /* record boundaries */
    size_t ends[8];
    int ne = 0;
    for (size_t at = FV_WAL_HEADER_LEN; at < full; at += 8 + (img[at] | img[at + 1] << 8))
        ends[ne++] = at + 8 + (img[at] | img[at + 1] << 8);
    assert_int_equal(ne, 6);
    for (size_t cut = 0; cut <= full; cut++) {
        f = fopen(path, "wb");
        assert_int_equal(fwrite(img, 1, cut, f), cut);
        fclose(f);
        struct seen *s = calloc(1, sizeof *s);
        struct fv_wal *w;
        char err[512];
        assert_int_equal(fv_wal_open(d, NULL, on_rec, s, &w, err, sizeof err), FV_OK);
        int expect = 0;
        while (expect < ne && ends[expect] <= cut)
            expect++;
        assert_int_equal(s->n, expect);
        struct fv_wal_record r;
        char tx[16];
        make_rec(&r, tx, 99);
        assert_true(fv_wal_append(w, &r) > 0);
        fv_wal_close(w);
        s->n = 0;
        assert_int_equal(fv_wal_open(d, NULL, on_rec, s, &w, err, sizeof err), FV_OK);
        assert_int_equal(s->n, expect + 1);
        assert_string_equal(s->txids[expect], "tx-99");
        fv_wal_close(w);
        free(s);
    }
    free(img);
    rmrf(d);
    free(d);
}

static void test_corruption_in_old_file_is_an_error(void **state)
{
    (void)state;
    char *d = tmpdir();
    write_n(d, 200, 2048);
    char path[600];
    snprintf(path, sizeof path, "%s/wal-0000000000000001.log", d);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, 40), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, 40), 1);
    close(fd);
    struct fv_wal *w = NULL;
    char err[512] = "";
    assert_int_equal(fv_wal_open(d, NULL, NULL, NULL, &w, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "wal-0000000000000001.log"));
    assert_non_null(strstr(err, "offset 16"));
    rmrf(d);
    free(d);
}

/* A flipped byte in the middle of the newest file is corruption, not a torn tail. */
static void test_corruption_mid_newest_file_is_an_error(void **state)
{
    (void)state;
    char *d = tmpdir();
    write_n(d, 20, 1 << 20);
    char path[600];
    snprintf(path, sizeof path, "%s/wal-0000000000000001.log", d);
    int fd = open(path, O_RDWR);
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, 30), 1);
    b ^= 1;
    assert_int_equal(pwrite(fd, &b, 1, 30), 1);
    close(fd);
    struct fv_wal *w = NULL;
    char err[512] = "";
    assert_int_equal(fv_wal_open(d, NULL, NULL, NULL, &w, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "checksum"));
    rmrf(d);
    free(d);
}

/* Appends records until the WAL refuses one with FV_EAGAIN (a full disk, I6); returns the
 * last accepted seq. */
static int64_t append_until_full(struct fv_wal *w, int *next)
{
    int64_t last = (int64_t)fv_wal_appended_seq(w);
    for (int k = 0; k < 5000; k++) {
        struct fv_wal_record r;
        char tx[16];
        make_rec(&r, tx, *next);
        int64_t seq = fv_wal_append(w, &r);
        if (seq == FV_EAGAIN) return last;
        assert_true(seq > 0);
        last = seq;
        (*next)++;
        usleep(1000);
    }
    fail_msg("the WAL never refused a record on a full disk");
    return last;
}

static void wait_durable(struct fv_wal *w, int64_t seq)
{
    for (int i = 0; i < 5000 && fv_wal_durable_seq(w) < (uint64_t)seq; i++)
        usleep(1000);
    assert_int_equal(fv_wal_durable_seq(w), seq);
}

/* I6: a full disk (a write, then a file creation, failing with ENOSPC) stops acks and
 * refuses records without failing the WAL; once there is space, every accepted record
 * becomes durable, once, without a torn byte; an I/O error still fails it for good. */
static void test_full_disk_waits_for_space(void **state)
{
    (void)state;
    char *d = tmpdir();
    struct fv_wal *w;
    char err[512];
    fv_os_fault_clear();
    assert_int_equal(fv_wal_open(d, NULL, NULL, NULL, &w, err, sizeof err), FV_OK);
    int next = 0;
    for (; next < 10; next++) {
        struct fv_wal_record r;
        char tx[16];
        make_rec(&r, tx, next);
        assert_int_equal(fv_wal_append(w, &r), next + 1);
    }
    wait_durable(w, 10);
    assert_int_equal(fv_os_fault_set(FV_OS_WRITE, fv_os_fault_calls(FV_OS_WRITE) + 1, ENOSPC, 1),
                     FV_OK);
    int64_t last = append_until_full(w, &next);
    assert_true(last > 10);
    usleep(300000);
    assert_int_equal(fv_wal_durable_seq(w), 10);
    assert_false(fv_wal_failed(w));
    fv_os_fault_clear(); /* space again */
    wait_durable(w, last);
    fv_wal_close(w);

    /* A file creation on a full disk: every batch starts a new file here. */
    struct fv_wal_opts o = {.segment_bytes = 1};
    struct seen *s = calloc(1, sizeof *s);
    assert_int_equal(fv_wal_open(d, &o, on_rec, s, &w, err, sizeof err), FV_OK);
    assert_int_equal(s->n, next);
    struct fv_wal_stats st;
    fv_wal_stats(w, &st);
    assert_int_equal(st.torn_bytes_cut, 0);
    assert_int_equal(fv_os_fault_set(FV_OS_OPEN, fv_os_fault_calls(FV_OS_OPEN) + 1, ENOSPC, 1),
                     FV_OK);
    int first = next;
    last = append_until_full(w, &next);
    assert_false(fv_wal_failed(w));
    fv_os_fault_clear();
    wait_durable(w, last);

    /* An I/O error is permanent. */
    assert_int_equal(fv_os_fault_set(FV_OS_WRITE, fv_os_fault_calls(FV_OS_WRITE) + 1, EIO, 0),
                     FV_OK);
    struct fv_wal_record r;
    char tx[16];
    make_rec(&r, tx, next);
    assert_true(fv_wal_append(w, &r) > 0);
    for (int i = 0; i < 5000 && !fv_wal_failed(w); i++)
        usleep(1000);
    assert_true(fv_wal_failed(w));
    assert_int_equal(fv_wal_append(w, &r), FV_EIO);
    fv_wal_close(w);
    fv_os_fault_clear();

    s->n = 0;
    assert_int_equal(fv_wal_open(d, NULL, on_rec, s, &w, err, sizeof err), FV_OK);
    assert_true(next > first);
    assert_true(s->n == next || s->n == next + 1); /* the failed record may have reached disk */
    for (int i = 0; i < next; i++) {
        snprintf(tx, sizeof tx, "tx-%d", i);
        assert_string_equal(s->txids[i], tx);
    }
    fv_wal_close(w);
    free(s);
    rmrf(d);
    free(d);
}

static void test_body_codec_limits(void **state)
{
    (void)state;
    unsigned char buf[64];
    struct fv_wal_record r;
    /* every truncation of a valid body is rejected */
    char tx[16];
    make_rec(&r, tx, 5);
    size_t n;
    unsigned char big[256];
    assert_int_equal(fv_wal_encode_body(&r, big, sizeof big, &n), FV_OK);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(fv_wal_decode_body(big, k, &r), FV_ECORRUPT);
    assert_int_equal(fv_wal_decode_body(big, n, &r), FV_OK);
    assert_int_equal(r.payload_len, 5);
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(fv_wal_decode_body(buf, sizeof buf, &r), FV_ECORRUPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_rotation),
        cmocka_unit_test(test_durable_seq_advances),
        cmocka_unit_test(test_torn_tail_every_offset),
        cmocka_unit_test(test_corruption_in_old_file_is_an_error),
        cmocka_unit_test(test_corruption_mid_newest_file_is_an_error),
        cmocka_unit_test(test_full_disk_waits_for_space),
        cmocka_unit_test(test_body_codec_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
