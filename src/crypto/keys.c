/*
 * keys.c - see keys.h.
 *
 * Catalog schema (DATA/catalog.db, SQLite, synchronous=FULL so a new key is durable before
 * any record sealed with it can be acknowledged):
 *   meta(k TEXT PRIMARY KEY, kek_id TEXT, v BLOB)  -- 'pseudonym_key': wrapped by the KEK,
 *                                                  -- AAD "fleetvault pseudonym key"
 *   subject_keys(subject TEXT PRIMARY KEY,   -- the pseudonym, never the name
 *                kek_id TEXT, wrapped BLOB,  -- the data key, wrapped by the KEK
 *                sealed_name BLOB,           -- the name (VIN), sealed with the data key
 *                                            -- (both: AAD = the pseudonym's 32 hex chars)
 *                created_ms INTEGER, destroyed_ms INTEGER)
 *   Shredded: wrapped, sealed_name and kek_id NULL, destroyed_ms set (a tombstone).
 * Invariant K1: a subject's key is never re-created after destruction (a new owner is a
 * new subject), so old ciphertexts can never become readable again.
 * Invariant K2: no name is stored in plaintext: the catalog and the WAL carry pseudonyms;
 * a name can be read back only with the subject's data key, so shredding erases it too.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sqlite3.h>

#include "crypto/keys.h"
#include "os/fsio.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/map.h"

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
    if (n != 2 * FV_KEY_LEN) return -1;
    for (size_t i = n; s[i]; i++)
        if (!isspace((unsigned char)s[i])) return -1;
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
            fv_seterr(err, errlen,
                      "no master key: pass --key-file FILE (make one with "
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
        fv_seterr(err, errlen,
                  "%s: no such master key file (make one with 'fleetvault keys "
                  "init %s')",
                  path, path);
    if (rc) return rc;
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077)) {
        fv_seterr(err, errlen,
                  "%s: master key file is readable by others (mode %03o); "
                  "chmod 600 it",
                  path, st.st_mode & 0777);
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

/* Per thread: one cipher context reused for every seal and open (no allocation per record),
 * and the nonce source. A nonce is an 8-byte random prefix drawn once per thread (and again
 * after 2^32 nonces) followed by a 4-byte counter: unique on this thread by the counter,
 * across threads and restarts unless two 64-bit prefixes collide (about n^2 / 2^65 for n
 * prefixes ever drawn), which is far safer than 96 random bits per record at the 2^32-record
 * bound, and costs no random draw per record (RAND_bytes checked for fork on every call: ~3%
 * of the ingest loop in a profile, issue 13). Released at thread exit (a pthread key). */
struct aead_tls {
    EVP_CIPHER_CTX *ctx;
    unsigned char prefix[8];
    uint32_t counter;
    int have_prefix;
};

static pthread_key_t aead_key;
static pthread_once_t aead_once = PTHREAD_ONCE_INIT;
static int aead_key_ok;

static void aead_tls_free(void *p)
{
    struct aead_tls *t = p;
    if (t == NULL) return;
    EVP_CIPHER_CTX_free(t->ctx);
    OPENSSL_cleanse(t, sizeof *t);
    free(t);
}

/* A forked child (only the forking thread goes on in it) draws a new prefix before its first
 * nonce, so a child that sealed could never repeat its parent's nonces. */
static void aead_atfork_child(void)
{
    struct aead_tls *t = aead_key_ok ? pthread_getspecific(aead_key) : NULL;
    if (t) t->have_prefix = 0;
}

static void aead_init_once(void)
{
    aead_key_ok = pthread_key_create(&aead_key, aead_tls_free) == 0 &&
                  pthread_atfork(NULL, NULL, aead_atfork_child) == 0;
}

static struct aead_tls *aead_tls(void)
{
    pthread_once(&aead_once, aead_init_once);
    if (!aead_key_ok) return NULL;
    struct aead_tls *t = pthread_getspecific(aead_key);
    if (t) return t;
    t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    t->ctx = EVP_CIPHER_CTX_new();
    if (t->ctx == NULL || EVP_CipherInit_ex(t->ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, 1) != 1 ||
        pthread_setspecific(aead_key, t) != 0) {
        EVP_CIPHER_CTX_free(t->ctx);
        free(t);
        return NULL;
    }
    return t;
}

int fv__nonce(unsigned char out[12])
{
    struct aead_tls *t = aead_tls();
    if (t == NULL) return FV_ENOMEM;
    if (!t->have_prefix || t->counter == UINT32_MAX) {
        if (RAND_bytes(t->prefix, sizeof t->prefix) != 1) return FV_EIO;
        t->have_prefix = 1;
        t->counter = 0;
    }
    uint32_t c = t->counter++;
    memcpy(out, t->prefix, 8);
    out[8] = (unsigned char)(c >> 24);
    out[9] = (unsigned char)(c >> 16);
    out[10] = (unsigned char)(c >> 8);
    out[11] = (unsigned char)c;
    return FV_OK;
}

static int gcm(int enc, const unsigned char *key, const unsigned char *iv, const void *aad,
               size_t aadlen, const unsigned char *in, size_t n, unsigned char *out,
               unsigned char *tag)
{
    struct aead_tls *t = aead_tls();
    if (t == NULL) return FV_ENOMEM;
    EVP_CIPHER_CTX *c = t->ctx;
    int l = 0;
    if (n > INT32_MAX || aadlen > INT32_MAX) return FV_ECORRUPT;
    /* The cipher stays set from aead_tls: only the direction, key and nonce change. */
    if (EVP_CipherInit_ex(c, NULL, NULL, key, iv, enc) != 1) return FV_ECORRUPT;
    if (aadlen && EVP_CipherUpdate(c, NULL, &l, aad, (int)aadlen) != 1) return FV_ECORRUPT;
    if (n && EVP_CipherUpdate(c, out, &l, in, (int)n) != 1) return FV_ECORRUPT;
    if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1) return FV_ECORRUPT;
    if (EVP_CipherFinal_ex(c, out + l, &l) != 1) return FV_ECORRUPT;
    if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1) return FV_ECORRUPT;
    return FV_OK;
}

int fv_seal(const unsigned char key[FV_KEY_LEN], const void *aad, size_t aadlen, const void *pt,
            size_t n, struct fv_buf *out)
{
    int rc = fv_buf_reserve(out, n + FV_SEAL_OVERHEAD);
    if (rc) return rc;
    unsigned char *p = out->data + out->len;
    if ((rc = fv__nonce(p)) != FV_OK) return rc;
    rc = gcm(1, key, p, aad, aadlen, pt, n, p + 12, p + 12 + n);
    if (rc == FV_OK) out->len += n + FV_SEAL_OVERHEAD;
    return rc == FV_ECORRUPT ? FV_EIO : rc;
}

int fv_seal_at(const unsigned char key[FV_KEY_LEN], const unsigned char nonce[12], const void *aad,
               size_t aadlen, const void *pt, size_t n, struct fv_buf *out)
{
    int rc = fv_buf_reserve(out, n + FV_SEAL_TAG);
    if (rc) return rc;
    unsigned char *p = out->data + out->len;
    rc = gcm(1, key, nonce, aad, aadlen, pt, n, p, p + n);
    if (rc == FV_OK) out->len += n + FV_SEAL_TAG;
    return rc == FV_ECORRUPT ? FV_EIO : rc;
}

int fv_open_at(const unsigned char key[FV_KEY_LEN], const unsigned char nonce[12], const void *aad,
               size_t aadlen, const unsigned char *in, size_t n, struct fv_buf *out)
{
    if (n < FV_SEAL_TAG) return FV_ECORRUPT;
    size_t m = n - FV_SEAL_TAG;
    int rc = fv_buf_reserve(out, m + 1);
    if (rc) return rc;
    unsigned char tag[16];
    memcpy(tag, in + m, 16);
    rc = gcm(0, key, nonce, aad, aadlen, in, m, out->data + out->len, tag);
    if (rc == FV_OK) out->len += m;
    return rc;
}

int fv_random(void *out, size_t n)
{
    return RAND_bytes(out, (int)n) == 1 ? FV_OK : FV_EIO;
}

int fv_open(const unsigned char key[FV_KEY_LEN], const void *aad, size_t aadlen,
            const unsigned char *in, size_t n, struct fv_buf *out)
{
    if (n < FV_SEAL_OVERHEAD) return FV_ECORRUPT;
    size_t m = n - FV_SEAL_OVERHEAD;
    int rc = fv_buf_reserve(out, m + 1);
    if (rc) return rc;
    unsigned char tag[16];
    memcpy(tag, in + 12 + m, 16);
    rc = gcm(0, key, in, aad, aadlen, in + 12, m, out->data + out->len, tag);
    if (rc == FV_OK) out->len += m;
    return rc;
}

/* ---- keystore ---------------------------------------------------------------------- */

struct subject_entry {
    unsigned char dek[FV_KEY_LEN];
    char name[FV_NAME_MAX + 1];
};

struct fv_keystore {
    sqlite3 *db;
    struct fv_kek kek;
    unsigned char pkey[FV_KEY_LEN]; /* pseudonym key */
    EVP_MAC_CTX *mac;               /* HMAC-SHA256 keyed with pkey (pseudonym_mac) */
    struct fv_map cache;            /* pseudonym -> struct subject_entry */
    char wal_path[4096];            /* the catalog's SQLite WAL file (DB-wal) */
    int defer_sync;                 /* new keys committed without fsync (fv_keystore_sync) */
    int unsynced;                   /* atomic: a key was committed since the last sync */
    sqlite3_stmt *stmts[FV_KEYSTORE_STMTS]; /* fv_keystore_stmt */
    struct fv_keysource src;                /* cluster mode: the shared source (src.subject) */
    int async; /* the source is asked elsewhere (fv_keystore_set_async), never here */
};

static const char PKEY_AAD[] = "fleetvault pseudonym key";

int fv_catalog_exec(struct sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fv_seterr(err, errlen, "catalog: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return FV_EIO;
    }
    return FV_OK;
}

static void free_entry(struct subject_entry *e)
{
    OPENSSL_cleanse(e, sizeof *e);
    free(e);
}

/* With a shared source: its pseudonym key, offering ours (have: the catalog's) or a new one. */
static int shared_pseudonym_key(struct fv_keystore *ks, int have, const char *db_path, char *err,
                                size_t errlen)
{
    if (ks->src.pseudonym_key == NULL) return FV_OK;
    unsigned char won[FV_KEY_LEN];
    int rc = ks->src.pseudonym_key(ks->src.arg, ks->pkey, won, err, errlen);
    if (rc == FV_OK && have && CRYPTO_memcmp(won, ks->pkey, FV_KEY_LEN) != 0) {
        fv_seterr(err, errlen,
                  "%s: this catalog's pseudonym key is not the cluster's (a catalog made by "
                  "another cluster, or before this node joined it: start the node with a new "
                  "data directory)",
                  db_path);
        rc = FV_ESTATE;
    }
    if (rc == FV_OK) memcpy(ks->pkey, won, FV_KEY_LEN);
    OPENSSL_cleanse(won, sizeof won);
    return rc;
}

/* Loads the pseudonym key, or makes and stores one in a new catalog (with a shared source:
 * the source's). */
static int load_pseudonym_key(struct fv_keystore *ks, const char *db_path, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (sqlite3_prepare_v2(ks->db, "SELECT kek_id, v FROM meta WHERE k = 'pseudonym_key'", -1, &st,
                           NULL) != SQLITE_OK)
        goto db;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (id == NULL || strcmp(id, ks->kek.id) != 0) {
            fv_seterr(err, errlen,
                      "%s: the catalog's keys are wrapped by master key %s, but the master key "
                      "given is %s (wrong --key-file / FV_MASTER_KEY?)",
                      db_path, id ? id : "?", ks->kek.id);
            sqlite3_finalize(st);
            return FV_ETLS;
        }
        struct fv_buf plain = {0};
        rc = fv_open(ks->kek.key, PKEY_AAD, sizeof PKEY_AAD - 1, sqlite3_column_blob(st, 1),
                     (size_t)sqlite3_column_bytes(st, 1), &plain);
        if (rc == FV_OK && plain.len == FV_KEY_LEN)
            memcpy(ks->pkey, plain.data, FV_KEY_LEN);
        else
            fv_seterr(err, errlen, "%s: the pseudonym key does not open (catalog altered?)",
                      db_path);
        if (plain.data) OPENSSL_cleanse(plain.data, plain.cap);
        fv_buf_free(&plain);
        sqlite3_finalize(st);
        return rc == FV_OK ? shared_pseudonym_key(ks, 1, db_path, err, errlen) : FV_ECORRUPT;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (step != SQLITE_DONE) goto db;
    if (RAND_bytes(ks->pkey, FV_KEY_LEN) != 1) {
        fv_seterr(err, errlen, "cannot make the pseudonym key");
        return FV_EIO;
    }
    if ((rc = shared_pseudonym_key(ks, 0, db_path, err, errlen)) != FV_OK) return rc;
    rc = FV_EIO;
    struct fv_buf wrapped = {0};
    if (fv_seal(ks->kek.key, PKEY_AAD, sizeof PKEY_AAD - 1, ks->pkey, FV_KEY_LEN, &wrapped)) {
        fv_buf_free(&wrapped);
        fv_seterr(err, errlen, "cannot make the pseudonym key");
        return FV_EIO;
    }
    if (sqlite3_prepare_v2(ks->db,
                           "INSERT INTO meta(k, kek_id, v) VALUES ('pseudonym_key', ?1, ?2)", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, ks->kek.id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, wrapped.data, (int)wrapped.len, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_DONE) rc = FV_OK;
    }
    sqlite3_finalize(st);
    fv_buf_free(&wrapped);
    if (rc == FV_OK) return FV_OK;
db:
    fv_seterr(err, errlen, "%s: %s", db_path, sqlite3_errmsg(ks->db));
    return FV_EIO;
}

int fv_keystore_open(const char *db_path, const struct fv_kek *kek, struct fv_keystore **out,
                     char *err, size_t errlen)
{
    return fv_keystore_open_shared(db_path, kek, NULL, out, err, errlen);
}

int fv_keystore_open_shared(const char *db_path, const struct fv_kek *kek,
                            const struct fv_keysource *src, struct fv_keystore **out, char *err,
                            size_t errlen)
{
    *out = NULL;
    struct fv_keystore *ks = calloc(1, sizeof *ks);
    if (ks == NULL) return FV_ENOMEM;
    ks->kek = *kek;
    if (src) ks->src = *src;
    int rc = FV_EIO;
    if (sqlite3_open_v2(db_path, &ks->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        fv_seterr(err, errlen, "%s: %s", db_path, sqlite3_errmsg(ks->db));
        goto fail;
    }
    chmod(db_path, 0600);
    /* Other connections (the server's other keystore, the CLI) write too: a write meeting
     * theirs waits for it (their transactions are short) rather than failing. */
    sqlite3_busy_timeout(ks->db, FV_KEYSTORE_BUSY_MS);
    snprintf(ks->wal_path, sizeof ks->wal_path, "%s-wal", db_path);
    rc = fv_catalog_exec(
        ks->db,
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;"
        "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, kek_id TEXT, v BLOB);"
        "CREATE TABLE IF NOT EXISTS subject_keys(subject TEXT PRIMARY KEY, kek_id TEXT,"
        " wrapped BLOB, sealed_name BLOB, created_ms INTEGER NOT NULL,"
        " destroyed_ms INTEGER);",
        err, errlen);
    if (rc == FV_OK) rc = load_pseudonym_key(ks, db_path, err, errlen);
    if (rc) goto fail;
    *out = ks;
    return FV_OK;
fail:
    sqlite3_close(ks->db);
    OPENSSL_cleanse(ks, sizeof *ks);
    free(ks);
    return rc;
}

/* The pseudonym key's HMAC-SHA256, keyed once and re-initialised per use: a device's every
 * record needs its pseudonym, and a one-shot HMAC() fetches the digest and sets the key up
 * each time (with the hex formatting, ~3% of the ingest loop; issue 13). */
static EVP_MAC_CTX *pseudonym_mac(struct fv_keystore *ks)
{
    if (ks->mac) return ks->mac;
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
    EVP_MAC_free(m);
    if (c == NULL) return NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(c, ks->pkey, FV_KEY_LEN, params) != 1) {
        EVP_MAC_CTX_free(c);
        return NULL;
    }
    ks->mac = c;
    return c;
}

int fv_pseudonym_valid(const char *s, size_t n)
{
    if (s == NULL || n != FV_PSEUDONYM_LEN) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int fv_keystore_pseudonym(struct fv_keystore *ks, const char *name, char out[FV_PSEUDONYM_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t n = 0;
    EVP_MAC_CTX *c = pseudonym_mac(ks);
    if (c == NULL || EVP_MAC_init(c, NULL, 0, NULL) != 1 ||
        EVP_MAC_update(c, (const unsigned char *)name, strlen(name)) != 1 ||
        EVP_MAC_final(c, mac, &n, sizeof mac) != 1 || n < FV_PSEUDONYM_LEN / 2)
        return FV_EIO;
    fv_hex(mac, FV_PSEUDONYM_LEN / 2, out);
    return FV_OK;
}

/* Finds the subject's entry (cache, then catalog). FV_ENOENT none, FV_ESTATE destroyed. */
static int lookup_local(struct fv_keystore *ks, const char *pseudo, struct subject_entry **out)
{
    *out = fv_map_get(&ks->cache, pseudo, strlen(pseudo));
    if (*out) return FV_OK;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db,
                           "SELECT wrapped, sealed_name FROM subject_keys WHERE subject = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return FV_EIO;
    sqlite3_bind_text(st, 1, pseudo, -1, SQLITE_STATIC);
    int step = sqlite3_step(st), rc;
    if (step == SQLITE_DONE) {
        rc = FV_ENOENT;
    } else if (step != SQLITE_ROW) {
        rc = FV_EIO;
    } else if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
        rc = FV_ESTATE; /* K1: destroyed */
    } else {
        struct subject_entry *e = calloc(1, sizeof *e);
        struct fv_buf k = {0}, name = {0};
        rc = e ? FV_OK : FV_ENOMEM;
        if (rc == FV_OK)
            rc = fv_open(ks->kek.key, pseudo, strlen(pseudo), sqlite3_column_blob(st, 0),
                         (size_t)sqlite3_column_bytes(st, 0), &k);
        if (rc == FV_OK && k.len != FV_KEY_LEN) rc = FV_ECORRUPT;
        if (rc == FV_OK) {
            memcpy(e->dek, k.data, FV_KEY_LEN);
            rc = fv_open(e->dek, pseudo, strlen(pseudo), sqlite3_column_blob(st, 1),
                         (size_t)sqlite3_column_bytes(st, 1), &name);
        }
        if (rc == FV_OK && (name.len == 0 || name.len > FV_NAME_MAX)) rc = FV_ECORRUPT;
        if (rc == FV_OK) {
            memcpy(e->name, name.data, name.len);
            rc = fv_map_put(&ks->cache, pseudo, strlen(pseudo), e);
        }
        if (k.data) OPENSSL_cleanse(k.data, k.cap);
        fv_buf_free(&k);
        fv_buf_free(&name);
        if (rc == FV_OK)
            *out = e;
        else if (e)
            free_entry(e);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Stores e (its key and name set) in the catalog and the cache; e is the cache's on FV_OK,
 * freed otherwise. */
static int store_subject(struct fv_keystore *ks, const char *pseudo, struct subject_entry *e)
{
    const char *name = e->name;
    struct fv_buf wrapped = {0}, sname = {0};
    sqlite3_stmt *st = NULL;
    int rc = fv_seal(ks->kek.key, pseudo, strlen(pseudo), e->dek, FV_KEY_LEN, &wrapped);
    if (rc == FV_OK) rc = fv_seal(e->dek, pseudo, strlen(pseudo), name, strlen(name), &sname);
    if (rc == FV_OK) {
        rc = FV_EIO;
        if (sqlite3_prepare_v2(ks->db,
                               "INSERT INTO subject_keys(subject, kek_id, wrapped, sealed_name,"
                               " created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                               -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, pseudo, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, ks->kek.id, -1, SQLITE_STATIC);
            sqlite3_bind_blob(st, 3, wrapped.data, (int)wrapped.len, SQLITE_STATIC);
            sqlite3_bind_blob(st, 4, sname.data, (int)sname.len, SQLITE_STATIC);
            sqlite3_bind_int64(st, 5, (sqlite3_int64)fv_now_ms());
            /* Deferred: the commit writes SQLite's WAL without fsync; fv_keystore_sync makes
             * it durable before any record sealed with the key is (the WAL writer calls it
             * before each batch's fdatasync). */
            if (ks->defer_sync) sqlite3_exec(ks->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
            if (sqlite3_step(st) == SQLITE_DONE)
                rc = fv_map_put(&ks->cache, pseudo, strlen(pseudo), e);
            if (ks->defer_sync) {
                sqlite3_exec(ks->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
                __atomic_store_n(&ks->unsynced, 1, __ATOMIC_SEQ_CST);
            }
        }
        sqlite3_finalize(st);
    }
    fv_buf_free(&wrapped);
    fv_buf_free(&sname);
    if (rc) free_entry(e);
    return rc;
}

/* The subject the catalog lacks, from the shared source (create: ours offered, the winner's
 * kept); FV_ENOENT without a source. A subject the source says was erased gets its tombstone
 * here (K1). */
static int from_source(struct fv_keystore *ks, const char *pseudo, const char *name, int create,
                       struct subject_entry **out)
{
    if (ks->src.subject == NULL) return FV_ENOENT;
    struct subject_entry *e = calloc(1, sizeof *e);
    if (e == NULL) return FV_ENOMEM;
    if (create) {
        snprintf(e->name, sizeof e->name, "%s", name);
        if (RAND_bytes(e->dek, FV_KEY_LEN) != 1) {
            free_entry(e);
            return FV_EIO;
        }
    }
    int rc = ks->src.subject(ks->src.arg, pseudo, create, e->dek, e->name);
    e->name[FV_NAME_MAX] = '\0';
    char check[FV_PSEUDONYM_LEN + 1];
    if (rc == FV_OK && (e->name[0] == '\0' || fv_keystore_pseudonym(ks, e->name, check) != FV_OK ||
                        strcmp(check, pseudo) != 0))
        rc = FV_ECORRUPT; /* the pseudonym is its name's: a name that does not give it is wrong */
    char err[256];
    if (rc == FV_ESTATE) /* failing, the next lookup asks the source again: still erased */
        (void)fv_keystore_destroy_pseudo(ks, pseudo, err, sizeof err);
    if (rc) {
        free_entry(e);
        return rc;
    }
    rc = store_subject(ks, pseudo, e);
    if (rc == FV_OK) *out = e;
    return rc;
}

static int lookup(struct fv_keystore *ks, const char *pseudo, struct subject_entry **out)
{
    int rc = lookup_local(ks, pseudo, out);
    return rc == FV_ENOENT && !ks->async ? from_source(ks, pseudo, NULL, 0, out) : rc;
}

static int create(struct fv_keystore *ks, const char *pseudo, const char *name,
                  struct subject_entry **out)
{
    if (ks->src.subject && ks->async) return FV_EAGAIN; /* fetched elsewhere, then adopted */
    if (ks->src.subject) return from_source(ks, pseudo, name, 1, out);
    struct subject_entry *e = calloc(1, sizeof *e);
    if (e == NULL) return FV_ENOMEM;
    snprintf(e->name, sizeof e->name, "%s", name);
    if (RAND_bytes(e->dek, FV_KEY_LEN) != 1) {
        free_entry(e);
        return FV_EIO;
    }
    int rc = store_subject(ks, pseudo, e);
    if (rc == FV_OK) *out = e;
    return rc;
}

int fv_keystore_dek(struct fv_keystore *ks, const char *name, int create_missing,
                    const unsigned char **dek, char pseudo[FV_PSEUDONYM_LEN + 1])
{
    if (strlen(name) == 0 || strlen(name) > FV_NAME_MAX) return FV_EINVAL;
    int rc = fv_keystore_pseudonym(ks, name, pseudo);
    struct subject_entry *e = NULL;
    if (rc == FV_OK) rc = lookup(ks, pseudo, &e);
    if (rc == FV_ENOENT && create_missing) rc = create(ks, pseudo, name, &e);
    *dek = rc == FV_OK ? e->dek : NULL;
    return rc;
}

void fv_keystore_defer_sync(struct fv_keystore *ks, int on)
{
    ks->defer_sync = on;
}

void fv_keystore_set_async(struct fv_keystore *ks, int on)
{
    ks->async = on;
    if (on) ks->defer_sync = 1; /* a cache of the source: the key is durable there */
}

int fv_keystore_adopt(struct fv_keystore *ks, int rc, const char *pseudo,
                      const unsigned char dek[FV_KEY_LEN], const char *name)
{
    struct subject_entry *e = NULL;
    int have = lookup_local(ks, pseudo, &e);
    if (have != FV_ENOENT) return have; /* here already (or erased here): kept as it is */
    char err[256];
    if (rc == FV_ESTATE) return fv_keystore_destroy_pseudo(ks, pseudo, err, sizeof err);
    if (rc != FV_OK) return rc;
    char check[FV_PSEUDONYM_LEN + 1];
    if (name[0] == '\0' || strlen(name) > FV_NAME_MAX ||
        fv_keystore_pseudonym(ks, name, check) != FV_OK || strcmp(check, pseudo) != 0)
        return FV_ECORRUPT; /* as from_source: the pseudonym is its name's */
    e = calloc(1, sizeof *e);
    if (e == NULL) return FV_ENOMEM;
    memcpy(e->dek, dek, FV_KEY_LEN);
    snprintf(e->name, sizeof e->name, "%s", name);
    return store_subject(ks, pseudo, e);
}

int fv_keystore_sync(struct fv_keystore *ks, char *err, size_t errlen)
{
    if (!__atomic_exchange_n(&ks->unsynced, 0, __ATOMIC_SEQ_CST)) return FV_OK;
    int fd = open(ks->wal_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return FV_OK; /* checkpointed and removed: in the db, synced */
    if (fd < 0) {
        __atomic_store_n(&ks->unsynced, 1, __ATOMIC_SEQ_CST);
        fv_seterr(err, errlen, "open %s: %s", ks->wal_path, strerror(errno));
        return FV_EIO;
    }
    int rc = fv_os_fdatasync(fd, ks->wal_path, err, errlen);
    close(fd);
    if (rc) __atomic_store_n(&ks->unsynced, 1, __ATOMIC_SEQ_CST);
    return rc;
}

int fv_keystore_subject(struct fv_keystore *ks, const char *pseudo, const unsigned char **dek,
                        const char **name)
{
    struct subject_entry *e = NULL;
    int rc = lookup(ks, pseudo, &e);
    *dek = rc == FV_OK ? e->dek : NULL;
    if (name) *name = rc == FV_OK ? e->name : NULL;
    return rc;
}

int fv_keystore_destroy(struct fv_keystore *ks, const char *name, char *err, size_t errlen)
{
    char pseudo[FV_PSEUDONYM_LEN + 1];
    if (fv_keystore_pseudonym(ks, name, pseudo) != FV_OK) {
        fv_seterr(err, errlen, "cannot name the subject");
        return FV_EIO;
    }
    return fv_keystore_destroy_pseudo(ks, pseudo, err, errlen);
}

int fv_keystore_destroy_pseudo(struct fv_keystore *ks, const char *pseudo, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db,
                           "INSERT INTO subject_keys(subject, created_ms, destroyed_ms)"
                           " VALUES (?1, ?2, ?2) ON CONFLICT(subject) DO UPDATE SET"
                           " wrapped = NULL, sealed_name = NULL, kek_id = NULL,"
                           " destroyed_ms = coalesce(destroyed_ms, ?2)",
                           -1, &st, NULL) != SQLITE_OK) {
        fv_seterr(err, errlen, "catalog: %s", sqlite3_errmsg(ks->db));
        return FV_EIO;
    }
    sqlite3_bind_text(st, 1, pseudo, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)fv_now_ms());
    int ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    if (!ok) {
        fv_seterr(err, errlen, "catalog: %s", sqlite3_errmsg(ks->db));
        return FV_EIO;
    }
    struct subject_entry *e = fv_map_del(&ks->cache, pseudo, strlen(pseudo));
    if (e) free_entry(e);
    /* secure_delete zeroes the freed cells; the checkpoint pushes that into the database
     * file and empties the SQLite WAL, where the old page would otherwise linger. */
    return fv_catalog_exec(ks->db, "PRAGMA wal_checkpoint(TRUNCATE);", err, errlen);
}

int fv_keystore_rewrap(struct fv_keystore *ks, const struct fv_kek *new_kek, char *err,
                       size_t errlen)
{
    if (fv_catalog_exec(ks->db, "BEGIN IMMEDIATE", err, errlen)) return FV_EIO;
    sqlite3_stmt *sel = NULL, *upd = NULL;
    struct fv_buf pk = {0};
    int rc = fv_seal(new_kek->key, PKEY_AAD, sizeof PKEY_AAD - 1, ks->pkey, FV_KEY_LEN, &pk);
    if (rc) goto done;
    rc = FV_EIO;
    if (sqlite3_prepare_v2(ks->db, "UPDATE meta SET v = ?1, kek_id = ?2 WHERE k = 'pseudonym_key'",
                           -1, &upd, NULL) != SQLITE_OK)
        goto done;
    sqlite3_bind_blob(upd, 1, pk.data, (int)pk.len, SQLITE_STATIC);
    sqlite3_bind_text(upd, 2, new_kek->id, -1, SQLITE_STATIC);
    if (sqlite3_step(upd) != SQLITE_DONE) goto done;
    sqlite3_finalize(upd);
    upd = NULL;
    if (sqlite3_prepare_v2(ks->db,
                           "SELECT subject, wrapped FROM subject_keys WHERE wrapped IS NOT NULL",
                           -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(ks->db,
                           "UPDATE subject_keys SET wrapped = ?2, kek_id = ?3 WHERE subject = ?1",
                           -1, &upd, NULL) != SQLITE_OK)
        goto done;
    int step;
    while ((step = sqlite3_step(sel)) == SQLITE_ROW) {
        const char *subject = (const char *)sqlite3_column_text(sel, 0);
        struct fv_buf plain = {0}, wrapped = {0};
        rc = fv_open(ks->kek.key, subject, strlen(subject), sqlite3_column_blob(sel, 1),
                     (size_t)sqlite3_column_bytes(sel, 1), &plain);
        if (rc == FV_OK)
            rc = fv_seal(new_kek->key, subject, strlen(subject), plain.data, plain.len, &wrapped);
        if (plain.data) OPENSSL_cleanse(plain.data, plain.cap);
        fv_buf_free(&plain);
        if (rc == FV_OK) {
            sqlite3_reset(upd);
            sqlite3_bind_text(upd, 1, subject, -1, SQLITE_TRANSIENT);
            sqlite3_bind_blob(upd, 2, wrapped.data, (int)wrapped.len, SQLITE_TRANSIENT);
            sqlite3_bind_text(upd, 3, new_kek->id, -1, SQLITE_STATIC);
            if (sqlite3_step(upd) != SQLITE_DONE) rc = FV_EIO;
        }
        fv_buf_free(&wrapped);
        if (rc) {
            fv_seterr(err, errlen, "re-wrapping the key of subject %s failed: %s", subject,
                      fv_strerror(rc));
            goto done;
        }
    }
    rc = step == SQLITE_DONE ? FV_OK : FV_EIO;
done:
    if (rc == FV_EIO && err && !*err) fv_seterr(err, errlen, "catalog: %s", sqlite3_errmsg(ks->db));
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    fv_buf_free(&pk);
    if (rc == FV_OK && fv_catalog_exec(ks->db, "COMMIT", err, errlen) == FV_OK) {
        ks->kek = *new_kek;
        return FV_OK;
    }
    fv_catalog_exec(ks->db, "ROLLBACK", NULL, 0);
    return rc ? rc : FV_EIO;
}

void fv_keystore_forget(struct fv_keystore *ks)
{
    for (size_t i = 0; i < ks->cache.cap; i++)
        if (ks->cache.slots[i].hash) free_entry(ks->cache.slots[i].val);
    fv_map_free(&ks->cache);
}

void fv_keystore_close(struct fv_keystore *ks)
{
    if (ks == NULL) return;
    fv_keystore_forget(ks);
    EVP_MAC_CTX_free(ks->mac);
    for (size_t i = 0; i < FV_KEYSTORE_STMTS; i++)
        sqlite3_finalize(ks->stmts[i]);
    sqlite3_close(ks->db);
    OPENSSL_cleanse(ks, sizeof *ks);
    free(ks);
}

struct sqlite3 *fv_keystore_db(struct fv_keystore *ks)
{
    return ks->db;
}

/* Runs a prepared statement of no rows (BEGIN, COMMIT): SQLITE_DONE or SQLite's error. */
static int step_once(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc;
}

int fv_keystore_read_begin(struct fv_keystore *ks)
{
    if (!sqlite3_get_autocommit(ks->db)) return FV_ESTATE;
    /* prepared once: parsing "BEGIN" and "COMMIT" was 5 % of a one-subject query's CPU */
    sqlite3_stmt *st = fv_keystore_stmt(ks, FV_KEYSTORE_STMT_BEGIN, "BEGIN");
    int rc = st ? step_once(st) : sqlite3_exec(ks->db, "BEGIN", NULL, NULL, NULL);
    return rc == SQLITE_DONE || rc == SQLITE_OK ? FV_OK : FV_EIO;
}

void fv_keystore_read_end(struct fv_keystore *ks)
{
    sqlite3_stmt *st = fv_keystore_stmt(ks, FV_KEYSTORE_STMT_COMMIT, "COMMIT");
    int rc = st ? step_once(st) : sqlite3_exec(ks->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_DONE && rc != SQLITE_OK)
        sqlite3_exec(ks->db, "ROLLBACK", NULL, NULL, NULL); /* a read: nothing to lose */
}

sqlite3_stmt *fv_keystore_stmt(struct fv_keystore *ks, unsigned slot, const char *sql)
{
    if (slot >= FV_KEYSTORE_STMTS) return NULL;
    if (ks->stmts[slot] == NULL && sqlite3_prepare_v3(ks->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                                      &ks->stmts[slot], NULL) != SQLITE_OK) {
        sqlite3_finalize(ks->stmts[slot]);
        ks->stmts[slot] = NULL;
    }
    return ks->stmts[slot];
}

int fv_keystore_derive(struct fv_keystore *ks, const char *label, unsigned char out[32])
{
    unsigned int n = 32;
    if (HMAC(EVP_sha256(), ks->pkey, sizeof ks->pkey, (const unsigned char *)label, strlen(label),
             out, &n) == NULL ||
        n != 32)
        return FV_EIO;
    return FV_OK;
}
