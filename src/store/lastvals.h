/*
 * lastvals.h - one subject's "last values" in one part: for every signal it has there, the
 * time and value of its last sample. The fleet view (store.h, fv_store_last) answers from
 * these, in memory, instead of decoding blocks.
 *
 * Parts of formats 3 to 6 keep one such record per subject (part.h), compressed (from
 * format 4 only when that makes it smaller) and sealed with the subject's data key like its
 * blocks. Format 7 keeps none: the store holds the decoded struct in memory only
 * (fv_part.lvc; docs/storage.md). The worker builds it while it writes the part: from the
 * frames it encodes (flush), or by combining its inputs' (compaction: their values in
 * memory or their records), or from the kept blocks when blocks went (retention) or an
 * input's are missing; a format 7 part opened at start computes it from its blocks.
 *
 * Ambiguity: when several samples of a signal share its last time (a resend, or equal
 * times in two parts), which one a query shows depends on the order blocks are read in; the
 * entry is then marked ambiguous, carries no value, and the reader falls back to decoding
 * (the answer stays exactly the decoding path's). fv_lastvals_add marks any second sample at
 * the same time so; a signal repeated within one frame is not added twice by the store's
 * writer (a block keeps its last value only), so the values equal those computed from the
 * blocks (format 7).
 *
 * Plaintext format, version 3 (written, in parts of format 6): version 2 below but for
 *   u8     version = 3
 *   varint zz(tref)
 *   varint n << 1 | uniform             uniform: every entry is at tref and not ambiguous
 *   per entry, if uniform: varint (field - previous field) << 1 | same  (no time, no flags)
 *              otherwise: the field and flags varints as in version 2
 *     unless amb or same: varint member << 4 | kind  (instead of two bytes)
 *     unless amb: the value, as in version 2.
 * About 1.2 bytes a signal fewer than version 2 when the last frame holds every signal.
 * Version 2 (parts of format 4 and 5; still read; varints LEB128; zz = zigzag), about 6
 * bytes a signal: a part holds one per subject, and most signals were last seen at the same
 * time:
 *   u8     version = 2
 *   varint zz(tref)                     the latest last_t of the entries (0 if none)
 *   varint n                            entries, then each, ascending field:
 *     varint field - previous field     (the first: the field; later ones > 0)
 *     varint dt << 2 | same << 1 | amb  dt = tref - last_t (mod 2^64); dt >= 2^62 - 1 is
 *                                       written as 2^62 - 1 and followed by varint dt
 *     unless amb: [unless same: u8 kind, u8 member] and the value by kind:
 *       DOUBLE: varint zz(m) << 5 | e, v == m / 10^e bit for bit (e <= 18, |m| < 2^53), or
 *               varint 31 then the 8 bytes of its IEEE-754 bits, little-endian;
 *       LOCATION: two such doubles (lat, lon); INT, ENUM, BOOL: varint zz(v);
 *       DOORS, TIRES: varint bits (< 2^32); TIME: varint zz(h), zz(m), zz(s) (int32 each);
 *       STRING: varint len, the bytes (no NUL); INVALID, OTHER: nothing; others refused.
 *     same = this entry's kind and member are the previous valued entry's (amb entries
 *     have no value and never set it). Nothing may follow the last entry.
 * Version 1 (parts of format 3; still read), one entry list then a block of the values:
 *   u8     version = 1
 *   varint namb                         ambiguous entries, ascending field
 *   per ambiguous entry: varint field | varint zigzag(last_t)
 *   varint nval                         entries with a value
 *   then, up to the end, blocks, each: varint len | a block plaintext (block.h) of len
 *   bytes. Together they hold every other entry: its value as the one datum of its field in
 *   the frame at its last_t (frames grouped by time); a block holds the values of a run of
 *   consecutive fields (at most 4096, fewer if a block would break block.h's limits).
 * Decoding rejects anything inconsistent (a field twice, a value of kind NONE, other than
 * nval values) with FV_ECORRUPT.
 *
 * Threads: no shared state; a struct fv_lastvals has one owner at a time.
 */
#ifndef FV_STORE_LASTVALS_H
#define FV_STORE_LASTVALS_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/map.h"
#include "wire/payload.h"

#define FV_LASTVALS_VERSION 3          /* written; versions 1 and 2 are still read */
#define FV_LASTVALS_MAX     (1u << 20) /* entries a reader accepts */

struct fv_lastval {
    uint32_t field;
    uint8_t amb; /* several samples at last_t: no value (see above) */
    int64_t last_t;
    struct fv_value v; /* the sample at last_t (strings owned); kind NONE when amb */
};

struct fv_lastvals {
    size_t n, cap;
    struct fv_lastval *e; /* ascending field once sorted (encode, decode) */
    struct fv_map idx;    /* field -> 1 + index, while adding */
};

/* Notes a sample (the value is copied). A value of kind NONE makes the entry ambiguous (the
 * decoding path skips such rows in its own way). FV_OK or FV_ENOMEM. */
int fv_lastvals_add(struct fv_lastvals *lv, int64_t t, uint32_t field, const struct fv_value *v);
/* Folds src's entries into dst, as if dst had seen src's samples too. */
int fv_lastvals_merge(struct fv_lastvals *dst, const struct fv_lastvals *src);
/* Sorts lv by field and appends its encoding to out. */
int fv_lastvals_encode(struct fv_lastvals *lv, struct fv_buf *out);
/* The version 2 encoding (what parts of formats 4 and 5 hold), kept so tests can make old
 * records. */
int fv_lastvals_encode_v2(struct fv_lastvals *lv, struct fv_buf *out);
/* The version 1 encoding (what parts of format 3 hold), kept so tests can make old records. */
int fv_lastvals_encode_v1(struct fv_lastvals *lv, struct fv_buf *out);
/* Decodes a plaintext (version 1, 2 or 3) into out (empty on entry); out is always safe to clear.
 */
int fv_lastvals_decode(const unsigned char *p, size_t n, struct fv_lastvals *out, char *err,
                       size_t errlen);
/* The entry of field in a sorted (encoded or decoded) lv, or NULL. */
const struct fv_lastval *fv_lastvals_find(const struct fv_lastvals *lv, uint32_t field);
/* The form kept in memory with a part (fv_part.lvc): lv's encoding (the current plaintext
 * version, above: about 5 bytes a signal where the struct takes 40) in one allocation. */
struct fv_lastvals_mem {
    uint32_t len;
    unsigned char data[];
};
/* Encodes lv (sorting it) into a new *out. FV_OK, FV_ENOMEM or FV_ELIMIT. */
int fv_lastvals_mem_make(struct fv_lastvals *lv, struct fv_lastvals_mem **out);
/* The entry of field in m (*found; out's value is then the caller's: fv_value_clear), read
 * without decoding the entries after it. FV_OK, FV_ENOMEM, or FV_ECORRUPT (not made by
 * fv_lastvals_mem_make). */
int fv_lastvals_mem_find(const struct fv_lastvals_mem *m, uint32_t field, int *found,
                         struct fv_lastval *out);
/* Decodes all of m into out (empty on entry). */
int fv_lastvals_mem_decode(const struct fv_lastvals_mem *m, struct fv_lastvals *out);
/* Cleanses and frees m (NULL is ignored). */
void fv_lastvals_mem_free(struct fv_lastvals_mem *m);
/* Frees everything lv holds and empties it. */
void fv_lastvals_clear(struct fv_lastvals *lv);

#endif
