/* cmd_serve.c - `fleetvault serve`: parses options (a JSON config file, then flags that
 * override it) and runs the gateway until SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "config/config.h"
#include "os/heap.h"
#include "server/server.h"
#include "util/err.h"
#include "util/log.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
    fv_server_wake();
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fleetvault serve [--config FILE] [--data DIR] [--certs DIR] [--key-file F]\n"
            "                        [--previous-key-file F]\n"
            "                        [--listen HOST:PORT] [--api HOST:PORT]\n"
            "                        [--role all|gateway|storage|api]\n"
            "                        [--no-rate-limit] [--log-level debug|info|warn|error]\n\n"
            "Runs the ingestion gateway: devices stream over WebSocket with mutual TLS on\n"
            "--listen (default 127.0.0.1:4443); the HTTP API listens on --api (default\n"
            "127.0.0.1:8080). Records are acknowledged only after they are fsync'd to the\n"
            "write-ahead log in DIR/wal. --certs holds ca.crt, server.crt and server.key\n"
            "(make them with 'fleetvault certs init DIR'). The admin API token is in\n"
            "KEYFILE.admin.token, beside the master key (DIR/admin.token without a key file).\n"
            "Payloads are encrypted at rest with a data key per device, wrapped by the master\n"
            "key in --key-file (make it with 'fleetvault keys init FILE', outside DIR) or the\n"
            "FV_MASTER_KEY environment variable (64 hex digits).\n"
            "--role gateway|storage|api runs one role of a cluster on NATS JetStream, configured\n"
            "by the config's \"cluster\" object (docs/cluster.md); all (the default) is the\n"
            "single node. --previous-key-file (a cluster's master key rotation,\n"
            "docs/cluster.md): the old master key, whose values in the cluster's KV buckets\n"
            "are still read; a catalog still under it is re-wrapped under --key-file first.\n");
}

static int parse_level(const char *s, enum fv_log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum fv_log_level)i;
            return 0;
        }
    return -1;
}

int fv_cmd_serve(int argc, char **argv)
{
    struct fv_config cfg;
    char err[1024];
    fv_config_defaults(&cfg);
    /* The config file first, so that flags override it whatever their order. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            if (fv_config_load(&cfg, argv[++i], err, sizeof err) != FV_OK) {
                fprintf(stderr, "fleetvault serve: %s\n", err);
                return 1;
            }
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--no-rate-limit") == 0) {
            cfg.rate_limit_enabled = 0;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "fleetvault serve: %s needs a value (or is unknown)\n\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--config") == 0) {
            continue;
        } else if (strcmp(a, "--data") == 0) {
            snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", v);
        } else if (strcmp(a, "--key-file") == 0) {
            snprintf(cfg.key_file, sizeof cfg.key_file, "%s", v);
        } else if (strcmp(a, "--previous-key-file") == 0) {
            snprintf(cfg.previous_key_file, sizeof cfg.previous_key_file, "%s", v);
        } else if (strcmp(a, "--certs") == 0) {
            snprintf(cfg.certs_dir, sizeof cfg.certs_dir, "%s", v);
        } else if (strcmp(a, "--listen") == 0 || strcmp(a, "--api") == 0) {
            int l = a[2] == 'l';
            if (fv_parse_hostport(v, l ? cfg.listen_host : cfg.api_host, sizeof cfg.listen_host,
                                  l ? &cfg.listen_port : &cfg.api_port) != FV_OK) {
                fprintf(stderr, "fleetvault serve: %s '%s': expected HOST:PORT\n", a, v);
                return 2;
            }
        } else if (strcmp(a, "--role") == 0) {
            if (fv_role_parse(v, &cfg.role) != FV_OK) {
                fprintf(stderr, "fleetvault serve: --role '%s': use all|gateway|storage|api\n", v);
                return 2;
            }
        } else if (strcmp(a, "--log-level") == 0) {
            enum fv_log_level lv;
            if (parse_level(v, &lv)) {
                fprintf(stderr, "fleetvault serve: --log-level '%s': use debug|info|warn|error\n",
                        v);
                return 2;
            }
            fv_log_set_level(lv);
        } else {
            fprintf(stderr, "fleetvault serve: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    /* Before any thread: the next store head reuses the last one's pages (os/heap.h). */
    if (fv_heap_tune() != 0) fv_debug("serve: the allocator kept its default thresholds");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (fv_server_run(&cfg, &stop_flag, err, sizeof err) != FV_OK) {
        fprintf(stderr, "fleetvault serve: %s\n", err);
        return 1;
    }
    return 0;
}
