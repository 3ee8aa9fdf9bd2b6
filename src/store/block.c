/* block.c - see block.h for the format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/block.h"
#include "store/block_int.h"
#include "store/codec.h"
#include "util/err.h"
#include "util/map.h"

/* Writers cap blocks well below this; readers refuse more (bounds allocations). */
#define MAX_REC FV_BLOCK_MAX_REC
#define MAX_EV  FV_BLOCK_MAX_REC

/* ---- encoding ---------------------------------------------------------------------------- */

struct colb {
    uint32_t field;
    size_t n, cap;
    uint32_t *row;
    const struct fv_value **v;
};

struct enc {
    struct colb *cols;
    size_t ncols, capcols;
    struct fv_map idx; /* field -> 1 + index in cols: a frame of many signals stays linear */
    int64_t *times;
    int64_t *groups;
    size_t nrec;
};

static void enc_free(struct enc *e)
{
    for (size_t i = 0; i < e->ncols; i++) {
        free(e->cols[i].row);
        free(e->cols[i].v);
    }
    free(e->cols);
    fv_map_free(&e->idx);
    free(e->times);
    free(e->groups);
}

static struct colb *col_for(struct enc *e, uint32_t field)
{
    uintptr_t at = (uintptr_t)fv_map_get_u64(&e->idx, field);
    if (at) return &e->cols[at - 1];
    if (e->ncols == e->capcols) {
        size_t nc = e->capcols ? e->capcols * 2 : 32;
        struct colb *c = realloc(e->cols, nc * sizeof *c);
        if (c == NULL) return NULL;
        e->cols = c;
        e->capcols = nc;
    }
    if (fv_map_put_u64(&e->idx, field, (void *)(uintptr_t)(e->ncols + 1)) != FV_OK) return NULL;
    struct colb *c = &e->cols[e->ncols++];
    memset(c, 0, sizeof *c);
    c->field = field;
    return c;
}

static int col_push(struct colb *c, uint32_t row, const struct fv_value *v)
{
    /* One value per signal per frame: a repeated signal in one record keeps the last. */
    if (c->n && c->row[c->n - 1] == row) {
        c->v[c->n - 1] = v;
        return FV_OK;
    }
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 64;
        uint32_t *r = realloc(c->row, nc * sizeof *r);
        if (r == NULL) return FV_ENOMEM;
        c->row = r;
        const struct fv_value **vv = realloc(c->v, nc * sizeof *vv);
        if (vv == NULL) return FV_ENOMEM;
        c->v = vv;
        c->cap = nc;
    }
    c->row[c->n] = row;
    c->v[c->n] = v;
    c->n++;
    return FV_OK;
}

static int cmp_col(const void *a, const void *b)
{
    uint32_t x = ((const struct colb *)a)->field, y = ((const struct colb *)b)->field;
    return x < y ? -1 : x > y;
}

/* Encodes the values of kind k (in row order) of column c; a column of doubles in every
 * frame (cnt == nrec) goes through the block's links. */
static int enc_kind(struct fv_buf *out, const struct colb *c, int k, size_t cnt, size_t nrec,
                    void *scratch, struct fv_f64_links *lk)
{
    int64_t *iv = scratch;
    double *dv = scratch;
    size_t j = 0;
    int rc = FV_OK;
    switch (k) {
    case FV_VK_DOUBLE:
        for (size_t i = 0; i < c->n; i++)
            if (c->v[i]->kind == k) dv[j++] = c->v[i]->u.d;
        return cnt == nrec && lk ? fv_enc_f64_linked(out, dv, c->field, lk)
                                 : fv_enc_f64(out, dv, cnt);
    case FV_VK_INT:
    case FV_VK_ENUM:
    case FV_VK_BOOL:
        for (size_t i = 0; i < c->n; i++)
            if (c->v[i]->kind == k) iv[j++] = c->v[i]->u.i;
        return fv_enc_i64(out, iv, cnt);
    case FV_VK_DOORS:
    case FV_VK_TIRES:
        for (size_t i = 0; i < c->n; i++)
            if (c->v[i]->kind == k) iv[j++] = c->v[i]->u.bits;
        return fv_enc_i64(out, iv, cnt);
    case FV_VK_LOCATION:
        for (size_t i = 0; i < c->n; i++)
            if (c->v[i]->kind == k) dv[j++] = c->v[i]->u.loc.lat;
        rc = fv_enc_f64(out, dv, cnt);
        j = 0;
        for (size_t i = 0; rc == FV_OK && i < c->n; i++)
            if (c->v[i]->kind == k) dv[j++] = c->v[i]->u.loc.lon;
        return rc ? rc : fv_enc_f64(out, dv, cnt);
    case FV_VK_TIME:
        for (int part = 0; part < 3 && rc == FV_OK; part++) {
            j = 0;
            for (size_t i = 0; i < c->n; i++)
                if (c->v[i]->kind == k)
                    iv[j++] = part == 0   ? c->v[i]->u.time.h
                              : part == 1 ? c->v[i]->u.time.m
                                          : c->v[i]->u.time.s;
            rc = fv_enc_i64(out, iv, cnt);
        }
        return rc;
    case FV_VK_STRING: {
        const unsigned char **s = malloc(cnt * sizeof *s);
        uint32_t *len = malloc(cnt * sizeof *len);
        if (s == NULL || len == NULL) {
            free(s);
            free(len);
            return FV_ENOMEM;
        }
        for (size_t i = 0; i < c->n; i++)
            if (c->v[i]->kind == k) {
                const char *str = c->v[i]->u.s ? c->v[i]->u.s : "";
                s[j] = (const unsigned char *)str;
                len[j++] = (uint32_t)strlen(str);
            }
        rc = fv_enc_str(out, s, len, cnt);
        free(s);
        free(len);
        return rc;
    }
    default:
        return FV_OK; /* no payload */
    }
}

#define NKINDS (FV_VK_OTHER + 1)

static int enc_col(struct fv_buf *out, const struct colb *c, size_t nrec, int64_t *scratch,
                   struct fv_f64_links *lk)
{
    int rc;
    struct fv_buf body = {0};
    size_t kcount[NKINDS] = {0};
    rc = fv_put_uvarint(&body, c->n);
    if (rc == FV_OK && c->n < nrec) {
        for (size_t i = 0; i < c->n; i++)
            scratch[i] = c->row[i];
        rc = fv_enc_i64(&body, scratch, c->n);
    }
    if (rc == FV_OK) {
        for (size_t i = 0; i < c->n; i++) {
            uint8_t k = c->v[i]->kind < NKINDS ? c->v[i]->kind : FV_VK_OTHER;
            kcount[k]++;
            scratch[i] = (int64_t)(k | ((unsigned)c->v[i]->member << 8));
        }
        rc = fv_enc_i64(&body, scratch, c->n);
    }
    for (int k = 0; rc == FV_OK && k < NKINDS; k++)
        if (kcount[k]) rc = enc_kind(&body, c, k, kcount[k], nrec, scratch, lk);
    if (rc == FV_OK) rc = fv_put_uvarint(out, c->field);
    if (rc == FV_OK) rc = fv_put_uvarint(out, body.len);
    if (rc == FV_OK) rc = fv_buf_append(out, body.data, body.len);
    fv_buf_free(&body);
    return rc;
}

int fv_block_encode(const struct fv_block_in *in, struct fv_buf *out, struct fv_block_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    if (in->nframes > MAX_REC || in->nev > MAX_EV) return FV_ELIMIT;
    struct enc e = {0};
    int rc = FV_OK;
    if (in->nframes) {
        e.times = malloc(in->nframes * sizeof *e.times);
        e.groups = malloc(in->nframes * sizeof *e.groups);
        if (e.times == NULL || e.groups == NULL) {
            enc_free(&e);
            return FV_ENOMEM;
        }
    }
    for (size_t f = 0; f < in->nframes && rc == FV_OK; f++) {
        const struct fv_block_frame *fr = &in->frames[f];
        int have = 0;
        for (uint32_t k = 0; k < fr->n && rc == FV_OK; k++) {
            const struct fv_datum *d = &fr->d[k];
            if (in->keep && !in->keep(in->keep_arg, d->field)) continue;
            if (!have) {
                if (e.nrec && fr->t < e.times[e.nrec - 1]) {
                    rc = FV_EINVAL; /* readers refuse frames out of time order */
                    break;
                }
                e.groups[e.nrec] = fr->group;
                e.times[e.nrec++] = fr->t;
                have = 1;
            }
            struct colb *c = col_for(&e, d->field);
            if (c == NULL)
                rc = FV_ENOMEM;
            else
                rc = col_push(c, (uint32_t)(e.nrec - 1), &d->value);
        }
    }
    if (rc || (e.nrec == 0 && in->nev == 0)) goto done;
    if (e.ncols > FV_BLOCK_MAX_COLS) {
        rc = FV_ELIMIT;
        goto done;
    }
    size_t maxn = e.nrec > in->nev ? e.nrec : in->nev;
    int64_t *scratch = malloc((maxn ? maxn : 1) * sizeof *scratch);
    if (scratch == NULL) {
        rc = FV_ENOMEM;
        goto done;
    }
    size_t start = out->len;
    unsigned char ver = 1; /* set once the events are written */
    rc = fv_buf_append(out, &ver, 1);
    if (rc == FV_OK) rc = fv_put_uvarint(out, e.nrec);
    if (rc == FV_OK && e.nrec) rc = fv_enc_i64(out, e.times, e.nrec);
    if (rc == FV_OK && e.nrec) rc = fv_enc_i64(out, e.groups, e.nrec);
    if (e.ncols) qsort(e.cols, e.ncols, sizeof *e.cols, cmp_col);
    if (rc == FV_OK) rc = fv_put_uvarint(out, e.ncols);
    /* NULL (out of memory): no column is LINKED, nothing else lost */
    struct fv_f64_links *lk = e.nrec ? fv_f64_links_new(e.nrec) : NULL;
    for (size_t i = 0; rc == FV_OK && i < e.ncols; i++)
        rc = enc_col(out, &e.cols[i], e.nrec, scratch, lk);
    fv_f64_links_free(lk);
    unsigned char evver = 1;
    if (rc == FV_OK) rc = fv_block_enc_events(out, in, &evver);
    if (rc == FV_OK) out->data[start] = evver; /* 2 only when the events need it */
    free(scratch);
    if (rc == FV_OK && out->len - start > FV_BLOCK_MAX_RAW) rc = FV_ELIMIT;
    if (rc) {
        out->len = start;
        goto done;
    }
    meta->nrec = (uint32_t)e.nrec;
    meta->nev = (uint32_t)in->nev;
    meta->ndatums = 0;
    for (size_t i = 0; i < e.ncols; i++)
        meta->ndatums += (uint32_t)e.cols[i].n;
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    if (e.nrec) {
        lo = e.times[0];
        hi = e.times[e.nrec - 1];
    }
    for (size_t i = 0; i < in->nev; i++) {
        if (in->ev[i].t < lo) lo = in->ev[i].t;
        if (in->ev[i].t > hi) hi = in->ev[i].t;
    }
    meta->min_t = lo;
    meta->max_t = hi;
done:
    enc_free(&e);
    return rc;
}

/* ---- decoding ---------------------------------------------------------------------------- */

void fv_block_free(struct fv_block *b)
{
    free(b->t);
    free(b->group);
    for (size_t i = 0; i < b->ncols; i++) {
        for (size_t j = 0; j < b->cols[i].n; j++)
            fv_value_clear(&b->cols[i].v[j]);
        free(b->cols[i].row);
        free(b->cols[i].v);
    }
    free(b->cols);
    free(b->ev);
    free(b->evmem);
    memset(b, 0, sizeof *b);
}

const struct fv_block_col *fv_block_col(const struct fv_block *b, uint32_t field)
{
    size_t lo = 0, hi = b->ncols;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (b->cols[mid].field < field)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < b->ncols && b->cols[lo].field == field ? &b->cols[lo] : NULL;
}

#define CORRUPT(...)                                                                               \
    do {                                                                                           \
        fv_seterr(err, errlen, __VA_ARGS__);                                                       \
        return FV_ECORRUPT;                                                                        \
    } while (0)

/* What a LINKED column's reference is resolved from: the block's column headers, scanned
 * again from cols_off (each column before the current one was checked by the main scan). */
struct linkctx {
    const unsigned char *p;
    size_t n, cols_off, nrec;
    uint64_t ncols;
    uint32_t cur; /* the field being decoded: a reference must come before it */
    int64_t *buf; /* 3 * nrec, allocated at the first reference */
};

/* fv_f64_ref_fn: the mantissas of column id, which must hold n doubles and nothing else,
 * written DECIMAL (codec.h D9). */
static int link_resolve(void *arg, uint32_t id, size_t n, const int64_t **m)
{
    struct linkctx *x = arg;
    if (id >= x->cur || n == 0 || n > x->nrec) return FV_ECORRUPT;
    if (x->buf == NULL && (x->buf = malloc(3 * x->nrec * sizeof *x->buf)) == NULL) return FV_ENOMEM;
    struct fv_rd r;
    fv_rd_init(&r, x->p, x->n);
    r.off = x->cols_off;
    for (uint64_t i = 0; i < x->ncols; i++) {
        uint64_t field, nbytes, np;
        const unsigned char *body;
        if (fv_rd_uvarint(&r, &field) || fv_rd_uvarint(&r, &nbytes) ||
            fv_rd_bytes(&r, (size_t)nbytes, &body) || field >= x->cur)
            return FV_ECORRUPT;
        if (field != id) continue;
        struct fv_rd cr;
        fv_rd_init(&cr, body, (size_t)nbytes);
        if (fv_rd_uvarint(&cr, &np) || np != n) return FV_ECORRUPT;
        if (np < x->nrec && fv_dec_i64(&cr, x->buf, n)) return FV_ECORRUPT; /* rows */
        if (fv_dec_i64(&cr, x->buf, n)) return FV_ECORRUPT;                 /* kinds */
        for (size_t j = 0; j < n; j++)
            if ((x->buf[j] & 0xff) != FV_VK_DOUBLE) return FV_ECORRUPT;
        int decimal = 0;
        if (fv_dec_f64_ex(&cr, (double *)(void *)(x->buf + n), n, x->buf + 2 * n, &decimal, NULL,
                          NULL) ||
            !decimal)
            return FV_ECORRUPT;
        *m = x->buf + 2 * n;
        return FV_OK;
    }
    return FV_ECORRUPT;
}

static int dec_kind_values(struct fv_rd *r, struct fv_block_col *c, int k, size_t cnt, int64_t *iv,
                           struct linkctx *lk, char *err, size_t errlen)
{
    double *dv = (double *)iv;
    int64_t *iv2 = iv + cnt, *iv3 = iv + 2 * cnt;
    size_t j = 0;
    switch (k) {
    case FV_VK_DOUBLE:
        if (fv_dec_f64_ex(r, dv, cnt, NULL, NULL, link_resolve, lk)) CORRUPT("double values");
        for (size_t i = 0; i < c->n; i++)
            if (c->v[i].kind == k) c->v[i].u.d = dv[j++];
        return FV_OK;
    case FV_VK_INT:
    case FV_VK_ENUM:
    case FV_VK_BOOL:
    case FV_VK_DOORS:
    case FV_VK_TIRES:
        if (fv_dec_i64(r, iv, cnt)) CORRUPT("integer values");
        for (size_t i = 0; i < c->n; i++)
            if (c->v[i].kind == k) {
                if (k == FV_VK_DOORS || k == FV_VK_TIRES)
                    c->v[i].u.bits = (uint32_t)iv[j++];
                else
                    c->v[i].u.i = iv[j++];
            }
        return FV_OK;
    case FV_VK_LOCATION:
        if (fv_dec_f64(r, dv, cnt)) CORRUPT("latitudes");
        for (size_t i = 0; i < c->n; i++)
            if (c->v[i].kind == k) c->v[i].u.loc.lat = dv[j++];
        j = 0;
        if (fv_dec_f64(r, dv, cnt)) CORRUPT("longitudes");
        for (size_t i = 0; i < c->n; i++)
            if (c->v[i].kind == k) c->v[i].u.loc.lon = dv[j++];
        return FV_OK;
    case FV_VK_TIME:
        if (fv_dec_i64(r, iv, cnt) || fv_dec_i64(r, iv2, cnt) || fv_dec_i64(r, iv3, cnt))
            CORRUPT("time values");
        for (size_t i = 0; i < c->n; i++)
            if (c->v[i].kind == k) {
                c->v[i].u.time.h = (int32_t)iv[j];
                c->v[i].u.time.m = (int32_t)iv2[j];
                c->v[i].u.time.s = (int32_t)iv3[j];
                j++;
            }
        return FV_OK;
    case FV_VK_STRING: {
        const unsigned char **s = malloc(cnt * sizeof *s);
        uint32_t *len = malloc(cnt * sizeof *len);
        int rc = FV_OK;
        if (s == NULL || len == NULL)
            rc = FV_ENOMEM;
        else if (fv_dec_str(r, cnt, s, len)) {
            fv_seterr(err, errlen, "string values");
            rc = FV_ECORRUPT;
        }
        for (size_t i = 0; rc == FV_OK && i < c->n; i++)
            if (c->v[i].kind == k) {
                char *copy = malloc((size_t)len[j] + 1);
                if (copy == NULL) {
                    rc = FV_ENOMEM;
                    break;
                }
                memcpy(copy, s[j], len[j]);
                copy[len[j]] = '\0';
                c->v[i].u.s = copy;
                j++;
            }
        free(s);
        free(len);
        return rc;
    }
    default:
        return FV_OK;
    }
}

static int dec_col(struct fv_rd *r, size_t nrec, struct fv_block_col *c, int64_t *scratch,
                   struct linkctx *lk, char *err, size_t errlen)
{
    uint64_t np;
    if (fv_rd_uvarint(r, &np) || np == 0 || np > nrec) CORRUPT("column %u: row count", c->field);
    c->row = malloc((size_t)np * sizeof *c->row);
    c->v = calloc((size_t)np, sizeof *c->v);
    if (c->row == NULL || c->v == NULL) return FV_ENOMEM; /* c->n still 0: safe to free */
    c->n = (size_t)np;
    if (c->n < nrec) {
        if (fv_dec_i64(r, scratch, c->n)) CORRUPT("column %u: rows", c->field);
        for (size_t i = 0; i < c->n; i++) {
            if (scratch[i] < 0 || (uint64_t)scratch[i] >= nrec ||
                (i && scratch[i] <= scratch[i - 1]))
                CORRUPT("column %u: row %zu out of order", c->field, i);
            c->row[i] = (uint32_t)scratch[i];
        }
    } else {
        for (size_t i = 0; i < c->n; i++)
            c->row[i] = (uint32_t)i;
    }
    if (fv_dec_i64(r, scratch, c->n)) CORRUPT("column %u: kinds", c->field);
    size_t kcount[NKINDS] = {0};
    for (size_t i = 0; i < c->n; i++) {
        uint64_t k = (uint64_t)scratch[i];
        if ((k & 0xff) >= NKINDS || k > 0xffff) CORRUPT("column %u: bad kind", c->field);
        c->v[i].kind = (uint8_t)(k & 0xff);
        c->v[i].member = (uint8_t)(k >> 8);
        kcount[k & 0xff]++;
    }
    for (int k = 0; k < NKINDS; k++) {
        if (!kcount[k]) continue;
        int rc = dec_kind_values(r, c, k, kcount[k], scratch, lk, err, errlen);
        if (rc) {
            if (rc == FV_ECORRUPT) {
                char sub[128];
                snprintf(sub, sizeof sub, "%s", err ? err : "");
                fv_seterr(err, errlen, "column %u: %s", c->field, sub);
            }
            return rc;
        }
    }
    if (r->off != r->n) CORRUPT("column %u: %zu trailing bytes", c->field, r->n - r->off);
    return FV_OK;
}

static int wanted(const uint32_t *fields, size_t n, uint32_t f)
{
    if (fields == NULL) return 1;
    for (size_t i = 0; i < n; i++)
        if (fields[i] == f) return 1;
    return 0;
}

int fv_block_decode(const unsigned char *p, size_t n, const uint32_t *fields, size_t nfields,
                    int want_events, struct fv_block *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct linkctx lk = {.buf = NULL};
    struct fv_rd r;
    fv_rd_init(&r, p, n);
    uint8_t ver;
    uint64_t nrec, ncols;
    if (fv_rd_u8(&r, &ver) || ver < 1 || ver > FV_BLOCK_VERSION) CORRUPT("block version");
    if (fv_rd_uvarint(&r, &nrec) || nrec > MAX_REC) CORRUPT("frame count");
    int rc = FV_OK;
    int64_t *scratch = malloc(3 * (nrec ? nrec : 1) * sizeof *scratch);
    if (scratch == NULL) return FV_ENOMEM;
    if (nrec) {
        out->t = malloc(nrec * sizeof *out->t);
        if (out->t == NULL) {
            rc = FV_ENOMEM;
            goto fail;
        }
        out->nrec = (size_t)nrec;
        if (fv_dec_i64(&r, out->t, out->nrec)) {
            fv_seterr(err, errlen, "frame times");
            rc = FV_ECORRUPT;
            goto fail;
        }
        for (size_t i = 1; i < out->nrec; i++)
            if (out->t[i] < out->t[i - 1]) {
                fv_seterr(err, errlen, "frame times out of order at %zu", i);
                rc = FV_ECORRUPT;
                goto fail;
            }
        out->group = malloc(out->nrec * sizeof *out->group);
        if (out->group == NULL) {
            rc = FV_ENOMEM;
            goto fail;
        }
        if (fv_dec_i64(&r, scratch, out->nrec)) {
            fv_seterr(err, errlen, "frame groups");
            rc = FV_ECORRUPT;
            goto fail;
        }
        for (size_t i = 0; i < out->nrec; i++) {
            if (scratch[i] < 0 || scratch[i] > UINT32_MAX) {
                fv_seterr(err, errlen, "frame group out of range at %zu", i);
                rc = FV_ECORRUPT;
                goto fail;
            }
            out->group[i] = (uint32_t)scratch[i];
        }
    }
    if (fv_rd_uvarint(&r, &ncols) || ncols > FV_BLOCK_MAX_COLS || ncols > n) {
        fv_seterr(err, errlen, "column count");
        rc = FV_ECORRUPT;
        goto fail;
    }
    size_t want = fields ? nfields : (size_t)ncols;
    if (want > ncols) want = (size_t)ncols;
    out->cols = calloc(want ? want : 1, sizeof *out->cols);
    if (out->cols == NULL) {
        rc = FV_ENOMEM;
        goto fail;
    }
    lk = (struct linkctx){.p = p, .n = n, .cols_off = r.off, .nrec = out->nrec, .ncols = ncols};
    uint64_t prev = 0;
    for (uint64_t i = 0; i < ncols; i++) {
        uint64_t field, nbytes;
        const unsigned char *body;
        if (fv_rd_uvarint(&r, &field) || field > UINT32_MAX || (i && field <= prev) ||
            fv_rd_uvarint(&r, &nbytes) || nbytes > r.n - r.off ||
            fv_rd_bytes(&r, (size_t)nbytes, &body)) {
            fv_seterr(err, errlen, "column %llu header", (unsigned long long)i);
            rc = FV_ECORRUPT;
            goto fail;
        }
        prev = field;
        if (!wanted(fields, nfields, (uint32_t)field) || out->ncols == want) continue;
        struct fv_block_col *c = &out->cols[out->ncols++];
        c->field = (uint32_t)field;
        struct fv_rd cr;
        fv_rd_init(&cr, body, (size_t)nbytes);
        lk.cur = c->field;
        rc = dec_col(&cr, out->nrec, c, scratch, &lk, err, errlen);
        if (rc) goto fail;
    }
    if (want_events) {
        rc = fv_block_dec_events(&r, ver, out, err, errlen);
        if (rc) goto fail;
        if (r.off != r.n) {
            fv_seterr(err, errlen, "%zu trailing bytes", r.n - r.off);
            rc = FV_ECORRUPT;
            goto fail;
        }
    }
    free(scratch);
    free(lk.buf);
    return FV_OK;
fail:
    free(scratch);
    free(lk.buf);
    fv_block_free(out);
    return rc;
}
