/*
 * policy.c - see policy.h.
 *
 * The policy is parsed once into fixed arrays (no pointers into the JSON), so a loaded
 * policy is a plain immutable value. Names are indices into those arrays: a request's
 * class mask has bit i for class i, a role's purposes likewise.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "os/fsio.h"
#include "privacy/policy.h"
#include "util/err.h"
#include "util/map.h"

/* The text of docs/policy.example.json (tests/privacy/test_policy.c checks they agree). */
static const char DEFAULT_POLICY[] =
    "{\n"
    "  \"version\": 1,\n"
    "  \"comment\": \"fleetvault access policy: roles x purposes x data classes. Read by "
    "fv_policy_load (src/privacy/policy.h); this is the built-in default. Limits are integers, or "
    "null for none. Every role key is required; unknown keys are errors.\",\n"
    "  \"purposes\": [\"service\", \"location_history\", \"clips\", \"model_training\", "
    "\"energy_programs\"],\n"
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
    "536870912}\n"
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
    "268435456}\n"
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
    "\"bytes_per_day\": 68719476736}\n"
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
    "17179869184}\n"
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
    "\"bytes_per_day\": 8589934592}\n"
    "    }\n"
    "  }\n"
    "}\n";

#define DAY_MS 86400000ull

struct role {
    char name[FV_POLICY_NAME_MAX + 1];
    unsigned actions;  /* bit per enum fv_action */
    uint32_t purposes; /* bit per purpose */
    uint32_t classes[FV_POLICY_MAX_PURPOSES];
    bool requires_ticket, aggregate_only, pseudonymise, consented_only, location_privacy,
        energy_sites_only, approves_bulk;
    uint64_t max_subjects;   /* FV_UNLIMITED: no limit */
    uint64_t bulk_threshold; /* FV_UNLIMITED: never needs approval */
    struct fv_quota_limits quota;
};

struct fv_policy {
    size_t npurposes, nclasses, nroles;
    char purpose[FV_POLICY_MAX_PURPOSES][FV_POLICY_NAME_MAX + 1];
    char class_name[FV_POLICY_MAX_CLASSES][FV_POLICY_NAME_MAX + 1];
    struct role role[FV_POLICY_MAX_ROLES];
};

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

/* Copies s for a message: at most 48 bytes, anything unprintable as '?', so neither a
 * policy file nor a request can put control characters into a log line. */
static const char *printable(char out[52], const char *s)
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

static int find_name(const char (*names)[FV_POLICY_NAME_MAX + 1], size_t n, const char *name)
{
    for (size_t i = 0; name != NULL && i < n; i++)
        if (strcmp(names[i], name) == 0) return (int)i;
    return -1;
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
            return bad(c, p, "bad name \"%s\" (1 to %d of a-z 0-9 . _ -)", printable(shown, s),
                       FV_POLICY_NAME_MAX);
        if (find_name((const char(*)[FV_POLICY_NAME_MAX + 1]) names, i, s) >= 0)
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
            return bad(c, path, "unknown key \"%s\"", printable(shown, key));
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
                       printable(shown, json_is_string(e) ? json_string_value(e) : "?"));
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
        int pid = find_name(pol->purpose, pol->npurposes, key);
        if (pid < 0) {
            list_names(names, sizeof names, pol->purpose, pol->npurposes);
            return bad(c, path, "unknown purpose \"%s\" (purposes: %s)", printable(shown, key),
                       names);
        }
        snprintf(p, sizeof p, "%s.%s", path, key);
        if (!json_is_array(list) || json_array_size(list) == 0)
            return bad(c, p, "expected a non-empty list of classes");
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e)
        {
            snprintf(p, sizeof p, "%s.%s[%zu]", path, key, i);
            int cid = json_is_string(e)
                          ? find_name(pol->class_name, pol->nclasses, json_string_value(e))
                          : -1;
            if (cid < 0) {
                list_names(names, sizeof names, pol->class_name, pol->nclasses);
                return bad(c, p, "unknown class \"%s\" (classes: %s)",
                           printable(shown, json_is_string(e) ? json_string_value(e) : "?"), names);
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
        bool known = strcmp(key, "comment") == 0;
        for (size_t i = 0; i < NROLE_KEYS; i++)
            known = known || strcmp(key, ROLE_KEYS[i]) == 0;
        if (!known) return bad(c, path, "unknown key \"%s\"", printable(shown, key));
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
        if (!known) return bad(c, "(top)", "unknown key \"%s\"", printable(shown, key));
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
                       printable(shown, key), FV_POLICY_NAME_MAX);
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
    return find_name(p->purpose, p->npurposes, name);
}

int fv_policy_class_id(const struct fv_policy *p, const char *name)
{
    return find_name(p->class_name, p->nclasses, name);
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

int fv_policy_quota(const struct fv_policy *p, const char *role, struct fv_quota_limits *out)
{
    const struct role *r = role_by_name(p, role);
    if (r == NULL) return FV_ENOENT;
    *out = r->quota;
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
            printable(role_s, req->role));
        return;
    }
    out->quota = r->quota;
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
            say(out, false, "unknown purpose \"%s\"", printable(x, req->purpose));
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
    if (req->subjects > r->bulk_threshold) {
        if (empty(req->approved_by)) {
            say(out, false,
                "%s %llu subjects needs a second principal's approval (role %s: more than %llu)",
                a == FV_ACTION_READ     ? "reading"
                : a == FV_ACTION_EXPORT ? "exporting"
                                        : "erasing",
                (unsigned long long)req->subjects, role, (unsigned long long)r->bulk_threshold);
            return;
        }
        if (!empty(req->principal) && strcmp(req->approved_by, req->principal) == 0) {
            say(out, false, "a principal may not approve its own bulk request");
            return;
        }
        const struct role *ar = role_by_name(p, req->approver_role);
        if (ar == NULL || !ar->approves_bulk) {
            say(out, false, "approver %s (role %s) may not approve bulk requests",
                printable(x, req->approved_by), printable(role_s, req->approver_role));
            return;
        }
        out->bulk = true;
    }
    if (a == FV_ACTION_READ) {
        out->obligations = (r->pseudonymise ? FV_OBLIGE_PSEUDONYMISE : 0) |
                           (r->aggregate_only ? FV_OBLIGE_AGGREGATE_ONLY : 0) |
                           (r->location_privacy ? FV_OBLIGE_LOCATION_PRIVACY : 0) |
                           (r->consented_only ? FV_OBLIGE_CONSENTED_ONLY : 0) |
                           (r->energy_sites_only ? FV_OBLIGE_ENERGY_SITES_ONLY : 0);
        say(out, true, "role %s may read for purpose %s%s%s", role, p->purpose[pid],
            out->bulk ? ", bulk approved by " : "",
            out->bulk ? printable(x, req->approved_by) : "");
    } else {
        say(out, true, "role %s may %s%s%s", role, verb, out->bulk ? ", bulk approved by " : "",
            out->bulk ? printable(x, req->approved_by) : "");
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

int fv_quota_check(const struct fv_quota *q, const char *principal,
                   const struct fv_quota_limits *lim, uint64_t now_ms, uint64_t subjects,
                   uint64_t rows, uint64_t bytes, char *reason, size_t reasonlen)
{
    struct fv_quota_usage u;
    fv_quota_get(q, principal, now_ms, &u);
    const char *what[3] = {"subjects", "rows", "bytes"};
    uint64_t used[3] = {u.subjects, u.rows, u.bytes}, want[3] = {subjects, rows, bytes};
    uint64_t limit[3] = {lim->subjects_per_day, lim->rows_per_day, lim->bytes_per_day};
    char shown[52];
    for (int i = 0; i < 3; i++)
        if (over(used[i], want[i], limit[i])) {
            fv_seterr(reason, reasonlen,
                      "daily quota of %s: %s_per_day %llu would be exceeded (used %llu today "
                      "UTC, this request %llu)",
                      printable(shown, principal), what[i], (unsigned long long)limit[i],
                      (unsigned long long)used[i], (unsigned long long)want[i]);
            return FV_ELIMIT;
        }
    return FV_OK;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
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
