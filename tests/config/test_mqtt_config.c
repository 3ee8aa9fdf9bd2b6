/* test_mqtt_config.c - config/mqtt_config.h: the "mqtt" object, its defaults (prefixes,
 * interval, summary, the default signals), and every refusal naming the key (no broker, a
 * signal that reveals a place, bad prefixes, intervals, TLS halves, unknown keys). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "config/mqtt_config.h"
#include "util/err.h"
#include "wire/signals.h"

static int parse(const char *text, struct fv_mqtt_cfg *c, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    err[0] = '\0';
    int rc = fv_mqtt_cfg_parse(c, j, "fv.json", err, errlen);
    json_decref(j);
    return rc;
}

static void defaults(void **state)
{
    (void)state;
    struct fv_mqtt_cfg c;
    char err[256];
    assert_int_equal(parse("{\"broker\": \"127.0.0.1:1883\"}", &c, err, sizeof err), FV_OK);
    assert_int_equal(c.enabled, 1);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 1883);
    assert_string_equal(c.topic_prefix, "fleetvault");
    assert_string_equal(c.discovery_prefix, "homeassistant");
    assert_string_equal(c.client_id, "fleetvault");
    assert_int_equal(c.interval_ms, 5000);
    assert_int_equal(c.summary_ms, 3600000);
    assert_int_equal(c.ca[0], '\0');
    assert_int_equal(c.nsignals, 15);
    assert_int_equal(c.signals[0], fv_signal_lookup("Soc"));
    assert_int_equal(c.signals[14], fv_signal_lookup("SiteGridPower"));
}

static void everything(void **state)
{
    (void)state;
    struct fv_mqtt_cfg c;
    char err[256];
    assert_int_equal(
        parse("{\"broker\": \"mq.example:8883\", \"tls\": {\"ca\": \"ca.crt\", "
              "\"cert\": \"c.crt\", \"key\": \"c.key\"}, \"username\": \"fv\", "
              "\"password_file\": \"/p\", \"client_id\": \"fv-1\", \"topic_prefix\": "
              "\"home/cars\", \"discovery_prefix\": \"ha\", \"signals\": [\"Odometer\", "
              "\"Soc\", \"Soc\"], \"interval\": \"30s\", \"audit_summary\": \"10m\"}",
              &c, err, sizeof err),
        FV_OK);
    assert_string_equal(c.ca, "ca.crt");
    assert_string_equal(c.cert, "c.crt");
    assert_string_equal(c.key, "c.key");
    assert_string_equal(c.username, "fv");
    assert_string_equal(c.password_file, "/p");
    assert_string_equal(c.topic_prefix, "home/cars");
    assert_int_equal(c.nsignals, 2); /* Soc once */
    assert_int_equal(c.interval_ms, 30000);
    assert_int_equal(c.summary_ms, 600000);
}

static void refusals(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        {"{\"signals\": [\"Soc\"]}", "mqtt.broker"},
        {"{\"broker\": \"h\"}", "mqtt.broker"},
        {"{\"broker\": \"h:1\", \"signals\": [\"Soc\", \"Location\"]}", "mqtt.signals"},
        {"{\"broker\": \"h:1\", \"signals\": [\"GpsHeading\"]}", "mqtt.signals"},
        {"{\"broker\": \"h:1\", \"signals\": [\"NoSuchSignal\"]}", "mqtt.signals"},
        {"{\"broker\": \"h:1\", \"signals\": []}", "mqtt.signals"},
        {"{\"broker\": \"h:1\", \"topic_prefix\": \"a/#\"}", "mqtt.topic_prefix"},
        {"{\"broker\": \"h:1\", \"topic_prefix\": \"/a\"}", "mqtt.topic_prefix"},
        {"{\"broker\": \"h:1\", \"discovery_prefix\": \"a//b\"}", "mqtt.discovery_prefix"},
        {"{\"broker\": \"h:1\", \"interval\": \"0s\"}", "mqtt.interval"},
        {"{\"broker\": \"h:1\", \"interval\": \"2h\"}", "mqtt.interval"},
        {"{\"broker\": \"h:1\", \"audit_summary\": \"1s\"}", "mqtt.audit_summary"},
        {"{\"broker\": \"h:1\", \"tls\": {\"cert\": \"c\", \"key\": \"k\"}}", "mqtt.tls"},
        {"{\"broker\": \"h:1\", \"tls\": {\"ca\": \"a\", \"cert\": \"c\"}}", "mqtt.tls"},
        {"{\"broker\": \"h:1\", \"password\": \"x\"}", "\"password\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fv_mqtt_cfg c;
        char err[256];
        assert_int_equal(parse(bad[i][0], &c, err, sizeof err), FV_EINVAL);
        if (strstr(err, bad[i][1]) == NULL) fail_msg("%s: %s", bad[i][0], err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(everything),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
