/* erasure.c - Art. 17 erasure and the erasure list's replay (erasure.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/keys.h"
#include "privacy/erasure.h"
#include "privacy/subjects.h"
#include "privacy/tombstones.h"
#include "privacy/zones.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define MAX_PERIODS 64

struct period_names {
    char names[MAX_PERIODS][FV_SUBJECT_NAME_MAX + 1];
    size_t n;
};

static int collect_period(void *arg, const struct fv_subject_period *p)
{
    struct period_names *pn = arg;
    if (pn->n == MAX_PERIODS) return FV_ELIMIT;
    snprintf(pn->names[pn->n++], sizeof pn->names[0], "%s", p->name);
    return 0;
}

int fv_erasure_erase(struct fv_erasure *e, struct fv_store *store, const char *device,
                     const char *by, const char *ticket, char *err, size_t errlen)
{
    if (e->outside[0] == '\0') {
        fv_seterr(err, errlen,
                  "no erasure list outside the data directory: the master key comes from "
                  "FV_MASTER_KEY, so set FV_TOMBSTONE_DIR to a directory outside DATA (backed up "
                  "apart from it) and restart; nothing was erased (a restored backup would bring "
                  "the data back)");
        return FV_ESTATE;
    }
    struct period_names *pn = calloc(1, sizeof *pn);
    if (pn == NULL) return FV_ENOMEM;
    /* Every owner period of the device is a subject of its own; all of them go. */
    int rc = fv_subject_periods(e->keys, device, collect_period, pn, err, errlen);
    if (rc == FV_OK && pn->n == 0) snprintf(pn->names[pn->n++], sizeof pn->names[0], "%s", device);
    uint64_t now = fv_now_ms();
    for (size_t k = 0; rc == FV_OK && k < pn->n; k++) {
        char pseudo[FV_PSEUDONYM_LEN + 1];
        rc = fv_keystore_pseudonym(e->keys, pn->names[k], pseudo);
        if (rc == FV_OK) rc = fv_tombstone_append(e->outside, pseudo, now, by, ticket, err, errlen);
        if (rc == FV_OK) rc = fv_tombstone_append(e->inside, pseudo, now, by, ticket, err, errlen);
        if (rc == FV_OK) rc = fv_subjects_forget(e->keys, pn->names[k], err, errlen);
        if (rc == FV_OK) rc = fv_zones_forget(e->keys, pn->names[k], err, errlen);
        if (rc == FV_OK) rc = fv_keystore_destroy_pseudo(e->keys, pseudo, err, errlen);
        if (rc == FV_OK && e->purge) rc = e->purge(e->purge_arg, pseudo, err, errlen);
        if (rc == FV_OK) {
            if (store) fv_store_purge(store, pseudo);
            fv_info("erased subject %s (data key destroyed; its blocks are purged in the "
                    "background)",
                    pseudo);
        }
    }
    free(pn);
    return rc;
}

/* Replays one tombstone into the catalog, and remembers the subject so that, once the store
 * is open, its blocks still in parts are purged. */
static int replay_tombstone(void *arg, const char *pseudo, uint64_t at_ms)
{
    struct fv_erasure *e = arg;
    const unsigned char *dek;
    const char *name;
    if (fv_buf_append(&e->erased, pseudo, FV_PSEUDONYM_LEN) != FV_OK) return FV_ENOMEM;
    int rc = fv_keystore_subject(e->keys, pseudo, &dek, &name);
    if (rc == FV_ESTATE) return FV_OK; /* erased already */
    char err[256];
    if (rc == FV_OK)
        fv_warn("erasure list: subject %s was erased at %llu but its key is back (a restored "
                "backup?): destroying it again",
                pseudo, (unsigned long long)at_ms);
    rc = fv_keystore_destroy_pseudo(e->keys, pseudo, err, sizeof err);
    if (rc == FV_OK) rc = fv_zones_forget_pseudo(e->keys, pseudo, err, sizeof err);
    if (rc) fv_error("erasure list: %s", err);
    return rc;
}

int fv_erasure_open(struct fv_erasure *e, struct fv_keystore *keys, const char *key_file,
                    const char *data_dir, char *err, size_t errlen)
{
    memset(e, 0, sizeof *e);
    e->keys = keys;
    const char *tdir = getenv("FV_TOMBSTONE_DIR");
    if (tdir && tdir[0]) {
        char rt[PATH_MAX], rd[PATH_MAX];
        if (realpath(tdir, rt) == NULL || realpath(data_dir, rd) == NULL) {
            fv_seterr(err, errlen, "FV_TOMBSTONE_DIR %s: %s", tdir, strerror(errno));
            return FV_EINVAL;
        }
        size_t n = strlen(rd);
        if (strncmp(rt, rd, n) == 0 && (rt[n] == '/' || rt[n] == '\0')) {
            fv_seterr(err, errlen,
                      "FV_TOMBSTONE_DIR %s is inside the data directory: the erasure list must "
                      "survive a restored backup of DATA; put it beside the master key",
                      tdir);
            return FV_EINVAL;
        }
        snprintf(e->outside, sizeof e->outside, "%s/tombstones.jsonl", tdir);
        if (key_file && key_file[0])
            snprintf(e->beside_key, sizeof e->beside_key, "%s.tombstones", key_file);
    } else if (key_file && key_file[0]) {
        snprintf(e->outside, sizeof e->outside, "%s.tombstones", key_file);
    } else {
        fv_warn("no erasure list outside the data directory (the master key comes from "
                "FV_MASTER_KEY and FV_TOMBSTONE_DIR is not set): erasure is refused until it "
                "is");
    }
    snprintf(e->inside, sizeof e->inside, "%s/tombstones.jsonl", data_dir);
    int rc = FV_OK;
    if (e->outside[0]) rc = fv_tombstone_replay(e->outside, replay_tombstone, e, err, errlen);
    if (rc == FV_OK && e->beside_key[0])
        rc = fv_tombstone_replay(e->beside_key, replay_tombstone, e, err, errlen);
    if (rc == FV_OK) rc = fv_tombstone_replay(e->inside, replay_tombstone, e, err, errlen);
    return rc;
}

int fv_erasure_purge_restored(struct fv_erasure *e, struct fv_store *store)
{
    int rc = FV_OK;
    for (size_t at = 0; rc == FV_OK && at + FV_PSEUDONYM_LEN <= e->erased.len;
         at += FV_PSEUDONYM_LEN) {
        char pseudo[FV_PSEUDONYM_LEN + 1];
        memcpy(pseudo, e->erased.data + at, FV_PSEUDONYM_LEN);
        pseudo[FV_PSEUDONYM_LEN] = '\0';
        rc = fv_store_purge(store, pseudo);
        char err[256];
        if (rc == FV_OK && e->purge && (rc = e->purge(e->purge_arg, pseudo, err, sizeof err)))
            fv_error("erasure list: %s", err);
    }
    fv_buf_free(&e->erased);
    return rc;
}

void fv_erasure_close(struct fv_erasure *e)
{
    fv_buf_free(&e->erased);
}
