/* test_lastvals_v7.c - part format 7 (src/store/part.h): the subjects' last values are no
 * longer stored in parts but kept in memory (fv_part.lvc) and computed from the blocks when
 * missing. A flush and a merge hand theirs to the part they write (no query needed); after a
 * restart (nothing kept) the same questions get the same answers, from memory again once
 * computed; a subject forgotten while the worker writes a part keeps nothing in that part
 * (T4), and one erased keeps nothing anywhere; retention's rewrite keeps what stays; parts of
 * format 6 still answer from their stored records (shown by damaging the blocks: the records
 * alone still answer) and a merge of them writes format 7. Seeds printed; FV_STORE_SEED=N
 * replays one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/lastvals.h"
#include "store/part.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "wire/payload.h"
#include "wire/signals.h"

struct rng {
    uint64_t s;
};
static uint64_t below(struct rng *g, uint64_t n) /* xorshift64* */
{
    g->s ^= g->s >> 12;
    g->s ^= g->s << 25;
    g->s ^= g->s >> 27;
    return n ? (g->s * 0x2545f4914f6cdd1dULL) % n : 0;
}
static uint64_t seed_of(uint64_t dflt)
{
    const char *e = getenv("FV_STORE_SEED");
    uint64_t s = e ? strtoull(e, NULL, 10) : dflt;
    print_message("seed %llu (FV_STORE_SEED=%llu replays it)\n", (unsigned long long)s,
                  (unsigned long long)s);
    return s;
}

static char root[64];
static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/fv-lastv7-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}
static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

#define NF    5
#define NSUBJ 4
static uint32_t FIELDS[NF];
static const char *PSEUDO[NSUBJ] = {
    "00112233445566778899aabbccddeeff", "0123456789abcdef0123456789abcdef",
    "fedcba9876543210fedcba9876543210", "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"};

static void init_fields(void)
{
    const char *names[NF] = {"VehicleSpeed", "Soc", "Location", "Odometer", "Gear"};
    for (int i = 0; i < NF; i++) {
        long f = fv_signal_lookup(names[i]);
        if (f < 0) fail_msg("no signal %s", names[i]);
        FIELDS[i] = (uint32_t)f;
    }
}

struct keys {
    unsigned char key[NSUBJ][32];
    int destroyed[NSUBJ];
};
static int key_fn(void *arg, const char *pseudo, unsigned char key[32])
{
    struct keys *k = arg;
    for (int s = 0; s < NSUBJ; s++)
        if (strcmp(pseudo, PSEUDO[s]) == 0) {
            if (k->destroyed[s]) return FV_ESTATE;
            memcpy(key, k->key[s], 32);
            return FV_OK;
        }
    return FV_ENOENT;
}

static void fresh(struct fv_store_config *cfg, struct keys *k)
{
    static int n;
    char data[128];
    snprintf(data, sizeof data, "%s/%d", root, ++n);
    init_fields();
    memset(k, 0, sizeof *k);
    fv_store_config_defaults(cfg, data);
    for (int c = 0; c < FV_STORE_MAX_CLASSES; c++)
        cfg->retention_ms[c] = 0;
    cfg->flush_interval_ms = 3600000;
    cfg->flush_datums = 1;
    cfg->compact_fanin = 3;
    cfg->block_frames = 16;
    for (int s = 0; s < NSUBJ; s++)
        for (int i = 0; i < 32; i++)
            k->key[s][i] = (unsigned char)(0x33 ^ (s * 29 + i * 5));
}

static struct fv_store *open_store(const struct fv_store_config *cfg)
{
    struct fv_store *s;
    char err[512] = "";
    int rc = fv_store_open(cfg, 0, &s, err, sizeof err);
    if (rc) fail_msg("fv_store_open: %s (%d)", err, rc);
    return s;
}

static void drain(struct fv_store *s, struct keys *k)
{
    int rc = fv_store_drain(s, NULL, key_fn, k);
    if (rc) fail_msg("fv_store_drain: %d (%s)", rc, fv_strerror(rc));
}

static void compact_all(struct fv_store *s, struct keys *k)
{
    fv_store_compact_all(s);
    struct fv_store_stats st;
    do {
        drain(s, k);
        fv_store_stats(s, &st);
    } while (st.compacting);
}

/* A frame of 1-3 signals; doubles and ints, a location now and then; times repeat. */
static void add(struct fv_store *s, struct keys *k, struct rng *g, int subj, int64_t t)
{
    struct fv_datum d[3];
    size_t n = 1 + below(g, 3);
    int first = (int)below(g, NF);
    for (size_t i = 0; i < n; i++) {
        int f = (first + (int)i) % NF;
        d[i].field = FIELDS[f];
        if (f == 2)
            d[i].value = (struct fv_value){.kind = FV_VK_LOCATION,
                                           .u.loc = {(double)below(g, 9000) / 100, 3.5}};
        else if (f >= 3)
            d[i].value = (struct fv_value){.kind = FV_VK_INT, .u.i = (int64_t)below(g, 1000)};
        else
            d[i].value = (struct fv_value){.kind = FV_VK_DOUBLE, .u.d = (double)below(g, 999)};
    }
    struct fv_vrecord v = {.n = n, .data = d};
    assert_int_equal(fv_store_add_frame(s, PSEUDO[subj], k->key[subj], t, 0, &v), FV_OK);
}

/* The answer to "the newest value of each subject's signals" (the fleet view now), checked
 * against decoding; *mem counts those memory answered. */
struct answer {
    int found;
    int64_t t;
    struct fv_value v;
};
static void ask_all(struct fv_store *s, struct keys *k, struct answer a[NSUBJ][NF], size_t *mem)
{
    for (int subj = 0; subj < NSUBJ; subj++)
        for (int f = 0; f < NF; f++) {
            struct fv_store_stats x, y;
            fv_store_stats(s, &x);
            struct answer *p = &a[subj][f], d = {0};
            assert_int_equal(fv_store_last(s, PSEUDO[subj], k->key[subj], FIELDS[f], INT64_MIN,
                                           INT64_MAX, 0, &p->found, &p->t, &p->v),
                             FV_OK);
            fv_store_stats(s, &y);
            *mem += y.last_indexed > x.last_indexed;
            assert_int_equal(fv_store_last(s, PSEUDO[subj], k->key[subj], FIELDS[f], INT64_MIN,
                                           INT64_MAX, FV_STORE_LAST_DECODE, &d.found, &d.t, &d.v),
                             FV_OK);
            if (d.found != p->found || (d.found && (d.t != p->t || !fv_value_equal(&d.v, &p->v))))
                fail_msg("subject %d field %u: memory %d t %lld, decoding %d t %lld", subj,
                         FIELDS[f], p->found, (long long)p->t, d.found, (long long)d.t);
            fv_value_clear(&d.v);
        }
}
static void same_answers(struct answer a[NSUBJ][NF], struct answer b[NSUBJ][NF])
{
    for (int subj = 0; subj < NSUBJ; subj++)
        for (int f = 0; f < NF; f++) {
            assert_int_equal(a[subj][f].found, b[subj][f].found);
            if (!a[subj][f].found) continue;
            assert_int_equal(a[subj][f].t, b[subj][f].t);
            assert_true(fv_value_equal(&a[subj][f].v, &b[subj][f].v));
        }
}
static void free_answers(struct answer a[NSUBJ][NF])
{
    for (int subj = 0; subj < NSUBJ; subj++)
        for (int f = 0; f < NF; f++)
            fv_value_clear(&a[subj][f].v);
    memset(a, 0, sizeof(struct answer) * NSUBJ * NF);
}

/* How many (part, subject) last values the live parts keep in memory, and of how many
 * subjects with frames; checks every part is of version `version` and (7) stores none. */
static void kept(struct fv_store *s, uint32_t version, size_t *nkept, size_t *nsubj)
{
    struct fv_part **parts;
    size_t np;
    *nkept = *nsubj = 0;
    assert_int_equal(fv_store_parts(s, &parts, &np), FV_OK);
    assert_true(np > 0);
    for (size_t k = 0; k < np; k++) {
        const struct fv_part *p = parts[k];
        assert_int_equal(p->version, version);
        for (size_t i = 0; i < p->nlast; i++) {
            if (version >= 7) assert_int_equal(p->last[i].len, 0);
            *nsubj += 1;
            *nkept += p->lvc && p->lvc[i];
        }
    }
    fv_store_parts_free(parts, np);
}

/* Rounds of 120 frames (at random times, some repeating; distinct: at rising times), a
 * flush after each, a full compaction after every fourth. */
static void fill(struct fv_store *s, struct keys *k, struct rng *g, int64_t t0, int rounds,
                 int distinct)
{
    static int64_t next;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < 120; i++)
            add(s, k, g, (int)below(g, NSUBJ),
                t0 + (distinct ? ++next : (int64_t)below(g, 3000)) * 10);
        if (r % 4 == 3)
            compact_all(s, k);
        else
            drain(s, k);
    }
}

/* Flushes and merges keep what they computed (no question asked yet); after a restart the
 * same answers, from memory once computed from the blocks. */
static void test_v7_written_kept_and_computed_after_restart(void **state)
{
    (void)state;
    struct rng g = {seed_of(fv_now_ms()) | 1};
    struct fv_store_config cfg;
    struct keys k;
    fresh(&cfg, &k);
    struct fv_store *s = open_store(&cfg);
    int64_t t0 = (int64_t)fv_now_ms() - 3600000;
    fill(s, &k, &g, t0, 6, 0);
    size_t nk, ns, mem = 0;
    kept(s, 7, &nk, &ns);
    assert_true(ns > 0);
    assert_int_equal(nk, ns); /* every subject of every part: handed over by the worker */
    static struct answer before[NSUBJ][NF], after[NSUBJ][NF];
    ask_all(s, &k, before, &mem);
    fv_store_close(s);

    s = open_store(&cfg);
    kept(s, 7, &nk, &ns);
    assert_int_equal(nk, 0); /* nothing stored: cold */
    size_t mem2 = 0;
    ask_all(s, &k, after, &mem2);
    same_answers(before, after);
    assert_int_equal(mem2, mem); /* memory answers what it answered before the restart */
    kept(s, 7, &nk, &ns);
    assert_true(nk > 0); /* computed once, kept */
    free_answers(after);
    size_t mem3 = 0;
    ask_all(s, &k, after, &mem3);
    same_answers(before, after);
    assert_int_equal(mem3, mem);
    /* Retention rewrites a part: what stays is summed up again, kept, and right. */
    free_answers(after);
    fv_store_close(s);
    cfg.retention_ms[fv_store_class_id(&cfg, "location")] = 1;
    s = open_store(&cfg);
    usleep(2000);
    compact_all(s, &k);
    struct fv_store_stats st;
    fv_store_stats(s, &st);
    assert_true(st.blocks_expired > 0);
    kept(s, 7, &nk, &ns);
    assert_int_equal(nk, ns);
    size_t m4 = 0;
    ask_all(s, &k, after, &m4);
    for (int subj = 0; subj < NSUBJ; subj++)
        assert_false(after[subj][2].found); /* the locations went with their blocks */
    free_answers(after);
    fv_store_close(s);
    s = open_store(&cfg);
    size_t m5 = 0;
    ask_all(s, &k, before, &m5); /* and after a restart: the same again */
    assert_int_equal(m5, m4);
    free_answers(before);
    fv_store_close(s);
}

/* Test hook (config fail_at): forgets subject 1 while the worker writes a part. */
static struct fv_store *hook_store;
static int forget_during_write(void *arg, const char *point)
{
    (void)arg;
    if (hook_store && strcmp(point, "flush.renamed") == 0) fv_store_forget(hook_store, PSEUDO[1]);
    return FV_OK;
}

static int has_kept(struct fv_store *s, int subj)
{
    unsigned char subject[FV_SUBJECT_LEN];
    assert_int_equal(fv_subject_from_hex(PSEUDO[subj], subject), FV_OK);
    struct fv_part **parts;
    size_t np;
    int n = 0;
    assert_int_equal(fv_store_parts(s, &parts, &np), FV_OK);
    for (size_t p = 0; p < np; p++) {
        size_t li = fv_part_find_last(parts[p], subject);
        n += li < parts[p]->nlast && parts[p]->lvc && parts[p]->lvc[li];
    }
    fv_store_parts_free(parts, np);
    return n;
}

/* T4: a subject forgotten while the worker computes its last values keeps none in the part
 * installed; erasure drops them from every part at once. */
static void test_v7_forgotten_during_write_keeps_nothing(void **state)
{
    (void)state;
    struct rng g = {seed_of(5) | 1};
    struct fv_store_config cfg;
    struct keys k;
    fresh(&cfg, &k);
    cfg.fail_at = forget_during_write;
    struct fv_store *s = open_store(&cfg);
    int64_t t0 = (int64_t)fv_now_ms() - 3600000;
    for (int i = 0; i < 80; i++)
        add(s, &k, &g, i % NSUBJ, t0 + i * 10);
    hook_store = s;
    drain(s, &k);
    hook_store = NULL;
    assert_int_equal(has_kept(s, 1), 0);
    assert_true(has_kept(s, 0) > 0 && has_kept(s, 2) > 0);
    /* The next part keeps everyone's (the forgotten list was for that job). */
    for (int i = 0; i < 80; i++)
        add(s, &k, &g, i % NSUBJ, t0 + 1000 + i * 10);
    drain(s, &k);
    assert_int_equal(has_kept(s, 1), 1);
    assert_int_equal(fv_store_purge(s, PSEUDO[2]), FV_OK);
    assert_int_equal(has_kept(s, 2), 0);
    assert_true(has_kept(s, 0) > 0);
    fv_store_close(s);
}

/* Parts of format 6 answer from their stored records: with every block of subject 0 damaged,
 * its newest values still come from memory; a merge of format 6 parts writes format 7. */
static void test_v6_parts_answer_from_records(void **state)
{
    (void)state;
    struct rng g = {seed_of(11) | 1};
    struct fv_store_config cfg;
    struct keys k;
    fresh(&cfg, &k);
    cfg.part_version = 6;
    cfg.compact_fanin = 100; /* no merge yet */
    struct fv_store *s = open_store(&cfg);
    int64_t t0 = (int64_t)fv_now_ms() - 3600000;
    fill(s, &k, &g, t0, 3, 1);
    size_t nk, ns, mem = 0;
    kept(s, 6, &nk, &ns);
    assert_int_equal(nk, 0); /* format 6: records on disk, nothing handed over */
    static struct answer a6[NSUBJ][NF], b[NSUBJ][NF];
    ask_all(s, &k, a6, &mem);
    fv_store_close(s);

    /* Damage subject 0's value blocks in every part (a copy of the store keeps them intact). */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s.intact'", cfg.dir, cfg.dir);
    assert_int_equal(system(cmd), 0);
    cfg.part_version = 0;
    s = open_store(&cfg);
    unsigned char subject[FV_SUBJECT_LEN];
    assert_int_equal(fv_subject_from_hex(PSEUDO[0], subject), FV_OK);
    struct fv_part **parts;
    size_t np;
    assert_int_equal(fv_store_parts(s, &parts, &np), FV_OK);
    for (size_t p = 0; p < np; p++) {
        int fd = open(parts[p]->path, O_RDWR);
        assert_true(fd >= 0);
        for (size_t i = fv_part_find(parts[p], subject);
             i < parts[p]->n && memcmp(parts[p]->e[i].subject, subject, FV_SUBJECT_LEN) == 0; i++) {
            unsigned char c;
            off_t at = (off_t)(parts[p]->e[i].off + parts[p]->e[i].len / 2);
            assert_int_equal(pread(fd, &c, 1, at), 1);
            c ^= 0x5a;
            assert_int_equal(pwrite(fd, &c, 1, at), 1);
        }
        close(fd);
    }
    fv_store_parts_free(parts, np);
    for (int f = 0; f < NF; f++) {
        if (!a6[0][f].found) continue;
        struct fv_store_stats x, y;
        fv_store_stats(s, &x);
        int found = 0;
        int64_t t = 0;
        struct fv_value v;
        assert_int_equal(fv_store_last(s, PSEUDO[0], k.key[0], FIELDS[f], INT64_MIN, INT64_MAX, 0,
                                       &found, &t, &v),
                         FV_OK);
        fv_store_stats(s, &y);
        assert_int_equal(y.last_indexed, x.last_indexed + 1); /* the record, not the blocks */
        assert_true(found && t == a6[0][f].t && fv_value_equal(&v, &a6[0][f].v));
        fv_value_clear(&v);
    }
    fv_store_close(s);

    /* The intact copy: a full compaction merges format 6 into format 7, same answers. */
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mv '%s.intact' '%s'", cfg.dir, cfg.dir, cfg.dir);
    assert_int_equal(system(cmd), 0);
    s = open_store(&cfg);
    compact_all(s, &k);
    kept(s, 7, &nk, &ns);
    assert_int_equal(nk, ns); /* from the inputs' records */
    size_t m2 = 0;
    ask_all(s, &k, b, &m2);
    same_answers(a6, b);
    free_answers(b);
    fv_store_close(s);
    s = open_store(&cfg);
    ask_all(s, &k, b, &m2);
    same_answers(a6, b);
    free_answers(a6);
    free_answers(b);
    fv_store_close(s);
}

/* After a start, the store computes the parts' values in the background (its worker, with
 * the keys of the key callback), so the fleet view finds them in memory; not for a subject
 * whose key is gone. */
static void test_v7_warmed_in_background(void **state)
{
    (void)state;
    struct rng g = {seed_of(23) | 1};
    struct fv_store_config cfg;
    struct keys k;
    fresh(&cfg, &k);
    struct fv_store *s = open_store(&cfg);
    int64_t t0 = (int64_t)fv_now_ms() - 3600000;
    fill(s, &k, &g, t0, 5, 0);
    static struct answer a[NSUBJ][NF], b[NSUBJ][NF];
    size_t m1 = 0, m2 = 0, nk, ns;
    ask_all(s, &k, a, &m1);
    fv_store_close(s);
    s = open_store(&cfg);
    kept(s, 7, &nk, &ns);
    assert_int_equal(nk, 0);
    drain(s, &k); /* nothing to flush or merge: the worker computes */
    kept(s, 7, &nk, &ns);
    assert_int_equal(nk, ns);
    ask_all(s, &k, b, &m2);
    same_answers(a, b);
    assert_int_equal(m2, m1);
    free_answers(b);
    fv_store_close(s);
    /* Subject 1 erased (its key destroyed, forgotten): nothing of it computed. */
    s = open_store(&cfg);
    k.destroyed[1] = 1;
    fv_store_forget(s, PSEUDO[1]);
    drain(s, &k);
    assert_int_equal(has_kept(s, 1), 0);
    assert_true(has_kept(s, 0) > 0 && has_kept(s, 2) > 0 && has_kept(s, 3) > 0);
    free_answers(a);
    fv_store_close(s);
}

/* The form kept in memory: every entry found by fv_lastvals_mem_find is the decoded
 * record's (runs of one kind and member, written as "same", ambiguous entries, strings,
 * different times), and absent signals are not found. */
static void test_mem_find_every_entry(void **state)
{
    (void)state;
    struct rng g = {seed_of(31) | 1};
    for (int round = 0; round < 200; round++) {
        struct fv_lastvals lv = {0}, d = {0};
        size_t n = 1 + below(&g, 40);
        for (size_t i = 0; i < n; i++) {
            struct fv_value v = {.kind = FV_VK_DOUBLE, .member = 5};
            int k = (int)below(&g, 10);
            if (k == 0) v = (struct fv_value){.kind = FV_VK_INT, .member = 2, .u.i = -7};
            if (k == 1) v = (struct fv_value){.kind = FV_VK_STRING, .member = 1, .u.s = "ab"};
            if (k == 2) v = (struct fv_value){.kind = FV_VK_LOCATION, .u.loc = {1.5, -2.25}};
            if (k >= 3) v.u.d = (double)below(&g, 100000) / 100;
            uint32_t f = 1 + 3 * (uint32_t)i;
            int64_t t = 1796169600000LL - (below(&g, 4) ? 0 : (int64_t)below(&g, 5000));
            assert_int_equal(fv_lastvals_add(&lv, t, f, &v), FV_OK);
            if (below(&g, 12) == 0) assert_int_equal(fv_lastvals_add(&lv, t, f, &v), FV_OK);
        }
        struct fv_lastvals_mem *m;
        assert_int_equal(fv_lastvals_mem_make(&lv, &m), FV_OK);
        assert_int_equal(fv_lastvals_mem_decode(m, &d), FV_OK);
        assert_int_equal(d.n, n);
        for (uint32_t f = 0; f <= 3 * (uint32_t)n + 1; f++) {
            const struct fv_lastval *want = fv_lastvals_find(&d, f);
            int found = 0;
            struct fv_lastval e;
            assert_int_equal(fv_lastvals_mem_find(m, f, &found, &e), FV_OK);
            assert_int_equal(found, want != NULL);
            if (want) {
                assert_int_equal(e.field, f);
                assert_int_equal(e.amb, want->amb);
                assert_int_equal(e.last_t, want->last_t);
                assert_true(want->amb || fv_value_equal(&e.v, &want->v));
            }
            fv_value_clear(&e.v);
        }
        fv_lastvals_mem_free(m);
        fv_lastvals_clear(&lv);
        fv_lastvals_clear(&d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v7_written_kept_and_computed_after_restart),
        cmocka_unit_test(test_v7_forgotten_during_write_keeps_nothing),
        cmocka_unit_test(test_v6_parts_answer_from_records),
        cmocka_unit_test(test_v7_warmed_in_background),
        cmocka_unit_test(test_mem_find_every_entry),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
