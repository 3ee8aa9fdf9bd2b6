/*
 * policy_int.h - internal to the access policy in src/privacy; not a public contract
 * (policy.h is). The loaded policy's layout, which policy_file.c fills and policy.c
 * decides on, and the two helpers both use (fv_policy__*; everything else stays static).
 * Nothing outside policy*.c includes this file.
 *
 * Threads: a struct fv_policy is immutable once loaded; the helpers are reentrant.
 */
#ifndef FV_PRIVACY_POLICY_INT_H
#define FV_PRIVACY_POLICY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "privacy/policy.h"

struct role {
    char name[FV_POLICY_NAME_MAX + 1];
    unsigned actions;  /* bit per enum fv_action */
    uint32_t purposes; /* bit per purpose */
    uint32_t classes[FV_POLICY_MAX_PURPOSES];
    bool requires_ticket, aggregate_only, pseudonymise, consented_only, location_privacy,
        energy_sites_only, approves_bulk;
    uint64_t max_subjects;   /* FV_UNLIMITED: no limit */
    uint64_t bulk_threshold; /* FV_UNLIMITED: never needs approval */
    struct fv_quota_limits quota;
    struct fv_quota_limits role_quota;         /* all the role's principals together */
    uint64_t agg_min_step_ms, agg_min_records; /* aggregate_only: P8 */
};

struct fv_policy {
    size_t npurposes, nclasses, nroles;
    char purpose[FV_POLICY_MAX_PURPOSES][FV_POLICY_NAME_MAX + 1];
    char class_name[FV_POLICY_MAX_CLASSES][FV_POLICY_NAME_MAX + 1];
    struct role role[FV_POLICY_MAX_ROLES];
};

/* The index of name among names[0..n), or -1 (also for a NULL name). */
int fv_policy__find_name(const char (*names)[FV_POLICY_NAME_MAX + 1], size_t n, const char *name);

/* Copies s for a message: at most 48 bytes, anything unprintable as '?', so neither a
 * policy file nor a request can put control characters into a log line. Returns out. */
const char *fv_policy__printable(char out[52], const char *s);

#endif
