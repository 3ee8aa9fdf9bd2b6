/* test_natsconn.c - cluster/natsconn.h's pure part: subjects to shards (the pseudonym's first
 * 8 hex digits modulo the shard count; every node must agree) and the subject names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "cluster/natsconn.h"

static void shards(void **state)
{
    (void)state;
    assert_int_equal(fv_cluster_shard("00000000ffffffffffffffffffffffff", 16), 0);
    assert_int_equal(fv_cluster_shard("0000000a00000000000000000000000", 16), 10);
    assert_int_equal(fv_cluster_shard("ffffffff000000000000000000000000", 16), 15);
    assert_int_equal(fv_cluster_shard("ffffffff000000000000000000000000", 1000),
                     0xffffffffu % 1000);
    assert_int_equal(fv_cluster_shard("12345678aaaaaaaaaaaaaaaaaaaaaaaa", 7), 0x12345678u % 7);
    assert_int_equal(fv_cluster_shard("12345678", 1), 0);
    /* spread: 4096 pseudonyms over 16 shards, none empty, none over twice its share */
    unsigned n[16] = {0};
    for (unsigned i = 0; i < 4096; i++) {
        char p[33];
        snprintf(p, sizeof p, "%08x%024x", i * 2654435761u, 0);
        n[fv_cluster_shard(p, 16)]++;
    }
    for (int k = 0; k < 16; k++)
        assert_true(n[k] > 0 && n[k] < 512);
}

static void subjects(void **state)
{
    (void)state;
    struct fv_cluster_cfg c = {0};
    snprintf(c.subject_prefix, sizeof c.subject_prefix, "fv.rec");
    char s[96];
    fv_cluster_subject(&c, 0, s, sizeof s);
    assert_string_equal(s, "fv.rec.0");
    fv_cluster_subject(&c, 1023, s, sizeof s);
    assert_string_equal(s, "fv.rec.1023");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shards),
        cmocka_unit_test(subjects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
