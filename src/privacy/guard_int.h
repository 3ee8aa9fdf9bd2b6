/*
 * guard_int.h - internal to the access guard in src/privacy (guard.c decides and audits,
 * guard_quota.c keeps the daily quotas, G5); not a public contract: guard.h is.
 * Threading: the guard's (the server's API thread).
 */
#ifndef FV_PRIVACY_GUARD_INT_H
#define FV_PRIVACY_GUARD_INT_H

#include <stddef.h>
#include <stdint.h>

#include "privacy/guard.h"

/* G5: would subjects/rows/bytes more take ctx's principal over its quota, or its role over
 * the role's budget? FV_OK, or FV_ELIMIT with the reason (without the "quota: " prefix). */
int fv_guard__quota_check(const struct fv_guard *g, const struct fv_guard_ctx *ctx,
                          uint64_t subjects, uint64_t rows, uint64_t bytes, char *reason,
                          size_t reasonlen);
/* G5: counts what was served against the principal and its role (and raises the 80% alert);
 * save: write both counters to DATA/quota.db now (else only when near a limit, and in the
 * batch within a second: guard_quota.c). */
void fv_guard__quota_count(struct fv_guard *g, const struct fv_guard_ctx *ctx, uint64_t subjects,
                           uint64_t rows, uint64_t bytes, int save);
/* G5: writes the batch of counters when one is due. Every loop turn (fv_guard_tick). */
void fv_guard__quota_tick(struct fv_guard *g);
/* P7: the subjects of the principal's unapproved bulk exports today. */
uint64_t fv_guard__bulk_today(const struct fv_guard *g, const struct fv_guard_ctx *ctx);
/* P7: counts an unapproved bulk export's subjects (saved at once). */
void fv_guard__count_bulk(struct fv_guard *g, const struct fv_guard_ctx *ctx, uint64_t subjects);
/* Opens the persisted counters (path: DATA/quota.db; today's loaded); closes: saves all. */
int fv_guard__quota_open(struct fv_guard *g, const char *path, char *err, size_t errlen);
void fv_guard__quota_close(struct fv_guard *g);

#endif
