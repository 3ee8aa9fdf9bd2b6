/* test_jsrotate_nats.c - cluster/jsrotate.h (`fleetvault cluster keys-rotate`) against a real
 * nats-server (started here on a free port): the keys bucket and the subjects bucket filled
 * under master key A by a node (jskeys.h) and by hand, then rotated to B.
 *  R1 a wrong old key refuses, naming the entry's key id, and changes nothing; a dry run
 *     changes nothing.
 *  R5 a rotation interrupted after two writes leaves every entry under A or B, and a node
 *     given B with A as previous reads them all (J6) while a node on A alone finds the ones
 *     under B "not here" (FV_EIO), never corrupt; run again, it finishes.
 *  R2 the races played out deterministically: between the rotation's read and its write, a
 *     subject's key is purged (the marker stays a marker: no key comes back over an erasure)
 *     and a subjects value is replaced by another node (its new content is what ends under
 *     B, not the rotation's stale copy).
 *  R4 a node still on A writing under A all the time: the rounds run out, saying so; once
 *     it stops, a run finishes.
 *  R3 markers left alone; a finished rotation run again re-wraps nothing. */
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

#include "../support/natsserver.h"
#include "cluster/jskeys.h"
#include "cluster/jsprincipals.h"
#include "cluster/jsquotas.h"
#include "cluster/jsrotate.h"
#include "util/err.h"

static struct fv_test_nats nats;
static struct fv_cluster_cfg cfg;

static int setup(void **state)
{
    (void)state;
    if (fv_test_nats_setup(&nats, "jsrotate") != 0) return -1;
    memset(&cfg, 0, sizeof cfg);
    cfg.enabled = 1;
    snprintf(cfg.urls[0], sizeof cfg.urls[0], "nats://127.0.0.1:%d", nats.port);
    cfg.nurls = 1;
    cfg.replicas = 1;
    snprintf(cfg.keys_bucket, sizeof cfg.keys_bucket, "fv-keys-rot");
    snprintf(cfg.subjects_bucket, sizeof cfg.subjects_bucket, "fv-subjects-rot");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return fv_test_nats_teardown(&nats);
}

static void kek_of(struct fv_kek *k, unsigned char fill)
{
    memset(k, 0, sizeof *k);
    memset(k->key, fill, FV_KEY_LEN);
    snprintf(k->id, sizeof k->id, "%02x%02x%02x%02x01020304", fill, fill, fill, fill);
}

static const char P1[] = "11111111111111111111111111111111";
static const char P2[] = "22222222222222222222222222222222";
static const char P3[] = "33333333333333333333333333333333";
static const char P4[] = "44444444444444444444444444444444";
static const char *ENTRIES[] = {"pseudonym-key",
                                "subject.11111111111111111111111111111111",
                                "subject.22222222222222222222222222222222",
                                "subject.33333333333333333333333333333333",
                                "subject.44444444444444444444444444444444",
                                "consents.55555555555555555555555555555555",
                                "periods.66666666666666666666666666666666"};
#define NENTRIES 7

struct env {
    natsConnection *nc;
    jsCtx *js;
    kvStore *skv; /* the subjects bucket */
    struct fv_kek a, b;
    struct fv_jskeys *node_a; /* a node on A alone */
    int writes, stop_after;
    char purged[96], updated[96];
};

static const char *bucket_of(const char *key)
{
    return strncmp(key, "consents.", 9) == 0 || strncmp(key, "periods.", 8) == 0
               ? cfg.subjects_bucket
               : cfg.keys_bucket;
}

/* The entry's last message: 'M' a marker, 'V' a value (its key id in id), 'N' nothing. */
static char state_of(struct env *e, const char *key, char id[17])
{
    char stream[64], subj[160];
    const char *b = bucket_of(key);
    snprintf(stream, sizeof stream, "KV_%s", b);
    snprintf(subj, sizeof subj, "$KV.%s.%s", b, key);
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    id[0] = '\0';
    natsStatus s = js_GetLastMsg(&m, e->js, stream, subj, NULL, &jerr);
    if (s != NATS_OK) return 'N';
    const char *op = NULL;
    char r = 'V';
    if (natsMsgHeader_Get(m, "KV-Operation", &op) == NATS_OK && op)
        r = 'M';
    else
        assert_int_equal(fv_jskeys_value_kek((const unsigned char *)natsMsg_GetData(m),
                                             (size_t)natsMsg_GetDataLength(m), id),
                         FV_OK);
    natsMsg_Destroy(m);
    return r;
}

/* How many values are under the key with this id. */
static int under(struct env *e, const char *id)
{
    int n = 0;
    char got[17];
    for (int i = 0; i < NENTRIES; i++)
        if (state_of(e, ENTRIES[i], got) == 'V' && strcmp(got, id) == 0) n++;
    return n;
}

static void put_subjects_value(struct env *e, const char *key, const char *pt, uint64_t rev)
{
    struct fv_buf v = {0};
    char kind = key[0] == 'c' ? 'C' : 'R';
    assert_int_equal(fv_jskeys_wrap(&e->a, key, kind, pt, strlen(pt), &v), FV_OK);
    uint64_t nrev = 0;
    natsStatus s = rev ? kvStore_Update(&nrev, e->skv, key, v.data, (int)v.len, rev)
                       : kvStore_Create(&nrev, e->skv, key, v.data, (int)v.len);
    assert_int_equal(s, NATS_OK);
    fv_buf_free(&v);
}

/* R5: lets stop_after writes through, then interrupts. */
static int interrupt(void *arg, const char *bucket, const char *key)
{
    (void)bucket;
    (void)key;
    struct env *e = arg;
    return e->writes++ < e->stop_after ? FV_OK : FV_EIO;
}

/* R2: the first subject key to be written is purged, the first subjects value replaced. */
static int race(void *arg, const char *bucket, const char *key)
{
    struct env *e = arg;
    char err[256];
    if (e->purged[0] == '\0' && strncmp(key, "subject.", 8) == 0) {
        snprintf(e->purged, sizeof e->purged, "%s", key);
        assert_int_equal(fv_jskeys_purge(e->node_a, key + 8, err, sizeof err), FV_OK);
    } else if (e->updated[0] == '\0' && strcmp(bucket, cfg.subjects_bucket) == 0) {
        snprintf(e->updated, sizeof e->updated, "%s", key);
        kvEntry *ke = NULL;
        assert_int_equal(kvStore_Get(&ke, e->skv, key), NATS_OK);
        put_subjects_value(e, key, "written by another node meanwhile", kvEntry_Revision(ke));
        kvEntry_Destroy(ke);
    }
    return FV_OK;
}

/* R4: a node still on A alone, writing a new value under A at every write of the rotation. */
static int keep_writing(void *arg, const char *bucket, const char *key)
{
    (void)bucket;
    (void)key;
    struct env *e = arg;
    char k[96];
    snprintf(k, sizeof k, "consents.%032d", 1000 + e->writes++);
    put_subjects_value(e, k, "consents of a subject new on a node still on A", 0);
    return FV_OK;
}

static void rotation(void **state)
{
    (void)state;
    struct env e;
    memset(&e, 0, sizeof e);
    struct fv_kek c, ab;
    kek_of(&e.a, 0xa1);
    kek_of(&e.b, 0xb2);
    kek_of(&c, 0xc3);
    ab = e.b;
    memcpy(ab.prev_key, e.a.key, FV_KEY_LEN);
    memcpy(ab.prev_id, e.a.id, sizeof ab.prev_id);
    char err[1024], id[17];

    /* A node on A fills the keys bucket: the pseudonym key, four subjects, one erased. */
    assert_int_equal(fv_jskeys_open(&cfg, &e.a, &e.node_a, err, sizeof err), FV_OK);
    struct fv_keysource sa = fv_jskeys_source(e.node_a);
    unsigned char pk[FV_KEY_LEN], got[FV_KEY_LEN], dek[FV_KEY_LEN];
    memset(pk, 0x77, sizeof pk);
    assert_int_equal(sa.pseudonym_key(sa.arg, pk, got, err, sizeof err), FV_OK);
    const char *ps[] = {P1, P2, P3, P4};
    for (int i = 0; i < 4; i++) {
        char name[FV_NAME_MAX + 1];
        snprintf(name, sizeof name, "VIN%d", i + 1);
        memset(dek, i + 1, sizeof dek);
        assert_int_equal(sa.subject(sa.arg, ps[i], 1, dek, name), FV_OK);
    }
    assert_int_equal(fv_jskeys_purge(e.node_a, P3, err, sizeof err), FV_OK);
    /* ... and the subjects bucket by hand (a consents and a periods value under A) */
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", nats.port);
    assert_int_equal(natsConnection_ConnectTo(&e.nc, url), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&e.js, e.nc, NULL), NATS_OK);
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = cfg.subjects_bucket;
    kc.History = 1;
    assert_int_equal(js_CreateKeyValue(&e.skv, e.js, &kc), NATS_OK);
    put_subjects_value(&e, ENTRIES[5], "consents as the catalog has them", 0);
    put_subjects_value(&e, ENTRIES[6], "periods as the catalog has them", 0);
    assert_int_equal(under(&e, e.a.id), 6);
    assert_int_equal(state_of(&e, ENTRIES[3], id), 'M');

    /* R1: a wrong old key (C) refuses, naming A's id, and changes nothing; a dry run too */
    struct fv_jsrotate_stats st;
    assert_int_equal(fv_jsrotate_run(&cfg, &c, &e.b, NULL, &st, err, sizeof err), FV_ESTATE);
    assert_non_null(strstr(err, "which is neither the old key given"));
    assert_non_null(strstr(err, e.a.id));
    assert_int_equal(under(&e, e.a.id), 6);
    assert_int_equal(fv_jsrotate_run(&cfg, &e.a, &e.a, NULL, &st, err, sizeof err), FV_EINVAL);
    struct fv_jsrotate_opts o = {.dry_run = 1};
    assert_int_equal(fv_jsrotate_run(&cfg, &e.a, &e.b, &o, &st, err, sizeof err), FV_OK);
    assert_int_equal(st.entries, NENTRIES);
    assert_int_equal(st.old_found, 6);
    assert_int_equal(st.markers, 1);
    assert_int_equal(st.rewrapped, 0);
    assert_int_equal(under(&e, e.a.id), 6);

    /* R5: interrupted after two writes: each entry under A or B */
    o = (struct fv_jsrotate_opts){.before_write = interrupt, .before_write_arg = &e};
    e.stop_after = 2;
    assert_int_equal(fv_jsrotate_run(&cfg, &e.a, &e.b, &o, &st, err, sizeof err), FV_EIO);
    assert_non_null(strstr(err, "interrupted"));
    assert_int_equal(st.rewrapped, 2);
    assert_int_equal(under(&e, e.b.id), 2);
    assert_int_equal(under(&e, e.a.id), 4);
    /* J6 meanwhile: a node on B reading A too gets every subject; one on A alone finds those
     * under B not here (FV_EIO, so it waits), never corrupt; the erased one stays erased */
    struct fv_jskeys *node_ab = NULL;
    assert_int_equal(fv_jskeys_open(&cfg, &ab, &node_ab, err, sizeof err), FV_OK);
    struct fv_keysource sab = fv_jskeys_source(node_ab);
    for (int i = 0; i < 4; i++) {
        char name[FV_NAME_MAX + 1] = "", want[16];
        int rc = sab.subject(sab.arg, ps[i], 0, got, name);
        assert_int_equal(rc, i == 2 ? FV_ESTATE : FV_OK);
        if (rc) continue;
        memset(dek, i + 1, sizeof dek);
        assert_memory_equal(got, dek, FV_KEY_LEN);
        snprintf(want, sizeof want, "VIN%d", i + 1);
        assert_string_equal(name, want);
        rc = sa.subject(sa.arg, ps[i], 0, got, name);
        state_of(&e, ENTRIES[1 + i], id);
        assert_int_equal(rc, strcmp(id, e.b.id) == 0 ? FV_EIO : FV_OK);
    }
    assert_int_equal(sab.pseudonym_key(sab.arg, pk, got, err, sizeof err), FV_OK);

    /* R2: run again with a purge and a replaced value between read and write */
    memset(pk, 0, sizeof pk);
    o = (struct fv_jsrotate_opts){.before_write = race, .before_write_arg = &e};
    assert_int_equal(fv_jsrotate_run(&cfg, &e.a, &e.b, &o, &st, err, sizeof err), FV_OK);
    assert_true(e.purged[0] && e.updated[0]);
    assert_int_equal(st.races, 2);
    assert_int_equal(st.rewrapped, 3); /* 4 under A: one purged, the raced one as it is now */
    assert_int_equal(state_of(&e, e.purged, id), 'M'); /* no key back over an erasure */
    assert_int_equal(under(&e, e.a.id), 0);
    assert_int_equal(under(&e, e.b.id), 5);
    kvEntry *ke = NULL;
    struct fv_buf pt = {0};
    assert_int_equal(kvStore_Get(&ke, e.skv, e.updated), NATS_OK);
    assert_int_equal(fv_jskeys_unwrap(&e.b, e.updated, e.updated[0] == 'c' ? 'C' : 'R',
                                      (const unsigned char *)kvEntry_Value(ke),
                                      (size_t)kvEntry_ValueLen(ke), &pt, err, sizeof err),
                     FV_OK);
    assert_int_equal(pt.len, strlen("written by another node meanwhile"));
    assert_memory_equal(pt.data, "written by another node meanwhile", pt.len);
    fv_buf_free(&pt);
    kvEntry_Destroy(ke);

    /* R4: a node still on A keeps writing under A: the rounds run out, saying so; once it
     * stops (restarted with B), a run finishes */
    put_subjects_value(&e, "consents.00000000000000000000000000000999", "one more under A", 0);
    o = (struct fv_jsrotate_opts){.before_write = keep_writing, .before_write_arg = &e};
    e.writes = 0;
    assert_int_equal(fv_jsrotate_run(&cfg, &e.a, &e.b, &o, &st, err, sizeof err), FV_ESTATE);
    assert_non_null(strstr(err, "still wrapped by the old master key"));
    assert_int_equal(st.rounds, FV_JSROTATE_ROUNDS);
    assert_int_equal(e.writes, FV_JSROTATE_ROUNDS);
    assert_int_equal(fv_jsrotate_run(&cfg, &e.a, &e.b, NULL, &st, err, sizeof err), FV_OK);
    assert_int_equal(st.rewrapped, 1); /* the last one the node wrote */
    assert_int_equal(st.rounds, 2);

    /* R4: done; again, nothing to do */
    assert_int_equal(fv_jsrotate_run(&cfg, &e.a, &e.b, NULL, &st, err, sizeof err), FV_OK);
    assert_int_equal(st.rewrapped, 0);
    assert_int_equal(st.old_found, 0);
    assert_int_equal(st.markers, 2);
    assert_int_equal(st.rounds, 1);
    /* the node on A alone: the pseudonym key refuses it, naming both ids */
    assert_int_equal(sa.pseudonym_key(sa.arg, pk, got, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, e.a.id));
    assert_non_null(strstr(err, e.b.id));

    fv_jskeys_close(node_ab);
    fv_jskeys_close(e.node_a);
    kvStore_Destroy(e.skv);
    jsCtx_Destroy(e.js);
    natsConnection_Destroy(e.nc);
}

/* The principals bucket is re-wrapped too (jsprincipals.h): a principal's value under A is
 * under B afterwards, the same principal inside; buckets not made are skipped. */
static void principals_bucket(void **state)
{
    (void)state;
    struct fv_cluster_cfg c = cfg;
    snprintf(c.keys_bucket, sizeof c.keys_bucket, "fv-keys-none");
    snprintf(c.subjects_bucket, sizeof c.subjects_bucket, "fv-subjects-none");
    snprintf(c.principals_bucket, sizeof c.principals_bucket, "fv-principals-rot");
    struct fv_kek a, b;
    kek_of(&a, 0x0a);
    kek_of(&b, 0x0b);
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    char url[64], err[256], node[FV_JSPRINC_NODE_MAX + 1];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", nats.port);
    assert_int_equal(natsConnection_ConnectTo(&nc, url), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = c.principals_bucket;
    kc.History = 1;
    assert_int_equal(js_CreateKeyValue(&kv, js, &kc), NATS_OK);
    struct fv_principal_row r, got;
    memset(&r, 0, sizeof r);
    snprintf(r.p.name, sizeof r.p.name, "reader");
    snprintf(r.p.role, sizeof r.p.role, "ops");
    memset(r.token_hash, 0x42, sizeof r.token_hash);
    r.p.created_ms = 1796000000000;
    struct fv_buf v = {0};
    assert_int_equal(fv_jsprincipals_encode(&a, &r, "st-a", &v), FV_OK);
    uint64_t rev = 0;
    assert_int_equal(kvStore_Create(&rev, kv, "principal.reader", v.data, (int)v.len), NATS_OK);
    fv_buf_free(&v);
    struct fv_jsrotate_stats st;
    assert_int_equal(fv_jsrotate_run(&c, &a, &b, NULL, &st, err, sizeof err), FV_OK);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.rewrapped, 1);
    kvEntry *ke = NULL;
    assert_int_equal(kvStore_Get(&ke, kv, "principal.reader"), NATS_OK);
    const unsigned char *val = (const unsigned char *)kvEntry_Value(ke);
    size_t len = (size_t)kvEntry_ValueLen(ke);
    assert_int_equal(
        fv_jsprincipals_decode(&a, "principal.reader", val, len, &got, node, err, sizeof err),
        FV_ECORRUPT);
    assert_int_equal(
        fv_jsprincipals_decode(&b, "principal.reader", val, len, &got, node, err, sizeof err),
        FV_OK);
    assert_memory_equal(got.token_hash, r.token_hash, 32);
    assert_string_equal(node, "st-a");
    kvEntry_Destroy(ke);
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* The quotas bucket is re-wrapped too (jsquotas.h): a node's counts under A are under B
 * afterwards, the same counts inside. */
static void quotas_bucket(void **state)
{
    (void)state;
    struct fv_cluster_cfg c = cfg;
    snprintf(c.keys_bucket, sizeof c.keys_bucket, "fv-keys-none");
    snprintf(c.subjects_bucket, sizeof c.subjects_bucket, "fv-subjects-none");
    snprintf(c.quotas_bucket, sizeof c.quotas_bucket, "fv-quotas-rot");
    struct fv_kek a, b;
    kek_of(&a, 0x0a);
    kek_of(&b, 0x0b);
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    char url[64], err[256], key[FV_JSQUOTA_KEY_MAX], name[FV_JSQUOTA_NAME_MAX + 1];
    char node[FV_JSQUOTA_NODE_MAX + 1];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", nats.port);
    assert_int_equal(natsConnection_ConnectTo(&nc, url), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = c.quotas_bucket;
    kc.History = 1;
    assert_int_equal(js_CreateKeyValue(&kv, js, &kc), NATS_OK);
    struct fv_quota_usage u = {.day = 20790, .subjects = 2, .rows = 300, .bytes = 4000}, got;
    struct fv_buf v = {0};
    assert_int_equal(fv_jsquotas_encode(&a, "role:ops", "st-a", &u, &v), FV_OK);
    assert_int_equal(fv_jsquotas_key("role:ops", u.day, "st-a", key), FV_OK);
    uint64_t rev = 0;
    assert_int_equal(kvStore_Put(&rev, kv, key, v.data, (int)v.len), NATS_OK);
    fv_buf_free(&v);
    struct fv_jsrotate_stats st;
    assert_int_equal(fv_jsrotate_run(&c, &a, &b, NULL, &st, err, sizeof err), FV_OK);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.rewrapped, 1);
    kvEntry *ke = NULL;
    assert_int_equal(kvStore_Get(&ke, kv, key), NATS_OK);
    const unsigned char *val = (const unsigned char *)kvEntry_Value(ke);
    size_t len = (size_t)kvEntry_ValueLen(ke);
    assert_int_equal(fv_jsquotas_decode(&a, key, val, len, name, node, &got, err, sizeof err),
                     FV_ECORRUPT);
    assert_int_equal(fv_jsquotas_decode(&b, key, val, len, name, node, &got, err, sizeof err),
                     FV_OK);
    assert_memory_equal(&got, &u, sizeof u);
    assert_string_equal(name, "role:ops");
    assert_string_equal(node, "st-a");
    kvEntry_Destroy(ke);
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rotation),
        cmocka_unit_test(principals_bucket),
        cmocka_unit_test(quotas_bucket),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
