/*
 * jszones.h - the privacy zones (privacy/zones.h) shared by every node of a cluster through a
 * NATS KV bucket (docs/cluster.md, "Privacy zones"; the value: docs/formats.md, "Privacy zones
 * in the KV bucket").
 *
 * A zone is set on one node (`fleetvault subject zone set` on its catalog), yet the node that
 * serves a location is the owner of the subject's shard, or any node a principal reads from
 * directly: a zone known only where it was set would leave a home's points served elsewhere.
 * So every node keeps its catalog's zones the same as the bucket's, one entry
 * zone.PSEUDONYM.LABEL per zone:
 *
 *  Z6 one sync per storage and api node (kvsync.h K1-K4; a gateway serves no locations): at
 *     start the bucket is applied and the catalog's zones the bucket lacks are published,
 *     before the node serves; then the bucket is followed, and each round in which the
 *     catalog changed publishes the zones that differ from what was last in sync - a zone
 *     set or replaced, and one removed (it was in sync, its row is gone: a removal marker
 *     with the time it was seen, so every node deletes it too). An erasure's
 *     fv_zones_forget is such a removal.
 *  Z7 one merge, the same everywhere: the newer wins (a zone's created_ms, a removal's time);
 *     at the same time a removal wins, then the smaller sealed bytes. A node's catalog
 *     takes the winner (row written, or deleted), and the bucket too (compare-and-set on the
 *     revision read; the loser of a race reads again, 3 times, then the next round).
 *  Z8 the rows are copied sealed (zones.h "Rows as stored"): a zone opens only with its
 *     subject's data key, shared through the keys bucket (jskeys.h), and only under its own
 *     pseudonym and label. The value wraps it again with the master key, so the bucket
 *     shows pseudonyms, labels and sizes only. A value that does not open, is of another
 *     kind, or names another entry is refused (logged, counted) and changes nothing.
 *  Z9 a node that was down while a zone was removed with the CLI on its own catalog
 *     cannot tell that removal from a zone it never had: the bucket's zone comes back (more
 *     points dropped, never fewer). Remove zones while the node runs.
 *
 * Threads: open/close on one thread (start, shutdown); the pure functions anywhere.
 */
#ifndef FV_CLUSTER_JSZONES_H
#define FV_CLUSTER_JSZONES_H

#include <stddef.h>
#include <stdint.h>

#include "config/cluster_config.h"
#include "cluster/kvsync.h"
#include "crypto/keys.h"
#include "privacy/zones.h"
#include "util/buf.h"

#define FV_JSZONE_KIND   'Z'
#define FV_JSZONE_PREFIX "zone."

/* One entry's state: a zone (removed 0: its row) or a removal marker (removed 1, at ms). */
struct fv_jszone {
    char pseudo[FV_PSEUDONYM_LEN + 1];
    char label[FV_ZONE_LABEL_MAX + 1];
    int removed;
    int64_t ms; /* the zone's created_ms, or when its removal was seen */
    unsigned char blob[FV_ZONE_ROW_MAX];
    size_t len; /* 0 when removed */
};

/* Entry key of a zone: zone.PSEUDONYM.LABEL into key (cap >= 80). */
void fv_jszones_key(const char *pseudo, const char *label, char *key, size_t cap);
/* Z8: the value of z, wrapped by kek, appended to out. FV_OK or FV_ENOMEM. */
int fv_jszones_encode(const struct fv_kek *kek, const struct fv_jszone *z, const char *node,
                      struct fv_buf *out);
/* Z8: entry key's value into z and node (65 bytes). FV_OK, or FV_ECORRUPT with err. */
int fv_jszones_decode(const struct fv_kek *kek, const char *key, const unsigned char *v, size_t n,
                      struct fv_jszone *z, char node[65], char *err, size_t errlen);
/* Z7: which of a and b wins: 0 a, 1 b. Pure. */
int fv_jszones_winner(const struct fv_jszone *a, const struct fv_jszone *b);

struct fv_jszones;

/* Z6: the sync for this catalog (its own connection to it), node naming this node in values.
 * FV_OK, or an FV_E* with err set. */
int fv_jszones_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek,
                    const char *catalog_path, const char *node, struct fv_jszones **out, char *err,
                    size_t errlen);
/* Its counters (kvsync.h): malformed are Z8's refusals. */
void fv_jszones_stats(struct fv_jszones *s, struct fv_kvsync_stats *out);
/* Stops the thread and closes everything. NULL: nothing. */
void fv_jszones_close(struct fv_jszones *s);

#endif
