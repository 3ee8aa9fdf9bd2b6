/*
 * jsconsume.h - a storage node's side of the stream (docs/cluster.md): a durable pull
 * consumer per owned shard (name fv-NODE-shard-N, filter PREFIX.N, ack policy "all"), each
 * message's record logged to the node's local WAL and handed to the store (take), and the
 * stream acked once the local WAL holds it durably.
 *
 *  C1 exactly once: before each record the node logs to its WAL it appends a cursor record
 *     (device FV_CURSOR_DEVICE, topic FV_CURSOR_TOPIC, unsealed, payload u32 shard | u64
 *     stream sequence, little endian) naming the stream message the record came from. At
 *     start the WAL's replay (fv_jsconsume_replay, wrapping the store's replay) moves a
 *     shard's cursor only when the announced record itself replayed, so a torn tail leaves
 *     no record in the head that its cursor does not cover. A message redelivered at or
 *     below its shard's cursor (it reached the WAL, its ack was lost) is skipped. Cursor
 *     records live as long as their WAL files (store.h T1); older positions come from the
 *     shard cursors file (C8).
 *  C2 acks: the last message of a batch (ack "all" covers the batch) once the local WAL's
 *     durable sequence reaches the batch's last record.
 *  C3 a record the node cannot take (a payload or a KV value that does not open, the
 *     store refusing it; a key not there yet is C7's) stops consuming with an error (the
 *     server stops; the message stays unacked and is redelivered after a restart) - except
 *     an erased subject's, which is skipped and counted (as in replay).
 *  C4 in order: a message fetched but not yet in the WAL when the node died would come back
 *     only after the ack wait, behind newer ones whose cursor (and ack "all") would cover it.
 *     So when a shard is bound its durable consumer is deleted and made again, delivering from
 *     one past the node's cursor for the shard (C1, C8), or from the shard's first message
 *     when the node never stored one of it. The consumer's ack floor is never used: it may
 *     lag what the node stored (acks not sent before a crash, a consumer deleted or lost
 *     with its server), and reading from it would store those records twice.
 *  C5 at run time the same order is kept: a consumer's delivery sequence that jumps (a
 *     delivery lost, e.g. one that reached nats.c after its fetch had expired) makes the
 *     node wait until its WAL holds everything taken durably, ack it, and make the shard's
 *     consumer again from the cursor (as C4). If NATS does not answer the delete or the
 *     request meanwhile (the connection's server lost, a leader being elected), the shard
 *     waits for C6 and the others go on; only a local WAL that does not become durable stops
 *     the node.
 *  C6 a shard whose fetches found nothing for FV_CONSUMER_CHECK_MS has its consumer looked
 *     up; one gone or not answering is made again from the shard's cursor (in memory: what
 *     this node took), as after a gap (C5); if NATS does not answer, that shard tries again
 *     later and the others go on.
 *  C7 leases (jslease.h): the node takes a shard only while it holds the shard's lease, checked
 *     before each message. A shard acquired is bound from the node's cursor for it (what this
 *     node took before, in memory or from its WAL, C4), or, new to the node, from the
 *     stream's first message of the shard: the new owner rebuilds the shard's whole history
 *     in its own store, and C1 keeps it exactly once. A shard lost or released stops being
 *     taken at once; its subscription goes once the acks of what it took are sent (they need
 *     it); its consumer stays on the server, unfetched (harmless: C4 deletes it should the
 *     shard come back). Durable consumers are named per node, fv-NODE-shard-N, so two nodes
 *     never share one (each has its own store, hence its own position).
 *  C8 the cursors outlive the WAL: before the WAL deletes files (the store's parts cover
 *     them, store.h T1), fv_jsconsume_before_wal_remove (the WAL's before_remove option)
 *     makes everything appended durable, then saves every shard's cursor to DATA/shard-cursors
 *     (jscursor.h, fsync'd, replaced atomically); fv_jsconsume_new loads it and the WAL's
 *     replay raises it (C1). So the cursor is the highest stream sequence the node stored of
 *     the shard, whatever was deleted: what the deleted files held is at or below the file's
 *     values, what remains is replayed. A cursor saved is at most what is durable, never
 *     past it (nothing is lost), and at least what was deleted (nothing is stored twice).
 *  C9 a record whose key the node cannot get yet (ready() says FV_EAGAIN: in no KV entry,
 *     cluster/jskeys.h, or KV unreachable) is neither logged nor acked: what its shard took
 *     before it is acked as usual (C2), the shard's consumer is made again from the cursor
 *     (so the record and those after it come again, in order) and the shard pauses
 *     FV_KEY_WAIT_MS before it is fetched again. The other shards go on.
 *  C11 a record may be rewritten before it is logged (fv_jsconsume_set_fix): a storage node
 *     stores a record under the subject whose owner period covers its time, as its catalog
 *     has it (docs/cluster.md, "Owner periods and consents" P7). What is logged and taken is
 *     the rewritten record; the stream keeps the original, and its cursor and acks are as
 *     for any record.
 *  C10 a consumer is made with requests that wait at most 1 s (a degraded 3-server cluster
 *     elects a new consumer's leader in up to ~10 s, during which the create request gets no
 *     answer): one asked for is looked up every 200 ms and bound (nats.c's pull subscription
 *     bound to it, so nats.c never deletes it) once it has a leader and starts where it
 *     should; one gone is asked for again, one without a leader after 30 s made again. The
 *     loop goes on meanwhile (the other shards fetch, the leases are renewed between binds:
 *     a bind blocking for the election made the leases lapse, and the shards change hands
 *     in a loop). C6 also remakes a consumer with messages pending that delivered nothing
 *     since its last check.
 *  C12 a shard's fetch asks for a batch without waiting for messages (NoWait) but, when the
 *     shard has fewer than a batch, waits for the rest until the request expires: the expiry
 *     is 10 round trips to the NATS server (2 to 50 ms; measured at the first step and every
 *     30 s), not a fixed 50 ms, which made a round over 16 shards with little left each take
 *     0.8 s (bench/cluster: the storage node caught up 16 s after the last ack of a
 *     saturating feed; 3 s with this).
 *  C13 a record the fix (C11) sealed again under a subject of another shard is not stored
 *     here: another node may hold that shard (and answers for it), and even when this node
 *     does, whoever holds it later rebuilds it from the stream. It is published to that
 *     shard's subject, synchronously, with the message id
 *     NEWPSEUDONYM:TXIDHEX (NEWPSEUDONYM:sSEQ without a txid: a crash before the ack
 *     publishes it again within the stream's de-duplication window, once); the original
 *     message is then deleted from the stream, so that a later owner of this shard (a
 *     takeover rebuilds the shard from the stream) never moves it again, outside that window;
 *     and the node logs only a cursor record saying so (13 bytes, a last byte 1; replay moves
 *     the cursor at once). A publish or delete NATS does not take leaves the message unacked:
 *     the shard waits as C9 and takes it again. Counted (fv_jsconsume_moved).
 *
 * Threads: everything (but fv_jsconsume_leases's holds) on the storage node's loop thread (nats.c's
 * own threads deliver into the fetch call).
 */
#ifndef FV_CLUSTER_JSCONSUME_H
#define FV_CLUSTER_JSCONSUME_H

#include <stddef.h>
#include <stdint.h>

#include "config/cluster_config.h"
#include "wal/wal.h"

#define FV_CONSUMER_CHECK_MS 3000
#define FV_KEY_WAIT_MS       1000

#define FV_CURSOR_DEVICE "-" /* never a pseudonym (32 hex digits) */
#define FV_CURSOR_TOPIC  "fv.cursor"

struct fv_jsconsume;

/* take(arg, rec): the record into the store (gateway/recovery.h fv_recovery_take). */
typedef int (*fv_take_fn)(void *arg, const struct fv_wal_record *rec);

/* Makes the consumer's state (no connection yet) with the cursors saved in data_dir (C8);
 * replay below raises them. node: this node's name (its leases and consumers). FV_OK, or an
 * FV_E* with err (FV_ECORRUPT: a damaged cursors file, jscursor.h K1). */
int fv_jsconsume_new(const struct fv_cluster_cfg *cfg, const char *node, const char *data_dir,
                     fv_take_fn take, void *take_arg, fv_wal_replay_fn replay, void *replay_arg,
                     struct fv_jsconsume **out, char *err, size_t errlen);
/* C9: ready(arg, rec) before each record is logged: FV_OK, or FV_EAGAIN to wait. */
void fv_jsconsume_set_ready(struct fv_jsconsume *c, fv_take_fn ready, void *arg);
/* C11: fix(arg, rec) after ready() and before the record is logged may rewrite it (its
 * subject and sealed payload: gateway/recovery.h fv_recovery_resubject); what it points to
 * stays valid until the record is taken. A non-zero return stops the node as take's does. */
void fv_jsconsume_set_fix(struct fv_jsconsume *c, int (*fix)(void *arg, struct fv_wal_record *rec),
                          void *arg);
/* The WAL replay function for fv_wal_open (arg: the consumer): cursor records set the
 * cursors, the others go to the replay function given to fv_jsconsume_new. */
int fv_jsconsume_replay(void *arg, const struct fv_wal_record *r, const char *file, uint64_t off);
/* C8, the WAL's before_remove option (arg: the consumer): saves the cursors once what they
 * name is durable. FV_OK, or FV_EIO with err (the WAL deletes nothing then). Loop thread. */
int fv_jsconsume_before_wal_remove(void *arg, char *err, size_t errlen);
/* Is r a cursor record (C1)? (inspect skips them.) */
int fv_jsconsume_is_cursor(const struct fv_wal_record *r);
/* Connects and opens the leases (C7; shards are bound as their leases are acquired, from the
 * first step on); wal: the node's WAL. */
int fv_jsconsume_start(struct fv_jsconsume *c, struct fv_wal *wal, char *err, size_t errlen);
/* One round: fetches what is waiting on each owned shard (up to a batch each, waiting at most
 * wait_ms in all when nothing is), logs and takes it, and sends the acks now due (C2).
 * Returns the number of records taken, or a negative FV_E* (C3; err says which). */
int fv_jsconsume_step(struct fv_jsconsume *c, int wait_ms, char *err, size_t errlen);
/* The leases' round without fetching (C7), for a loop that does not step (its store's head
 * full): leases are renewed, lost ones dropped, acks due sent. */
void fv_jsconsume_keep_leases(struct fv_jsconsume *c);
/* C13: records moved to another shard's subject since start. Any thread. */
uint64_t fv_jsconsume_moved(const struct fv_jsconsume *c);
/* The node's leases (jslease.h: fv_jslease_holds from any thread), NULL before start. */
struct fv_jslease *fv_jsconsume_leases(const struct fv_jsconsume *c);
/* Sends the acks due, releases the leases (jslease.h E6), then closes the connection and frees. */
void fv_jsconsume_free(struct fv_jsconsume *c);

#endif
