/* exports_rows.c - the rows of a bulk export (exports.h): a vehicle's rows as the download
 * shows them (a single node's download, exports.c), and a cluster's shard owner's side
 * (fv_api_export_count, fv_api_export_rows: server/clusterapi.h Q12). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/exports.h"
#include "api/exports_int.h"
#include "api/query.h"
#include "crypto/keys.h"
#include "privacy/guard.h"
#include "privacy/subjects.h"
#include "store/store.h"
#include "util/err.h"
#include "util/log.h"
#include "util/urlquery.h"
#include "wire/signals.h"

int fv_exports__row_room(struct fv_exports__rows *r)
{
    return fv_guard_meter_room(&r->meter);
}

int fv_exports__row_done(struct fv_exports__rows *r, struct fv_buf *b, size_t mark)
{
    if (!fv_guard_meter_row(&r->meter, b->len)) {
        b->len = mark;
        return 0;
    }
    r->rows++;
    return 1;
}

int fv_exports__parse_fields(const char *s, uint32_t *f, size_t *n)
{
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        long v = fv_signal_lookup(t);
        if (v < 0 || *n == FV_EXPORTS__FIELDS_MAX) return FV_EINVAL;
        f[(*n)++] = (uint32_t)v;
    }
    return *n ? FV_OK : FV_EINVAL;
}

int fv_exports__put_device(struct fv_exports__rows *c, const char *device, struct fv_buf *b)
{
    const struct fv_api_view *v = c->v;
    char subject[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1], err[256], shown[65];
    const unsigned char *dek;
    if (fv_subject_current(v->keys, device, subject, NULL) != FV_OK)
        snprintf(subject, sizeof subject, "%s", device);
    if (fv_keystore_dek(v->keys, subject, 0, &dek, pseudo) != FV_OK) return FV_OK; /* erased */
    if (fv_guard_load_consent(v->guard, &c->ctx, device, c->from, c->to) == 0) return FV_OK;
    fv_guard_load_zones(v->guard, &c->ctx, device);
    if (fv_api_any_place(c->fields, c->nfields)) /* G8, as every output */
        fv_api_load_withheld(v, &c->ctx, device, c->from, c->to);
    fv_guard_show_id(v->guard, &c->ctx, device, shown);
    struct fv_store_cursor *cur;
    int rc = fv_store_query(v->store, pseudo, dek, c->from, c->to, c->fields, c->nfields, 0, &cur,
                            err, sizeof err);
    if (rc) return rc;
    struct fv_store_chunk ch;
    int n;
    uint64_t rows0 = c->rows;
    while ((n = fv_store_next(cur, &ch, err, sizeof err)) == 1) {
        for (size_t i = 0; rc == FV_OK && i < ch.n; i++) {
            if (!fv_guard_in_consent(&c->ctx, ch.t[i])) continue;
            if (!fv_exports__row_room(c)) break;
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
            if (rc == FV_OK && !fv_exports__row_done(c, b, mark)) break;
        }
        if (rc || c->meter.hit) break;
    }
    if (n < 0) {
        fv_error("export %s: %s", c->id, err);
        rc = n;
    }
    fv_store_cursor_free(cur);
    fv_guard_ctx_clear(&c->ctx);
    if (c->rows > rows0) fv_guard_served_add_pseudonym(&c->served, pseudo); /* the period read */
    return rc;
}

/* ---- a cluster's shard owner (server/clusterapi.h Q12) ------------------------------------ */

struct ranked {
    const struct fv_device *d;
    uint64_t first_ms;
};

static int by_first_record(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->first_ms != y->first_ms) return x->first_ms < y->first_ms ? -1 : 1;
    return strcmp(x->d->id, y->d->id);
}

/* The vehicles of this owner's shard an export covers, in the order the shards' segments
 * number them: by their first record, then id (a vehicle first heard of after the export
 * was made comes after those counted then). names: the devices= list (as ctx's role names
 * devices; held[i] set for each name held here), or "" for every vehicle. *out: malloc'd. */
static int shard_vehicles(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *names,
                          struct ranked **out, size_t *n, json_t *held)
{
    *out = NULL;
    *n = 0;
    struct fv_device **all = NULL;
    size_t nall = 0, cap = 0;
    struct ranked *r = NULL;
    if (names[0] == '\0') {
        if (fv_fleet_list(v->fleet, &all, &nall) != FV_OK) return FV_ENOMEM;
        cap = nall;
    } else {
        cap = 1;
        for (const char *p = names; *p; p++)
            cap += *p == ',';
    }
    r = calloc(cap ? cap : 1, sizeof *r);
    if (r == NULL) {
        free(all);
        return FV_ENOMEM;
    }
    if (names[0] == '\0') {
        for (size_t i = 0; i < nall; i++)
            if (fv_api_kept(v, all[i])) r[(*n)++].d = all[i];
    } else {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", names);
        size_t i = 0;
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && *n < cap;
             t = strtok_r(NULL, ",", &save), i++) {
            const struct fv_device *d = fv_api_find_device(v, ctx, t);
            if (d == NULL || !fv_api_kept(v, d)) continue;
            r[(*n)++].d = d;
            if (held) json_array_append_new(held, json_integer((json_int_t)i));
        }
    }
    free(all);
    fv_fleet_lock(v->fleet); /* F1: the times are the ingest loop's */
    for (size_t i = 0; i < *n; i++)
        r[i].first_ms = r[i].d->first_ms;
    fv_fleet_unlock(v->fleet);
    qsort(r, *n, sizeof *r, by_first_record);
    *out = r;
    return FV_OK;
}

static void owner_ctx(const struct fv_api_view *v, const char *principal, const char *role,
                      struct fv_guard_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    snprintf(ctx->principal, sizeof ctx->principal, "%s", principal);
    snprintf(ctx->role, sizeof ctx->role, "%s", role);
    fv_query_param(v->query, "purpose", ctx->purpose, sizeof ctx->purpose);
    fv_query_param(v->query, "ticket", ctx->ticket, sizeof ctx->ticket);
}

void fv_api_export_count(const struct fv_api_view *v, const char *principal, const char *role,
                         struct fv_http_response *out)
{
    struct fv_guard_ctx ctx;
    owner_ctx(v, principal, role, &ctx);
    char names[4096] = "";
    fv_query_param(v->query, "devices", names, sizeof names);
    json_t *held = names[0] ? json_array() : NULL;
    struct ranked *r;
    size_t n;
    if ((names[0] && held == NULL) || shard_vehicles(v, &ctx, names, &r, &n, held) != FV_OK) {
        json_decref(held);
        fv_api_respond_error(out, 500, "out of memory");
        return;
    }
    free(r);
    json_t *j = json_pack("{s:I}", "vehicles", (json_int_t)n);
    if (j && held && json_object_set_new(j, "held", held) != 0) {
        json_decref(j); /* held is freed by the failed set */
        j = NULL;
    } else if (j == NULL) {
        json_decref(held);
    }
    if (j)
        fv_api_respond_json(out, 200, j);
    else
        fv_api_respond_error(out, 500, "out of memory");
}

/* The rows of one segment of the shard's vehicles, produced piece by piece. */
struct seg {
    struct fv_exports__rows r;
    char id[33], approver[65];
    uint32_t fields[FV_EXPORTS__FIELDS_MAX];
    struct ranked *list;
    size_t n, k;
    uint64_t lo, hi, bytes;
};

static void audit_seg(const struct seg *s, const char *result, const char *reason)
{
    struct fv_guard *g = s->r.v->guard;
    if (g == NULL || g->audit == NULL) return;
    char extra[300];
    snprintf(extra, sizeof extra,
             "{\"export\":\"%s\",\"approver\":\"%s\",\"segment\":[%llu,%llu],\"decided_by\":"
             "\"this shard's owner\"}",
             s->id, s->approver, (unsigned long long)s->lo, (unsigned long long)s->hi);
    struct fv_audit_event ev = {.kind = "export",
                                .action = "export.download",
                                .principal = s->r.ctx.principal,
                                .role = s->r.ctx.role,
                                .purpose = s->r.ctx.purpose,
                                .ticket = s->r.ctx.ticket[0] ? s->r.ctx.ticket : NULL,
                                .rows = s->r.rows,
                                .bytes = s->bytes,
                                .result = result,
                                .reason = reason,
                                .extra_json = extra};
    if (fv_audit_append(g->audit, &ev, NULL) != FV_OK)
        fv_error("audit: %s", fv_audit_last_error(g->audit));
}

static int seg_more(void *arg, struct fv_buf *b)
{
    struct seg *s = arg;
    size_t before = b->len;
    int rc = FV_OK;
    fv_guard_meter_start(s->r.v->guard, &s->r.ctx, &s->r.meter, before); /* G5 */
    while (rc == FV_OK && b->len < FV_EXPORTS__PIECE && s->k < s->n && !s->r.meter.hit)
        rc = fv_exports__put_device(&s->r, s->list[s->k++].d->id, b);
    const char *note = fv_guard_meter_note(&s->r.meter);
    if (rc == FV_OK && note[0]) /* G5: stopped at the quota; the api node stops there too */
        rc = fv_buf_appendf(b, "# %s\n", note);
    s->bytes += b->len - before;
    fv_guard_meter_end(s->r.v->guard, &s->r.ctx, &s->r.meter, b->len);
    if (rc) return rc;
    return s->k < s->n && !s->r.meter.hit ? 1 : 0;
}

static void seg_free(void *arg)
{
    struct seg *s = arg;
    if (s == NULL) return;
    audit_seg(s, "allow",
              s->k < s->n && !s->r.meter.hit ? "ended before its last vehicle" : "done");
    if (s->r.v->guard)
        fv_guard_done_served(s->r.v->guard, &s->r.ctx, &s->r.served, s->r.rows, s->bytes);
    fv_guard_served_free(&s->r.served);
    free(s->list);
    free(s);
}

void fv_api_export_rows(const struct fv_api_view *v, const char *principal, const char *role,
                        struct fv_http_response *out)
{
    char sig[2048] = "", num[64], names[4096] = "", why[400], arole[32] = "";
    if (v->guard == NULL) {
        fv_api_respond_error(out, 503, "access control is not set up");
        return;
    }
    struct seg *s = calloc(1, sizeof *s);
    if (s == NULL) {
        fv_api_respond_error(out, 500, "out of memory");
        return;
    }
    s->r.v = v;
    s->r.id = s->id;
    s->r.fields = s->fields;
    s->r.from = INT64_MIN;
    s->r.to = INT64_MAX;
    owner_ctx(v, principal, role, &s->r.ctx);
    uint64_t subjects = 1;
    int bad = !fv_query_param(v->query, "export", s->id, sizeof s->id) || strlen(s->id) != 32 ||
              !fv_query_param(v->query, "signals", sig, sizeof sig) ||
              fv_exports__parse_fields(sig, s->fields, &s->r.nfields) != FV_OK;
    if (!bad && fv_query_param(v->query, "from", num, sizeof num))
        bad = fv_parse_time_ms(num, &s->r.from) != FV_OK;
    if (!bad && fv_query_param(v->query, "to", num, sizeof num))
        bad = fv_parse_time_ms(num, &s->r.to) != FV_OK;
    if (!bad && fv_query_param(v->query, "subjects", num, sizeof num))
        subjects = strtoull(num, NULL, 10);
    s->hi = UINT64_MAX;
    if (!bad && fv_query_param(v->query, "lo", num, sizeof num)) s->lo = strtoull(num, NULL, 10);
    if (!bad && fv_query_param(v->query, "hi", num, sizeof num)) s->hi = strtoull(num, NULL, 10);
    fv_query_param(v->query, "devices", names, sizeof names);
    fv_query_param(v->query, "approver", s->approver, sizeof s->approver);
    fv_query_param(v->query, "approver_role", arole, sizeof arole);
    if (bad || s->lo > s->hi) {
        free(s);
        fv_api_respond_error(out, 400, "a malformed export segment");
        return;
    }
    /* Decided again here, as the single node's download decides (exports.c): the role, the
     * purpose, the approval for this many subjects (the api node's count). */
    uint32_t classes = 0;
    for (size_t j = 0; j < s->r.nfields; j++)
        classes |= fv_api_signal_class(v, s->fields[j]);
    struct fv_access_request req = {.principal = s->r.ctx.principal,
                                    .role = s->r.ctx.role,
                                    .action = FV_ACTION_READ,
                                    .purpose = s->r.ctx.purpose,
                                    .ticket = s->r.ctx.ticket,
                                    .classes = classes,
                                    .subjects = subjects ? subjects : 1};
    if (s->approver[0]) {
        req.approved_by = s->approver;
        req.approver_role = arole;
        snprintf(s->r.ctx.approved_by, sizeof s->r.ctx.approved_by, "%s", s->approver);
    }
    fv_policy_decide(v->guard->policy, &req, &s->r.ctx.d);
    snprintf(why, sizeof why, "%s", s->r.ctx.d.reason);
    if (!s->r.ctx.d.allow) {
        audit_seg(s, "deny", why);
        free(s);
        fv_api_respond_error(out, 403, why);
        return;
    }
    s->r.ctx.grid_m = v->guard->grid_m;
    snprintf(s->r.ctx.action, sizeof s->r.ctx.action, "export.download");
    out->status = 200;
    out->content_type = "text/csv";
    /* G5: the api node counted the subjects; a quota spent since ends the file here */
    if (fv_guard_quota_take(v->guard, &s->r.ctx, 0, why, sizeof why) != FV_OK) {
        audit_seg(s, "deny", why);
        free(s);
        fv_buf_reset(&out->body);
        fv_buf_appendf(&out->body, "# %s\n", why);
        return;
    }
    struct fv_guard_ctx lookup = s->r.ctx;
    if (shard_vehicles(v, &lookup, names, &s->list, &s->n, NULL) != FV_OK) {
        free(s);
        fv_api_respond_error(out, 500, "out of memory");
        return;
    }
    s->k = s->lo < s->n ? (size_t)s->lo : s->n;
    if (s->hi < s->n) s->n = (size_t)s->hi; /* the count the export was made with (Q12) */
    out->more = seg_more;
    out->free_ctx = seg_free;
    out->ctx = s;
}
