/*
 * policy.h - purpose-bound access: who may do what with personal data, for which purpose,
 * under which obligations; per-principal daily quotas; purpose-bound pseudonyms.
 *
 * The policy is a readable JSON file (docs/policy.example.json; the same text is built in,
 * fv_policy_default_json) of roles x purposes x data classes:
 *
 *   {"version": 1,
 *    "purposes": ["service", ...],          names of the purposes a read may name
 *    "classes":  ["default", ...],          names of the store's data classes
 *    "roles": {"support": {
 *        "actions": ["read"],               of read, export, erase, audit, admin
 *        "purposes": {"service": ["default", "location", "events"]},
 *                                           purposes allowed -> classes allowed for each
 *        "requires_ticket": true,           every personal-data action names a ticket
 *        "max_subjects_per_request": 1,     integer >= 1, or null (no limit)
 *        "bulk_subjects_threshold": null,   more subjects than this need a second
 *                                           principal's approval; integer >= 0, or null
 *        "aggregate_only": false,           reads must be aggregated
 *        "pseudonymise": false,             device / owner ids replaced by pseudonyms
 *        "consented_only": false,           only subjects who consented to the purpose
 *        "location_privacy": false,         privacy zones / trip trimming applied
 *        "energy_sites_only": false,        only energy sites, never vehicles
 *        "approves_bulk": false,            may be the second principal of a bulk read
 *        "quota": {"subjects_per_day": 20, "rows_per_day": 500000,
 *                  "bytes_per_day": 536870912},    integers >= 0, or null (no limit)
 *        "role_quota": {...},               optional, the same keys: a daily budget of all
 *                                           the role's principals together (so a new
 *                                           principal does not bring a fresh quota);
 *                                           absent: none
 *        "aggregate_min_step_s": 3600,      optional, aggregate_only roles (P8): the
 *        "aggregate_min_records": 10}}}     smallest bucket, the fewest records per value
 *
 * Every role key is required (an explicit policy is the readable one) and unknown keys are
 * errors (a misspelt "pseudonymize" must not silently read as false); duplicate keys are
 * refused. Any object may carry a "comment" string. Errors name the file and the JSON path
 * of the bad entry ("policy.json: roles.support.purposes.service[1]: unknown class
 * \"locaton\" (classes: default, location, events)").
 *
 * Decision rules (fv_policy_decide), checked in this order, the first failure is the
 * reason given:
 *   P1 the role exists and the action is among its actions;
 *   P2 read: a purpose is named, known, and allowed to the role;
 *   P3 read: at least one class is asked for, and every class asked for is allowed to the
 *      role for that purpose;
 *   P4 read, export, erase, audit: a role that requires a ticket names one (not blank);
 *      a ticket given, required or not, is printable and at most FV_POLICY_TICKET_MAX
 *      bytes (it goes into the access log);
 *   P5 read, export, erase: at least one subject, at most max_subjects_per_request;
 *   P6 read: an aggregate_only role reads aggregated only; an energy_sites_only role
 *      reads energy sites only (the caller vouches with req->energy_sites_only);
 *   P7 read, export, erase: above bulk_subjects_threshold, another principal (not the
 *      requester) whose role approves_bulk has approved. For bulk exports the threshold
 *      counts per principal per UTC day: one needs approval when its subjects plus those of
 *      the day's earlier unapproved exports (req->bulk_today) pass it, so many exports of
 *      just under the threshold are not each approved automatically.
 *   P8 (applied by the reader, which knows the buckets: fv_policy_aggregate_limits) an
 *      aggregate_only role's buckets are at least aggregate_min_step_s wide (default 1 h),
 *      whole (aligned), and a value aggregates at least aggregate_min_records records
 *      (default 10; fewer: not served); first, last, min and max are refused, since each
 *      is one record of one subject, not an aggregate.
 * Purposes given with actions other than read are ignored: export / erasure / audit are
 * subject-rights and accountability duties with their own legal basis, not data purposes.
 * An allowed read carries obligations (FV_OBLIGE_*) that the caller must apply to what it
 * serves; the policy cannot check them itself.
 *
 * A loaded policy is immutable: any number of threads may call fv_policy_decide and the
 * accessors at once. Replacing a policy is the caller's business (load the new one, swap).
 */
#ifndef FV_PRIVACY_POLICY_H
#define FV_PRIVACY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FV_POLICY_VERSION      1
#define FV_POLICY_NAME_MAX     31 /* role, purpose and class names (a store class name) */
#define FV_POLICY_MAX_PURPOSES 16
#define FV_POLICY_MAX_CLASSES  16 /* = FV_STORE_MAX_CLASSES; classes are a 32-bit mask */
#define FV_POLICY_MAX_ROLES    32
#define FV_POLICY_TICKET_MAX   128
#define FV_POLICY_REASON_MAX   256
#define FV_POLICY_FILE_MAX     (1u << 20)
#define FV_UNLIMITED           UINT64_MAX /* a limit given as null */

enum fv_action {
    FV_ACTION_READ,   /* read personal data for a purpose */
    FV_ACTION_EXPORT, /* a data subject's export (Art. 15 / 20) */
    FV_ACTION_ERASE,  /* a data subject's erasure (Art. 17) */
    FV_ACTION_AUDIT,  /* read the access log */
    FV_ACTION_ADMIN,  /* principals, configuration, keys: no personal data */
    FV_ACTION_COUNT
};

/* "read", "export", ... (static). */
const char *fv_action_name(enum fv_action a);
/* The action called name; FV_EINVAL if none. */
int fv_action_parse(const char *name, enum fv_action *out);

/* Obligations of an allowed read, for the caller to apply. */
#define FV_OBLIGE_PSEUDONYMISE      0x01u /* ids -> fv_pseudonym_for_purpose */
#define FV_OBLIGE_AGGREGATE_ONLY    0x02u /* serve aggregates only */
#define FV_OBLIGE_LOCATION_PRIVACY  0x04u /* privacy zones and trip trimming (location.h) */
#define FV_OBLIGE_CONSENTED_ONLY    0x08u /* only subjects who consented to the purpose */
#define FV_OBLIGE_ENERGY_SITES_ONLY 0x10u /* only energy sites */

/* Per-day limits; FV_UNLIMITED where the policy says null. */
struct fv_quota_limits {
    uint64_t subjects_per_day;
    uint64_t rows_per_day;
    uint64_t bytes_per_day;
};

struct fv_policy;

/* Loads the policy file at path, or the built-in default when path is NULL. On success
 * *out is a new policy (free with fv_policy_free); on error *out is NULL, err says where
 * and why: FV_EINVAL (bad content), FV_ENOENT / FV_EIO (file), FV_ENOMEM. */
int fv_policy_load(const char *path, struct fv_policy **out, char *err, size_t errlen);
/* The same from text (len bytes); source names it in error messages. */
int fv_policy_parse(const char *text, size_t len, const char *source, struct fv_policy **out,
                    char *err, size_t errlen);
void fv_policy_free(struct fv_policy *p);

/* The built-in default policy: the text of docs/policy.example.json (static). */
const char *fv_policy_default_json(void);

/* Index of the role / purpose / class called name, or -1. A class's index is its bit in
 * a request's class mask (1u << index). */
int fv_policy_role_id(const struct fv_policy *p, const char *name);
int fv_policy_purpose_id(const struct fv_policy *p, const char *name);
int fv_policy_class_id(const struct fv_policy *p, const char *name);
size_t fv_policy_nroles(const struct fv_policy *p);
size_t fv_policy_npurposes(const struct fv_policy *p);
size_t fv_policy_nclasses(const struct fv_policy *p);
/* Names by index (valid while p is); NULL when out of range. */
const char *fv_policy_role_name(const struct fv_policy *p, size_t i);
const char *fv_policy_purpose_name(const struct fv_policy *p, size_t i);
const char *fv_policy_class_name(const struct fv_policy *p, size_t i);
/* The class mask a role may read for a purpose (0 if none, or role / purpose unknown). */
uint32_t fv_policy_classes(const struct fv_policy *p, const char *role, const char *purpose);
/* P8: 1 if role is aggregate_only, with its smallest step (ms) and fewest records per
 * served value; 0 otherwise (or unknown role; outputs untouched). */
#define FV_POLICY_AGG_MIN_STEP_MS 3600000u
#define FV_POLICY_AGG_MIN_RECORDS 10u
int fv_policy_aggregate_limits(const struct fv_policy *p, const char *role, uint64_t *min_step_ms,
                               uint64_t *min_records);
/* The obligations (FV_OBLIGE_*) an allowed read of role carries; 0 for an unknown role. What
 * a caller needs before the decision, e.g. how the role names devices (guard.h G11). */
unsigned fv_policy_role_obligations(const struct fv_policy *p, const char *role);
/* 1 if role reaches personal data or vouches for others: any action but admin, or
 * approves_bulk (and for an unknown role); 0 for an admin-only role. Creating a principal
 * of such a role needs a second principal's approval (principals.h R2). */
int fv_policy_role_reaches_data(const struct fv_policy *p, const char *role);
/* 1 if role may approve (approves_bulk): bulk reads, and new principals (principals.h R2). */
int fv_policy_role_approves(const struct fv_policy *p, const char *role);
/* The role's daily quota (per principal); FV_ENOENT for an unknown role. */
int fv_policy_quota(const struct fv_policy *p, const char *role, struct fv_quota_limits *out);
/* The role's daily budget over all its principals (FV_UNLIMITED each when none is set);
 * FV_ENOENT for an unknown role. */
int fv_policy_role_quota(const struct fv_policy *p, const char *role, struct fv_quota_limits *out);

/* One request to act on personal data. Strings may be NULL (= empty); the struct is the
 * caller's and is only read. Zero-initialise it: every zero field is the cautious one. */
struct fv_access_request {
    const char *principal;     /* who asks (authenticated by the caller) */
    const char *role;          /* that principal's role */
    enum fv_action action;     /* FV_ACTION_READ is 0 */
    const char *purpose;       /* read: required */
    const char *ticket;        /* ticket number or justification */
    uint32_t classes;          /* read: bit i = class i of the policy */
    uint64_t subjects;         /* how many subjects the request touches */
    bool aggregated;           /* the answer is an aggregate, not rows per subject */
    bool energy_sites_only;    /* the caller restricts the request to energy sites */
    const char *approved_by;   /* bulk: the approving principal (authenticated by the caller) */
    const char *approver_role; /* and its role */
    uint64_t bulk_today;       /* P7: subjects of the principal's bulk exports today without
                                  approval; the caller counts them (fv_quota_add_bulk), and
                                  passes 0 for other requests */
};

struct fv_decision {
    bool allow;
    bool bulk;                         /* allowed above the bulk threshold, with approval */
    unsigned obligations;              /* FV_OBLIGE_*, for an allowed read */
    uint32_t classes;                  /* read: the classes the role may read for the purpose */
    struct fv_quota_limits quota;      /* the role's quota (zeros when the role is unknown) */
    struct fv_quota_limits role_quota; /* the budget of all the role's principals together
                                          (FV_UNLIMITED each where the policy sets none) */
    char reason[FV_POLICY_REASON_MAX]; /* why, for the requester and the access log */
};

/* Decides req under p (rules P1-P7 above) into *out; always fills out->reason. Pure:
 * touches nothing but *out. */
void fv_policy_decide(const struct fv_policy *p, const struct fv_access_request *req,
                      struct fv_decision *out);

/* ---- quotas ------------------------------------------------------------------------- */
/*
 * Daily counters of subjects, rows and bytes served, per key (a principal name, or
 * "role:NAME" for a role's budget), in memory; a UTC day
 * (floor(ms / 86400000)) starts from zero. Before serving, fv_quota_check says whether the
 * request would take the principal over a limit (pass estimates, or 0 to refuse only once a
 * limit is already reached; a streaming answer may check again before each chunk); after
 * serving, fv_quota_add counts what was actually served. Subjects are counted per request
 * (a subject read twice counts twice) unless the caller passes only the ones new today.
 * A fourth counter, bulk, holds the subjects of unapproved bulk exports today (P7).
 * Persistence is left to the caller (privacy/quota_store.h): fv_quota_foreach to save,
 * fv_quota_set to restore.
 * principal is a non-NULL name (the key of its counters). Not thread-safe: one owner at a
 * time.
 */
struct fv_quota_usage {
    int64_t day; /* UTC days since 1970-01-01 */
    uint64_t subjects, rows, bytes;
    uint64_t bulk; /* P7: subjects of unapproved bulk exports */
};

struct fv_quota;

/* A new, empty table; FV_ENOMEM. */
int fv_quota_new(struct fv_quota **out);
void fv_quota_free(struct fv_quota *q);
/* FV_OK if principal may be served subjects/rows/bytes more at now_ms under lim;
 * FV_ELIMIT if that would exceed a limit, with the reason in reason (may be NULL). */
int fv_quota_check(const struct fv_quota *q, const char *principal,
                   const struct fv_quota_limits *lim, uint64_t now_ms, uint64_t subjects,
                   uint64_t rows, uint64_t bytes, char *reason, size_t reasonlen);
/* fv_quota_check on a usage the caller summed (a cluster: this node's counts plus the other
 * nodes', fv_quota_usage_add); name is the one the reason names. */
int fv_quota_check_usage(const char *name, const struct fv_quota_usage *u,
                         const struct fv_quota_limits *lim, uint64_t subjects, uint64_t rows,
                         uint64_t bytes, char *reason, size_t reasonlen);
/* into += u, counter by counter, saturating at UINT64_MAX (into->day is kept). */
void fv_quota_usage_add(struct fv_quota_usage *into, const struct fv_quota_usage *u);
/* Counts what was served (saturating); FV_OK or FV_ENOMEM (nothing counted). */
int fv_quota_add(struct fv_quota *q, const char *principal, uint64_t now_ms, uint64_t subjects,
                 uint64_t rows, uint64_t bytes);
/* Counts subjects of an unapproved bulk export (P7); FV_OK or FV_ENOMEM. */
int fv_quota_add_bulk(struct fv_quota *q, const char *principal, uint64_t now_ms,
                      uint64_t subjects);
/* The principal's usage on the day of now_ms (zeros if none). */
void fv_quota_get(const struct fv_quota *q, const char *principal, uint64_t now_ms,
                  struct fv_quota_usage *out);
/* Restores a saved usage (replacing any); FV_OK or FV_ENOMEM. */
int fv_quota_set(struct fv_quota *q, const char *principal, const struct fv_quota_usage *u);
/* Calls fn for every principal's usage (any order); stops at and returns fn's first
 * non-zero result. fn must not change q. */
int fv_quota_foreach(const struct fv_quota *q,
                     int (*fn)(void *arg, const char *principal, const struct fv_quota_usage *u),
                     void *arg);

/* ---- pseudonyms --------------------------------------------------------------------- */

#define FV_PURPOSE_PSEUDONYM_LEN 32 /* hex digits */

/* The pseudonym of id (a device or owner id) within purpose: the first 16 bytes of
 * HMAC-SHA256(secret, purpose || 0x00 || id), in lower-case hex. Stable within a purpose,
 * so datasets of one purpose join; unrelated across purposes, so they do not. The 0x00
 * keeps ("ab", "c") and ("a", "bc") apart (names hold no NUL). The secret is a 256-bit key
 * from the key store. FV_EINVAL (empty purpose or id), FV_EIO (OpenSSL). Thread-safe. */
int fv_pseudonym_for_purpose(const unsigned char secret[32], const char *purpose, const char *id,
                             char out[FV_PURPOSE_PSEUDONYM_LEN + 1]);

#endif
