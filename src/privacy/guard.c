/* guard.c - see guard.h. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "config/config.h"
#include "crypto/keys.h"
#include "privacy/guard.h"
#include "privacy/guard_int.h"
#include "privacy/principals.h"
#include "privacy/subjects.h"
#include "privacy/zones.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/urlquery.h"
#include "wire/places.h"

/* G6: the pseudonym of the subject whose data a read of name serves: a device id names its
 * current owner period (reads serve that period only); "DEVICE#N" names period N ("#1" the
 * first, whose subject is the device id); a name that is neither (an unknown device) is
 * pseudonymised as given. */
static int guard_pseudonym(struct fv_guard *g, const char *name, char out[FV_PSEUDONYM_LEN + 1])
{
    char subject[FV_SUBJECT_NAME_MAX + 1], device[FV_SUBJECT_NAME_MAX + 1];
    int epoch = 0;
    if (strchr(name, '#') != NULL) {
        if (fv_subject_parse(name, device, &epoch) != FV_OK ||
            fv_subject_name(device, epoch, subject) != FV_OK)
            snprintf(subject, sizeof subject, "%s", name);
    } else if (fv_subject_current(g->keys, name, subject, NULL) != FV_OK) {
        snprintf(subject, sizeof subject, "%s", name);
    }
    return fv_keystore_pseudonym(g->keys, subject, out);
}

static void audit_ev(struct fv_guard *g, const struct fv_guard_ctx *ctx, const char *kind,
                     const char *result, const char *reason, const char *const *subjects, size_t n,
                     const char *const *signals, size_t nsignals, int has_range, int64_t from,
                     int64_t to, uint64_t rows, uint64_t bytes, const char *extra, int lazy_result,
                     int *failed)
{
    if (g->audit == NULL) return;
    /* G6: pseudonyms for subjects (at most 64 named; a larger request logs its count). */
    char ps[64][FV_PSEUDONYM_LEN + 1];
    const char *pp[64];
    size_t np = 0;
    const char *named = subjects && n == 1 ? subjects[0] : "";
    if (lazy_result && n == 1 && subjects && g->decided_ps[0] &&
        strcmp(named, g->decided_name) == 0) {
        /* a result names its decision's subject by the pseudonym the decision used: the
         * owner period whose data was served (G12), without a second catalog read */
        snprintf(ps[0], sizeof ps[0], "%s", g->decided_ps);
        pp[np] = ps[np], np++;
    } else {
        for (size_t i = 0; subjects && i < n && np < 64; i++)
            if (g->keys && guard_pseudonym(g, subjects[i], ps[np]) == FV_OK) pp[np] = ps[np], np++;
    }
    subjects = np ? pp : NULL;
    n = np;
    struct fv_audit_event ev = {
        .kind = kind,
        .action = ctx->action[0] ? ctx->action : NULL,
        .principal = ctx->principal[0] ? ctx->principal : "unknown",
        .role = ctx->role[0] ? ctx->role : NULL,
        .purpose = ctx->purpose[0] ? ctx->purpose : NULL,
        .ticket = ctx->ticket[0] ? ctx->ticket : NULL,
        .subjects = subjects,
        .nsubjects = subjects ? n : 0,
        .signals = signals,
        .nsignals = nsignals,
        .has_range = has_range,
        .from_ms = from,
        .to_ms = to,
        .rows = rows,
        .bytes = bytes,
        .result = result,
        .reason = reason,
        .extra_json = extra,
    };
    uint64_t seq = 0;
    snprintf(g->last_ps, sizeof g->last_ps, "%s", n == 1 ? subjects[0] : "");
    /* H2: a result naming no subject or its decision's one gates nothing (fv_guard_done):
     * its sync may wait for the next decision's (audit.h A13) */
    int lazy = lazy_result && (g->last_ps[0] == '\0' || strcmp(g->last_ps, g->decided_ps) == 0);
    if ((lazy ? fv_audit_append_lazy : fv_audit_append)(g->audit, &ev, &seq) != FV_OK) {
        fv_error("audit: %s; personal data is not served while the audit log fails",
                 fv_audit_last_error(g->audit));
        if (failed) *failed = 1;
        return;
    }
    if (strcmp(kind, "access") == 0) { /* H2: fv_guard_done, fv_guard_gate_seq */
        g->decided_seq = seq;
        snprintf(g->decided_ps, sizeof g->decided_ps, "%s", g->last_ps);
        snprintf(g->decided_name, sizeof g->decided_name, "%s", g->last_ps[0] ? named : "");
    }
}

static void audit(struct fv_guard *g, const struct fv_guard_ctx *ctx, const char *kind,
                  const char *result, const char *reason, const char *const *subjects, size_t n,
                  const char *const *signals, size_t nsignals, int has_range, int64_t from,
                  int64_t to, uint64_t rows, uint64_t bytes, int *failed)
{
    audit_ev(g, ctx, kind, result, reason, subjects, n, signals, nsignals, has_range, from, to,
             rows, bytes, NULL, 0, failed);
}

static void audit_extra(struct fv_guard *g, const struct fv_guard_ctx *ctx, const char *kind,
                        const char *result, const char *reason, const char *extra)
{
    audit_ev(g, ctx, kind, result, reason, NULL, 0, NULL, 0, 0, 0, 0, 0, 0, extra, 0, NULL);
}

/* G9: one entry for the unknown-token failures not logged yet. */
static void unauth_sample(struct fv_guard *g)
{
    struct fv_guard_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    snprintf(ctx.action, sizeof ctx.action, "auth");
    char extra[64];
    snprintf(extra, sizeof extra, "{\"failures_sampled\":%llu}",
             (unsigned long long)g->unauth_unlogged);
    audit_extra(g, &ctx, "access", "deny", "invalid token", extra);
    g->unauth_logged_ms = fv_now_ms();
    g->unauth_unlogged = 0;
}

void fv_guard_tick(struct fv_guard *g)
{
    if (g->unauth_unlogged && fv_now_ms() - g->unauth_logged_ms >= FV_GUARD_UNAUTH_SAMPLE_MS)
        unauth_sample(g);
    if (fv_now_ms() - g->events_ms >= 1000) fv_guard_principal_events(g);
    fv_guard__quota_tick(g);
}

int fv_guard_audit_principal(struct fv_guard *g, const struct fv_guard_ctx *ctx, const char *action,
                             const char *result, const char *reason, const char *name,
                             const char *role, const char *detail)
{
    json_t *o = json_pack("{s:s,s:s}", "name", name ? name : "", "role", role ? role : "");
    if (o && detail && detail[0]) json_object_set_new(o, "detail", json_string(detail));
    char *extra = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (extra == NULL) return FV_ENOMEM;
    struct fv_guard_ctx c = *ctx;
    snprintf(c.action, sizeof c.action, "%s", action);
    int failed = 0;
    audit_ev(g, &c, "admin", result, reason, NULL, 0, NULL, 0, 0, 0, 0, 0, 0, extra, 0, &failed);
    free(extra);
    return failed ? FV_EIO : FV_OK;
}

/* A principal change made by the CLI, into the audit log as the local operator's. */
static int principal_event(void *arg, const struct fv_principal_event *e)
{
    struct fv_guard *g = arg;
    struct fv_guard_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    snprintf(ctx.principal, sizeof ctx.principal, "fleetvault");
    char detail[200];
    snprintf(detail, sizeof detail, "%s (at %lld)", e->detail, (long long)e->at_ms);
    /* the cluster's principals sync (cluster/jsprincipals.h U4) queues its changes here too */
    const char *reason = strncmp(e->detail, "cluster:", 8) == 0 ? "applied from the cluster"
                                                                : "made outside the server";
    return fv_guard_audit_principal(g, &ctx, e->action, "allow", reason, e->name, e->role, detail);
}

void fv_guard_principal_events(struct fv_guard *g)
{
    g->events_ms = fv_now_ms();
    if (g->db && g->audit && fv_principal_events_drain(g->db, principal_event, g) != FV_OK)
        fv_warn("audit: principal changes made outside the server could not be logged yet");
}

/* The catalog's version as g->db sees it: data_version (other connections' commits) and its
 * own changes. FV_OK or FV_EIO. */
static int catalog_version(struct fv_guard *g, int64_t *version, int64_t *changes)
{
    if (g->version_stmt == NULL &&
        sqlite3_prepare_v3(g->db, "PRAGMA data_version", -1, SQLITE_PREPARE_PERSISTENT,
                           &g->version_stmt, NULL) != SQLITE_OK) {
        sqlite3_finalize(g->version_stmt);
        g->version_stmt = NULL;
        return FV_EIO;
    }
    int rc = sqlite3_step(g->version_stmt) == SQLITE_ROW ? FV_OK : FV_EIO;
    *version = sqlite3_column_int64(g->version_stmt, 0);
    sqlite3_reset(g->version_stmt);
    *changes = sqlite3_total_changes64(g->db);
    return rc;
}

/* G1: the principal of token tok, from the token cache while the catalog is unchanged (only
 * name and role are filled then), else from the catalog (fv_principal_authenticate's
 * results); an active principal's token is cached by its hash. */
static int authenticate(struct fv_guard *g, const char *tok, struct fv_principal *p)
{
    memset(p, 0, sizeof *p);
    unsigned char h[32];
    if (g->db == NULL) return FV_ENOENT;
    int hrc = fv_principal_token_hash(tok, g->sha256, h);
    if (hrc != FV_OK) return hrc == FV_EINVAL ? FV_EINVAL : FV_ENOENT;
    int64_t version = 0, changes = 0;
    int known = catalog_version(g, &version, &changes) == FV_OK;
    if (!known || version != g->tokens_version || changes != g->tokens_changes) {
        OPENSSL_cleanse(g->tokens, sizeof g->tokens);
        g->ntokens = g->next_token = 0;
        g->tokens_version = known ? version : -1;
        g->tokens_changes = known ? changes : -1;
    }
    for (size_t i = 0; known && i < g->ntokens; i++)
        if (CRYPTO_memcmp(h, g->tokens[i].hash, sizeof h) == 0) {
            snprintf(p->name, sizeof p->name, "%s", g->tokens[i].name);
            snprintf(p->role, sizeof p->role, "%s", g->tokens[i].role);
            return FV_OK;
        }
    int rc = fv_principal_authenticate_hash(g->db, h, p);
    if (rc == FV_OK && known) {
        struct fv_guard_token *e = &g->tokens[g->next_token];
        memcpy(e->hash, h, sizeof h);
        snprintf(e->name, sizeof e->name, "%s", p->name);
        snprintf(e->role, sizeof e->role, "%s", p->role);
        g->next_token = (g->next_token + 1) % (sizeof g->tokens / sizeof g->tokens[0]);
        if (g->ntokens < sizeof g->tokens / sizeof g->tokens[0]) g->ntokens++;
    }
    return rc;
}

int fv_guard_token_valid(struct fv_guard *g, const char *authorization)
{
    if (authorization == NULL || strncmp(authorization, "Bearer ", 7) != 0) return 0;
    const char *tok = authorization + 7;
    size_t n = g->admin_token ? strlen(g->admin_token) : 0;
    if (n && strlen(tok) == n && CRYPTO_memcmp(tok, g->admin_token, n) == 0) return 1;
    struct fv_principal p;
    return authenticate(g, tok, &p) == FV_OK;
}

int fv_guard_auth(struct fv_guard *g, const char *authorization, struct fv_guard_ctx *ctx,
                  char *reason, size_t reasonlen)
{
    memset(ctx, 0, sizeof *ctx);
    if (authorization == NULL || strncmp(authorization, "Bearer ", 7) != 0) {
        snprintf(reason, reasonlen, "missing 'Authorization: Bearer TOKEN'");
        return FV_EINVAL;
    }
    const char *tok = authorization + 7;
    size_t n = g->admin_token ? strlen(g->admin_token) : 0;
    if (n && strlen(tok) == n && CRYPTO_memcmp(tok, g->admin_token, n) == 0) {
        snprintf(ctx->principal, sizeof ctx->principal, "admin");
        snprintf(ctx->role, sizeof ctx->role, "admin");
        return FV_OK;
    }
    struct fv_principal p;
    int rc = authenticate(g, tok, &p);
    if (rc == FV_OK) {
        snprintf(ctx->principal, sizeof ctx->principal, "%s", p.name);
        snprintf(ctx->role, sizeof ctx->role, "%s", p.role);
        return FV_OK;
    }
    snprintf(reason, reasonlen, "%s",
             rc == FV_ESTATE   ? "this principal was revoked"
             : rc == FV_EAGAIN ? "this principal awaits a second principal's approval"
                               : "invalid token");
    snprintf(ctx->action, sizeof ctx->action, "auth");
    if (rc == FV_ESTATE || rc == FV_EAGAIN) { /* a known principal: an entry per attempt */
        snprintf(ctx->principal, sizeof ctx->principal, "%s", p.name);
        audit(g, ctx, "access", "deny", reason, NULL, 0, NULL, 0, 0, 0, 0, 0, 0, NULL);
        return FV_EINVAL;
    }
    /* G9: unknown tokens are counted, and sampled into the log: the first of each
     * FV_GUARD_UNAUTH_SAMPLE_MS window is an entry, carrying how many failed since the last
     * entry; the others cost no disk write (a client guessing tokens cannot make the server
     * sync the log for every guess). */
    g->unauth_failures++;
    g->unauth_unlogged++;
    if (g->unauth_logged_ms == 0 || fv_now_ms() - g->unauth_logged_ms >= FV_GUARD_UNAUTH_SAMPLE_MS)
        unauth_sample(g);
    return FV_EINVAL;
}

int fv_guard_admin(struct fv_guard *g, struct fv_guard_ctx *ctx, const char *action, char *reason,
                   size_t reasonlen)
{
    snprintf(ctx->action, sizeof ctx->action, "%s", action);
    struct fv_access_request req = {.principal = ctx->principal,
                                    .role = ctx->role,
                                    .action = FV_ACTION_ADMIN,
                                    .ticket = "admin-api"};
    fv_policy_decide(g->policy, &req, &ctx->d);
    int failed = 0;
    audit(g, ctx, "admin", ctx->d.allow ? "allow" : "deny", ctx->d.reason, NULL, 0, NULL, 0, 0, 0,
          0, 0, 0, &failed);
    if (failed) {
        snprintf(reason, reasonlen, "the audit log cannot be written; refused");
        return FV_EIO;
    }
    if (!ctx->d.allow) {
        snprintf(reason, reasonlen, "%s", ctx->d.reason);
        return FV_EINVAL;
    }
    return FV_OK;
}

int fv_guard_subject_action(struct fv_guard *g, struct fv_guard_ctx *ctx, const char *query,
                            enum fv_action action, const char *action_name, const char *subject,
                            char *reason, size_t reasonlen)
{
    snprintf(ctx->action, sizeof ctx->action, "%s", action_name);
    fv_query_param(query, "ticket", ctx->ticket, sizeof ctx->ticket);
    snprintf(ctx->subject, sizeof ctx->subject, "%s", subject);
    struct fv_access_request req = {.principal = ctx->principal,
                                    .role = ctx->role,
                                    .action = action,
                                    .ticket = ctx->ticket,
                                    .subjects = 1};
    fv_policy_decide(g->policy, &req, &ctx->d);
    char qr[160] = "";
    if (ctx->d.allow && action == FV_ACTION_EXPORT &&
        fv_guard__quota_check(g, ctx, 1, 0, 0, qr, sizeof qr) != FV_OK) {
        /* G5: an export is a read of one subject */
        ctx->d.allow = false;
        snprintf(ctx->d.reason, sizeof ctx->d.reason, "quota: %s", qr);
    }
    int failed = 0;
    const char *subj[1] = {subject};
    audit(g, ctx, action == FV_ACTION_ERASE ? "erasure" : "access", ctx->d.allow ? "allow" : "deny",
          ctx->d.reason, subj, 1, NULL, 0, 0, 0, 0, 0, 0, &failed);
    if (failed) {
        snprintf(reason, reasonlen, "the audit log cannot be written; refused");
        return FV_EIO;
    }
    snprintf(reason, reasonlen, "%s", ctx->d.reason);
    if (ctx->d.allow && action == FV_ACTION_EXPORT) fv_guard__quota_count(g, ctx, 1, 0, 0, 1);
    return ctx->d.allow ? FV_OK : FV_EINVAL;
}

int fv_guard_consent(struct fv_guard *g, struct fv_guard_ctx *ctx, const char *query,
                     const char *subject, const char *purpose, const char *extra,
                     const char *refused, char *reason, size_t reasonlen)
{
    snprintf(ctx->action, sizeof ctx->action, "subject.consent");
    snprintf(ctx->purpose, sizeof ctx->purpose, "%s", purpose ? purpose : "");
    fv_query_param(query, "ticket", ctx->ticket, sizeof ctx->ticket);
    snprintf(ctx->subject, sizeof ctx->subject, "%s", subject);
    struct fv_access_request req = {.principal = ctx->principal,
                                    .role = ctx->role,
                                    .action = FV_ACTION_ERASE,
                                    .ticket = ctx->ticket,
                                    .subjects = 1};
    fv_policy_decide(g->policy, &req, &ctx->d);
    int allow = ctx->d.allow && refused == NULL;
    const char *why = ctx->d.allow && refused ? refused : ctx->d.reason;
    int failed = 0;
    const char *subj[1] = {subject};
    audit_ev(g, ctx, "admin", allow ? "allow" : "deny", why, subj, 1, NULL, 0, 0, 0, 0, 0, 0, extra,
             0, &failed);
    if (failed) {
        snprintf(reason, reasonlen, "the audit log cannot be written; refused");
        return FV_EIO;
    }
    snprintf(reason, reasonlen, "%s", why);
    return allow ? FV_OK : FV_EINVAL;
}

void fv_guard_consent_failed(struct fv_guard *g, const struct fv_guard_ctx *ctx,
                             const char *subject, const char *extra, const char *why)
{
    const char *subj[1] = {subject};
    audit_ev(g, ctx, "admin", "error", why, subj, 1, NULL, 0, 0, 0, 0, 0, 0, extra, 0, NULL);
}

int fv_guard_read(struct fv_guard *g, struct fv_guard_ctx *ctx, const char *query,
                  const char *action, uint32_t classes, const char *const *subjects, size_t n,
                  int aggregated, const char *const *signals, size_t nsignals, int64_t from,
                  int64_t to, char *reason, size_t reasonlen)
{
    snprintf(ctx->action, sizeof ctx->action, "%s", action);
    ctx->grid_m = g->grid_m;
    fv_query_param(query, "purpose", ctx->purpose, sizeof ctx->purpose);
    fv_query_param(query, "ticket", ctx->ticket, sizeof ctx->ticket);
    fv_query_param(query, "approved_by", ctx->approved_by, sizeof ctx->approved_by);
    if (n == 1 && subjects) snprintf(ctx->subject, sizeof ctx->subject, "%s", subjects[0]);
    struct fv_access_request req = {.principal = ctx->principal,
                                    .role = ctx->role,
                                    .action = FV_ACTION_READ,
                                    .purpose = ctx->purpose,
                                    .ticket = ctx->ticket,
                                    .classes = classes,
                                    .subjects = n,
                                    .aggregated = aggregated != 0,
                                    .energy_sites_only = ctx->energy_sites != 0};
    /* P7 per principal per day: a bulk export adds the subjects of the day's earlier
     * unapproved ones. Fleet reads have no approval to wait for: above the threshold they are
     * refused per request, and subjects_per_day bounds how many a day (re-reading the same
     * fleet is not more subjects). */
    int bulk = strncmp(action, "export.", 7) == 0;
    if (bulk) req.bulk_today = fv_guard__bulk_today(g, ctx);
    fv_policy_decide(g->policy, &req, &ctx->d);
    char why[FV_POLICY_REASON_MAX + 64];
    snprintf(why, sizeof why, "%s", ctx->d.reason);
    int allow = ctx->d.allow, unknown = 0;
    if (allow && (ctx->d.obligations & FV_OBLIGE_AGGREGATE_ONLY) && !aggregated) {
        allow = 0;
        snprintf(why, sizeof why, "role %s may read aggregates only (use step/agg)", ctx->role);
    }
    if (allow && ctx->refuse[0]) { /* P8: the caller's limits */
        allow = 0;
        snprintf(why, sizeof why, "%s", ctx->refuse);
    }
    if (allow) {
        char qr[160] = "";
        if (fv_guard__quota_check(g, ctx, n, 0, 0, qr, sizeof qr) != FV_OK) {
            allow = 0; /* G5 */
            snprintf(why, sizeof why, "quota: %s", qr);
        }
    }
    /* G11: what depends on the subject named comes last, so every refusal before it reads
     * the same whatever was named; the requester gets one answer for all of these, the log
     * the true reason. */
    if (allow && ctx->unknown[0]) {
        allow = 0, unknown = 1;
        snprintf(why, sizeof why, "%s", ctx->unknown);
    }
    if (allow && (ctx->d.obligations & FV_OBLIGE_CONSENTED_ONLY) && n == 1 && subjects) {
        /* G4: the current owner period's consent, clipped to the range asked for. */
        if (fv_guard_load_consent(g, ctx, subjects[0], from, to) == 0) {
            allow = 0, unknown = 1;
            snprintf(why, sizeof why,
                     "the subject has not consented to %s (role %s reads "
                     "consented subjects only)",
                     ctx->purpose, ctx->role);
        }
    }
    int failed = 0;
    int ranged = from != INT64_MIN || to != INT64_MAX;
    audit(g, ctx, "access", allow ? "allow" : "deny", why, subjects, n, signals, nsignals, ranged,
          from == INT64_MIN ? 0 : from, to == INT64_MAX ? 0 : to, 0, 0, &failed);
    if (failed) {
        snprintf(reason, reasonlen, "the audit log cannot be written; nothing is served");
        return FV_EIO;
    }
    snprintf(reason, reasonlen, "%s", why);
    if (!allow) {
        g->denied++;
        return unknown ? FV_ENOENT : FV_EINVAL;
    }
    g->allowed++;
    fv_guard__quota_count(g, ctx, n, 0, 0, 0);
    if (bulk && !ctx->d.bulk) fv_guard__count_bulk(g, ctx, n);
    return FV_OK;
}

/* G5: counts what was served; crossing 80% of a daily limit raises an alert. */
static void quota_count(struct fv_guard *g, const struct fv_guard_ctx *ctx, uint64_t rows,
                        uint64_t bytes)
{
    fv_guard__quota_count(g, ctx, 0, rows > ctx->counted_rows ? rows - ctx->counted_rows : 0,
                          bytes > ctx->counted_bytes ? bytes - ctx->counted_bytes : 0, 0);
}

void fv_guard_done(struct fv_guard *g, const struct fv_guard_ctx *ctx, uint64_t rows,
                   uint64_t bytes)
{
    quota_count(g, ctx, rows, bytes);
    const char *s[1] = {ctx->subject};
    uint64_t before = g->audit ? fv_audit_last_seq(g->audit) : 0;
    audit_ev(g, ctx, "access.result", "allow", NULL, ctx->subject[0] ? s : NULL, 1, NULL, 0, 0, 0,
             0, rows, bytes, NULL, 1, NULL);
    uint64_t after = g->audit ? fv_audit_last_seq(g->audit) : 0;
    /* H2: a result naming another subject than its decision (a subject export names the
     * period exported, G6) still gates its answer */
    int same = g->last_ps[0] == '\0' || strcmp(g->last_ps, g->decided_ps) == 0;
    g->ungated_lo = after > before && same ? before + 1 : 0;
    g->ungated_hi = after > before && same ? after : 0;
}

uint64_t fv_guard_gate_seq(const struct fv_guard *g, uint64_t before, uint64_t after)
{
    /* only behind a decision of the same request, which then gates the answer */
    if (g->ungated_hi == after && g->ungated_lo > before && g->decided_seq > before &&
        g->decided_seq < g->ungated_lo)
        return g->ungated_lo - 1;
    return after;
}

int fv_guard_pseudonym(const struct fv_guard *g, const char *purpose, const char *device,
                       char out[FV_PURPOSE_PSEUDONYM_LEN + 1])
{
    return fv_pseudonym_of_device(g->keys, g->pseudo_secret, purpose, device, out);
}

int fv_pseudonym_of_device(struct fv_keystore *ks, const unsigned char secret[32],
                           const char *purpose, const char *device,
                           char out[FV_PURPOSE_PSEUDONYM_LEN + 1])
{
    /* G10: of the device's current subject (owner period), keyed by that subject's data key:
     * a new owner gets new pseudonyms, and once the key is destroyed (erasure) the old ones
     * can neither be recomputed nor linked to whatever the device becomes. */
    char subject[FV_SUBJECT_NAME_MAX + 1], ps[FV_PSEUDONYM_LEN + 1];
    char hex[65], kid[FV_PURPOSE_PSEUDONYM_LEN + 1], material[FV_SUBJECT_NAME_MAX + 48];
    const unsigned char *dek = NULL;
    if (ks == NULL || fv_subject_current(ks, device, subject, NULL) != FV_OK)
        snprintf(subject, sizeof subject, "%s", device);
    int rc = ks ? fv_keystore_dek(ks, subject, 0, &dek, ps) : FV_ENOENT;
    if (rc == FV_OK) {
        for (size_t i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", dek[i]);
        rc = fv_pseudonym_for_purpose(secret, "fleetvault subject key", hex, kid);
        OPENSSL_cleanse(hex, sizeof hex);
        if (rc) return rc;
        snprintf(material, sizeof material, "%s|%s", subject, kid);
    } else if (rc == FV_ESTATE) { /* erased: a pseudonym linked to nothing that was */
        snprintf(material, sizeof material, "%s|erased", subject);
    } else { /* no key yet (nothing stored): the subject alone, until its first record */
        snprintf(material, sizeof material, "%s", subject);
    }
    return fv_pseudonym_for_purpose(secret, purpose, material, out);
}

void fv_guard_served_add_pseudonym(struct fv_guard_served *s, const char *pseudonym)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        char(*m)[33] = realloc(s->ps, nc * sizeof *m);
        if (m == NULL) {
            s->failed = 1;
            return;
        }
        s->ps = m;
        s->cap = nc;
    }
    snprintf(s->ps[s->n++], sizeof s->ps[0], "%s", pseudonym);
}

void fv_guard_served_add(struct fv_guard *g, struct fv_guard_served *s, const char *device)
{
    char ps[FV_PSEUDONYM_LEN + 1];
    if (g->keys == NULL || guard_pseudonym(g, device, ps) != FV_OK) {
        s->failed = 1;
        return;
    }
    fv_guard_served_add_pseudonym(s, ps);
}

void fv_guard_served_free(struct fv_guard_served *s)
{
    free(s->ps);
    memset(s, 0, sizeof *s);
}

void fv_guard_done_served(struct fv_guard *g, const struct fv_guard_ctx *ctx,
                          const struct fv_guard_served *s, uint64_t rows, uint64_t bytes)
{
    quota_count(g, ctx, rows, bytes);
    if (g->audit == NULL) return;
    size_t per = FV_GUARD_SUBJECTS_PER_ENTRY;
    size_t parts = s->n ? (s->n + per - 1) / per : 1;
    const char *pp[FV_GUARD_SUBJECTS_PER_ENTRY];
    uint64_t result_seq = 0;
    for (size_t k = 0; k < parts; k++) {
        size_t m = 0;
        for (size_t i = k * per; i < s->n && m < per; i++)
            pp[m++] = s->ps[i];
        char extra[160];
        if (k == 0)
            snprintf(extra, sizeof extra, "{\"subjects\":%zu,\"parts\":%zu%s}", s->n, parts,
                     s->failed ? ",\"incomplete\":true" : "");
        else
            snprintf(extra, sizeof extra, "{\"result_seq\":%llu,\"part\":%zu,\"parts\":%zu}",
                     (unsigned long long)result_seq, k + 1, parts);
        struct fv_audit_event ev = {
            .kind = k == 0 ? "access.result" : "access.subjects",
            .action = ctx->action[0] ? ctx->action : NULL,
            .principal = ctx->principal[0] ? ctx->principal : "unknown",
            .role = ctx->role[0] ? ctx->role : NULL,
            .purpose = ctx->purpose[0] ? ctx->purpose : NULL,
            .ticket = ctx->ticket[0] ? ctx->ticket : NULL,
            .subjects = m ? pp : NULL,
            .nsubjects = m,
            .rows = k == 0 ? rows : 0,
            .bytes = k == 0 ? bytes : 0,
            .result = "allow",
            .extra_json = extra,
        };
        if (fv_audit_append(g->audit, &ev, k == 0 ? &result_seq : NULL) != FV_OK) {
            fv_error("audit: %s; personal data is not served while the audit log fails",
                     fv_audit_last_error(g->audit));
            return;
        }
    }
}

void fv_guard_show_id(const struct fv_guard *g, const struct fv_guard_ctx *ctx, const char *id,
                      char *out)
{
    if (ctx && (ctx->d.obligations & FV_OBLIGE_PSEUDONYMISE)) {
        /* Never the id itself for a pseudonymising role, even if the pseudonym fails. */
        if (fv_guard_pseudonym(g, ctx->purpose, id, out) != FV_OK)
            snprintf(out, 65, "%s", "unavailable");
        return;
    }
    snprintf(out, 65, "%s", id);
}

int fv_guard_in_consent(const struct fv_guard_ctx *ctx, int64_t t)
{
    if (ctx == NULL || !ctx->consent_limited) return 1;
    for (size_t i = 0; i < ctx->nconsent; i++)
        if (t >= ctx->consent[i].from && t <= ctx->consent[i].to) return 1;
    return 0;
}

int fv_guard_consented(struct fv_guard *g, const struct fv_guard_ctx *ctx, const char *device,
                       int64_t t)
{
    if (g == NULL || ctx == NULL || !(ctx->d.obligations & FV_OBLIGE_CONSENTED_ONLY)) return 1;
    char subject[FV_SUBJECT_NAME_MAX + 1];
    struct fv_interval iv[1];
    size_t ni = 0;
    struct fv_purposes pp = {.policy = g->policy};
    if (fv_subject_current(g->keys, device, subject, NULL) != FV_OK) return 0;
    /* servable at t: consent held at t and holds now */
    if (fv_consent_servable(g->keys, &pp, subject, ctx->purpose, (int64_t)fv_now_ms(), t, t, iv, 1,
                            &ni) != FV_OK)
        return 0;
    return ni > 0;
}

size_t fv_guard_load_consent(struct fv_guard *g, struct fv_guard_ctx *ctx, const char *device,
                             int64_t from, int64_t to)
{
    ctx->consent_limited = 0;
    ctx->nconsent = 0;
    if (!(ctx->d.obligations & FV_OBLIGE_CONSENTED_ONLY)) return 1;
    char subject[FV_SUBJECT_NAME_MAX + 1];
    struct fv_interval iv[32];
    size_t ni = 0;
    struct fv_purposes pp = {.policy = g->policy};
    if (fv_subject_current(g->keys, device, subject, NULL) != FV_OK ||
        fv_consent_servable(g->keys, &pp, subject, ctx->purpose, (int64_t)fv_now_ms(), from, to, iv,
                            32, &ni) != FV_OK)
        ni = 0;
    ctx->consent_limited = 1;
    ctx->nconsent = ni;
    for (size_t i = 0; i < ni; i++)
        ctx->consent[i] = (struct fv_consent_range){iv[i].from, iv[i].to};
    return ni;
}

void fv_guard_load_zones(struct fv_guard *g, struct fv_guard_ctx *ctx, const char *device)
{
    ctx->nzones = 0;
    ctx->zones_state = 0;
    if (!(ctx->d.obligations & FV_OBLIGE_LOCATION_PRIVACY)) return;
    char subject[FV_SUBJECT_NAME_MAX + 1];
    size_t n = 0;
    if (fv_subject_current(g->keys, device, subject, NULL) != FV_OK ||
        fv_zones_load(g->keys, subject, ctx->zones, sizeof ctx->zones / sizeof ctx->zones[0], &n) !=
            FV_OK) {
        ctx->zones_state = -1; /* Z5: fail closed */
        return;
    }
    ctx->nzones = n;
    ctx->zones_state = 1;
}

const struct fv_value *fv_guard_oblige(const struct fv_guard_ctx *ctx, uint32_t field, int64_t t,
                                       const struct fv_value *v, struct fv_value *tmp)
{
    if (ctx == NULL || !(ctx->d.obligations & FV_OBLIGE_LOCATION_PRIVACY) || v->kind == FV_VK_NONE)
        return v;
    enum fv_place_kind pk = fv_signal_place(field);
    if (pk == FV_PLACE_NONE && v->kind != FV_VK_LOCATION) return v;
    *tmp = *v;
    tmp->kind = FV_VK_INVALID; /* withheld, unless a rule below serves it */
    /* G10: a place named by itself has no coarse form; GpsHeading follows the position. */
    if (pk == FV_PLACE_REVEALS || !ctx->trim_loaded || ctx->zones_state < 0 ||
        fv_guard_trimmed(ctx, t))
        return tmp;
    if (pk == FV_PLACE_HEADING || v->kind != FV_VK_LOCATION) {
        *tmp = *v;
        return tmp;
    }
    /* G7: nothing inside a privacy zone, the rest coarsened. */
    for (size_t z = 0; z < ctx->nzones; z++)
        if (fv_geo_distance_m(v->u.loc.lat, v->u.loc.lon, ctx->zones[z].lat, ctx->zones[z].lon) <=
            ctx->zones[z].radius_m)
            return tmp;
    tmp->u.loc = v->u.loc;
    if (ctx->grid_m > 0 &&
        fv_loc_coarsen_point(ctx->grid_m, &tmp->u.loc.lat, &tmp->u.loc.lon) != FV_OK)
        return tmp;
    tmp->kind = FV_VK_LOCATION;
    return tmp;
}

void fv_guard_loc_params(const struct fv_guard *g, const struct fv_guard_ctx *ctx,
                         struct fv_loc_params *p)
{
    fv_loc_params_default(p);
    p->zones = ctx->nzones ? ctx->zones : NULL;
    p->nzones = ctx->nzones;
    p->trim_m = g->trim_m > 0 ? g->trim_m : 0;
    if (g->trip_gap_ms > 0) p->trip_gap_ms = g->trip_gap_ms;
    p->stop_ms = g->stop_ms >= 0 ? g->stop_ms : 0;
    p->grid_m = g->grid_m;
}

int fv_guard_quota_more(struct fv_guard *g, const struct fv_guard_ctx *ctx, uint64_t rows,
                        uint64_t bytes, int audit_refusal, char *reason, size_t reasonlen)
{
    char qr[160] = "";
    if (fv_guard__quota_check(g, ctx, 0, rows, bytes, qr, sizeof qr) == FV_OK) return FV_OK;
    snprintf(reason, reasonlen, "quota: %s", qr);
    if (!audit_refusal) return FV_ELIMIT;
    int failed = 0;
    const char *s[1] = {ctx->subject};
    audit(g, ctx, "access", "deny", reason, ctx->subject[0] ? s : NULL, 1, NULL, 0, 0, 0, 0, rows,
          bytes, &failed);
    g->denied++;
    return failed ? FV_EIO : FV_ELIMIT;
}

void fv_guard_ctx_clear(struct fv_guard_ctx *ctx)
{
    free(ctx->trim);
    ctx->trim = NULL;
    ctx->ntrim = ctx->captrim = 0;
    ctx->trim_loaded = 0;
}

int fv_guard_trimmed(const struct fv_guard_ctx *ctx, int64_t t)
{
    if (ctx == NULL) return 0;
    size_t lo = 0, hi = ctx->ntrim; /* intervals are sorted and disjoint */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ctx->trim[mid].to < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ctx->ntrim && ctx->trim[lo].from <= t;
}
/* Access control: the policy, principals (in the catalog), the audit log and its signing
 * key (beside the master key file unless configured: never inside DATA by default when a
 * key file is used), quotas, and the per-purpose pseudonym secret. */
int fv_guard_open(struct fv_guard *g, const struct fv_config *cfg, struct fv_keystore *keys,
                  const char *admin_token, void (*audit_notify)(void *), void *notify_arg,
                  char *err, size_t errlen)
{
    memset(g, 0, sizeof *g);
    int rc = fv_policy_load(cfg->policy_file[0] ? cfg->policy_file : NULL, &g->policy, err, errlen);
    if (rc) return rc;
    g->db = fv_keystore_db(keys);
    g->keys = keys;
    rc = fv_principals_init(g->db, err, errlen);
    char qpath[PATH_MAX];
    snprintf(qpath, sizeof qpath, "%s/quota.db", cfg->data_dir);
    if (rc == FV_OK) rc = fv_guard__quota_open(g, qpath, err, errlen);
    if (rc == FV_OK)
        rc = fv_keystore_derive(keys, "fleetvault purpose pseudonyms v1", g->pseudo_secret);
    if (rc) return rc;
    g->admin_token = admin_token;
    g->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL); /* NULL: SHA256() at each request */
    g->trim_m = cfg->loc_trim_m;
    g->grid_m = cfg->loc_grid_m;
    g->trip_gap_ms = (int64_t)cfg->loc_trip_gap_ms;
    g->stop_ms = (int64_t)cfg->loc_stop_ms;
    char key[PATH_MAX], pub[PATH_MAX + 8], dir[PATH_MAX];
    if (cfg->audit_key[0]) {
        snprintf(key, sizeof key, "%s", cfg->audit_key);
    } else if (cfg->key_file[0]) {
        snprintf(key, sizeof key, "%s.audit.pem", cfg->key_file);
    } else {
        snprintf(key, sizeof key, "%s/audit-signing.pem", cfg->data_dir);
        fv_warn("audit: the signing key is kept in the data directory (%s): give the master key "
                "as a file, or set audit_key, to keep it apart",
                key);
    }
    snprintf(pub, sizeof pub, "%s.pub", key);
    if (access(key, F_OK) != 0) {
        rc = fv_audit_keygen(key, pub, err, errlen);
        if (rc) return rc;
        fv_info("audit: made the signing key %s; give %s to the witness", key, pub);
    }
    snprintf(dir, sizeof dir, "%s/audit", cfg->data_dir);
    snprintf(g->audit_dir, sizeof g->audit_dir, "%s", dir);
    struct fv_audit_opts ao = {.key_path = key,
                               .retention_ms = cfg->audit_retention_ms,
                               .prealloc_bytes = cfg->audit_prealloc_bytes
                                                     ? cfg->audit_prealloc_bytes
                                                     : FV_AUDIT_NO_PREALLOC,
                               .witness_path = cfg->audit_witness[0] ? cfg->audit_witness : NULL,
                               .group_commit = audit_notify != NULL,
                               .notify = audit_notify,
                               .notify_arg = notify_arg};
    rc = fv_audit_open(dir, &ao, &g->audit, err, errlen);
    if (rc == FV_OK) fv_guard_principal_events(g); /* made while the server was stopped */
    return rc;
}

void fv_guard_close(struct fv_guard *g)
{
    if (g->audit && g->unauth_unlogged) unauth_sample(g);
    if (g->audit && fv_audit_close(g->audit) != FV_OK)
        fv_warn("audit: closing: the final checkpoint failed");
    g->audit = NULL;
    fv_guard__quota_close(g);
    sqlite3_finalize(g->version_stmt);
    EVP_MD_free(g->sha256);
    if (g->policy) fv_policy_free(g->policy);
    OPENSSL_cleanse(g->pseudo_secret, sizeof g->pseudo_secret);
    memset(g, 0, sizeof *g);
}
