/*
 * audit_int.h - internal to the audit log in src/privacy; not a public contract (audit.h
 * is). The few names one of its files calls in another (fv_audit__*; everything else stays
 * static). Nothing outside audit*.c includes this file.
 *
 * The audit log is four files:
 *   audit.c         the writer: opening, appending, the group-commit syncer thread,
 *                   checkpoints, the witness, retention; the format and its rules A1-A17
 *                   are in its top comment;
 *   audit_recover.c the newest file recovered at open: its torn tail and zeros cut (A9, A17);
 *   audit_line.c    a line's bytes: formatted (A2, A3, A7, A8) and parsed; file names (A1)
 *                   and a directory's files read line by line; the Ed25519 keys and
 *                   checkpoint signatures (A8), keygen;
 *   audit_verify.c  the readers: verification (every rule, the witness) and queries.
 *
 * Threads: everything declared here is reentrant (no shared state); struct fv_audit, which
 * only audit.c sees, has its own rules there.
 */
#ifndef FV_PRIVACY_AUDIT_INT_H
#define FV_PRIVACY_AUDIT_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "privacy/audit.h"
#include "util/buf.h"

#define FV_AUDIT__NAME_LEN     28          /* audit- + 16 hex + .jsonl (A1) */
#define FV_AUDIT__KEY_FILE_MAX (64u << 10) /* a PEM key file */
#define FV_AUDIT__HEAD_KIND    "head"      /* a witness line naming a log entry's hash (A14) */
#define FV_AUDIT__ZERO_HASH    "0000000000000000000000000000000000000000000000000000000000000000"

/* ---- names (A1) and kinds ------------------------------------------------------------- */

/* 1 if k is a valid kind: 1-FV_AUDIT_KIND_MAX of [a-z0-9._-]. */
int fv_audit__valid_kind(const char *k);
/* The seq a valid file name announces. */
uint64_t fv_audit__name_seq(const char *name);
/* The name of the file whose first entry is seq. */
void fv_audit__make_name(char out[FV_AUDIT__NAME_LEN + 1], uint64_t seq);

/* ---- keys and signatures (A8) --------------------------------------------------------- */

/* The key_id of k: the first 16 hex digits of SHA-256 of its raw public key. FV_EINVAL if
 * k has no raw 32-byte public key. */
int fv_audit__key_id(EVP_PKEY *k, char out[17]);
/* The signing key from path: an unencrypted Ed25519 private key in PEM that only its owner
 * can read. *out is the caller's (EVP_PKEY_free). */
int fv_audit__load_private_key(const char *path, EVP_PKEY **out, char *err, size_t errlen);
/* The hex signature of checkpoint seq over chain_hash. */
int fv_audit__sign_checkpoint(EVP_PKEY *k, uint64_t seq, const char *chain_hash,
                              char out[FV_AUDIT_SIG_HEX + 1]);
/* 1 if the checkpoint e's signature verifies with k, 0 if not, negative on error. */
int fv_audit__verify_checkpoint(EVP_PKEY *k, const struct fv_audit_entry *e);

/* ---- lines written (A2, A3) ----------------------------------------------------------- */

/* Each appends one entry's complete line, '\n' included, to b, and its hash to hash; on an
 * error (a field not UTF-8, a secret in extra, a line too long) the message goes to err and
 * b holds a partial line the caller discards. */
int fv_audit__genesis_line(struct fv_buf *b, uint64_t seq, uint64_t ts, const char *prev,
                           const char *prev_file, uint64_t last_checkpoint,
                           char hash[FV_AUDIT_HASH_HEX + 1], char *err, size_t errlen);
/* A checkpoint: its prev is chain_hash (A8). */
int fv_audit__checkpoint_line(struct fv_buf *b, uint64_t seq, uint64_t ts, const char *chain_hash,
                              uint64_t count, const char *key_id, const char *sig,
                              char hash[FV_AUDIT_HASH_HEX + 1], char *err, size_t errlen);
/* Any other entry, from the caller's event (whose kind the caller has checked). */
int fv_audit__event_line(struct fv_buf *b, uint64_t seq, uint64_t ts, const char *prev,
                         const struct fv_audit_event *ev, char hash[FV_AUDIT_HASH_HEX + 1],
                         char *err, size_t errlen);

/* ---- reading files -------------------------------------------------------------------- */

struct fv_audit__flist {
    char (*names)[FV_AUDIT__NAME_LEN + 1];
    size_t n;
};

/* The log's files in order (A1); out->names is the caller's (free). FV_ENOENT if dir does
 * not exist. */
int fv_audit__list_files(const char *dir, struct fv_audit__flist *out, char *err, size_t errlen);

/* Called per line without its '\n'; terminated is 0 only for a last line cut short; end is
 * the file offset just past the line. Non-zero stops the walk and is returned. */
typedef int (*fv_audit__line_fn)(void *arg, const char *line, size_t len, uint64_t lineno,
                                 int terminated, uint64_t end);
/* Calls fn for each line of the file at path. FV_ENOENT if it does not exist. */
int fv_audit__each_line(const char *path, fv_audit__line_fn fn, void *arg, char *err,
                        size_t errlen);
/* The first entry of file name in dir, if it parses: 0, else -1. */
int fv_audit__read_first(const char *dir, const char *name, struct fv_audit_entry *out);

/* A15: checks that the log in dir (its files fl, the newest one's torn tail already cut)
 * holds the newest entry the witness (open as wfd, at wpath) knows, with the same hash, and
 * that every entry from there on chains on from it. FV_OK if so or if the witness is empty;
 * FV_ECORRUPT (err says what, and to run verify) if not: the log was truncated, replaced or
 * rewritten, and must not be signed or appended to. */
int fv_audit__check_witnessed(const char *dir, const struct fv_audit__flist *fl, int wfd,
                              const char *wpath, char *err, size_t errlen);

/* ---- recovery at open (audit_recover.c) ----------------------------------------------- */

/* The newest file with an entry, recovered and open for writing. */
struct fv_audit__found {
    int fd; /* O_RDWR, positioned anywhere: the writer writes with pwrite */
    char name[FV_AUDIT__NAME_LEN + 1];
    uint64_t size;  /* its entries' end (the file is cut there) */
    uint64_t lines; /* entries in it */
    uint64_t seq, ts, last_cp;
    char hash[FV_AUDIT_HASH_HEX + 1]; /* of its last entry */
};
/* Walks fl's files from the newest: checks each entry as it chains on (a whole line that is
 * wrong: FV_ECORRUPT naming file:line), cuts a torn last line and zeros written ahead (A9,
 * A17) and syncs the cut, removes a newest file left without an entry (fl->n shrinks), and
 * opens the first with one into *out. FV_OK, FV_ENOENT (no file with an entry), FV_EIO. */
int fv_audit__recover_newest(const char *dir, struct fv_audit__flist *fl,
                             struct fv_audit__found *out, char *err, size_t errlen);

#endif
