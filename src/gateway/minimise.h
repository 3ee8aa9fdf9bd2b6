/*
 * minimise.h - data minimisation at ingest (docs/privacy.md, issue 4): a datum of a store
 * class that needs consent is stored only while some purpose that uses the class has the
 * subject's consent; a class that a contract purpose uses is always stored.
 *
 *  M1 the classes needing consent and, per class, the purposes using it come from the policy
 *     once, at fv_minimiser_init; a class the policy does not name is kept (nobody reads it);
 *  M2 what a device's subject lets us keep is cached on the device per registry generation
 *     (its current owner period and the last earlier one apart), so a consent change is seen
 *     on the first record after the caller bumps its generation;
 *  M3 fv_minimise drops the datums of classes not kept and re-encodes the payload; a record
 *     left empty is the caller's to acknowledge without storing.
 *
 * Threads: the ingest loop only (it reads the device's cached fields and the keystore the
 * ingest uses).
 */
#ifndef FV_GATEWAY_MINIMISE_H
#define FV_GATEWAY_MINIMISE_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/fleet.h"
#include "privacy/policy.h"
#include "store/store.h"
#include "util/buf.h"
#include "wire/payload.h"

struct fv_keystore;

struct fv_minimiser {
    const struct fv_store_config *store_cfg;
    struct fv_keystore *keys;
    const struct fv_policy *policy;
    uint32_t consent_classes; /* store classes that need some consent to be stored */
    char class_purposes[FV_STORE_MAX_CLASSES][FV_POLICY_MAX_PURPOSES][FV_POLICY_NAME_MAX + 1];
    int nclass_purposes[FV_STORE_MAX_CLASSES];
};

/* M1. policy may be NULL (nothing needs consent). Every pointer must outlive mz. */
void fv_minimiser_init(struct fv_minimiser *mz, const struct fv_policy *policy,
                       const struct fv_store_config *store_cfg, struct fv_keystore *keys);

/* M2: the store classes subject lets us keep, as a bit set (UINT32_MAX: all). current: the
 * device's current owner period (else an earlier one a record fell in); gen: the caller's
 * registry generation. */
uint32_t fv_minimiser_keep(struct fv_minimiser *mz, struct fv_device *d, const char *subject,
                           int current, uint64_t gen);

/* M3: drops from v the datums of classes not in keep and re-encodes the payload into norm
 * (left as it was when nothing is dropped or the encoding fails). Returns the number dropped. */
size_t fv_minimise(const struct fv_minimiser *mz, struct fv_vrecord *v, uint32_t keep,
                   struct fv_buf *norm);

#endif
