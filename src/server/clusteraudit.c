/* clusteraudit.c - an audit search across a cluster (clusteraudit.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server/clusteraudit.h"
#include "util/err.h"

int fv_clusteraudit_tag(struct fv_buf *body, const char *node)
{
    json_t *j = json_loadb((const char *)body->data, body->len, 0, NULL);
    json_t *entries = json_object_get(j, "entries");
    if (!json_is_array(entries)) {
        json_decref(j);
        return FV_EINVAL;
    }
    int rc = FV_OK;
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        if (!json_is_object(e) || json_object_set_new(e, "node", json_string(node)) != 0) {
            rc = json_is_object(e) ? FV_ENOMEM : FV_EINVAL;
            break;
        }
    }
    json_t *nodes = json_array();
    if (rc == FV_OK && (nodes == NULL || json_array_append_new(nodes, json_string(node)) != 0 ||
                        json_object_set(j, "nodes", nodes) != 0))
        rc = FV_ENOMEM;
    json_decref(nodes);
    char *s = rc == FV_OK ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (rc == FV_OK && s == NULL) rc = FV_ENOMEM;
    if (rc == FV_OK) {
        fv_buf_reset(body);
        rc = fv_buf_append(body, s, strlen(s));
        if (rc == FV_OK) rc = fv_buf_append(body, "\n", 1);
    }
    free(s);
    return rc;
}

struct row {
    json_t *e;
    json_int_t ts, seq;
    const char *node;
};

static int cmp_row(const void *pa, const void *pb)
{
    const struct row *a = pa, *b = pb;
    if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
    int c = strcmp(a->node, b->node);
    if (c) return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Adds one tagged answer's entries, node and matched count to the join; 1 if its node was
 * joined already (skipped), 0 added, -1 malformed. */
static int add_answer(json_t *a, json_t *all, json_t *nodes, json_int_t *matched)
{
    json_t *entries = json_object_get(a, "entries"), *names = json_object_get(a, "nodes");
    json_t *m = json_object_get(a, "matched");
    const char *node = json_string_value(json_array_get(names, 0));
    if (!json_is_array(entries) || node == NULL || !json_is_integer(m)) return -1;
    size_t i;
    json_t *x;
    json_array_foreach(nodes, i, x) if (strcmp(json_string_value(x), node) == 0) return 1;
    if (json_array_append_new(nodes, json_string(node)) != 0 || json_array_extend(all, entries))
        return -1;
    *matched += json_integer_value(m);
    return 0;
}

void fv_clusteraudit_join(const struct fv_buf *own, const struct fv_jsq_answer *ans, uint32_t n,
                          long limit, struct fv_http_response *out)
{
    json_t *all = json_array(), *nodes = json_array();
    json_int_t matched = 0;
    struct row *rows = NULL;
    char msg[160];
    json_t *a = json_loadb((const char *)own->data, own->len, 0, NULL);
    int rc = all && nodes ? add_answer(a, all, nodes, &matched) : -1;
    json_decref(a);
    if (rc < 0) {
        fv_api_respond_error(out, 500, "the api node's own audit search failed");
        goto done;
    }
    for (uint32_t s = 0; s < n; s++) {
        if (ans[s].rc != FV_OK || ans[s].status != 200) continue;
        a = json_loadb((const char *)ans[s].body.data, ans[s].body.len, 0, NULL);
        rc = add_answer(a, all, nodes, &matched);
        json_decref(a);
        if (rc < 0) {
            snprintf(msg, sizeof msg, "shard %u: its owner's audit search answer is malformed", s);
            fv_api_respond_error(out, 502, msg);
            goto done;
        }
    }
    size_t total = json_array_size(all);
    rows = calloc(total ? total : 1, sizeof *rows);
    if (rows == NULL) {
        fv_api_respond_error(out, 500, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < total; i++) {
        json_t *e = json_array_get(all, i);
        rows[i] = (struct row){e, json_integer_value(json_object_get(e, "ts")),
                               json_integer_value(json_object_get(e, "seq")),
                               json_string_value(json_object_get(e, "node"))};
        if (rows[i].node == NULL) rows[i].node = "";
    }
    qsort(rows, total, sizeof *rows, cmp_row);
    size_t first = limit > 0 && total > (size_t)limit ? total - (size_t)limit : 0;
    json_t *kept = json_array();
    for (size_t i = first; kept && i < total; i++)
        if (json_array_append(kept, rows[i].e) != 0) {
            json_decref(kept);
            kept = NULL;
        }
    json_t *answer = kept ? json_pack("{s:o,s:I,s:I,s:b,s:O}", "entries", kept, "count",
                                      (json_int_t)(total - first), "matched", matched, "truncated",
                                      matched > (json_int_t)(total - first), "nodes", nodes)
                          : NULL;
    if (answer == NULL)
        fv_api_respond_error(out, 500, "out of memory");
    else
        fv_api_respond_json(out, 200, answer);
done:
    free(rows);
    json_decref(all);
    json_decref(nodes);
}
