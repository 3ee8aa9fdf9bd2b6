/*
 * store_int.h - internal to src/store; not a public contract (store.h is). The state the
 * store's files share: struct fv_store, the head, the jobs handed to the worker, and the few
 * functions one file calls in another (named fv_store__*; everything else stays static).
 * Nothing outside src/store includes this file.
 *
 * The store engine is four files, cut along its thread roles (invariants T1-T8: store.h):
 *   store.c         configuration, subjects, the head and its input, open/close, stats;
 *   store_sched.c   maintenance on the event loop: the job state machine (tick), choosing
 *                   flushes, merges, retention and purges, installing their results;
 *   store_worker.c  the worker thread: a frozen head encoded into a part (flush), parts
 *                   merged into one (compaction, retention, purge), the last values of a
 *                   part opened at start computed (warm);
 *   store_query.c   queries on the event loop: the block cache, snapshots, cursors, chunks;
 *   store_last.c    the fleet view's one value per subject, from the parts' last values
 *                   (lastvals.h) and the heads when they can say, else through a query.
 *
 * Threads: struct fv_store is written by the event loop (ingest into the head, tick) and
 * read by queries from another thread (the API's), so its state is under lk: the heads, the
 * part list, jobs' installation, requests (purge, full compaction), failures and stats. Every
 * public function takes lk for as long as it touches that state and no longer: a query copies
 * its subject's head frames and references its parts under lk, then reads blocks without it.
 * The block cache (cache, lru_*, cache_used, st.cache_hits/misses), the parts' decoded
 * last values (fv_part.lvc), zd and st.last_indexed/last_scanned/last_decoded are under
 * cache_mu (lock order: lk, then cache_mu). todo, done and stop are under mu (shared with the
 * worker); cfg and wake the worker only reads (nothing changes cfg after fv_store_open; the server
 * calls fv_store_set_wake before its first tick). A job handed to the worker (s->job, state
 * ST_RUNNING) is the worker's until done is set: meanwhile the loop does not touch the job
 * and only reads the frozen head (queries; fv_store_forget leaves it alone), which the worker
 * only reads too. Functions named fv_store__* expect lk held, unless they say otherwise.
 */
#ifndef FV_STORE_STORE_INT_H
#define FV_STORE_STORE_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "store/part.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/map.h"
#include "wire/payload.h"

struct fv_wal;
struct fv_lastvals;
struct fv_lastvals_mem;

/* ---- head --------------------------------------------------------------------------------- */

/* The head: records not yet in a part, per subject, as decoded values (store.c adds them). */

struct hframe {
    int64_t t;
    uint32_t off, n; /* n datums from slot off (a wide datum takes two slots: struct hdatum) */
};
/* A datum in the head: 12 bytes where struct fv_datum takes 32 (issue 13, memory per
 * connected vehicle: a device's head holds every datum it sent since the last flush). The
 * slot holds the signal number, the value's kind and member and the first 8 bytes of its
 * union: all of a number, a flag, a bit set or a string's pointer (the string owned, as in
 * fv_value). A wide value (a location, a time) continues in the next slot, which holds the
 * union's other 8 bytes; a signal number above 65535 (only in records stored before the
 * payload limits, wire/payload.h) sets FV_HD_BIGFIELD in kind and is held whole in one more
 * slot after them. Read through fv_store__hd_slots, _field and _value. */
struct hdatum {
    uint16_t field; /* the signal number (its low 16 bits with FV_HD_BIGFIELD) */
    uint8_t kind;   /* enum fv_vkind, | FV_HD_BIGFIELD */
    uint8_t member;
    uint32_t u[2]; /* 8 bytes of the value's union (copied with memcpy) */
};
#define FV_HD_BIGFIELD 0x80
struct hevent {
    int64_t t;
    uint32_t topic_off, topic_len, off, len; /* in evbytes */
};
struct hdev {
    unsigned char subject[FV_SUBJECT_LEN];
    unsigned char dek[32];
    struct hframe *fr;
    size_t nfr, capfr;
    struct hdatum *d;
    size_t nd, capd; /* slots */
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

/* ---- the store and its jobs --------------------------------------------------------------- */

enum { JOB_FLUSH = 1, JOB_MERGE = 2, JOB_WARM = 3 };

struct keyent {
    unsigned char subject[FV_SUBJECT_LEN];
    int state; /* FV_OK: key valid; FV_ESTATE: destroyed */
    unsigned char key[32];
};

/* One subject's last values in a job's output (format 7: computed, not stored), with the
 * key that would open its blocks: handed to the output part's lvc once it is open. */
struct lvout {
    unsigned char subject[FV_SUBJECT_LEN];
    unsigned char dek[32];
    struct fv_lastvals_mem *lv;
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
    /* warm: the last values of in[0]'s subjects [warm_lo, warm_hi) (fv_part.last) are
     * computed into its lvc, unless a subject is forgotten meanwhile (lv_forgets moved) */
    size_t warm_lo, warm_hi;
    uint64_t lv_forgets;
    /* result */
    int rc;
    char err[512];
    int committed; /* the output was renamed into place (even if the job then failed) */
    struct fv_part *out;
    struct lvout *lvo; /* the output's last values, until handed to out (worker) */
    size_t nlvo, caplvo;
    double ms;
    uint64_t expired, purged;
    /* input blocks that could not be read, kept as they were (copied) and reported */
    struct fv_store_failure fails[FV_STORE_MAX_FAILURES];
    size_t nfails;
    uint64_t failures;
};

enum { ST_IDLE, ST_ROTATING, ST_RUNNING };

struct cent; /* a cached block: store_query.c */

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
    pthread_mutex_t lk; /* the store's state: see the top comment */
    pthread_mutex_t cache_mu;
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
    int (*visible)(void *arg, const char *pseudo); /* fv_store_set_visible; NULL: all */
    void *visible_arg;
    void *wake_arg;
    uint64_t retry_after_ms, last_retention_ms;
    uint32_t fail_streak, full_fails; /* consecutive failed jobs; failed full compactions */
    struct fv_store_failure fails[FV_STORE_MAX_FAILURES]; /* newest last */
    size_t nfails;
    struct fv_store_stats st;
    /* Block cache (under cache_mu): decrypted, decompressed blocks by (part id, index),
     * least recently used first out. Plaintext in memory, like the head; dropped for a
     * subject on fv_store_forget. */
    struct fv_map cache;
    struct cent *lru_head, *lru_tail; /* head = most recent */
    uint64_t cache_used;
    ZSTD_DCtx *zd;       /* under cache_mu: decompresses last-values records (store_last.c) */
    uint64_t lv_forgets; /* under cache_mu: subjects forgotten so far (a reader that computed
                            last values keeps them only if none was forgotten meanwhile) */
    /* Subjects forgotten while a job was out (state not idle, or a redo pending), under lk:
     * their last values are dropped from the job's output when it is installed (T4). */
    unsigned char (*jforgot)[FV_SUBJECT_LEN];
    size_t njforgot, capjforgot;
    int jforgot_all; /* one could not be noted: the next output keeps no last values */
};

/* ---- functions shared between the store's files ------------------------------------------- */

/* store.c (any thread: pure helpers) */
/* Grows *p (of *cap elements of elem bytes) to hold need elements; FV_ENOMEM leaves it. */
int fv_store__grow(void **p, size_t *cap, size_t need, size_t elem);
/* qsort/bsearch comparators: subjects (FV_SUBJECT_LEN bytes at the start), uint32_t. */
int fv_store__cmp_subject(const void *a, const void *b);
int fv_store__cmp_u32(const void *a, const void *b);

/* Slots a value of this kind (FV_HD_BIGFIELD clear) takes in the head: 2 for a location or a
 * time (and any kind this build does not know: the whole union is kept), else 1. */
static inline unsigned fv_store__hd_width(uint8_t kind)
{
    return kind == FV_VK_LOCATION || kind == FV_VK_TIME || kind > FV_VK_OTHER ? 2 : 1;
}
/* Slots the head datum at d takes (the next datum is that many slots on). */
static inline unsigned fv_store__hd_slots(const struct hdatum *d)
{
    return fv_store__hd_width(d->kind & ~FV_HD_BIGFIELD & 0xff) + !!(d->kind & FV_HD_BIGFIELD);
}
/* The signal number of the head datum at d. */
static inline uint32_t fv_store__hd_field(const struct hdatum *d)
{
    if (!(d->kind & FV_HD_BIGFIELD)) return d->field;
    return d[fv_store__hd_slots(d) - 1].u[0];
}
/* The value of the head datum at d (and its second slot if wide), as a shallow fv_value: a
 * string is the head's (do not clear v; fv_value_copy it to keep it). */
void fv_store__hd_value(const struct hdatum *d, struct fv_value *v);

/* store.c (event loop) */
/* Frees a head and its devices (keys cleansed); NULL is ignored. */
void fv_store__head_free(struct head *hd);
/* Adds an open part to the live list (taking its reference on success), in generation order;
 * moves next_gen and, unless the part is provisional (T5), the WAL watermark. */
int fv_store__add_part(struct fv_store *s, struct fv_part *p);

/* store_sched.c (event loop) */
/* Frees a job: its input parts' references, its key copies (cleansed), its output. */
void fv_store__job_free(struct job *j);

/* store_worker.c: the worker thread's body (started by fv_store_open; arg is the store). */
void *fv_store__worker_main(void *arg);
/* Frees a job's last values not handed to its output (any thread that owns the job). */
void fv_store__lvo_free(struct job *j);

/* store_query.c */
/* Drops the cached blocks of one subject (fv_store_forget; takes cache_mu). */
void fv_store__cache_forget(struct fv_store *s, const unsigned char subject[FV_SUBJECT_LEN]);
/* Drops every cached block and the cache's index (fv_store_close). */
void fv_store__cache_free(struct fv_store *s);
/* The plaintext of block i of part p (a reference held), from the block cache or opened with
 * dek (then cached), copied into out. No lock held (takes cache_mu). */
/* The newest sample of field in block i of part p with from <= t <= to (*found), from the
 * block's column kept decoded in the block cache (kept there on first use, with the key that
 * opened the block; dropped with the block). *amb: two samples at that time, or one without
 * a value (then *v is not set). *v is the caller's (fv_value_clear). No lock held (takes
 * cache_mu). FV_OK, FV_ENOMEM, or the error of reading or decoding the block. */
int fv_store__block_last(struct fv_store *s, const struct fv_part *p, size_t i,
                         const unsigned char dek[32], uint32_t field, int64_t from, int64_t to,
                         int *found, int64_t *t, int *amb, struct fv_value *v, char *err,
                         size_t errlen);
int fv_store__read_block(struct fv_store *s, const struct fv_part *p, size_t i,
                         const unsigned char dek[32], struct fv_buf *out, char *err, size_t errlen);

/* store_last.c */
/* Drops the decoded last values of one subject kept with the live parts (takes cache_mu). */
void fv_store__lastvals_forget(struct fv_store *s, const unsigned char subject[FV_SUBJECT_LEN]);
/* A version 7 part's last values of the subject, computed from its blocks of the subject
 * into lv (empty on entry; compacted on success). FV_OK, FV_ENOMEM, or the error of a block
 * that does not open or decode (err says which). No lock held, any thread. */
int fv_store__lastvals_compute(const struct fv_part *p, const unsigned char subject[FV_SUBJECT_LEN],
                               const unsigned char dek[32], struct fv_lastvals *lv, char *err,
                               size_t errlen);
/* Drops the last values of one subject (NULL: of every subject) kept with part p (takes
 * cache_mu). */
void fv_store__lastvals_drop(struct fv_store *s, struct fv_part *p,
                             const unsigned char subject[FV_SUBJECT_LEN]);

#endif
