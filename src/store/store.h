/*
 * store.h - the time-series store: an in-memory head fed by the ingest path, immutable part
 * files (store/part.h) written by a background worker, compaction, retention, and queries.
 *
 * Life of a record: the gateway appends it to the WAL (durable before its ack), then hands
 * the decoded record to fv_store_add_frame (or fv_store_add_event for other topics). The
 * head holds it in memory, per subject, until a flush: the event loop freezes the head, asks
 * the WAL to rotate (wal.h rule I5), and once the cut is durable the worker encodes the
 * frozen head into one level-0 part (sealed per subject) and commits it (fsync + rename +
 * fsync dir). Only then does the WAL's watermark advance; WAL files at or below it are
 * deleted once older than wal_keep_ms (they serve de-duplication of late resends after a
 * restart, nothing else).
 *
 * Invariants:
 *  T1 every acked record is in the WAL or in a committed part (or both); a WAL file is
 *     deleted only when a committed part's wal_file_hi covers it;
 *  T2 a part covers a contiguous range of generations; compaction merges only adjacent
 *     parts, and a part whose range lies inside another's is obsolete (its merge was
 *     committed) and is deleted on open;
 *  T3 readers see each record once: a frozen head is released in the same event-loop step
 *     that installs the part written from it;
 *  T4 blocks are sealed with their subject's data key; a subject whose key is gone
 *     (destroyed) is dropped by the next compaction of each part that holds it. So are a
 *     part's last values of the subject (lastvals.h: sealed the same way in parts of
 *     formats 3 to 6, in memory only since format 7; what memory holds of them is dropped at
 *     once by fv_store_forget and fv_store_purge, also from a part being written meanwhile,
 *     and never computed again without the subject's key).
 *  T5 a record in the WAL but not in the head (adding it failed: fv_store_hold_wal) is
 *     replayed at the next start, exactly once: from the hold on, no WAL file is deleted,
 *     and flushes write provisional parts (part.h, FV_PART_F_PROVISIONAL) that claim no WAL
 *     file (the watermark stays where it was) and are never merged. The next read-write
 *     open deletes the provisional parts and the server replays every WAL file above the
 *     watermark: the lost record comes back, and so do, once, the records that were in the
 *     provisional parts (no part other than a provisional one holds a record of a WAL file
 *     above the watermark, so nothing appears twice).
 *  T6 retention drops a block only when both its newest record time (the device's clock)
 *     and its newest receive time (the server's, rx_max in part.h) are older than the
 *     class's retention: a device whose clock says 1970 does not lose what it sends today.
 *     Queries select and order by the device's time.
 *  T7 a part renamed into place is never written again under other generations: a flush
 *     retried after a failure keeps its generation, a merge that failed after its rename is
 *     redone with the same inputs (the rename replaces the file, T2 still holds).
 *  T8 an input block a merge cannot read (checksum, authentication, decompression, format)
 *     is copied into the output as it is, with its CRC, and reported
 *     (fv_store_failures); it never stops compaction or retention of anything else. A job
 *     that fails otherwise (I/O) is retried after 10 s, doubling up to about 10 minutes; a
 *     requested full compaction is given up (and reported) after 3 failures in a row.
 *
 * Threads: the head's input (fv_store_add_*, fv_store_hold_wal) and maintenance
 * (fv_store_tick, fv_store_drain) are called from one thread, the event loop; queries
 * (fv_store_query, fv_store_last), stats,
 * parts, failures, purge, forget and fv_store_compact_all from any thread (the server's API
 * thread): the store locks its state inside each call, for short copies only (a query's
 * blocks are read and decrypted outside the lock). The worker owns only the job it was
 * handed (a frozen head or referenced input parts, plus copies of the keys it needs) and
 * never touches the keystore or the live part list. fv_store_subjects is for start-up.
 */
#ifndef FV_STORE_STORE_H
#define FV_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "store/block.h"
#include "store/part.h"
#include "wire/payload.h"

struct fv_wal;

#define FV_STORE_MAX_CLASSES 16
#define FV_STORE_FIELD_TABLE 1024 /* fields >= this are in the default class */

struct fv_store_config {
    char dir[512];              /* DATA/store */
    uint64_t flush_interval_ms; /* freeze the head at this age (default 60 s) */
    uint64_t flush_datums;      /* or at this many datums (default 2,000,000) */
    /* The head's budget (live + frozen head, in datums; 0: 4 x flush_datums). Not enforced
     * by the store: over it, the server stops reading from devices (backpressure). */
    uint64_t head_max_datums;
    uint64_t wal_keep_ms;             /* keep covered WAL files this long (default 10 min) */
    uint32_t compact_fanin;           /* merge this many adjacent parts of a level (4) */
    uint32_t block_frames;            /* frames per block at most (8192) */
    int zlevel_flush, zlevel_compact; /* zstd levels of blocks (3, 19) */
    uint64_t cache_bytes;             /* decrypted blocks kept for queries (64 MiB) */
    /* Signal classes: 0 is "default" (every signal not listed elsewhere), and one class
     * holds the events (other topics). retention_ms 0 = keep forever. */
    uint32_t nclasses;
    char class_name[FV_STORE_MAX_CLASSES][FV_CLASS_NAME_MAX + 1];
    uint64_t retention_ms[FV_STORE_MAX_CLASSES];
    uint8_t class_of[FV_STORE_FIELD_TABLE];
    uint8_t events_class;
    /* Tests only (NULL otherwise): called at named points; a non-zero return makes that step
     * fail with that code. Points: "add" (fv_store_add_*, event loop), "flush.renamed" and
     * "merge.renamed" (worker thread: the part was renamed into place, then the job fails). */
    int (*fail_at)(void *arg, const char *point);
    void *fail_arg;
    /* Tests only (0 otherwise): the part format flushes and merges write; 6 writes the
     * subjects' last values into the parts as records (as before format 7), 0 the current
     * format (7: they are kept in memory only). */
    uint32_t part_version;
};

/* Defaults: classes default (730 days), location (every signal that reveals a place,
 * wire/places.h: Location, GpsHeading, OriginLocation, DestinationLocation, RouteLine,
 * DestinationName, ...; 30 days), events (730 days). */
void fv_store_config_defaults(struct fv_store_config *c, const char *data_dir);
/* Class id by name, or -1. */
int fv_store_class_id(const struct fv_store_config *c, const char *name);

/* Supplies the data key of a subject (pseudonym in hex) for compaction: FV_OK with key set,
 * FV_ESTATE if destroyed (its blocks are purged), another code to postpone. */
typedef int (*fv_store_key_fn)(void *arg, const char *pseudo, unsigned char key[32]);

struct fv_store;

/* Opens the store directory (creating it), deletes unfinished (*.tmp) and obsolete (T2)
 * parts, opens the others. read_only: delete nothing, start no worker (inspect, query CLI). */
int fv_store_open(const struct fv_store_config *cfg, int read_only, struct fv_store **out,
                  char *err, size_t errlen);
void fv_store_close(struct fv_store *s);
/* fn(arg) is called from the worker thread when a job ends (it must only wake the loop). */
void fv_store_set_wake(struct fv_store *s, void (*fn)(void *), void *arg);

/* fn(arg, pseudo) 0: queries of that subject find nothing (fv_store_query's cursor is empty,
 * fv_store_last finds no sample) - a storage node's subjects of shards it does not hold
 * (cluster/jslease.h). Called from the querying thread; set before any query. */
void fv_store_set_visible(struct fv_store *s, int (*fn)(void *arg, const char *pseudo), void *arg);

/* WAL files numbered <= this are wholly in committed parts (0: none). */
uint64_t fv_store_wal_hi(const struct fv_store *s);

/* Adds one record to the head (copies what it needs). pseudo: the subject's pseudonym (32
 * hex digits); dek: its data key; t: the record's time (the device's created_at, which
 * queries use); rx_ms: when the server received it (its own clock; 0 = now), which retention
 * also needs (T6). */
int fv_store_add_frame(struct fv_store *s, const char *pseudo, const unsigned char dek[32],
                       int64_t t, uint64_t rx_ms, const struct fv_vrecord *v);
int fv_store_add_event(struct fv_store *s, const char *pseudo, const unsigned char dek[32],
                       int64_t t, uint64_t rx_ms, const char *topic, size_t topic_len,
                       const unsigned char *payload, size_t len);
/* A record reached the WAL but not the head (fv_store_add_* failed): until the store is
 * reopened, no WAL file is deleted and flushes write provisional parts that do not move the
 * watermark (T5), so the restart's replay brings the record into the store, once. */
void fv_store_hold_wal(struct fv_store *s);
/* Erasure: forgets the subject's head records and cached blocks now, and rewrites every
 * part holding its blocks in the background (call after destroying its key: the rewrite
 * drops what no key opens, T4). Progress: a part at a time. */
int fv_store_purge(struct fv_store *s, const char *pseudo);
/* Drops a subject's records from the head (its key is being destroyed). */
void fv_store_forget(struct fv_store *s, const char *pseudo);

/*
 * Maintenance, called by the event loop often (every loop turn and at least once a second):
 * installs finished jobs, starts a flush when the head is due, then compaction and retention.
 * wal may be NULL (no WAL: tests). Returns FV_OK, or the error of a job that failed (logged;
 * the job is retried later and nothing is lost, since the WAL still holds the records).
 */
int fv_store_tick(struct fv_store *s, struct fv_wal *wal, fv_store_key_fn keys, void *karg,
                  uint64_t now_ms);
/* Asks for a flush of the head and a full compaction (all parts into one, retention
 * applied). Progress: fv_store_stats().compacting stays 1 until it is done. */
void fv_store_compact_all(struct fv_store *s);
/* Blocks until the worker is idle (tests, shutdown); runs tick in between. */
int fv_store_drain(struct fv_store *s, struct fv_wal *wal, fv_store_key_fn keys, void *karg);

/* An input block a merge could not read (T8), or a merge that failed. */
#define FV_STORE_MAX_FAILURES 16
struct fv_store_failure {
    char part[96];   /* the part file's name */
    char error[320]; /* what failed, with the file and offset */
    uint64_t at_ms;
};

struct fv_store_stats {
    uint64_t parts, blocks, bytes, datums, records;
    uint64_t head_datums, head_records, head_subjects;
    uint64_t flushes, compactions, retention_runs, blocks_expired, blocks_purged;
    uint64_t wal_hi;
    uint64_t generation;
    int compacting;       /* a requested full compaction is not finished */
    double last_flush_ms; /* worker time of the last flush */
    uint64_t job_errors;
    uint64_t compaction_failures; /* unreadable input blocks met by merges (T8), ever */
    int wal_held;                 /* fv_store_hold_wal was called (T5) */
    uint64_t cache_hits, cache_misses, cache_bytes;
    /* fv_store_last: answered from the last values in memory, from one column of the blocks
     * that hold the instant (binary search by time), or by decoding as a query does */
    uint64_t last_indexed, last_scanned, last_decoded;
};
void fv_store_stats(const struct fv_store *s, struct fv_store_stats *out);
/* Copies the newest failures (at most FV_STORE_MAX_FAILURES, oldest first) into out; returns
 * how many. */
size_t fv_store_failures(const struct fv_store *s,
                         struct fv_store_failure out[FV_STORE_MAX_FAILURES]);
/* The live parts now, oldest first, each referenced: *out is a malloc'd array of *n parts,
 * released with fv_store_parts_free. FV_OK or FV_ENOMEM. */
int fv_store_parts(const struct fv_store *s, struct fv_part ***out, size_t *n);
void fv_store_parts_free(struct fv_part **parts, size_t n);

/* ---- queries ------------------------------------------------------------------------------ */

/* One chunk of a query's rows, in time order. col[j][i] is the value of field[j] in row i
 * (kind FV_VK_NONE when the frame has none). Valid until the next fv_store_next. */
struct fv_store_chunk {
    size_t n;
    const int64_t *t;
    size_t ncols;
    const uint32_t *field;
    struct fv_value *const *col;
    size_t nev; /* events in the chunk's time span */
    const struct fv_block_event *ev;
};

struct fv_store_cursor;
/*
 * Frames of one subject with from <= t <= to, oldest first, in chunks (a large range never
 * sits in memory whole). fields/nfields: only these signals (frames that carry none of them
 * are skipped); fields NULL: all. want_events: include events. The cursor reads a snapshot:
 * flushes and compactions after this call do not affect it.
 */
int fv_store_query(struct fv_store *s, const char *pseudo, const unsigned char dek[32],
                   int64_t from, int64_t to, const uint32_t *fields, size_t nfields,
                   int want_events, struct fv_store_cursor **out, char *err, size_t errlen);
/* 1: *out holds the next chunk; 0: no more; negative: error (err says which file/offset). */
int fv_store_next(struct fv_store_cursor *c, struct fv_store_chunk *out, char *err, size_t errlen);
void fv_store_cursor_free(struct fv_store_cursor *c);

/*
 * The last sample of one signal of one subject with from <= t <= to (the fleet view): what
 * the newest row carrying the signal in fv_store_query(pseudo, dek, from, to, &field, 1, 0)
 * would show, exactly. It is answered from memory when it can be: from the heads, and from
 * each part's last values of the subject (lastvals.h; decrypted with dek on first use and
 * kept decoded with the part). A part that cannot say so (to falls between the signal's
 * first and last time there, or it has no last values of the subject) is asked through its
 * blocks of the subject that hold frames in range: the signal's column alone decoded, the
 * sample found by binary search in the time column (the column is kept decoded with the
 * block in the block cache, for the key that opened it). It decodes like fv_store_query when
 * several samples share the newest time (lastvals.h, "Ambiguity") or a block does not read,
 * and always with FV_STORE_LAST_DECODE. *found 0: no such sample (or the blocks that hold it do
 * not read, as with a cursor that stops at an error). *v is owned by the caller
 * (fv_value_clear). Returns FV_OK, FV_EINVAL (bad pseudonym) or FV_ENOMEM.
 */
#define FV_STORE_LAST_DECODE 1
int fv_store_last(struct fv_store *s, const char *pseudo, const unsigned char dek[32],
                  uint32_t field, int64_t from, int64_t to, int flags, int *found, int64_t *t,
                  struct fv_value *v);

/* What the parts know of one subject without decrypting anything. */
struct fv_store_subject {
    char pseudo[33];
    uint64_t records, datums, blocks;
    int64_t min_t, max_t;
    int64_t max_frame_t; /* newest V frame (events excluded); INT64_MIN if none */
};
/* Calls fn for every subject found in the parts (not the head), in pseudonym order. */
int fv_store_subjects(const struct fv_store *s,
                      int (*fn)(void *arg, const struct fv_store_subject *), void *arg);

/* Hex pseudonym <-> the 16 bytes stored in part indexes. */
int fv_subject_from_hex(const char *pseudo, unsigned char out[FV_SUBJECT_LEN]);
void fv_subject_to_hex(const unsigned char s[FV_SUBJECT_LEN], char out[33]);

#endif
