/*
 * record.c - the WAL record: its body codec and its framing (record header), the format in
 * wal_format.h. Pure functions over caller-owned buffers; thread-safe.
 */
#include <string.h>

#include "util/buf.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

static size_t body_len(const struct fv_wal_record *r)
{
    return 2 + 8 + 1 + (size_t)r->device_id_len + 1 + r->client_type_len + 1 + r->topic_len + 2 +
           r->txid_len + 4 + (size_t)r->payload_len;
}

int fv_wal_encode_body(const struct fv_wal_record *r, unsigned char *out, size_t cap, size_t *len)
{
    size_t n = body_len(r);
    if (n > FV_WAL_MAX_BODY) return FV_ELIMIT;
    if (n > cap) return FV_EINVAL;
    unsigned char *p = out;
    *p++ = r->type;
    *p++ = r->flags;
    fv_put_u64(p, r->received_ms);
    p += 8;
    *p++ = r->device_id_len;
    /* An absent field may be NULL with length 0: memcpy takes no NULL. */
    if (r->device_id_len) memcpy(p, r->device_id, r->device_id_len);
    p += r->device_id_len;
    *p++ = r->client_type_len;
    if (r->client_type_len) memcpy(p, r->client_type, r->client_type_len);
    p += r->client_type_len;
    *p++ = r->topic_len;
    if (r->topic_len) memcpy(p, r->topic, r->topic_len);
    p += r->topic_len;
    fv_put_u16(p, r->txid_len);
    p += 2;
    if (r->txid_len) memcpy(p, r->txid, r->txid_len);
    p += r->txid_len;
    fv_put_u32(p, r->payload_len);
    p += 4;
    if (r->payload_len) memcpy(p, r->payload, r->payload_len);
    *len = n;
    return FV_OK;
}

int fv_wal_decode_body(const unsigned char *p, size_t n, struct fv_wal_record *r)
{
    memset(r, 0, sizeof *r);
    size_t at = 0;
#define NEED(k)                                                                                    \
    do {                                                                                           \
        if (n - at < (size_t)(k)) return FV_ECORRUPT;                                              \
    } while (0)
    NEED(11);
    r->type = p[0];
    r->flags = p[1];
    r->received_ms = fv_get_u64(p + 2);
    at = 10;
    r->device_id_len = p[at++];
    NEED(r->device_id_len + 1);
    r->device_id = (const char *)p + at;
    at += r->device_id_len;
    r->client_type_len = p[at++];
    NEED(r->client_type_len + 1);
    r->client_type = (const char *)p + at;
    at += r->client_type_len;
    r->topic_len = p[at++];
    NEED(r->topic_len + 2);
    r->topic = (const char *)p + at;
    at += r->topic_len;
    r->txid_len = fv_get_u16(p + at);
    at += 2;
    NEED((size_t)r->txid_len + 4);
    r->txid = p + at;
    at += r->txid_len;
    r->payload_len = fv_get_u32(p + at);
    at += 4;
    NEED(r->payload_len);
    r->payload = p + at;
    at += r->payload_len;
#undef NEED
    if (at != n || r->type != FV_WAL_REC_DATA || r->device_id_len == 0) return FV_ECORRUPT;
    return FV_OK;
}

int fv_wal_record_aad(const struct fv_wal_record *rec, struct fv_buf *out)
{
    struct fv_wal_record r = *rec;
    r.payload = NULL;
    r.payload_len = 0;
    size_t n;
    int rc = fv_buf_reserve(out, body_len(&r));
    if (rc) return rc;
    rc = fv_wal_encode_body(&r, out->data + out->len, out->cap - out->len, &n);
    if (rc == FV_OK) out->len += n;
    return rc;
}

int fv_wal_frame(const struct fv_wal_record *rec, struct fv_buf *out)
{
    size_t n = body_len(rec);
    if (n > FV_WAL_MAX_BODY) return FV_ELIMIT;
    int rc = fv_buf_reserve(out, FV_WAL_REC_HEAD + n);
    if (rc) return rc;
    unsigned char *p = out->data + out->len;
    rc = fv_wal_encode_body(rec, p + FV_WAL_REC_HEAD, n, &n);
    if (rc) return rc;
    memset(p, 0, FV_WAL_REC_HEAD);
    fv_put_u32(p, (uint32_t)n);
    fv_put_u32(p + 4, fv_crc32c(0, p + FV_WAL_REC_HEAD, n));
    out->len += FV_WAL_REC_HEAD + n;
    return FV_OK;
}

uint32_t fv_wal_header_crc(uint32_t salt, const unsigned char *h)
{
    unsigned char s[4];
    fv_put_u32(s, salt);
    return fv_crc32c(fv_crc32c(0, s, sizeof s), h, 16);
}

void fv_wal_finish_batch(unsigned char *p, size_t len, uint32_t salt, uint64_t durable)
{
    for (size_t at = 0; at + FV_WAL_REC_HEAD <= len; at += FV_WAL_REC_HEAD + fv_get_u32(p + at)) {
        fv_put_u64(p + at + 8, durable);
        fv_put_u32(p + at + 16, fv_wal_header_crc(salt, p + at));
    }
}
