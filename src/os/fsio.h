/*
 * fsio.h - the one place where durable file I/O happens: full writes, fsync of files and
 * directories, atomic file replacement (temp -> fsync -> rename -> fsync dir), mkdir -p,
 * and the creations, renames, truncations and unlinks of the files fleetvault writes.
 * Nothing outside src/os calls write(2), fsync(2), rename(2), unlink(2) and friends on a
 * data file (SQLite, which does its own I/O, aside).
 *
 * Every function returns FV_OK or a negative FV_E* code (FV_EIO for a failed call) and
 * writes "CALL PATH: strerror" into err, keeping errno. Thread-safe: the only shared state is
 * the fault table below, read with atomics.
 *
 * Fault injection (as SQLite's os layer allows): each call is counted in its operation
 * class, across all threads, and a rule can make the Nth call of a class fail with a chosen
 * errno, before the real call is made (an injected write first writes half of its bytes
 * for real, as a full disk or a failing device leaves a torn tail). Rules come from
 *
 *   FV_FAULT="CLASS:N:ERRNO[,CLASS:N:ERRNO...]"   read once, at the first call
 *
 * CLASS is write (write/pwrite), fsync (fsync and fdatasync of a file), dirsync (fsync of
 * a directory), rename, unlink, open (fv_os_open: the files fleetvault creates or writes,
 * the WAL files it replays included), mkdir (each component mkdir -p makes), truncate. N
 * counts from 1; "N+" fails the Nth call and every later one (a full disk stays full).
 * ERRNO is a name (ENOSPC, EIO, EDQUOT, EROFS, EACCES, EPERM, EFBIG, ENOMEM, EAGAIN, EINTR)
 * or a number. Example: FV_FAULT="write:10:ENOSPC,rename:2+:EIO". A malformed FV_FAULT is
 * reported on stderr and aborts the process (a test must not silently run without faults).
 *
 * FV_FAULT_LOG=1 prints each injected fault to stderr as one line
 *   "fv-fault: inject CLASS #N ERRNO PATH"
 * and FV_FAULT_LOG=all also prints every counted call ("fv-fault: call CLASS #N PATH"), so a
 * test can enumerate the failure points of a workload before injecting them. With neither
 * variable set the cost is one relaxed atomic increment per call.
 */
#ifndef FV_OS_FSIO_H
#define FV_OS_FSIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* write(2) until all len bytes are written (retries EINTR and short writes). */
int fv_os_write_all(int fd, const void *buf, size_t len, const char *path, char *err,
                    size_t errlen);
/* pwrite(2) until all len bytes are written. */
int fv_os_pwrite_all(int fd, const void *buf, size_t len, off_t off, const char *path, char *err,
                     size_t errlen);
int fv_os_fsync(int fd, const char *path, char *err, size_t errlen);
int fv_os_fdatasync(int fd, const char *path, char *err, size_t errlen);
/* Opens the directory and fsyncs it, making renames and creations in it durable. */
int fv_os_fsync_dir(const char *dir, char *err, size_t errlen);
/* Writes path atomically with the given mode: path.tmp, fsync, rename, fsync dir. */
int fv_os_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, char *err,
                            size_t errlen);
/* mkdir -p with mode for created components; each one created is made durable (its parent
 * directory fsync'd). */
int fv_os_mkdirs(const char *path, mode_t mode, char *err, size_t errlen);
/* Reads a whole file (up to max bytes) into a malloc'd NUL-terminated buffer. */
int fv_os_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
                    size_t errlen);
/* open(2) of a file to create or write (flags get O_CLOEXEC); *fd is the descriptor, or -1.
 * FV_EEXIST for O_EXCL on an existing file, FV_ENOENT for a missing one, else FV_EIO. */
int fv_os_open(const char *path, int flags, mode_t mode, int *fd, char *err, size_t errlen);
/* rename(2) from -> to (the caller fsyncs the directory). */
int fv_os_rename(const char *from, const char *to, char *err, size_t errlen);
/* unlink(2); FV_ENOENT (and no message) if path does not exist. */
int fv_os_unlink(const char *path, char *err, size_t errlen);
/* ftruncate(2) to len bytes (the caller fsyncs). */
int fv_os_ftruncate(int fd, off_t len, const char *path, char *err, size_t errlen);

/* ---- fault injection (tests) --------------------------------------------------------- */

enum fv_os_op {
    FV_OS_WRITE,
    FV_OS_FSYNC,
    FV_OS_DIRSYNC,
    FV_OS_RENAME,
    FV_OS_UNLINK,
    FV_OS_OPEN,
    FV_OS_MKDIR,
    FV_OS_TRUNCATE,
    FV_OS_NOPS
};

/* The class's name in FV_FAULT ("write", ...), or NULL for an unknown op. */
const char *fv_os_op_name(enum fv_os_op op);
/* Adds a rule: call nth (from 1, counted from process start or the last clear) of op fails
 * with errno_value; every later one too if sticky. FV_ELIMIT when the table (16 rules) is
 * full. Call it while no other thread does I/O. */
int fv_os_fault_set(enum fv_os_op op, uint64_t nth, int errno_value, int sticky);
/* Removes every rule (those from FV_FAULT included) and resets the counters to 0. */
void fv_os_fault_clear(void);
/* Calls of op counted so far, and faults injected so far (all classes). */
uint64_t fv_os_fault_calls(enum fv_os_op op);
uint64_t fv_os_fault_injected(void);
/* Parses a FV_FAULT spec and adds its rules; FV_EINVAL with a message for a bad one. */
int fv_os_fault_parse(const char *spec, char *err, size_t errlen);

#endif
