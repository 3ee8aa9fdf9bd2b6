/* ven_state.c - the VEN's saved state per VTN, DATA/openadr/NAME.json: registration, VEN id,
 * report requests (ven_int.h). Threads: the VEN's thread, and fv_ven_open before it starts. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "openadr/ven_int.h"
#include "os/fsio.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

/* ---- saved state: DATA/openadr/NAME.json ---------------------------------------------------- */

json_t *fv_ven__state_json(const struct vtn *t)
{
    json_t *evs = json_array(), *opts = json_array();
    for (size_t i = 0; evs && i < t->nev; i++) {
        const struct vev *e = &t->ev[i];
        json_array_append_new(
            evs, json_pack("{s:s,s:I,s:s,s:s,s:b,s:b,s:s,s:s,s:I,s:I,s:I,s:f,s:b,s:I,s:I,s:s}",
                           "id", e->id, "mod", (json_int_t)e->mod, "market_context", e->mc, "state",
                           e->state, "test", e->test, "opt_in", e->opt_in, "reason", e->reason,
                           "vpp_event", e->vpp_id, "start_ms", (json_int_t)e->start_ms, "end_ms",
                           (json_int_t)e->end_ms, "received_ms", (json_int_t)e->received_ms,
                           "target_kw", e->target_kw, "max", e->max, "ramp_up_ms",
                           (json_int_t)e->rampup_ms, "recovery_ms", (json_int_t)e->recovery_ms,
                           "capacity_from", e->capacity_from));
    }
    for (size_t i = 0; opts && i < t->nopt; i++) {
        const struct vopt *o = &t->opt[i];
        json_array_append_new(
            opts, json_pack("{s:s,s:b,s:I,s:I,s:s,s:s,s:i,s:s}", "id", o->id, "opt_in", o->opt_in,
                            "start_ms", (json_int_t)o->start_ms, "end_ms", (json_int_t)o->end_ms,
                            "reason", o->reason, "market_context", o->mc, "state", o->state, "last",
                            o->last));
    }
    json_t *reps = json_array(); /* the VTN's report requests (their samples are not kept) */
    for (size_t i = 0; reps && i < t->nrep; i++) {
        const struct vrep *r = &t->rep[i];
        json_array_append_new(reps,
                              json_pack("{s:s,s:s,s:i,s:I,s:I,s:I,s:I,s:b,s:I}", "request_id",
                                        r->request_id, "specifier_id", r->specifier_id, "rids",
                                        r->rids, "granularity_ms", (json_int_t)r->granularity_ms,
                                        "report_back_ms", (json_int_t)r->report_back_ms, "start_ms",
                                        (json_int_t)r->start_ms, "end_ms", (json_int_t)r->end_ms,
                                        "history", r->history, "sent", (json_int_t)r->sent));
    }
    return json_pack("{s:s,s:s,s:s,s:I,s:o,s:o,s:o}", "ven_id", t->ven_id, "registration_id",
                     t->registration_id, "vtn_id", t->vtn_id, "poll_ms", (json_int_t)t->poll_ms,
                     "events", evs ? evs : json_array(), "opts", opts ? opts : json_array(),
                     "report_requests", reps ? reps : json_array());
}

static void str_of(json_t *o, const char *k, char *out, size_t cap)
{
    const char *s = json_string_value(json_object_get(o, k));
    snprintf(out, cap, "%s", s ? s : "");
}

int fv_ven__load_state(struct fv_ven *v, struct vtn *t, char *err, size_t errlen)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.json", v->dir, t->cfg->name);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (j == NULL) {
        if (access(path, F_OK) != 0) return FV_OK; /* never registered */
        fv_seterr(err, errlen, "%s: %s", path, je.text);
        return FV_ECORRUPT;
    }
    str_of(j, "ven_id", t->ven_id, sizeof t->ven_id);
    str_of(j, "registration_id", t->registration_id, sizeof t->registration_id);
    str_of(j, "vtn_id", t->vtn_id, sizeof t->vtn_id);
    t->registered = t->registration_id[0] && t->ven_id[0];
    json_int_t p = json_integer_value(json_object_get(j, "poll_ms"));
    t->poll_ms = p >= 1000 && p <= 86400000 ? p : VEN_POLL_MS;
    json_t *evs = json_object_get(j, "events"), *e;
    size_t i;
    int rc = FV_OK;
    json_array_foreach(evs, i, e)
    {
        struct vev *q = realloc(t->ev, (t->nev + 1) * sizeof *q);
        if (q == NULL) {
            rc = FV_ENOMEM;
            break;
        }
        t->ev = q;
        struct vev *k = &q[t->nev++];
        memset(k, 0, sizeof *k);
        str_of(e, "id", k->id, sizeof k->id);
        k->mod = (uint32_t)json_integer_value(json_object_get(e, "mod"));
        str_of(e, "market_context", k->mc, sizeof k->mc);
        str_of(e, "state", k->state, sizeof k->state);
        k->test = json_is_true(json_object_get(e, "test"));
        k->opt_in = json_is_true(json_object_get(e, "opt_in"));
        str_of(e, "reason", k->reason, sizeof k->reason);
        str_of(e, "vpp_event", k->vpp_id, sizeof k->vpp_id);
        k->start_ms = json_integer_value(json_object_get(e, "start_ms"));
        k->end_ms = json_integer_value(json_object_get(e, "end_ms"));
        k->received_ms = json_integer_value(json_object_get(e, "received_ms"));
        k->target_kw = json_number_value(json_object_get(e, "target_kw"));
        k->max = json_is_true(json_object_get(e, "max"));
        k->rampup_ms = json_integer_value(json_object_get(e, "ramp_up_ms"));
        k->recovery_ms = json_integer_value(json_object_get(e, "recovery_ms"));
        str_of(e, "capacity_from", k->capacity_from, sizeof k->capacity_from);
    }
    json_t *opts = json_object_get(j, "opts");
    json_array_foreach(opts, i, e)
    {
        struct vopt *q = rc ? NULL : realloc(t->opt, (t->nopt + 1) * sizeof *q);
        if (q == NULL) {
            rc = FV_ENOMEM;
            break;
        }
        t->opt = q;
        struct vopt *o = &q[t->nopt++];
        memset(o, 0, sizeof *o);
        str_of(e, "id", o->id, sizeof o->id);
        o->opt_in = json_is_true(json_object_get(e, "opt_in"));
        o->start_ms = json_integer_value(json_object_get(e, "start_ms"));
        o->end_ms = json_integer_value(json_object_get(e, "end_ms"));
        str_of(e, "reason", o->reason, sizeof o->reason);
        str_of(e, "market_context", o->mc, sizeof o->mc);
        o->state = (int)json_integer_value(json_object_get(e, "state"));
        str_of(e, "last", o->last, sizeof o->last);
    }
    /* Report requests resume (N6): sampling from now, the first update one period on. */
    json_t *reps = json_object_get(j, "report_requests");
    int64_t now = (int64_t)fv_now_ms();
    json_array_foreach(reps, i, e)
    {
        struct vrep *q = rc ? NULL : realloc(t->rep, (t->nrep + 1) * sizeof *q);
        if (q == NULL) {
            rc = FV_ENOMEM;
            break;
        }
        t->rep = q;
        struct vrep *r = &q[t->nrep];
        memset(r, 0, sizeof *r);
        str_of(e, "request_id", r->request_id, sizeof r->request_id);
        str_of(e, "specifier_id", r->specifier_id, sizeof r->specifier_id);
        r->rids = (int)json_integer_value(json_object_get(e, "rids"));
        r->granularity_ms = json_integer_value(json_object_get(e, "granularity_ms"));
        r->report_back_ms = json_integer_value(json_object_get(e, "report_back_ms"));
        r->start_ms = json_integer_value(json_object_get(e, "start_ms"));
        r->end_ms = json_integer_value(json_object_get(e, "end_ms"));
        r->history = json_is_true(json_object_get(e, "history"));
        r->sent = (unsigned)json_integer_value(json_object_get(e, "sent"));
        if (!r->request_id[0] || r->granularity_ms < 1000 || r->report_back_ms < 1000 ||
            (r->end_ms && !r->history && r->end_ms <= now))
            continue; /* malformed, or over while we were down */
        r->next_sample_ms = r->history ? INT64_MAX : r->start_ms > now ? r->start_ms : now;
        r->next_send_ms = r->history ? now : r->next_sample_ms + r->report_back_ms;
        t->nrep++;
    }
    json_decref(j);
    return rc;
}

/* Writes a VTN's state if it changed; mu is released during the write (the text is a copy). */
void fv_ven__save_state(struct fv_ven *v, struct vtn *t)
{
    if (!t->dirty) return;
    json_t *j = fv_ven__state_json(t);
    char *text = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
    json_decref(j);
    if (text == NULL) return;
    t->dirty = 0;
    char path[1200], err[256];
    snprintf(path, sizeof path, "%s/%s.json", v->dir, t->cfg->name);
    pthread_mutex_unlock(&v->mu);
    int rc = fv_os_write_file_atomic(path, text, strlen(text), 0600, err, sizeof err);
    pthread_mutex_lock(&v->mu);
    if (rc != FV_OK) {
        fv_warn("openadr: cannot save %s: %s", path, err);
        t->dirty = 1;
    }
    free(text);
}
