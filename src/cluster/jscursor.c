/* jscursor.c - the shard cursors file (jscursor.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/jscursor.h"
#include "os/fsio.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/err.h"

#define MAGIC    "fv-shard-cursors 1\n"
#define MAX_FILE (1u << 20)

static int corrupt(const char *path, unsigned line, const char *what, char *err, size_t errlen)
{
    fv_seterr(err, errlen, "%s line %u: %s (the storage node's shard cursors; docs/cluster.md C8)",
              path, line, what);
    return FV_ECORRUPT;
}

/* K1 on the file's text (NUL-terminated, len bytes). */
static int parse(const char *path, const char *text, size_t len, uint64_t *cursor, size_t nshards,
                 char *err, size_t errlen)
{
    if (len < sizeof MAGIC - 1 || memcmp(text, MAGIC, sizeof MAGIC - 1) != 0)
        return corrupt(path, 1, "not a shard cursors file", err, errlen);
    const char *p = text + sizeof MAGIC - 1;
    for (unsigned line = 2;; line++) {
        const char *nl = memchr(p, '\n', len - (size_t)(p - text));
        if (nl == NULL) return corrupt(path, line, "no checksum line", err, errlen);
        unsigned long long shard, seq;
        unsigned crc;
        int used = 0;
        if (sscanf(p, "crc32c %8x\n%n", &crc, &used) == 1 && p + used == nl + 1) {
            if (nl + 1 != text + len)
                return corrupt(path, line + 1, "after the checksum", err, errlen);
            if (fv_crc32c(0, text, (size_t)(p - text)) != crc)
                return corrupt(path, line, "checksum mismatch", err, errlen);
            return FV_OK;
        }
        if (sscanf(p, "%llu %llu\n%n", &shard, &seq, &used) != 2 || p + used != nl + 1 ||
            p[0] < '0' || p[0] > '9')
            return corrupt(path, line, "expected SHARD SEQ", err, errlen);
        if (shard >= nshards) return corrupt(path, line, "shard out of range", err, errlen);
        cursor[shard] = seq;
        p = nl + 1;
    }
}

int fv_jscursor_load(const char *path, uint64_t *cursor, size_t nshards, char *err, size_t errlen)
{
    memset(cursor, 0, nshards * sizeof *cursor);
    char *text = NULL;
    size_t len = 0;
    int rc = fv_os_read_file(path, MAX_FILE, &text, &len, err, errlen);
    if (rc == FV_ENOENT) return FV_OK; /* never saved: the WAL holds every cursor record */
    if (rc == FV_ELIMIT) rc = corrupt(path, 0, "too large", err, errlen);
    if (rc) return rc;
    rc = parse(path, text, len, cursor, nshards, err, errlen);
    free(text);
    if (rc) memset(cursor, 0, nshards * sizeof *cursor);
    return rc;
}

int fv_jscursor_save(const char *path, const uint64_t *cursor, size_t nshards, char *err,
                     size_t errlen)
{
    struct fv_buf b = {0};
    int rc = fv_buf_append(&b, MAGIC, sizeof MAGIC - 1);
    for (size_t i = 0; i < nshards && rc == FV_OK; i++)
        if (cursor[i]) rc = fv_buf_appendf(&b, "%zu %" PRIu64 "\n", i, cursor[i]);
    if (rc == FV_OK)
        rc = fv_buf_appendf(&b, "crc32c %08x\n", (unsigned)fv_crc32c(0, b.data, b.len));
    if (rc == FV_OK)
        rc = fv_os_write_file_atomic(path, b.data, b.len, 0600, err, errlen);
    else
        fv_seterr(err, errlen, "%s: out of memory", path);
    fv_buf_free(&b);
    return rc;
}
