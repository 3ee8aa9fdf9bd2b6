/* stats_hist.c - the server's own counters over time (stats_hist.h). */
#include <stdlib.h>

#include <jansson.h>

#include "api/api.h"
#include "api/stats_hist.h"
#include "util/urlquery.h"

void fv_stats_hist_tick(struct fv_stats_hist *h, const struct fv_metrics *m,
                        const struct fv_fleet *fleet, uint64_t now_ms)
{
    if (h->n && now_ms - h->last_ms < FV_STATS_INTERVAL_MS) return;
    struct fv_stats_sample *s = &h->s[h->next];
    s->t_ms = now_ms;
    s->connections = m->connections_open;
    s->devices = fv_fleet_count(fleet);
    s->messages = m->messages_total;
    s->records = 0;
    for (int i = 0; i < FV_TOPIC_SLOTS; i++)
        s->records += m->records_stored[i];
    s->datums = m->datums_stored;
    s->acks = m->acks_sent;
    s->errors = m->errors_sent;
    s->rejected = 0;
    for (int i = 0; i < FV_REJ_COUNT; i++)
        s->rejected += m->rejected[i];
    s->duplicates = m->duplicates;
    h->last_ms = now_ms;
    h->next = (h->next + 1) % FV_STATS_SAMPLES;
    if (h->n < FV_STATS_SAMPLES) h->n++;
}

json_t *fv_stats_hist_json(const struct fv_stats_hist *h, uint64_t since_ms)
{
    json_t *arr = json_array();
    json_t *root =
        json_pack("{s:I,s:o}", "interval_ms", (json_int_t)FV_STATS_INTERVAL_MS, "samples", arr);
    if (root == NULL) return NULL;
    size_t first = (h->next + FV_STATS_SAMPLES - h->n) % FV_STATS_SAMPLES;
    for (size_t i = 0; i < h->n; i++) {
        const struct fv_stats_sample *s = &h->s[(first + i) % FV_STATS_SAMPLES];
        if (s->t_ms <= since_ms) continue;
        json_t *o = json_pack(
            "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "t", (json_int_t)s->t_ms, "connections",
            (json_int_t)s->connections, "devices", (json_int_t)s->devices, "messages",
            (json_int_t)s->messages, "records", (json_int_t)s->records, "datums",
            (json_int_t)s->datums, "acks", (json_int_t)s->acks, "errors", (json_int_t)s->errors,
            "rejected", (json_int_t)s->rejected, "duplicates", (json_int_t)s->duplicates);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(root);
            return NULL;
        }
    }
    return root;
}

void fv_api_stats_history(const struct fv_api_view *v, struct fv_http_response *out)
{
    char since[24] = "";
    fv_query_param(v->query, "since", since, sizeof since);
    json_t *j = v->stats ? fv_stats_hist_json(v->stats, strtoull(since, NULL, 10)) : NULL;
    if (j == NULL)
        fv_api_respond_error(out, v->stats ? 500 : 404, "no counter history");
    else
        fv_api_respond_json(out, 200, j);
}
