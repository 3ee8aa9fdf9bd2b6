/* filesend.c - a file, whole or a byte range, as a streamed answer (filesend.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "api/filesend.h"
#include "util/err.h"
#include "util/log.h"

static int digits(const char **p, uint64_t *v)
{
    const char *s = *p;
    uint64_t x = 0;
    if (*s < '0' || *s > '9') return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (x > (UINT64_MAX - 9) / 10) return -1;
        x = x * 10 + (uint64_t)(*s - '0');
    }
    *p = s;
    *v = x;
    return 0;
}

int fv_range_parse(const char *header, uint64_t size, uint64_t *start, uint64_t *end)
{
    if (header == NULL || strncmp(header, "bytes=", 6) != 0) return 200;
    const char *p = header + 6;
    while (*p == ' ')
        p++;
    uint64_t a = 0, b = 0;
    if (*p == '-') { /* suffix: the last N bytes */
        p++;
        if (digits(&p, &b) || *p) return 200;
        if (b == 0 || size == 0) return 416;
        *start = b >= size ? 0 : size - b;
        *end = size - 1;
        return 206;
    }
    if (digits(&p, &a) || *p != '-') return 200;
    p++;
    int open_end = *p == '\0';
    if (!open_end && (digits(&p, &b) || *p)) return 200; /* also "A-B,C-D": ignored */
    if (!open_end && b < a) return 200;
    if (a >= size) return 416;
    *start = a;
    *end = open_end || b >= size ? size - 1 : b;
    return 206;
}

struct filesend {
    int fd;
    uint64_t off, left;
};

static int more(void *ctx, struct fv_buf *out)
{
    struct filesend *f = ctx;
    if (f->left == 0) return 0;
    size_t n = f->left < FV_FILESEND_PIECE ? (size_t)f->left : FV_FILESEND_PIECE;
    if (fv_buf_reserve(out, n) != FV_OK) return FV_ENOMEM;
    ssize_t r;
    do
        r = pread(f->fd, out->data + out->len, n, (off_t)f->off);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        fv_warn("api: reading a file being sent failed at %" PRIu64 " (%s)", f->off,
                r < 0 ? strerror(errno) : "unexpected end of file");
        return FV_EIO;
    }
    out->len += (size_t)r;
    f->off += (uint64_t)r;
    f->left -= (uint64_t)r;
    return f->left ? 1 : 0;
}

static void free_ctx(void *ctx)
{
    struct filesend *f = ctx;
    if (f->fd >= 0) close(f->fd);
    free(f);
}

int fv_api_send_file(struct fv_http_response *out, const char *path, const char *range,
                     const char *content_type)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        fv_api_respond_json(out, 404, json_pack("{s:s}", "error", "no such file"));
        return 404;
    }
    uint64_t size = (uint64_t)st.st_size, a = 0, b = size ? size - 1 : 0;
    int status = fv_range_parse(range, size, &a, &b);
    if (status == 416) {
        close(fd);
        fv_api_respond_json(
            out, 416,
            json_pack("{s:s, s:I}", "error", "range not satisfiable", "size", (json_int_t)size));
        snprintf(out->content_range, sizeof out->content_range, "bytes */%" PRIu64, size);
        return 416;
    }
    struct filesend *f = malloc(sizeof *f);
    if (f == NULL) {
        close(fd);
        fv_api_respond_json(out, 500, json_pack("{s:s}", "error", "out of memory"));
        return 500;
    }
    f->fd = fd;
    f->off = a;
    f->left = size ? b - a + 1 : 0;
    out->status = status;
    out->content_type = content_type;
    out->length_known = 1;
    out->length = f->left;
    out->accept_ranges = 1;
    if (status == 206)
        snprintf(out->content_range, sizeof out->content_range,
                 "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, a, b, size);
    out->more = more;
    out->free_ctx = free_ctx;
    out->ctx = f;
    return status;
}
