/* part_index.c - the index's entries: fixed-size (versions 1 to 5) or column by column
 * (version 6); see part_int.h and docs/formats.md "Part file". */
#include <stdlib.h>
#include <string.h>

#include "store/part_int.h"
#include "util/buf.h"
#include "util/err.h"

static int put_u32le(struct fv_buf *b, uint32_t v)
{
    unsigned char q[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return fv_buf_append(b, q, 4);
}

static int put_zz(struct fv_buf *b, uint64_t a, uint64_t expect)
{
    return fv_put_uvarint(b, fv_zigzag(a - expect));
}

/* Where the entries of a subject end in the blocks area, for the last-values entry that
 * follows them: the end of the subject's last block (in index order), or 0 if none. */
static uint64_t subject_end(const struct fv_part_entry *e, size_t n, const unsigned char *s,
                            size_t *k, size_t *ref)
{
    /* e is sorted by subject and so is the caller's walk: advance k past earlier subjects. */
    while (*k < n && memcmp(e[*k].subject, s, FV_SUBJECT_LEN) < 0) {
        size_t j = *k;
        while (j < n && memcmp(e[j].subject, e[*k].subject, FV_SUBJECT_LEN) == 0)
            j++;
        *k = j;
        (*ref)++;
    }
    if (*k >= n || memcmp(e[*k].subject, s, FV_SUBJECT_LEN) != 0) return 0;
    size_t j = *k;
    while (j + 1 < n && memcmp(e[j + 1].subject, s, FV_SUBJECT_LEN) == 0)
        j++;
    return e[j].off + e[j].len;
}

int fv_part_index_put_v6(struct fv_buf *idx, const unsigned char nonce_base[12],
                         const struct fv_part_entry *e, size_t n, const struct fv_part_last *l,
                         size_t nl)
{
    int rc = fv_buf_append(idx, nonce_base, 12);
    if (rc == FV_OK) rc = fv_put_uvarint(idx, n);
    size_t nsubj = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || memcmp(e[i].subject, e[i - 1].subject, FV_SUBJECT_LEN) != 0) nsubj++;
    if (rc == FV_OK) rc = fv_put_uvarint(idx, nsubj);
    for (size_t i = 0; rc == FV_OK && i < n;) {
        size_t j = i;
        while (j < n && memcmp(e[j].subject, e[i].subject, FV_SUBJECT_LEN) == 0)
            j++;
        rc = fv_buf_append(idx, e[i].subject, FV_SUBJECT_LEN);
        if (rc == FV_OK) rc = fv_put_uvarint(idx, j - i);
        i = j;
    }
    /* Columns: each field of every entry, then the next field. */
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = fv_put_uvarint(idx, e[i].cls);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = fv_put_uvarint(idx, e[i].nrec);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = fv_put_uvarint(idx, e[i].nev);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = fv_put_uvarint(idx, e[i].ndatums);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = fv_put_uvarint(idx, e[i].nfirst);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = fv_put_uvarint(idx, e[i].raw_len);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = fv_put_uvarint(idx, e[i].len);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = put_zz(idx, (uint64_t)e[i].min_t, i ? (uint64_t)e[i - 1].min_t : 0);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = fv_put_uvarint(idx, (uint64_t)e[i].max_t - (uint64_t)e[i].min_t);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = put_zz(idx, (uint64_t)e[i].rx_max, (uint64_t)e[i].max_t);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = put_zz(idx, e[i].off, i ? e[i - 1].off + e[i - 1].len : FV_PART_HEADER_LEN);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = fv_put_uvarint(idx, e[i].nonce_in);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = put_u32le(idx, e[i].crc);
    if (rc == FV_OK) rc = fv_put_uvarint(idx, nl);
    size_t k = 0, ref = 1;
    uint64_t prev_end = FV_PART_HEADER_LEN;
    for (size_t i = 0; rc == FV_OK && i < nl; i++) {
        uint64_t end = subject_end(e, n, l[i].subject, &k, &ref);
        if (end) {
            rc = fv_put_uvarint(idx, ref);
        } else {
            rc = fv_put_uvarint(idx, 0);
            if (rc == FV_OK) rc = fv_buf_append(idx, l[i].subject, FV_SUBJECT_LEN);
            end = prev_end;
        }
        if (rc == FV_OK) rc = put_zz(idx, l[i].off, end);
        if (rc == FV_OK) rc = fv_put_uvarint(idx, l[i].len);
        if (rc == FV_OK) rc = put_u32le(idx, l[i].crc);
        prev_end = l[i].off + l[i].len;
    }
    return rc;
}

#define GET(v)                                                                                     \
    do {                                                                                           \
        if (fv_rd_uvarint(r, &(v))) {                                                              \
            *what = field;                                                                         \
            return FV_ECORRUPT;                                                                    \
        }                                                                                          \
    } while (0)

/* One u32 column: every entry's field at byte offset fo of struct fv_part_entry. */
static int get_u32_col(struct fv_rd *r, struct fv_part *p, size_t fo, const char *field,
                       const char **what)
{
    for (size_t i = 0; i < p->n; i++) {
        uint64_t v;
        GET(v);
        if (v > UINT32_MAX) {
            *what = field;
            return FV_ECORRUPT;
        }
        uint32_t u = (uint32_t)v;
        memcpy((unsigned char *)&p->e[i] + fo, &u, sizeof u);
    }
    return FV_OK;
}

static int get_entries(struct fv_rd *r, struct fv_part *p, uint64_t nsubj, size_t *sfirst,
                       const char **what);

int fv_part_index_get_v6(struct fv_rd *r, uint32_t nblocks, struct fv_part *p, const char **what)
{
    const char *field = "nonce base";
    uint64_t nb, nsubj;
    const unsigned char *base;
    if (fv_rd_bytes(r, 12, &base)) {
        *what = field;
        return FV_ECORRUPT;
    }
    memcpy(p->nonce_base, base, 12);
    field = "block count";
    GET(nb);
    if (nb != nblocks || nb > (r->n - r->off) / FV_PART_ENTRY_MIN_V6) {
        *what = field;
        return FV_ECORRUPT;
    }
    p->n = (size_t)nb;
    p->e = calloc(p->n ? p->n : 1, sizeof *p->e);
    if (p->e == NULL) return FV_ENOMEM;
    field = "subjects";
    GET(nsubj);
    if (nsubj > nb) {
        *what = field;
        return FV_ECORRUPT;
    }
    /* sfirst[s]: the first entry of the s-th subject (0-based); sfirst[nsubj] = n */
    size_t *sfirst = malloc((size_t)(nsubj + 1) * sizeof *sfirst);
    if (sfirst == NULL) return FV_ENOMEM;
    int rc = get_entries(r, p, nsubj, sfirst, what);
    free(sfirst);
    return rc;
}

static int get_entries(struct fv_rd *r, struct fv_part *p, uint64_t nsubj, size_t *sfirst,
                       const char **what)
{
    const char *field = "subjects";
    uint64_t v;
    size_t at = 0;
    for (uint64_t s = 0; s < nsubj; s++) {
        sfirst[s] = at;
        const unsigned char *q;
        if (fv_rd_bytes(r, FV_SUBJECT_LEN, &q)) {
            *what = field;
            return FV_ECORRUPT;
        }
        GET(v);
        if (v == 0 || v > p->n - at) {
            *what = field;
            return FV_ECORRUPT;
        }
        for (uint64_t j = 0; j < v; j++)
            memcpy(p->e[at++].subject, q, FV_SUBJECT_LEN);
    }
    sfirst[nsubj] = at;
    if (at != p->n) {
        *what = field;
        return FV_ECORRUPT;
    }
    field = "classes";
    for (size_t i = 0; i < p->n; i++) {
        GET(v);
        if (v > UINT8_MAX) {
            *what = field;
            return FV_ECORRUPT;
        }
        p->e[i].cls = (uint8_t)v;
    }
    static const struct {
        size_t off;
        const char *name;
    } u32s[] = {
        {offsetof(struct fv_part_entry, nrec), "frame counts"},
        {offsetof(struct fv_part_entry, nev), "event counts"},
        {offsetof(struct fv_part_entry, ndatums), "datum counts"},
        {offsetof(struct fv_part_entry, nfirst), "record counts"},
        {offsetof(struct fv_part_entry, raw_len), "plaintext lengths"},
        {offsetof(struct fv_part_entry, len), "sealed lengths"},
    };
    for (size_t c = 0; c < sizeof u32s / sizeof u32s[0]; c++) {
        int rc = get_u32_col(r, p, u32s[c].off, u32s[c].name, what);
        if (rc) return rc;
    }
    field = "times";
    for (size_t i = 0; i < p->n; i++) {
        GET(v);
        p->e[i].min_t = (int64_t)(fv_unzigzag(v) + (i ? (uint64_t)p->e[i - 1].min_t : 0));
    }
    for (size_t i = 0; i < p->n; i++) {
        GET(v);
        if (v > (uint64_t)INT64_MAX - (uint64_t)p->e[i].min_t) {
            *what = field; /* max_t would pass INT64_MAX */
            return FV_ECORRUPT;
        }
        p->e[i].max_t = (int64_t)((uint64_t)p->e[i].min_t + v);
    }
    field = "receive times";
    for (size_t i = 0; i < p->n; i++) {
        GET(v);
        p->e[i].rx_max = (int64_t)(fv_unzigzag(v) + (uint64_t)p->e[i].max_t);
    }
    field = "offsets";
    for (size_t i = 0; i < p->n; i++) {
        GET(v);
        p->e[i].off = fv_unzigzag(v) + (i ? p->e[i - 1].off + p->e[i - 1].len : FV_PART_HEADER_LEN);
    }
    field = "nonce flags";
    for (size_t i = 0; i < p->n; i++) {
        GET(v);
        if (v > 1) {
            *what = field;
            return FV_ECORRUPT;
        }
        p->e[i].nonce_in = (uint8_t)v;
    }
    field = "checksums";
    for (size_t i = 0; i < p->n; i++) {
        const unsigned char *q;
        if (fv_rd_bytes(r, 4, &q)) {
            *what = field;
            return FV_ECORRUPT;
        }
        p->e[i].crc =
            (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
    }
    field = "last-values count";
    uint64_t nl;
    GET(nl);
    if (nl > (r->n - r->off) / 7) { /* ref, offset, length: a byte each; CRC 4 */
        *what = field;
        return FV_ECORRUPT;
    }
    p->nlast = (size_t)nl;
    p->last = calloc(p->nlast ? p->nlast : 1, sizeof *p->last);
    if (p->last == NULL) return FV_ENOMEM;
    field = "last-values entries";
    uint64_t prev_end = FV_PART_HEADER_LEN;
    for (size_t i = 0; i < p->nlast; i++) {
        struct fv_part_last *l = &p->last[i];
        uint64_t ref, end;
        const unsigned char *q;
        GET(ref);
        if (ref == 0) {
            if (fv_rd_bytes(r, FV_SUBJECT_LEN, &q)) {
                *what = field;
                return FV_ECORRUPT;
            }
            memcpy(l->subject, q, FV_SUBJECT_LEN);
            end = prev_end;
        } else {
            if (ref > nsubj) {
                *what = field;
                return FV_ECORRUPT;
            }
            const struct fv_part_entry *le = &p->e[sfirst[ref] - 1]; /* its last block */
            memcpy(l->subject, le->subject, FV_SUBJECT_LEN);
            end = le->off + le->len;
        }
        GET(v);
        l->off = fv_unzigzag(v) + end;
        GET(v);
        if (v > UINT32_MAX || fv_rd_bytes(r, 4, &q)) {
            *what = field;
            return FV_ECORRUPT;
        }
        l->len = (uint32_t)v;
        l->crc = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
        prev_end = l->off + l->len;
    }
    if (r->off != r->n) {
        *what = "bytes after the last entry";
        return FV_ECORRUPT;
    }
    return FV_OK;
}

/* Versions 1 to 5: fixed-size entries (69 bytes in version 1, 77 later), then (3 to 5) the
 * last-values entries, 32 bytes each, to the end of r. */
int fv_part_index_get_v5(struct fv_rd *r, uint32_t nblocks, size_t elen, struct fv_part *p,
                         const char **what)
{
    uint64_t nb, nl = 0;
    *what = "block count";
    if (fv_rd_uvarint(r, &nb) || nb != nblocks || nb * elen > r->n - r->off ||
        (p->version < 3 && nb * elen != r->n - r->off))
        return FV_ECORRUPT;
    p->n = (size_t)nb;
    p->e = calloc(p->n ? p->n : 1, sizeof *p->e);
    if (p->e == NULL) return FV_ENOMEM;
    for (size_t i = 0; i < p->n; i++) {
        const unsigned char *q = r->p + r->off + i * elen;
        struct fv_part_entry *e = &p->e[i];
        memcpy(e->subject, q, FV_SUBJECT_LEN);
        e->cls = q[16];
        e->nrec = fv_get_u32(q + 17);
        e->nev = fv_get_u32(q + 21);
        e->ndatums = fv_get_u32(q + 25);
        e->raw_len = fv_get_u32(q + 29);
        e->len = fv_get_u32(q + 33);
        e->crc = fv_get_u32(q + 37);
        e->min_t = (int64_t)fv_get_u64(q + 41);
        e->max_t = (int64_t)fv_get_u64(q + 49);
        e->off = fv_get_u64(q + 57);
        e->nfirst = fv_get_u32(q + 65);
        /* Version 1 did not record receive times: its records were all received before the
         * part was written. */
        e->rx_max = p->version == 1 ? (int64_t)p->created_ms : (int64_t)fv_get_u64(q + 69);
        e->nonce_in = 1;
    }
    if (p->version < 3) return FV_OK;
    struct fv_rd lr;
    fv_rd_init(&lr, r->p + r->off + nb * elen, r->n - r->off - nb * elen);
    *what = "last-values count";
    if (fv_rd_uvarint(&lr, &nl) || nl * FV_PART_LAST_LEN != lr.n - lr.off) return FV_ECORRUPT;
    p->nlast = (size_t)nl;
    p->last = calloc(p->nlast ? p->nlast : 1, sizeof *p->last);
    if (p->last == NULL) return FV_ENOMEM;
    for (size_t i = 0; i < p->nlast; i++) {
        const unsigned char *q = lr.p + lr.off + i * FV_PART_LAST_LEN;
        struct fv_part_last *l = &p->last[i];
        memcpy(l->subject, q, FV_SUBJECT_LEN);
        l->off = fv_get_u64(q + 16);
        l->len = fv_get_u32(q + 24);
        l->crc = fv_get_u32(q + 28);
        l->nonce_in = 1;
    }
    return FV_OK;
}

/* Version 5's entries: 77 bytes per block, then varint nlast and 32 bytes per record. */
int fv_part_index_put_v5(struct fv_buf *idx, const struct fv_part_entry *e, size_t n,
                         const struct fv_part_last *l, size_t nl)
{
    int rc = fv_put_uvarint(idx, n);
    for (size_t i = 0; rc == FV_OK && i < n; i++) {
        unsigned char q[FV_PART_ENTRY_LEN];
        const struct fv_part_entry *x = &e[i];
        memcpy(q, x->subject, FV_SUBJECT_LEN);
        q[16] = x->cls;
        fv_put_u32(q + 17, x->nrec);
        fv_put_u32(q + 21, x->nev);
        fv_put_u32(q + 25, x->ndatums);
        fv_put_u32(q + 29, x->raw_len);
        fv_put_u32(q + 33, x->len);
        fv_put_u32(q + 37, x->crc);
        fv_put_u64(q + 41, (uint64_t)x->min_t);
        fv_put_u64(q + 49, (uint64_t)x->max_t);
        fv_put_u64(q + 57, x->off);
        fv_put_u32(q + 65, x->nfirst);
        fv_put_u64(q + 69, (uint64_t)x->rx_max);
        rc = fv_buf_append(idx, q, sizeof q);
    }
    if (rc == FV_OK) rc = fv_put_uvarint(idx, nl);
    for (size_t i = 0; rc == FV_OK && i < nl; i++) {
        unsigned char q[FV_PART_LAST_LEN];
        memcpy(q, l[i].subject, FV_SUBJECT_LEN);
        fv_put_u64(q + 16, l[i].off);
        fv_put_u32(q + 24, l[i].len);
        fv_put_u32(q + 28, l[i].crc);
        rc = fv_buf_append(idx, q, sizeof q);
    }
    return rc;
}

int fv_part_lvc_alloc(struct fv_part *p)
{
    if (p->lvc) return FV_OK;
    p->lvc = calloc(p->nlast, sizeof *p->lvc);
    p->lvdek = calloc(p->nlast, sizeof *p->lvdek);
    if (p->lvc && p->lvdek) return FV_OK;
    free(p->lvc);
    free(p->lvdek);
    p->lvc = NULL;
    p->lvdek = NULL;
    return FV_ENOMEM;
}
