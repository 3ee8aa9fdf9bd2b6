/*
 * mcap_int.h - what the MCAP writer and reader files share (not for other modules; the
 * interface is mcap.h): CRC-32, record building, the reader's struct and its bounded parsing
 * cursor. Threads: as mcap.h.
 */
#ifndef FV_DATA_MCAP_INT_H
#define FV_DATA_MCAP_INT_H

#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

#include "data/mcap.h"
#include "util/buf.h"

/* CRC-32 (zlib's, the one MCAP uses), extended over len bytes; 0 to start. */
uint32_t fv_mcap_crc32(uint32_t crc, const void *p, size_t len);

/* Record building into a fv_buf: FV_OK or FV_ENOMEM (FV_ELIMIT for a field over 4 GiB). */
int fv_mcap_put_u8(struct fv_buf *b, unsigned v);
int fv_mcap_put_u16(struct fv_buf *b, uint16_t v);
int fv_mcap_put_u32(struct fv_buf *b, uint32_t v);
int fv_mcap_put_u64(struct fv_buf *b, uint64_t v);
int fv_mcap_put_bytes32(struct fv_buf *b, const void *p, size_t len);
int fv_mcap_put_str(struct fv_buf *b, const char *s);
int fv_mcap_rec_begin(struct fv_buf *b, unsigned op, size_t *at);
void fv_mcap_rec_end(struct fv_buf *b, size_t at);

/* ---- reading --------------------------------------------------------------------------- */

/* A bounded view of bytes read from the file: p[0] is file byte base, or, inside a chunk,
 * uncompressed chunk byte base of the chunk at file byte chunk (else chunk = UINT64_MAX).
 * Every get checks the bounds first; a failed one sets err once and makes later ones fail. */
struct fv_mcap_cur {
    const unsigned char *p;
    size_t len, pos;
    uint64_t base, chunk;
    int bad;
    char *err;
    size_t errlen;
};

/* Sets err to "mcap: byte N: ..." for position pos of c (chunk form inside a chunk) and
 * returns FV_ECORRUPT. */
int fv_mcap_corrupt(struct fv_mcap_cur *c, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint8_t fv_mcap_get_u8(struct fv_mcap_cur *c, const char *what);
uint16_t fv_mcap_get_u16(struct fv_mcap_cur *c, const char *what);
uint32_t fv_mcap_get_u32(struct fv_mcap_cur *c, const char *what);
uint64_t fv_mcap_get_u64(struct fv_mcap_cur *c, const char *what);
/* A u32-length-prefixed string or byte array; returns a pointer into c (NULL if bad). */
const unsigned char *fv_mcap_get_bytes32(struct fv_mcap_cur *c, uint32_t *len, const char *what);
/* The next record header at c: opcode, a sub-cursor on its content (which must fit in what
 * is left of c: M3), and its start position in c. Returns FV_OK or FV_ECORRUPT. */
int fv_mcap_next_record(struct fv_mcap_cur *c, unsigned *op, struct fv_mcap_cur *body, size_t *at);

struct fv_mcap_rschema {
    struct fv_mcap_schema s;
    unsigned char *raw; /* the record's content (the identity of the id, M7) */
    size_t rawlen;
};
struct fv_mcap_rchannel {
    struct fv_mcap_channel c;
    struct fv_mcap_str *kv; /* keys, then values */
    unsigned char *raw;
    size_t rawlen;
};

struct fv_mcap_reader {
    struct fv_mcap_source src;
    char *err;
    size_t errlen;
    struct fv_mcap_str profile, library;
    unsigned char *header; /* the Header's content */
    uint64_t header_end, footer_off, summary_start, summary_offset_start, data_end;

    struct fv_mcap_rschema **schemas; /* in id order after a parse */
    size_t nschemas, capschemas;
    struct fv_mcap_rchannel **channels;
    size_t nchannels, capchannels;
    uint32_t *schema_slot, *channel_slot; /* id -> index + 1 (0: none), 65536 each */
    struct fv_mcap_chunk_index *chunks;
    size_t nchunks, capchunks;
    struct fv_mcap_stats stats;
    int has_stats;
    uint16_t *stats_ids;
    uint64_t *stats_counts;
    uint64_t scan_extras; /* attachments and metadata records the last scan met */

    unsigned char *chunkbuf, *rawbuf; /* a chunk record as read, its records decompressed */
    size_t chunkcap, rawcap;
    ZSTD_DCtx *dctx;
};

/* Adds a schema/channel parsed from body (M7: schema id not 0, channel's schema known, same
 * id = same bytes: a repeat is not added again). */
int fv_mcap_def_schema(struct fv_mcap_reader *r, struct fv_mcap_cur *body);
int fv_mcap_def_channel(struct fv_mcap_reader *r, struct fv_mcap_cur *body);
/* Sorts schemas and channels by id (the listing order). */
int fv_mcap_sort_defs(struct fv_mcap_reader *r);
void fv_mcap_free_defs(struct fv_mcap_reader *r);
/* Reads len bytes at off of the file (checked against its size) into buf. */
int fv_mcap_src_read(struct fv_mcap_reader *r, uint64_t off, void *buf, size_t len);

/* Reads the Chunk record at off (length len, index ci or NULL to compare it with), checks it
 * (M9) and decompresses its records into r->rawbuf; *raw_len, *start, *end get its
 * uncompressed size and times. */
int fv_mcap_load_chunk(struct fv_mcap_reader *r, uint64_t off, uint64_t len,
                       const struct fv_mcap_chunk_index *ci, size_t *raw_len, uint64_t *start,
                       uint64_t *end);
/* Parses a Message record's body; FV_OK or FV_ECORRUPT. */
int fv_mcap_parse_message(struct fv_mcap_cur *body, struct fv_mcap_msg *m);
/* Whether m passes f (NULL passes everything). */
int fv_mcap_filter_pass(const struct fv_mcap_filter *f, uint16_t channel, uint64_t t);

#endif
