/*
 * store_worker.c - the store's worker thread: a frozen head encoded into one level-0 part
 * (flush), adjacent parts merged into one (compaction; a single part rewritten is retention
 * or a purge). Blocks are cut to what a reader accepts (block.h limits). The event loop
 * chooses and installs the jobs (store_sched.c).
 *
 * Invariants (store.h): a part is committed (fsync, rename, fsync dir) before the job
 * reports success, and a job notes whether its rename happened, so that a retry keeps its
 * generations (T1, T7); a flush while the WAL is held writes a provisional part (T5); blocks
 * are sealed with their subject's key, and a subject whose key is gone is dropped (T4); a
 * block goes to retention only when both its newest record time and its newest receive time
 * are past the class's retention (T6); an input block that cannot be read is copied as it
 * is, with its CRC, and reported, never stopping the merge (T8). Every part written gets
 * each subject's last values (lastvals.h): a flush from the frames it encodes, a merge by
 * combining its inputs' (or from the blocks it keeps, when retention dropped some or an
 * input's are missing); a subject that cannot be summed up gets none, and readers decode.
 * Format 7 hands them to the part in memory once it is open (format 6, for tests: sealed
 * records). A third kind of job computes the values of a format 7 part opened at start.
 *
 * Threads: the worker thread only. It owns the job it was handed (a frozen head, which it
 * only reads since queries on the loop read it too, or referenced input parts and copies of
 * the keys) and reads s->cfg; it touches the store's state only under s->mu (todo, done,
 * stop) and, for the parts' last values (fv_part.lvc of its inputs and of the part it
 * warms), under s->cache_mu; never the keystore or the live part list.
 */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <zstd.h>

#include "store/block.h"
#include "store/lastvals.h"
#include "store/store.h"
#include "store/store_int.h"
#include "util/clock.h"
#include "util/err.h"

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

/* ---- worker: flush ------------------------------------------------------------------------ */

static uint8_t class_of(const struct fv_store_config *c, uint32_t field)
{
    return field < FV_STORE_FIELD_TABLE ? c->class_of[field] : 0;
}

struct keep_arg {
    const struct fv_store_config *cfg;
    uint8_t cls;
};
static int keep_class(void *arg, uint32_t field)
{
    const struct keep_arg *k = arg;
    return class_of(k->cfg, field) == k->cls;
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
    struct fv_lastvals *lv;   /* flush: the subject's last values, fed by every block */
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
    rc = fv_part_writer_add(P->w, &e, P->dek, P->raw->data, P->raw->len, P->zlevel, P->err,
                            P->errlen);
    /* What was written, the last values see too (a refused try is retried smaller): as the
     * block holds it, a signal repeated in one frame by its last value only (block.c), so
     * that they equal what a reader computes from the block (format 7). */
    for (size_t k = 0; rc == FV_OK && P->lv && k < n; k++)
        for (uint32_t q = 0; rc == FV_OK && q < fr[k].n; q++) {
            uint32_t f = fr[k].d[q].field, q2 = q + 1;
            while (q2 < fr[k].n && fr[k].d[q2].field != f)
                q2++;
            if (q2 == fr[k].n && (keep == NULL || keep(karg, f)))
                rc = fv_lastvals_add(P->lv, fr[k].t, f, &fr[k].d[q].value);
        }
    return rc;
}

void fv_store__lvo_free(struct job *j)
{
    for (size_t i = 0; i < j->nlvo; i++)
        fv_lastvals_mem_free(j->lvo[i].lv);
    if (j->lvo) OPENSSL_cleanse(j->lvo, j->caplvo * sizeof *j->lvo);
    free(j->lvo);
    j->lvo = NULL;
    j->nlvo = j->caplvo = 0;
}

/* The subject's last values: format 7 keeps their encoding with the job for the output
 * part's memory; older formats seal them into the part as a record
 * (nothing when the subject has no frames). */
static int put_last(struct job *j, uint32_t version, struct fv_part_writer *w,
                    const unsigned char *subject, const unsigned char *dek, struct fv_lastvals *lv,
                    char *err, size_t errlen)
{
    if (version == 0 || version >= 7) {
        int rc = fv_store__grow((void **)&j->lvo, &j->caplvo, j->nlvo + 1, sizeof *j->lvo);
        struct fv_lastvals_mem *keep = NULL;
        if (rc == FV_OK) rc = fv_lastvals_mem_make(lv, &keep);
        if (rc == FV_ELIMIT) return FV_OK; /* cannot happen (values came from blocks): none */
        if (rc) return rc;
        struct lvout *o = &j->lvo[j->nlvo++];
        memcpy(o->subject, subject, FV_SUBJECT_LEN);
        memcpy(o->dek, dek, 32);
        o->lv = keep;
        return FV_OK;
    }
    if (lv->n == 0) return FV_OK;
    struct fv_buf plain = {0};
    int rc = fv_lastvals_encode(lv, &plain);
    if (rc == FV_ELIMIT)
        rc = FV_OK; /* cannot happen (values came from blocks): none then */
    else if (rc == FV_OK)
        rc = fv_part_writer_add_last(w, subject, dek, plain.data, plain.len, err, errlen);
    if (plain.data) OPENSSL_cleanse(plain.data, plain.len);
    fv_buf_free(&plain);
    return rc;
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
    qsort(fl, m, sizeof *fl, fv_store__cmp_u32);
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
            /* (no pointer arithmetic on an absent list: undefined, clang's UBSan says) */
            rc = put_block(P, fr ? fr + at : NULL, n, at, ev ? ev + eat : NULL, ne,
                           P->ka ? keep_class : NULL, P->ka, 1);
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
 * loop read it while this runs): sorted copies of its frame and event lists are encoded, the
 * frames' datums expanded from the head's compact slots (struct hdatum) into one array in
 * arrival order, strings borrowed. */
static int flush_dev(const struct fv_store_config *cfg, struct job *j, struct fv_part_writer *w,
                     struct hdev *h, struct fv_buf *raw, char *err, size_t errlen)
{
    size_t nd = 0;
    for (size_t i = 0; i < h->nfr; i++)
        nd += h->fr[i].n;
    struct fv_block_frame *fr = malloc((h->nfr ? h->nfr : 1) * sizeof *fr);
    struct fv_block_event *ev = malloc((h->nev ? h->nev : 1) * sizeof *ev);
    struct fv_datum *dx = malloc((nd ? nd : 1) * sizeof *dx);
    uint8_t *first = malloc(h->nfr ? h->nfr : 1);
    struct fv_lastvals lv = {0};
    int rc = FV_OK;
    if (fr == NULL || ev == NULL || dx == NULL || first == NULL) {
        rc = FV_ENOMEM;
        goto out;
    }
    for (size_t i = 0, x = 0; i < h->nfr; i++) {
        /* (an empty frame: no slots, and maybe no array to point into) */
        const struct hdatum *d = h->fr[i].n ? &h->d[h->fr[i].off] : NULL;
        fr[i] = (struct fv_block_frame){h->fr[i].t, h->fr[i].n, dx + x, 0};
        for (uint32_t k = 0; k < h->fr[i].n; k++, x++, d += fv_store__hd_slots(d)) {
            dx[x].field = fv_store__hd_field(d);
            fv_store__hd_value(d, &dx[x].value);
        }
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
                        .lv = &lv,
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
    if (rc == FV_OK) rc = put_last(j, cfg->part_version, w, h->subject, h->dek, &lv, err, errlen);
out:
    fv_lastvals_clear(&lv);
    free(first);
    free(fr);
    free(ev);
    free(dx);
    return rc;
}

/* Hands the job's last values to its output part (format 7), which nothing else sees yet:
 * no lock. Keeping them is optional (readers compute what is missing), so a failed
 * allocation keeps none. */
static void give_last(struct job *j)
{
    struct fv_part *p = j->out;
    p->lvwarm = p->nlast; /* nothing to compute in the background */
    if (j->nlvo == 0 || p->nlast == 0 || p->version < 7 || fv_part_lvc_alloc(p) != FV_OK) return;
    for (size_t i = 0; i < j->nlvo; i++) {
        size_t li = fv_part_find_last(p, j->lvo[i].subject);
        if (li == p->nlast || p->lvc[li]) continue;
        p->lvc[li] = j->lvo[i].lv;
        memcpy(p->lvdek[li], j->lvo[i].dek, 32);
        j->lvo[i].lv = NULL;
    }
}

/* Opens a job's part writer in the format the configuration asks for (tests: part_version). */
static int open_writer(const struct fv_store_config *cfg, struct job *j, uint32_t level,
                       struct fv_part_writer **w)
{
    fv_store__lvo_free(j); /* a retried job starts over */
    int rc = fv_part_writer_open(cfg->dir, j->gen_lo, j->gen_hi, level, w, j->err, sizeof j->err);
    if (rc == FV_OK && cfg->part_version && fv_part_writer_set_version(*w, cfg->part_version)) {
        snprintf(j->err, sizeof j->err, "part format %u cannot be written", cfg->part_version);
        fv_part_writer_free(*w);
        *w = NULL;
        rc = FV_EINVAL;
    }
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
    if (rc == FV_OK) give_last(j);
    fv_store__lvo_free(j);
    return rc;
}

static int run_flush(const struct fv_store_config *cfg, struct job *j)
{
    struct fv_part_writer *w;
    int rc = open_writer(cfg, j, 0, &w);
    if (rc) return rc;
    struct fv_buf raw = {0};
    struct head *hd = j->head;
    for (size_t i = 0; rc == FV_OK && i < hd->devs.cap; i++)
        if (hd->devs.slots[i].hash)
            rc = flush_dev(cfg, j, w, hd->devs.slots[i].val, &raw, j->err, sizeof j->err);
    fv_buf_free(&raw);
    if (j->provisional) fv_part_writer_set_flags(w, FV_PART_F_PROVISIONAL);
    return finish_part(cfg, j, w, rc, "flush.renamed");
}

/* ---- worker: merge (compaction, retention, purge) ---------------------------------------- */

static const struct keyent *find_key(const struct job *j, const unsigned char *subject)
{
    return bsearch(subject, j->keys, j->nkeys, sizeof *j->keys, fv_store__cmp_subject);
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

/* One subject of a merge, across its classes: what its last values are made from. */
struct msubj {
    unsigned char subject[FV_SUBJECT_LEN];
    const struct keyent *key; /* NULL: none, or no subject yet */
    struct gent *kept;        /* its input blocks that go to the output */
    size_t nkept, capkept;
    size_t expired;     /* its blocks retention dropped */
    ZSTD_DCtx *zd;      /* the merge's, for its inputs' last values (NULL: one-shot) */
    struct fv_store *s; /* its inputs' last values in memory (fv_part.lvc, under cache_mu) */
};

/* Adds the frames of the subject's kept blocks to lv; FV_ECORRUPT if one cannot be read. */
static int lastvals_from_blocks(const struct msubj *m, struct fv_lastvals *lv)
{
    struct fv_buf raw = {0};
    int rc = FV_OK;
    for (size_t k = 0; rc == FV_OK && k < m->nkept; k++) {
        const struct gent *g = &m->kept[k];
        if (g->p->e[g->i].nrec == 0) continue;
        char why[256];
        struct fv_block b = {0};
        rc = fv_part_open_block(g->p, g->i, m->key->key, &raw, why, sizeof why);
        if (rc == FV_OK) rc = fv_block_decode(raw.data, raw.len, NULL, 0, 0, &b, why, sizeof why);
        for (size_t c = 0; rc == FV_OK && c < b.ncols; c++)
            for (size_t r = 0; rc == FV_OK && r < b.cols[c].n; r++)
                rc = fv_lastvals_add(lv, b.t[b.cols[c].row[r]], b.cols[c].field, &b.cols[c].v[r]);
        fv_block_free(&b);
    }
    if (raw.data) OPENSSL_cleanse(raw.data, raw.len);
    fv_buf_free(&raw);
    return rc;
}

/* Folds the inputs' last-values records of the subject into lv; FV_ENOENT when an input
 * with its frames has none (an older part), FV_ECORRUPT when one does not open. */
static int lastvals_from_inputs(const struct job *j, const struct msubj *m, struct fv_lastvals *lv)
{
    struct fv_buf plain = {0};
    int rc = FV_OK;
    for (size_t k = 0; rc == FV_OK && k < j->nin; k++) {
        const struct fv_part *p = j->in[k];
        int frames = 0;
        for (size_t q = 0; q < m->nkept; q++)
            frames |= m->kept[q].p == p && p->e[m->kept[q].i].nrec;
        if (!frames) continue;
        size_t li = fv_part_find_last(p, m->subject);
        if (li == p->nlast) {
            rc = FV_ENOENT;
            break;
        }
        if (p->version >= 7) { /* no record: what readers or the writer kept in memory */
            rc = FV_ENOENT;
            pthread_mutex_lock(&m->s->cache_mu);
            struct fv_lastvals one = {0};
            if (p->lvc && p->lvc[li] && CRYPTO_memcmp(p->lvdek[li], m->key->key, 32) == 0)
                rc = fv_lastvals_mem_decode(p->lvc[li], &one);
            pthread_mutex_unlock(&m->s->cache_mu);
            if (rc == FV_OK) rc = fv_lastvals_merge(lv, &one);
            fv_lastvals_clear(&one);
            if (rc) break;
            continue;
        }
        char why[256];
        struct fv_lastvals one = {0};
        rc = fv_part_open_last(p, li, m->key->key, m->zd, &plain, why, sizeof why);
        if (rc == FV_OK) rc = fv_lastvals_decode(plain.data, plain.len, &one, why, sizeof why);
        if (rc == FV_OK) rc = fv_lastvals_merge(lv, &one);
        fv_lastvals_clear(&one);
    }
    if (plain.data) OPENSSL_cleanse(plain.data, plain.len);
    fv_buf_free(&plain);
    return rc;
}

/* Writes the last values of the merge's current subject: its inputs' records combined when
 * all its blocks go on, else summed up again from the blocks kept (retention dropped some,
 * or an input is older than last values). A subject that cannot be summed up (a block that
 * does not open) gets none: readers decode its blocks. */
static int finish_subject(struct job *j, struct fv_part_writer *w, struct msubj *m)
{
    int rc = FV_OK;
    if (m->key && m->nkept) {
        struct fv_lastvals lv = {0};
        rc = m->expired ? FV_ENOENT : lastvals_from_inputs(j, m, &lv);
        if (rc != FV_OK && rc != FV_ENOMEM) {
            fv_lastvals_clear(&lv);
            rc = lastvals_from_blocks(m, &lv);
        }
        if (rc == FV_OK)
            rc = put_last(j, m->s->cfg.part_version, w, m->subject, m->key->key, &lv, j->err,
                          sizeof j->err);
        else if (rc != FV_ENOMEM && rc != FV_EIO)
            rc = FV_OK; /* unreadable: no record, the merge goes on (T8) */
        fv_lastvals_clear(&lv);
    }
    m->key = NULL;
    m->nkept = 0;
    m->expired = 0;
    return rc;
}

static int run_merge(struct fv_store *s, struct job *j)
{
    const struct fv_store_config *cfg = &s->cfg;
    struct fv_part_writer *w;
    int rc = open_writer(cfg, j, j->level, &w);
    if (rc) return rc;
    struct mcursor *mc = calloc(j->nin, sizeof *mc);
    struct gent *g = NULL;
    size_t capg = 0;
    struct fv_buf raw = {0}, sealed = {0};
    struct msubj ms = {.s = s, .zd = ZSTD_createDCtx()};
    int have_subject = 0;
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
        if (have_subject && memcmp(best->subject, ms.subject, FV_SUBJECT_LEN) != 0 &&
            (rc = finish_subject(j, w, &ms)) != FV_OK)
            break;
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
                rc = fv_store__grow((void **)&g, &capg, ng + 1, sizeof *g);
                if (rc) break;
                g[ng++] = (struct gent){mc[k].p, mc[k].i};
                mc[k].i++;
            }
        if (rc) break;
        const struct keyent *ke = find_key(j, subject);
        memcpy(ms.subject, subject, FV_SUBJECT_LEN);
        have_subject = 1;
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
                ms.expired++;
                continue;
            }
            ms.key = ke;
            rc = fv_store__grow((void **)&ms.kept, &ms.capkept, ms.nkept + 1, sizeof *ms.kept);
            if (rc) break;
            ms.kept[ms.nkept++] = g[k];
            if (e->nrec + e->nev >= step / 2 || (ng == 1 && !j->full)) {
                rc = keep_as_is(j, w, &g[k], cname, &sealed, 1);
                continue;
            }
            g[nsmall++] = g[k];
        }
        if (rc == FV_OK && nsmall)
            rc = merge_group(cfg, j, w, subject, ke->key, cname, g, nsmall, &raw, &sealed);
    }
    if (rc == FV_OK && have_subject) rc = finish_subject(j, w, &ms);
    free(ms.kept);
    ZSTD_freeDCtx(ms.zd);
    free(mc);
    free(g);
    fv_buf_free(&raw);
    fv_buf_free(&sealed);
    return finish_part(cfg, j, w, rc, "merge.renamed");
}

/* ---- worker: last values computed in the background (format 7 parts opened at start) -- */

/* Computes the values of subjects [warm_lo, warm_hi) of the job's part and keeps them with
 * it (under cache_mu, as readers do), each with its subject's key; a subject whose key is
 * gone, whose values are kept already, or whose blocks do not read is left to readers.
 * Stops, keeping nothing more, once a subject is forgotten meanwhile (T4: it may be one of
 * these). Only FV_ENOMEM fails it. */
static int run_warm(struct fv_store *s, struct job *j)
{
    struct fv_part *p = j->in[0];
    int rc = FV_OK;
    for (size_t i = j->warm_lo; rc == FV_OK && i < j->warm_hi && i < p->nlast; i++) {
        const struct keyent *ke = find_key(j, p->last[i].subject);
        if (ke == NULL || ke->state != FV_OK) continue;
        pthread_mutex_lock(&s->cache_mu);
        int have = p->lvc && p->lvc[i];
        pthread_mutex_unlock(&s->cache_mu);
        if (have) continue;
        struct fv_lastvals lv = {0};
        struct fv_lastvals_mem *mem = NULL;
        char err[256];
        rc = fv_store__lastvals_compute(p, p->last[i].subject, ke->key, &lv, err, sizeof err);
        if (rc == FV_OK) rc = fv_lastvals_mem_make(&lv, &mem);
        fv_lastvals_clear(&lv);
        int stop = 0;
        if (rc == FV_OK) {
            pthread_mutex_lock(&s->cache_mu);
            stop = s->lv_forgets != j->lv_forgets;
            if (!stop) rc = fv_part_lvc_alloc(p);
            if (!stop && rc == FV_OK && p->lvc[i] == NULL) {
                p->lvc[i] = mem;
                memcpy(p->lvdek[i], ke->key, 32);
                mem = NULL;
            }
            pthread_mutex_unlock(&s->cache_mu);
        } else if (rc != FV_ENOMEM) {
            rc = FV_OK; /* a block that does not read: readers report it */
        }
        fv_lastvals_mem_free(mem);
        if (stop) break;
    }
    return rc;
}

void *fv_store__worker_main(void *arg)
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
        j->rc = j->kind == JOB_FLUSH  ? run_flush(&s->cfg, j)
                : j->kind == JOB_WARM ? run_warm(s, j)
                                      : run_merge(s, j);
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
