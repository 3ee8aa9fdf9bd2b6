/*
 * natsconn.h - a node's connection to NATS JetStream (docs/cluster.md): the connection from
 * the config's "cluster" object (URLs, credentials, TLS; reconnecting without end), the
 * record stream made or checked, and the map of subjects to shards.
 *
 * The stream: name cluster.stream, subjects PREFIX.> (a record on PREFIX.SHARD), file
 * storage, cluster.replicas, limits retention (a storage node acks what its committed parts
 * hold; the stream keeps messages up to cluster.stream_max_age_days, so a node that takes a
 * shard over, or is rebuilt from nothing, can read them again: jslease.h), a de-duplication window
 * of FV_STREAM_DUP_WINDOW_MS.
 *
 * Threads: fv_natsconn_open/close on one thread (start-up, shutdown); the connection itself
 * is nats.c's and thread-safe (fv_natsconn_closed from any thread until close).
 */
#ifndef FV_CLUSTER_NATSCONN_H
#define FV_CLUSTER_NATSCONN_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "config/cluster_config.h"

#define FV_STREAM_MAX_AGE_DAYS  7 /* when the config does not say */
#define FV_STREAM_DUP_WINDOW_MS (2ull * 60 * 1000)
/* Start-up: JetStream requests that time out are tried again this many times, 0.5 s apart
 * (a cluster electing leaders after losing a server). */
#define FV_NATS_START_TRIES 60

struct fv_natsconn {
    natsConnection *nc;
    jsCtx *js;
};

/* Connects (waiting for the first server up to a few seconds), makes the JetStream context
 * with the given publish-async handlers (NULL: none) and makes the stream or checks that it
 * has the subjects it needs (a request that fails is tried again: FV_NATS_START_TRIES). FV_OK, or
 * FV_EIO with err naming what failed. */
struct fv_js_handlers {
    jsPubAckHandler ack; /* every async publish's outcome, on nats.c's thread */
    void *arg;
    int64_t max_pending;
};
int fv_natsconn_open(struct fv_natsconn *c, const struct fv_cluster_cfg *cfg, const char *name,
                     const struct fv_js_handlers *h, char *err, size_t errlen);
/* The connection and JetStream context only (JetStream requests wait up to wait_ms): no
 * stream is made or checked - what `fleetvault cluster status` uses, which changes nothing.
 * flags: FV_NATS_QUIET no log line on disconnecting or reconnecting; FV_NATS_SEND_ASAP each
 * publish written at once (nats.c otherwise lets publishes gather for up to 1 ms before its
 * flusher writes them: the query API's requests and answers, cluster/jsquery.h, each wait
 * for that). FV_OK, or FV_EIO with err naming what failed. */
#define FV_NATS_QUIET     1
#define FV_NATS_SEND_ASAP 2
int fv_natsconn_connect(struct fv_natsconn *c, const struct fv_cluster_cfg *cfg, const char *name,
                        const struct fv_js_handlers *h, int64_t wait_ms, int flags, char *err,
                        size_t errlen);
void fv_natsconn_close(struct fv_natsconn *c);
/* Binds KV bucket name, making it when missing (history 1, no TTL, file storage, replicas;
 * a bucket another node made meanwhile is bound). FV_OK, or FV_EIO with err naming it. */
int fv_natsconn_bucket(struct fv_natsconn *c, const char *name, const char *description,
                       int replicas, kvStore **out, char *err, size_t errlen);
/* 1 when the connection is closed for good (nats.c gave up, or it was never opened). */
/* fv_natsconn_bucket with a TTL (ms; 0: none): a value is removed that long after it was
 * written (nats-server's max age of the bucket's stream). */
int fv_natsconn_bucket_ttl(struct fv_natsconn *c, const char *name, const char *description,
                           int replicas, int64_t ttl_ms, kvStore **out, char *err, size_t errlen);
int fv_natsconn_closed(const struct fv_natsconn *c);

/* The shard of a subject: its pseudonym's first 8 hex digits modulo shards (the pseudonym is
 * an HMAC: uniform). Pure. */
uint32_t fv_cluster_shard(const char *pseudo, uint32_t shards);
/* PREFIX.SHARD into out. */
void fv_cluster_subject(const struct fv_cluster_cfg *cfg, uint32_t shard, char *out, size_t cap);

#endif
