/*
 * buf.h - a growable byte buffer and little-endian get/put helpers.
 *
 * Fields on disk and on the wire are always read and written through these helpers, never by
 * casting a struct onto bytes. A buffer owns its memory; fv_buf_free releases it. Not
 * thread-safe: one owner at a time.
 */
#ifndef FV_UTIL_BUF_H
#define FV_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fv_buf {
    unsigned char *data;
    size_t len;
    size_t cap;
};

/* Ensures room for extra more bytes; returns FV_OK or FV_ENOMEM (buffer unchanged). */
int fv_buf_reserve(struct fv_buf *b, size_t extra);
/* Appends len bytes; FV_OK or FV_ENOMEM. */
int fv_buf_append(struct fv_buf *b, const void *p, size_t len);
/* Appends printf-style text, whole however long (no NUL kept); FV_OK, FV_ENOMEM, FV_EINVAL
 * (a format vsnprintf refuses); the buffer is unchanged on failure. */
int fv_buf_appendf(struct fv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int fv_buf_vappendf(struct fv_buf *b, const char *fmt, va_list ap);
void fv_buf_reset(struct fv_buf *b);
void fv_buf_free(struct fv_buf *b);

static inline uint16_t fv_get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t fv_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t fv_get_u64(const unsigned char *p)
{
    return (uint64_t)fv_get_u32(p) | ((uint64_t)fv_get_u32(p + 4) << 32);
}
static inline void fv_put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static inline void fv_put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline void fv_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

#endif
