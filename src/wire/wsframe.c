/*
 * wsframe.c - see wsframe.h.
 */
#include <string.h>

#include "util/err.h"
#include "wire/wsframe.h"

int fv_ws_frame_encode(struct fv_buf *out, unsigned opcode, int fin, const void *payload,
                       size_t len, const unsigned char *mask)
{
    unsigned char hdr[14];
    size_t n = 0;
    unsigned char maskbit = mask ? 0x80 : 0;
    hdr[n++] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126) {
        hdr[n++] = (unsigned char)(maskbit | len);
    } else if (len <= 0xffff) {
        hdr[n++] = (unsigned char)(maskbit | 126);
        hdr[n++] = (unsigned char)(len >> 8);
        hdr[n++] = (unsigned char)len;
    } else {
        hdr[n++] = (unsigned char)(maskbit | 127);
        for (int i = 7; i >= 0; i--)
            hdr[n++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    if (mask) {
        memcpy(hdr + n, mask, 4);
        n += 4;
    }
    int rc = fv_buf_reserve(out, n + len);
    if (rc) return rc;
    memcpy(out->data + out->len, hdr, n);
    out->len += n;
    if (len) {
        memcpy(out->data + out->len, payload, len);
        if (mask) fv_ws_mask(out->data + out->len, len, mask, 0);
        out->len += len;
    }
    return FV_OK;
}

int fv_ws_frame_parse(const unsigned char *p, size_t avail, uint64_t max_payload,
                      struct fv_ws_frame *f, char *err, size_t errlen)
{
    if (avail < 2) return FV_EAGAIN;
    memset(f, 0, sizeof *f);
    if (p[0] & 0x70) {
        fv_seterr(err, errlen, "WebSocket frame with reserved bits set (0x%02x)", p[0]);
        return FV_EPROTO;
    }
    f->fin = (p[0] & 0x80) != 0;
    f->opcode = p[0] & 0x0f;
    if (!(f->opcode <= FV_WS_BINARY || (f->opcode >= FV_WS_CLOSE && f->opcode <= FV_WS_PONG))) {
        fv_seterr(err, errlen, "WebSocket frame with reserved opcode 0x%x", f->opcode);
        return FV_EPROTO;
    }
    f->masked = (p[1] & 0x80) != 0;
    uint64_t len = p[1] & 0x7f;
    size_t hl = 2;
    if (len == 126) {
        if (avail < 4) return FV_EAGAIN;
        len = ((uint64_t)p[2] << 8) | p[3];
        hl = 4;
    } else if (len == 127) {
        if (avail < 10) return FV_EAGAIN;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | p[2 + i];
        if (len >> 63) {
            fv_seterr(err, errlen, "WebSocket frame length has its top bit set");
            return FV_EPROTO;
        }
        hl = 10;
    }
    if (f->opcode >= FV_WS_CLOSE) {
        if (!f->fin) {
            fv_seterr(err, errlen, "fragmented WebSocket control frame");
            return FV_EPROTO;
        }
        if (len > 125) {
            fv_seterr(err, errlen, "WebSocket control frame of %llu bytes (max 125)",
                      (unsigned long long)len);
            return FV_EPROTO;
        }
    }
    if (len > max_payload) {
        fv_seterr(err, errlen, "WebSocket frame of %llu bytes exceeds the %llu-byte limit",
                  (unsigned long long)len, (unsigned long long)max_payload);
        return FV_EPROTO;
    }
    if (f->masked) {
        if (avail < hl + 4) return FV_EAGAIN;
        memcpy(f->mask, p + hl, 4);
        hl += 4;
    }
    if (avail - hl < len) return FV_EAGAIN;
    f->len = len;
    f->header_len = hl;
    return FV_OK;
}

void fv_ws_mask(unsigned char *p, size_t len, const unsigned char mask[4], size_t offset)
{
    for (size_t i = 0; i < len; i++)
        p[i] ^= mask[(i + offset) & 3];
}
