/*
 * subjects_rows.h - the subject registry's rows as they are, for replicating them between
 * the nodes of a cluster (cluster/jssubjects.h; docs/cluster.md, "Owner periods and
 * consents"). Rows name devices and subjects by pseudonym and hold owner ids sealed (S3), so
 * nothing here is in clear: a node copies rows it cannot read.
 *
 * Rules:
 *  R1 a device's period rows are written as a whole list (fv_period_rows_put): existing
 *     epochs are updated in place (until, owner, forgotten) and new ones inserted, so
 *     fv_subjects_opened_since still reports every period opened (rowids grow); epochs past
 *     the list are deleted (a change of owner made here that lost a conflict to the
 *     cluster's: jssubjects.h P3). The list must keep S1 (epochs 1..n contiguous, only the
 *     last open): FV_EINVAL else.
 *  R2 a subject's consent rows are replaced as a whole (one transaction), in the order given;
 *     a forgotten subject (fv_subjects_forget, or its data key destroyed) has none, and
 *     fv_consent_rows_put with forgotten set deletes them (cells zeroed as in forget).
 *  R3 every write is one transaction of the caller's keystore connection; other connections
 *     (the ingest's, the API's) see it as a change of the catalog (PRAGMA data_version).
 *
 * Threads: the keystore's (one thread at a time).
 */
#ifndef FV_PRIVACY_SUBJECTS_ROWS_H
#define FV_PRIVACY_SUBJECTS_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/keys.h"
#include "privacy/policy.h"
#include "privacy/subjects.h"

#define FV_PERIOD_ROWS_MAX  250 /* epochs a device may have in a replicated list */
#define FV_OWNER_SEALED_MAX (12 + FV_SUBJECT_OWNER_MAX + 16)

struct fv_period_row {
    int epoch;
    char subject[FV_PSEUDONYM_LEN + 1];
    int64_t since, until; /* until FV_SUBJECT_FOREVER while open */
    int64_t forgotten;    /* 0: never */
    unsigned char owner[FV_OWNER_SEALED_MAX];
    size_t owner_len; /* 0: none */
};

struct fv_consent_row {
    char purpose[FV_POLICY_NAME_MAX + 1];
    int granted;
    int64_t at;
    char by[FV_SUBJECT_BY_MAX + 1];
};

struct fv_consent_rows {
    struct fv_consent_row *v;
    size_t n, cap;
    int forgotten;
    int stale; /* fv_consent_rows_get: forgotten, yet rows still in the table (R2 deletes) */
};
int fv_consent_rows_add(struct fv_consent_rows *c, const struct fv_consent_row *r);
void fv_consent_rows_free(struct fv_consent_rows *c);

/* fn for each device pseudonym with period rows, then FV_OK; stops at fn's first non-zero. */
int fv_period_devices(struct fv_keystore *ks, int (*fn)(void *arg, const char *dpseudo), void *arg);
/* The device's rows, oldest first, into out[0..cap); *n rows (0: only the implicit epoch 1).
 * FV_OK, FV_ELIMIT (more than cap), FV_EIO. */
int fv_period_rows_get(struct fv_keystore *ks, const char *dpseudo, struct fv_period_row *out,
                       size_t cap, size_t *n);
/* R1. FV_OK, FV_EINVAL (rows break S1, err says how), FV_EIO. */
int fv_period_rows_put(struct fv_keystore *ks, const char *dpseudo,
                       const struct fv_period_row *rows, size_t n, char *err, size_t errlen);

/* fn for each subject pseudonym with consent rows or a forgotten period. */
int fv_consent_subjects(struct fv_keystore *ks, int (*fn)(void *arg, const char *spseudo),
                        void *arg);
/* The subject's consent rows in time order (at, then recording) into out (reset first);
 * out->forgotten set when its period is forgotten or its data key destroyed (then no rows, and
 * out->stale set if the table still holds some: fv_consent_rows_put with forgotten clears them).
 * FV_OK, FV_ENOMEM, FV_EIO. */
int fv_consent_rows_get(struct fv_keystore *ks, const char *spseudo, struct fv_consent_rows *out);
/* R2. FV_OK, FV_EIO (err set). */
int fv_consent_rows_put(struct fv_keystore *ks, const char *spseudo,
                        const struct fv_consent_rows *rows, char *err, size_t errlen);

#endif
