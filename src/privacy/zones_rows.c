/*
 * zones_rows.c - the privacy zones' rows as stored (zones.h "Rows as stored"): sealed, for a
 * cluster's sync (cluster/jszones.h), which copies them between catalogs without opening
 * them.
 *
 * Threading: the keystore's (zones.h).
 */
#include <string.h>

#include <sqlite3.h>

#include "privacy/zones.h"
#include "util/err.h"

static int fail(sqlite3 *db, sqlite3_stmt *st, char *err, size_t errlen)
{
    fv_seterr(err, errlen, "catalog: privacy_zones: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return FV_EIO;
}

int fv_zone_rows(struct fv_keystore *ks, int (*fn)(void *arg, const struct fv_zone_row *r),
                 void *arg, char *err, size_t errlen)
{
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT subject, label, zone, created_ms FROM privacy_zones"
                           " ORDER BY subject, label",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(db, st, err, errlen);
    int rc = FV_OK, s;
    while (rc == FV_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *pseudo = (const char *)sqlite3_column_text(st, 0);
        const char *label = (const char *)sqlite3_column_text(st, 1);
        const void *blob = sqlite3_column_blob(st, 2);
        int n = sqlite3_column_bytes(st, 2);
        if (!fv_pseudonym_valid(pseudo, pseudo ? strlen(pseudo) : 0) || label == NULL ||
            !fv_zone_label_valid(label) || blob == NULL || n <= 0 || n > FV_ZONE_ROW_MAX)
            continue; /* not a row this code wrote: left to fv_zones_list (Z5) */
        struct fv_zone_row r = {
            .blob = blob, .len = (size_t)n, .created_ms = sqlite3_column_int64(st, 3)};
        memcpy(r.pseudo, pseudo, FV_PSEUDONYM_LEN + 1);
        memcpy(r.label, label, strlen(label) + 1);
        rc = fn(arg, &r);
    }
    if (rc == FV_OK && s != SQLITE_DONE) return fail(db, st, err, errlen);
    sqlite3_finalize(st);
    return rc;
}

int fv_zone_row_get(struct fv_keystore *ks, const char *pseudo, const char *label,
                    struct fv_buf *blob, int64_t *created_ms, char *err, size_t errlen)
{
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT zone, created_ms FROM privacy_zones"
                           " WHERE subject = ?1 AND label = ?2",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, pseudo, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, label, -1, SQLITE_STATIC) != SQLITE_OK)
        return fail(db, st, err, errlen);
    int s = sqlite3_step(st), rc = FV_ENOENT;
    if (s == SQLITE_ROW) {
        int n = sqlite3_column_bytes(st, 0);
        fv_buf_reset(blob);
        rc = n > 0 && n <= FV_ZONE_ROW_MAX
                 ? fv_buf_append(blob, sqlite3_column_blob(st, 0), (size_t)n)
                 : FV_ECORRUPT;
        *created_ms = sqlite3_column_int64(st, 1);
    } else if (s != SQLITE_DONE) {
        return fail(db, st, err, errlen);
    }
    sqlite3_finalize(st);
    return rc;
}

int fv_zone_row_put(struct fv_keystore *ks, const struct fv_zone_row *r, char *err, size_t errlen)
{
    if (!fv_pseudonym_valid(r->pseudo, strlen(r->pseudo)) || !fv_zone_label_valid(r->label) ||
        r->len == 0 || r->len > FV_ZONE_ROW_MAX) {
        fv_seterr(err, errlen, "not a privacy zone's row");
        return FV_EINVAL;
    }
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO privacy_zones(subject, label, zone, created_ms)"
                           " VALUES (?1, ?2, ?3, ?4) ON CONFLICT(subject, label) DO UPDATE SET"
                           " zone = excluded.zone, created_ms = excluded.created_ms",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, r->pseudo, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, r->label, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_blob(st, 3, r->blob, (int)r->len, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 4, (sqlite3_int64)r->created_ms) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_DONE)
        return fail(db, st, err, errlen);
    sqlite3_finalize(st);
    return FV_OK;
}

int fv_zone_row_delete(struct fv_keystore *ks, const char *pseudo, const char *label, char *err,
                       size_t errlen)
{
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "DELETE FROM privacy_zones WHERE subject = ?1 AND label = ?2", -1,
                           &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, pseudo, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, label, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_DONE)
        return fail(db, st, err, errlen);
    sqlite3_finalize(st);
    return FV_OK;
}
