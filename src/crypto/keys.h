/*
 * keys.h - encryption at rest: the master key-encryption key (KEK), per-subject data keys
 * (DEKs) wrapped by it in the SQLite catalog, and AES-256-GCM sealing of records.
 *
 * Model (docs/formats.md, "Keys"): every data subject (an owner period of a device: name
 * "VIN", "VIN#2", ...) has its own random 256-bit data key. Data keys are stored only
 * wrapped in DATA/catalog.db: AES-256-GCM under the KEK, associated data = the subject's
 * pseudonym as its 32 hex characters (not the name, not the 16 binary bytes). The KEK lives outside
 * the data directory: a key file (`fleetvault keys init FILE`, 64 hex digits, mode 0600) or the
 * environment variable FV_MASTER_KEY. Destroying a subject's data key (crypto-shredding)
 * makes every record sealed with it unreadable at once, whatever its size.
 *
 * Sealed form: nonce (12 bytes: a random 8-byte prefix per thread, then a 4-byte counter)
 * || ciphertext || tag (16 bytes); the associated data
 * binds a ciphertext to where it belongs, so a moved or altered record fails to open.
 * A keystore is used from one thread at a time; threads that need the catalog at the same
 * time open one keystore each (each its own SQLite connection and cache of keys: the server
 * has one for the ingest loop, one for the API thread). A key destroyed through one is seen
 * by another after fv_keystore_forget. Keys are wiped from memory when freed.
 */
#ifndef FV_CRYPTO_KEYS_H
#define FV_CRYPTO_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define FV_KEY_LEN       32
#define FV_SEAL_OVERHEAD 28 /* nonce 12 + tag 16 */
#define FV_SEAL_TAG      16

struct fv_kek {
    unsigned char key[FV_KEY_LEN];
    char id[17]; /* first 8 bytes of SHA-256(key), hex: names the KEK without revealing it */
    /* A cluster's master key rotation (docs/cluster.md, "Master key rotation"): the previous
     * master key, whose KV values a node still reads while the cluster moves to key
     * (cluster/jskeys.h J6). prev_id[0] == '\0': none. Everything a node wraps, and its
     * catalog, use key alone. */
    unsigned char prev_key[FV_KEY_LEN];
    char prev_id[17];
};

/* Writes a new random KEK to path (0600, never overwriting). */
int fv_kek_create(const char *path, char *err, size_t errlen);
/* Loads the KEK from path, or from FV_MASTER_KEY when path is NULL. */
int fv_kek_load(const char *path, struct fv_kek *out, char *err, size_t errlen);
void fv_kek_wipe(struct fv_kek *k);
/* Loads the previous master key from path into k's prev_key (k's key loaded already):
 * refused when it is k's key itself. */
int fv_kek_load_previous(const char *path, struct fv_kek *k, char *err, size_t errlen);
/* The key of k (key or prev_key) whose id is these 16 hex characters; NULL if neither. */
const unsigned char *fv_kek_by_id(const struct fv_kek *k, const char *id16);

/* Appends nonce || AES-256-GCM(key, pt, aad) || tag to out. */
int fv_seal(const unsigned char key[FV_KEY_LEN], const void *aad, size_t aadlen, const void *pt,
            size_t n, struct fv_buf *out);
/* The next nonce of the calling thread (what fv_seal uses; exposed for tests). */
int fv__nonce(unsigned char out[12]);
/* Opens what fv_seal made; FV_ECORRUPT if anything was altered (or the key is wrong). */
int fv_open(const unsigned char key[FV_KEY_LEN], const void *aad, size_t aadlen,
            const unsigned char *in, size_t n, struct fv_buf *out);

/* Appends AES-256-GCM(key, pt, aad) || tag, without the nonce, which the caller chose and
 * keeps: a nonce must never seal two things under one key (store/part.h derives one per
 * part and offset from a random base). */
int fv_seal_at(const unsigned char key[FV_KEY_LEN], const unsigned char nonce[12], const void *aad,
               size_t aadlen, const void *pt, size_t n, struct fv_buf *out);
/* Opens what fv_seal_at made with that nonce; FV_ECORRUPT if anything was altered. */
int fv_open_at(const unsigned char key[FV_KEY_LEN], const unsigned char nonce[12], const void *aad,
               size_t aadlen, const unsigned char *in, size_t n, struct fv_buf *out);
/* n bytes from the CSPRNG. FV_OK or FV_EIO. */
int fv_random(void *out, size_t n);

struct fv_keystore;

#define FV_PSEUDONYM_LEN 32 /* hex digits */
/* 1 when the n bytes at s are a pseudonym's form: FV_PSEUDONYM_LEN lower-case hex digits
 * (n is the length the caller has, so a pseudonym inside a longer key is checked in place). */
int fv_pseudonym_valid(const char *s, size_t n);
#define FV_NAME_MAX 64 /* longest subject name (a device id) */

/* Opens (creating) the catalog at db_path. Refuses, naming both ids, a KEK other than the
 * one that wrapped the stored keys. A write that meets another connection's waits up to
 * FV_KEYSTORE_BUSY_MS for it. */
#define FV_KEYSTORE_BUSY_MS 2000
int fv_keystore_open(const char *db_path, const struct fv_kek *kek, struct fv_keystore **out,
                     char *err, size_t errlen);
/* A shared source of keys (cluster mode, cluster/jskeys.h): what the keystore does not hold
 * it asks for there, and what it makes it offers there first, so that every node of a cluster
 * uses the same pseudonym key and the same data key per subject. The keystore's catalog is
 * then a cache of the source (keys are stored there wrapped by the KEK as always).
 *  - pseudonym_key: proposed is offered (kept if the source has none: create-if-absent); out
 *    receives the source's, the one every node uses. FV_OK, or an error with err set.
 *  - subject: the data key and name of the subject with this pseudonym. create 0: fetch only;
 *    create 1: dek and name are offered (create-if-absent) and replaced by the source's when
 *    another node's won. FV_OK (dek, name filled), FV_ENOENT (never made), FV_ESTATE (erased:
 *    the source keeps that it was), FV_EIO (the source cannot be reached), FV_ECORRUPT.
 * Both are called on the keystore's thread, and may block on the network. */
struct fv_keysource {
    void *arg;
    int (*pseudonym_key)(void *arg, const unsigned char proposed[FV_KEY_LEN],
                         unsigned char out[FV_KEY_LEN], char *err, size_t errlen);
    int (*subject)(void *arg, const char *pseudo, int create, unsigned char dek[FV_KEY_LEN],
                   char name[FV_NAME_MAX + 1]);
};
/* fv_keystore_open with a shared source (src is copied; its arg must outlive the keystore):
 * the pseudonym key is the source's (a catalog that holds another is refused: FV_ESTATE,
 * err says why); a subject the catalog lacks is fetched from the source and cached in
 * the catalog; a new subject's key is made through the source (create-if-absent); a subject
 * the source says was erased gets a tombstone here too (K1). */
int fv_keystore_open_shared(const char *db_path, const struct fv_kek *kek,
                            const struct fv_keysource *src, struct fv_keystore **out, char *err,
                            size_t errlen);
/* The subject's pseudonym: the first 16 bytes of HMAC-SHA256(key = the 32-byte pseudonym
 * key, message = name's bytes, no NUL), in lower-case hex. The pseudonym key is random per
 * catalog and stored in meta('pseudonym_key') as nonce(12) || AES-256-GCM(KEK, key, AAD =
 * the 24 bytes "fleetvault pseudonym key") || tag(16); the catalog and the WAL name subjects
 * only by pseudonym (rule K2). */
int fv_keystore_pseudonym(struct fv_keystore *ks, const char *name, char out[FV_PSEUDONYM_LEN + 1]);
/* The data key of the subject called name, and its pseudonym. create_missing: make one
 * (durably committed, the name sealed with it) if the subject has none. The key stays valid
 * until the keystore is closed or the key destroyed. FV_ENOENT if it has none; FV_ESTATE if
 * it was destroyed (never re-created, rule K1). */
int fv_keystore_dek(struct fv_keystore *ks, const char *name, int create_missing,
                    const unsigned char **dek, char pseudo[FV_PSEUDONYM_LEN + 1]);
/* The data key and name of the subject with this pseudonym (replay). Errors as above. */
int fv_keystore_subject(struct fv_keystore *ks, const char *pseudo, const unsigned char **dek,
                        const char **name);
/* Crypto-shreds the subject called name: its wrapped key and sealed name are deleted (cells
 * zeroed), a tombstone row keeps its pseudonym. */
int fv_keystore_destroy(struct fv_keystore *ks, const char *name, char *err, size_t errlen);
/* The same, for the subject with this pseudonym (replaying an erasure list: the name is not
 * known, and must not need to be). Destroying a destroyed or unknown subject records the
 * tombstone (K1 then holds for it too). */
int fv_keystore_destroy_pseudo(struct fv_keystore *ks, const char *pseudo, char *err,
                               size_t errlen);
/* Re-wraps every data key and the pseudonym key under new_kek in one transaction; data is
 * not rewritten. */
int fv_keystore_rewrap(struct fv_keystore *ks, const struct fv_kek *new_kek, char *err,
                       size_t errlen);
/* The id of the master key that wrapped the catalog at db_path into out ("" when the file or
 * its pseudonym key does not exist yet); opens it read-only, creates nothing. FV_OK, FV_EIO. */
int fv_keystore_kek_id(const char *db_path, char out[17], char *err, size_t errlen);
/* A catalog still wrapped by kek's previous key (prev_id) is re-wrapped under kek's key, as
 * `fleetvault keys rotate` does (one transaction); *done says whether it was. A catalog
 * under kek's key, or new, is left alone. Call it before the catalog's keystores open. */
int fv_keystore_rotate_catalog(const char *db_path, const struct fv_kek *kek, int *done, char *err,
                               size_t errlen);
void fv_keystore_close(struct fv_keystore *ks);
/* Drops every cached key (wiped): the next use of each reads the catalog again, so a key
 * another keystore destroyed is seen as destroyed. Pointers returned before are invalid. */
void fv_keystore_forget(struct fv_keystore *ks);
/* The catalog's SQLite connection (registries beside the keys, e.g. principals); owned by
 * the keystore, same thread rules. */
struct sqlite3 *fv_keystore_db(struct fv_keystore *ks);
/* A read snapshot over a run of catalog lookups (a fleet read: several per device): one
 * deferred BEGIN, so SQLite takes its read lock and checks its WAL once for the run instead
 * of once per statement; every lookup in between sees the catalog as of the run's first
 * read. Only reads in between (this thread's; other connections go on writing). FV_OK: call
 * fv_keystore_read_end; anything else (already in a transaction, or BEGIN failed): the
 * lookups run as before, and there is nothing to end. */
int fv_keystore_read_begin(struct fv_keystore *ks);
void fv_keystore_read_end(struct fv_keystore *ks);
/* A statement of the catalog prepared once and kept for the keystore's life (same thread
 * rules), for lookups made per device on hot paths: slot names it (one of the constants
 * below), sql is its text (the same for a slot at every call). Returned reset, with no
 * bindings; the caller sqlite3_reset()s and sqlite3_clear_bindings() it when done and never
 * finalizes it. NULL if it cannot be prepared (sqlite3_errmsg(fv_keystore_db(ks)) says why). */
enum {
    FV_KEYSTORE_STMT_PERIODS,
    FV_KEYSTORE_STMT_BEGIN, /* fv_keystore_read_begin, _end: not parsed per request */
    FV_KEYSTORE_STMT_COMMIT,
    FV_KEYSTORE_STMTS
};
struct sqlite3_stmt *fv_keystore_stmt(struct fv_keystore *ks, unsigned slot, const char *sql);

/* Deferred key durability (the server turns it on): a new data key is committed without
 * fsync, so creating a device's key never waits for a disk on the ingest loop; the key
 * becomes durable at the next fv_keystore_sync, which whoever makes records sealed with it
 * durable must call first (the WAL writer does, before each batch's fdatasync). Off by
 * default: every commit is synchronous=FULL. */
void fv_keystore_defer_sync(struct fv_keystore *ks, int on);
/* Makes every key committed so far durable (fdatasync of the catalog's SQLite WAL); a no-op
 * when none was committed since the last call. Any thread. FV_OK or FV_EIO (err set; the
 * next call tries again). */
int fv_keystore_sync(struct fv_keystore *ks, char *err, size_t errlen);
/* A cluster gateway's keystore (docs/cluster.md "Keys", J5): its thread, the ingest loop,
 * never waits on the network, so the shared source is asked on another thread
 * (gateway/keyfetch.h). With async on, a subject the catalog lacks is neither fetched nor
 * made here: fv_keystore_dek answers FV_EAGAIN (create_missing) or FV_ENOENT, and the key
 * fetched elsewhere is handed over with fv_keystore_adopt. New keys are then committed
 * without fsync and never need fv_keystore_sync: the catalog is a cache of the source, where
 * a key is durable before anyone adopts it. */
void fv_keystore_set_async(struct fv_keystore *ks, int on);
/* Takes the source's answer rc for the subject with this pseudonym, asked on another thread:
 * FV_OK: dek and name are stored (the name must give the pseudonym, else FV_ECORRUPT);
 * FV_ESTATE: the subject was erased, its tombstone is stored (K1). A subject already here is
 * left as it is (FV_ESTATE if it is erased here). Other rc: returned, nothing changed. */
int fv_keystore_adopt(struct fv_keystore *ks, int rc, const char *pseudo,
                      const unsigned char dek[FV_KEY_LEN], const char *name);
/* Runs SQL on a catalog connection; FV_EIO with "catalog: ..." in err (may be NULL). */
int fv_catalog_exec(struct sqlite3 *db, const char *sql, char *err, size_t errlen);
/* A 256-bit secret for one use (label), derived from the pseudonym key: HMAC-SHA256(key,
 * label). Stable for the catalog's life, never stored. */
int fv_keystore_derive(struct fv_keystore *ks, const char *label, unsigned char out[32]);

#endif
