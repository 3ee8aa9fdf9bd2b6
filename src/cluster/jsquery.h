/*
 * jsquery.h - the query API's internal requests between nodes over core NATS request/reply
 * (docs/cluster.md, "Queries through an api node"): an api node asks the owner of a shard to
 * answer a read for a principal it authenticated; the owner runs the single node's code.
 *
 * Subjects: fvq.STREAM.shard.N, one per shard. Every storage node subscribes to
 * fvq.STREAM.shard.* and takes a request only while it holds shard N's lease (the holds
 * callback, jslease.h E2); the others drop it unanswered. So a request has at most one
 * answer, and a shard without a live owner gets none: the asker's wait ends in FV_EAGAIN
 * (owner dead, lease not expired yet: the asker's own deadline) or FV_ENOENT (no storage
 * node subscribed at all).
 *
 * A request: its reply subject, method, path, principal, role, then (J2) session and seq
 * (FV_JSQ_FIELD_MAX bytes each, printable ASCII, each ended by '\n'), then the URL's query
 * string. An answer: status (HTTP), content type, here ("1": the shard holds what the
 * request names; "0": it does not - a one-device read of a device of another shard) and more
 * (J1), each ended by '\n', then the body (at most fv_jsquery_chunk_max bytes: the
 * connection's max payload less 1 KiB, at most FV_JSQ_CHUNK_CAP). Both sealed (J5).
 *
 * Answers larger than one message (J1-J4, docs/cluster.md "Queries through an api node"):
 *  J1 the owner sends its answer's first piece (fv_jsquery_chunk_max bytes) with header
 *     Fv-More: an answer id (32 hex digits, random) when more follows; absent: it is whole.
 *  J2 the asker pulls each next piece with a request to the same shard's subject carrying the
 *     same Fv-Method, Fv-Path, Fv-Principal, Fv-Role plus Fv-Session (the answer id) and
 *     Fv-Seq (1, 2, ...: the piece wanted); the owner answers it like the first (Fv-More
 *     again while more follows). One piece at a time: the owner makes the next piece only
 *     when asked, so neither side holds more than one piece of an answer of any size.
 *  J3 the owner answers a pull of an answer it does not hold (expired, or its producer
 *     failed), of another principal, or out of sequence with 404/409 and no Fv-More; the
 *     asker ends the answer there (short, never wrong).
 *  J4 the owner drops an answer not pulled for FV_JSQ_IDLE_MS; it holds at most
 *     FV_JSQ_OPEN_MAX of them (more: 503 with Retry-After).
 *
 *  J5 every request is sealed under the master key for its shard's subject and every answer
 *     for the reply subject named inside its request's seal (jsenvelope.h E1-E2; the owner
 *     answers there, whatever reply subject the NATS message carries). A request that does
 *     not open is dropped unanswered (its asker times out), an answer that does not open is
 *     FV_EIO (a malformed answer); both logged at most once a minute.
 *
 * Trust: the principal and role in a request are believed as sealed: only a holder of the
 * master key (fleetvault's nodes) can make a request an owner answers, and NATS, or an
 * account that may subscribe on fvq.>, sees neither the requests (paths, principals) nor the
 * answers (personal data after the obligations).
 *
 * Threads: open/close on the server's thread; fv_jsquery_next, _answer on one thread (the
 * owner's API thread); the fv_jsquery_call_* functions on one thread at a time (the api
 * node's API thread); the wake callbacks are called from nats.c's subscription threads.
 */
#ifndef FV_CLUSTER_JSQUERY_H
#define FV_CLUSTER_JSQUERY_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "config/cluster_config.h"
#include "crypto/keys.h"
#include "util/buf.h"

#define FV_JSQ_FIELD_MAX 1024
#define FV_JSQ_CHUNK_CAP (1u << 20) /* a piece of an answer: at most 1 MiB (J1) */
#define FV_JSQ_ID_LEN    32         /* an answer id: 16 random bytes in hex (J1) */
#define FV_JSQ_IDLE_MS   60000      /* an answer not pulled for this long is dropped (J4) */
#define FV_JSQ_OPEN_MAX  16         /* answers in progress on one owner (J4) */

struct fv_jsquery;

/* Connects to NATS (its own connection); kek (copied) seals and opens (J5). FV_OK, or FV_EIO
 * with err. */
int fv_jsquery_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek, const char *name,
                    struct fv_jsquery **out, char *err, size_t errlen);
/* Owner side: subscribes to fvq.STREAM.shard.*; a request for a shard holds(arg, shard)
 * says is held is queued and wake(wake_arg) called, the others dropped. FV_OK or FV_EIO. */
int fv_jsquery_serve(struct fv_jsquery *q, int (*holds)(void *arg, uint32_t shard), void *arg,
                     void (*wake)(void *arg), void *wake_arg, char *err, size_t errlen);

/* A request taken from the queue; answer it with fv_jsquery_answer (which frees it). */
struct fv_jsq_req {
    uint32_t shard;
    char method[16], path[FV_JSQ_FIELD_MAX + 1], principal[65], role[32];
    char *query;                     /* NUL-terminated, possibly "" */
    char session[FV_JSQ_ID_LEN + 1]; /* J2: the answer whose next piece is wanted, or "" */
    uint32_t seq;                    /* J2: the piece wanted (1, 2, ...); 0 for a request */
    char reply[160];                 /* J5: where the answer goes (from inside the seal) */
    natsMsg *msg;
};
/* The next queued request, or NULL. */
struct fv_jsq_req *fv_jsquery_next(struct fv_jsquery *q);
/* Sends the answer (here: 0/1; more: the answer id when more pieces follow, J1, else NULL)
 * and frees r. A body over fv_jsquery_chunk_max is replaced by a 507 saying so. FV_OK, or
 * FV_EIO (NATS refused it: the asker times out). */
int fv_jsquery_answer(struct fv_jsquery *q, struct fv_jsq_req *r, int status,
                      const char *content_type, int here, const char *more, const void *body,
                      size_t len);
/* The largest body one answer carries: the connection's max payload less 1 KiB for the
 * headers, at most FV_JSQ_CHUNK_CAP. */
size_t fv_jsquery_chunk_max(struct fv_jsquery *q);

/* Frees r unanswered (its asker times out). */
void fv_jsquery_drop(struct fv_jsq_req *r);

/* Asker side: one answer per shard. */
struct fv_jsq_answer {
    int rc; /* FV_OK (the rest is filled), FV_EAGAIN (no answer in time), FV_ENOENT (no
               responders: no storage node listens to the shard's subject), FV_EIO (a
               malformed answer), FV_ENOMEM */
    int status, here;
    char type[64];
    char more[FV_JSQ_ID_LEN + 1]; /* J1: the answer id when more pieces follow, else "" */
    struct fv_buf body;
};
/* Asker side without waiting (A1-A4): the api node's API thread sends a request to every
 * shard and goes on serving; the answers arrive on nats.c's thread, which keeps them and
 * wakes the API thread.
 *  A1 fv_jsquery_ask_async subscribes once to an inbox of its own (INBOX.CALL.SHARD); each
 *     call (a request to every shard, then its pulls, J2) has an id in it.
 *  A2 a call keeps at most one message per shard: the one it asked for since the last
 *     fv_jsquery_call_take of that shard (a second answer, a late one, or one for a call
 *     ended are dropped).
 *  A3 wake(wake_arg) is called (nats.c's thread) after each answer kept.
 *  A4 at most FV_JSQ_CALLS_MAX calls at once (fv_jsquery_call_start: FV_ELIMIT beyond). */
#define FV_JSQ_CALLS_MAX 1024

struct fv_jsq_call;

/* A1: FV_OK, or FV_EIO (err says). Call once, before any fv_jsquery_call_start. */
int fv_jsquery_ask_async(struct fv_jsquery *q, void (*wake)(void *arg), void *wake_arg, char *err,
                         size_t errlen);
/* Sends the request to every shard 0..nshards-1 without waiting (method, path, principal,
 * role: printable, at most 15, FV_JSQ_FIELD_MAX, 64, 31 bytes). FV_OK (*out: the call), FV_EINVAL,
 * FV_ELIMIT (A4), FV_ENOMEM, FV_EIO (err). */
int fv_jsquery_call_start(struct fv_jsquery *q, uint32_t nshards, const char *method,
                          const char *path, const char *query, const char *principal,
                          const char *role, struct fv_jsq_call **out, char *err, size_t errlen);
/* A call that asks nothing yet: its requests go to one shard at a time (fv_jsquery_call_ask;
 * a bulk export's download asks the shards in turn, clusterapi.h Q12; a test tool asks one
 * shard alone, or pulls an answer another process began: tests/support/fvq_probe.c). FV_OK (*out),
 * FV_ELIMIT (A4), FV_ENOMEM, FV_EIO (not an asker). */
int fv_jsquery_call_open(struct fv_jsquery *q, uint32_t nshards, struct fv_jsq_call **out,
                         char *err, size_t errlen);
/* Sends a request to shard (< the call's nshards) without waiting, its answer to come to the
 * call like fv_jsquery_call_start's (an answer of shard not taken yet is dropped). FV_OK,
 * FV_EINVAL, FV_EIO (err). */
int fv_jsquery_call_ask(struct fv_jsquery *q, struct fv_jsq_call *call, uint32_t shard,
                        const char *method, const char *path, const char *query,
                        const char *principal, const char *role, char *err, size_t errlen);
/* J2 without waiting: asks shard's owner for piece seq of the answer session, the answer to
 * come to the call like the first. FV_OK, FV_EINVAL, FV_EIO (err). */
int fv_jsquery_call_pull(struct fv_jsquery *q, struct fv_jsq_call *call, uint32_t shard,
                         const char *method, const char *path, const char *principal,
                         const char *role, const char *session, uint32_t seq, char *err,
                         size_t errlen);
/* The answer shard gave since it was last asked: 1 (a filled: rc FV_OK, FV_ENOENT no
 * responders, FV_EIO malformed, FV_ENOMEM), 0 none yet (a untouched). */
int fv_jsquery_call_take(struct fv_jsquery *q, struct fv_jsq_call *call, uint32_t shard,
                         struct fv_jsq_answer *a);
/* Ends the call: answers still to come are dropped. NULL is fine. */
void fv_jsquery_call_end(struct fv_jsquery *q, struct fv_jsq_call *call);

/* Unsubscribes, answers nothing more (queued requests are dropped: their askers time out),
 * closes. NULL is fine. */
void fv_jsquery_close(struct fv_jsquery *q);

#endif
