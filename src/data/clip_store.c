/* clip_store.c - the encrypted clip store (clip_store.h, rules C1-C3). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "crypto/keys.h"
#include "data/clip_labels.h"
#include "data/clip_store.h"
#include "os/fsio.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"

int fv_clip_store_init(struct fv_keystore *ks, char *err, size_t errlen)
{
    int rc = fv_catalog_exec(fv_keystore_db(ks),
                             "CREATE TABLE IF NOT EXISTS clips(id TEXT PRIMARY KEY,"
                             " subject TEXT NOT NULL, device TEXT NOT NULL, clip_id TEXT NOT NULL,"
                             " campaign TEXT NOT NULL, trigger TEXT NOT NULL,"
                             " trigger_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL,"
                             " lat REAL, lon REAL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,"
                             " deid TEXT NOT NULL, deid_exit INTEGER, deid_summary TEXT,"
                             " deid_ms INTEGER, UNIQUE(device, clip_id));"
                             "CREATE INDEX IF NOT EXISTS clips_subject ON clips(subject);",
                             err, errlen);
    return rc ? rc : fv_clip_labels_init(ks, err, errlen);
}

static void clip_path(const char *dir, const char *subject, const char *id, char *out, size_t n)
{
    snprintf(out, n, "%s/store/%s/%s.clip", dir, subject, id);
}

static void clip_aad(const char *subject, const char *id, char *out, size_t n)
{
    snprintf(out, n, "fv-clip:%s:%s", subject, id);
}

/* Seals data for (subject pseudonym, id) with dek and writes it durably. */
static int write_sealed(const char *dir, const unsigned char *dek, const char *pseudo,
                        const char *id, const void *data, size_t len, char *err, size_t errlen)
{
    char aad[128], sub[PATH_MAX], path[PATH_MAX + 64];
    clip_aad(pseudo, id, aad, sizeof aad);
    struct fv_buf sealed = {0};
    int rc = fv_seal(dek, aad, strlen(aad), data, len, &sealed);
    snprintf(sub, sizeof sub, "%s/store/%s", dir, pseudo);
    if (rc == FV_OK) rc = fv_os_mkdirs(sub, 0700, err, errlen);
    clip_path(dir, pseudo, id, path, sizeof path);
    if (rc == FV_OK)
        rc = fv_os_write_file_atomic(path, sealed.data, sealed.len, 0600, err, errlen);
    else if (err && err[0] == '\0')
        fv_seterr(err, errlen, "sealing the clip failed");
    fv_buf_free(&sealed);
    return rc;
}

int fv_clip_store_put(struct fv_keystore *ks, const char *dir, const char *subject,
                      const struct fv_clip_meta *m, const char *path,
                      const struct fv_clip_place *place, int64_t now_ms, char *err, size_t errlen)
{
    const unsigned char *dek = NULL;
    char pseudo[FV_PSEUDONYM_LEN + 1];
    const char *dev = m->device;
    int rc = fv_keystore_dek(ks, subject, 1, &dek, pseudo);
    if (rc) {
        fv_seterr(err, errlen, "no data key for the clip's subject (%s)", fv_strerror(rc));
        return rc;
    }
    char *data = NULL;
    size_t len = 0;
    rc = fv_os_read_file(path, m->size + 1, &data, &len, err, errlen);
    if (rc == FV_OK && len != m->size) {
        fv_seterr(err, errlen, "%s: %zu bytes, expected %llu", path, len,
                  (unsigned long long)m->size);
        rc = FV_EIO;
    }
    if (rc == FV_OK) rc = write_sealed(dir, dek, pseudo, m->upload_id, data, len, err, errlen);
    if (data) OPENSSL_cleanse(data, len);
    free(data);
    if (rc) return rc;
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    rc = FV_EIO;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO clips(id, subject, device, clip_id, campaign, trigger,"
                           " trigger_ms, received_ms, lat, lon, size, sha256, deid)"
                           " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,'pending')",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, m->upload_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, pseudo, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, dev, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, m->clip_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, m->campaign, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, m->trigger, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, m->trigger_ms);
        sqlite3_bind_int64(st, 8, now_ms);
        if (place && place->have) {
            sqlite3_bind_double(st, 9, place->lat);
            sqlite3_bind_double(st, 10, place->lon);
        }
        sqlite3_bind_int64(st, 11, (sqlite3_int64)m->size);
        sqlite3_bind_text(st, 12, m->sha256, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_DONE) rc = FV_OK;
    }
    if (rc) fv_seterr(err, errlen, "catalog: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (rc) { /* C1: no row, no file */
        char p[PATH_MAX + 64];
        clip_path(dir, pseudo, m->upload_id, p, sizeof p);
        fv_os_unlink(p, NULL, 0);
    }
    return rc;
}

int fv_clip_store_device(struct fv_keystore *ks, const char *device_pseudo, const char *clip_id,
                         uint64_t *bytes, int *exists)
{
    const char *dev = device_pseudo;
    int rc;
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT coalesce(sum(size),0), coalesce(sum(clip_id = ?2),0)"
                           " FROM clips WHERE device = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return FV_EIO;
    sqlite3_bind_text(st, 1, dev, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, clip_id ? clip_id : "", -1, SQLITE_STATIC);
    rc = FV_EIO;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *bytes = (uint64_t)sqlite3_column_int64(st, 0);
        *exists = sqlite3_column_int64(st, 1) > 0;
        rc = FV_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static void col_text(sqlite3_stmt *st, int i, char *out, size_t n)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(out, n, "%s", t ? (const char *)t : "");
}

#define ROW_COLUMNS                                                                                \
    "id, subject, clip_id, campaign, trigger, trigger_ms, received_ms, lat, lon, size, sha256,"    \
    " deid, coalesce(deid_exit, -1), coalesce(deid_summary, '')"

static void row_read(sqlite3_stmt *st, struct fv_clip_row *r)
{
    memset(r, 0, sizeof *r);
    col_text(st, 0, r->id, sizeof r->id);
    col_text(st, 1, r->subject, sizeof r->subject);
    col_text(st, 2, r->clip_id, sizeof r->clip_id);
    col_text(st, 3, r->campaign, sizeof r->campaign);
    col_text(st, 4, r->trigger, sizeof r->trigger);
    r->trigger_ms = sqlite3_column_int64(st, 5);
    r->received_ms = sqlite3_column_int64(st, 6);
    r->place.have = sqlite3_column_type(st, 7) != SQLITE_NULL;
    r->place.lat = sqlite3_column_double(st, 7);
    r->place.lon = sqlite3_column_double(st, 8);
    r->size = (uint64_t)sqlite3_column_int64(st, 9);
    col_text(st, 10, r->sha256, sizeof r->sha256);
    col_text(st, 11, r->deid, sizeof r->deid);
    r->deid_exit = (int)sqlite3_column_int64(st, 12);
    col_text(st, 13, r->deid_summary, sizeof r->deid_summary);
}

int fv_clip_store_list(struct fv_keystore *ks, const char *deid,
                       int (*fn)(void *arg, const struct fv_clip_row *r), void *arg)
{
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT " ROW_COLUMNS " FROM clips WHERE ?1 IS NULL OR deid = ?1"
                           " ORDER BY received_ms, id",
                           -1, &st, NULL) != SQLITE_OK)
        return FV_EIO;
    if (deid) sqlite3_bind_text(st, 1, deid, -1, SQLITE_STATIC);
    /* The rows first, then the calls: fn may use the keystore. */
    struct fv_clip_row *rows = NULL;
    size_t n = 0, cap = 0;
    int rc = FV_OK, s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct fv_clip_row *nr = realloc(rows, nc * sizeof *nr);
            if (nr == NULL) {
                rc = FV_ENOMEM;
                break;
            }
            rows = nr;
            cap = nc;
        }
        row_read(st, &rows[n++]);
    }
    if (rc == FV_OK && s != SQLITE_DONE) rc = FV_EIO;
    sqlite3_finalize(st);
    for (size_t i = 0; rc == FV_OK && i < n; i++) {
        const unsigned char *dek;
        const char *name = NULL;
        if (fv_keystore_subject(ks, rows[i].subject, &dek, &name) == FV_OK && name)
            snprintf(rows[i].subject_name, sizeof rows[i].subject_name, "%s", name);
        rc = fn(arg, &rows[i]);
    }
    free(rows);
    return rc;
}

int fv_clip_store_get(struct fv_keystore *ks, const char *id, struct fv_clip_row *r)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(fv_keystore_db(ks), "SELECT " ROW_COLUMNS " FROM clips WHERE id = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return FV_EIO;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st), rc = s == SQLITE_ROW ? FV_OK : s == SQLITE_DONE ? FV_ENOENT : FV_EIO;
    if (rc == FV_OK) row_read(st, r);
    sqlite3_finalize(st);
    if (rc) return rc;
    const unsigned char *dek;
    const char *name = NULL;
    if (fv_keystore_subject(ks, r->subject, &dek, &name) == FV_OK && name)
        snprintf(r->subject_name, sizeof r->subject_name, "%s", name);
    return FV_OK;
}

/* The subject pseudonym of a stored clip. */
static int clip_subject(struct fv_keystore *ks, const char *id, char pseudo[FV_PSEUDONYM_LEN + 1])
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(fv_keystore_db(ks), "SELECT subject FROM clips WHERE id = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return FV_EIO;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = FV_ENOENT;
    if (sqlite3_step(st) == SQLITE_ROW) {
        col_text(st, 0, pseudo, FV_PSEUDONYM_LEN + 1);
        rc = FV_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

int fv_clip_store_read(struct fv_keystore *ks, const char *dir, const char *id, struct fv_buf *out,
                       char *err, size_t errlen)
{
    char pseudo[FV_PSEUDONYM_LEN + 1], path[PATH_MAX + 64], aad[128];
    int rc = clip_subject(ks, id, pseudo);
    if (rc) {
        fv_seterr(err, errlen, "clip %s: %s", id, fv_strerror(rc));
        return rc;
    }
    const unsigned char *dek;
    const char *name;
    rc = fv_keystore_subject(ks, pseudo, &dek, &name);
    if (rc) {
        fv_seterr(err, errlen, "clip %s: its subject's key: %s", id, fv_strerror(rc));
        return rc;
    }
    clip_path(dir, pseudo, id, path, sizeof path);
    char *sealed = NULL;
    size_t len = 0;
    rc = fv_os_read_file(path, (size_t)1 << 34, &sealed, &len, err, errlen);
    if (rc) return rc;
    clip_aad(pseudo, id, aad, sizeof aad);
    rc = fv_open(dek, aad, strlen(aad), (const unsigned char *)sealed, len, out);
    free(sealed);
    if (rc) fv_seterr(err, errlen, "%s: does not open (altered, or not this clip's)", path);
    return rc;
}

int fv_clip_store_replace(struct fv_keystore *ks, const char *dir, const char *id, const void *data,
                          size_t len, char *err, size_t errlen)
{
    char pseudo[FV_PSEUDONYM_LEN + 1];
    int rc = clip_subject(ks, id, pseudo);
    const unsigned char *dek;
    const char *name;
    if (rc == FV_OK) rc = fv_keystore_subject(ks, pseudo, &dek, &name);
    if (rc) {
        fv_seterr(err, errlen, "clip %s: %s", id, fv_strerror(rc));
        return rc;
    }
    rc = write_sealed(dir, dek, pseudo, id, data, len, err, errlen);
    if (rc) return rc;
    unsigned char md[32];
    unsigned int mdlen = 0;
    char hex[65];
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1) return FV_EIO;
    fv_hex(md, sizeof md, hex);
    sqlite3_stmt *st = NULL;
    rc = FV_EIO;
    if (sqlite3_prepare_v2(fv_keystore_db(ks), "UPDATE clips SET size = ?, sha256 = ? WHERE id = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)len);
        sqlite3_bind_text(st, 2, hex, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_DONE) rc = FV_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

int fv_clip_store_set_deid(struct fv_keystore *ks, const char *id, const char *status,
                           int exit_code, const char *summary, int64_t now_ms)
{
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (sqlite3_prepare_v2(fv_keystore_db(ks),
                           "UPDATE clips SET deid = ?, deid_exit = ?, deid_summary = ?,"
                           " deid_ms = ? WHERE id = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, exit_code);
        sqlite3_bind_text(st, 3, summary ? summary : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, now_ms);
        sqlite3_bind_text(st, 5, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_DONE) rc = FV_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

int fv_clip_store_passed(struct fv_keystore *ks, const char *id)
{
    sqlite3_stmt *st = NULL;
    int ok = 0;
    if (sqlite3_prepare_v2(fv_keystore_db(ks), "SELECT deid = 'passed' FROM clips WHERE id = ?", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1;
    }
    sqlite3_finalize(st);
    return ok;
}

int fv_clip_store_purge(struct fv_keystore *ks, const char *dir, const char *subject_pseudo,
                        char *err, size_t errlen)
{
    if (strlen(subject_pseudo) != FV_PSEUDONYM_LEN || strchr(subject_pseudo, '/')) return FV_EINVAL;
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/store/%s", dir, subject_pseudo);
    DIR *d = opendir(sub);
    int rc = FV_OK;
    if (d) {
        struct dirent *e;
        while (rc == FV_OK && (e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char p[PATH_MAX + 300];
            snprintf(p, sizeof p, "%s/%s", sub, e->d_name);
            int u = fv_os_unlink(p, err, errlen);
            if (u != FV_OK && u != FV_ENOENT) rc = u;
        }
        closedir(d);
        if (rc == FV_OK && rmdir(sub) != 0 && errno != ENOENT) {
            fv_seterr(err, errlen, "rmdir %s: %s", sub, strerror(errno));
            rc = FV_EIO;
        }
        char store[PATH_MAX];
        snprintf(store, sizeof store, "%s/store", dir);
        if (rc == FV_OK) rc = fv_os_fsync_dir(store, err, errlen);
    }
    sqlite3_stmt *st = NULL;
    if (rc == FV_OK) {
        rc = FV_EIO;
        if (sqlite3_prepare_v2(fv_keystore_db(ks), "DELETE FROM clips WHERE subject = ?", -1, &st,
                               NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, subject_pseudo, -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_DONE) rc = FV_OK;
        }
        if (rc == FV_OK) rc = fv_clip_labels_purge(ks, subject_pseudo); /* clip_labels.h B2 */
        if (rc) fv_seterr(err, errlen, "catalog: %s", sqlite3_errmsg(fv_keystore_db(ks)));
        sqlite3_finalize(st);
    }
    return rc;
}
