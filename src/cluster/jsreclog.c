/* jsreclog.c - the gateway's record log on NATS JetStream (jsreclog.h). */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/jsreclog.h"
#include "cluster/natsconn.h"
#include "crypto/keys.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"
#include "wal/wal_format.h"

struct fv_jsreclog {
    struct fv_natsconn conn;
    const struct fv_cluster_cfg *cfg;
    void (*notify)(void *);
    void *notify_arg;
    uint64_t appended; /* ingest loop only */
    unsigned char *body;
    size_t body_cap;
    pthread_mutex_t mu;           /* guards acked[] and durable's advance */
    uint8_t *acked;               /* FV_JSLOG_WINDOW flags: seq % window got its PubAck */
    uint64_t durable;             /* atomic reads; written under mu */
    int failed;                   /* atomic */
    int closing;                  /* atomic: no more retries */
    uint64_t retries;             /* atomic: publishes sent again (J3) */
    uint64_t pubacks, duplicates; /* atomic: PubAcks counted; of which duplicates */
    uint64_t refused;             /* ingest loop only: appends refused, window full (J2) */
    uint64_t paused_ms;           /* atomic: when the last retry pause ended (monotonic ms) */
};

static void set_failed(struct fv_jsreclog *l, const char *why, const char *detail)
{
    if (__atomic_exchange_n(&l->failed, 1, __ATOMIC_ACQ_REL) == 0)
        fv_error("cluster: a record was not stored by the stream (%s%s%s): the record log has "
                 "failed, the gateway stops (devices resend to another gateway)",
                 why, detail ? ": " : "", detail ? detail : "");
    if (l->notify) l->notify(l->notify_arg);
}

/* nats.c's thread: J3's retry. A publish that timed out or found no server is sent again
 * (same message, same message id: the stream stores it once) after a short pause, until
 * FV_JSLOG_RETRY_MS after its first attempt (header Fv-First, the monotonic clock in ms).
 * 1: sent again (nats.c owns msg again); 0: give up. */
static int retry(struct fv_jsreclog *l, jsCtx *js, natsMsg **msg, const jsPubAckErr *pae)
{
    if (pae->ErrCode != 0 || __atomic_load_n(&l->closing, __ATOMIC_ACQUIRE))
        return 0; /* the stream refused it: sending it again cannot help */
    uint64_t now = fv_mono_ns() / 1000000, first = now;
    const char *v = NULL;
    if (natsMsgHeader_Get(*msg, "Fv-First", &v) == NATS_OK && v) first = strtoull(v, NULL, 10);
    if (now - first > FV_JSLOG_RETRY_MS) return 0;
    char txt[24], id[FV_PSEUDONYM_LEN + 2 + 2 * 256 + 1] = "";
    snprintf(txt, sizeof txt, "%" PRIu64, first);
    if (natsMsgHeader_Get(*msg, "Nats-Msg-Id", &v) == NATS_OK && v)
        snprintf(id, sizeof id, "%s", v);
    if (natsMsgHeader_Set(*msg, "Fv-First", txt) != NATS_OK) return 0;
    __atomic_fetch_add(&l->retries, 1, __ATOMIC_RELAXED);
    /* A leader election or a reconnect is under way: one pause per FV_JSLOG_RETRY_PAUSE_MS
     * for all the publishes failing together, not one each (they come one after another on
     * this thread). */
    uint64_t last = __atomic_load_n(&l->paused_ms, __ATOMIC_RELAXED);
    if (now - last >= FV_JSLOG_RETRY_PAUSE_MS) {
        usleep(FV_JSLOG_RETRY_PAUSE_MS * 1000);
        __atomic_store_n(&l->paused_ms, fv_mono_ns() / 1000000, __ATOMIC_RELAXED);
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = FV_JSLOG_ACK_WAIT_MS;
    if (id[0]) po.MsgId = id;
    return js_PublishMsgAsync(js, msg, &po) == NATS_OK;
}

/* nats.c's thread: one publish's outcome (J1, J3). */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *arg)
{
    struct fv_jsreclog *l = arg;
    const char *v = NULL;
    uint64_t seq = 0;
    if (natsMsgHeader_Get(msg, "Fv-Seq", &v) == NATS_OK && v) seq = strtoull(v, NULL, 10);
    if (pae && seq && retry(l, js, &msg, pae)) {
        natsMsg_Destroy(msg); /* NULL now: nats.c owns it again */
        return;
    }
    if (pae || pa == NULL || seq == 0) {
        set_failed(l, pae ? natsStatus_GetText(pae->Err) : "no PubAck",
                   pae && pae->ErrText ? pae->ErrText : NULL);
        natsMsg_Destroy(msg);
        return;
    }
    natsMsg_Destroy(msg);
    __atomic_fetch_add(&l->pubacks, 1, __ATOMIC_RELAXED);
    if (pa->Duplicate) __atomic_fetch_add(&l->duplicates, 1, __ATOMIC_RELAXED);
    int advanced = 0;
    pthread_mutex_lock(&l->mu);
    uint64_t d = l->durable;
    if (seq > d && seq - d <= FV_JSLOG_WINDOW) {
        l->acked[seq % FV_JSLOG_WINDOW] = 1;
        while (l->acked[(d + 1) % FV_JSLOG_WINDOW]) {
            l->acked[(d + 1) % FV_JSLOG_WINDOW] = 0;
            d++;
            advanced = 1;
        }
        __atomic_store_n(&l->durable, d, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&l->mu);
    if (advanced && l->notify) l->notify(l->notify_arg);
}

static int64_t js_append(void *impl, const struct fv_wal_record *rec)
{
    struct fv_jsreclog *l = impl;
    if (__atomic_load_n(&l->failed, __ATOMIC_ACQUIRE)) return FV_EIO;
    if (fv_natsconn_closed(&l->conn)) {
        set_failed(l, "the NATS connection is closed", NULL);
        return FV_EIO;
    }
    if (l->appended - __atomic_load_n(&l->durable, __ATOMIC_ACQUIRE) >= FV_JSLOG_WINDOW) {
        l->refused++;
        return FV_EAGAIN; /* J2 */
    }
    size_t need = FV_WAL_MAX_BODY, n = 0;
    if (l->body_cap < need) {
        unsigned char *b = realloc(l->body, need);
        if (b == NULL) return FV_ENOMEM;
        l->body = b;
        l->body_cap = need;
    }
    int rc = fv_wal_encode_body(rec, l->body, l->body_cap, &n);
    if (rc) return rc;
    char pseudo[FV_PSEUDONYM_LEN + 1];
    snprintf(pseudo, sizeof pseudo, "%.*s", (int)rec->device_id_len, rec->device_id);
    char subj[96], seqtxt[24];
    fv_cluster_subject(l->cfg, fv_cluster_shard(pseudo, l->cfg->shards), subj, sizeof subj);
    uint64_t seq = l->appended + 1;
    snprintf(seqtxt, sizeof seqtxt, "%" PRIu64, seq);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subj, NULL, (const char *)l->body, (int)n);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Fv-Seq", seqtxt);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = FV_JSLOG_ACK_WAIT_MS;
    char *msgid = NULL;
    if (s == NATS_OK && rec->txid_len) {
        /* PSEUDONYM:TXIDHEX: a device's resend of the same txid, through any gateway. */
        msgid = malloc((size_t)rec->device_id_len + 2 + 2 * (size_t)rec->txid_len);
        if (msgid == NULL) {
            natsMsg_Destroy(m);
            return FV_ENOMEM;
        }
        memcpy(msgid, pseudo, rec->device_id_len);
        msgid[rec->device_id_len] = ':';
        fv_hex(rec->txid, rec->txid_len, msgid + rec->device_id_len + 1);
        po.MsgId = msgid;
    }
    if (s == NATS_OK) s = js_PublishMsgAsync(l->conn.js, &m, &po);
    free(msgid);
    natsMsg_Destroy(m); /* NULL once nats.c took it */
    if (s != NATS_OK) {
        fv_warn("cluster: publishing a record failed: %s", natsStatus_GetText(s));
        return FV_EIO; /* nothing logged (L1): the device gets the storage error */
    }
    l->appended = seq;
    return (int64_t)seq;
}

static uint64_t js_durable(void *impl)
{
    struct fv_jsreclog *l = impl;
    return __atomic_load_n(&l->durable, __ATOMIC_ACQUIRE);
}

static uint64_t js_appended(void *impl)
{
    struct fv_jsreclog *l = impl;
    return l->appended;
}

static int js_failed(void *impl)
{
    struct fv_jsreclog *l = impl;
    return __atomic_load_n(&l->failed, __ATOMIC_ACQUIRE) || fv_natsconn_closed(&l->conn);
}

int fv_jsreclog_full(void *impl)
{
    struct fv_jsreclog *l = impl;
    return l->appended - js_durable(l) > FV_JSLOG_WINDOW / 2;
}

void fv_jsreclog_counts(struct fv_jsreclog *l, struct fv_jsreclog_counts *out)
{
    out->published = l->appended;
    out->pubacks = __atomic_load_n(&l->pubacks, __ATOMIC_RELAXED);
    out->duplicates = __atomic_load_n(&l->duplicates, __ATOMIC_RELAXED);
    out->retries = __atomic_load_n(&l->retries, __ATOMIC_RELAXED);
    out->refused = l->refused;
    out->outstanding = l->appended - js_durable(l);
}

struct fv_reclog fv_jsreclog_log(struct fv_jsreclog *l)
{
    return (struct fv_reclog){l, js_append, js_durable, js_appended, js_failed};
}

int fv_jsreclog_open(const struct fv_cluster_cfg *cfg, void (*notify)(void *), void *notify_arg,
                     struct fv_jsreclog **out, char *err, size_t errlen)
{
    struct fv_jsreclog *l = calloc(1, sizeof *l);
    if (l) l->acked = calloc(FV_JSLOG_WINDOW, 1);
    if (l == NULL || l->acked == NULL) {
        free(l);
        return FV_ENOMEM;
    }
    l->cfg = cfg;
    l->notify = notify;
    l->notify_arg = notify_arg;
    pthread_mutex_init(&l->mu, NULL);
    struct fv_js_handlers h = {.ack = on_ack, .arg = l, .max_pending = FV_JSLOG_WINDOW + 1024};
    int rc = fv_natsconn_open(&l->conn, cfg, "fleetvault-gateway", &h, err, errlen);
    if (rc) {
        pthread_mutex_destroy(&l->mu);
        free(l->acked);
        free(l);
        return rc;
    }
    *out = l;
    return FV_OK;
}

void fv_jsreclog_close(struct fv_jsreclog *l, int timeout_ms)
{
    if (l == NULL) return;
    if (l->conn.js) {
        __atomic_store_n(&l->closing, 1, __ATOMIC_RELEASE);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = timeout_ms;
        if (js_PublishAsyncComplete(l->conn.js, &po) != NATS_OK)
            fv_warn("cluster: closing with records not yet acknowledged by the stream (their "
                    "devices were not acked and resend them)");
    }
    uint64_t n = __atomic_load_n(&l->retries, __ATOMIC_RELAXED);
    if (n) fv_info("cluster: %llu publishes were sent again (J3)", (unsigned long long)n);
    fv_natsconn_close(&l->conn);
    pthread_mutex_destroy(&l->mu);
    free(l->acked);
    free(l->body);
    free(l);
}
