/*
 * keyfetch.c - a cluster gateway's data keys, fetched off the ingest loop (keyfetch.h).
 *
 * Threads: submit/take/stop on the ingest loop; run() on the module's own thread. Both
 * queues (jobs, answers) are singly linked lists under one mutex, held only to link and
 * unlink (never while the source is asked).
 */
#include "gateway/keyfetch.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

struct item {
    struct item *next;
    struct fv_keyfetch_answer a; /* a job: session_id, pseudo, name set */
};

struct fv_keyfetch {
    struct fv_keysource src;
    void (*wake)(void *);
    void *wake_arg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct item *jobs, **jobs_tail;
    struct item *done, **done_tail;
    size_t njobs;
    int stop;
};

static void wipe_free(struct item *it)
{
    OPENSSL_cleanse(&it->a, sizeof it->a);
    free(it);
}

static int stopping(struct fv_keyfetch *f)
{
    pthread_mutex_lock(&f->mu);
    int s = f->stop;
    pthread_mutex_unlock(&f->mu);
    return s;
}

/* Asks the source for one job's key (K2). */
static void ask(struct fv_keyfetch *f, struct fv_keyfetch_answer *a)
{
    uint64_t t0 = fv_mono_ns();
    char name[FV_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", a->name);
    for (;;) {
        /* A fresh key is offered each time; the source keeps the first one created
         * (create-if-absent) and answers with it. */
        snprintf(a->name, sizeof a->name, "%s", name);
        if (RAND_bytes(a->dek, FV_KEY_LEN) != 1) {
            a->rc = FV_EIO;
            return;
        }
        a->rc = f->src.subject(f->src.arg, a->pseudo, 1, a->dek, a->name);
        a->name[FV_NAME_MAX] = '\0';
        if (a->rc != FV_EIO || stopping(f)) return;
        if (fv_mono_ns() - t0 >= (uint64_t)FV_KEYFETCH_GIVE_UP_MS * 1000000u) {
            fv_warn("cluster: the key of subject %s could not be fetched for %d s; its device "
                    "is disconnected (it reconnects and tries again)",
                    a->pseudo, FV_KEYFETCH_GIVE_UP_MS / 1000);
            return;
        }
        struct timespec ts = {0, FV_KEYFETCH_PAUSE_MS * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
}

static void *run(void *arg)
{
    struct fv_keyfetch *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (f->jobs == NULL && !f->stop)
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->stop) break;
        struct item *it = f->jobs;
        f->jobs = it->next;
        if (f->jobs == NULL) f->jobs_tail = &f->jobs;
        f->njobs--;
        pthread_mutex_unlock(&f->mu);
        ask(f, &it->a);
        if (it->a.rc != FV_OK) OPENSSL_cleanse(it->a.dek, sizeof it->a.dek);
        pthread_mutex_lock(&f->mu);
        it->next = NULL;
        *f->done_tail = it;
        f->done_tail = &it->next;
        pthread_mutex_unlock(&f->mu);
        f->wake(f->wake_arg); /* K4 */
        pthread_mutex_lock(&f->mu);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

int fv_keyfetch_start(const struct fv_keysource *src, void (*wake)(void *), void *wake_arg,
                      struct fv_keyfetch **out)
{
    struct fv_keyfetch *f = calloc(1, sizeof *f);
    if (f == NULL) return FV_ENOMEM;
    f->src = *src;
    f->wake = wake;
    f->wake_arg = wake_arg;
    f->jobs_tail = &f->jobs;
    f->done_tail = &f->done;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    if (pthread_create(&f->thread, NULL, run, f) != 0) {
        pthread_cond_destroy(&f->cv);
        pthread_mutex_destroy(&f->mu);
        free(f);
        return FV_ENOMEM;
    }
    *out = f;
    return FV_OK;
}

int fv_keyfetch_submit(struct fv_keyfetch *f, uint64_t session_id, const char *pseudo,
                       const char *name)
{
    if (strlen(pseudo) != FV_PSEUDONYM_LEN || strlen(name) == 0 || strlen(name) > FV_NAME_MAX)
        return FV_EINVAL;
    struct item *it = calloc(1, sizeof *it);
    if (it == NULL) return FV_ENOMEM;
    it->a.session_id = session_id;
    memcpy(it->a.pseudo, pseudo, FV_PSEUDONYM_LEN + 1);
    snprintf(it->a.name, sizeof it->a.name, "%s", name);
    pthread_mutex_lock(&f->mu);
    int full = f->njobs >= FV_KEYFETCH_MAX_JOBS; /* K3 */
    if (!full && session_id == 0)                /* K5: asked for already (a device resending) */
        for (struct item *q = f->jobs; q; q = q->next)
            if (strcmp(q->a.pseudo, pseudo) == 0) {
                pthread_mutex_unlock(&f->mu);
                wipe_free(it);
                return FV_OK;
            }
    if (!full) {
        *f->jobs_tail = it;
        f->jobs_tail = &it->next;
        f->njobs++;
        pthread_cond_signal(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    if (full) {
        wipe_free(it);
        return FV_EAGAIN;
    }
    return FV_OK;
}

int fv_keyfetch_take(struct fv_keyfetch *f, struct fv_keyfetch_answer *out)
{
    pthread_mutex_lock(&f->mu);
    struct item *it = f->done;
    if (it) {
        f->done = it->next;
        if (f->done == NULL) f->done_tail = &f->done;
    }
    pthread_mutex_unlock(&f->mu);
    if (it == NULL) return 0;
    *out = it->a;
    wipe_free(it);
    return 1;
}

static void free_list(struct item *it)
{
    while (it) {
        struct item *next = it->next;
        wipe_free(it);
        it = next;
    }
}

void fv_keyfetch_stop(struct fv_keyfetch *f)
{
    if (f == NULL) return;
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    free_list(f->jobs);
    free_list(f->done);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}
