/*
 * vpp.h - the virtual power plant service: enrolled sites, events, dispatch over the
 * downlink, command tracking and live status (issue 10; docs/operations.md "Virtual power
 * plant"). Programs and their rules are energy/program.h, the solver energy/dispatch.h.
 *
 * Life of an event: created through the API (checked against its program: season, window,
 * length, the yearly hours cap; refused with a reason otherwise) and stored in DATA/vpp.db;
 * every enrolled site of the program gets an event notice at once; at the start the solver
 * plans a setpoint per site from each site's latest sample, and each site is sent a dispatch
 * command (SiteCommand, wire/site.h) through the downlink (wire/downlink.h). The service
 * then, every second:
 *  V1 resends a command not acked within FV_VPP_RESEND_MS, and a site's current command at
 *     once when it reconnects (the downlink delivers at most once, D1);
 *  V2 plans again when a planned site goes short: offline (no sample for
 *     FV_VPP_OFFLINE_MS), opted out, refusing its dispatch (it is then not planned again
 *     for this event), or able to deliver less than its setpoint (a raised reserve) - at
 *     most every FV_VPP_REPLAN_MS - so the others cover it; and when a site that was
 *     offline when planned is back, so it takes its share. An event active when the
 *     service starts (a restart mid-event) is planned again at its first turn;
 *  V3 records the fleet's delivered kW (the sum of planned sites' battery discharge in their
 *     latest samples) against the target, one point per FV_VPP_TRACK_MS;
 *  V4 ends the event at its end time; a cancelled event sends every planned site a cancel.
 *  V5 keeps the event's roster when it starts (or ends, if it never ran): the sites enrolled
 *     in its program then (vpp_event_sites); its settlement reads the roster, so enrolling or
 *     leaving later never changes a past event's rows (an erasure removes the site).
 * Sites are known from their `site` samples and enrolled per program (DATA/vpp.db); owners
 * opt out per event, even mid-event (V2 re-plans without them).
 *
 * Threads: the service runs its own thread (a capability worker). fv_vpp_* calls from the
 * API thread take the service's mutex for short, in-memory work plus one SQLite commit; the
 * downlink listener (fv_vpp_listener) runs on the ingest loop and only appends to an inbox
 * under its own mutex, so the ingest loop never waits for planning.
 */
#ifndef FV_ENERGY_VPP_H
#define FV_ENERGY_VPP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "energy/program.h"
#include "wire/site.h"
#include "wire/downlink.h"

#define FV_VPP_RESEND_MS  10000
#define FV_VPP_OFFLINE_MS 30000
#define FV_VPP_REPLAN_MS  5000
#define FV_VPP_TRACK_MS   5000
#define FV_VPP_ID_MAX     48

struct fv_vpp;

/* Opens the service: programs from vpp_json (the config's "vpp" object text; "" = the
 * default ELRP A.4 program, named "elrp"), events and enrolments from db_path, and starts
 * its thread. dl: how commands reach sites. FV_OK, FV_EINVAL (err names the bad key), FV_EIO. */
int fv_vpp_open(const char *vpp_json, const char *db_path, struct fv_downlink dl,
                struct fv_vpp **out, char *err, size_t errlen);
/* Stops the thread and frees the service. NULL is ignored. */
void fv_vpp_close(struct fv_vpp *v);
/* The listener to give the ingest (gateway/session.h fv_ingest_set_listener): `site` samples,
 * `site_command_ack` replies, connections. Valid until fv_vpp_close. */
const struct fv_downlink_listener *fv_vpp_listener(struct fv_vpp *v);

/* Enrols a site in a program (FV_ENOENT: no such program). */
int fv_vpp_enroll(struct fv_vpp *v, const char *site, const char *program, char *err,
                  size_t errlen);
/* Creates an event: target_kw > 0, or max != 0 for every site at its maximum. FV_OK with its
 * id; FV_EINVAL with the reason (unknown program, the program's rules, a bad target). */
int fv_vpp_event_create(struct fv_vpp *v, const char *program, int64_t start_ms, int64_t end_ms,
                        double target_kw, int max, char id[FV_VPP_ID_MAX], char *reason,
                        size_t len);
/* Cancels a scheduled or active event. FV_ENOENT, FV_ESTATE (over already), FV_OK. */
int fv_vpp_event_cancel(struct fv_vpp *v, const char *id);
/* The owner of site opts it out of event (at once, even mid-event). FV_ENOENT, FV_OK. */
int fv_vpp_opt_out(struct fv_vpp *v, const char *site, const char *event, char *err, size_t errlen);

/* JSON views (new references): every event; one event with its per-site status and its
 * tracked delivery (NULL: no such event). Site ids are the devices' ids: the API replaces
 * them as the caller's obligations say. */
json_t *fv_vpp_events_json(struct fv_vpp *v);
json_t *fv_vpp_event_json(struct fv_vpp *v, const char *id);

/* Other demand-response days, declared by an operator (days of programs fleetvault does not
 * run): date "YYYY-MM-DD" (local, in each program's zone) of site, or of every site when site
 * is NULL. Every baseline leaves them out (fv_vpp_event_info). Declaring a day twice changes
 * nothing. FV_OK; FV_EINVAL (err: a bad date or site id, nothing stored); FV_EIO. */
int fv_vpp_dr_day_add(struct fv_vpp *v, const char *site, const char *date, char *err,
                      size_t errlen);
/* {"dr_days": [{"date": "2026-08-10", "site": ID | null (every site)}...]}, ordered by date
 * as loaded then as declared (new reference; NULL: out of memory). */
json_t *fv_vpp_dr_days_json(struct fv_vpp *v);

/* A date a site's baselines leave out. */
struct fv_vpp_site_day {
    char site[65];
    int32_t date; /* yyyymmdd */
};

/* What settling an event needs (fv_vpp_event_info): its program, window, state, the sites
 * it settles (enrolled in its program, not opted out of it), the fleet-wide excluded dates
 * (local, in the event's program's zone: the days of every other event of any program that
 * was not cancelled, and the DR days declared for every site) and each site's own DR days
 * (site_days). Outage days are the settlement's to find, from each site's telemetry. Free
 * with fv_vpp_event_info_free. */
struct fv_vpp_event_info {
    char id[FV_VPP_ID_MAX];
    struct fv_vpp_program program;
    int64_t start_ms, end_ms;
    const char *state;
    char (*sites)[65];
    size_t nsites;
    int32_t *excluded;
    size_t nexcluded;
    struct fv_vpp_site_day *site_days;
    size_t nsite_days;
};
int fv_vpp_event_info(struct fv_vpp *v, const char *id, struct fv_vpp_event_info *out);
void fv_vpp_event_info_free(struct fv_vpp_event_info *info);
/* The completed events of program whose start falls in local year `year`, oldest first:
 * *ids is malloc'd (free it). FV_ENOENT: no such program. */
int fv_vpp_season(struct fv_vpp *v, const char *program, int year, char (**ids)[FV_VPP_ID_MAX],
                  size_t *n);

/* The sites enrolled in program now (program NULL: in any program), each with its latest
 * sample (have 0: none yet) and when it arrived. *out is malloc'd (free it). FV_ENOENT: no
 * such program. */
struct fv_vpp_site_now {
    char id[65];
    int have;
    struct fv_site_sample s;
    int64_t rx_ms;
};
int fv_vpp_sites(struct fv_vpp *v, const char *program, struct fv_vpp_site_now **out, size_t *n);
/* Records the capacity forecast made for an event (shown in its status beside what it
 * delivered). */
void fv_vpp_event_forecast(struct fv_vpp *v, const char *id, double kw);

/* A site's own VPP data (its owner's: GDPR export): its program enrolment, its opt-outs and
 * the DR days declared for it, as {"program": P | null, "opt_outs": [{"event", "at_ms"}],
 * "dr_days": [{"date", "site"}]} (new reference; NULL: none). */
json_t *fv_vpp_site_json(struct fv_vpp *v, const char *site);
/* Erasure: forgets the site (enrolment, opt-outs, its DR days, latest sample) in memory and
 * in vpp.db. */
int fv_vpp_forget_site(struct fv_vpp *v, const char *site);

/* Runs one turn of the service's work now (tests; the thread does it every second). */
void fv_vpp_tick(struct fv_vpp *v, int64_t now_ms);

#endif
