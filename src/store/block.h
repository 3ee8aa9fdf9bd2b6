/*
 * block.h - one block of the store: the frames (V records) and events (other topics) of one
 * data subject and one signal class over a time range, encoded column by column.
 *
 * A frame's timestamp is stored once, not per signal. Each signal is a column: which frames
 * carry it, the kind of each value (run-length encoded: a signal rarely changes kind), then
 * the values of each kind with the codec that suits them (store/codec.h): doubles decimal-
 * scaled, integers, enums, booleans and door bits through the integer codec, strings through
 * a dictionary, locations as two double columns. Values that are not understood (a oneof
 * member this build lacks) keep their kind and member number. Unknown signal numbers are
 * columns like any other.
 *
 * Plaintext format (all varints LEB128; "col" = a codec column, store/codec.h):
 *
 *   u8      version = 1 or 2            2 only when some event is kept as connectivity
 *                                     fields (below); the sections before the events are
 *                                     the same in both
 *   varint  nrec                      frames
 *   col     i64 times[nrec]           ms since the Unix epoch, non-decreasing
 *   col     i64 groups[nrec]          per frame: the set of classes (bit per class) its
 *                                     record has in all; a record split over blocks of
 *                                     several classes is joined back on (time, group)
 *   varint  ncols
 *   per column, ascending field number:
 *     varint field
 *     varint nbytes                   length of the rest of this column (lets readers skip)
 *     varint npresent                 1..nrec
 *     col    i64 rows[npresent]       only if npresent < nrec: frame indexes, increasing
 *     col    i64 kinds[npresent]      kind | member << 8 (kind: enum fv_vkind's number,
 *                                     wire/payload.h; member: the protobuf Value oneof
 *                                     field number it arrived as)
 *     then, for each kind number present in ascending order, the values of that kind in
 *     row order - grouped by kind alone: int32 and int64 share the INT column; float,
 *     double and numeric strings the DOUBLE column; every enum the ENUM column:
 *       DOUBLE: col f64; INT, ENUM, BOOL, DOORS, TIRES: col i64; STRING: col str;
 *       LOCATION: col f64 lat, col f64 lon; TIME: col i64 h, m, s; others: nothing
 *   varint  nev                       events (alerts, errors, connectivity, other topics)
 *   col     i64 ev_times[nev]         the server's receive time (the WAL's received_ms),
 *                                     never the payload's created_at
 *   col     str ev_topics[nev]
 *   col     i64 ev_lens[nev], then the payloads back to back: the WAL record's payload,
 *                                     i.e. as normalised at ingest (vin set to the
 *                                     device's certificate id, re-encoded by protobuf-c
 *                                     when it was not: repeated fields packed), not
 *                                     necessarily the bytes the device sent
 *   Version 2's events section instead (written when at least one event is kept as fields):
 *   varint  nev                       >= 1
 *   col     i64 ev_times[nev]         as in version 1
 *   col     i64 ev_forms[nev]         0: kept as bytes, 1: a connectivity event kept as
 *                                     fields (its topic is "connectivity"); at least one 1
 *   col     str ev_topics[nbytes], col i64 ev_lens[nbytes], then those payloads back to back:
 *                                     as in version 1, over the nbytes events of form 0
 *   col     str vin[ncon], col str connection_id[ncon], col str network_interface[ncon]
 *                                     (none holds a NUL byte), col i64 status[ncon] (each an
 *                                     int32), col i64 dt[ncon]: over the ncon events of form 1,
 *                                     in order.
 *   Event i of form 1 has the payload fv_payload_build_connectivity (wire/payload.h) makes of
 *   its fields with created_at = ev_times[i] + dt (ms, mod 2^64, 0..2^52 * 1000 + 999). The
 *   writer keeps an event so only when that gives back its payload byte for byte (the
 *   server's own connectivity records: a connect and a disconnect take 56 bytes instead of
 *   118); readers see the same events either way.
 *
 * Group bits: bit c = the record had values in class number c of the server's store
 * configuration (store.h: 0 default, 1 location, 2 events, then configured ones) when it
 * was flushed; merges copy groups unchanged. Readers use a group only as a join key.
 * Frame times: the record's created_at in ms (receive time if it has none).
 *
 * The store compresses this with zstd and seals it per subject (store/part.h).
 * Decoding never reads outside its input and rejects anything inconsistent (FV_ECORRUPT);
 * the caller's message names the file and offset. Thread-safe: no shared state.
 */
#ifndef FV_STORE_BLOCK_H
#define FV_STORE_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "wire/payload.h"

#define FV_BLOCK_VERSION 2 /* the newest a reader accepts (1 and 2) */
/* What a reader accepts, hence what fv_block_encode ever writes (it refuses the rest). */
#define FV_BLOCK_MAX_REC  (1u << 16)  /* frames (and events) per block at most */
#define FV_BLOCK_MAX_COLS (1u << 16)  /* distinct signals per block at most */
#define FV_BLOCK_MAX_RAW  (64u << 20) /* plaintext bytes per block at most */

/* What to encode: frames sorted by time (stable), each with its datums; keep(field) says
 * which signals belong in this block (NULL = all). Frames without any kept datum are
 * skipped. Events likewise sorted by time. */
struct fv_block_frame {
    int64_t t;
    uint32_t n;
    const struct fv_datum *d;
    uint32_t group; /* which classes the whole record has (see "group" below); 0 = unknown */
};
struct fv_block_event {
    int64_t t;
    const char *topic;
    uint32_t topic_len;
    const unsigned char *payload;
    uint32_t len;
};
struct fv_block_in {
    size_t nframes;
    const struct fv_block_frame *frames;
    size_t nev;
    const struct fv_block_event *ev;
    int (*keep)(void *arg, uint32_t field);
    void *keep_arg;
};
/* Summary of what was encoded. */
struct fv_block_meta {
    uint32_t nrec, nev, ndatums;
    int64_t min_t, max_t;
};

/* Appends the plaintext encoding to out. FV_OK, FV_ENOMEM, FV_EINVAL (kept frames out of time
 * order), or FV_ELIMIT: the block would break a reader's limit (more than FV_BLOCK_MAX_REC
 * frames or events, more than FV_BLOCK_MAX_COLS kept signals, a plaintext over
 * FV_BLOCK_MAX_RAW bytes). On any error out is unchanged; on FV_ELIMIT the caller splits its
 * input (fewer frames; a single frame's signals over several blocks by signal number).
 * Invariant: whatever this returns FV_OK for, fv_block_decode accepts.
 * meta->nrec + meta->nev == 0 means nothing was kept (out unchanged). */
int fv_block_encode(const struct fv_block_in *in, struct fv_buf *out, struct fv_block_meta *meta);

/* A decoded column: the rows (frame indexes) that carry the signal and their values. */
struct fv_block_col {
    uint32_t field;
    size_t n;
    uint32_t *row;
    struct fv_value *v; /* strings owned */
};
struct fv_block {
    size_t nrec;
    int64_t *t;
    uint32_t *group;
    size_t ncols;
    struct fv_block_col *cols; /* ascending field */
    size_t nev;
    struct fv_block_event *ev; /* topic/payload point into the decoded input (keep it alive)
                                  or, in a version 2 block, into evmem */
    unsigned char *evmem;      /* version 2: the events' payloads, rebuilt (owned) */
};

/*
 * Decodes a plaintext block. fields/nfields: decode only these signals (others are skipped
 * cheaply); fields == NULL decodes all. want_events = 0 skips the events. out is always safe
 * to free. FV_ECORRUPT with a reason in err for a malformed block.
 */
int fv_block_decode(const unsigned char *p, size_t n, const uint32_t *fields, size_t nfields,
                    int want_events, struct fv_block *out, char *err, size_t errlen);
void fv_block_free(struct fv_block *b);
/* The column of field, or NULL. */
const struct fv_block_col *fv_block_col(const struct fv_block *b, uint32_t field);

#endif
