/*
 * filesend.h - answering with a file, whole or a byte range of it (RFC 9110 Range), streamed
 * from disk in pieces so that a shard of gigabytes never sits in memory.
 *
 * Rules:
 *  F1 one range per request: "bytes=A-B", "bytes=A-" or "bytes=-N" (the last N bytes); B past
 *     the end is cut to the end. A header that is not of these forms, or asks for several
 *     ranges, is ignored (the whole file, 200), as RFC 9110 allows. A range that starts at or
 *     past the end (or "bytes=-0") is unsatisfiable: 416 with Content-Range "bytes * /SIZE".
 *  F2 a 200 or 206 carries Content-Length, Accept-Ranges: bytes, and for a 206
 *     Content-Range "bytes A-B/SIZE"; the body is read with pread in pieces of
 *     FV_FILESEND_PIECE bytes as the socket takes them.
 *  F3 the file is opened once, when the answer is made (fstat gives SIZE), and read from that
 *     descriptor: a file renamed or removed meanwhile is still served whole and unchanged.
 *
 * Threads: the API thread (the producer runs there, one piece per writable socket).
 */
#ifndef FV_API_FILESEND_H
#define FV_API_FILESEND_H

#include <stdint.h>

#include "api/api.h"

#define FV_FILESEND_PIECE (256u << 10)

/* F1: 206 with [*start, *end] (inclusive), 200 (no usable range), or 416. */
int fv_range_parse(const char *header, uint64_t size, uint64_t *start, uint64_t *end);

/* F2, F3: answers out with path (status 200, 206 or 416; 404 when it cannot be opened).
 * content_type: e.g. "application/x-tar". Returns the status given. */
int fv_api_send_file(struct fv_http_response *out, const char *path, const char *range,
                     const char *content_type);

#endif
