/*
 * jscursor.h - a storage node's shard cursors file (docs/cluster.md, "Storage node" C8;
 * docs/formats.md, "Shard cursors"): per shard, the highest stream sequence whose record
 * this node has stored, kept durably beside the WAL so that it outlives the WAL files (and
 * their cursor records, jsconsume.h C1) that the store deletes once its parts cover them.
 *
 * The file DATA/shard-cursors is text, replaced atomically (temp, fsync, rename, fsync of
 * the directory: os/fsio.h), so it is always a whole version:
 *
 *     fv-shard-cursors 1
 *     SHARD SEQ            one line per shard with a cursor > 0, shards ascending
 *     crc32c HEX8          CRC-32C of every byte before this line
 *
 *  K1 load: a missing file is no cursor (zeros); anything else unexpected - a bad line, a
 *     shard outside 0..nshards-1, a wrong checksum - is FV_ECORRUPT with err naming the
 *     file and the line: the node must not start and re-read its shards from a guess.
 *  K2 save writes every cursor given (zeros left out); the caller makes sure the records
 *     they name are durable before (jsconsume.h C8).
 *
 * Threads: any (no shared state); the storage node calls it on its loop thread.
 */
#ifndef FV_CLUSTER_JSCURSOR_H
#define FV_CLUSTER_JSCURSOR_H

#include <stddef.h>
#include <stdint.h>

#define FV_JSCURSOR_FILE "shard-cursors"

/* K1: cursor[0..nshards-1] set from path (all zero when it does not exist). FV_OK,
 * FV_ECORRUPT or FV_EIO (err says what), FV_ENOMEM. */
int fv_jscursor_load(const char *path, uint64_t *cursor, size_t nshards, char *err, size_t errlen);
/* K2: path replaced atomically by cursor[0..nshards-1]. FV_OK, FV_EIO (err), FV_ENOMEM. */
int fv_jscursor_save(const char *path, const uint64_t *cursor, size_t nshards, char *err,
                     size_t errlen);

#endif
