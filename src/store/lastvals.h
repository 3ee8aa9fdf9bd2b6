/*
 * lastvals.h - one subject's "last values" in one part: for every signal it has there, the
 * time and value of its last sample. The fleet view (store.h, fv_store_last) answers from
 * these, in memory, instead of decoding blocks.
 *
 * A part keeps one such record per subject (part.h, version 3), compressed and sealed with
 * the subject's data key like its blocks. The worker builds it while it writes the part:
 * from the frames it encodes (flush), or by combining its inputs' records (compaction), or
 * from the kept blocks when blocks went (retention) or an input has none (older parts).
 *
 * Ambiguity: when several samples of a signal share its last time (a resend, a duplicated
 * signal in one frame, or equal times in two parts), which one a query shows depends on the
 * order blocks are read in; the entry is then marked ambiguous, carries no value, and the
 * reader falls back to decoding (the answer stays exactly the decoding path's).
 *
 * Plaintext format (varints LEB128), as small as it can be (a part holds one per subject;
 * the time a signal was last seen is mostly its frame's, stored once):
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

#define FV_LASTVALS_VERSION 1
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
/* Decodes a plaintext into out (empty on entry); out is always safe to clear. */
int fv_lastvals_decode(const unsigned char *p, size_t n, struct fv_lastvals *out, char *err,
                       size_t errlen);
/* The entry of field in a sorted (encoded or decoded) lv, or NULL. */
const struct fv_lastval *fv_lastvals_find(const struct fv_lastvals *lv, uint32_t field);
/* Frees everything lv holds and empties it. */
void fv_lastvals_clear(struct fv_lastvals *lv);

#endif
