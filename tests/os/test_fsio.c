/* test_fsio.c - the os layer: durable writes, and fault injection (each class fails on its Nth
 * call with the chosen errno; "N+" stays failed; counting across threads; FV_FAULT read from
 * the environment by a real process). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "os/fsio.h"
#include "util/err.h"
#include "../support/testutil.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    fv_os_fault_clear();
    return fv_test_mkdtemp(dir, sizeof dir, "fv-fsio");
}

static int teardown(void **state)
{
    (void)state;
    fv_os_fault_clear();
    return fv_test_rmtree(dir);
}

static void path_in(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

static char *slurp(const char *path)
{
    char *text = NULL;
    size_t len;
    char err[256];
    if (fv_os_read_file(path, 1 << 20, &text, &len, err, sizeof err) != FV_OK) return NULL;
    return text;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Without rules every call succeeds and is counted in its class. */
static void test_counts_without_faults(void **state)
{
    (void)state;
    char p[128], err[256];
    path_in(p, sizeof p, "a");
    assert_int_equal(fv_os_write_file_atomic(p, "hello", 5, 0600, err, sizeof err), FV_OK);
    char *t = slurp(p);
    assert_non_null(t);
    assert_string_equal(t, "hello");
    free(t);
    /* unlink of the leftover temp (ENOENT), create, write, fsync, rename, fsync dir */
    assert_int_equal(fv_os_fault_calls(FV_OS_UNLINK), 1);
    assert_int_equal(fv_os_fault_calls(FV_OS_OPEN), 1);
    assert_int_equal(fv_os_fault_calls(FV_OS_WRITE), 1);
    assert_int_equal(fv_os_fault_calls(FV_OS_FSYNC), 1);
    assert_int_equal(fv_os_fault_calls(FV_OS_RENAME), 1);
    assert_int_equal(fv_os_fault_calls(FV_OS_DIRSYNC), 1);
    assert_int_equal(fv_os_fault_injected(), 0);
    fv_os_fault_clear();
    assert_int_equal(fv_os_fault_calls(FV_OS_WRITE), 0);
}

/* The Nth write fails with ENOSPC after writing half its bytes (a torn tail); the calls
 * before and after it succeed. */
static void test_nth_write_fails_torn(void **state)
{
    (void)state;
    char p[128], err[256];
    path_in(p, sizeof p, "w");
    int fd;
    assert_int_equal(fv_os_open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600, &fd, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_os_fault_set(FV_OS_WRITE, 2, ENOSPC, 0), FV_OK);
    assert_int_equal(fv_os_write_all(fd, "aaaa", 4, p, err, sizeof err), FV_OK);
    errno = 0;
    assert_int_equal(fv_os_write_all(fd, "bbbbbbbb", 8, p, err, sizeof err), FV_EIO);
    assert_int_equal(errno, ENOSPC);
    assert_non_null(strstr(err, "No space left on device"));
    assert_non_null(strstr(err, p));
    assert_int_equal(fv_os_write_all(fd, "cc", 2, p, err, sizeof err), FV_OK);
    assert_int_equal(fv_os_pwrite_all(fd, "D", 1, 0, p, err, sizeof err), FV_OK);
    close(fd);
    char *t = slurp(p);
    assert_string_equal(t, "Daaabbbbcc"); /* half of the failed write is on disk */
    free(t);
    assert_int_equal(fv_os_fault_injected(), 1);
}

/* "N+": the Nth call and every later one fail (a full disk stays full), until cleared. */
static void test_sticky(void **state)
{
    (void)state;
    char p[128], err[256];
    path_in(p, sizeof p, "s");
    int fd;
    assert_int_equal(fv_os_open(p, O_WRONLY | O_CREAT, 0600, &fd, err, sizeof err), FV_OK);
    assert_int_equal(fv_os_fault_set(FV_OS_FSYNC, 3, EIO, 1), FV_OK);
    assert_int_equal(fv_os_fsync(fd, p, err, sizeof err), FV_OK);
    assert_int_equal(fv_os_fdatasync(fd, p, err, sizeof err), FV_OK); /* fdatasync counts too */
    for (int i = 0; i < 5; i++) {
        errno = 0;
        assert_int_equal(fv_os_fdatasync(fd, p, err, sizeof err), FV_EIO);
        assert_int_equal(errno, EIO);
    }
    assert_int_equal(fv_os_fault_injected(), 5);
    fv_os_fault_clear();
    assert_int_equal(fv_os_fsync(fd, p, err, sizeof err), FV_OK);
    close(fd);
}

/* An injected fault stops the real call: nothing is renamed, unlinked, created, truncated. */
static void test_each_class_blocks_the_call(void **state)
{
    (void)state;
    char a[128], b[128], d[128], err[256];
    path_in(a, sizeof a, "a");
    path_in(b, sizeof b, "b");
    path_in(d, sizeof d, "sub/dir");
    int fd;
    assert_int_equal(fv_os_open(a, O_WRONLY | O_CREAT, 0600, &fd, err, sizeof err), FV_OK);
    assert_int_equal(fv_os_write_all(fd, "xyz", 3, a, err, sizeof err), FV_OK);

    assert_int_equal(fv_os_fault_set(FV_OS_RENAME, 1, EIO, 0), FV_OK);
    assert_int_equal(fv_os_rename(a, b, err, sizeof err), FV_EIO);
    assert_true(exists(a) && !exists(b));
    assert_int_equal(fv_os_rename(a, b, err, sizeof err), FV_OK);
    assert_true(!exists(a) && exists(b));

    assert_int_equal(fv_os_fault_set(FV_OS_UNLINK, 1, EIO, 0), FV_OK);
    assert_int_equal(fv_os_unlink(b, err, sizeof err), FV_EIO);
    assert_true(exists(b));

    assert_int_equal(fv_os_fault_set(FV_OS_TRUNCATE, 1, EIO, 0), FV_OK);
    assert_int_equal(fv_os_ftruncate(fd, 0, b, err, sizeof err), FV_EIO);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 3);
    assert_int_equal(fv_os_ftruncate(fd, 1, b, err, sizeof err), FV_OK);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 1);
    close(fd);

    assert_int_equal(fv_os_fault_set(FV_OS_OPEN, 2, ENOSPC, 0), FV_OK);
    assert_int_equal(fv_os_open(a, O_WRONLY | O_CREAT, 0600, &fd, err, sizeof err), FV_EIO);
    assert_int_equal(fd, -1);
    assert_false(exists(a));

    assert_int_equal(fv_os_fault_set(FV_OS_DIRSYNC, 1, EIO, 0), FV_OK);
    assert_int_equal(fv_os_fsync_dir(dir, err, sizeof err), FV_EIO);
    assert_int_equal(fv_os_fsync_dir(dir, err, sizeof err), FV_OK);

    /* mkdir -p counts each component; the last one fails here */
    uint64_t before = fv_os_fault_calls(FV_OS_MKDIR);
    assert_int_equal(fv_os_mkdirs(d, 0700, err, sizeof err), FV_OK);
    uint64_t per = fv_os_fault_calls(FV_OS_MKDIR) - before;
    assert_true(per >= 3);
    char d2[128];
    path_in(d2, sizeof d2, "sub/dir2");
    assert_int_equal(fv_os_fault_set(FV_OS_MKDIR, before + 2 * per, EROFS, 0), FV_OK);
    errno = 0;
    assert_int_equal(fv_os_mkdirs(d2, 0700, err, sizeof err), FV_EIO);
    assert_int_equal(errno, EROFS);
    assert_false(exists(d2));
    assert_int_equal(fv_os_fault_injected(), 6);
    /* the plain errors are still told apart */
    assert_int_equal(fv_os_unlink(a, err, sizeof err), FV_ENOENT);
    assert_int_equal(fv_os_open(b, O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, err, sizeof err),
                     FV_EEXIST);
}

/* A failure at any step of an atomic replacement leaves the old content (or, once the
 * rename is made, the new one), never a mix, and no temp file. */
static void test_atomic_write_at_every_step(void **state)
{
    (void)state;
    char p[128], tmp[140], err[256];
    path_in(p, sizeof p, "f");
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    const enum fv_os_op steps[] = {FV_OS_UNLINK, FV_OS_OPEN,   FV_OS_WRITE,
                                   FV_OS_FSYNC,  FV_OS_RENAME, FV_OS_DIRSYNC};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        fv_os_fault_clear();
        assert_int_equal(fv_os_write_file_atomic(p, "old", 3, 0600, err, sizeof err), FV_OK);
        fv_os_fault_clear();
        assert_int_equal(fv_os_fault_set(steps[i], 1, EIO, 0), FV_OK);
        assert_int_not_equal(fv_os_write_file_atomic(p, "new!", 4, 0600, err, sizeof err), FV_OK);
        char *t = slurp(p);
        assert_non_null(t);
        assert_string_equal(t, steps[i] == FV_OS_DIRSYNC ? "new!" : "old");
        free(t);
        assert_false(exists(tmp));
    }
}

static void test_parse(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(fv_os_fault_parse("write:10:ENOSPC,rename:2+:EIO", err, sizeof err), FV_OK);
    assert_int_equal(
        fv_os_fault_parse("dirsync:1:5,mkdir:3:EROFS,truncate:1:EDQUOT", err, sizeof err), FV_OK);
    const char *bad[] = {"write",      "write:1",      "write:0:EIO",
                         "nope:1:EIO", "write:x:EIO",  "write:1:ENOTREAL",
                         "write:1:-5", "write:-1:EIO", "write:2++:EIO"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(fv_os_fault_parse(bad[i], err, sizeof err), FV_EINVAL);
        assert_true(err[0] != '\0');
    }
    fv_os_fault_clear();
    for (int i = 0; i < 16; i++)
        assert_int_equal(fv_os_fault_set(FV_OS_WRITE, 1000 + (uint64_t)i, EIO, 0), FV_OK);
    assert_int_equal(fv_os_fault_set(FV_OS_WRITE, 2000, EIO, 0), FV_ELIMIT);
    assert_int_equal(fv_os_fault_set(FV_OS_NOPS, 1, EIO, 0), FV_EINVAL);
    assert_string_equal(fv_os_op_name(FV_OS_DIRSYNC), "dirsync");
    assert_null(fv_os_op_name(FV_OS_NOPS));
}

/* Counting is exact across threads: of 4 x 5000 writes, exactly the 7777th fails. */
enum { THREADS = 4, PER_THREAD = 5000 };
static int failures[THREADS];

static void *writer(void *arg)
{
    int i = (int)(intptr_t)arg;
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    for (int k = 0; k < PER_THREAD; k++)
        if (fv_os_write_all(fd, "x", 1, "/dev/null", NULL, 0) != FV_OK) failures[i]++;
    close(fd);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    assert_int_equal(fv_os_fault_set(FV_OS_WRITE, 7777, EIO, 0), FV_OK);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i), 0);
    int total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += failures[i];
    }
    assert_int_equal(total, 1);
    assert_int_equal(fv_os_fault_calls(FV_OS_WRITE), THREADS * PER_THREAD);
}

/* Runs `fleetvault keys init FILE` with FV_FAULT/FV_FAULT_LOG set; returns its exit status
 * and its stderr in out. */
static int run_bin(const char *fault, const char *logmode, const char *file, char *out, size_t n)
{
    const char *bin = getenv("FV_BIN");
    if (bin == NULL) return -1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "FV_FAULT='%s' FV_FAULT_LOG=%s '%s' keys init '%s' 2>&1 >/dev/null",
             fault, logmode, bin, file);
    FILE *f = popen(cmd, "r");
    if (f == NULL) return -1;
    size_t got = fread(out, 1, n - 1, f);
    out[got] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* FV_FAULT is read by a real process at its first I/O; FV_FAULT_LOG names the failure points;
 * a malformed spec stops the process instead of running without faults. */
static void test_environment(void **state)
{
    (void)state;
    if (getenv("FV_BIN") == NULL) {
        print_message("FV_BIN not set: skipped\n");
        skip();
    }
    char k1[128], k2[128], k3[128], out[4096];
    path_in(k1, sizeof k1, "k1");
    path_in(k2, sizeof k2, "k2");
    path_in(k3, sizeof k3, "k3");
    assert_int_not_equal(run_bin("rename:1:EIO", "1", k1, out, sizeof out), 0);
    assert_non_null(strstr(out, "fv-fault: inject rename #1 EIO"));
    assert_false(exists(k1));
    assert_int_equal(run_bin("", "all", k2, out, sizeof out), 0);
    assert_non_null(strstr(out, "fv-fault: call rename #1 "));
    assert_non_null(strstr(out, "fv-fault: call dirsync #1 "));
    assert_true(exists(k2));
    int rc = run_bin("rename:one:EIO", "0", k3, out, sizeof out);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "bad FV_FAULT"));
    assert_false(exists(k3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counts_without_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nth_write_fails_torn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sticky, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_class_blocks_the_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_atomic_write_at_every_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_environment, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
