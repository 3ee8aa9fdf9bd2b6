/* prio.c - a thread's own nice value (prio.h). */
#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/prio.h"

int fv_thread_set_nice(int nice)
{
    /* PRIO_PROCESS with a thread id addresses that one thread on Linux. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) != 0) return errno;
    return 0;
}
