/*
 * part.h - part files: the store's immutable, checksummed files of sealed blocks.
 *
 * A part holds blocks of many subjects, each block one subject's frames of one signal class
 * over a time range, compressed with zstd and sealed with that subject's data key. The
 * index (subject pseudonym, class, times, counts, offset, length, CRC) is plaintext, like
 * the WAL's record headers: it names subjects only by pseudonym. Parts are written once
 * (temp file, fsync, rename, fsync directory) and never modified; compaction writes a new
 * part that covers its inputs' generations and then deletes them.
 *
 * File "part-LLLLLLLLLLLLLLLL-HHHHHHHHHHHHHHHH.fvp" (generations lo..hi, 16 hex digits):
 *
 *   header, 36 bytes: magic "FVPART\r\n" | u32 version 7 | u32 level | u64 gen_lo |
 *                     u64 gen_hi | u32 CRC-32C of bytes 0..31
 *   blocks, back to back: nonce(12) || AES-256-GCM(DEK, zstd(block plaintext), aad) || tag,
 *     in versions 6 and 7 without the nonce (ciphertext || tag): it is fv_part_nonce(the index's
 *     nonce base, the offset), unless the entry's nonce_in says the bytes begin with it (a
 *     block a merge carried over unopened);
 *   among them (versions 3 to 6; version 7 stores none), at most one last-values record per
 *   subject:
 *       nonce(12) || AES-256-GCM(DEK, zstd(last-values plaintext: store/lastvals.h), aad)
 *       || tag (the zstd frame states its content size, at most 64 MiB); version 4 keeps
 *       the plaintext itself instead when zstd does not make it smaller (a reader tells by
 *       the first byte: 0x28 begins a zstd frame, a plaintext begins with its version 1 or 2)
 *     with aad "fvlast1" (7 bytes) || subject[16] || u64 gen_lo || u64 gen_hi: a record
 *     moved to another subject or part fails to open. It sums up the subject's frames in
 *     this part (each signal's last time and value) for the fleet view.
 *   index, zstd-compressed; plaintext (versions 6 and 7: the same fields column by column,
 *   after the nonce base; exact layout in docs/formats.md "Version 6 index", code in
 *   part_index.c; version 7's count of last-values entries is always 0); versions 1 to 5:
 *       varint nclasses, then per class: varint len, name bytes
 *       varint flags (FV_PART_F_*)
 *       varint nblocks, then per block (sorted by subject, class, min_t), 77 bytes:
 *         subject[16] | u8 class | u32 nrec | u32 nev | u32 ndatums | u32 raw_len |
 *         u32 len | u32 crc32c(sealed bytes) | i64 min_t | i64 max_t | u64 offset |
 *         u32 nfirst | i64 rx_max
 *       nfirst counts the records this block stands for: a record's signals may be split
 *       over blocks of several classes, and it is counted in its first class's block only
 *       (events count once each), so a subject's record count is the sum of nfirst.
 *       rx_max: the latest time (server clock) any of its records was received; retention
 *       drops a block only when both max_t and rx_max are past (store.h, T6).
 *       (version 3, 4) varint nlast, then per last-values record (sorted by subject, each
 *       subject once), 32 bytes: subject[16] | u64 offset | u32 len | u32 crc32c(sealed)
 *       A subject with frames but no record (a version 1 or 2 part, or a merge that could
 *       not sum it up) is read by decoding its blocks.
 *   Version 7 (written): version 6 without last-values records. A reader lists every subject
 *   of the part in last (off and len 0): the slots of the values the store keeps in memory
 *   (lvc) instead, handed over by the job that wrote the part or computed from its blocks
 *   (store_last.c). fv_part_read_last refuses such an entry (FV_ENOENT).
 *   Version 6 (still read): last-values records sealed in the blocks area.
 *   Version 5 (still read): fixed-size index entries, nonces in front, last values of
 *   plaintext version 2.
 *   Version 4 (still read): no LINKED double columns (codec.h).
 *   Version 3 (still read): records always zstd-compressed (and of plaintext version 1).
 *   Version 2 (still read): no last-values records, the index ends after the blocks.
 *   Version 1 (still read): no flags varint, 69-byte entries without rx_max (taken to be
 *   the footer's created_ms: every record of a part was received before it was written).
 *   footer, 68 bytes: u64 index_off | u32 index_len | u32 index_raw_len | u32 index_crc |
 *                     u32 nblocks | u64 wal_file_hi | u64 created_ms | u64 datums |
 *                     u64 records | magic "FVPEND\r\n" | u32 CRC-32C of bytes 0..63
 *
 * The sealed block's associated data (fv_part_block_aad) is "fvblk1" (6 bytes) ||
 * subject[16] || u8 len || class name (len bytes, no NUL) || u32 nrec || u32 nev ||
 * u32 ndatums || u32 raw_len || i64 min_t || i64 max_t (little-endian, as in the block's
 * index entry): a block moved to another subject, class or time, or any altered byte, fails
 * to open. wal_file_hi: every record of WAL files numbered <= it is in this part or an older
 * one (the store's watermark).
 *
 * Level: 0 for a flush; a merge of compact_fanin level-L parts writes L + 1; a full
 * compaction merges parts of any levels into max + 1; retention and erasure rewrites keep
 * the level. The class list names classes in the order the part's blocks first used them
 * (not the store configuration's numbering, which block groups use: block.h).
 *
 * Validity rules (fv_part_parse): header exact; footer magic and CRC; index inside the file
 * and its CRC; every block inside the blocks area, in file order without overlap, class
 * known, min_t <= max_t, raw_len <= 64 MiB; index sorted; last-values records inside the
 * blocks area, overlapping nothing, sorted by subject without repeats (version 7: none). A block's
 * CRC is checked when it is read (fv_part_read_block). Every failure names the file and offset.
 */
#ifndef FV_STORE_PART_H
#define FV_STORE_PART_H

#include <stddef.h>
#include <stdint.h>

#include "store/block.h" /* FV_BLOCK_MAX_RAW */
#include "util/buf.h"

#define FV_PART_HEADER_LEN   36
#define FV_PART_FOOTER_LEN   68
#define FV_PART_ENTRY_LEN    77 /* version 2; version 1 entries are 69 bytes */
#define FV_PART_ENTRY_LEN_V1 69
#define FV_SUBJECT_LEN       16 /* binary pseudonym */
#define FV_CLASS_NAME_MAX    31
#define FV_PART_MAX_CLASSES  32
#define FV_PART_LAST_LEN     32                        /* a last-values index entry */
#define FV_PART_LAST_AAD     (7 + FV_SUBJECT_LEN + 16) /* its sealed record's aad */

struct fv_lastvals_mem;
typedef struct ZSTD_DCtx_s ZSTD_DCtx; /* zstd.h */

struct fv_part_entry {
    unsigned char subject[FV_SUBJECT_LEN];
    uint8_t cls;
    uint32_t nrec, nev, ndatums, raw_len, len, crc, nfirst;
    int64_t min_t, max_t;
    uint64_t off;
    int64_t rx_max;   /* latest receive time (server clock, ms) of the block's records */
    uint8_t nonce_in; /* 1: the sealed bytes begin with their nonce (versions 1 to 5, and a
                         block copied into a version 6 part); 0: the nonce is the part's
                         (fv_part_nonce) and the bytes are ciphertext || tag */
};

/* Where one subject's sealed last-values record is (versions 3 to 6); in version 7 only the
 * subject (off, len, crc 0): the slot of its values in lvc. */
struct fv_part_last {
    unsigned char subject[FV_SUBJECT_LEN];
    uint64_t off;
    uint32_t len, crc;
    uint8_t nonce_in; /* as in fv_part_entry (never set in version 6) */
};

/* Part flags (index, version 2). PROVISIONAL: written while the WAL is held (store.h T5):
 * its records are all in WAL files above the watermark, which a restart replays, so the
 * next read-write open deletes it instead of loading it. */
#define FV_PART_F_PROVISIONAL 1u

struct fv_part {
    int refs;    /* atomic */
    uint64_t id; /* unique per process (the store's block cache keys on it) */
    char path[512];
    int fd;
    uint64_t size;
    uint32_t version, level;
    uint64_t gen_lo, gen_hi, wal_file_hi, created_ms, datums, records;
    uint64_t flags;               /* FV_PART_F_* */
    unsigned char nonce_base[12]; /* version 6: random, the part's nonces derive from it */
    int unlink_on_free; /* compaction replaced it: delete the file with the last reference */
    uint32_t nclasses;
    char classes[FV_PART_MAX_CLASSES][FV_CLASS_NAME_MAX + 1];
    size_t n;
    struct fv_part_entry *e;
    size_t nlast;
    struct fv_part_last *last; /* sorted by subject */
    /* Last values per entry of last, kept by the store (store_last.c, store_worker.c) under
     * its cache_mu with the key that opened each in lvdek: decoded records (versions 3 to
     * 6) on first use, or (version 7) handed over by the job that wrote the part or computed
     * from its blocks. part.c only frees them with the part. NULL until then. */
    struct fv_lastvals_mem **lvc;
    unsigned char (*lvdek)[32];
    /* The store's background computation of a version 7 part's values (store_sched.c, on
     * its event loop): subjects [0, lvwarm) of last were handed to it; 0 when opened, nlast
     * for a part the store wrote (it came with its values). */
    size_t lvwarm;
};

/* Parses a part image in memory (the index only; blocks are not read). name is used in
 * error messages. On success *out has fd -1 and refs 1. */
int fv_part_parse(const unsigned char *img, size_t len, const char *name, struct fv_part **out,
                  char *err, size_t errlen);
/* Opens and validates a part file; keeps its descriptor open for reads. */
int fv_part_open(const char *path, struct fv_part **out, char *err, size_t errlen);
void fv_part_ref(struct fv_part *p);
/* Drops a reference; the last one closes (and, if unlink_on_free, deletes) the file. */
void fv_part_unref(struct fv_part *p);
/* Index of the first entry of subject (and class, or any class if cls < 0), or p->n. */
size_t fv_part_find(const struct fv_part *p, const unsigned char subject[FV_SUBJECT_LEN]);

/* The nonce of what a version 6 part holds at offset off: nonce_base with its last 8 bytes
 * XOR off (little-endian). Distinct offsets give distinct nonces within a part; each part
 * draws its base at random, so across parts they repeat no more than random nonces would. */
void fv_part_nonce(const unsigned char base[12], uint64_t off, unsigned char nonce[12]);
/* Reads the sealed bytes of entry i into out as fv_seal makes them (nonce || ciphertext ||
 * tag: a derived nonce is put in front), checking the CRC of the stored bytes (FV_ECORRUPT
 * naming the file and offset; out then holds the bytes read all the same). */
int fv_part_read_block(const struct fv_part *p, size_t i, struct fv_buf *out, char *err,
                       size_t errlen);
/* The associated data that binds a sealed block to its index entry. */
int fv_part_block_aad(const struct fv_part_entry *e, const char *class_name, struct fv_buf *out);
/* Opens entry i: reads, checks, decrypts with dek and decompresses into raw (exactly
 * raw_len bytes). FV_ECORRUPT names the file and offset. */
int fv_part_open_block(const struct fv_part *p, size_t i, const unsigned char dek[32],
                       struct fv_buf *raw, char *err, size_t errlen);

/* Index of subject's last-values entry (version 7: every subject has one), or p->nlast. */
size_t fv_part_find_last(const struct fv_part *p, const unsigned char subject[FV_SUBJECT_LEN]);
/* p's last-values slots (lvc, lvdek: nlast each, empty) made if missing. FV_OK or FV_ENOMEM
 * (none made). The caller holds what guards them (the store's cache_mu, or sole ownership). */
int fv_part_lvc_alloc(struct fv_part *p);
/* Reads, checks and decrypts last-values record i into z (still compressed; FV_ECORRUPT
 * names the file and offset). */
int fv_part_read_last(const struct fv_part *p, size_t i, const unsigned char dek[32],
                      struct fv_buf *z, char *err, size_t errlen);
/* Decompresses what fv_part_read_last gave into plain, with zd (a zstd decompression
 * context the caller owns and does not share meanwhile; NULL: a new one, which costs more
 * than decompressing a record). */
int fv_part_inflate_last(const struct fv_part *p, size_t i, ZSTD_DCtx *zd, const unsigned char *z,
                         size_t zlen, struct fv_buf *plain, char *err, size_t errlen);
/* Both: record i's plaintext. */
int fv_part_open_last(const struct fv_part *p, size_t i, const unsigned char dek[32], ZSTD_DCtx *zd,
                      struct fv_buf *plain, char *err, size_t errlen);

/* Writer. */
struct fv_part_writer;
int fv_part_writer_open(const char *dir, uint64_t gen_lo, uint64_t gen_hi, uint32_t level,
                        struct fv_part_writer **out, char *err, size_t errlen);
/* Class id of name in this part (added on first use); negative on error. */
int fv_part_writer_class(struct fv_part_writer *w, const char *name);
/* Compresses (zstd at level) and seals a block plaintext with dek, appends it. e gives the
 * subject, class and counts; its offset, len, raw_len and crc are filled in. */
int fv_part_writer_add(struct fv_part_writer *w, struct fv_part_entry *e,
                       const unsigned char dek[32], const unsigned char *raw, size_t raw_len,
                       int zlevel, char *err, size_t errlen);
/* Appends an already sealed block (copied verbatim from another part: no decryption). The
 * entry keeps e's CRC: a block whose bytes do not match it is carried over still failing. */
int fv_part_writer_copy(struct fv_part_writer *w, const struct fv_part_entry *e,
                        const char *class_name, const unsigned char *sealed, size_t len, char *err,
                        size_t errlen);
/* Seals a subject's last-values plaintext with dek and appends it (at most once per
 * subject: commit fails with FV_EINVAL otherwise). Versions 5 and 6 only (set_version):
 * FV_EINVAL in version 7. */
int fv_part_writer_add_last(struct fv_part_writer *w, const unsigned char subject[FV_SUBJECT_LEN],
                            const unsigned char dek[32], const unsigned char *plain, size_t len,
                            char *err, size_t errlen);
/* Writes an older version (5: fixed-size index entries; 6: with last-values records) instead
 * of the current one (7): for tests of readers of old parts. FV_EINVAL for other versions,
 * or once something was added. */
int fv_part_writer_set_version(struct fv_part_writer *w, uint32_t version);
/* Sets the part's flags (FV_PART_F_*, default 0) before commit. */
void fv_part_writer_set_flags(struct fv_part_writer *w, uint64_t flags);
/* Writes the index and footer, fsyncs, renames into place, fsyncs the directory; *path_out
 * receives the final path. Blocks must have been added in index order. On failure,
 * fv_part_writer_committed says whether the rename was made (the part may then exist under
 * its final name: a retry must write the same generations, never new ones). */
int fv_part_writer_commit(struct fv_part_writer *w, uint64_t wal_file_hi, char *path_out,
                          size_t pathlen, char *err, size_t errlen);
int fv_part_writer_committed(const struct fv_part_writer *w);
/* Discards an unfinished part (its temp file is deleted). Safe after commit (no-op free). */
void fv_part_writer_free(struct fv_part_writer *w);

/* Parses "part-LO-HI.fvp"; 1 if the name is a part's, 0 otherwise. */
int fv_part_name(const char *name, uint64_t *lo, uint64_t *hi);

#endif
