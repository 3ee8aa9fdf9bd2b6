/* jspresence.c - presence announcements over core NATS (jspresence.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "cluster/jspresence.h"
#include "cluster/natsconn.h"
#include "util/err.h"

struct node {
    struct node *next;
    struct fv_pres_msg m;
};

struct fv_jspresence {
    struct fv_natsconn conn;
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
    if (n < 0 || natsConnection_Publish(p->conn.nc, p->subject, buf, (int)n) != NATS_OK) {
        count(&p->failed);
        return;
    }
    count(&p->published);
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
    if (e == NULL || data == NULL || n <= 0 || fv_pres_decode(data, (size_t)n, &e->m) != FV_OK) {
        count(e ? &p->malformed : &p->dropped);
        free(e);
        natsMsg_Destroy(msg);
        return;
    }
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

int fv_jspresence_open(const struct fv_cluster_cfg *cfg, const char *name, void (*wake)(void *),
                       void *wake_arg, struct fv_jspresence **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_jspresence *p = calloc(1, sizeof *p);
    if (p == NULL) return FV_ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    p->wake = wake;
    p->wake_arg = wake_arg;
    snprintf(p->subject, sizeof p->subject, "fvdl.%s.presence", cfg->stream);
    int rc = fv_natsconn_connect(&p->conn, cfg, name, NULL, 5000, 0, err, errlen);
    if (rc) {
        pthread_mutex_destroy(&p->mu);
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
    free(p);
}
