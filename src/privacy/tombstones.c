/* tombstones.c - see tombstones.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "os/fsio.h"
#include "privacy/tombstones.h"
#include "util/err.h"

static int hex32(const char *s)
{
    if (strlen(s) != 32) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

/* Cuts a torn last line (a crash or a failed write mid-append left bytes after the last
 * newline) and makes the cut durable, so that the next line starts on a line of its own:
 * appended after the fragment, it would make one malformed line that every later start
 * refuses. The fragment's erasure was never confirmed (rule: confirmed = line + newline
 * fsync'd). */
static int cut_torn_tail(int fd, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fv_seterr(err, errlen, "fstat %s: %s", path, strerror(errno));
        return FV_EIO;
    }
    off_t at = st.st_size;
    char b[4096];
    while (at > 0) {
        size_t n = at < (off_t)sizeof b ? (size_t)at : sizeof b;
        ssize_t got = pread(fd, b, n, at - (off_t)n);
        if (got != (ssize_t)n) {
            fv_seterr(err, errlen, "read %s: %s", path, got < 0 ? strerror(errno) : "short read");
            return FV_EIO;
        }
        char *nl = memrchr(b, '\n', n);
        if (nl) {
            at = at - (off_t)n + (nl - b) + 1;
            break;
        }
        at -= (off_t)n;
    }
    if (at == st.st_size) return FV_OK;
    int rc = fv_os_ftruncate(fd, at, path, err, errlen);
    return rc ? rc : fv_os_fsync(fd, path, err, errlen);
}

int fv_tombstone_append(const char *path, const char *pseudo, uint64_t at_ms, const char *by,
                        const char *ticket, char *err, size_t errlen)
{
    if (!hex32(pseudo)) {
        fv_seterr(err, errlen, "tombstone: not a subject pseudonym");
        return FV_EINVAL;
    }
    json_t *j = json_pack("{s:s,s:I,s:s,s:s}", "subject", pseudo, "erased_ms", (json_int_t)at_ms,
                          "by", by ? by : "", "ticket", ticket ? ticket : "");
    char *line = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (line == NULL) return FV_ENOMEM;
    /* O_APPEND and the lock: concurrent appenders (threads or processes) never interleave
     * or cut each other's line. */
    int fd;
    int rc = fv_os_open(path, O_RDWR | O_APPEND | O_CREAT, 0600, &fd, err, errlen) ? FV_EIO : FV_OK;
    if (rc == FV_OK && flock(fd, LOCK_EX) != 0) {
        fv_seterr(err, errlen, "flock %s: %s", path, strerror(errno));
        rc = FV_EIO;
    }
    size_t n = strlen(line);
    line[n] = '\n'; /* json_dumps' NUL becomes the newline; the buffer holds n + 1 bytes */
    if (rc == FV_OK) rc = cut_torn_tail(fd, path, err, errlen);
    if (rc == FV_OK) rc = fv_os_write_all(fd, line, n + 1, path, err, errlen);
    if (rc == FV_OK) rc = fv_os_fsync(fd, path, err, errlen);
    if (fd >= 0) close(fd);
    free(line);
    if (rc == FV_OK) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = '\0';
            rc = fv_os_fsync_dir(dir[0] ? dir : "/", err, errlen);
        } else {
            rc = fv_os_fsync_dir(".", err, errlen);
        }
    }
    return rc;
}

int fv_tombstone_replay(const char *path, int (*fn)(void *arg, const char *pseudo, uint64_t at_ms),
                        void *arg, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc = fv_os_read_file(path, 1u << 30, &text, &len, err, errlen);
    if (rc == FV_ENOENT) return FV_OK;
    if (rc) return rc;
    size_t line = 0;
    for (char *p = text; rc == FV_OK && p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        line++;
        if (nl == NULL) break; /* a torn last line: its erasure was never confirmed */
        *nl = '\0';
        json_error_t je;
        json_t *j = json_loads(p, 0, &je);
        const char *subject = json_string_value(json_object_get(j, "subject"));
        json_t *at = json_object_get(j, "erased_ms");
        if (subject == NULL || !hex32(subject) || !json_is_integer(at)) {
            fv_seterr(err, errlen, "%s:%zu: not a tombstone (the erasure list is damaged)", path,
                      line);
            rc = FV_ECORRUPT;
        } else {
            rc = fn(arg, subject, (uint64_t)json_integer_value(at));
        }
        json_decref(j);
        p = nl + 1;
    }
    free(text);
    return rc;
}
