/*
 * codec_int.h - what the store's column codecs share (private to src/store/codec*.c): the
 * integer column's streaming decoder, which the double column (mantissas) and the string
 * column (dictionary indices) read FRAME values at a time from a stack buffer, and
 * small helpers. The format and the validity rules are codec.h's.
 *
 * Threads: none of its own; a decoder belongs to its caller.
 */
#ifndef FV_STORE_CODEC_INT_H
#define FV_STORE_CODEC_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "store/codec.h"

#define FRAME    128 /* values per bit-packing frame */
#define MAX_VINT 10  /* bytes of the longest varint */

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

/* What fv_enc_i64 would write for v[0..n-1], in bytes once the block's zstd has run: the
 * chosen scheme's size, or for PLANES and DPLANES the estimate it was chosen by. */
size_t fv_codec__i64_cost(const int64_t *v, size_t n);

/* The integer column's decoder (codec.c): yields a column of n values in chunks. */
struct fv_i64_dec {
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

/* Reads the column's scheme and set-up from r for n values; FV_OK or FV_ECORRUPT. */
int fv_codec__dec_init(struct fv_i64_dec *d, struct fv_rd *r, size_t n);
/* The next cnt values into out; FV_OK or FV_ECORRUPT. */
int fv_codec__dec_next(struct fv_i64_dec *d, int64_t *out, size_t cnt);
/* After the last value: the column ended where it should (FV_OK), else FV_ECORRUPT. */
int fv_codec__dec_finish(const struct fv_i64_dec *d);

#endif
