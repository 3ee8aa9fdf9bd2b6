/*
 * baseline.h - interval energy and baselines: what a site would have done without the event,
 * and the incremental kWh it is paid for.
 *
 * Data: interval energy (kWh per interval, NaN = missing), made from telemetry by
 * fv_vpp_interval_energy. Intervals last the program's interval_minutes (5 by default, a
 * divisor of 60) and are aligned to the clock (UTC ms a multiple of their length; a whole
 * hour holds a whole number of them); the event's start and end fall on interval
 * boundaries. A baseline plan (one per event, built with the program's
 * time zone) names, for the event day (day 0) and each of the program's lookback_days prior
 * local days (day k = k calendar days back, newest first), one window of win_len intervals:
 * the adj_hours before the event plus the event, at the same wall-clock time as on the event
 * day (fv_vpp_days_back). The caller hands each site's values for those windows, day-major.
 *
 * Eligible day: a prior day that is not excluded (the fleet's list: ELRP event days; the
 * site's list: its other demand-response days and outage days, see fv_vpp_outage_dates), and
 * has no missing interval in the part of the window the method reads (group_a: the whole
 * window; a4_discharge: the event hours). The newest baseline_days eligible days are used.
 * Fewer than min_eligible_days: no baseline (FV_VPP_BL_NONE, with a reason). Fewer than
 * baseline_days but at least the minimum: a baseline from those days (FV_VPP_BL_FEW).
 *
 * Hours: the event is cut into slots of one hour from its start (the last may be shorter);
 * a slot's baseline is the average, over the baseline days, of that slot's energy.
 *
 * group_a (the site's net load: import minus export, kWh; exporting makes it negative):
 *   adj = (actual load over the adj_hours before the event) / (baseline load over the same
 *   intervals), clamped to [adj_min, adj_max]; when it is undefined (adj_hours 0, the
 *   baseline there <= 0, or a missing interval before the event) adj = adj_min.
 *   baseline_kwh = sum over slots of adj * slot baseline; metered_kwh = the event's load;
 *   incremental_kwh = max(0, baseline_kwh - metered_kwh) (a load reduction).
 *   A missing interval during the event: no baseline (the reduction cannot be measured).
 * a4_discharge (the battery's own discharge, kWh >= 0 per interval):
 *   baseline_kwh = sum of slot baselines (no adjustment, adj = 1); metered_kwh = the event's
 *   discharge, a missing interval counting 0 (never paid for unproven energy);
 *   incremental_kwh = max(0, metered_kwh - baseline_kwh).
 *
 * Thread-safety: a plan is read-only once built and may be shared by threads; everything else
 * is caller-owned. fv_vpp_baseline_plan and fv_vpp_outage_dates call ICU (no shared state);
 * fv_vpp_baseline is pure. No I/O.
 */
#ifndef FV_ENERGY_BASELINE_H
#define FV_ENERGY_BASELINE_H

#include <stddef.h>
#include <stdint.h>

#include "energy/program.h"

struct fv_vpp_baseline_plan {
    enum fv_vpp_method method;
    int64_t interval_ms; /* the program's interval_minutes */
    size_t slot_len;     /* intervals in an hour */
    int baseline_days, min_eligible_days;
    double adj_min, adj_max;
    int64_t start_ms, end_ms;
    size_t adj_len;   /* intervals before the event in each window (adj_hours * slot_len) */
    size_t event_len; /* intervals of the event */
    size_t win_len;   /* adj_len + event_len */
    int nslots;       /* hour slots of the event */
    int ndays;        /* prior days (lookback_days); windows: ndays + 1 */
    int32_t date[FV_VPP_MAX_LOOKBACK + 1];         /* local date of day k (0: the event's) */
    int64_t win_start_ms[FV_VPP_MAX_LOOKBACK + 1]; /* UTC ms of day k's window */
    int64_t days_from_ms, days_to_ms; /* the prior days whole: local midnight of day ndays
                                       * (down to an interval boundary) to day 0's */
    const int32_t *excluded;          /* fleet-wide excluded dates (yyyymmdd), caller-owned */
    size_t nexcluded;
};

/* Builds the plan of an event [start_ms, end_ms) under program p; excluded (fleet-wide dates,
 * any order, kept by pointer: it must outlive the plan) may be NULL. FV_OK, or FV_EINVAL with
 * err for an event not on the program's interval boundaries, longer than
 * FV_VPP_MAX_EVENT_HOURS, or an unknown zone. */
int fv_vpp_baseline_plan(const struct fv_vpp_program *p, int64_t start_ms, int64_t end_ms,
                         const int32_t *excluded, size_t nexcluded,
                         struct fv_vpp_baseline_plan *plan, char *err, size_t errlen);

/* One site's data for a plan. */
struct fv_vpp_site_series {
    const double *kwh;       /* (plan->ndays + 1) * plan->win_len values, day 0 first */
    const int32_t *excluded; /* the site's own excluded dates (DR days, outage days) */
    size_t nexcluded;
};

enum fv_vpp_bl_status {
    FV_VPP_BL_OK,   /* baseline_days days used */
    FV_VPP_BL_FEW,  /* fewer, but at least min_eligible_days (reason says how many) */
    FV_VPP_BL_NONE, /* no baseline: incremental 0, reason says why */
};

struct fv_vpp_baseline_result {
    enum fv_vpp_method method;
    enum fv_vpp_bl_status status;
    char reason[160]; /* empty when status is OK */
    int ndays;        /* baseline days used, newest first */
    int32_t days[FV_VPP_MAX_BASELINE_DAYS];
    int skipped_excluded; /* prior days passed over as excluded ... */
    int skipped_missing;  /* ... or for missing intervals */
    double adj_raw;       /* group_a: the factor before clamping (NaN: undefined) */
    double adj;           /* the factor applied (a4_discharge: 1) */
    int nslots;
    double slot_baseline_kwh[FV_VPP_MAX_EVENT_HOURS]; /* adjusted */
    double slot_metered_kwh[FV_VPP_MAX_EVENT_HOURS];
    double baseline_kwh, metered_kwh, incremental_kwh;
};

/* Computes one site's baseline and incremental kWh for plan. Always fills *r (status NONE
 * with a reason when there is no baseline) and returns FV_OK; FV_EINVAL only for a NULL
 * series. */
int fv_vpp_baseline(const struct fv_vpp_baseline_plan *plan, const struct fv_vpp_site_series *s,
                    struct fv_vpp_baseline_result *r);

/* Interval energy from telemetry: kWh per interval of interval_ms (> 0) for nint intervals
 * from start_ms (a multiple of interval_ms) out of power samples kw[i] at t_ms[i] (ascending; equal
 * times: the last wins). Each sample's power holds until the next sample, for at most hold_ms; an
 * interval not covered whole by held samples (a gap, before the first sample, a NaN power) is NaN,
 * i.e. missing: it is never estimated. positive_only: only power > 0 counts (battery kW,
 * + discharge, gives the discharge; grid kW, + import, as it is gives the net load). Pure;
 * FV_OK, FV_EINVAL (unaligned start, interval_ms or hold_ms <= 0, times not ascending). */
int fv_vpp_interval_energy(const int64_t *t_ms, const double *kw, size_t n, int64_t hold_ms,
                           int positive_only, int64_t start_ms, int64_t interval_ms, size_t nint,
                           double *kwh);

/* Outage days of a contiguous series of n intervals of the program's length from start_ms
 * (aligned to them): the
 * local dates (program p's zone) on which more than p->outage_missing of the covered
 * intervals are missing (NaN), ascending, into dates[0..cap) and their count in *ndates
 * (FV_ELIMIT when more than cap; the first cap are written). FV_EINVAL for a bad zone or an
 * unaligned start. */
int fv_vpp_outage_dates(const struct fv_vpp_program *p, int64_t start_ms, const double *kwh,
                        size_t n, int32_t *dates, size_t cap, size_t *ndates);

/* A site's outage days among a plan's prior days, from its power samples (t_ms ascending):
 * its interval energy (fv_vpp_interval_energy, hold_ms) over [days_from_ms, days_to_ms), then
 * fv_vpp_outage_dates with program p (the plan's). out must hold plan->ndays + 1 dates; their
 * count in *nout. A site's own excluded dates, with its DR days (fv_vpp_site_series). FV_OK,
 * FV_ENOMEM, FV_EINVAL. */
int fv_vpp_site_outages(const struct fv_vpp_program *p, const struct fv_vpp_baseline_plan *plan,
                        const int64_t *t_ms, const double *kw, size_t n, int64_t hold_ms,
                        int32_t *out, size_t *nout);

#endif
