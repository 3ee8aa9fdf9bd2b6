/*
 * prio.h - a thread's own scheduling priority (its nice value).
 *
 * On Linux a nice value belongs to one thread, and a thread created later inherits its
 * creator's. Lowering priority (a higher value) needs no privilege; raising it (below the
 * current value) needs CAP_SYS_NICE or an RLIMIT_NICE that allows it.
 *
 * Threads: any thread, for itself.
 */
#ifndef FV_UTIL_PRIO_H
#define FV_UTIL_PRIO_H

/* Sets the calling thread's nice value (-20..19). Returns 0, or the errno of the failure
 * (EACCES or EPERM without the privilege to raise it). */
int fv_thread_set_nice(int nice);

#endif
