/* ven_reports.c - the fleet's reports (ven.h N6; shared state in ven_int.h): metadata
 * (oadrRegisterReport), the VTN's requests (oadrCreateReport, oadrCancelReport) and the
 * periodic oadrUpdateReport, and history reports of a past window from the store (ven.h N11).
 * Fleet aggregates only (vpp_ext.h X2). Runs on the VEN's thread
 * with mu held.
 *
 * Our reports and their rIDs:
 *   fleetvault-usage   METADATA_TELEMETRY_USAGE
 *     delivered_kw     usage, powerReal (kW): what the VPP tracks for this VTN's active
 *                      events (the fleet's battery discharge when none is active)
 *     stored_kwh       storedEnergy, energyReal (kWh): energy in the enrolled batteries
 *     available_kwh    availableEnergyStorage (kWh): energy above the sites' reserves
 *     deliverable_kw   upRegulationCapacityAvailable, powerReal (kW): for the next hour
 *   fleetvault-status  METADATA_TELEMETRY_STATUS
 *     online           x-resourceStatus: online while any enrolled site is
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "energy/vpp_ext.h"
#include "openadr/ven_int.h"
#include "util/err.h"
#include "util/log.h"

#define NRID 5
static const char *const rid_names[NRID] = {"delivered_kw", "stored_kwh", "available_kwh",
                                            "deliverable_kw", "online"};
#define HIST_MAX    1440 /* intervals in one history report (a coarser granularity beyond) */
#define USAGE_RIDS  0x0f
#define STATUS_RIDS 0x10

int fv_ven__register_reports(struct fv_ven *v, struct vtn *t, int64_t now, char *err, size_t errlen)
{
    int64_t min = (int64_t)v->cfg->report_interval_s * 1000, max = 3600000;
    const char *mc = v->cfg->nmcs ? v->cfg->mcs[0].context : NULL;
    struct fv_oadr_report_desc d[NRID] = {
        {rid_names[0], "usage", "powerReal", "Direct Read", mc, min, max},
        {rid_names[1], "storedEnergy", "energyReal", "Summed", mc, min, max},
        {rid_names[2], "availableEnergyStorage", "energyReal", "Summed", mc, min, max},
        {rid_names[3], "upRegulationCapacityAvailable", "powerReal", "Projected", mc, min, max},
        {rid_names[4], "x-resourceStatus", NULL, "x-notApplicable", mc, min, max},
    };
    struct fv_oadr_report_meta meta[2] = {
        {"fleetvault-usage", "METADATA_TELEMETRY_USAGE", 0, d, 4},
        {"fleetvault-status", "METADATA_TELEMETRY_STATUS", 0, d + 4, 1},
    };
    char rid[FV_OADR_ID_MAX];
    fv_ven__request_id(t, "metadata", rid);
    struct fv_buf b = {0};
    struct fv_oadr_msg r;
    int rc = fv_oadr_build_register_report(&b, rid, t->ven_id, meta, 2, now);
    if (rc == FV_OK) rc = fv_ven__exchange(v, t, "EiReport", &b, &r, err, errlen);
    fv_buf_free(&b);
    if (rc == FV_OK) {
        fv_ven__audit(v, "openadr.report", "allow", NULL,
                      json_pack("{s:s,s:s,s:i}", "vtn", t->cfg->name, "message",
                                "oadrRegisterReport", "code", r.response_code));
        /* An oadrRegisteredReport may ask for reports at once. */
        if (r.kind == FV_OADR_REGISTERED_REPORT && r.nrr) fv_ven__create_report(v, t, &r, now);
    } else {
        fv_warn("openadr: %s: oadrRegisterReport: %s", t->cfg->name, err);
    }
    fv_oadr_msg_free(&r);
    return rc;
}

static int rid_index(const char *name)
{
    for (int i = 0; i < NRID; i++)
        if (strcmp(rid_names[i], name) == 0) return i;
    return -1;
}

void fv_ven__create_report(struct fv_ven *v, struct vtn *t, const struct fv_oadr_msg *m,
                           int64_t now)
{
    int code = 200;
    char desc[FV_OADR_TEXT_MAX] = "";
    for (size_t i = 0; i < m->nrr; i++) {
        const struct fv_oadr_report_request *q = &m->rr[i];
        int allowed = strcmp(q->specifier_id, "fleetvault-usage") == 0    ? USAGE_RIDS
                      : strcmp(q->specifier_id, "fleetvault-status") == 0 ? STATUS_RIDS
                                                                          : 0;
        int mask = 0, bad = allowed == 0;
        for (size_t k = 0; k < q->nrid; k++) {
            int x = rid_index(q->rids[k]);
            if (x < 0 || !(allowed & (1 << x)))
                bad = 1;
            else
                mask |= 1 << x;
        }
        int history = q->has_interval && q->dur_ms > 0 && q->start_ms + q->dur_ms <= now;
        if (history && v->store.history == NULL) {
            code = FV_OADR_REPORT_NOT_SUPPORTED;
            snprintf(desc, sizeof desc, "report request %.60s: no history reports here",
                     q->request_id);
            continue;
        }
        if (bad || mask == 0) {
            code = FV_OADR_REPORT_NOT_SUPPORTED;
            snprintf(desc, sizeof desc,
                     "report request %.60s: unknown specifier or rID (ours: "
                     "fleetvault-usage, fleetvault-status)",
                     q->request_id);
            continue;
        }
        struct vrep *r = NULL;
        for (size_t k = 0; k < t->nrep; k++)
            if (strcmp(t->rep[k].request_id, q->request_id) == 0) r = &t->rep[k];
        if (r == NULL) {
            struct vrep *p = realloc(t->rep, (t->nrep + 1) * sizeof *p);
            if (p == NULL) continue;
            t->rep = p;
            r = &p[t->nrep++];
            memset(r, 0, sizeof *r);
        }
        free(r->s);
        memset(r, 0, sizeof *r);
        snprintf(r->request_id, sizeof r->request_id, "%s", q->request_id);
        snprintf(r->specifier_id, sizeof r->specifier_id, "%s", q->specifier_id);
        r->rids = mask;
        int64_t floor_ms = 1000;
        r->granularity_ms = q->granularity_ms >= floor_ms
                                ? q->granularity_ms
                                : (int64_t)v->cfg->report_interval_s * 1000;
        r->report_back_ms = q->report_back_ms >= floor_ms ? q->report_back_ms : r->granularity_ms;
        r->start_ms = q->has_interval && q->start_ms > now ? q->start_ms : now;
        r->end_ms = q->has_interval && q->dur_ms > 0 ? q->start_ms + q->dur_ms : 0;
        r->next_sample_ms = r->start_ms;
        r->next_send_ms = r->start_ms + r->report_back_ms;
        if (history) { /* N11: one oadrUpdateReport from the store, after our answer */
            r->history = 1;
            r->start_ms = q->start_ms;
            if ((q->dur_ms + r->granularity_ms - 1) / r->granularity_ms > HIST_MAX)
                r->granularity_ms = (q->dur_ms + HIST_MAX - 1) / HIST_MAX;
            r->next_sample_ms = INT64_MAX;
            /* pushed: our oadrCreatedReport is the HTTP answer, still on its way */
            r->next_send_ms = now + (v->cfg->push ? 1000 : 0);
        }
        fv_info("openadr: %s: report %s (%s) every %lld s, sampled every %lld s", t->cfg->name,
                r->request_id, r->specifier_id, (long long)(r->report_back_ms / 1000),
                (long long)(r->granularity_ms / 1000));
    }
    t->dirty = 1;
    const char **pending = calloc(t->nrep ? t->nrep : 1, sizeof *pending);
    for (size_t k = 0; pending && k < t->nrep; k++)
        pending[k] = t->rep[k].request_id;
    struct fv_buf b = {0};
    if (pending && fv_oadr_build_created_report(&b, code, desc, m->request_id, t->ven_id, pending,
                                                t->nrep) == FV_OK)
        fv_ven__send(v, t, "EiReport", &b, "oadrCreatedReport");
    fv_ven__audit(v, "openadr.answer", code == 200 ? "allow" : "deny", desc[0] ? desc : NULL,
                  json_pack("{s:s,s:s,s:i,s:I}", "vtn", t->cfg->name, "message",
                            "oadrCreatedReport", "code", code, "pending", (json_int_t)t->nrep));
    fv_buf_free(&b);
    free(pending);
}

static void drop_report(struct vtn *t, size_t i)
{
    t->dirty = 1; /* the saved state keeps the report requests */
    free(t->rep[i].s);
    memmove(&t->rep[i], &t->rep[i + 1], (t->nrep - i - 1) * sizeof *t->rep);
    t->nrep--;
}

void fv_ven__cancel_report(struct fv_ven *v, struct vtn *t, const struct fv_oadr_msg *m)
{
    for (size_t c = 0; c < m->ncancel_rr; c++)
        for (size_t i = 0; i < t->nrep; i++)
            if (strcmp(t->rep[i].request_id, m->cancel_rr[c]) == 0) {
                drop_report(t, i);
                break;
            }
    const char **pending = calloc(t->nrep ? t->nrep : 1, sizeof *pending);
    for (size_t k = 0; pending && k < t->nrep; k++)
        pending[k] = t->rep[k].request_id;
    struct fv_buf b = {0};
    if (pending && fv_oadr_build_canceled_report(&b, 200, NULL, m->request_id, t->ven_id, pending,
                                                 t->nrep) == FV_OK)
        fv_ven__send(v, t, "EiReport", &b, "oadrCanceledReport");
    fv_buf_free(&b);
    free(pending);
}

/* The fleet now, with delivered kW as the VPP tracks this VTN's active events. */
static void sample(struct fv_ven *v, struct vtn *t, struct vsample *s, int64_t now)
{
    struct fv_vpp_fleet_now f;
    fv_vpp_fleet_now(v->vpp, NULL, &f);
    double tracked = 0;
    int active = 0;
    for (size_t i = 0; i < t->nev; i++) {
        const char *st;
        double target, delivered;
        if (t->ev[i].vpp_id[0] &&
            fv_vpp_event_now(v->vpp, t->ev[i].vpp_id, &st, &target, &delivered) == FV_OK &&
            strcmp(st, "active") == 0) {
            tracked += delivered;
            active = 1;
        }
    }
    s->t = now;
    s->v[0] = active ? tracked : f.delivered_kw;
    s->v[1] = f.stored_kwh;
    s->v[2] = f.available_kwh;
    s->v[3] = f.deliverable_kw;
    s->v[4] = f.online > 0;
}

static void send_update(struct fv_ven *v, struct vtn *t, struct vrep *r, int64_t now)
{
    struct fv_oadr_report_point *pts = calloc(r->ns * NRID + 1, sizeof *pts);
    struct fv_oadr_report_interval *iv = calloc(r->ns + 1, sizeof *iv);
    if (pts == NULL || iv == NULL) {
        free(pts);
        free(iv);
        return;
    }
    for (size_t i = 0; i < r->ns; i++) {
        iv[i] = (struct fv_oadr_report_interval){r->s[i].t, r->granularity_ms, pts + i * NRID, 0};
        for (int k = 0; k < NRID; k++)
            if (r->rids & (1 << k))
                pts[i * NRID + iv[i].np++] =
                    (struct fv_oadr_report_point){rid_names[k], r->s[i].v[k], k == 4};
    }
    char rid[FV_OADR_ID_MAX], rep_id[FV_OADR_ID_MAX];
    fv_ven__request_id(t, "update", rid);
    snprintf(rep_id, sizeof rep_id, "%s-%u", r->request_id, ++r->sent);
    const char *name = r->rids & STATUS_RIDS ? "TELEMETRY_STATUS"
                       : r->history          ? "HISTORY_USAGE"
                                             : "TELEMETRY_USAGE";
    int64_t start = r->ns ? r->s[0].t : now;
    struct fv_buf b = {0};
    int rc = fv_oadr_build_update_report(&b, rid, t->ven_id, rep_id, r->request_id, r->specifier_id,
                                         name, start, (int64_t)r->ns * r->granularity_ms, iv, r->ns,
                                         now);
    if (rc == FV_OK) rc = fv_ven__send(v, t, "EiReport", &b, "oadrUpdateReport");
    fv_buf_free(&b);
    t->reports++;
    const struct vsample *last = r->ns ? &r->s[r->ns - 1] : NULL;
    fv_ven__audit(v, "openadr.report", rc == FV_OK ? "allow" : "error", NULL,
                  json_pack("{s:s,s:s,s:s,s:s,s:I,s:f,s:f,s:f}", "vtn", t->cfg->name, "message",
                            "oadrUpdateReport", "report_request_id", r->request_id, "report", name,
                            "intervals", (json_int_t)r->ns, "delivered_kw", last ? last->v[0] : 0.0,
                            "stored_kwh", last ? last->v[1] : 0.0, "available_kwh",
                            last ? last->v[2] : 0.0));
    r->ns = 0;
    free(pts);
    free(iv);
}

/* N11: a history report: the window's intervals from the store, sent once. The read of the
 * sites' samples is audited (openadr.history: the window, the number of sites). */
static void send_history(struct fv_ven *v, struct vtn *t, struct vrep *r, int64_t now)
{
    size_t n = (size_t)((r->end_ms - r->start_ms + r->granularity_ms - 1) / r->granularity_ms);
    struct fv_ven_hist *h = calloc(n ? n : 1, sizeof *h);
    struct vsample *s = calloc(n ? n : 1, sizeof *s);
    char err[FV_OADR_TEXT_MAX] = "out of memory";
    size_t nsites = 0;
    int rc = h && s ? v->store.history(v->store.arg, r->start_ms, r->granularity_ms, n, h, &nsites,
                                       err, sizeof err)
                    : FV_ENOMEM;
    fv_ven__audit(v, "openadr.history", rc == FV_OK ? "allow" : "error", rc ? err : NULL,
                  json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "vtn", t->cfg->name, "report_request_id",
                            r->request_id, "from_ms", (json_int_t)r->start_ms, "to_ms",
                            (json_int_t)r->end_ms, "granularity_ms", (json_int_t)r->granularity_ms,
                            "sites", (json_int_t)nsites));
    if (rc == FV_OK) {
        for (size_t i = 0; i < n; i++)
            s[i] = (struct vsample){r->start_ms + (int64_t)i * r->granularity_ms,
                                    {h[i].delivered_kw, h[i].stored_kwh, h[i].available_kwh,
                                     h[i].deliverable_kw, h[i].online}};
        free(r->s);
        r->s = s;
        r->ns = n;
        s = NULL;
        send_update(v, t, r, now);
    } else {
        fv_warn("openadr: %s: history report %s: %s", t->cfg->name, r->request_id, err);
    }
    free(s);
    free(h);
}

void fv_ven__reports_tick(struct fv_ven *v, struct vtn *t, int64_t now)
{
    for (size_t i = 0; i < t->nrep; i++) {
        struct vrep *r = &t->rep[i];
        if (r->history) {
            if (now < r->next_send_ms || !t->registered || (!t->reachable && t->fails)) continue;
            send_history(v, t, r, now);
            drop_report(t, i--);
            continue;
        }
        if (now >= r->next_sample_ms && (r->end_ms == 0 || r->next_sample_ms < r->end_ms)) {
            if (r->ns == VEN_SAMPLES) memmove(r->s, r->s + 1, --r->ns * sizeof *r->s);
            struct vsample *p = r->s ? r->s : calloc(VEN_SAMPLES, sizeof *p);
            if (p) {
                r->s = p;
                sample(v, t, &p[r->ns++], now);
            }
            while (r->next_sample_ms <= now)
                r->next_sample_ms += r->granularity_ms;
        }
        if (now < r->next_send_ms || !t->registered || (!t->reachable && t->fails)) continue;
        send_update(v, t, r, now);
        while (r->next_send_ms <= now)
            r->next_send_ms += r->report_back_ms;
        if (r->end_ms && now >= r->end_ms) drop_report(t, i--);
    }
}
