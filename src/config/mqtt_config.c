/* mqtt_config.c - the config file's "mqtt" object (mqtt_config.h). */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "config/mqtt_config.h"
#include "util/err.h"
#include "wire/places.h"
#include "wire/signals.h"

static const char *const default_signals[] = {FV_MQTT_DEFAULT_SIGNALS};

/* A topic prefix: 1 to 64 of [A-Za-z0-9_-/], no '/' at either end, no empty level. */
static int prefix_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= 65 || s[0] == '/' || s[n - 1] == '/' || strstr(s, "//")) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '/'))
            return 0;
    }
    return 1;
}

/* A signal the publisher may send: named, and revealing no place (no location in MQTT). */
static int add_signal(struct fv_mqtt_cfg *c, const char *name)
{
    long f = fv_signal_lookup(name);
    if (f < 0 || fv_signal_place((unsigned)f) != FV_PLACE_NONE ||
        c->nsignals == FV_MQTT_CFG_SIGNALS)
        return FV_EINVAL;
    for (size_t i = 0; i < c->nsignals; i++)
        if (c->signals[i] == (uint32_t)f) return FV_OK;
    c->signals[c->nsignals++] = (uint32_t)f;
    return FV_OK;
}

int fv_mqtt_cfg_parse(struct fv_mqtt_cfg *c, json_t *o, const char *path, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    snprintf(c->client_id, sizeof c->client_id, "fleetvault");
    snprintf(c->topic_prefix, sizeof c->topic_prefix, "fleetvault");
    snprintf(c->discovery_prefix, sizeof c->discovery_prefix, "homeassistant");
    c->interval_ms = 5000;
    c->summary_ms = 3600000;
    if (!json_is_object(o)) {
        fv_seterr(err, errlen, "%s: mqtt: expected an object", path);
        return FV_EINVAL;
    }
    const char *key;
    json_t *val;
    int have_signals = 0;
    json_object_foreach(o, key, val)
    {
        int rc = FV_EINVAL;
        const char *want = "";
        if (strcmp(key, "broker") == 0) {
            want = "\"HOST:PORT\"";
            if (json_is_string(val))
                rc = fv_parse_hostport(json_string_value(val), c->host, sizeof c->host, &c->port);
            if (rc == FV_OK && c->port == 0) rc = FV_EINVAL;
        } else if (strcmp(key, "tls") == 0) {
            want = "{\"ca\": FILE[, \"cert\": FILE, \"key\": FILE]}";
            rc = fv_config_tls(val, c->ca, c->cert, c->key, sizeof c->ca);
        } else if (strcmp(key, "username") == 0) {
            want = "a string of 1 to 127 bytes";
            rc = fv_config_copy_str(val, c->username, sizeof c->username);
        } else if (strcmp(key, "password_file") == 0) {
            want = "a file name";
            rc = fv_config_copy_str(val, c->password_file, sizeof c->password_file);
        } else if (strcmp(key, "client_id") == 0) {
            want = "a string of 1 to 63 bytes";
            rc = fv_config_copy_str(val, c->client_id, sizeof c->client_id);
        } else if (strcmp(key, "topic_prefix") == 0 || strcmp(key, "discovery_prefix") == 0) {
            want = "1 to 64 of A-Z a-z 0-9 _ - /, no '/' at either end";
            char *dst = key[0] == 't' ? c->topic_prefix : c->discovery_prefix;
            rc = fv_config_copy_str(val, dst, sizeof c->topic_prefix);
            if (rc == FV_OK && !prefix_ok(dst)) rc = FV_EINVAL;
        } else if (strcmp(key, "signals") == 0) {
            want = "a list of signal names; none that reveals a place (no location is published)";
            size_t i;
            json_t *s;
            rc = json_is_array(val) && json_array_size(val) > 0 ? FV_OK : FV_EINVAL;
            json_array_foreach(val, i, s)
            {
                if (rc == FV_OK)
                    rc = json_is_string(s) ? add_signal(c, json_string_value(s)) : FV_EINVAL;
            }
            have_signals = 1;
        } else if (strcmp(key, "interval") == 0) {
            want = "a duration from \"1s\" to \"1h\"";
            rc = fv_config_duration_ms(val, &c->interval_ms);
            if (rc == FV_OK && (c->interval_ms < 1000 || c->interval_ms > 3600000)) rc = FV_EINVAL;
        } else if (strcmp(key, "audit_summary") == 0) {
            want = "a duration from \"10s\" to \"1d\"";
            rc = fv_config_duration_ms(val, &c->summary_ms);
            if (rc == FV_OK && (c->summary_ms < 10000 || c->summary_ms > 86400000)) rc = FV_EINVAL;
        } else {
            fv_seterr(err, errlen, "%s: mqtt: unknown key \"%s\"", path, key);
            return FV_EINVAL;
        }
        if (rc != FV_OK) {
            fv_seterr(err, errlen, "%s: mqtt.%s: expected %s", path, key, want);
            return FV_EINVAL;
        }
    }
    if (c->host[0] == '\0') {
        fv_seterr(err, errlen, "%s: mqtt.broker: required (\"HOST:PORT\")", path);
        return FV_EINVAL;
    }
    for (size_t i = 0; !have_signals && i < sizeof default_signals / sizeof default_signals[0]; i++)
        if (add_signal(c, default_signals[i]) != FV_OK) {
            fv_seterr(err, errlen, "mqtt: default signal %s unknown", default_signals[i]);
            return FV_EINVAL;
        }
    c->enabled = 1;
    return FV_OK;
}
