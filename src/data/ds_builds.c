/* ds_builds.c - dataset builds on a worker thread (ds_builds.h, rules B1-B5). */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "crypto/keys.h"
#include "data/clip_store.h"
#include "data/ds_builds.h"
#include "data/ds_clips.h"
#include "privacy/guard.h"
#include "privacy/subjects.h"
#include "util/err.h"
#include "util/hex.h"

enum state { QUEUED, RUNNING, DONE, FAILED };
static const char *const state_names[] = {"queued", "running", "done", "failed"};

struct build {
    int used;
    char id[17];
    struct fv_ds_build_req req;
    enum state st;
    size_t done, total;
    uint64_t seq; /* submission order */
    int64_t submitted_ms, finished_ms;
    struct fv_ds_result res;
    char error[256];
};

struct fv_ds_builds {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int started, stop;
    uint64_t next_seq;
    struct build b[FV_DS_BUILDS_MAX];
    /* the worker's own (B2) */
    struct fv_keystore *ks;
    struct fv_guard pg; /* only keys and pseudo_secret: what fv_guard_pseudonym reads */
    char datasets_dir[PATH_MAX], clips_dir[PATH_MAX];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int pseudonym(void *arg, const char *purpose, const char *device, char out[80])
{
    struct fv_ds_builds *b = arg;
    char p[FV_PURPOSE_PSEUDONYM_LEN + 1];
    int rc = fv_guard_pseudonym(&b->pg, purpose, device, p);
    if (rc == FV_OK) snprintf(out, 80, "%s", p);
    return rc;
}

struct progress {
    struct fv_ds_builds *b;
    struct build *bd;
};

static void on_progress(void *arg, size_t done, size_t total)
{
    struct progress *p = arg;
    pthread_mutex_lock(&p->b->mu);
    p->bd->done = done;
    p->bd->total = total;
    pthread_mutex_unlock(&p->b->mu);
}

/* Runs one build (worker thread, no lock held). */
static int run(struct fv_ds_builds *b, struct build *bd, const struct fv_ds_build_req *r,
               struct fv_ds_result *res, char *err, size_t errlen)
{
    unsigned char split_key[32];
    struct fv_purposes pp = {0};
    fv_keystore_forget(b->ks); /* a key another thread destroyed (erasure) is seen as such */
    struct fv_ds_clips c = {.ks = b->ks,
                            .clips_dir = b->clips_dir,
                            .purposes = &pp,
                            .now_ms = now_ms(),
                            .pseudonym = pseudonym,
                            .cb_arg = b};
    int rc = fv_ds_query_parse(r->query, &c.query, err, errlen);
    if (rc == FV_OK && fv_keystore_derive(b->ks, "fleetvault dataset split", split_key) != FV_OK) {
        fv_seterr(err, errlen, "the split key cannot be derived");
        rc = FV_EIO;
    }
    struct fv_ds_source src;
    if (rc == FV_OK) rc = fv_ds_clips_source(&c, &src);
    json_t *consent = rc == FV_OK ? json_object() : NULL;
    if (rc == FV_OK && consent == NULL) rc = FV_ENOMEM;
    c.consent = consent;
    struct progress pr = {b, bd};
    struct fv_ds_opts o = {.root = b->datasets_dir,
                           .name = r->name,
                           .query = r->query,
                           .split_spec = r->split,
                           .split_key = split_key,
                           .split_key_len = sizeof split_key,
                           .balance = r->balance,
                           .per_tag = r->per_tag,
                           .shard_max_bytes = r->shard_max_bytes,
                           .now_ms = c.now_ms,
                           .consent = consent,
                           .progress = on_progress,
                           .progress_arg = &pr};
    if (rc == FV_OK) rc = fv_ds_build(&o, &src, res, err, errlen);
    json_decref(consent);
    OPENSSL_cleanse(split_key, sizeof split_key);
    OPENSSL_cleanse(c.subject_key, sizeof c.subject_key);
    return rc;
}

/* The queued build submitted first, or NULL (lock held). */
static struct build *next_queued(struct fv_ds_builds *b)
{
    struct build *best = NULL;
    for (size_t i = 0; i < FV_DS_BUILDS_MAX; i++)
        if (b->b[i].used && b->b[i].st == QUEUED && (best == NULL || b->b[i].seq < best->seq))
            best = &b->b[i];
    return best;
}

static void *worker(void *arg)
{
    struct fv_ds_builds *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        struct build *bd;
        while (!b->stop && (bd = next_queued(b)) == NULL)
            pthread_cond_wait(&b->cv, &b->mu);
        if (b->stop) break;
        bd->st = RUNNING;
        struct fv_ds_build_req req = bd->req;
        pthread_mutex_unlock(&b->mu);
        struct fv_ds_result res;
        char err[256] = "";
        memset(&res, 0, sizeof res);
        int rc = run(b, bd, &req, &res, err, sizeof err);
        pthread_mutex_lock(&b->mu);
        bd->res = res;
        bd->st = rc == FV_OK ? DONE : FAILED;
        bd->finished_ms = now_ms();
        if (rc) snprintf(bd->error, sizeof bd->error, "%s", err[0] ? err : fv_strerror(rc));
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int fv_ds_builds_start(struct fv_ds_builds **out, const char *data_dir, const struct fv_kek *kek,
                       const unsigned char pseudo_secret[32], char *err, size_t errlen)
{
    *out = NULL;
    struct fv_ds_builds *b = calloc(1, sizeof *b);
    if (b == NULL) return FV_ENOMEM;
    snprintf(b->datasets_dir, sizeof b->datasets_dir, "%s/datasets", data_dir);
    snprintf(b->clips_dir, sizeof b->clips_dir, "%s/clips", data_dir);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/catalog.db", data_dir);
    int rc = fv_keystore_open(path, kek, &b->ks, err, errlen);
    if (rc == FV_OK) rc = fv_clip_store_init(b->ks, err, errlen);
    if (rc) {
        if (b->ks) fv_keystore_close(b->ks);
        free(b);
        return rc;
    }
    b->pg.keys = b->ks;
    memcpy(b->pg.pseudo_secret, pseudo_secret, sizeof b->pg.pseudo_secret);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    if (pthread_create(&b->thread, NULL, worker, b) != 0) {
        fv_ds_builds_stop(b);
        fv_seterr(err, errlen, "cannot start the dataset build thread");
        return FV_ENOMEM;
    }
    b->started = 1;
    *out = b;
    return FV_OK;
}

int fv_ds_builds_submit(struct fv_ds_builds *b, const struct fv_ds_build_req *r, char id[17],
                        char *why, size_t whylen)
{
    struct fv_ds_query q;
    struct fv_split sp[FV_SPLIT_MAX];
    size_t nsp;
    if (fv_ds_check_name(r->name, why, whylen) != FV_OK ||
        fv_ds_query_parse(r->query, &q, why, whylen) != FV_OK ||
        fv_split_parse(r->split, sp, &nsp, why, whylen) != FV_OK)
        return FV_EINVAL;
    if (strcmp(r->name, "builds") == 0) { /* GET /api/v1/datasets/builds/ID is the builds' */
        fv_seterr(why, whylen, "the dataset name 'builds' is reserved");
        return FV_EINVAL;
    }
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1) return FV_EIO;
    fv_hex(rnd, sizeof rnd, id);
    pthread_mutex_lock(&b->mu);
    struct build *slot = NULL;
    for (size_t i = 0; i < FV_DS_BUILDS_MAX && slot == NULL; i++)
        if (!b->b[i].used) slot = &b->b[i];
    for (size_t i = 0; i < FV_DS_BUILDS_MAX && slot == NULL; i++) /* B1: oldest finished */
        if (b->b[i].st == DONE || b->b[i].st == FAILED)
            if (slot == NULL || b->b[i].seq < slot->seq) slot = &b->b[i];
    int rc = FV_OK;
    if (slot == NULL) {
        fv_seterr(why, whylen, "%d builds are queued or running: try again later",
                  FV_DS_BUILDS_MAX);
        rc = FV_ELIMIT;
    } else {
        memset(slot, 0, sizeof *slot);
        slot->used = 1;
        memcpy(slot->id, id, 17);
        slot->req = *r;
        slot->st = QUEUED;
        slot->seq = b->next_seq++;
        slot->submitted_ms = now_ms();
        pthread_cond_signal(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

json_t *fv_ds_builds_get(struct fv_ds_builds *b, const char *id)
{
    struct build copy;
    int found = 0;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < FV_DS_BUILDS_MAX && !found; i++)
        if (b->b[i].used && strcmp(b->b[i].id, id) == 0) {
            copy = b->b[i];
            found = 1;
        }
    pthread_mutex_unlock(&b->mu);
    if (!found) return NULL;
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "id", copy.id, "name", copy.req.name, "query",
                  copy.req.query, "state", state_names[copy.st], "done", (json_int_t)copy.done,
                  "total", (json_int_t)copy.total, "submitted_ms", (json_int_t)copy.submitted_ms);
    if (j && copy.st == DONE)
        json_object_set_new(
            j, "result",
            json_pack("{s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "version", copy.res.version,
                      "candidates", (json_int_t)copy.res.candidates, "samples",
                      (json_int_t)copy.res.samples, "duplicates", (json_int_t)copy.res.duplicates,
                      "balanced_out", (json_int_t)copy.res.balanced_out, "shards",
                      (json_int_t)copy.res.shards, "bytes", (json_int_t)copy.res.bytes,
                      "finished_ms", (json_int_t)copy.finished_ms));
    if (j && copy.st == FAILED) json_object_set_new(j, "error", json_string(copy.error));
    return j;
}

void fv_ds_builds_stop(struct fv_ds_builds *b)
{
    if (b == NULL) return;
    if (b->started) {
        pthread_mutex_lock(&b->mu);
        b->stop = 1;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
    }
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    OPENSSL_cleanse(b->pg.pseudo_secret, sizeof b->pg.pseudo_secret);
    if (b->ks) fv_keystore_close(b->ks);
    free(b);
}
