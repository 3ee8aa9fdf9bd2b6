/*
 * vpp_settle.c - GET /api/v1/vpp/events/ID/settlement?format=csv|json (api.h): one row per
 * site of the event (enrolled in its program, not opted out of it), computed from stored
 * telemetry only, so the same data always gives the same bytes.
 *
 * Per site: its samples of the method's signal (a4_discharge: SiteBatteryPower, discharge
 * only; group_a: SiteGridPower, the net load) from the oldest baseline window to the event's
 * end, read through the store's query interface with the site's current owner period's
 * key; 5-minute interval energy, each sample holding until the next for at most
 * FV_VPP_SAMPLE_HOLD_MS (energy/baseline.h: an interval not covered is missing, never
 * estimated); the baseline over the prior eligible days (the program's other event days
 * excluded); a row by the settlement rounding rule (energy/settle.h). The caller decides and
 * is audited first (vpp_api.c); sites are named as its obligations say.
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

/* Appends the site's samples of field in [from, to] to s. */
static int read_samples(const struct fv_api_view *v, const char *site, uint32_t field, int64_t from,
                        int64_t to, struct series *s)
{
    char subject[FV_SUBJECT_NAME_MAX + 1], pseudo[FV_PSEUDONYM_LEN + 1], err[256];
    if (fv_subject_current(v->keys, site, subject, NULL) != FV_OK)
        snprintf(subject, sizeof subject, "%s", site);
    const unsigned char *dek;
    int rc = fv_keystore_dek(v->keys, subject, 0, &dek, pseudo);
    if (rc) return rc == FV_ENOENT ? FV_OK : rc; /* never sent anything: no samples */
    struct fv_store_cursor *c;
    rc = fv_store_query(v->store, pseudo, dek, from, to, &field, 1, 0, &c, err, sizeof err);
    if (rc) return rc;
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
    int64_t from = plan->win_start_ms[plan->ndays] - FV_VPP_SAMPLE_HOLD_MS;
    struct series s = {0};
    size_t nval = (size_t)(plan->ndays + 1) * plan->win_len;
    double *kwh = malloc((nval ? nval : 1) * sizeof *kwh);
    int rc = kwh ? read_samples(v, site, field, from, ev->end_ms, &s) : FV_ENOMEM;
    /* the samples are in time order; one series per day's window */
    for (int k = 0; rc == FV_OK && k <= plan->ndays; k++) {
        double *w = kwh + (size_t)k * plan->win_len;
        if (s.n == 0) {
            for (size_t i = 0; i < plan->win_len; i++)
                w[i] = NAN;
            continue;
        }
        rc = fv_vpp_interval_energy(s.t, s.kw, s.n, FV_VPP_SAMPLE_HOLD_MS, a4,
                                    plan->win_start_ms[k], plan->win_len, w);
    }
    struct fv_vpp_baseline_result r;
    struct fv_vpp_site_series ss = {.kwh = kwh};
    if (rc == FV_OK) rc = fv_vpp_baseline(plan, &ss, &r);
    if (rc == FV_OK) rc = fv_vpp_settle_row(row, shown, ev->id, &ev->program, &r);
    free(kwh);
    free(s.t);
    free(s.kw);
    return rc;
}

void fv_api_vpp_settlement(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *id,
                           struct fv_http_response *out)
{
    char fmt[8] = "json", err[300];
    fv_query_param(v->query, "format", fmt, sizeof fmt);
    int csv = strcmp(fmt, "csv") == 0;
    if (!csv && strcmp(fmt, "json") != 0) {
        fv_api_respond(out, 400, json_pack("{s:s}", "error", "format: csv or json"));
        return;
    }
    struct fv_vpp_event_info ev;
    if (fv_vpp_event_info(v->vpp, id, &ev) != FV_OK) {
        fv_api_respond(out, 404, json_pack("{s:s}", "error", "no such event"));
        return;
    }
    struct fv_vpp_baseline_plan plan;
    int rc = fv_vpp_baseline_plan(&ev.program, ev.start_ms, ev.end_ms, ev.excluded, ev.nexcluded,
                                  &plan, err, sizeof err);
    struct fv_vpp_settle_row *rows = rc == FV_OK ? calloc(ev.nsites + 1, sizeof *rows) : NULL;
    char(*shown)[65] = rc == FV_OK ? calloc(ev.nsites + 1, sizeof *shown) : NULL;
    if (rc == FV_OK && (rows == NULL || shown == NULL)) {
        rc = FV_ENOMEM;
        snprintf(err, sizeof err, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; rc == FV_OK && i < ev.nsites; i++) {
        if (v->guard)
            fv_guard_show_id(v->guard, ctx, ev.sites[i], shown[i]);
        else
            snprintf(shown[i], sizeof shown[i], "%s", ev.sites[i]);
        rc = site_row(v, &ev, &plan, ev.sites[i], shown[i], &rows[n]);
        if (rc == FV_OK)
            n++;
        else
            snprintf(err, sizeof err, "a site's telemetry cannot be settled (%s)", fv_strerror(rc));
    }
    if (rc == FV_OK) {
        out->status = 200;
        out->content_type = csv ? "text/csv" : "application/json";
        fv_buf_reset(&out->body);
        rc = csv ? fv_vpp_settle_csv(&out->body, rows, n, 1)
                 : fv_vpp_settle_json(&out->body, rows, n);
    }
    if (rc != FV_OK)
        fv_api_respond(out, rc == FV_EINVAL ? 422 : 500, json_pack("{s:s}", "error", err));
    free(rows);
    free(shown);
    fv_vpp_event_info_free(&ev);
}
