/* fuzz_lastvals.c - libFuzzer target: the last-values record decoder (src/store/lastvals.h),
 * every plaintext version (1: a block of the values; 2 and 3: the dense entries).
 *
 * The input is a record plaintext (as it is after decryption and, if any, decompression).
 * fv_lastvals_decode must return FV_OK, FV_ECORRUPT or FV_ENOMEM without reading outside the
 * input (an exact-size copy for ASan). When it works, the entries are ascending by field
 * without repeats, and encoding them again (version 3) and decoding that gives the same
 * entries (times, ambiguity, values bit for bit). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/lastvals.h"
#include "util/buf.h"
#include "util/err.h"
#include "wire/payload.h"

#include "fuzzcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *img = malloc(size ? size : 1);
    if (img == NULL) return 0;
    if (size) memcpy(img, data, size);
    struct fv_lastvals a = {0}, b = {0};
    char err[256];
    int rc = fv_lastvals_decode(img, size, &a, err, sizeof err);
    check(rc == FV_OK || rc == FV_ECORRUPT || rc == FV_ENOMEM);
    if (rc == FV_OK) {
        for (size_t i = 1; i < a.n; i++)
            check(a.e[i - 1].field < a.e[i].field);
        for (size_t i = 0; i < a.n; i++)
            check(a.e[i].amb || a.e[i].v.kind != FV_VK_NONE);
        struct fv_buf enc = {0};
        rc = fv_lastvals_encode(&a, &enc);
        check(rc == FV_OK || rc == FV_ENOMEM);
        if (rc == FV_OK) {
            rc = fv_lastvals_decode(enc.data, enc.len, &b, err, sizeof err);
            check(rc == FV_OK || rc == FV_ENOMEM);
            if (rc == FV_OK) {
                check(b.n == a.n);
                for (size_t i = 0; i < a.n; i++) {
                    check(b.e[i].field == a.e[i].field);
                    check(b.e[i].last_t == a.e[i].last_t);
                    check(b.e[i].amb == a.e[i].amb);
                    check(a.e[i].amb || fv_value_equal(&a.e[i].v, &b.e[i].v));
                }
            }
        }
        fv_buf_free(&enc);
    }
    fv_lastvals_clear(&a);
    fv_lastvals_clear(&b);
    free(img);
    return 0;
}
