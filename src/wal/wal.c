/*
 * wal.c - write-ahead log with group commit; the format is in wal_format.h.
 *
 * Threads: the event loop appends into `pending` under `mu`; one writer thread swaps
 * `pending` with its own buffer, writes and fdatasyncs it outside the lock, then publishes
 * `durable_seq` and calls notify. While a fsync runs, new appends gather in `pending`, so
 * one fsync covers every record that arrived during the previous one.
 *
 * Invariants:
 *  I1 records reach disk in sequence order; durable_seq only grows;
 *  I2 a record's bytes are fsync'd before its seq is <= durable_seq;
 *  I3 only the newest file may end in a torn record; replay cuts it at the first invalid
 *     record (as SQLite's WAL stops at the first invalid frame) and fsyncs the truncation;
 *  I4 a new file is created with its header and fsync'd, and the directory fsync'd, before
 *     any record is written to it.
 *  I5 a rotation requested after record S puts every record <= S in files <= F and every
 *     later record in files > F; (S, F) is published only once records <= S are durable,
 *     so files <= F may be deleted once their records are safely elsewhere (the store).
 *  I6 a full disk (ENOSPC, EDQUOT from a write or a file creation) is not a failure: nothing
 *     of the batch was synced, so the writer cuts what it wrote back to the last durable
 *     size (or removes the new file) and tries the same batch again every FULL_RETRY_MS
 *     until it fits; meanwhile append refuses records (FV_EAGAIN). A failed fsync stays
 *     permanent: its pages may be gone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/fsio.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/log.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

/* How long a busy writer waits for more records before syncing a batch. */
#define FV_WAL_COMMIT_DELAY_US 300
/* A batch this large is synced without waiting further. */
#define FV_WAL_BATCH_FULL (256u << 10)
/* How often a writer stopped by a full disk tries again (I6). */
#define FULL_RETRY_MS 250

/* What the writer thread is waiting for (under mu): appends wake it only when it matters,
 * sparing a context switch per record. */
enum { WAIT_NONE, WAIT_IDLE, WAIT_DELAY };

const double fv_wal_fsync_buckets_ms[11] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250};

struct fv_wal {
    char dir[PATH_MAX];
    struct fv_wal_opts opts;
    int fd;
    char cur_path[PATH_MAX];
    uint64_t cur_size;
    uint64_t cur_file_no;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct fv_buf pending; /* encoded records not yet handed to the writer */
    uint64_t pending_last_seq;
    uint64_t appended_seq;
    int stop;
    int thread_started;
    pthread_t thread;

    uint64_t last_sync_end_ns; /* writer thread only */
    int waiting;               /* WAIT_*, under mu */
    uint64_t durable_seq;      /* atomic */
    int failed;                /* atomic */
    int full;                  /* atomic: the disk is full, records are refused (I6) */

    struct fv_wal_stats st; /* under mu */

    /* Rotation (I5), under mu: a request cuts the pending batch at rotate_at; the writer
     * publishes the marker seq and the last file holding records <= it once durable. */
    int rotate_req;
    size_t rotate_at;
    uint64_t rotate_seq;
    uint64_t rotated_seq, rotated_file;
};

/* ---- record body codec ------------------------------------------------------------- */

int fv_wal_encode_body(const struct fv_wal_record *r, unsigned char *out, size_t cap, size_t *len)
{
    size_t n = 2 + 8 + 1 + r->device_id_len + 1 + r->client_type_len + 1 + r->topic_len + 2 +
               r->txid_len + 4 + (size_t)r->payload_len;
    if (n > FV_WAL_MAX_BODY) return FV_ELIMIT;
    if (n > cap) return FV_EINVAL;
    unsigned char *p = out;
    *p++ = r->type;
    *p++ = r->flags;
    fv_put_u64(p, r->received_ms);
    p += 8;
    *p++ = r->device_id_len;
    memcpy(p, r->device_id, r->device_id_len);
    p += r->device_id_len;
    *p++ = r->client_type_len;
    memcpy(p, r->client_type, r->client_type_len);
    p += r->client_type_len;
    *p++ = r->topic_len;
    memcpy(p, r->topic, r->topic_len);
    p += r->topic_len;
    fv_put_u16(p, r->txid_len);
    p += 2;
    memcpy(p, r->txid, r->txid_len);
    p += r->txid_len;
    fv_put_u32(p, r->payload_len);
    p += 4;
    if (r->payload_len) memcpy(p, r->payload, r->payload_len);
    *len = n;
    return FV_OK;
}

int fv_wal_decode_body(const unsigned char *p, size_t n, struct fv_wal_record *r)
{
    memset(r, 0, sizeof *r);
    size_t at = 0;
#define NEED(k)                                                                                    \
    do {                                                                                           \
        if (n - at < (size_t)(k)) return FV_ECORRUPT;                                              \
    } while (0)
    NEED(11);
    r->type = p[0];
    r->flags = p[1];
    r->received_ms = fv_get_u64(p + 2);
    at = 10;
    r->device_id_len = p[at++];
    NEED(r->device_id_len + 1);
    r->device_id = (const char *)p + at;
    at += r->device_id_len;
    r->client_type_len = p[at++];
    NEED(r->client_type_len + 1);
    r->client_type = (const char *)p + at;
    at += r->client_type_len;
    r->topic_len = p[at++];
    NEED(r->topic_len + 2);
    r->topic = (const char *)p + at;
    at += r->topic_len;
    r->txid_len = fv_get_u16(p + at);
    at += 2;
    NEED((size_t)r->txid_len + 4);
    r->txid = p + at;
    at += r->txid_len;
    r->payload_len = fv_get_u32(p + at);
    at += 4;
    NEED(r->payload_len);
    r->payload = p + at;
    at += r->payload_len;
#undef NEED
    if (at != n || r->type != FV_WAL_REC_DATA || r->device_id_len == 0) return FV_ECORRUPT;
    return FV_OK;
}

int fv_wal_record_aad(const struct fv_wal_record *rec, struct fv_buf *out)
{
    struct fv_wal_record r = *rec;
    r.payload = NULL;
    r.payload_len = 0;
    size_t n, need = 2 + 8 + 1 + r.device_id_len + 1 + r.client_type_len + 1 + r.topic_len + 2 +
                     r.txid_len + 4;
    int rc = fv_buf_reserve(out, need);
    if (rc) return rc;
    rc = fv_wal_encode_body(&r, out->data + out->len, out->cap - out->len, &n);
    if (rc == FV_OK) out->len += n;
    return rc;
}

static void make_header(unsigned char h[FV_WAL_HEADER_LEN])
{
    memcpy(h, FV_WAL_MAGIC, FV_WAL_MAGIC_LEN);
    fv_put_u32(h + 8, FV_WAL_VERSION);
    fv_put_u32(h + 12, fv_crc32c(0, h, 12));
}

/* Is the invalid data from at to len what a crash mid-write leaves: a record cut short by
 * the end of the file, a last record whose checksum fails, or zeros (a file extended but
 * never written)? Anything else is corruption, never silently cut (rule I3). */
static int looks_torn(const unsigned char *img, size_t len, size_t at)
{
    if (len - at < FV_WAL_REC_HEAD) return 1;
    uint32_t n = fv_get_u32(img + at);
    if (n > len - at - FV_WAL_REC_HEAD || n + FV_WAL_REC_HEAD == len - at) return 1;
    for (size_t i = at; i < len; i++)
        if (img[i]) return 0;
    return 1;
}

int fv_wal_scan(const unsigned char *img, size_t len, const char *name, fv_wal_replay_fn fn,
                void *arg, uint64_t *valid_end, int *torn, char *err, size_t errlen)
{
    *valid_end = 0;
    *torn = 0;
    unsigned char h[FV_WAL_HEADER_LEN];
    make_header(h);
    if (len < FV_WAL_HEADER_LEN || memcmp(img, h, FV_WAL_HEADER_LEN) != 0) {
        if (len >= 12 && memcmp(img, FV_WAL_MAGIC, FV_WAL_MAGIC_LEN) == 0 &&
            fv_get_u32(img + 8) != FV_WAL_VERSION)
            fv_seterr(err, errlen, "%s: offset 8: WAL format version %u, this build reads %u", name,
                      fv_get_u32(img + 8), FV_WAL_VERSION);
        else
            fv_seterr(err, errlen, "%s: offset 0: not a fleetvault WAL file (bad header)", name);
        *torn = len < FV_WAL_HEADER_LEN && memcmp(img, h, len) == 0;
        return FV_ECORRUPT;
    }
    size_t at = FV_WAL_HEADER_LEN;
    *valid_end = at;
    while (at < len) {
        *torn = looks_torn(img, len, at);
        if (len - at < FV_WAL_REC_HEAD) {
            fv_seterr(err, errlen, "%s: offset %zu: record header cut short", name, at);
            return FV_ECORRUPT;
        }
        uint32_t n = fv_get_u32(img + at);
        uint32_t crc = fv_get_u32(img + at + 4);
        if (n == 0 || n > FV_WAL_MAX_BODY || n > len - at - FV_WAL_REC_HEAD) {
            fv_seterr(err, errlen, "%s: offset %zu: record length %u invalid or past end", name, at,
                      n);
            return FV_ECORRUPT;
        }
        const unsigned char *body = img + at + FV_WAL_REC_HEAD;
        if (fv_crc32c(0, body, n) != crc) {
            fv_seterr(err, errlen, "%s: offset %zu: record checksum mismatch", name, at);
            return FV_ECORRUPT;
        }
        struct fv_wal_record r;
        if (fv_wal_decode_body(body, n, &r) != FV_OK) {
            fv_seterr(err, errlen, "%s: offset %zu: record body malformed", name, at);
            return FV_ECORRUPT;
        }
        if (fn) {
            int rc = fn(arg, &r, name, at);
            if (rc) {
                fv_seterr(err, errlen, "%s: offset %zu: replay stopped: %s", name, at,
                          fv_strerror(rc));
                *torn = 0;
                return rc;
            }
        }
        at += FV_WAL_REC_HEAD + n;
        *valid_end = at;
    }
    *torn = 0;
    return FV_OK;
}

/* ---- files --------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists wal-*.log file numbers in ascending order. */
static int list_files(const char *dir, uint64_t **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        fv_seterr(err, errlen, "opendir %s: %s", dir, strerror(errno));
        return FV_EIO;
    }
    size_t cap = 0;
    struct dirent *e;
    int rc = FV_OK;
    while ((e = readdir(d)) != NULL) {
        unsigned long long no;
        char tail[8];
        if (sscanf(e->d_name, "wal-%16llx.%4s", &no, tail) != 2 || strcmp(tail, "log") != 0 ||
            strlen(e->d_name) != 24)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *m = realloc(*out, cap * sizeof **out);
            if (m == NULL) {
                rc = FV_ENOMEM;
                break;
            }
            *out = m;
        }
        (*out)[(*n)++] = no;
    }
    closedir(d);
    if (rc == FV_OK && *n) qsort(*out, *n, sizeof **out, cmp_u64);
    return rc;
}

static void file_path(char *buf, size_t len, const char *dir, uint64_t no)
{
    snprintf(buf, len, "%s/wal-%016llx.log", dir, (unsigned long long)no);
}

/* Creates file no with its header, durable before use (I4). */
static int create_file(struct fv_wal *w, uint64_t no, char *err, size_t errlen)
{
    char path[PATH_MAX];
    file_path(path, sizeof path, w->dir, no);
    int fd;
    int rc = fv_os_open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0600, &fd, err, errlen);
    if (rc) return FV_EIO;
    unsigned char h[FV_WAL_HEADER_LEN];
    make_header(h);
    rc = fv_os_write_all(fd, h, sizeof h, path, err, errlen);
    if (rc == FV_OK) rc = fv_os_fsync(fd, path, err, errlen);
    if (rc == FV_OK) rc = fv_os_fsync_dir(w->dir, err, errlen);
    if (rc != FV_OK) {
        int e = errno;
        close(fd);
        fv_os_unlink(path, NULL, 0); /* never used: the next attempt makes it afresh */
        errno = e;
        return rc;
    }
    if (w->fd >= 0) close(w->fd);
    w->fd = fd;
    snprintf(w->cur_path, sizeof w->cur_path, "%s", path);
    w->cur_size = FV_WAL_HEADER_LEN;
    w->cur_file_no = no;
    w->st.files++;
    w->st.bytes_on_disk += FV_WAL_HEADER_LEN;
    return FV_OK;
}

static int replay_file(struct fv_wal *w, uint64_t no, int last, fv_wal_replay_fn fn, void *arg,
                       char *err, size_t errlen)
{
    char path[PATH_MAX];
    file_path(path, sizeof path, w->dir, no);
    int fd;
    int rc = fv_os_open(path, w->opts.read_only ? O_RDONLY : O_RDWR, 0, &fd, err, errlen);
    if (rc) return FV_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fv_seterr(err, errlen, "stat %s: %s", path, strerror(errno));
        close(fd);
        return FV_EIO;
    }
    size_t len = (size_t)st.st_size;
    unsigned char *img = NULL;
    if (len) {
        img = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (img == MAP_FAILED) {
            fv_seterr(err, errlen, "mmap %s: %s", path, strerror(errno));
            close(fd);
            return FV_EIO;
        }
        madvise(img, len, MADV_SEQUENTIAL);
    }
    uint64_t valid_end = 0;
    int torn = 0;
    char serr[512] = "";
    rc = fv_wal_scan(img ? img : (const unsigned char *)"", len, path, fn, arg, &valid_end, &torn,
                     serr, sizeof serr);
    if (img) munmap(img, len);
    if (rc == FV_ECORRUPT && last && torn) {
        /* I3: a torn tail of the newest file. */
        uint64_t cut = len - valid_end;
        if (w->opts.read_only) {
            fv_warn("wal: %s; the %llu bytes from offset %llu are a torn tail (not acked)", serr,
                    (unsigned long long)cut, (unsigned long long)valid_end);
        } else if (valid_end < FV_WAL_HEADER_LEN) {
            /* Crash while creating the file: rewrite its header. */
            unsigned char h[FV_WAL_HEADER_LEN];
            make_header(h);
            if (fv_os_ftruncate(fd, 0, path, err, errlen) != FV_OK ||
                fv_os_pwrite_all(fd, h, sizeof h, 0, path, err, errlen) != FV_OK ||
                fv_os_fsync(fd, path, err, errlen) != FV_OK) {
                close(fd);
                return FV_EIO;
            }
            valid_end = FV_WAL_HEADER_LEN;
            fv_warn("wal: %s: header was torn; rewritten", path);
        } else {
            if (fv_os_ftruncate(fd, (off_t)valid_end, path, err, errlen) != FV_OK) {
                close(fd);
                return FV_EIO;
            }
            if (fv_os_fsync(fd, path, err, errlen) != FV_OK) {
                close(fd);
                return FV_EIO;
            }
            fv_warn("wal: cut torn tail of %s at offset %llu (%llu bytes of a record that was "
                    "never acknowledged)",
                    path, (unsigned long long)valid_end, (unsigned long long)cut);
        }
        w->st.torn_bytes_cut += cut;
        rc = FV_OK;
    } else if (rc != FV_OK) {
        fv_seterr(err, errlen, "%s", serr);
        close(fd);
        return rc;
    }
    w->st.files++;
    w->st.bytes_on_disk += valid_end;
    if (last && !w->opts.read_only) {
        /* Keep appending to the newest file. */
        if (lseek(fd, (off_t)valid_end, SEEK_SET) < 0) {
            fv_seterr(err, errlen, "seek %s: %s", path, strerror(errno));
            close(fd);
            return FV_EIO;
        }
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_APPEND) < 0) {
            fv_seterr(err, errlen, "fcntl %s: %s", path, strerror(errno));
            close(fd);
            return FV_EIO;
        }
        w->fd = fd;
        snprintf(w->cur_path, sizeof w->cur_path, "%s", path);
        w->cur_size = valid_end;
        w->cur_file_no = no;
        return FV_OK;
    }
    close(fd);
    return FV_OK;
}

/* ---- writer thread ------------------------------------------------------------------- */

static void record_fsync(struct fv_wal *w, uint64_t ns)
{
    double ms = (double)ns / 1e6;
    int b = 0;
    while (b < 11 && ms > fv_wal_fsync_buckets_ms[b])
        b++;
    w->st.fsync_hist[b]++;
    w->st.fsync_seconds_sum += ms / 1000.0;
    w->st.fsyncs++;
}

/* After a write or file creation failed with errno e: on a full disk (I6) marks the WAL
 * full, waits FULL_RETRY_MS and returns 1 (try again); otherwise, or when closing, 0. */
static int wait_for_space(struct fv_wal *w, int e, const char *err)
{
    if (e != ENOSPC && e != EDQUOT) return 0;
    if (!__atomic_exchange_n(&w->full, 1, __ATOMIC_ACQ_REL))
        fv_error("wal: %s; records are refused until there is space again", err);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += FULL_RETRY_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
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

/* Writes len bytes at the end of the current file and fdatasyncs them (I6 on a full disk). */
static int write_sync(struct fv_wal *w, const unsigned char *p, size_t len, char *err,
                      size_t errlen)
{
    for (;;) {
        int rc = fv_os_write_all(w->fd, p, len, w->cur_path, err, errlen);
        if (rc == FV_OK) {
            rc = fv_os_fdatasync(w->fd, w->cur_path, err, errlen);
            if (rc == FV_OK) {
                w->cur_size += len;
                space_again(w);
            }
            return rc;
        }
        int e = errno;
        if (e != ENOSPC && e != EDQUOT) return rc;
        /* Unsynced bytes of a batch never acked: cut them, or the retry would follow them. */
        if (fv_os_ftruncate(w->fd, (off_t)w->cur_size, w->cur_path, NULL, 0) != FV_OK ||
            !wait_for_space(w, e, err))
            return rc;
    }
}

/* Starts the next file (under mu, I4; I6 on a full disk). */
static int create_next(struct fv_wal *w, char *err, size_t errlen)
{
    for (;;) {
        pthread_mutex_lock(&w->mu);
        int rc = create_file(w, w->cur_file_no + 1, err, errlen);
        int e = errno;
        pthread_mutex_unlock(&w->mu);
        if (rc == FV_OK) space_again(w);
        if (rc == FV_OK || !wait_for_space(w, e, err)) return rc;
    }
}

static void *writer_main(void *arg)
{
    struct fv_wal *w = arg;
    struct fv_buf batch = {0};
    char err[512];
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
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += FV_WAL_COMMIT_DELAY_US * 1000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
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
        pthread_mutex_unlock(&w->mu);

        int rc = FV_OK;
        if (w->cur_size >= w->opts.segment_bytes && rot_at > 0)
            rc = create_next(w, err, sizeof err);
        uint64_t t0 = fv_mono_ns();
        if (rc == FV_OK && rot_at > 0) rc = write_sync(w, batch.data, rot_at, err, sizeof err);
        if (rc == FV_OK && rot) {
            /* I5: records <= rot_seq are in files <= rot_file (an empty current file holds
             * none, so it is kept and the cut falls before it). */
            rot_file = w->cur_file_no - (w->cur_size == FV_WAL_HEADER_LEN);
            if (w->cur_size > FV_WAL_HEADER_LEN) rc = create_next(w, err, sizeof err);
        }
        if (rc == FV_OK && batch.len > rot_at)
            rc = write_sync(w, batch.data + rot_at, batch.len - rot_at, err, sizeof err);
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
        }
        record_fsync(w, dt);
        w->last_sync_end_ns = fv_mono_ns();
        w->st.bytes_on_disk += batch.len;
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

int fv_wal_open(const char *dir, const struct fv_wal_opts *opts, fv_wal_replay_fn replay, void *arg,
                struct fv_wal **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_wal *w = calloc(1, sizeof *w);
    if (w == NULL) return FV_ENOMEM;
    w->fd = -1;
    if (opts) w->opts = *opts;
    if (w->opts.segment_bytes == 0) w->opts.segment_bytes = 64ull << 20;
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    uint64_t *files = NULL;
    size_t nfiles = 0;
    int rc;
    if (!w->opts.read_only) {
        rc = fv_os_mkdirs(dir, 0700, err, errlen);
        if (rc) goto fail;
    }
    rc = list_files(dir, &files, &nfiles, err, errlen);
    if (rc) goto fail;
    for (size_t i = 0; i < nfiles; i++) {
        rc = replay_file(w, files[i], i + 1 == nfiles, replay, arg, err, errlen);
        if (rc) goto fail;
    }
    if (w->opts.read_only) {
        free(files);
        *out = w;
        return FV_OK;
    }
    if (w->fd < 0) {
        rc = create_file(w, 1, err, errlen);
        if (rc) goto fail;
    }
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        fv_seterr(err, errlen, "cannot start the WAL writer thread");
        rc = FV_ENOMEM;
        goto fail;
    }
    w->thread_started = 1;
    free(files);
    *out = w;
    return FV_OK;
fail:
    free(files);
    if (w->fd >= 0) close(w->fd);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    return rc;
}

int64_t fv_wal_append(struct fv_wal *w, const struct fv_wal_record *rec)
{
    if (__atomic_load_n(&w->failed, __ATOMIC_ACQUIRE)) return FV_EIO;
    if (__atomic_load_n(&w->full, __ATOMIC_ACQUIRE)) return FV_EAGAIN; /* I6 */
    if (w->opts.read_only) return FV_ESTATE;
    size_t max = FV_WAL_REC_HEAD + 2 + 8 + 3 + 255 * 3 + 2 + 65535 + 4 + (size_t)rec->payload_len;
    pthread_mutex_lock(&w->mu);
    int rc = fv_buf_reserve(&w->pending, max);
    size_t n = 0;
    if (rc == FV_OK) {
        unsigned char *p = w->pending.data + w->pending.len;
        rc = fv_wal_encode_body(rec, p + FV_WAL_REC_HEAD, max - FV_WAL_REC_HEAD, &n);
        if (rc == FV_OK) {
            fv_put_u32(p, (uint32_t)n);
            fv_put_u32(p + 4, fv_crc32c(0, p + FV_WAL_REC_HEAD, n));
            w->pending.len += FV_WAL_REC_HEAD + n;
        }
    }
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
    int done = w->rotated_seq == marker && !w->rotate_req && fv_wal_durable_seq(w) >= marker;
    if (done) *last_file = w->rotated_file;
    pthread_mutex_unlock(&w->mu);
    return done;
}

uint64_t fv_wal_file_no(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    unsigned long long no;
    if (strlen(base) != 24 || sscanf(base, "wal-%16llx.log", &no) != 1) return 0;
    return no;
}

int fv_wal_remove_upto(struct fv_wal *w, uint64_t file_no, char *err, size_t errlen)
{
    uint64_t *files = NULL;
    size_t n = 0;
    int rc = list_files(w->dir, &files, &n, err, errlen);
    if (rc) return rc;
    pthread_mutex_lock(&w->mu);
    uint64_t cur = w->cur_file_no;
    pthread_mutex_unlock(&w->mu);
    int removed = 0;
    for (size_t i = 0; i < n && rc == FV_OK; i++) {
        if (files[i] > file_no || files[i] >= cur) break;
        char path[PATH_MAX];
        file_path(path, sizeof path, w->dir, files[i]);
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
