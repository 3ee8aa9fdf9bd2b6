/* jsdownlink.c - the downlink seam over core NATS (jsdownlink.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include <openssl/crypto.h>

#include "cluster/jsdownlink.h"
#include "cluster/jsenvelope.h"
#include "cluster/natsconn.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define SUBJECT_MAX 96

struct fv_jsdownlink {
    struct fv_natsconn conn;
    struct fv_kek kek; /* N5: every envelope sealed under the master key */
    char cmd_subject[SUBJECT_MAX], up_subject[SUBJECT_MAX];
    natsSubscription *sub;
    struct fv_downlink local;                        /* gateway: the in-process downlink (N2) */
    const struct fv_downlink_listener *caps;         /* storage node: the capabilities (N4) */
    struct fv_downlink_listener uplink;              /* gateway: the ingest's listener (N3) */
    uint64_t published, failed, received, malformed; /* atomics */
    uint64_t refused_logged_ms;                      /* the last refusal logged (atomic) */
};

static void count(uint64_t *c)
{
    __atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

long fv_jsdl_encode(const struct fv_jsdl_msg *m, unsigned char *buf, size_t cap)
{
    const char *f[3] = {m->device, m->topic, m->msg_id};
    size_t n = 2;
    for (int i = 0; i < 3; i++)
        n += 1 + strlen(f[i] ? f[i] : "");
    if (n + m->len > cap || n + m->len > (size_t)0x7fffffff) return -1;
    buf[0] = FV_JSDL_VERSION;
    buf[1] = (unsigned char)m->kind;
    size_t at = 2;
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(f[i] ? f[i] : "");
        if (l > FV_JSDL_FIELD_MAX) return -1;
        buf[at++] = (unsigned char)l;
        if (l) memcpy(buf + at, f[i], l);
        at += l;
    }
    if (m->len) memcpy(buf + at, m->payload, m->len);
    return (long)(at + m->len);
}

int fv_jsdl_decode(const unsigned char *data, size_t n, struct fv_jsdl_msg *m, char *device,
                   char *topic, char *msg_id)
{
    if (n < 5 || data[0] != FV_JSDL_VERSION) return FV_EPROTO;
    m->kind = data[1];
    if (m->kind < FV_JSDL_CMD || m->kind > FV_JSDL_CONNECT) return FV_EPROTO;
    char *f[3] = {device, topic, msg_id};
    size_t at = 2;
    for (int i = 0; i < 3; i++) {
        if (at >= n) return FV_EPROTO;
        size_t l = data[at++];
        if (l > FV_JSDL_FIELD_MAX || l > n - at || memchr(data + at, 0, l)) return FV_EPROTO;
        memcpy(f[i], data + at, l);
        f[i][l] = '\0';
        at += l;
    }
    if (device[0] == '\0') return FV_EPROTO;
    m->device = device;
    m->topic = topic;
    m->msg_id = msg_id;
    m->payload = data + at;
    m->len = n - at;
    return FV_OK;
}

/* Encodes and publishes on subject (nats.c copies into its buffer and returns). */
static int publish(struct fv_jsdownlink *dl, const char *subject, const struct fv_jsdl_msg *m)
{
    size_t cap = 2 + 3 * (FV_JSDL_FIELD_MAX + 1) + m->len;
    unsigned char *buf = malloc(cap);
    if (buf == NULL) {
        count(&dl->failed);
        return FV_ENOMEM;
    }
    long n = fv_jsdl_encode(m, buf, cap);
    struct fv_buf sealed = {0};
    int rc =
        n < 0 ? FV_EINVAL : fv_jsenv_seal(&dl->kek, subject, fv_now_ms(), buf, (size_t)n, &sealed);
    OPENSSL_cleanse(buf, cap);
    free(buf);
    natsStatus s = rc ? NATS_INVALID_ARG
                      : natsConnection_Publish(dl->conn.nc, subject, sealed.data, (int)sealed.len);
    fv_buf_free(&sealed);
    if (s != NATS_OK) {
        count(&dl->failed);
        return rc ? rc : FV_EIO;
    }
    count(&dl->published);
    return FV_OK;
}

/* N1 */
static int cmd_send(void *impl, const char *device_id, const char *topic, const char *msg_id,
                    const void *payload, size_t len)
{
    struct fv_jsdownlink *dl = impl;
    struct fv_jsdl_msg m = {.kind = FV_JSDL_CMD,
                            .device = device_id,
                            .topic = topic,
                            .msg_id = msg_id,
                            .payload = payload,
                            .len = len};
    return publish(dl, dl->cmd_subject, &m);
}

/* N3 (ingest loop) */
static void up_message(void *arg, const char *device_id, const char *topic,
                       const unsigned char *payload, size_t len)
{
    struct fv_jsdownlink *dl = arg;
    struct fv_jsdl_msg m = {.kind = FV_JSDL_MESSAGE,
                            .device = device_id,
                            .topic = topic,
                            .payload = payload,
                            .len = len};
    publish(dl, dl->up_subject, &m);
}

static void up_connect(void *arg, const char *device_id)
{
    struct fv_jsdownlink *dl = arg;
    struct fv_jsdl_msg m = {.kind = FV_JSDL_CONNECT, .device = device_id};
    publish(dl, dl->up_subject, &m);
}

/* N2, N4: nats.c's subscription thread. */
static void on_nats_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    struct fv_jsdownlink *dl = closure;
    char device[FV_JSDL_FIELD_MAX + 1], topic[FV_JSDL_FIELD_MAX + 1], id[FV_JSDL_FIELD_MAX + 1];
    struct fv_jsdl_msg m;
    const unsigned char *data = (const unsigned char *)natsMsg_GetData(msg);
    int n = natsMsg_GetDataLength(msg);
    struct fv_buf body = {0};
    char err[400];
    int rc = data == NULL || n <= 0 ? FV_EPROTO
                                    : fv_jsenv_open(&dl->kek, natsMsg_GetSubject(msg), fv_now_ms(),
                                                    data, (size_t)n, &body, err, sizeof err);
    if (rc == FV_ECORRUPT) fv_jsenv_log_refusal(&dl->refused_logged_ms, err);
    if (rc || fv_jsdl_decode(body.data, body.len, &m, device, topic, id) != FV_OK) {
        count(&dl->malformed);
        fv_buf_free(&body);
        natsMsg_Destroy(msg);
        return;
    }
    if (dl->local.send && m.kind == FV_JSDL_CMD) {
        count(&dl->received);
        dl->local.send(dl->local.impl, m.device, m.topic, m.msg_id, m.payload, m.len);
    } else if (dl->caps && m.kind == FV_JSDL_MESSAGE) {
        count(&dl->received);
        if (dl->caps->on_message)
            dl->caps->on_message(dl->caps->arg, m.device, m.topic, m.payload, m.len);
    } else if (dl->caps && m.kind == FV_JSDL_CONNECT) {
        count(&dl->received);
        if (dl->caps->on_connect) dl->caps->on_connect(dl->caps->arg, m.device);
    } else {
        count(&dl->malformed); /* a kind this side does not take */
    }
    OPENSSL_cleanse(body.data, body.len);
    fv_buf_free(&body);
    natsMsg_Destroy(msg);
}

int fv_jsdownlink_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek, const char *name,
                       struct fv_jsdownlink **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_jsdownlink *dl = calloc(1, sizeof *dl);
    if (dl == NULL) return FV_ENOMEM;
    dl->kek = *kek;
    snprintf(dl->cmd_subject, sizeof dl->cmd_subject, "fvdl.%s.cmd", cfg->stream);
    snprintf(dl->up_subject, sizeof dl->up_subject, "fvdl.%s.up", cfg->stream);
    int rc = fv_natsconn_connect(&dl->conn, cfg, name, NULL, 5000, 0, err, errlen);
    if (rc) {
        OPENSSL_cleanse(&dl->kek, sizeof dl->kek);
        free(dl);
        return rc;
    }
    *out = dl;
    return FV_OK;
}

struct fv_downlink fv_jsdownlink_port(struct fv_jsdownlink *dl)
{
    return (struct fv_downlink){cmd_send, dl};
}

static int subscribe(struct fv_jsdownlink *dl, const char *subject, char *err, size_t errlen)
{
    natsStatus s = natsConnection_Subscribe(&dl->sub, dl->conn.nc, subject, on_nats_msg, dl);
    if (s == NATS_OK) s = natsConnection_Flush(dl->conn.nc); /* the server has it */
    if (s != NATS_OK) {
        fv_seterr(err, errlen, "cluster: cannot subscribe to %s: %s", subject,
                  natsStatus_GetText(s));
        return FV_EIO;
    }
    return FV_OK;
}

int fv_jsdownlink_serve(struct fv_jsdownlink *dl, struct fv_downlink local, char *err,
                        size_t errlen)
{
    dl->local = local;
    return subscribe(dl, dl->cmd_subject, err, errlen);
}

const struct fv_downlink_listener *
fv_jsdownlink_uplink(struct fv_jsdownlink *dl, const char *const topics[FV_DOWNLINK_MAX_TOPICS])
{
    for (int i = 0; i < FV_DOWNLINK_MAX_TOPICS; i++)
        dl->uplink.topics[i] = topics[i];
    dl->uplink.on_message = up_message;
    dl->uplink.on_connect = up_connect;
    dl->uplink.arg = dl;
    return &dl->uplink;
}

int fv_jsdownlink_listen(struct fv_jsdownlink *dl, const struct fv_downlink_listener *l, char *err,
                         size_t errlen)
{
    dl->caps = l;
    return subscribe(dl, dl->up_subject, err, errlen);
}

void fv_jsdownlink_counts(struct fv_jsdownlink *dl, struct fv_jsdl_counts *out)
{
    memset(out, 0, sizeof *out);
    if (dl == NULL) return;
    out->published = __atomic_load_n(&dl->published, __ATOMIC_RELAXED);
    out->failed = __atomic_load_n(&dl->failed, __ATOMIC_RELAXED);
    out->received = __atomic_load_n(&dl->received, __ATOMIC_RELAXED);
    out->malformed = __atomic_load_n(&dl->malformed, __ATOMIC_RELAXED);
}

void fv_jsdownlink_close(struct fv_jsdownlink *dl)
{
    if (dl == NULL) return;
    if (dl->sub) {
        /* Drain waits until the callbacks of what was delivered have run. */
        if (natsSubscription_Drain(dl->sub) == NATS_OK)
            natsSubscription_WaitForDrainCompletion(dl->sub, 2000);
        natsSubscription_Destroy(dl->sub);
    }
    natsConnection_FlushTimeout(dl->conn.nc, 1000); /* the last commands or uplinks */
    fv_natsconn_close(&dl->conn);
    OPENSSL_cleanse(&dl->kek, sizeof dl->kek);
    free(dl);
}
