/*
 * server_data.c - the data engine's and the erasure's hooks into the server (server_int.h):
 * erasing a device (keys, state, clips in upload, the VPP's and campaigns' records), the
 * erasure's purge of clips and dataset shards, and the clip endpoint with its hooks (the
 * device's position, the campaign checks and windows).
 *
 * Threads: each hook says which thread calls it.
 */
#include "server/server_int.h"

/* API thread: the erasure destroys keys through the API's keystore; the ingest drops its
 * cached keys before its next record, and the device's state goes now. */
int fv_server__erase_device(void *arg, const char *device, const struct fv_guard_ctx *ctx,
                            char *err, size_t errlen)
{
    struct fv_server *srv = arg;
    int rc = fv_erasure_erase(&srv->erasure, srv->store, device, ctx ? ctx->principal : NULL,
                              ctx ? ctx->ticket : NULL, err, errlen);
    if (rc) return rc;
    fv_clip_server_forget(srv->clip_server, device); /* its uploads in progress */
    fv_ingest_keys_changed(srv->ing);
    fv_server__wake_loop(srv);
    if (srv->vpp && fv_vpp_forget_site(srv->vpp, device) != FV_OK)
        fv_warn("erasure: the VPP's record of the site could not be deleted from vpp.db");
    if (srv->campaigns && fv_campaign_forget_device(srv->campaigns, device) != FV_OK)
        fv_warn("erasure: the device's campaign targets could not be deleted from campaigns.db");
    struct fv_device *d = fv_fleet_find(&srv->fleet, device);
    if (d) {
        fv_fleet_lock(&srv->fleet);
        fv_device_wipe(d);
        fv_fleet_unlock(&srv->fleet);
    }
    return FV_OK;
}

/* Erasure's purge hook (privacy/erasure.h): the subject's clips, and the shards of every
 * dataset version that holds the subject (data/dataset.h D8: they hold its decrypted clips;
 * the subject's dataset identifier, data/ds_clips.h S4, needs only the pseudonym), on the
 * API thread (or at start, before the threads) with the API's keystore. */
int fv_server__purge_clips(void *arg, const char *pseudo, char *err, size_t errlen)
{
    struct fv_server *srv = arg;
    char sid[33];
    size_t n = 0;
    int rc = fv_ds_clips_subject(srv->api_keys, pseudo, sid);
    if (rc == FV_OK)
        rc = fv_ds_erase_subject(srv->datasets_dir, sid, (int64_t)fv_now_ms(), &n, err, errlen);
    else
        fv_seterr(err, errlen, "the subject's dataset identifier: %s", fv_strerror(rc));
    if (rc == FV_OK && n)
        fv_info("erasure: %zu dataset version(s) held the subject: shards deleted", n);
    if (rc == FV_OK) rc = fv_clip_store_purge(srv->api_keys, srv->clips_dir, pseudo, err, errlen);
    /* Cluster: the key leaves the KV bucket once this node's erasure is durable (jskeys.h J2) */
    if (rc == FV_OK && srv->jskeys) rc = fv_jskeys_purge(srv->jskeys, pseudo, err, errlen);
    return rc;
}

/* The clip endpoint's place hook (its thread): the device's latest position, copied under
 * the fleet's lock (F1). */
static int device_position(void *arg, const char *device, double *lat, double *lon)
{
    struct fv_server *srv = arg;
    struct fv_device *d = fv_fleet_find(&srv->fleet, device);
    if (d == NULL) return 0;
    int found = 0;
    uint64_t best = 0;
    fv_fleet_lock(&srv->fleet);
    for (uint32_t i = 0; i < d->nsignals; i++) {
        const struct fv_signal_state *ss = &d->signals[i];
        if (ss->value.kind != FV_VK_LOCATION || ss->time_ms < best) continue;
        *lat = ss->value.u.loc.lat;
        *lon = ss->value.u.loc.lon;
        best = ss->time_ms;
        found = 1;
    }
    fv_fleet_unlock(&srv->fleet);
    return found;
}

/* The clip endpoint's campaign check (its thread; the campaign service locks its own state):
 * the campaign service decides for the campaigns it knows; an id it does not know is accepted
 * only if clips.campaigns lists it (uploads outside any campaign: docs/data-engine.md). */
static int clip_campaign_ok(void *arg, const char *device, const char *campaign_id, char *why,
                            size_t n)
{
    struct fv_server *srv = arg;
    if (fv_campaign_may_upload(srv->campaigns, campaign_id, device, why, n)) return 1;
    if (fv_campaign_exists(srv->campaigns, campaign_id)) return 0;
    return fv_clips_campaign_listed((void *)&srv->clips, device, campaign_id, why, n);
}

/* A stored clip counts in its campaign's status (clips_uploaded, bytes; C3's budgets). */
static void clip_counted(void *arg, const char *device, const char *campaign, uint64_t bytes)
{
    struct fv_server *srv = arg;
    fv_campaign_clip_stored(srv->campaigns, campaign, device, bytes);
}

/* The clip endpoint's signal window (its thread): the campaign's, when the service knows it
 * (clip_server.h X1). */
static int clip_window(void *arg, const char *campaign, int64_t *pre_ms, int64_t *post_ms)
{
    struct fv_server *srv = arg;
    return fv_campaign_window(srv->campaigns, campaign, pre_ms, post_ms);
}

/* The clip endpoint and the de-identification worker, when clips.listen is set. */
int fv_server__open_clips(struct fv_server *srv, char *err, size_t errlen)
{
    if (!srv->clips.enabled) return FV_OK;
    int rc = fv_clip_deid_start(&srv->clip_deid, &srv->clips, srv->cfg->data_dir, &srv->kek, err,
                                errlen);
    if (rc) return rc;
    struct fv_clip_server_cfg cc = {.certs_dir = srv->cfg->certs_dir,
                                    .data_dir = srv->cfg->data_dir,
                                    .clips = &srv->clips,
                                    .kek = &srv->kek,
                                    .campaign_ok = clip_campaign_ok,
                                    .campaign_arg = srv,
                                    .clip_stored = clip_counted,
                                    .place = device_position,
                                    .place_arg = srv,
                                    .grid_m = srv->guard.grid_m,
                                    .stored = fv_clip_deid_wake,
                                    .stored_arg = srv->clip_deid,
                                    .store = srv->store,
                                    .window = clip_window,
                                    .signal_counts = srv->m.clip_signals};
    srv->api.deid = srv->clip_deid; /* its audit records are written on the API thread (D6) */
    rc = fv_clip_server_start(&srv->clip_server, &cc, err, errlen);
    srv->api.clips = srv->clip_server; /* likewise (clip_server.h X3) */
    return rc;
}
