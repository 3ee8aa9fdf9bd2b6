/* clusterapi.c - the query API across a cluster (clusterapi.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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
#include "server/clusterapi.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/urlquery.h"

/* NATS's largest max_payload (64 MiB): an answer past it is never gathered further. */
#define ANSWER_MAX (64u << 20)

/* An owner's answer waiting for its audit entries to be durable (Q4). */
struct parked {
    struct fv_jsq_req *req;
    int status, here;
    char type[64];
    struct fv_buf body;
    uint64_t need;
    struct parked *next;
};

struct fv_clusterapi {
    uint32_t shards;
    int timeout_ms; /* cluster.query_timeout_ms */
    struct fv_jsquery *q;
    struct fv_http_ctx *http;
    struct fv_jsconsume *consumer; /* NULL: an api node */
    struct parked *parked;         /* oldest first */
    struct fv_jsq_answer *ans;     /* an api node's: one per shard, reused */
    long answered_by;              /* the shard whose owner answered a one-device read, or -1 */
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

struct shard_filter {
    uint32_t shards, shard;
};

static int in_shard(void *arg, const char *pseudo)
{
    const struct shard_filter *f = arg;
    return fv_cluster_shard(pseudo, f->shards) == f->shard;
}

/* Q2: does shard hold the device the one-device read r names (as the principal's role names
 * devices: api.h fv_api_find_device)? Decides nothing, audits nothing. */
static int device_here(struct fv_clusterapi *c, const struct fv_api_view *v,
                       const struct fv_jsq_req *r, const char *name)
{
    struct fv_guard_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    snprintf(ctx.principal, sizeof ctx.principal, "%s", r->principal);
    snprintf(ctx.role, sizeof ctx.role, "%s", r->role);
    const struct fv_device *d = fv_api_find_device(v, &ctx, name);
    if (d == NULL) return 0;
    char subject[FV_SUBJECT_NAME_MAX + 1], ps[FV_PSEUDONYM_LEN + 1];
    const unsigned char *dek;
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
        fv_jsquery_answer(c->q, p->req, 500, "application/json", 1, failed, sizeof failed - 1);
    else
        fv_jsquery_answer(c->q, p->req, p->status, p->type, p->here, p->body.data, p->body.len);
    fv_buf_free(&p->body);
    free(p);
}

/* The device a one-device read names (Q2): /api/v1/query?device=D, /api/v1/vehicles/D/state.
 * 0: not such a read. */
static int one_device(const char *path, const char *query, char *name, size_t cap)
{
    static const char pre[] = "/api/v1/vehicles/", post[] = "/state";
    if (strcmp(path, "/api/v1/query") == 0)
        return fv_query_param(query, "device", name, cap) && name[0];
    size_t n = strlen(path), lp = sizeof pre - 1, ls = sizeof post - 1;
    if (n <= lp + ls || strncmp(path, pre, lp) != 0 || strcmp(path + n - ls, post) != 0 ||
        n - lp - ls >= cap || memchr(path + lp, '/', n - lp - ls))
        return 0;
    memcpy(name, path + lp, n - lp - ls);
    name[n - lp - ls] = '\0';
    return 1;
}

/* Runs the read as the single node would (Q4), its streamed answer gathered whole. */
static void take(struct fv_clusterapi *c, struct fv_jsq_req *r)
{
    struct fv_api_view v = c->http->view;
    struct shard_filter f = {c->shards, r->shard};
    v.stats = &c->http->stats;
    v.query = r->query;
    v.forward = NULL;
    v.keep = in_shard;
    v.keep_arg = &f;
    char name[128];
    if (one_device(r->path, r->query, name, sizeof name) && !device_here(c, &v, r, name)) {
        static const char no[] = "{\"error\":\"not held by this shard\"}\n";
        fv_jsquery_answer(c->q, r, 404, "application/json", 0, no, sizeof no - 1);
        return;
    }
    struct fv_audit *audit = v.guard ? v.guard->audit : NULL;
    uint64_t before = audit ? fv_audit_last_seq(audit) : 0;
    struct fv_http_response resp;
    memset(&resp, 0, sizeof resp);
    fv_api_handle_as(&v, r->method, r->path, r->principal, r->role, &resp);
    if (resp.more) {
        int rc; /* past NATS's largest payload it cannot be sent: stop, fv_jsquery_answer
                   answers 507 (Q4) */
        while ((rc = resp.more(resp.ctx, &resp.body)) > 0 && resp.body.len <= ANSWER_MAX) {
        }
        if (rc < 0) {
            fv_warn("cluster: a query of shard %u failed (%s)", r->shard, fv_strerror(rc));
            fv_buf_reset(&resp.body);
            static const char m[] = "{\"error\":\"query failed; see the owner's log\"}\n";
            fv_buf_append(&resp.body, m, sizeof m - 1);
            resp.status = 500;
            resp.content_type = "application/json";
        }
        if (resp.free_ctx) resp.free_ctx(resp.ctx);
    }
    struct parked *p = calloc(1, sizeof *p);
    if (p == NULL) {
        fv_buf_free(&resp.body);
        fv_jsquery_answer(c->q, r, 500, "application/json", 1, "{\"error\":\"out of memory\"}\n",
                          26);
        return;
    }
    p->req = r;
    p->status = resp.status;
    p->here = 1;
    snprintf(p->type, sizeof p->type, "%s", resp.content_type ? resp.content_type : "text/plain");
    p->body = resp.body; /* taken over */
    uint64_t after = audit ? fv_audit_last_seq(audit) : 0;
    if (after > before) after = fv_guard_gate_seq(v.guard, before, after);
    p->need = after > before ? after : 0;
    if (p->need) fv_audit_need(audit, p->need); /* a lazy entry among them is synced now */
    struct parked **tail = &c->parked;
    while (*tail)
        tail = &(*tail)->next;
    *tail = p;
}

void fv_clusterapi_serve(void *arg)
{
    struct fv_clusterapi *c = arg;
    if (c == NULL || c->consumer == NULL) return;
    struct fv_jsq_req *r;
    while ((r = fv_jsquery_next(c->q)) != NULL)
        take(c, r);
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
    static const char *const types[] = {"application/json", "text/csv", "text/plain"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strncmp(t, types[i], strlen(types[i])) == 0) return types[i];
    return "application/octet-stream";
}

/* Q5: the answer for a shard that did not answer. */
static void shard_down(const struct fv_clusterapi *c, struct fv_http_response *out, uint32_t shard,
                       int rc, const char *err)
{
    char msg[300];
    if (rc == FV_EAGAIN)
        snprintf(msg, sizeof msg,
                 "shard %u: its owner did not answer within %d ms (a storage node down? its "
                 "lease moves to another within the lease TTL); try again",
                 shard, c->timeout_ms);
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

/* Q2 */
static int forward_one(struct fv_clusterapi *c, const struct fv_api_view *v,
                       const struct fv_guard_ctx *ctx, const char *method, const char *path,
                       struct fv_http_response *out)
{
    if (ask(c, ctx, method, path, v->query, out)) return 1;
    for (uint32_t s = 0; s < c->shards; s++)
        if (c->ans[s].rc == FV_OK && c->ans[s].here) {
            c->answered_by = (long)s;
            relay(out, c->ans[s].status, c->ans[s].type, &c->ans[s].body);
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
    if (strcmp(method, "GET") != 0) return 0;
    char dev[128];
    const char *action = NULL;
    int done = 0;
    c->answered_by = -1;
    size_t n = strlen(path);
    if (one_device(path, v->query, dev, sizeof dev)) {
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
    for (uint32_t s = 0; c->ans && s < c->shards; s++)
        fv_buf_free(&c->ans[s].body);
    free(c->ans);
    free(c);
}
