/*
 * audit_verify.c - the audit log's readers: fv_audit_verify, which checks every rule of
 * the format atop audit.c (A1-A11) across all files and against the witness, and reports
 * the first one broken; fv_audit_query and fv_audit_filter_match, which answer who accessed
 * what, when. Lines are parsed and files listed by audit_line.c.
 *
 * Invariants: only reads (a writer may be appending meanwhile: a torn last line of the
 * newest file is a warning, A9, and a file removed by retention meanwhile is skipped by a
 * query); verify never says the log is complete without a witness, and counts the entries
 * no signature or witnessed checkpoint covers as unproven.
 *
 * Threads: reentrant, no shared state; any thread may call anything here.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "os/fsio.h"
#include "privacy/audit.h"
#include "privacy/audit_int.h"
#include "util/err.h"

/* ---- verification ----------------------------------------------------------------------- */

/* A witnessed entry: a checkpoint line, or a head line (A14). */
struct wcp {
    uint64_t seq, ts;
    char hash[FV_AUDIT_HASH_HEX + 1]; /* the hash the log's entry seq must have */
    int cp;                           /* a checkpoint line names it (not only a head) */
};

/* What a witness line says the log holds: entry seq with hash *hash. A checkpoint line is
 * the log's own line (its hash); a head line (A14) names the entry's hash in its prev. 0 if
 * the line is one of them, -1 if not. */
static int witness_item(const char *line, size_t n, uint64_t *seq, uint64_t *ts,
                        char hash[FV_AUDIT_HASH_HEX + 1], int *head)
{
    struct fv_audit_entry e;
    char why[256];
    if (fv_audit_parse_line(line, n, &e, why, sizeof why) != FV_OK) return -1;
    *head = strcmp(e.kind, FV_AUDIT__HEAD_KIND) == 0;
    if (!*head && strcmp(e.kind, "checkpoint") != 0) return -1;
    *seq = e.seq;
    *ts = e.ts;
    memcpy(hash, *head ? e.prev : e.hash, FV_AUDIT_HASH_HEX + 1);
    return 0;
}

#define MAX_PUBKEYS 16

/* The verifier's public keys (one file of concatenated PEM keys, e.g. after a rotation);
 * each checkpoint is checked with the key its key_id names. */
struct pubkeys {
    EVP_PKEY *k[MAX_PUBKEYS];
    char id[MAX_PUBKEYS][17];
    char ids[MAX_PUBKEYS * 18]; /* "id1,id2" for messages */
    size_t n;
};

static int load_pubkeys(const char *path, struct pubkeys *pk, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc = fv_os_read_file(path, FV_AUDIT__KEY_FILE_MAX, &text, &len, err, errlen);
    if (rc) return rc;
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    if (bio == NULL) {
        free(text);
        return FV_ENOMEM;
    }
    EVP_PKEY *k;
    while (rc == FV_OK && (k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) != NULL) {
        if (!EVP_PKEY_is_a(k, "ED25519") || pk->n == MAX_PUBKEYS) {
            fv_seterr(err, errlen, "%s: key %zu is not Ed25519, or more than %d keys", path,
                      pk->n + 1, MAX_PUBKEYS);
            EVP_PKEY_free(k);
            rc = FV_EINVAL;
            break;
        }
        pk->k[pk->n] = k;
        fv_audit__key_id(k, pk->id[pk->n]);
        size_t at = strlen(pk->ids);
        snprintf(pk->ids + at, sizeof pk->ids - at, "%s%s", pk->n ? "," : "", pk->id[pk->n]);
        pk->n++;
    }
    ERR_clear_error(); /* the read past the last key leaves "no start line" queued */
    BIO_free(bio);
    free(text);
    if (rc == FV_OK && pk->n == 0) {
        fv_seterr(err, errlen,
                  "%s: no Ed25519 public key in PEM (the PUB of 'fleetvault audit "
                  "keygen')",
                  path);
        rc = FV_EINVAL;
    }
    return rc;
}

static void free_pubkeys(struct pubkeys *pk)
{
    for (size_t i = 0; i < pk->n; i++)
        EVP_PKEY_free(pk->k[i]);
    pk->n = 0;
}

/* 1 if the checkpoint's signature verifies with the key its key_id names, 0 if not, -1 if
 * no key given has that id, or a negative error code. */
static int check_sig(const struct pubkeys *pk, const struct fv_audit_entry *e)
{
    for (size_t i = 0; i < pk->n; i++)
        if (strcmp(pk->id[i], e->key_id) == 0) return fv_audit__verify_checkpoint(pk->k[i], e);
    return -1;
}

struct verify {
    struct fv_audit_report *r;
    struct pubkeys pk;
    const char *dir;
    const char *name; /* the file being read */
    const char *prev_name;
    int newest;
    uint64_t lines_in_file;
    int have_prev;
    uint64_t seq, ts;
    char hash[FV_AUDIT_HASH_HEX + 1];
    int cp_known;
    uint64_t last_cp;
    uint64_t retention_through;
    /* A16: the first retention entry that accounts for the log's start, if any */
    uint64_t cover_seq, cover_through;
    char cover_kept_prev[FV_AUDIT_HASH_HEX + 1];
    char first_prev[FV_AUDIT_HASH_HEX + 1];
    char first_file[FV_AUDIT__NAME_LEN + 1];
    struct wcp *w;
    size_t wn, wi;
    uint64_t witness_last; /* highest witnessed seq found in the log */
    int torn;
    char torn_at[96];
};

__attribute__((format(printf, 4, 5))) static int broken(struct verify *v, uint64_t lineno,
                                                        uint64_t seq, const char *fmt, ...)
{
    struct fv_audit_report *r = v->r;
    r->ok = 0;
    snprintf(r->bad_file, sizeof r->bad_file, "%s", v->name ? v->name : "");
    r->bad_line = lineno;
    r->bad_seq = seq;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (seq)
        snprintf(r->message, sizeof r->message, "%s:%" PRIu64 " (seq %" PRIu64 "): %s", r->bad_file,
                 lineno, seq, what);
    else
        snprintf(r->message, sizeof r->message, "%s:%" PRIu64 ": %s", r->bad_file, lineno, what);
    return FV_ECORRUPT;
}

static int verify_line(void *arg, const char *line, size_t len, uint64_t lineno, int term,
                       uint64_t end)
{
    (void)end;
    struct verify *v = arg;
    struct fv_audit_entry e;
    char why[256];
    v->lines_in_file = lineno;
    if (!term) {
        if (!v->newest)
            return broken(v, lineno, 0, "last line is cut short in a file that is not the newest");
        v->torn = 1;
        snprintf(v->torn_at, sizeof v->torn_at, "%s:%" PRIu64, v->name, lineno);
        return 0;
    }
    if (fv_audit_parse_line(line, len, &e, why, sizeof why)) {
        /* Name the seq when the line still says it, to help find the entry. */
        uint64_t seq = 0;
        if (len > 7 && memcmp(line, "{\"seq\":", 7) == 0) seq = strtoull(line + 7, NULL, 10);
        return broken(v, lineno, seq, "%s", why);
    }
    uint64_t file_seq = fv_audit__name_seq(v->name);
    int genesis = strcmp(e.kind, "genesis") == 0;
    if (lineno == 1 && !genesis)
        return broken(v, lineno, e.seq, "the file does not start with a genesis entry");
    if (lineno == 1 && e.seq != file_seq)
        return broken(v, lineno, e.seq, "the file name says it starts at seq %" PRIu64, file_seq);
    if (lineno > 1 && genesis)
        return broken(v, lineno, e.seq, "genesis entry inside a file (lines moved between files?)");
    if (!v->have_prev) {
        v->r->first_seq = e.seq;
        memcpy(v->first_prev, e.prev, sizeof v->first_prev);
        snprintf(v->first_file, sizeof v->first_file, "%s", v->name);
        if (e.seq == 1 && (strcmp(e.prev, FV_AUDIT__ZERO_HASH) != 0 || e.prev_file[0]))
            return broken(v, lineno, e.seq,
                          "the first entry must have prev 0...0 and no prev_file");
        v->cp_known = 1;
        v->last_cp = e.last_checkpoint;
    } else {
        if (e.seq > v->seq + 1 && genesis)
            return broken(v, lineno, e.seq,
                          "seq gap %" PRIu64 " -> %" PRIu64 ": file(s) missing between %s and "
                          "this one (its genesis names %s)",
                          v->seq, e.seq, v->prev_name, e.prev_file[0] ? e.prev_file : "none");
        if (e.seq > v->seq + 1)
            return broken(v, lineno, e.seq,
                          "seq gap %" PRIu64 " -> %" PRIu64 " (entry deleted or reordered?)",
                          v->seq, e.seq);
        if (e.seq <= v->seq)
            return broken(v, lineno, e.seq,
                          "seq %" PRIu64 " after %" PRIu64 " (entries reordered or duplicated?)",
                          e.seq, v->seq);
        if (strcmp(e.prev, v->hash) != 0)
            return broken(v, lineno, e.seq,
                          "prev does not match the hash of seq %" PRIu64
                          " (an entry before it edited, replaced or reordered?)",
                          v->seq);
        if (genesis && strcmp(e.prev_file, v->prev_name) != 0)
            return broken(v, lineno, e.seq,
                          "genesis names prev_file %s but the previous file is %s", e.prev_file,
                          v->prev_name);
        if (genesis && e.last_checkpoint != v->last_cp)
            return broken(v, lineno, e.seq,
                          "genesis says the last checkpoint is seq %" PRIu64 ", not %" PRIu64,
                          e.last_checkpoint, v->last_cp);
        if (e.ts < v->ts)
            return broken(v, lineno, e.seq, "ts goes backwards (%" PRIu64 " -> %" PRIu64 ")", v->ts,
                          e.ts);
    }
    if (strcmp(e.kind, "checkpoint") == 0) {
        if (strcmp(e.chain_hash, e.prev) != 0)
            return broken(v, lineno, e.seq, "checkpoint chain_hash differs from its prev");
        if (v->cp_known && e.count != e.seq - v->last_cp - 1)
            return broken(v, lineno, e.seq,
                          "checkpoint count %" PRIu64 " but %" PRIu64
                          " entries follow the previous checkpoint",
                          e.count, e.seq - v->last_cp - 1);
        if (v->pk.n) {
            int ok = check_sig(&v->pk, &e);
            if (ok == -1)
                return broken(v, lineno, e.seq,
                              "bad checkpoint signature: signed by key %s, not among the public "
                              "keys given (%s)",
                              e.key_id, v->pk.ids);
            if (ok < 0) return ok;
            if (!ok) return broken(v, lineno, e.seq, "bad checkpoint signature (forged?)");
            v->r->signatures_verified++;
        }
        v->r->checkpoints++;
        v->r->last_checkpoint_seq = e.seq;
        v->cp_known = 1;
        v->last_cp = e.seq;
    }
    if (e.retention_through > v->retention_through) v->retention_through = e.retention_through;
    if (v->cover_seq == 0 && e.retention_through && e.retention_through + 1 >= v->r->first_seq) {
        v->cover_seq = e.seq;
        v->cover_through = e.retention_through;
        memcpy(v->cover_kept_prev, e.retention_kept_prev, sizeof v->cover_kept_prev);
    }
    /* A11: witnessed entries before the log's start were removed by a retention that the
     * witness saw too (A16, checked at the end). */
    while (v->wi < v->wn && v->w[v->wi].seq < e.seq)
        v->wi++;
    if (v->wi < v->wn && v->w[v->wi].seq == e.seq) {
        if (strcmp(v->w[v->wi].hash, e.hash) != 0)
            return broken(v, lineno, e.seq,
                          "differs from the witness's %s for seq %" PRIu64
                          " (log rewritten after it was witnessed?)",
                          v->w[v->wi].cp ? "checkpoint" : "head", e.seq);
        if (v->w[v->wi].cp) v->r->witness_matched++;
        v->witness_last = e.seq;
        v->wi++;
    }
    v->have_prev = 1;
    v->seq = e.seq;
    v->ts = e.ts;
    memcpy(v->hash, e.hash, sizeof v->hash);
    v->r->entries++;
    v->r->last_seq = e.seq;
    return 0;
}

static int cmp_wcp(const void *a, const void *b)
{
    const struct wcp *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void add_warning(struct fv_audit_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_warning(struct fv_audit_report *r, const char *fmt, ...)
{
    size_t n = strlen(r->warning);
    if (n + 2 >= sizeof r->warning) return;
    if (n) {
        r->warning[n++] = ';';
        r->warning[n++] = ' ';
        r->warning[n] = '\0';
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->warning + n, sizeof r->warning - n, fmt, ap);
    va_end(ap);
}

struct wload {
    struct verify *v;
    size_t cap;
    uint64_t bad;
    struct wcp head; /* the newest head line (seq 0: none) */
};

static int wadd(struct wload *wl, const struct wcp *c)
{
    struct verify *v = wl->v;
    if (v->wn == wl->cap) {
        size_t nc = wl->cap ? wl->cap * 2 : 64;
        void *p = realloc(v->w, nc * sizeof *v->w);
        if (p == NULL) return FV_ENOMEM;
        v->w = p;
        wl->cap = nc;
    }
    v->w[v->wn++] = *c;
    return FV_OK;
}

static int wload_line(void *arg, const char *line, size_t n, uint64_t lineno, int term,
                      uint64_t end)
{
    (void)term;
    (void)end;
    struct wload *wl = arg;
    struct verify *v = wl->v;
    struct fv_audit_entry e;
    char why[256];
    struct wcp c = {0};
    int head = 0;
    if (n == 0) return 0; /* blank: a torn line closed on open */
    if (witness_item(line, n, &c.seq, &c.ts, c.hash, &head) != 0 ||
        (!head && v->pk.n &&
         (fv_audit_parse_line(line, n, &e, why, sizeof why) != FV_OK ||
          check_sig(&v->pk, &e) != 1))) {
        if (wl->bad++ == 0)
            add_warning(v->r,
                        "witness line %" PRIu64 " ignored (not a head, nor a checkpoint with a "
                        "good hash%s)",
                        lineno, v->pk.n ? " and signature" : "");
        return 0;
    }
    if (head) {
        /* A14: the newest head pins the whole chain before it; older heads add nothing the
         * checkpoints do not, so they are not kept (the witness grows by one per sync). */
        v->r->witness_heads++;
        if (c.seq >= wl->head.seq) wl->head = c;
        return 0;
    }
    v->r->witness_checkpoints++;
    c.cp = 1;
    return wadd(wl, &c);
}

/* Reads the witness file's checkpoints and its newest head, sorted by seq. Two different
 * entries for one seq mean the log was rewritten and witnessed again: broken. */
static int load_witness(struct verify *v, const char *path, char *err, size_t errlen)
{
    struct wload wl = {.v = v};
    int rc = fv_audit__each_line(path, wload_line, &wl, err, errlen);
    if (rc == FV_OK && wl.head.seq) rc = wadd(&wl, &wl.head);
    if (rc) return rc;
    if (wl.bad > 1) add_warning(v->r, "%" PRIu64 " witness lines ignored in all", wl.bad);
    if (v->wn) qsort(v->w, v->wn, sizeof *v->w, cmp_wcp);
    size_t k = 0;
    for (size_t i = 0; i < v->wn; i++) {
        if (k && v->w[k - 1].seq == v->w[i].seq) {
            if (strcmp(v->w[k - 1].hash, v->w[i].hash) != 0) {
                v->name = "(witness)";
                return broken(v, 0, v->w[i].seq,
                              "the witness holds two different entries for seq %" PRIu64
                              " (log rewritten and witnessed again?)",
                              v->w[i].seq);
            }
            v->w[k - 1].cp |= v->w[i].cp;
            continue;
        }
        v->w[k++] = v->w[i];
    }
    v->wn = k;
    return FV_OK;
}

/* A16: a log that starts after seq 1 must say why, in an audit.retention entry that is
 * itself signed (a checkpoint with a verified signature follows it) and, with a witness,
 * witnessed; and its first entry must chain on from the hash that entry recorded. Else
 * anyone could delete the log, start a fresh one and claim a retention. */
static int check_cut(struct verify *v, int have_key, int have_witness)
{
    struct fv_audit_report *r = v->r;
    v->name = v->first_file;
    if (v->cover_seq == 0) return FV_OK; /* A10 reports it */
    if (have_key && r->last_checkpoint_seq < v->cover_seq)
        return broken(v, 1, r->first_seq,
                      "the log starts at seq %" PRIu64 " and the audit.retention entry that "
                      "accounts for it (seq %" PRIu64 ") is covered by no signed checkpoint "
                      "(history replaced?)",
                      r->first_seq, v->cover_seq);
    if (have_witness && v->witness_last < v->cover_seq)
        return broken(v, 1, r->first_seq,
                      "the log starts at seq %" PRIu64 " and the witness never saw the "
                      "audit.retention entry that accounts for it (seq %" PRIu64 "): %zu "
                      "witnessed entries before the start are unexplained (history replaced?)",
                      r->first_seq, v->cover_seq, v->wn);
    if (v->cover_through + 1 == r->first_seq && v->cover_kept_prev[0] &&
        strcmp(v->cover_kept_prev, v->first_prev) != 0)
        return broken(v, 1, r->first_seq,
                      "the first entry's prev differs from the hash the audit.retention entry "
                      "at seq %" PRIu64 " recorded for seq %" PRIu64 " (history replaced?)",
                      v->cover_seq, v->cover_through);
    return FV_OK;
}

int fv_audit_verify(const char *dir, const char *pubkey_path, const char *witness_path,
                    struct fv_audit_report *report, char *err, size_t errlen)
{
    memset(report, 0, sizeof *report);
    if (err && errlen) err[0] = '\0';
    struct verify v = {.r = report, .dir = dir};
    struct fv_audit__flist fl = {0};
    int rc = FV_OK;
    report->ok = 1;
    if (pubkey_path) {
        rc = load_pubkeys(pubkey_path, &v.pk, err, errlen);
        if (rc) goto out;
    }
    if (witness_path) {
        rc = load_witness(&v, witness_path, err, errlen);
        if (rc) goto out;
    }
    rc = fv_audit__list_files(dir, &fl, err, errlen);
    if (rc == FV_OK && fl.n == 0) {
        fv_seterr(err, errlen, "no audit files in %s", dir);
        rc = FV_ENOENT;
    }
    if (rc) goto out;
    for (size_t i = 0; i < fl.n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, fl.names[i]);
        v.prev_name = i ? fl.names[i - 1] : "";
        v.name = fl.names[i];
        v.newest = i + 1 == fl.n;
        v.lines_in_file = 0;
        report->files++;
        rc = fv_audit__each_line(path, verify_line, &v, err, errlen);
        if (rc) goto out;
        if (v.lines_in_file == 0) {
            if (!v.newest) {
                rc = broken(&v, 1, 0, "empty file");
                goto out;
            }
            add_warning(report, "%s is empty (crash while it was created; removed on next open)",
                        v.name);
        }
    }
    if (report->entries == 0) {
        v.name = fl.names[0];
        rc = broken(&v, 1, 0, "no entries");
        goto out;
    }
    if (report->first_seq > 1 && v.retention_through + 1 < report->first_seq) {
        v.name = v.first_file;
        rc = broken(&v, 1, report->first_seq,
                    "the log starts at seq %" PRIu64 " but no audit.retention entry records the "
                    "removal of seq 1..%" PRIu64 " (oldest files deleted?)",
                    report->first_seq, report->first_seq - 1);
        goto out;
    }
    if (report->first_seq > 1) {
        rc = check_cut(&v, pubkey_path != NULL, witness_path != NULL);
        if (rc) goto out;
    }
    if (v.wi < v.wn) {
        v.name = fl.names[fl.n - 1];
        rc = broken(&v, v.lines_in_file + 1, report->last_seq + 1,
                    "log truncated: the witness holds seq %" PRIu64 " (ts %" PRIu64
                    ") but the log ends at seq %" PRIu64,
                    v.w[v.wn - 1].seq, v.w[v.wn - 1].ts, report->last_seq);
        goto out;
    }
    if (v.torn)
        add_warning(report, "torn last line at %s (a crash mid-write; cut on next open)",
                    v.torn_at);
    if (!pubkey_path) add_warning(report, "checkpoint signatures not checked (no public key)");
    if (witness_path) {
        report->unproven = report->last_seq - v.witness_last;
        if (report->unproven)
            add_warning(report,
                        "%" PRIu64 " entries after seq %" PRIu64 " (the last checkpoint the "
                        "witness holds) could be cut off undetected",
                        report->unproven, v.witness_last);
    } else {
        report->unproven = report->last_seq - report->last_checkpoint_seq;
        if (report->unproven)
            add_warning(report,
                        "no witness: %" PRIu64 " entries after the last checkpoint (seq %" PRIu64
                        ") are not covered by any signature, and a cut back to a checkpoint "
                        "cannot be detected",
                        report->unproven, report->last_checkpoint_seq);
        else
            add_warning(report, "no witness: a cut back to an earlier checkpoint cannot be "
                                "detected");
    }
    snprintf(report->message, sizeof report->message,
             "chain intact: %" PRIu64 " entries (seq %" PRIu64 "..%" PRIu64 ") in %" PRIu64
             " files, %" PRIu64 " checkpoints (%" PRIu64
             " signatures verified, last at seq %" PRIu64 ")%s",
             report->entries, report->first_seq, report->last_seq, report->files,
             report->checkpoints, report->signatures_verified, report->last_checkpoint_seq,
             report->first_seq > 1 ? "; older entries removed by retention" : "");
out:
    if (rc == FV_ECORRUPT && !report->ok) {
        fv_seterr(err, errlen, "%s", report->message);
    } else if (rc) {
        report->ok = 0;
        if (err && errlen && err[0] == '\0') fv_seterr(err, errlen, "%s", fv_strerror(rc));
        snprintf(report->message, sizeof report->message, "%s",
                 err && errlen ? err : fv_strerror(rc));
    }
    free(fl.names);
    free(v.w);
    free_pubkeys(&v.pk);
    return rc;
}

/* ---- the writer's start-up check (A15) --------------------------------------------------- */

#define WITNESS_TAIL (64u << 10) /* the newest witness lines are in its last 64 KiB */

struct wcheck {
    uint64_t want;                         /* the witness's newest seq */
    char want_hash[FV_AUDIT_HASH_HEX + 1]; /* and the hash it holds for it */
    const char *name;
    int have;
    uint64_t seq;
    char hash[FV_AUDIT_HASH_HEX + 1];
    int found;
    char *err;
    size_t errlen;
};

static int wcheck_line(void *arg, const char *line, size_t len, uint64_t lineno, int term,
                       uint64_t end)
{
    (void)end;
    struct wcheck *c = arg;
    struct fv_audit_entry e;
    char why[256];
    const char *bad = NULL;
    if (!term) return 0; /* only the newest file's, and open cut it */
    if (fv_audit_parse_line(line, len, &e, why, sizeof why) != FV_OK)
        bad = why;
    else if (c->have && (e.seq != c->seq + 1 || strcmp(e.prev, c->hash) != 0))
        bad = "the chain breaks here";
    else if (!c->have && e.seq > c->want)
        bad = "the first entry read follows the witness's newest entry";
    else if (e.seq == c->want && strcmp(e.hash, c->want_hash) != 0)
        bad = "this entry differs from the one the witness holds";
    if (bad) {
        fv_seterr(c->err, c->errlen,
                  "%s:%" PRIu64 ": %s (the witness holds seq %" PRIu64
                  "): the log was rewritten, replaced or cut after it was witnessed; nothing "
                  "is signed on top of it. Keep the directory as evidence, run 'fleetvault "
                  "audit verify --witness', and start a fresh log elsewhere",
                  c->name, lineno, bad, c->want);
        return FV_ECORRUPT;
    }
    if (e.seq == c->want) c->found = 1;
    c->have = 1;
    c->seq = e.seq;
    memcpy(c->hash, e.hash, sizeof c->hash);
    return 0;
}

int fv_audit__check_witnessed(const char *dir, const struct fv_audit__flist *fl, int wfd,
                              const char *wpath, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(wfd, &st) != 0) {
        fv_seterr(err, errlen, "stat %s: %s", wpath, strerror(errno));
        return FV_EIO;
    }
    size_t off = (uint64_t)st.st_size > WITNESS_TAIL ? (size_t)st.st_size - WITNESS_TAIL : 0;
    size_t len = (size_t)st.st_size - off;
    char *buf = malloc(len + 1);
    if (buf == NULL) return FV_ENOMEM;
    if (len && pread(wfd, buf, len, (off_t)off) != (ssize_t)len) {
        fv_seterr(err, errlen, "read %s: %s", wpath, strerror(errno));
        free(buf);
        return FV_EIO;
    }
    struct wcheck c = {.name = "", .err = err, .errlen = errlen};
    size_t at = 0;
    if (off) { /* the first line read may be cut: skip it */
        const char *nl = memchr(buf, '\n', len);
        at = nl ? (size_t)(nl - buf) + 1 : len;
    }
    while (at < len) {
        const char *nl = memchr(buf + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (buf + at)) : len - at;
        uint64_t seq, ts;
        int head;
        char hash[FV_AUDIT_HASH_HEX + 1];
        if (n && witness_item(buf + at, n, &seq, &ts, hash, &head) == 0 && seq > c.want) {
            c.want = seq;
            memcpy(c.want_hash, hash, sizeof hash);
        }
        at += n + (nl != NULL);
    }
    free(buf);
    if (c.want == 0) return FV_OK; /* nothing witnessed yet */
    if (fl->n == 0) {
        fv_seterr(err, errlen,
                  "%s: no audit file, but the witness %s holds seq %" PRIu64
                  ": the log was deleted; nothing is signed on top of that. Run 'fleetvault "
                  "audit verify --witness' on a backup, or start a fresh log with a new witness",
                  dir, wpath, c.want);
        return FV_ECORRUPT;
    }
    size_t i = fl->n;
    while (i > 0 && fv_audit__name_seq(fl->names[i - 1]) > c.want)
        i--;
    if (i == 0) i = 1; /* the log starts after it: wcheck_line says so */
    int rc = FV_OK;
    for (i = i - 1; rc == FV_OK && i < fl->n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, fl->names[i]);
        c.name = fl->names[i];
        rc = fv_audit__each_line(path, wcheck_line, &c, err, errlen);
    }
    if (rc == FV_OK && !c.found) {
        fv_seterr(err, errlen,
                  "%s: the log ends at seq %" PRIu64 " but the witness %s holds seq %" PRIu64
                  ": the log was cut after it was witnessed; nothing is signed on top of it. "
                  "Keep the directory as evidence and run 'fleetvault audit verify --witness'",
                  dir, c.seq, wpath, c.want);
        rc = FV_ECORRUPT;
    }
    return rc;
}

/* ---- queries ---------------------------------------------------------------------------- */

static int str_is(json_t *o, const char *key, const char *want)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

static int match_obj(const struct fv_audit_filter *f, json_t *o)
{
    if (f->principal && !str_is(o, "principal", f->principal)) return 0;
    if (f->kind && !str_is(o, "kind", f->kind)) return 0;
    if (f->action && !str_is(o, "action", f->action)) return 0;
    if (f->ticket && !str_is(o, "ticket", f->ticket)) return 0;
    if (f->result && !str_is(o, "result", f->result)) return 0;
    if (f->from_ms || f->to_ms) {
        json_t *ts = json_object_get(o, "ts");
        if (!json_is_integer(ts)) return 0;
        json_int_t t = json_integer_value(ts);
        if (f->from_ms && t < f->from_ms) return 0;
        if (f->to_ms && t > f->to_ms) return 0;
    }
    if (f->subject) {
        json_t *s = json_object_get(o, "subjects"), *x;
        size_t i;
        int found = 0;
        if (!json_is_array(s)) return 0;
        json_array_foreach(s, i, x) if (json_is_string(x) &&
                                        strcmp(json_string_value(x), f->subject) == 0) found = 1;
        if (!found) return 0;
    }
    return 1;
}

int fv_audit_filter_match(const struct fv_audit_filter *f, const char *line, size_t len)
{
    json_t *o = json_loadb(line, len, 0, NULL);
    int m = json_is_object(o) && match_obj(f, o);
    json_decref(o);
    return m;
}

struct query {
    const struct fv_audit_filter *f;
    fv_audit_line_fn fn;
    void *arg;
    const char *name;
    int newest;
    char *err;
    size_t errlen;
};

static int query_line(void *arg, const char *line, size_t len, uint64_t lineno, int term,
                      uint64_t end)
{
    (void)end;
    struct query *q = arg;
    if (!term && q->newest) return 0; /* a torn tail (A9) */
    json_t *o = json_loadb(line, len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        fv_seterr(q->err, q->errlen,
                  "%s:%" PRIu64 ": not a JSON object; run 'fleetvault audit "
                  "verify'",
                  q->name, lineno);
        return FV_ECORRUPT;
    }
    int m = match_obj(q->f, o);
    json_decref(o);
    return m ? q->fn(q->arg, line, len) : 0;
}

int fv_audit_query(const char *dir, const struct fv_audit_filter *f, fv_audit_line_fn fn, void *arg,
                   char *err, size_t errlen)
{
    struct fv_audit__flist fl;
    int rc = fv_audit__list_files(dir, &fl, err, errlen);
    if (rc) return rc;
    struct query q = {.f = f, .fn = fn, .arg = arg, .err = err, .errlen = errlen};
    for (size_t i = 0; i < fl.n && rc == FV_OK; i++) {
        struct fv_audit_entry g;
        /* ts never decreases (A6): a file starting after to_ms, and every later one, holds
         * nothing in range; one whose successor starts before from_ms neither. */
        if (f->to_ms && fv_audit__read_first(dir, fl.names[i], &g) == 0 && (int64_t)g.ts > f->to_ms)
            break;
        if (f->from_ms && i + 1 < fl.n && fv_audit__read_first(dir, fl.names[i + 1], &g) == 0 &&
            (int64_t)g.ts < f->from_ms)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, fl.names[i]);
        q.name = fl.names[i];
        q.newest = i + 1 == fl.n;
        rc = fv_audit__each_line(path, query_line, &q, err, errlen);
        if (rc == FV_ENOENT) rc = FV_OK; /* removed by retention meanwhile */
    }
    free(fl.names);
    return rc;
}
