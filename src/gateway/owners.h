/*
 * owners.h - which owner period (data subject, privacy/subjects.h) a device's records and
 * fleet state belong to, on the ingest loop.
 *
 * Rules:
 *  O1 a record belongs to the owner period of its creation time (the V record's created_at;
 *     the receive time for records without one), not of its upload: records a car made
 *     before a change of owner and sends after it are the previous owner's, sealed with that
 *     period's key and stored under its subject. A created_at in the future is the current
 *     period's (it is past every period's start).
 *  O2 the fleet state (latest values, counters) holds the current period's records only: a
 *     record of an earlier period is stored but changes no state; at a change of owner the
 *     state is wiped (fv_device_subject) as soon as the ingest learns of the change (the
 *     registry poll, about two seconds, for a change made by another process such as the
 *     CLI), not at the device's next record; meanwhile the API serves no state whose period
 *     is not the current one (api.c, state_is_current).
 *  O3 cheap per record: the current period (name and start) is cached per device until the
 *     registry changes, and so is the last earlier period a record fell in; only a record
 *     before the current period's start that misses that cache costs a catalog lookup.
 *
 * A record made in the moment between a change of owner and the ingest learning of it is
 * sealed under the previous subject although made after its end: on a single node it is
 * served to neither owner (subjects.h: a subject's records are served only within its
 * period); in a cluster the storage node seals it again under the period of its time
 * (recovery.h fv_recovery_resubject; docs/cluster.md P7).
 *
 * Threading: the ingest loop only (the fleet state writes take fv_fleet_lock, fleet.h F1).
 */
#ifndef FV_GATEWAY_OWNERS_H
#define FV_GATEWAY_OWNERS_H

#include <stdint.h>

#include "crypto/keys.h"
#include "gateway/fleet.h"

/* O1, O3: the subject name a record of d created at t belongs to, for registry generation
 * gen; *current is set when it is the current period's. The pointer is d's (valid until the
 * next call for d). NULL when the registry cannot be read (the record is refused). */
const char *fv_device_record_subject(struct fv_keystore *keys, const struct fv_fleet *fleet,
                                     uint64_t gen, struct fv_device *d, int64_t t, int *current);

/* O2: finds the devices of fleet whose owner period changed since *cursor (subjects.h,
 * fv_subjects_opened_since; *cursor -1 the first time: nothing is reported) and looks their
 * subject up again for registry generation gen, wiping their state. */
void fv_owners_sweep(struct fv_keystore *keys, struct fv_fleet *fleet, uint64_t gen,
                     int64_t *cursor);

#endif
