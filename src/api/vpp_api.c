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
 *   POST /api/v1/vpp/sites/ID/enroll?program=P
 *   POST /api/v1/vpp/sites/ID/opt-out?event=E   the owner's opt-out, even mid-event
 *   POST /api/v1/vpp/dr-days?date=YYYY-MM-DD    another demand-response day of every site
 *   POST /api/v1/vpp/sites/ID/dr-day?date=YYYY-MM-DD   ... of one site
 *   GET  /api/v1/vpp/dr-days                    the DR days declared (baselines leave them out)
 *
 * Every call is a purpose-bound decision on energy sites (the guard, G2-G5: purpose
 * energy_programs for the energy-operator role), audited before anything is answered; site
 * ids in answers are shown as the caller's obligations say (pseudonyms for pseudonymising
 * roles). Times are epoch ms or RFC 3339.
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
#include "util/err.h"
#include "util/urlquery.h"

static void error(struct fv_http_response *out, int status, const char *msg)
{
    fv_api_respond_json(out, status, json_pack("{s:s}", "error", msg));
}

/* Shows every "site" of an event's status as the caller may see it. */
static void show_sites(const struct fv_api_view *v, const struct fv_guard_ctx *ctx, json_t *ev)
{
    json_t *sites = json_object_get(ev, "sites");
    size_t i;
    json_t *s;
    json_array_foreach(sites, i, s)
    {
        const char *id = json_string_value(json_object_get(s, "site"));
        if (id == NULL || v->guard == NULL) continue;
        char shown[65];
        fv_guard_show_id(v->guard, ctx, id, shown);
        json_object_set_new(s, "site", json_string(shown));
    }
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
    else if ((rest = segment(sub, "/sites/", x)) != NULL && post)
        action = strcmp(rest, "/enroll") == 0    ? "vpp.site.enroll"
                 : strcmp(rest, "/opt-out") == 0 ? "vpp.site.opt-out"
                 : strcmp(rest, "/dr-day") == 0  ? "vpp.site.dr-day"
                                                 : NULL;
    if (action == NULL) {
        error(out, 404, "no such endpoint");
        return;
    }
    if (v->guard) {
        ctx->energy_sites = 1; /* energy sites only: never vehicles */
        int rc = fv_guard_read(v->guard, ctx, v->query, action, fv_api_all_classes(v), NULL, 1, 0,
                               NULL, 0, INT64_MIN, INT64_MAX, why, sizeof why);
        if (rc) {
            error(out, rc == FV_EIO ? 503 : 403, why);
            return;
        }
    }
    char err[200] = "";
    if (strcmp(action, "vpp.season") == 0) {
        fv_api_vpp_season(v, ctx, out);
    } else if (strcmp(action, "vpp.dr-days") == 0) {
        json_t *j = fv_vpp_dr_days_json(v->vpp);
        json_t *arr = json_object_get(j, "dr_days"), *d;
        size_t i;
        json_array_foreach(arr, i, d)
        {
            const char *id = json_string_value(json_object_get(d, "site"));
            char shown[65];
            if (id == NULL || v->guard == NULL) continue;
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
            show_sites(v, ctx, j);
            fv_api_respond_json(out, 200, j);
        }
    } else if (strcmp(action, "vpp.settlement") == 0) {
        fv_api_vpp_settlement(v, ctx, x, out);
    } else if (strcmp(action, "vpp.event.cancel") == 0) {
        int rc = fv_vpp_event_cancel(v->vpp, x);
        if (rc == FV_OK)
            fv_api_respond_json(out, 200, json_pack("{s:s,s:s}", "id", x, "state", "cancelled"));
        else
            error(out, rc == FV_ENOENT ? 404 : 409,
                  rc == FV_ENOENT ? "no such event" : "the event is over already");
    } else {
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
        snprintf(x, sizeof x, "%s", d->id);
        const char *key = enroll ? "program" : drday ? "date" : "event";
        fv_query_param(v->query, key, arg, sizeof arg);
        int rc = enroll  ? fv_vpp_enroll(v->vpp, x, arg, err, sizeof err)
                 : drday ? fv_vpp_dr_day_add(v->vpp, x, arg, err, sizeof err)
                         : fv_vpp_opt_out(v->vpp, x, arg, err, sizeof err);
        if (rc == FV_OK)
            fv_api_respond_json(out, 200, json_pack("{s:s,s:s}", "site", x, key, arg));
        else
            error(out, rc == FV_ENOENT ? (enroll ? 422 : 404) : rc == FV_EINVAL ? 422 : 500, err);
    }
    if (v->guard) fv_guard_done(v->guard, ctx, 1, out->body.len);
}
