/* exports.c - see exports.h. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "api/exports.h"
#include "api/exports_int.h"
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

enum { EX_PENDING, EX_APPROVED, EX_TAKEN };

struct fv_export {
    char id[33];
    char principal[65], role[32], purpose[32], ticket[129], approver[65], approver_role[32];
    int status;
    uint64_t created_ms;
    unsigned char secret[32];
    int64_t from, to;
    uint32_t fields[FV_EXPORTS__FIELDS_MAX];
    size_t nfields;
    char **devices;    /* snapshot of the vehicles at creation (a cluster's: NULL) */
    size_t ndevices;   /* their number (a cluster's: the shards' owners' count, Q12) */
    char *names;       /* a cluster's: the devices= list asked for ("": every vehicle) */
    uint64_t *shard_n; /* a cluster's: each shard's vehicles at creation */
    uint32_t nshards;  /* 0: this node's own export */
    size_t canary_at[FV_EXPORT_CANARIES]; /* before which device each canary goes */
};

struct fv_exports {
    struct fv_map byid; /* id -> struct fv_export* */
    uint64_t alerts;
};

int fv_exports_new(struct fv_exports **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? FV_OK : FV_ENOMEM;
}

static void export_free(struct fv_export *x)
{
    for (size_t i = 0; x->devices && i < x->ndevices; i++)
        free(x->devices[i]);
    free(x->devices);
    free(x->names);
    free(x->shard_n);
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
static void canary_shown(const struct fv_api_view *v, const struct fv_export *x, int i, char *out)
{
    char id[18];
    fv_export_canary_id(x->secret, i, id);
    unsigned ob = fv_policy_role_obligations(v->guard->policy, x->role);
    if (!(ob & FV_OBLIGE_PSEUDONYMISE) ||
        fv_pseudonym_for_purpose(v->guard->pseudo_secret, x->purpose, id, out) != FV_OK)
        snprintf(out, 65, "%s", id);
}

static void audit_export(const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                         const char *action, const struct fv_export *x, const char *result,
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

/* The vehicles of a single node's export: the ones listed (devs; unknown: the first name
 * that names no device this role may read, G11), or the whole fleet. FV_OK or FV_ENOMEM. */
static int local_vehicles(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                          struct fv_export *x, char *devs, char unknown[80])
{
    size_t cap = fv_fleet_count(v->fleet) + 1;
    x->devices = calloc(cap + 64, sizeof *x->devices);
    if (x->devices == NULL) return FV_ENOMEM;
    if (devs[0]) {
        for (char *save = NULL, *t = strtok_r(devs, ",", &save); t && x->ndevices < cap + 63;
             t = strtok_r(NULL, ",", &save)) {
            const struct fv_device *d = fv_api_find_device(v, ctx, t);
            if (d == NULL && unknown[0] == '\0') snprintf(unknown, 80, "%.64s", t);
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
        if (x->devices[i] == NULL) return FV_ENOMEM;
    return FV_OK;
}

/* The vehicles of a cluster's export (Q12): counted by the shards' owners (cnt); a name of
 * the list that no shard holds is unknown (G11). FV_OK or FV_ENOMEM. */
static int counted_vehicles(struct fv_guard_ctx *ctx, struct fv_export *x,
                            const struct fv_export_counted *cnt, const char *devs, char unknown[80])
{
    x->nshards = cnt->nshards;
    x->shard_n = calloc(cnt->nshards ? cnt->nshards : 1, sizeof *x->shard_n);
    x->names = strdup(devs);
    if (x->shard_n == NULL || x->names == NULL) return FV_ENOMEM;
    for (uint32_t s = 0; s < cnt->nshards; s++) {
        x->shard_n[s] = cnt->vehicles[s];
        x->ndevices += cnt->vehicles[s];
    }
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", devs);
    size_t i = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save), i++)
        if ((cnt->held == NULL || i >= cnt->nnames || !cnt->held[i]) && unknown[0] == '\0') {
            snprintf(unknown, 80, "%.64s", t);
            snprintf(ctx->unknown, sizeof ctx->unknown, "no shard's owner holds it");
        }
    if (devs[0] && unknown[0] == '\0') ctx->unknown[0] = '\0';
    return FV_OK;
}

/* POST /api/v1/exports; cnt: a cluster's count (Q12), or NULL: this node's fleet. */
static void create(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                   const struct fv_export_counted *cnt, struct fv_http_response *out)
{
    struct fv_exports *ex = v->exports;
    char sig[2048] = "", from_s[64], to_s[64], devs[4096] = "", why[400];
    if (ex == NULL || v->guard == NULL) {
        error_reply(out, 503, "exports are not set up");
        return;
    }
    struct fv_export *x = calloc(1, sizeof *x);
    if (x == NULL) {
        error_reply(out, 500, "out of memory");
        return;
    }
    x->from = INT64_MIN;
    x->to = INT64_MAX;
    if (!fv_query_param(v->query, "signals", sig, sizeof sig) ||
        fv_exports__parse_fields(sig, x->fields, &x->nfields) != FV_OK) {
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
    char unknown[80] = ""; /* G11: the first name that names no device this role may read */
    fv_query_param(v->query, "devices", devs, sizeof devs);
    if ((cnt ? counted_vehicles(ctx, x, cnt, devs, unknown)
             : local_vehicles(v, ctx, x, devs, unknown)) != FV_OK) {
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

void fv_api_export_create(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                          struct fv_http_response *out)
{
    create(v, ctx, NULL, out);
}

void fv_api_export_create_counted(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                                  const struct fv_export_counted *cnt, struct fv_http_response *out)
{
    create(v, ctx, cnt, out);
}

void fv_api_export_approve(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *id,
                           struct fv_http_response *out)
{
    struct fv_export *x = v->exports ? fv_map_get(&v->exports->byid, id, strlen(id)) : NULL;
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
    struct fv_export **xs = NULL;
    size_t nx = 0, cap = 0;
    for (size_t i = 0; arr && i < m->cap; i++) {
        struct fv_export *x = m->slots[i].hash ? m->slots[i].val : NULL;
        if (x == NULL || x->status != EX_PENDING) continue;
        if (nx == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct fv_export **g = realloc(xs, nc * sizeof *g);
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
            struct fv_export *t = xs[j];
            xs[j] = xs[j - 1];
            xs[j - 1] = t;
        }
    for (size_t i = 0; arr && i < nx; i++) {
        const struct fv_export *x = xs[i];
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
    struct fv_exports__rows r;
    struct fv_export *x; /* owned from the start of the download */
    size_t k;            /* next device */
    int canaries_done[FV_EXPORT_CANARIES];
    int started;
    uint64_t bytes;
};

/* Canary i's rows (r: metered as real rows, G5; NULL: not metered, a cluster's api node);
 * FV_OK or FV_ENOMEM. */
static int put_canary(const struct fv_api_view *v, const struct fv_export *x, int i,
                      struct fv_exports__rows *r, struct fv_buf *b)
{
    char shown[65];
    canary_shown(v, x, i, shown); /* what audit_export logged */
    int64_t base = x->from != INT64_MIN ? x->from : (int64_t)x->created_ms - 3600000;
    int rc = FV_OK;
    for (int k = 0; rc == FV_OK && k < 3 && (r == NULL || fv_exports__row_room(r)); k++) {
        size_t mark = b->len;
        rc = fv_buf_appendf(b, "%s,%lld", shown,
                            (long long)(base + 1000 * (x->secret[8 + i] + 97 * k)));
        for (size_t j = 0; rc == FV_OK && j < x->nfields; j++) /* plausible, per export */
            rc = fv_buf_appendf(b, ",%.2f", (double)(x->secret[(i * 7 + j + k) % 32] % 90) + 5.25);
        if (rc == FV_OK) rc = fv_buf_append(b, "\n", 1);
        if (rc == FV_OK && r && !fv_exports__row_done(r, b, mark)) break;
    }
    return rc;
}

int fv_export_put_header(const struct fv_export *x, struct fv_buf *b)
{
    int rc = fv_buf_append(b, "device,t", 8);
    for (size_t j = 0; rc == FV_OK && j < x->nfields; j++) {
        char nm[32];
        fv_signal_label(x->fields[j], nm, sizeof nm);
        rc = fv_buf_appendf(b, ",%s", nm);
    }
    return rc == FV_OK ? fv_buf_append(b, "\n", 1) : rc;
}

static int d_more(void *arg, struct fv_buf *b)
{
    struct dctx *c = arg;
    struct fv_export *x = c->x;
    size_t before = b->len;
    int rc = FV_OK;
    fv_guard_meter_start(c->r.v->guard, &c->r.ctx, &c->r.meter, before); /* G5 */
    if (!c->started) {
        c->started = 1;
        rc = fv_export_put_header(x, b);
    }
    while (rc == FV_OK && b->len < FV_EXPORTS__PIECE && c->k <= x->ndevices && !c->r.meter.hit) {
        for (int i = 0; rc == FV_OK && i < FV_EXPORT_CANARIES; i++)
            if (!c->canaries_done[i] && x->canary_at[i] == c->k) {
                rc = put_canary(c->r.v, x, i, &c->r, b);
                c->canaries_done[i] = 1;
            }
        if (rc == FV_OK && c->k < x->ndevices)
            rc = fv_exports__put_device(&c->r, x->devices[c->k], b);
        c->k++;
    }
    const char *note = fv_guard_meter_note(&c->r.meter);
    if (rc == FV_OK && note[0]) /* G5: stopped at the quota, and the file says so */
        rc = fv_buf_appendf(b, "# %s\n", note);
    c->bytes += b->len - before;
    fv_guard_meter_end(c->r.v->guard, &c->r.ctx, &c->r.meter, b->len);
    if (rc) return rc;
    return c->k > x->ndevices || c->r.meter.hit ? 0 : 1;
}

static void d_free(void *arg)
{
    struct dctx *c = arg;
    if (c == NULL) return;
    const struct fv_api_view *v = c->r.v;
    audit_export(v, &c->r.ctx, "export.download", c->x, "allow", "done", c->r.rows, c->bytes);
    if (v->guard) fv_guard_done_served(v->guard, &c->r.ctx, &c->r.served, c->r.rows, c->bytes);
    fv_guard_served_free(&c->r.served);
    export_free(c->x);
    free(c);
}

struct fv_export *fv_api_export_take(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                                     const char *id, struct fv_http_response *out)
{
    struct fv_export *x = v->exports ? fv_map_get(&v->exports->byid, id, strlen(id)) : NULL;
    if (x == NULL) {
        error_reply(out, 404, "no such export (or it was downloaded already)");
        return NULL;
    }
    if (strcmp(ctx->principal, x->principal) != 0) {
        audit_export(v, ctx, "export.download", x, "deny", "not the requester", 0, 0);
        error_reply(out, 403, "only the principal who asked for this export may download it");
        return NULL;
    }
    if (x->status != EX_APPROVED) {
        error_reply(out, 403, "this export waits for a second principal's approval");
        return NULL;
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
        return NULL;
    }
    /* One download per export: it leaves the table now. */
    fv_map_del(&v->exports->byid, x->id, strlen(x->id));
    x->status = EX_TAKEN;
    ctx->grid_m = v->guard->grid_m;
    snprintf(ctx->action, sizeof ctx->action, "export.download");
    return x;
}

void fv_api_export_get(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *id,
                       struct fv_http_response *out)
{
    struct dctx *c = calloc(1, sizeof *c);
    if (c == NULL) {
        error_reply(out, 500, "out of memory");
        return;
    }
    c->x = fv_api_export_take(v, ctx, id, out);
    if (c->x == NULL) {
        free(c);
        return;
    }
    c->r.v = v;
    c->r.ctx = *ctx;
    c->r.id = c->x->id;
    c->r.fields = c->x->fields;
    c->r.nfields = c->x->nfields;
    c->r.from = c->x->from;
    c->r.to = c->x->to;
    out->status = 200;
    out->content_type = "text/csv";
    out->more = d_more;
    out->free_ctx = d_free;
    out->ctx = c;
}

/* ---- a cluster's api node (server/clusterapi.h Q12) ---------------------------------------- */

uint64_t fv_export_vehicles(const struct fv_export *x)
{
    return x->ndevices;
}

uint64_t fv_export_shard_vehicles(const struct fv_export *x, uint32_t shard)
{
    return shard < x->nshards ? x->shard_n[shard] : 0;
}

uint64_t fv_export_canary_at(const struct fv_export *x, int i)
{
    return x->canary_at[i];
}

int fv_export_put_canary(const struct fv_api_view *v, const struct fv_export *x, int i,
                         struct fv_buf *b)
{
    return put_canary(v, x, i, NULL, b);
}

/* Appends name=value, the value %-encoded (fv_query_param decodes it). */
static int put_param(struct fv_buf *q, const char *name, const char *value)
{
    int rc = fv_buf_appendf(q, "%s%s=", q->len ? "&" : "", name);
    for (const unsigned char *p = (const unsigned char *)value; rc == FV_OK && *p; p++)
        rc = isalnum(*p) || strchr("-._~,", *p) ? fv_buf_append(q, p, 1)
                                                : fv_buf_appendf(q, "%%%02X", *p);
    return rc;
}

int fv_export_owner_query(const struct fv_export *x, uint64_t lo, uint64_t hi, struct fv_buf *q)
{
    char num[32], sig[1024] = "";
    size_t n = 0;
    for (size_t j = 0; j < x->nfields && n < sizeof sig - 16; j++)
        n += (size_t)snprintf(sig + n, sizeof sig - n, "%s%u", j ? "," : "", x->fields[j]);
    fv_buf_reset(q);
    int rc = put_param(q, "export", x->id);
    if (rc == FV_OK) rc = put_param(q, "purpose", x->purpose);
    if (rc == FV_OK && x->ticket[0]) rc = put_param(q, "ticket", x->ticket);
    if (rc == FV_OK) rc = put_param(q, "signals", sig);
    if (rc == FV_OK && x->from != INT64_MIN)
        rc = fv_buf_appendf(q, "&from=%lld", (long long)x->from);
    if (rc == FV_OK && x->to != INT64_MAX) rc = fv_buf_appendf(q, "&to=%lld", (long long)x->to);
    if (rc == FV_OK && x->names && x->names[0]) rc = put_param(q, "devices", x->names);
    if (rc == FV_OK && x->approver[0]) rc = put_param(q, "approver", x->approver);
    if (rc == FV_OK && x->approver[0]) rc = put_param(q, "approver_role", x->approver_role);
    snprintf(num, sizeof num, "%llu", (unsigned long long)x->ndevices);
    if (rc == FV_OK) rc = put_param(q, "subjects", num);
    if (rc == FV_OK)
        rc = fv_buf_appendf(q, "&lo=%llu&hi=%llu", (unsigned long long)lo, (unsigned long long)hi);
    if (rc == FV_OK) rc = fv_buf_append(q, "", 1); /* NUL-terminated */
    if (rc == FV_OK) q->len--;
    return rc;
}

void fv_export_finish(const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                      struct fv_export *x, const char *result, const char *reason, uint64_t rows,
                      uint64_t bytes)
{
    audit_export(v, ctx, "export.download", x, result, reason, rows, bytes);
    export_free(x);
}
