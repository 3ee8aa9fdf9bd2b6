/*
 * subjects_int.h - internal to src/privacy's subject registry (subjects.c: names, owner
 * periods, erasure of a subject; consent.c: consent per purpose). Not a public contract:
 * subjects.h is. Same threading as subjects.h (the caller's catalog connection).
 */
#ifndef FV_PRIVACY_SUBJECTS_INT_H
#define FV_PRIVACY_SUBJECTS_INT_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "crypto/keys.h"
#include "privacy/subjects.h"

struct prow {
    int epoch;
    char name[FV_SUBJECT_NAME_MAX + 1];
    char pseudo[FV_PSEUDONYM_LEN + 1];
    int64_t since, until; /* until FV_SUBJECT_FOREVER while open */
    int64_t forgotten;    /* 0: never */
    unsigned char *owner; /* sealed; NULL when none */
    size_t owner_len;
};

struct periods {
    char device[FV_SUBJECT_NAME_MAX + 1];
    char dpseudo[FV_PSEUDONYM_LEN + 1];
    struct prow *v;
    size_t n; /* 0: only the implicit epoch 1 */
};

/* A device's periods, checked (S1, and each row's pseudonym against its epoch's name): a
 * swapped or edited row is FV_ECORRUPT. Free with fv_subjects__periods_free. */
int fv_subjects__load_periods(struct fv_keystore *ks, const char *device, struct periods *out,
                              char *err, size_t errlen);
void fv_subjects__periods_free(struct periods *p);
/* BEGIN IMMEDIATE; and COMMIT when rc is FV_OK, else ROLLBACK (returns the outcome). */
int fv_subjects__begin(sqlite3 *db, char *err, size_t errlen);
int fv_subjects__commit(sqlite3 *db, int rc, char *err, size_t errlen);
/* A subject name's device, epoch and pseudonym. */
int fv_subjects__ids(struct fv_keystore *ks, const char *subject,
                     char device[FV_SUBJECT_NAME_MAX + 1], int *epoch,
                     char pseudo[FV_PSEUDONYM_LEN + 1], char *err, size_t errlen);

#endif
