/* test_policy.c - the access policy: the built-in default equals docs/policy.example.json;
 * the allow/deny matrix of every role x purpose x ticket x subjects x aggregation (rules
 * P1-P7 of policy.h) against a table written from the issue, not from the code; other
 * actions, classes, tickets, bulk approval; policy file errors name the JSON path; daily
 * quotas; purpose-bound pseudonyms (known answer, stable within, different across). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "privacy/policy.h"
#include "util/err.h"

static struct fv_policy *load_default(void)
{
    struct fv_policy *p = NULL;
    char err[512];
    int rc = fv_policy_load(NULL, &p, err, sizeof err);
    if (rc != FV_OK) fprintf(stderr, "default policy: %s\n", err);
    assert_int_equal(rc, FV_OK);
    return p;
}

/* docs/policy.example.json, found from this file's path (tests/privacy/test_policy.c). */
static void example_path(char *out, size_t n)
{
    snprintf(out, n, "%s", __FILE__);
    char *cut = strstr(out, "tests/privacy/test_policy.c");
    assert_non_null(cut);
    snprintf(cut, n - (size_t)(cut - out), "docs/policy.example.json");
}

static void test_default_is_the_example_file(void **state)
{
    (void)state;
    char path[4096], err[512];
    example_path(path, sizeof path);
    json_error_t jerr;
    json_t *file = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    json_t *builtin = json_loads(fv_policy_default_json(), JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(file);
    assert_non_null(builtin);
    assert_true(json_equal(file, builtin));
    json_decref(file);
    json_decref(builtin);
    /* byte for byte, so the documented file is the one built in */
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    assert_string_equal(text, fv_policy_default_json());
    struct fv_policy *p = NULL;
    assert_int_equal(fv_policy_load(path, &p, err, sizeof err), FV_OK);
    assert_int_equal(fv_policy_nroles(p), 9);
    assert_int_equal(fv_policy_npurposes(p), 7);
    assert_int_equal(fv_policy_nclasses(p), 3);
    const char *roles[] = {"admin",          "support",         "analyst",
                           "ml-pipeline",    "privacy-officer", "energy-operator",
                           "energy-billing", "data-engineer",   "labeler"};
    for (size_t i = 0; i < 9; i++)
        assert_int_equal(fv_policy_role_id(p, roles[i]), (int)i);
    assert_string_equal(fv_policy_purpose_name(p, 3), "model_training");
    assert_string_equal(fv_policy_class_name(p, 1), "location");
    assert_null(fv_policy_class_name(p, 3));
    assert_int_equal(fv_policy_class_id(p, "events"), 2);
    assert_int_equal(fv_policy_class_id(p, "nope"), -1);
    assert_int_equal(fv_policy_classes(p, "analyst", "location_history"), 1u << 1);
    assert_int_equal(fv_policy_classes(p, "support", "service"), 7u);
    assert_int_equal(fv_policy_classes(p, "support", "clips"), 0u);
    assert_int_equal(fv_policy_classes(p, "nobody", "service"), 0u);
    struct fv_quota_limits q;
    assert_int_equal(fv_policy_quota(p, "support", &q), FV_OK);
    assert_int_equal(q.subjects_per_day, 20);
    assert_int_equal(q.rows_per_day, 500000);
    assert_int_equal(q.bytes_per_day, 536870912);
    assert_int_equal(fv_policy_quota(p, "analyst", &q), FV_OK);
    assert_true(q.subjects_per_day == FV_UNLIMITED);
    assert_int_equal(fv_policy_quota(p, "nobody", &q), FV_ENOENT);
    fv_policy_free(p);
    /* a missing file is named */
    assert_int_equal(fv_policy_load("/nonexistent/policy.json", &p, err, sizeof err), FV_ENOENT);
    assert_null(p);
    assert_non_null(strstr(err, "/nonexistent/policy.json"));
}

/* ---- the read matrix ------------------------------------------------------------------ */

/* What the issue asks of each role, written down independently of policy.c. */
struct expect {
    const char *role;
    int reads;            /* has the read action at all */
    const char *purposes; /* allowed purposes, space-separated, each followed by a space */
    int ticket, one, agg; /* needs a ticket; one subject per request; aggregates only */
    unsigned obligations;
};

static const struct expect EXPECT[] = {
    {"admin", 0, "", 1, 1, 0, 0},
    {"support", 1, "service ", 1, 1, 0, 0},
    {"analyst", 1, "location_history clips model_training energy_programs ", 1, 0, 1,
     FV_OBLIGE_PSEUDONYMISE | FV_OBLIGE_AGGREGATE_ONLY | FV_OBLIGE_LOCATION_PRIVACY |
         FV_OBLIGE_CONSENTED_ONLY},
    {"ml-pipeline", 1, "model_training ", 0, 0, 0,
     FV_OBLIGE_PSEUDONYMISE | FV_OBLIGE_LOCATION_PRIVACY | FV_OBLIGE_CONSENTED_ONLY},
    {"privacy-officer", 0, "", 1, 1, 0, 0},
    {"energy-operator", 1, "energy_programs ", 0, 0, 0,
     FV_OBLIGE_PSEUDONYMISE | FV_OBLIGE_LOCATION_PRIVACY | FV_OBLIGE_CONSENTED_ONLY |
         FV_OBLIGE_ENERGY_SITES_ONLY},
    {"energy-billing", 1, "billing ", 1, 0, 0,
     FV_OBLIGE_PSEUDONYMISE | FV_OBLIGE_LOCATION_PRIVACY | FV_OBLIGE_CONSENTED_ONLY |
         FV_OBLIGE_ENERGY_SITES_ONLY},
    {"data-engineer", 1, "clips ", 0, 0, 1,
     FV_OBLIGE_PSEUDONYMISE | FV_OBLIGE_AGGREGATE_ONLY | FV_OBLIGE_LOCATION_PRIVACY |
         FV_OBLIGE_CONSENTED_ONLY},
    {"labeler", 1, "model_training ", 0, 1, 0,
     FV_OBLIGE_PSEUDONYMISE | FV_OBLIGE_LOCATION_PRIVACY | FV_OBLIGE_CONSENTED_ONLY},
};

static int allowed_purpose(const struct expect *e, const char *purpose)
{
    char word[64];
    snprintf(word, sizeof word, "%s ", purpose);
    return *purpose != '\0' && strstr(e->purposes, word) != NULL &&
           (strstr(e->purposes, word) == e->purposes || strstr(e->purposes, word)[-1] == ' ');
}

static void test_read_matrix(void **state)
{
    (void)state;
    struct fv_policy *p = load_default();
    const char *purposes[] = {"",        "service",        "location_history",
                              "clips",   "model_training", "energy_programs",
                              "billing", "marketing"};
    const char *tickets[] = {NULL, "SUP-1234"};
    int cases = 0, allows = 0;
    for (size_t r = 0; r < sizeof EXPECT / sizeof EXPECT[0]; r++)
        for (size_t u = 0; u < sizeof purposes / sizeof purposes[0]; u++)
            for (int t = 0; t < 2; t++)
                for (uint64_t n = 1; n <= 2; n++)
                    for (int agg = 0; agg < 2; agg++) {
                        const struct expect *e = &EXPECT[r];
                        uint32_t mask = fv_policy_classes(p, e->role, purposes[u]);
                        struct fv_access_request req = {
                            .principal = "someone",
                            .role = e->role,
                            .action = FV_ACTION_READ,
                            .purpose = purposes[u],
                            .ticket = tickets[t],
                            .classes = mask ? mask : 1u,
                            .subjects = n,
                            .aggregated = agg,
                            .energy_sites_only = true,
                        };
                        struct fv_decision d;
                        fv_policy_decide(p, &req, &d);
                        int ok_purpose = allowed_purpose(e, purposes[u]);
                        int want = e->reads && ok_purpose && (!e->ticket || t) &&
                                   (!e->one || n == 1) && (!e->agg || agg);
                        /* the first rule broken is the reason given */
                        const char *why = NULL;
                        char buf[128];
                        if (!e->reads) {
                            snprintf(buf, sizeof buf, "role %s may not read personal data",
                                     e->role);
                            why = buf;
                        } else if (*purposes[u] == '\0') {
                            why = "purpose required";
                        } else if (u == 7) {
                            why = "unknown purpose \"marketing\"";
                        } else if (!ok_purpose) {
                            snprintf(buf, sizeof buf, "role %s may not use purpose %s", e->role,
                                     purposes[u]);
                            why = buf;
                        } else if (e->ticket && !t) {
                            snprintf(buf, sizeof buf, "%s needs a ticket", e->role);
                            why = buf;
                        } else if (e->one && n > 1) {
                            snprintf(buf, sizeof buf,
                                     "%s may read one subject per request (asked for 2)", e->role);
                            why = buf;
                        } else if (e->agg && !agg) {
                            snprintf(buf, sizeof buf, "role %s may read aggregated results only",
                                     e->role);
                            why = buf;
                        }
                        if (d.allow != want || (why && strcmp(d.reason, why) != 0))
                            fail_msg("%s / %s / ticket %d / %d subjects / aggregated %d: "
                                     "got %s \"%s\", want %s \"%s\"",
                                     e->role, purposes[u], t, (int)n, agg,
                                     d.allow ? "allow" : "deny", d.reason, want ? "allow" : "deny",
                                     why ? why : "");
                        if (want) {
                            allows++;
                            assert_int_equal(d.obligations, e->obligations);
                            assert_int_equal(d.classes, mask);
                            assert_false(d.bulk);
                            assert_non_null(strstr(d.reason, "may read for purpose"));
                        } else {
                            assert_int_equal(d.obligations, 0);
                        }
                        cases++;
                    }
    assert_int_equal(cases, 9 * 8 * 2 * 2 * 2);
    /* support 1 (service, ticket, 1 subject, either aggregation: 2), analyst 4 purposes x
     * ticket x 2 subjects x aggregated (8), ml-pipeline 1 x 2 x 2 x 2 (8), energy 8, billing
     * (ticket, 2 x 2: 4), data-engineer (clips, 2 tickets x 2 subjects, aggregated: 4),
     * labeler (model_training, 2 tickets x 1 subject x either aggregation: 4) */
    assert_int_equal(allows, 2 + 8 + 8 + 8 + 4 + 4 + 4);
    fv_policy_free(p);
}

static void decide(const struct fv_policy *p, const struct fv_access_request *req, int allow,
                   const char *reason_part)
{
    struct fv_decision d;
    fv_policy_decide(p, req, &d);
    if (d.allow != allow || (reason_part && strstr(d.reason, reason_part) == NULL))
        fail_msg("got %s \"%s\", want %s \"...%s...\"", d.allow ? "allow" : "deny", d.reason,
                 allow ? "allow" : "deny", reason_part ? reason_part : "");
}

static void test_classes_tickets_subjects(void **state)
{
    (void)state;
    struct fv_policy *p = load_default();
    uint32_t def = 1u << 0, loc = 1u << 1;
    struct fv_access_request r = {.role = "analyst",
                                  .purpose = "location_history",
                                  .ticket = "ANA-7",
                                  .classes = loc,
                                  .subjects = 500,
                                  .aggregated = true};
    decide(p, &r, 1, "role analyst may read for purpose location_history");
    r.classes = loc | def;
    decide(p, &r, 0, "role analyst may not read class default for purpose location_history");
    r.classes = 0;
    decide(p, &r, 0, "no data class requested");
    r.classes = loc | (1u << 5);
    decide(p, &r, 0, "unknown data class (bit 5)");
    r.classes = loc;
    r.subjects = 0;
    decide(p, &r, 0, "request names no subject");
    r.subjects = 1;
    /* tickets: blank, control characters, too long */
    r.ticket = "   ";
    decide(p, &r, 0, "analyst needs a ticket");
    r.ticket = "ANA-7\nforged log line";
    decide(p, &r, 0, "control characters");
    char longt[FV_POLICY_TICKET_MAX + 2];
    memset(longt, 'x', sizeof longt - 1);
    longt[sizeof longt - 1] = '\0';
    r.ticket = longt;
    decide(p, &r, 0, "longer than 128 bytes");
    longt[FV_POLICY_TICKET_MAX] = '\0';
    decide(p, &r, 1, NULL);
    r.ticket = "justification: fleet-wide charging study, approved in PRIV-12";
    decide(p, &r, 1, NULL);
    /* roles and actions that are not there */
    r.role = "analyzt";
    decide(p, &r, 0, "unknown role \"analyzt\"");
    r.role = NULL;
    decide(p, &r, 0, "no role");
    r.role = "analyst\x1b[2J";
    decide(p, &r, 0, "unknown role \"analyst?[2J\"");
    r.role = "analyst";
    r.action = (enum fv_action)99;
    decide(p, &r, 0, "unknown action");
    /* the energy operator reads energy sites only, the caller vouches */
    struct fv_access_request e = {.role = "energy-operator",
                                  .purpose = "energy_programs",
                                  .classes = def,
                                  .subjects = 40,
                                  .energy_sites_only = false};
    decide(p, &e, 0, "role energy-operator may read energy sites only");
    e.energy_sites_only = true;
    decide(p, &e, 1, NULL);
    e.ticket = "   "; /* not required: a blank one is no ticket */
    decide(p, &e, 1, NULL);
    e.ticket = "job 17\r\n"; /* but a malformed one is refused, required or not */
    decide(p, &e, 0, "energy-operator gave a ticket with control characters");
    e.ticket = NULL;
    e.classes = loc;
    decide(p, &e, 0, "may not read class location");
    /* support: the real ids, exact location, one vehicle, a ticket */
    struct fv_access_request s = {.role = "support",
                                  .purpose = "service",
                                  .ticket = "SUP-1",
                                  .classes = def | loc,
                                  .subjects = 1};
    struct fv_decision d;
    fv_policy_decide(p, &s, &d);
    assert_true(d.allow);
    assert_int_equal(d.obligations, 0);
    assert_int_equal(d.quota.subjects_per_day, 20);
    s.purpose = "model_training";
    decide(p, &s, 0, "role support may not use purpose model_training");
    fv_policy_free(p);
}

static void test_other_actions(void **state)
{
    (void)state;
    struct fv_policy *p = load_default();
    const char *roles[] = {"admin",          "support",         "analyst",
                           "ml-pipeline",    "privacy-officer", "energy-operator",
                           "energy-billing", "data-engineer",   "labeler"};
    /* which role may do which action (read is the matrix above) */
    const char *may[FV_ACTION_COUNT] = {NULL, "privacy-officer", "privacy-officer",
                                        "privacy-officer", "admin"};
    for (int a = FV_ACTION_EXPORT; a < FV_ACTION_COUNT; a++)
        for (size_t r = 0; r < 9; r++) {
            struct fv_access_request req = {
                .role = roles[r], .action = (enum fv_action)a, .ticket = "DSR-42", .subjects = 1};
            struct fv_decision d;
            fv_policy_decide(p, &req, &d);
            int want = strcmp(roles[r], may[a]) == 0;
            if (d.allow != want)
                fail_msg("%s %s: %s", roles[r], fv_action_name((enum fv_action)a), d.reason);
            assert_int_equal(d.obligations, 0);
        }
    struct fv_access_request r = {
        .role = "privacy-officer", .action = FV_ACTION_EXPORT, .subjects = 1};
    decide(p, &r, 0, "privacy-officer needs a ticket");
    r.ticket = "DSR-42";
    r.purpose = "marketing"; /* ignored: export is not a read for a purpose */
    decide(p, &r, 1, "role privacy-officer may export");
    r.subjects = 2;
    decide(p, &r, 0, "privacy-officer may export one subject per request (asked for 2)");
    r.action = FV_ACTION_ERASE;
    decide(p, &r, 0, "privacy-officer may erase one subject per request");
    r.subjects = 1;
    decide(p, &r, 1, "may erase");
    r.action = FV_ACTION_AUDIT;
    r.subjects = 0;
    decide(p, &r, 1, "may read the access log");
    r.ticket = NULL;
    decide(p, &r, 0, "needs a ticket");
    r.action = FV_ACTION_READ;
    r.purpose = "service";
    r.ticket = "DSR-42";
    decide(p, &r, 0, "role privacy-officer may not read personal data");
    struct fv_access_request a = {.role = "admin", .action = FV_ACTION_ADMIN};
    decide(p, &a, 1, "role admin may administer");
    a.action = FV_ACTION_EXPORT;
    a.subjects = 1;
    a.ticket = "X";
    decide(p, &a, 0, "role admin may not export a subject's data");
    a.role = "support";
    a.action = FV_ACTION_ADMIN;
    decide(p, &a, 0, "role support may not administer fleetvault");
    enum fv_action act;
    assert_int_equal(fv_action_parse("erase", &act), FV_OK);
    assert_int_equal(act, FV_ACTION_ERASE);
    assert_int_equal(fv_action_parse("delete", &act), FV_EINVAL);
    assert_int_equal(fv_action_parse(NULL, &act), FV_EINVAL);
    assert_string_equal(fv_action_name(FV_ACTION_AUDIT), "audit");
    fv_policy_free(p);
}

static void test_bulk_approval(void **state)
{
    (void)state;
    struct fv_policy *p = load_default();
    struct fv_access_request r = {.principal = "trainer-1",
                                  .role = "ml-pipeline",
                                  .purpose = "model_training",
                                  .classes = 7,
                                  .subjects = 1000};
    decide(p, &r, 1, NULL); /* at the threshold: no approval needed */
    r.subjects = 1001;
    decide(p, &r, 0,
           "reading 1001 subjects needs a second principal's approval (role ml-pipeline: more "
           "than 1000)");
    /* P7 per principal per day: 600 now after 600 earlier today passes 1000 */
    r.subjects = 600;
    r.bulk_today = 600;
    decide(p, &r, 0,
           "reading 600 subjects needs a second principal's approval (role ml-pipeline: more "
           "than 1000 a day without approval; 600 were asked for earlier today)");
    r.bulk_today = 400;
    decide(p, &r, 1, NULL); /* 1000 in the day: at the threshold */
    r.bulk_today = 0;
    r.subjects = 1001;
    r.approved_by = "trainer-1";
    r.approver_role = "privacy-officer";
    decide(p, &r, 0, "may not approve its own bulk request");
    r.approved_by = "bob";
    r.approver_role = "analyst";
    decide(p, &r, 0, "approver bob (role analyst) may not approve bulk requests");
    r.approver_role = NULL;
    decide(p, &r, 0, "may not approve bulk requests");
    r.approver_role = "privacy-officer";
    struct fv_decision d;
    fv_policy_decide(p, &r, &d);
    assert_true(d.allow);
    assert_true(d.bulk);
    assert_non_null(strstr(d.reason, "bulk approved by bob"));
    assert_int_equal(d.obligations, FV_OBLIGE_PSEUDONYMISE | FV_OBLIGE_LOCATION_PRIVACY |
                                        FV_OBLIGE_CONSENTED_ONLY);
    fv_policy_free(p);
}

/* ---- policy file errors --------------------------------------------------------------- */

/* Parses the default policy after edit(root) and returns the error. */
static int parse_edited(void (*edit)(json_t *root), char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loads(fv_policy_default_json(), 0, &jerr);
    assert_non_null(root);
    edit(root);
    char *text = json_dumps(root, JSON_INDENT(2));
    assert_non_null(text);
    struct fv_policy *p = (struct fv_policy *)1;
    int rc = fv_policy_parse(text, strlen(text), "policy.json", &p, err, errlen);
    if (rc != FV_OK) assert_null(p);
    fv_policy_free(p);
    free(text);
    json_decref(root);
    return rc;
}

static json_t *support(json_t *root)
{
    return json_object_get(json_object_get(root, "roles"), "support");
}

static void e_typo_key(json_t *r)
{
    json_object_set_new(support(r), "pseudonymize", json_true());
}
static void e_missing_quota(json_t *r)
{
    json_object_del(support(r), "quota");
}
static void e_unknown_class(json_t *r)
{
    json_t *l = json_object_get(json_object_get(support(r), "purposes"), "service");
    json_array_set_new(l, 1, json_string("locaton"));
}
static void e_unknown_purpose(json_t *r)
{
    json_object_set_new(json_object_get(support(r), "purposes"), "marketing",
                        json_pack("[s]", "default"));
}
static void e_bad_bool(json_t *r)
{
    json_object_set_new(support(r), "pseudonymise", json_string("no"));
}
static void e_zero_max(json_t *r)
{
    json_object_set_new(support(r), "max_subjects_per_request", json_integer(0));
}
static void e_negative_quota(json_t *r)
{
    json_object_set_new(json_object_get(support(r), "quota"), "rows_per_day", json_integer(-1));
}
static void e_real_quota(json_t *r)
{
    json_object_set_new(json_object_get(support(r), "quota"), "bytes_per_day", json_real(1.5));
}
static void e_unknown_action(json_t *r)
{
    json_array_set_new(json_object_get(support(r), "actions"), 0, json_string("browse"));
}
static void e_read_without_purposes(json_t *r)
{
    json_object_set_new(support(r), "purposes", json_object());
}
static void e_purposes_without_read(json_t *r)
{
    json_object_set_new(json_object_get(json_object_get(r, "roles"), "admin"), "purposes",
                        json_pack("{s[s]}", "service", "default"));
}
static void e_duplicate_class(json_t *r)
{
    json_array_append_new(json_object_get(r, "classes"), json_string("events"));
}
static void e_bad_purpose_name(json_t *r)
{
    json_array_set_new(json_object_get(r, "purposes"), 0, json_string("Service"));
}
static void e_version(json_t *r)
{
    json_object_set_new(r, "version", json_integer(2));
}
static void e_no_version(json_t *r)
{
    json_object_del(r, "version");
}
static void e_top_key(json_t *r)
{
    json_object_set_new(r, "rolez", json_object());
}
static void e_bad_role_name(json_t *r)
{
    json_object_set(json_object_get(r, "roles"), "Support Team", support(r));
}
static void e_no_roles(json_t *r)
{
    json_object_set_new(r, "roles", json_object());
}
static void e_quota_key(json_t *r)
{
    json_object_set_new(json_object_get(support(r), "quota"), "exports_per_day", json_integer(1));
}
static void e_duplicate_action(json_t *r)
{
    json_array_append_new(json_object_get(support(r), "actions"), json_string("read"));
}
static void ok_comment_and_null(json_t *r)
{
    json_object_set_new(support(r), "comment", json_string("changed"));
    json_object_set_new(support(r), "max_subjects_per_request", json_null());
}

static void e_agg_step_zero(json_t *r)
{
    json_object_set_new(support(r), "aggregate_min_step_s", json_integer(0));
}
static void e_agg_records_text(json_t *r)
{
    json_object_set_new(support(r), "aggregate_min_records", json_string("ten"));
}

static void test_policy_file_errors(void **state)
{
    (void)state;
    struct {
        void (*edit)(json_t *);
        const char *want;
    } cases[] = {
        {e_typo_key, "policy.json: roles.support: unknown key \"pseudonymize\""},
        {e_missing_quota, "policy.json: roles.support: missing \"quota\""},
        {e_unknown_class, "policy.json: roles.support.purposes.service[1]: unknown class "
                          "\"locaton\" (classes: default, location, events)"},
        {e_unknown_purpose, "roles.support.purposes: unknown purpose \"marketing\" (purposes: "
                            "service, location_history, clips, model_training, "
                            "energy_programs, billing, home_automation)"},
        {e_bad_bool, "roles.support.pseudonymise: expected true or false"},
        {e_zero_max, "roles.support.max_subjects_per_request: expected an integer >= 1, or null"},
        {e_negative_quota, "roles.support.quota.rows_per_day: expected an integer >= 0"},
        {e_real_quota, "roles.support.quota.bytes_per_day: expected an integer >= 0"},
        {e_unknown_action, "roles.support.actions[0]: unknown action \"browse\""},
        {e_read_without_purposes, "roles.support: action \"read\" needs at least one purpose"},
        {e_purposes_without_read, "roles.admin: \"purposes\" given, but \"read\" is not"},
        {e_duplicate_class, "policy.json: classes[3]: \"events\" is listed twice"},
        {e_bad_purpose_name, "purposes[0]: bad name \"Service\""},
        {e_version, "policy.json: version: this fleetvault reads policy version 1"},
        {e_no_version, "missing \"version\""},
        {e_top_key, "unknown key \"rolez\""},
        {e_bad_role_name, "policy.json: roles: bad role name \"Support Team\""},
        {e_no_roles, "policy.json: roles: expected an object"},
        {e_quota_key, "roles.support.quota: unknown key \"exports_per_day\""},
        {e_duplicate_action, "roles.support.actions[1]: \"read\" is listed twice"},
        {e_agg_step_zero, "roles.support.aggregate_min_step_s: expected seconds"},
        {e_agg_records_text, "roles.support.aggregate_min_records: expected an integer"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        int rc = parse_edited(cases[i].edit, err, sizeof err);
        if (rc != FV_EINVAL || strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: rc %d, err \"%s\", want \"%s\"", i, rc, err, cases[i].want);
    }
    assert_int_equal(parse_edited(ok_comment_and_null, err, sizeof err), FV_OK);
    /* not JSON, duplicate keys, not an object */
    struct fv_policy *p;
    const char *bad = "{\"version\": 1,\n \"version\": 1}";
    assert_int_equal(fv_policy_parse(bad, strlen(bad), "dup.json", &p, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "dup.json: line 2"));
    assert_non_null(strstr(err, "duplicate"));
    assert_int_equal(fv_policy_parse("{", 1, "cut.json", &p, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "cut.json: line 1"));
    assert_int_equal(fv_policy_parse("[]", 2, "list.json", &p, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "list.json: (top): expected an object"));
    /* a tiny valid policy with its own names */
    const char *mini =
        "{\"version\":1,\"purposes\":[\"care\"],\"classes\":[\"all\"],\"roles\":{\"nurse\":"
        "{\"actions\":[\"read\"],\"purposes\":{\"care\":[\"all\"]},\"requires_ticket\":false,"
        "\"max_subjects_per_request\":null,\"bulk_subjects_threshold\":null,"
        "\"aggregate_only\":false,\"pseudonymise\":false,\"consented_only\":false,"
        "\"location_privacy\":false,\"energy_sites_only\":false,\"approves_bulk\":false,"
        "\"quota\":{\"subjects_per_day\":null,\"rows_per_day\":null,\"bytes_per_day\":null}}}}";
    assert_int_equal(fv_policy_parse(mini, strlen(mini), "mini", &p, err, sizeof err), FV_OK);
    struct fv_access_request r = {
        .role = "nurse", .purpose = "care", .classes = 1, .subjects = 1000000};
    decide(p, &r, 1, "role nurse may read for purpose care");
    fv_policy_free(p);
}

/* ---- quotas --------------------------------------------------------------------------- */

#define DAY 86400000ull

static int count_usage(void *arg, const char *principal, const struct fv_quota_usage *u)
{
    (void)principal;
    (void)u;
    (*(int *)arg)++;
    return 0;
}

static int stop_at_first(void *arg, const char *principal, const struct fv_quota_usage *u)
{
    (void)arg;
    (void)principal;
    (void)u;
    return 7;
}

/* P8: an aggregate_only role's limits, built-in or from the policy; other roles have none. */
static void test_aggregate_limits(void **state)
{
    (void)state;
    json_error_t jerr;
    json_t *root = json_loads(fv_policy_default_json(), 0, &jerr);
    assert_non_null(root);
    json_t *roles = json_object_get(root, "roles");
    json_t *mini = json_deep_copy(json_object_get(roles, "analyst"));
    json_object_set_new(mini, "aggregate_min_step_s", json_integer(60));
    json_object_set_new(mini, "aggregate_min_records", json_integer(3));
    json_object_set_new(roles, "minute", mini);
    char *text = json_dumps(root, 0), err[256];
    struct fv_policy *p;
    assert_int_equal(fv_policy_parse(text, strlen(text), "p.json", &p, err, sizeof err), FV_OK);
    uint64_t step = 0, records = 0;
    assert_int_equal(fv_policy_aggregate_limits(p, "analyst", &step, &records), 1);
    assert_int_equal(step, FV_POLICY_AGG_MIN_STEP_MS);
    assert_int_equal(records, FV_POLICY_AGG_MIN_RECORDS);
    assert_int_equal(fv_policy_aggregate_limits(p, "minute", &step, &records), 1);
    assert_int_equal(step, 60000);
    assert_int_equal(records, 3);
    assert_int_equal(fv_policy_aggregate_limits(p, "support", &step, &records), 0);
    assert_int_equal(fv_policy_aggregate_limits(p, "nobody", &step, &records), 0);
    fv_policy_free(p);
    free(text);
    json_decref(root);
}

static void test_quotas(void **state)
{
    (void)state;
    struct fv_quota *q;
    assert_int_equal(fv_quota_new(&q), FV_OK);
    struct fv_quota_limits lim = {
        .subjects_per_day = 3, .rows_per_day = 100, .bytes_per_day = 1000};
    uint64_t t = 20000 * DAY + 3600000; /* 01:00 UTC */
    char why[256];
    assert_int_equal(fv_quota_check(q, "alice", &lim, t, 1, 50, 400, why, sizeof why), FV_OK);
    assert_int_equal(fv_quota_add(q, "alice", t, 1, 50, 400), FV_OK);
    /* exactly reaching a limit is fine, passing it is not */
    assert_int_equal(fv_quota_check(q, "alice", &lim, t, 2, 50, 600, why, sizeof why), FV_OK);
    assert_int_equal(fv_quota_check(q, "alice", &lim, t, 1, 51, 0, why, sizeof why), FV_ELIMIT);
    assert_string_equal(why, "daily quota of alice: rows_per_day 100 would be exceeded (used 50 "
                             "today UTC, this request 51)");
    assert_int_equal(fv_quota_check(q, "alice", &lim, t, 3, 0, 0, why, sizeof why), FV_ELIMIT);
    assert_non_null(strstr(why, "subjects_per_day 3"));
    assert_int_equal(fv_quota_check(q, "alice", &lim, t, 0, 0, 601, why, sizeof why), FV_ELIMIT);
    assert_non_null(strstr(why, "bytes_per_day 1000"));
    assert_int_equal(fv_quota_add(q, "alice", t, 2, 50, 600), FV_OK);
    /* at the limit: even a request of unknown size (0) is refused */
    assert_int_equal(fv_quota_check(q, "alice", &lim, t, 0, 0, 0, why, sizeof why), FV_ELIMIT);
    /* others are counted apart */
    assert_int_equal(fv_quota_check(q, "bob", &lim, t, 3, 100, 1000, why, sizeof why), FV_OK);
    /* the next UTC day starts from zero; 23:59:59.999 is still today */
    assert_int_equal(fv_quota_check(q, "alice", &lim, 20001 * DAY - 1, 0, 0, 0, NULL, 0),
                     FV_ELIMIT);
    assert_int_equal(fv_quota_check(q, "alice", &lim, 20001 * DAY, 3, 100, 1000, NULL, 0), FV_OK);
    struct fv_quota_usage u;
    fv_quota_get(q, "alice", t, &u);
    assert_int_equal(u.day, 20000);
    assert_int_equal(u.subjects, 3);
    assert_int_equal(u.rows, 100);
    assert_int_equal(u.bytes, 1000);
    fv_quota_get(q, "alice", 20001 * DAY, &u);
    assert_int_equal(u.day, 20001);
    assert_int_equal(u.rows, 0);
    assert_int_equal(fv_quota_add(q, "alice", 20001 * DAY, 1, 1, 1), FV_OK);
    fv_quota_get(q, "alice", 20001 * DAY, &u);
    assert_int_equal(u.subjects, 1);
    /* unlimited and zero limits */
    struct fv_quota_limits none = {FV_UNLIMITED, FV_UNLIMITED, FV_UNLIMITED};
    assert_int_equal(fv_quota_add(q, "carol", t, UINT64_MAX, UINT64_MAX, 5), FV_OK);
    assert_int_equal(fv_quota_add(q, "carol", t, 5, 5, 5), FV_OK); /* saturates */
    fv_quota_get(q, "carol", t, &u);
    assert_true(u.subjects == UINT64_MAX);
    assert_int_equal(u.bytes, 10);
    assert_int_equal(fv_quota_check(q, "carol", &none, t, UINT64_MAX, 1, 1, NULL, 0), FV_OK);
    struct fv_quota_limits zero = {0, 0, 0};
    assert_int_equal(fv_quota_check(q, "dave", &zero, t, 0, 0, 0, why, sizeof why), FV_ELIMIT);
    /* persistence is the caller's: save with foreach, restore with set */
    int n = 0;
    assert_int_equal(fv_quota_foreach(q, count_usage, &n), FV_OK);
    assert_int_equal(n, 2); /* alice, carol: checks count nothing */
    assert_int_equal(fv_quota_foreach(q, stop_at_first, NULL), 7);
    struct fv_quota *q2;
    assert_int_equal(fv_quota_new(&q2), FV_OK);
    struct fv_quota_usage saved = {.day = 20000, .subjects = 3, .rows = 100, .bytes = 1000};
    assert_int_equal(fv_quota_set(q2, "alice", &saved), FV_OK);
    assert_int_equal(fv_quota_check(q2, "alice", &lim, t, 0, 1, 0, NULL, 0), FV_ELIMIT);
    saved.rows = 0;
    assert_int_equal(fv_quota_set(q2, "alice", &saved), FV_OK); /* replaces */
    assert_int_equal(fv_quota_check(q2, "alice", &lim, t, 0, 1, 0, NULL, 0), FV_ELIMIT);
    saved.subjects = 0;
    saved.bytes = 0;
    assert_int_equal(fv_quota_set(q2, "alice", &saved), FV_OK);
    assert_int_equal(fv_quota_check(q2, "alice", &lim, t, 0, 1, 0, NULL, 0), FV_OK);
    fv_quota_free(q2);
    fv_quota_free(q);
    fv_quota_free(NULL);
}

/* ---- pseudonyms ----------------------------------------------------------------------- */

static void test_pseudonyms(void **state)
{
    (void)state;
    unsigned char secret[32], other[32];
    for (int i = 0; i < 32; i++) {
        secret[i] = (unsigned char)i;
        other[i] = (unsigned char)(i + 1);
    }
    char a[33], b[33], c[33];
    const char *vin = "5YJ3E1EA7KF000001";
    /* known answer: HMAC-SHA256(00 01 .. 1f, "model_training" 00 vin)[0:16] (Python hmac) */
    assert_int_equal(fv_pseudonym_for_purpose(secret, "model_training", vin, a), FV_OK);
    assert_string_equal(a, "e038501505613ee5bf79b44f2e6cb78a");
    assert_int_equal(fv_pseudonym_for_purpose(secret, "service", vin, b), FV_OK);
    assert_string_equal(b, "ab9e093129a49b61babecdd705bdfdf3");
    /* stable within a purpose */
    assert_int_equal(fv_pseudonym_for_purpose(secret, "model_training", vin, c), FV_OK);
    assert_string_equal(a, c);
    /* different across purposes, ids and secrets */
    assert_string_not_equal(a, b);
    assert_int_equal(fv_pseudonym_for_purpose(secret, "model_training", "5YJ3E1EA7KF000002", c),
                     FV_OK);
    assert_string_not_equal(a, c);
    assert_int_equal(fv_pseudonym_for_purpose(other, "model_training", vin, c), FV_OK);
    assert_string_not_equal(a, c);
    /* the separator keeps purpose and id apart */
    assert_int_equal(fv_pseudonym_for_purpose(secret, "ab", "c", b), FV_OK);
    assert_int_equal(fv_pseudonym_for_purpose(secret, "a", "bc", c), FV_OK);
    assert_string_not_equal(b, c);
    assert_null(strstr(a, "5YJ3"));
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_int_equal(fv_pseudonym_for_purpose(secret, "", vin, c), FV_EINVAL);
    assert_int_equal(fv_pseudonym_for_purpose(secret, "service", NULL, c), FV_EINVAL);
    assert_string_equal(c, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_is_the_example_file),
        cmocka_unit_test(test_read_matrix),
        cmocka_unit_test(test_classes_tickets_subjects),
        cmocka_unit_test(test_other_actions),
        cmocka_unit_test(test_bulk_approval),
        cmocka_unit_test(test_policy_file_errors),
        cmocka_unit_test(test_aggregate_limits),
        cmocka_unit_test(test_quotas),
        cmocka_unit_test(test_pseudonyms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
