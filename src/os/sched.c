/* sched.c - see sched.h. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "os/sched.h"
#include "util/err.h"

/* The kernel's struct sched_attr (include/uapi/linux/sched/types.h), first version (48
 * bytes); glibc 2.36 has no wrapper. */
struct fv_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
};

#define FV_SCHED_OTHER 0

int fv_os_sched_slice(unsigned slice_us, char *err, size_t errlen)
{
    if (slice_us == 0) return FV_OK;
#ifdef SYS_sched_setattr
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    if (nice == -1 && errno) nice = 0;
    struct fv_sched_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.sched_policy = FV_SCHED_OTHER;
    a.sched_nice = nice;
    a.sched_runtime = (uint64_t)slice_us * 1000u;
    if (syscall(SYS_sched_setattr, 0, &a, 0u) != 0) {
        fv_seterr(err, errlen, "sched_setattr(slice %u us): %s", slice_us, strerror(errno));
        return FV_EIO;
    }
    return FV_OK;
#else
    fv_seterr(err, errlen, "sched_setattr: not available on this system");
    return FV_EIO;
#endif
}
