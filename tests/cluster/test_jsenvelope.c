/* test_jsenvelope.c - cluster/jsenvelope.h E1-E2: a sealed envelope opens with the master key
 * that sealed it (or as the previous key of a rotation), for its subject only, within the
 * clock window; altered, cut, moved to another subject, sealed by another key, replayed
 * after the window or sealed too far ahead, it is refused. Nothing of the body is in the
 * sealed bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/jsenvelope.h"
#include "util/err.h"

#define SUBJ "fvdl.FLEET.cmd"
#define T0   1796256000000ull

static void kek_of(struct fv_kek *k, unsigned char fill)
{
    memset(k, 0, sizeof *k);
    memset(k->key, fill, FV_KEY_LEN);
    snprintf(k->id, sizeof k->id, "%02x%02x%02x%02x%02x%02x%02x%02x", fill, fill, fill, fill, 1, 2,
             3, 4);
}

static int open_at(const struct fv_kek *k, const char *subj, uint64_t now, const struct fv_buf *v,
                   struct fv_buf *body)
{
    char err[400];
    err[0] = '\0';
    int rc = fv_jsenv_open(k, subj, now, v->data, v->len, body, err, sizeof err);
    if (rc) assert_true(strlen(err) > 0); /* a refusal says why */
    return rc;
}

static void test_round_trip_and_nothing_in_clear(void **state)
{
    (void)state;
    struct fv_kek k;
    kek_of(&k, 7);
    const char *body = "5YJ3E1EA7KF000001 a command for this vehicle";
    struct fv_buf v = {0}, got = {0};
    assert_int_equal(fv_jsenv_seal(&k, SUBJ, T0, body, strlen(body), &v), FV_OK);
    assert_null(memmem(v.data, v.len, "5YJ3E1EA7KF000001", 17));
    assert_int_equal(open_at(&k, SUBJ, T0 + 1000, &v, &got), FV_OK);
    assert_int_equal(got.len, strlen(body));
    assert_memory_equal(got.data, body, got.len);
    /* an empty body, and a clock within the window either way */
    fv_buf_reset(&v);
    assert_int_equal(fv_jsenv_seal(&k, SUBJ, T0, NULL, 0, &v), FV_OK);
    assert_int_equal(open_at(&k, SUBJ, T0 - FV_JSENV_WINDOW_MS, &v, &got), FV_OK);
    assert_int_equal(got.len, 0);
    assert_int_equal(open_at(&k, SUBJ, T0 + FV_JSENV_WINDOW_MS, &v, &got), FV_OK);
    fv_buf_free(&v);
    fv_buf_free(&got);
}

static void test_refusals(void **state)
{
    (void)state;
    struct fv_kek k, other;
    kek_of(&k, 7);
    kek_of(&other, 9);
    const char *body = "SITE000000001 dispatch 5 kW";
    struct fv_buf v = {0}, got = {0};
    assert_int_equal(fv_jsenv_seal(&k, SUBJ, T0, body, strlen(body), &v), FV_OK);
    /* another key; another subject (moved from the command subject to the uplink's) */
    assert_int_equal(open_at(&other, SUBJ, T0, &v, &got), FV_ECORRUPT);
    assert_int_equal(open_at(&k, "fvdl.FLEET.up", T0, &v, &got), FV_ECORRUPT);
    /* a replay after the window, or a message sealed too far ahead of this clock */
    assert_int_equal(open_at(&k, SUBJ, T0 + FV_JSENV_WINDOW_MS + 1, &v, &got), FV_ECORRUPT);
    assert_int_equal(open_at(&k, SUBJ, T0 - FV_JSENV_WINDOW_MS - 1, &v, &got), FV_ECORRUPT);
    /* every byte altered in turn, and every cut */
    for (size_t i = 0; i < v.len; i++) {
        v.data[i] ^= 0x01;
        assert_int_equal(open_at(&k, SUBJ, T0, &v, &got), FV_ECORRUPT);
        v.data[i] ^= 0x01;
    }
    for (size_t n = 0; n < v.len; n++) {
        char err[400];
        assert_int_equal(fv_jsenv_open(&k, SUBJ, T0, v.data, n, &got, err, sizeof err),
                         FV_ECORRUPT);
    }
    assert_int_equal(open_at(&k, SUBJ, T0, &v, &got), FV_OK);
    /* the old, unsealed envelope (format version 1) is refused too */
    unsigned char plain[] = {1, 1, 3, 'V', 'I', 'N', 0, 0};
    char err[400];
    assert_int_equal(fv_jsenv_open(&k, SUBJ, T0, plain, sizeof plain, &got, err, sizeof err),
                     FV_ECORRUPT);
    fv_buf_free(&v);
    fv_buf_free(&got);
}

static void test_rotation(void **state)
{
    (void)state;
    struct fv_kek a, b, ba;
    kek_of(&a, 7);
    kek_of(&b, 8);
    ba = b; /* the new key, with the old as the previous one (jskeys.h J6) */
    memcpy(ba.prev_key, a.key, FV_KEY_LEN);
    memcpy(ba.prev_id, a.id, sizeof ba.prev_id);
    struct fv_buf v = {0}, got = {0};
    assert_int_equal(fv_jsenv_seal(&a, SUBJ, T0, "x", 1, &v), FV_OK);
    assert_int_equal(open_at(&ba, SUBJ, T0, &v, &got), FV_OK); /* a node not restarted yet */
    assert_int_equal(open_at(&b, SUBJ, T0, &v, &got), FV_ECORRUPT);
    fv_buf_reset(&v);
    assert_int_equal(fv_jsenv_seal(&ba, SUBJ, T0, "y", 1, &v), FV_OK); /* sealed by the new */
    assert_int_equal(open_at(&b, SUBJ, T0, &v, &got), FV_OK);
    assert_int_equal(open_at(&a, SUBJ, T0, &v, &got), FV_ECORRUPT);
    fv_buf_free(&v);
    fv_buf_free(&got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_nothing_in_clear),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_rotation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
