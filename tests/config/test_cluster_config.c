/* test_cluster_config.c - config/cluster_config.h: the "cluster" object's defaults, every key,
 * the refusals naming the key, and the role checked against the object. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "config/cluster_config.h"
#include "util/err.h"

static int parse(const char *text, struct fv_cluster_cfg *c, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    err[0] = '\0';
    int rc = fv_cluster_cfg_parse(c, j, "fv.json", err, errlen);
    json_decref(j);
    return rc;
}

static void defaults(void **state)
{
    (void)state;
    struct fv_cluster_cfg c;
    char err[256];
    assert_int_equal(parse("{\"nats\": \"nats://127.0.0.1:4222\"}", &c, err, sizeof err), FV_OK);
    assert_int_equal(c.enabled, 1);
    assert_int_equal(c.nurls, 1);
    assert_string_equal(c.urls[0], "nats://127.0.0.1:4222");
    assert_string_equal(c.stream, "FLEETVAULT");
    assert_string_equal(c.subject_prefix, "fv.rec");
    assert_int_equal(c.replicas, 3);
    assert_int_equal(c.shards, 16);
    for (uint32_t i = 0; i < FV_CLUSTER_MAX_SHARDS; i++)
        assert_int_equal(c.owned[i], i < 16);
    assert_int_equal(c.ca[0], '\0');
    assert_int_equal(c.owned_given, 0);
    assert_int_equal(c.node[0], '\0');
    assert_string_equal(c.lease_bucket, "fv-leases");
    assert_int_equal(c.lease_renew_ms, 2000);
    assert_int_equal(c.lease_ttl_ms, 10000);
    assert_int_equal(c.stream_max_age_days, 7);
    assert_int_equal(c.query_timeout_ms, 3000);
    /* the TTL follows a renewal period given alone: 5 renewals */
    assert_int_equal(
        parse("{\"nats\": \"nats://a:1\", \"lease_renew_ms\": 3000}", &c, err, sizeof err), FV_OK);
    assert_int_equal(c.lease_ttl_ms, 15000);
    char a[80], b[80], again[80];
    fv_cluster_node_default("/tmp/a", a, sizeof a);
    fv_cluster_node_default("/tmp/b", b, sizeof b);
    fv_cluster_node_default("/tmp/a", again, sizeof again);
    assert_string_equal(a, again); /* stable */
    assert_string_not_equal(a, b); /* two data directories, two names */
    assert_int_equal(strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"),
                     strlen(a));
    assert_string_equal(c.keys_bucket, "fv-keys");
    assert_string_equal(c.subjects_bucket, "fv-subjects");
    assert_string_equal(c.principals_bucket, "fv-principals");
}

static void everything(void **state)
{
    (void)state;
    struct fv_cluster_cfg c;
    char err[256];
    assert_int_equal(
        parse("{\"nats\": [\"nats://a:1\", \"tls://b:2\"], \"credentials\": \"n.creds\","
              " \"tls\": {\"ca\": \"ca.crt\", \"cert\": \"c.crt\", \"key\": \"c.key\"},"
              " \"stream\": \"FV_2\", \"subject_prefix\": \"x.y-z\", \"replicas\": 1,"
              " \"shards\": 8, \"owned_shards\": [7, 0, 3], \"keys_bucket\": \"K_1-x\","
              " \"node\": \"st_1\", \"lease_bucket\": \"L\", \"lease_renew_ms\": 100,"
              " \"lease_ttl_ms\": 300, \"stream_max_age_days\": 30, \"query_timeout_ms\": 250,"
              " \"subjects_bucket\": \"S-2_y\", \"principals_bucket\": \"P-3_z\"}",
              &c, err, sizeof err),
        FV_OK);
    assert_int_equal(c.nurls, 2);
    assert_string_equal(c.urls[1], "tls://b:2");
    assert_string_equal(c.credentials, "n.creds");
    assert_string_equal(c.ca, "ca.crt");
    assert_string_equal(c.key, "c.key");
    assert_string_equal(c.stream, "FV_2");
    assert_string_equal(c.subject_prefix, "x.y-z");
    assert_int_equal(c.replicas, 1);
    assert_int_equal(c.shards, 8);
    for (uint32_t i = 0; i < FV_CLUSTER_MAX_SHARDS; i++)
        assert_int_equal(c.owned[i], i == 0 || i == 3 || i == 7);
    assert_int_equal(c.owned_given, 1);
    assert_string_equal(c.node, "st_1");
    assert_string_equal(c.lease_bucket, "L");
    assert_int_equal(c.lease_renew_ms, 100);
    assert_int_equal(c.lease_ttl_ms, 300);
    assert_int_equal(c.stream_max_age_days, 30);
    assert_int_equal(c.query_timeout_ms, 250);
    assert_string_equal(c.keys_bucket, "K_1-x");
    assert_string_equal(c.subjects_bucket, "S-2_y");
    assert_string_equal(c.principals_bucket, "P-3_z");
}

static void refusals(void **state)
{
    (void)state;
    static const struct {
        const char *json, *says;
    } bad[] = {
        {"[]", "cluster: expected an object"},
        {"{}", "cluster.nats: required"},
        {"{\"nats\": []}", "cluster.nats: expected"},
        {"{\"nats\": \"http://a:1\"}", "cluster.nats: expected"},
        {"{\"nats\": [\"nats://1\",\"nats://2\",\"nats://3\",\"nats://4\",\"nats://5\","
         "\"nats://6\",\"nats://7\",\"nats://8\",\"nats://9\"]}",
         "cluster.nats: expected 1 to 8"},
        {"{\"nats\": \"nats://a:1\", \"tls\": {\"cert\": \"c\", \"key\": \"k\"}}", "cluster.tls"},
        {"{\"nats\": \"nats://a:1\", \"tls\": {\"ca\": \"a\", \"cert\": \"c\"}}", "cluster.tls"},
        {"{\"nats\": \"nats://a:1\", \"stream\": \"a.b\"}", "cluster.stream"},
        {"{\"nats\": \"nats://a:1\", \"stream\": \"\"}", "cluster.stream"},
        {"{\"nats\": \"nats://a:1\", \"subject_prefix\": \"a..b\"}", "cluster.subject_prefix"},
        {"{\"nats\": \"nats://a:1\", \"subject_prefix\": \"a.*\"}", "cluster.subject_prefix"},
        {"{\"nats\": \"nats://a:1\", \"subject_prefix\": \".a\"}", "cluster.subject_prefix"},
        {"{\"nats\": \"nats://a:1\", \"replicas\": 0}", "cluster.replicas"},
        {"{\"nats\": \"nats://a:1\", \"replicas\": 6}", "cluster.replicas"},
        {"{\"nats\": \"nats://a:1\", \"shards\": 0}", "cluster.shards"},
        {"{\"nats\": \"nats://a:1\", \"shards\": 1025}", "cluster.shards"},
        {"{\"nats\": \"nats://a:1\", \"owned_shards\": []}", "cluster.owned_shards"},
        {"{\"nats\": \"nats://a:1\", \"owned_shards\": [-1]}", "cluster.owned_shards"},
        {"{\"nats\": \"nats://a:1\", \"shards\": 2, \"owned_shards\": [2]}",
         "cluster.owned_shards: shard 2, but there are 2 (0 to 1)"},
        {"{\"nats\": \"nats://a:1\", \"catalog\": \"/s/c.db\"}", "cluster.catalog: no longer used"},
        {"{\"nats\": \"nats://a:1\", \"keys_bucket\": \"a.b\"}", "cluster.keys_bucket"},
        {"{\"nats\": \"nats://a:1\", \"keys_bucket\": \"\"}", "cluster.keys_bucket"},
        {"{\"nats\": \"nats://a:1\", \"subjects_bucket\": \"a.b\"}",
         "cluster.subjects_bucket: expected 1 to 32 of A-Z a-z 0-9 _ -"},
        {"{\"nats\": \"nats://a:1\", \"subjects_bucket\": \"\"}", "cluster.subjects_bucket"},
        {"{\"nats\": \"nats://a:1\", \"principals_bucket\": \"a.b\"}",
         "cluster.principals_bucket: expected 1 to 32 of A-Z a-z 0-9 _ -"},
        {"{\"nats\": \"nats://a:1\", \"subjects_bucket\": \"0123456789012345678901234567890123\"}",
         "cluster.subjects_bucket"},
        {"{\"nats\": \"nats://a:1\", \"colour\": 1}", "cluster: unknown key \"colour\""},
        {"{\"nats\": \"nats://a:1\", \"node\": \"a.b\"}", "cluster.node: expected 1 to 64"},
        {"{\"nats\": \"nats://a:1\", \"node\": \"\"}", "cluster.node"},
        {"{\"nats\": \"nats://a:1\", \"lease_bucket\": \"a b\"}", "cluster.lease_bucket"},
        {"{\"nats\": \"nats://a:1\", \"lease_renew_ms\": 99}", "cluster.lease_renew_ms"},
        {"{\"nats\": \"nats://a:1\", \"lease_renew_ms\": 60001}", "cluster.lease_renew_ms"},
        {"{\"nats\": \"nats://a:1\", \"lease_ttl_ms\": 600001}", "cluster.lease_ttl_ms"},
        {"{\"nats\": \"nats://a:1\", \"lease_renew_ms\": 1000, \"lease_ttl_ms\": 2999}",
         "cluster.lease_ttl_ms: 2999, but it must be at least 3 times cluster.lease_renew_ms "
         "(1000)"},
        {"{\"nats\": \"nats://a:1\", \"stream_max_age_days\": 0}", "cluster.stream_max_age_days"},
        {"{\"nats\": \"nats://a:1\", \"stream_max_age_days\": 3651}",
         "cluster.stream_max_age_days"},
        {"{\"nats\": \"nats://a:1\", \"query_timeout_ms\": 99}",
         "cluster.query_timeout_ms: expected an integer from 100 to 60000"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fv_cluster_cfg c;
        char err[256];
        assert_int_equal(parse(bad[i].json, &c, err, sizeof err), FV_EINVAL);
        if (strstr(err, bad[i].says) == NULL) fail_msg("%s: got \"%s\"", bad[i].json, err);
        assert_int_equal(c.enabled, 0);
    }
}

static void roles(void **state)
{
    (void)state;
    enum fv_role r;
    assert_int_equal(fv_role_parse("all", &r), FV_OK);
    assert_int_equal(r, FV_ROLE_ALL);
    assert_int_equal(fv_role_parse("gateway", &r), FV_OK);
    assert_int_equal(r, FV_ROLE_GATEWAY);
    assert_int_equal(fv_role_parse("storage", &r), FV_OK);
    assert_int_equal(r, FV_ROLE_STORAGE);
    assert_int_equal(fv_role_parse("api", &r), FV_OK);
    assert_int_equal(r, FV_ROLE_API);
    assert_int_equal(fv_role_parse("router", &r), FV_EINVAL);
    assert_string_equal(fv_role_name(FV_ROLE_STORAGE), "storage");
    assert_string_equal(fv_role_name(FV_ROLE_API), "api");
    struct fv_cluster_cfg none = {0}, some;
    char err[256];
    assert_int_equal(parse("{\"nats\": \"nats://a:1\"}", &some, err, sizeof err), FV_OK);
    assert_int_equal(fv_cluster_cfg_check(&none, FV_ROLE_ALL, err, sizeof err), FV_OK);
    assert_int_equal(fv_cluster_cfg_check(&some, FV_ROLE_GATEWAY, err, sizeof err), FV_OK);
    assert_int_equal(fv_cluster_cfg_check(&some, FV_ROLE_STORAGE, err, sizeof err), FV_OK);
    assert_int_equal(fv_cluster_cfg_check(&some, FV_ROLE_API, err, sizeof err), FV_OK);
    assert_int_equal(fv_cluster_cfg_check(&none, FV_ROLE_API, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "role api needs a \"cluster\" object"));
    assert_int_equal(fv_cluster_cfg_check(&none, FV_ROLE_GATEWAY, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "role gateway needs a \"cluster\" object"));
    assert_int_equal(fv_cluster_cfg_check(&some, FV_ROLE_ALL, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "--role gateway, storage or api"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(everything),
        cmocka_unit_test(refusals),
        cmocka_unit_test(roles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
