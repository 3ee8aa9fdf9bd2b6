/*
 * codec.h - value codecs of the time-series store: integer, double and string columns.
 *
 * A column is n values of one type; the caller stores n elsewhere and passes it to the
 * decoder. An encoder appends one column to a struct fv_buf; a decoder reads it from a bounded
 * reader (struct fv_rd) and leaves the reader just past it (what follows is the caller's
 * business). Encodings are compact but not entropy-coded: the block layer compresses the
 * result afterwards (zstd), which is why XOR output is left as plain bytes.
 *
 * Contract:
 *  - Encoders return FV_OK or FV_ENOMEM; on FV_ENOMEM out->len is restored (nothing appended).
 *    They allocate at most O(n) scratch, once per column, never per value.
 *  - Decoders never read outside [r->p, r->p + r->n), never allocate, and return FV_ECORRUPT
 *    for malformed input (rules D1-D8 below); on error the output arrays and r->off hold
 *    unspecified values. Decoding what an encoder wrote gives back the input bit for bit and
 *    consumes exactly the bytes the encoder appended.
 *  - No state is shared: any thread may call any function on its own buffers.
 *
 * Byte format. varint = unsigned LEB128 (7 bits per byte, least significant group first, high
 * bit = more follows, at most 10 bytes); zz(x) = zigzag of the two's-complement 64-bit x
 * (0,-1,1,-2.. -> 0,1,2,3..). All integer arithmetic (deltas, sums) wraps modulo 2^64, so
 * INT64_MIN next to INT64_MAX is fine. A column of n = 0 values is encoded as nothing at all
 * (zero bytes) by every codec.
 *
 * Integer column (fv_enc_i64), n >= 1: one scheme byte, then
 *   0 CONST  zz(v[0]) varint                              (all n values equal)
 *   1 FOR    zz(min) varint, packed(v[i] - min, i = 0..n-1)
 *   2 DELTA  zz(v[0]) varint, packed(zz(v[i] - v[i-1]), i = 1..n-1)
 *   3 DOD    zz(v[0]) varint, [n >= 2: zz(d1) varint, d1 = v[1] - v[0]],
 *            packed(zz(d[i] - d[i-1]), i = 2..n-1) where d[i] = v[i] - v[i-1]
 *   4 RLE    runs varint (1..n), then per run: zz(value - previous run's value) varint (the
 *            first run's previous value is 0), length varint (>= 1); lengths sum to n.
 *   5 PLANES zz(v[0]) varint, [n >= 2: w (1 byte, 1..8), then w planes of n - 1 bytes:
 *            plane j holds byte j (least significant first) of zz(v[i] - v[i-1]) for
 *            i = 1..n-1]. (Part format 4 on; older parts never hold it.)
 *   6 DPLANES zz(v[0]) varint, [n >= 2: zz(d1) varint, d1 = v[1] - v[0]], [n >= 3: w (1..8),
 *            then w planes of n - 2 bytes of zz(d[i] - d[i-1]), i = 2..n-1, d as for DOD].
 *            (Part format 4 on.)
 *   packed(x[0..m-1]): ceil(m / 128) frames of 128 values (the last may be shorter); a frame
 *   of c values is 1 byte w (0..64) then ceil(w * c / 8) bytes holding the c values as w-bit
 *   fields, LSB first: value j occupies bits [j*w, (j+1)*w) of the little-endian bit string.
 *   Example: w = 3, values 5, 1, 7: 5 | 1 << 3 | 7 << 6 = 0x1cd -> bytes 0xcd 0x01.
 *   The encoder computes the size of every scheme 0..4 and takes the smallest (ties: lowest
 *   id); bit-packed bytes are taken to stay that size under the block's zstd. For n >= 64
 *   it also estimates what zstd makes of PLANES and DPLANES (the planes' order-0 entropy
 *   plus 32 bytes a plane), takes the smaller estimate, and writes that scheme instead when
 *   the estimate plus an eighth is smaller and the differences need at most 4 bytes: noisy
 *   values, whose packed differences zstd cannot compress, cost less as bytes that zstd's
 *   Huffman coding can.
 *
 * Double column (fv_enc_f64), n >= 1, lossless bit for bit: one scheme byte, then
 *   0 DECIMAL  e (1 byte, 0..18); an integer column of n mantissas m[i]; exceptions: count
 *              varint (0..n), then per exception: index delta varint (the first is the index
 *              itself, later ones are > 0), 8 bytes LE = the double's IEEE-754 bits.
 *              v[i] = (double)m[i] / 10^e with 10^e the exact double constant, except at the
 *              listed indices. An exception's mantissa is the previous value's (0 at index 0)
 *              so that deltas stay small.
 *   1 XOR      n times 8 bytes LE: bits(v[i]) ^ bits(v[i-1]), bits(v[-1]) = 0.
 *   2 LINKED   (part format 5 on) e (1 byte, 0..18); ref varint (the id, in the caller's
 *              numbering, of another column of n values written DECIMAL: the reference);
 *              zz(kq) varint (kq != 0, |kq| <= 2^24: a slope in units of 2^-16); an integer
 *              column of n values c[i]; exceptions as DECIMAL. With a[] the reference's
 *              mantissas: m[i] = c[i] + P[i], P[0] = 0, P[i] = P[i-1] + pred(a[i] - a[i-1]),
 *              pred(d) = floor((kq * d + 2^15) / 2^16) for |d| < 2^38, else 0; all sums wrap
 *              modulo 2^64. Then v[i] = m[i] / 10^e as for DECIMAL. A column whose steps
 *              follow another's (a pack's voltage sagging with its current, ranges with the
 *              state of charge, power with amps) costs only what the prediction misses.
 *   The encoder picks e as the smallest exponent that makes the most values round-trip on a
 *   sample of up to 256 values; it writes XOR when more than n/4 values would be exceptions
 *   or when DECIMAL would be larger than XOR. Given references (fv_enc_f64_ex) and n >= 16,
 *   it fits each reference's steps to the column's by least squares (skipping those whose
 *   squared correlation is under 1/4) and writes LINKED against the one whose residual
 *   column the integer codec estimates cheapest, when that beats DECIMAL by a sixteenth
 *   plus 20 bytes. A reference is never itself LINKED (one level).
 *
 * String column (fv_enc_str), n >= 1: dictionary size D varint (1..n); D entries, each the
 *   length varint (<= 2^32 - 1) then the bytes, distinct, in first-seen order; then an integer
 *   column of n indices into the dictionary. First-seen order means that the first occurrence
 *   of entry k comes after the first occurrence of entry k-1: index i is at most the number of
 *   distinct indices before it.
 *
 * Validity rules (a decoder returns FV_ECORRUPT when one is broken):
 *   D1 every field lies inside the reader's buffer;
 *   D2 varints have at most 10 bytes and fit 64 bits;
 *   D3 scheme bytes are known: 0..6 for integers, 0..2 for doubles;
 *   D4 frame widths are 0..64; PLANES widths 1..8;
 *   D5 RLE: 1 <= runs <= n, every length >= 1, lengths sum to exactly n, all runs used;
 *   D6 DECIMAL: e <= 18; exception count <= n; indices strictly increase and are < n;
 *   D7 strings: 1 <= D <= n, D <= bytes left; lengths <= 2^32 - 1;
 *   D8 strings: every index < D, in first-seen order, every entry used.
 *   D9 LINKED: kq != 0 and |kq| <= 2^24; the caller resolves ref to a DECIMAL column of
 *      exactly n values (fv_f64_ref_fn), else the column is corrupt.
 * fv_dec_str also needs n <= 2^32 - 1 (else FV_EINVAL): it keeps the indices in len[].
 */
#ifndef FV_STORE_CODEC_H
#define FV_STORE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Scheme bytes (on-disk values; never renumber). */
#define FV_CODEC_I64_CONST   0
#define FV_CODEC_I64_FOR     1
#define FV_CODEC_I64_DELTA   2
#define FV_CODEC_I64_DOD     3
#define FV_CODEC_I64_RLE     4
#define FV_CODEC_I64_PLANES  5 /* part format 4 on */
#define FV_CODEC_I64_DPLANES 6 /* part format 4 on */
#define FV_CODEC_F64_DECIMAL 0
#define FV_CODEC_F64_XOR     1
#define FV_CODEC_F64_LINKED  2 /* part format 5 on */
/* References fv_enc_f64_ex weighs for one column at most (the first ones given). */
#define FV_CODEC_F64_MAX_REFS 64
/* Largest DECIMAL exponent: 10^18 is the largest power of ten below 2^63 (all are exact). */
#define FV_CODEC_F64_MAX_EXP 18

/* A bounded reader over [p, p + n); off is the next byte to read (always <= n). */
struct fv_rd {
    const unsigned char *p;
    size_t n;
    size_t off;
};

static inline void fv_rd_init(struct fv_rd *r, const void *p, size_t n)
{
    r->p = p;
    r->n = n;
    r->off = 0;
}

/* Appends v as a varint (1..10 bytes); FV_OK or FV_ENOMEM. */
int fv_put_uvarint(struct fv_buf *b, uint64_t v);
/* Reads a varint; FV_ECORRUPT on overrun, more than 10 bytes or a value above 2^64 - 1. */
int fv_rd_uvarint(struct fv_rd *r, uint64_t *v);
/* Reads one byte; FV_ECORRUPT on overrun. */
int fv_rd_u8(struct fv_rd *r, uint8_t *v);
/* Points *p at the next n bytes (inside r's buffer, valid as long as it is) and skips them;
 * FV_ECORRUPT if fewer than n remain. */
int fv_rd_bytes(struct fv_rd *r, size_t n, const unsigned char **p);

/* Zigzag: maps two's-complement x to an unsigned number that is small when |x| is small. */
static inline uint64_t fv_zigzag(uint64_t two_complement)
{
    return (two_complement << 1) ^ (0 - (two_complement >> 63));
}
static inline uint64_t fv_unzigzag(uint64_t u)
{
    return (u >> 1) ^ (0 - (u & 1));
}

/* Appends the integer column v[0..n-1]; FV_OK or FV_ENOMEM. */
int fv_enc_i64(struct fv_buf *out, const int64_t *v, size_t n);
/* Decodes an integer column of n values into v[0..n-1]; FV_OK or FV_ECORRUPT. */
int fv_dec_i64(struct fv_rd *r, int64_t *v, size_t n);

/* Appends the double column v[0..n-1] (bit for bit: NaN payloads, -0.0, infinities,
 * subnormals); FV_OK or FV_ENOMEM. */
int fv_enc_f64(struct fv_buf *out, const double *v, size_t n);
/* Decodes a double column of n values into v[0..n-1]; FV_OK or FV_ECORRUPT (also for a
 * LINKED column: it needs fv_dec_f64_ex's resolver). */
int fv_dec_f64(struct fv_rd *r, double *v, size_t n);

/* The columns a block's later double columns may be predicted from (LINKED): DECIMAL
 * columns of n values, up to FV_CODEC_F64_MAX_REFS of them and 4 MiB. One encoder's. */
struct fv_f64_links;
/* For columns of n values; NULL when out of memory. */
struct fv_f64_links *fv_f64_links_new(size_t n);
void fv_f64_links_free(struct fv_f64_links *lk);
/* fv_enc_f64 of lk's n values, weighing LINKED against lk's columns; a column written DECIMAL
 * joins lk as id (ids: the caller's numbering, above every id lk holds). FV_OK or
 * FV_ENOMEM. */
int fv_enc_f64_linked(struct fv_buf *out, const double *v, uint32_t id, struct fv_f64_links *lk);
/* Resolves a LINKED column's reference id to the mantissas of a DECIMAL column of exactly n
 * values (*m, valid until the decoder returns); FV_OK, or anything else when there is none. */
typedef int (*fv_f64_ref_fn)(void *arg, uint32_t id, size_t n, const int64_t **m);
/* fv_dec_f64, resolving LINKED references through ref(arg, ...) (ref NULL: a LINKED column is
 * corrupt). A DECIMAL column's mantissas go to m_out when not NULL (room for n) with
 * *decimal = 1; otherwise *decimal = 0. decimal may be NULL. */
int fv_dec_f64_ex(struct fv_rd *r, double *v, size_t n, int64_t *m_out, int *decimal,
                  fv_f64_ref_fn ref, void *arg);

/* Appends the string column: string i is the len[i] bytes at s[i] (any bytes, NULs included;
 * s[i] may be NULL when len[i] == 0); FV_OK or FV_ENOMEM. */
int fv_enc_str(struct fv_buf *out, const unsigned char *const *s, const uint32_t *len, size_t n);
/* Decodes a string column of n values: s[i] points into r's buffer (no copy, no NUL
 * terminator; valid as long as that buffer is), len[i] is its length. FV_OK, FV_ECORRUPT, or
 * FV_EINVAL when n > 2^32 - 1. */
int fv_dec_str(struct fv_rd *r, size_t n, const unsigned char **s, uint32_t *len);

#endif
