/* exports.c - see exports.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "api/exports.h"
#include "api/query.h"
#include "crypto/keys.h"
#include "privacy/guard.h"
#include "privacy/subjects.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/urlquery.h"
#include "util/map.h"
#include "wire/signals.h"

#define MAX_FIELDS  64
#define PIECE_BYTES (1u << 20)

enum { EX_PENDING, EX_APPROVED, EX_TAKEN };

struct export
{
    char id[33];
    char principal[65], role[32], purpose[32], ticket[129], approver[65], approver_role[32];
    int status;
    uint64_t created_ms;
    unsigned char secret[32];
    int64_t from, to;
    uint32_t fields[MAX_FIELDS];
    size_t nfields;
    char **devices; /* snapshot of the vehicles at creation */
    size_t ndevices;
    size_t canary_at[FV_EXPORT_CANARIES]; /* before which device each canary goes */
};

struct fv_exports {
    struct fv_map byid; /* id -> struct export* */
    uint64_t alerts;
};

int fv_exports_new(struct fv_exports **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? FV_OK : FV_ENOMEM;
}

static void export_free(struct export *x)
{
    for (size_t i = 0; i < x->ndevices; i++)
        free(x->devices[i]);
    free(x->devices);
    OPENSSL_cleanse(x->secret, sizeof x->secret);
    free(x);
}

void fv_exports_free(struct fv_exports *e)
{
    if (e == NULL) return;
    for (size_t i = 0; i < e->byid.cap; i++)
        if (e->byid.slots[i].hash) export_free(e->byid.slots[i].val);
    fv_map_free(&e->byid);
    free(e);
}

uint64_t fv_exports_alerts(const struct fv_exports *e)
{
    return e ? e->alerts : 0;
}

void fv_export_canary_id(const unsigned char secret[32], int i, char out[18])
{
    /* VIN-shaped (17 characters of the VIN alphabet), from HMAC(secret, "canary" i). */
    static const char alpha[] = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789";
    unsigned char mac[32], msg[8] = {'c', 'a', 'n', 'a', 'r', 'y', 0, 0};
    unsigned int n = sizeof mac;
    msg[6] = (unsigned char)i;
    if (HMAC(EVP_sha256(), secret, 32, msg, sizeof msg, mac, &n) == NULL) memset(mac, 0, 32);
    for (int k = 0; k < 17; k++)
        out[k] = alpha[mac[k] % (sizeof alpha - 1)];
    out[17] = '\0';
}

static void json_reply(struct fv_http_response *r, int status, json_t *j)
{
    r->status = status;
    r->content_type = "application/json";
    fv_buf_reset(&r->body);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s) {
        fv_buf_append(&r->body, s, strlen(s));
        fv_buf_append(&r->body, "\n", 1);
        free(s);
    }
}

static void error_reply(struct fv_http_response *r, int status, const char *msg)
{
    json_reply(r, status, json_pack("{s:s}", "error", msg));
}

/* A canary's id as the export shows it: its per-purpose pseudonym for a pseudonymising
 * requester (decided by the role alone, as the download will be). out: 65 bytes. */
static void canary_shown(const struct fv_api_view *v, const struct export *x, int i, char *out)
{
    char id[18];
    fv_export_canary_id(x->secret, i, id);
    unsigned ob = fv_policy_role_obligations(v->guard->policy, x->role);
    if (!(ob & FV_OBLIGE_PSEUDONYMISE) ||
        fv_pseudonym_for_purpose(v->guard->pseudo_secret, x->purpose, id, out) != FV_OK)
        snprintf(out, 65, "%s", id);
}

static void audit_export(const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                         const char *action, const struct export *x, const char *result,
                         const char *reason, uint64_t rows, uint64_t bytes)
{
    if (v->guard == NULL || v->guard->audit == NULL) return;
    /* G12: the canaries as the file shows them, so a leaked file's ids find this entry */
    char canaries[FV_EXPORT_CANARIES][65];
    const char *cp[FV_EXPORT_CANARIES];
    for (int i = 0; x && i < FV_EXPORT_CANARIES; i++) {
        canary_shown(v, x, i, canaries[i]);
        cp[i] = canaries[i];
    }
    char extra[400] = "";
    if (x)
        snprintf(extra, sizeof extra, "{\"export\":\"%s\",\"vehicles\":%zu,\"approver\":\"%s\"}",
                 x->id, x->ndevices, x->approver);
    struct fv_audit_event ev = {.kind = "export",
                                .action = action,
                                .principal = ctx->principal,
                                .role = ctx->role,
                                .purpose = x ? x->purpose : NULL,
                                .ticket = x && x->ticket[0] ? x->ticket : NULL,
                                /* the canary ids: a leaked file that holds them names this */
                                .subjects = x ? cp : NULL,
                                .nsubjects = x ? FV_EXPORT_CANARIES : 0,
                                .rows = rows,
                                .bytes = bytes,
                                .result = result,
                                .reason = reason,
                                .extra_json = x ? extra : NULL};
    if (fv_audit_append(v->guard->audit, &ev, NULL) != FV_OK)
        fv_error("audit: %s", fv_audit_last_error(v->guard->audit));
}

static int parse_fields_list(const char *s, uint32_t *f, size_t *n)
{
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        long v = fv_signal_lookup(t);
        if (v < 0 || *n == MAX_FIELDS) return FV_EINVAL;
        f[(*n)++] = (uint32_t)v;
    }
    return *n ? FV_OK : FV_EINVAL;
}

void fv_api_export_create(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                          struct fv_http_response *out)
{
    struct fv_exports *ex = v->exports;
    char sig[2048] = "", from_s[64], to_s[64], devs[4096] = "", why[400];
    if (ex == NULL || v->guard == NULL) {
        error_reply(out, 503, "exports are not set up");
        return;
    }
    struct export *x = calloc(1, sizeof *x);
    if (x == NULL) {
        error_reply(out, 500, "out of memory");
        return;
    }
    x->from = INT64_MIN;
    x->to = INT64_MAX;
    if (!fv_query_param(v->query, "signals", sig, sizeof sig) ||
        parse_fields_list(sig, x->fields, &x->nfields) != FV_OK) {
        export_free(x);
        error_reply(out, 400, "signals=A,B required (names or numbers, at most 64)");
        return;
    }
    if ((fv_query_param(v->query, "from", from_s, sizeof from_s) &&
         fv_parse_time_ms(from_s, &x->from)) ||
        (fv_query_param(v->query, "to", to_s, sizeof to_s) && fv_parse_time_ms(to_s, &x->to)) ||
        x->from > x->to) {
        export_free(x);
        error_reply(out, 400, "bad from/to: epoch milliseconds or RFC 3339, from <= to");
        return;
    }
    /* The vehicles: the ones listed, or the whole fleet. */
    size_t cap = fv_fleet_count(v->fleet) + 1;
    x->devices = calloc(cap + 64, sizeof *x->devices);
    if (x->devices == NULL) {
        export_free(x);
        error_reply(out, 500, "out of memory");
        return;
    }
    char unknown[80] = ""; /* G11: the first name that names no device this role may read */
    if (fv_query_param(v->query, "devices", devs, sizeof devs) && devs[0]) {
        for (char *save = NULL, *t = strtok_r(devs, ",", &save); t && x->ndevices < cap + 63;
             t = strtok_r(NULL, ",", &save)) {
            const struct fv_device *d = fv_api_find_device(v, ctx, t);
            if (d == NULL && unknown[0] == '\0') snprintf(unknown, sizeof unknown, "%.64s", t);
            x->devices[x->ndevices++] = strdup(d ? d->id : "");
        }
        if (unknown[0] == '\0') ctx->unknown[0] = '\0';
    } else {
        struct fv_device **all = NULL;
        size_t n = 0;
        if (fv_fleet_list(v->fleet, &all, &n) == FV_OK)
            for (size_t i = 0; i < n && x->ndevices < cap; i++)
                x->devices[x->ndevices++] = strdup(all[i]->id);
        free(all);
    }
    for (size_t i = 0; i < x->ndevices; i++)
        if (x->devices[i] == NULL) {
            export_free(x);
            error_reply(out, 500, "out of memory");
            return;
        }
    uint32_t classes = 0;
    for (size_t j = 0; j < x->nfields; j++)
        classes |= fv_api_signal_class(v, x->fields[j]);
    int rc =
        fv_guard_read(v->guard, ctx, v->query, "export.request", classes, NULL,
                      x->ndevices ? x->ndevices : 1, 0, NULL, 0, x->from, x->to, why, sizeof why);
    /* G11: decided whatever the list names; then one answer for a name that cannot be read
     * (an unknown name does not even make a pending export). */
    if (rc == FV_ENOENT ||
        (unknown[0] && (rc == FV_OK || strstr(why, "second principal's approval") != NULL))) {
        export_free(x);
        fv_api_unknown_device(out, unknown);
        return;
    }
    /* A refusal because only approval is missing makes a pending export. */
    int pending = 0;
    if (rc == FV_EINVAL && strstr(why, "second principal's approval") != NULL) pending = 1;
    if (rc == FV_EIO || (rc && !pending)) {
        ex->alerts++;
        fv_warn("privacy alert: %s asked for a bulk export of %zu vehicles and was refused: %s",
                ctx->principal, x->ndevices, why);
        export_free(x);
        error_reply(out, rc == FV_EIO ? 503 : 403, why);
        return;
    }
    unsigned char rnd[16];
    if (RAND_bytes(x->secret, sizeof x->secret) != 1 || RAND_bytes(rnd, sizeof rnd) != 1) {
        export_free(x);
        error_reply(out, 500, "no randomness");
        return;
    }
    for (int i = 0; i < 16; i++)
        snprintf(x->id + 2 * i, 3, "%02x", rnd[i]);
    for (int i = 0; i < FV_EXPORT_CANARIES; i++)
        x->canary_at[i] = x->ndevices ? x->secret[i] % (x->ndevices + 1) : 0;
    snprintf(x->principal, sizeof x->principal, "%s", ctx->principal);
    snprintf(x->role, sizeof x->role, "%s", ctx->role);
    snprintf(x->purpose, sizeof x->purpose, "%s", ctx->purpose);
    snprintf(x->ticket, sizeof x->ticket, "%s", ctx->ticket);
    x->status = pending ? EX_PENDING : EX_APPROVED;
    x->created_ms = fv_now_ms();
    if (fv_map_put(&ex->byid, x->id, strlen(x->id), x) != FV_OK) {
        export_free(x);
        error_reply(out, 500, "out of memory");
        return;
    }
    audit_export(v, ctx, "export.create", x, "allow", pending ? "pending approval" : why, 0, 0);
    json_reply(out, pending ? 202 : 201,
               json_pack("{s:s,s:s,s:I,s:s}", "id", x->id, "status",
                         pending ? "pending" : "approved", "subjects", (json_int_t)x->ndevices,
                         "next",
                         pending ? "a second principal approves: POST /api/v1/exports/ID/approve"
                                 : "GET /api/v1/exports/ID"));
}

void fv_api_export_approve(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *id,
                           struct fv_http_response *out)
{
    struct export *x = v->exports ? fv_map_get(&v->exports->byid, id, strlen(id)) : NULL;
    if (x == NULL) {
        error_reply(out, 404, "no such export");
        return;
    }
    if (x->status != EX_PENDING) {
        error_reply(out, 409, "this export is not waiting for approval");
        return;
    }
    /* The policy decides with the approver named: a different principal of a role that
     * may approve (P7). */
    struct fv_access_request req = {.principal = x->principal,
                                    .role = x->role,
                                    .action = FV_ACTION_READ,
                                    .purpose = x->purpose,
                                    .ticket = x->ticket,
                                    .subjects = x->ndevices,
                                    .approved_by = ctx->principal,
                                    .approver_role = ctx->role};
    uint32_t classes = 0;
    for (size_t j = 0; j < x->nfields; j++)
        classes |= fv_api_signal_class(v, x->fields[j]);
    req.classes = classes;
    struct fv_decision d;
    fv_policy_decide(v->guard->policy, &req, &d);
    if (!d.allow || strcmp(ctx->principal, x->principal) == 0) {
        const char *why = d.allow ? "the requester cannot approve their own export" : d.reason;
        audit_export(v, ctx, "export.approve", x, "deny", why, 0, 0);
        error_reply(out, 403, why);
        return;
    }
    snprintf(x->approver, sizeof x->approver, "%s", ctx->principal);
    snprintf(x->approver_role, sizeof x->approver_role, "%s", ctx->role);
    x->status = EX_APPROVED;
    audit_export(v, ctx, "export.approve", x, "allow", d.reason, 0, 0);
    json_reply(
        out, 200,
        json_pack("{s:s,s:s,s:s}", "id", x->id, "status", "approved", "approved_by", x->approver));
}

/* GET /api/v1/exports: the exports waiting for a second principal, for a role that may approve
 * them (their requesters, purposes, tickets and sizes: no data of any vehicle), oldest first;
 * audited as export.list with how many were shown. */
void fv_api_export_list(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                        struct fv_http_response *out)
{
    if (v->exports == NULL || v->guard == NULL) {
        error_reply(out, 503, "exports are not set up");
        return;
    }
    if (!fv_policy_role_approves(v->guard->policy, ctx->role)) {
        audit_export(v, ctx, "export.list", NULL, "deny", "the role does not approve exports", 0,
                     0);
        error_reply(out, 403, "only a role that approves bulk exports lists the pending ones");
        return;
    }
    json_t *arr = json_array();
    size_t n = 0;
    /* oldest first: collected, then sorted by creation time */
    const struct fv_map *m = &v->exports->byid;
    struct export **xs = NULL;
    size_t nx = 0, cap = 0;
    for (size_t i = 0; arr && i < m->cap; i++) {
        struct export *x = m->slots[i].hash ? m->slots[i].val : NULL;
        if (x == NULL || x->status != EX_PENDING) continue;
        if (nx == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct export **g = realloc(xs, nc * sizeof *g);
            if (g == NULL) { /* a short list would hide a request: none at all */
                free(xs);
                json_decref(arr);
                error_reply(out, 500, "out of memory");
                return;
            }
            xs = g;
            cap = nc;
        }
        xs[nx++] = x;
    }
    for (size_t i = 1; i < nx; i++) /* insertion sort: pending exports are few */
        for (size_t j = i; j > 0 && xs[j - 1]->created_ms > xs[j]->created_ms; j--) {
            struct export *t = xs[j];
            xs[j] = xs[j - 1];
            xs[j - 1] = t;
        }
    for (size_t i = 0; arr && i < nx; i++) {
        const struct export *x = xs[i];
        json_t *sigs = json_array();
        for (size_t j = 0; sigs && j < x->nfields; j++) {
            char label[32];
            fv_signal_label(x->fields[j], label, sizeof label);
            json_array_append_new(sigs, json_string(label));
        }
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s?,s:I,s:I,s:o}", "id", x->id, "requester",
                              x->principal, "role", x->role, "purpose", x->purpose, "ticket",
                              x->ticket[0] ? x->ticket : NULL, "vehicles", (json_int_t)x->ndevices,
                              "created_ms", (json_int_t)x->created_ms, "signals",
                              sigs ? sigs : json_array());
        if (o) {
            if (x->from != INT64_MIN) json_object_set_new(o, "from", json_integer(x->from));
            if (x->to != INT64_MAX) json_object_set_new(o, "to", json_integer(x->to));
            json_array_append_new(arr, o);
            n++;
        }
    }
    free(xs);
    audit_export(v, ctx, "export.list", NULL, "allow", "pending exports listed", n, 0);
    json_reply(out, 200,
               json_pack("{s:o,s:I}", "exports", arr ? arr : json_array(), "count", (json_int_t)n));
}

/* ---- the download ---------------------------------------------------------------------- */

struct dctx {
    const struct fv_api_view *v;
    struct fv_guard_ctx ctx;
    struct export *x; /* owned from the start of the download */
    size_t k;         /* next device */
    int canaries_done[FV_EXPORT_CANARIES];
    int started;
    uint64_t rows, bytes;
    struct fv_guard_meter meter;   /* G5: the download stops at the daily quota */
    struct fv_guard_served served; /* G12: the subjects whose rows were sent */
};

/* G5: before a row, may it be served? After it, did it fit the bytes left (else it is cut
 * off again)? */
static int row_room(struct dctx *c)
{
    return fv_guard_meter_room(&c->meter);
}

static int row_done(struct dctx *c, struct fv_buf *b, size_t mark)
{
    if (!fv_guard_meter_row(&c->meter, b->len)) {
        b->len = mark;
        return 0;
    }
    c->rows++;
    return 1;
}

static int put_canary(struct dctx *c, int i, struct fv_buf *b)
{
    struct export *x = c->x;
    char shown[65];
    canary_shown(c->v, x, i, shown); /* what audit_export logged */
    int64_t base = x->from != INT64_MIN ? x->from : (int64_t)x->created_ms - 3600000;
    int rc = FV_OK;
    for (int r = 0; rc == FV_OK && r < 3 && row_room(c); r++) {
        size_t mark = b->len;
        char line[128];
        int n = snprintf(line, sizeof line, "%s,%lld", shown,
                         (long long)(base + 1000 * (x->secret[8 + i] + 97 * r)));
        rc = fv_buf_append(b, line, (size_t)n);
        for (size_t j = 0; rc == FV_OK && j < x->nfields; j++) {
            /* plausible numbers, different per export */
            n = snprintf(line, sizeof line, ",%.2f",
                         (double)(x->secret[(i * 7 + j + r) % 32] % 90) + 5.25);
            rc = fv_buf_append(b, line, (size_t)n);
        }
        if (rc == FV_OK) rc = fv_buf_append(b, "\n", 1);
        if (rc == FV_OK && !row_done(c, b, mark)) break;
    }
    return rc;
}

static int put_device(struct dctx *c, const char *device, struct fv_buf *b)
{
    const struct fv_api_view *v = c->v;
    struct export *x = c->x;
    char subject[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1], err[256], shown[65];
    const unsigned char *dek;
    if (fv_subject_current(v->keys, device, subject, NULL) != FV_OK)
        snprintf(subject, sizeof subject, "%s", device);
    if (fv_keystore_dek(v->keys, subject, 0, &dek, pseudo) != FV_OK) return FV_OK; /* erased */
    if (fv_guard_load_consent(v->guard, &c->ctx, device, x->from, x->to) == 0) return FV_OK;
    fv_guard_load_zones(v->guard, &c->ctx, device);
    if (fv_api_any_place(x->fields, x->nfields)) /* G8, as every output */
        fv_api_load_withheld(v, &c->ctx, device, x->from, x->to);
    fv_guard_show_id(v->guard, &c->ctx, device, shown);
    struct fv_store_cursor *cur;
    int rc = fv_store_query(v->store, pseudo, dek, x->from, x->to, x->fields, x->nfields, 0, &cur,
                            err, sizeof err);
    if (rc) return rc;
    struct fv_store_chunk ch;
    int n;
    uint64_t rows0 = c->rows;
    while ((n = fv_store_next(cur, &ch, err, sizeof err)) == 1) {
        for (size_t i = 0; rc == FV_OK && i < ch.n; i++) {
            if (!fv_guard_in_consent(&c->ctx, ch.t[i])) continue;
            if (!row_room(c)) break;
            size_t mark = b->len;
            char t[48];
            int m = snprintf(t, sizeof t, ",%lld", (long long)ch.t[i]);
            rc = fv_buf_append(b, shown, strlen(shown));
            if (rc == FV_OK) rc = fv_buf_append(b, t, (size_t)m);
            for (size_t j = 0; rc == FV_OK && j < ch.ncols; j++) {
                rc = fv_buf_append(b, ",", 1);
                if (rc == FV_OK)
                    rc = fv_put_value(b, &c->ctx, ch.field[j], ch.t[i], &ch.col[j][i], 1);
            }
            if (rc == FV_OK) rc = fv_buf_append(b, "\n", 1);
            if (rc == FV_OK && !row_done(c, b, mark)) break;
        }
        if (rc || c->meter.hit) break;
    }
    if (n < 0) {
        fv_error("export %s: %s", x->id, err);
        rc = n;
    }
    fv_store_cursor_free(cur);
    fv_guard_ctx_clear(&c->ctx);
    if (c->rows > rows0) fv_guard_served_add_pseudonym(&c->served, pseudo); /* the period read */
    return rc;
}

static int d_more(void *arg, struct fv_buf *b)
{
    struct dctx *c = arg;
    struct export *x = c->x;
    size_t before = b->len;
    int rc = FV_OK;
    fv_guard_meter_start(c->v->guard, &c->ctx, &c->meter, before); /* G5 */
    if (!c->started) {
        c->started = 1;
        rc = fv_buf_append(b, "device,t", 8);
        for (size_t j = 0; rc == FV_OK && j < x->nfields; j++) {
            char nm[32];
            fv_signal_label(x->fields[j], nm, sizeof nm);
            rc = fv_buf_append(b, ",", 1);
            if (rc == FV_OK) rc = fv_buf_append(b, nm, strlen(nm));
        }
        if (rc == FV_OK) rc = fv_buf_append(b, "\n", 1);
    }
    while (rc == FV_OK && b->len < PIECE_BYTES && c->k <= x->ndevices && !c->meter.hit) {
        for (int i = 0; rc == FV_OK && i < FV_EXPORT_CANARIES; i++)
            if (!c->canaries_done[i] && x->canary_at[i] == c->k) {
                rc = put_canary(c, i, b);
                c->canaries_done[i] = 1;
            }
        if (rc == FV_OK && c->k < x->ndevices) rc = put_device(c, x->devices[c->k], b);
        c->k++;
    }
    const char *note = fv_guard_meter_note(&c->meter);
    if (rc == FV_OK && note[0]) { /* G5: stopped at the quota, and the file says so */
        rc = fv_buf_append(b, "# ", 2);
        if (rc == FV_OK) rc = fv_buf_append(b, note, strlen(note));
        if (rc == FV_OK) rc = fv_buf_append(b, "\n", 1);
    }
    c->bytes += b->len - before;
    fv_guard_meter_end(c->v->guard, &c->ctx, &c->meter, b->len);
    if (rc) return rc;
    return c->k > x->ndevices || c->meter.hit ? 0 : 1;
}

static void d_free(void *arg)
{
    struct dctx *c = arg;
    if (c == NULL) return;
    audit_export(c->v, &c->ctx, "export.download", c->x, "allow", "done", c->rows, c->bytes);
    if (c->v->guard) fv_guard_done_served(c->v->guard, &c->ctx, &c->served, c->rows, c->bytes);
    fv_guard_served_free(&c->served);
    export_free(c->x);
    free(c);
}

void fv_api_export_get(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *id,
                       struct fv_http_response *out)
{
    struct export *x = v->exports ? fv_map_get(&v->exports->byid, id, strlen(id)) : NULL;
    if (x == NULL) {
        error_reply(out, 404, "no such export (or it was downloaded already)");
        return;
    }
    if (strcmp(ctx->principal, x->principal) != 0) {
        audit_export(v, ctx, "export.download", x, "deny", "not the requester", 0, 0);
        error_reply(out, 403, "only the principal who asked for this export may download it");
        return;
    }
    if (x->status != EX_APPROVED) {
        error_reply(out, 403, "this export waits for a second principal's approval");
        return;
    }
    /* Decided again now (a revoked role, a spent quota); obligations for the download. */
    char why[400];
    uint32_t classes = 0;
    for (size_t j = 0; j < x->nfields; j++)
        classes |= fv_api_signal_class(v, x->fields[j]);
    struct fv_access_request req = {.principal = x->principal,
                                    .role = x->role,
                                    .action = FV_ACTION_READ,
                                    .purpose = x->purpose,
                                    .ticket = x->ticket,
                                    .classes = classes,
                                    .subjects = x->ndevices ? x->ndevices : 1};
    if (x->approver[0]) {
        req.approved_by = x->approver;
        req.approver_role = x->approver_role;
    }
    fv_policy_decide(v->guard->policy, &req, &ctx->d);
    snprintf(ctx->purpose, sizeof ctx->purpose, "%s", x->purpose);
    snprintf(ctx->ticket, sizeof ctx->ticket, "%s", x->ticket);
    snprintf(why, sizeof why, "%s", ctx->d.reason);
    /* G5: an approved export is held to the quota like any read: its subjects now (an export
     * approved automatically counted them when it was made), its rows and bytes as they are
     * sent. An exhausted quota refuses it before anything is sent. */
    if (ctx->d.allow && fv_guard_quota_take(v->guard, ctx, x->approver[0] ? req.subjects : 0, why,
                                            sizeof why) != FV_OK)
        ctx->d.allow = false;
    if (!ctx->d.allow) {
        audit_export(v, ctx, "export.download", x, "deny", why, 0, 0);
        error_reply(out, 403, why);
        return;
    }
    struct dctx *c = calloc(1, sizeof *c);
    if (c == NULL) {
        error_reply(out, 500, "out of memory");
        return;
    }
    /* One download per export: it leaves the table now. */
    fv_map_del(&v->exports->byid, x->id, strlen(x->id));
    x->status = EX_TAKEN;
    c->v = v;
    c->ctx = *ctx;
    c->ctx.grid_m = v->guard->grid_m;
    snprintf(c->ctx.action, sizeof c->ctx.action, "export.download");
    c->x = x;
    out->status = 200;
    out->content_type = "text/csv";
    out->more = d_more;
    out->free_ctx = d_free;
    out->ctx = c;
}
