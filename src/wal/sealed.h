/*
 * sealed.h - opening the sealed payload of a WAL record with its device's data key.
 *
 * Shared by replay in the server and by `inspect`. The subject of a record is its device id
 * (until the privacy work splits a device's history by owner).
 */
#ifndef FV_WAL_SEALED_H
#define FV_WAL_SEALED_H

#include "crypto/keys.h"
#include "util/buf.h"
#include "wal/wal.h"

/* Appends the record's plaintext payload to out and writes the device's name (its id, which
 * the record names only by pseudonym) into name. A record without FV_WAL_F_SEALED is copied
 * as it is and its device id field is the name. FV_ESTATE: the subject's key was destroyed
 * (erased data); FV_ENOENT: the catalog has no key for it; FV_ECORRUPT: the sealed bytes or
 * their record were altered. */
int fv_wal_open_payload(struct fv_keystore *ks, const struct fv_wal_record *r, struct fv_buf *out,
                        char *name, size_t namelen);

#endif
