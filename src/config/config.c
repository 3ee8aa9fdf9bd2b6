/* config.c - configuration defaults and the JSON config file (config.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "config/config.h"
#include "util/err.h"
#include "wire/signals.h"

void fv_config_defaults(struct fv_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->data_dir, sizeof c->data_dir, "./data");
    snprintf(c->certs_dir, sizeof c->certs_dir, "./certs");
    snprintf(c->listen_host, sizeof c->listen_host, "127.0.0.1");
    c->listen_port = 4443;
    snprintf(c->api_host, sizeof c->api_host, "127.0.0.1");
    c->api_port = 8080;
    c->max_message = 1000000;
    c->device_idle_ms = 180000;
    c->api_nice = 10;
    c->accepts_per_turn = 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    c->accept_rate = FV_ACCEPT_RATE_PER_CPU * (unsigned)(cpus > 0 && cpus < 4096 ? cpus : 1);
    c->wal_segment_bytes = 64ull << 20;
    c->audit_prealloc_bytes = 1ull << 20;
    c->label_lease_ms = 30 * 60 * 1000;
    fv_rate_defaults(&c->rates);
    c->rate_limit_enabled = 1;
    fv_store_config_defaults(&c->store, c->data_dir);
    c->loc_trim_m = 500;
    c->loc_grid_m = 1000;
    c->loc_trip_gap_ms = 300000;
    c->loc_stop_ms = 180000;
}

int fv_config_copy_str(json_t *v, char *dst, size_t cap)
{
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= cap)
        return FV_EINVAL;
    snprintf(dst, cap, "%s", json_string_value(v));
    return FV_OK;
}

int fv_config_tls(json_t *o, char *ca, char *cert, char *key, size_t cap)
{
    const char *k;
    json_t *val;
    if (!json_is_object(o)) return FV_EINVAL;
    json_object_foreach(o, k, val)
    {
        char *dst = strcmp(k, "ca") == 0     ? ca
                    : strcmp(k, "cert") == 0 ? cert
                    : strcmp(k, "key") == 0  ? key
                                             : NULL;
        if (dst == NULL || fv_config_copy_str(val, dst, cap) != FV_OK) return FV_EINVAL;
    }
    if (ca[0] == '\0' || (cert[0] == '\0') != (key[0] == '\0')) return FV_EINVAL;
    return FV_OK;
}

int fv_config_duration_ms(json_t *v, uint64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v) * 1000u;
        return FV_OK;
    }
    if (!json_is_string(v)) return FV_EINVAL;
    const char *t = json_string_value(v);
    if (strcmp(t, "forever") == 0) {
        *out = 0;
        return FV_OK;
    }
    char *end;
    double n = strtod(t, &end);
    uint64_t unit = 1000;
    if (strcmp(end, "d") == 0)
        unit = 86400000u;
    else if (strcmp(end, "h") == 0)
        unit = 3600000u;
    else if (strcmp(end, "m") == 0)
        unit = 60000u;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        unit = 1000u;
    else
        return FV_EINVAL;
    if (end == t || !(n >= 0) || n > 1e6 * 365) return FV_EINVAL;
    *out = (uint64_t)(n * (double)unit);
    return FV_OK;
}

/* The "store" object: flush_interval, flush_datums, head_max_datums, wal_keep, compact_fanin,
 * retention {class: duration},
 * classes {class: [signal names or numbers]} (a new class gets retention "forever" unless
 * set). */
static int load_store_config(struct fv_store_config *c, json_t *o, const char *path, char *err,
                             size_t errlen)
{
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val)
    {
        uint64_t ms;
        if (strcmp(key, "flush_interval") == 0 && fv_config_duration_ms(val, &ms) == FV_OK && ms) {
            c->flush_interval_ms = ms;
        } else if (strcmp(key, "wal_keep") == 0 && fv_config_duration_ms(val, &ms) == FV_OK) {
            c->wal_keep_ms = ms;
        } else if (strcmp(key, "compact_fanin") == 0 && json_is_integer(val) &&
                   json_integer_value(val) >= 2 && json_integer_value(val) <= 64) {
            c->compact_fanin = (uint32_t)json_integer_value(val);
        } else if (strcmp(key, "compact_zstd_level") == 0) {
            /* merges re-encode blocks at this level (flushes stay at 3: ingest pays nothing) */
            if (!json_is_integer(val) || json_integer_value(val) < 1 ||
                json_integer_value(val) > 22) {
                fv_seterr(err, errlen,
                          "%s: store.compact_zstd_level: expected a zstd level from 1 to 22", path);
                return FV_EINVAL;
            }
            c->zlevel_compact = (int)json_integer_value(val);
        } else if (strcmp(key, "head_max_datums") == 0 && json_is_integer(val) &&
                   json_integer_value(val) >= 100) {
            c->head_max_datums = (uint64_t)json_integer_value(val);
        } else if (strcmp(key, "flush_datums") == 0 && json_is_integer(val) &&
                   json_integer_value(val) >= 1000) {
            c->flush_datums = (uint64_t)json_integer_value(val);
        } else if (strcmp(key, "classes") == 0 && json_is_object(val)) {
            const char *cname;
            json_t *list;
            json_object_foreach(val, cname, list)
            {
                int id = fv_store_class_id(c, cname);
                if (id < 0) {
                    if (c->nclasses == FV_STORE_MAX_CLASSES || strlen(cname) == 0 ||
                        strlen(cname) > FV_CLASS_NAME_MAX) {
                        fv_seterr(err, errlen, "%s: store.classes.%s: too many or bad name", path,
                                  cname);
                        return FV_EINVAL;
                    }
                    id = (int)c->nclasses++;
                    snprintf(c->class_name[id], sizeof c->class_name[id], "%s", cname);
                    c->retention_ms[id] = 0;
                }
                if (!json_is_array(list) || id == c->events_class) {
                    fv_seterr(err, errlen, "%s: store.classes.%s: expected a list of signals", path,
                              cname);
                    return FV_EINVAL;
                }
                size_t i;
                json_t *sig;
                json_array_foreach(list, i, sig)
                {
                    long f = json_is_string(sig) ? fv_signal_lookup(json_string_value(sig)) : -1;
                    if (f < 0 || f >= FV_STORE_FIELD_TABLE) {
                        fv_seterr(err, errlen, "%s: store.classes.%s[%zu]: unknown signal", path,
                                  cname, i);
                        return FV_EINVAL;
                    }
                    c->class_of[f] = (uint8_t)id;
                }
            }
        } else if (strcmp(key, "retention") == 0 && json_is_object(val)) {
            const char *cname;
            json_t *d;
            json_object_foreach(val, cname, d)
            {
                int id = fv_store_class_id(c, cname);
                if (id < 0 || fv_config_duration_ms(d, &ms) != FV_OK) {
                    fv_seterr(err, errlen,
                              "%s: store.retention.%s: unknown class or bad duration (e.g. "
                              "\"30d\", \"12h\", \"forever\")",
                              path, cname);
                    return FV_EINVAL;
                }
                c->retention_ms[id] = ms;
            }
        } else {
            fv_seterr(err, errlen, "%s: store: unknown key or wrong value: \"%s\"", path, key);
            return FV_EINVAL;
        }
    }
    return FV_OK;
}

int fv_parse_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || (size_t)(colon - s) >= hostlen) return FV_EINVAL;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535 || colon[1] == '\0') return FV_EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    *port = (int)p;
    return FV_OK;
}

/* An object kept as compact JSON text for the layer that reads it (vpp, clips). */
static int object_text(json_t *val, const char *path, const char *key, char *out, size_t cap,
                       char *err, size_t errlen)
{
    char *text = json_is_object(val) ? json_dumps(val, JSON_COMPACT) : NULL;
    if (text == NULL || strlen(text) >= cap) {
        fv_seterr(err, errlen, "%s: %s: expected an object of at most %zu bytes", path, key,
                  cap - 1);
        free(text);
        return FV_EINVAL;
    }
    snprintf(out, cap, "%s", text);
    free(text);
    return FV_OK;
}

int fv_config_load(struct fv_config *c, const char *path, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (root == NULL) {
        fv_seterr(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return FV_EINVAL;
    }
    int rc = FV_EINVAL;
    const char *key;
    json_t *val;
    if (!json_is_object(root)) {
        fv_seterr(err, errlen, "%s: the configuration must be a JSON object", path);
        goto done;
    }
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "data") == 0 && json_is_string(val)) {
            snprintf(c->data_dir, sizeof c->data_dir, "%s", json_string_value(val));
        } else if (strcmp(key, "key_file") == 0 && json_is_string(val)) {
            snprintf(c->key_file, sizeof c->key_file, "%s", json_string_value(val));
        } else if (strcmp(key, "previous_key_file") == 0 && json_is_string(val)) {
            snprintf(c->previous_key_file, sizeof c->previous_key_file, "%s",
                     json_string_value(val));
        } else if (strcmp(key, "certs") == 0 && json_is_string(val)) {
            snprintf(c->certs_dir, sizeof c->certs_dir, "%s", json_string_value(val));
        } else if ((strcmp(key, "listen") == 0 || strcmp(key, "api") == 0) && json_is_string(val)) {
            int l = key[0] == 'l';
            if (fv_parse_hostport(json_string_value(val), l ? c->listen_host : c->api_host,
                                  sizeof c->listen_host, l ? &c->listen_port : &c->api_port)) {
                fv_seterr(err, errlen, "%s: \"%s\": expected \"HOST:PORT\"", path, key);
                goto done;
            }
        } else if (strcmp(key, "vpp") == 0) {
            if (object_text(val, path, key, c->vpp_json, sizeof c->vpp_json, err, errlen))
                goto done;
        } else if (strcmp(key, "clips") == 0) {
            if (object_text(val, path, key, c->clips_json, sizeof c->clips_json, err, errlen))
                goto done;
        } else if (strcmp(key, "labeling") == 0) {
            json_t *l = json_object_get(val, "lease_s");
            if (!json_is_object(val) || json_object_size(val) != 1 || !json_is_integer(l) ||
                json_integer_value(l) < 1 || json_integer_value(l) > 86400) {
                fv_seterr(err, errlen, "%s: labeling: expected {\"lease_s\": 1 to 86400 (seconds)}",
                          path);
                goto done;
            }
            c->label_lease_ms = (uint64_t)json_integer_value(l) * 1000;
        } else if (strcmp(key, "mqtt") == 0) {
            if (fv_mqtt_cfg_parse(&c->mqtt, val, path, err, errlen) != FV_OK) goto done;
        } else if (strcmp(key, "cluster") == 0) {
            if (fv_cluster_cfg_parse(&c->cluster, val, path, err, errlen) != FV_OK) goto done;
        } else if (strcmp(key, "role") == 0) {
            if (!json_is_string(val) || fv_role_parse(json_string_value(val), &c->role)) {
                fv_seterr(err, errlen, "%s: role: expected \"all\", \"gateway\" or \"storage\"",
                          path);
                goto done;
            }
        } else if (strcmp(key, "openadr") == 0) {
            if (fv_oadr_cfg_parse(&c->openadr, val, path, err, errlen) != FV_OK) goto done;
        } else if (strcmp(key, "api_nice") == 0) {
            if (!json_is_integer(val) || json_integer_value(val) < 0 ||
                json_integer_value(val) > 19) {
                fv_seterr(err, errlen, "%s: api_nice: expected an integer from 0 to 19", path);
                goto done;
            }
            c->api_nice = (int)json_integer_value(val);
        } else if (strcmp(key, "ingest_nice") == 0) {
            if (!json_is_integer(val) || json_integer_value(val) < -20 ||
                json_integer_value(val) > 0) {
                fv_seterr(err, errlen, "%s: ingest_nice: expected an integer from -20 to 0", path);
                goto done;
            }
            c->ingest_nice = (int)json_integer_value(val);
        } else if (strcmp(key, "accepts_per_turn") == 0) {
            if (!json_is_integer(val) || json_integer_value(val) < 0 ||
                json_integer_value(val) > 1024) {
                fv_seterr(err, errlen, "%s: accepts_per_turn: expected an integer from 0 to 1024",
                          path);
                goto done;
            }
            c->accepts_per_turn = (unsigned)json_integer_value(val);
        } else if (strcmp(key, "accept_rate") == 0) {
            if (!json_is_integer(val) || json_integer_value(val) < 0 ||
                json_integer_value(val) > 1000000) {
                fv_seterr(err, errlen,
                          "%s: accept_rate: expected connections per second, an integer from 0 "
                          "(no limit) to 1000000",
                          path);
                goto done;
            }
            c->accept_rate = (unsigned)json_integer_value(val);
        } else if (strcmp(key, "device_idle_timeout") == 0) {
            uint64_t ms;
            if (fv_config_duration_ms(val, &ms) != FV_OK || ms < 3000 || ms > 86400000) {
                fv_seterr(err, errlen,
                          "%s: device_idle_timeout: expected a duration from \"3s\" to \"1d\"",
                          path);
                goto done;
            }
            c->device_idle_ms = ms;
        } else if (strcmp(key, "max_message") == 0 && json_is_integer(val) &&
                   json_integer_value(val) > 0 && json_integer_value(val) <= 16 * 1000000) {
            c->max_message = (size_t)json_integer_value(val);
        } else if (strcmp(key, "wal_segment_mb") == 0 && json_is_integer(val) &&
                   json_integer_value(val) >= 1 && json_integer_value(val) <= 4096) {
            c->wal_segment_bytes = (uint64_t)json_integer_value(val) << 20;
        } else if (strcmp(key, "ui_dir") == 0 && json_is_string(val)) {
            snprintf(c->ui_dir, sizeof c->ui_dir, "%s", json_string_value(val));
        } else if ((strcmp(key, "policy") == 0 || strcmp(key, "audit_key") == 0 ||
                    strcmp(key, "audit_witness") == 0) &&
                   json_is_string(val)) {
            char *dst = key[0] == 'p'   ? c->policy_file
                        : key[6] == 'k' ? c->audit_key
                                        : c->audit_witness;
            snprintf(dst, sizeof c->policy_file, "%s", json_string_value(val));
        } else if (strcmp(key, "audit_prealloc_kb") == 0) {
            /* privacy/audit.c A17: zeros written ahead of the audit log's entries */
            if (!json_is_integer(val) || json_integer_value(val) < 0 ||
                json_integer_value(val) > 65536) {
                fv_seterr(err, errlen,
                          "%s: audit_prealloc_kb: expected KiB written ahead of the audit log's "
                          "entries, an integer from 0 (none) to 65536",
                          path);
                goto done;
            }
            c->audit_prealloc_bytes = (uint64_t)json_integer_value(val) << 10;
        } else if (strcmp(key, "audit_retention") == 0 &&
                   fv_config_duration_ms(val, &c->audit_retention_ms) == FV_OK) {
            /* the audit log's own retention (GDPR: as long as needed for accountability) */
        } else if (strcmp(key, "location_privacy") == 0 && json_is_object(val)) {
            json_t *tm = json_object_get(val, "trim_m"), *gm = json_object_get(val, "grid_m");
            json_t *gap = json_object_get(val, "trip_gap");
            json_t *stop = json_object_get(val, "stop_after");
            if ((tm && (!json_is_number(tm) || json_number_value(tm) < 0 ||
                        json_number_value(tm) > 100000)) ||
                (gm && (!json_is_number(gm) || json_number_value(gm) < 0 ||
                        json_number_value(gm) > 1000000)) ||
                (gap && (fv_config_duration_ms(gap, &c->loc_trip_gap_ms) != FV_OK ||
                         c->loc_trip_gap_ms == 0)) ||
                (stop && fv_config_duration_ms(stop, &c->loc_stop_ms) != FV_OK)) {
                fv_seterr(err, errlen,
                          "%s: location_privacy: expected {\"trim_m\": 0..100000, "
                          "\"trip_gap\": \"5m\", \"stop_after\": \"3m\", \"grid_m\": "
                          "0..1000000}",
                          path);
                goto done;
            }
            if (tm) c->loc_trim_m = json_number_value(tm);
            if (gm) c->loc_grid_m = json_number_value(gm);
        } else if (strcmp(key, "store") == 0 && json_is_object(val)) {
            if (load_store_config(&c->store, val, path, err, errlen) != FV_OK) goto done;
        } else if (strcmp(key, "rate_limits") == 0 && json_is_false(val)) {
            c->rate_limit_enabled = 0;
        } else if (strcmp(key, "rate_limits") == 0 && json_is_object(val)) {
            const char *topic;
            json_t *rule;
            json_object_foreach(val, topic, rule)
            {
                json_t *ps = json_object_get(rule, "per_second");
                json_t *b = json_object_get(rule, "burst");
                if (!json_is_number(ps) || (b && !json_is_number(b)) ||
                    fv_rate_set(&c->rates, topic, json_number_value(ps),
                                b ? json_number_value(b) : json_number_value(ps)) != FV_OK) {
                    fv_seterr(err, errlen,
                              "%s: rate_limits.%s: expected {\"per_second\": N > 0, "
                              "\"burst\": N >= 1}",
                              path, topic);
                    goto done;
                }
            }
        } else {
            fv_seterr(err, errlen, "%s: unknown key or wrong type: \"%s\"", path, key);
            goto done;
        }
    }
    rc = FV_OK;
done:
    json_decref(root);
    return rc;
}

int fv_config_admin_token_path(const struct fv_config *c, char *out, size_t len)
{
    if (c->key_file[0]) {
        snprintf(out, len, "%s.admin.token", c->key_file);
        return 1;
    }
    snprintf(out, len, "%s/admin.token", c->data_dir);
    return 0;
}
