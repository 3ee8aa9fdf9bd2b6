/* recovery.c - start-up recovery of the store's head and the fleet state (recovery.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypto/certs.h"
#include "crypto/keys.h"
#include "gateway/recovery.h"
#include "gateway/session.h"
#include "privacy/subjects.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "wal/sealed.h"
#include "wal/wal_format.h"
#include "wire/payload.h"

/* A record not yet in the store: into the head and the fleet state. */
static int take(struct fv_recovery *rv, const struct fv_wal_record *r, const char *pseudo,
                const char *ct, const unsigned char *dek)
{
    int rc;
    struct fv_buf plain = {0};
    char id[FV_DEVICE_ID_MAX + 1];
    rc = fv_wal_open_payload(rv->keys, r, &plain, id, sizeof id);
    if (rc) {
        fv_buf_free(&plain);
        return rc; /* FV_ECORRUPT: a sealed payload was altered; replay names the place */
    }
    int is_v = r->topic_len == 1 && r->topic[0] == 'V';
    struct fv_vrecord v = {0};
    if (is_v && fv_payload_decode_v(plain.data, plain.len, &v, NULL, 0) != FV_OK)
        is_v = 0; /* stored before validation existed: kept as an event */
    int64_t t = (int64_t)((is_v && v.created_at_ms) ? v.created_at_ms : r->received_ms);
    rc = is_v ? fv_store_add_frame(rv->store, pseudo, dek, t, r->received_ms, &v)
              : fv_store_add_event(rv->store, pseudo, dek, t, r->received_ms, r->topic,
                                   r->topic_len, plain.data, plain.len);
    fv_buf_free(&plain);
    if (rc == FV_OK && !(r->flags & FV_WAL_F_GENERATED)) {
        /* The record's subject may be an earlier owner period: its txid still counts for
         * de-duplication, its values not for the current owner's state. */
        char dev_id[FV_SUBJECT_NAME_MAX + 1];
        int ep_;
        if (fv_subject_parse(id, dev_id, &ep_) != FV_OK) snprintf(dev_id, sizeof dev_id, "%s", id);
        struct fv_device *d = fv_fleet_device(rv->fleet, dev_id, ct);
        if (d == NULL) rc = FV_ENOMEM;
        if (rc == FV_OK && r->txid_len) rc = fv_device_add_txid(d, r->txid, r->txid_len);
        const struct fv_fleet *fl = rv->live ? rv->fleet : NULL;
        if (rc == FV_OK && strcmp(fv_device_subject(rv->keys, fl, 0, d), id) == 0) {
            if (fl) fv_fleet_lock(fl); /* F1: the API thread reads it */
            rc = fv_device_apply(d, (uint64_t)t, r->received_ms, is_v ? &v : NULL);
            if (fl) fv_fleet_unlock(fl);
        }
    }
    fv_vrecord_free(&v);
    return rc;
}

/* The record's subject and data key: FV_OK, FV_ESTATE (erased: counted), FV_EPROTO (written
 * before sealing existed: not served), FV_ENOENT (no key). */
static int lookup(struct fv_recovery *rv, const struct fv_wal_record *r,
                  char pseudo[FV_DEVICE_ID_MAX + 1], char ct[32], const unsigned char **dek,
                  const char **name)
{
    snprintf(pseudo, FV_DEVICE_ID_MAX + 1, "%.*s", (int)r->device_id_len, r->device_id);
    snprintf(ct, 32, "%.*s", (int)r->client_type_len, r->client_type);
    int rc =
        (r->flags & FV_WAL_F_SEALED) ? fv_keystore_subject(rv->keys, pseudo, dek, name) : FV_EPROTO;
    if (rc == FV_ESTATE) rv->metrics->shredded_records++; /* its key is gone, so is the record */
    return rc;
}

int fv_recovery_ready(void *arg, const struct fv_wal_record *r)
{
    struct fv_recovery *rv = arg;
    if (!(r->flags & FV_WAL_F_SEALED) || r->device_id_len != FV_PSEUDONYM_LEN) return FV_OK;
    char pseudo[FV_PSEUDONYM_LEN + 1];
    snprintf(pseudo, sizeof pseudo, "%.*s", (int)r->device_id_len, r->device_id);
    const unsigned char *dek;
    const char *name;
    int rc = fv_keystore_subject(rv->keys, pseudo, &dek, &name);
    if (rc != FV_ENOENT && rc != FV_EIO) return FV_OK;
    rv->metrics->key_waits++;
    return FV_EAGAIN;
}

int fv_recovery_take(struct fv_recovery *rv, const struct fv_wal_record *r)
{
    char pseudo[FV_DEVICE_ID_MAX + 1], ct[32];
    const unsigned char *dek;
    const char *name;
    int rc = lookup(rv, r, pseudo, ct, &dek, &name);
    if (rc == FV_ESTATE || rc == FV_EPROTO) return FV_OK;
    return rc ? rc : take(rv, r, pseudo, ct, dek);
}

int fv_recovery_replay(void *arg, const struct fv_wal_record *r, const char *file, uint64_t off)
{
    (void)off;
    struct fv_recovery *rv = arg;
    rv->metrics->replayed_records++;
    char pseudo[FV_DEVICE_ID_MAX + 1], ct[32];
    const unsigned char *dek;
    const char *name;
    int rc = lookup(rv, r, pseudo, ct, &dek, &name);
    if (rc == FV_ESTATE) return FV_OK; /* erased */
    if (rc == FV_ENOENT) {
        /* Never erased, yet no key: the catalog was lost or replaced. Starting would hide
         * the device's data as if erased, so refuse. */
        fv_error("no data key for device %s in the catalog (DATA/catalog.db lost or replaced?)",
                 pseudo);
        return rc;
    }
    if (rc == FV_EPROTO) return FV_OK; /* written before sealing existed: not served */
    if (rc) return rc;
    int in_store = fv_wal_file_no(file) <= rv->store_wal_hi;
    if (in_store) {
        /* Already in the store (and in the fleet state rebuilt from it): this file is kept
         * only so that late resends of its records are recognised. */
        char dev_id[FV_SUBJECT_NAME_MAX + 1];
        int ep_;
        if (fv_subject_parse(name, dev_id, &ep_) != FV_OK)
            snprintf(dev_id, sizeof dev_id, "%s", name);
        if (r->txid_len && !(r->flags & FV_WAL_F_GENERATED)) {
            struct fv_device *d = fv_fleet_device(rv->fleet, dev_id, ct);
            if (d == NULL || fv_device_add_txid(d, r->txid, r->txid_len) != FV_OK) return FV_ENOMEM;
        }
        return FV_OK;
    }
    return take(rv, r, pseudo, ct, dek);
}

/* Rebuilds the fleet state of every device held in the store's parts: counters from the part
 * indexes (nothing decrypted), the latest value of each signal from its newest blocks. */
static int rebuild_subject(void *arg, const struct fv_store_subject *su)
{
    struct fv_recovery *rv = arg;
    const unsigned char *dek;
    const char *name;
    int rc = fv_keystore_subject(rv->keys, su->pseudo, &dek, &name);
    if (rc == FV_ESTATE) return FV_OK; /* erased; compaction purges its blocks */
    if (rc == FV_ENOENT) {
        fv_error("no data key for subject %s held in the store (DATA/catalog.db lost or "
                 "replaced?)",
                 su->pseudo);
        return rc;
    }
    if (rc) return rc;
    char dev_id[FV_SUBJECT_NAME_MAX + 1];
    int ep_;
    if (fv_subject_parse(name, dev_id, &ep_) != FV_OK) snprintf(dev_id, sizeof dev_id, "%s", name);
    struct fv_device *d = fv_fleet_device(rv->fleet, dev_id, "");
    if (d == NULL) return FV_ENOMEM;
    if (strcmp(fv_device_subject(rv->keys, NULL, 0, d), name) != 0)
        return FV_OK; /* an earlier owner's */
    struct fv_store_cursor *cur;
    char err[512];
    /* The latest value of most signals is in the newest day of frames. */
    int64_t top = su->max_frame_t;
    /* A far-future frame (a device clock gone wrong) must not hide the real recent ones:
     * the latest state ignores times past the tolerance anyway (fleet.h). */
    int64_t horizon = (int64_t)fv_now_ms() + FV_FLEET_FUTURE_MS;
    if (top > horizon) top = horizon;
    int64_t from = top > INT64_MIN + 86400000 ? top - 86400000 : top;
    rc = fv_store_query(rv->store, su->pseudo, dek, from, top, NULL, 0, 0, &cur, err, sizeof err);
    if (rc) return rc;
    uint64_t records = d->records, datums = d->datums;
    struct fv_store_chunk ch;
    struct fv_datum *tmp = NULL;
    while (rc == FV_OK && (rc = fv_store_next(cur, &ch, err, sizeof err)) == 1) {
        rc = FV_OK;
        struct fv_datum *m = realloc(tmp, (ch.ncols ? ch.ncols : 1) * sizeof *m);
        if (m == NULL) {
            rc = FV_ENOMEM;
            break;
        }
        tmp = m;
        for (size_t i = 0; i < ch.n && rc == FV_OK; i++) {
            struct fv_vrecord v = {.created_at_ms = (uint64_t)ch.t[i], .data = tmp};
            for (size_t j = 0; j < ch.ncols; j++)
                if (ch.col[j][i].kind != FV_VK_NONE)
                    tmp[v.n++] = (struct fv_datum){ch.field[j], ch.col[j][i]};
            rc = fv_device_apply(d, (uint64_t)ch.t[i], 0, &v);
        }
    }
    free(tmp);
    fv_store_cursor_free(cur);
    if (rc == FV_ECORRUPT) {
        /* One damaged block must not keep the fleet from being served: say where it is;
         * queries that touch it fail with the same message. */
        fv_error("store: %s (subject %s: latest state not rebuilt)", err, su->pseudo);
        rc = FV_OK;
    } else if (rc < 0) {
        fv_error("store: %s", err);
        return rc;
    }
    d->records = records + su->records;
    d->datums = datums + su->datums;
    if (su->min_t > 0 && (d->first_ms == 0 || (uint64_t)su->min_t < d->first_ms))
        d->first_ms = (uint64_t)su->min_t;
    return FV_OK;
}

int fv_recovery_rebuild(struct fv_recovery *r)
{
    return fv_store_subjects(r->store, rebuild_subject, r);
}

/* The record's time as take() has it: a V record's created_at, else its receive time. */
static int64_t record_time(const struct fv_wal_record *r, const struct fv_buf *plain)
{
    int64_t t = (int64_t)r->received_ms;
    if (r->topic_len == 1 && r->topic[0] == 'V') {
        struct fv_vrecord v = {0};
        if (fv_payload_decode_v(plain->data, plain->len, &v, NULL, 0) == FV_OK && v.created_at_ms)
            t = (int64_t)v.created_at_ms;
        fv_vrecord_free(&v);
    }
    return t;
}

int fv_recovery_resubject(void *arg, struct fv_wal_record *r)
{
    struct fv_recovery *rv = arg;
    char pseudo[FV_DEVICE_ID_MAX + 1], ct[32];
    const unsigned char *dek;
    const char *name;
    if (lookup(rv, r, pseudo, ct, &dek, &name) != FV_OK) return FV_OK; /* take decides */
    char dev_id[FV_SUBJECT_NAME_MAX + 1], target[FV_SUBJECT_NAME_MAX + 1];
    int epoch, cur_epoch, t_epoch;
    if (fv_subject_parse(name, dev_id, &epoch) != FV_OK) return FV_OK;
    struct fv_device *d = fv_fleet_device(rv->fleet, dev_id, ct);
    if (d == NULL) return FV_ENOMEM;
    const char *cur = fv_device_subject(rv->keys, rv->live ? rv->fleet : NULL, 0, d);
    char cur_dev[FV_SUBJECT_NAME_MAX + 1];
    /* the common case, no decryption: the record is the current period's, or a later one's */
    if (strcmp(cur, name) == 0 || fv_subject_parse(cur, cur_dev, &cur_epoch) != FV_OK ||
        epoch >= cur_epoch)
        return FV_OK;
    fv_buf_reset(&rv->rs_plain);
    char id[FV_DEVICE_ID_MAX + 1];
    if (fv_wal_open_payload(rv->keys, r, &rv->rs_plain, id, sizeof id) != FV_OK) return FV_OK;
    int64_t t = record_time(r, &rv->rs_plain), since, until;
    if (fv_subject_period_at(rv->keys, dev_id, t, target, &t_epoch, &since, &until) != FV_OK ||
        t_epoch <= epoch)
        return FV_OK; /* its own period's (made before the change), or not known here */
    const unsigned char *dek2;
    if (fv_keystore_dek(rv->keys, target, 0, &dek2, rv->rs_pseudo) != FV_OK) {
        fv_warn("cluster: a record of subject %s belongs to a later owner period, whose key is "
                "not here; stored under its own subject",
                pseudo);
        return FV_OK;
    }
    struct fv_wal_record n = *r;
    n.device_id = rv->rs_pseudo;
    n.device_id_len = FV_PSEUDONYM_LEN;
    n.payload = NULL;
    n.payload_len = 0;
    fv_buf_reset(&rv->rs_aad);
    fv_buf_reset(&rv->rs_seal);
    int rc = fv_wal_record_aad(&n, &rv->rs_aad);
    if (rc == FV_OK)
        rc = fv_seal(dek2, rv->rs_aad.data, rv->rs_aad.len, rv->rs_plain.data, rv->rs_plain.len,
                     &rv->rs_seal);
    OPENSSL_cleanse(rv->rs_plain.data, rv->rs_plain.len);
    if (rc) return rc;
    n.payload = rv->rs_seal.data;
    n.payload_len = (uint32_t)rv->rs_seal.len;
    *r = n;
    rv->metrics->resubjected++;
    fv_info("cluster: a record of subject %s made in a later owner period: stored under that "
            "period's subject %s",
            pseudo, rv->rs_pseudo);
    return FV_OK;
}

void fv_recovery_free(struct fv_recovery *rv)
{
    fv_buf_free(&rv->rs_plain);
    fv_buf_free(&rv->rs_aad);
    fv_buf_free(&rv->rs_seal);
}
