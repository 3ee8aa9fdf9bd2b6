/*
 * label_queue.h - the labelers' leases (issue 12 item 5): which labeler holds which clip,
 * until when. Pure bookkeeping in memory; what may be offered (de-identification passed,
 * consent, not labeled yet) is decided by the caller (api/labeling_api.c).
 *
 * Rules:
 *  L1 a labeler holds at most one clip at a time; a clip is held by at most one labeler;
 *  L2 a lease ends at its expiry (claimed + lease_ms), at release, or when its clip is
 *     dropped (labeled, erased); an expired lease counts as absent everywhere;
 *  L3 a claim of a clip held (unexpired) by another labeler is refused (FV_EAGAIN); a claim
 *     by a labeler who holds a clip is refused (FV_EEXIST) and names that clip - even when
 *     it is the same clip (the caller answers 409 naming it);
 *  L4 only the holder releases its clip (FV_ENOENT otherwise, nothing changed).
 * Leases are not persisted: after a restart every clip is free again (documented in
 * docs/data-engine.md "Labeling").
 *
 * Threads: one owner at a time (the API thread); no locks, no globals.
 */
#ifndef FV_DATA_LABEL_QUEUE_H
#define FV_DATA_LABEL_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#define FV_LABEL_NAME_MAX  64 /* a labeler's principal name, a clip's id: bytes at most */
#define FV_LABEL_LEASE_DEF (30 * 60 * 1000LL)

struct fv_label_queue;

/* A new, empty table whose leases last lease_ms (> 0). FV_OK, FV_EINVAL, FV_ENOMEM. */
int fv_label_queue_new(int64_t lease_ms, struct fv_label_queue **out);
void fv_label_queue_free(struct fv_label_queue *q);
int64_t fv_label_queue_lease_ms(const struct fv_label_queue *q);

/* The clip labeler holds at now (L2), copied to clip (FV_LABEL_NAME_MAX + 1 bytes), its
 * expiry in *until (may be NULL). 1 if it holds one, 0 if not. */
int fv_label_held(const struct fv_label_queue *q, const char *labeler, int64_t now, char *clip,
                  int64_t *until);
/* 1 if clip is held at now by someone, with the holder copied to holder (NULL: not wanted;
 * else FV_LABEL_NAME_MAX + 1 bytes); 0 if it is free. */
int fv_label_holder(const struct fv_label_queue *q, const char *clip, int64_t now, char *holder);
/* L1, L3: labeler claims clip at now. FV_OK (its expiry in *until, may be NULL), FV_EEXIST
 * (the labeler holds held_clip, copied if not NULL), FV_EAGAIN (another holds clip),
 * FV_EINVAL (a name empty or too long), FV_ENOMEM. */
int fv_label_claim(struct fv_label_queue *q, const char *labeler, const char *clip, int64_t now,
                   int64_t *until, char *held_clip);
/* L4: ends labeler's lease of clip. FV_OK, FV_ENOENT (not held by labeler at now). */
int fv_label_release(struct fv_label_queue *q, const char *labeler, const char *clip, int64_t now);
/* L2: ends any lease of clip (it was labeled or erased). */
void fv_label_drop(struct fv_label_queue *q, const char *clip);
/* Unexpired leases at now. */
size_t fv_label_count(const struct fv_label_queue *q, int64_t now);

#endif
