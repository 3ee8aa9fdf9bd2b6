/* jsstatus.c - the cluster's state from JetStream's info calls (jsstatus.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cluster/jslease.h"
#include "cluster/jsstatus.h"
#include "cluster/natsconn.h"
#include "util/err.h"

/* Nanoseconds since the epoch as milliseconds (0: never). */
static json_int_t ns_to_ms(int64_t ns)
{
    return ns > 0 ? (json_int_t)(ns / 1000000) : 0;
}

/* {"name", "leader", "replicas": [{"name", "current", "offline", "lag", "active_ms"}]}, or
 * null when the stream is not clustered; *bad set when a replica is offline, behind or
 * lagging. */
static json_t *cluster_json(const jsClusterInfo *ci, int *bad)
{
    if (ci == NULL) return json_null();
    json_t *reps = json_array();
    for (int i = 0; i < ci->ReplicasLen; i++) {
        const jsPeerInfo *p = ci->Replicas[i];
        if (p->Offline || !p->Current || p->Lag > 0) *bad = 1;
        json_array_append_new(reps,
                              json_pack("{s:s, s:b, s:b, s:I, s:I}", "name", p->Name ? p->Name : "",
                                        "current", p->Current, "offline", p->Offline, "lag",
                                        (json_int_t)p->Lag, "active_ms", ns_to_ms(p->Active)));
    }
    return json_pack("{s:s, s:s, s:o}", "name", ci->Name ? ci->Name : "", "leader",
                     ci->Leader ? ci->Leader : "", "replicas", reps);
}

static json_t *stream_json(const jsStreamInfo *si, int *bad)
{
    json_t *subj = json_array();
    for (int i = 0; i < si->Config->SubjectsLen; i++)
        json_array_append_new(subj, json_string(si->Config->Subjects[i]));
    const jsStreamState *st = &si->State;
    return json_pack("{s:s, s:o, s:i, s:I, s:I, s:I, s:I, s:I, s:o}", "name", si->Config->Name,
                     "subjects", subj, "replicas", (int)si->Config->Replicas, "messages",
                     (json_int_t)st->Msgs, "bytes", (json_int_t)st->Bytes, "first_seq",
                     (json_int_t)st->FirstSeq, "last_seq", (json_int_t)st->LastSeq, "consumers",
                     (json_int_t)st->Consumers, "cluster", cluster_json(si->Cluster, bad));
}

static json_t *consumer_json(const jsConsumerInfo *ci)
{
    int unused = 0;
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "name",
                     ci->Name ? ci->Name : "", "delivered_seq", (json_int_t)ci->Delivered.Stream,
                     "ack_floor_seq", (json_int_t)ci->AckFloor.Stream, "pending",
                     (json_int_t)ci->NumPending, "ack_pending", (json_int_t)ci->NumAckPending,
                     "redelivered", (json_int_t)ci->NumRedelivered, "waiting",
                     (json_int_t)ci->NumWaiting, "last_active_ms", ns_to_ms(ci->Delivered.Last),
                     "cluster", cluster_json(ci->Cluster, &unused));
}

/* The shard a consumer reads: its filter subject PREFIX.N with N < shards, else -1. */
static long consumer_shard(const struct fv_cluster_cfg *cfg, const jsConsumerInfo *ci)
{
    const char *f = ci->Config ? ci->Config->FilterSubject : NULL;
    size_t n = strlen(cfg->subject_prefix);
    if (f == NULL || strncmp(f, cfg->subject_prefix, n) != 0 || f[n] != '.') return -1;
    char *end = NULL;
    unsigned long s = strtoul(f + n + 1, &end, 10);
    if (end == f + n + 1 || *end || s >= cfg->shards) return -1;
    return (long)s;
}

enum fv_health fv_cluster_status(const struct fv_cluster_cfg *cfg, int wait_ms, json_t **out,
                                 char *err, size_t errlen)
{
    *out = NULL;
    struct fv_natsconn c;
    if (fv_natsconn_connect(&c, cfg, "fleetvault-status", NULL, wait_ms, 1, err, errlen) != FV_OK)
        return FV_HEALTH_DOWN;
    jsStreamInfo *si = NULL;
    jsConsumerInfoList *cl = NULL;
    jsErrCode jerr = 0;
    enum fv_health h = FV_HEALTH_DOWN;
    natsStatus s = js_GetStreamInfo(&si, c.js, cfg->stream, NULL, &jerr);
    if (s == NATS_NOT_FOUND) {
        fv_seterr(err, errlen, "cluster: no stream %s on NATS at %s (no node has made it yet?)",
                  cfg->stream, cfg->urls[0]);
        goto done;
    }
    if (s != NATS_OK) {
        fv_seterr(err, errlen, "cluster: reading stream %s's info: %s (JetStream error %d)",
                  cfg->stream, natsStatus_GetText(s), (int)jerr);
        goto done;
    }
    s = js_Consumers(&cl, c.js, cfg->stream, NULL, &jerr);
    if (s != NATS_OK && s != NATS_NOT_FOUND) { /* NOT_FOUND: no consumer at all */
        fv_seterr(err, errlen, "cluster: listing stream %s's consumers: %s (JetStream error %d)",
                  cfg->stream, natsStatus_GetText(s), (int)jerr);
        goto done;
    }
    struct fv_lease_view lv;
    if (fv_lease_read(cfg, c.js, wait_ms, &lv, err, errlen) != FV_OK) goto done;
    int bad = 0;
    json_t *shards = json_array(), *other = json_array(), *nodes = json_array();
    for (size_t i = 0; i < lv.nnodes; i++)
        json_array_append_new(nodes, json_pack("{s:s, s:I, s:I}", "name", lv.node[i].name,
                                               "last_seen_ms", ns_to_ms(lv.node[i].seen_ns),
                                               "shards", (json_int_t)lv.node[i].held));
    int unowned = 0;
    for (uint32_t k = 0; k < cfg->shards; k++) {
        json_t *cons = json_array();
        for (int i = 0; cl && i < cl->Count; i++)
            if (consumer_shard(cfg, cl->List[i]) == (long)k)
                json_array_append_new(cons, consumer_json(cl->List[i]));
        char subj[96];
        fv_cluster_subject(cfg, k, subj, sizeof subj);
        int owned = lv.owner[k][0] != '\0'; /* a live lease (jslease.h) */
        unowned += !owned;
        json_array_append_new(
            shards,
            json_pack("{s:I, s:s, s:b, s:o, s:I, s:o}", "shard", (json_int_t)k, "subject", subj,
                      "owned", owned, "owner", owned ? json_string(lv.owner[k]) : json_null(),
                      "lease_written_ms", owned ? ns_to_ms(lv.shard_ns[k]) : 0, "consumers", cons));
    }
    for (int i = 0; cl && i < cl->Count; i++)
        if (consumer_shard(cfg, cl->List[i]) < 0)
            json_array_append_new(other, consumer_json(cl->List[i]));
    json_t *stream = stream_json(si, &bad);
    h = bad || unowned ? FV_HEALTH_DEGRADED : FV_HEALTH_OK;
    *out = json_pack("{s:s, s:o, s:s, s:b, s:o, s:I, s:I, s:o, s:o}", "health",
                     h == FV_HEALTH_OK ? "ok" : "degraded", "stream", stream, "lease_bucket",
                     cfg->lease_bucket, "lease_bucket_exists", lv.bucket, "nodes", nodes,
                     "shards_total", (json_int_t)cfg->shards, "shards_unowned", (json_int_t)unowned,
                     "shards", shards, "other_consumers", other);
    fv_lease_view_free(&lv);
    if (*out == NULL) {
        fv_seterr(err, errlen, "cluster: out of memory building the status");
        h = FV_HEALTH_DOWN;
    }
done:
    jsConsumerInfoList_Destroy(cl);
    jsStreamInfo_Destroy(si);
    fv_natsconn_close(&c);
    return h;
}
