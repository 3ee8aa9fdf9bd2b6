/*
 * vpp_api.c - the virtual power plant's endpoints (api.h; energy/vpp.h does the work):
 *
 *   GET  /api/v1/vpp/events                     every event
 *   POST /api/v1/vpp/events  JSON {"program", "start", "end", "target_kw" | "max": true}
 *                            (or the same as query parameters)
 *                                               201 {"id"}, or 422 with the reason
 *   GET  /api/v1/vpp/events/ID                  status: per-site status, delivered vs target
 *   POST /api/v1/vpp/events/ID/cancel
 *   GET  /api/v1/vpp/events/ID/settlement?format=csv|json   (vpp_settle.c)
 *   GET  /api/v1/vpp/settlement?program=P&season=YEAR&format=csv|json   every completed event
 *   GET  /api/v1/vpp/capacity?program=P&from=T&to=T   the MW the sites can deliver (vpp_capacity.c)
 *   GET  /api/v1/vpp/sites?program=P            the enrolled sites and their latest sample
 *   POST /api/v1/vpp/sites/ID/enroll?program=P
 *   POST /api/v1/vpp/sites/ID/opt-out?event=E   the owner's opt-out, even mid-event
 *   /api/v1/vpp/openadr[/...]                   the OpenADR VEN (api/openadr_api.c)
 *   POST /api/v1/vpp/dr-days?date=YYYY-MM-DD    another demand-response day of every site
 *   POST /api/v1/vpp/sites/ID/dr-day?date=YYYY-MM-DD   ... of one site
 *   GET  /api/v1/vpp/dr-days                    the DR days declared (baselines leave them out)
 *
 * Every call is a purpose-bound decision on energy sites (the guard, G2-G5: purpose
 * energy_programs for the energy-operator role), on the data classes of the sites' signals,
 * audited before anything is answered. What is answered follows the same rules as the query
 * API (docs/privacy.md):
 *   E1 site ids are shown as the caller's obligations say (pseudonyms for pseudonymising
 *      roles); settlement rows name a site by its id only for purpose billing
 *      (FV_VPP_BILLING, the payee), by its pseudonym in the request's purpose otherwise,
 *      whatever the role (vpp_settle.c);
 *   E2 purpose billing reads settlements only: any other VPP call for it is refused (and
 *      audited as such);
 *   E3 a role limited to consented subjects sees only the sites whose owner consents to
 *      the purpose now (G4) - for a settlement row, consent that held at the event's start
 *      and holds now; the others are left out of per-site answers (counted in
 *      "sites_withheld" in an event's status and the site list). Aggregates (planned and
 *      delivered kW, the capacity forecast) count every site;
 *   E4 every answer that names sites lists them in its audit result entry (G12), and counts
 *      against the daily quota (G5) before it is sent.
 * Times are epoch ms or RFC 3339.
 *
 * Threading: the API thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/api.h"
#include "api/query.h"
#include "energy/vpp.h"
#include "privacy/guard.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/urlquery.h"
#include "wire/site.h"

static void error(struct fv_http_response *out, int status, const char *msg)
{
    fv_api_respond_json(out, status, json_pack("{s:s}", "error", msg));
}

/* The policy classes of what the VPP reads: the sites' signals (not every class: an
 * energy-operator may not read location, and sites send none). */
static uint32_t site_classes(const struct fv_api_view *v)
{
    uint32_t m = 0;
    for (uint32_t f = FV_SIG_SITE_FIRST; f < FV_SIG_SITE_END; f++)
        m |= fv_api_signal_class(v, f);
    return m;
}

/* E1, E3, E4: shows every "site" of an event's status as the caller may see it; a site a
 * consented-only role may not see is left out and counted in "sites_withheld". */
static void show_sites(const struct fv_api_view *v, struct fv_guard_ctx *ctx, json_t *ev,
                       struct fv_guard_served *served)
{
    json_t *sites = json_object_get(ev, "sites");
    size_t withheld = 0, i = 0;
    int64_t now = (int64_t)fv_now_ms();
    while (v->guard && i < json_array_size(sites)) {
        json_t *s = json_array_get(sites, i);
        const char *id = json_string_value(json_object_get(s, "site"));
        if (id && !fv_guard_consented(v->guard, ctx, id, now)) {
            json_array_remove(sites, i);
            withheld++;
            continue;
        }
        if (id) {
            char shown[65];
            fv_guard_served_add(v->guard, served, id); /* G12 */
            fv_guard_show_id(v->guard, ctx, id, shown);
            json_object_set_new(s, "site", json_string(shown));
        }
        i++;
    }
    json_object_set_new(ev, "sites_withheld", json_integer((json_int_t)withheld));
}

/* GET /api/v1/vpp/sites?program=P: the program's enrolled sites, each with its latest
 * sample (E1, E3, E4 as for an event's status). */
static void list_sites(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                       struct fv_guard_served *served, struct fv_http_response *out)
{
    char prog[80] = "";
    fv_query_param(v->query, "program", prog, sizeof prog);
    struct fv_vpp_site_now *s;
    size_t n, withheld = 0;
    int rc = fv_vpp_sites(v->vpp, prog, &s, &n);
    if (rc) {
        error(out, rc == FV_ENOENT ? 422 : 500,
              rc == FV_ENOENT ? "give program=P, a configured program" : "out of memory");
        return;
    }
    int64_t now = (int64_t)fv_now_ms();
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        if (v->guard && !fv_guard_consented(v->guard, ctx, s[i].id, now)) {
            withheld++;
            continue;
        }
        char shown[65];
        snprintf(shown, sizeof shown, "%s", s[i].id);
        if (v->guard) {
            fv_guard_served_add(v->guard, served, s[i].id); /* G12 */
            fv_guard_show_id(v->guard, ctx, s[i].id, shown);
        }
        const struct fv_site_sample *x = &s[i].s;
        json_t *o = json_pack("{s:s,s:b}", "site", shown, "online",
                              s[i].have && now - s[i].rx_ms < FV_VPP_OFFLINE_MS);
        if (o && s[i].have) {
            json_t *l = json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "received_ms",
                                  (json_int_t)s[i].rx_ms, "battery_kw", x->battery_kw, "energy_kwh",
                                  x->energy_kwh, "capacity_kwh", x->capacity_kwh, "reserve_pct",
                                  x->reserve_pct, "solar_kw", x->solar_kw, "load_kw", x->load_kw,
                                  "grid_kw", x->grid_kw, "inverter_kw", x->inverter_kw,
                                  "export_limit_kw", x->export_limit_kw);
            json_object_set_new(o, "latest", l ? l : json_null());
        }
        json_array_append_new(arr, o);
    }
    free(s);
    fv_api_respond_json(out, 200,
                        json_pack("{s:s,s:I,s:I,s:o}", "program", prog, "count",
                                  (json_int_t)(arr ? json_array_size(arr) : 0), "sites_withheld",
                                  (json_int_t)withheld, "sites", arr ? arr : json_array()));
}

/* Copies the path segment after prefix up to '/' or the end into x; returns the rest. */
static const char *segment(const char *p, const char *prefix, char x[65])
{
    size_t pl = strlen(prefix);
    if (strncmp(p, prefix, pl) != 0) return NULL;
    const char *s = p + pl, *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n == 0 || n > 64) return NULL;
    memcpy(x, s, n);
    x[n] = '\0';
    return s + n;
}

/* A JSON body's member as text into buf ("" when absent): strings as they are, numbers and
 * booleans printed. */
static void body_param(const json_t *body, const char *key, char *buf, size_t len)
{
    const json_t *x = json_object_get(body, key);
    if (json_is_string(x))
        snprintf(buf, len, "%s", json_string_value(x));
    else if (json_is_integer(x))
        snprintf(buf, len, "%lld", (long long)json_integer_value(x));
    else if (json_is_real(x))
        snprintf(buf, len, "%.17g", json_real_value(x));
    else if (json_is_boolean(x))
        snprintf(buf, len, "%s", json_is_true(x) ? "true" : "false");
}

/* The event's parameters: from the JSON body ({"program", "start", "end", "target_kw" |
 * "max": true}) when there is one, else from the query string. 0, or -1 (answered). */
static int event_params(const struct fv_api_view *v, char *prog, char *s_start, char *s_end,
                        char *s_kw, char *s_max, struct fv_http_response *out)
{
    if (v->body && v->body_len) {
        json_error_t je;
        json_t *b = json_loadb(v->body, v->body_len, 0, &je);
        if (!json_is_object(b)) {
            char msg[200];
            snprintf(msg, sizeof msg, "the body is not a JSON object (line %d: %s)", je.line,
                     je.text);
            json_decref(b);
            error(out, 400, msg);
            return -1;
        }
        body_param(b, "program", prog, 80);
        body_param(b, "start", s_start, 64);
        body_param(b, "end", s_end, 64);
        body_param(b, "target_kw", s_kw, 32);
        body_param(b, "max", s_max, 8);
        json_decref(b);
        return 0;
    }
    fv_query_param(v->query, "program", prog, 80);
    fv_query_param(v->query, "start", s_start, 64);
    fv_query_param(v->query, "end", s_end, 64);
    fv_query_param(v->query, "target_kw", s_kw, 32);
    fv_query_param(v->query, "max", s_max, 8);
    return 0;
}

static void create_event(const struct fv_api_view *v, struct fv_http_response *out)
{
    char prog[80] = "", s_start[64] = "", s_end[64] = "", s_kw[32] = "", s_max[8] = "";
    if (event_params(v, prog, s_start, s_end, s_kw, s_max, out)) return;
    int64_t start, end;
    if (!s_start[0] || fv_parse_time_ms(s_start, &start) || !s_end[0] ||
        fv_parse_time_ms(s_end, &end)) {
        error(out, 422, "give start and end (epoch ms or RFC 3339)");
        return;
    }
    int max = strcmp(s_max, "true") == 0;
    double kw = 0;
    if (s_kw[0]) {
        char *e;
        kw = strtod(s_kw, &e);
        if (*e || e == s_kw) {
            error(out, 422, "bad target_kw: a number of kW");
            return;
        }
    }
    char id[FV_VPP_ID_MAX], why[300];
    int rc = fv_vpp_event_create(v->vpp, prog, start, end, kw, max, id, why, sizeof why);
    if (rc == FV_OK) {
        /* the forecast for its window, kept beside what it will deliver */
        json_t *fc = NULL;
        double avg = 0;
        char ferr[200];
        if (fv_api_vpp_forecast(v, prog, start, end, &fc, &avg, ferr, sizeof ferr) == FV_OK)
            fv_vpp_event_forecast(v->vpp, id, avg);
        json_decref(fc);
        fv_api_respond_json(out, 201, json_pack("{s:s,s:f}", "id", id, "forecast_kw", avg));
    } else
        error(out, rc == FV_EINVAL ? 422 : 500, why);
}

void fv_api_vpp(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                const char *sub, struct fv_http_response *out)
{
    if (v->vpp == NULL) {
        error(out, 404, "the virtual power plant is not running");
        return;
    }
    if (strcmp(sub, "/openadr") == 0 || strncmp(sub, "/openadr/", 9) == 0) {
        fv_api_openadr(v, ctx, method, sub + 8, out); /* api/openadr_api.c */
        return;
    }
    int post = strcmp(method, "POST") == 0;
    char x[65], why[400];
    const char *rest = NULL;
    const char *action = NULL;
    if (strcmp(sub, "/events") == 0)
        action = post ? "vpp.event.create" : "vpp.events";
    else if (strcmp(sub, "/capacity") == 0 && !post)
        action = "vpp.capacity";
    else if (strcmp(sub, "/settlement") == 0 && !post)
        action = "vpp.season";
    else if (strcmp(sub, "/dr-days") == 0)
        action = post ? "vpp.dr-day.add" : "vpp.dr-days";
    else if ((rest = segment(sub, "/events/", x)) != NULL)
        action = strcmp(rest, "/cancel") == 0 && post        ? "vpp.event.cancel"
                 : strcmp(rest, "/settlement") == 0 && !post ? "vpp.settlement"
                 : *rest == '\0' && !post                    ? "vpp.event.status"
                                                             : NULL;
    else if (strcmp(sub, "/sites") == 0 && !post)
        action = "vpp.sites";
    else if ((rest = segment(sub, "/sites/", x)) != NULL && post)
        action = strcmp(rest, "/enroll") == 0    ? "vpp.site.enroll"
                 : strcmp(rest, "/opt-out") == 0 ? "vpp.site.opt-out"
                 : strcmp(rest, "/dr-day") == 0  ? "vpp.site.dr-day"
                                                 : NULL;
    if (action == NULL) {
        error(out, 404, "no such endpoint");
        return;
    }
    int settles = strcmp(action, "vpp.settlement") == 0 || strcmp(action, "vpp.season") == 0;
    if (v->guard) {
        ctx->energy_sites = 1; /* energy sites only: never vehicles */
        char purpose[32] = "";
        fv_query_param(v->query, "purpose", purpose, sizeof purpose);
        if (strcmp(purpose, FV_API_VPP_BILLING) == 0 && !settles) /* E2 */
            snprintf(ctx->refuse, sizeof ctx->refuse, "purpose %s reads settlements only",
                     FV_API_VPP_BILLING);
        int rc = fv_guard_read(v->guard, ctx, v->query, action, site_classes(v), NULL, 1, 0, NULL,
                               0, INT64_MIN, INT64_MAX, why, sizeof why);
        if (rc) {
            error(out, rc == FV_EIO ? 503 : 403, why);
            return;
        }
    }
    char err[200] = "";
    struct fv_guard_served served = {0};
    int names_sites = 1; /* E4: the answer's sites go into its result entry */
    if (strcmp(action, "vpp.season") == 0) {
        fv_api_vpp_season(v, ctx, &served, out);
    } else if (strcmp(action, "vpp.sites") == 0) {
        list_sites(v, ctx, &served, out);
    } else if (strcmp(action, "vpp.dr-days") == 0) {
        json_t *j = fv_vpp_dr_days_json(v->vpp);
        json_t *arr = json_object_get(j, "dr_days"), *d;
        size_t i;
        json_array_foreach(arr, i, d)
        {
            const char *id = json_string_value(json_object_get(d, "site"));
            char shown[65];
            if (id == NULL || v->guard == NULL) continue;
            fv_guard_served_add(v->guard, &served, id); /* E4 */
            fv_guard_show_id(v->guard, ctx, id, shown);
            json_object_set_new(d, "site", json_string(shown));
        }
        if (j)
            fv_api_respond_json(out, 200, j);
        else
            error(out, 500, "out of memory");
    } else if (strcmp(action, "vpp.dr-day.add") == 0) {
        char date[16] = "";
        fv_query_param(v->query, "date", date, sizeof date);
        if (fv_vpp_dr_day_add(v->vpp, NULL, date, err, sizeof err) == FV_OK)
            fv_api_respond_json(out, 200, json_pack("{s:s,s:n}", "date", date, "site"));
        else
            error(out, 422, err);
    } else if (strcmp(action, "vpp.capacity") == 0) {
        fv_api_vpp_capacity(v, out);
    } else if (strcmp(action, "vpp.events") == 0) {
        fv_api_respond_json(out, 200, fv_vpp_events_json(v->vpp));
    } else if (strcmp(action, "vpp.event.create") == 0) {
        create_event(v, out);
    } else if (strcmp(action, "vpp.event.status") == 0) {
        json_t *j = fv_vpp_event_json(v->vpp, x);
        if (j == NULL) {
            error(out, 404, "no such event");
        } else {
            show_sites(v, ctx, j, &served);
            fv_api_respond_json(out, 200, j);
        }
    } else if (strcmp(action, "vpp.settlement") == 0) {
        fv_api_vpp_settlement(v, ctx, x, &served, out);
    } else if (strcmp(action, "vpp.event.cancel") == 0) {
        int rc = fv_vpp_event_cancel(v->vpp, x);
        if (rc == FV_OK)
            fv_api_respond_json(out, 200, json_pack("{s:s,s:s}", "id", x, "state", "cancelled"));
        else
            error(out, rc == FV_ENOENT ? 404 : 409,
                  rc == FV_ENOENT ? "no such event" : "the event is over already");
    } else {
        names_sites = 0;
        char arg[80] = "";
        int enroll = strcmp(action, "vpp.site.enroll") == 0;
        int drday = strcmp(action, "vpp.site.dr-day") == 0;
        /* The site as the caller names it (its id, or its pseudonym for pseudonymising
         * roles), looked up only after the decision above. */
        const struct fv_device *d = fv_api_find_device(v, ctx, x);
        if (d == NULL || !fv_api_is_energy_site(d)) {
            error(out, 404, "unknown site");
            if (v->guard) fv_guard_done(v->guard, ctx, 0, out->body.len);
            return;
        }
        char named[sizeof x]; /* answered as the caller named it: never the id to a
                               * pseudonymising role */
        snprintf(named, sizeof named, "%s", x);
        snprintf(x, sizeof x, "%s", d->id);
        const char *key = enroll ? "program" : drday ? "date" : "event";
        fv_query_param(v->query, key, arg, sizeof arg);
        int rc = enroll  ? fv_vpp_enroll(v->vpp, x, arg, err, sizeof err)
                 : drday ? fv_vpp_dr_day_add(v->vpp, x, arg, err, sizeof err)
                         : fv_vpp_opt_out(v->vpp, x, arg, err, sizeof err);
        if (rc == FV_OK)
            fv_api_respond_json(out, 200, json_pack("{s:s,s:s}", "site", named, key, arg));
        else
            error(out, rc == FV_ENOENT ? (enroll ? 422 : 404) : rc == FV_EINVAL ? 422 : 500, err);
    }
    if (v->guard && names_sites && out->status < 300)
        fv_api_quota_send(v, ctx, served.n, &served, out); /* E4: G5 before it is sent; G12 */
    else if (v->guard)
        fv_guard_done(v->guard, ctx, 1, out->body.len);
    fv_guard_served_free(&served);
}
