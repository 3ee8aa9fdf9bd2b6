/* test_lastvals.c - the last values that answer the fleet view from memory
 * (src/store/lastvals.h, store.h fv_store_last): the record's encoding against a naive
 * reference (random samples of every kind, ties, merging; every cut of an encoding refused);
 * the store's answers from memory equal to the decoding path's on random data (out-of-order
 * and duplicate times, two classes, random ranges, from the heads, parts, merged parts and
 * after a reopen), with most answered from memory; parts of format version 2 (no last
 * values) answered by decoding and summed up again by a compaction; retention and erasure
 * dropping what they drop from the last values too (also after a reopen). Seeds printed;
 * FV_STORE_SEED=N replays one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "store/codec.h"
#include "store/lastvals.h"
#include "store/part.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "wire/payload.h"
#include "wire/signals.h"

struct rng {
    uint64_t s;
};
static uint64_t rnd(struct rng *g) /* xorshift64* */
{
    g->s ^= g->s >> 12;
    g->s ^= g->s << 25;
    g->s ^= g->s >> 27;
    return g->s * 0x2545f4914f6cdd1dULL;
}
static uint64_t below(struct rng *g, uint64_t n)
{
    return n ? rnd(g) % n : 0;
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
    snprintf(root, sizeof root, "/tmp/fv-lastv-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}
static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- values ---- */

#define NF 8
static uint32_t FIELDS[NF];
static int KIND[NF];

static void init_fields(void)
{
    const char *names[NF] = {"VehicleSpeed", "Soc",  "Location",  "GpsHeading",
                             "Odometer",     "Gear", "DoorState", "VehicleName"};
    const int kinds[NF] = {FV_VK_DOUBLE, FV_VK_DOUBLE, FV_VK_LOCATION, FV_VK_DOUBLE,
                           FV_VK_INT,    FV_VK_ENUM,   FV_VK_DOORS,    FV_VK_STRING};
    for (int i = 0; i < NF; i++) {
        long f = fv_signal_lookup(names[i]);
        if (f < 0) fail_msg("no signal %s", names[i]);
        FIELDS[i] = (uint32_t)f;
        KIND[i] = kinds[i];
    }
}

static char strs[1 << 16][12];
static size_t nstrs;

/* A random value of field i's kind (sometimes INVALID); strings live in strs. */
static struct fv_datum rand_datum(struct rng *g, int i)
{
    struct fv_datum d = {FIELDS[i], {0}};
    d.value.kind = (uint8_t)(below(g, 12) ? KIND[i] : FV_VK_INVALID);
    d.value.member = (uint8_t)(i + 1);
    static const double odd[] = {0.0,
                                 -0.0,
                                 1e300,
                                 -1e-300,
                                 4.9e-324,
                                 0.1 + 0.2,
                                 1.0 / 3,
                                 9007199254740993.0,
                                 123456789012345678.0};
    switch (d.value.kind) {
    case FV_VK_DOUBLE:
        d.value.u.d = (double)((int64_t)below(g, 200000) - 100000) / 100.0;
        if (below(g, 8) == 0) d.value.u.d = odd[below(g, sizeof odd / sizeof odd[0])];
        if (below(g, 40) == 0) {
            uint64_t nan = 0x7ff8000000000000ULL | below(g, 1000), inf = 0x7ff0000000000000ULL;
            uint64_t bits = below(g, 2) ? nan : inf | (below(g, 2) << 63);
            memcpy(&d.value.u.d, &bits, sizeof bits);
        }
        break;
    case FV_VK_LOCATION:
        d.value.u.loc.lat = (double)below(g, 180000) / 1000.0 - 90;
        d.value.u.loc.lon = (double)below(g, 360000) / 1000.0 - 180;
        break;
    case FV_VK_INT:
    case FV_VK_ENUM:
        d.value.u.i = (int64_t)below(g, 1000000);
        if (below(g, 8) == 0) d.value.u.i = below(g, 2) ? INT64_MIN : INT64_MAX;
        break;
    case FV_VK_DOORS:
        d.value.u.bits = (uint32_t)below(g, 64);
        break;
    case FV_VK_STRING:
        snprintf(strs[nstrs % (1 << 16)], sizeof strs[0], "v%u", (unsigned)below(g, 50));
        d.value.u.s = strs[nstrs++ % (1 << 16)];
        break;
    default:
        break;
    }
    return d;
}

/* ---- the record's encoding ---- */

struct ref {
    int have, amb;
    int64_t last;
    struct fv_value v;
};

/* Both encodings: version 2 (written) and version 1 (parts of format 3, still read). */
static void encoding_vs_reference(int (*encode)(struct fv_lastvals *, struct fv_buf *))
{
    init_fields();
    struct rng g = {seed_of(fv_now_ms()) | 1};
    for (int round = 0; round < 200; round++) {
        struct ref ref[NF] = {0};
        struct fv_lastvals a = {0}, b = {0};
        size_t n = below(&g, 60);
        for (size_t k = 0; k < n; k++) {
            int i = (int)below(&g, NF);
            int64_t t = (int64_t)below(&g, 40) - 20; /* negative times, many ties */
            if (below(&g, 50) == 0) t = below(&g, 2) ? INT64_MIN : INT64_MAX; /* far apart */
            struct fv_datum d = rand_datum(&g, i);
            /* half the samples into a, half into b: merging must give the same */
            assert_int_equal(fv_lastvals_add(k & 1 ? &b : &a, t, d.field, &d.value), FV_OK);
            struct ref *r = &ref[i];
            if (!r->have || t > r->last) {
                r->last = t;
                r->amb = 0;
                r->v = d.value;
            } else if (t == r->last) {
                r->amb = 1;
            }
            r->have = 1;
        }
        assert_int_equal(fv_lastvals_merge(&a, &b), FV_OK);
        struct fv_buf enc = {0};
        assert_int_equal(encode(&a, &enc), FV_OK);
        struct fv_lastvals d = {0};
        char err[256] = "";
        int rc = fv_lastvals_decode(enc.data, enc.len, &d, err, sizeof err);
        if (rc) fail_msg("round %d: decode: %s", round, err);
        size_t want = 0;
        for (int i = 0; i < NF; i++) {
            const struct fv_lastval *e = fv_lastvals_find(&d, FIELDS[i]);
            if (!ref[i].have) {
                assert_null(e);
                continue;
            }
            want++;
            assert_non_null(e);
            assert_int_equal(e->last_t, ref[i].last);
            assert_int_equal(e->amb, ref[i].amb);
            if (!ref[i].amb) assert_true(fv_value_equal(&e->v, &ref[i].v));
        }
        assert_int_equal(d.n, want);
        /* Every cut of the encoding is refused, never misread. */
        for (size_t cut = 0; cut < enc.len; cut++) {
            struct fv_lastvals x = {0};
            assert_int_not_equal(fv_lastvals_decode(enc.data, cut, &x, err, sizeof err), FV_OK);
            fv_lastvals_clear(&x);
        }
        fv_buf_free(&enc);
        fv_lastvals_clear(&a);
        fv_lastvals_clear(&b);
        fv_lastvals_clear(&d);
    }
}

static void test_encoding_vs_reference(void **state)
{
    (void)state;
    encoding_vs_reference(fv_lastvals_encode);
}

static void test_encoding_v1_still_read(void **state)
{
    (void)state;
    encoding_vs_reference(fv_lastvals_encode_v1);
}

/* Versions 2 (still read) and 3 (written) on edge records: empty, one value, every kind;
 * their sizes on a vehicle's record. */
static void encoding_edges(int (*encode)(struct fv_lastvals *, struct fv_buf *), unsigned ver)
{
    char err[256] = "";
    struct fv_buf enc = {0};
    struct fv_lastvals a = {0}, d = {0};
    assert_int_equal(encode(&a, &enc), FV_OK); /* empty */
    assert_int_equal(enc.len, 3);              /* version, tref 0, n 0 */
    assert_int_equal(enc.data[0], ver);
    assert_int_equal(fv_lastvals_decode(enc.data, enc.len, &d, err, sizeof err), FV_OK);
    assert_int_equal(d.n, 0);
    struct fv_value v[12] = {{0}};
    uint64_t nanbits = 0x7ff800000000abcdULL;
    v[0] = (struct fv_value){.kind = FV_VK_DOUBLE, .member = 5, .u.d = -0.0};
    v[1] = (struct fv_value){.kind = FV_VK_DOUBLE, .member = 4};
    memcpy(&v[1].u.d, &nanbits, sizeof nanbits);
    v[2] = (struct fv_value){.kind = FV_VK_INT, .member = 3, .u.i = INT64_MIN};
    v[3] = (struct fv_value){.kind = FV_VK_BOOL, .member = 6, .u.i = 1};
    v[4] = (struct fv_value){.kind = FV_VK_LOCATION, .member = 7, .u.loc = {37.4, -122.1}};
    v[5] = (struct fv_value){.kind = FV_VK_ENUM, .member = 9, .u.i = 3};
    v[6] = (struct fv_value){.kind = FV_VK_INVALID, .member = 10};
    v[7] = (struct fv_value){.kind = FV_VK_DOORS, .member = 21, .u.bits = 0xffffffffu};
    v[8] = (struct fv_value){.kind = FV_VK_TIME, .member = 31, .u.time = {INT32_MIN, 59, -1}};
    v[9] = (struct fv_value){.kind = FV_VK_TIRES, .member = 39, .u.bits = 5};
    v[10] = (struct fv_value){.kind = FV_VK_OTHER, .member = 200};
    v[11] = (struct fv_value){.kind = FV_VK_STRING, .member = 1, .u.s = (char *)""};
    for (uint32_t i = 0; i < 12; i++)
        assert_int_equal(fv_lastvals_add(&a, i == 2 ? INT64_MIN : 1000 - i, i * 7, &v[i]), FV_OK);
    fv_buf_reset(&enc);
    assert_int_equal(encode(&a, &enc), FV_OK);
    assert_int_equal(fv_lastvals_decode(enc.data, enc.len, &d, err, sizeof err), FV_OK);
    assert_int_equal(d.n, 12);
    for (uint32_t i = 0; i < 12; i++) {
        const struct fv_lastval *e = fv_lastvals_find(&d, i * 7);
        assert_non_null(e);
        assert_int_equal(e->last_t, i == 2 ? INT64_MIN : 1000 - (int64_t)i);
        assert_false(e->amb);
        assert_true(fv_value_equal(&e->v, &v[i]));
    }
    for (size_t cut = 0; cut < enc.len; cut++) {
        struct fv_lastvals x = {0};
        assert_int_not_equal(fv_lastvals_decode(enc.data, cut, &x, err, sizeof err), FV_OK);
        fv_lastvals_clear(&x);
    }
    /* Bytes the decoder refuses: a trailing byte, kind NONE, a field repeated. */
    assert_int_equal(fv_buf_append(&enc, "", 1), FV_OK);
    struct fv_lastvals x = {0};
    assert_int_equal(fv_lastvals_decode(enc.data, enc.len, &x, err, sizeof err), FV_ECORRUPT);
    fv_lastvals_clear(&x);
    /* version 3: n << 1 | uniform; kind as varint member << 4 | kind */
    const unsigned char none2[] = {2, 0, 1, 0, 0, 0, 5}, twice2[] = {2, 0, 2, 3, 1, 0, 1};
    const unsigned char none3[] = {3, 0, 3, 0, 0x50}, twice3[] = {3, 0, 4, 3, 1, 0, 1};
    const unsigned char *none = ver == 2 ? none2 : none3, *twice = ver == 2 ? twice2 : twice3;
    size_t nnone = ver == 2 ? sizeof none2 : sizeof none3;
    size_t ntwice = ver == 2 ? sizeof twice2 : sizeof twice3;
    assert_int_equal(fv_lastvals_decode(none, nnone, &x, err, sizeof err), FV_ECORRUPT);
    fv_lastvals_clear(&x);
    assert_int_equal(fv_lastvals_decode(twice, ntwice, &x, err, sizeof err), FV_ECORRUPT);
    fv_lastvals_clear(&x);
    /* One value. */
    fv_lastvals_clear(&a);
    fv_lastvals_clear(&d);
    assert_int_equal(fv_lastvals_add(&a, 1796169600000LL, 4, &v[0]), FV_OK);
    fv_buf_reset(&enc);
    assert_int_equal(encode(&a, &enc), FV_OK);
    assert_int_equal(fv_lastvals_decode(enc.data, enc.len, &d, err, sizeof err), FV_OK);
    assert_int_equal(d.n, 1);
    assert_true(fv_value_equal(&d.e[0].v, &v[0]));
    /* A vehicle of 20 signals at one time, values of 2 decimals: about 6 bytes each. */
    fv_lastvals_clear(&a);
    fv_lastvals_clear(&d);
    for (uint32_t f = 1; f <= 20; f++) {
        struct fv_value x2 = {.kind = FV_VK_DOUBLE, .member = 5, .u.d = 300.0 + f * 1.37};
        assert_int_equal(fv_lastvals_add(&a, 1796169600000LL, f, &x2), FV_OK);
    }
    fv_buf_reset(&enc);
    assert_int_equal(encode(&a, &enc), FV_OK);
    struct fv_buf v1 = {0}, v2 = {0};
    assert_int_equal(fv_lastvals_encode_v1(&a, &v1), FV_OK);
    assert_int_equal(fv_lastvals_encode_v2(&a, &v2), FV_OK);
    print_message("20 doubles: version %u %zu bytes, version 2 %zu, version 1 %zu\n", ver, enc.len,
                  v2.len, v1.len);
    assert_true(enc.len <= 20 * 6 + 10 && enc.len * 2 < v1.len);
    if (ver == 3) assert_true(enc.len + 20 <= v2.len); /* no flags byte, 1-byte kind */
    fv_buf_free(&v1);
    fv_buf_free(&v2);
    fv_buf_free(&enc);
    fv_lastvals_clear(&a);
    fv_lastvals_clear(&d);
}

static void test_encoding_v2_edges(void **state)
{
    (void)state;
    encoding_edges(fv_lastvals_encode_v2, 2);
}

static void test_encoding_v3_edges(void **state)
{
    (void)state;
    encoding_edges(fv_lastvals_encode, 3);
}

static void test_encoding_v2_still_read(void **state)
{
    (void)state;
    encoding_vs_reference(fv_lastvals_encode_v2);
}

/* ---- the store ---- */

#define NSUBJ 4
static const char *const PSEUDO[NSUBJ] = {
    "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210",
    "00000000000000000000000000000001", "8000000000000000000000000000000a"};

struct keys {
    unsigned char key[NSUBJ][32];
    int destroyed[NSUBJ];
};

static void keys_init(struct keys *k)
{
    memset(k, 0, sizeof *k);
    for (int s = 0; s < NSUBJ; s++)
        for (int i = 0; i < 32; i++)
            k->key[s][i] = (unsigned char)(0x5a ^ (s * 41 + i * 7));
}

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

static void fresh_config(struct fv_store_config *cfg)
{
    static int n;
    char data[128];
    snprintf(data, sizeof data, "%s/%d", root, ++n);
    fv_store_config_defaults(cfg, data);
    for (int c = 0; c < FV_STORE_MAX_CLASSES; c++)
        cfg->retention_ms[c] = 0;
    cfg->flush_interval_ms = 3600000;
    cfg->flush_datums = 1; /* every drain flushes the head */
    cfg->compact_fanin = 3;
    cfg->block_frames = 64; /* several blocks per subject and class */
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

/* A frame of 1-4 random signals; dup: a signal may come twice in it. */
static void add(struct fv_store *s, struct keys *k, struct rng *g, int subj, int64_t t, int dup)
{
    struct fv_datum d[4];
    size_t n = 1 + below(g, 4);
    int first = (int)below(g, NF);
    for (size_t i = 0; i < n; i++)
        d[i] = rand_datum(g, dup ? (int)below(g, NF) : (first + (int)i) % NF);
    struct fv_vrecord v = {.n = n, .data = d};
    assert_int_equal(fv_store_add_frame(s, PSEUDO[subj], k->key[subj], t, 0, &v), FV_OK);
}

/* Both paths answer the same; returns 1 if memory answered. */
static int same_answer(struct fv_store *s, const unsigned char *dek, int subj, uint32_t f,
                       int64_t from, int64_t to, const char *what)
{
    struct fv_store_stats a, b;
    fv_store_stats(s, &a);
    int f1 = 0, f2 = 0;
    int64_t t1 = 0, t2 = 0;
    struct fv_value v1, v2;
    assert_int_equal(fv_store_last(s, PSEUDO[subj], dek, f, from, to, 0, &f1, &t1, &v1), FV_OK);
    fv_store_stats(s, &b);
    assert_int_equal(
        fv_store_last(s, PSEUDO[subj], dek, f, from, to, FV_STORE_LAST_DECODE, &f2, &t2, &v2),
        FV_OK);
    if (f1 != f2 || (f1 && (t1 != t2 || !fv_value_equal(&v1, &v2))))
        fail_msg("%s: subject %d field %u [%lld, %lld]: memory %d t %lld, decoding %d t %lld", what,
                 subj, f, (long long)from, (long long)to, f1, (long long)t1, f2, (long long)t2);
    fv_value_clear(&v1);
    fv_value_clear(&v2);
    return b.last_indexed > a.last_indexed;
}

/* Random queries of every subject; returns how many memory answered of those (*asked) whose
 * range ends after every sample (the fleet view now): a part whose samples of the signal
 * reach past the range's end cannot answer, other ranges are often decoded. */
static size_t check_round(struct fv_store *s, struct keys *k, struct rng *g, int64_t t0,
                          int64_t span, size_t *asked, const char *what)
{
    size_t mem = 0;
    for (int subj = 0; subj < NSUBJ; subj++) {
        if (k->destroyed[subj]) continue;
        for (int q = 0; q < 40; q++) {
            uint32_t f = FIELDS[below(g, NF)];
            int64_t to = below(g, 3) == 0 ? INT64_MAX : t0 + (int64_t)below(g, (uint64_t)span + 20);
            int64_t from = below(g, 2) ? INT64_MIN : to - (int64_t)below(g, (uint64_t)span / 3 + 1);
            if (to == INT64_MAX && from != INT64_MIN) from = t0 + (int64_t)below(g, (uint64_t)span);
            int m = same_answer(s, k->key[subj], subj, f, from, to, what);
            if (to >= t0 + span) {
                mem += (size_t)m;
                (*asked)++;
            }
        }
    }
    return mem;
}

/* Rewrites a part file as format version 2: the same blocks, no last-values records (first
 * as version 5, fixed-size index entries and every block with its nonce in front, by
 * copying its blocks; then its index cut short). */
static void to_version2(const char *dir, const char *path)
{
    struct fv_part *p;
    struct fv_part_writer *w;
    char err[512] = "";
    assert_int_equal(fv_part_open(path, &p, err, sizeof err), FV_OK);
    assert_int_equal(fv_part_writer_open(dir, p->gen_lo, p->gen_hi, p->level, &w, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_part_writer_set_version(w, 5), FV_OK);
    fv_part_writer_set_flags(w, p->flags);
    struct fv_buf sealed = {0};
    for (size_t i = 0; i < p->n; i++) {
        const char *cname = p->classes[p->e[i].cls];
        assert_int_equal(fv_part_read_block(p, i, &sealed, err, sizeof err), FV_OK);
        assert_int_equal(
            fv_part_writer_copy(w, &p->e[i], cname, sealed.data, sealed.len, err, sizeof err),
            FV_OK);
    }
    char out_path[700];
    assert_int_equal(
        fv_part_writer_commit(w, p->wal_file_hi, out_path, sizeof out_path, err, sizeof err),
        FV_OK);
    assert_string_equal(out_path, path);
    fv_part_writer_free(w);
    fv_part_unref(p);
    fv_buf_free(&sealed);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    size_t len = (size_t)st.st_size;
    unsigned char *img = malloc(len);
    assert_non_null(img);
    int fd = open(path, O_RDONLY);
    assert_int_equal(pread(fd, img, len, 0), (ssize_t)len);
    close(fd);
    assert_int_equal(fv_get_u32(img + 8), 5);
    const unsigned char *f = img + len - FV_PART_FOOTER_LEN;
    uint64_t ioff = fv_get_u64(f);
    uint32_t ilen = fv_get_u32(f + 8), iraw = fv_get_u32(f + 12);
    unsigned char *raw = malloc(iraw);
    assert_non_null(raw);
    assert_int_equal(ZSTD_decompress(raw, iraw, img + ioff, ilen), iraw);
    struct fv_rd r;
    fv_rd_init(&r, raw, iraw);
    uint64_t ncl, flags, nb, l;
    const unsigned char *q;
    assert_int_equal(fv_rd_uvarint(&r, &ncl), 0);
    for (uint64_t c = 0; c < ncl; c++) {
        assert_int_equal(fv_rd_uvarint(&r, &l), 0);
        assert_int_equal(fv_rd_bytes(&r, (size_t)l, &q), 0);
    }
    assert_int_equal(fv_rd_uvarint(&r, &flags), 0);
    assert_int_equal(fv_rd_uvarint(&r, &nb), 0);
    size_t keep = r.off + nb * FV_PART_ENTRY_LEN; /* drop nlast and the records' entries */
    assert_true(keep < iraw);
    size_t bound = ZSTD_compressBound(keep);
    unsigned char *out = malloc(ioff + bound + FV_PART_FOOTER_LEN);
    assert_non_null(out);
    memcpy(out, img, ioff); /* the records stay as unreferenced bytes among the blocks */
    fv_put_u32(out + 8, 2);
    fv_put_u32(out + 32, fv_crc32c(0, out, 32));
    size_t zn = ZSTD_compress(out + ioff, bound, raw, keep, 3);
    assert_false(ZSTD_isError(zn));
    unsigned char *nf = out + ioff + zn;
    memcpy(nf, f, FV_PART_FOOTER_LEN);
    fv_put_u32(nf + 8, (uint32_t)zn);
    fv_put_u32(nf + 12, (uint32_t)keep);
    fv_put_u32(nf + 16, fv_crc32c(0, out + ioff, zn));
    fv_put_u32(nf + 64, fv_crc32c(0, nf, 64));
    fd = open(path, O_WRONLY | O_TRUNC);
    size_t total = ioff + zn + FV_PART_FOOTER_LEN;
    assert_int_equal(write(fd, out, total), (ssize_t)total);
    close(fd);
    free(out);
    free(raw);
    free(img);
}

static size_t parts_to_version2(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        uint64_t lo, hi;
        if (!fv_part_name(e->d_name, &lo, &hi)) continue;
        char p[700];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        to_version2(dir, p);
        n++;
    }
    closedir(d);
    return n;
}

/* Every live part holds a last-values record for each subject it has frames of (has = 1),
 * or none at all (has = 0). */
static void expect_records(struct fv_store *s, int has)
{
    struct fv_part **parts;
    size_t np;
    assert_int_equal(fv_store_parts(s, &parts, &np), FV_OK);
    assert_true(np > 0);
    for (size_t k = 0; k < np; k++) {
        const struct fv_part *p = parts[k];
        for (size_t i = 0; i < p->n; i++)
            if (p->e[i].nrec)
                assert_int_equal(fv_part_find_last(p, p->e[i].subject) < p->nlast, has);
        if (!has) assert_int_equal(p->version, 2);
    }
    fv_store_parts_free(parts, np);
}

static void test_store_memory_equals_decoding(void **state)
{
    (void)state;
    init_fields();
    uint64_t seed = seed_of(fv_now_ms() ^ 0x1234);
    struct rng g = {seed | 1};
    struct fv_store_config cfg;
    fresh_config(&cfg);
    struct keys k;
    keys_init(&k);
    struct fv_store *s = open_store(&cfg);
    int64_t t0 = (int64_t)fv_now_ms() - 3600000, span = 20000;
    size_t asked = 0, mem = 0, asked_parts = 0, mem_parts = 0;
    for (int round = 0; round < 12; round++) {
        /* frames at random times (out of order; 10 ms steps, so times repeat now and then) */
        for (int i = 0; i < 150; i++)
            add(s, &k, &g, (int)below(&g, NSUBJ), t0 + (int64_t)below(&g, (uint64_t)span / 10) * 10,
                !below(&g, 8));
        mem += check_round(s, &k, &g, t0, span, &asked, "head and parts");
        if (round % 4 == 3)
            compact_all(s, &k);
        else
            drain(s, &k); /* a flush, and a merge of 3 parts now and then */
        mem_parts += check_round(s, &k, &g, t0, span, &asked_parts, "parts");
    }
    expect_records(s, 1);
    print_message("memory answered %zu of %zu (heads and parts), %zu of %zu (parts only)\n", mem,
                  asked, mem_parts, asked_parts);
    /* Most questions about now never touch a block (ties decode: times repeat here far more
     * than in real data). */
    assert_true(mem_parts * 10 >= asked_parts * 7);
    /* The same questions before the close and after the reopen (one round is too few
     * questions for a ratio: one subject with ties at its newest times swings it). */
    struct rng g1 = g;
    size_t a1 = 0, m1 = check_round(s, &k, &g1, t0, span, &a1, "before the close");
    fv_store_close(s);

    /* Reopened: the records come from the part files, and memory answers exactly what it
     * answered before the close. */
    s = open_store(&cfg);
    size_t a2 = 0, m2 = check_round(s, &k, &g, t0, span, &a2, "reopened");
    print_message("reopened: memory answered %zu of %zu (before the close %zu of %zu)\n", m2, a2,
                  m1, a1);
    assert_int_equal(a2, a1);
    assert_int_equal(m2, m1);
    fv_store_close(s);

    /* The same parts as format version 2 (no last values): everything decodes, same answers. */
    assert_true(parts_to_version2(cfg.dir) > 0);
    s = open_store(&cfg);
    expect_records(s, 0);
    struct fv_store_stats st0, st1;
    fv_store_stats(s, &st0);
    size_t a3 = 0, m3 = check_round(s, &k, &g, t0, span, &a3, "version 2 parts");
    assert_true(m3 * 2 < a3); /* memory says only "nothing": no part has frames in range */
    /* ... and the parts' blocks say much of the rest, one column each (same answers as
     * decoding, checked above); ties at the newest time decode, and times repeat here. */
    fv_store_stats(s, &st1);
    print_message("version 2 parts: %llu scanned, %llu decoded\n",
                  (unsigned long long)(st1.last_scanned - st0.last_scanned),
                  (unsigned long long)(st1.last_decoded - st0.last_decoded));
    assert_true((st1.last_scanned - st0.last_scanned) * 4 > a3);
    /* New frames in the head and a new part beside the old ones: still right. */
    for (int i = 0; i < 100; i++)
        add(s, &k, &g, (int)below(&g, NSUBJ), t0 + (int64_t)below(&g, (uint64_t)span / 10) * 10,
            !below(&g, 8));
    drain(s, &k);
    check_round(s, &k, &g, t0, span, &a3, "version 2 parts and a new one");
    /* A full compaction sums the old parts up again. */
    compact_all(s, &k);
    expect_records(s, 1);
    size_t a4 = 0, m4 = check_round(s, &k, &g, t0, span, &a4, "version 2 parts compacted");
    assert_true(m4 * 10 >= a4 * 7);
    fv_store_close(s);
}

/* A subject's last value as memory answers it (asserting memory did answer). */
static int last_from_memory(struct fv_store *s, struct keys *k, int subj, uint32_t f, int64_t *t,
                            struct fv_value *v)
{
    struct fv_store_stats a, b;
    fv_store_stats(s, &a);
    int found;
    assert_int_equal(
        fv_store_last(s, PSEUDO[subj], k->key[subj], f, INT64_MIN, INT64_MAX, 0, &found, t, v),
        FV_OK);
    fv_store_stats(s, &b);
    assert_int_equal(b.last_indexed, a.last_indexed + 1);
    return found;
}

static void test_retention_drops_last_values(void **state)
{
    (void)state;
    init_fields();
    struct fv_store_config cfg;
    fresh_config(&cfg);
    int loc_cls = fv_store_class_id(&cfg, "location");
    cfg.block_frames = 8;
    struct keys k;
    keys_init(&k);
    struct fv_store *s = open_store(&cfg);
    uint32_t speed = (uint32_t)fv_signal_lookup("VehicleSpeed");
    uint32_t loc = (uint32_t)fv_signal_lookup("Location");
    /* Old locations (they expire), old and recent speeds (they stay). */
    int64_t old = 1000000, now = (int64_t)fv_now_ms();
    for (int i = 0; i < 20; i++) {
        struct fv_datum d[2] = {{speed, {.kind = FV_VK_DOUBLE, .u.d = i}},
                                {loc, {.kind = FV_VK_LOCATION, .u.loc = {40 + i * 0.01, 3}}}};
        struct fv_vrecord v = {.n = 2, .data = d};
        assert_int_equal(fv_store_add_frame(s, PSEUDO[0], k.key[0], old + i * 1000, 0, &v), FV_OK);
        struct fv_vrecord v1 = {.n = 1, .data = d};
        d[0].value.u.d = 100 + i;
        assert_int_equal(fv_store_add_frame(s, PSEUDO[0], k.key[0], now - 60000 + i, 0, &v1),
                         FV_OK);
    }
    drain(s, &k);
    int64_t t;
    struct fv_value v;
    assert_true(last_from_memory(s, &k, 0, loc, &t, &v)); /* before retention: there */
    assert_int_equal(t, old + 19000);
    fv_value_clear(&v);
    fv_store_close(s);
    cfg.retention_ms[loc_cls] = 1; /* now: the old locations go at the next compaction */
    s = open_store(&cfg);
    usleep(5000);
    compact_all(s, &k);
    struct fv_store_stats st;
    fv_store_stats(s, &st);
    assert_true(st.blocks_expired > 0);
    for (int pass = 0; pass < 2; pass++) {
        /* The location is gone from the last values with its blocks; the speed stays. */
        assert_false(last_from_memory(s, &k, 0, loc, &t, &v));
        assert_true(last_from_memory(s, &k, 0, speed, &t, &v));
        assert_int_equal(t, now - 60000 + 19);
        assert_true(v.kind == FV_VK_DOUBLE && v.u.d == 119);
        fv_value_clear(&v);
        size_t asked = 0;
        struct rng g = {7};
        check_round(s, &k, &g, old, now - old, &asked, "after retention");
        fv_store_close(s);
        s = open_store(&cfg); /* and after a restart */
    }
    fv_store_close(s);
}

/* A new store in a fresh directory, and the subjects' keys. */
static struct fv_store *fresh_store(struct fv_store_config *cfg, struct keys *k)
{
    init_fields();
    fresh_config(cfg);
    keys_init(k);
    return open_store(cfg);
}

/* An instant inside a part's span is answered from the signal's column of the blocks that
 * hold it, kept decoded in the block cache: only for the key that opened the block, and
 * dropped when the subject is erased (T4). */
static void test_block_columns_per_key_dropped_on_erasure(void **state)
{
    (void)state;
    struct rng g = {seed_of(7) | 1};
    struct fv_store_config cfg;
    struct keys k;
    struct fv_store *s = fresh_store(&cfg, &k);
    int64_t t0 = (int64_t)fv_now_ms() - 3600000;
    for (int i = 0; i < 400; i++)
        add(s, &k, &g, 1, t0 + i * 10, 0); /* distinct times: no ties */
    drain(s, &k);
    struct fv_store_stats a, b;
    int scanned = 0;
    for (int i = 0; i < NF; i++) {
        int64_t mid = t0 + 2005, t1 = 0, t2 = 0;
        int f1 = 0, f2 = 0;
        struct fv_value v1, v2;
        fv_store_stats(s, &a);
        assert_int_equal(
            fv_store_last(s, PSEUDO[1], k.key[1], FIELDS[i], INT64_MIN, mid, 0, &f1, &t1, &v1),
            FV_OK);
        assert_int_equal(
            fv_store_last(s, PSEUDO[1], k.key[1], FIELDS[i], INT64_MIN, mid, 0, &f2, &t2, &v2),
            FV_OK); /* the kept column */
        fv_store_stats(s, &b);
        assert_int_equal(b.last_decoded, a.last_decoded);
        scanned += (int)(b.last_scanned - a.last_scanned);
        assert_true(f1 == f2 && (!f1 || (t1 == t2 && t1 <= mid && fv_value_equal(&v1, &v2))));
        fv_value_clear(&v1);
        fv_value_clear(&v2);
        /* another key finds nothing there, kept column or not */
        int f3 = 1;
        int64_t t3;
        struct fv_value v3;
        assert_int_equal(
            fv_store_last(s, PSEUDO[1], k.key[0], FIELDS[i], INT64_MIN, mid, 0, &f3, &t3, &v3),
            FV_OK);
        assert_int_equal(f3, 0);
    }
    assert_true(scanned > 0);
    fv_store_stats(s, &a);
    assert_true(a.cache_bytes > 0);
    assert_int_equal(fv_store_purge(s, PSEUDO[1]), FV_OK);
    fv_store_stats(s, &b);
    assert_int_equal(b.cache_bytes, 0); /* blocks and their decoded columns, gone at once */
    fv_store_close(s);
}

static void test_erasure_drops_last_values(void **state)
{
    (void)state;
    struct rng g = {seed_of(99) | 1};
    struct fv_store_config cfg;
    struct keys k;
    struct fv_store *s = fresh_store(&cfg, &k);
    int64_t t0 = (int64_t)fv_now_ms() - 3600000;
    for (int part = 0; part < 3; part++) {
        for (int i = 0; i < 200; i++)
            add(s, &k, &g, i % NSUBJ, t0 + part * 10000 + i * 10, 0);
        drain(s, &k);
    }
    add(s, &k, &g, 1, t0 + 40000, 0); /* and one in the head */
    int shown = 0;
    for (int i = 0; i < NF; i++) { /* from memory: the parts keep its records decoded */
        int64_t t;
        struct fv_value v;
        shown += last_from_memory(s, &k, 1, FIELDS[i], &t, &v);
        fv_value_clear(&v);
    }
    assert_true(shown > 0);
    /* The decoded records are kept with the parts: erasure drops subject 1's at once. */
    unsigned char subj1[FV_SUBJECT_LEN];
    assert_int_equal(fv_subject_from_hex(PSEUDO[1], subj1), FV_OK);
    struct fv_part **parts;
    size_t np, kept = 0;
    assert_int_equal(fv_store_parts(s, &parts, &np), FV_OK);
    for (size_t p = 0; p < np; p++) {
        size_t li = fv_part_find_last(parts[p], subj1);
        kept += li < parts[p]->nlast && parts[p]->lvc && parts[p]->lvc[li];
    }
    fv_store_parts_free(parts, np);
    assert_true(kept > 0);
    assert_int_equal(fv_store_purge(s, PSEUDO[1]), FV_OK);
    assert_int_equal(fv_store_parts(s, &parts, &np), FV_OK);
    for (size_t p = 0; p < np; p++) {
        size_t li = fv_part_find_last(parts[p], subj1);
        assert_true(li < parts[p]->nlast);
        assert_true(parts[p]->lvc == NULL || parts[p]->lvc[li] == NULL);
    }
    fv_store_parts_free(parts, np);
    k.destroyed[1] = 1;
    compact_all(s, &k);
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(fv_store_parts(s, &parts, &np), FV_OK);
        for (size_t p = 0; p < np; p++) /* no record of subject 1 left */
            assert_int_equal(fv_part_find_last(parts[p], subj1), parts[p]->nlast);
        fv_store_parts_free(parts, np);
        for (int flags = 0; flags < 2; flags++)
            for (int i = 0; i < NF; i++) { /* nothing of it, even with its old key */
                int found = 1;
                int64_t t;
                struct fv_value v;
                assert_int_equal(fv_store_last(s, PSEUDO[1], k.key[1], FIELDS[i], INT64_MIN,
                                               INT64_MAX, flags, &found, &t, &v),
                                 FV_OK);
                assert_int_equal(found, 0);
            }
        size_t asked = 0;
        check_round(s, &k, &g, t0, 50000, &asked, "after erasure");
        fv_store_close(s);
        s = open_store(&cfg); /* and after a restart */
    }
    fv_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoding_vs_reference),
        cmocka_unit_test(test_encoding_v1_still_read),
        cmocka_unit_test(test_encoding_v2_still_read),
        cmocka_unit_test(test_encoding_v2_edges),
        cmocka_unit_test(test_encoding_v3_edges),
        cmocka_unit_test(test_store_memory_equals_decoding),
        cmocka_unit_test(test_retention_drops_last_values),
        cmocka_unit_test(test_block_columns_per_key_dropped_on_erasure),
        cmocka_unit_test(test_erasure_drops_last_values),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
