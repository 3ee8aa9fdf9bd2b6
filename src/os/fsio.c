/* fsio.c - see fsio.h. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/fsio.h"
#include "util/err.h"

static int fail(const char *call, const char *path, char *err, size_t errlen)
{
    int e = errno;
    fv_seterr(err, errlen, "%s %s: %s", call, path, strerror(e));
    errno = e;
    return FV_EIO;
}

int fv_os_write_all(int fd, const void *buf, size_t len, const char *path, char *err, size_t errlen)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail("write", path, err, errlen);
        }
        p += n;
        len -= (size_t)n;
    }
    return FV_OK;
}

int fv_os_pwrite_all(int fd, const void *buf, size_t len, off_t off, const char *path, char *err,
                     size_t errlen)
{
    const char *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail("pwrite", path, err, errlen);
        }
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return FV_OK;
}

int fv_os_fsync(int fd, const char *path, char *err, size_t errlen)
{
    return fsync(fd) == 0 ? FV_OK : fail("fsync", path, err, errlen);
}

int fv_os_fdatasync(int fd, const char *path, char *err, size_t errlen)
{
    return fdatasync(fd) == 0 ? FV_OK : fail("fdatasync", path, err, errlen);
}

int fv_os_fsync_dir(const char *dir, char *err, size_t errlen)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return fail("open", dir, err, errlen);
    int rc = fv_os_fsync(fd, dir, err, errlen);
    close(fd);
    return rc;
}

int fv_os_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, char *err,
                            size_t errlen)
{
    char tmp[PATH_MAX], dcopy[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        fv_seterr(err, errlen, "path too long: %s", path);
        return FV_EINVAL;
    }
    /* A leftover temp file may have a wider mode: remove it and create afresh (O_EXCL), so
     * secret bytes are never written into a file others can read. */
    if (unlink(tmp) != 0 && errno != ENOENT) return fail("unlink", tmp, err, errlen);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return fail("open", tmp, err, errlen);
    int rc = fv_os_write_all(fd, data, len, tmp, err, errlen);
    if (rc == FV_OK && fchmod(fd, mode) != 0) rc = fail("fchmod", tmp, err, errlen);
    if (rc == FV_OK) rc = fv_os_fsync(fd, tmp, err, errlen);
    close(fd);
    if (rc == FV_OK && rename(tmp, path) != 0) rc = fail("rename", tmp, err, errlen);
    if (rc != FV_OK) {
        unlink(tmp);
        return rc;
    }
    snprintf(dcopy, sizeof dcopy, "%s", path);
    return fv_os_fsync_dir(dirname(dcopy), err, errlen);
}

int fv_os_mkdirs(const char *path, mode_t mode, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        fv_seterr(err, errlen, "path too long: %s", path);
        return FV_EINVAL;
    }
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, mode) == 0) {
                /* A directory just made is durable only once its parent is synced. */
                char *slash = strrchr(buf, '/');
                int rc = FV_OK;
                if (slash == buf) {
                    rc = fv_os_fsync_dir("/", err, errlen);
                } else if (slash) {
                    *slash = '\0';
                    rc = fv_os_fsync_dir(buf, err, errlen);
                    *slash = '/';
                } else {
                    rc = fv_os_fsync_dir(".", err, errlen);
                }
                if (rc) return rc;
            } else if (errno != EEXIST) {
                return fail("mkdir", buf, err, errlen);
            }
            *p = c;
            if (c == '\0') break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0) return fail("stat", path, err, errlen);
    if (!S_ISDIR(st.st_mode)) {
        fv_seterr(err, errlen, "%s exists and is not a directory", path);
        return FV_EINVAL;
    }
    return FV_OK;
}

int fv_os_read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        fail("open", path, err, errlen);
        return e == ENOENT ? FV_ENOENT : FV_EIO;
    }
    int rc = FV_EIO;
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) != 0) {
        fail("stat", path, err, errlen);
        goto done;
    }
    if ((size_t)st.st_size > max) {
        fv_seterr(err, errlen, "%s: file of %lld bytes is larger than %zu", path,
                  (long long)st.st_size, max);
        rc = FV_ELIMIT;
        goto done;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = FV_ENOMEM;
        goto done;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fail("read", path, err, errlen);
            goto done;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    buf = NULL;
    rc = FV_OK;
done:
    free(buf);
    close(fd);
    return rc;
}
