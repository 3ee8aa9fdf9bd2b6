/*
 * subjects.c - see subjects.h (tables, rules S1-S6): subject names, owner periods, a
 * subject forgotten at erasure. Consent per purpose is in consent.c.
 *
 * How the writes stay consistent with the keystore: a new subject's data key is created
 * (and committed, autocommit) before the transaction that opens its period, never inside
 * it, because the keystore caches keys in memory and a rolled-back key would stay cached
 * while absent from disk. If the period transaction then fails, the key exists with no
 * period naming it; a retry finds and uses it (nothing can have been sealed with it, since
 * a subject is used only once its period is open).
 *
 * Every read of a device's periods goes through load_periods, which checks S1 and that
 * each row's subject pseudonym is the one its epoch's name gives, so a swapped or edited
 * row is reported as corruption rather than served.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "crypto/certs.h"
#include "privacy/subjects.h"
#include "privacy/subjects_int.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"

static const char OWNER_AAD_PREFIX[] = "fv-owner:";

int fv_subjects_init(struct fv_keystore *ks, char *err, size_t errlen)
{
    return fv_catalog_exec(
        fv_keystore_db(ks),
        "CREATE TABLE IF NOT EXISTS subject_periods(device TEXT NOT NULL,"
        " epoch INTEGER NOT NULL, subject TEXT NOT NULL, owner BLOB,"
        " since_ms INTEGER NOT NULL, until_ms INTEGER, forgotten_ms INTEGER,"
        " PRIMARY KEY(device, epoch));"
        "CREATE INDEX IF NOT EXISTS subject_periods_subject ON subject_periods(subject);"
        "CREATE TABLE IF NOT EXISTS consents(subject TEXT NOT NULL,"
        " purpose TEXT NOT NULL, granted INTEGER NOT NULL, at_ms INTEGER NOT NULL,"
        " by TEXT, seq INTEGER PRIMARY KEY AUTOINCREMENT);"
        "CREATE INDEX IF NOT EXISTS consents_subject_purpose"
        " ON consents(subject, purpose, at_ms);",
        err, errlen);
}

/* ---- names -------------------------------------------------------------------------- */

int fv_subject_name(const char *device, int epoch, char out[FV_SUBJECT_NAME_MAX + 1])
{
    out[0] = '\0';
    if (!fv_device_id_valid(device) || epoch < 1) return FV_EINVAL;
    char tmp[FV_SUBJECT_NAME_MAX + 16];
    int k = epoch == 1 ? snprintf(tmp, sizeof tmp, "%s", device)
                       : snprintf(tmp, sizeof tmp, "%s#%d", device, epoch);
    if (k < 0 || (size_t)k > FV_SUBJECT_NAME_MAX) return FV_ELIMIT;
    memcpy(out, tmp, (size_t)k + 1);
    return FV_OK;
}

int fv_subject_parse(const char *name, char device[FV_SUBJECT_NAME_MAX + 1], int *epoch)
{
    device[0] = '\0';
    *epoch = 0;
    if (name == NULL) return FV_EINVAL;
    size_t n = strnlen(name, FV_SUBJECT_NAME_MAX + 1);
    if (n == 0 || n > FV_SUBJECT_NAME_MAX) return FV_EINVAL;
    const char *hash = strchr(name, '#');
    size_t dlen = hash ? (size_t)(hash - name) : n;
    long e = 1;
    if (hash) {
        const char *d = hash + 1;
        size_t nd = strlen(d);
        /* Digits only, no leading zero, fits an int: one spelling per epoch. */
        if (nd == 0 || nd > 9 || d[0] == '0' || strspn(d, "0123456789") != nd) return FV_EINVAL;
        e = strtol(d, NULL, 10);
        if (e < 2) return FV_EINVAL;
    }
    char dev[FV_SUBJECT_NAME_MAX + 1];
    memcpy(dev, name, dlen);
    dev[dlen] = '\0';
    if (!fv_device_id_valid(dev)) return FV_EINVAL;
    memcpy(device, dev, dlen + 1);
    *epoch = (int)e;
    return FV_OK;
}

/* 1 to FV_SUBJECT_OWNER_MAX bytes, none a control character. */
static int owner_valid(const char *o)
{
    if (o == NULL) return 0;
    size_t n = strnlen(o, FV_SUBJECT_OWNER_MAX + 1);
    if (n == 0 || n > FV_SUBJECT_OWNER_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)o[i];
        if (c < 0x20 || c == 0x7f) return 0;
    }
    return 1;
}

/* ---- periods ------------------------------------------------------------------------ */

void fv_subjects__periods_free(struct periods *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].owner);
    free(p->v);
    p->v = NULL;
    p->n = 0;
}

/* The current epoch and its start (the implicit period when none is recorded). */
static int cur_epoch(const struct periods *p)
{
    return p->n ? p->v[p->n - 1].epoch : 1;
}
static int64_t cur_since(const struct periods *p)
{
    return p->n ? p->v[p->n - 1].since : FV_SUBJECT_ORIGIN;
}

static int corrupt(const struct periods *p, int epoch, const char *what, char *err, size_t errlen)
{
    fv_seterr(err, errlen, "catalog: subject_periods: device %s epoch %d: %s", p->dpseudo, epoch,
              what);
    return FV_ECORRUPT;
}

/* Reads device's periods, oldest first, checking S1 and every row's subject pseudonym.
 * On success the caller frees *out with periods_free. */
/* Done with a statement of fv_keystore_stmt (NULL: nothing to do). */
static void release_stmt(sqlite3_stmt *st)
{
    if (st == NULL) return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int fv_subjects__load_periods(struct fv_keystore *ks, const char *device, struct periods *out,
                              char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!fv_device_id_valid(device)) {
        fv_seterr(err, errlen, "not a device id (1-64 of A-Z a-z 0-9 - _)");
        return FV_EINVAL;
    }
    snprintf(out->device, sizeof out->device, "%s", device);
    if (fv_keystore_pseudonym(ks, device, out->dpseudo) != FV_OK) {
        fv_seterr(err, errlen, "cannot compute a pseudonym");
        return FV_EIO;
    }
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc = FV_EIO, step;
    /* prepared once per keystore: this runs per device on every fleet read */
    if ((st = fv_keystore_stmt(ks, FV_KEYSTORE_STMT_PERIODS,
                               "SELECT epoch, subject, owner, since_ms, until_ms, forgotten_ms"
                               " FROM subject_periods WHERE device = ?1 ORDER BY epoch")) == NULL ||
        sqlite3_bind_text(st, 1, out->dpseudo, -1, SQLITE_STATIC) != SQLITE_OK)
        goto dberr;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap) {
            size_t ncap = cap ? 2 * cap : 4;
            struct prow *nv = realloc(out->v, ncap * sizeof *nv);
            if (nv == NULL) {
                rc = FV_ENOMEM;
                fv_seterr(err, errlen, "out of memory");
                goto fail;
            }
            out->v = nv;
            cap = ncap;
        }
        struct prow *r = &out->v[out->n];
        memset(r, 0, sizeof *r);
        out->n++;
        sqlite3_int64 epoch = sqlite3_column_int64(st, 0);
        int want = (int)out->n;
        if (epoch != want) {
            rc = corrupt(out, want, "epochs are not 1, 2, ... in order", err, errlen);
            goto fail;
        }
        r->epoch = want;
        if (fv_subject_name(device, r->epoch, r->name) != FV_OK ||
            fv_keystore_pseudonym(ks, r->name, r->pseudo) != FV_OK) {
            rc = corrupt(out, want, "no subject name fits this epoch", err, errlen);
            goto fail;
        }
        const unsigned char *subj = sqlite3_column_text(st, 1);
        if (subj == NULL || strcmp((const char *)subj, r->pseudo) != 0) {
            rc = corrupt(out, want, "the subject is not this epoch's", err, errlen);
            goto fail;
        }
        if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
            int len = sqlite3_column_bytes(st, 2);
            const void *b = sqlite3_column_blob(st, 2);
            if (len < FV_SEAL_OVERHEAD || b == NULL) {
                rc = corrupt(out, want, "the sealed owner is too short", err, errlen);
                goto fail;
            }
            if ((r->owner = malloc((size_t)len)) == NULL) {
                rc = FV_ENOMEM;
                fv_seterr(err, errlen, "out of memory");
                goto fail;
            }
            memcpy(r->owner, b, (size_t)len);
            r->owner_len = (size_t)len;
        }
        r->since = sqlite3_column_int64(st, 3);
        int open = sqlite3_column_type(st, 4) == SQLITE_NULL;
        r->until = open ? FV_SUBJECT_FOREVER : sqlite3_column_int64(st, 4);
        if (sqlite3_column_type(st, 5) != SQLITE_NULL) {
            r->forgotten = sqlite3_column_int64(st, 5);
            if (r->forgotten <= 0) r->forgotten = 1; /* keep a forgotten row forgotten */
        }
        if (r->epoch == 1 ? r->since != FV_SUBJECT_ORIGIN : r->since != out->v[out->n - 2].until) {
            rc = corrupt(out, want, "the period does not start where the previous one ends", err,
                         errlen);
            goto fail;
        }
        if (!open && (r->until < r->since || r->until == FV_SUBJECT_FOREVER)) {
            rc = corrupt(out, want, "the period ends before it starts", err, errlen);
            goto fail;
        }
        if (out->n > 1 && out->v[out->n - 2].until == FV_SUBJECT_FOREVER) {
            rc = corrupt(out, want - 1, "an open period is followed by another", err, errlen);
            goto fail;
        }
    }
    if (step != SQLITE_DONE) goto dberr;
    if (out->n && out->v[out->n - 1].until != FV_SUBJECT_FOREVER) {
        rc = corrupt(out, out->v[out->n - 1].epoch, "the last period is closed", err, errlen);
        goto fail;
    }
    release_stmt(st);
    return FV_OK;
dberr:
    fv_seterr(err, errlen, "catalog: subject_periods: %s", sqlite3_errmsg(db));
    rc = FV_EIO;
fail:
    release_stmt(st);
    fv_subjects__periods_free(out);
    return rc;
}

int fv_subject_current(struct fv_keystore *ks, const char *device,
                       char name_out[FV_SUBJECT_NAME_MAX + 1], int *epoch)
{
    name_out[0] = '\0';
    if (epoch) *epoch = 0;
    struct periods p;
    int rc = fv_subjects__load_periods(ks, device, &p, NULL, 0);
    if (rc) return rc;
    int e = cur_epoch(&p);
    rc = fv_subject_name(device, e, name_out);
    if (rc == FV_OK && epoch) *epoch = e;
    fv_subjects__periods_free(&p);
    return rc;
}

int fv_subject_for_time(struct fv_keystore *ks, const char *device, int64_t t,
                        char name_out[FV_SUBJECT_NAME_MAX + 1], int *epoch)
{
    int64_t since, until;
    return fv_subject_period_at(ks, device, t, name_out, epoch, &since, &until);
}

int fv_subject_period_at(struct fv_keystore *ks, const char *device, int64_t t,
                         char name_out[FV_SUBJECT_NAME_MAX + 1], int *epoch, int64_t *since,
                         int64_t *until)
{
    name_out[0] = '\0';
    if (epoch) *epoch = 0;
    *since = FV_SUBJECT_ORIGIN;
    *until = FV_SUBJECT_FOREVER;
    struct periods p;
    int rc = fv_subjects__load_periods(ks, device, &p, NULL, 0);
    if (rc) return rc;
    /* S1: the periods cover all time, so exactly one holds t (INT64_MAX: the last). */
    int e = 1;
    for (size_t i = 0; i < p.n; i++)
        if (p.v[i].since <= t) {
            e = p.v[i].epoch;
            *since = p.v[i].since;
            *until = p.v[i].until;
        }
    rc = fv_subject_name(device, e, name_out);
    if (rc == FV_OK && epoch) *epoch = e;
    fv_subjects__periods_free(&p);
    return rc;
}

int fv_subjects_opened_since(struct fv_keystore *ks, int64_t *cursor,
                             int (*fn)(void *arg, const char *device_pseudonym), void *arg)
{
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    int first = *cursor < 0, rc = FV_OK, step;
    /* rowids only grow: period rows are inserted, never deleted (S1, fv_subjects_forget) -
     * but for a cluster's lost conflict (subjects_rows.h R1), whose last rowid a later period
     * may reuse: that change is then seen at the next registry generation, not swept here */
    if (sqlite3_prepare_v2(db,
                           first ? "SELECT coalesce(max(rowid), 0), NULL FROM subject_periods"
                                 : "SELECT rowid, device FROM subject_periods WHERE rowid > ?1"
                                   " AND epoch > 1 ORDER BY rowid",
                           -1, &st, NULL) != SQLITE_OK ||
        (!first && sqlite3_bind_int64(st, 1, *cursor) != SQLITE_OK)) {
        sqlite3_finalize(st);
        return FV_EIO;
    }
    while (rc == FV_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        *cursor = sqlite3_column_int64(st, 0);
        const unsigned char *dev = sqlite3_column_text(st, 1);
        if (!first && dev) rc = fn(arg, (const char *)dev);
    }
    if (rc == FV_OK && step != SQLITE_DONE) rc = FV_EIO;
    sqlite3_finalize(st);
    return rc;
}

/* Seals owner with the data key of subject name (creating the key if create), into *out. */
static int seal_owner(struct fv_keystore *ks, const char *name, const char *owner, int create,
                      struct fv_buf *out, char *err, size_t errlen)
{
    const unsigned char *dek = NULL;
    char pseudo[FV_PSEUDONYM_LEN + 1], aad[sizeof OWNER_AAD_PREFIX + FV_PSEUDONYM_LEN];
    int rc = fv_keystore_dek(ks, name, create, &dek, pseudo);
    if (rc == FV_ESTATE) {
        fv_seterr(err, errlen,
                  "subject %s was erased (its data key is destroyed and is never re-created)",
                  pseudo);
        return FV_ESTATE;
    }
    if (rc) {
        fv_seterr(err, errlen, "no data key for the subject: %s", fv_strerror(rc));
        return rc == FV_ENOENT ? FV_ECORRUPT : rc;
    }
    snprintf(aad, sizeof aad, "%s%s", OWNER_AAD_PREFIX, pseudo);
    rc = fv_seal(dek, aad, strlen(aad), owner, strlen(owner), out);
    if (rc) fv_seterr(err, errlen, "sealing the owner id failed: %s", fv_strerror(rc));
    return rc;
}

/* Opens a sealed owner into out (FV_SUBJECT_OWNER_MAX + 1 bytes). FV_ESTATE: the key is
 * destroyed (out ""). */
static int open_owner(struct fv_keystore *ks, const struct prow *r, char *out)
{
    out[0] = '\0';
    const unsigned char *dek = NULL;
    char pseudo[FV_PSEUDONYM_LEN + 1], aad[sizeof OWNER_AAD_PREFIX + FV_PSEUDONYM_LEN];
    int rc = fv_keystore_dek(ks, r->name, 0, &dek, pseudo);
    if (rc == FV_ENOENT) return FV_ECORRUPT; /* sealed with a key that never existed */
    if (rc) return rc;
    snprintf(aad, sizeof aad, "%s%s", OWNER_AAD_PREFIX, pseudo);
    struct fv_buf plain = {0};
    rc = fv_open(dek, aad, strlen(aad), r->owner, r->owner_len, &plain);
    if (rc == FV_OK && (plain.len == 0 || plain.len > FV_SUBJECT_OWNER_MAX)) rc = FV_ECORRUPT;
    if (rc == FV_OK) {
        memcpy(out, plain.data, plain.len);
        out[plain.len] = '\0';
    }
    if (plain.data) OPENSSL_cleanse(plain.data, plain.cap);
    fv_buf_free(&plain);
    return rc;
}

int fv_subjects__begin(sqlite3 *db, char *err, size_t errlen)
{
    return fv_catalog_exec(db, "BEGIN IMMEDIATE", err, errlen);
}

int fv_subjects__commit(sqlite3 *db, int rc, char *err, size_t errlen)
{
    if (rc == FV_OK) rc = fv_catalog_exec(db, "COMMIT", err, errlen);
    if (rc != FV_OK) fv_catalog_exec(db, "ROLLBACK", NULL, 0);
    return rc;
}

/* One INSERT into subject_periods. owner may be NULL; until FV_SUBJECT_FOREVER -> NULL. */
static int insert_period(sqlite3 *db, const char *dpseudo, int epoch, const char *spseudo,
                         const struct fv_buf *owner, int64_t since, int64_t until, char *err,
                         size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO subject_periods(device, epoch, subject, owner, since_ms,"
                           " until_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, dpseudo, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_int(st, 2, epoch) == SQLITE_OK &&
        sqlite3_bind_text(st, 3, spseudo, -1, SQLITE_STATIC) == SQLITE_OK &&
        (owner ? sqlite3_bind_blob(st, 4, owner->data, (int)owner->len, SQLITE_STATIC)
               : sqlite3_bind_null(st, 4)) == SQLITE_OK &&
        sqlite3_bind_int64(st, 5, since) == SQLITE_OK &&
        (until == FV_SUBJECT_FOREVER ? sqlite3_bind_null(st, 6)
                                     : sqlite3_bind_int64(st, 6, until)) == SQLITE_OK) {
        int step = sqlite3_step(st);
        if (step == SQLITE_DONE)
            rc = FV_OK;
        else if (sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_PRIMARYKEY)
            rc = FV_EAGAIN;
    }
    if (rc == FV_EAGAIN)
        fv_seterr(err, errlen, "the device's periods changed meanwhile; try again");
    else if (rc)
        fv_seterr(err, errlen, "catalog: subject_periods: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

/* Same device state as before: same number of periods, same current start. */
static int same_state(const struct periods *a, const struct periods *b)
{
    return a->n == b->n && cur_since(a) == cur_since(b) &&
           (a->n == 0 || (a->v[a->n - 1].owner == NULL) == (b->v[b->n - 1].owner == NULL));
}

int fv_subject_change_owner(struct fv_keystore *ks, const char *device, const char *owner_id,
                            int64_t at_ms, char *err, size_t errlen)
{
    if (!owner_valid(owner_id)) {
        fv_seterr(err, errlen, "bad owner id (1 to %d bytes, no control characters)",
                  FV_SUBJECT_OWNER_MAX);
        return FV_EINVAL;
    }
    if (at_ms == INT64_MIN || at_ms == INT64_MAX) {
        fv_seterr(err, errlen, "bad time of the change of owner");
        return FV_EINVAL;
    }
    sqlite3 *db = fv_keystore_db(ks);
    struct periods p, again;
    memset(&again, 0, sizeof again);
    struct fv_buf sealed = {0};
    int rc = fv_subjects__load_periods(ks, device, &p, err, errlen);
    if (rc) return rc;
    int e = cur_epoch(&p);
    char name[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1];
    if (at_ms < cur_since(&p)) {
        fv_seterr(err, errlen,
                  "the change of owner (at %lld ms) would precede the current owner period, "
                  "which began at %lld ms",
                  (long long)at_ms, (long long)cur_since(&p));
        rc = FV_EINVAL;
        goto done;
    }
    if (e >= INT_MAX - 1 || fv_subject_name(device, e + 1, name) != FV_OK) {
        fv_seterr(err, errlen,
                  "device id too long for owner period %d (subject names are at most %d "
                  "bytes: the id, '#', the period)",
                  e + 1, FV_SUBJECT_NAME_MAX);
        rc = FV_ELIMIT;
        goto done;
    }
    /* The new subject's key first, committed on its own (see the top of this file). */
    rc = seal_owner(ks, name, owner_id, 1, &sealed, err, errlen);
    if (rc == FV_OK) rc = fv_keystore_pseudonym(ks, name, pseudo);
    if (rc) goto done;
    if ((rc = fv_subjects__begin(db, err, errlen)) != FV_OK) goto done;
    rc = fv_subjects__load_periods(ks, device, &again, err, errlen);
    if (rc == FV_OK && !same_state(&p, &again)) {
        fv_seterr(err, errlen, "the device's periods changed meanwhile; try again");
        rc = FV_EAGAIN;
    }
    if (rc == FV_OK && p.n == 0) {
        /* Epoch 1 was implicit: record it, closed, owner unknown. */
        rc =
            insert_period(db, p.dpseudo, 1, p.dpseudo, NULL, FV_SUBJECT_ORIGIN, at_ms, err, errlen);
    } else if (rc == FV_OK) {
        sqlite3_stmt *st = NULL;
        rc = FV_EIO;
        if (sqlite3_prepare_v2(db,
                               "UPDATE subject_periods SET until_ms = ?3"
                               " WHERE device = ?1 AND epoch = ?2 AND until_ms IS NULL",
                               -1, &st, NULL) == SQLITE_OK &&
            sqlite3_bind_text(st, 1, p.dpseudo, -1, SQLITE_STATIC) == SQLITE_OK &&
            sqlite3_bind_int(st, 2, e) == SQLITE_OK &&
            sqlite3_bind_int64(st, 3, at_ms) == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE)
            rc = sqlite3_changes(db) == 1 ? FV_OK : FV_EAGAIN;
        if (rc == FV_EIO)
            fv_seterr(err, errlen, "catalog: subject_periods: %s", sqlite3_errmsg(db));
        else if (rc == FV_EAGAIN)
            fv_seterr(err, errlen, "the device's periods changed meanwhile; try again");
        sqlite3_finalize(st);
    }
    if (rc == FV_OK)
        rc = insert_period(db, p.dpseudo, e + 1, pseudo, &sealed, at_ms, FV_SUBJECT_FOREVER, err,
                           errlen);
    rc = fv_subjects__commit(db, rc, err, errlen);
done:
    fv_subjects__periods_free(&p);
    fv_subjects__periods_free(&again);
    fv_buf_free(&sealed);
    return rc;
}

int fv_subject_set_owner(struct fv_keystore *ks, const char *device, const char *owner_id,
                         char *err, size_t errlen)
{
    if (!owner_valid(owner_id)) {
        fv_seterr(err, errlen, "bad owner id (1 to %d bytes, no control characters)",
                  FV_SUBJECT_OWNER_MAX);
        return FV_EINVAL;
    }
    sqlite3 *db = fv_keystore_db(ks);
    struct periods p;
    struct fv_buf sealed = {0};
    int rc = fv_subjects__load_periods(ks, device, &p, err, errlen);
    if (rc) return rc;
    const struct prow *last = p.n ? &p.v[p.n - 1] : NULL;
    char name[FV_SUBJECT_NAME_MAX + 1];
    if (last && (last->owner || last->forgotten)) {
        fv_seterr(err, errlen,
                  "the current owner period already has %s owner; a new owner is a change of "
                  "owner (a new subject)",
                  last->owner ? "an" : "a forgotten");
        rc = FV_EEXIST;
        goto done;
    }
    rc = fv_subject_name(device, cur_epoch(&p), name);
    if (rc == FV_OK) rc = seal_owner(ks, name, owner_id, 1, &sealed, err, errlen);
    if (rc) goto done;
    if (last == NULL) {
        rc = insert_period(db, p.dpseudo, 1, p.dpseudo, &sealed, FV_SUBJECT_ORIGIN,
                           FV_SUBJECT_FOREVER, err, errlen);
        goto done;
    }
    sqlite3_stmt *st = NULL;
    rc = FV_EIO;
    if (sqlite3_prepare_v2(db,
                           "UPDATE subject_periods SET owner = ?3 WHERE device = ?1 AND"
                           " epoch = ?2 AND until_ms IS NULL AND owner IS NULL AND"
                           " forgotten_ms IS NULL",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, p.dpseudo, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_int(st, 2, last->epoch) == SQLITE_OK &&
        sqlite3_bind_blob(st, 3, sealed.data, (int)sealed.len, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_DONE)
        rc = sqlite3_changes(db) == 1 ? FV_OK : FV_EAGAIN;
    if (rc == FV_EIO)
        fv_seterr(err, errlen, "catalog: subject_periods: %s", sqlite3_errmsg(db));
    else if (rc == FV_EAGAIN)
        fv_seterr(err, errlen, "the device's periods changed meanwhile; try again");
    sqlite3_finalize(st);
done:
    fv_subjects__periods_free(&p);
    fv_buf_free(&sealed);
    return rc;
}

int fv_subject_periods(struct fv_keystore *ks, const char *device,
                       int (*fn)(void *arg, const struct fv_subject_period *p), void *arg,
                       char *err, size_t errlen)
{
    struct periods p;
    int rc = fv_subjects__load_periods(ks, device, &p, err, errlen);
    if (rc) return rc;
    struct prow implicit;
    memset(&implicit, 0, sizeof implicit);
    const struct prow *rows = p.v;
    size_t n = p.n;
    if (n == 0) {
        implicit.epoch = 1;
        snprintf(implicit.name, sizeof implicit.name, "%s", device);
        snprintf(implicit.pseudo, sizeof implicit.pseudo, "%s", p.dpseudo);
        implicit.since = FV_SUBJECT_ORIGIN;
        implicit.until = FV_SUBJECT_FOREVER;
        rows = &implicit;
        n = 1;
    }
    for (size_t i = 0; i < n && rc == FV_OK; i++) {
        const struct prow *r = &rows[i];
        struct fv_subject_period out;
        memset(&out, 0, sizeof out);
        memcpy(out.name, r->name, sizeof out.name);
        memcpy(out.pseudonym, r->pseudo, sizeof out.pseudonym);
        out.epoch = r->epoch;
        out.since_ms = r->since;
        out.until_ms = r->until;
        out.current = i + 1 == n;
        out.forgotten_ms = r->forgotten;
        int krc;
        if (r->owner) {
            krc = open_owner(ks, r, out.owner);
        } else {
            const unsigned char *dek = NULL;
            char pseudo[FV_PSEUDONYM_LEN + 1];
            krc = fv_keystore_dek(ks, r->name, 0, &dek, pseudo);
            if (krc == FV_ENOENT) krc = FV_OK; /* no key yet: nothing was stored */
        }
        if (krc == FV_ECORRUPT) {
            rc = corrupt(&p, r->epoch, "the sealed owner (or the subject's key) does not open", err,
                         errlen);
            break;
        }
        if (krc != FV_OK && krc != FV_ESTATE) {
            fv_seterr(err, errlen, "reading the subject's key failed: %s", fv_strerror(krc));
            rc = krc;
            break;
        }
        if (krc == FV_ESTATE || r->forgotten) {
            out.erased = 1;
            OPENSSL_cleanse(out.owner, sizeof out.owner);
        }
        rc = fn(arg, &out);
        OPENSSL_cleanse(&out, sizeof out);
    }
    fv_subjects__periods_free(&p);
    return rc;
}

/* The subject's name parts and pseudonym. */
int fv_subjects__ids(struct fv_keystore *ks, const char *subject,
                     char device[FV_SUBJECT_NAME_MAX + 1], int *epoch,
                     char pseudo[FV_PSEUDONYM_LEN + 1], char *err, size_t errlen)
{
    if (fv_subject_parse(subject, device, epoch) != FV_OK) {
        fv_seterr(err, errlen, "bad subject name (a device id, or DEVICE#n for its n-th owner)");
        return FV_EINVAL;
    }
    if (fv_keystore_pseudonym(ks, subject, pseudo) != FV_OK) {
        fv_seterr(err, errlen, "cannot compute a pseudonym");
        return FV_EIO;
    }
    return FV_OK;
}

int fv_subjects_forget(struct fv_keystore *ks, const char *subject, char *err, size_t errlen)
{
    char device[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1];
    int epoch;
    int rc = fv_subjects__ids(ks, subject, device, &epoch, pseudo, err, errlen);
    if (rc) return rc;
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *del = NULL, *upd = NULL;
    if ((rc = fv_subjects__begin(db, err, errlen)) != FV_OK) return rc;
    rc = FV_EIO;
    if (sqlite3_prepare_v2(db, "DELETE FROM consents WHERE subject = ?1", -1, &del, NULL) ==
            SQLITE_OK &&
        sqlite3_bind_text(del, 1, pseudo, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(del) == SQLITE_DONE &&
        sqlite3_prepare_v2(db,
                           "UPDATE subject_periods SET owner = NULL,"
                           " forgotten_ms = coalesce(forgotten_ms, ?2) WHERE subject = ?1",
                           -1, &upd, NULL) == SQLITE_OK &&
        sqlite3_bind_text(upd, 1, pseudo, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_int64(upd, 2, (sqlite3_int64)fv_now_ms()) == SQLITE_OK &&
        sqlite3_step(upd) == SQLITE_DONE)
        rc = FV_OK;
    else
        fv_seterr(err, errlen, "catalog: %s", sqlite3_errmsg(db));
    sqlite3_finalize(del);
    sqlite3_finalize(upd);
    rc = fv_subjects__commit(db, rc, err, errlen);
    /* secure_delete zeroed the freed cells; the checkpoint moves that into the database
     * file and empties the SQLite WAL, where the old pages would otherwise linger. */
    if (rc == FV_OK) rc = fv_catalog_exec(db, "PRAGMA wal_checkpoint(TRUNCATE);", err, errlen);
    return rc;
}
