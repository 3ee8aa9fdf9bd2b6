/*
 * keys.c - see keys.h.
 *
 * Catalog schema (DATA/catalog.db, SQLite, synchronous=FULL so a new key is durable before
 * any record sealed with it can be acknowledged):
 *   subject_keys(subject TEXT PRIMARY KEY, kek_id TEXT, wrapped BLOB, created_ms INTEGER,
 *                destroyed_ms INTEGER)   -- wrapped NULL and destroyed_ms set: shredded
 * Invariant K1: a subject's key is never re-created after destruction (a new owner is a
 * new subject), so old ciphertexts can never become readable again.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sqlite3.h>

#include "crypto/keys.h"
#include "os/fsio.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/map.h"

struct fv_keystore {
    sqlite3 *db;
    struct fv_kek kek;
    struct fv_map cache; /* subject -> unsigned char[FV_KEY_LEN] */
};

static void kek_id(struct fv_kek *k)
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256(k->key, FV_KEY_LEN, h);
    for (int i = 0; i < 8; i++)
        snprintf(k->id + 2 * i, 3, "%02x", h[i]);
}

static int parse_hex_key(const char *s, unsigned char out[FV_KEY_LEN])
{
    size_t n = 0;
    while (s[n] && !isspace((unsigned char)s[n]))
        n++;
    if (n != 2 * FV_KEY_LEN)
        return -1;
    for (size_t i = n; s[i]; i++)
        if (!isspace((unsigned char)s[i]))
            return -1;
    for (int i = 0; i < FV_KEY_LEN; i++) {
        unsigned v;
        if (!isxdigit((unsigned char)s[2 * i]) || !isxdigit((unsigned char)s[2 * i + 1]) ||
            sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

int fv_kek_create(const char *path, char *err, size_t errlen)
{
    if (access(path, F_OK) == 0) {
        fv_seterr(err, errlen, "%s already exists; a master key is never overwritten", path);
        return FV_EEXIST;
    }
    unsigned char k[FV_KEY_LEN];
    char hex[2 * FV_KEY_LEN + 2];
    if (RAND_bytes(k, sizeof k) != 1) {
        fv_seterr(err, errlen, "no randomness for the master key");
        return FV_EIO;
    }
    for (int i = 0; i < FV_KEY_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", k[i]);
    hex[2 * FV_KEY_LEN] = '\n';
    hex[2 * FV_KEY_LEN + 1] = '\0';
    int rc = fv_os_write_file_atomic(path, hex, 2 * FV_KEY_LEN + 1, 0600, err, errlen);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(hex, sizeof hex);
    return rc;
}

int fv_kek_load(const char *path, struct fv_kek *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (path == NULL) {
        const char *env = getenv("FV_MASTER_KEY");
        if (env == NULL || *env == '\0') {
            fv_seterr(err, errlen, "no master key: pass --key-file FILE (make one with "
                                   "'fleetvault keys init FILE') or set FV_MASTER_KEY");
            return FV_ENOENT;
        }
        if (parse_hex_key(env, out->key)) {
            fv_seterr(err, errlen, "FV_MASTER_KEY must be 64 hex digits");
            return FV_EINVAL;
        }
        kek_id(out);
        return FV_OK;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = fv_os_read_file(path, 4096, &text, &len, err, errlen);
    if (rc == FV_ENOENT)
        fv_seterr(err, errlen, "%s: no such master key file (make one with 'fleetvault keys "
                               "init %s')", path, path);
    if (rc)
        return rc;
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077)) {
        fv_seterr(err, errlen, "%s: master key file is readable by others (mode %03o); "
                               "chmod 600 it", path, st.st_mode & 0777);
        rc = FV_EINVAL;
    } else if (parse_hex_key(text, out->key)) {
        fv_seterr(err, errlen, "%s: not a master key (expected 64 hex digits)", path);
        rc = FV_EINVAL;
    } else {
        kek_id(out);
    }
    OPENSSL_cleanse(text, len);
    free(text);
    return rc;
}

void fv_kek_wipe(struct fv_kek *k)
{
    OPENSSL_cleanse(k, sizeof *k);
}

/* ---- AEAD -------------------------------------------------------------------------- */

static int gcm(int enc, const unsigned char *key, const unsigned char *iv, const void *aad,
               size_t aadlen, const unsigned char *in, size_t n, unsigned char *out,
               unsigned char *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int ok = 0, l = 0;
    if (c == NULL)
        return FV_ENOMEM;
    if (n > INT32_MAX || aadlen > INT32_MAX)
        goto done;
    if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv, enc) != 1)
        goto done;
    if (aadlen && EVP_CipherUpdate(c, NULL, &l, aad, (int)aadlen) != 1)
        goto done;
    if (n && EVP_CipherUpdate(c, out, &l, in, (int)n) != 1)
        goto done;
    if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1)
        goto done;
    if (EVP_CipherFinal_ex(c, out + l, &l) != 1)
        goto done;
    if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
        goto done;
    ok = 1;
done:
    EVP_CIPHER_CTX_free(c);
    return ok ? FV_OK : FV_ECORRUPT;
}

int fv_seal(const unsigned char key[FV_KEY_LEN], const void *aad, size_t aadlen, const void *pt,
            size_t n, struct fv_buf *out)
{
    int rc = fv_buf_reserve(out, n + FV_SEAL_OVERHEAD);
    if (rc)
        return rc;
    unsigned char *p = out->data + out->len;
    if (RAND_bytes(p, 12) != 1)
        return FV_EIO;
    rc = gcm(1, key, p, aad, aadlen, pt, n, p + 12, p + 12 + n);
    if (rc == FV_OK)
        out->len += n + FV_SEAL_OVERHEAD;
    return rc == FV_ECORRUPT ? FV_EIO : rc;
}

int fv_open(const unsigned char key[FV_KEY_LEN], const void *aad, size_t aadlen,
            const unsigned char *in, size_t n, struct fv_buf *out)
{
    if (n < FV_SEAL_OVERHEAD)
        return FV_ECORRUPT;
    size_t m = n - FV_SEAL_OVERHEAD;
    int rc = fv_buf_reserve(out, m + 1);
    if (rc)
        return rc;
    unsigned char tag[16];
    memcpy(tag, in + 12 + m, 16);
    rc = gcm(0, key, in, aad, aadlen, in + 12, m, out->data + out->len, tag);
    if (rc == FV_OK)
        out->len += m;
    return rc;
}

/* ---- keystore ---------------------------------------------------------------------- */

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fv_seterr(err, errlen, "catalog: %s", msg ? msg : "error");
        sqlite3_free(msg);
        return FV_EIO;
    }
    return FV_OK;
}

int fv_keystore_open(const char *db_path, const struct fv_kek *kek, struct fv_keystore **out,
                     char *err, size_t errlen)
{
    *out = NULL;
    struct fv_keystore *ks = calloc(1, sizeof *ks);
    if (ks == NULL)
        return FV_ENOMEM;
    ks->kek = *kek;
    int rc = FV_EIO;
    if (sqlite3_open_v2(db_path, &ks->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        fv_seterr(err, errlen, "%s: %s", db_path, sqlite3_errmsg(ks->db));
        goto fail;
    }
    chmod(db_path, 0600);
    if (exec(ks->db,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
             "CREATE TABLE IF NOT EXISTS subject_keys(subject TEXT PRIMARY KEY, kek_id TEXT,"
             " wrapped BLOB, created_ms INTEGER NOT NULL, destroyed_ms INTEGER);",
             err, errlen))
        goto fail;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db,
                           "SELECT kek_id, count(*) FROM subject_keys WHERE wrapped IS NOT NULL"
                           " AND kek_id != ?1 GROUP BY kek_id LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail_db;
    sqlite3_bind_text(st, 1, kek->id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        fv_seterr(err, errlen,
                  "%s: %d data keys are wrapped by master key %s, but the master key given is "
                  "%s (wrong --key-file / FV_MASTER_KEY?)",
                  db_path, sqlite3_column_int(st, 1), sqlite3_column_text(st, 0), kek->id);
        sqlite3_finalize(st);
        rc = FV_ETLS;
        goto fail;
    }
    sqlite3_finalize(st);
    *out = ks;
    return FV_OK;
fail_db:
    fv_seterr(err, errlen, "%s: %s", db_path, sqlite3_errmsg(ks->db));
fail:
    sqlite3_close(ks->db);
    OPENSSL_cleanse(&ks->kek, sizeof ks->kek);
    free(ks);
    return rc;
}

static int cache_put(struct fv_keystore *ks, const char *subject, const unsigned char *k,
                     const unsigned char **dek)
{
    unsigned char *copy = malloc(FV_KEY_LEN);
    if (copy == NULL)
        return FV_ENOMEM;
    memcpy(copy, k, FV_KEY_LEN);
    if (fv_map_put(&ks->cache, subject, strlen(subject), copy) != FV_OK) {
        OPENSSL_cleanse(copy, FV_KEY_LEN);
        free(copy);
        return FV_ENOMEM;
    }
    *dek = copy;
    return FV_OK;
}

static void free_key(unsigned char *k)
{
    OPENSSL_cleanse(k, FV_KEY_LEN);
    free(k);
}

int fv_keystore_dek(struct fv_keystore *ks, const char *subject, int create,
                    const unsigned char **dek)
{
    *dek = fv_map_get(&ks->cache, subject, strlen(subject));
    if (*dek)
        return FV_OK;
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (sqlite3_prepare_v2(ks->db,
                           "SELECT wrapped, destroyed_ms FROM subject_keys WHERE subject = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return FV_EIO;
    sqlite3_bind_text(st, 1, subject, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    unsigned char k[FV_KEY_LEN];
    if (step == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
            rc = FV_ESTATE; /* K1: destroyed */
        } else {
            struct fv_buf plain = {0};
            rc = fv_open(ks->kek.key, subject, strlen(subject), sqlite3_column_blob(st, 0),
                         (size_t)sqlite3_column_bytes(st, 0), &plain);
            if (rc == FV_OK && plain.len == FV_KEY_LEN)
                rc = cache_put(ks, subject, plain.data, dek);
            else if (rc == FV_OK)
                rc = FV_ECORRUPT;
            if (plain.data)
                OPENSSL_cleanse(plain.data, plain.cap);
            fv_buf_free(&plain);
        }
        sqlite3_finalize(st);
        return rc;
    }
    sqlite3_finalize(st);
    if (step != SQLITE_DONE)
        return FV_EIO;
    if (!create)
        return FV_ENOENT;
    struct fv_buf wrapped = {0};
    if (RAND_bytes(k, sizeof k) != 1)
        return FV_EIO;
    rc = fv_seal(ks->kek.key, subject, strlen(subject), k, sizeof k, &wrapped);
    if (rc == FV_OK) {
        rc = FV_EIO;
        if (sqlite3_prepare_v2(ks->db,
                               "INSERT INTO subject_keys(subject, kek_id, wrapped, created_ms)"
                               " VALUES (?1, ?2, ?3, ?4)",
                               -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, subject, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, ks->kek.id, -1, SQLITE_STATIC);
            sqlite3_bind_blob(st, 3, wrapped.data, (int)wrapped.len, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, (sqlite3_int64)fv_now_ms());
            if (sqlite3_step(st) == SQLITE_DONE)
                rc = cache_put(ks, subject, k, dek);
            sqlite3_finalize(st);
        }
    }
    OPENSSL_cleanse(k, sizeof k);
    fv_buf_free(&wrapped);
    return rc;
}

int fv_keystore_destroy(struct fv_keystore *ks, const char *subject, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db,
                           "INSERT INTO subject_keys(subject, kek_id, wrapped, created_ms,"
                           " destroyed_ms) VALUES (?1, NULL, NULL, ?2, ?2)"
                           " ON CONFLICT(subject) DO UPDATE SET wrapped = NULL, kek_id = NULL,"
                           " destroyed_ms = coalesce(destroyed_ms, ?2)",
                           -1, &st, NULL) != SQLITE_OK) {
        fv_seterr(err, errlen, "catalog: %s", sqlite3_errmsg(ks->db));
        return FV_EIO;
    }
    sqlite3_bind_text(st, 1, subject, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)fv_now_ms());
    int ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    if (!ok) {
        fv_seterr(err, errlen, "catalog: %s", sqlite3_errmsg(ks->db));
        return FV_EIO;
    }
    unsigned char *k = fv_map_del(&ks->cache, subject, strlen(subject));
    if (k)
        free_key(k);
    /* The deleted wrapped key may linger in free pages and the SQLite WAL: overwrite them. */
    return exec(ks->db, "PRAGMA wal_checkpoint(TRUNCATE); VACUUM;", err, errlen);
}

int fv_keystore_rewrap(struct fv_keystore *ks, const struct fv_kek *new_kek, char *err,
                       size_t errlen)
{
    if (exec(ks->db, "BEGIN IMMEDIATE", err, errlen))
        return FV_EIO;
    sqlite3_stmt *sel = NULL, *upd = NULL;
    int rc = FV_EIO;
    if (sqlite3_prepare_v2(ks->db,
                           "SELECT subject, wrapped FROM subject_keys WHERE wrapped IS NOT NULL",
                           -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(ks->db,
                           "UPDATE subject_keys SET wrapped = ?2, kek_id = ?3 WHERE subject = ?1",
                           -1, &upd, NULL) != SQLITE_OK) {
        fv_seterr(err, errlen, "catalog: %s", sqlite3_errmsg(ks->db));
        goto done;
    }
    int step;
    while ((step = sqlite3_step(sel)) == SQLITE_ROW) {
        const char *subject = (const char *)sqlite3_column_text(sel, 0);
        struct fv_buf plain = {0}, wrapped = {0};
        rc = fv_open(ks->kek.key, subject, strlen(subject), sqlite3_column_blob(sel, 1),
                     (size_t)sqlite3_column_bytes(sel, 1), &plain);
        if (rc == FV_OK)
            rc = fv_seal(new_kek->key, subject, strlen(subject), plain.data, plain.len,
                         &wrapped);
        if (plain.data)
            OPENSSL_cleanse(plain.data, plain.cap);
        fv_buf_free(&plain);
        if (rc == FV_OK) {
            sqlite3_reset(upd);
            sqlite3_bind_text(upd, 1, subject, -1, SQLITE_TRANSIENT);
            sqlite3_bind_blob(upd, 2, wrapped.data, (int)wrapped.len, SQLITE_TRANSIENT);
            sqlite3_bind_text(upd, 3, new_kek->id, -1, SQLITE_STATIC);
            if (sqlite3_step(upd) != SQLITE_DONE)
                rc = FV_EIO;
        }
        fv_buf_free(&wrapped);
        if (rc) {
            fv_seterr(err, errlen, "re-wrapping the key of %s failed: %s", subject,
                      fv_strerror(rc));
            goto done;
        }
    }
    rc = step == SQLITE_DONE ? FV_OK : FV_EIO;
done:
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    if (rc == FV_OK && exec(ks->db, "COMMIT", err, errlen) == FV_OK) {
        ks->kek = *new_kek;
        return FV_OK;
    }
    exec(ks->db, "ROLLBACK", NULL, 0);
    return rc ? rc : FV_EIO;
}

void fv_keystore_close(struct fv_keystore *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->cache.cap; i++)
        if (ks->cache.slots[i].hash)
            free_key(ks->cache.slots[i].val);
    fv_map_free(&ks->cache);
    sqlite3_close(ks->db);
    OPENSSL_cleanse(&ks->kek, sizeof ks->kek);
    free(ks);
}
