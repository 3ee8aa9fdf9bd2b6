/* fuzz_codec.c - libFuzzer target: the store's value decoders (src/store/codec.h).
 *
 * Input: byte 0 picks the codec (b % 3: integers, doubles, strings) and the column length n
 * (b / 3: 0..40 as is, then lengths around the 128-value frame boundaries up to 4096); the
 * rest is the encoded column. A decoder must return FV_OK or FV_ECORRUPT without reading
 * outside the input (the input is copied to a buffer of exactly its size for ASan). When it
 * decodes, the values are encoded again and decoded again, and must come back identical (bit
 * for bit for doubles) with every encoded byte consumed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/codec.h"
#include "util/buf.h"
#include "util/err.h"

static size_t column_len(unsigned k)
{
    static const uint16_t big[] = {
        50,   60,   63,   64,   65,   100,  126,  127,  128,  129,  130,  200,  254,  255,  256,
        257,  258,  300,  383,  384,  385,  500,  511,  512,  513,  640,  1000, 1023, 1024, 1025,
        1500, 2000, 2047, 2048, 2049, 2500, 3000, 3071, 3072, 3073, 3500, 4000, 4094, 4095, 4096};
    if (k <= 40) return k;
    return big[(k - 41) % (sizeof big / sizeof big[0])];
}

static void check(int ok)
{
    if (!ok) abort();
}

/* Re-encodes n decoded values of kind k, decodes them into the second half of a/b, compares. */
static void reencode(unsigned kind, size_t n, void *vals, void *vals2, const unsigned char **s,
                     uint32_t *len)
{
    struct fv_buf b = {0};
    int rc = kind == 0   ? fv_enc_i64(&b, vals, n)
             : kind == 1 ? fv_enc_f64(&b, vals, n)
                         : fv_enc_str(&b, s, len, n);
    if (rc == FV_ENOMEM) goto out;
    check(rc == FV_OK);
    struct fv_rd r;
    fv_rd_init(&r, b.data, b.len);
    if (kind < 2) {
        rc = kind == 0 ? fv_dec_i64(&r, vals2, n) : fv_dec_f64(&r, vals2, n);
        check(rc == FV_OK && r.off == b.len);
        check(n == 0 || memcmp(vals, vals2, n * 8) == 0); /* bitwise: NaN payloads, -0.0 */
    } else {
        const unsigned char **s2 = vals2;
        uint32_t *len2 = (uint32_t *)(s2 + n);
        rc = fv_dec_str(&r, n, s2, len2);
        check(rc == FV_OK && r.off == b.len);
        for (size_t i = 0; i < n; i++)
            check(len2[i] == len[i] && (len[i] == 0 || memcmp(s2[i], s[i], len[i]) == 0));
    }
out:
    fv_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    unsigned kind = data[0] % 3;
    size_t n = column_len(data[0] / 3u);
    size_t len = size - 1;
    unsigned char *img = malloc(len ? len : 1);
    /* room for n values (8 bytes) or n pointers + n lengths, twice */
    unsigned char *vals = malloc(2 * n * (sizeof(void *) + 8) + 1);
    uint32_t *lens = malloc(n * sizeof *lens + 1);
    if (img == NULL || vals == NULL || lens == NULL) goto out;
    memcpy(img, data + 1, len);
    struct fv_rd r;
    fv_rd_init(&r, img, len);
    void *v2 = vals + n * (sizeof(void *) + 8);
    const unsigned char **s = (const unsigned char **)(void *)vals;
    int rc = kind == 0   ? fv_dec_i64(&r, (int64_t *)(void *)vals, n)
             : kind == 1 ? fv_dec_f64(&r, (double *)(void *)vals, n)
                         : fv_dec_str(&r, n, s, lens);
    check(rc == FV_OK || rc == FV_ECORRUPT);
    check(r.off <= len);
    if (rc == FV_OK) {
        if (kind == 2) { /* touch every decoded byte, so ASan sees any overrun */
            unsigned sum = 0;
            for (size_t i = 0; i < n; i++) {
                check(s[i] >= img && s[i] + lens[i] <= img + len);
                for (uint32_t j = 0; j < lens[i]; j++)
                    sum += s[i][j];
            }
            __asm__ volatile("" : : "r"(sum));
        }
        reencode(kind, n, vals, v2, s, lens);
    }
out:
    free(lens);
    free(vals);
    free(img);
    return 0;
}
