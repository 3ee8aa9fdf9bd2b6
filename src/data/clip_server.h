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
 * Signals (data/clip_signals.h; docs/data-engine.md "Signal channels"): when a store is
 * given, a finished clip gets the subject's stored signals around its trigger as extra
 * channels before it is sealed:
 *  X1 the window is [trigger_ms - pre, trigger_ms + post], the campaign's pre_s and post_s
 *     (the window hook) or, for an upload outside any campaign the service knows,
 *     clips.signals_pre_s and clips.signals_post_s;
 *  X2 the read is the subject's (the owner period of the trigger time, the clip's owner),
 *     for purpose "clips" (its consent was checked just before), with the subject's data key,
 *     on the clip thread (store/store.h "Threads": queries from any thread), never on the
 *     ingest loop; location signals are never added (clip_signals.h G3);
 *  X3 every read is audited, one record per clip (kind "clips", action "clips.signals",
 *     principal "clips-server", purpose "clips", the subject by keystore pseudonym, extra:
 *     clip, from_ms, to_ms, signals, samples): there must be room in the queue before the
 *     read (else the clip is stored without signals), the record is queued right after it
 *     and the API thread, the audit log's owner, writes it (fv_clip_server_audit_drain);
 *  X4 no sample in the window, attachments or metadata records in the clip (G4), or a read
 *     or write that fails: the clip is stored as uploaded; each outcome is counted
 *     (signal_counts: added, none, failed).
 *
 * Threads: start and stop from the server's thread; the hooks given here are called on the
 * clip thread (campaign_ok, place, window: they must lock what they share), and after each
 * clip is stored clip_stored() (the campaign's counts) and stored() (the de-identification
 * worker's wake). fv_clip_server_audit_drain from any thread (a short-held mutex).
 */
#ifndef FV_DATA_CLIP_SERVER_H
#define FV_DATA_CLIP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "data/clip_upload.h"

struct fv_kek;
struct fv_store;

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
    /* X1-X4: the telemetry store (NULL: no signals added), the campaign's window (1, or 0
     * when campaign is none the service knows; NULL: always the config's; its arg is
     * campaign_arg), and where to count the outcomes (NULL: not counted). */
    struct fv_store *store;
    int (*window)(void *arg, const char *campaign, int64_t *pre_ms, int64_t *post_ms);
    _Atomic uint64_t *signal_counts; /* [FV_CLIP_SIGNALS_OUTCOMES] */
};

/* X4's outcomes, the indexes of signal_counts. */
enum { FV_CLIP_SIGNALS_ADDED = 0, FV_CLIP_SIGNALS_NONE, FV_CLIP_SIGNALS_FAILED };
#define FV_CLIP_SIGNALS_OUTCOMES 3

/* X3: one queued audit record. */
#define FV_CLIP_AUDIT_QUEUE 256
struct fv_clip_audit {
    char clip[FV_CLIP_UPLOAD_LEN + 1]; /* the stored clip's id (upload id) */
    char subject[33];                  /* its subject's keystore pseudonym */
    int64_t from_ms, to_ms;            /* the window read */
    uint64_t signals, samples;         /* what was added */
    char result[8];                    /* "allow", or "error" (the read failed) */
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
/* X3: calls fn for each queued record, oldest first; a record fn fails (non-zero) stays
 * queued with those after it. Returns how many were written. s NULL: 0. */
size_t fv_clip_server_audit_drain(struct fv_clip_server *s,
                                  int (*fn)(void *arg, const struct fv_clip_audit *r), void *arg);
/* Stops the thread and closes connections; the queued audit records can still be drained
 * (and fv_clip_server_forget is a no-op). NULL is a no-op. */
void fv_clip_server_stop(struct fv_clip_server *s);
/* Stops (if still running) and frees everything. NULL is a no-op. */
void fv_clip_server_free(struct fv_clip_server *s);

#endif
