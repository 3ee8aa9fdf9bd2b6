/* jsconsume.c - a storage node's durable pull consumers (jsconsume.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "cluster/jsconsume.h"
#include "cluster/natsconn.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "wal/wal_format.h"

#define BATCH 256

struct pending_ack {
    uint64_t wal_seq; /* the batch's cursor record */
    natsMsg *msg;     /* the batch's last message */
};

struct shard {
    uint32_t no;
    natsSubscription *sub;
    uint64_t cursor; /* highest stream sequence in the local WAL */
};

struct fv_jsconsume {
    const struct fv_cluster_cfg *cfg;
    fv_take_fn take;
    void *take_arg;
    fv_wal_replay_fn replay;
    void *replay_arg;
    struct fv_natsconn conn;
    struct fv_wal *wal;
    uint64_t cursor[FV_CLUSTER_MAX_SHARDS]; /* from replay, then the shards' */
    struct shard *shards;
    size_t nshards;
    struct pending_ack *acks; /* in WAL order */
    size_t nacks, acks_cap;
    uint64_t skipped;
};

int fv_jsconsume_new(const struct fv_cluster_cfg *cfg, fv_take_fn take, void *take_arg,
                     fv_wal_replay_fn replay, void *replay_arg, struct fv_jsconsume **out)
{
    struct fv_jsconsume *c = calloc(1, sizeof *c);
    if (c == NULL) return FV_ENOMEM;
    c->cfg = cfg;
    c->take = take;
    c->take_arg = take_arg;
    c->replay = replay;
    c->replay_arg = replay_arg;
    *out = c;
    return FV_OK;
}

int fv_jsconsume_is_cursor(const struct fv_wal_record *r)
{
    return r->device_id_len == sizeof FV_CURSOR_DEVICE - 1 &&
           memcmp(r->device_id, FV_CURSOR_DEVICE, r->device_id_len) == 0 &&
           r->topic_len == sizeof FV_CURSOR_TOPIC - 1 &&
           memcmp(r->topic, FV_CURSOR_TOPIC, r->topic_len) == 0;
}

int fv_jsconsume_replay(void *arg, const struct fv_wal_record *r, const char *file, uint64_t off)
{
    struct fv_jsconsume *c = arg;
    if (!fv_jsconsume_is_cursor(r)) return c->replay(c->replay_arg, r, file, off);
    if (r->payload_len != 12) return FV_ECORRUPT;
    uint32_t shard = fv_get_u32(r->payload);
    uint64_t seq = fv_get_u64(r->payload + 4);
    if (shard < FV_CLUSTER_MAX_SHARDS && seq > c->cursor[shard]) c->cursor[shard] = seq;
    return FV_OK;
}

int fv_jsconsume_start(struct fv_jsconsume *c, struct fv_wal *wal, char *err, size_t errlen)
{
    c->wal = wal;
    int rc = fv_natsconn_open(&c->conn, c->cfg, "fleetvault-storage", NULL, err, errlen);
    if (rc) return rc;
    c->shards = calloc(c->cfg->shards, sizeof *c->shards);
    if (c->shards == NULL) return FV_ENOMEM;
    for (uint32_t i = 0; i < c->cfg->shards; i++) {
        if (!c->cfg->owned[i]) continue;
        struct shard *s = &c->shards[c->nshards];
        char subj[96], durable[32];
        fv_cluster_subject(c->cfg, i, subj, sizeof subj);
        snprintf(durable, sizeof durable, "fv-shard-%u", i);
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = c->cfg->stream;
        so.Config.AckPolicy = js_AckAll;
        so.Config.DeliverPolicy = js_DeliverAll;
        so.Config.AckWait = 30ll * 1000000000; /* redelivered after 30 s unacked (C1 skips) */
        so.Config.MaxAckPending = 65536;
        so.ManualAck = true;
        jsErrCode jerr = 0;
        natsStatus st = js_PullSubscribe(&s->sub, c->conn.js, subj, durable, NULL, &so, &jerr);
        if (st != NATS_OK) {
            fv_seterr(err, errlen, "cluster: consumer %s on %s: %s (JetStream error %d)", durable,
                      subj, natsStatus_GetText(st), (int)jerr);
            return FV_EIO;
        }
        s->no = i;
        s->cursor = c->cursor[i];
        c->nshards++;
    }
    fv_info("cluster: consuming %zu of %u shards of stream %s", c->nshards, c->cfg->shards,
            c->cfg->stream);
    return FV_OK;
}

static void send_acks(struct fv_jsconsume *c, int all)
{
    uint64_t durable = c->wal ? fv_wal_durable_seq(c->wal) : 0;
    size_t k = 0;
    while (k < c->nacks && (all || c->acks[k].wal_seq <= durable)) {
        if (!all || c->acks[k].wal_seq <= durable) natsMsg_Ack(c->acks[k].msg, NULL);
        natsMsg_Destroy(c->acks[k].msg);
        k++;
    }
    memmove(c->acks, c->acks + k, (c->nacks - k) * sizeof *c->acks);
    c->nacks -= k;
}

static int push_ack(struct fv_jsconsume *c, uint64_t wal_seq, natsMsg *m)
{
    if (c->nacks == c->acks_cap) {
        size_t cap = c->acks_cap ? 2 * c->acks_cap : 64;
        struct pending_ack *a = realloc(c->acks, cap * sizeof *a);
        if (a == NULL) return FV_ENOMEM;
        c->acks = a;
        c->acks_cap = cap;
    }
    c->acks[c->nacks++] = (struct pending_ack){wal_seq, m};
    return FV_OK;
}

/* One message: logged and taken, unless at or below the cursor (C1). */
static int take_msg(struct fv_jsconsume *c, struct shard *s, natsMsg *m, uint64_t seq, char *err,
                    size_t errlen)
{
    if (seq <= s->cursor) {
        c->skipped++;
        return 0;
    }
    struct fv_wal_record r;
    const unsigned char *p = (const unsigned char *)natsMsg_GetData(m);
    int rc = fv_wal_decode_body(p, (size_t)natsMsg_GetDataLength(m), &r);
    if (rc == FV_OK && fv_wal_append(c->wal, &r) < 0) rc = FV_EIO;
    if (rc == FV_OK) rc = c->take(c->take_arg, &r);
    if (rc) {
        fv_seterr(err, errlen, "cluster: stream %s sequence %llu (shard %u): %s", c->cfg->stream,
                  (unsigned long long)seq, s->no, fv_strerror(rc));
        return rc;
    }
    s->cursor = seq;
    return 1;
}

static int fetch_shard(struct fv_jsconsume *c, struct shard *s, char *err, size_t errlen)
{
    natsMsgList list = {0};
    jsFetchRequest fr;
    jsFetchRequest_Init(&fr);
    fr.Batch = BATCH;
    fr.NoWait = true;
    fr.Expires = 2000000000ll;
    natsStatus st = natsSubscription_FetchRequest(&list, s->sub, &fr);
    if (st == NATS_TIMEOUT || st == NATS_NOT_FOUND || list.Count == 0) {
        natsMsgList_Destroy(&list);
        return 0;
    }
    if (st != NATS_OK) {
        natsMsgList_Destroy(&list);
        fv_warn("cluster: fetching shard %u: %s", s->no, natsStatus_GetText(st));
        return 0; /* nats.c reconnects; the next round tries again */
    }
    int n = 0, rc = 0;
    for (int i = 0; i < list.Count && rc >= 0; i++) {
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, list.Msgs[i]) != NATS_OK) continue;
        rc = take_msg(c, s, list.Msgs[i], meta->Sequence.Stream, err, errlen);
        jsMsgMetaData_Destroy(meta);
        if (rc > 0) n++;
    }
    if (rc >= 0) {
        /* C1: the cursor after the batch's records; C2: its last message acked once durable */
        unsigned char pl[12];
        fv_put_u32(pl, s->no);
        fv_put_u64(pl + 4, s->cursor);
        struct fv_wal_record cr = {.type = FV_WAL_REC_DATA,
                                   .received_ms = 0,
                                   .device_id = FV_CURSOR_DEVICE,
                                   .device_id_len = sizeof FV_CURSOR_DEVICE - 1,
                                   .topic = FV_CURSOR_TOPIC,
                                   .topic_len = sizeof FV_CURSOR_TOPIC - 1,
                                   .payload = pl,
                                   .payload_len = sizeof pl};
        int64_t ws = fv_wal_append(c->wal, &cr);
        if (ws < 0) {
            fv_seterr(err, errlen, "cluster: the local WAL refused a cursor record: %s",
                      fv_strerror((int)ws));
            rc = (int)ws;
        } else if ((rc = push_ack(c, (uint64_t)ws, list.Msgs[list.Count - 1])) == FV_OK) {
            list.Msgs[list.Count - 1] = NULL; /* kept until acked */
        }
    }
    natsMsgList_Destroy(&list);
    return rc < 0 ? rc : n;
}

int fv_jsconsume_step(struct fv_jsconsume *c, int wait_ms, char *err, size_t errlen)
{
    send_acks(c, 0);
    int total = 0;
    for (size_t i = 0; i < c->nshards; i++) {
        int n = fetch_shard(c, &c->shards[i], err, errlen);
        if (n < 0) return n;
        total += n;
    }
    if (total == 0 && wait_ms > 0) usleep((useconds_t)wait_ms * 1000);
    send_acks(c, 0);
    return total;
}

void fv_jsconsume_free(struct fv_jsconsume *c)
{
    if (c == NULL) return;
    send_acks(c, 1);
    free(c->acks);
    for (size_t i = 0; i < c->nshards; i++)
        natsSubscription_Destroy(c->shards[i].sub);
    free(c->shards);
    fv_natsconn_close(&c->conn);
    free(c);
}
