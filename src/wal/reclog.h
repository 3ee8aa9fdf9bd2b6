/*
 * reclog.h - the ingest/storage seam: the record log the gateway appends to, and the storage
 * side that takes each logged record into the store.
 *
 *     device -> [gateway: decode, identify, limit, de-dup, seal] -> record log -> [storage]
 *                          ack <------- durable (the log says so) -------'
 *
 * The gateway knows only these two small interfaces, never the WAL or the store behind them.
 * Today one process holds both sides: the log is the local WAL (fv_wal_reclog) and the sink
 * puts records into the store's head. A later deployment puts a NATS JetStream stream behind
 * the same log (durable = PubAck from a quorum) and storage nodes consuming their shards
 * behind the sink; nothing in the gateway changes.
 *
 * Contract of a log:
 *  L1 append() returns a sequence number > 0 that increases with every call, or a negative
 *     FV_E* error (nothing was logged; the gateway answers with the storage error reply);
 *  L2 durable() is the highest sequence number such that it and every lower one survive a
 *     crash; it never decreases. An ack is sent only for a record whose seq <= durable();
 *  L3 appended() is the sequence number of the newest append (a duplicate's ack waits for it:
 *     the original may still be in flight);
 *  L4 when records become durable the log calls the notify function it was made with, from
 *     any thread; the gateway then sends the acks (on its own thread);
 *  L5 failed() != 0 means nothing will become durable any more: the server stops.
 * Contract of a sink:
 *  K1 put() is called after append() with the record's seq, in seq order, with the sealed
 *     record (as logged) and what the gateway decoded (the V record, or the event payload in
 *     plaintext); the sink must not keep pointers into either after it returns;
 *  K2 a sink that cannot take a record (out of memory) must keep the promise of the log: the
 *     record is still durable, and the storage side takes it again from the log on restart.
 *
 * Threads: append/appended/put on the ingest loop only; durable/failed from any thread.
 */
#ifndef FV_WAL_RECLOG_H
#define FV_WAL_RECLOG_H

#include <stddef.h>
#include <stdint.h>

#include "wal/wal.h"
#include "wire/payload.h"

struct fv_reclog {
    void *impl;
    int64_t (*append)(void *impl, const struct fv_wal_record *rec);
    uint64_t (*durable)(void *impl);
    uint64_t (*appended)(void *impl);
    int (*failed)(void *impl);
};

/* One record as the sink receives it (K1). */
struct fv_logged {
    uint64_t seq;
    const struct fv_wal_record *rec; /* as logged (sealed payload); rec->device_id: pseudonym */
    const unsigned char *dek;        /* the subject's data key (32 bytes) */
    int64_t t_ms;                    /* the record's time: created_at of a V record, else receipt */
    const struct fv_vrecord *v;      /* the decoded V record, or NULL for an event */
    const void *plain;               /* an event's payload in plaintext (NULL for V) */
    size_t plain_len;
};

struct fv_record_sink {
    void *arg;
    void (*put)(void *arg, const struct fv_logged *rec);
};

/* The local WAL as a record log (its functions are wal.h's). w must outlive the result. */
struct fv_reclog fv_wal_reclog(struct fv_wal *w);

#endif
