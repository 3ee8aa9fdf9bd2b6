/* test_mqtt_ha.c - mqtt/mqtt_ha.c: value texts (no location ever), state topics, and the Home
 * Assistant discovery message of a signal (topic, unique_id, state_topic, device, unit and
 * device_class where known, binary_sensor for booleans, energy sites named as such). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config/mqtt_config.h"
#include "mqtt/mqtt_int.h"
#include "wire/signals.h"

#define DEV "0123456789abcdef0123456789abcdef"

static void cfg(struct fv_mqtt_cfg *c)
{
    json_t *j = json_loads("{\"broker\": \"h:1\"}", 0, NULL);
    assert_int_equal(fv_mqtt_cfg_parse(c, j, "t", NULL, 0), 0);
    json_decref(j);
}

static void value_texts(void **state)
{
    (void)state;
    char out[FV_MQTT_VALUE_MAX];
    struct fv_value v = {.kind = FV_VK_DOUBLE, .u.d = 37.4};
    assert_int_equal(fv_mqtt__value_text(&v, out), 0);
    assert_string_equal(out, "37.4");
    v = (struct fv_value){.kind = FV_VK_INT, .u.i = -12};
    assert_int_equal(fv_mqtt__value_text(&v, out), 0);
    assert_string_equal(out, "-12");
    v = (struct fv_value){.kind = FV_VK_BOOL, .u.i = 1};
    assert_int_equal(fv_mqtt__value_text(&v, out), 0);
    assert_string_equal(out, "ON");
    v = (struct fv_value){.kind = FV_VK_LOCATION, .u.loc = {52.5, 13.4}};
    assert_int_equal(fv_mqtt__value_text(&v, out), -1); /* Q6 */
    v = (struct fv_value){.kind = FV_VK_STRING, .u.s = ""};
    assert_int_equal(fv_mqtt__value_text(&v, out), -1); /* would delete the topic */
    v = (struct fv_value){.kind = FV_VK_INVALID};
    assert_int_equal(fv_mqtt__value_text(&v, out), -1);
}

static void discovery(void **state)
{
    (void)state;
    struct fv_mqtt_cfg c;
    cfg(&c);
    char topic[256];
    char *text =
        fv_mqtt__discovery(&c, DEV, (unsigned)fv_signal_lookup("Soc"), 0, 0, topic, sizeof topic);
    assert_non_null(text);
    assert_string_equal(topic, "homeassistant/sensor/fleetvault_" DEV "_Soc/config");
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "unique_id")),
                        "fleetvault_" DEV "_Soc");
    assert_string_equal(json_string_value(json_object_get(j, "state_topic")),
                        "fleetvault/" DEV "/Soc");
    assert_string_equal(json_string_value(json_object_get(j, "unit_of_measurement")), "%");
    assert_string_equal(json_string_value(json_object_get(j, "device_class")), "battery");
    json_t *d = json_object_get(j, "device");
    assert_string_equal(json_string_value(json_array_get(json_object_get(d, "identifiers"), 0)),
                        "fleetvault_" DEV);
    assert_string_equal(json_string_value(json_object_get(d, "model")), "vehicle");
    json_decref(j);
    free(text);

    text = fv_mqtt__discovery(&c, DEV, (unsigned)fv_signal_lookup("SiteBatteryPower"), 1, 0, topic,
                              sizeof topic);
    j = json_loads(text, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "device_class")), "power");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "device"), "model")),
                        "energy site");
    json_decref(j);
    free(text);

    text = fv_mqtt__discovery(&c, DEV, (unsigned)fv_signal_lookup("Locked"), 0, 1, topic,
                              sizeof topic);
    assert_non_null(text);
    assert_string_equal(topic, "homeassistant/binary_sensor/fleetvault_" DEV "_Locked/config");
    assert_null(strstr(text, "unit_of_measurement"));
    free(text);

    /* no discovery, and so no state topic, for a place (Q6) */
    assert_null(fv_mqtt__discovery(&c, DEV, (unsigned)fv_signal_lookup("Location"), 0, 0, topic,
                                   sizeof topic));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(value_texts),
        cmocka_unit_test(discovery),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
