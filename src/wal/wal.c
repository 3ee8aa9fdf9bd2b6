/*
 * wal.c - write-ahead log: a file image scanned by the validity rules, and the replay and
 * recovery at open (which invalid bytes are a torn tail to cut, which are corruption); the
 * format is in wal_format.h, the record codec in record.c. The writer thread, group commit
 * and rotation are in wal_writer.c, with the invariants I1-I7 recovery relies on (I2, I4,
 * I6); the two files share the private wal_int.h.
 *
 * Threads: fv_wal_scan and fv_wal_file_no are reentrant. fv_wal_open replays on the
 * caller's thread, then starts the writer thread; the replay owns struct fv_wal until then.
 *
 * Validity rules (format 2; format 1 lacks V5; docs/formats.md "Validity rules"):
 *  V1 the file header matches: magic, a version this build reads (1 or 2), header CRC;
 *  V2 a record header checks: its CRC over the file's salt and the header matches, and
 *     its length N is at most FV_WAL_MAX_BODY;
 *  V3 the body lies within the file and its CRC matches;
 *  V4 a data record's body parts add up to exactly N, its type is 1, its device id is not
 *     empty;
 *  V5 durable offsets are consistent: a sync mark's D is its own offset; a data record's D
 *     is at most its own offset; every record's D is at least the previous record's D (and
 *     the header's end).
 *
 * Recovery: which invalid bytes are a torn tail (a crash mid-write, cut) and which are
 * corruption (an error naming the file and offset: the server refuses to start). Let X be
 * the offset of the first record that breaks V2..V5.
 *  R1 Never crash-shaped, always corruption: a length above the maximum (a torn write only
 *     zeroes bytes, which cannot raise a valid length), and a record header that checks but
 *     carries a malformed body (V4) or inconsistent offsets (V5).
 *  R2 Otherwise (a header or body CRC that fails, a record cut short by the end of the file)
 *     the tail from X on is torn iff no record after X whose header checks has D > X. Such a
 *     record proves that the bytes at X had been fsync'd before it was written (I6), so X
 *     is damage. Records after X with D <= X belong to the same unfinished batch (I2: a
 *     zero hole followed by written pages) and are cut with it. Zeros to the end of the file
 *     are a torn tail (zeros never check: the salt is chosen so).
 *  R3 Only the newest file may have a torn tail; anywhere else every invalid byte is
 *     corruption. A file that is not the newest must also end where the header of the file
 *     after it says it ended, and (format 2) with a sync mark (I4): else it was cut short.
 *  R4 A newest file no longer than a header, whose header is invalid, holds no record: a
 *     crash while it was being created (I4). Its header is rewritten atomically (temp file,
 *     fsync, rename, fsync of the directory).
 *  R5 Format 1 files carry no durable offsets. Their tail is torn only if fewer than 8 bytes
 *     are left, or the record's length is within the limit and runs past the end of the
 *     file, or the record ends exactly at the end of the file and its CRC fails, or zeros run
 *     to the end; anything else is corruption. A newest file in format 1 is replayed (and
 *     its torn tail cut), then left as it is: new records go into a new format-2 file.
 * What replay cannot tell: damage to the last batch of the newest file whose sync mark never
 * reached the disk (power lost right after its fsync, I6) looks like a torn write and is cut;
 * so does damage that leaves no intact record header after it up to the end of the newest
 * file (as a file cut short would).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/fsio.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/log.h"
#include "wal/wal.h"
#include "wal/wal_format.h"
#include "wal/wal_int.h"

void fv_wal__make_header(unsigned char h[FV_WAL_HEADER_LEN], uint32_t salt, uint64_t prev_len)
{
    memcpy(h, FV_WAL_MAGIC, FV_WAL_MAGIC_LEN);
    fv_put_u32(h + 8, FV_WAL_VERSION);
    fv_put_u32(h + 12, salt);
    fv_put_u64(h + 16, prev_len);
    fv_put_u32(h + 24, fv_crc32c(0, h, 24));
}

/* A random salt for a new file, such that an all-zero record header does not check: a
 * zeroed region is then never taken for a record (R2). */
uint32_t fv_wal__new_salt(void)
{
    static const unsigned char zero[FV_WAL_REC_HEAD];
    uint32_t salt;
    do {
        unsigned char b[4];
        if (getrandom(b, sizeof b, GRND_NONBLOCK) != (ssize_t)sizeof b)
            fv_put_u32(b,
                       (uint32_t)(fv_mono_ns() * 0x9E3779B97F4A7C15ull >> 32) ^ (uint32_t)getpid());
        salt = fv_get_u32(b);
    } while (fv_wal_header_crc(salt, zero) == 0);
    return salt;
}

/* ---- scanning and the validity rules ------------------------------------------------- */

/* What a scan learned about one file image. */
struct scan_info {
    uint32_t version, salt;
    uint64_t prev_len;  /* format 2: the previous file's final length (0: unknown) */
    uint64_t valid_end; /* end of the last valid record; 0 when the header is invalid */
    int ends_with_mark; /* the last valid record is a sync mark */
    int torn;           /* the invalid part is a torn tail (R2, R4, R5) */
};

enum { REC_OK, REC_TORN, REC_CORRUPT }; /* REC_TORN: maybe torn, R2 or R5 decides */

/* V1: the header's length, or 0 if it is invalid. */
static size_t check_header(const unsigned char *img, size_t len, struct scan_info *si)
{
    if (len < 12 || memcmp(img, FV_WAL_MAGIC, FV_WAL_MAGIC_LEN) != 0) return 0;
    si->version = fv_get_u32(img + 8);
    if (si->version == FV_WAL_VERSION && len >= FV_WAL_HEADER_LEN &&
        fv_get_u32(img + 24) == fv_crc32c(0, img, 24)) {
        si->salt = fv_get_u32(img + 12);
        si->prev_len = fv_get_u64(img + 16);
        return FV_WAL_HEADER_LEN;
    }
    if (si->version == FV_WAL_V1 && len >= FV_WAL_V1_HEADER_LEN &&
        fv_get_u32(img + 12) == fv_crc32c(0, img, 12))
        return FV_WAL_V1_HEADER_LEN;
    return 0;
}

/* V2, V3, V5 for the format-2 record at `at`; min_d is the previous record's D. */
static int check_rec2(const unsigned char *img, size_t len, size_t at, uint32_t salt,
                      uint64_t min_d, uint32_t *n, uint64_t *d, const char **why)
{
    const unsigned char *h = img + at;
    if (len - at < FV_WAL_REC_HEAD) {
        *why = "record header cut short by the end of the file";
        return REC_TORN;
    }
    *n = fv_get_u32(h);
    *d = fv_get_u64(h + 8);
    if (*n > FV_WAL_MAX_BODY) {
        *why = "record length above the maximum";
        return REC_CORRUPT;
    }
    if (fv_get_u32(h + 16) != fv_wal_header_crc(salt, h)) {
        *why = "record header checksum mismatch";
        return REC_TORN;
    }
    if (*n == 0 ? *d != at : *d < min_d || *d > at) {
        *why = "record header checks but its durable offset is inconsistent";
        return REC_CORRUPT;
    }
    if (*n > len - at - FV_WAL_REC_HEAD) {
        *why = "record cut short by the end of the file";
        return REC_TORN;
    }
    if (fv_get_u32(h + 4) != fv_crc32c(0, h + FV_WAL_REC_HEAD, *n)) {
        *why = "record checksum mismatch";
        return REC_TORN;
    }
    return REC_OK;
}

/* V2, V3 and R5 for the format-1 record at `at`. */
static int check_rec1(const unsigned char *img, size_t len, size_t at, uint32_t *n,
                      const char **why)
{
    if (len - at < FV_WAL_V1_REC_HEAD) {
        *why = "record header cut short by the end of the file";
        return REC_TORN;
    }
    *n = fv_get_u32(img + at);
    size_t room = len - at - FV_WAL_V1_REC_HEAD;
    if (*n == 0 || *n > FV_WAL_MAX_BODY) {
        *why = *n ? "record length above the maximum" : "record length 0";
        return REC_CORRUPT;
    }
    if (*n > room) {
        *why = "record cut short by the end of the file";
        return REC_TORN;
    }
    if (fv_get_u32(img + at + 4) != fv_crc32c(0, img + at + FV_WAL_V1_REC_HEAD, *n)) {
        *why = *n == room ? "last record's checksum mismatch"
                          : "record checksum mismatch, with more data after it";
        return *n == room ? REC_TORN : REC_CORRUPT;
    }
    return REC_OK;
}

/* R2: the offset of a record after x whose header checks and says that x was durable when
 * it was written (D > x), or 0. */
static size_t find_later_durable(const unsigned char *img, size_t len, size_t x, uint32_t salt)
{
    for (size_t r = x + 1; r + FV_WAL_REC_HEAD <= len; r++) {
        const unsigned char *h = img + r;
        uint64_t d = fv_get_u64(h + 8);
        uint32_t n = fv_get_u32(h);
        if (d <= x || d > r || (n == 0 && d != r) || n > FV_WAL_MAX_BODY) continue;
        if (fv_get_u32(h + 16) == fv_wal_header_crc(salt, h)) return r;
    }
    return 0;
}

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* Classifies the invalid bytes from x on (R1, R2, R5) and describes them in err. */
static int bad_tail(struct scan_info *si, const unsigned char *img, size_t len, const char *name,
                    size_t x, int state, const char *why, char *err, size_t errlen)
{
    size_t later = 0;
    if (all_zero(img + x, len - x))
        si->torn = 1;
    else if (state == REC_TORN && si->version == FV_WAL_VERSION)
        si->torn = (later = find_later_durable(img, len, x, si->salt)) == 0;
    else
        si->torn = state == REC_TORN;
    if (later)
        fv_seterr(err, errlen,
                  "%s: offset %zu: %s, yet the record at offset %zu was written after offset "
                  "%zu was fsync'd: damage, not a torn write",
                  name, x, why, later, x);
    else
        fv_seterr(err, errlen, "%s: offset %zu: %s", name, x, why);
    return FV_ECORRUPT;
}

static int scan_image(const unsigned char *img, size_t len, const char *name, fv_wal_replay_fn fn,
                      void *arg, struct scan_info *si, char *err, size_t errlen)
{
    memset(si, 0, sizeof *si);
    size_t at = check_header(img, len, si);
    if (at == 0) {
        if (len >= 12 && memcmp(img, FV_WAL_MAGIC, FV_WAL_MAGIC_LEN) == 0 &&
            si->version != FV_WAL_VERSION && si->version != FV_WAL_V1)
            fv_seterr(err, errlen, "%s: offset 8: WAL format version %u, this build reads 1 and %u",
                      name, si->version, FV_WAL_VERSION);
        else
            fv_seterr(err, errlen, "%s: offset 0: not a fleetvault WAL file (bad header)", name);
        si->torn = len <= FV_WAL_HEADER_LEN; /* R4 */
        return FV_ECORRUPT;
    }
    int v2 = si->version == FV_WAL_VERSION;
    size_t head = v2 ? FV_WAL_REC_HEAD : FV_WAL_V1_REC_HEAD;
    uint64_t min_d = at;
    si->valid_end = at;
    while (at < len) {
        uint32_t n = 0;
        uint64_t d = 0;
        const char *why = "";
        int state = v2 ? check_rec2(img, len, at, si->salt, min_d, &n, &d, &why)
                       : check_rec1(img, len, at, &n, &why);
        struct fv_wal_record r;
        if (state == REC_OK && n && fv_wal_decode_body(img + at + head, n, &r) != FV_OK) {
            state = REC_CORRUPT;
            why = "record checks but its body is malformed";
        }
        if (state != REC_OK) return bad_tail(si, img, len, name, at, state, why, err, errlen);
        if (n && fn) {
            int rc = fn(arg, &r, name, at);
            if (rc) {
                fv_seterr(err, errlen, "%s: offset %zu: replay stopped: %s", name, at,
                          fv_strerror(rc));
                return rc;
            }
        }
        min_d = d;
        si->ends_with_mark = v2 && n == 0;
        at += head + n;
        si->valid_end = at;
    }
    return FV_OK;
}

int fv_wal_scan(const unsigned char *img, size_t len, const char *name, fv_wal_replay_fn fn,
                void *arg, uint64_t *valid_end, int *torn, char *err, size_t errlen)
{
    struct scan_info si;
    int rc = scan_image(img, len, name, fn, arg, &si, err, errlen);
    *valid_end = si.valid_end;
    *torn = rc == FV_ECORRUPT && si.torn;
    return rc;
}

/* ---- files --------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists wal-*.log file numbers in ascending order. */
int fv_wal__list_files(const char *dir, uint64_t **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        fv_seterr(err, errlen, "opendir %s: %s", dir, strerror(errno));
        return FV_EIO;
    }
    size_t cap = 0;
    struct dirent *e;
    int rc = FV_OK;
    while ((e = readdir(d)) != NULL) {
        unsigned long long no;
        char tail[8];
        if (sscanf(e->d_name, "wal-%16llx.%4s", &no, tail) != 2 || strcmp(tail, "log") != 0 ||
            strlen(e->d_name) != 24)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *m = realloc(*out, cap * sizeof **out);
            if (m == NULL) {
                rc = FV_ENOMEM;
                break;
            }
            *out = m;
        }
        (*out)[(*n)++] = no;
    }
    closedir(d);
    if (rc == FV_OK && *n) qsort(*out, *n, sizeof **out, cmp_u64);
    return rc;
}

void fv_wal__file_path(char *buf, size_t len, const char *dir, uint64_t no)
{
    snprintf(buf, len, "%s/wal-%016llx.log", dir, (unsigned long long)no);
}

uint64_t fv_wal_file_no(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    unsigned long long no;
    if (strlen(base) != 24 || sscanf(base, "wal-%16llx.log", &no) != 1) return 0;
    return no;
}

/* ---- replay and recovery ----------------------------------------------------------------- */

/* R2, R4, R5: cuts the torn tail of the newest file (or only reports it, read-only). A torn
 * header is rewritten atomically, which replaces *fd. */
static int cut_torn(struct fv_wal *w, int *fd, const char *path, uint64_t len, struct scan_info *si,
                    const char *serr, char *err, size_t errlen)
{
    uint64_t cut = len - si->valid_end;
    if (w->opts.read_only) {
        fv_warn("wal: %s; the %llu bytes from offset %llu are a torn tail (not acked)", serr,
                (unsigned long long)cut, (unsigned long long)si->valid_end);
    } else if (si->valid_end == 0) {
        unsigned char h[FV_WAL_HEADER_LEN];
        si->salt = fv_wal__new_salt();
        fv_wal__make_header(h, si->salt, 0);
        close(*fd);
        *fd = -1;
        int rc = fv_os_write_file_atomic(path, h, sizeof h, 0600, err, errlen);
        if (rc) return rc;
        if (fv_os_open(path, O_RDWR, 0, fd, err, errlen)) return FV_EIO;
        si->version = FV_WAL_VERSION;
        si->valid_end = FV_WAL_HEADER_LEN;
        si->ends_with_mark = 0;
        fv_warn("wal: %s; it holds no record (a crash while it was created): header rewritten",
                serr);
    } else {
        int rc = fv_os_ftruncate(*fd, (off_t)si->valid_end, path, err, errlen);
        if (rc == FV_OK) rc = fv_os_fsync(*fd, path, err, errlen);
        if (rc) return rc;
        fv_warn("wal: %s; cut the torn tail at offset %llu (%llu bytes of a batch that was "
                "never acknowledged)",
                serr, (unsigned long long)si->valid_end, (unsigned long long)cut);
    }
    w->st.torn_bytes_cut += cut;
    return FV_OK;
}

/* Keeps appending to the newest file: first makes what replay read durable, so that the
 * durable offsets of the next batch are true (I6), and its directory entry too (a crash
 * may have come between its creation and the directory fsync). */
static int continue_file(struct fv_wal *w, int fd, const char *path, uint64_t no,
                         const struct scan_info *si, char *err, size_t errlen)
{
    int rc = fv_os_fsync(fd, path, err, errlen);
    if (rc == FV_OK) rc = fv_os_fsync_dir(w->dir, err, errlen);
    if (rc) return rc;
    int fl = fcntl(fd, F_GETFL);
    if (lseek(fd, (off_t)si->valid_end, SEEK_SET) < 0 || fl < 0 ||
        fcntl(fd, F_SETFL, fl | O_APPEND) < 0) {
        fv_seterr(err, errlen, "seek %s: %s", path, strerror(errno));
        return FV_EIO;
    }
    fv_wal__use_file(w, fd, path, si->salt, si->valid_end, si->ends_with_mark);
    w->cur_file_no = no;
    return FV_OK;
}

/* The length the header of file no says its predecessor ended at (0: unknown). */
static uint64_t prev_len_of(struct fv_wal *w, uint64_t no)
{
    char path[PATH_MAX];
    unsigned char h[FV_WAL_HEADER_LEN];
    struct scan_info si = {0};
    fv_wal__file_path(path, sizeof path, w->dir, no);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = pread(fd, h, sizeof h, 0);
    close(fd);
    if (n != (ssize_t)sizeof h || check_header(h, sizeof h, &si) != FV_WAL_HEADER_LEN) return 0;
    return si.prev_len;
}

/* Replays file no; `last` if it is the newest, else expect_len is the length the next
 * file's header gives it (0: unknown). */
static int replay_file(struct fv_wal *w, uint64_t no, int last, uint64_t expect_len,
                       fv_wal_replay_fn fn, void *arg, char *err, size_t errlen)
{
    char path[PATH_MAX];
    fv_wal__file_path(path, sizeof path, w->dir, no);
    int fd;
    if (fv_os_open(path, w->opts.read_only ? O_RDONLY : O_RDWR, 0, &fd, err, errlen)) return FV_EIO;
    int rc = FV_EIO;
    struct stat st;
    unsigned char *img = NULL;
    size_t len = 0;
    if (fstat(fd, &st) != 0) {
        fv_seterr(err, errlen, "stat %s: %s", path, strerror(errno));
        goto out;
    }
    len = (size_t)st.st_size;
    if (len) {
        img = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (img == MAP_FAILED) {
            img = NULL;
            fv_seterr(err, errlen, "mmap %s: %s", path, strerror(errno));
            goto out;
        }
        madvise(img, len, MADV_SEQUENTIAL);
    }
    struct scan_info si;
    char serr[512] = "";
    rc = scan_image(img ? img : (const unsigned char *)"", len, path, fn, arg, &si, serr,
                    sizeof serr);
    if (img) munmap(img, len);
    if (rc == FV_OK && !last && si.version == FV_WAL_VERSION && !si.ends_with_mark &&
        si.valid_end > FV_WAL_HEADER_LEN) {
        fv_seterr(serr, sizeof serr,
                  "%s: offset %llu: the file ends without a sync mark though a newer file "
                  "follows it: it was cut short",
                  path, (unsigned long long)si.valid_end);
        rc = FV_ECORRUPT;
    } else if (rc == FV_OK && expect_len && expect_len != len) {
        fv_seterr(serr, sizeof serr,
                  "%s: offset %llu: the file ends here, but the next file's header says it "
                  "ended at offset %llu: cut short or overwritten",
                  path, (unsigned long long)len, (unsigned long long)expect_len);
        rc = FV_ECORRUPT;
    }
    if (rc == FV_ECORRUPT && last && si.torn) {
        rc = cut_torn(w, &fd, path, len, &si, serr, err, errlen);
        if (rc) goto out;
    } else if (rc != FV_OK) {
        fv_seterr(err, errlen, "%s", serr);
        goto out;
    }
    w->st.files++;
    w->st.bytes_on_disk += si.valid_end;
    w->replayed_len = si.valid_end;
    if (last && !w->opts.read_only && si.version == FV_WAL_VERSION) {
        rc = continue_file(w, fd, path, no, &si, err, errlen);
        if (rc == FV_OK) return FV_OK;
    }
out:
    if (fd >= 0) close(fd);
    return rc;
}

/* ---- open ---------------------------------------------------------------------------- */

int fv_wal_open(const char *dir, const struct fv_wal_opts *opts, fv_wal_replay_fn replay, void *arg,
                struct fv_wal **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_wal *w = calloc(1, sizeof *w);
    if (w == NULL) return FV_ENOMEM;
    w->fd = -1;
    if (opts) w->opts = *opts;
    if (w->opts.segment_bytes == 0) w->opts.segment_bytes = 64ull << 20;
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    uint64_t *files = NULL;
    size_t nfiles = 0;
    int rc;
    if (!w->opts.read_only) {
        rc = fv_os_mkdirs(dir, 0700, err, errlen);
        if (rc) goto fail;
    }
    rc = fv_wal__list_files(dir, &files, &nfiles, err, errlen);
    if (rc) goto fail;
    for (size_t i = 0; i < nfiles; i++) {
        int last = i + 1 == nfiles;
        uint64_t expect = !last && files[i + 1] == files[i] + 1 ? prev_len_of(w, files[i + 1]) : 0;
        rc = replay_file(w, files[i], last, expect, replay, arg, err, errlen);
        if (rc) goto fail;
    }
    if (w->opts.read_only) {
        free(files);
        *out = w;
        return FV_OK;
    }
    if (w->fd < 0) {
        /* No file yet, or the newest is in format 1 (R5): start a new one. */
        rc = fv_wal__create_file(w, nfiles ? files[nfiles - 1] + 1 : 1, err, errlen);
        if (rc) goto fail;
    }
    if (pthread_create(&w->thread, NULL, fv_wal__writer_main, w) != 0) {
        fv_seterr(err, errlen, "cannot start the WAL writer thread");
        rc = FV_ENOMEM;
        goto fail;
    }
    w->thread_started = 1;
    free(files);
    *out = w;
    return FV_OK;
fail:
    free(files);
    if (w->fd >= 0) close(w->fd);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    return rc;
}
