/* wds.c - WebDataset shards: ustar writer, .npy arrays, keyed-hash splits (wds.h). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "data/wds.h"
#include "os/fsio.h"
#include "util/err.h"

#define BLOCK          512
#define SIZE_MAX_OCTAL 077777777777ull /* W2: 11 octal digits */

struct fv_tar {
    int fd;
    char path[1024];
    uint64_t bytes;
    EVP_MD_CTX *sha;
};

int fv_tar_open(const char *path, struct fv_tar **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_tar *t = calloc(1, sizeof *t);
    if (t == NULL) return FV_ENOMEM;
    if (snprintf(t->path, sizeof t->path, "%s", path) >= (int)sizeof t->path) {
        free(t);
        fv_seterr(err, errlen, "%s: path too long", path);
        return FV_EINVAL;
    }
    t->sha = EVP_MD_CTX_new();
    if (t->sha == NULL || EVP_DigestInit_ex(t->sha, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(t->sha);
        free(t);
        return FV_ENOMEM;
    }
    int rc = fv_os_open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644, &t->fd, err, errlen);
    if (rc != FV_OK) {
        EVP_MD_CTX_free(t->sha);
        free(t);
        return rc;
    }
    *out = t;
    return FV_OK;
}

static int put(struct fv_tar *t, const void *p, size_t len, char *err, size_t errlen)
{
    if (len == 0) return FV_OK;
    int rc = fv_os_write_all(t->fd, p, len, t->path, err, errlen);
    if (rc != FV_OK) return rc;
    if (EVP_DigestUpdate(t->sha, p, len) != 1) return FV_ENOMEM;
    t->bytes += len;
    return FV_OK;
}

int fv_tar_check_name(const char *name, char *why, size_t n)
{
    size_t len = strlen(name);
    if (len == 0 || len > FV_TAR_NAME_MAX) {
        fv_seterr(why, n, "a member name is 1 to %d bytes", FV_TAR_NAME_MAX);
        return FV_EINVAL;
    }
    if (name[0] == '/' || strstr(name, "..") != NULL || name[len - 1] == '/') {
        fv_seterr(why, n, "'%s': no leading or trailing '/', no '..'", name);
        return FV_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x21 || c > 0x7e || c == '\\') {
            fv_seterr(why, n, "member name: byte %zu is not printable ASCII (or is '\\')", i);
            return FV_EINVAL;
        }
    }
    if (len > 100) {
        /* W1: prefix '/' name, with name <= 100 and prefix <= 155: the split point is the
         * last '/' that leaves a name of at most 100 bytes and a prefix of at most 155. */
        const char *slash = NULL;
        for (const char *p = name + len - 101; p < name + len; p++)
            if (*p == '/' && p >= name) {
                slash = p;
                break;
            }
        if (slash == NULL || (size_t)(slash - name) > 155) {
            fv_seterr(why, n,
                      "'%.40s...': longer than 100 bytes and no '/' splits it as ustar "
                      "needs",
                      name);
            return FV_EINVAL;
        }
    }
    return FV_OK;
}

static void octal(char *field, size_t width, uint64_t v)
{
    /* width - 1 digits, zero-padded, then NUL */
    snprintf(field, width, "%0*llo", (int)(width - 1), (unsigned long long)v);
}

int fv_tar_add(struct fv_tar *t, const char *name, const void *data, size_t len, int64_t mtime,
               char *err, size_t errlen)
{
    char why[200];
    if (fv_tar_check_name(name, why, sizeof why) != FV_OK) {
        fv_seterr(err, errlen, "%s", why);
        return FV_EINVAL;
    }
    if ((uint64_t)len > SIZE_MAX_OCTAL) {
        fv_seterr(err, errlen, "%s: %zu bytes, more than a tar member holds", name, len);
        return FV_EINVAL;
    }
    char h[BLOCK];
    memset(h, 0, sizeof h);
    size_t nlen = strlen(name);
    if (nlen <= 100) {
        memcpy(h, name, nlen);
    } else {
        const char *slash = NULL;
        for (const char *p = name + nlen - 101; p < name + nlen; p++)
            if (*p == '/') {
                slash = p;
                break;
            }
        memcpy(h, slash + 1, nlen - (size_t)(slash - name) - 1); /* checked: <= 100 */
        memcpy(h + 345, name, (size_t)(slash - name));           /* checked: <= 155 */
    }
    octal(h + 100, 8, 0644);
    octal(h + 108, 8, 0);
    octal(h + 116, 8, 0);
    octal(h + 124, 12, len);
    octal(h + 136, 12, mtime > 0 ? (uint64_t)mtime : 0);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6); /* with its NUL */
    memcpy(h + 263, "00", 2);
    memcpy(h + 265, "root", 4);
    memcpy(h + 297, "root", 4);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < BLOCK; i++)
        sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum); /* six digits, NUL, and the space already there */
    h[155] = ' ';
    static const char zeros[BLOCK];
    int rc = put(t, h, BLOCK, err, errlen);
    if (rc == FV_OK) rc = put(t, data, len, err, errlen);
    if (rc == FV_OK && len % BLOCK) rc = put(t, zeros, BLOCK - len % BLOCK, err, errlen);
    return rc;
}

uint64_t fv_tar_bytes(const struct fv_tar *t)
{
    return t->bytes;
}

static void tar_free(struct fv_tar *t)
{
    if (t->fd >= 0) close(t->fd);
    EVP_MD_CTX_free(t->sha);
    free(t);
}

int fv_tar_close(struct fv_tar *t, char sha256_hex[65], char *err, size_t errlen)
{
    static const char zeros[2 * BLOCK];
    int rc = put(t, zeros, sizeof zeros, err, errlen);
    if (rc == FV_OK) rc = fv_os_fsync(t->fd, t->path, err, errlen);
    unsigned char md[32];
    unsigned mdlen = 0;
    if (rc == FV_OK && EVP_DigestFinal_ex(t->sha, md, &mdlen) != 1) rc = FV_ENOMEM;
    if (rc == FV_OK) {
        for (unsigned i = 0; i < 32; i++)
            snprintf(sha256_hex + 2 * i, 3, "%02x", md[i]);
        if (close(t->fd) != 0) {
            fv_seterr(err, errlen, "%s: close: %s", t->path, strerror(errno));
            rc = FV_EIO;
        }
        t->fd = -1;
    }
    tar_free(t);
    return rc;
}

void fv_tar_abort(struct fv_tar *t)
{
    if (t == NULL) return;
    char err[256];
    (void)fv_os_unlink(t->path, err, sizeof err);
    tar_free(t);
}

/* -- .npy (W4) -- */

int fv_npy_append(struct fv_buf *out, const char *dtype, const void *data, size_t rows, size_t cols)
{
    size_t esize;
    if (strcmp(dtype, "<f8") == 0 || strcmp(dtype, "<i8") == 0)
        esize = 8;
    else if (strcmp(dtype, "<f4") == 0 || strcmp(dtype, "<i4") == 0)
        esize = 4;
    else if (strcmp(dtype, "|u1") == 0)
        esize = 1;
    else
        return FV_EINVAL;
    size_t count = cols ? rows * cols : rows;
    if (cols && rows && count / cols != rows) return FV_EINVAL;
    if (count > SIZE_MAX / esize) return FV_EINVAL;
    char dict[160];
    int dl =
        cols ? snprintf(dict, sizeof dict,
                        "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }", dtype,
                        rows, cols)
             : snprintf(dict, sizeof dict,
                        "{'descr': '%s', 'fortran_order': False, 'shape': (%zu,), }", dtype, rows);
    /* magic 6 + version 2 + length 2 + dict + padding + '\n' = a multiple of 64 */
    size_t total = 10 + (size_t)dl + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)dl + pad + 1;
    size_t old = out->len;
    if (fv_buf_reserve(out, 10 + hlen + count * esize) != FV_OK) return FV_ENOMEM;
    unsigned char *p = out->data + out->len;
    memcpy(p, "\x93NUMPY\x01\x00", 8);
    fv_put_u16(p + 8, (uint16_t)hlen);
    memcpy(p + 10, dict, (size_t)dl);
    memset(p + 10 + dl, ' ', pad);
    p[10 + hlen - 1] = '\n';
    p += 10 + hlen;
    const unsigned char *src = data;
    /* host order to little-endian, element by element (the host may be either) */
    for (size_t i = 0; i < count; i++) {
        if (esize == 8) {
            uint64_t x;
            memcpy(&x, src + i * 8, 8);
            fv_put_u64(p + i * 8, x);
        } else if (esize == 4) {
            uint32_t x;
            memcpy(&x, src + i * 4, 4);
            fv_put_u32(p + i * 4, x);
        } else {
            p[i] = src[i];
        }
    }
    out->len = old + 10 + hlen + count * esize;
    return FV_OK;
}

/* -- splits (W5) -- */

int fv_split_parse(const char *spec, struct fv_split *out, size_t *n, char *why, size_t whylen)
{
    *n = 0;
    double sum = 0;
    const char *p = spec;
    if (*p == '\0') {
        fv_seterr(why, whylen, "empty split; e.g. train=0.8,val=0.1,test=0.1");
        return FV_EINVAL;
    }
    while (*p) {
        size_t col = (size_t)(p - spec) + 1;
        const char *eq = strchr(p, '=');
        const char *comma = strchr(p, ',');
        if (eq == NULL || (comma && comma < eq)) {
            fv_seterr(why, whylen, "column %zu: expected NAME=FRACTION", col);
            return FV_EINVAL;
        }
        size_t nl = (size_t)(eq - p);
        if (nl == 0 || nl >= FV_SPLIT_NAME_MAX) {
            fv_seterr(why, whylen, "column %zu: a split name is 1 to %d characters", col,
                      FV_SPLIT_NAME_MAX - 1);
            return FV_EINVAL;
        }
        for (size_t i = 0; i < nl; i++) {
            char c = p[i];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
                fv_seterr(why, whylen, "column %zu: split names use a-z, 0-9, '_' and '-'",
                          col + i);
                return FV_EINVAL;
            }
        }
        if (*n == FV_SPLIT_MAX) {
            fv_seterr(why, whylen, "column %zu: at most %d splits", col, FV_SPLIT_MAX);
            return FV_EINVAL;
        }
        struct fv_split *s = &out[*n];
        memcpy(s->name, p, nl);
        s->name[nl] = '\0';
        for (size_t i = 0; i < *n; i++)
            if (strcmp(out[i].name, s->name) == 0) {
                fv_seterr(why, whylen, "column %zu: split '%s' named twice", col, s->name);
                return FV_EINVAL;
            }
        char *end;
        errno = 0;
        s->fraction = strtod(eq + 1, &end);
        if (end == eq + 1 || errno || !(s->fraction > 0 && s->fraction <= 1) ||
            (*end != ',' && *end != '\0')) {
            fv_seterr(why, whylen, "column %zu: expected a fraction in (0, 1] for '%s'",
                      (size_t)(eq + 1 - spec) + 1, s->name);
            return FV_EINVAL;
        }
        sum += s->fraction;
        (*n)++;
        p = *end == ',' ? end + 1 : end;
        if (*end == ',' && *p == '\0') {
            fv_seterr(why, whylen, "column %zu: a split expected after ','",
                      (size_t)(p - spec) + 1);
            return FV_EINVAL;
        }
    }
    if (fabs(sum - 1.0) > 1e-6) {
        fv_seterr(why, whylen, "the split fractions sum to %g, not 1", sum);
        return FV_EINVAL;
    }
    return FV_OK;
}

size_t fv_split_pick(const unsigned char *key, size_t keylen, const char *vehicle,
                     const struct fv_split *splits, size_t n)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)vehicle, strlen(vehicle), md,
             &mdlen) == NULL)
        return 0; /* cannot happen with SHA-256; the first split is the safe answer */
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h = (h << 8) | md[i];
    /* h / 2^64 in [0, 1) against the cumulative fractions; the last split takes the rest */
    double x = (double)(h >> 11) / 9007199254740992.0; /* 53 bits: exact in a double */
    double cum = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        cum += splits[i].fraction;
        if (x < cum) return i;
    }
    return n ? n - 1 : 0;
}
