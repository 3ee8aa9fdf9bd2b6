/*
 * apiloop.h - the HTTP API's own thread: a libev loop and a libwebsockets context that hold
 * only the API vhost (api/http.h), so no request - a fleet view, a history read, a storm of
 * bad tokens, an audit entry waiting for its fsync - ever runs on, or waits for, the ingest
 * loop (docs/architecture.md, "Threads").
 *
 * The API thread also runs the access-control housekeeping (the guard's sampled failures, the
 * audit log's checkpoints and retention) and the catalog's SQLite checkpoint (which may wait
 * for readers): everything that writes the audit log is on it, and
 * the audit syncer wakes it (fv_loopref_wake) when entries become durable (http.h H2).
 *
 * What the API reads from the ingest side is shared under each module's own rules: the fleet
 * (gateway/fleet.h F1), the store (store/store.h "Threads"), metrics (atomic counters); the
 * catalog through a keystore of its own (crypto/keys.h: one per thread).
 *
 * Threads: fv_apiloop_start and fv_apiloop_stop from the server's thread; fv_loopref_* from any.
 */
#ifndef FV_SERVER_APILOOP_H
#define FV_SERVER_APILOOP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct lws_context;
struct fv_http_ctx;
struct fv_guard;
struct fv_keystore;

/* A published libwebsockets context other threads may wake. The context is retired (taken
 * back) only once no waker is inside fv_loopref_wake, so a late wake never touches a
 * destroyed context. */
struct fv_loopref {
    struct lws_context *ctx;
    int wakers; /* threads inside fv_loopref_wake */
};
void fv_loopref_publish(struct fv_loopref *r, struct lws_context *ctx);
/* Any thread: lws_cancel_service on the published context, if any. arg: a struct fv_loopref. */
void fv_loopref_wake(void *arg);
/* Unpublishes the context and returns it once no waker can still be using it. */
struct lws_context *fv_loopref_retire(struct fv_loopref *r);

struct fv_apiloop {
    struct fv_loopref ref; /* the API context: the audit syncer's notify target */
    const struct fv_config *cfg;
    struct fv_http_ctx *http;
    struct fv_guard *guard;
    struct fv_keystore *keys; /* the API thread's (crypto/keys.h: one per thread) */
    uint64_t checkpoint_ns;   /* the catalog's last WAL checkpoint */
    struct ev_loop *loop;
    pthread_t thread;
    int started;
    int stop;                     /* atomic */
    struct fv_ven *ven;           /* the OpenADR VEN, or NULL: its audit records are written here */
    struct fv_clip_deid *deid;    /* the clips' de-identification worker, or NULL: likewise */
    struct fv_clip_server *clips; /* the clip endpoint (its signal reads), or NULL: likewise */
    struct fv_mqtt *mqtt;         /* the MQTT publisher, or NULL: likewise (mqtt/mqtt.h Q3) */
    /* Called on the API thread after each loop turn (a storage node's cluster queries:
     * server/clusterapi.h), or NULL; set before fv_apiloop_start. */
    void (*serve)(void *arg);
    void *serve_arg;
};

/* Creates the loop and the context, listens on cfg's API address (an error names it) and
 * starts the thread. al must start zeroed (its ref may be given to wakers before this call:
 * they do nothing until the context is published). http and guard must outlive
 * fv_apiloop_stop. */
int fv_apiloop_start(struct fv_apiloop *al, const struct fv_config *cfg, struct fv_http_ctx *http,
                     struct fv_guard *guard, struct fv_keystore *keys, char *err, size_t errlen);
/* Stops the thread (answers in flight are dropped with their connections), destroys the
 * context and the loop. Safe on a loop that never started. */
void fv_apiloop_stop(struct fv_apiloop *al);

/* Writes the OpenADR VEN's queued audit records (openadr/ven.h N8) to the audit log: on the
 * API thread each housekeeping turn, and by the server once more after fv_apiloop_stop. */
void fv_apiloop_audit_ven(struct fv_apiloop *al);
/* The same for the de-identification worker's records (data/clip_deid.h D6) and the clip
 * endpoint's signal reads (data/clip_server.h X3). */
void fv_apiloop_audit_clips(struct fv_apiloop *al);
/* The same for the MQTT publisher's records (mqtt/mqtt.h Q3). */
void fv_apiloop_audit_mqtt(struct fv_apiloop *al);

#endif
