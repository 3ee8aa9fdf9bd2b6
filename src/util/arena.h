/*
 * arena.h - a bump allocator over a caller's buffer (usually on its stack), for memory that
 * dies all at once: e.g. one protobuf message unpacked, read and dropped (wire/payload.c), so
 * that a record costs no malloc/free per field.
 *
 * Allocations are 16-byte aligned. When the buffer is full, a larger request gets a block of
 * its own from malloc, kept on a list and freed by fv_arena_release, which also makes the
 * whole buffer free again. Nothing is freed one by one. One owner at a time (no locking);
 * any thread.
 */
#ifndef FV_UTIL_ARENA_H
#define FV_UTIL_ARENA_H

#include <stddef.h>

struct fv_arena_block;

struct fv_arena {
    unsigned char *buf;
    size_t cap, used;
    struct fv_arena_block *spill; /* blocks from malloc, newest first */
};

/* An arena over buf (cap bytes; buf may be NULL with cap 0: every allocation spills). */
void fv_arena_init(struct fv_arena *a, void *buf, size_t cap);
/* n bytes (n 0 counts as 1), aligned to 16; NULL when out of memory. */
void *fv_arena_alloc(struct fv_arena *a, size_t n);
/* Frees every spilled block; the buffer is empty again. The arena stays usable. */
void fv_arena_release(struct fv_arena *a);

#endif
