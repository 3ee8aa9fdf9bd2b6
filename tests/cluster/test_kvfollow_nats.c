/* test_kvfollow_nats.c - cluster/kvfollow.h against a real nats-server (started here on a
 * free port, JetStream in a temporary directory): the bucket's current state in sequence
 * (history 1: a key's latest revision only; delete and purge markers as such) by direct gets
 * and through a watcher (F4), then each change as it is stored, woken by the write (F3);
 * nothing returned twice; and across a server restart the follower goes on from the same
 * sequence (F2). */
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
#include "cluster/kvfollow.h"
#include "cluster/natsconn.h"
#include "util/clock.h"
#include "util/err.h"

#define BUCKET "fv-follow-test"

static struct fv_test_nats nats;
static struct fv_cluster_cfg cfg;

static int setup(void **state)
{
    (void)state;
    if (fv_test_nats_setup(&nats, "kvfollow") != 0) return -1;
    memset(&cfg, 0, sizeof cfg);
    cfg.enabled = 1;
    snprintf(cfg.urls[0], sizeof cfg.urls[0], "nats://127.0.0.1:%d", nats.port);
    cfg.nurls = 1;
    cfg.replicas = 1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return fv_test_nats_teardown(&nats);
}

static void put(kvStore *kv, const char *key, const char *value)
{
    uint64_t rev = 0;
    assert_int_equal(kvStore_PutString(&rev, kv, key, value), NATS_OK);
}

/* The next entry, expected to be key/op (value for a put), waiting up to wait_ms. */
static uint64_t expect(struct fv_kvfollow *f, const char *key, enum fv_kvop op, const char *value,
                       int64_t wait_ms)
{
    struct fv_kventry e;
    char err[256] = "";
    int rc = fv_kvfollow_next(f, &e, wait_ms, err, sizeof err);
    if (rc != FV_OK) fail_msg("expected %s, got %d (%s)", key, rc, err);
    assert_string_equal(e.key, key);
    assert_int_equal(e.op, op);
    if (value) {
        assert_int_equal(e.len, strlen(value));
        assert_memory_equal(e.value, value, e.len);
    } else {
        assert_int_equal(e.len, 0);
    }
    assert_int_equal(e.revision, fv_kvfollow_position(f));
    return e.revision;
}

static void expect_none(struct fv_kvfollow *f, int64_t wait_ms)
{
    struct fv_kventry e;
    char err[256] = "";
    assert_int_equal(fv_kvfollow_next(f, &e, wait_ms, err, sizeof err), FV_ENOENT);
}

struct later {
    kvStore *kv;
    const char *key, *value;
};

static void *put_later(void *arg)
{
    struct later *l = arg;
    usleep(300000);
    uint64_t rev = 0;
    kvStore_PutString(&rev, l->kv, l->key, l->value);
    return NULL;
}

static void follows_in_sequence(void **state)
{
    (void)state;
    struct fv_natsconn c = {0};
    char err[512];
    assert_int_equal(fv_natsconn_connect(&c, &cfg, "kvfollow-test", NULL, 2000, 1, err, sizeof err),
                     FV_OK);
    kvStore *kv = NULL;
    assert_int_equal(fv_natsconn_bucket(&c, BUCKET, "test", 1, &kv, err, sizeof err), FV_OK);

    /* the state before the follower: a rewritten, b deleted, c purged */
    put(kv, "a", "a1");
    put(kv, "b", "b1");
    put(kv, "a", "a2");
    put(kv, "c", "c1");
    assert_int_equal(kvStore_Purge(kv, "c", NULL), NATS_OK);
    assert_int_equal(kvStore_Delete(kv, "b"), NATS_OK);

    /* F1: the current state, in sequence: a's latest (3), c's marker (5), b's marker (6);
     * by direct gets alone (4: three found, one past the end), and with the bucket given (F4:
     * the state pushed by a watcher, then one direct get past its end) */
    struct fv_kvfollow *f = NULL, *direct = NULL;
    uint64_t gets = 0, hints = 0;
    assert_int_equal(fv_kvfollow_open(c.nc, c.js, NULL, BUCKET, &direct, err, sizeof err), FV_OK);
    assert_int_equal(expect(direct, "a", FV_KV_PUT, "a2", 0), 3);
    assert_int_equal(expect(direct, "c", FV_KV_PURGE, NULL, 0), 5);
    assert_int_equal(expect(direct, "b", FV_KV_DEL, NULL, 0), 6);
    expect_none(direct, 0);
    fv_kvfollow_counts(direct, &gets, &hints);
    assert_int_equal(gets, 4);
    fv_kvfollow_close(direct);
    assert_int_equal(fv_kvfollow_open(c.nc, c.js, kv, BUCKET, &f, err, sizeof err), FV_OK);
    assert_int_equal(fv_kvfollow_position(f), 0);
    assert_int_equal(expect(f, "a", FV_KV_PUT, "a2", 0), 3);
    assert_int_equal(expect(f, "c", FV_KV_PURGE, NULL, 0), 5);
    assert_int_equal(expect(f, "b", FV_KV_DEL, NULL, 0), 6);
    expect_none(f, 0);
    fv_kvfollow_counts(f, &gets, &hints);
    assert_int_equal(gets, 1);
    expect_none(f, 50);

    /* changes as they come; a wait ends with the write (F3), long before its end */
    put(kv, "d", "d1");
    put(kv, "a", "a3");
    expect(f, "d", FV_KV_PUT, "d1", 0);
    expect(f, "a", FV_KV_PUT, "a3", 0);
    expect_none(f, 0);
    struct later l = {kv, "e", "e1"};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, put_later, &l), 0);
    uint64_t t0 = fv_mono_ns();
    expect(f, "e", FV_KV_PUT, "e1", 30000);
    uint64_t waited_ms = (fv_mono_ns() - t0) / 1000000u;
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(waited_ms < 20000); /* woken by the write, not by the end of the wait */
    fv_kvfollow_counts(f, &gets, &hints);
    assert_true(hints >= 1);
    assert_true(gets >= 5);

    /* F2: the server restarts; requests fail meanwhile, and the follower goes on from where
     * it was: only what was written after, once each */
    uint64_t pos = fv_kvfollow_position(f);
    fv_test_nats_stop(&nats);
    struct fv_kventry e;
    assert_int_equal(fv_kvfollow_next(f, &e, 0, err, sizeof err), FV_EIO);
    assert_non_null(strstr(err, BUCKET));
    assert_int_equal(fv_kvfollow_position(f), pos);
    assert_int_equal(fv_test_nats_start(&nats), 0);
    uint64_t rev = 0;
    natsStatus st = NATS_TIMEOUT;
    for (int i = 0; i < 100 && st != NATS_OK; i++) { /* nats.c reconnecting */
        st = kvStore_PutString(&rev, kv, "f", "f1");
        if (st != NATS_OK) usleep(100000);
    }
    assert_int_equal(st, NATS_OK);
    int rc = FV_EIO;
    for (int i = 0; i < 100 && rc == FV_EIO; i++)
        rc = fv_kvfollow_next(f, &e, 100, err, sizeof err);
    assert_int_equal(rc, FV_OK);
    assert_string_equal(e.key, "f");
    assert_int_equal(e.revision, rev);
    expect_none(f, 0);

    fv_kvfollow_close(f);
    fv_kvfollow_close(NULL);
    kvStore_Destroy(kv);
    fv_natsconn_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(follows_in_sequence),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    nats_Close();
    return rc;
}
