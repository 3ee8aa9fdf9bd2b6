/*
 * jsrotate.h - a cluster's master key rotation: every value of the keys, subjects, principals,
 * quotas and zones buckets wrapped again, from the old master key to the new (docs/cluster.md,
 * "Master key rotation"; `fleetvault cluster keys-rotate`). Values stay in the format of
 * docs/formats.md, "Keys in the KV bucket": only the master key id in their head and the
 * seal change; the plaintext, the kind and the entry do not.
 *
 * Rules:
 *  R1 check before writing: every entry of the five buckets is read first (each bucket whole
 *     in stream order, kvfollow.h: each key's last message and revision); a value wrapped by a
 *     master key that is neither the old nor the new one (a wrong old key given), not of this
 *     format, or under the old key but not opening with it, refuses the rotation with the entry
 *     named, and nothing of the round is written (in the first round: nothing at all).
 *  R2 compare-and-set: a value is replaced at the revision it was read at (an asynchronous
 *     publish expecting it, as kvStore_Update does; WRITE_BATCH awaited together), so a write
 *     another node made meanwhile (a new value, a purge) is never overwritten: the entry is
 *     read again (up to FV_JSROTATE_TRIES times) and what it holds now is judged again.
 *  R3 left alone: a value already under the new key, and a delete or purge marker (an
 *     erased subject's stays a marker: no key ever comes back over it).
 *  R4 rounds: once the values found under the old key are re-wrapped, the buckets are read
 *     again; the rotation ends with a round that finds none under the old key (one a node
 *     still on the old key made meanwhile is taken by the next round), at most
 *     FV_JSROTATE_ROUNDS rounds.
 *  R5 idempotent: values are re-wrapped one at a time, so a rotation stopped half way leaves
 *     each entry under one key or the other, and running it again finishes it (nodes read
 *     both meanwhile: jskeys.h J6); a finished one run again changes nothing.
 *  R6 nothing in clear: plaintexts are wiped, no key or value is printed or logged; entries
 *     are named by their KV key (pseudonyms only); progress says counts.
 *
 * Threads: the caller's (the CLI); its own NATS connection.
 */
#ifndef FV_CLUSTER_JSROTATE_H
#define FV_CLUSTER_JSROTATE_H

#include <stdint.h>
#include <stdio.h>

#include "config/cluster_config.h"
#include "crypto/keys.h"

#define FV_JSROTATE_TRIES  5
#define FV_JSROTATE_ROUNDS 5

struct fv_jsrotate_stats {
    uint64_t entries;   /* entries seen in the first round (values and markers) */
    uint64_t old_found; /* values under the old key in the first round */
    uint64_t rewrapped; /* values re-wrapped, every round */
    uint64_t already;   /* values found under the new key in the first round */
    uint64_t markers;   /* delete or purge markers left as they are (first round) */
    uint64_t races;     /* compare-and-set writes lost to another node, read again */
    int rounds;
};

struct fv_jsrotate_opts {
    int dry_run;    /* checks only (R1): nothing written */
    FILE *progress; /* a line per bucket and round, and every second or 1000 entries; NULL */
    /* tests only: called after an entry was read under the old key and re-wrapped, before
     * its compare-and-set write, so that a test can write or purge it there (R2); a value
     * other than FV_OK stops the rotation with it, as an interruption would (R5). NULL. */
    int (*before_write)(void *arg, const char *bucket, const char *key);
    void *before_write_arg;
};

/* Rotates the values of cfg's keys, subjects, principals, quotas and zones buckets from old_kek to
 * new_kek (R1-R6). opts may be NULL (defaults). FV_OK; FV_ESTATE (R1 refused: nothing written by
 * the round; or R4 rounds exhausted), FV_EIO (NATS), FV_EAGAIN (an entry lost R2 at every try),
 * with err saying which entry and why. */
int fv_jsrotate_run(const struct fv_cluster_cfg *cfg, const struct fv_kek *old_kek,
                    const struct fv_kek *new_kek, const struct fv_jsrotate_opts *opts,
                    struct fv_jsrotate_stats *out, char *err, size_t errlen);

#endif
