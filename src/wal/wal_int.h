/*
 * wal_int.h - internal to src/wal; not a public contract (wal.h is). struct fv_wal, which
 * the WAL's two files share, and the few functions one calls in the other (fv_wal__*;
 * everything else stays static). Nothing outside src/wal includes this file.
 *
 * The WAL engine is two files:
 *   wal.c         scanning by the validity rules (V1-V5), replay and recovery at open
 *                 (R1-R5), file names, fv_wal_open;
 *   wal_writer.c  the writer thread and group commit (I1-I7): appends, batches and their
 *                 sync marks, new files and rotation, a full disk waited out, close,
 *                 removing files.
 * (record.c is the record codec and framing.)
 *
 * Threads: fv_wal_open fills struct fv_wal on the caller's thread before the writer thread
 * starts; from then on, the fields say who owns them (the writer thread alone, under mu,
 * or atomic).
 */
#ifndef FV_WAL_WAL_INT_H
#define FV_WAL_WAL_INT_H

#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

/* What the writer thread is waiting for (under mu): appends wake it only when it matters,
 * sparing a context switch per record. */
enum { WAIT_NONE, WAIT_IDLE, WAIT_DELAY };

struct fv_wal {
    char dir[PATH_MAX];
    struct fv_wal_opts opts;

    /* The current (newest) file: the writer thread's alone once it runs. */
    int fd;
    char cur_path[PATH_MAX];
    uint64_t cur_size;
    uint64_t synced_size;  /* bytes of the current file known fsync'd (I6) */
    uint32_t salt;         /* the current file's */
    int ends_with_mark;    /* its last record is a sync mark */
    uint64_t new_bytes;    /* written since the writer last updated st */
    uint64_t replayed_len; /* the final length of the newest file replayed */

    pthread_mutex_t mu;
    pthread_cond_t cv;     /* waits on CLOCK_MONOTONIC: a wall-clock step must not stall acks */
    struct fv_buf pending; /* framed records not yet handed to the writer */
    uint64_t pending_last_seq;
    uint64_t appended_seq;
    uint64_t cur_file_no; /* written under mu */
    int stop;
    int thread_started;
    pthread_t thread;

    uint64_t last_sync_end_ns; /* writer thread only */
    int waiting;               /* WAIT_*, under mu */
    uint64_t durable_seq;      /* atomic */
    int failed;                /* atomic */
    int full;                  /* atomic: the disk is full, records are refused (I7) */

    struct fv_wal_stats st; /* under mu */

    /* Rotation (I5), under mu: a request cuts the pending batch at rotate_at; the writer
     * publishes the marker seq and the last file holding records <= it once durable. */
    int rotate_req;
    int rotating; /* taken by the writer, (S, F) not published yet: not done (I5) */
    size_t rotate_at;
    uint64_t rotate_seq;
    uint64_t rotated_seq, rotated_file;
};

/* ---- wal.c ---------------------------------------------------------------------------- */

/* Fills a format-2 file header with salt and the previous file's final length. */
void fv_wal__make_header(unsigned char h[FV_WAL_HEADER_LEN], uint32_t salt, uint64_t prev_len);
/* A random salt for a new file, under which an all-zero record header does not check. */
uint32_t fv_wal__new_salt(void);
/* The wal-*.log file numbers in dir, ascending; *out is the caller's (free). */
int fv_wal__list_files(const char *dir, uint64_t **out, size_t *n, char *err, size_t errlen);
/* The path of file no in dir. */
void fv_wal__file_path(char *buf, size_t len, const char *dir, uint64_t no);

/* ---- wal_writer.c --------------------------------------------------------------------- */

/* Makes fd, whose header is durable, the current file (the writer's), closing the one
 * before; size bytes of it are known fsync'd. */
void fv_wal__use_file(struct fv_wal *w, int fd, const char *path, uint32_t salt, uint64_t size,
                      int ends_with_mark);
/* Creates file no with its header, durable before use (I4), after finishing the current
 * one; errno is kept for a caller waiting out a full disk (I7). */
int fv_wal__create_file(struct fv_wal *w, uint64_t no, char *err, size_t errlen);
/* The writer thread (pthread_create's start routine; arg is the struct fv_wal). */
void *fv_wal__writer_main(void *arg);

#endif
