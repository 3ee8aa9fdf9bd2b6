/*
 * codec.c - value codecs of the time-series store. The byte format and the decoders' validity
 * rules (D1-D8) are documented in codec.h, which this file implements.
 *
 * Encoding an integer column takes two cheap passes and one write: i64_sizes() computes the
 * exact size of every scheme in one pass (per 128-value frame: the OR of the values, whose bit
 * width is the frame's width) plus a pass for FOR's per-frame maxima once the minimum is known;
 * then only the winner is written, into space reserved once. Decoding is a small state
 * machine (struct i64_dec) that yields values in chunks, so the double and string decoders
 * can consume mantissas and indices 128 at a time from a stack buffer instead of allocating.
 *
 * The string decoder needs the dictionary while it maps indices, but may not allocate: it
 * keeps entry k as a pointer to its length varint in s[k] and the indices in len[], then fills
 * the outputs from the last to the first. First-seen order (D8) guarantees index(i) <= i, so
 * s[index(i)] has not been overwritten yet when position i is filled.
 *
 * Invariants: all arithmetic on values is done on uint64_t (wraps, no undefined behaviour);
 * conversions back to int64_t go through to_i64(); a reader's off never exceeds its n.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/codec.h"
#include "util/err.h"

#define FRAME      128 /* values per bit-packing frame */
#define N_I64      7   /* integer schemes */
#define PLANES_MIN 64  /* values a column needs before PLANES is considered */
/* What a plane is estimated to cost beyond its entropy (zstd's Huffman table and headers);
 * PLANES is written when its estimate plus an eighth is below every other scheme's size
 * (both tuned on bench/store's data with build/store_colbytes: 200 vehicles x 500 s, blocks
 * -4.3% on exact timestamps, -2.8% with 20 ms jitter). */
#define PLANE_OVERHEAD 32
#define PLANES_MAX_W   4   /* widest deltas (bytes) PLANES is written for */
#define SAMPLE         256 /* values tried per exponent when choosing e */
#define MAX_VINT       10  /* bytes of the longest varint */

/* ---- small helpers ---- */

static inline unsigned bit_width(uint64_t x)
{
    return x ? 64u - (unsigned)__builtin_clzll(x) : 0u;
}

static inline size_t uvarint_len(uint64_t v)
{
    return v < 0x80 ? 1 : (bit_width(v) + 6) / 7;
}

/* Size of one packed frame of cnt values whose OR is or_all. */
static inline size_t frame_size(uint64_t or_all, size_t cnt)
{
    return 1 + (bit_width(or_all) * cnt + 7) / 8;
}

/* Two's-complement reinterpretation without implementation-defined conversions. */
static inline int64_t to_i64(uint64_t u)
{
    return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)~u - 1;
}

static inline uint64_t zz_i64(int64_t v)
{
    return fv_zigzag((uint64_t)v);
}

static inline uint64_t dbl_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static inline double bits_dbl(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static inline size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Writes a varint at p (room for MAX_VINT bytes reserved by the caller); returns the end. */
static inline unsigned char *put_uvarint_raw(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* ---- bounded reader ---- */

int fv_put_uvarint(struct fv_buf *b, uint64_t v)
{
    int rc = fv_buf_reserve(b, MAX_VINT);
    if (rc) return rc;
    b->len = (size_t)(put_uvarint_raw(b->data + b->len, v) - b->data);
    return FV_OK;
}

int fv_rd_uvarint(struct fv_rd *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < MAX_VINT; i++) {
        if (r->off >= r->n) return FV_ECORRUPT;
        unsigned c = r->p[r->off++];
        if (i == MAX_VINT - 1 && c > 1) return FV_ECORRUPT; /* bit 64 and above, or an 11th */
        x |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *v = x;
            return FV_OK;
        }
    }
    return FV_ECORRUPT; /* not reached: the 10th byte either ends the varint or fails above */
}

int fv_rd_u8(struct fv_rd *r, uint8_t *v)
{
    if (r->off >= r->n) return FV_ECORRUPT;
    *v = r->p[r->off++];
    return FV_OK;
}

int fv_rd_bytes(struct fv_rd *r, size_t n, const unsigned char **p)
{
    if (n > r->n - r->off) return FV_ECORRUPT;
    *p = r->p + r->off;
    r->off += n;
    return FV_OK;
}

static int rd_zz(struct fv_rd *r, uint64_t *v)
{
    uint64_t u;
    int rc = fv_rd_uvarint(r, &u);
    if (rc) return rc;
    *v = fv_unzigzag(u);
    return FV_OK;
}

/* ---- bit packing ---- */

/* Writes x[0..cnt-1] (cnt <= FRAME) as one frame at p (room reserved); returns the end. */
static unsigned char *put_frame(unsigned char *p, const uint64_t *x, size_t cnt)
{
    uint64_t or_all = 0;
    for (size_t i = 0; i < cnt; i++)
        or_all |= x[i];
    unsigned w = bit_width(or_all);
    *p++ = (unsigned char)w;
    if (w == 0) return p;
    uint64_t acc = 0;
    unsigned fill = 0; /* bits used in acc, always < 64 between values */
    for (size_t i = 0; i < cnt; i++) {
        acc |= x[i] << fill;
        fill += w;
        if (fill >= 64) {
            fv_put_u64(p, acc);
            p += 8;
            fill -= 64;
            /* the value's high bits that did not fit; shift is 64 - old fill, in 1..63 */
            acc = fill ? x[i] >> (w - fill) : 0;
        }
    }
    for (unsigned k = 0; k < fill; k += 8) {
        *p++ = (unsigned char)acc;
        acc >>= 8;
    }
    return p;
}

/* Loads up to 8 bytes LE from p[*at..nb), zero-padded. */
static inline uint64_t load_word(const unsigned char *p, size_t nb, size_t *at)
{
    if (nb - *at >= 8) {
        uint64_t w = fv_get_u64(p + *at);
        *at += 8;
        return w;
    }
    uint64_t w = 0;
    for (unsigned k = 0; *at < nb; k += 8)
        w |= (uint64_t)p[(*at)++] << k;
    return w;
}

/* Unpacks cnt w-bit fields from the nb = ceil(w * cnt / 8) bytes at p into x. */
static void unpack(const unsigned char *p, size_t nb, uint64_t *x, size_t cnt, unsigned w)
{
    if (w == 0) {
        memset(x, 0, cnt * sizeof *x);
        return;
    }
    const uint64_t mask = w == 64 ? UINT64_MAX : (UINT64_C(1) << w) - 1;
    size_t at = 0;
    uint64_t acc = 0;
    unsigned avail = 0; /* unread bits in acc */
    for (size_t i = 0; i < cnt; i++) {
        if (avail >= w) {
            x[i] = acc & mask;
            acc = w == 64 ? 0 : acc >> w;
            avail -= w;
        } else {
            uint64_t word = load_word(p, nb, &at);
            x[i] = (acc | (word << avail)) & mask; /* avail < w <= 64 */
            unsigned used = w - avail;
            acc = used == 64 ? 0 : word >> used;
            avail = 64 - used;
        }
    }
}

/* ---- integer column: sizing ---- */

/* Accumulates one packed sequence's size frame by frame. */
struct packer {
    uint64_t or_all;
    size_t cnt;
    size_t bytes;
};

static inline void packer_add(struct packer *k, uint64_t x)
{
    k->or_all |= x;
    if (++k->cnt == FRAME) {
        k->bytes += frame_size(k->or_all, FRAME);
        k->or_all = 0;
        k->cnt = 0;
    }
}

static inline size_t packer_end(const struct packer *k)
{
    return k->bytes + (k->cnt ? frame_size(k->or_all, k->cnt) : 0);
}

struct i64_stats {
    int64_t min, max;
    size_t size[N_I64]; /* total bytes of each scheme, scheme byte included */
    unsigned planes_w;  /* PLANES, DPLANES: bytes per difference (of the cheaper one) */
    unsigned planes_s;  /* which of the two: FV_CODEC_I64_PLANES or _DPLANES */
    size_t planes_est;  /* its estimated bytes once compressed by the block's zstd */
};

/* zz of v's order-th difference at i >= order (order 1: delta, 2: delta of deltas). */
static inline uint64_t zz_diff(const int64_t *v, size_t i, unsigned order)
{
    uint64_t d = (uint64_t)v[i] - (uint64_t)v[i - 1];
    return fv_zigzag(order == 1 ? d : d - ((uint64_t)v[i - 1] - (uint64_t)v[i - 2]));
}

/* Bytes of zz(difference) needed for every difference of the order. */
static unsigned planes_width(const int64_t *v, size_t n, unsigned order)
{
    uint64_t or_all = 0;
    for (size_t i = order; i < n; i++)
        or_all |= zz_diff(v, i, order);
    unsigned w = (bit_width(or_all) + 7) / 8;
    return w ? w : 1;
}

/* PLANES's exact size and an estimate of what zstd makes of it: the planes' order-0 entropy
 * (zstd codes literals with Huffman tables, close to it) plus a table's cost per plane. The
 * bit-packed schemes are taken to stay as they are (zstd finds little in packed bits). */
static void planes_estimate(const int64_t *v, size_t n, size_t first, struct i64_stats *st)
{
    for (unsigned order = 1; order <= 2; order++) {
        unsigned w = planes_width(v, n, order);
        uint32_t hist[8][256];
        memset(hist, 0, sizeof hist[0] * w);
        for (size_t i = order; i < n; i++) {
            uint64_t z = zz_diff(v, i, order);
            for (unsigned j = 0; j < w; j++)
                hist[j][(z >> (8 * j)) & 0xff]++;
        }
        double bits = 0, m = (double)(n - order);
        for (unsigned j = 0; j < w; j++)
            for (unsigned c = 0; c < 256; c++)
                if (hist[j][c]) bits += (double)hist[j][c] * log2(m / (double)hist[j][c]);
        /* DPLANES also has d1 as a varint */
        size_t head = 1 + first + 1 + (order == 2 ? uvarint_len(zz_diff(v, 1, 1)) : 0);
        unsigned s = order == 1 ? FV_CODEC_I64_PLANES : FV_CODEC_I64_DPLANES;
        size_t est = head + (size_t)(bits / 8) + PLANE_OVERHEAD * w;
        st->size[s] = head + w * (n - order);
        if (est < st->planes_est) {
            st->planes_est = est;
            st->planes_w = w;
            st->planes_s = s;
        }
    }
}

/* Size of FOR given the minimum: one pass over per-frame maxima. */
static size_t for_size(const int64_t *v, size_t n, int64_t min)
{
    size_t bytes = 1 + uvarint_len(zz_i64(min));
    for (size_t at = 0; at < n; at += FRAME) {
        size_t cnt = min_size(FRAME, n - at);
        int64_t fmax = v[at];
        for (size_t i = 1; i < cnt; i++)
            fmax = v[at + i] > fmax ? v[at + i] : fmax;
        bytes += frame_size((uint64_t)fmax - (uint64_t)min, cnt);
    }
    return bytes;
}

/* Computes the exact size of every scheme (n >= 1). */
static void i64_sizes(const int64_t *v, size_t n, struct i64_stats *st)
{
    struct packer dk = {0}, ddk = {0};
    int64_t min = v[0], max = v[0];
    uint64_t prevd = 0, run_val = (uint64_t)v[0], prev_run = 0;
    size_t runs = 1, run_len = 1, rle = 0;
    for (size_t i = 1; i < n; i++) {
        min = v[i] < min ? v[i] : min;
        max = v[i] > max ? v[i] : max;
        uint64_t d = (uint64_t)v[i] - (uint64_t)v[i - 1];
        packer_add(&dk, fv_zigzag(d));
        if (i >= 2) packer_add(&ddk, fv_zigzag(d - prevd));
        prevd = d;
        if (d == 0) {
            run_len++;
            continue;
        }
        rle += uvarint_len(fv_zigzag(run_val - prev_run)) + uvarint_len(run_len);
        prev_run = run_val;
        run_val = (uint64_t)v[i];
        run_len = 1;
        runs++;
    }
    rle += uvarint_len(fv_zigzag(run_val - prev_run)) + uvarint_len(run_len);
    size_t first = uvarint_len(zz_i64(v[0]));
    st->min = min;
    st->max = max;
    st->size[FV_CODEC_I64_CONST] = 1 + first;
    st->size[FV_CODEC_I64_FOR] = min == max ? SIZE_MAX : for_size(v, n, min);
    st->size[FV_CODEC_I64_DELTA] = 1 + first + packer_end(&dk);
    st->size[FV_CODEC_I64_DOD] =
        1 + first + (n >= 2 ? uvarint_len(fv_zigzag((uint64_t)v[1] - (uint64_t)v[0])) : 0) +
        packer_end(&ddk);
    st->size[FV_CODEC_I64_RLE] = 1 + uvarint_len(runs) + rle;
    st->size[FV_CODEC_I64_PLANES] = st->size[FV_CODEC_I64_DPLANES] = SIZE_MAX;
    st->planes_w = 0;
    st->planes_s = FV_CODEC_I64_PLANES;
    st->planes_est = SIZE_MAX;
    if (n >= PLANES_MIN) planes_estimate(v, n, first, st);
}

static unsigned i64_pick(const struct i64_stats *st)
{
    if (st->min == st->max) return FV_CODEC_I64_CONST;
    unsigned best = FV_CODEC_I64_FOR;
    for (unsigned s = FV_CODEC_I64_FOR + 1; s < FV_CODEC_I64_PLANES; s++)
        if (st->size[s] < st->size[best]) best = s;
    /* PLANES pays off on noisy deltas of a few bytes; bounded so that a column's raw size
     * (what the double codec weighs against XOR) never grows much */
    if (st->planes_w <= PLANES_MAX_W && st->planes_est + st->planes_est / 8 < st->size[best])
        best = st->planes_s;
    return best;
}

/* ---- integer column: writing the chosen scheme (room reserved) ---- */

static unsigned char *write_for(unsigned char *p, const int64_t *v, size_t n, int64_t min)
{
    uint64_t x[FRAME];
    p = put_uvarint_raw(p, zz_i64(min));
    for (size_t at = 0; at < n; at += FRAME) {
        size_t cnt = min_size(FRAME, n - at);
        for (size_t i = 0; i < cnt; i++)
            x[i] = (uint64_t)v[at + i] - (uint64_t)min;
        p = put_frame(p, x, cnt);
    }
    return p;
}

/* Packs zz of the order-th difference for i = order..n-1 (order 1: deltas, 2: dods). */
static unsigned char *write_diffs(unsigned char *p, const int64_t *v, size_t n, unsigned order)
{
    uint64_t x[FRAME];
    size_t cnt = 0;
    uint64_t prevd = (uint64_t)v[1] - (uint64_t)v[0]; /* n > order >= 1 here */
    for (size_t i = order; i < n; i++) {
        uint64_t d = (uint64_t)v[i] - (uint64_t)v[i - 1];
        x[cnt++] = fv_zigzag(order == 1 ? d : d - prevd);
        prevd = d;
        if (cnt == FRAME) {
            p = put_frame(p, x, cnt);
            cnt = 0;
        }
    }
    return cnt ? put_frame(p, x, cnt) : p;
}

static unsigned char *write_rle(unsigned char *p, const int64_t *v, size_t n)
{
    size_t runs = 1;
    for (size_t i = 1; i < n; i++)
        runs += v[i] != v[i - 1];
    p = put_uvarint_raw(p, runs);
    uint64_t prev_run = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && v[j] == v[i])
            j++;
        p = put_uvarint_raw(p, fv_zigzag((uint64_t)v[i] - prev_run));
        p = put_uvarint_raw(p, j - i);
        prev_run = (uint64_t)v[i];
        i = j;
    }
    return p;
}

/* zz(difference) byte by byte: plane j holds byte j of every difference of the order, for
 * i = order..n-1 (n > order). */
static unsigned char *write_planes(unsigned char *p, const int64_t *v, size_t n, unsigned w,
                                   unsigned order)
{
    size_t m = n - order;
    *p++ = (unsigned char)w;
    for (size_t i = order; i < n; i++) {
        uint64_t z = zz_diff(v, i, order);
        for (unsigned j = 0; j < w; j++)
            p[j * m + i - order] = (unsigned char)(z >> (8 * j));
    }
    return p + w * m;
}

static unsigned char *write_i64(unsigned char *p, const int64_t *v, size_t n, unsigned scheme,
                                const struct i64_stats *st)
{
    int64_t min = st->min;
    *p++ = (unsigned char)scheme;
    if (scheme == FV_CODEC_I64_FOR) return write_for(p, v, n, min);
    if (scheme == FV_CODEC_I64_RLE) return write_rle(p, v, n);
    p = put_uvarint_raw(p, zz_i64(v[0]));
    if (scheme == FV_CODEC_I64_CONST || n == 1) return p;
    if (scheme == FV_CODEC_I64_DELTA) return write_diffs(p, v, n, 1);
    if (scheme == FV_CODEC_I64_PLANES) return write_planes(p, v, n, st->planes_w, 1);
    p = put_uvarint_raw(p, fv_zigzag((uint64_t)v[1] - (uint64_t)v[0]));
    if (n == 2) return p;
    if (scheme == FV_CODEC_I64_DPLANES) return write_planes(p, v, n, st->planes_w, 2);
    return write_diffs(p, v, n, 2);
}

int fv_enc_i64(struct fv_buf *out, const int64_t *v, size_t n)
{
    if (n == 0) return FV_OK;
    struct i64_stats st;
    i64_sizes(v, n, &st);
    unsigned scheme = i64_pick(&st);
    int rc = fv_buf_reserve(out, st.size[scheme]);
    if (rc) return rc;
    unsigned char *end = write_i64(out->data + out->len, v, n, scheme, &st);
    out->len = (size_t)(end - out->data);
    return FV_OK;
}

/* ---- integer column: decoding ---- */

struct i64_dec {
    struct fv_rd *r;
    unsigned scheme;
    size_t left;        /* values still to yield */
    size_t packed_left; /* packed values not yet loaded into frame */
    uint64_t base;      /* CONST value, FOR minimum */
    uint64_t prev, delta;
    uint64_t runs_left, run_left, run_val;
    size_t fpos, fcnt;
    const unsigned char *planes; /* PLANES: w planes of stride bytes; ppos: next delta */
    size_t stride, ppos;
    unsigned w;
    uint64_t frame[FRAME]; /* decoded values waiting to be yielded */
};

static int dec_init_planes(struct i64_dec *d, size_t n)
{
    int rc = rd_zz(d->r, &d->prev);
    if (rc) return rc;
    d->frame[0] = d->prev;
    d->fcnt = 1;
    if (d->scheme == FV_CODEC_I64_DPLANES && n >= 2) {
        if ((rc = rd_zz(d->r, &d->delta))) return rc;
        d->prev += d->delta;
        d->frame[1] = d->prev;
        d->fcnt = 2;
    }
    d->packed_left = n - d->fcnt;
    if (d->packed_left == 0) return FV_OK;
    uint8_t w;
    if ((rc = fv_rd_u8(d->r, &w))) return rc;
    if (w < 1 || w > 8 || d->packed_left > SIZE_MAX / 8) return FV_ECORRUPT; /* D4 */
    d->w = w;
    d->stride = d->packed_left;
    return fv_rd_bytes(d->r, w * d->stride, &d->planes);
}

static int dec_init_diffs(struct i64_dec *d, size_t n)
{
    int rc = rd_zz(d->r, &d->prev);
    if (rc) return rc;
    d->frame[0] = d->prev;
    d->fcnt = 1;
    if (d->scheme == FV_CODEC_I64_DOD && n >= 2) {
        if ((rc = rd_zz(d->r, &d->delta))) return rc;
        d->prev += d->delta;
        d->frame[1] = d->prev;
        d->fcnt = 2;
    }
    d->packed_left = n - d->fcnt;
    return FV_OK;
}

/* Reads the scheme byte and header of a column of n >= 1 values. */
static int dec_init(struct i64_dec *d, struct fv_rd *r, size_t n)
{
    uint8_t s;
    int rc = fv_rd_u8(r, &s);
    if (rc) return rc;
    *d = (struct i64_dec){.r = r, .scheme = s, .left = n};
    switch (s) {
    case FV_CODEC_I64_CONST:
        return rd_zz(r, &d->base);
    case FV_CODEC_I64_FOR:
        d->packed_left = n;
        return rd_zz(r, &d->base);
    case FV_CODEC_I64_DELTA:
    case FV_CODEC_I64_DOD:
        return dec_init_diffs(d, n);
    case FV_CODEC_I64_PLANES:
    case FV_CODEC_I64_DPLANES:
        return dec_init_planes(d, n);
    case FV_CODEC_I64_RLE:
        if ((rc = fv_rd_uvarint(r, &d->runs_left))) return rc;
        return d->runs_left >= 1 && d->runs_left <= n ? FV_OK : FV_ECORRUPT;
    default:
        return FV_ECORRUPT;
    }
}

/* Loads and reconstructs the next frame of a FOR, DELTA or DOD column. */
static int dec_load_frame(struct i64_dec *d)
{
    size_t cnt = min_size(FRAME, d->packed_left);
    uint8_t w;
    const unsigned char *p;
    if (cnt == 0) return FV_ECORRUPT; /* not reached: left > 0 implies packed values left */
    if (d->scheme == FV_CODEC_I64_PLANES || d->scheme == FV_CODEC_I64_DPLANES) {
        const unsigned char *q = d->planes + d->ppos;
        int dod = d->scheme == FV_CODEC_I64_DPLANES;
        for (size_t i = 0; i < cnt; i++) {
            uint64_t z = q[i];
            for (unsigned j = 1; j < d->w; j++)
                z |= (uint64_t)q[j * d->stride + i] << (8 * j);
            if (dod) d->delta += fv_unzigzag(z);
            d->frame[i] = d->prev += dod ? d->delta : fv_unzigzag(z);
        }
        d->ppos += cnt;
        d->packed_left -= cnt;
        d->fpos = 0;
        d->fcnt = cnt;
        return FV_OK;
    }
    int rc = fv_rd_u8(d->r, &w);
    if (rc) return rc;
    if (w > 64) return FV_ECORRUPT; /* D4 */
    size_t nb = (w * cnt + 7) / 8;
    if ((rc = fv_rd_bytes(d->r, nb, &p))) return rc;
    unpack(p, nb, d->frame, cnt, w);
    if (d->scheme == FV_CODEC_I64_FOR) {
        for (size_t i = 0; i < cnt; i++)
            d->frame[i] += d->base;
    } else if (d->scheme == FV_CODEC_I64_DELTA) {
        for (size_t i = 0; i < cnt; i++)
            d->frame[i] = d->prev += fv_unzigzag(d->frame[i]);
    } else {
        for (size_t i = 0; i < cnt; i++) {
            d->delta += fv_unzigzag(d->frame[i]);
            d->frame[i] = d->prev += d->delta;
        }
    }
    d->packed_left -= cnt;
    d->fpos = 0;
    d->fcnt = cnt;
    return FV_OK;
}

static int dec_next_run(struct i64_dec *d)
{
    uint64_t dv, len;
    int rc;
    if (d->runs_left == 0) return FV_ECORRUPT;
    if ((rc = fv_rd_uvarint(d->r, &dv)) || (rc = fv_rd_uvarint(d->r, &len))) return rc;
    if (len == 0 || len > d->left) return FV_ECORRUPT;
    d->run_val += fv_unzigzag(dv);
    d->run_left = len;
    d->runs_left--;
    return FV_OK;
}

static void fill(int64_t *out, size_t cnt, uint64_t v)
{
    int64_t x = to_i64(v);
    for (size_t i = 0; i < cnt; i++)
        out[i] = x;
}

/* Yields the next cnt (<= d->left) values into out. */
static int dec_next(struct i64_dec *d, int64_t *out, size_t cnt)
{
    int rc;
    while (cnt > 0) {
        size_t take;
        if (d->scheme == FV_CODEC_I64_CONST) {
            take = cnt;
            fill(out, take, d->base);
        } else if (d->scheme == FV_CODEC_I64_RLE) {
            if (d->run_left == 0 && (rc = dec_next_run(d))) return rc;
            take = (size_t)(d->run_left < cnt ? d->run_left : cnt);
            fill(out, take, d->run_val);
            d->run_left -= take;
        } else {
            if (d->fpos == d->fcnt && (rc = dec_load_frame(d))) return rc;
            take = min_size(d->fcnt - d->fpos, cnt);
            for (size_t i = 0; i < take; i++)
                out[i] = to_i64(d->frame[d->fpos + i]);
            d->fpos += take;
        }
        out += take;
        cnt -= take;
        d->left -= take;
    }
    return FV_OK;
}

/* After all values were yielded: every declared run must have been used (D5). */
static int dec_finish(const struct i64_dec *d)
{
    return d->scheme == FV_CODEC_I64_RLE && d->runs_left != 0 ? FV_ECORRUPT : FV_OK;
}

int fv_dec_i64(struct fv_rd *r, int64_t *v, size_t n)
{
    if (n == 0) return FV_OK;
    struct i64_dec d;
    int rc = dec_init(&d, r, n);
    if (rc == FV_OK) rc = dec_next(&d, v, n);
    return rc ? rc : dec_finish(&d);
}

/* ---- double column ---- */

static const double pow10_tab[FV_CODEC_F64_MAX_EXP + 1] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,
    1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
};

/* Finds m with (double)m / p == x bit for bit; 0 when there is none (an exception). */
static inline int to_mantissa(double x, double p, int64_t *m)
{
    double y = x * p;
    if (!(fabs(y) < 0x1p62)) return 0; /* also rejects NaN and infinities */
    /* round half away from zero; |y| < 2^62 keeps the conversion defined. A value that a
     * different rounding would have caught is merely an exception. */
    int64_t k = y >= 0 ? (int64_t)(y + 0.5) : -(int64_t)(0.5 - y);
    if (dbl_bits((double)k / p) != dbl_bits(x)) return 0;
    *m = k;
    return 1;
}

/* Picks up to SAMPLE positions, one per stratum of step values, at an offset that varies from
 * stratum to stratum so that periodic columns (every 4th value missing) are not aliased. */
static size_t sample(const double *v, size_t n, double *s)
{
    size_t step = (n + SAMPLE - 1) / SAMPLE, cnt = 0;
    for (size_t at = 0; at < n; at += step, cnt++) {
        size_t i = at + (cnt * 7919u) % step; /* 7919 prime: all residues when step < 7919 */
        s[cnt] = v[i < n ? i : n - 1];
    }
    return cnt;
}

/* The smallest exponent that makes the most values of a sample round-trip. */
static unsigned choose_exp(const double *v, size_t n)
{
    double s[SAMPLE];
    size_t cnt = sample(v, n, s), best = 0;
    unsigned best_e = 0;
    for (unsigned e = 0; e <= FV_CODEC_F64_MAX_EXP && best < cnt; e++) {
        size_t ok = 0;
        int64_t m;
        for (size_t i = 0; i < cnt; i++)
            ok += (size_t)to_mantissa(s[i], pow10_tab[e], &m);
        if (ok > best) {
            best = ok;
            best_e = e;
        }
    }
    return best_e;
}

static int write_xor(struct fv_buf *out, const double *v, size_t n)
{
    if (n > (SIZE_MAX - 1) / 8) return FV_ENOMEM;
    int rc = fv_buf_reserve(out, 1 + 8 * n);
    if (rc) return rc;
    unsigned char *p = out->data + out->len;
    *p++ = FV_CODEC_F64_XOR;
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++, p += 8) {
        uint64_t b = dbl_bits(v[i]);
        fv_put_u64(p, b ^ prev);
        prev = b;
    }
    out->len = (size_t)(p - out->data);
    return FV_OK;
}

/* Fills m[] at exponent e and lists the exceptions in exc[] (room for max_exc). Returns the
 * number of exceptions, or max_exc + 1 as soon as there are more than max_exc. */
static size_t mantissas(const double *v, size_t n, unsigned e, int64_t *m, size_t *exc,
                        size_t max_exc)
{
    const double p = pow10_tab[e];
    size_t nexc = 0;
    int64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        if (to_mantissa(v[i], p, &m[i])) {
            prev = m[i];
            continue;
        }
        if (nexc == max_exc) return max_exc + 1;
        exc[nexc++] = i;
        m[i] = prev;
    }
    return nexc;
}

static int write_exceptions(struct fv_buf *out, const double *v, const size_t *exc, size_t nexc)
{
    if (nexc > (SIZE_MAX - MAX_VINT) / (MAX_VINT + 8)) return FV_ENOMEM;
    int rc = fv_buf_reserve(out, MAX_VINT + nexc * (MAX_VINT + 8));
    if (rc) return rc;
    unsigned char *p = put_uvarint_raw(out->data + out->len, nexc);
    size_t prev = 0;
    for (size_t k = 0; k < nexc; k++) {
        p = put_uvarint_raw(p, exc[k] - prev);
        prev = exc[k];
        fv_put_u64(p, dbl_bits(v[exc[k]]));
        p += 8;
    }
    out->len = (size_t)(p - out->data);
    return FV_OK;
}

/* Writes DECIMAL; *fits = 0 (nothing written) when XOR should be used instead. */
static int write_decimal(struct fv_buf *out, const double *v, size_t n, int *fits)
{
    size_t start = out->len, max_exc = n / 4;
    *fits = 0;
    if (n > SIZE_MAX / (sizeof(int64_t) + sizeof(size_t))) return FV_ENOMEM;
    int64_t *m = malloc(n * sizeof *m + (max_exc + 1) * sizeof(size_t));
    if (m == NULL) return FV_ENOMEM;
    size_t *exc = (size_t *)(m + n);
    unsigned e = choose_exp(v, n);
    size_t nexc = mantissas(v, n, e, m, exc, max_exc);
    int rc = FV_OK;
    if (nexc <= max_exc) {
        unsigned char head[2] = {FV_CODEC_F64_DECIMAL, (unsigned char)e};
        rc = fv_buf_append(out, head, sizeof head);
        if (rc == FV_OK) rc = fv_enc_i64(out, m, n);
        if (rc == FV_OK) rc = write_exceptions(out, v, exc, nexc);
        *fits = rc == FV_OK && out->len - start <= 1 + 8 * n;
        if (!*fits) out->len = start;
    }
    free(m);
    return rc;
}

int fv_enc_f64(struct fv_buf *out, const double *v, size_t n)
{
    if (n == 0) return FV_OK;
    int fits;
    int rc = write_decimal(out, v, n, &fits);
    if (rc || fits) return rc;
    return write_xor(out, v, n);
}

static int dec_xor(struct fv_rd *r, double *v, size_t n)
{
    const unsigned char *p;
    if (n > (r->n - r->off) / 8) return FV_ECORRUPT;
    int rc = fv_rd_bytes(r, 8 * n, &p);
    if (rc) return rc;
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        prev ^= fv_get_u64(p + 8 * i);
        v[i] = bits_dbl(prev);
    }
    return FV_OK;
}

static int dec_exceptions(struct fv_rd *r, double *v, size_t n)
{
    uint64_t cnt, delta;
    int rc = fv_rd_uvarint(r, &cnt);
    if (rc) return rc;
    if (cnt > n) return FV_ECORRUPT;
    uint64_t idx = 0;
    for (uint64_t k = 0; k < cnt; k++) {
        const unsigned char *p;
        if ((rc = fv_rd_uvarint(r, &delta))) return rc;
        if ((k > 0 && delta == 0) || delta >= n - idx) return FV_ECORRUPT; /* D6 */
        idx += delta;
        if ((rc = fv_rd_bytes(r, 8, &p))) return rc;
        v[idx] = bits_dbl(fv_get_u64(p));
    }
    return FV_OK;
}

static int dec_decimal(struct fv_rd *r, double *v, size_t n)
{
    uint8_t e;
    int64_t m[FRAME];
    struct i64_dec d;
    int rc = fv_rd_u8(r, &e);
    if (rc) return rc;
    if (e > FV_CODEC_F64_MAX_EXP) return FV_ECORRUPT;
    const double p = pow10_tab[e];
    if ((rc = dec_init(&d, r, n))) return rc;
    for (size_t at = 0; at < n; at += FRAME) {
        size_t cnt = min_size(FRAME, n - at);
        if ((rc = dec_next(&d, m, cnt))) return rc;
        for (size_t i = 0; i < cnt; i++)
            v[at + i] = (double)m[i] / p;
    }
    if ((rc = dec_finish(&d))) return rc;
    return dec_exceptions(r, v, n);
}

int fv_dec_f64(struct fv_rd *r, double *v, size_t n)
{
    if (n == 0) return FV_OK;
    uint8_t s;
    int rc = fv_rd_u8(r, &s);
    if (rc) return rc;
    if (s == FV_CODEC_F64_DECIMAL) return dec_decimal(r, v, n);
    if (s == FV_CODEC_F64_XOR) return dec_xor(r, v, n);
    return FV_ECORRUPT;
}

/* ---- string column ---- */

static uint64_t str_hash(const unsigned char *s, uint32_t len)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
    for (uint32_t i = 0; i < len; i++)
        h = (h ^ s[i]) * 0x100000001b3u;
    return h ^ (h >> 29);
}

static int str_eq(const unsigned char *a, uint32_t alen, const unsigned char *b, uint32_t blen)
{
    return alen == blen && (alen == 0 || a == b || memcmp(a, b, alen) == 0);
}

/* Scratch of the string encoder: idx[n] for the indices, first[n] for the position of each
 * dictionary entry's first occurrence, slot[cap] an open-addressing table of entry + 1. */
struct dict {
    int64_t *idx;
    size_t *first;
    size_t *slot;
    size_t mask;
    size_t size;
};

static int dict_init(struct dict *d, size_t n)
{
    size_t cap = 16;
    if (n > SIZE_MAX / 64) return FV_ENOMEM; /* keeps cap < 4n and the sum below in range */
    while (cap < 2 * n)
        cap *= 2;
    d->idx = malloc(n * sizeof(int64_t) + (n + cap) * sizeof(size_t));
    if (d->idx == NULL) return FV_ENOMEM;
    d->first = (size_t *)(d->idx + n);
    d->slot = d->first + n;
    memset(d->slot, 0, cap * sizeof(size_t));
    d->mask = cap - 1;
    d->size = 0;
    return FV_OK;
}

/* Returns the dictionary entry of string i, adding it when new. */
static size_t dict_lookup(struct dict *d, const unsigned char *const *s, const uint32_t *len,
                          size_t i)
{
    size_t j = (size_t)str_hash(s[i], len[i]) & d->mask;
    for (; d->slot[j] != 0; j = (j + 1) & d->mask) {
        size_t f = d->first[d->slot[j] - 1];
        if (str_eq(s[f], len[f], s[i], len[i])) return d->slot[j] - 1;
    }
    d->first[d->size] = i;
    d->slot[j] = ++d->size;
    return d->size - 1;
}

static int write_dict(struct fv_buf *out, const struct dict *d, const unsigned char *const *s,
                      const uint32_t *len)
{
    int rc = fv_put_uvarint(out, d->size);
    for (size_t k = 0; k < d->size && rc == FV_OK; k++) {
        size_t f = d->first[k];
        rc = fv_put_uvarint(out, len[f]);
        if (rc == FV_OK) rc = fv_buf_append(out, s[f], len[f]);
    }
    return rc;
}

int fv_enc_str(struct fv_buf *out, const unsigned char *const *s, const uint32_t *len, size_t n)
{
    if (n == 0) return FV_OK;
    struct dict d;
    size_t start = out->len;
    int rc = dict_init(&d, n);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        /* repeated strings are the common case: skip the hash when equal to the previous */
        if (i > 0 && str_eq(s[i], len[i], s[i - 1], len[i - 1]))
            d.idx[i] = d.idx[i - 1];
        else
            d.idx[i] = (int64_t)dict_lookup(&d, s, len, i);
    }
    rc = write_dict(out, &d, s, len);
    if (rc == FV_OK) rc = fv_enc_i64(out, d.idx, n);
    if (rc) out->len = start;
    free(d.idx);
    return rc;
}

/* Reads the dictionary, leaving in s[k] a pointer to entry k's length varint (D7). */
static int dec_dict(struct fv_rd *r, size_t n, const unsigned char **s, uint64_t *size)
{
    uint64_t dsize, len;
    const unsigned char *p;
    int rc = fv_rd_uvarint(r, &dsize);
    if (rc) return rc;
    if (dsize == 0 || dsize > n || dsize > r->n - r->off) return FV_ECORRUPT;
    for (uint64_t k = 0; k < dsize; k++) {
        s[k] = r->p + r->off;
        if ((rc = fv_rd_uvarint(r, &len))) return rc;
        if (len > UINT32_MAX) return FV_ECORRUPT;
        if ((rc = fv_rd_bytes(r, (size_t)len, &p))) return rc;
    }
    *size = dsize;
    return FV_OK;
}

/* Reads the indices into idx[] (D8): each < dsize, new entries in first-seen order. */
static int dec_indices(struct fv_rd *r, size_t n, uint64_t dsize, uint32_t *idx)
{
    int64_t chunk[FRAME];
    struct i64_dec d;
    uint64_t seen = 0;
    int rc = dec_init(&d, r, n);
    if (rc) return rc;
    for (size_t at = 0; at < n; at += FRAME) {
        size_t cnt = min_size(FRAME, n - at);
        if ((rc = dec_next(&d, chunk, cnt))) return rc;
        for (size_t i = 0; i < cnt; i++) {
            uint64_t k = (uint64_t)chunk[i];
            if (k > seen || k >= dsize) return FV_ECORRUPT;
            seen += k == seen;
            idx[at + i] = (uint32_t)k;
        }
    }
    if ((rc = dec_finish(&d))) return rc;
    return seen == dsize ? FV_OK : FV_ECORRUPT;
}

int fv_dec_str(struct fv_rd *r, size_t n, const unsigned char **s, uint32_t *len)
{
    if (n == 0) return FV_OK;
    if (n > UINT32_MAX) return FV_EINVAL; /* the indices are kept in len[] */
    uint64_t dsize;
    int rc = dec_dict(r, n, s, &dsize);
    if (rc == FV_OK) rc = dec_indices(r, n, dsize, len);
    if (rc) return rc;
    const unsigned char *end = r->p + r->n;
    for (size_t i = n; i-- > 0;) {
        /* index(i) <= i (first-seen order), so s[index(i)] still holds the entry */
        struct fv_rd e;
        uint64_t l;
        fv_rd_init(&e, s[len[i]], (size_t)(end - s[len[i]]));
        if (fv_rd_uvarint(&e, &l)) return FV_ECORRUPT; /* validated by dec_dict already */
        s[i] = e.p + e.off;
        len[i] = (uint32_t)l;
    }
    return FV_OK;
}
