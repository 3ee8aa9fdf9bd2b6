/*
 * mqtt_config.h - the config file's "mqtt" object: live values of consenting owners' devices
 * published to an MQTT broker for Home Assistant (docs/mqtt.md; the publisher is mqtt/mqtt.h).
 *
 *   "mqtt": {
 *     "broker": "127.0.0.1:1883",          required, HOST:PORT
 *     "tls": {"ca": "ca.crt", "cert": "client.crt", "key": "client.key"},   optional; cert
 *                                          and key together or neither
 *     "username": "fleetvault", "password_file": "/etc/fleetvault/mqtt.pass",  optional; the
 *                                          password is read from the file (never logged)
 *     "client_id": "fleetvault",           default "fleetvault"
 *     "topic_prefix": "fleetvault",        default "fleetvault": PREFIX/DEVICE/SIGNAL
 *     "discovery_prefix": "homeassistant", default "homeassistant"
 *     "signals": ["Soc", "VehicleSpeed", ...],  default FV_MQTT_DEFAULT_SIGNALS
 *     "interval": "5s",                    publish cycle (1 s to 1 h), default 5 s
 *     "audit_summary": "1h"                the audit log's summary per subject (10 s to 1 d)
 *   }
 * Signals that reveal a place (wire/places.h) are refused: no location is published. Prefixes
 * are 1 to 64 of [A-Za-z0-9_-/] without a leading or trailing '/' and without MQTT
 * wildcards. An unknown key or a bad value fails the load naming "mqtt.KEY".
 *
 * Thread-safety: plain data, read-only once loaded.
 */
#ifndef FV_CONFIG_MQTT_CONFIG_H
#define FV_CONFIG_MQTT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct json_t;

#define FV_MQTT_CFG_SIGNALS 64
#define FV_MQTT_DEFAULT_SIGNALS                                                                    \
    "Soc", "BatteryLevel", "EstBatteryRange", "ChargeLimitSoc", "VehicleSpeed", "Odometer",        \
        "ChargeState", "DetailedChargeState", "InsideTemp", "OutsideTemp", "SiteBatteryPower",     \
        "SiteEnergy", "SiteSolarPower", "SiteLoadPower", "SiteGridPower"

struct fv_mqtt_cfg {
    int enabled; /* the object was given */
    char host[256];
    int port;
    char ca[1024], cert[1024], key[1024]; /* TLS: ca set = TLS on */
    char username[128];
    char password_file[1024];
    char client_id[64];
    char topic_prefix[65];
    char discovery_prefix[65];
    uint32_t signals[FV_MQTT_CFG_SIGNALS];
    size_t nsignals;
    uint64_t interval_ms;
    uint64_t summary_ms;
};

/* Parses the "mqtt" object o over c (defaults first). FV_OK, or FV_EINVAL with err naming
 * path and mqtt.KEY. */
int fv_mqtt_cfg_parse(struct fv_mqtt_cfg *c, struct json_t *o, const char *path, char *err,
                      size_t errlen);

#endif
