/* cmd_privacy.c - `fleetvault privacy report`: the records of processing (GDPR Art. 30),
 * generated from the live configuration (privacy/report.h).
 *   privacy report [--config FILE] [--data DIR] [--format md|json]
 *                  [--certs DIR] [--key-file F] [--listen H:P] [--api H:P] [--no-rate-limit]
 * The configuration is read as `fleetvault serve` reads it (the file, then serve's flags
 * over it), with the access policy it names; principals and subject counts come from
 * DATA/catalog.db, opened read-only (no master key needed; the server may be running).
 * Prints no personal data: principal names are staff and services, subjects are counted. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "config/config.h"
#include "privacy/policy.h"
#include "cli/commands.h"
#include "privacy/report.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"

int fv_cmd_privacy(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetvault privacy report [--config FILE] [--data DIR] [--format md|json]\n"
               "                                 [serve's flags]\n\n"
               "Prints the records of processing activities (GDPR Art. 30) of this installation:\n"
               "purposes (legal basis, the roles that may read each, for which data classes),\n"
               "data classes with their signals and retention, categories of data subjects,\n"
               "recipients (every principal, and per role its obligations and quotas), security\n"
               "measures, transfers, time limits for erasure and the audit log, and warnings for\n"
               "gaps the configuration leaves. It reads the configuration as `fleetvault serve`\n"
               "does (FILE, then its flags over it: --data, --certs, --key-file, --listen, --api,\n"
               "--no-rate-limit: give the ones the server runs with), the access policy the\n"
               "configuration names, and the principals in DIR/catalog.db (read only; no master\n"
               "key needed). --format md (default) is for people, json for tools. The purpose\n"
               "necessary for the contract is the server's: service.\n");
}

static int report(int argc, char **argv)
{
    const char *config = NULL, *data = NULL, *format = "md";
    const char *certs = NULL, *key_file = NULL, *listen = NULL, *api = NULL;
    int no_rate_limit = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--config") == 0 && more) {
            config = argv[++i];
        } else if (strcmp(a, "--data") == 0 && more) {
            data = argv[++i];
        } else if (strcmp(a, "--certs") == 0 && more) {
            certs = argv[++i];
        } else if (strcmp(a, "--key-file") == 0 && more) {
            key_file = argv[++i];
        } else if (strcmp(a, "--listen") == 0 && more) {
            listen = argv[++i];
        } else if (strcmp(a, "--api") == 0 && more) {
            api = argv[++i];
        } else if (strcmp(a, "--no-rate-limit") == 0) {
            no_rate_limit = 1;
        } else if (strcmp(a, "--format") == 0 && more) {
            format = argv[++i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    int json = strcmp(format, "json") == 0;
    if (!json && strcmp(format, "md") != 0) {
        fprintf(stderr, "fleetvault privacy report: --format md or json\n");
        return 2;
    }

    struct fv_config cfg;
    char err[1024] = "";
    fv_config_defaults(&cfg);
    if (config && fv_config_load(&cfg, config, err, sizeof err) != FV_OK) {
        fprintf(stderr, "fleetvault privacy report: %s\n", err);
        return 1;
    }
    /* serve's flags over the file, as serve applies them. */
    if (data) snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", data);
    if (certs) snprintf(cfg.certs_dir, sizeof cfg.certs_dir, "%s", certs);
    if (key_file) snprintf(cfg.key_file, sizeof cfg.key_file, "%s", key_file);
    if (no_rate_limit) cfg.rate_limit_enabled = 0;
    const char *hp[2] = {listen, api};
    for (int k = 0; k < 2; k++) {
        if (hp[k] &&
            fv_parse_hostport(hp[k], k ? cfg.api_host : cfg.listen_host, sizeof cfg.listen_host,
                              k ? &cfg.api_port : &cfg.listen_port) != FV_OK) {
            fprintf(stderr, "fleetvault privacy report: %s '%s': expected HOST:PORT\n",
                    k ? "--api" : "--listen", hp[k]);
            return 2;
        }
    }
    snprintf(cfg.store.dir, sizeof cfg.store.dir, "%s/store", cfg.data_dir);

    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/catalog.db", cfg.data_dir);
    sqlite3 *db = NULL;
    if (access(path, F_OK) == 0) {
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
            fprintf(stderr, "fleetvault privacy report: %s: %s\n", path,
                    db ? sqlite3_errmsg(db) : "cannot open");
            sqlite3_close(db);
            return 1;
        }
        sqlite3_busy_timeout(db, 5000); /* the server may be writing */
    }
    struct fv_report_input in = {.config = &cfg,
                                 .config_file = config,
                                 .catalog = db,
                                 .contract = NULL, /* the server's: FV_SUBJECT_CONTRACT */
                                 .version = FV_VERSION,
                                 .now_ms = (int64_t)fv_now_ms()};
    json_t *r = NULL;
    int rc = fv_report_build(&in, &r, err, sizeof err);
    sqlite3_close(db);
    if (rc) {
        fprintf(stderr, "fleetvault privacy report: %s\n", err[0] ? err : fv_strerror(rc));
        return 1;
    }
    struct fv_buf out = {0};
    if (json) {
        char *text = json_dumps(r, JSON_INDENT(2));
        rc = text ? fv_buf_append(&out, text, strlen(text)) : FV_ENOMEM;
        if (rc == FV_OK) rc = fv_buf_append(&out, "\n", 1);
        free(text);
    } else {
        rc = fv_report_markdown(r, &out);
    }
    json_decref(r);
    if (rc == FV_OK && (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0))
        rc = FV_EIO;
    fv_buf_free(&out);
    if (rc) {
        fprintf(stderr, "fleetvault privacy report: %s\n", fv_strerror(rc));
        return 1;
    }
    return 0;
}

int fv_cmd_privacy(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "report") == 0) return report(argc, argv);
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
