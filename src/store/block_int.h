/*
 * block_int.h - internal to block.c: the events section of a block plaintext (block.h), in
 * its layouts of block versions 1 and 2. Called by block.c only, on whatever thread calls it.
 */
#ifndef FV_STORE_BLOCK_INT_H
#define FV_STORE_BLOCK_INT_H

#include <stddef.h>

#include "store/block.h"
#include "store/codec.h"
#include "util/buf.h"

/* The topic whose payloads version 2 keeps as fields (wire/payload.h's connectivity). */
#define FV_BLOCK_TOPIC_CONN     "connectivity"
#define FV_BLOCK_TOPIC_CONN_LEN 12

/* Appends the events section of in. *ver: 2 when some event was written as connectivity
 * fields (the version 2 layout), else 1 (the version 1 layout, same bytes as ever).
 * FV_OK or FV_ENOMEM. */
int fv_block_enc_events(struct fv_buf *out, const struct fv_block_in *in, unsigned char *ver);
/* Decodes the events section of a block of version ver into b (b->ev, b->nev, and b->evmem
 * for the payloads version 2 rebuilds). FV_OK, FV_ENOMEM or FV_ECORRUPT with err set. */
int fv_block_dec_events(struct fv_rd *r, unsigned ver, struct fv_block *b, char *err,
                        size_t errlen);

#endif
