/* test_block.c - store blocks (src/store/block.h): encode/decode round trips of every value
 * kind (bit for bit: NaN payloads, -0.0, infinities), oneof member numbers, unknown signal
 * numbers, sparse signals, a signal repeated in one frame (the last wins), keep() filtering,
 * events, selective decoding (a subset of fields, events skipped), equal timestamps, 1 and
 * 8192 frames; a property test against the input as the naive reference (random seeds,
 * printed; FV_BLOCK_SEED=N replays one); the reader's limits obeyed by the writer (a property
 * test around FV_BLOCK_MAX_COLS and FV_BLOCK_MAX_RAW); corruption: every truncation fails and byte
 * flips give FV_ECORRUPT or a consistent block, never a crash (run under ASan); correlated
 * double columns predicted one from another (LINKED). */
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

#include "store/block.h"
#include "util/buf.h"
#include "util/err.h"
#include "wire/payload.h"

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
    g->s = seed * 0x9e3779b97f4a7c15ULL + 1;
    if (g->s == 0) g->s = 1;
}

static double bits_dbl(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    assert_non_null(p);
    return p;
}

static struct fv_value vdbl(double d, uint8_t member)
{
    struct fv_value v = {.kind = FV_VK_DOUBLE, .member = member};
    v.u.d = d;
    return v;
}
static struct fv_value vint(uint8_t kind, int64_t i, uint8_t member)
{
    struct fv_value v = {.kind = kind, .member = member};
    v.u.i = i;
    return v;
}
static struct fv_value vstr(const char *s, uint8_t member)
{
    struct fv_value v = {.kind = FV_VK_STRING, .member = member};
    v.u.s = (char *)s; /* inputs are borrowed: the encoder only reads them */
    return v;
}
static struct fv_value vloc(double lat, double lon, uint8_t member)
{
    struct fv_value v = {.kind = FV_VK_LOCATION, .member = member};
    v.u.loc.lat = lat;
    v.u.loc.lon = lon;
    return v;
}
static struct fv_value vbits(uint8_t kind, uint32_t bits, uint8_t member)
{
    struct fv_value v = {.kind = kind, .member = member};
    v.u.bits = bits;
    return v;
}
static struct fv_value vtime(int32_t h, int32_t m, int32_t s, uint8_t member)
{
    struct fv_value v = {.kind = FV_VK_TIME, .member = member};
    v.u.time.h = h;
    v.u.time.m = m;
    v.u.time.s = s;
    return v;
}
static struct fv_value vbare(uint8_t kind, uint8_t member)
{
    struct fv_value v = {.kind = kind, .member = member};
    return v;
}

/* ---- the reference: what a decoder must give back for an input ---- */

struct xd {
    uint32_t row, field;
    const struct fv_value *v;
};

static int cmp_xd(const void *a, const void *b)
{
    const struct xd *x = a, *y = b;
    if (x->field != y->field) return x->field < y->field ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

struct expect {
    size_t nrec, nd;
    int64_t *t;
    struct xd *d;
};

static void expect_free(struct expect *x)
{
    free(x->t);
    free(x->d);
    memset(x, 0, sizeof *x);
}

/* Frames with at least one kept datum become rows; within a frame the last datum of a field
 * wins. */
static void expect_build(const struct fv_block_in *in, struct expect *x)
{
    size_t total = 0;
    for (size_t f = 0; f < in->nframes; f++)
        total += in->frames[f].n;
    x->t = xcalloc(in->nframes, sizeof *x->t);
    x->d = xcalloc(total, sizeof *x->d);
    x->nrec = x->nd = 0;
    for (size_t f = 0; f < in->nframes; f++) {
        const struct fv_block_frame *fr = &in->frames[f];
        size_t start = x->nd;
        int have = 0;
        for (uint32_t k = 0; k < fr->n; k++) {
            const struct fv_datum *d = &fr->d[k];
            if (in->keep && !in->keep(in->keep_arg, d->field)) continue;
            have = 1;
            size_t q = start;
            while (q < x->nd && x->d[q].field != d->field)
                q++;
            if (q < x->nd) {
                x->d[q].v = &d->value;
            } else {
                x->d[x->nd++] = (struct xd){(uint32_t)x->nrec, d->field, &d->value};
            }
        }
        if (have) x->t[x->nrec++] = fr->t;
    }
    qsort(x->d, x->nd, sizeof *x->d, cmp_xd);
}

static int wanted(const uint32_t *fields, size_t n, uint32_t f)
{
    if (fields == NULL) return 1;
    for (size_t i = 0; i < n; i++)
        if (fields[i] == f) return 1;
    return 0;
}

static void describe(const struct fv_value *v, char *buf, size_t len)
{
    uint64_t bits;
    switch (v->kind) {
    case FV_VK_DOUBLE:
        memcpy(&bits, &v->u.d, 8);
        snprintf(buf, len, "double/%u %g (%016" PRIx64 ")", v->member, v->u.d, bits);
        break;
    case FV_VK_STRING:
        snprintf(buf, len, "string/%u \"%s\"", v->member, v->u.s ? v->u.s : "(null)");
        break;
    case FV_VK_LOCATION:
        snprintf(buf, len, "loc/%u %g,%g", v->member, v->u.loc.lat, v->u.loc.lon);
        break;
    case FV_VK_TIME:
        snprintf(buf, len, "time/%u %d:%d:%d", v->member, v->u.time.h, v->u.time.m, v->u.time.s);
        break;
    case FV_VK_DOORS:
    case FV_VK_TIRES:
        snprintf(buf, len, "bits(kind %u)/%u %#x", v->kind, v->member, v->u.bits);
        break;
    default:
        snprintf(buf, len, "kind %u/%u i=%" PRId64, v->kind, v->member, v->u.i);
    }
}

/* Compares a decoded block with the reference (restricted to fields when not NULL). Returns 1
 * if equal, else prints the first difference and returns 0. */
static int block_matches(const struct fv_block *b, const struct expect *x, const uint32_t *fields,
                         size_t nfields)
{
    if (b->nrec != x->nrec) {
        printf("nrec %zu, expected %zu\n", b->nrec, x->nrec);
        return 0;
    }
    for (size_t i = 0; i < x->nrec; i++)
        if (b->t[i] != x->t[i]) {
            printf("t[%zu] = %" PRId64 ", expected %" PRId64 "\n", i, b->t[i], x->t[i]);
            return 0;
        }
    size_t q = 0; /* next expected datum */
    for (size_t c = 0; c < b->ncols; c++) {
        const struct fv_block_col *col = &b->cols[c];
        if (c && col->field <= b->cols[c - 1].field) {
            printf("columns not ascending at %zu\n", c);
            return 0;
        }
        if (!wanted(fields, nfields, col->field)) {
            printf("column %u decoded but not asked for\n", col->field);
            return 0;
        }
        if (fv_block_col(b, col->field) != col) {
            printf("fv_block_col(%u) does not find its column\n", col->field);
            return 0;
        }
        for (size_t r = 0; r < col->n; r++) {
            while (q < x->nd && !wanted(fields, nfields, x->d[q].field))
                q++;
            if (q == x->nd || x->d[q].field != col->field || x->d[q].row != col->row[r]) {
                printf("column %u row %u: unexpected (expected field %u row %u)\n", col->field,
                       col->row[r], q < x->nd ? x->d[q].field : 0, q < x->nd ? x->d[q].row : 0);
                return 0;
            }
            if (!fv_value_equal(&col->v[r], x->d[q].v)) {
                char a[128], e[128];
                describe(&col->v[r], a, sizeof a);
                describe(x->d[q].v, e, sizeof e);
                printf("column %u row %u: got %s, expected %s\n", col->field, col->row[r], a, e);
                return 0;
            }
            q++;
        }
    }
    while (q < x->nd && !wanted(fields, nfields, x->d[q].field))
        q++;
    if (q != x->nd) {
        printf("datum field %u row %u missing\n", x->d[q].field, x->d[q].row);
        return 0;
    }
    return 1;
}

static int events_match(const struct fv_block *b, const struct fv_block_in *in)
{
    if (b->nev != in->nev) {
        printf("nev %zu, expected %zu\n", b->nev, in->nev);
        return 0;
    }
    for (size_t i = 0; i < in->nev; i++) {
        const struct fv_block_event *g = &b->ev[i], *e = &in->ev[i];
        if (g->t != e->t || g->topic_len != e->topic_len || g->len != e->len ||
            (e->topic_len && memcmp(g->topic, e->topic, e->topic_len) != 0) ||
            (e->len && memcmp(g->payload, e->payload, e->len) != 0)) {
            printf("event %zu differs\n", i);
            return 0;
        }
    }
    return 1;
}

/* Encodes in, checks meta, decodes everything and a subset, compares. Returns the encoding. */
static void roundtrip(const struct fv_block_in *in, struct fv_buf *enc)
{
    struct expect x;
    expect_build(in, &x);
    struct fv_block_meta m;
    fv_buf_reset(enc);
    assert_int_equal(fv_block_encode(in, enc, &m), FV_OK);
    assert_int_equal(m.nrec, x.nrec);
    assert_int_equal(m.nev, in->nev);
    assert_int_equal(m.ndatums, x.nd);
    if (x.nrec + in->nev == 0) {
        assert_int_equal(enc->len, 0);
        expect_free(&x);
        return;
    }
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (size_t i = 0; i < x.nrec; i++) {
        if (x.t[i] < lo) lo = x.t[i];
        if (x.t[i] > hi) hi = x.t[i];
    }
    for (size_t i = 0; i < in->nev; i++) {
        if (in->ev[i].t < lo) lo = in->ev[i].t;
        if (in->ev[i].t > hi) hi = in->ev[i].t;
    }
    assert_int_equal(m.min_t, lo);
    assert_int_equal(m.max_t, hi);

    struct fv_block b;
    char err[256] = "";
    int rc = fv_block_decode(enc->data, enc->len, NULL, 0, 1, &b, err, sizeof err);
    if (rc) printf("decode: %s (%zu bytes)\n", err, enc->len);
    assert_int_equal(rc, FV_OK);
    assert_true(block_matches(&b, &x, NULL, 0));
    assert_true(events_match(&b, in));
    fv_block_free(&b);

    /* Every other field present, plus one that is absent; events skipped. */
    uint32_t sub[64];
    size_t ns = 0;
    for (size_t i = 0; i < x.nd && ns < 62; i++)
        if ((ns == 0 || sub[ns - 1] != x.d[i].field) &&
            (i == 0 || x.d[i - 1].field != x.d[i].field))
            sub[ns++] = x.d[i].field;
    size_t w = 0;
    for (size_t i = 0; i < ns; i += 2)
        sub[w++] = sub[i];
    sub[w++] = 999999;
    rc = fv_block_decode(enc->data, enc->len, sub, w, 0, &b, err, sizeof err);
    if (rc) printf("subset decode: %s\n", err);
    assert_int_equal(rc, FV_OK);
    assert_true(block_matches(&b, &x, sub, w));
    assert_int_equal(b.nev, 0);
    fv_block_free(&b);
    expect_free(&x);
}

/* ---- fixtures ---- */

#define F_SPEED 1
#define F_ODO   2
#define F_GEAR  3
#define F_BOOL  4
#define F_NAME  5
#define F_LOC   6
#define F_DOORS 7
#define F_TIRES 8
#define F_TIME  9
#define F_INVAL 10
#define F_OTHER 11
#define F_UNK   5000

static const char LONGSTR[] =
    "a long string value that is repeated to make the dictionary entry longer than one varint "
    "byte of length: 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz";

/* Frame k (0..5) of the "every kind" fixture. */
static struct fv_datum every[6][14];
static uint32_t every_n[6];

static void build_every(void)
{
    const struct fv_value dbls[6] = {vdbl(12.5, 1),      vdbl(bits_dbl(0x7ff8000000000123ULL), 1),
                                     vdbl(-0.0, 2),      vdbl(INFINITY, 1),
                                     vdbl(-INFINITY, 1), vdbl(4.9e-324, 2)};
    const struct fv_value ints[6] = {vint(FV_VK_INT, 0, 3),         vint(FV_VK_INT, INT64_MIN, 4),
                                     vint(FV_VK_INT, INT64_MAX, 4), vint(FV_VK_INT, -1, 3),
                                     vint(FV_VK_INT, 123456789, 3), vint(FV_VK_INT, 1, 4)};
    const char *strs[6] = {"", "hello", "", "h\xc3\xa9llo w\xc3\xb6rld", LONGSTR, "hello"};
    for (int k = 0; k < 6; k++) {
        uint32_t n = 0;
        every[k][n++] = (struct fv_datum){F_SPEED, dbls[k]};
        every[k][n++] = (struct fv_datum){F_ODO, ints[k]};
        every[k][n++] =
            (struct fv_datum){F_GEAR, vint(FV_VK_ENUM, k * 3 - 2, (uint8_t)(7 + k % 2))};
        every[k][n++] = (struct fv_datum){F_BOOL, vint(FV_VK_BOOL, k & 1, 9)};
        every[k][n++] = (struct fv_datum){F_NAME, vstr(strs[k], 10)};
        every[k][n++] = (struct fv_datum){F_LOC, vloc(37.4 + k * 0.001, -122.1 - k * 0.5, 11)};
        every[k][n++] =
            (struct fv_datum){F_DOORS, vbits(FV_VK_DOORS, k == 5 ? 0xffffffffu : 1u << k, 12)};
        every[k][n++] = (struct fv_datum){F_TIRES, vbits(FV_VK_TIRES, (uint32_t)k * 5, 13)};
        every[k][n++] = (struct fv_datum){F_TIME, vtime(k, k == 3 ? -1 : 59, INT32_MAX - k, 14)};
        every[k][n++] = (struct fv_datum){F_INVAL, vbare(FV_VK_INVALID, 15)};
        every[k][n++] = (struct fv_datum){F_OTHER, vbare(FV_VK_OTHER, (uint8_t)(200 + k))};
        every[k][n++] = (struct fv_datum){F_UNK, vint(FV_VK_INT, k, 0)};
        every[k][n++] = (struct fv_datum){UINT32_MAX, vdbl(k, 0)};
        every_n[k] = n;
    }
}

static void test_every_kind(void **state)
{
    (void)state;
    build_every();
    struct fv_block_frame fr[6];
    for (int k = 0; k < 6; k++)
        fr[k] = (struct fv_block_frame){1700000000000LL + k * 1000, every_n[k], every[k], 0};
    struct fv_block_in in = {.nframes = 6, .frames = fr};
    struct fv_buf enc = {0};
    roundtrip(&in, &enc);
    /* Spot checks against literal values, not only the reference. */
    struct fv_block b;
    char err[256];
    assert_int_equal(fv_block_decode(enc.data, enc.len, NULL, 0, 1, &b, err, sizeof err), FV_OK);
    assert_int_equal(b.ncols, 13);
    const struct fv_block_col *c = fv_block_col(&b, F_SPEED);
    assert_non_null(c);
    uint64_t bits;
    memcpy(&bits, &c->v[1].u.d, 8);
    assert_true(bits == 0x7ff8000000000123ULL);
    assert_true(signbit(c->v[2].u.d) && c->v[2].u.d == 0.0);
    assert_true(isinf(c->v[3].u.d) && c->v[3].u.d > 0);
    assert_int_equal(c->v[2].member, 2);
    c = fv_block_col(&b, F_NAME);
    assert_string_equal(c->v[0].u.s, "");
    assert_string_equal(c->v[4].u.s, LONGSTR);
    c = fv_block_col(&b, F_OTHER);
    assert_int_equal(c->v[5].kind, FV_VK_OTHER);
    assert_int_equal(c->v[5].member, 205);
    c = fv_block_col(&b, F_UNK);
    assert_non_null(c);
    assert_int_equal(c->n, 6);
    assert_non_null(fv_block_col(&b, UINT32_MAX));
    assert_null(fv_block_col(&b, 12));
    assert_int_equal(fv_block_col(&b, F_DOORS)->v[5].u.bits, 0xffffffffu);
    fv_block_free(&b);
    fv_block_free(&b); /* safe twice: free zeroes */
    fv_buf_free(&enc);
}

/* A kind this build does not know is kept as FV_VK_OTHER with its member number. */
static void test_unknown_kind_becomes_other(void **state)
{
    (void)state;
    struct fv_datum d[2] = {{1, vbare(200, 77)}, {2, vdbl(1.0, 1)}};
    struct fv_block_frame fr = {5, 2, d, 0};
    struct fv_block_in in = {.nframes = 1, .frames = &fr};
    struct fv_buf enc = {0};
    struct fv_block_meta m;
    assert_int_equal(fv_block_encode(&in, &enc, &m), FV_OK);
    struct fv_block b;
    char err[256];
    assert_int_equal(fv_block_decode(enc.data, enc.len, NULL, 0, 1, &b, err, sizeof err), FV_OK);
    assert_int_equal(b.cols[0].v[0].kind, FV_VK_OTHER);
    assert_int_equal(b.cols[0].v[0].member, 77);
    fv_block_free(&b);
    fv_buf_free(&enc);
}

/* Signals present in some frames only, and one signal whose kind changes. */
static void test_sparse_signals(void **state)
{
    (void)state;
    enum { N = 300 };
    struct fv_datum *d = xcalloc(N * 3, sizeof *d);
    struct fv_block_frame *fr = xcalloc(N, sizeof *fr);
    for (int i = 0; i < N; i++) {
        uint32_t n = 0;
        struct fv_datum *p = d + 3 * i;
        if (i % 3 == 0) p[n++] = (struct fv_datum){1, vdbl(i * 0.25, 1)};
        if (i % 7 == 0) p[n++] = (struct fv_datum){2, vint(FV_VK_INT, i, 2)};
        if (i == 150 || i % 11 == 0)
            p[n++] = (struct fv_datum){40, i % 2 ? vstr("odd", 1) : vdbl(i, 2)};
        if (n == 0) p[n++] = (struct fv_datum){3, vint(FV_VK_BOOL, 1, 0)};
        fr[i] = (struct fv_block_frame){1000 + i * 10, n, p, 0};
    }
    struct fv_block_in in = {.nframes = N, .frames = fr};
    struct fv_buf enc = {0};
    roundtrip(&in, &enc);
    fv_buf_free(&enc);
    free(d);
    free(fr);
}

/* A signal repeated within one frame: the last one wins (and counts once). */
static void test_repeated_field_last_wins(void **state)
{
    (void)state;
    struct fv_datum a[] = {
        {1, vdbl(1.0, 1)}, {2, vint(FV_VK_INT, 5, 1)}, {1, vdbl(2.0, 1)}, {1, vstr("three", 1)}};
    struct fv_datum b[] = {{2, vint(FV_VK_INT, 6, 1)}, {2, vint(FV_VK_INT, 7, 1)}};
    struct fv_block_frame fr[] = {{10, 4, a, 0}, {20, 2, b, 0}};
    struct fv_block_in in = {.nframes = 2, .frames = fr};
    struct fv_buf enc = {0};
    roundtrip(&in, &enc);
    struct fv_block blk;
    char err[256];
    assert_int_equal(fv_block_decode(enc.data, enc.len, NULL, 0, 1, &blk, err, sizeof err), FV_OK);
    const struct fv_block_col *c1 = fv_block_col(&blk, 1), *c2 = fv_block_col(&blk, 2);
    assert_int_equal(c1->n, 1);
    assert_int_equal(c1->v[0].kind, FV_VK_STRING);
    assert_string_equal(c1->v[0].u.s, "three");
    assert_int_equal(c2->n, 2);
    assert_int_equal(c2->v[1].u.i, 7);
    fv_block_free(&blk);
    fv_buf_free(&enc);
}

static int keep_even(void *arg, uint32_t field)
{
    (void)arg;
    return field % 2 == 0;
}
static int keep_none(void *arg, uint32_t field)
{
    (void)arg;
    (void)field;
    return 0;
}
static int keep_one(void *arg, uint32_t field)
{
    return field == *(const uint32_t *)arg;
}

static void test_keep_filter(void **state)
{
    (void)state;
    build_every();
    struct fv_block_frame fr[6];
    for (int k = 0; k < 6; k++)
        fr[k] = (struct fv_block_frame){100 + k, every_n[k], every[k], 0};
    struct fv_block_in in = {.nframes = 6, .frames = fr, .keep = keep_even};
    struct fv_buf enc = {0};
    roundtrip(&in, &enc);
    /* Frames without a kept datum are skipped: only frames 1 and 4 carry field 20. */
    struct fv_datum x[] = {{20, vint(FV_VK_INT, 1, 0)}, {21, vint(FV_VK_INT, 2, 0)}};
    struct fv_datum y[] = {{21, vint(FV_VK_INT, 3, 0)}};
    struct fv_block_frame f2[] = {
        {1, 1, y, 0}, {2, 2, x, 0}, {3, 1, y, 0}, {4, 1, y, 0}, {5, 2, x, 0}};
    uint32_t only = 20;
    struct fv_block_in in2 = {.nframes = 5, .frames = f2, .keep = keep_one, .keep_arg = &only};
    struct fv_block_meta m;
    roundtrip(&in2, &enc);
    fv_buf_reset(&enc);
    assert_int_equal(fv_block_encode(&in2, &enc, &m), FV_OK);
    assert_int_equal(m.nrec, 2);
    assert_int_equal(m.min_t, 2);
    assert_int_equal(m.max_t, 5);
    /* Nothing kept, no events: nothing written. */
    struct fv_block_in none = {.nframes = 5, .frames = f2, .keep = keep_none};
    fv_buf_reset(&enc);
    assert_int_equal(fv_buf_append(&enc, "xyz", 3), FV_OK);
    assert_int_equal(fv_block_encode(&none, &enc, &m), FV_OK);
    assert_int_equal(m.nrec + m.nev, 0);
    assert_int_equal(enc.len, 3);
    struct fv_block_in empty = {0};
    assert_int_equal(fv_block_encode(&empty, &enc, &m), FV_OK);
    assert_int_equal(m.nrec + m.nev, 0);
    assert_int_equal(enc.len, 3);
    fv_buf_free(&enc);
}

static const unsigned char PAY[] = {0x0a, 0x00, 0x03, 'a', 'b', 'c', 0x00, 0xff, 0x10};

static void test_events_only(void **state)
{
    (void)state;
    struct fv_block_event ev[] = {
        {100, "alerts", 6, PAY, sizeof PAY},
        {100, "errors", 6, PAY + 1, 3},
        {90, "alerts", 6, PAY, 0}, /* events need not be sorted by the decoder */
        {200, "", 0, NULL, 0},
        {300, "x/\0y", 4, PAY, 1},
    };
    struct fv_block_in in = {.nev = 5, .ev = ev};
    struct fv_buf enc = {0};
    roundtrip(&in, &enc);
    struct fv_block_meta m;
    fv_buf_reset(&enc);
    assert_int_equal(fv_block_encode(&in, &enc, &m), FV_OK);
    assert_int_equal(m.nrec, 0);
    assert_int_equal(m.nev, 5);
    assert_int_equal(m.min_t, 90);
    assert_int_equal(m.max_t, 300);
    struct fv_block b;
    char err[256];
    assert_int_equal(fv_block_decode(enc.data, enc.len, NULL, 0, 1, &b, err, sizeof err), FV_OK);
    assert_int_equal(b.nrec, 0);
    assert_int_equal(b.ncols, 0);
    assert_int_equal(b.nev, 5);
    assert_memory_equal(b.ev[4].topic, "x/\0y", 4);
    fv_block_free(&b);
    assert_int_equal(fv_block_decode(enc.data, enc.len, NULL, 0, 0, &b, err, sizeof err), FV_OK);
    assert_int_equal(b.nev, 0);
    fv_block_free(&b);
    fv_buf_free(&enc);
}

static void test_frames_and_events(void **state)
{
    (void)state;
    build_every();
    struct fv_block_frame fr[6];
    for (int k = 0; k < 6; k++)
        fr[k] = (struct fv_block_frame){50 + k * 10, every_n[k], every[k], 0};
    struct fv_block_event ev[] = {{10, "alerts", 6, PAY, sizeof PAY},
                                  {55, "connectivity", 12, PAY, 4},
                                  {500, "alerts", 6, PAY + 2, 5}};
    struct fv_block_in in = {.nframes = 6, .frames = fr, .nev = 3, .ev = ev};
    struct fv_buf enc = {0};
    roundtrip(&in, &enc);
    struct fv_block_meta m;
    fv_buf_reset(&enc);
    assert_int_equal(fv_block_encode(&in, &enc, &m), FV_OK);
    assert_int_equal(m.min_t, 10);
    assert_int_equal(m.max_t, 500);
    fv_buf_free(&enc);
}

/* Selective decoding: a subset (with duplicates and absent fields), none at all, events. */
static void test_selective_decode(void **state)
{
    (void)state;
    build_every();
    struct fv_block_frame fr[6];
    for (int k = 0; k < 6; k++)
        fr[k] = (struct fv_block_frame){k, every_n[k], every[k], 0};
    struct fv_block_event ev[] = {{3, "alerts", 6, PAY, sizeof PAY}};
    struct fv_block_in in = {.nframes = 6, .frames = fr, .nev = 1, .ev = ev};
    struct fv_buf enc = {0};
    struct fv_block_meta m;
    assert_int_equal(fv_block_encode(&in, &enc, &m), FV_OK);
    struct expect x;
    expect_build(&in, &x);
    char err[256];
    struct fv_block b;
    const uint32_t sets[][4] = {{F_UNK, F_SPEED, F_SPEED, 77},
                                {F_NAME, F_NAME, F_NAME, F_NAME},
                                {UINT32_MAX, F_LOC, F_TIME, F_OTHER},
                                {12, 13, 14, 15}};
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++)
        for (int we = 0; we < 2; we++) {
            assert_int_equal(
                fv_block_decode(enc.data, enc.len, sets[s], 4, we, &b, err, sizeof err), FV_OK);
            assert_true(block_matches(&b, &x, sets[s], 4));
            assert_int_equal(b.nev, we ? 1 : 0);
            fv_block_free(&b);
        }
    /* fields non-NULL with nfields 0: no columns, still every frame time. */
    uint32_t dummy = F_SPEED;
    assert_int_equal(fv_block_decode(enc.data, enc.len, &dummy, 0, 1, &b, err, sizeof err), FV_OK);
    assert_int_equal(b.ncols, 0);
    assert_int_equal(b.nrec, 6);
    assert_int_equal(b.nev, 1);
    fv_block_free(&b);
    expect_free(&x);
    fv_buf_free(&enc);
}

/* Equal timestamps: kept in input order; also a block of 8192 frames at one instant with a
 * constant value (the smallest possible encoding of 8192 frames). */
static void test_equal_timestamps(void **state)
{
    (void)state;
    struct fv_datum d[4] = {
        {1, vdbl(1.5, 1)}, {1, vdbl(2.5, 1)}, {2, vint(FV_VK_INT, 9, 1)}, {1, vdbl(3.5, 1)}};
    struct fv_block_frame fr[4] = {
        {7, 1, d, 0}, {7, 1, d + 1, 0}, {7, 1, d + 2, 0}, {8, 1, d + 3, 0}};
    struct fv_block_in in = {.nframes = 4, .frames = fr};
    struct fv_buf enc = {0};
    roundtrip(&in, &enc);

    enum { N = 8192 };
    struct fv_datum one = {1, vint(FV_VK_INT, 42, 1)};
    struct fv_block_frame *many = xcalloc(N, sizeof *many);
    for (size_t i = 0; i < N; i++)
        many[i] = (struct fv_block_frame){1700000000000LL, 1, &one, 0};
    struct fv_block_in in2 = {.nframes = N, .frames = many};
    roundtrip(&in2, &enc);
    free(many);
    fv_buf_free(&enc);
}

/* 8192 events at one instant with one topic and empty payloads. */
static void test_many_identical_events(void **state)
{
    (void)state;
    enum { N = 8192 };
    struct fv_block_event *ev = xcalloc(N, sizeof *ev);
    for (size_t i = 0; i < N; i++)
        ev[i] = (struct fv_block_event){1700000000000LL, "connectivity", 12, PAY, 0};
    struct fv_block_in in = {.nev = N, .ev = ev};
    struct fv_buf enc = {0};
    roundtrip(&in, &enc);
    free(ev);
    fv_buf_free(&enc);
}

static void test_one_frame(void **state)
{
    (void)state;
    struct fv_datum d = {3, vdbl(-12.75, 2)};
    struct fv_block_frame fr = {INT64_MIN, 1, &d, 0};
    struct fv_block_in in = {.nframes = 1, .frames = &fr};
    struct fv_buf enc = {0};
    roundtrip(&in, &enc);
    fr.t = INT64_MAX;
    roundtrip(&in, &enc);
    fr.t = -5;
    roundtrip(&in, &enc);
    fv_buf_free(&enc);
}

/* 8192 frames of realistic telemetry (the store's block size). */
static void test_8192_frames(void **state)
{
    (void)state;
    enum { N = 8192, PER = 6 };
    static const char *const states[] = {"PARKED", "DRIVING", "CHARGING"};
    struct fv_datum *d = xcalloc((size_t)N * PER, sizeof *d);
    struct fv_block_frame *fr = xcalloc(N, sizeof *fr);
    struct rng g;
    rng_seed(&g, 8192);
    double speed = 0;
    int64_t t = 1700000000000LL, odo = 123456;
    for (size_t i = 0; i < N; i++) {
        struct fv_datum *p = d + i * PER;
        uint32_t n = 0;
        speed += (double)((int)rnd_below(&g, 21) - 10) / 10.0;
        odo += (int64_t)rnd_below(&g, 3);
        p[n++] = (struct fv_datum){1, vdbl(speed, 1)};
        p[n++] = (struct fv_datum){2, vint(FV_VK_INT, odo, 2)};
        p[n++] = (struct fv_datum){3, vstr(states[i / 1000 % 3], 1)};
        if (i % 5 == 0)
            p[n++] =
                (struct fv_datum){27, vloc(37.0 + (double)i * 1e-5, -122.0 - (double)i * 2e-5, 5)};
        if (i % 100 == 0) p[n++] = (struct fv_datum){7, vbits(FV_VK_DOORS, (uint32_t)i & 0xf, 9)};
        p[n++] = (struct fv_datum){4, vint(FV_VK_ENUM, (int64_t)(i / 2000), 6)};
        fr[i] = (struct fv_block_frame){t, n, p, 0};
        t += 1000 + (int64_t)rnd_below(&g, 5);
    }
    struct fv_block_in in = {.nframes = N, .frames = fr};
    struct fv_buf enc = {0};
    roundtrip(&in, &enc);
    printf("8192 frames, %zu bytes plaintext (%.2f bytes/datum)\n", enc.len,
           (double)enc.len / (N * 5.2));
    free(d);
    free(fr);
    fv_buf_free(&enc);
}

/* ---- property test ---- */

static const char *const POOL[] = {"", "a", "b", "PARKED", "DRIVING", "h\xc3\xa9", "0", LONGSTR};

static void rand_value(struct rng *g, struct fv_value *v, int kind_hint)
{
    int kind = kind_hint;
    if (rnd_below(g, 8) == 0) kind = 1 + (int)rnd_below(g, FV_VK_OTHER);
    uint8_t member = (uint8_t)rnd_below(g, 4) * (uint8_t)rnd_below(g, 80);
    switch (kind) {
    case FV_VK_DOUBLE: {
        static const uint64_t special[] = {0x7ff8000000000000ULL, 0xfff0000000000000ULL,
                                           0x8000000000000000ULL, 0x0000000000000001ULL,
                                           0x7fefffffffffffffULL, 0x7ff0000000000001ULL};
        uint64_t r = rnd_below(g, 10);
        if (r == 0)
            *v = vdbl(bits_dbl(special[rnd_below(g, 6)]), member);
        else if (r == 1)
            *v = vdbl(bits_dbl(rnd(g)), member);
        else
            *v = vdbl((double)((int64_t)rnd_below(g, 200000) - 100000) / (r < 5 ? 10.0 : 1000.0),
                      member);
        break;
    }
    case FV_VK_INT:
    case FV_VK_ENUM:
    case FV_VK_BOOL: {
        uint64_t r = rnd_below(g, 6);
        int64_t i = r == 0 ? (int64_t)rnd(g) : r == 1 ? INT64_MIN : (int64_t)rnd_below(g, 100) - 3;
        if (kind == FV_VK_BOOL) i = (int64_t)rnd_below(g, 2);
        *v = vint((uint8_t)kind, i, member);
        break;
    }
    case FV_VK_STRING:
        *v = vstr(POOL[rnd_below(g, sizeof POOL / sizeof POOL[0])], member);
        break;
    case FV_VK_LOCATION:
        *v = vloc((double)((int64_t)rnd_below(g, 180000000) - 90000000) / 1e6,
                  rnd_below(g, 10) ? (double)((int64_t)rnd_below(g, 360000) - 180000) / 1e3
                                   : bits_dbl(rnd(g)),
                  member);
        break;
    case FV_VK_DOORS:
    case FV_VK_TIRES:
        *v = vbits((uint8_t)kind, rnd_below(g, 3) ? (uint32_t)rnd_below(g, 16) : (uint32_t)rnd(g),
                   member);
        break;
    case FV_VK_TIME:
        *v = vtime((int32_t)rnd_below(g, 24), (int32_t)rnd_below(g, 60),
                   rnd_below(g, 5) ? (int32_t)rnd_below(g, 60) : (int32_t)rnd(g), member);
        break;
    default:
        *v = vbare((uint8_t)kind, member);
    }
}

static uint64_t base_seed(void)
{
    const char *e = getenv("FV_BLOCK_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
    printf("block property seed %" PRIu64 " (replay: FV_BLOCK_SEED=%" PRIu64 ")\n", seed, seed);
    return seed;
}

static const uint32_t FIELD_POOL[] = {0,  1,   2,   3,   4,    5,    6,     7,         8,
                                      27, 100, 127, 128, 1023, 5000, 70000, UINT32_MAX};
#define NPOOL (sizeof FIELD_POOL / sizeof FIELD_POOL[0])

static void test_property(void **state)
{
    (void)state;
    uint64_t seed0 = base_seed();
    enum { SEEDS = 400 };
    struct fv_buf enc = {0};
    for (uint64_t k = 0; k < SEEDS; k++) {
        struct rng g;
        rng_seed(&g, seed0 + k);
        size_t nfr = rnd_below(&g, 4) == 0 ? rnd_below(&g, 4) : rnd_below(&g, 600);
        size_t nev = rnd_below(&g, 3) == 0 ? rnd_below(&g, 20) : 0;
        int kind_of[NPOOL];
        uint32_t density[NPOOL];
        for (size_t f = 0; f < NPOOL; f++) {
            kind_of[f] = 1 + (int)rnd_below(&g, FV_VK_OTHER);
            density[f] = (uint32_t)rnd_below(&g, 101);
        }
        struct fv_block_frame *fr = xcalloc(nfr, sizeof *fr);
        struct fv_datum *d = xcalloc(nfr * (NPOOL + 3), sizeof *d);
        struct fv_block_event *ev = xcalloc(nev, sizeof *ev);
        int64_t t = rnd_below(&g, 4) == 0 ? (int64_t)rnd(&g) / 4 : 1700000000000LL;
        size_t at = 0;
        for (size_t i = 0; i < nfr; i++) {
            uint32_t n = 0;
            struct fv_datum *p = d + at;
            for (size_t f = 0; f < NPOOL; f++)
                if (rnd_below(&g, 100) < density[f]) {
                    p[n].field = FIELD_POOL[f];
                    rand_value(&g, &p[n].value, kind_of[f]);
                    n++;
                }
            for (int rep = 0; n && rep < 3 && rnd_below(&g, 10) == 0; rep++) {
                p[n].field = p[rnd_below(&g, n)].field; /* a repeat: the last wins */
                rand_value(&g, &p[n].value, kind_of[0]);
                n++;
            }
            at += n;
            fr[i] = (struct fv_block_frame){t, n, p, 0};
            uint64_t r = rnd_below(&g, 10);
            t += r < 2   ? 0
                 : r < 9 ? (int64_t)rnd_below(&g, 2000)
                         : (int64_t)rnd_below(&g, 1u << 30);
        }
        for (size_t i = 0; i < nev; i++)
            ev[i] = (struct fv_block_event){(int64_t)rnd_below(&g, 1000000),
                                            i % 2 ? "alerts" : "errors", 6, PAY,
                                            (uint32_t)rnd_below(&g, sizeof PAY + 1)};
        uint32_t only = FIELD_POOL[rnd_below(&g, NPOOL)];
        uint64_t kk = rnd_below(&g, 4);
        struct fv_block_in in = {.nframes = nfr,
                                 .frames = fr,
                                 .nev = nev,
                                 .ev = ev,
                                 .keep = kk == 0   ? keep_even
                                         : kk == 1 ? keep_one
                                                   : NULL,
                                 .keep_arg = &only};
        roundtrip(&in, &enc);
        /* A random subset of fields. */
        if (enc.len) {
            uint32_t sub[8];
            size_t ns = rnd_below(&g, 8);
            for (size_t i = 0; i < ns; i++)
                sub[i] = FIELD_POOL[rnd_below(&g, NPOOL)];
            struct expect x;
            expect_build(&in, &x);
            struct fv_block b;
            char err[256];
            int we = (int)rnd_below(&g, 2);
            assert_int_equal(fv_block_decode(enc.data, enc.len, sub, ns, we, &b, err, sizeof err),
                             FV_OK);
            if (!block_matches(&b, &x, sub, ns)) fail_msg("seed %" PRIu64, seed0 + k);
            if (we && !events_match(&b, &in)) fail_msg("seed %" PRIu64, seed0 + k);
            fv_block_free(&b);
            expect_free(&x);
        }
        free(fr);
        free(d);
        free(ev);
    }
    fv_buf_free(&enc);
}

/* ---- the reader's limits (issue 8 A2) ---- */

/* The encoder never writes what the decoder refuses: for random inputs around the limits
 * (kept signals per block near FV_BLOCK_MAX_COLS, event bytes near FV_BLOCK_MAX_RAW, frames
 * sometimes out of time order), fv_block_encode either succeeds and the block round-trips,
 * or refuses (FV_ELIMIT beyond a limit, FV_EINVAL out of order) leaving out unchanged. Before
 * the fix a frame of 70,000 signals encoded "fine" into a block no reader opens. */
static unsigned char MEGA[1000000];

static void test_limits_property(void **state)
{
    (void)state;
    uint64_t seed0 = base_seed();
    enum { SEEDS = 16 };
    struct fv_buf enc = {0}, again = {0};
    int refused = 0, accepted = 0;
    for (uint64_t k = 0; k < SEEDS; k++) {
        struct rng g;
        rng_seed(&g, seed0 + k);
        int shape = (int)(k % 3); /* 0: wide frames, 1: big events, 2: order */
        size_t ncols = shape == 0 ? 60000 + rnd_below(&g, 12000) : 1 + rnd_below(&g, 50);
        size_t nfr = 1 + rnd_below(&g, 4);
        size_t nev = shape == 1 ? 60 + rnd_below(&g, 15) : 0;
        uint32_t stride = 1 + (uint32_t)rnd_below(&g, 3), base = (uint32_t)rnd_below(&g, 1000);
        struct fv_block_frame *fr = xcalloc(nfr, sizeof *fr);
        struct fv_datum *d = xcalloc(ncols * 2, sizeof *d);
        struct fv_block_event *ev = xcalloc(nev, sizeof *ev);
        /* Each signal goes to one frame, sometimes to a second one too. */
        size_t *cnt = xcalloc(nfr, sizeof *cnt), nd = 0;
        uint8_t *home = xcalloc(ncols, 1), *twice = xcalloc(ncols, 1);
        for (size_t c = 0; c < ncols; c++) {
            home[c] = (uint8_t)rnd_below(&g, nfr);
            twice[c] = nfr > 1 && rnd_below(&g, 8) == 0;
            cnt[home[c]]++;
            if (twice[c]) cnt[(home[c] + 1) % nfr]++;
        }
        size_t *at = xcalloc(nfr, sizeof *at);
        for (size_t i = 0, off = 0; i < nfr; i++) {
            at[i] = off;
            fr[i] = (struct fv_block_frame){1700000000000LL + (int64_t)i * 1000, 0, d + off, 1};
            off += cnt[i];
        }
        for (size_t c = 0; c < ncols; c++)
            for (int r = 0; r <= twice[c]; r++) {
                size_t f = (home[c] + (size_t)r) % nfr;
                d[at[f] + fr[f].n++] = (struct fv_datum){
                    base + (uint32_t)c * stride, vint(FV_VK_INT, (int64_t)rnd(&g) >> 40, 0)};
                nd++;
            }
        if (shape == 2 && nfr > 1 && rnd_below(&g, 2)) fr[nfr - 1].t = fr[0].t - 1;
        for (size_t i = 0; i < nev; i++)
            ev[i] = (struct fv_block_event){(int64_t)i, "alerts", 6, MEGA, sizeof MEGA};
        uint32_t only = base;
        int filtered = rnd_below(&g, 3) == 0;
        struct fv_block_in in = {.nframes = nfr,
                                 .frames = fr,
                                 .nev = nev,
                                 .ev = ev,
                                 .keep = filtered ? keep_even : NULL,
                                 .keep_arg = &only};
        /* What the limits say, computed naively. */
        int unordered = 0;
        int64_t last = INT64_MIN;
        for (size_t i = 0; i < nfr; i++) {
            int has = 0;
            for (uint32_t j = 0; j < fr[i].n; j++)
                has |= !filtered || fr[i].d[j].field % 2 == 0;
            if (!has) continue;
            unordered |= fr[i].t < last;
            last = fr[i].t;
        }
        size_t kept = 0;
        for (size_t c = 0; c < ncols; c++)
            kept += !filtered || (base + c * stride) % 2 == 0;
        uint64_t evbytes = (uint64_t)nev * sizeof MEGA;
        int over_cols = kept > FV_BLOCK_MAX_COLS;
        int near_raw = evbytes + (1u << 20) > FV_BLOCK_MAX_RAW && evbytes < FV_BLOCK_MAX_RAW;
        int over_raw = evbytes >= FV_BLOCK_MAX_RAW;
        fv_buf_reset(&enc);
        assert_int_equal(fv_buf_append(&enc, "prefix", 6), FV_OK);
        struct fv_block_meta m;
        int rc = fv_block_encode(&in, &enc, &m);
        if (rc != FV_OK) {
            refused++;
            assert_int_equal(enc.len, 6); /* out unchanged */
            if (unordered)
                assert_int_equal(rc, FV_EINVAL);
            else if (!near_raw) {
                assert_int_equal(rc, FV_ELIMIT);
                assert_true(over_cols || over_raw);
            }
        } else if (m.nrec + m.nev == 0) {
            assert_int_equal(kept + nev, 0); /* nothing kept: nothing written */
            assert_int_equal(enc.len, 6);
        } else {
            accepted++;
            assert_false(unordered || over_cols || over_raw);
            struct fv_block b;
            char err[256] = "";
            int drc = fv_block_decode(enc.data + 6, enc.len - 6, NULL, 0, 1, &b, err, sizeof err);
            if (drc)
                fail_msg("seed %" PRIu64 ": encoded %zu columns, %zu bytes; decode: %s", seed0 + k,
                         kept, enc.len - 6, err);
            assert_int_equal(b.ncols, kept);
            fv_block_free(&b);
            if (nev == 0) roundtrip(&in, &again);
        }
        free(fr);
        free(d);
        free(ev);
        free(cnt);
        free(home);
        free(twice);
        free(at);
    }
    printf("limits property: %d blocks accepted, %d refused\n", accepted, refused);
    fv_buf_free(&enc);
    fv_buf_free(&again);
}

/* ---- corruption ---- */

/* A successfully decoded block must be internally consistent. */
static void check_consistent(const struct fv_block *b, const unsigned char *p, size_t n)
{
    for (size_t i = 1; i < b->nrec; i++)
        assert_true(b->t[i] >= b->t[i - 1]);
    for (size_t c = 0; c < b->ncols; c++) {
        const struct fv_block_col *col = &b->cols[c];
        if (c) assert_true(col->field > b->cols[c - 1].field);
        assert_true(col->n >= 1 && col->n <= b->nrec);
        for (size_t r = 0; r < col->n; r++) {
            assert_true(col->row[r] < b->nrec);
            if (r) assert_true(col->row[r] > col->row[r - 1]);
            assert_true(col->v[r].kind <= FV_VK_OTHER);
            if (col->v[r].kind == FV_VK_STRING) {
                assert_non_null(col->v[r].u.s);
                (void)strlen(col->v[r].u.s);
            }
        }
    }
    for (size_t e = 0; e < b->nev; e++) {
        const struct fv_block_event *ev = &b->ev[e];
        if (ev->topic_len)
            assert_true((const unsigned char *)ev->topic >= p &&
                        (const unsigned char *)ev->topic + ev->topic_len <= p + n);
        if (ev->len) assert_true(ev->payload >= p && ev->payload + ev->len <= p + n);
    }
}

static void build_corruption_input(struct fv_buf *enc)
{
    build_every();
    static struct fv_block_frame fr[12];
    for (int k = 0; k < 12; k++)
        fr[k] = (struct fv_block_frame){1000 + k * 7, k % 2 ? every_n[k % 6] : 5, every[k % 6], 0};
    static struct fv_block_event ev[] = {{1003, "alerts", 6, PAY, sizeof PAY},
                                         {1050, "errors", 6, PAY + 3, 4}};
    struct fv_block_in in = {.nframes = 12, .frames = fr, .nev = 2, .ev = ev};
    struct fv_block_meta m;
    fv_buf_reset(enc);
    assert_int_equal(fv_block_encode(&in, enc, &m), FV_OK);
}

static void test_every_truncation_fails(void **state)
{
    (void)state;
    struct fv_buf enc = {0};
    build_corruption_input(&enc);
    const uint32_t sub[] = {F_NAME, F_TIME};
    for (size_t cut = 0; cut < enc.len; cut++) {
        /* An exact-size copy, so ASan sees any read past the end. */
        unsigned char *p = malloc(cut ? cut : 1);
        assert_non_null(p);
        memcpy(p, enc.data, cut);
        struct fv_block b;
        char err[256] = "";
        int rc = fv_block_decode(p, cut, NULL, 0, 1, &b, err, sizeof err);
        if (rc != FV_ECORRUPT) fail_msg("cut at %zu of %zu: rc %d", cut, enc.len, rc);
        assert_true(err[0] != '\0');
        assert_int_equal(b.nrec + b.ncols + b.nev, 0); /* out is safe to free */
        fv_block_free(&b);
        /* Skipping events or columns may succeed on a cut block, but must not crash. */
        rc = fv_block_decode(p, cut, sub, 2, 0, &b, err, sizeof err);
        assert_true(rc == FV_ECORRUPT || rc == FV_OK);
        if (rc == FV_OK) check_consistent(&b, p, cut);
        fv_block_free(&b);
        free(p);
    }
    fv_buf_free(&enc);
}

static void test_byte_flips_never_crash(void **state)
{
    (void)state;
    struct fv_buf enc = {0};
    build_corruption_input(&enc);
    struct rng g;
    rng_seed(&g, 99);
    const uint8_t masks[] = {0x01, 0x02, 0x10, 0x40, 0x80, 0xff};
    unsigned char *p = malloc(enc.len);
    assert_non_null(p);
    size_t ok = 0, bad = 0;
    for (size_t pos = 0; pos < enc.len; pos++)
        for (size_t m = 0; m < sizeof masks + 2; m++) {
            memcpy(p, enc.data, enc.len);
            p[pos] ^= m < sizeof masks ? masks[m] : (uint8_t)(1 + rnd_below(&g, 255));
            const uint32_t sub[] = {F_SPEED, F_LOC, F_UNK};
            for (int mode = 0; mode < 2; mode++) {
                struct fv_block b;
                char err[256] = "";
                int rc = mode == 0 ? fv_block_decode(p, enc.len, NULL, 0, 1, &b, err, sizeof err)
                                   : fv_block_decode(p, enc.len, sub, 3, 0, &b, err, sizeof err);
                if (rc != FV_OK && rc != FV_ECORRUPT)
                    fail_msg("flip at %zu: rc %d (%s)", pos, rc, err);
                if (rc == FV_OK) {
                    check_consistent(&b, p, enc.len);
                    ok++;
                } else {
                    assert_true(err[0] != '\0');
                    bad++;
                }
                fv_block_free(&b);
            }
        }
    printf("byte flips: %zu decoded, %zu rejected\n", ok, bad);
    /* Multi-byte damage: random runs of random bytes. */
    for (int i = 0; i < 3000; i++) {
        memcpy(p, enc.data, enc.len);
        size_t at = rnd_below(&g, enc.len), len = 1 + rnd_below(&g, 8);
        for (size_t k = at; k < at + len && k < enc.len; k++)
            p[k] = (unsigned char)rnd(&g);
        struct fv_block b;
        char err[256];
        int rc = fv_block_decode(p, enc.len, NULL, 0, 1, &b, err, sizeof err);
        assert_true(rc == FV_OK || rc == FV_ECORRUPT);
        if (rc == FV_OK) check_consistent(&b, p, enc.len);
        fv_block_free(&b);
    }
    free(p);
    fv_buf_free(&enc);
}

/* Correlated double columns (codec.h, LINKED): a pack's voltage that sags with its current,
 * an AC power that is amps times a constant, next to an uncorrelated column. The block holds
 * them in much less than the columns' blocks apart (the old encoder, which predicted no
 * column from another, wrote the sum); every value comes back bit for bit, also when only a
 * predicted column is asked for (its reference is decoded on the side, never returned); and
 * damage to such a block is refused or decodes consistently, never crashes. */
enum { L_N = 400, L_CUR = 6, L_VOLT = 7, L_AMPS = 9, L_KW = 10, L_NOISE = 11, L_F = 5 };
static void linked_input(struct fv_datum *d, struct fv_block_frame *fr)
{
    struct rng g;
    rng_seed(&g, 4242);
    double cur = 20, amps = 16;
    for (int i = 0; i < L_N; i++) {
        cur += (double)((int)rnd_below(&g, 61) - 30) / 10.0; /* A, steps of 0.1 */
        if (rnd_below(&g, 10) == 0) amps = (double)rnd_below(&g, 48);
        double ocv = 396.0 - i * 0.01;
        struct fv_datum *f = d + i * L_F;
        f[0] = (struct fv_datum){.field = L_CUR, .value = vdbl(round(cur * 10) / 10, 5)};
        f[1] = (struct fv_datum){.field = L_VOLT,
                                 .value = vdbl(round((ocv - cur * 0.085) * 100) / 100, 5)};
        f[2] = (struct fv_datum){.field = L_AMPS, .value = vdbl(amps, 5)};
        f[3] = (struct fv_datum){.field = L_KW, .value = vdbl(round(amps * 24.0) / 100, 5)};
        f[4] = (struct fv_datum){.field = L_NOISE,
                                 .value = vdbl((double)rnd_below(&g, 100000) / 100, 5)};
        fr[i] = (struct fv_block_frame){1795000000000LL + i * 1000, L_F, f, 1};
    }
}

static uint32_t linked_only; /* keep_linked's field */
static int keep_linked(void *arg, uint32_t field)
{
    (void)arg;
    return field == linked_only;
}

static void test_linked_columns(void **state)
{
    (void)state;
    struct fv_datum *d = xcalloc(L_N * L_F, sizeof *d);
    struct fv_block_frame *fr = xcalloc(L_N, sizeof *fr);
    linked_input(d, fr);
    struct fv_block_in in = {.nframes = L_N, .frames = fr};
    struct fv_buf enc = {0}, one = {0};
    struct fv_block_meta m;
    assert_int_equal(fv_block_encode(&in, &enc, &m), FV_OK);
    const uint32_t fields[] = {L_CUR, L_VOLT, L_AMPS, L_KW, L_NOISE};
    size_t alone[5];
    for (size_t k = 0; k < 5; k++) {
        struct fv_block_in in1 = {.nframes = L_N, .frames = fr, .keep = keep_linked};
        linked_only = fields[k];
        fv_buf_reset(&one);
        assert_int_equal(fv_block_encode(&in1, &one, &m), FV_OK);
        alone[k] = one.len;
    }
    printf("linked block %zu bytes; alone: current %zu, voltage %zu, amps %zu, kW %zu, "
           "noise %zu\n",
           enc.len, alone[0], alone[1], alone[2], alone[3], alone[4]);
    /* what LINKED saves on these columns is checked in test_codec; here: less than apart */
    assert_true(enc.len < alone[0] + alone[1] + alone[2] + alone[3] + alone[4]);
    struct expect x;
    expect_build(&in, &x);
    char err[256];
    struct fv_block b;
    const uint32_t *sets[] = {NULL, (const uint32_t[]){L_VOLT}, (const uint32_t[]){L_KW},
                              (const uint32_t[]){L_VOLT, L_NOISE}};
    const size_t nset[] = {0, 1, 1, 2};
    for (size_t s = 0; s < 4; s++) {
        assert_int_equal(
            fv_block_decode(enc.data, enc.len, sets[s], nset[s], 0, &b, err, sizeof err), FV_OK);
        assert_true(block_matches(&b, &x, sets[s], nset[s]));
        fv_block_free(&b);
    }
    /* damage: truncations and byte flips */
    unsigned char *p = malloc(enc.len);
    assert_non_null(p);
    for (size_t pos = 0; pos < enc.len; pos++)
        for (int mask = 1; mask < 256; mask <<= 3) {
            memcpy(p, enc.data, enc.len);
            p[pos] ^= (unsigned char)mask;
            for (size_t s = 0; s < 4; s++) {
                int rc = fv_block_decode(p, enc.len, sets[s], nset[s], 1, &b, err, sizeof err);
                assert_true(rc == FV_OK || rc == FV_ECORRUPT);
                if (rc == FV_OK) check_consistent(&b, p, enc.len);
                fv_block_free(&b);
            }
            int rc = fv_block_decode(p, pos, NULL, 0, 1, &b, err, sizeof err);
            assert_int_equal(rc, FV_ECORRUPT);
            fv_block_free(&b);
        }
    free(p);
    expect_free(&x);
    fv_buf_free(&enc);
    fv_buf_free(&one);
    free(d);
    free(fr);
}

/* Hand-made malformed blocks (one validity rule each). */
static void test_malformed_blocks(void **state)
{
    (void)state;
    struct {
        const char *what;
        unsigned char b[16];
        size_t n;
    } cases[] = {
        {"empty", {0}, 0},
        {"version 3", {3, 0, 0, 0}, 4},
        {"version 2 without events", {2, 0, 0, 0}, 4},
        {"nrec past the end", {1, 5}, 2},
        {"times out of order", {1, 2, 2, 4, 1, 1}, 6}, /* DELTA: 2, then -1 */
        {"ncols huge", {1, 0, 0x80, 0x80, 0x04, 0}, 6},
        {"trailing bytes", {1, 0, 0, 0, 0}, 5},
        {"nev huge", {1, 0, 0, 0x7f}, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char *p = malloc(cases[i].n ? cases[i].n : 1);
        memcpy(p, cases[i].b, cases[i].n);
        struct fv_block b;
        char err[256] = "";
        int rc = fv_block_decode(p, cases[i].n, NULL, 0, 1, &b, err, sizeof err);
        if (rc != FV_ECORRUPT) fail_msg("%s: rc %d", cases[i].what, rc);
        fv_block_free(&b);
        free(p);
    }
    /* The smallest valid block: no frames, no columns, no events... is never written, but
     * decodes. */
    unsigned char ok[] = {1, 0, 0, 0};
    struct fv_block b;
    char err[256];
    assert_int_equal(fv_block_decode(ok, sizeof ok, NULL, 0, 1, &b, err, sizeof err), FV_OK);
    fv_block_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind),
        cmocka_unit_test(test_unknown_kind_becomes_other),
        cmocka_unit_test(test_sparse_signals),
        cmocka_unit_test(test_repeated_field_last_wins),
        cmocka_unit_test(test_keep_filter),
        cmocka_unit_test(test_events_only),
        cmocka_unit_test(test_frames_and_events),
        cmocka_unit_test(test_selective_decode),
        cmocka_unit_test(test_equal_timestamps),
        cmocka_unit_test(test_many_identical_events),
        cmocka_unit_test(test_one_frame),
        cmocka_unit_test(test_8192_frames),
        cmocka_unit_test(test_property),
        cmocka_unit_test(test_limits_property),
        cmocka_unit_test(test_every_truncation_fails),
        cmocka_unit_test(test_byte_flips_never_crash),
        cmocka_unit_test(test_malformed_blocks),
        cmocka_unit_test(test_linked_columns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
