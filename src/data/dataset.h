/*
 * dataset.h - training datasets: versioned, immutable sets of WebDataset shards (wds.h)
 * built from a source of samples, with a manifest that names every shard's hash and every
 * sample's lineage.
 *
 * The builder knows no clip store and no policy: a source lists candidate samples (already
 * filtered by consent and the query: the caller's job) and loads each one's files. The
 * builder removes exact duplicates, assigns splits by the keyed hash of the vehicle (wds.h
 * W5), balances by tag when asked, orders each split by a keyed hash of the sample key
 * (shards come pre-shuffled, the same way every build), writes shards and the manifest.
 *
 * Layout: ROOT/NAME/vN/ holds NAME-SPLIT-000000.tar ... and manifest.json. Rules:
 *  D1 versions are immutable: vN is built as ROOT/NAME/.vN.tmp, every shard and the
 *     manifest fsync'd, files made read-only, then renamed to vN and ROOT/NAME fsync'd. A
 *     build that fails leaves no vN (its temporary directory is removed); a crash leaves
 *     only a .tmp directory, removed by the next build of the name.
 *  D2 N is one more than the highest version present; versions are never rewritten.
 *  D3 exact duplicates: a sample whose content_sha256 an earlier candidate had is left out
 *     (the first listed is kept) and counted.
 *  D4 balance: with opts.balance, samples are grouped per split by their first tag
 *     ("untagged" when none); each group is capped at opts.per_tag when > 0, else at the
 *     smallest group's size; the kept ones are the first by the keyed hash of the sample key.
 *  D5 a shard closes when adding the next sample would pass opts.shard_max_bytes or when it
 *     holds opts.shard_max_samples; a sample is never split across shards.
 *  D6 the manifest (format "fleetvault-dataset/1") records: name, version, created_ms, the
 *     query text, the split spec, the consent state given by the caller, counts, every shard
 *     (file, split, samples, bytes, sha256) and every sample (key, split, shard, vehicle,
 *     subject, tags, content_sha256, lineage). No VIN ever: vehicle and subject are the
 *     caller's pseudonyms.
 *  D7 withdrawal: fv_ds_mark_withdrawn writes ROOT/NAME/vN.withdrawn (JSON: the subjects
 *     withdrawn since, appended) beside each version whose manifest holds the subject; the
 *     version itself is not changed. A rebuild makes a new version from the source, which
 *     no longer lists the subject.
 *  D8 erasure: fv_ds_erase_subject marks as D7 (the entry with "erased": true) and, since
 *     the shards hold the subject's decrypted clips, records "shards_deleted_ms" and a note
 *     in vN.withdrawn (durably, first) and then deletes every shard of each version that
 *     holds the subject; the manifest stays as the record of what was built (it names the
 *     subject only by its dataset identifier). Idempotent: a replayed erasure finishes a
 *     deletion a crash cut short.
 *
 * Threads: a build runs on the caller's thread (a CLI process or a worker, never the
 * ingest loop); builds of different names may run at once, two of the same name must not
 * (the caller serialises them).
 */
#ifndef FV_DATA_DATASET_H
#define FV_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "data/wds.h"
#include "util/buf.h"

#define FV_DS_NAME_MAX  64
#define FV_DS_FILES_MAX 16
#define FV_DS_EXT_MAX   32

/* One candidate sample as a source lists it. lineage is owned by the item (the builder
 * takes it over from emit). */
struct fv_ds_item {
    char key[64];            /* sample key: the basename of its files in a shard */
    char vehicle[80];        /* pseudonym the split is keyed on */
    char subject[80];        /* pseudonymous subject, for withdrawal (D7) */
    char content_sha256[65]; /* exact-duplicate key (D3) */
    char tags[256];          /* comma-separated scenario tags, first = primary (D4) */
    json_t *lineage;         /* anything the source records about its origin (or NULL) */
};

/* The files of one sample: KEY.EXT for each (ext like "mcap", "json", "speed.npy"). */
struct fv_ds_files {
    size_t n;
    char ext[FV_DS_FILES_MAX][FV_DS_EXT_MAX];
    struct fv_buf data[FV_DS_FILES_MAX];
};

struct fv_ds_source {
    /* Calls emit once per candidate; stops with emit's non-zero return. */
    int (*list)(void *arg, int (*emit)(void *ctx, struct fv_ds_item *it), void *ctx, char *err,
                size_t errlen);
    /* Fills out (n = 0 and buffers reset on entry) with the sample's files. */
    int (*load)(void *arg, const struct fv_ds_item *it, struct fv_ds_files *out, char *err,
                size_t errlen);
    void *arg;
};

struct fv_ds_opts {
    const char *root; /* the datasets directory (created if missing) */
    const char *name; /* [a-z0-9_-], 1 to FV_DS_NAME_MAX - 1 */
    const char *query;
    const char *split_spec; /* "train=0.8,val=0.1,test=0.1" */
    const unsigned char *split_key;
    size_t split_key_len;
    int balance;
    size_t per_tag;           /* D4 cap (0: the smallest group) */
    uint64_t shard_max_bytes; /* 0: 1 GiB */
    size_t shard_max_samples; /* 0: no limit */
    int64_t now_ms;           /* created_ms and every member's mtime */
    const json_t *consent;    /* recorded as given (e.g. purpose, checked_at, subjects) */
    void (*progress)(void *arg, size_t done, size_t total);
    void *progress_arg;
};

struct fv_ds_result {
    int version;
    size_t candidates, samples, duplicates, balanced_out, shards;
    uint64_t bytes;
    size_t per_split[FV_SPLIT_MAX];
    char dir[1024];
};

/* FV_OK, or an error with err set (bad options: FV_EINVAL; no sample left: FV_ENOENT; I/O). */
int fv_ds_build(const struct fv_ds_opts *o, const struct fv_ds_source *src,
                struct fv_ds_result *res, char *err, size_t errlen);

/* FV_OK when name is a valid dataset name. */
int fv_ds_check_name(const char *name, char *why, size_t n);

/* D7: marks every version of every dataset under root whose manifest holds subject;
 * *marked receives how many. */
int fv_ds_mark_withdrawn(const char *root, const char *subject, int64_t now_ms, size_t *marked,
                         char *err, size_t errlen);

/* D8: marks and deletes the shards of every version that holds subject; *erased receives
 * how many versions. */
int fv_ds_erase_subject(const char *root, const char *subject, int64_t now_ms, size_t *erased,
                        char *err, size_t errlen);

/* Frees the buffers of files. */
void fv_ds_files_free(struct fv_ds_files *f);

#endif
