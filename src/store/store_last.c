/*
 * store_last.c - fv_store_last (store.h): one signal's last sample of one subject (the fleet
 * view), from memory when the heads and the parts' last values (lastvals.h) can say it, else
 * from the one column of the blocks that hold the instant, else by decoding blocks as
 * fv_store_query does.
 *
 * Invariants: the answer is the decoding path's, exactly: memory answers only when exactly
 * one sample holds the newest time in range across the heads and the parts, and a part
 * answers only when the range's end is at or after its newest sample of the signal (a
 * part whose blocks of the subject, by their index times, hold no frame in range says
 * nothing); a part that cannot say is asked through its blocks' column of the signal, whose
 * rows are exactly the frames a one-signal cursor shows; anything else decodes. A part's
 * values (a decoded record, formats 3-6; computed from its blocks, format 7) are kept only
 * with the key that opened them, are dropped when the subject is forgotten (T4), and are
 * not kept when a subject was forgotten while they were being read or computed.
 *
 * Threads: any thread (the server's API thread), like fv_store_query. The heads' frames of
 * the subject are scanned and the parts referenced under lk (no I/O); a part's record is
 * read and decrypted (or its blocks decoded) without a lock, and the values are kept with
 * the part (fv_part.lvc and lvdek, under cache_mu: lock order lk, then cache_mu). The
 * worker fills lvc of a part it wrote before the part is shared, and reads or fills a live
 * part's under cache_mu (merges, background computation: store_worker.c).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "store/block.h"
#include "store/lastvals.h"
#include "store/part.h"
#include "store/store.h"
#include "store/store_int.h"
#include "util/err.h"

/* The newest sample seen so far. */
struct cand {
    int have, amb; /* amb: more than one sample at t (or one without a value) */
    int64_t t;
    struct fv_value v;
};

static int consider(struct cand *c, int64_t t, int amb, const struct fv_value *v)
{
    if (c->have && t < c->t) return FV_OK;
    if (c->have && t == c->t) {
        c->amb = 1;
        return FV_OK;
    }
    fv_value_clear(&c->v);
    c->have = 1;
    c->t = t;
    c->amb = amb;
    return amb ? FV_OK : fv_value_copy(&c->v, v);
}

/* A head's samples of field in [from, to] (lk held). */
static int head_last(const struct head *hd, const char *pseudo, uint32_t field, int64_t from,
                     int64_t to, struct cand *c)
{
    const struct hdev *h = hd ? fv_map_get(&hd->devs, pseudo, strlen(pseudo)) : NULL;
    int rc = FV_OK;
    for (size_t i = 0; h && rc == FV_OK && i < h->nfr; i++) {
        const struct hframe *f = &h->fr[i];
        if (f->t < from || f->t > to || (c->have && f->t < c->t)) continue;
        /* (an empty frame: no slots, and maybe no array to point into) */
        const struct hdatum *d = f->n ? &h->d[f->off] : NULL;
        for (uint32_t k = 0; rc == FV_OK && k < f->n; k++, d += fv_store__hd_slots(d)) {
            if (fv_store__hd_field(d) != field) continue;
            struct fv_value v;
            fv_store__hd_value(d, &v);
            rc = consider(c, f->t, v.kind == FV_VK_NONE, &v);
        }
    }
    return rc;
}

/* What a part's entry of the signal says about [from, to]: nothing, a sample, or that it
 * cannot tell (*unknown). cache_mu held (e lives in the part's decoded record). */
static int entry_last(const struct fv_lastval *e, int64_t from, int64_t to, struct cand *c,
                      int *unknown)
{
    if (e == NULL || e->last_t < from) return FV_OK;
    if (e->last_t > to) {
        *unknown = 1;
        return FV_OK;
    }
    return consider(c, e->last_t, e->amb, &e->v);
}

/* A version 7 part's last values of the subject, computed from its blocks of the subject
 * (each block's samples, as a flush or merge would have noted them). Any block that does
 * not open or decode fails it (the caller then asks the blocks one column at a time, and the
 * cursor reports what is wrong). No lock held. */
int fv_store__lastvals_compute(const struct fv_part *p, const unsigned char subject[FV_SUBJECT_LEN],
                               const unsigned char dek[32], struct fv_lastvals *lv, char *err,
                               size_t errlen)
{
    struct fv_buf raw = {0};
    int rc = FV_OK;
    for (size_t i = fv_part_find(p, subject);
         rc == FV_OK && i < p->n && memcmp(p->e[i].subject, subject, FV_SUBJECT_LEN) == 0; i++) {
        if (p->e[i].nrec == 0) continue; /* events only: no signal */
        struct fv_block b = {0};
        rc = fv_part_open_block(p, i, dek, &raw, err, errlen);
        if (rc == FV_OK) rc = fv_block_decode(raw.data, raw.len, NULL, 0, 0, &b, err, errlen);
        for (size_t k = 0; rc == FV_OK && k < b.ncols; k++)
            for (size_t r = 0; rc == FV_OK && r < b.cols[k].n; r++)
                rc = fv_lastvals_add(lv, b.t[b.cols[k].row[r]], b.cols[k].field, &b.cols[k].v[r]);
        fv_block_free(&b);
    }
    if (raw.data) OPENSSL_cleanse(raw.data, raw.len);
    fv_buf_free(&raw);
    return rc;
}

/* Part p's say on field for the subject of its last-values entry li: kept in memory (a
 * record decoded, or values computed) with dek, else read from its record and decoded
 * (formats 3 to 6) or computed from its blocks (format 7), then kept. A record or block that
 * does not read (I/O, checksum, authentication, format) cannot tell: the blocks are asked
 * instead, and report what is wrong. */
static int part_last(struct fv_store *s, struct fv_part *p, size_t li, const unsigned char dek[32],
                     uint32_t field, int64_t from, int64_t to, struct cand *c, int *unknown)
{
    pthread_mutex_lock(&s->cache_mu);
    if (p->lvc && p->lvc[li] && CRYPTO_memcmp(p->lvdek[li], dek, 32) == 0) {
        int found = 0;
        struct fv_lastval e;
        int rc = fv_lastvals_mem_find(p->lvc[li], field, &found, &e);
        if (rc == FV_OK) rc = entry_last(found ? &e : NULL, from, to, c, unknown);
        fv_value_clear(&e.v);
        pthread_mutex_unlock(&s->cache_mu);
        if (rc == FV_ECORRUPT) { /* cannot happen (made here): the blocks say */
            *unknown = 1;
            rc = FV_OK;
        }
        return rc;
    }
    uint64_t forgets = s->lv_forgets;
    pthread_mutex_unlock(&s->cache_mu);
    struct fv_buf z = {0}, plain = {0};
    char err[256];
    struct fv_lastvals *lv = calloc(1, sizeof *lv);
    int rc = lv ? FV_OK : FV_ENOMEM;
    if (rc == FV_OK && p->version >= 7) {
        rc = fv_store__lastvals_compute(p, p->last[li].subject, dek, lv, err, sizeof err);
        goto computed;
    }
    if (rc == FV_OK) rc = fv_part_read_last(p, li, dek, &z, err, sizeof err); /* I/O: no lock */
    if (rc == FV_OK) {
        pthread_mutex_lock(&s->cache_mu); /* the store's decompression context: short */
        rc = fv_part_inflate_last(p, li, s->zd, z.data, z.len, &plain, err, sizeof err);
        pthread_mutex_unlock(&s->cache_mu);
    }
    if (z.data) OPENSSL_cleanse(z.data, z.len);
    fv_buf_free(&z);
    if (rc == FV_OK) rc = fv_lastvals_decode(plain.data, plain.len, lv, err, sizeof err);
    if (plain.data) OPENSSL_cleanse(plain.data, plain.len);
    fv_buf_free(&plain);
computed:
    if (rc) {
        if (lv) fv_lastvals_clear(lv);
        free(lv);
        *unknown = 1;
        return rc == FV_ENOMEM ? rc : FV_OK;
    }
    const struct fv_lastval *e = NULL; /* (lv is not sorted when computed: a scan) */
    for (size_t i = 0; e == NULL && i < lv->n; i++)
        if (lv->e[i].field == field) e = &lv->e[i];
    rc = entry_last(e, from, to, c, unknown);
    struct fv_lastvals_mem *m = NULL;
    if (rc == FV_OK && fv_lastvals_mem_make(lv, &m) != FV_OK) m = NULL; /* keeping is optional */
    fv_lastvals_clear(lv);
    free(lv);
    pthread_mutex_lock(&s->cache_mu);
    if (m) (void)fv_part_lvc_alloc(p); /* none made: not kept */
    /* keep it (another reader's, or another key's, is replaced), unless a subject was
     * forgotten meanwhile (it may be this one: T4) */
    if (m && p->lvc && s->lv_forgets == forgets) {
        fv_lastvals_mem_free(p->lvc[li]);
        p->lvc[li] = m;
        memcpy(p->lvdek[li], dek, 32);
        m = NULL;
    }
    pthread_mutex_unlock(&s->cache_mu);
    fv_lastvals_mem_free(m);
    return rc;
}

/* Part p's blocks of the subject that hold frames in [from, to], one column decoded each:
 * the newest sample of field at or before to, found by binary search in the time column (a
 * one-signal cursor's rows are exactly the frames carrying the signal, in time order). Two
 * samples at that time, or one without a value, are ambiguous (the cursor decides). A
 * block that does not read cannot tell (*unknown): the cursor reports what is wrong. */
static int blocks_last(struct fv_store *s, struct fv_part *p,
                       const unsigned char subject[FV_SUBJECT_LEN], const unsigned char dek[32],
                       uint32_t field, int64_t from, int64_t to, struct cand *c, int *unknown)
{
    char err[256];
    int rc = FV_OK;
    for (size_t i = fv_part_find(p, subject); rc == FV_OK && !*unknown && i < p->n &&
                                              memcmp(p->e[i].subject, subject, FV_SUBJECT_LEN) == 0;
         i++) {
        const struct fv_part_entry *e = &p->e[i];
        if (!e->nrec || e->max_t < from || e->min_t > to || (c->have && e->max_t < c->t)) continue;
        int found = 0, amb = 0;
        int64_t t = 0;
        struct fv_value v = {0};
        rc = fv_store__block_last(s, p, i, dek, field, from, to, &found, &t, &amb, &v, err,
                                  sizeof err);
        if (rc == FV_OK && found) rc = consider(c, t, amb, &v);
        fv_value_clear(&v);
        if (rc != FV_OK && rc != FV_ENOMEM) {
            *unknown = 1;
            rc = FV_OK;
        }
    }
    return rc;
}

/* The decoding path: what the newest row of a one-signal query shows. */
static int decode_last(struct fv_store *s, const char *pseudo, const unsigned char dek[32],
                       uint32_t field, int64_t from, int64_t to, struct cand *c)
{
    struct fv_store_cursor *cur;
    char err[256];
    int rc = fv_store_query(s, pseudo, dek, from, to, &field, 1, 0, &cur, err, sizeof err);
    if (rc) return rc;
    struct fv_store_chunk ch;
    while (rc == FV_OK && fv_store_next(cur, &ch, err, sizeof err) == 1)
        if (ch.n && ch.col[0][ch.n - 1].kind != FV_VK_NONE) {
            fv_value_clear(&c->v);
            c->have = 0;
            rc = fv_value_copy(&c->v, &ch.col[0][ch.n - 1]);
            if (rc == FV_OK) {
                c->t = ch.t[ch.n - 1];
                c->have = 1;
            }
        }
    fv_store_cursor_free(cur);
    return rc;
}

int fv_store_last(struct fv_store *s, const char *pseudo, const unsigned char dek[32],
                  uint32_t field, int64_t from, int64_t to, int flags, int *found, int64_t *t,
                  struct fv_value *v)
{
    *found = 0;
    memset(v, 0, sizeof *v);
    unsigned char subject[FV_SUBJECT_LEN];
    if (fv_subject_from_hex(pseudo, subject) != FV_OK) return FV_EINVAL;
    if (s->visible && !s->visible(s->visible_arg, pseudo)) return FV_OK;
    struct cand c = {0};
    int unknown = (flags & FV_STORE_LAST_DECODE) != 0;
    struct fv_part **refs = NULL;
    size_t *li = NULL, nref = 0;
    int rc = FV_OK, scanned = 0;
    pthread_mutex_lock(&s->lk);
    if (!unknown) {
        refs = malloc((s->nparts ? s->nparts : 1) * sizeof *refs);
        li = malloc((s->nparts ? s->nparts : 1) * sizeof *li);
        if (refs == NULL || li == NULL) rc = FV_ENOMEM;
    }
    for (size_t k = 0; rc == FV_OK && !unknown && k < s->nparts; k++) {
        struct fv_part *p = s->parts[k];
        size_t i = fv_part_find(p, subject);
        int frames = 0; /* in range: a part without them has nothing to say */
        for (; i < p->n && memcmp(p->e[i].subject, subject, FV_SUBJECT_LEN) == 0; i++)
            frames |= p->e[i].nrec && p->e[i].min_t <= to && p->e[i].max_t >= from;
        if (!frames) continue;
        li[nref] = fv_part_find_last(p, subject); /* nlast: none (an older part, or a merge
                                                     that could not sum the subject up) */
        fv_part_ref(p);
        refs[nref++] = p;
    }
    if (rc == FV_OK && !unknown) rc = head_last(s->frozen, pseudo, field, from, to, &c);
    if (rc == FV_OK && !unknown) rc = head_last(s->head, pseudo, field, from, to, &c);
    pthread_mutex_unlock(&s->lk);
    for (size_t k = 0; k < nref; k++) {
        int scan = li[k] == refs[k]->nlast; /* the part's last values cannot say: its blocks */
        if (rc == FV_OK && !unknown && !scan)
            rc = part_last(s, refs[k], li[k], dek, field, from, to, &c, &scan);
        if (rc == FV_OK && !unknown && scan) {
            scanned = 1;
            rc = blocks_last(s, refs[k], subject, dek, field, from, to, &c, &unknown);
        }
        fv_part_unref(refs[k]);
    }
    free(refs);
    free(li);
    if (rc == FV_OK && (unknown || c.amb)) {
        fv_value_clear(&c.v);
        memset(&c, 0, sizeof c);
        rc = decode_last(s, pseudo, dek, field, from, to, &c);
        unknown = 1;
    }
    pthread_mutex_lock(&s->cache_mu);
    if (unknown)
        s->st.last_decoded++;
    else if (scanned)
        s->st.last_scanned++;
    else
        s->st.last_indexed++;
    pthread_mutex_unlock(&s->cache_mu);
    if (rc || !c.have) {
        fv_value_clear(&c.v);
        return rc;
    }
    *found = 1;
    *t = c.t;
    *v = c.v; /* the caller owns it now */
    return FV_OK;
}

void fv_store__lastvals_drop(struct fv_store *s, struct fv_part *p,
                             const unsigned char subject[FV_SUBJECT_LEN])
{
    size_t lo = 0, hi = p->nlast;
    if (subject) {
        lo = fv_part_find_last(p, subject);
        hi = lo < p->nlast ? lo + 1 : lo;
    }
    pthread_mutex_lock(&s->cache_mu);
    for (size_t i = lo; p->lvc && i < hi; i++) {
        if (p->lvc[i] == NULL) continue;
        fv_lastvals_mem_free(p->lvc[i]);
        p->lvc[i] = NULL;
        OPENSSL_cleanse(p->lvdek[i], 32);
    }
    pthread_mutex_unlock(&s->cache_mu);
}

void fv_store__lastvals_forget(struct fv_store *s, const unsigned char subject[FV_SUBJECT_LEN])
{
    pthread_mutex_lock(&s->cache_mu);
    s->lv_forgets++;
    for (size_t k = 0; k < s->nparts; k++) {
        struct fv_part *p = s->parts[k];
        size_t i = fv_part_find_last(p, subject);
        if (p->lvc == NULL || i == p->nlast || p->lvc[i] == NULL) continue;
        fv_lastvals_mem_free(p->lvc[i]);
        p->lvc[i] = NULL;
        OPENSSL_cleanse(p->lvdek[i], 32);
    }
    pthread_mutex_unlock(&s->cache_mu);
}
