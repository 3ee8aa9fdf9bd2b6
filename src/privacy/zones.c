/*
 * zones.c - see zones.h (table, rules Z1-Z5).
 *
 * Sealed zone (rule Z3), the plaintext inside fv_seal's nonce || ciphertext || tag:
 *
 *   offset size
 *    0      1   u8  format version, ZONE_FORMAT_V1 (1)
 *    1      8   u64 bits of lat (IEEE-754 binary64), little-endian
 *    9      8   u64 bits of lon
 *   17      8   u64 bits of radius_m
 *   (25 bytes; the row holds 25 + FV_SEAL_OVERHEAD)
 *
 * Validity on reading, each failure being corruption of the named subject's row: the blob
 * opens under the subject's key with associated data "fv-zone:" || pseudonym || label;
 * the plaintext is 25 bytes with version 1; the centre and radius obey Z2; the label obeys
 * Z1. A row is never repaired or skipped: a zone that cannot be read fails the whole load
 * (Z5), since serving a track without its owner's home zone would reveal the home.
 *
 * Writes follow subjects.c: a data key the subject lacks is created (and committed,
 * autocommit) before the write transaction, never inside it, because the keystore caches
 * keys in memory and a rolled-back key would stay cached while absent from disk.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "privacy/subjects.h"
#include "privacy/zones.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"

#define ZONE_FORMAT_V1 1u
#define ZONE_PLAIN_LEN 25u

static const char ZONE_AAD_PREFIX[] = "fv-zone:";
/* "fv-zone:" || 32 hex || label, NUL */
#define ZONE_AAD_MAX (sizeof ZONE_AAD_PREFIX + FV_PSEUDONYM_LEN + FV_ZONE_LABEL_MAX)

int fv_zones_init(struct fv_keystore *ks, char *err, size_t errlen)
{
    return fv_catalog_exec(fv_keystore_db(ks),
                           "CREATE TABLE IF NOT EXISTS privacy_zones(subject TEXT NOT NULL,"
                           " label TEXT NOT NULL, zone BLOB NOT NULL, created_ms INTEGER,"
                           " PRIMARY KEY(subject, label));",
                           err, errlen);
}

int fv_zone_label_valid(const char *label)
{
    if (label == NULL) return 0;
    size_t n = strnlen(label, FV_ZONE_LABEL_MAX + 1);
    if (n == 0 || n > FV_ZONE_LABEL_MAX) return 0;
    return strspn(label, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* Z2. */
static int zone_valid(double lat, double lon, double radius_m)
{
    return fv_geo_valid(lat, lon) && isfinite(radius_m) && radius_m >= FV_ZONE_RADIUS_MIN_M &&
           radius_m <= FV_ZONE_RADIUS_MAX_M;
}

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* The subject's name parts and pseudonym. */
static int subject_pseudo(struct fv_keystore *ks, const char *subject,
                          char pseudo[FV_PSEUDONYM_LEN + 1], char *err, size_t errlen)
{
    char device[FV_SUBJECT_NAME_MAX + 1];
    int epoch;
    if (fv_subject_parse(subject, device, &epoch) != FV_OK) {
        fv_seterr(err, errlen, "bad subject name (a device id, or DEVICE#n for its n-th owner)");
        return FV_EINVAL;
    }
    if (fv_keystore_pseudonym(ks, subject, pseudo) != FV_OK) {
        fv_seterr(err, errlen, "cannot compute a pseudonym");
        return FV_EIO;
    }
    return FV_OK;
}

static void zone_aad(const char *pseudo, const char *label, char out[ZONE_AAD_MAX])
{
    snprintf(out, ZONE_AAD_MAX, "%s%s%s", ZONE_AAD_PREFIX, pseudo, label);
}

/* ---- which subjects may have zones ------------------------------------------------------ */

struct find {
    const char *name;
    int found, erased;
};

static int find_period(void *arg, const struct fv_subject_period *p)
{
    struct find *f = arg;
    if (strcmp(p->name, f->name) == 0) {
        f->found = 1;
        f->erased = p->erased;
    }
    return 0;
}

/* FV_OK if subject is one of its device's owner periods and not erased. */
static int check_subject(struct fv_keystore *ks, const char *subject, char *err, size_t errlen)
{
    char device[FV_SUBJECT_NAME_MAX + 1];
    int epoch;
    if (fv_subject_parse(subject, device, &epoch) != FV_OK) {
        fv_seterr(err, errlen, "bad subject name (a device id, or DEVICE#n for its n-th owner)");
        return FV_EINVAL;
    }
    struct find f = {.name = subject};
    int rc = fv_subject_periods(ks, device, find_period, &f, err, errlen);
    if (rc) return rc;
    if (!f.found) {
        fv_seterr(err, errlen, "no subject %s: the device has no such owner period", subject);
        return FV_ENOENT;
    }
    if (f.erased) {
        fv_seterr(err, errlen, "subject %s was erased", subject);
        return FV_ESTATE;
    }
    return FV_OK;
}

static int begin(sqlite3 *db, char *err, size_t errlen)
{
    return fv_catalog_exec(db, "BEGIN IMMEDIATE", err, errlen);
}

static int commit_or_rollback(sqlite3 *db, int rc, char *err, size_t errlen)
{
    if (rc == FV_OK) rc = fv_catalog_exec(db, "COMMIT", err, errlen);
    if (rc != FV_OK) fv_catalog_exec(db, "ROLLBACK", NULL, 0);
    return rc;
}

/* ---- writes ------------------------------------------------------------------------------ */

int fv_zone_set(struct fv_keystore *ks, const char *subject, const char *label, double lat,
                double lon, double radius_m, char *err, size_t errlen)
{
    char pseudo[FV_PSEUDONYM_LEN + 1], kp[FV_PSEUDONYM_LEN + 1], aad[ZONE_AAD_MAX];
    int rc = subject_pseudo(ks, subject, pseudo, err, errlen);
    if (rc) return rc;
    if (!fv_zone_label_valid(label)) {
        fv_seterr(err, errlen, "bad zone label (1 to %d of a-z 0-9 _ -)", FV_ZONE_LABEL_MAX);
        return FV_EINVAL;
    }
    if (!fv_geo_valid(lat, lon)) {
        fv_seterr(err, errlen, "bad zone centre (latitude -90..90, longitude -180..180)");
        return FV_EINVAL;
    }
    if (!zone_valid(lat, lon, radius_m)) {
        fv_seterr(err, errlen, "bad zone radius (%.0f to %.0f m)", FV_ZONE_RADIUS_MIN_M,
                  FV_ZONE_RADIUS_MAX_M);
        return FV_EINVAL;
    }
    if ((rc = check_subject(ks, subject, err, errlen)) != FV_OK) return rc;
    /* Before the transaction (see the top of this file). */
    const unsigned char *dek = NULL;
    rc = fv_keystore_dek(ks, subject, 1, &dek, kp);
    if (rc == FV_ESTATE) {
        fv_seterr(err, errlen, "subject %s was erased (its data key is destroyed)", subject);
        return FV_ESTATE;
    }
    if (rc) {
        fv_seterr(err, errlen, "no data key for subject %s: %s", subject, fv_strerror(rc));
        return rc;
    }
    unsigned char plain[ZONE_PLAIN_LEN];
    plain[0] = ZONE_FORMAT_V1;
    fv_put_u64(plain + 1, dbits(lat));
    fv_put_u64(plain + 9, dbits(lon));
    fv_put_u64(plain + 17, dbits(radius_m));
    zone_aad(pseudo, label, aad);
    struct fv_buf sealed = {0};
    rc = fv_seal(dek, aad, strlen(aad), plain, sizeof plain, &sealed);
    OPENSSL_cleanse(plain, sizeof plain);
    if (rc) {
        fv_seterr(err, errlen, "sealing the zone failed: %s", fv_strerror(rc));
        fv_buf_free(&sealed);
        return rc;
    }
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    if ((rc = begin(db, err, errlen)) != FV_OK) {
        fv_buf_free(&sealed);
        return rc;
    }
    rc = FV_EIO;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM privacy_zones WHERE subject = ?1 AND label <> ?2",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, pseudo, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, label, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        goto dberr;
    if (sqlite3_column_int64(st, 0) >= FV_ZONES_MAX) {
        fv_seterr(err, errlen, "subject %s has %d zones already (the most a subject may have)",
                  subject, FV_ZONES_MAX);
        rc = FV_ELIMIT;
        goto done;
    }
    struct fv_zone_row row = {
        .blob = sealed.data, .len = sealed.len, .created_ms = (int64_t)fv_now_ms()};
    memcpy(row.pseudo, pseudo, sizeof row.pseudo);
    snprintf(row.label, sizeof row.label, "%s", label);
    rc = fv_zone_row_put(ks, &row, err, errlen);
    goto done;
dberr:
    fv_seterr(err, errlen, "catalog: privacy_zones: %s", sqlite3_errmsg(db));
    rc = FV_EIO;
done:
    sqlite3_finalize(st);
    fv_buf_free(&sealed);
    return commit_or_rollback(db, rc, err, errlen);
}

int fv_zone_remove(struct fv_keystore *ks, const char *subject, const char *label, char *err,
                   size_t errlen)
{
    char pseudo[FV_PSEUDONYM_LEN + 1];
    int rc = subject_pseudo(ks, subject, pseudo, err, errlen);
    if (rc) return rc;
    if (!fv_zone_label_valid(label)) {
        fv_seterr(err, errlen, "bad zone label (1 to %d of a-z 0-9 _ -)", FV_ZONE_LABEL_MAX);
        return FV_EINVAL;
    }
    rc = fv_zone_row_delete(ks, pseudo, label, err, errlen);
    if (rc) return rc;
    if (sqlite3_changes(fv_keystore_db(ks)) == 0) {
        fv_seterr(err, errlen, "subject %s has no zone %s", subject, label);
        return FV_ENOENT;
    }
    return FV_OK;
}

/* Deletes every zone of the subject with this pseudonym, then checkpoints. */
static int forget_pseudo(sqlite3 *db, const char *pseudo, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "DELETE FROM privacy_zones WHERE subject = ?1", -1, &st, NULL) !=
            SQLITE_OK ||
        sqlite3_bind_text(st, 1, pseudo, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_DONE) {
        fv_seterr(err, errlen, "catalog: privacy_zones: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return FV_EIO;
    }
    sqlite3_finalize(st);
    /* secure_delete zeroed the freed cells; the checkpoint moves that into the database
     * file and empties the SQLite WAL, where the old pages would otherwise linger. */
    return fv_catalog_exec(db, "PRAGMA wal_checkpoint(TRUNCATE);", err, errlen);
}

int fv_zones_forget(struct fv_keystore *ks, const char *subject, char *err, size_t errlen)
{
    char pseudo[FV_PSEUDONYM_LEN + 1];
    int rc = subject_pseudo(ks, subject, pseudo, err, errlen);
    return rc ? rc : forget_pseudo(fv_keystore_db(ks), pseudo, err, errlen);
}

int fv_zones_forget_pseudo(struct fv_keystore *ks, const char *pseudo, char *err, size_t errlen)
{
    if (pseudo == NULL || !fv_pseudonym_valid(pseudo, strlen(pseudo))) {
        fv_seterr(err, errlen, "bad pseudonym (%d lower-case hex digits)", FV_PSEUDONYM_LEN);
        return FV_EINVAL;
    }
    return forget_pseudo(fv_keystore_db(ks), pseudo, err, errlen);
}

/* ---- reads ------------------------------------------------------------------------------- */

static int corrupt(const char *pseudo, const char *label, const char *what, char *err,
                   size_t errlen)
{
    fv_seterr(err, errlen, "catalog: privacy_zones: subject %s zone %.40s: %s", pseudo, label,
              what);
    return FV_ECORRUPT;
}

/* Opens one row into e (label already set). */
static int open_zone(const unsigned char *dek, const char *pseudo, const unsigned char *blob,
                     size_t len, struct fv_zone_entry *e, char *err, size_t errlen)
{
    char aad[ZONE_AAD_MAX];
    zone_aad(pseudo, e->label, aad);
    struct fv_buf plain = {0};
    int rc = fv_open(dek, aad, strlen(aad), blob, len, &plain);
    if (rc == FV_ECORRUPT || rc == FV_OK) {
        if (rc == FV_OK && (plain.len != ZONE_PLAIN_LEN || plain.data[0] != ZONE_FORMAT_V1))
            rc = corrupt(pseudo, e->label, "unknown format", err, errlen);
        else if (rc != FV_OK)
            rc = corrupt(pseudo, e->label, "does not open with the subject's key", err, errlen);
    } else {
        fv_seterr(err, errlen, "opening a zone failed: %s", fv_strerror(rc));
    }
    if (rc == FV_OK) {
        e->zone.lat = bitsd(fv_get_u64(plain.data + 1));
        e->zone.lon = bitsd(fv_get_u64(plain.data + 9));
        e->zone.radius_m = bitsd(fv_get_u64(plain.data + 17));
        if (!zone_valid(e->zone.lat, e->zone.lon, e->zone.radius_m))
            rc = corrupt(pseudo, e->label, "centre or radius out of range", err, errlen);
    }
    if (plain.data) OPENSSL_cleanse(plain.data, plain.cap);
    fv_buf_free(&plain);
    return rc;
}

int fv_zones_list(struct fv_keystore *ks, const char *subject,
                  int (*fn)(void *arg, const struct fv_zone_entry *e), void *arg, char *err,
                  size_t errlen)
{
    char pseudo[FV_PSEUDONYM_LEN + 1], kp[FV_PSEUDONYM_LEN + 1];
    int rc = subject_pseudo(ks, subject, pseudo, err, errlen);
    if (rc) return rc;
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT label, zone, created_ms FROM privacy_zones WHERE subject = ?1"
                           " ORDER BY label",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, pseudo, -1, SQLITE_STATIC) != SQLITE_OK) {
        fv_seterr(err, errlen, "catalog: privacy_zones: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return FV_EIO;
    }
    const unsigned char *dek = NULL;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *label = sqlite3_column_text(st, 0);
        int nl = sqlite3_column_bytes(st, 0);
        struct fv_zone_entry e;
        memset(&e, 0, sizeof e);
        if (label == NULL || nl <= 0 || nl > FV_ZONE_LABEL_MAX) {
            rc = corrupt(pseudo, "?", "bad label", err, errlen);
            break;
        }
        memcpy(e.label, label, (size_t)nl);
        if (!fv_zone_label_valid(e.label)) {
            rc = corrupt(pseudo, "?", "bad label", err, errlen);
            break;
        }
        if (dek == NULL) {
            /* Only once a row exists: a subject without zones needs no key. */
            int krc = fv_keystore_dek(ks, subject, 0, &dek, kp);
            if (krc == FV_ESTATE) {
                fv_seterr(err, errlen, "subject %s was erased: its zones no longer open", pseudo);
                rc = FV_ESTATE;
                break;
            }
            if (krc == FV_ENOENT) {
                rc = corrupt(pseudo, e.label, "sealed with a key that never existed", err, errlen);
                break;
            }
            if (krc) {
                fv_seterr(err, errlen, "reading the subject's key failed: %s", fv_strerror(krc));
                rc = krc;
                break;
            }
        }
        const unsigned char *blob = sqlite3_column_blob(st, 1);
        int len = sqlite3_column_bytes(st, 1);
        if (blob == NULL || len < FV_SEAL_OVERHEAD) {
            rc = corrupt(pseudo, e.label, "the sealed zone is too short", err, errlen);
            break;
        }
        rc = open_zone(dek, pseudo, blob, (size_t)len, &e, err, errlen);
        if (rc == FV_OK) {
            e.created_ms = sqlite3_column_int64(st, 2);
            rc = fn(arg, &e);
        }
        OPENSSL_cleanse(&e, sizeof e);
        if (rc) break;
    }
    if (rc == FV_OK && step != SQLITE_DONE) {
        fv_seterr(err, errlen, "catalog: privacy_zones: %s", sqlite3_errmsg(db));
        rc = FV_EIO;
    }
    sqlite3_finalize(st);
    return rc;
}

struct collect {
    struct fv_zone *out;
    size_t cap, n;
};

static int collect_zone(void *arg, const struct fv_zone_entry *e)
{
    struct collect *c = arg;
    if (c->n < c->cap) c->out[c->n] = e->zone;
    c->n++;
    return 0;
}

int fv_zones_load(struct fv_keystore *ks, const char *subject, struct fv_zone *out, size_t cap,
                  size_t *n)
{
    *n = 0;
    struct collect c = {.out = out, .cap = cap};
    int rc = fv_zones_list(ks, subject, collect_zone, &c, NULL, 0);
    if (rc) {
        /* Z5: nothing half-loaded reaches the caller. */
        if (out && cap) OPENSSL_cleanse(out, cap * sizeof *out);
        return rc;
    }
    *n = c.n;
    return c.n > cap ? FV_ELIMIT : FV_OK;
}
