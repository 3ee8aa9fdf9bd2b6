/*
 * zones.h - per-subject privacy zones (home, work, ...): circles around places whose
 * points are dropped from every location served for a purpose other than service
 * (location.h rule L2; GDPR issue 4, shared/ref/privacy-gdpr.md "Location privacy").
 * Kept in the SQLite catalog beside the keys and the subject registry (subjects.h).
 *
 * Table (fv_zones_init creates it if missing):
 *   privacy_zones(subject TEXT NOT NULL,   -- pseudonym of the subject name
 *                 label TEXT NOT NULL,     -- "home", "work", ... (Z1)
 *                 zone BLOB NOT NULL,      -- the circle, sealed (Z3)
 *                 created_ms INTEGER,      -- when it was last set
 *                 PRIMARY KEY(subject, label))
 *
 * Rules:
 *   Z1 a label is 1 to FV_ZONE_LABEL_MAX of [a-z0-9_-]; a subject has at most FV_ZONES_MAX
 *      zones; setting an existing label replaces its zone.
 *   Z2 a zone's centre is a valid point (fv_geo_valid) and its radius is
 *      FV_ZONE_RADIUS_MIN_M to FV_ZONE_RADIUS_MAX_M metres.
 *   Z3 a home location is personal data: the zone is sealed (AES-256-GCM) with the data
 *      key of its subject, associated data "fv-zone:" || subject pseudonym || label, so a
 *      row moved to another subject or label does not open, and destroying the subject's
 *      key (erasure) erases its zones too. Sealed plaintext (25 bytes): u8 format version
 *      (1), then lat, lon, radius_m as IEEE-754 binary64 bit patterns, little-endian u64
 *      each. No coordinate is stored in plaintext anywhere.
 *   Z4 zones belong to a subject (an owner period, subjects.h), not to a device: a new
 *      owner starts with none, and the previous owner's home is never applied to (or
 *      revealed by) the new owner's data.
 *   Z5 fail closed: when a subject's zones cannot be read (corrupt row, key missing or
 *      destroyed, I/O error), fv_zones_load returns an error and the caller serves no
 *      location of that subject for a purpose that needs zones applied.
 *
 * Threading: the keystore's (one thread at a time; in the server, the event loop). Other
 * processes (the CLI) may write the same catalog: a cached zone list may go stale.
 */
#ifndef FV_PRIVACY_ZONES_H
#define FV_PRIVACY_ZONES_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/keys.h"
#include "privacy/location.h"
#include "util/buf.h"

#define FV_ZONE_LABEL_MAX    32
#define FV_ZONES_MAX         16 /* per subject: home, work, a few more */
#define FV_ZONE_RADIUS_MIN_M 50.0
#define FV_ZONE_RADIUS_MAX_M 50000.0

/* One zone as listed (fv_zones_list). */
struct fv_zone_entry {
    char label[FV_ZONE_LABEL_MAX + 1];
    struct fv_zone zone;
    int64_t created_ms;
};

/* Creates the table if missing; call once after fv_keystore_open. FV_OK or FV_EIO
 * (message in err). The other functions answer FV_EIO until it has run. */
int fv_zones_init(struct fv_keystore *ks, char *err, size_t errlen);

/* 1 if label follows Z1 (1 to FV_ZONE_LABEL_MAX of [a-z0-9_-]), else 0. */
int fv_zone_label_valid(const char *label);

/* Sets subject's zone called label (replacing one of that label) to the circle of
 * radius_m metres around (lat, lon), sealed with the subject's data key (created here,
 * committed, if the subject has none yet: a device's first owner before any record).
 * subject is a subject name (subjects.h: "DEVICE" or "DEVICE#n") of a recorded owner
 * period, or a device's epoch 1. FV_EINVAL (bad subject name, label, centre or radius),
 * FV_ENOENT (no such owner period), FV_ESTATE (the subject was erased or forgotten),
 * FV_ELIMIT (FV_ZONES_MAX zones already, under other labels), FV_EIO, FV_ECORRUPT (the
 * registry's rows); err says why. */
int fv_zone_set(struct fv_keystore *ks, const char *subject, const char *label, double lat,
                double lon, double radius_m, char *err, size_t errlen);

/* Removes subject's zone called label. The sealed row's cells are zeroed (the catalog runs
 * with secure_delete); the SQLite WAL keeps the old page, ciphertext only, until the next
 * checkpoint. FV_EINVAL (bad subject name or label), FV_ENOENT (no such zone), FV_EIO. */
int fv_zone_remove(struct fv_keystore *ks, const char *subject, const char *label, char *err,
                   size_t errlen);

/* Calls fn for each of subject's zones, in label order, unsealed; e is valid during the
 * call only and wiped after it. Stops at and returns fn's first non-zero result. fn must
 * not use the keystore. FV_EINVAL (bad subject name), FV_ESTATE (the subject's data key is
 * destroyed while zones remain), FV_ECORRUPT (a row that does not open or is out of
 * range), FV_EIO; err says why. */
int fv_zones_list(struct fv_keystore *ks, const char *subject,
                  int (*fn)(void *arg, const struct fv_zone_entry *e), void *arg, char *err,
                  size_t errlen);

/* subject's zones, unsealed, in label order, into out[0..cap), ready for fv_loc_zones /
 * struct fv_loc_params. *n is how many there are, also when more than cap (then FV_ELIMIT,
 * out holding the first cap; FV_ZONES_MAX is always enough). On any other error *n is 0
 * and, by Z5, the caller serves none of the subject's locations: FV_EINVAL, FV_ESTATE,
 * FV_ECORRUPT, FV_EIO as fv_zones_list. The coordinates in out are personal data: wipe
 * them (OPENSSL_cleanse) when done. */
int fv_zones_load(struct fv_keystore *ks, const char *subject, struct fv_zone *out, size_t cap,
                  size_t *n);

/* Erasure (Art. 17): deletes every zone of subject (cells zeroed: secure_delete, then the
 * SQLite WAL is checkpointed, as fv_subjects_forget does). Idempotent. Call beside
 * fv_subjects_forget; destroying the subject's data key makes any copy of the rows
 * (backups) unreadable as well. FV_EINVAL (bad subject name), FV_EIO; err says why. */
int fv_zones_forget(struct fv_keystore *ks, const char *subject, char *err, size_t errlen);
/* The same for the subject with this pseudonym (replaying an erasure list, where only the
 * pseudonym is known). FV_EINVAL (not FV_PSEUDONYM_LEN lower-case hex digits), FV_EIO. */
int fv_zones_forget_pseudo(struct fv_keystore *ks, const char *pseudo, char *err, size_t errlen);

/* ---- Rows as stored (zones_rows.c): a cluster's sync copies them between catalogs
 * (cluster/jszones.h) without opening them - a row is sealed with its subject's data key and
 * bound to its pseudonym and label (Z3), so it opens only where it was meant to. */
#define FV_ZONE_ROW_MAX 256 /* bytes of a sealed zone (25 + nonce and tag) and then some */
struct fv_zone_row {
    char pseudo[FV_PSEUDONYM_LEN + 1]; /* the subject's pseudonym */
    char label[FV_ZONE_LABEL_MAX + 1];
    const unsigned char *blob; /* the sealed zone (Z3) */
    size_t len;
    int64_t created_ms; /* when it was last set */
};
/* Calls fn for every zone row of the catalog (rows of another shape are skipped), in subject
 * and label order; r is valid during the call only. Stops at fn's first non-zero result and
 * returns it; FV_EIO (err says why). */
int fv_zone_rows(struct fv_keystore *ks, int (*fn)(void *arg, const struct fv_zone_row *r),
                 void *arg, char *err, size_t errlen);
/* The row of pseudo's zone label: its sealed zone into blob and *created_ms. FV_OK, FV_ENOENT
 * (none), FV_ECORRUPT (an empty or oversized cell), FV_ENOMEM, FV_EIO. */
int fv_zone_row_get(struct fv_keystore *ks, const char *pseudo, const char *label,
                    struct fv_buf *blob, int64_t *created_ms, char *err, size_t errlen);
/* Inserts or replaces the row r (not opened: Z5 applies when it is read). FV_OK, FV_EINVAL (a
 * bad pseudonym, label or size), FV_EIO. */
int fv_zone_row_put(struct fv_keystore *ks, const struct fv_zone_row *r, char *err, size_t errlen);
/* Deletes the row of pseudo's zone label, if any (cells zeroed: secure_delete). FV_OK or
 * FV_EIO. */
int fv_zone_row_delete(struct fv_keystore *ks, const char *pseudo, const char *label, char *err,
                       size_t errlen);

#endif
