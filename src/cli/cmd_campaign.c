/*
 * cmd_campaign.c - `fleetvault campaign ...`: data-collection campaigns through the running
 * server's API (api/campaign_api.c), with a principal's token (a data engineer's, purpose
 * clips unless --purpose says otherwise):
 *
 *   fleetvault campaign create (--spec FILE | --name N --trigger EXPR --channels A,B,...
 *                               --clips-per-day N --total-clips N --total-bytes N
 *                               [--pre S] [--post S] [--target EXPR]
 *                               [--region MIN_LAT,MIN_LON,MAX_LAT,MAX_LON]
 *                               [--start MS] [--end MS])
 *   fleetvault campaign list
 *   fleetvault campaign status ID
 *   fleetvault campaign stop ID
 *
 * Every verb takes --token-file F, [--api URL] (default http://127.0.0.1:8080), [--purpose P]
 * and [--ticket T]. The spec's checks are the server's (its errors are printed as they are:
 * a trigger's column); answers are printed as the API gives them (JSON).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli/commands.h"
#include "os/fsio.h"
#include "util/err.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetvault campaign create (--spec FILE | --name N --trigger EXPR "
               "--channels A,B,... --clips-per-day N\n"
               "                                  --total-clips N --total-bytes N [--pre S] "
               "[--post S] [--target EXPR]\n"
               "                                  [--region MIN_LAT,MIN_LON,MAX_LAT,MAX_LON] "
               "[--start MS] [--end MS])\n"
               "       fleetvault campaign list | status ID | stop ID\n"
               "  every verb: --token-file F [--api URL] [--purpose P (clips)] [--ticket T]\n"
               "  trigger: e.g. 'VehicleSpeed > 100 for 2s and Gear == 5' (docs/data-engine.md)\n");
}

enum {
    A_API,
    A_TOKEN,
    A_PURPOSE,
    A_TICKET,
    A_SPEC,
    A_NAME,
    A_TRIGGER,
    A_CHANNELS,
    A_PER_DAY,
    A_TOTAL,
    A_BYTES,
    A_PRE,
    A_POST,
    A_TARGET,
    A_REGION,
    A_START,
    A_END,
    A_N
};
static const char *const names[A_N] = {
    "--api",     "--token-file", "--purpose",       "--ticket",      "--spec",        "--name",
    "--trigger", "--channels",   "--clips-per-day", "--total-clips", "--total-bytes", "--pre",
    "--post",    "--target",     "--region",        "--start",       "--end"};

/* A whole number option into the object (its text as given when it is no number: the
 * server says what is wrong). */
static void set_num(json_t *o, const char *key, const char *text)
{
    if (text == NULL) return;
    char *e;
    long long v = strtoll(text, &e, 10);
    json_object_set_new(o, key, *text && *e == '\0' ? json_integer(v) : json_string(text));
}

/* The spec from the options: a new JSON text (free it), or NULL with a message printed. */
static char *spec_from_args(const char *const *a)
{
    if (a[A_SPEC]) {
        char *text = NULL, err[300];
        size_t len = 0;
        if (fv_os_read_file(a[A_SPEC], 1 << 16, &text, &len, err, sizeof err) != FV_OK) {
            fprintf(stderr, "fleetvault campaign: --spec: %s\n", err);
            return NULL;
        }
        return text;
    }
    if (!a[A_NAME] || !a[A_TRIGGER] || !a[A_CHANNELS]) return NULL;
    json_t *o = json_pack("{s:s,s:s}", "name", a[A_NAME], "trigger", a[A_TRIGGER]);
    json_t *ch = json_array();
    char *list = strdup(a[A_CHANNELS]), *save = NULL;
    for (char *t = list ? strtok_r(list, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(ch, json_string(t));
    free(list);
    json_object_set_new(o, "channels", ch);
    if (a[A_TARGET]) json_object_set_new(o, "target", json_string(a[A_TARGET]));
    set_num(o, "pre_s", a[A_PRE]);
    set_num(o, "post_s", a[A_POST]);
    set_num(o, "start", a[A_START]);
    set_num(o, "end", a[A_END]);
    json_t *b = json_object();
    set_num(b, "clips_per_vehicle_per_day", a[A_PER_DAY]);
    set_num(b, "total_clips", a[A_TOTAL]);
    set_num(b, "total_bytes", a[A_BYTES]);
    json_object_set_new(o, "budgets", b);
    if (a[A_REGION]) {
        double r[4];
        char extra;
        if (sscanf(a[A_REGION], "%lf,%lf,%lf,%lf%c", &r[0], &r[1], &r[2], &r[3], &extra) != 4) {
            fprintf(stderr, "fleetvault campaign: --region MIN_LAT,MIN_LON,MAX_LAT,MAX_LON\n");
            json_decref(o);
            return NULL;
        }
        json_object_set_new(o, "region",
                            json_pack("{s:f,s:f,s:f,s:f}", "min_lat", r[0], "min_lon", r[1],
                                      "max_lat", r[2], "max_lon", r[3]));
    }
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

int fv_cmd_campaign(int argc, char **argv)
{
    const char *verb = argc > 1 ? argv[1] : "";
    const char *a[A_N] = {0}, *pos = NULL;
    a[A_API] = "http://127.0.0.1:8080";
    a[A_PURPOSE] = "clips";
    if (fv_cli_parse_opts(argc, argv, 2, names, A_N, a, NULL, 0, NULL, &pos) != 0 ||
        a[A_TOKEN] == NULL) {
        usage(stderr);
        return 2;
    }
    const char *pn[] = {"purpose", "ticket"}, *pv[] = {a[A_PURPOSE], a[A_TICKET]};
    char ep[256];
    char *id = pos ? curl_easy_escape(NULL, pos, 0) : NULL;
    int rc = 2;
    if (strcmp(verb, "create") == 0) {
        char *spec = spec_from_args(a);
        if (spec)
            rc = fv_cli_api_post_json("campaign", a[A_API], "/api/v1/campaigns", pn, pv, 2,
                                      a[A_TOKEN], spec);
        free(spec);
    } else if (strcmp(verb, "list") == 0) {
        rc = fv_cli_api("campaign", "GET", a[A_API], "/api/v1/campaigns", pn, pv, 2, a[A_TOKEN]);
    } else if ((strcmp(verb, "status") == 0 || strcmp(verb, "stop") == 0) && id) {
        int stop = strcmp(verb, "stop") == 0;
        snprintf(ep, sizeof ep, "/api/v1/campaigns/%s%s", id, stop ? "/stop" : "");
        rc = fv_cli_api("campaign", stop ? "POST" : "GET", a[A_API], ep, pn, pv, 2, a[A_TOKEN]);
    }
    curl_free(id);
    if (rc == 2) usage(stderr);
    return rc;
}
