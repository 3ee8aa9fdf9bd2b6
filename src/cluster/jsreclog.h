/*
 * jsreclog.h - the gateway's record log on a NATS JetStream stream (wal/reclog.h L1-L5;
 * docs/cluster.md). append() encodes the sealed record as the WAL logs it (its body,
 * docs/formats.md "Record on the stream") and publishes it asynchronously to PREFIX.SHARD
 * (the shard from the pseudonym, natsconn.h) with the message id PSEUDONYM:TXIDHEX (JetStream
 * drops a resend within its de-duplication window; records without a txid, the gateway's own
 * connectivity records, carry none) and the header Fv-Seq (the gateway's sequence number,
 * read back from the PubAck; storage nodes ignore it).
 *
 *  J1 durable() is the highest seq such that it and every lower one got a PubAck (a
 *     "duplicate" PubAck counts: the stream holds the record). PubAcks arrive out of order
 *     on nats.c's thread; a ring of FV_JSLOG_WINDOW flags keeps the contiguous watermark.
 *  J2 append() refuses (FV_EAGAIN: the gateway answers with the storage error, the device
 *     resends) while FV_JSLOG_WINDOW records are unacknowledged; fv_jsreclog_full() says when
 *     more than half are, and the server stops reading from devices then (backpressure).
 *  J3 a publish without a PubAck within FV_JSLOG_ACK_WAIT_MS, or that found no server (a
 *     NATS server lost, a leader election, a reconnect), is sent again from the ack handler
 *     - the same message with the same message id, so the stream keeps it once - after a
 *     pause of FV_JSLOG_RETRY_PAUSE_MS (one for the publishes failing together), until
 *     FV_JSLOG_RETRY_MS after its first attempt; acks wait
 *     meanwhile (the watermark cannot pass it). A publish the stream refuses (a JetStream
 *     error: no such stream, too large, ...) or one still unacked after FV_JSLOG_RETRY_MS
 *     makes failed() 1 for good (L5): the gateway stops, its devices reconnect elsewhere and
 *     resend what was never acked. A connection nats.c closes for good does the same.
 *  J4 the notify function (L4) is called from nats.c's thread each time durable() advances.
 *
 * Threads: append/appended and fv_jsreclog_full on the ingest loop; durable/failed from any
 * thread; the ack handler on nats.c's thread (under the log's mutex, short; a retry pauses
 * that thread FV_JSLOG_RETRY_PAUSE_MS, outside the mutex).
 */
#ifndef FV_CLUSTER_JSRECLOG_H
#define FV_CLUSTER_JSRECLOG_H

#include <stddef.h>

#include "config/cluster_config.h"
#include "wal/reclog.h"

#define FV_JSLOG_WINDOW         65536 /* unacknowledged records at most */
#define FV_JSLOG_ACK_WAIT_MS    2000
#define FV_JSLOG_RETRY_PAUSE_MS 100
#define FV_JSLOG_RETRY_MS       30000

struct fv_jsreclog;

/* Connects (natsconn.h) and makes the log; notify(arg) as J4. */
int fv_jsreclog_open(const struct fv_cluster_cfg *cfg, void (*notify)(void *), void *notify_arg,
                     struct fv_jsreclog **out, char *err, size_t errlen);
/* Waits up to timeout_ms for outstanding PubAcks, then closes and frees. */
void fv_jsreclog_close(struct fv_jsreclog *l, int timeout_ms);
struct fv_reclog fv_jsreclog_log(struct fv_jsreclog *l);
/* J2: more than half the window is unacknowledged. Ingest loop. */
int fv_jsreclog_full(void *l);

/* What the log did since it was opened, for the gateway's /metrics (docs/cluster.md
 * "Metrics"). Ingest loop (published is its own count). */
struct fv_jsreclog_counts {
    uint64_t published;   /* records published (L1: each append that returned a seq) */
    uint64_t pubacks;     /* PubAcks received, duplicates included */
    uint64_t duplicates;  /* of which the stream had the message id already (a resend) */
    uint64_t retries;     /* publishes sent again (J3) */
    uint64_t refused;     /* appends refused: the window was full (J2) */
    uint64_t outstanding; /* published, PubAck not yet counted into durable() */
};
void fv_jsreclog_counts(struct fv_jsreclog *l, struct fv_jsreclog_counts *out);

#endif
