/* test_mcap.c - the MCAP writer and reader (src/data/mcap.h): round trips (zstd and
 * uncompressed chunks, to memory and to a file), reads of one channel and of a time window that
 * read only the chunks they need (bytes counted through the source), a failed write (injected),
 * files without a summary, empty files and files without messages, the writer's refusals, and
 * damage: a small file cut
 * at every offset and with every byte flipped is refused (FV_ECORRUPT naming a byte offset) by
 * open or by the scan, and damage in a chunk is refused by an indexed read naming an offset
 * inside that chunk (rules M1-M12 of src/data/mcap_format.h); with the CRCs set to 0 (which
 * MCAP allows), statistics, message indexes and chunk indexes that do not match the data are
 * still refused (M12, M10, M8), each naming its offset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/mcap.h"
#include "os/fsio.h"
#include "util/buf.h"
#include "util/err.h"

#define T0 1700000000000000000ull /* ns */

/* ---- a recorded clip: 3 sensors, deterministic messages ---- */

struct want {
    uint16_t ch;
    uint32_t seq;
    uint64_t t, pt;
    size_t len;
    unsigned char data[64];
};

struct clip {
    struct want *m;
    size_t n;
    uint16_t ch[3];
};

/* Writes n messages spread over channels imu (every message), can (every 3rd), cam (every
 * 10th) 10 ms apart; chunk and compression from opts. */
static void write_clip(struct fv_mcap_writer *w, size_t n, struct clip *c)
{
    char err[256];
    uint16_t s1, s2;
    assert_int_equal(fv_mcap_add_schema(w, "fv.Imu", "jsonschema", "{\"type\":\"object\"}", 17, &s1,
                                        err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_mcap_add_schema(w, "fv.Frame", "", NULL, 0, &s2, err, sizeof err), FV_OK);
    const char *k[] = {"sensor", "hz"}, *v[] = {"imu0", "100"};
    assert_int_equal(
        fv_mcap_add_channel(w, s1, "/imu", "json", k, v, 2, &c->ch[0], err, sizeof err), FV_OK);
    assert_int_equal(
        fv_mcap_add_channel(w, 0, "/can", "cbor", NULL, NULL, 0, &c->ch[1], err, sizeof err),
        FV_OK);
    assert_int_equal(
        fv_mcap_add_channel(w, s2, "/cam/front", "raw", k, v, 1, &c->ch[2], err, sizeof err),
        FV_OK);
    c->m = calloc(n ? n * 2 : 1, sizeof *c->m);
    assert_non_null(c->m);
    c->n = 0;
    for (size_t i = 0; i < n; i++) {
        for (int k2 = 0; k2 < 3; k2++) {
            if ((k2 == 1 && i % 3) || (k2 == 2 && i % 10)) continue;
            struct want *m = &c->m[c->n++];
            m->ch = c->ch[k2];
            m->seq = (uint32_t)i;
            m->t = T0 + i * 10000000ull;
            m->pt = m->t + 7;
            m->len = (i * 7 + (size_t)k2) % 60;
            for (size_t b = 0; b < m->len; b++)
                m->data[b] = (unsigned char)(i * 31 + b * (size_t)(k2 + 1));
            assert_int_equal(fv_mcap_add_message(w, m->ch, m->seq, m->t, m->pt, m->data, m->len,
                                                 err, sizeof err),
                             FV_OK);
        }
    }
}

static void make_clip(struct fv_buf *out, const struct fv_mcap_write_opts *o, size_t n,
                      struct clip *c)
{
    char err[256];
    struct fv_mcap_writer *w;
    assert_int_equal(fv_mcap_writer_open_mem(out, o, &w, err, sizeof err), FV_OK);
    write_clip(w, n, c);
    assert_int_equal(fv_mcap_writer_close(w, err, sizeof err), FV_OK);
}

/* Collects messages read. */
struct got {
    struct want *m;
    size_t n, cap;
};

static int collect(void *ctx, const struct fv_mcap_msg *m)
{
    struct got *g = ctx;
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 64;
        g->m = realloc(g->m, g->cap * sizeof *g->m);
        assert_non_null(g->m);
    }
    struct want *w = &g->m[g->n++];
    w->ch = m->channel_id;
    w->seq = m->sequence;
    w->t = m->log_time;
    w->pt = m->publish_time;
    assert_true(m->len <= sizeof w->data);
    w->len = m->len;
    if (m->len) memcpy(w->data, m->data, m->len);
    return 0;
}

/* The messages of c passing f must be exactly g's, in order. */
static void expect(const struct clip *c, const struct fv_mcap_filter *f, const struct got *g)
{
    size_t j = 0;
    for (size_t i = 0; i < c->n; i++) {
        const struct want *m = &c->m[i];
        if (f && (m->t < f->start || m->t > f->end)) continue;
        if (f && f->channels) {
            size_t k = 0;
            while (k < f->nchannels && f->channels[k] != m->ch)
                k++;
            if (k == f->nchannels) continue;
        }
        assert_true(j < g->n);
        const struct want *x = &g->m[j++];
        assert_int_equal(x->ch, m->ch);
        assert_int_equal(x->seq, m->seq);
        assert_true(x->t == m->t && x->pt == m->pt);
        assert_int_equal(x->len, m->len);
        assert_memory_equal(x->data, m->data, m->len ? m->len : 0);
    }
    assert_int_equal(j, g->n);
}

/* A memory source that counts the bytes read. */
struct counting {
    const unsigned char *p;
    uint64_t bytes, reads;
};

static int count_read(void *ctx, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct counting *c = ctx;
    memcpy(buf, c->p + off, len);
    c->bytes += len;
    c->reads++;
    return FV_OK;
}

static struct fv_mcap_reader *open_mem(const void *p, size_t len)
{
    struct fv_mcap_source src;
    fv_mcap_source_mem(&src, p, len);
    struct fv_mcap_reader *r = NULL;
    char err[256];
    int rc = fv_mcap_reader_open(&src, &r, err, sizeof err);
    if (rc) fprintf(stderr, "open: %s\n", err);
    assert_int_equal(rc, FV_OK);
    return r;
}

/* ---- round trips ---- */

static void round_trip(int compression, size_t chunk)
{
    struct fv_buf f = {0};
    struct clip c;
    struct fv_mcap_write_opts o = {.chunk_size = chunk, .compression = compression};
    make_clip(&f, &o, 1000, &c);
    struct fv_mcap_reader *r = open_mem(f.data, f.len);
    char err[256];
    assert_true(fv_mcap_indexed(r));
    assert_int_equal(fv_mcap_schema_count(r), 2);
    assert_int_equal(fv_mcap_channel_count(r), 3);
    const struct fv_mcap_channel *imu = fv_mcap_channel_by_id(r, c.ch[0]);
    assert_non_null(imu);
    assert_string_equal(imu->topic.p, "/imu");
    assert_string_equal(imu->message_encoding.p, "json");
    assert_int_equal(imu->nmeta, 2);
    assert_string_equal(imu->keys[1].p, "hz");
    assert_string_equal(imu->vals[1].p, "100");
    assert_string_equal(fv_mcap_channel_by_id(r, c.ch[2])->topic.p, "/cam/front");
    const struct fv_mcap_schema *s = fv_mcap_schema_at(r, 0);
    assert_string_equal(s->name.p, "fv.Imu");
    assert_int_equal(s->len, 17);
    assert_memory_equal(s->data, "{\"type\":\"object\"}", 17);
    assert_string_equal(fv_mcap_library(r).p, "fleetvault");
    const struct fv_mcap_stats *st = fv_mcap_statistics(r);
    assert_non_null(st);
    assert_int_equal(st->message_count, c.n);
    assert_int_equal(st->channel_count, 3);
    assert_int_equal(st->schema_count, 2);
    assert_true(st->start == T0 && st->end == T0 + 999 * 10000000ull);
    assert_int_equal(st->chunk_count, fv_mcap_chunk_count(r));
    assert_true(fv_mcap_chunk_count(r) > (chunk && chunk < 10000 ? 5u : 0u));
    assert_int_equal(st->ncounts, 3);
    uint64_t total = 0;
    for (size_t i = 0; i < st->ncounts; i++)
        total += st->counts[i];
    assert_int_equal(total, c.n);
    for (size_t i = 0; i < fv_mcap_chunk_count(r); i++) {
        const struct fv_mcap_chunk_index *ci = fv_mcap_chunk_at(r, i);
        assert_string_equal(ci->compression.p, compression == FV_MCAP_ZSTD ? "zstd" : "");
        assert_true(ci->nindex >= 1 && ci->start <= ci->end);
    }
    struct got g = {0};
    assert_int_equal(fv_mcap_read(r, NULL, collect, &g, err, sizeof err), FV_OK);
    expect(&c, NULL, &g);
    g.n = 0;
    int rc = fv_mcap_scan(r, NULL, collect, &g, err, sizeof err);
    if (rc) fprintf(stderr, "scan: %s\n", err);
    assert_int_equal(rc, FV_OK);
    expect(&c, NULL, &g);
    assert_int_equal(fv_mcap_channel_count(r), 3); /* the data section's are the summary's */
    free(g.m);
    free(c.m);
    fv_mcap_reader_free(r);
    fv_buf_free(&f);
}

static void test_round_trip_zstd(void **state)
{
    (void)state;
    round_trip(FV_MCAP_ZSTD, 4096);
    round_trip(FV_MCAP_ZSTD, 0); /* one default-size chunk */
}

static void test_round_trip_none(void **state)
{
    (void)state;
    round_trip(FV_MCAP_NONE, 2000);
}

static void test_file_round_trip(void **state)
{
    (void)state;
    char path[] = "/tmp/fv-mcap-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char err[256];
    struct fv_mcap_writer *w;
    struct fv_mcap_write_opts o = {.chunk_size = 1000};
    assert_int_equal(fv_mcap_writer_open_fd(fd, path, &o, &w, err, sizeof err), FV_OK);
    struct clip c;
    write_clip(w, 300, &c);
    assert_int_equal(fv_mcap_writer_close(w, err, sizeof err), FV_OK);
    struct fv_mcap_file mf = {fd, path};
    struct fv_mcap_source src;
    assert_int_equal(fv_mcap_source_file(&src, &mf, err, sizeof err), FV_OK);
    struct fv_mcap_reader *r;
    assert_int_equal(fv_mcap_reader_open(&src, &r, err, sizeof err), FV_OK);
    struct got g = {0};
    assert_int_equal(fv_mcap_scan(r, NULL, collect, &g, err, sizeof err), FV_OK);
    expect(&c, NULL, &g);
    fv_mcap_reader_free(r);
    free(g.m);
    free(c.m);
    close(fd);
    unlink(path);
}

/* A write that fails (the disk full at the first write, injected through os/fsio.h) fails the
 * close with the call named; the partial file is refused by the reader. */
static void test_write_fails(void **state)
{
    (void)state;
    char path[] = "/tmp/fv-mcap-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char err[256];
    struct fv_mcap_writer *w;
    assert_int_equal(fv_mcap_writer_open_fd(fd, path, NULL, &w, err, sizeof err), FV_OK);
    struct clip c;
    write_clip(w, 100, &c);
    fv_os_fault_clear();
    assert_int_equal(fv_os_fault_set(FV_OS_WRITE, 1, ENOSPC, 1), FV_OK);
    assert_int_equal(fv_mcap_writer_close(w, err, sizeof err), FV_EIO);
    fv_os_fault_clear();
    assert_non_null(strstr(err, path));
    struct fv_mcap_file mf = {fd, path};
    struct fv_mcap_source src;
    assert_int_equal(fv_mcap_source_file(&src, &mf, err, sizeof err), FV_OK);
    struct fv_mcap_reader *r;
    assert_int_equal(fv_mcap_reader_open(&src, &r, err, sizeof err), FV_ECORRUPT);
    free(c.m);
    close(fd);
    unlink(path);
}

/* ---- seeks: only the chunks needed are read ---- */

static void seek(const struct fv_buf *f, const struct clip *c, const struct fv_mcap_filter *flt,
                 uint64_t *chunk_bytes, uint64_t *read_bytes)
{
    struct counting cnt = {f->data, 0, 0};
    struct fv_mcap_source src = {f->len, count_read, &cnt};
    struct fv_mcap_reader *r;
    char err[256];
    assert_int_equal(fv_mcap_reader_open(&src, &r, err, sizeof err), FV_OK);
    uint64_t after_open = cnt.bytes;
    /* Expected: the chunks that meet the window and hold a wanted channel. */
    *chunk_bytes = 0;
    for (size_t i = 0; i < fv_mcap_chunk_count(r); i++) {
        const struct fv_mcap_chunk_index *ci = fv_mcap_chunk_at(r, i);
        if (ci->end < flt->start || ci->start > flt->end) continue;
        int want = flt->channels == NULL;
        for (size_t k = 0; k < ci->nindex && !want; k++)
            for (size_t j = 0; j < flt->nchannels; j++)
                want |= ci->index_channels[k] == flt->channels[j];
        if (want) *chunk_bytes += ci->length;
    }
    struct got g = {0};
    assert_int_equal(fv_mcap_read(r, flt, collect, &g, err, sizeof err), FV_OK);
    expect(c, flt, &g);
    assert_true(g.n > 0);
    *read_bytes = cnt.bytes - after_open;
    free(g.m);
    fv_mcap_reader_free(r);
}

static void test_seek_window_and_channel(void **state)
{
    (void)state;
    struct fv_buf f = {0};
    struct clip c;
    /* Uncompressed 2 KB chunks: the camera (every 10th message) lands in most chunks, so a
     * separate file where the camera is recorded alone in its own chunks checks the channel
     * seek below. */
    struct fv_mcap_write_opts o = {.chunk_size = 2048, .compression = FV_MCAP_ZSTD};
    make_clip(&f, &o, 3000, &c);
    uint64_t need, got;
    /* A 1-second window out of 30: a few chunks. */
    struct fv_mcap_filter win = {NULL, 0, T0 + 12000000000ull, T0 + 13000000000ull};
    seek(&f, &c, &win, &need, &got);
    assert_int_equal(got, need);
    assert_true(got * 10 < f.len);
    /* One channel in a window. */
    uint16_t can = c.ch[1];
    struct fv_mcap_filter one = {&can, 1, T0 + 5000000000ull, T0 + 6000000000ull};
    seek(&f, &c, &one, &need, &got);
    assert_int_equal(got, need);
    fv_buf_free(&f);
    free(c.m);

    /* Channels recorded one after the other (a clip assembled sensor by sensor): one channel
     * is a third of the chunks. */
    struct fv_mcap_writer *w;
    char err[256];
    struct fv_buf g = {0};
    assert_int_equal(fv_mcap_writer_open_mem(&g, &o, &w, err, sizeof err), FV_OK);
    uint16_t ch[3];
    struct clip c2 = {calloc(3000, sizeof(struct want)), 0, {0}};
    assert_non_null(c2.m);
    for (int k = 0; k < 3; k++) {
        char topic[16];
        snprintf(topic, sizeof topic, "/s%d", k);
        assert_int_equal(
            fv_mcap_add_channel(w, 0, topic, "raw", NULL, NULL, 0, &ch[k], err, sizeof err), FV_OK);
        for (size_t i = 0; i < 1000; i++) {
            struct want *m = &c2.m[c2.n++];
            *m = (struct want){ch[k], (uint32_t)i, T0 + i * 1000000ull, T0, 40, {0}};
            memset(m->data, 'a' + k, 40);
            m->data[0] = (unsigned char)i;
            assert_int_equal(
                fv_mcap_add_message(w, m->ch, m->seq, m->t, m->pt, m->data, 40, err, sizeof err),
                FV_OK);
        }
    }
    assert_int_equal(fv_mcap_writer_close(w, err, sizeof err), FV_OK);
    struct fv_mcap_filter mid = {&ch[1], 1, 0, UINT64_MAX};
    seek(&g, &c2, &mid, &need, &got);
    assert_int_equal(got, need);
    assert_true(got * 2 < g.len);
    free(c2.m);
    fv_buf_free(&g);
}

/* ---- files without a summary, without messages, empty ---- */

static void test_no_summary(void **state)
{
    (void)state;
    struct fv_buf f = {0};
    struct clip c;
    struct fv_mcap_write_opts o = {.chunk_size = 3000, .no_summary = 1};
    make_clip(&f, &o, 500, &c);
    struct fv_mcap_reader *r = open_mem(f.data, f.len);
    char err[256];
    assert_false(fv_mcap_indexed(r));
    assert_null(fv_mcap_statistics(r));
    assert_int_equal(fv_mcap_channel_count(r), 0); /* until scanned */
    struct got g = {0};
    uint16_t imu = c.ch[0];
    struct fv_mcap_filter flt = {&imu, 1, T0 + 1000000000ull, T0 + 2000000000ull};
    assert_int_equal(fv_mcap_read(r, &flt, collect, &g, err, sizeof err), FV_OK);
    expect(&c, &flt, &g);
    assert_int_equal(g.n, 101);
    assert_int_equal(fv_mcap_channel_count(r), 3);
    assert_string_equal(fv_mcap_channel_at(r, 2)->topic.p, "/cam/front");
    free(g.m);
    free(c.m);
    fv_mcap_reader_free(r);
    fv_buf_free(&f);
}

static void test_empty_and_no_messages(void **state)
{
    (void)state;
    char err[256];
    struct fv_mcap_source src;
    struct fv_mcap_reader *r;
    /* A 0-byte file. */
    fv_mcap_source_mem(&src, "", 0);
    assert_int_equal(fv_mcap_reader_open(&src, &r, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "mcap: byte 0: "));
    assert_null(r);
    /* A file of nothing: Header, Data End, summary (statistics), footer. */
    struct fv_buf f = {0};
    struct fv_mcap_writer *w;
    assert_int_equal(fv_mcap_writer_open_mem(&f, NULL, &w, err, sizeof err), FV_OK);
    assert_int_equal(fv_mcap_writer_close(w, err, sizeof err), FV_OK);
    r = open_mem(f.data, f.len);
    assert_int_equal(fv_mcap_channel_count(r), 0);
    assert_int_equal(fv_mcap_statistics(r)->message_count, 0);
    struct got g = {0};
    assert_int_equal(fv_mcap_read(r, NULL, collect, &g, err, sizeof err), FV_OK);
    assert_int_equal(fv_mcap_scan(r, NULL, collect, &g, err, sizeof err), FV_OK);
    assert_int_equal(g.n, 0);
    fv_mcap_reader_free(r);
    /* Channels but no messages. */
    f.len = 0;
    uint16_t ch;
    assert_int_equal(fv_mcap_writer_open_mem(&f, NULL, &w, err, sizeof err), FV_OK);
    assert_int_equal(fv_mcap_add_channel(w, 0, "/x", "raw", NULL, NULL, 0, &ch, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_mcap_writer_close(w, err, sizeof err), FV_OK);
    r = open_mem(f.data, f.len);
    assert_int_equal(fv_mcap_channel_count(r), 1);
    assert_int_equal(fv_mcap_chunk_count(r), 0);
    const struct fv_mcap_stats *st = fv_mcap_statistics(r);
    assert_true(st->message_count == 0 && st->start == 0 && st->end == 0);
    assert_int_equal(fv_mcap_read(r, NULL, collect, &g, err, sizeof err), FV_OK);
    assert_int_equal(g.n, 0);
    fv_mcap_reader_free(r);
    fv_buf_free(&f);
}

static void test_writer_refusals(void **state)
{
    (void)state;
    char err[256];
    struct fv_buf f = {0};
    struct fv_mcap_writer *w;
    struct fv_mcap_write_opts bad = {.compression = 7};
    assert_int_equal(fv_mcap_writer_open_mem(&f, &bad, &w, err, sizeof err), FV_EINVAL);
    assert_int_equal(fv_mcap_writer_open_mem(&f, NULL, &w, err, sizeof err), FV_OK);
    uint16_t id;
    assert_int_equal(fv_mcap_add_channel(w, 3, "/x", "raw", NULL, NULL, 0, &id, err, sizeof err),
                     FV_EINVAL);
    assert_non_null(strstr(err, "no schema 3"));
    assert_int_equal(fv_mcap_add_schema(w, "s", "", "x", 1, &id, err, sizeof err), FV_EINVAL);
    assert_int_equal(fv_mcap_add_message(w, 1, 0, 0, 0, "x", 1, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "no channel 1"));
    /* Refused calls leave the writer usable. */
    assert_int_equal(fv_mcap_add_channel(w, 0, "/x", "raw", NULL, NULL, 0, &id, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_mcap_add_message(w, id, 0, 5, 5, "x", 1, err, sizeof err), FV_OK);
    /* A message whose record would not fit in a chunk the reader accepts (refused before its
     * data is read). */
    assert_int_equal(
        fv_mcap_add_message(w, id, 0, 5, 5, "x", FV_MCAP_MAX_MESSAGE + 1, err, sizeof err),
        FV_ELIMIT);
    assert_int_equal(fv_mcap_writer_close(w, err, sizeof err), FV_OK);
    fv_mcap_reader_free(open_mem(f.data, f.len));
    fv_buf_free(&f);
}

/* ---- damage ---- */

/* Opens and scans p; returns the first error (and its message in err), or FV_OK. */
static int open_and_scan(const unsigned char *p, size_t len, char *err, size_t errlen)
{
    struct fv_mcap_source src;
    fv_mcap_source_mem(&src, p, len);
    struct fv_mcap_reader *r;
    int rc = fv_mcap_reader_open(&src, &r, err, errlen);
    if (rc) return rc;
    rc = fv_mcap_scan(r, NULL, NULL, NULL, err, errlen);
    fv_mcap_reader_free(r);
    return rc;
}

/* The byte offset named by an error "mcap: byte N: ...". */
static uint64_t err_offset(const char *err)
{
    unsigned long long n;
    assert_int_equal(sscanf(err, "mcap: byte %llu:", &n), 1);
    return n;
}

static void small_file(struct fv_buf *f, int compression, int no_summary)
{
    struct clip c;
    struct fv_mcap_write_opts o = {
        .chunk_size = 200, .compression = compression, .no_summary = no_summary};
    make_clip(f, &o, 30, &c);
    free(c.m);
}

static void test_truncated_at_every_offset(void **state)
{
    (void)state;
    for (int kind = 0; kind < 2; kind++) {
        struct fv_buf f = {0};
        small_file(&f, kind ? FV_MCAP_NONE : FV_MCAP_ZSTD, kind);
        char err[256];
        assert_int_equal(open_and_scan(f.data, f.len, err, sizeof err), FV_OK);
        for (size_t n = 0; n < f.len; n++) {
            int rc = open_and_scan(f.data, n, err, sizeof err);
            if (rc != FV_ECORRUPT) fprintf(stderr, "cut at %zu: rc %d %s\n", n, rc, err);
            assert_int_equal(rc, FV_ECORRUPT);
            assert_true(err_offset(err) <= n);
        }
        /* Cut anywhere after the closing magic starts: the magic is found missing there. */
        assert_int_equal(open_and_scan(f.data, f.len - 1, err, sizeof err), FV_ECORRUPT);
        assert_int_equal(err_offset(err), f.len - 1 - 8);
        assert_non_null(strstr(err, "no closing magic"));
        fv_buf_free(&f);
    }
}

static void test_every_byte_flipped(void **state)
{
    (void)state;
    for (int kind = 0; kind < 3; kind++) {
        struct fv_buf f = {0};
        small_file(&f, kind == 1 ? FV_MCAP_NONE : FV_MCAP_ZSTD, kind == 2);
        unsigned char *d = malloc(f.len);
        assert_non_null(d);
        char err[256];
        for (size_t i = 0; i < f.len; i++) {
            memcpy(d, f.data, f.len);
            d[i] ^= 0x5a;
            int rc = open_and_scan(d, f.len, err, sizeof err);
            if (rc != FV_ECORRUPT && rc != FV_ELIMIT)
                fprintf(stderr, "kind %d: flip at %zu of %zu not refused: rc %d\n", kind, i, f.len,
                        rc);
            assert_true(rc == FV_ECORRUPT || rc == FV_ELIMIT);
            assert_true(err_offset(err) < f.len);
        }
        free(d);
        fv_buf_free(&f);
    }
}

/* Damage in a chunk is found by an indexed read of that chunk, naming an offset in it, or
 * (zstd: a byte the decoder does not need, such as the window size) changes nothing that is
 * read; reads of other chunks still work. Damage in the summary or footer is found by open. */
static void test_damage_named(void **state)
{
    (void)state;
    struct fv_buf f = {0};
    struct clip c;
    struct fv_mcap_write_opts o = {.chunk_size = 200};
    make_clip(&f, &o, 30, &c);
    struct fv_mcap_reader *r = open_mem(f.data, f.len);
    size_t nchunks = fv_mcap_chunk_count(r);
    assert_true(nchunks >= 3);
    struct fv_mcap_chunk_index ci = *fv_mcap_chunk_at(r, 1);
    struct fv_mcap_chunk_index c0 = *fv_mcap_chunk_at(r, 0);
    fv_mcap_reader_free(r);
    char err[256];
    unsigned char *d = malloc(f.len);
    assert_non_null(d);
    size_t refused = 0;
    /* Each byte of chunk 1's compressed records. */
    for (uint64_t i = ci.offset + ci.length - ci.compressed_size; i < ci.offset + ci.length; i++) {
        memcpy(d, f.data, f.len);
        d[i] ^= 0x01;
        r = open_mem(d, f.len);
        struct got g = {0};
        struct fv_mcap_filter first = {NULL, 0, c0.start, c0.end < ci.start ? c0.end : c0.start};
        assert_int_equal(fv_mcap_read(r, &first, collect, &g, err, sizeof err), FV_OK);
        assert_true(g.n > 0);
        g.n = 0;
        int rc = fv_mcap_read(r, NULL, collect, &g, err, sizeof err);
        if (rc == FV_OK) {
            expect(&c, NULL, &g);
        } else {
            assert_int_equal(rc, FV_ECORRUPT);
            uint64_t at = err_offset(err);
            assert_true(at >= ci.offset && at < ci.offset + ci.length);
            refused++;
        }
        free(g.m);
        fv_mcap_reader_free(r);
    }
    assert_true(refused * 10 > ci.compressed_size * 9);
    free(c.m);
    /* The summary: its CRC, named at the footer's CRC field. */
    struct fv_mcap_source src;
    memcpy(d, f.data, f.len);
    d[f.len - 37 - 30] ^= 0x10;
    fv_mcap_source_mem(&src, d, f.len);
    assert_int_equal(fv_mcap_reader_open(&src, &r, err, sizeof err), FV_ECORRUPT);
    assert_int_equal(err_offset(err), f.len - 37 + 25);
    assert_non_null(strstr(err, "summary CRC"));
    /* The footer's summary start pointing past the footer. */
    memcpy(d, f.data, f.len);
    d[f.len - 37 + 9 + 6] = 0x7f;
    fv_mcap_source_mem(&src, d, f.len);
    assert_int_equal(fv_mcap_reader_open(&src, &r, err, sizeof err), FV_ECORRUPT);
    assert_int_equal(err_offset(err), f.len - 37 + 9);
    /* Not MCAP at all. */
    memcpy(d, f.data, f.len);
    d[1] = 'X';
    fv_mcap_source_mem(&src, d, f.len);
    assert_int_equal(fv_mcap_reader_open(&src, &r, err, sizeof err), FV_ECORRUPT);
    assert_int_equal(err_offset(err), 0);
    free(d);
    fv_buf_free(&f);
}

/* ---- rules past the CRCs: a file with its CRCs at 0 ("not available") ---- */

/* Sets the chunk CRCs, the Data End CRC and the summary CRC of f to 0; returns the offsets of
 * the first Message Index, of the Statistics and of the first Chunk Index records. */
static void zero_crcs(struct fv_buf *f, size_t *msg_index, size_t *stats, size_t *chunk_index)
{
    size_t pos = 8, end = f->len - 37;
    *msg_index = *stats = *chunk_index = 0;
    while (pos + 9 <= end) {
        unsigned op = f->data[pos];
        uint64_t n = fv_get_u64(f->data + pos + 1);
        if (op == 0x06) fv_put_u32(f->data + pos + 9 + 24, 0);
        if (op == 0x0F) fv_put_u32(f->data + pos + 9, 0);
        if (op == 0x07 && *msg_index == 0) *msg_index = pos;
        if (op == 0x0B) *stats = pos;
        if (op == 0x08 && *chunk_index == 0) *chunk_index = pos;
        pos += 9 + (size_t)n;
    }
    fv_put_u32(f->data + f->len - 8 - 4, 0);
}

static void test_rules_without_crcs(void **state)
{
    (void)state;
    struct fv_buf f = {0};
    small_file(&f, FV_MCAP_ZSTD, 0);
    size_t mi, st, ci;
    zero_crcs(&f, &mi, &st, &ci);
    assert_true(mi && st && ci);
    char err[256];
    assert_int_equal(open_and_scan(f.data, f.len, err, sizeof err), FV_OK);
    unsigned char *d = malloc(f.len);
    assert_non_null(d);
    /* M12: statistics that do not match the data. */
    memcpy(d, f.data, f.len);
    d[st + 9] ^= 1; /* message count */
    assert_int_equal(open_and_scan(d, f.len, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "statistics"));
    /* M10: a message index entry naming no message. */
    memcpy(d, f.data, f.len);
    d[mi + 9 + 2 + 4 + 8] ^= 1; /* the first entry's offset */
    assert_int_equal(open_and_scan(d, f.len, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "message index entry"));
    assert_int_equal(err_offset(err), mi + 9 + 2 + 4);
    /* M8: a chunk index whose length is not its chunk's. */
    memcpy(d, f.data, f.len);
    uint64_t coff = fv_get_u64(d + ci + 9 + 16);
    fv_put_u64(d + ci + 9 + 24, fv_get_u64(d + ci + 9 + 24) - 1);
    struct fv_mcap_reader *r = open_mem(d, f.len);
    assert_int_equal(fv_mcap_read(r, NULL, NULL, NULL, err, sizeof err), FV_ECORRUPT);
    assert_int_equal(err_offset(err), coff);
    fv_mcap_reader_free(r);
    free(d);
    fv_buf_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_zstd),
        cmocka_unit_test(test_round_trip_none),
        cmocka_unit_test(test_file_round_trip),
        cmocka_unit_test(test_write_fails),
        cmocka_unit_test(test_seek_window_and_channel),
        cmocka_unit_test(test_no_summary),
        cmocka_unit_test(test_empty_and_no_messages),
        cmocka_unit_test(test_writer_refusals),
        cmocka_unit_test(test_truncated_at_every_offset),
        cmocka_unit_test(test_every_byte_flipped),
        cmocka_unit_test(test_damage_named),
        cmocka_unit_test(test_rules_without_crcs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
