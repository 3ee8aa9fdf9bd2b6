/* test_report.c - records of processing (privacy/report.h): the default configuration with
 * the built-in policy and two principals (one revoked) gives every purpose, data class,
 * retention, role and principal, with the obligations and quotas of each role; a custom
 * policy and store configuration change the report, and the gaps they leave come out as
 * warnings; bad policies and contract purposes are refused; the Markdown rendering holds
 * the same facts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../support/testutil.h"
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/keys.h"
#include "config/config.h"
#include "privacy/policy.h"
#include "privacy/principals.h"
#include "privacy/report.h"
#include "privacy/subjects.h"
#include "util/buf.h"
#include "util/err.h"
#include "wire/signals.h"

#define NOW_MS 1795000000000 /* 2026-11-18 */

static char dir[64];

static int setup(void **state)
{
    (void)state;
    setenv("FV_MASTER_KEY", "8d1f00112233445566778899aabbccddeeff00112233445566778899aabbcc0f", 1);
    return fv_test_mkdtemp(dir, sizeof dir, "fv-report");
}

static int teardown(void **state)
{
    (void)state;
    return fv_test_rmtree(dir);
}

/* A catalog as the server leaves it: keys, the subject registry, principals alice
 * (support) and bob (analyst, revoked), three subjects of which one is erased. */
static struct fv_keystore *make_catalog(void)
{
    char p[128], err[512] = "";
    snprintf(p, sizeof p, "%s/catalog.db", dir);
    struct fv_kek kek;
    struct fv_keystore *ks = NULL;
    assert_int_equal(fv_kek_load(NULL, &kek, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_open(p, &kek, &ks, err, sizeof err), FV_OK);
    fv_kek_wipe(&kek);
    assert_int_equal(fv_subjects_init(ks, err, sizeof err), FV_OK);
    sqlite3 *db = (sqlite3 *)fv_keystore_db(ks);
    assert_int_equal(fv_principals_init(db, err, sizeof err), FV_OK);
    struct fv_policy *pol = NULL;
    assert_int_equal(fv_policy_load(NULL, &pol, err, sizeof err), FV_OK);
    char tok[FV_TOKEN_HEX_LEN + 1];
    assert_int_equal(fv_principal_create(db, pol, "alice", "support", "root", tok, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_principal_create(db, pol, "bob", "analyst", NULL, tok, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_principal_revoke(db, "bob", err, sizeof err), FV_OK);
    fv_policy_free(pol);
    const unsigned char *dek;
    char ps[FV_PSEUDONYM_LEN + 1];
    assert_int_equal(fv_keystore_dek(ks, "VIN-A", 1, &dek, ps), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "VIN-B", 1, &dek, ps), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "VIN-C", 1, &dek, ps), FV_OK);
    assert_int_equal(fv_keystore_destroy(ks, "VIN-C", err, sizeof err), FV_OK);
    assert_int_equal(fv_subject_change_owner(ks, "VIN-A", "owner-2", 1000, err, sizeof err), FV_OK);
    return ks;
}

static json_t *build(const struct fv_config *cfg, struct fv_keystore *ks,
                     const char *const *contract)
{
    struct fv_report_input in = {.config = cfg,
                                 .catalog = ks ? fv_keystore_db(ks) : NULL,
                                 .contract = contract,
                                 .version = "9.9.9",
                                 .now_ms = NOW_MS};
    json_t *r = NULL;
    char err[1024] = "";
    int rc = fv_report_build(&in, &r, err, sizeof err);
    if (rc) fprintf(stderr, "fv_report_build: %s\n", err);
    assert_int_equal(rc, FV_OK);
    assert_non_null(r);
    return r;
}

/* The element of array a whose key k is the string v, or NULL. */
static json_t *find(const json_t *a, const char *k, const char *v)
{
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e)
    {
        const char *s = json_string_value(json_object_get(e, k));
        if (s && strcmp(s, v) == 0) return e;
    }
    return NULL;
}

static int has_string(const json_t *a, const char *v)
{
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e)
    {
        if (json_is_string(e) && strcmp(json_string_value(e), v) == 0) return 1;
    }
    return 0;
}

/* Some string of array a contains needle. */
static int any_contains(const json_t *a, const char *needle)
{
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e)
    {
        const char *s = json_is_string(e) ? json_string_value(e)
                                          : json_string_value(json_object_get(e, "detail"));
        const char *m = json_string_value(json_object_get(e, "measure"));
        if ((s && strstr(s, needle)) || (m && strstr(m, needle))) return 1;
    }
    return 0;
}

static const char *gets(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    assert_non_null(s);
    return s;
}

static char *markdown(const json_t *r)
{
    struct fv_buf b = {0};
    assert_int_equal(fv_report_markdown(r, &b), FV_OK);
    assert_int_equal(fv_buf_append(&b, "", 1), FV_OK);
    return (char *)b.data;
}

static void config_in_dir(struct fv_config *cfg)
{
    fv_config_defaults(cfg);
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", dir);
    snprintf(cfg->key_file, sizeof cfg->key_file, "/etc/fleetvault/master.key");
}

static void test_default_config(void **state)
{
    (void)state;
    struct fv_keystore *ks = make_catalog();
    struct fv_config cfg;
    config_in_dir(&cfg);
    json_t *r = build(&cfg, ks, NULL);
    struct fv_policy *pol = NULL;
    char err[256];
    assert_int_equal(fv_policy_load(NULL, &pol, err, sizeof err), FV_OK);

    const json_t *sys = json_object_get(r, "system");
    assert_string_equal(gets(sys, "name"), "fleetvault");
    assert_string_equal(gets(sys, "version"), "9.9.9");
    assert_string_equal(gets(sys, "policy"), "built-in");
    assert_string_equal(gets(sys, "generated"), "2026-11-18T11:06:40.000Z");

    /* Every purpose of the policy, with its legal basis and the roles that may read it. */
    const json_t *ps = json_object_get(r, "purposes");
    assert_int_equal(json_array_size(ps), fv_policy_npurposes(pol));
    for (size_t i = 0; i < fv_policy_npurposes(pol); i++)
        assert_non_null(find(ps, "name", fv_policy_purpose_name(pol, i)));
    const json_t *svc = find(ps, "name", "service");
    assert_true(json_is_true(json_object_get(svc, "contract")));
    assert_non_null(strstr(gets(svc, "legal_basis"), "6(1)(b)"));
    const json_t *support = find(json_object_get(svc, "roles"), "role", "support");
    assert_non_null(support);
    const json_t *scl = json_object_get(support, "classes");
    assert_true(has_string(scl, "default") && has_string(scl, "location") &&
                has_string(scl, "events"));
    assert_false(
        json_is_true(json_object_get(json_object_get(support, "obligations"), "pseudonymise")));
    const json_t *mt = find(ps, "name", "model_training");
    assert_false(json_is_true(json_object_get(mt, "contract")));
    assert_non_null(strstr(gets(mt, "legal_basis"), "consent"));
    assert_non_null(find(json_object_get(mt, "roles"), "role", "analyst"));
    assert_non_null(find(json_object_get(mt, "roles"), "role", "ml-pipeline"));
    assert_null(find(json_object_get(mt, "roles"), "role", "support"));
    /* A role without the read action reads for no purpose. */
    assert_null(find(json_object_get(svc, "roles"), "role", "admin"));

    /* Every data class with its signals and retention. */
    const json_t *cs = json_object_get(r, "data_classes");
    assert_int_equal(json_array_size(cs), 3);
    const json_t *def = find(cs, "name", "default"), *loc = find(cs, "name", "location"),
                 *ev = find(cs, "name", "events");
    assert_non_null(def);
    assert_non_null(loc);
    assert_non_null(ev);
    assert_string_equal(gets(def, "retention"), "730 days");
    assert_string_equal(gets(loc, "retention"), "30 days");
    assert_int_equal(json_integer_value(json_object_get(loc, "retention_ms")), 30 * 86400000ll);
    assert_string_equal(gets(ev, "retention"), "730 days");
    assert_true(has_string(json_object_get(loc, "signals"), "Location"));
    assert_true(has_string(json_object_get(loc, "signals"), "GpsHeading"));
    assert_false(has_string(json_object_get(loc, "signals"), "VehicleSpeed"));
    assert_true(has_string(json_object_get(def, "signals"), "VehicleSpeed"));
    assert_true(has_string(json_object_get(def, "signals"), "Soc"));
    assert_false(has_string(json_object_get(def, "signals"), "Location"));
    assert_true(json_is_true(json_object_get(def, "other_signals")));
    assert_true(has_string(json_object_get(ev, "topics"), "alerts"));
    assert_true(has_string(json_object_get(loc, "purposes"), "service"));
    /* service (the contract) uses every class: nothing is minimised at ingest. */
    assert_string_equal(gets(loc, "stored"), "always");
    assert_string_equal(gets(def, "stored"), "always");
    assert_true(json_is_null(json_object_get(loc, "stored_while_consented_to")));
    assert_true(has_string(json_object_get(loc, "purposes"), "location_history"));
    assert_false(has_string(json_object_get(loc, "purposes"), "energy_programs"));

    /* Subjects: the categories, and counts (never names). */
    const json_t *subj = json_object_get(r, "data_subjects");
    assert_non_null(find(subj, "category", "vehicle owners"));
    assert_non_null(find(subj, "category", "energy-site owners"));
    const json_t *counts = json_object_get(r, "subject_counts");
    /* VIN-A, VIN-A#2, VIN-B with keys; VIN-C erased. */
    assert_int_equal(json_integer_value(json_object_get(counts, "subjects_with_data_keys")), 3);
    assert_int_equal(json_integer_value(json_object_get(counts, "subjects_erased")), 1);
    assert_int_equal(json_integer_value(json_object_get(counts, "recorded_owner_periods")), 2);

    /* Recipients: every principal, revoked ones marked; every role with its obligations. */
    const json_t *rec = json_object_get(r, "recipients");
    const json_t *pr = json_object_get(rec, "principals");
    assert_int_equal(json_array_size(pr), 2);
    const json_t *alice = find(pr, "name", "alice"), *bob = find(pr, "name", "bob");
    assert_string_equal(gets(alice, "role"), "support");
    assert_string_equal(gets(alice, "status"), "active");
    assert_string_equal(gets(alice, "created_by"), "root");
    assert_true(json_is_null(json_object_get(alice, "revoked")));
    assert_string_equal(gets(bob, "role"), "analyst");
    assert_string_equal(gets(bob, "status"), "revoked");
    assert_true(json_is_string(json_object_get(bob, "revoked")));
    assert_true(json_integer_value(json_object_get(bob, "revoked_ms")) > 0);
    assert_non_null(find(json_object_get(rec, "built_in"), "name", "admin"));
    const json_t *roles = json_object_get(rec, "roles");
    assert_int_equal(json_array_size(roles), fv_policy_nroles(pol));
    for (size_t i = 0; i < fv_policy_nroles(pol); i++)
        assert_non_null(find(roles, "name", fv_policy_role_name(pol, i)));
    const json_t *an = find(roles, "name", "analyst");
    const json_t *ob = json_object_get(an, "obligations");
    assert_true(json_is_true(json_object_get(ob, "pseudonymise")));
    assert_true(json_is_true(json_object_get(ob, "aggregate_only")));
    assert_true(json_is_true(json_object_get(ob, "location_privacy")));
    assert_true(json_is_true(json_object_get(ob, "consented_only")));
    assert_false(json_is_true(json_object_get(ob, "energy_sites_only")));
    assert_true(json_is_null(json_object_get(json_object_get(an, "quota"), "subjects_per_day")));
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(an, "quota"), "rows_per_day")), 1000000);
    assert_int_equal(json_array_size(json_object_get(an, "principals")), 0); /* bob is revoked */
    const json_t *sup = find(roles, "name", "support");
    assert_true(json_is_true(json_object_get(sup, "requires_ticket")));
    assert_int_equal(json_integer_value(json_object_get(sup, "max_subjects_per_request")), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(sup, "quota"), "subjects_per_day")), 20);
    assert_true(has_string(json_object_get(sup, "principals"), "alice"));
    assert_true(has_string(json_object_get(sup, "actions"), "read"));
    assert_true(
        has_string(json_object_get(json_object_get(sup, "purposes"), "service"), "location"));
    const json_t *po = find(roles, "name", "privacy-officer");
    assert_true(has_string(json_object_get(po, "actions"), "erase"));
    assert_true(json_is_true(json_object_get(po, "approves_bulk")));
    assert_true(json_is_true(
        json_object_get(json_object_get(find(roles, "name", "energy-operator"), "obligations"),
                        "energy_sites_only")));

    /* Security measures: what the code does. */
    const json_t *sec = json_object_get(r, "security_measures");
    const char *claims[] = {"mutual TLS",       "AES-256-GCM",     "outside the data directory",
                            "crypto-shredding", "replayed",        "hash-chained",
                            "Ed25519",          "ticket",          "daily limits",
                            "CRC-32C",          "HMAC-SHA256",     "minimisation at ingest",
                            "canary",           "second principal"};
    for (size_t i = 0; i < sizeof claims / sizeof *claims; i++)
        if (!any_contains(sec, claims[i])) fail_msg("no security measure says \"%s\"", claims[i]);
    assert_true(any_contains(sec, "/etc/fleetvault/master.key.tombstones"));

    /* No transfers; the audit log is named. */
    const json_t *tr = json_object_get(r, "transfers");
    assert_int_equal(json_array_size(json_object_get(tr, "third_countries")), 0);
    assert_non_null(strstr(gets(tr, "detail"), "one node"));
    const json_t *au = json_object_get(r, "audit_log");
    char want[160];
    snprintf(want, sizeof want, "%s/audit/audit-*.jsonl", dir);
    assert_string_equal(gets(au, "path"), want);
    assert_string_equal(gets(au, "signing_key"), "/etc/fleetvault/master.key.audit.pem");
    assert_true(json_is_null(json_object_get(au, "witness")));

    /* The built-in policy leaves no consent gap; the defaults leave the known ones. */
    const json_t *w = json_object_get(r, "warnings");
    assert_false(any_contains(w, "without consented_only"));
    assert_false(any_contains(w, "kept forever"));
    assert_false(any_contains(w, "without TLS"));
    assert_true(any_contains(w, "no audit witness"));
    assert_true(any_contains(w, "audit log has no retention"));
    /* Every place-revealing signal is in class location by default (wire/places.h). */
    assert_false(any_contains(w, "holds signals that reveal places"));

    /* Markdown: the same facts. */
    char *md = markdown(r);
    for (size_t i = 0; i < fv_policy_npurposes(pol); i++)
        assert_non_null(strstr(md, fv_policy_purpose_name(pol, i)));
    for (size_t i = 0; i < fv_policy_nroles(pol); i++)
        assert_non_null(strstr(md, fv_policy_role_name(pol, i)));
    const char *facts[] = {"# Records of processing activities",
                           "| location | 30 days |",
                           "| default | 730 days |",
                           "| events | 730 days |",
                           "| alice | support |",
                           "| bob | analyst |",
                           "**revoked**",
                           "contract, Art. 6(1)(b)",
                           "GpsHeading",
                           "AES-256-GCM",
                           "## 6. Transfers to third countries",
                           "audit-*.jsonl",
                           "## Warnings"};
    for (size_t i = 0; i < sizeof facts / sizeof *facts; i++)
        if (!strstr(md, facts[i])) fail_msg("the Markdown lacks \"%s\"", facts[i]);
    free(md);
    json_decref(r);
    fv_policy_free(pol);
    fv_keystore_close(ks);
}

/* A role "researcher" reading a consent purpose without consented_only, a class the store
 * does not have, no "service" purpose at all. */
static const char CUSTOM_POLICY[] =
    "{\"version\": 1, \"purposes\": [\"maintenance\", \"research\"],"
    " \"classes\": [\"default\", \"location\", \"events\", \"cabin\"],"
    " \"roles\": {"
    "  \"mechanic\": {\"comment\": \"workshop | staff\", \"actions\": [\"read\"],"
    "   \"purposes\": {\"maintenance\": [\"default\", \"events\"]},"
    "   \"requires_ticket\": true, \"max_subjects_per_request\": 1,"
    "   \"bulk_subjects_threshold\": null, \"aggregate_only\": false, \"pseudonymise\": false,"
    "   \"consented_only\": false, \"location_privacy\": false, \"energy_sites_only\": false,"
    "   \"approves_bulk\": false,"
    "   \"quota\": {\"subjects_per_day\": 5, \"rows_per_day\": null, \"bytes_per_day\": null}},"
    "  \"researcher\": {\"actions\": [\"read\"],"
    "   \"purposes\": {\"research\": [\"location\", \"cabin\"]},"
    "   \"requires_ticket\": false, \"max_subjects_per_request\": null,"
    "   \"bulk_subjects_threshold\": 100, \"aggregate_only\": false, \"pseudonymise\": true,"
    "   \"consented_only\": false, \"location_privacy\": true, \"energy_sites_only\": false,"
    "   \"approves_bulk\": false,"
    "   \"quota\": {\"subjects_per_day\": null, \"rows_per_day\": 10, \"bytes_per_day\": null}}"
    " }}";

static void write_file(const char *name, const char *text, char *path, size_t n)
{
    snprintf(path, n, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void test_custom_policy_and_store(void **state)
{
    (void)state;
    struct fv_keystore *ks = make_catalog();
    struct fv_config cfg;
    config_in_dir(&cfg);
    write_file("policy.json", CUSTOM_POLICY, cfg.policy_file, sizeof cfg.policy_file);
    /* Location kept forever; a new class "diagnostics" with two signals. */
    struct fv_store_config *s = &cfg.store;
    s->retention_ms[1] = 0;
    snprintf(s->class_name[3], sizeof s->class_name[3], "diagnostics");
    s->retention_ms[3] = 90 * 86400000ull;
    s->nclasses = 4;
    long odo = fv_signal_lookup("Odometer"), bl = fv_signal_lookup("BatteryLevel");
    assert_true(odo > 0 && bl > 0);
    s->class_of[odo] = 3;
    s->class_of[bl] = 3;
    /* A place-revealing signal configured into another class than Location's is named. */
    long route = fv_signal_lookup("RouteLine");
    assert_true(route > 0);
    s->class_of[route] = 3;
    snprintf(cfg.api_host, sizeof cfg.api_host, "0.0.0.0");
    snprintf(cfg.audit_witness, sizeof cfg.audit_witness, "/mnt/witness/fleet.ckpt");
    cfg.audit_retention_ms = 180 * 86400000ull;
    json_t *r = build(&cfg, ks, NULL);

    assert_string_equal(gets(json_object_get(r, "system"), "policy"), cfg.policy_file);
    const json_t *ws = json_object_get(r, "warnings");
    assert_true(any_contains(ws, "data class diagnostics holds signals that reveal places"));
    assert_true(any_contains(ws, "RouteLine"));
    assert_false(any_contains(ws, "data class location holds"));
    const json_t *ps = json_object_get(r, "purposes");
    assert_int_equal(json_array_size(ps), 2);
    assert_null(find(ps, "name", "service"));
    assert_null(find(ps, "name", "model_training"));
    const json_t *res = find(ps, "name", "research");
    assert_non_null(res);
    /* No contract purpose: "service" is not in this policy, so none is one by default. */
    assert_false(json_is_true(json_object_get(res, "contract")));
    assert_false(json_is_true(json_object_get(find(ps, "name", "maintenance"), "contract")));
    assert_true(json_is_null(json_object_get(res, "description")));
    assert_non_null(find(json_object_get(res, "roles"), "role", "researcher"));

    const json_t *roles = json_object_get(json_object_get(r, "recipients"), "roles");
    assert_int_equal(json_array_size(roles), 2);
    assert_null(find(roles, "name", "support"));
    const json_t *rs = find(roles, "name", "researcher");
    assert_int_equal(json_integer_value(json_object_get(rs, "bulk_subjects_threshold")), 100);
    assert_true(json_is_null(json_object_get(rs, "max_subjects_per_request")));
    assert_string_equal(gets(find(roles, "name", "mechanic"), "description"), "workshop | staff");

    const json_t *cs = json_object_get(r, "data_classes");
    assert_int_equal(json_array_size(cs), 4);
    const json_t *diag = find(cs, "name", "diagnostics"), *loc = find(cs, "name", "location");
    assert_string_equal(gets(diag, "retention"), "90 days");
    assert_true(has_string(json_object_get(diag, "signals"), "Odometer"));
    assert_true(has_string(json_object_get(diag, "signals"), "BatteryLevel"));
    assert_false(has_string(json_object_get(find(cs, "name", "default"), "signals"), "Odometer"));
    assert_false(json_is_true(json_object_get(diag, "in_policy")));
    assert_string_equal(gets(loc, "retention"), "forever");
    assert_int_equal(json_integer_value(json_object_get(loc, "retention_ms")), 0);
    assert_true(has_string(json_object_get(loc, "purposes"), "research"));
    /* No "service" purpose: every class the policy names is kept only with consent. */
    assert_string_equal(gets(loc, "stored"), "while consented");
    const json_t *swc = json_object_get(loc, "stored_while_consented_to");
    assert_int_equal(json_array_size(swc), 1);
    assert_true(has_string(swc, "research"));
    assert_true(has_string(
        json_object_get(find(cs, "name", "default"), "stored_while_consented_to"), "maintenance"));
    assert_string_equal(gets(diag, "stored"), "always"); /* no policy names it */
    assert_string_equal(gets(find(cs, "name", "events"), "stored"), "always");
    assert_string_equal(gets(json_object_get(r, "audit_log"), "retention"), "180 days");
    assert_non_null(strstr(gets(json_object_get(r, "retention"), "audit_log"), "180 days"));

    /* Both principals were made under the built-in policy: alice's role "support" is gone
     * now; bob is revoked anyway. */
    const json_t *pr = json_object_get(json_object_get(r, "recipients"), "principals");
    assert_false(json_is_true(json_object_get(find(pr, "name", "alice"), "role_in_policy")));

    const json_t *w = json_object_get(r, "warnings");
    assert_true(any_contains(w, "role researcher reads purpose research"));
    assert_true(any_contains(w, "data class location is kept forever"));
    assert_true(any_contains(w, "data class cabin"));
    assert_true(any_contains(w, "principal alice has role support"));
    assert_false(any_contains(w, "principal bob"));
    assert_true(any_contains(w, "0.0.0.0:8080 without TLS"));
    assert_false(any_contains(w, "no audit witness"));
    assert_false(any_contains(w, "audit log has no retention"));
    assert_string_equal(gets(json_object_get(r, "audit_log"), "witness"),
                        "/mnt/witness/fleet.ckpt");
    assert_non_null(strstr(gets(json_object_get(r, "audit_log"), "verify"),
                           "--witness /mnt/witness/fleet.ckpt"));

    char *md = markdown(r);
    assert_non_null(strstr(md, "| location | forever | while the owner consents to research |"));
    assert_non_null(strstr(md, "| diagnostics | 90 days |"));
    assert_non_null(strstr(md, "- **mechanic**: workshop | staff"));
    assert_non_null(strstr(md, "support (not in the policy)"));
    assert_null(strstr(md, "model_training"));
    free(md);
    json_decref(r);

    /* Named contract purposes: one of the policy's, or refused. */
    const char *const contract[] = {"maintenance", NULL};
    r = build(&cfg, ks, contract);
    ps = json_object_get(r, "purposes");
    assert_true(json_is_true(json_object_get(find(ps, "name", "maintenance"), "contract")));
    assert_false(json_is_true(json_object_get(find(ps, "name", "research"), "contract")));
    json_decref(r);
    const char *const bad_contract[] = {"service", NULL};
    struct fv_report_input in = {.config = &cfg, .contract = bad_contract, .now_ms = NOW_MS};
    char err[512] = "";
    r = (json_t *)1;
    assert_int_equal(fv_report_build(&in, &r, err, sizeof err), FV_EINVAL);
    assert_null(r);
    assert_non_null(strstr(err, "service"));
    fv_keystore_close(ks);
}

static void test_no_catalog_and_bad_policy(void **state)
{
    (void)state;
    struct fv_config cfg;
    fv_config_defaults(&cfg);
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s/none", dir);
    json_t *r = build(&cfg, NULL, NULL);
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(r, "recipients"), "principals")), 0);
    assert_int_equal(json_object_size(json_object_get(r, "subject_counts")), 0);
    assert_true(json_is_null(json_object_get(json_object_get(r, "system"), "catalog")));
    const json_t *w = json_object_get(r, "warnings");
    assert_true(any_contains(w, "no catalog"));
    /* FV_MASTER_KEY instead of a key file: the gaps that leaves. */
    assert_true(any_contains(w, "erasure is refused until FV_TOMBSTONE_DIR"));
    assert_true(any_contains(w, "audit signing key is kept inside the data directory"));
    char want[200];
    snprintf(want, sizeof want, "%s/none/audit-signing.pem", dir);
    assert_string_equal(gets(json_object_get(r, "audit_log"), "signing_key"), want);
    /* Live values over MQTT: the broker is a recipient, and the transfers say so. */
    assert_non_null(strstr(gets(json_object_get(r, "recipients"), "third_parties"), "none"));
    json_decref(r);
    cfg.mqtt.enabled = 1;
    snprintf(cfg.mqtt.host, sizeof cfg.mqtt.host, "mq.example");
    cfg.mqtt.port = 8883;
    r = build(&cfg, NULL, NULL);
    const char *tp = gets(json_object_get(r, "recipients"), "third_parties");
    assert_non_null(strstr(tp, "MQTT broker at mq.example:8883"));
    assert_non_null(strstr(tp, "home_automation"));
    assert_non_null(strstr(gets(json_object_get(r, "transfers"), "detail"), "MQTT broker"));
    char *md = markdown(r);
    assert_non_null(strstr(md, "MQTT broker at mq.example:8883"));
    free(md);
    json_decref(r);
    cfg.mqtt.enabled = 0;

    /* A catalog without the principals table (never served): no principals, no error. */
    char p[128];
    snprintf(p, sizeof p, "%s/bare.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    struct fv_report_input in = {.config = &cfg, .catalog = db, .now_ms = NOW_MS};
    char err[1024] = "";
    assert_int_equal(fv_report_build(&in, &r, err, sizeof err), FV_OK);
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(r, "recipients"), "principals")), 0);
    json_decref(r);
    sqlite3_close(db);

    /* Policies the server would refuse are refused here, with where and why. */
    in.catalog = NULL;
    write_file("typo.json",
               "{\"version\": 1, \"purposes\": [\"service\"], \"classes\": [\"default\"],"
               " \"roles\": {\"x\": {\"pseudonymize\": true}}}",
               cfg.policy_file, sizeof cfg.policy_file);
    r = (json_t *)1;
    assert_int_equal(fv_report_build(&in, &r, err, sizeof err), FV_EINVAL);
    assert_null(r);
    assert_non_null(strstr(err, "typo.json"));
    snprintf(cfg.policy_file, sizeof cfg.policy_file, "%s/missing.json", dir);
    assert_int_equal(fv_report_build(&in, &r, err, sizeof err), FV_ENOENT);
    assert_non_null(strstr(err, "missing.json"));
    in.config = NULL;
    assert_int_equal(fv_report_build(&in, &r, err, sizeof err), FV_EINVAL);

    /* Not a report. */
    struct fv_buf b = {0};
    json_t *junk = json_pack("{s:i}", "x", 1);
    assert_int_equal(fv_report_markdown(junk, &b), FV_EINVAL);
    json_decref(junk);
    fv_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_default_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custom_policy_and_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_catalog_and_bad_policy, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
