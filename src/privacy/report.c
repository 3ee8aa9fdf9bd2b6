/*
 * report.c - records of processing (GDPR Art. 30): see report.h for the JSON it builds.
 *
 * Every statement in the report is derived from the configuration, the policy or the
 * catalog, or describes what the code does whatever the configuration (the security
 * measures). When the code changes what it does, the texts below must change with it:
 * they are the record's claims, and a record that claims more than the system does is
 * worse than none. Gaps the configuration leaves are listed as warnings, not hidden.
 *
 * The policy is read once from its file; the same bytes are checked by fv_policy_parse
 * (so a policy the server would refuse is refused here) and read by jansson for what the
 * policy API does not expose (actions, tickets, obligations, comments).
 *
 * Building never stops half-way on out-of-memory: every insertion records failure in the
 * builder (struct rb) and the result is thrown away at the end if one failed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "os/fsio.h"
#include "privacy/policy.h"
#include "privacy/principals.h"
#include "privacy/report.h"
#include "privacy/subjects.h"
#include "util/err.h"
#include "wire/payload.h"
#include "wire/signals.h"

#define DAY_MS  86400000ull
#define HOUR_MS 3600000ull
#define MIN_MS  60000ull

/* What location privacy does today (api.c fv_api_oblige: COARSE_GRID_M). Privacy zones
 * (privacy/zones.h) are kept per owner; say so here once the API applies them. */
static const char LOCATION_PRIVACY_TEXT[] =
    "locations served to a location-private role are withheld inside the owner's privacy "
    "zones (home, work: `fleetvault subject zone`), and elsewhere snapped to a 1 km grid (the "
    "same place always gives the same cell, so coarse points do not average back to a "
    "precise one); if the zones cannot be read, no location of that owner is served";

/* Descriptions of the built-in purposes (policy.h, subjects.h); others have none. */
static const char *purpose_description(const char *name)
{
    static const char *const d[][2] = {
        {"service", "servicing the vehicle or site under the owner's contract: diagnostics, "
                    "support tickets, the owner's own view of their device"},
        {"location_history", "the owner's history of places and trips"},
        {"clips", "camera clips and the events around them"},
        {"model_training", "training and evaluating models on fleet data"},
        {"energy_programs", "energy programmes (grid services) of enrolled energy sites"},
    };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        if (strcmp(d[i][0], name) == 0) return d[i][1];
    return NULL;
}

/* ---- builder ------------------------------------------------------------------------------ */

struct rb {
    int oom;
};

/* v, counting a NULL as out of memory. */
static json_t *J(struct rb *b, json_t *v)
{
    if (v == NULL) b->oom = 1;
    return v;
}

/* o[k] = v (stolen, also on failure). */
static void set(struct rb *b, json_t *o, const char *k, json_t *v)
{
    if (v == NULL || json_object_set_new(o, k, v) != 0) b->oom = 1;
}

/* a += v (stolen, also on failure). */
static void push(struct rb *b, json_t *a, json_t *v)
{
    if (v == NULL || json_array_append_new(a, v) != 0) b->oom = 1;
}

/* A JSON string of s; a path that is not UTF-8 is named as such rather than failing. */
static json_t *str(const char *s)
{
    json_t *v = json_string(s);
    return v ? v : json_string("(not UTF-8)");
}

static json_t *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *strf(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return str(buf);
}

static void warn(struct rb *b, json_t *warnings, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn(struct rb *b, json_t *warnings, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    push(b, warnings, str(buf));
}

/* RFC 3339, UTC, milliseconds. */
static void fmt_time(int64_t ms, char *out, size_t n)
{
    if (ms < 0 || ms >= 253402300800000) { /* before 1970, after 9999 */
        snprintf(out, n, "%lld ms", (long long)ms);
        return;
    }
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static json_t *time_json(int64_t ms)
{
    char t[48];
    fmt_time(ms, t, sizeof t);
    return str(t);
}

/* "730 days", "12 hours", "90 minutes", "45 s", "forever" (0). */
static void fmt_duration(uint64_t ms, char *out, size_t n)
{
    if (ms == 0)
        snprintf(out, n, "forever");
    else if (ms % DAY_MS == 0)
        snprintf(out, n, "%llu day%s", (unsigned long long)(ms / DAY_MS), ms == DAY_MS ? "" : "s");
    else if (ms % HOUR_MS == 0)
        snprintf(out, n, "%llu hour%s", (unsigned long long)(ms / HOUR_MS),
                 ms == HOUR_MS ? "" : "s");
    else if (ms % MIN_MS == 0)
        snprintf(out, n, "%llu minute%s", (unsigned long long)(ms / MIN_MS),
                 ms == MIN_MS ? "" : "s");
    else
        snprintf(out, n, "%.3f s", (double)ms / 1000.0);
}

static json_t *limit_json(uint64_t v)
{
    return v == FV_UNLIMITED ? json_null() : json_integer((json_int_t)v);
}

static int in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(list[i], s) == 0) return 1;
    return 0;
}

/* Class names of a policy class mask, as a JSON array. */
static json_t *class_names(struct rb *b, const struct fv_policy *pol, uint32_t mask)
{
    json_t *a = J(b, json_array());
    for (size_t c = 0; a && c < fv_policy_nclasses(pol) && c < 32; c++)
        if (mask & (1u << c)) push(b, a, str(fv_policy_class_name(pol, c)));
    return a;
}

/* ---- inputs ------------------------------------------------------------------------------- */

struct ctx {
    struct rb b;
    const struct fv_report_input *in;
    const struct fv_config *cfg;
    const struct fv_policy *pol;
    json_t *pj;       /* the policy as JSON */
    json_t *warnings; /* array */
    const char *const *contract;
    json_t *principals; /* array, from the catalog */
    char *err;
    size_t errlen;
};

static json_t *role_json(const struct ctx *c, const char *role)
{
    return json_object_get(json_object_get(c->pj, "roles"), role);
}

static int role_flag(const struct ctx *c, const char *role, const char *key)
{
    return json_is_true(json_object_get(role_json(c, role), key));
}

/* The action list of role includes action. */
static int role_may(const struct ctx *c, const char *role, const char *action)
{
    json_t *acts = json_object_get(role_json(c, role), "actions"), *a;
    size_t i;
    json_array_foreach(acts, i, a)
    {
        if (json_is_string(a) && strcmp(json_string_value(a), action) == 0) return 1;
    }
    return 0;
}

static json_t *obligations_json(struct ctx *c, const char *role)
{
    static const char *const keys[] = {"pseudonymise", "aggregate_only", "location_privacy",
                                       "consented_only", "energy_sites_only"};
    json_t *o = J(&c->b, json_object());
    for (size_t i = 0; o && i < sizeof keys / sizeof keys[0]; i++)
        set(&c->b, o, keys[i], json_boolean(role_flag(c, role, keys[i])));
    return o;
}

/* Reads the policy file (or the built-in text) once, checks it as the server would, and
 * keeps its JSON. */
static int load_policy(const struct fv_config *cfg, struct fv_policy **pol, json_t **pj,
                       char *err, size_t errlen)
{
    *pol = NULL;
    *pj = NULL;
    char *text = NULL;
    size_t len = 0;
    const char *src = cfg->policy_file[0] ? cfg->policy_file : "built-in policy";
    int rc;
    if (cfg->policy_file[0]) {
        rc = fv_os_read_file(cfg->policy_file, FV_POLICY_FILE_MAX, &text, &len, err, errlen);
        if (rc == FV_ELIMIT) rc = FV_EINVAL;
        if (rc) return rc;
    } else {
        const char *t = fv_policy_default_json();
        len = strlen(t);
        if ((text = strdup(t)) == NULL) return FV_ENOMEM;
    }
    rc = fv_policy_parse(text, len, src, pol, err, errlen);
    if (rc == FV_OK) {
        json_error_t je;
        *pj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (*pj == NULL) { /* fv_policy_parse accepted it: only memory can fail here */
            fv_seterr(err, errlen, "%s: %s", src, je.text);
            rc = FV_ENOMEM;
        }
    }
    if (rc) {
        fv_policy_free(*pol);
        *pol = NULL;
    }
    free(text);
    return rc;
}

static int table_exists(sqlite3 *db, const char *name, int *exists)
{
    sqlite3_stmt *st = NULL;
    *exists = 0;
    int rc = FV_EIO;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        *exists = sqlite3_column_int(st, 0) > 0;
        rc = FV_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* One integer from sql (no parameters). */
static int count(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = FV_EIO;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = FV_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static int add_principal(void *arg, const struct fv_principal *p)
{
    struct ctx *c = arg;
    struct rb *b = &c->b;
    json_t *o = J(b, json_object());
    if (o == NULL) return FV_ENOMEM;
    int known = fv_policy_role_id(c->pol, p->role) >= 0;
    set(b, o, "name", str(p->name));
    set(b, o, "role", str(p->role));
    set(b, o, "created", p->created_ms ? time_json(p->created_ms) : json_null());
    set(b, o, "created_ms", json_integer((json_int_t)p->created_ms));
    set(b, o, "created_by", p->created_by[0] ? str(p->created_by) : json_null());
    set(b, o, "revoked", p->revoked_ms ? time_json(p->revoked_ms) : json_null());
    set(b, o, "revoked_ms", p->revoked_ms ? json_integer((json_int_t)p->revoked_ms) : json_null());
    set(b, o, "status", str(p->revoked_ms ? "revoked" : "active"));
    set(b, o, "role_in_policy", json_boolean(known));
    if (!known && !p->revoked_ms)
        warn(b, c->warnings,
             "principal %s has role %s, which the policy does not define: the policy denies it "
             "everything; revoke it or give the role a definition",
             p->name, p->role);
    push(b, c->principals, o);
    return b->oom ? FV_ENOMEM : FV_OK;
}

/* Principals and subject counts from the catalog (read only). */
static int read_catalog(struct ctx *c, json_t *counts)
{
    sqlite3 *db = (sqlite3 *)c->in->catalog;
    struct rb *b = &c->b;
    if (db == NULL) return FV_OK;
    int has;
    int rc = table_exists(db, "principals", &has);
    if (rc == FV_OK && has) rc = fv_principal_list(db, add_principal, c, c->err, c->errlen);
    if (rc) {
        if (rc == FV_EIO && !c->err[0])
            fv_seterr(c->err, c->errlen, "catalog: %s", sqlite3_errmsg(db));
        return rc;
    }
    int64_t n;
    /* Counts only: how many, never who. */
    if ((rc = table_exists(db, "subject_keys", &has)) == FV_OK && has) {
        if ((rc = count(db, "SELECT count(*) FROM subject_keys WHERE destroyed_ms IS NULL", &n)) ==
            FV_OK)
            set(b, counts, "subjects_with_data_keys", json_integer((json_int_t)n));
        if (rc == FV_OK &&
            (rc = count(db, "SELECT count(*) FROM subject_keys WHERE destroyed_ms IS NOT NULL",
                        &n)) == FV_OK)
            set(b, counts, "subjects_erased", json_integer((json_int_t)n));
    }
    if (rc == FV_OK && (rc = table_exists(db, "subject_periods", &has)) == FV_OK && has) {
        if ((rc = count(db, "SELECT count(DISTINCT device) FROM subject_periods", &n)) == FV_OK)
            set(b, counts, "devices_with_recorded_owners", json_integer((json_int_t)n));
        if (rc == FV_OK && (rc = count(db, "SELECT count(*) FROM subject_periods", &n)) == FV_OK)
            set(b, counts, "recorded_owner_periods", json_integer((json_int_t)n));
    }
    if (rc == FV_OK && (rc = table_exists(db, "privacy_zones", &has)) == FV_OK && has &&
        (rc = count(db, "SELECT count(DISTINCT subject) FROM privacy_zones", &n)) == FV_OK)
        set(b, counts, "subjects_with_privacy_zones", json_integer((json_int_t)n));
    if (rc) fv_seterr(c->err, c->errlen, "catalog: %s", sqlite3_errmsg(db));
    return rc;
}

/* ---- sections ----------------------------------------------------------------------------- */

static json_t *purposes_section(struct ctx *c)
{
    struct rb *b = &c->b;
    const struct fv_policy *pol = c->pol;
    json_t *out = J(b, json_array());
    for (size_t i = 0; out && i < fv_policy_npurposes(pol); i++) {
        const char *p = fv_policy_purpose_name(pol, i);
        int contract = in_list(c->contract, p);
        const char *desc = purpose_description(p);
        json_t *o = J(b, json_object()), *roles = J(b, json_array());
        uint32_t all = 0;
        for (size_t r = 0; roles && r < fv_policy_nroles(pol); r++) {
            const char *role = fv_policy_role_name(pol, r);
            uint32_t m = fv_policy_classes(pol, role, p);
            if (m == 0 || !role_may(c, role, "read")) continue;
            all |= m;
            json_t *ro = J(b, json_object());
            if (ro == NULL) continue;
            set(b, ro, "role", str(role));
            set(b, ro, "classes", class_names(b, pol, m));
            set(b, ro, "obligations", obligations_json(c, role));
            push(b, roles, ro);
            if (!contract && !role_flag(c, role, "consented_only"))
                warn(b, c->warnings,
                     "role %s reads purpose %s, which rests on consent, without consented_only: "
                     "it may read subjects who never consented",
                     role, p);
        }
        if (o == NULL) {
            json_decref(roles);
            continue;
        }
        set(b, o, "name", str(p));
        set(b, o, "description", desc ? str(desc) : json_null());
        set(b, o, "contract", json_boolean(contract));
        set(b, o, "legal_basis",
            str(contract ? "contract (GDPR Art. 6(1)(b)): necessary for the service the owner "
                           "asked for; always granted, cannot be withdrawn short of erasure"
                         : "consent (GDPR Art. 6(1)(a)): per subject and purpose, time-stamped, "
                           "withdrawable (fleetvault subject consent); nothing recorded means "
                           "no consent"));
        set(b, o, "roles", roles);
        set(b, o, "classes", class_names(b, pol, all));
        push(b, out, o);
    }
    return out;
}

/* Signals that reveal where the subject is or goes without being a location value: the API
 * coarsens location values only (fv_api_oblige), so these reach location-private roles
 * as they are unless their class keeps them from such roles. */
static const char *const place_signals[] = {
    "OriginLocation",    "DestinationLocation", "GpsHeading", "LocatedAtHome", "LocatedAtWork",
    "LocatedAtFavorite", "DestinationName",     "RouteLine",  "HomelinkNearby"};

/* Warns of place-revealing signals outside the class that holds Location. */
static void place_warnings(struct ctx *c)
{
    const struct fv_store_config *s = &c->cfg->store;
    long loc = fv_signal_lookup("Location");
    if (loc < 0 || loc >= FV_STORE_FIELD_TABLE) return;
    unsigned lc = s->class_of[loc];
    for (uint32_t k = 0; k < s->nclasses && k < FV_STORE_MAX_CLASSES; k++) {
        if (k == lc) continue;
        char list[512] = "";
        size_t used = 0;
        for (size_t i = 0; i < sizeof place_signals / sizeof place_signals[0]; i++) {
            long f = fv_signal_lookup(place_signals[i]);
            if (f < 0 || f >= FV_STORE_FIELD_TABLE || s->class_of[f] != k) continue;
            int n = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "",
                             place_signals[i]);
            if (n > 0 && (size_t)n < sizeof list - used) used += (size_t)n;
        }
        if (used)
            warn(&c->b, c->warnings,
                 "data class %s holds signals that reveal places (%s) while Location is in class "
                 "%s: location privacy coarsens location values only, so every role that may "
                 "read class %s sees them as they are; consider moving them to class %s "
                 "(store.classes)",
                 s->class_name[k], list, s->class_name[lc], s->class_name[k], s->class_name[lc]);
    }
}

static json_t *classes_section(struct ctx *c)
{
    struct rb *b = &c->b;
    const struct fv_store_config *s = &c->cfg->store;
    json_t *out = J(b, json_array());
    for (uint32_t k = 0; out && k < s->nclasses && k < FV_STORE_MAX_CLASSES; k++) {
        const char *name = s->class_name[k];
        json_t *o = J(b, json_object()), *sigs = J(b, json_array()), *purposes = J(b, json_array());
        if (o == NULL || sigs == NULL || purposes == NULL) {
            json_decref(o);
            json_decref(sigs);
            json_decref(purposes);
            continue;
        }
        int events = k == s->events_class;
        char label[32], ret[48];
        if (!events) {
            for (unsigned f = 1; f < FV_STORE_FIELD_TABLE; f++) {
                if (s->class_of[f] != k) continue;
                /* The default class is every signal listed nowhere: name the named ones. */
                if (k == 0 && (f >= fv_signal_count || fv_signal_name(f) == NULL)) continue;
                push(b, sigs, str(fv_signal_label(f, label, sizeof label)));
            }
        }
        int pid = fv_policy_class_id(c->pol, name);
        for (size_t p = 0; pid >= 0 && p < fv_policy_npurposes(c->pol); p++) {
            const char *pn = fv_policy_purpose_name(c->pol, p);
            for (size_t r = 0; r < fv_policy_nroles(c->pol); r++) {
                const char *role = fv_policy_role_name(c->pol, r);
                if ((fv_policy_classes(c->pol, role, pn) & (1u << pid)) &&
                    role_may(c, role, "read")) {
                    push(b, purposes, str(pn));
                    break;
                }
            }
        }
        /* Ingest minimisation, as the server decides it (server.c minimisation_init): a
         * class that no role reads for the contract purpose is stored only while the
         * subject consents to a purpose some role reads it for; events and classes the
         * policy does not name are always stored. */
        json_t *consent = J(b, json_array());
        int always = events || pid < 0;
        for (size_t p = 0; consent && !always && p < fv_policy_npurposes(c->pol); p++) {
            const char *pn = fv_policy_purpose_name(c->pol, p);
            int used = 0;
            for (size_t r = 0; r < fv_policy_nroles(c->pol) && !used; r++)
                used = (fv_policy_classes(c->pol, fv_policy_role_name(c->pol, r), pn) >> pid) & 1;
            if (!used) continue;
            if (strcmp(pn, FV_SUBJECT_CONTRACT) == 0) always = 1;
            push(b, consent, str(pn));
        }
        set(b, o, "stored", str(always ? "always" : "while consented"));
        if (always) {
            json_decref(consent);
            consent = json_null();
        }
        set(b, o, "stored_while_consented_to", consent);
        fmt_duration(s->retention_ms[k], ret, sizeof ret);
        set(b, o, "name", str(name));
        set(b, o, "retention", str(ret));
        set(b, o, "retention_ms", json_integer((json_int_t)s->retention_ms[k]));
        set(b, o, "signals", sigs);
        set(b, o, "other_signals", json_boolean(k == 0));
        if (events) {
            json_t *topics =
                J(b, json_pack("[sss]", FV_TOPIC_ALERTS, FV_TOPIC_ERRORS, FV_TOPIC_CONNECTIVITY));
            set(b, o, "topics", topics);
        } else {
            set(b, o, "topics", json_null());
        }
        set(b, o, "in_policy", json_boolean(pid >= 0));
        set(b, o, "purposes", purposes);
        push(b, out, o);
        if (s->retention_ms[k] == 0)
            warn(b, c->warnings,
                 "data class %s is kept forever: GDPR Art. 5(1)(e) asks for a time limit "
                 "(store.retention in the configuration)",
                 name);
    }
    place_warnings(c);
    for (size_t i = 0; i < fv_policy_nclasses(c->pol); i++) {
        const char *pc = fv_policy_class_name(c->pol, i);
        if (fv_store_class_id(s, pc) < 0)
            warn(b, c->warnings,
                 "the policy names data class %s, which the store does not have (store.classes): "
                 "its rules apply to nothing",
                 pc);
    }
    return out;
}

static json_t *subjects_section(struct rb *b)
{
    json_t *out = J(b, json_array());
    if (out == NULL) return NULL;
    push(b, out,
         json_pack("{s:s,s:s,s:s}", "category", "vehicle owners", "description",
                   "each owner period of a vehicle is a data subject of its own (DEVICE, DEVICE#2, "
                   "...), with its own data key: a new owner never sees the previous owner's "
                   "data. The people who drive or ride in the vehicle are identifiable through "
                   "the same data (EDPB Guidelines 01/2020) and are not registered separately",
                   "data",
                   "the vehicle's telemetry (data classes above), its location, events; the owner "
                   "id (sealed), consent per purpose with its history, privacy zones (sealed)"));
    push(b, out,
         json_pack("{s:s,s:s,s:s}", "category", "energy-site owners", "description",
                   "home batteries and solar sites (devices whose certificate names the "
                   "energy_device client type); each owner period is a data subject as for "
                   "vehicles",
                   "data", "the site's telemetry and events, owner id, consent"));
    push(b, out,
         json_pack("{s:s,s:s,s:s}", "category", "staff and services using the API", "description",
                   "the principals under recipients", "data",
                   "name, role, when created and revoked, and in the audit log every access "
                   "decision about them (time, purpose, ticket, subjects, rows, bytes)"));
    return out;
}

static json_t *roles_section(struct ctx *c)
{
    struct rb *b = &c->b;
    const struct fv_policy *pol = c->pol;
    json_t *out = J(b, json_array());
    for (size_t r = 0; out && r < fv_policy_nroles(pol); r++) {
        const char *role = fv_policy_role_name(pol, r);
        json_t *rj = role_json(c, role);
        json_t *o = J(b, json_object()), *purposes = J(b, json_object()),
               *names = J(b, json_array()), *quota = J(b, json_object());
        if (o == NULL || purposes == NULL || names == NULL || quota == NULL) {
            json_decref(o);
            json_decref(purposes);
            json_decref(names);
            json_decref(quota);
            continue;
        }
        for (size_t p = 0; p < fv_policy_npurposes(pol); p++) {
            const char *pn = fv_policy_purpose_name(pol, p);
            uint32_t m = fv_policy_classes(pol, role, pn);
            if (m) set(b, purposes, pn, class_names(b, pol, m));
        }
        struct fv_quota_limits q;
        if (fv_policy_quota(pol, role, &q) == FV_OK) {
            set(b, quota, "subjects_per_day", limit_json(q.subjects_per_day));
            set(b, quota, "rows_per_day", limit_json(q.rows_per_day));
            set(b, quota, "bytes_per_day", limit_json(q.bytes_per_day));
        }
        size_t i;
        json_t *pr;
        json_array_foreach(c->principals, i, pr)
        {
            const char *prole = json_string_value(json_object_get(pr, "role"));
            if (prole && strcmp(prole, role) == 0 &&
                json_is_null(json_object_get(pr, "revoked_ms")))
                push(b, names, json_copy(json_object_get(pr, "name")));
        }
        json_t *comment = json_object_get(rj, "comment");
        json_t *acts = json_object_get(rj, "actions");
        json_t *maxs = json_object_get(rj, "max_subjects_per_request");
        json_t *bulk = json_object_get(rj, "bulk_subjects_threshold");
        set(b, o, "name", str(role));
        set(b, o, "description", json_is_string(comment) ? json_copy(comment) : json_null());
        set(b, o, "actions", acts ? json_deep_copy(acts) : json_array());
        set(b, o, "purposes", purposes);
        set(b, o, "requires_ticket", json_boolean(role_flag(c, role, "requires_ticket")));
        set(b, o, "max_subjects_per_request", maxs ? json_copy(maxs) : json_null());
        set(b, o, "bulk_subjects_threshold", bulk ? json_copy(bulk) : json_null());
        set(b, o, "approves_bulk", json_boolean(role_flag(c, role, "approves_bulk")));
        set(b, o, "obligations", obligations_json(c, role));
        set(b, o, "quota", quota);
        set(b, o, "principals", names);
        push(b, out, o);
    }
    return out;
}

static int loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

/* The audit signing key's path as the server chooses it (server.c guard_open). */
static void audit_key_path(const struct fv_config *cfg, char *out, size_t n)
{
    if (cfg->audit_key[0])
        snprintf(out, n, "%s", cfg->audit_key);
    else if (cfg->key_file[0])
        snprintf(out, n, "%s.audit.pem", cfg->key_file);
    else
        snprintf(out, n, "%s/audit-signing.pem", cfg->data_dir);
}

static json_t *measure(const char *m, json_t *detail)
{
    if (detail == NULL) return NULL;
    return json_pack("{s:s,s:o}", "measure", m, "detail", detail);
}

static json_t *security_section(struct ctx *c)
{
    struct rb *b = &c->b;
    const struct fv_config *cfg = c->cfg;
    const char *kf = cfg->key_file[0] ? cfg->key_file : "the FV_MASTER_KEY environment variable";
    char wal_keep[48];
    fmt_duration(cfg->store.wal_keep_ms, wal_keep, sizeof wal_keep);
    json_t *out = J(b, json_array());
    if (out == NULL) return NULL;
    push(b, out,
         measure("device authentication and encryption in transit",
                 strf("devices connect over WebSocket with mutual TLS on %s:%d: a client "
                      "certificate signed by the fleet CA (%s/ca.crt) is required; the device id "
                      "is taken from the verified certificate, the vin inside every payload is "
                      "overwritten with it, and a message naming another device is refused",
                      cfg->listen_host, cfg->listen_port, cfg->certs_dir)));
    push(b, out,
         measure("encryption at rest, a key per data subject",
                 strf("every record in the write-ahead log and every store block is sealed with "
                      "AES-256-GCM under its subject's own 256-bit data key (one per owner "
                      "period); data keys are stored only wrapped by the master key, which is "
                      "kept outside the data directory (%s; the server refuses a key file inside "
                      "%s); owner ids and privacy zones are sealed with the subject's key too",
                      kf, cfg->data_dir)));
    push(b, out,
         measure("pseudonymisation at rest",
                 str("devices and subjects are named on disk, in the catalog and in the audit "
                     "log only by keyed pseudonym (HMAC-SHA256 under a per-catalog key wrapped by "
                     "the master key); device ids are stored sealed with their own data key")));
    push(b, out,
         measure("integrity",
                 str("CRC-32C on every write-ahead-log record and store block, and the GCM tag "
                     "of every sealed record: any altered byte is detected and reported with its "
                     "file and offset (fleetvault inspect DATA --verify)")));
    char tomb[2200];
    if (cfg->key_file[0])
        snprintf(tomb, sizeof tomb,
                 "%s.tombstones (beside the master key) and to %s/tombstones.jsonl", cfg->key_file,
                 cfg->data_dir);
    else
        snprintf(tomb, sizeof tomb, "%s/tombstones.jsonl (and, with a key file, beside it)",
                 cfg->data_dir);
    push(b, out,
         measure("erasure by crypto-shredding",
                 strf("erasing a subject appends a tombstone (pseudonym, time, who, ticket) to "
                      "%s, then destroys its data key (catalog cells zeroed with secure_delete, "
                      "SQLite WAL truncated): every copy of its data, backups included, is "
                      "unreadable from then on, and its blocks are purged in the background. At "
                      "every start the erasure lists are replayed before anything is decrypted, "
                      "so a restored backup is erased again",
                      tomb)));
    push(b, out,
         measure("purpose-bound access",
                 str("every API request is authenticated (a principal's 256-bit bearer token, of "
                     "which only the SHA-256 is stored; or the admin token, which reads nothing "
                     "personal); every read of personal data names a purpose and, where the role "
                     "requires, a ticket, and is decided by the access policy (roles x purposes "
                     "x data classes, subjects per request, bulk reads only with a second "
                     "principal's approval); revocation takes effect at once")));
    push(b, out,
         measure("minimisation when serving",
                 strf("per role, as the policy says: per-purpose pseudonyms instead of device ids "
                      "(unlinkable across purposes), aggregates only, only subjects whose consent "
                      "held when the data was recorded and still holds, energy sites only; %s",
                      LOCATION_PRIVACY_TEXT)));
    push(b, out,
         measure("minimisation at ingest",
                 str("a data class that no role reads for the contract purpose is stored only "
                     "while the device's current owner consents to a purpose that uses it; "
                     "otherwise its values are dropped before they are written "
                     "(data_classes: stored)")));
    push(b, out,
         measure("quotas and leak guards",
                 str("per-principal daily limits on subjects, rows and bytes served, per role "
                     "(recipients), a request over a limit being refused; bulk exports above a "
                     "role's threshold wait for a second principal's approval, are downloadable "
                     "once and by the requester only, and are watermarked with canary vehicles "
                     "that the audit log ties to the export, its requester and approver; a "
                     "principal passing 80% of a daily quota, and refused bulk exports, raise "
                     "alerts")));
    push(b, out,
         measure("tamper-evident audit log",
                 str("every access decision, allowed or denied, is appended and fsync'd before "
                     "any data is served; entries are hash-chained (SHA-256) with Ed25519-signed "
                     "checkpoints that an outside witness can keep; if the log cannot be written "
                     "no personal data is served")));
    push(b, out,
         measure("retention enforced",
                 str("per data class (data_classes): store blocks whose newest record is older "
                     "than the class's retention are deleted, checked at least every minute")));
    push(b, out,
         measure(
             "availability and resilience",
             strf("records are acknowledged only once fsync'd in the checksummed write-ahead "
                  "log; a crash loses nothing acknowledged; covered log files are kept %s "
                  "for de-duplication, then deleted%s",
                  wal_keep,
                  cfg->rate_limit_enabled ? "; ingest is rate-limited per device and topic" : "")));
    return out;
}

static json_t *retention_section(struct ctx *c)
{
    struct rb *b = &c->b;
    const struct fv_store_config *s = &c->cfg->store;
    json_t *out = J(b, json_object()), *cls = J(b, json_object());
    char d[48];
    for (uint32_t k = 0; cls && k < s->nclasses && k < FV_STORE_MAX_CLASSES; k++) {
        fmt_duration(s->retention_ms[k], d, sizeof d);
        set(b, cls, s->class_name[k], str(d));
    }
    if (out == NULL) {
        json_decref(cls);
        return NULL;
    }
    fmt_duration(s->wal_keep_ms, d, sizeof d);
    set(b, out, "data_classes", cls);
    set(b, out, "write_ahead_log",
        strf("until its records are in store parts, then %s more (de-duplication of resends)", d));
    set(b, out, "erased_subjects",
        str("at once: the data key is destroyed; blocks are purged in the background"));
    set(b, out, "consent_and_owner_ids",
        str("until the subject is erased (consent history is the proof of consent)"));
    set(b, out, "tombstones",
        str("kept: a pseudonym, time, who and ticket per erasure, needed to erase restored "
            "backups again"));
    set(b, out, "principals",
        str("kept after revocation, so that the audit log's names stay resolvable"));
    if (c->cfg->audit_retention_ms) {
        fmt_duration(c->cfg->audit_retention_ms, d, sizeof d);
        set(b, out, "audit_log",
            strf("%s: whole files whose newest entry is older are deleted, checked hourly (the "
                 "newest file is kept; the deletion itself is logged)",
                 d));
    } else {
        set(b, out, "audit_log", str("not limited (audit_retention is not set)"));
    }
    return out;
}

static json_t *audit_section(struct ctx *c)
{
    struct rb *b = &c->b;
    const struct fv_config *cfg = c->cfg;
    char key[2048], pub[2100];
    audit_key_path(cfg, key, sizeof key);
    snprintf(pub, sizeof pub, "%s.pub", key);
    json_t *o = J(b, json_object());
    if (o == NULL) return NULL;
    set(b, o, "path", strf("%s/audit/audit-*.jsonl", cfg->data_dir));
    set(b, o, "format",
        str("one JSON object per line: who, role, purpose, ticket, action, subjects "
            "(pseudonyms), signals, time range, result and reason; rows and bytes sent; "
            "hash-chained, Ed25519-signed checkpoints (docs/audit.md)"));
    set(b, o, "signing_key", str(key));
    set(b, o, "public_key", str(pub));
    set(b, o, "witness", cfg->audit_witness[0] ? str(cfg->audit_witness) : json_null());
    char ar[48];
    fmt_duration(c->cfg->audit_retention_ms, ar, sizeof ar);
    set(b, o, "retention", c->cfg->audit_retention_ms ? str(ar) : json_null());
    set(b, o, "verify",
        strf("fleetvault audit verify --data %s --public-key %s%s%s", cfg->data_dir, pub,
             cfg->audit_witness[0] ? " --witness " : "", cfg->audit_witness));
    set(b, o, "query", strf("fleetvault audit query --data %s --principal NAME", cfg->data_dir));
    return o;
}

/* Warnings that depend on the configuration alone. */
static void config_warnings(struct ctx *c)
{
    struct rb *b = &c->b;
    const struct fv_config *cfg = c->cfg;
    if (!loopback(cfg->api_host))
        warn(b, c->warnings,
             "the HTTP API listens on %s:%d without TLS: keep it on 127.0.0.1 or put a TLS "
             "proxy in front (tokens and personal data cross it)",
             cfg->api_host, cfg->api_port);
    if (!cfg->audit_witness[0])
        warn(b, c->warnings,
             "no audit witness (audit_witness): checkpoints are kept only inside the data "
             "directory, so a rewrite of the whole log by someone holding the signing key "
             "would not be detected");
    if (!cfg->key_file[0])
        warn(b, c->warnings,
             "the master key comes from FV_MASTER_KEY, not a key file: the erasure list is kept "
             "only inside the data directory, so restoring a backup of it taken before an "
             "erasure would bring the erased subject's key back");
    if (!cfg->key_file[0] && !cfg->audit_key[0])
        warn(b, c->warnings,
             "no key file and no audit_key: the audit signing key is kept inside the data "
             "directory");
    if (!cfg->audit_retention_ms)
        warn(b, c->warnings,
             "the audit log has no retention (audit_retention): access logs should be kept for "
             "a bounded time");
    if (!cfg->rate_limit_enabled)
        warn(b, c->warnings, "ingest rate limits are off (rate_limits: false)");
}

/* ---- the report --------------------------------------------------------------------------- */

int fv_report_build(const struct fv_report_input *in, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    if (in == NULL || in->config == NULL) {
        fv_seterr(err, errlen, "no configuration");
        return FV_EINVAL;
    }
    struct ctx c = {.in = in, .cfg = in->config, .err = err, .errlen = errlen};
    static const char *const default_contract[] = {FV_SUBJECT_CONTRACT, NULL};
    struct fv_policy *pol = NULL;
    json_t *r = NULL, *counts = NULL;
    int rc = load_policy(in->config, &pol, &c.pj, err, errlen);
    if (rc) return rc;
    c.pol = pol;
    /* The default contract purpose applies only if the policy has it; named ones must. */
    const char *contract_buf[FV_POLICY_MAX_PURPOSES + 1];
    size_t nc = 0;
    for (size_t i = 0; (in->contract ? in->contract : default_contract)[i]; i++) {
        const char *p = (in->contract ? in->contract : default_contract)[i];
        if (fv_policy_purpose_id(pol, p) < 0) {
            if (in->contract == NULL) continue;
            fv_seterr(err, errlen, "contract purpose %s is not a purpose of the policy", p);
            rc = FV_EINVAL;
            goto done;
        }
        if (nc == FV_POLICY_MAX_PURPOSES) break;
        contract_buf[nc++] = p;
    }
    contract_buf[nc] = NULL;
    c.contract = contract_buf;

    struct rb *b = &c.b;
    r = J(b, json_object());
    c.warnings = J(b, json_array());
    c.principals = J(b, json_array());
    counts = J(b, json_object());
    if (b->oom) {
        rc = FV_ENOMEM;
        goto done;
    }
    rc = read_catalog(&c, counts);
    if (rc) goto done;

    const struct fv_config *cfg = in->config;
    char catalog[1100];
    snprintf(catalog, sizeof catalog, "%s/catalog.db", cfg->data_dir);
    set(b, r, "record",
        str("Records of processing activities (GDPR Art. 30(1)), generated by fleetvault from "
            "its live configuration, access policy and catalog. The controller adds its name "
            "and contact details, its representative's and its data protection officer's "
            "(Art. 30(1)(a)); they are not part of the system's configuration."));
    set(b, r, "system",
        json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:o}", "name", "fleetvault", "version",
                  in->version ? in->version : "unknown", "generated", time_json(in->now_ms),
                  "config_file", in->config_file ? str(in->config_file) : json_null(), "data_dir",
                  str(cfg->data_dir), "policy",
                  cfg->policy_file[0] ? str(cfg->policy_file) : str("built-in"), "catalog",
                  in->catalog ? str(catalog) : json_null()));
    set(b, r, "purposes", purposes_section(&c));
    set(b, r, "data_classes", classes_section(&c));
    set(b, r, "data_subjects", subjects_section(b));
    set(b, r, "subject_counts", counts);
    counts = NULL;
    json_t *rec = J(b, json_object());
    if (rec) {
        char tok[1100];
        snprintf(tok, sizeof tok, "%s/admin.token", cfg->data_dir);
        set(b, rec, "principals", json_incref(c.principals));
        set(b, rec, "built_in",
            json_pack("[{s:s,s:s,s:o,s:s}]", "name", "admin", "role", "admin", "credential",
                      str(tok), "note",
                      "made on the server's first start (mode 0600); runs the store and manages "
                      "principals, reads no personal data"));
        set(b, rec, "roles", roles_section(&c));
        set(b, rec, "third_parties",
            str("none: fleetvault discloses data only to the principals above, through its "
                "API; what a principal does with what it reads is outside the system and is "
                "traced by the audit log (who, purpose, ticket, subjects, rows, bytes)"));
        set(b, r, "recipients", rec);
    }
    set(b, r, "security_measures", security_section(&c));
    set(b, r, "transfers",
        json_pack("{s:[],s:s}", "third_countries", "detail",
                  "none: one node; the data stays in the data directory on this machine and no "
                  "part of fleetvault sends it elsewhere"));
    set(b, r, "retention", retention_section(&c));
    set(b, r, "audit_log", audit_section(&c));
    if (in->catalog == NULL)
        warn(b, c.warnings,
             "no catalog (%s): principals and counts are unknown until the server has started "
             "once",
             catalog);
    config_warnings(&c);
    set(b, r, "warnings", json_incref(c.warnings));
    rc = b->oom ? FV_ENOMEM : FV_OK;
done:
    if (rc == FV_ENOMEM && err && !err[0]) fv_seterr(err, errlen, "out of memory");
    if (rc == FV_OK) {
        *out = r;
        r = NULL;
    }
    json_decref(r);
    json_decref(counts);
    json_decref(c.warnings);
    json_decref(c.principals);
    json_decref(c.pj);
    fv_policy_free(pol);
    return rc;
}

/* ---- Markdown ----------------------------------------------------------------------------- */

struct md {
    struct fv_buf *out;
    int oom;
};

static void put(struct md *m, const char *s, size_t n)
{
    if (!m->oom && fv_buf_append(m->out, s, n) != FV_OK) m->oom = 1;
}

#define PUTS(m, lit) put((m), (lit), sizeof(lit) - 1)

static void mdf(struct md *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mdf(struct md *m, const char *fmt, ...)
{
    char small[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        m->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        put(m, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (big == NULL) {
        m->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    put(m, big, (size_t)n);
    free(big);
}

/* Text for a table cell: '|' escaped, line breaks as spaces. */
static void cell(struct md *m, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '|')
            PUTS(m, "\\|");
        else if (*p == '\n' || *p == '\r')
            PUTS(m, " ");
        else
            put(m, p, 1);
    }
}

static const char *sv(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* a, b, c of a JSON array of strings (or "-" when empty). */
static void join(struct md *m, const json_t *a)
{
    size_t i;
    json_t *v;
    if (json_array_size(a) == 0) PUTS(m, "-");
    json_array_foreach(a, i, v)
    {
        if (i) PUTS(m, ", ");
        cell(m, json_is_string(v) ? json_string_value(v) : "?");
    }
}

static void limit_md(struct md *m, const json_t *v)
{
    if (json_is_integer(v))
        mdf(m, "%lld", (long long)json_integer_value(v));
    else
        PUTS(m, "no limit");
}

static void md_purposes(struct md *m, const json_t *ps)
{
    mdf(m, "\n## 2. Purposes of the processing\n\n"
           "| purpose | legal basis | roles that may read (data classes) | description |\n"
           "|---|---|---|---|\n");
    size_t i, j;
    json_t *p, *r;
    json_array_foreach(ps, i, p)
    {
        mdf(m, "| %s | %s | ", sv(p, "name"),
            json_is_true(json_object_get(p, "contract")) ? "contract, Art. 6(1)(b)"
                                                         : "consent, Art. 6(1)(a)");
        if (json_array_size(json_object_get(p, "roles")) == 0) PUTS(m, "none");
        json_array_foreach(json_object_get(p, "roles"), j, r)
        {
            if (j) PUTS(m, "; ");
            cell(m, sv(r, "role"));
            PUTS(m, " (");
            join(m, json_object_get(r, "classes"));
            PUTS(m, ")");
        }
        PUTS(m, " | ");
        cell(m, json_is_string(json_object_get(p, "description")) ? sv(p, "description") : "-");
        PUTS(m, " |\n");
    }
    mdf(m, "\nContract purposes are always granted and cannot be withdrawn short of erasure; "
           "the others rest on consent, given and withdrawn per subject and purpose "
           "(`fleetvault subject consent`), and roles that read them are limited to consenting "
           "subjects where the policy says consented_only.\n");
}

static void md_classes(struct md *m, const json_t *cs, const json_t *subjects, const json_t *counts)
{
    mdf(m, "\n## 3. Categories of personal data\n\n"
           "| data class | retention | stored | read for purposes | signals |\n"
           "|---|---|---|---|---|\n");
    size_t i;
    json_t *c;
    json_array_foreach(cs, i, c)
    {
        mdf(m, "| %s | %s | ", sv(c, "name"), sv(c, "retention"));
        const json_t *cons = json_object_get(c, "stored_while_consented_to");
        if (json_is_array(cons)) {
            PUTS(m, "while the owner consents to ");
            join(m, cons);
        } else {
            PUTS(m, "always");
        }
        PUTS(m, " | ");
        join(m, json_object_get(c, "purposes"));
        PUTS(m, " | ");
        const json_t *topics = json_object_get(c, "topics");
        if (json_is_array(topics)) {
            PUTS(m, "events (topics ");
            join(m, topics);
            PUTS(m, ")");
        } else {
            join(m, json_object_get(c, "signals"));
            if (json_is_true(json_object_get(c, "other_signals")))
                mdf(m, "; and every signal no other class lists, named or not");
        }
        PUTS(m, " |\n");
    }
    mdf(m, "\n## 4. Categories of data subjects\n\n");
    json_t *s;
    json_array_foreach(subjects, i, s)
    {
        mdf(m, "- **%s**: %s. Data: %s.\n", sv(s, "category"), sv(s, "description"), sv(s, "data"));
    }
    if (json_object_size(counts)) {
        mdf(m, "\nIn the catalog now:");
        const char *k;
        json_t *v;
        int first = 1;
        json_object_foreach((json_t *)counts, k, v)
        {
            mdf(m, "%s %s %lld", first ? "" : ";", k, (long long)json_integer_value(v));
            first = 0;
        }
        mdf(m, ".\n");
    }
}

static void md_recipients(struct md *m, const json_t *rec)
{
    mdf(m, "\n## 5. Recipients\n\n### Principals\n\n"
           "| name | role | created | created by | status |\n|---|---|---|---|---|\n");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(rec, "built_in"), i, p)
    {
        mdf(m, "| %s | %s | (built in: ", sv(p, "name"), sv(p, "role"));
        cell(m, sv(p, "credential"));
        PUTS(m, ") | - | active |\n");
    }
    json_array_foreach(json_object_get(rec, "principals"), i, p)
    {
        mdf(m, "| %s | %s%s | %s | %s | ", sv(p, "name"), sv(p, "role"),
            json_is_true(json_object_get(p, "role_in_policy")) ? "" : " (not in the policy)",
            json_is_string(json_object_get(p, "created")) ? sv(p, "created") : "-",
            json_is_string(json_object_get(p, "created_by")) ? sv(p, "created_by") : "-");
        if (json_is_string(json_object_get(p, "revoked")))
            mdf(m, "**revoked** %s |\n", sv(p, "revoked"));
        else
            mdf(m, "active |\n");
    }
    mdf(m, "\n### Roles and their obligations\n\n"
           "| role | actions | purposes (data classes) | ticket | subjects per request | "
           "bulk approval above | obligations | quota per day (subjects / rows / bytes) | "
           "active principals |\n|---|---|---|---|---|---|---|---|---|\n");
    json_t *r;
    json_array_foreach(json_object_get(rec, "roles"), i, r)
    {
        mdf(m, "| %s | ", sv(r, "name"));
        join(m, json_object_get(r, "actions"));
        PUTS(m, " | ");
        const char *pn;
        json_t *cl;
        int first = 1;
        json_object_foreach(json_object_get(r, "purposes"), pn, cl)
        {
            mdf(m, "%s%s (", first ? "" : "; ", pn);
            join(m, cl);
            PUTS(m, ")");
            first = 0;
        }
        if (first) PUTS(m, "-");
        mdf(m, " | %s | ", json_is_true(json_object_get(r, "requires_ticket")) ? "required" : "no");
        limit_md(m, json_object_get(r, "max_subjects_per_request"));
        PUTS(m, " | ");
        const json_t *bulk = json_object_get(r, "bulk_subjects_threshold");
        if (json_is_integer(bulk))
            mdf(m, "%lld", (long long)json_integer_value(bulk));
        else
            PUTS(m, "never needed");
        PUTS(m, " | ");
        const char *ok;
        json_t *ov;
        first = 1;
        json_object_foreach(json_object_get(r, "obligations"), ok, ov)
        {
            if (!json_is_true(ov)) continue;
            mdf(m, "%s%s", first ? "" : ", ", ok);
            first = 0;
        }
        if (json_is_true(json_object_get(r, "approves_bulk"))) {
            mdf(m, "%sapproves bulk reads", first ? "" : ", ");
            first = 0;
        }
        if (first) PUTS(m, "none");
        PUTS(m, " | ");
        const json_t *q = json_object_get(r, "quota");
        limit_md(m, json_object_get(q, "subjects_per_day"));
        PUTS(m, " / ");
        limit_md(m, json_object_get(q, "rows_per_day"));
        PUTS(m, " / ");
        limit_md(m, json_object_get(q, "bytes_per_day"));
        PUTS(m, " | ");
        join(m, json_object_get(r, "principals"));
        PUTS(m, " |\n");
    }
    json_array_foreach(json_object_get(rec, "roles"), i, r)
    {
        if (json_is_string(json_object_get(r, "description")))
            mdf(m, "%s- **%s**: %s\n", i ? "" : "\n", sv(r, "name"), sv(r, "description"));
    }
    mdf(m, "\n### Third parties\n\n%s.\n", sv(rec, "third_parties"));
}

int fv_report_markdown(const json_t *report, struct fv_buf *out)
{
    const json_t *sys = json_object_get(report, "system");
    if (!json_is_object(report) || !json_is_object(sys)) return FV_EINVAL;
    struct md m = {.out = out};
    const json_t *cf = json_object_get(sys, "config_file");
    mdf(&m, "# Records of processing activities (GDPR Art. 30)\n\n%s\n\n", sv(report, "record"));
    mdf(&m,
        "## 1. Controller and system\n\n| | |\n|---|---|\n"
        "| controller | (to be filled in by the controller: name, contact, representative, "
        "data protection officer) |\n"
        "| system | %s %s |\n| generated | %s |\n| configuration | %s |\n"
        "| access policy | %s |\n| data directory | %s |\n",
        sv(sys, "name"), sv(sys, "version"), sv(sys, "generated"),
        json_is_string(cf) ? json_string_value(cf) : "defaults (no file)", sv(sys, "policy"),
        sv(sys, "data_dir"));
    md_purposes(&m, json_object_get(report, "purposes"));
    md_classes(&m, json_object_get(report, "data_classes"),
               json_object_get(report, "data_subjects"), json_object_get(report, "subject_counts"));
    md_recipients(&m, json_object_get(report, "recipients"));
    const json_t *tr = json_object_get(report, "transfers");
    mdf(&m, "\n## 6. Transfers to third countries\n\n%s.\n", sv(tr, "detail"));
    const json_t *ret = json_object_get(report, "retention");
    mdf(&m, "\n## 7. Time limits for erasure\n\n");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(ret, "data_classes"), k, v)
    {
        mdf(&m, "- data class **%s**: %s\n", k, json_string_value(v) ? json_string_value(v) : "");
    }
    json_object_foreach((json_t *)ret, k, v)
    {
        if (!json_is_string(v)) continue;
        PUTS(&m, "- ");
        for (const char *p = k; *p; p++)
            put(&m, *p == '_' ? " " : p, 1);
        mdf(&m, ": %s\n", json_string_value(v));
    }
    mdf(&m, "\n## 8. Security measures (Art. 32)\n\n");
    size_t i;
    json_array_foreach(json_object_get(report, "security_measures"), i, v)
    {
        mdf(&m, "- **%s**: %s.\n", sv(v, "measure"), sv(v, "detail"));
    }
    const json_t *au = json_object_get(report, "audit_log");
    const json_t *wit = json_object_get(au, "witness");
    mdf(&m,
        "\n## 9. Audit log\n\n- where: `%s`\n- what: %s\n- signing key: `%s` (public half `%s`)\n"
        "- witness: %s\n- retention: %s\n- verify: `%s`\n- query: `%s`\n",
        sv(au, "path"), sv(au, "format"), sv(au, "signing_key"), sv(au, "public_key"),
        json_is_string(wit) ? json_string_value(wit) : "none configured",
        json_is_string(json_object_get(au, "retention")) ? sv(au, "retention") : "none",
        sv(au, "verify"), sv(au, "query"));
    const json_t *w = json_object_get(report, "warnings");
    if (json_array_size(w)) {
        mdf(&m, "\n## Warnings\n\n");
        json_array_foreach(w, i, v)
        {
            mdf(&m, "- %s\n", json_string_value(v) ? json_string_value(v) : "");
        }
    }
    return m.oom ? FV_ENOMEM : FV_OK;
}
