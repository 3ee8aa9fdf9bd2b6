/*
 * sched.h - asking the kernel's scheduler to run a latency-bound thread promptly.
 *
 * Linux's EEVDF scheduler (6.6 on; per-thread slices from 6.12) picks, among the runnable
 * threads that are owed CPU, the one with the earliest virtual deadline, and a thread's
 * deadline is its last pick plus its slice scaled by its weight. A thread that asks for a
 * short slice therefore runs sooner after it wakes when the cores are busy, without a larger
 * share of CPU: it is only preempted sooner too. The ingest loop and the WAL writer do a
 * little work per wake-up (decode, seal, append, ack; one fdatasync) and then sleep, so a
 * short slice costs them nothing and cuts the time an ack waits for a core behind a busy
 * neighbour (docs/architecture.md "Threads"). Needs no privilege: a SCHED_OTHER thread may
 * set its own slice (sched_attr.sched_runtime, clamped by the kernel to 0.1-100 ms). Older
 * kernels ignore the request.
 *
 * Thread-safety: acts on the calling thread only; any thread may call it. Threads the caller
 * starts afterwards inherit the slice (clone copies it): ask after starting the others.
 */
#ifndef FV_OS_SCHED_H
#define FV_OS_SCHED_H

#include <stddef.h>

/* Requests a scheduler slice of slice_us microseconds for the calling thread, keeping its
 * policy (SCHED_OTHER) and nice value. 0 does nothing. FV_OK, or FV_EIO with the reason in
 * err (e.g. a kernel without sched_setattr). */
int fv_os_sched_slice(unsigned slice_us, char *err, size_t errlen);

#endif
