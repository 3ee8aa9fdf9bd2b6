/*
 * recovery.h - start-up: the storage side takes back what the record log holds beyond the
 * store's parts, and the gateway's fleet state (latest values, counters, de-duplication
 * windows) is rebuilt from the parts and the log.
 *
 * Order (server.c): the store opens; fv_recovery_rebuild reads every subject the parts hold
 * (counters from the indexes, latest values from the newest day of frames); then the WAL
 * opens with fv_recovery_replay as its replay function: records in files the parts already
 * cover only refill the de-duplication windows, the others go into the store's head and the
 * fleet state. Records of erased subjects (key destroyed) are skipped and counted.
 *
 * Threads: the starting thread, before the loop runs; fv_recovery_take on a storage node's
 * loop (with live set: the API thread runs).
 */
#ifndef FV_GATEWAY_RECOVERY_H
#define FV_GATEWAY_RECOVERY_H

#include <stdint.h>

#include "crypto/keys.h"
#include "gateway/fleet.h"
#include "gateway/metrics.h"
#include "store/store.h"
#include "wal/wal.h"

struct fv_recovery {
    struct fv_keystore *keys;
    struct fv_store *store;
    struct fv_fleet *fleet;
    struct fv_metrics *metrics; /* replayed_records, shredded_records, key_waits */
    uint64_t store_wal_hi;      /* WAL files <= this are already in the parts */
    int live;                   /* other threads run (fv_recovery_take on a storage node):
                                   the fleet is written under F1 */
    /* fv_recovery_resubject's: the rewritten record's subject and payload, until the next */
    char rs_pseudo[FV_PSEUDONYM_LEN + 1];
    struct fv_buf rs_plain, rs_aad, rs_seal;
};

/* The fleet state of every subject held in the store's parts. FV_OK or an error (a lost
 * catalog: FV_ENOENT); a damaged block is logged and skipped. */
int fv_recovery_rebuild(struct fv_recovery *r);

/* A storage node's record taken from the stream (docs/cluster.md): into the head and the fleet
 * state as a replayed record in no part; an erased subject's is skipped and counted. FV_OK,
 * FV_ENOENT (no key: not in this node's catalog), FV_ECORRUPT or what the store returned. */
int fv_recovery_take(struct fv_recovery *r, const struct fv_wal_record *rec);

/* A storage node, before logging a stream record (cluster/jsconsume.h C9; arg a struct
 * fv_recovery): FV_EAGAIN, counted in key_waits, when the record's subject has no key here yet
 * (none in the catalog nor, in a cluster, in the KV bucket, or KV not answering): it waits,
 * unacked. FV_OK otherwise (fv_recovery_take decides). */
int fv_recovery_ready(void *arg, const struct fv_wal_record *rec);

/* A storage node, after fv_recovery_ready and before logging a stream record
 * (cluster/jsconsume.h C11; arg a struct fv_recovery): a record sealed under an owner period
 * that does not cover its time (owners.h O1: created_at, else the receive time), and an
 * earlier one than the period that does - its gateway had not yet learnt of the owner change
 * this node's catalog holds - is opened and sealed again, into *rec, under the subject of
 * the period that covers its time, so it is stored and served as the new owner's. A record
 * of a later period than this node knows (the gateway learnt first) is left as it is: never
 * moved back. Counted in resubjected. FV_OK (rec as it was, or rewritten into rv's buffers,
 * valid until the next call), FV_ENOMEM. Anything it cannot do (no key, a payload that does
 * not open) leaves rec as it was: fv_recovery_take decides. */
int fv_recovery_resubject(void *arg, struct fv_wal_record *rec);
/* Frees fv_recovery_resubject's buffers. */
void fv_recovery_free(struct fv_recovery *r);

/* The WAL's replay function (wal.h fv_wal_replay_fn); arg is a struct fv_recovery. */
int fv_recovery_replay(void *arg, const struct fv_wal_record *r, const char *file, uint64_t off);

#endif
