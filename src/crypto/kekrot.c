/* kekrot.c - the previous master key of a rotation, and a catalog moved to the new key at
 * start (keys.h: fv_kek_load_previous, fv_kek_by_id, fv_keystore_kek_id,
 * fv_keystore_rotate_catalog; docs/cluster.md, "Master key rotation").
 *
 * A node of a cluster being moved from master key A to B runs with --key-file B
 * --previous-key-file A: it reads KV values wrapped by either (the id in each value's head
 * says which: cluster/jskeys.h J6) and wraps everything it writes with B. Its catalog holds
 * one master key's wrapping only; one still under A is re-wrapped under B once, before its
 * keystores open (the single node's `keys rotate`, fv_keystore_rewrap). Only public keystore
 * calls are used here.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "crypto/keys.h"
#include "util/err.h"

int fv_kek_load_previous(const char *path, struct fv_kek *k, char *err, size_t errlen)
{
    struct fv_kek p;
    int rc = fv_kek_load(path, &p, err, errlen);
    if (rc == FV_OK && strcmp(p.id, k->id) == 0) {
        fv_seterr(err, errlen,
                  "%s: the previous master key is the master key itself (%s); give the key "
                  "the cluster moves away from",
                  path, p.id);
        rc = FV_EINVAL;
    }
    if (rc == FV_OK) {
        memcpy(k->prev_key, p.key, FV_KEY_LEN);
        memcpy(k->prev_id, p.id, sizeof k->prev_id);
    }
    fv_kek_wipe(&p);
    return rc;
}

const unsigned char *fv_kek_by_id(const struct fv_kek *k, const char *id16)
{
    if (memcmp(id16, k->id, 16) == 0) return k->key;
    if (k->prev_id[0] && memcmp(id16, k->prev_id, 16) == 0) return k->prev_key;
    return NULL;
}

int fv_keystore_kek_id(const char *db_path, char out[17], char *err, size_t errlen)
{
    out[0] = '\0';
    struct stat st;
    if (stat(db_path, &st) != 0) return FV_OK; /* a new node: no catalog yet */
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int rc = FV_EIO;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) goto done;
    sqlite3_busy_timeout(db, FV_KEYSTORE_BUSY_MS);
    int prc =
        sqlite3_prepare_v2(db, "SELECT kek_id FROM meta WHERE k = 'pseudonym_key'", -1, &q, NULL);
    if (prc != SQLITE_OK) {
        /* no table meta: a catalog that never held a key */
        rc = strstr(sqlite3_errmsg(db), "no such table") ? FV_OK : FV_EIO;
        goto done;
    }
    int step = sqlite3_step(q);
    if (step == SQLITE_ROW && sqlite3_column_text(q, 0))
        snprintf(out, 17, "%s", (const char *)sqlite3_column_text(q, 0));
    rc = step == SQLITE_ROW || step == SQLITE_DONE ? FV_OK : FV_EIO;
done:
    if (rc) fv_seterr(err, errlen, "%s: %s", db_path, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_finalize(q);
    sqlite3_close(db);
    return rc;
}

int fv_keystore_rotate_catalog(const char *db_path, const struct fv_kek *kek, int *done, char *err,
                               size_t errlen)
{
    *done = 0;
    if (kek->prev_id[0] == '\0') return FV_OK;
    char id[17];
    int rc = fv_keystore_kek_id(db_path, id, err, errlen);
    if (rc || strcmp(id, kek->prev_id) != 0)
        return rc; /* new, current, or another (refused
                      by the keystore, naming both) */
    struct fv_kek old, cur;
    memset(&old, 0, sizeof old);
    memset(&cur, 0, sizeof cur);
    memcpy(old.key, kek->prev_key, FV_KEY_LEN);
    memcpy(old.id, kek->prev_id, sizeof old.id);
    memcpy(cur.key, kek->key, FV_KEY_LEN);
    memcpy(cur.id, kek->id, sizeof cur.id);
    struct fv_keystore *ks = NULL;
    rc = fv_keystore_open(db_path, &old, &ks, err, errlen);
    if (rc == FV_OK) rc = fv_keystore_rewrap(ks, &cur, err, errlen);
    if (rc == FV_OK) *done = 1;
    fv_keystore_close(ks);
    fv_kek_wipe(&old);
    fv_kek_wipe(&cur);
    return rc;
}
