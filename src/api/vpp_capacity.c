/*
 * vpp_capacity.c - GET /api/v1/vpp/capacity?program=P&from=T&to=T (api.h): the MW the
 * program's enrolled sites can deliver in a future window, hour by hour, so an operator knows
 * what to offer the grid before creating an event; the same forecast is recorded for each
 * event when it is created (its status shows it beside what was delivered).
 *
 * Per site (a site with no sample in the last hour is left out, and counted):
 *   available energy A = max(0, stored energy - reserve x capacity), from its latest sample
 *     (no charging before the window is credited: the forecast is conservative);
 *   its typical solar S_h and home load L_h in hour slot h of the window: the average of its
 *     samples at the same time of day over the last FV_VPP_HISTORY_DAYS days (from the store;
 *     without history, its latest sample's);
 *   battery power in slot h: min(inverter, max(0, export limit + L_h - S_h), A / hours): the
 *     battery serves the home first, then exports within the permit, and spreads its energy
 *     evenly over the window.
 * The fleet's forecast is the sum per slot, in MW, and its energy in MWh.
 *
 * Threading: the API thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/query.h"
#include "crypto/keys.h"
#include "energy/vpp.h"
#include "privacy/subjects.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/urlquery.h"

#define FV_VPP_HISTORY_DAYS 7
#define DAY_MS              86400000LL
#define HOUR_MS             3600000LL
#define MAX_SLOTS           24

struct slots {
    double solar[MAX_SLOTS], load[MAX_SLOTS];
    int ns[MAX_SLOTS], nl[MAX_SLOTS];
};

/* Averages the site's solar and load samples per hour slot of the window's time of day. */
static void typical(const struct fv_api_view *v, const char *site, int64_t from, int nslots,
                    struct slots *sl)
{
    memset(sl, 0, sizeof *sl);
    char err[256];
    int64_t now = (int64_t)fv_now_ms();
    uint32_t f[2] = {FV_SIG_SITE_SOLAR_KW, FV_SIG_SITE_LOAD_KW};
    struct fv_store_cursor *c;
    if (fv_api_site_query(v, site, now - FV_VPP_HISTORY_DAYS * DAY_MS, now, f, 2, &c, err,
                          sizeof err))
        return;
    struct fv_store_chunk ch;
    while (fv_store_next(c, &ch, err, sizeof err) == 1)
        for (size_t i = 0; i < ch.n; i++) {
            int64_t off = ((ch.t[i] - from) % DAY_MS + DAY_MS) % DAY_MS;
            int h = (int)(off / HOUR_MS);
            if (h >= nslots) continue;
            for (size_t j = 0; j < ch.ncols && j < 2; j++) {
                const struct fv_value *x = &ch.col[j][i];
                if (x->kind != FV_VK_DOUBLE) continue;
                if (ch.field[j] == FV_SIG_SITE_SOLAR_KW) {
                    sl->solar[h] += x->u.d;
                    sl->ns[h]++;
                } else {
                    sl->load[h] += x->u.d;
                    sl->nl[h]++;
                }
            }
        }
    fv_store_cursor_free(c);
}

int fv_api_vpp_forecast(const struct fv_api_view *v, const char *program, int64_t from, int64_t to,
                        json_t **out, double *avg_kw, char *err, size_t errlen)
{
    *out = NULL;
    if (!(to > from) || to - from > MAX_SLOTS * HOUR_MS) {
        snprintf(err, errlen, "the window must be from < to, at most %d hours", MAX_SLOTS);
        return FV_EINVAL;
    }
    struct fv_vpp_site_now *sites;
    size_t n;
    int rc = fv_vpp_sites(v->vpp, program, &sites, &n);
    if (rc) {
        snprintf(err, errlen, rc == FV_ENOENT ? "unknown program '%.64s'" : "out of memory",
                 program);
        return rc == FV_ENOENT ? FV_EINVAL : rc;
    }
    int nslots = (int)((to - from + HOUR_MS - 1) / HOUR_MS);
    double hours = (double)(to - from) / (double)HOUR_MS, kw[MAX_SLOTS] = {0};
    int64_t now = (int64_t)fv_now_ms();
    size_t counted = 0, offline = 0;
    for (size_t i = 0; i < n; i++) {
        const struct fv_site_sample *s = &sites[i].s;
        if (!sites[i].have || now - sites[i].rx_ms > HOUR_MS) {
            offline++;
            continue;
        }
        counted++;
        struct slots sl;
        typical(v, sites[i].id, from, nslots, &sl);
        double avail = s->energy_kwh - s->reserve_pct / 100.0 * s->capacity_kwh;
        double even = avail > 0 ? avail / hours : 0;
        for (int h = 0; h < nslots; h++) {
            double solar = sl.ns[h] ? sl.solar[h] / sl.ns[h] : s->solar_kw;
            double load = sl.nl[h] ? sl.load[h] / sl.nl[h] : s->load_kw;
            double room = fmax(0, s->export_limit_kw + load - solar);
            kw[h] += fmin(fmin(s->inverter_kw, room), even);
        }
    }
    free(sites);
    json_t *arr = json_array();
    double mwh = 0;
    for (int h = 0; arr && h < nslots; h++) {
        int64_t a = from + h * HOUR_MS, b = a + HOUR_MS < to ? a + HOUR_MS : to;
        mwh += kw[h] / 1000 * (double)(b - a) / (double)HOUR_MS;
        json_array_append_new(arr, json_pack("{s:I,s:I,s:f}", "start", (json_int_t)a, "end",
                                             (json_int_t)b, "mw", kw[h] / 1000));
    }
    *avg_kw = mwh * 1000 / hours;
    *out = json_pack("{s:s,s:I,s:I,s:I,s:I,s:o,s:f,s:f,s:s}", "program", program, "from",
                     (json_int_t)from, "to", (json_int_t)to, "sites_counted", (json_int_t)counted,
                     "sites_offline", (json_int_t)offline, "slots", arr ? arr : json_array(), "mwh",
                     mwh, "avg_mw", mwh / hours, "assumptions",
                     "present charge held until the window; typical solar and load of the "
                     "last 7 days at the same time of day; energy spread evenly");
    return *out ? FV_OK : FV_ENOMEM;
}

void fv_api_vpp_capacity(const struct fv_api_view *v, struct fv_http_response *out)
{
    char prog[80] = "", s_from[64] = "", s_to[64] = "", err[200];
    fv_query_param(v->query, "program", prog, sizeof prog);
    int64_t from, to;
    if (!fv_query_param(v->query, "from", s_from, sizeof s_from) ||
        fv_parse_time_ms(s_from, &from) || !fv_query_param(v->query, "to", s_to, sizeof s_to) ||
        fv_parse_time_ms(s_to, &to)) {
        fv_api_respond_json(out, 422,
                            json_pack("{s:s}", "error", "give program=P, from=T and to=T"));
        return;
    }
    json_t *j;
    double avg;
    int rc = fv_api_vpp_forecast(v, prog, from, to, &j, &avg, err, sizeof err);
    if (rc)
        fv_api_respond_json(out, rc == FV_EINVAL ? 422 : 500, json_pack("{s:s}", "error", err));
    else
        fv_api_respond_json(out, 200, j);
}
