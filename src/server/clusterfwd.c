/*
 * clusterfwd.c - the api node's side of the query API across a cluster (clusterapi.h Q1-Q3,
 * Q5, Q6, Q8, Q9): a request sent to every shard's owner at once; the answers awaited
 * without holding the API thread (api/http.h H3: the response waits, the loop serves others,
 * nats.c's thread wakes it as answers come, a timer at the deadline); then joined.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <jansson.h>

#include "api/http.h"
#include "api/promapi.h"
#include "cluster/jsquery.h"
#include "privacy/audit.h"
#include "privacy/guard.h"
#include "privacy/policy.h"
#include "server/apiloop.h"
#include "server/clusteraudit.h"
#include "server/clusterapi.h"
#include "server/clusterapi_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/urlquery.h"

/* The largest answer an api node gathers whole to join it with others' (a fleet read, Q3):
 * past it, 507. One-device answers are streamed to the client piece by piece instead. */
#define ANSWER_MAX (64u << 20)

enum kind { ONE, FLEET, LIST, AUDIT, PROM };

/* One shard's part of a request in flight. */
struct shard_wait {
    int on;               /* an answer (or piece) asked for and not taken yet */
    uint32_t seq;         /* Q3: the next piece to pull (J2) */
    uint64_t deadline_ns; /* a piece's: query_timeout_ms after it was asked */
};

/* A request waiting for the shards' owners (Q9): everything it needs once they answered.
 * It lives as long as its HTTP response waits (api.h wait; freed with the connection). */
struct fv_clusterapi__pending {
    struct fv_clusterapi *c;
    const struct fv_api_view *v; /* the request's (api/http.h: lives as long as it) */
    struct fv_guard_ctx ctx;
    char method[16], path[FV_JSQ_FIELD_MAX + 1];
    const char *action;
    enum kind kind;
    int change;           /* the request changes data (Q7: a POST) */
    int gathering;        /* Q3: the first answers are in; the rest of those in pieces comes */
    int local;            /* Q2: no shard holds the device; answered here, not a forward */
    long answered_by;     /* the shard whose owner answered a one-device read, or -1 */
    uint64_t deadline_ns; /* of the first answers */
    struct fv_jsq_call *call;
    struct fv_jsq_answer *ans; /* one per shard */
    struct fv_jsq_answer piece;
    struct shard_wait *w;             /* one per shard */
    struct fv_buf own;                /* Q8: the api node's own search, tagged */
    uint64_t subjects;                /* Q3: the vehicles of the joined answer (Q10) */
    struct fv_clusterapi__prom *prom; /* Q11: a Prometheus read's (p->v is its view) */
    int prom_one;                     /* Q11: of one device (Q2) */
    struct fv_clusterapi__pending *prev, *next;
};
typedef struct fv_clusterapi__pending pending;

/* An owner's answer larger than one message, pulled piece by piece (jsquery.h J2) as the
 * client takes it (the transport asks for the next piece once the last is sent), on the call
 * its first piece came by, without waiting (Q9: the transport is woken when it comes). */
struct fv_clusterapi__stream {
    struct fv_clusterapi *c;
    uint32_t shard, seq;
    int status;
    int asked;            /* piece seq asked for, not come yet */
    uint64_t deadline_ns; /* its: query_timeout_ms after it was asked */
    char id[FV_JSQ_ID_LEN + 1], method[16], path[FV_JSQ_FIELD_MAX + 1], principal[65], role[32];
    uint64_t bytes;
    struct fv_jsq_call *call;
    struct fv_jsq_answer a;
    struct fv_clusterapi__stream *prev, *next;
};
typedef struct fv_clusterapi__stream stream;

/* ---- the wake-ups ------------------------------------------------------------------------ */

/* The API thread: a deadline passed; the waiting responses look (H3). */
static void timer_cb(struct ev_loop *loop, struct ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct fv_clusterapi *c = t->data;
    fv_loopref_wake(&c->al->ref);
}

/* The timer set to the first deadline of the requests waiting, or stopped. */
void fv_clusterapi__arm(struct fv_clusterapi *c)
{
    uint64_t first = fv_clusterapi__export_deadline(c); /* Q12's */
    for (pending *p = c->pending; p; p = p->next) {
        if (!p->gathering && p->deadline_ns < first) first = p->deadline_ns;
        for (uint32_t s = 0; p->gathering && s < c->shards; s++)
            if (p->w[s].on && p->w[s].deadline_ns < first) first = p->w[s].deadline_ns;
    }
    for (stream *st = c->streams; st; st = st->next)
        if (st->asked && st->deadline_ns < first) first = st->deadline_ns;
    if (c->timer_on) ev_timer_stop(c->al->loop, &c->timer);
    c->timer_on = 0;
    if (first == UINT64_MAX) return;
    ev_now_update(c->al->loop);
    uint64_t now = fv_mono_ns();
    ev_timer_set(&c->timer, (first > now ? (double)(first - now) / 1e9 : 0.0) + 0.001, 0.0);
    ev_timer_start(c->al->loop, &c->timer);
    c->timer_on = 1;
}

int fv_clusterapi__fwd_open(struct fv_clusterapi *c, char *err, size_t errlen)
{
    ev_init(&c->timer, timer_cb);
    c->timer.data = c;
    return fv_jsquery_ask_async(c->q, fv_loopref_wake, &c->al->ref, err, errlen);
}

static void pending_unlink_free(pending *p)
{
    struct fv_clusterapi *c = p->c;
    if (p->prev)
        p->prev->next = p->next;
    else if (c->pending == p)
        c->pending = p->next;
    if (p->next) p->next->prev = p->prev;
    c->npending--;
    c->http->metrics->cluster_q_waiting = c->npending;
    fv_jsquery_call_end(c->q, p->call);
    for (uint32_t s = 0; p->ans && s < c->shards; s++)
        fv_buf_free(&p->ans[s].body);
    free(p->ans);
    free(p->w);
    fv_buf_free(&p->piece.body);
    fv_buf_free(&p->own);
    fv_clusterapi__prom_free(p->prom);
    free(p);
}

/* The response's free_ctx: its connection closed while it waited (or it was answered). */
static void pending_free(void *arg)
{
    pending *p = arg;
    struct fv_clusterapi *c = p->c;
    pending_unlink_free(p);
    fv_clusterapi__arm(c);
}

static void stream_unlink_free(stream *s);

void fv_clusterapi__fwd_close(struct fv_clusterapi *c)
{
    fv_clusterapi__export_close(c);
    while (c->pending)
        pending_unlink_free(c->pending);
    while (c->streams)
        stream_unlink_free(c->streams);
}

/* ---- answers ------------------------------------------------------------------------------ */

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
void fv_clusterapi__shard_down(const struct fv_clusterapi *c, int change,
                               struct fv_http_response *out, uint32_t shard, int rc,
                               const char *err)
{
    char msg[400];
    if (rc == FV_EAGAIN)
        snprintf(msg, sizeof msg,
                 "shard %u: its owner did not answer within %d ms (a storage node down? its "
                 "lease moves to another within the lease TTL); %s",
                 shard, c->timeout_ms,
                 change ? "the change may or may not have been made: ask again (an erasure "
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

void fv_clusterapi__relay(struct fv_http_response *out, int status, const char *type,
                          const struct fv_buf *body)
{
    out->status = status;
    out->content_type = known_type(type);
    fv_buf_reset(&out->body);
    if (body->len && fv_buf_append(&out->body, body->data, body->len) != FV_OK)
        fv_api_respond_error(out, 500, "out of memory");
}

/* The first shard without an answer, or -1. */
static long first_down(const pending *p)
{
    for (uint32_t s = 0; s < p->c->shards; s++)
        if (p->ans[s].rc != FV_OK) {
            p->c->http->metrics->cluster_q_unanswered++;
            return (long)s;
        }
    return -1;
}

/* The first answers taken as they came: 1 once every shard answered, or the deadline passed
 * (those not answered stay FV_EAGAIN), or - one device, Q2 - the shard that holds it
 * answered (at most one does: the others' answers would change nothing); else 0. */
static int collect(pending *p, uint64_t now)
{
    int all = 1;
    for (uint32_t s = 0; s < p->c->shards; s++) {
        if (!p->w[s].on) continue;
        if (!fv_jsquery_call_take(p->c->q, p->call, s, &p->ans[s])) {
            all = 0;
            continue;
        }
        p->w[s].on = 0;
        if ((p->kind == ONE || p->prom_one) && p->ans[s].rc == FV_OK && p->ans[s].here) return 1;
    }
    return all || now >= p->deadline_ns;
}

/* Q3: the rest of the answers whose first piece came (those of status 200 with more to
 * come), pulled from every such shard at once, one piece at a time each (J2), at most
 * ANSWER_MAX bytes a shard. 1: every answer whole; 0: pieces still to come; -1: out is an
 * error. */
static int gather(pending *p, uint64_t now, struct fv_http_response *out)
{
    struct fv_clusterapi *c = p->c;
    char err[200] = "", msg[300];
    int waiting = 0;
    for (uint32_t s = 0; s < c->shards; s++) {
        struct fv_jsq_answer *a = &p->ans[s], *piece = &p->piece;
        struct shard_wait *w = &p->w[s];
        if (a->status != 200) continue;
        if (w->on) {
            if (!fv_jsquery_call_take(c->q, p->call, s, piece)) {
                if (now < w->deadline_ns) {
                    waiting = 1;
                    continue;
                }
                piece->rc = FV_EAGAIN; /* no piece within the timeout */
            }
            w->on = 0;
            if (piece->rc != FV_OK) {
                c->http->metrics->cluster_q_unanswered++;
                fv_clusterapi__shard_down(c, p->change, out, s, piece->rc, "a malformed answer");
                return -1;
            }
            if (piece->status != a->status) {
                snprintf(msg, sizeof msg,
                         "shard %u: its owner's answer ended early (%d); try again", s,
                         piece->status);
                fv_api_respond_error(out, 502, msg);
                return -1;
            }
            if (a->body.len + piece->body.len > ANSWER_MAX) {
                fv_api_respond_error(out, 507, "a shard's answer is over 64 MiB: narrow the query");
                return -1;
            }
            if (fv_buf_append(&a->body, piece->body.data, piece->body.len) != FV_OK) {
                fv_api_respond_error(out, 500, "out of memory");
                return -1;
            }
            memcpy(a->more, piece->more, sizeof a->more);
        }
        if (a->more[0] == '\0') continue;
        if (fv_jsquery_call_pull(c->q, p->call, s, p->method, p->path, p->ctx.principal,
                                 p->ctx.role, a->more, ++w->seq, err, sizeof err) != FV_OK) {
            snprintf(msg, sizeof msg, "shard %u: %s", s, err);
            fv_api_respond_error(out, 503, msg);
            return -1;
        }
        w->on = 1;
        w->deadline_ns = now + (uint64_t)c->timeout_ms * 1000000u;
        waiting = 1;
    }
    return waiting ? 0 : 1;
}

/* The next piece of s's answer appended to out: 1 more follows, 0 the last,
 * FV_HTTP_MORE_LATER asked for and not come yet (nothing appended); < 0 the answer ends
 * short (a pull not answered within the timeout, J3: the transport closes the connection,
 * the client sees a short body). */
static int stream_more(void *arg, struct fv_buf *out)
{
    stream *s = arg;
    struct fv_clusterapi *c = s->c;
    char err[200] = "";
    uint64_t now = fv_mono_ns();
    int rc = FV_OK;
    if (!s->asked) {
        rc = fv_jsquery_call_pull(c->q, s->call, s->shard, s->method, s->path, s->principal,
                                  s->role, s->id, s->seq, err, sizeof err);
        if (rc == FV_OK) {
            s->asked = 1;
            s->deadline_ns = now + (uint64_t)c->timeout_ms * 1000000u;
            fv_clusterapi__arm(c);
            return FV_HTTP_MORE_LATER; /* the loop is woken when it comes (Q9) */
        }
    } else if (!fv_jsquery_call_take(c->q, s->call, s->shard, &s->a)) {
        if (now < s->deadline_ns) return FV_HTTP_MORE_LATER;
        s->a.rc = FV_EAGAIN; /* no piece within the timeout */
    }
    s->asked = 0;
    if (rc == FV_OK && s->a.rc == FV_OK && s->a.status == s->status && s->a.here &&
        fv_buf_append(out, s->a.body.data, s->a.body.len) == FV_OK) {
        s->bytes += s->a.body.len;
        s->seq++;
        return s->a.more[0] ? 1 : 0;
    }
    c->http->metrics->cluster_q_unanswered++;
    if (rc == FV_OK && s->a.rc == FV_EAGAIN)
        snprintf(err, sizeof err, "its owner did not answer a pull within %d ms", c->timeout_ms);
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

static void stream_unlink_free(stream *s)
{
    struct fv_clusterapi *c = s->c;
    if (s->prev)
        s->prev->next = s->next;
    else if (c->streams == s)
        c->streams = s->next;
    if (s->next) s->next->prev = s->prev;
    fv_jsquery_call_end(c->q, s->call);
    fv_buf_free(&s->a.body);
    free(s);
}

/* The response's free_ctx: the answer sent, ended short, or its client gone. */
static void stream_free(void *arg)
{
    stream *s = arg;
    struct fv_clusterapi *c = s->c;
    stream_unlink_free(s);
    fv_clusterapi__arm(c);
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

/* ---- joining ------------------------------------------------------------------------------ */

/* Q2, Q7: the answer of the shard that holds the device (streamed to the client if it comes
 * in pieces), or the first shard that did not answer, or - no shard holds it - this node's
 * own (p->local). */
static void finish_one(pending *p, struct fv_http_response *out)
{
    struct fv_clusterapi *c = p->c;
    for (uint32_t s = 0; s < c->shards; s++)
        if (p->ans[s].rc == FV_OK && p->ans[s].here) {
            const struct fv_jsq_answer *a = &p->ans[s];
            p->answered_by = (long)s;
            fv_clusterapi__relay(out, a->status, a->type, &a->body);
            if (a->more[0] == '\0' || out->status != a->status) return;
            stream *st = calloc(1, sizeof *st);
            if (st == NULL) {
                fv_api_respond_error(out, 500, "out of memory");
                return;
            }
            *st = (stream){.c = c, .shard = s, .seq = 1, .status = a->status, .call = p->call};
            p->call = NULL; /* the stream's now: its pieces come on it */
            st->next = c->streams;
            if (c->streams) c->streams->prev = st;
            c->streams = st;
            snprintf(st->id, sizeof st->id, "%s", a->more);
            snprintf(st->method, sizeof st->method, "%s", p->method);
            snprintf(st->path, sizeof st->path, "%s", p->path);
            snprintf(st->principal, sizeof st->principal, "%s", p->ctx.principal);
            snprintf(st->role, sizeof st->role, "%s", p->ctx.role);
            st->bytes = a->body.len;
            out->more = stream_more;
            out->free_ctx = stream_free;
            out->ctx = st;
            return;
        }
    long down = first_down(p);
    if (down >= 0) {
        fv_clusterapi__shard_down(c, p->change, out, (uint32_t)down, p->ans[down].rc,
                                  "a malformed answer");
        return;
    }
    p->local = 1; /* no shard holds it: the single node's answer, here (Q2) */
    fv_api_route_authenticated(p->v, p->method, p->path, &p->ctx, out);
}

/* Q5 and the refusals, before any piece is pulled: 1 when out is the answer already. */
static int refused(pending *p, struct fv_http_response *out)
{
    long down = first_down(p);
    if (down >= 0) {
        fv_clusterapi__shard_down(p->c, p->change, out, (uint32_t)down, p->ans[down].rc,
                                  "a malformed answer");
        return 1;
    }
    for (uint32_t s = 0; s < p->c->shards; s++) { /* a refusal: every owner decides alike */
        const struct fv_jsq_answer *a = &p->ans[s];
        if (a->status != 200 && !(p->kind == AUDIT && a->status == 404 && !a->here)) {
            fv_clusterapi__relay(out, a->status, a->type, &a->body);
            return 1;
        }
    }
    return 0;
}

/* Q11: the first answers of a Prometheus read: a shard down or a refusal (refused), or - one
 * device - the answer of the shard that holds it, the only one joined (Q2), or, no shard
 * holding it, this node's own (p->local). 1 when out is the answer. */
static int prom_first(pending *p, struct fv_http_response *out)
{
    struct fv_clusterapi *c = p->c;
    if (!p->prom_one) return refused(p, out);
    for (uint32_t s = 0; s < c->shards; s++)
        if (p->ans[s].rc == FV_OK && p->ans[s].here) {
            p->answered_by = (long)s;
            if (p->ans[s].status != 200) {
                fv_clusterapi__relay(out, p->ans[s].status, p->ans[s].type, &p->ans[s].body);
                return 1;
            }
            for (uint32_t o = 0; o < c->shards; o++)
                if (o != s) {
                    p->ans[o].status = 0; /* gather and the join leave it out */
                    p->w[o].on = 0;
                }
            return 0;
        }
    long down = first_down(p);
    if (down >= 0) {
        fv_clusterapi__shard_down(c, 0, out, (uint32_t)down, p->ans[down].rc, "a malformed answer");
        return 1;
    }
    p->local = 1;
    fv_api_prometheus_as(p->v, &p->ctx, p->path + 11, out);
    return 1;
}

/* Q3: /api/v1/fleet, every shard's rows joined. */
static void join_fleet(pending *p, struct fv_http_response *out)
{
    struct fv_buf rows = {0}, head = {0};
    unsigned long long count = 0;
    int csv = 0, rc = FV_OK;
    const char *type = "application/json";
    for (uint32_t s = 0; s < p->c->shards && rc == FV_OK; s++) {
        const struct fv_buf *b = &p->ans[s].body;
        type = known_type(p->ans[s].type);
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
        for (size_t i = 0; csv && i < n; i++) /* a CSV row per line, the last without \n */
            count += r[i] == '\n' || i + 1 == n;
    }
    p->subjects = count;
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
}

/* Q3 for the answers the API builds with jansson (/api/v1/vehicles,
 * /api/v1/signals/S/latest): {"count": N, "vehicles": [...], ...} joined, counts summed. */
static void join_list(pending *p, struct fv_http_response *out)
{
    json_t *all = NULL;
    for (uint32_t s = 0; s < p->c->shards; s++) {
        const struct fv_jsq_answer *a = &p->ans[s];
        json_t *j = json_loadb((const char *)a->body.data, a->body.len, 0, NULL);
        json_t *arr = json_object_get(j, "vehicles");
        if (!json_is_array(arr) || !json_is_integer(json_object_get(j, "count"))) {
            json_decref(j);
            json_decref(all);
            char msg[120];
            snprintf(msg, sizeof msg, "shard %u: its owner's answer is malformed", s);
            fv_api_respond_error(out, 502, msg);
            return;
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
    if (all == NULL) {
        fv_api_respond_error(out, 500, "no shards");
        return;
    }
    p->subjects = (uint64_t)json_integer_value(json_object_get(all, "count"));
    fv_api_respond_json(out, 200, all);
}

/* Q10: the role's subjects per request (policy P5: max_subjects_per_request, and the bulk
 * threshold) decided again on the joined answer's count - each owner decided on its own
 * shards' vehicles only, so N shards could each stay under a limit the whole answer breaks.
 * Nothing of a refused answer leaves. A read under a bulk approval is left to the owners
 * (the approver's role is theirs to check). */
static void limit_subjects(pending *p, struct fv_http_response *out)
{
    const struct fv_guard *g = p->v->guard;
    if (out->status != 200 || g == NULL || g->policy == NULL || p->ctx.role[0] == '\0' ||
        p->ctx.approved_by[0] || p->subjects <= 1)
        return;
    char purpose[32] = "", ticket[129] = ""; /* as the owners read them (api.c) */
    fv_query_param(p->v->query, "purpose", purpose, sizeof purpose);
    fv_query_param(p->v->query, "ticket", ticket, sizeof ticket);
    struct fv_access_request req = {.principal = p->ctx.principal,
                                    .role = p->ctx.role,
                                    .action = FV_ACTION_READ,
                                    .purpose = purpose,
                                    .ticket = ticket,
                                    .classes = p->ctx.d.classes,
                                    .subjects = 1};
    int dflt = fv_policy_class_id(g->policy, "default");
    if (req.classes == 0 && dflt >= 0) /* (not decided here yet: the class every read has) */
        req.classes = 1u << dflt;
    struct fv_decision one, all;
    fv_policy_decide(g->policy, &req, &one);
    req.subjects = p->subjects;
    fv_policy_decide(g->policy, &req, &all);
    if (!one.allow || all.allow) return; /* refused for another reason: the owners' to say */
    fv_api_respond_error(out, 403, all.reason);
}

/* Q8: the api node's own search (p->own) and every storage node's joined (clusteraudit.h). */
static void join_audit(pending *p, struct fv_http_response *out)
{
    char ls[16] = "";
    long limit = fv_query_param(p->v->query, "limit", ls, sizeof ls) && ls[0] ? atol(ls) : 100;
    fv_clusteraudit_join(&p->own, p->ans, p->c->shards, limit, out);
}

/* Q6: the api node's record of a read it had the owners answer, written before the answer
 * leaves (the transport holds it until durable: api/http.h H2). It names no subject (the
 * device a one-device read names may be an id: G6); the owners' entries do, by pseudonym.
 * A log that cannot be written makes the answer a 503. */
static void audit_forward(const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                          const char *action, long answered_by, struct fv_http_response *out)
{
    struct fv_audit *audit = v->guard ? v->guard->audit : NULL;
    if (audit == NULL) return;
    char purpose[32] = "", ticket[129] = "";
    fv_query_param(v->query, "purpose", purpose, sizeof purpose);
    fv_query_param(v->query, "ticket", ticket, sizeof ticket);
    json_t *x = json_pack("{s:i,s:I,s:s}", "status", out->status, "shard", (json_int_t)answered_by,
                          "decided_by", "the shards' owners");
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
        if (out->free_ctx) out->free_ctx(out->ctx); /* a stream begun: not sent */
        out->more = NULL;
        out->free_ctx = NULL;
        out->ctx = NULL;
        fv_api_respond_error(out, 503, "the audit log cannot be written; refused");
    }
}

/* The response's wait (api.h, http.h H3), on the API thread at each wake: 1 once the answer
 * is made (out; p freed), 0 while the owners' answers are still to come. */
static int pending_wait(void *arg, struct fv_http_response *out)
{
    pending *p = arg;
    struct fv_clusterapi *c = p->c;
    uint64_t now = fv_mono_ns();
    if (!p->gathering && !collect(p, now)) {
        fv_clusterapi__arm(c);
        return 0;
    }
    out->ctx = NULL; /* out is made below: p is no longer its state */
    out->free_ctx = NULL;
    if (p->kind == ONE) {
        finish_one(p, out);
    } else if (p->gathering || !(p->kind == PROM ? prom_first(p, out) : refused(p, out))) {
        p->gathering = 1;
        int g = gather(p, now, out);
        if (g == 0) {
            out->ctx = p;
            out->free_ctx = pending_free;
            fv_clusterapi__arm(c);
            return 0;
        }
        if (g == 1 && p->kind == FLEET) join_fleet(p, out);
        if (g == 1 && p->kind == LIST) join_list(p, out);
        if (g == 1 && (p->kind == FLEET || p->kind == LIST)) limit_subjects(p, out);
        if (g == 1 && p->kind == AUDIT) join_audit(p, out);
        if (g == 1 && p->kind == PROM) {
            fv_clusterapi__prom_join(p->prom, p->ans, c->shards, &p->subjects, out);
            if (!p->prom_one) limit_subjects(p, out); /* Q10 */
        }
    }
    if (p->kind == PROM) fv_clusterapi__prom_shape(out);
    if (!p->local) audit_forward(p->v, &p->ctx, p->action, p->answered_by, out);
    pending_free(p);
    return 1;
}

static int send_all(struct fv_clusterapi *c, const struct fv_api_view *v,
                    const struct fv_guard_ctx *ctx, const char *method, const char *path,
                    const char *action, enum kind kind, int change,
                    struct fv_clusterapi__prom *prom, struct fv_http_response *out);

/* Q1: the endpoints an api node neither routes nor can answer truthfully (its store, VPP,
 * campaigns, clips, datasets and labeling queue are empty or absent): a clear 501, never
 * an empty answer. */
static int not_served(const char *path)
{
    static const char *const pre[] = {"/api/v1/vpp",      "/api/v1/campaigns", "/api/v1/clips",
                                      "/api/v1/datasets", "/api/v1/labeling",  "/api/v1/store"};
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) {
        size_t l = strlen(pre[i]);
        if (strncmp(path, pre[i], l) == 0 && (path[l] == '\0' || path[l] == '/')) return 1;
    }
    return 0;
}

int fv_clusterapi_forward(void *arg, const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                          const char *method, const char *path, struct fv_http_response *out)
{
    struct fv_clusterapi *c = arg;
    static const char *const rights[] = {NULL, "cluster.subject.export", "cluster.subject.erase",
                                         "cluster.subject.consent"};
    char dev[128];
    const char *action = NULL;
    enum kind kind = ONE;
    if (fv_clusterapi__export(c, v, ctx, method, path, out)) return 1; /* Q12 */
    if (not_served(path)) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "%.200s is not served by an api node (docs/cluster.md, \"Queries through an api "
                 "node\"): ask a storage node's API",
                 path);
        fv_api_respond_error(out, 501, msg);
        return 1;
    }
    int right = fv_clusterapi__subject_right(path, dev, sizeof dev);
    /* the methods the single node takes for each (fv_api_handle answered 405 to others) */
    if (strcmp(method, right >= 2 ? "POST" : "GET") != 0) return 0;
    size_t n = strlen(path);
    if (right) { /* Q7 */
        action = rights[right];
    } else if (fv_clusterapi__one_device(path, v->query, dev, sizeof dev)) {
        action = strcmp(path, "/api/v1/query") == 0 ? "cluster.query" : "cluster.vehicle.state";
    } else if (strcmp(path, "/api/v1/fleet") == 0) {
        action = "cluster.fleet.at";
        kind = FLEET;
    } else if (strcmp(path, "/api/v1/vehicles") == 0 || strcmp(path, "/api/v1/vehicles/") == 0) {
        action = "cluster.vehicles.list";
        kind = LIST;
    } else if (strncmp(path, "/api/v1/signals/", 16) == 0 && n > 16 + 7 &&
               strcmp(path + n - 7, "/latest") == 0 && !memchr(path + 16, '/', n - 16 - 7)) {
        action = "cluster.signals.latest";
        kind = LIST;
    } else if (strcmp(path, "/api/v1/audit") == 0) {
        action = "cluster.audit.query";
        kind = AUDIT;
    } else {
        return 0;
    }
    return send_all(c, v, ctx, method, path, action, kind, right >= 2, NULL, out);
}

/* The request sent to every shard's owner, answered as they answer (Q9); prom: a Prometheus
 * read's state (p takes it; v is its view). 1: out answered, or waiting. */
static int send_all(struct fv_clusterapi *c, const struct fv_api_view *v,
                    const struct fv_guard_ctx *ctx, const char *method, const char *path,
                    const char *action, enum kind kind, int change,
                    struct fv_clusterapi__prom *prom, struct fv_http_response *out)
{
    pending *p = calloc(1, sizeof *p);
    if (p) {
        p->ans = calloc(c->shards, sizeof *p->ans);
        p->w = calloc(c->shards, sizeof *p->w);
    }
    if (p == NULL || p->ans == NULL || p->w == NULL) {
        if (p) {
            free(p->ans);
            free(p->w);
        }
        free(p);
        fv_api_respond_error(out, 500, "out of memory");
        if (prom) fv_clusterapi__prom_shape(out);
        audit_forward(v, ctx, action, -1, out);
        fv_clusterapi__prom_free(prom);
        return 1;
    }
    p->c = c;
    p->v = v;
    p->ctx = *ctx;
    p->action = action;
    p->kind = kind;
    p->change = change;
    p->answered_by = -1;
    p->prom = prom;
    p->prom_one = prom && fv_clusterapi__prom_one(prom);
    snprintf(p->method, sizeof p->method, "%s", method);
    snprintf(p->path, sizeof p->path, "%s", path);
    p->next = c->pending; /* linked first: pending_free unlinks it */
    if (c->pending) c->pending->prev = p;
    c->pending = p;
    c->npending++;
    c->http->metrics->cluster_q_waiting = c->npending;
    int rc = FV_OK;
    if (kind == AUDIT) { /* Q8: the api node's own search first (its decision, audited here) */
        struct fv_guard_ctx lc = *ctx;
        fv_api_audit_search(v, &lc, out);
        if (out->status != 200) goto answered; /* refused here (or bad input): as one node */
        rc = fv_buf_append(&p->own, out->body.data, out->body.len);
        if (rc == FV_OK) rc = fv_clusteraudit_tag(&p->own, c->node);
        if (rc) {
            fv_api_respond_error(out, 500, "out of memory");
            goto answered;
        }
        fv_buf_reset(&out->body);
        out->status = 0;
    }
    char err[200] = "";
    if (c->npending > FV_CLUSTER_INFLIGHT_MAX) { /* Q9: p is one of them */
        snprintf(err, sizeof err, "%d requests wait for the shards' owners already",
                 FV_CLUSTER_INFLIGHT_MAX);
        rc = FV_ELIMIT;
    }
    c->http->metrics->cluster_q_forwarded++;
    if (rc == FV_OK)
        rc = fv_jsquery_call_start(c->q, c->shards, method, path, v->query, ctx->principal,
                                   ctx->role, &p->call, err, sizeof err);
    if (rc == FV_EINVAL) {
        fv_api_respond_error(out, 400,
                             "the request cannot be sent to the shards' owners: a "
                             "path or principal too long or not printable");
        goto answered;
    } else if (rc) {
        char msg[300];
        snprintf(msg, sizeof msg, "the shards' owners cannot be asked: %s%s", err,
                 rc == FV_ELIMIT ? "; try again" : "");
        fv_api_respond_error(out, 503, msg);
        out->retry_after = FV_CLUSTER_RETRY_AFTER_S;
        goto answered;
    }
    for (uint32_t s = 0; s < c->shards; s++) {
        p->ans[s].rc = FV_EAGAIN;
        p->w[s].on = 1;
    }
    p->deadline_ns = fv_mono_ns() + (uint64_t)c->timeout_ms * 1000000u;
    out->wait = pending_wait; /* H3: answered as the owners' answers come */
    out->ctx = p;
    out->free_ctx = pending_free;
    fv_clusterapi__arm(c);
    return 1;
answered:
    if (prom) fv_clusterapi__prom_shape(out);
    audit_forward(v, ctx, action, -1, out);
    pending_free(p);
    return 1;
}

int fv_clusterapi_forward_prom(void *arg, const struct fv_api_view *v,
                               const struct fv_guard_ctx *ctx, const char *path,
                               struct fv_http_response *out)
{
    struct fv_clusterapi *c = arg;
    if (fv_prom_kind(path) == FV_PROM_NONE) return 0;
    int local = 0;
    struct fv_clusterapi__prom *pr = fv_clusterapi__prom_new(v, path, &local, out);
    if (pr == NULL) {
        if (local) return 0; /* nothing to read: answered here */
        fv_clusterapi__prom_shape(out);
        return 1;
    }
    char full[64];
    snprintf(full, sizeof full, "/prometheus%s", path); /* fv_prom_kind's paths are short */
    return send_all(c, fv_clusterapi__prom_view(pr), ctx, "GET", full,
                    fv_clusterapi__prom_action(pr), PROM, 0, pr, out);
}
