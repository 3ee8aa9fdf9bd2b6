/*
 * campaigns.c - campaigns in the simulator's run (simulate.h; the vehicle's rules are
 * campaign.h VC1-VC4): a vehicle's `campaign` messages answered with `campaign_ack`, its
 * samples fed to its campaigns and their hits sent as `campaign_hit` records. Acks and hits
 * go through the vehicle's delivery window like its other records (records.c R1-R4: kept
 * until the server acks them, resent otherwise).
 *
 * Threading: the run's thread only (simulate_int.h).
 */
#include "sim/simulate_int.h"
#include "util/clock.h"
#include "util/err.h"

void fv_sim__campaign_message(struct run *r, struct veh *v, const unsigned char *p, size_t len)
{
    r->st->campaigns++;
    if (v->camp == NULL && fv_sim_campaigns_new(&v->camp) != FV_OK) {
        fv_sim__set_fatal(r, FV_ENOMEM, "a campaign");
        return;
    }
    /* With a full window: no answer; the server sends it again (C1). */
    if (fv_sim__window_full(r, v)) return;
    r->pl.len = 0;
    int rc = fv_sim_campaigns_message(v->camp, p, len, &r->pl);
    if (rc == FV_EPROTO) {
        r->st->bad_replies++;
        return;
    }
    if (rc == FV_OK) rc = fv_sim__push(r, v, &r->pl, 0, fv_now_ms(), REC_CAMPAIGN_ACK);
    if (rc) fv_sim__set_fatal(r, rc, "a campaign ack");
}

void fv_sim__campaign_sample(struct run *r, struct veh *v, uint64_t t_ms)
{
    if (fv_sim_campaigns_count(v->camp) == 0) return;
    size_t n = fv_sim_vehicle_sample(v->model, fv_sim_signal_count(), r->sample), nhits = 0;
    int rc = fv_sim_campaigns_sample(v->camp, v->vin, r->sample, n, (int64_t)t_ms, r->clip_upload,
                                     r->clip_upload_arg, r->hits, CAMPAIGN_HITS_MAX, &nhits,
                                     &r->st->clip_failures);
    for (size_t i = 0; rc == FV_OK && i < nhits; i++) {
        rc = fv_sim__push(r, v, &r->hits[i], 0, t_ms, REC_CAMPAIGN_HIT);
        r->st->campaign_hits++;
    }
    if (rc) fv_sim__set_fatal(r, rc, "a campaign hit");
}
