/*
 * guard.h - purpose-bound access to personal data through the HTTP API.
 *
 * Every /api/ request is authenticated: the admin token (DATA/admin.token, role "admin")
 * or a principal's token (principals.h). Every read of personal data names a purpose (and,
 * where the role needs one, a ticket), is decided by the policy (policy.h), is checked
 * against the principal's daily quota, and is written to the audit log (audit.h) - allowed
 * or denied - before any data is released. An allowed read carries obligations the API
 * applies: per-purpose pseudonyms instead of device ids, aggregates only, coarsened
 * locations. When the audit log cannot be written, nothing personal is served.
 *
 * Rules:
 *  G1 no token, or an unknown or revoked one: 401; a revoked principal's attempt is audited
 *     under its name; unknown tokens are sampled (G9); an active principal's token is
 *     remembered by its hash only while the catalog is unchanged (any commit to it, by the
 *     CLI, the ingest or the API, forgets them all), so a revocation holds from the next
 *     request;
 *  G2 a read without a purpose, or one the policy refuses: 403 with the policy's reason,
 *     audited with result "deny";
 *  G3 an allowed read is audited with result "allow" before the first byte is sent; when
 *     it completes, an "access.result" entry records rows and bytes sent;
 *  G4 roles that may read only consented subjects get, per subject, only the records whose
 *     time lies where consent to the purpose held then and still holds now
 *     (privacy/subjects.h, fv_consent_servable); a single-subject read of a subject with
 *     none is refused; a fleet read leaves such subjects out;
 *  G7 locations served under location privacy: a point inside one of the subject's privacy
 *     zones (home, work: privacy/zones.h) is not served; the others are snapped to a 1 km
 *     grid; if the zones cannot be read, no location of that subject is served;
 *  G8 and trip trimming: locations within 500 m (along the track) of a trip's start or
 *     end - a trip being points less than 5 minutes apart and not interrupted by a stop
 *     (gear P, or speed 0 for 3 minutes: privacy/location.h L5) - are withheld too, and so
 *     is every location while the vehicle is stopped (where a car is parked says where
 *     someone lives or works even without a zone); privacy/location.h L6;
 *  G10 signals that reveal a place (wire/places.h), under location privacy: GpsHeading is
 *     withheld wherever the position is (G7, G8); origin, destination, route, "located at"
 *     flags and the like are never served; the same rules in every output (fv_guard_oblige);
 *  G6 the audit log names subjects by their keyed pseudonym (crypto/keys.h), never by
 *     device id: the log is personal data's index, not a copy of it;
 *  G5 quotas, per principal and per role (the policy's "role_quota": all the role's
 *     principals together, so a new principal brings no fresh quota), per UTC day, kept in
 *     DATA/quota.db (a restart resets nothing; a crash may give back at most the last
 *     second's counts, none past 80% of a limit: guard_quota.c): a request that would take
 *     either over its daily subjects is refused; rows and bytes are enforced before they
 *     are served: a streamed answer asks what is left before each chunk
 *     (fv_guard_meter_*), stops at the limit with a marker the client sees, and counts
 *     each chunk as it goes; an answer built in memory is checked
 *     whole before it is sent (fv_guard_quota_more); approved bulk exports are held to the
 *     same; a subject export counts as one subject, and its rows are checked before it
 *     starts and its bytes as it streams. The bulk threshold (policy.h P7) of bulk exports
 *     counts per principal per day: the subjects of its unapproved exports today are added;
 *     in a cluster (struct fv_guard_share, fed by the server layer: cluster/jsquotas.h) every
 *     check, meter and near-limit test is made on this node's counts plus the other nodes'
 *     latest published counts of the name and day; this node's counts are handed to share's
 *     publish as they change (published in a batch within a second) and, like the disk save,
 *     at once before the answer when the sum reaches the last fifth of a limit;
 *  G11 no existence oracle: a single-subject read is decided on what does not depend on the
 *     subject named (role, purpose, ticket, classes, limits, quota) first, and audited
 *     whatever it names; only an allowed read looks further. A name that is unknown, a
 *     subject erased, outside the role's scope (energy sites) or without consent (G4) is
 *     then refused with one answer for all (FV_ENOENT: the API answers 404 "unknown
 *     device"), the audit entry keeping the true reason. A pseudonymising role names
 *     devices by their pseudonym within the request's purpose only, every other role by
 *     id only: a VIN from a pseudonymising role is unknown (it cannot turn a VIN into a
 *     pseudonym, nor link two purposes' pseudonyms);
 *  G12 a fleet read (no subject named in the request) accounts for every subject whose data
 *     it returned: its result entries list them (fv_guard_done_served), in bounded entries;
 *     every entry names a subject by the pseudonym of the owner period whose data was
 *     served (the current one), never the first owner's;
 *  G13 principals: creating one of a role that reaches personal data waits for a second
 *     principal's approval (privacy/principals.h A1); a pending principal's token is refused
 *     (401, audited under its name); every change (create, approve, revoke; API or CLI) is
 *     audited with the principal's name and role;
 *  G9 unknown tokens are counted (unauth_failures) and sampled into the audit log: the
 *     first in each 10 s window is an entry, and the failures after it are one more entry
 *     when the window ends (fv_guard_tick) or the server stops ("failures_sampled": how
 *     many this entry stands for), so token guessing cannot force a log sync per guess; the HTTP
 *     transport also limits them per client address (api/http.h);
 *  G10 per-purpose pseudonyms derive from the device's current subject and its data key
 *      (fv_guard_pseudonym), never from the device id alone.
 * The server's API thread only.
 */
#ifndef FV_PRIVACY_GUARD_H
#define FV_PRIVACY_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "privacy/audit.h"
#include "privacy/location.h"
#include "privacy/policy.h"

struct sqlite3;
struct evp_md_st;

struct fv_keystore;
struct fv_guard_ctx;

/* G5 across a cluster: the server layer's hooks (zeros: a single node, its own counts only).
 * others: adds the other nodes' latest counts of name (a principal, or "role:NAME") for the
 * UTC day into *sum (its counters only); publish: this node's counts of name changed to *own
 * (own->day the day); now: publish before returning (near a limit: the answer waits on it),
 * else in the batch. Both are called on the guard's thread and must be cheap but for a
 * publish with now set. */
struct fv_guard_share {
    void (*others)(void *arg, const char *name, int64_t day, struct fv_quota_usage *sum);
    void (*publish)(void *arg, const char *name, const struct fv_quota_usage *own, int now);
    void *arg;
};

struct fv_guard {
    struct fv_keystore *keys; /* the audit log names subjects by pseudonym, never by id */
    struct fv_policy *policy;
    struct sqlite3 *db; /* principals */
    struct fv_audit *audit;
    struct fv_quota *quota;
    const char *admin_token;
    unsigned char pseudo_secret[32]; /* per-purpose pseudonyms */
    uint64_t denied, allowed;
    uint64_t alerts;                 /* unusual volume: a principal past 80% of a daily quota */
    uint64_t quota_saved_ms;         /* G5: when the last batch of counters was saved */
    int quota_dirty;                 /* G5: counted since (guard_quota.c) */
    struct sqlite3 *quota_db;        /* G5: the counters on disk (privacy/quota_store.h) */
    struct sqlite3_stmt *quota_save; /* its upsert, prepared once */
    struct fv_guard_share share;     /* G5 across a cluster: set by the server after open */
    int registry_changed; /* set when the API changed subjects/consent (caches refresh) */
    /* location privacy (G7, G8): config "location_privacy" */
    double trim_m;        /* trip start/end trimming, metres (0: none; default 500) */
    int64_t trip_gap_ms;  /* points further apart start a new trip (default 5 min) */
    int64_t stop_ms;      /* stationary this long is a stop (default 3 min; gear P: at once) */
    double grid_m;        /* coarsening grid, metres (0: none; default 1000) */
    char audit_dir[4096]; /* DATA/audit */
    /* G9: unknown tokens, counted and sampled into the audit log */
    uint64_t unauth_failures;  /* all, since start */
    uint64_t unauth_unlogged;  /* since the last sampled entry */
    uint64_t unauth_logged_ms; /* time of the last sampled entry */
    uint64_t events_ms;        /* when principal changes made outside were last logged */
    /* H2: the seqs of the entries the last fv_guard_done wrote (its access.result, and a
     * checkpoint if one was due) when that result names no subject or the one its decision
     * named: they gate no answer (fv_guard_gate_seq); 0, 0: none. */
    uint64_t ungated_lo, ungated_hi;
    /* G1: tokens that authenticated an active principal, by their SHA-256 (never the token
     * itself), valid while the catalog is unchanged: SQLite's data_version of g->db (commits
     * of other connections: the CLI, the ingest) and g->db's own total changes (the API's
     * principal changes) as they were when filled; any change empties it (guard.c). */
    struct fv_guard_token {
        unsigned char hash[32];
        char name[65], role[32];
    } tokens[16];
    size_t ntokens, next_token;
    int64_t tokens_version, tokens_changes;
    struct sqlite3_stmt *version_stmt; /* PRAGMA data_version, prepared once */
    struct evp_md_st *sha256;          /* fetched once: tokens are hashed per request */
    uint64_t decided_seq;              /* the last "access" decision entry */
    char decided_ps[33];               /* the one subject it named (pseudonym), "" if not one */
    char decided_name[80];             /* and that subject as the caller named it */
    char last_ps[33];                  /* the one subject the last entry named, "" if not one */
};

#define FV_GUARD_UNAUTH_SAMPLE_MS 10000

struct fv_config;

/* Opens access control for a server: the policy (cfg->policy_file, or the built-in one),
 * principals (in the catalog), quotas, the per-purpose pseudonym secret, and the audit log
 * (DATA/audit) with its signing key (cfg->audit_key, else beside the master key file, made
 * if missing; inside DATA only when the master key comes from the environment, with a
 * warning). admin_token must outlive g. audit_notify non-NULL: the audit log group-commits
 * (audit.h A13) and calls it from its syncer thread when entries became durable; the caller
 * then holds answers back until fv_audit_durable_seq covers their entries (api/http.h H2).
 * On failure err is set; call fv_guard_close anyway to release what was opened. */
int fv_guard_open(struct fv_guard *g, const struct fv_config *cfg, struct fv_keystore *keys,
                  const char *admin_token, void (*audit_notify)(void *), void *notify_arg,
                  char *err, size_t errlen);
/* G5 across a cluster: raises this node's counts of name for u->day (today's only) to at
 * least u, counter by counter (a restart whose DATA/quota.db is behind what this node had
 * published reads its own published counts back). Saved with the next batch. */
void fv_guard_quota_raise(struct fv_guard *g, const char *name, const struct fv_quota_usage *u);
/* G9: logs the unknown-token failures counted since the last sampled entry, once its window
 * has passed. Call every loop turn (cheap). */
void fv_guard_tick(struct fv_guard *g);
/* G13: moves principal changes made outside the server (the CLI: principals.h) into the
 * audit log, as the local operator's ("fleetvault"); at open, within a second on tick, and
 * before an approval. */
void fv_guard_principal_events(struct fv_guard *g);
/* G13: audits a principal change: kind "admin", action ("principal.create", ".approve",
 * ".revoke"), by ctx's principal, with extra {"name", "role", "detail"}. FV_OK, FV_EIO (the
 * log failed), FV_ENOMEM. */
int fv_guard_audit_principal(struct fv_guard *g, const struct fv_guard_ctx *ctx, const char *action,
                             const char *result, const char *reason, const char *name,
                             const char *role, const char *detail);
/* Closes the audit log (the failures not logged yet, a final checkpoint) and frees
 * everything; g is zeroed. */
void fv_guard_close(struct fv_guard *g);

/* Who is asking and for what: filled by fv_guard_auth and fv_guard_read. */
struct fv_guard_ctx {
    char principal[65];
    char role[32];
    char purpose[32];
    char ticket[129];
    char approved_by[65];
    struct fv_decision d;
    char action[48];
    char subject[80]; /* the one subject of a single-subject read, for the result entry */
    double grid_m;    /* the coarsening grid for this read (from the guard) */
    int energy_sites; /* in: every subject the read touches is an energy site (or, for a
                         fleet read, the answer will be limited to energy sites) */
    char refuse[200]; /* in: why the read breaks a limit only the caller can check (P8
                         aggregate limits); refused with this reason if the policy allows */
    char unknown[80]; /* in, G11: why the subject named cannot be served (unknown, erased,
                         out of scope); refused as unknown (FV_ENOENT) if all else allows */
    /* G4, single-subject reads under a consented-only role: what may be served */
    int consent_limited;
    size_t nconsent;
    struct fv_consent_range {
        int64_t from, to;
    } consent[32];
    /* G7, location privacy: the subject's privacy zones (points inside are not served) */
    int zones_state; /* 0 not loaded, 1 loaded, -1 unreadable: serve no location */
    size_t nzones;
    struct fv_zone zones[16];
    /* G8, trip trimming: times whose locations are withheld (near trip starts and ends) */
    size_t ntrim, captrim;
    struct fv_consent_range *trim; /* owned: free with fv_guard_ctx_clear */
    int trim_loaded;               /* set once loaded: until then no location is served */
    /* G5: rows and bytes a stream counted already (fv_guard_meter_end) */
    uint64_t counted_rows, counted_bytes;
};

/* Frees what a ctx owns (trip-trimming intervals); they count as not loaded again. */
void fv_guard_ctx_clear(struct fv_guard_ctx *ctx);
/* G8: is a location at time t withheld by trip trimming? */
int fv_guard_trimmed(const struct fv_guard_ctx *ctx, int64_t t);

/* G7, G8, G10: the value of signal field at time t as ctx may see it: v itself, or tmp
 * filled with a coarsened location or marked withheld (kind FV_VK_INVALID). Needs the
 * zones (fv_guard_load_zones) and the withheld times (G8: the caller loads them, then sets
 * trim_loaded) in ctx; fails closed: before they are loaded, no place is served. */
const struct fv_value *fv_guard_oblige(const struct fv_guard_ctx *ctx, uint32_t field, int64_t t,
                                       const struct fv_value *v, struct fv_value *tmp);
/* The location parameters (L2-L6) of ctx's read: zones from ctx, the rest from g. */
void fv_guard_loc_params(const struct fv_guard *g, const struct fv_guard_ctx *ctx,
                         struct fv_loc_params *p);

/* G5 for a streamed answer: may rows and bytes more be served to ctx today? FV_OK, or
 * FV_ELIMIT with the reason ("quota: ...") and, when audit_refusal is set, a "deny" entry
 * in the audit log (FV_EIO if that fails). */
int fv_guard_quota_more(struct fv_guard *g, const struct fv_guard_ctx *ctx, uint64_t rows,
                        uint64_t bytes, int audit_refusal, char *reason, size_t reasonlen);

/* G5 before an answer that has no fv_guard_read of its own (a bulk export's download): are
 * subjects more, and any row and byte, left to ctx today? FV_OK (the subjects are counted)
 * or FV_ELIMIT with the reason ("quota: ..."). */
int fv_guard_quota_take(struct fv_guard *g, const struct fv_guard_ctx *ctx, uint64_t subjects,
                        char *reason, size_t reasonlen);

/* G5 for a streamed answer: a meter of what it may still serve, per chunk. Before each
 * chunk fv_guard_meter_start (what the quota leaves now: another answer of the same
 * principal or role may have used some), before each row fv_guard_meter_room, after it
 * fv_guard_meter_row; at the chunk's end fv_guard_meter_end counts what it served (so
 * fv_guard_done counts only the rest) and audits the stop once. Once a limit is hit the
 * answer must end, with fv_guard_meter_note where the client sees it. */
struct fv_guard_meter {
    uint64_t rows_left, bytes_left; /* at the chunk's start (UINT64_MAX: no limit) */
    uint64_t rows;                  /* rows this chunk served */
    size_t mark;                    /* the output's length when the chunk began */
    int hit;                        /* 1: the rows, 2: the bytes of the quota reached */
    int audited;
};
void fv_guard_meter_start(const struct fv_guard *g, const struct fv_guard_ctx *ctx,
                          struct fv_guard_meter *m, size_t mark);
/* Before a row: 1 if one more may be served, else 0 (hit set). */
int fv_guard_meter_room(struct fv_guard_meter *m);
/* After a row, len being the output's length now: 1 (counted), or 0 when the row passes the
 * bytes left (hit set; the caller cuts the row off again). */
int fv_guard_meter_row(struct fv_guard_meter *m, size_t len);
void fv_guard_meter_end(struct fv_guard *g, struct fv_guard_ctx *ctx, struct fv_guard_meter *m,
                        size_t len);
/* "quota: the daily rows_per_day is reached; the answer stops here", or "" (not hit). */
const char *fv_guard_meter_note(const struct fv_guard_meter *m);

/* G7: loads the privacy zones of device's current subject into ctx (for location-private
 * reads); on any error no location of that subject is served. */
void fv_guard_load_zones(struct fv_guard *g, struct fv_guard_ctx *ctx, const char *device);

/* G4: may records of this device at time t be served to ctx (consent, for consented-only
 * roles; always 1 for others)? For fleet reads, device by device. */
int fv_guard_consented(struct fv_guard *g, const struct fv_guard_ctx *ctx, const char *device,
                       int64_t t);
/* G4: loads into ctx what of device's current subject may be served in [from, to] (for
 * consented-only roles; others: unlimited). Returns the number of ranges (0: nothing). */
size_t fv_guard_load_consent(struct fv_guard *g, struct fv_guard_ctx *ctx, const char *device,
                             int64_t from, int64_t to);
/* G4, single-subject reads: is t inside what ctx may be served? */
int fv_guard_in_consent(const struct fv_guard_ctx *ctx, int64_t t);

/* Is "Bearer TOKEN" the admin token or an active principal's? Logs nothing (the HTTP
 * transport's throttle, api/http.h H1). */
int fv_guard_token_valid(struct fv_guard *g, const char *authorization);
/* G1: authenticates "Bearer TOKEN". FV_OK, or FV_EPERM-like FV_EINVAL with a reason. */
int fv_guard_auth(struct fv_guard *g, const char *authorization, struct fv_guard_ctx *ctx,
                  char *reason, size_t reasonlen);

/* An admin action (store maintenance, principal management): allowed for roles with the
 * admin action; audited. FV_OK or FV_EINVAL with the reason. */
int fv_guard_admin(struct fv_guard *g, struct fv_guard_ctx *ctx, const char *action, char *reason,
                   size_t reasonlen);

/*
 * G2-G5: decides a read of personal data. query: the URL's query string (purpose, ticket,
 * approved_by are read from it). classes: the policy class bitmask read; subjects: the
 * subjects touched (ids as the API names them; count n, list may be NULL when many);
 * signals/nsignals, from/to: what is asked, for the log. FV_OK (allowed; ctx->d holds the
 * obligations), FV_EINVAL (refused, reason set), FV_ENOENT (G11: refused for the subject
 * named, answer it as unknown; reason is the true one, for the log only), FV_EIO (the audit
 * log failed: refuse).
 */
int fv_guard_read(struct fv_guard *g, struct fv_guard_ctx *ctx, const char *query,
                  const char *action, uint32_t classes, const char *const *subjects, size_t n,
                  int aggregated, const char *const *signals, size_t nsignals, int64_t from,
                  int64_t to, char *reason, size_t reasonlen);

/* A subject-level action (export, erase) on one device: needs the role's action and, for
 * human roles, a ticket (from the query string); audited. FV_OK, FV_EINVAL (refused),
 * FV_EIO (audit failed). */
int fv_guard_subject_action(struct fv_guard *g, struct fv_guard_ctx *ctx, const char *query,
                            enum fv_action action, const char *action_name, const char *subject,
                            char *reason, size_t reasonlen);

/* A consent change (subjects.h S7, S8) on subject, decided like a subject action (the role
 * needs the erase action - whoever handles data subjects' rights - and, if human, a ticket)
 * and audited with the consent's purpose and extra (fv_consent_audit_extra). refused: NULL,
 * or why the change is refused whatever the policy (a backdated grant): audited as a
 * denial. FV_OK, FV_EINVAL (refused, reason set), FV_EIO (audit failed). */
int fv_guard_consent(struct fv_guard *g, struct fv_guard_ctx *ctx, const char *query,
                     const char *subject, const char *purpose, const char *extra,
                     const char *refused, char *reason, size_t reasonlen);
/* The outcome of an allowed consent change that could not be applied: audited as an error. */
void fv_guard_consent_failed(struct fv_guard *g, const struct fv_guard_ctx *ctx,
                             const char *subject, const char *extra, const char *why);

/* G3, G5: what an allowed read sent (rows and bytes in all; what fv_guard_meter_end
 * counted already is not counted twice). */
void fv_guard_done(struct fv_guard *g, const struct fv_guard_ctx *ctx, uint64_t rows,
                   uint64_t bytes);
/* H2 (api/http.h): the audit seq an answer must wait for, given the log's last seq before its
 * request (before) and after it (after): after, or the seq before the entries of the last
 * fv_guard_done when those are the last written, an "access" decision of the same request
 * precedes them, and its result names no subject or the one that decision named. Such an
 * access.result only adds rows and bytes to the decision, so it may become durable after the
 * answer left, as a streamed answer's always did; a fleet read's result (fv_guard_done_served,
 * the subjects served, G12) and a subject export's naming another period (G6) still gate. */
uint64_t fv_guard_gate_seq(const struct fv_guard *g, uint64_t before, uint64_t after);

/* G10: the per-purpose pseudonym of device: HMAC of the purpose and its current subject
 * (owner period) keyed by that subject's data key (policy.h fv_pseudonym_for_purpose), so
 * it differs across owners and is unlinkable once the subject is erased. FV_OK or an
 * error code. Loop thread (the keystore's). */
int fv_guard_pseudonym(const struct fv_guard *g, const char *purpose, const char *device,
                       char out[FV_PURPOSE_PSEUDONYM_LEN + 1]);
/* The same with the caller's keystore and the guard's pseudo_secret (copied): for threads
 * with a keystore of their own (mqtt/mqtt.h). The keystore's thread. */
int fv_pseudonym_of_device(struct fv_keystore *ks, const unsigned char secret[32],
                           const char *purpose, const char *device,
                           char out[FV_PURPOSE_PSEUDONYM_LEN + 1]);

/* G12: the subjects a fleet read (vehicles, latest values, the fleet at an instant, a bulk
 * export) returned data of, by the pseudonym of the owner period served; the caller's, and
 * freed with fv_guard_served_free. Zero-initialise. */
#define FV_GUARD_SUBJECTS_PER_ENTRY 1000 /* about 35 KB of an audit line */
struct fv_guard_served {
    char (*ps)[33]; /* FV_PSEUDONYM_LEN + 1 */
    size_t n, cap;
    int failed; /* out of memory: the result entry says the list is incomplete */
};
/* Adds the current owner period of device (or the subject named "DEVICE#n"). */
void fv_guard_served_add(struct fv_guard *g, struct fv_guard_served *s, const char *device);
/* Adds a subject by the pseudonym the keystore gave it (crypto/keys.h). */
void fv_guard_served_add_pseudonym(struct fv_guard_served *s, const char *pseudonym);
void fv_guard_served_free(struct fv_guard_served *s);
/* G3, G5, G12: what an allowed fleet read sent, and to whom it belonged: the "access.result"
 * entry names the first FV_GUARD_SUBJECTS_PER_ENTRY subjects, and each further such many
 * are an "access.subjects" entry of the same principal, action and purpose, pointing at it
 * ("extra": {"result_seq": N, "part": i, "parts": k}); every entry stays bounded, and
 * `audit query --subject` and a subject's access log find each read that served it. */
void fv_guard_done_served(struct fv_guard *g, const struct fv_guard_ctx *ctx,
                          const struct fv_guard_served *s, uint64_t rows, uint64_t bytes);

/* The id to show for a device under ctx's obligations: the per-purpose pseudonym (G10)
 * when the role pseudonymises, else the id itself. out must hold 65 bytes. */
void fv_guard_show_id(const struct fv_guard *g, const struct fv_guard_ctx *ctx, const char *id,
                      char *out);

#endif
