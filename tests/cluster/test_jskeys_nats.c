/* test_jskeys_nats.c - cluster/jskeys.h against a real nats-server (started here on a free
 * port, JetStream in a temporary directory): two "nodes" share the pseudonym key and data
 * keys (J1, the race played out deterministically: the other node creates between this
 * one's read and its create), an erased entry can never be made again (J2), the watcher
 * reports erasures, those of the bucket's current state included and after the server
 * restarted, and destroys them in the node's catalog (J3), and a bad value in the bucket is refused
 * (J4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "cluster/jskeys.h"
#include "../support/natsserver.h"
#include "util/err.h"

static struct fv_test_nats nats;
static struct fv_cluster_cfg cfg;

static void restart_server(void)
{
    fv_test_nats_stop(&nats);
    assert_int_equal(fv_test_nats_start(&nats), 0);
}

static int setup(void **state)
{
    (void)state;
    if (fv_test_nats_setup(&nats, "jskeys") != 0) return -1;
    memset(&cfg, 0, sizeof cfg);
    cfg.enabled = 1;
    snprintf(cfg.urls[0], sizeof cfg.urls[0], "nats://127.0.0.1:%d", nats.port);
    cfg.nurls = 1;
    cfg.replicas = 1;
    snprintf(cfg.keys_bucket, sizeof cfg.keys_bucket, "fv-keys-test");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return fv_test_nats_teardown(&nats);
}

static void kek_of(struct fv_kek *k)
{
    memset(k, 0, sizeof *k);
    memset(k->key, 0x5c, FV_KEY_LEN);
    snprintf(k->id, sizeof k->id, "5c5c5c5c01020304");
}

static const char P1[] = "11111111111111111111111111111111";
static const char P2[] = "22222222222222222222222222222222";
static const char P3[] = "33333333333333333333333333333333";
static const char P4[] = "44444444444444444444444444444444";
static const char P5[] = "55555555555555555555555555555555";

struct race {
    struct fv_jskeys *other;
    unsigned char dek[FV_KEY_LEN];
    int ran;
};

/* Inside node 1's create, after its read found nothing: node 2 makes the entry. */
static void other_node_first(void *arg)
{
    struct race *r = arg;
    struct fv_keysource s2 = fv_jskeys_source(r->other);
    char name[FV_NAME_MAX + 1] = "VIN2";
    assert_int_equal(s2.subject(s2.arg, P2, 1, r->dek, name), FV_OK);
    r->ran++;
}

static int changes;
static void changed(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&changes, 1, __ATOMIC_SEQ_CST);
}

static void two_nodes(void **state)
{
    (void)state;
    struct fv_kek kek;
    kek_of(&kek);
    struct fv_jskeys *n1, *n2;
    char err[512];
    assert_int_equal(fv_jskeys_open(&cfg, &kek, &n1, err, sizeof err), FV_OK);
    assert_int_equal(fv_jskeys_open(&cfg, &kek, &n2, err, sizeof err), FV_OK);
    struct fv_keysource s1 = fv_jskeys_source(n1), s2 = fv_jskeys_source(n2);

    /* the pseudonym key: the first offer wins, the second node gets it */
    unsigned char a[FV_KEY_LEN], b[FV_KEY_LEN], got[FV_KEY_LEN];
    memset(a, 0xAA, sizeof a);
    memset(b, 0xBB, sizeof b);
    assert_int_equal(s1.pseudonym_key(s1.arg, a, got, err, sizeof err), FV_OK);
    assert_memory_equal(got, a, FV_KEY_LEN);
    assert_int_equal(s2.pseudonym_key(s2.arg, b, got, err, sizeof err), FV_OK);
    assert_memory_equal(got, a, FV_KEY_LEN);

    /* a data key made by node 1, fetched by node 2; never in the bucket for an unknown one */
    unsigned char d1[FV_KEY_LEN], d2[FV_KEY_LEN];
    char name[FV_NAME_MAX + 1] = "VIN1", n2name[FV_NAME_MAX + 1] = "";
    memset(d1, 1, sizeof d1);
    assert_int_equal(s1.subject(s1.arg, P1, 1, d1, name), FV_OK);
    assert_int_equal(s2.subject(s2.arg, P1, 0, d2, n2name), FV_OK);
    assert_memory_equal(d1, d2, FV_KEY_LEN);
    assert_string_equal(n2name, "VIN1");
    assert_int_equal(s2.subject(s2.arg, P3, 0, d2, n2name), FV_ENOENT);

    /* J1, the race: node 2 creates between node 1's read and create; node 1 ends up with
     * node 2's key */
    struct race r = {.other = n2};
    memset(r.dek, 0x22, sizeof r.dek);
    fv__jskeys_before_create(n1, other_node_first, &r);
    unsigned char mine[FV_KEY_LEN];
    memset(mine, 0x11, sizeof mine);
    snprintf(name, sizeof name, "VIN2");
    assert_int_equal(s1.subject(s1.arg, P2, 1, mine, name), FV_OK);
    fv__jskeys_before_create(n1, NULL, NULL);
    assert_int_equal(r.ran, 1);
    assert_memory_equal(mine, r.dek, FV_KEY_LEN);
    struct fv_jskeys_stats st;
    fv_jskeys_stats(n1, &st);
    assert_int_equal(st.created, 1);
    assert_int_equal(st.lost_races, 1);

    /* J2: purged, the entry reads as erased, and no node can make it again */
    assert_int_equal(fv_jskeys_purge(n2, P1, err, sizeof err), FV_OK);
    assert_int_equal(s1.subject(s1.arg, P1, 0, d2, n2name), FV_ESTATE);
    memset(d2, 9, sizeof d2);
    snprintf(name, sizeof name, "VIN1");
    assert_int_equal(s1.subject(s1.arg, P1, 1, d2, name), FV_ESTATE);
    /* a subject erased before any node made its key: the marker alone refuses it */
    assert_int_equal(fv_jskeys_purge(n1, P3, err, sizeof err), FV_OK);
    snprintf(name, sizeof name, "VIN3");
    assert_int_equal(s2.subject(s2.arg, P3, 1, d2, name), FV_ESTATE);

    /* J4: a value someone else put there is refused, not used */
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, cfg.urls[0]), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    char subj[96];
    snprintf(subj, sizeof subj, "$KV.%s.subject.%s", cfg.keys_bucket, P4);
    static const char junk[] = "FVKV\001S5c5c5c5c01020304 naming this key, not sealed by it";
    assert_int_equal(js_Publish(NULL, js, subj, junk, (int)sizeof junk - 1, NULL, NULL), NATS_OK);
    assert_int_equal(s1.subject(s1.arg, P4, 0, d2, n2name), FV_ECORRUPT);
    assert_int_equal(s1.subject(s1.arg, P4, 1, d2, name), FV_ECORRUPT);
    /* J6: one naming a master key this node is not given is not here (a rotation this node
     * was not restarted for: it waits), never used either */
    static const char other[] = "FVKV\001S0000000000000000 not sealed by any master key here";
    assert_int_equal(js_Publish(NULL, js, subj, other, (int)sizeof other - 1, NULL, NULL), NATS_OK);
    assert_int_equal(s1.subject(s1.arg, P4, 0, d2, n2name), FV_EIO);
    assert_int_equal(s1.subject(s1.arg, P4, 1, d2, name), FV_EIO);

    /* J3: a node starting now sees the markers of P1 and P3 in the bucket's state, then P2's
     * purge as it happens; each is destroyed in its catalog */
    char db[96];
    snprintf(db, sizeof db, "%s/catalog.db", nats.dir);
    assert_int_equal(fv_jskeys_watch(n1, db, changed, NULL, err, sizeof err), FV_OK);
    for (int i = 0; i < 100 && __atomic_load_n(&changes, __ATOMIC_SEQ_CST) < 2; i++)
        usleep(50000);
    assert_int_equal(__atomic_load_n(&changes, __ATOMIC_SEQ_CST), 2);
    assert_int_equal(fv_jskeys_purge(n2, P2, err, sizeof err), FV_OK);
    for (int i = 0; i < 100 && __atomic_load_n(&changes, __ATOMIC_SEQ_CST) < 3; i++)
        usleep(50000);
    assert_int_equal(__atomic_load_n(&changes, __ATOMIC_SEQ_CST), 3);
    /* the server restarted (the watcher's consumer gone with it): a purge afterwards is
     * still seen, the watcher made again from the bucket's state after the reconnect */
    restart_server();
    unsigned char d5[FV_KEY_LEN] = {5};
    char n5[FV_NAME_MAX + 1] = "VIN5";
    int rc = FV_EIO;
    for (int i = 0; i < 100 && rc != FV_OK; i++) { /* nats.c reconnecting */
        rc = s2.subject(s2.arg, P5, 1, d5, n5);
        if (rc != FV_OK) usleep(100000);
    }
    assert_int_equal(rc, FV_OK);
    assert_int_equal(fv_jskeys_purge(n2, P5, err, sizeof err), FV_OK);
    for (int i = 0; i < 200 && __atomic_load_n(&changes, __ATOMIC_SEQ_CST) < 4; i++)
        usleep(50000);
    assert_int_equal(__atomic_load_n(&changes, __ATOMIC_SEQ_CST), 4);
    fv_jskeys_unwatch(n1);
    struct fv_keystore *ks;
    assert_int_equal(fv_keystore_open(db, &kek, &ks, err, sizeof err), FV_OK);
    const unsigned char *dk;
    const char *nm;
    assert_int_equal(fv_keystore_subject(ks, P1, &dk, &nm), FV_ESTATE);
    assert_int_equal(fv_keystore_subject(ks, P2, &dk, &nm), FV_ESTATE);
    assert_int_equal(fv_keystore_subject(ks, P3, &dk, &nm), FV_ESTATE);
    assert_int_equal(fv_keystore_subject(ks, P4, &dk, &nm), FV_ENOENT);
    assert_int_equal(fv_keystore_subject(ks, P5, &dk, &nm), FV_ESTATE);
    fv_keystore_close(ks);

    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    fv_jskeys_close(n1);
    fv_jskeys_close(n2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_nodes),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    nats_Close();
    return rc;
}
