/* test_clusteraudit.c - server/clusteraudit.h: a node's search answer tagged with its name;
 * the api node's answer joined with the owners': order (ts, node, seq), limit, matched
 * summed, a node answering twice counted once, "not here" answers skipped, a malformed
 * answer a 502 naming its shard. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "server/clusteraudit.h"
#include "util/err.h"

static void set_body(struct fv_buf *b, const char *s)
{
    fv_buf_reset(b);
    assert_int_equal(fv_buf_append(b, s, strlen(s)), FV_OK);
}

static void tagged(struct fv_buf *b, const char *answer, const char *node)
{
    set_body(b, answer);
    assert_int_equal(fv_clusteraudit_tag(b, node), FV_OK);
}

static json_t *body_json(const struct fv_http_response *r)
{
    json_t *j = json_loadb((const char *)r->body.data, r->body.len, 0, NULL);
    assert_non_null(j);
    return j;
}

static void test_tag(void **state)
{
    (void)state;
    struct fv_buf b = {0};
    tagged(&b,
           "{\"entries\":[{\"seq\":3,\"ts\":10},{\"seq\":4,\"ts\":11}],\"count\":2,"
           "\"matched\":2,\"truncated\":false}",
           "st-a");
    json_t *j = json_loadb((const char *)b.data, b.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(j, "entries"), 1), "node")),
                        "st-a");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "nodes"), 0)), "st-a");
    json_decref(j);
    set_body(&b, "{\"error\":\"nope\"}");
    assert_int_equal(fv_clusteraudit_tag(&b, "st-a"), FV_EINVAL);
    set_body(&b, "not json");
    assert_int_equal(fv_clusteraudit_tag(&b, "st-a"), FV_EINVAL);
    fv_buf_free(&b);
}

static void test_join(void **state)
{
    (void)state;
    struct fv_buf own = {0};
    tagged(&own, "{\"entries\":[{\"seq\":7,\"ts\":20}],\"matched\":5}", "api");
    struct fv_jsq_answer ans[4];
    memset(ans, 0, sizeof ans);
    for (int i = 0; i < 4; i++)
        ans[i].status = 200;
    tagged(&ans[0].body,
           "{\"entries\":[{\"seq\":1,\"ts\":20},{\"seq\":2,\"ts\":30}],\"matched\":2}", "st-b");
    ans[1].status = 404; /* "not here": st-b answers for its lowest shard only */
    set_body(&ans[1].body, "{\"error\":\"x\"}");
    tagged(&ans[2].body, "{\"entries\":[{\"seq\":9,\"ts\":5}],\"matched\":1}", "st-a");
    /* st-b again (its leases moved during the request): counted once */
    tagged(&ans[3].body,
           "{\"entries\":[{\"seq\":1,\"ts\":20},{\"seq\":2,\"ts\":30}],\"matched\":2}", "st-b");
    struct fv_http_response out;
    memset(&out, 0, sizeof out);
    fv_clusteraudit_join(&own, ans, 4, 100, &out);
    assert_int_equal(out.status, 200);
    json_t *j = body_json(&out);
    json_t *e = json_object_get(j, "entries");
    assert_int_equal(json_array_size(e), 4);
    /* by ts, then node name: 5 st-a, 20 api, 20 st-b, 30 st-b */
    const char *want[] = {"st-a", "api", "st-b", "st-b"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(e, i), "node")),
                            want[i]);
    assert_int_equal(json_integer_value(json_object_get(j, "matched")), 8);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 4);
    assert_true(json_is_true(json_object_get(j, "truncated"))); /* own matched 5, held 1 */
    assert_int_equal(json_array_size(json_object_get(j, "nodes")), 3);
    json_decref(j);
    /* limit: the newest 2 */
    fv_clusteraudit_join(&own, ans, 4, 2, &out);
    j = body_json(&out);
    e = json_object_get(j, "entries");
    assert_int_equal(json_array_size(e), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(e, 0), "ts")), 20);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(e, 1), "ts")), 30);
    json_decref(j);
    /* a malformed owner's answer: 502 naming its shard */
    set_body(&ans[2].body, "{\"entries\":[]}");
    fv_clusteraudit_join(&own, ans, 4, 100, &out);
    assert_int_equal(out.status, 502);
    assert_non_null(strstr((const char *)out.body.data, "shard 2"));
    for (int i = 0; i < 4; i++)
        fv_buf_free(&ans[i].body);
    fv_buf_free(&own);
    fv_buf_free(&out.body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_tag), cmocka_unit_test(test_join)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
