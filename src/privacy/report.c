/*
 * report.c - records of processing (GDPR Art. 30): see report.h for the JSON it builds.
 * This file reads the inputs and builds the sections derived from the policy and the
 * catalog; the sections that state what the code does (security measures, retention, audit
 * log, configuration warnings) are in report_measures.c, the Markdown rendering in
 * report_md.c, and the builder shared with them in report_int.h.
 *
 * Every statement in the report is derived from the configuration, the policy or the
 * catalog, or describes what the code does whatever the configuration (the security
 * measures). When the code changes what it does, the texts (here and in report_measures.c)
 * must change with it: they are the record's claims, and a record that claims more than
 * the system does is worse than none. Gaps the configuration leaves are listed as warnings, not
 * hidden.
 *
 * The policy is read once from its file; the same bytes are checked by fv_policy_parse
 * (so a policy the server would refuse is refused here) and read by jansson for what the
 * policy API does not expose (actions, tickets, obligations, comments).
 *
 * Building never stops half-way on out-of-memory: every insertion records failure in the
 * builder (struct rb) and the result is thrown away at the end if one failed.
 *
 * Threading: any thread; the catalog is read through the caller's connection (report.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "os/fsio.h"
#include "privacy/policy.h"
#include "privacy/principals.h"
#include "privacy/report_int.h"
#include "privacy/subjects.h"
#include "util/err.h"
#include "wire/payload.h"
#include "wire/places.h"
#include "wire/signals.h"

static const char *purpose_description(const char *name)
{
    static const char *const d[][2] = {
        {"service", "servicing the vehicle or site under the owner's contract: diagnostics, "
                    "support tickets, the owner's own view of their device"},
        {"location_history", "the owner's history of places and trips"},
        {"clips", "camera clips and the events around them"},
        {"model_training", "training and evaluating models on fleet data"},
        {"energy_programs", "energy programmes (grid services) of enrolled energy sites"},
        {"billing", "paying energy-site owners for what their sites delivered in an energy "
                    "programme (settlement)"},
        {"home_automation", "the owner's own home automation: live values of the owner's "
                            "vehicle or site published to an MQTT broker (docs/mqtt.md)"},
    };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        if (strcmp(d[i][0], name) == 0) return d[i][1];
    return NULL;
}

/* ---- builder ------------------------------------------------------------------------------ */

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

static json_t *limit_json(uint64_t v)
{
    return v == FV_UNLIMITED ? json_null() : json_integer((json_int_t)v);
}

/* {"subjects_per_day": n|null, "rows_per_day": ..., "bytes_per_day": ...} into o */
static void quota_json(struct rb *b, json_t *o, const struct fv_quota_limits *q)
{
    set(b, o, "subjects_per_day", limit_json(q->subjects_per_day));
    set(b, o, "rows_per_day", limit_json(q->rows_per_day));
    set(b, o, "bytes_per_day", limit_json(q->bytes_per_day));
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
static int load_policy(const struct fv_config *cfg, struct fv_policy **pol, json_t **pj, char *err,
                       size_t errlen)
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
        for (unsigned f = 0; f < fv_signal_count && f < FV_STORE_FIELD_TABLE; f++) {
            /* wire/places.h: the signals that reveal where the subject is or goes */
            if (fv_signal_place(f) == FV_PLACE_NONE || s->class_of[f] != k) continue;
            char nm[32];
            int n = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "",
                             fv_signal_label(f, nm, sizeof nm));
            if (n > 0 && (size_t)n < sizeof list - used) used += (size_t)n;
        }
        if (used)
            warn(&c->b, c->warnings,
                 "data class %s holds signals that reveal places (%s) while Location is in class "
                 "%s: every role that may read class %s reads them, even one that may not read "
                 "class %s; consider moving them to class %s (store.classes)",
                 s->class_name[k], list, s->class_name[lc], s->class_name[k], s->class_name[lc],
                 s->class_name[lc]);
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
        struct fv_quota_limits q, rq;
        json_t *role_quota = J(b, json_object());
        if (fv_policy_quota(pol, role, &q) == FV_OK) quota_json(b, quota, &q);
        if (fv_policy_role_quota(pol, role, &rq) == FV_OK) quota_json(b, role_quota, &rq);
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
        set(b, o, "role_quota", role_quota);
        set(b, o, "principals", names);
        push(b, out, o);
    }
    return out;
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
        fv_config_admin_token_path(cfg, tok, sizeof tok);
        set(b, rec, "principals", json_incref(c.principals));
        set(b, rec, "built_in",
            json_pack("[{s:s,s:s,s:o,s:s}]", "name", "admin", "role", "admin", "credential",
                      str(tok), "note",
                      "made on the server's first start (mode 0600), beside the master key; runs "
                      "the store and manages principals (a principal that reaches personal data "
                      "also needs a privacy officer's approval), reads no personal data"));
        set(b, rec, "roles", roles_section(&c));
        if (cfg->mqtt.enabled)
            set(b, rec, "third_parties",
                json_sprintf("the MQTT broker at %s:%d (config \"mqtt\", docs/mqtt.md): the live "
                             "values of the devices whose owner consents to home_automation, "
                             "under a per-purpose pseudonym, no location, cleared on withdrawal, "
                             "audited (mqtt.start, mqtt.publish, mqtt.stop); otherwise fleetvault "
                             "discloses data only to the principals above, through its API",
                             cfg->mqtt.host, cfg->mqtt.port));
        else
            set(b, rec, "third_parties",
                str("none: fleetvault discloses data only to the principals above, through its "
                    "API; what a principal does with what it reads is outside the system and is "
                    "traced by the audit log (who, purpose, ticket, subjects, rows, bytes)"));
        set(b, r, "recipients", rec);
    }
    set(b, r, "security_measures", fv_report__security(&c));
    set(b, r, "transfers",
        json_pack("{s:[],s:s}", "third_countries", "detail",
                  cfg->mqtt.enabled
                      ? "none by fleetvault: one node; the data stays in the data directory on "
                        "this machine, except the consenting owners' live values published to "
                        "the MQTT broker named under recipients (where it runs is the "
                        "controller's to record)"
                      : "none: one node; the data stays in the data directory on this machine "
                        "and no part of fleetvault sends it elsewhere"));
    set(b, r, "retention", fv_report__retention(&c));
    set(b, r, "audit_log", fv_report__audit_log(&c));
    if (in->catalog == NULL)
        warn(b, c.warnings,
             "no catalog (%s): principals and counts are unknown until the server has started "
             "once",
             catalog);
    fv_report__config_warnings(&c);
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
