/*
 * jsconsume.h - a storage node's side of the stream (docs/cluster.md): a durable pull
 * consumer per owned shard (name fv-shard-N, filter PREFIX.N, ack policy "all"), each
 * message's record logged to the node's local WAL and handed to the store (take), and the
 * stream acked once the local WAL holds it durably.
 *
 *  C1 exactly once: after each fetched batch of a shard the node appends a cursor record to
 *     its WAL (device FV_CURSOR_DEVICE, topic FV_CURSOR_TOPIC, unsealed, payload u32 shard | u64
 * stream sequence, little endian) after the batch's records; at start the WAL's replay
 * (fv_jsconsume_replay, wrapping the store's replay) sets each shard's cursor to the highest it
 * holds, and a message redelivered at or below its shard's cursor (it reached the WAL, its ack was
 *     lost) is acked and skipped. Cursor records are kept as long as their WAL files
 *     (store.h T1: at least wal_keep_ms after their records reached a committed part); a
 *     record's ack follows its durability by milliseconds, so a redelivery after that is no
 *     concern. A crash that tears a batch between its records and its cursor (two writes of
 *     the WAL writer) would replay those records and take them again: a window this slice
 *     leaves open (docs/cluster.md, "Next").
 *  C2 acks: the last message of a batch (ack "all" covers the batch) once the local WAL's
 *     durable sequence reaches the batch's cursor record.
 *  C3 a record the node cannot take (no key in its catalog, a payload that does not open,
 *     the store refusing it) stops consuming with an error (the server stops; the message
 *     stays unacked and is redelivered after a restart) - except an erased subject's, which
 *     is skipped and counted (as in replay).
 *
 * Threads: everything on the storage node's loop thread (nats.c's own threads deliver into
 * the fetch call).
 */
#ifndef FV_CLUSTER_JSCONSUME_H
#define FV_CLUSTER_JSCONSUME_H

#include <stddef.h>
#include <stdint.h>

#include "config/cluster_config.h"
#include "wal/wal.h"

#define FV_CURSOR_DEVICE "-" /* never a pseudonym (32 hex digits) */
#define FV_CURSOR_TOPIC  "fv.cursor"

struct fv_jsconsume;

/* take(arg, rec): the record into the store (gateway/recovery.h fv_recovery_take). */
typedef int (*fv_take_fn)(void *arg, const struct fv_wal_record *rec);

/* Makes the consumer's state (no connection yet): replay below fills its cursors. */
int fv_jsconsume_new(const struct fv_cluster_cfg *cfg, fv_take_fn take, void *take_arg,
                     fv_wal_replay_fn replay, void *replay_arg, struct fv_jsconsume **out);
/* The WAL replay function for fv_wal_open (arg: the consumer): cursor records set the
 * cursors, the others go to the replay function given to fv_jsconsume_new. */
int fv_jsconsume_replay(void *arg, const struct fv_wal_record *r, const char *file, uint64_t off);
/* Is r a cursor record (C1)? (inspect skips them.) */
int fv_jsconsume_is_cursor(const struct fv_wal_record *r);
/* Connects and binds the durable consumers of the owned shards; wal: the node's WAL. */
int fv_jsconsume_start(struct fv_jsconsume *c, struct fv_wal *wal, char *err, size_t errlen);
/* One round: fetches what is waiting on each owned shard (up to a batch each, waiting at most
 * wait_ms in all when nothing is), logs and takes it, and sends the acks now due (C2).
 * Returns the number of records taken, or a negative FV_E* (C3; err says which). */
int fv_jsconsume_step(struct fv_jsconsume *c, int wait_ms, char *err, size_t errlen);
/* Sends the acks due, then closes the connection and frees. */
void fv_jsconsume_free(struct fv_jsconsume *c);

#endif
