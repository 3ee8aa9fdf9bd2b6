/* jspresence.c - presence announcements over core NATS (jspresence.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>
#include <openssl/crypto.h>

#include "cluster/jsenvelope.h"
#include "cluster/jspresence.h"
#include "cluster/natsconn.h"
#include "util/clock.h"
#include "util/err.h"

struct node {
    struct node *next;
    struct fv_pres_msg m;
};

struct fv_jspresence {
    struct fv_natsconn conn;
    struct fv_kek kek;          /* every message sealed under the master key (jsenvelope.h) */
    uint64_t refused_logged_ms; /* atomic */
    char subject[96];
    natsSubscription *sub;
    void (*wake)(void *);
    void *wake_arg;
    pthread_mutex_t mu; /* the queue */
    struct node *head, *tail;
    size_t queued;
    uint64_t published, failed, received, malformed, dropped; /* atomics */
};

static void count(uint64_t *c)
{
    __atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

void fv_jspresence_publish(void *arg, const struct fv_pres_msg *m)
{
    struct fv_jspresence *p = arg;
    unsigned char buf[FV_PRES_MSG_MAX];
    long n = fv_pres_encode(m, buf, sizeof buf);
    struct fv_buf sealed = {0};
    int ok =
        n >= 0 &&
        fv_jsenv_seal(&p->kek, p->subject, fv_now_ms(), buf, (size_t)n, &sealed) == FV_OK &&
        natsConnection_Publish(p->conn.nc, p->subject, sealed.data, (int)sealed.len) == NATS_OK;
    OPENSSL_cleanse(buf, sizeof buf);
    fv_buf_free(&sealed);
    count(ok ? &p->published : &p->failed);
}

/* nats.c's subscription thread */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    struct fv_jspresence *p = closure;
    const unsigned char *data = (const unsigned char *)natsMsg_GetData(msg);
    int n = natsMsg_GetDataLength(msg);
    struct node *e = malloc(sizeof *e);
    struct fv_buf body = {0};
    char err[400];
    int rc = e == NULL || data == NULL || n <= 0
                 ? FV_EPROTO
                 : fv_jsenv_open(&p->kek, p->subject, fv_now_ms(), data, (size_t)n, &body, err,
                                 sizeof err);
    if (rc == FV_ECORRUPT) fv_jsenv_log_refusal(&p->refused_logged_ms, err);
    if (rc || fv_pres_decode(body.data, body.len, &e->m) != FV_OK) {
        count(e ? &p->malformed : &p->dropped);
        free(e);
        fv_buf_free(&body);
        natsMsg_Destroy(msg);
        return;
    }
    OPENSSL_cleanse(body.data, body.len);
    fv_buf_free(&body);
    natsMsg_Destroy(msg);
    e->next = NULL;
    pthread_mutex_lock(&p->mu);
    int full = p->queued >= FV_JSPRES_QUEUE_MAX;
    if (!full) {
        if (p->tail)
            p->tail->next = e;
        else
            p->head = e;
        p->tail = e;
        p->queued++;
    }
    pthread_mutex_unlock(&p->mu);
    if (full) {
        free(e);
        count(&p->dropped);
        return;
    }
    count(&p->received);
    p->wake(p->wake_arg);
}

int fv_jspresence_next(struct fv_jspresence *p, struct fv_pres_msg *m)
{
    pthread_mutex_lock(&p->mu);
    struct node *e = p->head;
    if (e) {
        p->head = e->next;
        if (p->head == NULL) p->tail = NULL;
        p->queued--;
    }
    pthread_mutex_unlock(&p->mu);
    if (e == NULL) return 0;
    *m = e->m;
    free(e);
    return 1;
}

int fv_jspresence_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek, const char *name,
                       void (*wake)(void *), void *wake_arg, struct fv_jspresence **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    struct fv_jspresence *p = calloc(1, sizeof *p);
    if (p == NULL) return FV_ENOMEM;
    p->kek = *kek;
    pthread_mutex_init(&p->mu, NULL);
    p->wake = wake;
    p->wake_arg = wake_arg;
    snprintf(p->subject, sizeof p->subject, "fvdl.%s.presence", cfg->stream);
    int rc = fv_natsconn_connect(&p->conn, cfg, name, NULL, 5000, 0, err, errlen);
    if (rc) {
        pthread_mutex_destroy(&p->mu);
        OPENSSL_cleanse(&p->kek, sizeof p->kek);
        free(p);
        return rc;
    }
    natsStatus s = natsConnection_Subscribe(&p->sub, p->conn.nc, p->subject, on_msg, p);
    if (s == NATS_OK) s = natsConnection_Flush(p->conn.nc); /* the server has it */
    if (s != NATS_OK) {
        fv_seterr(err, errlen, "cluster: cannot subscribe to %s: %s", p->subject,
                  natsStatus_GetText(s));
        fv_jspresence_close(p);
        return FV_EIO;
    }
    *out = p;
    return FV_OK;
}

void fv_jspresence_counts(struct fv_jspresence *p, struct fv_jspres_counts *out)
{
    memset(out, 0, sizeof *out);
    if (p == NULL) return;
    out->published = __atomic_load_n(&p->published, __ATOMIC_RELAXED);
    out->failed = __atomic_load_n(&p->failed, __ATOMIC_RELAXED);
    out->received = __atomic_load_n(&p->received, __ATOMIC_RELAXED);
    out->malformed = __atomic_load_n(&p->malformed, __ATOMIC_RELAXED);
    out->dropped = __atomic_load_n(&p->dropped, __ATOMIC_RELAXED);
}

void fv_jspresence_close(struct fv_jspresence *p)
{
    if (p == NULL) return;
    if (p->sub) {
        if (natsSubscription_Drain(p->sub) == NATS_OK)
            natsSubscription_WaitForDrainCompletion(p->sub, 2000);
        natsSubscription_Destroy(p->sub);
    }
    natsConnection_FlushTimeout(p->conn.nc, 1000); /* the last GONE announcements */
    fv_natsconn_close(&p->conn);
    struct fv_pres_msg m;
    while (fv_jspresence_next(p, &m))
        ;
    pthread_mutex_destroy(&p->mu);
    OPENSSL_cleanse(&p->kek, sizeof p->kek);
    free(p);
}
