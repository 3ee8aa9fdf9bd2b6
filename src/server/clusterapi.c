/* clusterapi.c - the query API across a cluster (clusterapi.h): open, close and the owner's
 * side (a storage node answering for its shards); the api node's side is clusterfwd.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "api/exports.h"
#include "api/http.h"
#include "api/oadr_store.h"
#include "api/promapi.h"
#include "cluster/jsconsume.h"
#include "cluster/jslease.h"
#include "cluster/jsquery.h"
#include "cluster/natsconn.h"
#include "crypto/keys.h"
#include "privacy/audit.h"
#include "privacy/guard.h"
#include "privacy/subjects.h"
#include "server/apiloop.h"
#include "server/clusteraudit.h"
#include "server/clusterapi.h"
#include "server/clusterapi_int.h"
#include "server/clusterven.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/urlquery.h"

struct shard_filter {
    uint32_t shards, shard;
};

/* An owner's answer in progress (jsquery.h J1-J4): the streamed response and everything
 * its producer points to (the view, its query string, the shard filter), which must outlive
 * the request that began it. */
struct open_answer {
    char id[FV_JSQ_ID_LEN + 1]; /* "" until it needs one (more follows the first piece) */
    char principal[65];
    uint32_t shard, next_seq;
    int here;         /* its pieces' Fv-Here (a Prometheus request's owner may say 0) */
    uint64_t last_ns; /* when it was last pulled (J4) */
    struct fv_api_view v;
    char *query;
    struct shard_filter f;
    struct fv_http_response resp;
    struct open_answer *next;
};

/* An owner's answer waiting for its audit entries to be durable (Q4). */
struct parked {
    struct fv_jsq_req *req;
    int status, here;
    char type[64];
    char more[FV_JSQ_ID_LEN + 1];
    struct fv_buf body;
    uint64_t need;
    struct parked *next;
};

static int holds(void *arg, uint32_t shard)
{
    struct fv_clusterapi *c = arg;
    return fv_jslease_holds(fv_jsconsume_leases(c->consumer), shard, fv_mono_ns());
}

int fv_clusterapi_open(const struct fv_config *cfg, const struct fv_kek *kek,
                       struct fv_http_ctx *http, struct fv_jsconsume *consumer,
                       struct fv_apiloop *al, struct fv_clusterapi **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_clusterapi *c = calloc(1, sizeof *c);
    if (c == NULL) return FV_ENOMEM;
    c->shards = cfg->cluster.shards;
    snprintf(c->node, sizeof c->node, "%s", cfg->cluster.node);
    if (c->node[0] == '\0') fv_cluster_node_default(cfg->data_dir, c->node, sizeof c->node);
    c->timeout_ms = cfg->cluster.query_timeout_ms;
    c->http = http;
    c->al = al;
    c->consumer = consumer;
    int rc = fv_jsquery_open(&cfg->cluster, kek,
                             consumer ? "fleetvault-storage-query" : "fleetvault-api-query", &c->q,
                             err, errlen);
    if (rc == FV_OK && consumer) /* requests wake the API thread, which answers them */
        rc = fv_jsquery_serve(c->q, holds, c, fv_loopref_wake, &al->ref, err, errlen);
    else if (rc == FV_OK) /* answers wake the API thread, which joins them (Q9) */
        rc = fv_clusterapi__fwd_open(c, err, errlen);
    if (rc) {
        fv_clusterapi_close(c);
        return rc;
    }
    if (consumer) {
        al->serve = fv_clusterapi_serve;
        al->serve_arg = c;
    } else {
        http->view.forward = fv_clusterapi_forward;
        http->view.prom_forward = fv_clusterapi_forward_prom;
        http->view.forward_arg = c;
    }
    *out = c;
    return FV_OK;
}

/* ---- the owner (a storage node) ---------------------------------------------------------- */

static int in_shard(void *arg, const char *pseudo)
{
    const struct shard_filter *f = arg;
    return fv_cluster_shard(pseudo, f->shards) == f->shard;
}

int fv_clusterapi__subject_right(const char *path, char *name, size_t cap)
{
    static const char pre[] = "/api/v1/subjects/";
    static const char *const rights[] = {"/export", "/erase", "/consent"};
    size_t lp = sizeof pre - 1;
    if (strncmp(path, pre, lp) != 0) return 0;
    const char *slash = strchr(path + lp, '/');
    if (slash == NULL || slash == path + lp || (size_t)(slash - path - lp) >= cap ||
        slash - path - lp > 64)
        return 0;
    for (int k = 0; k < 3; k++)
        if (strcmp(slash, rights[k]) == 0) {
            memcpy(name, path + lp, (size_t)(slash - path - lp));
            name[slash - path - lp] = '\0';
            return k + 1;
        }
    return 0;
}

int fv_clusterapi__one_device(const char *path, const char *query, char *name, size_t cap)
{
    static const char pre[] = "/api/v1/vehicles/", post[] = "/state";
    if (strcmp(path, "/api/v1/query") == 0)
        return fv_query_param(query, "device", name, cap) && name[0];
    if (fv_clusterapi__subject_right(path, name, cap)) return 1;
    size_t n = strlen(path), lp = sizeof pre - 1, ls = sizeof post - 1;
    if (n <= lp + ls || strncmp(path, pre, lp) != 0 || strcmp(path + n - ls, post) != 0 ||
        n - lp - ls >= cap || memchr(path + lp, '/', n - lp - ls))
        return 0;
    memcpy(name, path + lp, n - lp - ls);
    name[n - lp - ls] = '\0';
    return 1;
}

/* Q2: does shard hold the device the one-device request r names? A read names it as the
 * principal's role names devices (api.h fv_api_find_device), and its current subject's
 * shard holds it; a data subject's right (Q7) names it by id, as the single node looks it
 * up, and the shard is that of the subject it acts on: the period an export names
 * (period=N), else the current one, erased or not. Decides nothing, audits nothing. */
static int device_here(struct fv_clusterapi *c, const struct fv_api_view *v,
                       const struct fv_jsq_req *r, const char *name)
{
    char subject[FV_SUBJECT_NAME_MAX + 1], ps[FV_PSEUDONYM_LEN + 1], dev[128];
    const unsigned char *dek;
    if (fv_clusterapi__subject_right(r->path, dev, sizeof dev)) {
        const struct fv_device *d = fv_fleet_find(v->fleet, name);
        if (d == NULL) return 0;
        char per[16];
        int n = fv_query_param(r->query, "period", per, sizeof per) ? atoi(per) : 0;
        if (n >= 2 && fv_clusterapi__subject_right(r->path, dev, sizeof dev) == 1)
            snprintf(subject, sizeof subject, "%.64s#%d", d->id, n);
        else if (n == 1)
            snprintf(subject, sizeof subject, "%s", d->id);
        else if (fv_subject_current(v->keys, d->id, subject, NULL) != FV_OK)
            snprintf(subject, sizeof subject, "%s", d->id);
        if (fv_keystore_pseudonym(v->keys, subject, ps) != FV_OK) return 0;
        return fv_cluster_shard(ps, c->shards) == r->shard;
    }
    struct fv_guard_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    snprintf(ctx.principal, sizeof ctx.principal, "%s", r->principal);
    snprintf(ctx.role, sizeof ctx.role, "%s", r->role);
    const struct fv_device *d = fv_api_find_device(v, &ctx, name);
    if (d == NULL) return 0;
    if (fv_subject_current(v->keys, d->id, subject, NULL) != FV_OK)
        snprintf(subject, sizeof subject, "%s", d->id);
    if (fv_keystore_dek(v->keys, subject, 0, &dek, ps) != FV_OK) return 0;
    return fv_cluster_shard(ps, c->shards) == r->shard;
}

static void send_parked(struct fv_clusterapi *c, struct parked *p, int audit_failed)
{
    c->http->metrics->cluster_q_answered++;
    static const char failed[] = "{\"error\":\"the audit log cannot be written; refused\"}\n";
    if (audit_failed)
        fv_jsquery_answer(c->q, p->req, 500, "application/json", 1, NULL, failed,
                          sizeof failed - 1);
    else
        fv_jsquery_answer(c->q, p->req, p->status, p->type, p->here, p->more, p->body.data,
                          p->body.len);
    fv_buf_free(&p->body);
    free(p);
}

/* Ends an answer in progress: its producer's context freed (an export writes its closing
 * audit entry there), o unlinked if it was open, freed. */
static void close_answer(struct fv_clusterapi *c, struct open_answer *o)
{
    for (struct open_answer **pp = &c->open; *pp; pp = &(*pp)->next)
        if (*pp == o) {
            *pp = o->next;
            c->nopen--;
            break;
        }
    if (o->resp.free_ctx) o->resp.free_ctx(o->resp.ctx);
    fv_buf_free(&o->resp.body);
    free(o->query);
    free(o);
}

static void answer_error(struct fv_clusterapi *c, struct fv_jsq_req *r, int status, const char *msg)
{
    char b[300];
    int n = snprintf(b, sizeof b, "{\"error\":\"%s\"}\n", msg);
    fv_jsquery_answer(c->q, r, status, "application/json", 1, NULL, b, (size_t)n);
}

/* The next piece of o's answer for r (J1, J2), parked until the audit entries written
 * since before are durable (Q4). o's bytes not sent yet are in o->resp.body; its producer
 * runs until a piece is full or it is done. o is closed once its last piece is queued. */
static void answer_piece(struct fv_clusterapi *c, struct open_answer *o, struct fv_jsq_req *r,
                         uint64_t before)
{
    struct fv_audit *audit = o->v.guard ? o->v.guard->audit : NULL;
    size_t chunk = fv_jsquery_chunk_max(c->q);
    while (o->resp.more && o->resp.body.len < chunk) {
        int rc = o->resp.more(o->resp.ctx, &o->resp.body);
        if (rc > 0) continue;
        o->resp.more = NULL;
        if (o->resp.free_ctx) o->resp.free_ctx(o->resp.ctx); /* the export's closing entry */
        o->resp.free_ctx = NULL;
        if (rc < 0) {
            fv_warn("cluster: a query of shard %u failed (%s)", r->shard, fv_strerror(rc));
            fv_buf_reset(&o->resp.body);
            static const char m[] = "{\"error\":\"query failed; see the owner's log\"}\n";
            fv_buf_append(&o->resp.body, m, sizeof m - 1);
            o->resp.status = 500;
            o->resp.content_type = "application/json";
        }
    }
    size_t n = o->resp.body.len < chunk ? o->resp.body.len : chunk;
    int more = o->resp.more != NULL || o->resp.body.len > n;
    if (more && o->id[0] == '\0') { /* the first piece of an answer larger than one (J1) */
        unsigned char rnd[FV_JSQ_ID_LEN / 2];
        if (c->nopen >= FV_JSQ_OPEN_MAX || RAND_bytes(rnd, sizeof rnd) != 1) {
            close_answer(c, o);
            answer_error(c, r, 503, "too many large answers in progress on this node; try again");
            return;
        }
        for (size_t i = 0; i < sizeof rnd; i++)
            snprintf(o->id + 2 * i, 3, "%02x", rnd[i]);
        o->next = c->open;
        c->open = o;
        c->nopen++;
    }
    struct parked *p = calloc(1, sizeof *p);
    if (p == NULL || (n && fv_buf_append(&p->body, o->resp.body.data, n) != FV_OK)) {
        if (p) fv_buf_free(&p->body);
        free(p);
        close_answer(c, o);
        answer_error(c, r, 500, "out of memory");
        return;
    }
    p->req = r;
    p->status = o->resp.status;
    p->here = o->here;
    snprintf(p->type, sizeof p->type, "%s",
             o->resp.content_type ? o->resp.content_type : "text/plain");
    if (more) snprintf(p->more, sizeof p->more, "%s", o->id);
    if (n) memmove(o->resp.body.data, o->resp.body.data + n, o->resp.body.len - n);
    o->resp.body.len -= n;
    o->last_ns = fv_mono_ns();
    o->next_seq++;
    uint64_t after = audit ? fv_audit_last_seq(audit) : 0;
    if (after > before) after = fv_guard_gate_seq(o->v.guard, before, after);
    p->need = after > before ? after : 0;
    if (p->need) fv_audit_need(audit, p->need); /* a lazy entry among them is synced now */
    if (!more) close_answer(c, o); /* its producer ended above: no entry is written here */
    struct parked **tail = &c->parked;
    while (*tail)
        tail = &(*tail)->next;
    *tail = p;
}

/* J2, J3: a pull of the next piece of an answer in progress. */
static void pull(struct fv_clusterapi *c, struct fv_jsq_req *r)
{
    struct open_answer *o = c->open;
    while (o && strcmp(o->id, r->session) != 0)
        o = o->next;
    if (o == NULL || strcmp(o->principal, r->principal) != 0 || o->shard != r->shard) {
        answer_error(c, r, 404,
                     "no such answer in progress here (dropped after a minute without a "
                     "pull, or its owner changed); ask again");
        return;
    }
    if (r->seq != o->next_seq) {
        close_answer(c, o);
        answer_error(c, r, 409, "a piece of an answer asked out of sequence; ask again");
        return;
    }
    struct fv_audit *audit = o->v.guard ? o->v.guard->audit : NULL;
    answer_piece(c, o, r, audit ? fv_audit_last_seq(audit) : 0);
}

/* Runs the request as the single node would (Q4); its answer is sent in pieces (J1). */
/* Q8: the lowest shard this node holds (it answers an audit search there only), or -1. */
static long lowest_held(struct fv_clusterapi *c)
{
    for (uint32_t s = 0; s < c->shards; s++)
        if (holds(c, s)) return (long)s;
    return -1;
}

static void take(struct fv_clusterapi *c, struct fv_jsq_req *r)
{
    if (r->session[0]) {
        pull(c, r);
        return;
    }
    if (strcmp(r->path, FV_CLUSTER_XREADY) == 0) { /* Q12: a download's first look */
        fv_jsquery_answer(c->q, r, 200, "application/json", 1, NULL, "{}\n", 3);
        return;
    }
    int audit_search = strcmp(r->path, "/api/v1/audit") == 0;
    if (audit_search && (long)r->shard != lowest_held(c)) { /* Q8: one answer per node */
        static const char no[] =
            "{\"error\":\"this node searches its log for its lowest shard\"}\n";
        fv_jsquery_answer(c->q, r, 404, "application/json", 0, NULL, no, sizeof no - 1);
        return;
    }
    struct open_answer *o = calloc(1, sizeof *o);
    if (o == NULL || (o->query = strdup(r->query)) == NULL) {
        free(o);
        answer_error(c, r, 500, "out of memory");
        return;
    }
    snprintf(o->principal, sizeof o->principal, "%s", r->principal);
    o->shard = r->shard;
    o->f = (struct shard_filter){c->shards, r->shard};
    o->v = c->http->view; /* the producer keeps pointers to its view: o holds it */
    o->v.stats = &c->http->stats;
    o->v.query = o->query;
    o->v.body = NULL; /* a forwarded POST carries its parameters in the query (Q7) */
    o->v.body_len = 0;
    o->v.forward = NULL;
    o->v.prom_forward = NULL;
    o->v.keep = in_shard;
    o->v.keep_arg = &o->f;
    o->here = 1;
    char name[128];
    int prom = strncmp(r->path, "/prometheus/", 12) == 0; /* clusterprom.c: raw series */
    if (!prom && fv_clusterapi__one_device(r->path, r->query, name, sizeof name) &&
        !device_here(c, &o->v, r, name)) {
        static const char no[] = "{\"error\":\"not held by this shard\"}\n";
        close_answer(c, o);
        fv_jsquery_answer(c->q, r, 404, "application/json", 0, NULL, no, sizeof no - 1);
        return;
    }
    struct fv_audit *audit = o->v.guard ? o->v.guard->audit : NULL;
    uint64_t before = audit ? fv_audit_last_seq(audit) : 0;
    if (prom)
        fv_api_prometheus_shard(&o->v, r->path + 11, r->principal, r->role, &o->here, &o->resp);
    else if (strcmp(r->path, FV_CLUSTER_XCOUNT) == 0) /* Q12: a bulk export's owner side */
        fv_api_export_count(&o->v, r->principal, r->role, &o->resp);
    else if (strcmp(r->path, FV_CLUSTER_XROWS) == 0)
        fv_api_export_rows(&o->v, r->principal, r->role, &o->resp);
    else if (strcmp(r->path, FV_CLUSTER_XOADR) == 0) /* rule 17: a VEN's history report */
        fv_api_oadr_history_part(&o->v, r->principal, &o->resp);
    else
        fv_api_handle_as(&o->v, r->method, r->path, r->principal, r->role, &o->resp);
    if (audit_search && o->resp.status == 200 && fv_clusteraudit_tag(&o->resp.body, c->node))
        fv_api_respond_error(&o->resp, 500, "the audit search's answer cannot be tagged");
    answer_piece(c, o, r, before);
}

void fv_clusterapi_serve(void *arg)
{
    struct fv_clusterapi *c = arg;
    if (c == NULL || c->consumer == NULL) return;
    struct fv_jsq_req *r;
    while ((r = fv_jsquery_next(c->q)) != NULL)
        take(c, r);
    uint64_t now = fv_mono_ns();
    for (struct open_answer *o = c->open, *next; o; o = next) { /* J4 */
        next = o->next;
        if (now - o->last_ns > (uint64_t)FV_JSQ_IDLE_MS * 1000000u) {
            fv_info("cluster: an answer of shard %u not pulled for %d s dropped", o->shard,
                    FV_JSQ_IDLE_MS / 1000);
            close_answer(c, o);
        }
    }
    struct fv_audit *audit = c->http->view.guard ? c->http->view.guard->audit : NULL;
    int failed = audit && fv_audit_failed(audit);
    uint64_t durable = audit ? fv_audit_durable_seq(audit) : UINT64_MAX;
    struct parked **pp = &c->parked;
    while (*pp) {
        struct parked *p = *pp;
        if (!failed && p->need > durable) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        send_parked(c, p, failed);
    }
}

void fv_clusterapi_close(struct fv_clusterapi *c)
{
    if (c == NULL) return;
    fv_clusterapi__fwd_close(c); /* its calls ended before the connection closes */
    fv_jsquery_close(c->q);      /* no callback runs after this */
    while (c->parked) {
        struct parked *p = c->parked;
        c->parked = p->next;
        fv_jsquery_drop(p->req);
        fv_buf_free(&p->body);
        free(p);
    }
    while (c->open) /* their producers end (an export's closing entry): the store and the
                       guard close after this (server.c) */
        close_answer(c, c->open);
    free(c);
}
