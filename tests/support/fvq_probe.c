/* fvq_probe.c - a test tool: one request of the api node's protocol (cluster/jsquery.h, J1-J5)
 * sent to one shard's owner, sealed with the master key of a key file, for end-to-end tests
 * that drive the owners' side by hand (tests/e2e/test_cluster_api.py: pieces asked out of
 * sequence, by another principal, ...).
 *
 *   fvq_probe NATS_URL STREAM KEY_FILE SHARD METHOD PATH PRINCIPAL ROLE QUERY [SESSION SEQ]
 *
 * Prints one JSON line ({"rc":"ok","status":N,"here":0|1,"type":"...","more":"..."}, or
 * {"rc":"timeout"} when no answer came within 3 s, {"rc":"noresponders"}), then the answer's
 * body as it came. Exit 0 when an answer or a timeout was printed, 2 on bad use or errors.
 *
 *   fvq_probe --owner NATS_URL STREAM KEY_FILE
 *
 * Plays the storage node of every shard until SIGTERM (tests/e2e/test_cluster_api_async.py):
 * shard 0 holds every device and answers a request's first piece with more to come (J1), the
 * others "not here"; a pull of a next piece (J2) is printed ("pull N", a line) and never
 * answered. Prints "ready" once it listens.
 *
 *   fvq_probe --ready-owner NATS_URL STREAM KEY_FILE
 *
 * The same, answering only a bulk export's first look of every shard (/cluster/exports/ready:
 * 200 "{}") and nothing else (tests/e2e/test_cluster_api_export.py: a stopped node's rows
 * are then never answered). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/jsquery.h"
#include "crypto/keys.h"
#include "util/err.h"

static void wake(void *arg)
{
    (void)arg;
}

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static int holds_all(void *arg, uint32_t shard)
{
    (void)arg;
    (void)shard;
    return 1;
}

static int cfg_of(struct fv_cluster_cfg *cfg, const char *url, const char *stream,
                  const char *key_file, struct fv_kek *kek)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->enabled = 1;
    snprintf(cfg->urls[0], sizeof cfg->urls[0], "%s", url);
    cfg->nurls = 1;
    cfg->replicas = 1;
    snprintf(cfg->stream, sizeof cfg->stream, "%s", stream);
    char err[512];
    if (fv_kek_load(key_file, kek, err, sizeof err) == FV_OK) return 0;
    fprintf(stderr, "fvq_probe: %s\n", err);
    return -1;
}

static int fake_owner(int argc, char **argv, int ready_only)
{
    struct fv_cluster_cfg cfg;
    struct fv_kek kek;
    if (argc != 5 || cfg_of(&cfg, argv[2], argv[3], argv[4], &kek)) return 2;
    signal(SIGTERM, on_term);
    char err[512];
    struct fv_jsquery *q = NULL;
    int rc = fv_jsquery_open(&cfg, &kek, "fvq-fake-owner", &q, err, sizeof err);
    fv_kek_wipe(&kek);
    if (rc == FV_OK) rc = fv_jsquery_serve(q, holds_all, NULL, wake, NULL, err, sizeof err);
    if (rc) {
        fprintf(stderr, "fvq_probe: %s\n", err);
        fv_jsquery_close(q);
        return 2;
    }
    printf("ready\n");
    fflush(stdout);
    static const char first[] = "{\"rows\":[first piece", not_here[] = "{\"error\":\"not here\"}";
    while (!stop) {
        struct fv_jsq_req *r = fv_jsquery_next(q);
        if (r == NULL) {
            usleep(5000);
        } else if (ready_only) {
            if (strcmp(r->path, "/cluster/exports/ready") == 0)
                fv_jsquery_answer(q, r, 200, "application/json", 1, NULL, "{}\n", 3);
            else
                fv_jsquery_drop(r);
        } else if (r->session[0]) {
            printf("pull %u\n", r->seq);
            fflush(stdout);
            fv_jsquery_drop(r);
        } else if (r->shard == 0) {
            fv_jsquery_answer(q, r, 200, "application/json", 1, "abababababababababababababababab",
                              first, sizeof first - 1);
        } else {
            fv_jsquery_answer(q, r, 404, "application/json", 0, NULL, not_here,
                              sizeof not_here - 1);
        }
    }
    fv_jsquery_close(q);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--owner") == 0) return fake_owner(argc, argv, 0);
    if (argc > 1 && strcmp(argv[1], "--ready-owner") == 0) return fake_owner(argc, argv, 1);
    if (argc != 10 && argc != 12) {
        fprintf(stderr, "usage: fvq_probe NATS_URL STREAM KEY_FILE SHARD METHOD PATH PRINCIPAL "
                        "ROLE QUERY [SESSION SEQ]\n");
        return 2;
    }
    struct fv_cluster_cfg cfg;
    struct fv_kek kek;
    if (cfg_of(&cfg, argv[1], argv[2], argv[3], &kek)) return 2;
    char err[512];
    uint32_t shard = (uint32_t)strtoul(argv[4], NULL, 10);
    struct fv_jsquery *q = NULL;
    struct fv_jsq_call *c = NULL;
    int rc = fv_jsquery_open(&cfg, &kek, "fvq-probe", &q, err, sizeof err);
    fv_kek_wipe(&kek);
    if (rc == FV_OK) rc = fv_jsquery_ask_async(q, wake, NULL, err, sizeof err);
    if (rc == FV_OK) rc = fv_jsquery_call_open(q, shard + 1, &c, err, sizeof err);
    if (rc == FV_OK && argc == 12)
        rc = fv_jsquery_call_pull(q, c, shard, argv[5], argv[6], argv[7], argv[8], argv[10],
                                  (uint32_t)strtoul(argv[11], NULL, 10), err, sizeof err);
    else if (rc == FV_OK)
        rc = fv_jsquery_call_ask(q, c, shard, argv[5], argv[6], argv[9], argv[7], argv[8], err,
                                 sizeof err);
    if (rc) {
        fprintf(stderr, "fvq_probe: %s\n", err);
        fv_jsquery_call_end(q, c);
        fv_jsquery_close(q);
        return 2;
    }
    struct fv_jsq_answer a;
    memset(&a, 0, sizeof a);
    int got = 0;
    for (int i = 0; i < 300 && !got; i++) {
        got = fv_jsquery_call_take(q, c, shard, &a);
        if (!got) usleep(10000);
    }
    if (!got)
        printf("{\"rc\":\"timeout\"}\n");
    else if (a.rc == FV_ENOENT)
        printf("{\"rc\":\"noresponders\"}\n");
    else if (a.rc != FV_OK)
        printf("{\"rc\":\"error %d\"}\n", a.rc);
    else
        printf("{\"rc\":\"ok\",\"status\":%d,\"here\":%d,\"type\":\"%s\",\"more\":\"%s\"}\n",
               a.status, a.here, a.type, a.more);
    if (got && a.rc == FV_OK && a.body.len) fwrite(a.body.data, 1, a.body.len, stdout);
    fflush(stdout);
    fv_buf_free(&a.body);
    fv_jsquery_call_end(q, c);
    fv_jsquery_close(q);
    return 0;
}
