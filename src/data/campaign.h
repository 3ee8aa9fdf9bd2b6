/*
 * campaign.h - data-collection campaigns (issue 12; docs/data-engine.md "Campaigns"): what
 * to record (a trigger over signals, windows, channels), from which vehicles (a target
 * condition on their latest signals, a region, consent to purpose `clips` - decided by the
 * caller, api/campaign_api.c), within which budgets and schedule; pushed to the vehicles
 * over the downlink (wire/downlink.h) and counted as they acknowledge and report hits.
 *
 * The spec (fv_campaign_spec_parse: pure, any thread) is a JSON object:
 *   {"name": N, "trigger": EXPR (data/trigger.h), "pre_s": 10, "post_s": 5,
 *    "channels": ["VehicleSpeed", "camera_front", "imu", ...],
 *    "target": EXPR over latest values (optional), "region": {"min_lat", "min_lon",
 *    "max_lat", "max_lon"} (optional), "budgets": {"clips_per_vehicle_per_day": n,
 *    "total_clips": n, "total_bytes": n}, "start": ms, "end": ms}
 * Limits: FV_CAMPAIGN_* below; every error names the member (and the column for triggers).
 *
 * Wire (docs/protocol.md "Campaigns"): downlink topic `campaign`, JSON
 *   {"v":1, "op":"start", "id", "trigger", "pre_s", "post_s", "channels", "budgets":
 *    {"clips_per_day", "total_clips", "total_bytes"}, "end_ms", "upload": {...}} or
 *   {"v":1, "op":"stop", "id"};
 * uplink `campaign_ack` {"id", "op", "status": "ok" | "refused", "reason"} and
 * `campaign_hit` {"id", "trigger_ms", "clip"}.
 *
 * Service rules:
 *  C1 a start message is sent to every target of an active campaign that has not acked it:
 *     at once, again every FV_CAMPAIGN_RESEND_MS, and at once when the device connects (the
 *     downlink delivers at most once, D1); "delivered" counts the targets that acked it;
 *  C2 a stopped or finished campaign sends a stop message the same way to every target that
 *     acked the start, until each acks the stop;
 *  C3 a hit counts only from a target of a campaign that is active (or stopped less than
 *     FV_CAMPAIGN_GRACE_MS ago: hits in flight), within clips_per_vehicle_per_day (UTC
 *     days) and total_clips; other hits are counted as refused. Reaching total_clips or
 *     total_bytes, or the end time, finishes the campaign (C2);
 *  C4 a campaign whose start is in the future is "scheduled" and sends nothing until then;
 *  C5 the campaign's state and counts are in the campaigns database (DATA/campaigns.db):
 *     a restart resends what was not acked;
 *  C6 a target whose owner withdraws consent to clips (through the API) is treated as if its
 *     campaigns had stopped: no start, a stop until acked, no hit counted, no clip taken.
 * Device ids stay inside the service: the views (fv_campaign_json) hold counts only.
 *
 * Threads: the service runs its own thread. fv_campaign_* calls from the API thread (and
 * fv_campaign_may_upload, fv_campaign_exists, fv_campaign_clip_stored from the clip server's
 * thread) take the service's mutex for in-memory work plus SQLite commits (a turn's acks and
 * hits first, as the thread's turn would); the listener runs on the ingest
 * loop and only appends to an inbox under its own mutex (no SQL on the ingest loop).
 */
#ifndef FV_DATA_CAMPAIGN_H
#define FV_DATA_CAMPAIGN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "wire/downlink.h"

#define FV_TOPIC_CAMPAIGN     "campaign"
#define FV_TOPIC_CAMPAIGN_ACK "campaign_ack"
#define FV_TOPIC_CAMPAIGN_HIT "campaign_hit"

#define FV_CAMPAIGN_ID_MAX       40
#define FV_CAMPAIGN_NAME_MAX     80
#define FV_CAMPAIGN_CHANNELS_MAX 32
#define FV_CAMPAIGN_CHANNEL_MAX  63
#define FV_CAMPAIGN_WINDOW_MAX_S 300
#define FV_CAMPAIGN_RESEND_MS    10000
#define FV_CAMPAIGN_GRACE_MS     60000

/* Sensor channels a campaign may record besides signals. */
#define FV_CAMPAIGN_SENSORS                                                                        \
    "camera_front", "camera_rear", "camera_left", "camera_right", "imu", "gnss", "can"

struct fv_campaign_spec {
    char name[FV_CAMPAIGN_NAME_MAX + 1];
    char trigger[1025];
    char target[1025]; /* "" = every vehicle */
    int have_region;
    double min_lat, min_lon, max_lat, max_lon;
    int pre_s, post_s;
    char channels[FV_CAMPAIGN_CHANNELS_MAX][FV_CAMPAIGN_CHANNEL_MAX + 1];
    size_t nchannels;
    int64_t clips_per_day, total_clips, total_bytes;
    int64_t start_ms, end_ms;
};

/* Parses and checks a spec (now_ms: for the schedule's defaults and checks). FV_OK, or
 * FV_EINVAL with err naming the member ("trigger: column 14: expected ')'"). */
int fv_campaign_spec_parse(const char *json, size_t len, int64_t now_ms,
                           struct fv_campaign_spec *out, char *err, size_t errlen);
/* The spec as JSON (new reference, NULL: out of memory). */
json_t *fv_campaign_spec_json(const struct fv_campaign_spec *s);
/* The downlink start message of campaign id (appended to a malloc'd string; NULL: OOM). */
char *fv_campaign_start_msg(const char *id, const struct fv_campaign_spec *s);

struct fv_campaign;

/* Opens the service: campaigns from db_path, its thread started. dl: how messages reach
 * vehicles. FV_OK, FV_EIO (err says why), FV_ENOMEM. */
int fv_campaign_open(const char *db_path, struct fv_downlink dl, struct fv_campaign **out,
                     char *err, size_t errlen);
/* Stops the thread and frees the service. NULL is ignored. */
void fv_campaign_close(struct fv_campaign *c);
/* The listener for the ingest (campaign_ack, campaign_hit, connections); valid until close. */
const struct fv_downlink_listener *fv_campaign_listener(struct fv_campaign *c);

/* Creates a campaign from a checked spec with its targets (device ids the caller chose:
 * condition, region, consent). FV_OK with its id; FV_EIO. */
int fv_campaign_create(struct fv_campaign *c, const struct fv_campaign_spec *s,
                       const char *const *targets, size_t ntargets, int64_t now_ms,
                       char id[FV_CAMPAIGN_ID_MAX], char *err, size_t errlen);
/* Stops an active or scheduled campaign (C2). FV_OK, FV_ENOENT, FV_ESTATE (over already). */
int fv_campaign_stop(struct fv_campaign *c, const char *id, int64_t now_ms);
/* Views (new references; counts only, never device ids): every campaign; one (NULL: none). */
json_t *fv_campaign_list_json(struct fv_campaign *c);
json_t *fv_campaign_json(struct fv_campaign *c, const char *id);

/* For the clip upload (clip thread): may device upload a clip of campaign id - it was sent
 * the campaign and acked it, its owner did not withdraw (C6), it reported a hit, the
 * campaign is active (or in its grace, C3) and its total_clips and total_bytes are not used
 * up? 1 yes, 0 no with why (NULL allowed) saying which. A clip stored: counted (C3). */
int fv_campaign_may_upload(struct fv_campaign *c, const char *id, const char *device, char *why,
                           size_t n);
/* 1 if campaign id exists (any state), else 0. */
int fv_campaign_exists(struct fv_campaign *c, const char *id);
/* Any thread: campaign id's recording window (its pre_s and post_s, in ms) and 1, or 0 when
 * no campaign has that id. */
int fv_campaign_window(struct fv_campaign *c, const char *id, int64_t *pre_ms, int64_t *post_ms);
void fv_campaign_clip_stored(struct fv_campaign *c, const char *id, const char *device,
                             uint64_t bytes);
/* A device's own campaign data (its owner's: GDPR export): {"campaigns": [{"id", "name",
 * "state", "acked", "stop_acked", "hits"}...]} of every campaign that targeted it (new
 * reference; NULL: none). */
json_t *fv_campaign_device_json(struct fv_campaign *c, const char *device);
/* The device's owner withdrew consent to clips (C6): every campaign that targets it sends
 * it no start again and a stop until acked (if it acked the start), counts no more hits from
 * it and takes no clip of it. FV_OK (a failed write is logged; the state in memory holds). */
int fv_campaign_withdraw(struct fv_campaign *c, const char *device);
/* Erasure: forgets device in every campaign (its counts stay in the totals). */
int fv_campaign_forget_device(struct fv_campaign *c, const char *device);

/* One turn of the service's work now, under the service's mutex (tests; the thread does it
 * every second). */
void fv_campaign_tick(struct fv_campaign *c, int64_t now_ms);

#endif
