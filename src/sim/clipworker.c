/* clipworker.c - the simulator's clip worker thread (clipworker.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "data/campaign.h"
#include "sim/clipupload.h"
#include "sim/clipworker.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

/* A queued clip: the request, copied. */
struct job {
    char vin[64];
    char campaign[FV_CAMPAIGN_ID_MAX + 1];
    char clip_id[FV_CAMPAIGN_ID_MAX + 48];
    int64_t trigger_ms;
    int pre_s, post_s;
    char channels[FV_CAMPAIGN_CHANNELS_MAX][FV_CAMPAIGN_CHANNEL_MAX + 1];
    size_t nchannels;
};

struct fv_sim_clipworker {
    char *url, *certs_dir;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *q; /* ring of FV_SIM_CLIP_QUEUE_MAX */
    size_t head, n;
    int stopping;       /* 1: finish the queue; 2: drop it */
    uint64_t interrupt; /* uploads still to interrupt (worker thread only) */
    struct fv_sim_clip_counts n_done;
};

static void upload_one(struct fv_sim_clipworker *w, const struct job *j)
{
    const char *ch[FV_CAMPAIGN_CHANNELS_MAX];
    for (size_t i = 0; i < j->nchannels; i++)
        ch[i] = j->channels[i];
    struct fv_sim_clip c = {.seed = (uint64_t)j->trigger_ms,
                            .trigger_ms = j->trigger_ms,
                            .pre_s = j->pre_s,
                            .post_s = j->post_s,
                            .channels = ch,
                            .nchannels = j->nchannels};
    struct fv_buf clip = {0};
    char err[512] = "";
    int resumed = 0;
    int rc = fv_sim_clip_build(&c, &clip);
    if (rc == FV_OK) {
        struct fv_sim_upload u = {.url = w->url,
                                  .certs_dir = w->certs_dir,
                                  .device = j->vin,
                                  .clip_id = j->clip_id,
                                  .campaign = j->campaign,
                                  .trigger = "campaign",
                                  .trigger_ms = j->trigger_ms,
                                  .interrupt = w->interrupt > 0};
        if (w->interrupt > 0) w->interrupt--;
        struct fv_sim_upload_result r;
        rc = fv_sim_clip_upload(&u, clip.data, clip.len, &r, err, sizeof err);
        resumed = rc == FV_OK && r.resumed;
    } else {
        snprintf(err, sizeof err, "building the clip: %s", fv_strerror(rc));
    }
    fv_buf_free(&clip);
    if (rc != FV_OK) fv_warn("simulate: clip %s of %s: %s", j->clip_id, j->vin, err);
    pthread_mutex_lock(&w->mu);
    if (rc == FV_OK)
        w->n_done.uploaded++;
    else
        w->n_done.failed++;
    if (rc == FV_OK && resumed) w->n_done.resumed++;
    pthread_mutex_unlock(&w->mu);
}

static void *worker(void *arg)
{
    struct fv_sim_clipworker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->n == 0 && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stopping == 2 || w->n == 0) break;
        /* a clip covers post_s after its trigger: it is uploaded once that is recorded */
        int64_t due = w->q[w->head].trigger_ms + (int64_t)w->q[w->head].post_s * 1000;
        int64_t now = (int64_t)fv_now_ms();
        if (now < due) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            int64_t ns = until.tv_nsec + (due - now) * 1000000;
            until.tv_sec += (time_t)(ns / 1000000000);
            until.tv_nsec = (long)(ns % 1000000000);
            pthread_cond_timedwait(&w->cv, &w->mu, &until);
            continue;
        }
        struct job j = w->q[w->head];
        w->head = (w->head + 1) % FV_SIM_CLIP_QUEUE_MAX;
        w->n--;
        pthread_cond_broadcast(&w->cv); /* stop waits for the queue to empty */
        pthread_mutex_unlock(&w->mu);
        upload_one(w, &j);
        pthread_mutex_lock(&w->mu);
    }
    w->n_done.failed += w->n; /* dropped at the stop */
    w->n = 0;
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void worker_free(struct fv_sim_clipworker *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->q);
    free(w->url);
    free(w->certs_dir);
    free(w);
}

int fv_sim_clipworker_start(const char *url, const char *certs_dir, uint64_t interrupt,
                            struct fv_sim_clipworker **out, char *err, size_t errlen)
{
    *out = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fv_seterr(err, errlen, "libcurl cannot start");
        return FV_EIO;
    }
    struct fv_sim_clipworker *w = calloc(1, sizeof *w);
    if (w == NULL) {
        curl_global_cleanup();
        return FV_ENOMEM;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->interrupt = interrupt;
    w->url = strdup(url);
    w->certs_dir = strdup(certs_dir);
    w->q = calloc(FV_SIM_CLIP_QUEUE_MAX, sizeof *w->q);
    if (w->url == NULL || w->certs_dir == NULL || w->q == NULL) {
        worker_free(w);
        curl_global_cleanup();
        return FV_ENOMEM;
    }
    if (pthread_create(&w->th, NULL, worker, w) != 0) {
        fv_seterr(err, errlen, "cannot start the clip worker thread");
        worker_free(w);
        curl_global_cleanup();
        return FV_EIO;
    }
    *out = w;
    return FV_OK;
}

int fv_sim_clipworker_hook(void *arg, const struct fv_sim_clip_req *req, char *err, size_t errlen)
{
    struct fv_sim_clipworker *w = arg;
    struct job j = {.trigger_ms = req->trigger_ms, .pre_s = req->pre_s, .post_s = req->post_s};
    snprintf(j.vin, sizeof j.vin, "%s", req->vin);
    snprintf(j.campaign, sizeof j.campaign, "%s", req->campaign);
    snprintf(j.clip_id, sizeof j.clip_id, "%s", req->clip_id);
    for (size_t i = 0; i < req->nchannels && i < FV_CAMPAIGN_CHANNELS_MAX; i++)
        snprintf(j.channels[j.nchannels++], sizeof j.channels[0], "%s", req->channels[i]);
    int rc = FV_OK;
    pthread_mutex_lock(&w->mu);
    if (w->n == FV_SIM_CLIP_QUEUE_MAX) {
        rc = FV_ELIMIT;
    } else {
        w->q[(w->head + w->n) % FV_SIM_CLIP_QUEUE_MAX] = j;
        w->n++;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    if (rc) fv_seterr(err, errlen, "%d clips are queued already", FV_SIM_CLIP_QUEUE_MAX);
    return rc;
}

void fv_sim_clipworker_stop(struct fv_sim_clipworker *w, double wait_s,
                            struct fv_sim_clip_counts *c)
{
    if (w == NULL) return;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)wait_s;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_broadcast(&w->cv);
    while (w->n > 0 && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0) {
    }
    w->stopping = 2; /* an upload in progress finishes; the rest are dropped */
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    c->uploaded += w->n_done.uploaded;
    c->failed += w->n_done.failed;
    c->resumed += w->n_done.resumed;
    worker_free(w);
    curl_global_cleanup();
}
