/* jsconsume.c - a storage node's durable pull consumers (jsconsume.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "cluster/jsconsume.h"
#include "cluster/jscursor.h"
#include "cluster/jslease.h"
#include "cluster/natsconn.h"
#include "crypto/keys.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"
#include "wal/wal_format.h"

#define BATCH      256
#define JS_WAIT_MS 1000 /* C10: a consumer request's wait (the loop renews leases between) */
#define POLL_MS    200  /* C10: how often a consumer being made is looked up */

struct pending_ack {
    uint64_t wal_seq; /* the batch's last record */
    natsMsg *msg;     /* the batch's last message */
};

struct shard {
    uint32_t no;
    natsSubscription *sub;
    uint64_t cursor;   /* highest stream sequence in the local WAL */
    uint64_t dseq;     /* the consumer's delivery sequence last seen (C5) */
    uint64_t gaps;     /* deliveries lost and the consumer made again */
    uint64_t idle_ms;  /* C6: since when fetches found nothing (monotonic ms; 0: they did) */
    int active;        /* C7: its lease is held and its consumer bound (or being made again) */
    uint64_t retry_ns; /* C7: a bind that failed is tried again from then on */
    uint64_t wait_ms;  /* C9: not fetched before (monotonic ms) */
    int making;        /* C10: its consumer asked for, not yet bound (no leader yet) */
    uint64_t poll_ms;  /* C10: not looked up again before (monotonic ms) */
    int move_failed;   /* C13: the record waiting is one whose move failed (not a key) */
};

struct fv_jsconsume {
    const struct fv_cluster_cfg *cfg;
    fv_take_fn take;
    void *take_arg;
    fv_take_fn ready;                                 /* C9 */
    int (*fix)(void *arg, struct fv_wal_record *rec); /* C11 */
    void *fix_arg;
    void *ready_arg;
    fv_wal_replay_fn replay;
    void *replay_arg;
    struct fv_natsconn conn;
    char node[65];
    struct fv_jslease *lease; /* C7 */
    struct fv_wal *wal;
    uint64_t cursor[FV_CLUSTER_MAX_SHARDS]; /* from the cursors file and replay (C8, C1) */
    char cursor_path[PATH_MAX];             /* C8 */
    uint64_t saved[FV_CLUSTER_MAX_SHARDS];  /* C8: what the cursors file holds */
    struct shard *shards;
    size_t nshards;
    struct pending_ack *acks; /* in WAL order */
    size_t nacks, acks_cap;
    uint64_t skipped;
    uint32_t next_shard; /* replay: the last cursor record's, until its record follows */
    uint64_t next_seq;
    int64_t fetch_expires_ns; /* C12: a fetch's wait for a batch's rest, from the RTT */
    uint64_t rtt_at_ns;       /* when the RTT was last measured (0: never) */
    /* tests: FV_FAULT_JS_GAP=K, the K-th message fetched is dropped as if lost on its way,
     * and the consumer delete that follows times out (docs/operations.md) */
    uint64_t fault_gap_at, fetched;
    int fault_delete;
    unsigned char *body; /* C13: a moved record's body */
    uint64_t moved;      /* C13 (atomic) */
};

int fv_jsconsume_new(const struct fv_cluster_cfg *cfg, const char *node, const char *data_dir,
                     fv_take_fn take, void *take_arg, fv_wal_replay_fn replay, void *replay_arg,
                     struct fv_jsconsume **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_jsconsume *c = calloc(1, sizeof *c);
    if (c == NULL) return FV_ENOMEM;
    c->cfg = cfg;
    snprintf(c->node, sizeof c->node, "%s", node);
    if ((size_t)snprintf(c->cursor_path, sizeof c->cursor_path, "%s/%s", data_dir,
                         FV_JSCURSOR_FILE) >= sizeof c->cursor_path) {
        fv_seterr(err, errlen, "cluster: data directory path too long");
        free(c);
        return FV_EINVAL;
    }
    c->take = take;
    c->take_arg = take_arg;
    c->replay = replay;
    c->replay_arg = replay_arg;
    /* C8: the positions of WAL files deleted; the WAL's replay raises them (C1) */
    int rc = fv_jscursor_load(c->cursor_path, c->cursor, cfg->shards, err, errlen);
    if (rc) {
        free(c);
        return rc;
    }
    memcpy(c->saved, c->cursor, sizeof c->saved);
    const char *gap = getenv("FV_FAULT_JS_GAP");
    if (gap && *gap) {
        c->fault_gap_at = strtoull(gap, NULL, 10);
        fv_warn("cluster: FV_FAULT_JS_GAP: message %llu fetched is dropped and the consumer "
                "delete after it times out (a test fault)",
                (unsigned long long)c->fault_gap_at);
    }
    *out = c;
    return FV_OK;
}

void fv_jsconsume_set_fix(struct fv_jsconsume *c, int (*fix)(void *arg, struct fv_wal_record *rec),
                          void *arg)
{
    c->fix = fix;
    c->fix_arg = arg;
}

void fv_jsconsume_set_ready(struct fv_jsconsume *c, fv_take_fn ready, void *arg)
{
    c->ready = ready;
    c->ready_arg = arg;
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
    if (fv_jsconsume_is_cursor(r)) {
        if (r->payload_len != 12 && (r->payload_len != 13 || r->payload[12] != 1))
            return FV_ECORRUPT;
        uint32_t shard = fv_get_u32(r->payload);
        uint64_t seq = fv_get_u64(r->payload + 4);
        if (r->payload_len == 13) { /* C13: its record moved to another shard: no record follows */
            if (shard < FV_CLUSTER_MAX_SHARDS && seq > c->cursor[shard]) c->cursor[shard] = seq;
            c->next_seq = 0;
            return FV_OK;
        }
        c->next_shard = shard;
        c->next_seq = seq;
        return FV_OK;
    }
    int rc = c->replay(c->replay_arg, r, file, off);
    /* C1: the record its cursor record announced is back: the shard's cursor moves to it */
    if (rc == FV_OK && c->next_seq && c->next_shard < FV_CLUSTER_MAX_SHARDS &&
        c->next_seq > c->cursor[c->next_shard])
        c->cursor[c->next_shard] = c->next_seq;
    c->next_seq = 0;
    return rc;
}

/* The durable consumer's name: one per node and shard (C7). */
static void durable_name(const struct fv_jsconsume *c, uint32_t shard, char *out, size_t cap)
{
    snprintf(out, cap, "fv-%s-shard-%u", c->node, shard);
}

/* C10: JetStream requests about consumers wait JS_WAIT_MS at most. */
static void short_wait(jsOptions *jo)
{
    jsOptions_Init(jo);
    jo->Wait = JS_WAIT_MS;
}

/* C4: the shard's durable consumer from before (a previous run's, or one a gap left) is
 * deleted, whatever its position: the node's own cursor (C1, C8) says where to resume. */
static int delete_consumer(struct fv_jsconsume *c, const char *durable, char *err, size_t errlen)
{
    jsErrCode jerr = 0;
    jsOptions jo;
    short_wait(&jo);
    natsStatus st = NATS_TIMEOUT;
    if (c->fault_delete)
        c->fault_delete = 0; /* FV_FAULT_JS_GAP: as if NATS did not answer */
    else
        st = js_DeleteConsumer(c->conn.js, c->cfg->stream, durable, &jo, &jerr);
    if (st != NATS_OK && st != NATS_NOT_FOUND) {
        fv_seterr(err, errlen,
                  "cluster: deleting consumer %s to restart it: %s (JetStream error %d)", durable,
                  natsStatus_GetText(st), (int)jerr);
        return FV_EIO;
    }
    return FV_OK;
}

/* C10: asks for shard s's consumer delivering from one past s->cursor (nothing on s's
 * subscription yet). A request that times out is no failure: the server may be electing the
 * consumer's leader (seconds on a degraded cluster); poll_making looks it up. */
static int make_consumer(struct fv_jsconsume *c, struct shard *s, char *err, size_t errlen)
{
    char subj[96], durable[96];
    fv_cluster_subject(c->cfg, s->no, subj, sizeof subj);
    durable_name(c, s->no, durable, sizeof durable);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable;
    cc.FilterSubject = subj;
    cc.AckPolicy = js_AckAll;
    cc.DeliverPolicy = s->cursor ? js_DeliverByStartSequence : js_DeliverAll;
    cc.OptStartSeq = s->cursor ? s->cursor + 1 : 0;
    cc.AckWait = 30ll * 1000000000; /* redelivered after 30 s unacked (C1 skips) */
    cc.MaxAckPending = 65536;
    jsOptions jo;
    short_wait(&jo);
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus st = js_AddConsumer(&ci, c->conn.js, c->cfg->stream, &cc, &jo, &jerr);
    jsConsumerInfo_Destroy(ci);
    s->making = 1;
    s->poll_ms = 0; /* looked up at once: bound when it has a leader */
    if (st == NATS_OK || st == NATS_TIMEOUT) return FV_OK;
    fv_seterr(err, errlen, "cluster: consumer %s on %s: %s (JetStream error %d)", durable, subj,
              natsStatus_GetText(st), (int)jerr);
    return FV_EIO;
}

/* C10: shard s's consumer asked for: looked up (every POLL_MS); missing, asked for again;
 * there with a leader and delivering from where it should, bound. FV_OK (bound or not yet),
 * or FV_EIO with err (NATS refusing the request or the subscription). */
static int poll_making(struct fv_jsconsume *c, struct shard *s, char *err, size_t errlen)
{
    uint64_t now = fv_mono_ns() / 1000000;
    if (now < s->poll_ms) return FV_OK;
    s->poll_ms = now + POLL_MS;
    char durable[96];
    durable_name(c, s->no, durable, sizeof durable);
    jsOptions jo;
    short_wait(&jo);
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus st = js_GetConsumerInfo(&ci, c->conn.js, c->cfg->stream, durable, &jo, &jerr);
    if (st == NATS_NOT_FOUND) return make_consumer(c, s, err, errlen);
    if (st != NATS_OK) return FV_OK; /* no leader yet (timeout, JetStream error 10008) */
    int leader = ci->Cluster == NULL || (ci->Cluster->Leader && ci->Cluster->Leader[0]);
    uint64_t start = ci->Config ? ci->Config->OptStartSeq : 0;
    jsConsumerInfo_Destroy(ci);
    if (!leader) return FV_OK;
    if (start != (s->cursor ? s->cursor + 1 : 0)) { /* not the one asked for: made again */
        fv_warn("cluster: shard %u: consumer %s starts at %llu, not %llu: making it again", s->no,
                durable, (unsigned long long)start, (unsigned long long)s->cursor + 1);
        int rc = delete_consumer(c, durable, err, errlen);
        return rc ? rc : make_consumer(c, s, err, errlen);
    }
    char subj[96];
    fv_cluster_subject(c->cfg, s->no, subj, sizeof subj);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = c->cfg->stream;
    so.Consumer = durable; /* bound to the one made: nats.c makes none, deletes none */
    so.ManualAck = true;
    st = js_PullSubscribe(&s->sub, c->conn.js, subj, durable, &jo, &so, &jerr);
    if (st == NATS_TIMEOUT) return FV_OK;
    if (st != NATS_OK) {
        fv_seterr(err, errlen, "cluster: consumer %s on %s: %s (JetStream error %d)", durable, subj,
                  natsStatus_GetText(st), (int)jerr);
        return FV_EIO;
    }
    s->making = 0;
    s->idle_ms = 0;
    fv_info("cluster: shard %u: consumer %s bound, delivering from stream sequence %llu", s->no,
            durable, (unsigned long long)s->cursor + 1);
    return FV_OK;
}

/* (Re)binds shard s's durable consumer, delivering from one past from, the shard's cursor,
 * in order (C4, C5; from 0: the shard's first message in the stream): the old one deleted,
 * the new one asked for (C10: bound once it has a leader, by poll_making). */
static int bind_shard(struct fv_jsconsume *c, struct shard *s, uint64_t from, char *err,
                      size_t errlen)
{
    char durable[96];
    durable_name(c, s->no, durable, sizeof durable);
    if (s->sub) {
        natsSubscription_Unsubscribe(s->sub);
        natsSubscription_Destroy(s->sub);
        s->sub = NULL;
    }
    s->making = 0;
    s->idle_ms = 0;
    int rc = delete_consumer(c, durable, err, errlen);
    if (rc) return rc;
    s->cursor = from;
    s->dseq = 0;
    rc = make_consumer(c, s, err, errlen);
    return rc ? rc : poll_making(c, s, err, errlen);
}

int fv_jsconsume_start(struct fv_jsconsume *c, struct fv_wal *wal, char *err, size_t errlen)
{
    c->wal = wal;
    int rc = fv_natsconn_open(&c->conn, c->cfg, "fleetvault-storage", NULL, err, errlen);
    if (rc) return rc;
    c->shards = calloc(c->cfg->shards, sizeof *c->shards);
    if (c->shards == NULL) return FV_ENOMEM;
    c->nshards = c->cfg->shards;
    for (uint32_t i = 0; i < c->cfg->shards; i++)
        c->shards[i].no = i;
    rc = fv_jslease_open(c->cfg, c->node, c->conn.nc, &c->lease, err, errlen);
    for (int k = 0; rc == FV_EIO && k < FV_NATS_START_TRIES; k++) {
        fv_warn("%s; trying again", err);
        usleep(500000);
        rc = fv_jslease_open(c->cfg, c->node, c->conn.nc, &c->lease, err, errlen);
    }
    return rc;
}

struct fv_jslease *fv_jsconsume_leases(const struct fv_jsconsume *c)
{
    return c ? c->lease : NULL;
}

/* Acks what the WAL holds durably (C2); all: drops the rest too (closing). */
static void send_acks(struct fv_jsconsume *c, int all)
{
    uint64_t durable = c->wal ? fv_wal_durable_seq(c->wal) : 0;
    size_t k = 0;
    while (k < c->nacks && (all || c->acks[k].wal_seq <= durable)) {
        if (c->acks[k].wal_seq <= durable) natsMsg_Ack(c->acks[k].msg, NULL);
        natsMsg_Destroy(c->acks[k].msg);
        k++;
    }
    if (k == 0) return; /* (acks may still be NULL: memmove takes no NULL) */
    memmove(c->acks, c->acks + k, (c->nacks - k) * sizeof *c->acks);
    c->nacks -= k;
}

/* Waits (up to 5 s) until everything appended to the WAL so far is durable. FV_OK or FV_EIO. */
static int wal_all_durable(struct fv_jsconsume *c)
{
    uint64_t want = fv_wal_appended_seq(c->wal);
    for (int i = 0; i < 5000 && fv_wal_durable_seq(c->wal) < want; i++) {
        if (fv_wal_failed(c->wal)) break;
        usleep(1000);
    }
    return fv_wal_durable_seq(c->wal) < want ? FV_EIO : FV_OK;
}

/* Everything taken made durable (waiting up to 5 s) and acked: before a subscription is
 * destroyed, since the acks pending (their messages) need it. FV_OK, or FV_EIO (the WAL did
 * not become durable: nothing is destroyed then). */
static int ack_all_taken(struct fv_jsconsume *c)
{
    if (wal_all_durable(c) != FV_OK) return FV_EIO;
    send_acks(c, 0);
    return FV_OK;
}

static int rebind_from_cursor(struct fv_jsconsume *c, struct shard *s, char *err, size_t errlen);

int fv_jsconsume_before_wal_remove(void *arg, char *err, size_t errlen)
{
    struct fv_jsconsume *c = arg;
    uint64_t cur[FV_CLUSTER_MAX_SHARDS];
    memcpy(cur, c->cursor, sizeof cur);
    for (size_t i = 0; i < c->nshards; i++)
        if (c->shards[i].cursor > cur[i]) cur[i] = c->shards[i].cursor;
    if (memcmp(cur, c->saved, sizeof cur) == 0) return FV_OK; /* nothing new since */
    /* the records the cursors name durable first (the loop thread appends: none meanwhile) */
    if (c->wal && wal_all_durable(c) != FV_OK) {
        fv_seterr(err, errlen,
                  "cluster: shard cursors not saved: the local WAL did not become "
                  "durable");
        return FV_EIO;
    }
    int rc = fv_jscursor_save(c->cursor_path, cur, c->cfg->shards, err, errlen);
    if (rc == FV_OK) memcpy(c->saved, cur, sizeof cur);
    return rc;
}

/* C5: a delivery of shard s was lost (its delivery sequence jumped). Everything taken is
 * made durable and acked first (up to 5 s; else the node stops and C4 resumes at the next
 * start), then the consumer is made again from the shard's cursor. */
static int rebind_after_gap(struct fv_jsconsume *c, struct shard *s, uint64_t dseq, char *err,
                            size_t errlen)
{
    fv_warn("cluster: shard %u: consumer made again from stream sequence %llu (delivery %llu, "
            "last seen %llu)",
            s->no, (unsigned long long)s->cursor + 1, (unsigned long long)dseq,
            (unsigned long long)s->dseq);
    s->gaps++;
    return rebind_from_cursor(c, s, err, errlen);
}

/* Everything taken made durable and acked (up to 5 s), then shard s's consumer made again
 * from its cursor (C5, C9). */
static int rebind_from_cursor(struct fv_jsconsume *c, struct shard *s, char *err, size_t errlen)
{
    if (ack_all_taken(c) != FV_OK) {
        fv_seterr(err, errlen, "cluster: shard %u: the local WAL did not become durable", s->no);
        return FV_EIO;
    }
    return bind_shard(c, s, s->cursor, err, errlen);
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

/* The cursor record announcing the stream message shard:seq (C1), or saying that its record
 * moved to another shard (C13: moved, a 13th byte 1). */
static int append_cursor(struct fv_jsconsume *c, uint32_t shard, uint64_t seq, int moved)
{
    unsigned char pl[13];
    fv_put_u32(pl, shard);
    fv_put_u64(pl + 4, seq);
    pl[12] = 1;
    struct fv_wal_record cr = {.type = FV_WAL_REC_DATA,
                               .device_id = FV_CURSOR_DEVICE,
                               .device_id_len = sizeof FV_CURSOR_DEVICE - 1,
                               .topic = FV_CURSOR_TOPIC,
                               .topic_len = sizeof FV_CURSOR_TOPIC - 1,
                               .payload = pl,
                               .payload_len = moved ? 13 : 12};
    int64_t ws = fv_wal_append(c->wal, &cr);
    return ws < 0 ? (int)ws : FV_OK;
}

/* C13: record r, rewritten by the fix under a subject of shard `to`, which this node does not
 * hold, published to that shard's subject (synchronously: it is rare, a window of an owner
 * change), with the message id NEWPSEUDONYM:TXIDHEX (or NEWPSEUDONYM:sSEQ without a txid), so
 * that taking the original again after a crash publishes it once; then the original, message
 * seq, deleted from the stream. FV_OK (the stream holds the copy, not the original),
 * FV_EAGAIN (NATS did not take it: the shard waits and takes the original again), FV_ENOMEM,
 * FV_ELIMIT. */
static int move_record(struct fv_jsconsume *c, const struct fv_wal_record *r, uint32_t to,
                       uint64_t seq)
{
    size_t n = 0;
    if (c->body == NULL && (c->body = malloc(FV_WAL_MAX_BODY)) == NULL) return FV_ENOMEM;
    int rc = fv_wal_encode_body(r, c->body, FV_WAL_MAX_BODY, &n);
    if (rc) return rc;
    char subj[96], id[256 + 2 + 2 * 64 + 24];
    fv_cluster_subject(c->cfg, to, subj, sizeof subj);
    int k = snprintf(id, sizeof id, "%.*s:", (int)r->device_id_len, r->device_id);
    if (r->txid_len && (size_t)k + 2 * (size_t)r->txid_len < sizeof id)
        fv_hex(r->txid, r->txid_len, id + k);
    else
        snprintf(id + k, sizeof id - (size_t)k, "s%llu", (unsigned long long)seq);
    natsMsg *m = NULL;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    po.MaxWait = 2000;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    natsStatus st = natsMsg_Create(&m, subj, NULL, (const char *)c->body, (int)n);
    if (st == NATS_OK) st = js_PublishMsg(&pa, c->conn.js, m, &po, &jerr);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    if (st == NATS_NO_MEMORY) return FV_ENOMEM;
    if (st != NATS_OK) {
        fv_warn("cluster: stream sequence %llu: moving the record to shard %u: %s (JetStream "
                "error %d)",
                (unsigned long long)seq, to, natsStatus_GetText(st), (int)jerr);
        return FV_EAGAIN;
    }
    /* the original deleted, so that no later owner of this shard (a takeover rebuilds it from
     * the stream) moves it again outside the de-duplication window */
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    st = js_DeleteMsg(c->conn.js, c->cfg->stream, seq, &jo, &jerr);
    if (st != NATS_OK && st != NATS_NOT_FOUND && jerr != JSStreamMsgDeleteFailed) {
        fv_warn("cluster: stream sequence %llu: deleting it once moved to shard %u: %s "
                "(JetStream error %d)",
                (unsigned long long)seq, to, natsStatus_GetText(st), (int)jerr);
        return FV_EAGAIN; /* taken again: published again under the same message id */
    }
    __atomic_add_fetch(&c->moved, 1, __ATOMIC_RELAXED);
    fv_info("cluster: a record of stream sequence %llu, sealed again under subject %.*s, moved "
            "to that subject's shard %u",
            (unsigned long long)seq, (int)r->device_id_len, r->device_id, to);
    return FV_OK;
}

/* One message: its cursor record and its record logged, the record taken - unless at or
 * below the shard's cursor (C1). 1: taken; 0: skipped; negative: C3. */
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
    if (rc == FV_OK && c->ready && c->ready(c->ready_arg, &r) == FV_EAGAIN) return FV_EAGAIN;
    if (rc == FV_OK && c->fix) rc = c->fix(c->fix_arg, &r); /* C11 */
    int moved = 0;
    if (rc == FV_OK && r.device_id_len == FV_PSEUDONYM_LEN) { /* C13 */
        char pseudo[FV_PSEUDONYM_LEN + 1];
        memcpy(pseudo, r.device_id, FV_PSEUDONYM_LEN);
        pseudo[FV_PSEUDONYM_LEN] = '\0';
        uint32_t to = fv_cluster_shard(pseudo, c->cfg->shards);
        if (to != s->no) { /* even one held here: a later owner of it rebuilds from the stream */
            rc = move_record(c, &r, to, seq);
            if (rc == FV_EAGAIN) {
                s->move_failed = 1;
                return FV_EAGAIN;
            }
            moved = rc == FV_OK;
        }
    }
    if (rc == FV_OK) rc = append_cursor(c, s->no, seq, moved);
    /* a moved record: only its cursor here, the shard's owner takes it from the stream */
    if (rc == FV_OK && !moved && fv_wal_append(c->wal, &r) < 0) rc = FV_EIO;
    if (rc == FV_OK && !moved) rc = c->take(c->take_arg, &r);
    if (rc) {
        fv_seterr(err, errlen, "cluster: stream %s sequence %llu (shard %u): %s", c->cfg->stream,
                  (unsigned long long)seq, s->no, fv_strerror(rc));
        return rc;
    }
    s->cursor = seq;
    return 1;
}

/* rc, the outcome of making shard consumer again: a NATS failure (its server lost, a leader
 * being elected: the delete or the request timed out) while every record taken is durable
 * is no reason to stop the node: the shard is left without a subscription, and C6 makes it
 * again FV_CONSUMER_CHECK_MS later. 0 then; rc otherwise (a local WAL failure stops it). */
static int nats_retry_later(struct fv_jsconsume *c, int rc, const char *err)
{
    if (rc && !fv_wal_failed(c->wal) && fv_wal_durable_seq(c->wal) >= fv_wal_appended_seq(c->wal)) {
        fv_warn("%s; trying again in %d s", err, FV_CONSUMER_CHECK_MS / 1000);
        return 0;
    }
    return rc;
}

/* C6: a shard whose fetches found nothing for FV_CONSUMER_CHECK_MS has its consumer checked
 * (at most that often); one that is gone (its server lost), does not answer, or has messages
 * pending that it did not deliver since then is made again from the cursor, as after a gap.
 * 0, or a negative FV_E* (the node stops). */
static int check_idle(struct fv_jsconsume *c, struct shard *s, char *err, size_t errlen)
{
    uint64_t now = fv_mono_ns() / 1000000;
    if (s->idle_ms == 0) s->idle_ms = now;
    if (now - s->idle_ms < FV_CONSUMER_CHECK_MS) return 0;
    s->idle_ms = now;
    char durable[96];
    durable_name(c, s->no, durable, sizeof durable);
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    natsStatus st = NATS_ERR;
    if (s->sub) { /* NULL: an earlier attempt to make it again failed */
        st = js_GetConsumerInfo(&ci, c->conn.js, c->cfg->stream, durable, &jo, &jerr);
        int stuck = st == NATS_OK && ci->NumPending > 0 && ci->Delivered.Consumer <= s->dseq;
        uint64_t pending = st == NATS_OK ? ci->NumPending : 0;
        jsConsumerInfo_Destroy(ci);
        if (st == NATS_OK && !stuck) return 0;
        if (stuck)
            fv_warn("cluster: shard %u: consumer %s has %llu messages pending but delivered none "
                    "in %d ms: making it again",
                    s->no, durable, (unsigned long long)pending, FV_CONSUMER_CHECK_MS);
    }
    if (st != NATS_OK)
        fv_warn("cluster: shard %u: consumer %s: %s (JetStream error %d): making it again", s->no,
                durable, natsStatus_GetText(st), (int)jerr);
    /* NATS did not answer: the shard waits, the others go on */
    return nats_retry_later(c, rebind_after_gap(c, s, s->dseq, err, errlen), err);
}

/* C9: the shard's record at stream sequence seq has no key yet: the shard waits. */
static int wait_key(struct fv_jsconsume *c, struct shard *s, uint64_t seq, char *err, size_t errlen)
{
    if (s->move_failed) /* C13: logged by move_record */
        s->move_failed = 0;
    else
        fv_warn("cluster: shard %u: stream sequence %llu: its subject's key is in no KV entry yet "
                "(or KV does not answer); left unacked, tried again in %d ms",
                s->no, (unsigned long long)seq, FV_KEY_WAIT_MS);
    s->wait_ms = fv_mono_ns() / 1000000 + FV_KEY_WAIT_MS;
    return nats_retry_later(c, rebind_from_cursor(c, s, err, errlen), err);
}

/* C10: a shard whose consumer is being made: looked up (poll_making); one not bound after
 * 10 * FV_CONSUMER_CHECK_MS made again; NATS refusing, tried again later. 0. */
static int keep_making(struct fv_jsconsume *c, struct shard *s, char *err, size_t errlen)
{
    fv_jslease_tick(c->lease, fv_mono_ns()); /* its requests wait: the leases go first */
    uint64_t now = fv_mono_ns() / 1000000;
    if (s->idle_ms == 0) s->idle_ms = now;
    int rc = poll_making(c, s, err, errlen);
    if (rc == FV_OK && s->making && now - s->idle_ms >= 10 * FV_CONSUMER_CHECK_MS) {
        fv_warn("cluster: shard %u: its consumer has no leader after %d s: making it again", s->no,
                10 * FV_CONSUMER_CHECK_MS / 1000);
        s->idle_ms = now;
        rc = bind_shard(c, s, s->cursor, err, errlen);
    }
    if (rc != FV_OK) {
        fv_warn("%s; trying again in %d s", err, FV_CONSUMER_CHECK_MS / 1000);
        s->poll_ms = now + FV_CONSUMER_CHECK_MS;
    }
    return 0;
}

static int fetch_shard(struct fv_jsconsume *c, struct shard *s, char *err, size_t errlen)
{
    if (s->wait_ms && fv_mono_ns() / 1000000 < s->wait_ms) return 0; /* C9 */
    s->wait_ms = 0;
    if (s->making) return keep_making(c, s, err, errlen);
    if (s->sub == NULL) return check_idle(c, s, err, errlen);
    natsMsgList list = {0};
    jsFetchRequest fr;
    jsFetchRequest_Init(&fr);
    fr.Batch = BATCH;
    fr.NoWait = true;
    fr.Expires = c->fetch_expires_ns; /* C12 */
    natsStatus st = natsSubscription_FetchRequest(&list, s->sub, &fr);
    if (st != NATS_OK || list.Count == 0) {
        natsMsgList_Destroy(&list);
        if (st != NATS_OK && st != NATS_TIMEOUT && st != NATS_NOT_FOUND)
            fv_warn("cluster: fetching shard %u: %s", s->no, natsStatus_GetText(st));
        return check_idle(c, s, err, errlen); /* nats.c reconnects; C6 for the rest */
    }
    s->idle_ms = 0;
    int n = 0, rc = 0, last = -1, gap = 0;
    uint64_t waiting = 0; /* C9: the stream sequence whose key is missing */
    for (int i = 0; i < list.Count && rc >= 0 && !gap; i++) {
        if (!fv_jslease_holds(c->lease, s->no, fv_mono_ns())) break; /* C7: not one more */
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, list.Msgs[i]) != NATS_OK) {
            gap = 1; /* not a JetStream message: as if lost */
            break;
        }
        uint64_t dseq = meta->Sequence.Consumer, sseq = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
        if (c->fault_gap_at && ++c->fetched == c->fault_gap_at) {
            c->fault_delete = 1; /* FV_FAULT_JS_GAP: this one lost on its way */
            continue;
        }
        if (dseq > s->dseq + 1) {
            gap = 1;
            rc = nats_retry_later(c, rebind_after_gap(c, s, dseq, err, errlen), err);
            break;
        }
        if (dseq > s->dseq) s->dseq = dseq;
        rc = take_msg(c, s, list.Msgs[i], sseq, err, errlen);
        if (rc == FV_EAGAIN) {
            waiting = sseq;
            rc = 0;
            break;
        }
        if (rc > 0) n++;
        last = i;
    }
    /* C2: the batch's last message taken acked once the WAL holds the batch durably */
    if (rc >= 0 && !gap && last >= 0 &&
        (rc = push_ack(c, fv_wal_appended_seq(c->wal), list.Msgs[last])) == FV_OK)
        list.Msgs[last] = NULL; /* kept until acked */
    natsMsgList_Destroy(&list);
    if (rc >= 0 && waiting) rc = wait_key(c, s, waiting, err, errlen);
    return rc < 0 ? rc : n;
}

/* C7: a shard whose lease this node no longer holds stops being taken; one it acquired is
 * bound from its cursor (a shard new to this node: from the stream's first message). */
static void follow_leases(struct fv_jsconsume *c)
{
    uint64_t now = fv_mono_ns();
    fv_jslease_tick(c->lease, now);
    for (size_t i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        int held = fv_jslease_holds(c->lease, s->no, now);
        if (!held && s->active) {
            /* its messages' acks need the subscription: sent first (else it stays, unfetched,
             * until the shard comes back or the node stops) */
            if (s->sub && ack_all_taken(c) == FV_OK) {
                natsSubscription_Unsubscribe(s->sub);
                natsSubscription_Destroy(s->sub);
                s->sub = NULL;
            }
            s->active = 0;
            fv_info("cluster: shard %u: stopped taking it (stream sequence %llu taken)", s->no,
                    (unsigned long long)s->cursor);
        } else if (held && !s->active && now >= s->retry_ns) {
            /* C10: a bind waits up to a few JS_WAIT_MS: the leases are renewed between */
            fv_jslease_tick(c->lease, fv_mono_ns());
            uint64_t from = s->cursor > c->cursor[s->no] ? s->cursor : c->cursor[s->no];
            char err[512];
            int rc = s->sub ? ack_all_taken(c) : FV_OK; /* one kept above: acks first */
            if (rc != FV_OK)
                snprintf(err, sizeof err, "cluster: shard %u: the local WAL did not become durable",
                         s->no);
            if (rc != FV_OK || bind_shard(c, s, from, err, sizeof err) != FV_OK) {
                fv_warn("%s; trying again", err);
                s->retry_ns = now + (uint64_t)c->cfg->lease_renew_ms * 1000000;
                continue;
            }
            s->active = 1;
            s->idle_ms = 0;
            fv_info("cluster: shard %u: taking it from stream sequence %llu%s", s->no,
                    (unsigned long long)s->cursor + 1,
                    s->cursor ? "" : " (its whole history in the stream)");
        }
    }
}

uint64_t fv_jsconsume_moved(const struct fv_jsconsume *c)
{
    return __atomic_load_n(&c->moved, __ATOMIC_RELAXED);
}

void fv_jsconsume_keep_leases(struct fv_jsconsume *c)
{
    send_acks(c, 0);
    follow_leases(c);
}

/* C12: a pull request for a batch that the shard cannot fill waits until it expires, so
 * that expiry sets the pace of a shard with little left: 10 round trips to the NATS server,
 * 2 to 50 ms, measured again every 30 s. */
static void measure_rtt(struct fv_jsconsume *c)
{
    uint64_t now = fv_mono_ns();
    if (c->rtt_at_ns && now - c->rtt_at_ns < 30000000000ull) return;
    c->rtt_at_ns = now;
    int64_t rtt = 0;
    /* A PING's round trip: asked only while connected (while nats.c reconnects it would
     * wait), else 5 ms is assumed until the next measure. */
    if (c->conn.nc == NULL || natsConnection_Status(c->conn.nc) != NATS_CONN_STATUS_CONNECTED ||
        natsConnection_GetRTT(c->conn.nc, &rtt) != NATS_OK)
        rtt = 5000000;
    int64_t e = 10 * rtt;
    c->fetch_expires_ns = e < 2000000 ? 2000000 : e > 50000000 ? 50000000 : e;
}

int fv_jsconsume_step(struct fv_jsconsume *c, int wait_ms, char *err, size_t errlen)
{
    measure_rtt(c);
    send_acks(c, 0);
    follow_leases(c);
    int total = 0;
    for (size_t i = 0; i < c->nshards; i++) {
        if (!c->shards[i].active) continue;
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
    free(c->body);
    for (size_t i = 0; i < c->nshards; i++)
        natsSubscription_Destroy(c->shards[i].sub);
    free(c->shards);
    fv_jslease_close(c->lease); /* after the acks: the next owner starts past them */
    fv_natsconn_close(&c->conn);
    free(c);
}
