/*
 * fsio.h - the one place where durable file I/O happens: full writes, fsync of files and
 * directories, atomic file replacement (temp -> fsync -> rename -> fsync dir), mkdir -p.
 *
 * Every function returns FV_OK or FV_EIO and writes "CALL PATH: strerror" into err, keeping
 * errno. Thread-safe (no shared state).
 */
#ifndef FV_OS_FSIO_H
#define FV_OS_FSIO_H

#include <stddef.h>
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

#endif
