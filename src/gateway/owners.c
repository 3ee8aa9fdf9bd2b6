/* owners.c - see owners.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/owners.h"
#include "crypto/keys.h"
#include "gateway/session.h"
#include "privacy/subjects.h"
#include "util/err.h"
#include "util/log.h"

/* The device's current subject (session.h), looked up again per registry generation; a
 * new owner period wipes its fleet state (O2). */
const char *fv_device_subject(struct fv_keystore *keys, const struct fv_fleet *fleet, uint64_t gen,
                              struct fv_device *d)
{
    if (d->subject[0] && d->subject_gen == gen) return d->subject;
    char name[FV_SUBJECT_NAME_MAX + 1];
    int64_t since, until;
    if (fv_subject_period_at(keys, d->id, INT64_MAX, name, NULL, &since, &until) != FV_OK) {
        snprintf(name, sizeof name, "%s", d->id);
        since = FV_SUBJECT_ORIGIN;
    }
    if (fleet) fv_fleet_lock(fleet); /* F1: the API reads subject with the state */
    int changed = d->subject[0] && strcmp(d->subject, name) != 0;
    if (changed) { /* the previous owner's state is theirs: none of it is served from now on */
        fv_device_wipe(d);
        d->last_received_ms = 0;
    }
    snprintf(d->subject, sizeof d->subject, "%s", name);
    if (fleet) fv_fleet_unlock(fleet);
    if (changed) {
        char ps[FV_PSEUDONYM_LEN + 1];
        if (fv_keystore_pseudonym(keys, d->id, ps) != FV_OK) snprintf(ps, sizeof ps, "?");
        fv_info("device dev-%s: a new owner period began; its fleet state starts empty", ps);
    }
    d->subject_since = since;
    d->subject_gen = gen;
    return d->subject;
}

const char *fv_device_record_subject(struct fv_keystore *keys, const struct fv_fleet *fleet,
                                     uint64_t gen, struct fv_device *d, int64_t t, int *current)
{
    const char *cur = fv_device_subject(keys, fleet, gen, d);
    *current = 1;
    if (t >= d->subject_since) return cur; /* O3: the common case, no lookup */
    *current = 0;
    if (d->past_gen == gen + 1 && t >= d->past_since && t < d->past_until) return d->past_subject;
    char name[FV_SUBJECT_NAME_MAX + 1];
    int64_t since, until;
    if (fv_subject_period_at(keys, d->id, t, name, NULL, &since, &until) != FV_OK) return NULL;
    if (strcmp(name, cur) == 0) { /* the registry moved on meanwhile: it is current after all */
        *current = 1;
        return cur;
    }
    memcpy(d->past_subject, name, sizeof name);
    d->past_since = since;
    d->past_until = until;
    d->past_gen = gen + 1;
    d->past_keep_gen = 0;
    return d->past_subject;
}

struct sweep {
    struct fv_keystore *keys;
    struct fv_fleet *fleet;
    uint64_t gen;
    struct fv_device **all;
    size_t n;
    char (*pseudo)[FV_PSEUDONYM_LEN + 1]; /* of all[i]->id, made at the first change */
};

static int on_opened(void *arg, const char *device_pseudonym)
{
    struct sweep *s = arg;
    if (s->pseudo == NULL) {
        if (fv_fleet_list(s->fleet, &s->all, &s->n) != FV_OK) return FV_ENOMEM;
        s->pseudo = calloc(s->n ? s->n : 1, sizeof *s->pseudo);
        if (s->pseudo == NULL) return FV_ENOMEM;
        for (size_t i = 0; i < s->n; i++)
            if (fv_keystore_pseudonym(s->keys, s->all[i]->id, s->pseudo[i]) != FV_OK)
                s->pseudo[i][0] = '\0';
    }
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->pseudo[i], device_pseudonym) == 0)
            fv_device_subject(s->keys, s->fleet, s->gen, s->all[i]); /* O2: wipes */
    return FV_OK;
}

void fv_owners_sweep(struct fv_keystore *keys, struct fv_fleet *fleet, uint64_t gen,
                     int64_t *cursor)
{
    struct sweep s = {.keys = keys, .fleet = fleet, .gen = gen};
    int rc = fv_subjects_opened_since(keys, cursor, on_opened, &s);
    if (rc)
        fv_warn("owners: new owner periods could not be read (%s); a device's state is wiped "
                "at its next record instead",
                fv_strerror(rc));
    free(s.pseudo);
    free(s.all);
}
