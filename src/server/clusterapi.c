/* clusterapi.c - the query API across a cluster (clusterapi.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "api/http.h"
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
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/urlquery.h"

/* The largest answer an api node gathers whole to join it with others' (a fleet read, Q3):
 * past it, 507. One-device answers are streamed to the client piece by piece instead. */
#define ANSWER_MAX (64u << 20)

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

struct fv_clusterapi {
    uint32_t shards;
    char node[65];  /* this node's name (its audit entries are tagged with it: Q8) */
    int timeout_ms; /* cluster.query_timeout_ms */
    struct fv_jsquery *q;
    struct fv_http_ctx *http;
    struct fv_jsconsume *consumer; /* NULL: an api node */
    struct parked *parked;         /* oldest first */
    struct open_answer *open;      /* a storage node's answers in progress (J1-J4) */
    size_t nopen;
    struct fv_jsq_answer *ans; /* an api node's: one per shard, reused */
    long answered_by;          /* the shard whose owner answered a one-device read, or -1 */
    int change;                /* the request forwarded changes data (Q7: a POST) */
};

static int holds(void *arg, uint32_t shard)
{
    struct fv_clusterapi *c = arg;
    return fv_jslease_holds(fv_jsconsume_leases(c->consumer), shard, fv_mono_ns());
}

int fv_clusterapi_open(const struct fv_config *cfg, struct fv_http_ctx *http,
                       struct fv_jsconsume *consumer, struct fv_apiloop *al,
                       struct fv_clusterapi **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_clusterapi *c = calloc(1, sizeof *c);
    if (c == NULL) return FV_ENOMEM;
    c->shards = cfg->cluster.shards;
    snprintf(c->node, sizeof c->node, "%s", cfg->cluster.node);
    if (c->node[0] == '\0') fv_cluster_node_default(cfg->data_dir, c->node, sizeof c->node);
    c->timeout_ms = cfg->cluster.query_timeout_ms;
    c->http = http;
    c->consumer = consumer;
    c->ans = consumer ? NULL : calloc(c->shards, sizeof *c->ans);
    if (consumer == NULL && c->ans == NULL) {
        free(c);
        return FV_ENOMEM;
    }
    int rc = fv_jsquery_open(&cfg->cluster,
                             consumer ? "fleetvault-storage-query" : "fleetvault-api-query", &c->q,
                             err, errlen);
    if (rc == FV_OK && consumer) /* requests wake the API thread, which answers them */
        rc = fv_jsquery_serve(c->q, holds, c, fv_loopref_wake, &al->ref, err, errlen);
    if (rc) {
        fv_clusterapi_close(c);
        return rc;
    }
    if (consumer) {
        al->serve = fv_clusterapi_serve;
        al->serve_arg = c;
    } else {
        http->view.forward = fv_clusterapi_forward;
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

/* Which data subject's right a path asks for (/api/v1/subjects/D/export|erase|consent): 1
 * export, 2 erase, 3 consent, with D copied into name; 0: none. */
static int subject_right(const char *path, char *name, size_t cap)
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

/* The device a one-device request names (Q2, Q7): /api/v1/query?device=D,
 * /api/v1/vehicles/D/state, /api/v1/subjects/D/export|erase|consent. 0: not such a request. */
static int one_device(const char *path, const char *query, char *name, size_t cap)
{
    static const char pre[] = "/api/v1/vehicles/", post[] = "/state";
    if (strcmp(path, "/api/v1/query") == 0)
        return fv_query_param(query, "device", name, cap) && name[0];
    if (subject_right(path, name, cap)) return 1;
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
    if (subject_right(r->path, dev, sizeof dev)) {
        const struct fv_device *d = fv_fleet_find(v->fleet, name);
        if (d == NULL) return 0;
        char per[16];
        int n = fv_query_param(r->query, "period", per, sizeof per) ? atoi(per) : 0;
        if (n >= 2 && subject_right(r->path, dev, sizeof dev) == 1)
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
    p->here = 1;
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
    o->v.keep = in_shard;
    o->v.keep_arg = &o->f;
    char name[128];
    if (one_device(r->path, r->query, name, sizeof name) && !device_here(c, &o->v, r, name)) {
        static const char no[] = "{\"error\":\"not held by this shard\"}\n";
        close_answer(c, o);
        fv_jsquery_answer(c->q, r, 404, "application/json", 0, NULL, no, sizeof no - 1);
        return;
    }
    struct fv_audit *audit = o->v.guard ? o->v.guard->audit : NULL;
    uint64_t before = audit ? fv_audit_last_seq(audit) : 0;
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

/* ---- the api node ------------------------------------------------------------------------ */

/* The content types the API answers with (the response keeps a pointer to a constant). */
static const char *known_type(const char *t)
{
    static const char *const types[] = {"application/json", "text/csv", "text/plain",
                                        "application/x-tar"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strncmp(t, types[i], strlen(types[i])) == 0) return types[i];
    return "application/octet-stream";
}

/* Q5: the answer for a shard that did not answer. */
static void shard_down(const struct fv_clusterapi *c, struct fv_http_response *out, uint32_t shard,
                       int rc, const char *err)
{
    char msg[400];
    if (rc == FV_EAGAIN)
        snprintf(msg, sizeof msg,
                 "shard %u: its owner did not answer within %d ms (a storage node down? its "
                 "lease moves to another within the lease TTL); %s",
                 shard, c->timeout_ms,
                 c->change ? "the change may or may not have been made: ask again (an erasure "
                             "or consent change may be repeated)"
                           : "try again");
    else if (rc == FV_ENOENT)
        snprintf(msg, sizeof msg,
                 "shard %u: no storage node answers for it (none is running); try again", shard);
    else
        snprintf(msg, sizeof msg, "shard %u: the query to its owner failed: %s", shard, err);
    fv_api_respond_error(out, rc == FV_EAGAIN ? 504 : 503, msg);
    out->retry_after = FV_CLUSTER_RETRY_AFTER_S;
}

static void relay(struct fv_http_response *out, int status, const char *type,
                  const struct fv_buf *body)
{
    out->status = status;
    out->content_type = known_type(type);
    fv_buf_reset(&out->body);
    if (body->len && fv_buf_append(&out->body, body->data, body->len) != FV_OK)
        fv_api_respond_error(out, 500, "out of memory");
}

/* Asks every shard at once; FV_OK, or the answer out is an error already. */
static int ask(struct fv_clusterapi *c, const struct fv_guard_ctx *ctx, const char *method,
               const char *path, const char *query, struct fv_http_response *out)
{
    char err[200] = "";
    c->http->metrics->cluster_q_forwarded++;
    int rc = fv_jsquery_ask_all(c->q, c->shards, method, path, query, ctx->principal, ctx->role,
                                c->timeout_ms, c->ans, err, sizeof err);
    if (rc == FV_EINVAL) {
        fv_api_respond_error(out, 400,
                             "the request cannot be sent to the shards' owners: a "
                             "path or principal too long or not printable");
    } else if (rc) {
        char msg[300];
        snprintf(msg, sizeof msg, "the shards' owners cannot be asked: %s", err);
        fv_api_respond_error(out, 503, msg);
        out->retry_after = FV_CLUSTER_RETRY_AFTER_S;
    }
    return rc;
}

/* The first shard without an answer, or -1. */
static long first_down(struct fv_clusterapi *c)
{
    for (uint32_t s = 0; s < c->shards; s++)
        if (c->ans[s].rc != FV_OK) {
            c->http->metrics->cluster_q_unanswered++;
            return (long)s;
        }
    return -1;
}

/* An owner's answer larger than one message, pulled piece by piece (jsquery.h J2) as the
 * client takes it (the transport asks for the next piece once the last is sent). */
struct stream {
    struct fv_clusterapi *c;
    uint32_t shard, seq;
    int status;
    char id[FV_JSQ_ID_LEN + 1], method[16], path[FV_JSQ_FIELD_MAX + 1], principal[65], role[32];
    uint64_t bytes;
    struct fv_jsq_answer a;
};

/* The next piece of s's answer appended to out: 1 more follows, 0 the last; < 0 the answer
 * ends short (J3: the transport closes the connection, the client sees a short body). */
static int stream_more(void *arg, struct fv_buf *out)
{
    struct stream *s = arg;
    char err[200] = "";
    int rc = fv_jsquery_pull(s->c->q, s->shard, s->method, s->path, s->principal, s->role, s->id,
                             s->seq, s->c->timeout_ms, &s->a, err, sizeof err);
    if (rc == FV_OK && s->a.rc == FV_OK && s->a.status == s->status && s->a.here &&
        fv_buf_append(out, s->a.body.data, s->a.body.len) == FV_OK) {
        s->bytes += s->a.body.len;
        s->seq++;
        return s->a.more[0] ? 1 : 0;
    }
    s->c->http->metrics->cluster_q_unanswered++;
    if (rc == FV_OK && s->a.rc == FV_EAGAIN)
        snprintf(err, sizeof err, "its owner did not answer a pull within %d ms", s->c->timeout_ms);
    else if (rc == FV_OK && s->a.rc == FV_ENOENT)
        snprintf(err, sizeof err, "no storage node answers");
    else if (rc == FV_OK && s->a.rc != FV_OK)
        snprintf(err, sizeof err, "a malformed answer");
    else if (rc == FV_OK && (s->a.status != s->status || !s->a.here)) /* J3 */
        snprintf(err, sizeof err, "its owner answered %d: %.*s", s->a.status,
                 (int)(s->a.body.len < 150 ? s->a.body.len : 150),
                 s->a.body.len ? (const char *)s->a.body.data : "");
    else if (rc == FV_OK)
        snprintf(err, sizeof err, "out of memory");
    fv_warn("cluster: an answer of shard %u ended short after %llu bytes: %s", s->shard,
            (unsigned long long)s->bytes, err);
    return FV_EIO;
}

static void stream_free(void *arg)
{
    struct stream *s = arg;
    fv_buf_free(&s->a.body);
    free(s);
}

/* The rest of an answer whose first piece is in a (a fleet read's, to be joined: Q3), at
 * most ANSWER_MAX bytes. FV_OK, or out is an error. */
static int gather_rest(struct fv_clusterapi *c, const struct fv_guard_ctx *ctx, const char *method,
                       const char *path, uint32_t shard, struct fv_jsq_answer *a,
                       struct fv_http_response *out)
{
    struct fv_jsq_answer piece;
    memset(&piece, 0, sizeof piece);
    char err[200] = "", msg[300];
    int rc = FV_OK;
    for (uint32_t seq = 1; a->more[0] && rc == FV_OK; seq++) {
        rc = fv_jsquery_pull(c->q, shard, method, path, ctx->principal, ctx->role, a->more, seq,
                             c->timeout_ms, &piece, err, sizeof err);
        if (rc == FV_OK && piece.rc != FV_OK) {
            c->http->metrics->cluster_q_unanswered++;
            shard_down(c, out, shard, piece.rc, "a malformed answer");
            rc = FV_EIO;
        } else if (rc == FV_OK && piece.status != a->status) {
            snprintf(msg, sizeof msg, "shard %u: its owner's answer ended early (%d); try again",
                     shard, piece.status);
            fv_api_respond_error(out, 502, msg);
            rc = FV_EIO;
        } else if (rc == FV_OK && a->body.len + piece.body.len > ANSWER_MAX) {
            fv_api_respond_error(out, 507, "a shard's answer is over 64 MiB: narrow the query");
            rc = FV_ELIMIT;
        } else if (rc == FV_OK) {
            rc = fv_buf_append(&a->body, piece.body.data, piece.body.len);
            if (rc) fv_api_respond_error(out, 500, "out of memory");
            memcpy(a->more, piece.more, sizeof a->more);
        } else {
            snprintf(msg, sizeof msg, "shard %u: %s", shard, err);
            fv_api_respond_error(out, 503, msg);
        }
    }
    fv_buf_free(&piece.body);
    return rc;
}

/* Q2, Q7 */
static int forward_one(struct fv_clusterapi *c, const struct fv_api_view *v,
                       const struct fv_guard_ctx *ctx, const char *method, const char *path,
                       struct fv_http_response *out)
{
    if (ask(c, ctx, method, path, v->query, out)) return 1;
    for (uint32_t s = 0; s < c->shards; s++)
        if (c->ans[s].rc == FV_OK && c->ans[s].here) {
            const struct fv_jsq_answer *a = &c->ans[s];
            c->answered_by = (long)s;
            relay(out, a->status, a->type, &a->body);
            if (a->more[0] == '\0' || out->status != a->status) return 1;
            struct stream *st = calloc(1, sizeof *st);
            if (st == NULL) {
                fv_api_respond_error(out, 500, "out of memory");
                return 1;
            }
            *st = (struct stream){.c = c, .shard = s, .seq = 1, .status = a->status};
            snprintf(st->id, sizeof st->id, "%s", a->more);
            snprintf(st->method, sizeof st->method, "%s", method);
            snprintf(st->path, sizeof st->path, "%s", path);
            snprintf(st->principal, sizeof st->principal, "%s", ctx->principal);
            snprintf(st->role, sizeof st->role, "%s", ctx->role);
            st->bytes = a->body.len;
            out->more = stream_more;
            out->free_ctx = stream_free;
            out->ctx = st;
            return 1;
        }
    long down = first_down(c);
    if (down < 0) return 0; /* no shard holds it: the single node's answer, here */
    shard_down(c, out, (uint32_t)down, c->ans[down].rc, "a malformed answer");
    return 1;
}

/* The rows of a fleet answer: between its first "[\n" and its last "\n]" (JSON), or after
 * its header line (CSV). */
static int rows_of(const struct fv_buf *b, int csv, const char **start, size_t *len)
{
    const char *s = (const char *)b->data, *end = s + b->len;
    if (b->len == 0) return 0;
    if (csv) {
        const char *nl = memchr(s, '\n', b->len);
        if (nl == NULL) return 0;
        *start = nl + 1;
        *len = (size_t)(end - *start);
        return 1;
    }
    const char *open = memmem(s, b->len, "[\n", 2);
    const char *close = NULL;
    for (const char *p = end - 2; p >= s && open && p > open; p--)
        if (p[0] == '\n' && p[1] == ']') {
            close = p;
            break;
        }
    if (open == NULL || close == NULL) return 0;
    *start = open + 2;
    *len = (size_t)(close - *start);
    return 1;
}

/* Q3 */
static int forward_fleet(struct fv_clusterapi *c, const struct fv_guard_ctx *ctx,
                         const char *method, const char *path, const char *query,
                         struct fv_http_response *out)
{
    if (ask(c, ctx, method, path, query, out)) return 1;
    long down = first_down(c);
    if (down >= 0) {
        shard_down(c, out, (uint32_t)down, c->ans[down].rc, "a malformed answer");
        return 1;
    }
    for (uint32_t s = 0; s < c->shards; s++)
        if (c->ans[s].status != 200) { /* a refusal: every owner decides alike */
            relay(out, c->ans[s].status, c->ans[s].type, &c->ans[s].body);
            return 1;
        }
    for (uint32_t s = 0; s < c->shards; s++)
        if (gather_rest(c, ctx, method, path, s, &c->ans[s], out)) return 1;
    struct fv_buf rows = {0}, head = {0};
    unsigned long long count = 0;
    int csv = 0, rc = FV_OK;
    const char *type = "application/json";
    for (uint32_t s = 0; s < c->shards && rc == FV_OK; s++) {
        const struct fv_buf *b = &c->ans[s].body;
        type = known_type(c->ans[s].type);
        csv = strcmp(type, "text/csv") == 0;
        const char *r;
        size_t n;
        if (!rows_of(b, csv, &r, &n)) {
            char msg[120];
            snprintf(msg, sizeof msg, "shard %u: its owner's fleet answer is malformed", s);
            fv_api_respond_error(out, 502, msg);
            goto done;
        }
        if (head.len == 0) /* the header: up to and with "[\n" (JSON) or the first line */
            rc = fv_buf_append(&head, b->data, (size_t)(r - (const char *)b->data));
        if (rc == FV_OK && n && rows.len && !csv) rc = fv_buf_append(&rows, ",\n", 2);
        if (rc == FV_OK && n) rc = fv_buf_append(&rows, r, n);
        const char *tail = r + n; /* after the rows: "\n],\"count\":N}" */
        const char *cnt =
            csv ? NULL
                : memmem(tail, (size_t)((const char *)b->data + b->len - tail), "\"count\":", 8);
        if (cnt) count += strtoull(cnt + 8, NULL, 10);
    }
    if (rc == FV_OK) {
        fv_buf_reset(&out->body);
        rc = fv_buf_append(&out->body, head.data, head.len);
        if (rc == FV_OK && rows.len) rc = fv_buf_append(&out->body, rows.data, rows.len);
        if (rc == FV_OK && !csv) rc = fv_buf_appendf(&out->body, "\n],\"count\":%llu}\n", count);
        out->status = 200;
        out->content_type = type;
    }
    if (rc) fv_api_respond_error(out, 500, "out of memory");
done:
    fv_buf_free(&rows);
    fv_buf_free(&head);
    return 1;
}

/* Q3 for the answers the API builds with jansson (/api/v1/vehicles,
 * /api/v1/signals/S/latest): {"count": N, "vehicles": [...], ...} joined, counts summed. */
static int forward_list(struct fv_clusterapi *c, const struct fv_guard_ctx *ctx, const char *method,
                        const char *path, const char *query, struct fv_http_response *out)
{
    if (ask(c, ctx, method, path, query, out)) return 1;
    long down = first_down(c);
    if (down >= 0) {
        shard_down(c, out, (uint32_t)down, c->ans[down].rc, "a malformed answer");
        return 1;
    }
    for (uint32_t s = 0; s < c->shards; s++)
        if (c->ans[s].status == 200 && gather_rest(c, ctx, method, path, s, &c->ans[s], out))
            return 1;
    json_t *all = NULL;
    for (uint32_t s = 0; s < c->shards; s++) {
        const struct fv_jsq_answer *a = &c->ans[s];
        if (a->status != 200) { /* a refusal: every owner decides alike */
            json_decref(all);
            relay(out, a->status, a->type, &a->body);
            return 1;
        }
        json_t *j = json_loadb((const char *)a->body.data, a->body.len, 0, NULL);
        json_t *arr = json_object_get(j, "vehicles");
        if (!json_is_array(arr) || !json_is_integer(json_object_get(j, "count"))) {
            json_decref(j);
            json_decref(all);
            char msg[120];
            snprintf(msg, sizeof msg, "shard %u: its owner's answer is malformed", s);
            fv_api_respond_error(out, 502, msg);
            return 1;
        }
        if (all == NULL) {
            all = j;
            continue;
        }
        json_array_extend(json_object_get(all, "vehicles"), arr);
        json_int_t n = json_integer_value(json_object_get(all, "count")) +
                       json_integer_value(json_object_get(j, "count"));
        json_object_set_new(all, "count", json_integer(n));
        json_decref(j);
    }
    if (all == NULL)
        fv_api_respond_error(out, 500, "no shards");
    else
        fv_api_respond_json(out, 200, all);
    return 1;
}

/* Q8: an audit search: the api node's own (its decision, audited here, and its log), then
 * every storage node's (each decides and audits as the single node does, answering for its
 * lowest shard), joined (clusteraudit.h). A node that does not answer makes it a 503/504, as
 * a fleet read: a search that silently left out a log would mislead. */
static int forward_audit(struct fv_clusterapi *c, const struct fv_api_view *v,
                         const struct fv_guard_ctx *ctx, const char *method, const char *path,
                         struct fv_http_response *out)
{
    struct fv_guard_ctx lc = *ctx;
    fv_api_audit_search(v, &lc, out);
    if (out->status != 200) return 1; /* refused here (or bad input): as the single node */
    struct fv_buf own = {0};
    int rc = fv_buf_append(&own, out->body.data, out->body.len);
    if (rc == FV_OK) rc = fv_clusteraudit_tag(&own, c->node);
    if (rc) {
        fv_api_respond_error(out, 500, "out of memory");
        goto done;
    }
    if (ask(c, ctx, method, path, v->query, out)) goto done;
    long down = first_down(c);
    if (down >= 0) {
        shard_down(c, out, (uint32_t)down, c->ans[down].rc, "a malformed answer");
        goto done;
    }
    for (uint32_t s = 0; s < c->shards; s++) {
        const struct fv_jsq_answer *a = &c->ans[s];
        if (a->status != 200 && !(a->status == 404 && !a->here)) { /* refused by an owner */
            relay(out, a->status, a->type, &a->body);
            goto done;
        }
    }
    for (uint32_t s = 0; s < c->shards; s++)
        if (c->ans[s].status == 200 && gather_rest(c, ctx, method, path, s, &c->ans[s], out))
            goto done;
    char ls[16] = "";
    long limit = fv_query_param(v->query, "limit", ls, sizeof ls) && ls[0] ? atol(ls) : 100;
    fv_clusteraudit_join(&own, c->ans, c->shards, limit, out);
done:
    fv_buf_free(&own);
    return 1;
}

/* Q6: the api node's record of a read it had the owners answer, written before the answer
 * leaves (the transport holds it until durable: api/http.h H2). It names no subject (the
 * device a one-device read names may be an id: G6); the owners' entries do, by pseudonym.
 * A log that cannot be written makes the answer a 503. */
static void audit_forward(const struct fv_clusterapi *c, const struct fv_api_view *v,
                          const struct fv_guard_ctx *ctx, const char *action,
                          struct fv_http_response *out)
{
    struct fv_audit *audit = v->guard ? v->guard->audit : NULL;
    if (audit == NULL) return;
    char purpose[32] = "", ticket[129] = "";
    fv_query_param(v->query, "purpose", purpose, sizeof purpose);
    fv_query_param(v->query, "ticket", ticket, sizeof ticket);
    json_t *x = json_pack("{s:i,s:I,s:s}", "status", out->status, "shard",
                          (json_int_t)c->answered_by, "decided_by", "the shards' owners");
    char *extra = x ? json_dumps(x, JSON_COMPACT) : NULL;
    json_decref(x);
    struct fv_audit_event ev = {.kind = "cluster",
                                .action = action,
                                .principal = ctx->principal,
                                .role = ctx->role,
                                .purpose = purpose[0] ? purpose : NULL,
                                .ticket = ticket[0] ? ticket : NULL,
                                .bytes = out->body.len,
                                .result = out->status < 400                          ? "allow"
                                          : out->status == 403 || out->status == 404 ? "deny"
                                                                                     : "error",
                                .reason = "answered by the shards' owners (docs/cluster.md)",
                                .extra_json = extra};
    int rc = extra ? fv_audit_append(audit, &ev, NULL) : FV_ENOMEM;
    free(extra);
    if (rc != FV_OK) {
        fv_error("audit: %s", fv_audit_last_error(audit));
        fv_api_respond_error(out, 503, "the audit log cannot be written; refused");
    }
}

int fv_clusterapi_forward(void *arg, const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                          const char *method, const char *path, struct fv_http_response *out)
{
    struct fv_clusterapi *c = arg;
    static const char *const rights[] = {NULL, "cluster.subject.export", "cluster.subject.erase",
                                         "cluster.subject.consent"};
    char dev[128];
    const char *action = NULL;
    int done = 0, right = subject_right(path, dev, sizeof dev);
    /* the methods the single node takes for each (fv_api_handle answered 405 to others) */
    if (strcmp(method, right >= 2 ? "POST" : "GET") != 0) return 0;
    c->answered_by = -1;
    c->change = right >= 2;
    size_t n = strlen(path);
    if (right) { /* Q7 */
        action = rights[right];
        done = forward_one(c, v, ctx, method, path, out);
    } else if (one_device(path, v->query, dev, sizeof dev)) {
        action = strcmp(path, "/api/v1/query") == 0 ? "cluster.query" : "cluster.vehicle.state";
        done = forward_one(c, v, ctx, method, path, out);
    } else if (strcmp(path, "/api/v1/fleet") == 0) {
        action = "cluster.fleet.at";
        done = forward_fleet(c, ctx, method, path, v->query, out);
    } else if (strcmp(path, "/api/v1/vehicles") == 0 || strcmp(path, "/api/v1/vehicles/") == 0) {
        action = "cluster.vehicles.list";
        done = forward_list(c, ctx, method, path, v->query, out);
    } else if (strncmp(path, "/api/v1/signals/", 16) == 0 && n > 16 + 7 &&
               strcmp(path + n - 7, "/latest") == 0 && !memchr(path + 16, '/', n - 16 - 7)) {
        action = "cluster.signals.latest";
        done = forward_list(c, ctx, method, path, v->query, out);
    } else if (strcmp(path, "/api/v1/audit") == 0) {
        action = "cluster.audit.query";
        done = forward_audit(c, v, ctx, method, path, out);
    }
    if (done) audit_forward(c, v, ctx, action, out);
    return done;
}

void fv_clusterapi_close(struct fv_clusterapi *c)
{
    if (c == NULL) return;
    fv_jsquery_close(c->q); /* no callback runs after this */
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
    for (uint32_t s = 0; c->ans && s < c->shards; s++)
        fv_buf_free(&c->ans[s].body);
    free(c->ans);
    free(c);
}
