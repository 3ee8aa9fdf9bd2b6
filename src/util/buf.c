/* buf.c - see buf.h. Growth doubles capacity, so appends are amortised O(1). */
#include <stdlib.h>

#include <stdio.h>

#include "util/buf.h"
#include "util/err.h"

int fv_buf_reserve(struct fv_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len) return FV_ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap) return FV_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    unsigned char *p = realloc(b->data, cap);
    if (p == NULL) return FV_ENOMEM;
    b->data = p;
    b->cap = cap;
    return FV_OK;
}

int fv_buf_append(struct fv_buf *b, const void *p, size_t len)
{
    if (len == 0) return FV_OK;
    int rc = fv_buf_reserve(b, len);
    if (rc) return rc;
    memcpy(b->data + b->len, p, len);
    b->len += len;
    return FV_OK;
}

void fv_buf_reset(struct fv_buf *b)
{
    b->len = 0;
}

void fv_buf_free(struct fv_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int fv_buf_vappendf(struct fv_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return FV_EINVAL;
    int rc = fv_buf_reserve(b, (size_t)n + 1); /* vsnprintf writes its NUL too */
    if (rc) return rc;
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return FV_OK;
}

int fv_buf_appendf(struct fv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = fv_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}
