/* test_promraw.c - api/promraw.h: the raw series a shard's owner sends an api node (a
 * Prometheus query across a cluster): encoded and decoded exactly (labels, times, values
 * bit for bit, NaN and infinities included), several shards' answers joined into one,
 * every malformed encoding refused with the join left as it was, and an expression
 * evaluated over two shards' joined series equal to the same over the whole (aggregations
 * across shards). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/promapi.h"
#include "api/promeval.h"
#include "api/promql.h"
#include "api/promraw.h"
#include "util/err.h"

static void series(struct fv_pe_raw *x, const char *sig, const char *dev, size_t n, int64_t t0,
                   double v0)
{
    memset(x, 0, sizeof *x);
    snprintf(x->l.name, sizeof x->l.name, "%s", sig);
    snprintf(x->l.signal, sizeof x->l.signal, "%s", sig);
    snprintf(x->l.device, sizeof x->l.device, "%s", dev);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(fv_pe_raw_add(x, t0 + (int64_t)k * 1000, v0 + (double)k * 0.1), FV_OK);
}

static void raw_free(struct fv_pe_raw *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(x[i].t);
        free(x[i].v);
    }
}

static void roundtrip(void **state)
{
    (void)state;
    struct fv_pe_raw a[2], b[1];
    series(&a[0], "Soc", "V1", 3, 1000, 50.0);
    series(&a[1], "Soc", "V2", 0, 0, 0); /* a series without samples: labels only */
    series(&b[0], "Odometer", "0123456789abcdef0123456789abcdef", 2, -5000, 1e300);
    b[0].v[1] = NAN;
    struct fv_buf x = {0}, y = {0};
    assert_int_equal(fv_promraw_begin(&x, 7, 2), FV_OK);
    assert_int_equal(fv_promraw_add_sel(&x, a, 2), FV_OK);
    assert_int_equal(fv_promraw_add_sel(&x, b, 1), FV_OK);
    assert_int_equal(fv_promraw_begin(&y, 5, 2), FV_OK);
    assert_int_equal(fv_promraw_add_sel(&y, b, 1), FV_OK);
    assert_int_equal(fv_promraw_add_sel(&y, NULL, 0), FV_OK);
    struct fv_promraw r = {0};
    assert_int_equal(fv_promraw_decode(x.data, x.len, &r), FV_OK);
    assert_int_equal(fv_promraw_decode(y.data, y.len, &r), FV_OK);
    assert_int_equal(r.subjects, 12);
    assert_int_equal(r.nsel, 2);
    assert_int_equal(r.sel[0].n, 3); /* a's two, then y's first selector's one */
    assert_int_equal(r.sel[1].n, 1);
    assert_string_equal(r.sel[0].s[0].l.device, "V1");
    assert_string_equal(r.sel[0].s[0].l.name, "Soc");
    assert_int_equal(r.sel[0].s[0].n, 3);
    assert_memory_equal(r.sel[0].s[0].t, a[0].t, 3 * sizeof(int64_t));
    assert_memory_equal(r.sel[0].s[0].v, a[0].v, 3 * sizeof(double));
    assert_int_equal(r.sel[0].s[1].n, 0);
    assert_string_equal(r.sel[0].s[2].l.device, b[0].l.device);
    assert_int_equal(r.sel[0].s[2].t[0], -5000);
    assert_true(r.sel[0].s[2].v[0] == 1e300);
    assert_true(isnan(r.sel[0].s[2].v[1]));
    struct fv_pe_raw *c;
    size_t n;
    assert_int_equal(fv_promraw_copy(&r, 1, &c, &n), FV_OK);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].l.signal, "Odometer");
    assert_int_equal(c[0].n, 2);
    raw_free(c, n);
    free(c);
    assert_int_equal(fv_promraw_copy(&r, 2, &c, &n), FV_OK); /* no such selector: none */
    assert_null(c);
    assert_int_equal(n, 0);
    fv_promraw_free(&r);
    raw_free(a, 2);
    raw_free(b, 1);
    fv_buf_free(&x);
    fv_buf_free(&y);
}

static void malformed(void **state)
{
    (void)state;
    struct fv_pe_raw a[2];
    series(&a[0], "Soc", "V1", 4, 1000, 1.0);
    series(&a[1], "Soc", "V2", 2, 1000, 2.0);
    struct fv_buf x = {0};
    assert_int_equal(fv_promraw_begin(&x, 2, 1), FV_OK);
    assert_int_equal(fv_promraw_add_sel(&x, a, 2), FV_OK);
    struct fv_promraw r = {0};
    assert_int_equal(fv_promraw_decode(x.data, x.len, &r), FV_OK);
    /* every cut of a second answer is refused and leaves the join as it was */
    for (size_t len = 0; len < x.len; len++) {
        assert_int_equal(fv_promraw_decode(x.data, len, &r), FV_EINVAL);
        assert_int_equal(r.sel[0].n, 2);
        assert_int_equal(r.subjects, 2);
    }
    unsigned char *m = malloc(x.len + 1);
    assert_non_null(m);
    memcpy(m, x.data, x.len);
    m[x.len] = 0; /* a trailing byte */
    assert_int_equal(fv_promraw_decode(m, x.len + 1, &r), FV_EINVAL);
    m[0] = 'X'; /* the magic */
    assert_int_equal(fv_promraw_decode(m, x.len, &r), FV_EINVAL);
    memcpy(m, x.data, x.len);
    m[4] = 2; /* another version */
    assert_int_equal(fv_promraw_decode(m, x.len, &r), FV_EINVAL);
    memcpy(m, x.data, x.len);
    m[16] = 2; /* another number of selectors than the first answer's */
    assert_int_equal(fv_promraw_decode(m, x.len, &r), FV_EINVAL);
    memcpy(m, x.data, x.len);
    /* the first series' label __name__ ("Soc") at 24: its length made 200 */
    assert_int_equal(m[24], 3);
    m[24] = 200;
    assert_int_equal(fv_promraw_decode(m, x.len, &r), FV_EINVAL);
    memcpy(m, x.data, x.len);
    /* a NUL inside that label (found by fuzz_promraw: it read back as a shorter label) */
    m[26] = 0;
    assert_int_equal(fv_promraw_decode(m, x.len, &r), FV_EINVAL);
    memcpy(m, x.data, x.len);
    /* times going back: the first series' second time made 0 (at 24, after its labels' 1 + 3,
     * 1 + 3 and 1 + 2 bytes, its count's 4 and its first time's 8) */
    size_t t1 = 24 + 4 + 4 + 3 + 4 + 8;
    assert_int_equal(m[t1], (2000 & 0xff));
    memset(m + t1, 0, 8);
    assert_int_equal(fv_promraw_decode(m, x.len, &r), FV_EINVAL);
    assert_int_equal(r.sel[0].n, 2);
    memcpy(m, x.data, x.len);
    assert_int_equal(fv_promraw_decode(m, x.len, &r), FV_OK); /* the copy itself is fine */
    assert_int_equal(r.sel[0].n, 4);
    free(m);
    fv_promraw_free(&r);
    raw_free(a, 2);
    fv_buf_free(&x);
}

/* ---- an expression over two shards' series joined, and over the whole ----------------- */

struct world {
    struct fv_pe_raw s[4]; /* Soc of V1..V4 */
    struct fv_promraw *joined;
    const struct fv_pq_node **sels;
    size_t nsel;
};

static int copy_of(const struct fv_pe_raw *in, size_t n, struct fv_pe_raw **out, size_t *nout)
{
    *out = calloc(n, sizeof **out);
    assert_non_null(*out);
    for (size_t i = 0; i < n; i++) {
        (*out)[i].l = in[i].l;
        for (size_t k = 0; k < in[i].n; k++)
            assert_int_equal(fv_pe_raw_add(&(*out)[i], in[i].t[k], in[i].v[k]), FV_OK);
    }
    *nout = n;
    return FV_OK;
}

static int whole_fetch(void *arg, const struct fv_pq_node *sel, int64_t from, int64_t to,
                       struct fv_pe_raw **out, size_t *n, char *err, size_t errlen)
{
    (void)sel, (void)from, (void)to, (void)err, (void)errlen;
    struct world *w = arg;
    return copy_of(w->s, 4, out, n);
}

static int joined_fetch(void *arg, const struct fv_pq_node *sel, int64_t from, int64_t to,
                        struct fv_pe_raw **out, size_t *n, char *err, size_t errlen)
{
    (void)from, (void)to, (void)err, (void)errlen;
    struct world *w = arg;
    size_t i = 0;
    while (i < w->nsel && w->sels[i] != sel)
        i++;
    assert_true(i < w->nsel);
    return fv_promraw_copy(w->joined, i, out, n);
}

static void across_shards(void **state)
{
    (void)state;
    struct world w = {0};
    for (int d = 0; d < 4; d++) {
        char dev[8];
        snprintf(dev, sizeof dev, "V%d", d + 1);
        series(&w.s[d], "Soc", dev, 120, 0, 10.0 * (d + 1)); /* 2 minutes at 1 Hz */
    }
    static const char *const exprs[] = {"sum(Soc)", "avg by (signal) (Soc)", "sum(rate(Soc[1m]))",
                                        "count(Soc) * 2 - 1",
                                        "max without (device) (avg_over_time(Soc[30s]))"};
    for (size_t x = 0; x < sizeof exprs / sizeof *exprs; x++) {
        struct fv_pq_node *e = NULL;
        size_t pos;
        char err[200];
        assert_int_equal(fv_pq_parse(exprs[x], &e, &pos, err, sizeof err), FV_OK);
        assert_int_equal(fv_prom_selectors(e, &w.sels, &w.nsel), FV_OK);
        /* shard A holds V1 and V3, shard B V2 and V4: each encodes every selector's */
        struct fv_buf a = {0}, b = {0};
        struct fv_pe_raw pa[2] = {w.s[0], w.s[2]}, pb[2] = {w.s[1], w.s[3]};
        assert_int_equal(fv_promraw_begin(&a, 2, (uint32_t)w.nsel), FV_OK);
        assert_int_equal(fv_promraw_begin(&b, 2, (uint32_t)w.nsel), FV_OK);
        for (size_t i = 0; i < w.nsel; i++) {
            assert_int_equal(fv_promraw_add_sel(&a, pa, 2), FV_OK);
            assert_int_equal(fv_promraw_add_sel(&b, pb, 2), FV_OK);
        }
        struct fv_promraw r = {0};
        assert_int_equal(fv_promraw_decode(a.data, a.len, &r), FV_OK);
        assert_int_equal(fv_promraw_decode(b.data, b.len, &r), FV_OK);
        w.joined = &r;
        struct fv_pe_query q = {.start = 60000, .end = 119000, .step = 10000, .arg = &w};
        struct fv_pe_result whole, joined;
        q.fetch = whole_fetch;
        assert_int_equal(fv_pe_eval(&q, e, &whole, err, sizeof err), FV_OK);
        q.fetch = joined_fetch;
        assert_int_equal(fv_pe_eval(&q, e, &joined, err, sizeof err), FV_OK);
        assert_int_equal(whole.nseries, joined.nseries);
        assert_true(whole.nseries >= 1);
        size_t ns = fv_pe_steps(&q);
        for (size_t i = 0; i < whole.nseries; i++)
            for (size_t k = 0; k < ns; k++)
                assert_true(whole.s[i].v[k] == joined.s[i].v[k] ||
                            (isnan(whole.s[i].v[k]) && isnan(joined.s[i].v[k])));
        /* one shard's alone is not the whole: the join matters */
        struct fv_promraw one = {0};
        assert_int_equal(fv_promraw_decode(a.data, a.len, &one), FV_OK);
        w.joined = &one;
        struct fv_pe_result part;
        assert_int_equal(fv_pe_eval(&q, e, &part, err, sizeof err), FV_OK);
        int differs = part.nseries != whole.nseries;
        for (size_t i = 0; !differs && i < whole.nseries; i++)
            differs = part.s[i].v[ns - 1] != whole.s[i].v[ns - 1];
        assert_true(differs);
        fv_pe_free(&part);
        fv_promraw_free(&one);
        fv_pe_free(&whole);
        fv_pe_free(&joined);
        fv_promraw_free(&r);
        fv_buf_free(&a);
        fv_buf_free(&b);
        free(w.sels);
        fv_pq_free(e);
    }
    raw_free(w.s, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip),
        cmocka_unit_test(malformed),
        cmocka_unit_test(across_shards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
