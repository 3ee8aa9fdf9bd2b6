/*
 * keyfetch.h - a cluster gateway's data keys, fetched off the ingest loop (docs/cluster.md
 * "Keys", J5). A device new to a gateway needs its subject's data key from the cluster's
 * source (cluster/jskeys.h: a KV bucket over NATS): a request that takes a round trip, and up
 * to the source's timeout while NATS elects a leader. The ingest loop never makes it; it
 * submits a job here, pauses that device's connection, and goes on serving every other
 * device. A thread of this module asks the source (create-if-absent with a fresh key it
 * draws, as crypto/keys.h from_source does), and hands the answer back to the loop, which
 * stores it in its keystore (fv_keystore_adopt) and resumes the device.
 *
 *  K1 jobs are answered in the order they were submitted, one at a time (a key a second
 *     connection of the same device asks for is found in the source by then);
 *  K2 a source that cannot be reached (FV_EIO) is asked again every FV_KEYFETCH_PAUSE_MS
 *     until FV_KEYFETCH_GIVE_UP_MS after the job's first try; then the job is answered
 *     FV_EIO (the gateway closes the device's connection: it reconnects and tries again);
 *     any other answer (FV_OK, FV_ESTATE erased, FV_ECORRUPT) is final;
 *  K3 at most FV_KEYFETCH_MAX_JOBS wait: submit answers FV_EAGAIN beyond (the gateway then
 *     answers the record with the storage error; the device resends);
 *  K4 the wake function is called (from this module's thread) after each answer;
 *  K5 a job no connection waits for (session_id 0: a record refused while its key is
 *     fetched, then resent) is not queued again while one for the same subject waits.
 *
 * Threads: submit, take and stop on the ingest loop; the source on this module's thread
 * (its functions must allow it: jskeys.h's do, nats.c's connection is thread-safe).
 */
#ifndef FV_GATEWAY_KEYFETCH_H
#define FV_GATEWAY_KEYFETCH_H

#include <stdint.h>

#include "crypto/keys.h"

#define FV_KEYFETCH_PAUSE_MS   250
#define FV_KEYFETCH_GIVE_UP_MS 30000
#define FV_KEYFETCH_MAX_JOBS   100000

struct fv_keyfetch;

/* One answer (K1): the subject's key and name when rc is FV_OK. The taker wipes it. */
struct fv_keyfetch_answer {
    uint64_t session_id; /* as submitted (0: no connection waits for it) */
    int rc;
    char pseudo[FV_PSEUDONYM_LEN + 1];
    unsigned char dek[FV_KEY_LEN];
    char name[FV_NAME_MAX + 1];
};

/* Starts the thread; src is copied (its arg must outlive the fetcher). */
int fv_keyfetch_start(const struct fv_keysource *src, void (*wake)(void *), void *wake_arg,
                      struct fv_keyfetch **out);
/* Asks for the key of the subject called name (pseudo: its pseudonym). FV_OK, FV_EAGAIN
 * (K3) or FV_ENOMEM. */
int fv_keyfetch_submit(struct fv_keyfetch *f, uint64_t session_id, const char *pseudo,
                       const char *name);
/* Moves the oldest answer into out: 1, or 0 when there is none. */
int fv_keyfetch_take(struct fv_keyfetch *f, struct fv_keyfetch_answer *out);
/* Stops the thread (a job being asked is finished first; at most the source's timeout),
 * wipes and frees everything. NULL is a no-op. */
void fv_keyfetch_stop(struct fv_keyfetch *f);

#endif
