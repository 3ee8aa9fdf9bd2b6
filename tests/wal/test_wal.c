/* test_wal.c - WAL append/replay, group commit durability, and recovery (rules V1..V5 and
 * R1..R5 in src/wal/wal.c): every byte flipped, the file cut at every offset, zero holes in
 * an unfinished batch, old files cut short, format 1 still read, issue 8's regression. The
 * images are made through the real API (fv_wal_open/append/close); the record layout is read
 * from them with the constants of wal_format.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "os/fsio.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

/* A WAL file written by the format-1 build (commit b793e18): six records tx-0..tx-5, made
 * as make_rec below makes them, each fsync'd on its own. */
static const unsigned char v1_image[] = {
    0x46, 0x56, 0x57, 0x41, 0x4c, 0x0d, 0x0a, 0x1a, 0x01, 0x00, 0x00, 0x00, 0x7b, 0x45, 0xb0, 0xf3,
    0x2a, 0x00, 0x00, 0x00, 0xf4, 0x01, 0xa2, 0x36, 0x01, 0x00, 0xe8, 0x03, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x04, 0x44, 0x45, 0x56, 0x31, 0x0e, 0x76, 0x65, 0x68, 0x69, 0x63, 0x6c, 0x65, 0x5f,
    0x64, 0x65, 0x76, 0x69, 0x63, 0x65, 0x01, 0x56, 0x04, 0x00, 0x74, 0x78, 0x2d, 0x30, 0x00, 0x00,
    0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x7c, 0x6b, 0x1c, 0xfa, 0x01, 0x00, 0xe9, 0x03, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x04, 0x44, 0x45, 0x56, 0x31, 0x0e, 0x76, 0x65, 0x68, 0x69, 0x63, 0x6c,
    0x65, 0x5f, 0x64, 0x65, 0x76, 0x69, 0x63, 0x65, 0x01, 0x56, 0x04, 0x00, 0x74, 0x78, 0x2d, 0x31,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x00, 0x00, 0xd3, 0xe7, 0x4a, 0x12, 0x01, 0x00, 0xea,
    0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x44, 0x45, 0x56, 0x31, 0x0e, 0x76, 0x65, 0x68,
    0x69, 0x63, 0x6c, 0x65, 0x5f, 0x64, 0x65, 0x76, 0x69, 0x63, 0x65, 0x01, 0x56, 0x04, 0x00, 0x74,
    0x78, 0x2d, 0x32, 0x02, 0x00, 0x00, 0x00, 0x01, 0x02, 0x2d, 0x00, 0x00, 0x00, 0x63, 0x82, 0xd8,
    0x32, 0x01, 0x00, 0xeb, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x44, 0x45, 0x56, 0x31,
    0x0e, 0x76, 0x65, 0x68, 0x69, 0x63, 0x6c, 0x65, 0x5f, 0x64, 0x65, 0x76, 0x69, 0x63, 0x65, 0x01,
    0x56, 0x04, 0x00, 0x74, 0x78, 0x2d, 0x33, 0x03, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x2e, 0x00,
    0x00, 0x00, 0x08, 0x3d, 0x21, 0xfe, 0x01, 0x00, 0xec, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x04, 0x44, 0x45, 0x56, 0x31, 0x0e, 0x76, 0x65, 0x68, 0x69, 0x63, 0x6c, 0x65, 0x5f, 0x64, 0x65,
    0x76, 0x69, 0x63, 0x65, 0x01, 0x56, 0x04, 0x00, 0x74, 0x78, 0x2d, 0x34, 0x04, 0x00, 0x00, 0x00,
    0x01, 0x02, 0x03, 0x04, 0x2f, 0x00, 0x00, 0x00, 0xe3, 0xb7, 0x53, 0xbc, 0x01, 0x00, 0xed, 0x03,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x44, 0x45, 0x56, 0x31, 0x0e, 0x76, 0x65, 0x68, 0x69,
    0x63, 0x6c, 0x65, 0x5f, 0x64, 0x65, 0x76, 0x69, 0x63, 0x65, 0x01, 0x56, 0x04, 0x00, 0x74, 0x78,
    0x2d, 0x35, 0x05, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05};

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

/* Appends records first..first+n-1, each made durable before the next is appended (so each
 * is a batch of its own, followed by its sync mark). */
static void append_durable(struct fv_wal *w, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        struct fv_wal_record r;
        char tx[16];
        make_rec(&r, tx, i);
        int64_t seq = fv_wal_append(w, &r);
        assert_true(seq > 0);
        for (int k = 0; k < 20000 && fv_wal_durable_seq(w) < (uint64_t)seq; k++)
            usleep(100);
        assert_true(fv_wal_durable_seq(w) >= (uint64_t)seq);
    }
}

static void write_n(const char *dir, int n, uint64_t seg)
{
    struct fv_wal *w;
    char err[512];
    struct fv_wal_opts o = {.segment_bytes = seg};
    assert_int_equal(fv_wal_open(dir, &o, NULL, NULL, &w, err, sizeof err), FV_OK);
    if (seg < 65536) {
        /* With small segments, let each record become durable so rotation can happen. */
        append_durable(w, 0, n);
    } else {
        for (int i = 0; i < n; i++) {
            struct fv_wal_record r;
            char tx[16];
            make_rec(&r, tx, i);
            assert_true(fv_wal_append(w, &r) > 0);
        }
    }
    fv_wal_close(w); /* close makes everything durable */
}

static unsigned char *read_all(const char *path, size_t *len)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    *len = (size_t)st.st_size;
    unsigned char *img = malloc(*len + 1);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(img, 1, *len, f), *len);
    fclose(f);
    return img;
}

static void write_all(const char *path, const unsigned char *img, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(img, 1, len, f), len);
    fclose(f);
}

/* The path of the newest WAL file in d. */
static void newest_file(const char *d, char *path, size_t len)
{
    DIR *dir = opendir(d);
    assert_non_null(dir);
    char best[64] = "";
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        if (strncmp(e->d_name, "wal-", 4) == 0 && strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof best, "%s", e->d_name);
    closedir(dir);
    assert_true(best[0]);
    snprintf(path, len, "%s/%s", d, best);
}

/* Where the records of a file image are: data records (offset, end) and sync marks. */
struct layout {
    int n, nmarks;
    size_t off[64], end[64], mark[64];
};

static void parse(const unsigned char *img, size_t len, struct layout *l)
{
    memset(l, 0, sizeof *l);
    for (size_t at = FV_WAL_HEADER_LEN; at + FV_WAL_REC_HEAD <= len && l->n < 64;) {
        uint32_t n = fv_get_u32(img + at);
        if (n == 0) {
            l->mark[l->nmarks++] = at;
        } else {
            l->off[l->n] = at;
            l->end[l->n++] = at + FV_WAL_REC_HEAD + n;
        }
        at += FV_WAL_REC_HEAD + n;
    }
}

/* Reads d's first file (its path into path) and its layout. */
static unsigned char *read_first(const char *d, char *path, size_t pathlen, size_t *len,
                                 struct layout *l)
{
    snprintf(path, pathlen, "%s/wal-0000000000000001.log", d);
    unsigned char *img = read_all(path, len);
    parse(img, *len, l);
    return img;
}

/* Opens (read-write) and closes; returns fv_wal_open's result, s and err filled. */
static int open_close(const char *d, struct seen *s, char *err, size_t errlen)
{
    struct fv_wal *w = NULL;
    s->n = 0;
    err[0] = '\0';
    int rc = fv_wal_open(d, NULL, on_rec, s, &w, err, errlen);
    if (rc == FV_OK) fv_wal_close(w);
    return rc;
}

static void assert_txids(const struct seen *s, int first, int n)
{
    for (int i = 0; i < n; i++) {
        char tx[16];
        snprintf(tx, sizeof tx, "tx-%d", first + i);
        assert_string_equal(s->txids[i], tx);
    }
}

/* The offset an error must name for damage at byte i: the start of the record holding i,
 * or the header's (0, or 8 for the version field). */
static int names_offset(const char *err, const struct layout *l, size_t i)
{
    char want[40];
    if (i < FV_WAL_HEADER_LEN) return strstr(err, "offset 0:") || strstr(err, "offset 8:");
    size_t at = FV_WAL_HEADER_LEN;
    for (int k = 0; k < l->n; k++)
        if (l->off[k] <= i) at = l->off[k];
    for (int k = 0; k < l->nmarks; k++)
        if (l->mark[k] <= i && l->mark[k] > at) at = l->mark[k];
    snprintf(want, sizeof want, "offset %zu:", at);
    return strstr(err, want) != NULL;
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
    assert_txids(s, 0, 500);
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

/* Group commit: the writer's commit delay waits on the condition variable's clock
 * (CLOCK_MONOTONIC); a deadline on another clock would stall this test's acks. */
static void test_durable_seq_advances(void **state)
{
    (void)state;
    char *d = tmpdir();
    struct fv_wal *w;
    char err[512];
    assert_int_equal(fv_wal_open(d, NULL, NULL, NULL, &w, err, sizeof err), FV_OK);
    int64_t last = 0;
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 100; i++) {
            struct fv_wal_record r;
            char tx[16];
            make_rec(&r, tx, i);
            last = fv_wal_append(w, &r);
            if (i % 10 == 0) usleep(200); /* keep the writer busy: the commit delay applies */
        }
        for (int i = 0; i < 2000 && fv_wal_durable_seq(w) < (uint64_t)last; i++)
            usleep(1000);
        assert_int_equal(fv_wal_durable_seq(w), last);
    }
    struct fv_wal_stats st;
    fv_wal_stats(w, &st);
    assert_true(st.fsyncs >= 1 && st.fsyncs <= 500); /* group commit */
    fv_wal_close(w);
    rmrf(d);
    free(d);
}

/* before_sync (the data keys' sync): runs before every batch becomes durable, so whatever
 * it makes durable precedes the records; its failure fails the WAL and nothing more becomes
 * durable. */
struct sync_probe {
    struct fv_wal *w;
    uint64_t appended_at_call, durable_at_call;
    int calls, fail;
    int ordered; /* 1 until a call saw a record durable that it should have preceded */
};

static int probe_before_sync(void *arg, char *err, size_t errlen)
{
    struct sync_probe *p = arg;
    p->calls++;
    if (p->w) {
        uint64_t durable = fv_wal_durable_seq(p->w);
        /* Every record appended before this call is in this batch or an earlier one; this
         * call precedes the batch, so durable may not yet cover the newest append. */
        if (durable < p->durable_at_call) p->ordered = 0;
        p->durable_at_call = durable;
    }
    if (p->fail) {
        snprintf(err, errlen, "probe: refused");
        return FV_EIO;
    }
    return FV_OK;
}

static void test_before_sync_precedes_durability(void **state)
{
    (void)state;
    char *d = tmpdir();
    struct fv_wal *w;
    char err[512];
    struct sync_probe p = {.ordered = 1};
    struct fv_wal_opts o = {.before_sync = probe_before_sync, .before_sync_arg = &p};
    assert_int_equal(fv_wal_open(d, &o, NULL, NULL, &w, err, sizeof err), FV_OK);
    p.w = w;
    append_durable(w, 0, 5);
    assert_true(p.calls >= 5); /* one per batch at least */
    assert_true(p.ordered);
    /* A failing hook: the next record never becomes durable, the WAL fails. */
    p.fail = 1;
    struct fv_wal_record r;
    char tx[16];
    make_rec(&r, tx, 99);
    int64_t seq = fv_wal_append(w, &r);
    assert_true(seq > 0);
    for (int k = 0; k < 2000 && !fv_wal_failed(w); k++)
        usleep(1000);
    assert_true(fv_wal_failed(w));
    assert_true(fv_wal_durable_seq(w) < (uint64_t)seq);
    fv_wal_close(w);
    rmrf(d);
    free(d);
}

/* I5: the first rotation after a restart that appended nothing (a head holding only replayed
 * records, e.g. a storage node waiting for its leases) must report the replayed file, never
 * the previous rotation's stale (S, F) = (0, 0) while the writer is still making the new
 * file. With the stale one the store's part claimed no WAL file, the next restart replayed
 * the file into the store again (records stored twice: issue 15, test_cluster). Polled
 * without pause, many times: the writer's window (creating and fsyncing the new file) is
 * short but always there. */
static void test_rotation_after_replay_only(void **state)
{
    (void)state;
    for (int round = 0; round < 40; round++) {
        char *d = tmpdir();
        write_n(d, 3, 64u << 20); /* file 1 holds records 1..3 */
        struct fv_wal *w;
        char err[512];
        assert_int_equal(fv_wal_open(d, NULL, NULL, NULL, &w, err, sizeof err), FV_OK);
        uint64_t marker = fv_wal_rotate(w), last = 99;
        assert_int_equal(marker, 0); /* nothing appended in this run */
        for (long k = 0; k < 100000000 && !fv_wal_rotation_done(w, marker, &last); k++)
            ;
        assert_int_equal(last, 1); /* the replayed file: a part made now covers it */
        fv_wal_close(w);
        rmrf(d);
        free(d);
    }
}

struct remove_probe {
    int calls, fail;
    char dir[64];
    int files_at_call; /* WAL files present when the hook ran */
};

static int count_files(const char *d)
{
    DIR *dir = opendir(d);
    if (dir == NULL) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(dir)) != NULL;)
        n += strncmp(e->d_name, "wal-", 4) == 0;
    closedir(dir);
    return n;
}

static int probe_before_remove(void *arg, char *err, size_t errlen)
{
    struct remove_probe *p = arg;
    p->calls++;
    p->files_at_call = count_files(p->dir);
    if (p->fail) {
        snprintf(err, errlen, "probe: refused");
        return FV_EIO;
    }
    return FV_OK;
}

/* The before_remove option runs before any file is deleted, only when one is; its failure
 * deletes nothing (cluster/jsconsume.h C8 saves the shard cursors there). */
static void test_before_remove_precedes_deletion(void **state)
{
    (void)state;
    char *d = tmpdir();
    write_n(d, 40, 256); /* several files */
    struct remove_probe p = {0};
    snprintf(p.dir, sizeof p.dir, "%s", d);
    struct fv_wal_opts o = {.before_remove = probe_before_remove, .before_remove_arg = &p};
    struct fv_wal *w;
    char err[512];
    assert_int_equal(fv_wal_open(d, &o, NULL, NULL, &w, err, sizeof err), FV_OK);
    int before = count_files(d);
    assert_true(before >= 3);
    assert_int_equal(fv_wal_remove_upto(w, 0, err, sizeof err), FV_OK); /* nothing to delete */
    assert_int_equal(p.calls, 0);
    p.fail = 1;
    assert_int_equal(fv_wal_remove_upto(w, 2, err, sizeof err), FV_EIO);
    assert_string_equal(err, "probe: refused");
    assert_int_equal(p.calls, 1);
    assert_int_equal(count_files(d), before); /* nothing deleted */
    p.fail = 0;
    assert_int_equal(fv_wal_remove_upto(w, 2, err, sizeof err), FV_OK);
    assert_int_equal(p.calls, 2);
    assert_int_equal(p.files_at_call, before); /* the hook ran first */
    assert_int_equal(count_files(d), before - 2);
    fv_wal_close(w);
    rmrf(d);
    free(d);
}

/* (b) Cut the single file at every offset: replay keeps exactly the whole records before the
 * cut, never reports an error (every cut is crash-shaped: R2, or R4 inside the header), and
 * leaves a file that accepts appends. */
static void test_torn_tail_every_offset(void **state)
{
    (void)state;
    char *d = tmpdir();
    write_n(d, 6, 1 << 20);
    char path[600];
    size_t full;
    struct layout l;
    unsigned char *img = read_first(d, path, sizeof path, &full, &l);
    assert_int_equal(l.n, 6);
    struct seen *s = calloc(1, sizeof *s);
    for (size_t cut = 0; cut <= full; cut++) {
        write_all(path, img, cut);
        struct fv_wal *w;
        char err[512];
        s->n = 0;
        assert_int_equal(fv_wal_open(d, NULL, on_rec, s, &w, err, sizeof err), FV_OK);
        int expect = 0;
        while (expect < l.n && l.end[expect] <= cut)
            expect++;
        assert_int_equal(s->n, expect);
        struct fv_wal_record r;
        char tx[16];
        make_rec(&r, tx, 99);
        assert_true(fv_wal_append(w, &r) > 0);
        fv_wal_close(w);
        assert_int_equal(open_close(d, s, err, sizeof err), FV_OK);
        assert_int_equal(s->n, expect + 1);
        assert_string_equal(s->txids[expect], "tx-99");
    }
    free(s);
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
    off_t at = FV_WAL_HEADER_LEN + FV_WAL_REC_HEAD + 4; /* in the first record's body */
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
    struct fv_wal *w = NULL;
    char err[512] = "", want[40];
    assert_int_equal(fv_wal_open(d, NULL, NULL, NULL, &w, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "wal-0000000000000001.log"));
    snprintf(want, sizeof want, "offset %d:", FV_WAL_HEADER_LEN);
    assert_non_null(strstr(err, want));
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

/* Appends records until the WAL refuses one with FV_EAGAIN (a full disk, I7); returns the
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

/* I7: a full disk (a write, then a file creation, failing with ENOSPC) stops acks and
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

/* Issue 8: bit 31 of the length of record 2 in the newest file was taken for a torn tail,
 * and every later acknowledged record was cut. A length above the maximum is never
 * crash-shaped (R1): start-up refuses, naming the file and the offset, and cuts nothing. */
static void test_issue8_length_bit31_refuses(void **state)
{
    (void)state;
    char *d = tmpdir();
    write_n(d, 30, 1024);   /* several files */
    write_n(d, 5, 1 << 20); /* and five more records in the newest */
    char path[600];
    newest_file(d, path, sizeof path);
    size_t len;
    unsigned char *img = read_all(path, &len);
    struct layout l;
    parse(img, len, &l);
    assert_true(l.n >= 3);
    img[l.off[1] + 3] ^= 0x80;
    write_all(path, img, len);
    struct fv_wal *w = NULL;
    char err[512] = "", want[40];
    int rc = fv_wal_open(d, NULL, NULL, NULL, &w, err, sizeof err);
    if (rc == FV_OK) fv_wal_close(w);
    assert_int_equal(rc, FV_ECORRUPT);
    assert_non_null(strstr(err, strrchr(path, '/') + 1));
    snprintf(want, sizeof want, "offset %zu:", l.off[1]);
    assert_non_null(strstr(err, want));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((size_t)st.st_size, len); /* nothing was cut */
    free(img);
    rmrf(d);
    free(d);
}

/* n records, each acknowledged (fsync'd) in its own batch, then a clean close. */
static void n_durable(const char *d, int n)
{
    struct fv_wal *w;
    char err[512];
    assert_int_equal(fv_wal_open(d, NULL, NULL, NULL, &w, err, sizeof err), FV_OK);
    append_durable(w, 0, n);
    fv_wal_close(w);
}

static const unsigned char masks[] = {0x80, 0x01, 0xff};

/* Flips every byte of a file of five acknowledged records three ways - without its final
 * sync mark if lose_mark - and checks each outcome: replay keeps every record, or refuses
 * naming the file and the offset of the damaged record, or cuts only what no later record
 * proves durable. Returns how many flips were cut rather than refused. */
static int flip_every_byte(int lose_mark)
{
    char *d = tmpdir(), path[600];
    size_t len;
    struct layout l;
    n_durable(d, 5);
    unsigned char *img = read_first(d, path, sizeof path, &len, &l);
    assert_int_equal(l.n, 5);
    assert_int_equal(l.nmarks, 5);
    assert_int_equal(l.mark[4] + FV_WAL_REC_HEAD, len);
    if (lose_mark) len = l.mark[4];
    struct seen *s = calloc(1, sizeof *s);
    unsigned char *img2 = malloc(len);
    int refused = 0, cut = 0;
    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < sizeof masks; m++) {
            memcpy(img2, img, len);
            img2[i] ^= masks[m];
            write_all(path, img2, len);
            char err[512];
            int rc = open_close(d, s, err, sizeof err);
            if (rc != FV_OK) {
                refused++;
                assert_int_equal(rc, FV_ECORRUPT);
                assert_non_null(strstr(err, "wal-0000000000000001.log"));
                if (!names_offset(err, &l, i)) fail_msg("byte %zu ^ 0x%02x: %s", i, masks[m], err);
                continue;
            }
            cut++;
            assert_txids(s, 0, s->n);
            if (lose_mark) {
                /* only the last batch (and the mark before it, not yet durable when the batch
                 * was written) is ever cut */
                assert_int_equal(s->n, 4);
                assert_true(i >= l.end[3]);
            } else {
                /* only the final mark, which holds no record */
                assert_int_equal(s->n, 5);
                assert_true(i >= l.mark[4]);
            }
        }
    }
    assert_true(refused > 0);
    free(img2);
    free(s);
    free(img);
    rmrf(d);
    free(d);
    return cut;
}

/* (a) Damage to any acknowledged record is refused, never cut. The image is the same
 * whether the process closed the WAL or was killed after the last ack (I6: the mark is
 * written before the ack; see test_kill9_image_keeps_its_marks). */
static void test_flip_every_byte(void **state)
{
    (void)state;
    assert_true(flip_every_byte(0) > 0);
}

/* (a, power loss) Without its final sync mark, as a power failure right after the last
 * batch's fsync can leave the file: damage to that batch cannot be told from a torn write
 * and is cut (the documented limit), but nothing before it ever is. */
static void test_flip_every_byte_last_mark_lost(void **state)
{
    (void)state;
    assert_true(flip_every_byte(1) > 0);
}

/* I6 after kill -9: a child appends three records, waits until each is durable (acked),
 * and exits without closing. Each acknowledged batch is followed by its sync mark, so
 * damage to any acknowledged record is refused, never cut. */
static void test_kill9_image_keeps_its_marks(void **state)
{
    (void)state;
    char *d = tmpdir(), path[600];
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct fv_wal *w;
        char err[512];
        if (fv_wal_open(d, NULL, NULL, NULL, &w, err, sizeof err) != FV_OK) _exit(1);
        for (int i = 0; i < 3; i++) {
            struct fv_wal_record r;
            char tx[16];
            make_rec(&r, tx, i);
            int64_t seq = fv_wal_append(w, &r);
            for (int k = 0; k < 20000 && fv_wal_durable_seq(w) < (uint64_t)seq; k++)
                usleep(100);
            if (seq <= 0 || fv_wal_durable_seq(w) < (uint64_t)seq) _exit(2);
        }
        _exit(0); /* no fv_wal_close: as if killed right after the last ack */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    size_t len;
    struct layout l;
    unsigned char *img = read_first(d, path, sizeof path, &len, &l);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.nmarks, 3);
    assert_int_equal(l.mark[2] + FV_WAL_REC_HEAD, len);
    struct seen *s = calloc(1, sizeof *s);
    char err[512];
    for (int k = 0; k < l.n; k++) {
        for (size_t i = l.off[k]; i < l.end[k]; i++) {
            img[i] ^= 0x01;
            write_all(path, img, len);
            assert_int_equal(open_close(d, s, err, sizeof err), FV_ECORRUPT);
            assert_true(names_offset(err, &l, i));
            img[i] ^= 0x01;
        }
    }
    write_all(path, img, len);
    assert_int_equal(open_close(d, s, err, sizeof err), FV_OK);
    assert_int_equal(s->n, 3);
    free(s);
    free(img);
    rmrf(d);
    free(d);
}

/* Does an intact record header after the one holding byte `first` (the first damaged one)
 * say that this record was durable (D past its start)? Read from the known layout. */
static int proof_after(const unsigned char *img, const unsigned char *full, const struct layout *l,
                       size_t first)
{
    size_t x = FV_WAL_HEADER_LEN, at[128];
    int n = 0;
    for (int k = 0; k < l->n; k++)
        at[n++] = l->off[k];
    for (int k = 0; k < l->nmarks; k++)
        at[n++] = l->mark[k];
    for (int k = 0; k < n; k++)
        if (at[k] <= first && at[k] > x) x = at[k];
    for (int k = 0; k < n; k++)
        if (at[k] > x && memcmp(img + at[k], full + at[k], FV_WAL_REC_HEAD) == 0 &&
            fv_get_u64(full + at[k] + 8) > x)
            return 1;
    return 0;
}

/* (c) A batch written but never fsync'd (so never acknowledged), with a hole of zeros - the
 * pages a crash did not write - followed by pages it did: start-up cuts the batch at the
 * hole and keeps every durable record (R2: no record after the hole says the hole was
 * durable). The same hole among durable records is refused. */
static void test_zero_hole_in_unsynced_batch(void **state)
{
    (void)state;
    char *d = tmpdir(), path[600], err[512];
    size_t dlen;
    struct layout l;
    n_durable(d, 3);
    unsigned char *durable = read_first(d, path, sizeof path, &dlen, &l);
    /* The unfinished batch, framed as the writer frames one: records 3..7, written when the
     * file was durable up to its end. */
    struct fv_buf b = {0};
    for (int i = 3; i < 8; i++) {
        struct fv_wal_record r;
        char tx[16];
        make_rec(&r, tx, i);
        assert_int_equal(fv_wal_frame(&r, &b), FV_OK);
    }
    fv_wal_finish_batch(b.data, b.len, fv_get_u32(durable + 12), dlen);
    size_t len = dlen + b.len;
    unsigned char *full = malloc(len), *img = malloc(len);
    memcpy(full, durable, dlen);
    memcpy(full + dlen, b.data, b.len);
    parse(full, len, &l);
    assert_int_equal(l.n, 8);
    struct seen *s = calloc(1, sizeof *s);
    uint64_t end;
    int torn;
    /* Written whole, the batch replays whole. */
    assert_int_equal(fv_wal_scan(full, len, "x", on_rec, s, &end, &torn, err, sizeof err), FV_OK);
    assert_int_equal(s->n, 8);
    static const size_t holes[] = {1, 20, 64, 100000};
    for (size_t h = FV_WAL_HEADER_LEN; h < len; h++) {
        for (size_t k = 0; k < sizeof holes / sizeof holes[0]; k++) {
            size_t hl = holes[k] < len - h ? holes[k] : len - h;
            memcpy(img, full, len);
            memset(img + h, 0, hl);
            if (k == 1 && h + hl + 30 < len) memset(img + len - 30, 0, 30); /* and a zero tail */
            size_t first = 0;
            while (first < len && img[first] == full[first])
                first++;
            int expect = 0; /* the records before the first changed byte */
            while (expect < l.n && l.end[expect] <= first)
                expect++;
            s->n = 0;
            int rc = fv_wal_scan(img, len, "x", on_rec, s, &end, &torn, err, sizeof err);
            if (first == len) {
                assert_int_equal(rc, FV_OK);
            } else if (h >= dlen) {
                /* in the unfinished batch: a torn tail, cut at the damaged record */
                if (rc != FV_ECORRUPT || !torn) fail_msg("hole %zu+%zu: %s", h, hl, err);
                assert_int_equal(s->n, expect);
                assert_int_equal(end, l.off[expect]);
            } else if (!proof_after(img, full, &l, first)) {
                /* damage among durable records, and nothing after it left to prove that it
                 * was durable (it runs to the end): the limit of R2, cut like a torn tail */
                if (rc != FV_ECORRUPT || !torn) fail_msg("hole %zu+%zu: %s", h, hl, err);
            } else {
                /* among durable records: refused */
                if (rc != FV_ECORRUPT || torn) fail_msg("hole %zu+%zu: %s", h, hl, err);
            }
            if (h % 23 == 0 && k == 1) {
                /* through fv_wal_open: starts (or refuses) the same way, and the cut holds */
                write_all(path, img, len);
                rc = open_close(d, s, err, sizeof err);
                if (h >= dlen) {
                    assert_int_equal(rc, FV_OK);
                    assert_int_equal(s->n, expect);
                    assert_txids(s, 0, expect);
                    assert_int_equal(open_close(d, s, err, sizeof err), FV_OK);
                    assert_int_equal(s->n, expect);
                } else if (first < len && proof_after(img, full, &l, first)) {
                    assert_int_equal(rc, FV_ECORRUPT);
                    assert_non_null(strstr(err, "wal-0000000000000001.log"));
                }
            }
        }
    }
    fv_buf_free(&b);
    free(s);
    free(img);
    free(full);
    free(durable);
    rmrf(d);
    free(d);
}

/* The crash model of I2, with batches made by the real writer: a crash while batch b was
 * being written leaves the file durable up to b's durable offset D, and any subset of the
 * pages from D to the end of b (the previous batch's sync mark, then b's records) written,
 * the rest zeros; the file may also end anywhere in that range. Every such image must start
 * (replay OK, or a torn tail) and keep every record of the batches before b: those were
 * acknowledged. Pages are 16 bytes here, to cut through record headers too. */
static void test_power_loss_any_pages(void **state)
{
    (void)state;
    char *d = tmpdir(), path[600], err[512];
    struct fv_wal *w;
    assert_int_equal(fv_wal_open(d, NULL, NULL, NULL, &w, err, sizeof err), FV_OK);
    for (int i = 0; i < 40;) {
        int burst = 1 + i % 5; /* records appended together: batches of several records */
        for (int k = 0; k < burst; k++, i++) {
            struct fv_wal_record r;
            char tx[16];
            make_rec(&r, tx, i);
            assert_true(fv_wal_append(w, &r) > 0);
        }
        for (int k = 0; k < 20000 && fv_wal_durable_seq(w) < (uint64_t)i; k++)
            usleep(100);
    }
    fv_wal_close(w);
    size_t len;
    struct layout l;
    unsigned char *full = read_first(d, path, sizeof path, &len, &l);
    assert_int_equal(l.n, 40);
    unsigned seed = (unsigned)time(NULL);
    print_message("seed %u\n", seed);
    srand(seed);
    unsigned char *img = malloc(len);
    struct seen *s = calloc(1, sizeof *s);
    int batches = 0;
    for (int first = 0; first < l.n;) {
        uint64_t dur = fv_get_u64(full + l.off[first] + 8);
        int last = first;
        while (last + 1 < l.n && fv_get_u64(full + l.off[last + 1] + 8) == dur)
            last++;
        size_t end = l.end[last];
        batches++;
        for (int trial = 0; trial < 300; trial++) {
            size_t flen = trial % 4 == 3 ? dur + (size_t)rand() % (end - dur + 1) : end;
            memcpy(img, full, flen);
            for (size_t p = dur & ~(size_t)15; p < flen; p += 16)
                if (rand() % 2) {
                    size_t from = p < dur ? dur : p, to = p + 16 < flen ? p + 16 : flen;
                    memset(img + from, 0, to - from);
                }
            uint64_t vend;
            int torn;
            s->n = 0;
            int rc = fv_wal_scan(img, flen, "x", on_rec, s, &vend, &torn, err, sizeof err);
            if (rc != FV_OK && !(rc == FV_ECORRUPT && torn))
                fail_msg("batch %d..%d, trial %d: a crash image refused: %s", first, last, trial,
                         err);
            if (s->n < first) fail_msg("batch %d, trial %d: acked records lost", first, trial);
            assert_txids(s, 0, s->n);
            if (trial == 0) {
                write_all(path, img, flen);
                assert_int_equal(open_close(d, s, err, sizeof err), FV_OK);
                assert_true(s->n >= first);
                assert_txids(s, 0, s->n);
            }
        }
        first = last + 1;
    }
    assert_true(batches > 5 && batches < 40);
    free(s);
    free(img);
    free(full);
    rmrf(d);
    free(d);
}

/* R3: a file other than the newest ends with a durable sync mark (I4); one cut short - at a
 * record boundary or inside a record - is refused, not taken for a torn tail. */
static void test_old_file_cut_short_is_an_error(void **state)
{
    (void)state;
    char *d = tmpdir(), path[600];
    write_n(d, 100, 2048);
    size_t len;
    struct layout l;
    unsigned char *img = read_first(d, path, sizeof path, &len, &l);
    assert_true(l.n > 2 && l.nmarks > 0);
    assert_int_equal(l.mark[l.nmarks - 1] + FV_WAL_REC_HEAD, len);
    size_t cuts[] = {l.mark[l.nmarks - 1], l.end[l.n - 1] - 3, l.off[l.n - 1]};
    for (size_t k = 0; k < 3; k++) {
        write_all(path, img, cuts[k]);
        struct seen *s = calloc(1, sizeof *s);
        char err[512];
        int rc = open_close(d, s, err, sizeof err);
        if (rc != FV_ECORRUPT) fail_msg("cut %zu at %zu: rc %d, %d records", k, cuts[k], rc, s->n);
        assert_non_null(strstr(err, "wal-0000000000000001.log"));
        free(s);
    }
    free(img);
    rmrf(d);
    free(d);
}

static void reset_dir(const char *d)
{
    rmrf(d);
    assert_int_equal(mkdir(d, 0700), 0);
}

/* R5: files of format 1 are still read; the newest is left as it is and new records go
 * into a new format-2 file. Their torn tails are cut at every offset; a length above the
 * maximum, or a hole of zeros followed by data (format 1 cannot tell it from damage), is
 * refused. */
static void test_format1_still_read(void **state)
{
    (void)state;
    char *d = tmpdir(), path[600], path2[600];
    snprintf(path, sizeof path, "%s/wal-0000000000000001.log", d);
    snprintf(path2, sizeof path2, "%s/wal-0000000000000002.log", d);
    size_t len = sizeof v1_image;
    size_t ends[8], offs[8];
    int n = 0;
    for (size_t at = FV_WAL_V1_HEADER_LEN; at < len && n < 8; n++) {
        offs[n] = at;
        at += FV_WAL_V1_REC_HEAD + fv_get_u32(v1_image + at);
        ends[n] = at;
    }
    assert_int_equal(n, 6);
    struct seen *s = calloc(1, sizeof *s);
    char err[512];
    write_all(path, v1_image, len);
    struct fv_wal *w;
    assert_int_equal(fv_wal_open(d, NULL, on_rec, s, &w, err, sizeof err), FV_OK);
    assert_int_equal(s->n, 6);
    assert_txids(s, 0, 6);
    append_durable(w, 6, 1);
    fv_wal_close(w);
    size_t l1, l2;
    unsigned char *again = read_all(path, &l1), *second = read_all(path2, &l2);
    assert_int_equal(l1, len);
    assert_memory_equal(again, v1_image, len);
    assert_memory_equal(second, FV_WAL_MAGIC, FV_WAL_MAGIC_LEN);
    assert_int_equal(fv_get_u32(second + 8), FV_WAL_VERSION);
    free(again);
    free(second);
    assert_int_equal(open_close(d, s, err, sizeof err), FV_OK);
    assert_int_equal(s->n, 7);
    assert_txids(s, 0, 7);

    for (size_t cut = 0; cut <= len; cut++) {
        reset_dir(d);
        write_all(path, v1_image, cut);
        assert_int_equal(open_close(d, s, err, sizeof err), FV_OK);
        int expect = 0;
        while (expect < n && ends[expect] <= cut)
            expect++;
        assert_int_equal(s->n, expect);
    }

    unsigned char img[sizeof v1_image];
    memcpy(img, v1_image, len);
    img[offs[1] + 3] ^= 0x80;
    reset_dir(d);
    write_all(path, img, len);
    assert_int_equal(open_close(d, s, err, sizeof err), FV_ECORRUPT);
    char want[40];
    snprintf(want, sizeof want, "offset %zu:", offs[1]);
    assert_non_null(strstr(err, want));

    memcpy(img, v1_image, len);
    memset(img + offs[3], 0, ends[3] - offs[3]);
    write_all(path, img, len);
    assert_int_equal(open_close(d, s, err, sizeof err), FV_ECORRUPT);
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
    fv_log_set_level(FV_LOG_ERROR); /* the cuts under test each log a warning */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_rotation),
        cmocka_unit_test(test_durable_seq_advances),
        cmocka_unit_test(test_torn_tail_every_offset),
        cmocka_unit_test(test_corruption_in_old_file_is_an_error),
        cmocka_unit_test(test_corruption_mid_newest_file_is_an_error),
        cmocka_unit_test(test_full_disk_waits_for_space),
        cmocka_unit_test(test_issue8_length_bit31_refuses),
        cmocka_unit_test(test_flip_every_byte),
        cmocka_unit_test(test_flip_every_byte_last_mark_lost),
        cmocka_unit_test(test_kill9_image_keeps_its_marks),
        cmocka_unit_test(test_zero_hole_in_unsynced_batch),
        cmocka_unit_test(test_power_loss_any_pages),
        cmocka_unit_test(test_old_file_cut_short_is_an_error),
        cmocka_unit_test(test_format1_still_read),
        cmocka_unit_test(test_body_codec_limits),
        cmocka_unit_test(test_before_sync_precedes_durability),
        cmocka_unit_test(test_rotation_after_replay_only),
        cmocka_unit_test(test_before_remove_precedes_deletion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
