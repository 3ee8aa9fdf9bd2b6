/*
 * principals.c - see principals.h.
 *
 * Invariants:
 *   R1 a token exists in plaintext only in the caller's token_out and, briefly, in this
 *      file's stack buffers (wiped before return); the catalog holds SHA-256 of it.
 *   R2 revoked_ms, once set, is never cleared, and a row is never deleted.
 *   R3 approved_ms, once set, is never cleared; a principal without it (pending) never
 *      authenticates. A pending row is approved only by another principal (principals.h A1).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "privacy/principals.h"
#include "util/clock.h"
#include "util/err.h"

#define SELECT_FIELDS                                                                              \
    "SELECT name, role, created_ms, revoked_ms, created_by, approved_ms, approved_by"
#define SELECT_COLS SELECT_FIELDS " FROM principals"

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return FV_OK;
    fv_seterr(err, errlen, "catalog: principals: %s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return FV_EIO;
}

int fv_principals_init(sqlite3 *db, char *err, size_t errlen)
{
    int rc = exec(db,
                  "BEGIN IMMEDIATE;"
                  "CREATE TABLE IF NOT EXISTS principals(name TEXT PRIMARY KEY,"
                  " role TEXT NOT NULL, token_hash BLOB NOT NULL, created_ms INTEGER,"
                  " revoked_ms INTEGER, created_by TEXT, approved_ms INTEGER, approved_by TEXT);"
                  "CREATE UNIQUE INDEX IF NOT EXISTS principals_token_hash"
                  " ON principals(token_hash);"
                  "CREATE TABLE IF NOT EXISTS principal_events(id INTEGER PRIMARY KEY,"
                  " at_ms INTEGER NOT NULL, action TEXT NOT NULL, name TEXT NOT NULL,"
                  " role TEXT NOT NULL, detail TEXT NOT NULL);",
                  err, errlen);
    if (rc) return rc;
    /* A catalog from before approvals: its principals were made under the old rules and stay
     * active (approved at creation); from now on new ones follow A1. */
    sqlite3_stmt *st = NULL;
    int old = sqlite3_prepare_v2(db, "SELECT approved_ms FROM principals LIMIT 0", -1, &st, NULL) !=
              SQLITE_OK;
    sqlite3_finalize(st);
    if (old)
        rc = exec(db,
                  "ALTER TABLE principals ADD COLUMN approved_ms INTEGER;"
                  "ALTER TABLE principals ADD COLUMN approved_by TEXT;"
                  "UPDATE principals SET approved_ms = COALESCE(created_ms, 1);",
                  err, errlen);
    if (rc) {
        exec(db, "ROLLBACK", NULL, 0);
        return rc;
    }
    return exec(db, "COMMIT", err, errlen);
}

/* A1: does a new principal of role wait for approval? Yes for a role that reaches personal
 * data, except the installation's first approver (no principal of an approving role has
 * ever existed, revoked ones included): someone has to approve the others. */
static int needs_approval(sqlite3 *db, const struct fv_policy *policy, const char *role,
                          int *pending, char *err, size_t errlen)
{
    *pending = fv_policy_role_reaches_data(policy, role);
    if (!*pending || !fv_policy_role_approves(policy, role)) return FV_OK;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT DISTINCT role FROM principals", -1, &st, NULL) !=
        SQLITE_OK) {
        fv_seterr(err, errlen, "catalog: principals: %s", sqlite3_errmsg(db));
        return FV_EIO;
    }
    int any = 0, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        any |= fv_policy_role_approves(policy, (const char *)sqlite3_column_text(st, 0)) ||
               fv_policy_role_id(policy, (const char *)sqlite3_column_text(st, 0)) < 0;
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) {
        fv_seterr(err, errlen, "catalog: principals: %s", sqlite3_errmsg(db));
        return FV_EIO;
    }
    *pending = any; /* none yet: this one is the first approver */
    return FV_OK;
}

int fv_principal_name_valid(const char *name)
{
    if (name == NULL) return 0;
    size_t n = strnlen(name, FV_PRINCIPAL_NAME_MAX + 1);
    if (n == 0 || n > FV_PRINCIPAL_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* A name as it reads in a log line: lower case, separators dropped, digits and letters that
 * look alike as one letter. */
static void fold(const char *in, char out[FV_PRINCIPAL_NAME_MAX + 1])
{
    static const char from[] = "013457l", to[] = "oieasti";
    size_t k = 0;
    for (const char *p = in; *p && k < FV_PRINCIPAL_NAME_MAX; p++) {
        char c = (char)tolower((unsigned char)*p);
        if (c == '.' || c == '_' || c == '-') continue;
        const char *m = strchr(from, c);
        out[k++] = m ? to[m - from] : c;
    }
    out[k] = '\0';
}

int fv_principal_name_reserved(const char *name)
{
    /* Names the audit log already uses for someone who is not a principal: the admin token
     * ("admin"), the server itself ("fleetvault"), an unauthenticated request ("unknown").
     * A look-alike would pass for one of them in a log line: "adm1n", "ad-min", "_admin_"
     * and "4dmin" all read as "admin". */
    static const char *const reserved[] = {"admin", "administrator", "fleetvault", "unknown"};
    char n[FV_PRINCIPAL_NAME_MAX + 1], r[FV_PRINCIPAL_NAME_MAX + 1];
    if (name == NULL) return 0;
    fold(name, n);
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        fold(reserved[i], r);
        if (strcmp(n, r) == 0) return 1;
    }
    return 0;
}

static void hash_token(const unsigned char token[FV_TOKEN_BYTES],
                       unsigned char out[SHA256_DIGEST_LENGTH])
{
    SHA256(token, FV_TOKEN_BYTES, out);
}

int fv_principal_create(sqlite3 *db, const struct fv_policy *policy, const char *name,
                        const char *role, const char *created_by,
                        char token_out[FV_TOKEN_HEX_LEN + 1], char *err, size_t errlen)
{
    token_out[0] = '\0';
    if (!fv_principal_name_valid(name)) {
        fv_seterr(err, errlen, "bad principal name (1 to %d of a-z 0-9 . _ -)",
                  FV_PRINCIPAL_NAME_MAX);
        return FV_EINVAL;
    }
    if (fv_principal_name_reserved(name)) {
        fv_seterr(err, errlen,
                  "principal name '%s' is reserved: it reads as admin, administrator, "
                  "fleetvault or unknown, names the audit log gives to others",
                  name);
        return FV_EINVAL;
    }
    if (created_by != NULL && !fv_principal_name_valid(created_by)) {
        fv_seterr(err, errlen, "bad created_by name (1 to %d of a-z 0-9 . _ -)",
                  FV_PRINCIPAL_NAME_MAX);
        return FV_EINVAL;
    }
    if (role == NULL || fv_policy_role_id(policy, role) < 0) {
        char roles[FV_POLICY_MAX_ROLES * (FV_POLICY_NAME_MAX + 2) + 1];
        size_t used = 0;
        roles[0] = '\0';
        for (size_t i = 0; i < fv_policy_nroles(policy) && used < sizeof roles; i++) {
            int k = snprintf(roles + used, sizeof roles - used, "%s%s", i ? ", " : "",
                             fv_policy_role_name(policy, i));
            if (k < 0) break;
            used += (size_t)k;
        }
        fv_seterr(err, errlen, "unknown role (roles: %s)", roles);
        return FV_EINVAL;
    }
    unsigned char token[FV_TOKEN_BYTES], hash[SHA256_DIGEST_LENGTH];
    char hex[FV_TOKEN_HEX_LEN + 1];
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (RAND_bytes(token, sizeof token) != 1) {
        fv_seterr(err, errlen, "no randomness for the token");
        goto done;
    }
    hash_token(token, hash);
    for (int i = 0; i < FV_TOKEN_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", token[i]);
    int pending;
    if ((rc = needs_approval(db, policy, role, &pending, err, errlen)) != FV_OK) goto done;
    rc = FV_EIO;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO principals(name, role, token_hash, created_ms, revoked_ms,"
                           " created_by, approved_ms) VALUES (?1, ?2, ?3, ?4, NULL, ?5,"
                           " CASE WHEN ?6 THEN NULL ELSE ?4 END)",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_int(st, 6, pending) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, role, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_blob(st, 3, hash, sizeof hash, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 4, (sqlite3_int64)fv_now_ms()) != SQLITE_OK ||
        (created_by ? sqlite3_bind_text(st, 5, created_by, -1, SQLITE_STATIC)
                    : sqlite3_bind_null(st, 5)) != SQLITE_OK) {
        fv_seterr(err, errlen, "catalog: principals: %s", sqlite3_errmsg(db));
        goto done;
    }
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        memcpy(token_out, hex, sizeof hex);
        rc = FV_OK;
    } else if (sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_PRIMARYKEY) {
        fv_seterr(err, errlen,
                  "principal %s already exists (names are never reused, even once revoked)", name);
        rc = FV_EEXIST;
    } else {
        fv_seterr(err, errlen, "catalog: principals: %s", sqlite3_errmsg(db));
    }
done:
    sqlite3_finalize(st);
    OPENSSL_cleanse(token, sizeof token);
    OPENSSL_cleanse(hex, sizeof hex);
    return rc;
}

/* Copies a text column into out (size cap); FV_ECORRUPT if it does not fit or is not
 * text. NULL reads as "" when nullable. */
static int text_col(sqlite3_stmt *st, int col, char *out, size_t cap, int nullable)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL) {
        out[0] = '\0';
        return nullable ? FV_OK : FV_ECORRUPT;
    }
    const unsigned char *s = sqlite3_column_text(st, col);
    int n = sqlite3_column_bytes(st, col);
    if (s == NULL || n <= 0 || (size_t)n >= cap) return FV_ECORRUPT;
    memcpy(out, s, (size_t)n);
    out[n] = '\0';
    return FV_OK;
}

/* Reads a row of SELECT_COLS. */
static int read_row(sqlite3_stmt *st, struct fv_principal *out)
{
    memset(out, 0, sizeof *out);
    int rc = text_col(st, 0, out->name, sizeof out->name, 0);
    if (rc == FV_OK) rc = text_col(st, 1, out->role, sizeof out->role, 0);
    if (rc == FV_OK) rc = text_col(st, 4, out->created_by, sizeof out->created_by, 1);
    if (rc == FV_OK) rc = text_col(st, 6, out->approved_by, sizeof out->approved_by, 1);
    if (rc) return rc;
    out->created_ms = sqlite3_column_int64(st, 2);
    out->revoked_ms = sqlite3_column_int64(st, 3);
    out->approved_ms = sqlite3_column_int64(st, 5);
    if (sqlite3_column_type(st, 5) != SQLITE_NULL && out->approved_ms <= 0) out->approved_ms = 1;
    /* A revocation time of 0 would read as active: keep any revoked row revoked (R2). */
    if (sqlite3_column_type(st, 3) != SQLITE_NULL && out->revoked_ms <= 0) out->revoked_ms = 1;
    return FV_OK;
}

int fv_principal_get(sqlite3 *db, const char *name, struct fv_principal *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (name == NULL) return FV_ENOENT;
    if (sqlite3_prepare_v2(db, SELECT_COLS " WHERE name = ?1", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) == SQLITE_OK) {
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW)
            rc = read_row(st, out);
        else if (step == SQLITE_DONE)
            rc = FV_ENOENT;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Runs an UPDATE of one principal's row: ?1 its name, ?2 now, ?3 by (if not NULL). FV_OK (one
 * row changed), FV_ENOENT (none), FV_EIO with err set. */
static int stamp(sqlite3 *db, const char *sql, const char *name, const char *by, char *err,
                 size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_int64(st, 2, (sqlite3_int64)fv_now_ms()) == SQLITE_OK &&
        (by == NULL || sqlite3_bind_text(st, 3, by, -1, SQLITE_STATIC) == SQLITE_OK) &&
        sqlite3_step(st) == SQLITE_DONE)
        rc = sqlite3_changes(db) == 1 ? FV_OK : FV_ENOENT;
    else
        fv_seterr(err, errlen, "catalog: principals: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

int fv_principal_revoke(sqlite3 *db, const char *name, char *err, size_t errlen)
{
    if (!fv_principal_name_valid(name)) {
        fv_seterr(err, errlen, "bad principal name");
        return FV_EINVAL;
    }
    int rc = stamp(db,
                   "UPDATE principals SET revoked_ms = ?2"
                   " WHERE name = ?1 AND revoked_ms IS NULL",
                   name, NULL, err, errlen);
    if (rc != FV_ENOENT) return rc;
    /* Nothing changed: no such principal, or already revoked. */
    struct fv_principal p;
    rc = fv_principal_get(db, name, &p);
    if (rc == FV_OK) {
        fv_seterr(err, errlen, "principal %s is already revoked", name);
        return FV_ESTATE;
    }
    if (rc == FV_ENOENT)
        fv_seterr(err, errlen, "no principal %s", name);
    else
        fv_seterr(err, errlen, "catalog: principals: %s", sqlite3_errmsg(db));
    return rc;
}

int fv_principal_list(sqlite3 *db, int (*fn)(void *arg, const struct fv_principal *p), void *arg,
                      char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = FV_OK;
    /* A catalog from before approvals (read only, e.g. by the privacy report): its principals
     * were active from creation (fv_principals_init migrates it so). */
    if (sqlite3_prepare_v2(db, SELECT_COLS " ORDER BY name", -1, &st, NULL) != SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT name, role, created_ms, revoked_ms, created_by,"
                           " COALESCE(created_ms, 1), NULL FROM principals ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK) {
        fv_seterr(err, errlen, "catalog: principals: %s", sqlite3_errmsg(db));
        return FV_EIO;
    }
    for (;;) {
        int step = sqlite3_step(st);
        if (step == SQLITE_DONE) break;
        if (step != SQLITE_ROW) {
            fv_seterr(err, errlen, "catalog: principals: %s", sqlite3_errmsg(db));
            rc = FV_EIO;
            break;
        }
        struct fv_principal p;
        rc = read_row(st, &p);
        if (rc) {
            fv_seterr(err, errlen, "catalog: principals: a row is out of range");
            break;
        }
        rc = fn(arg, &p);
        if (rc) break;
    }
    sqlite3_finalize(st);
    return rc;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int fv_principal_token_hash(const char *bearer, struct evp_md_st *sha256, unsigned char hash[32])
{
    if (bearer == NULL || strnlen(bearer, FV_TOKEN_HEX_LEN + 1) != FV_TOKEN_HEX_LEN)
        return FV_EINVAL;
    unsigned char token[FV_TOKEN_BYTES];
    int bad = 0;
    for (int i = 0; i < FV_TOKEN_BYTES; i++) {
        int hi = hexval((unsigned char)bearer[2 * i]),
            lo = hexval((unsigned char)bearer[2 * i + 1]);
        bad |= (hi < 0) | (lo < 0);
        token[i] = (unsigned char)(((hi & 15) << 4) | (lo & 15));
    }
    int ok = 1;
    if (sha256 == NULL)
        hash_token(token, hash);
    else
        ok = EVP_Digest(token, sizeof token, hash, NULL, sha256, NULL) == 1;
    OPENSSL_cleanse(token, sizeof token);
    return bad ? FV_EINVAL : ok ? FV_OK : FV_EIO;
}

int fv_principal_authenticate_hash(sqlite3 *db, const unsigned char hash[32],
                                   struct fv_principal *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (sqlite3_prepare_v3(db, SELECT_FIELDS ", token_hash FROM principals WHERE token_hash = ?1",
                           -1, 0, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_blob(st, 1, hash, SHA256_DIGEST_LENGTH, SQLITE_STATIC) == SQLITE_OK) {
        int step = sqlite3_step(st);
        if (step == SQLITE_DONE) {
            rc = FV_ENOENT;
        } else if (step == SQLITE_ROW) {
            const void *stored = sqlite3_column_blob(st, 7);
            if (stored == NULL || sqlite3_column_bytes(st, 7) != SHA256_DIGEST_LENGTH ||
                CRYPTO_memcmp(stored, hash, SHA256_DIGEST_LENGTH) != 0)
                rc = FV_ENOENT;
            else
                rc = read_row(st, out);
            if (rc == FV_OK && out->revoked_ms != 0) rc = FV_ESTATE;
            if (rc == FV_OK && out->approved_ms == 0) rc = FV_EAGAIN; /* R3 */
        }
    }
    sqlite3_finalize(st);
    if (rc != FV_OK && rc != FV_ESTATE && rc != FV_EAGAIN) memset(out, 0, sizeof *out);
    return rc;
}

int fv_principal_authenticate(sqlite3 *db, const char *bearer, struct fv_principal *out)
{
    unsigned char hash[SHA256_DIGEST_LENGTH];
    memset(out, 0, sizeof *out);
    if (fv_principal_token_hash(bearer, NULL, hash) != FV_OK) return FV_EINVAL;
    return fv_principal_authenticate_hash(db, hash, out);
}

int fv_principal_approve(sqlite3 *db, const struct fv_policy *policy, const char *name,
                         const char *approver, const char *approver_role, char *err, size_t errlen)
{
    struct fv_principal p;
    int rc = fv_principal_name_valid(name) ? fv_principal_get(db, name, &p) : FV_ENOENT;
    if (rc == FV_ENOENT) {
        fv_seterr(err, errlen, "no principal %s", fv_principal_name_valid(name) ? name : "");
        return rc;
    }
    if (rc) {
        fv_seterr(err, errlen, "catalog: principals: %s", sqlite3_errmsg(db));
        return rc;
    }
    if (p.revoked_ms || p.approved_ms) {
        fv_seterr(err, errlen, "principal %s is not waiting for approval", name);
        return FV_ESTATE;
    }
    if (approver == NULL || strcmp(approver, name) == 0 || strcmp(approver, p.created_by) == 0) {
        fv_seterr(err, errlen, "%s created %s: a second principal approves it", p.created_by, name);
        return FV_EINVAL;
    }
    if (!fv_policy_role_approves(policy, approver_role)) {
        fv_seterr(err, errlen,
                  "role %s may not approve principals (a role that approves_bulk does)",
                  approver_role ? approver_role : "");
        return FV_EINVAL;
    }
    rc = stamp(db,
               "UPDATE principals SET approved_ms = ?2, approved_by = ?3"
               " WHERE name = ?1 AND approved_ms IS NULL AND revoked_ms IS NULL",
               name, approver, err, errlen);
    if (rc == FV_ENOENT) { /* changed meanwhile */
        fv_seterr(err, errlen, "principal %s is not waiting for approval", name);
        rc = FV_ESTATE;
    }
    return rc;
}

int fv_principal_event_add(sqlite3 *db, const char *action, const char *name, const char *role,
                           const char *detail, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO principal_events(at_ms, action, name, role, detail)"
                           " VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_int64(st, 1, (sqlite3_int64)fv_now_ms()) == SQLITE_OK &&
        sqlite3_bind_text(st, 2, action, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(st, 4, role ? role : "", -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(st, 5, detail ? detail : "", -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_DONE)
        rc = FV_OK;
    else
        fv_seterr(err, errlen, "catalog: principal events: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

int fv_principal_events_drain(sqlite3 *db, int (*fn)(void *arg, const struct fv_principal_event *e),
                              void *arg)
{
    sqlite3_stmt *st = NULL, *del = NULL;
    int rc = FV_OK;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, at_ms, action, name, role, detail FROM principal_events"
                           " ORDER BY id LIMIT 64",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "DELETE FROM principal_events WHERE id = ?1", -1, &del, NULL) !=
            SQLITE_OK) {
        sqlite3_finalize(st);
        return FV_EIO;
    }
    int step;
    while (rc == FV_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct fv_principal_event e = {.at_ms = sqlite3_column_int64(st, 1)};
        snprintf(e.action, sizeof e.action, "%s", (const char *)sqlite3_column_text(st, 2));
        snprintf(e.name, sizeof e.name, "%s", (const char *)sqlite3_column_text(st, 3));
        snprintf(e.role, sizeof e.role, "%s", (const char *)sqlite3_column_text(st, 4));
        snprintf(e.detail, sizeof e.detail, "%s", (const char *)sqlite3_column_text(st, 5));
        rc = fn(arg, &e); /* logged first, deleted after: a crash between logs it twice */
        if (rc == FV_OK && (sqlite3_bind_int64(del, 1, sqlite3_column_int64(st, 0)) != SQLITE_OK ||
                            sqlite3_step(del) != SQLITE_DONE || sqlite3_reset(del) != SQLITE_OK))
            rc = FV_EIO;
    }
    sqlite3_finalize(st);
    sqlite3_finalize(del);
    return rc;
}

/* ---- whole rows (cluster sync) -------------------------------------------------------------- */

int fv_principal_row_get(sqlite3 *db, const char *name, struct fv_principal_row *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (name == NULL) return FV_ENOENT;
    if (sqlite3_prepare_v2(db, SELECT_FIELDS ", token_hash FROM principals WHERE name = ?1", -1,
                           &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) == SQLITE_OK) {
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            rc = read_row(st, &out->p);
            const void *h = sqlite3_column_blob(st, 7);
            if (rc == FV_OK && (h == NULL || sqlite3_column_bytes(st, 7) != SHA256_DIGEST_LENGTH))
                rc = FV_ECORRUPT;
            if (rc == FV_OK) memcpy(out->token_hash, h, SHA256_DIGEST_LENGTH);
        } else if (step == SQLITE_DONE) {
            rc = FV_ENOENT;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int fv_principal_names(sqlite3 *db, int (*fn)(void *arg, const char *name), void *arg)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT name FROM principals ORDER BY name", -1, &st, NULL) !=
        SQLITE_OK)
        return FV_EIO;
    int rc = FV_OK, step;
    while (rc == FV_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *n = (const char *)sqlite3_column_text(st, 0);
        if (n) rc = fn(arg, n);
    }
    if (rc == FV_OK && step != SQLITE_DONE) rc = FV_EIO;
    sqlite3_finalize(st);
    return rc;
}

static int bind_opt_ms(sqlite3_stmt *st, int col, int64_t v)
{
    return v ? sqlite3_bind_int64(st, col, (sqlite3_int64)v) : sqlite3_bind_null(st, col);
}

static int bind_opt_text(sqlite3_stmt *st, int col, const char *s)
{
    return s[0] ? sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, col);
}

int fv_principal_row_put(sqlite3 *db, const struct fv_principal_row *r, const char *action,
                         const char *detail, char *err, size_t errlen)
{
    const struct fv_principal *p = &r->p;
    if (!fv_principal_name_valid(p->name) || p->role[0] == '\0') {
        fv_seterr(err, errlen, "bad principal name or role");
        return FV_EINVAL;
    }
    int rc = exec(db, "BEGIN IMMEDIATE", err, errlen);
    if (rc) return rc;
    sqlite3_stmt *st = NULL;
    rc = FV_EIO;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO principals(name, role, token_hash, created_ms, revoked_ms,"
                           " created_by, approved_ms, approved_by)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                           " ON CONFLICT(name) DO UPDATE SET role = ?2, token_hash = ?3,"
                           " created_ms = ?4, revoked_ms = ?5, created_by = ?6, approved_ms = ?7,"
                           " approved_by = ?8",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, p->name, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(st, 2, p->role, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_blob(st, 3, r->token_hash, sizeof r->token_hash, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_int64(st, 4, (sqlite3_int64)p->created_ms) == SQLITE_OK &&
        bind_opt_ms(st, 5, p->revoked_ms) == SQLITE_OK &&
        bind_opt_text(st, 6, p->created_by) == SQLITE_OK &&
        bind_opt_ms(st, 7, p->approved_ms) == SQLITE_OK &&
        bind_opt_text(st, 8, p->approved_by) == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE)
        rc = FV_OK;
    else
        fv_seterr(err, errlen, "catalog: principals: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (rc == FV_OK && action)
        rc = fv_principal_event_add(db, action, p->name, p->role, detail, err, errlen);
    if (rc == FV_OK) rc = exec(db, "COMMIT", err, errlen);
    if (rc) exec(db, "ROLLBACK", NULL, 0);
    return rc;
}
