/*
 * campaign_spec.c - a campaign's spec (campaign.h): parsing and checking the JSON an
 * operator sends, the spec back as JSON, and the downlink start message built from it.
 * Pure: no state, any thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/campaign.h"
#include "data/trigger.h"
#include "util/err.h"
#include "wire/signals.h"

static const char *const sensors[] = {FV_CAMPAIGN_SENSORS};

static const char *const known_keys[] = {"name",   "trigger", "pre_s",   "post_s", "channels",
                                         "target", "region",  "budgets", "start",  "end"};

/* A whole number member in [lo, hi] into *v; absent: def (or an error when def < lo). */
static int int_member(const json_t *o, const char *key, const char *what, int64_t lo, int64_t hi,
                      int64_t def, int64_t *v, char *err, size_t errlen)
{
    const json_t *x = json_object_get(o, key);
    if (x == NULL) {
        if (def < lo) {
            fv_seterr(err, errlen, "%s: missing (a whole number from %lld to %lld)", what,
                      (long long)lo, (long long)hi);
            return FV_EINVAL;
        }
        *v = def;
        return FV_OK;
    }
    double d = json_is_integer(x) ? (double)json_integer_value(x)
               : json_is_real(x)  ? json_real_value(x)
                                  : NAN;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d)) {
        fv_seterr(err, errlen, "%s: expected a whole number from %lld to %lld", what, (long long)lo,
                  (long long)hi);
        return FV_EINVAL;
    }
    *v = (int64_t)d;
    return FV_OK;
}

static int check_trigger(const char *what, const char *text, char *err, size_t errlen)
{
    struct fv_trigger *t = NULL;
    char e[200];
    int rc = fv_trigger_compile(text, fv_trigger_known_signal, NULL, &t, e, sizeof e);
    fv_trigger_free(t);
    if (rc == FV_EINVAL) fv_seterr(err, errlen, "%s: %s", what, e);
    if (rc == FV_ENOMEM) fv_seterr(err, errlen, "out of memory");
    return rc;
}

static int string_member(const json_t *o, const char *key, int required, char *out, size_t outlen,
                         char *err, size_t errlen)
{
    const json_t *x = json_object_get(o, key);
    if (x == NULL && !required) {
        out[0] = '\0';
        return FV_OK;
    }
    if (!json_is_string(x) || json_string_length(x) == 0 || json_string_length(x) >= outlen) {
        fv_seterr(err, errlen, "%s: expected a string of 1 to %zu bytes", key, outlen - 1);
        return FV_EINVAL;
    }
    memcpy(out, json_string_value(x), json_string_length(x) + 1);
    return FV_OK;
}

static int parse_channels(const json_t *arr, struct fv_campaign_spec *s, char *err, size_t errlen)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0 ||
        json_array_size(arr) > FV_CAMPAIGN_CHANNELS_MAX) {
        fv_seterr(err, errlen, "channels: expected a list of 1 to %d signal or sensor names",
                  FV_CAMPAIGN_CHANNELS_MAX);
        return FV_EINVAL;
    }
    size_t i;
    const json_t *x;
    json_array_foreach(arr, i, x)
    {
        const char *n = json_string_value(x);
        int ok = n != NULL && fv_trigger_known_signal(NULL, n) && strncmp(n, "alert.", 6) != 0;
        for (size_t k = 0; n && !ok && k < sizeof sensors / sizeof sensors[0]; k++)
            ok = strcmp(n, sensors[k]) == 0;
        if (!ok) {
            fv_seterr(err, errlen,
                      "channels[%zu]: %s%s%s is neither a signal nor a sensor channel "
                      "(camera_front, camera_rear, camera_left, camera_right, imu, gnss, can)",
                      i, n ? "'" : "", n ? n : "not a string", n ? "'" : "");
            return FV_EINVAL;
        }
        for (size_t k = 0; k < s->nchannels; k++)
            if (strcmp(s->channels[k], n) == 0) {
                fv_seterr(err, errlen, "channels[%zu]: '%s' is listed twice", i, n);
                return FV_EINVAL;
            }
        snprintf(s->channels[s->nchannels++], sizeof s->channels[0], "%s", n);
    }
    return FV_OK;
}

static int parse_region(const json_t *r, struct fv_campaign_spec *s, char *err, size_t errlen)
{
    const char *k[4] = {"min_lat", "min_lon", "max_lat", "max_lon"};
    double *v[4] = {&s->min_lat, &s->min_lon, &s->max_lat, &s->max_lon};
    if (!json_is_object(r) || json_object_size(r) != 4) {
        fv_seterr(err, errlen,
                  "region: expected {\"min_lat\", \"min_lon\", \"max_lat\", \"max_lon\"}");
        return FV_EINVAL;
    }
    for (int i = 0; i < 4; i++) {
        const json_t *x = json_object_get(r, k[i]);
        double lim = i % 2 ? 180 : 90;
        if (!json_is_number(x) || !(fabs(json_number_value(x)) <= lim)) {
            fv_seterr(err, errlen, "region.%s: expected degrees from %g to %g", k[i], -lim, lim);
            return FV_EINVAL;
        }
        *v[i] = json_number_value(x);
    }
    if (s->min_lat > s->max_lat || s->min_lon > s->max_lon) {
        fv_seterr(err, errlen, "region: min_lat/min_lon must not be above max_lat/max_lon");
        return FV_EINVAL;
    }
    s->have_region = 1;
    return FV_OK;
}

static int parse_budgets(const json_t *b, struct fv_campaign_spec *s, char *err, size_t errlen)
{
    if (!json_is_object(b)) {
        fv_seterr(err, errlen,
                  "budgets: expected {\"clips_per_vehicle_per_day\", \"total_clips\", "
                  "\"total_bytes\"}");
        return FV_EINVAL;
    }
    const char *key;
    const json_t *x;
    json_object_foreach((json_t *)b, key, x)
    {
        if (strcmp(key, "clips_per_vehicle_per_day") && strcmp(key, "total_clips") &&
            strcmp(key, "total_bytes")) {
            fv_seterr(err, errlen, "budgets.%s: unknown budget", key);
            return FV_EINVAL;
        }
    }
    int rc = int_member(b, "clips_per_vehicle_per_day", "budgets.clips_per_vehicle_per_day", 1,
                        1000, 0, &s->clips_per_day, err, errlen);
    if (rc == FV_OK)
        rc = int_member(b, "total_clips", "budgets.total_clips", 1, 100000000, 0, &s->total_clips,
                        err, errlen);
    if (rc == FV_OK)
        rc = int_member(b, "total_bytes", "budgets.total_bytes", 1, INT64_C(1) << 50, 0,
                        &s->total_bytes, err, errlen);
    return rc;
}

int fv_campaign_spec_parse(const char *json, size_t len, int64_t now_ms, struct fv_campaign_spec *s,
                           char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    json_error_t je;
    json_t *o = json_loadb(json ? json : "", json ? len : 0, 0, &je);
    int rc = FV_EINVAL;
    int64_t v;
    if (!json_is_object(o)) {
        fv_seterr(err, errlen, "the body is not a JSON object (line %d: %s)", je.line, je.text);
        goto out;
    }
    const char *key;
    json_t *x;
    json_object_foreach(o, key, x)
    {
        size_t k = 0;
        while (k < sizeof known_keys / sizeof known_keys[0] && strcmp(key, known_keys[k]))
            k++;
        if (k == sizeof known_keys / sizeof known_keys[0]) {
            fv_seterr(err, errlen, "%.60s: unknown member", key);
            goto out;
        }
    }
    if ((rc = string_member(o, "name", 1, s->name, sizeof s->name, err, errlen)) ||
        (rc = string_member(o, "trigger", 1, s->trigger, sizeof s->trigger, err, errlen)) ||
        (rc = check_trigger("trigger", s->trigger, err, errlen)) ||
        (rc = string_member(o, "target", 0, s->target, sizeof s->target, err, errlen)) ||
        (s->target[0] && (rc = check_trigger("target", s->target, err, errlen))))
        goto out;
    if ((rc = int_member(o, "pre_s", "pre_s", 0, FV_CAMPAIGN_WINDOW_MAX_S, 10, &v, err, errlen)))
        goto out;
    s->pre_s = (int)v;
    if ((rc = int_member(o, "post_s", "post_s", 0, FV_CAMPAIGN_WINDOW_MAX_S, 5, &v, err, errlen)))
        goto out;
    s->post_s = (int)v;
    if (s->pre_s + s->post_s == 0) {
        fv_seterr(err, errlen, "pre_s, post_s: the clip's window is empty");
        rc = FV_EINVAL;
        goto out;
    }
    if ((rc = parse_channels(json_object_get(o, "channels"), s, err, errlen))) goto out;
    if (json_object_get(o, "region") &&
        (rc = parse_region(json_object_get(o, "region"), s, err, errlen)))
        goto out;
    if ((rc = parse_budgets(json_object_get(o, "budgets"), s, err, errlen))) goto out;
    const int64_t year_ms = INT64_C(366) * 86400000;
    if ((rc = int_member(o, "start", "start (epoch ms)", 0, INT64_C(1) << 50, now_ms, &s->start_ms,
                         err, errlen)) ||
        (rc = int_member(o, "end", "end (epoch ms)", 0, INT64_C(1) << 50,
                         s->start_ms + 7 * 86400000LL, &s->end_ms, err, errlen)))
        goto out;
    if (s->end_ms <= s->start_ms || s->end_ms <= now_ms || s->end_ms - s->start_ms > year_ms) {
        fv_seterr(err, errlen, "end: must be after start and now, at most a year after start");
        rc = FV_EINVAL;
        goto out;
    }
    rc = FV_OK;
out:
    json_decref(o);
    return rc;
}

static json_t *channels_json(const struct fv_campaign_spec *s)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < s->nchannels; i++)
        json_array_append_new(a, json_string(s->channels[i]));
    return a;
}

json_t *fv_campaign_spec_json(const struct fv_campaign_spec *s)
{
    json_t *o = json_pack("{s:s,s:s,s:i,s:i,s:o*,s:{s:I,s:I,s:I},s:I,s:I}", "name", s->name,
                          "trigger", s->trigger, "pre_s", s->pre_s, "post_s", s->post_s, "channels",
                          channels_json(s), "budgets", "clips_per_vehicle_per_day",
                          (json_int_t)s->clips_per_day, "total_clips", (json_int_t)s->total_clips,
                          "total_bytes", (json_int_t)s->total_bytes, "start",
                          (json_int_t)s->start_ms, "end", (json_int_t)s->end_ms);
    if (o && s->target[0]) json_object_set_new(o, "target", json_string(s->target));
    if (o && s->have_region)
        json_object_set_new(o, "region",
                            json_pack("{s:f,s:f,s:f,s:f}", "min_lat", s->min_lat, "min_lon",
                                      s->min_lon, "max_lat", s->max_lat, "max_lon", s->max_lon));
    return o;
}

char *fv_campaign_start_msg(const char *id, const struct fv_campaign_spec *s)
{
    json_t *o = json_pack("{s:i,s:s,s:s,s:s,s:i,s:i,s:o*,s:{s:I,s:I,s:I},s:I,s:{s:s,s:I}}", "v", 1,
                          "op", "start", "id", id, "trigger", s->trigger, "pre_s", s->pre_s,
                          "post_s", s->post_s, "channels", channels_json(s), "budgets",
                          "clips_per_day", (json_int_t)s->clips_per_day, "total_clips",
                          (json_int_t)s->total_clips, "total_bytes", (json_int_t)s->total_bytes,
                          "end_ms", (json_int_t)s->end_ms, "upload", "topic_hit",
                          FV_TOPIC_CAMPAIGN_HIT, "max_clip_bytes", (json_int_t)s->total_bytes);
    char *m = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return m;
}
