/*
 * policy.c - see policy.h. Decisions on a loaded policy (rules P1-P7 in policy.h) and the
 * accessors behind them, action names, per-principal daily quotas, purpose-bound
 * pseudonyms. The policy file - the built-in default, parsing and validation - is in
 * policy_file.c; the two share the private policy_int.h.
 *
 * The policy is parsed once into fixed arrays (no pointers into the JSON), so a loaded
 * policy is a plain immutable value. Names are indices into those arrays: a request's
 * class mask has bit i for class i, a role's purposes likewise.
 *
 * Threads: a policy is immutable, so decisions and accessors may run on any thread; a
 * struct fv_quota has one owner at a time; pseudonyms are reentrant.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "privacy/policy.h"
#include "privacy/policy_int.h"
#include "util/err.h"
#include "util/map.h"

#define DAY_MS 86400000ull

static const char *const ACTION_NAMES[FV_ACTION_COUNT] = {"read", "export", "erase", "audit",
                                                          "admin"};

const char *fv_action_name(enum fv_action a)
{
    return (unsigned)a < FV_ACTION_COUNT ? ACTION_NAMES[a] : "unknown";
}

int fv_action_parse(const char *name, enum fv_action *out)
{
    for (int i = 0; name != NULL && i < FV_ACTION_COUNT; i++)
        if (strcmp(name, ACTION_NAMES[i]) == 0) {
            *out = (enum fv_action)i;
            return FV_OK;
        }
    return FV_EINVAL;
}

/* ---- shared with policy_file.c ----------------------------------------------------- */

/* Copies s for a message: at most 48 bytes, anything unprintable as '?', so neither a
 * policy file nor a request can put control characters into a log line. */
const char *fv_policy__printable(char out[52], const char *s)
{
    size_t i = 0;
    if (s == NULL) s = "";
    for (; s[i] != '\0' && i < 48; i++)
        out[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
    if (s[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

int fv_policy__find_name(const char (*names)[FV_POLICY_NAME_MAX + 1], size_t n, const char *name)
{
    for (size_t i = 0; name != NULL && i < n; i++)
        if (strcmp(names[i], name) == 0) return (int)i;
    return -1;
}

/* ---- accessors ---------------------------------------------------------------------- */

static const struct role *role_by_name(const struct fv_policy *p, const char *name)
{
    for (size_t i = 0; name != NULL && i < p->nroles; i++)
        if (strcmp(p->role[i].name, name) == 0) return &p->role[i];
    return NULL;
}

int fv_policy_role_id(const struct fv_policy *p, const char *name)
{
    const struct role *r = role_by_name(p, name);
    return r ? (int)(r - p->role) : -1;
}

int fv_policy_purpose_id(const struct fv_policy *p, const char *name)
{
    return fv_policy__find_name(p->purpose, p->npurposes, name);
}

int fv_policy_class_id(const struct fv_policy *p, const char *name)
{
    return fv_policy__find_name(p->class_name, p->nclasses, name);
}

size_t fv_policy_nroles(const struct fv_policy *p)
{
    return p->nroles;
}

size_t fv_policy_npurposes(const struct fv_policy *p)
{
    return p->npurposes;
}

size_t fv_policy_nclasses(const struct fv_policy *p)
{
    return p->nclasses;
}

const char *fv_policy_role_name(const struct fv_policy *p, size_t i)
{
    return i < p->nroles ? p->role[i].name : NULL;
}

const char *fv_policy_purpose_name(const struct fv_policy *p, size_t i)
{
    return i < p->npurposes ? p->purpose[i] : NULL;
}

const char *fv_policy_class_name(const struct fv_policy *p, size_t i)
{
    return i < p->nclasses ? p->class_name[i] : NULL;
}

uint32_t fv_policy_classes(const struct fv_policy *p, const char *role, const char *purpose)
{
    const struct role *r = role_by_name(p, role);
    int pid = fv_policy_purpose_id(p, purpose);
    return r != NULL && pid >= 0 ? r->classes[pid] : 0;
}

int fv_policy_aggregate_limits(const struct fv_policy *p, const char *role, uint64_t *min_step_ms,
                               uint64_t *min_records)
{
    const struct role *r = role_by_name(p, role);
    if (r == NULL || !r->aggregate_only) return 0;
    *min_step_ms = r->agg_min_step_ms;
    *min_records = r->agg_min_records;
    return 1;
}

unsigned fv_policy_role_obligations(const struct fv_policy *p, const char *role)
{
    const struct role *r = role_by_name(p, role);
    if (r == NULL) return 0;
    return (r->pseudonymise ? FV_OBLIGE_PSEUDONYMISE : 0) |
           (r->aggregate_only ? FV_OBLIGE_AGGREGATE_ONLY : 0) |
           (r->location_privacy ? FV_OBLIGE_LOCATION_PRIVACY : 0) |
           (r->consented_only ? FV_OBLIGE_CONSENTED_ONLY : 0) |
           (r->energy_sites_only ? FV_OBLIGE_ENERGY_SITES_ONLY : 0);
}

int fv_policy_role_reaches_data(const struct fv_policy *p, const char *role)
{
    const struct role *r = role_by_name(p, role);
    if (r == NULL) return 1; /* unknown: the cautious answer */
    return (r->actions & ~(1u << FV_ACTION_ADMIN)) != 0 || r->approves_bulk;
}

int fv_policy_role_approves(const struct fv_policy *p, const char *role)
{
    const struct role *r = role_by_name(p, role);
    return r != NULL && r->approves_bulk;
}

int fv_policy_quota(const struct fv_policy *p, const char *role, struct fv_quota_limits *out)
{
    const struct role *r = role_by_name(p, role);
    if (r == NULL) return FV_ENOENT;
    *out = r->quota;
    return FV_OK;
}

int fv_policy_role_quota(const struct fv_policy *p, const char *role, struct fv_quota_limits *out)
{
    const struct role *r = role_by_name(p, role);
    if (r == NULL) return FV_ENOENT;
    *out = r->role_quota;
    return FV_OK;
}

/* ---- decisions ---------------------------------------------------------------------- */

static void say(struct fv_decision *d, bool allow, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(struct fv_decision *d, bool allow, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof d->reason, fmt, ap);
    va_end(ap);
    d->allow = allow;
    if (!allow) d->obligations = 0;
}

static bool empty(const char *s)
{
    return s == NULL || *s == '\0';
}

static const char NEEDS_TICKET[] = "needs a ticket";

/* P4: NULL if t is a usable ticket; NEEDS_TICKET if it is missing or blank; else why it is
 * malformed (too long, or control characters, which could forge lines in a log). */
static const char *ticket_problem(const char *t)
{
    if (t == NULL) return NEEDS_TICKET;
    size_t n = strnlen(t, FV_POLICY_TICKET_MAX + 1);
    if (n > FV_POLICY_TICKET_MAX) return "gave a ticket longer than 128 bytes";
    bool blank = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)t[i];
        if (ch < 0x20 || ch == 0x7f) return "gave a ticket with control characters";
        if (!isspace(ch)) blank = false;
    }
    return blank ? NEEDS_TICKET : NULL;
}

static const char *const ACTION_DENIED[FV_ACTION_COUNT] = {
    "may not read personal data", "may not export a subject's data", "may not erase subjects",
    "may not read the access log", "may not administer fleetvault"};

void fv_policy_decide(const struct fv_policy *p, const struct fv_access_request *req,
                      struct fv_decision *out)
{
    memset(out, 0, sizeof *out);
    char role_s[52], x[52];
    const struct role *r = role_by_name(p, req->role);
    /* P1 */
    if (r == NULL) {
        say(out, false, empty(req->role) ? "no role" : "unknown role \"%s\"",
            fv_policy__printable(role_s, req->role));
        return;
    }
    out->quota = r->quota;
    out->role_quota = r->role_quota;
    const char *role = r->name;
    enum fv_action a = req->action;
    if ((unsigned)a >= FV_ACTION_COUNT) {
        say(out, false, "unknown action");
        return;
    }
    if (!(r->actions & (1u << a))) {
        say(out, false, "role %s %s", role, ACTION_DENIED[a]);
        return;
    }
    if (a == FV_ACTION_ADMIN) {
        say(out, true, "role %s may administer fleetvault", role);
        return;
    }
    int pid = -1;
    if (a == FV_ACTION_READ) {
        /* P2 */
        if (empty(req->purpose)) {
            say(out, false, "purpose required");
            return;
        }
        pid = fv_policy_purpose_id(p, req->purpose);
        if (pid < 0) {
            say(out, false, "unknown purpose \"%s\"", fv_policy__printable(x, req->purpose));
            return;
        }
        if (!(r->purposes & (1u << pid))) {
            say(out, false, "role %s may not use purpose %s", role, p->purpose[pid]);
            return;
        }
        /* P3 */
        out->classes = r->classes[pid];
        if (req->classes == 0) {
            say(out, false, "no data class requested");
            return;
        }
        uint32_t extra = req->classes & ~r->classes[pid];
        if (extra) {
            int cid = __builtin_ctz(extra);
            if ((size_t)cid >= p->nclasses)
                say(out, false, "unknown data class (bit %d)", cid);
            else
                say(out, false, "role %s may not read class %s for purpose %s", role,
                    p->class_name[cid], p->purpose[pid]);
            return;
        }
    }
    /* P4 */
    const char *why = ticket_problem(req->ticket);
    if (why != NULL && (r->requires_ticket || why != NEEDS_TICKET)) {
        say(out, false, "%s %s", role, why);
        return;
    }
    if (a == FV_ACTION_AUDIT) {
        say(out, true, "role %s may read the access log", role);
        return;
    }
    /* P5 */
    const char *verb = a == FV_ACTION_READ ? "read" : a == FV_ACTION_EXPORT ? "export" : "erase";
    if (req->subjects == 0) {
        say(out, false, "request names no subject");
        return;
    }
    if (req->subjects > r->max_subjects) {
        if (r->max_subjects == 1)
            say(out, false, "%s may %s one subject per request (asked for %llu)", role, verb,
                (unsigned long long)req->subjects);
        else
            say(out, false, "%s may %s at most %llu subjects per request (asked for %llu)", role,
                verb, (unsigned long long)r->max_subjects, (unsigned long long)req->subjects);
        return;
    }
    /* P6 */
    if (a == FV_ACTION_READ && r->aggregate_only && !req->aggregated) {
        say(out, false, "role %s may read aggregated results only", role);
        return;
    }
    if (a == FV_ACTION_READ && r->energy_sites_only && !req->energy_sites_only) {
        say(out, false, "role %s may read energy sites only", role);
        return;
    }
    /* P7 */
    uint64_t today =
        req->subjects > UINT64_MAX - req->bulk_today ? UINT64_MAX : req->subjects + req->bulk_today;
    if (today > r->bulk_threshold) {
        if (empty(req->approved_by)) {
            char earlier[96] = "";
            if (req->bulk_today)
                snprintf(earlier, sizeof earlier,
                         " a day without approval; %llu were asked for earlier today",
                         (unsigned long long)req->bulk_today);
            say(out, false,
                "%s %llu subjects needs a second principal's approval (role %s: more than %llu%s)",
                a == FV_ACTION_READ     ? "reading"
                : a == FV_ACTION_EXPORT ? "exporting"
                                        : "erasing",
                (unsigned long long)req->subjects, role, (unsigned long long)r->bulk_threshold,
                earlier);
            return;
        }
        if (!empty(req->principal) && strcmp(req->approved_by, req->principal) == 0) {
            say(out, false, "a principal may not approve its own bulk request");
            return;
        }
        const struct role *ar = role_by_name(p, req->approver_role);
        if (ar == NULL || !ar->approves_bulk) {
            say(out, false, "approver %s (role %s) may not approve bulk requests",
                fv_policy__printable(x, req->approved_by),
                fv_policy__printable(role_s, req->approver_role));
            return;
        }
        out->bulk = true;
    }
    if (a == FV_ACTION_READ) {
        out->obligations = fv_policy_role_obligations(p, role);
        say(out, true, "role %s may read for purpose %s%s%s", role, p->purpose[pid],
            out->bulk ? ", bulk approved by " : "",
            out->bulk ? fv_policy__printable(x, req->approved_by) : "");
    } else {
        say(out, true, "role %s may %s%s%s", role, verb, out->bulk ? ", bulk approved by " : "",
            out->bulk ? fv_policy__printable(x, req->approved_by) : "");
    }
}

/* ---- quotas ------------------------------------------------------------------------- */

struct fv_quota {
    struct fv_map by_principal; /* principal name incl. its NUL -> struct fv_quota_usage */
};

int fv_quota_new(struct fv_quota **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? FV_OK : FV_ENOMEM;
}

void fv_quota_free(struct fv_quota *q)
{
    if (q == NULL) return;
    for (size_t i = 0; i < q->by_principal.cap; i++)
        if (q->by_principal.slots[i].hash) free(q->by_principal.slots[i].val);
    fv_map_free(&q->by_principal);
    free(q);
}

static struct fv_quota_usage *usage_of(const struct fv_quota *q, const char *principal)
{
    return fv_map_get(&q->by_principal, principal, strlen(principal) + 1);
}

void fv_quota_get(const struct fv_quota *q, const char *principal, uint64_t now_ms,
                  struct fv_quota_usage *out)
{
    const struct fv_quota_usage *u = usage_of(q, principal);
    int64_t day = (int64_t)(now_ms / DAY_MS);
    if (u != NULL && u->day == day) {
        *out = *u;
    } else {
        memset(out, 0, sizeof *out);
        out->day = day;
    }
}

/* Over the limit if already at it, or if want more than what is left. */
static bool over(uint64_t used, uint64_t want, uint64_t lim)
{
    if (lim == FV_UNLIMITED) return false;
    return used >= lim || want > lim - used;
}

int fv_quota_check_usage(const char *name, const struct fv_quota_usage *u,
                         const struct fv_quota_limits *lim, uint64_t subjects, uint64_t rows,
                         uint64_t bytes, char *reason, size_t reasonlen)
{
    const char *what[3] = {"subjects", "rows", "bytes"};
    uint64_t used[3] = {u->subjects, u->rows, u->bytes}, want[3] = {subjects, rows, bytes};
    uint64_t limit[3] = {lim->subjects_per_day, lim->rows_per_day, lim->bytes_per_day};
    char shown[52];
    for (int i = 0; i < 3; i++)
        if (over(used[i], want[i], limit[i])) {
            fv_seterr(reason, reasonlen,
                      "daily quota of %s: %s_per_day %llu would be exceeded (used %llu today "
                      "UTC, this request %llu)",
                      fv_policy__printable(shown, name), what[i], (unsigned long long)limit[i],
                      (unsigned long long)used[i], (unsigned long long)want[i]);
            return FV_ELIMIT;
        }
    return FV_OK;
}

int fv_quota_check(const struct fv_quota *q, const char *principal,
                   const struct fv_quota_limits *lim, uint64_t now_ms, uint64_t subjects,
                   uint64_t rows, uint64_t bytes, char *reason, size_t reasonlen)
{
    struct fv_quota_usage u;
    fv_quota_get(q, principal, now_ms, &u);
    return fv_quota_check_usage(principal, &u, lim, subjects, rows, bytes, reason, reasonlen);
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

void fv_quota_usage_add(struct fv_quota_usage *into, const struct fv_quota_usage *u)
{
    into->subjects = sat_add(into->subjects, u->subjects);
    into->rows = sat_add(into->rows, u->rows);
    into->bytes = sat_add(into->bytes, u->bytes);
    into->bulk = sat_add(into->bulk, u->bulk);
}

int fv_quota_add(struct fv_quota *q, const char *principal, uint64_t now_ms, uint64_t subjects,
                 uint64_t rows, uint64_t bytes)
{
    struct fv_quota_usage *u = usage_of(q, principal);
    int64_t day = (int64_t)(now_ms / DAY_MS);
    if (u == NULL) {
        u = calloc(1, sizeof *u);
        if (u == NULL) return FV_ENOMEM;
        u->day = day;
        if (fv_map_put(&q->by_principal, principal, strlen(principal) + 1, u) != FV_OK) {
            free(u);
            return FV_ENOMEM;
        }
    }
    if (u->day != day) {
        memset(u, 0, sizeof *u);
        u->day = day;
    }
    u->subjects = sat_add(u->subjects, subjects);
    u->rows = sat_add(u->rows, rows);
    u->bytes = sat_add(u->bytes, bytes);
    return FV_OK;
}

int fv_quota_add_bulk(struct fv_quota *q, const char *principal, uint64_t now_ms, uint64_t subjects)
{
    int rc = fv_quota_add(q, principal, now_ms, 0, 0, 0);
    if (rc) return rc;
    struct fv_quota_usage *u = usage_of(q, principal);
    u->bulk = sat_add(u->bulk, subjects);
    return FV_OK;
}

int fv_quota_set(struct fv_quota *q, const char *principal, const struct fv_quota_usage *in)
{
    struct fv_quota_usage *u = usage_of(q, principal);
    if (u == NULL) {
        u = malloc(sizeof *u);
        if (u == NULL) return FV_ENOMEM;
        if (fv_map_put(&q->by_principal, principal, strlen(principal) + 1, u) != FV_OK) {
            free(u);
            return FV_ENOMEM;
        }
    }
    *u = *in;
    return FV_OK;
}

int fv_quota_foreach(const struct fv_quota *q,
                     int (*fn)(void *arg, const char *principal, const struct fv_quota_usage *u),
                     void *arg)
{
    for (size_t i = 0; i < q->by_principal.cap; i++) {
        const struct fv_map_slot *s = &q->by_principal.slots[i];
        if (s->hash == 0) continue;
        int rc = fn(arg, s->key, s->val);
        if (rc) return rc;
    }
    return FV_OK;
}

/* ---- pseudonyms --------------------------------------------------------------------- */

int fv_pseudonym_for_purpose(const unsigned char secret[32], const char *purpose, const char *id,
                             char out[FV_PURPOSE_PSEUDONYM_LEN + 1])
{
    out[0] = '\0';
    if (empty(purpose) || empty(id)) return FV_EINVAL;
    int rc = FV_EIO;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    unsigned char md[EVP_MAX_MD_SIZE], zero = 0;
    size_t mdlen = 0;
    if (ctx != NULL && EVP_MAC_init(ctx, secret, 32, params) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)purpose, strlen(purpose)) == 1 &&
        EVP_MAC_update(ctx, &zero, 1) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) == 1 &&
        EVP_MAC_final(ctx, md, &mdlen, sizeof md) == 1 && mdlen >= FV_PURPOSE_PSEUDONYM_LEN / 2) {
        for (int i = 0; i < FV_PURPOSE_PSEUDONYM_LEN / 2; i++)
            snprintf(out + 2 * i, 3, "%02x", md[i]);
        rc = FV_OK;
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    OPENSSL_cleanse(md, sizeof md);
    return rc;
}
