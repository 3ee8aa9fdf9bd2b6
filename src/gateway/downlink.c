/* downlink.c - the in-process downlink (downlink.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/downlink.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "wire/envelope.h"

#define MSG_FIELD_MAX 128 /* device id, topic, message id */

struct dlmsg {
    struct dlmsg *next;
    char device[MSG_FIELD_MAX], topic[MSG_FIELD_MAX], id[MSG_FIELD_MAX];
    int remote; /* from the cluster (fv_gw_downlink_remote_port) */
    size_t len;
    unsigned char payload[];
};

struct fv_gw_downlink {
    struct fv_ingest *ing;
    struct fv_metrics *m;
    void (*wake)(void *);
    void *wake_arg;
    pthread_mutex_t mu;
    struct dlmsg *head, *tail; /* under mu */
};

static int queue(struct fv_gw_downlink *dl, int remote, const char *device_id, const char *topic,
                 const char *msg_id, const void *payload, size_t len)
{
    if (strlen(device_id) >= MSG_FIELD_MAX || strlen(topic) >= MSG_FIELD_MAX ||
        strlen(msg_id) >= MSG_FIELD_MAX || len > FV_SESSION_OUT_MAX / 2)
        return FV_EINVAL;
    struct dlmsg *x = malloc(sizeof *x + len);
    if (x == NULL) return FV_ENOMEM;
    x->next = NULL;
    x->remote = remote;
    strcpy(x->device, device_id);
    strcpy(x->topic, topic);
    strcpy(x->id, msg_id);
    x->len = len;
    memcpy(x->payload, payload, len);
    pthread_mutex_lock(&dl->mu);
    if (dl->tail)
        dl->tail->next = x;
    else
        dl->head = x;
    dl->tail = x;
    pthread_mutex_unlock(&dl->mu);
    if (dl->wake) dl->wake(dl->wake_arg);
    return FV_OK;
}

static int dl_send(void *impl, const char *device_id, const char *topic, const char *msg_id,
                   const void *payload, size_t len)
{
    return queue(impl, 0, device_id, topic, msg_id, payload, len);
}

static int dl_send_remote(void *impl, const char *device_id, const char *topic, const char *msg_id,
                          const void *payload, size_t len)
{
    return queue(impl, 1, device_id, topic, msg_id, payload, len);
}

int fv_gw_downlink_new(struct fv_ingest *ing, struct fv_metrics *m, void (*wake)(void *),
                       void *wake_arg, struct fv_gw_downlink **out)
{
    struct fv_gw_downlink *dl = calloc(1, sizeof *dl);
    if (dl == NULL) return FV_ENOMEM;
    dl->ing = ing;
    dl->m = m;
    dl->wake = wake;
    dl->wake_arg = wake_arg;
    pthread_mutex_init(&dl->mu, NULL);
    *out = dl;
    return FV_OK;
}

struct fv_downlink fv_gw_downlink_port(struct fv_gw_downlink *dl)
{
    return (struct fv_downlink){dl_send, dl};
}

struct fv_downlink fv_gw_downlink_remote_port(struct fv_gw_downlink *dl)
{
    return (struct fv_downlink){dl_send_remote, dl};
}

void fv_gw_downlink_drain(struct fv_gw_downlink *dl)
{
    pthread_mutex_lock(&dl->mu);
    struct dlmsg *x = dl->head;
    dl->head = dl->tail = NULL;
    pthread_mutex_unlock(&dl->mu);
    struct fv_buf env = {0};
    while (x) {
        struct dlmsg *next = x->next;
        struct fv_stream_msg sm = {.txid = x->id,
                                   .txid_len = strlen(x->id),
                                   .topic = x->topic,
                                   .topic_len = strlen(x->topic),
                                   .created_at = (uint32_t)(fv_now_ms() / 1000),
                                   .sender_id = "fleetvault",
                                   .sender_id_len = 10,
                                   .payload = x->payload,
                                   .payload_len = x->len};
        fv_buf_reset(&env);
        int rc = fv_envelope_build_stream(&env, &sm);
        if (rc == FV_OK) rc = fv_ingest_downlink(dl->ing, x->device, env.data, env.len);
        if (rc == FV_OK)
            dl->m->downlink_sent++;
        else if (x->remote)
            dl->m->downlink_not_here++; /* another gateway may hold the device */
        else
            dl->m->downlink_dropped++; /* not connected (D1): the capability sends again */
        free(x);
        x = next;
    }
    fv_buf_free(&env);
}

void fv_gw_downlink_free(struct fv_gw_downlink *dl)
{
    if (dl == NULL) return;
    for (struct dlmsg *x = dl->head, *n; x; x = n) {
        n = x->next;
        free(x);
    }
    pthread_mutex_destroy(&dl->mu);
    free(dl);
}
