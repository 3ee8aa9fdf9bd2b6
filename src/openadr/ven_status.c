/* ven_status.c - the VEN's status and metrics (N9): built by the VEN's thread after each turn
 * and before each request to a VTN (fv_ven__publish), read by the API thread as copies under
 * the short-held mutex, never waiting for the VEN's thread (ven.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openadr/ven_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

/* ---- status and metrics (N9) ------------------------------------------------------------------
 */

static const char *vtn_state(const struct vtn *t)
{
    return !t->reachable && t->fails ? "unreachable" : t->registered ? "registered" : "registering";
}

static json_t *status_build(struct fv_ven *v)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < v->nvtn; i++) {
        const struct vtn *t = &v->vtn[i];
        json_t *j = fv_ven__state_json(t);
        json_t *reps = json_array();
        for (size_t k = 0; reps && k < t->nrep; k++)
            json_array_append_new(
                reps, json_pack("{s:s,s:s,s:I,s:I,s:I}", "report_request_id", t->rep[k].request_id,
                                "specifier_id", t->rep[k].specifier_id, "granularity_ms",
                                (json_int_t)t->rep[k].granularity_ms, "report_back_ms",
                                (json_int_t)t->rep[k].report_back_ms, "sent",
                                (json_int_t)t->rep[k].sent));
        if (j) {
            json_object_set_new(j, "name", json_string(t->cfg->name));
            json_object_set_new(j, "url", json_string(t->cfg->url));
            json_object_set_new(j, "state", json_string(vtn_state(t)));
            json_object_set_new(j, "reachable", json_boolean(t->reachable));
            json_object_set_new(j, "poll_s", json_real((double)t->poll_ms / 1000));
            json_object_set_new(j, "failures", json_integer((json_int_t)t->failures));
            json_object_set_new(j, "consecutive_failures", json_integer(t->fails));
            json_object_set_new(j, "last_error", json_string(t->last_error));
            json_object_set_new(j, "last_poll_ms", json_integer(t->last_poll_ms));
            json_object_set_new(j, "last_ok_ms", json_integer(t->last_ok_ms));
            json_object_set_new(j, "next_attempt_ms", json_integer(t->next_ms));
            json_object_set_new(j, "reports", reps ? reps : json_array());
            json_array_append_new(arr, j);
        } else {
            json_decref(reps);
        }
    }
    json_t *j =
        json_pack("{s:s,s:o}", "ven_name", v->cfg->ven_name, "vtns", arr ? arr : json_array());
    if (j && v->cfg->push)
        json_object_set_new(
            j, "push",
            json_pack("{s:s,s:s,s:I,s:I}", "mode", "push", "address", v->cfg->push_address,
                      "received", (json_int_t)__atomic_load_n(&v->push_received, __ATOMIC_RELAXED),
                      "refused", (json_int_t)__atomic_load_n(&v->push_refused, __ATOMIC_RELAXED)));
    return j;
}

static const char metrics_help[] =
    "# HELP fleetvault_openadr_vtn_up 1 when the VTN answered the last exchange\n"
    "# TYPE fleetvault_openadr_vtn_up gauge\n"
    "# HELP fleetvault_openadr_registered 1 when registered with the VTN\n"
    "# TYPE fleetvault_openadr_registered gauge\n"
    "# TYPE fleetvault_openadr_polls_total counter\n"
    "# TYPE fleetvault_openadr_failures_total counter\n"
    "# TYPE fleetvault_openadr_messages_sent_total counter\n"
    "# TYPE fleetvault_openadr_messages_received_total counter\n"
    "# TYPE fleetvault_openadr_messages_invalid_total counter\n"
    "# TYPE fleetvault_openadr_events_total counter\n"
    "# TYPE fleetvault_openadr_reports_total counter\n"
    "# HELP fleetvault_openadr_retry_seconds seconds until the next attempt after failures\n"
    "# TYPE fleetvault_openadr_retry_seconds gauge\n"
    "# HELP fleetvault_openadr_push_received_total POSTs the push listener handed to the VEN\n"
    "# TYPE fleetvault_openadr_push_received_total counter\n"
    "# HELP fleetvault_openadr_push_refused_total VTN client certificates the push listener "
    "refused\n"
    "# TYPE fleetvault_openadr_push_refused_total counter\n";

static int metrics_build(struct fv_ven *v, struct fv_buf *out)
{
    int rc = FV_OK;
    int64_t now = (int64_t)fv_now_ms();
    for (size_t i = 0; rc == FV_OK && i < v->nvtn; i++) {
        const struct vtn *t = &v->vtn[i];
        char line[1600];
        const char *n = t->cfg->name;
        int len = snprintf(line, sizeof line,
                           "fleetvault_openadr_vtn_up{vtn=\"%s\"} %d\n"
                           "fleetvault_openadr_registered{vtn=\"%s\"} %d\n"
                           "fleetvault_openadr_polls_total{vtn=\"%s\"} %" PRIu64 "\n"
                           "fleetvault_openadr_failures_total{vtn=\"%s\"} %" PRIu64 "\n"
                           "fleetvault_openadr_messages_sent_total{vtn=\"%s\"} %" PRIu64 "\n"
                           "fleetvault_openadr_messages_received_total{vtn=\"%s\"} %" PRIu64 "\n"
                           "fleetvault_openadr_messages_invalid_total{vtn=\"%s\"} %" PRIu64 "\n"
                           "fleetvault_openadr_events_total{vtn=\"%s\"} %" PRIu64 "\n"
                           "fleetvault_openadr_reports_total{vtn=\"%s\"} %" PRIu64 "\n"
                           "fleetvault_openadr_retry_seconds{vtn=\"%s\"} %.1f\n",
                           n, t->reachable, n, t->registered, n, t->polls, n, t->failures, n,
                           t->sent, n, t->received, n, t->invalid, n, t->events, n, t->reports, n,
                           t->fails && t->next_ms > now ? (double)(t->next_ms - now) / 1000 : 0.0);
        rc = len > 0 && (size_t)len < sizeof line ? fv_buf_append(out, line, (size_t)len) : FV_OK;
    }
    if (rc == FV_OK && v->cfg->push)
        rc = fv_buf_appendf(out,
                            "fleetvault_openadr_push_received_total %" PRIu64 "\n"
                            "fleetvault_openadr_push_refused_total %" PRIu64 "\n",
                            __atomic_load_n(&v->push_received, __ATOMIC_RELAXED),
                            __atomic_load_n(&v->push_refused, __ATOMIC_RELAXED));
    return rc;
}

/* After each turn (the VEN's thread, mu held): what other threads read, and the opt ids. */
void fv_ven__publish(struct fv_ven *v)
{
    json_t *j = status_build(v);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    struct fv_buf m = {0};
    if (metrics_build(v, &m) != FV_OK) fv_buf_free(&m);
    size_t n = 0;
    for (size_t i = 0; i < v->nvtn; i++)
        n += v->vtn[i].nopt;
    char(*ids)[64] = calloc(n ? n : 1, sizeof *ids);
    size_t k = 0;
    for (size_t i = 0; ids && i < v->nvtn; i++)
        for (size_t x = 0; x < v->vtn[i].nopt; x++)
            if (v->vtn[i].opt[x].state != OPT_CANCELLED)
                snprintf(ids[k++], 64, "%s", v->vtn[i].opt[x].id);
    pthread_mutex_lock(&v->pub);
    if (text) {
        free(v->status_text);
        v->status_text = text;
        text = NULL;
    }
    if (m.data) {
        fv_buf_free(&v->metrics_text);
        v->metrics_text = m;
        m = (struct fv_buf){0};
    }
    if (ids) {
        free(v->opt_ids);
        v->opt_ids = ids;
        v->nopt_ids = k;
    }
    pthread_mutex_unlock(&v->pub);
    free(text);
    fv_buf_free(&m);
}

json_t *fv_ven_status_json(struct fv_ven *v)
{
    char *text = NULL;
    pthread_mutex_lock(&v->pub);
    if (v->status_text) text = strdup(v->status_text);
    pthread_mutex_unlock(&v->pub);
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    return j ? j : json_pack("{s:s,s:[]}", "ven_name", v->cfg->ven_name, "vtns");
}

int fv_ven_metrics(struct fv_ven *v, struct fv_buf *out)
{
    int rc = fv_buf_append(out, metrics_help, sizeof metrics_help - 1);
    pthread_mutex_lock(&v->pub);
    if (rc == FV_OK && v->metrics_text.len)
        rc = fv_buf_append(out, v->metrics_text.data, v->metrics_text.len);
    pthread_mutex_unlock(&v->pub);
    return rc;
}
