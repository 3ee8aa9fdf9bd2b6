/*
 * kvfollow.h - following a NATS KV bucket's changes without a consumer (docs/cluster.md,
 * "A NATS server lost", watchers).
 *
 * nats.c's kvWatcher is an ephemeral (ordered) consumer. nats-server 2.9 places one on a
 * random replica of the bucket's stream, a dead server's included (it stays in the stream's
 * peer set): a watcher made or remade there delivers nothing until nats.c's missed-heartbeat
 * timer (10 s) remakes it, a third of the time on the dead server again. A follower instead
 * reads the bucket's stream itself, by sequence:
 *
 *  F1 in order, from the first message on: each fv_kvfollow_next asks for the first message
 *     of the bucket at or after one past the last it returned (a direct get, "next by
 *     subject" $KV.BUCKET.>, which any current replica answers: no leader, no consumer, no
 *     placement). So the bucket's current state comes first (history 1: a key's older
 *     revisions are gone, its latest follows), then every change as it is stored. Nothing is
 *     returned twice and nothing is skipped but messages the stream itself removed (a key's
 *     older revision, whose newer one follows; a stream purge).
 *  F2 position is kept across failures: a request that fails (no server, a timeout) is
 *     FV_EIO and the next call asks again from the same place - nothing written meanwhile is
 *     missed, and nothing already returned comes again.
 *  F3 wake-ups: a core NATS subscription on $KV.BUCKET.> (every write to the bucket is
 *     published there by its writer) ends a wait at once, so a change is read within a few
 *     ms; it is a hint only (a lost one costs at most the wait, F1 decides what is read).
 *     Idle cost: one direct get per wait (fv_kvfollow_next's wait_ms) and follower.
 *  F4 the first read of the bucket's state, when the follower is given the bucket, goes
 *     through a kvWatcher, which pushes it (20,000 entries from one local server: 0.13-0.16 s,
 *     against 3.1-3.7 s by one direct get per message; shared machine), up to the end of the
 *     state; the watcher is then dropped, and direct gets go on from its last entry (its
 *     entries come in sequence, so every later message is read by F1). A watcher that cannot
 *     be made (its consumer placed on a dead server: the request times out) or stalls ends
 *     F4 as well: direct gets read the rest, nothing is lost, only the speed.
 *
 * Threads: one thread per follower (open, next, close on it, or open/close at start and
 * shutdown while no other thread uses it); the connection is nats.c's, thread-safe.
 */
#ifndef FV_CLUSTER_KVFOLLOW_H
#define FV_CLUSTER_KVFOLLOW_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#define FV_KVFOLLOW_REQUEST_MS 2000 /* a direct get's timeout */

enum fv_kvop { FV_KV_PUT, FV_KV_DEL, FV_KV_PURGE };

/* One message of the bucket, valid until the next call on its follower. */
struct fv_kventry {
    const char *key; /* the KV key (the subject less $KV.BUCKET.) */
    enum fv_kvop op;
    const unsigned char *value; /* NULL and len 0 for a marker */
    size_t len;
    uint64_t revision; /* the stream sequence: kvStore_Update's "last revision" */
};

struct fv_kvfollow;

/* A follower of bucket from its first message, on nc (its JetStream context js); kv: the
 * bucket bound (F4), or NULL (direct gets only). FV_OK, FV_ENOMEM, FV_EIO (the wake-up
 * subscription refused; err says so). */
int fv_kvfollow_open(natsConnection *nc, jsCtx *js, kvStore *kv, const char *bucket,
                     struct fv_kvfollow **out, char *err, size_t errlen);
/* F1-F3: FV_OK and *e the next message; FV_ENOENT: none after the last returned, having
 * waited up to wait_ms (0: asks once, no wait) for one; FV_EIO: a request failed (err says
 * why; ask again). */
int fv_kvfollow_next(struct fv_kvfollow *f, struct fv_kventry *e, int64_t wait_ms, char *err,
                     size_t errlen);
/* The stream sequence of the last message returned (0: none yet). */
uint64_t fv_kvfollow_position(const struct fv_kvfollow *f);
/* Counters: direct gets asked, and wake-ups received (any thread). */
void fv_kvfollow_counts(const struct fv_kvfollow *f, uint64_t *gets, uint64_t *hints);
/* Unsubscribes and frees. NULL: nothing. */
void fv_kvfollow_close(struct fv_kvfollow *f);

#endif
