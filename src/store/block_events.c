/* block_events.c - the events section of a block (block.h, versions 1 and 2). */
#include <stdlib.h>
#include <string.h>

#include "store/block_int.h"
#include "util/err.h"
#include "wire/payload.h"

#define CORRUPT(...)                                                                               \
    do {                                                                                           \
        fv_seterr(err, errlen, __VA_ARGS__);                                                       \
        rc = FV_ECORRUPT;                                                                          \
        goto out;                                                                                  \
    } while (0)

/* Largest created_at (ms) a version 2 event may rebuild: fv_payload_split_connectivity's. */
#define MAX_AT_MS (((uint64_t)1 << 52) * 1000u + 999u)

static int is_conn(const struct fv_block_event *e)
{
    return e->topic_len == FV_BLOCK_TOPIC_CONN_LEN &&
           memcmp(e->topic, FV_BLOCK_TOPIC_CONN, FV_BLOCK_TOPIC_CONN_LEN) == 0;
}

/* Appends the string column of the strings at offs[0..n-1] in strs. */
static int enc_strs(struct fv_buf *out, const struct fv_buf *strs, const size_t *offs, size_t n,
                    const unsigned char **s, uint32_t *len)
{
    for (size_t i = 0; i < n; i++) {
        s[i] = strs->data + offs[i];
        len[i] = (uint32_t)strlen((const char *)s[i]);
    }
    return fv_enc_str(out, s, len, n);
}

int fv_block_enc_events(struct fv_buf *out, const struct fv_block_in *in, unsigned char *ver)
{
    size_t n = in->nev;
    *ver = 1;
    int rc = fv_put_uvarint(out, n);
    if (rc || n == 0) return rc;
    int64_t *iv = malloc(n * sizeof *iv);
    const unsigned char **s = malloc(n * sizeof *s);
    uint32_t *len = malloc(n * sizeof *len);
    struct fv_conn_fields *cf = malloc(n * sizeof *cf);
    size_t *offs = malloc(n * sizeof *offs);
    unsigned char *form = calloc(n, 1);
    struct fv_buf strs = {0};
    size_t ncon = 0;
    if (iv == NULL || s == NULL || len == NULL || cf == NULL || offs == NULL || form == NULL) {
        rc = FV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n && rc == FV_OK; i++) {
        if (!is_conn(&in->ev[i])) continue;
        rc = fv_payload_split_connectivity(in->ev[i].payload, in->ev[i].len, &strs, &cf[ncon]);
        if (rc == FV_OK) {
            form[i] = 1;
            ncon++;
        } else if (rc == FV_EINVAL) {
            rc = FV_OK; /* kept as bytes */
        }
    }
    for (size_t i = 0; i < n; i++)
        iv[i] = in->ev[i].t;
    if (rc == FV_OK) rc = fv_enc_i64(out, iv, n);
    if (rc == FV_OK && ncon) {
        *ver = 2;
        for (size_t i = 0; i < n; i++)
            iv[i] = form[i];
        rc = fv_enc_i64(out, iv, n);
    }
    size_t nraw = 0;
    for (size_t i = 0; i < n; i++) {
        if (form[i]) continue;
        s[nraw] = (const unsigned char *)in->ev[i].topic;
        len[nraw] = in->ev[i].topic_len;
        iv[nraw++] = in->ev[i].len;
    }
    if (rc == FV_OK) rc = fv_enc_str(out, s, len, nraw);
    if (rc == FV_OK) rc = fv_enc_i64(out, iv, nraw);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        if (!form[i]) rc = fv_buf_append(out, in->ev[i].payload, in->ev[i].len);
    if (rc || ncon == 0) goto out;
    for (size_t j = 0; j < ncon; j++)
        offs[j] = cf[j].vin;
    rc = enc_strs(out, &strs, offs, ncon, s, len);
    for (size_t j = 0; j < ncon; j++)
        offs[j] = cf[j].conn_id;
    if (rc == FV_OK) rc = enc_strs(out, &strs, offs, ncon, s, len);
    for (size_t j = 0; j < ncon; j++)
        offs[j] = cf[j].netif;
    if (rc == FV_OK) rc = enc_strs(out, &strs, offs, ncon, s, len);
    for (size_t j = 0; j < ncon; j++)
        iv[j] = cf[j].status;
    if (rc == FV_OK) rc = fv_enc_i64(out, iv, ncon);
    for (size_t i = 0, j = 0; i < n; i++)
        if (form[i]) {
            iv[j] = (int64_t)(cf[j].at_ms - (uint64_t)in->ev[i].t); /* wraps: mod 2^64 */
            j++;
        }
    if (rc == FV_OK) rc = fv_enc_i64(out, iv, ncon);
out:
    free(iv);
    free(s);
    free(len);
    free(cf);
    free(offs);
    free(form);
    fv_buf_free(&strs);
    return rc;
}

/* Decodes a string column of n values, none with a NUL (the payload builder takes C strings). */
static int dec_cstrs(struct fv_rd *r, size_t n, const unsigned char **s, uint32_t *len)
{
    if (fv_dec_str(r, n, s, len)) return FV_ECORRUPT;
    for (size_t i = 0; i < n; i++)
        if (len[i] && memchr(s[i], 0, len[i])) return FV_ECORRUPT;
    return FV_OK;
}

/* Appends the NUL-terminated copy of s[0..len) to b; its offset in *off. */
static int put_cstr(struct fv_buf *b, const unsigned char *s, uint32_t len, size_t *off)
{
    *off = b->len;
    int rc = fv_buf_append(b, s, len);
    unsigned char z = 0;
    return rc ? rc : fv_buf_append(b, &z, 1);
}

int fv_block_dec_events(struct fv_rd *r, unsigned ver, struct fv_block *b, char *err, size_t errlen)
{
    uint64_t nev;
    if (fv_rd_uvarint(r, &nev) || nev > FV_BLOCK_MAX_REC) {
        fv_seterr(err, errlen, "event count");
        return FV_ECORRUPT;
    }
    if (nev == 0 && ver >= 2) {
        fv_seterr(err, errlen, "version 2 block without events");
        return FV_ECORRUPT;
    }
    if (nev == 0) return FV_OK;
    size_t n = (size_t)nev, nraw = n, ncon = 0;
    int64_t *iv = malloc(n * sizeof *iv), *form = calloc(n, sizeof *form);
    const unsigned char **s = malloc(n * sizeof *s), **s2 = malloc(3 * n * sizeof *s2);
    uint32_t *len = malloc(n * sizeof *len), *len2 = malloc(3 * n * sizeof *len2);
    size_t *at = malloc(n * sizeof *at);
    int64_t *st = malloc(n * sizeof *st);
    struct fv_buf mem = {0}, tmp = {0};
    b->ev = calloc(n, sizeof *b->ev);
    int rc = FV_OK;
    if (iv == NULL || form == NULL || s == NULL || s2 == NULL || len == NULL || len2 == NULL ||
        at == NULL || st == NULL || b->ev == NULL) {
        rc = FV_ENOMEM;
        goto out;
    }
    b->nev = n;
    if (fv_dec_i64(r, iv, n)) CORRUPT("event times");
    for (size_t i = 0; i < n; i++)
        b->ev[i].t = iv[i];
    if (ver >= 2) {
        if (fv_dec_i64(r, form, n)) CORRUPT("event forms");
        for (size_t i = 0; i < n; i++) {
            if (form[i] != 0 && form[i] != 1)
                CORRUPT("event %zu: form %lld", i, (long long)form[i]);
            ncon += (size_t)form[i];
        }
        nraw = n - ncon;
        if (ncon == 0) CORRUPT("version 2 block without connectivity events");
    }
    if (fv_dec_str(r, nraw, s, len) || fv_dec_i64(r, iv, nraw)) CORRUPT("event topics or lengths");
    for (size_t i = 0, j = 0; i < n; i++) {
        if (form[i]) continue;
        const unsigned char *p;
        if (iv[j] < 0 || iv[j] > UINT32_MAX || fv_rd_bytes(r, (size_t)iv[j], &p))
            CORRUPT("event %zu: payload past the end", i);
        b->ev[i].topic = (const char *)s[j];
        b->ev[i].topic_len = len[j];
        b->ev[i].payload = p;
        b->ev[i].len = (uint32_t)iv[j];
        j++;
    }
    if (ncon == 0) goto out;
    /* Connectivity fields: vin, connection id, network interface, status, created_at - t. */
    if (dec_cstrs(r, ncon, s2, len2) || dec_cstrs(r, ncon, s2 + ncon, len2 + ncon) ||
        dec_cstrs(r, ncon, s2 + 2 * ncon, len2 + 2 * ncon))
        CORRUPT("connectivity strings");
    if (fv_dec_i64(r, st, ncon)) CORRUPT("connectivity status");
    for (size_t j = 0; j < ncon; j++)
        if (st[j] < INT32_MIN || st[j] > INT32_MAX)
            CORRUPT("connectivity status %lld", (long long)st[j]);
    if (fv_dec_i64(r, iv, ncon)) CORRUPT("connectivity times");
    /* Every payload is rebuilt (or copied) into mem in event order, so their order in memory
     * is the order in the block, as for version 1. */
    for (size_t i = 0, j = 0; i < n && rc == FV_OK; i++) {
        at[i] = mem.len;
        if (!form[i]) {
            rc = fv_buf_append(&mem, b->ev[i].payload, b->ev[i].len);
            continue;
        }
        uint64_t ms = (uint64_t)b->ev[i].t + (uint64_t)iv[j]; /* mod 2^64, as written */
        if (ms > MAX_AT_MS) CORRUPT("event %zu: connectivity time out of range", i);
        size_t o[3];
        fv_buf_reset(&tmp);
        for (int k = 0; k < 3 && rc == FV_OK; k++)
            rc = put_cstr(&tmp, s2[k * ncon + j], len2[k * ncon + j], &o[k]);
        if (rc == FV_OK)
            rc = fv_payload_build_connectivity((const char *)tmp.data + o[0],
                                               (const char *)tmp.data + o[1], (int)st[j], ms,
                                               (const char *)tmp.data + o[2], &mem);
        if (rc == FV_OK && mem.len - at[i] > UINT32_MAX) CORRUPT("event %zu: too long", i);
        b->ev[i].topic = FV_BLOCK_TOPIC_CONN;
        b->ev[i].topic_len = FV_BLOCK_TOPIC_CONN_LEN;
        b->ev[i].len = (uint32_t)(mem.len - at[i]);
        j++;
    }
    if (rc) goto out;
    for (size_t i = 0; i < n; i++)
        b->ev[i].payload = mem.data + at[i];
    b->evmem = mem.data;
    mem = (struct fv_buf){0};
out:
    free(iv);
    free(form);
    free(s);
    free(s2);
    free(len);
    free(len2);
    free(at);
    free(st);
    fv_buf_free(&mem);
    fv_buf_free(&tmp);
    return rc;
}
