/* test_part_v6.c - part format 6 (src/store/part.h, docs/formats.md "Version 6 index"): the
 * same blocks and last-values records written as version 5 and as version 6 read back alike
 * (entries, plaintexts), version 6 without a nonce per sealed thing (12 bytes fewer each),
 * blocks' zstd frames without their magic (4 more) and with a smaller index; two writers draw
 * different nonce bases; a version 6 block carried over unopened into another part opens there, and
 * a damaged one stays damaged; a block moved to another offset no longer opens; every cut and every
 * flipped byte of a version 6 index (recompressed, with a valid CRC) is refused or read as a valid
 * part, never misread past its bounds (ASan). */
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

#include "crypto/keys.h"
#include "store/codec.h"
#include "store/lastvals.h"
#include "store/part.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/err.h"

#define NSUBJ 5
#define NBLK  3 /* per subject: classes 0, 1, 2 */

static char dir[64];
static const char *const CLASSES[] = {"default", "location", "events"};

struct fx {
    unsigned char subject[NSUBJ][FV_SUBJECT_LEN];
    unsigned char key[NSUBJ][32];
    struct fv_buf raw[NSUBJ][NBLK];
    struct fv_buf last[NSUBJ];
};

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fv_test_part_v6_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static void clear_dir(void)
{
    DIR *d = opendir(dir);
    if (d == NULL) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

static int teardown(void **state)
{
    (void)state;
    clear_dir();
    rmdir(dir);
    return 0;
}

static void fx_init(struct fx *f)
{
    memset(f, 0, sizeof *f);
    for (int s = 0; s < NSUBJ; s++) {
        for (int i = 0; i < FV_SUBJECT_LEN; i++)
            f->subject[s][i] = (unsigned char)(0x20 * s + i * 3 + 1); /* ascending */
        for (int i = 0; i < 32; i++)
            f->key[s][i] = (unsigned char)(s * 17 + i * 5 + 3);
        for (int c = 0; c < NBLK; c++) /* plaintexts: parts do not decode them */
            for (int i = 0; i < 200 + 50 * s + 30 * c; i++) {
                unsigned char b = (unsigned char)((i * (c + 2) + s) % 7 + 'a');
                assert_int_equal(fv_buf_append(&f->raw[s][c], &b, 1), FV_OK);
            }
        struct fv_lastvals lv = {0};
        for (uint32_t k = 1; k <= 20; k++) {
            struct fv_value v = {.kind = FV_VK_DOUBLE, .member = 5, .u.d = s * 10.0 + k * 1.37};
            assert_int_equal(fv_lastvals_add(&lv, 1796169600000LL + s, k, &v), FV_OK);
        }
        assert_int_equal(fv_lastvals_encode(&lv, &f->last[s]), FV_OK);
        fv_lastvals_clear(&lv);
    }
}

static void fx_free(struct fx *f)
{
    for (int s = 0; s < NSUBJ; s++) {
        for (int c = 0; c < NBLK; c++)
            fv_buf_free(&f->raw[s][c]);
        fv_buf_free(&f->last[s]);
    }
}

/* Writes the fixture (subject 3 without a last-values record, subject 4's record only) as
 * part gen..gen in the given version; returns its path. */
static void write_part(const struct fx *f, uint64_t gen, uint32_t version, char *path,
                       size_t pathlen)
{
    struct fv_part_writer *w;
    char err[512] = "";
    assert_int_equal(fv_part_writer_open(dir, gen, gen, 0, &w, err, sizeof err), FV_OK);
    assert_int_equal(fv_part_writer_set_version(w, version), FV_OK); /* 7 is written now */
    for (int c = 0; c < NBLK; c++)
        assert_int_equal(fv_part_writer_class(w, CLASSES[c]), c);
    for (int s = 0; s < NSUBJ; s++) {
        for (int c = 0; s < 4 && c < NBLK; c++) {
            struct fv_part_entry e = {.cls = (uint8_t)c,
                                      .nrec = c == 2 ? 0 : 10u + (uint32_t)s,
                                      .nev = c == 2 ? 1 : 0,
                                      .ndatums = c == 2 ? 0 : 100u * (uint32_t)(s + 1),
                                      .min_t = 1796169600000LL - 1000 * s,
                                      .max_t = 1796169600000LL + s,
                                      .rx_max = 1796169600500LL + s * 7};
            memcpy(e.subject, f->subject[s], FV_SUBJECT_LEN);
            e.nfirst = c == 1 ? 0 : e.nrec + e.nev;
            int rc = fv_part_writer_add(w, &e, f->key[s], f->raw[s][c].data, f->raw[s][c].len, 3,
                                        err, sizeof err);
            if (rc) fail_msg("add: %s", err);
        }
        if (s == 3) continue;
        assert_int_equal(fv_part_writer_add_last(w, f->subject[s], f->key[s], f->last[s].data,
                                                 f->last[s].len, err, sizeof err),
                         FV_OK);
    }
    int rc = fv_part_writer_commit(w, 7, path, pathlen, err, sizeof err);
    if (rc) fail_msg("commit: %s", err);
    fv_part_writer_free(w);
}

static int subj_of(const struct fx *f, const unsigned char *subject)
{
    for (int s = 0; s < NSUBJ; s++)
        if (memcmp(f->subject[s], subject, FV_SUBJECT_LEN) == 0) return s;
    fail_msg("unknown subject");
    return -1;
}

/* Every block and record of p opens with its subject's key to the fixture's plaintext. */
static void check_opens(const struct fx *f, const struct fv_part *p)
{
    char err[512] = "";
    struct fv_buf raw = {0};
    assert_int_equal(p->n, 4 * NBLK);
    assert_int_equal(p->nlast, 4);
    for (size_t i = 0; i < p->n; i++) {
        int s = subj_of(f, p->e[i].subject), c = p->e[i].cls;
        int rc = fv_part_open_block(p, i, f->key[s], &raw, err, sizeof err);
        if (rc) fail_msg("block %zu: %s", i, err);
        assert_int_equal(raw.len, f->raw[s][c].len);
        assert_memory_equal(raw.data, f->raw[s][c].data, raw.len);
    }
    for (size_t i = 0; i < p->nlast; i++) {
        int s = subj_of(f, p->last[i].subject);
        int rc = fv_part_open_last(p, i, f->key[s], NULL, &raw, err, sizeof err);
        if (rc) fail_msg("last %zu: %s", i, err);
        assert_int_equal(raw.len, f->last[s].len);
        assert_memory_equal(raw.data, f->last[s].data, raw.len);
    }
    fv_buf_free(&raw);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

static void test_v6_reads_as_v5(void **state)
{
    (void)state;
    clear_dir();
    struct fx *f = malloc(sizeof *f);
    fx_init(f);
    char p5path[512], p6path[512], p6bpath[512], err[512] = "";
    write_part(f, 1, 5, p5path, sizeof p5path);
    write_part(f, 2, 6, p6path, sizeof p6path);
    write_part(f, 3, 6, p6bpath, sizeof p6bpath);
    struct fv_part *p5, *p6, *p6b;
    assert_int_equal(fv_part_open(p5path, &p5, err, sizeof err), FV_OK);
    assert_int_equal(fv_part_open(p6path, &p6, err, sizeof err), FV_OK);
    assert_int_equal(fv_part_open(p6bpath, &p6b, err, sizeof err), FV_OK);
    assert_int_equal(p5->version, 5);
    assert_int_equal(p6->version, 6);
    check_opens(f, p5);
    check_opens(f, p6);
    /* The same entries but where the bytes are and how long they are. */
    for (size_t i = 0; i < p5->n; i++) {
        struct fv_part_entry a = p5->e[i], b = p6->e[i];
        assert_int_equal(a.nonce_in, 1);
        assert_int_equal(b.nonce_in, 0);
        assert_int_equal(a.len, b.len + 12 + 4); /* no nonce stored, no zstd magic */
        a.off = b.off = 0;
        a.len = b.len = a.crc = b.crc = 0;
        a.nonce_in = b.nonce_in = 0;
        assert_memory_equal(&a, &b, sizeof a);
    }
    for (size_t i = 0; i < p5->nlast; i++) {
        assert_memory_equal(p5->last[i].subject, p6->last[i].subject, FV_SUBJECT_LEN);
        assert_int_equal(p5->last[i].len, p6->last[i].len + 12);
    }
    /* A subject's record refers to its run of blocks; subject 4 (no blocks) names itself. */
    assert_true(fv_part_find_last(p6, f->subject[4]) < p6->nlast);
    assert_int_equal(fv_part_find_last(p6, f->subject[3]), p6->nlast);
    assert_int_equal(p6->datums, p5->datums);
    assert_int_equal(p6->records, p5->records);
    /* 16 sealed things of 12 bytes each, and a smaller index. */
    print_message("version 5 %llu bytes, version 6 %llu\n", (unsigned long long)file_size(p5path),
                  (unsigned long long)file_size(p6path));
    assert_true(file_size(p6path) + 16 * 12 < file_size(p5path));
    /* Two writers, two random nonce bases. */
    assert_memory_not_equal(p6->nonce_base, p6b->nonce_base, 12);
    fv_part_unref(p5);
    fv_part_unref(p6);
    fv_part_unref(p6b);
    fx_free(f);
    free(f);
}

static void flip(const char *path, uint64_t pos)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, (off_t)pos), 1);
    c ^= 0x40;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)pos), 1);
    close(fd);
}

/* Blocks of a version 6 part carried over unopened (a merge's T8 path) open in the new part;
 * one damaged before the copy still fails its checksum there. Bytes moved to another offset
 * do not open: the nonce is the offset's. */
static void test_v6_copy_and_offsets(void **state)
{
    (void)state;
    clear_dir();
    struct fx *f = malloc(sizeof *f);
    fx_init(f);
    char src[512], err[512] = "";
    write_part(f, 1, 6, src, sizeof src);
    struct fv_part *p;
    assert_int_equal(fv_part_open(src, &p, err, sizeof err), FV_OK);
    const size_t damaged = 4;
    flip(src, p->e[damaged].off + 3);
    struct fv_part_writer *w;
    assert_int_equal(fv_part_writer_open(dir, 2, 2, 1, &w, err, sizeof err), FV_OK);
    struct fv_buf sealed = {0}, raw = {0};
    for (size_t i = 0; i < p->n; i++) {
        int rc = fv_part_read_block(p, i, &sealed, err, sizeof err);
        assert_int_equal(rc, i == damaged ? FV_ECORRUPT : FV_OK);
        assert_int_equal(sealed.len, p->e[i].len + 12); /* nonce in front */
        assert_int_equal(fv_part_writer_copy(w, &p->e[i], p->classes[p->e[i].cls], sealed.data,
                                             sealed.len, err, sizeof err),
                         FV_OK);
    }
    char out[512];
    assert_int_equal(fv_part_writer_commit(w, 7, out, sizeof out, err, sizeof err), FV_OK);
    fv_part_writer_free(w);
    struct fv_part *q;
    assert_int_equal(fv_part_open(out, &q, err, sizeof err), FV_OK);
    assert_int_equal(q->n, p->n);
    for (size_t i = 0; i < q->n; i++) {
        assert_int_equal(q->e[i].nonce_in, 1);
        int s = subj_of(f, q->e[i].subject), c = q->e[i].cls;
        int rc = fv_part_open_block(q, i, f->key[s], &raw, err, sizeof err);
        if (i == damaged) {
            assert_int_equal(rc, FV_ECORRUPT);
            assert_non_null(strstr(err, "checksum"));
            continue;
        }
        if (rc) fail_msg("copied block %zu: %s", i, err);
        assert_memory_equal(raw.data, f->raw[s][c].data, f->raw[s][c].len);
    }
    /* Entry 0's bytes presented at entry 1's place (same subject, entry edited to match):
     * the offset's nonce differs, so authentication fails. */
    struct fv_part *m = p;
    struct fv_part_entry keep = m->e[1];
    m->e[1] = m->e[0];
    m->e[1].off = keep.off;
    m->e[1].len = m->e[0].len;
    struct fv_buf b0 = {0};
    assert_int_equal(fv_part_read_block(m, 0, &b0, err, sizeof err), FV_OK);
    int fd = open(src, O_RDWR);
    assert_int_equal(pwrite(fd, b0.data + 12, b0.len - 12, (off_t)keep.off),
                     (ssize_t)(b0.len - 12));
    close(fd);
    int s0 = subj_of(f, m->e[0].subject);
    assert_int_equal(fv_part_open_block(m, 1, f->key[s0], &raw, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "authentication"));
    m->e[1] = keep;
    fv_buf_free(&b0);
    fv_buf_free(&sealed);
    fv_buf_free(&raw);
    fv_part_unref(q);
    fv_part_unref(p);
    fx_free(f);
    free(f);
}

/* Rewrites path's index (decompressed: idx, n bytes) and the footer's fields for it. */
static void put_index(const char *path, const unsigned char *img, size_t len,
                      const unsigned char *idx, size_t n)
{
    const unsigned char *f = img + len - FV_PART_FOOTER_LEN;
    uint64_t ioff = fv_get_u64(f);
    size_t bound = ZSTD_compressBound(n);
    unsigned char *out = malloc(ioff + bound + FV_PART_FOOTER_LEN);
    assert_non_null(out);
    memcpy(out, img, ioff);
    size_t zn = ZSTD_compress(out + ioff, bound, idx, n, 1);
    assert_false(ZSTD_isError(zn));
    unsigned char *nf = out + ioff + zn;
    memcpy(nf, f, FV_PART_FOOTER_LEN);
    fv_put_u32(nf + 8, (uint32_t)zn);
    fv_put_u32(nf + 12, (uint32_t)n);
    fv_put_u32(nf + 16, fv_crc32c(0, out + ioff, zn));
    fv_put_u32(nf + 64, fv_crc32c(0, nf, 64));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    size_t total = ioff + zn + FV_PART_FOOTER_LEN;
    assert_int_equal(write(fd, out, total), (ssize_t)total);
    close(fd);
    free(out);
}

static void test_v6_index_damage(void **state)
{
    (void)state;
    clear_dir();
    struct fx *f = malloc(sizeof *f);
    fx_init(f);
    char path[512], err[512] = "";
    write_part(f, 1, 6, path, sizeof path);
    size_t len = (size_t)file_size(path);
    unsigned char *img = malloc(len);
    int fd = open(path, O_RDONLY);
    assert_int_equal(pread(fd, img, len, 0), (ssize_t)len);
    close(fd);
    const unsigned char *ft = img + len - FV_PART_FOOTER_LEN;
    uint64_t ioff = fv_get_u64(ft);
    uint32_t ilen = fv_get_u32(ft + 8), iraw = fv_get_u32(ft + 12);
    unsigned char *idx = malloc(iraw);
    assert_int_equal(ZSTD_decompress(idx, iraw, img + ioff, ilen), iraw);
    char bad[600];
    snprintf(bad, sizeof bad, "%s/part-0000000000000009-0000000000000009.fvp", dir);
    struct fv_part *p;
    put_index(bad, img, len, idx, iraw); /* unchanged: reads */
    assert_int_equal(fv_part_open(bad, &p, err, sizeof err), FV_OK);
    check_opens(f, p);
    fv_part_unref(p);
    size_t refused = 0, read = 0;
    for (size_t cut = 0; cut < iraw; cut++) { /* every cut: refused */
        put_index(bad, img, len, idx, cut);
        assert_int_equal(fv_part_open(bad, &p, err, sizeof err), FV_ECORRUPT);
        assert_non_null(strstr(err, "offset"));
    }
    for (size_t i = 0; i < iraw; i++) { /* every byte flipped: refused, or a valid part */
        idx[i] ^= 0x41;
        put_index(bad, img, len, idx, iraw);
        int rc = fv_part_open(bad, &p, err, sizeof err);
        assert_true(rc == FV_OK || rc == FV_ECORRUPT);
        if (rc == FV_OK) {
            read++;
            fv_part_unref(p);
        } else {
            refused++;
        }
        idx[i] ^= 0x41;
    }
    print_message("index of %u bytes: %zu flips refused, %zu read\n", iraw, refused, read);
    /* Most fields are plain numbers (a count, a time, a CRC checked when a block is read):
     * a flip there reads as another valid part. What matters is no misread (ASan). */
    assert_true(refused > 0 && read > 0);
    free(idx);
    free(img);
    fx_free(f);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v6_reads_as_v5),
        cmocka_unit_test(test_v6_copy_and_offsets),
        cmocka_unit_test(test_v6_index_damage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
