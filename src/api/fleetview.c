/*
 * fleetview.c - the /api/v1/fleet endpoint (query.h): every device's last value of one signal
 * at or before a time, within a lookback window.
 *
 * The read is decided and audited once for the whole fleet (fv_guard_read, "fleet.at");
 * then per device: only devices in the requester's scope, the current owner's data key, consent
 * at the value's time (G4), and location privacy (G7, G8, G10: fv_guard_oblige). A
 * device whose data cannot be read is left out, not reported as an error.
 *
 * The per-device catalog lookups (owner period, data key, consent, zones) run in one read
 * snapshot of the API thread's catalog connection (keys.h fv_keystore_read_begin), ended
 * before the answer is audited: the next request sees any change made meanwhile.
 *
 * Threading: the API thread (query.h); the fleet's devices are listed under its lock, and
 * everything else here reads the store and catalog, which lock themselves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/query_int.h"
#include "crypto/keys.h"
#include "privacy/subjects.h"
#include "util/err.h"
#include "util/urlquery.h"
#include "wire/places.h"
#include "wire/signals.h"

#define DEFAULT_LOOKB 3600000

void fv_api_fleet(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                  struct fv_http_response *out)
{
    char sig[80], at_s[64], lb_s[32], fmt[16], msg[200];
    if (!fv_query_param(v->query, "signal", sig, sizeof sig) || sig[0] == '\0') {
        fv_query__json_error(out, 400, "missing signal=NAME");
        return;
    }
    long field = fv_signal_lookup(sig);
    if (field < 0) {
        snprintf(msg, sizeof msg, "unknown signal '%.64s'", sig);
        fv_query__json_error(out, 400, msg);
        return;
    }
    int64_t at = INT64_MAX, lookback = DEFAULT_LOOKB;
    if (fv_query_param(v->query, "at", at_s, sizeof at_s) && fv_parse_time_ms(at_s, &at)) {
        fv_query__json_error(out, 400, "bad at: use epoch milliseconds or RFC 3339");
        return;
    }
    if (fv_query_param(v->query, "lookback", lb_s, sizeof lb_s) &&
        fv_parse_span_ms(lb_s, &lookback)) {
        fv_query__json_error(out, 400, "bad lookback: e.g. 10m, 1h, 1d");
        return;
    }
    int csv = fv_query_param(v->query, "format", fmt, sizeof fmt) && strcmp(fmt, "csv") == 0;
    if (v->guard) {
        const char *sn[1] = {sig};
        ctx->energy_sites = 1; /* energy-site roles: other devices are left out below */
        int rc = fv_guard_read(v->guard, ctx, v->query, "fleet.at",
                               fv_api_signal_class(v, (uint32_t)field), NULL,
                               fv_fleet_count(v->fleet) ? fv_fleet_count(v->fleet) : 1, 0, sn, 1,
                               INT64_MIN, at, msg, sizeof msg);
        if (rc) {
            fv_query__json_error(out, rc == FV_EIO ? 503 : 403, msg);
            return;
        }
    }
    int64_t from = at == INT64_MAX ? INT64_MIN : (at > INT64_MIN + lookback ? at - lookback : at);
    struct fv_buf *b = &out->body;
    fv_buf_reset(b);
    out->status = 200;
    out->content_type = csv ? "text/csv" : "application/json";
    char label[32];
    fv_signal_label((unsigned)field, label, sizeof label);
    if (csv)
        fv_query__putf(b, "device,t,%s\n", label);
    else if (at == INT64_MAX)
        fv_query__putf(b, "{\"signal\":\"%s\",\"at\":null,\"vehicles\":[\n", label);
    else
        fv_query__putf(b, "{\"signal\":\"%s\",\"at\":%lld,\"vehicles\":[\n", label, (long long)at);
    uint64_t n = 0;
    uint32_t f = (uint32_t)field;
    struct fv_guard_served served = {0}; /* G12 */
    struct fv_device **all = NULL;
    size_t ndev = 0;
    if (fv_fleet_list(v->fleet, &all, &ndev) != FV_OK) ndev = 0;
    /* One catalog snapshot for the per-device lookups below (owner period, data key,
     * consent, zones), not a lock and WAL check per statement (keys.h) */
    int snap = fv_keystore_read_begin(v->keys) == FV_OK;
    for (size_t i = 0; i < ndev; i++) {
        const struct fv_device *d = all[i];
        if (!fv_api_in_scope(ctx, d)) continue;
        const unsigned char *dek;
        char pseudo[FV_PSEUDONYM_LEN + 1];
        char subject[FV_SUBJECT_NAME_MAX + 1];
        if (fv_subject_current(v->keys, d->id, subject, NULL) != FV_OK)
            snprintf(subject, sizeof subject, "%s", d->id);
        if (fv_keystore_dek(v->keys, subject, 0, &dek, pseudo) != FV_OK) continue;
        if (v->keep && !v->keep(v->keep_arg, pseudo)) continue; /* another shard's */
        struct fv_value last = {0};
        int64_t lt = 0;
        int have = 0;
        /* From the store's last values in memory when they can say, else decoded (store.h) */
        if (fv_store_last(v->store, pseudo, dek, f, from, at, 0, &have, &lt, &last) != FV_OK)
            continue;
        if (have && v->guard && !fv_guard_consented(v->guard, ctx, d->id, lt)) have = 0; /* G4 */
        if (have && v->guard) fv_guard_load_zones(v->guard, ctx, d->id);                 /* G7 */
        if (have && (ctx->d.obligations & FV_OBLIGE_LOCATION_PRIVACY) &&
            (fv_signal_place(f) != FV_PLACE_NONE || last.kind == FV_VK_LOCATION)) /* G8 */
            fv_query__load_trim(v, ctx, pseudo, dek, lt, lt);
        if (!have) {
            fv_value_clear(&last); /* found, but not to be shown */
            continue;
        }
        char shown[65];
        if (v->guard)
            fv_guard_show_id(v->guard, ctx, d->id, shown);
        else
            snprintf(shown, sizeof shown, "%s", d->id);
        json_t *id = json_string(shown);
        char *ids = id ? json_dumps(id, JSON_ENCODE_ANY) : NULL;
        json_decref(id);
        if (ids) {
            if (csv) {
                fv_query__putf(b, "%s,%lld,", shown, (long long)lt);
                fv_put_value(b, ctx, f, lt, &last, 1);
                fv_buf_append(b, "\n", 1);
            } else {
                fv_query__putf(b, "%s{\"device\":%s,\"t\":%lld,\"value\":", n ? ",\n" : "", ids,
                               (long long)lt);
                fv_put_value(b, ctx, f, lt, &last, 0);
                fv_buf_append(b, "}", 1);
            }
            n++;
            fv_guard_served_add_pseudonym(&served, pseudo); /* the period served */
        }
        free(ids);
        fv_value_clear(&last);
        fv_guard_ctx_clear(ctx);
    }
    if (snap) fv_keystore_read_end(v->keys);
    free(all);
    if (!csv) fv_query__putf(b, "\n],\"count\":%llu}\n", (unsigned long long)n);
    fv_api_quota_send(v, ctx, n, &served, out); /* G5 before it is sent; G12 */
    fv_guard_served_free(&served);
}
