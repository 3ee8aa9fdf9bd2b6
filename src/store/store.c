/*
 * store.c - the store engine: head, flush and compaction worker, retention, queries.
 * The contract and invariants T1-T4 are in store.h; formats in block.h and part.h.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "os/fsio.h"
#include "store/block.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/map.h"
#include "wal/wal.h"
#include "wire/signals.h"

#define DAY_MS (86400000ull)

/* ---- configuration ------------------------------------------------------------------------ */

void fv_store_config_defaults(struct fv_store_config *c, const char *data_dir)
{
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "%s/store", data_dir);
    c->flush_interval_ms = 60000;
    c->flush_datums = 2000000;
    c->wal_keep_ms = 600000;
    c->compact_fanin = 4;
    c->block_frames = 8192;
    c->zlevel_flush = 3;
    c->zlevel_compact = 9;
    c->cache_bytes = 64u << 20;
    c->nclasses = 3;
    snprintf(c->class_name[0], sizeof c->class_name[0], "default");
    snprintf(c->class_name[1], sizeof c->class_name[1], "location");
    snprintf(c->class_name[2], sizeof c->class_name[2], "events");
    c->retention_ms[0] = 730 * DAY_MS;
    c->retention_ms[1] = 30 * DAY_MS;
    c->retention_ms[2] = 730 * DAY_MS;
    c->events_class = 2;
    static const char *const loc[] = {"Location", "OriginLocation", "DestinationLocation",
                                      "GpsHeading"};
    for (size_t i = 0; i < sizeof loc / sizeof loc[0]; i++) {
        long f = fv_signal_lookup(loc[i]);
        if (f >= 0 && f < FV_STORE_FIELD_TABLE) c->class_of[f] = 1;
    }
}

int fv_store_class_id(const struct fv_store_config *c, const char *name)
{
    for (uint32_t i = 0; i < c->nclasses; i++)
        if (strcmp(c->class_name[i], name) == 0) return (int)i;
    return -1;
}

static uint8_t class_of(const struct fv_store_config *c, uint32_t field)
{
    return field < FV_STORE_FIELD_TABLE ? c->class_of[field] : 0;
}

/* ---- subjects ----------------------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int fv_subject_from_hex(const char *p, unsigned char out[FV_SUBJECT_LEN])
{
    if (strlen(p) != 2 * FV_SUBJECT_LEN) return FV_EINVAL;
    for (int i = 0; i < FV_SUBJECT_LEN; i++) {
        int a = hexval(p[2 * i]), b = hexval(p[2 * i + 1]);
        if (a < 0 || b < 0) return FV_EINVAL;
        out[i] = (unsigned char)(a << 4 | b);
    }
    return FV_OK;
}

void fv_subject_to_hex(const unsigned char s[FV_SUBJECT_LEN], char out[33])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < FV_SUBJECT_LEN; i++) {
        out[2 * i] = hx[s[i] >> 4];
        out[2 * i + 1] = hx[s[i] & 15];
    }
    out[32] = '\0';
}

/* ---- head --------------------------------------------------------------------------------- */

struct hframe {
    int64_t t;
    uint32_t off, n; /* datums [off, off+n) */
};
struct hevent {
    int64_t t;
    uint32_t topic_off, topic_len, off, len; /* in evbytes */
};
struct hdev {
    char pseudo[33];
    unsigned char subject[FV_SUBJECT_LEN];
    unsigned char dek[32];
    struct hframe *fr;
    size_t nfr, capfr;
    struct fv_datum *d;
    size_t nd, capd;
    struct hevent *ev;
    size_t nev, capev;
    struct fv_buf evbytes;
    int64_t rx_max; /* latest receive time of its records: every block flushed from it */
};
struct head {
    struct fv_map devs; /* pseudo -> struct hdev* */
    uint64_t datums, records;
    uint64_t first_ms; /* when the first record arrived (0: empty) */
};

static void hdev_free(struct hdev *h)
{
    for (size_t i = 0; i < h->nd; i++)
        fv_value_clear(&h->d[i].value);
    free(h->fr);
    free(h->d);
    free(h->ev);
    fv_buf_free(&h->evbytes);
    OPENSSL_cleanse(h->dek, sizeof h->dek);
    free(h);
}

static void head_free(struct head *hd)
{
    if (hd == NULL) return;
    for (size_t i = 0; i < hd->devs.cap; i++)
        if (hd->devs.slots[i].hash) hdev_free(hd->devs.slots[i].val);
    fv_map_free(&hd->devs);
    free(hd);
}

static struct hdev *head_dev(struct head *hd, const char *pseudo, const unsigned char dek[32])
{
    struct hdev *h = fv_map_get(&hd->devs, pseudo, strlen(pseudo));
    if (h) return h;
    h = calloc(1, sizeof *h);
    if (h == NULL) return NULL;
    if (fv_subject_from_hex(pseudo, h->subject) != FV_OK) {
        free(h);
        return NULL;
    }
    snprintf(h->pseudo, sizeof h->pseudo, "%s", pseudo);
    memcpy(h->dek, dek, 32);
    if (fv_map_put(&hd->devs, pseudo, strlen(pseudo), h) != FV_OK) {
        free(h);
        return NULL;
    }
    return h;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return FV_OK;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *m = realloc(*p, nc * elem);
    if (m == NULL) return FV_ENOMEM;
    *p = m;
    *cap = nc;
    return FV_OK;
}

/* ---- the store ---------------------------------------------------------------------------- */

enum { JOB_FLUSH = 1, JOB_MERGE = 2 };

struct keyent {
    unsigned char subject[FV_SUBJECT_LEN];
    int state; /* FV_OK: key valid; FV_ESTATE: destroyed */
    unsigned char key[32];
};

struct job {
    int kind;
    /* flush */
    struct head *head;
    /* merge */
    struct fv_part **in;
    size_t nin;
    struct keyent *keys;
    size_t nkeys;
    int full; /* a requested full compaction */
    /* both */
    uint64_t gen_lo, gen_hi, wal_hi, now_ms;
    uint32_t level;
    int provisional; /* flush while the WAL is held (T5) */
    /* result */
    int rc;
    char err[512];
    int committed; /* the output was renamed into place (even if the job then failed) */
    struct fv_part *out;
    double ms;
    uint64_t expired, purged;
    /* input blocks that could not be read, kept as they were (copied) and reported */
    struct fv_store_failure fails[FV_STORE_MAX_FAILURES];
    size_t nfails;
    uint64_t failures;
};

/* Notes an input block a merge could not read (the newest FV_STORE_MAX_FAILURES kept). */
static void note_failure(struct job *j, const struct fv_part *p, const char *why)
{
    j->failures++;
    if (j->nfails == FV_STORE_MAX_FAILURES) {
        memmove(j->fails, j->fails + 1, (FV_STORE_MAX_FAILURES - 1) * sizeof *j->fails);
        j->nfails--;
    }
    struct fv_store_failure *f = &j->fails[j->nfails++];
    const char *base = strrchr(p->path, '/');
    snprintf(f->part, sizeof f->part, "%s", base ? base + 1 : p->path);
    snprintf(f->error, sizeof f->error, "%s", why);
    f->at_ms = fv_now_ms();
}

enum { ST_IDLE, ST_ROTATING, ST_RUNNING };

struct fv_store {
    struct fv_store_config cfg;
    int read_only;
    struct fv_part **parts; /* by gen_lo */
    size_t nparts, capparts;
    uint64_t next_gen, wal_hi;
    struct head *head, *frozen;
    uint64_t frozen_gen; /* the frozen head is written under this generation, every attempt */
    int state;
    uint64_t marker, marker_file;
    struct job *job;
    struct job *redo; /* a merge that failed after its rename: retried exactly as it was */
    /* worker */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *todo; /* handed to the worker, under mu */
    int done, stop;   /* under mu */
    /* requests and bookkeeping */
    int want_full, full_running;
    int hold_wal;
    unsigned char (*purge)[FV_SUBJECT_LEN]; /* erased subjects whose blocks are to go */
    size_t npurge, cappurge;
    void (*wake)(void *);
    void *wake_arg;
    uint64_t retry_after_ms, last_retention_ms;
    uint32_t fail_streak, full_fails; /* consecutive failed jobs; failed full compactions */
    struct fv_store_failure fails[FV_STORE_MAX_FAILURES]; /* newest last */
    size_t nfails;
    struct fv_store_stats st;
    /* Block cache (event loop only): decrypted, decompressed blocks by (part id, index),
     * least recently used first out. Plaintext in memory, like the head; dropped for a
     * subject on fv_store_forget. */
    struct fv_map cache;
    struct cent *lru_head, *lru_tail; /* head = most recent */
    uint64_t cache_used;
};

struct cent {
    unsigned char key[16]; /* part id, index */
    unsigned char subject[FV_SUBJECT_LEN];
    unsigned char dek[32]; /* the key that opened it: a hit needs the same key */
    struct cent *prev, *next;
    struct fv_buf raw;
};

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
    OPENSSL_cleanse(e->dek, sizeof e->dek);
    OPENSSL_cleanse(e->raw.data, e->raw.len);
    fv_buf_free(&e->raw);
    free(e);
}

/* The plaintext of block i of part p, from the cache or read, checked, decrypted and
 * decompressed (then cached). The result is copied into out. */
static int read_block(struct fv_store *s, const struct fv_part *p, size_t i,
                      const unsigned char dek[32], struct fv_buf *out, char *err, size_t errlen)
{
    unsigned char key[16];
    fv_put_u64(key, p->id);
    fv_put_u64(key + 8, (uint64_t)i);
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
        return fv_buf_append(out, e->raw.data, e->raw.len);
    }
    s->st.cache_misses++;
    int rc = fv_part_open_block(p, i, dek, out, err, errlen);
    if (rc || s->cfg.cache_bytes == 0 || out->len > s->cfg.cache_bytes / 4) return rc;
    e = calloc(1, sizeof *e);
    if (e == NULL || fv_buf_append(&e->raw, out->data, out->len) != FV_OK ||
        fv_map_put(&s->cache, key, sizeof key, e) != FV_OK) {
        if (e) fv_buf_free(&e->raw);
        free(e);
        return FV_OK; /* caching is optional */
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
    return FV_OK;
}

static void job_free(struct job *j)
{
    if (j == NULL) return;
    for (size_t i = 0; i < j->nin; i++)
        fv_part_unref(j->in[i]);
    free(j->in);
    if (j->keys) {
        OPENSSL_cleanse(j->keys, j->nkeys * sizeof *j->keys);
        free(j->keys);
    }
    if (j->out) fv_part_unref(j->out);
    free(j);
}

static int add_part(struct fv_store *s, struct fv_part *p)
{
    int rc = grow((void **)&s->parts, &s->capparts, s->nparts + 1, sizeof *s->parts);
    if (rc) return rc;
    size_t i = s->nparts;
    while (i > 0 && s->parts[i - 1]->gen_lo > p->gen_lo) {
        s->parts[i] = s->parts[i - 1];
        i--;
    }
    s->parts[i] = p;
    s->nparts++;
    if (p->gen_hi >= s->next_gen) s->next_gen = p->gen_hi + 1;
    if (!(p->flags & FV_PART_F_PROVISIONAL) && p->wal_file_hi > s->wal_hi)
        s->wal_hi = p->wal_file_hi; /* T5: a provisional part never moves the watermark */
    return FV_OK;
}

/* ---- worker: flush ------------------------------------------------------------------------ */

struct keep_arg {
    const struct fv_store_config *cfg;
    uint8_t cls;
};
static int keep_class(void *arg, uint32_t field)
{
    const struct keep_arg *k = arg;
    return class_of(k->cfg, field) == k->cls;
}

static int cmp_hframe(const void *a, const void *b)
{
    const struct hframe *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off; /* arrival order */
}

/* Where put_frames writes, and how it accounts. */
struct put {
    const struct fv_store_config *cfg;
    struct fv_part_writer *w;
    const unsigned char *subject, *dek;
    const char *cname;
    struct keep_arg *ka; /* the class whose signals to keep; NULL: every signal */
    int zlevel;
    const uint8_t *first_cls; /* flush: per frame, the first class its record has */
    uint64_t *carry;          /* merge: records the inputs stand for, yet to place */
    int64_t rx_max;           /* the blocks' latest receive time (part.h) */
    struct fv_buf *raw;
    char *err;
    size_t errlen;
};

/* Signals of one class (or all) within [lo, hi]: a frame too wide for one block. */
struct range_arg {
    struct keep_arg *ka;
    uint32_t lo, hi;
};
static int keep_range(void *arg, uint32_t field)
{
    const struct range_arg *r = arg;
    return field >= r->lo && field <= r->hi && (r->ka == NULL || keep_class(r->ka, field));
}

/* Encodes frames fr[0..n) (index at of the caller's list) and events into one block and
 * adds it. counts = 0: the block continues a record already counted (nfirst 0). FV_ELIMIT
 * from the encoder (block.h limits) adds nothing. */
static int put_block(struct put *P, const struct fv_block_frame *fr, size_t n, size_t at,
                     const struct fv_block_event *ev, size_t ne, int (*keep)(void *, uint32_t),
                     void *karg, int counts)
{
    struct fv_block_in in = {
        .nframes = n, .frames = fr, .nev = ne, .ev = ev, .keep = keep, .keep_arg = karg};
    struct fv_block_meta m;
    fv_buf_reset(P->raw);
    int rc = fv_block_encode(&in, P->raw, &m);
    if (rc) return rc;
    /* Records this block stands for (part.h, nfirst): at flush, frames whose first class
     * is this one; when merging, the inputs' total rides on the first blocks. */
    uint64_t nfirst = counts ? m.nev : 0;
    if (P->first_cls) {
        for (size_t k = at; counts && k < at + n; k++)
            nfirst += P->first_cls[k] == P->ka->cls;
    } else if (P->carry) {
        /* the inputs' total, spread over the output blocks as they can hold it */
        uint64_t room = counts ? (uint64_t)m.nrec + m.nev : 0;
        nfirst = *P->carry < room ? *P->carry : room;
        *P->carry -= nfirst;
    }
    if (m.nrec + m.nev == 0) return FV_OK;
    if (nfirst > m.nrec + m.nev) nfirst = m.nrec + m.nev; /* cannot happen; bounded */
    int id = fv_part_writer_class(P->w, P->cname);
    if (id < 0) return id;
    struct fv_part_entry e = {.cls = (uint8_t)id,
                              .nrec = m.nrec,
                              .nev = m.nev,
                              .ndatums = m.ndatums,
                              .min_t = m.min_t,
                              .max_t = m.max_t,
                              .nfirst = (uint32_t)nfirst,
                              .rx_max = P->rx_max};
    memcpy(e.subject, P->subject, FV_SUBJECT_LEN);
    return fv_part_writer_add(P->w, &e, P->dek, P->raw->data, P->raw->len, P->zlevel, P->err,
                              P->errlen);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* One frame with more kept signals than a block holds (only records stored before the
 * payload limits, wire/payload.h): its signals go to several blocks of FV_BLOCK_MAX_COLS
 * signal numbers each, in ascending ranges. Queries show one row per block. */
static int put_wide(struct put *P, const struct fv_block_frame *f, size_t at)
{
    uint32_t *fl = malloc((f->n ? f->n : 1) * sizeof *fl);
    if (fl == NULL) return FV_ENOMEM;
    size_t m = 0;
    for (uint32_t k = 0; k < f->n; k++)
        if (P->ka == NULL || keep_class(P->ka, f->d[k].field)) fl[m++] = f->d[k].field;
    qsort(fl, m, sizeof *fl, cmp_u32);
    size_t u = 0;
    for (size_t k = 0; k < m; k++)
        if (u == 0 || fl[u - 1] != fl[k]) fl[u++] = fl[k];
    int rc = FV_OK;
    for (size_t k = 0; rc == FV_OK && k < u; k += FV_BLOCK_MAX_COLS) {
        size_t last = k + FV_BLOCK_MAX_COLS < u ? k + FV_BLOCK_MAX_COLS - 1 : u - 1;
        struct range_arg ra = {P->ka, fl[k], fl[last]};
        rc = put_block(P, f, 1, at, NULL, 0, keep_range, &ra, k == 0);
    }
    free(fl);
    return rc;
}

/* Encodes frames (sorted) of one class, and events, into blocks of at most block_frames,
 * each within what a reader accepts (block.h): an input the encoder refuses as too large is
 * halved until it fits, and a single frame too wide is split by signal number. */
static int put_frames(struct put *P, const struct fv_block_frame *fr, size_t nfr,
                      const struct fv_block_event *ev, size_t nev)
{
    size_t step = P->cfg->block_frames ? P->cfg->block_frames : 8192;
    if (step > FV_BLOCK_MAX_REC) step = FV_BLOCK_MAX_REC;
    for (size_t at = 0, eat = 0; at < nfr || eat < nev;) {
        size_t n = nfr - at < step ? nfr - at : step;
        size_t ne = nev - eat < step ? nev - eat : step;
        int rc;
        for (;;) {
            rc = put_block(P, fr + at, n, at, ev + eat, ne, P->ka ? keep_class : NULL, P->ka, 1);
            if (rc != FV_ELIMIT || n + ne <= 1) break;
            if (n > 1 && n >= ne)
                n = (n + 1) / 2;
            else if (ne > 1)
                ne = (ne + 1) / 2;
            else
                ne = 0; /* one frame and one event: the frame first */
        }
        if (rc == FV_ELIMIT && n == 1) rc = put_wide(P, fr + at, at);
        if (rc == FV_ELIMIT && ne)
            fv_seterr(P->err, P->errlen, "an event of %u bytes is larger than a block may be",
                      ev[eat].len);
        else if (rc == FV_ELIMIT)
            fv_seterr(P->err, P->errlen, "a frame at %lld is larger than a block may be",
                      (long long)fr[at].t);
        if (rc) return rc;
        at += n;
        eat += ne;
    }
    return FV_OK;
}

static int cmp_bframe(const void *a, const void *b)
{
    const struct fv_block_frame *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->d < y->d ? -1 : x->d > y->d; /* datums are laid out in arrival order */
}
static int cmp_bevent(const void *a, const void *b)
{
    const struct fv_block_event *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->payload < y->payload ? -1 : x->payload > y->payload;
}

/* Encodes one subject's frozen head. The head itself is not touched (queries on the event
 * loop read it while this runs): sorted copies of its frame and event lists are encoded. */
static int flush_dev(const struct fv_store_config *cfg, struct fv_part_writer *w, struct hdev *h,
                     struct fv_buf *raw, char *err, size_t errlen)
{
    struct fv_block_frame *fr = malloc((h->nfr ? h->nfr : 1) * sizeof *fr);
    struct fv_block_event *ev = malloc((h->nev ? h->nev : 1) * sizeof *ev);
    uint8_t *first = malloc(h->nfr ? h->nfr : 1);
    int rc = FV_OK;
    if (fr == NULL || ev == NULL || first == NULL) {
        rc = FV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < h->nfr; i++) {
        fr[i] = (struct fv_block_frame){h->fr[i].t, h->fr[i].n, h->d + h->fr[i].off, 0};
        uint32_t mask = 0;
        for (uint32_t k = 0; k < fr[i].n; k++)
            mask |= 1u << class_of(cfg, fr[i].d[k].field);
        fr[i].group = mask; /* the classes this record has: joins its blocks back (block.h) */
    }
    for (size_t i = 0; i < h->nev; i++)
        ev[i] = (struct fv_block_event){
            h->ev[i].t, (const char *)h->evbytes.data + h->ev[i].topic_off, h->ev[i].topic_len,
            h->evbytes.data + h->ev[i].off, h->ev[i].len};
    if (h->nfr) qsort(fr, h->nfr, sizeof *fr, cmp_bframe);
    if (h->nev) qsort(ev, h->nev, sizeof *ev, cmp_bevent);
    for (size_t i = 0; i < h->nfr; i++) {
        uint8_t lo = 255;
        for (uint32_t k = 0; k < fr[i].n; k++) {
            uint8_t c = class_of(cfg, fr[i].d[k].field);
            if (c < lo) lo = c;
        }
        first[i] = lo;
    }
    for (uint32_t c = 0; rc == FV_OK && c < cfg->nclasses; c++) {
        struct keep_arg ka = {cfg, (uint8_t)c};
        struct put P = {.cfg = cfg,
                        .w = w,
                        .subject = h->subject,
                        .dek = h->dek,
                        .cname = cfg->class_name[c],
                        .zlevel = cfg->zlevel_flush,
                        .rx_max = h->rx_max,
                        .raw = raw,
                        .err = err,
                        .errlen = errlen};
        if (c == cfg->events_class) {
            rc = put_frames(&P, NULL, 0, ev, h->nev);
        } else if (h->nfr) {
            P.ka = &ka;
            P.first_cls = first;
            rc = put_frames(&P, fr, h->nfr, NULL, 0);
        }
    }
out:
    free(first);
    free(fr);
    free(ev);
    return rc;
}

/* Commits a job's part (unless rc already failed), notes whether it was renamed into place
 * (a retry must then use the same generations: C in issue 8), and opens it. point names the
 * test hook (config fail_at) run right after the rename. */
static int finish_part(const struct fv_store_config *cfg, struct job *j, struct fv_part_writer *w,
                       int rc, const char *point)
{
    char path[PATH_MAX];
    if (rc == FV_OK)
        rc = fv_part_writer_commit(w, j->wal_hi, path, sizeof path, j->err, sizeof j->err);
    j->committed = fv_part_writer_committed(w);
    fv_part_writer_free(w);
    if (rc == FV_OK && cfg->fail_at && (rc = cfg->fail_at(cfg->fail_arg, point)) != FV_OK)
        snprintf(j->err, sizeof j->err, "test hook: %s failed", point);
    if (rc == FV_OK) rc = fv_part_open(path, &j->out, j->err, sizeof j->err);
    return rc;
}

static int run_flush(const struct fv_store_config *cfg, struct job *j)
{
    struct fv_part_writer *w;
    int rc = fv_part_writer_open(cfg->dir, j->gen_lo, j->gen_hi, 0, &w, j->err, sizeof j->err);
    if (rc) return rc;
    struct fv_buf raw = {0};
    struct head *hd = j->head;
    for (size_t i = 0; rc == FV_OK && i < hd->devs.cap; i++)
        if (hd->devs.slots[i].hash)
            rc = flush_dev(cfg, w, hd->devs.slots[i].val, &raw, j->err, sizeof j->err);
    fv_buf_free(&raw);
    if (j->provisional) fv_part_writer_set_flags(w, FV_PART_F_PROVISIONAL);
    return finish_part(cfg, j, w, rc, "flush.renamed");
}

/* ---- worker: merge (compaction, retention, purge) ---------------------------------------- */

static int cmp_key(const void *a, const void *b)
{
    return memcmp(a, b, FV_SUBJECT_LEN);
}

static const struct keyent *find_key(const struct job *j, const unsigned char *subject)
{
    return bsearch(subject, j->keys, j->nkeys, sizeof *j->keys, cmp_key);
}

/* One input block of a (subject, class) group. */
struct gent {
    struct fv_part *p;
    size_t i;
};

/* Stable merge sort of n elements of size bytes that start with their int64_t time (the
 * block frames and events), using tmp (n elements) as scratch. */
static void sort_by_time(void *base, size_t n, size_t size, void *tmp)
{
    unsigned char *a = base, *t = tmp;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t x = lo, y = mid, o = lo;
            while (x < mid || y < hi) {
                int64_t tx = 0, ty = 0;
                if (x < mid) memcpy(&tx, a + x * size, sizeof tx);
                if (y < hi) memcpy(&ty, a + y * size, sizeof ty);
                size_t from = (x < mid && (y >= hi || tx <= ty)) ? x++ : y++;
                memcpy(t + o++ * size, a + from * size, size);
            }
        }
        memcpy(a, t, n * size);
    }
}

/* Copies input block g of a merge into its output as it is: a block that cannot be read is
 * kept intact (and reported), not dropped; the merge goes on. The copy keeps the input's
 * CRC, so a damaged block stays recognisably damaged. */
static int keep_as_is(struct job *j, struct fv_part_writer *w, const struct gent *g,
                      const char *cname, struct fv_buf *sealed, int report)
{
    char err[256] = "";
    /* On a checksum mismatch the bytes were read all the same (part.h). */
    int rc = fv_part_read_block(g->p, g->i, sealed, err, sizeof err);
    if (rc == FV_ECORRUPT && report) note_failure(j, g->p, err);
    if (rc && rc != FV_ECORRUPT) {
        snprintf(j->err, sizeof j->err, "%s", err);
        return rc;
    }
    return fv_part_writer_copy(w, &g->p->e[g->i], cname, sealed->data, sealed->len, j->err,
                               sizeof j->err);
}

/* Decodes blocks and re-encodes their frames merged in time order. An input that does not
 * open or decode (FV_ECORRUPT) is copied as it is instead (keep_as_is). */
static int merge_group(const struct fv_store_config *cfg, struct job *j, struct fv_part_writer *w,
                       const unsigned char *subject, const unsigned char *key, const char *cname,
                       const struct gent *g, size_t ng, struct fv_buf *raw, struct fv_buf *sealed)
{
    struct fv_block *b = calloc(ng, sizeof *b);
    struct fv_buf *raws = calloc(ng, sizeof *raws);
    unsigned char *bad = calloc(ng, 1);
    struct fv_block_frame *fr = NULL;
    struct fv_block_event *ev = NULL;
    struct fv_datum *d = NULL;
    uint32_t *cnt = NULL;
    int rc = FV_OK;
    if (b == NULL || raws == NULL || bad == NULL) {
        rc = FV_ENOMEM;
        goto out;
    }
    size_t nfr = 0, nev = 0, nd = 0;
    for (size_t k = 0; k < ng && rc == FV_OK; k++) {
        char why[512] = "", sub[256] = "";
        rc = fv_part_open_block(g[k].p, g[k].i, key, &raws[k], why, sizeof why);
        if (rc == FV_OK) {
            rc = fv_block_decode(raws[k].data, raws[k].len, NULL, 0, 1, &b[k], sub, sizeof sub);
            if (rc == FV_ECORRUPT)
                snprintf(why, sizeof why, "%s: offset %llu: block malformed: %s", g[k].p->path,
                         (unsigned long long)g[k].p->e[g[k].i].off, sub);
        }
        if (rc == FV_ECORRUPT) {
            note_failure(j, g[k].p, why);
            bad[k] = 1;
            rc = keep_as_is(j, w, &g[k], cname, sealed, 0);
            continue;
        }
        if (rc) {
            snprintf(j->err, sizeof j->err, "%s", why);
            break;
        }
        nfr += b[k].nrec;
        nev += b[k].nev;
        for (size_t c = 0; c < b[k].ncols; c++)
            nd += b[k].cols[c].n;
    }
    if (rc) goto out;
    fr = malloc((nfr ? nfr : 1) * sizeof *fr);
    ev = malloc((nev ? nev : 1) * sizeof *ev);
    d = malloc((nd ? nd : 1) * sizeof *d);
    cnt = calloc(nfr ? nfr : 1, sizeof *cnt);
    if (fr == NULL || ev == NULL || d == NULL || cnt == NULL) {
        rc = FV_ENOMEM;
        goto out;
    }
    /* Lay datums out frame by frame: count per frame, prefix sums, then fill. */
    size_t base = 0, fi = 0, ei = 0;
    for (size_t k = 0; k < ng; k++) {
        for (size_t c = 0; c < b[k].ncols; c++)
            for (size_t r = 0; r < b[k].cols[c].n; r++)
                cnt[base + b[k].cols[c].row[r]]++;
        base += b[k].nrec;
    }
    size_t off = 0;
    base = 0;
    for (size_t k = 0; k < ng; k++) {
        for (size_t r = 0; r < b[k].nrec; r++) {
            fr[fi] = (struct fv_block_frame){b[k].t[r], 0, d + off, b[k].group[r]};
            off += cnt[fi];
            fi++;
        }
        for (size_t c = 0; c < b[k].ncols; c++)
            for (size_t r = 0; r < b[k].cols[c].n; r++) {
                struct fv_block_frame *f = &fr[base + b[k].cols[c].row[r]];
                struct fv_datum *dd = (struct fv_datum *)&f->d[f->n++];
                dd->field = b[k].cols[c].field;
                dd->value = b[k].cols[c].v[r]; /* shallow: b owns strings */
            }
        for (size_t e = 0; e < b[k].nev; e++)
            ev[ei++] = b[k].ev[e];
        base += b[k].nrec;
    }
    /* Stable merge by time: inputs are in generation order, so ties keep arrival order. */
    struct fv_block_frame *tmpf = malloc((nfr ? nfr : 1) * sizeof *tmpf);
    struct fv_block_event *tmpe = malloc((nev ? nev : 1) * sizeof *tmpe);
    if (tmpf == NULL || tmpe == NULL) {
        free(tmpf);
        free(tmpe);
        rc = FV_ENOMEM;
        goto out;
    }
    /* Stable by time, so ties keep the inputs' (generation) order. */
    sort_by_time(fr, nfr, sizeof *fr, tmpf);
    sort_by_time(ev, nev, sizeof *ev, tmpe);
    free(tmpf);
    free(tmpe);
    /* Decoded blocks hold only their class's signals: keep everything, under their name. */
    uint64_t carry = 0;
    int64_t rx = INT64_MIN;
    for (size_t k = 0; k < ng; k++)
        if (!bad[k]) {
            carry += g[k].p->e[g[k].i].nfirst;
            if (g[k].p->e[g[k].i].rx_max > rx) rx = g[k].p->e[g[k].i].rx_max;
        }
    struct put P = {.cfg = cfg,
                    .w = w,
                    .subject = subject,
                    .dek = key,
                    .cname = cname,
                    .zlevel = cfg->zlevel_compact,
                    .carry = &carry,
                    .rx_max = rx,
                    .raw = raw,
                    .err = j->err,
                    .errlen = sizeof j->err};
    rc = put_frames(&P, fr, nfr, ev, nev);
out:
    for (size_t k = 0; b && k < ng; k++)
        fv_block_free(&b[k]);
    for (size_t k = 0; raws && k < ng; k++)
        fv_buf_free(&raws[k]);
    free(b);
    free(raws);
    free(bad);
    free(fr);
    free(ev);
    free(d);
    free(cnt);
    return rc;
}

struct mcursor {
    struct fv_part *p;
    size_t i;
};

static int run_merge(const struct fv_store_config *cfg, struct job *j)
{
    struct fv_part_writer *w;
    int rc =
        fv_part_writer_open(cfg->dir, j->gen_lo, j->gen_hi, j->level, &w, j->err, sizeof j->err);
    if (rc) return rc;
    struct mcursor *mc = calloc(j->nin, sizeof *mc);
    struct gent *g = NULL;
    size_t capg = 0;
    struct fv_buf raw = {0}, sealed = {0};
    if (mc == NULL) rc = FV_ENOMEM;
    for (size_t k = 0; k < j->nin && mc; k++)
        mc[k].p = j->in[k];
    size_t step = cfg->block_frames ? cfg->block_frames : 8192;
    while (rc == FV_OK) {
        /* The smallest (subject, class name) among the inputs' next entries. */
        const struct fv_part_entry *best = NULL;
        const char *bname = NULL;
        for (size_t k = 0; k < j->nin; k++) {
            if (mc[k].i >= mc[k].p->n) continue;
            const struct fv_part_entry *e = &mc[k].p->e[mc[k].i];
            const char *nm = mc[k].p->classes[e->cls];
            int c = best ? memcmp(e->subject, best->subject, FV_SUBJECT_LEN) : -1;
            if (c == 0) c = strcmp(nm, bname);
            if (c < 0) {
                best = e;
                bname = nm;
            }
        }
        if (best == NULL) break;
        unsigned char subject[FV_SUBJECT_LEN];
        char cname[FV_CLASS_NAME_MAX + 1];
        memcpy(subject, best->subject, sizeof subject);
        snprintf(cname, sizeof cname, "%s", bname);
        /* Gather the group from every input (in generation order). */
        size_t ng = 0;
        for (size_t k = 0; k < j->nin && rc == FV_OK; k++)
            while (mc[k].i < mc[k].p->n) {
                const struct fv_part_entry *e = &mc[k].p->e[mc[k].i];
                if (memcmp(e->subject, subject, FV_SUBJECT_LEN) != 0 ||
                    strcmp(mc[k].p->classes[e->cls], cname) != 0)
                    break;
                rc = grow((void **)&g, &capg, ng + 1, sizeof *g);
                if (rc) break;
                g[ng++] = (struct gent){mc[k].p, mc[k].i};
                mc[k].i++;
            }
        if (rc) break;
        const struct keyent *ke = find_key(j, subject);
        if (ke == NULL || ke->state != FV_OK) {
            j->purged += ng; /* T4: the subject's key is gone; so are its blocks */
            continue;
        }
        int cls = fv_store_class_id(cfg, cname);
        uint64_t keep = cls >= 0 ? cfg->retention_ms[cls] : 0;
        int64_t cutoff = keep && j->now_ms > keep ? (int64_t)(j->now_ms - keep) : INT64_MIN;
        /* Whole blocks past retention go; full blocks are copied as they are (no
         * decryption); the small rest is merged into fewer, larger blocks. */
        size_t nsmall = 0;
        for (size_t k = 0; k < ng && rc == FV_OK; k++) {
            const struct fv_part_entry *e = &g[k].p->e[g[k].i];
            if (e->max_t < cutoff && e->rx_max < cutoff) { /* T6 */
                j->expired++;
                continue;
            }
            if (e->nrec + e->nev >= step / 2 || (ng == 1 && !j->full)) {
                rc = keep_as_is(j, w, &g[k], cname, &sealed, 1);
                continue;
            }
            g[nsmall++] = g[k];
        }
        if (rc == FV_OK && nsmall)
            rc = merge_group(cfg, j, w, subject, ke->key, cname, g, nsmall, &raw, &sealed);
    }
    free(mc);
    free(g);
    fv_buf_free(&raw);
    fv_buf_free(&sealed);
    return finish_part(cfg, j, w, rc, "merge.renamed");
}

static void *worker_main(void *arg)
{
    struct fv_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->todo == NULL && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->todo == NULL) break;
        struct job *j = s->todo;
        pthread_mutex_unlock(&s->mu);
        uint64_t t0 = fv_mono_ns();
        j->rc = j->kind == JOB_FLUSH ? run_flush(&s->cfg, j) : run_merge(&s->cfg, j);
        j->ms = (double)(fv_mono_ns() - t0) / 1e6;
        pthread_mutex_lock(&s->mu);
        s->todo = NULL;
        s->done = 1;
        pthread_cond_broadcast(&s->cv);
        if (s->wake) s->wake(s->wake_arg);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- open / close ------------------------------------------------------------------------- */

void fv_store_set_wake(struct fv_store *s, void (*fn)(void *), void *arg)
{
    s->wake = fn;
    s->wake_arg = arg;
}

static int cmp_span_desc(const void *a, const void *b)
{
    const struct fv_part *x = *(struct fv_part *const *)a, *y = *(struct fv_part *const *)b;
    uint64_t sx = x->gen_hi - x->gen_lo, sy = y->gen_hi - y->gen_lo;
    if (sx != sy) return sx > sy ? -1 : 1;
    return x->gen_lo < y->gen_lo ? -1 : x->gen_lo > y->gen_lo;
}

/* T2: drops parts whose generations lie inside another part's (a committed merge whose
 * inputs were not yet deleted); refuses partial overlaps, which no correct run makes. */
static int drop_obsolete(struct fv_store *s, struct fv_part **all, size_t n, char *err,
                         size_t errlen)
{
    if (n) qsort(all, n, sizeof *all, cmp_span_desc);
    int rc = FV_OK;
    for (size_t i = 0; i < n; i++) {
        struct fv_part *p = all[i];
        int covered = 0;
        for (size_t k = 0; k < s->nparts && rc == FV_OK; k++) {
            const struct fv_part *q = s->parts[k];
            if (p->gen_lo >= q->gen_lo && p->gen_hi <= q->gen_hi)
                covered = 1;
            else if (p->gen_lo <= q->gen_hi && q->gen_lo <= p->gen_hi) {
                fv_seterr(err, errlen, "%s overlaps %s partially: refusing to guess", p->path,
                          q->path);
                rc = FV_ECORRUPT;
            }
        }
        if (rc) {
            fv_part_unref(p);
            continue;
        }
        if (covered) {
            if (!s->read_only) {
                fv_info("store: %s was merged into a newer part; deleting it", p->path);
                p->unlink_on_free = 1;
            }
            fv_part_unref(p);
            continue;
        }
        rc = add_part(s, p);
        if (rc) fv_part_unref(p);
    }
    return rc;
}

int fv_store_open(const struct fv_store_config *cfg, int read_only, struct fv_store **out,
                  char *err, size_t errlen)
{
    *out = NULL;
    struct fv_store *s = calloc(1, sizeof *s);
    if (s == NULL) return FV_ENOMEM;
    s->cfg = *cfg;
    s->read_only = read_only;
    s->next_gen = 1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    struct fv_part **all = NULL;
    size_t nall = 0, capall = 0;
    int rc = FV_OK;
    if (!read_only) rc = fv_os_mkdirs(cfg->dir, 0700, err, errlen);
    DIR *d = rc == FV_OK ? opendir(cfg->dir) : NULL;
    if (rc == FV_OK && d == NULL && !(read_only && errno == ENOENT)) {
        fv_seterr(err, errlen, "opendir %s: %s", cfg->dir, strerror(errno));
        rc = FV_EIO;
    }
    struct dirent *de;
    while (d && rc == FV_OK && (de = readdir(d)) != NULL) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", cfg->dir, de->d_name);
        size_t l = strlen(de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".tmp") == 0) {
            if (!read_only) fv_os_unlink(path, NULL, 0); /* an unfinished part: never committed */
            continue;
        }
        uint64_t lo, hi;
        if (!fv_part_name(de->d_name, &lo, &hi)) continue;
        struct fv_part *p;
        rc = fv_part_open(path, &p, err, errlen);
        if (rc) break;
        if (p->gen_lo != lo || p->gen_hi != hi) {
            fv_seterr(err, errlen, "%s: offset 16: generations %llu-%llu do not match the name",
                      path, (unsigned long long)p->gen_lo, (unsigned long long)p->gen_hi);
            fv_part_unref(p);
            rc = FV_ECORRUPT;
            break;
        }
        if ((p->flags & FV_PART_F_PROVISIONAL) && !read_only) {
            /* T5: written while the WAL was held; the replay that follows this open brings
             * its records back from the WAL (files above the watermark). Its generations
             * are not reused. */
            fv_info("store: %s was written while the WAL was held; its records are replayed "
                    "from the WAL, deleting it",
                    path);
            if (p->gen_hi >= s->next_gen) s->next_gen = p->gen_hi + 1;
            p->unlink_on_free = 1;
            fv_part_unref(p);
            continue;
        }
        rc = grow((void **)&all, &capall, nall + 1, sizeof *all);
        if (rc) {
            fv_part_unref(p);
            break;
        }
        all[nall++] = p;
    }
    if (d) closedir(d);
    if (rc) {
        for (size_t i = 0; i < nall; i++)
            fv_part_unref(all[i]);
    } else {
        rc = drop_obsolete(s, all, nall, err, errlen);
    }
    free(all);
    if (rc == FV_OK && !read_only && !(s->head = calloc(1, sizeof *s->head))) rc = FV_ENOMEM;
    if (rc == FV_OK && !read_only) {
        if (pthread_create(&s->thread, NULL, worker_main, s) != 0) {
            fv_seterr(err, errlen, "cannot start the store worker thread");
            rc = FV_ENOMEM;
        } else {
            s->thread_started = 1;
        }
    }
    if (rc) {
        fv_store_close(s);
        return rc;
    }
    *out = s;
    return FV_OK;
}

void fv_store_close(struct fv_store *s)
{
    if (s == NULL) return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    if (s->job) {
        /* An unfinished or uninstalled job: its part (if any) is covered by nothing yet
         * installed; it is a valid part, and open() picks it up next time (T1 holds). */
        job_free(s->job);
    }
    job_free(s->redo);
    for (size_t i = 0; i < s->nparts; i++)
        fv_part_unref(s->parts[i]);
    free(s->parts);
    head_free(s->head);
    head_free(s->frozen);
    while (s->lru_tail)
        cache_drop(s, s->lru_tail);
    free(s->purge);
    fv_map_free(&s->cache);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

uint64_t fv_store_wal_hi(const struct fv_store *s)
{
    return s->wal_hi;
}

/* ---- head input --------------------------------------------------------------------------- */

/* The head device a record goes to (tests may make adding fail: config fail_at "add"). */
static int add_target(struct fv_store *s, const char *pseudo, const unsigned char dek[32],
                      uint64_t rx_ms, struct hdev **out)
{
    if (s->head == NULL) return FV_ESTATE;
    if (s->cfg.fail_at) {
        int rc = s->cfg.fail_at(s->cfg.fail_arg, "add");
        if (rc) return rc;
    }
    struct hdev *h = head_dev(s->head, pseudo, dek);
    if (h == NULL) return FV_ENOMEM;
    int64_t rx = (int64_t)(rx_ms ? rx_ms : fv_now_ms());
    if (rx > h->rx_max) h->rx_max = rx;
    *out = h;
    return FV_OK;
}

int fv_store_add_frame(struct fv_store *s, const char *pseudo, const unsigned char dek[32],
                       int64_t t, uint64_t rx_ms, const struct fv_vrecord *v)
{
    struct hdev *h;
    int rc = add_target(s, pseudo, dek, rx_ms, &h);
    if (rc) return rc;
    if (h->nd + v->n > UINT32_MAX) return FV_ELIMIT;
    rc = grow((void **)&h->fr, &h->capfr, h->nfr + 1, sizeof *h->fr);
    if (rc == FV_OK) rc = grow((void **)&h->d, &h->capd, h->nd + v->n, sizeof *h->d);
    if (rc) return rc;
    size_t off = h->nd;
    for (size_t i = 0; i < v->n; i++) {
        h->d[off + i].field = v->data[i].field;
        rc = fv_value_copy(&h->d[off + i].value, &v->data[i].value);
        if (rc) {
            while (i-- > 0)
                fv_value_clear(&h->d[off + i].value);
            return rc;
        }
    }
    h->nd += v->n;
    h->fr[h->nfr++] = (struct hframe){t, (uint32_t)off, (uint32_t)v->n};
    s->head->datums += v->n;
    s->head->records++;
    if (s->head->first_ms == 0) s->head->first_ms = fv_now_ms();
    return FV_OK;
}

int fv_store_add_event(struct fv_store *s, const char *pseudo, const unsigned char dek[32],
                       int64_t t, uint64_t rx_ms, const char *topic, size_t topic_len,
                       const unsigned char *payload, size_t len)
{
    struct hdev *h;
    int rc = add_target(s, pseudo, dek, rx_ms, &h);
    if (rc) return rc;
    if (h->evbytes.len + topic_len + len > UINT32_MAX) return FV_ELIMIT;
    rc = grow((void **)&h->ev, &h->capev, h->nev + 1, sizeof *h->ev);
    if (rc) return rc;
    struct hevent e = {t, (uint32_t)h->evbytes.len, (uint32_t)topic_len,
                       (uint32_t)(h->evbytes.len + topic_len), (uint32_t)len};
    rc = fv_buf_append(&h->evbytes, topic, topic_len);
    if (rc == FV_OK) rc = fv_buf_append(&h->evbytes, payload, len);
    if (rc) return rc;
    h->ev[h->nev++] = e;
    s->head->records++;
    if (s->head->first_ms == 0) s->head->first_ms = fv_now_ms();
    return FV_OK;
}

void fv_store_forget(struct fv_store *s, const char *pseudo)
{
    unsigned char subject[FV_SUBJECT_LEN];
    if (fv_subject_from_hex(pseudo, subject) == FV_OK)
        for (struct cent *e = s->lru_head, *n; e; e = n) {
            n = e->next;
            if (memcmp(e->subject, subject, FV_SUBJECT_LEN) == 0) cache_drop(s, e);
        }
    struct head *heads[2] = {s->head, s->frozen};
    for (int i = 0; i < 2; i++) {
        /* The frozen head may be in the worker's hands; it is only dropped from the active
         * one, and compaction purges what the flush writes (T4). */
        if (heads[i] == NULL || (i == 1 && s->state == ST_RUNNING)) continue;
        struct hdev *h = fv_map_del(&heads[i]->devs, pseudo, strlen(pseudo));
        if (h) {
            heads[i]->datums -= heads[i]->datums < h->nd ? heads[i]->datums : h->nd;
            uint64_t nr = h->nfr + h->nev;
            heads[i]->records -= nr < heads[i]->records ? nr : heads[i]->records;
            hdev_free(h);
        }
    }
}

/* ---- maintenance -------------------------------------------------------------------------- */

static void hand_to_worker(struct fv_store *s, struct job *j)
{
    s->job = j;
    s->state = ST_RUNNING;
    pthread_mutex_lock(&s->mu);
    s->done = 0;
    s->todo = j;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Adds failures to the store's list (the newest FV_STORE_MAX_FAILURES are kept). */
static void keep_failures(struct fv_store *s, const struct fv_store_failure *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s->nfails == FV_STORE_MAX_FAILURES) {
            memmove(s->fails, s->fails + 1, (FV_STORE_MAX_FAILURES - 1) * sizeof *s->fails);
            s->nfails--;
        }
        s->fails[s->nfails++] = f[i];
    }
}

/* A requested full compaction that could not run: tried again, up to three times in a row,
 * then given up (reported), so that `compacting` always ends. */
static void full_failed(struct fv_store *s, const char *why)
{
    if (++s->full_fails < 3) {
        s->want_full = 1;
        return;
    }
    fv_error("store: full compaction given up after 3 failures: %s", why);
    struct fv_store_failure f = {.at_ms = fv_now_ms()};
    snprintf(f.part, sizeof f.part, "(full compaction)");
    snprintf(f.error, sizeof f.error, "given up: %s", why);
    keep_failures(s, &f, 1);
    s->want_full = 0;
    s->full_running = 0;
    s->full_fails = 0;
}

/* Installs a finished job's part, replacing its inputs (T2, T3). A failed job is retried
 * after a delay that doubles with each failure in a row (10 s up to about 10 minutes). */
static int install(struct fv_store *s, struct fv_wal *wal, uint64_t now_ms)
{
    struct job *j = s->job;
    s->job = NULL;
    s->state = ST_IDLE;
    int rc = j->rc;
    keep_failures(s, j->fails, j->nfails);
    s->st.compaction_failures += j->failures;
    if (rc) {
        uint64_t delay = 10000ull << (s->fail_streak < 6 ? s->fail_streak : 6);
        s->fail_streak++;
        fv_error("store: %s failed: %s; retrying in %llu s (the WAL still holds every record)",
                 j->kind == JOB_FLUSH ? "flush" : "compaction", j->err,
                 (unsigned long long)(delay / 1000));
        s->st.job_errors++;
        s->retry_after_ms = now_ms + delay;
        if (j->kind == JOB_FLUSH) {
            /* Keep the frozen head; the retry writes it under the same generation. */
            j->head = NULL;
        } else {
            struct fv_store_failure f = {.at_ms = fv_now_ms()};
            snprintf(f.part, sizeof f.part, "part-%016llx-%016llx.fvp (merge output)",
                     (unsigned long long)j->gen_lo, (unsigned long long)j->gen_hi);
            snprintf(f.error, sizeof f.error, "%s", j->err);
            keep_failures(s, &f, 1);
            if (j->committed) {
                /* Its part may exist under its final name: redo this very merge (same
                 * inputs, same generations), never one that would overlap it. */
                j->rc = 0;
                j->err[0] = '\0';
                j->committed = 0;
                j->expired = j->purged = j->failures = 0;
                j->nfails = 0;
                s->redo = j;
                return rc;
            }
            if (j->full) full_failed(s, j->err);
        }
        job_free(j);
        return rc;
    }
    s->fail_streak = 0;
    if (j->kind == JOB_FLUSH) {
        head_free(s->frozen);
        s->frozen = NULL;
        s->st.flushes++;
        s->st.last_flush_ms = j->ms;
    } else {
        size_t w = 0;
        for (size_t i = 0; i < s->nparts; i++) {
            int gone = 0;
            for (size_t k = 0; k < j->nin; k++)
                if (s->parts[i] == j->in[k]) gone = 1;
            if (gone) {
                /* A retention rewrite replaced the file under the same name: keep it. */
                if (strcmp(s->parts[i]->path, j->out->path) != 0) s->parts[i]->unlink_on_free = 1;
                fv_part_unref(s->parts[i]);
            } else {
                s->parts[w++] = s->parts[i];
            }
        }
        s->nparts = w;
        s->st.compactions += j->nin > 1;
        s->st.retention_runs += j->nin == 1;
        s->st.blocks_expired += j->expired;
        s->st.blocks_purged += j->purged;
        if (j->full) {
            s->full_running = 0;
            s->full_fails = 0;
        }
    }
    rc = add_part(s, j->out);
    if (rc == FV_OK) j->out = NULL;
    job_free(j);
    if (rc == FV_OK && wal && s->cfg.wal_keep_ms == 0 && !s->hold_wal) {
        char err[256];
        if (fv_wal_remove_upto(wal, s->wal_hi, err, sizeof err) != FV_OK) fv_warn("store: %s", err);
    }
    return rc;
}

/* Deletes WAL files covered by parts (T1) once older than wal_keep_ms. */
int fv_store_purge(struct fv_store *s, const char *pseudo)
{
    unsigned char subject[FV_SUBJECT_LEN];
    if (fv_subject_from_hex(pseudo, subject) != FV_OK) return FV_EINVAL;
    fv_store_forget(s, pseudo);
    int rc = grow((void **)&s->purge, &s->cappurge, s->npurge + 1, sizeof *s->purge);
    if (rc) return rc;
    memcpy(s->purge[s->npurge++], subject, FV_SUBJECT_LEN);
    return FV_OK;
}

void fv_store_hold_wal(struct fv_store *s)
{
    s->hold_wal = 1;
}

static void trim_wal(struct fv_store *s, struct fv_wal *wal, uint64_t now_ms)
{
    if (wal == NULL || s->wal_hi == 0 || s->hold_wal) return;
    char dir[PATH_MAX + 8];
    snprintf(dir, sizeof dir, "%s", s->cfg.dir);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) return;
    /* WAL files are in DATA/wal; the store is DATA/store. */
    snprintf(slash, sizeof dir - (size_t)(slash - dir), "/wal");
    uint64_t upto = 0;
    for (uint64_t no = s->wal_hi; no >= 1; no--) {
        char path[PATH_MAX + 40];
        snprintf(path, sizeof path, "%s/wal-%016llx.log", dir, (unsigned long long)no);
        struct stat st;
        if (stat(path, &st) != 0) break; /* older ones are gone already */
        uint64_t mt = (uint64_t)st.st_mtim.tv_sec * 1000 + (uint64_t)st.st_mtim.tv_nsec / 1000000;
        if (mt + s->cfg.wal_keep_ms <= now_ms) {
            upto = no;
            break;
        }
    }
    if (upto) {
        char err[256];
        if (fv_wal_remove_upto(wal, upto, err, sizeof err) != FV_OK) fv_warn("store: %s", err);
    }
}

static int subject_key(struct job *j, fv_store_key_fn keys, void *karg)
{
    /* Collect the inputs' subjects, then ask for each key once. */
    size_t n = 0;
    for (size_t k = 0; k < j->nin; k++)
        n += j->in[k]->n;
    j->keys = calloc(n ? n : 1, sizeof *j->keys);
    if (j->keys == NULL) return FV_ENOMEM;
    for (size_t k = 0; k < j->nin; k++)
        for (size_t i = 0; i < j->in[k]->n; i++)
            memcpy(j->keys[j->nkeys++].subject, j->in[k]->e[i].subject, FV_SUBJECT_LEN);
    qsort(j->keys, j->nkeys, sizeof *j->keys, cmp_key);
    size_t w = 0;
    for (size_t i = 0; i < j->nkeys; i++)
        if (w == 0 || memcmp(j->keys[w - 1].subject, j->keys[i].subject, FV_SUBJECT_LEN) != 0)
            j->keys[w++] = j->keys[i];
    j->nkeys = w;
    for (size_t i = 0; i < j->nkeys; i++) {
        char hex[33];
        fv_subject_to_hex(j->keys[i].subject, hex);
        int rc = keys(karg, hex, j->keys[i].key);
        if (rc == FV_ESTATE)
            j->keys[i].state = FV_ESTATE;
        else if (rc != FV_OK)
            return rc;
    }
    return FV_OK;
}

/* Starts a merge of parts[a..b) (adjacent generations) at level, or a full one. */
static int start_merge(struct fv_store *s, size_t a, size_t b, uint32_t level, int full,
                       fv_store_key_fn keys, void *karg, uint64_t now_ms)
{
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL) return FV_ENOMEM;
    j->kind = JOB_MERGE;
    j->full = full;
    j->now_ms = now_ms;
    j->level = level;
    j->in = calloc(b - a, sizeof *j->in);
    if (j->in == NULL) {
        free(j);
        return FV_ENOMEM;
    }
    j->gen_lo = UINT64_MAX;
    for (size_t i = a; i < b; i++) {
        struct fv_part *p = s->parts[i];
        fv_part_ref(p);
        j->in[j->nin++] = p;
        if (p->gen_lo < j->gen_lo) j->gen_lo = p->gen_lo;
        if (p->gen_hi > j->gen_hi) j->gen_hi = p->gen_hi;
        if (p->wal_file_hi > j->wal_hi) j->wal_hi = p->wal_file_hi;
    }
    int rc = subject_key(j, keys, karg);
    if (rc) {
        job_free(j);
        return rc;
    }
    /* A rewrite of one part (retention) keeps its name: the rename replaces the old file
     * atomically, which is the commit; the old part's descriptor still reads the old
     * blocks for readers holding it, and it is not unlinked again (same path). */
    if (full) s->full_running = 1;
    hand_to_worker(s, j);
    return FV_OK;
}

/* Does part p hold a block that retention has expired, or a purged subject? */
static int part_expired(const struct fv_store *s, const struct fv_part *p, uint64_t now_ms)
{
    for (uint32_t c = 0; c < p->nclasses; c++) {
        int cls = fv_store_class_id(&s->cfg, p->classes[c]);
        uint64_t keep = cls >= 0 ? s->cfg.retention_ms[cls] : 0;
        if (!keep || now_ms <= keep) continue;
        int64_t cutoff = (int64_t)(now_ms - keep);
        for (size_t i = 0; i < p->n; i++)
            if (p->e[i].cls == c && p->e[i].max_t < cutoff && p->e[i].rx_max < cutoff)
                return 1; /* T6 */
    }
    return 0;
}

static int pick_compaction(struct fv_store *s, fv_store_key_fn keys, void *karg, uint64_t now_ms)
{
    if (keys == NULL) {
        /* Nothing can be merged without keys: a requested full compaction ends here. */
        s->want_full = 0;
        s->full_running = 0;
        return FV_OK;
    }
    /* Provisional parts (T5) are never merged; they are the newest, so the others are a
     * prefix of the list and stay adjacent. */
    size_t np = 0;
    while (np < s->nparts && !(s->parts[np]->flags & FV_PART_F_PROVISIONAL))
        np++;
    if (s->want_full) {
        s->want_full = 0;
        if (np == 0) {
            s->full_running = 0;
            return FV_OK;
        }
        uint32_t lvl = 0;
        for (size_t i = 0; i < np; i++)
            if (s->parts[i]->level > lvl) lvl = s->parts[i]->level;
        int rc = start_merge(s, 0, np, lvl + (np > 1), 1, keys, karg, now_ms);
        if (rc) full_failed(s, fv_strerror(rc));
        return rc;
    }
    /* Erasure: rewrite each part that still holds an erased subject's blocks (the merge
     * drops them: their key is gone, T4); a subject leaves the list once no part has it. */
    for (size_t k = 0; k < s->npurge;) {
        size_t holder = s->nparts;
        for (size_t i = 0; i < np && holder == s->nparts; i++) {
            size_t at = fv_part_find(s->parts[i], s->purge[k]);
            if (at < s->parts[i]->n &&
                memcmp(s->parts[i]->e[at].subject, s->purge[k], FV_SUBJECT_LEN) == 0)
                holder = i;
        }
        if (holder < s->nparts)
            return start_merge(s, holder, holder + 1, s->parts[holder]->level, 0, keys, karg,
                               now_ms);
        memmove(s->purge[k], s->purge[--s->npurge], FV_SUBJECT_LEN);
    }
    /* Size tiers: the first run of fanin adjacent parts of one level merges one level up. */
    uint32_t fan = s->cfg.compact_fanin < 2 ? 2 : s->cfg.compact_fanin;
    for (size_t i = 0; i + fan <= np; i++) {
        size_t k = 1;
        while (k < fan && s->parts[i + k]->level == s->parts[i]->level)
            k++;
        if (k == fan)
            return start_merge(s, i, i + fan, s->parts[i]->level + 1, 0, keys, karg, now_ms);
    }
    /* Retention: every minute (or a quarter of the shortest retention), rewrite the first
     * part holding expired blocks. */
    uint64_t every = 60000;
    for (uint32_t c = 0; c < s->cfg.nclasses; c++)
        if (s->cfg.retention_ms[c] && s->cfg.retention_ms[c] / 4 < every)
            every = s->cfg.retention_ms[c] / 4 ? s->cfg.retention_ms[c] / 4 : 1;
    if (now_ms - s->last_retention_ms >= every) {
        s->last_retention_ms = now_ms;
        for (size_t i = 0; i < np; i++)
            if (part_expired(s, s->parts[i], now_ms))
                return start_merge(s, i, i + 1, s->parts[i]->level, 0, keys, karg, now_ms);
    }
    return FV_OK;
}

/* Hands the frozen head to the worker, under its generation. While the WAL is held (T5) the
 * part is provisional and claims no more WAL files than the watermark already covers. */
static int start_flush(struct fv_store *s)
{
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL) return FV_ENOMEM;
    j->kind = JOB_FLUSH;
    j->head = s->frozen;
    j->gen_lo = j->gen_hi = s->frozen_gen;
    j->provisional = s->hold_wal;
    j->wal_hi = s->hold_wal ? s->wal_hi : s->marker_file;
    hand_to_worker(s, j);
    return FV_OK;
}

int fv_store_tick(struct fv_store *s, struct fv_wal *wal, fv_store_key_fn keys, void *karg,
                  uint64_t now_ms)
{
    if (s->read_only) return FV_OK;
    int rc = FV_OK;
    if (s->state == ST_RUNNING) {
        pthread_mutex_lock(&s->mu);
        int done = s->done;
        pthread_mutex_unlock(&s->mu);
        if (!done) return FV_OK;
        rc = install(s, wal, now_ms); /* a failed flush keeps the frozen head: retried below */
    }
    if (s->state == ST_IDLE && now_ms < s->retry_after_ms) return rc;
    if (s->state == ST_IDLE && s->frozen) {
        /* A flush that failed: try again (the WAL cut it needs was made already), under the
         * same generation, so that a part it renamed into place is replaced, not doubled. */
        int r2 = start_flush(s);
        return r2 ? r2 : rc;
    }
    if (s->state == ST_IDLE && s->redo) {
        struct job *j = s->redo;
        s->redo = NULL;
        hand_to_worker(s, j);
        return rc;
    }
    if (s->state == ST_IDLE) {
        struct head *h = s->head;
        int due = h->records && (h->datums >= s->cfg.flush_datums || s->want_full ||
                                 now_ms - h->first_ms >= s->cfg.flush_interval_ms);
        if (due) {
            s->frozen = h;
            s->head = calloc(1, sizeof *s->head);
            if (s->head == NULL) {
                s->head = s->frozen;
                s->frozen = NULL;
                return FV_ENOMEM;
            }
            s->marker = wal ? fv_wal_rotate(wal) : 0;
            s->state = ST_ROTATING;
        }
    }
    if (s->state == ST_ROTATING) {
        uint64_t last_file = 0;
        if (wal && !fv_wal_rotation_done(wal, s->marker, &last_file)) return rc;
        s->marker_file = last_file > s->wal_hi ? last_file : s->wal_hi;
        s->frozen_gen = s->next_gen++;
        s->state = ST_IDLE;
        int r2 = start_flush(s);
        return r2 ? r2 : rc;
    }
    if (s->state == ST_IDLE) {
        trim_wal(s, wal, now_ms);
        int r2 = pick_compaction(s, keys, karg, now_ms);
        if (r2) {
            fv_warn("store: compaction postponed: %s", fv_strerror(r2));
            s->retry_after_ms = now_ms + 10000;
        }
    }
    return rc;
}

void fv_store_compact_all(struct fv_store *s)
{
    s->want_full = 1;
    s->full_running = 1;
}

int fv_store_drain(struct fv_store *s, struct fv_wal *wal, fv_store_key_fn keys, void *karg)
{
    int rc = FV_OK;
    for (int guard = 0; guard < 100000; guard++) {
        uint64_t now = fv_now_ms();
        s->retry_after_ms = 0;
        rc = fv_store_tick(s, wal, keys, karg, now);
        if (rc) return rc;
        if (s->state == ST_IDLE && !s->want_full && !s->frozen && !s->redo &&
            !(s->head && s->head->records && s->full_running))
            break;
        if (s->state == ST_RUNNING) {
            pthread_mutex_lock(&s->mu);
            while (!s->done)
                pthread_cond_wait(&s->cv, &s->mu);
            pthread_mutex_unlock(&s->mu);
        } else {
            usleep(1000);
        }
    }
    s->full_running = 0;
    return rc;
}

void fv_store_stats(const struct fv_store *s, struct fv_store_stats *out)
{
    *out = s->st;
    out->parts = s->nparts;
    out->blocks = out->bytes = out->datums = out->records = 0;
    for (size_t i = 0; i < s->nparts; i++) {
        out->blocks += s->parts[i]->n;
        out->bytes += s->parts[i]->size;
        out->datums += s->parts[i]->datums;
        out->records += s->parts[i]->records;
    }
    const struct head *hs[2] = {s->head, s->frozen};
    for (int i = 0; i < 2; i++)
        if (hs[i]) {
            out->head_datums += hs[i]->datums;
            out->head_records += hs[i]->records;
            out->head_subjects += hs[i]->devs.n;
        }
    out->cache_bytes = s->cache_used;
    out->wal_hi = s->wal_hi;
    out->generation = s->next_gen - 1;
    out->compacting = s->want_full || s->full_running;
    out->wal_held = s->hold_wal;
}

size_t fv_store_failures(const struct fv_store *s, const struct fv_store_failure **out)
{
    *out = s->fails;
    return s->nfails;
}

size_t fv_store_parts(const struct fv_store *s, struct fv_part *const **out)
{
    *out = s->parts;
    return s->nparts;
}

/* ---- queries ------------------------------------------------------------------------------ */

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
        for (uint32_t k = 0; k < fr[i].n && rc == FV_OK; k++) {
            const struct fv_datum *d = &h->d[fr[i].off + k];
            if (!want_field(c->fields, c->nfields, d->field)) continue;
            uintptr_t at = (uintptr_t)fv_map_get_u64(&colidx, d->field);
            struct fv_block_col *col = at ? &b->cols[at - 1] : NULL;
            if (col == NULL) {
                rc = grow((void **)&b->cols, &capcols, b->ncols + 1, sizeof *b->cols);
                if (rc == FV_OK)
                    rc = fv_map_put_u64(&colidx, d->field, (void *)(uintptr_t)(b->ncols + 1));
                if (rc) break;
                col = &b->cols[b->ncols++];
                memset(col, 0, sizeof *col);
                col->field = d->field;
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
            rc = fv_value_copy(&col->v[col->n], &d->value);
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
    for (size_t k = 0; rc == FV_OK && k < s->nparts; k++) {
        struct fv_part *p = s->parts[k];
        for (size_t i = fv_part_find(p, subject);
             i < p->n && memcmp(p->e[i].subject, subject, FV_SUBJECT_LEN) == 0; i++) {
            const struct fv_part_entry *e = &p->e[i];
            if (e->max_t < from || e->min_t > to) continue;
            if (e->nrec == 0 && !want_events) continue;
            if (e->nev && !e->nrec && !want_events) continue;
            rc = grow((void **)&c->src, &cap, c->nsrc + 1, sizeof *c->src);
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
    for (int h = 0; rc == FV_OK && h < 2; h++) {
        struct src tmp;
        int found;
        rc = head_block(heads[h], pseudo, c, &tmp, &found);
        if (rc || !found) continue;
        rc = grow((void **)&c->src, &cap, c->nsrc + 1, sizeof *c->src);
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
        rc = read_block(c->store, sr->p, sr->i, c->dek, &c->raw[k], err, errlen);
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
            rc = grow((void **)&c->cf, &capc, c->ncols + bl[k]->ncols, sizeof *c->cf);
            for (size_t q = 0; rc == FV_OK && q < bl[k]->ncols; q++)
                c->cf[c->ncols++] = bl[k]->cols[q].field;
        }
        if (rc == FV_OK && c->ncols) qsort(c->cf, c->ncols, sizeof *c->cf, cmp_u32);
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
    size_t n = 0;
    for (size_t k = 0; k < s->nparts; k++)
        n += s->parts[k]->n;
    struct subj_row *r = malloc((n ? n : 1) * sizeof *r);
    if (r == NULL) return FV_ENOMEM;
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
