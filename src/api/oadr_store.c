/* oadr_store.c - the OpenADR VEN's reads of stored telemetry (oadr_store.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/api.h"
#include "api/oadr_store.h"
#include "energy/dispatch.h"
#include "energy/vpp.h"
#include "privacy/audit.h"
#include "privacy/guard.h"
#include "store/store.h"
#include "util/err.h"
#include "util/urlquery.h"
#include "wire/site.h"

struct fv_oadr_store {
    struct fv_api_view view; /* store, keys, vpp: what fv_api_site_query and the forecast use */
};

int fv_oadr_store_new(struct fv_store *store, struct fv_keystore *keys, struct fv_vpp *vpp,
                      struct fv_oadr_store **out)
{
    *out = calloc(1, sizeof **out);
    if (*out == NULL) return FV_ENOMEM;
    (*out)->view.store = store;
    (*out)->view.keys = keys;
    (*out)->view.vpp = vpp;
    return FV_OK;
}

void fv_oadr_store_free(struct fv_oadr_store *s)
{
    free(s);
}

/* The fields of a site sample a history interval needs, in the query's column order. */
enum { F_BATTERY, F_ENERGY, F_CAPACITY, F_RESERVE, F_INVERTER, F_EXPORT, NF };
static const uint32_t fields[NF] = {FV_SIG_SITE_BATTERY_KW,   FV_SIG_SITE_ENERGY_KWH,
                                    FV_SIG_SITE_CAPACITY_KWH, FV_SIG_SITE_RESERVE_PCT,
                                    FV_SIG_SITE_INVERTER_KW,  FV_SIG_SITE_EXPORT_LIMIT_KW};

/* One site's part of an interval: its discharge samples and its last state. */
struct acc {
    double discharge;
    size_t n;
    double last[NF];
    int have[NF];
};

static void add_site(const struct acc *a, struct fv_ven_hist *h)
{
    if (a->n == 0) return; /* no sample in the interval: the site counts 0 */
    h->online = 1;
    h->delivered_kw += a->discharge / (double)a->n;
    if (!a->have[F_ENERGY]) return;
    double e = a->last[F_ENERGY];
    double cap = a->have[F_CAPACITY] ? a->last[F_CAPACITY] : 0;
    double res = a->have[F_RESERVE] ? a->last[F_RESERVE] : 100;
    h->stored_kwh += e;
    double avail = e - res / 100.0 * cap;
    if (avail > 0) h->available_kwh += avail;
    struct fv_vpp_site x = {.online = 1,
                            .inverter_kw = a->have[F_INVERTER] ? a->last[F_INVERTER] : 0,
                            .export_limit_kw = a->have[F_EXPORT] ? a->last[F_EXPORT] : 0,
                            .energy_kwh = e,
                            .reserve_pct = res,
                            .capacity_kwh = cap};
    h->deliverable_kw += fv_vpp_deliverable_kw(&x, 1.0);
}

/* Reads one site's samples over the window into the intervals: 1, 0 when there is nothing to
 * read (fv_api_site_query's FV_ENOENT), or an error. */
static int read_site(const struct fv_api_view *v, const char *site, int64_t start, int64_t step,
                     size_t n, struct fv_ven_hist *out, struct acc *acc, char *err, size_t errlen)
{
    memset(acc, 0, n * sizeof *acc);
    struct fv_store_cursor *c;
    int rc = fv_api_site_query(v, site, start, start + (int64_t)n * step - 1, fields, NF, &c, err,
                               errlen);
    if (rc == FV_ENOENT) return 0; /* never sent anything, or another shard's */
    if (rc) return rc;
    struct fv_store_chunk ch;
    while ((rc = fv_store_next(c, &ch, err, errlen)) == 1)
        for (size_t i = 0; i < ch.n; i++) {
            if (ch.t[i] < start) continue;
            size_t k = (size_t)((ch.t[i] - start) / step);
            if (k >= n) continue;
            struct acc *a = &acc[k];
            int row = 0;
            for (size_t j = 0; j < ch.ncols; j++) {
                const struct fv_value *x = &ch.col[j][i];
                if (x->kind != FV_VK_DOUBLE || !isfinite(x->u.d)) continue;
                for (int f = 0; f < NF; f++)
                    if (ch.field[j] == fields[f]) {
                        a->last[f] = x->u.d;
                        a->have[f] = 1;
                        if (f == F_BATTERY) {
                            a->discharge += x->u.d > 0 ? x->u.d : 0;
                            row = 1;
                        }
                    }
            }
            a->n += (size_t)row;
        }
    fv_store_cursor_free(c);
    if (rc < 0) return rc;
    for (size_t k = 0; k < n; k++)
        add_site(&acc[k], &out[k]);
    return 1;
}

static int history(void *arg, int64_t start_ms, int64_t step_ms, size_t n, struct fv_ven_hist *out,
                   size_t *nsites, char *err, size_t errlen)
{
    struct fv_oadr_store *s = arg;
    memset(out, 0, n * sizeof *out);
    *nsites = 0;
    if (step_ms <= 0 || n == 0) return FV_OK;
    struct fv_vpp_site_now *sites;
    size_t ns;
    int rc = fv_vpp_sites(s->view.vpp, NULL, &sites, &ns);
    if (rc) {
        fv_seterr(err, errlen, "the VPP's sites: %s", fv_strerror(rc));
        return rc;
    }
    struct acc *acc = calloc(n, sizeof *acc);
    if (acc == NULL) rc = FV_ENOMEM;
    for (size_t i = 0; rc == FV_OK && i < ns; i++) {
        rc = read_site(&s->view, sites[i].id, start_ms, step_ms, n, out, acc, err, errlen);
        if (rc >= 0) (*nsites)++;
        if (rc > 0) rc = FV_OK;
    }
    free(acc);
    free(sites);
    return rc;
}

static int forecast(void *arg, const char *program, int64_t start_ms, int64_t end_ms, double *kw,
                    char *err, size_t errlen)
{
    struct fv_oadr_store *s = arg;
    json_t *j = NULL;
    int rc = fv_api_vpp_forecast(&s->view, program, start_ms, end_ms, &j, kw, err, errlen);
    json_decref(j);
    return rc;
}

/* ---- a shard's owner's part of a cluster's history report ------------------------------ */

/* The request's parameters (oadr_store.h H1): from, step, n and the sites (a copy, split in
 * place at the commas into *ids). 1, or 0 with the 400 answered. */
static int part_args(const char *q, int64_t *from, int64_t *step, size_t *n, char **list,
                     char ***ids, size_t *nids, struct fv_http_response *out)
{
    char a[32], b[32], c[32], *end;
    size_t cap = q ? strlen(q) + 1 : 1;
    *list = NULL;
    *ids = NULL;
    *nids = 0;
    if (!fv_query_param(q, "from", a, sizeof a) || !fv_query_param(q, "step", b, sizeof b) ||
        !fv_query_param(q, "n", c, sizeof c)) {
        fv_api_respond_error(out, 400, "from, step and n are required");
        return 0;
    }
    long long f = strtoll(a, &end, 10);
    int ok = *a && *end == '\0';
    long long st = strtoll(b, &end, 10);
    ok = ok && *b && *end == '\0' && st > 0;
    unsigned long long k = strtoull(c, &end, 10);
    ok = ok && *c && *end == '\0' && k >= 1 && k <= FV_OADR_PART_MAX;
    if (!ok || f < INT64_MIN / 2 || f > INT64_MAX / 2 || st > (INT64_MAX / 2) / (long long)k) {
        fv_api_respond_error(out, 400, "from, step and n must be integers, step > 0, n 1-1440");
        return 0;
    }
    *from = f;
    *step = st;
    *n = (size_t)k;
    if ((*list = malloc(cap)) == NULL || !fv_query_param(q, "sites", *list, cap)) {
        fv_api_respond_error(out, *list ? 400 : 500, *list ? "sites is required" : "out of memory");
        return 0;
    }
    size_t m = 1;
    for (const char *p = *list; *p; p++)
        m += *p == ',';
    if ((*ids = calloc(m, sizeof **ids)) == NULL) {
        fv_api_respond_error(out, 500, "out of memory");
        return 0;
    }
    for (char *save = NULL, *t = strtok_r(*list, ",", &save); t; t = strtok_r(NULL, ",", &save))
        (*ids)[(*nids)++] = t;
    return 1;
}

void fv_api_oadr_history_part(const struct fv_api_view *v, const char *principal,
                              struct fv_http_response *out)
{
    int64_t from, step;
    size_t n, nids, counted = 0;
    char *list, **ids, err[256] = "out of memory";
    if (!part_args(v->query, &from, &step, &n, &list, &ids, &nids, out)) {
        free(ids);
        free(list);
        return;
    }
    struct fv_ven_hist *h = calloc(n, sizeof *h);
    struct acc *acc = calloc(n, sizeof *acc);
    int rc = h && acc ? FV_OK : FV_ENOMEM;
    for (size_t i = 0; rc == FV_OK && i < nids; i++) { /* v->keep: this shard's sites only */
        rc = read_site(v, ids[i], from, step, n, h, acc, err, sizeof err);
        if (rc > 0) {
            counted++;
            rc = FV_OK;
        }
    }
    /* H2: the read audited as the VEN's own is (openadr.history), before the answer goes */
    char extra[160];
    snprintf(extra, sizeof extra,
             "{\"from_ms\":%lld,\"to_ms\":%lld,\"granularity_ms\":%lld,\"sites\":%zu,"
             "\"part\":true}",
             (long long)from, (long long)(from + (int64_t)n * step), (long long)step, counted);
    struct fv_audit_event ev = {.kind = "openadr",
                                .action = "openadr.history",
                                .principal = principal,
                                .purpose = "energy_programs",
                                .result = rc == FV_OK ? "allow" : "error",
                                .reason = rc == FV_OK ? NULL : err,
                                .extra_json = extra};
    struct fv_audit *audit = v->guard ? v->guard->audit : NULL;
    if (audit && fv_audit_append(audit, &ev, NULL) != FV_OK && rc == FV_OK) {
        rc = FV_EIO;
        snprintf(err, sizeof err, "the audit log refused the read's entry");
    }
    json_t *iv = rc == FV_OK ? json_array() : NULL;
    for (size_t k = 0; iv && k < n; k++)
        if (json_array_append_new(iv, json_pack("[f,f,f,f,i]", h[k].delivered_kw, h[k].stored_kwh,
                                                h[k].available_kwh, h[k].deliverable_kw,
                                                h[k].online)) != 0) {
            json_decref(iv);
            iv = NULL;
        }
    if (iv)
        fv_api_respond_json(out, 200,
                            json_pack("{s:I,s:o}", "sites", (json_int_t)counted, "intervals", iv));
    else
        fv_api_respond_error(out, 500, rc == FV_OK ? "out of memory" : err);
    free(acc);
    free(h);
    free(ids);
    free(list);
}

struct fv_ven_store_ops fv_oadr_store_ops(struct fv_oadr_store *s)
{
    return (struct fv_ven_store_ops){.arg = s, .history = history, .forecast = forecast};
}
