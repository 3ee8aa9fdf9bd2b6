/* mqtt_int.h - what mqtt.c and mqtt_ha.c share (not a public interface). */
#ifndef FV_MQTT_MQTT_INT_H
#define FV_MQTT_MQTT_INT_H

#include <stddef.h>

#include "config/mqtt_config.h"
#include "wire/payload.h"

#define FV_MQTT_VALUE_MAX 64 /* a value's text, with its NUL (longer strings are not sent) */

/* A value as its MQTT payload text: numbers shortest-exact, booleans ON/OFF, enums their
 * number, strings as they are. 0, or -1 when the value is not published (a place, no value,
 * an empty or too long string). */
int fv_mqtt__value_text(const struct fv_value *v, char out[FV_MQTT_VALUE_MAX]);

/* The Home Assistant discovery message of one signal of one device: its topic into topic and
 * the payload (JSON, malloc'd: free it) returned; NULL on out-of-memory or a topic too long.
 * dev: the device's pseudonym (Q2); site: an energy site, else a vehicle; binary: a boolean
 * signal (binary_sensor). */
char *fv_mqtt__discovery(const struct fv_mqtt_cfg *c, const char *dev, unsigned field, int site,
                         int binary, char *topic, size_t topiclen);

/* PREFIX/DEV/SIGNAL into out; 0, or -1 when it does not fit. */
int fv_mqtt__state_topic(const struct fv_mqtt_cfg *c, const char *dev, unsigned field, char *out,
                         size_t outlen);

#endif
