/* test_wsclient.c - the simulator's WebSocket codec (src/sim/wsclient.c): frame encode /
 * parse round trips in the 7-bit, 16-bit and 64-bit length forms, masking, the RFC 6455
 * validity rules the parser enforces, partial input, the accept key against the RFC's
 * example, and wss:// URL parsing (src/sim/simulate.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim/simulate.h"
#include "sim/wsclient.h"
#include "util/err.h"

static void test_accept_key_rfc_example(void **state)
{
    (void)state;
    char out[29];
    /* RFC 6455 section 1.3 (the value there; base64(SHA-1(key + GUID)) computed by hand
     * with any SHA-1 tool gives the same). */
    assert_int_equal(fv_sim_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), FV_OK);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* Encodes len bytes (masked or not), checks the header form, parses and unmasks back. */
static void roundtrip(size_t len, int masked, size_t want_header)
{
    unsigned char *payload = malloc(len ? len : 1);
    assert_non_null(payload);
    for (size_t i = 0; i < len; i++)
        payload[i] = (unsigned char)(i * 31 + 7);
    static const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    struct fv_buf out = {0};
    assert_int_equal(fv_ws_frame_encode(&out, FV_WS_BINARY, 1, payload, len, masked ? mask : NULL),
                     FV_OK);
    assert_int_equal(out.len, want_header + len);
    assert_int_equal(out.data[0], 0x82);
    assert_int_equal(out.data[1] & 0x80, masked ? 0x80 : 0);
    if (len < 126)
        assert_int_equal(out.data[1] & 0x7f, len);
    else if (len <= 0xffff)
        assert_int_equal(out.data[1] & 0x7f, 126);
    else
        assert_int_equal(out.data[1] & 0x7f, 127);

    struct fv_ws_frame f;
    char err[128];
    assert_int_equal(fv_ws_frame_parse(out.data, out.len, UINT64_MAX, &f, err, sizeof err), FV_OK);
    assert_true(f.fin);
    assert_int_equal(f.opcode, FV_WS_BINARY);
    assert_int_equal(f.masked, masked);
    assert_int_equal(f.len, len);
    assert_int_equal(f.header_len, want_header);
    unsigned char *body = out.data + f.header_len;
    if (masked) {
        assert_memory_equal(f.mask, mask, 4);
        if (len > 4) assert_memory_not_equal(body, payload, len);
        /* Unmask in two pieces to exercise the offset argument. */
        size_t half = len / 2;
        fv_ws_mask(body, half, f.mask, 0);
        fv_ws_mask(body + half, len - half, f.mask, half);
    }
    if (len) assert_memory_equal(body, payload, len);

    /* Every strict prefix asks for more bytes. */
    size_t step = out.len > 4096 ? 997 : 1;
    for (size_t cut = 0; cut < out.len; cut += step)
        assert_int_equal(fv_ws_frame_parse(out.data, cut, UINT64_MAX, &f, err, sizeof err),
                         FV_EAGAIN);
    fv_buf_free(&out);
    free(payload);
}

static void test_frame_length_forms(void **state)
{
    (void)state;
    roundtrip(0, 0, 2);
    roundtrip(0, 1, 6);
    roundtrip(125, 0, 2);
    roundtrip(125, 1, 6);
    roundtrip(126, 0, 4); /* smallest 16-bit form */
    roundtrip(126, 1, 8);
    roundtrip(65535, 1, 8);  /* largest 16-bit form */
    roundtrip(65536, 0, 10); /* smallest 64-bit form */
    roundtrip(65536, 1, 14);
    roundtrip(1000000, 1, 14);
}

static void test_frame_exact_bytes(void **state)
{
    (void)state;
    /* RFC 6455 5.7: a single-frame masked text message "Hello". */
    static const unsigned char want[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                         0x7f, 0x9f, 0x4d, 0x51, 0x58};
    static const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    struct fv_buf out = {0};
    assert_int_equal(fv_ws_frame_encode(&out, FV_WS_TEXT, 1, "Hello", 5, mask), FV_OK);
    assert_int_equal(out.len, sizeof want);
    assert_memory_equal(out.data, want, sizeof want);
    fv_buf_free(&out);
    /* And the unmasked 256-byte binary header: 0x82 0x7E 0x0100. */
    unsigned char big[256] = {0};
    assert_int_equal(fv_ws_frame_encode(&out, FV_WS_BINARY, 1, big, 256, NULL), FV_OK);
    static const unsigned char hdr[] = {0x82, 0x7e, 0x01, 0x00};
    assert_memory_equal(out.data, hdr, 4);
    fv_buf_free(&out);
    /* 64 KiB: 0x82 0x7F 0x0000000000010000. */
    unsigned char *huge = calloc(1, 65536);
    assert_non_null(huge);
    assert_int_equal(fv_ws_frame_encode(&out, FV_WS_BINARY, 1, huge, 65536, NULL), FV_OK);
    static const unsigned char hdr64[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0};
    assert_memory_equal(out.data, hdr64, sizeof hdr64);
    fv_buf_free(&out);
    free(huge);
}

static int parse_bytes(const unsigned char *p, size_t n, uint64_t max)
{
    struct fv_ws_frame f;
    char err[128];
    return fv_ws_frame_parse(p, n, max, &f, err, sizeof err);
}

static void test_frame_rules(void **state)
{
    (void)state;
    /* Reserved bits. */
    static const unsigned char rsv[] = {0xC2, 0x00};
    assert_int_equal(parse_bytes(rsv, sizeof rsv, 1000), FV_EPROTO);
    /* Reserved opcodes 3 and 0xB. */
    static const unsigned char op3[] = {0x83, 0x00};
    static const unsigned char opb[] = {0x8B, 0x00};
    assert_int_equal(parse_bytes(op3, sizeof op3, 1000), FV_EPROTO);
    assert_int_equal(parse_bytes(opb, sizeof opb, 1000), FV_EPROTO);
    /* Fragmented ping, and a ping longer than 125 bytes. */
    static const unsigned char fragping[] = {0x09, 0x00};
    assert_int_equal(parse_bytes(fragping, sizeof fragping, 1000), FV_EPROTO);
    static const unsigned char longping[] = {0x89, 0x7e, 0x00, 0x7e};
    assert_int_equal(parse_bytes(longping, sizeof longping, 1000), FV_EPROTO);
    /* 64-bit length with the top bit set. */
    static const unsigned char top[] = {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1};
    assert_int_equal(parse_bytes(top, sizeof top, UINT64_MAX), FV_EPROTO);
    /* Over the limit: refused from the header alone, before the payload arrives. */
    static const unsigned char big[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 0x20, 0, 0};
    assert_int_equal(parse_bytes(big, sizeof big, FV_SIM_WS_MAX_MSG), FV_EPROTO);
    /* Close frame with code 1000 and a continuation frame parse fine. */
    static const unsigned char close[] = {0x88, 0x02, 0x03, 0xe8};
    struct fv_ws_frame f;
    char err[128];
    assert_int_equal(fv_ws_frame_parse(close, sizeof close, 1000, &f, err, sizeof err), FV_OK);
    assert_int_equal(f.opcode, FV_WS_CLOSE);
    assert_int_equal(f.len, 2);
    static const unsigned char cont[] = {0x00, 0x01, 'x'};
    assert_int_equal(fv_ws_frame_parse(cont, sizeof cont, 1000, &f, err, sizeof err), FV_OK);
    assert_false(f.fin);
    assert_int_equal(f.opcode, FV_WS_CONT);
}

/* Two frames back to back parse one after the other. */
static void test_frame_stream(void **state)
{
    (void)state;
    struct fv_buf out = {0};
    assert_int_equal(fv_ws_frame_encode(&out, FV_WS_PING, 1, "ab", 2, NULL), FV_OK);
    assert_int_equal(fv_ws_frame_encode(&out, FV_WS_BINARY, 0, "cde", 3, NULL), FV_OK);
    struct fv_ws_frame f;
    char err[128];
    assert_int_equal(fv_ws_frame_parse(out.data, out.len, 100, &f, err, sizeof err), FV_OK);
    assert_int_equal(f.opcode, FV_WS_PING);
    size_t off = f.header_len + (size_t)f.len;
    assert_int_equal(fv_ws_frame_parse(out.data + off, out.len - off, 100, &f, err, sizeof err),
                     FV_OK);
    assert_int_equal(f.opcode, FV_WS_BINARY);
    assert_false(f.fin);
    assert_memory_equal(out.data + off + f.header_len, "cde", 3);
    fv_buf_free(&out);
}

static void test_parse_url(void **state)
{
    (void)state;
    char host[64], port[8], hp[80], path[64], err[256];
#define URL(u)                                                                                     \
    fv_sim_parse_url(u, host, sizeof host, port, sizeof port, hp, sizeof hp, path, sizeof path,    \
                     err, sizeof err)
    assert_int_equal(URL("wss://127.0.0.1:4443"), FV_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_string_equal(port, "4443");
    assert_string_equal(hp, "127.0.0.1:4443");
    assert_string_equal(path, "/");
    assert_int_equal(URL("wss://localhost/stream"), FV_OK);
    assert_string_equal(host, "localhost");
    assert_string_equal(port, "443");
    assert_string_equal(path, "/stream");
    assert_int_equal(URL("wss://[::1]:8443/x"), FV_OK);
    assert_string_equal(host, "::1");
    assert_string_equal(hp, "[::1]:8443");
    assert_string_equal(path, "/x");
    assert_int_equal(URL("ws://127.0.0.1:1"), FV_EINVAL);
    assert_int_equal(URL("https://127.0.0.1:1"), FV_EINVAL);
    assert_int_equal(URL("wss://:443"), FV_EINVAL);
    assert_int_equal(URL("wss://host:0"), FV_EINVAL);
    assert_int_equal(URL("wss://host:65536"), FV_EINVAL);
    assert_int_equal(URL("wss://host:12a"), FV_EINVAL);
    assert_int_equal(URL("wss://host:"), FV_EINVAL);
    assert_int_equal(URL("wss://[::1"), FV_EINVAL);
#undef URL
}

/* A closed connection object is inert. */
static void test_closed_connection(void **state)
{
    (void)state;
    struct fv_sim_ws *ws;
    assert_int_equal(fv_sim_ws_new(&ws), FV_OK);
    assert_int_equal(fv_sim_ws_state(ws), FV_SIM_WS_CLOSED);
    assert_int_equal(fv_sim_ws_fd(ws), -1);
    assert_int_equal(fv_sim_ws_events(ws), 0);
    assert_int_equal(fv_sim_ws_send(ws, FV_WS_BINARY, "x", 1), FV_ESTATE);
    char err[64];
    assert_int_equal(fv_sim_ws_io(ws, NULL, NULL, err, sizeof err), FV_OK);
    fv_sim_ws_close(ws);
    fv_sim_ws_free(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key_rfc_example), cmocka_unit_test(test_frame_length_forms),
        cmocka_unit_test(test_frame_exact_bytes),      cmocka_unit_test(test_frame_rules),
        cmocka_unit_test(test_frame_stream),           cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_closed_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
