/* test_audit.c - the audit log (rules A1-A12 in src/privacy/audit.c): append and verify;
 * every tamper kind (edit, edit + rehash, delete, swap, truncate, delete a file, forge a
 * signature, rewrite the chain, remove the oldest file) is detected and the first broken
 * entry named; torn tails cut on open; zeros written ahead (A17); retention; queries; reopening;
 * refused events; checkpoints by count and time; the witness; the line parser; the CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "os/fsio.h"
#include "privacy/audit.h"
#include "util/err.h"

int fv_cmd_audit(int argc, char **argv); /* cli/cmd_audit.c */

#define T0 1760000000000ull /* 2025-10-09, the fake clock's start */

static char base[64], adir[128], priv[128], pub[128], wit[128];

struct clk {
    uint64_t now, step; /* every reading advances the clock by step */
};

static uint64_t clk_read(void *arg)
{
    struct clk *c = arg;
    uint64_t t = c->now;
    c->now += c->step;
    return t;
}

static int setup(void **state)
{
    (void)state;
    char err[256];
    snprintf(base, sizeof base, "/tmp/fv-audit-XXXXXX");
    if (mkdtemp(base) == NULL) return -1;
    snprintf(adir, sizeof adir, "%s/audit", base);
    snprintf(priv, sizeof priv, "%s/audit.key", base);
    snprintf(pub, sizeof pub, "%s/audit.pub", base);
    snprintf(wit, sizeof wit, "%s/witness.jsonl", base);
    return fv_audit_keygen(priv, pub, err, sizeof err) == FV_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    return system(cmd);
}

static struct fv_audit_opts opts_for(struct clk *c)
{
    return (struct fv_audit_opts){.key_path = priv,
                                  .checkpoint_every = 10,
                                  .checkpoint_interval_ms = 3600000,
                                  .file_bytes = 4096,
                                  .witness_path = wit,
                                  .clock_ms = clk_read,
                                  .clock_arg = c};
}

static const char *const principals[] = {"alice", "bob", "carol"};
static const char *const sigs[] = {"Location", "VehicleSpeed"};

/* Event i: access by alice/bob/carol to subject ps-(i%10), every 5th an admin action, every
 * 7th (from 3) a deny. */
static void append_event(struct fv_audit *a, int i, uint64_t *seq)
{
    char subj[16];
    snprintf(subj, sizeof subj, "ps-%02d", i % 10);
    const char *subjects[] = {subj};
    int admin = i % 5 == 4;
    struct fv_audit_event ev = {.kind = admin ? "admin" : "access",
                                .action = admin ? "principal.create" : "query",
                                .principal = principals[i % 3],
                                .role = "analyst",
                                .purpose = "service",
                                .ticket = "T-42",
                                .subjects = subjects,
                                .nsubjects = admin ? 0 : 1,
                                .signals = sigs,
                                .nsignals = admin ? 0 : 2,
                                .has_range = !admin,
                                .from_ms = 1000,
                                .to_ms = 2000,
                                .rows = (uint64_t)i,
                                .bytes = (uint64_t)i * 100,
                                .result = i % 7 == 3 ? "deny" : "allow",
                                .reason = "ticket approved",
                                .extra_json = admin ? "{\"created\":\"dave\"}" : NULL};
    assert_int_equal(fv_audit_append(a, &ev, seq), FV_OK);
}

/* A closed log of n events over several files (about 12 entries per file). */
static void make_log(int n, struct clk *c)
{
    struct fv_audit_opts o = opts_for(c);
    struct fv_audit *a;
    char err[512];
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    for (int i = 0; i < n; i++)
        append_event(a, i, NULL);
    assert_int_equal(fv_audit_close(a), FV_OK);
}

/* ---- file helpers ----------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The log's files, sorted; returns how many. */
static size_t files_of(const char *d, char names[][40], size_t max)
{
    DIR *dp = opendir(d);
    assert_non_null(dp);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL)
        if (strncmp(de->d_name, "audit-", 6) == 0 && n < max)
            snprintf(names[n++], 40, "%s", de->d_name);
    closedir(dp);
    qsort(names, n, 40, cmp_str);
    return n;
}

struct lines {
    char *l[4096];
    size_t n;
};

static void read_lines(const char *path, struct lines *ls)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    ls->n = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t k;
    while ((k = getline(&line, &cap, f)) > 0) {
        if (line[k - 1] == '\n') line[k - 1] = '\0';
        assert_true(ls->n < 4096);
        ls->l[ls->n++] = strdup(line);
    }
    free(line);
    fclose(f);
}

static void write_lines(const char *path, struct lines *ls)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < ls->n; i++)
        fprintf(f, "%s\n", ls->l[i]);
    fclose(f);
}

static void free_lines(struct lines *ls)
{
    for (size_t i = 0; i < ls->n; i++)
        free(ls->l[i]);
    ls->n = 0;
}

static void file_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", adir, name);
}

/* Recomputes a line's own hash (what an editor who knows the format does). */
static void rehash(char *line)
{
    size_t len = strlen(line);
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)line, len - 75, h);
    for (int i = 0; i < 32; i++) {
        char two[3];
        snprintf(two, sizeof two, "%02x", h[i]);
        memcpy(line + len - 66 + 2 * i, two, 2);
    }
}

static void set_hex(char *line, const char *key, const char *hex64)
{
    char *p = strstr(line, key);
    assert_non_null(p);
    memcpy(p + strlen(key), hex64, 64);
}

/* An attacker without the signing key: rewrites prev, chain_hash and hash of every entry so
 * that the chain is consistent again. Only signatures and the witness can tell. */
static void rechain_all(void)
{
    char names[64][40], path[256], running[65] = "";
    size_t n = files_of(adir, names, 64);
    for (size_t f = 0; f < n; f++) {
        struct lines ls;
        file_path(path, sizeof path, names[f]);
        read_lines(path, &ls);
        for (size_t i = 0; i < ls.n; i++) {
            char *l = ls.l[i];
            if (running[0]) set_hex(l, "\"prev\":\"", running);
            if (strstr(l, "\"kind\":\"checkpoint\"")) set_hex(l, "\"chain_hash\":\"", running);
            rehash(l);
            memcpy(running, l + strlen(l) - 66, 64);
            running[64] = '\0';
        }
        write_lines(path, &ls);
        free_lines(&ls);
    }
}

static void copy_tree(const char *from, const char *to)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", to, from, to);
    assert_int_equal(system(cmd), 0);
}

/* Keeps a pristine copy of the log and witness, to restore between tamper cases. */
static void save(void)
{
    char d[160], w[160];
    snprintf(d, sizeof d, "%s/pristine", base);
    snprintf(w, sizeof w, "%s/pristine-witness", base);
    copy_tree(adir, d);
    copy_tree(wit, w);
}

static void restore(void)
{
    char d[160], w[160];
    snprintf(d, sizeof d, "%s/pristine", base);
    snprintf(w, sizeof w, "%s/pristine-witness", base);
    copy_tree(d, adir);
    copy_tree(w, wit);
}

/* verify; on failure checks the file, line and a piece of the message. */
static struct fv_audit_report expect(int rc, const char *pubkey, const char *witness,
                                     const char *file, uint64_t line, const char *what)
{
    struct fv_audit_report r;
    char err[1024];
    int got = fv_audit_verify(adir, pubkey, witness, &r, err, sizeof err);
    if (got != rc || (what && strstr(r.message, what) == NULL) ||
        (file && strcmp(r.bad_file, file) != 0) || (line && r.bad_line != line))
        fail_msg("verify: rc %d (want %d), at %s:%" PRIu64 " (want %s:%" PRIu64
                 "): %s [want '%s'] err=%s warning=%s",
                 got, rc, r.bad_file, r.bad_line, file ? file : "-", line, r.message,
                 what ? what : "", err, r.warning);
    return r;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_append_and_verify(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    make_log(100, &c);
    char names[64][40], path[256];
    size_t n = files_of(adir, names, 64);
    assert_true(n >= 5);
    assert_string_equal(names[0], "audit-0000000000000001.jsonl");
    struct lines ls;
    file_path(path, sizeof path, names[0]);
    read_lines(path, &ls);
    /* A7: genesis first, prev 0...0; keys in the fixed order */
    assert_non_null(strstr(ls.l[0], "{\"seq\":1,\"ts\":1760000000000,\"prev\":\"0000000000"));
    assert_non_null(strstr(ls.l[0], "\"kind\":\"genesis\",\"prev_file\":\"\","
                                    "\"last_checkpoint\":0,\"hash\":\""));
    /* the checkpoint written at open follows it */
    assert_non_null(strstr(ls.l[1], "\"seq\":2,"));
    assert_non_null(strstr(ls.l[1], "\"kind\":\"checkpoint\",\"chain_hash\":\""));
    assert_non_null(strstr(ls.l[2], "\"kind\":\"access\",\"action\":\"query\","
                                    "\"principal\":\"alice\",\"role\":\"analyst\",\"purpose\":"
                                    "\"service\",\"ticket\":\"T-42\",\"subjects\":[\"ps-00\"],"
                                    "\"signals\":[\"Location\",\"VehicleSpeed\"],\"from_ms\":1000,"
                                    "\"to_ms\":2000,\"rows\":0,\"bytes\":0,\"result\":\"allow\","
                                    "\"reason\":\"ticket approved\",\"hash\":\""));
    free_lines(&ls);
    /* every later file starts with a genesis naming its predecessor (A1, A7) */
    file_path(path, sizeof path, names[1]);
    read_lines(path, &ls);
    char want[80];
    snprintf(want, sizeof want, "\"prev_file\":\"%s\"", names[0]);
    assert_non_null(strstr(ls.l[0], want));
    snprintf(want, sizeof want, "{\"seq\":%llu,", strtoull(names[1] + 6, NULL, 16));
    assert_memory_equal(ls.l[0], want, strlen(want));
    free_lines(&ls);

    struct fv_audit_report r = expect(FV_OK, pub, wit, NULL, 0, "chain intact");
    assert_true(r.ok);
    assert_int_equal(r.files, n);
    assert_int_equal(r.first_seq, 1);
    assert_int_equal(r.last_seq, r.entries);
    assert_true(r.entries > 100 + n); /* events, genesis entries, checkpoints */
    assert_true(r.checkpoints >= 10);
    assert_int_equal(r.signatures_verified, r.checkpoints);
    assert_int_equal(r.last_checkpoint_seq, r.last_seq); /* close wrote one */
    assert_int_equal(r.witness_checkpoints, r.checkpoints);
    assert_int_equal(r.witness_matched, r.checkpoints);
    assert_int_equal(r.unproven, 0);
    assert_string_equal(r.warning, "");
    /* without the witness: intact, but said to be unprovable against truncation */
    r = expect(FV_OK, pub, NULL, NULL, 0, NULL);
    assert_non_null(strstr(r.warning, "no witness"));
    /* without the public key: intact, signatures unchecked */
    r = expect(FV_OK, NULL, wit, NULL, 0, NULL);
    assert_int_equal(r.signatures_verified, 0);
    assert_non_null(strstr(r.warning, "signatures not checked"));
}

/* A13: group commit. Appends return at once; the syncer makes them durable, many per
 * fdatasync, and notifies; durable_seq never passes what was written; files still rotate
 * (the old one synced on the spot) and the chain verifies after close. */
static void count_notify(void *arg)
{
    __atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST);
}

static void test_group_commit(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    struct fv_audit_opts o = opts_for(&c);
    int notified = 0;
    o.group_commit = 1;
    o.notify = count_notify;
    o.notify_arg = &notified;
    struct fv_audit *a;
    char err[512];
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    uint64_t seq = 0;
    for (int i = 0; i < 200; i++) {
        append_event(a, i, &seq);
        assert_true(fv_audit_durable_seq(a) <= fv_audit_last_seq(a));
    }
    assert_true(seq > 0);
    for (int k = 0; k < 5000 && fv_audit_durable_seq(a) < fv_audit_last_seq(a); k++)
        usleep(1000);
    assert_int_equal(fv_audit_durable_seq(a), fv_audit_last_seq(a));
    assert_true(__atomic_load_n(&notified, __ATOMIC_SEQ_CST) >= 1);
    assert_false(fv_audit_failed(a));
    assert_int_equal(fv_audit_close(a), FV_OK);
    char names[64][40];
    assert_true(files_of(adir, names, 64) >= 5); /* rotation happened under group commit */
    struct fv_audit_report r = expect(FV_OK, pub, wit, NULL, 0, "chain intact");
    assert_true(r.ok);
    assert_int_equal(r.witness_matched, r.checkpoints);
}

/* A13: when the syncer's fdatasync fails, nothing more becomes durable, the log reports
 * failure (the server then answers 500 instead of releasing data) and appends fail. */
static void test_group_commit_sync_failure(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    struct fv_audit_opts o = opts_for(&c);
    o.group_commit = 1;
    struct fv_audit *a;
    char err[512];
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    uint64_t before = fv_audit_durable_seq(a), seq = 0;
    fv_os_fault_clear();
    assert_int_equal(fv_os_fault_set(FV_OS_FSYNC, 1, EIO, 1), FV_OK);
    append_event(a, 1, &seq);
    for (int k = 0; k < 5000 && !fv_audit_failed(a); k++)
        usleep(1000);
    assert_true(fv_audit_failed(a));
    assert_true(fv_audit_durable_seq(a) < seq);
    assert_true(fv_audit_durable_seq(a) >= before);
    struct fv_audit_event ev = {.kind = "access", .principal = "bob", .result = "allow"};
    assert_int_equal(fv_audit_append(a, &ev, NULL), FV_EIO);
    fv_os_fault_clear();
    assert_int_equal(fv_audit_close(a), FV_EIO);
}

/* A13: a lazy entry (fv_audit_append_lazy: an access.result that gates no answer) is written
 * but not synced alone: the next ordinary entry's fdatasync carries it (one sync for both),
 * fv_audit_need syncs it at once, and so does the end of its window (opts.lazy_ms). */
static void wait_durable(struct fv_audit *a, uint64_t seq)
{
    for (int k = 0; k < 5000 && fv_audit_durable_seq(a) < seq; k++)
        usleep(1000);
    assert_true(fv_audit_durable_seq(a) >= seq);
}

static void lazy_event(struct fv_audit *a, uint64_t *seq)
{
    const char *subjects[] = {"ps-01"};
    struct fv_audit_event ev = {.kind = "access.result",
                                .action = "query.raw",
                                .principal = "alice",
                                .subjects = subjects,
                                .nsubjects = 1,
                                .rows = 500,
                                .bytes = 20000,
                                .result = "allow"};
    assert_int_equal(fv_audit_append_lazy(a, &ev, seq), FV_OK);
}

static void test_group_commit_lazy(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    struct fv_audit_opts o = opts_for(&c);
    o.checkpoint_every = 100000; /* no checkpoint (synced on the spot) in between */
    o.file_bytes = 1u << 30;
    o.witness_path = NULL; /* count the log's syncs only */
    o.group_commit = 1;
    o.lazy_ms = 600000; /* the window never ends during the test */
    struct fv_audit *a;
    char err[512];
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    wait_durable(a, fv_audit_last_seq(a));
    fv_os_fault_clear(); /* counts syncs from 0 */
    uint64_t lazy = 0, urgent = 0;
    lazy_event(a, &lazy);
    usleep(50000);
    assert_true(fv_audit_durable_seq(a) < lazy); /* not synced alone */
    assert_int_equal(fv_os_fault_calls(FV_OS_FSYNC), 0);
    append_event(a, 1, &urgent); /* an ordinary entry: synced at once, the lazy one with it */
    assert_int_equal(urgent, lazy + 1);
    wait_durable(a, urgent);
    assert_int_equal(fv_os_fault_calls(FV_OS_FSYNC), 1);
    /* fv_audit_need: synced now */
    lazy_event(a, &lazy);
    usleep(20000);
    assert_true(fv_audit_durable_seq(a) < lazy);
    fv_audit_need(a, lazy);
    wait_durable(a, lazy);
    assert_int_equal(fv_os_fault_calls(FV_OS_FSYNC), 2);
    /* one left pending: close syncs it (its checkpoint) and the chain verifies */
    lazy_event(a, &lazy);
    assert_false(fv_audit_failed(a));
    assert_int_equal(fv_audit_close(a), FV_OK);
    struct fv_audit_report r = expect(FV_OK, pub, NULL, NULL, 0, NULL);
    assert_true(r.ok);
    assert_true(r.last_seq > lazy); /* and the close's checkpoint after it */

    /* the window's end syncs a lazy entry nothing else carries */
    o.lazy_ms = 1;
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    wait_durable(a, fv_audit_last_seq(a));
    lazy_event(a, &lazy);
    wait_durable(a, lazy);
    assert_int_equal(fv_audit_close(a), FV_OK);
    fv_os_fault_clear();
}

static void test_tamper(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    make_log(100, &c);
    save();
    char names[64][40], path[256];
    size_t n = files_of(adir, names, 64);
    file_path(path, sizeof path, names[1]);
    struct lines ls;
    read_lines(path, &ls);
    size_t k = 4; /* a line in the middle of the second file (1-based 5) */
    assert_true(ls.n > 8);
    assert_null(strstr(ls.l[k], "checkpoint"));
    char *p;

    /* 1. a field edited, JSON still valid: its own hash */
    p = strstr(ls.l[k], "\"rows\":");
    assert_non_null(p);
    p[7] = p[7] == '9' ? '8' : '9';
    write_lines(path, &ls);
    expect(FV_ECORRUPT, pub, wit, names[1], k + 1, "hash mismatch (edited?)");
    /* 2. edited and its hash recomputed: the next entry's prev */
    rehash(ls.l[k]);
    write_lines(path, &ls);
    expect(FV_ECORRUPT, pub, wit, names[1], k + 2, "prev does not match");
    free_lines(&ls);

    /* 3. a line deleted: the seq gap where it was */
    restore();
    read_lines(path, &ls);
    free(ls.l[k]);
    memmove(&ls.l[k], &ls.l[k + 1], (ls.n - k - 1) * sizeof ls.l[0]);
    ls.n--;
    write_lines(path, &ls);
    expect(FV_ECORRUPT, pub, wit, names[1], k + 1, "seq gap");
    free_lines(&ls);

    /* 4. two lines swapped: the first of them */
    restore();
    read_lines(path, &ls);
    p = ls.l[k];
    ls.l[k] = ls.l[k + 1];
    ls.l[k + 1] = p;
    write_lines(path, &ls);
    expect(FV_ECORRUPT, pub, wit, names[1], k + 1, "reordered");
    free_lines(&ls);

    /* 5. a whole middle file deleted: the genesis of the one after it */
    restore();
    unlink(path);
    expect(FV_ECORRUPT, pub, wit, names[2], 1, "file(s) missing");

    /* 6. a checkpoint's signature forged (a byte flipped, its hash and all later ones
     * recomputed): the signature */
    restore();
    read_lines(path, &ls);
    size_t cp = 0;
    while (cp < ls.n && strstr(ls.l[cp], "\"kind\":\"checkpoint\"") == NULL)
        cp++;
    assert_true(cp < ls.n);
    p = strstr(ls.l[cp], "\"sig\":\"") + 7;
    *p = *p == 'a' ? 'b' : 'a';
    write_lines(path, &ls);
    expect(FV_ECORRUPT, pub, wit, names[1], cp + 1, "hash mismatch");
    rechain_all();
    expect(FV_ECORRUPT, pub, wit, names[1], cp + 1, "bad checkpoint signature");
    /* without the key, the witness still holds the real checkpoint */
    expect(FV_ECORRUPT, NULL, wit, names[1], cp + 1, "differs from the witness");
    free_lines(&ls);

    /* 7. an entry edited and the whole chain after it rewritten: the next checkpoint's
     * signature no longer matches (the attacker has no key), nor does the witness */
    restore();
    size_t fi = 0, ed = 0, next_cp = 0; /* a file with an event followed by a checkpoint */
    for (fi = 1; fi < n && next_cp == 0; fi++) {
        file_path(path, sizeof path, names[fi]);
        read_lines(path, &ls);
        for (ed = 1; ed < ls.n && !strstr(ls.l[ed], "\"principal\":\""); ed++)
            ;
        for (size_t i = ed + 1; i < ls.n && next_cp == 0; i++)
            if (strstr(ls.l[i], "\"kind\":\"checkpoint\"")) next_cp = i;
        if (next_cp == 0) free_lines(&ls);
    }
    fi--;
    assert_true(next_cp > 0);
    p = strstr(ls.l[ed], "\"principal\":\"");
    p[13] = 'X';
    write_lines(path, &ls);
    rechain_all();
    expect(FV_ECORRUPT, pub, NULL, names[fi], next_cp + 1, "bad checkpoint signature");
    expect(FV_ECORRUPT, NULL, wit, names[fi], next_cp + 1, "differs from the witness");
    /* with neither, nothing can tell: said so */
    struct fv_audit_report r = expect(FV_OK, NULL, NULL, NULL, 0, NULL);
    assert_non_null(strstr(r.warning, "signatures not checked"));
    free_lines(&ls);

    /* 8. a signature checked with another key names both keys */
    restore();
    char pub2[160], priv2[160], err[256];
    snprintf(priv2, sizeof priv2, "%s/other.key", base);
    snprintf(pub2, sizeof pub2, "%s/other.pub", base);
    assert_int_equal(fv_audit_keygen(priv2, pub2, err, sizeof err), FV_OK);
    expect(FV_ECORRUPT, pub2, NULL, names[0], 2, "signed by key");
    /* a rotation: the log continues under the new key; a file holding both public keys
     * verifies every checkpoint with the key its key_id names */
    struct clk c2 = {c.now, 1000};
    struct fv_audit_opts o2 = opts_for(&c2);
    o2.key_path = priv2;
    struct fv_audit *a2;
    assert_int_equal(fv_audit_open(adir, &o2, &a2, err, sizeof err), FV_OK);
    append_event(a2, 1, NULL);
    assert_int_equal(fv_audit_close(a2), FV_OK);
    char both[160], cmd[600];
    snprintf(both, sizeof both, "%s/both.pub", base);
    snprintf(cmd, sizeof cmd, "cat '%s' '%s' > '%s'", pub, pub2, both);
    assert_int_equal(system(cmd), 0);
    r = expect(FV_OK, both, wit, NULL, 0, "chain intact");
    assert_int_equal(r.signatures_verified, r.checkpoints);
    assert_string_equal(r.warning, "");
    r = expect(FV_ECORRUPT, pub, wit, NULL, 0, "not among the public keys given");

    /* 9. the oldest file deleted, with no retention entry to account for it */
    restore();
    file_path(path, sizeof path, names[0]);
    unlink(path);
    expect(FV_ECORRUPT, pub, NULL, names[1], 1, "no audit.retention entry");

    /* 10. a file's first line moved to the end of the previous file */
    restore();
    struct lines l2;
    char path0[256];
    file_path(path0, sizeof path0, names[0]);
    file_path(path, sizeof path, names[1]);
    read_lines(path0, &ls);
    read_lines(path, &l2);
    ls.l[ls.n++] = l2.l[0];
    memmove(&l2.l[0], &l2.l[1], (l2.n - 1) * sizeof l2.l[0]);
    l2.n--;
    write_lines(path0, &ls);
    write_lines(path, &l2);
    free_lines(&ls);
    free_lines(&l2);
    expect(FV_ECORRUPT, pub, wit, names[0], 0, "genesis entry inside a file");
    (void)n;
}

/* Cuts the last k entries of the log (across files, removing files left empty); returns
 * the seq of the first one cut and puts the name and line count of the new last file. */
static uint64_t cut_tail(size_t k, char last_name[40], size_t *last_lines)
{
    char names[64][40], path[256];
    size_t n = files_of(adir, names, 64);
    uint64_t first_cut = 0;
    for (;;) {
        struct lines ls;
        file_path(path, sizeof path, names[n - 1]);
        read_lines(path, &ls);
        while (k > 0 && ls.n > 0) {
            first_cut = strtoull(ls.l[ls.n - 1] + 7, NULL, 10);
            free(ls.l[--ls.n]);
            k--;
        }
        if (ls.n == 0) {
            unlink(path);
            n--;
            continue;
        }
        write_lines(path, &ls);
        snprintf(last_name, 40, "%s", names[n - 1]);
        *last_lines = ls.n;
        free_lines(&ls);
        return first_cut;
    }
}

static int last_is_checkpoint(void)
{
    char names[64][40], path[256];
    size_t n = files_of(adir, names, 64);
    struct lines ls;
    file_path(path, sizeof path, names[n - 1]);
    read_lines(path, &ls);
    int is = strstr(ls.l[ls.n - 1], "\"kind\":\"checkpoint\"") != NULL;
    free_lines(&ls);
    return is;
}

/* The seq of the last checkpoint before the final one. */
static uint64_t second_last_checkpoint(void)
{
    struct {
        uint64_t last, before;
    } c = {0, 0};
    char names[64][40], path[256];
    size_t n = files_of(adir, names, 64);
    for (size_t f = 0; f < n; f++) {
        struct lines ls;
        file_path(path, sizeof path, names[f]);
        read_lines(path, &ls);
        for (size_t i = 0; i < ls.n; i++)
            if (strstr(ls.l[i], "\"kind\":\"checkpoint\"")) {
                c.before = c.last;
                c.last = strtoull(ls.l[i] + 7, NULL, 10);
            }
        free_lines(&ls);
    }
    return c.before;
}

static void test_truncation(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    make_log(100, &c);
    save();
    struct fv_audit_report r = expect(FV_OK, pub, wit, NULL, 0, NULL);
    uint64_t last = r.last_seq;
    char name[40];
    size_t lines;
    /* the last 3 entries cut (the final checkpoint among them): the witness has it */
    uint64_t cut = cut_tail(3, name, &lines);
    assert_int_equal(cut, last - 2);
    if (last_is_checkpoint()) cut = cut_tail(1, name, &lines); /* end on an unsigned entry */
    r = expect(FV_ECORRUPT, pub, wit, name, lines + 1, "truncated");
    assert_int_equal(r.bad_seq, cut);
    /* without a witness: not proven, said so (a warning, not "all proven") */
    r = expect(FV_OK, pub, NULL, NULL, 0, NULL);
    assert_true(r.unproven > 0);
    assert_non_null(strstr(r.warning, "not covered by any signature"));

    /* cut right after an earlier checkpoint: only the witness can tell */
    restore();
    uint64_t cp = second_last_checkpoint();
    assert_true(cp > 0 && cp < last);
    cut = cut_tail(last - cp, name, &lines);
    assert_int_equal(cut, cp + 1);
    expect(FV_ECORRUPT, pub, wit, name, lines + 1, "truncated");
    r = expect(FV_OK, pub, NULL, NULL, 0, NULL);
    assert_int_equal(r.unproven, 0);
    assert_non_null(strstr(r.warning, "no witness"));

    /* the whole newest file deleted */
    restore();
    char names[64][40], path[256];
    size_t n = files_of(adir, names, 64);
    file_path(path, sizeof path, names[n - 1]);
    unlink(path);
    expect(FV_ECORRUPT, pub, wit, names[n - 2], 0, "truncated");
}

/* A15, A16: a log the witness contradicts is never signed on top of; a retention claim that
 * no signed, witnessed checkpoint covers explains nothing. */
static void test_open_refuses_what_the_witness_contradicts(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    make_log(30, &c);
    save();
    struct fv_audit_opts o = opts_for(&c);
    struct fv_audit *a;
    char err[512], name[40];
    size_t lines;
    /* cut: the witness holds the last entry */
    cut_tail(2, name, &lines);
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "cut after it was witnessed"));
    o.witness_path = NULL; /* without the witness nothing can tell (and the log opens) */
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    assert_int_equal(fv_audit_close(a), FV_OK);
    o.witness_path = wit;
    /* deleted: nothing is started afresh under a witness that has seen entries */
    restore();
    char names[64][40], path[256];
    size_t n = files_of(adir, names, 64);
    for (size_t i = 0; i < n; i++) {
        file_path(path, sizeof path, names[i]);
        unlink(path);
    }
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "no audit file"));
    /* replaced: a fresh genesis after the old last seq and an unsigned retention claim */
    restore();
    struct fv_audit_report r = expect(FV_OK, pub, wit, NULL, 0, NULL);
    n = files_of(adir, names, 64);
    for (size_t i = 0; i < n; i++) {
        file_path(path, sizeof path, names[i]);
        unlink(path);
    }
    char fname[40], g[512], ret[512], gh[65];
    uint64_t s0 = r.last_seq + 1;
    snprintf(fname, sizeof fname, "audit-%016llx.jsonl", (unsigned long long)s0);
    file_path(path, sizeof path, fname);
    snprintf(g, sizeof g,
             "{\"seq\":%llu,\"ts\":%llu,\"prev\":\"%064d\",\"kind\":\"genesis\",\"prev_file\":"
             "\"\",\"last_checkpoint\":0,\"hash\":\"%064d\"}",
             (unsigned long long)s0, (unsigned long long)c.now, 0, 0);
    rehash(g);
    memcpy(gh, g + strlen(g) - 66, 64);
    gh[64] = '\0';
    snprintf(ret, sizeof ret,
             "{\"seq\":%llu,\"ts\":%llu,\"prev\":\"%s\",\"kind\":\"admin\",\"action\":"
             "\"audit.retention\",\"principal\":\"fleetvault\",\"result\":\"allow\",\"extra\":"
             "{\"through\":%llu},\"hash\":\"%064d\"}",
             (unsigned long long)s0 + 1, (unsigned long long)c.now, gh, (unsigned long long)s0 - 1,
             0);
    rehash(ret);
    struct lines ls = {0};
    ls.l[ls.n++] = strdup(g);
    ls.l[ls.n++] = strdup(ret);
    write_lines(path, &ls);
    free_lines(&ls);
    expect(FV_ECORRUPT, pub, NULL, fname, 1, "no signed checkpoint");
    expect(FV_ECORRUPT, NULL, wit, fname, 1, "never saw");
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "witness holds seq"));
}

static void test_torn_tail_cut_on_open(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    make_log(30, &c);
    char names[64][40], path[256], err[512];
    size_t n = files_of(adir, names, 64);
    file_path(path, sizeof path, names[n - 1]);
    struct stat st0, st1;
    assert_int_equal(stat(path, &st0), 0);
    FILE *f = fopen(path, "a");
    fputs("{\"seq\":999,\"ts\":17600", f);
    fclose(f);
    struct fv_audit_report r = expect(FV_OK, pub, wit, NULL, 0, NULL);
    assert_non_null(strstr(r.warning, "torn last line"));
    uint64_t last = r.last_seq;

    struct fv_audit_opts o = opts_for(&c);
    struct fv_audit *a;
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    assert_int_equal(stat(path, &st1), 0);
    assert_int_equal(st1.st_size, st0.st_size);   /* cut back to the last whole line */
    assert_int_equal(fv_audit_last_seq(a), last); /* last entry was a checkpoint: none added */
    uint64_t seq;
    append_event(a, 1, &seq);
    assert_int_equal(seq, last + 1);
    assert_int_equal(fv_audit_close(a), FV_OK);
    expect(FV_OK, pub, wit, NULL, 0, "chain intact");

    /* a whole line that is wrong is not a torn tail: open refuses, naming file:line */
    struct lines ls;
    read_lines(path, &ls);
    size_t k = ls.n - 2;
    char *p = strstr(ls.l[k], "\"ts\":");
    p[6] ^= 1; /* a digit stays a digit */
    write_lines(path, &ls);
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_ECORRUPT);
    char want[80];
    snprintf(want, sizeof want, "%s:%zu: hash mismatch", names[n - 1], k + 1);
    assert_non_null(strstr(err, want));
    free_lines(&ls);

    /* a newest file left empty by a crash while it was created is removed */
    char empty[256];
    snprintf(empty, sizeof empty, "%s/audit-00000000ffffffff.jsonl", adir);
    file_path(path, sizeof path, names[n - 1]);
    read_lines(path, &ls);
    p = strstr(ls.l[k], "\"ts\":");
    p[6] ^= 1; /* back as it was */
    write_lines(path, &ls);
    free_lines(&ls);
    expect(FV_OK, pub, wit, NULL, 0, NULL);
    f = fopen(empty, "w");
    fclose(f);
    r = expect(FV_OK, pub, wit, NULL, 0, NULL);
    assert_non_null(strstr(r.warning, "is empty"));
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    assert_int_not_equal(access(empty, F_OK), 0);
    assert_int_equal(fv_audit_close(a), FV_OK);
    expect(FV_OK, pub, wit, NULL, 0, "chain intact");
}

/* A9 at every offset: the newest file cut anywhere inside its last line (a crash mid-write)
 * opens, continues the chain from the entry before, and verifies. */
static void test_cut_at_every_offset(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    struct fv_audit_opts o = opts_for(&c);
    o.witness_path = NULL; /* the cut line was never durable, so never witnessed */
    o.file_bytes = 1 << 20;
    struct fv_audit *a;
    char err[512], names[4][40], path[256];
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    for (int i = 0; i < 3; i++)
        append_event(a, i, NULL);
    assert_int_equal(fv_audit_close(a), FV_OK);
    assert_int_equal(files_of(adir, names, 4), 1);
    file_path(path, sizeof path, names[0]);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char img[1 << 16];
    size_t len = fread(img, 1, sizeof img, f);
    fclose(f);
    size_t start = len - 1;
    while (start > 0 && img[start - 1] != '\n')
        start--;
    uint64_t before = strtoull(img + start + 7, NULL, 10) - 1; /* seq of the entry before */
    for (size_t off = start; off < len; off++) {
        f = fopen(path, "wb");
        assert_int_equal(fwrite(img, 1, off, f), off);
        fclose(f);
        assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
        /* the cut line is gone; the open wrote a checkpoint after the entry before it */
        assert_int_equal(fv_audit_last_seq(a), before + 1);
        assert_int_equal(fv_audit_close(a), FV_OK);
        struct fv_audit_report r;
        if (fv_audit_verify(adir, pub, NULL, &r, err, sizeof err) != FV_OK)
            fail_msg("cut at %zu: %s", off, r.message);
    }
}

/* A crash (no close): the reopened log checkpoints what was appended since. */
static void test_reopen_continues(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    make_log(20, &c);
    struct fv_audit_report r = expect(FV_OK, pub, wit, NULL, 0, NULL);
    uint64_t last = r.last_seq;
    struct fv_audit_opts o = opts_for(&c);
    o.file_bytes = 1 << 20; /* no new file meanwhile: seqs are easy to predict */
    struct fv_audit *a;
    char err[512];
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (fv_audit_open(adir, &o, &a, err, sizeof err) != FV_OK) _exit(1);
        for (int i = 0; i < 3; i++)
            append_event(a, i, NULL);
        _exit(0); /* crash: no close, no final checkpoint */
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    r = expect(FV_OK, pub, wit, NULL, 0, NULL);
    assert_int_equal(r.last_seq, last + 3);
    assert_int_equal(r.unproven, 0); /* each entry reached the witness as it was synced (A14) */
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    assert_int_equal(fv_audit_last_seq(a), last + 4); /* the checkpoint on open */
    /* a second writer is refused */
    struct fv_audit *b;
    assert_int_equal(fv_audit_open(adir, &o, &b, err, sizeof err), FV_EAGAIN);
    uint64_t seq;
    append_event(a, 5, &seq);
    assert_int_equal(seq, last + 5);
    assert_int_equal(fv_audit_close(a), FV_OK);
    r = expect(FV_OK, pub, wit, NULL, 0, "chain intact");
    assert_int_equal(r.last_seq, last + 6);
    assert_int_equal(r.unproven, 0);
}

/* The file's bytes; *entries is where its entries end (the first NUL byte, or its size). */
static size_t read_image(const char *path, char *img, size_t cap, size_t *entries)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t len = fread(img, 1, cap, f);
    fclose(f);
    const char *nul = memchr(img, '\0', len);
    *entries = nul ? (size_t)(nul - img) : len;
    return len;
}

/* A17: the newest file is written ahead with zeros; verify and open stop at them; a crash
 * leaves them and open cuts them; rotation and close cut them, so only the newest file of
 * a running log ever holds a NUL byte. */
static void test_prealloc_zeros(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    struct fv_audit_opts o = opts_for(&c);
    o.file_bytes = 1 << 20;
    o.prealloc_bytes = 8192;
    struct fv_audit *a;
    char err[512], names[64][40], path[256];
    static char img[1 << 16];
    size_t entries;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (fv_audit_open(adir, &o, &a, err, sizeof err) != FV_OK) _exit(1);
        for (int i = 0; i < 5; i++)
            append_event(a, i, NULL);
        _exit(0); /* crash: no close */
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(files_of(adir, names, 64), 1);
    file_path(path, sizeof path, names[0]);
    size_t len = read_image(path, img, sizeof img, &entries);
    assert_true(len >= entries + 8192 - 4096); /* zeros ahead of the entries */
    assert_true(entries > 0 && img[entries - 1] == '\n');
    for (size_t i = entries; i < len; i++)
        assert_int_equal(img[i], 0);
    /* verify reads up to the zeros: every entry, no torn line */
    struct fv_audit_report r = expect(FV_OK, pub, wit, NULL, 0, NULL);
    uint64_t last = r.last_seq; /* genesis, checkpoint at open, 5 entries */
    assert_int_equal(last, 7);
    assert_null(strstr(r.warning, "torn"));
    /* open cuts the zeros and goes on after the last entry */
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    assert_int_equal(fv_audit_last_seq(a), last + 1); /* the checkpoint on open */
    uint64_t seq;
    append_event(a, 9, &seq);
    assert_int_equal(seq, last + 2);
    assert_int_equal(fv_audit_close(a), FV_OK);
    len = read_image(path, img, sizeof img, &entries);
    assert_int_equal(len, entries); /* closed: no zeros left */
    assert_int_equal(img[len - 1], '\n');
    expect(FV_OK, pub, wit, NULL, 0, "chain intact");

    /* A crash that tore a line inside the zeros, with a later line's bytes after them (the
     * disk wrote one block of an unsynced batch and not another): a torn tail, cut. */
    memcpy(img + len, "{\"seq\":9,\"ts\":17", 16);
    memset(img + len + 16, 0, 600);
    const char *later = "{\"seq\":10,\"ts\":1760000099000,\"kind\":\"access\"}\n";
    memcpy(img + len + 616, later, strlen(later));
    FILE *f = fopen(path, "wb");
    assert_int_equal(fwrite(img, 1, len + 616 + strlen(later), f), len + 616 + strlen(later));
    fclose(f);
    r = expect(FV_OK, pub, NULL, NULL, 0, NULL);
    assert_non_null(strstr(r.warning, "torn last line"));
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal((size_t)sb.st_size, len);        /* cut back to the last whole entry */
    assert_int_equal(fv_audit_last_seq(a), last + 3); /* the close's checkpoint, the last */
    /* rotation: every file but the newest ends at its last entry, none holds a NUL byte */
    for (int i = 0; i < 40; i++)
        append_event(a, i, NULL);
    fv_audit_close(a);
    o.file_bytes = 4096;
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    for (int i = 0; i < 60; i++)
        append_event(a, i, NULL);
    size_t n = files_of(adir, names, 64);
    assert_true(n >= 4);
    for (size_t k = 0; k + 1 < n; k++) {
        file_path(path, sizeof path, names[k]);
        len = read_image(path, img, sizeof img, &entries);
        assert_int_equal(len, entries);
        assert_int_equal(img[len - 1], '\n');
    }
    file_path(path, sizeof path, names[n - 1]);
    len = read_image(path, img, sizeof img, &entries);
    assert_true(len > entries); /* the newest, open: zeros ahead */
    assert_int_equal(fv_audit_close(a), FV_OK);
    expect(FV_OK, pub, wit, NULL, 0, "chain intact");
    /* no zeros: none written ahead */
    o.prealloc_bytes = FV_AUDIT_NO_PREALLOC;
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    append_event(a, 1, NULL);
    n = files_of(adir, names, 64);
    file_path(path, sizeof path, names[n - 1]);
    len = read_image(path, img, sizeof img, &entries);
    assert_int_equal(len, entries);
    assert_int_equal(fv_audit_close(a), FV_OK);
}

static void test_retention(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    make_log(100, &c);
    char names[64][40], err[512];
    size_t n0 = files_of(adir, names, 64);
    struct fv_audit_opts o = opts_for(&c);
    o.retention_ms = 50000;
    struct fv_audit *a;
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    uint64_t deleted = 0;
    assert_int_equal(fv_audit_apply_retention(a, T0 + 10000, &deleted), FV_OK);
    assert_int_equal(deleted, 0); /* nothing that old yet */
    assert_int_equal(fv_audit_apply_retention(a, c.now, &deleted), FV_OK);
    assert_true(deleted > 0 && deleted < n0);
    size_t n1 = files_of(adir, names, 64);
    assert_int_equal(n1, n0 - deleted);
    /* long after: everything but the newest file goes */
    assert_int_equal(fv_audit_apply_retention(a, c.now + 10000000, &deleted), FV_OK);
    assert_int_equal(files_of(adir, names, 64), 1);
    assert_int_equal(fv_audit_close(a), FV_OK);
    struct fv_audit_report r = expect(FV_OK, pub, wit, NULL, 0, "removed by retention");
    assert_true(r.first_seq > 1);
    assert_int_equal(r.files, 1);
}

struct collected {
    int n;
    char last[4096];
};

static int collect(void *arg, const char *line, size_t len)
{
    struct collected *c = arg;
    c->n++;
    snprintf(c->last, sizeof c->last, "%.*s", (int)len, line);
    return 0;
}

static int count_query(const struct fv_audit_filter *f, struct collected *c)
{
    char err[512];
    memset(c, 0, sizeof *c);
    assert_int_equal(fv_audit_query(adir, f, collect, c, err, sizeof err), FV_OK);
    return c->n;
}

struct window {
    int64_t from, to;
    int n;
    int64_t first; /* the first ts in the window */
};

static int count_window(void *arg, const char *line, size_t len)
{
    (void)len;
    struct window *w = arg;
    long long ts = strtoll(strstr(line, "\"ts\":") + 5, NULL, 10);
    if (ts >= w->from && ts <= w->to && w->n++ == 0) w->first = ts;
    return 0;
}

static void test_query(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    make_log(100, &c);
    struct collected got;
    /* events i = 0..99: principal i%3, admin if i%5==4, subject ps-(i%10) on access */
    struct fv_audit_filter f = {.principal = "bob"};
    assert_int_equal(count_query(&f, &got), 33);
    f = (struct fv_audit_filter){.subject = "ps-03"};
    assert_int_equal(count_query(&f, &got), 10);
    assert_non_null(strstr(got.last, "\"ps-03\""));
    f = (struct fv_audit_filter){.subject = "ps-04"}; /* i%10==4 are admin: no subjects */
    assert_int_equal(count_query(&f, &got), 0);
    f = (struct fv_audit_filter){.kind = "admin"};
    assert_int_equal(count_query(&f, &got), 20);
    f = (struct fv_audit_filter){.action = "principal.create", .principal = "alice"};
    assert_int_equal(count_query(&f, &got), 7); /* i = 9, 24, 39, 54, 69, 84, 99 */
    f = (struct fv_audit_filter){.result = "deny"};
    assert_int_equal(count_query(&f, &got), 14); /* i%7 == 3 */
    f = (struct fv_audit_filter){.kind = "checkpoint"};
    assert_true(count_query(&f, &got) >= 10);
    f = (struct fv_audit_filter){.ticket = "T-42", .kind = "access"};
    assert_int_equal(count_query(&f, &got), 80);
    /* time: the whole log, then a window inside it */
    f = (struct fv_audit_filter){.kind = "access", .from_ms = (int64_t)T0, .to_ms = (int64_t)c.now};
    assert_int_equal(count_query(&f, &got), 80);
    /* a window inside it: exactly the entries whose ts is in it (counted by hand) */
    struct window w = {(int64_t)T0 + 40000, (int64_t)T0 + 59999, 0, 0};
    f = (struct fv_audit_filter){0};
    char err[256];
    assert_int_equal(fv_audit_query(adir, &f, count_window, &w, err, sizeof err), FV_OK);
    f = (struct fv_audit_filter){.from_ms = w.from, .to_ms = w.to};
    assert_true(w.n > 5);
    assert_int_equal(count_query(&f, &got), w.n);
    f.from_ms = w.first;
    assert_int_equal(count_query(&f, &got), w.n); /* inclusive */
    f.from_ms = w.first + 1;
    assert_int_equal(count_query(&f, &got), w.n - 1); /* ts are strictly increasing here */
    f.from_ms = (int64_t)c.now + 1;
    f.to_ms = 0;
    assert_int_equal(count_query(&f, &got), 0);
    /* the empty filter matches any object */
    f = (struct fv_audit_filter){0};
    assert_int_equal(fv_audit_filter_match(&f, "{\"kind\":\"x\"}", 12), 1);
    assert_int_equal(fv_audit_filter_match(&f, "[1]", 3), 0);
}

static int stop_at_3(void *arg, const char *line, size_t len)
{
    (void)line;
    (void)len;
    return ++*(int *)arg == 3 ? 7 : 0;
}

static void test_query_stop_and_retention_entry(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    make_log(60, &c);
    char err[256];
    int n = 0;
    struct fv_audit_filter f = {0};
    assert_int_equal(fv_audit_query(adir, &f, stop_at_3, &n, err, sizeof err), 7);
    assert_int_equal(n, 3);
    struct fv_audit_opts o = opts_for(&c);
    o.retention_ms = 20000;
    struct fv_audit *a;
    uint64_t deleted;
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    assert_int_equal(fv_audit_apply_retention(a, c.now, &deleted), FV_OK);
    assert_true(deleted > 0);
    assert_int_equal(fv_audit_close(a), FV_OK);
    struct collected got;
    f = (struct fv_audit_filter){.action = "audit.retention"};
    assert_int_equal(count_query(&f, &got), 1);
    assert_non_null(strstr(got.last, "\"kind\":\"admin\""));
    assert_non_null(strstr(got.last, "\"files\":[\"audit-0000000000000001.jsonl\""));
    assert_non_null(strstr(got.last, "\"through\":"));
    expect(FV_OK, pub, wit, NULL, 0, "removed by retention");
}

static void test_refused_events(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    struct fv_audit_opts o = opts_for(&c);
    struct fv_audit *a;
    char err[512];
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    uint64_t before = fv_audit_last_seq(a);
    struct fv_audit_event ev = {.kind = "access", .principal = "alice"};
    const char *bad_extra[] = {"{\"token\":\"abc\"}",
                               "{\"q\":{\"api_key\":\"x\"}}",
                               "{\"list\":[{\"Password\":1}]}",
                               "{\"apiKey\":\"x\"}",
                               "{\"access_token\":\"x\"}",
                               "[1,2]",
                               "{\"a\":1,\"a\":2}",
                               "not json"};
    for (size_t i = 0; i < sizeof bad_extra / sizeof *bad_extra; i++) {
        ev.extra_json = bad_extra[i];
        assert_int_equal(fv_audit_append(a, &ev, NULL), FV_EINVAL);
    }
    ev.extra_json = "{\"token\":1}";
    fv_audit_append(a, &ev, NULL);
    assert_non_null(strstr(fv_audit_last_error(a), "secrets never go into the audit log"));
    ev.extra_json = "{\"monkey\":1,\"key_id\":\"k1\"}"; /* names that only look alike */
    assert_int_equal(fv_audit_append(a, &ev, NULL), FV_OK);
    ev.extra_json = NULL;
    const char *reserved[] = {"genesis", "checkpoint", "", "Access", "a b"};
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++) {
        ev.kind = reserved[i];
        assert_int_equal(fv_audit_append(a, &ev, NULL), FV_EINVAL);
    }
    ev.kind = "admin";
    ev.action = "audit.retention";
    assert_int_equal(fv_audit_append(a, &ev, NULL), FV_EINVAL);
    ev.action = NULL;
    ev.result = "maybe";
    assert_int_equal(fv_audit_append(a, &ev, NULL), FV_EINVAL);
    ev.result = NULL;
    ev.principal = "bad \xff utf-8";
    assert_int_equal(fv_audit_append(a, &ev, NULL), FV_EINVAL);
    assert_non_null(strstr(fv_audit_last_error(a), "principal is not valid UTF-8"));
    /* too long: split over several entries */
    size_t big = FV_AUDIT_MAX_LINE;
    char *s = malloc(big + 1);
    memset(s, 'x', big);
    s[big] = '\0';
    ev.principal = "alice";
    ev.reason = s;
    assert_int_equal(fv_audit_append(a, &ev, NULL), FV_ELIMIT);
    free(s);
    ev.reason = NULL;
    assert_int_equal(fv_audit_last_seq(a), before + 1); /* only the good one went in */
    /* quotes, newlines, non-ASCII are escaped / kept as UTF-8; the line stays one line */
    ev.principal = "o\"brien\nnew line \xc3\xa9";
    uint64_t seq;
    assert_int_equal(fv_audit_append(a, &ev, &seq), FV_OK);
    assert_int_equal(fv_audit_close(a), FV_OK);
    struct collected got;
    struct fv_audit_filter f = {.principal = "o\"brien\nnew line \xc3\xa9"};
    assert_int_equal(count_query(&f, &got), 1);
    assert_non_null(strstr(got.last, "\"principal\":\"o\\\"brien\\nnew line \xc3\xa9\""));
    expect(FV_OK, pub, wit, NULL, 0, "chain intact");
}

static void test_checkpoints_by_count_and_time(void **state)
{
    (void)state;
    struct clk c = {T0, 0};
    struct fv_audit_opts o = opts_for(&c);
    o.checkpoint_every = 5;
    o.checkpoint_interval_ms = 10000;
    o.file_bytes = 1 << 20;
    struct fv_audit *a;
    char err[512];
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    assert_int_equal(fv_audit_last_seq(a), 2); /* genesis, checkpoint */
    for (int i = 0; i < 5; i++)
        append_event(a, i, NULL);
    assert_int_equal(fv_audit_last_seq(a), 8); /* 5 events, then a checkpoint */
    append_event(a, 5, NULL);
    assert_int_equal(fv_audit_tick(a), FV_OK);
    assert_int_equal(fv_audit_last_seq(a), 9); /* not due yet */
    c.now += 10000;
    assert_int_equal(fv_audit_tick(a), FV_OK);
    assert_int_equal(fv_audit_last_seq(a), 10); /* due by time */
    c.now += 10000;
    assert_int_equal(fv_audit_tick(a), FV_OK);
    assert_int_equal(fv_audit_last_seq(a), 10); /* nothing new to cover */
    append_event(a, 6, NULL);
    c.now += 10000;
    append_event(a, 7, NULL); /* the interval is checked on append too */
    assert_int_equal(fv_audit_last_seq(a), 13);
    /* a clock stepping back never makes ts decrease (A6) */
    c.now -= 50000;
    append_event(a, 8, NULL);
    assert_int_equal(fv_audit_checkpoint(a), FV_OK);
    assert_int_equal(fv_audit_checkpoint(a), FV_OK); /* nothing new: no second one */
    assert_int_equal(fv_audit_last_seq(a), 15);
    assert_int_equal(fv_audit_close(a), FV_OK);
    struct fv_audit_report r = expect(FV_OK, pub, wit, NULL, 0, "chain intact");
    assert_int_equal(r.checkpoints, 5);
    assert_int_equal(r.witness_matched, 5);
    /* the witness holds the checkpoint lines, and a head line per other entry (A14) */
    struct lines ls;
    read_lines(wit, &ls);
    size_t cps = 0;
    for (size_t i = 0; i < ls.n; i++) {
        cps += strstr(ls.l[i], "\"kind\":\"checkpoint\"") != NULL;
        assert_true(strstr(ls.l[i], "\"kind\":\"checkpoint\"") ||
                    strstr(ls.l[i], "\"kind\":\"head\""));
    }
    assert_int_equal(cps, 5);
    assert_int_equal(r.witness_heads, ls.n - 5);
    free_lines(&ls);
}

/* A key pair whose writing fails at any step (the public key's directory sync included)
 * leaves neither file: the next start makes a new pair instead of refusing to overwrite. */
static void test_keygen_failure_leaves_nothing(void **state)
{
    (void)state;
    char err[512], k1[160], k2[160];
    snprintf(k1, sizeof k1, "%s/fail.pem", base);
    snprintf(k2, sizeof k2, "%s/fail.pem.pub", base);
    const enum fv_os_op ops[] = {FV_OS_WRITE, FV_OS_RENAME, FV_OS_DIRSYNC};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        for (uint64_t nth = 1; nth <= 2; nth++) { /* the private key's step, the public's */
            fv_os_fault_clear();
            assert_int_equal(fv_os_fault_set(ops[i], nth, ENOSPC, 0), FV_OK);
            assert_int_not_equal(fv_audit_keygen(k1, k2, err, sizeof err), FV_OK);
            fv_os_fault_clear();
            assert_int_not_equal(access(k1, F_OK), 0);
            assert_int_not_equal(access(k2, F_OK), 0);
        }
    assert_int_equal(fv_audit_keygen(k1, k2, err, sizeof err), FV_OK);
    unlink(k1);
    unlink(k2);
}

/* A full disk refuses the entry being written but does not fail the log: the partial line is
 * cut, the next entry is appended, and the chain verifies; an I/O error still fails it. */
static void test_full_disk_refuses_one_entry(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    struct fv_audit_opts o = opts_for(&c);
    o.checkpoint_every = 1000;
    struct fv_audit *a;
    char err[512];
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    append_event(a, 0, NULL);
    struct fv_audit_event ev = {
        .kind = "access", .action = "query", .principal = "alice", .result = "allow"};
    uint64_t seq = 0;
    fv_os_fault_clear();
    assert_int_equal(fv_os_fault_set(FV_OS_WRITE, 1, ENOSPC, 0), FV_OK);
    assert_int_not_equal(fv_audit_append(a, &ev, &seq), FV_OK);
    assert_int_equal(fv_audit_append(a, &ev, &seq), FV_OK);
    append_event(a, 2, NULL);
    assert_int_equal(fv_os_fault_set(FV_OS_WRITE, fv_os_fault_calls(FV_OS_WRITE) + 1, EIO, 0),
                     FV_OK);
    assert_int_not_equal(fv_audit_append(a, &ev, &seq), FV_OK);
    fv_os_fault_clear();
    assert_int_not_equal(fv_audit_append(a, &ev, &seq), FV_OK); /* failed for good */
    fv_audit_close(a);
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK); /* cuts the tail */
    /* A new file cannot be made while the disk is full: entries are refused, the log goes
     * on in the current file, and starts the new one once there is space. */
    char names[64][40];
    size_t nfiles = files_of(adir, names, 64);
    assert_int_equal(fv_os_fault_set(FV_OS_OPEN, fv_os_fault_calls(FV_OS_OPEN) + 1, ENOSPC, 1),
                     FV_OK);
    int refused = 0;
    for (int i = 0; i < 40; i++)
        refused += fv_audit_append(a, &ev, &seq) != FV_OK;
    assert_true(refused > 0);
    assert_int_equal(files_of(adir, names, 64), nfiles);
    fv_os_fault_clear();
    for (int i = 0; i < 5; i++)
        append_event(a, 10 + i, NULL);
    assert_int_equal(files_of(adir, names, 64), nfiles + 1);
    assert_int_equal(fv_audit_close(a), FV_OK);
    expect(FV_OK, pub, wit, NULL, 0, NULL);
}

static void test_keys_and_witness_placement(void **state)
{
    (void)state;
    char err[512], p2[160];
    struct stat st;
    assert_int_equal(stat(priv, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(fv_audit_keygen(priv, pub, err, sizeof err), FV_EEXIST);
    snprintf(p2, sizeof p2, "%s/new.pub", base);
    assert_int_equal(fv_audit_keygen(priv, p2, err, sizeof err), FV_EEXIST);
    assert_int_not_equal(access(p2, F_OK), 0);
    struct clk c = {T0, 1000};
    struct fv_audit_opts o = opts_for(&c);
    struct fv_audit *a;
    chmod(priv, 0644);
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "chmod 600"));
    chmod(priv, 0600);
    o.key_path = pub; /* a public key cannot sign */
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_EINVAL);
    o.key_path = NULL;
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_EINVAL);
    o.key_path = priv;
    char inside[200];
    snprintf(inside, sizeof inside, "%s/witness.jsonl", adir);
    o.witness_path = inside;
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "outside"));
    /* a torn witness line is closed on open, and ignored by verify with a warning */
    o.witness_path = wit;
    FILE *f = fopen(wit, "w");
    fputs("{\"seq\":1,\"ts\"", f);
    fclose(f);
    assert_int_equal(fv_audit_open(adir, &o, &a, err, sizeof err), FV_OK);
    assert_int_equal(fv_audit_close(a), FV_OK);
    struct fv_audit_report r = expect(FV_OK, pub, wit, NULL, 0, "chain intact");
    assert_int_equal(r.witness_matched, 1);
    assert_non_null(strstr(r.warning, "witness line 1 ignored"));
    /* a verify against a missing directory or key says so */
    char nodir[200];
    snprintf(nodir, sizeof nodir, "%s/none", base);
    assert_int_equal(fv_audit_verify(nodir, NULL, NULL, &r, err, sizeof err), FV_ENOENT);
    assert_int_equal(r.ok, 0);
    assert_int_equal(fv_audit_verify(adir, priv, NULL, &r, err, sizeof err), FV_EINVAL);
}

static void test_parse_line(void **state)
{
    (void)state;
    struct fv_audit_entry e;
    char err[256], line[512];
    const char *body = "{\"seq\":7,\"ts\":5,\"prev\":\"000000000000000000000000000000000000000"
                       "0000000000000000000000000\",\"kind\":\"access\",\"principal\":\"a\"";
    snprintf(line, sizeof line, "%s,\"hash\":\"%064d\"}", body, 0);
    rehash(line);
    assert_int_equal(fv_audit_parse_line(line, strlen(line), &e, err, sizeof err), FV_OK);
    assert_int_equal(e.seq, 7);
    assert_int_equal(e.ts, 5);
    assert_string_equal(e.kind, "access");
    line[strlen(line) - 70] ^= 1; /* inside the hash */
    assert_int_equal(fv_audit_parse_line(line, strlen(line), &e, err, sizeof err), FV_ECORRUPT);
    line[strlen(line) - 70] ^= 1;
    line[3] = 'S'; /* "Seq": hash no longer matches */
    assert_int_equal(fv_audit_parse_line(line, strlen(line), &e, err, sizeof err), FV_ECORRUPT);
    assert_string_equal(err, "hash mismatch (edited?)");
    rehash(line); /* consistent, but "seq" is missing */
    assert_int_equal(fv_audit_parse_line(line, strlen(line), &e, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "\"seq\""));
    /* duplicate keys */
    snprintf(line, sizeof line, "%s,\"principal\":\"b\",\"hash\":\"%064d\"}", body, 0);
    rehash(line);
    assert_int_equal(fv_audit_parse_line(line, strlen(line), &e, err, sizeof err), FV_ECORRUPT);
    /* kind-specific fields */
    snprintf(line, sizeof line,
             "{\"seq\":7,\"ts\":5,\"prev\":\"%064d\",\"kind\":\"genesis\",\"hash\":\"%064d\"}", 0,
             0);
    rehash(line);
    assert_int_equal(fv_audit_parse_line(line, strlen(line), &e, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "prev_file"));
    snprintf(line, sizeof line,
             "{\"seq\":7,\"ts\":5,\"prev\":\"%064d\",\"kind\":\"access\",\"rows\":\"1\","
             "\"hash\":\"%064d\"}",
             0, 0);
    rehash(line);
    assert_int_equal(fv_audit_parse_line(line, strlen(line), &e, err, sizeof err), FV_ECORRUPT);
    assert_int_equal(fv_audit_parse_line("", 0, &e, err, sizeof err), FV_ECORRUPT);
    assert_int_equal(fv_audit_parse_line("{}", 2, &e, err, sizeof err), FV_ECORRUPT);
}

static int run_cli(int argc, ...)
{
    char *argv[16];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    return fv_cmd_audit(argc, argv);
}

static void test_cli(void **state)
{
    (void)state;
    struct clk c = {T0, 1000};
    make_log(30, &c);
    char k2[160], p2[160];
    snprintf(k2, sizeof k2, "%s/cli.key", base);
    snprintf(p2, sizeof p2, "%s/cli.pub", base);
    assert_int_equal(run_cli(4, "audit", "keygen", k2, p2), 0);
    assert_int_equal(run_cli(4, "audit", "keygen", k2, p2), 1); /* never overwritten */
    assert_int_equal(run_cli(1, "audit"), 2);
    assert_int_equal(run_cli(2, "audit", "frobnicate"), 2);
    assert_int_equal(run_cli(2, "audit", "verify"), 2);
    assert_int_equal(
        run_cli(8, "audit", "verify", "--data", base, "--public-key", pub, "--witness", wit), 0);
    assert_int_equal(run_cli(4, "audit", "verify", "--data", base), 0);
    assert_int_equal(run_cli(5, "audit", "verify", "--data", base, "--strict"), 1);
    assert_int_equal(run_cli(6, "audit", "query", "--dir", adir, "--principal", "alice"), 0);
    assert_int_equal(run_cli(8, "audit", "query", "--data", base, "--from", "2025-10-09T08:53:20Z",
                             "--limit", "2"),
                     0);
    assert_int_equal(run_cli(6, "audit", "query", "--data", base, "--from", "yesterday"), 2);
    assert_int_equal(run_cli(6, "audit", "query", "--data", base, "--result", "maybe"), 2);
    /* broken: exit 1 */
    char names[64][40], path[256];
    files_of(adir, names, 64);
    file_path(path, sizeof path, names[0]);
    struct lines ls;
    read_lines(path, &ls);
    ls.l[3][10] = ls.l[3][10] == '1' ? '2' : '1';
    write_lines(path, &ls);
    free_lines(&ls);
    assert_int_equal(run_cli(6, "audit", "verify", "--data", base, "--public-key", pub), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_and_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_sync_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_lazy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_cut_on_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_at_every_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_continues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prealloc_zeros, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_stop_and_retention_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoints_by_count_and_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keygen_failure_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_refuses_one_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_and_witness_placement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_what_the_witness_contradicts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_parse_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
