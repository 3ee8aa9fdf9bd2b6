/*
 * report_measures.c - the parts of the records of processing (report.h) that state what the
 * code does whatever the configuration: the security measures (GDPR Art. 32), the time
 * limits for erasure, the audit log, and the warnings about gaps the configuration leaves.
 *
 * Invariant: every text here is a claim about the code. When the code changes what it does,
 * the text must change with it in the same commit: a record that claims more than the
 * system does is worse than none. Values (paths, durations, listeners) come from the
 * configuration; nothing is read from disk.
 *
 * Threading: any thread; state only in the caller's struct ctx (report_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "privacy/report_int.h"

/* What location privacy does today (privacy/guard.h G7, G8, G10: fv_guard_oblige, applied by
 * every output of the API). */
static const char LOCATION_PRIVACY_TEXT[] =
    "locations served to a location-private role are withheld inside the owner's privacy "
    "zones (home, work: `fleetvault subject zone`), near the start and end of every trip and "
    "while the vehicle is stopped (gear P, or speed 0 for some minutes), and elsewhere snapped "
    "to a 1 km grid (the same place always gives the same cell, so coarse points do not "
    "average back to a precise one); GpsHeading is withheld wherever the location is; "
    "signals that name a place by themselves (origin, destination, route, located at home / "
    "work / favourite) are never served to such roles; if the zones cannot be read, no "
    "location of that owner is served";

/* Descriptions of the built-in purposes (policy.h, subjects.h); others have none. */
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

json_t *fv_report__security(struct ctx *c)
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
    const char *tdir = getenv("FV_TOMBSTONE_DIR");
    if (tdir && tdir[0])
        snprintf(tomb, sizeof tomb,
                 "%s/tombstones.jsonl (FV_TOMBSTONE_DIR) and to %s/tombstones.jsonl", tdir,
                 cfg->data_dir);
    else if (cfg->key_file[0])
        snprintf(tomb, sizeof tomb,
                 "%s.tombstones (beside the master key) and to %s/tombstones.jsonl", cfg->key_file,
                 cfg->data_dir);
    else
        snprintf(tomb, sizeof tomb,
                 "a list outside the data directory (FV_TOMBSTONE_DIR, or beside a key file: "
                 "erasure is refused without one) and to %s/tombstones.jsonl",
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

json_t *fv_report__retention(struct ctx *c)
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

json_t *fv_report__audit_log(struct ctx *c)
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
void fv_report__config_warnings(struct ctx *c)
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
    const char *tdir = getenv("FV_TOMBSTONE_DIR");
    if (!cfg->key_file[0] && !(tdir && tdir[0]))
        warn(b, c->warnings,
             "the master key comes from FV_MASTER_KEY, not a key file, and FV_TOMBSTONE_DIR is "
             "not set: there is no erasure list outside the data directory (a restored backup "
             "would bring an erased subject's key back), so erasure is refused until "
             "FV_TOMBSTONE_DIR names a directory outside DATA");
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
