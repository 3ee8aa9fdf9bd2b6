/* test_jsprincipals.c - cluster/jsprincipals.h's values and merge (docs/formats.md,
 * "Principals in the KV bucket"; docs/cluster.md, "Principals"): a value opens only with the
 * master key that wrapped it, under its entry, as its kind, and naming the principal of its
 * entry; an altered or cut value is refused. The merge is commutative, idempotent and
 * monotonic: revocation wins and stays, approval stays, a name created twice keeps one
 * principal (the earlier, then the smaller token hash) whichever side it is on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/jskeys.h"
#include "cluster/jsprincipals.h"
#include "util/err.h"

static void kek_of(struct fv_kek *k, unsigned char fill)
{
    memset(k, 0, sizeof *k);
    memset(k->key, fill, FV_KEY_LEN);
    snprintf(k->id, sizeof k->id, "%02x%02x%02x%02x%02x%02x%02x%02x", fill, fill, fill, fill, 1, 2,
             3, 4);
}

static struct fv_principal_row row(const char *name, const char *role, unsigned char hash_fill,
                                   int64_t created)
{
    struct fv_principal_row r;
    memset(&r, 0, sizeof r);
    snprintf(r.p.name, sizeof r.p.name, "%s", name);
    snprintf(r.p.role, sizeof r.p.role, "%s", role);
    memset(r.token_hash, hash_fill, sizeof r.token_hash);
    r.p.created_ms = created;
    return r;
}

static int same(const struct fv_principal_row *x, const struct fv_principal_row *y)
{
    struct fv_buf a = {0}, b = {0};
    assert_int_equal(fv_jsprincipals_pt(x, &a), FV_OK);
    assert_int_equal(fv_jsprincipals_pt(y, &b), FV_OK);
    int eq = a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
    fv_buf_free(&a);
    fv_buf_free(&b);
    return eq;
}

static void round_trip(void **state)
{
    (void)state;
    struct fv_kek kek, other;
    kek_of(&kek, 7);
    kek_of(&other, 9);
    struct fv_principal_row r = row("reader", "ops", 0xab, 1796000000000), got;
    snprintf(r.p.created_by, sizeof r.p.created_by, "boss");
    r.p.approved_ms = 1796000000100;
    snprintf(r.p.approved_by, sizeof r.p.approved_by, "po");
    struct fv_buf v = {0};
    char node[FV_JSPRINC_NODE_MAX + 1], err[256];
    assert_int_equal(fv_jsprincipals_encode(&kek, &r, "st-a", &v), FV_OK);
    assert_memory_equal(v.data,
                        "FVKV\x01"
                        "A",
                        6);
    /* the token hash is not in clear */
    for (size_t i = 0; i + 32 <= v.len; i++)
        assert_false(memcmp(v.data + i, r.token_hash, 32) == 0);
    assert_int_equal(fv_jsprincipals_decode(&kek, "principal.reader", v.data, v.len, &got, node,
                                            err, sizeof err),
                     FV_OK);
    assert_true(same(&r, &got));
    assert_string_equal(node, "st-a");
    assert_string_equal(got.p.approved_by, "po");
    /* another master key, another entry, another kind: refused */
    assert_int_equal(fv_jsprincipals_decode(&other, "principal.reader", v.data, v.len, &got, node,
                                            err, sizeof err),
                     FV_ECORRUPT);
    assert_int_equal(fv_jsprincipals_decode(&kek, "principal.writer", v.data, v.len, &got, node,
                                            err, sizeof err),
                     FV_ECORRUPT);
    assert_non_null(strstr(err, "principal.writer"));
    /* every byte altered, every cut: refused */
    for (size_t i = 0; i < v.len; i++) {
        v.data[i] ^= 0x01;
        assert_int_equal(fv_jsprincipals_decode(&kek, "principal.reader", v.data, v.len, &got, node,
                                                err, sizeof err),
                         FV_ECORRUPT);
        v.data[i] ^= 0x01;
    }
    for (size_t n = 0; n < v.len; n++)
        assert_int_equal(fv_jsprincipals_decode(&kek, "principal.reader", v.data, n, &got, node,
                                                err, sizeof err),
                         FV_ECORRUPT);
    fv_buf_free(&v);
    /* a value well wrapped under another entry's key, naming another principal: refused */
    struct fv_principal_row w = row("writer", "ops", 0xcd, 1796000000000);
    struct fv_buf pt = {0};
    assert_int_equal(fv_jsprincipals_pt(&w, &pt), FV_OK);
    assert_int_equal(fv_buf_append(&pt, "\x04st-a", 5), FV_OK);
    assert_int_equal(fv_jskeys_wrap(&kek, "principal.reader", FV_JSPRINC_KIND, pt.data, pt.len, &v),
                     FV_OK);
    assert_int_equal(fv_jsprincipals_decode(&kek, "principal.reader", v.data, v.len, &got, node,
                                            err, sizeof err),
                     FV_ECORRUPT);
    fv_buf_free(&v);
    fv_buf_free(&pt);
}

/* merge both ways gives the same, and merging the result again changes nothing */
static int merge_both(const struct fv_principal_row *a, const struct fv_principal_row *b,
                      struct fv_principal_row *out)
{
    struct fv_principal_row ab, ba, again;
    int c1 = fv_jsprincipals_merge(a, b, &ab), c2 = fv_jsprincipals_merge(b, a, &ba);
    assert_int_equal(c1, c2);
    assert_true(same(&ab, &ba));
    assert_int_equal(fv_jsprincipals_merge(&ab, &ab, &again), 0);
    assert_true(same(&ab, &again));
    *out = ab;
    return c1;
}

static void revocation_and_approval_stay(void **state)
{
    (void)state;
    struct fv_principal_row pending = row("reader", "ops", 0x11, 1000), m;
    struct fv_principal_row approved = pending, revoked = pending, revoked2 = pending;
    approved.p.approved_ms = 2000;
    snprintf(approved.p.approved_by, sizeof approved.p.approved_by, "po");
    revoked.p.revoked_ms = 3000;
    revoked2.p.revoked_ms = 2500;
    revoked2.p.approved_ms = 1900;
    snprintf(revoked2.p.approved_by, sizeof revoked2.p.approved_by, "po2");

    assert_int_equal(merge_both(&pending, &approved, &m), 0); /* approval stays */
    assert_int_equal(m.p.approved_ms, 2000);
    assert_string_equal(m.p.approved_by, "po");
    assert_int_equal(merge_both(&approved, &revoked, &m), 0); /* revocation wins */
    assert_int_equal(m.p.revoked_ms, 3000);
    assert_int_equal(m.p.approved_ms, 2000);
    assert_int_equal(merge_both(&revoked, &revoked2, &m), 0); /* the earlier of each */
    assert_int_equal(m.p.revoked_ms, 2500);
    assert_int_equal(m.p.approved_ms, 1900);
    assert_string_equal(m.p.approved_by, "po2");
    /* an approval at the same time by two approvers: the smaller name, on both sides */
    struct fv_principal_row x = approved, y = approved;
    snprintf(y.p.approved_by, sizeof y.p.approved_by, "anna");
    assert_int_equal(merge_both(&x, &y, &m), 0);
    assert_string_equal(m.p.approved_by, "anna");
    /* created_by recorded on one side is kept */
    x = pending;
    snprintf(x.p.created_by, sizeof x.p.created_by, "boss");
    assert_int_equal(merge_both(&x, &pending, &m), 0);
    assert_string_equal(m.p.created_by, "boss");
}

static void one_name_two_principals(void **state)
{
    (void)state;
    struct fv_principal_row early = row("twin", "support", 0x99, 1000);
    struct fv_principal_row late = row("twin", "ops", 0x11, 1001), m;
    late.p.approved_ms = 1500; /* approved, yet created later: it loses */
    assert_int_equal(merge_both(&early, &late, &m), 1);
    assert_true(same(&m, &early));
    /* created in the same millisecond: the smaller token hash, whatever the roles */
    struct fv_principal_row big = row("twin", "ops", 0x22, 1000),
                            small = row("twin", "support", 0x21, 1000);
    assert_int_equal(merge_both(&big, &small, &m), 1);
    assert_true(same(&m, &small));
    /* same hash, another role (not made by fleetvault, but well defined): the smaller role */
    struct fv_principal_row r1 = row("twin", "ops", 0x21, 1000),
                            r2 = row("twin", "analyst", 0x21, 1000);
    assert_int_equal(merge_both(&r1, &r2, &m), 1);
    assert_string_equal(m.p.role, "analyst");
    /* the loser's later approval or revocation never changes the winner */
    struct fv_principal_row loser = late;
    loser.p.revoked_ms = 5000;
    assert_int_equal(merge_both(&early, &loser, &m), 1);
    assert_true(same(&m, &early));
    assert_int_equal(m.p.revoked_ms, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(revocation_and_approval_stay),
        cmocka_unit_test(one_name_two_principals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
