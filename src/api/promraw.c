/*
 * promraw.c - the raw series of a Prometheus query across a cluster (promraw.h).
 */
#include <stdlib.h>
#include <string.h>

#include "api/promraw.h"
#include "util/err.h"

static const char MAGIC[4] = {'F', 'V', 'P', 'R'};

int fv_promraw_begin(struct fv_buf *out, uint64_t subjects, uint32_t nsel)
{
    unsigned char h[20];
    memcpy(h, MAGIC, 4);
    fv_put_u32(h + 4, FV_PROMRAW_VERSION);
    fv_put_u64(h + 8, subjects);
    fv_put_u32(h + 16, nsel);
    return fv_buf_append(out, h, sizeof h);
}

static int put_label(struct fv_buf *out, const char *s)
{
    unsigned char n = (unsigned char)strlen(s); /* labels are shorter than 80 (promeval.h) */
    int rc = fv_buf_append(out, &n, 1);
    return rc ? rc : fv_buf_append(out, s, n);
}

int fv_promraw_add_sel(struct fv_buf *out, const struct fv_pe_raw *s, size_t n)
{
    unsigned char b[8];
    fv_put_u32(b, (uint32_t)n);
    int rc = fv_buf_append(out, b, 4);
    for (size_t i = 0; rc == FV_OK && i < n; i++) {
        const struct fv_pe_raw *x = &s[i];
        rc = put_label(out, x->l.name);
        if (rc == FV_OK) rc = put_label(out, x->l.signal);
        if (rc == FV_OK) rc = put_label(out, x->l.device);
        fv_put_u32(b, (uint32_t)x->n);
        if (rc == FV_OK) rc = fv_buf_append(out, b, 4);
        if (rc == FV_OK) rc = fv_buf_reserve(out, x->n * 16);
        for (size_t k = 0; rc == FV_OK && k < x->n; k++) {
            fv_put_u64(b, (uint64_t)x->t[k]);
            rc = fv_buf_append(out, b, 8);
        }
        for (size_t k = 0; rc == FV_OK && k < x->n; k++) {
            uint64_t bits;
            memcpy(&bits, &x->v[k], 8);
            fv_put_u64(b, bits);
            rc = fv_buf_append(out, b, 8);
        }
    }
    return rc;
}

struct rd {
    const unsigned char *p;
    size_t left;
};

static const unsigned char *take(struct rd *r, size_t n)
{
    if (r->left < n) return NULL;
    const unsigned char *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static int get_label(struct rd *r, char *dst, size_t cap)
{
    const unsigned char *n = take(r, 1), *s = n ? take(r, *n) : NULL;
    if (s == NULL || *n >= cap || memchr(s, 0, *n)) return FV_EINVAL; /* a NUL: not a label */
    memcpy(dst, s, *n);
    dst[*n] = '\0';
    return FV_OK;
}

static void free_raw(struct fv_pe_raw *x)
{
    free(x->t);
    free(x->v);
}

/* One series into x (zeroed). */
static int get_series(struct rd *r, struct fv_pe_raw *x)
{
    if (get_label(r, x->l.name, sizeof x->l.name) ||
        get_label(r, x->l.signal, sizeof x->l.signal) ||
        get_label(r, x->l.device, sizeof x->l.device))
        return FV_EINVAL;
    const unsigned char *c = take(r, 4);
    if (c == NULL) return FV_EINVAL;
    uint32_t n = fv_get_u32(c);
    if (n > r->left / 16) return FV_EINVAL;
    const unsigned char *t = take(r, (size_t)n * 8), *v = take(r, (size_t)n * 8);
    if (n == 0) return FV_OK;
    x->t = malloc((size_t)n * sizeof *x->t);
    x->v = malloc((size_t)n * sizeof *x->v);
    if (x->t == NULL || x->v == NULL) {
        free_raw(x);
        return FV_ENOMEM;
    }
    x->n = x->cap = n;
    for (uint32_t k = 0; k < n; k++) {
        x->t[k] = (int64_t)fv_get_u64(t + 8 * k);
        uint64_t bits = fv_get_u64(v + 8 * k);
        memcpy(&x->v[k], &bits, 8);
        if (k && x->t[k] < x->t[k - 1]) {
            free_raw(x);
            return FV_EINVAL;
        }
    }
    return FV_OK;
}

int fv_promraw_decode(const void *data, size_t len, struct fv_promraw *r)
{
    struct rd in = {data, len};
    const unsigned char *h = take(&in, 20);
    if (h == NULL || memcmp(h, MAGIC, 4) != 0 || fv_get_u32(h + 4) != FV_PROMRAW_VERSION)
        return FV_EINVAL;
    uint32_t nsel = fv_get_u32(h + 16);
    if (r->sel == NULL) {
        if (nsel > in.left / 4) return FV_EINVAL;
        r->sel = nsel ? calloc(nsel, sizeof *r->sel) : NULL;
        if (nsel && r->sel == NULL) return FV_ENOMEM;
        r->nsel = nsel;
    } else if (nsel != r->nsel) {
        return FV_EINVAL;
    }
    size_t *before = r->nsel ? calloc(r->nsel, sizeof *before) : NULL;
    if (r->nsel && before == NULL) return FV_ENOMEM;
    for (size_t i = 0; i < r->nsel; i++)
        before[i] = r->sel[i].n;
    int rc = FV_OK;
    for (size_t i = 0; rc == FV_OK && i < nsel; i++) {
        struct fv_promraw_sel *s = &r->sel[i];
        const unsigned char *c = take(&in, 4);
        uint32_t n = c ? fv_get_u32(c) : 0;
        if (c == NULL || n > in.left / 7) { /* a series takes 7 bytes at least */
            rc = FV_EINVAL;
            break;
        }
        if (s->cap - s->n < n) {
            size_t nc = s->n + n;
            struct fv_pe_raw *m = realloc(s->s, nc * sizeof *m);
            if (m == NULL) {
                rc = FV_ENOMEM;
                break;
            }
            s->s = m;
            s->cap = nc;
        }
        for (uint32_t k = 0; rc == FV_OK && k < n; k++) {
            memset(&s->s[s->n], 0, sizeof s->s[s->n]);
            rc = get_series(&in, &s->s[s->n]);
            if (rc == FV_OK) s->n++;
        }
    }
    if (rc == FV_OK && in.left) rc = FV_EINVAL;
    if (rc == FV_OK) r->subjects += fv_get_u64(h + 8);
    for (size_t i = 0; rc && i < r->nsel; i++) { /* r as before */
        while (r->sel[i].n > before[i])
            free_raw(&r->sel[i].s[--r->sel[i].n]);
    }
    free(before);
    return rc;
}

int fv_promraw_copy(const struct fv_promraw *r, size_t i, struct fv_pe_raw **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (i >= r->nsel || r->sel[i].n == 0) return FV_OK;
    const struct fv_promraw_sel *s = &r->sel[i];
    struct fv_pe_raw *c = calloc(s->n, sizeof *c);
    if (c == NULL) return FV_ENOMEM;
    for (size_t k = 0; k < s->n; k++) {
        c[k].l = s->s[k].l;
        size_t m = s->s[k].n;
        c[k].t = m ? malloc(m * sizeof *c[k].t) : NULL;
        c[k].v = m ? malloc(m * sizeof *c[k].v) : NULL;
        if (m && (c[k].t == NULL || c[k].v == NULL)) {
            for (size_t j = 0; j <= k; j++)
                free_raw(&c[j]);
            free(c);
            return FV_ENOMEM;
        }
        if (m) {
            memcpy(c[k].t, s->s[k].t, m * sizeof *c[k].t);
            memcpy(c[k].v, s->s[k].v, m * sizeof *c[k].v);
        }
        c[k].n = c[k].cap = m;
    }
    *out = c;
    *n = s->n;
    return FV_OK;
}

void fv_promraw_free(struct fv_promraw *r)
{
    for (size_t i = 0; i < r->nsel; i++) {
        for (size_t k = 0; k < r->sel[i].n; k++)
            free_raw(&r->sel[i].s[k]);
        free(r->sel[i].s);
    }
    free(r->sel);
    memset(r, 0, sizeof *r);
}
