/*
 * codec.c - value codecs of the time-series store: the bounded reader, varints and the integer
 * column (its encoder and its streaming decoder, shared through codec_int.h); the double and
 * string columns, built on it, are in codec_cols.c. The byte format and the decoders' validity
 * rules (D1-D8) are documented in codec.h.
 *
 * Encoding an integer column takes two cheap passes and one write: i64_sizes() computes the
 * exact size of every scheme in one pass (per 128-value frame: the OR of the values, whose bit
 * width is the frame's width) plus a pass for FOR's per-frame maxima once the minimum is known;
 * then only the winner is written, into space reserved once. Decoding is a small state
 * machine (struct fv_i64_dec) that yields values in chunks, so the double and string decoders
 * can consume mantissas and indices 128 at a time from a stack buffer instead of allocating.
 *
 *
 * Invariants: all arithmetic on values is done on uint64_t (wraps, no undefined behaviour);
 * conversions back to int64_t go through to_i64(); a reader's off never exceeds its n.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/codec.h"
#include "store/codec_int.h"
#include "util/err.h"

#define N_I64      7  /* integer schemes */
#define PLANES_MIN 64 /* values a column needs before PLANES is considered */
/* What a plane is estimated to cost beyond its entropy (zstd's Huffman table and headers);
 * PLANES is written when its estimate plus an eighth is below every other scheme's size
 * (both tuned on bench/store's data with build/store_colbytes: 200 vehicles x 500 s, blocks
 * -4.3% on exact timestamps, -2.8% with 20 ms jitter). */
#define PLANE_OVERHEAD 32
#define PLANES_MAX_W   4 /* widest deltas (bytes) PLANES is written for */

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

size_t fv_codec__i64_cost(const int64_t *v, size_t n)
{
    if (n == 0) return 0;
    struct i64_stats st;
    i64_sizes(v, n, &st);
    unsigned scheme = i64_pick(&st);
    return scheme == st.planes_s && st.planes_est != SIZE_MAX ? st.planes_est : st.size[scheme];
}

/* ---- integer column: decoding ---- */

static int dec_init_planes(struct fv_i64_dec *d, size_t n)
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

static int dec_init_diffs(struct fv_i64_dec *d, size_t n)
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
int fv_codec__dec_init(struct fv_i64_dec *d, struct fv_rd *r, size_t n)
{
    uint8_t s;
    int rc = fv_rd_u8(r, &s);
    if (rc) return rc;
    *d = (struct fv_i64_dec){.r = r, .scheme = s, .left = n};
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
static int dec_load_frame(struct fv_i64_dec *d)
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

static int dec_next_run(struct fv_i64_dec *d)
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
int fv_codec__dec_next(struct fv_i64_dec *d, int64_t *out, size_t cnt)
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
int fv_codec__dec_finish(const struct fv_i64_dec *d)
{
    return d->scheme == FV_CODEC_I64_RLE && d->runs_left != 0 ? FV_ECORRUPT : FV_OK;
}

int fv_dec_i64(struct fv_rd *r, int64_t *v, size_t n)
{
    if (n == 0) return FV_OK;
    struct fv_i64_dec d;
    int rc = fv_codec__dec_init(&d, r, n);
    if (rc == FV_OK) rc = fv_codec__dec_next(&d, v, n);
    return rc ? rc : fv_codec__dec_finish(&d);
}
