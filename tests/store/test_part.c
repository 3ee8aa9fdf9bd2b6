/* test_part.c - part files (src/store/part.h): a part of several subjects, classes and blocks
 * (one copied verbatim from another part) written and read back (index sorted, counts,
 * footer, every block decrypted and compared with its plaintext); the wrong key and a block
 * bound to another entry fail to open; tampering: any byte flipped in a block fails that
 * block's read, any byte flipped in the header, index or footer fails the open, every
 * truncation fails, each naming the file and the offset; an unfinished writer leaves no file;
 * writer limits; part names; format version 1 still read (flags, rx_max of version 2; version 3's
 * last-values records: test_lastvals.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "crypto/keys.h"
#include "store/block.h"
#include "store/codec.h"
#include "store/lastvals.h"
#include "store/part.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "wire/payload.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fv-part-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Removes every file of dir (between tests). */
static void clear_dir(void)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
}

static size_t count_files(void)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* ---- a fixture: 3 subjects x classes x blocks ---- */

#define NSUBJ 3
#define NBLK  16

static const char *const CLASSES[] = {"default", "location", "events"};

struct blk {
    int subj;
    int cls; /* index in CLASSES */
    struct fv_buf raw;
    struct fv_block_meta m;
};

struct fixture {
    unsigned char subject[NSUBJ][FV_SUBJECT_LEN];
    unsigned char key[NSUBJ][32];
    struct blk b[NBLK];
    size_t nb;
    struct fv_datum d[64];
};

static const unsigned char PAY[] = {0x08, 0x01, 0x12, 0x03, 'a', 'b', 'c'};

/* Block k of subject s, class c: frames or events around base. */
static void make_block(struct fixture *fx, int s, int c, int64_t base, int nframes)
{
    struct blk *b = &fx->b[fx->nb++];
    b->subj = s;
    b->cls = c;
    struct fv_block_frame fr[64];
    struct fv_block_event ev[8];
    struct fv_block_in in = {0};
    if (c == 2) {
        for (int i = 0; i < 5; i++)
            ev[i] = (struct fv_block_event){base + i * 100, i % 2 ? "alerts" : "errors", 6, PAY,
                                            (uint32_t)(i + 2)};
        in.nev = 5;
        in.ev = ev;
    } else {
        for (int i = 0; i < nframes; i++) {
            fr[i] =
                (struct fv_block_frame){base + i * 1000, 1, &fx->d[(i + s) % 32 + (c ? 32 : 0)], 0};
        }
        in.nframes = (size_t)nframes;
        in.frames = fr;
    }
    assert_int_equal(fv_block_encode(&in, &b->raw, &b->m), FV_OK);
    assert_true(b->m.nrec + b->m.nev > 0);
}

static void fixture_init(struct fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    for (int s = 0; s < NSUBJ; s++) {
        for (int i = 0; i < FV_SUBJECT_LEN; i++)
            fx->subject[s][i] = (unsigned char)(0x10 * (NSUBJ - s) + i); /* reverse order */
        for (int i = 0; i < 32; i++)
            fx->key[s][i] = (unsigned char)(s * 31 + i * 7 + 1);
    }
    for (int i = 0; i < 32; i++) {
        fx->d[i].field = 1 + (uint32_t)(i % 3);
        fx->d[i].value.kind = FV_VK_DOUBLE;
        fx->d[i].value.member = 1;
        fx->d[i].value.u.d = i * 0.5;
        fx->d[32 + i].field = 27;
        fx->d[32 + i].value.kind = FV_VK_LOCATION;
        fx->d[32 + i].value.u.loc.lat = 48.0 + i * 1e-3;
        fx->d[32 + i].value.u.loc.lon = 2.0 - i * 1e-3;
    }
    /* Added in index order: subject (bytes), class id in this writer, min_t. Subject 2 has the
     * smallest bytes. Classes are registered in CLASSES order, so ids equal indexes. */
    for (int s = NSUBJ - 1; s >= 0; s--) {
        make_block(fx, s, 0, 1000000 + s, 40);
        make_block(fx, s, 0, 2000000 + s, 7);
        if (s != 1) make_block(fx, s, 1, 1000500, 20);
        make_block(fx, s, 2, 999000, 0);
    }
}

static void fixture_free(struct fixture *fx)
{
    for (size_t i = 0; i < fx->nb; i++)
        fv_buf_free(&fx->b[i].raw);
}

static void entry_of(const struct fixture *fx, const struct blk *b, int cls_id,
                     struct fv_part_entry *e)
{
    memset(e, 0, sizeof *e);
    memcpy(e->subject, fx->subject[b->subj], FV_SUBJECT_LEN);
    e->cls = (uint8_t)cls_id;
    e->nrec = b->m.nrec;
    e->nev = b->m.nev;
    e->ndatums = b->m.ndatums;
    e->min_t = b->m.min_t;
    e->max_t = b->m.max_t;
    /* Records stand in their first class's block only (location blocks here: none). */
    e->nfirst = b->cls == 1 ? 0 : b->m.nrec + b->m.nev;
}

/* Writes the fixture as part gen lo..hi at level; returns its path. */
static void write_part(const struct fixture *fx, uint64_t lo, uint64_t hi, uint32_t level,
                       uint64_t wal_hi, char *path, size_t pathlen)
{
    struct fv_part_writer *w;
    char err[512] = "";
    assert_int_equal(fv_part_writer_open(dir, lo, hi, level, &w, err, sizeof err), FV_OK);
    for (int c = 0; c < 3; c++)
        assert_int_equal(fv_part_writer_class(w, CLASSES[c]), c);
    assert_int_equal(fv_part_writer_class(w, "location"), 1); /* same name, same id */
    for (size_t i = 0; i < fx->nb; i++) {
        struct fv_part_entry e;
        entry_of(fx, &fx->b[i], fx->b[i].cls, &e);
        int rc = fv_part_writer_add(w, &e, fx->key[fx->b[i].subj], fx->b[i].raw.data,
                                    fx->b[i].raw.len, 3, err, sizeof err);
        if (rc) fail_msg("add: %s", err);
        assert_int_equal(e.raw_len, fx->b[i].raw.len);
        assert_true(e.len >= fx->b[i].raw.len / 64 + FV_SEAL_OVERHEAD);
        assert_true(e.off >= FV_PART_HEADER_LEN);
    }
    int rc = fv_part_writer_commit(w, wal_hi, path, pathlen, err, sizeof err);
    if (rc) fail_msg("commit: %s", err);
    fv_part_writer_free(w); /* after commit: only frees */
}

/* The fixture block that entry e of p holds (matched by subject, class name and min_t). */
static const struct blk *find_blk(const struct fixture *fx, const struct fv_part *p,
                                  const struct fv_part_entry *e)
{
    for (size_t i = 0; i < fx->nb; i++) {
        const struct blk *b = &fx->b[i];
        if (memcmp(fx->subject[b->subj], e->subject, FV_SUBJECT_LEN) == 0 &&
            strcmp(CLASSES[b->cls], p->classes[e->cls]) == 0 && b->m.min_t == e->min_t)
            return b;
    }
    return NULL;
}

static int cmp_entries(const struct fv_part *p, size_t a, size_t b)
{
    int c = memcmp(p->e[a].subject, p->e[b].subject, FV_SUBJECT_LEN);
    if (c) return c;
    if (p->e[a].cls != p->e[b].cls) return p->e[a].cls < p->e[b].cls ? -1 : 1;
    return p->e[a].min_t < p->e[b].min_t ? -1 : p->e[a].min_t > p->e[b].min_t;
}

/* Checks every entry of p against the fixture: index fields, and the block decrypted with its
 * subject's key gives back exactly the plaintext written. */
static void check_part(const struct fixture *fx, const struct fv_part *p, size_t expect_blocks)
{
    assert_int_equal(p->n, expect_blocks);
    uint64_t datums = 0, records = 0;
    struct fv_buf raw = {0};
    char err[512];
    for (size_t i = 0; i < p->n; i++) {
        const struct fv_part_entry *e = &p->e[i];
        if (i) assert_true(cmp_entries(p, i - 1, i) < 0);
        const struct blk *b = find_blk(fx, p, e);
        assert_non_null(b);
        assert_int_equal(e->nrec, b->m.nrec);
        assert_int_equal(e->nev, b->m.nev);
        assert_int_equal(e->ndatums, b->m.ndatums);
        assert_int_equal(e->max_t, b->m.max_t);
        assert_int_equal(e->raw_len, b->raw.len);
        assert_int_equal(e->nfirst, b->cls == 1 ? 0 : b->m.nrec + b->m.nev);
        assert_true(e->off >= FV_PART_HEADER_LEN && e->off + e->len <= p->size);
        datums += e->ndatums;
        records += e->nfirst;
        int rc = fv_part_open_block(p, i, fx->key[b->subj], &raw, err, sizeof err);
        if (rc) fail_msg("block %zu: %s", i, err);
        assert_int_equal(raw.len, b->raw.len);
        assert_memory_equal(raw.data, b->raw.data, raw.len);
        struct fv_block blk;
        assert_int_equal(fv_block_decode(raw.data, raw.len, NULL, 0, 1, &blk, err, sizeof err),
                         FV_OK);
        assert_int_equal(blk.nrec, e->nrec);
        assert_int_equal(blk.nev, e->nev);
        fv_block_free(&blk);
    }
    assert_int_equal(p->datums, datums);
    assert_int_equal(p->records, records);
    /* fv_part_find: the first entry of each subject. */
    for (int s = 0; s < NSUBJ; s++) {
        size_t at = fv_part_find(p, fx->subject[s]);
        assert_true(at < p->n);
        assert_memory_equal(p->e[at].subject, fx->subject[s], FV_SUBJECT_LEN);
        assert_true(at == 0 || memcmp(p->e[at - 1].subject, fx->subject[s], FV_SUBJECT_LEN) != 0);
    }
    unsigned char nobody[FV_SUBJECT_LEN];
    memset(nobody, 0xff, sizeof nobody);
    assert_int_equal(fv_part_find(p, nobody), p->n);
    fv_buf_free(&raw);
}

static void test_write_and_read(void **state)
{
    (void)state;
    clear_dir();
    struct fixture *fx = malloc(sizeof *fx);
    fixture_init(fx);
    char path[512];
    uint64_t before = fv_now_ms();
    write_part(fx, 5, 9, 2, 77, path, sizeof path);
    const char *base = strrchr(path, '/') + 1;
    assert_string_equal(base, "part-0000000000000005-0000000000000009.fvp");
    uint64_t lo, hi;
    assert_int_equal(fv_part_name(base, &lo, &hi), 1);
    assert_int_equal(lo, 5);
    assert_int_equal(hi, 9);
    assert_int_equal(count_files(), 1); /* the temp file was renamed */
    struct fv_part *p;
    char err[512] = "";
    int rc = fv_part_open(path, &p, err, sizeof err);
    if (rc) fail_msg("open: %s", err);
    assert_int_equal(p->level, 2);
    assert_int_equal(p->gen_lo, 5);
    assert_int_equal(p->gen_hi, 9);
    assert_int_equal(p->wal_file_hi, 77);
    assert_true(p->created_ms >= before && p->created_ms <= fv_now_ms());
    assert_int_equal(p->nclasses, 3);
    for (int c = 0; c < 3; c++)
        assert_string_equal(p->classes[c], CLASSES[c]);
    assert_int_equal(p->refs, 1);
    assert_true(p->fd >= 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(p->size, (uint64_t)st.st_size);
    check_part(fx, p, fx->nb);
    /* The index in memory parses the same. */
    int fd = open(path, O_RDONLY);
    unsigned char *img = malloc((size_t)st.st_size);
    assert_int_equal(pread(fd, img, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    struct fv_part *q;
    assert_int_equal(fv_part_parse(img, (size_t)st.st_size, "mem", &q, err, sizeof err), FV_OK);
    assert_int_equal(q->fd, -1);
    assert_int_equal(q->n, p->n);
    assert_memory_equal(q->e, p->e, p->n * sizeof *p->e);
    fv_part_unref(q);
    free(img);
    /* References: the file stays until the last one. */
    fv_part_ref(p);
    fv_part_unref(p);
    assert_int_equal(p->refs, 1);
    fv_part_unref(p);
    assert_int_equal(access(path, F_OK), 0);
    fixture_free(fx);
    free(fx);
}

/* A block copied verbatim into another part (under another class id there) still opens: the
 * seal binds the class name, not its number. */
static void test_copy_block(void **state)
{
    (void)state;
    clear_dir();
    struct fixture *fx = malloc(sizeof *fx);
    fixture_init(fx);
    char path[512], path2[512], err[512] = "";
    write_part(fx, 1, 1, 0, 3, path, sizeof path);
    struct fv_part *p;
    assert_int_equal(fv_part_open(path, &p, err, sizeof err), FV_OK);
    struct fv_part_writer *w;
    assert_int_equal(fv_part_writer_open(dir, 2, 2, 1, &w, err, sizeof err), FV_OK);
    /* "events" becomes class 0 here, "location" 1, "default" 2. */
    assert_int_equal(fv_part_writer_class(w, "events"), 0);
    assert_int_equal(fv_part_writer_class(w, "location"), 1);
    struct fv_buf sealed = {0};
    size_t copied = 0;
    for (size_t i = 0; i < p->n; i++) {
        const struct fv_part_entry *e = &p->e[i];
        assert_int_equal(fv_part_read_block(p, i, &sealed, err, sizeof err), FV_OK);
        assert_int_equal(sealed.len, e->len + (e->nonce_in ? 0 : 12)); /* nonce in front */
        const char *cname = p->classes[e->cls];
        /* Copy every block except subject 1's default blocks, which are re-added. */
        const struct blk *b = find_blk(fx, p, e);
        if (b->subj == 1 && b->cls == 0) {
            struct fv_part_entry ne;
            entry_of(fx, b, fv_part_writer_class(w, cname), &ne);
            assert_int_equal(
                fv_part_writer_add(w, &ne, fx->key[1], b->raw.data, b->raw.len, 9, err, sizeof err),
                FV_OK);
            continue;
        }
        assert_int_equal(fv_part_writer_copy(w, e, cname, sealed.data, sealed.len, err, sizeof err),
                         FV_OK);
        copied++;
    }
    assert_true(copied >= 8);
    assert_int_equal(fv_part_writer_commit(w, 4, path2, sizeof path2, err, sizeof err), FV_OK);
    fv_part_writer_free(w);
    struct fv_part *q;
    assert_int_equal(fv_part_open(path2, &q, err, sizeof err), FV_OK);
    assert_string_equal(q->classes[0], "events");
    assert_string_equal(q->classes[2], "default");
    assert_int_equal(q->level, 1);
    assert_int_equal(q->wal_file_hi, 4);
    check_part(fx, q, fx->nb);
    assert_int_equal(q->datums, p->datums);
    assert_int_equal(q->records, p->records);
    fv_part_unref(q);
    fv_part_unref(p);
    fv_buf_free(&sealed);
    fixture_free(fx);
    free(fx);
}

/* The wrong key, or a sealed block presented as another entry's, fails to open with the
 * file and offset in the message. */
static void test_wrong_key_and_moved_block(void **state)
{
    (void)state;
    clear_dir();
    struct fixture *fx = malloc(sizeof *fx);
    fixture_init(fx);
    char path[512], err[512] = "";
    write_part(fx, 1, 1, 0, 0, path, sizeof path);
    struct fv_part *p;
    assert_int_equal(fv_part_open(path, &p, err, sizeof err), FV_OK);
    struct fv_buf raw = {0};
    for (size_t i = 0; i < p->n; i++) {
        const struct blk *b = find_blk(fx, p, &p->e[i]);
        int other = (b->subj + 1) % NSUBJ;
        err[0] = '\0';
        assert_int_equal(fv_part_open_block(p, i, fx->key[other], &raw, err, sizeof err),
                         FV_ECORRUPT);
        assert_non_null(strstr(err, path));
        assert_non_null(strstr(err, "offset"));
        char off[32];
        snprintf(off, sizeof off, "offset %" PRIu64, p->e[i].off);
        assert_non_null(strstr(err, off));
    }
    /* Entry 0's sealed bytes under entry 1's associated data (a block moved to another
     * subject, class or time range) fail authentication. */
    struct fv_buf sealed = {0}, aad = {0}, out = {0};
    assert_int_equal(fv_part_read_block(p, 0, &sealed, err, sizeof err), FV_OK);
    const struct blk *b0 = find_blk(fx, p, &p->e[0]);
    assert_int_equal(fv_part_block_aad(&p->e[0], p->classes[p->e[0].cls], &aad), FV_OK);
    assert_int_equal(fv_open(fx->key[b0->subj], aad.data, aad.len, sealed.data, sealed.len, &out),
                     FV_OK);
    struct fv_part_entry moved = p->e[0];
    moved.max_t++;
    assert_int_equal(fv_part_block_aad(&moved, p->classes[moved.cls], &aad), FV_OK);
    fv_buf_reset(&out);
    assert_int_equal(fv_open(fx->key[b0->subj], aad.data, aad.len, sealed.data, sealed.len, &out),
                     FV_ECORRUPT);
    assert_int_equal(fv_part_block_aad(&p->e[0], "location", &aad), FV_OK);
    assert_int_equal(fv_open(fx->key[b0->subj], aad.data, aad.len, sealed.data, sealed.len, &out),
                     FV_ECORRUPT);
    moved = p->e[0];
    moved.subject[3] ^= 1;
    assert_int_equal(fv_part_block_aad(&moved, p->classes[moved.cls], &aad), FV_OK);
    assert_int_equal(fv_open(fx->key[b0->subj], aad.data, aad.len, sealed.data, sealed.len, &out),
                     FV_ECORRUPT);
    fv_buf_free(&sealed);
    fv_buf_free(&aad);
    fv_buf_free(&out);
    fv_buf_free(&raw);
    fv_part_unref(p);
    fixture_free(fx);
    free(fx);
}

static void flip_at(const char *path, uint64_t pos, unsigned char mask)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, (off_t)pos), 1);
    c ^= mask;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)pos), 1);
    close(fd);
}

/* TAMPER: every byte of the blocks area belongs to exactly one block; flipping it makes that
 * block (and only that block) fail to read, naming the file and the block's offset. */
static void test_tamper_blocks(void **state)
{
    (void)state;
    clear_dir();
    struct fixture *fx = malloc(sizeof *fx);
    fixture_init(fx);
    char path[512], err[512] = "";
    write_part(fx, 1, 1, 0, 0, path, sizeof path);
    struct fv_part *p;
    assert_int_equal(fv_part_open(path, &p, err, sizeof err), FV_OK);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint64_t blocks_end = FV_PART_HEADER_LEN;
    for (size_t i = 0; i < p->n; i++)
        if (p->e[i].off + p->e[i].len > blocks_end) blocks_end = p->e[i].off + p->e[i].len;
    struct fv_buf raw = {0};
    size_t flips = 0;
    for (uint64_t pos = FV_PART_HEADER_LEN; pos < blocks_end; pos++) {
        size_t owner = p->n;
        for (size_t i = 0; i < p->n; i++)
            if (pos >= p->e[i].off && pos < p->e[i].off + p->e[i].len) {
                assert_int_equal(owner, p->n); /* no overlap */
                owner = i;
            }
        assert_true(owner < p->n); /* no gap */
        unsigned char c, mask = (unsigned char)(1u << (pos % 8));
        assert_int_equal(pread(fd, &c, 1, (off_t)pos), 1);
        c ^= mask;
        assert_int_equal(pwrite(fd, &c, 1, (off_t)pos), 1);
        const struct blk *b = find_blk(fx, p, &p->e[owner]);
        err[0] = '\0';
        int rc = fv_part_open_block(p, owner, fx->key[b->subj], &raw, err, sizeof err);
        if (rc != FV_ECORRUPT) fail_msg("flip at %" PRIu64 ": rc %d", pos, rc);
        char off[64];
        snprintf(off, sizeof off, "%s: offset %" PRIu64 ":", path, p->e[owner].off);
        if (strstr(err, off) == NULL) fail_msg("flip at %" PRIu64 ": message \"%s\"", pos, err);
        assert_non_null(strstr(err, "checksum"));
        /* The raw read says the same. */
        assert_int_equal(fv_part_read_block(p, owner, &raw, err, sizeof err), FV_ECORRUPT);
        /* A neighbour is unaffected. */
        size_t nb = owner + 1 < p->n ? owner + 1 : owner - 1;
        const struct blk *b2 = find_blk(fx, p, &p->e[nb]);
        assert_int_equal(fv_part_open_block(p, nb, fx->key[b2->subj], &raw, err, sizeof err),
                         FV_OK);
        c ^= mask;
        assert_int_equal(pwrite(fd, &c, 1, (off_t)pos), 1);
        flips++;
    }
    close(fd);
    fv_buf_free(&raw);
    printf("%zu block bytes flipped, each detected\n", flips);
    /* Restored: everything reads again. */
    check_part(fx, p, fx->nb);
    fv_part_unref(p);
    fixture_free(fx);
    free(fx);
}

/* TAMPER: any byte of the header, index or footer flipped fails fv_part_open (and
 * fv_part_parse), naming the file and an offset. */
static void test_tamper_index_footer_header(void **state)
{
    (void)state;
    clear_dir();
    struct fixture *fx = malloc(sizeof *fx);
    fixture_init(fx);
    char path[512], err[512] = "";
    write_part(fx, 1, 1, 0, 0, path, sizeof path);
    struct fv_part *p;
    assert_int_equal(fv_part_open(path, &p, err, sizeof err), FV_OK);
    uint64_t size = p->size, ioff = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->e[i].off + p->e[i].len > ioff) ioff = p->e[i].off + p->e[i].len;
    fv_part_unref(p);
    size_t n = 0;
    for (uint64_t pos = 0; pos < size; pos++) {
        if (pos >= FV_PART_HEADER_LEN && pos < ioff) continue; /* blocks: see above */
        for (int m = 0; m < 2; m++) {
            unsigned char mask = m ? 0x80 : (unsigned char)(1u << (pos % 7));
            flip_at(path, pos, mask);
            err[0] = '\0';
            struct fv_part *q = NULL;
            int rc = fv_part_open(path, &q, err, sizeof err);
            if (rc != FV_ECORRUPT)
                fail_msg("flip at %" PRIu64 " (size %" PRIu64 ", index at %" PRIu64 "): rc %d", pos,
                         size, ioff, rc);
            assert_null(q);
            if (strstr(err, path) == NULL || strstr(err, ": offset ") == NULL)
                fail_msg("flip at %" PRIu64 ": message \"%s\"", pos, err);
            flip_at(path, pos, mask);
            n++;
        }
    }
    printf("%zu header/index/footer flips, each refused\n", n);
    assert_int_equal(fv_part_open(path, &p, err, sizeof err), FV_OK);
    fv_part_unref(p);
    fixture_free(fx);
    free(fx);
}

/* A part cut at any length fails to open (file) and to parse (memory). */
static void test_truncated(void **state)
{
    (void)state;
    clear_dir();
    struct fixture *fx = malloc(sizeof *fx);
    fixture_init(fx);
    char path[512], err[512] = "";
    write_part(fx, 1, 1, 0, 0, path, sizeof path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    size_t size = (size_t)st.st_size;
    unsigned char *img = malloc(size);
    int fd = open(path, O_RDONLY);
    assert_int_equal(pread(fd, img, size, 0), (ssize_t)size);
    close(fd);
    for (size_t cut = 0; cut < size; cut++) {
        unsigned char *c = malloc(cut ? cut : 1);
        memcpy(c, img, cut);
        struct fv_part *q = NULL;
        err[0] = '\0';
        int rc = fv_part_parse(c, cut, "cut.fvp", &q, err, sizeof err);
        if (rc != FV_ECORRUPT) fail_msg("cut at %zu: rc %d", cut, rc);
        assert_null(q);
        assert_non_null(strstr(err, "cut.fvp: offset "));
        free(c);
    }
    /* On disk, a few lengths: inside the header, inside the blocks, inside the index and
     * footer, and one byte short. Also a byte too many. */
    char cpath[600];
    snprintf(cpath, sizeof cpath, "%s/cut.fvp", dir);
    const size_t cuts[] = {0, 1, 35, 36, 103, 104, size / 2, size - 68, size - 67, size - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        fd = open(cpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_int_equal(write(fd, img, cuts[k]), (ssize_t)cuts[k]);
        close(fd);
        struct fv_part *q = NULL;
        err[0] = '\0';
        int rc = fv_part_open(cpath, &q, err, sizeof err);
        if (rc != FV_ECORRUPT) fail_msg("cut at %zu: rc %d (%s)", cuts[k], rc, err);
        assert_non_null(strstr(err, cpath));
        assert_non_null(strstr(err, "offset"));
    }
    fd = open(cpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_int_equal(write(fd, img, size), (ssize_t)size);
    assert_int_equal(write(fd, "x", 1), 1);
    close(fd);
    struct fv_part *q = NULL;
    assert_int_equal(fv_part_open(cpath, &q, err, sizeof err), FV_ECORRUPT);
    assert_int_equal(fv_part_open("/nonexistent/part.fvp", &q, err, sizeof err), FV_EIO);
    unlink(cpath);
    free(img);
    fixture_free(fx);
    free(fx);
}

/* A writer freed without commit leaves nothing behind; one freed after commit keeps its
 * part; a part with no blocks is valid. */
static void test_unfinished_writer(void **state)
{
    (void)state;
    clear_dir();
    struct fixture *fx = malloc(sizeof *fx);
    fixture_init(fx);
    struct fv_part_writer *w;
    char err[512] = "";
    assert_int_equal(fv_part_writer_open(dir, 3, 4, 0, &w, err, sizeof err), FV_OK);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s/part-0000000000000003-0000000000000004.fvp.tmp", dir);
    assert_int_equal(access(tmp, F_OK), 0);
    assert_int_equal(fv_part_writer_class(w, "default"), 0);
    struct fv_part_entry e;
    entry_of(fx, &fx->b[0], 0, &e);
    assert_int_equal(fv_part_writer_add(w, &e, fx->key[fx->b[0].subj], fx->b[0].raw.data,
                                        fx->b[0].raw.len, 3, err, sizeof err),
                     FV_OK);
    fv_part_writer_free(w);
    assert_int_equal(count_files(), 0);
    fv_part_writer_free(NULL);

    /* No blocks at all (compaction of parts whose subjects were all purged). */
    char path[512];
    assert_int_equal(fv_part_writer_open(dir, 7, 7, 1, &w, err, sizeof err), FV_OK);
    assert_int_equal(fv_part_writer_commit(w, 12, path, sizeof path, err, sizeof err), FV_OK);
    fv_part_writer_free(w);
    assert_int_equal(count_files(), 1);
    struct fv_part *p;
    assert_int_equal(fv_part_open(path, &p, err, sizeof err), FV_OK);
    assert_int_equal(p->n, 0);
    assert_int_equal(p->wal_file_hi, 12);
    assert_int_equal(p->datums + p->records, 0);
    assert_int_equal(fv_part_find(p, fx->subject[0]), 0);
    p->unlink_on_free = 1; /* the last reference deletes the file */
    fv_part_unref(p);
    assert_int_equal(count_files(), 0);

    /* An unwritable directory fails with the path. */
    assert_int_equal(fv_part_writer_open("/nonexistent-dir", 1, 1, 0, &w, err, sizeof err), FV_EIO);
    assert_null(w);
    assert_non_null(strstr(err, "/nonexistent-dir/part-"));
    fixture_free(fx);
    free(fx);
}

static void test_writer_limits(void **state)
{
    (void)state;
    clear_dir();
    struct fv_part_writer *w;
    char err[512] = "";
    assert_int_equal(fv_part_writer_open(dir, 1, 1, 0, &w, err, sizeof err), FV_OK);
    assert_int_equal(fv_part_writer_class(w, ""), FV_ELIMIT);
    char longname[40];
    memset(longname, 'c', sizeof longname);
    longname[32] = '\0';
    assert_int_equal(fv_part_writer_class(w, longname), FV_ELIMIT);
    longname[31] = '\0';
    assert_int_equal(fv_part_writer_class(w, longname), 0);
    for (int i = 1; i < FV_PART_MAX_CLASSES; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "c%d", i);
        assert_int_equal(fv_part_writer_class(w, nm), i);
    }
    assert_int_equal(fv_part_writer_class(w, "one-too-many"), FV_ELIMIT);
    assert_int_equal(fv_part_writer_class(w, "c5"), 5);
    unsigned char key[32] = {1};
    unsigned char raw[4] = {1, 0, 0, 0};
    struct fv_part_entry e = {.cls = 0, .nrec = 0, .nev = 0, .min_t = 0, .max_t = 0};
    assert_int_equal(fv_part_writer_add(w, &e, key, raw, 0, 3, err, sizeof err), FV_EINVAL);
    e.cls = FV_PART_MAX_CLASSES;
    assert_int_equal(fv_part_writer_add(w, &e, key, raw, sizeof raw, 3, err, sizeof err),
                     FV_EINVAL);
    fv_part_writer_free(w);
    assert_int_equal(count_files(), 0);
}

static void test_part_names(void **state)
{
    (void)state;
    uint64_t lo = 0, hi = 0;
    assert_int_equal(fv_part_name("part-0000000000000001-00000000000000ff.fvp", &lo, &hi), 1);
    assert_int_equal(lo, 1);
    assert_int_equal(hi, 255);
    assert_int_equal(fv_part_name("part-ffffffffffffffff-ffffffffffffffff.fvp", &lo, &hi), 1);
    assert_true(lo == UINT64_MAX && hi == UINT64_MAX);
    assert_int_equal(fv_part_name("part-0000000000000002-0000000000000001.fvp", &lo, &hi), 0);
    assert_int_equal(fv_part_name("part-0000000000000001-0000000000000002.fvp.tmp", &lo, &hi), 0);
    assert_int_equal(fv_part_name("part-0000000000000001-0000000000000002.fvx", &lo, &hi), 0);
    assert_int_equal(fv_part_name("part-000000000000001-00000000000000002.fvp", &lo, &hi), 0);
    assert_int_equal(fv_part_name("part-1-2.fvp", &lo, &hi), 0);
    assert_int_equal(fv_part_name("wal-0000000000000001.log", &lo, &hi), 0);
    assert_int_equal(fv_part_name("", &lo, &hi), 0);
}

/* Format version 2 (issue 8): flags and rx_max round-trip; a version-1 part (no flags, 69-byte
 * entries without rx_max), made here from a version-2 one by rewriting its index, header and
 * footer, is still read: same entries, rx_max taken as its created_ms, every block opens. */
static void test_version1_still_read(void **state)
{
    (void)state;
    clear_dir();
    struct fixture *fx = malloc(sizeof *fx);
    fixture_init(fx);
    struct fv_part_writer *w;
    char err[512] = "", path[512];
    assert_int_equal(fv_part_writer_open(dir, 3, 3, 0, &w, err, sizeof err), FV_OK);
    assert_int_equal(fv_part_writer_set_version(w, 5), FV_OK); /* fixed-size entries */
    for (int c = 0; c < 3; c++)
        assert_int_equal(fv_part_writer_class(w, CLASSES[c]), c);
    for (size_t i = 0; i < fx->nb; i++) {
        struct fv_part_entry e;
        entry_of(fx, &fx->b[i], fx->b[i].cls, &e);
        e.rx_max = 1700000000000LL + (int64_t)i;
        assert_int_equal(fv_part_writer_add(w, &e, fx->key[fx->b[i].subj], fx->b[i].raw.data,
                                            fx->b[i].raw.len, 3, err, sizeof err),
                         FV_OK);
    }
    fv_part_writer_set_flags(w, FV_PART_F_PROVISIONAL);
    assert_int_equal(fv_part_writer_commit(w, 5, path, sizeof path, err, sizeof err), FV_OK);
    fv_part_writer_free(w);
    struct fv_part *p2;
    assert_int_equal(fv_part_open(path, &p2, err, sizeof err), FV_OK);
    assert_int_equal(p2->version, 5);
    assert_int_equal(p2->nlast, 0);
    assert_int_equal(p2->flags, FV_PART_F_PROVISIONAL);
    for (size_t i = 0; i < p2->n; i++)
        assert_true(p2->e[i].rx_max >= 1700000000000LL &&
                    p2->e[i].rx_max < 1700000000000LL + (int64_t)fx->nb);
    check_part(fx, p2, fx->nb);

    /* Rewrite as version 1. */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    size_t len = (size_t)st.st_size;
    unsigned char *img = malloc(len);
    int fd = open(path, O_RDONLY);
    assert_int_equal(pread(fd, img, len, 0), (ssize_t)len);
    close(fd);
    const unsigned char *f = img + len - FV_PART_FOOTER_LEN;
    uint64_t ioff = fv_get_u64(f);
    uint32_t ilen = fv_get_u32(f + 8), iraw = fv_get_u32(f + 12);
    unsigned char *raw = malloc(iraw);
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
    size_t classes_end = r.off;
    assert_int_equal(fv_rd_uvarint(&r, &flags), 0);
    assert_int_equal(flags, FV_PART_F_PROVISIONAL);
    assert_int_equal(fv_rd_uvarint(&r, &nb), 0);
    assert_int_equal(nb * FV_PART_ENTRY_LEN + 1, iraw - r.off); /* + varint nlast 0 */
    struct fv_buf idx = {0};
    assert_int_equal(fv_buf_append(&idx, raw, classes_end), FV_OK);
    assert_int_equal(fv_put_uvarint(&idx, nb), FV_OK);
    for (uint64_t i = 0; i < nb; i++)
        assert_int_equal(
            fv_buf_append(&idx, raw + r.off + i * FV_PART_ENTRY_LEN, FV_PART_ENTRY_LEN_V1), FV_OK);
    size_t bound = ZSTD_compressBound(idx.len);
    unsigned char *out = malloc(ioff + bound + FV_PART_FOOTER_LEN);
    memcpy(out, img, ioff);
    fv_put_u32(out + 8, 1);
    fv_put_u32(out + 32, fv_crc32c(0, out, 32));
    size_t zn = ZSTD_compress(out + ioff, bound, idx.data, idx.len, 3);
    assert_false(ZSTD_isError(zn));
    unsigned char *nf = out + ioff + zn;
    memcpy(nf, f, FV_PART_FOOTER_LEN);
    fv_put_u32(nf + 8, (uint32_t)zn);
    fv_put_u32(nf + 12, (uint32_t)idx.len);
    fv_put_u32(nf + 16, fv_crc32c(0, out + ioff, zn));
    fv_put_u32(nf + 64, fv_crc32c(0, nf, 64));
    char v1[600];
    snprintf(v1, sizeof v1, "%s/part-0000000000000004-0000000000000004.fvp", dir);
    fd = open(v1, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    size_t total = ioff + zn + FV_PART_FOOTER_LEN;
    assert_int_equal(write(fd, out, total), (ssize_t)total);
    close(fd);

    struct fv_part *p1;
    int rc = fv_part_open(v1, &p1, err, sizeof err);
    if (rc) fail_msg("version 1: %s", err);
    assert_int_equal(p1->version, 1);
    assert_int_equal(p1->flags, 0);
    assert_int_equal(p1->n, p2->n);
    assert_int_equal(p1->wal_file_hi, 5);
    for (size_t i = 0; i < p1->n; i++) {
        assert_int_equal(p1->e[i].rx_max, (int64_t)p1->created_ms);
        struct fv_part_entry a = p1->e[i], b = p2->e[i];
        a.rx_max = b.rx_max = 0;
        assert_memory_equal(&a, &b, sizeof a);
    }
    check_part(fx, p1, fx->nb);
    fv_part_unref(p1);
    fv_part_unref(p2);
    fv_buf_free(&idx);
    free(out);
    free(raw);
    free(img);
    fixture_free(fx);
    free(fx);
}

/* Last-values records: version 4 keeps a record as it is when zstd does not shrink it (the
 * dense plaintext version 2) and zstd-compresses the others; a version 3 part (records
 * always compressed) still reads, and there a record not compressed is refused. */
static void test_last_values_stored_raw_or_compressed(void **state)
{
    (void)state;
    clear_dir();
    unsigned char dek[32], s1[FV_SUBJECT_LEN] = {1}, s2[FV_SUBJECT_LEN] = {2};
    memset(dek, 7, sizeof dek);
    struct fv_lastvals lv = {0};
    for (uint32_t f = 1; f <= 20; f++) {
        struct fv_value v = {.kind = FV_VK_DOUBLE, .member = 5, .u.d = 300.0 + f * 1.37};
        assert_int_equal(fv_lastvals_add(&lv, 1796169600000LL, f, &v), FV_OK);
    }
    struct fv_buf dense = {0}, old = {0}, plain = {0};
    assert_int_equal(fv_lastvals_encode(&lv, &dense), FV_OK);
    assert_int_equal(fv_lastvals_encode_v1(&lv, &old), FV_OK);
    struct fv_part_writer *w;
    char err[512] = "", path[512];
    assert_int_equal(fv_part_writer_open(dir, 9, 9, 0, &w, err, sizeof err), FV_OK);
    assert_int_equal(fv_part_writer_set_version(w, 5), FV_OK); /* patched to 3 below */
    assert_int_equal(fv_part_writer_add_last(w, s1, dek, old.data, old.len, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_part_writer_add_last(w, s2, dek, dense.data, dense.len, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_part_writer_commit(w, 0, path, sizeof path, err, sizeof err), FV_OK);
    fv_part_writer_free(w);
    struct fv_part *p;
    assert_int_equal(fv_part_open(path, &p, err, sizeof err), FV_OK);
    assert_int_equal(p->version, 5);
    assert_int_equal(p->nlast, 2);
    assert_true(p->last[0].len < 28 + old.len);       /* compressed */
    assert_int_equal(p->last[1].len, 28 + dense.len); /* as it is */
    const struct fv_buf *want[2] = {&old, &dense};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(fv_part_open_last(p, i, dek, NULL, &plain, err, sizeof err), FV_OK);
        assert_int_equal(plain.len, want[i]->len);
        assert_memory_equal(plain.data, want[i]->data, plain.len);
        struct fv_lastvals d = {0};
        assert_int_equal(fv_lastvals_decode(plain.data, plain.len, &d, err, sizeof err), FV_OK);
        assert_int_equal(d.n, 20);
        fv_lastvals_clear(&d);
    }
    fv_part_unref(p);
    /* The same file as version 3: the compressed record reads, the other is refused. */
    int fd = open(path, O_RDWR);
    unsigned char h[36];
    assert_int_equal(pread(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    fv_put_u32(h + 8, 3);
    fv_put_u32(h + 32, fv_crc32c(0, h, 32));
    assert_int_equal(pwrite(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    close(fd);
    assert_int_equal(fv_part_open(path, &p, err, sizeof err), FV_OK);
    assert_int_equal(p->version, 3);
    assert_int_equal(fv_part_open_last(p, 0, dek, NULL, &plain, err, sizeof err), FV_OK);
    assert_memory_equal(plain.data, old.data, old.len);
    assert_int_equal(fv_part_open_last(p, 1, dek, NULL, &plain, err, sizeof err), FV_ECORRUPT);
    fv_part_unref(p);
    fv_buf_free(&dense);
    fv_buf_free(&old);
    fv_buf_free(&plain);
    fv_lastvals_clear(&lv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_and_read),
        cmocka_unit_test(test_copy_block),
        cmocka_unit_test(test_wrong_key_and_moved_block),
        cmocka_unit_test(test_tamper_blocks),
        cmocka_unit_test(test_tamper_index_footer_header),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_unfinished_writer),
        cmocka_unit_test(test_writer_limits),
        cmocka_unit_test(test_part_names),
        cmocka_unit_test(test_version1_still_read),
        cmocka_unit_test(test_last_values_stored_raw_or_compressed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
