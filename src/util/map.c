/* map.c - see map.h. Invariant: every occupied slot lies on its probe path from
 * hash & (cap-1) with no empty slot in between; deletion shifts entries back to keep it. */
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/map.h"

uint64_t fv_hash64(const void *p, size_t len)
{
    /* FNV-1a, then a murmur3 finaliser for better low bits; never returns 0 (the empty mark). */
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h ? h : 1;
}

static uint64_t hash_u64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k ? k : 1;
}

static int slot_match(const struct fv_map_slot *s, uint64_t h, const void *key, size_t klen,
                      uint64_t ikey)
{
    if (s->hash != h) return 0;
    if (key == NULL) return s->key == NULL && s->ikey == ikey;
    return s->key && s->klen == klen && memcmp(s->key, key, klen) == 0;
}

static struct fv_map_slot *find(const struct fv_map *m, uint64_t h, const void *key, size_t klen,
                                uint64_t ikey)
{
    if (m->cap == 0) return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct fv_map_slot *s = &m->slots[i];
        if (s->hash == 0) return NULL;
        if (slot_match(s, h, key, klen, ikey)) return s;
    }
}

static int grow(struct fv_map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    struct fv_map_slot *ns = calloc(ncap, sizeof *ns);
    if (ns == NULL) return FV_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        struct fv_map_slot *s = &m->slots[i];
        if (s->hash == 0) continue;
        size_t j = s->hash & (ncap - 1);
        while (ns[j].hash)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return FV_OK;
}

static int put(struct fv_map *m, uint64_t h, const void *key, size_t klen, uint64_t ikey, void *val)
{
    struct fv_map_slot *s = find(m, h, key, klen, ikey);
    if (s) {
        s->val = val;
        return FV_OK;
    }
    if ((m->n + 1) * 10 > m->cap * 7 && grow(m)) return FV_ENOMEM;
    char *copy = NULL;
    if (key) {
        copy = malloc(klen ? klen : 1);
        if (copy == NULL) return FV_ENOMEM;
        memcpy(copy, key, klen);
    }
    size_t i = h & (m->cap - 1);
    while (m->slots[i].hash)
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = (struct fv_map_slot){h, ikey, copy, klen, val};
    m->n++;
    return FV_OK;
}

static void *del(struct fv_map *m, uint64_t h, const void *key, size_t klen, uint64_t ikey)
{
    struct fv_map_slot *s = find(m, h, key, klen, ikey);
    if (s == NULL) return NULL;
    void *val = s->val;
    free(s->key);
    size_t i = (size_t)(s - m->slots);
    size_t mask = m->cap - 1;
    /* Backward-shift deletion keeps probe paths unbroken. */
    for (size_t j = (i + 1) & mask; m->slots[j].hash; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    memset(&m->slots[i], 0, sizeof m->slots[i]);
    m->n--;
    return val;
}

void *fv_map_get(const struct fv_map *m, const void *key, size_t klen)
{
    struct fv_map_slot *s = find(m, fv_hash64(key, klen), key, klen, 0);
    return s ? s->val : NULL;
}

int fv_map_put(struct fv_map *m, const void *key, size_t klen, void *val)
{
    return put(m, fv_hash64(key, klen), key, klen, 0, val);
}

void *fv_map_del(struct fv_map *m, const void *key, size_t klen)
{
    return del(m, fv_hash64(key, klen), key, klen, 0);
}

void *fv_map_get_u64(const struct fv_map *m, uint64_t key)
{
    struct fv_map_slot *s = find(m, hash_u64(key), NULL, 0, key);
    return s ? s->val : NULL;
}

int fv_map_put_u64(struct fv_map *m, uint64_t key, void *val)
{
    return put(m, hash_u64(key), NULL, 0, key, val);
}

void *fv_map_del_u64(struct fv_map *m, uint64_t key)
{
    return del(m, hash_u64(key), NULL, 0, key);
}

void fv_map_free(struct fv_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    memset(m, 0, sizeof *m);
}
