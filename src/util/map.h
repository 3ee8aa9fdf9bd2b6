/*
 * map.h - open-addressing hash map from a key (bytes, copied) or a u64 to a void pointer.
 *
 * Linear probing, tombstone-free deletion (backward shift), grows at 70% load. Keys of the
 * byte form are copied and owned by the map; values are not owned. Lookups return NULL when
 * absent. Not thread-safe: one owner (the event loop) at a time.
 */
#ifndef FV_UTIL_MAP_H
#define FV_UTIL_MAP_H

#include <stddef.h>
#include <stdint.h>

struct fv_map_slot {
    uint64_t hash; /* 0 = empty */
    uint64_t ikey;
    char *key; /* owned copy for byte keys, NULL for u64 keys */
    size_t klen;
    void *val;
};

struct fv_map {
    struct fv_map_slot *slots;
    size_t cap; /* power of two, or 0 */
    size_t n;
};

uint64_t fv_hash64(const void *p, size_t len);

void *fv_map_get(const struct fv_map *m, const void *key, size_t klen);
/* Inserts or replaces; FV_OK or FV_ENOMEM (map unchanged). */
int fv_map_put(struct fv_map *m, const void *key, size_t klen, void *val);
/* Removes; returns the value removed or NULL. */
void *fv_map_del(struct fv_map *m, const void *key, size_t klen);

void *fv_map_get_u64(const struct fv_map *m, uint64_t key);
int fv_map_put_u64(struct fv_map *m, uint64_t key, void *val);
void *fv_map_del_u64(struct fv_map *m, uint64_t key);

/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].hash) ... (no mutation). */
void fv_map_free(struct fv_map *m);

#endif
