/* test_jssubjects_nats.c - cluster/jssubjects.h against a real nats-server: two "nodes", each
 * with its own catalog and sync. An owner change made in one catalog reaches the other, with
 * the new period's key (P1, P4); owner changes made for one device on both nodes while one's
 * sync was down (one on a, two on b) end with the bucket's on both and a conflict counted, and
 * consents given on both sides meanwhile end as their union on both (P2, P3); a malformed value in
 * the bucket is refused and counted, the catalog left alone (P5); an erasure on one node deletes
 * the other's consents and owner (P6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include <nats/nats.h>

#include "../support/natsserver.h"
#include "cluster/jskeys.h"
#include "cluster/jssubjects.h"
#include "cluster/natsconn.h"
#include "privacy/subjects.h"
#include "util/err.h"

static struct fv_test_nats nats;
static struct fv_cluster_cfg cfg;
static struct fv_kek kek;

struct node {
    char db[128];
    struct fv_jskeys *jk;
    struct fv_keystore *ks;
    struct fv_jssubjects *sync;
};

static int setup(void **state)
{
    (void)state;
    if (fv_test_nats_setup(&nats, "jssubj") != 0) return -1;
    memset(&cfg, 0, sizeof cfg);
    cfg.enabled = 1;
    snprintf(cfg.urls[0], sizeof cfg.urls[0], "nats://127.0.0.1:%d", nats.port);
    cfg.nurls = 1;
    cfg.replicas = 1;
    snprintf(cfg.keys_bucket, sizeof cfg.keys_bucket, "fv-keys-t");
    snprintf(cfg.subjects_bucket, sizeof cfg.subjects_bucket, "fv-subjects-t");
    memset(&kek, 0, sizeof kek);
    memset(kek.key, 0x3a, FV_KEY_LEN);
    snprintf(kek.id, sizeof kek.id, "3a3a3a3a01020304");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return fv_test_nats_teardown(&nats);
}

static void sync_open(struct node *n)
{
    char err[256] = "";
    int rc = fv_jssubjects_open(&cfg, &kek, n->db, fv_jskeys_source(n->jk), NULL, NULL, &n->sync,
                                err, sizeof err);
    if (rc) fail_msg("sync: %s", err);
}

static void node_open(struct node *n, const char *name)
{
    char err[256] = "";
    snprintf(n->db, sizeof n->db, "%s/%s.db", nats.dir, name);
    assert_int_equal(fv_jskeys_open(&cfg, &kek, &n->jk, err, sizeof err), FV_OK);
    struct fv_keysource src = fv_jskeys_source(n->jk);
    assert_int_equal(fv_keystore_open_shared(n->db, &kek, &src, &n->ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_subjects_init(n->ks, err, sizeof err), FV_OK);
    sync_open(n);
}

static void node_close(struct node *n)
{
    fv_jssubjects_close(n->sync);
    fv_keystore_close(n->ks);
    fv_jskeys_close(n->jk);
}

static int epoch_at(struct node *n, const char *dev, int64_t t)
{
    char name[FV_SUBJECT_NAME_MAX + 1];
    int ep = 0;
    int64_t since, until;
    if (fv_subject_period_at(n->ks, dev, t, name, &ep, &since, &until) != FV_OK) return -1;
    return ep;
}

static int consent(struct node *n, const char *subject, const char *purpose, int64_t t)
{
    int g = 0;
    if (fv_consent_at(n->ks, NULL, subject, purpose, t, &g) != FV_OK) return -1;
    return g;
}

#define WAIT(cond)                                                                                 \
    do {                                                                                           \
        for (int w_ = 0; w_ < 200 && !(cond); w_++)                                                \
            usleep(50000);                                                                         \
        if (!(cond)) fail_msg("timed out waiting for %s", #cond);                                  \
    } while (0)

static const char V1[] = "5YJJSSUBJ00000001", V2[] = "5YJJSSUBJ00000002";

static void two_nodes(void **state)
{
    (void)state;
    struct node a, b;
    char err[256] = "";
    node_open(&a, "a");
    node_open(&b, "b");

    /* P1, P4: an owner change in a's catalog reaches b, with the new period's key */
    assert_int_equal(fv_subject_change_owner(a.ks, V1, "owner-2", 1000, err, sizeof err), FV_OK);
    WAIT(epoch_at(&b, V1, 1500) == 2);
    assert_int_equal(epoch_at(&b, V1, 500), 1);
    const unsigned char *ka, *kb;
    char pa[FV_PSEUDONYM_LEN + 1], pb[FV_PSEUDONYM_LEN + 1];
    assert_int_equal(fv_keystore_dek(a.ks, "5YJJSSUBJ00000001#2", 0, &ka, pa), FV_OK);
    assert_int_equal(fv_keystore_dek(b.ks, "5YJJSSUBJ00000001#2", 0, &kb, pb), FV_OK);
    assert_memory_equal(ka, kb, FV_KEY_LEN);

    /* P2, P3: b's sync down; an owner change of V2 on each side, at different times, and a
     * consent on each side */
    fv_jssubjects_close(b.sync);
    b.sync = NULL;
    assert_int_equal(fv_subject_change_owner(a.ks, V2, "owner-a", 2000, err, sizeof err), FV_OK);
    assert_int_equal(fv_subject_change_owner(b.ks, V2, "owner-b", 3000, err, sizeof err), FV_OK);
    assert_int_equal(fv_subject_change_owner(b.ks, V2, "owner-c", 4000, err, sizeof err), FV_OK);
    assert_int_equal(fv_consent_set(a.ks, NULL, "5YJJSSUBJ00000001#2", "clips", 1, 5000, "owner",
                                    err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_consent_set(b.ks, NULL, "5YJJSSUBJ00000001#2", "model_training", 1, 6000,
                                    "owner", err, sizeof err),
                     FV_OK);
    struct fv_kvsync_stats st;
    WAIT((fv_jssubjects_stats(a.sync, &st), st.published >= 3)); /* V1, V2, the consent */
    assert_int_equal(epoch_at(&b, V2, 2500), 1);                 /* b's own, for now */
    sync_open(&b);
    fv_jssubjects_stats(b.sync, &st);
    assert_int_equal(st.conflicts, 1); /* the bucket's V2 kept */
    assert_int_equal(epoch_at(&b, V2, 2500), 2);
    assert_int_equal(epoch_at(&b, V2, 4500), 2); /* b's epoch 3 gone with its epoch 2 */
    assert_int_equal(epoch_at(&a, V2, 2500), 2);
    assert_int_equal(epoch_at(&a, V2, 4500), 2);
    assert_int_equal(consent(&b, "5YJJSSUBJ00000001#2", "clips", 5500), 1);
    assert_int_equal(consent(&b, "5YJJSSUBJ00000001#2", "model_training", 6500), 1);
    WAIT(consent(&a, "5YJJSSUBJ00000001#2", "model_training", 6500) == 1);
    assert_int_equal(consent(&a, "5YJJSSUBJ00000001#2", "clips", 5500), 1);

    /* P5: a malformed value (an operator's mistake, another program) refused, counted */
    struct fv_natsconn c = {0};
    kvStore *kv = NULL;
    assert_int_equal(fv_natsconn_connect(&c, &cfg, "test", NULL, 5000, 1, err, sizeof err), FV_OK);
    assert_int_equal(fv_natsconn_bucket(&c, cfg.subjects_bucket, "t", 1, &kv, err, sizeof err),
                     FV_OK);
    uint64_t rev = 0;
    assert_int_equal(kvStore_Put(&rev, kv, "periods.abababababababababababababababab", "junk", 4),
                     NATS_OK);
    WAIT((fv_jssubjects_stats(b.sync, &st), st.malformed >= 1));
    struct fv_period_row rows[4];
    size_t nr = 9;
    assert_int_equal(fv_period_rows_get(b.ks, "abababababababababababababababab", rows, 4, &nr),
                     FV_OK);
    assert_int_equal(nr, 0);
    kvStore_Destroy(kv);
    fv_natsconn_close(&c);

    /* P6: an erasure on a: b's consents of the subject go, and its owner id */
    assert_int_equal(fv_subjects_forget(a.ks, "5YJJSSUBJ00000001#2", err, sizeof err), FV_OK);
    WAIT(consent(&b, "5YJJSSUBJ00000001#2", "clips", 5500) == 0);
    assert_int_equal(consent(&b, "5YJJSSUBJ00000001#2", "model_training", 6500), 0);
    nr = 0;
    char dp[FV_PSEUDONYM_LEN + 1];
    assert_int_equal(fv_keystore_pseudonym(b.ks, V1, dp), FV_OK);
    WAIT((fv_period_rows_get(b.ks, dp, rows, 4, &nr), nr == 2 && rows[1].forgotten != 0));
    assert_int_equal(rows[1].owner_len, 0);
    node_close(&a);
    node_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_nodes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
