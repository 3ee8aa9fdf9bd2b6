/*
 * mcap_cur.c - the MCAP reader's sources (memory, a file read with pread) and its bounded
 * parsing cursor (mcap_int.h): every get checks that its bytes lie inside the record, and a
 * damaged record is named by its offset in the file ("mcap: byte N: ...", or inside a chunk
 * "mcap: byte CHUNK: chunk byte M: ..."). Threads: as mcap.h (the cursor belongs to the
 * reader's thread; the sources keep no state of their own).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/mcap.h"
#include "data/mcap_format.h"
#include "data/mcap_int.h"
#include "util/err.h"

/* ---- sources --------------------------------------------------------------------------- */

struct mem_src {
    const unsigned char *p;
};

static int mem_read(void *ctx, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    memcpy(buf, (const unsigned char *)ctx + off, len);
    return FV_OK;
}

void fv_mcap_source_mem(struct fv_mcap_source *src, const void *data, size_t len)
{
    src->size = len;
    src->read = mem_read;
    src->ctx = (void *)(uintptr_t)data;
}

static int file_read(void *ctx, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    const struct fv_mcap_file *f = ctx;
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(f->fd, (unsigned char *)buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fv_seterr(err, errlen, "pread %s at %llu: %s", f->path, (unsigned long long)(off + got),
                      n < 0 ? strerror(errno) : "end of file");
            return FV_EIO;
        }
        got += (size_t)n;
    }
    return FV_OK;
}

int fv_mcap_source_file(struct fv_mcap_source *src, struct fv_mcap_file *f, char *err,
                        size_t errlen)
{
    struct stat st;
    if (fstat(f->fd, &st) != 0) {
        fv_seterr(err, errlen, "stat %s: %s", f->path, strerror(errno));
        return FV_EIO;
    }
    src->size = (uint64_t)st.st_size;
    src->read = file_read;
    src->ctx = f;
    return FV_OK;
}

/* ---- cursor ---------------------------------------------------------------------------- */

int fv_mcap_corrupt(struct fv_mcap_cur *c, size_t pos, const char *fmt, ...)
{
    if (c->bad) return FV_ECORRUPT;
    c->bad = 1;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (c->chunk == UINT64_MAX)
        fv_seterr(c->err, c->errlen, "mcap: byte %llu: %s", (unsigned long long)(c->base + pos),
                  what);
    else
        fv_seterr(c->err, c->errlen, "mcap: byte %llu: chunk byte %llu: %s",
                  (unsigned long long)c->chunk, (unsigned long long)(c->base + pos), what);
    return FV_ECORRUPT;
}

static const unsigned char *take(struct fv_mcap_cur *c, size_t n, const char *what)
{
    if (c->bad) return NULL;
    if (n > c->len - c->pos) {
        fv_mcap_corrupt(c, c->pos, "%s: %zu bytes past the end of its record", what,
                        n - (c->len - c->pos));
        return NULL;
    }
    const unsigned char *p = c->p + c->pos;
    c->pos += n;
    return p;
}

uint8_t fv_mcap_get_u8(struct fv_mcap_cur *c, const char *what)
{
    const unsigned char *p = take(c, 1, what);
    return p ? p[0] : 0;
}
uint16_t fv_mcap_get_u16(struct fv_mcap_cur *c, const char *what)
{
    const unsigned char *p = take(c, 2, what);
    return p ? fv_get_u16(p) : 0;
}
uint32_t fv_mcap_get_u32(struct fv_mcap_cur *c, const char *what)
{
    const unsigned char *p = take(c, 4, what);
    return p ? fv_get_u32(p) : 0;
}
uint64_t fv_mcap_get_u64(struct fv_mcap_cur *c, const char *what)
{
    const unsigned char *p = take(c, 8, what);
    return p ? fv_get_u64(p) : 0;
}
const unsigned char *fv_mcap_get_bytes32(struct fv_mcap_cur *c, uint32_t *len, const char *what)
{
    *len = fv_mcap_get_u32(c, what);
    const unsigned char *p = take(c, *len, what);
    if (p == NULL) *len = 0;
    return p;
}

int fv_mcap_next_record(struct fv_mcap_cur *c, unsigned *op, struct fv_mcap_cur *body, size_t *at)
{
    *at = c->pos;
    if (c->len - c->pos < FV_MCAP_REC_HDR)
        return fv_mcap_corrupt(c, c->pos, "record header cut short (%zu of 9 bytes)",
                               c->len - c->pos);
    *op = c->p[c->pos];
    uint64_t n = fv_get_u64(c->p + c->pos + 1);
    if (*op == 0) return fv_mcap_corrupt(c, c->pos, "opcode 0");
    if (n > c->len - c->pos - FV_MCAP_REC_HDR)
        return fv_mcap_corrupt(c, c->pos, "record 0x%02x of %llu bytes runs past its section", *op,
                               (unsigned long long)n);
    *body = *c;
    body->p = c->p + c->pos + FV_MCAP_REC_HDR;
    body->len = (size_t)n;
    body->pos = 0;
    body->base = c->base + c->pos + FV_MCAP_REC_HDR;
    c->pos += FV_MCAP_REC_HDR + (size_t)n;
    return FV_OK;
}

int fv_mcap_src_read(struct fv_mcap_reader *r, uint64_t off, void *buf, size_t len)
{
    if (off > r->src.size || len > r->src.size - off) {
        fv_seterr(r->err, r->errlen, "mcap: byte %llu: %zu bytes past the end of the file",
                  (unsigned long long)off, len);
        return FV_ECORRUPT;
    }
    return len ? r->src.read(r->src.ctx, off, buf, len, r->err, r->errlen) : FV_OK;
}
