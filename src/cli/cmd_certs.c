/*
 * cmd_certs.c - `fleetvault certs`: make and check the development PKI (crypto/certs.h).
 *
 *   fleetvault certs init DIR                      CA + server certificate in DIR
 *   fleetvault certs device DIR ID [--type TYPE]   DIR/devices/ID.{crt,key}
 *   fleetvault certs check DIR [CERT [KEY]]        server files, or one device certificate
 *
 * Exit status: 0 success, 1 failure (message on stderr), 2 bad usage.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "crypto/certs.h"
#include "util/err.h"

#define PATH_LEN 4096

static const char usage_init[] =
    "usage: fleetvault certs init DIR\n\n"
    "Creates DIR (mode 0700) with a development CA and a server certificate:\n"
    "  DIR/ca.crt, DIR/ca.key          CA 'fleetvault dev CA', EC P-256, 10 years\n"
    "  DIR/server.crt, DIR/server.key  CN localhost, SAN DNS:localhost, IP:127.0.0.1, 2 years\n"
    "Refuses (exit 1) if DIR/ca.crt already exists; nothing is changed then.\n";

static const char usage_device[] =
    "usage: fleetvault certs device DIR ID [--type TYPE]\n\n"
    "Creates DIR/devices/ID.crt and ID.key, signed by DIR's CA (2 years). ID is the device\n"
    "id (for a vehicle, its VIN, e.g. 5YJ3E1EA7KF000001): 1-64 of A-Z a-z 0-9 - _.\n"
    "The certificate's extended key usage carries clientAuth and the production client-type\n"
    "OID 1.3.6.1.4.1.49279.2.5.T for TYPE (default vehicle_device), one of:\n"
    "  vehicle_device (1), energy_device (2), vehicle_board_device (11), das_device (12),\n"
    "  vehicle_service (14), das_service (15), energy_service (16), robotics_device (28)\n"
    "TYPE may be given by name or number.\n";

static const char usage_check[] =
    "usage: fleetvault certs check DIR [CERT [KEY]]\n\n"
    "Without CERT: checks DIR/ca.crt (and ca.key if present), DIR/server.crt and server.key:\n"
    "present, readable, key matches, valid now, server signed by the CA, SAN localhost.\n"
    "With CERT: checks that device certificate (and KEY, if given) against DIR/ca.crt and\n"
    "prints the identity a server would give it. CERT may also be a device ID, meaning\n"
    "DIR/devices/ID.crt and ID.key.\n"
    "Prints 'ok: ...' and exits 0, or prints the problem and exits 1.\n";

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetvault certs init DIR\n"
               "       fleetvault certs device DIR ID [--type TYPE]\n"
               "       fleetvault certs check DIR [CERT [KEY]]\n\n"
               "Makes and checks a development PKI: a CA, the server certificate and device\n"
               "certificates. Run 'fleetvault certs SUBCOMMAND --help' for details.\n");
}

static int has_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
    return 0;
}

__attribute__((format(printf, 2, 3))) static int bad_usage(const char *text, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fleetvault certs: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n\n%s", text);
    va_end(ap);
    return 2;
}

/* Accepts a type by name ("energy_device") or number ("2"); -1 if unknown. */
static int parse_type(const char *s)
{
    int code = fv_client_type_code(s);
    if (code >= 0) return code;
    char *end;
    long n = strtol(s, &end, 10);
    if (*s != '\0' && *end == '\0' && n > 0 && n < 1000 && fv_client_type_name((int)n) != NULL)
        return (int)n;
    return -1;
}

static int cmd_init(int argc, char **argv)
{
    char err[1024];
    if (has_help(argc, argv)) {
        fputs(usage_init, stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-')
        return bad_usage(usage_init, "%s",
                         argc < 2 ? "init: missing DIR" : "init: expects DIR only");
    const char *dir = argv[1];
    int rc = fv_certs_init(dir, err, sizeof err);
    if (rc != FV_OK) {
        fprintf(stderr, "fleetvault certs init: %s\n", err);
        return 1;
    }
    printf("created a development PKI in %s:\n"
           "  %s/ca.crt       CA certificate (clients trust the server through it)\n"
           "  %s/ca.key       CA private key (signs device certificates; keep it secret)\n"
           "  %s/server.crt   server certificate (CN localhost, SAN DNS:localhost, "
           "IP:127.0.0.1)\n"
           "  %s/server.key   server private key\n"
           "next: fleetvault certs device %s 5YJ3E1EA7KF000001\n",
           dir, dir, dir, dir, dir, dir);
    return 0;
}

static int cmd_device(int argc, char **argv)
{
    char err[1024];
    const char *pos[2] = {NULL, NULL};
    const char *type_arg = "vehicle_device";
    int npos = 0;
    if (has_help(argc, argv)) {
        fputs(usage_device, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--type") == 0) {
            if (i + 1 >= argc) return bad_usage(usage_device, "%s", "device: --type needs a value");
            type_arg = argv[++i];
        } else if (strncmp(a, "--type=", 7) == 0) {
            type_arg = a + 7;
        } else if (a[0] == '-' && a[1] != '\0') {
            return bad_usage(usage_device, "device: unknown option '%s'", a);
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            return bad_usage(usage_device, "device: unexpected argument '%s'", a);
        }
    }
    if (npos < 2)
        return bad_usage(usage_device, "%s",
                         npos == 0 ? "device: missing DIR and ID" : "device: missing ID");
    int type = parse_type(type_arg);
    if (type < 0) return bad_usage(usage_device, "device: unknown client type '%s'", type_arg);
    const char *dir = pos[0], *id = pos[1];
    int rc = fv_certs_device(dir, id, type, err, sizeof err);
    if (rc != FV_OK) {
        fprintf(stderr, "fleetvault certs device: %s\n", err);
        return 1;
    }
    printf("created the certificate of device %s (sender id %s.%s):\n"
           "  %s/devices/%s.crt\n"
           "  %s/devices/%s.key   (mode 0600)\n",
           id, fv_client_type_name(type), id, dir, id, dir, id);
    return 0;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int cmd_check(int argc, char **argv)
{
    char err[2048], crt[PATH_LEN], key[PATH_LEN];
    if (has_help(argc, argv)) {
        fputs(usage_check, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            return bad_usage(usage_check, "check: unknown option '%s'", argv[i]);
    if (argc < 2 || argc > 4)
        return bad_usage(usage_check, "%s",
                         argc < 2 ? "check: missing DIR" : "check: too many arguments");
    const char *dir = argv[1];
    const char *cert = argc > 2 ? argv[2] : NULL, *keyf = argc > 3 ? argv[3] : NULL;
    int rc;
    if (cert == NULL) {
        rc = fv_certs_check_server(dir, err, sizeof err);
    } else {
        /* A bare device id stands for DIR/devices/ID.crt and its key. */
        if (!exists(cert) && fv_device_id_valid(cert) &&
            snprintf(crt, sizeof crt, "%s/devices/%s.crt", dir, cert) < (int)sizeof crt &&
            exists(crt)) {
            if (keyf == NULL &&
                snprintf(key, sizeof key, "%s/devices/%s.key", dir, cert) < (int)sizeof key)
                keyf = key;
            cert = crt;
        }
        rc = fv_certs_check_device(dir, cert, keyf, err, sizeof err);
    }
    if (rc != FV_OK) {
        fprintf(stderr, "fleetvault certs check: %s\n", err);
        return 1;
    }
    printf("ok: %s\n", err);
    return 0;
}

int fv_cmd_certs(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(sub, "init") == 0) return cmd_init(argc - 1, argv + 1);
    if (strcmp(sub, "device") == 0) return cmd_device(argc - 1, argv + 1);
    if (strcmp(sub, "check") == 0) return cmd_check(argc - 1, argv + 1);
    fprintf(stderr, "fleetvault certs: unknown subcommand '%s'\n\n", sub);
    usage(stderr);
    return 2;
}
