/* test_sched.c - os/sched.h: the slice a thread asks for is the one the kernel gives it (read
 * back from /proc/thread-self/sched, where the kernel prints it: se.slice, in ns), its nice
 * value is kept, and a thread's request is its own (threads started before keep theirs). Skipped
 * where the kernel does not print per-thread slices (before 6.12, or without CONFIG_SCHED_DEBUG).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "os/sched.h"
#include "util/err.h"

/* The calling thread's se.slice in ns, or -1 when the kernel does not print it. */
static long long my_slice_ns(void)
{
    FILE *f = fopen("/proc/thread-self/sched", "r");
    if (f == NULL) return -1;
    char line[256];
    long long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "se.slice", 8) != 0) continue;
        const char *colon = strchr(line, ':');
        if (colon) sscanf(colon + 1, "%lld", &v);
        break;
    }
    fclose(f);
    return v;
}

struct other {
    int go[2]; /* a pipe: the thread reads its slice once a byte arrives */
    long long slice;
};

static void *other_thread(void *arg)
{
    struct other *o = arg;
    char c;
    if (read(o->go[0], &c, 1) != 1) return NULL;
    o->slice = my_slice_ns();
    return NULL;
}

static void slice_is_set_and_nice_kept(void **state)
{
    (void)state;
    long long before = my_slice_ns();
    if (before < 0) skip();
    /* A thread started before the request (as the server's other threads are). */
    struct other o = {.slice = -2};
    assert_int_equal(pipe(o.go), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, &o), 0);

    pid_t tid = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int nice0 = getpriority(PRIO_PROCESS, (id_t)tid);
    int want_nice = nice0 < 19 ? nice0 + 1 : nice0; /* raising one's own nice needs no right */
    assert_int_equal(setpriority(PRIO_PROCESS, (id_t)tid, want_nice), 0);

    char err[256] = "";
    assert_int_equal(fv_os_sched_slice(300, err, sizeof err), FV_OK);
    assert_int_equal(my_slice_ns(), 300000);
    errno = 0;
    assert_int_equal(getpriority(PRIO_PROCESS, (id_t)tid), want_nice);

    /* The other thread keeps its slice: the request was this thread's. */
    assert_int_equal(write(o.go[1], "x", 1), 1);
    pthread_join(t, NULL);
    close(o.go[0]);
    close(o.go[1]);
    assert_int_equal(o.slice, before);

    /* 0 leaves the slice as it is. */
    assert_int_equal(fv_os_sched_slice(0, err, sizeof err), FV_OK);
    assert_int_equal(my_slice_ns(), 300000);
    assert_int_equal(fv_os_sched_slice(2000, err, sizeof err), FV_OK);
    assert_int_equal(my_slice_ns(), 2000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slice_is_set_and_nice_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
