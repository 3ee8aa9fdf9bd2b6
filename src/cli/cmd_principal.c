/* cmd_principal.c - `fleetvault principal add|revoke|list`: the users and services that may
 * use the API, each with a role of the access policy (privacy/policy.h). A token is shown
 * once, at creation; only its hash is stored (privacy/principals.h). A principal of a role
 * that reaches personal data is pending until a second principal approves it through the API
 * (principals.h A1). Every change is queued, in the same transaction, for the server's audit
 * log (principal_events: logged at its next start, or within a second while it runs). Works
 * while the server runs (SQLite serialises the writes; the server reads principals on every
 * request). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "cli/commands.h"
#include "privacy/policy.h"
#include "privacy/principals.h"
#include "util/err.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetvault principal add NAME --role ROLE [--data DIR] [--policy FILE]\n"
               "       fleetvault principal revoke NAME [--data DIR]\n"
               "       fleetvault principal list [--data DIR]\n\n"
               "add prints the new principal's API token once (keep it: only its hash is\n"
               "stored). A role that reaches personal data waits for a second principal's\n"
               "approval (a privacy officer: POST /api/v1/principals/NAME/approve); the\n"
               "installation's first privacy officer is active at once. Every change is audited\n"
               "(by the server: at once if it runs, else at its next start). Roles come from\n"
               "the access policy (the built-in one, or --policy FILE: the server's). Names:\n"
               "1-64 of a-z 0-9 . _ -. Data directory: ./data.\n");
}

static int print_one(void *arg, const struct fv_principal *p)
{
    (void)arg;
    printf("%-24s %-16s created %lld%s%s%s%s%s\n", p->name, p->role, (long long)p->created_ms,
           p->created_by[0] ? " by " : "", p->created_by, p->approved_by[0] ? ", approved by " : "",
           p->approved_by,
           p->revoked_ms         ? "  REVOKED"
           : p->approved_ms == 0 ? "  PENDING APPROVAL"
                                 : "");
    return 0;
}

int fv_cmd_principal(int argc, char **argv)
{
    const char *data = "./data", *policy_file = NULL, *role = NULL, *name = NULL, *verb = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            data = argv[++i];
        } else if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc) {
            policy_file = argv[++i];
        } else if (strcmp(argv[i], "--role") == 0 && i + 1 < argc) {
            role = argv[++i];
        } else if (argv[i][0] == '-') {
            usage(stderr);
            return 2;
        } else if (verb == NULL) {
            verb = argv[i];
        } else if (name == NULL) {
            name = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    int add = verb && strcmp(verb, "add") == 0, revoke = verb && strcmp(verb, "revoke") == 0,
        list = verb && strcmp(verb, "list") == 0;
    if (!(add || revoke || list) || ((add || revoke) && name == NULL) || (add && role == NULL)) {
        usage(stderr);
        return 2;
    }
    char path[PATH_MAX], err[512] = "";
    snprintf(path, sizeof path, "%s/catalog.db", data);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "fleetvault principal: %s: %s (start the server once to create it)\n", path,
                db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return 1;
    }
    sqlite3_busy_timeout(db, 5000);
    struct fv_policy *pol = NULL;
    int rc = fv_principals_init(db, err, sizeof err);
    if (rc == FV_OK && add) rc = fv_policy_load(policy_file, &pol, err, sizeof err);
    const char *user = getenv("USER");
    char detail[128];
    struct fv_principal p;
    memset(&p, 0, sizeof p);
    if (rc == FV_OK && (add || revoke) && sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) {
        snprintf(err, sizeof err, "%s: %s", path, sqlite3_errmsg(db));
        rc = FV_EIO;
    }
    if (rc == FV_OK && add) {
        /* the change and its audit record commit together (principals.h) */
        char token[FV_TOKEN_HEX_LEN + 1];
        rc = fv_principal_create(db, pol, name, role, NULL, token, err, sizeof err);
        if (rc == FV_OK) rc = fv_principal_get(db, name, &p);
        snprintf(detail, sizeof detail, "cli, user %.40s, %s", user ? user : "?",
                 p.approved_ms ? "active" : "pending approval");
        if (rc == FV_OK)
            rc =
                fv_principal_event_add(db, "principal.create", name, role, detail, err, sizeof err);
        if (rc == FV_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) rc = FV_EIO;
        if (rc == FV_OK) printf("%s\n", token);
        if (rc == FV_OK && p.approved_ms == 0)
            fprintf(stderr,
                    "pending: %s (role %s) reaches personal data; its token works once a second "
                    "principal whose role approves (privacy-officer) approves it: POST "
                    "/api/v1/principals/%s/approve\n",
                    name, role, name);
    } else if (rc == FV_OK && revoke) {
        fv_principal_get(db, name, &p);
        rc = fv_principal_revoke(db, name, err, sizeof err);
        snprintf(detail, sizeof detail, "cli, user %.40s", user ? user : "?");
        if (rc == FV_OK)
            rc = fv_principal_event_add(db, "principal.revoke", name, p.role, detail, err,
                                        sizeof err);
        if (rc == FV_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) rc = FV_EIO;
        if (rc == FV_OK) fprintf(stderr, "revoked %s: its token no longer works\n", name);
    } else if (rc == FV_OK) {
        rc = fv_principal_list(db, print_one, NULL, err, sizeof err);
    }
    if (rc && (add || revoke)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    if (rc) fprintf(stderr, "fleetvault principal: %s\n", err[0] ? err : fv_strerror(rc));
    fv_policy_free(pol);
    sqlite3_close(db);
    return rc ? 1 : 0;
}
