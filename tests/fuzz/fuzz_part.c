/* fuzz_part.c - libFuzzer target: the part file parser (fv_part_parse, src/store/part.h).
 *
 * Byte 0 of the input picks a mode, the rest is used as follows:
 *   mode 0: a part image as is;
 *   mode 1: a part image whose header, index and footer checksums are recomputed, so that
 *           mutations reach the footer and index checks instead of stopping at a CRC;
 *   mode 2: u32 blocks_len, u32 nblocks, u32 level, blocks_len bytes of blocks area, then the
 *           index PLAINTEXT: the target builds a valid header, compresses the index (zstd) and
 *           writes a valid footer around it, so that mutations reach the index decoder. The
 *           header's version is 1 + (level >> 16) % 7 (1: older corpus files stay version 1;
 *           3 to 5: the last-values entries after the blocks'; 6: the columnar index; 7: the
 *           same without last-values entries).
 * fv_part_parse must return FV_OK or FV_ECORRUPT (or FV_ENOMEM) and never read outside the
 * image (an exact-size copy for ASan). On success every entry must lie inside the blocks
 * area, blocks must not overlap, classes must be known, and the index must be sorted; so must
 * the last-values records (inside the blocks area, overlapping nothing, sorted by subject,
 * found by fv_part_find_last); in version 7, which stores none, p->last must list each
 * subject of the blocks once (length 0), sorted. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "store/part.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/err.h"

#include "fuzzcheck.h"

static void fix_crcs(unsigned char *img, size_t len)
{
    if (len < FV_PART_HEADER_LEN + FV_PART_FOOTER_LEN) return;
    fv_put_u32(img + 32, fv_crc32c(0, img, 32));
    unsigned char *f = img + len - FV_PART_FOOTER_LEN;
    uint64_t ioff = fv_get_u64(f);
    uint32_t ilen = fv_get_u32(f + 8);
    if (ioff >= FV_PART_HEADER_LEN && ioff <= len - FV_PART_FOOTER_LEN &&
        ilen <= len - FV_PART_FOOTER_LEN - ioff)
        fv_put_u32(f + 16, fv_crc32c(0, img + ioff, ilen));
    fv_put_u32(f + 64, fv_crc32c(0, f, 64));
}

/* Mode 2: builds a part image around a blocks area and an index plaintext. */
static unsigned char *build(const uint8_t *data, size_t size, size_t *len_out)
{
    if (size < 12) return NULL;
    uint32_t blen = fv_get_u32(data) % 65536, nblocks = fv_get_u32(data + 4);
    uint32_t level = fv_get_u32(data + 8);
    data += 12;
    size -= 12;
    if (blen > size) blen = (uint32_t)size;
    const uint8_t *idx = data + blen;
    size_t ilen = size - blen;
    size_t bound = ZSTD_compressBound(ilen);
    size_t cap = FV_PART_HEADER_LEN + blen + bound + FV_PART_FOOTER_LEN;
    unsigned char *img = malloc(cap);
    if (img == NULL) return NULL;
    memcpy(img, "FVPART\r\n", 8);
    fv_put_u32(img + 8, 1 + (level >> 16) % 7);
    fv_put_u32(img + 12, level);
    fv_put_u64(img + 16, 3);
    fv_put_u64(img + 24, 9);
    fv_put_u32(img + 32, fv_crc32c(0, img, 32));
    memcpy(img + FV_PART_HEADER_LEN, data, blen);
    size_t ioff = FV_PART_HEADER_LEN + blen;
    size_t zn = ZSTD_compress(img + ioff, bound, idx, ilen, 1);
    if (ZSTD_isError(zn)) {
        free(img);
        return NULL;
    }
    unsigned char *f = img + ioff + zn;
    fv_put_u64(f, ioff);
    fv_put_u32(f + 8, (uint32_t)zn);
    fv_put_u32(f + 12, (uint32_t)ilen);
    fv_put_u32(f + 16, fv_crc32c(0, img + ioff, zn));
    fv_put_u32(f + 20, nblocks);
    fv_put_u64(f + 24, 7);
    fv_put_u64(f + 32, 1700000000000ULL);
    fv_put_u64(f + 40, 100);
    fv_put_u64(f + 48, 10);
    memcpy(f + 56, "FVPEND\r\n", 8);
    fv_put_u32(f + 64, fv_crc32c(0, f, 64));
    *len_out = ioff + zn + FV_PART_FOOTER_LEN;
    return img;
}

static int cmp_off(const void *a, const void *b)
{
    const struct fv_part_entry *x = *(const struct fv_part_entry *const *)a;
    const struct fv_part_entry *y = *(const struct fv_part_entry *const *)b;
    return x->off < y->off ? -1 : x->off > y->off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    unsigned mode = data[0] % 3;
    data++;
    size--;
    unsigned char *img;
    size_t len = size;
    if (mode == 2) {
        img = build(data, size, &len);
        if (img == NULL) return 0;
        /* An exact-size copy. */
        unsigned char *exact = malloc(len ? len : 1);
        if (exact == NULL) {
            free(img);
            return 0;
        }
        memcpy(exact, img, len);
        free(img);
        img = exact;
    } else {
        img = malloc(size ? size : 1);
        if (img == NULL) return 0;
        memcpy(img, data, size);
        if (mode == 1) fix_crcs(img, size);
    }
    struct fv_part *p = NULL;
    char err[512] = "";
    int rc = fv_part_parse(img, len, "fuzz.fvp", &p, err, sizeof err);
    check(rc == FV_OK || rc == FV_ECORRUPT || rc == FV_ENOMEM);
    if (rc == FV_ECORRUPT) check(p == NULL && strstr(err, "fuzz.fvp: offset ") == err);
    if (rc == FV_OK) {
        check(p != NULL && p->fd == -1 && p->refs == 1 && p->size == len);
        check(p->gen_lo <= p->gen_hi && p->nclasses <= FV_PART_MAX_CLASSES);
        uint64_t ioff = fv_get_u64(img + len - FV_PART_FOOTER_LEN);
        check(ioff >= FV_PART_HEADER_LEN && ioff <= len - FV_PART_FOOTER_LEN);
        for (uint32_t c = 0; c < p->nclasses; c++) /* (a name may hold a NUL: shorter) */
            check(strlen(p->classes[c]) <= FV_CLASS_NAME_MAX);
        const struct fv_part_entry **by = malloc((p->n ? p->n : 1) * sizeof *by);
        if (by != NULL) {
            for (size_t i = 0; i < p->n; i++) {
                const struct fv_part_entry *e = &p->e[i];
                check(e->off >= FV_PART_HEADER_LEN && e->len >= (e->nonce_in ? 28u : 16u));
                check(e->nonce_in == 1 || (p->version >= 6 && e->nonce_in == 0));
                check(e->off + e->len <= ioff); /* inside the blocks area, so inside the file */
                check(e->cls < p->nclasses && e->min_t <= e->max_t);
                check(e->raw_len >= 1 && e->raw_len <= FV_BLOCK_MAX_RAW);
                if (i) {
                    const struct fv_part_entry *a = &p->e[i - 1];
                    int c = memcmp(a->subject, e->subject, FV_SUBJECT_LEN);
                    check(c < 0 || (c == 0 && (a->cls < e->cls ||
                                               (a->cls == e->cls && a->min_t <= e->min_t))));
                }
                by[i] = e;
                /* Touch the block's bytes, so ASan sees any entry outside the image. */
                unsigned sum = 0;
                for (uint32_t k = 0; k < e->len; k++)
                    sum += img[e->off + k];
                __asm__ volatile("" : : "r"(sum));
            }
            if (p->n) qsort(by, p->n, sizeof *by, cmp_off);
            for (size_t i = 1; i < p->n; i++)
                check(by[i - 1]->off + by[i - 1]->len <= by[i]->off);
            free(by);
        }
        check(p->version >= 3 || p->nlast == 0);
        if (p->version >= 7) {
            size_t nsubj = 0;
            for (size_t i = 0; i < p->n; i++)
                nsubj += i == 0 || memcmp(p->e[i - 1].subject, p->e[i].subject, FV_SUBJECT_LEN);
            check(p->nlast == nsubj);
            for (size_t i = 0; i < p->nlast; i++) {
                const struct fv_part_last *l = &p->last[i];
                check(l->off == 0 && l->len == 0);
                if (i) check(memcmp(p->last[i - 1].subject, l->subject, FV_SUBJECT_LEN) < 0);
                check(fv_part_find_last(p, l->subject) == i);
                size_t at = fv_part_find(p, l->subject);
                check(at < p->n && memcmp(p->e[at].subject, l->subject, FV_SUBJECT_LEN) == 0);
            }
        }
        for (size_t i = 0; p->version < 7 && i < p->nlast; i++) {
            const struct fv_part_last *l = &p->last[i];
            check(l->off >= FV_PART_HEADER_LEN && l->len >= (l->nonce_in ? 28u : 16u) &&
                  l->off + l->len <= ioff);
            check(l->nonce_in == (p->version < 6));
            if (i) check(memcmp(p->last[i - 1].subject, l->subject, FV_SUBJECT_LEN) < 0);
            check(fv_part_find_last(p, l->subject) == i);
            for (size_t k = 0; k < p->n; k++) /* overlaps no block */
                check(l->off + l->len <= p->e[k].off || p->e[k].off + p->e[k].len <= l->off);
            for (size_t k = 0; k < i; k++)
                check(l->off >= p->last[k].off + p->last[k].len ||
                      p->last[k].off >= l->off + l->len);
        }
        for (size_t i = 0; i < p->n; i++) {
            size_t at = fv_part_find(p, p->e[i].subject);
            check(at <= i && memcmp(p->e[at].subject, p->e[i].subject, FV_SUBJECT_LEN) == 0);
        }
        fv_part_unref(p);
    }
    free(img);
    return 0;
}
