/* test_jssubjects.c - cluster/jssubjects.h's values and merge (docs/formats.md, "Owner periods
 * and consents in the KV bucket"; docs/cluster.md P3, P5): a value opens only with the master
 * key that wrapped it, under its entry, as its kind; every malformed value - short, another
 * version or kind or key, altered in any byte, or well wrapped around rows that break S1 or
 * the layout - is refused with FV_ECORRUPT and a message naming the entry. The merge keeps
 * the longer history, never undoes an erasure, and keeps the bucket's side on a conflict. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/jskeys.h"
#include "cluster/jssubjects.h"
#include "util/err.h"

static const char DEV[] = "0123456789abcdef0123456789abcdef";
static const char SUB2[] = "fedcba9876543210fedcba9876543210";
static const char KEY_P[] = "periods.0123456789abcdef0123456789abcdef";
static const char KEY_C[] = "consents.fedcba9876543210fedcba9876543210";

static void kek_of(struct fv_kek *k, unsigned char fill)
{
    memset(k, 0, sizeof *k);
    memset(k->key, fill, FV_KEY_LEN);
    snprintf(k->id, sizeof k->id, "%02x%02x%02x%02x%02x%02x%02x%02x", fill, fill, fill, fill, 1, 2,
             3, 4);
}

/* A device with two periods: epoch 1 (the device's own pseudonym) until at, epoch 2 open. */
static size_t two_periods(struct fv_period_row r[2], int64_t at)
{
    memset(r, 0, 2 * sizeof *r);
    r[0].epoch = 1;
    snprintf(r[0].subject, sizeof r[0].subject, "%s", DEV);
    r[0].since = FV_SUBJECT_ORIGIN;
    r[0].until = at;
    r[1].epoch = 2;
    snprintf(r[1].subject, sizeof r[1].subject, "%s", SUB2);
    r[1].since = at;
    r[1].until = FV_SUBJECT_FOREVER;
    memcpy(r[1].owner, "sealed-owner-bytes", 18);
    r[1].owner_len = 18;
    return 2;
}

static void periods_round_trip(void **state)
{
    (void)state;
    struct fv_kek kek;
    kek_of(&kek, 7);
    struct fv_period_row r[2], got[FV_PERIOD_ROWS_MAX];
    size_t n = two_periods(r, 1795000000000), gn = 0;
    struct fv_buf v = {0};
    assert_int_equal(fv_jssubjects_encode_periods(&kek, KEY_P, r, n, &v), FV_OK);
    assert_memory_equal(v.data, "FVKV\x01R", 6);
    assert_memory_equal(v.data + 6, kek.id, 16);
    /* 2 + per row 4 + 32 + 8 + 8 + 8 + 2 + owner */
    assert_int_equal(v.len, FV_JSKEYS_HEAD + FV_SEAL_OVERHEAD + 2 + 2 * 62 + 18);
    assert_null(memmem(v.data, v.len, SUB2, 32)); /* nothing in clear */
    char err[256];
    assert_int_equal(fv_jssubjects_decode_periods(&kek, KEY_P, v.data, v.len, got,
                                                  FV_PERIOD_ROWS_MAX, &gn, err, sizeof err),
                     FV_OK);
    assert_int_equal(gn, 2);
    assert_memory_equal(got, r, 2 * sizeof *r);
    fv_buf_free(&v);
}

static void consents_round_trip(void **state)
{
    (void)state;
    struct fv_kek kek;
    kek_of(&kek, 7);
    struct fv_consent_rows c = {0}, got = {0};
    struct fv_consent_row a = {.purpose = "location_history", .granted = 1, .at = 5, .by = "owner"};
    struct fv_consent_row b = {.purpose = "location_history", .granted = 0, .at = 9, .by = ""};
    assert_int_equal(fv_consent_rows_add(&c, &a), FV_OK);
    assert_int_equal(fv_consent_rows_add(&c, &b), FV_OK);
    struct fv_buf v = {0};
    assert_int_equal(fv_jssubjects_encode_consents(&kek, KEY_C, &c, &v), FV_OK);
    assert_memory_equal(v.data,
                        "FVKV\x01"
                        "C",
                        6);
    assert_null(memmem(v.data, v.len, "location", 8));
    char err[256];
    assert_int_equal(
        fv_jssubjects_decode_consents(&kek, KEY_C, v.data, v.len, &got, err, sizeof err), FV_OK);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.forgotten, 0);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(got.v[i].purpose, c.v[i].purpose);
        assert_string_equal(got.v[i].by, c.v[i].by);
        assert_int_equal(got.v[i].granted, c.v[i].granted);
        assert_int_equal(got.v[i].at, c.v[i].at);
    }
    fv_buf_free(&v);
    fv_consent_rows_free(&c);
    fv_consent_rows_free(&got);
}

/* Decoding v as a periods value (consents when !periods) is refused, err naming the entry. */
static void refused(const struct fv_kek *kek, const char *key, int periods, const unsigned char *v,
                    size_t len, const char *why)
{
    char err[256] = "";
    struct fv_period_row rows[FV_PERIOD_ROWS_MAX];
    size_t n = 99;
    struct fv_consent_rows c = {0};
    int rc = periods ? fv_jssubjects_decode_periods(kek, key, v, len, rows, FV_PERIOD_ROWS_MAX, &n,
                                                    err, sizeof err)
                     : fv_jssubjects_decode_consents(kek, key, v, len, &c, err, sizeof err);
    if (rc != FV_ECORRUPT) fail_msg("%s: accepted (%d)", why, rc);
    if (strstr(err, key) == NULL) fail_msg("%s: message does not name the entry: %s", why, err);
    if (periods) assert_int_equal(n, 0);
    assert_int_equal(c.n, 0);
    fv_consent_rows_free(&c);
}

/* plaintext pt wrapped well (so only its content is wrong) */
static void refused_pt(const struct fv_kek *kek, const char *key, int periods,
                       const struct fv_buf *pt, const char *why)
{
    struct fv_buf v = {0};
    assert_int_equal(fv_jskeys_wrap(kek, key,
                                    periods ? FV_JSSUBJ_KIND_PERIODS : FV_JSSUBJ_KIND_CONSENTS,
                                    pt->data, pt->len, &v),
                     FV_OK);
    refused(kek, key, periods, v.data, v.len, why);
    fv_buf_free(&v);
}

static void periods_pt(struct fv_period_row *r, size_t n, struct fv_buf *pt)
{
    fv_buf_reset(pt);
    assert_int_equal(fv_jssubjects_periods_pt(r, n, pt), FV_OK);
}

static void bad_periods_refused(void **state)
{
    (void)state;
    struct fv_kek kek, other;
    kek_of(&kek, 7);
    kek_of(&other, 8);
    struct fv_period_row r[2];
    size_t n = two_periods(r, 1795000000000);
    struct fv_buf v = {0}, pt = {0};
    assert_int_equal(fv_jssubjects_encode_periods(&kek, KEY_P, r, n, &v), FV_OK);

    /* the envelope (J4 of jskeys.h, here for kind 'R') */
    refused(&kek, KEY_P, 1, v.data, 0, "empty");
    refused(&kek, KEY_P, 1, v.data, FV_JSKEYS_HEAD + FV_SEAL_OVERHEAD - 1, "short");
    refused(&kek, KEY_P, 1, v.data, v.len - 1, "cut");
    refused(&other, KEY_P, 1, v.data, v.len, "another master key");
    refused(&kek, "periods.00000000000000000000000000000000", 1, v.data, v.len, "moved");
    refused(&kek, KEY_P, 0, v.data, v.len, "a periods value read as consents");
    for (size_t i = 0; i < v.len; i++) {
        v.data[i] ^= 0x01;
        char why[64];
        snprintf(why, sizeof why, "byte %zu altered", i);
        refused(&kek, KEY_P, 1, v.data, v.len, why);
        v.data[i] ^= 0x01;
    }
    v.data[4] = 2;
    refused(&kek, KEY_P, 1, v.data, v.len, "version 2");
    fv_buf_free(&v);

    /* well wrapped, wrong inside */
    periods_pt(r, 0, &pt);
    refused_pt(&kek, KEY_P, 1, &pt, "no rows");
    periods_pt(r, n, &pt);
    assert_int_equal(fv_buf_append(&pt, "x", 1), FV_OK);
    refused_pt(&kek, KEY_P, 1, &pt, "a byte after the rows");
    periods_pt(r, n, &pt);
    pt.len -= 1;
    refused_pt(&kek, KEY_P, 1, &pt, "cut inside the last row");
    periods_pt(r, n, &pt);
    pt.data[1] = 3; /* says 3 rows */
    refused_pt(&kek, KEY_P, 1, &pt, "more rows announced than given");
    struct fv_period_row b[2];
    memcpy(b, r, sizeof b);
    b[1].epoch = 3;
    periods_pt(b, 2, &pt);
    refused_pt(&kek, KEY_P, 1, &pt, "an epoch skipped (S1)");
    memcpy(b, r, sizeof b);
    b[1].since += 1;
    periods_pt(b, 2, &pt);
    refused_pt(&kek, KEY_P, 1, &pt, "a gap between periods (S1)");
    memcpy(b, r, sizeof b);
    b[1].until = b[1].since + 5;
    periods_pt(b, 2, &pt);
    refused_pt(&kek, KEY_P, 1, &pt, "the last period closed (S1)");
    memcpy(b, r, sizeof b);
    b[0].until = FV_SUBJECT_FOREVER;
    periods_pt(b, 1, &pt);
    assert_int_equal(pt.len > 0, 1);
    b[0].since = 0;
    periods_pt(b, 1, &pt);
    refused_pt(&kek, KEY_P, 1, &pt, "epoch 1 not from the origin (S1)");
    memcpy(b, r, sizeof b);
    b[1].subject[3] = 'X';
    periods_pt(b, 2, &pt);
    refused_pt(&kek, KEY_P, 1, &pt, "a subject that is not a pseudonym");
    memcpy(b, r, sizeof b);
    b[1].forgotten = 1795000001000;
    periods_pt(b, 2, &pt);
    refused_pt(&kek, KEY_P, 1, &pt, "an owner beside forgotten");
    memcpy(b, r, sizeof b);
    periods_pt(b, 2, &pt);
    /* the second row's owner length (its last 2 bytes before the owner) made too large */
    size_t ol = pt.len - 18 - 2;
    pt.data[ol] = 0xff;
    pt.data[ol + 1] = 0xff;
    refused_pt(&kek, KEY_P, 1, &pt, "an owner longer than any");
    fv_buf_free(&pt);
}

static void bad_consents_refused(void **state)
{
    (void)state;
    struct fv_kek kek;
    kek_of(&kek, 7);
    struct fv_consent_rows c = {0};
    struct fv_consent_row a = {.purpose = "clips", .granted = 1, .at = 5, .by = "owner"};
    assert_int_equal(fv_consent_rows_add(&c, &a), FV_OK);
    struct fv_buf v = {0}, pt = {0};
    assert_int_equal(fv_jssubjects_encode_consents(&kek, KEY_C, &c, &v), FV_OK);
    refused(&kek, KEY_C, 1, v.data, v.len, "a consents value read as periods");
    refused(&kek, "consents.00000000000000000000000000000000", 0, v.data, v.len, "moved");
    for (size_t i = 0; i < v.len; i++) {
        v.data[i] ^= 0x80;
        refused(&kek, KEY_C, 0, v.data, v.len, "altered");
        v.data[i] ^= 0x80;
    }
    fv_buf_free(&v);
    /* layout: forgotten(1) count(4) then granted(1) at(8) plen(1) purpose blen(1) by */
    assert_int_equal(fv_jssubjects_consents_pt(&c, &pt), FV_OK);
    pt.data[0] = 1;
    refused_pt(&kek, KEY_C, 0, &pt, "forgotten with rows");
    pt.data[0] = 2;
    refused_pt(&kek, KEY_C, 0, &pt, "forgotten neither 0 nor 1");
    pt.data[0] = 0;
    pt.data[5] = 2;
    refused_pt(&kek, KEY_C, 0, &pt, "granted neither 0 nor 1");
    pt.data[5] = 1;
    pt.data[14] = 0;
    refused_pt(&kek, KEY_C, 0, &pt, "an empty purpose");
    pt.data[14] = 5;
    pt.data[15] = '\n';
    refused_pt(&kek, KEY_C, 0, &pt, "a control character in the purpose");
    pt.data[15] = 'c';
    pt.data[4] = 2;
    refused_pt(&kek, KEY_C, 0, &pt, "more rows announced than given");
    pt.data[4] = 1;
    assert_int_equal(fv_buf_append(&pt, "z", 1), FV_OK);
    refused_pt(&kek, KEY_C, 0, &pt, "a byte after the rows");
    pt.len -= 2;
    refused_pt(&kek, KEY_C, 0, &pt, "cut");
    pt.len = 3;
    refused_pt(&kek, KEY_C, 0, &pt, "no count");
    fv_buf_free(&pt);
    fv_consent_rows_free(&c);
}

static void periods_merge(void **state)
{
    (void)state;
    struct fv_period_row two[2], one[1], out[FV_PERIOD_ROWS_MAX];
    size_t n = 0;
    two_periods(two, 1000);
    one[0] = two[0];
    one[0].until = FV_SUBJECT_FOREVER; /* a node that has not seen the owner change */
    /* the longer history wins from either side; epoch 1 closed by the other's epoch 2 */
    assert_int_equal(fv_jssubjects_merge_periods(one, 1, two, 2, out, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(out, two, sizeof two);
    assert_int_equal(fv_jssubjects_merge_periods(two, 2, one, 1, out, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(out, two, sizeof two);
    /* an owner recorded on one side is kept; forgotten on either side wins, owner gone */
    struct fv_period_row a[2], b[2];
    two_periods(a, 1000);
    two_periods(b, 1000);
    b[1].owner_len = 0;
    assert_int_equal(fv_jssubjects_merge_periods(a, 2, b, 2, out, &n), 0);
    assert_int_equal(out[1].owner_len, 18);
    b[1].forgotten = 77;
    assert_int_equal(fv_jssubjects_merge_periods(a, 2, b, 2, out, &n), 0);
    assert_int_equal(out[1].owner_len, 0);
    assert_int_equal(out[1].forgotten, 77);
    assert_int_equal(fv_jssubjects_merge_periods(b, 2, a, 2, out, &n), 0); /* either side */
    assert_int_equal(out[1].owner_len, 0);
    assert_int_equal(out[1].forgotten, 77);
    /* two owner changes at different times: a conflict, the bucket's (b) kept */
    two_periods(a, 1000);
    two_periods(b, 2000);
    assert_int_equal(fv_jssubjects_merge_periods(a, 2, b, 2, out, &n), 1);
    assert_int_equal(n, 2);
    assert_memory_equal(out, b, sizeof b);
    /* two different owners recorded for one period: a conflict */
    two_periods(a, 1000);
    two_periods(b, 1000);
    b[1].owner[0] ^= 1;
    assert_int_equal(fv_jssubjects_merge_periods(a, 2, b, 2, out, &n), 1);
    assert_memory_equal(out, b, sizeof b);
}

static void consents_merge(void **state)
{
    (void)state;
    struct fv_consent_rows a = {0}, b = {0}, out = {0};
    struct fv_consent_row g1 = {.purpose = "clips", .granted = 1, .at = 10, .by = "owner"};
    struct fv_consent_row w2 = {.purpose = "clips", .granted = 0, .at = 20, .by = "owner"};
    struct fv_consent_row g3 = {.purpose = "model_training", .granted = 1, .at = 15, .by = ""};
    fv_consent_rows_add(&a, &g1);
    fv_consent_rows_add(&a, &w2);
    fv_consent_rows_add(&b, &g1);
    fv_consent_rows_add(&b, &g3);
    /* the union, in time order, each change once */
    assert_int_equal(fv_jssubjects_merge_consents(&a, &b, &out), FV_OK);
    assert_int_equal(out.n, 3);
    assert_int_equal(out.v[0].at, 10);
    assert_int_equal(out.v[1].at, 15);
    assert_int_equal(out.v[2].at, 20);
    assert_int_equal(out.forgotten, 0);
    /* a repeated change (a re-confirmation) on one side counts as its own row */
    fv_consent_rows_add(&a, &g1);
    assert_int_equal(fv_jssubjects_merge_consents(&a, &b, &out), FV_OK);
    assert_int_equal(out.n, 4);
    /* an erasure on either side is never undone by the other's rows */
    b.forgotten = 1;
    assert_int_equal(fv_jssubjects_merge_consents(&a, &b, &out), FV_OK);
    assert_int_equal(out.forgotten, 1);
    assert_int_equal(out.n, 0);
    assert_int_equal(fv_jssubjects_merge_consents(&b, &a, &out), FV_OK);
    assert_int_equal(out.forgotten, 1);
    assert_int_equal(out.n, 0);
    fv_consent_rows_free(&a);
    fv_consent_rows_free(&b);
    fv_consent_rows_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(periods_round_trip),  cmocka_unit_test(consents_round_trip),
        cmocka_unit_test(bad_periods_refused), cmocka_unit_test(bad_consents_refused),
        cmocka_unit_test(periods_merge),       cmocka_unit_test(consents_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
