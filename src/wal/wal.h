/*
 * wal.h - the write-ahead log: every record is here, checksummed and fsync'd, before it is
 * acknowledged.
 *
 * Contract:
 *  - fv_wal_open replays every record on disk, in order, through the callback. A torn tail
 *    of the newest file (a batch a crash left half-written, never acknowledged) is cut
 *    cleanly; anything else invalid is corruption (FV_ECORRUPT, err naming the file and the
 *    byte offset): the rules are R1..R5 in wal.c. It then starts one writer thread. Files in
 *    format 1 are read; new records always go into format-2 files.
 *  - fv_wal_append (event-loop thread only) copies the record into the pending batch and
 *    returns its sequence number (1, 2, ...). It never blocks on disk.
 *  - The writer thread writes the whole pending batch, fdatasyncs it (group commit: all the
 *    records appended while the previous fsync ran share one fsync), publishes the batch's
 *    last sequence number as durable, and calls the notify callback (from the writer thread;
 *    the callback must only wake the event loop).
 *  - fv_wal_durable_seq: every record with seq <= the returned value is on disk.
 *  - A write or fsync error is permanent (fv_wal_failed != 0): nothing more becomes durable;
 *    the server must stop acknowledging and exit. Retrying fsync after a failure is unsafe.
 *  - Except a full disk (ENOSPC, EDQUOT from a write or a file creation): the writer cuts the
 *    unsynced bytes and retries the batch until it fits; meanwhile append returns FV_EAGAIN
 *    (invariant I7 in wal_writer.c).
 * Thread-safety: append/stats from one thread; durable_seq/failed from any thread.
 */
#ifndef FV_WAL_WAL_H
#define FV_WAL_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/latency.h"

struct fv_wal;

/* A record as the WAL stores it. Pointers are borrowed: during append until it returns,
 * during replay until the callback returns. */
struct fv_wal_record {
    uint8_t type;
    uint8_t flags;
    uint64_t received_ms;
    const char *device_id;
    uint8_t device_id_len;
    const char *client_type;
    uint8_t client_type_len;
    const char *topic;
    uint8_t topic_len;
    const unsigned char *txid;
    uint16_t txid_len;
    const unsigned char *payload;
    uint32_t payload_len;
};

/* Replay callback; a non-zero return stops replay and fv_wal_open fails with it. */
typedef int (*fv_wal_replay_fn)(void *arg, const struct fv_wal_record *rec, const char *file,
                                uint64_t offset);

struct fv_wal_opts {
    uint64_t segment_bytes;    /* rotate to a new file past this size (default 64 MiB) */
    int read_only;             /* replay only: no truncation, no writer (inspect) */
    void (*notify)(void *arg); /* called by the writer thread after each durable batch */
    void *notify_arg;
    /* Called by the writer thread before each batch is made durable; what it makes durable
     * (e.g. the data keys the batch's records are sealed with) then precedes the batch. A
     * non-zero return fails the WAL (err says why). NULL: none. */
    int (*before_sync)(void *arg, char *err, size_t errlen);
    void *before_sync_arg;
    /* Called by fv_wal_remove_upto (on its caller's thread) before it deletes any file:
     * what it makes durable (e.g. positions the deleted records held) then outlives them.
     * A non-zero return deletes nothing (fv_wal_remove_upto returns it). NULL: none. */
    int (*before_remove)(void *arg, char *err, size_t errlen);
    void *before_remove_arg;
    /* The writer thread's nice value (0: inherited). A value the process may not take is
     * reported once (fv_warn) and the thread runs on as it was. */
    int writer_nice;
};

struct fv_wal_stats {
    uint64_t appended_seq, durable_seq;
    uint64_t bytes_on_disk;
    uint64_t files;
    uint64_t fsyncs;
    uint64_t records_replayed;
    uint64_t torn_bytes_cut;
    /* fsync latency histogram: util/latency.h's buckets (fv_latency_bucket) */
    uint64_t fsync_hist[FV_LATENCY_BOUNDS + 1];
    double fsync_seconds_sum;
};

int fv_wal_open(const char *dir, const struct fv_wal_opts *opts, fv_wal_replay_fn replay, void *arg,
                struct fv_wal **out, char *err, size_t errlen);

/* Returns the new record's sequence number (> 0), or a negative error (FV_ELIMIT if the
 * record is too large, FV_EIO if the WAL has failed, FV_EAGAIN while the disk is full,
 * FV_ENOMEM). */
int64_t fv_wal_append(struct fv_wal *w, const struct fv_wal_record *rec);

uint64_t fv_wal_durable_seq(struct fv_wal *w);
/* The sequence number of the last record appended (durable or not). */
uint64_t fv_wal_appended_seq(struct fv_wal *w);
int fv_wal_failed(struct fv_wal *w);
void fv_wal_stats(struct fv_wal *w, struct fv_wal_stats *out);

/*
 * Rotation (rule I5 in wal_writer.c): asks the writer to start a new file after every record
 * appended so far; returns that last record's seq (the marker). Once the cut is made and
 * durable, fv_wal_rotation_done(marker) returns 1 with *last_file = the number of the last
 * file holding records <= marker (0: none). Event-loop thread; one rotation at a time.
 */
uint64_t fv_wal_rotate(struct fv_wal *w);
int fv_wal_rotation_done(struct fv_wal *w, uint64_t marker, uint64_t *last_file);
/* Deletes the WAL files numbered <= file_no (never the current one) and fsyncs the
 * directory: for records that are durable elsewhere. The before_remove option runs first
 * when there is a file to delete. */
int fv_wal_remove_upto(struct fv_wal *w, uint64_t file_no, char *err, size_t errlen);
/* The number in a WAL file's path ("DIR/wal-000000000000002a.log" -> 42); 0 if none. */
uint64_t fv_wal_file_no(const char *path);

/* Makes everything appended durable, stops the writer, closes files, frees w. */
void fv_wal_close(struct fv_wal *w);

/* Encodes rec's body (the format in wal_format.h) into out; FV_ELIMIT if too large.
 * Decodes a body; FV_ECORRUPT if its parts do not add up. Exposed for tests and fuzzing. */
int fv_wal_encode_body(const struct fv_wal_record *rec, unsigned char *out, size_t cap,
                       size_t *len);
int fv_wal_decode_body(const unsigned char *p, size_t n, struct fv_wal_record *rec);

/* Appends the associated data that binds a sealed payload to its record: the record's body
 * encoded with an empty payload - flags as in rec (FV_WAL_F_SEALED included), the u32
 * payload length 0, nothing after it - so moving a ciphertext to another record, subject,
 * topic, txid or time makes it fail to open. */
int fv_wal_record_aad(const struct fv_wal_record *rec, struct fv_buf *out);

/* Framing (record.c). fv_wal_frame appends one format-2 record to out: its header (length,
 * body CRC; durable offset and header CRC still 0) and body; FV_ELIMIT if too large,
 * FV_ENOMEM. fv_wal_finish_batch completes the headers of the framed records p[0..len) for
 * a file with the given salt, all written when the file was durable up to `durable`.
 * fv_wal_header_crc is the CRC of a record header's first 16 bytes under a salt. Used by
 * the writer, tests and the fuzzer. */
int fv_wal_frame(const struct fv_wal_record *rec, struct fv_buf *out);
void fv_wal_finish_batch(unsigned char *p, size_t len, uint32_t salt, uint64_t durable);
uint32_t fv_wal_header_crc(uint32_t salt, const unsigned char *hdr);

/* Scans one file image (header + records, format 1 or 2) without touching disk. Calls fn
 * per data record; returns in *valid_end where valid data ends (0: bad header). FV_OK if
 * the whole image is valid, FV_ECORRUPT (err naming name and offset) otherwise, with
 * *torn = 1 when the invalid part is a torn tail by rules R1, R2, R4, R5 of wal.c (whether
 * the file is the newest, R3, is the caller's to judge). A non-zero return of fn stops the
 * scan and is returned. Used by replay and the fuzzer. */
int fv_wal_scan(const unsigned char *img, size_t len, const char *name, fv_wal_replay_fn fn,
                void *arg, uint64_t *valid_end, int *torn, char *err, size_t errlen);

#endif
