/* fuzz_wal.c - libFuzzer target: the WAL file scanner (header, record framing, checksums,
 * durable offsets, sync marks, record bodies, the torn-tail rules R1, R2, R4, R5 of
 * src/wal/wal.c), formats 1 and 2. Checksums are recomputed for half the inputs so that
 * mutations reach the body decoder and the durable-offset rules instead of stopping at a CRC.
 * Oracle: a torn tail, once cut, leaves an image that scans clean with the same records. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/crc32c.h"
#include "util/err.h"
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

/* Makes the header and every record's checksums valid, keeping the rest as fuzzed. */
static void fix_up(unsigned char *img, size_t size, int v1)
{
    size_t hlen = v1 ? FV_WAL_V1_HEADER_LEN : FV_WAL_HEADER_LEN;
    size_t head = v1 ? FV_WAL_V1_REC_HEAD : FV_WAL_REC_HEAD;
    if (size < hlen) return;
    memcpy(img, FV_WAL_MAGIC, FV_WAL_MAGIC_LEN);
    fv_put_u32(img + 8, v1 ? FV_WAL_V1 : FV_WAL_VERSION);
    fv_put_u32(img + hlen - 4, fv_crc32c(0, img, hlen - 4));
    uint32_t salt = fv_get_u32(img + 12);
    for (size_t at = hlen; at + head <= size;) {
        uint32_t n = fv_get_u32(img + at);
        if (n > size - at - head) break;
        fv_put_u32(img + at + 4, fv_crc32c(0, img + at + head, n));
        if (!v1) fv_put_u32(img + at + 16, fv_wal_header_crc(salt, img + at));
        at += head + n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    unsigned char *img = malloc(size);
    if (img == NULL) return 0;
    memcpy(img, data, size);
    if (data[0] & 1) fix_up(img, size, data[0] & 2);
    int n = 0, torn = 0;
    uint64_t end = 0;
    char err[512];
    int rc = fv_wal_scan(img, size, "fuzz.log", count, &n, &end, &torn, err, sizeof err);
    if (end > size) abort();
    if (rc == FV_ECORRUPT && torn && end > 0) {
        int n2 = 0, torn2 = 0;
        uint64_t end2 = 0;
        if (fv_wal_scan(img, end, "fuzz.log", count, &n2, &end2, &torn2, err, sizeof err) !=
                FV_OK ||
            n2 != n || end2 != end)
            abort();
    }
    free(img);
    return 0;
}
