/* test_keys.c - master key files, AES-256-GCM sealing (any altered byte is detected), the
 * keystore: persistence, wrong master key refused, shredding (rule K1), re-wrapping; and the
 * catalog read and written as docs/formats.md ("Keys") describes it, with OpenSSL alone
 * (issue 16 items 2 and 3: the pseudonym key's associated data, how a VIN becomes its
 * pseudonym, the pseudonym as hex text in the data key's associated data). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <sqlite3.h>

#include "crypto/keys.h"
#include "os/fsio.h"
#include "util/err.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fv-keys-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static void path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void test_kek_files(void **state)
{
    (void)state;
    char p[128], err[512];
    path(p, sizeof p, "k1");
    assert_int_equal(fv_kek_create(p, err, sizeof err), FV_OK);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(fv_kek_create(p, err, sizeof err), FV_EEXIST); /* never overwritten */
    struct fv_kek a, b;
    assert_int_equal(fv_kek_load(p, &a, err, sizeof err), FV_OK);
    assert_int_equal(strlen(a.id), 16);
    chmod(p, 0644);
    assert_int_equal(fv_kek_load(p, &b, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "chmod 600"));
    FILE *f = fopen(p, "w");
    fputs("not hex\n", f);
    fclose(f);
    chmod(p, 0600);
    assert_int_equal(fv_kek_load(p, &b, err, sizeof err), FV_EINVAL);
    setenv("FV_MASTER_KEY", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 1);
    assert_int_equal(fv_kek_load(NULL, &b, err, sizeof err), FV_OK);
    assert_int_equal(b.key[1], 0x11);
    unsetenv("FV_MASTER_KEY");
    assert_int_equal(fv_kek_load(NULL, &b, err, sizeof err), FV_ENOENT);
    assert_non_null(strstr(err, "keys init"));
}

/* A cluster's rotation (docs/cluster.md, "Master key rotation"): the previous key loaded
 * beside the master key (never the same key), and a catalog still under it re-wrapped under
 * the master key once, before the node's keystores open; the data keys stay the same. */
static void test_previous_key_and_catalog_rotation(void **state)
{
    (void)state;
    char pa[128], pb[128], pc[128], db[128], err[512];
    path(pa, sizeof pa, "rotA");
    path(pb, sizeof pb, "rotB");
    path(pc, sizeof pc, "rot.db");
    snprintf(db, sizeof db, "%s", pc);
    assert_int_equal(fv_kek_create(pa, err, sizeof err), FV_OK);
    assert_int_equal(fv_kek_create(pb, err, sizeof err), FV_OK);
    struct fv_kek a, b, ba;
    assert_int_equal(fv_kek_load(pa, &a, err, sizeof err), FV_OK);
    assert_int_equal(fv_kek_load(pb, &b, err, sizeof err), FV_OK);
    assert_string_equal(b.prev_id, ""); /* none unless loaded */
    ba = b;
    assert_int_equal(fv_kek_load_previous(pb, &ba, err, sizeof err), FV_EINVAL); /* itself */
    assert_non_null(strstr(err, "is the master key itself"));
    assert_int_equal(fv_kek_load_previous(pa, &ba, err, sizeof err), FV_OK);
    assert_string_equal(ba.prev_id, a.id);
    assert_memory_equal(ba.prev_key, a.key, FV_KEY_LEN);

    /* no catalog yet: nothing to do, nothing made */
    char id[17];
    int done = 1;
    assert_int_equal(fv_keystore_rotate_catalog(db, &ba, &done, err, sizeof err), FV_OK);
    assert_int_equal(done, 0);
    struct stat st;
    assert_int_not_equal(stat(db, &st), 0);
    /* a catalog under A, with a subject */
    struct fv_keystore *ks = NULL;
    const unsigned char *dek;
    unsigned char dek_a[FV_KEY_LEN];
    char pseudo[FV_PSEUDONYM_LEN + 1], pseudo2[FV_PSEUDONYM_LEN + 1];
    assert_int_equal(fv_keystore_open(db, &a, &ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "5YJROTATE0000001", 1, &dek, pseudo), FV_OK);
    memcpy(dek_a, dek, FV_KEY_LEN);
    fv_keystore_close(ks);
    assert_int_equal(fv_keystore_kek_id(db, id, err, sizeof err), FV_OK);
    assert_string_equal(id, a.id);
    /* B alone: refused naming both (unchanged), and the B-with-previous-A node rotates it */
    assert_int_not_equal(fv_keystore_open(db, &b, &ks, err, sizeof err), FV_OK);
    assert_non_null(strstr(err, a.id));
    assert_int_equal(fv_keystore_rotate_catalog(db, &b, &done, err, sizeof err), FV_OK);
    assert_int_equal(done, 0); /* no previous key: left alone */
    assert_int_equal(fv_keystore_rotate_catalog(db, &ba, &done, err, sizeof err), FV_OK);
    assert_int_equal(done, 1);
    assert_int_equal(fv_keystore_kek_id(db, id, err, sizeof err), FV_OK);
    assert_string_equal(id, b.id);
    assert_int_equal(fv_keystore_rotate_catalog(db, &ba, &done, err, sizeof err), FV_OK);
    assert_int_equal(done, 0); /* once only */
    assert_int_equal(fv_keystore_open(db, &b, &ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "5YJROTATE0000001", 0, &dek, pseudo2), FV_OK);
    assert_string_equal(pseudo2, pseudo);        /* the same pseudonym key */
    assert_memory_equal(dek, dek_a, FV_KEY_LEN); /* the same data key */
    fv_keystore_close(ks);
    assert_int_not_equal(fv_keystore_open(db, &a, &ks, err, sizeof err), FV_OK);
    fv_kek_wipe(&ba);
    assert_string_equal(ba.prev_id, "");
}

static void test_seal_detects_every_altered_byte(void **state)
{
    (void)state;
    unsigned char key[FV_KEY_LEN] = {1, 2, 3};
    const char *msg = "Location 48.8566,2.3522";
    struct fv_buf s = {0}, o = {0};
    assert_int_equal(fv_seal(key, "aad", 3, msg, strlen(msg), &s), FV_OK);
    assert_int_equal(s.len, strlen(msg) + FV_SEAL_OVERHEAD);
    assert_null(memmem(s.data, s.len, "48.8566", 7));
    assert_int_equal(fv_open(key, "aad", 3, s.data, s.len, &o), FV_OK);
    assert_memory_equal(o.data, msg, strlen(msg));
    for (size_t i = 0; i < s.len; i++) {
        s.data[i] ^= 0x01;
        fv_buf_reset(&o);
        assert_int_equal(fv_open(key, "aad", 3, s.data, s.len, &o), FV_ECORRUPT);
        s.data[i] ^= 0x01;
    }
    fv_buf_reset(&o);
    assert_int_equal(fv_open(key, "aaX", 3, s.data, s.len, &o), FV_ECORRUPT);
    key[0] ^= 1;
    assert_int_equal(fv_open(key, "aad", 3, s.data, s.len, &o), FV_ECORRUPT);
    assert_int_equal(fv_open(key, "aad", 3, s.data, 27, &o), FV_ECORRUPT);
    fv_buf_free(&s);
    fv_buf_free(&o);
}

/* Nonces (keys.h): per thread an 8-byte prefix and a counter, never repeated; each thread
 * its own prefix; a thread's reused cipher context keeps working after failed opens and
 * across keys, and what one thread seals another opens. */
struct nonce_run {
    unsigned char first[12], last[12];
    unsigned char key[FV_KEY_LEN];
    struct fv_buf sealed;
    int ok;
};

static void *nonce_thread(void *arg)
{
    struct nonce_run *r = arg;
    r->ok = fv__nonce(r->first) == FV_OK;
    for (int i = 0; i < 99999 && r->ok; i++)
        r->ok = fv__nonce(r->last) == FV_OK;
    if (r->ok) r->ok = fv_seal(r->key, "t", 1, "from a thread", 13, &r->sealed) == FV_OK;
    return NULL;
}

static void test_nonces_and_reused_cipher(void **state)
{
    (void)state;
    struct nonce_run a = {.key = {7}}, b = {.key = {8}};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, nonce_thread, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, nonce_thread, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_true(a.ok && b.ok);
    /* the counter: 99,999 nonces after the first, same prefix */
    assert_memory_equal(a.first, a.last, 8);
    uint32_t c0 = (uint32_t)a.first[8] << 24 | (uint32_t)a.first[9] << 16 |
                  (uint32_t)a.first[10] << 8 | a.first[11];
    uint32_t c1 = (uint32_t)a.last[8] << 24 | (uint32_t)a.last[9] << 16 |
                  (uint32_t)a.last[10] << 8 | a.last[11];
    assert_int_equal(c1 - c0, 99999);
    assert_memory_not_equal(a.first, b.first, 8); /* two threads, two prefixes */
    /* the next seal's nonce on a thread is the one after its last */
    unsigned char n1[12], n2[12];
    assert_int_equal(fv__nonce(n1), FV_OK);
    struct fv_buf s = {0}, o = {0};
    unsigned char k1[FV_KEY_LEN] = {1}, k2[FV_KEY_LEN] = {2};
    assert_int_equal(fv_seal(k1, "x", 1, "one", 3, &s), FV_OK);
    memcpy(n2, s.data, 12);
    assert_memory_equal(n1, n2, 8);
    assert_int_equal(n2[11], (unsigned char)(n1[11] + 1));
    /* the main thread opens what the others sealed; a failed open leaves the context usable */
    assert_int_equal(fv_open(a.key, "t", 1, a.sealed.data, a.sealed.len, &o), FV_OK);
    assert_memory_equal(o.data, "from a thread", 13);
    fv_buf_reset(&o);
    assert_int_equal(fv_open(b.key, "t", 1, a.sealed.data, a.sealed.len, &o), FV_ECORRUPT);
    fv_buf_reset(&o);
    assert_int_equal(fv_open(b.key, "t", 1, b.sealed.data, b.sealed.len, &o), FV_OK);
    /* alternating keys on the reused context */
    assert_int_equal(fv_seal(k2, "y", 1, "two", 3, &s), FV_OK);
    fv_buf_reset(&o);
    assert_int_equal(fv_open(k1, "x", 1, s.data, 3 + FV_SEAL_OVERHEAD, &o), FV_OK);
    assert_memory_equal(o.data, "one", 3);
    fv_buf_reset(&o);
    assert_int_equal(fv_open(k2, "y", 1, s.data + 3 + FV_SEAL_OVERHEAD, 3 + FV_SEAL_OVERHEAD, &o),
                     FV_OK);
    assert_memory_equal(o.data, "two", 3);
    fv_buf_free(&s);
    fv_buf_free(&o);
    fv_buf_free(&a.sealed);
    fv_buf_free(&b.sealed);
}

static void test_keystore(void **state)
{
    (void)state;
    char k1[128], k2[128], db[128], err[512];
    path(k1, sizeof k1, "m1");
    path(k2, sizeof k2, "m2");
    path(db, sizeof db, "catalog.db");
    fv_kek_create(k1, err, sizeof err);
    fv_kek_create(k2, err, sizeof err);
    struct fv_kek a, b;
    assert_int_equal(fv_kek_load(k1, &a, err, sizeof err), FV_OK);
    assert_int_equal(fv_kek_load(k2, &b, err, sizeof err), FV_OK);
    struct fv_keystore *ks;
    assert_int_equal(fv_keystore_open(db, &a, &ks, err, sizeof err), FV_OK);
    const unsigned char *d1, *d2;
    char ps[FV_PSEUDONYM_LEN + 1], p1[FV_PSEUDONYM_LEN + 1];
    const char *name;
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 0, &d1, ps), FV_ENOENT);
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 1, &d1, ps), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "VIN2", 1, &d2, ps), FV_OK);
    unsigned char saved[FV_KEY_LEN];
    memcpy(saved, d1, FV_KEY_LEN);
    /* K2: subjects are known by pseudonym; the name comes back only with the data key */
    assert_int_equal(fv_keystore_pseudonym(ks, "VIN1", p1), FV_OK);
    assert_int_equal(strlen(p1), FV_PSEUDONYM_LEN);
    assert_null(strstr(p1, "VIN1"));
    const unsigned char *d3;
    assert_int_equal(fv_keystore_subject(ks, p1, &d3, &name), FV_OK);
    assert_string_equal(name, "VIN1");
    assert_memory_equal(d3, saved, FV_KEY_LEN);
    assert_memory_not_equal(d1, d2, FV_KEY_LEN);
    fv_keystore_close(ks);
    /* the wrong master key is refused with both ids named */
    assert_int_equal(fv_keystore_open(db, &b, &ks, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, a.id));
    assert_non_null(strstr(err, b.id));
    /* persisted, then re-wrapped under b: same data key, a no longer opens the catalog */
    assert_int_equal(fv_keystore_open(db, &a, &ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 0, &d1, ps), FV_OK);
    assert_memory_equal(d1, saved, FV_KEY_LEN);
    assert_int_equal(fv_keystore_rewrap(ks, &b, err, sizeof err), FV_OK);
    fv_keystore_close(ks);
    assert_int_equal(fv_keystore_open(db, &a, &ks, err, sizeof err), FV_ETLS);
    assert_int_equal(fv_keystore_open(db, &b, &ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 0, &d1, ps), FV_OK);
    assert_memory_equal(d1, saved, FV_KEY_LEN);
    assert_string_equal(ps, p1); /* pseudonyms survive master key rotation */
    /* shredding: gone at once, never re-created (K1), others untouched */
    assert_int_equal(fv_keystore_destroy(ks, "VIN1", err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 0, &d1, ps), FV_ESTATE);
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 1, &d1, ps), FV_ESTATE);
    assert_int_equal(fv_keystore_dek(ks, "VIN2", 0, &d2, ps), FV_OK);
    fv_keystore_close(ks);
    assert_int_equal(fv_keystore_open(db, &b, &ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 1, &d1, ps), FV_ESTATE);
    assert_int_equal(fv_keystore_subject(ks, p1, &d1, &name), FV_ESTATE);
    fv_keystore_close(ks);
    /* no name is anywhere in the catalog's files in plaintext */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "cat '%s'* | grep -c -a VIN >/dev/null", db);
    assert_int_not_equal(system(cmd), 0);
}

/* ---- the catalog as docs/formats.md describes it, without the keystore's code ---------- */

#define DOC_KEK      "8d1f00112233445566778899aabbccddeeff00112233445566778899aabbcc0f"
#define DOC_VIN      "5YJ3E1EA7KF000001"
#define DOC_PKEY_AAD "fleetvault pseudonym key"

/* seal(K, P, A) = nonce(12) || AES-256-GCM(K, P, A) || tag(16); open when enc == 0. Returns
 * the output length, -1 if it does not open. */
static int doc_gcm(int enc, const unsigned char key[32], const unsigned char *in, int n,
                   const char *aad, unsigned char *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l = 0, l2 = 0, ok = c != NULL;
    const unsigned char *iv = enc ? (const unsigned char *)"fixed-nonce!" : in;
    if (!enc) n -= 28;
    ok = ok && n >= 0 && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv, enc) == 1;
    ok = ok && EVP_CipherUpdate(c, NULL, &l, (const unsigned char *)aad, (int)strlen(aad)) == 1;
    unsigned char *body = enc ? out + 12 : out;
    ok = ok && EVP_CipherUpdate(c, body, &l, enc ? in : in + 12, n) == 1;
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(in + 12 + n)) == 1;
    ok = ok && EVP_CipherFinal_ex(c, body + l, &l2) == 1;
    if (ok && enc) {
        memcpy(out, iv, 12);
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + 12 + n) == 1;
    }
    EVP_CIPHER_CTX_free(c);
    return ok ? (enc ? n + 28 : n) : -1;
}

/* "the hex of the first 16 bytes of HMAC-SHA256(key = the 32 pseudonym key bytes,
 * message = N)" */
static void doc_pseudonym(const unsigned char pkey[32], const char *name, char out[33])
{
    unsigned char mac[32];
    unsigned int n = 0;
    HMAC(EVP_sha256(), pkey, 32, (const unsigned char *)name, strlen(name), mac, &n);
    assert_int_equal(n, 32);
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static void doc_kek(unsigned char kek[32], char id[17])
{
    for (int i = 0; i < 32; i++) {
        unsigned v;
        sscanf(&DOC_KEK[2 * i], "%2x", &v);
        kek[i] = (unsigned char)v;
    }
    unsigned char h[32];
    SHA256(kek, 32, h);
    for (int i = 0; i < 8; i++)
        snprintf(id + 2 * i, 3, "%02x", h[i]);
}

static sqlite3 *open_sql(const char *db)
{
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    return h;
}

/* A blob column of the row that sql (with ?1 = key) selects; returns its length. */
static int blob(sqlite3 *h, const char *sql, const char *key, unsigned char *out, int cap)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_bytes(st, 0);
    assert_true(n <= cap);
    memcpy(out, sqlite3_column_blob(st, 0), (size_t)n);
    sqlite3_finalize(st);
    return n;
}

/* A catalog holding only meta('pseudonym_key', kek_id, v). */
static void new_catalog(const char *db, const char *kek_id, const unsigned char *v, int n)
{
    sqlite3 *h = open_sql(db);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_exec(h, "CREATE TABLE meta(k TEXT PRIMARY KEY, kek_id TEXT, v BLOB)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(h, "INSERT INTO meta VALUES ('pseudonym_key', ?1, ?2)", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, kek_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, v, n, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(h);
}

/* Known answer: a catalog whose pseudonym key (bytes 0..31) is wrapped as the doc says opens,
 * and the VIN's pseudonym is the doc's worked example. */
/* Deferred key durability (keys.h): a key made under defer_sync is durable only after
 * fv_keystore_sync, which fdatasyncs the catalog's SQLite WAL once per batch of new keys, is
 * a no-op when nothing is new, and tries again after a failure. Counted and failed through
 * the os layer's fault injection. */
static void test_deferred_key_sync(void **state)
{
    (void)state;
    char k[128], db[128], err[512];
    path(k, sizeof k, "md");
    path(db, sizeof db, "deferred.db");
    fv_kek_create(k, err, sizeof err);
    struct fv_kek a;
    assert_int_equal(fv_kek_load(k, &a, err, sizeof err), FV_OK);
    struct fv_keystore *ks;
    assert_int_equal(fv_keystore_open(db, &a, &ks, err, sizeof err), FV_OK);
    const unsigned char *d;
    char ps[FV_PSEUDONYM_LEN + 1];
    fv_os_fault_clear();
    assert_int_equal(fv_keystore_sync(ks, err, sizeof err), FV_OK); /* nothing new */
    assert_int_equal(fv_os_fault_calls(FV_OS_FSYNC), 0);
    fv_keystore_defer_sync(ks, 1);
    assert_int_equal(fv_keystore_dek(ks, "DEF1", 1, &d, ps), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "DEF2", 1, &d, ps), FV_OK);
    /* the sync fails: reported, and the next call syncs again */
    assert_int_equal(fv_os_fault_set(FV_OS_FSYNC, 1, EIO, 0), FV_OK);
    assert_int_equal(fv_keystore_sync(ks, err, sizeof err), FV_EIO);
    assert_int_equal(fv_keystore_sync(ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_os_fault_calls(FV_OS_FSYNC), 2); /* two keys, one sync each try */
    assert_int_equal(fv_keystore_sync(ks, err, sizeof err), FV_OK); /* nothing new */
    assert_int_equal(fv_os_fault_calls(FV_OS_FSYNC), 2);
    fv_os_fault_clear();
    fv_keystore_close(ks);
    /* the deferred keys were committed: a new keystore reads them */
    assert_int_equal(fv_keystore_open(db, &a, &ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "DEF1", 0, &d, ps), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "DEF2", 0, &d, ps), FV_OK);
    fv_keystore_close(ks);
    fv_kek_wipe(&a);
}

static void test_pseudonym_as_documented(void **state)
{
    (void)state;
    char db[128], err[512], id[17], ps[FV_PSEUDONYM_LEN + 1], want[33];
    path(db, sizeof db, "doc.db");
    unsigned char kek[32], pkey[32], wrapped[128];
    doc_kek(kek, id);
    for (int i = 0; i < 32; i++)
        pkey[i] = (unsigned char)i;
    int wn = doc_gcm(1, kek, pkey, 32, DOC_PKEY_AAD, wrapped);
    assert_int_equal(wn, 60);
    new_catalog(db, id, wrapped, wn);

    setenv("FV_MASTER_KEY", DOC_KEK, 1);
    struct fv_kek k;
    assert_int_equal(fv_kek_load(NULL, &k, err, sizeof err), FV_OK);
    assert_string_equal(k.id, id);
    struct fv_keystore *ks;
    if (fv_keystore_open(db, &k, &ks, err, sizeof err) != FV_OK) fail_msg("%s", err);
    assert_int_equal(fv_keystore_pseudonym(ks, DOC_VIN, ps), FV_OK);
    assert_string_equal(ps, "83d9f03499ebc48fe6a933aac25f815f"); /* docs/formats.md */
    doc_pseudonym(pkey, DOC_VIN, want);
    assert_string_equal(ps, want);
    assert_int_equal(fv_keystore_pseudonym(ks, DOC_VIN "#2", ps), FV_OK);
    assert_string_equal(ps, "dcf094ea6950c96631ec39125545393d");

    /* Item 3: the data key is wrapped, and the name sealed, with the pseudonym's 32 hex
     * characters as associated data. */
    const unsigned char *dek;
    assert_int_equal(fv_keystore_dek(ks, DOC_VIN, 1, &dek, ps), FV_OK);
    unsigned char b[256], plain[256], dk[32];
    sqlite3 *h = open_sql(db);
    int n = blob(h, "SELECT wrapped FROM subject_keys WHERE subject = ?1", want, b, sizeof b);
    assert_int_equal(n, 60);
    assert_int_equal(doc_gcm(0, kek, b, n, want, dk), 32);
    assert_memory_equal(dk, dek, 32);
    n = blob(h, "SELECT sealed_name FROM subject_keys WHERE subject = ?1", want, b, sizeof b);
    assert_int_equal(doc_gcm(0, dk, b, n, want, plain), (int)strlen(DOC_VIN));
    assert_memory_equal(plain, DOC_VIN, strlen(DOC_VIN));
    sqlite3_close(h);
    fv_keystore_close(ks);

    /* A wrong associated data is refused: the catalog does not open. */
    path(db, sizeof db, "doc-bad.db");
    wn = doc_gcm(1, kek, pkey, 32, "fleetvault pseudonym", wrapped);
    new_catalog(db, id, wrapped, wn);
    assert_int_equal(fv_keystore_open(db, &k, &ks, err, sizeof err), FV_ECORRUPT);
}

/* The other way: a catalog the keystore made, read as the doc says. */
static void test_catalog_readable_from_doc(void **state)
{
    (void)state;
    char db[128], err[512], id[17], ps[FV_PSEUDONYM_LEN + 1], want[33];
    path(db, sizeof db, "made.db");
    unsigned char kek[32], b[256], pkey[32];
    doc_kek(kek, id);
    setenv("FV_MASTER_KEY", DOC_KEK, 1);
    struct fv_kek k;
    assert_int_equal(fv_kek_load(NULL, &k, err, sizeof err), FV_OK);
    struct fv_keystore *ks;
    assert_int_equal(fv_keystore_open(db, &k, &ks, err, sizeof err), FV_OK);
    const unsigned char *dek;
    assert_int_equal(fv_keystore_dek(ks, DOC_VIN "#2", 1, &dek, ps), FV_OK);
    sqlite3 *h = open_sql(db);
    int n = blob(h, "SELECT v FROM meta WHERE k = ?1", "pseudonym_key", b, sizeof b);
    assert_int_equal(doc_gcm(0, kek, b, n, DOC_PKEY_AAD, pkey), 32);
    doc_pseudonym(pkey, DOC_VIN "#2", want);
    assert_string_equal(ps, want);
    n = blob(h, "SELECT sealed_name FROM subject_keys WHERE subject = ?1", want, b, sizeof b);
    unsigned char plain[256];
    assert_int_equal(doc_gcm(0, dek, b, n, want, plain), (int)strlen(DOC_VIN "#2"));
    assert_memory_equal(plain, DOC_VIN "#2", strlen(DOC_VIN "#2"));
    sqlite3_close(h);
    fv_keystore_close(ks);
}

/* ---- a shared source (cluster mode, keys.h fv_keysource) ------------------------------- */

/* What a KV bucket would hold, in memory: create-if-absent, erasure markers; preempt makes
 * the next create lose to a key "another node" wrote just before it (the race, played out
 * deterministically); down makes every call fail as an unreachable NATS would. */
struct fake_source {
    int has_pkey;
    unsigned char pkey[FV_KEY_LEN];
    struct {
        char pseudo[FV_PSEUDONYM_LEN + 1], name[FV_NAME_MAX + 1];
        unsigned char dek[FV_KEY_LEN];
        int erased;
    } e[8];
    int n, preempt, down, creates;
};

static int fake_pkey(void *arg, const unsigned char proposed[FV_KEY_LEN],
                     unsigned char out[FV_KEY_LEN], char *err, size_t errlen)
{
    struct fake_source *f = arg;
    (void)err;
    (void)errlen;
    if (f->down) return FV_EIO;
    if (!f->has_pkey) memcpy(f->pkey, proposed, FV_KEY_LEN);
    f->has_pkey = 1;
    memcpy(out, f->pkey, FV_KEY_LEN);
    return FV_OK;
}

static int fake_subject(void *arg, const char *pseudo, int create, unsigned char dek[FV_KEY_LEN],
                        char name[FV_NAME_MAX + 1])
{
    struct fake_source *f = arg;
    if (f->down) return FV_EIO;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->e[i].pseudo, pseudo) == 0) {
            if (f->e[i].erased) return FV_ESTATE;
            memcpy(dek, f->e[i].dek, FV_KEY_LEN);
            strcpy(name, f->e[i].name);
            return FV_OK;
        }
    if (!create) return FV_ENOENT;
    f->creates++;
    snprintf(f->e[f->n].pseudo, sizeof f->e[0].pseudo, "%s", pseudo);
    snprintf(f->e[f->n].name, sizeof f->e[0].name, "%s", name);
    if (f->preempt) { /* another node's key won: ours is replaced by it */
        memset(f->e[f->n].dek, 0xA5, FV_KEY_LEN);
        memcpy(dek, f->e[f->n].dek, FV_KEY_LEN);
        f->preempt = 0;
    } else {
        memcpy(f->e[f->n].dek, dek, FV_KEY_LEN);
    }
    f->n++;
    return FV_OK;
}

static void test_shared_source(void **state)
{
    (void)state;
    char k[128], db1[128], db2[128], db3[128], err[512];
    path(k, sizeof k, "shared.key");
    path(db1, sizeof db1, "node1.db");
    path(db2, sizeof db2, "node2.db");
    path(db3, sizeof db3, "node3.db");
    struct fv_kek kek;
    assert_int_equal(fv_kek_create(k, err, sizeof err), FV_OK);
    assert_int_equal(fv_kek_load(k, &kek, err, sizeof err), FV_OK);
    struct fake_source f = {0};
    struct fv_keysource src = {.arg = &f, .pseudonym_key = fake_pkey, .subject = fake_subject};
    struct fv_keystore *n1, *n2, *plain;
    assert_int_equal(fv_keystore_open_shared(db1, &kek, &src, &n1, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_open_shared(db2, &kek, &src, &n2, err, sizeof err), FV_OK);
    /* one pseudonym key for both nodes: the same names, the same pseudonyms */
    char p1[FV_PSEUDONYM_LEN + 1], p2[FV_PSEUDONYM_LEN + 1];
    assert_int_equal(fv_keystore_pseudonym(n1, "VIN1", p1), FV_OK);
    assert_int_equal(fv_keystore_pseudonym(n2, "VIN1", p2), FV_OK);
    assert_string_equal(p1, p2);

    /* node 1 makes VIN1's key; node 2 lacks it and fetches the same one */
    const unsigned char *d1, *d2;
    const char *name;
    assert_int_equal(fv_keystore_dek(n1, "VIN1", 1, &d1, p1), FV_OK);
    assert_int_equal(fv_keystore_subject(n2, p1, &d2, &name), FV_OK);
    assert_memory_equal(d1, d2, FV_KEY_LEN);
    assert_string_equal(name, "VIN1");
    assert_int_equal(fv_keystore_dek(n2, "VIN1", 1, &d2, p2), FV_OK); /* no second create */
    assert_int_equal(f.creates, 1);

    /* the race: node 2 offers its new key, another node's wins; node 2 uses and keeps that */
    f.preempt = 1;
    assert_int_equal(fv_keystore_dek(n2, "VIN2", 1, &d2, p2), FV_OK);
    unsigned char won[FV_KEY_LEN];
    memset(won, 0xA5, sizeof won);
    assert_memory_equal(d2, won, FV_KEY_LEN);
    assert_int_equal(fv_keystore_dek(n1, "VIN2", 1, &d1, p1), FV_OK);
    assert_memory_equal(d1, won, FV_KEY_LEN);
    fv_keystore_close(n2);
    assert_int_equal(fv_keystore_open(db2, &kek, &plain, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(plain, "VIN2", 0, &d2, p2), FV_OK); /* cached in the catalog */
    assert_memory_equal(d2, won, FV_KEY_LEN);
    assert_int_equal(fv_keystore_dek(plain, "VIN3", 0, &d2, p2), FV_ENOENT);
    fv_keystore_close(plain);

    /* not in the source: FV_ENOENT (a storage node waits); source down: FV_EIO, nothing made */
    assert_int_equal(fv_keystore_pseudonym(n1, "VIN9", p1), FV_OK);
    assert_int_equal(fv_keystore_subject(n1, p1, &d1, &name), FV_ENOENT);
    f.down = 1;
    assert_int_equal(fv_keystore_dek(n1, "VIN9", 1, &d1, p1), FV_EIO);
    f.down = 0;
    assert_int_equal(fv_keystore_subject(n1, p1, &d1, &name), FV_ENOENT);

    /* erased in the source: refused, never re-created (K1), the tombstone kept here too */
    assert_int_equal(fv_keystore_dek(n1, "VIN4", 1, &d1, p1), FV_OK);
    f.e[f.n - 1].erased = 1;
    fv_keystore_forget(n1);
    fv_keystore_close(n1);
    assert_int_equal(fv_keystore_open(db1, &kek, &plain, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(plain, "VIN4", 0, &d1, p1), FV_OK); /* still cached */
    fv_keystore_close(plain);
    assert_int_equal(fv_keystore_open_shared(db3, &kek, &src, &n1, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(n1, "VIN4", 1, &d1, p1), FV_ESTATE);
    fv_keystore_close(n1);
    f.down = 1; /* the tombstone is this catalog's: no source needed to refuse */
    assert_int_equal(fv_keystore_open(db3, &kek, &plain, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(plain, "VIN4", 1, &d1, p1), FV_ESTATE);
    fv_keystore_close(plain);
    f.down = 0;

    /* a source entry whose name does not give its pseudonym is refused, not cached */
    assert_int_equal(fv_keystore_open_shared(db3, &kek, &src, &n1, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_pseudonym(n1, "VIN7", p1), FV_OK);
    snprintf(f.e[f.n].pseudo, sizeof f.e[0].pseudo, "%s", p1);
    snprintf(f.e[f.n].name, sizeof f.e[0].name, "VIN8");
    f.n++;
    assert_int_equal(fv_keystore_subject(n1, p1, &d1, &name), FV_ECORRUPT);
    assert_int_equal(fv_keystore_dek(n1, "VIN7", 1, &d1, p1), FV_ECORRUPT);
    fv_keystore_close(n1);

    /* a catalog made with a pseudonym key of its own is refused in the cluster */
    char db4[128];
    path(db4, sizeof db4, "alone.db");
    assert_int_equal(fv_keystore_open(db4, &kek, &plain, err, sizeof err), FV_OK);
    fv_keystore_close(plain);
    assert_int_equal(fv_keystore_open_shared(db4, &kek, &src, &n1, err, sizeof err), FV_ESTATE);
    assert_non_null(strstr(err, "not the cluster's"));
    /* the source down at start: the node does not start */
    f.down = 1;
    path(db4, sizeof db4, "new.db");
    assert_int_not_equal(fv_keystore_open_shared(db4, &kek, &src, &n1, err, sizeof err), FV_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kek_files),
        cmocka_unit_test(test_previous_key_and_catalog_rotation),
        cmocka_unit_test(test_seal_detects_every_altered_byte),
        cmocka_unit_test(test_nonces_and_reused_cipher),
        cmocka_unit_test(test_keystore),
        cmocka_unit_test(test_deferred_key_sync),
        cmocka_unit_test(test_pseudonym_as_documented),
        cmocka_unit_test(test_catalog_readable_from_doc),
        cmocka_unit_test(test_shared_source),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
