/* test_label_queue.c - the labelers' leases (data/label_queue.h L1-L4): one clip per
 * labeler, one labeler per clip, a second claim names the clip held, only the holder
 * releases, a lease expires at claimed + lease_ms and its slot is reused, a dropped clip is
 * free again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "data/label_queue.h"
#include "util/err.h"

#define T0    1800000000000LL
#define LEASE 1000

static void test_claims(void **state)
{
    (void)state;
    struct fv_label_queue *q;
    char clip[FV_LABEL_NAME_MAX + 1], who[FV_LABEL_NAME_MAX + 1];
    int64_t until = 0;
    assert_int_equal(fv_label_queue_new(0, &q), FV_EINVAL);
    assert_int_equal(fv_label_queue_new(LEASE, &q), FV_OK);
    assert_int_equal(fv_label_claim(q, "ann", "c1", T0, &until, clip), FV_OK);
    assert_true(until == T0 + LEASE);
    /* L1, L3: ann holds c1; a second claim (any clip, even c1) names it */
    memset(clip, 0, sizeof clip);
    assert_int_equal(fv_label_claim(q, "ann", "c2", T0 + 1, NULL, clip), FV_EEXIST);
    assert_string_equal(clip, "c1");
    assert_int_equal(fv_label_claim(q, "ann", "c1", T0 + 1, NULL, clip), FV_EEXIST);
    /* another labeler cannot take c1, may take c2 */
    assert_int_equal(fv_label_claim(q, "bob", "c1", T0 + 2, NULL, clip), FV_EAGAIN);
    assert_int_equal(fv_label_claim(q, "bob", "c2", T0 + 2, NULL, clip), FV_OK);
    assert_int_equal(fv_label_holder(q, "c1", T0 + 3, who), 1);
    assert_string_equal(who, "ann");
    assert_int_equal(fv_label_held(q, "bob", T0 + 3, clip, NULL), 1);
    assert_string_equal(clip, "c2");
    assert_int_equal(fv_label_count(q, T0 + 3), 2);
    /* L4: only the holder releases */
    assert_int_equal(fv_label_release(q, "bob", "c1", T0 + 4), FV_ENOENT);
    assert_int_equal(fv_label_holder(q, "c1", T0 + 4, NULL), 1);
    assert_int_equal(fv_label_release(q, "ann", "c1", T0 + 4), FV_OK);
    assert_int_equal(fv_label_release(q, "ann", "c1", T0 + 4), FV_ENOENT);
    assert_int_equal(fv_label_holder(q, "c1", T0 + 4, NULL), 0);
    assert_int_equal(fv_label_held(q, "ann", T0 + 4, clip, NULL), 0);
    /* bad names */
    assert_int_equal(fv_label_claim(q, "", "c3", T0, NULL, NULL), FV_EINVAL);
    char longname[FV_LABEL_NAME_MAX + 2];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(fv_label_claim(q, "cat", longname, T0, NULL, NULL), FV_EINVAL);
    fv_label_queue_free(q);
}

static void test_expiry(void **state)
{
    (void)state;
    struct fv_label_queue *q;
    char clip[FV_LABEL_NAME_MAX + 1];
    assert_int_equal(fv_label_queue_new(LEASE, &q), FV_OK);
    assert_int_equal(fv_label_claim(q, "ann", "c1", T0, NULL, NULL), FV_OK);
    /* L2: held until the last millisecond before the expiry, free from it on */
    assert_int_equal(fv_label_held(q, "ann", T0 + LEASE - 1, clip, NULL), 1);
    assert_int_equal(fv_label_claim(q, "bob", "c1", T0 + LEASE - 1, NULL, NULL), FV_EAGAIN);
    assert_int_equal(fv_label_held(q, "ann", T0 + LEASE, clip, NULL), 0);
    assert_int_equal(fv_label_holder(q, "c1", T0 + LEASE, NULL), 0);
    assert_int_equal(fv_label_release(q, "ann", "c1", T0 + LEASE), FV_ENOENT);
    assert_int_equal(fv_label_claim(q, "bob", "c1", T0 + LEASE, NULL, NULL), FV_OK);
    /* ann, whose lease ended, may claim again */
    assert_int_equal(fv_label_claim(q, "ann", "c2", T0 + LEASE, NULL, NULL), FV_OK);
    assert_int_equal(fv_label_count(q, T0 + LEASE), 2);
    /* many leases over time reuse the expired slots (no growth without bound) */
    for (int i = 0; i < 100; i++) {
        char c[16];
        snprintf(c, sizeof c, "x%d", i);
        assert_int_equal(fv_label_claim(q, "eve", c, T0 + 10 * LEASE * (i + 1), NULL, NULL), FV_OK);
    }
    assert_int_equal(fv_label_count(q, T0 + 1000 * LEASE + 1), 1);
    /* L2: a dropped clip (labeled, erased) is free again */
    assert_int_equal(fv_label_held(q, "eve", T0 + 1000 * LEASE + 1, clip, NULL), 1);
    fv_label_drop(q, clip);
    assert_int_equal(fv_label_held(q, "eve", T0 + 1000 * LEASE + 1, NULL, NULL), 0);
    fv_label_queue_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_claims),
                                       cmocka_unit_test(test_expiry)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
