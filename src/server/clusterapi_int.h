/*
 * clusterapi_int.h - what the two halves of the query API across a cluster share
 * (clusterapi.h): clusterapi.c (open, close, the owner's side) and clusterfwd.c (the api
 * node's side). Not for other modules.
 */
#ifndef FV_SERVER_CLUSTERAPI_INT_H
#define FV_SERVER_CLUSTERAPI_INT_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "server/clusterapi.h"

struct fv_jsquery;
struct fv_jsconsume;
struct open_answer;
struct parked;
struct fv_clusterapi__pending;
struct fv_clusterapi__stream;
struct fv_clusterapi__xwait;
struct fv_clusterapi__xdl;
struct fv_http_response;
struct fv_buf;

/* Q12: the owners' side of a bulk export through an api node (clusterexport.c): the paths of
 * its requests (never an HTTP endpoint: only fvq.> carries them). */
#define FV_CLUSTER_XREADY "/cluster/exports/ready" /* 200 "{}": the shard's owner answers */
#define FV_CLUSTER_XCOUNT "/cluster/exports/count" /* api/exports.h fv_api_export_count */
#define FV_CLUSTER_XROWS  "/cluster/exports/rows"  /* api/exports.h fv_api_export_rows */

struct fv_clusterapi {
    uint32_t shards;
    char node[65];  /* this node's name (its audit entries are tagged with it: Q8) */
    int timeout_ms; /* cluster.query_timeout_ms */
    struct fv_jsquery *q;
    struct fv_http_ctx *http;
    struct fv_apiloop *al;
    struct fv_jsconsume *consumer; /* NULL: an api node */
    /* a storage node's */
    struct parked *parked;    /* oldest first */
    struct open_answer *open; /* answers in progress (J1-J4) */
    size_t nopen;
    /* an api node's (Q9): requests waiting for the owners, and the timer that wakes the API
     * thread at the first of their deadlines (on al->loop, from the API thread only) */
    struct fv_clusterapi__pending *pending;
    size_t npending;
    struct fv_clusterapi__stream *streams; /* one-device answers pulled piece by piece */
    struct fv_clusterapi__xwait *xwaits;   /* Q12: exports waiting for every shard's answer */
    struct fv_clusterapi__xdl *xdls;       /* Q12: downloads, shard after shard */
    struct ev_timer timer;
    int timer_on;
};

/* Which data subject's right a path asks for (/api/v1/subjects/D/export|erase|consent): 1
 * export, 2 erase, 3 consent, with D copied into name; 0: none. */
int fv_clusterapi__subject_right(const char *path, char *name, size_t cap);
/* The device a one-device request names (Q2, Q7): /api/v1/query?device=D,
 * /api/v1/vehicles/D/state, /api/v1/subjects/D/export|erase|consent. 0: not such a request. */
int fv_clusterapi__one_device(const char *path, const char *query, char *name, size_t cap);

/* clusterfwd.c: the timer set to the first deadline of every request waiting (Q9, Q12). */
void fv_clusterapi__arm(struct fv_clusterapi *c);
/* clusterfwd.c: Q5's 503/504 naming shard (rc FV_EAGAIN: 504; change: may or may not have
 * been made), or an owner's answer relayed as it is. */
void fv_clusterapi__shard_down(const struct fv_clusterapi *c, int change,
                               struct fv_http_response *out, uint32_t shard, int rc,
                               const char *err);
void fv_clusterapi__relay(struct fv_http_response *out, int status, const char *type,
                          const struct fv_buf *body);

/* clusterexport.c (Q12): POST /api/v1/exports and GET /api/v1/exports/{id} on an api node:
 * 1 when out is its answer (waiting, H3), 0 for any other request. */
int fv_clusterapi__export(struct fv_clusterapi *c, const struct fv_api_view *v,
                          const struct fv_guard_ctx *ctx, const char *method, const char *path,
                          struct fv_http_response *out);
/* clusterexport.c: the first deadline of the exports' waits and pulls, or UINT64_MAX. */
uint64_t fv_clusterapi__export_deadline(const struct fv_clusterapi *c);
/* clusterexport.c: frees what is still waiting or downloading (as fwd_close). */
void fv_clusterapi__export_close(struct fv_clusterapi *c);

/* clusterfwd.c: an api node's asker set up (answers wake al's thread), on the server's
 * thread in fv_clusterapi_open. FV_OK or FV_EIO (err). */
int fv_clusterapi__fwd_open(struct fv_clusterapi *c, char *err, size_t errlen);
/* clusterprom.c: the Prometheus API's reads through an api node (Q11). */
struct fv_clusterapi__prom;
struct fv_jsq_answer;
/* The request (path: what follows "/prometheus") checked as one node checks it and copied
 * to outlive the call (a view whose query holds the times the api node took). NULL: out is
 * the answer (a 400, or 500), or *local: nothing to ask for (numbers alone). */
struct fv_clusterapi__prom *fv_clusterapi__prom_new(const struct fv_api_view *v, const char *path,
                                                    int *local, struct fv_http_response *out);
const struct fv_api_view *fv_clusterapi__prom_view(const struct fv_clusterapi__prom *pr);
/* 1: every selector names one device (a single-subject read, answered by its shard: Q2). */
int fv_clusterapi__prom_one(const struct fv_clusterapi__prom *pr);
/* The api node's audit action (Q6): cluster.prom.query, .series, .devices. */
const char *fv_clusterapi__prom_action(const struct fv_clusterapi__prom *pr);
/* The owners' raw series (the answers of status 200 with Fv-Here 1) joined and the request
 * answered over them in out; *subjects: the devices the owners' decisions counted (Q10). */
void fv_clusterapi__prom_join(struct fv_clusterapi__prom *pr, const struct fv_jsq_answer *ans,
                              uint32_t shards, uint64_t *subjects, struct fv_http_response *out);
/* An answer that is not 200 put in Prometheus's error shape, if not there already. */
void fv_clusterapi__prom_shape(struct fv_http_response *out);
void fv_clusterapi__prom_free(struct fv_clusterapi__prom *pr);

/* clusterfwd.c: frees the requests still waiting (no connection can still hold them: the
 * API thread stopped), without touching the loop. */
void fv_clusterapi__fwd_close(struct fv_clusterapi *c);

#endif
