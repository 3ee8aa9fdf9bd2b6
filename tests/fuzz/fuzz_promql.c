/* fuzz_promql.c - libFuzzer target: the PromQL subset's parser (src/api/promql.h) and its
 * evaluator (src/api/promeval.h).
 *
 * Input: the text up to the first NUL byte is parsed. It must give FV_OK with a tree, or
 * FV_EINVAL with no tree, an error message and a position inside the text. A tree is then
 * evaluated over three steps against a fixed series per selector (samples every 20 s, values
 * from the bytes after the NUL, or a ramp); the result must have one value per step. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/promeval.h"
#include "api/promql.h"
#include "util/err.h"

struct input {
    const uint8_t *data;
    size_t size;
};

static int fetch(void *arg, const struct fv_pq_node *sel, int64_t from, int64_t to,
                 struct fv_pe_raw **out, size_t *n, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    const struct input *in = arg;
    *out = NULL;
    *n = 0;
    if (!fv_pq_matches(sel, "Soc", "V1")) return FV_OK;
    struct fv_pe_raw *r = calloc(1, sizeof *r);
    if (r == NULL) return FV_ENOMEM;
    strcpy(r->l.name, "Soc");
    strcpy(r->l.signal, "Soc");
    strcpy(r->l.device, "V1");
    int64_t t0 = from - from % 20000;
    for (int64_t t = t0, k = 0; t <= to && k < 4000; t += 20000, k++) {
        double v = in->size ? (double)in->data[(size_t)k % in->size] - 100 : (double)k;
        if (t >= from && fv_pe_raw_add(r, t, v) != FV_OK) break;
    }
    *out = r;
    *n = 1;
    return FV_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = strnlen((const char *)data, size);
    char *text = malloc(n + 1);
    if (text == NULL) return 0;
    memcpy(text, data, n);
    text[n] = '\0';
    struct fv_pq_node *e = NULL;
    size_t pos = 0;
    char err[200] = "";
    int rc = fv_pq_parse(text, &e, &pos, err, sizeof err);
    free(text);
    if (rc == FV_EINVAL && (e != NULL || err[0] == '\0' || pos > n)) abort();
    if (rc != FV_OK) return 0;
    if (e == NULL) abort();
    struct input in = {data + n + (n < size), size - n - (n < size)};
    struct fv_pe_query q = {.start = 3600000,
                            .end = 3660000,
                            .step = 30000,
                            .fetch = fetch,
                            .arg = &in,
                            .max_series = 10};
    struct fv_pe_result r;
    rc = fv_pe_eval(&q, e, &r, err, sizeof err);
    if (rc == FV_OK) {
        if (r.scalar && r.sv == NULL) abort();
        for (size_t i = 0; i < r.nseries; i++)
            if (r.s[i].v == NULL) abort();
        fv_pe_free(&r);
    }
    fv_pq_free(e);
    return 0;
}
