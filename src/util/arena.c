/*
 * arena.c - see arena.h.
 */
#include <stdint.h>
#include <stdlib.h>

#include "util/arena.h"

#define ALIGN 16

struct fv_arena_block {
    struct fv_arena_block *next;
    _Alignas(ALIGN) unsigned char data[];
};

void fv_arena_init(struct fv_arena *a, void *buf, size_t cap)
{
    a->buf = buf;
    a->cap = buf ? cap : 0;
    a->used = 0;
    a->spill = NULL;
    /* the buffer's first aligned byte */
    if (a->buf) {
        size_t skip = (ALIGN - (uintptr_t)a->buf % ALIGN) % ALIGN;
        if (skip > a->cap) skip = a->cap;
        a->used = skip;
    }
}

void *fv_arena_alloc(struct fv_arena *a, size_t n)
{
    if (n == 0) n = 1;
    if (n > SIZE_MAX - 2 * ALIGN - sizeof(struct fv_arena_block)) return NULL;
    size_t need = (n + ALIGN - 1) / ALIGN * ALIGN;
    if (a->used <= a->cap && need <= a->cap - a->used) {
        void *p = a->buf + a->used;
        a->used += need;
        return p;
    }
    struct fv_arena_block *b = malloc(sizeof *b + need);
    if (b == NULL) return NULL;
    b->next = a->spill;
    a->spill = b;
    return b->data;
}

void fv_arena_release(struct fv_arena *a)
{
    for (struct fv_arena_block *b = a->spill, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    a->spill = NULL;
    fv_arena_init(a, a->buf, a->cap);
}
