/*
 * report.h - records of processing activities (GDPR Art. 30), generated from the live
 * configuration rather than written by hand, so the record says what the system does:
 * purposes (with the roles that may use each, for which data classes, and the legal basis),
 * data classes (the store's signal classes, their signals and retention), categories of
 * data subjects, recipients (every principal, and per role its obligations and quotas),
 * security measures (those the code applies), transfers, and where the audit log is.
 *
 * Sources: the server configuration (config/config.h: store classes and retention, paths,
 * listeners), the access policy it names (policy.h; the built-in one when it names none),
 * and the catalog's principals (principals.h) and subject counts, read only: no master key
 * is needed, and nothing personal is read (principal names are staff and services).
 *
 * The report is a JSON object (fv_report_build); fv_report_markdown renders it for people.
 * Top-level keys, always present:
 *   "record"       what this is, and the controller's part to fill in (name, contact, DPO)
 *   "system"       {"name": "fleetvault", "version", "generated", "config_file",
 *                   "data_dir", "policy", "catalog"}
 *   "purposes"     [{"name", "description", "contract", "legal_basis", "roles": [{"role",
 *                   "classes": [...], "obligations": {...}}], "classes": [...]}]
 *   "data_classes" [{"name", "retention", "retention_ms" (0 = forever), "signals": [...],
 *                   "other_signals" (the default class: also every signal listed nowhere),
 *                   "topics" (the events class), "in_policy", "purposes": [...],
 *                   "stored": "always" | "while consented", "stored_while_consented_to":
 *                   [purposes] or null (ingest minimisation, as the server applies it)}]
 *   "data_subjects" [{"category", "description", "data"}], "subject_counts" (catalog)
 *   "recipients"   {"principals": [{"name", "role", "created", "created_ms", "created_by",
 *                   "revoked", "revoked_ms", "status": "active"|"revoked",
 *                   "role_in_policy"}], "built_in": [...], "roles": [{"name",
 *                   "description", "actions", "purposes", "requires_ticket",
 *                   "max_subjects_per_request", "bulk_subjects_threshold", "approves_bulk",
 *                   "obligations": {"pseudonymise", "aggregate_only", "location_privacy",
 *                   "consented_only", "energy_sites_only"}, "quota": {...}, "role_quota": {...},
 *                   "principals": [active names]}], "third_parties"}
 *   "security_measures" [{"measure", "detail"}]
 *   "transfers"    {"third_countries": [], "detail"}
 *   "retention"    (per class, as in data_classes, plus WAL and audit log)
 *   "audit_log"    {"path", "format", "signing_key", "public_key", "witness", "retention"
 *                   (null: none), "verify", "query"}
 *   "warnings"     [strings]: gaps the configuration leaves (a role that reads a consent
 *                   purpose without consented_only, a class no policy names, a principal
 *                   whose role the policy lacks, no audit witness, the API on a non-loopback
 *                   address, no audit log retention, ...)
 * Limits given as null mean "no limit"; times are RFC 3339 (UTC) beside epoch ms.
 *
 * Thread-safety: fv_report_build reads the catalog through the caller's connection (its
 * thread rules); otherwise no shared state.
 */
#ifndef FV_PRIVACY_REPORT_H
#define FV_PRIVACY_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config/config.h"
#include "util/buf.h"

struct sqlite3;

struct fv_report_input {
    const struct fv_config *config; /* required: the live configuration */
    const char *config_file;        /* the file it was loaded from, or NULL */
    struct sqlite3 *catalog;        /* DATA/catalog.db, or NULL (none yet) */
    const char *const *contract;    /* purposes necessary for the contract,
                                       NULL-terminated; NULL: FV_SUBJECT_CONTRACT, which
                                       is what the server uses */
    const char *version;            /* the program's version; NULL: "unknown" */
    int64_t now_ms;                 /* when the report is made */
};

/* Builds the report. Loads the policy that config->policy_file names (the built-in one when
 * empty) and refuses one that fv_policy_load would refuse; reads the principals from the
 * catalog (a catalog without the principals table has none). On success *out is a new
 * JSON object (json_decref it). FV_EINVAL (bad policy, a contract purpose the policy does
 * not know, no config), FV_ENOENT / FV_EIO (policy file, catalog), FV_ENOMEM; err says
 * why, and *out is NULL. */
int fv_report_build(const struct fv_report_input *in, json_t **out, char *err, size_t errlen);

/* Renders a report made by fv_report_build as Markdown, appended to out. FV_OK, FV_ENOMEM,
 * FV_EINVAL (not such a report). */
int fv_report_markdown(const json_t *report, struct fv_buf *out);

#endif
