/* quota_store.c - see quota_store.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "crypto/keys.h"
#include "privacy/quota_store.h"
#include "util/err.h"

#define DAY_MS 86400000ull

int fv_quota_store_open(const char *path, struct sqlite3 **db, char *err, size_t errlen)
{
    *db = NULL;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600); /* principals' names: 0600 */
    if (fd < 0) {
        fv_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return FV_EIO;
    }
    close(fd);
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fv_seterr(err, errlen, "%s: %s", path, *db ? sqlite3_errmsg(*db) : "cannot open");
        sqlite3_close(*db);
        *db = NULL;
        return FV_EIO;
    }
    sqlite3_busy_timeout(*db, 1000);
    int rc = fv_catalog_exec(*db,
                             "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                             "CREATE TABLE IF NOT EXISTS quota_usage(name TEXT PRIMARY KEY,"
                             " day INTEGER NOT NULL, subjects INTEGER NOT NULL,"
                             " rows INTEGER NOT NULL, bytes INTEGER NOT NULL,"
                             " bulk INTEGER NOT NULL)",
                             err, errlen);
    if (rc) {
        sqlite3_close(*db);
        *db = NULL;
    }
    return rc;
}

static uint64_t col_u64(sqlite3_stmt *st, int i)
{
    sqlite3_int64 v = sqlite3_column_int64(st, i);
    return v < 0 ? 0 : (uint64_t)v;
}

static sqlite3_int64 to_i64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)v;
}

int fv_quota_store_load(struct sqlite3 *db, struct fv_quota *q, uint64_t now_ms, char *err,
                        size_t errlen)
{
    sqlite3_int64 day = (sqlite3_int64)(now_ms / DAY_MS);
    sqlite3_stmt *st = NULL;
    int rc = FV_OK, step;
    if (sqlite3_prepare_v2(db,
                           "SELECT name, subjects, rows, bytes, bulk FROM quota_usage"
                           " WHERE day = ?1",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_int64(st, 1, day) != SQLITE_OK)
        goto dberr;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *name = sqlite3_column_text(st, 0);
        if (name == NULL) continue;
        struct fv_quota_usage u = {.day = day,
                                   .subjects = col_u64(st, 1),
                                   .rows = col_u64(st, 2),
                                   .bytes = col_u64(st, 3),
                                   .bulk = col_u64(st, 4)};
        if (fv_quota_set(q, (const char *)name, &u) != FV_OK) {
            sqlite3_finalize(st);
            fv_seterr(err, errlen, "out of memory");
            return FV_ENOMEM;
        }
    }
    if (step != SQLITE_DONE) goto dberr;
    sqlite3_finalize(st);
    st = NULL;
    /* yesterday's counters are worth nothing today */
    if (sqlite3_prepare_v2(db, "DELETE FROM quota_usage WHERE day < ?1", -1, &st, NULL) !=
            SQLITE_OK ||
        sqlite3_bind_int64(st, 1, day) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE)
        goto dberr;
    sqlite3_finalize(st);
    return rc;
dberr:
    fv_seterr(err, errlen, "quota.db: quota_usage: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return FV_EIO;
}

int fv_quota_store_save(struct sqlite3 *db, struct sqlite3_stmt **keep, const char *name,
                        const struct fv_quota_usage *u)
{
    static const char sql[] = "INSERT INTO quota_usage(name, day, subjects, rows, bytes, bulk)"
                              " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO UPDATE SET"
                              " day = ?2, subjects = ?3, rows = ?4, bytes = ?5, bulk = ?6";
    sqlite3_stmt *st = keep ? *keep : NULL;
    if (st == NULL && sqlite3_prepare_v3(db, sql, -1, keep ? SQLITE_PREPARE_PERSISTENT : 0, &st,
                                         NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return FV_EIO;
    }
    if (keep) *keep = st;
    int ok = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) == SQLITE_OK &&
             sqlite3_bind_int64(st, 2, u->day) == SQLITE_OK &&
             sqlite3_bind_int64(st, 3, to_i64(u->subjects)) == SQLITE_OK &&
             sqlite3_bind_int64(st, 4, to_i64(u->rows)) == SQLITE_OK &&
             sqlite3_bind_int64(st, 5, to_i64(u->bytes)) == SQLITE_OK &&
             sqlite3_bind_int64(st, 6, to_i64(u->bulk)) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_DONE;
    if (keep) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st); /* name is the caller's */
    } else {
        sqlite3_finalize(st);
    }
    return ok ? FV_OK : FV_EIO;
}

struct save_all {
    struct sqlite3 *db;
    struct sqlite3_stmt **keep;
};

static int save_all_one(void *arg, const char *name, const struct fv_quota_usage *u)
{
    struct save_all *a = arg;
    return fv_quota_store_save(a->db, a->keep, name, u);
}

int fv_quota_store_save_all(struct sqlite3 *db, struct sqlite3_stmt **keep,
                            const struct fv_quota *q)
{
    struct save_all a = {db, keep};
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return FV_EIO;
    int rc = fv_quota_foreach(q, save_all_one, &a);
    if (rc == FV_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) return FV_OK;
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return FV_EIO;
}
