/* test_jszones.c - cluster/jszones.h's values and merge (docs/formats.md, "Privacy zones in
 * the KV bucket"; docs/cluster.md, "Privacy zones"): a value opens only with the master key
 * that wrapped it, under its own entry and as its kind; an altered or cut value is refused;
 * the merge (Z7) picks the same winner whichever side each value is on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "cluster/jszones.h"
#include "util/err.h"

#define PS "0123456789abcdef0123456789abcdef"

static void kek_of(struct fv_kek *k, unsigned char fill)
{
    memset(k, 0, sizeof *k);
    memset(k->key, fill, FV_KEY_LEN);
    snprintf(k->id, sizeof k->id, "%02x%02x%02x%02x01020304", fill, fill, fill, fill);
}

static struct fv_jszone zone(int removed, int64_t ms, unsigned char fill, size_t len)
{
    struct fv_jszone z;
    memset(&z, 0, sizeof z);
    snprintf(z.pseudo, sizeof z.pseudo, "%s", PS);
    snprintf(z.label, sizeof z.label, "home");
    z.removed = removed;
    z.ms = ms;
    if (!removed) {
        memset(z.blob, fill, len);
        z.len = len;
    }
    return z;
}

static void round_trip(void **state)
{
    (void)state;
    struct fv_kek k, other;
    kek_of(&k, 7);
    kek_of(&other, 9);
    char key[80], node[65], err[256];
    fv_jszones_key(PS, "home", key, sizeof key);
    assert_string_equal(key, "zone." PS ".home");
    for (int removed = 0; removed < 2; removed++) {
        struct fv_jszone z = zone(removed, 1700000000000, 0x5a, 53), got;
        struct fv_buf v = {0};
        assert_int_equal(fv_jszones_encode(&k, &z, "st-a", &v), FV_OK);
        assert_int_equal(fv_jszones_decode(&k, key, v.data, v.len, &got, node, err, sizeof err),
                         FV_OK);
        assert_string_equal(node, "st-a");
        assert_int_equal(got.removed, removed);
        assert_int_equal(got.ms, z.ms);
        assert_int_equal(got.len, z.len);
        assert_memory_equal(got.blob, z.blob, z.len);
        assert_string_equal(got.pseudo, PS);
        assert_string_equal(got.label, "home");
        /* another master key, another entry, every byte altered, every cut: refused */
        assert_int_equal(fv_jszones_decode(&other, key, v.data, v.len, &got, node, err, sizeof err),
                         FV_ECORRUPT);
        assert_int_equal(
            fv_jszones_decode(&k, "zone." PS ".work", v.data, v.len, &got, node, err, sizeof err),
            FV_ECORRUPT);
        assert_int_equal(
            fv_jszones_decode(&k, "principal.x", v.data, v.len, &got, node, err, sizeof err),
            FV_ECORRUPT);
        for (size_t i = 0; i < v.len; i++) {
            v.data[i] ^= 0x01;
            assert_int_equal(fv_jszones_decode(&k, key, v.data, v.len, &got, node, err, sizeof err),
                             FV_ECORRUPT);
            v.data[i] ^= 0x01;
        }
        for (size_t n = 0; n < v.len; n++)
            assert_int_equal(fv_jszones_decode(&k, key, v.data, n, &got, node, err, sizeof err),
                             FV_ECORRUPT);
        fv_buf_free(&v);
    }
}

static void merge_is_symmetric(void **state)
{
    (void)state;
    struct fv_jszone older = zone(0, 1000, 1, 53), newer = zone(0, 2000, 2, 53);
    struct fv_jszone gone_later = zone(1, 3000, 0, 0), gone_same = zone(1, 2000, 0, 0);
    struct fv_jszone twin_small = zone(0, 2000, 1, 53), twin_big = zone(0, 2000, 3, 53);
    /* the newer wins */
    assert_int_equal(fv_jszones_winner(&older, &newer), 1);
    assert_int_equal(fv_jszones_winner(&newer, &older), 0);
    assert_int_equal(fv_jszones_winner(&newer, &gone_later), 1);
    assert_int_equal(fv_jszones_winner(&gone_later, &newer), 0);
    /* at the same time a removal wins, then the smaller sealed bytes */
    assert_int_equal(fv_jszones_winner(&newer, &gone_same), 1);
    assert_int_equal(fv_jszones_winner(&gone_same, &newer), 0);
    assert_int_equal(fv_jszones_winner(&twin_big, &twin_small), 1);
    assert_int_equal(fv_jszones_winner(&twin_small, &twin_big), 0);
    assert_int_equal(fv_jszones_winner(&twin_small, &twin_small), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(merge_is_symmetric),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
