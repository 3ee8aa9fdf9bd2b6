/*
 * clusterprom.c - the Prometheus API through an api node (clusterapi.h Q11; docs/cluster.md,
 * "Queries through an api node", rule 15): the request checked here as one node checks it,
 * its raw series asked of every shard's owner (clusterfwd.c sends and gathers; the owners
 * answer with api/promapi.h fv_api_prometheus_shard), then the expression evaluated over the
 * series joined (api/promraw.h), so that aggregations see every shard's series at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/promapi.h"
#include "api/promraw.h"
#include "server/clusterapi_int.h"
#include "util/err.h"

struct fv_clusterapi__prom {
    struct fv_api_view view; /* the request's, its query this copy's */
    char *query;
    struct fv_prom_req req;
    const struct fv_pq_node **sels;
    size_t nsel;
    int one; /* every selector names one device (device="ID"): a single-subject read */
    struct fv_promraw raw;
};

void fv_clusterapi__prom_free(struct fv_clusterapi__prom *pr)
{
    if (pr == NULL) return;
    fv_prom_req_free(&pr->req);
    fv_promraw_free(&pr->raw);
    free(pr->sels);
    free(pr->query);
    free(pr);
}

/* Do all of pr's selectors name the same one device? */
static int one_device(const struct fv_clusterapi__prom *pr)
{
    const char *dev = NULL;
    for (size_t i = 0; i < pr->nsel; i++) {
        const char *d = fv_pq_eq_value(pr->sels[i], FV_PQ_L_DEVICE);
        if (d == NULL || (dev && strcmp(d, dev) != 0)) return 0;
        dev = d;
    }
    return dev != NULL;
}

struct fv_clusterapi__prom *fv_clusterapi__prom_new(const struct fv_api_view *v, const char *path,
                                                    int *local, struct fv_http_response *out)
{
    *local = 0;
    struct fv_clusterapi__prom *pr = calloc(1, sizeof *pr);
    if (pr == NULL) {
        fv_api_respond_error(out, 500, "out of memory");
        return NULL;
    }
    enum fv_prom_kind kind = fv_prom_kind(path);
    if (fv_prom_req_parse(v->query, kind, &pr->req, out) != FV_OK) { /* as one node: 400 */
        fv_clusterapi__prom_free(pr);
        return NULL;
    }
    if (kind != FV_PROM_DEVICES && !pr->req.reads) { /* numbers alone: nothing to read */
        *local = 1;
        fv_clusterapi__prom_free(pr);
        return NULL;
    }
    /* The times the api node took ("now" by default) first: every owner reads the same span
     * (fv_query_param takes a parameter's first value). */
    char pre[96] = "";
    if (kind == FV_PROM_QUERY)
        snprintf(pre, sizeof pre, "time=%.3f&", (double)pr->req.q.start / 1000.0);
    else if (kind == FV_PROM_SERIES)
        snprintf(pre, sizeof pre, "start=%.3f&end=%.3f&", (double)pr->req.q.start / 1000.0,
                 (double)pr->req.q.end / 1000.0);
    size_t lp = strlen(pre), lq = v->query ? strlen(v->query) : 0;
    pr->query = malloc(lp + lq + 1);
    if (pr->query == NULL ||
        (pr->req.e && fv_prom_selectors(pr->req.e, &pr->sels, &pr->nsel) != FV_OK)) {
        fv_clusterapi__prom_free(pr);
        fv_api_respond_error(out, 500, "out of memory");
        return NULL;
    }
    memcpy(pr->query, pre, lp);
    memcpy(pr->query + lp, v->query ? v->query : "", lq + 1);
    pr->view = *v;
    pr->view.query = pr->query;
    pr->view.body = NULL; /* a POST's parameters are in query (promapi.c) */
    pr->view.body_len = 0;
    pr->one = one_device(pr);
    return pr;
}

const struct fv_api_view *fv_clusterapi__prom_view(const struct fv_clusterapi__prom *pr)
{
    return &pr->view;
}

int fv_clusterapi__prom_one(const struct fv_clusterapi__prom *pr)
{
    return pr->one;
}

const char *fv_clusterapi__prom_action(const struct fv_clusterapi__prom *pr)
{
    switch (pr->req.kind) {
    case FV_PROM_SERIES:
        return "cluster.prom.series";
    case FV_PROM_DEVICES:
        return "cluster.prom.devices";
    default:
        return "cluster.prom.query";
    }
}

/* promeval.h's fetch over the owners' series joined (arg: the request): a copy of the
 * selector's series; the owners read each over the span the evaluator asks here. */
static int fetch_joined(void *arg, const struct fv_pq_node *sel, int64_t from, int64_t to,
                        struct fv_pe_raw **out, size_t *n, char *err, size_t errlen)
{
    (void)from;
    (void)to;
    struct fv_clusterapi__prom *pr = arg;
    size_t i = 0;
    while (sel && i < pr->nsel && pr->sels[i] != sel)
        i++;
    int rc = fv_promraw_copy(&pr->raw, i, out, n);
    if (rc) snprintf(err, errlen, "out of memory");
    return rc;
}

void fv_clusterapi__prom_join(struct fv_clusterapi__prom *pr, const struct fv_jsq_answer *ans,
                              uint32_t shards, uint64_t *subjects, struct fv_http_response *out)
{
    for (uint32_t s = 0; s < shards; s++) {
        const struct fv_jsq_answer *a = &ans[s];
        if (a->rc != FV_OK || a->status != 200 || !a->here) continue;
        int rc = fv_promraw_decode(a->body.data, a->body.len, &pr->raw);
        if (rc) {
            char msg[120];
            snprintf(msg, sizeof msg, "shard %u: its owner's answer is malformed", s);
            fv_api_respond_error(out, rc == FV_ENOMEM ? 500 : 502,
                                 rc == FV_ENOMEM ? "out of memory" : msg);
            return;
        }
    }
    *subjects = pr->raw.subjects;
    fv_prom_answer(&pr->req, fetch_joined, pr, out);
}

void fv_clusterapi__prom_shape(struct fv_http_response *out)
{
    if (out->status == 200) return;
    json_t *j = json_loadb((const char *)out->body.data, out->body.len, 0, NULL);
    if (json_object_get(j, "status")) { /* Prometheus's shape already */
        json_decref(j);
        return;
    }
    const char *why = json_string_value(json_object_get(j, "error"));
    const char *type = out->status == 400                         ? "bad_data"
                       : out->status == 401 || out->status == 403 ? "forbidden"
                       : out->status == 404                       ? "not_found"
                       : out->status == 422 || out->status == 507 ? "execution"
                       : out->status == 503                       ? "unavailable"
                       : out->status == 504                       ? "timeout"
                                                                  : "internal";
    json_t *p = json_pack("{s:s,s:s,s:s}", "status", "error", "errorType", type, "error",
                          why ? why : "the shards' owners failed");
    json_decref(j);
    int retry = out->retry_after;
    fv_api_respond_json(out, out->status, p);
    out->retry_after = retry;
}
