/* cmd_audit.c - `fleetvault audit`: the tamper-evident audit log (src/privacy/audit.h,
 * docs/audit.md).
 *   audit keygen PRIV PUB                  the checkpoint signing key pair (PRIV 0600)
 *   audit verify --data DIR [--public-key PUB] [--witness FILE] [--strict]
 *                                          proves the chain intact or names the first broken
 *                                          entry; exit 0 intact, 1 broken, 2 usage
 *   audit query --data DIR [filters]       matching entries as JSON lines
 * verify and query only read, so they may run while the server writes the log. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/query.h"
#include "cli/commands.h"
#include "privacy/audit.h"
#include "util/err.h"

int fv_cmd_audit(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fleetvault audit keygen PRIV PUB\n"
            "       fleetvault audit verify (--data DIR | --dir AUDITDIR) [--public-key PUB]\n"
            "                               [--witness FILE] [--strict]\n"
            "       fleetvault audit query (--data DIR | --dir AUDITDIR) [--principal P]\n"
            "                              [--subject S] [--kind K] [--action A] [--ticket T]\n"
            "                              [--result allow|deny|error] [--from T] [--to T]\n"
            "                              [--limit N]\n\n"
            "keygen makes the Ed25519 key that signs checkpoints (PRIV, mode 0600, for the\n"
            "server; PUB for the witness and for verify; after a key rotation, PUB may hold\n"
            "the old and new public keys, concatenated). verify walks DIR/audit and exits 0\n"
            "if the chain is intact, 1 if not (naming the first broken entry); entries it cannot\n"
            "prove against truncation are printed as a warning, and entries after the last one\n"
            "the witness holds as UNVERIFIABLE TAIL (--strict: exit 1 then too).\n"
            "query prints matching entries, oldest first, one JSON object per line; T is epoch\n"
            "milliseconds or RFC 3339 (2026-11-25T06:00:00Z), both ends inclusive.\n");
}

static int audit_dir(const char *data, const char *dir, char *out, size_t n)
{
    if (dir) return snprintf(out, n, "%s", dir) < (int)n ? 0 : -1;
    return snprintf(out, n, "%s/audit", data) < (int)n ? 0 : -1;
}

static int cmd_keygen(int argc, char **argv)
{
    char err[1024];
    if (argc != 4) {
        usage(stderr);
        return 2;
    }
    if (fv_audit_keygen(argv[2], argv[3], err, sizeof err) != FV_OK) {
        fprintf(stderr, "fleetvault audit keygen: %s\n", err);
        return 1;
    }
    printf("created the audit signing key %s (mode 0600, for the server) and its public key %s\n"
           "(give %s to the witness; verify checkpoints with --public-key %s)\n",
           argv[2], argv[3], argv[3], argv[3]);
    return 0;
}

static int cmd_verify(int argc, char **argv)
{
    const char *data = NULL, *dir = NULL, *pub = NULL, *witness = NULL;
    int strict = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            data = argv[++i];
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--public-key") == 0 && i + 1 < argc)
            pub = argv[++i];
        else if (strcmp(argv[i], "--witness") == 0 && i + 1 < argc)
            witness = argv[++i];
        else if (strcmp(argv[i], "--strict") == 0)
            strict = 1;
        else {
            usage(stderr);
            return 2;
        }
    }
    char path[PATH_MAX], err[1024];
    if ((data == NULL) == (dir == NULL) || audit_dir(data, dir, path, sizeof path)) {
        usage(stderr);
        return 2;
    }
    struct fv_audit_report r;
    int rc = fv_audit_verify(path, pub, witness, &r, err, sizeof err);
    if (rc == FV_OK) {
        /* "INTACT" only when nothing is left unproven; entries after the last witnessed
         * one are "UNVERIFIABLE" (they could have been cut or added undetected); otherwise
         * the chain is sound as far as it can be checked, and the warning says what is
         * missing. */
        if (witness && r.unproven)
            printf("UNVERIFIABLE TAIL %s: seq %" PRIu64 "..%" PRIu64
                   " are witnessed by nothing; before them: %s\n",
                   path, r.last_seq - r.unproven + 1, r.last_seq, r.message);
        else
            printf("%s %s: %s\n", r.warning[0] ? "INTACT AS FAR AS PROVABLE" : "INTACT", path,
                   r.message);
        if (witness)
            printf("witness %s: %" PRIu64 " checkpoints and %" PRIu64 " heads, %" PRIu64
                   " checkpoints found in the log\n",
                   witness, r.witness_checkpoints, r.witness_heads, r.witness_matched);
        if (r.warning[0]) printf("WARNING: %s\n", r.warning);
        return strict && r.warning[0] ? 1 : 0;
    }
    if (rc == FV_ECORRUPT && r.bad_file[0]) {
        printf("BROKEN %s: first bad entry at %s\n", path, r.message);
        printf("checked before it: %" PRIu64 " entries, %" PRIu64 " checkpoints (%" PRIu64
               " signatures verified)\n",
               r.entries, r.checkpoints, r.signatures_verified);
        return 1;
    }
    fprintf(stderr, "fleetvault audit verify: %s\n", err);
    return 1;
}

struct printer {
    uint64_t n, limit;
};

static int print_line(void *arg, const char *line, size_t len)
{
    struct printer *p = arg;
    if (fwrite(line, 1, len, stdout) != len || putchar('\n') == EOF) return FV_EIO;
    return ++p->n == p->limit ? 1 : 0;
}

static int cmd_query(int argc, char **argv)
{
    const char *data = NULL, *dir = NULL;
    struct fv_audit_filter f = {0};
    struct printer p = {0, 0};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--data") == 0)
            data = v;
        else if (strcmp(a, "--dir") == 0)
            dir = v;
        else if (strcmp(a, "--principal") == 0)
            f.principal = v;
        else if (strcmp(a, "--subject") == 0)
            f.subject = v;
        else if (strcmp(a, "--kind") == 0)
            f.kind = v;
        else if (strcmp(a, "--action") == 0)
            f.action = v;
        else if (strcmp(a, "--ticket") == 0)
            f.ticket = v;
        else if (strcmp(a, "--result") == 0 &&
                 (strcmp(v, "allow") == 0 || strcmp(v, "deny") == 0 || strcmp(v, "error") == 0))
            f.result = v;
        else if ((strcmp(a, "--from") == 0 || strcmp(a, "--to") == 0)) {
            int64_t t;
            if (fv_parse_time_ms(v, &t) != FV_OK || t <= 0) {
                fprintf(stderr,
                        "fleetvault audit query: bad time '%s': use epoch milliseconds "
                        "or RFC 3339\n",
                        v);
                return 2;
            }
            *(a[2] == 'f' ? &f.from_ms : &f.to_ms) = t;
        } else if (strcmp(a, "--limit") == 0) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (*v == '\0' || *end || errno || n == 0) {
                usage(stderr);
                return 2;
            }
            p.limit = n;
        } else {
            usage(stderr);
            return 2;
        }
    }
    char path[PATH_MAX], err[1024] = "";
    if ((data == NULL) == (dir == NULL) || audit_dir(data, dir, path, sizeof path)) {
        usage(stderr);
        return 2;
    }
    if (f.from_ms && f.to_ms && f.from_ms > f.to_ms) {
        fprintf(stderr, "fleetvault audit query: empty range: --from is after --to\n");
        return 2;
    }
    int rc = fv_audit_query(path, &f, print_line, &p, err, sizeof err);
    if (fflush(stdout) != 0) rc = FV_EIO;
    if (rc < 0) {
        fprintf(stderr, "fleetvault audit query: %s\n",
                rc == FV_EIO && err[0] == '\0' ? "write error" : err);
        return 1;
    }
    fprintf(stderr, "%" PRIu64 " entries\n", p.n);
    return 0;
}

int fv_cmd_audit(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "keygen") == 0) return cmd_keygen(argc, argv);
    if (strcmp(argv[1], "verify") == 0) return cmd_verify(argc, argv);
    if (strcmp(argv[1], "query") == 0) return cmd_query(argc, argv);
    usage(stderr);
    return 2;
}
