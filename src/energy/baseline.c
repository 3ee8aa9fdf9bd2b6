/* baseline.c - baselines and incremental kWh per site and event (baseline.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "energy/baseline.h"
#include "util/err.h"

int fv_vpp_baseline_plan(const struct fv_vpp_program *p, int64_t start_ms, int64_t end_ms,
                         const int32_t *excluded, size_t nexcluded,
                         struct fv_vpp_baseline_plan *plan, char *err, size_t errlen)
{
    memset(plan, 0, sizeof *plan);
    const int64_t iv = (int64_t)p->interval_min * 60000;
    if (p->interval_min < 1 || 60 % p->interval_min != 0) {
        fv_seterr(err, errlen, "the program's interval of %d minutes does not divide an hour",
                  p->interval_min);
        return FV_EINVAL;
    }
    if (end_ms <= start_ms || start_ms % iv != 0 || end_ms % iv != 0) {
        fv_seterr(err, errlen,
                  "an event to settle starts and ends on its program's %d-minute boundaries",
                  p->interval_min);
        return FV_EINVAL;
    }
    if (end_ms - start_ms > FV_VPP_MAX_EVENT_HOURS * 3600000ll) {
        fv_seterr(err, errlen, "an event to settle lasts at most %d h", FV_VPP_MAX_EVENT_HOURS);
        return FV_EINVAL;
    }
    plan->method = p->method;
    plan->interval_ms = iv;
    plan->slot_len = (size_t)(60 / p->interval_min);
    plan->baseline_days = p->baseline_days;
    plan->min_eligible_days = p->min_eligible_days;
    plan->adj_min = p->adj_min;
    plan->adj_max = p->adj_max;
    plan->start_ms = start_ms;
    plan->end_ms = end_ms;
    plan->event_len = (size_t)((end_ms - start_ms) / iv);
    plan->adj_len = (size_t)p->adj_hours * plan->slot_len;
    plan->win_len = plan->adj_len + plan->event_len;
    plan->nslots = (int)((plan->event_len + plan->slot_len - 1) / plan->slot_len);
    plan->ndays = p->lookback_days;
    plan->excluded = excluded;
    plan->nexcluded = excluded ? nexcluded : 0;
    int64_t adj_ms = (int64_t)plan->adj_len * iv;
    for (int k = 0; k <= plan->ndays; k++) {
        int64_t at;
        if (fv_vpp_days_back(p, start_ms, k, &at, &plan->date[k]) != FV_OK) {
            fv_seterr(err, errlen, "the program's time zone %s is unknown", p->tz);
            return FV_EINVAL;
        }
        plan->win_start_ms[k] = at - adj_ms;
    }
    if (fv_vpp_utc_of_local(p, plan->date[plan->ndays], 0, 0, &plan->days_from_ms) != FV_OK ||
        fv_vpp_utc_of_local(p, plan->date[0], 0, 0, &plan->days_to_ms) != FV_OK) {
        fv_seterr(err, errlen, "the program's time zone %s is unknown", p->tz);
        return FV_EINVAL;
    }
    /* Intervals are aligned to the clock; a zone's midnight need not be (UTC+05:45). */
    plan->days_from_ms -= ((plan->days_from_ms % iv) + iv) % iv;
    return FV_OK;
}

static int listed(const int32_t *dates, size_t n, int32_t d)
{
    for (size_t i = 0; i < n; i++)
        if (dates[i] == d) return 1;
    return 0;
}

static int any_missing(const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (isnan(v[i])) return 1;
    return 0;
}

static double sum(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return s;
}

static void no_baseline(struct fv_vpp_baseline_result *r, const char *why)
{
    r->status = FV_VPP_BL_NONE;
    snprintf(r->reason, sizeof r->reason, "%s", why);
    r->baseline_kwh = 0;
    r->incremental_kwh = 0;
    for (int s = 0; s < r->nslots; s++)
        r->slot_baseline_kwh[s] = 0;
}

int fv_vpp_baseline(const struct fv_vpp_baseline_plan *plan, const struct fv_vpp_site_series *s,
                    struct fv_vpp_baseline_result *r)
{
    if (!s || !s->kwh) return FV_EINVAL;
    memset(r, 0, sizeof *r);
    r->method = plan->method;
    r->nslots = plan->nslots;
    r->adj = 1;
    r->adj_raw = NAN;
    const int group_a = plan->method == FV_VPP_GROUP_A;
    const size_t win = plan->win_len, adj = plan->adj_len, ev = plan->event_len;
    const size_t slot = plan->slot_len;
    /* The part of each window the method reads. */
    const size_t need_off = group_a ? 0 : adj, need_len = group_a ? win : ev;

    /* Metered: the event day's event intervals, slot by slot. */
    const double *day0 = s->kwh + adj;
    size_t missing = 0;
    for (int k = 0; k < plan->nslots; k++) {
        size_t off = (size_t)k * slot, len = ev - off < slot ? ev - off : slot;
        double m = 0;
        for (size_t i = off; i < off + len; i++) {
            if (isnan(day0[i]))
                missing++;
            else
                m += day0[i];
        }
        r->slot_metered_kwh[k] = m;
        r->metered_kwh += m;
    }

    /* The newest eligible prior days. */
    for (int k = 1; k <= plan->ndays && r->ndays < plan->baseline_days; k++) {
        int32_t d = plan->date[k];
        if (listed(plan->excluded, plan->nexcluded, d) || listed(s->excluded, s->nexcluded, d)) {
            r->skipped_excluded++;
            continue;
        }
        if (any_missing(s->kwh + (size_t)k * win + need_off, need_len)) {
            r->skipped_missing++;
            continue;
        }
        r->days[r->ndays++] = k; /* the day index for now; dates below */
    }
    int idx[FV_VPP_MAX_BASELINE_DAYS];
    for (int j = 0; j < r->ndays; j++) {
        idx[j] = r->days[j];
        r->days[j] = plan->date[idx[j]];
    }

    char why[sizeof r->reason];
    if (group_a && missing > 0) {
        snprintf(why, sizeof why,
                 "%zu of the event's %zu intervals missing: the load reduction "
                 "cannot be measured",
                 missing, ev);
        no_baseline(r, why);
        return FV_OK;
    }
    if (r->ndays < plan->min_eligible_days) {
        snprintf(why, sizeof why,
                 "%d eligible days in the %d before the event (%d excluded, %d with missing "
                 "data), the program needs %d",
                 r->ndays, plan->ndays, r->skipped_excluded, r->skipped_missing,
                 plan->min_eligible_days);
        no_baseline(r, why);
        return FV_OK;
    }
    if (r->ndays < plan->baseline_days)
        snprintf(r->reason, sizeof r->reason,
                 "%d eligible days in the %d before the event, fewer than the program's %d: "
                 "baseline from %d days",
                 r->ndays, plan->ndays, plan->baseline_days, r->ndays);
    r->status = r->ndays < plan->baseline_days ? FV_VPP_BL_FEW : FV_VPP_BL_OK;

    /* Slot baselines: per day in order, then the average (a fixed summation order). */
    double base_pre = 0;
    for (int k = 0; k < plan->nslots; k++) {
        size_t off = adj + (size_t)k * slot;
        size_t len = ev - (size_t)k * slot < slot ? ev - (size_t)k * slot : slot;
        double t = 0;
        for (int j = 0; j < r->ndays; j++)
            t += sum(s->kwh + (size_t)idx[j] * win + off, len);
        r->slot_baseline_kwh[k] = t / r->ndays;
    }
    if (group_a) {
        for (int j = 0; j < r->ndays; j++)
            base_pre += sum(s->kwh + (size_t)idx[j] * win, adj);
        base_pre /= r->ndays;
        double act_pre = sum(s->kwh, adj);
        r->adj = plan->adj_min;
        if (adj > 0 && base_pre > 0 && !isnan(act_pre)) {
            r->adj_raw = act_pre / base_pre;
            r->adj = fmin(fmax(r->adj_raw, plan->adj_min), plan->adj_max);
        }
        for (int k = 0; k < plan->nslots; k++)
            r->slot_baseline_kwh[k] *= r->adj;
    }
    for (int k = 0; k < plan->nslots; k++)
        r->baseline_kwh += r->slot_baseline_kwh[k];
    r->incremental_kwh = group_a ? fmax(0, r->baseline_kwh - r->metered_kwh)
                                 : fmax(0, r->metered_kwh - r->baseline_kwh);
    return FV_OK;
}

int fv_vpp_interval_energy(const int64_t *t_ms, const double *kw, size_t n, int64_t hold_ms,
                           int positive_only, int64_t start_ms, int64_t interval_ms, size_t nint,
                           double *kwh)
{
    if (interval_ms <= 0 || start_ms % interval_ms != 0 || hold_ms <= 0) return FV_EINVAL;
    for (size_t i = 1; i < n; i++)
        if (t_ms[i] < t_ms[i - 1]) return FV_EINVAL;
    size_t j = 0; /* the last sample at or before the cursor, once one exists */
    for (size_t k = 0; k < nint; k++) {
        int64_t a = start_ms + (int64_t)k * interval_ms, b = a + interval_ms;
        int64_t cur = a;
        double kws = 0; /* kW x ms */
        while (cur < b) {
            while (j + 1 < n && t_ms[j + 1] <= cur)
                j++;
            if (j >= n || t_ms[j] > cur || isnan(kw[j])) break;
            int64_t end = t_ms[j] + hold_ms < b ? t_ms[j] + hold_ms : b;
            if (j + 1 < n && t_ms[j + 1] < end) end = t_ms[j + 1];
            if (end <= cur) break; /* held too long ago: a gap */
            double p = positive_only && !(kw[j] > 0) ? 0 : kw[j];
            kws += p * (double)(end - cur);
            cur = end;
        }
        kwh[k] = cur < b ? NAN : kws / 3600000.0;
    }
    return FV_OK;
}

int fv_vpp_outage_dates(const struct fv_vpp_program *p, int64_t start_ms, const double *kwh,
                        size_t n, int32_t *dates, size_t cap, size_t *ndates)
{
    *ndates = 0;
    if (p->interval_min < 1 || 60 % p->interval_min != 0) return FV_EINVAL;
    const int64_t iv = (int64_t)p->interval_min * 60000;
    if (start_ms % iv != 0) return FV_EINVAL;
    int rc = FV_OK;
    size_t i = 0;
    while (i < n) {
        /* The local day holding interval i: up to the next local midnight. */
        int64_t t = start_ms + (int64_t)i * iv, midnight, next;
        struct fv_vpp_local l;
        int32_t nd;
        if (fv_vpp_local_time(p, t, &l) != FV_OK ||
            fv_vpp_utc_of_local(p, l.date, 0, 0, &midnight) != FV_OK ||
            fv_vpp_days_back(p, midnight, -1, &next, &nd) != FV_OK)
            return FV_EINVAL;
        size_t miss = 0;
        for (; i < n && start_ms + (int64_t)i * iv < next; i++)
            miss += isnan(kwh[i]);
        if (miss > (size_t)p->outage_missing) {
            if (*ndates < cap)
                dates[*ndates] = l.date;
            else
                rc = FV_ELIMIT;
            if (rc == FV_OK) (*ndates)++;
        }
    }
    return rc;
}

int fv_vpp_site_outages(const struct fv_vpp_program *p, const struct fv_vpp_baseline_plan *plan,
                        const int64_t *t_ms, const double *kw, size_t n, int64_t hold_ms,
                        int32_t *out, size_t *nout)
{
    *nout = 0;
    const int64_t iv = plan->interval_ms;
    if (iv <= 0 || plan->days_to_ms <= plan->days_from_ms) return FV_EINVAL;
    size_t nint = (size_t)((plan->days_to_ms - plan->days_from_ms + iv - 1) / iv);
    double *kwh = malloc(nint * sizeof *kwh);
    if (kwh == NULL) return FV_ENOMEM;
    int rc = fv_vpp_interval_energy(t_ms, kw, n, hold_ms, 0, plan->days_from_ms, iv, nint, kwh);
    if (rc == FV_OK)
        rc = fv_vpp_outage_dates(p, plan->days_from_ms, kwh, nint, out, (size_t)plan->ndays + 1,
                                 nout);
    free(kwh);
    return rc;
}
