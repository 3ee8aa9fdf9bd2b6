/*
 * openadr_api.c - the OpenADR VEN's endpoints (api.h; openadr/ven.h does the work), under
 * the VPP's prefix:
 *
 *   GET  /api/v1/vpp/openadr                    the VEN: each VTN's registration, reachability,
 *                                               failures, events and answers, reports, opts
 *   POST /api/v1/vpp/openadr/opts  JSON {"start", "end", "opt": "out" | "in", "reason",
 *                                  "market_context", "vtn"}   an opt schedule (oadrCreateOpt)
 *                                               201 {"id"}, or 422 with the reason
 *   POST /api/v1/vpp/openadr/opts/ID/cancel     oadrCancelOpt
 *
 * Decided and audited like every VPP call (the guard, purpose energy_programs); the answers
 * hold fleet-level facts only (no site, no owner). Times: epoch ms or RFC 3339.
 *
 * Threading: the API thread.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "api/api.h"
#include "api/query.h"
#include "openadr/ven.h"
#include "privacy/guard.h"
#include "util/err.h"
#include "util/urlquery.h"

static void error(struct fv_http_response *out, int status, const char *msg)
{
    fv_api_respond_json(out, status, json_pack("{s:s}", "error", msg));
}

static const char *member(const json_t *b, const char *key)
{
    return json_string_value(json_object_get(b, key));
}

static int when(const json_t *b, const char *key, int64_t *ms)
{
    const json_t *x = json_object_get(b, key);
    if (json_is_integer(x)) {
        *ms = json_integer_value(x);
        return 0;
    }
    return json_is_string(x) ? fv_parse_time_ms(json_string_value(x), ms) : -1;
}

/* The schedule's parameters: the JSON body, or (none) the query string's. */
static json_t *opt_params(const struct fv_api_view *v)
{
    json_error_t je;
    if (v->body && v->body_len) return json_loadb(v->body, v->body_len, 0, &je);
    json_t *b = json_object();
    static const char *const keys[] = {"start", "end", "opt", "reason", "market_context", "vtn"};
    for (size_t i = 0; b && i < sizeof keys / sizeof keys[0]; i++) {
        char val[300];
        if (fv_query_param(v->query, keys[i], val, sizeof val))
            json_object_set_new(b, keys[i], json_string(val));
    }
    return b;
}

static void create_opt(const struct fv_api_view *v, struct fv_http_response *out)
{
    json_t *b = opt_params(v);
    int64_t start, end;
    const char *opt = member(b, "opt");
    if (!json_is_object(b) || when(b, "start", &start) || when(b, "end", &end)) {
        error(out, 422, "give a JSON body with start and end (epoch ms or RFC 3339)");
    } else if (opt && strcmp(opt, "out") != 0 && strcmp(opt, "in") != 0) {
        error(out, 422, "opt: \"out\" (unavailable, the default) or \"in\"");
    } else {
        char id[64], err[200] = "";
        int rc = fv_ven_opt_create(v->ven, member(b, "vtn"), opt && strcmp(opt, "in") == 0, start,
                                   end, member(b, "reason"), member(b, "market_context"), id, err,
                                   sizeof err);
        if (rc == FV_OK)
            fv_api_respond_json(out, 201, json_pack("{s:s}", "id", id));
        else
            error(out, rc == FV_ENOMEM ? 500 : 422, err);
    }
    json_decref(b);
}

void fv_api_openadr(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                    const char *sub, struct fv_http_response *out)
{
    if (v->ven == NULL) {
        error(out, 404, "the OpenADR VEN is not configured (\"openadr\" in the config file)");
        return;
    }
    int post = strcmp(method, "POST") == 0;
    char id[65] = "";
    const char *action = NULL;
    size_t n = 0;
    if (sub[0] == '\0' && !post)
        action = "vpp.openadr.status";
    else if (strcmp(sub, "/opts") == 0 && post)
        action = "vpp.openadr.opt.create";
    else if (post && strncmp(sub, "/opts/", 6) == 0 && (n = strcspn(sub + 6, "/")) > 0 &&
             n < sizeof id && strcmp(sub + 6 + n, "/cancel") == 0) {
        memcpy(id, sub + 6, n);
        action = "vpp.openadr.opt.cancel";
    }
    if (action == NULL) {
        error(out, 404, "no such endpoint");
        return;
    }
    if (v->guard) {
        char why[400];
        ctx->energy_sites = 1;
        int rc = fv_guard_read(v->guard, ctx, v->query, action, fv_api_all_classes(v), NULL, 1, 1,
                               NULL, 0, INT64_MIN, INT64_MAX, why, sizeof why);
        if (rc) {
            error(out, rc == FV_EIO ? 503 : 403, why);
            return;
        }
    }
    if (strcmp(action, "vpp.openadr.status") == 0)
        fv_api_respond_json(out, 200, fv_ven_status_json(v->ven));
    else if (strcmp(action, "vpp.openadr.opt.create") == 0)
        create_opt(v, out);
    else if (fv_ven_opt_cancel(v->ven, id) == FV_OK)
        fv_api_respond_json(out, 200, json_pack("{s:s,s:s}", "id", id, "state", "cancelling"));
    else
        error(out, 404, "no such opt schedule (or cancelled already)");
    if (v->guard) fv_guard_done(v->guard, ctx, 1, out->body.len);
}
