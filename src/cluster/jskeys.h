/*
 * jskeys.h - what the nodes of a cluster share about keys, in a NATS JetStream KV bucket
 * (docs/cluster.md, "Keys"; value formats: docs/formats.md, "Keys in the KV bucket").
 *
 * The bucket (cluster.keys_bucket, default fv-keys; history 1, no TTL, file storage,
 * cluster.replicas) holds, each value wrapped by the master key (every node is given it), so
 * that no key is ever in clear on NATS:
 *   K "pseudonym-key"     the cluster's pseudonym key;
 *   K "subject.PSEUDONYM" a subject's (owner period's) data key and name (the VIN or
 *                         "VIN#2": a storage node needs it to put the record in the device's
 *                         fleet state), keyed by its pseudonym.
 * Rules:
 *  J1 create-if-absent: a value is published with "expect no message on this subject", so of
 *     two nodes racing on a new entry exactly one wins; the other reads the winner's value.
 *     A purged entry keeps its purge marker (history 1 keeps the last message of a subject),
 *     so an erased subject can never get a new key here (keys.h K1): a create meets the
 *     marker and the read answers FV_ESTATE.
 *  J2 erasure: fv_jskeys_purge purges the subject's entry (kvStore_Purge: its value is
 *     removed from the stream, a marker stays). The node calls it once its own erasure is
 *     durable. Nothing here ever removes markers (no kvStore_PurgeDeletes).
 *  J3 the watcher (fv_jskeys_watch) reports every subject entry deleted or purged - those of
 *     the bucket's current state first (erased while this node was down), then as they
 *     happen - so that each node drops its cached copy. It reads the bucket's stream in
 *     sequence (kvfollow.h: no consumer, so no replica on a dead server to wait for; a
 *     request that fails is asked again from the same sequence), woken by each write and
 *     asking at least every FV_JSKEYS_FOLLOW_MS: nothing purged is missed.
 *  J4 a value that is short, of another format or version, wrapped by another master key,
 *     moved to another entry or altered is refused (FV_ECORRUPT, err says which); never used.
 *  J6 master key rotation (docs/cluster.md, "Master key rotation"): a value is opened with
 *     the node's master key or its previous one (struct fv_kek prev_key), whichever the
 *     value's head names; what a node writes is wrapped by its master key alone. A subject's
 *     value wrapped by neither is "not available here" (FV_EIO: a storage node waits, a
 *     gateway asks again), logged naming both ids, not corrupt: during a rotation a node
 *     not yet restarted with the new key must not stop. The pseudonym key's refuses the
 *     node's start (J4). fv_jskeys_rewrap moves one value to another master key, its kind,
 *     KV key and plaintext unchanged (`fleetvault cluster keys-rotate`: jsrotate.h).
 *
 * Threads: the source's functions (fv_jskeys_source) on the thread of the keystore they serve,
 * and on the subjects sync's (jssubjects.h P4): they use only nats.c's connection, which is
 * thread-safe, and atomic counters;
 * fv_jskeys_purge from any thread (nats.c's connection is thread-safe); the watcher on a
 * thread of its own, which calls changed() there. open/close on one thread (start, shutdown).
 */
#ifndef FV_CLUSTER_JSKEYS_H
#define FV_CLUSTER_JSKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "config/cluster_config.h"
#include "crypto/keys.h"
#include "util/buf.h"

#define FV_JSKEYS_WAIT_MS   5000 /* a KV request's timeout */
#define FV_JSKEYS_FOLLOW_MS 500  /* the watcher asks the bucket at least this often (J3) */

/* ---- value encoding (pure) ---------------------------------------------------------------- */

#define FV_JSKEYS_MAGIC       "FVKV"
#define FV_JSKEYS_VERSION     1
#define FV_JSKEYS_KIND_PKEY   'P'
#define FV_JSKEYS_KIND_SUBJ   'S'
#define FV_JSKEYS_HEAD        22 /* magic 4, version 1, kind 1, master key id 16 */
#define FV_JSKEYS_PKEY_NAME   "pseudonym-key"
#define FV_JSKEYS_SUBJ_PREFIX "subject."

/* Appends the value of entry key (its KV key, bound by the seal) of this kind with this
 * plaintext to out. */
int fv_jskeys_wrap(const struct fv_kek *kek, const char *key, char kind, const void *pt, size_t n,
                   struct fv_buf *out);
/* Opens a value of entry key of this kind into out (wiped by the caller). FV_OK, or
 * FV_ECORRUPT with err saying what is wrong (J4). */
int fv_jskeys_unwrap(const struct fv_kek *kek, const char *key, char kind, const unsigned char *v,
                     size_t n, struct fv_buf *out, char *err, size_t errlen);
/* The id of the master key a value names in its head into id (16 hex + NUL): FV_OK, or
 * FV_ECORRUPT when v is not a value of this format (id ""). */
int fv_jskeys_value_kek(const unsigned char *v, size_t n, char id[17]);
/* J6: value v of entry key, opened with from (its kind from its head), wrapped again by to
 * (appended to out). Errors as fv_jskeys_unwrap; the plaintext is wiped. */
int fv_jskeys_rewrap(const struct fv_kek *from, const struct fv_kek *to, const char *key,
                     const unsigned char *v, size_t n, struct fv_buf *out, char *err,
                     size_t errlen);
/* The subject entry's value: data key || name (1 to FV_NAME_MAX bytes). */
int fv_jskeys_encode_subject(const struct fv_kek *kek, const char *pseudo,
                             const unsigned char dek[FV_KEY_LEN], const char *name,
                             struct fv_buf *out);
int fv_jskeys_decode_subject(const struct fv_kek *kek, const char *pseudo, const unsigned char *v,
                             size_t n, unsigned char dek[FV_KEY_LEN], char name[FV_NAME_MAX + 1],
                             char *err, size_t errlen);

/* ---- the bucket ---------------------------------------------------------------------------- */

struct fv_jskeys;

/* Connects (its own connection) and binds the bucket, making it when missing (start-up
 * requests that fail are tried again, as natsconn.h's). kek is copied. */
int fv_jskeys_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek,
                   struct fv_jskeys **out, char *err, size_t errlen);
/* The keystore's shared source (crypto/keys.h) over this bucket. */
struct fv_keysource fv_jskeys_source(struct fv_jskeys *k);
/* J2: purges subject pseudo's entry. FV_OK, or FV_EIO with err set (the caller retries). */
int fv_jskeys_purge(struct fv_jskeys *k, const char *pseudo, char *err, size_t errlen);
/* J3: starts the watcher thread, with a keystore of its own on catalog_path (the node's
 * catalog): each subject deleted or purged in the bucket that the catalog does not know as
 * destroyed is destroyed there (a tombstone: keys.h K1), then changed(arg) is called on that
 * thread (the node drops its cached keys: session.h fv_ingest_keys_changed). */
int fv_jskeys_watch(struct fv_jskeys *k, const char *catalog_path, void (*changed)(void *arg),
                    void *arg, char *err, size_t errlen);
/* Stops the watcher thread (before whatever erased() touches goes); the bucket stays usable
 * until fv_jskeys_close. */
void fv_jskeys_unwatch(struct fv_jskeys *k);
/* Counters (any thread): entries fetched, entries made here, creates lost to another node. */
struct fv_jskeys_stats {
    uint64_t fetched, created, lost_races, erased_seen;
};
void fv_jskeys_stats(struct fv_jskeys *k, struct fv_jskeys_stats *out);
/* Tests only: fn(arg) runs inside a create-if-absent, after its read found nothing and before
 * its create, so that a test can make another node win the race there. */
void fv__jskeys_before_create(struct fv_jskeys *k, void (*fn)(void *), void *arg);
/* Stops the watcher, closes the connection, wipes and frees. NULL: nothing. */
void fv_jskeys_close(struct fv_jskeys *k);

#endif
