/*
 * cmd_vpp.c - `fleetvault vpp ...`: the virtual power plant through the running server's API
 * (api/vpp_api.c), with a principal's token (an energy operator's, purpose energy_programs
 * unless --purpose says otherwise):
 *
 *   fleetvault vpp event create --program P --start T --end T (--target-kw K | --max)
 *   fleetvault vpp event list
 *   fleetvault vpp event status ID [--watch [--interval S]]   (--watch: cli/vpp_watch.h)
 *   fleetvault vpp event cancel ID
 *   fleetvault vpp enroll SITE --program P
 *   fleetvault vpp opt-out SITE --event ID
 *   fleetvault vpp settle (--event ID | --season YEAR --program P) [--format csv|json]
 *   fleetvault vpp openadr ...   the OpenADR VEN (cli/cmd_openadr.c)
 *
 * Every verb takes --token-file F, [--api URL] (default http://127.0.0.1:8080), [--purpose P]
 * and [--ticket T] (a role that needs one: energy-billing's payment run). Answers are
 * printed as the API gives them (JSON, or CSV for settle), but for --watch, a live view.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli/commands.h"
#include "cli/vpp_watch.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetvault vpp event create --program P --start T --end T "
               "(--target-kw K | --max)\n"
               "       fleetvault vpp event list | status ID [--watch [--interval S]] | cancel ID\n"
               "       fleetvault vpp enroll SITE --program P\n"
               "       fleetvault vpp opt-out SITE --event ID\n"
               "       fleetvault vpp settle (--event ID | --season YEAR --program P) "
               "[--format csv|json]\n"
               "  every verb: --token-file F [--api URL] [--purpose P (energy_programs)] "
               "[--ticket T]\n"
               "  --watch: a live view until the event is over or Ctrl-C (every S seconds, 2)\n"
               "  times: epoch ms or RFC 3339 (2027-07-01T23:00:00Z)\n");
}

struct vargs {
    const char *api, *token_file, *purpose, *program, *start, *end, *target, *event, *format,
        *season, *ticket, *interval;
    int max, watch;
    const char *pos[3];
    int npos;
};

static int parse(int argc, char **argv, int from, struct vargs *a)
{
    memset(a, 0, sizeof *a);
    a->api = "http://127.0.0.1:8080";
    a->purpose = "energy_programs";
    for (int i = from; i < argc; i++) {
        static const char *const names[] = {
            "--api",       "--token-file", "--purpose", "--program", "--start",  "--end",
            "--target-kw", "--event",      "--format",  "--season",  "--ticket", "--interval"};
        const char **slots[] = {&a->api,    &a->token_file, &a->purpose, &a->program,
                                &a->start,  &a->end,        &a->target,  &a->event,
                                &a->format, &a->season,     &a->ticket,  &a->interval};
        size_t k = 0;
        while (k < sizeof names / sizeof names[0] && strcmp(argv[i], names[k]) != 0)
            k++;
        if (k < sizeof names / sizeof names[0] && i + 1 < argc)
            *slots[k] = argv[++i];
        else if (strcmp(argv[i], "--max") == 0)
            a->max = 1;
        else if (strcmp(argv[i], "--watch") == 0)
            a->watch = 1;
        else if (argv[i][0] != '-' && a->npos < 3)
            a->pos[a->npos++] = argv[i];
        else
            return 2;
    }
    return a->token_file ? 0 : 2;
}

/* One call: method endpoint with the parameters given (NULL values left out); watch: the
 * live view of it instead (an event's status). */
static int call(const struct vargs *a, const char *method, const char *endpoint,
                const char *const *pn, const char *const *pv, size_t np, int watch)
{
    const char *n[8], *v[8];
    size_t k = 0;
    n[k] = "purpose";
    v[k++] = a->purpose;
    if (a->ticket) {
        n[k] = "ticket";
        v[k++] = a->ticket;
    }
    for (size_t i = 0; i < np && k < 8; i++)
        if (pv[i]) {
            n[k] = pn[i];
            v[k++] = pv[i];
        }
    if (!watch) return fv_cli_api("vpp", method, a->api, endpoint, n, v, k, a->token_file);
    char *e = NULL;
    double s = a->interval ? strtod(a->interval, &e) : 2.0;
    if ((e && (*e || e == a->interval)) || !(s >= 0.1 && s <= 3600)) {
        fprintf(stderr, "fleetvault vpp: --interval: seconds between 0.1 and 3600\n");
        return 2;
    }
    return fv_vpp_watch(a->api, endpoint, n, v, k, a->token_file, (int)(s * 1000));
}

int fv_cmd_vpp(int argc, char **argv)
{
    const char *verb = argc > 1 ? argv[1] : "";
    if (strcmp(verb, "openadr") == 0) return fv_cmd_vpp_openadr(argc - 1, argv + 1);
    int ev = strcmp(verb, "event") == 0;
    const char *sub = ev && argc > 2 ? argv[2] : "";
    struct vargs a;
    if (parse(argc, argv, ev ? 3 : 2, &a)) {
        usage(stderr);
        return 2;
    }
    char ep[512];
    char *id = a.npos ? curl_easy_escape(NULL, a.pos[0], 0) : NULL;
    int rc = 2;
    if (ev && strcmp(sub, "create") == 0 && a.program && a.start && a.end &&
        (a.target != NULL) != a.max) {
        const char *pn[] = {"program", "start", "end", "target_kw", "max"};
        const char *pv[] = {a.program, a.start, a.end, a.target, a.max ? "true" : NULL};
        rc = call(&a, "POST", "/api/v1/vpp/events", pn, pv, 5, 0);
    } else if (ev && strcmp(sub, "list") == 0) {
        rc = call(&a, "GET", "/api/v1/vpp/events", NULL, NULL, 0, 0);
    } else if (ev && strcmp(sub, "status") == 0 && id) {
        snprintf(ep, sizeof ep, "/api/v1/vpp/events/%s", id);
        rc = call(&a, "GET", ep, NULL, NULL, 0, a.watch);
    } else if (ev && strcmp(sub, "cancel") == 0 && id) {
        snprintf(ep, sizeof ep, "/api/v1/vpp/events/%s/cancel", id);
        rc = call(&a, "POST", ep, NULL, NULL, 0, 0);
    } else if ((strcmp(verb, "enroll") == 0 && a.program) ||
               (strcmp(verb, "opt-out") == 0 && a.event)) {
        if (id) {
            int enroll = verb[0] == 'e';
            snprintf(ep, sizeof ep, "/api/v1/vpp/sites/%s/%s", id, verb);
            const char *pn[] = {enroll ? "program" : "event"};
            const char *pv[] = {enroll ? a.program : a.event};
            rc = call(&a, "POST", ep, pn, pv, 1, 0);
        }
    } else if (strcmp(verb, "settle") == 0 && a.season && a.program) {
        const char *pn[] = {"program", "season", "format"};
        const char *pv[] = {a.program, a.season, a.format ? a.format : "csv"};
        rc = call(&a, "GET", "/api/v1/vpp/settlement", pn, pv, 3, 0);
    } else if (strcmp(verb, "settle") == 0 && a.event) {
        char *e = curl_easy_escape(NULL, a.event, 0);
        snprintf(ep, sizeof ep, "/api/v1/vpp/events/%s/settlement", e ? e : "");
        curl_free(e);
        const char *pn[] = {"format"}, *pv[] = {a.format ? a.format : "csv"};
        rc = call(&a, "GET", ep, pn, pv, 1, 0);
    }
    curl_free(id);
    if (rc == 2) usage(stderr);
    return rc;
}
