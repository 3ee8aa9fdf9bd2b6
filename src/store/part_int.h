/*
 * part_int.h - internal to part.c: the index's entries, in the layouts of versions 1 to 5
 * and of version 6 (part.h, docs/formats.md "Part file"). Called by part.c only, on
 * whatever thread calls it.
 */
#ifndef FV_STORE_PART_INT_H
#define FV_STORE_PART_INT_H

#include <stddef.h>

#include "store/codec.h"
#include "store/part.h"
#include "util/buf.h"

/* The least number of bytes a version 6 entry takes (its CRC and twelve one-byte varints). */
#define FV_PART_ENTRY_MIN_V6 16

/* Appends, after the flags, the part's nonce base, the entries e[0..n-1] (in index order)
 * and the last-values entries l[0..nl-1] (sorted by subject, their nonces derived).
 * FV_OK or FV_ENOMEM. */
int fv_part_index_put_v6(struct fv_buf *idx, const unsigned char nonce_base[12],
                         const struct fv_part_entry *e, size_t n, const struct fv_part_last *l,
                         size_t nl);
/* Reads what fv_part_index_put_v6 wrote, to the end of r, into p->nonce_base, p->e, p->n,
 * p->last and p->nlast (allocated here; freed by the caller on failure too). Only the encoding is
 * checked here: FV_ECORRUPT (why in *what), FV_ENOMEM. part.c checks the entries' rules. */
int fv_part_index_get_v6(struct fv_rd *r, uint32_t nblocks, struct fv_part *p, const char **what);

/* Versions 1 to 5: varint nblocks, fixed-size entries of elen bytes (69 in version 1, 77
 * later), then (3 to 5) varint nlast and 32 bytes per record, to the end of r. Fills p as
 * fv_part_index_get_v6 does (nonce_in 1 everywhere). */
int fv_part_index_get_v5(struct fv_rd *r, uint32_t nblocks, size_t elen, struct fv_part *p,
                         const char **what);
/* Version 5's layout of the same (for tests: fv_part_writer_set_version). */
int fv_part_index_put_v5(struct fv_buf *idx, const struct fv_part_entry *e, size_t n,
                         const struct fv_part_last *l, size_t nl);

#endif
