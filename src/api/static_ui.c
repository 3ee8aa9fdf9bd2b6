/* static_ui.c - the web console's files (static_ui.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/static_ui.h"
#include "util/err.h"

static const struct {
    const char *ext, *type;
} types[] = {{".html", "text/html; charset=utf-8"},
             {".js", "text/javascript; charset=utf-8"},
             {".mjs", "text/javascript; charset=utf-8"},
             {".css", "text/css; charset=utf-8"},
             {".json", "application/json"},
             {".svg", "image/svg+xml"},
             {".png", "image/png"},
             {".ico", "image/x-icon"},
             {".txt", "text/plain; charset=utf-8"}};

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

/* U1: a relative path of plain components. */
static int path_ok(const char *rel)
{
    if (rel[0] == '\0' || strlen(rel) > 255) return 0;
    const char *c = rel;
    while (*c) {
        const char *end = strchr(c, '/');
        size_t n = end ? (size_t)(end - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return 0;
        for (size_t i = 0; i < n; i++) {
            char ch = c[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
                return 0;
        }
        if (end == NULL) break;
        c = end + 1;
        if (*c == '\0') return 0; /* a trailing slash names a directory */
    }
    return 1;
}

/* Opens rel under root, no symbolic link followed (U1): a file descriptor or -1. */
static int open_beneath(const char *root, const char *rel)
{
    int dir = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return -1;
    char part[256];
    const char *c = rel;
    for (;;) {
        const char *end = strchr(c, '/');
        size_t n = end ? (size_t)(end - c) : strlen(c);
        memcpy(part, c, n);
        part[n] = '\0';
        int fd = openat(dir, part, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (end ? O_DIRECTORY : 0));
        close(dir);
        if (fd < 0 || end == NULL) return fd;
        dir = fd;
        c = end + 1;
    }
}

static void not_found(struct fv_http_response *out)
{
    fv_api_respond_error(out, 404, "no such file in the console");
}

void fv_api_static_ui(const char *root, const char *method, const char *path,
                      struct fv_http_response *out)
{
    out->ui_headers = 1;
    if (strcmp(method, "GET") != 0) {
        fv_api_respond_error(out, 405, "method not allowed: the console's files are read-only");
        return;
    }
    if (strcmp(path, "/ui") == 0) { /* U3 */
        out->location = "/ui/";
        fv_api_respond_error(out, 301, "moved to /ui/");
        return;
    }
    const char *rel = path + 4; /* after "/ui/" */
    if (rel[0] == '\0') rel = "index.html";
    if (root == NULL || root[0] == '\0' || !path_ok(rel)) {
        not_found(out);
        return;
    }
    int fd = open_beneath(root, rel);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > FV_UI_FILE_MAX) {
        if (fd >= 0) close(fd);
        not_found(out);
        return;
    }
    size_t size = (size_t)st.st_size, got = 0;
    if (fv_buf_reserve(&out->body, size + 1) != FV_OK) {
        close(fd);
        fv_api_respond_error(out, 500, "out of memory");
        return;
    }
    while (got < size) {
        ssize_t n = read(fd, out->body.data + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (got != size) {
        fv_buf_reset(&out->body);
        fv_api_respond_error(out, 500, "the console's file could not be read");
        return;
    }
    out->body.len = size;
    out->status = 200;
    out->content_type = content_type(rel);
}

int fv_ui_default_dir(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return FV_EIO;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL) return FV_EIO;
    *slash = '\0';
    if ((size_t)snprintf(out, cap, "%s/ui", exe) >= cap) return FV_EIO;
    return FV_OK;
}
