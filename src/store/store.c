/*
 * store.c - the store engine's core: configuration, subject pseudonyms, the in-memory head
 * and what adds to it or forgets from it, open and close, and the statistics. The job state
 * machine is in store_sched.c, the worker in store_worker.c, queries in store_query.c (the
 * map of the files and what they share: store_int.h). The contract and invariants T1-T8 are
 * in store.h; formats in block.h and part.h.
 *
 * Invariants kept here: open deletes only unfinished parts (*.tmp), parts whose generations
 * lie inside another's (T2) and provisional parts (T5), so every acked record stays in the
 * WAL or a committed part (T1); a provisional part never moves the WAL watermark (T5,
 * fv_store__add_part); fv_store_forget drops a subject's records from the head (the frozen
 * one too unless the worker has it) and its cached blocks at once, and fv_store_purge queues
 * its parts for a rewrite that drops its blocks (T4).
 *
 * Threads: everything here runs on the event loop, except fv_subject_from_hex/_to_hex,
 * fv_store_class_id and the fv_store__ helpers, which any thread may call. fv_store_open
 * starts the worker thread; fv_store_close stops and joins it.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <zstd.h>

#include "os/fsio.h"
#include "store/store.h"
#include "store/store_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/map.h"
#include "wire/places.h"
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
    c->zlevel_compact = 19;
    c->cache_bytes = 64u << 20;
    c->nclasses = 3;
    snprintf(c->class_name[0], sizeof c->class_name[0], "default");
    snprintf(c->class_name[1], sizeof c->class_name[1], "location");
    snprintf(c->class_name[2], sizeof c->class_name[2], "events");
    c->retention_ms[0] = 730 * DAY_MS;
    c->retention_ms[1] = 30 * DAY_MS;
    c->retention_ms[2] = 730 * DAY_MS;
    c->events_class = 2;
    /* Class "location": every signal that reveals a place (wire/places.h). */
    for (unsigned f = 0; f < fv_signal_count && f < FV_STORE_FIELD_TABLE; f++)
        if (fv_signal_place(f) != FV_PLACE_NONE) c->class_of[f] = 1;
}

int fv_store_class_id(const struct fv_store_config *c, const char *name)
{
    for (uint32_t i = 0; i < c->nclasses; i++)
        if (strcmp(c->class_name[i], name) == 0) return (int)i;
    return -1;
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

int fv_store__cmp_subject(const void *a, const void *b)
{
    return memcmp(a, b, FV_SUBJECT_LEN);
}

/* ---- head --------------------------------------------------------------------------------- */

_Static_assert(sizeof(struct hdatum) == 12, "a head datum is 12 bytes");
_Static_assert(sizeof(((struct fv_value *)0)->u) == 2 * sizeof(((struct hdatum *)0)->u),
               "a wide value fits two head slots");
_Static_assert(FV_VK_OTHER < FV_HD_BIGFIELD, "kinds leave the flag bit free");

void fv_store__hd_value(const struct hdatum *d, struct fv_value *v)
{
    memset(v, 0, sizeof *v);
    v->kind = d->kind & ~FV_HD_BIGFIELD & 0xff;
    v->member = d->member;
    unsigned char *u = (unsigned char *)&v->u;
    memcpy(u, d->u, sizeof d->u);
    if (fv_store__hd_width(v->kind) == 2) memcpy(u + sizeof d->u, d[1].u, sizeof d->u);
}

/* Slots a datum takes in the head (fv_store__hd_slots once put). */
static size_t hd_need(uint32_t field, uint8_t kind)
{
    return fv_store__hd_width(kind) + (field > UINT16_MAX);
}

/* Puts field and a copy of value v (a string duplicated) at slot d and the hd_need slots
 * after it. FV_OK or FV_ENOMEM (nothing held then). */
static int hd_put(struct hdatum *d, uint32_t field, const struct fv_value *v)
{
    const unsigned char *u = (const unsigned char *)&v->u;
    size_t n = hd_need(field, v->kind);
    memset(d, 0, n * sizeof *d);
    d->field = (uint16_t)field;
    d->kind = v->kind;
    d->member = v->member;
    if (field > UINT16_MAX) {
        d->kind |= FV_HD_BIGFIELD;
        d[n - 1].u[0] = field;
    }
    if (v->kind == FV_VK_STRING) {
        char *str = strdup(v->u.s ? v->u.s : "");
        if (str == NULL) return FV_ENOMEM;
        memcpy(d->u, &str, sizeof str);
        return FV_OK;
    }
    memcpy(d->u, u, sizeof d->u);
    if (fv_store__hd_width(v->kind) == 2) memcpy(d[1].u, u + sizeof d->u, sizeof d->u);
    return FV_OK;
}

/* Frees the strings of slots [from, to) of h (a datum boundary each). */
static void hd_clear(struct hdev *h, size_t from, size_t to)
{
    for (size_t q = from; q < to; q += fv_store__hd_slots(&h->d[q]))
        if ((h->d[q].kind & ~FV_HD_BIGFIELD) == FV_VK_STRING) {
            char *str;
            memcpy(&str, h->d[q].u, sizeof str);
            free(str);
        }
}

static void hdev_free(struct hdev *h)
{
    hd_clear(h, 0, h->nd);
    free(h->fr);
    free(h->d);
    free(h->ev);
    fv_buf_free(&h->evbytes);
    OPENSSL_cleanse(h->dek, sizeof h->dek);
    free(h);
}

void fv_store__head_free(struct head *hd)
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
    memcpy(h->dek, dek, 32);
    if (fv_map_put(&hd->devs, pseudo, strlen(pseudo), h) != FV_OK) {
        free(h);
        return NULL;
    }
    return h;
}

int fv_store__grow(void **p, size_t *cap, size_t need, size_t elem)
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

int fv_store__cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int fv_store__add_part(struct fv_store *s, struct fv_part *p)
{
    int rc = fv_store__grow((void **)&s->parts, &s->capparts, s->nparts + 1, sizeof *s->parts);
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

/* ---- open / close ------------------------------------------------------------------------- */

void fv_store_set_wake(struct fv_store *s, void (*fn)(void *), void *arg)
{
    s->wake = fn;
    s->wake_arg = arg;
}

void fv_store_set_visible(struct fv_store *s, int (*fn)(void *arg, const char *pseudo), void *arg)
{
    s->visible = fn;
    s->visible_arg = arg;
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
        rc = fv_store__add_part(s, p);
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
    pthread_mutex_init(&s->lk, NULL);
    pthread_mutex_init(&s->cache_mu, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->zd = ZSTD_createDCtx(); /* NULL: records decompress one-shot (store_last.c) */
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
        rc = fv_store__grow((void **)&all, &capall, nall + 1, sizeof *all);
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
        if (pthread_create(&s->thread, NULL, fv_store__worker_main, s) != 0) {
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
        fv_store__job_free(s->job);
    }
    fv_store__job_free(s->redo);
    for (size_t i = 0; i < s->nparts; i++)
        fv_part_unref(s->parts[i]);
    free(s->parts);
    fv_store__head_free(s->head);
    fv_store__head_free(s->frozen);
    fv_store__cache_free(s);
    ZSTD_freeDCtx(s->zd);
    free(s->purge);
    free(s->jforgot);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->cache_mu);
    pthread_mutex_destroy(&s->lk);
    free(s);
}

/* lk is state, not value: const readers take it too. */
static void lock(const struct fv_store *s)
{
    pthread_mutex_lock((pthread_mutex_t *)&s->lk);
}

static void unlock(const struct fv_store *s)
{
    pthread_mutex_unlock((pthread_mutex_t *)&s->lk);
}

uint64_t fv_store_wal_hi(const struct fv_store *s)
{
    lock(s);
    uint64_t hi = s->wal_hi;
    unlock(s);
    return hi;
}

/* ---- head input --------------------------------------------------------------------------- */

/* Grows a head array to hold need elements: the first allocation exactly (a device that sent
 * one record holds one frame of its datums, not 16 frames and 32 datums: issue 13, memory
 * per connected vehicle), then by half (amortised O(1) per element; doubling left a device
 * that sent three records of 20 signals with room for 80). FV_ENOMEM leaves it. */
static int head_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return FV_OK;
    size_t nc = *cap ? *cap + *cap / 2 : need;
    if (nc < need) nc = need;
    void *m = realloc(*p, nc * elem);
    if (m == NULL) return FV_ENOMEM;
    *p = m;
    *cap = nc;
    return FV_OK;
}

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

static int add_frame(struct fv_store *s, const char *pseudo, const unsigned char dek[32], int64_t t,
                     uint64_t rx_ms, const struct fv_vrecord *v)
{
    struct hdev *h;
    int rc = add_target(s, pseudo, dek, rx_ms, &h);
    if (rc) return rc;
    size_t slots = 0;
    for (size_t i = 0; i < v->n; i++)
        slots += hd_need(v->data[i].field, v->data[i].value.kind);
    if (h->nd + slots > UINT32_MAX) return FV_ELIMIT;
    rc = head_grow((void **)&h->fr, &h->capfr, h->nfr + 1, sizeof *h->fr);
    if (rc == FV_OK) rc = head_grow((void **)&h->d, &h->capd, h->nd + slots, sizeof *h->d);
    if (rc) return rc;
    size_t off = h->nd, q = off;
    for (size_t i = 0; i < v->n; i++) {
        rc = hd_put(&h->d[q], v->data[i].field, &v->data[i].value);
        if (rc) {
            hd_clear(h, off, q);
            return rc;
        }
        q += hd_need(v->data[i].field, v->data[i].value.kind);
    }
    h->nd = q;
    h->fr[h->nfr++] = (struct hframe){t, (uint32_t)off, (uint32_t)v->n};
    s->head->datums += v->n;
    s->head->records++;
    if (s->head->first_ms == 0) s->head->first_ms = fv_now_ms();
    return FV_OK;
}

int fv_store_add_frame(struct fv_store *s, const char *pseudo, const unsigned char dek[32],
                       int64_t t, uint64_t rx_ms, const struct fv_vrecord *v)
{
    lock(s);
    int rc = add_frame(s, pseudo, dek, t, rx_ms, v);
    unlock(s);
    return rc;
}

static int add_event(struct fv_store *s, const char *pseudo, const unsigned char dek[32], int64_t t,
                     uint64_t rx_ms, const char *topic, size_t topic_len,
                     const unsigned char *payload, size_t len)
{
    struct hdev *h;
    int rc = add_target(s, pseudo, dek, rx_ms, &h);
    if (rc) return rc;
    if (h->evbytes.len + topic_len + len > UINT32_MAX) return FV_ELIMIT;
    rc = head_grow((void **)&h->ev, &h->capev, h->nev + 1, sizeof *h->ev);
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

int fv_store_add_event(struct fv_store *s, const char *pseudo, const unsigned char dek[32],
                       int64_t t, uint64_t rx_ms, const char *topic, size_t topic_len,
                       const unsigned char *payload, size_t len)
{
    lock(s);
    int rc = add_event(s, pseudo, dek, t, rx_ms, topic, topic_len, payload, len);
    unlock(s);
    return rc;
}

static void forget(struct fv_store *s, const char *pseudo)
{
    unsigned char subject[FV_SUBJECT_LEN];
    if (fv_subject_from_hex(pseudo, subject) == FV_OK) {
        fv_store__cache_forget(s, subject);
        fv_store__lastvals_forget(s, subject);
        /* a job out computes last values for its output: dropped when it is installed */
        if ((s->state != ST_IDLE || s->redo || s->frozen) && !s->jforgot_all) {
            if (fv_store__grow((void **)&s->jforgot, &s->capjforgot, s->njforgot + 1,
                               sizeof *s->jforgot) == FV_OK)
                memcpy(s->jforgot[s->njforgot++], subject, FV_SUBJECT_LEN);
            else
                s->jforgot_all = 1; /* then the output keeps none */
        }
    }
    struct head *heads[2] = {s->head, s->frozen};
    for (int i = 0; i < 2; i++) {
        /* The frozen head may be in the worker's hands; it is only dropped from the active
         * one, and compaction purges what the flush writes (T4). */
        if (heads[i] == NULL || (i == 1 && s->state == ST_RUNNING)) continue;
        struct hdev *h = fv_map_del(&heads[i]->devs, pseudo, strlen(pseudo));
        if (h) {
            uint64_t nd = 0;
            for (size_t k = 0; k < h->nfr; k++)
                nd += h->fr[k].n;
            heads[i]->datums -= nd < heads[i]->datums ? nd : heads[i]->datums;
            uint64_t nr = h->nfr + h->nev;
            heads[i]->records -= nr < heads[i]->records ? nr : heads[i]->records;
            hdev_free(h);
        }
    }
}

void fv_store_forget(struct fv_store *s, const char *pseudo)
{
    lock(s);
    forget(s, pseudo);
    unlock(s);
}

int fv_store_purge(struct fv_store *s, const char *pseudo)
{
    unsigned char subject[FV_SUBJECT_LEN];
    if (fv_subject_from_hex(pseudo, subject) != FV_OK) return FV_EINVAL;
    lock(s);
    forget(s, pseudo);
    int rc = fv_store__grow((void **)&s->purge, &s->cappurge, s->npurge + 1, sizeof *s->purge);
    if (rc == FV_OK) memcpy(s->purge[s->npurge++], subject, FV_SUBJECT_LEN);
    unlock(s);
    return rc;
}

void fv_store_hold_wal(struct fv_store *s)
{
    lock(s);
    s->hold_wal = 1;
    unlock(s);
}

void fv_store_stats(const struct fv_store *s, struct fv_store_stats *out)
{
    lock(s);
    pthread_mutex_lock((pthread_mutex_t *)&s->cache_mu);
    *out = s->st;
    out->cache_bytes = s->cache_used;
    pthread_mutex_unlock((pthread_mutex_t *)&s->cache_mu);
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
    out->wal_hi = s->wal_hi;
    out->generation = s->next_gen - 1;
    out->compacting = s->want_full || s->full_running;
    out->wal_held = s->hold_wal;
    unlock(s);
}

size_t fv_store_failures(const struct fv_store *s,
                         struct fv_store_failure out[FV_STORE_MAX_FAILURES])
{
    lock(s);
    size_t n = s->nfails;
    memcpy(out, s->fails, n * sizeof *out);
    unlock(s);
    return n;
}

int fv_store_parts(const struct fv_store *s, struct fv_part ***out, size_t *n)
{
    lock(s);
    struct fv_part **arr = malloc((s->nparts ? s->nparts : 1) * sizeof *arr);
    for (size_t i = 0; arr && i < s->nparts; i++) {
        arr[i] = s->parts[i];
        fv_part_ref(arr[i]);
    }
    *n = arr ? s->nparts : 0;
    unlock(s);
    *out = arr;
    return arr ? FV_OK : FV_ENOMEM;
}

void fv_store_parts_free(struct fv_part **parts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fv_part_unref(parts[i]);
    free(parts);
}
