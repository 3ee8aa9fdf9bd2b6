/*
 * clip_store.h - the encrypted clip store (issue 12, item 2 and the clip side of item 3):
 * finished clips sealed with their subject's data key, their metadata in the catalog, the
 * de-identification status, and erasure.
 *
 * Files: DIR/store/SUBJECT/UPLOAD.clip, SUBJECT the subject's keystore pseudonym (no device
 * id on disk, crypto/keys.h K2), UPLOAD the random upload id; the content is
 * nonce || AES-256-GCM(subject's data key, clip, AAD = "fv-clip:" SUBJECT ":" UPLOAD) || tag,
 * written temp -> fsync -> rename -> fsync dir before the row that names it is committed.
 *
 * Table (fv_clip_store_init creates it in the catalog):
 *   clips(id TEXT PRIMARY KEY,        -- the upload id (the file's name)
 *         subject TEXT NOT NULL,      -- keystore pseudonym of the subject (owner period)
 *         device TEXT NOT NULL,       -- keystore pseudonym of the device id
 *         clip_id TEXT NOT NULL, campaign TEXT NOT NULL, trigger TEXT NOT NULL,
 *         trigger_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL,
 *         lat REAL, lon REAL,         -- coarse place (privacy/location.h L4), NULL if none
 *         size INTEGER NOT NULL, sha256 TEXT NOT NULL,
 *         deid TEXT NOT NULL,         -- pending | passed | failed | timeout
 *         deid_exit INTEGER, deid_summary TEXT, deid_ms INTEGER,
 *         UNIQUE(device, clip_id))
 * The per-purpose pseudonym a reader sees is made per read from the subject (privacy/guard.h
 * G10), never stored: it follows the request's purpose and dies with the subject's key.
 *
 * Rules:
 *  C1 a clip is acknowledged (fv_clip_store_put returns FV_OK) only once its sealed file and
 *     its row are durable;
 *  C2 only a clip whose de-identification passed may reach a labeler or a dataset:
 *     fv_clip_store_passed is the one gate for them;
 *  C3 erasure of a subject (privacy/erasure.h) destroys its data key (the files become
 *     unreadable at once) and fv_clip_store_purge removes its files and rows (and their
 *     labels, clip_labels.h B2); a restored
 *     backup's clips of an erased subject are purged again at start.
 *
 * Threads: the functions take the calling thread's keystore (crypto/keys.h: one per thread);
 * the files of one clip are written by one thread (the clip server), replaced by one (the
 * de-identification worker, after the server's put) and removed by erasure.
 */
#ifndef FV_DATA_CLIP_STORE_H
#define FV_DATA_CLIP_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "data/clip_upload.h"
#include "util/buf.h"

struct fv_keystore;

/* Creates the clips table if missing. */
int fv_clip_store_init(struct fv_keystore *ks, char *err, size_t errlen);

/* Where the clip was, coarsened; have 0: unknown. */
struct fv_clip_place {
    int have;
    double lat, lon;
};

/* C1: seals the file at path with subject's data key and records it (deid "pending").
 * subject: the keystore name of the owner period the clip belongs to; m->device: the
 * device's keystore pseudonym. */
int fv_clip_store_put(struct fv_keystore *ks, const char *dir, const char *subject,
                      const struct fv_clip_meta *m, const char *path,
                      const struct fv_clip_place *place, int64_t now_ms, char *err, size_t errlen);

/* The bytes of the device's stored clips, and whether clip_id is one of them (device: its
 * keystore pseudonym). */
int fv_clip_store_device(struct fv_keystore *ks, const char *device_pseudo, const char *clip_id,
                         uint64_t *bytes, int *exists);

/* One stored clip's row. */
struct fv_clip_row {
    char id[FV_CLIP_UPLOAD_LEN + 1];
    char subject[33];      /* keystore pseudonym of the subject */
    char subject_name[65]; /* its keystore name ("" when its key is destroyed) */
    char clip_id[FV_CLIP_ID_MAX + 1], campaign[FV_CLIP_ID_MAX + 1], trigger[FV_CLIP_ID_MAX + 1];
    int64_t trigger_ms, received_ms;
    struct fv_clip_place place;
    uint64_t size;
    char sha256[65];
    char deid[16];
    int deid_exit; /* -1: none */
    char deid_summary[512];
};

/* Calls fn for each stored clip (received order); deid: only those with this status (NULL:
 * all). Stops at fn's first non-zero result and returns it. */
int fv_clip_store_list(struct fv_keystore *ks, const char *deid,
                       int (*fn)(void *arg, const struct fv_clip_row *r), void *arg);

/* One stored clip's row by upload id (subject_name as fv_clip_store_list). FV_OK,
 * FV_ENOENT, FV_EIO. */
int fv_clip_store_get(struct fv_keystore *ks, const char *id, struct fv_clip_row *r);

/* Opens a stored clip into out (its subject's key). FV_ENOENT (no such clip), FV_ESTATE
 * (its subject was erased), FV_ECORRUPT (altered), FV_EIO. */
int fv_clip_store_read(struct fv_keystore *ks, const char *dir, const char *id, struct fv_buf *out,
                       char *err, size_t errlen);
/* Replaces a stored clip's content (the de-identified version), sealed again, with its new
 * size and SHA-256. */
int fv_clip_store_replace(struct fv_keystore *ks, const char *dir, const char *id, const void *data,
                          size_t len, char *err, size_t errlen);
/* Records the de-identification outcome: status "passed", "failed" or "timeout". */
int fv_clip_store_set_deid(struct fv_keystore *ks, const char *id, const char *status,
                           int exit_code, const char *summary, int64_t now_ms);
/* C2: 1 if the clip exists and its de-identification passed, else 0. */
int fv_clip_store_passed(struct fv_keystore *ks, const char *id);

/* C3: removes the files and rows of the subject with this keystore pseudonym. */
int fv_clip_store_purge(struct fv_keystore *ks, const char *dir, const char *subject_pseudo,
                        char *err, size_t errlen);

#endif
