/*
 * tombstones.h - the erasure list (GDPR Art. 17).
 *
 * Erasing a subject destroys its data key (crypto-shredding, crypto/keys.h): everything
 * sealed with it, everywhere, becomes unreadable at once. A copy of the catalog taken
 * before the erasure (a backup) still holds the wrapped key, though. So every erasure is
 * also appended here, and at start the server replays every tombstone into the catalog -
 * destroying any key that a restored backup brought back - before it decrypts anything.
 *
 * Where: beside the master key file (KEYFILE.tombstones), which lives outside the data
 * directory and is backed up apart from it, and mirrored in DATA/tombstones.jsonl. Both
 * are replayed; either alone suffices.
 *
 * Format: JSON lines, appended and fsync'd, never rewritten:
 *   {"subject":"<32 hex: the subject's pseudonym>","erased_ms":N,"by":"...","ticket":"..."}
 * No device or owner id (the pseudonym names the subject without revealing it).
 * A line counts once it and its newline are fsync'd. A torn last line (bytes after the last
 * newline: a crash or a failed write mid-append) was never confirmed: replay skips it, and
 * the next append cuts it (ftruncate, fsync) before writing, so that every line starts on a
 * line of its own. Any other malformed line is an error naming the file and line, since
 * skipping it could resurrect an erased subject.
 * Thread-safe (no shared state; appenders hold an flock on the file while they write).
 */
#ifndef FV_PRIVACY_TOMBSTONES_H
#define FV_PRIVACY_TOMBSTONES_H

#include <stddef.h>
#include <stdint.h>

/* Appends one tombstone durably (a torn last line cut first, then write + fsync; the file
 * is created 0600, its directory fsync'd). by and ticket may be NULL. */
int fv_tombstone_append(const char *path, const char *pseudo, uint64_t at_ms, const char *by,
                        const char *ticket, char *err, size_t errlen);

/* Calls fn for every tombstone in path, in order; a missing file has none. fn's non-zero
 * result stops the replay and is returned. */
int fv_tombstone_replay(const char *path, int (*fn)(void *arg, const char *pseudo, uint64_t at_ms),
                        void *arg, char *err, size_t errlen);

#endif
