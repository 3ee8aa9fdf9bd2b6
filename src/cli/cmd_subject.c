/* cmd_subject.c - `fleetvault subject`: who owns a device when, and what each owner has
 * consented to (privacy/subjects.h).
 *   subject show DEVICE                       periods, owners, consent now and its history
 *   subject owner DEVICE OWNER_ID [--at T]    a change of owner: a new data subject from T
 *   subject owner DEVICE OWNER_ID --current   the owner of the current period, none recorded
 *   subject consent DEVICE PURPOSE give|withdraw [--at T] [--by NAME] [--epoch N]
 *   subject zone DEVICE add LABEL LAT LON RADIUS_M [--epoch N]   privacy zones
 *   subject zone DEVICE remove LABEL [--epoch N]                 (privacy/zones.h)
 *   subject zone DEVICE list [--epoch N]
 * Works on DIR/catalog.db while the server runs or not (SQLite serialises the writes; a
 * busy catalog is waited for up to 5 s), but for consent: a consent change is audited
 * (subjects.h S8) in DIR/audit, which only one process writes, so while the server runs it
 * goes through the server's API (POST /api/v1/subjects/DEVICE/consent). Needs the master key, as
 * owner ids are sealed with each subject's data key: --key-file FILE or FV_MASTER_KEY. Prints owner
 * ids and zones (home locations): the output is personal data. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

#include "api/api.h"
#include "api/query.h"
#include "cli/commands.h"
#include "crypto/keys.h"
#include "privacy/audit.h"
#include "privacy/policy.h"
#include "privacy/subjects.h"
#include "privacy/zones.h"
#include "util/clock.h"
#include "util/err.h"

int fv_cmd_subject(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: fleetvault subject show DEVICE [options]\n"
        "       fleetvault subject owner DEVICE OWNER_ID [--at T | --current] [options]\n"
        "       fleetvault subject consent DEVICE PURPOSE give|withdraw [--at T] [--by NAME]\n"
        "                                  [--epoch N] [--audit-key PEM] [--witness FILE]\n"
        "                                  [options]\n"
        "       fleetvault subject zone DEVICE add LABEL LAT LON RADIUS_M [--epoch N] [options]\n"
        "       fleetvault subject zone DEVICE remove LABEL [--epoch N] [options]\n"
        "       fleetvault subject zone DEVICE list [--epoch N] [options]\n"
        "       fleetvault subject erase DEVICE --ticket T --token-file F [--api URL]\n"
        "       fleetvault subject export DEVICE --ticket T --token-file F [--period N]\n"
        "                                 [--out FILE]   (one owner period: the current one, or "
        "N)\n"
        "options: --data DIR (default ./data), --key-file FILE (default FV_MASTER_KEY),\n"
        "         --policy FILE (its purposes; default the built-in policy),\n"
        "         --contract P,Q (purposes necessary for the contract; default service)\n\n"
        "show prints the device's owner periods as JSON: each period is its own data\n"
        "subject (DEVICE, DEVICE#2, ...), with its owner, its consent per purpose now and\n"
        "the history of consent changes. owner records a change of owner at T (default\n"
        "now): a new subject starts, and the new owner never sees the previous owner's\n"
        "data; --current instead records the owner of the current period, which has none\n"
        "recorded (no new subject). An OWNER_ID of - is read from standard input. consent\n"
        "gives or withdraws consent to PURPOSE for the device's current owner (--epoch N:\n"
        "for the owner of period N, e.g. a previous owner withdrawing); --by names who\n"
        "records it (a principal name, or owner; never the owner's id). A grant is dated\n"
        "when it is recorded (--at may not be earlier). The change is audited in\n"
        "DIR/audit first (signing key --audit-key, default KEYFILE.audit.pem; --witness as\n"
        "the server's audit_witness); while the server runs, use its API instead.\n"
        "zone keeps the owner's privacy zones (home, work: a circle of RADIUS_M metres,\n"
        "%.0f to %.0f, around LAT LON in degrees; LABEL 1-%d of a-z 0-9 _ -): points inside\n"
        "one are dropped from every location served for a purpose other than service. Zones\n"
        "are sealed with the owner's data key; they belong to the current owner period\n"
        "(--epoch N: period N) and a new owner starts with none. list prints them as JSON.\n"
        "Purposes necessary for the contract are always granted and cannot be withdrawn.\n"
        "T is epoch milliseconds or RFC 3339 (2026-11-25T06:00:00Z). erase asks the running\n"
        "server (a privacy officer's token, a ticket): every subject of the device is\n"
        "erased at once (data keys destroyed, tombstones kept beside the master key).\n",
        FV_ZONE_RADIUS_MIN_M, FV_ZONE_RADIUS_MAX_M, FV_ZONE_LABEL_MAX);
}

struct opts {
    const char *data, *key_file, *policy_file, *contract, *at, *by, *epoch, *audit_key, *witness;
    int current;
    const char *pos[7];
    int npos;
};

/* Splits list ("a,b") into names (NULL-terminated) with storage in buf; -1 if too many. */
static int split_list(const char *list, char *buf, size_t buflen, const char **names, int max)
{
    int n = 0;
    snprintf(buf, buflen, "%s", list);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == max) return -1;
        names[n++] = t;
    }
    names[n] = NULL;
    return 0;
}

/* JSON time: RFC 3339 when it reads as one, else null. */
static json_t *time_json(int64_t ms)
{
    if (ms < 0 || ms >= 253402300800000) return json_null(); /* before 1970, after 9999 */
    char buf[40];
    fv_format_time_ms((uint64_t)ms, buf, sizeof buf);
    return json_string(buf);
}

struct show {
    struct fv_keystore *ks;
    const struct fv_purposes *pp;
    const struct fv_policy *pol;
    json_t *periods;
    int64_t now;
    char err[512];
};

static int add_change(void *arg, const struct fv_consent_change *c)
{
    json_t *hist = arg;
    json_t *o = json_pack("{s:s,s:b,s:o,s:I,s:o}", "purpose", c->purpose, "granted", c->granted,
                          "at", time_json(c->at_ms), "at_ms", (json_int_t)c->at_ms, "by",
                          c->by[0] ? json_string(c->by) : json_null());
    return o && json_array_append_new(hist, o) == 0 ? 0 : FV_ENOMEM;
}

static int add_period(void *arg, const struct fv_subject_period *p)
{
    struct show *s = arg;
    int first = p->since_ms == FV_SUBJECT_ORIGIN, cur = p->until_ms == FV_SUBJECT_FOREVER;
    json_t *o = json_pack(
        "{s:s,s:i,s:s,s:o,s:o,s:o,s:o,s:b,s:o,s:b,s:o}", "subject", p->name, "epoch", p->epoch,
        "pseudonym", p->pseudonym, "since", first ? json_null() : time_json(p->since_ms),
        "since_ms", first ? json_null() : json_integer((json_int_t)p->since_ms), "until",
        cur ? json_null() : time_json(p->until_ms), "until_ms",
        cur ? json_null() : json_integer((json_int_t)p->until_ms), "current", p->current, "owner",
        p->owner[0] ? json_string(p->owner) : json_null(), "erased", p->erased, "forgotten",
        p->forgotten_ms ? time_json(p->forgotten_ms) : json_null());
    json_t *now = json_object(), *hist = json_array();
    if (o == NULL || now == NULL || hist == NULL) {
        json_decref(o);
        json_decref(now);
        json_decref(hist);
        return FV_ENOMEM;
    }
    json_object_set_new(o, "consent_now", now);
    json_object_set_new(o, "consent_history", hist);
    int rc = json_array_append_new(s->periods, o) == 0 ? FV_OK : FV_ENOMEM;
    for (size_t i = 0; rc == FV_OK && i < fv_policy_npurposes(s->pol); i++) {
        const char *purpose = fv_policy_purpose_name(s->pol, i);
        int g = 0;
        rc = fv_consent_at(s->ks, s->pp, p->name, purpose, s->now, &g);
        if (rc == FV_OK) json_object_set_new(now, purpose, json_boolean(g));
        if (rc) fv_seterr(s->err, sizeof s->err, "consent of %s: %s", p->name, fv_strerror(rc));
    }
    if (rc == FV_OK)
        rc = fv_consent_history(s->ks, p->name, add_change, hist, s->err, sizeof s->err);
    return rc;
}

static int cmd_show(struct fv_keystore *ks, const struct fv_purposes *pp, const char *device)
{
    struct show s = {.ks = ks, .pp = pp, .pol = pp->policy, .now = (int64_t)fv_now_ms()};
    char pseudo[FV_PSEUDONYM_LEN + 1], cur[FV_SUBJECT_NAME_MAX + 1];
    json_t *contract = json_array(), *out = NULL;
    s.periods = json_array();
    int rc = s.periods && contract ? FV_OK : FV_ENOMEM;
    for (size_t i = 0; rc == FV_OK && pp->contract[i]; i++)
        if (json_array_append_new(contract, json_string(pp->contract[i]))) rc = FV_ENOMEM;
    if (rc == FV_OK) rc = fv_subject_periods(ks, device, add_period, &s, s.err, sizeof s.err);
    if (rc == FV_OK) rc = fv_subject_current(ks, device, cur, NULL);
    if (rc == FV_OK) rc = fv_keystore_pseudonym(ks, device, pseudo);
    if (rc == FV_OK) {
        out = json_pack("{s:s,s:s,s:s,s:O,s:O}", "device", device, "pseudonym", pseudo, "current",
                        cur, "contract_purposes", contract, "periods", s.periods);
        char *text = out ? json_dumps(out, JSON_INDENT(2)) : NULL;
        if (text) {
            printf("%s\n", text);
            OPENSSL_cleanse(text, strlen(text)); /* owner ids */
            free(text);
        } else {
            rc = FV_ENOMEM;
        }
    }
    if (rc) fprintf(stderr, "fleetvault subject show: %s\n", s.err[0] ? s.err : fv_strerror(rc));
    json_decref(out);
    json_decref(s.periods);
    json_decref(contract);
    return rc ? 1 : 0;
}

/* OWNER_ID, or one line of standard input for "-" (keeps it out of `ps` and history). */
static int owner_arg(const char *arg, char *out, size_t n)
{
    if (strcmp(arg, "-") != 0) return snprintf(out, n, "%s", arg) < (int)n ? 0 : -1;
    if (fgets(out, (int)n, stdin) == NULL) return -1;
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

static int cmd_owner(struct fv_keystore *ks, const struct opts *o)
{
    const char *device = o->pos[1];
    char owner[FV_SUBJECT_OWNER_MAX + 2], err[512] = "", name[FV_SUBJECT_NAME_MAX + 1];
    int64_t at = (int64_t)fv_now_ms();
    if (o->at && fv_parse_time_ms(o->at, &at) != FV_OK) {
        fprintf(stderr, "fleetvault subject owner: bad --at %s (epoch ms or RFC 3339)\n", o->at);
        return 2;
    }
    if (owner_arg(o->pos[2], owner, sizeof owner) != 0) {
        fprintf(stderr, "fleetvault subject owner: no owner id (at most %d bytes)\n",
                FV_SUBJECT_OWNER_MAX);
        return 2;
    }
    int rc = o->current ? fv_subject_set_owner(ks, device, owner, err, sizeof err)
                        : fv_subject_change_owner(ks, device, owner, at, err, sizeof err);
    OPENSSL_cleanse(owner, sizeof owner);
    int epoch = 0;
    if (rc == FV_OK) rc = fv_subject_current(ks, device, name, &epoch);
    if (rc) {
        fprintf(stderr, "fleetvault subject owner: %s\n", err[0] ? err : fv_strerror(rc));
        return 1;
    }
    if (o->current) {
        printf("%s: recorded the owner of period %d (subject %s)\n", device, epoch, name);
    } else {
        char t[40];
        json_t *tj = time_json(at);
        snprintf(t, sizeof t, "%s", json_is_string(tj) ? json_string_value(tj) : "");
        json_decref(tj);
        printf("%s: owner period %d (subject %s) begins at %s%s%lld ms; the previous owner's data "
               "stays with the previous subject\n",
               device, epoch, name, t, t[0] ? " = " : "", (long long)at);
    }
    return 0;
}

/* The subject of device's period --epoch (epoch may be NULL: the current one) into name, its
 * epoch into *epoch_out (may be NULL). 2 for a bad --epoch (printed), else an FV_* code
 * with err set for a bad device id. */
static int subject_of(struct fv_keystore *ks, const char *verb, const char *device,
                      const char *epoch, char name[FV_SUBJECT_NAME_MAX + 1], int *epoch_out,
                      char *err, size_t errlen)
{
    int rc, e = 0;
    if (epoch) {
        char *end;
        long v = strtol(epoch, &end, 10);
        if (*end || end == epoch || v < 1 || v > INT_MAX) {
            fprintf(stderr, "fleetvault subject %s: bad --epoch %s\n", verb, epoch);
            return 2;
        }
        e = (int)v;
        rc = fv_subject_name(device, e, name);
    } else {
        rc = fv_subject_current(ks, device, name, &e);
    }
    if (rc == FV_EINVAL) fv_seterr(err, errlen, "not a device id: %s", device);
    if (epoch_out) *epoch_out = rc == FV_OK ? e : 0;
    return rc;
}

/* S8: the audit log of DATA, opened by this process (the server must not be running). */
static int open_audit(const struct opts *o, struct fv_audit **out)
{
    char dir[PATH_MAX], key[PATH_MAX], err[1024] = "";
    snprintf(dir, sizeof dir, "%s/audit", o->data);
    if (o->audit_key)
        snprintf(key, sizeof key, "%s", o->audit_key);
    else if (o->key_file)
        snprintf(key, sizeof key, "%s.audit.pem", o->key_file);
    else {
        fprintf(stderr, "fleetvault subject consent: --audit-key PEM is needed (the audit log's "
                        "signing key) when the master key comes from FV_MASTER_KEY\n");
        return 2;
    }
    struct fv_audit_opts ao = {.key_path = key, .witness_path = o->witness};
    int rc = fv_audit_open(dir, &ao, out, err, sizeof err);
    if (rc == FV_EAGAIN)
        fprintf(stderr,
                "fleetvault subject consent: the server is running (it holds %s): record the "
                "change through its API, which audits it: POST "
                "/api/v1/subjects/DEVICE/consent?purpose=P&change=give|withdraw&ticket=T with "
                "a privacy officer's token\n",
                dir);
    else if (rc)
        fprintf(stderr, "fleetvault subject consent: audit log: %s\n", err);
    return rc ? 1 : 0;
}

/* S8: one audit entry of the change (result allow, deny or error), by the OS user. */
static int audit_consent(struct fv_audit *au, struct fv_keystore *ks, const char *device,
                         const char *purpose, const char *extra, const char *result,
                         const char *reason)
{
    char who[96], ps[FV_PSEUDONYM_LEN + 1];
    struct passwd *pw = getpwuid(getuid());
    snprintf(who, sizeof who, "os:%.80s", pw && pw->pw_name ? pw->pw_name : "unknown");
    const char *subj[1] = {ps};
    int have = fv_keystore_pseudonym(ks, device, ps) == FV_OK;
    struct fv_audit_event ev = {.kind = "admin",
                                .action = "subject.consent",
                                .principal = who,
                                .role = "operator",
                                .purpose = purpose,
                                .subjects = have ? subj : NULL,
                                .nsubjects = have ? 1 : 0,
                                .result = result,
                                .reason = reason,
                                .extra_json = extra};
    int rc = fv_audit_append(au, &ev, NULL);
    if (rc)
        fprintf(stderr, "fleetvault subject consent: audit log: %s; nothing changed\n",
                fv_audit_last_error(au));
    return rc;
}

static int cmd_consent(struct fv_keystore *ks, const struct fv_purposes *pp, const struct opts *o)
{
    const char *device = o->pos[1], *purpose = o->pos[2], *verb = o->pos[3];
    int give = strcmp(verb, "give") == 0;
    if (!give && strcmp(verb, "withdraw") != 0) {
        usage(stderr);
        return 2;
    }
    int64_t now = (int64_t)fv_now_ms(), at = now;
    if (o->at && fv_parse_time_ms(o->at, &at) != FV_OK) {
        fprintf(stderr, "fleetvault subject consent: bad --at %s (epoch ms or RFC 3339)\n", o->at);
        return 2;
    }
    char name[FV_SUBJECT_NAME_MAX + 1], err[512] = "", extra[256];
    int rc = subject_of(ks, "consent", device, o->epoch, name, NULL, err, sizeof err);
    if (rc == 2) return 2;
    if (rc == FV_OK && fv_consent_audit_extra(give, at, now, o->by, extra, sizeof extra)) {
        fv_seterr(err, sizeof err, "--by too long");
        rc = FV_EINVAL;
    }
    if (rc) {
        fprintf(stderr, "fleetvault subject consent: %s\n", err[0] ? err : fv_strerror(rc));
        return 1;
    }
    struct fv_audit *au = NULL;
    int st = open_audit(o, &au);
    if (st) return st;
    /* S7: a backdated grant is refused, and the attempt audited. */
    int bad = fv_consent_check_time(give, at, now, err, sizeof err);
    rc = audit_consent(au, ks, device, purpose, extra, bad ? "deny" : "allow",
                       bad ? err : "recorded from the command line");
    if (rc == FV_OK && bad) rc = FV_EINVAL;
    if (rc == FV_OK) {
        rc = fv_consent_set(ks, pp, name, purpose, give, at, o->by, err, sizeof err);
        if (rc) audit_consent(au, ks, device, purpose, extra, "error", err[0] ? err : "failed");
    }
    int crc = fv_audit_close(au);
    if (rc) {
        if (err[0]) fprintf(stderr, "fleetvault subject consent: %s\n", err);
        return 1;
    }
    if (crc) fprintf(stderr, "fleetvault subject consent: audit log: closing failed\n");
    printf("%s: consent to %s %s at %lld ms (subject %s)\n", device, purpose,
           give ? "given" : "withdrawn", (long long)at, name);
    return crc ? 1 : 0;
}

/* A finite decimal number (degrees, metres); -1 if s is not one. */
static int parse_number(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int add_zone_json(void *arg, const struct fv_zone_entry *e)
{
    json_t *zones = arg;
    json_t *o = json_pack("{s:s,s:f,s:f,s:f,s:o,s:I}", "label", e->label, "lat", e->zone.lat, "lon",
                          e->zone.lon, "radius_m", e->zone.radius_m, "set",
                          time_json(e->created_ms), "set_ms", (json_int_t)e->created_ms);
    return o && json_array_append_new(zones, o) == 0 ? 0 : FV_ENOMEM;
}

/* `subject zone DEVICE add LABEL LAT LON RADIUS_M | remove LABEL | list [--epoch N]`. */
static int cmd_zone(struct fv_keystore *ks, const struct opts *o)
{
    const char *device = o->pos[1], *verb = o->pos[2];
    char name[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1], err[512] = "";
    int epoch = 0;
    int rc = subject_of(ks, "zone", device, o->epoch, name, &epoch, err, sizeof err);
    if (rc == 2) return 2;
    if (rc == FV_OK && strcmp(verb, "add") == 0) {
        double lat, lon, radius;
        if (parse_number(o->pos[4], &lat) || parse_number(o->pos[5], &lon) ||
            parse_number(o->pos[6], &radius)) {
            fprintf(stderr, "fleetvault subject zone: LAT LON RADIUS_M must be numbers (degrees, "
                            "degrees, metres)\n");
            return 2;
        }
        rc = fv_zone_set(ks, name, o->pos[3], lat, lon, radius, err, sizeof err);
        if (rc == FV_OK)
            printf("%s: zone %s set, radius %.0f m, for owner period %d (subject %s)\n", device,
                   o->pos[3], radius, epoch, name);
    } else if (rc == FV_OK && strcmp(verb, "remove") == 0) {
        rc = fv_zone_remove(ks, name, o->pos[3], err, sizeof err);
        if (rc == FV_OK)
            printf("%s: zone %s removed from owner period %d (subject %s)\n", device, o->pos[3],
                   epoch, name);
    } else if (rc == FV_OK) {
        json_t *zones = json_array(), *out = NULL;
        rc = zones ? fv_keystore_pseudonym(ks, name, pseudo) : FV_ENOMEM;
        if (rc == FV_OK) rc = fv_zones_list(ks, name, add_zone_json, zones, err, sizeof err);
        if (rc == FV_OK) {
            out = json_pack("{s:s,s:s,s:i,s:s,s:O}", "device", device, "subject", name, "epoch",
                            epoch, "pseudonym", pseudo, "zones", zones);
            char *text = out ? json_dumps(out, JSON_INDENT(2) | JSON_REAL_PRECISION(12)) : NULL;
            if (text) {
                printf("%s\n", text);
                OPENSSL_cleanse(text, strlen(text)); /* home locations */
                free(text);
            } else {
                rc = FV_ENOMEM;
            }
        }
        json_decref(out);
        json_decref(zones);
    }
    if (rc) {
        fprintf(stderr, "fleetvault subject zone: %s\n", err[0] ? err : fv_strerror(rc));
        return 1;
    }
    return 0;
}

/* The verbs that go through the running server's API: erase and export. */
struct api_args {
    const char *api, *token_file, *ticket, *dev, *out, *period;
    char endpoint[256];
};

/* Parses DEVICE --ticket T --token-file F [--api URL] (and --out FILE when out_ok) and makes
 * the endpoint /api/v1/subjects/DEVICE/VERB. 0 or 2 (usage printed). */
static int api_args(int argc, char **argv, const char *verb, int out_ok, struct api_args *a)
{
    memset(a, 0, sizeof *a);
    a->api = "http://127.0.0.1:8080";
    for (int i = 2; i < argc; i++) {
        const char **slot = NULL;
        if (strcmp(argv[i], "--api") == 0)
            slot = &a->api;
        else if (strcmp(argv[i], "--token-file") == 0)
            slot = &a->token_file;
        else if (strcmp(argv[i], "--ticket") == 0)
            slot = &a->ticket;
        else if (out_ok && strcmp(argv[i], "--out") == 0)
            slot = &a->out;
        else if (out_ok && strcmp(argv[i], "--period") == 0)
            slot = &a->period;
        if (slot && i + 1 < argc) {
            *slot = argv[++i];
        } else if (argv[i][0] != '-' && a->dev == NULL) {
            a->dev = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (a->dev == NULL || a->ticket == NULL) {
        usage(stderr);
        return 2;
    }
    char *enc = curl_easy_escape(NULL, a->dev, 0);
    snprintf(a->endpoint, sizeof a->endpoint, "/api/v1/subjects/%s/%s", enc ? enc : "", verb);
    curl_free(enc);
    return 0;
}

/* `subject erase DEVICE --ticket T --token-file F [--api URL]`: through the running server
 * (a privacy officer's token), so the erasure is decided, audited and applied at once. */
static int subject_erase(int argc, char **argv)
{
    struct api_args a;
    if (api_args(argc, argv, "erase", 0, &a)) return 2;
    const char *pn[] = {"ticket"}, *pv[] = {a.ticket};
    int rc = fv_cli_api("subject erase", "POST", a.api, a.endpoint, pn, pv, 1, a.token_file);
    if (rc == 0) printf("\n");
    return rc;
}

/* `subject export DEVICE --ticket T --token-file F [--period N] [--out FILE] [--api URL]`:
 * the archive of api/export.h (one owner period: the current one, or N), written to FILE
 * (default DEVICE-export.tar), never to a terminal. */
static int subject_export(int argc, char **argv)
{
    struct api_args a;
    if (api_args(argc, argv, "export", 1, &a)) return 2;
    char deflt[300];
    snprintf(deflt, sizeof deflt, "%s-export.tar", a.dev);
    const char *outp = a.out ? a.out : deflt;
    /* The archive holds personal data: created 0600, never over an existing file. */
    int fd = open(outp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0) {
        fprintf(stderr, "fleetvault subject export: %s: %s\n", outp, strerror(errno));
        if (fd >= 0) close(fd);
        return 1;
    }
    close(fd);
    const char *pn[] = {"ticket", "period"}, *pv[] = {a.ticket, a.period};
    int rc = fv_cli_api("subject export", "GET", a.api, a.endpoint, pn, pv, a.period ? 2 : 1,
                        a.token_file);
    fflush(stdout);
    struct stat st;
    if (rc == 0 && stat(outp, &st) == 0)
        fprintf(stderr, "wrote %s (%lld bytes)\n", outp, (long long)st.st_size);
    else if (rc)
        unlink(outp);
    return rc;
}

int fv_cmd_subject(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "erase") == 0) return subject_erase(argc, argv);
    if (argc > 1 && strcmp(argv[1], "export") == 0) return subject_export(argc, argv);
    struct opts o = {.data = "./data"};
    double num;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--data") == 0 && more) {
            o.data = argv[++i];
        } else if (strcmp(a, "--key-file") == 0 && more) {
            o.key_file = argv[++i];
        } else if (strcmp(a, "--policy") == 0 && more) {
            o.policy_file = argv[++i];
        } else if (strcmp(a, "--contract") == 0 && more) {
            o.contract = argv[++i];
        } else if (strcmp(a, "--at") == 0 && more) {
            o.at = argv[++i];
        } else if (strcmp(a, "--by") == 0 && more) {
            o.by = argv[++i];
        } else if (strcmp(a, "--epoch") == 0 && more) {
            o.epoch = argv[++i];
        } else if (strcmp(a, "--audit-key") == 0 && more) {
            o.audit_key = argv[++i];
        } else if (strcmp(a, "--witness") == 0 && more) {
            o.witness = argv[++i];
        } else if (strcmp(a, "--current") == 0) {
            o.current = 1;
        } else if ((a[0] == '-' && strcmp(a, "-") != 0 &&
                    !(o.npos > 0 && strcmp(o.pos[0], "zone") == 0 && parse_number(a, &num) == 0)) ||
                   o.npos == (int)(sizeof o.pos / sizeof o.pos[0])) {
            /* (zone takes negative coordinates as arguments) */
            usage(stderr);
            return 2;
        } else {
            o.pos[o.npos++] = a;
        }
    }
    const char *verb = o.npos ? o.pos[0] : "";
    int show = strcmp(verb, "show") == 0, owner = strcmp(verb, "owner") == 0,
        consent = strcmp(verb, "consent") == 0, zone = strcmp(verb, "zone") == 0;
    const char *zverb = zone && o.npos >= 3 ? o.pos[2] : "";
    int zone_ok = zone && ((strcmp(zverb, "add") == 0 && o.npos == 7) ||
                           (strcmp(zverb, "remove") == 0 && o.npos == 4) ||
                           (strcmp(zverb, "list") == 0 && o.npos == 3));
    if (!((show && o.npos == 2) || (owner && o.npos == 3) || (consent && o.npos == 4) || zone_ok) ||
        (o.current && (!owner || o.at)) || (o.by && !consent) || (o.epoch && !consent && !zone) ||
        (o.at && (show || zone))) {
        usage(stderr);
        return 2;
    }
    const char *contract[FV_POLICY_MAX_PURPOSES + 1] = {FV_SUBJECT_CONTRACT, NULL};
    char contract_buf[FV_POLICY_MAX_PURPOSES * (FV_POLICY_NAME_MAX + 1) + 1];
    if (o.contract && split_list(o.contract, contract_buf, sizeof contract_buf, contract,
                                 FV_POLICY_MAX_PURPOSES)) {
        fprintf(stderr, "fleetvault subject: --contract: too many purposes\n");
        return 2;
    }
    char path[PATH_MAX], err[1024] = "";
    snprintf(path, sizeof path, "%s/catalog.db", o.data);
    if (access(path, F_OK) != 0) {
        fprintf(stderr,
                "fleetvault subject: %s: no catalog here (start the server once to create "
                "it)\n",
                path);
        return 1;
    }
    struct fv_policy *pol = NULL;
    struct fv_keystore *ks = NULL;
    struct fv_kek kek;
    int rc = fv_policy_load(o.policy_file, &pol, err, sizeof err);
    if (rc == FV_OK) rc = fv_kek_load(o.key_file, &kek, err, sizeof err);
    if (rc == FV_OK) {
        rc = fv_keystore_open(path, &kek, &ks, err, sizeof err);
        fv_kek_wipe(&kek);
    }
    if (rc == FV_OK) {
        /* The server may be writing: wait for it rather than fail. */
        sqlite3_busy_timeout((sqlite3 *)fv_keystore_db(ks), 5000);
        rc = fv_subjects_init(ks, err, sizeof err);
        if (rc == FV_OK && zone) rc = fv_zones_init(ks, err, sizeof err);
    }
    if (rc) {
        fprintf(stderr, "fleetvault subject: %s\n", err[0] ? err : fv_strerror(rc));
        fv_keystore_close(ks);
        fv_policy_free(pol);
        return 1;
    }
    for (size_t i = 0; rc == FV_OK && contract[i]; i++)
        if (fv_policy_purpose_id(pol, contract[i]) < 0) {
            fv_seterr(err, sizeof err, "--contract: %s is not a purpose of the policy",
                      contract[i]);
            rc = FV_EINVAL;
        }
    if (rc) {
        fprintf(stderr, "fleetvault subject: %s\n", err);
        fv_keystore_close(ks);
        fv_policy_free(pol);
        return 2;
    }
    struct fv_purposes pp = {.policy = pol, .contract = contract};
    int status = show      ? cmd_show(ks, &pp, o.pos[1])
                 : owner   ? cmd_owner(ks, &o)
                 : consent ? cmd_consent(ks, &pp, &o)
                           : cmd_zone(ks, &o);
    fv_keystore_close(ks);
    fv_policy_free(pol);
    return status;
}
