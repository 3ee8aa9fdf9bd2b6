/*
 * audit_recover.c - the audit log's newest file recovered at open (audit_int.h; rules A9 and
 * A17 in audit.c): its entries checked as they chain (a whole line that is wrong is
 * corruption, never cut), its torn last line and the zeros written ahead cut, a newest file
 * left without an entry by a crash while it was created removed.
 *
 * Threads: reentrant (no shared state); the writer calls it once, at open.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/fsio.h"
#include "privacy/audit.h"
#include "privacy/audit_int.h"
#include "util/err.h"

struct recover {
    const char *name;
    uint64_t seq, ts, last_cp, lines;
    char hash[FV_AUDIT_HASH_HEX + 1];
    uint64_t good_end; /* offset past the last complete line */
    int torn;
    char *err;
    size_t errlen;
};

static int recover_line(void *arg, const char *line, size_t len, uint64_t lineno, int term,
                        uint64_t end)
{
    struct recover *r = arg;
    struct fv_audit_entry e;
    char why[256];
    if (!term) { /* A9: a crash mid-write; cut below */
        r->torn = 1;
        return 0;
    }
    if (fv_audit_parse_line(line, len, &e, why, sizeof why)) {
        fv_seterr(r->err, r->errlen, "%s:%" PRIu64 ": %s; run 'fleetvault audit verify'", r->name,
                  lineno, why);
        return FV_ECORRUPT;
    }
    const char *bad = NULL;
    if (lineno == 1 && (strcmp(e.kind, "genesis") != 0 || e.seq != fv_audit__name_seq(r->name)))
        bad = "the first entry is not the genesis the file name announces";
    else if (lineno > 1 && strcmp(e.kind, "genesis") == 0)
        bad = "genesis entry inside the file";
    else if (lineno > 1 && e.seq != r->seq + 1)
        bad = "seq does not follow the previous entry's";
    else if (lineno > 1 && strcmp(e.prev, r->hash) != 0)
        bad = "prev does not match the previous entry's hash";
    else if (lineno > 1 && e.ts < r->ts)
        bad = "ts goes backwards";
    if (bad) {
        fv_seterr(r->err, r->errlen, "%s:%" PRIu64 ": %s; run 'fleetvault audit verify'", r->name,
                  lineno, bad);
        return FV_ECORRUPT;
    }
    if (lineno == 1) r->last_cp = e.last_checkpoint;
    if (strcmp(e.kind, "checkpoint") == 0) r->last_cp = e.seq;
    r->seq = e.seq;
    r->ts = e.ts;
    memcpy(r->hash, e.hash, sizeof r->hash);
    r->good_end = end;
    r->lines = lineno;
    return 0;
}

int fv_audit__recover_newest(const char *dir, struct fv_audit__flist *fl,
                             struct fv_audit__found *out, char *err, size_t errlen)
{
    while (fl->n > 0) {
        const char *name = fl->names[fl->n - 1];
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        struct recover r = {.name = name, .err = err, .errlen = errlen};
        int rc = fv_audit__each_line(path, recover_line, &r, err, errlen);
        if (rc) return rc;
        int fd;
        if (fv_os_open(path, O_RDWR, 0, &fd, err, errlen) != FV_OK) return FV_EIO;
        struct stat st;
        if (fstat(fd, &st) != 0) {
            fv_seterr(err, errlen, "stat %s: %s", path, strerror(errno));
            close(fd);
            return FV_EIO;
        }
        if ((uint64_t)st.st_size != r.good_end) {
            rc = fv_os_ftruncate(fd, (off_t)r.good_end, path, err, errlen);
            if (rc) {
                close(fd);
                return rc;
            }
            rc = fv_os_fsync(fd, path, err, errlen);
            if (rc) {
                close(fd);
                return rc;
            }
        }
        if (r.lines == 0) { /* created, but its genesis never became durable */
            close(fd);
            rc = fv_os_unlink(path, err, errlen);
            if (rc) return FV_EIO;
            rc = fv_os_fsync_dir(dir, err, errlen);
            if (rc) return rc;
            fl->n--;
            continue;
        }
        *out = (struct fv_audit__found){.fd = fd,
                                        .size = r.good_end,
                                        .lines = r.lines,
                                        .seq = r.seq,
                                        .ts = r.ts,
                                        .last_cp = r.last_cp};
        memcpy(out->name, name, FV_AUDIT__NAME_LEN + 1);
        memcpy(out->hash, r.hash, sizeof out->hash);
        return FV_OK;
    }
    return FV_ENOENT;
}
