/*
 * ds_builds.h - dataset builds on a worker thread of their own (issue 12, item 6): the API
 * submits a build (POST /api/v1/datasets, api/dataset_api.c), the worker runs it over the
 * clip store (data/ds_clips.h) with the dataset builder (data/dataset.h), and the API reads
 * its progress and result.
 *
 * Rules:
 *  B1 builds run one at a time, in the order submitted, on the worker thread - never on the
 *     API thread or the ingest loop; at most FV_DS_BUILDS_MAX are kept (the oldest finished
 *     one is forgotten first; a full queue of unfinished ones refuses: FV_ELIMIT).
 *  B2 the worker has its own keystore (crypto/keys.h: one per thread) on the catalog, its
 *     cached keys dropped before each build (an erasure since is seen); the
 *     per-purpose pseudonyms are privacy/guard.h G10's (fv_guard_pseudonym over the worker's
 *     keystore and the guard's pseudonym secret, copied at start).
 *  B3 the split key is fv_keystore_derive(catalog, "fleetvault dataset split"): one per
 *     installation, never stored, never in a manifest, so splits are stable across builds.
 *  B4 a request is checked before it is queued (name - "builds" is reserved for the API's
 *     status path -, query, split spec: FV_EINVAL with why);
 *     the consent state at build is the source's (ds_clips.h) and goes into the manifest.
 *  B5 the state of a build: queued, running (done/total samples), done (version, counts) or
 *     failed (the error). The build id is 16 random hex digits.
 *
 * Threads: submit, get and stop from one thread (the API thread); the worker is internal.
 * A lock guards the queue and the states; it is held for copies only (no I/O, no SQL).
 */
#ifndef FV_DATA_DS_BUILDS_H
#define FV_DATA_DS_BUILDS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "data/dataset.h"

struct fv_kek;
struct fv_ds_builds;

#define FV_DS_BUILDS_MAX 64

struct fv_ds_build_req {
    char name[FV_DS_NAME_MAX];
    char query[512];
    char split[256];
    int balance;
    size_t per_tag;
    uint64_t shard_max_bytes; /* 0: the builder's default */
};

/* Opens the worker's keystore on DATA/catalog.db and starts the worker. */
int fv_ds_builds_start(struct fv_ds_builds **out, const char *data_dir, const struct fv_kek *kek,
                       const unsigned char pseudo_secret[32], char *err, size_t errlen);
/* B4: checks r and queues it; id receives the build id. */
int fv_ds_builds_submit(struct fv_ds_builds *b, const struct fv_ds_build_req *r, char id[17],
                        char *why, size_t whylen);
/* B5: the build's state as JSON (new reference), or NULL when unknown. */
json_t *fv_ds_builds_get(struct fv_ds_builds *b, const char *id);
/* Stops the worker after the build it is running and frees b (NULL is fine). */
void fv_ds_builds_stop(struct fv_ds_builds *b);

#endif
