/*
 * subjects.h - the subject registry: who owns each device when, and what each owner has
 * consented to. A change of owner starts a new data subject, so the new owner never sees
 * the previous owner's data; consent is given and withdrawn per purpose, time-stamped.
 * Kept in the SQLite catalog beside the keys (crypto/keys.h).
 *
 * Subjects. The store and the WAL key everything by a subject name whose data key lives in
 * the keystore. A device's first owner period (epoch 1) is named by the device id itself,
 * so data stored before any owner was recorded stays with the first subject; later periods
 * are "DEVICE#2", "DEVICE#3", ... (device ids are [A-Za-z0-9_-], so '#' cannot clash).
 *
 * Tables (fv_subjects_init creates them if missing):
 *   subject_periods(device TEXT NOT NULL,   -- pseudonym of the device id
 *                   epoch INTEGER NOT NULL,  -- 1, 2, ...
 *                   subject TEXT NOT NULL,   -- pseudonym of the subject name
 *                   owner BLOB,              -- owner id sealed with the subject's data key
 *                   since_ms INTEGER NOT NULL,  -- INT64_MIN for epoch 1
 *                   until_ms INTEGER,        -- NULL: the current period
 *                   forgotten_ms INTEGER,    -- set by fv_subjects_forget
 *                   PRIMARY KEY(device, epoch))
 *   consents(subject TEXT NOT NULL,          -- pseudonym of the subject name
 *            purpose TEXT NOT NULL, granted INTEGER NOT NULL,  -- 1 given, 0 withdrawn
 *            at_ms INTEGER NOT NULL, by TEXT,  -- a principal name, or "owner"
 *            seq INTEGER PRIMARY KEY AUTOINCREMENT)
 *
 * Rules:
 *   S1 a device's periods are epochs 1..n, contiguous and half-open [since, until): epoch 1
 *      starts at INT64_MIN, epoch k+1 starts where k ends, only epoch n is open. A device
 *      with no row has one implicit period, epoch 1, [INT64_MIN, INT64_MAX), owner unknown.
 *   S2 every epoch is a new subject with its own data key, created when the period opens
 *      and never re-created (rule K1); a subject's records are sealed with its key, so the
 *      new owner's subject cannot open the previous owner's records.
 *   S3 no device id or owner id in plaintext (rule K2): rows name devices and subjects by
 *      keyed pseudonym; an owner id is sealed (AES-256-GCM) with its subject's data key,
 *      associated data "fv-owner:" || subject pseudonym, so shredding the subject's key
 *      erases its owner id too.
 *   S4 consent history is append-only and in time order per subject and purpose: a change
 *      dated before the last recorded change of that purpose is refused (consent is never
 *      backdated over a recorded change). Rows are deleted only by fv_subjects_forget.
 *   S5 consent holds from a grant at g to the next withdrawal at w: [g, w-1], inclusive.
 *      Nothing recorded means no consent (opt-in).
 *   S7 a grant is never dated before the moment it is recorded (fv_consent_check_time, which
 *      every writer - the API, the CLI - calls with its clock): consent cannot be backdated
 *      over a time in which it had not been given, even where nothing was recorded yet.
 *   S8 every consent change is audited by its writer with purpose, change, its time and the
 *      time it was recorded (fv_consent_audit_extra), before it is applied.
 *   S6 purposes necessary for the contract (GDPR Art. 6(1)(b); by default "service") are
 *      always granted, for every subject and all time, and cannot be withdrawn; nothing is
 *      recorded for them.
 *
 * What a reader must do with this (the registry cannot enforce it itself): a record of
 * device D at time t belongs to fv_subject_for_time(D, t) and is served to that subject's
 * owner only; a subject's records are served only within its period (after a backdated
 * owner change, records stored under the old subject after `at` belong to no-one and are
 * served to neither). For a purpose P, a record at t is served only if consent to P held
 * at t (data collected without consent is never served for P) AND holds now (withdrawal
 * stops the use of what was collected before it): fv_consent_servable gives exactly those
 * ranges.
 *
 * Times are epoch milliseconds, int64_t. Threading: the keystore's (one thread at a time;
 * in the server, the event loop). Other processes (the CLI) may write the same catalog, and
 * in a cluster so does the node's subjects sync (cluster/jssubjects.h, through
 * subjects_rows.h, on its own connection): whoever caches a device's current subject must
 * expect it to change.
 */
#ifndef FV_PRIVACY_SUBJECTS_H
#define FV_PRIVACY_SUBJECTS_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/keys.h"
#include "privacy/policy.h"

#define FV_SUBJECT_NAME_MAX  FV_NAME_MAX /* "DEVICE" or "DEVICE#n": a keystore name */
#define FV_SUBJECT_OWNER_MAX 128         /* bytes of an owner id */
#define FV_SUBJECT_BY_MAX    64          /* a principal name (principals.h rules) or "owner" */
#define FV_SUBJECT_FOREVER   INT64_MAX   /* until_ms of the current period */
#define FV_SUBJECT_ORIGIN    INT64_MIN   /* since_ms of epoch 1 */

/* The built-in purposes and the one necessary for the contract. */
#define FV_SUBJECT_PURPOSES                                                                        \
    "service", "location_history", "clips", "model_training", "energy_programs", "home_automation"
#define FV_SUBJECT_CONTRACT "service"

/* Which purposes consent may name, and which are necessary for the contract (S6). A NULL
 * struct pointer means all defaults. */
struct fv_purposes {
    const struct fv_policy *policy; /* the policy's purposes; or, when NULL: */
    const char *const *names;       /* these, NULL-terminated; both NULL: FV_SUBJECT_PURPOSES */
    const char *const *contract;    /* NULL-terminated; NULL: { FV_SUBJECT_CONTRACT } */
};

/* One owner period of a device. */
struct fv_subject_period {
    char name[FV_SUBJECT_NAME_MAX + 1];   /* the subject name (keystore name) */
    int epoch;                            /* 1, 2, ... */
    char pseudonym[FV_PSEUDONYM_LEN + 1]; /* the subject's pseudonym */
    int64_t since_ms;                     /* FV_SUBJECT_ORIGIN for epoch 1 */
    int64_t until_ms;                     /* exclusive; FV_SUBJECT_FOREVER while current */
    int current;                          /* the last (open) period */
    char owner[FV_SUBJECT_OWNER_MAX + 1]; /* "" when none recorded or erased */
    int erased;           /* the owner was forgotten or the subject's data key destroyed */
    int64_t forgotten_ms; /* when fv_subjects_forget ran; 0 if never */
};

/* One recorded consent change. */
struct fv_consent_change {
    char purpose[FV_POLICY_NAME_MAX + 1];
    int granted; /* 1 given, 0 withdrawn */
    int64_t at_ms;
    char by[FV_SUBJECT_BY_MAX + 1]; /* "" if none recorded */
    int64_t seq;                    /* order of recording */
};

/* An inclusive range of times [from, to]. */
struct fv_interval {
    int64_t from, to;
};

/* Creates the tables and index if missing; call once after fv_keystore_open. FV_OK or
 * FV_EIO (message in err). The other functions answer FV_EIO until it has run. */
int fv_subjects_init(struct fv_keystore *ks, char *err, size_t errlen);

/* The subject name of device's epoch into out: the device id for epoch 1, "DEVICE#n"
 * otherwise. FV_EINVAL (not a device id, epoch < 1), FV_ELIMIT (longer than
 * FV_SUBJECT_NAME_MAX: "#n" must fit beside the id, so an id of 63-64 characters has no
 * room for a second owner). */
int fv_subject_name(const char *device, int epoch, char out[FV_SUBJECT_NAME_MAX + 1]);
/* The device and epoch a subject name stands for. FV_EINVAL unless name is a device id,
 * optionally followed by '#' and an epoch >= 2 without leading zeros. */
int fv_subject_parse(const char *name, char device[FV_SUBJECT_NAME_MAX + 1], int *epoch);

/* The device's current subject name and epoch (epoch may be NULL): the device id and 1
 * while no period is recorded. FV_EINVAL (not a device id), FV_EIO, FV_ECORRUPT (rows that
 * break S1). */
int fv_subject_current(struct fv_keystore *ks, const char *device,
                       char name_out[FV_SUBJECT_NAME_MAX + 1], int *epoch);

/* The subject a record of device at time t belongs to (the period with since <= t <
 * until), and its epoch (may be NULL). Errors as fv_subject_current. */
int fv_subject_for_time(struct fv_keystore *ks, const char *device, int64_t t,
                        char name_out[FV_SUBJECT_NAME_MAX + 1], int *epoch);

/* The period of device that holds t (since <= t < until; INT64_MAX: the current one): its
 * subject name, epoch (may be NULL) and bounds (*until FV_SUBJECT_FOREVER while open). A
 * writer of records caches it per device, so that a record is assigned to the owner period
 * of its creation time without a lookup per record. Errors as fv_subject_current. */
int fv_subject_period_at(struct fv_keystore *ks, const char *device, int64_t t,
                         char name_out[FV_SUBJECT_NAME_MAX + 1], int *epoch, int64_t *since,
                         int64_t *until);

/* Owner periods opened since *cursor (a position in the catalog; pass -1 first: it is set
 * to now's end and nothing is reported): calls fn with the device pseudonym of each (in
 * order), then moves *cursor past them. Lets a cache of current subjects (the ingest's
 * fleet state) learn of a change of owner made by another connection or process without
 * looking up every device. Stops at and returns fn's first non-zero result. FV_OK, FV_EIO. */
int fv_subjects_opened_since(struct fv_keystore *ks, int64_t *cursor,
                             int (*fn)(void *arg, const char *device_pseudonym), void *arg);

/* A change of owner at at_ms: closes the current period at at_ms and opens epoch + 1 from
 * at_ms, a new subject whose data key is created here (committed before this returns) and
 * which holds owner_id sealed. at_ms must be >= the current period's start and inside
 * (INT64_MIN, INT64_MAX). owner_id: 1 to FV_SUBJECT_OWNER_MAX bytes, no control
 * characters. FV_EINVAL (bad argument, at_ms too early), FV_ELIMIT (the next subject name
 * would be too long), FV_ESTATE (the next subject's key was destroyed), FV_EAGAIN (another
 * writer changed the device meanwhile: retry), FV_EIO, FV_ECORRUPT; err says why. */
int fv_subject_change_owner(struct fv_keystore *ks, const char *device, const char *owner_id,
                            int64_t at_ms, char *err, size_t errlen);

/* Records owner_id as the owner of the device's current period, which has none recorded
 * (e.g. the first owner of a device that streamed before it was registered). No new
 * subject. FV_EEXIST (an owner is recorded, or was forgotten: a new owner is a change of
 * owner), FV_ESTATE (the subject was erased), other errors as fv_subject_change_owner. */
int fv_subject_set_owner(struct fv_keystore *ks, const char *device, const char *owner_id,
                         char *err, size_t errlen);

/* Calls fn for each of the device's periods, oldest first (the implicit one when none is
 * recorded); p is valid during the call only, and holds the owner id in plaintext (wiped
 * after the call). Owner ids are unsealed with each subject's data key; a destroyed key
 * gives owner "" and erased = 1. Stops at and returns fn's first non-zero result.
 * FV_EINVAL, FV_EIO, FV_ECORRUPT (rows that break S1, an owner that does not open); err
 * says why. fn may use the keystore (the rows are read before the first call). */
int fv_subject_periods(struct fv_keystore *ks, const char *device,
                       int (*fn)(void *arg, const struct fv_subject_period *p), void *arg,
                       char *err, size_t errlen);

/* ---- consent ------------------------------------------------------------------------ */

/* Records that subject gave (granted = 1) or withdrew (granted = 0) consent to purpose at
 * at_ms, by whom (a principal name, "owner", or NULL; never an owner id). The subject is a
 * name (fv_subject_parse) of a recorded period, or a device's epoch 1. Giving a contract
 * purpose records nothing and succeeds; withdrawing one is refused (S6). A repeated give
 * or withdraw is recorded (a re-confirmation), changing nothing. FV_EINVAL (unknown purpose
 * - err lists the known ones -, contract purpose withdrawn, bad subject or by, at_ms before
 * the last change of that purpose (S4) or before the subject's period began), FV_ENOENT
 * (no such subject), FV_ESTATE (the subject was erased), FV_EIO; err says why. */
int fv_consent_set(struct fv_keystore *ks, const struct fv_purposes *pp, const char *subject,
                   const char *purpose, int granted, int64_t at_ms, const char *by, char *err,
                   size_t errlen);

/* S7: a grant may not be dated before it is recorded: for granted = 1, at_ms must be in
 * [now_ms, now_ms + FV_CONSENT_SKEW_MS] (a caller's clock slightly ahead); a withdrawal may
 * be dated earlier (it only narrows what is served; S4 still orders it). FV_OK, or
 * FV_EINVAL with err saying why. */
#define FV_CONSENT_SKEW_MS 60000
int fv_consent_check_time(int granted, int64_t at_ms, int64_t now_ms, char *err, size_t errlen);

/* The audit entry's extra object of a consent change (S8), compact JSON into out (NUL
 * terminated): {"change":"give"|"withdraw","at_ms":AT,"recorded_ms":NOW[,"by":BY]}. FV_OK,
 * FV_ELIMIT if it does not fit, FV_ENOMEM. */
int fv_consent_audit_extra(int granted, int64_t at_ms, int64_t now_ms, const char *by, char *out,
                           size_t outlen);

/* Whether subject's consent to purpose held at t, into *granted (0 on any error). FV_OK,
 * FV_EINVAL (unknown purpose or bad subject name), FV_EIO, FV_ECORRUPT. */
int fv_consent_at(struct fv_keystore *ks, const struct fv_purposes *pp, const char *subject,
                  const char *purpose, int64_t t, int *granted);

/* The sub-ranges of [from, to] (inclusive, from <= to) during which subject's consent to
 * purpose held (S5), oldest first, into out[0..cap). A contract purpose gives [from, to].
 * *n is the number of ranges, also when more than cap (then FV_ELIMIT; out holds the first
 * cap). FV_EINVAL (unknown purpose, bad subject, from > to), FV_EIO, FV_ECORRUPT. */
int fv_consent_intervals(struct fv_keystore *ks, const struct fv_purposes *pp, const char *subject,
                         const char *purpose, int64_t from, int64_t to, struct fv_interval *out,
                         size_t cap, size_t *n);

/* What may be served for purpose at now_ms from subject's records in [from, to]: the
 * ranges of fv_consent_intervals if consent holds at now_ms, none (*n = 0) otherwise.
 * Errors as fv_consent_intervals. */
int fv_consent_servable(struct fv_keystore *ks, const struct fv_purposes *pp, const char *subject,
                        const char *purpose, int64_t now_ms, int64_t from, int64_t to,
                        struct fv_interval *out, size_t cap, size_t *n);

/* Calls fn for each recorded consent change of subject, in time order (at_ms, then order
 * of recording); c is valid during the call only. Contract purposes have none (S6). Stops
 * at and returns fn's first non-zero result. FV_EINVAL (bad subject), FV_EIO,
 * FV_ECORRUPT; err says why. fn must not use the keystore. */
int fv_consent_history(struct fv_keystore *ks, const char *subject,
                       int (*fn)(void *arg, const struct fv_consent_change *c), void *arg,
                       char *err, size_t errlen);

/* Erasure (Art. 17) of what the registry holds about subject: deletes its consent rows and
 * its sealed owner id (cells zeroed: secure_delete, then the SQLite WAL is checkpointed);
 * the period row stays, marked forgotten, so the device's history keeps its shape. The
 * caller destroys the subject's data key (fv_keystore_destroy) as the rest of erasure.
 * Idempotent. FV_EINVAL (bad subject name), FV_EIO; err says why. */
int fv_subjects_forget(struct fv_keystore *ks, const char *subject, char *err, size_t errlen);

#endif
