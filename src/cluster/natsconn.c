/* natsconn.c - a node's connection to NATS JetStream and the record stream (natsconn.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/natsconn.h"
#include "util/err.h"
#include "util/log.h"

static void on_disconnected(natsConnection *nc, void *arg)
{
    (void)nc;
    (void)arg;
    fv_warn("cluster: disconnected from NATS; reconnecting");
}

static void on_reconnected(natsConnection *nc, void *arg)
{
    (void)nc;
    (void)arg;
    fv_info("cluster: reconnected to NATS");
}

static int nats_fail(natsStatus s, const char *what, char *err, size_t errlen)
{
    fv_seterr(err, errlen, "cluster: %s: %s", what, natsStatus_GetText(s));
    return FV_EIO;
}

static natsStatus make_options(const struct fv_cluster_cfg *cfg, const char *name, int flags,
                               struct fv_natsconn *c, natsOptions **out)
{
    const char *urls[FV_CLUSTER_MAX_URLS];
    for (size_t i = 0; i < cfg->nurls; i++)
        urls[i] = cfg->urls[i];
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetServers(o, urls, (int)cfg->nurls);
    if (s == NATS_OK) s = natsOptions_SetName(o, name);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1); /* forever */
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 250);
    int quiet = flags & FV_NATS_QUIET;
    if (s == NATS_OK && !quiet) s = natsOptions_SetDisconnectedCB(o, on_disconnected, c);
    if (s == NATS_OK && !quiet) s = natsOptions_SetReconnectedCB(o, on_reconnected, c);
    if (s == NATS_OK && (flags & FV_NATS_SEND_ASAP)) s = natsOptions_SetSendAsap(o, true);
    if (s == NATS_OK && cfg->credentials[0])
        s = natsOptions_SetUserCredentialsFromFiles(o, cfg->credentials, NULL);
    if (s == NATS_OK && cfg->ca[0]) {
        s = natsOptions_SetSecure(o, true);
        if (s == NATS_OK) s = natsOptions_LoadCATrustedCertificates(o, cfg->ca);
        if (s == NATS_OK && cfg->cert[0])
            s = natsOptions_LoadCertificatesChain(o, cfg->cert, cfg->key);
    }
    if (s != NATS_OK) {
        natsOptions_Destroy(o);
        o = NULL;
    }
    *out = o;
    return s;
}

/* The stream, made when missing; an existing one must take PREFIX.> (its other settings are
 * the operator's). */
static int ensure_stream(struct fv_natsconn *c, const struct fv_cluster_cfg *cfg, char *err,
                         size_t errlen)
{
    char subj[80];
    snprintf(subj, sizeof subj, "%s.>", cfg->subject_prefix);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, c->js, cfg->stream, NULL, &jerr);
    if (s == NATS_OK) {
        int has = 0;
        for (int i = 0; i < si->Config->SubjectsLen; i++)
            if (strcmp(si->Config->Subjects[i], subj) == 0) has = 1;
        jsStreamInfo_Destroy(si);
        if (!has) {
            fv_seterr(err, errlen, "cluster: stream %s exists without the subjects %s", cfg->stream,
                      subj);
            return FV_EINVAL;
        }
        return FV_OK;
    }
    if (s != NATS_NOT_FOUND) return nats_fail(s, "reading the stream's info", err, errlen);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[1] = {subj};
    sc.Name = cfg->stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Retention = js_LimitsPolicy;
    sc.Replicas = cfg->replicas;
    int days = cfg->stream_max_age_days > 0 ? cfg->stream_max_age_days : FV_STREAM_MAX_AGE_DAYS;
    sc.MaxAge = (int64_t)days * 86400 * 1000000000;
    sc.Duplicates = (int64_t)FV_STREAM_DUP_WINDOW_MS * 1000000;
    s = js_AddStream(&si, c->js, &sc, NULL, &jerr);
    if (s != NATS_OK && jerr != JSStreamNameExistErr) {
        fv_seterr(err, errlen, "cluster: making stream %s (replicas %d): %s (JetStream error %d)",
                  cfg->stream, cfg->replicas, natsStatus_GetText(s), (int)jerr);
        return FV_EIO;
    }
    jsStreamInfo_Destroy(si);
    if (s == NATS_OK)
        fv_info("cluster: made stream %s (%s, replicas %d, file storage)", cfg->stream, subj,
                cfg->replicas);
    return FV_OK;
}

int fv_natsconn_connect(struct fv_natsconn *c, const struct fv_cluster_cfg *cfg, const char *name,
                        const struct fv_js_handlers *h, int64_t wait_ms, int flags, char *err,
                        size_t errlen)
{
    memset(c, 0, sizeof *c);
    natsOptions *o = NULL;
    natsStatus s = make_options(cfg, name, flags, c, &o);
    if (s != NATS_OK)
        return nats_fail(s, "connection options (credentials, TLS files?)", err, errlen);
    s = natsConnection_Connect(&c->nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        fv_seterr(err, errlen, "cluster: cannot connect to NATS at %s%s: %s", cfg->urls[0],
                  cfg->nurls > 1 ? " (or the others)" : "", natsStatus_GetText(s));
        return FV_EIO;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = wait_ms;
    if (h) {
        jo.PublishAsync.AckHandler = h->ack;
        jo.PublishAsync.AckHandlerClosure = h->arg;
        jo.PublishAsync.MaxPending = h->max_pending;
    }
    s = natsConnection_JetStream(&c->js, c->nc, &jo);
    if (s != NATS_OK) {
        fv_natsconn_close(c);
        return nats_fail(s, "JetStream context", err, errlen);
    }
    return FV_OK;
}

int fv_natsconn_open(struct fv_natsconn *c, const struct fv_cluster_cfg *cfg, const char *name,
                     const struct fv_js_handlers *h, char *err, size_t errlen)
{
    int rc = fv_natsconn_connect(c, cfg, name, h, 10000, 0, err, errlen);
    if (rc) return rc;
    /* A cluster that just lost a server may need a while to elect leaders again. */
    rc = ensure_stream(c, cfg, err, errlen);
    for (int i = 0; rc == FV_EIO && i < FV_NATS_START_TRIES; i++) {
        fv_warn("%s; trying again", err);
        usleep(500000);
        rc = ensure_stream(c, cfg, err, errlen);
    }
    if (rc) fv_natsconn_close(c);
    return rc;
}

int fv_natsconn_closed(const struct fv_natsconn *c)
{
    /* Asked of the connection, not told by its closed handler: that handler runs on nats.c's
     * thread after natsConnection_Close returns, when c may be gone already. */
    return c->nc == NULL || natsConnection_Status(c->nc) == NATS_CONN_STATUS_CLOSED;
}

void fv_natsconn_close(struct fv_natsconn *c)
{
    if (c->js) jsCtx_Destroy(c->js);
    if (c->nc) {
        natsConnection_Close(c->nc);
        natsConnection_Destroy(c->nc);
    }
    c->js = NULL;
    c->nc = NULL;
}

uint32_t fv_cluster_shard(const char *pseudo, uint32_t shards)
{
    uint32_t h = 0;
    for (int i = 0; i < 8 && pseudo[i]; i++) {
        char ch = pseudo[i];
        uint32_t d = ch >= '0' && ch <= '9'   ? (uint32_t)(ch - '0')
                     : ch >= 'a' && ch <= 'f' ? (uint32_t)(ch - 'a' + 10)
                                              : 0;
        h = h << 4 | d;
    }
    return shards ? h % shards : 0;
}

void fv_cluster_subject(const struct fv_cluster_cfg *cfg, uint32_t shard, char *out, size_t cap)
{
    snprintf(out, cap, "%s.%u", cfg->subject_prefix, shard);
}

int fv_natsconn_bucket(struct fv_natsconn *c, const char *name, const char *description,
                       int replicas, kvStore **out, char *err, size_t errlen)
{
    return fv_natsconn_bucket_ttl(c, name, description, replicas, 0, out, err, errlen);
}

int fv_natsconn_bucket_ttl(struct fv_natsconn *c, const char *name, const char *description,
                           int replicas, int64_t ttl_ms, kvStore **out, char *err, size_t errlen)
{
    natsStatus st = js_KeyValue(out, c->js, name);
    if (st == NATS_NOT_FOUND) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = name;
        kc.Description = description;
        kc.History = 1;
        kc.TTL = ttl_ms * 1000000; /* nats.c 3.4: nanoseconds (the stream's max age) */
        kc.StorageType = js_FileStorage;
        kc.Replicas = replicas;
        st = js_CreateKeyValue(out, c->js, &kc);
        if (st == NATS_ERR) st = js_KeyValue(out, c->js, name); /* another node's, just made */
        if (st == NATS_OK) fv_info("cluster: made KV bucket %s (replicas %d)", name, replicas);
    }
    if (st != NATS_OK) {
        fv_seterr(err, errlen, "cluster: KV bucket %s: %s", name, natsStatus_GetText(st));
        return FV_EIO;
    }
    return FV_OK;
}
