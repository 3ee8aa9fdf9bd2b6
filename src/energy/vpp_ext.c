/* vpp_ext.c - events from outside fleetvault and fleet aggregates (vpp_ext.h); shared
 * state in vpp_int.h. Every function takes the service's mutex. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "energy/vpp_ext.h"
#include "energy/vpp_int.h"
#include "util/clock.h"
#include "util/err.h"

/* Event hours the program used in the local year of t, leaving out event `skip` (X1). */
static double hours_used_but(const struct fv_vpp *v, int prog, int64_t t, const struct vevent *skip)
{
    struct fv_vpp_local lt, le;
    if (fv_vpp_local_time(&v->progs[prog], t, &lt) != FV_OK) return 0;
    double h = 0;
    for (size_t i = 0; i < v->nev; i++) {
        const struct vevent *e = v->ev[i];
        if (e == skip || e->prog != prog || e->state == EV_CANCELLED) continue;
        if (fv_vpp_local_time(&v->progs[prog], e->start_ms, &le) == FV_OK && le.year == lt.year)
            h += (double)(e->end_ms - e->start_ms) / 3.6e6;
    }
    return h;
}

int fv_vpp_event_update(struct fv_vpp *v, const char *id, int64_t start_ms, int64_t end_ms,
                        double target_kw, int max, char *reason, size_t len)
{
    if (!max && !(isfinite(target_kw) && target_kw > 0)) {
        fv_seterr(reason, len, "give target_kw > 0, or \"max\": true");
        return FV_EINVAL;
    }
    pthread_mutex_lock(&v->mu);
    struct vevent *e = fv_vpp__event_find(v, id);
    int rc = e == NULL                                                ? FV_ENOENT
             : (e->state == EV_COMPLETED || e->state == EV_CANCELLED) ? FV_ESTATE
                                                                      : FV_OK;
    if (rc == FV_ENOENT) fv_seterr(reason, len, "no event %s", id);
    if (rc == FV_ESTATE) fv_seterr(reason, len, "event %s is over", id);
    if (rc == FV_OK && e->state == EV_ACTIVE && start_ms != e->start_ms) {
        /* an event under way keeps its start: the sites are already delivering */
        start_ms = e->start_ms;
    }
    if (rc == FV_OK)
        rc = fv_vpp_event_check(&v->progs[e->prog], start_ms, end_ms,
                                hours_used_but(v, e->prog, start_ms, e), reason, len);
    if (rc == FV_OK) {
        rc = fv_vpp__db_run(v->db,
                            "UPDATE vpp_events SET start_ms = ?, end_ms = ?, target_kw = ?, max = ?"
                            " WHERE id = ?",
                            "iidit", start_ms, end_ms, max ? 0.0 : target_kw, (int64_t)(max != 0),
                            id);
        if (rc) fv_seterr(reason, len, "vpp.db cannot be written");
    }
    if (rc == FV_OK) {
        e->start_ms = start_ms;
        e->end_ms = end_ms;
        e->target_kw = max ? 0 : target_kw;
        e->max = max != 0;
        if (e->state == EV_ACTIVE && fv_vpp__replan(v, e, (int64_t)fv_now_ms()) != FV_OK)
            e->last_plan_ms = 0; /* V2 tries again at the next turn */
        pthread_cond_signal(&v->cv);
    }
    pthread_mutex_unlock(&v->mu);
    return rc;
}

static struct fv_vpp_site site_in(const struct vsite *s, int64_t now)
{
    return (struct fv_vpp_site){.online = fv_vpp__site_online(s, now),
                                .inverter_kw = s->s.inverter_kw,
                                .export_limit_kw = s->s.export_limit_kw,
                                .energy_kwh = s->s.energy_kwh,
                                .reserve_pct = s->s.reserve_pct,
                                .capacity_kwh = s->s.capacity_kwh};
}

int fv_vpp_capacity_now(struct fv_vpp *v, const char *program, int64_t start_ms, int64_t end_ms,
                        double *kw)
{
    *kw = 0;
    double hours = (double)(end_ms - start_ms) / 3.6e6;
    pthread_mutex_lock(&v->mu);
    fv_vpp__drain_inbox(v);
    int p = fv_vpp__prog_index(v, program);
    int64_t now = (int64_t)fv_now_ms();
    for (size_t i = 0; p >= 0 && hours > 0 && i < v->sites.cap; i++) {
        const struct vsite *s = v->sites.slots[i].val;
        if (!v->sites.slots[i].hash || s == NULL || s->prog != p || !s->have) continue;
        struct fv_vpp_site x = site_in(s, now);
        *kw += fv_vpp_deliverable_kw(&x, hours);
    }
    pthread_mutex_unlock(&v->mu);
    return p >= 0 ? FV_OK : FV_ENOENT;
}

int fv_vpp_fleet_now(struct fv_vpp *v, const char *program, struct fv_vpp_fleet_now *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&v->mu);
    fv_vpp__drain_inbox(v);
    int p = program ? fv_vpp__prog_index(v, program) : -1;
    int rc = program && p < 0 ? FV_ENOENT : FV_OK;
    int64_t now = (int64_t)fv_now_ms();
    for (size_t i = 0; rc == FV_OK && i < v->sites.cap; i++) {
        const struct vsite *s = v->sites.slots[i].val;
        if (!v->sites.slots[i].hash || s == NULL || s->prog < 0 || (program && s->prog != p))
            continue;
        out->sites++;
        if (!fv_vpp__site_online(s, now)) continue;
        out->online++;
        if (s->s.battery_kw > 0) out->delivered_kw += s->s.battery_kw;
        out->stored_kwh += s->s.energy_kwh;
        double avail = s->s.energy_kwh - s->s.reserve_pct / 100.0 * s->s.capacity_kwh;
        if (avail > 0) out->available_kwh += avail;
        struct fv_vpp_site x = site_in(s, now);
        out->deliverable_kw += fv_vpp_deliverable_kw(&x, 1.0);
    }
    pthread_mutex_unlock(&v->mu);
    return rc;
}

int fv_vpp_event_now(struct fv_vpp *v, const char *id, const char **state, double *target_kw,
                     double *delivered_kw)
{
    pthread_mutex_lock(&v->mu);
    fv_vpp__drain_inbox(v);
    const struct vevent *e = fv_vpp__event_find(v, id);
    if (e) {
        *state = fv_vpp__ev_state_names[e->state];
        int active = e->state == EV_ACTIVE;
        *target_kw = active ? e->plan.target_kw : 0;
        *delivered_kw = active ? fv_vpp__delivered_kw(e, (int64_t)fv_now_ms()) : 0;
    }
    pthread_mutex_unlock(&v->mu);
    return e ? FV_OK : FV_ENOENT;
}
