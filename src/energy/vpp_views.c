/* vpp_views.c - the VPP service's views for the API and a site's erasure (vpp.h; shared
 * state in vpp_int.h). Every function takes the service's mutex. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "energy/vpp_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

/* ---- views ------------------------------------------------------------------------------- */

static json_t *event_summary(const struct fv_vpp *v, const struct vevent *e)
{
    json_t *j = json_pack("{s:s,s:s,s:I,s:I,s:b,s:s}", "id", e->id, "program",
                          e->prog >= 0 ? v->progs[e->prog].name : "?", "start",
                          (json_int_t)e->start_ms, "end", (json_int_t)e->end_ms, "max", e->max,
                          "state", fv_vpp__ev_state_names[e->state]);
    if (j) json_object_set_new(j, "target_kw", e->max ? json_null() : json_real(e->target_kw));
    return j;
}

json_t *fv_vpp_events_json(struct fv_vpp *v)
{
    pthread_mutex_lock(&v->mu);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < v->nev; i++)
        json_array_append_new(arr, event_summary(v, v->ev[i]));
    pthread_mutex_unlock(&v->mu);
    return json_pack("{s:o}", "events", arr ? arr : json_array());
}

/* A site's status in an event and why (vpp.h: commanded, delivering, short, offline, opted
 * out, refused, idle). */
static const char *site_status(const struct vevent *e, const struct vassign *a, int64_t now,
                               char *why, size_t len)
{
    why[0] = '\0';
    if (fv_vpp__opted_out(e, a->site->id)) {
        snprintf(why, len, "the owner opted out");
        return "opted_out";
    }
    if (!fv_vpp__site_online(a->site, now)) {
        snprintf(why, len, a->site->have ? "no sample for %lld s" : "never sent a sample",
                 (long long)((now - a->site->rx_ms) / 1000));
        return "offline";
    }
    if (a->declined) {
        snprintf(why, len, "the site refused the command");
        return "refused";
    }
    if (a->setpoint_kw <= 0) {
        snprintf(why, len, "nothing to deliver (its reserve or limits)");
        return "idle";
    }
    if (a->refused) {
        snprintf(why, len, "the site refused the command");
        return "refused";
    }
    if (!a->acked) return "commanded";
    if (a->site->s.battery_kw + 0.05 >= a->setpoint_kw * 0.9) return "delivering";
    snprintf(why, len, "delivering %.2f kW of %.2f kW", a->site->s.battery_kw, a->setpoint_kw);
    return "short";
}

json_t *fv_vpp_event_json(struct fv_vpp *v, const char *id)
{
    pthread_mutex_lock(&v->mu);
    fv_vpp__drain_inbox(v); /* the newest samples and acks count */
    struct vevent *e = fv_vpp__event_find(v, id);
    json_t *j = e ? event_summary(v, e) : NULL;
    if (j) {
        int64_t now = (int64_t)fv_now_ms();
        json_t *sites = json_array(), *tr = json_array();
        for (size_t i = 0; sites && i < e->na; i++) {
            const struct vassign *a = &e->a[i];
            char why[120];
            const char *st = site_status(e, a, now, why, sizeof why);
            json_t *s = json_pack("{s:s,s:f,s:s,s:b}", "site", a->site->id, "setpoint_kw",
                                  a->setpoint_kw, "status", st, "acked", a->acked);
            if (s && why[0]) json_object_set_new(s, "reason", json_string(why));
            if (s && a->site->have)
                json_object_set_new(s, "battery_kw", json_real(a->site->s.battery_kw));
            json_array_append_new(sites, s);
        }
        for (size_t i = 0; tr && i < e->ntr; i++)
            json_array_append_new(tr, json_pack("{s:I,s:f,s:f}", "t", (json_int_t)e->tr[i].t,
                                                "target_kw", e->tr[i].target_kw, "delivered_kw",
                                                e->tr[i].delivered_kw));
        json_object_set_new(j, "planned_kw", json_real(e->plan.planned_kw));
        json_object_set_new(j, "deliverable_kw", json_real(e->plan.deliverable_kw));
        json_object_set_new(j, "feasible", json_boolean(e->plan.feasible));
        json_object_set_new(j, "delivered_kw",
                            json_real(e->state == EV_ACTIVE ? fv_vpp__delivered_kw(e, now) : 0));
        double avg = fv_vpp__delivered_avg(e);
        json_object_set_new(j, "forecast_kw",
                            isnan(e->forecast_kw) ? json_null() : json_real(e->forecast_kw));
        json_object_set_new(j, "delivered_avg_kw", isnan(avg) ? json_null() : json_real(avg));
        json_object_set_new(j, "sites", sites ? sites : json_array());
        json_object_set_new(j, "tracking", tr ? tr : json_array());
    }
    pthread_mutex_unlock(&v->mu);
    return j;
}

/* V5: e's roster from vpp.db into out->sites (grown as needed), opted-out sites left out;
 * *found: whether e has a roster. Under v->mu. */
static int roster_sites(struct fv_vpp *v, const struct vevent *e, struct fv_vpp_event_info *out,
                        int *found)
{
    *found = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(v->db, "SELECT site FROM vpp_event_sites WHERE event = ? ORDER BY site",
                           -1, &st, NULL) != SQLITE_OK)
        return FV_EIO;
    sqlite3_bind_text(st, 1, e->id, -1, SQLITE_TRANSIENT);
    int rc = FV_OK, step;
    size_t cap = v->sites.n + 1;
    while (rc == FV_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *site = (const char *)sqlite3_column_text(st, 0);
        if (site == NULL || site[0] == '\0') {
            *found = 1; /* the marker */
            continue;
        }
        if (fv_vpp__opted_out(e, site)) continue;
        if (out->nsites + 1 >= cap) {
            void *p = realloc(out->sites, 2 * cap * sizeof *out->sites);
            if (p == NULL) {
                rc = FV_ENOMEM;
                break;
            }
            out->sites = p;
            cap *= 2;
        }
        snprintf(out->sites[out->nsites++], sizeof out->sites[0], "%s", site);
    }
    if (rc == FV_OK && step != SQLITE_DONE) rc = FV_EIO;
    sqlite3_finalize(st);
    if (rc == FV_OK && !*found) out->nsites = 0; /* no roster: rows without marker ignored */
    return rc;
}

int fv_vpp_event_info(struct fv_vpp *v, const char *id, struct fv_vpp_event_info *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&v->mu);
    struct vevent *e = fv_vpp__event_find(v, id);
    int rc = e && e->prog >= 0 ? FV_OK : FV_ENOENT;
    if (rc == FV_OK) {
        snprintf(out->id, sizeof out->id, "%s", e->id);
        out->program = v->progs[e->prog];
        out->start_ms = e->start_ms;
        out->end_ms = e->end_ms;
        out->state = fv_vpp__ev_state_names[e->state];
        out->sites = calloc(v->sites.n + 1, sizeof *out->sites);
        out->excluded = calloc(v->nev + v->ndr + 1, sizeof *out->excluded);
        out->site_days = calloc(v->ndr + 1, sizeof *out->site_days);
        if (out->sites == NULL || out->excluded == NULL || out->site_days == NULL) rc = FV_ENOMEM;
    }
    /* V5: a started event settles its roster (the sites enrolled when it started, minus
     * those that opted out of it); one not started yet, or started before rosters were
     * kept, the sites enrolled now. */
    int roster = 0;
    if (rc == FV_OK) rc = roster_sites(v, e, out, &roster);
    for (size_t i = 0; rc == FV_OK && !roster && i < v->sites.cap; i++) {
        const struct vsite *s = v->sites.slots[i].val;
        if (v->sites.slots[i].hash && s && s->prog == e->prog && !fv_vpp__opted_out(e, s->id))
            snprintf(out->sites[out->nsites++], sizeof out->sites[0], "%s", s->id);
    }
    /* Other events' days, of every program: a site's baseline never reads a day the fleet
     * was dispatched (issue 10 item 7: event days and other DR days left out). */
    for (size_t i = 0; rc == FV_OK && i < v->nev; i++) {
        const struct vevent *o = v->ev[i];
        struct fv_vpp_local lt;
        if (o != e && o->state != EV_CANCELLED &&
            fv_vpp_local_time(&out->program, o->start_ms, &lt) == FV_OK)
            out->excluded[out->nexcluded++] = lt.date;
    }
    for (size_t i = 0; rc == FV_OK && i < v->ndr; i++) {
        if (v->dr[i].site[0] == '\0') {
            out->excluded[out->nexcluded++] = v->dr[i].date;
        } else {
            struct fv_vpp_site_day *d = &out->site_days[out->nsite_days++];
            snprintf(d->site, sizeof d->site, "%s", v->dr[i].site);
            d->date = v->dr[i].date;
        }
    }
    pthread_mutex_unlock(&v->mu);
    if (rc) fv_vpp_event_info_free(out);
    return rc;
}

void fv_vpp_event_info_free(struct fv_vpp_event_info *info)
{
    free(info->sites);
    free(info->excluded);
    free(info->site_days);
    info->sites = NULL;
    info->excluded = NULL;
    info->site_days = NULL;
    info->nsites = info->nexcluded = info->nsite_days = 0;
}

int fv_vpp_sites(struct fv_vpp *v, const char *program, struct fv_vpp_site_now **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&v->mu);
    fv_vpp__drain_inbox(v); /* the newest samples count */
    int p = program ? fv_vpp__prog_index(v, program) : -1;
    int rc = program && p < 0 ? FV_ENOENT : FV_OK;
    struct fv_vpp_site_now *arr = rc == FV_OK ? calloc(v->sites.n + 1, sizeof *arr) : NULL;
    if (rc == FV_OK && arr == NULL) rc = FV_ENOMEM;
    for (size_t i = 0; rc == FV_OK && i < v->sites.cap; i++) {
        const struct vsite *s = v->sites.slots[i].val;
        if (!v->sites.slots[i].hash || s == NULL || s->prog < 0 || (program && s->prog != p))
            continue;
        struct fv_vpp_site_now *x = &arr[(*n)++];
        snprintf(x->id, sizeof x->id, "%s", s->id);
        x->have = s->have;
        x->s = s->s;
        x->rx_ms = s->rx_ms;
    }
    pthread_mutex_unlock(&v->mu);
    if (rc) {
        free(arr);
        *n = 0;
        return rc;
    }
    *out = arr;
    return FV_OK;
}

double fv_vpp__delivered_avg(const struct vevent *e)
{
    if (e->ntr == 0) return e->delivered_avg_kw;
    double sum = 0;
    for (size_t i = 0; i < e->ntr; i++)
        sum += e->tr[i].delivered_kw;
    return sum / (double)e->ntr;
}

void fv_vpp__keep_result(struct fv_vpp *v, const struct vevent *e)
{
    if (fv_vpp__db_run(v->db,
                       "INSERT INTO vpp_event_results(event, forecast_kw, delivered_avg_kw) "
                       "VALUES (?, ?, ?) ON CONFLICT(event) DO UPDATE SET "
                       "forecast_kw = excluded.forecast_kw, "
                       "delivered_avg_kw = excluded.delivered_avg_kw",
                       "tdd", e->id, e->forecast_kw, fv_vpp__delivered_avg(e)) != FV_OK)
        fv_warn("vpp: cannot keep the forecast and delivery of event %s", e->id);
}

void fv_vpp_event_forecast(struct fv_vpp *v, const char *id, double kw)
{
    pthread_mutex_lock(&v->mu);
    struct vevent *e = fv_vpp__event_find(v, id);
    if (e) {
        e->forecast_kw = kw;
        fv_vpp__keep_result(v, e);
    }
    pthread_mutex_unlock(&v->mu);
}

int fv_vpp_season(struct fv_vpp *v, const char *program, int year, char (**ids)[FV_VPP_ID_MAX],
                  size_t *n)
{
    *ids = NULL;
    *n = 0;
    pthread_mutex_lock(&v->mu);
    int p = fv_vpp__prog_index(v, program);
    int rc = p < 0 ? FV_ENOENT : FV_OK;
    char(*arr)[FV_VPP_ID_MAX] = rc == FV_OK ? calloc(v->nev + 1, sizeof *arr) : NULL;
    if (rc == FV_OK && arr == NULL) rc = FV_ENOMEM;
    for (size_t i = 0; rc == FV_OK && i < v->nev; i++) {
        const struct vevent *e = v->ev[i];
        struct fv_vpp_local lt;
        if (e->prog == p && e->state == EV_COMPLETED &&
            fv_vpp_local_time(&v->progs[p], e->start_ms, &lt) == FV_OK && lt.year == year)
            snprintf(arr[(*n)++], FV_VPP_ID_MAX, "%s", e->id);
    }
    pthread_mutex_unlock(&v->mu);
    if (rc) {
        free(arr);
        *n = 0;
        return rc;
    }
    *ids = arr;
    return FV_OK;
}

json_t *fv_vpp_site_json(struct fv_vpp *v, const char *site)
{
    pthread_mutex_lock(&v->mu);
    const struct vsite *s = fv_vpp__site_get(v, site, 0);
    json_t *opts = json_array(), *j = NULL;
    sqlite3_stmt *st = NULL;
    if (opts && sqlite3_prepare_v2(v->db,
                                   "SELECT event, at_ms FROM vpp_optouts WHERE site = ? "
                                   "ORDER BY at_ms",
                                   -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, site, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(st) == SQLITE_ROW)
            json_array_append_new(opts, json_pack("{s:s,s:I}", "event",
                                                  (const char *)sqlite3_column_text(st, 0), "at_ms",
                                                  (json_int_t)sqlite3_column_int64(st, 1)));
    }
    sqlite3_finalize(st);
    json_t *dr = fv_vpp__dr_json(v, site);
    if (opts && dr && (s || json_array_size(opts) || json_array_size(dr)))
        j = json_pack("{s:o,s:O,s:O}", "program",
                      s && s->prog >= 0 ? json_string(v->progs[s->prog].name) : json_null(),
                      "opt_outs", opts, "dr_days", dr);
    json_decref(opts);
    json_decref(dr);
    pthread_mutex_unlock(&v->mu);
    return j;
}

int fv_vpp_forget_site(struct fv_vpp *v, const char *site)
{
    pthread_mutex_lock(&v->mu);
    fv_vpp__drain_inbox(v);
    struct vsite *s = fv_vpp__site_get(v, site, 0);
    for (size_t i = 0; s && i < v->nev; i++) { /* no event keeps a pointer to it */
        struct vevent *e = v->ev[i];
        size_t w = 0;
        for (size_t k = 0; k < e->na; k++)
            if (e->a[k].site != s) e->a[w++] = e->a[k];
        e->na = w;
        size_t o = 0;
        for (size_t k = 0; k < e->nopt; k++)
            if (strcmp(e->optout[k], site) != 0) memcpy(e->optout[o++], e->optout[k], SITE_ID_MAX);
        e->nopt = o;
    }
    if (s) free(fv_map_del(&v->sites, site, strlen(site)));
    int rc = fv_vpp__db_run(v->db, "DELETE FROM vpp_sites WHERE site = ?", "t", site);
    if (rc == FV_OK)
        rc = fv_vpp__db_run(v->db, "DELETE FROM vpp_optouts WHERE site = ?", "t", site);
    if (rc == FV_OK)
        rc = fv_vpp__db_run(v->db, "DELETE FROM vpp_event_sites WHERE site = ?", "t", site);
    if (rc == FV_OK) rc = fv_vpp__dr_forget(v, site);
    pthread_mutex_unlock(&v->mu);
    return rc;
}
