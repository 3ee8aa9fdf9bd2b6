/*
 * policy_file.c - the policy file (format in policy.h): the built-in default, the same
 * text as docs/policy.example.json, and the loader that parses and validates a policy into
 * the fixed arrays of struct fv_policy (policy_int.h). Decisions, quotas and pseudonyms on
 * a loaded policy are in policy.c.
 *
 * Invariants: a policy is accepted whole or not at all; every role key is required, unknown
 * keys and duplicate names are errors, and an error names the source and the JSON path of
 * the bad entry, with any text from the file made printable.
 *
 * Threads: reentrant, no shared state; a loaded policy is immutable.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "os/fsio.h"
#include "privacy/policy.h"
#include "privacy/policy_int.h"
#include "util/err.h"

/* The text of docs/policy.example.json (tests/privacy/test_policy.c checks they agree). */
static const char DEFAULT_POLICY[] =
    "{\n"
    "  \"version\": 1,\n"
    "  \"comment\": \"fleetvault access policy: roles x purposes x data classes. Read by "
    "fv_policy_load (src/privacy/policy.h); this is the built-in default. Limits are integers, or "
    "null for none. Every role key is required; unknown keys are errors.\",\n"
    "  \"purposes\": [\"service\", \"location_history\", \"clips\", \"model_training\", "
    "\"energy_programs\", \"billing\", \"home_automation\"],\n"
    "  \"classes\": [\"default\", \"location\", \"events\"],\n"
    "  \"roles\": {\n"
    "    \"admin\": {\n"
    "      \"comment\": \"manages principals, configuration and keys; reads no personal data\",\n"
    "      \"actions\": [\"admin\"],\n"
    "      \"purposes\": {},\n"
    "      \"requires_ticket\": true,\n"
    "      \"max_subjects_per_request\": 1,\n"
    "      \"bulk_subjects_threshold\": 0,\n"
    "      \"aggregate_only\": false,\n"
    "      \"pseudonymise\": true,\n"
    "      \"consented_only\": false,\n"
    "      \"location_privacy\": true,\n"
    "      \"energy_sites_only\": false,\n"
    "      \"approves_bulk\": false,\n"
    "      \"quota\": {\"subjects_per_day\": 0, \"rows_per_day\": 0, \"bytes_per_day\": 0}\n"
    "    },\n"
    "    \"support\": {\n"
    "      \"comment\": \"service technicians: one vehicle per request, for a ticket, real ids "
    "and exact location\",\n"
    "      \"actions\": [\"read\"],\n"
    "      \"purposes\": {\"service\": [\"default\", \"location\", \"events\"]},\n"
    "      \"requires_ticket\": true,\n"
    "      \"max_subjects_per_request\": 1,\n"
    "      \"bulk_subjects_threshold\": null,\n"
    "      \"aggregate_only\": false,\n"
    "      \"pseudonymise\": false,\n"
    "      \"consented_only\": false,\n"
    "      \"location_privacy\": false,\n"
    "      \"energy_sites_only\": false,\n"
    "      \"approves_bulk\": false,\n"
    "      \"quota\": {\"subjects_per_day\": 20, \"rows_per_day\": 500000, \"bytes_per_day\": "
    "536870912},\n"
    "      \"role_quota\": {\"subjects_per_day\": 200, \"rows_per_day\": 5000000, "
    "\"bytes_per_day\": 5368709120}\n"
    "    },\n"
    "    \"analyst\": {\n"
    "      \"comment\": \"aggregates over pseudonymised data of subjects who consented to the "
    "purpose\",\n"
    "      \"actions\": [\"read\"],\n"
    "      \"purposes\": {\n"
    "        \"location_history\": [\"location\"],\n"
    "        \"clips\": [\"events\", \"location\"],\n"
    "        \"model_training\": [\"default\", \"location\", \"events\"],\n"
    "        \"energy_programs\": [\"default\", \"events\"]\n"
    "      },\n"
    "      \"requires_ticket\": true,\n"
    "      \"max_subjects_per_request\": null,\n"
    "      \"bulk_subjects_threshold\": null,\n"
    "      \"aggregate_only\": true,\n"
    "      \"pseudonymise\": true,\n"
    "      \"consented_only\": true,\n"
    "      \"location_privacy\": true,\n"
    "      \"energy_sites_only\": false,\n"
    "      \"approves_bulk\": false,\n"
    "      \"quota\": {\"subjects_per_day\": null, \"rows_per_day\": 1000000, \"bytes_per_day\": "
    "268435456},\n"
    "      \"role_quota\": {\"subjects_per_day\": null, \"rows_per_day\": 10000000, "
    "\"bytes_per_day\": 2684354560}\n"
    "    },\n"
    "    \"ml-pipeline\": {\n"
    "      \"comment\": \"training jobs: pseudonymised rows of subjects who consented to model "
    "training; more than 1000 subjects at once needs a privacy officer's approval\",\n"
    "      \"actions\": [\"read\"],\n"
    "      \"purposes\": {\"model_training\": [\"default\", \"location\", \"events\"]},\n"
    "      \"requires_ticket\": false,\n"
    "      \"max_subjects_per_request\": null,\n"
    "      \"bulk_subjects_threshold\": 1000,\n"
    "      \"aggregate_only\": false,\n"
    "      \"pseudonymise\": true,\n"
    "      \"consented_only\": true,\n"
    "      \"location_privacy\": true,\n"
    "      \"energy_sites_only\": false,\n"
    "      \"approves_bulk\": false,\n"
    "      \"quota\": {\"subjects_per_day\": 100000, \"rows_per_day\": 100000000, "
    "\"bytes_per_day\": 68719476736},\n"
    "      \"role_quota\": {\"subjects_per_day\": 200000, \"rows_per_day\": 200000000, "
    "\"bytes_per_day\": 137438953472}\n"
    "    },\n"
    "    \"privacy-officer\": {\n"
    "      \"comment\": \"data subject export and erasure, one subject per ticket; reads the "
    "access log; approves bulk reads; no bulk reads\",\n"
    "      \"actions\": [\"export\", \"erase\", \"audit\"],\n"
    "      \"purposes\": {},\n"
    "      \"requires_ticket\": true,\n"
    "      \"max_subjects_per_request\": 1,\n"
    "      \"bulk_subjects_threshold\": null,\n"
    "      \"aggregate_only\": false,\n"
    "      \"pseudonymise\": false,\n"
    "      \"consented_only\": false,\n"
    "      \"location_privacy\": false,\n"
    "      \"energy_sites_only\": false,\n"
    "      \"approves_bulk\": true,\n"
    "      \"quota\": {\"subjects_per_day\": 20, \"rows_per_day\": 50000000, \"bytes_per_day\": "
    "17179869184},\n"
    "      \"role_quota\": {\"subjects_per_day\": 100, \"rows_per_day\": 250000000, "
    "\"bytes_per_day\": 85899345920}\n"
    "    },\n"
    "    \"energy-operator\": {\n"
    "      \"comment\": \"energy programmes: pseudonymised energy sites enrolled in the programme "
    "(consented), never vehicles, no location\",\n"
    "      \"actions\": [\"read\"],\n"
    "      \"purposes\": {\"energy_programs\": [\"default\", \"events\"]},\n"
    "      \"requires_ticket\": false,\n"
    "      \"max_subjects_per_request\": null,\n"
    "      \"bulk_subjects_threshold\": 10000,\n"
    "      \"aggregate_only\": false,\n"
    "      \"pseudonymise\": true,\n"
    "      \"consented_only\": true,\n"
    "      \"location_privacy\": true,\n"
    "      \"energy_sites_only\": true,\n"
    "      \"approves_bulk\": false,\n"
    "      \"quota\": {\"subjects_per_day\": 100000, \"rows_per_day\": 50000000, "
    "\"bytes_per_day\": 8589934592},\n"
    "      \"role_quota\": {\"subjects_per_day\": 200000, \"rows_per_day\": 100000000, "
    "\"bytes_per_day\": 17179869184}\n"
    "    },\n"
    "    \"energy-billing\": {\n"
    "      \"comment\": \"pays energy-site owners who consented to billing: purpose billing "
    "reads settlements only, whose rows name the payee; pseudonyms everywhere else, energy sites "
    "only, a ticket per payment run\",\n"
    "      \"actions\": [\"read\"],\n"
    "      \"purposes\": {\"billing\": [\"default\"]},\n"
    "      \"requires_ticket\": true,\n"
    "      \"max_subjects_per_request\": null,\n"
    "      \"bulk_subjects_threshold\": null,\n"
    "      \"aggregate_only\": false,\n"
    "      \"pseudonymise\": true,\n"
    "      \"consented_only\": true,\n"
    "      \"location_privacy\": true,\n"
    "      \"energy_sites_only\": true,\n"
    "      \"approves_bulk\": false,\n"
    "      \"quota\": {\"subjects_per_day\": 1000000, \"rows_per_day\": 10000000, "
    "\"bytes_per_day\": 4294967296},\n"
    "      \"role_quota\": {\"subjects_per_day\": 2000000, \"rows_per_day\": 20000000, "
    "\"bytes_per_day\": 8589934592}\n"
    "    },\n"
    "    \"data-engineer\": {\n"
    "      \"comment\": \"data-collection campaigns (purpose clips): creates and stops "
    "campaigns over vehicles whose owners consented to clips, targeted by their latest signals "
    "and place; sees counts only, never a vehicle\",\n"
    "      \"actions\": [\"read\"],\n"
    "      \"purposes\": {\"clips\": [\"default\", \"location\", \"events\"]},\n"
    "      \"requires_ticket\": false,\n"
    "      \"max_subjects_per_request\": null,\n"
    "      \"bulk_subjects_threshold\": null,\n"
    "      \"aggregate_only\": true,\n"
    "      \"pseudonymise\": true,\n"
    "      \"consented_only\": true,\n"
    "      \"location_privacy\": true,\n"
    "      \"energy_sites_only\": false,\n"
    "      \"approves_bulk\": false,\n"
    "      \"quota\": {\"subjects_per_day\": null, \"rows_per_day\": 1000000, "
    "\"bytes_per_day\": 268435456}\n"
    "    },\n"
    "    \"labeler\": {\n"
    "      \"comment\": \"people who label clips for model training: one de-identified clip at a "
    "time from the work queue (never chosen by subject), of subjects who consented to model "
    "training, pseudonymised, no place, watermarked; no ticket (the queue decides what is seen), a "
    "daily quota of clips\",\n"
    "      \"actions\": [\"read\"],\n"
    "      \"purposes\": {\"model_training\": [\"events\"]},\n"
    "      \"requires_ticket\": false,\n"
    "      \"max_subjects_per_request\": 1,\n"
    "      \"bulk_subjects_threshold\": null,\n"
    "      \"aggregate_only\": false,\n"
    "      \"pseudonymise\": true,\n"
    "      \"consented_only\": true,\n"
    "      \"location_privacy\": true,\n"
    "      \"energy_sites_only\": false,\n"
    "      \"approves_bulk\": false,\n"
    "      \"quota\": {\"subjects_per_day\": 200, \"rows_per_day\": 200, \"bytes_per_day\": "
    "21474836480},\n"
    "      \"role_quota\": {\"subjects_per_day\": 5000, \"rows_per_day\": 5000, \"bytes_per_day\": "
    "536870912000}\n"
    "    }\n"
    "  }\n"
    "}\n";

const char *fv_policy_default_json(void)
{
    return DEFAULT_POLICY;
}

/* ---- parsing ------------------------------------------------------------------------ */

struct ctx {
    const char *source;
    char *err;
    size_t errlen;
};

/* "SOURCE: PATH: message"; returns FV_EINVAL. */
static int bad(const struct ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(const struct ctx *c, const char *path, const char *fmt, ...)
{
    if (c->err != NULL && c->errlen > 0) {
        int n = snprintf(c->err, c->errlen, "%s: %s: ", c->source, path);
        if (n >= 0 && (size_t)n < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return FV_EINVAL;
}

/* Role, purpose and class names: [a-z0-9._-]{1,31}. */
static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > FV_POLICY_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '.' ||
              s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* "a, b, c" for messages. */
static void list_names(char *out, size_t outlen, const char (*names)[FV_POLICY_NAME_MAX + 1],
                       size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used < outlen; i++) {
        int k = snprintf(out + used, outlen - used, "%s%s", i ? ", " : "", names[i]);
        if (k < 0) break;
        used += (size_t)k;
    }
}

/* A list of unique names: "purposes" or "classes". */
static int parse_names(const struct ctx *c, json_t *v, const char *key,
                       char (*names)[FV_POLICY_NAME_MAX + 1], size_t max, size_t *count)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return bad(c, key, "expected a non-empty list of names");
    if (json_array_size(v) > max)
        return bad(c, key, "%zu names; at most %zu", json_array_size(v), max);
    size_t i;
    json_t *e;
    char p[64], shown[52];
    json_array_foreach(v, i, e)
    {
        snprintf(p, sizeof p, "%s[%zu]", key, i);
        if (!json_is_string(e)) return bad(c, p, "expected a name (a string)");
        const char *s = json_string_value(e);
        if (!name_ok(s))
            return bad(c, p, "bad name \"%s\" (1 to %d of a-z 0-9 . _ -)",
                       fv_policy__printable(shown, s), FV_POLICY_NAME_MAX);
        if (fv_policy__find_name((const char(*)[FV_POLICY_NAME_MAX + 1]) names, i, s) >= 0)
            return bad(c, p, "\"%s\" is listed twice", s);
        memcpy(names[i], s, strlen(s) + 1);
    }
    *count = json_array_size(v);
    return FV_OK;
}

static int parse_bool(const struct ctx *c, json_t *v, const char *path, bool *out)
{
    if (!json_is_boolean(v)) return bad(c, path, "expected true or false");
    *out = json_is_true(v);
    return FV_OK;
}

/* An integer >= min, or null (FV_UNLIMITED). */
static int parse_limit(const struct ctx *c, json_t *v, const char *path, json_int_t min,
                       uint64_t *out)
{
    if (json_is_null(v)) {
        *out = FV_UNLIMITED;
        return FV_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min)
        return bad(c, path, "expected an integer >= %lld, or null for no limit", (long long)min);
    *out = (uint64_t)json_integer_value(v);
    return FV_OK;
}

static int parse_quota(const struct ctx *c, json_t *v, const char *path, struct fv_quota_limits *q)
{
    static const char *const keys[] = {"subjects_per_day", "rows_per_day", "bytes_per_day"};
    uint64_t *fields[] = {&q->subjects_per_day, &q->rows_per_day, &q->bytes_per_day};
    char p[128];
    if (!json_is_object(v)) return bad(c, path, "expected an object");
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val)
    {
        bool known = strcmp(key, "comment") == 0;
        for (size_t i = 0; i < 3; i++)
            known = known || strcmp(key, keys[i]) == 0;
        if (!known) {
            char shown[52];
            return bad(c, path, "unknown key \"%s\"", fv_policy__printable(shown, key));
        }
    }
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s.%s", path, keys[i]);
        json_t *f = json_object_get(v, keys[i]);
        if (f == NULL) return bad(c, path, "missing \"%s\"", keys[i]);
        int rc = parse_limit(c, f, p, 0, fields[i]);
        if (rc) return rc;
    }
    return FV_OK;
}

static int parse_actions(const struct ctx *c, json_t *v, const char *path, unsigned *out)
{
    if (!json_is_array(v)) return bad(c, path, "expected a list of actions");
    size_t i;
    json_t *e;
    char p[128], shown[52];
    *out = 0;
    json_array_foreach(v, i, e)
    {
        snprintf(p, sizeof p, "%s[%zu]", path, i);
        enum fv_action a;
        if (!json_is_string(e) || fv_action_parse(json_string_value(e), &a) != FV_OK)
            return bad(c, p, "unknown action \"%s\" (actions: read, export, erase, audit, admin)",
                       fv_policy__printable(shown, json_is_string(e) ? json_string_value(e) : "?"));
        if (*out & (1u << a)) return bad(c, p, "\"%s\" is listed twice", fv_action_name(a));
        *out |= 1u << a;
    }
    return FV_OK;
}

/* "purposes": {purpose: [class, ...]} */
static int parse_role_purposes(const struct ctx *c, const struct fv_policy *pol, json_t *v,
                               const char *path, struct role *r)
{
    if (!json_is_object(v)) return bad(c, path, "expected an object {purpose: [classes]}");
    const char *key;
    json_t *list;
    char p[160], shown[52], names[FV_POLICY_MAX_CLASSES * (FV_POLICY_NAME_MAX + 2) + 1];
    json_object_foreach(v, key, list)
    {
        int pid = fv_policy__find_name(pol->purpose, pol->npurposes, key);
        if (pid < 0) {
            list_names(names, sizeof names, pol->purpose, pol->npurposes);
            return bad(c, path, "unknown purpose \"%s\" (purposes: %s)",
                       fv_policy__printable(shown, key), names);
        }
        snprintf(p, sizeof p, "%s.%s", path, key);
        if (!json_is_array(list) || json_array_size(list) == 0)
            return bad(c, p, "expected a non-empty list of classes");
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e)
        {
            snprintf(p, sizeof p, "%s.%s[%zu]", path, key, i);
            int cid = json_is_string(e) ? fv_policy__find_name(pol->class_name, pol->nclasses,
                                                               json_string_value(e))
                                        : -1;
            if (cid < 0) {
                list_names(names, sizeof names, pol->class_name, pol->nclasses);
                return bad(
                    c, p, "unknown class \"%s\" (classes: %s)",
                    fv_policy__printable(shown, json_is_string(e) ? json_string_value(e) : "?"),
                    names);
            }
            if (r->classes[pid] & (1u << cid))
                return bad(c, p, "\"%s\" is listed twice", pol->class_name[cid]);
            r->classes[pid] |= 1u << cid;
        }
        r->purposes |= 1u << pid;
    }
    return FV_OK;
}

static const char *const ROLE_KEYS[] = {"actions",
                                        "purposes",
                                        "requires_ticket",
                                        "max_subjects_per_request",
                                        "bulk_subjects_threshold",
                                        "aggregate_only",
                                        "pseudonymise",
                                        "consented_only",
                                        "location_privacy",
                                        "energy_sites_only",
                                        "approves_bulk",
                                        "quota"};
#define NROLE_KEYS (sizeof ROLE_KEYS / sizeof ROLE_KEYS[0])

static int parse_role(const struct ctx *c, const struct fv_policy *pol, const char *name, json_t *v,
                      struct role *r)
{
    char path[64], p[128], shown[52];
    snprintf(path, sizeof path, "roles.%s", name);
    if (!json_is_object(v)) return bad(c, path, "expected an object");
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val)
    {
        bool known = strcmp(key, "comment") == 0 || strcmp(key, "aggregate_min_step_s") == 0 ||
                     strcmp(key, "aggregate_min_records") == 0 || /* optional (P8) */
                     strcmp(key, "role_quota") == 0;              /* optional (G5) */
        for (size_t i = 0; i < NROLE_KEYS; i++)
            known = known || strcmp(key, ROLE_KEYS[i]) == 0;
        if (!known) return bad(c, path, "unknown key \"%s\"", fv_policy__printable(shown, key));
        if (strcmp(key, "comment") == 0 && !json_is_string(val))
            return bad(c, path, "\"comment\" must be a string");
    }
    json_t *f[NROLE_KEYS];
    for (size_t i = 0; i < NROLE_KEYS; i++) {
        f[i] = json_object_get(v, ROLE_KEYS[i]);
        if (f[i] == NULL) return bad(c, path, "missing \"%s\"", ROLE_KEYS[i]);
    }
    memcpy(r->name, name, strlen(name) + 1);
#define SUB(k) (snprintf(p, sizeof p, "%s.%s", path, (k)), p)
    int rc = parse_actions(c, f[0], SUB("actions"), &r->actions);
    if (rc == FV_OK) rc = parse_role_purposes(c, pol, f[1], SUB("purposes"), r);
    if (rc == FV_OK) rc = parse_bool(c, f[2], SUB("requires_ticket"), &r->requires_ticket);
    if (rc == FV_OK)
        rc = parse_limit(c, f[3], SUB("max_subjects_per_request"), 1, &r->max_subjects);
    if (rc == FV_OK)
        rc = parse_limit(c, f[4], SUB("bulk_subjects_threshold"), 0, &r->bulk_threshold);
    if (rc == FV_OK) rc = parse_bool(c, f[5], SUB("aggregate_only"), &r->aggregate_only);
    if (rc == FV_OK) rc = parse_bool(c, f[6], SUB("pseudonymise"), &r->pseudonymise);
    if (rc == FV_OK) rc = parse_bool(c, f[7], SUB("consented_only"), &r->consented_only);
    if (rc == FV_OK) rc = parse_bool(c, f[8], SUB("location_privacy"), &r->location_privacy);
    if (rc == FV_OK) rc = parse_bool(c, f[9], SUB("energy_sites_only"), &r->energy_sites_only);
    if (rc == FV_OK) rc = parse_bool(c, f[10], SUB("approves_bulk"), &r->approves_bulk);
    if (rc == FV_OK) rc = parse_quota(c, f[11], SUB("quota"), &r->quota);
    /* G5: optional; none means no budget over the role's principals together */
    json_t *rq = json_object_get(v, "role_quota");
    r->role_quota = (struct fv_quota_limits){FV_UNLIMITED, FV_UNLIMITED, FV_UNLIMITED};
    if (rc == FV_OK && rq) rc = parse_quota(c, rq, SUB("role_quota"), &r->role_quota);
    /* P8: optional; the defaults hold for every aggregate_only role that gives none */
    json_t *ms = json_object_get(v, "aggregate_min_step_s"),
           *mr = json_object_get(v, "aggregate_min_records");
    r->agg_min_step_ms = FV_POLICY_AGG_MIN_STEP_MS;
    r->agg_min_records = FV_POLICY_AGG_MIN_RECORDS;
    if (rc == FV_OK && ms) {
        if (!json_is_integer(ms) || json_integer_value(ms) < 1 ||
            json_integer_value(ms) > 366 * 86400)
            rc = bad(c, SUB("aggregate_min_step_s"), "expected seconds, an integer 1..31622400");
        else
            r->agg_min_step_ms = (uint64_t)json_integer_value(ms) * 1000u;
    }
    if (rc == FV_OK && mr) {
        if (!json_is_integer(mr) || json_integer_value(mr) < 1 || json_integer_value(mr) > 1000000)
            rc = bad(c, SUB("aggregate_min_records"), "expected an integer 1..1000000");
        else
            r->agg_min_records = (uint64_t)json_integer_value(mr);
    }
#undef SUB
    if (rc) return rc;
    bool reads = (r->actions & (1u << FV_ACTION_READ)) != 0;
    if (reads && r->purposes == 0)
        return bad(c, path, "action \"read\" needs at least one purpose in \"purposes\"");
    if (!reads && r->purposes != 0)
        return bad(c, path, "\"purposes\" given, but \"read\" is not among the actions");
    return FV_OK;
}

static int parse_policy(const struct ctx *c, json_t *root, struct fv_policy *pol)
{
    if (!json_is_object(root)) return bad(c, "(top)", "expected an object");
    static const char *const keys[] = {"version", "comment", "purposes", "classes", "roles"};
    const char *key;
    json_t *val;
    char shown[52];
    json_object_foreach(root, key, val)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            known = known || strcmp(key, keys[i]) == 0;
        if (!known) return bad(c, "(top)", "unknown key \"%s\"", fv_policy__printable(shown, key));
    }
    json_t *version = json_object_get(root, "version");
    if (version == NULL) return bad(c, "(top)", "missing \"version\"");
    if (!json_is_integer(version) || json_integer_value(version) != FV_POLICY_VERSION)
        return bad(c, "version", "this fleetvault reads policy version %d", FV_POLICY_VERSION);
    json_t *comment = json_object_get(root, "comment");
    if (comment != NULL && !json_is_string(comment)) return bad(c, "comment", "expected a string");
    for (size_t i = 2; i < 5; i++)
        if (json_object_get(root, keys[i]) == NULL)
            return bad(c, "(top)", "missing \"%s\"", keys[i]);
    int rc = parse_names(c, json_object_get(root, "purposes"), "purposes", pol->purpose,
                         FV_POLICY_MAX_PURPOSES, &pol->npurposes);
    if (rc) return rc;
    rc = parse_names(c, json_object_get(root, "classes"), "classes", pol->class_name,
                     FV_POLICY_MAX_CLASSES, &pol->nclasses);
    if (rc) return rc;
    json_t *roles = json_object_get(root, "roles");
    if (!json_is_object(roles) || json_object_size(roles) == 0)
        return bad(c, "roles", "expected an object {role: {...}} with at least one role");
    if (json_object_size(roles) > FV_POLICY_MAX_ROLES)
        return bad(c, "roles", "%zu roles; at most %d", json_object_size(roles),
                   FV_POLICY_MAX_ROLES);
    json_object_foreach(roles, key, val)
    {
        if (!name_ok(key))
            return bad(c, "roles", "bad role name \"%s\" (1 to %d of a-z 0-9 . _ -)",
                       fv_policy__printable(shown, key), FV_POLICY_NAME_MAX);
        rc = parse_role(c, pol, key, val, &pol->role[pol->nroles]);
        if (rc) return rc;
        pol->nroles++;
    }
    return FV_OK;
}

int fv_policy_parse(const char *text, size_t len, const char *source, struct fv_policy **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    struct ctx c = {source ? source : "policy", err, errlen};
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        fv_seterr(err, errlen, "%s: line %d column %d: %s", c.source, jerr.line, jerr.column,
                  jerr.text);
        return FV_EINVAL;
    }
    struct fv_policy *pol = calloc(1, sizeof *pol);
    int rc = pol ? parse_policy(&c, root, pol) : FV_ENOMEM;
    json_decref(root);
    if (rc) {
        free(pol);
        return rc;
    }
    *out = pol;
    return FV_OK;
}

int fv_policy_load(const char *path, struct fv_policy **out, char *err, size_t errlen)
{
    *out = NULL;
    if (path == NULL)
        return fv_policy_parse(DEFAULT_POLICY, sizeof DEFAULT_POLICY - 1, "built-in policy", out,
                               err, errlen);
    char *text = NULL;
    size_t len = 0;
    int rc = fv_os_read_file(path, FV_POLICY_FILE_MAX, &text, &len, err, errlen);
    if (rc) return rc;
    rc = fv_policy_parse(text, len, path, out, err, errlen);
    free(text);
    return rc;
}

void fv_policy_free(struct fv_policy *p)
{
    free(p);
}
