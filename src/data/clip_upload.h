/*
 * clip_upload.h - resumable clip uploads (issue 12, item 2): the configuration of the clip
 * side, and the upload state machine, independent of the transport (data/clip_server.h
 * speaks HTTP over mutual TLS and calls it; docs/protocol.md, "Clip upload").
 *
 * An upload is created with the clip's id, campaign, trigger, total size and SHA-256 of the
 * whole clip; chunks are appended at the committed offset, each with its own SHA-256; the
 * committed offset can be asked for at any time (resume after an interruption); finish
 * verifies the whole clip's SHA-256 and that it is MCAP (magic and footer), then hands it to
 * the store hook. States per upload:
 *
 *     (none) --create--> OPEN(offset 0) --chunk at offset--> OPEN(offset + len)
 *     OPEN(size) --finish, hashes and MCAP good, stored--> (none: the clip is in the store)
 *     OPEN --finish with a wrong hash or not MCAP--> (none: discarded, nothing stored)
 *     OPEN --no activity for expire_ms--> (none: discarded)
 *
 * Rules:
 *  U1 every refusal (bad request, limits, consent, campaign, a wrong hash) changes nothing
 *     that was committed: a refused create leaves no upload, a refused chunk leaves the
 *     offset where it was, a refused finish stores nothing;
 *  U2 a chunk is committed (the offset moves) only once its bytes are fdatasync'd; the
 *     partial file's length at start is the committed offset (a torn tail is caught by the
 *     whole-clip hash at finish);
 *  U3 a chunk at an offset below the committed one that ends at or before it is a resend:
 *     answered with the committed offset, nothing written; any other offset is 409 with the
 *     committed offset, so the client knows where to resume;
 *  U4 limits: size <= max_clip_bytes (413); a device's open uploads <= max_concurrent (409);
 *     a device's stored clips plus its open uploads' sizes plus this one <=
 *     max_device_bytes (413); a chunk <= max_chunk_bytes (413) and never past size (400);
 *  U5 a device sees only its own uploads (another device's upload id is unknown: 404);
 *  U6 a clip id already stored for the device is 409; a create for a clip that is being
 *     uploaded with the same size and hash returns that upload (the client lost its id).
 *
 * Devices are named here by their keystore pseudonym (crypto/keys.h K2: no device id on
 * disk, so none in the partial uploads' metadata); the caller passes the same name for a
 * device every time, and the hooks receive it.
 *
 * Results are HTTP statuses (200, 201, 400, 404, 409, 413, 422, 500) with a reason.
 * Files: DIR/partial/UPLOAD.json (the upload's metadata), DIR/partial/UPLOAD.data (the bytes
 * committed). Threads: one thread at a time (the clip server's).
 */
#ifndef FV_DATA_CLIP_UPLOAD_H
#define FV_DATA_CLIP_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

#define FV_CLIP_ID_MAX     64 /* clip, campaign and trigger ids: [A-Za-z0-9_.:-]{1,64} */
#define FV_CLIP_UPLOAD_LEN 32 /* upload ids: 32 hex digits (random) */
#define FV_CLIPS_DEID_ARGS 16
#define FV_CLIPS_CAMPAIGNS 64
#define FV_CLIP_FUTURE_MS  300000 /* a trigger at most this far ahead of the server's clock */

/* The campaign check (owned by the campaign side): may device upload for campaign_id (was
 * it sent the campaign)? 1 yes, 0 no (why set). */
typedef int (*fv_clip_campaign_fn)(void *arg, const char *device, const char *campaign_id,
                                   char *why, size_t n);

/* The config file's "clips" object (config/config.h clips_json). */
struct fv_clips_config {
    int enabled;    /* "listen" given */
    char host[256]; /* "listen": "HOST:PORT" (mutual TLS, the devices' CA) */
    int port;
    uint64_t max_clip_bytes;   /* "max_clip_mb", default 256 */
    uint64_t max_device_bytes; /* "max_device_mb", default 2048 (stored + open uploads) */
    int max_concurrent;        /* "max_concurrent", uploads open per device, default 2 */
    uint64_t max_chunk_bytes;  /* "max_chunk_mb", default 8 */
    uint64_t expire_ms;        /* "expire_after_s", default 86400 (24 h) */
    char deid_argv[FV_CLIPS_DEID_ARGS][256]; /* "deid_command": [PROGRAM, ARG, ...] */
    int deid_argc;                           /* 0: no command (clips stay pending) */
    uint64_t deid_timeout_ms;                /* "deid_timeout_s", default 60 */
    uint64_t deid_mem_bytes;                 /* "deid_mem_mb" (RLIMIT_AS), default 2048 */
    /* "campaigns": the campaign ids the default check accepts for every device, until the
     * campaign side's check is wired (fv_clip_campaign_fn). */
    char campaigns[FV_CLIPS_CAMPAIGNS][FV_CLIP_ID_MAX + 1];
    size_t ncampaigns;
    /* "signals_pre_s", "signals_post_s": the window of stored signals added to a clip
     * outside any campaign the service knows (data/clip_server.h X1), default 10 each. */
    int64_t signals_pre_ms, signals_post_ms;
};

void fv_clips_config_defaults(struct fv_clips_config *c);
/* Parses the "clips" object's JSON text over c ("" or NULL: defaults, disabled). FV_OK or
 * FV_EINVAL with err naming the key. */
int fv_clips_config_parse(struct fv_clips_config *c, const char *json, char *err, size_t errlen);
/* The default campaign check: arg is a struct fv_clips_config; accepts its "campaigns". */
int fv_clips_campaign_listed(void *arg, const char *device, const char *campaign_id, char *why,
                             size_t n);

/* What a create names, and what the store receives. */
struct fv_clip_meta {
    char upload_id[FV_CLIP_UPLOAD_LEN + 1];
    char device[65]; /* the device's keystore pseudonym */
    char clip_id[FV_CLIP_ID_MAX + 1];
    char campaign[FV_CLIP_ID_MAX + 1];
    char trigger[FV_CLIP_ID_MAX + 1]; /* the trigger's name ("" if none) */
    int64_t trigger_ms;
    uint64_t size;
    char sha256[65]; /* lower-case hex */
    int64_t created_ms;
};

/* What the state machine asks of the rest (the clip server wires them to the store, the
 * consent registry and the campaign side). Each returns FV_OK, or an error with why set. */
struct fv_clip_up_hooks {
    fv_clip_campaign_fn campaign_ok;
    void *campaign_arg;
    /* 1 if the device's current subject consented to purpose "clips" at the trigger time
     * and still does now, else 0 (why set). */
    int (*consent_ok)(void *arg, const char *device, int64_t trigger_ms, char *why, size_t n);
    /* The bytes of the device's stored clips; 1 in *exists if clip_id is stored. */
    int (*stored)(void *arg, const char *device, const char *clip_id, uint64_t *bytes, int *exists);
    /* Seals and stores the verified clip at path (durably, before it returns FV_OK);
     * FV_EINVAL: refused (why says why; the upload is discarded, 422), other errors: the
     * upload stays and finish may be retried (500). */
    int (*store)(void *arg, const struct fv_clip_meta *m, const char *path, char *why, size_t n);
    void *arg; /* for consent_ok, stored, store */
};

struct fv_clip_up;

/* Opens the state machine over DIR (created), reloading the partial uploads found there.
 * cfg and hooks must outlive it. */
int fv_clip_up_open(const char *dir, const struct fv_clips_config *cfg,
                    const struct fv_clip_up_hooks *hooks, struct fv_clip_up **out, char *err,
                    size_t errlen);
void fv_clip_up_close(struct fv_clip_up *u);

/* The answer to one request: status, reason (errors), and for success the upload. */
struct fv_clip_answer {
    int status;
    char why[256];
    char upload_id[FV_CLIP_UPLOAD_LEN + 1];
    char clip_id[FV_CLIP_ID_MAX + 1];
    uint64_t offset, size;
};

/* Creates an upload from a JSON body {"clip_id", "campaign_id", "trigger", "trigger_ms",
 * "size", "sha256"}: 201 (or 200, U6), 400, 409, 413, 422. */
void fv_clip_up_create(struct fv_clip_up *u, const char *device, const char *json, size_t len,
                       int64_t now_ms, struct fv_clip_answer *a);
/* Appends a chunk at offset; sha256_hex is the chunk's (the X-Chunk-SHA256 header). */
void fv_clip_up_chunk(struct fv_clip_up *u, const char *device, const char *upload_id,
                      uint64_t offset, const void *data, size_t len, const char *sha256_hex,
                      int64_t now_ms, struct fv_clip_answer *a);
/* The committed offset and size: 200 or 404. */
void fv_clip_up_status(struct fv_clip_up *u, const char *device, const char *upload_id,
                       struct fv_clip_answer *a);
/* Verifies and stores the clip: 201, 404, 409 (not all bytes in), 422 (wrong hash, not MCAP,
 * refused by the store hook; the upload is discarded), 500 (the store failed; the upload stays,
 * finish may be retried). */
void fv_clip_up_finish(struct fv_clip_up *u, const char *device, const char *upload_id,
                       struct fv_clip_answer *a);
/* Discards uploads idle for longer than expire_ms; returns how many. */
size_t fv_clip_up_expire(struct fv_clip_up *u, int64_t now_ms);
/* Discards every upload of device (its erasure); returns how many. */
size_t fv_clip_up_forget(struct fv_clip_up *u, const char *device);
/* Open uploads (all devices). */
size_t fv_clip_up_count(const struct fv_clip_up *u);

/* Validates the MCAP file at path fully with the reader (data/mcap.h: fv_mcap_reader_open,
 * then fv_mcap_scan over every record, chunk, index and the summary). FV_OK; FV_ECORRUPT
 * (also a file over the reader's limits) with "not MCAP (mcap: byte N: what)" in err;
 * FV_EIO; FV_ENOMEM. */
int fv_clip_check_mcap(const char *path, char *err, size_t errlen);
/* The SHA-256 of the file at path in lower-case hex. FV_OK or FV_EIO. */
int fv_clip_file_sha256(const char *path, char out[65]);

#endif
