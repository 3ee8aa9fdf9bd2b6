/* test_campaign.c - campaigns (data/campaign.h): the spec's checks (each error names its
 * member), and the service's rules C1-C5 driven through a fake downlink: the start sent to
 * every target and again until acked, on connect at once; hits counted within the budgets;
 * the stop sent until acked; finished at total_clips; state kept across a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include "data/campaign.h"
#include "util/err.h"

#define NOW 1800000000000LL

static const char GOOD[] =
    "{\"name\":\"brake\",\"trigger\":\"VehicleSpeed > 30 for 2s\",\"channels\":[\"imu\","
    "\"VehicleSpeed\"],\"budgets\":{\"clips_per_vehicle_per_day\":2,\"total_clips\":3,"
    "\"total_bytes\":1000}}";

static void parse_bad(const char *json, const char *want)
{
    struct fv_campaign_spec s;
    char err[300] = "";
    assert_int_equal(fv_campaign_spec_parse(json, strlen(json), NOW, &s, err, sizeof err),
                     FV_EINVAL);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", json, err, want);
}

static void test_spec(void **state)
{
    (void)state;
    struct fv_campaign_spec s;
    char err[300];
    assert_int_equal(fv_campaign_spec_parse(GOOD, strlen(GOOD), NOW, &s, err, sizeof err), FV_OK);
    assert_string_equal(s.name, "brake");
    assert_int_equal(s.pre_s, 10);
    assert_int_equal(s.post_s, 5);
    assert_int_equal(s.nchannels, 2);
    assert_int_equal(s.start_ms, NOW);
    assert_int_equal(s.end_ms, NOW + 7 * 86400000LL);
    assert_int_equal(s.total_clips, 3);
    parse_bad("[1]", "the body is not a JSON object");
    parse_bad("{\"trigger\":\"Gear==1\"}", "name: expected a string");
    parse_bad("{\"name\":\"x\",\"trigger\":\"Gear == (1\"}", "trigger: column 11: expected ')'");
    parse_bad("{\"name\":\"x\",\"trigger\":\"Gear == 1\",\"target\":\"Nope > 1\"}",
              "target: column 1: unknown signal 'Nope'");
    parse_bad("{\"name\":\"x\",\"trigger\":\"Gear == 1\",\"channels\":[]}", "channels: expected");
    parse_bad("{\"name\":\"x\",\"trigger\":\"Gear == 1\",\"channels\":[\"imu\",\"imu\"]}",
              "channels[1]: 'imu' is listed twice");
    parse_bad("{\"name\":\"x\",\"trigger\":\"Gear == 1\",\"channels\":[\"imu\"],\"pre_s\":301}",
              "pre_s: expected a whole number from 0 to 300");
    parse_bad("{\"name\":\"x\",\"trigger\":\"Gear == 1\",\"channels\":[\"imu\"],\"budgets\":"
              "{\"clips_per_vehicle_per_day\":1,\"total_clips\":0,\"total_bytes\":1}}",
              "budgets.total_clips: expected a whole number from 1");
    parse_bad("{\"name\":\"x\",\"trigger\":\"Gear == 1\",\"channels\":[\"imu\"],\"budgets\":"
              "{\"clips_per_vehicle_per_day\":1.5,\"total_clips\":1,\"total_bytes\":1}}",
              "budgets.clips_per_vehicle_per_day: expected a whole number");
    parse_bad("{\"name\":\"x\",\"trigger\":\"Gear == 1\",\"channels\":[\"imu\"],\"budgets\":"
              "{\"clips\":1}}",
              "budgets.clips: unknown budget");
    parse_bad("{\"name\":\"x\",\"trigger\":\"Gear == 1\",\"channels\":[\"imu\"],\"region\":"
              "{\"min_lat\":1,\"min_lon\":2,\"max_lat\":91,\"max_lon\":3}}",
              "region.max_lat: expected degrees from -90 to 90");
    parse_bad("{\"nam\":1}", "nam: unknown member");
}

/* ---- the service through a fake downlink ---------------------------------------------- */

struct sent {
    char dev[65], topic[32], msg_id[64], payload[2048];
};

/* The service's thread sends too (on its own clock, wall time, which is before NOW: its
 * turns owe nothing the test's turns did not send), so the log is locked. */
static struct sent log_[256];
static size_t nlog;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static int fake_send(void *impl, const char *dev, const char *topic, const char *msg_id,
                     const void *payload, size_t len)
{
    (void)impl;
    pthread_mutex_lock(&log_mu);
    if (nlog < 256) {
        struct sent *s = &log_[nlog++];
        snprintf(s->dev, sizeof s->dev, "%s", dev);
        snprintf(s->topic, sizeof s->topic, "%s", topic);
        snprintf(s->msg_id, sizeof s->msg_id, "%s", msg_id);
        snprintf(s->payload, sizeof s->payload, "%.*s", (int)len, (const char *)payload);
    }
    pthread_mutex_unlock(&log_mu);
    return FV_OK;
}

/* How many messages with this suffix ("start"/"stop") went to dev since index from. */
static int count_sent(const char *dev, const char *op, size_t from)
{
    int n = 0;
    pthread_mutex_lock(&log_mu);
    for (size_t i = from; i < nlog; i++)
        if (strcmp(log_[i].dev, dev) == 0 && strstr(log_[i].msg_id, op) &&
            strcmp(log_[i].topic, FV_TOPIC_CAMPAIGN) == 0)
            n++;
    pthread_mutex_unlock(&log_mu);
    return n;
}

static size_t log_mark(void)
{
    pthread_mutex_lock(&log_mu);
    size_t n = nlog;
    pthread_mutex_unlock(&log_mu);
    return n;
}

static void uplink(struct fv_campaign *c, const char *dev, const char *topic, const char *json)
{
    const struct fv_downlink_listener *l = fv_campaign_listener(c);
    l->on_message(l->arg, dev, topic, (const unsigned char *)json, strlen(json));
}

static json_int_t stat_of(struct fv_campaign *c, const char *id, const char *key)
{
    json_t *j = fv_campaign_json(c, id);
    assert_non_null(j);
    json_int_t v = json_integer_value(json_object_get(j, key));
    json_decref(j);
    return v;
}

static void test_service(void **state)
{
    (void)state;
    char dir[] = "/tmp/fv-test-campaign-XXXXXX", path[256], err[200], id[FV_CAMPAIGN_ID_MAX],
         msg[200];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/campaigns.db", dir);
    struct fv_downlink dl = {fake_send, NULL};
    struct fv_campaign *c;
    nlog = 0;
    assert_int_equal(fv_campaign_open(path, dl, &c, err, sizeof err), FV_OK);
    struct fv_campaign_spec s;
    assert_int_equal(fv_campaign_spec_parse(GOOD, strlen(GOOD), NOW, &s, err, sizeof err), FV_OK);
    s.start_ms = NOW - 1000;          /* the service's clock is the caller's here (tick) */
    s.end_ms = NOW + 30 * 86400000LL; /* never ends during the test */
    const char *targets[] = {"VA", "VB"};
    assert_int_equal(fv_campaign_create(c, &s, targets, 2, NOW, id, err, sizeof err), FV_OK);
    fv_campaign_tick(c, NOW);
    /* C1: the start went to both, once per resend period, and again while unacked */
    assert_true(count_sent("VA", "start", 0) >= 1);
    assert_true(count_sent("VB", "start", 0) >= 1);
    assert_non_null(strstr(log_[0].payload, "\"trigger\":\"VehicleSpeed > 30 for 2s\""));
    size_t mark = log_mark();
    fv_campaign_tick(c, NOW + 1000);
    assert_int_equal(count_sent("VA", "start", mark), 0);
    snprintf(msg, sizeof msg, "{\"id\":\"%s\",\"op\":\"start\",\"status\":\"ok\"}", id);
    uplink(c, "VA", FV_TOPIC_CAMPAIGN_ACK, msg);
    fv_campaign_tick(c, NOW + FV_CAMPAIGN_RESEND_MS + 1000);
    assert_int_equal(count_sent("VA", "start", mark), 0); /* acked: not again */
    assert_int_equal(count_sent("VB", "start", mark), 1); /* not acked: again */
    mark = log_mark();
    const struct fv_downlink_listener *l = fv_campaign_listener(c);
    l->on_connect(l->arg, "VB");
    fv_campaign_tick(c, NOW + FV_CAMPAIGN_RESEND_MS + 2000);
    assert_true(count_sent("VB", "start", mark) >= 1); /* at once on connect */
    assert_int_equal(stat_of(c, id, "delivered"), 1);
    assert_int_equal(stat_of(c, id, "targeted"), 2);
    /* C3: hits within budgets; a hit from a non-target or a vehicle that never acked is
     * refused */
    snprintf(msg, sizeof msg, "{\"id\":\"%s\",\"trigger_ms\":1,\"clip\":\"k\"}", id);
    uplink(c, "VA", FV_TOPIC_CAMPAIGN_HIT, msg);
    uplink(c, "VA", FV_TOPIC_CAMPAIGN_HIT, msg);
    uplink(c, "VA", FV_TOPIC_CAMPAIGN_HIT, msg); /* over clips_per_vehicle_per_day (2) */
    uplink(c, "VB", FV_TOPIC_CAMPAIGN_HIT, msg); /* never acked */
    uplink(c, "VZ", FV_TOPIC_CAMPAIGN_HIT, msg); /* no target */
    uplink(c, "VA", FV_TOPIC_CAMPAIGN_HIT, "not json");
    assert_int_equal(stat_of(c, id, "hits"), 2);
    assert_int_equal(stat_of(c, id, "hits_refused"), 3);
    assert_int_equal(fv_campaign_may_upload(c, id, "VA", NULL, 0), 1);
    assert_int_equal(fv_campaign_may_upload(c, id, "VB", NULL, 0), 0);
    assert_int_equal(fv_campaign_may_upload(c, "nope", "VA", NULL, 0), 0);
    /* C5: a restart keeps state and counts */
    fv_campaign_close(c);
    nlog = 0;
    assert_int_equal(fv_campaign_open(path, dl, &c, err, sizeof err), FV_OK);
    assert_int_equal(stat_of(c, id, "hits"), 2);
    assert_int_equal(stat_of(c, id, "delivered"), 1);
    json_t *lst = fv_campaign_list_json(c);
    assert_int_equal(json_array_size(json_object_get(lst, "campaigns")), 1);
    json_decref(lst);
    /* C2: stop; the stop goes to the target that acked the start, until it acks */
    assert_int_equal(fv_campaign_stop(c, id, NOW + 60000), FV_OK);
    assert_int_equal(fv_campaign_stop(c, id, NOW + 60000), FV_ESTATE);
    assert_int_equal(fv_campaign_stop(c, "nope", NOW), FV_ENOENT);
    mark = log_mark();
    fv_campaign_tick(c, NOW + 61000);
    assert_true(count_sent("VA", "stop", mark) >= 1);
    assert_int_equal(count_sent("VB", "stop", mark), 0);
    assert_int_equal(count_sent("VB", "start", mark), 0); /* over: no more starts */
    snprintf(msg, sizeof msg, "{\"id\":\"%s\",\"op\":\"stop\",\"status\":\"ok\"}", id);
    uplink(c, "VA", FV_TOPIC_CAMPAIGN_ACK, msg);
    mark = log_mark();
    fv_campaign_tick(c, NOW + 61000 + FV_CAMPAIGN_RESEND_MS * 2);
    assert_int_equal(count_sent("VA", "stop", mark), 0);
    assert_int_equal(stat_of(c, id, "stop_acked"), 1);
    json_t *j = fv_campaign_json(c, id);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "stopped");
    json_decref(j);
    /* C3: total_clips finishes a campaign */
    char id2[FV_CAMPAIGN_ID_MAX];
    assert_int_equal(fv_campaign_create(c, &s, targets, 1, NOW, id2, err, sizeof err), FV_OK);
    snprintf(msg, sizeof msg, "{\"id\":\"%s\",\"op\":\"start\",\"status\":\"ok\"}", id2);
    uplink(c, "VA", FV_TOPIC_CAMPAIGN_ACK, msg);
    fv_campaign_tick(c, NOW);
    fv_campaign_clip_stored(c, id2, "VA", 400);
    fv_campaign_clip_stored(c, id2, "VA", 700); /* past total_bytes (1000) */
    j = fv_campaign_json(c, id2);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "finished");
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 1100);
    assert_int_equal(json_integer_value(json_object_get(j, "clips_uploaded")), 2);
    json_decref(j);
    /* C4: scheduled until its start, nothing sent before */
    char id3[FV_CAMPAIGN_ID_MAX];
    struct fv_campaign_spec later = s;
    later.start_ms = NOW + 5000;
    const char *vc[] = {"VC"};
    assert_int_equal(fv_campaign_create(c, &later, vc, 1, NOW, id3, err, sizeof err), FV_OK);
    mark = log_mark();
    fv_campaign_tick(c, NOW + 4999);
    assert_int_equal(count_sent("VC", "start", mark), 0);
    j = fv_campaign_json(c, id3);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "scheduled");
    json_decref(j);
    fv_campaign_tick(c, NOW + 5000);
    assert_int_equal(count_sent("VC", "start", mark), 1);
    j = fv_campaign_json(c, id3);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "active");
    json_decref(j);
    /* C6: consent withdrawn: a stop until acked, no start, no hit, no clip */
    char id4[FV_CAMPAIGN_ID_MAX];
    const char *vde[] = {"VD", "VE"};
    assert_int_equal(fv_campaign_create(c, &s, vde, 2, NOW, id4, err, sizeof err), FV_OK);
    snprintf(msg, sizeof msg, "{\"id\":\"%s\",\"op\":\"start\",\"status\":\"ok\"}", id4);
    uplink(c, "VD", FV_TOPIC_CAMPAIGN_ACK, msg);
    fv_campaign_tick(c, NOW + 1);
    assert_int_equal(fv_campaign_withdraw(c, "VD"), FV_OK);
    assert_int_equal(fv_campaign_withdraw(c, "VE"), FV_OK); /* never acked: nothing to stop */
    mark = log_mark();
    fv_campaign_tick(c, NOW + 2);
    assert_int_equal(count_sent("VD", "stop", mark), 1);
    assert_int_equal(count_sent("VE", "stop", mark), 0);
    fv_campaign_tick(c, NOW + 2 + FV_CAMPAIGN_RESEND_MS);
    assert_int_equal(count_sent("VD", "stop", mark), 2); /* until acked */
    assert_int_equal(count_sent("VE", "start", mark), 0);
    snprintf(msg, sizeof msg, "{\"id\":\"%s\",\"trigger_ms\":1,\"clip\":\"k\"}", id4);
    uplink(c, "VD", FV_TOPIC_CAMPAIGN_HIT, msg);
    assert_int_equal(stat_of(c, id4, "hits"), 0);
    assert_int_equal(stat_of(c, id4, "consent_withdrawn"), 2);
    assert_int_equal(fv_campaign_may_upload(c, id4, "VD", NULL, 0), 0);
    snprintf(msg, sizeof msg, "{\"id\":\"%s\",\"op\":\"stop\",\"status\":\"ok\"}", id4);
    uplink(c, "VD", FV_TOPIC_CAMPAIGN_ACK, msg);
    mark = log_mark();
    fv_campaign_tick(c, NOW + 2 + 3 * FV_CAMPAIGN_RESEND_MS);
    assert_int_equal(count_sent("VD", "stop", mark), 0);
    json_t *dj = fv_campaign_device_json(c, "VA");
    assert_int_equal(json_array_size(json_object_get(dj, "campaigns")), 2);
    json_decref(dj);
    assert_null(fv_campaign_device_json(c, "VZ"));
    assert_int_equal(fv_campaign_forget_device(c, "VA"), FV_OK);
    assert_null(fv_campaign_device_json(c, "VA"));
    assert_int_equal(stat_of(c, id2, "targeted"), 0);
    fv_campaign_close(c);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_spec), cmocka_unit_test(test_service)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
