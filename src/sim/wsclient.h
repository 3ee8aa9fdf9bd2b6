/*
 * wsclient.h - a minimal WebSocket (RFC 6455) client over TLS with non-blocking sockets,
 * written for an event loop that drives thousands of connections from one thread.
 *
 * A connection walks CLOSED -> CONNECTING (TCP) -> TLS (handshake) -> UPGRADE (HTTP/1.1
 * Upgrade sent, waiting for 101) -> OPEN -> [CLOSING] -> CLOSED. The caller registers
 * fv_sim_ws_fd() with its poller for fv_sim_ws_events() and calls fv_sim_ws_io() whenever
 * the descriptor is ready (spurious calls are harmless). A negative return from
 * fv_sim_ws_connect / fv_sim_ws_io means the connection is dead: its reason is in err and
 * the caller must call fv_sim_ws_close() before reusing the object.
 *
 * Frames sent by the client are masked (RFC 6455 5.3) with a per-connection random stream;
 * server frames must be unmasked; control frames are answered (ping -> pong, close ->
 * close); fragmented messages are reassembled; messages above FV_SIM_WS_MAX_MSG fail the
 * connection. The frame codec and the accept-key computation are exported for tests.
 *
 * Thread-safety: a connection belongs to one thread. The SSL_CTX may be shared read-only.
 */
#ifndef FV_SIM_WSCLIENT_H
#define FV_SIM_WSCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "util/buf.h"
#include "wire/wsframe.h"

/* Largest message accepted from the server: the protocol's 1,000,000-byte limit plus room. */
#define FV_SIM_WS_MAX_MSG (1u << 20)

enum fv_sim_ws_state {
    FV_SIM_WS_CLOSED = 0,
    FV_SIM_WS_CONNECTING,
    FV_SIM_WS_TLS,
    FV_SIM_WS_UPGRADE,
    FV_SIM_WS_OPEN,
    FV_SIM_WS_CLOSING
};

/* The frame codec is wire/wsframe.h (shared with the server, which batches replies). */

/* Sec-WebSocket-Accept for key: base64(SHA-1(key + GUID)); out gets 28 chars + NUL. */
int fv_sim_ws_accept_key(const char *key, char out[29]);

/* ---- connections -------------------------------------------------------------------------- */

/*
 * Makes the client SSL_CTX shared by all connections: TLS 1.2+, server verified against
 * ca_file and, for host, its DNS name or IP address; modes RELEASE_BUFFERS (small idle
 * connections), ENABLE_PARTIAL_WRITE and ACCEPT_MOVING_WRITE_BUFFER. Caller frees.
 */
int fv_sim_ws_ctx_new(const char *ca_file, const char *host, SSL_CTX **out, char *err,
                      size_t errlen);

struct fv_sim_ws;

/* Allocates a CLOSED connection object. FV_OK or FV_ENOMEM. */
int fv_sim_ws_new(struct fv_sim_ws **out);
/* Closes (if needed) and frees. */
void fv_sim_ws_free(struct fv_sim_ws *ws);

/* Where to connect and what to say in the upgrade request. Strings are borrowed until
 * fv_sim_ws_connect returns (they are copied into the request). */
struct fv_sim_ws_target {
    const struct sockaddr *addr;
    socklen_t addrlen;
    const char *host_header; /* "host:port" */
    const char *sni;         /* server name for SNI, or NULL (IP literal) */
    const char *path;        /* "/" */
    const char *headers;     /* extra request headers, each ending in "\r\n", or NULL */
};

/*
 * Starts a non-blocking connection presenting (cert, key) (reference counts are taken).
 * The object must be CLOSED. On FV_OK the state is CONNECTING and fv_sim_ws_fd() is valid.
 */
int fv_sim_ws_connect(struct fv_sim_ws *ws, SSL_CTX *ctx, const struct fv_sim_ws_target *t,
                      X509 *cert, EVP_PKEY *key, char *err, size_t errlen);

/* Called once per complete data message (text or binary); p is valid during the call only.
 * The callback may queue messages (fv_sim_ws_send) but must not close or free the
 * connection. A nonzero return stops fv_sim_ws_io, which then returns that value. */
typedef int (*fv_sim_ws_msg_cb)(void *ud, unsigned opcode, const unsigned char *p, size_t len);

/*
 * Makes all the progress possible without blocking: connect, handshakes, writing queued
 * frames, reading and dispatching messages. FV_OK while the connection lives (whatever the
 * state); a negative code with the reason in err when it failed or the server closed it
 * (connection refused, TLS errors with OpenSSL's reason or the server's alert, HTTP status
 * other than 101, bad accept key, protocol errors, close frame with its code).
 */
int fv_sim_ws_io(struct fv_sim_ws *ws, fv_sim_ws_msg_cb cb, void *ud, char *err, size_t errlen);

/* Drives the connect and the TLS handshake only (CONNECTING -> TLS -> UPGRADE), as
 * fv_sim_ws_io would, without writing the queued upgrade request or reading past the
 * handshake: the part a connector thread does (sim/connector.h), after which the owner's
 * fv_sim_ws_io goes on from UPGRADE. FV_OK (the state says how far it got) or a negative
 * code with the reason in err. */
int fv_sim_ws_handshake(struct fv_sim_ws *ws, char *err, size_t errlen);

/* Queues a message as one masked frame; only when OPEN (else FV_ESTATE). FV_ENOMEM. The
 * bytes go out on the next fv_sim_ws_io. */
int fv_sim_ws_send(struct fv_sim_ws *ws, unsigned opcode, const void *p, size_t len);

/* Writes queued frames without reading (after fv_sim_ws_send outside fv_sim_ws_io).
 * FV_OK (possibly with bytes still pending: wait for EPOLLOUT) or a negative code as for
 * fv_sim_ws_io. */
int fv_sim_ws_flush(struct fv_sim_ws *ws, char *err, size_t errlen);

/* Queues a close frame with code (1000 = normal) and enters CLOSING. */
int fv_sim_ws_start_close(struct fv_sim_ws *ws, unsigned code);

/* Releases the TLS session and socket (best-effort close_notify); state becomes CLOSED. */
void fv_sim_ws_close(struct fv_sim_ws *ws);

enum fv_sim_ws_state fv_sim_ws_state(const struct fv_sim_ws *ws);
int fv_sim_ws_fd(const struct fv_sim_ws *ws);          /* -1 when CLOSED */
uint32_t fv_sim_ws_events(const struct fv_sim_ws *ws); /* EPOLLIN / EPOLLOUT wanted now */
size_t fv_sim_ws_pending(const struct fv_sim_ws *ws);  /* queued bytes not yet written */

#endif
