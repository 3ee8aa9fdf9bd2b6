/* main.c - `fleetvault` entry point: dispatches to a subcommand (cli/commands.h). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static void usage(FILE *f)
{
    fprintf(f,
            "fleetvault %s - a private data center for vehicle and energy fleets\n\n"
            "usage: fleetvault COMMAND [options]\n\n"
            "commands:\n"
            "  serve      run the ingestion gateway and HTTP API\n"
            "  certs      make a development CA, server and device certificates\n"
            "  simulate   stream a simulated fleet to a server\n"
            "  inspect    print what a (stopped) server's data directory holds\n"
            "  send       send one envelope file to a server and print the reply\n"
            "  keys       master key, data key rotation and shredding\n"
            "  query      ask the running server's store (ranges, downsampling, fleet view)\n"
            "  principal  API users and services, with roles of the access policy\n"
            "  subject    owners, consent per purpose, zones, export, erasure (GDPR)\n"
            "  privacy    records of processing (GDPR Art. 30) from the live configuration\n"
            "  vpp        virtual power plant: events, enrolment, opt-outs, settlement\n"
            "  campaign   data-collection campaigns: create, list, status, stop\n"
            "  label      the labelers' work queue: next, get, submit, release\n"
            "  dataset    training datasets from the clips: build, rebuild, list, status\n"
            "  cluster    a NATS JetStream cluster's state: stream, shards' consumers, lag\n"
            "  audit      verify and search the tamper-evident audit log\n"
            "  mcap       MCAP clip files: info, cat, verify, write\n"
            "  version    print the version\n\n"
            "Run 'fleetvault COMMAND --help' for a command's options.\n",
            FV_VERSION);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("fleetvault %s\n", FV_VERSION);
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"serve", fv_cmd_serve},     {"certs", fv_cmd_certs},         {"simulate", fv_cmd_simulate},
        {"inspect", fv_cmd_inspect}, {"send", fv_cmd_send},           {"keys", fv_cmd_keys},
        {"query", fv_cmd_query},     {"principal", fv_cmd_principal}, {"audit", fv_cmd_audit},
        {"subject", fv_cmd_subject}, {"privacy", fv_cmd_privacy},     {"vpp", fv_cmd_vpp},
        {"mcap", fv_cmd_mcap},       {"campaign", fv_cmd_campaign},   {"label", fv_cmd_label},
        {"dataset", fv_cmd_dataset}, {"cluster", fv_cmd_cluster}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmd, cmds[i].name) == 0) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "fleetvault: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
