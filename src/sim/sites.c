/*
 * sites.c - the run's energy sites (simulate.h "Sites"): their set-up, history back-fill,
 * samples and the commands they answer. The model of a home is site.c; the delivery window
 * its records go through is records.c (R1-R4 hold: records are added with fv_sim__push).
 *
 * Threading: the run's thread only (simulate_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/simulate_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define HISTORY_STEP_MS 300000ULL /* one history sample per 5 minutes */
#define DAY_MS          86400000ULL
/* History in flight per site: a whole window (--max-inflight) from every site at once
 * would keep the server's acks slower than the resend timeout and send it all twice. */
#define HISTORY_INFLIGHT 64

static const char SITE_HEADERS[] = "X-Network-Interface: wifi\r\n"
                                   "User-Agent: fleetvault-sim-site/1 (energy_device)\r\n";

int fv_sim__sites_setup(struct run *r, char *err, size_t errlen)
{
    const struct fv_sim_opts *o = r->o;
    r->site_target = r->target;
    r->site_target.headers = SITE_HEADERS;
    uint64_t now = fv_now_ms();
    uint64_t span = (uint64_t)(o->site_days * (double)DAY_MS);
    uint64_t first = now / HISTORY_STEP_MS * HISTORY_STEP_MS;
    first = first > span ? first - span : 0;
    r->bf_end_ms = now;
    struct fv_sim_site_cfg cfg = {.opt_out_pct = o->opt_out_pct,
                                  .offline_pct = o->offline_pct,
                                  .utc_offset_h = o->site_utc_offset_h};
    for (uint32_t i = 0; i < o->sites; i++) {
        struct veh *v = &r->v[o->vehicles + i];
        int rc = fv_sim_vin(o->site_prefix, i, v->vin, err, errlen);
        if (rc) return rc;
        v->site = malloc(sizeof *v->site);
        if (v->site == NULL) {
            fv_seterr(err, errlen, "out of memory for %u sites", o->sites);
            return FV_ENOMEM;
        }
        /* The model starts an hour before its first sample, so that sample is not its
         * initial state. */
        fv_sim_site_init(v->site, o->seed, i, &cfg, first > 3600000 ? first - 3600000 : 0);
        v->bf_next_ms = span > 0 ? first : now;
        if (v->bf_next_ms < r->bf_end_ms) r->bf_pending++;
    }
    return FV_OK;
}

void fv_sim__site_sample(struct run *r, struct veh *v, uint64_t t_ms)
{
    struct fv_sim_site *s = v->site;
    fv_sim_site_step(s, t_ms);
    if (!fv_sim_site_online(s, s->t_ms)) return; /* an outage: nothing is reported */
    struct fv_site_sample smp;
    fv_sim_site_sample(s, &smp);
    r->pl.len = 0;
    int rc = fv_site_encode(&smp, v->vin, &r->pl);
    if (rc == FV_OK) rc = fv_sim__push(r, v, &r->pl, FV_SITE_SIGNALS, smp.created_at_ms, REC_SITE);
    if (rc) {
        fv_sim__set_fatal(r, rc, "a site sample");
        return;
    }
    r->st->site_samples++;
}

uint64_t fv_sim__sites_backfill(struct run *r, uint32_t max)
{
    uint64_t made = 0;
    for (uint32_t i = r->o->vehicles; i < r->n && r->bf_pending > 0 && !r->fatal; i++) {
        struct veh *v = &r->v[i];
        for (uint32_t k = 0; k < max && v->bf_next_ms < r->bf_end_ms; k++) {
            if (fv_sim__window_full(r, v) || v->hi - v->lo >= HISTORY_INFLIGHT) break;
            uint64_t before = r->st->site_samples;
            fv_sim__site_sample(r, v, v->bf_next_ms);
            r->st->backfilled += r->st->site_samples - before; /* none in an outage */
            v->bf_next_ms += HISTORY_STEP_MS;
            made++;
            if (v->bf_next_ms >= r->bf_end_ms) r->bf_pending--;
        }
    }
    return made;
}

void fv_sim__site_command(struct run *r, struct veh *v, const unsigned char *p, size_t len)
{
    struct fv_site_command c;
    char id[128], event[FV_SIM_SITE_EVENT_MAX], reason[96];
    if (fv_site_command_decode(p, len, &c, id, sizeof id, event, sizeof event) != FV_OK) {
        r->st->bad_replies++;
        return;
    }
    r->st->commands++;
    /* In an outage, or with a full window: no answer; the server sends it again. */
    if (!fv_sim_site_online(v->site, fv_now_ms()) || fv_sim__window_full(r, v)) return;
    int status = fv_sim_site_command(v->site, &c, reason, sizeof reason);
    if (status != 1) {
        r->st->commands_refused++;
        fv_info("simulate: %s refused command %s (kind %d): %s", v->vin, id, c.kind, reason);
    }
    r->pl.len = 0;
    int rc = fv_site_ack_encode(id, status, reason, &r->pl);
    if (rc == FV_OK) rc = fv_sim__push(r, v, &r->pl, 0, fv_now_ms(), REC_ACK);
    if (rc) fv_sim__set_fatal(r, rc, "a command ack");
}

int fv_sim__site_resend_form(struct run *r, struct veh *v, const unsigned char *p, size_t len)
{
    struct fv_site_sample smp;
    char err[160];
    int rc = fv_site_decode(p, len, &smp, err, sizeof err);
    if (rc) return rc;
    smp.is_resend = 1;
    r->pl.len = 0;
    return fv_site_encode(&smp, v->vin, &r->pl);
}
