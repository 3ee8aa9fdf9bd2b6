/*
 * clusterexport.c - bulk exports through an api node (clusterapi.h Q12, docs/cluster.md rule
 * 16): the request, approval and list stay on the api node (its exports table, its decision,
 * its audit entries, the canaries' secret); the vehicles are counted by the shards' owners,
 * and the download streams each owner's rows, shard after shard, in pieces (jsquery.h J1-J4),
 * without holding the API thread (api/http.h H3, FV_HTTP_MORE_LATER).
 *
 * The download numbers the export's vehicles as the owners counted them at its creation:
 * shard 0's first, then shard 1's, ...; canary i goes before vehicle fv_export_canary_at(i)
 * as on one node, so a shard's vehicles are asked for in segments (lo..hi-1 of the shard's,
 * cut where a canary goes), one request at a time, each answered in pieces pulled as the
 * client takes them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/exports.h"
#include "api/http.h"
#include "cluster/jsquery.h"
#include "privacy/guard.h"
#include "server/clusterapi.h"
#include "server/clusterapi_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/urlquery.h"

/* A request or a download waiting for every shard's first answer (a count, or "ready"):
 * Q5's 503/504 before anything is made or sent. Lives as long as its response waits. */
struct fv_clusterapi__xwait {
    struct fv_clusterapi *c;
    const struct fv_api_view *v; /* the request's (api/http.h: lives as long as it) */
    struct fv_guard_ctx ctx;
    int download;
    char id[33];
    struct fv_jsq_call *call;
    struct fv_jsq_answer *ans; /* one per shard */
    unsigned char *got;        /* one per shard */
    uint64_t deadline_ns;
    struct fv_clusterapi__xwait *prev, *next;
};
typedef struct fv_clusterapi__xwait xwait;

/* A download in progress: the owners' rows, shard after shard, and the canaries. */
struct fv_clusterapi__xdl {
    struct fv_clusterapi *c;
    struct fv_guard_ctx ctx; /* the requester, the decision (fv_api_export_take) */
    struct fv_export *x;
    struct fv_jsq_call *call;
    struct fv_jsq_answer a;
    struct fv_buf q;       /* the segment's query */
    uint32_t shard;        /* the shard read now */
    uint64_t base, lo, hi; /* its first vehicle's number in the export; its segment lo..hi-1 */
    uint32_t seq;          /* the next piece to pull (J2) */
    char more[FV_JSQ_ID_LEN + 1];
    int asked, done, bol, in_note;
    int canary_done[FV_EXPORT_CANARIES];
    uint64_t deadline_ns, rows, bytes;
    char fail[400]; /* why it ended short */
    struct fv_clusterapi__xdl *prev, *next;
};
typedef struct fv_clusterapi__xdl xdl;

uint64_t fv_clusterapi__export_deadline(const struct fv_clusterapi *c)
{
    uint64_t first = UINT64_MAX;
    for (const xwait *w = c->xwaits; w; w = w->next)
        if (w->deadline_ns < first) first = w->deadline_ns;
    for (const xdl *d = c->xdls; d; d = d->next)
        if (d->asked && d->deadline_ns < first) first = d->deadline_ns;
    return first;
}

/* ---- waiting for every shard ------------------------------------------------------------ */

static void xwait_unlink_free(xwait *w)
{
    struct fv_clusterapi *c = w->c;
    if (w->prev)
        w->prev->next = w->next;
    else if (c->xwaits == w)
        c->xwaits = w->next;
    if (w->next) w->next->prev = w->prev;
    c->npending--;
    c->http->metrics->cluster_q_waiting = c->npending;
    fv_jsquery_call_end(c->q, w->call);
    for (uint32_t s = 0; w->ans && s < c->shards; s++)
        fv_buf_free(&w->ans[s].body);
    free(w->ans);
    free(w->got);
    free(w);
}

static void xwait_free(void *arg)
{
    xwait *w = arg;
    struct fv_clusterapi *c = w->c;
    xwait_unlink_free(w);
    fv_clusterapi__arm(c);
}

/* The owners' counts joined; the export made (or refused) by the api node's exports table. */
static void create_counted(xwait *w, struct fv_http_response *out)
{
    struct fv_clusterapi *c = w->c;
    char names[4096] = "", buf[4096];
    fv_query_param(w->v->query, "devices", names, sizeof names);
    size_t nnames = 0;
    snprintf(buf, sizeof buf, "%s", names);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        nnames++;
    uint64_t *n = calloc(c->shards, sizeof *n);
    unsigned char *held = calloc(nnames ? nnames : 1, 1);
    if (n == NULL || held == NULL) {
        fv_api_respond_error(out, 500, "out of memory");
        goto done;
    }
    for (uint32_t s = 0; s < c->shards; s++) {
        const struct fv_jsq_answer *a = &w->ans[s];
        json_t *j = json_loadb((const char *)a->body.data, a->body.len, 0, NULL);
        json_t *h = json_object_get(j, "held");
        if (!json_is_integer(json_object_get(j, "vehicles"))) {
            json_decref(j);
            char msg[120];
            snprintf(msg, sizeof msg, "shard %u: its owner's count is malformed", s);
            fv_api_respond_error(out, 502, msg);
            goto done;
        }
        n[s] = (uint64_t)json_integer_value(json_object_get(j, "vehicles"));
        for (size_t i = 0; json_is_array(h) && i < json_array_size(h); i++) {
            json_int_t k = json_integer_value(json_array_get(h, i));
            if (k >= 0 && (size_t)k < nnames) held[k] = 1;
        }
        json_decref(j);
    }
    struct fv_export_counted cnt = {
        .nshards = c->shards, .vehicles = n, .held = names[0] ? held : NULL, .nnames = nnames};
    struct fv_guard_ctx ctx = w->ctx;
    fv_api_export_create_counted(w->v, &ctx, &cnt, out);
done:
    free(n);
    free(held);
}

static int xdl_more(void *arg, struct fv_buf *b);
static void xdl_free(void *arg);

/* Every shard answers: the export taken (the api node's checks and decision) and its CSV
 * begun, the header first. */
static void start_download(xwait *w, struct fv_http_response *out)
{
    struct fv_clusterapi *c = w->c;
    xdl *d = calloc(1, sizeof *d);
    if (d == NULL) {
        fv_api_respond_error(out, 500, "out of memory");
        return;
    }
    d->c = c;
    d->ctx = w->ctx;
    d->bol = 1;
    d->x = fv_api_export_take(w->v, &d->ctx, w->id, out);
    if (d->x == NULL) { /* refused (audited there), or no such export */
        free(d);
        return;
    }
    char err[200] = "";
    int rc = fv_jsquery_call_open(c->q, c->shards, &d->call, err, sizeof err);
    fv_buf_reset(&out->body);
    if (rc == FV_OK) rc = fv_export_put_header(d->x, &out->body);
    if (rc != FV_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "the shards' owners cannot be asked: %s",
                 err[0] ? err : "out of memory");
        fv_export_finish(&c->http->view, &d->ctx, d->x, "error", msg, 0, 0);
        fv_jsquery_call_end(c->q, d->call);
        free(d);
        fv_api_respond_error(out, 503, msg);
        out->retry_after = FV_CLUSTER_RETRY_AFTER_S;
        return;
    }
    d->bytes = out->body.len;
    d->next = c->xdls;
    if (c->xdls) c->xdls->prev = d;
    c->xdls = d;
    out->status = 200;
    out->content_type = "text/csv";
    out->more = xdl_more;
    out->free_ctx = xdl_free;
    out->ctx = d;
}

/* The response's wait (H3): 1 once every shard's first answer is in (or the deadline
 * passed) and out is the answer; 0 meanwhile. */
static int xwait_wait(void *arg, struct fv_http_response *out)
{
    xwait *w = arg;
    struct fv_clusterapi *c = w->c;
    int all = 1;
    for (uint32_t s = 0; s < c->shards; s++)
        if (!w->got[s]) {
            if (fv_jsquery_call_take(c->q, w->call, s, &w->ans[s]))
                w->got[s] = 1;
            else
                all = 0;
        }
    if (!all && fv_mono_ns() < w->deadline_ns) {
        fv_clusterapi__arm(c);
        return 0;
    }
    out->ctx = NULL;
    out->free_ctx = NULL;
    for (uint32_t s = 0; s < c->shards; s++)
        if (!w->got[s] || w->ans[s].rc != FV_OK) { /* Q5: nothing made, nothing sent */
            c->http->metrics->cluster_q_unanswered++;
            fv_clusterapi__shard_down(c, 0, out, s, w->got[s] ? w->ans[s].rc : FV_EAGAIN,
                                      "a malformed answer");
            goto done;
        }
    for (uint32_t s = 0; s < c->shards; s++)
        if (w->ans[s].status != 200) { /* the owner's refusal or error, as it is */
            fv_clusterapi__relay(out, w->ans[s].status, w->ans[s].type, &w->ans[s].body);
            goto done;
        }
    if (w->download)
        start_download(w, out);
    else
        create_counted(w, out);
done:
    xwait_free(w);
    return 1;
}

int fv_clusterapi__export(struct fv_clusterapi *c, const struct fv_api_view *v,
                          const struct fv_guard_ctx *ctx, const char *method, const char *path,
                          struct fv_http_response *out)
{
    static const char pre[] = "/api/v1/exports/";
    int download = strcmp(method, "GET") == 0 && strncmp(path, pre, sizeof pre - 1) == 0 &&
                   strlen(path + sizeof pre - 1) == 32 && !strchr(path + sizeof pre - 1, '/');
    if (!download && !(strcmp(method, "POST") == 0 && strcmp(path, "/api/v1/exports") == 0))
        return 0; /* the list and the approvals: the api node's own table, answered there */
    xwait *w = calloc(1, sizeof *w);
    if (w) {
        w->ans = calloc(c->shards, sizeof *w->ans);
        w->got = calloc(c->shards, 1);
    }
    if (w == NULL || w->ans == NULL || w->got == NULL) {
        if (w) {
            free(w->ans);
            free(w->got);
        }
        free(w);
        fv_api_respond_error(out, 500, "out of memory");
        return 1;
    }
    w->c = c;
    w->v = v;
    w->ctx = *ctx;
    w->download = download;
    if (download) snprintf(w->id, sizeof w->id, "%s", path + sizeof pre - 1);
    w->next = c->xwaits; /* linked first: xwait_free unlinks it */
    if (c->xwaits) c->xwaits->prev = w;
    c->xwaits = w;
    c->npending++;
    c->http->metrics->cluster_q_waiting = c->npending;
    c->http->metrics->cluster_q_forwarded++;
    char err[200] = "";
    int rc = FV_OK;
    if (c->npending > FV_CLUSTER_INFLIGHT_MAX) { /* Q9: w is one of them */
        snprintf(err, sizeof err, "%d requests wait for the shards' owners already",
                 FV_CLUSTER_INFLIGHT_MAX);
        rc = FV_ELIMIT;
    }
    /* A download asks each owner whether it answers (Q5 before the first byte); a request,
     * its vehicles (the devices= list's, or every one of its shard's) */
    if (rc == FV_OK)
        rc = fv_jsquery_call_start(
            c->q, c->shards, "GET", download ? FV_CLUSTER_XREADY : FV_CLUSTER_XCOUNT,
            download ? "" : v->query, ctx->principal, ctx->role, &w->call, err, sizeof err);
    if (rc != FV_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "the shards' owners cannot be asked: %s%s", err,
                 rc == FV_ELIMIT ? "; try again" : "");
        fv_api_respond_error(out, rc == FV_EINVAL ? 400 : 503, msg);
        if (rc != FV_EINVAL) out->retry_after = FV_CLUSTER_RETRY_AFTER_S;
        xwait_free(w);
        return 1;
    }
    w->deadline_ns = fv_mono_ns() + (uint64_t)c->timeout_ms * 1000000u;
    out->wait = xwait_wait;
    out->ctx = w;
    out->free_ctx = xwait_free;
    fv_clusterapi__arm(c);
    return 1;
}

/* ---- the download ------------------------------------------------------------------------ */

/* Counts the rows of what an owner sent (its lines; a "# ..." line is the quota's note, G5:
 * the file ends there, as on one node). */
static void count_rows(xdl *d, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (d->bol && p[i] == '#') d->in_note = 2;
        d->bol = p[i] == '\n';
        if (p[i] != '\n') continue;
        if (d->in_note)
            d->in_note = 1; /* seen: the file ends after this piece */
        else
            d->rows++;
    }
}

/* The canaries that go before vehicle g (every one left when g is past the last). */
static int put_canaries(xdl *d, uint64_t g, int last, struct fv_buf *b)
{
    int rc = FV_OK;
    for (int i = 0; rc == FV_OK && i < FV_EXPORT_CANARIES; i++)
        if (!d->canary_done[i] && (last || fv_export_canary_at(d->x, i) == g)) {
            size_t before = b->len;
            rc = fv_export_put_canary(&d->c->http->view, d->x, i, b);
            for (size_t k = before; k < b->len; k++)
                d->rows += b->data[k] == '\n';
            d->canary_done[i] = 1;
        }
    return rc;
}

/* Ends the download short (the transport closes the connection: the client sees the chunked
 * body without its last chunk, as for a one-device answer whose pull failed). */
static int cut(xdl *d, const char *why)
{
    d->c->http->metrics->cluster_q_unanswered++;
    snprintf(d->fail, sizeof d->fail, "the download was cut after %llu bytes: shard %u: %s",
             (unsigned long long)d->bytes, d->shard, why);
    fv_warn("cluster: bulk export: %s", d->fail);
    return FV_EIO;
}

/* The piece asked for taken: 1 appended (more may follow), or < 0 (cut). */
static int took_piece(xdl *d, struct fv_buf *b)
{
    struct fv_clusterapi *c = d->c;
    const struct fv_jsq_answer *a = &d->a;
    char why[300];
    if (a->rc == FV_EAGAIN) {
        snprintf(why, sizeof why, "its owner did not answer within %d ms", c->timeout_ms);
        return cut(d, why);
    }
    if (a->rc == FV_ENOENT) return cut(d, "no storage node answers for it");
    if (a->rc != FV_OK) return cut(d, "a malformed answer");
    if (a->status != 200 || !a->here) {
        snprintf(why, sizeof why, "its owner answered %d: %.*s", a->status,
                 (int)(a->body.len < 150 ? a->body.len : 150),
                 a->body.len ? (const char *)a->body.data : "");
        return cut(d, why);
    }
    if (fv_buf_append(b, a->body.data, a->body.len) != FV_OK) return cut(d, "out of memory");
    d->bytes += a->body.len;
    count_rows(d, a->body.data, a->body.len);
    snprintf(d->more, sizeof d->more, "%s", a->more);
    return 1;
}

/* The transport's producer: the next piece of the CSV appended to b: 1 more follows, 0 the
 * end, FV_HTTP_MORE_LATER (nothing appended: a piece asked for, not come yet), < 0 cut. */
static int xdl_more(void *arg, struct fv_buf *b)
{
    xdl *d = arg;
    struct fv_clusterapi *c = d->c;
    char err[200] = "";
    size_t before = b->len;
    if (d->done) return 0;
    if (d->asked) {
        if (!fv_jsquery_call_take(c->q, d->call, d->shard, &d->a)) {
            if (fv_mono_ns() < d->deadline_ns) return FV_HTTP_MORE_LATER;
            d->a.rc = FV_EAGAIN; /* no piece within the timeout */
        }
        d->asked = 0;
        int rc = took_piece(d, b);
        if (rc < 0) return rc;
        if (d->in_note) { /* G5: an owner stopped at the quota, and the file says so */
            d->done = 1;
            return 1;
        }
        if (d->more[0]) { /* J2: the segment's next piece */
            if (fv_jsquery_call_pull(c->q, d->call, d->shard, "GET", FV_CLUSTER_XROWS,
                                     d->ctx.principal, d->ctx.role, d->more, d->seq++, err,
                                     sizeof err) != FV_OK)
                return cut(d, err);
            d->asked = 1;
            d->deadline_ns = fv_mono_ns() + (uint64_t)c->timeout_ms * 1000000u;
            fv_clusterapi__arm(c);
            return 1;
        }
        d->lo = d->hi; /* the segment is whole */
    }
    /* The next segment: past the shards done, the canaries that go here, then ask. */
    while (d->shard < c->shards && d->lo >= fv_export_shard_vehicles(d->x, d->shard)) {
        d->base += fv_export_shard_vehicles(d->x, d->shard);
        d->shard++;
        d->lo = 0;
    }
    int last = d->shard == c->shards;
    uint64_t g = d->base + d->lo;
    size_t mark = b->len;
    if (put_canaries(d, g, last, b) != FV_OK) return cut(d, "out of memory");
    d->bytes += b->len - mark;
    if (last) {
        d->done = 1;
        return b->len > before ? 1 : 0;
    }
    uint64_t n = fv_export_shard_vehicles(d->x, d->shard);
    d->hi = n;
    for (int i = 0; i < FV_EXPORT_CANARIES; i++) { /* cut where a canary goes */
        uint64_t at = fv_export_canary_at(d->x, i);
        if (!d->canary_done[i] && at > g && at < d->base + n && at - d->base < d->hi)
            d->hi = at - d->base;
    }
    if (fv_export_owner_query(d->x, d->lo, d->hi, &d->q) != FV_OK) return cut(d, "out of memory");
    if (fv_jsquery_call_ask(c->q, d->call, d->shard, "GET", FV_CLUSTER_XROWS,
                            (const char *)d->q.data, d->ctx.principal, d->ctx.role, err,
                            sizeof err) != FV_OK)
        return cut(d, err);
    c->http->metrics->cluster_q_forwarded++;
    d->asked = 1;
    d->seq = 1;
    d->deadline_ns = fv_mono_ns() + (uint64_t)c->timeout_ms * 1000000u;
    fv_clusterapi__arm(c);
    return b->len > before ? 1 : FV_HTTP_MORE_LATER;
}

static void xdl_unlink_free(xdl *d)
{
    struct fv_clusterapi *c = d->c;
    if (d->prev)
        d->prev->next = d->next;
    else if (c->xdls == d)
        c->xdls = d->next;
    if (d->next) d->next->prev = d->prev;
    const char *result = d->fail[0] || !d->done ? "error" : "allow";
    const char *why = d->fail[0] ? d->fail
                      : d->done  ? "done: every shard's rows and the canaries"
                                 : "the client left before the end (or the api node stopped)";
    fv_export_finish(&c->http->view, &d->ctx, d->x, result, why, d->rows, d->bytes);
    fv_jsquery_call_end(c->q, d->call);
    fv_buf_free(&d->a.body);
    fv_buf_free(&d->q);
    free(d);
}

/* The response's free_ctx: the download sent, cut, or its client gone. */
static void xdl_free(void *arg)
{
    xdl *d = arg;
    struct fv_clusterapi *c = d->c;
    xdl_unlink_free(d);
    fv_clusterapi__arm(c);
}

void fv_clusterapi__export_close(struct fv_clusterapi *c)
{
    while (c->xwaits)
        xwait_unlink_free(c->xwaits);
    while (c->xdls)
        xdl_unlink_free(c->xdls);
}
