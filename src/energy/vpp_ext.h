/*
 * vpp_ext.h - what the VPP service offers events that come from outside fleetvault (an
 * OpenADR VTN, openadr/ven.h): a change of an existing event, the fleet's capacity for a
 * window, and fleet-wide aggregates for reports. The service and its rules are vpp.h.
 *
 *  X1 fv_vpp_event_update changes a scheduled or active event's window and target under the
 *     same program rules as a new event (its own hours are not counted twice against the
 *     yearly cap); refused with a reason, nothing changes. An active event is re-planned at
 *     the service's next turn (its sites get the new setpoints).
 *  X2 Aggregates only: no function here returns a site, a sample or an owner.
 *
 * Threads: any thread; each call takes the service's mutex for in-memory work (and one
 * SQLite statement for an update), as the calls of vpp.h do.
 */
#ifndef FV_ENERGY_VPP_EXT_H
#define FV_ENERGY_VPP_EXT_H

#include <stddef.h>
#include <stdint.h>

#include "energy/vpp.h"

/* X1. FV_OK; FV_ENOENT (no such event); FV_ESTATE (over already); FV_EINVAL with the reason
 * (the program's rules, a bad target). */
int fv_vpp_event_update(struct fv_vpp *v, const char *id, int64_t start_ms, int64_t end_ms,
                        double target_kw, int max, char *reason, size_t len);

/* The kW the sites enrolled in program could deliver together over [start_ms, end_ms) from
 * their latest samples (each site's deliverable power for the window's length, dispatch.h;
 * offline sites count 0). FV_ENOENT: no such program. */
int fv_vpp_capacity_now(struct fv_vpp *v, const char *program, int64_t start_ms, int64_t end_ms,
                        double *kw);

/* The fleet of a program now (X2): delivered kW (battery discharge of online sites), stored
 * and available (above reserve) energy in kWh, deliverable kW for the next hour, sites
 * enrolled and online. program NULL: every enrolled site. */
struct fv_vpp_fleet_now {
    double delivered_kw, stored_kwh, available_kwh, deliverable_kw;
    size_t sites, online;
};
int fv_vpp_fleet_now(struct fv_vpp *v, const char *program, struct fv_vpp_fleet_now *out);

/* An event's state ("scheduled", "active", "completed", "cancelled") and its tracked target
 * and delivered kW now (0 when not active). FV_ENOENT. */
int fv_vpp_event_now(struct fv_vpp *v, const char *id, const char **state, double *target_kw,
                     double *delivered_kw);

#endif
