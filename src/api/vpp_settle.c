/*
 * vpp_settle.c - GET /api/v1/vpp/events/ID/settlement?format=csv|json (api.h): one row per
 * site of the event (enrolled in its program, not opted out of it), computed from stored
 * telemetry only, so the same data always gives the same bytes.
 *
 * Per site: its samples of the method's signal (a4_discharge: SiteBatteryPower, discharge
 * only; group_a: SiteGridPower, the net load) from the oldest baseline window to the event's
 * end, read through the store's query interface with the site's current owner period's
 * key; interval energy (the program's interval_minutes), each sample holding until the next
 * for at most FV_VPP_SAMPLE_HOLD_MS (energy/baseline.h: an interval not covered is missing,
 * never estimated); the baseline over the prior eligible days (left out: other events' days
 * of every program and the DR days declared, fleet-wide or the site's, from
 * fv_vpp_event_info; the site's outage days, from the same samples over the prior days whole,
 * fv_vpp_site_outages); a row by the settlement rounding rule (energy/settle.h). The caller
 * decides and is audited first (vpp_api.c); a row names its site by the site's id only for
 * purpose billing (the payee), else by its pseudonym in the request's purpose, whatever the
 * role (vpp_api.c E1); a consented-only role gets rows of consenting sites only (E3); the
 * sites answered go into the read's result entry (E4). A site's own payments (its owner's
 * data) are its rows named by its id, for the subject export (fv_api_vpp_site_payments).
 *
 * Threading: the API thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "crypto/keys.h"
#include "energy/settle.h"
#include "energy/vpp.h"
#include "privacy/guard.h"
#include "privacy/subjects.h"
#include "store/store.h"
#include "util/err.h"
#include "util/log.h"
#include "util/urlquery.h"
#include "wire/site.h"

#define FV_VPP_SAMPLE_HOLD_MS 600000 /* a sample's power holds at most 10 minutes */

struct series {
    int64_t *t;
    double *kw;
    size_t n, cap;
};

int fv_api_site_query(const struct fv_api_view *v, const char *site, int64_t from, int64_t to,
                      const uint32_t *fields, size_t nfields, struct fv_store_cursor **out,
                      char *err, size_t errlen)
{
    char subject[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1];
    if (fv_subject_current(v->keys, site, subject, NULL) != FV_OK)
        snprintf(subject, sizeof subject, "%s", site);
    const unsigned char *dek;
    int rc = fv_keystore_dek(v->keys, subject, 0, &dek, pseudo);
    if (rc) return rc;
    if (v->keep && !v->keep(v->keep_arg, pseudo)) return FV_ENOENT; /* another shard's */
    return fv_store_query(v->store, pseudo, dek, from, to, fields, nfields, 0, out, err, errlen);
}

/* Appends the site's samples of field in [from, to] to s. */
static int read_samples(const struct fv_api_view *v, const char *site, uint32_t field, int64_t from,
                        int64_t to, struct series *s)
{
    char err[256];
    struct fv_store_cursor *c;
    int rc = fv_api_site_query(v, site, from, to, &field, 1, &c, err, sizeof err);
    if (rc) return rc == FV_ENOENT ? FV_OK : rc; /* never sent anything: no samples */
    struct fv_store_chunk ch;
    while ((rc = fv_store_next(c, &ch, err, sizeof err)) == 1) {
        for (size_t i = 0; i < ch.n; i++) {
            const struct fv_value *x = &ch.col[0][i];
            if (x->kind != FV_VK_DOUBLE) continue;
            if (s->n == s->cap) {
                size_t nc = s->cap ? s->cap * 2 : 1024;
                int64_t *nt = realloc(s->t, nc * sizeof *nt);
                if (nt) s->t = nt;
                double *nk = nt ? realloc(s->kw, nc * sizeof *nk) : NULL;
                if (nk == NULL) {
                    rc = FV_ENOMEM;
                    break;
                }
                s->kw = nk;
                s->cap = nc;
            }
            s->t[s->n] = ch.t[i];
            s->kw[s->n++] = x->u.d;
        }
        if (rc == FV_ENOMEM) break;
    }
    fv_store_cursor_free(c);
    if (rc < 0) fv_warn("vpp settlement: a site's telemetry cannot be read: %s", err);
    return rc < 0 ? rc : FV_OK;
}

/* One site's row. */
static int site_row(const struct fv_api_view *v, const struct fv_vpp_event_info *ev,
                    const struct fv_vpp_baseline_plan *plan, const char *site, const char *shown,
                    struct fv_vpp_settle_row *row)
{
    int a4 = ev->program.method == FV_VPP_A4_DISCHARGE;
    uint32_t field = a4 ? FV_SIG_SITE_BATTERY_KW : FV_SIG_SITE_GRID_KW;
    int64_t from = plan->days_from_ms < plan->win_start_ms[plan->ndays]
                       ? plan->days_from_ms
                       : plan->win_start_ms[plan->ndays];
    struct series s = {0};
    size_t nval = (size_t)(plan->ndays + 1) * plan->win_len, nexcl = 0;
    double *kwh = malloc((nval ? nval : 1) * sizeof *kwh);
    /* The site's own excluded days: its DR days, then its outage days. */
    int32_t *excl = malloc((ev->nsite_days + (size_t)plan->ndays + 1) * sizeof *excl);
    int rc = kwh && excl
                 ? read_samples(v, site, field, from - FV_VPP_SAMPLE_HOLD_MS, ev->end_ms, &s)
                 : FV_ENOMEM;
    for (size_t i = 0; rc == FV_OK && i < ev->nsite_days; i++)
        if (strcmp(ev->site_days[i].site, site) == 0) excl[nexcl++] = ev->site_days[i].date;
    size_t nout = 0;
    if (rc == FV_OK)
        rc = fv_vpp_site_outages(&ev->program, plan, s.t, s.kw, s.n, FV_VPP_SAMPLE_HOLD_MS,
                                 excl + nexcl, &nout);
    nexcl += nout;
    /* the samples are in time order; one series per day's window */
    for (int k = 0; rc == FV_OK && k <= plan->ndays; k++) {
        double *w = kwh + (size_t)k * plan->win_len;
        if (s.n == 0) {
            for (size_t i = 0; i < plan->win_len; i++)
                w[i] = NAN;
            continue;
        }
        rc = fv_vpp_interval_energy(s.t, s.kw, s.n, FV_VPP_SAMPLE_HOLD_MS, a4,
                                    plan->win_start_ms[k], plan->interval_ms, plan->win_len, w);
    }
    struct fv_vpp_baseline_result r;
    struct fv_vpp_site_series ss = {.kwh = kwh, .excluded = excl, .nexcluded = nexcl};
    if (rc == FV_OK) rc = fv_vpp_baseline(plan, &ss, &r);
    if (rc == FV_OK) rc = fv_vpp_settle_row(row, shown, ev->id, &ev->program, &r);
    free(kwh);
    free(excl);
    free(s.t);
    free(s.kw);
    return rc;
}

/* Rows of several events; each row's site and event strings live here (re-pointed on
 * growth). */
struct settle_set {
    struct fv_vpp_settle_row *rows;
    char (*site)[65];
    char (*event)[FV_VPP_ID_MAX];
    size_t n, cap;
};

static int set_grow(struct settle_set *st, size_t need)
{
    if (need <= st->cap) return FV_OK;
    size_t cap = need > 2 * st->cap ? need : 2 * st->cap;
    void *r = realloc(st->rows, cap * sizeof *st->rows);
    if (r) st->rows = r;
    void *a = r ? realloc(st->site, cap * sizeof *st->site) : NULL;
    if (a) st->site = a;
    void *b = a ? realloc(st->event, cap * sizeof *st->event) : NULL;
    if (b == NULL) return FV_ENOMEM;
    st->event = b;
    st->cap = cap;
    for (size_t i = 0; i < st->n; i++) {
        st->rows[i].site = st->site[i];
        st->rows[i].event = st->event[i];
    }
    return FV_OK;
}

static void set_free(struct settle_set *st)
{
    free(st->rows);
    free(st->site);
    free(st->event);
}

/* E1: how row names site for ctx: its id for purpose billing (or without access control),
 * else its pseudonym in the request's purpose. 0, or -1: it cannot be named (no row). */
static int row_name(const struct fv_api_view *v, const struct fv_guard_ctx *ctx, const char *site,
                    char out[65])
{
    if (ctx == NULL || v->guard == NULL || strcmp(ctx->purpose, FV_API_VPP_BILLING) == 0) {
        snprintf(out, 65, "%s", site);
        return 0;
    }
    char ps[FV_PURPOSE_PSEUDONYM_LEN + 1];
    if (fv_guard_pseudonym(v->guard, ctx->purpose, site, ps) != FV_OK) return -1;
    snprintf(out, 65, "%s", ps);
    return 0;
}

/* Appends the rows of event id: every site it settles that ctx may see (E3), or, with only
 * set, that site alone, named by its id (its owner's export; ctx NULL). FV_OK, FV_ENOENT (no
 * such event), else err says why. */
static int settle_event(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *id,
                        const char *only, struct settle_set *st, struct fv_guard_served *served,
                        char *err, size_t errlen)
{
    struct fv_vpp_event_info ev;
    if (fv_vpp_event_info(v->vpp, id, &ev) != FV_OK) return FV_ENOENT;
    struct fv_vpp_baseline_plan plan;
    int rc = fv_vpp_baseline_plan(&ev.program, ev.start_ms, ev.end_ms, ev.excluded, ev.nexcluded,
                                  &plan, err, errlen);
    if (rc == FV_OK && set_grow(st, st->n + ev.nsites) != FV_OK) {
        rc = FV_ENOMEM;
        snprintf(err, errlen, "out of memory");
    }
    for (size_t i = 0; rc == FV_OK && i < ev.nsites; i++) {
        size_t k = st->n;
        if (only && strcmp(ev.sites[i], only) != 0) continue;
        /* E3: the row's metered figure is the event's: consent held at its start, holds now */
        if (ctx && v->guard && !fv_guard_consented(v->guard, ctx, ev.sites[i], ev.start_ms))
            continue;
        if (row_name(v, ctx, ev.sites[i], st->site[k]) != 0) continue; /* erased meanwhile */
        snprintf(st->event[k], sizeof st->event[k], "%s", ev.id);
        rc = site_row(v, &ev, &plan, ev.sites[i], st->site[k], &st->rows[k]);
        if (rc == FV_OK) {
            st->rows[k].event = st->event[k];
            st->n++;
            if (served && v->guard) fv_guard_served_add(v->guard, served, ev.sites[i]); /* E4 */
        } else {
            snprintf(err, errlen, "a site's telemetry cannot be settled (%s)", fv_strerror(rc));
        }
    }
    fv_vpp_event_info_free(&ev);
    return rc;
}

/* format=csv|json from the query; -1 (answered 400) if neither. */
static int want_csv(const struct fv_api_view *v, struct fv_http_response *out)
{
    char fmt[8] = "json";
    fv_query_param(v->query, "format", fmt, sizeof fmt);
    if (strcmp(fmt, "csv") == 0) return 1;
    if (strcmp(fmt, "json") == 0) return 0;
    fv_api_respond_json(out, 400, json_pack("{s:s}", "error", "format: csv or json"));
    return -1;
}

static void answer(struct fv_http_response *out, int csv, const struct settle_set *st, int rc,
                   const char *err)
{
    if (rc == FV_OK) {
        out->status = 200;
        out->content_type = csv ? "text/csv" : "application/json";
        fv_buf_reset(&out->body);
        rc = csv ? fv_vpp_settle_csv(&out->body, st->rows, st->n, 1)
                 : fv_vpp_settle_json(&out->body, st->rows, st->n);
    }
    if (rc != FV_OK)
        fv_api_respond_json(out, rc == FV_EINVAL ? 422 : 500,
                            json_pack("{s:s}", "error", err[0] ? err : "out of memory"));
}

void fv_api_vpp_settlement(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *id,
                           struct fv_guard_served *served, struct fv_http_response *out)
{
    int csv = want_csv(v, out);
    if (csv < 0) return;
    struct settle_set st = {0};
    char err[300] = "";
    int rc = settle_event(v, ctx, id, NULL, &st, served, err, sizeof err);
    if (rc == FV_ENOENT)
        fv_api_respond_json(out, 404, json_pack("{s:s}", "error", "no such event"));
    else
        answer(out, csv, &st, rc, err);
    set_free(&st);
}

void fv_api_vpp_season(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                       struct fv_guard_served *served, struct fv_http_response *out)
{
    int csv = want_csv(v, out);
    if (csv < 0) return;
    char prog[80] = "", year[16] = "", err[300] = "";
    fv_query_param(v->query, "program", prog, sizeof prog);
    char *e = NULL;
    long y = fv_query_param(v->query, "season", year, sizeof year) ? strtol(year, &e, 10) : 0;
    if (e == NULL || *e || y < 1970 || y > 9999) {
        fv_api_respond_json(out, 422,
                            json_pack("{s:s}", "error", "give program=P and season=YEAR"));
        return;
    }
    char(*ids)[FV_VPP_ID_MAX];
    size_t n;
    int rc = fv_vpp_season(v->vpp, prog, (int)y, &ids, &n);
    if (rc) {
        fv_api_respond_json(
            out, rc == FV_ENOENT ? 422 : 500,
            json_pack("{s:s}", "error", rc == FV_ENOENT ? "unknown program" : "error"));
        return;
    }
    struct settle_set st = {0};
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        rc = settle_event(v, ctx, ids[i], NULL, &st, served, err, sizeof err);
    answer(out, csv, &st, rc == FV_ENOENT ? FV_OK : rc, err);
    set_free(&st);
    free(ids);
}

json_t *fv_api_vpp_site_payments(const struct fv_api_view *v, const char *site)
{
    if (v->vpp == NULL) return NULL;
    json_t *evs = fv_vpp_events_json(v->vpp), *e, *out = NULL;
    struct settle_set st = {0};
    char err[300] = "";
    size_t i;
    int rc = evs ? FV_OK : FV_ENOMEM;
    json_array_foreach(json_object_get(evs, "events"), i, e)
    {
        const char *id = json_string_value(json_object_get(e, "id"));
        const char *state = json_string_value(json_object_get(e, "state"));
        if (rc == FV_OK && id && state && strcmp(state, "completed") == 0) {
            rc = settle_event(v, NULL, id, site, &st, NULL, err, sizeof err);
            if (rc == FV_ENOENT) rc = FV_OK; /* gone meanwhile */
        }
    }
    json_decref(evs);
    struct fv_buf b = {0};
    if (rc == FV_OK && st.n) rc = fv_vpp_settle_json(&b, st.rows, st.n);
    if (rc == FV_OK && st.n) out = json_loadb((const char *)b.data, b.len, 0, NULL);
    if (rc != FV_OK) fv_warn("vpp: a site's payments cannot be computed: %s", err);
    fv_buf_free(&b);
    set_free(&st);
    return out;
}
