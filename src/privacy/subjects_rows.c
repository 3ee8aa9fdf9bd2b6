/* subjects_rows.c - the registry's rows as they are, for replication (subjects_rows.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "privacy/subjects_int.h"
#include "privacy/subjects_rows.h"
#include "util/err.h"

int fv_consent_rows_add(struct fv_consent_rows *c, const struct fv_consent_row *r)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 8;
        struct fv_consent_row *v = realloc(c->v, cap * sizeof *v);
        if (v == NULL) return FV_ENOMEM;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = *r;
    return FV_OK;
}

void fv_consent_rows_free(struct fv_consent_rows *c)
{
    free(c->v);
    *c = (struct fv_consent_rows){0};
}

/* Runs sql (one text parameter ?1, may be NULL) and calls fn with column 0 of each row. */
static int each_text(struct fv_keystore *ks, const char *sql, const char *p1,
                     int (*fn)(void *arg, const char *s), void *arg)
{
    sqlite3_stmt *st = NULL;
    int rc = FV_OK, step = SQLITE_DONE;
    if (sqlite3_prepare_v2(fv_keystore_db(ks), sql, -1, &st, NULL) != SQLITE_OK ||
        (p1 && sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC) != SQLITE_OK)) {
        sqlite3_finalize(st);
        return FV_EIO;
    }
    while (rc == FV_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *s = sqlite3_column_text(st, 0);
        if (s) rc = fn(arg, (const char *)s);
    }
    if (rc == FV_OK && step != SQLITE_DONE) rc = FV_EIO;
    sqlite3_finalize(st);
    return rc;
}

int fv_period_devices(struct fv_keystore *ks, int (*fn)(void *arg, const char *dpseudo), void *arg)
{
    return each_text(ks, "SELECT DISTINCT device FROM subject_periods ORDER BY device", NULL, fn,
                     arg);
}

int fv_consent_subjects(struct fv_keystore *ks, int (*fn)(void *arg, const char *spseudo),
                        void *arg)
{
    return each_text(ks,
                     "SELECT subject FROM consents UNION SELECT subject FROM subject_periods"
                     " WHERE forgotten_ms IS NOT NULL ORDER BY 1",
                     NULL, fn, arg);
}

int fv_period_rows_get(struct fv_keystore *ks, const char *dpseudo, struct fv_period_row *out,
                       size_t cap, size_t *n)
{
    sqlite3_stmt *st = NULL;
    int rc = FV_OK, step = SQLITE_DONE;
    *n = 0;
    if (sqlite3_prepare_v2(fv_keystore_db(ks),
                           "SELECT epoch, subject, since_ms, until_ms, forgotten_ms, owner"
                           " FROM subject_periods WHERE device = ?1 ORDER BY epoch",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, dpseudo, -1, SQLITE_STATIC) != SQLITE_OK) {
        sqlite3_finalize(st);
        return FV_EIO;
    }
    while (rc == FV_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            rc = FV_ELIMIT;
            break;
        }
        struct fv_period_row *r = &out[(*n)++];
        memset(r, 0, sizeof *r);
        r->epoch = sqlite3_column_int(st, 0);
        const unsigned char *s = sqlite3_column_text(st, 1);
        snprintf(r->subject, sizeof r->subject, "%s", s ? (const char *)s : "");
        r->since = sqlite3_column_int64(st, 2);
        r->until = sqlite3_column_type(st, 3) == SQLITE_NULL ? FV_SUBJECT_FOREVER
                                                             : sqlite3_column_int64(st, 3);
        r->forgotten = sqlite3_column_type(st, 4) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 4);
        int ol = sqlite3_column_bytes(st, 5);
        const void *ob = sqlite3_column_blob(st, 5);
        if (ob && ol > 0 && (size_t)ol <= sizeof r->owner) {
            memcpy(r->owner, ob, (size_t)ol);
            r->owner_len = (size_t)ol;
        } else if (ob && ol > 0) {
            rc = FV_EIO; /* an owner longer than any this build seals */
        }
    }
    if (rc == FV_OK && step != SQLITE_DONE) rc = FV_EIO;
    sqlite3_finalize(st);
    return rc;
}

/* S1 over a list of rows. */
static int rows_valid(const struct fv_period_row *rows, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const struct fv_period_row *r = &rows[i];
        int last = i + 1 == n;
        if (r->epoch != (int)i + 1 || (i == 0 && r->since != FV_SUBJECT_ORIGIN) ||
            (i > 0 && r->since != rows[i - 1].until) ||
            (last != (r->until == FV_SUBJECT_FOREVER)) || r->until <= r->since ||
            strlen(r->subject) != FV_PSEUDONYM_LEN) {
            fv_seterr(err, errlen, "period rows break S1 at epoch %d", r->epoch);
            return FV_EINVAL;
        }
    }
    return FV_OK;
}

static int put_row(sqlite3 *db, const char *dpseudo, const struct fv_period_row *r)
{
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(
                 db,
                 "INSERT INTO subject_periods(device, epoch, subject, owner, since_ms, until_ms,"
                 " forgotten_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                 " ON CONFLICT(device, epoch) DO UPDATE SET subject = ?3, owner = ?4,"
                 " since_ms = ?5, until_ms = ?6, forgotten_ms = ?7",
                 -1, &st, NULL) == SQLITE_OK &&
             sqlite3_bind_text(st, 1, dpseudo, -1, SQLITE_STATIC) == SQLITE_OK &&
             sqlite3_bind_int(st, 2, r->epoch) == SQLITE_OK &&
             sqlite3_bind_text(st, 3, r->subject, -1, SQLITE_STATIC) == SQLITE_OK &&
             (r->owner_len ? sqlite3_bind_blob(st, 4, r->owner, (int)r->owner_len, SQLITE_STATIC)
                           : sqlite3_bind_null(st, 4)) == SQLITE_OK &&
             sqlite3_bind_int64(st, 5, r->since) == SQLITE_OK &&
             (r->until == FV_SUBJECT_FOREVER ? sqlite3_bind_null(st, 6)
                                             : sqlite3_bind_int64(st, 6, r->until)) == SQLITE_OK &&
             (r->forgotten ? sqlite3_bind_int64(st, 7, r->forgotten) : sqlite3_bind_null(st, 7)) ==
                 SQLITE_OK &&
             sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return ok ? FV_OK : FV_EIO;
}

int fv_period_rows_put(struct fv_keystore *ks, const char *dpseudo,
                       const struct fv_period_row *rows, size_t n, char *err, size_t errlen)
{
    int rc = rows_valid(rows, n, err, errlen);
    if (rc) return rc;
    sqlite3 *db = fv_keystore_db(ks);
    if ((rc = fv_subjects__begin(db, err, errlen)) != FV_OK) return rc;
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = put_row(db, dpseudo, &rows[i]);
    /* R1: epochs past the list (this catalog's side of a conflict lost) go */
    sqlite3_stmt *del = NULL;
    if (rc == FV_OK &&
        (sqlite3_prepare_v2(db, "DELETE FROM subject_periods WHERE device = ?1 AND epoch > ?2", -1,
                            &del, NULL) != SQLITE_OK ||
         sqlite3_bind_text(del, 1, dpseudo, -1, SQLITE_STATIC) != SQLITE_OK ||
         sqlite3_bind_int64(del, 2, (sqlite3_int64)n) != SQLITE_OK ||
         sqlite3_step(del) != SQLITE_DONE))
        rc = FV_EIO;
    sqlite3_finalize(del);
    if (rc) fv_seterr(err, errlen, "catalog: %s", sqlite3_errmsg(db));
    return fv_subjects__commit(db, rc, err, errlen);
}

static int forgotten_subject(struct fv_keystore *ks, const char *spseudo, int *out)
{
    const unsigned char *dek;
    const char *name;
    *out = fv_keystore_subject(ks, spseudo, &dek, &name) == FV_ESTATE;
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (sqlite3_prepare_v2(fv_keystore_db(ks),
                           "SELECT 1 FROM subject_periods WHERE subject = ?1"
                           " AND forgotten_ms IS NOT NULL",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, spseudo, -1, SQLITE_STATIC) == SQLITE_OK) {
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) *out = 1;
        if (step == SQLITE_ROW || step == SQLITE_DONE) rc = FV_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

int fv_consent_rows_get(struct fv_keystore *ks, const char *spseudo, struct fv_consent_rows *out)
{
    out->n = 0;
    out->stale = 0;
    int rc = forgotten_subject(ks, spseudo, &out->forgotten);
    if (rc) return rc;
    sqlite3_stmt *st = NULL;
    int step = SQLITE_DONE;
    if (sqlite3_prepare_v2(fv_keystore_db(ks),
                           "SELECT purpose, granted, at_ms, by FROM consents WHERE subject = ?1"
                           " ORDER BY at_ms, seq",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, spseudo, -1, SQLITE_STATIC) != SQLITE_OK) {
        sqlite3_finalize(st);
        return FV_EIO;
    }
    while (rc == FV_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct fv_consent_row r = {0};
        const unsigned char *p = sqlite3_column_text(st, 0), *by = sqlite3_column_text(st, 3);
        snprintf(r.purpose, sizeof r.purpose, "%s", p ? (const char *)p : "");
        r.granted = sqlite3_column_int(st, 1) != 0;
        r.at = sqlite3_column_int64(st, 2);
        snprintf(r.by, sizeof r.by, "%s", by ? (const char *)by : "");
        if (out->forgotten)
            out->stale = 1; /* not reported: an erased subject has no consent */
        else
            rc = fv_consent_rows_add(out, &r);
    }
    if (rc == FV_OK && step != SQLITE_DONE) rc = FV_EIO;
    sqlite3_finalize(st);
    return rc;
}

int fv_consent_rows_put(struct fv_keystore *ks, const char *spseudo,
                        const struct fv_consent_rows *rows, char *err, size_t errlen)
{
    sqlite3 *db = fv_keystore_db(ks);
    int rc = fv_subjects__begin(db, err, errlen);
    if (rc) return rc;
    sqlite3_stmt *del = NULL, *ins = NULL;
    if (sqlite3_prepare_v2(db, "DELETE FROM consents WHERE subject = ?1", -1, &del, NULL) !=
            SQLITE_OK ||
        sqlite3_bind_text(del, 1, spseudo, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(del) != SQLITE_DONE ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO consents(subject, purpose, granted, at_ms, by)"
                           " VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &ins, NULL) != SQLITE_OK)
        rc = FV_EIO;
    for (size_t i = 0; rc == FV_OK && !rows->forgotten && i < rows->n; i++) {
        const struct fv_consent_row *r = &rows->v[i];
        sqlite3_reset(ins);
        if (sqlite3_bind_text(ins, 1, spseudo, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(ins, 2, r->purpose, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int(ins, 3, r->granted) != SQLITE_OK ||
            sqlite3_bind_int64(ins, 4, r->at) != SQLITE_OK ||
            (r->by[0] ? sqlite3_bind_text(ins, 5, r->by, -1, SQLITE_STATIC)
                      : sqlite3_bind_null(ins, 5)) != SQLITE_OK ||
            sqlite3_step(ins) != SQLITE_DONE)
            rc = FV_EIO;
    }
    if (rc) fv_seterr(err, errlen, "catalog: %s", sqlite3_errmsg(db));
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    rc = fv_subjects__commit(db, rc, err, errlen);
    /* R2: a forgotten subject's rows zeroed on disk, as fv_subjects_forget does */
    if (rc == FV_OK && rows->forgotten)
        rc = fv_catalog_exec(db, "PRAGMA wal_checkpoint(TRUNCATE);", err, errlen);
    return rc;
}
