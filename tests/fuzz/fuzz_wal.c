/* fuzz_wal.c - libFuzzer target: the WAL file scanner (header, record framing, checksums,
 * record bodies). Checksums are recomputed for half the inputs so that mutations reach the
 * body decoder instead of stopping at the CRC. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/crc32c.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

static int count(void *arg, const struct fv_wal_record *r, const char *file, uint64_t off)
{
    (void)file;
    (void)off;
    /* touch every byte the record claims, so ASan sees any overrun */
    unsigned sum = 0;
    for (size_t i = 0; i < r->payload_len; i++)
        sum += r->payload[i];
    for (size_t i = 0; i < r->txid_len; i++)
        sum += r->txid[i];
    __asm__ volatile("" : : "r"(sum)); /* keeps the reads from being optimised away */
    (*(int *)arg)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    unsigned char *img = malloc(size);
    if (img == NULL) return 0;
    memcpy(img, data, size);
    if (data[0] & 1) {
        /* fix up header and record CRCs */
        if (size >= FV_WAL_HEADER_LEN) {
            memcpy(img, FV_WAL_MAGIC, FV_WAL_MAGIC_LEN);
            fv_put_u32(img + 8, FV_WAL_VERSION);
            fv_put_u32(img + 12, fv_crc32c(0, img, 12));
        }
        for (size_t at = FV_WAL_HEADER_LEN; at + FV_WAL_REC_HEAD <= size;) {
            uint32_t n = fv_get_u32(img + at);
            if (n == 0 || n > size - at - FV_WAL_REC_HEAD) break;
            fv_put_u32(img + at + 4, fv_crc32c(0, img + at + FV_WAL_REC_HEAD, n));
            at += FV_WAL_REC_HEAD + n;
        }
    }
    int n = 0, torn = 0;
    uint64_t end = 0;
    char err[512];
    fv_wal_scan(img, size, "fuzz.log", count, &n, &end, &torn, err, sizeof err);
    free(img);
    return 0;
}
