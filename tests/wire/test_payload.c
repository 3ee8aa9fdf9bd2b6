/* test_payload.c - V payload decoding of the vectors (quirks Q1-Q4 in src/wire/payload.c),
 * vin normalisation, alerts/errors validation, encode/decode round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>

#include "../support/testutil.h"
#include "util/err.h"
#include "wire/payload.h"
#include "wire/signals.h"

static const struct fv_value *find(const struct fv_vrecord *r, uint32_t field)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->data[i].field == field) return &r->data[i].value;
    return NULL;
}

/* A V record of n datums, signal numbers first, first+step, ...: normalise refuses it beyond
 * the limits (payload.h), and accepts it at them (issue 8: one record of 70,000 signals made a
 * store block no reader opens). */
static int normalise_n(size_t n, long first, long step)
{
    struct fv_vrecord r = {.created_at_ms = 1795000000000ULL, .vin = (char *)"VIN", .n = n};
    r.data = calloc(n, sizeof *r.data);
    assert_non_null(r.data);
    for (size_t i = 0; i < n; i++) {
        r.data[i].field = (uint32_t)(first + (long)i * step);
        r.data[i].value = (struct fv_value){.kind = FV_VK_DOUBLE, .u.d = (double)i};
    }
    struct fv_buf pl = {0}, out = {0};
    assert_int_equal(fv_payload_encode_v(&r, &pl), FV_OK);
    struct fv_vrecord v;
    char err[256] = "";
    int rc = fv_payload_normalise("V", 1, pl.data, pl.len, "DEV", &out, &v, err, sizeof err);
    if (rc == FV_OK) {
        assert_int_equal(v.n, n);
    } else {
        assert_int_equal(rc, FV_EPROTO);
        assert_true(strstr(err, "V record") != NULL);
        assert_int_equal(v.n, 0);
    }
    fv_vrecord_free(&v);
    fv_buf_free(&pl);
    fv_buf_free(&out);
    free(r.data);
    return rc;
}

static void test_v_limits(void **state)
{
    (void)state;
    assert_int_equal(normalise_n(FV_PAYLOAD_MAX_DATUMS, 1, 1), FV_OK);
    assert_int_equal(normalise_n(FV_PAYLOAD_MAX_DATUMS + 1, 1, 1), FV_EPROTO);
    assert_int_equal(normalise_n(70000, 70000, -1), FV_EPROTO); /* the record */
    assert_int_equal(normalise_n(2, FV_PAYLOAD_MAX_FIELD - 1, 1), FV_OK);
    assert_int_equal(normalise_n(2, FV_PAYLOAD_MAX_FIELD, 1), FV_EPROTO);
    assert_int_equal(normalise_n(1, -5, 1), FV_EPROTO); /* negative int32 keys */
    /* decoding (WAL replay) keeps whatever was stored */
    struct fv_vrecord r = {.vin = (char *)"VIN", .n = FV_PAYLOAD_MAX_DATUMS + 1};
    r.data = calloc(r.n, sizeof *r.data);
    assert_non_null(r.data);
    for (size_t i = 0; i < r.n; i++)
        r.data[i] = (struct fv_datum){(uint32_t)i, {.kind = FV_VK_INT, .u.i = 1}};
    struct fv_buf pl = {0};
    assert_int_equal(fv_payload_encode_v(&r, &pl), FV_OK);
    struct fv_vrecord v;
    assert_int_equal(fv_payload_decode_v(pl.data, pl.len, &v, NULL, 0), FV_OK);
    assert_int_equal(v.n, r.n);
    fv_vrecord_free(&v);
    fv_buf_free(&pl);
    free(r.data);
}

static void test_basic(void **state)
{
    (void)state;
    size_t len;
    unsigned char *p = fv_test_read_vector("v-basic.payload.bin", &len);
    struct fv_vrecord r;
    char err[256];
    assert_int_equal(fv_payload_decode_v(p, len, &r, err, sizeof err), FV_OK);
    assert_int_equal(r.n, 6);
    assert_int_equal(r.created_at_ms, 1795000000250ULL);
    assert_string_equal(r.vin, "5YJ3E1EA7KF000001");
    const struct fv_value *v = find(&r, 4); /* VehicleSpeed */
    assert_non_null(v);
    assert_int_equal(v->kind, FV_VK_DOUBLE);
    assert_true(v->u.d == 88.5);
    v = find(&r, 10); /* Gear = ShiftStateD */
    assert_int_equal(v->kind, FV_VK_ENUM);
    assert_int_equal(v->u.i, 5);
    v = find(&r, 21);
    assert_int_equal(v->kind, FV_VK_LOCATION);
    assert_true(v->u.loc.lat == 48.8566 && v->u.loc.lon == 2.3522);
    v = find(&r, 59);
    assert_int_equal(v->kind, FV_VK_BOOL);
    assert_int_equal(v->u.i, 1);
    fv_vrecord_free(&r);
    free(p);
}

static void test_quirks(void **state)
{
    (void)state;
    size_t len;
    unsigned char *p = fv_test_read_vector("v-quirks.payload.bin", &len);
    struct fv_vrecord r;
    char err[256];
    assert_int_equal(fv_payload_decode_v(p, len, &r, err, sizeof err), FV_OK);
    assert_true(r.is_resend);
    const struct fv_value *v = find(&r, 21); /* Q1 */
    assert_int_equal(v->kind, FV_VK_LOCATION);
    assert_true(fabs(v->u.loc.lat - 37.4) < 1e-12 && fabs(v->u.loc.lon + 122.1) < 1e-12);
    v = find(&r, 4); /* Q2 */
    assert_int_equal(v->kind, FV_VK_DOUBLE);
    assert_true(v->u.d == 88.0);
    v = find(&r, 86); /* Q3 */
    assert_int_equal(v->kind, FV_VK_INVALID);
    v = find(&r, 58);
    assert_int_equal(v->kind, FV_VK_DOORS);
    assert_int_equal(v->u.bits, 1); /* DriverFront */
    v = find(&r, 46);
    assert_int_equal(v->kind, FV_VK_TIME);
    assert_int_equal(v->u.time.h, 7);
    assert_int_equal(v->u.time.m, 30);
    v = find(&r, 300); /* Q4 */
    assert_non_null(v);
    assert_int_equal(v->kind, FV_VK_INT);
    assert_int_equal(v->u.i, 7);
    assert_null(fv_signal_name(300));
    fv_vrecord_free(&r);
    free(p);
}

static void test_bad_payload_and_topics(void **state)
{
    (void)state;
    size_t len;
    char err[256];
    unsigned char *p = fv_test_read_vector("v-bad-payload.payload.bin", &len);
    struct fv_vrecord r;
    assert_int_equal(fv_payload_decode_v(p, len, &r, err, sizeof err), FV_EPROTO);
    struct fv_buf out = {0};
    assert_int_equal(fv_payload_normalise("V", 1, p, len, "X", &out, NULL, err, sizeof err),
                     FV_EPROTO);
    /* unknown topics are kept raw, whatever they hold */
    assert_int_equal(fv_payload_normalise("future", 6, p, len, "X", &out, NULL, err, sizeof err),
                     FV_OK);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.data, p, len);
    fv_buf_free(&out);
    free(p);
    const char *files[] = {"alerts.payload.bin", "errors.payload.bin"};
    const char *topics[] = {"alerts", "errors"};
    for (int i = 0; i < 2; i++) {
        p = fv_test_read_vector(files[i], &len);
        assert_int_equal(fv_payload_normalise(topics[i], strlen(topics[i]), p, len,
                                              "5YJ3E1EA7KF000777", &out, NULL, err, sizeof err),
                         FV_OK);
        assert_non_null(memmem(out.data, out.len, "5YJ3E1EA7KF000777", 17));
        assert_null(memmem(out.data, out.len, "5YJ3E1EA7KF000001", 17));
        fv_buf_reset(&out);
        free(p);
    }
    fv_buf_free(&out);
}

static void test_vin_rewrite_keeps_everything_else(void **state)
{
    (void)state;
    size_t len;
    char err[256];
    unsigned char *p = fv_test_read_vector("v-quirks.payload.bin", &len);
    struct fv_buf out = {0};
    struct fv_vrecord a, b, c;
    assert_int_equal(fv_payload_normalise("V", 1, p, len, "OTHER", &out, &c, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_payload_decode_v(p, len, &a, err, sizeof err), FV_OK);
    assert_int_equal(fv_payload_decode_v(out.data, out.len, &b, err, sizeof err), FV_OK);
    assert_string_equal(b.vin, "OTHER");
    /* the record decoded during normalisation is the stored one */
    assert_string_equal(c.vin, "OTHER");
    assert_int_equal(c.n, b.n);
    for (size_t i = 0; i < c.n; i++)
        assert_true(fv_value_equal(&c.data[i].value, &b.data[i].value));
    fv_vrecord_free(&c);
    assert_int_equal(a.n, b.n);
    for (size_t i = 0; i < a.n; i++) {
        assert_int_equal(a.data[i].field, b.data[i].field);
        assert_true(fv_value_equal(&a.data[i].value, &b.data[i].value));
    }
    fv_vrecord_free(&a);
    fv_vrecord_free(&b);
    fv_buf_free(&out);
    free(p);
}

static void test_encode_roundtrip(void **state)
{
    (void)state;
    struct fv_datum d[5] = {
        {4, {.kind = FV_VK_DOUBLE, .u.d = -0.0}},
        {5, {.kind = FV_VK_DOUBLE, .u.d = 1e300}},
        {8, {.kind = FV_VK_INT, .u.i = -7}},
        {21, {.kind = FV_VK_LOCATION, .u.loc = {-33.5, 151.25}}},
        {10, {.kind = FV_VK_ENUM, .member = 9, .u.i = 2}},
    };
    struct fv_vrecord r = {.created_at_ms = 1795000000999ULL, .vin = "V1", .n = 5, .data = d};
    struct fv_buf out = {0};
    assert_int_equal(fv_payload_encode_v(&r, &out), FV_OK);
    struct fv_vrecord b;
    char err[256];
    assert_int_equal(fv_payload_decode_v(out.data, out.len, &b, err, sizeof err), FV_OK);
    assert_int_equal(b.created_at_ms, r.created_at_ms);
    assert_int_equal(b.n, 5);
    for (int i = 0; i < 5; i++) {
        d[i].value.member = d[i].value.kind == FV_VK_ENUM ? 9 : b.data[i].value.member;
        assert_true(fv_value_equal(&d[i].value, &b.data[i].value));
    }
    fv_vrecord_free(&b);
    fv_buf_free(&out);
}

static void test_location_strings(void **state)
{
    (void)state;
    double a, b;
    assert_int_equal(fv_parse_location_string("(37.4 N, 122.1 W)", &a, &b), 0);
    assert_true(a == 37.4 && b == -122.1);
    assert_int_equal(fv_parse_location_string("(1.5 S, 2 E)", &a, &b), 0);
    assert_true(a == -1.5 && b == 2);
    assert_int_equal(fv_parse_location_string("(37.4 X, 122.1 W)", &a, &b), -1);
    assert_int_equal(fv_parse_location_string("(37.4 N, 122.1 W) junk", &a, &b), -1);
    assert_int_equal(fv_parse_location_string("", &a, &b), -1);
    assert_int_equal(fv_signal_lookup("VehicleSpeed"), 4);
    assert_int_equal(fv_signal_lookup("300"), 300);
    assert_int_equal(fv_signal_lookup("NoSuchSignal"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_quirks),
        cmocka_unit_test(test_bad_payload_and_topics),
        cmocka_unit_test(test_vin_rewrite_keeps_everything_else),
        cmocka_unit_test(test_encode_roundtrip),
        cmocka_unit_test(test_location_strings),
        cmocka_unit_test(test_v_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
