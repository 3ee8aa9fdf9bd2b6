/*
 * mqtt_ha.c - the topics and payloads of the MQTT publisher (mqtt.h): value texts, state
 * topics and Home Assistant MQTT discovery messages.
 *
 * Discovery (Home Assistant's MQTT integration): DISCOVERY/sensor/fleetvault_DEV_SIGNAL/config
 * (binary_sensor for booleans), retained, with name, unique_id, object_id, state_topic,
 * device (identifiers fleetvault_DEV, a name that is the pseudonym's first 8 digits, model
 * "vehicle" or "energy site"), and, where known, unit_of_measurement, device_class and
 * state_class. Units are those the devices send (the simulator's: km, km/h, degC, kW, kWh).
 * Pure; any thread.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mqtt/mqtt_int.h"
#include "util/fmt.h"
#include "wire/places.h"
#include "wire/signals.h"

/* What Home Assistant is told of a signal it knows; the rest are plain sensors. */
struct ha_meta {
    const char *signal, *unit, *device_class, *state_class;
};
static const struct ha_meta metas[] = {
    {"Soc", "%", "battery", "measurement"},
    {"BatteryLevel", "%", "battery", "measurement"},
    {"ChargeLimitSoc", "%", NULL, NULL},
    {"EstBatteryRange", "km", "distance", "measurement"},
    {"VehicleSpeed", "km/h", "speed", "measurement"},
    {"Odometer", "km", "distance", "total_increasing"},
    {"InsideTemp", "°C", "temperature", "measurement"},
    {"OutsideTemp", "°C", "temperature", "measurement"},
    {"ACChargingPower", "kW", "power", "measurement"},
    {"SiteBatteryPower", "kW", "power", "measurement"},
    {"SiteSolarPower", "kW", "power", "measurement"},
    {"SiteLoadPower", "kW", "power", "measurement"},
    {"SiteGridPower", "kW", "power", "measurement"},
    {"SiteEnergy", "kWh", "energy_storage", "measurement"},
    {"SiteCapacity", "kWh", "energy_storage", NULL},
    {"SiteReserve", "%", NULL, NULL},
};

static const struct ha_meta *meta_of(const char *signal)
{
    for (size_t i = 0; i < sizeof metas / sizeof metas[0]; i++)
        if (strcmp(metas[i].signal, signal) == 0) return &metas[i];
    return NULL;
}

int fv_mqtt__value_text(const struct fv_value *v, char out[FV_MQTT_VALUE_MAX])
{
    switch (v->kind) {
    case FV_VK_DOUBLE:
        if (!isfinite(v->u.d)) return -1;
        fv_fmt_double(out, v->u.d);
        return 0;
    case FV_VK_INT:
    case FV_VK_ENUM:
        snprintf(out, FV_MQTT_VALUE_MAX, "%" PRId64, v->u.i);
        return 0;
    case FV_VK_BOOL:
        snprintf(out, FV_MQTT_VALUE_MAX, "%s", v->u.i ? "ON" : "OFF");
        return 0;
    case FV_VK_STRING:
        /* an empty retained payload deletes the topic (Q4): never a value */
        if (v->u.s == NULL || v->u.s[0] == '\0' || strlen(v->u.s) >= FV_MQTT_VALUE_MAX) return -1;
        snprintf(out, FV_MQTT_VALUE_MAX, "%s", v->u.s);
        return 0;
    default: /* FV_VK_LOCATION above all (Q6), and what has no single text */
        return -1;
    }
}

int fv_mqtt__state_topic(const struct fv_mqtt_cfg *c, const char *dev, unsigned field, char *out,
                         size_t outlen)
{
    char label[32];
    int n = snprintf(out, outlen, "%s/%s/%s", c->topic_prefix, dev,
                     fv_signal_label(field, label, sizeof label));
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

char *fv_mqtt__discovery(const struct fv_mqtt_cfg *c, const char *dev, unsigned field, int site,
                         int binary, char *topic, size_t topiclen)
{
    char label[32], uid[96], devid[64], devname[64], state[256];
    const char *sig = fv_signal_label(field, label, sizeof label);
    snprintf(uid, sizeof uid, "fleetvault_%s_%s", dev, sig);
    snprintf(devid, sizeof devid, "fleetvault_%s", dev);
    snprintf(devname, sizeof devname, "%s %.8s", site ? "Energy site" : "Vehicle", dev);
    int n = snprintf(topic, topiclen, "%s/%s/%s/config", c->discovery_prefix,
                     binary ? "binary_sensor" : "sensor", uid);
    if (n <= 0 || (size_t)n >= topiclen || fv_signal_place(field) != FV_PLACE_NONE ||
        fv_mqtt__state_topic(c, dev, field, state, sizeof state) != 0)
        return NULL;
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:{s:[s],s:s,s:s,s:s}}", "name", sig, "unique_id", uid,
                  "object_id", uid, "state_topic", state, "device", "identifiers", devid, "name",
                  devname, "manufacturer", "fleetvault", "model", site ? "energy site" : "vehicle");
    if (o == NULL) return NULL;
    const struct ha_meta *m = binary ? NULL : meta_of(sig);
    int rc = 0;
    if (m && m->unit) rc |= json_object_set_new(o, "unit_of_measurement", json_string(m->unit));
    if (m && m->device_class)
        rc |= json_object_set_new(o, "device_class", json_string(m->device_class));
    if (m && m->state_class)
        rc |= json_object_set_new(o, "state_class", json_string(m->state_class));
    char *text = rc == 0 ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}
