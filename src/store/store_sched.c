/*
 * store_sched.c - the store's maintenance on the event loop: fv_store_tick runs the job state
 * machine, chooses what the worker does next (flush, merge, retention, purge), installs what
 * it finished and deletes the WAL files the parts cover. The work itself is store_worker.c.
 *
 * States (s->state), each transition in fv_store_tick:
 *   ST_IDLE --head due: freeze it, fv_wal_rotate--> ST_ROTATING
 *   ST_ROTATING --the cut is durable: a generation, start_flush--> ST_RUNNING
 *   ST_IDLE --a frozen head left (flush retry), a redo, or pick_compaction--> ST_RUNNING
 *   ST_RUNNING --the worker set done: install--> ST_IDLE
 *
 * Invariants (store.h): a WAL file is deleted only when a committed part covers it and it
 * is older than wal_keep_ms, never while the WAL is held (T1, T5: trim_wal, install); the
 * frozen head is released in the same step that installs the part written from it (T3);
 * merges take adjacent parts only, never provisional ones (T2, T5); a failed flush keeps its
 * generation and a merge that failed after its rename is redone as it was (T7); a failed job
 * is retried after 10 s doubling to about 10 minutes, a full compaction given up after 3
 * failures in a row (T8); a merge gets copies of the keys it needs, so the worker never
 * touches the keystore (T4).
 *
 * Threads: event loop only; each tick holds the store's lock lk (store_int.h), so a query
 * on another thread sees a part installed and its frozen head released at once (T3).
 * fv_store_drain waits on the worker's condition variable without it.
 */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "store/store.h"
#include "store/store_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "wal/wal.h"

void fv_store__job_free(struct job *j)
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
    fv_store__lvo_free(j);
    free(j);
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
    if (j->kind == JOB_WARM) { /* nothing to install: readers compute what it left */
        fv_store__job_free(j);
        return FV_OK;
    }
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
        fv_store__job_free(j);
        return rc;
    }
    s->fail_streak = 0;
    if (j->kind == JOB_FLUSH) {
        fv_store__head_free(s->frozen);
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
    /* T4: what the job computed of subjects forgotten while it ran goes */
    for (size_t i = 0; i < s->njforgot; i++)
        fv_store__lastvals_drop(s, j->out, s->jforgot[i]);
    if (s->jforgot_all) fv_store__lastvals_drop(s, j->out, NULL);
    s->njforgot = 0;
    s->jforgot_all = 0;
    rc = fv_store__add_part(s, j->out);
    if (rc == FV_OK) j->out = NULL;
    fv_store__job_free(j);
    if (rc == FV_OK && wal && s->cfg.wal_keep_ms == 0 && !s->hold_wal) {
        char err[256];
        if (fv_wal_remove_upto(wal, s->wal_hi, err, sizeof err) != FV_OK) fv_warn("store: %s", err);
    }
    return rc;
}

/* Deletes WAL files covered by parts (T1) once older than wal_keep_ms. */
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
    qsort(j->keys, j->nkeys, sizeof *j->keys, fv_store__cmp_subject);
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
        fv_store__job_free(j);
        return rc;
    }
    /* A rewrite of one part (retention) keeps its name: the rename replaces the old file
     * atomically, which is the commit; the old part's descriptor still reads the old
     * blocks for readers holding it, and it is not unlinked again (same path). */
    if (full) s->full_running = 1;
    hand_to_worker(s, j);
    return FV_OK;
}

/* Subjects whose last values a background job computes at a time (store_worker.c,
 * run_warm): a flush waits for at most one such job (about 0.5 ms a subject with 500 s of
 * its data in the part, shared machine). */
#define WARM_SUBJECTS 1000

/* Starts computing the last values of the next subjects of a version 7 part opened at start
 * (fv_part.lvwarm), with their keys, if one has any left. */
static int start_warm(struct fv_store *s, fv_store_key_fn keys, void *karg)
{
    struct fv_part *p = NULL;
    for (size_t i = 0; p == NULL && i < s->nparts; i++)
        if (s->parts[i]->version >= 7 && s->parts[i]->lvwarm < s->parts[i]->nlast) p = s->parts[i];
    if (p == NULL) return FV_OK;
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL) return FV_ENOMEM;
    j->kind = JOB_WARM;
    j->warm_lo = p->lvwarm;
    j->warm_hi = p->nlast - p->lvwarm > WARM_SUBJECTS ? p->lvwarm + WARM_SUBJECTS : p->nlast;
    j->in = calloc(1, sizeof *j->in);
    j->keys = calloc(j->warm_hi - j->warm_lo, sizeof *j->keys);
    if (j->in == NULL || j->keys == NULL) {
        fv_store__job_free(j);
        return FV_ENOMEM;
    }
    fv_part_ref(p);
    j->in[j->nin++] = p;
    for (size_t i = j->warm_lo; i < j->warm_hi; i++) { /* last is sorted: so are the keys */
        struct keyent *k = &j->keys[j->nkeys++];
        memcpy(k->subject, p->last[i].subject, FV_SUBJECT_LEN);
        char hex[33];
        fv_subject_to_hex(k->subject, hex);
        int rc = keys(karg, hex, k->key);
        if (rc == FV_ESTATE || rc == FV_ENOENT) {
            k->state = FV_ESTATE; /* gone (or unknown): nothing computed for it */
        } else if (rc != FV_OK) {
            fv_store__job_free(j);
            return rc;
        }
    }
    pthread_mutex_lock(&s->cache_mu);
    j->lv_forgets = s->lv_forgets;
    pthread_mutex_unlock(&s->cache_mu);
    p->lvwarm = j->warm_hi;
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
    /* Nothing else to do: the fleet view's values of parts opened at start. */
    return start_warm(s, keys, karg);
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

static int tick(struct fv_store *s, struct fv_wal *wal, fv_store_key_fn keys, void *karg,
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

int fv_store_tick(struct fv_store *s, struct fv_wal *wal, fv_store_key_fn keys, void *karg,
                  uint64_t now_ms)
{
    pthread_mutex_lock(&s->lk);
    int rc = tick(s, wal, keys, karg, now_ms);
    pthread_mutex_unlock(&s->lk);
    return rc;
}

void fv_store_compact_all(struct fv_store *s)
{
    pthread_mutex_lock(&s->lk);
    s->want_full = 1;
    s->full_running = 1;
    pthread_mutex_unlock(&s->lk);
}

int fv_store_drain(struct fv_store *s, struct fv_wal *wal, fv_store_key_fn keys, void *karg)
{
    int rc = FV_OK;
    for (int guard = 0; guard < 100000; guard++) {
        uint64_t now = fv_now_ms();
        pthread_mutex_lock(&s->lk);
        s->retry_after_ms = 0;
        rc = tick(s, wal, keys, karg, now);
        int idle = s->state == ST_IDLE && !s->want_full && !s->frozen && !s->redo &&
                   !(s->head && s->head->records && s->full_running);
        pthread_mutex_unlock(&s->lk);
        if (rc) return rc;
        if (idle) break;
        if (s->state == ST_RUNNING) {
            pthread_mutex_lock(&s->mu);
            while (!s->done)
                pthread_cond_wait(&s->cv, &s->mu);
            pthread_mutex_unlock(&s->mu);
        } else {
            usleep(1000);
        }
    }
    pthread_mutex_lock(&s->lk);
    s->full_running = 0;
    pthread_mutex_unlock(&s->lk);
    return rc;
}
