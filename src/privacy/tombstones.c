/* tombstones.c - see tombstones.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Cuts a torn last line (an append that failed or crashed midway, never confirmed) so the
 * next line does not glue onto it: a malformed line in the middle stops every start. */
static int cut_torn_tail(int fd, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fv_seterr(err, errlen, "stat %s: %s", path, strerror(errno));
        return FV_EIO;
    }
    off_t end = st.st_size;
    char buf[4096];
    while (end > 0) {
        size_t n = end < (off_t)sizeof buf ? (size_t)end : sizeof buf;
        if (pread(fd, buf, n, end - (off_t)n) != (ssize_t)n) {
            fv_seterr(err, errlen, "read %s: %s", path, strerror(errno));
            return FV_EIO;
        }
        char *nl = memrchr(buf, '\n', n);
        if (nl) {
            end -= (off_t)(n - (size_t)(nl - buf) - 1);
            break;
        }
        end -= (off_t)n;
    }
    return end == st.st_size ? FV_OK : fv_os_ftruncate(fd, end, path, err, errlen);
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
    int fd;
    int rc = fv_os_open(path, O_RDWR | O_CREAT | O_APPEND, 0600, &fd, err, errlen);
    if (rc) rc = FV_EIO;
    if (rc == FV_OK) rc = cut_torn_tail(fd, path, err, errlen);
    size_t n = strlen(line);
    line[n] = '\n'; /* json_dumps' NUL becomes the newline; the buffer holds n + 1 bytes */
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
