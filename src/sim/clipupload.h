/*
 * clipupload.h - the simulator's clip uploader (issue 12, item 8, upload half): builds a
 * synthetic clip (camera-sized frames, IMU at 100 Hz, CAN-like signals) and uploads it over
 * the real clip endpoint (data/clip_server.h, docs/protocol.md "Clip upload") with the
 * vehicle's certificate, optionally interrupted mid-chunk and resumed from the committed
 * offset the server reports.
 *
 * The clip is MCAP written with the MCAP writer (data/mcap.h): zstd chunks, message and chunk
 * indexes, statistics and summary; one channel per sensor (docs/data-engine.md "Clip
 * channels"): /camera/front (raw frames), /imu (JSON at 100 Hz), /can (JSON at 20 Hz).
 *
 * Threads: any; no shared state (libcurl's global init is the caller's, once).
 */
#ifndef FV_SIM_CLIPUPLOAD_H
#define FV_SIM_CLIPUPLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct fv_sim_clip {
    uint64_t seed;
    int64_t trigger_ms;
    double pre_s, post_s; /* the window around the trigger (default 1 s each) */
    size_t frames;        /* camera frames (default 5) */
    size_t frame_bytes;   /* each (default 96 KiB) */
    /* The campaign's channels: /camera/front if camera_front is listed, /imu if imu is, /can
     * if can or any signal is; nchannels 0: all three. */
    const char *const *channels;
    size_t nchannels;
};

/* Builds the clip into out (appended). FV_OK, FV_ENOMEM (or another error of the writer). */
int fv_sim_clip_build(const struct fv_sim_clip *c, struct fv_buf *out);

struct fv_sim_upload {
    const char *url;       /* https://HOST:PORT of the clip endpoint */
    const char *certs_dir; /* ca.crt and devices/DEVICE.{crt,key} */
    const char *device;
    const char *clip_id, *campaign, *trigger;
    int64_t trigger_ms;
    size_t chunk_bytes; /* default 256 KiB */
    int interrupt;      /* cut the connection halfway through the second chunk, then resume */
};

struct fv_sim_upload_result {
    int status; /* the last HTTP status (201: stored) */
    char upload_id[33];
    int resumed;         /* an interruption happened and the upload resumed after it */
    uint64_t resumed_at; /* the committed offset the server reported */
    char body[512];      /* the last answer */
};

/* Uploads clip (len bytes): create, chunks, finish. FV_OK when the server stored it (201),
 * else an error with err saying which step and the server's answer. */
int fv_sim_clip_upload(const struct fv_sim_upload *u, const void *clip, size_t len,
                       struct fv_sim_upload_result *r, char *err, size_t errlen);

#endif
