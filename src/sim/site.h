/*
 * site.h - the simulator's home-energy site: a Powerwall-class battery with its inverter,
 * rooftop solar and a home's load, that reports SiteTelemetry samples (wire/site.h) and
 * obeys the VPP's commands (SiteCommand) within its physics.
 *
 * The model (units kW, kWh, local hours; numbers chosen per site from the seed, see site.c):
 *  - battery: 13.5 kWh with a 5 kW continuous inverter (one site in five: two of them,
 *    27 kWh and 10 kW), about 90 % round trip (sqrt(0.9) each way), export limit 4-5 kW,
 *    the owner's backup reserve 10-30 %; the battery never goes below the reserve
 *    (except for what losses of a last partial step take) nor above its capacity;
 *  - solar: 3-8 kWp, a sine over the day whose length and height follow the season
 *    (longest on 21 June), times a cloud factor per day (30 % of days cloudy) and per
 *    15 minutes on cloudy days; curtailed when the export limit would be passed;
 *  - load: a base load with a morning (about 07:30) and an evening (about 19:00) peak, a
 *    factor per day and noise per 5 minutes;
 *  - behaviour: 65 % self-powered (mode 1: the battery charges from surplus solar and
 *    covers the home's load), 25 % time-based (mode 3: charges from solar, and discharges
 *    at a fixed 2-4 kW every evening 17:00-21:00, exporting - so its baseline discharge is
 *    not zero), 10 % backup only (mode 2: charges from solar, never discharges);
 *  - grid kW = load - solar - battery (+ import), rounded like the other powers (1 W);
 *  - offline: on offline_pct % of days an outage of 30-180 minutes starting at a random
 *    time (fv_sim_site_online); the physics go on, the site reports and answers nothing;
 *  - owners: opt_out_pct % of owners refuse every notice and dispatch (status 2).
 * Every sample passes fv_site_check.
 *
 * Commands (fv_sim_site_command): a dispatch for an event makes the site discharge at
 * min(target, inverter, export limit, energy above the reserve) from its start to its end
 * (mode 4, solar curtailed if needed so the export limit holds), then return to its
 * normal behaviour; a dispatch with target 0 or a cancel ends it at once. A dispatch is
 * refused (2, with a reason) when the owner opts out, the battery is at its reserve, or the
 * window is over; a notice is accepted unless the owner opts out; unknown kinds are refused.
 *
 * Determinism: a site is a pure function of (seed, index, cfg, start time) and the times it
 * is stepped to and the commands it is given; noise comes from hashes of (seed, index,
 * slot), not from a stream, so it does not depend on how often the site is sampled. No wall
 * clock, no global state. A site belongs to one thread at a time.
 */
#ifndef FV_SIM_SITE_H
#define FV_SIM_SITE_H

#include <stddef.h>
#include <stdint.h>

#include "wire/site.h"

#define FV_SIM_SITE_EVENT_MAX 64

struct fv_sim_site_cfg {
    double opt_out_pct;  /* share of owners who refuse every event, 0..100 */
    double offline_pct;  /* share of days with one outage, 0..100 */
    double utc_offset_h; /* local time = UTC + this (sun and load follow local time) */
};

/* What a site is (fixed at fv_sim_site_init). */
struct fv_sim_site_params {
    double capacity_kwh, inverter_kw, export_limit_kw, reserve_pct;
    double solar_kwp, base_kw, morning_kw, evening_kw;
    double evening_discharge_kw; /* time-based sites: discharge 17:00-21:00 */
    int mode;                    /* FV_SITE_MODE_SELF_POWERED, _BACKUP or _TIME_BASED */
    int opts_out;                /* the owner refuses every event */
};

struct fv_sim_site {
    uint64_t seed;
    uint32_t index;
    struct fv_sim_site_cfg cfg;
    struct fv_sim_site_params p;
    uint64_t t_ms;                        /* the model's time */
    double energy_kwh;                    /* stored now */
    double battery_kw, solar_kw, load_kw; /* at t_ms */
    int mode;                             /* reported mode at t_ms */
    /* the dispatch in force (dispatch_kw > 0), or none */
    char event[FV_SIM_SITE_EVENT_MAX];
    double dispatch_kw;
    uint64_t dispatch_start_ms, dispatch_end_ms;
};

/* Makes site `index` of a fleet seeded with `seed`, at time start_ms. */
void fv_sim_site_init(struct fv_sim_site *s, uint64_t seed, uint32_t index,
                      const struct fv_sim_site_cfg *cfg, uint64_t start_ms);

/* Advances the model to t_ms (earlier times are ignored), in steps of at most a minute. */
void fv_sim_site_step(struct fv_sim_site *s, uint64_t t_ms);

/* Whether the site is online (not in one of its outages) at t_ms. */
int fv_sim_site_online(const struct fv_sim_site *s, uint64_t t_ms);

/* The site's sample at its current time (created_at = t_ms, is_resend 0). */
void fv_sim_site_sample(const struct fv_sim_site *s, struct fv_site_sample *out);

/* Takes a command at the model's current time: 1 accepted, or 2 refused with the reason in
 * reason (always set; "" when accepted). */
int fv_sim_site_command(struct fv_sim_site *s, const struct fv_site_command *c, char *reason,
                        size_t len);

/* The solar and load (kW, before curtailment) of the site at t_ms: the model's inputs. */
double fv_sim_site_solar_kw(const struct fv_sim_site *s, uint64_t t_ms);
double fv_sim_site_load_kw(const struct fv_sim_site *s, uint64_t t_ms);

#endif
