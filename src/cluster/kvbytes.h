/*
 * kvbytes.h - the byte fields of the plaintexts the cluster's KV buckets carry (formats.md
 * "Owner periods and consents in the KV bucket", "Principals in the KV bucket"): big-endian
 * integers of 1 to 8 bytes and strings with a one-byte length. A reader never reads past its
 * end: a short or bad field sets bad, and every later read returns nothing.
 *
 * Threads: no shared state.
 */
#ifndef FV_CLUSTER_KVBYTES_H
#define FV_CLUSTER_KVBYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"

static inline int fv_kvb_put_be(struct fv_buf *b, uint64_t v, int bytes)
{
    unsigned char x[8];
    for (int i = 0; i < bytes; i++)
        x[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    return fv_buf_append(b, x, (size_t)bytes);
}

/* FV_EINVAL for a string over 255 bytes (its length does not fit the prefix). */
static inline int fv_kvb_put_str(struct fv_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (n > 255) return FV_EINVAL;
    int rc = fv_kvb_put_be(b, n, 1);
    return rc ? rc : fv_buf_append(b, s, n);
}

struct fv_kvb_rd {
    const unsigned char *p;
    size_t n, off;
    int bad;
};

static inline uint64_t fv_kvb_get_be(struct fv_kvb_rd *r, int bytes)
{
    uint64_t v = 0;
    if (r->bad || r->n - r->off < (size_t)bytes) {
        r->bad = 1;
        return 0;
    }
    for (int i = 0; i < bytes; i++)
        v = v << 8 | r->p[r->off++];
    return v;
}

static inline const unsigned char *fv_kvb_get_bytes(struct fv_kvb_rd *r, size_t len)
{
    if (r->bad || r->n - r->off < len) {
        r->bad = 1;
        return NULL;
    }
    r->off += len;
    return r->p + r->off - len;
}

/* A length-prefixed string of 1 (or 0 if may_be_empty) to cap - 1 bytes, each from lowest
 * (0x20: spaces allowed; 0x21: none) to 0x7e, into out ("" when bad). */
static inline void fv_kvb_get_str(struct fv_kvb_rd *r, char *out, size_t cap, int may_be_empty,
                                  unsigned char lowest)
{
    size_t len = (size_t)fv_kvb_get_be(r, 1);
    const unsigned char *s = fv_kvb_get_bytes(r, len);
    out[0] = '\0';
    if (s == NULL || len >= cap || (len == 0 && !may_be_empty)) {
        r->bad = 1;
        return;
    }
    for (size_t i = 0; i < len; i++)
        if (s[i] < lowest || s[i] >= 0x7f) r->bad = 1;
    memcpy(out, s, len);
    out[len] = '\0';
}

#endif
