/*
 * jsquery.h - the query API's internal requests between nodes over core NATS request/reply
 * (docs/cluster.md, "Queries through an api node"): an api node asks the owner of a shard to
 * answer a read for a principal it authenticated; the owner runs the single node's code.
 *
 * Subjects: fvq.STREAM.shard.N, one per shard. Every storage node subscribes to
 * fvq.STREAM.shard.* and takes a request only while it holds shard N's lease (the holds
 * callback, jslease.h E2); the others drop it unanswered. So a request has at most one
 * answer, and a shard without a live owner gets none: the asker's wait ends in FV_EAGAIN
 * (owner dead, lease not expired yet) or FV_ENOENT (no storage node subscribed at all).
 *
 * A request: headers Fv-Method, Fv-Path, Fv-Principal, Fv-Role (FV_JSQ_FIELD_MAX bytes each,
 * printable ASCII), the URL's query string as the data. An answer: headers Fv-Status (HTTP
 * status), Fv-Type (content type), Fv-Here ("1": the shard holds what the request names;
 * "0": it does not - a one-device read of a device of another shard), the body as the data
 * (at most the connection's max payload, 1 MB by default).
 *
 * Trust: the principal and role in a request are believed as sent. Only fleetvault's nodes
 * may publish on fvq.> (NATS credentials and TLS: the cluster's trust boundary, as for the
 * downlink).
 *
 * Threads: open/close on the server's thread; fv_jsquery_next, _answer on one thread (the
 * owner's API thread); fv_jsquery_ask on one thread at a time (the api node's API thread);
 * the wake callback is called from nats.c's subscription thread.
 */
#ifndef FV_CLUSTER_JSQUERY_H
#define FV_CLUSTER_JSQUERY_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "config/cluster_config.h"
#include "util/buf.h"

#define FV_JSQ_FIELD_MAX 1024

struct fv_jsquery;

/* Connects to NATS (its own connection). FV_OK, or FV_EIO with err. */
int fv_jsquery_open(const struct fv_cluster_cfg *cfg, const char *name, struct fv_jsquery **out,
                    char *err, size_t errlen);
/* Owner side: subscribes to fvq.STREAM.shard.*; a request for a shard holds(arg, shard)
 * says is held is queued and wake(wake_arg) called, the others dropped. FV_OK or FV_EIO. */
int fv_jsquery_serve(struct fv_jsquery *q, int (*holds)(void *arg, uint32_t shard), void *arg,
                     void (*wake)(void *arg), void *wake_arg, char *err, size_t errlen);

/* A request taken from the queue; answer it with fv_jsquery_answer (which frees it). */
struct fv_jsq_req {
    uint32_t shard;
    char method[16], path[FV_JSQ_FIELD_MAX + 1], principal[65], role[32];
    char *query; /* NUL-terminated, possibly "" */
    natsMsg *msg;
};
/* The next queued request, or NULL. */
struct fv_jsq_req *fv_jsquery_next(struct fv_jsquery *q);
/* Sends the answer (here: 0/1) and frees r. An answer over the max payload is replaced by a
 * 507 saying so. FV_OK, or FV_EIO (NATS refused it: the asker times out). */
int fv_jsquery_answer(struct fv_jsquery *q, struct fv_jsq_req *r, int status,
                      const char *content_type, int here, const void *body, size_t len);

/* Frees r unanswered (its asker times out). */
void fv_jsquery_drop(struct fv_jsq_req *r);

/* Asker side: one answer per shard. */
struct fv_jsq_answer {
    int rc; /* FV_OK (the rest is filled), FV_EAGAIN (no answer in time), FV_ENOENT (no
               responders: no storage node listens; set for every shard not answered yet,
               nats.c not saying which request had none), FV_EIO (a malformed answer) */
    int status, here;
    char type[64];
    struct fv_buf body;
};
/* Sends the request to every shard 0..nshards-1 at once (replies to an inbox of its own,
 * INBOX.N for shard N) and gathers the answers until each shard answered or timeout_ms
 * passed; ans (nshards of them, bodies empty or reused) gets one each. FV_OK; FV_EINVAL (a
 * field too long or not printable), FV_ENOMEM, or FV_EIO (NATS refused: err says). */
int fv_jsquery_ask_all(struct fv_jsquery *q, uint32_t nshards, const char *method, const char *path,
                       const char *query, const char *principal, const char *role,
                       int64_t timeout_ms, struct fv_jsq_answer *ans, char *err, size_t errlen);

/* Unsubscribes, answers nothing more (queued requests are dropped: their askers time out),
 * closes. NULL is fine. */
void fv_jsquery_close(struct fv_jsquery *q);

#endif
