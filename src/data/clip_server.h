/*
 * clip_server.h - the clip upload endpoint (issue 12, item 2): its own thread with its own
 * libwebsockets context (no event loop shared with the ingest loop: chunk writes, fsyncs and
 * sealing never make a device's telemetry wait), listening on the config's clips.listen with
 * mutual TLS under the devices' CA. The device is the verified client certificate's
 * identity (crypto/certs.h I1-I4), as for the WebSocket sessions.
 *
 * Protocol (docs/protocol.md, "Clip upload"), JSON answers, errors {"error": "..."}:
 *   POST /clips/v1/uploads                  {clip_id, campaign_id, trigger, trigger_ms, size,
 *                                            sha256} -> 201 {upload_id, offset, size}
 *   POST /clips/v1/uploads/ID/chunk?offset=N  body: the bytes; header X-Chunk-SHA256
 *                                            -> 200 {upload_id, offset, size}
 *   GET  /clips/v1/uploads/ID                -> 200 {upload_id, offset, size}  (resume)
 *   POST /clips/v1/uploads/ID/finish         -> 201 {upload_id, clip_id, size, deid}
 * The state machine and its rules are data/clip_upload.h (U1-U6); a create is refused (422)
 * for a subject without consent to purpose "clips" (privacy/subjects.h) or a campaign the
 * vehicle was not sent (the campaign check given here); a finished clip goes into the clip
 * store (data/clip_store.h) under the subject (owner period) of its trigger time, which must
 * have consented to purpose "clips" then and still now, with the coarse place of the
 * vehicle's latest position.
 *
 * Threads: start and stop from the server's thread; the hooks given here are called on the
 * clip thread (campaign_ok, place: they must lock what they share), and after each clip is
 * stored clip_stored() (the campaign's counts) and stored() (the de-identification worker's
 * wake).
 */
#ifndef FV_DATA_CLIP_SERVER_H
#define FV_DATA_CLIP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "data/clip_upload.h"

struct fv_kek;

struct fv_clip_server_cfg {
    const char *certs_dir; /* server.crt, server.key, ca.crt (the devices' CA) */
    const char *data_dir;  /* clips under DATA/clips, metadata in DATA/catalog.db */
    const struct fv_clips_config *clips;
    const struct fv_kek *kek;        /* the clip thread opens a keystore of its own */
    fv_clip_campaign_fn campaign_ok; /* NULL: fv_clips_campaign_listed over clips */
    void *campaign_arg;
    /* The device's latest position (1) or none (0); coarsened here to grid_m. */
    int (*place)(void *arg, const char *device, double *lat, double *lon);
    void *place_arg;
    double grid_m; /* privacy/location.h L4 (the guard's grid; 0: 1000 m) */
    void (*stored)(void *arg);
    void *stored_arg;
    /* A clip of campaign (bytes, sealed size before sealing) was stored for device (its id);
     * NULL: not reported. Its arg is campaign_arg. */
    void (*clip_stored)(void *arg, const char *device, const char *campaign, uint64_t bytes);
};

struct fv_clip_server;

/* Opens the keystore, reloads partial uploads, listens (an error names the address) and
 * starts the thread. */
int fv_clip_server_start(struct fv_clip_server **out, const struct fv_clip_server_cfg *c, char *err,
                         size_t errlen);
/* Any thread (erasure): the device's open uploads are discarded, their files removed, before
 * the clip thread serves its next request. s NULL is a no-op. (More than 16 erasures at once
 * between two turns of the clip thread: the rest expire instead.) */
void fv_clip_server_forget(struct fv_clip_server *s, const char *device);
/* Stops the thread, closes connections, frees everything. NULL is a no-op. */
void fv_clip_server_stop(struct fv_clip_server *s);

#endif
