/*
 * jsprincipals.h - the API's principals shared by every node of a cluster, in a NATS
 * JetStream KV bucket (docs/cluster.md, "Principals"; value format: docs/formats.md,
 * "Principals in the KV bucket").
 *
 * The bucket (cluster.principals_bucket, default fv-principals; history 1, no TTL, file
 * storage, cluster.replicas; made by the first node that needs it) holds one entry per
 * principal, K "principal.NAME", its value wrapped by the master key as jskeys.h's are (format
 * FVKV version 1, kind 'A'): name, role, the SHA-256 of its token (never a token), created
 * (time, by whom), approved (time, by whom), revoked (time), and the node that wrote it.
 * Rules:
 *  U1 every node that serves an authenticated API (storage, api; a gateway serves only /status
 *     and /metrics, so it runs none) runs one sync, as jssubjects.h P1 and P2: its own thread,
 *     connection and catalog connection; at start the whole bucket is applied to the catalog
 *     and the catalog's principals the bucket lacks are published before the node serves; then
 *     it follows the bucket in sequence (kvfollow.h) and, each round (0.5 s) in which the
 *     catalog changed (PRAGMA data_version: the API's or the CLI's writes), publishes the
 *     principals whose row differs from what was last in sync. A principal created, approved or
 *     revoked on any node thus reaches every node's catalog within a round or two, and the
 *     guard's token cache (guard.h G1) is emptied by the catalog change.
 *  U2 merge (fv_jsprincipals_merge), the same on every node, monotonic:
 *     M1 a principal is its name, role and token hash: these never change. Two rows of one
 *        name that differ in role or token hash (the name created at once on two nodes) are
 *        two principals: the one created first (created_ms), then the one of the smaller token
 *        hash, then of the smaller role, is kept whole on every node, and the other's token is
 *        refused everywhere (logged as a conflict: the name, both creation times, no hash);
 *     M2 approval once given stays: the earlier approval (then the smaller approver name);
 *     M3 revocation is permanent and wins: the earlier revocation time;
 *     M4 created_by: the non-empty one (then the smaller).
 *  U3 writes are compare-and-set on the entry's revision (kvStore_Create, kvStore_Update): the
 *     loser of a race reads the winner's value, merges and tries again (3 times, then the next
 *     round). The writing node's name in a value is not part of what is compared: a value is
 *     rewritten only when the merged principal differs from the bucket's.
 *  U4 every change the sync makes to the catalog is queued with it in principal_events (one
 *     transaction), action principal.create / .approve / .revoke / .replace, detail naming the
 *     node whose value it applied; the guard moves it into the audit log within a second
 *     (guard.h G13), so each node's own log says who may read its data.
 *  U5 a value that is short, of another kind or version, wrapped by another master key, moved
 *     to another entry, altered, or naming another principal than its entry is refused
 *     (FV_ECORRUPT, logged naming the entry) and the catalog is left as it was.
 *  U6 nothing secret leaves the node: token hashes only, wrapped; logs name principals only.
 *
 * Threads: open/close on one thread (start, shutdown); the pure functions anywhere.
 */
#ifndef FV_CLUSTER_JSPRINCIPALS_H
#define FV_CLUSTER_JSPRINCIPALS_H

#include <stddef.h>
#include <stdint.h>

#include "config/cluster_config.h"
#include "cluster/kvsync.h"
#include "crypto/keys.h"
#include "privacy/principals.h"
#include "util/buf.h"

#define FV_JSPRINC_KIND     'A'
#define FV_JSPRINC_PREFIX   "principal."
#define FV_JSPRINC_NODE_MAX 64

/* ---- values (pure) ------------------------------------------------------------------------ */

/* The canonical plaintext of a principal (equal principals, equal bytes; no node). */
int fv_jsprincipals_pt(const struct fv_principal_row *r, struct fv_buf *out);
/* The wrapped value of principal r, written by node (1 to 64 printable bytes). */
int fv_jsprincipals_encode(const struct fv_kek *kek, const struct fv_principal_row *r,
                           const char *node, struct fv_buf *out);
/* U5: value v of entry key into *out and the writing node into node. FV_OK, FV_ECORRUPT (err
 * names key), FV_ENOMEM. */
int fv_jsprincipals_decode(const struct fv_kek *kek, const char *key, const unsigned char *v,
                           size_t len, struct fv_principal_row *out,
                           char node[FV_JSPRINC_NODE_MAX + 1], char *err, size_t errlen);

/* U2: two rows of one name merged into out. Returns 0, or 1 when they are two principals
 * (M1: out is the one kept, whole). Commutative and idempotent. */
int fv_jsprincipals_merge(const struct fv_principal_row *a, const struct fv_principal_row *b,
                          struct fv_principal_row *out);

/* ---- the sync ------------------------------------------------------------------------------ */

struct fv_jsprincipals;

/* U1: connects, binds the bucket (making it when missing), opens its own catalog connection
 * on catalog_path (making the principals table if missing), syncs, and starts its thread.
 * node: this node's name (in the values it writes). kek is copied. */
int fv_jsprincipals_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek,
                         const char *catalog_path, const char *node, struct fv_jsprincipals **out,
                         char *err, size_t errlen);
/* Its counters (kvsync.h): conflicts are M1 conflicts and races lost, malformed U5. */
void fv_jsprincipals_stats(struct fv_jsprincipals *s, struct fv_kvsync_stats *out);
/* Stops the thread, closes, wipes and frees. NULL: nothing. */
void fv_jsprincipals_close(struct fv_jsprincipals *s);

#endif
