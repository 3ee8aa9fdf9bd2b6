/* jsquery.c - the query API's internal requests over core NATS (jsquery.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "cluster/jsquery.h"
#include "cluster/natsconn.h"
#include "util/err.h"
#include "util/log.h"

#define SUBJECT_MAX 96
#define QUEUE_MAX   1024 /* requests waiting for the API thread; more are dropped */

struct fv_jsquery {
    struct fv_natsconn conn;
    char prefix[SUBJECT_MAX]; /* "fvq.STREAM.shard." */
    natsSubscription *sub;
    int (*holds)(void *arg, uint32_t shard);
    void *holds_arg;
    void (*wake)(void *arg);
    void *wake_arg;
    pthread_mutex_t mu; /* guards the queue and the calls (A2) */
    natsMsg *queue[QUEUE_MAX];
    size_t head, n;
    /* the asker without waiting (A1-A4) */
    natsInbox *inbox;
    natsSubscription *asub;
    void (*awake)(void *arg);
    void *awake_arg;
    struct fv_jsq_call *calls;
    size_t ncalls;
    uint64_t next_id;
};

/* A request to every shard in progress (A1-A2). */
struct fv_jsq_call {
    uint64_t id;
    uint32_t nshards;
    unsigned char *expect; /* per shard: an answer is asked for and not taken yet */
    natsMsg **got;         /* per shard: the answer kept, or NULL */
    struct fv_jsq_call *next;
};

/* Printable ASCII, no longer than max. */
static int field_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return 0;
    return 1;
}

int fv_jsquery_open(const struct fv_cluster_cfg *cfg, const char *name, struct fv_jsquery **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    struct fv_jsquery *q = calloc(1, sizeof *q);
    if (q == NULL) return FV_ENOMEM;
    snprintf(q->prefix, sizeof q->prefix, "fvq.%s.shard.", cfg->stream);
    if (pthread_mutex_init(&q->mu, NULL) != 0) {
        free(q);
        return FV_ENOMEM;
    }
    /* requests, pulls and answers each sent at once: nats.c's flusher would hold each up to
     * 1 ms (a fleet read's p50 through the api node 0.3-0.6 ms slower without) */
    int rc = fv_natsconn_connect(&q->conn, cfg, name, NULL, 5000, FV_NATS_SEND_ASAP, err, errlen);
    if (rc) {
        pthread_mutex_destroy(&q->mu);
        free(q);
        return rc;
    }
    *out = q;
    return FV_OK;
}

/* The shard a subject names, or -1. */
static long subject_shard(const struct fv_jsquery *q, const char *subject)
{
    size_t n = strlen(q->prefix);
    if (strncmp(subject, q->prefix, n) != 0) return -1;
    char *end;
    unsigned long v = strtoul(subject + n, &end, 10);
    if (end == subject + n || *end != '\0' || v >= FV_CLUSTER_MAX_SHARDS) return -1;
    return (long)v;
}

/* nats.c's subscription thread: queue what this node owns, drop the rest. */
static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    struct fv_jsquery *q = closure;
    long shard = subject_shard(q, natsMsg_GetSubject(msg));
    if (shard < 0 || natsMsg_GetReply(msg) == NULL || !q->holds(q->holds_arg, (uint32_t)shard)) {
        natsMsg_Destroy(msg);
        return;
    }
    pthread_mutex_lock(&q->mu);
    int queued = q->n < QUEUE_MAX;
    if (queued) q->queue[(q->head + q->n++) % QUEUE_MAX] = msg;
    pthread_mutex_unlock(&q->mu);
    if (!queued) {
        fv_warn("cluster: %zu queries wait already; one for shard %ld dropped (the asker "
                "times out)",
                (size_t)QUEUE_MAX, shard);
        natsMsg_Destroy(msg);
        return;
    }
    q->wake(q->wake_arg);
}

int fv_jsquery_serve(struct fv_jsquery *q, int (*holds)(void *arg, uint32_t shard), void *arg,
                     void (*wake)(void *arg), void *wake_arg, char *err, size_t errlen)
{
    q->holds = holds;
    q->holds_arg = arg;
    q->wake = wake;
    q->wake_arg = wake_arg;
    char subject[SUBJECT_MAX + 2];
    snprintf(subject, sizeof subject, "%s*", q->prefix);
    natsStatus s = natsConnection_Subscribe(&q->sub, q->conn.nc, subject, on_request, q);
    if (s == NATS_OK) s = natsConnection_Flush(q->conn.nc); /* the server has it */
    if (s != NATS_OK) {
        fv_seterr(err, errlen, "cluster: cannot subscribe to %s: %s", subject,
                  natsStatus_GetText(s));
        return FV_EIO;
    }
    return FV_OK;
}

/* A header's value copied into out (cap), "" when absent; 0 when too long or not printable. */
static int header(natsMsg *m, const char *key, char *out, size_t cap)
{
    const char *v = NULL;
    out[0] = '\0';
    if (natsMsgHeader_Get(m, key, &v) != NATS_OK || v == NULL) return 1;
    if (!field_ok(v, cap - 1)) return 0;
    memcpy(out, v, strlen(v) + 1);
    return 1;
}

/* J2: a piece's number, 1..UINT32_MAX. */
static int seq_of(const char *s, uint32_t *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (s[0] < '1' || s[0] > '9' || *end != '\0' || v > UINT32_MAX) return 0;
    *out = (uint32_t)v;
    return 1;
}

struct fv_jsq_req *fv_jsquery_next(struct fv_jsquery *q)
{
    char seq[16];
    for (;;) {
        pthread_mutex_lock(&q->mu);
        natsMsg *m = NULL;
        if (q->n) {
            m = q->queue[q->head];
            q->head = (q->head + 1) % QUEUE_MAX;
            q->n--;
        }
        pthread_mutex_unlock(&q->mu);
        if (m == NULL) return NULL;
        struct fv_jsq_req *r = calloc(1, sizeof *r);
        int len = natsMsg_GetDataLength(m);
        char *query = r ? malloc((size_t)(len > 0 ? len : 0) + 1) : NULL;
        if (query == NULL) {
            free(r);
            natsMsg_Destroy(m); /* the asker times out */
            continue;
        }
        if (len > 0) memcpy(query, natsMsg_GetData(m), (size_t)len);
        query[len > 0 ? len : 0] = '\0';
        r->query = query;
        r->msg = m;
        r->shard = (uint32_t)subject_shard(q, natsMsg_GetSubject(m));
        if (!header(m, "Fv-Method", r->method, sizeof r->method) ||
            !header(m, "Fv-Path", r->path, sizeof r->path) ||
            !header(m, "Fv-Principal", r->principal, sizeof r->principal) ||
            !header(m, "Fv-Role", r->role, sizeof r->role) ||
            !header(m, "Fv-Session", r->session, sizeof r->session) ||
            !header(m, "Fv-Seq", seq, sizeof seq) || r->method[0] == '\0' || r->path[0] == '\0' ||
            r->principal[0] == '\0' || r->role[0] == '\0' ||
            strlen(query) != (size_t)(len > 0 ? len : 0) ||
            (r->session[0] && !seq_of(seq, &r->seq))) {
            static const char bad[] = "{\"error\":\"malformed cluster query request\"}\n";
            fv_jsquery_answer(q, r, 400, "application/json", 1, NULL, bad, sizeof bad - 1);
            continue;
        }
        return r;
    }
}

void fv_jsquery_drop(struct fv_jsq_req *r)
{
    if (r == NULL) return;
    natsMsg_Destroy(r->msg);
    free(r->query);
    free(r);
}

size_t fv_jsquery_chunk_max(struct fv_jsquery *q)
{
    int64_t max = natsConnection_GetMaxPayload(q->conn.nc);
    if (max <= 0) max = 1 << 20; /* not connected: nats-server's default */
    size_t n = max > 2048 ? (size_t)max - 1024 : (size_t)max / 2;
    return n < FV_JSQ_CHUNK_CAP ? n : FV_JSQ_CHUNK_CAP;
}

int fv_jsquery_answer(struct fv_jsquery *q, struct fv_jsq_req *r, int status,
                      const char *content_type, int here, const char *more, const void *body,
                      size_t len)
{
    static const char big[] = "{\"error\":\"an answer's piece is larger than one NATS message "
                              "(the server's max_payload)\"}\n";
    if (len > fv_jsquery_chunk_max(q)) { /* the caller cuts its answer to size (J1) */
        status = 507;
        content_type = "application/json";
        body = big;
        len = sizeof big - 1;
        more = NULL;
    }
    natsMsg *m = NULL;
    char st[16];
    snprintf(st, sizeof st, "%d", status);
    natsStatus s = natsMsg_Create(&m, natsMsg_GetReply(r->msg), NULL, body, (int)len);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Fv-Status", st);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Fv-Type", content_type ? content_type : "application/json");
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Fv-Here", here ? "1" : "0");
    if (s == NATS_OK && more && more[0]) s = natsMsgHeader_Set(m, "Fv-More", more);
    if (s == NATS_OK) s = natsConnection_PublishMsg(q->conn.nc, m);
    natsMsg_Destroy(m);
    if (s != NATS_OK)
        fv_warn("cluster: the answer to a query of shard %u was not sent: %s", r->shard,
                natsStatus_GetText(s));
    fv_jsquery_drop(r);
    return s == NATS_OK ? FV_OK : FV_EIO;
}

/* One answer into a (its shard's). */
static void take_answer(natsMsg *reply, struct fv_jsq_answer *a)
{
    if (natsMsg_IsNoResponders(reply)) {
        a->rc = FV_ENOENT;
        return;
    }
    char st[16], hr[4];
    int ok = header(reply, "Fv-Status", st, sizeof st) &&
             header(reply, "Fv-Type", a->type, sizeof a->type) &&
             header(reply, "Fv-Here", hr, sizeof hr) &&
             header(reply, "Fv-More", a->more, sizeof a->more);
    a->status = ok ? atoi(st) : 0;
    a->here = strcmp(hr, "1") == 0;
    if (!ok || a->status < 100 || a->status > 599 || a->type[0] == '\0') {
        a->rc = FV_EIO;
        return;
    }
    int len = natsMsg_GetDataLength(reply);
    fv_buf_reset(&a->body);
    a->rc = len > 0 && fv_buf_append(&a->body, natsMsg_GetData(reply), (size_t)len) != FV_OK
                ? FV_ENOMEM
                : FV_OK;
}

/* ---- the asker without waiting (A1-A4) ---------------------------------------------------- */

/* nats.c's thread: an answer for a call, kept if asked for (A2), the API thread woken (A3). */
static void on_answer(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    struct fv_jsquery *q = closure;
    const char *subj = natsMsg_GetSubject(msg);
    size_t plen = strlen((const char *)q->inbox);
    char *end = NULL, *end2 = NULL;
    unsigned long long id = 0;
    unsigned long shard = 0;
    int kept = 0;
    if (strlen(subj) > plen + 1 && subj[plen] == '.') {
        id = strtoull(subj + plen + 1, &end, 10);
        if (end && *end == '.') shard = strtoul(end + 1, &end2, 10);
    }
    if (end2 && *end2 == '\0') {
        pthread_mutex_lock(&q->mu);
        struct fv_jsq_call *c = q->calls;
        while (c && c->id != id)
            c = c->next;
        if (c && shard < c->nshards && c->expect[shard] && c->got[shard] == NULL) {
            c->got[shard] = msg;
            kept = 1;
        }
        pthread_mutex_unlock(&q->mu);
    }
    if (!kept) {
        natsMsg_Destroy(msg);
        return;
    }
    q->awake(q->awake_arg);
}

int fv_jsquery_ask_async(struct fv_jsquery *q, void (*wake)(void *arg), void *wake_arg, char *err,
                         size_t errlen)
{
    q->awake = wake;
    q->awake_arg = wake_arg;
    char wild[128];
    natsStatus s = natsInbox_Create(&q->inbox);
    if (s == NATS_OK) {
        snprintf(wild, sizeof wild, "%s.*.*", (const char *)q->inbox);
        s = natsConnection_Subscribe(&q->asub, q->conn.nc, wild, on_answer, q);
    }
    if (s == NATS_OK) s = natsConnection_Flush(q->conn.nc); /* the server has it */
    if (s != NATS_OK) {
        fv_seterr(err, errlen, "cluster: cannot subscribe to the answers' inbox: %s",
                  natsStatus_GetText(s));
        return FV_EIO;
    }
    return FV_OK;
}

/* Publishes one request (J2's pull when session is set) with its answer to reply_to. */
static natsStatus send_request(struct fv_jsquery *q, uint32_t shard, const char *reply_to,
                               const char *method, const char *path, const char *principal,
                               const char *role, const char *session, uint32_t seq,
                               const char *query)
{
    char subject[SUBJECT_MAX + 16], sq[16];
    snprintf(subject, sizeof subject, "%s%u", q->prefix, shard);
    snprintf(sq, sizeof sq, "%u", seq);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, reply_to, query, (int)strlen(query));
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Fv-Method", method);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Fv-Path", path);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Fv-Principal", principal);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Fv-Role", role);
    if (s == NATS_OK && session) s = natsMsgHeader_Set(m, "Fv-Session", session);
    if (s == NATS_OK && session) s = natsMsgHeader_Set(m, "Fv-Seq", sq);
    if (s == NATS_OK) s = natsConnection_PublishMsg(q->conn.nc, m);
    natsMsg_Destroy(m);
    return s;
}

static void call_free(struct fv_jsq_call *c)
{
    for (uint32_t i = 0; c->got && i < c->nshards; i++)
        natsMsg_Destroy(c->got[i]);
    free(c->got);
    free(c->expect);
    free(c);
}

int fv_jsquery_call_open(struct fv_jsquery *q, uint32_t nshards, struct fv_jsq_call **out,
                         char *err, size_t errlen)
{
    *out = NULL;
    if (q->asub == NULL) {
        fv_seterr(err, errlen, "not an asker (fv_jsquery_ask_async)");
        return FV_EIO;
    }
    struct fv_jsq_call *c = calloc(1, sizeof *c);
    if (c == NULL || (c->expect = calloc(nshards, 1)) == NULL ||
        (c->got = calloc(nshards, sizeof *c->got)) == NULL) {
        if (c) call_free(c);
        return FV_ENOMEM;
    }
    c->nshards = nshards; /* expects nothing until asked (fv_jsquery_call_ask) */
    pthread_mutex_lock(&q->mu);
    int full = q->ncalls >= FV_JSQ_CALLS_MAX;
    if (!full) {
        c->id = ++q->next_id;
        c->next = q->calls;
        q->calls = c;
        q->ncalls++;
    }
    pthread_mutex_unlock(&q->mu);
    if (full) {
        call_free(c);
        fv_seterr(err, errlen, "%d requests wait for the shards' owners already", FV_JSQ_CALLS_MAX);
        return FV_ELIMIT;
    }
    *out = c;
    return FV_OK;
}

int fv_jsquery_call_ask(struct fv_jsquery *q, struct fv_jsq_call *call, uint32_t shard,
                        const char *method, const char *path, const char *query,
                        const char *principal, const char *role, char *err, size_t errlen)
{
    if (!field_ok(method, 15) || !field_ok(path, FV_JSQ_FIELD_MAX) || !field_ok(principal, 64) ||
        !field_ok(role, 31) || shard >= call->nshards) {
        fv_seterr(err, errlen, "a request field is too long or not printable");
        return FV_EINVAL;
    }
    pthread_mutex_lock(&q->mu);
    natsMsg_Destroy(call->got[shard]); /* an answer not taken: not the one asked for now */
    call->got[shard] = NULL;
    call->expect[shard] = 1;
    pthread_mutex_unlock(&q->mu);
    char reply_to[160];
    snprintf(reply_to, sizeof reply_to, "%s.%llu.%u", (const char *)q->inbox,
             (unsigned long long)call->id, shard);
    natsStatus s = send_request(q, shard, reply_to, method, path, principal, role, NULL, 0,
                                query ? query : "");
    if (s != NATS_OK) {
        fv_seterr(err, errlen, "NATS: %s", natsStatus_GetText(s));
        return FV_EIO;
    }
    return FV_OK;
}

int fv_jsquery_call_start(struct fv_jsquery *q, uint32_t nshards, const char *method,
                          const char *path, const char *query, const char *principal,
                          const char *role, struct fv_jsq_call **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!field_ok(method, 15) || !field_ok(path, FV_JSQ_FIELD_MAX) || !field_ok(principal, 64) ||
        !field_ok(role, 31)) {
        fv_seterr(err, errlen, "a request field is too long or not printable");
        return FV_EINVAL;
    }
    struct fv_jsq_call *c = NULL;
    int rc = fv_jsquery_call_open(q, nshards, &c, err, errlen);
    for (uint32_t i = 0; rc == FV_OK && i < nshards; i++)
        rc = fv_jsquery_call_ask(q, c, i, method, path, query, principal, role, err, errlen);
    if (rc != FV_OK) {
        fv_jsquery_call_end(q, c);
        return rc;
    }
    *out = c;
    return FV_OK;
}

int fv_jsquery_call_pull(struct fv_jsquery *q, struct fv_jsq_call *call, uint32_t shard,
                         const char *method, const char *path, const char *principal,
                         const char *role, const char *session, uint32_t seq, char *err,
                         size_t errlen)
{
    if (!field_ok(method, 15) || !field_ok(path, FV_JSQ_FIELD_MAX) || !field_ok(principal, 64) ||
        !field_ok(role, 31) || !field_ok(session, FV_JSQ_ID_LEN) || seq == 0 ||
        shard >= call->nshards) {
        fv_seterr(err, errlen, "a request field is too long or not printable");
        return FV_EINVAL;
    }
    pthread_mutex_lock(&q->mu);
    natsMsg_Destroy(call->got[shard]); /* an answer not taken: not the one asked for now */
    call->got[shard] = NULL;
    call->expect[shard] = 1;
    pthread_mutex_unlock(&q->mu);
    char reply_to[160];
    snprintf(reply_to, sizeof reply_to, "%s.%llu.%u", (const char *)q->inbox,
             (unsigned long long)call->id, shard);
    natsStatus s =
        send_request(q, shard, reply_to, method, path, principal, role, session, seq, "");
    if (s != NATS_OK) {
        fv_seterr(err, errlen, "NATS: %s", natsStatus_GetText(s));
        return FV_EIO;
    }
    return FV_OK;
}

int fv_jsquery_call_take(struct fv_jsquery *q, struct fv_jsq_call *call, uint32_t shard,
                         struct fv_jsq_answer *a)
{
    if (shard >= call->nshards) return 0;
    pthread_mutex_lock(&q->mu);
    natsMsg *m = call->got[shard];
    if (m) {
        call->got[shard] = NULL;
        call->expect[shard] = 0;
    }
    pthread_mutex_unlock(&q->mu);
    if (m == NULL) return 0;
    a->rc = FV_EIO;
    a->status = a->here = 0;
    a->type[0] = a->more[0] = '\0';
    fv_buf_reset(&a->body);
    take_answer(m, a);
    natsMsg_Destroy(m);
    return 1;
}

void fv_jsquery_call_end(struct fv_jsquery *q, struct fv_jsq_call *call)
{
    if (call == NULL) return;
    pthread_mutex_lock(&q->mu);
    for (struct fv_jsq_call **pp = &q->calls; *pp; pp = &(*pp)->next)
        if (*pp == call) {
            *pp = call->next;
            q->ncalls--;
            break;
        }
    pthread_mutex_unlock(&q->mu);
    call_free(call);
}

void fv_jsquery_close(struct fv_jsquery *q)
{
    if (q == NULL) return;
    if (q->sub) {
        natsSubscription_Unsubscribe(q->sub);
        natsSubscription_Destroy(q->sub); /* waits for its callback to return */
    }
    if (q->asub) {
        natsSubscription_Unsubscribe(q->asub);
        natsSubscription_Destroy(q->asub);
    }
    fv_natsconn_close(&q->conn);
    while (q->calls) { /* their owner ended them first; none is left but by a bug */
        struct fv_jsq_call *c = q->calls;
        q->calls = c->next;
        call_free(c);
    }
    natsInbox_Destroy(q->inbox);
    for (size_t i = 0; i < q->n; i++)
        natsMsg_Destroy(q->queue[(q->head + i) % QUEUE_MAX]);
    pthread_mutex_destroy(&q->mu);
    free(q);
}
