/*
 * dispatch.h - the VPP dispatch solver: per-site export setpoints for an event.
 *
 * Each site's deliverable power (kW) for the rest of an event is
 *     D = min(inverter_kw, export_limit_kw, max(0, energy_kwh - reserve_pct/100 * capacity_kwh)
 *             / hours_left)
 * and 0 when the site is offline or its owner opted out (or a value is not a finite number
 * >= 0; a reserve is clamped to 0..100 %). Its available energy A is the max(0, ...) term.
 *
 * Mode max: every site at D. Mode target: the target T is split in proportion to available
 * energy, a site reaching D is clamped there and the rest re-split over the others, until T
 * is met or every site is at D. The fixed point of that re-splitting is
 *     setpoint_i = min(D_i, lambda * A_i)  with  sum_i setpoint_i = T,
 * found in O(n log n): sites sorted by D_i / A_i (ties by index); walking up that order,
 * a site is clamped while T_left / A_left >= D_i / A_i; lambda = T_left / A_left for the rest.
 * Feasible iff T <= sum D (then the setpoints sum to T up to rounding); otherwise every site
 * runs at D. No setpoint ever exceeds D. Same input -> same output, bit for bit (fixed
 * summation order, a total order for the sort).
 *
 * Thread-safety: pure; operates on caller-owned arrays; any thread. No I/O.
 */
#ifndef FV_ENERGY_DISPATCH_H
#define FV_ENERGY_DISPATCH_H

#include <stddef.h>

struct fv_vpp_site {
    int online;             /* 0: offline, gets 0 */
    int opted_out;          /* the owner opted out of this event: gets 0 */
    double inverter_kw;     /* continuous AC power */
    double export_limit_kw; /* the site's grid export limit */
    double energy_kwh;      /* stored energy now */
    double reserve_pct;     /* backup reserve, % of capacity, never dispatched */
    double capacity_kwh;
};

enum fv_vpp_mode { FV_VPP_TARGET, FV_VPP_MAX };

struct fv_vpp_plan {
    double target_kw;      /* as asked (mode target), or the sum of deliverable (mode max) */
    double planned_kw;     /* sum of the setpoints */
    double deliverable_kw; /* sum of every site's D */
    int feasible;          /* mode target: target <= deliverable; mode max: 1 */
    size_t sites_active;   /* sites with a setpoint > 0 */
    size_t sites_clamped;  /* sites set to their D */
};

/* A site's deliverable kW for hours_left hours (> 0), as above. */
double fv_vpp_deliverable_kw(const struct fv_vpp_site *s, double hours_left);

/* Plans sites[0..n): setpoint_kw[i] for each site, and the totals in *plan. mode target
 * needs target_kw >= 0 (finite); hours_left > 0. FV_OK, FV_EINVAL (bad hours_left/target;
 * nothing written), FV_ENOMEM (scratch of 24 bytes a site; nothing written). */
int fv_vpp_dispatch(const struct fv_vpp_site *sites, size_t n, double hours_left,
                    enum fv_vpp_mode mode, double target_kw, double *setpoint_kw,
                    struct fv_vpp_plan *plan);

#endif
