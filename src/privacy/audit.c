/*
 * audit.c - see audit.h. The writer of the audit log: opening a directory (the newest file
 * recovered in audit_recover.c, its torn tail cut: A9, A17; checked against the witness: A15),
 * appending entries, the group-commit syncer thread (A13), checkpoints and the witness (A8,
 * A11, A12, A14), retention (A10, A16). A line's bytes are made and parsed in audit_line.c, the
 * log is verified and queried in audit_verify.c; the four share the private audit_int.h. The format
 * this file owns, which the other two follow (also docs/audit.md):
 *
 * DATA/audit/ holds audit-NNNNNNNNNNNNNNNN.jsonl files and LOCK (flock'd by the writer).
 * Each line is one entry: a UTF-8 JSON object written compact (no spaces), keys in this
 * order, absent optional keys left out:
 *   every entry   seq, ts, prev, kind, ..., hash
 *   genesis       prev_file, last_checkpoint
 *   checkpoint    chain_hash, count, key_id, sig
 *   other kinds   action, principal, role, purpose, ticket, subjects, signals, from_ms,
 *                 to_ms, rows, bytes, result, reason, extra
 *
 * Validity rules (fv_audit_verify checks them all, reporting the first one broken):
 *  A1  File names are "audit-" + 16 lowercase hex digits + ".jsonl"; the number is the seq
 *      of the file's first entry. Files are read in name order; other names are ignored.
 *  A2  A line is at most FV_AUDIT_MAX_LINE bytes, ends in '\n', is a JSON object with no
 *      duplicate keys, and its last 75 bytes (before '\n') are ',"hash":"' + 64 lowercase
 *      hex digits + '"}'.
 *  A3  hash = lowercase hex SHA-256 of the line's bytes before those last 75 bytes.
 *  A4  seq is an integer >= 1, one more than the previous entry's, across files.
 *  A5  prev is the previous entry's hash; 64 zeros for seq 1.
 *  A6  ts (ms since the epoch) never decreases.
 *  A7  The first entry of every file, and only it, is a "genesis": seq = the file's number,
 *      prev_file = the previous file's name ("" for the first file), last_checkpoint = the
 *      seq of the last checkpoint before it (0 if none).
 *  A8  A "checkpoint" has chain_hash = prev (the hash of everything before it), count = the
 *      entries between the previous checkpoint and it, key_id = the first 16 hex digits of
 *      SHA-256 of the signer's raw 32-byte Ed25519 public key, and sig = the hex Ed25519
 *      signature of FV_AUDIT_SIGN_CONTEXT + decimal seq + "\n" + chain_hash (no final
 *      newline), which verifies with the public key the witness keeps.
 *  A9  Only the newest file may end in a torn line (no '\n': a crash mid-write). Open cuts
 *      it; verify reports it as a warning.
 *  A10 The log may start at seq > 1 (older files removed) only if some admin entry with
 *      action "audit.retention" has extra.through >= the first seq - 1.
 *  A11 Every checkpoint line in the witness file is in the log at its seq with the same hash,
 *      unless its seq precedes the log's first entry (A10). One past the log's end means
 *      the log was truncated.
 *  A12 Write order: an entry is written with one write and fdatasync'd; a checkpoint is
 *      durable in the log before it is appended to the witness (so the witness never holds
 *      more than the log); a new file's genesis is synced, and the directory too, before
 *      any other entry goes into it; the retention entry and a checkpoint are durable
 *      before any file is unlinked.
 *  A13 Group commit (opts.group_commit, the server): an entry is written with one write
 *      and made durable by the syncer thread, many entries per fdatasync; the caller holds
 *      back what the entry gates until fv_audit_durable_seq reaches its seq. Checkpoints,
 *      a new file's genesis and the previous file's end are still synced on the spot (A12).
 *  A14 With a witness, every sync of the log is followed by a "head" line in the witness
 *      ({"seq":S,"ts":T,"prev":<hash of entry S>,"kind":"head","hash":...}; the syncer's
 *      batch, each entry in synchronous mode, a new file's genesis, the last entry at
 *      open) or a checkpoint line, fsync'd; only then is S published as durable, so
 *      nothing an entry gates is released before the witness knows the entry.
 *  A15 Open, with a witness, refuses (FV_ECORRUPT) a log that does not hold the newest
 *      entry the witness knows with the same hash, or does not chain on from it: nothing
 *      is signed on top of a deleted, replaced, cut or rewritten log.
 *  A16 A retention entry records extra.kept_prev, the hash the first kept entry chains
 *      to; verify accepts a log starting after seq 1 only under a retention entry that a
 *      signed checkpoint (and, with a witness, a witnessed entry) follows.
 *  A17 The newest file may end in zeros: the writer writes them ahead of its entries
 *      (opts.prealloc_bytes at a time) so that an entry's fdatasync overwrites blocks the
 *      file has instead of growing it. Readers stop at the first NUL byte (a line holding
 *      one is a torn line, A9); open cuts the zeros with the torn tail; rotation and close
 *      cut them, so a file that is not the newest, and a closed log, end at their last entry.
 *
 * Threading: a struct fv_audit belongs to one thread, but for its syncer thread (A13),
 * which shares fd, written, durable, stop and the sync error with it under mu (and
 * fv_audit_durable_seq and fv_audit_failed, which read them from any thread).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "os/fsio.h"
#include "privacy/audit.h"
#include "privacy/audit_int.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"

#define DEF_EVERY       1000u
#define DEF_INTERVAL_MS 60000u
#define DEF_FILE_BYTES  (64u << 20)
#define DEF_PREALLOC    (1u << 20)

struct fv_audit {
    char dir[PATH_MAX];
    int lock_fd;
    int fd; /* the newest file, appended to */
    char name[FV_AUDIT__NAME_LEN + 1];
    uint64_t size;     /* of the newest file's entries */
    uint64_t alloc;    /* A17: bytes the newest file has (its entries, then zeros), >= size */
    uint64_t prealloc; /* A17: zeros written ahead at a time (0: none) */
    uint64_t lines;    /* in the newest file */
    uint64_t seq;      /* of the last entry */
    char hash[FV_AUDIT_HASH_HEX + 1];
    uint64_t ts;
    uint64_t last_cp_seq;
    uint64_t pending_since; /* clock when the first entry after the last checkpoint came */
    EVP_PKEY *key;
    char key_id[17];
    int wfd; /* witness, or -1 */
    char witness[PATH_MAX];
    uint64_t every, interval_ms, file_bytes, retention_ms;
    uint64_t (*clock_ms)(void *arg);
    void *clock_arg;
    int failed;
    char errbuf[1024];
    /* Group commit (opts.group_commit, A13): the syncer thread makes written lines durable. */
    int group;
    pthread_t syncer;
    int syncer_running;
    pthread_mutex_t mu; /* guards fd (as the syncer reads it), written, durable, stop */
    pthread_cond_t cv;
    uint64_t written, durable; /* seqs: the last entry written, and the last durable */
    uint64_t urgent;           /* the last seq someone waits for (not lazy, or needed) */
    uint64_t lazy_ns;          /* monotonic ns: a lazy entry not synced yet came then (0 none) */
    uint64_t lazy_window_ns;   /* A13: how long a lazy entry waits for another sync */
    uint64_t written_ts;       /* and the ts and hash of the last written (for its head) */
    char written_hash[FV_AUDIT_HASH_HEX + 1];
    pthread_mutex_t wmu; /* serialises writes to the witness (loop thread and syncer) */
    int stop, sync_failed;
    char sync_err[256];
    void (*notify)(void *arg);
    void *notify_arg;
};

/* ---- the writer ------------------------------------------------------------------------- */

static uint64_t clock_now(const struct fv_audit *a)
{
    return a->clock_ms ? a->clock_ms(a->clock_arg) : fv_now_ms();
}

static uint64_t next_ts(const struct fv_audit *a)
{
    uint64_t t = clock_now(a);
    return t > a->ts ? t : a->ts; /* A6: a clock stepping back is clamped */
}

static int fail(struct fv_audit *a, int rc)
{
    a->failed = 1;
    return rc;
}

/* A17: writes zeros past the entries of the newest file, so that the next entries overwrite
 * blocks the file already has and their fdatasync has no size change to commit (on ext4 an
 * append's fdatasync also commits the journal; an overwrite's only flushes the data). A
 * failure (a full disk) cuts the zeros again and leaves the entry to be appended as without;
 * what the entry's own write then meets is handled there. */
static void extend(struct fv_audit *a, size_t need, const char *path)
{
    static const char zeros[64 << 10];
    if (a->prealloc == 0) return;
    uint64_t to = (a->size + need + a->prealloc + 4095) & ~(uint64_t)4095;
    for (uint64_t off = a->alloc; off < to;) {
        size_t n = to - off < sizeof zeros ? (size_t)(to - off) : sizeof zeros;
        if (fv_os_pwrite_all(a->fd, zeros, n, (off_t)off, path, NULL, 0) != FV_OK) {
            /* Zeros left past the entries (the cut failing too) are what readers stop at. */
            (void)fv_os_ftruncate(a->fd, (off_t)a->size, path, NULL, 0);
            a->alloc = a->size;
            return;
        }
        off += n;
    }
    a->alloc = to;
}

/* A17: cuts the newest file's zeros (the file then ends at its last entry) and syncs it. */
static int trim_file(struct fv_audit *a)
{
    if (a->fd < 0 || a->alloc <= a->size) return FV_OK;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", a->dir, a->name);
    int rc = fv_os_ftruncate(a->fd, (off_t)a->size, path, a->errbuf, sizeof a->errbuf);
    if (rc == FV_OK) rc = fv_os_fdatasync(a->fd, path, a->errbuf, sizeof a->errbuf);
    if (rc) return fail(a, rc);
    a->alloc = a->size;
    return FV_OK;
}

/* Writes one finished line to the newest file and syncs it; updates the chain state. */
static int write_line_as(struct fv_audit *a, const struct fv_buf *b, uint64_t seq, uint64_t ts,
                         const char *hash, int lazy)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", a->dir, a->name);
    if (a->size + b->len > a->alloc) extend(a, b->len, path);
    int rc =
        fv_os_pwrite_all(a->fd, b->data, b->len, (off_t)a->size, path, a->errbuf, sizeof a->errbuf);
    /* A full disk: cut the partial line and refuse this entry; the chain is unchanged and a
     * later entry may fit. Nothing of it was synced, so nothing is lost (unlike a failed
     * fsync); lines written before it are untouched. */
    if (rc && (errno == ENOSPC || errno == EDQUOT) &&
        fv_os_ftruncate(a->fd, (off_t)a->size, path, NULL, 0) == FV_OK) {
        a->alloc = a->size;
        return rc;
    }
    if (rc == FV_OK && !a->group) rc = fv_os_fdatasync(a->fd, path, a->errbuf, sizeof a->errbuf);
    if (rc) return fail(a, rc); /* a partial line is a torn tail: open cuts it */
    pthread_mutex_lock(&a->mu);
    a->written = seq;
    a->written_ts = ts;
    memcpy(a->written_hash, hash, FV_AUDIT_HASH_HEX + 1);
    if (!a->group) a->durable = seq;
    /* A13: a lazy entry wakes the syncer only to start its window (it then waits for an
     * urgent entry, a fv_audit_need, or the window's end); anything else syncs now. */
    if (!lazy) {
        a->urgent = seq;
        pthread_cond_signal(&a->cv);
    } else if (a->lazy_ns == 0) {
        a->lazy_ns = fv_mono_ns();
        pthread_cond_signal(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    if (a->seq == a->last_cp_seq) a->pending_since = clock_now(a);
    a->seq = seq;
    a->ts = ts;
    memcpy(a->hash, hash, FV_AUDIT_HASH_HEX + 1);
    a->size += b->len;
    a->lines++;
    return FV_OK;
}

static int write_line(struct fv_audit *a, const struct fv_buf *b, uint64_t seq, uint64_t ts,
                      const char *hash)
{
    return write_line_as(a, b, seq, ts, hash, 0);
}

/* A13: makes everything written to the newest file durable now (group commit only). */
static int sync_file(struct fv_audit *a)
{
    if (!a->group || a->fd < 0) return FV_OK;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", a->dir, a->name);
    int rc = fv_os_fdatasync(a->fd, path, a->errbuf, sizeof a->errbuf);
    return rc ? fail(a, rc) : FV_OK;
}

/* A13, A14: publishes everything so far (a genesis or checkpoint too) as durable; the caller
 * has synced it and, with a witness, had the witness record it. */
static void publish_durable(struct fv_audit *a)
{
    if (!a->group) return;
    pthread_mutex_lock(&a->mu);
    a->written = a->durable = a->seq;
    a->lazy_ns = 0; /* nothing is pending: the next lazy entry starts a window */
    pthread_mutex_unlock(&a->mu);
    if (a->notify) a->notify(a->notify_arg);
}

static int sync_now(struct fv_audit *a)
{
    int rc = sync_file(a);
    if (rc == FV_OK) publish_durable(a);
    return rc;
}

/* Appends one line to the witness and fsyncs it (any thread: under wmu). */
static int witness_write(struct fv_audit *a, const void *data, size_t len, char *err, size_t errlen)
{
    pthread_mutex_lock(&a->wmu);
    int rc = fv_os_write_all(a->wfd, data, len, a->witness, err, errlen);
    if (rc == FV_OK) rc = fv_os_fsync(a->wfd, a->witness, err, errlen);
    pthread_mutex_unlock(&a->wmu);
    return rc;
}

static int witness_append(struct fv_audit *a, const struct fv_buf *b)
{
    if (a->wfd < 0) return FV_OK;
    int rc = witness_write(a, b->data, b->len, a->errbuf, sizeof a->errbuf);
    /* Fail closed: without its witness the log no longer meets its guarantee. */
    return rc ? fail(a, rc) : FV_OK;
}

/* A14: tells the witness that entry seq (durable in the log) has hash, in a "head" line:
 * {"seq":S,"ts":T,"prev":"<hash of entry S>","kind":"head","hash":"<of this line>"}. Any
 * thread (the syncer calls it); the error goes to err only. */
static int witness_head(struct fv_audit *a, uint64_t seq, uint64_t ts, const char *hash, char *err,
                        size_t errlen)
{
    if (a->wfd < 0 || seq == 0) return FV_OK;
    struct fv_buf b = {0};
    char h[FV_AUDIT_HASH_HEX + 1];
    struct fv_audit_event ev = {.kind = FV_AUDIT__HEAD_KIND};
    int rc = fv_audit__event_line(&b, seq, ts, hash, &ev, h, err, errlen);
    if (rc == FV_OK) rc = witness_write(a, b.data, b.len, err, errlen);
    fv_buf_free(&b);
    return rc;
}

/* witness_head for the last entry, from the owner's thread (fails the log on error). */
static int witness_head_now(struct fv_audit *a)
{
    int rc = witness_head(a, a->seq, a->ts, a->hash, a->errbuf, sizeof a->errbuf);
    return rc ? fail(a, rc) : FV_OK;
}

static int write_checkpoint(struct fv_audit *a)
{
    if (a->failed) return FV_EIO;
    struct fv_buf b = {0};
    char hash[FV_AUDIT_HASH_HEX + 1], sig[FV_AUDIT_SIG_HEX + 1];
    uint64_t seq = a->seq + 1, ts = next_ts(a);
    int rc = fv_audit__sign_checkpoint(a->key, seq, a->hash, sig);
    if (rc) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "signing checkpoint %" PRIu64 " failed", seq);
        goto out;
    }
    rc = fv_audit__checkpoint_line(&b, seq, ts, a->hash, seq - a->last_cp_seq - 1, a->key_id, sig,
                                   hash, a->errbuf, sizeof a->errbuf);
    if (rc == FV_OK) rc = write_line(a, &b, seq, ts, hash);
    if (rc == FV_OK) rc = sync_file(a); /* A12: durable in the log before the witness has it */
    if (rc == FV_OK) rc = witness_append(a, &b);
    if (rc == FV_OK) publish_durable(a); /* A14: witnessed before anything it gates goes out */
    if (rc == FV_OK) a->last_cp_seq = seq;
out:
    fv_buf_free(&b);
    return rc;
}

/* Creates the file that starts at seq a->seq + 1 with its genesis entry (A7, A12) and makes
 * it the newest. */
static int start_file(struct fv_audit *a)
{
    char name[FV_AUDIT__NAME_LEN + 1], path[PATH_MAX], hash[FV_AUDIT_HASH_HEX + 1];
    uint64_t seq = a->seq + 1, ts = next_ts(a);
    fv_audit__make_name(name, seq);
    snprintf(path, sizeof path, "%s/%s", a->dir, name);
    struct fv_buf b = {0};
    int rc = fv_audit__genesis_line(&b, seq, ts, seq == 1 ? FV_AUDIT__ZERO_HASH : a->hash,
                                    a->fd >= 0 ? a->name : "", a->last_cp_seq, hash, a->errbuf,
                                    sizeof a->errbuf);
    if (rc) goto out;
    /* A17: the old file ends at its last entry, durable, before the new one exists. */
    if ((rc = trim_file(a)) != FV_OK) goto out;
    int fd;
    rc = fv_os_open(path, O_RDWR | O_CREAT | O_EXCL, 0600, &fd, a->errbuf, sizeof a->errbuf);
    if (rc == FV_OK) {
        rc = fv_os_write_all(fd, b.data, b.len, path, a->errbuf, sizeof a->errbuf);
        if (rc == FV_OK) rc = fv_os_fdatasync(fd, path, a->errbuf, sizeof a->errbuf);
        if (rc == FV_OK) rc = fv_os_fsync_dir(a->dir, a->errbuf, sizeof a->errbuf);
    }
    if (rc) {
        /* A full disk: the new file never held an entry; remove it and go on in the current
         * one (the next entry tries again). Anything else fails the log. */
        int full = errno == ENOSPC || errno == EDQUOT;
        if (fd >= 0) close(fd);
        if (full && a->fd >= 0 && (fd < 0 || fv_os_unlink(path, NULL, 0) == FV_OK)) goto out;
        rc = fail(a, FV_EIO);
        goto out;
    }
    if (a->fd >= 0 && (rc = sync_file(a)) != FV_OK) { /* A13: the old file ends durable */
        close(fd);
        goto out;
    }
    /* A14: the witness learns the genesis (and so everything before it) first. */
    if ((rc = witness_head(a, seq, ts, hash, a->errbuf, sizeof a->errbuf)) != FV_OK) {
        close(fd);
        rc = fail(a, rc);
        goto out;
    }
    pthread_mutex_lock(&a->mu);
    if (a->fd >= 0) close(a->fd);
    a->fd = fd;
    a->written = a->durable = seq; /* the genesis was synced above, the old file before it */
    a->written_ts = ts;
    memcpy(a->written_hash, hash, sizeof hash);
    pthread_mutex_unlock(&a->mu);
    if (a->group && a->notify) a->notify(a->notify_arg); /* held answers may go */
    memcpy(a->name, name, sizeof name);
    a->size = a->alloc = b.len;
    a->lines = 1;
    if (a->seq == a->last_cp_seq) a->pending_since = clock_now(a);
    a->seq = seq;
    a->ts = ts;
    memcpy(a->hash, hash, sizeof hash);
out:
    fv_buf_free(&b);
    return rc;
}

static int maybe_rotate(struct fv_audit *a)
{
    if (a->size < a->file_bytes || a->lines < 2) return FV_OK;
    return start_file(a);
}

static int checkpoint_due(struct fv_audit *a)
{
    uint64_t pending = a->seq - a->last_cp_seq;
    if (pending == 0) return 0;
    if (pending >= a->every) return 1;
    /* No entry stays uncovered by a signature for longer than the interval. */
    uint64_t now = clock_now(a);
    return now >= a->pending_since && now - a->pending_since >= a->interval_ms;
}

static int append_entry(struct fv_audit *a, const struct fv_audit_event *ev, int internal, int lazy,
                        uint64_t *seq_out)
{
    if (!a->failed && a->group && fv_audit_failed(a)) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "audit sync: %s", a->sync_err);
        a->failed = 1;
    }
    if (a->failed) {
        if (a->errbuf[0] == '\0')
            fv_seterr(a->errbuf, sizeof a->errbuf, "the audit log has failed");
        return FV_EIO;
    }
    a->errbuf[0] = '\0';
    if (ev == NULL || ev->kind == NULL || !fv_audit__valid_kind(ev->kind)) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "kind must be 1-%d of [a-z0-9._-]",
                  FV_AUDIT_KIND_MAX);
        return FV_EINVAL;
    }
    if (strcmp(ev->kind, "genesis") == 0 || strcmp(ev->kind, "checkpoint") == 0 ||
        (!internal && ev->action && strcmp(ev->action, FV_AUDIT_RETENTION_ACT) == 0)) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "kind \"%s\" / action \"%s\" are reserved", ev->kind,
                  ev->action ? ev->action : "");
        return FV_EINVAL;
    }
    if (ev->result && strcmp(ev->result, "allow") != 0 && strcmp(ev->result, "deny") != 0 &&
        strcmp(ev->result, "error") != 0) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "result must be allow, deny or error");
        return FV_EINVAL;
    }
    int rc = maybe_rotate(a);
    if (rc) return rc;
    struct fv_buf b = {0};
    char hash[FV_AUDIT_HASH_HEX + 1];
    uint64_t seq = a->seq + 1, ts = next_ts(a);
    rc = fv_audit__event_line(&b, seq, ts, a->hash, ev, hash, a->errbuf, sizeof a->errbuf);
    if (rc == FV_OK) rc = write_line_as(a, &b, seq, ts, hash, lazy);
    fv_buf_free(&b);
    if (rc == FV_OK && !a->group) rc = witness_head_now(a); /* A14 (group: the syncer) */
    if (rc) return rc;
    if (seq_out) *seq_out = seq;
    return checkpoint_due(a) ? write_checkpoint(a) : FV_OK;
}

int fv_audit_append(struct fv_audit *a, const struct fv_audit_event *ev, uint64_t *seq_out)
{
    return append_entry(a, ev, 0, 0, seq_out);
}

int fv_audit_append_lazy(struct fv_audit *a, const struct fv_audit_event *ev, uint64_t *seq_out)
{
    return append_entry(a, ev, 0, 1, seq_out);
}

void fv_audit_need(struct fv_audit *a, uint64_t seq)
{
    if (a == NULL || !a->group) return;
    pthread_mutex_lock(&a->mu);
    if (seq > a->urgent) {
        a->urgent = seq;
        if (seq > a->durable) pthread_cond_signal(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
}

uint64_t fv_audit_durable_seq(struct fv_audit *a)
{
    pthread_mutex_lock(&a->mu);
    uint64_t d = a->durable;
    pthread_mutex_unlock(&a->mu);
    return d;
}

int fv_audit_failed(struct fv_audit *a)
{
    pthread_mutex_lock(&a->mu);
    int f = a->sync_failed;
    pthread_mutex_unlock(&a->mu);
    return f || a->failed;
}

/* A13: the syncer thread. It syncs a duplicate of the newest file's descriptor, so the loop
 * may switch files (after syncing the old one itself) while a sync runs. */
static void *syncer_main(void *arg)
{
    struct fv_audit *a = arg;
    uint64_t headed = 0; /* the last seq whose head the witness has from here */
    pthread_mutex_lock(&a->mu);
    while (!a->stop) {
        if (a->sync_failed || a->written <= a->durable) {
            pthread_cond_wait(&a->cv, &a->mu);
            continue;
        }
        /* Only lazy entries pending: they wait for their window to end, unless an urgent
         * entry or a fv_audit_need comes first (their sync then carries them). */
        if (a->urgent <= a->durable && a->lazy_ns) {
            uint64_t due = a->lazy_ns + a->lazy_window_ns;
            if (fv_mono_ns() < due) {
                struct timespec ts = fv_mono_timespec(due);
                pthread_cond_timedwait(&a->cv, &a->mu, &ts);
                continue;
            }
        }
        a->lazy_ns = 0; /* everything written so far is in this sync */
        uint64_t target = a->written, target_ts = a->written_ts;
        char target_hash[FV_AUDIT_HASH_HEX + 1];
        memcpy(target_hash, a->written_hash, sizeof target_hash);
        int fd = dup(a->fd);
        pthread_mutex_unlock(&a->mu);
        char err[256] = "";
        int rc = fd < 0 ? FV_EIO : fv_os_fdatasync(fd, a->dir, err, sizeof err);
        if (fd >= 0) close(fd);
        /* A14: what is published as durable has reached the witness too. */
        if (rc == FV_OK && target != headed) {
            rc = witness_head(a, target, target_ts, target_hash, err, sizeof err);
            if (rc == FV_OK) headed = target;
        }
        pthread_mutex_lock(&a->mu);
        if (rc) {
            a->sync_failed = 1;
            snprintf(a->sync_err, sizeof a->sync_err, "%s", err[0] ? err : "dup failed");
        } else if (target > a->durable) {
            a->durable = target;
        }
        pthread_mutex_unlock(&a->mu);
        if (a->notify) a->notify(a->notify_arg);
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int fv_audit_tick(struct fv_audit *a)
{
    if (fv_audit_failed(a)) {
        if (!a->failed && a->sync_err[0])
            fv_seterr(a->errbuf, sizeof a->errbuf, "audit sync: %s", a->sync_err);
        a->failed = 1;
        return FV_EIO;
    }
    return checkpoint_due(a) ? write_checkpoint(a) : FV_OK;
}

int fv_audit_checkpoint(struct fv_audit *a)
{
    if (a->failed) return FV_EIO;
    return a->seq > a->last_cp_seq ? write_checkpoint(a) : FV_OK;
}

const char *fv_audit_last_error(const struct fv_audit *a)
{
    return a->errbuf;
}

uint64_t fv_audit_last_seq(const struct fv_audit *a)
{
    return a->seq;
}

/* ---- opening ---------------------------------------------------------------------------- */

/* Recovers the newest file (audit_recover.c: torn tail and zeros cut, A9, A17) and makes it
 * the one appended to. */
static int recover_newest(struct fv_audit *a, struct fv_audit__flist *fl)
{
    struct fv_audit__found f;
    int rc = fv_audit__recover_newest(a->dir, fl, &f, a->errbuf, sizeof a->errbuf);
    if (rc) return rc;
    a->fd = f.fd;
    memcpy(a->name, f.name, FV_AUDIT__NAME_LEN + 1);
    a->size = a->alloc = f.size;
    a->lines = f.lines;
    a->seq = f.seq;
    a->ts = f.ts;
    a->last_cp_seq = f.last_cp;
    memcpy(a->hash, f.hash, sizeof a->hash);
    return FV_OK;
}

static int open_witness(struct fv_audit *a, const char *path)
{
    if (snprintf(a->witness, sizeof a->witness, "%s", path) >= (int)sizeof a->witness) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "witness path too long");
        return FV_EINVAL;
    }
    if (fv_os_open(path, O_RDWR | O_APPEND | O_CREAT, 0600, &a->wfd, a->errbuf, sizeof a->errbuf) !=
        FV_OK)
        return FV_EIO;
    char rd[PATH_MAX], rw[PATH_MAX];
    if (realpath(a->dir, rd) != NULL && realpath(path, rw) != NULL) {
        size_t n = strlen(rd);
        if (strncmp(rw, rd, n) == 0 && rw[n] == '/') {
            fv_seterr(a->errbuf, sizeof a->errbuf,
                      "witness %s is inside the audit directory; keep it outside (another disk "
                      "or machine)",
                      path);
            return FV_EINVAL;
        }
    }
    /* A torn last witness line (crash mid-append) is closed so the next one starts clean;
     * the witness may be append-only, so it is never truncated. */
    struct stat st;
    char last = '\n';
    if (fstat(a->wfd, &st) != 0) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "stat %s: %s", path, strerror(errno));
        return FV_EIO;
    }
    if (st.st_size > 0 && pread(a->wfd, &last, 1, st.st_size - 1) != 1) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "read %s: %s", path, strerror(errno));
        return FV_EIO;
    }
    if (last != '\n') {
        int rc = fv_os_write_all(a->wfd, "\n", 1, path, a->errbuf, sizeof a->errbuf);
        if (rc == FV_OK) rc = fv_os_fsync(a->wfd, path, a->errbuf, sizeof a->errbuf);
        return rc;
    }
    return FV_OK;
}

static void free_audit(struct fv_audit *a)
{
    if (a->syncer_running) {
        pthread_mutex_lock(&a->mu);
        a->stop = 1;
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->syncer, NULL);
    }
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->wmu);
    if (a->fd >= 0) close(a->fd);
    if (a->wfd >= 0) close(a->wfd);
    if (a->lock_fd >= 0) close(a->lock_fd);
    EVP_PKEY_free(a->key);
    free(a);
}

int fv_audit_open(const char *dir, const struct fv_audit_opts *opts, struct fv_audit **out,
                  char *err, size_t errlen)
{
    *out = NULL;
    if (opts == NULL || opts->key_path == NULL) {
        fv_seterr(err, errlen, "the audit log needs a signing key (opts.key_path)");
        return FV_EINVAL;
    }
    struct fv_audit *a = calloc(1, sizeof *a);
    if (a == NULL) return FV_ENOMEM;
    a->fd = a->wfd = a->lock_fd = -1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->wmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the lazy window's timed wait */
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    a->lazy_window_ns = (opts->lazy_ms ? opts->lazy_ms : FV_AUDIT_LAZY_MS) * (uint64_t)1000000u;
    a->every = opts->checkpoint_every ? opts->checkpoint_every : DEF_EVERY;
    a->interval_ms = opts->checkpoint_interval_ms ? opts->checkpoint_interval_ms : DEF_INTERVAL_MS;
    a->file_bytes = opts->file_bytes ? opts->file_bytes : DEF_FILE_BYTES;
    a->prealloc = opts->prealloc_bytes == FV_AUDIT_NO_PREALLOC ? 0
                  : opts->prealloc_bytes                       ? opts->prealloc_bytes
                                                               : DEF_PREALLOC;
    if (a->prealloc > a->file_bytes) a->prealloc = a->file_bytes;
    a->retention_ms = opts->retention_ms;
    a->clock_ms = opts->clock_ms;
    a->clock_arg = opts->clock_arg;
    struct fv_audit__flist fl = {0};
    char lock[PATH_MAX];
    int rc = FV_EINVAL;
    if (snprintf(a->dir, sizeof a->dir, "%s", dir) >= (int)sizeof a->dir ||
        snprintf(lock, sizeof lock, "%s/LOCK", dir) >= (int)sizeof lock) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "path too long: %s", dir);
        goto out;
    }
    rc = fv_os_mkdirs(dir, 0700, a->errbuf, sizeof a->errbuf);
    if (rc) goto out;
    rc = fv_os_open(lock, O_RDWR | O_CREAT, 0600, &a->lock_fd, a->errbuf, sizeof a->errbuf);
    if (rc) {
        rc = FV_EIO;
        goto out;
    }
    if (flock(a->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "%s: the audit log is open in another process", dir);
        rc = FV_EAGAIN;
        goto out;
    }
    rc = fv_audit__load_private_key(opts->key_path, &a->key, a->errbuf, sizeof a->errbuf);
    if (rc) goto out;
    rc = fv_audit__key_id(a->key, a->key_id);
    if (rc) goto out;
    if (opts->witness_path) {
        rc = open_witness(a, opts->witness_path);
        if (rc) goto out;
    }
    rc = fv_audit__list_files(dir, &fl, a->errbuf, sizeof a->errbuf);
    if (rc) goto out;
    rc = recover_newest(a, &fl);
    /* A15: nothing found here is signed or witnessed unless it holds, and chains on from,
     * the newest entry the witness knows. */
    if ((rc == FV_OK || rc == FV_ENOENT) && a->wfd >= 0) {
        int wrc =
            fv_audit__check_witnessed(dir, &fl, a->wfd, a->witness, a->errbuf, sizeof a->errbuf);
        if (wrc) rc = wrc;
    }
    if (rc == FV_ENOENT) {
        if (fl.n == 0) {
            rc = start_file(a);
        } else { /* unreachable: recover_newest only drops files it empties */
            fv_seterr(a->errbuf, sizeof a->errbuf, "%s: no usable audit file", dir);
            rc = FV_ECORRUPT;
        }
    }
    if (rc) goto out;
    uint64_t found = a->seq;
    rc = fv_audit_checkpoint(a);
    if (rc == FV_OK && a->seq == found) rc = witness_head_now(a); /* A14: its last entry */
    if (rc == FV_OK) {
        pthread_mutex_lock(&a->mu);
        a->written = a->durable = a->seq; /* everything found at open is durable (synced) */
        pthread_mutex_unlock(&a->mu);
    }
    if (rc == FV_OK && opts->group_commit) {
        a->notify = opts->notify;
        a->notify_arg = opts->notify_arg;
        a->group = 1;
        if (pthread_create(&a->syncer, NULL, syncer_main, a) != 0) {
            fv_seterr(a->errbuf, sizeof a->errbuf, "cannot start the audit syncer thread");
            rc = FV_ENOMEM;
        } else {
            a->syncer_running = 1;
        }
    }
out:
    free(fl.names);
    if (rc) {
        fv_seterr(err, errlen, "%s", a->errbuf[0] ? a->errbuf : fv_strerror(rc));
        free_audit(a);
        return rc;
    }
    *out = a;
    return FV_OK;
}

int fv_audit_close(struct fv_audit *a)
{
    if (a == NULL) return FV_OK;
    int rc = fv_audit_failed(a) ? FV_EIO : fv_audit_checkpoint(a);
    if (rc == FV_OK) rc = trim_file(a); /* A17 */
    if (rc == FV_OK) rc = sync_now(a);
    free_audit(a);
    return rc;
}

/* ---- retention -------------------------------------------------------------------------- */

int fv_audit_apply_retention(struct fv_audit *a, uint64_t now_ms, uint64_t *deleted)
{
    if (deleted) *deleted = 0;
    if (a->failed) return FV_EIO;
    if (a->retention_ms == 0 || now_ms < a->retention_ms) return FV_OK;
    uint64_t cutoff = now_ms - a->retention_ms;
    struct fv_audit__flist fl;
    int rc = fv_audit__list_files(a->dir, &fl, a->errbuf, sizeof a->errbuf);
    if (rc) return rc;
    /* File i holds nothing newer than the genesis of file i+1 (A6), so it may go once that
     * genesis is older than the cutoff. The newest file always stays. */
    size_t k = 0;
    uint64_t through = 0;
    char kept_prev[FV_AUDIT_HASH_HEX + 1] = "";
    while (k + 1 < fl.n && strcmp(fl.names[k + 1], a->name) <= 0) {
        struct fv_audit_entry g;
        if (fv_audit__read_first(a->dir, fl.names[k + 1], &g) != 0 || g.ts >= cutoff) break;
        through = g.seq - 1;
        memcpy(kept_prev, g.prev, sizeof kept_prev); /* A16: what the kept log chains to */
        k++;
    }
    if (k == 0) goto out;
    json_t *files = json_array();
    for (size_t i = 0; files && i < k; i++)
        if (json_array_append_new(files, json_string(fl.names[i]))) {
            json_decref(files);
            files = NULL;
        }
    json_t *x = files
                    ? json_pack("{s:o,s:I,s:s,s:I}", "files", files, "through", (json_int_t)through,
                                "kept_prev", kept_prev, "retention_ms", (json_int_t)a->retention_ms)
                    : NULL;
    char *xs = x ? json_dumps(x, JSON_COMPACT) : NULL;
    json_decref(x);
    if (xs == NULL) {
        rc = FV_ENOMEM;
        goto out;
    }
    char reason[96];
    snprintf(reason, sizeof reason, "entries older than %" PRIu64 " ms", a->retention_ms);
    struct fv_audit_event ev = {.kind = "admin",
                                .action = FV_AUDIT_RETENTION_ACT,
                                .principal = "fleetvault",
                                .result = "allow",
                                .reason = reason,
                                .extra_json = xs};
    rc = append_entry(a, &ev, 1, 0, NULL);
    free(xs);
    if (rc == FV_OK) rc = fv_audit_checkpoint(a); /* A12: the witness learns it first */
    for (size_t i = 0; rc == FV_OK && i < k; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", a->dir, fl.names[i]);
        int u = fv_os_unlink(path, a->errbuf, sizeof a->errbuf);
        if (u != FV_OK && u != FV_ENOENT) {
            rc = FV_EIO;
        } else if (deleted) {
            (*deleted)++;
        }
    }
    if (rc == FV_OK) rc = fv_os_fsync_dir(a->dir, a->errbuf, sizeof a->errbuf);
out:
    free(fl.names);
    return rc;
}
