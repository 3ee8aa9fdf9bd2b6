/*
 * principals.h - the people and services that may use the API: a name, a role of the
 * access policy (policy.h), and a bearer token, in the SQLite catalog.
 *
 * Table (created by fv_principals_init; the caller owns the connection):
 *   principals(name TEXT PRIMARY KEY, role TEXT NOT NULL, token_hash BLOB NOT NULL,
 *              created_ms INTEGER, revoked_ms INTEGER, created_by TEXT)
 *   plus a unique index on token_hash.
 *
 * Tokens: 32 bytes from RAND_bytes, shown once as 64 lower-case hex digits (upper case is
 * accepted back). Only SHA-256 of the 32 token bytes is stored. No salt and no slow hash
 * (bcrypt, scrypt, Argon2) is needed, unlike for passwords: those defend low-entropy secrets
 * against guessing, and a salt defends against precomputed tables and against equal
 * passwords having equal hashes. A token has 256 bits of entropy, so recovering it from a
 * stolen hash means searching 2^256 candidates (or breaking SHA-256's preimage resistance)
 * whether each guess costs a nanosecond or a second; tables cannot be precomputed over that
 * space, and two tokens are never equal. A fast, unsalted hash is also what lets a request
 * find its principal by one index lookup.
 *
 * Authentication looks the principal up by the hash of the presented token, then compares
 * the stored hash with CRYPTO_memcmp. Timing of the lookup reveals at most something about
 * the hash of what the attacker sent, which gives no handle on any other token's hash.
 *
 * Rules: names are 1 to 64 of [a-z0-9._-] and not reserved (fv_principal_name_reserved:
 * "admin" and its look-alikes, which would pass for the admin token in the audit log); a role must
 * be one of the policy's roles when a principal is created (a role later removed from the policy
 * authenticates, and the policy then denies everything for it); revocation is permanent and the row
 * stays as a tombstone so access logs keep naming whom they name (a name is never reused; make a
 * new principal to replace a token). A revoked principal's token is refused.
 *
 * Approval (A1, issue 9 item 6): a principal of a role that reaches personal data (any action
 * but admin, or approves_bulk: fv_policy_role_reaches_data) is created pending: its token is
 * shown once but authenticates only once another principal, of a role that approves
 * (approves_bulk: privacy-officer), has approved it (fv_principal_approve); never its
 * creator, never itself. So the admin token alone cannot mint a reader, nor a requester and
 * the approver of its own bulk export. The one exception is the installation's first
 * approver: while no principal of an approving role has ever existed (revoked ones count),
 * one is created active, since someone has to approve the others. Principals of an
 * admin-only role are active at once: they read nothing personal.
 *
 * Changes made outside the server (the CLI) are queued in principal_events(id, at_ms,
 * action, name, role, detail) in the same transaction; the server moves them into its audit
 * log (fv_principal_events_drain), at start and within a second while it runs. In a cluster,
 * the nodes' principals sync (cluster/jsprincipals.h) queues there the changes it applies
 * from the other nodes (fv_principal_row_put), with the node each came from.
 *
 * Threading: whatever the caller's sqlite3 connection allows (one thread at a time).
 */
#ifndef FV_PRIVACY_PRINCIPALS_H
#define FV_PRIVACY_PRINCIPALS_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "privacy/policy.h"

#define FV_PRINCIPAL_NAME_MAX 64
#define FV_TOKEN_BYTES        32
#define FV_TOKEN_HEX_LEN      64

struct fv_principal {
    char name[FV_PRINCIPAL_NAME_MAX + 1];
    char role[FV_POLICY_NAME_MAX + 1];
    char created_by[FV_PRINCIPAL_NAME_MAX + 1]; /* "" if none was recorded */
    int64_t created_ms;
    int64_t revoked_ms;  /* 0 while active */
    int64_t approved_ms; /* 0 while pending (A1) */
    char approved_by[FV_PRINCIPAL_NAME_MAX + 1];
};

/* A principal change made outside the server, waiting to be audited. */
struct fv_principal_event {
    int64_t at_ms;
    char action[32]; /* "principal.create", "principal.revoke" */
    char name[FV_PRINCIPAL_NAME_MAX + 1];
    char role[FV_POLICY_NAME_MAX + 1];
    char detail[128]; /* who made it and how, e.g. "cli, user root, pending approval" */
};

/* Creates the table and index if missing. FV_OK or FV_EIO (message in err). */
int fv_principals_init(sqlite3 *db, char *err, size_t errlen);

/* True if name is 1 to 64 of [a-z0-9._-]. */
int fv_principal_name_valid(const char *name);
/* True if name may not be given to a new principal: it reads (case, the separators . _ -
 * and the look-alikes 0/o 1/l/i 3/e 4/a 5/s 7/t aside) as admin, administrator, fleetvault
 * or unknown, which the audit log uses for the admin token, the server and unauthenticated
 * requests. */
int fv_principal_name_reserved(const char *name);

/* Creates principal name (valid, not reserved) with role (one of policy's roles), recording
 * created_by (a principal name, or NULL), pending or active as A1 says (fv_principal_get
 * tells: approved_ms 0 is pending). Writes the token, 64 hex digits and a NUL, into
 * token_out: it is shown this once and never stored. FV_EINVAL (bad name, role or created_by),
 * FV_EEXIST (the name exists, revoked or not), FV_EIO; token_out is "" on error. */
int fv_principal_create(sqlite3 *db, const struct fv_policy *policy, const char *name,
                        const char *role, const char *created_by,
                        char token_out[FV_TOKEN_HEX_LEN + 1], char *err, size_t errlen);

/* A1: approves the pending principal name, by approver (an authenticated principal of
 * approver_role). FV_OK; FV_ENOENT (no such principal), FV_ESTATE (not pending: active or
 * revoked), FV_EINVAL (the approver is the creator or the principal itself, or its role does
 * not approve), FV_EIO; err says why. */
int fv_principal_approve(sqlite3 *db, const struct fv_policy *policy, const char *name,
                         const char *approver, const char *approver_role, char *err, size_t errlen);

/* Queues a change made outside the server for its audit log (see above). FV_OK, FV_EIO. */
int fv_principal_event_add(sqlite3 *db, const char *action, const char *name, const char *role,
                           const char *detail, char *err, size_t errlen);
/* Calls fn for up to 64 queued events, oldest first, deleting each once fn returned FV_OK;
 * stops at fn's first error and returns it. FV_EIO. */
int fv_principal_events_drain(sqlite3 *db, int (*fn)(void *arg, const struct fv_principal_event *e),
                              void *arg);

/* Revokes name at the current time. FV_ENOENT (no such principal), FV_ESTATE (already
 * revoked), FV_EIO. */
int fv_principal_revoke(sqlite3 *db, const char *name, char *err, size_t errlen);

/* The principal called name, revoked or not. FV_ENOENT, FV_EIO, FV_ECORRUPT (a stored
 * value out of range). */
int fv_principal_get(sqlite3 *db, const char *name, struct fv_principal *out);

/* Calls fn for every principal, revoked ones included, in name order; p is valid during
 * the call only. Stops at and returns fn's first non-zero result. FV_EIO. Never exposes
 * token hashes. fn must not use db. */
int fv_principal_list(sqlite3 *db, int (*fn)(void *arg, const struct fv_principal *p), void *arg,
                      char *err, size_t errlen);

/* Finds the principal whose token is bearer (64 hex digits). FV_OK with *out filled;
 * FV_EINVAL (not a token), FV_ENOENT (no such token), FV_ESTATE (revoked: *out names whom,
 * for the log, but the request must be refused), FV_EAGAIN (pending approval, A1: *out
 * names whom; refuse), FV_EIO, FV_ECORRUPT. An HTTP caller should answer every non-FV_OK
 * alike (401). */
int fv_principal_authenticate(sqlite3 *db, const char *bearer, struct fv_principal *out);
/* The same in two steps, for a caller that keeps what a hash authenticated (the guard's
 * token cache, guard.h): the SHA-256 of bearer's 32 bytes as stored (FV_OK, or FV_EINVAL:
 * not a token), then the principal of that hash (the same results as above). sha256: NULL,
 * or the caller's SHA-256 fetched once (EVP_MD_fetch; OpenSSL's one-shot SHA256() looks
 * the algorithm up at every call). */
struct evp_md_st;
int fv_principal_token_hash(const char *bearer, struct evp_md_st *sha256, unsigned char hash[32]);
int fv_principal_authenticate_hash(sqlite3 *db, const unsigned char hash[32],
                                   struct fv_principal *out);

/* ---- whole rows, for a cluster's principals sync (cluster/jsprincipals.h) ----------------- */

/* A principal with its token hash (never a token). */
struct fv_principal_row {
    struct fv_principal p;
    unsigned char token_hash[32];
};

/* The row of name: FV_OK, FV_ENOENT, FV_EIO, FV_ECORRUPT. */
int fv_principal_row_get(sqlite3 *db, const char *name, struct fv_principal_row *out);
/* Calls fn with the name of every principal, in name order; stops at and returns fn's first
 * non-zero result. FV_EIO. */
int fv_principal_names(sqlite3 *db, int (*fn)(void *arg, const char *name), void *arg);
/* Writes row r whole (inserted, or over the row of its name: role and token hash included),
 * and queues event (action, detail; NULL: none) for the audit log in the same transaction.
 * The caller decides what may change (jsprincipals.h M1-M4). FV_OK, FV_EINVAL (a bad name),
 * FV_EIO (err says why: a token hash another name holds, too). */
int fv_principal_row_put(sqlite3 *db, const struct fv_principal_row *r, const char *action,
                         const char *detail, char *err, size_t errlen);

#endif
