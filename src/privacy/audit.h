/*
 * audit.h - the tamper-evident audit log: every access decision and every admin action,
 * hash-chained, with checkpoints signed by an Ed25519 key that an outside witness keeps.
 *
 * On disk (full specification with numbered rules A1-A17 in docs/audit.md and atop
 * audit.c): DATA/audit/audit-NNNNNNNNNNNNNNNN.jsonl, NNNN = the first seq of the file in 16
 * lowercase hex digits. One JSON object per line, UTF-8, keys in a fixed order:
 *     {"seq":N,"ts":MS,"prev":"<64 hex>","kind":"...",...fields...,"hash":"<64 hex>"}
 * "hash" is the lowercase hex SHA-256 of the line's bytes before its last 75 bytes
 * (',"hash":"' + 64 hex + '"}'); "prev" is the previous entry's hash (64 zeros for seq 1).
 * Every file starts with a "genesis" entry; "checkpoint" entries carry an Ed25519 signature
 * over "fleetvault-audit-checkpoint v1\n<seq>\n<chain_hash>" and are also appended to an
 * optional witness file outside the data directory.
 *
 * Contract:
 *  - fv_audit_append returns only once the entry is on disk (one write + fdatasync), so an
 *    access can be logged before its data is released; with group commit (opts) it returns
 *    once the entry is written, and fv_audit_durable_seq says when it is on disk. A write or sync
 * error is permanent: every later append fails with FV_EIO (the caller must stop serving personal
 * data).
 *  - seq is 1, 2, ... with no gaps across files; ts (wall clock, ms) never decreases (a
 *    clock stepping back is clamped to the last ts).
 *  - Nothing secret is logged: callers must not pass secrets; extra objects with a key
 *    that names one ("token", "key", "password", "secret", "*_token", "*_key", ...) are
 *    refused.
 *  - Verification and queries only read; they may run while a writer is open.
 * Thread-safety: a struct fv_audit is used by one thread (the server's API thread), but for
 * fv_audit_durable_seq and fv_audit_failed (any thread) and its own syncer; at most
 * one process opens a directory for writing (DIR/LOCK, flock). Verify, query, parse, keygen
 * are thread-safe (no shared state).
 */
#ifndef FV_PRIVACY_AUDIT_H
#define FV_PRIVACY_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#define FV_AUDIT_MAX_LINE      (1u << 20) /* an entry's line, newline excluded */
#define FV_AUDIT_HASH_HEX      64
#define FV_AUDIT_SIG_HEX       128
#define FV_AUDIT_KIND_MAX      31 /* [a-z0-9._-]{1,31} */
#define FV_AUDIT_SIGN_CONTEXT  "fleetvault-audit-checkpoint v1\n"
#define FV_AUDIT_RETENTION_ACT "audit.retention" /* reserved admin action */

struct fv_audit;

/* One event as the caller gives it. Every pointer is borrowed for the duration of the call;
 * NULL (or a zero count) leaves the field out of the line. Strings must be UTF-8. */
struct fv_audit_event {
    const char *kind;      /* required: "access", "admin", "erasure", ... ([a-z0-9._-]) */
    const char *action;    /* "query", "export", "subject.erase", "principal.create" */
    const char *principal; /* who */
    const char *role;
    const char *purpose;
    const char *ticket;
    const char *const *subjects; /* pseudonyms or ids, as the caller gives them */
    size_t nsubjects;
    const char *const *signals;
    size_t nsignals;
    int has_range; /* from_ms/to_ms are written only if set */
    int64_t from_ms, to_ms;
    /* written when kind is "access" (0 means nothing was returned) or when non-zero */
    uint64_t rows, bytes;
    const char *result; /* NULL, "allow", "deny" or "error" */
    const char *reason;
    const char *extra_json; /* NULL or a JSON object, written compact after "reason" */
};

struct fv_audit_opts {
    const char *key_path;            /* required: Ed25519 private key, PEM, mode 0600 */
    uint64_t checkpoint_every;       /* entries between checkpoints (0: 1000) */
    uint64_t checkpoint_interval_ms; /* at most this long between checkpoints when entries
                                        arrive (0: 60000); checked on append and tick */
    uint64_t file_bytes;             /* start a new file past this size (0: 64 MiB) */
    uint64_t prealloc_bytes;         /* A17: zeros written ahead of the entries, this many at
                                        a time (0: 1 MiB; at most file_bytes;
                                        FV_AUDIT_NO_PREALLOC: none) */
    uint64_t retention_ms;           /* fv_audit_apply_retention; 0 keeps everything */
    const char *witness_path;        /* NULL, or a file outside DIR: every checkpoint line,
                                        and a head line per sync (A14), is appended to it too
                                        and fsync'd before the entries count as durable */
    uint64_t (*clock_ms)(void *arg); /* NULL: wall clock (tests inject time) */
    void *clock_arg;
    /* Group commit (A13): fv_audit_append only writes; a syncer thread makes entries durable,
     * many per fdatasync, and then calls notify(notify_arg) (from that thread: it must only
     * wake the owner's loop). The owner holds back what an entry gates until
     * fv_audit_durable_seq reaches the entry's seq. 0: every append syncs before returning. */
    int group_commit;
    void (*notify)(void *arg);
    void *notify_arg;
    /* Group commit: how long an entry appended with fv_audit_append_lazy may wait for another
     * entry's sync before it is synced alone (0: FV_AUDIT_LAZY_MS). */
    uint64_t lazy_ms;
};

#define FV_AUDIT_NO_PREALLOC UINT64_MAX

/* A13: a lazy entry's longest wait for a sync to carry it (group commit). */
#define FV_AUDIT_LAZY_MS 5

/* Makes an Ed25519 key pair: the private key in PEM at priv_path (mode 0600), the public key
 * in PEM at pub_path (0644; give it to the witness). Never overwrites (FV_EEXIST). */
int fv_audit_keygen(const char *priv_path, const char *pub_path, char *err, size_t errlen);

/* Opens (creating DIR and its first file if needed) the log for appending. Scans the newest
 * file: a torn last line (crash mid-write) is cut; any other malformed line or chain break
 * in it fails with FV_ECORRUPT naming file:line. With a witness, a log that does not hold
 * the newest entry the witness knows (same hash, chained on from) fails with FV_ECORRUPT
 * (A15): it was deleted, replaced, cut or rewritten. Writes a checkpoint if the last entry is
 * not one. FV_EAGAIN if another process has DIR open. On success *out is owned by the
 * caller (fv_audit_close). */
int fv_audit_open(const char *dir, const struct fv_audit_opts *opts, struct fv_audit **out,
                  char *err, size_t errlen);

/* Appends one entry durably; *seq_out (may be NULL) receives its seq. Writes a checkpoint
 * after it when one is due. FV_EINVAL for a bad event (reserved kind "genesis"/"checkpoint"
 * or action "audit.retention", bad result, extra not an object or naming a secret, bad
 * UTF-8), FV_ELIMIT for a line over FV_AUDIT_MAX_LINE (split the subjects over several
 * entries), FV_EIO once the log has failed. fv_audit_last_error says more. */
int fv_audit_append(struct fv_audit *a, const struct fv_audit_event *ev, uint64_t *seq_out);

/* As fv_audit_append, for an entry that holds back nothing (A13: a one-subject read's
 * access.result): with group commit its sync waits, up to opts.lazy_ms, for the next entry
 * appended with fv_audit_append (whose sync then carries it) or for fv_audit_need; without
 * group commit it is fv_audit_append. The entry is written (in the page cache) either way. */
int fv_audit_append_lazy(struct fv_audit *a, const struct fv_audit_event *ev, uint64_t *seq_out);
/* Group commit: asks the syncer to make every entry up to seq durable now (lazy ones too);
 * call it before waiting for fv_audit_durable_seq to reach seq. Any thread; NULL is a no-op. */
void fv_audit_need(struct fv_audit *a, uint64_t seq);

/* Writes a checkpoint if one is due by time (call it every few seconds from the loop). */
int fv_audit_tick(struct fv_audit *a);
/* Writes a checkpoint now if any entry follows the last one. */
int fv_audit_checkpoint(struct fv_audit *a);

/* Deletes the oldest whole files whose newest entry is older than now_ms - retention_ms,
 * never the newest file. First appends an admin entry (action "audit.retention", extra
 * {"files":[...],"through":SEQ}) and a checkpoint, so a crash mid-way leaves only files
 * that the next run deletes. *deleted (may be NULL) gets the number of files removed. */
int fv_audit_apply_retention(struct fv_audit *a, uint64_t now_ms, uint64_t *deleted);

/* The message of the last failed call on a (valid until the next call). */
const char *fv_audit_last_error(const struct fv_audit *a);
/* Sequence number of the last entry written. */
uint64_t fv_audit_last_seq(const struct fv_audit *a);
/* Every entry with seq <= this is on disk. Any thread. */
uint64_t fv_audit_durable_seq(struct fv_audit *a);
/* Non-zero once the log has failed (a write, or the syncer's fdatasync): nothing more
 * becomes durable, and personal data must not be released. Any thread. */
int fv_audit_failed(struct fv_audit *a);

/* Writes a final checkpoint (if entries follow the last one), syncs and frees a. Returns the
 * checkpoint's error, if any; a is freed either way. NULL is a no-op. */
int fv_audit_close(struct fv_audit *a);

/* The result of fv_audit_verify. */
struct fv_audit_report {
    int ok; /* 1: every rule holds for every entry present */
    uint64_t entries, files, first_seq, last_seq;
    uint64_t checkpoints, last_checkpoint_seq;
    uint64_t signatures_verified; /* 0 without a public key */
    uint64_t witness_checkpoints; /* checkpoint lines read from the witness */
    uint64_t witness_matched;     /* of those, found in the log with the same hash */
    uint64_t witness_heads;       /* head lines read from the witness (A14) */
    uint64_t unproven;            /* entries after the last signed/witnessed point */
    char bad_file[64];            /* the first broken entry (ok == 0) */
    uint64_t bad_line, bad_seq;   /* 1-based line; seq as far as known (0 if not) */
    char message[768];            /* what is wrong, or a summary */
    char warning[768];            /* what could not be proven ("" if nothing) */
};

/* Walks every file of DIR in order and checks rules A1-A17 (docs/audit.md; not A15, the writer's):
 * each line parses and its hash matches, seq increments by one across files, prev matches, every
 * file starts with a genesis naming its predecessor, ts never decreases, checkpoints are consistent
 * and (with pubkey_path) their signatures verify, removed leading files are accounted for by an
 * "audit.retention" entry, and (with witness_path) every witnessed checkpoint is in the log
 * with the same hash (one past the log's end: truncated). pubkey_path is a PEM file of one
 * or more Ed25519 public keys (several after a key rotation); each checkpoint is checked
 * with the key its key_id names. Returns FV_OK if intact,
 * FV_ECORRUPT if broken (report names the first broken entry), other codes (with err) if
 * the check could not run. Entries that nothing proves against truncation (no witness, or
 * after the last checkpoint) are counted in report->unproven and described in
 * report->warning; they do not make the result fail. */
int fv_audit_verify(const char *dir, const char *pubkey_path, const char *witness_path,
                    struct fv_audit_report *report, char *err, size_t errlen);

/* What fv_audit_query matches: NULL fields match anything; strings match exactly. */
struct fv_audit_filter {
    const char *principal;
    const char *subject; /* an element of "subjects" */
    const char *kind;
    const char *action;
    const char *ticket;
    const char *result;
    int64_t from_ms, to_ms; /* ts in [from_ms, to_ms], both inclusive; 0: no bound */
};

/* Called with each matching line (no newline; valid during the call). Non-zero stops the
 * query, which then returns that value. */
typedef int (*fv_audit_line_fn)(void *arg, const char *line, size_t len);

/* Calls fn for every entry of DIR matching f, oldest first. Does not check hashes (that is
 * fv_audit_verify's job); a torn last line is skipped; a line that is not a JSON object
 * fails with FV_ECORRUPT naming file:line. */
int fv_audit_query(const char *dir, const struct fv_audit_filter *f, fv_audit_line_fn fn, void *arg,
                   char *err, size_t errlen);

/* 1 if the JSON line matches f, 0 if not or if it is not a JSON object. */
int fv_audit_filter_match(const struct fv_audit_filter *f, const char *line, size_t len);

/* The fields of one line that verification needs. */
struct fv_audit_entry {
    uint64_t seq, ts;
    char kind[FV_AUDIT_KIND_MAX + 1];
    char prev[FV_AUDIT_HASH_HEX + 1];
    char hash[FV_AUDIT_HASH_HEX + 1];
    /* "checkpoint" */
    char chain_hash[FV_AUDIT_HASH_HEX + 1];
    char sig[FV_AUDIT_SIG_HEX + 1];
    char key_id[17];
    uint64_t count;
    /* "genesis" */
    char prev_file[32];
    uint64_t last_checkpoint;
    /* admin "audit.retention": the last seq removed (0 otherwise), and the hash of that
     * entry, which the first entry kept has as prev ("" if not recorded: older logs) */
    uint64_t retention_through;
    char retention_kept_prev[FV_AUDIT_HASH_HEX + 1];
};

/* Parses and checks one line (len bytes, no newline; need not be NUL-terminated): its
 * length, the hash suffix and that the hash matches, JSON with no duplicate keys, the
 * common fields and those its kind requires. FV_ECORRUPT with a reason in err (e.g.
 * "hash mismatch (edited?)"). Does not check signatures or the chain. */
int fv_audit_parse_line(const char *line, size_t len, struct fv_audit_entry *out, char *err,
                        size_t errlen);

#endif
