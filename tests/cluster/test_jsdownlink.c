/* test_jsdownlink.c - cluster/jsdownlink.h's envelope (docs/formats.md, "Downlink on NATS"):
 * the documented bytes, a round trip, and every truncation, another version or kind, a NUL in
 * a field, an empty device id and a field too long refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "cluster/jsdownlink.h"
#include "util/err.h"

static char dev[FV_JSDL_FIELD_MAX + 1], top[FV_JSDL_FIELD_MAX + 1], mid[FV_JSDL_FIELD_MAX + 1];

static void layout_and_round_trip(void **state)
{
    (void)state;
    struct fv_jsdl_msg m = {.kind = FV_JSDL_CMD,
                            .device = "SITE1",
                            .topic = "sc",
                            .msg_id = "e:1",
                            .payload = "\x01\x00\x02",
                            .len = 3};
    unsigned char buf[64];
    long n = fv_jsdl_encode(&m, buf, sizeof buf);
    static const unsigned char want[] = {1,   1,   5, 'S', 'I', 'T', 'E', '1', 2,
                                         's', 'c', 3, 'e', ':', '1', 1,   0,   2};
    assert_int_equal(n, sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    struct fv_jsdl_msg r;
    assert_int_equal(fv_jsdl_decode(buf, (size_t)n, &r, dev, top, mid), FV_OK);
    assert_int_equal(r.kind, FV_JSDL_CMD);
    assert_string_equal(r.device, "SITE1");
    assert_string_equal(r.topic, "sc");
    assert_string_equal(r.msg_id, "e:1");
    assert_int_equal(r.len, 3);
    assert_memory_equal(r.payload, "\x01\x00\x02", 3);
    /* a connect: no topic, id or payload */
    struct fv_jsdl_msg c = {.kind = FV_JSDL_CONNECT, .device = "VIN1"};
    n = fv_jsdl_encode(&c, buf, sizeof buf);
    assert_int_equal(n, 2 + 1 + 4 + 1 + 1);
    assert_int_equal(fv_jsdl_decode(buf, (size_t)n, &r, dev, top, mid), FV_OK);
    assert_int_equal(r.kind, FV_JSDL_CONNECT);
    assert_string_equal(r.device, "VIN1");
    assert_string_equal(r.topic, "");
    assert_int_equal(r.len, 0);
}

static void refused(void **state)
{
    (void)state;
    struct fv_jsdl_msg m = {.kind = FV_JSDL_MESSAGE,
                            .device = "D",
                            .topic = "t",
                            .msg_id = "",
                            .payload = "p",
                            .len = 1};
    unsigned char buf[600], b2[600];
    long n = fv_jsdl_encode(&m, buf, sizeof buf);
    assert_true(n > 0);
    struct fv_jsdl_msg r;
    /* every truncation that cuts into the header */
    for (long k = 0; k < n - 1; k++)
        assert_int_equal(fv_jsdl_decode(buf, (size_t)k, &r, dev, top, mid), FV_EPROTO);
    memcpy(b2, buf, (size_t)n);
    b2[0] = 2; /* another version */
    assert_int_equal(fv_jsdl_decode(b2, (size_t)n, &r, dev, top, mid), FV_EPROTO);
    memcpy(b2, buf, (size_t)n);
    b2[1] = 4; /* another kind */
    assert_int_equal(fv_jsdl_decode(b2, (size_t)n, &r, dev, top, mid), FV_EPROTO);
    b2[1] = 0;
    assert_int_equal(fv_jsdl_decode(b2, (size_t)n, &r, dev, top, mid), FV_EPROTO);
    memcpy(b2, buf, (size_t)n);
    b2[3] = 0; /* a NUL in the device id */
    assert_int_equal(fv_jsdl_decode(b2, (size_t)n, &r, dev, top, mid), FV_EPROTO);
    memcpy(b2, buf, (size_t)n);
    b2[2] = 200; /* a length past the end */
    assert_int_equal(fv_jsdl_decode(b2, (size_t)n, &r, dev, top, mid), FV_EPROTO);
    struct fv_jsdl_msg e = {.kind = FV_JSDL_CONNECT, .device = ""}; /* no device */
    n = fv_jsdl_encode(&e, buf, sizeof buf);
    assert_int_equal(fv_jsdl_decode(buf, (size_t)n, &r, dev, top, mid), FV_EPROTO);
    char longer[FV_JSDL_FIELD_MAX + 2];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    struct fv_jsdl_msg l = {.kind = FV_JSDL_CMD, .device = "D", .topic = longer, .msg_id = ""};
    assert_int_equal(fv_jsdl_encode(&l, buf, sizeof buf), -1);
    longer[FV_JSDL_FIELD_MAX] = '\0'; /* 127: the longest */
    assert_true(fv_jsdl_encode(&l, buf, sizeof buf) > 0);
    assert_int_equal(fv_jsdl_encode(&m, buf, 5), -1); /* cap too small */
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(layout_and_round_trip),
                                       cmocka_unit_test(refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
