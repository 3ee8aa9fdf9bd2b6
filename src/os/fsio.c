/* fsio.c - see fsio.h. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/fsio.h"
#include "util/err.h"

/* ---- fault injection ----------------------------------------------------------------------
 * Process-wide on purpose, like SQLite's table of system calls: every module's I/O goes
 * through here without a context to carry. Rules are written only by fv_os_fault_set/clear
 * (no other thread doing I/O, says the contract) and by the one-time read of FV_FAULT; calls
 * read them with atomic loads. */

#define MAX_RULES 16

struct rule {
    int op, err, sticky;
    uint64_t nth;
};

static const char *const op_names[FV_OS_NOPS] = {"write",  "fsync", "dirsync", "rename",
                                                 "unlink", "open",  "mkdir",   "truncate"};

static struct rule rules[MAX_RULES];
static int nrules;                 /* atomic */
static uint64_t calls[FV_OS_NOPS]; /* atomic */
static uint64_t injected;          /* atomic */
static int log_mode;               /* 0 none, 1 injected faults, 2 every call */
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static const struct {
    const char *name;
    int value;
} errnos[] = {{"ENOSPC", ENOSPC}, {"EIO", EIO},     {"EDQUOT", EDQUOT}, {"EROFS", EROFS},
              {"EACCES", EACCES}, {"EPERM", EPERM}, {"EFBIG", EFBIG},   {"ENOMEM", ENOMEM},
              {"EAGAIN", EAGAIN}, {"EINTR", EINTR}};

static const char *errno_name(int e)
{
    for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
        if (errnos[i].value == e) return errnos[i].name;
    return "errno";
}

static void read_env(void)
{
    const char *l = getenv("FV_FAULT_LOG");
    if (l && *l) log_mode = strcmp(l, "all") == 0 ? 2 : strcmp(l, "0") != 0;
    const char *spec = getenv("FV_FAULT");
    char err[256];
    if (spec && *spec && fv_os_fault_parse(spec, err, sizeof err) != FV_OK) {
        fprintf(stderr, "fv-fault: bad FV_FAULT: %s\n", err);
        abort();
    }
}

const char *fv_os_op_name(enum fv_os_op op)
{
    return (unsigned)op < FV_OS_NOPS ? op_names[op] : NULL;
}

static int add_rule(enum fv_os_op op, uint64_t nth, int errno_value, int sticky)
{
    int n = __atomic_load_n(&nrules, __ATOMIC_ACQUIRE);
    if ((unsigned)op >= FV_OS_NOPS || nth == 0 || errno_value <= 0) return FV_EINVAL;
    if (n == MAX_RULES) return FV_ELIMIT;
    rules[n] = (struct rule){(int)op, errno_value, sticky, nth};
    __atomic_store_n(&nrules, n + 1, __ATOMIC_RELEASE);
    return FV_OK;
}

int fv_os_fault_set(enum fv_os_op op, uint64_t nth, int errno_value, int sticky)
{
    pthread_once(&env_once, read_env);
    return add_rule(op, nth, errno_value, sticky);
}

void fv_os_fault_clear(void)
{
    pthread_once(&env_once, read_env);
    __atomic_store_n(&nrules, 0, __ATOMIC_RELEASE);
    for (int i = 0; i < FV_OS_NOPS; i++)
        __atomic_store_n(&calls[i], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&injected, 0, __ATOMIC_RELAXED);
}

uint64_t fv_os_fault_calls(enum fv_os_op op)
{
    return (unsigned)op < FV_OS_NOPS ? __atomic_load_n(&calls[op], __ATOMIC_RELAXED) : 0;
}

uint64_t fv_os_fault_injected(void)
{
    return __atomic_load_n(&injected, __ATOMIC_RELAXED);
}

int fv_os_fault_parse(const char *spec, char *err, size_t errlen)
{
    char buf[512];
    if (snprintf(buf, sizeof buf, "%s", spec) >= (int)sizeof buf) {
        fv_seterr(err, errlen, "fault spec too long");
        return FV_EINVAL;
    }
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *c1 = strchr(item, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL) {
            fv_seterr(err, errlen, "\"%s\": want CLASS:N:ERRNO", item);
            return FV_EINVAL;
        }
        *c1 = *c2 = '\0';
        int op = -1;
        for (int i = 0; i < FV_OS_NOPS; i++)
            if (strcmp(item, op_names[i]) == 0) op = i;
        char *end;
        errno = 0;
        unsigned long long nth = strtoull(c1 + 1, &end, 10);
        int sticky = *end == '+';
        if (sticky) end++;
        int e = 0;
        for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
            if (strcmp(c2 + 1, errnos[i].name) == 0) e = errnos[i].value;
        char *eend = NULL;
        if (e == 0) e = (int)strtol(c2 + 1, &eend, 10);
        if (op < 0 || errno || *end || nth == 0 || c1[1] == '-' || e <= 0 || (eend && *eend)) {
            fv_seterr(err, errlen, "\"%s:%s:%s\": unknown class, bad N or unknown errno", item,
                      c1 + 1, c2 + 1);
            return FV_EINVAL;
        }
        int rc = add_rule((enum fv_os_op)op, nth, e, sticky);
        if (rc) {
            fv_seterr(err, errlen, "too many fault rules (at most %d)", MAX_RULES);
            return rc;
        }
    }
    return FV_OK;
}

/* Counts a call of op on path; returns the errno to fail it with, or 0 to make it. */
static int fault(enum fv_os_op op, const char *path)
{
    pthread_once(&env_once, read_env);
    uint64_t n = __atomic_add_fetch(&calls[op], 1, __ATOMIC_RELAXED);
    int e = 0;
    int nr = __atomic_load_n(&nrules, __ATOMIC_ACQUIRE);
    for (int i = 0; i < nr && e == 0; i++)
        if (rules[i].op == (int)op && (n == rules[i].nth || (rules[i].sticky && n > rules[i].nth)))
            e = rules[i].err;
    if (e) __atomic_add_fetch(&injected, 1, __ATOMIC_RELAXED);
    if ((e && log_mode) || log_mode == 2) {
        char line[PATH_MAX + 96];
        int len = e ? snprintf(line, sizeof line, "fv-fault: inject %s #%llu %s %s\n", op_names[op],
                               (unsigned long long)n, errno_name(e), path)
                    : snprintf(line, sizeof line, "fv-fault: call %s #%llu %s\n", op_names[op],
                               (unsigned long long)n, path);
        if (len > (int)sizeof line) len = (int)sizeof line;
        /* One write(2) per line: lines from several threads never interleave. */
        if (len > 0 && write(STDERR_FILENO, line, (size_t)len) < 0) { /* nothing to do */
        }
    }
    return e;
}

/* ---- calls --------------------------------------------------------------------------------- */

static int fail(const char *call, const char *path, char *err, size_t errlen)
{
    int e = errno;
    fv_seterr(err, errlen, "%s %s: %s", call, path, strerror(e));
    errno = e;
    return FV_EIO;
}

/* Fails with injected errno e (after a torn write, for writes). */
static int inject(int e, const char *call, const char *path, char *err, size_t errlen)
{
    errno = e;
    return fail(call, path, err, errlen);
}

static int write_loop(int fd, const char *p, size_t len, off_t off, int positional,
                      const char *path, char *err, size_t errlen)
{
    while (len) {
        ssize_t n = positional ? pwrite(fd, p, len, off) : write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail(positional ? "pwrite" : "write", path, err, errlen);
        }
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return FV_OK;
}

/* One counted write: an injected fault writes the first half for real, then fails. */
static int counted_write(int fd, const void *buf, size_t len, off_t off, int positional,
                         const char *path, char *err, size_t errlen)
{
    int e = fault(FV_OS_WRITE, path);
    if (e == 0) return write_loop(fd, buf, len, off, positional, path, err, errlen);
    write_loop(fd, buf, len / 2, off, positional, path, NULL, 0);
    return inject(e, positional ? "pwrite" : "write", path, err, errlen);
}

int fv_os_write_all(int fd, const void *buf, size_t len, const char *path, char *err, size_t errlen)
{
    return counted_write(fd, buf, len, 0, 0, path, err, errlen);
}

int fv_os_pwrite_all(int fd, const void *buf, size_t len, off_t off, const char *path, char *err,
                     size_t errlen)
{
    return counted_write(fd, buf, len, off, 1, path, err, errlen);
}

int fv_os_fsync(int fd, const char *path, char *err, size_t errlen)
{
    int e = fault(FV_OS_FSYNC, path);
    if (e) return inject(e, "fsync", path, err, errlen);
    return fsync(fd) == 0 ? FV_OK : fail("fsync", path, err, errlen);
}

int fv_os_fdatasync(int fd, const char *path, char *err, size_t errlen)
{
    int e = fault(FV_OS_FSYNC, path);
    if (e) return inject(e, "fdatasync", path, err, errlen);
    return fdatasync(fd) == 0 ? FV_OK : fail("fdatasync", path, err, errlen);
}

int fv_os_fsync_dir(const char *dir, char *err, size_t errlen)
{
    int e = fault(FV_OS_DIRSYNC, dir);
    if (e) return inject(e, "fsync", dir, err, errlen);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return fail("open", dir, err, errlen);
    int rc = fsync(fd) == 0 ? FV_OK : fail("fsync", dir, err, errlen);
    close(fd);
    return rc;
}

int fv_os_open(const char *path, int flags, mode_t mode, int *fd, char *err, size_t errlen)
{
    *fd = -1;
    int e = fault(FV_OS_OPEN, path);
    if (e == 0) *fd = open(path, flags | O_CLOEXEC, mode);
    if (e == 0 && *fd >= 0) return FV_OK;
    int rc = e ? inject(e, "open", path, err, errlen) : fail("open", path, err, errlen);
    if (errno == EEXIST) return FV_EEXIST;
    return errno == ENOENT ? FV_ENOENT : rc;
}

int fv_os_rename(const char *from, const char *to, char *err, size_t errlen)
{
    int e = fault(FV_OS_RENAME, from);
    if (e) return inject(e, "rename", from, err, errlen);
    return rename(from, to) == 0 ? FV_OK : fail("rename", from, err, errlen);
}

int fv_os_unlink(const char *path, char *err, size_t errlen)
{
    int e = fault(FV_OS_UNLINK, path);
    if (e) return inject(e, "unlink", path, err, errlen);
    if (unlink(path) == 0) return FV_OK;
    if (errno == ENOENT) return FV_ENOENT;
    return fail("unlink", path, err, errlen);
}

int fv_os_ftruncate(int fd, off_t len, const char *path, char *err, size_t errlen)
{
    int e = fault(FV_OS_TRUNCATE, path);
    if (e) return inject(e, "truncate", path, err, errlen);
    return ftruncate(fd, len) == 0 ? FV_OK : fail("truncate", path, err, errlen);
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
    int rc = fv_os_unlink(tmp, err, errlen);
    if (rc != FV_OK && rc != FV_ENOENT) return rc;
    int fd;
    rc = fv_os_open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode, &fd, err, errlen);
    if (rc != FV_OK) return rc == FV_ENOENT ? FV_EIO : rc;
    rc = fv_os_write_all(fd, data, len, tmp, err, errlen);
    if (rc == FV_OK && fchmod(fd, mode) != 0) rc = fail("fchmod", tmp, err, errlen);
    if (rc == FV_OK) rc = fv_os_fsync(fd, tmp, err, errlen);
    close(fd);
    if (rc == FV_OK) rc = fv_os_rename(tmp, path, err, errlen);
    if (rc != FV_OK) {
        fv_os_unlink(tmp, NULL, 0); /* best effort: the next attempt removes a leftover */
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
            int e = fault(FV_OS_MKDIR, buf);
            if (e) return inject(e, "mkdir", buf, err, errlen);
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
