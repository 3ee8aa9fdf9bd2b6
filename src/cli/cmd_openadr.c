/*
 * cmd_openadr.c - `fleetvault vpp openadr ...`: the OpenADR VEN through the running server's
 * API (api/openadr_api.c), with a principal's token (an energy operator's):
 *
 *   fleetvault vpp openadr status
 *   fleetvault vpp openadr opt create --start T --end T [--in] [--reason R]
 *                                     [--market-context URI] [--vtn NAME]
 *   fleetvault vpp openadr opt cancel ID
 *
 * Every verb takes --token-file F, [--api URL] (default http://127.0.0.1:8080) and
 * [--purpose P] (default energy_programs). Answers are printed as the API gives them.
 */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "cli/commands.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetvault vpp openadr status\n"
               "       fleetvault vpp openadr opt create --start T --end T [--in] [--reason R]\n"
               "                                         [--market-context URI] [--vtn NAME]\n"
               "       fleetvault vpp openadr opt cancel ID\n"
               "  every verb: --token-file F [--api URL] [--purpose P (energy_programs)]\n"
               "  times: epoch ms or RFC 3339 (2027-07-01T23:00:00Z)\n");
}

int fv_cmd_vpp_openadr(int argc, char **argv)
{
    static const char *const names[] = {"--api", "--token-file", "--purpose",        "--start",
                                        "--end", "--reason",     "--market-context", "--vtn"};
    const char *val[8] = {"http://127.0.0.1:8080", NULL, "energy_programs"};
    const char *pos[3] = {0};
    int npos = 0, in = 0;
    for (int i = 1; i < argc; i++) {
        size_t k = 0;
        while (k < 8 && strcmp(argv[i], names[k]) != 0)
            k++;
        if (k < 8 && i + 1 < argc)
            val[k] = argv[++i];
        else if (strcmp(argv[i], "--in") == 0)
            in = 1;
        else if (argv[i][0] != '-' && npos < 3)
            pos[npos++] = argv[i];
        else
            npos = 9;
    }
    int rc = 2;
    const char *pn[] = {"purpose", "start", "end", "reason", "market_context", "vtn", "opt"};
    const char *pv[] = {val[2], val[3], val[4], val[5], val[6], val[7], in ? "in" : "out"};
    if (val[1] == NULL || npos > 3 || npos == 0) {
        /* usage */
    } else if (strcmp(pos[0], "status") == 0 && npos == 1) {
        rc = fv_cli_api("vpp openadr", "GET", val[0], "/api/v1/vpp/openadr", pn, pv, 1, val[1]);
    } else if (strcmp(pos[0], "opt") == 0 && npos == 2 && strcmp(pos[1], "create") == 0 && val[3] &&
               val[4]) {
        rc = fv_cli_api("vpp openadr", "POST", val[0], "/api/v1/vpp/openadr/opts", pn, pv, 7,
                        val[1]);
    } else if (strcmp(pos[0], "opt") == 0 && npos == 3 && strcmp(pos[1], "cancel") == 0) {
        char ep[256];
        char *id = curl_easy_escape(NULL, pos[2], 0);
        snprintf(ep, sizeof ep, "/api/v1/vpp/openadr/opts/%s/cancel", id ? id : "");
        curl_free(id);
        rc = fv_cli_api("vpp openadr", "POST", val[0], ep, pn, pv, 1, val[1]);
    }
    if (rc == 2) usage(stderr);
    return rc;
}
