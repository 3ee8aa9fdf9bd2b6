/*
 * wal_writer.c - the WAL's writer thread and group commit: records framed into a pending
 * buffer, written and fdatasync'd in batches, each followed by a sync mark; new files
 * (size, rotation: I5); a full disk waited out (I7); files the store no longer needs
 * removed. wal.c replays the files and starts this thread (fv_wal_open); the validity and
 * recovery rules V1-V5, R1-R5 are atop it.
 *
 * Threads: the event loop appends into `pending` under `mu`; one writer thread swaps
 * `pending` with its own buffer, writes and fdatasyncs it outside the lock, then publishes
 * `durable_seq` and calls notify. While a fsync runs, new appends gather in `pending`, so
 * one fsync covers every record that arrived during the previous one. The writer creates
 * files without holding `mu` (an append never waits for a disk), and its commit delay waits
 * on CLOCK_MONOTONIC (a wall-clock step must not stall acks).
 *
 * Invariants:
 *  I1 records reach disk in sequence order; durable_seq only grows;
 *  I2 a record's bytes are fsync'd before its seq is <= durable_seq. A batch is written only
 *     once the one before it is fsync'd, so at any moment at most one batch - the last one
 *     of the newest file - is written but not yet durable; a crash can leave any subset of
 *     its pages on disk (zeros, then data, then zeros), never a byte of a later one;
 *  I3 recovery follows rules R1..R5 (atop wal.c) and fsyncs what it cuts or rewrites;
 *  I4 a new file is created with its header and fsync'd, and the directory fsync'd, before
 *     any record is written to it; the file before it first gets a sync mark (if its last
 *     record is not one) and is fsync'd, so every file but the newest ends with a durable
 *     sync mark, at the length the new file's header records;
 *  I5 a rotation requested after record S puts every record <= S in files <= F and every
 *     later record in files > F; (S, F) is published only once records <= S are durable,
 *     so files <= F may be deleted once their records are safely elsewhere (the store);
 *     the rotation is done only once its own (S, F) is published (rotating), never on the
 *     previous rotation's, whose S equals it when nothing was appended in between (the
 *     first rotation after replay: the head then holds only replayed records, and a part
 *     claiming a stale F would leave its WAL files to be replayed into the store again);
 *  I6 the durable offset D written in a record is true: the file was fsync'd up to D (at
 *     start, the newest file is fsync'd before anything is appended). After each batch's
 *     fdatasync, and before its records are published durable, a sync mark is written
 *     (D = the mark's own offset; it becomes durable with the next batch, or at close). So
 *     every acknowledged record is followed in its file by a record whose D lies past it,
 *     unless the power failed before that mark reached the disk;
 *  I7 a full disk (ENOSPC, EDQUOT from a write or a file creation) is not a failure: nothing
 *     written since the last fsync is durable or acknowledged, so the writer cuts it back to
 *     the last written size (or removes the new file) and writes the same bytes again every
 *     FULL_RETRY_MS until they fit; meanwhile append refuses records (FV_EAGAIN). The batch
 *     keeps its durable offsets (nothing more was synced). A failed fsync stays permanent:
 *     its pages may be gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "os/fsio.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/prio.h"
#include "wal/wal.h"
#include "wal/wal_format.h"
#include "wal/wal_int.h"

/* How long a busy writer waits for more records before syncing a batch. */
#define FV_WAL_COMMIT_DELAY_US 300
/* A batch this large is synced without waiting further. */
#define FV_WAL_BATCH_FULL (256u << 10)
/* How often a writer stopped by a full disk tries again (I7). */
#define FULL_RETRY_MS 250

/* now + ns on CLOCK_MONOTONIC, the clock of cv (fv_wal_open), for pthread_cond_timedwait. */
static struct timespec deadline_ns(long ns)
{
    return fv_mono_timespec(fv_mono_ns() + (uint64_t)ns);
}

/* After a write or file creation failed with errno e: on a full disk (I7) marks the WAL
 * full, waits FULL_RETRY_MS and returns 1 (try again); otherwise, or when closing, 0. */
static int wait_for_space(struct fv_wal *w, int e, const char *err)
{
    if (e != ENOSPC && e != EDQUOT) return 0;
    if (!__atomic_exchange_n(&w->full, 1, __ATOMIC_ACQ_REL))
        fv_error("wal: %s; records are refused until there is space again", err);
    struct timespec until = deadline_ns((long)FULL_RETRY_MS * 1000000L);
    pthread_mutex_lock(&w->mu);
    if (!w->stop) pthread_cond_timedwait(&w->cv, &w->mu, &until);
    int stop = w->stop;
    pthread_mutex_unlock(&w->mu);
    return !stop;
}

static void space_again(struct fv_wal *w)
{
    if (__atomic_exchange_n(&w->full, 0, __ATOMIC_ACQ_REL))
        fv_info("wal: there is space again; records are accepted");
}

/* Writes len bytes at the end of the current file (cur_size), waiting out a full disk (I7):
 * the unsynced bytes a failed write left are cut before the next try. */
static int write_at_end(struct fv_wal *w, const unsigned char *p, size_t len, char *err,
                        size_t errlen)
{
    for (;;) {
        int rc = fv_os_write_all(w->fd, p, len, w->cur_path, err, errlen);
        if (rc == FV_OK) {
            space_again(w);
            return FV_OK;
        }
        int e = errno;
        if ((e != ENOSPC && e != EDQUOT) ||
            fv_os_ftruncate(w->fd, (off_t)w->cur_size, w->cur_path, NULL, 0) != FV_OK ||
            !wait_for_space(w, e, err))
            return rc;
    }
}

/* Appends a sync mark to the current file (I6): everything before it was fsync'd. */
static int write_mark(struct fv_wal *w, char *err, size_t errlen)
{
    unsigned char m[FV_WAL_REC_HEAD] = {0};
    fv_put_u64(m + 8, w->cur_size);
    fv_put_u32(m + 16, fv_wal_header_crc(w->salt, m));
    int rc = write_at_end(w, m, sizeof m, err, errlen);
    w->cur_size += sizeof m;
    w->new_bytes += sizeof m;
    w->ends_with_mark = rc == FV_OK;
    return rc;
}

/* Ends the current file with a durable sync mark (I4; R3 relies on it): before a new file
 * follows it, and at close. */
static int finish_file(struct fv_wal *w, char *err, size_t errlen)
{
    int rc = FV_OK;
    if (w->fd < 0) return FV_OK;
    if (!w->ends_with_mark && w->cur_size > FV_WAL_HEADER_LEN) rc = write_mark(w, err, errlen);
    if (rc == FV_OK && w->synced_size < w->cur_size) {
        rc = fv_os_fdatasync(w->fd, w->cur_path, err, errlen);
        if (rc == FV_OK) w->synced_size = w->cur_size;
    }
    return rc;
}

/* Writes one batch of framed records at the end of the current file with D = the durable
 * size, fdatasyncs it (I2), then writes its sync mark (I6). */
static int write_batch(struct fv_wal *w, unsigned char *p, size_t len, char *err, size_t errlen)
{
    if (w->opts.before_sync) {
        int rc = w->opts.before_sync(w->opts.before_sync_arg, err, errlen);
        if (rc) return rc;
    }
    fv_wal_finish_batch(p, len, w->salt, w->synced_size);
    int rc = write_at_end(w, p, len, err, errlen);
    w->cur_size += len;
    w->new_bytes += len;
    w->ends_with_mark = 0;
    if (rc == FV_OK) rc = fv_os_fdatasync(w->fd, w->cur_path, err, errlen);
    if (rc == FV_OK) {
        w->synced_size = w->cur_size;
        rc = write_mark(w, err, errlen);
    }
    return rc;
}

/* Makes the current file one whose header is durable and whose records are yet to come. */
void fv_wal__use_file(struct fv_wal *w, int fd, const char *path, uint32_t salt, uint64_t size,
                      int ends_with_mark)
{
    if (w->fd >= 0 && w->fd != fd) close(w->fd);
    w->fd = fd;
    snprintf(w->cur_path, sizeof w->cur_path, "%s", path);
    w->salt = salt;
    w->cur_size = w->synced_size = size;
    w->ends_with_mark = ends_with_mark;
}

/* Creates file no with its header, durable before use (I4), after finishing the current
 * one. Does its I/O without holding mu (appends never wait for a disk). */
int fv_wal__create_file(struct fv_wal *w, uint64_t no, char *err, size_t errlen)
{
    int rc = finish_file(w, err, errlen);
    if (rc) return rc;
    char path[PATH_MAX];
    fv_wal__file_path(path, sizeof path, w->dir, no);
    int fd;
    if (fv_os_open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0600, &fd, err, errlen))
        return FV_EIO;
    unsigned char h[FV_WAL_HEADER_LEN];
    uint32_t salt = fv_wal__new_salt();
    fv_wal__make_header(h, salt, w->fd >= 0 ? w->cur_size : w->replayed_len);
    rc = fv_os_write_all(fd, h, sizeof h, path, err, errlen);
    if (rc == FV_OK) rc = fv_os_fsync(fd, path, err, errlen);
    if (rc == FV_OK) rc = fv_os_fsync_dir(w->dir, err, errlen);
    if (rc != FV_OK) {
        int e = errno;
        close(fd);
        fv_os_unlink(path, NULL, 0); /* never used: the next attempt makes it afresh (I7) */
        errno = e;
        return rc;
    }
    fv_wal__use_file(w, fd, path, salt, FV_WAL_HEADER_LEN, 0);
    pthread_mutex_lock(&w->mu);
    w->cur_file_no = no;
    w->st.files++;
    w->st.bytes_on_disk += FV_WAL_HEADER_LEN;
    pthread_mutex_unlock(&w->mu);
    return FV_OK;
}

/* Starts the next file, waiting out a full disk (I7). */
static int create_next(struct fv_wal *w, char *err, size_t errlen)
{
    for (;;) {
        int rc = fv_wal__create_file(w, w->cur_file_no + 1, err, errlen);
        if (rc == FV_OK) space_again(w);
        if (rc == FV_OK || !wait_for_space(w, errno, err)) return rc;
    }
}

/* ---- writer thread ------------------------------------------------------------------- */

static void record_fsync(struct fv_wal *w, uint64_t ns)
{
    w->st.fsync_hist[fv_latency_bucket(ns)]++;
    w->st.fsync_seconds_sum += (double)ns / 1e9;
    w->st.fsyncs++;
}

void *fv_wal__writer_main(void *arg)
{
    struct fv_wal *w = arg;
    struct fv_buf batch = {0};
    char err[512];
    int e = w->opts.writer_nice ? fv_thread_set_nice(w->opts.writer_nice) : 0;
    if (e)
        fv_warn("wal: the writer thread keeps its priority: nice %d refused (%s)",
                w->opts.writer_nice, strerror(e));
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->pending.len == 0 && !w->stop && !w->rotate_req) {
            w->waiting = WAIT_IDLE;
            pthread_cond_wait(&w->cv, &w->mu);
        }
        w->waiting = WAIT_NONE;
        if (w->pending.len == 0 && w->stop && !w->rotate_req) break;
        /* Commit delay: when busy (the previous fsync ended moments ago), give records that
         * are arriving a short moment to join this batch, so one fsync serves many. An idle
         * system syncs at once, keeping single-record latency minimal. */
        uint64_t now = fv_mono_ns();
        if (!w->stop && w->last_sync_end_ns && now - w->last_sync_end_ns < 2000000u &&
            w->pending.len < FV_WAL_BATCH_FULL) {
            struct timespec until = deadline_ns(FV_WAL_COMMIT_DELAY_US * 1000L);
            w->waiting = WAIT_DELAY;
            while (!w->stop && w->pending.len < FV_WAL_BATCH_FULL &&
                   pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0)
                ;
            w->waiting = WAIT_NONE;
        }
        struct fv_buf t = batch;
        batch = w->pending;
        w->pending = t;
        fv_buf_reset(&w->pending);
        uint64_t last = w->pending_last_seq;
        int rot = w->rotate_req;
        size_t rot_at = rot ? w->rotate_at : batch.len;
        uint64_t rot_seq = w->rotate_seq, rot_file = 0;
        w->rotate_req = 0;
        w->rotating = rot; /* until (S, F) is published below: rotated_* are stale (I5) */
        pthread_mutex_unlock(&w->mu);

        int rc = FV_OK;
        if (w->cur_size >= w->opts.segment_bytes && rot_at > 0)
            rc = create_next(w, err, sizeof err);
        uint64_t t0 = fv_mono_ns();
        if (rc == FV_OK && rot_at > 0) rc = write_batch(w, batch.data, rot_at, err, sizeof err);
        if (rc == FV_OK && rot) {
            /* I5: records <= rot_seq are in files <= rot_file (an empty current file holds
             * none, so it is kept and the cut falls before it). */
            rot_file = w->cur_file_no - (w->cur_size == FV_WAL_HEADER_LEN);
            if (w->cur_size > FV_WAL_HEADER_LEN) rc = create_next(w, err, sizeof err);
        }
        if (rc == FV_OK && batch.len > rot_at)
            rc = write_batch(w, batch.data + rot_at, batch.len - rot_at, err, sizeof err);
        uint64_t dt = fv_mono_ns() - t0;

        pthread_mutex_lock(&w->mu);
        if (rc != FV_OK) {
            fv_error("wal: %s; no further record can be made durable, acks stop", err);
            __atomic_store_n(&w->failed, 1, __ATOMIC_RELEASE);
            w->pending.len = 0;
            break;
        }
        if (rot) {
            w->rotated_seq = rot_seq;
            w->rotated_file = rot_file;
            w->rotating = 0;
        }
        record_fsync(w, dt);
        w->last_sync_end_ns = fv_mono_ns();
        w->st.bytes_on_disk += w->new_bytes;
        w->new_bytes = 0;
        __atomic_store_n(&w->durable_seq, last, __ATOMIC_RELEASE);
        fv_buf_reset(&batch);
        if (w->opts.notify) {
            pthread_mutex_unlock(&w->mu);
            w->opts.notify(w->opts.notify_arg);
            pthread_mutex_lock(&w->mu);
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (w->opts.notify) w->opts.notify(w->opts.notify_arg);
    fv_buf_free(&batch);
    return NULL;
}

/* ---- public -------------------------------------------------------------------------- */

int64_t fv_wal_append(struct fv_wal *w, const struct fv_wal_record *rec)
{
    if (__atomic_load_n(&w->failed, __ATOMIC_ACQUIRE)) return FV_EIO;
    if (__atomic_load_n(&w->full, __ATOMIC_ACQUIRE)) return FV_EAGAIN; /* I7 */
    if (w->opts.read_only) return FV_ESTATE;
    pthread_mutex_lock(&w->mu);
    int rc = fv_wal_frame(rec, &w->pending);
    int64_t seq = rc;
    if (rc == FV_OK) {
        seq = (int64_t)++w->appended_seq;
        w->pending_last_seq = (uint64_t)seq;
        if (w->waiting == WAIT_IDLE ||
            (w->waiting == WAIT_DELAY && w->pending.len >= FV_WAL_BATCH_FULL))
            pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return seq;
}

uint64_t fv_wal_durable_seq(struct fv_wal *w)
{
    return __atomic_load_n(&w->durable_seq, __ATOMIC_ACQUIRE);
}

uint64_t fv_wal_appended_seq(struct fv_wal *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t seq = w->appended_seq;
    pthread_mutex_unlock(&w->mu);
    return seq;
}

int fv_wal_failed(struct fv_wal *w)
{
    return __atomic_load_n(&w->failed, __ATOMIC_ACQUIRE);
}

void fv_wal_stats(struct fv_wal *w, struct fv_wal_stats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->st;
    out->appended_seq = w->appended_seq;
    out->durable_seq = fv_wal_durable_seq(w);
    pthread_mutex_unlock(&w->mu);
}

void fv_wal_close(struct fv_wal *w)
{
    if (w == NULL) return;
    if (w->thread_started) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    char err[512];
    if (w->fd >= 0 && !fv_wal_failed(w) && finish_file(w, err, sizeof err) != FV_OK)
        fv_error("wal: %s; the final sync mark may not be durable", err);
    if (w->fd >= 0) close(w->fd);
    fv_buf_free(&w->pending);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

uint64_t fv_wal_rotate(struct fv_wal *w)
{
    pthread_mutex_lock(&w->mu);
    w->rotate_req = 1;
    w->rotate_at = w->pending.len;
    w->rotate_seq = w->appended_seq;
    uint64_t seq = w->appended_seq;
    if (w->waiting != WAIT_NONE) pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return seq;
}

int fv_wal_rotation_done(struct fv_wal *w, uint64_t marker, uint64_t *last_file)
{
    pthread_mutex_lock(&w->mu);
    /* rotating: the previous rotation's (S, F) may equal the marker (nothing appended
     * since, e.g. a head holding only replayed records) while its F is stale */
    int done = w->rotated_seq == marker && !w->rotate_req && !w->rotating &&
               fv_wal_durable_seq(w) >= marker;
    if (done) *last_file = w->rotated_file;
    pthread_mutex_unlock(&w->mu);
    return done;
}

int fv_wal_remove_upto(struct fv_wal *w, uint64_t file_no, char *err, size_t errlen)
{
    uint64_t *files = NULL;
    size_t n = 0;
    int rc = fv_wal__list_files(w->dir, &files, &n, err, errlen);
    if (rc) return rc;
    pthread_mutex_lock(&w->mu);
    uint64_t cur = w->cur_file_no;
    pthread_mutex_unlock(&w->mu);
    if (n > 0 && files[0] <= file_no && files[0] < cur && w->opts.before_remove)
        rc = w->opts.before_remove(w->opts.before_remove_arg, err, errlen);
    int removed = 0;
    for (size_t i = 0; i < n && rc == FV_OK; i++) {
        if (files[i] > file_no || files[i] >= cur) break;
        char path[PATH_MAX];
        fv_wal__file_path(path, sizeof path, w->dir, files[i]);
        struct stat st;
        uint64_t size = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
        rc = fv_os_unlink(path, err, errlen);
        if (rc) break;
        removed++;
        pthread_mutex_lock(&w->mu);
        w->st.files--;
        w->st.bytes_on_disk -= size < w->st.bytes_on_disk ? size : w->st.bytes_on_disk;
        pthread_mutex_unlock(&w->mu);
    }
    free(files);
    if (rc == FV_OK && removed) rc = fv_os_fsync_dir(w->dir, err, errlen);
    return rc;
}
