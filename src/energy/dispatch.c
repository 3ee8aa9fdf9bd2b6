/* dispatch.c - the VPP dispatch solver (dispatch.h). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "energy/dispatch.h"
#include "util/err.h"

static double nonneg(double x)
{
    return isfinite(x) && x > 0 ? x : 0;
}

static double available_kwh(const struct fv_vpp_site *s)
{
    if (!s->online || s->opted_out) return 0;
    double cap = nonneg(s->capacity_kwh);
    double pct = isfinite(s->reserve_pct) ? fmin(fmax(s->reserve_pct, 0), 100) : 100;
    return fmax(0, nonneg(s->energy_kwh) - pct / 100.0 * cap);
}

static double deliverable(const struct fv_vpp_site *s, double avail, double hours_left)
{
    if (avail <= 0) return 0;
    return fmin(fmin(nonneg(s->inverter_kw), nonneg(s->export_limit_kw)), avail / hours_left);
}

double fv_vpp_deliverable_kw(const struct fv_vpp_site *s, double hours_left)
{
    if (!(hours_left > 0) || !isfinite(hours_left)) return 0;
    return deliverable(s, available_kwh(s), hours_left);
}

/* A site in the water-filling order: D/A ascending, then index (a total order). */
struct ratio {
    double r;
    uint32_t i;
};

static int by_ratio(const void *a, const void *b)
{
    const struct ratio *x = a, *y = b;
    if (x->r < y->r) return -1;
    if (x->r > y->r) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

int fv_vpp_dispatch(const struct fv_vpp_site *sites, size_t n, double hours_left,
                    enum fv_vpp_mode mode, double target_kw, double *setpoint_kw,
                    struct fv_vpp_plan *plan)
{
    if (!(hours_left > 0) || !isfinite(hours_left) || n > UINT32_MAX ||
        (mode == FV_VPP_TARGET && (!(target_kw >= 0) || !isfinite(target_kw))))
        return FV_EINVAL;
    /* avail[i], then D[i] in setpoint_kw until the end; the sort keys in scratch. */
    struct ratio *ord = NULL;
    double *avail = NULL;
    if (n > 0) {
        ord = malloc(n * sizeof *ord);
        avail = malloc(n * sizeof *avail);
        if (!ord || !avail) {
            free(ord);
            free(avail);
            return FV_ENOMEM;
        }
    }
    memset(plan, 0, sizeof *plan);
    double total_d = 0, total_a = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        avail[i] = available_kwh(&sites[i]);
        double d = deliverable(&sites[i], avail[i], hours_left);
        setpoint_kw[i] = d;
        total_d += d;
        if (d > 0) {
            total_a += avail[i];
            ord[m].r = d / avail[i];
            ord[m].i = (uint32_t)i;
            m++;
        }
    }
    plan->deliverable_kw = total_d;
    if (mode == FV_VPP_MAX || target_kw >= total_d) {
        /* Every site at its maximum: the whole fleet is needed (or asked for). */
        plan->target_kw = mode == FV_VPP_MAX ? total_d : target_kw;
        plan->feasible = mode == FV_VPP_MAX || target_kw <= total_d;
        plan->sites_active = m;
        plan->sites_clamped = m;
        plan->planned_kw = total_d;
        free(ord);
        free(avail);
        return FV_OK;
    }
    plan->target_kw = target_kw;
    plan->feasible = 1;
    qsort(ord, m, sizeof *ord, by_ratio);
    /* Clamp while the proportional share would reach the site's limit. */
    double t_left = target_kw, a_left = total_a;
    size_t k = 0;
    for (; k < m; k++) {
        const struct ratio *o = &ord[k];
        if (a_left <= 0 || t_left < o->r * a_left) break;
        t_left -= setpoint_kw[o->i];
        a_left -= avail[o->i];
    }
    plan->sites_clamped = k;
    double lambda = a_left > 0 && t_left > 0 ? t_left / a_left : 0;
    for (size_t j = k; j < m; j++) {
        uint32_t i = ord[j].i;
        setpoint_kw[i] = fmin(setpoint_kw[i], lambda * avail[i]);
    }
    /* Totals in index order, so they never depend on the sort's internals. */
    double planned = 0;
    size_t active = 0;
    for (size_t i = 0; i < n; i++) {
        planned += setpoint_kw[i];
        active += setpoint_kw[i] > 0;
    }
    plan->planned_kw = planned;
    plan->sites_active = active;
    free(ord);
    free(avail);
    return FV_OK;
}
