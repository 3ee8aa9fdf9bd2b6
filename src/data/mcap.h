/*
 * mcap.h - MCAP files (https://mcap.dev, format version 0): a writer and a reader.
 *
 * MCAP is the container of recorded clips: per sensor a channel (topic, message encoding,
 * metadata) with a schema, and timestamped messages. The writer puts messages into chunks
 * (zstd or uncompressed, with a CRC-32 of the uncompressed records), writes a message index
 * per channel after each chunk, and on close a summary (schemas, channels, chunk indexes,
 * statistics), the summary offsets and the footer. The reader opens a file through its footer
 * and summary, so one channel or one time window is read by reading and decompressing only
 * the chunks that hold it; a linear scan reads a file record by record (files without a
 * summary) and checks everything on the way. The layout, the checks (rules M1-M12) and the
 * limits are in mcap_format.h and docs/data-engine.md ("MCAP").
 *
 * Errors: FV_OK or a negative FV_E* code (util/err.h). A damaged file is FV_ECORRUPT with
 * "mcap: byte N: what" in err, N the offset in the file where the damage was found (for a
 * record inside a chunk: the chunk's offset, then "chunk byte M"); a file over a limit is
 * FV_ELIMIT; a failed read FV_EIO. Nothing is read outside [0, size) of the source.
 *
 * Threads: a writer or a reader belongs to one thread at a time (no internal locks); two
 * readers of the same file on two threads are independent. No globals.
 */
#ifndef FV_DATA_MCAP_H
#define FV_DATA_MCAP_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Limits (the writer refuses past them with FV_ELIMIT, the reader refuses files past them). */
#define FV_MCAP_MAX_RECORD    (256u << 20) /* a schema's data, a record outside chunks */
#define FV_MCAP_MAX_CHUNK     (256u << 20) /* a chunk's uncompressed records */
#define FV_MCAP_MAX_MESSAGE   (FV_MCAP_MAX_CHUNK - 31u) /* a message's data: its record fits */
#define FV_MCAP_MAX_SUMMARY   (256u << 20)              /* summary + summary offsets + footer */
#define FV_MCAP_MAX_IDS       65535u       /* schemas (ids 1..65535) and channels (ids 0..65535) */
#define FV_MCAP_DEFAULT_CHUNK (768u << 10) /* as the reference writer */

enum fv_mcap_compression { FV_MCAP_ZSTD = 0, FV_MCAP_NONE = 1 };

/* ---- writer -------------------------------------------------------------------------- */

struct fv_mcap_write_opts {
    size_t chunk_size;   /* uncompressed records per chunk before it is closed; 0: default */
    int compression;     /* enum fv_mcap_compression */
    int zstd_level;      /* 0: 3 */
    int no_summary;      /* write Data End and a footer only (as a recorder cut short would
                            leave after a recovery): readers must scan */
    const char *profile; /* Header.profile; NULL: "" */
    const char *library; /* Header.library; NULL: "fleetvault" */
};

struct fv_mcap_writer;

/* Starts a file on fd (written from its current position, which must be 0 for a valid
 * file; path only names it in errors; the caller keeps and closes fd and fsyncs it if it
 * must be durable). Writes go through src/os/fsio.h. opts may be NULL (defaults). */
int fv_mcap_writer_open_fd(int fd, const char *path, const struct fv_mcap_write_opts *opts,
                           struct fv_mcap_writer **out, char *err, size_t errlen);
/* Starts a file in memory, appended to *buf (caller-owned; it must outlive the writer). */
int fv_mcap_writer_open_mem(struct fv_buf *buf, const struct fv_mcap_write_opts *opts,
                            struct fv_mcap_writer **out, char *err, size_t errlen);
/* Adds a schema; *id gets its id (1, 2, ...). encoding e.g. "jsonschema", "protobuf", "" (no
 * schema: data must be empty). Strings are copied. FV_ELIMIT past 65535 schemas. */
int fv_mcap_add_schema(struct fv_mcap_writer *w, const char *name, const char *encoding,
                       const void *data, size_t len, uint16_t *id, char *err, size_t errlen);
/* Adds a channel (one per sensor) on topic with message_encoding, schema_id 0 (none) or an
 * added schema, and nmeta metadata pairs keys[i]=vals[i]; *id gets its id (1, 2, ...). */
int fv_mcap_add_channel(struct fv_mcap_writer *w, uint16_t schema_id, const char *topic,
                        const char *message_encoding, const char *const *keys,
                        const char *const *vals, size_t nmeta, uint16_t *id, char *err,
                        size_t errlen);
/* Adds a message on an added channel; data is copied. Times are nanoseconds. Messages may
 * come in any time order (chunks record their min and max), but readers return them in the
 * order written. */
int fv_mcap_add_message(struct fv_mcap_writer *w, uint16_t channel_id, uint32_t sequence,
                        uint64_t log_time, uint64_t publish_time, const void *data, size_t len,
                        char *err, size_t errlen);
/* Writes the last chunk, Data End, the summary, summary offsets and footer, and frees w
 * (also on error: the file is then incomplete, and readers refuse it). */
int fv_mcap_writer_close(struct fv_mcap_writer *w, char *err, size_t errlen);
/* Frees w without finishing the file (after an error). NULL is fine. */
void fv_mcap_writer_free(struct fv_mcap_writer *w);
/* Bytes written so far. */
uint64_t fv_mcap_writer_offset(const struct fv_mcap_writer *w);

/* ---- reader -------------------------------------------------------------------------- */

/* Where a reader's bytes come from: read exactly len bytes at off (never past size; the
 * reader checks that first) into buf, returning FV_OK or FV_EIO with err set. */
struct fv_mcap_source {
    uint64_t size;
    int (*read)(void *ctx, uint64_t off, void *buf, size_t len, char *err, size_t errlen);
    void *ctx;
};

/* A source over memory (data must outlive the reader) or over an open file (pread). */
void fv_mcap_source_mem(struct fv_mcap_source *src, const void *data, size_t len);
struct fv_mcap_file {
    int fd;
    const char *path;
};
int fv_mcap_source_file(struct fv_mcap_source *src, struct fv_mcap_file *f, char *err,
                        size_t errlen);

/* A length-counted string (MCAP strings may hold any bytes); p is NUL-terminated too. */
struct fv_mcap_str {
    const char *p;
    uint32_t len;
};

struct fv_mcap_schema {
    uint16_t id;
    struct fv_mcap_str name, encoding;
    const unsigned char *data;
    uint32_t len;
};

struct fv_mcap_channel {
    uint16_t id, schema_id;
    struct fv_mcap_str topic, message_encoding;
    size_t nmeta;
    const struct fv_mcap_str *keys, *vals;
};

struct fv_mcap_chunk_index {
    uint64_t start, end;            /* message log times */
    uint64_t offset, length;        /* of the Chunk record */
    uint64_t msg_index_length;      /* bytes of Message Index records after it */
    size_t nindex;                  /* channels with a Message Index record */
    const uint16_t *index_channels; /* their ids ... */
    const uint64_t *index_offsets;  /* ... and the records' offsets */
    struct fv_mcap_str compression; /* "zstd" or "" (others are refused when read) */
    uint64_t compressed_size, uncompressed_size;
};

struct fv_mcap_stats {
    uint64_t message_count;
    uint16_t schema_count;
    uint32_t channel_count, attachment_count, metadata_count, chunk_count;
    uint64_t start, end;
    size_t ncounts; /* per channel message counts */
    const uint16_t *count_channels;
    const uint64_t *counts;
};

struct fv_mcap_msg {
    uint16_t channel_id;
    uint32_t sequence;
    uint64_t log_time, publish_time;
    const unsigned char *data; /* valid only during the callback */
    size_t len;
};

/* Which messages to read: channels (NULL: all) and log times start <= t <= end. */
struct fv_mcap_filter {
    const uint16_t *channels;
    size_t nchannels;
    uint64_t start, end;
};

/* Returns 0 to go on, anything else to stop the read (which then returns that value). */
typedef int (*fv_mcap_msg_fn)(void *ctx, const struct fv_mcap_msg *m);

struct fv_mcap_reader;

/* Opens a file: both magics, the Header, the footer and, when present, the summary (its CRC,
 * every record in it and in the summary offsets, each chunk index inside the data section).
 * Reads only the head, the footer and the summary. src is copied (its ctx must outlive the
 * reader). On damage: FV_ECORRUPT naming the offset. */
int fv_mcap_reader_open(const struct fv_mcap_source *src, struct fv_mcap_reader **out, char *err,
                        size_t errlen);
void fv_mcap_reader_free(struct fv_mcap_reader *r);

/* The Header's strings; whether the file has a summary with chunk indexes (indexed reads). */
struct fv_mcap_str fv_mcap_profile(const struct fv_mcap_reader *r);
struct fv_mcap_str fv_mcap_library(const struct fv_mcap_reader *r);
int fv_mcap_indexed(const struct fv_mcap_reader *r);

/* Schemas, channels (in id order), chunk indexes (in file order) and statistics (NULL when
 * the file has none), from the summary, or from the data section after fv_mcap_scan. The
 * pointers stay valid until the reader is freed or scanned again. */
size_t fv_mcap_schema_count(const struct fv_mcap_reader *r);
const struct fv_mcap_schema *fv_mcap_schema_at(const struct fv_mcap_reader *r, size_t i);
size_t fv_mcap_channel_count(const struct fv_mcap_reader *r);
const struct fv_mcap_channel *fv_mcap_channel_at(const struct fv_mcap_reader *r, size_t i);
const struct fv_mcap_channel *fv_mcap_channel_by_id(const struct fv_mcap_reader *r, uint16_t id);
size_t fv_mcap_chunk_count(const struct fv_mcap_reader *r);
const struct fv_mcap_chunk_index *fv_mcap_chunk_at(const struct fv_mcap_reader *r, size_t i);
const struct fv_mcap_stats *fv_mcap_statistics(const struct fv_mcap_reader *r);

/* Reads the messages that pass f (NULL: all), through the chunk indexes: only the chunks whose
 * time range meets the window and whose message indexes name a wanted channel are read,
 * checked (the Chunk record against its index, the CRC) and decompressed. Messages come in
 * chunk order, each chunk's in the order written. A file without chunk indexes is scanned
 * (fv_mcap_scan); in a file with them, messages outside chunks have no index and are not
 * read (as in the reference readers; the scan reads them). Returns FV_OK, an error, or the
 * callback's non-zero value. */
int fv_mcap_read(struct fv_mcap_reader *r, const struct fv_mcap_filter *f, fv_mcap_msg_fn fn,
                 void *ctx, char *err, size_t errlen);

/* Reads the whole file from the first byte to the last and checks everything: every record's
 * opcode and length, schemas before their channels and channels before their messages (and
 * the same id always the same record), every chunk (CRC, sizes, times), every message index
 * entry pointing at a message of its channel and time, the Data End CRC of the data section,
 * the summary (as fv_mcap_reader_open) and, when the file has one, that its statistics and
 * chunk indexes match the data. Messages passing f go to fn (NULL: none) in file order.
 * Afterwards the reader lists the schemas and channels found in the data section. */
int fv_mcap_scan(struct fv_mcap_reader *r, const struct fv_mcap_filter *f, fv_mcap_msg_fn fn,
                 void *ctx, char *err, size_t errlen);

/* ---- copying ------------------------------------------------------------------------- */

/* Which channels a copy keeps: 1 keep, 0 leave out (with its messages). */
typedef int (*fv_mcap_keep_fn)(void *arg, const struct fv_mcap_channel *ch);

/* Copies every schema, channel (with its metadata) and message of the file r reads into w,
 * ids renumbered in the order they are defined, messages in file order - those outside chunks
 * too: r is scanned twice (fv_mcap_scan: first for the definitions, then the messages), so
 * the file is checked whole on the way. keep (NULL: all) chooses the channels; with it, only
 * the schemas of kept channels are copied. Attachments and metadata records are not copied:
 * fv_mcap_extras says afterwards how many the file had. *first and *last (NULL: not wanted)
 * get the copied messages' least and greatest log time (both 0 when none). FV_OK, or the
 * reader's or the writer's error. */
int fv_mcap_copy(struct fv_mcap_reader *r, struct fv_mcap_writer *w, fv_mcap_keep_fn keep,
                 void *keep_arg, uint64_t *first, uint64_t *last, char *err, size_t errlen);
/* Attachments and metadata records in the data section, as the last fv_mcap_scan (or
 * fv_mcap_copy) met them; 0 before any scan. */
uint64_t fv_mcap_extras(const struct fv_mcap_reader *r);

#endif
