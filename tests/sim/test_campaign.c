/* test_campaign.c - a simulated vehicle's campaigns (sim/campaign.h VC1-VC4): acks of start
 * and stop (a resend acked again, a trigger the vehicle cannot compile refused), hits when the
 * trigger fires, within clips_per_day, total_clips, the post window and end_ms, each asking
 * the clip hook once (the stub refuses: "not built"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/campaign.h"
#include "util/err.h"
#include "wire/signals.h"

#define T0  1800000000000LL /* a UTC day starts 0 ms before T0 + 43200000 ... */
#define DAY 86400000LL

static int msg(struct fv_sim_campaigns *cs, const char *json, char *ack, size_t acklen)
{
    struct fv_buf b = {0};
    int rc = fv_sim_campaigns_message(cs, (const unsigned char *)json, strlen(json), &b);
    snprintf(ack, acklen, "%.*s", (int)b.len, b.data ? (const char *)b.data : "");
    fv_buf_free(&b);
    return rc;
}

static int uploads;
static char last_clip[128];

static int fake_upload(void *arg, const struct fv_sim_clip_req *req, char *err, size_t errlen)
{
    (void)arg;
    (void)err;
    (void)errlen;
    uploads++;
    snprintf(last_clip, sizeof last_clip, "%s", req->clip_id);
    assert_int_equal(req->pre_s, 3);
    assert_int_equal(req->post_s, 10);
    assert_int_equal(req->nchannels, 2);
    assert_string_equal(req->channels[1], "imu");
    return FV_OK;
}

/* One sample of VehicleSpeed at t; returns the hits reported. */
static size_t speed(struct fv_sim_campaigns *cs, double kmh, int64_t t)
{
    struct fv_datum d = {.field = (uint32_t)fv_signal_lookup("VehicleSpeed")};
    d.value.kind = FV_VK_DOUBLE;
    d.value.u.d = kmh;
    struct fv_buf hits[4] = {{0}};
    size_t n = 0;
    uint64_t failures = 0;
    assert_int_equal(
        fv_sim_campaigns_sample(cs, "VIN", &d, 1, t, fake_upload, NULL, hits, 4, &n, &failures),
        FV_OK);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(strstr((const char *)hits[i].data, "\"clip\":"));
        fv_buf_free(&hits[i]);
    }
    assert_int_equal(failures, 0);
    return n;
}

static const char START[] =
    "{\"v\":1,\"op\":\"start\",\"id\":\"c1\",\"trigger\":\"VehicleSpeed > 100\",\"pre_s\":3,"
    "\"post_s\":10,\"channels\":[\"VehicleSpeed\",\"imu\"],\"budgets\":{\"clips_per_day\":2,"
    "\"total_clips\":3,\"total_bytes\":1000},\"end_ms\":%lld}";

static void test_acks(void **state)
{
    (void)state;
    struct fv_sim_campaigns *cs;
    assert_int_equal(fv_sim_campaigns_new(&cs), FV_OK);
    char m[600], ack[300];
    snprintf(m, sizeof m, START, (long long)(T0 + 10 * DAY));
    assert_int_equal(msg(cs, m, ack, sizeof ack), FV_OK);
    assert_string_equal(ack, "{\"id\":\"c1\",\"op\":\"start\",\"status\":\"ok\"}");
    assert_int_equal(msg(cs, m, ack, sizeof ack), FV_OK); /* VC1: a resend, acked again */
    assert_string_equal(ack, "{\"id\":\"c1\",\"op\":\"start\",\"status\":\"ok\"}");
    assert_int_equal(fv_sim_campaigns_count(cs), 1);
    assert_int_equal(msg(cs,
                         "{\"op\":\"start\",\"id\":\"c2\",\"trigger\":\"Warp > 9\",\"budgets\":"
                         "{\"clips_per_day\":1,\"total_clips\":1}}",
                         ack, sizeof ack),
                     FV_OK);
    assert_non_null(strstr(ack, "\"status\":\"refused\""));
    assert_non_null(strstr(ack, "column 1: unknown signal 'Warp'"));
    assert_int_equal(fv_sim_campaigns_count(cs), 1);
    assert_int_equal(msg(cs, "{\"op\":\"dance\",\"id\":\"c1\"}", ack, sizeof ack), FV_EPROTO);
    assert_int_equal(msg(cs, "not json", ack, sizeof ack), FV_EPROTO);
    assert_string_equal(ack, "");
    /* VC2 */
    assert_int_equal(msg(cs, "{\"op\":\"stop\",\"id\":\"c1\"}", ack, sizeof ack), FV_OK);
    assert_string_equal(ack, "{\"id\":\"c1\",\"op\":\"stop\",\"status\":\"ok\"}");
    assert_int_equal(fv_sim_campaigns_count(cs), 0);
    assert_int_equal(msg(cs, "{\"op\":\"stop\",\"id\":\"c1\"}", ack, sizeof ack), FV_OK);
    assert_int_equal(speed(cs, 150, T0), 0); /* stopped: no hits */
    fv_sim_campaigns_free(cs);
}

static void test_hits_within_budgets(void **state)
{
    (void)state;
    struct fv_sim_campaigns *cs;
    assert_int_equal(fv_sim_campaigns_new(&cs), FV_OK);
    char m[600], ack[300];
    int64_t day0 = (T0 / DAY + 1) * DAY; /* a UTC midnight */
    snprintf(m, sizeof m, START, (long long)(day0 + 2 * DAY));
    assert_int_equal(msg(cs, m, ack, sizeof ack), FV_OK);
    uploads = 0;
    assert_int_equal(speed(cs, 90, day0), 0);
    assert_int_equal(speed(cs, 120, day0 + 1000), 1); /* fires */
    assert_int_equal(uploads, 1);
    assert_non_null(strstr(last_clip, "c1-"));
    assert_int_equal(speed(cs, 130, day0 + 2000), 0); /* still true: no new edge */
    assert_int_equal(speed(cs, 90, day0 + 3000), 0);
    assert_int_equal(speed(cs, 120, day0 + 4000), 0); /* VC3: within post_s (10 s) */
    assert_int_equal(speed(cs, 90, day0 + 20000), 0);
    assert_int_equal(speed(cs, 120, day0 + 21000), 1); /* second of the day */
    assert_int_equal(speed(cs, 90, day0 + 40000), 0);
    assert_int_equal(speed(cs, 120, day0 + 41000), 0); /* clips_per_day (2) */
    assert_int_equal(speed(cs, 90, day0 + DAY), 0);
    assert_int_equal(speed(cs, 120, day0 + DAY + 1000), 1); /* a new day; third in all */
    assert_int_equal(speed(cs, 90, day0 + DAY + 30000), 0);
    assert_int_equal(speed(cs, 120, day0 + DAY + 31000), 0); /* total_clips (3) */
    assert_int_equal(uploads, 3);
    fv_sim_campaigns_free(cs);

    /* never after end_ms */
    assert_int_equal(fv_sim_campaigns_new(&cs), FV_OK);
    snprintf(m, sizeof m, START, (long long)(day0 + 5000));
    assert_int_equal(msg(cs, m, ack, sizeof ack), FV_OK);
    assert_int_equal(speed(cs, 90, day0 + 4000), 0);
    assert_int_equal(speed(cs, 120, day0 + 5000), 0);
    fv_sim_campaigns_free(cs);

    /* the stub hook: nothing uploaded, "not built" */
    char err[100];
    struct fv_sim_clip_req req = {0};
    assert_int_equal(fv_sim_clip_upload_stub(NULL, &req, err, sizeof err), FV_ESTATE);
    assert_string_equal(err, "clip upload not built");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_acks),
                                       cmocka_unit_test(test_hits_within_budgets)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
