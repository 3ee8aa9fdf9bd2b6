/* ven_events.c - oadrDistributeEvent -> VPP events and the oadrCreatedEvent answer (ven.h
 * N2-N5, N7; shared state in ven_int.h). Runs on the VEN's thread with mu held. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "energy/vpp_ext.h"
#include "openadr/ven_int.h"
#include "util/err.h"
#include "util/log.h"

struct answer {
    const char *id;
    uint32_t mod;
    int code, opt_in;
    char desc[FV_OADR_TEXT_MAX];
};

static struct vev *find(struct vtn *t, const char *id)
{
    for (size_t i = 0; i < t->nev; i++)
        if (strcmp(t->ev[i].id, id) == 0) return &t->ev[i];
    return NULL;
}

/* A new event's record; past VEN_EVENTS the oldest record makes room. */
static struct vev *add(struct vtn *t, const char *id)
{
    if (t->nev >= VEN_EVENTS) {
        memmove(&t->ev[0], &t->ev[1], (t->nev - 1) * sizeof *t->ev);
        t->nev--;
    }
    struct vev *q = realloc(t->ev, (t->nev + 1) * sizeof *q);
    if (q == NULL) return NULL;
    t->ev = q;
    struct vev *k = &q[t->nev++];
    memset(k, 0, sizeof *k);
    snprintf(k->id, sizeof k->id, "%s", id);
    return k;
}

static void vpp_cancel(struct fv_ven *v, struct vev *k)
{
    if (k->vpp_id[0] && fv_vpp_event_cancel(v->vpp, k->vpp_id) == FV_OK)
        fv_info("openadr: event %s: VPP event %s cancelled", k->id, k->vpp_id);
}

static const struct fv_oadr_cfg_mc *market(const struct fv_oadr_cfg *c, const char *mc)
{
    for (size_t i = 0; i < c->nmcs; i++)
        if (strcmp(c->mcs[i].context, mc) == 0) return &c->mcs[i];
    return NULL;
}

/* The signal we act on: SIMPLE (level) first, else LOAD_DISPATCH (setpoint). */
static const struct fv_oadr_signal *signal_of(const struct fv_oadr_event *e, int *simple)
{
    for (size_t i = 0; i < e->nsig; i++)
        if (strcasecmp(e->sig[i].name, "SIMPLE") == 0) {
            *simple = 1;
            return &e->sig[i];
        }
    for (size_t i = 0; i < e->nsig; i++)
        if (strcmp(e->sig[i].name, "LOAD_DISPATCH") == 0 &&
            (strcmp(e->sig[i].type, "setpoint") == 0 ||
             strcmp(e->sig[i].type, "x-loadControlSetpoint") == 0)) {
            *simple = 0;
            return &e->sig[i];
        }
    return NULL;
}

/* The highest value of the signal's intervals (its current value when it has none). */
static double peak(const struct fv_oadr_signal *s)
{
    double x = s->has_current ? s->current : 0;
    for (size_t i = 0; i < s->niv; i++)
        if (i == 0 || s->iv[i].value > x) x = s->iv[i].value;
    return x;
}

/* kW of a LOAD_DISPATCH value by its itemBase (none: kW). */
static double to_kw(const struct fv_oadr_signal *s, double x)
{
    if (s->units[0] == '\0' || strcmp(s->units, "W") != 0) return x;
    return strcmp(s->scale, "k") == 0   ? x
           : strcmp(s->scale, "M") == 0 ? x * 1000
           : strcmp(s->scale, "G") == 0 ? x * 1e6
                                        : x / 1000;
}

/* An optOut schedule covering part of [start, end) for this market context (N7). */
static const struct vopt *opted_out(const struct vtn *t, const char *mc, int64_t start, int64_t end)
{
    for (size_t i = 0; i < t->nopt; i++) {
        const struct vopt *o = &t->opt[i];
        if (!o->opt_in && (o->state == OPT_SENT || o->state == OPT_TO_SEND) && o->start_ms < end &&
            start < o->end_ms && (o->mc[0] == '\0' || strcmp(o->mc, mc) == 0))
            return o;
    }
    return NULL;
}

static int targeted(const struct vtn *t, const struct fv_oadr_event *e)
{
    if (e->target.nven == 0) return 1;
    for (size_t i = 0; i < e->target.nven; i++)
        if (strcmp(e->target.ven_ids[i], t->ven_id) == 0) return 1;
    return 0;
}

/* SIMPLE: the program's capacity for the event's window: the VPP's forecast (typical solar
 * and load at that time of day, ven.h N11) when it offers one, else what the sites could
 * deliver from their latest samples. k->capacity_from says which. */
static double fleet_capacity(struct fv_ven *v, const char *program, struct vev *k)
{
    double kw = 0;
    char err[FV_OADR_TEXT_MAX];
    if (v->store.forecast && v->store.forecast(v->store.arg, program, k->start_ms, k->end_ms, &kw,
                                               err, sizeof err) == FV_OK) {
        snprintf(k->capacity_from, sizeof k->capacity_from, "forecast");
        return kw;
    }
    fv_vpp_capacity_now(v->vpp, program, k->start_ms, k->end_ms, &kw);
    snprintf(k->capacity_from, sizeof k->capacity_from, "latest");
    return kw;
}

/* N3/N4: maps a new or modified event to the VPP. FV_OK: optIn (k->reason says what was
 * done); otherwise optOut with k->reason, *code the response code. */
static int map_event(struct fv_ven *v, struct vtn *t, const struct fv_oadr_event *e, struct vev *k,
                     int *code)
{
    *code = FV_OADR_OK;
    k->reason[0] = '\0';
    k->capacity_from[0] = '\0';
    /* Active period: dispatch begins rampUp before dtstart, so the fleet delivers at dtstart;
     * the recovery period after the end is the sites' own (recorded, not dispatched). */
    k->rampup_ms = e->rampup_ms > 0 ? e->rampup_ms : 0;
    k->recovery_ms = e->recovery_ms > 0 ? e->recovery_ms : 0;
    k->start_ms = e->start_ms - k->rampup_ms;
    int64_t dur = e->dur_ms;
    int simple = 0;
    const struct fv_oadr_signal *s = signal_of(e, &simple);
    if (dur <= 0 && s)
        for (size_t i = 0; i < s->niv; i++)
            dur += s->iv[i].dur_ms;
    k->end_ms = e->start_ms + dur; /* dtstart + duration */
    const struct fv_oadr_cfg_mc *mc = market(v->cfg, e->market_context);
    const struct vopt *o = opted_out(t, e->market_context, k->start_ms, k->end_ms);
    int rc = FV_EINVAL;
    if (!targeted(t, e)) {
        *code = FV_OADR_TARGET_MISMATCH;
        snprintf(k->reason, sizeof k->reason, "the event's eiTarget does not name this VEN");
    } else if (mc == NULL) {
        snprintf(k->reason, sizeof k->reason, "market context %.200s is not configured",
                 e->market_context);
    } else if (s == NULL) {
        *code = FV_OADR_SIGNAL_NOT_SUPPORTED;
        snprintf(k->reason, sizeof k->reason,
                 "no SIMPLE level or LOAD_DISPATCH setpoint signal (supported: those two)");
    } else if (dur <= 0) {
        snprintf(k->reason, sizeof k->reason, "open-ended events are not supported");
    } else if (o) {
        snprintf(k->reason, sizeof k->reason, "opt schedule %s: unavailable (%s)", o->id,
                 o->reason);
    } else {
        rc = FV_OK;
    }
    if (rc) {
        vpp_cancel(v, k);
        k->vpp_id[0] = '\0';
        return rc;
    }
    double x = peak(s);
    k->max = 0;
    k->target_kw = 0;
    if (simple) {
        int level = x >= 3 ? 3 : x <= 0 ? 0 : (int)lround(x);
        double frac = mc->levels[level];
        if (frac >= 1.0) {
            k->max = 1;
        } else if (frac > 0) {
            double cap = fleet_capacity(v, mc->program, k);
            k->target_kw = round(frac * cap * 1000) / 1000;
            if (k->target_kw <= 0) {
                snprintf(k->reason, sizeof k->reason,
                         "the fleet has no deliverable capacity for the event's window");
                vpp_cancel(v, k);
                k->vpp_id[0] = '\0';
                return FV_EINVAL;
            }
        }
    } else {
        k->target_kw = to_kw(s, x);
    }
    if (e->test) { /* N4 */
        vpp_cancel(v, k);
        k->vpp_id[0] = '\0';
        snprintf(k->reason, sizeof k->reason, "test event: recorded, not dispatched");
        return FV_OK;
    }
    if (!k->max && !(k->target_kw > 0)) {
        vpp_cancel(v, k);
        k->vpp_id[0] = '\0';
        snprintf(k->reason, sizeof k->reason, "%s 0: no dispatch", simple ? "level" : "setpoint");
        return FV_OK;
    }
    if (k->vpp_id[0]) {
        rc = fv_vpp_event_update(v->vpp, k->vpp_id, k->start_ms, k->end_ms, k->target_kw, k->max,
                                 k->reason, sizeof k->reason);
        if (rc == FV_OK) return FV_OK;
        if (rc == FV_EINVAL) {
            vpp_cancel(v, k);
            k->vpp_id[0] = '\0';
            return rc;
        }
        k->vpp_id[0] = '\0'; /* over already: a new one */
    }
    rc = fv_vpp_event_create(v->vpp, mc->program, k->start_ms, k->end_ms, k->target_kw, k->max,
                             k->vpp_id, k->reason, sizeof k->reason);
    if (rc != FV_OK) k->vpp_id[0] = '\0';
    return rc;
}

static json_t *event_facts(const struct vtn *t, const struct fv_oadr_event *e, const struct vev *k)
{
    const char *sig = e->nsig ? e->sig[0].name : "";
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:b,s:s,s:I,s:I,s:b,s:s,s:s,s:f,s:b}", "vtn",
                     t->cfg->name, "event", e->id, "mod", (json_int_t)e->mod, "status",
                     fv_oadr_status_name(e->status), "market_context", e->market_context, "test",
                     e->test, "signal", sig, "start_ms", (json_int_t)e->start_ms, "duration_ms",
                     (json_int_t)e->dur_ms, "opt_in", k ? k->opt_in : 0, "vpp_event",
                     k ? k->vpp_id : "", "response_required",
                     e->response_required ? "always" : "never", "target_kw", k ? k->target_kw : 0.0,
                     "max", k ? k->max : 0);
}

static void answer(struct fv_ven *v, struct vtn *t, const struct fv_oadr_msg *m,
                   const struct answer *a, size_t n)
{
    struct fv_oadr_event_response *r = calloc(n, sizeof *r);
    if (r == NULL) return;
    for (size_t i = 0; i < n; i++)
        r[i] = (struct fv_oadr_event_response){.event_id = a[i].id,
                                               .mod = a[i].mod,
                                               .code = a[i].code,
                                               .desc = a[i].desc,
                                               .opt_in = a[i].opt_in};
    struct fv_buf b = {0};
    if (fv_oadr_build_created_event(&b, 200, "OK", m->request_id, t->ven_id, r, n) == FV_OK) {
        int rc = fv_ven__send(v, t, "EiEvent", &b, "oadrCreatedEvent");
        for (size_t i = 0; i < n; i++)
            fv_ven__audit(v, "openadr.answer", rc == FV_OK ? "allow" : "error",
                          a[i].desc[0] ? a[i].desc : NULL,
                          json_pack("{s:s,s:s,s:s,s:I,s:i,s:s}", "vtn", t->cfg->name, "message",
                                    "oadrCreatedEvent", "event", a[i].id, "mod",
                                    (json_int_t)a[i].mod, "code", a[i].code, "opt_type",
                                    a[i].opt_in ? "optIn" : "optOut"));
    }
    fv_buf_free(&b);
    free(r);
}

void fv_ven__distribute(struct fv_ven *v, struct vtn *t, const struct fv_oadr_msg *m, int64_t now)
{
    struct answer *a = calloc(m->nev ? m->nev : 1, sizeof *a);
    if (a == NULL) return;
    size_t na = 0;
    for (size_t i = 0; i < t->nev; i++)
        t->ev[i].seen = 0;
    for (size_t i = 0; i < m->nev; i++) {
        const struct fv_oadr_event *e = &m->ev[i];
        struct vev *k = find(t, e->id);
        if (k) k->seen = 1;
        if (k && e->mod == k->mod) continue; /* N2: nothing new */
        struct answer *an = &a[na];
        an->id = e->id;
        an->mod = e->mod;
        if (k && e->mod < k->mod) { /* N2: out of sequence, nothing changes */
            an->code = FV_OADR_OUT_OF_SEQUENCE;
            an->opt_in = k->opt_in;
            snprintf(an->desc, sizeof an->desc, "modificationNumber %" PRIu32 " is below %" PRIu32,
                     e->mod, k->mod);
            fv_ven__audit(v, "openadr.event", "deny", an->desc, event_facts(t, e, k));
            if (e->response_required) na++;
            continue;
        }
        if (k == NULL && (k = add(t, e->id)) == NULL) continue;
        k->seen = 1;
        k->mod = e->mod;
        k->test = e->test;
        k->received_ms = now;
        snprintf(k->mc, sizeof k->mc, "%s", e->market_context);
        snprintf(k->state, sizeof k->state, "%s", fv_oadr_status_name(e->status));
        t->events++;
        t->dirty = 1;
        if (e->status == FV_OADR_ST_CANCELLED) {
            vpp_cancel(v, k);
            k->opt_in = 1;
            snprintf(k->reason, sizeof k->reason, "cancelled by the VTN");
            an->code = 200;
        } else {
            int rc = map_event(v, t, e, k, &an->code);
            k->opt_in = rc == FV_OK;
        }
        an->opt_in = k->opt_in;
        snprintf(an->desc, sizeof an->desc, "%s", k->opt_in ? "" : k->reason);
        fv_info("openadr: %s: event %s mod %" PRIu32 " (%s%s): %s%s%s", t->cfg->name, e->id, e->mod,
                k->state, e->test ? ", test" : "", k->opt_in ? "optIn" : "optOut",
                k->reason[0] ? ": " : "", k->reason);
        fv_ven__audit(v, "openadr.event", k->opt_in ? "allow" : "deny",
                      k->reason[0] ? k->reason : NULL, event_facts(t, e, k));
        if (e->response_required) na++; /* N5 */
    }
    for (size_t i = 0; i < t->nev; i++) { /* no longer listed: over for the VTN (N2) */
        struct vev *k = &t->ev[i];
        if (k->seen || strcmp(k->state, "cancelled") == 0 || strcmp(k->state, "removed") == 0)
            continue;
        vpp_cancel(v, k);
        snprintf(k->state, sizeof k->state, "removed");
        t->dirty = 1;
    }
    if (na) answer(v, t, m, a, na);
    free(a);
}
