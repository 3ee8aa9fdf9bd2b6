/*
 * minimise.c - data minimisation at ingest (minimise.h: M1-M3).
 *
 * Threads: the ingest loop only.
 */
#include <stdio.h>
#include <string.h>

#include "gateway/minimise.h"
#include "privacy/subjects.h"
#include "util/clock.h"
#include "util/err.h"

void fv_minimiser_init(struct fv_minimiser *mz, const struct fv_policy *policy,
                       const struct fv_store_config *store_cfg, struct fv_keystore *keys)
{
    memset(mz, 0, sizeof *mz);
    mz->store_cfg = store_cfg;
    mz->keys = keys;
    mz->policy = policy;
    const struct fv_policy *pol = policy;
    const struct fv_store_config *sc = store_cfg;
    for (uint32_t c = 0; pol && c < sc->nclasses; c++) {
        if (c == sc->events_class) continue;
        int bit = fv_policy_class_id(pol, sc->class_name[c]);
        if (bit < 0) continue; /* a class the policy does not name: nobody reads it; kept */
        int contract = 0;
        for (size_t pi = 0; pi < fv_policy_npurposes(pol); pi++) {
            const char *purpose = fv_policy_purpose_name(pol, pi);
            int used = 0;
            for (size_t r = 0; r < fv_policy_nroles(pol) && !used; r++)
                used = (fv_policy_classes(pol, fv_policy_role_name(pol, r), purpose) >> bit) & 1;
            if (!used) continue;
            if (strcmp(purpose, FV_SUBJECT_CONTRACT) == 0) contract = 1;
            if (mz->nclass_purposes[c] < FV_POLICY_MAX_PURPOSES)
                snprintf(mz->class_purposes[c][mz->nclass_purposes[c]++],
                         sizeof mz->class_purposes[0][0], "%s", purpose);
        }
        if (!contract) mz->consent_classes |= 1u << c;
    }
}

/* The store classes subject (the device's current period, or the earlier one a record fell
 * in: owners.h) lets us keep: classes needing consent are kept only while some purpose that
 * uses them has it (cached per device and period, per registry change). */
uint32_t fv_minimiser_keep(struct fv_minimiser *mz, struct fv_device *d, const char *subject,
                           int current, uint64_t gen_now)
{
    if (mz->consent_classes == 0) return UINT32_MAX;
    uint64_t *gen = current ? &d->keep_gen : &d->past_keep_gen;
    uint32_t *cached = current ? &d->keep_classes : &d->past_keep;
    if (*gen == gen_now + 1) return *cached;
    uint32_t keep = UINT32_MAX;
    struct fv_purposes pp = {.policy = mz->policy};
    for (uint32_t c = 0; c < mz->store_cfg->nclasses; c++) {
        if (!(mz->consent_classes >> c & 1)) continue;
        int any = 0;
        for (int k = 0; k < mz->nclass_purposes[c] && !any; k++) {
            int granted = 0;
            if (fv_consent_at(mz->keys, &pp, subject, mz->class_purposes[c][k],
                              (int64_t)fv_now_ms(), &granted) == FV_OK)
                any = granted;
        }
        if (!any) keep &= ~(1u << c);
    }
    *cached = keep;
    *gen = gen_now + 1;
    return keep;
}

size_t fv_minimise(const struct fv_minimiser *mz, struct fv_vrecord *v, uint32_t keep,
                   struct fv_buf *norm)
{
    size_t w = 0, dropped = 0;
    for (size_t i = 0; i < v->n; i++) {
        uint32_t f = v->data[i].field;
        uint8_t c = f < FV_STORE_FIELD_TABLE ? mz->store_cfg->class_of[f] : 0;
        if (keep >> c & 1) {
            v->data[w++] = v->data[i];
        } else {
            fv_value_clear(&v->data[i].value);
            dropped++;
        }
    }
    v->n = w;
    if (dropped) {
        struct fv_buf b = {0};
        if (fv_payload_encode_v(v, &b) == FV_OK) {
            fv_buf_free(norm);
            *norm = b;
        } else {
            fv_buf_free(&b);
        }
    }
    return dropped;
}
