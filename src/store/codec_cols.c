/*
 * codec_cols.c - the double and string columns of the store's value codecs (codec.h, rules
 * D1-D8), built on the integer column (codec.c): a double column's decimal mantissas and a
 * string column's dictionary indices are integer columns, read FRAME at a time
 * through the integer decoder (codec_int.h) without allocating.
 *
 * The string decoder needs the dictionary while it maps indices, but may not allocate: it
 * keeps entry k as a pointer to its length varint in s[k] and the indices in len[], then fills
 * the outputs from the last to the first. First-seen order (D8) guarantees index(i) <= i, so
 * s[index(i)] has not been overwritten yet when position i is filled.
 *
 * Threads: none of its own; pure functions of their arguments.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/codec.h"
#include "store/codec_int.h"
#include "util/err.h"

#define SAMPLE 256 /* values tried per exponent when choosing e */
/* LINKED (codec.h): fixed-point slope bits, bounds, and when a prediction is tried */
#define LINK_SHIFT    16
#define LINK_MAX_KQ   ((int64_t)1 << 24)
#define LINK_MAX_STEP ((int64_t)1 << 38)
#define LINK_MIN_N    16   /* values a column needs before LINKED is tried */
#define LINK_MIN_R2   0.25 /* squared correlation of the steps below which a ref is not tried */
#define LINK_GAIN     8    /* LINKED when its steps take under 1 - 1/8 of the bits */
#define LINK_MEM_MAX  (4u << 20) /* bytes a block's references take at most */

/* Two's-complement reinterpretation without implementation-defined conversions. */
static inline int64_t to_signed(uint64_t u)
{
    return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)~u - 1;
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

/* ---- LINKED: mantissas predicted from another column's (codec.h) ---- */

/* The prediction of one step from the reference's step d: round(kq * d / 2^16), 0 for steps
 * too large to multiply without overflow (|kq| <= 2^24, |d| < 2^38: the product < 2^62). */
static inline uint64_t link_pred(int64_t kq, uint64_t step)
{
    int64_t d = to_signed(step);
    if (d <= -LINK_MAX_STEP || d >= LINK_MAX_STEP) return 0;
    int64_t x = kq * d + (1 << (LINK_SHIFT - 1));
    /* floor division by 2^16 without shifting a negative number */
    int64_t q = x >= 0 ? x >> LINK_SHIFT : -((-x + ((1 << LINK_SHIFT) - 1)) >> LINK_SHIFT);
    return (uint64_t)q;
}

/* c[i] = m[i] - P[i] in place on x, where P[0] = 0 and P[i] = P[i-1] + pred(a[i] - a[i-1]),
 * modulo 2^64 (the decoder adds P back: dec_mantissas). */
static void link_apply(int64_t *x, const int64_t *a, size_t n, int64_t kq)
{
    uint64_t p = 0;
    for (size_t i = 1; i < n; i++) {
        p += link_pred(kq, (uint64_t)a[i] - (uint64_t)a[i - 1]);
        x[i] = to_signed((uint64_t)x[i] - p);
    }
}

/* The references of a block (codec.h): DECIMAL columns of n values, their mantissas and
 * their steps as doubles with the steps' sum of squares, so that weighing a reference for a
 * column costs one dot product. */
struct fv_f64_links {
    size_t n, count;
    uint32_t id[FV_CODEC_F64_MAX_REFS];
    int64_t *m[FV_CODEC_F64_MAX_REFS];
    double *d[FV_CODEC_F64_MAX_REFS];
    double sxx[FV_CODEC_F64_MAX_REFS];
};

struct fv_f64_links *fv_f64_links_new(size_t n)
{
    struct fv_f64_links *lk = calloc(1, sizeof *lk);
    if (lk) lk->n = n;
    return lk;
}

void fv_f64_links_free(struct fv_f64_links *lk)
{
    if (lk == NULL) return;
    for (size_t i = 0; i < lk->count; i++) {
        free(lk->m[i]);
        free(lk->d[i]);
    }
    free(lk);
}

/* m's steps as doubles into d[0..n-2]; returns their sum of squares. */
static double link_steps(const int64_t *m, size_t n, double *d)
{
    double s = 0;
    for (size_t i = 1; i < n; i++) {
        d[i - 1] = (double)to_signed((uint64_t)m[i] - (uint64_t)m[i - 1]);
        s += d[i - 1] * d[i - 1];
    }
    return s;
}

/* The dot product of a[0..n-1] and b[0..n-1], four sums at a time (a chain of dependent
 * additions would wait on each; this is every column pair's cost). */
static double link_dot(const double *a, const double *b, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

/* Offers a DECIMAL column's mantissas as a reference; quietly not when lk is full. */
static void link_offer(struct fv_f64_links *lk, uint32_t id, const int64_t *m)
{
    size_t n = lk->n;
    if (lk->count == FV_CODEC_F64_MAX_REFS ||
        (lk->count + 1) * n * (sizeof(int64_t) + sizeof(double)) > LINK_MEM_MAX)
        return;
    int64_t *mc = malloc(n * sizeof *mc);
    double *d = malloc(n * sizeof *d);
    if (mc == NULL || d == NULL) { /* not offered: nothing else lost */
        free(mc);
        free(d);
        return;
    }
    memcpy(mc, m, n * sizeof *mc);
    lk->sxx[lk->count] = link_steps(m, n, d);
    lk->id[lk->count] = id;
    lk->m[lk->count] = mc;
    lk->d[lk->count++] = d;
}

/* A cheap stand-in for what a column's steps cost: the sum of their zigzag bit widths (the
 * integer codec's exact sizing is a few passes and a histogram; this is one pass). With
 * kq != 0 the steps are those left after predicting from a. */
static uint64_t link_bits(const int64_t *m, const int64_t *a, size_t n, int64_t kq)
{
    uint64_t bits = 0;
    for (size_t i = 1; i < n; i++) {
        uint64_t d = (uint64_t)m[i] - (uint64_t)m[i - 1];
        if (kq) d -= link_pred(kq, (uint64_t)a[i] - (uint64_t)a[i - 1]);
        uint64_t z = fv_zigzag(d);
        bits += z ? 64u - (unsigned)__builtin_clzll(z) : 0u;
    }
    return bits;
}

/* Of lk's references, the one whose prediction leaves m's steps cheapest (link_bits), if it
 * saves at least 1/LINK_GAIN of them: its index, with its kq and the predicted column in c;
 * -1 when none does. A reference is weighed only when its steps correlate with m's
 * (r^2 >= LINK_MIN_R2); the slope is the least-squares one, in units of 2^-16. dm: room for
 * n doubles. */
static long link_choose(const int64_t *m, size_t n, const struct fv_f64_links *lk, double *dm,
                        int64_t *c, int64_t *best_kq)
{
    double syy = link_steps(m, n, dm);
    if (!(syy > 0)) return -1;
    uint64_t base = link_bits(m, NULL, n, 0), best_bits = base - base / LINK_GAIN;
    long best = -1;
    for (size_t k = 0; k < lk->count; k++) {
        double sxy = link_dot(lk->d[k], dm, n - 1), sxx = lk->sxx[k];
        if (!(sxx > 0) || sxy * sxy < LINK_MIN_R2 * sxx * syy) continue;
        double kd = sxy / sxx * (double)(1 << LINK_SHIFT);
        if (!(fabs(kd) <= (double)LINK_MAX_KQ)) continue;
        int64_t kq = (int64_t)llround(kd);
        if (kq == 0) continue;
        uint64_t bits = link_bits(m, lk->m[k], n, kq);
        if (bits < best_bits) {
            best_bits = bits;
            best = (long)k;
            *best_kq = kq;
        }
    }
    if (best >= 0) {
        memcpy(c, m, n * sizeof *c);
        link_apply(c, lk->m[best], n, *best_kq);
    }
    return best;
}

/* Writes DECIMAL, or LINKED against one of lk's columns when that is cheaper (lk may be
 * NULL); *fits = 0 (nothing written) when XOR should be used instead. A column written
 * DECIMAL joins lk under id. */
static int write_decimal(struct fv_buf *out, const double *v, size_t n, uint32_t id,
                         struct fv_f64_links *lk, int *fits)
{
    size_t start = out->len, max_exc = n / 4;
    *fits = 0;
    int linkable = lk && lk->count > 0 && n >= LINK_MIN_N;
    size_t words = linkable ? 3 : 1; /* m, then c and the steps dm */
    if (n > SIZE_MAX / (words * sizeof(int64_t) + sizeof(size_t))) return FV_ENOMEM;
    int64_t *m = malloc(words * n * sizeof *m + (max_exc + 1) * sizeof(size_t));
    if (m == NULL) return FV_ENOMEM;
    int64_t *c = m + n;
    double *dm = (double *)(void *)(m + 2 * n);
    size_t *exc = (size_t *)(m + words * n);
    unsigned e = choose_exp(v, n);
    size_t nexc = mantissas(v, n, e, m, exc, max_exc);
    int rc = FV_OK;
    if (nexc <= max_exc) {
        int64_t kq = 0;
        long ref = linkable ? link_choose(m, n, lk, dm, c, &kq) : -1;
        unsigned char head[2] = {ref >= 0 ? FV_CODEC_F64_LINKED : FV_CODEC_F64_DECIMAL,
                                 (unsigned char)e};
        rc = fv_buf_append(out, head, sizeof head);
        if (rc == FV_OK && ref >= 0) rc = fv_put_uvarint(out, lk->id[ref]);
        if (rc == FV_OK && ref >= 0) rc = fv_put_uvarint(out, fv_zigzag((uint64_t)kq));
        if (rc == FV_OK) rc = fv_enc_i64(out, ref >= 0 ? c : m, n);
        if (rc == FV_OK) rc = write_exceptions(out, v, exc, nexc);
        *fits = rc == FV_OK && out->len - start <= 1 + 8 * n;
        if (!*fits) out->len = start;
        if (*fits && ref < 0 && lk && n >= LINK_MIN_N) link_offer(lk, id, m);
    }
    free(m);
    return rc;
}

int fv_enc_f64_linked(struct fv_buf *out, const double *v, uint32_t id, struct fv_f64_links *lk)
{
    int fits;
    size_t n = lk->n;
    if (n == 0) return FV_OK;
    int rc = write_decimal(out, v, n, id, lk, &fits);
    if (rc || fits) return rc;
    return write_xor(out, v, n);
}

int fv_enc_f64(struct fv_buf *out, const double *v, size_t n)
{
    int fits;
    if (n == 0) return FV_OK;
    int rc = write_decimal(out, v, n, 0, NULL, &fits);
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

/* DECIMAL, or LINKED (linked): its header - the reference's id and kq (D9) - read after e and
 * the reference resolved through ref(arg, ...). The mantissas go to m_out when not NULL (room
 * for n), else through a stack frame. */
static int dec_mantissas(struct fv_rd *r, double *v, size_t n, int linked, fv_f64_ref_fn ref,
                         void *arg, int64_t *m_out)
{
    uint8_t e;
    int64_t frame[FRAME];
    struct fv_i64_dec d;
    int rc = fv_rd_u8(r, &e);
    if (rc) return rc;
    if (e > FV_CODEC_F64_MAX_EXP) return FV_ECORRUPT;
    const double p = pow10_tab[e];
    const int64_t *a = NULL;
    int64_t kq = 0;
    if (linked) {
        uint64_t id, zk;
        if ((rc = fv_rd_uvarint(r, &id)) || (rc = fv_rd_uvarint(r, &zk))) return rc;
        kq = to_signed(fv_unzigzag(zk));
        if (ref == NULL || id > UINT32_MAX || kq == 0 || kq > LINK_MAX_KQ || kq < -LINK_MAX_KQ)
            return FV_ECORRUPT;
        if (ref(arg, (uint32_t)id, n, &a) != FV_OK || a == NULL) return FV_ECORRUPT;
    }
    if ((rc = fv_codec__dec_init(&d, r, n))) return rc;
    uint64_t pred = 0;
    for (size_t at = 0; at < n; at += FRAME) {
        size_t cnt = min_size(FRAME, n - at);
        int64_t *m = m_out ? m_out + at : frame;
        if ((rc = fv_codec__dec_next(&d, m, cnt))) return rc;
        for (size_t i = 0; i < cnt; i++) {
            if (a && at + i > 0) {
                pred += link_pred(kq, (uint64_t)a[at + i] - (uint64_t)a[at + i - 1]);
                m[i] = to_signed((uint64_t)m[i] + pred);
            }
            v[at + i] = (double)m[i] / p;
        }
    }
    if ((rc = fv_codec__dec_finish(&d))) return rc;
    return dec_exceptions(r, v, n);
}

int fv_dec_f64_ex(struct fv_rd *r, double *v, size_t n, int64_t *m_out, int *decimal,
                  fv_f64_ref_fn ref, void *arg)
{
    if (decimal) *decimal = 0;
    if (n == 0) return FV_OK;
    uint8_t s;
    int rc = fv_rd_u8(r, &s);
    if (rc) return rc;
    if (s == FV_CODEC_F64_DECIMAL) {
        rc = dec_mantissas(r, v, n, 0, NULL, NULL, m_out);
        if (rc == FV_OK && decimal) *decimal = m_out != NULL;
        return rc;
    }
    if (s == FV_CODEC_F64_LINKED) return dec_mantissas(r, v, n, 1, ref, arg, NULL);
    if (s == FV_CODEC_F64_XOR) return dec_xor(r, v, n);
    return FV_ECORRUPT;
}

int fv_dec_f64(struct fv_rd *r, double *v, size_t n)
{
    return fv_dec_f64_ex(r, v, n, NULL, NULL, NULL, NULL);
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
    struct fv_i64_dec d;
    uint64_t seen = 0;
    int rc = fv_codec__dec_init(&d, r, n);
    if (rc) return rc;
    for (size_t at = 0; at < n; at += FRAME) {
        size_t cnt = min_size(FRAME, n - at);
        if ((rc = fv_codec__dec_next(&d, chunk, cnt))) return rc;
        for (size_t i = 0; i < cnt; i++) {
            uint64_t k = (uint64_t)chunk[i];
            if (k > seen || k >= dsize) return FV_ECORRUPT;
            seen += k == seen;
            idx[at + i] = (uint32_t)k;
        }
    }
    if ((rc = fv_codec__dec_finish(&d))) return rc;
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
