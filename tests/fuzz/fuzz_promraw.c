/* fuzz_promraw.c - libFuzzer target: the raw series decoder of a Prometheus query across a
 * cluster (src/api/promraw.h), what an api node reads from each shard's owner.
 *
 * The input is two answers (an api node joins several shards' answers into one): its first
 * two bytes are the first answer's length (little-endian, cut to what follows), then the
 * first answer, then the second. fv_promraw_decode must return FV_OK, FV_EINVAL or FV_ENOMEM
 * without reading outside its input (exact-size copies for ASan); a refused answer leaves
 * what was joined before unchanged; what is joined has ascending times, and encoding it
 * again and decoding that gives the same series, bit for bit. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/promraw.h"
#include "util/buf.h"
#include "util/err.h"

#include "fuzzcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t count(const struct fv_promraw *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nsel; i++)
        n += r->sel[i].n;
    return n;
}

static void same(const struct fv_promraw *a, const struct fv_promraw *b)
{
    check(a->nsel == b->nsel && a->subjects == b->subjects);
    for (size_t i = 0; i < a->nsel; i++) {
        check(a->sel[i].n == b->sel[i].n);
        for (size_t k = 0; k < a->sel[i].n; k++) {
            const struct fv_pe_raw *x = &a->sel[i].s[k], *y = &b->sel[i].s[k];
            check(memcmp(&x->l, &y->l, sizeof x->l) == 0 && x->n == y->n);
            check(x->n == 0 || (memcmp(x->t, y->t, x->n * sizeof *x->t) == 0 &&
                                memcmp(x->v, y->v, x->n * sizeof *x->v) == 0));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t cut = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    if (cut > size) cut = size;
    unsigned char *one = malloc(cut ? cut : 1), *two = malloc(size - cut ? size - cut : 1);
    if (one == NULL || two == NULL) {
        free(one);
        free(two);
        return 0;
    }
    memcpy(one, data, cut);
    memcpy(two, data + cut, size - cut);
    struct fv_promraw r = {0}, again = {0};
    int rc = fv_promraw_decode(one, cut, &r);
    check(rc == FV_OK || rc == FV_EINVAL || rc == FV_ENOMEM);
    if (rc == FV_OK) {
        size_t before = count(&r);
        int rc2 = fv_promraw_decode(two, size - cut, &r);
        check(rc2 == FV_OK || rc2 == FV_EINVAL || rc2 == FV_ENOMEM);
        if (rc2 != FV_OK) check(count(&r) == before); /* refused: nothing of it joined */
        for (size_t i = 0; i < r.nsel; i++)
            for (size_t k = 0; k < r.sel[i].n; k++)
                for (size_t j = 1; j < r.sel[i].s[k].n; j++)
                    check(r.sel[i].s[k].t[j - 1] <= r.sel[i].s[k].t[j]);
        /* the joined series encoded again read back the same */
        struct fv_buf b = {0};
        int ok = fv_promraw_begin(&b, r.subjects, (uint32_t)r.nsel) == FV_OK;
        for (size_t i = 0; ok && i < r.nsel; i++)
            ok = fv_promraw_add_sel(&b, r.sel[i].s, r.sel[i].n) == FV_OK;
        if (ok && fv_promraw_decode(b.data, b.len, &again) == FV_OK) same(&r, &again);
        fv_buf_free(&b);
    }
    fv_promraw_free(&again);
    fv_promraw_free(&r);
    free(one);
    free(two);
    return 0;
}
