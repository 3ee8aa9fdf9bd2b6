/* lastvals.c - see lastvals.h for the format and what an entry means. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/block.h"
#include "store/codec.h"
#include "store/lastvals.h"
#include "util/err.h"

/* Appends an entry (taking its value). */
static int push(struct fv_lastvals *lv, const struct fv_lastval *e)
{
    if (lv->n == lv->cap) {
        size_t nc = lv->cap ? lv->cap * 2 : 32;
        struct fv_lastval *m = realloc(lv->e, nc * sizeof *m);
        if (m == NULL) return FV_ENOMEM;
        lv->e = m;
        lv->cap = nc;
    }
    lv->e[lv->n++] = *e;
    return FV_OK;
}

/* Folds one entry (a sample, or another record's entry) into lv; v is copied unless amb. */
static int put_entry(struct fv_lastvals *lv, uint32_t field, int64_t last_t, int amb,
                     const struct fv_value *v)
{
    uintptr_t at = (uintptr_t)fv_map_get_u64(&lv->idx, field);
    if (at == 0) {
        struct fv_lastval e = {.field = field, .amb = (uint8_t)(amb != 0), .last_t = last_t};
        if (!amb && fv_value_copy(&e.v, v) != FV_OK) return FV_ENOMEM;
        if (fv_map_put_u64(&lv->idx, field, (void *)(uintptr_t)(lv->n + 1)) != FV_OK ||
            push(lv, &e) != FV_OK) {
            fv_map_del_u64(&lv->idx, field);
            fv_value_clear(&e.v);
            return FV_ENOMEM;
        }
        return FV_OK;
    }
    struct fv_lastval *e = &lv->e[at - 1];
    if (last_t < e->last_t) return FV_OK;
    if (last_t == e->last_t) {
        /* two samples at the last time: which one a reader sees depends on its order */
        fv_value_clear(&e->v);
        e->amb = 1;
        return FV_OK;
    }
    fv_value_clear(&e->v);
    e->last_t = last_t;
    e->amb = (uint8_t)(amb != 0);
    if (!amb && fv_value_copy(&e->v, v) != FV_OK) {
        e->amb = 1; /* no value: readers fall back, which is always right */
        return FV_ENOMEM;
    }
    return FV_OK;
}

int fv_lastvals_add(struct fv_lastvals *lv, int64_t t, uint32_t field, const struct fv_value *v)
{
    return put_entry(lv, field, t, v->kind == FV_VK_NONE, v);
}

int fv_lastvals_merge(struct fv_lastvals *dst, const struct fv_lastvals *src)
{
    int rc = FV_OK;
    for (size_t i = 0; rc == FV_OK && i < src->n; i++) {
        const struct fv_lastval *e = &src->e[i];
        rc = put_entry(dst, e->field, e->last_t, e->amb, &e->v);
    }
    return rc;
}

static int cmp_field(const void *a, const void *b)
{
    const struct fv_lastval *x = a, *y = b;
    return x->field < y->field ? -1 : x->field > y->field;
}

/* Entries by (last_t, field): the frames of the values' block. */
static int cmp_last(const void *a, const void *b)
{
    const struct fv_lastval *x = *(const struct fv_lastval *const *)a;
    const struct fv_lastval *y = *(const struct fv_lastval *const *)b;
    if (x->last_t != y->last_t) return x->last_t < y->last_t ? -1 : 1;
    return x->field < y->field ? -1 : x->field > y->field;
}

static void reindex(struct fv_lastvals *lv)
{
    if (lv->n) qsort(lv->e, lv->n, sizeof *lv->e, cmp_field);
    fv_map_free(&lv->idx); /* rebuilt by the next add, if any (see put_entry) */
    for (size_t i = 0; i < lv->n; i++)
        if (fv_map_put_u64(&lv->idx, lv->e[i].field, (void *)(uintptr_t)(i + 1)) != FV_OK) {
            fv_map_free(&lv->idx); /* lookups then use bsearch only; adds may duplicate */
            break;
        }
}

#define CHUNK 4096 /* values per block at most (block.h limits: columns, frames) */

/* Encodes the values of entries by[0..n) (by field) as one block, length first. */
static int encode_chunk(const struct fv_lastval **by, size_t n, struct fv_datum *d,
                        struct fv_block_frame *fr, struct fv_buf *tmp, struct fv_buf *out)
{
    qsort(by, n, sizeof *by, cmp_last);
    size_t nf = 0;
    for (size_t i = 0; i < n; i++) {
        d[i].field = by[i]->field;
        d[i].value = by[i]->v; /* shallow: the encoder only reads it */
        if (nf && fr[nf - 1].t == by[i]->last_t)
            fr[nf - 1].n++;
        else
            fr[nf++] = (struct fv_block_frame){by[i]->last_t, 1, &d[i], 0};
    }
    struct fv_block_in in = {.nframes = nf, .frames = fr};
    struct fv_block_meta m;
    fv_buf_reset(tmp);
    int rc = fv_block_encode(&in, tmp, &m);
    if (rc == FV_OK) rc = fv_put_uvarint(out, tmp->len);
    if (rc == FV_OK) rc = fv_buf_append(out, tmp->data, tmp->len);
    return rc;
}

int fv_lastvals_encode(struct fv_lastvals *lv, struct fv_buf *out)
{
    reindex(lv);
    size_t start = out->len, namb = 0, nv = 0;
    for (size_t i = 0; i < lv->n; i++)
        namb += lv->e[i].amb;
    nv = lv->n - namb;
    unsigned char ver = FV_LASTVALS_VERSION;
    int rc = fv_buf_append(out, &ver, 1);
    if (rc == FV_OK) rc = fv_put_uvarint(out, namb);
    for (size_t i = 0; rc == FV_OK && i < lv->n; i++)
        if (lv->e[i].amb) {
            rc = fv_put_uvarint(out, lv->e[i].field);
            if (rc == FV_OK) rc = fv_put_uvarint(out, fv_zigzag((uint64_t)lv->e[i].last_t));
        }
    if (rc == FV_OK) rc = fv_put_uvarint(out, nv);
    const struct fv_lastval **by = malloc((nv ? nv : 1) * sizeof *by);
    struct fv_datum *d = malloc((nv ? nv : 1) * sizeof *d);
    struct fv_block_frame *fr = malloc((nv ? nv : 1) * sizeof *fr);
    if (rc == FV_OK && (by == NULL || d == NULL || fr == NULL)) rc = FV_ENOMEM;
    struct fv_buf tmp = {0};
    size_t k = 0;
    for (size_t i = 0; rc == FV_OK && i < lv->n; i++)
        if (!lv->e[i].amb) by[k++] = &lv->e[i];
    /* runs of fields, halved when a block would break a reader's limit (large strings) */
    for (size_t at = 0, step = CHUNK; rc == FV_OK && at < nv;) {
        size_t n = nv - at < step ? nv - at : step, mark = out->len;
        rc = encode_chunk(by + at, n, d, fr, &tmp, out);
        if (rc == FV_ELIMIT && n > 1) {
            out->len = mark;
            step = (n + 1) / 2;
            rc = FV_OK;
            continue;
        }
        at += n;
    }
    fv_buf_free(&tmp);
    free(by);
    free(d);
    free(fr);
    if (rc) out->len = start;
    return rc;
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        fv_seterr(err, errlen, __VA_ARGS__);                                                       \
        rc = FV_ECORRUPT;                                                                          \
        goto out;                                                                                  \
    } while (0)

static int cmp_field_key(const void *a, const void *b)
{
    return cmp_field(a, b);
}

int fv_lastvals_decode(const unsigned char *p, size_t n, struct fv_lastvals *out, char *err,
                       size_t errlen)
{
    struct fv_rd r;
    fv_rd_init(&r, p, n);
    struct fv_block b = {0};
    uint8_t ver;
    uint64_t namb, nval;
    int rc = FV_OK;
    if (fv_rd_u8(&r, &ver) || ver != FV_LASTVALS_VERSION) BAD("last values: version");
    if (fv_rd_uvarint(&r, &namb) || namb > FV_LASTVALS_MAX || namb > n) BAD("last values: count");
    for (uint64_t i = 0; i < namb; i++) {
        uint64_t f, zt;
        if (fv_rd_uvarint(&r, &f) || fv_rd_uvarint(&r, &zt) || f > UINT32_MAX ||
            (out->n && out->e[out->n - 1].field >= f))
            BAD("last values: ambiguous entry %llu invalid", (unsigned long long)i);
        struct fv_lastval e = {.field = (uint32_t)f, .amb = 1, .last_t = (int64_t)fv_unzigzag(zt)};
        rc = push(out, &e);
        if (rc) goto out;
    }
    if (fv_rd_uvarint(&r, &nval) || nval > FV_LASTVALS_MAX) BAD("last values: value count");
    while (r.off < r.n) {
        uint64_t len;
        const unsigned char *q;
        if (fv_rd_uvarint(&r, &len) || len > r.n - r.off || fv_rd_bytes(&r, (size_t)len, &q))
            BAD("last values: block cut");
        fv_block_free(&b);
        rc = fv_block_decode(q, (size_t)len, NULL, 0, 0, &b, err, errlen);
        if (rc) goto out;
        if (out->n + b.ncols > FV_LASTVALS_MAX) BAD("last values: too many");
        for (size_t c = 0; c < b.ncols; c++) {
            const struct fv_block_col *col = &b.cols[c];
            if (col->n != 1 || col->v[0].kind == FV_VK_NONE)
                BAD("last values: field %u has %zu values", col->field, col->n);
            struct fv_lastval e = {.field = col->field, .last_t = b.t[col->row[0]]};
            rc = fv_value_copy(&e.v, &col->v[0]);
            if (rc == FV_OK) rc = push(out, &e);
            if (rc) {
                fv_value_clear(&e.v);
                goto out;
            }
        }
    }
    if (out->n != namb + nval)
        BAD("last values: %zu of %llu values", out->n - (size_t)namb, (unsigned long long)nval);
    if (out->n) qsort(out->e, out->n, sizeof *out->e, cmp_field_key);
    for (size_t i = 1; i < out->n; i++)
        if (out->e[i - 1].field == out->e[i].field)
            BAD("last values: field %u twice", out->e[i].field);
out:
    fv_block_free(&b);
    return rc;
}

const struct fv_lastval *fv_lastvals_find(const struct fv_lastvals *lv, uint32_t field)
{
    size_t lo = 0, hi = lv->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (lv->e[mid].field < field)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < lv->n && lv->e[lo].field == field ? &lv->e[lo] : NULL;
}

void fv_lastvals_clear(struct fv_lastvals *lv)
{
    for (size_t i = 0; i < lv->n; i++)
        fv_value_clear(&lv->e[i].v);
    free(lv->e);
    fv_map_free(&lv->idx);
    memset(lv, 0, sizeof *lv);
}
