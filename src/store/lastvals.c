/* lastvals.c - see lastvals.h for the format and what an entry means. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "store/block.h"
#include "store/codec.h"
#include "store/lastvals.h"
#include "util/err.h"

/* Version 2 entry flags (low bits of the entry's head varint) and escapes. */
#define V2_AMB       1u
#define V2_SAME_KIND 2u
#define V2_DT_ESCAPE (UINT64_MAX >> 2) /* the time difference follows as its own varint */
#define V2_RAW_F64   31u               /* a double's 8 bytes follow */

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

int fv_lastvals_encode_v1(struct fv_lastvals *lv, struct fv_buf *out)
{
    reindex(lv);
    size_t start = out->len, namb = 0, nv = 0;
    for (size_t i = 0; i < lv->n; i++)
        namb += lv->e[i].amb;
    nv = lv->n - namb;
    unsigned char ver = 1;
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

/* ---- version 2 ---- */

static const double p10[FV_CODEC_F64_MAX_EXP + 1] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,
                                                     1e7,  1e8,  1e9,  1e10, 1e11, 1e12, 1e13,
                                                     1e14, 1e15, 1e16, 1e17, 1e18};

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* A double as varint((zz(m) << 5) | e) with v == m / 10^e bit for bit, or varint(31) and its
 * 8 bytes (NaN, infinities, -0.0, too many digits). */
static int put_f64(struct fv_buf *out, double v)
{
    for (unsigned e = 0; e <= FV_CODEC_F64_MAX_EXP; e++) {
        double x = v * p10[e];
        if (!(x > -9007199254740992.0 && x < 9007199254740992.0)) break; /* |m| < 2^53 */
        if (x != (double)(int64_t)x) continue;
        int64_t m = (int64_t)x;
        if (dbits((double)m / p10[e]) != dbits(v)) continue;
        return fv_put_uvarint(out, fv_zigzag((uint64_t)m) << 5 | e);
    }
    unsigned char raw[9] = {V2_RAW_F64};
    uint64_t u = dbits(v);
    for (int i = 0; i < 8; i++)
        raw[1 + i] = (unsigned char)(u >> (8 * i));
    return fv_buf_append(out, raw, sizeof raw);
}

static int put_zz(struct fv_buf *out, int64_t x)
{
    return fv_put_uvarint(out, fv_zigzag((uint64_t)x));
}

static int put_value_v2(struct fv_buf *out, const struct fv_value *v)
{
    int rc = FV_OK;
    switch (v->kind) {
    case FV_VK_DOUBLE:
        return put_f64(out, v->u.d);
    case FV_VK_LOCATION:
        rc = put_f64(out, v->u.loc.lat);
        return rc ? rc : put_f64(out, v->u.loc.lon);
    case FV_VK_INT:
    case FV_VK_ENUM:
    case FV_VK_BOOL:
        return put_zz(out, v->u.i);
    case FV_VK_DOORS:
    case FV_VK_TIRES:
        return fv_put_uvarint(out, v->u.bits);
    case FV_VK_TIME:
        rc = put_zz(out, v->u.time.h);
        if (rc == FV_OK) rc = put_zz(out, v->u.time.m);
        return rc ? rc : put_zz(out, v->u.time.s);
    case FV_VK_STRING: {
        size_t len = v->u.s ? strlen(v->u.s) : 0;
        rc = fv_put_uvarint(out, len);
        return rc ? rc : fv_buf_append(out, v->u.s, len);
    }
    default: /* INVALID, OTHER: the kind says it all */
        return FV_OK;
    }
}

/* Versions 2 and 3 (lastvals.h). */
static int encode_dense(struct fv_lastvals *lv, struct fv_buf *out, unsigned char ver)
{
    reindex(lv);
    size_t start = out->len;
    int64_t tref = 0;
    for (size_t i = 0; i < lv->n; i++)
        if (i == 0 || lv->e[i].last_t > tref) tref = lv->e[i].last_t;
    int uniform = ver >= 3; /* every entry at tref, none ambiguous */
    for (size_t i = 0; uniform && i < lv->n; i++)
        if (lv->e[i].amb || lv->e[i].last_t != tref) uniform = 0;
    int rc = fv_buf_append(out, &ver, 1);
    if (rc == FV_OK) rc = put_zz(out, tref);
    if (rc == FV_OK)
        rc = fv_put_uvarint(out,
                            ver >= 3 ? (uint64_t)lv->n << 1 | (unsigned)uniform : (uint64_t)lv->n);
    uint32_t prev_field = 0;
    const struct fv_value *prev = NULL;
    for (size_t i = 0; rc == FV_OK && i < lv->n; i++) {
        const struct fv_lastval *e = &lv->e[i];
        uint64_t dt = (uint64_t)tref - (uint64_t)e->last_t; /* >= 0: tref is the latest */
        int same = !e->amb && prev && prev->kind == e->v.kind && prev->member == e->v.member;
        uint64_t flags = (e->amb ? V2_AMB : 0) | (same ? V2_SAME_KIND : 0);
        if (uniform) {
            rc = fv_put_uvarint(out, (uint64_t)(e->field - prev_field) << 1 | (unsigned)same);
        } else {
            rc = fv_put_uvarint(out, e->field - prev_field);
            if (rc == FV_OK && dt < V2_DT_ESCAPE)
                rc = fv_put_uvarint(out, dt << 2 | flags);
            else if (rc == FV_OK) {
                rc = fv_put_uvarint(out, V2_DT_ESCAPE << 2 | flags);
                if (rc == FV_OK) rc = fv_put_uvarint(out, dt);
            }
        }
        if (rc == FV_OK && !e->amb && !same) {
            unsigned char km[2] = {e->v.kind, e->v.member};
            if (ver >= 3 && e->v.kind > 15)
                rc = FV_EINVAL; /* no such kind (payload.h): 4 bits hold every one */
            else if (ver >= 3)
                rc = fv_put_uvarint(out, (uint64_t)e->v.member << 4 | e->v.kind);
            else
                rc = fv_buf_append(out, km, 2);
        }
        if (rc == FV_OK && !e->amb) rc = put_value_v2(out, &e->v);
        if (!e->amb) prev = &e->v;
        prev_field = e->field;
    }
    if (rc) out->len = start;
    return rc;
}

int fv_lastvals_encode(struct fv_lastvals *lv, struct fv_buf *out)
{
    return encode_dense(lv, out, FV_LASTVALS_VERSION);
}

int fv_lastvals_encode_v2(struct fv_lastvals *lv, struct fv_buf *out)
{
    return encode_dense(lv, out, 2);
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

static int rd_f64(struct fv_rd *r, double *v)
{
    uint64_t h;
    if (fv_rd_uvarint(r, &h)) return FV_ECORRUPT;
    if (h == V2_RAW_F64) {
        const unsigned char *q;
        if (fv_rd_bytes(r, 8, &q)) return FV_ECORRUPT;
        uint64_t u = 0;
        for (int i = 0; i < 8; i++)
            u |= (uint64_t)q[i] << (8 * i);
        memcpy(v, &u, sizeof *v);
        return FV_OK;
    }
    unsigned e = (unsigned)(h & 31);
    if (e > FV_CODEC_F64_MAX_EXP) return FV_ECORRUPT;
    uint64_t zz = h >> 5;
    if (zz >= (uint64_t)1 << 54) return FV_ECORRUPT; /* |m| < 2^53, as written */
    *v = (double)(int64_t)fv_unzigzag(zz) / p10[e];
    return FV_OK;
}

static int rd_zz32(struct fv_rd *r, int32_t *v)
{
    uint64_t u;
    if (fv_rd_uvarint(r, &u)) return FV_ECORRUPT;
    int64_t x = (int64_t)fv_unzigzag(u);
    if (x < INT32_MIN || x > INT32_MAX) return FV_ECORRUPT;
    *v = (int32_t)x;
    return FV_OK;
}

static int rd_value_v2(struct fv_rd *r, struct fv_value *v)
{
    uint64_t u;
    switch (v->kind) {
    case FV_VK_DOUBLE:
        return rd_f64(r, &v->u.d);
    case FV_VK_LOCATION:
        return rd_f64(r, &v->u.loc.lat) ? FV_ECORRUPT : rd_f64(r, &v->u.loc.lon);
    case FV_VK_INT:
    case FV_VK_ENUM:
    case FV_VK_BOOL:
        if (fv_rd_uvarint(r, &u)) return FV_ECORRUPT;
        v->u.i = (int64_t)fv_unzigzag(u);
        return FV_OK;
    case FV_VK_DOORS:
    case FV_VK_TIRES:
        if (fv_rd_uvarint(r, &u) || u > UINT32_MAX) return FV_ECORRUPT;
        v->u.bits = (uint32_t)u;
        return FV_OK;
    case FV_VK_TIME:
        if (rd_zz32(r, &v->u.time.h) || rd_zz32(r, &v->u.time.m) || rd_zz32(r, &v->u.time.s))
            return FV_ECORRUPT;
        return FV_OK;
    case FV_VK_STRING: {
        const unsigned char *q;
        if (fv_rd_uvarint(r, &u) || u > r->n - r->off || fv_rd_bytes(r, (size_t)u, &q) ||
            memchr(q, 0, (size_t)u) != NULL)
            return FV_ECORRUPT;
        char *s = malloc((size_t)u + 1);
        if (s == NULL) return FV_ENOMEM;
        memcpy(s, q, (size_t)u);
        s[u] = '\0';
        v->u.s = s;
        return FV_OK;
    }
    case FV_VK_INVALID:
    case FV_VK_OTHER:
        return FV_OK;
    default: /* NONE is never a value; unknown kinds are refused */
        return FV_ECORRUPT;
    }
}

/* Decodes a version 2 or 3 body into out; or, with one, only the entry of field want into
 * *one (*found; its value the caller's), stopping there. */
static int decode_dense(struct fv_rd *r, unsigned ver, struct fv_lastvals *out, uint32_t want,
                        struct fv_lastval *one, int *found, char *err, size_t errlen)
{
    uint64_t ztref, n;
    int rc = FV_OK, uniform = 0;
    if (fv_rd_uvarint(r, &ztref) || fv_rd_uvarint(r, &n)) BAD("last values: header");
    if (ver >= 3) {
        uniform = (int)(n & 1);
        n >>= 1;
    }
    if (n > FV_LASTVALS_MAX || n > r->n - r->off) BAD("last values: header");
    int64_t tref = (int64_t)fv_unzigzag(ztref);
    uint64_t field = 0;
    int have_prev = 0;
    uint8_t prev_kind = 0, prev_member = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t df, h = 0, dt;
        if (fv_rd_uvarint(r, &df) || (!uniform && fv_rd_uvarint(r, &h)))
            BAD("last values: entry %llu: field", (unsigned long long)i);
        if (uniform) { /* field delta << 1 | same; time tref, not ambiguous */
            h = (df & 1) ? V2_SAME_KIND : 0;
            df >>= 1;
        }
        if ((i && df == 0) || df > UINT32_MAX - field)
            BAD("last values: entry %llu: field", (unsigned long long)i);
        field += df;
        if (one && field > want) return FV_OK; /* ascending: not there */
        dt = h >> 2;
        if (dt == V2_DT_ESCAPE && (fv_rd_uvarint(r, &dt) || dt < V2_DT_ESCAPE))
            BAD("last values: entry %llu: time", (unsigned long long)i);
        int amb = (h & V2_AMB) != 0, same = (h & V2_SAME_KIND) != 0;
        if (amb && same) BAD("last values: entry %llu: flags", (unsigned long long)i);
        struct fv_lastval e = {.field = (uint32_t)field,
                               .amb = (uint8_t)amb,
                               .last_t = (int64_t)((uint64_t)tref - dt)};
        if (!amb) {
            const unsigned char *km;
            if (same && !have_prev) BAD("last values: entry %llu: no kind", (unsigned long long)i);
            uint64_t kmv;
            if (same) {
                e.v.kind = prev_kind;
                e.v.member = prev_member;
            } else if (ver >= 3) { /* varint member << 4 | kind */
                if (fv_rd_uvarint(r, &kmv) || kmv > 0xfffu)
                    BAD("last values: entry %llu: kind", (unsigned long long)i);
                e.v.kind = (uint8_t)(kmv & 15u);
                e.v.member = (uint8_t)(kmv >> 4);
            } else if (fv_rd_bytes(r, 2, &km)) {
                BAD("last values: entry %llu: cut", (unsigned long long)i);
            } else {
                e.v.kind = km[0];
                e.v.member = km[1];
            }
            rc = rd_value_v2(r, &e.v);
            if (rc == FV_ECORRUPT)
                BAD("last values: entry %llu: value (kind %u)", (unsigned long long)i, e.v.kind);
            if (rc) goto out;
        }
        if (one && field == want) {
            *one = e;
            *found = 1;
            return FV_OK;
        }
        if (!amb) { /* (before the value goes: clearing resets its kind) */
            have_prev = 1;
            prev_kind = e.v.kind;
            prev_member = e.v.member;
        }
        rc = one ? FV_OK : push(out, &e);
        if (rc || one) fv_value_clear(&e.v);
        if (rc) goto out;
    }
    if (r->off != r->n) BAD("last values: %zu trailing bytes", r->n - r->off);
out:
    return rc;
}

int fv_lastvals_decode(const unsigned char *p, size_t n, struct fv_lastvals *out, char *err,
                       size_t errlen)
{
    if (n > 0 && (p[0] == 2 || p[0] == 3)) {
        struct fv_rd r2;
        fv_rd_init(&r2, p + 1, n - 1);
        return decode_dense(&r2, p[0], out, 0, NULL, NULL, err, errlen);
    }
    struct fv_rd r;
    fv_rd_init(&r, p, n);
    struct fv_block b = {0};
    uint8_t ver;
    uint64_t namb, nval;
    int rc = FV_OK;
    if (fv_rd_u8(&r, &ver) || ver != 1) BAD("last values: version");
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

int fv_lastvals_mem_make(struct fv_lastvals *lv, struct fv_lastvals_mem **out)
{
    *out = NULL;
    struct fv_buf b = {0};
    int rc = fv_lastvals_encode(lv, &b);
    if (rc == FV_OK && b.len > UINT32_MAX) rc = FV_ELIMIT;
    struct fv_lastvals_mem *m = rc == FV_OK ? malloc(sizeof *m + b.len) : NULL;
    if (rc == FV_OK && m == NULL) rc = FV_ENOMEM;
    if (rc == FV_OK) {
        m->len = (uint32_t)b.len;
        memcpy(m->data, b.data, b.len);
        *out = m;
    }
    if (b.data) OPENSSL_cleanse(b.data, b.len);
    fv_buf_free(&b);
    return rc;
}

int fv_lastvals_mem_find(const struct fv_lastvals_mem *m, uint32_t field, int *found,
                         struct fv_lastval *out)
{
    *found = 0;
    memset(out, 0, sizeof *out);
    if (m->len < 1 || m->data[0] != FV_LASTVALS_VERSION) return FV_ECORRUPT;
    struct fv_rd r;
    fv_rd_init(&r, m->data + 1, m->len - 1);
    char err[8];
    return decode_dense(&r, m->data[0], NULL, field, out, found, err, sizeof err);
}

int fv_lastvals_mem_decode(const struct fv_lastvals_mem *m, struct fv_lastvals *out)
{
    char err[8];
    return fv_lastvals_decode(m->data, m->len, out, err, sizeof err);
}

void fv_lastvals_mem_free(struct fv_lastvals_mem *m)
{
    if (m == NULL) return;
    OPENSSL_cleanse(m->data, m->len);
    free(m);
}

void fv_lastvals_clear(struct fv_lastvals *lv)
{
    for (size_t i = 0; i < lv->n; i++)
        fv_value_clear(&lv->e[i].v);
    free(lv->e);
    fv_map_free(&lv->idx);
    memset(lv, 0, sizeof *lv);
}
