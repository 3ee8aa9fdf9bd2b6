/*
 * jssubjects.h - owner periods and consents shared by the nodes of a cluster, in a NATS
 * JetStream KV bucket (docs/cluster.md, "Owner periods and consents"; value formats:
 * docs/formats.md, "Owner periods and consents in the KV bucket").
 *
 * The bucket (cluster.subjects_bucket, default fv-subjects; history 1, no TTL, file storage,
 * cluster.replicas) holds, each value wrapped by the master key as jskeys.h's are (format
 * FVKV version 1, kinds 'R' and 'C'), so that no relation of a device to its subjects, no
 * owner and no consent is in clear on NATS:
 *   K "periods.DEVICE_PSEUDONYM"   a device's owner periods (subjects_rows.h rows: epoch,
 *                                  subject pseudonym, since, until, forgotten, the owner id
 *                                  as sealed in the catalog);
 *   K "consents.SUBJECT_PSEUDONYM" a subject's consent history, or "forgotten" (erased).
 * Rules:
 *  P1 every node runs one sync: its own thread, connection and catalog connection. It
 *     applies the bucket to its catalog (P3) and publishes its catalog's changes to the
 *     bucket (P4), whichever process made them (the API, `fleetvault subject`). It follows
 *     the bucket by reading its stream in sequence (kvfollow.h F1-F3: woken by each write,
 *     asking at least every 0.5 s, going on from the same sequence after a failed request).
 *  P2 start-up: fv_jssubjects_open reads the whole bucket (to its last message: its current
 *     state) and applies it, then publishes what the catalog has that the bucket lacks,
 *     before it returns: a node acks no record and serves nothing before (server.c).
 *  P3 merge, the same on every node (fv_jssubjects_merge_*): periods - the longer list, rows
 *     of the same epoch joined (an open period closed by the other side's later epoch, an
 *     owner recorded on one side kept, forgotten on either side forgotten with no owner); two
 *     lists that disagree (a different start at the same epoch: two owner changes made at
 *     once on two nodes) keep the bucket's and log the conflict. Consents - the union of both
 *     histories (the bucket's first, in time order), and forgotten on either side is
 *     forgotten with no rows: an erasure is never undone by a node that had not seen it.
 *  P4 writes are compare-and-set on the entry's revision (kvStore_Create, kvStore_Update with
 *     the revision read): a writer that lost a race reads the winner's value, merges and
 *     tries again (3 times, then on the next round), so no change overwrites another unseen.
 *     A period's data key is put into the keys bucket (jskeys.h J1) before the period is
 *     published, so that every node that learns of the period can seal and open with it.
 *  P5 a value that is short, of another kind or version, wrapped by another master key,
 *     moved to another entry, altered, or whose rows break S1 is refused (FV_ECORRUPT, err
 *     names the entry) and logged; the catalog is left as it was.
 * P6 (an erasure is never undone: P3's forgotten) and P7 (a storage node stores a record under
 * the owner period of its time: gateway/recovery.h fv_recovery_resubject) are in
 * docs/cluster.md with these.
 *
 * Threads: open/close on one thread (start, shutdown); the sync's own thread calls changed()
 * after it changed the catalog, and the keys bucket's source (jskeys.h allows it); the pure
 * functions anywhere.
 */
#ifndef FV_CLUSTER_JSSUBJECTS_H
#define FV_CLUSTER_JSSUBJECTS_H

#include <stddef.h>
#include <stdint.h>

#include "config/cluster_config.h"
#include "cluster/kvsync.h"
#include "crypto/keys.h"
#include "privacy/subjects_rows.h"
#include "util/buf.h"

#define FV_JSSUBJ_KIND_PERIODS  'R'
#define FV_JSSUBJ_KIND_CONSENTS 'C'
#define FV_JSSUBJ_PERIODS       "periods."
#define FV_JSSUBJ_CONSENTS      "consents."

/* ---- values (pure) ------------------------------------------------------------------------ */

/* The plaintext of a periods value / a consents value (canonical: equal rows, equal bytes). */
int fv_jssubjects_periods_pt(const struct fv_period_row *rows, size_t n, struct fv_buf *out);
int fv_jssubjects_consents_pt(const struct fv_consent_rows *c, struct fv_buf *out);
/* The wrapped value of entry key ("periods.P" / "consents.P"). */
int fv_jssubjects_encode_periods(const struct fv_kek *kek, const char *key,
                                 const struct fv_period_row *rows, size_t n, struct fv_buf *out);
int fv_jssubjects_encode_consents(const struct fv_kek *kek, const char *key,
                                  const struct fv_consent_rows *c, struct fv_buf *out);
/* P5. FV_OK, FV_ECORRUPT (err names key and what is wrong), FV_ENOMEM. */
int fv_jssubjects_decode_periods(const struct fv_kek *kek, const char *key, const unsigned char *v,
                                 size_t len, struct fv_period_row *rows, size_t cap, size_t *n,
                                 char *err, size_t errlen);
int fv_jssubjects_decode_consents(const struct fv_kek *kek, const char *key, const unsigned char *v,
                                  size_t len, struct fv_consent_rows *out, char *err,
                                  size_t errlen);

/* P3: local (a) and the bucket's (b) into out[0..FV_PERIOD_ROWS_MAX). Returns 0, or 1 when
 * they conflict (out is then b). */
int fv_jssubjects_merge_periods(const struct fv_period_row *a, size_t na,
                                const struct fv_period_row *b, size_t nb, struct fv_period_row *out,
                                size_t *n);
/* P3: into out (reset first). FV_OK, FV_ENOMEM. */
int fv_jssubjects_merge_consents(const struct fv_consent_rows *a, const struct fv_consent_rows *b,
                                 struct fv_consent_rows *out);

/* ---- the sync ------------------------------------------------------------------------------ */

struct fv_jssubjects;

/* P1, P2: connects, binds the bucket (making it when missing), opens its own catalog
 * connection on catalog_path, syncs, and starts its thread. keys: the keys bucket's source
 * (P4). changed(arg) is called on the sync's thread after each change it made to the
 * catalog. kek is copied. */
int fv_jssubjects_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek,
                       const char *catalog_path, struct fv_keysource keys,
                       void (*changed)(void *arg), void *arg, struct fv_jssubjects **out, char *err,
                       size_t errlen);
/* Its counters (kvsync.h): conflicts are P3 conflicts and races lost, malformed P5. */
void fv_jssubjects_stats(struct fv_jssubjects *s, struct fv_kvsync_stats *out);
/* Stops the thread, closes, wipes and frees. NULL: nothing. */
void fv_jssubjects_close(struct fv_jssubjects *s);

#endif
