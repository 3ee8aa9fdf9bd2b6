/* test_block_events.c - the events section of store blocks (src/store/block.h): version 2
 * keeps the server's connectivity records as fields and gives back their payloads byte for
 * byte; payloads it cannot rebuild exactly (unknown fields, sub-millisecond times, no
 * created_at, other layouts, other topics) stay bytes; blocks of version 1 with events still
 * read; a version 2 events section that breaks a rule is refused (FV_ECORRUPT), and every
 * truncation of one fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/block.h"
#include "store/codec.h"
#include "util/buf.h"
#include "util/err.h"
#include "wire/payload.h"

#define T0 1764720000123LL

static void build(struct fv_buf *b, const char *vin, const char *conn, int status, int64_t ms,
                  const char *netif)
{
    fv_buf_reset(b);
    assert_int_equal(fv_payload_build_connectivity(vin, conn, status, (uint64_t)ms, netif, b),
                     FV_OK);
}

/* Decodes enc (events wanted) and checks its events are in's, byte for byte, their payloads
 * laid out in event order. */
static void check_events(const struct fv_buf *enc, const struct fv_block_in *in)
{
    struct fv_block b;
    char err[256] = "";
    int rc = fv_block_decode(enc->data, enc->len, NULL, 0, 1, &b, err, sizeof err);
    if (rc) printf("decode: %s\n", err);
    assert_int_equal(rc, FV_OK);
    assert_int_equal(b.nev, in->nev);
    for (size_t i = 0; i < in->nev; i++) {
        const struct fv_block_event *g = &b.ev[i], *e = &in->ev[i];
        assert_int_equal(g->t, e->t);
        assert_int_equal(g->topic_len, e->topic_len);
        assert_memory_equal(g->topic, e->topic, e->topic_len);
        assert_int_equal(g->len, e->len);
        if (e->len) assert_memory_equal(g->payload, e->payload, e->len);
        if (i && b.evmem) assert_true(g->payload >= b.ev[i - 1].payload + b.ev[i - 1].len);
    }
    fv_block_free(&b);
    /* events skipped */
    assert_int_equal(fv_block_decode(enc->data, enc->len, NULL, 0, 0, &b, err, sizeof err), FV_OK);
    assert_int_equal(b.nev, 0);
    fv_block_free(&b);
}

/* The server's connect and disconnect records, beside events kept as bytes. */
static void test_connectivity_as_fields(void **state)
{
    (void)state;
    struct fv_buf p[5] = {{0}};
    build(&p[0], "5YJSIM00000000500", "fv-123", 1, T0, "");
    build(&p[1], "5YJSIM00000000500", "fv-123", 2, T0 + 500000, "");
    build(&p[2], "", "", 0, 0, "wifi"); /* empty strings, status 0, time 0 */
    build(&p[3], "V\xc3\xa9hicule", "9f1c2a7e-0b1d-4c55-9e0a-3f2d7c6b5a41", -7, T0 - 86400000,
          "cellular");
    static const unsigned char ALERT[] = {0x0a, 0x02, 'h', 'i'};
    struct fv_block_event ev[] = {
        {T0, "connectivity", 12, p[0].data, (uint32_t)p[0].len},
        {T0 + 10, "alerts", 6, ALERT, sizeof ALERT},
        {T0 + 500000, "connectivity", 12, p[1].data, (uint32_t)p[1].len},
        {T0 + 7, "connectivity", 12, p[2].data, (uint32_t)p[2].len}, /* created_at < t */
        {T0 + 9, "connectivity", 12, p[3].data, (uint32_t)p[3].len},
        {T0 + 9, "connectivity", 12, ALERT, sizeof ALERT}, /* not a connectivity payload */
    };
    struct fv_block_in in = {.nev = 6, .ev = ev};
    struct fv_buf enc = {0};
    struct fv_block_meta m;
    assert_int_equal(fv_block_encode(&in, &enc, &m), FV_OK);
    assert_int_equal(enc.data[0], 2);
    assert_int_equal(m.nev, 6);
    check_events(&enc, &in);

    /* The bench's case: a connect and a disconnect (85 payload bytes): 56 bytes here, 118
     * in version 1 (100 after zstd). */
    struct fv_block_event two[] = {ev[0], ev[2]};
    in.ev = two;
    in.nev = 2;
    fv_buf_reset(&enc);
    assert_int_equal(fv_block_encode(&in, &enc, &m), FV_OK);
    assert_int_equal(enc.data[0], 2);
    printf("a connect and a disconnect: %zu bytes (payloads %zu + %zu)\n", enc.len, p[0].len,
           p[1].len);
    assert_true(enc.len <= 56);
    check_events(&enc, &in);
    fv_buf_free(&enc);
    for (int i = 0; i < 5; i++)
        fv_buf_free(&p[i]);
}

/* Protobuf by hand: payloads the builder would not make. */
static void pb_varint(struct fv_buf *b, uint64_t v)
{
    assert_int_equal(fv_put_uvarint(b, v), FV_OK);
}
static void pb_str(struct fv_buf *b, unsigned field, const char *s, size_t n)
{
    pb_varint(b, field << 3 | 2);
    pb_varint(b, n);
    assert_int_equal(fv_buf_append(b, s, n), FV_OK);
}
static void pb_time(struct fv_buf *b, int64_t secs, int32_t nanos)
{
    struct fv_buf t = {0};
    pb_varint(&t, 1 << 3);
    pb_varint(&t, (uint64_t)secs);
    pb_varint(&t, 2 << 3);
    pb_varint(&t, (uint64_t)(int64_t)nanos);
    pb_varint(b, 4 << 3 | 2);
    pb_varint(b, t.len);
    assert_int_equal(fv_buf_append(b, t.data, t.len), FV_OK);
    fv_buf_free(&t);
}

/* Payloads that cannot be rebuilt exactly are kept as bytes (version 1 when none can). */
static void test_inexact_kept_as_bytes(void **state)
{
    (void)state;
    struct fv_buf p[6] = {{0}};
    /* sub-millisecond created_at */
    pb_str(&p[0], 1, "VIN", 3);
    pb_time(&p[0], 1764720000, 123456789);
    /* an unknown field after a canonical payload */
    build(&p[1], "VIN", "c", 1, T0, "");
    pb_varint(&p[1], 6 << 3);
    pb_varint(&p[1], 1);
    /* no created_at */
    pb_str(&p[2], 1, "VIN", 3);
    /* fields out of the builder's order (status before vin) */
    pb_varint(&p[3], 3 << 3);
    pb_varint(&p[3], 1);
    pb_str(&p[3], 1, "VIN", 3);
    pb_time(&p[3], 1764720000, 0);
    /* a vin with a NUL byte */
    pb_str(&p[4], 1, "V\0N", 3);
    pb_time(&p[4], 1764720000, 0);
    /* time beyond 2^52 s */
    pb_str(&p[5], 1, "VIN", 3);
    pb_time(&p[5], (INT64_C(1) << 52) + 1, 0);
    struct fv_block_event ev[6];
    for (int i = 0; i < 6; i++)
        ev[i] = (struct fv_block_event){T0 + i, "connectivity", 12, p[i].data, (uint32_t)p[i].len};
    struct fv_block_in in = {.nev = 6, .ev = ev};
    struct fv_buf enc = {0};
    struct fv_block_meta m;
    assert_int_equal(fv_block_encode(&in, &enc, &m), FV_OK);
    assert_int_equal(enc.data[0], 1);
    check_events(&enc, &in);
    fv_buf_free(&enc);
    for (int i = 0; i < 6; i++)
        fv_buf_free(&p[i]);
}

/* A version 1 block with connectivity events as bytes (what older stores wrote) reads. */
static void test_version1_still_read(void **state)
{
    (void)state;
    struct fv_buf p = {0}, enc = {0};
    build(&p, "5YJSIM00000000500", "fv-123", 1, T0, "");
    int64_t t[1] = {T0}, lens[1] = {(int64_t)p.len};
    const unsigned char *topic[1] = {(const unsigned char *)"connectivity"};
    uint32_t tlen[1] = {12};
    unsigned char head[] = {1, 0, 0, 1}; /* version 1, no frames, no columns, one event */
    assert_int_equal(fv_buf_append(&enc, head, sizeof head), FV_OK);
    assert_int_equal(fv_enc_i64(&enc, t, 1), FV_OK);
    assert_int_equal(fv_enc_str(&enc, topic, tlen, 1), FV_OK);
    assert_int_equal(fv_enc_i64(&enc, lens, 1), FV_OK);
    assert_int_equal(fv_buf_append(&enc, p.data, p.len), FV_OK);
    struct fv_block_event ev = {T0, "connectivity", 12, p.data, (uint32_t)p.len};
    struct fv_block_in in = {.nev = 1, .ev = &ev};
    check_events(&enc, &in);
    struct fv_block b;
    char err[128];
    assert_int_equal(fv_block_decode(enc.data, enc.len, NULL, 0, 1, &b, err, sizeof err), FV_OK);
    assert_null(b.evmem); /* version 1: payloads point into the input */
    assert_ptr_equal(b.ev[0].payload, enc.data + enc.len - p.len);
    fv_block_free(&b);
    /* version 3 is refused */
    enc.data[0] = 3;
    assert_int_equal(fv_block_decode(enc.data, enc.len, NULL, 0, 1, &b, err, sizeof err),
                     FV_ECORRUPT);
    fv_buf_free(&enc);
    fv_buf_free(&p);
}

/* A version 2 events section by hand: forms, then the fields of the form-1 events. */
struct v2 {
    int64_t form[2];
    const char *vin, *conn, *netif;
    uint32_t vin_len;
    int64_t status, dt;
};
static void make_v2(struct fv_buf *enc, const struct v2 *x)
{
    fv_buf_reset(enc);
    unsigned char head[] = {2, 0, 0, 2}; /* version 2, no frames, no columns, two events */
    assert_int_equal(fv_buf_append(enc, head, sizeof head), FV_OK);
    int64_t t[2] = {T0, T0 + 1000};
    assert_int_equal(fv_enc_i64(enc, t, 2), FV_OK);
    assert_int_equal(fv_enc_i64(enc, x->form, 2), FV_OK);
    size_t nraw = (x->form[0] == 0) + (x->form[1] == 0);
    const unsigned char *topic[2] = {(const unsigned char *)"alerts",
                                     (const unsigned char *)"alerts"};
    uint32_t tlen[2] = {6, 6};
    int64_t lens[2] = {1, 1};
    assert_int_equal(fv_enc_str(enc, topic, tlen, nraw), FV_OK);
    assert_int_equal(fv_enc_i64(enc, lens, nraw), FV_OK);
    for (size_t i = 0; i < nraw; i++)
        assert_int_equal(fv_buf_append(enc, "x", 1), FV_OK);
    size_t ncon = 2 - nraw;
    const unsigned char *s[2];
    uint32_t l[2];
    const char *str[3] = {x->vin, x->conn, x->netif};
    for (int k = 0; k < 3; k++) {
        for (size_t j = 0; j < ncon; j++) {
            s[j] = (const unsigned char *)str[k];
            l[j] = k == 0 ? x->vin_len : (uint32_t)strlen(str[k]);
        }
        assert_int_equal(fv_enc_str(enc, s, l, ncon), FV_OK);
    }
    int64_t st[2] = {x->status, x->status}, dt[2] = {x->dt, x->dt};
    assert_int_equal(fv_enc_i64(enc, st, ncon), FV_OK);
    assert_int_equal(fv_enc_i64(enc, dt, ncon), FV_OK);
}

static int dec(const struct fv_buf *enc)
{
    struct fv_block b;
    char err[256] = "";
    int rc = fv_block_decode(enc->data, enc->len, NULL, 0, 1, &b, err, sizeof err);
    fv_block_free(&b);
    return rc;
}

static void test_version2_malformed(void **state)
{
    (void)state;
    struct fv_buf enc = {0};
    struct v2 ok = {{1, 0}, "VIN", "c", "", 3, 2, 5};
    make_v2(&enc, &ok);
    assert_int_equal(dec(&enc), FV_OK);
    struct fv_block b;
    char err[256];
    assert_int_equal(fv_block_decode(enc.data, enc.len, NULL, 0, 1, &b, err, sizeof err), FV_OK);
    struct fv_buf want = {0};
    build(&want, "VIN", "c", 2, T0 + 5, "");
    assert_int_equal(b.ev[0].len, want.len);
    assert_memory_equal(b.ev[0].payload, want.data, want.len);
    assert_memory_equal(b.ev[0].topic, "connectivity", 12);
    assert_memory_equal(b.ev[1].payload, "x", 1);
    fv_block_free(&b);
    fv_buf_free(&want);
    /* every truncation fails */
    for (size_t n = 0; n < enc.len; n++) {
        struct fv_buf cut = {0};
        assert_int_equal(fv_buf_append(&cut, enc.data, n), FV_OK);
        if (n) assert_int_equal(dec(&cut), FV_ECORRUPT);
        fv_buf_free(&cut);
    }
    struct v2 x = ok;
    x.form[0] = 2; /* unknown form */
    make_v2(&enc, &x);
    assert_int_equal(dec(&enc), FV_ECORRUPT);
    x = ok;
    x.form[0] = 0; /* version 2 without any form-1 event */
    make_v2(&enc, &x);
    assert_int_equal(dec(&enc), FV_ECORRUPT);
    x = ok;
    x.vin = "V\0N";
    x.vin_len = 3; /* a NUL in a string */
    make_v2(&enc, &x);
    assert_int_equal(dec(&enc), FV_ECORRUPT);
    x = ok;
    x.status = INT64_C(1) << 31; /* beyond int32 */
    make_v2(&enc, &x);
    assert_int_equal(dec(&enc), FV_ECORRUPT);
    x = ok;
    x.dt = -T0 - 1; /* created_at before 0 */
    make_v2(&enc, &x);
    assert_int_equal(dec(&enc), FV_ECORRUPT);
    x = ok;
    x.form[1] = 1; /* both as fields, both ok */
    make_v2(&enc, &x);
    assert_int_equal(dec(&enc), FV_OK);
    assert_int_equal(fv_buf_append(&enc, "", 1), FV_OK); /* a trailing byte */
    assert_int_equal(dec(&enc), FV_ECORRUPT);
    fv_buf_free(&enc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connectivity_as_fields),
        cmocka_unit_test(test_inexact_kept_as_bytes),
        cmocka_unit_test(test_version1_still_read),
        cmocka_unit_test(test_version2_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
