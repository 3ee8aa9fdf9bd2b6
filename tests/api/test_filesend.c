/* test_filesend.c - api/filesend.h: Range headers (F1) against a file's size: single
 * ranges, open and suffix forms, ends cut to the size, ignored forms (200) and
 * unsatisfiable ones (416); the file answer's headers and its pieces (F2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/filesend.h"
#include "util/err.h"

static void ranges(void **state)
{
    (void)state;
    static const struct {
        const char *h;
        uint64_t size;
        int status;
        uint64_t a, b;
    } cases[] = {
        {NULL, 100, 200, 0, 0},
        {"bytes=0-9", 100, 206, 0, 9},
        {"bytes=10-", 100, 206, 10, 99},
        {"bytes=90-500", 100, 206, 90, 99},
        {"bytes=-10", 100, 206, 90, 99},
        {"bytes=-500", 100, 206, 0, 99},
        {"bytes=99-99", 100, 206, 99, 99},
        {"bytes=100-", 100, 416, 0, 0},
        {"bytes=100-200", 100, 416, 0, 0},
        {"bytes=-0", 100, 416, 0, 0},
        {"bytes=0-", 0, 416, 0, 0},
        {"bytes=5-2", 100, 200, 0, 0},
        {"bytes=0-1,5-6", 100, 200, 0, 0},
        {"items=0-1", 100, 200, 0, 0},
        {"bytes=x-1", 100, 200, 0, 0},
        {"bytes=99999999999999999999999-", 100, 200, 0, 0},
        {"bytes=", 100, 200, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t a = 0, b = 0;
        int st = fv_range_parse(cases[i].h, cases[i].size, &a, &b);
        if (st != cases[i].status)
            fail_msg("'%s' of %llu: %d, not %d", cases[i].h ? cases[i].h : "(none)",
                     (unsigned long long)cases[i].size, st, cases[i].status);
        if (st == 206 && (a != cases[i].a || b != cases[i].b))
            fail_msg("'%s': %llu-%llu", cases[i].h, (unsigned long long)a, (unsigned long long)b);
    }
}

/* Runs a response's producer to its end, as the transport does. */
static void drain(struct fv_http_response *r)
{
    if (r->more) {
        int rc;
        while ((rc = r->more(r->ctx, &r->body)) > 0)
            ;
        assert_int_equal(rc, 0);
        r->free_ctx(r->ctx);
    }
}

static void file_answers(void **state)
{
    (void)state;
    char path[] = "/tmp/fv-test-filesend-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = FV_FILESEND_PIECE * 2 + 1000;
    unsigned char *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 31 + 7);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);

    struct fv_http_response r;
    memset(&r, 0, sizeof r);
    assert_int_equal(fv_api_send_file(&r, path, NULL, "application/x-tar"), 200);
    assert_true(r.length_known && r.length == n && r.accept_ranges && !r.content_range[0]);
    drain(&r);
    assert_int_equal(r.body.len, n);
    assert_memory_equal(r.body.data, data, n);
    fv_buf_free(&r.body);

    memset(&r, 0, sizeof r);
    assert_int_equal(fv_api_send_file(&r, path, "bytes=262100-262200", "application/x-tar"), 206);
    assert_int_equal(r.length, 101);
    char want[96];
    snprintf(want, sizeof want, "bytes 262100-262200/%zu", n);
    assert_string_equal(r.content_range, want);
    drain(&r);
    assert_int_equal(r.body.len, 101);
    assert_memory_equal(r.body.data, data + 262100, 101);
    fv_buf_free(&r.body);

    memset(&r, 0, sizeof r);
    assert_int_equal(fv_api_send_file(&r, path, "bytes=99999999-", "application/x-tar"), 416);
    snprintf(want, sizeof want, "bytes */%zu", n);
    assert_string_equal(r.content_range, want);
    fv_buf_free(&r.body);

    unlink(path);
    memset(&r, 0, sizeof r);
    assert_int_equal(fv_api_send_file(&r, path, NULL, "application/x-tar"), 404);
    fv_buf_free(&r.body);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ranges),
        cmocka_unit_test(file_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
