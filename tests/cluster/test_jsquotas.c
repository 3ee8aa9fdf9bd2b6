/* test_jsquotas.c - cluster/jsquotas.h's values and table (docs/formats.md, "Quota counts in
 * the KV bucket"; docs/cluster.md, "Quotas across the cluster"): a key names the day, a hash
 * of the name (never the name) and the node; a value opens only with the master key that
 * wrapped it, under its own entry and kind; an altered, cut or moved value is refused (Q7).
 * The table keeps per node the larger of each counter (Q1: a value read out of order never
 * lowers a count), sums the other nodes' counts of a name and day only (Q2), gives a node's
 * own entries back (Q4), and drops days before yesterday (Q5). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/jskeys.h"
#include "cluster/jsquotas.h"
#include "util/err.h"

static void kek_of(struct fv_kek *k, unsigned char fill)
{
    memset(k, 0, sizeof *k);
    memset(k->key, fill, FV_KEY_LEN);
    snprintf(k->id, sizeof k->id, "%02x%02x%02x%02x%02x%02x%02x%02x", fill, fill, fill, fill, 1, 2,
             3, 4);
}

static void test_key(void **state)
{
    (void)state;
    char k[FV_JSQUOTA_KEY_MAX];
    assert_int_equal(fv_jsquotas_key("alice", 20425, "st-a", k), FV_OK);
    /* SHA-256("alice") = 2bd806c97f0e00af... */
    assert_string_equal(k, "20425.2bd806c97f0e00af.st-a");
    assert_null(strstr(k, "alice"));
    assert_int_equal(fv_jsquotas_key("role:ops", 20425, "st-a", k), FV_OK);
    assert_int_equal(fv_jsquotas_key("", 1, "st-a", k), FV_EINVAL);
    assert_int_equal(fv_jsquotas_key("alice", -1, "st-a", k), FV_EINVAL);
    assert_int_equal(fv_jsquotas_key("alice", 1, "st.a", k), FV_EINVAL); /* a dot: a key level */
    assert_int_equal(fv_jsquotas_key("alice", 1, "", k), FV_EINVAL);
}

static void test_value(void **state)
{
    (void)state;
    struct fv_kek k1, k2;
    kek_of(&k1, 0x11);
    kek_of(&k2, 0x22);
    struct fv_quota_usage u = {
        .day = 20425, .subjects = 3, .rows = 1234567890123ull, .bytes = UINT64_MAX, .bulk = 7};
    struct fv_buf v = {0};
    assert_int_equal(fv_jsquotas_encode(&k1, "role:ops", "st-a", &u, &v), FV_OK);
    char key[FV_JSQUOTA_KEY_MAX], name[FV_JSQUOTA_NAME_MAX + 1], node[FV_JSQUOTA_NODE_MAX + 1];
    char err[256];
    assert_int_equal(fv_jsquotas_key("role:ops", 20425, "st-a", key), FV_OK);
    assert_null(memmem(v.data, v.len, "role:ops", 8)); /* wrapped */
    struct fv_quota_usage d;
    assert_int_equal(fv_jsquotas_decode(&k1, key, v.data, v.len, name, node, &d, err, sizeof err),
                     FV_OK);
    assert_string_equal(name, "role:ops");
    assert_string_equal(node, "st-a");
    assert_memory_equal(&d, &u, sizeof u);
    /* another master key */
    assert_int_not_equal(
        fv_jsquotas_decode(&k2, key, v.data, v.len, name, node, &d, err, sizeof err), FV_OK);
    /* moved to another entry: another node's, another day's */
    char other[FV_JSQUOTA_KEY_MAX];
    assert_int_equal(fv_jsquotas_key("role:ops", 20425, "st-b", other), FV_OK);
    assert_int_not_equal(
        fv_jsquotas_decode(&k1, other, v.data, v.len, name, node, &d, err, sizeof err), FV_OK);
    assert_int_equal(fv_jsquotas_key("role:ops", 20426, "st-a", other), FV_OK);
    assert_int_not_equal(
        fv_jsquotas_decode(&k1, other, v.data, v.len, name, node, &d, err, sizeof err), FV_OK);
    /* every byte altered, every cut */
    for (size_t i = 0; i < v.len; i++) {
        v.data[i] ^= 0x01;
        assert_int_not_equal(
            fv_jsquotas_decode(&k1, key, v.data, v.len, name, node, &d, err, sizeof err), FV_OK);
        v.data[i] ^= 0x01;
    }
    for (size_t n = 0; n < v.len; n++)
        assert_int_not_equal(
            fv_jsquotas_decode(&k1, key, v.data, n, name, node, &d, err, sizeof err), FV_OK);
    fv_buf_free(&v);
}

struct seen {
    int n;
    char name[FV_JSQUOTA_NAME_MAX + 1];
    uint64_t rows;
};

static void each(void *arg, const char *name, const struct fv_quota_usage *u)
{
    struct seen *s = arg;
    s->n++;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->rows = u->rows;
}

static void test_table(void **state)
{
    (void)state;
    struct fv_jsquotas_table t = {0};
    struct fv_quota_usage a = {.day = 100, .subjects = 1, .rows = 10, .bytes = 100};
    struct fv_quota_usage b = {.day = 100, .subjects = 2, .rows = 20, .bytes = 200};
    struct fv_quota_usage c = {.day = 100, .rows = 5};
    assert_int_equal(fv_jsquotas_table_apply(&t, "ops", "st-a", &a), 1);
    assert_int_equal(fv_jsquotas_table_apply(&t, "ops", "st-b", &b), 1);
    assert_int_equal(fv_jsquotas_table_apply(&t, "ops", "api", &c), 1);
    assert_int_equal(fv_jsquotas_table_apply(&t, "ops", "st-a", &a), 0); /* idempotent */
    /* the sum of the others: st-a asks, its own counts left out */
    struct fv_quota_usage s = {.day = 100};
    fv_jsquotas_table_sum(&t, "ops", 100, "st-a", &s);
    assert_int_equal(s.rows, 25);
    assert_int_equal(s.subjects, 2);
    assert_int_equal(s.bytes, 200);
    assert_int_equal(s.day, 100);
    memset(&s, 0, sizeof s);
    fv_jsquotas_table_sum(&t, "ops", 100, NULL, &s);
    assert_int_equal(s.rows, 35);
    /* another name, another day: nothing */
    memset(&s, 0, sizeof s);
    fv_jsquotas_table_sum(&t, "op", 100, NULL, &s);
    fv_jsquotas_table_sum(&t, "ops", 101, NULL, &s);
    assert_int_equal(s.rows + s.subjects + s.bytes, 0);
    /* Q1: an older value read late lowers nothing; a newer raises counter by counter */
    struct fv_quota_usage older = {.day = 100, .subjects = 1, .rows = 15, .bytes = 50};
    assert_int_equal(fv_jsquotas_table_apply(&t, "ops", "st-b", &older), 0);
    struct fv_quota_usage mixed = {.day = 100, .subjects = 1, .rows = 30, .bytes = 50};
    assert_int_equal(fv_jsquotas_table_apply(&t, "ops", "st-b", &mixed), 1);
    memset(&s, 0, sizeof s);
    fv_jsquotas_table_sum(&t, "ops", 100, "st-a", &s);
    assert_int_equal(s.rows, 35);
    assert_int_equal(s.subjects, 2);
    assert_int_equal(s.bytes, 200);
    /* saturating: never wraps past UINT64_MAX */
    struct fv_quota_usage huge = {.day = 100, .rows = UINT64_MAX - 1};
    assert_int_equal(fv_jsquotas_table_apply(&t, "ops", "st-c", &huge), 1);
    memset(&s, 0, sizeof s);
    fv_jsquotas_table_sum(&t, "ops", 100, NULL, &s);
    assert_true(s.rows == UINT64_MAX);
    /* Q4: a node's own entries of a day */
    struct seen seen = {0};
    fv_jsquotas_table_each(&t, "st-b", 100, each, &seen);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.name, "ops");
    assert_int_equal(seen.rows, 30);
    memset(&seen, 0, sizeof seen);
    fv_jsquotas_table_each(&t, "st-b", 99, each, &seen);
    assert_int_equal(seen.n, 0);
    /* Q5: days before yesterday dropped */
    struct fv_quota_usage y = {.day = 101, .rows = 1}, today = {.day = 102, .rows = 2};
    assert_int_equal(fv_jsquotas_table_apply(&t, "ops", "st-a", &y), 1);
    assert_int_equal(fv_jsquotas_table_apply(&t, "ops", "st-a", &today), 1);
    assert_int_equal(fv_jsquotas_table_prune(&t, 102), FV_OK);
    memset(&s, 0, sizeof s);
    fv_jsquotas_table_sum(&t, "ops", 100, NULL, &s);
    assert_int_equal(s.rows, 0);
    fv_jsquotas_table_sum(&t, "ops", 101, NULL, &s);
    assert_int_equal(s.rows, 1);
    fv_jsquotas_table_sum(&t, "ops", 102, NULL, &s);
    assert_int_equal(s.rows, 3);
    fv_jsquotas_table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_key), cmocka_unit_test(test_value),
                                       cmocka_unit_test(test_table)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
