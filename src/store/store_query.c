/*
 * store_query.c - queries: the cache of decrypted blocks, query cursors over a snapshot of the
 * store, the assembly of their chunks (a record split over classes joined back into one row
 * by its time), and the subjects the parts know of.
 *
 * Invariants (store.h): a cursor reads a snapshot: references to the live parts that hold
 * the subject in range, plus copies of the frozen and active heads' matching frames and
 * events, so flushes and compactions after fv_store_query do not change what it returns;
 * since the frozen head is released in the same step that installs its part (T3), each
 * record is in the snapshot once. Rows are selected and ordered by the device's time (T6).
 * A cached block, and the columns of it kept decoded for fv_store_last
 * (fv_store__block_last), are served only for the key that opened it, and a subject's cached
 * blocks are dropped with their columns when it is forgotten (T4).
 *
 * Threads: any one thread per cursor (the server's API thread). fv_store_query takes the
 * store's lock lk while it copies the heads' frames and references parts; blocks are read,
 * checked and decrypted without it, and the cache is under cache_mu (held for lookups and
 * inserts only). The worker never reads the cache or cursors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "store/block.h"
#include "store/store.h"
#include "store/store_int.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/map.h"

/* ---- block cache -------------------------------------------------------------------------- */

/* One signal's column of a cached block, decoded (fv_store__block_last): the times of the
 * frames that carry it and their values, in row order. */
struct colmemo {
    uint32_t field;
    size_t n, bytes;
    int64_t *t;
    struct fv_value *v;
    struct colmemo *next;
};

struct cent {
    unsigned char key[16]; /* part id, index */
    unsigned char subject[FV_SUBJECT_LEN];
    unsigned char dek[32]; /* the key that opened it: a hit needs the same key */
    struct cent *prev, *next;
    struct fv_buf raw;
    struct colmemo *memo; /* counted in cache_used with raw */
};

static void memo_free(struct colmemo *m)
{
    for (struct colmemo *n; m; m = n) {
        n = m->next;
        for (size_t i = 0; i < m->n; i++)
            fv_value_clear(&m->v[i]);
        if (m->v) OPENSSL_cleanse(m->v, m->n * sizeof *m->v);
        if (m->t) OPENSSL_cleanse(m->t, m->n * sizeof *m->t);
        free(m->v);
        free(m->t);
        free(m);
    }
}

static void cache_unlink(struct fv_store *s, struct cent *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void cache_drop(struct fv_store *s, struct cent *e)
{
    cache_unlink(s, e);
    fv_map_del(&s->cache, e->key, sizeof e->key);
    s->cache_used -= e->raw.len;
    for (struct colmemo *m = e->memo; m; m = m->next)
        s->cache_used -= m->bytes;
    memo_free(e->memo);
    OPENSSL_cleanse(e->dek, sizeof e->dek);
    OPENSSL_cleanse(e->raw.data, e->raw.len);
    fv_buf_free(&e->raw);
    free(e);
}

/* The plaintext of block i of part p, from the cache or read, checked, decrypted and
 * decompressed (then cached). The result is copied into out. */
int fv_store__read_block(struct fv_store *s, const struct fv_part *p, size_t i,
                         const unsigned char dek[32], struct fv_buf *out, char *err, size_t errlen)
{
    unsigned char key[16];
    fv_put_u64(key, p->id);
    fv_put_u64(key + 8, (uint64_t)i);
    pthread_mutex_lock(&s->cache_mu);
    struct cent *e = s->cfg.cache_bytes ? fv_map_get(&s->cache, key, sizeof key) : NULL;
    if (e && CRYPTO_memcmp(e->dek, dek, sizeof e->dek) != 0) e = NULL; /* not its key: open */
    if (e) {
        s->st.cache_hits++;
        cache_unlink(s, e);
        e->next = s->lru_head;
        if (s->lru_head) s->lru_head->prev = e;
        s->lru_head = e;
        if (s->lru_tail == NULL) s->lru_tail = e;
        fv_buf_reset(out);
        int rc = fv_buf_append(out, e->raw.data, e->raw.len);
        pthread_mutex_unlock(&s->cache_mu);
        return rc;
    }
    s->st.cache_misses++;
    pthread_mutex_unlock(&s->cache_mu);
    int rc = fv_part_open_block(p, i, dek, out, err, errlen);
    if (rc || s->cfg.cache_bytes == 0 || out->len > s->cfg.cache_bytes / 4) return rc;
    e = calloc(1, sizeof *e);
    if (e == NULL || fv_buf_append(&e->raw, out->data, out->len) != FV_OK) {
        if (e) fv_buf_free(&e->raw);
        free(e);
        return FV_OK; /* caching is optional */
    }
    pthread_mutex_lock(&s->cache_mu);
    if (fv_map_get(&s->cache, key, sizeof key) != NULL ||
        fv_map_put(&s->cache, key, sizeof key, e) != FV_OK) {
        /* another reader cached it meanwhile, or no memory: caching is optional */
        pthread_mutex_unlock(&s->cache_mu);
        fv_buf_free(&e->raw);
        free(e);
        return FV_OK;
    }
    memcpy(e->key, key, sizeof key);
    memcpy(e->subject, p->e[i].subject, FV_SUBJECT_LEN);
    memcpy(e->dek, dek, sizeof e->dek);
    e->next = s->lru_head;
    if (s->lru_head) s->lru_head->prev = e;
    s->lru_head = e;
    if (s->lru_tail == NULL) s->lru_tail = e;
    s->cache_used += e->raw.len;
    while (s->cache_used > s->cfg.cache_bytes && s->lru_tail)
        cache_drop(s, s->lru_tail);
    pthread_mutex_unlock(&s->cache_mu);
    return FV_OK;
}

/* The newest sample of m at or before to and at or after from: its index + 1, or 0. */
static size_t memo_find(const struct colmemo *m, int64_t from, int64_t to)
{
    size_t lo = 0, hi = m->n; /* the first sample after to */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->t[mid] <= to)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && m->t[lo - 1] >= from ? lo : 0;
}

/* *found, *t, *amb, *v (copied) from sample k - 1 of m (k from memo_find). */
static int memo_take(const struct colmemo *m, size_t k, int *found, int64_t *t, int *amb,
                     struct fv_value *v)
{
    if (k == 0) return FV_OK;
    *found = 1;
    *t = m->t[k - 1];
    *amb = m->v[k - 1].kind == FV_VK_NONE || (k > 1 && m->t[k - 2] == *t);
    return *amb ? FV_OK : fv_value_copy(v, &m->v[k - 1]);
}

int fv_store__block_last(struct fv_store *s, const struct fv_part *p, size_t i,
                         const unsigned char dek[32], uint32_t field, int64_t from, int64_t to,
                         int *found, int64_t *t, int *amb, struct fv_value *v, char *err,
                         size_t errlen)
{
    *found = *amb = 0;
    unsigned char key[16];
    fv_put_u64(key, p->id);
    fv_put_u64(key + 8, (uint64_t)i);
    pthread_mutex_lock(&s->cache_mu);
    struct cent *e = s->cfg.cache_bytes ? fv_map_get(&s->cache, key, sizeof key) : NULL;
    if (e && CRYPTO_memcmp(e->dek, dek, sizeof e->dek) != 0) e = NULL; /* not its key */
    for (struct colmemo *m = e ? e->memo : NULL; m; m = m->next)
        if (m->field == field) {
            s->st.cache_hits++;
            int rc = memo_take(m, memo_find(m, from, to), found, t, amb, v);
            pthread_mutex_unlock(&s->cache_mu);
            return rc;
        }
    pthread_mutex_unlock(&s->cache_mu);
    struct fv_buf raw = {0};
    struct fv_block b = {0};
    int rc = fv_store__read_block(s, p, i, dek, &raw, err, errlen);
    if (rc == FV_OK) rc = fv_block_decode(raw.data, raw.len, &field, 1, 0, &b, err, errlen);
    if (raw.data) OPENSSL_cleanse(raw.data, raw.cap);
    fv_buf_free(&raw);
    struct colmemo *m = rc == FV_OK ? calloc(1, sizeof *m) : NULL;
    if (rc == FV_OK && m == NULL) rc = FV_ENOMEM;
    const struct fv_block_col *col = rc == FV_OK ? fv_block_col(&b, field) : NULL;
    if (m && col && col->n) { /* the column's values move into the memo */
        m->t = malloc(col->n * sizeof *m->t);
        if (m->t == NULL) rc = FV_ENOMEM;
        for (size_t k = 0; rc == FV_OK && k < col->n; k++)
            m->t[k] = b.t[col->row[k]];
        if (rc == FV_OK) {
            m->v = col->v;
            m->n = col->n;
            for (size_t q = 0; q < b.ncols; q++)
                if (&b.cols[q] == col) {
                    b.cols[q].v = NULL;
                    b.cols[q].n = 0;
                }
        }
    }
    fv_block_free(&b);
    if (rc) {
        memo_free(m);
        return rc;
    }
    m->field = field;
    m->bytes = sizeof *m + m->n * (sizeof *m->t + sizeof *m->v);
    rc = memo_take(m, memo_find(m, from, to), found, t, amb, v);
    pthread_mutex_lock(&s->cache_mu); /* keep it with its block, if that is still cached */
    e = s->cfg.cache_bytes ? fv_map_get(&s->cache, key, sizeof key) : NULL;
    if (e && CRYPTO_memcmp(e->dek, dek, sizeof e->dek) == 0) {
        struct colmemo *o = e->memo;
        while (o && o->field != field)
            o = o->next;
        if (o == NULL && m->bytes <= s->cfg.cache_bytes / 4) {
            m->next = e->memo;
            e->memo = m;
            s->cache_used += m->bytes;
            m = NULL;
            while (s->cache_used > s->cfg.cache_bytes && s->lru_tail)
                cache_drop(s, s->lru_tail);
        }
    }
    pthread_mutex_unlock(&s->cache_mu);
    memo_free(m); /* keeping it is optional */
    return rc;
}

/* Drops the cached blocks of one subject (fv_store_forget). */
void fv_store__cache_forget(struct fv_store *s, const unsigned char subject[FV_SUBJECT_LEN])
{
    pthread_mutex_lock(&s->cache_mu);
    for (struct cent *e = s->lru_head, *n; e; e = n) {
        n = e->next;
        if (memcmp(e->subject, subject, FV_SUBJECT_LEN) == 0) cache_drop(s, e);
    }
    pthread_mutex_unlock(&s->cache_mu);
}

/* Drops every cached block and the cache's index (fv_store_close). */
void fv_store__cache_free(struct fv_store *s)
{
    while (s->lru_tail)
        cache_drop(s, s->lru_tail);
    fv_map_free(&s->cache);
}

/* ---- queries ------------------------------------------------------------------------------ */

static int cmp_hframe(const void *a, const void *b)
{
    const struct hframe *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off; /* arrival order */
}

struct src {
    int64_t min_t, max_t;
    struct fv_part *p; /* NULL: memory block mem */
    size_t i;
    struct fv_block mem;
    struct fv_buf *evown; /* memory sources: the events' bytes */
    int cls;              /* class index within the cursor (head: -1, all classes) */
};

struct fv_store_cursor {
    struct fv_store *store;
    char classes[32][FV_CLASS_NAME_MAX + 1]; /* class names met, for re-joining frames */
    int nclasses;
    unsigned char dek[32];
    int64_t from, to;
    uint32_t *fields; /* NULL: all */
    size_t nfields;
    int want_events;
    struct src *src;
    size_t nsrc, next;
    /* the current chunk */
    struct fv_block *blk;
    struct fv_buf *raw;
    size_t nblk;
    int64_t *t;
    uint32_t *cf;
    struct fv_value **cols;
    size_t ncols, n;
    struct fv_block_event *ev;
    size_t nev;
};

static int class_index(struct fv_store_cursor *c, const char *name)
{
    for (int i = 0; i < c->nclasses; i++)
        if (strcmp(c->classes[i], name) == 0) return i;
    if (c->nclasses == 31) return 31; /* more classes than bits: share the last */
    snprintf(c->classes[c->nclasses], sizeof c->classes[0], "%s", name);
    return c->nclasses++;
}

static int want_field(const uint32_t *fields, size_t n, uint32_t f)
{
    if (fields == NULL) return 1;
    for (size_t i = 0; i < n; i++)
        if (fields[i] == f) return 1;
    return 0;
}

/* A head's frames of one subject in [from, to], as a decoded block (deep copies). */
static int head_block(const struct head *hd, const char *pseudo, const struct fv_store_cursor *c,
                      struct src *out, int *found)
{
    *found = 0;
    if (hd == NULL) return FV_OK;
    const struct hdev *h = fv_map_get(&hd->devs, pseudo, strlen(pseudo));
    if (h == NULL) return FV_OK;
    struct fv_block *b = &out->mem;
    memset(out, 0, sizeof *out);
    struct hframe *fr = malloc((h->nfr ? h->nfr : 1) * sizeof *fr);
    if (fr == NULL) return FV_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < h->nfr; i++)
        if (h->fr[i].t >= c->from && h->fr[i].t <= c->to) fr[n++] = h->fr[i];
    qsort(fr, n, sizeof *fr, cmp_hframe);
    int rc = FV_OK;
    b->t = malloc((n ? n : 1) * sizeof *b->t);
    if (b->t == NULL) rc = FV_ENOMEM;
    /* columns: one per distinct wanted field (found through a hashed index: a frame of many
     * signals costs linear time) */
    struct fv_map colidx = {0};
    size_t capcols = 0;
    for (size_t i = 0; rc == FV_OK && i < n; i++) {
        b->t[i] = fr[i].t;
        /* (an empty frame: no slots, and maybe no array to point into) */
        const struct hdatum *d = fr[i].n ? &h->d[fr[i].off] : NULL;
        for (uint32_t k = 0; k < fr[i].n && rc == FV_OK; k++, d += fv_store__hd_slots(d)) {
            uint32_t field = fv_store__hd_field(d);
            if (!want_field(c->fields, c->nfields, field)) continue;
            uintptr_t at = (uintptr_t)fv_map_get_u64(&colidx, field);
            struct fv_block_col *col = at ? &b->cols[at - 1] : NULL;
            if (col == NULL) {
                rc = fv_store__grow((void **)&b->cols, &capcols, b->ncols + 1, sizeof *b->cols);
                if (rc == FV_OK)
                    rc = fv_map_put_u64(&colidx, field, (void *)(uintptr_t)(b->ncols + 1));
                if (rc) break;
                col = &b->cols[b->ncols++];
                memset(col, 0, sizeof *col);
                col->field = field;
                col->row = malloc(n * sizeof *col->row);
                col->v = calloc(n, sizeof *col->v);
                if (col->row == NULL || col->v == NULL) {
                    rc = FV_ENOMEM;
                    break;
                }
            }
            if (col->n && col->row[col->n - 1] == i) {
                fv_value_clear(&col->v[col->n - 1]);
                col->n--;
            }
            struct fv_value v;
            fv_store__hd_value(d, &v);
            rc = fv_value_copy(&col->v[col->n], &v);
            if (rc == FV_OK) col->row[col->n++] = (uint32_t)i;
        }
    }
    b->nrec = n;
    free(fr);
    fv_map_free(&colidx);
    if (rc == FV_OK && c->want_events && h->nev) {
        b->ev = malloc(h->nev * sizeof *b->ev);
        if (b->ev == NULL) rc = FV_ENOMEM;
        for (size_t i = 0; rc == FV_OK && i < h->nev; i++) {
            const struct hevent *e = &h->ev[i];
            if (e->t < c->from || e->t > c->to) continue;
            /* Borrowed bytes: the cursor copies the events below. */
            b->ev[b->nev++] =
                (struct fv_block_event){e->t, (const char *)h->evbytes.data + e->topic_off,
                                        e->topic_len, h->evbytes.data + e->off, e->len};
        }
    }
    if (rc) {
        fv_block_free(b);
        return rc;
    }
    if (b->nrec == 0 && b->nev == 0) {
        fv_block_free(b);
        return FV_OK;
    }
    out->min_t = INT64_MAX;
    out->max_t = INT64_MIN;
    if (b->nrec) {
        out->min_t = b->t[0];
        out->max_t = b->t[b->nrec - 1];
    }
    for (size_t i = 0; i < b->nev; i++) {
        if (b->ev[i].t < out->min_t) out->min_t = b->ev[i].t;
        if (b->ev[i].t > out->max_t) out->max_t = b->ev[i].t;
    }
    *found = 1;
    return FV_OK;
}

/* Head events point into the head, which can change between calls: copy them into one
 * owned buffer that lives with the source. */
static int own_events(struct src *sr, struct fv_buf *store)
{
    size_t total = 0;
    for (size_t i = 0; i < sr->mem.nev; i++)
        total += sr->mem.ev[i].topic_len + sr->mem.ev[i].len;
    int rc = fv_buf_reserve(store, total ? total : 1);
    if (rc) return rc;
    for (size_t i = 0; i < sr->mem.nev; i++) {
        struct fv_block_event *e = &sr->mem.ev[i];
        unsigned char *t = store->data + store->len;
        memcpy(t, e->topic, e->topic_len);
        memcpy(t + e->topic_len, e->payload, e->len);
        store->len += e->topic_len + e->len;
        e->topic = (const char *)t;
        e->payload = t + e->topic_len;
    }
    return FV_OK;
}

static int cmp_src(const void *a, const void *b)
{
    const struct src *x = a, *y = b;
    if (x->min_t != y->min_t) return x->min_t < y->min_t ? -1 : 1;
    /* parts (older) before heads at equal times */
    return (x->p == NULL) - (y->p == NULL);
}

int fv_store_query(struct fv_store *s, const char *pseudo, const unsigned char dek[32],
                   int64_t from, int64_t to, const uint32_t *fields, size_t nfields,
                   int want_events, struct fv_store_cursor **out, char *err, size_t errlen)
{
    *out = NULL;
    unsigned char subject[FV_SUBJECT_LEN];
    if (fv_subject_from_hex(pseudo, subject) != FV_OK) {
        fv_seterr(err, errlen, "bad subject pseudonym");
        return FV_EINVAL;
    }
    struct fv_store_cursor *c = calloc(1, sizeof *c);
    if (c == NULL) return FV_ENOMEM;
    c->store = s;
    memcpy(c->dek, dek, 32);
    c->from = from;
    c->to = to;
    c->want_events = want_events;
    int rc = FV_OK;
    if (fields) {
        c->fields = malloc((nfields ? nfields : 1) * sizeof *c->fields);
        if (c->fields == NULL)
            rc = FV_ENOMEM;
        else
            memcpy(c->fields, fields, nfields * sizeof *fields);
        c->nfields = nfields;
    }
    size_t cap = 0;
    int hidden = s->visible && !s->visible(s->visible_arg, pseudo);
    pthread_mutex_lock(&s->lk); /* the snapshot: parts referenced, head frames copied */
    for (size_t k = 0; rc == FV_OK && !hidden && k < s->nparts; k++) {
        struct fv_part *p = s->parts[k];
        for (size_t i = fv_part_find(p, subject);
             i < p->n && memcmp(p->e[i].subject, subject, FV_SUBJECT_LEN) == 0; i++) {
            const struct fv_part_entry *e = &p->e[i];
            if (e->max_t < from || e->min_t > to) continue;
            if (e->nrec == 0 && !want_events) continue;
            if (e->nev && !e->nrec && !want_events) continue;
            rc = fv_store__grow((void **)&c->src, &cap, c->nsrc + 1, sizeof *c->src);
            if (rc) break;
            struct src *sr = &c->src[c->nsrc++];
            memset(sr, 0, sizeof *sr);
            sr->min_t = e->min_t;
            sr->max_t = e->max_t;
            sr->p = p;
            sr->i = i;
            sr->cls = class_index(c, p->classes[e->cls]);
            fv_part_ref(p);
        }
    }
    const struct head *heads[2] = {s->frozen, s->head};
    for (int h = 0; rc == FV_OK && !hidden && h < 2; h++) {
        struct src tmp;
        int found;
        rc = head_block(heads[h], pseudo, c, &tmp, &found);
        if (rc || !found) continue;
        rc = fv_store__grow((void **)&c->src, &cap, c->nsrc + 1, sizeof *c->src);
        if (rc) {
            fv_block_free(&tmp.mem);
            break;
        }
        tmp.cls = -1;
        c->src[c->nsrc++] = tmp;
    }
    if (rc == FV_OK && c->nsrc) qsort(c->src, c->nsrc, sizeof *c->src, cmp_src);
    /* Own the head events' bytes now (the head may change before they are read). */
    for (size_t i = 0; rc == FV_OK && i < c->nsrc; i++)
        if (c->src[i].p == NULL && c->src[i].mem.nev) {
            struct fv_buf *b = malloc(sizeof *b);
            if (b == NULL) {
                rc = FV_ENOMEM;
                break;
            }
            memset(b, 0, sizeof *b);
            c->src[i].evown = b;
            rc = own_events(&c->src[i], b);
        }
    pthread_mutex_unlock(&s->lk);
    if (rc) {
        fv_store_cursor_free(c);
        return rc;
    }
    (void)err;
    (void)errlen;
    *out = c;
    return FV_OK;
}

static void chunk_clear(struct fv_store_cursor *c)
{
    for (size_t k = 0; k < c->nblk; k++) {
        fv_block_free(&c->blk[k]);
        fv_buf_free(&c->raw[k]);
    }
    free(c->blk);
    free(c->raw);
    c->blk = NULL;
    c->raw = NULL;
    c->nblk = 0;
    for (size_t j = 0; j < c->ncols; j++)
        free(c->cols[j]);
    free(c->cols);
    free(c->cf);
    free(c->t);
    free(c->ev);
    c->cols = NULL;
    c->cf = NULL;
    c->t = NULL;
    c->ev = NULL;
    c->ncols = c->n = c->nev = 0;
}

void fv_store_cursor_free(struct fv_store_cursor *c)
{
    if (c == NULL) return;
    chunk_clear(c);
    for (size_t i = 0; i < c->nsrc; i++) {
        if (c->src[i].p) {
            fv_part_unref(c->src[i].p);
        } else {
            fv_block_free(&c->src[i].mem);
            struct fv_buf *b = c->src[i].evown;
            if (b) {
                fv_buf_free(b);
                free(b);
            }
        }
    }
    free(c->src);
    free(c->fields);
    OPENSSL_cleanse(c->dek, sizeof c->dek);
    free(c);
}

struct rowref {
    int64_t t;
    uint32_t blk, row;
    uint32_t out; /* output row */
    uint32_t grp; /* the record's class set (block.h "groups"); 0 unknown */
};
static int cmp_ev(const void *a, const void *b)
{
    const struct fv_block_event *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t;
}

int fv_store_next(struct fv_store_cursor *c, struct fv_store_chunk *out, char *err, size_t errlen)
{
    chunk_clear(c);
    memset(out, 0, sizeof *out);
    if (c->next >= c->nsrc) return 0;
    /* A cluster: the next source and every later one that overlaps the span so far. */
    size_t a = c->next, b = a + 1;
    int64_t hi = c->src[a].max_t;
    while (b < c->nsrc && c->src[b].min_t <= hi) {
        if (c->src[b].max_t > hi) hi = c->src[b].max_t;
        b++;
    }
    c->next = b;
    size_t nb = b - a;
    c->blk = calloc(nb, sizeof *c->blk);
    c->raw = calloc(nb, sizeof *c->raw);
    if (c->blk == NULL || c->raw == NULL) return FV_ENOMEM;
    c->nblk = nb;
    const struct fv_block **bl = malloc(nb * sizeof *bl);
    if (bl == NULL) return FV_ENOMEM;
    int rc = FV_OK;
    for (size_t k = 0; k < nb && rc == FV_OK; k++) {
        struct src *sr = &c->src[a + k];
        if (sr->p == NULL) {
            bl[k] = &sr->mem;
            continue;
        }
        rc = fv_store__read_block(c->store, sr->p, sr->i, c->dek, &c->raw[k], err, errlen);
        if (rc == FV_OK) {
            char sub[256] = "";
            rc = fv_block_decode(c->raw[k].data, c->raw[k].len, c->fields, c->nfields,
                                 c->want_events, &c->blk[k], sub, sizeof sub);
            if (rc == FV_ECORRUPT)
                fv_seterr(err, errlen, "%s: offset %llu: block malformed: %s", sr->p->path,
                          (unsigned long long)sr->p->e[sr->i].off, sub);
        }
        bl[k] = &c->blk[k];
    }
    if (rc) {
        free(bl);
        return rc;
    }
    /* Output columns: the requested fields in order, or the union of what the blocks hold. */
    size_t capc = 0;
    if (c->fields) {
        c->cf = malloc((c->nfields ? c->nfields : 1) * sizeof *c->cf);
        if (c->cf == NULL)
            rc = FV_ENOMEM;
        else {
            memcpy(c->cf, c->fields, c->nfields * sizeof *c->cf);
            c->ncols = c->nfields;
        }
    } else {
        /* The union of the blocks' fields, ascending: gathered, sorted, deduplicated. */
        for (size_t k = 0; k < nb && rc == FV_OK; k++) {
            rc = fv_store__grow((void **)&c->cf, &capc, c->ncols + bl[k]->ncols, sizeof *c->cf);
            for (size_t q = 0; rc == FV_OK && q < bl[k]->ncols; q++)
                c->cf[c->ncols++] = bl[k]->cols[q].field;
        }
        if (rc == FV_OK && c->ncols) qsort(c->cf, c->ncols, sizeof *c->cf, fv_store__cmp_u32);
        size_t u = 0;
        for (size_t q = 0; q < c->ncols; q++)
            if (u == 0 || c->cf[u - 1] != c->cf[q]) c->cf[u++] = c->cf[q];
        c->ncols = u;
    }
    struct fv_map cfidx = {0}; /* field -> 1 + output column */
    for (size_t q = 0; rc == FV_OK && q < c->ncols; q++)
        if (fv_map_get_u64(&cfidx, c->cf[q]) == NULL)
            rc = fv_map_put_u64(&cfidx, c->cf[q], (void *)(uintptr_t)(q + 1));
    /* Rows: frames in range that carry a wanted field, merged by time (stable). */
    size_t total = 0;
    for (size_t k = 0; k < nb; k++)
        total += bl[k]->nrec;
    struct rowref *rr = malloc((total ? total : 1) * sizeof *rr);
    uint32_t **pos = calloc(nb, sizeof *pos);
    size_t nr = 0;
    if (rc == FV_OK && (rr == NULL || pos == NULL)) rc = FV_ENOMEM;
    size_t *run = calloc(nb + 1, sizeof *run); /* rr[run[k]..run[k+1]) come from block k */
    if (rc == FV_OK && run == NULL) rc = FV_ENOMEM;
    for (size_t k = 0; k < nb && rc == FV_OK; k++) {
        const struct fv_block *B = bl[k];
        run[k] = nr;
        pos[k] = malloc((B->nrec ? B->nrec : 1) * sizeof *pos[k]);
        unsigned char *has = calloc(B->nrec ? B->nrec : 1, 1);
        if (pos[k] == NULL || has == NULL) {
            free(has);
            rc = FV_ENOMEM;
            break;
        }
        for (size_t q = 0; q < B->ncols; q++)
            for (size_t r = 0; r < B->cols[q].n; r++)
                has[B->cols[q].row[r]] = 1;
        for (size_t r = 0; r < B->nrec; r++) {
            pos[k][r] = UINT32_MAX;
            if (has[r] && B->t[r] >= c->from && B->t[r] <= c->to)
                rr[nr++] = (struct rowref){B->t[r], (uint32_t)k, (uint32_t)r, 0,
                                           B->group ? B->group[r] : 0};
        }
        free(has);
    }
    /* A record's signals of different classes sit in different blocks: rows with the same
     * time from blocks of different classes are one frame again. Within a time, the k-th
     * row of each class joins the k-th output row (frames of one class keep their order). */
    size_t nout = 0;
    if (rc == FV_OK && nb > 1) {
        /* Each block's rows are in time order already: merge the runs (ties: block order),
         * which is what sorting by (t, block, row) gives, in O(rows x blocks). */
        run[nb] = nr;
        struct rowref *m = malloc((nr ? nr : 1) * sizeof *m);
        size_t *at = malloc(nb * sizeof *at);
        if (m == NULL || at == NULL) {
            rc = FV_ENOMEM;
        } else {
            memcpy(at, run, nb * sizeof *at);
            for (size_t o = 0; o < nr; o++) {
                size_t best = nb;
                for (size_t k = 0; k < nb; k++)
                    if (at[k] < run[k + 1] && (best == nb || rr[at[k]].t < rr[at[best]].t))
                        best = k;
                m[o] = rr[at[best]++];
            }
            memcpy(rr, m, nr * sizeof *rr);
        }
        free(m);
        free(at);
    }
    free(run);
    if (rc == FV_OK) {
        for (size_t g = 0; g < nr;) {
            size_t e = g;
            while (e < nr && rr[e].t == rr[g].t)
                e++;
            /* Within one time, rows of the same record have the same class set (group):
             * the k-th row of each class within a group is one record, in arrival order.
             * Head rows (all classes in one) and unknown groups stand alone. */
            for (size_t k = g; k < e; k++)
                rr[k].out = UINT32_MAX;
            for (size_t k = g; k < e; k++) {
                if (rr[k].out != UINT32_MAX) continue;
                int cl0 = c->src[a + rr[k].blk].cls;
                if (cl0 < 0 || rr[k].grp == 0) {
                    rr[k].out = (uint32_t)nout++;
                    continue;
                }
                uint32_t occ[33] = {0}, width = 0;
                for (size_t q = k; q < e; q++) {
                    int cl = c->src[a + rr[q].blk].cls;
                    if (rr[q].out != UINT32_MAX || cl < 0 || rr[q].grp != rr[k].grp) continue;
                    uint32_t slot = (uint32_t)cl;
                    rr[q].out = (uint32_t)(nout + occ[slot]);
                    occ[slot]++;
                    if (occ[slot] > width) width = occ[slot];
                }
                nout += width;
            }
            g = e;
        }
        c->t = malloc((nout ? nout : 1) * sizeof *c->t);
        c->cols = calloc(c->ncols ? c->ncols : 1, sizeof *c->cols);
        if (c->t == NULL || c->cols == NULL) rc = FV_ENOMEM;
    }
    for (size_t j = 0; rc == FV_OK && j < c->ncols; j++) {
        c->cols[j] = calloc(nout ? nout : 1, sizeof *c->cols[j]); /* kind NONE */
        if (c->cols[j] == NULL) rc = FV_ENOMEM;
    }
    if (rc == FV_OK) {
        for (size_t i = 0; i < nr; i++) {
            c->t[rr[i].out] = rr[i].t;
            pos[rr[i].blk][rr[i].row] = rr[i].out;
        }
        c->n = nout;
        for (size_t k = 0; k < nb; k++)
            for (size_t q = 0; q < bl[k]->ncols; q++) {
                const struct fv_block_col *col = &bl[k]->cols[q];
                uintptr_t jj = (uintptr_t)fv_map_get_u64(&cfidx, col->field);
                if (jj == 0) continue;
                size_t j = jj - 1;
                for (size_t r = 0; r < col->n; r++) {
                    uint32_t at = pos[k][col->row[r]];
                    if (at != UINT32_MAX) c->cols[j][at] = col->v[r]; /* shallow */
                }
            }
    }
    /* Events of the cluster in range. */
    size_t ne = 0;
    for (size_t k = 0; k < nb; k++)
        ne += bl[k]->nev;
    if (rc == FV_OK && c->want_events && ne) {
        c->ev = malloc(ne * sizeof *c->ev);
        if (c->ev == NULL) rc = FV_ENOMEM;
        for (size_t k = 0; rc == FV_OK && k < nb; k++)
            for (size_t e = 0; e < bl[k]->nev; e++)
                if (bl[k]->ev[e].t >= c->from && bl[k]->ev[e].t <= c->to)
                    c->ev[c->nev++] = bl[k]->ev[e];
        if (rc == FV_OK) qsort(c->ev, c->nev, sizeof *c->ev, cmp_ev);
    }
    for (size_t k = 0; pos && k < nb; k++)
        free(pos[k]);
    free(pos);
    free(rr);
    free(bl);
    fv_map_free(&cfidx);
    if (rc) return rc;
    out->n = c->n;
    out->t = c->t;
    out->ncols = c->ncols;
    out->field = c->cf;
    out->col = c->cols;
    out->nev = c->nev;
    out->ev = c->ev;
    return 1;
}

struct subj_row {
    unsigned char subject[FV_SUBJECT_LEN];
    uint64_t records, datums;
    int64_t min_t, max_t, max_frame_t;
};
static int cmp_subj(const void *a, const void *b)
{
    return memcmp(a, b, FV_SUBJECT_LEN);
}

int fv_store_subjects(const struct fv_store *s,
                      int (*fn)(void *arg, const struct fv_store_subject *), void *arg)
{
    pthread_mutex_lock((pthread_mutex_t *)&s->lk);
    size_t n = 0;
    for (size_t k = 0; k < s->nparts; k++)
        n += s->parts[k]->n;
    struct subj_row *r = malloc((n ? n : 1) * sizeof *r);
    if (r == NULL) {
        pthread_mutex_unlock((pthread_mutex_t *)&s->lk);
        return FV_ENOMEM;
    }
    size_t m = 0;
    for (size_t k = 0; k < s->nparts; k++)
        for (size_t i = 0; i < s->parts[k]->n; i++) {
            const struct fv_part_entry *e = &s->parts[k]->e[i];
            memcpy(r[m].subject, e->subject, FV_SUBJECT_LEN);
            r[m].records = e->nfirst;
            r[m].datums = e->ndatums;
            r[m].min_t = e->min_t;
            r[m].max_t = e->max_t;
            r[m].max_frame_t = e->nrec ? e->max_t : INT64_MIN;
            m++;
        }
    pthread_mutex_unlock((pthread_mutex_t *)&s->lk);
    qsort(r, m, sizeof *r, cmp_subj);
    int rc = FV_OK;
    for (size_t i = 0; i < m && rc == FV_OK;) {
        struct fv_store_subject su = {
            .min_t = INT64_MAX, .max_t = INT64_MIN, .max_frame_t = INT64_MIN};
        fv_subject_to_hex(r[i].subject, su.pseudo);
        size_t k = i;
        while (k < m && memcmp(r[k].subject, r[i].subject, FV_SUBJECT_LEN) == 0) {
            su.records += r[k].records;
            su.datums += r[k].datums;
            su.blocks++;
            if (r[k].min_t < su.min_t) su.min_t = r[k].min_t;
            if (r[k].max_t > su.max_t) su.max_t = r[k].max_t;
            if (r[k].max_frame_t > su.max_frame_t) su.max_frame_t = r[k].max_frame_t;
            k++;
        }
        rc = fn(arg, &su);
        i = k;
    }
    free(r);
    return rc;
}
