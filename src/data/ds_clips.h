/*
 * ds_clips.h - the dataset source over the clip store (issue 12, item 6): the candidate
 * samples of a dataset build (data/dataset.h struct fv_ds_source) are stored clips that
 * pass every rule below, each loaded as KEY.mcap, KEY.json and KEY.SIGNAL.npy files.
 *
 * Rules:
 *  S1 only a clip whose de-identification passed (data/clip_store.h C2,
 *     fv_clip_store_passed) is a candidate; it is checked again when the clip is loaded.
 *  S2 consent: the clip's subject consented to purpose "clips" at the clip's trigger time
 *     and consents to "model_training" at the build time (now_ms); both checked when listed
 *     and again when loaded (a withdrawal between the two leaves the clip out: FV_ESTATE).
 *     Clips of an erased subject (key destroyed) and of a previous owner (the per-purpose
 *     pseudonym would be the current owner's) are never candidates.
 *  S3 the query (fv_ds_query_parse) selects among them: campaign, trigger time range, tags.
 *  S4 vehicle = the per-purpose pseudonym for "model_training" (the caller's pseudonym
 *     function: privacy/guard.h G10); subject = fv_ds_clips_subject: the first 16 bytes of
 *     HMAC-SHA256(fv_keystore_derive("fleetvault dataset subject"), keystore pseudonym of
 *     the subject), in hex: it names the owner period, no VIN and no key material, and can
 *     be computed after the subject's data key is destroyed (erasure), so withdrawal and
 *     erasure both find the versions that hold the subject (dataset.h D7).
 *  S5 key = the upload id (random); content_sha256 = the stored (de-identified) clip's
 *     SHA-256; tags = the trigger name, then the clip's label tags (S7); lineage = {clip_id,
 *     upload, campaign, trigger, trigger_ms, sha256, deid: {status, exit, summary}}.
 *  S6 files of a sample: KEY.mcap (the decrypted clip), KEY.json (key, vehicle, time,
 *     trigger_ms, campaign, trigger, deid, labels, place when the caller's place_ok allows
 *     it - else withheld, failing closed), and one KEY.SIGNAL.npy per numeric field of the
 *     clip's "json" channels read with the MCAP reader (data/mcap.h): a 2-D "<f8" array of
 *     rows [seconds from the trigger, value] in time order (a field found in several channels,
 *     e.g. the clip's CAN channel and the store's signal channel of data/clip_signals.h, is
 *     one array of all their rows); SIGNAL is the field name reduced to
 *     [A-Za-z0-9_]; at most FV_DS_FILES_MAX - 2 signals (the first found, in channel
 *     order); a clip the reader refuses is loaded without signals (noted in KEY.json).
 *  S7 labels (data/clip_labels.h B4), read with the row when listed and when loaded: a clip's
 *     tags are its trigger, then its label tags in the labeler's order - all of them in
 *     KEY.json "tags"; in the item's comma-separated tags (the manifest, dataset.h D4: the
 *     first is the trigger, so balancing is by trigger) those without a comma that fit; the
 *     query's tag=T matches any of them. KEY.json "labels" is [{"name", "value"}, ...] by name
 *     ([] for an unlabeled clip) and "labeling" {"labeler", "labeled_ms", "time"} (null when
 *     unlabeled), labeler being fv_ds_clips_labeler of the principal: no name of a labeler
 *     leaves the catalog.
 *
 * Query grammar (whitespace-separated terms, all must hold):
 *   campaign=ID     the clip's campaign (once)
 *   from=MS to=MS   trigger time in Unix milliseconds, inclusive (each once, from <= to)
 *   tag=T           the clip carries tag T (repeatable: all of them)
 * An empty query selects every clip. Unknown keys, repeated keys, bad numbers: FV_EINVAL
 * with why naming the term.
 *
 * Threads: the caller's; the keystore given must be that thread's (crypto/keys.h).
 */
#ifndef FV_DATA_DS_CLIPS_H
#define FV_DATA_DS_CLIPS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "data/clip_store.h"
#include "data/dataset.h"

struct fv_keystore;
struct fv_purposes;

#define FV_DS_QUERY_TAGS 8

struct fv_ds_query {
    char campaign[FV_CLIP_ID_MAX + 1]; /* "": any */
    int64_t from_ms, to_ms;            /* INT64_MIN / INT64_MAX: open */
    size_t ntags;
    char tags[FV_DS_QUERY_TAGS][FV_CLIP_ID_MAX + 1];
};

/* S3: parses text into q. FV_OK or FV_EINVAL with why. */
int fv_ds_query_parse(const char *text, struct fv_ds_query *q, char *why, size_t whylen);

struct fv_ds_clips {
    struct fv_keystore *ks; /* the calling thread's */
    const char *clips_dir;  /* the clip store's directory */
    const struct fv_purposes *purposes;
    struct fv_ds_query query;
    int64_t now_ms; /* the build time (S2) */
    /* S4: the per-purpose pseudonym of device for purpose (FV_OK or an error). */
    int (*pseudonym)(void *arg, const char *purpose, const char *device, char out[80]);
    /* S6: whether the coarse place may be shown (NULL: never). */
    int (*place_ok)(void *arg, const char *device, const struct fv_clip_place *place);
    void *cb_arg;
    /* filled by listing: the consent state at build, for the manifest */
    size_t listed, left_deid, left_consent, left_owner, left_query;
    /* when not NULL, the end of the listing sets fv_ds_clips_consent's fields in it: give
     * the same object as the build's opts.consent (the manifest is written after it) */
    json_t *consent;
    unsigned char subject_key[32]; /* set by fv_ds_clips_source */
    unsigned char labeler_key[32]; /* set by fv_ds_clips_source (S7) */
};

/* Fills src with the source over c (c must outlive the build). FV_OK or FV_EIO. */
int fv_ds_clips_source(struct fv_ds_clips *c, struct fv_ds_source *src);

/* S4: the dataset subject identifier of the subject with this keystore pseudonym. */
int fv_ds_clips_subject(struct fv_keystore *ks, const char *subject_pseudo, char out[33]);

/* S7: the pseudonymous id of a labeler (principal name): the first 16 bytes of
 * HMAC-SHA256(fv_keystore_derive("fleetvault dataset labeler"), principal), in hex. */
int fv_ds_clips_labeler(struct fv_keystore *ks, const char *principal, char out[33]);

/* The consent state at build (dataset.h D6): purposes checked, time and counts. New
 * reference, or NULL (no memory). */
json_t *fv_ds_clips_consent(const struct fv_ds_clips *c);

#endif
