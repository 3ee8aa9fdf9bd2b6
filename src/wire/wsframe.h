/*
 * wsframe.h - WebSocket frames (RFC 6455 5.2), encoded and parsed; pure functions, any thread.
 *
 * Frame format: byte 0 = FIN(1) RSV(3) opcode(4); byte 1 = MASK(1) len(7); len 126 -> 16-bit
 * big-endian length follows, 127 -> 64-bit (top bit 0); then the 4-byte mask key when MASK;
 * then the payload, XORed with key[i % 4] when masked. Used by the simulator's client
 * (sim/wsclient.c) and by the server's device sessions to send several replies in one write
 * (gateway/session.c).
 */
#ifndef FV_WIRE_WSFRAME_H
#define FV_WIRE_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Opcodes (RFC 6455 5.2, on the wire). */
#define FV_WS_CONT   0x0
#define FV_WS_TEXT   0x1
#define FV_WS_BINARY 0x2
#define FV_WS_CLOSE  0x8
#define FV_WS_PING   0x9
#define FV_WS_PONG   0xA

/* A parsed frame header; the payload is p[header_len .. header_len + len). */
struct fv_ws_frame {
    int fin;
    unsigned opcode;
    int masked;
    unsigned char mask[4];
    uint64_t len;
    size_t header_len;
};

/*
 * Appends one frame to out: FIN set when fin, payload masked with mask[4] when mask is not
 * NULL (the client's case), using the 7-bit, 16-bit or 64-bit length form as RFC 6455
 * requires (the shortest). FV_OK or FV_ENOMEM.
 */
int fv_ws_frame_encode(struct fv_buf *out, unsigned opcode, int fin, const void *payload,
                       size_t len, const unsigned char *mask);

/*
 * Parses the frame at p[0..avail). FV_OK when the whole frame (header and payload) is there;
 * FV_EAGAIN when more bytes are needed; FV_EPROTO with a reason when the frame breaks RFC 6455
 * (reserved bits or opcode, fragmented or long control frame, 64-bit length with the top bit
 * set) or its payload exceeds max_payload.
 */
int fv_ws_frame_parse(const unsigned char *p, size_t avail, uint64_t max_payload,
                      struct fv_ws_frame *f, char *err, size_t errlen);

/* XORs p[0..len) with the mask, starting at mask position `offset` (masking is symmetric). */
void fv_ws_mask(unsigned char *p, size_t len, const unsigned char mask[4], size_t offset);

#endif
