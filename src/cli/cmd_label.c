/*
 * cmd_label.c - `fleetvault label ...`: the labelers' work queue through the running
 * server's API (api/labeling_api.c), with a labeler's token (purpose model_training unless
 * --purpose says otherwise):
 *
 *   fleetvault label next                         claim the next clip (JSON: clip, vehicle...)
 *   fleetvault label get ID [--out FILE]          the held clip's watermarked MCAP (stdout or
 *                                                 FILE, written whole or not at all)
 *   fleetvault label submit ID (--labels JSON | --labels-file F) [--tags A,B,...]
 *   fleetvault label release ID
 *
 * Every verb takes --token-file F, [--api URL] (default http://127.0.0.1:8080),
 * [--purpose P]. Answers are printed as the API gives them; errors on standard error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli/commands.h"
#include "os/fsio.h"
#include "util/buf.h"
#include "util/err.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetvault label next\n"
               "       fleetvault label get ID [--out FILE]\n"
               "       fleetvault label submit ID (--labels JSON | --labels-file F) "
               "[--tags A,B,...]\n"
               "       fleetvault label release ID\n"
               "  every verb: --token-file F [--api URL] [--purpose P (model_training)]\n");
}

enum { A_API, A_TOKEN, A_PURPOSE, A_OUT, A_LABELS, A_LABELS_FILE, A_TAGS, A_N };
static const char *const names[A_N] = {"--api",    "--token-file",  "--purpose", "--out",
                                       "--labels", "--labels-file", "--tags"};

/* {"labels": ..., "tags": [...]} from the options: a new JSON text, or NULL (printed why). */
static char *body_from_args(const char *const *a)
{
    char *text = NULL, err[300];
    size_t len = 0;
    const char *src = a[A_LABELS];
    if ((a[A_LABELS] == NULL) == (a[A_LABELS_FILE] == NULL)) return NULL;
    if (a[A_LABELS_FILE]) {
        if (fv_os_read_file(a[A_LABELS_FILE], 1 << 16, &text, &len, err, sizeof err) != FV_OK) {
            fprintf(stderr, "fleetvault label: --labels-file: %s\n", err);
            return NULL;
        }
        src = text;
    }
    json_error_t je;
    json_t *labels = json_loads(src, 0, &je);
    free(text);
    if (labels == NULL) {
        fprintf(stderr, "fleetvault label: labels: not JSON: %s (column %d)\n", je.text, je.column);
        return NULL;
    }
    json_t *o = json_pack("{s:o}", "labels", labels), *tags = json_array();
    char *list = a[A_TAGS] ? strdup(a[A_TAGS]) : NULL, *save = NULL;
    for (char *t = list ? strtok_r(list, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(tags, json_string(t));
    free(list);
    json_object_set_new(o, "tags", tags);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return body;
}

/* GET the held clip into --out (atomically) or standard output. */
static int get_clip(const char *const *a, const char *ep, const char *const *pn,
                    const char *const *pv)
{
    struct fv_buf b = {0};
    long status = 0;
    char err[600] = "";
    int rc =
        fv_cli_api_fetch("GET", a[A_API], ep, pn, pv, 1, a[A_TOKEN], &b, &status, err, sizeof err);
    if (rc == 0 && a[A_OUT])
        rc = fv_os_write_file_atomic(a[A_OUT], b.data, b.len, 0600, err, sizeof err) ? 1 : 0;
    else if (rc == 0 && b.len && fwrite(b.data, 1, b.len, stdout) != b.len)
        rc = 1;
    if (rc == 1 && err[0] == '\0' && b.len)
        snprintf(err, sizeof err, "%.*s", (int)b.len, (char *)b.data);
    if (rc) fprintf(stderr, "fleetvault label: %s\n", err[0] ? err : "the clip was not written");
    fv_buf_free(&b);
    return rc;
}

int fv_cmd_label(int argc, char **argv)
{
    const char *verb = argc > 1 ? argv[1] : "";
    const char *a[A_N] = {0}, *pos = NULL;
    a[A_API] = "http://127.0.0.1:8080";
    a[A_PURPOSE] = "model_training";
    if (fv_cli_parse_opts(argc, argv, 2, names, A_N, a, NULL, 0, NULL, &pos) != 0 ||
        a[A_TOKEN] == NULL) {
        usage(stderr);
        return 2;
    }
    const char *pn[] = {"purpose"}, *pv[] = {a[A_PURPOSE]};
    char ep[256];
    char *id = pos ? curl_easy_escape(NULL, pos, 0) : NULL;
    int rc = 2;
    if (strcmp(verb, "next") == 0 && id == NULL) {
        rc = fv_cli_api_post_json("label", a[A_API], "/api/v1/labeling/next", pn, pv, 1, a[A_TOKEN],
                                  "{}");
    } else if (strcmp(verb, "get") == 0 && id) {
        snprintf(ep, sizeof ep, "/api/v1/labeling/clips/%s", id);
        rc = get_clip(a, ep, pn, pv);
    } else if (strcmp(verb, "submit") == 0 && id) {
        char *body = body_from_args(a);
        snprintf(ep, sizeof ep, "/api/v1/labeling/clips/%s/labels", id);
        rc = body ? fv_cli_api_post_json("label", a[A_API], ep, pn, pv, 1, a[A_TOKEN], body) : 2;
        free(body);
    } else if (strcmp(verb, "release") == 0 && id) {
        snprintf(ep, sizeof ep, "/api/v1/labeling/clips/%s/release", id);
        rc = fv_cli_api_post_json("label", a[A_API], ep, pn, pv, 1, a[A_TOKEN], "{}");
    }
    curl_free(id);
    if (rc == 2) usage(stderr);
    return rc;
}
