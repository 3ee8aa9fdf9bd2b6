/*
 * erasure.h - erasing a device's data (GDPR Art. 17), and keeping it erased across restored
 * backups.
 *
 * Erasing a device erases every subject (owner period, subjects.h) it ever had, each in this
 * order: its tombstone goes to the erasure list (tombstones.h: beside the master key first,
 * then DATA), then its periods, consents and zones are forgotten, its data key destroyed,
 * the store forgets its head records and purges its blocks in the background, and the
 * other holders of sealed data (the clip store, data/clip_store.h C3) remove theirs through
 * the purge hook - at erasure and again for every replayed tombstone at start. A crash
 * in between is finished at the next start by fv_erasure_open, which replays the erasure list
 * into the catalog before anything is decrypted (destroying any key a restored backup brought
 * back), and fv_erasure_purge_restored, which purges the blocks of erased subjects that parts
 * still hold (a restored backup brings them back).
 *
 * Threads: whoever owns the keystore and the store (the server's loop); not thread-safe.
 */
#ifndef FV_PRIVACY_ERASURE_H
#define FV_PRIVACY_ERASURE_H

#include <limits.h>
#include <stddef.h>

#include "util/buf.h"

struct fv_keystore;
struct fv_store;

struct fv_erasure {
    struct fv_keystore *keys;
    char outside[PATH_MAX];    /* the erasure list outside DATA ("" if none: erasure refused) */
    char beside_key[PATH_MAX]; /* KEYFILE.tombstones when outside is elsewhere (replayed) */
    char inside[PATH_MAX];     /* its mirror in DATA */
    struct fv_buf erased;      /* at start: the replayed pseudonyms, FV_PSEUDONYM_LEN each */
    /* Optional, set after fv_erasure_open: removes what else is sealed with the subject's
     * key (the clips), by its keystore pseudonym, using e->keys' thread. An error fails the
     * erasure (the key is destroyed already: retrying finishes it). */
    int (*purge)(void *arg, const char *pseudo, char *err, size_t errlen);
    void *purge_arg;
};

/* Sets up e and replays every erasure list into the catalog. The list outside DATA is
 * $FV_TOMBSTONE_DIR/tombstones.jsonl when that variable is set (it must not be inside DATA:
 * FV_EINVAL), else KEYFILE.tombstones beside the master key file (key_file may be NULL or ""
 * when the key comes from FV_MASTER_KEY: then there is no outside list unless
 * FV_TOMBSTONE_DIR is set, and fv_erasure_erase refuses). FV_OK or an error with err set (a
 * malformed list, a misplaced FV_TOMBSTONE_DIR). */
int fv_erasure_open(struct fv_erasure *e, struct fv_keystore *keys, const char *key_file,
                    const char *data_dir, char *err, size_t errlen);

/* Once the store is open: purges the blocks of every replayed subject (done in the
 * background by the store), then drops the list from memory. */
int fv_erasure_purge_restored(struct fv_erasure *e, struct fv_store *store);

/* Erases every subject of device (see above). by/ticket name who asked (may be NULL).
 * store may be NULL (the server is stopped, `keys shred`): the next start purges the blocks
 * (fv_erasure_purge_restored replays the tombstones written here). FV_ESTATE, nothing
 * erased, when there is no erasure list outside DATA (a restored backup would bring the
 * data back). */
int fv_erasure_erase(struct fv_erasure *e, struct fv_store *store, const char *device,
                     const char *by, const char *ticket, char *err, size_t errlen);

void fv_erasure_close(struct fv_erasure *e);

#endif
