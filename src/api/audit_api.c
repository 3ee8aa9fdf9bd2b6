/*
 * audit_api.c - the access log searched over HTTP, for the console's privacy page (api.h):
 *
 *   GET /api/v1/audit?ticket=T[&principal=P][&subject=S][&kind=K][&action=A][&result=R]
 *                    [&from=T][&to=T][&limit=N]
 *       the newest N (default 100, at most 1000) entries matching every filter given
 *       (privacy/audit.h fv_audit_filter: exact matches; subject: an element of
 *       "subjects"; times inclusive), oldest first: {"entries": [...], "count": N,
 *       "matched": M, "truncated": bool}.
 *
 * A1 decided like `fleetvault audit query` is meant to be used: a role with the audit action
 *    (privacy-officer) and, for human roles, a ticket; the search itself is audited
 *    (action audit.query, the subject filter as its subject) before anything is read.
 * A2 reads the log's files on the API thread like a subject export does (api/export.c): a
 *    search is an officer's occasional request; at most FV_AUDIT_API_MAX entries are held.
 *
 * Threading: the API thread.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/api.h"
#include "api/query.h"
#include "privacy/audit.h"
#include "privacy/guard.h"
#include "util/err.h"
#include "util/urlquery.h"

#define FV_AUDIT_API_MAX 1000

struct newest {
    char **lines; /* a ring of the newest cap lines */
    size_t cap, next, n;
    uint64_t matched;
    int oom;
};

static int keep_line(void *arg, const char *line, size_t len)
{
    struct newest *k = arg;
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        k->oom = 1;
        return FV_ENOMEM;
    }
    memcpy(copy, line, len);
    copy[len] = '\0';
    free(k->lines[k->next]);
    k->lines[k->next] = copy;
    k->next = (k->next + 1) % k->cap;
    if (k->n < k->cap) k->n++;
    k->matched++;
    return 0;
}

void fv_api_audit_search(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                         struct fv_http_response *out)
{
    char principal[96] = "", subject[96] = "", kind[32] = "", action[64] = "", result[16] = "",
         from_s[64] = "", to_s[64] = "", limit_s[16] = "", why[400];
    fv_query_param(v->query, "principal", principal, sizeof principal);
    fv_query_param(v->query, "subject", subject, sizeof subject);
    int rc = fv_guard_subject_action(v->guard, ctx, v->query, FV_ACTION_AUDIT, "audit.query",
                                     subject, why, sizeof why); /* A1 */
    if (rc) {
        fv_api_respond_error(out, rc == FV_EIO ? 503 : 403, why);
        return;
    }
    fv_query_param(v->query, "kind", kind, sizeof kind);
    fv_query_param(v->query, "action", action, sizeof action);
    fv_query_param(v->query, "result", result, sizeof result);
    int64_t from = 0, to = 0;
    long limit = 100;
    if ((fv_query_param(v->query, "from", from_s, sizeof from_s) && from_s[0] &&
         fv_parse_time_ms(from_s, &from)) ||
        (fv_query_param(v->query, "to", to_s, sizeof to_s) && to_s[0] &&
         fv_parse_time_ms(to_s, &to)) ||
        (fv_query_param(v->query, "limit", limit_s, sizeof limit_s) && limit_s[0] &&
         ((limit = strtol(limit_s, NULL, 10)) < 1 || limit > FV_AUDIT_API_MAX))) {
        fv_api_respond_error(out, 400,
                             "from and to: epoch ms or RFC 3339; limit: 1 to 1000 entries");
        return;
    }
    struct fv_audit_filter f = {.principal = principal[0] ? principal : NULL,
                                .subject = subject[0] ? subject : NULL,
                                .kind = kind[0] ? kind : NULL,
                                .action = action[0] ? action : NULL,
                                .result = result[0] ? result : NULL,
                                .from_ms = from,
                                .to_ms = to};
    struct newest k = {.cap = (size_t)limit};
    k.lines = calloc(k.cap, sizeof *k.lines);
    if (k.lines == NULL) {
        fv_api_respond_error(out, 500, "out of memory");
        return;
    }
    char err[300] = "";
    rc =
        v->audit_dir ? fv_audit_query(v->audit_dir, &f, keep_line, &k, err, sizeof err) : FV_ENOENT;
    json_t *arr = rc == FV_OK ? json_array() : NULL;
    size_t first = (k.next + k.cap - k.n) % k.cap;
    for (size_t i = 0; arr && i < k.n; i++) {
        json_t *e = json_loads(k.lines[(first + i) % k.cap], 0, NULL);
        if (e == NULL || json_array_append_new(arr, e) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    for (size_t i = 0; i < k.cap; i++)
        free(k.lines[i]);
    free(k.lines);
    if (arr == NULL) {
        fv_api_respond_error(out, 500,
                             rc == FV_OK || k.oom ? "out of memory"
                             : err[0]             ? err
                                                  : "the audit log cannot be read");
        return;
    }
    fv_api_respond_json(out, 200,
                        json_pack("{s:o,s:I,s:I,s:b}", "entries", arr, "count",
                                  (json_int_t)json_array_size(arr), "matched",
                                  (json_int_t)k.matched, "truncated", k.matched > k.n));
}
