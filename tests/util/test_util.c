/* test_util.c - CRC-32C check value, hash map against a naive reference, buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/arena.h"
#include "util/buf.h"
#include "util/latency.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/map.h"
#include "util/urlquery.h"

static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(fv_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(fv_crc32c(0, "", 0), 0);
    /* incremental = one shot */
    uint32_t c = fv_crc32c(0, "1234", 4);
    assert_int_equal(fv_crc32c(c, "56789", 5), 0xE3069283u);
}

/* Random puts and deletes, checked after every step against a plain array. */
static void test_map_vs_reference(void **state)
{
    (void)state;
    unsigned seed = (unsigned)time(NULL);
    printf("seed %u\n", seed);
    srand(seed);
    enum { N = 600 };
    void *ref[N] = {0};
    struct fv_map m = {0}, mu = {0};
    for (int step = 0; step < 20000; step++) {
        int k = rand() % N;
        char key[16];
        snprintf(key, sizeof key, "k%d", k);
        if (rand() % 3) {
            void *v = (void *)(intptr_t)(step + 1);
            assert_int_equal(fv_map_put(&m, key, strlen(key), v), FV_OK);
            assert_int_equal(fv_map_put_u64(&mu, (uint64_t)k, v), FV_OK);
            ref[k] = v;
        } else {
            assert_ptr_equal(fv_map_del(&m, key, strlen(key)), ref[k]);
            assert_ptr_equal(fv_map_del_u64(&mu, (uint64_t)k), ref[k]);
            ref[k] = NULL;
        }
        if (step % 97 == 0) {
            size_t n = 0;
            for (int i = 0; i < N; i++) {
                snprintf(key, sizeof key, "k%d", i);
                assert_ptr_equal(fv_map_get(&m, key, strlen(key)), ref[i]);
                assert_ptr_equal(fv_map_get_u64(&mu, (uint64_t)i), ref[i]);
                n += ref[i] != NULL;
            }
            assert_int_equal(m.n, n);
        }
    }
    fv_map_free(&m);
    fv_map_free(&mu);
}

static void test_buf_and_le(void **state)
{
    (void)state;
    struct fv_buf b = {0};
    for (int i = 0; i < 1000; i++)
        assert_int_equal(fv_buf_append(&b, "abc", 3), FV_OK);
    assert_int_equal(b.len, 3000);
    assert_memory_equal(b.data + 2997, "abc", 3);
    fv_buf_free(&b);
    unsigned char p[8];
    fv_put_u64(p, 0x0102030405060708ULL);
    assert_int_equal(p[0], 8);
    assert_int_equal(fv_get_u64(p), 0x0102030405060708ULL);
    fv_put_u16(p, 0xBEEF);
    assert_int_equal(fv_get_u16(p), 0xBEEF);
    assert_string_equal(fv_strerror(FV_ECORRUPT), "corrupt data");
    assert_string_equal(fv_strerror(-999), "unknown error");
}

/* fv_buf_appendf: text appended whole, however long (no cut at any stack buffer), after what
 * was there, no NUL kept in len. */
static void test_buf_appendf(void **state)
{
    (void)state;
    struct fv_buf b = {0};
    assert_int_equal(fv_buf_append(&b, "x=", 2), FV_OK);
    assert_int_equal(fv_buf_appendf(&b, "%d,%s", 42, "ok"), FV_OK);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "x=42,ok", 7);
    char big[5000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(fv_buf_appendf(&b, "[%s]", big), FV_OK);
    assert_int_equal(b.len, 7 + 2 + sizeof big - 1);
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[9], 'a');
    fv_buf_free(&b);
}

/* The arena: aligned, bump allocations within the buffer, spills beyond it (freed by release,
 * checked under ASan), reusable after release. */
static void test_arena(void **state)
{
    (void)state;
    unsigned char stack[1000];
    struct fv_arena a;
    fv_arena_init(&a, stack + 1, 999); /* a misaligned buffer */
    unsigned char *first = NULL, *last = NULL;
    for (int i = 0; i < 40; i++) {
        unsigned char *p = fv_arena_alloc(&a, (size_t)i % 7);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xAB, (size_t)i % 7);
        if (i == 0) first = p;
        last = p;
    }
    assert_true(first >= stack && last < stack + sizeof stack); /* 40 x 16 bytes fit */
    unsigned char *big = fv_arena_alloc(&a, 5000);              /* spills */
    assert_non_null(big);
    assert_true(big < stack || big >= stack + sizeof stack);
    memset(big, 1, 5000);
    for (int i = 0; i < 100; i++)
        assert_non_null(fv_arena_alloc(&a, 64)); /* more spills */
    fv_arena_release(&a);
    assert_ptr_equal(fv_arena_alloc(&a, 8), first); /* the buffer is free again */
    fv_arena_release(&a);
    struct fv_arena none;
    fv_arena_init(&none, NULL, 0);
    assert_non_null(fv_arena_alloc(&none, 0));
    assert_null(fv_arena_alloc(&none, SIZE_MAX - 8));
    fv_arena_release(&none);
}

/* The shared histogram buckets: a bound is inclusive, the last slot is over 1 s. */
/* A POST's form body decodes as the HTTP layer decodes a URL's query: '+' a space, %XX. */
static void test_form_decode(void **state)
{
    (void)state;
    char body[] = "query=sum+by+%28device%29+%28Soc%29+%2B+1&start=1.5&x=%4";
    size_t n = fv_form_decode(body, strlen(body));
    assert_int_equal(n, strlen(body));
    assert_string_equal(body, "query=sum by (device) (Soc) + 1&start=1.5&x=%4");
    char out[64];
    assert_int_equal(fv_query_param(body, "query", out, sizeof out), 1);
    assert_string_equal(out, "sum by (device) (Soc) + 1");
    assert_int_equal(fv_query_param(body, "start", out, sizeof out), 1);
    assert_string_equal(out, "1.5");
}

static void test_latency_buckets(void **state)
{
    (void)state;
    assert_int_equal(fv_latency_bucket(0), 0);
    assert_int_equal(fv_latency_bucket(100000), 0); /* 0.1 ms: the first bound */
    assert_int_equal(fv_latency_bucket(100001), 1);
    assert_int_equal(fv_latency_bucket(10000000), 6); /* 10 ms */
    assert_int_equal(fv_latency_bucket(1000000000), FV_LATENCY_BOUNDS - 1);
    assert_int_equal(fv_latency_bucket(1000000001), FV_LATENCY_BOUNDS);
    struct fv_latency h = {0};
    fv_latency_add(&h, 3000000);
    fv_latency_add(&h, 3000000000ull);
    assert_int_equal(h.n[5], 1);
    assert_int_equal(h.n[FV_LATENCY_BOUNDS], 1);
    assert_int_equal(h.sum_ns, 3003000000ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),      cmocka_unit_test(test_map_vs_reference),
        cmocka_unit_test(test_buf_and_le),  cmocka_unit_test(test_buf_appendf),
        cmocka_unit_test(test_arena),       cmocka_unit_test(test_latency_buckets),
        cmocka_unit_test(test_form_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
