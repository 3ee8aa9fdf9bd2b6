/*
 * promread.c - the Prometheus API's reads (promapi_int.h): what an expression reads, the
 * privacy decision, reading samples from the store as the principal for the evaluator
 * (promeval.h), the devices' names, and a shard's owner's raw answer to an api node
 * (docs/cluster.md, "Prometheus through an api node"; promraw.h).
 *
 * Threading: the API thread only (promapi.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/promapi.h"
#include "api/promapi_int.h"
#include "api/promeval.h"
#include "api/promql.h"
#include "api/promraw.h"
#include "crypto/keys.h"
#include "privacy/guard.h"
#include "privacy/subjects.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "wire/places.h"
#include "wire/signals.h"

/* ---- what the expression reads ---------------------------------------------------------- */

/* Only the signal's matchers, or only the device's (promql.h: NULL is not checked). */
static int sig_matches(const struct fv_pq_node *sel, const char *name)
{
    return fv_pq_matches(sel, name, NULL);
}

static int dev_matches(const struct fv_pq_node *sel, const char *dev)
{
    return fv_pq_matches(sel, NULL, dev);
}

static void plan_add(struct plan *p, uint32_t f)
{
    for (size_t i = 0; i < p->nsig; i++)
        if (p->sig[i] == f) return;
    if (p->nsig < MAX_SIGNALS) p->sig[p->nsig++] = f;
}

/* The signals a selector may read: named ones of the table, or the one it names exactly
 * (which may be beyond the table: a site signal). A place signal named exactly: refused. */
static int plan_sel(struct plan *p, const struct fv_pq_node *sel)
{
    const char *eq = fv_pq_eq_value(sel, FV_PQ_L_SIGNAL);
    if (eq) {
        long f = fv_signal_lookup(eq);
        if (f < 0) return FV_OK; /* selects nothing */
        if (fv_signal_place((unsigned)f) != FV_PLACE_NONE) {
            snprintf(p->err, sizeof p->err,
                     "signal %.64s reveals a place: location signals are not served by the "
                     "Prometheus API (use /api/v1/query)",
                     eq);
            return FV_EINVAL;
        }
        if (sig_matches(sel, eq)) plan_add(p, (uint32_t)f);
        return FV_OK;
    }
    for (unsigned f = 0; f < fv_signal_count; f++) {
        const char *name = fv_signal_name(f);
        if (name && fv_signal_place(f) == FV_PLACE_NONE && sig_matches(sel, name)) plan_add(p, f);
    }
    return FV_OK;
}

int fv_prom__plan(struct plan *p, const struct fv_pq_node *n)
{
    if (n == NULL) return FV_OK;
    if (n->kind == FV_PQ_SEL) {
        int64_t w = n->range_ms ? n->range_ms : FV_PE_LOOKBACK_MS;
        if (w > p->window) p->window = w;
        const char *d = fv_pq_eq_value(n, FV_PQ_L_DEVICE);
        if (p->nsel++ == 0) {
            p->device = d;
            p->all_one = d != NULL;
        } else if (d == NULL || p->device == NULL || strcmp(d, p->device) != 0) {
            p->all_one = 0;
        }
        return plan_sel(p, n);
    }
    int rc = fv_prom__plan(p, n->arg);
    if (rc == FV_OK) rc = fv_prom__plan(p, n->lhs);
    if (rc == FV_OK) rc = fv_prom__plan(p, n->rhs);
    return rc;
}

/* ---- reading samples -------------------------------------------------------------------- */

static int to_double(const struct fv_value *x, double *d)
{
    switch (x->kind) {
    case FV_VK_DOUBLE:
        *d = x->u.d;
        return 1;
    case FV_VK_INT:
    case FV_VK_ENUM:
    case FV_VK_BOOL:
        *d = (double)x->u.i;
        return 1;
    default:
        return 0;
    }
}

/* One device's series of sel into *raw (appended). */
static int read_device(struct reader *rd, const struct fv_device *d, const struct fv_pq_node *sel,
                       int64_t from, int64_t to, struct fv_pe_raw **raw, size_t *nraw, size_t *cap,
                       char *err, size_t errlen)
{
    const struct fv_api_view *v = rd->v;
    char shown[65];
    fv_guard_show_id(v->guard, rd->ctx, d->id, shown);
    if (!dev_matches(sel, shown)) return FV_OK;
    uint32_t f[MAX_SIGNALS];
    size_t nf = 0;
    for (size_t i = 0; i < rd->plan->nsig; i++) {
        char name[32];
        fv_signal_label(rd->plan->sig[i], name, sizeof name);
        if (sig_matches(sel, name)) f[nf++] = rd->plan->sig[i];
    }
    if (nf == 0) return FV_OK;
    char subject[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1];
    const unsigned char *dek;
    if (fv_subject_current(v->keys, d->id, subject, NULL) != FV_OK)
        snprintf(subject, sizeof subject, "%s", d->id);
    if (fv_keystore_dek(v->keys, subject, 0, &dek, pseudo) != FV_OK) return FV_OK;    /* erased */
    if (fv_guard_load_consent(v->guard, rd->ctx, d->id, from, to) == 0) return FV_OK; /* G4 */
    fv_guard_load_zones(v->guard, rd->ctx, d->id);
    size_t base = *nraw;
    if (*cap - *nraw < nf) {
        size_t nc = (*nraw + nf) * 2;
        struct fv_pe_raw *m = realloc(*raw, nc * sizeof *m);
        if (m == NULL) return FV_ENOMEM;
        *raw = m;
        *cap = nc;
    }
    memset(*raw + base, 0, nf * sizeof **raw);
    for (size_t j = 0; j < nf; j++) {
        struct fv_pe_labels *l = &(*raw)[base + j].l;
        fv_signal_label(f[j], l->name, sizeof l->name);
        snprintf(l->signal, sizeof l->signal, "%s", l->name);
        snprintf(l->device, sizeof l->device, "%s", shown);
    }
    *nraw += nf;
    struct fv_store_cursor *c = NULL;
    char serr[256];
    int rc = fv_store_query(v->store, pseudo, dek, from, to, f, nf, 0, &c, serr, sizeof serr);
    struct fv_store_chunk ch;
    int got = 0;
    while (rc == FV_OK && (got = fv_store_next(c, &ch, serr, sizeof serr)) == 1) {
        for (size_t i = 0; rc == FV_OK && i < ch.n; i++) {
            if (!fv_guard_in_consent(rd->ctx, ch.t[i])) continue; /* G4 */
            int any = 0;
            for (size_t k = 0; rc == FV_OK && k < ch.ncols; k++) {
                struct fv_value tmp;
                const struct fv_value *x =
                    fv_guard_oblige(rd->ctx, ch.field[k], ch.t[i], &ch.col[k][i], &tmp);
                double dv;
                if (!to_double(x, &dv)) continue;
                size_t j = 0;
                while (j < nf && f[j] != ch.field[k])
                    j++;
                if (j == nf) continue;
                if (++rd->samples > FV_PROM_MAX_SAMPLES) {
                    snprintf(err, errlen,
                             "the query reads more than %d samples; ask for a shorter range or "
                             "fewer series",
                             FV_PROM_MAX_SAMPLES);
                    rc = FV_ELIMIT;
                    break;
                }
                rc = fv_pe_raw_add(&(*raw)[base + j], ch.t[i], dv);
                any = 1;
            }
            if (any) rd->rows++;
        }
    }
    if (rc == FV_OK && got < 0) {
        snprintf(err, errlen, "reading the store failed");
        rc = got;
    }
    if (rc == FV_OK) {
        int served = 0;
        for (size_t j = 0; j < nf; j++)
            served |= (*raw)[base + j].n > 0;
        if (served) fv_guard_served_add_pseudonym(&rd->served, pseudo); /* G12 */
    }
    fv_store_cursor_free(c);
    fv_guard_ctx_clear(rd->ctx);
    return rc;
}

int fv_prom__fetch(void *arg, const struct fv_pq_node *sel, int64_t from, int64_t to,
                   struct fv_pe_raw **out, size_t *n, char *err, size_t errlen)
{
    struct reader *rd = arg;
    struct fv_pe_raw *raw = NULL;
    size_t nraw = 0, cap = 0;
    int rc = FV_OK;
    if (rd->one) {
        rc = read_device(rd, rd->one, sel, from, to, &raw, &nraw, &cap, err, errlen);
    } else {
        struct fv_device **all = NULL;
        size_t ndev = 0;
        if (fv_fleet_list(rd->v->fleet, &all, &ndev) != FV_OK) return FV_ENOMEM;
        for (size_t i = 0; rc == FV_OK && i < ndev; i++)
            if (fv_api_in_scope(rd->ctx, all[i]) && fv_api_kept(rd->v, all[i]))
                rc = read_device(rd, all[i], sel, from, to, &raw, &nraw, &cap, err, errlen);
        free(all);
    }
    /* series without a sample do not exist for Prometheus */
    size_t keep = 0;
    for (size_t i = 0; i < nraw; i++) {
        if (raw[i].n == 0) {
            free(raw[i].t);
            free(raw[i].v);
            continue;
        }
        raw[keep++] = raw[i];
    }
    nraw = keep;
    if (rc) {
        for (size_t i = 0; i < nraw; i++) {
            free(raw[i].t);
            free(raw[i].v);
        }
        free(raw);
        return rc;
    }
    *out = raw;
    *n = nraw;
    return FV_OK;
}

/* The devices a fleet read is decided on: the fleet's, or - a shard's owner (api.h keep) -
 * those of its shard (docs/cluster.md rule 5). */
static size_t fleet_size(const struct fv_api_view *v)
{
    if (v->keep == NULL) return fv_fleet_count(v->fleet);
    struct fv_device **all = NULL;
    size_t n = 0, count = 0;
    if (fv_fleet_list(v->fleet, &all, &n) != FV_OK) return fv_fleet_count(v->fleet);
    for (size_t i = 0; i < n; i++)
        count += fv_api_kept(v, all[i]) != 0;
    free(all);
    return count;
}

/* The decision: what /api/v1/query (one device) or /api/v1/fleet would decide. FV_OK, or
 * an error answered in out. */
int fv_prom__decide(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const struct plan *p,
                    struct reader *rd, const char *action, int64_t from, int64_t to,
                    struct fv_http_response *out)
{
    const char *sn[MAX_SIGNALS];
    char names[MAX_SIGNALS][32], msg[400];
    uint32_t classes = 0;
    for (size_t j = 0; j < p->nsig; j++) {
        fv_signal_label(p->sig[j], names[j], sizeof names[j]);
        sn[j] = names[j];
        classes |= fv_api_signal_class(v, p->sig[j]);
    }
    if (classes == 0) classes = fv_api_signal_class(v, 0);
    const char *dev = p->all_one ? p->device : NULL;
    int rc;
    if (dev) {
        rd->one = fv_api_find_device(v, ctx, dev); /* G11: decided whatever dev names */
        const char *subj[1] = {rd->one ? rd->one->id : dev};
        rc = fv_guard_read(v->guard, ctx, v->query, action, classes, subj, 1, 0, sn, p->nsig, from,
                           to, msg, sizeof msg);
        if (rc == FV_OK && rd->one == NULL) rc = FV_ENOENT;
    } else {
        size_t nfleet = fleet_size(v);
        ctx->energy_sites = 1; /* energy-site roles: other devices are left out */
        rc = fv_guard_read(v->guard, ctx, v->query, action, classes, NULL, nfleet ? nfleet : 1, 0,
                           sn, p->nsig, from, to, msg, sizeof msg);
    }
    if (rc == FV_ENOENT) {
        snprintf(msg, sizeof msg, "unknown device '%.64s'", dev);
        fv_prom__error(out, 404, "not_found", msg);
    } else if (rc) {
        fv_prom__error(out, rc == FV_EIO ? 503 : 403, rc == FV_EIO ? "unavailable" : "forbidden",
                       msg);
    }
    return rc;
}

/* The array a as a raw series encoding (promraw.h: one selector, a series per device named),
 * in out's body. */
static int devices_raw(const struct fv_api_view *v, json_t *a, struct fv_http_response *out)
{
    size_t n = json_array_size(a);
    struct fv_pe_raw *raw = n ? calloc(n, sizeof *raw) : NULL;
    if (n && raw == NULL) return FV_ENOMEM;
    for (size_t i = 0; i < n; i++)
        snprintf(raw[i].l.device, sizeof raw[i].l.device, "%s",
                 json_string_value(json_array_get(a, i)));
    fv_buf_reset(&out->body);
    int rc = fv_promraw_begin(&out->body, fleet_size(v), 1);
    if (rc == FV_OK) rc = fv_promraw_add_sel(&out->body, raw, n);
    free(raw);
    out->status = 200;
    out->content_type = "application/octet-stream";
    return rc;
}

/* raw: a shard's owner's answer (promraw.h), else the JSON one. */
void fv_prom__device_names(const struct fv_api_view *v, struct fv_guard_ctx *ctx, int raw,
                           struct fv_http_response *out)
{
    char msg[300];
    size_t nfleet = fleet_size(v);
    ctx->energy_sites = 1;
    int rc = fv_guard_read(v->guard, ctx, v->query, "prom.devices", fv_api_signal_class(v, 0), NULL,
                           nfleet ? nfleet : 1, 0, NULL, 0, INT64_MIN, INT64_MAX, msg, sizeof msg);
    if (rc) {
        fv_prom__error(out, rc == FV_EIO ? 503 : 403, rc == FV_EIO ? "unavailable" : "forbidden",
                       msg);
        return;
    }
    struct fv_guard_served served = {0};
    struct fv_device **all = NULL;
    size_t ndev = 0;
    json_t *a = json_array();
    if (a == NULL || fv_fleet_list(v->fleet, &all, &ndev) != FV_OK) ndev = 0;
    for (size_t i = 0; a && i < ndev; i++) {
        const struct fv_device *d = all[i];
        const unsigned char *dek;
        char subject[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1], shown[65];
        if (!fv_api_in_scope(ctx, d) || !fv_api_kept(v, d)) continue;
        if (fv_subject_current(v->keys, d->id, subject, NULL) != FV_OK)
            snprintf(subject, sizeof subject, "%s", d->id);
        if (fv_keystore_dek(v->keys, subject, 0, &dek, pseudo) != FV_OK) continue;     /* erased */
        if (!fv_guard_consented(v->guard, ctx, d->id, (int64_t)fv_now_ms())) continue; /* G4 */
        fv_guard_show_id(v->guard, ctx, d->id, shown);
        json_array_append_new(a, json_string(shown));
        fv_guard_served_add_pseudonym(&served, pseudo);
    }
    free(all);
    if (raw && a) {
        if (devices_raw(v, a, out)) fv_prom__error(out, 500, "internal", "out of memory");
        json_decref(a);
    } else {
        fv_prom__data(out, a);
    }
    if (out->status == 200)
        fv_prom__quota_send(v, ctx, served.n, &served, out);
    else
        fv_guard_done_served(v->guard, ctx, &served, 0, 0);
    fv_guard_served_free(&served);
}

/* ---- a shard's owner (docs/cluster.md, "Prometheus through an api node") ----------------- */

void fv_api_prometheus_shard(const struct fv_api_view *v, const char *path, const char *principal,
                             const char *role, int *here, struct fv_http_response *out)
{
    *here = 1;
    out->www_authenticate = 0;
    enum fv_prom_kind kind = fv_prom_kind(path);
    if (kind == FV_PROM_NONE || v->store == NULL) {
        fv_prom__error(out, 404, "not_found", "no such endpoint for a shard's owner");
        return;
    }
    if (v->guard == NULL) {
        fv_prom__error(out, 503, "unavailable", "access control is not set up");
        return;
    }
    struct fv_guard_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    snprintf(ctx.principal, sizeof ctx.principal, "%s", principal);
    snprintf(ctx.role, sizeof ctx.role, "%s", role);
    if (kind == FV_PROM_DEVICES) {
        fv_prom__device_names(v, &ctx, 1, out);
        return;
    }
    struct fv_prom_req r;
    if (fv_prom_req_parse(v->query, kind, &r, out)) return;
    struct plan *p = calloc(1, sizeof *p);
    struct reader rd = {.v = v, .ctx = &ctx, .plan = p};
    const struct fv_pq_node **sels = NULL;
    size_t nsel = 0;
    struct fv_buf body = {0};
    if (p == NULL || fv_prom__plan(p, r.e) || fv_prom_selectors(r.e, &sels, &nsel)) {
        fv_prom__error(out, 500, "internal", "out of memory");
        goto done;
    }
    if (p->all_one) { /* Q2: the shard that holds the device answers, the others decide nothing */
        struct fv_guard_ctx probe = ctx;
        const struct fv_device *d = fv_api_find_device(v, &probe, p->device);
        if (d == NULL || !fv_api_kept(v, d)) {
            *here = 0;
            fv_prom__error(out, 404, "not_found", "not held by this shard");
            goto done;
        }
    }
    int series = kind == FV_PROM_SERIES;
    int64_t from = fv_prom__from(p, &r, kind);
    if (fv_prom__decide(v, &ctx, p, &rd, series ? "prom.series" : "prom.query", from, r.q.end, out))
        goto done;
    /* Each selector's series over the span the evaluator will ask (promeval.c eval_sel). */
    char msg[400] = "";
    size_t nseries = 0;
    int rc = fv_promraw_begin(&body, p->all_one ? 1 : fleet_size(v), (uint32_t)nsel);
    for (size_t i = 0; rc == FV_OK && i < nsel; i++) {
        int64_t w = sels[i]->range_ms ? sels[i]->range_ms : FV_PE_LOOKBACK_MS;
        int64_t sfrom = series                      ? r.q.start
                        : r.q.start > INT64_MIN + w ? r.q.start - w + 1
                                                    : INT64_MIN;
        struct fv_pe_raw *raw = NULL;
        size_t n = 0;
        rc = fv_prom__fetch(&rd, sels[i], sfrom, r.q.end, &raw, &n, msg, sizeof msg);
        if (rc == FV_OK) rc = fv_promraw_add_sel(&body, raw, n);
        nseries += n;
        for (size_t k = 0; k < n; k++) {
            free(raw[k].t);
            free(raw[k].v);
        }
        free(raw);
    }
    if (rc == FV_OK) {
        fv_buf_free(&out->body);
        out->body = body;
        body = (struct fv_buf){0};
        out->status = 200;
        out->content_type = "application/octet-stream";
        fv_prom__quota_send(v, &ctx, series ? nseries : rd.rows, &rd.served, out); /* G5, G12 */
    } else {
        if (rc == FV_ELIMIT)
            fv_prom__error(out, 422, "execution", msg);
        else
            fv_prom__error(out, 500, "internal",
                           rc == FV_ENOMEM || !msg[0] ? "out of memory" : msg);
        fv_guard_done_served(v->guard, &ctx, &rd.served, 0, 0);
    }
done:
    fv_buf_free(&body);
    free(sels);
    fv_guard_served_free(&rd.served);
    free(p);
    fv_prom_req_free(&r);
}
