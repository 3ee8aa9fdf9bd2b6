/* clusterven.c - the OpenADR VEN's history reports across a cluster (clusterven.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cluster/jsquery.h"
#include "config/config.h"
#include "crypto/keys.h"
#include "energy/vpp.h"
#include "server/clusterven.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"

#define VEN_PRINCIPAL "openadr-ven"

struct fv_clusterven {
    struct fv_jsquery *q;
    struct fv_vpp *vpp;
    uint32_t shards;
    int timeout_ms;
    struct fv_ven_store_ops local;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t wakes; /* answers kept since open (under mu) */
};

/* nats.c's thread: an answer was kept (jsquery.h A3). */
static void wake(void *arg)
{
    struct fv_clusterven *c = arg;
    pthread_mutex_lock(&c->mu);
    c->wakes++;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

int fv_clusterven_open(const struct fv_config *cfg, const struct fv_kek *kek, struct fv_vpp *vpp,
                       struct fv_clusterven **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_clusterven *c = calloc(1, sizeof *c);
    if (c == NULL) return FV_ENOMEM;
    c->vpp = vpp;
    c->shards = cfg->cluster.shards;
    c->timeout_ms = cfg->cluster.query_timeout_ms;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = fv_jsquery_open(&cfg->cluster, kek, "fleetvault-ven-query", &c->q, err, errlen);
    if (rc == FV_OK) rc = fv_jsquery_ask_async(c->q, wake, c, err, errlen);
    if (rc) {
        fv_clusterven_close(c);
        return rc;
    }
    *out = c;
    return FV_OK;
}

void fv_clusterven_close(struct fv_clusterven *c)
{
    if (c == NULL) return;
    fv_jsquery_close(c->q); /* no wake after this */
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* The request's query string: the window and the enrolled sites. FV_OK (sets *none when no
 * site is enrolled), FV_ENOMEM, FV_EINVAL (a site id that cannot go in it). */
static int request_query(struct fv_clusterven *c, int64_t start, int64_t step, size_t n,
                         struct fv_buf *q, int *none, char *err, size_t errlen)
{
    struct fv_vpp_site_now *sites;
    size_t ns;
    int rc = fv_vpp_sites(c->vpp, NULL, &sites, &ns);
    if (rc) {
        fv_seterr(err, errlen, "the VPP's sites: %s", fv_strerror(rc));
        return rc;
    }
    *none = ns == 0;
    char head[96];
    int hl = snprintf(head, sizeof head, "from=%lld&step=%lld&n=%zu&sites=", (long long)start,
                      (long long)step, n);
    rc = fv_buf_append(q, head, (size_t)hl);
    for (size_t i = 0; rc == FV_OK && i < ns; i++) {
        const char *id = sites[i].id;
        if (id[strcspn(id, ",&=%+ ")] != '\0') {
            fv_seterr(err, errlen, "site %.64s: its id cannot go in a request to the owners", id);
            rc = FV_EINVAL;
        } else {
            if (i) rc = fv_buf_append(q, ",", 1);
            if (rc == FV_OK) rc = fv_buf_append(q, id, strlen(id));
        }
    }
    if (rc == FV_OK) rc = fv_buf_append(q, "", 1); /* terminated */
    if (rc == FV_ENOMEM) fv_seterr(err, errlen, "out of memory");
    free(sites);
    return rc;
}

/* Adds one owner's part (H1) to out. FV_OK, or FV_EIO with err. */
static int add_part(uint32_t shard, const struct fv_buf *body, size_t n, struct fv_ven_hist *out,
                    size_t *nsites, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loadb((const char *)body->data, body->len, 0, &je);
    json_t *iv = json_object_get(j, "intervals"), *k = json_object_get(j, "sites");
    int ok = json_is_array(iv) && json_array_size(iv) == n && json_is_integer(k) &&
             json_integer_value(k) >= 0;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *x = json_array_get(iv, i);
        double v[4];
        ok = json_is_array(x) && json_array_size(x) == 5 && json_is_integer(json_array_get(x, 4));
        for (size_t f = 0; ok && f < 4; f++) {
            ok = json_is_number(json_array_get(x, f));
            if (ok) v[f] = json_number_value(json_array_get(x, f));
        }
        if (!ok) break;
        out[i].delivered_kw += v[0];
        out[i].stored_kwh += v[1];
        out[i].available_kwh += v[2];
        out[i].deliverable_kw += v[3];
        out[i].online |= json_integer_value(json_array_get(x, 4)) != 0;
    }
    if (ok)
        *nsites += (size_t)json_integer_value(k);
    else
        fv_seterr(err, errlen, "shard %u's owner: a malformed part (%zu intervals wanted)", shard,
                  n);
    json_decref(j);
    return ok ? FV_OK : FV_EIO;
}

/* One shard's answer, taken when it came (V1, V2). 1: the shard is done; 0: a piece pulled,
 * wait for it; -1: failed (err). */
static int take(struct fv_clusterven *c, struct fv_jsq_call *call, uint32_t s,
                struct fv_jsq_answer *a, struct fv_buf *body, uint32_t *seq, char *err,
                size_t errlen)
{
    int r = -1;
    if (a->rc != FV_OK)
        fv_seterr(err, errlen, "shard %u: %s", s,
                  a->rc == FV_ENOENT ? "no storage node listens (no responders)"
                  : a->rc == FV_EIO  ? "a malformed answer"
                                     : "out of memory");
    else if (a->status != 200)
        fv_seterr(err, errlen, "shard %u's owner answered %d: %.*s", s, a->status,
                  (int)(a->body.len < 200 ? a->body.len : 200), (const char *)a->body.data);
    else if (fv_buf_append(body, a->body.data, a->body.len) != FV_OK)
        fv_seterr(err, errlen, "out of memory");
    else if (a->more[0] == '\0')
        r = 1;
    else if (fv_jsquery_call_pull(c->q, call, s, "GET", FV_CLUSTER_XOADR, VEN_PRINCIPAL,
                                  VEN_PRINCIPAL, a->more, ++*seq, err, errlen) == FV_OK)
        r = 0;
    fv_buf_free(&a->body);
    return r;
}

static int history(void *arg, int64_t start, int64_t step, size_t n, struct fv_ven_hist *out,
                   size_t *nsites, char *err, size_t errlen)
{
    struct fv_clusterven *c = arg;
    memset(out, 0, n * sizeof *out);
    *nsites = 0;
    if (step <= 0 || n == 0) return FV_OK;
    struct fv_buf q = {0};
    int none = 0;
    int rc = request_query(c, start, step, n, &q, &none, err, errlen);
    if (rc || none) {
        fv_buf_free(&q);
        return rc;
    }
    struct fv_jsq_call *call = NULL;
    struct fv_buf *body = calloc(c->shards, sizeof *body);
    uint32_t *seq = calloc(c->shards, sizeof *seq);
    unsigned char *done = calloc(c->shards, 1);
    if (body == NULL || seq == NULL || done == NULL) {
        fv_seterr(err, errlen, "out of memory");
        rc = FV_ENOMEM;
    } else {
        rc = fv_jsquery_call_start(c->q, c->shards, "GET", FV_CLUSTER_XOADR, (const char *)q.data,
                                   VEN_PRINCIPAL, VEN_PRINCIPAL, &call, err, errlen);
    }
    uint64_t deadline = fv_mono_ns() + (uint64_t)c->timeout_ms * 1000000u;
    uint32_t left = c->shards;
    while (rc == FV_OK && left) {
        pthread_mutex_lock(&c->mu);
        uint64_t seen = c->wakes;
        pthread_mutex_unlock(&c->mu);
        for (uint32_t s = 0; rc == FV_OK && s < c->shards; s++) {
            struct fv_jsq_answer a = {0};
            if (done[s] || !fv_jsquery_call_take(c->q, call, s, &a)) continue;
            int r = take(c, call, s, &a, &body[s], &seq[s], err, errlen);
            if (r < 0) rc = FV_EIO;
            if (r == 1) {
                done[s] = 1;
                left--;
            }
        }
        if (rc || left == 0) break;
        uint64_t now = fv_mono_ns();
        if (now >= deadline) {
            uint32_t s = 0;
            while (done[s])
                s++;
            fv_seterr(err, errlen,
                      "shard %u's owner did not answer within %d ms (cluster.query_timeout_ms): "
                      "no report rather than one without its sites",
                      s, c->timeout_ms);
            rc = FV_EAGAIN;
            break;
        }
        /* an answer that came between the takes above and here has counted a wake */
        uint64_t until = now + 50000000u < deadline ? now + 50000000u : deadline;
        struct timespec ts = {(time_t)(until / 1000000000u), (long)(until % 1000000000u)};
        pthread_mutex_lock(&c->mu);
        while (c->wakes == seen && pthread_cond_timedwait(&c->cv, &c->mu, &ts) != ETIMEDOUT)
            ;
        pthread_mutex_unlock(&c->mu);
    }
    fv_jsquery_call_end(c->q, call);
    for (uint32_t s = 0; rc == FV_OK && s < c->shards; s++)
        rc = add_part(s, &body[s], n, out, nsites, err, errlen);
    if (rc) {
        memset(out, 0, n * sizeof *out);
        *nsites = 0;
    }
    for (uint32_t s = 0; body && s < c->shards; s++)
        fv_buf_free(&body[s]);
    free(done);
    free(seq);
    free(body);
    fv_buf_free(&q);
    return rc;
}

static int forecast(void *arg, const char *program, int64_t start_ms, int64_t end_ms, double *kw,
                    char *err, size_t errlen)
{
    struct fv_clusterven *c = arg;
    if (c->local.forecast == NULL) {
        fv_seterr(err, errlen, "no forecast here");
        return FV_ENOENT;
    }
    return c->local.forecast(c->local.arg, program, start_ms, end_ms, kw, err, errlen);
}

struct fv_ven_store_ops fv_clusterven_ops(struct fv_clusterven *c,
                                          const struct fv_ven_store_ops *local)
{
    c->local = *local;
    return (struct fv_ven_store_ops){
        .arg = c, .history = history, .forecast = local->forecast ? forecast : NULL};
}
