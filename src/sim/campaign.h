/*
 * campaign.h - a simulated vehicle's side of data-collection campaigns (data/campaign.h,
 * docs/protocol.md "Campaigns"): it takes `campaign` start and stop messages, acks them,
 * evaluates each campaign's trigger on its own signals with the server's evaluator
 * (data/trigger.h), and reports hits within its budgets.
 *
 * Vehicle rules:
 *  VC1 a start whose trigger does not compile on the vehicle is acked "refused" with the
 *      reason; a start of a campaign it runs already is acked again, unchanged; at most
 *      FV_SIM_CAMPAIGNS_MAX campaigns run at once (more are refused);
 *  VC2 a stop ends the campaign (acked even when it is unknown: a stop is idempotent);
 *  VC3 a hit is reported when the trigger fires (T4), not within the post window of the
 *      previous hit of the same campaign (its clip covers it), at most clips_per_day per
 *      UTC day and total_clips in all, and never after end_ms;
 *  VC4 each reported hit asks the clip hook (fv_sim_clip_upload_fn) to upload its clip.
 *
 * Threading: a struct fv_sim_campaigns belongs to its vehicle's thread (the run's).
 */
#ifndef FV_SIM_CAMPAIGN_H
#define FV_SIM_CAMPAIGN_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "wire/payload.h"

#define FV_SIM_CAMPAIGNS_MAX 8

/* What a hit asks the clip uploader for: campaign, clip id, trigger time and window, the
 * channels to record. Pointers valid during the call only. */
struct fv_sim_clip_req {
    const char *vin;
    const char *campaign;
    const char *clip_id;
    int64_t trigger_ms;
    int pre_s, post_s;
    const char *const *channels;
    size_t nchannels;
};

/* The clip hook (VC4): starts uploading req's clip. FV_OK, or an error with a reason. */
typedef int (*fv_sim_clip_upload_fn)(void *arg, const struct fv_sim_clip_req *req, char *err,
                                     size_t errlen);

/* The hook until the clip uploader is wired in: uploads nothing, returns FV_ESTATE with
 * "clip upload not built". */
int fv_sim_clip_upload_stub(void *arg, const struct fv_sim_clip_req *req, char *err, size_t errlen);

struct fv_sim_campaigns;

/* FV_OK or FV_ENOMEM. */
int fv_sim_campaigns_new(struct fv_sim_campaigns **out);
void fv_sim_campaigns_free(struct fv_sim_campaigns *cs);
/* Campaigns running now. */
size_t fv_sim_campaigns_count(const struct fv_sim_campaigns *cs);

/* A `campaign` message (VC1, VC2): the `campaign_ack` payload to send is appended to ack
 * (nothing when the message is no campaign message: FV_EPROTO). FV_OK, FV_EPROTO, FV_ENOMEM. */
int fv_sim_campaigns_message(struct fv_sim_campaigns *cs, const unsigned char *p, size_t len,
                             struct fv_buf *ack);

/* The vehicle's signals at t_ms (VC3, VC4): every campaign's trigger steps; for each hit the
 * `campaign_hit` payload is appended to hits[k] (k < max_hits; *nhits counts them) and the
 * clip hook is called (its failure is counted in *clip_failures, not fatal). */
int fv_sim_campaigns_sample(struct fv_sim_campaigns *cs, const char *vin, const struct fv_datum *d,
                            size_t n, int64_t t_ms, fv_sim_clip_upload_fn upload, void *upload_arg,
                            struct fv_buf *hits, size_t max_hits, size_t *nhits,
                            uint64_t *clip_failures);

#endif
