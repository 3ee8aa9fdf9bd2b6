/*
 * consent.c - consent per purpose of each data subject (subjects.h, rules S5, S6): set,
 * as of a time, as intervals, servable ranges, history. Consent is stored per subject
 * pseudonym, time-stamped and append-only; a contract purpose is always granted. The owner
 * periods it relies on are subjects.c's.
 *
 * Threads: as subjects.h (the caller's catalog connection, one thread at a time).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include "privacy/policy.h"
#include "privacy/principals.h"
#include "privacy/subjects.h"
#include "privacy/subjects_int.h"
#include "util/clock.h"
#include "util/err.h"

static const char *const default_purposes[] = {FV_SUBJECT_PURPOSES, NULL};
static const char *const default_contract[] = {FV_SUBJECT_CONTRACT, NULL};

static int in_list(const char *const *list, const char *name)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], name) == 0) return 1;
    return 0;
}

/* Checks purpose against pp; *contract: necessary for the contract (S6). */
static int check_purpose(const struct fv_purposes *pp, const char *purpose, int *contract,
                         char *err, size_t errlen)
{
    *contract = 0;
    const struct fv_policy *pol = pp ? pp->policy : NULL;
    const char *const *names = pp && pp->names ? pp->names : default_purposes;
    const char *const *con = pp && pp->contract ? pp->contract : default_contract;
    int known = purpose != NULL && purpose[0] != '\0' && strlen(purpose) <= FV_POLICY_NAME_MAX &&
                (pol ? fv_policy_purpose_id(pol, purpose) >= 0 : in_list(names, purpose));
    if (!known) {
        char list[FV_POLICY_MAX_PURPOSES * (FV_POLICY_NAME_MAX + 2) + 1];
        size_t used = 0;
        list[0] = '\0';
        size_t np = pol ? fv_policy_npurposes(pol) : SIZE_MAX;
        for (size_t i = 0; i < np && used < sizeof list; i++) {
            const char *nm = pol ? fv_policy_purpose_name(pol, i) : names[i];
            if (nm == NULL) break;
            int k = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", nm);
            if (k < 0) break;
            used += (size_t)k;
        }
        fv_seterr(err, errlen, "unknown purpose \"%.40s\" (purposes: %s)", purpose ? purpose : "",
                  list);
        return FV_EINVAL;
    }
    *contract = in_list(con, purpose);
    return FV_OK;
}

int fv_consent_set(struct fv_keystore *ks, const struct fv_purposes *pp, const char *subject,
                   const char *purpose, int granted, int64_t at_ms, const char *by, char *err,
                   size_t errlen)
{
    char device[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1];
    int epoch, contract;
    int rc = fv_subjects__ids(ks, subject, device, &epoch, pseudo, err, errlen);
    if (rc == FV_OK) rc = check_purpose(pp, purpose, &contract, err, errlen);
    if (rc) return rc;
    if (granted != 0 && granted != 1) {
        fv_seterr(err, errlen, "granted must be 1 (give) or 0 (withdraw)");
        return FV_EINVAL;
    }
    if (by != NULL && !fv_principal_name_valid(by)) {
        fv_seterr(err, errlen, "bad 'by' (a principal name or \"owner\": 1 to %d of a-z 0-9 . _ -)",
                  FV_SUBJECT_BY_MAX);
        return FV_EINVAL;
    }
    if (at_ms == INT64_MIN || at_ms == INT64_MAX) {
        fv_seterr(err, errlen, "bad time of the consent change");
        return FV_EINVAL;
    }
    if (contract) {
        if (granted) return FV_OK; /* S6: always granted; nothing to record */
        fv_seterr(err, errlen,
                  "purpose %s is necessary for the contract (GDPR Art. 6(1)(b)): it does not "
                  "rest on consent, so there is no consent to withdraw; ending it means ending "
                  "the contract (erasure of the subject)",
                  purpose);
        return FV_EINVAL;
    }
    sqlite3 *db = fv_keystore_db(ks);
    struct periods p;
    memset(&p, 0, sizeof p);
    sqlite3_stmt *st = NULL;
    if ((rc = fv_subjects__begin(db, err, errlen)) != FV_OK) return rc;
    rc = fv_subjects__load_periods(ks, device, &p, err, errlen);
    if (rc) goto done;
    if ((size_t)epoch > (p.n ? p.n : 1)) {
        fv_seterr(err, errlen, "no subject %s: the device has %zu owner period(s)", subject,
                  p.n ? p.n : 1);
        rc = FV_ENOENT;
        goto done;
    }
    const struct prow *r = p.n ? &p.v[epoch - 1] : NULL;
    const unsigned char *dek = NULL;
    char kp[FV_PSEUDONYM_LEN + 1];
    int krc = fv_keystore_dek(ks, subject, 0, &dek, kp);
    if ((r && r->forgotten) || krc == FV_ESTATE) {
        fv_seterr(err, errlen, "subject %s was erased", subject);
        rc = FV_ESTATE;
        goto done;
    }
    if (krc != FV_OK && krc != FV_ENOENT) {
        fv_seterr(err, errlen, "reading the subject's key failed: %s", fv_strerror(krc));
        rc = krc;
        goto done;
    }
    if (r && at_ms < r->since) {
        fv_seterr(err, errlen,
                  "consent at %lld ms predates the subject's owner period (from %lld ms): it "
                  "cannot cover another owner's time",
                  (long long)at_ms, (long long)r->since);
        rc = FV_EINVAL;
        goto done;
    }
    rc = FV_EIO;
    if (sqlite3_prepare_v2(db,
                           "SELECT max(at_ms) FROM consents WHERE subject = ?1 AND purpose = ?2",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, pseudo, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, purpose, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        goto dberr;
    if (sqlite3_column_type(st, 0) != SQLITE_NULL && sqlite3_column_int64(st, 0) > at_ms) {
        fv_seterr(err, errlen,
                  "consent changes are recorded in time order: the last change of %s for this "
                  "subject is at %lld ms, after %lld ms",
                  purpose, (long long)sqlite3_column_int64(st, 0), (long long)at_ms);
        rc = FV_EINVAL;
        goto done;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO consents(subject, purpose, granted, at_ms, by)"
                           " VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, pseudo, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, purpose, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int(st, 3, granted) != SQLITE_OK ||
        sqlite3_bind_int64(st, 4, at_ms) != SQLITE_OK ||
        (by ? sqlite3_bind_text(st, 5, by, -1, SQLITE_STATIC) : sqlite3_bind_null(st, 5)) !=
            SQLITE_OK ||
        sqlite3_step(st) != SQLITE_DONE)
        goto dberr;
    rc = FV_OK;
    goto done;
dberr:
    fv_seterr(err, errlen, "catalog: consents: %s", sqlite3_errmsg(db));
    rc = FV_EIO;
done:
    sqlite3_finalize(st);
    fv_subjects__periods_free(&p);
    return fv_subjects__commit(db, rc, err, errlen);
}

int fv_consent_check_time(int granted, int64_t at_ms, int64_t now_ms, char *err, size_t errlen)
{
    if (!granted) return FV_OK;
    if (at_ms < now_ms) {
        fv_seterr(err, errlen,
                  "a grant may not be dated before it is recorded (at %lld ms, now %lld ms): "
                  "consent is given from the moment it is recorded; leave 'at' out",
                  (long long)at_ms, (long long)now_ms);
        return FV_EINVAL;
    }
    if (at_ms - now_ms > FV_CONSENT_SKEW_MS) {
        fv_seterr(err, errlen,
                  "a grant may not be dated more than %d s ahead (at %lld ms, now %lld ms): "
                  "record it when it is given",
                  FV_CONSENT_SKEW_MS / 1000, (long long)at_ms, (long long)now_ms);
        return FV_EINVAL;
    }
    return FV_OK;
}

int fv_consent_audit_extra(int granted, int64_t at_ms, int64_t now_ms, const char *by, char *out,
                           size_t outlen)
{
    json_t *o = json_pack("{s:s,s:I,s:I}", "change", granted ? "give" : "withdraw", "at_ms",
                          (json_int_t)at_ms, "recorded_ms", (json_int_t)now_ms);
    if (o && by && json_object_set_new(o, "by", json_string(by)) != 0) {
        json_decref(o);
        o = NULL;
    }
    char *js = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (js == NULL) return FV_ENOMEM;
    int rc = snprintf(out, outlen, "%s", js) < (int)outlen ? FV_OK : FV_ELIMIT;
    free(js);
    return rc;
}

/* Appends [lo, hi] clipped to [from, to] (when not empty) to out / *n. */
static void emit(int64_t lo, int64_t hi, int64_t from, int64_t to, struct fv_interval *out,
                 size_t cap, size_t *n)
{
    if (lo < from) lo = from;
    if (hi > to) hi = to;
    if (lo > hi) return;
    if (*n < cap) out[*n] = (struct fv_interval){lo, hi};
    (*n)++;
}

int fv_consent_intervals(struct fv_keystore *ks, const struct fv_purposes *pp, const char *subject,
                         const char *purpose, int64_t from, int64_t to, struct fv_interval *out,
                         size_t cap, size_t *n)
{
    *n = 0;
    char device[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1];
    int epoch, contract;
    int rc = fv_subjects__ids(ks, subject, device, &epoch, pseudo, NULL, 0);
    if (rc == FV_OK) rc = check_purpose(pp, purpose, &contract, NULL, 0);
    if (rc) return rc;
    if (from > to) return FV_EINVAL;
    if (contract) {
        emit(from, to, from, to, out, cap, n);
        return cap >= 1 ? FV_OK : FV_ELIMIT;
    }
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT granted, at_ms FROM consents WHERE subject = ?1 AND"
                           " purpose = ?2 ORDER BY at_ms, seq",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, pseudo, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, purpose, -1, SQLITE_STATIC) != SQLITE_OK) {
        sqlite3_finalize(st);
        return FV_EIO;
    }
    /* S5: held from a grant to the next withdrawal, exclusive. */
    int held = 0, step;
    int64_t start = 0;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_int64 g = sqlite3_column_int64(st, 0), at = sqlite3_column_int64(st, 1);
        if (g != 0 && g != 1) {
            rc = FV_ECORRUPT;
            break;
        }
        if (g && !held) {
            held = 1;
            start = at;
        } else if (!g && held) {
            held = 0;
            if (at > start) emit(start, at - 1, from, to, out, cap, n);
        }
    }
    if (rc == FV_OK && step != SQLITE_DONE) rc = FV_EIO;
    sqlite3_finalize(st);
    if (rc == FV_OK && held) emit(start, FV_SUBJECT_FOREVER, from, to, out, cap, n);
    if (rc) {
        *n = 0;
        return rc;
    }
    return *n > cap ? FV_ELIMIT : FV_OK;
}

int fv_consent_at(struct fv_keystore *ks, const struct fv_purposes *pp, const char *subject,
                  const char *purpose, int64_t t, int *granted)
{
    *granted = 0;
    struct fv_interval iv;
    size_t n = 0;
    /* One logic for both answers: the interval walk over [t, t]. */
    int rc = fv_consent_intervals(ks, pp, subject, purpose, t, t, &iv, 1, &n);
    if (rc == FV_OK) *granted = n == 1;
    return rc;
}

int fv_consent_servable(struct fv_keystore *ks, const struct fv_purposes *pp, const char *subject,
                        const char *purpose, int64_t now_ms, int64_t from, int64_t to,
                        struct fv_interval *out, size_t cap, size_t *n)
{
    *n = 0;
    if (from > to) return FV_EINVAL;
    int now = 0;
    int rc = fv_consent_at(ks, pp, subject, purpose, now_ms, &now);
    if (rc || !now) return rc; /* withdrawn now: nothing, whatever was collected before */
    return fv_consent_intervals(ks, pp, subject, purpose, from, to, out, cap, n);
}

int fv_consent_history(struct fv_keystore *ks, const char *subject,
                       int (*fn)(void *arg, const struct fv_consent_change *c), void *arg,
                       char *err, size_t errlen)
{
    char device[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1];
    int epoch;
    int rc = fv_subjects__ids(ks, subject, device, &epoch, pseudo, err, errlen);
    if (rc) return rc;
    sqlite3 *db = fv_keystore_db(ks);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT purpose, granted, at_ms, by, seq FROM consents"
                           " WHERE subject = ?1 ORDER BY at_ms, seq",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, pseudo, -1, SQLITE_STATIC) != SQLITE_OK) {
        fv_seterr(err, errlen, "catalog: consents: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return FV_EIO;
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct fv_consent_change c;
        memset(&c, 0, sizeof c);
        const unsigned char *pu = sqlite3_column_text(st, 0), *by = sqlite3_column_text(st, 3);
        int np = sqlite3_column_bytes(st, 0), nb = sqlite3_column_bytes(st, 3);
        sqlite3_int64 g = sqlite3_column_int64(st, 1);
        if (pu == NULL || np <= 0 || np > FV_POLICY_NAME_MAX || (g != 0 && g != 1) ||
            nb > FV_SUBJECT_BY_MAX) {
            fv_seterr(err, errlen, "catalog: consents: a row of subject %s is out of range",
                      pseudo);
            rc = FV_ECORRUPT;
            break;
        }
        memcpy(c.purpose, pu, (size_t)np);
        if (by) memcpy(c.by, by, (size_t)nb);
        c.granted = (int)g;
        c.at_ms = sqlite3_column_int64(st, 2);
        c.seq = sqlite3_column_int64(st, 4);
        if ((rc = fn(arg, &c)) != 0) break;
    }
    if (rc == FV_OK && step != SQLITE_DONE) {
        fv_seterr(err, errlen, "catalog: consents: %s", sqlite3_errmsg(db));
        rc = FV_EIO;
    }
    sqlite3_finalize(st);
    return rc;
}
