/* test_jsquery_nats.c - cluster/jsquery.h's asker without waiting (A1-A4) against a real
 * nats-server (started here on a free port): a request sent to every shard at once, the
 * answer of the shard whose owner holds it kept and the API thread woken (A3); a piece
 * pulled the same way (J2); nothing from a shard no owner holds; an answer for a call already
 * ended dropped, without a wake; no responders per shard; at most FV_JSQ_CALLS_MAX calls; a
 * call asking one shard at a time (fv_jsquery_call_open, _ask).
 * J5: a request made with another master key is not answered (nor seen by the owner's API
 * thread), and a NATS subscriber to fvq.> and to the asker's inbox sees no path, principal,
 * query or answer body in clear. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "../support/natsserver.h"
#include "cluster/jsquery.h"
#include "util/err.h"

static struct fv_test_nats nats;
static struct fv_cluster_cfg cfg;
static struct fv_kek kek, other_kek;
static int wakes; /* atomic: the asker's wake callback */

static int setup(void **state)
{
    (void)state;
    if (fv_test_nats_setup(&nats, "jsquery") != 0) return -1;
    memset(&cfg, 0, sizeof cfg);
    cfg.enabled = 1;
    snprintf(cfg.urls[0], sizeof cfg.urls[0], "nats://127.0.0.1:%d", nats.port);
    cfg.nurls = 1;
    cfg.replicas = 1;
    snprintf(cfg.stream, sizeof cfg.stream, "FVTEST");
    memset(&kek, 7, sizeof kek);
    snprintf(kek.id, sizeof kek.id, "0707070701020304");
    kek.prev_id[0] = '\0';
    memset(&other_kek, 9, sizeof other_kek);
    snprintf(other_kek.id, sizeof other_kek.id, "0909090901020304");
    other_kek.prev_id[0] = '\0';
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return fv_test_nats_teardown(&nats);
}

static int holds_shard0(void *arg, uint32_t shard)
{
    (void)arg;
    return shard == 0;
}

static void nop(void *arg)
{
    (void)arg;
}

static void count_wake(void *arg)
{
    __atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST);
}

/* The owner's next request, waiting up to 5 s. */
static struct fv_jsq_req *next_req(struct fv_jsquery *owner)
{
    for (int i = 0; i < 500; i++) {
        struct fv_jsq_req *r = fv_jsquery_next(owner);
        if (r) return r;
        usleep(10000);
    }
    fail_msg("no request reached the owner");
    return NULL;
}

/* The asker's answer for shard, waiting up to 5 s. */
static void take(struct fv_jsquery *q, struct fv_jsq_call *c, uint32_t shard,
                 struct fv_jsq_answer *a)
{
    for (int i = 0; i < 500; i++) {
        if (fv_jsquery_call_take(q, c, shard, a)) return;
        usleep(10000);
    }
    fail_msg("no answer for shard %u", shard);
}

static void asks_without_waiting(void **state)
{
    (void)state;
    char err[256] = "";
    struct fv_jsquery *owner = NULL, *asker = NULL, *lost = NULL;
    assert_int_equal(fv_jsquery_open(&cfg, &kek, "owner", &owner, err, sizeof err), FV_OK);
    assert_int_equal(fv_jsquery_serve(owner, holds_shard0, NULL, nop, NULL, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_jsquery_open(&cfg, &kek, "asker", &asker, err, sizeof err), FV_OK);
    assert_int_equal(fv_jsquery_ask_async(asker, count_wake, &wakes, err, sizeof err), FV_OK);

    struct fv_jsq_call *c = NULL;
    assert_int_equal(fv_jsquery_call_start(asker, 2, "GET", "/api/v1/fleet", "signal=Soc", "ops",
                                           "ops", &c, err, sizeof err),
                     FV_OK);
    struct fv_jsq_req *r = next_req(owner);
    assert_int_equal(r->shard, 0);
    assert_string_equal(r->path, "/api/v1/fleet");
    assert_string_equal(r->query, "signal=Soc");
    assert_string_equal(r->principal, "ops");
    assert_int_equal(r->seq, 0);
    static const char more[] = "0123456789abcdef0123456789abcdef";
    assert_int_equal(fv_jsquery_answer(owner, r, 200, "application/json", 1, more, "first", 5),
                     FV_OK);
    struct fv_jsq_answer a;
    memset(&a, 0, sizeof a);
    take(asker, c, 0, &a);
    assert_true(__atomic_load_n(&wakes, __ATOMIC_SEQ_CST) >= 1); /* A3 */
    assert_int_equal(a.rc, FV_OK);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.here, 1);
    assert_string_equal(a.type, "application/json");
    assert_string_equal(a.more, more);
    assert_int_equal(a.body.len, 5);
    assert_memory_equal(a.body.data, "first", 5);
    /* taken once (A2); shard 1 has no owner: its request was dropped, nothing comes */
    assert_int_equal(fv_jsquery_call_take(asker, c, 0, &a), 0);
    usleep(100000);
    assert_int_equal(fv_jsquery_call_take(asker, c, 1, &a), 0);
    assert_null(fv_jsquery_next(owner));

    /* J2 without waiting: the next piece comes to the same call */
    assert_int_equal(fv_jsquery_call_pull(asker, c, 0, "GET", "/api/v1/fleet", "ops", "ops", more,
                                          1, err, sizeof err),
                     FV_OK);
    r = next_req(owner);
    assert_string_equal(r->session, more);
    assert_int_equal(r->seq, 1);
    assert_int_equal(fv_jsquery_answer(owner, r, 200, "application/json", 1, NULL, "last", 4),
                     FV_OK);
    take(asker, c, 0, &a);
    assert_int_equal(a.rc, FV_OK);
    assert_string_equal(a.more, "");
    assert_memory_equal(a.body.data, "last", 4);
    fv_jsquery_call_end(asker, c);

    /* A call that asks one shard at a time (a bulk export's download, clusterapi.h Q11):
     * nothing is sent until asked, then to that shard only; its answer comes to the call */
    assert_int_equal(fv_jsquery_call_open(asker, 2, &c, err, sizeof err), FV_OK);
    usleep(100000);
    assert_null(fv_jsquery_next(owner));
    assert_int_equal(fv_jsquery_call_take(asker, c, 0, &a), 0);
    assert_int_equal(fv_jsquery_call_ask(asker, c, 0, "GET", "/rows", "lo=0&hi=3", "ops", "ops",
                                         err, sizeof err),
                     FV_OK);
    r = next_req(owner);
    assert_int_equal(r->shard, 0);
    assert_string_equal(r->path, "/rows");
    assert_string_equal(r->query, "lo=0&hi=3");
    assert_int_equal(r->seq, 0);
    assert_int_equal(fv_jsquery_answer(owner, r, 200, "text/csv", 1, NULL, "a,1\n", 4), FV_OK);
    take(asker, c, 0, &a);
    assert_int_equal(a.rc, FV_OK);
    assert_string_equal(a.type, "text/csv");
    assert_memory_equal(a.body.data, "a,1\n", 4);
    assert_int_equal(
        fv_jsquery_call_ask(asker, c, 2, "GET", "/rows", "", "ops", "ops", err, sizeof err),
        FV_EINVAL); /* past the call's shards */
    fv_jsquery_call_end(asker, c);

    /* An answer for a call already ended is dropped, without a wake (A2) */
    assert_int_equal(
        fv_jsquery_call_start(asker, 1, "GET", "/x", NULL, "ops", "ops", &c, err, sizeof err),
        FV_OK);
    r = next_req(owner);
    fv_jsquery_call_end(asker, c);
    int before = __atomic_load_n(&wakes, __ATOMIC_SEQ_CST);
    assert_int_equal(fv_jsquery_answer(owner, r, 200, "text/plain", 1, NULL, "late", 4), FV_OK);
    usleep(200000);
    assert_int_equal(__atomic_load_n(&wakes, __ATOMIC_SEQ_CST), before);

    /* A field not printable: refused before anything is sent */
    assert_int_equal(
        fv_jsquery_call_start(asker, 1, "GET", "/x\n", NULL, "ops", "ops", &c, err, sizeof err),
        FV_EINVAL);
    assert_null(c);

    /* A4: at most FV_JSQ_CALLS_MAX calls at once */
    struct fv_jsq_call *calls[FV_JSQ_CALLS_MAX];
    for (int i = 0; i < FV_JSQ_CALLS_MAX; i++)
        assert_int_equal(fv_jsquery_call_start(asker, 1, "GET", "/x", NULL, "ops", "ops", &calls[i],
                                               err, sizeof err),
                         FV_OK);
    assert_int_equal(
        fv_jsquery_call_start(asker, 1, "GET", "/x", NULL, "ops", "ops", &c, err, sizeof err),
        FV_ELIMIT);
    for (int i = 0; i < FV_JSQ_CALLS_MAX; i++)
        fv_jsquery_call_end(asker, calls[i]);
    while ((r = fv_jsquery_next(owner)) != NULL) /* their requests, unanswered */
        fv_jsquery_drop(r);

    /* No responders (no node serves this stream's subjects): said per shard */
    struct fv_cluster_cfg other = cfg;
    snprintf(other.stream, sizeof other.stream, "NOBODY");
    assert_int_equal(fv_jsquery_open(&other, &kek, "lost", &lost, err, sizeof err), FV_OK);
    assert_int_equal(fv_jsquery_ask_async(lost, nop, NULL, err, sizeof err), FV_OK);
    assert_int_equal(
        fv_jsquery_call_start(lost, 2, "GET", "/x", NULL, "ops", "ops", &c, err, sizeof err),
        FV_OK);
    take(lost, c, 0, &a);
    assert_int_equal(a.rc, FV_ENOENT);
    take(lost, c, 1, &a);
    assert_int_equal(a.rc, FV_ENOENT);
    fv_jsquery_call_end(lost, c);
    fv_jsquery_call_end(lost, NULL);

    fv_buf_free(&a.body);
    fv_jsquery_close(lost);
    fv_jsquery_close(asker);
    fv_jsquery_close(owner);
}

/* A plain NATS subscriber's messages, all kept (nats.c's thread). */
struct spy {
    pthread_mutex_t mu;
    struct fv_buf all;
    int n;
};

static void on_spy(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    struct spy *s = closure;
    pthread_mutex_lock(&s->mu);
    fv_buf_append(&s->all, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    s->n++;
    pthread_mutex_unlock(&s->mu);
    natsMsg_Destroy(msg);
}

static void sealed_requests_and_answers(void **state)
{
    (void)state;
    char err[256] = "";
    struct spy spy = {PTHREAD_MUTEX_INITIALIZER, {0}, 0};
    natsConnection *nc = NULL;
    natsSubscription *s1 = NULL, *s2 = NULL;
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", nats.port);
    assert_int_equal(natsConnection_ConnectTo(&nc, url), NATS_OK);
    assert_int_equal(natsConnection_Subscribe(&s1, nc, "fvq.>", on_spy, &spy), NATS_OK);
    assert_int_equal(natsConnection_Subscribe(&s2, nc, "_INBOX.>", on_spy, &spy), NATS_OK);
    assert_int_equal(natsConnection_Flush(nc), NATS_OK);

    struct fv_jsquery *owner = NULL, *asker = NULL, *intruder = NULL;
    assert_int_equal(fv_jsquery_open(&cfg, &kek, "owner", &owner, err, sizeof err), FV_OK);
    assert_int_equal(fv_jsquery_serve(owner, holds_shard0, NULL, nop, NULL, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_jsquery_open(&cfg, &kek, "asker", &asker, err, sizeof err), FV_OK);
    assert_int_equal(fv_jsquery_ask_async(asker, nop, NULL, err, sizeof err), FV_OK);
    assert_int_equal(fv_jsquery_open(&cfg, &other_kek, "intruder", &intruder, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_jsquery_ask_async(intruder, nop, NULL, err, sizeof err), FV_OK);

    /* another master key: the owner's API thread never sees the request, nothing answers */
    struct fv_jsq_call *c = NULL;
    assert_int_equal(fv_jsquery_call_start(intruder, 1, "GET", "/api/v1/query",
                                           "device=5YJ3SECRETVIN0001", "privacy-officer",
                                           "privacy-officer", &c, err, sizeof err),
                     FV_OK);
    struct fv_jsq_answer a;
    memset(&a, 0, sizeof a);
    usleep(300000);
    assert_null(fv_jsquery_next(owner));
    assert_int_equal(fv_jsquery_call_take(intruder, c, 0, &a), 0);
    fv_jsquery_call_end(intruder, c);

    /* this cluster's key: answered, and nothing of it in clear on NATS */
    assert_int_equal(fv_jsquery_call_start(asker, 1, "GET", "/api/v1/query",
                                           "device=5YJ3SECRETVIN0002", "paula", "privacy-officer",
                                           &c, err, sizeof err),
                     FV_OK);
    struct fv_jsq_req *r = next_req(owner);
    assert_string_equal(r->query, "device=5YJ3SECRETVIN0002");
    assert_string_equal(r->principal, "paula");
    assert_int_equal(fv_jsquery_answer(owner, r, 200, "application/json", 1, NULL,
                                       "{\"speed\":\"SECRETBODY\"}", 22),
                     FV_OK);
    take(asker, c, 0, &a);
    assert_int_equal(a.rc, FV_OK);
    assert_int_equal(a.status, 200);
    assert_memory_equal(a.body.data, "{\"speed\":\"SECRETBODY\"}", 22);
    fv_jsquery_call_end(asker, c);
    assert_int_equal(natsConnection_Flush(nc), NATS_OK);
    usleep(100000);
    pthread_mutex_lock(&spy.mu);
    assert_true(spy.n >= 3); /* both requests and the answer */
    assert_null(memmem(spy.all.data, spy.all.len, "SECRETVIN", 9));
    assert_null(memmem(spy.all.data, spy.all.len, "paula", 5));
    assert_null(memmem(spy.all.data, spy.all.len, "/api/v1/query", 13));
    assert_null(memmem(spy.all.data, spy.all.len, "SECRETBODY", 10));
    pthread_mutex_unlock(&spy.mu);

    fv_buf_free(&a.body);
    fv_buf_free(&spy.all);
    natsSubscription_Destroy(s1);
    natsSubscription_Destroy(s2);
    natsConnection_Destroy(nc);
    fv_jsquery_close(intruder);
    fv_jsquery_close(asker);
    fv_jsquery_close(owner);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(asks_without_waiting),
        cmocka_unit_test(sealed_requests_and_answers),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    nats_Close();
    return rc;
}
