/*
 * clip_labels.h - the labels a labeler gave a clip (issue 12 item 5), kept in the catalog
 * beside the clip's row (clip_store.h), with its subject:
 *
 *   clip_labels(clip TEXT PRIMARY KEY,   -- the clip's upload id (clips.id)
 *               subject TEXT NOT NULL,   -- keystore pseudonym of the clip's subject
 *               labeler TEXT NOT NULL,   -- the principal who labeled it
 *               labels TEXT NOT NULL,    -- {"labels": {...}, "tags": [...]} as JSON text
 *               labeled_ms INTEGER NOT NULL)
 *
 * Rules:
 *  B1 a clip has one set of labels; a later submission replaces it (the labeler re-claimed
 *     it after a correction) - the audit log keeps every submission;
 *  B2 labels are the subject's data: listed in the subject's export (api/export.c) and
 *     removed with its clips by fv_clip_store_purge (clip_store.h C3);
 *  B3 a labeled clip is not offered again by the work queue (api/labeling_api.c).
 *  B4 a dataset build reads them (fv_clip_labels_get) into its samples (data/ds_clips.h S7).
 *
 * Threads: the calling thread's keystore (crypto/keys.h: one per thread).
 */
#ifndef FV_DATA_CLIP_LABELS_H
#define FV_DATA_CLIP_LABELS_H

#include <stddef.h>
#include <stdint.h>

struct fv_keystore;

#define FV_CLIP_LABELS_MAX 65536 /* bytes of a clip's labels JSON */

/* Creates the table if missing (fv_clip_store_init calls it). */
int fv_clip_labels_init(struct fv_keystore *ks, char *err, size_t errlen);
/* B1: stores json (at most FV_CLIP_LABELS_MAX bytes) as the labels of clip of subject.
 * FV_OK, FV_ELIMIT, FV_EIO (err). */
int fv_clip_labels_put(struct fv_keystore *ks, const char *clip, const char *subject,
                       const char *labeler, const char *json, int64_t now_ms, char *err,
                       size_t errlen);
/* 1 if clip has labels, 0 if not (or the catalog fails: the caller then offers nothing). */
int fv_clip_labels_has(struct fv_keystore *ks, const char *clip);
/* B4: the labels of clip: *json (its JSON text) and *labeler receive copies (the caller frees
 * them), *labeled_ms the time. FV_OK, FV_ENOENT (no labels: *json and *labeler NULL),
 * FV_ENOMEM, FV_EIO. */
int fv_clip_labels_get(struct fv_keystore *ks, const char *clip, char **json, char **labeler,
                       int64_t *labeled_ms);
/* Calls fn for each labeled clip of subject (clip order); stops at fn's first non-zero
 * result and returns it; FV_EIO if the catalog fails. */
int fv_clip_labels_of_subject(struct fv_keystore *ks, const char *subject,
                              int (*fn)(void *arg, const char *clip, const char *labeler,
                                        const char *json, int64_t labeled_ms),
                              void *arg);
/* B2: removes the labels of subject. FV_OK or FV_EIO. */
int fv_clip_labels_purge(struct fv_keystore *ks, const char *subject);

#endif
