/* test_codec.c - value codecs (src/store/codec.h): varints and zigzag, hand-built encodings
 * that pin the byte format, edge values of every codec, scheme choice and size on typical
 * telemetry, a property test against the input as the naive reference (random seeds, printed;
 * FV_CODEC_SEED=N replays one), and corruption: every truncation fails (rule D1), byte flips
 * never crash, and each validity rule D2-D8 is exercised. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "store/codec.h"
#include "util/buf.h"
#include "util/err.h"

/* ---- helpers ---- */

struct rng {
    uint64_t s;
};

static uint64_t rnd(struct rng *g) /* xorshift64* */
{
    g->s ^= g->s >> 12;
    g->s ^= g->s << 25;
    g->s ^= g->s >> 27;
    return g->s * 0x2545f4914f6cdd1dULL;
}

static uint64_t rnd_below(struct rng *g, uint64_t n)
{
    return n ? rnd(g) % n : 0;
}

static void rng_seed(struct rng *g, uint64_t seed)
{
    g->s = seed * 0x9e3779b97f4a7c15ULL + 1; /* never 0 */
    if (g->s == 0) g->s = 1;
}

static double bits_dbl(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* Result of one encode/decode round trip. */
struct rt {
    size_t len; /* encoded bytes */
    int scheme; /* first byte, -1 when empty */
    struct fv_buf buf;
};

static void rt_free(struct rt *t)
{
    fv_buf_free(&t->buf);
}

/* Encodes after a prefix byte (so offsets are exercised), decodes, checks bit equality and
 * that exactly the encoded bytes were consumed. */
static struct rt rt_i64(const int64_t *v, size_t n)
{
    struct rt t = {0};
    assert_int_equal(fv_buf_append(&t.buf, "\xaa", 1), FV_OK);
    assert_int_equal(fv_enc_i64(&t.buf, v, n), FV_OK);
    t.len = t.buf.len - 1;
    t.scheme = n ? t.buf.data[1] : -1;
    int64_t *got = xmalloc(n * sizeof *got);
    struct fv_rd r;
    fv_rd_init(&r, t.buf.data, t.buf.len);
    r.off = 1;
    assert_int_equal(fv_dec_i64(&r, got, n), FV_OK);
    assert_int_equal(r.off, t.buf.len);
    if (n) assert_memory_equal(got, v, n * sizeof *v);
    free(got);
    return t;
}

/* What the block's zstd makes of an encoded column (blocks are compressed whole). */
static size_t zlen(const struct rt *t)
{
    size_t bound = ZSTD_compressBound(t->len);
    void *z = xmalloc(bound);
    size_t r = ZSTD_compress(z, bound, t->buf.data + 1, t->len, 3);
    assert_false(ZSTD_isError(r));
    free(z);
    return r;
}

static struct rt rt_f64(const double *v, size_t n)
{
    struct rt t = {0};
    assert_int_equal(fv_buf_append(&t.buf, "\xaa", 1), FV_OK);
    assert_int_equal(fv_enc_f64(&t.buf, v, n), FV_OK);
    t.len = t.buf.len - 1;
    t.scheme = n ? t.buf.data[1] : -1;
    double *got = xmalloc(n * sizeof *got);
    struct fv_rd r;
    fv_rd_init(&r, t.buf.data, t.buf.len);
    r.off = 1;
    assert_int_equal(fv_dec_f64(&r, got, n), FV_OK);
    assert_int_equal(r.off, t.buf.len);
    if (n) assert_memory_equal(got, v, n * sizeof *v); /* bitwise: NaN payloads, -0.0 */
    free(got);
    return t;
}

static struct rt rt_str(const unsigned char *const *s, const uint32_t *len, size_t n)
{
    struct rt t = {0};
    assert_int_equal(fv_buf_append(&t.buf, "\xaa", 1), FV_OK);
    assert_int_equal(fv_enc_str(&t.buf, s, len, n), FV_OK);
    t.len = t.buf.len - 1;
    t.scheme = -1;
    const unsigned char **gs = xmalloc(n * sizeof *gs);
    uint32_t *gl = xmalloc(n * sizeof *gl);
    struct fv_rd r;
    fv_rd_init(&r, t.buf.data, t.buf.len);
    r.off = 1;
    assert_int_equal(fv_dec_str(&r, n, gs, gl), FV_OK);
    assert_int_equal(r.off, t.buf.len);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(gl[i], len[i]);
        if (len[i]) assert_memory_equal(gs[i], s[i], len[i]);
        assert_true(gs[i] >= t.buf.data && gs[i] + gl[i] <= t.buf.data + t.buf.len);
    }
    free(gs);
    free(gl);
    return t;
}

enum kind { K_I64, K_F64, K_STR };

/* Decodes p[0..len) as a column of kind k with n values into a fresh copy of exactly len
 * bytes (so ASan catches any read past it); returns the decoder's result. */
static int decode_copy(enum kind k, const unsigned char *p, size_t len, size_t n)
{
    unsigned char *img = xmalloc(len);
    if (len) memcpy(img, p, len);
    void *out = xmalloc(n * 8);
    uint32_t *lens = xmalloc(n * sizeof *lens);
    struct fv_rd r;
    fv_rd_init(&r, img, len);
    int rc = k == K_I64   ? fv_dec_i64(&r, out, n)
             : k == K_F64 ? fv_dec_f64(&r, out, n)
                          : fv_dec_str(&r, n, out, lens);
    assert_true(rc == FV_OK || rc == FV_ECORRUPT);
    assert_true(r.off <= len);
    free(lens);
    free(out);
    free(img);
    return rc;
}

/* Rule D1: every proper prefix of a valid encoding is rejected; and flipping any byte either
 * decodes to something or is rejected, without reading out of bounds. every != 0 tries every
 * offset; else a few random ones (the property test runs this on many columns). */
static void check_corruption(enum kind k, const unsigned char *p, size_t len, size_t n,
                             struct rng *g, int every)
{
    static const unsigned char masks[] = {0x01, 0x80, 0xff, 0x7f, 0x40};
    size_t tries = every ? len : (len < 24 ? len : 24);
    unsigned char *img = xmalloc(len);
    memcpy(img, p, len);
    for (size_t i = 0; i < tries; i++) {
        size_t at = every ? i : (size_t)rnd_below(g, len);
        assert_int_equal(decode_copy(k, p, at, n), FV_ECORRUPT);
        for (size_t m = 0; m < sizeof masks; m++) {
            unsigned char x = m + 1 < sizeof masks ? masks[m] : (unsigned char)(rnd(g) | 1);
            img[at] ^= x;
            decode_copy(k, img, len, n);
            img[at] ^= x;
        }
    }
    free(img);
}

/* ---- primitives ---- */

static void test_varint(void **state)
{
    (void)state;
    static const uint64_t vals[] = {
        0, 1, 127, 128, 16383, 16384, UINT32_MAX, (uint64_t)1 << 63, UINT64_MAX, UINT64_MAX - 1};
    static const size_t lens[] = {1, 1, 1, 2, 2, 3, 5, 10, 10, 10};
    struct fv_buf b = {0};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        fv_buf_reset(&b);
        assert_int_equal(fv_put_uvarint(&b, vals[i]), FV_OK);
        assert_int_equal(b.len, lens[i]);
        uint64_t got;
        struct fv_rd r;
        fv_rd_init(&r, b.data, b.len);
        assert_int_equal(fv_rd_uvarint(&r, &got), FV_OK);
        assert_true(got == vals[i]);
        assert_int_equal(r.off, b.len);
        for (size_t cut = 0; cut < b.len; cut++) { /* D1 */
            fv_rd_init(&r, b.data, cut);
            assert_int_equal(fv_rd_uvarint(&r, &got), FV_ECORRUPT);
        }
    }
    fv_buf_free(&b);
    /* D2: an 11th byte, and bits above 2^64 in the 10th byte */
    unsigned char eleven[11], over[10];
    memset(eleven, 0x80, sizeof eleven);
    eleven[10] = 0;
    memset(over, 0xff, sizeof over);
    over[9] = 0x02;
    uint64_t got;
    struct fv_rd r;
    fv_rd_init(&r, eleven, sizeof eleven);
    assert_int_equal(fv_rd_uvarint(&r, &got), FV_ECORRUPT);
    fv_rd_init(&r, over, sizeof over);
    assert_int_equal(fv_rd_uvarint(&r, &got), FV_ECORRUPT);
    over[9] = 0x01;
    fv_rd_init(&r, over, sizeof over);
    assert_int_equal(fv_rd_uvarint(&r, &got), FV_OK);
    assert_true(got == UINT64_MAX);
    /* a non-minimal varint is accepted (0x80 0x00 = 0) */
    fv_rd_init(&r, "\x80\x00", 2);
    assert_int_equal(fv_rd_uvarint(&r, &got), FV_OK);
    assert_true(got == 0);
}

static void test_reader_bounds(void **state)
{
    (void)state;
    const unsigned char data[3] = {1, 2, 3};
    struct fv_rd r;
    fv_rd_init(&r, data, sizeof data);
    uint8_t u;
    const unsigned char *p;
    assert_int_equal(fv_rd_u8(&r, &u), FV_OK);
    assert_int_equal(u, 1);
    assert_int_equal(fv_rd_bytes(&r, 3, &p), FV_ECORRUPT);
    assert_int_equal(fv_rd_bytes(&r, SIZE_MAX, &p), FV_ECORRUPT);
    assert_int_equal(fv_rd_bytes(&r, 2, &p), FV_OK);
    assert_ptr_equal(p, data + 1);
    assert_int_equal(fv_rd_bytes(&r, 0, &p), FV_OK);
    assert_int_equal(fv_rd_u8(&r, &u), FV_ECORRUPT);
    assert_int_equal(r.off, 3);
}

static void test_zigzag(void **state)
{
    (void)state;
    assert_true(fv_zigzag(0) == 0);
    assert_true(fv_zigzag((uint64_t)-1) == 1);
    assert_true(fv_zigzag(1) == 2);
    assert_true(fv_zigzag((uint64_t)-2) == 3);
    assert_true(fv_zigzag((uint64_t)INT64_MAX) == UINT64_MAX - 1);
    assert_true(fv_zigzag((uint64_t)INT64_MIN) == UINT64_MAX);
    struct rng g;
    rng_seed(&g, 7);
    for (int i = 0; i < 10000; i++) {
        uint64_t x = rnd(&g);
        assert_true(fv_unzigzag(fv_zigzag(x)) == x);
    }
}

/* ---- the byte format, pinned by hand-built encodings ---- */

static void expect_i64(const unsigned char *enc, size_t len, const int64_t *want, size_t n)
{
    int64_t got[16];
    struct fv_rd r;
    fv_rd_init(&r, enc, len);
    assert_int_equal(fv_dec_i64(&r, got, n), FV_OK);
    assert_int_equal(r.off, len);
    assert_memory_equal(got, want, n * sizeof *want);
}

static void test_format_by_hand(void **state)
{
    (void)state;
    /* the bit-packing example of codec.h: FOR, min 0, w = 3, 5 1 7 -> 0xcd 0x01 */
    expect_i64((const unsigned char *)"\x01\x00\x03\xcd\x01", 5, (int64_t[]){5, 1, 7}, 3);
    /* CONST -3 (zz = 5) times 4 */
    expect_i64((const unsigned char *)"\x00\x05", 2, (int64_t[]){-3, -3, -3, -3}, 4);
    /* DELTA: first 10 (zz 20), deltas +1 -1 +2 -> zz 2 1 4, w = 3: 2 | 1<<3 | 4<<6 = 0x10a */
    expect_i64((const unsigned char *)"\x02\x14\x03\x0a\x01", 5, (int64_t[]){10, 11, 10, 12}, 4);
    /* DOD: first 1000 (zz 2000 = d0 0f), d1 = 10 (zz 20), dod 0 0 -> one w = 0 frame */
    expect_i64((const unsigned char *)"\x03\xd0\x0f\x14\x00", 5,
               (int64_t[]){1000, 1010, 1020, 1030}, 4);
    /* RLE: 2 runs: 7 x3 (zz 14), then -1 relative (zz 1) x2 -> 7 7 7 6 6 */
    expect_i64((const unsigned char *)"\x04\x02\x0e\x03\x01\x02", 6, (int64_t[]){7, 7, 7, 6, 6}, 5);
    /* w = 64 frame: FOR min INT64_MIN, values INT64_MIN and INT64_MAX (offset 2^64 - 1) */
    expect_i64((const unsigned char *)"\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x40"
                                      "\x00\x00\x00\x00\x00\x00\x00\x00"
                                      "\xff\xff\xff\xff\xff\xff\xff\xff",
               28, (int64_t[]){INT64_MIN, INT64_MAX}, 2);

    /* DECIMAL e = 1, mantissas CONST 5 -> 0.5 0.5; one exception at index 1: -0.0 */
    const unsigned char dec[] = {0, 1, 0, 10, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0x80};
    double d[2];
    struct fv_rd r;
    fv_rd_init(&r, dec, sizeof dec);
    assert_int_equal(fv_dec_f64(&r, d, 2), FV_OK);
    assert_true(d[0] == 0.5 && d[1] == 0.0 && signbit(d[1]));
    /* XOR: 1.0 then 1.0 (xor 0) */
    const unsigned char x[] = {1, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0};
    fv_rd_init(&r, x, sizeof x);
    assert_int_equal(fv_dec_f64(&r, d, 2), FV_OK);
    assert_true(d[0] == 1.0 && d[1] == 1.0);

    /* strings: D = 2, "a", ""; indices 0 1 0 as DELTA: first 0, deltas zz 2 1, w = 2 */
    const unsigned char st[] = {2, 1, 'a', 0, 2, 0, 2, 2 | 1 << 2};
    const unsigned char *s[3];
    uint32_t len[3];
    fv_rd_init(&r, st, sizeof st);
    assert_int_equal(fv_dec_str(&r, 3, s, len), FV_OK);
    assert_int_equal(r.off, sizeof st);
    assert_int_equal(len[0], 1);
    assert_int_equal(s[0][0], 'a');
    assert_int_equal(len[1], 0);
    assert_int_equal(len[2], 1);
    assert_ptr_equal(s[2], st + 2);

    /* what the encoder writes for a few small inputs */
    struct fv_buf b = {0};
    assert_int_equal(fv_enc_i64(&b, (int64_t[]){-3, -3, -3, -3}, 4), FV_OK);
    assert_int_equal(b.len, 2);
    assert_memory_equal(b.data, "\x00\x05", 2);
    fv_buf_reset(&b);
    assert_int_equal(fv_enc_i64(&b, (int64_t[]){1000, 1010, 1020, 1030}, 4), FV_OK);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "\x03\xd0\x0f\x14\x00", 5);
    fv_buf_reset(&b);
    assert_int_equal(fv_enc_f64(&b, (double[]){0.5, 0.5}, 2), FV_OK);
    assert_memory_equal(b.data, "\x00\x01\x00\x0a\x00", 5);
    assert_int_equal(b.len, 5);
    fv_buf_free(&b);
}

/* ---- integer column ---- */

static void test_i64_edges(void **state)
{
    (void)state;
    struct rng g;
    rng_seed(&g, 1);
    static const size_t sizes[] = {0, 1, 2, 3, 127, 128, 129, 255, 256, 257, 1000};
    int64_t *v = xmalloc(1000 * sizeof *v);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        struct rt t;
        for (size_t i = 0; i < n; i++) /* INT64_MIN/MAX mixed: wraparound deltas */
            v[i] = (i % 3 == 0) ? INT64_MIN : (i % 3 == 1) ? INT64_MAX : (int64_t)rnd(&g);
        t = rt_i64(v, n);
        if (n == 0) assert_int_equal(t.len, 0);
        rt_free(&t);
        for (size_t i = 0; i < n; i++) /* constant */
            v[i] = INT64_MIN;
        t = rt_i64(v, n);
        if (n > 0) {
            assert_int_equal(t.scheme, FV_CODEC_I64_CONST);
            assert_int_equal(t.len, 11);
        }
        rt_free(&t);
        for (size_t i = 0; i < n; i++) /* small values, FOR or DELTA territory */
            v[i] = 1000 + (int64_t)rnd_below(&g, 16);
        t = rt_i64(v, n);
        if (n >= 128) assert_true(t.len <= 3 + n / 2 + 2 * (n / 128 + 1));
        rt_free(&t);
        for (size_t i = 0; i < n; i++) /* runs */
            v[i] = (int64_t)(i / 50) * 7 - 3;
        t = rt_i64(v, n);
        if (n >= 100) assert_int_equal(t.scheme, FV_CODEC_I64_RLE);
        rt_free(&t);
        for (size_t i = 0; i < n; i++) /* descending near INT64_MIN, wrapping */
            v[i] = (int64_t)((uint64_t)INT64_MIN + 5 - (uint64_t)i * 3);
        t = rt_i64(v, n);
        if (n >= 10) assert_int_equal(t.scheme, FV_CODEC_I64_DOD);
        rt_free(&t);
    }
    free(v);
}

/* 1 Hz timestamps in ms with +-20 ms jitter. */
static void gen_timestamps(struct rng *g, int64_t *v, size_t n)
{
    int64_t t0 = 1700000000000;
    for (size_t i = 0; i < n; i++)
        v[i] = t0 + (int64_t)i * 1000 + (int64_t)rnd_below(g, 41) - 20;
}

static void test_i64_timestamps_dod(void **state)
{
    (void)state;
    struct rng g;
    rng_seed(&g, 2);
    enum { N = 3600 };
    int64_t *v = xmalloc(N * sizeof *v);
    gen_timestamps(&g, v, N);
    struct rt t = rt_i64(v, N);
    /* dod in -40..40 -> 7 bits; or the deltas' bytes, which zstd brings to about as much */
    assert_true(t.scheme == FV_CODEC_I64_DOD || t.scheme == FV_CODEC_I64_PLANES);
    printf("timestamps 1 Hz +-20 ms: %.3f bytes/value, %.3f after zstd\n", (double)t.len / N,
           (double)zlen(&t) / N);
    assert_true(zlen(&t) <= N);
    rt_free(&t);
    /* exactly regular: every frame has width 0 */
    for (size_t i = 0; i < N; i++)
        v[i] = 1700000000000 + (int64_t)i * 1000;
    t = rt_i64(v, N);
    assert_int_equal(t.scheme, FV_CODEC_I64_DOD);
    assert_true(t.len <= 10 + N / 128 + 1);
    rt_free(&t);
    free(v);
}

/* PLANES: the zigzag deltas byte by byte, for noisy columns that zstd compresses better so
 * than packed bits. */
static void test_i64_planes(void **state)
{
    (void)state;
    /* by hand: first 10 (zz 20), w = 2, deltas +1, -300, +2 -> zz 2, 599 (0x257), 4 */
    expect_i64((const unsigned char *)"\x05\x14\x02\x02\x57\x04\x00\x02\x00", 9,
               (int64_t[]){10, 11, -289, -287}, 4);
    expect_i64((const unsigned char *)"\x05\x14", 2, (int64_t[]){10}, 1); /* one value */
    /* w = 8: the widest deltas (INT64_MIN next to INT64_MAX) read back */
    unsigned char wide[3 + 8] = {5, 0, 8};
    memset(wide + 3, 0xff, 8); /* zz = 2^64 - 1: delta INT64_MIN */
    expect_i64(wide, sizeof wide, (int64_t[]){0, INT64_MIN}, 2);
    /* refused: width 0 or 9, planes cut short */
    assert_int_equal(decode_copy(K_I64, (const unsigned char *)"\x05\x00\x00", 3, 2), FV_ECORRUPT);
    assert_int_equal(decode_copy(K_I64,
                                 (const unsigned char *)"\x05\x00\x09"
                                                        "012345678",
                                 12, 2),
                     FV_ECORRUPT);
    assert_int_equal(decode_copy(K_I64, (const unsigned char *)"\x05\x00\x02\x01\x02\x03", 6, 3),
                     FV_ECORRUPT);
    /* chosen for a noisy walk (pack voltage at 0.01 V: deltas of a few hundred), and
     * smaller than the packed bits once compressed; every cut refused */
    struct rng g;
    rng_seed(&g, 7);
    enum { N = 500 };
    int64_t *v = xmalloc(N * sizeof *v);
    v[0] = 37745;
    for (size_t i = 1; i < N; i++) {
        int64_t step = (int64_t)rnd_below(&g, 61) - 30;
        if (rnd_below(&g, 4) == 0) step *= (int64_t)rnd_below(&g, 12) + 1;
        v[i] = v[i - 1] + step;
    }
    struct rt t = rt_i64(v, N);
    assert_int_equal(t.scheme, FV_CODEC_I64_PLANES);
    for (size_t cut = 0; cut < t.len; cut++)
        assert_int_not_equal(decode_copy(K_I64, t.buf.data + 1, cut, N), FV_OK);
    size_t planes_z = zlen(&t);
    /* the same values with the packed deltas (PLANES only from 64 values: encode in
     * pieces of 63 to get DELTA) */
    struct rt packed = {0};
    packed.len = 0;
    for (size_t at = 0; at < N; at += 63) {
        size_t k = N - at < 63 ? N - at : 63;
        struct fv_buf b = {0};
        assert_int_equal(fv_enc_i64(&b, v + at, k), FV_OK);
        assert_int_not_equal(b.data[0], FV_CODEC_I64_PLANES);
        assert_int_equal(fv_buf_append(&packed.buf, b.data, b.len), FV_OK);
        fv_buf_free(&b);
    }
    assert_int_equal(fv_buf_append(&packed.buf, "", 0), FV_OK);
    struct rt shifted = {.len = packed.buf.len};
    assert_int_equal(fv_buf_append(&shifted.buf, "\xaa", 1), FV_OK);
    assert_int_equal(fv_buf_append(&shifted.buf, packed.buf.data, packed.buf.len), FV_OK);
    printf("noisy walk: planes %zu bytes, %zu after zstd; packed %zu, %zu after zstd\n", t.len,
           planes_z, shifted.len, zlen(&shifted));
    assert_true(planes_z < zlen(&shifted));
    rt_free(&t);
    rt_free(&packed);
    rt_free(&shifted);
    /* DPLANES by hand: first 10 (zz 20), d1 = 5 (zz 10), w = 1, dods +1 -2 -> zz 2 3 */
    expect_i64((const unsigned char *)"\x06\x14\x0a\x01\x02\x03", 6, (int64_t[]){10, 15, 21, 25},
               4);
    expect_i64((const unsigned char *)"\x06\x14\x0a", 3, (int64_t[]){10, 15}, 2);
    expect_i64((const unsigned char *)"\x06\x14", 2, (int64_t[]){10}, 1);
    assert_int_equal(decode_copy(K_I64, (const unsigned char *)"\x06\x14\x0a\x00", 4, 3),
                     FV_ECORRUPT); /* width 0 */
    /* chosen for a smooth noisy track (a position integrating a noisy speed, whose rare
     * jolts widen every packed frame) */
    int64_t speed = 300;
    v[0] = 37400000;
    for (size_t i = 1; i < N; i++) {
        int64_t acc = (int64_t)rnd_below(&g, 7) - 3; /* mostly gentle, now and then not */
        if (rnd_below(&g, 8) == 0) acc *= 20;
        speed += acc;
        v[i] = v[i - 1] + speed;
    }
    t = rt_i64(v, N);
    assert_int_equal(t.scheme, FV_CODEC_I64_DPLANES);
    for (size_t cut = 0; cut < t.len; cut++)
        assert_int_not_equal(decode_copy(K_I64, t.buf.data + 1, cut, N), FV_OK);
    rt_free(&t);
    /* never for columns under 64 values, nor for regular or constant ones */
    for (size_t i = 0; i < N; i++)
        v[i] = 1700000000000 + (int64_t)i * 1000;
    t = rt_i64(v, N);
    assert_int_equal(t.scheme, FV_CODEC_I64_DOD);
    rt_free(&t);
    free(v);
}

/* ---- double column ---- */

static void test_f64_specials(void **state)
{
    (void)state;
    const double specials[] = {
        bits_dbl(0x7ff8000000000000ULL), /* quiet NaN */
        bits_dbl(0x7ff0000000000001ULL), /* signalling NaN payload */
        bits_dbl(0xfff8dead0000beefULL), /* negative NaN with payload */
        bits_dbl(0x7fffffffffffffffULL),
        INFINITY,
        -INFINITY,
        -0.0,
        0.0,
        DBL_MAX,
        -DBL_MAX,
        DBL_MIN,
        bits_dbl(1),                     /* smallest subnormal */
        bits_dbl(0x000fffffffffffffULL), /* largest subnormal */
        -bits_dbl(12345),
        1e300,
        1e-300,
        0x1p62,
        -0x1p62,
        9007199254740993.0,
        0.1,
        1.0 / 3.0,
    };
    const size_t ns = sizeof specials / sizeof specials[0];
    struct rt t = rt_f64(specials, ns);
    rt_free(&t);
    /* each alone, and each as a rare exception in a decimal column */
    double *v = xmalloc(1000 * sizeof *v);
    for (size_t k = 0; k < ns; k++) {
        t = rt_f64(&specials[k], 1);
        rt_free(&t);
        for (size_t i = 0; i < 1000; i++)
            v[i] = (double)(int64_t)(i * 7 % 1000) / 100.0;
        v[0] = v[499] = v[500] = v[999] = specials[k];
        t = rt_f64(v, 1000);
        assert_int_equal(t.scheme, FV_CODEC_F64_DECIMAL);
        rt_free(&t);
    }
    /* all special: XOR */
    for (size_t i = 0; i < 1000; i++)
        v[i] = specials[i % ns];
    t = rt_f64(v, 1000);
    assert_int_equal(t.scheme, FV_CODEC_F64_XOR);
    rt_free(&t);
    free(v);
}

static void test_f64_decimal_chosen(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 2, 127, 128, 129, 1000};
    double *v = xmalloc(1000 * sizeof *v);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        for (size_t i = 0; i < n; i++) /* 0.1 steps, as a sensor would print them */
            v[i] = (double)(int64_t)(201 + i) / 10.0;
        struct rt t = rt_f64(v, n);
        assert_int_equal(t.scheme, FV_CODEC_F64_DECIMAL);
        assert_int_equal(t.buf.data[2], 1);       /* e = 1 */
        if (n >= 128) assert_true(t.len * 8 < n); /* DOD of a ramp: under 1 bit per value */
        rt_free(&t);
    }
    /* the same values, but computed as i * 0.1 (not the nearest double to the decimal) */
    for (size_t i = 0; i < 1000; i++)
        v[i] = 0.1 * (double)i;
    struct rt t = rt_f64(v, 1000);
    rt_free(&t);
    /* integers as doubles: e = 0 */
    for (size_t i = 0; i < 1000; i++)
        v[i] = (double)(int64_t)(i * i) - 5000.0;
    t = rt_f64(v, 1000);
    assert_int_equal(t.scheme, FV_CODEC_F64_DECIMAL);
    assert_int_equal(t.buf.data[2], 0);
    rt_free(&t);
    free(v);
}

static void test_f64_random_is_xor(void **state)
{
    (void)state;
    struct rng g;
    rng_seed(&g, 3);
    double *v = xmalloc(1000 * sizeof *v);
    for (size_t i = 0; i < 1000; i++)
        v[i] = bits_dbl(rnd(&g));
    struct rt t = rt_f64(v, 1000);
    assert_int_equal(t.scheme, FV_CODEC_F64_XOR);
    assert_int_equal(t.len, 1 + 8 * 1000);
    rt_free(&t);
    for (size_t i = 0; i < 1000; i++) /* uniform in [0, 1): 17-digit decimals or XOR */
        v[i] = (double)(rnd(&g) >> 11) * 0x1p-53;
    t = rt_f64(v, 1000);
    assert_true(t.len <= 1 + 8 * 1000);
    rt_free(&t);
    /* exactly 1/4 exceptions stays DECIMAL, one more switches to XOR */
    for (size_t i = 0; i < 1000; i++)
        v[i] = i % 4 == 0 ? NAN : (double)(int64_t)i / 10.0;
    t = rt_f64(v, 1000);
    assert_int_equal(t.scheme, FV_CODEC_F64_DECIMAL);
    rt_free(&t);
    v[1] = NAN;
    t = rt_f64(v, 1000);
    assert_int_equal(t.scheme, FV_CODEC_F64_XOR);
    rt_free(&t);
    free(v);
}

/* Speed-like: random walk in 0.1 km/h, 0..250. SoC-like: 80.00 % falling by 0.01 every ~20 s. */
static void gen_speed(struct rng *g, double *v, size_t n)
{
    int64_t m = 500;
    for (size_t i = 0; i < n; i++) {
        m += (int64_t)rnd_below(g, 21) - 10;
        m = m < 0 ? 0 : m > 2500 ? 2500 : m;
        v[i] = (double)m / 10.0;
    }
}

static void gen_soc(struct rng *g, double *v, size_t n)
{
    int64_t m = 8000;
    for (size_t i = 0; i < n; i++) {
        if (rnd_below(g, 20) == 0) m -= 1;
        v[i] = (double)m / 100.0;
    }
}

static void test_f64_telemetry_sizes(void **state)
{
    (void)state;
    enum { N = 3600 };
    struct rng g;
    rng_seed(&g, 4);
    double *v = xmalloc(N * sizeof *v);
    gen_speed(&g, v, N);
    struct rt t = rt_f64(v, N);
    assert_int_equal(t.scheme, FV_CODEC_F64_DECIMAL);
    printf("speed walk 0.1: %.3f bytes/value, %.3f after zstd\n", (double)t.len / N,
           (double)zlen(&t) / N);
    assert_true(zlen(&t) <= N);
    rt_free(&t);
    gen_soc(&g, v, N);
    t = rt_f64(v, N);
    assert_int_equal(t.scheme, FV_CODEC_F64_DECIMAL);
    printf("soc 0.01: %.3f bytes/value, %.3f after zstd\n", (double)t.len / N,
           (double)zlen(&t) / N);
    assert_true(zlen(&t) * 4 <= N);
    rt_free(&t);
    free(v);
}

/* ---- string column ---- */

static void test_str_edges(void **state)
{
    (void)state;
    const unsigned char *s[300] = {0};
    uint32_t len[300] = {0};
    struct rt t = rt_str(s, len, 0);
    assert_int_equal(t.len, 0);
    rt_free(&t);
    static const unsigned char nul3[] = {0, 0, 0}, mid[] = {'a', 0, 'b'}, mid2[] = {'a', 0, 'c'};
    const unsigned char *pool[] = {(const unsigned char *)"",
                                   NULL,
                                   nul3,
                                   nul3 + 1,
                                   mid,
                                   mid2,
                                   (const unsigned char *)"Drive",
                                   (const unsigned char *)"Park"};
    const uint32_t plen[] = {0, 0, 3, 2, 3, 3, 5, 4};
    for (size_t i = 0; i < 8; i++) { /* one string alone */
        t = rt_str(&pool[i], &plen[i], 1);
        rt_free(&t);
    }
    for (size_t i = 0; i < 300; i++) { /* a mixture, with repeats */
        size_t k = (i * 5 + i / 7) % 8;
        s[i] = pool[k];
        len[i] = plen[k];
    }
    t = rt_str(s, len, 300);
    rt_free(&t);
    for (size_t i = 0; i < 300; i++) { /* one value: dictionary of one, CONST indices */
        s[i] = (const unsigned char *)"Park";
        len[i] = 4;
    }
    t = rt_str(s, len, 300);
    assert_int_equal(t.len, 1 + 1 + 4 + 2);
    rt_free(&t);
    /* strings with equal bytes at different addresses share one entry */
    unsigned char copies[300][4];
    for (size_t i = 0; i < 300; i++) {
        memcpy(copies[i], i % 2 ? "Park" : "Driv", 4);
        s[i] = copies[i];
    }
    t = rt_str(s, len, 300);
    assert_int_equal(t.buf.data[1], 2);
    rt_free(&t);
}

/* ---- property test: random columns, encode, decode, compare with the input ---- */

static size_t pick_n(struct rng *g)
{
    static const size_t edge[] = {0, 1, 2, 3, 127, 128, 129, 255, 256, 257, 383, 384, 385};
    if (rnd_below(g, 2)) return edge[rnd_below(g, sizeof edge / sizeof edge[0])];
    return (size_t)rnd_below(g, 1200);
}

static void gen_i64(struct rng *g, int64_t *v, size_t n)
{
    unsigned kind = (unsigned)rnd_below(g, 6);
    uint64_t x = rnd(g), step = rnd(g) >> rnd_below(g, 64);
    for (size_t i = 0; i < n; i++) {
        switch (kind) {
        case 0: /* random int64 */
            x = rnd(g);
            break;
        case 1: /* small ints */
            x = rnd_below(g, 200) - 100;
            break;
        case 2: /* runs */
            if (rnd_below(g, 16) == 0) x = rnd(g) >> rnd_below(g, 64);
            break;
        case 3: /* random walk with a random step scale */
            x += rnd(g) % (step | 1) - step / 2;
            break;
        case 4: /* timestamps */
            x += 1000 + rnd_below(g, 41) - 20;
            break;
        default: /* a walk with rare extreme values */
            x += rnd_below(g, 7) - 3;
            v[i] = rnd_below(g, 50) ? (int64_t)x : rnd_below(g, 2) ? INT64_MIN : INT64_MAX;
            continue;
        }
        memcpy(&v[i], &x, sizeof x);
    }
}

static double exceptional(struct rng *g)
{
    static const uint64_t bits[] = {
        0x7ff8000000000000ULL, 0x7ff0000000000001ULL, 0xfff4000000000abcULL, 0x7ff0000000000000ULL,
        0xfff0000000000000ULL, 0x8000000000000000ULL, 0x0000000000000001ULL, 0x7fefffffffffffffULL};
    if (rnd_below(g, 3) == 0) return bits_dbl(rnd(g));
    return bits_dbl(bits[rnd_below(g, sizeof bits / sizeof bits[0])]);
}

static void gen_f64(struct rng *g, double *v, size_t n)
{
    unsigned kind = (unsigned)rnd_below(g, 5);
    unsigned e = (unsigned)rnd_below(g, 19);
    double p = 1;
    for (unsigned i = 0; i < e; i++)
        p *= 10;
    uint64_t exc_rate = rnd_below(g, 4) == 0 ? 0 : rnd_below(g, 60); /* % of exceptions */
    int64_t m = (int64_t)(rnd(g) >> (1 + rnd_below(g, 63)));
    for (size_t i = 0; i < n; i++) {
        switch (kind) {
        case 0: /* random walk of decimals with exponent e */
            m += (int64_t)rnd_below(g, 201) - 100;
            m = m > ((int64_t)1 << 60) || m < -((int64_t)1 << 60) ? 0 : m;
            v[i] = (double)m / p;
            break;
        case 1: /* computed as m * 10^-e: usually a decimal, sometimes not */
            m += (int64_t)rnd_below(g, 3) - 1;
            v[i] = (double)(m % 1000000) * (1.0 / p);
            break;
        case 2: /* random bits */
            v[i] = bits_dbl(rnd(g));
            break;
        case 3: /* constant */
            v[i] = (double)(m % 100000) / p;
            break;
        default: /* random doubles in a range */
            v[i] = ((double)(rnd(g) >> 11) * 0x1p-53 - 0.5) * p;
            break;
        }
        if (rnd_below(g, 100) < exc_rate) v[i] = exceptional(g);
    }
}

/* Strings from a small random pool (embedded NULs, empties), with random repeats. */
static void gen_str(struct rng *g, const unsigned char *pool, const unsigned char **s,
                    uint32_t *len, size_t n)
{
    size_t distinct = 1 + (size_t)rnd_below(g, rnd_below(g, 2) ? 8 : 2000);
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)rnd_below(g, distinct);
        s[i] = pool + (k * 7) % 4000;
        len[i] = (uint32_t)(k % 23);
        if (rnd_below(g, 3) && i > 0) {
            s[i] = s[i - 1];
            len[i] = len[i - 1];
        }
    }
}

static uint64_t base_seed(void)
{
    const char *e = getenv("FV_CODEC_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
    printf("codec property seed %" PRIu64 " (replay: FV_CODEC_SEED=%" PRIu64 ")\n", seed, seed);
    return seed;
}

static void test_property(void **state)
{
    (void)state;
    uint64_t seed0 = base_seed();
    enum { CAP = 1200, SEEDS = 1000 };
    int64_t *iv = xmalloc(CAP * sizeof *iv);
    double *dv = xmalloc(CAP * sizeof *dv);
    const unsigned char **s = xmalloc(CAP * sizeof *s);
    uint32_t *len = xmalloc(CAP * sizeof *len);
    unsigned char *pool = xmalloc(4096);
    for (uint64_t k = 0; k < SEEDS; k++) {
        struct rng g;
        rng_seed(&g, seed0 + k);
        for (size_t i = 0; i < 4096; i++)
            pool[i] = (unsigned char)(rnd_below(&g, 4) ? 'a' + rnd_below(&g, 3) : 0);
        size_t n = pick_n(&g);
        gen_i64(&g, iv, n);
        struct rt t = rt_i64(iv, n);
        check_corruption(K_I64, t.buf.data + 1, t.len, n, &g, 0);
        rt_free(&t);
        n = pick_n(&g);
        gen_f64(&g, dv, n);
        t = rt_f64(dv, n);
        check_corruption(K_F64, t.buf.data + 1, t.len, n, &g, 0);
        rt_free(&t);
        n = pick_n(&g);
        gen_str(&g, pool, s, len, n);
        t = rt_str(s, len, n);
        check_corruption(K_STR, t.buf.data + 1, t.len, n, &g, 0);
        rt_free(&t);
    }
    free(pool);
    free(len);
    free(s);
    free(dv);
    free(iv);
}

/* ---- corruption ---- */

static void test_truncation_every_offset(void **state)
{
    (void)state;
    struct rng g;
    rng_seed(&g, 5);
    enum { N = 300 };
    int64_t iv[N];
    double dv[N];
    /* one column per scheme */
    for (unsigned scheme = 0; scheme < 5; scheme++) {
        for (size_t i = 0; i < N; i++)
            iv[i] = scheme == 0   ? 42
                    : scheme == 1 ? (int64_t)rnd_below(&g, 1000)
                    : scheme == 2 ? (i ? iv[i - 1] : 0) + (int64_t)rnd_below(&g, 101) - 50
                    : scheme == 3 ? (int64_t)(i * 1000 + rnd_below(&g, 3))
                                  : (int64_t)(i / 40);
        struct rt t = rt_i64(iv, N);
        assert_int_equal(t.scheme, (int)scheme);
        check_corruption(K_I64, t.buf.data + 1, t.len, N, &g, 1);
        rt_free(&t);
    }
    for (size_t i = 0; i < N; i++)
        dv[i] = i % 17 == 0 ? -0.0 : (double)(int64_t)i / 100.0;
    struct rt t = rt_f64(dv, N);
    assert_int_equal(t.scheme, FV_CODEC_F64_DECIMAL);
    check_corruption(K_F64, t.buf.data + 1, t.len, N, &g, 1);
    rt_free(&t);
    for (size_t i = 0; i < N; i++)
        dv[i] = bits_dbl(rnd(&g));
    t = rt_f64(dv, N);
    assert_int_equal(t.scheme, FV_CODEC_F64_XOR);
    check_corruption(K_F64, t.buf.data + 1, t.len, N, &g, 1);
    rt_free(&t);
    const unsigned char *s[N];
    uint32_t len[N];
    for (size_t i = 0; i < N; i++) {
        s[i] = (const unsigned char *)"ab\0cdefgh" + i % 5;
        len[i] = (uint32_t)(i % 4);
    }
    t = rt_str(s, len, N);
    check_corruption(K_STR, t.buf.data + 1, t.len, N, &g, 1);
    rt_free(&t);
}

static int dec(enum kind k, const char *bytes, size_t len, size_t n)
{
    return decode_copy(k, (const unsigned char *)bytes, len, n);
}

static void test_malformed(void **state)
{
    (void)state;
    /* D3: unknown schemes */
    assert_int_equal(dec(K_I64, "\x07\x00", 2, 1), FV_ECORRUPT);
    assert_int_equal(dec(K_I64, "\xff\x00", 2, 1), FV_ECORRUPT);
    assert_int_equal(dec(K_F64, "\x02\x00", 2, 1), FV_ECORRUPT);
    /* D4: width 65 */
    assert_int_equal(dec(K_I64,
                         "\x01\x00\x41"
                         "0123456789",
                         13, 1),
                     FV_ECORRUPT);
    assert_int_equal(dec(K_I64,
                         "\x01\x00\x40"
                         "01234567",
                         11, 1),
                     FV_OK);
    /* D5: RLE run counts and lengths */
    assert_int_equal(dec(K_I64, "\x04\x00", 2, 1), FV_ECORRUPT);                 /* 0 runs */
    assert_int_equal(dec(K_I64, "\x04\x03\x00\x01\x00\x01", 6, 2), FV_ECORRUPT); /* runs > n */
    assert_int_equal(dec(K_I64, "\x04\x01\x00\x00", 4, 1), FV_ECORRUPT);         /* length 0 */
    assert_int_equal(dec(K_I64, "\x04\x01\x00\x03", 4, 2), FV_ECORRUPT);         /* sum > n */
    assert_int_equal(dec(K_I64, "\x04\x01\x00\x01", 4, 2), FV_ECORRUPT);         /* sum < n */
    assert_int_equal(dec(K_I64, "\x04\x02\x00\x02\x02\x01", 6, 2), FV_ECORRUPT); /* unused */
    assert_int_equal(dec(K_I64, "\x04\x02\x00\x01\x02\x01", 6, 2), FV_OK);
    /* D6: exponent 19; exception count > n; index out of range; not increasing */
    assert_int_equal(dec(K_F64, "\x00\x13\x00\x00\x00", 5, 1), FV_ECORRUPT);
    assert_int_equal(dec(K_F64, "\x00\x12\x00\x00\x00", 5, 1), FV_OK);
    assert_int_equal(dec(K_F64, "\x00\x00\x00\x00\x02", 5, 1), FV_ECORRUPT);
    assert_int_equal(dec(K_F64,
                         "\x00\x00\x00\x00\x01\x01"
                         "01234567",
                         14, 1),
                     FV_ECORRUPT);
    assert_int_equal(dec(K_F64,
                         "\x00\x00\x00\x00\x01\x00"
                         "01234567",
                         14, 1),
                     FV_OK);
    assert_int_equal(dec(K_F64,
                         "\x00\x00\x00\x00\x02\x01"
                         "01234567"
                         "\x00"
                         "01234567",
                         23, 2),
                     FV_ECORRUPT);
    /* D7: dictionary of 0, larger than n, larger than the bytes left, length > 2^32 - 1 */
    assert_int_equal(dec(K_STR, "\x00\x00\x00", 3, 1), FV_ECORRUPT);
    assert_int_equal(dec(K_STR, "\x03\x00\x00\x00\x02\x00\x00\x00\x00", 9, 2), FV_ECORRUPT);
    assert_int_equal(dec(K_STR, "\x02\x00", 2, 4), FV_ECORRUPT);
    assert_int_equal(dec(K_STR, "\x01\x80\x80\x80\x80\x10\x00\x00", 8, 1), FV_ECORRUPT);
    /* D8: index >= D; second entry first (not first-seen order); unused entry */
    assert_int_equal(dec(K_STR, "\x01\x00\x00\x02", 4, 1), FV_ECORRUPT);
    assert_int_equal(dec(K_STR, "\x02\x00\x00\x04\x02\x02\x01\x01\x01", 9, 2), FV_ECORRUPT);
    assert_int_equal(dec(K_STR, "\x02\x00\x00\x00\x00", 5, 2), FV_ECORRUPT);
    assert_int_equal(dec(K_STR, "\x02\x00\x00\x02\x00\x02\x02", 7, 2), FV_OK);
    /* n = 0 reads nothing, whatever follows */
    assert_int_equal(dec(K_I64, "", 0, 0), FV_OK);
    assert_int_equal(dec(K_F64, "\xff", 1, 0), FV_OK);
    /* a CONST column may claim any n */
    assert_int_equal(dec(K_I64, "\x00\x01", 2, 100000), FV_OK);
    /* XOR with too few bytes, and a huge n */
    assert_int_equal(dec(K_F64,
                         "\x01"
                         "0123456",
                         8, 1),
                     FV_ECORRUPT);
    assert_int_equal(dec(K_F64,
                         "\x01"
                         "01234567",
                         9, 2),
                     FV_ECORRUPT);
}

/* Random garbage never crashes a decoder. */
static void test_garbage(void **state)
{
    (void)state;
    struct rng g;
    rng_seed(&g, 6);
    unsigned char buf[256];
    for (int it = 0; it < 20000; it++) {
        size_t len = (size_t)rnd_below(&g, sizeof buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = (unsigned char)(rnd_below(&g, 2) ? rnd(&g) : rnd_below(&g, 5));
        decode_copy((enum kind)(it % 3), buf, len, (size_t)rnd_below(&g, 300));
    }
}

/* LINKED (codec.h): a voltage that sags with a current is written against the current's
 * mantissas, at under half the bytes DECIMAL takes after zstd, and decodes bit for bit through
 * the resolver; a power that is amps times 24 costs a constant column. Without a resolver, or
 * with one that answers another length, or with kq 0, the column is corrupt; a column written
 * LINKED does not become a reference itself (one level). */
struct ref_of {
    uint32_t id;
    const int64_t *m;
    size_t n;
};
static int resolve_test(void *arg, uint32_t id, size_t n, const int64_t **m)
{
    const struct ref_of *r = arg;
    if (id != r->id || n != r->n) return FV_ECORRUPT;
    *m = r->m;
    return FV_OK;
}

static void test_f64_linked(void **state)
{
    (void)state;
    enum { N = 500 };
    double cur[N], volt[N], amps[N], kw[N];
    uint64_t g = 77;
    double c = 20, a = 16;
    for (int i = 0; i < N; i++) {
        g = g * 6364136223846793005ULL + 1442695040888963407ULL;
        c += (double)((int)((g >> 33) % 61) - 30) / 10.0;
        if ((g >> 20) % 10 == 0) a = (double)((g >> 40) % 48);
        cur[i] = round(c * 10) / 10;
        volt[i] = round((396.0 - i * 0.01 - c * 0.085) * 100) / 100;
        amps[i] = a;
        kw[i] = round(a * 24.0) / 100;
    }
    struct fv_f64_links *lk = fv_f64_links_new(N);
    assert_non_null(lk);
    struct fv_buf bc = {0}, bv = {0}, ba = {0}, bk = {0};
    assert_int_equal(fv_enc_f64_linked(&bc, cur, 6, lk), FV_OK);
    assert_int_equal(bc.data[0], FV_CODEC_F64_DECIMAL);
    assert_int_equal(fv_enc_f64_linked(&bv, volt, 7, lk), FV_OK);
    assert_int_equal(bv.data[0], FV_CODEC_F64_LINKED);
    assert_int_equal(fv_enc_f64_linked(&ba, amps, 9, lk), FV_OK);
    assert_int_equal(fv_enc_f64_linked(&bk, kw, 10, lk), FV_OK);
    assert_int_equal(bk.data[0], FV_CODEC_F64_LINKED);
    fv_f64_links_free(lk);
    /* sizes after zstd against DECIMAL alone */
    struct rt alone = rt_f64(volt, N);
    assert_int_equal(alone.scheme, FV_CODEC_F64_DECIMAL);
    size_t zl = ZSTD_compressBound(bv.len);
    void *z = xmalloc(zl);
    size_t linked = ZSTD_compress(z, zl, bv.data, bv.len, 3);
    assert_false(ZSTD_isError(linked));
    free(z);
    printf("voltage: DECIMAL %zu bytes after zstd, LINKED %zu\n", zlen(&alone), linked);
    assert_true(2 * linked < zlen(&alone));
    rt_free(&alone);
    /* decoding: the current's mantissas (e = 1) as the reference */
    int64_t mc[N], mv[N];
    double got[N];
    int decimal = 0;
    struct fv_rd r;
    fv_rd_init(&r, bc.data, bc.len);
    assert_int_equal(fv_dec_f64_ex(&r, got, N, mc, &decimal, NULL, NULL), FV_OK);
    assert_int_equal(decimal, 1);
    assert_memory_equal(got, cur, sizeof cur);
    struct ref_of ref = {6, mc, N};
    fv_rd_init(&r, bv.data, bv.len);
    decimal = 1;
    assert_int_equal(fv_dec_f64_ex(&r, got, N, mv, &decimal, resolve_test, &ref), FV_OK);
    assert_int_equal(r.off, bv.len);
    assert_int_equal(decimal, 0); /* not a reference */
    assert_memory_equal(got, volt, sizeof volt);
    /* refused: no resolver, wrong length, unknown id, kq 0 */
    fv_rd_init(&r, bv.data, bv.len);
    assert_int_equal(fv_dec_f64(&r, got, N), FV_ECORRUPT);
    struct ref_of shorter = {6, mc, N - 1}, other = {5, mc, N};
    fv_rd_init(&r, bv.data, bv.len);
    assert_int_equal(fv_dec_f64_ex(&r, got, N, NULL, NULL, resolve_test, &shorter), FV_ECORRUPT);
    fv_rd_init(&r, bv.data, bv.len);
    assert_int_equal(fv_dec_f64_ex(&r, got, N, NULL, NULL, resolve_test, &other), FV_ECORRUPT);
    unsigned char zero_kq[] = {FV_CODEC_F64_LINKED, 2, 6, 0, FV_CODEC_I64_CONST, 0, 0};
    fv_rd_init(&r, zero_kq, sizeof zero_kq);
    assert_int_equal(fv_dec_f64_ex(&r, got, N, NULL, NULL, resolve_test, &ref), FV_ECORRUPT);
    fv_buf_free(&bc);
    fv_buf_free(&bv);
    fv_buf_free(&ba);
    fv_buf_free(&bk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint),
        cmocka_unit_test(test_reader_bounds),
        cmocka_unit_test(test_zigzag),
        cmocka_unit_test(test_format_by_hand),
        cmocka_unit_test(test_i64_edges),
        cmocka_unit_test(test_i64_timestamps_dod),
        cmocka_unit_test(test_i64_planes),
        cmocka_unit_test(test_f64_specials),
        cmocka_unit_test(test_f64_decimal_chosen),
        cmocka_unit_test(test_f64_random_is_xor),
        cmocka_unit_test(test_f64_telemetry_sizes),
        cmocka_unit_test(test_f64_linked),
        cmocka_unit_test(test_str_edges),
        cmocka_unit_test(test_property),
        cmocka_unit_test(test_truncation_every_offset),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
