/*
 * erasure.h - erasing a device's data (GDPR Art. 17), and keeping it erased across restored
 * backups.
 *
 * Erasing a device erases every subject (owner period, subjects.h) it ever had, each in this
 * order: its tombstone goes to the erasure list (tombstones.h: beside the master key first,
 * then DATA), then its periods, consents and zones are forgotten, its data key destroyed,
 * and the store forgets its head records and purges its blocks in the background. A crash
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
    char outside[PATH_MAX]; /* the erasure list beside the master key ("" if none) */
    char inside[PATH_MAX];  /* its mirror in DATA */
    struct fv_buf erased;   /* at start: the replayed pseudonyms, FV_PSEUDONYM_LEN each */
};

/* Sets up e (paths from the master key file, which may be NULL or "", and DATA) and replays
 * both erasure lists into the catalog. FV_OK or an error with err set (a malformed list). */
int fv_erasure_open(struct fv_erasure *e, struct fv_keystore *keys, const char *key_file,
                    const char *data_dir, char *err, size_t errlen);

/* Once the store is open: purges the blocks of every replayed subject (done in the
 * background by the store), then drops the list from memory. */
int fv_erasure_purge_restored(struct fv_erasure *e, struct fv_store *store);

/* Erases every subject of device (see above). by/ticket name who asked (may be NULL). */
int fv_erasure_erase(struct fv_erasure *e, struct fv_store *store, const char *device,
                     const char *by, const char *ticket, char *err, size_t errlen);

void fv_erasure_close(struct fv_erasure *e);

#endif
