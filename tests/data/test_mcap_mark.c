/* test_mcap_mark.c - the watermarked copy of a clip (data/mcap_mark.h): every schema,
 * channel (with its metadata) and message of the original, plus the watermark channel whose
 * metadata and one message carry the pairs; a damaged original is refused naming an offset,
 * and nothing usable is produced. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "data/mcap.h"
#include "data/mcap_mark.h"
#include "util/err.h"

static void make(struct fv_buf *b)
{
    struct fv_mcap_writer *w;
    char err[256];
    uint16_t s1, s2, c1, c2;
    const char *k[] = {"sensor"}, *v[] = {"imu"};
    assert_int_equal(fv_mcap_writer_open_mem(b, NULL, &w, err, sizeof err), FV_OK);
    assert_int_equal(fv_mcap_add_schema(w, "a", "jsonschema", "{}", 2, &s1, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_mcap_add_schema(w, "b", "jsonschema", "{ }", 3, &s2, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_mcap_add_channel(w, s2, "/imu", "json", k, v, 1, &c1, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_mcap_add_channel(w, 0, "/raw", "", NULL, NULL, 0, &c2, err, sizeof err),
                     FV_OK);
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(fv_mcap_add_message(w, i % 2 ? c2 : c1, i, 500 + i, 600 + i, &i, sizeof i,
                                             err, sizeof err),
                         FV_OK);
    assert_int_equal(fv_mcap_writer_close(w, err, sizeof err), FV_OK);
}

struct seen {
    int n, marks;
    uint16_t mark;
    char json[256];
};

static int on_msg(void *arg, const struct fv_mcap_msg *m)
{
    struct seen *s = arg;
    if (m->channel_id == s->mark) {
        s->marks++;
        snprintf(s->json, sizeof s->json, "%.*s", (int)m->len, (const char *)m->data);
        assert_true(m->log_time == 500);
        return 0;
    }
    uint32_t i;
    assert_int_equal(m->len, sizeof i);
    memcpy(&i, m->data, sizeof i);
    assert_int_equal(i, (uint32_t)s->n);
    assert_int_equal(m->sequence, i);
    assert_true(m->log_time == 500 + i && m->publish_time == 600 + i);
    assert_int_equal(m->channel_id, i % 2 ? 2 : 1);
    s->n++;
    return 0;
}

static void test_mark(void **state)
{
    (void)state;
    struct fv_buf in = {0}, out = {0};
    char err[256] = "";
    make(&in);
    const char *k[] = {"labeler", "serve_id"}, *v[] = {"ann", "0123abcd"};
    assert_int_equal(fv_mcap_mark(in.data, in.len, k, v, 2, NULL, NULL, &out, err, sizeof err),
                     FV_OK);
    struct fv_mcap_source src;
    struct fv_mcap_reader *r;
    fv_mcap_source_mem(&src, out.data, out.len);
    assert_int_equal(fv_mcap_reader_open(&src, &r, err, sizeof err), FV_OK);
    assert_int_equal(fv_mcap_schema_count(r), 2);
    assert_string_equal(fv_mcap_schema_at(r, 1)->name.p, "b");
    assert_int_equal(fv_mcap_channel_count(r), 3);
    const struct fv_mcap_channel *imu = fv_mcap_channel_at(r, 0), *m = fv_mcap_channel_at(r, 2);
    assert_string_equal(imu->topic.p, "/imu");
    assert_int_equal(imu->schema_id, 2);
    assert_int_equal(imu->nmeta, 1);
    assert_string_equal(imu->vals[0].p, "imu");
    assert_int_equal(fv_mcap_channel_at(r, 1)->schema_id, 0);
    assert_string_equal(m->topic.p, FV_MCAP_MARK_TOPIC);
    assert_int_equal(m->nmeta, 2);
    for (size_t i = 0; i < 2; i++) {
        int kk = strcmp(m->keys[i].p, "labeler") == 0 ? 0 : 1;
        assert_string_equal(m->keys[i].p, k[kk]);
        assert_string_equal(m->vals[i].p, v[kk]);
    }
    struct seen s = {.mark = m->id};
    assert_int_equal(fv_mcap_read(r, NULL, on_msg, &s, err, sizeof err), FV_OK);
    assert_int_equal(s.n, 10);
    assert_int_equal(s.marks, 1);
    assert_string_equal(s.json, "{\"labeler\":\"ann\",\"serve_id\":\"0123abcd\"}");
    fv_mcap_reader_free(r);
    /* a damaged original: refused with the offset */
    fv_buf_reset(&out);
    in.data[in.len - 3] ^= 0xff; /* the trailing magic */
    err[0] = '\0';
    assert_int_equal(fv_mcap_mark(in.data, in.len, k, v, 2, NULL, NULL, &out, err, sizeof err),
                     FV_ECORRUPT);
    assert_non_null(strstr(err, "byte"));
    assert_int_equal(fv_mcap_mark("nope", 4, k, v, 2, NULL, NULL, &out, err, sizeof err),
                     FV_ECORRUPT);
    fv_buf_free(&in);
    fv_buf_free(&out);
}

static int keep_imu(void *arg, const struct fv_mcap_channel *ch)
{
    (*(int *)arg)++;
    return strcmp(ch->topic.p, "/imu") == 0;
}

static int count_msgs(void *arg, const struct fv_mcap_msg *m)
{
    (void)m;
    (*(int *)arg)++;
    return 0;
}

/* A copy that keeps some channels: the others, their messages and the schemas only they used
 * are left out. */
static void test_mark_keep(void **state)
{
    (void)state;
    struct fv_buf in = {0}, out = {0};
    char err[256] = "";
    make(&in);
    const char *k[] = {"labeler"}, *v[] = {"ann"};
    int asked = 0;
    assert_int_equal(
        fv_mcap_mark(in.data, in.len, k, v, 1, keep_imu, &asked, &out, err, sizeof err), FV_OK);
    assert_int_equal(asked, 2);
    struct fv_mcap_source src;
    struct fv_mcap_reader *r;
    fv_mcap_source_mem(&src, out.data, out.len);
    assert_int_equal(fv_mcap_reader_open(&src, &r, err, sizeof err), FV_OK);
    assert_int_equal(fv_mcap_scan(r, NULL, NULL, NULL, err, sizeof err), FV_OK);
    assert_int_equal(fv_mcap_schema_count(r), 1); /* "a" was nobody's */
    assert_string_equal(fv_mcap_schema_at(r, 0)->name.p, "b");
    assert_int_equal(fv_mcap_channel_count(r), 2);
    assert_string_equal(fv_mcap_channel_at(r, 0)->topic.p, "/imu");
    assert_int_equal(fv_mcap_channel_at(r, 0)->schema_id, 1);
    assert_string_equal(fv_mcap_channel_at(r, 1)->topic.p, FV_MCAP_MARK_TOPIC);
    int n = 0;
    assert_int_equal(fv_mcap_read(r, NULL, count_msgs, &n, err, sizeof err), FV_OK);
    assert_int_equal(n, 5 + 1); /* /imu's 5, the watermark */
    fv_mcap_reader_free(r);
    fv_buf_free(&in);
    fv_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_mark),
                                       cmocka_unit_test(test_mark_keep)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
