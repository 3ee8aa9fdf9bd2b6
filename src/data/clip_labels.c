/* clip_labels.c - the labels of clips in the catalog (clip_labels.h, rules B1-B3). */
#include "data/clip_labels.h"

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "crypto/keys.h"
#include "util/err.h"

int fv_clip_labels_init(struct fv_keystore *ks, char *err, size_t errlen)
{
    return fv_catalog_exec(
        fv_keystore_db(ks),
        "CREATE TABLE IF NOT EXISTS clip_labels(clip TEXT PRIMARY KEY,"
        " subject TEXT NOT NULL, labeler TEXT NOT NULL, labels TEXT NOT NULL,"
        " labeled_ms INTEGER NOT NULL);"
        "CREATE INDEX IF NOT EXISTS clip_labels_subject ON clip_labels(subject);",
        err, errlen);
}

int fv_clip_labels_put(struct fv_keystore *ks, const char *clip, const char *subject,
                       const char *labeler, const char *json, int64_t now_ms, char *err,
                       size_t errlen)
{
    if (strlen(json) > FV_CLIP_LABELS_MAX) {
        fv_seterr(err, errlen, "labels: more than %d bytes", FV_CLIP_LABELS_MAX);
        return FV_ELIMIT;
    }
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO clip_labels(clip, subject, labeler, labels,"
                           " labeled_ms) VALUES(?, ?, ?, ?, ?)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, clip, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, subject, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, labeler, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, json, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, now_ms);
        if (sqlite3_step(st) == SQLITE_DONE) rc = FV_OK;
    }
    if (rc) fv_seterr(err, errlen, "catalog: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

int fv_clip_labels_has(struct fv_keystore *ks, const char *clip)
{
    sqlite3_stmt *st = NULL;
    int has = 1; /* fail closed: a clip that cannot be checked is not offered */
    if (sqlite3_prepare_v2(fv_keystore_db(ks), "SELECT 1 FROM clip_labels WHERE clip = ?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, clip, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW || s == SQLITE_DONE) has = s == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return has;
}

int fv_clip_labels_get(struct fv_keystore *ks, const char *clip, char **json, char **labeler,
                       int64_t *labeled_ms)
{
    *json = *labeler = NULL;
    *labeled_ms = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(fv_keystore_db(ks),
                           "SELECT labels, labeler, labeled_ms FROM clip_labels WHERE clip = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return FV_EIO;
    sqlite3_bind_text(st, 1, clip, -1, SQLITE_STATIC);
    int s = sqlite3_step(st), rc = s == SQLITE_DONE ? FV_ENOENT : FV_EIO;
    if (s == SQLITE_ROW) {
        const char *j = (const char *)sqlite3_column_text(st, 0);
        const char *l = (const char *)sqlite3_column_text(st, 1);
        *json = j ? strdup(j) : NULL;
        *labeler = l ? strdup(l) : NULL;
        *labeled_ms = sqlite3_column_int64(st, 2);
        rc = *json && *labeler ? FV_OK : FV_ENOMEM;
        if (rc) {
            free(*json);
            free(*labeler);
            *json = *labeler = NULL;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int fv_clip_labels_of_subject(struct fv_keystore *ks, const char *subject,
                              int (*fn)(void *arg, const char *clip, const char *labeler,
                                        const char *json, int64_t labeled_ms),
                              void *arg)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(fv_keystore_db(ks),
                           "SELECT clip, labeler, labels, labeled_ms FROM clip_labels"
                           " WHERE subject = ? ORDER BY clip",
                           -1, &st, NULL) != SQLITE_OK)
        return FV_EIO;
    sqlite3_bind_text(st, 1, subject, -1, SQLITE_STATIC);
    int rc = FV_OK, s;
    while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW)
        rc = fn(arg, (const char *)sqlite3_column_text(st, 0),
                (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2),
                sqlite3_column_int64(st, 3));
    if (rc == 0 && s != SQLITE_DONE) rc = FV_EIO;
    sqlite3_finalize(st);
    return rc;
}

int fv_clip_labels_purge(struct fv_keystore *ks, const char *subject)
{
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (sqlite3_prepare_v2(fv_keystore_db(ks), "DELETE FROM clip_labels WHERE subject = ?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, subject, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_DONE) rc = FV_OK;
    }
    sqlite3_finalize(st);
    return rc;
}
