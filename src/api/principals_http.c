/* principals_http.c - the principals endpoints of the API (api.h): list, create, approve,
 * revoke (privacy/principals.h A1, privacy/guard.h G13). A change and its audit entry commit
 * together: the catalog change runs in a transaction that is rolled back when its entry cannot
 * be written. Threading: the API thread (api.h). */
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

#include "api/api.h"
#include "privacy/guard.h"
#include "privacy/principals.h"
#include "util/err.h"
#include "util/urlquery.h"

static int principal_json(void *arg, const struct fv_principal *p)
{
    json_array_append_new(
        arg, json_pack("{s:s,s:s,s:s,s:I,s:I,s:b,s:s}", "name", p->name, "role", p->role,
                       "created_by", p->created_by, "created_ms", (json_int_t)p->created_ms,
                       "revoked_ms", (json_int_t)p->revoked_ms, "pending",
                       p->approved_ms == 0 && p->revoked_ms == 0, "approved_by", p->approved_by));
    return 0;
}

/* G13: a principal change and its audit entry commit together, or neither does. */
static int change_begin(const struct fv_api_view *v)
{
    return sqlite3_exec(v->guard->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? FV_OK
                                                                                        : FV_EIO;
}

static int change_end(const struct fv_api_view *v, int rc, struct fv_guard_ctx *ctx,
                      const char *action, const char *reason, const char *name, const char *role,
                      const char *detail)
{
    int arc = fv_guard_audit_principal(v->guard, ctx, action, rc == FV_OK ? "allow" : "deny",
                                       reason, name, role, detail);
    int commit = rc == FV_OK && arc == FV_OK;
    sqlite3_exec(v->guard->db, commit ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
    return arc;
}

/* POST /api/v1/principals/{name}/approve (A1): by a principal whose role approves, never the
 * creator; audited with name and role. */
void fv_api_principal_approve(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                              const char *name, struct fv_http_response *out)
{
    char err[300] = "", detail[160] = "";
    fv_guard_principal_events(v->guard); /* a CLI creation is logged before its approval */
    struct fv_principal p;
    int rc = change_begin(v);
    if (rc == FV_OK && fv_principal_get(v->guard->db, name, &p) == FV_OK)
        snprintf(detail, sizeof detail, "created by %s", p.created_by[0] ? p.created_by : "cli");
    else
        memset(&p, 0, sizeof p);
    if (rc == FV_OK)
        rc = fv_principal_approve(v->guard->db, v->guard->policy, name, ctx->principal, ctx->role,
                                  err, sizeof err);
    else
        snprintf(err, sizeof err, "the catalog is busy");
    if (change_end(v, rc, ctx, "principal.approve", rc ? err : "approved", name, p.role, detail)) {
        fv_api_respond_error(out, 503, "the audit log cannot be written; nothing changed");
        return;
    }
    if (rc) {
        fv_api_respond_error(out,
                             rc == FV_ENOENT   ? 404
                             : rc == FV_ESTATE ? 409
                             : rc == FV_EINVAL ? 403
                                               : 500,
                             err);
        return;
    }
    fv_api_respond_json(
        out, 200,
        json_pack("{s:s,s:s,s:s}", "name", name, "role", p.role, "approved_by", ctx->principal));
}

/* Principals through the API (admin actions, audited with name and role, G13): GET lists,
 * POST ?name=N&role=R creates (the token is in the answer, once; a role that reaches personal
 * data waits for approval), POST /{name}/revoke revokes. */
void fv_api_principals(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                       const char *revoke, struct fv_http_response *out)
{
    char why[400], err[300] = "";
    int post = strcmp(method, "POST") == 0;
    const char *act = revoke ? "principal.revoke" : post ? "principal.create" : "principal.list";
    int rc = fv_guard_admin(v->guard, ctx, act, why, sizeof why);
    if (rc) {
        fv_api_respond_error(out, rc == FV_EIO ? 503 : 403, why);
        return;
    }
    if (!post) {
        json_t *arr = json_array();
        rc = fv_principal_list(v->guard->db, principal_json, arr, err, sizeof err);
        if (rc) {
            json_decref(arr);
            fv_api_respond_error(out, 500, err);
        } else {
            fv_api_respond_json(out, 200, json_pack("{s:o}", "principals", arr));
        }
        return;
    }
    char name[80] = "", role[40] = "", token[FV_TOKEN_HEX_LEN + 1] = "";
    struct fv_principal p;
    memset(&p, 0, sizeof p);
    if (revoke) snprintf(name, sizeof name, "%s", revoke);
    fv_query_param(v->query, "name", name, sizeof name);
    fv_query_param(v->query, "role", role, sizeof role);
    rc = change_begin(v);
    if (rc == FV_OK && revoke) {
        if (fv_principal_get(v->guard->db, revoke, &p) == FV_OK)
            snprintf(role, sizeof role, "%s", p.role);
        rc = fv_principal_revoke(v->guard->db, revoke, err, sizeof err);
    } else if (rc == FV_OK) {
        rc = fv_principal_create(v->guard->db, v->guard->policy, name, role, ctx->principal, token,
                                 err, sizeof err);
        if (rc == FV_OK) rc = fv_principal_get(v->guard->db, name, &p);
    } else {
        snprintf(err, sizeof err, "the catalog is busy");
    }
    int pending = !revoke && rc == FV_OK && p.approved_ms == 0;
    if (change_end(v, rc, ctx, act,
                   rc        ? err
                   : pending ? "pending approval"
                             : "done",
                   name, role, pending ? "waits for a second principal's approval" : NULL)) {
        OPENSSL_cleanse(token, sizeof token);
        fv_api_respond_error(out, 503, "the audit log cannot be written; nothing changed");
        return;
    }
    if (rc) {
        OPENSSL_cleanse(token, sizeof token);
        fv_api_respond_error(out,
                             rc == FV_ENOENT   ? 404
                             : rc == FV_ESTATE ? 409
                             : rc == FV_EEXIST ? 409
                             : rc == FV_EINVAL ? 400
                                               : 500,
                             err);
        return;
    }
    if (revoke) {
        fv_api_respond_json(out, 200, json_pack("{s:s,s:b}", "name", revoke, "revoked", 1));
        return;
    }
    fv_api_respond_json(out, pending ? 202 : 201,
                        json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", name, "role", role, "token",
                                  token, "status", pending ? "pending" : "active", "note",
                                  pending
                                      ? "shown once: only its hash is stored; it works once a "
                                        "second principal whose role approves (privacy-officer) "
                                        "approves: POST /api/v1/principals/NAME/approve"
                                      : "shown once: only its hash is stored"));
    OPENSSL_cleanse(token, sizeof token);
}
