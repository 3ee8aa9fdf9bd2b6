/* cmd_query.c - `fleetvault query`: the store's queries from the command line, through the
 * running server's HTTP API (so it sees the head as well as the parts, and goes through the
 * same checks). The answer is streamed to standard output as it arrives. */
#include <limits.h>
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
    fprintf(f,
            "usage: fleetvault query --device ID [--signals A,B] [--from T] [--to T]\n"
            "                        [--step S --agg F[,F...]] [--format json|csv] [--limit N]\n"
            "       fleetvault query --fleet --signal NAME [--at T] [--lookback D] [--format F]\n"
            "options: --purpose P [--ticket T] --token-file FILE (a principal's token, made by\n"
            "         `fleetvault principal add`) [--api URL (http://127.0.0.1:8080)]\n\n"
            "Every read names a purpose (service, location_history, ...) and, for roles that\n"
            "need one, a ticket; the access policy decides and the audit log records it.\n"
            "Asks the running server. T: epoch milliseconds or RFC 3339 (2026-11-25T06:00:00Z);\n"
            "S, D: 500ms, 10s, 5m, 1h, 1d; F: min max avg sum count first last. Signals by name\n"
            "(VehicleSpeed, Soc, ...) or number; without --signals, all of them. JSON rows are\n"
            "{\"t\": ms, \"Signal\": value}; CSV has one column per signal.\n");
}

struct sink {
    long status;
    struct fv_buf errbody; /* the body of an error reply, to print its message */
    size_t bytes;
    struct fv_buf *into; /* where a successful answer goes; NULL: standard output */
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t len = size * n;
    if (s->status == 0) s->status = 200;
    s->bytes += len;
    if (s->status >= 400) {
        if (s->errbody.len < 65536) fv_buf_append(&s->errbody, p, len);
        return len;
    }
    if (s->into) return fv_buf_append(s->into, p, len) == FV_OK ? len : 0;
    return fwrite(p, 1, len, stdout) == len ? len : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t len = size * n;
    int code;
    if (len > 9 && strncmp(p, "HTTP/", 5) == 0 && sscanf(p, "HTTP/%*s %d", &code) == 1)
        s->status = code;
    return len;
}

/* Appends "&name=value" with value URL-encoded. */
static int add_param(CURL *c, struct fv_buf *url, const char *name, const char *value)
{
    if (value == NULL) return FV_OK;
    char *enc = curl_easy_escape(c, value, 0);
    if (enc == NULL) return FV_ENOMEM;
    int rc = fv_buf_append(url, url->len && memchr(url->data, '?', url->len) ? "&" : "?", 1);
    if (rc == FV_OK) rc = fv_buf_append(url, name, strlen(name));
    if (rc == FV_OK) rc = fv_buf_append(url, "=", 1);
    if (rc == FV_OK) rc = fv_buf_append(url, enc, strlen(enc));
    curl_free(enc);
    return rc;
}

int fv_cmd_query(int argc, char **argv)
{
    const char *api = "http://127.0.0.1:8080", *token_file = NULL;
    const char *device = NULL, *signals = NULL, *from = NULL, *to = NULL, *step = NULL, *agg = NULL,
               *format = NULL, *limit = NULL, *signal = NULL, *at = NULL, *lookback = NULL,
               *purpose = NULL, *ticket = NULL;
    int fleet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--fleet") == 0) {
            fleet = 1;
            continue;
        }
        static const char *const names[] = {"--api",      "--token-file", "--device", "--signals",
                                            "--from",     "--to",         "--step",   "--agg",
                                            "--format",   "--limit",      "--signal", "--at",
                                            "--lookback", "--purpose",    "--ticket"};
        const char **slots[] = {&api,    &token_file, &device,   &signals, &from,
                                &to,     &step,       &agg,      &format,  &limit,
                                &signal, &at,         &lookback, &purpose, &ticket};
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
            if (strcmp(a, names[k]) == 0) slot = slots[k];
        if (slot == NULL || i + 1 >= argc) {
            fprintf(stderr, "fleetvault query: unknown option or missing value: %s\n\n", a);
            usage(stderr);
            return 2;
        }
        *slot = argv[++i];
    }
    if (fleet ? signal == NULL : device == NULL) {
        fprintf(stderr, "fleetvault query: %s\n\n",
                fleet ? "--fleet needs --signal NAME" : "--device ID is required");
        usage(stderr);
        return 2;
    }
    const char *pn[] = {"device", "signals", "from", "to",       "step",    "agg",   "format",
                        "limit",  "signal",  "at",   "lookback", "purpose", "ticket"};
    const char *pv[] = {device, signals, from, to,       step,    agg,   format,
                        limit,  signal,  at,   lookback, purpose, ticket};
    return fv_cli_api("query", "GET", api, fleet ? "/api/v1/fleet" : "/api/v1/query", pn, pv,
                      sizeof pn / sizeof pn[0], token_file);
}

/* fv_cli_api_fetch with a JSON body for a POST (NULL: none). */
static int api_fetch(const char *method, const char *api, const char *endpoint,
                     const char *const *pn, const char *const *pv, size_t np,
                     const char *token_file, const char *body, struct fv_buf *into, long *status,
                     char *err, size_t errlen)
{
    *status = 0;
    err[0] = '\0';
    if (token_file == NULL) {
        snprintf(err, errlen, "--token-file FILE is required (a principal's token)");
        return 2;
    }
    char *tok = NULL, ferr[512];
    size_t toklen = 0;
    if (fv_os_read_file(token_file, 4096, &tok, &toklen, ferr, sizeof ferr) != FV_OK) {
        snprintf(err, errlen, "cannot read the API token: %s", ferr);
        return 1;
    }
    while (toklen && (tok[toklen - 1] == '\n' || tok[toklen - 1] == '\r'))
        tok[--toklen] = '\0';
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(tok);
        snprintf(err, errlen, "cannot start libcurl");
        return 1;
    }
    CURL *c = curl_easy_init();
    struct fv_buf url = {0}, auth = {0};
    struct sink sink = {.into = into};
    int rc = c ? FV_OK : FV_ENOMEM;
    if (rc == FV_OK) rc = fv_buf_append(&url, api, strlen(api));
    if (rc == FV_OK) rc = fv_buf_append(&url, endpoint, strlen(endpoint));
    for (size_t k = 0; rc == FV_OK && k < np; k++)
        rc = add_param(c, &url, pn[k], pv[k]);
    if (rc == FV_OK) rc = fv_buf_append(&url, "", 1);
    if (rc == FV_OK) rc = fv_buf_append(&auth, "Authorization: Bearer ", 22);
    if (rc == FV_OK) rc = fv_buf_append(&auth, tok, toklen + 1);
    free(tok);
    struct curl_slist *hdrs = NULL;
    CURLcode cc = CURLE_OK;
    if (rc == FV_OK) {
        hdrs = curl_slist_append(NULL, (const char *)auth.data);
        curl_easy_setopt(c, CURLOPT_URL, (const char *)url.data);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &sink);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        if (body) hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        if (strcmp(method, "POST") == 0) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        cc = curl_easy_perform(c);
    }
    int exit_code = 0;
    if (rc != FV_OK) {
        snprintf(err, errlen, "%s", fv_strerror(rc));
        exit_code = 1;
    } else if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s (is the server running? --api URL)", api,
                 curl_easy_strerror(cc));
        exit_code = 1;
    } else if (sink.status >= 400) {
        json_t *j = json_loadb((const char *)sink.errbody.data, sink.errbody.len, 0, NULL);
        const char *m = json_string_value(json_object_get(j, "error"));
        snprintf(err, errlen, "%ld: %s", sink.status, m ? m : "the server refused the request");
        json_decref(j);
        exit_code = 1;
    }
    *status = sink.status;
    curl_slist_free_all(hdrs);
    fv_buf_free(&url);
    fv_buf_free(&auth);
    fv_buf_free(&sink.errbody);
    if (c) curl_easy_cleanup(c);
    curl_global_cleanup();
    return exit_code;
}

int fv_cli_api_fetch(const char *method, const char *api, const char *endpoint,
                     const char *const *pn, const char *const *pv, size_t np,
                     const char *token_file, struct fv_buf *into, long *status, char *err,
                     size_t errlen)
{
    return api_fetch(method, api, endpoint, pn, pv, np, token_file, NULL, into, status, err,
                     errlen);
}

int fv_cli_api_post_fetch(const char *api, const char *endpoint, const char *const *pn,
                          const char *const *pv, size_t np, const char *token_file,
                          const char *body, struct fv_buf *into, long *status, char *err,
                          size_t errlen)
{
    return api_fetch("POST", api, endpoint, pn, pv, np, token_file, body, into, status, err,
                     errlen);
}

int fv_cli_parse_opts(int argc, char **argv, int start, const char *const *names, size_t n,
                      const char **vals, const char *const *flags, size_t nflags, int *set,
                      const char **pos)
{
    int have_pos = 0;
    for (int i = start; i < argc; i++) {
        size_t k = 0, f = 0;
        while (k < n && strcmp(argv[i], names[k]) != 0)
            k++;
        while (f < nflags && strcmp(argv[i], flags[f]) != 0)
            f++;
        if (k < n && i + 1 < argc) {
            vals[k] = argv[++i];
        } else if (f < nflags) {
            set[f] = 1;
        } else if (argv[i][0] != '-' && !have_pos) {
            *pos = argv[i];
            have_pos = 1;
        } else {
            return -1;
        }
    }
    return 0;
}

int fv_cli_api_post_json(const char *prog, const char *api, const char *endpoint,
                         const char *const *pn, const char *const *pv, size_t np,
                         const char *token_file, const char *body)
{
    char err[600];
    long status;
    int rc = api_fetch("POST", api, endpoint, pn, pv, np, token_file, body, NULL, &status, err,
                       sizeof err);
    fflush(stdout);
    if (rc) fprintf(stderr, "fleetvault %s: %s\n", prog, err);
    return rc;
}

/* Sends one request to the running server's API and streams the answer to standard
 * output; an error reply's message goes to standard error. Exit code 0, 1 or 2. */
int fv_cli_api(const char *prog, const char *method, const char *api, const char *endpoint,
               const char *const *pn, const char *const *pv, size_t np, const char *token_file)
{
    char err[600];
    long status;
    int rc = fv_cli_api_fetch(method, api, endpoint, pn, pv, np, token_file, NULL, &status, err,
                              sizeof err);
    fflush(stdout);
    if (rc) fprintf(stderr, "fleetvault %s: %s\n", prog, err);
    return rc;
}
