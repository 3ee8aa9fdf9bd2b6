/*
 * cmd_dataset.c - `fleetvault dataset build|rebuild|list|status` over the running server's
 * API (api/dataset_api.c): a build is queued on the server's build worker (data/ds_builds.h)
 * and answered with its id; --wait polls its status until it is done or failed. Every
 * request names purpose model_training (the only one datasets are read for). Main thread
 * of the CLI process.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli/commands.h"
#include "util/buf.h"
#include "util/err.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetvault dataset build --name N [--query Q] [--split "
               "train=0.8,val=0.1,test=0.1]\n"
               "                                [--balance] [--per-tag N] [--wait]\n"
               "       fleetvault dataset rebuild --name N [--wait]\n"
               "       fleetvault dataset list | status ID\n"
               "  every verb: --token-file F [--api URL] [--ticket T]\n"
               "  query: campaign=ID from=MS to=MS tag=T ... (docs/data-engine.md, Datasets)\n");
}

enum { A_API, A_TOKEN, A_TICKET, A_NAME, A_QUERY, A_SPLIT, A_PER_TAG, A_N };
static const char *const names[A_N] = {"--api",   "--token-file", "--ticket", "--name",
                                       "--query", "--split",      "--per-tag"};

/* Polls the build until it ends; prints its last state. Exit code. */
static int wait_build(const char *const *a, const char *const *pn, const char *const *pv,
                      const char *id)
{
    char ep[128], err[600];
    snprintf(ep, sizeof ep, "/api/v1/datasets/builds/%s", id);
    for (int tries = 0; tries < 36000; tries++) { /* an hour at most */
        struct fv_buf b = {0};
        long status = 0;
        int rc = fv_cli_api_fetch("GET", a[A_API], ep, pn, pv, 2, a[A_TOKEN], &b, &status, err,
                                  sizeof err);
        if (rc) {
            fv_buf_free(&b);
            fprintf(stderr, "fleetvault dataset: %s\n", err);
            return rc;
        }
        json_t *j = json_loadb((const char *)b.data, b.len, 0, NULL);
        const char *st = json_string_value(json_object_get(j, "state"));
        int end = st && (strcmp(st, "done") == 0 || strcmp(st, "failed") == 0);
        if (end) {
            fwrite(b.data, 1, b.len, stdout);
            fputc('\n', stdout);
        }
        int failed = st && strcmp(st, "failed") == 0;
        json_decref(j);
        fv_buf_free(&b);
        if (end) return failed ? 1 : 0;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "fleetvault dataset: build %s still running\n", id);
    return 1;
}

/* POSTs a build; prints the answer; with wait, waits for the build. */
static int submit(const char *const *a, const char *const *pn, const char *const *pv,
                  const char *endpoint, const char *body, int wait)
{
    struct fv_buf b = {0};
    long status = 0;
    char err[600];
    int rc = fv_cli_api_post_fetch(a[A_API], endpoint, pn, pv, 2, a[A_TOKEN], body, &b, &status,
                                   err, sizeof err);
    if (rc) {
        fv_buf_free(&b);
        fprintf(stderr, "fleetvault dataset: %s\n", err);
        return rc;
    }
    json_t *j = json_loadb((const char *)b.data, b.len, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "build"));
    if (!wait || id == NULL) {
        fwrite(b.data, 1, b.len, stdout);
        fputc('\n', stdout);
    } else {
        rc = wait_build(a, pn, pv, id);
    }
    json_decref(j);
    fv_buf_free(&b);
    return rc;
}

int fv_cmd_dataset(int argc, char **argv)
{
    const char *verb = argc > 1 ? argv[1] : "";
    const char *a[A_N] = {0}, *pos = NULL;
    a[A_API] = "http://127.0.0.1:8080";
    if (strcmp(verb, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    enum { F_BALANCE, F_WAIT, F_N };
    static const char *const flags[F_N] = {"--balance", "--wait"};
    int set[F_N] = {0};
    if (fv_cli_parse_opts(argc, argv, 2, names, A_N, a, flags, F_N, set, &pos) != 0 ||
        a[A_TOKEN] == NULL) {
        usage(stderr);
        return 2;
    }
    const char *pn[] = {"purpose", "ticket"}, *pv[] = {"model_training", a[A_TICKET]};
    char ep[256];
    int rc = 2;
    if (strcmp(verb, "build") == 0 && a[A_NAME]) {
        char *end = NULL;
        long long per = a[A_PER_TAG] ? strtoll(a[A_PER_TAG], &end, 10) : 0;
        if (a[A_PER_TAG] && (*end != '\0' || per < 0)) {
            fprintf(stderr, "fleetvault dataset: --per-tag: a non-negative integer\n");
            return 2;
        }
        json_t *o = json_pack("{s:s,s:s,s:s,s:b,s:I}", "name", a[A_NAME], "query",
                              a[A_QUERY] ? a[A_QUERY] : "", "split",
                              a[A_SPLIT] ? a[A_SPLIT] : "train=0.8,val=0.1,test=0.1", "balance",
                              set[F_BALANCE], "per_tag", (json_int_t)per);
        char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        rc = body ? submit(a, pn, pv, "/api/v1/datasets", body, set[F_WAIT]) : 1;
        free(body);
    } else if (strcmp(verb, "rebuild") == 0 && a[A_NAME]) {
        char *name = curl_easy_escape(NULL, a[A_NAME], 0);
        if (name == NULL) return 1;
        snprintf(ep, sizeof ep, "/api/v1/datasets/%s/rebuild", name);
        curl_free(name);
        rc = submit(a, pn, pv, ep, "{}", set[F_WAIT]);
    } else if (strcmp(verb, "list") == 0) {
        rc = fv_cli_api("dataset", "GET", a[A_API], "/api/v1/datasets", pn, pv, 2, a[A_TOKEN]);
    } else if (strcmp(verb, "status") == 0 && pos) {
        char *id = curl_easy_escape(NULL, pos, 0);
        if (id == NULL) return 1;
        snprintf(ep, sizeof ep, "/api/v1/datasets/builds/%s", id);
        curl_free(id);
        rc = fv_cli_api("dataset", "GET", a[A_API], ep, pn, pv, 2, a[A_TOKEN]);
    }
    if (rc == 2) usage(stderr);
    return rc;
}
