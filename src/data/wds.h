/*
 * wds.h - WebDataset training shards: POSIX tar files of samples, NumPy .npy arrays, and
 * the split of samples into train/val/test by a keyed hash of the vehicle.
 *
 * A shard is a plain POSIX (ustar) tar file; the files of one sample share a basename (the
 * sample key) and differ by extension, which names the decoder (KEY.mcap, KEY.json,
 * KEY.speed.npy ...). A shard writer writes members in order and keeps the SHA-256 of
 * every byte it wrote, so the manifest can name each shard's hash without reading it back.
 *
 * Rules:
 *  W1 a member name is at most 255 bytes of printable ASCII without "..", a leading '/' or
 *     a backslash, split into the ustar prefix (<= 155) and name (<= 100) at a '/'; a name
 *     that cannot be split so is refused (FV_EINVAL), nothing written.
 *  W2 a member's size is at most 8 GiB - 1 (the ustar size field: 11 octal digits).
 *  W3 a finished shard ends with two zero blocks and is fsync'd before fv_tar_close
 *     returns FV_OK; a shard whose writer failed or was never closed is not a shard (the
 *     dataset builder writes under a temporary name and renames).
 *  W4 .npy files follow NumPy's format version 1.0: magic "\x93NUMPY", version 1.0, a
 *     little-endian u16 header length, a Python dict literal with 'descr', 'fortran_order'
 *     and 'shape', padded with spaces and ended by '\n' so that the data starts on a
 *     64-byte boundary; data little-endian, C order.
 *  W5 a split is chosen by HMAC-SHA256(key, vehicle pseudonym): its first 8 bytes, big-endian,
 *     as a fraction of 2^64, fall into the cumulative split fractions in the order given.
 *     The same key and vehicle give the same split whatever else the dataset holds, so a
 *     vehicle is never in two splits and splits stay stable as data grows.
 *
 * Threads: a tar writer has one owner; the other functions are reentrant.
 */
#ifndef FV_DATA_WDS_H
#define FV_DATA_WDS_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define FV_TAR_NAME_MAX   255
#define FV_SPLIT_MAX      8
#define FV_SPLIT_NAME_MAX 16

struct fv_tar;

/* Creates path (refused if it exists) for writing. FV_OK, or an error with err set. */
int fv_tar_open(const char *path, struct fv_tar **out, char *err, size_t errlen);
/* Appends a regular file member (mode 0644, owner 0/0, mtime given in seconds). */
int fv_tar_add(struct fv_tar *t, const char *name, const void *data, size_t len, int64_t mtime,
               char *err, size_t errlen);
/* Bytes written so far (headers, data, padding). */
uint64_t fv_tar_bytes(const struct fv_tar *t);
/* Ends the archive (W3), fsyncs and closes it; sha256_hex (65 bytes) receives the hash of
 * the whole file. Frees t whatever the result. */
int fv_tar_close(struct fv_tar *t, char sha256_hex[65], char *err, size_t errlen);
/* Closes and removes a shard being written (on an error path). */
void fv_tar_abort(struct fv_tar *t);

/* W1: FV_OK when name is a valid member name; why receives the reason otherwise. */
int fv_tar_check_name(const char *name, char *why, size_t n);

/* W4: appends an .npy file of a 1-D (cols == 0) or 2-D (rows x cols) array to out. dtype is
 * "<f8", "<f4", "<i8", "<i4" or "|u1"; data holds rows (x cols) elements of it, in host
 * order (converted to little-endian). */
int fv_npy_append(struct fv_buf *out, const char *dtype, const void *data, size_t rows,
                  size_t cols);

struct fv_split {
    char name[FV_SPLIT_NAME_MAX];
    double fraction;
};

/* Parses "train=0.8,val=0.1,test=0.1": 1 to FV_SPLIT_MAX names of [a-z0-9_-] (unique), each
 * fraction in (0, 1], summing to 1 within 1e-6. On error why says what and where. */
int fv_split_parse(const char *spec, struct fv_split *out, size_t *n, char *why, size_t whylen);
/* W5: the index of vehicle's split. */
size_t fv_split_pick(const unsigned char *key, size_t keylen, const char *vehicle,
                     const struct fv_split *splits, size_t n);

#endif
