/*
 * wsclient.c - WebSocket client over TLS for the simulator (contract in wsclient.h).
 *
 * State machine (the function that makes each transition in brackets):
 *
 *   CLOSED --[fv_sim_ws_connect: socket + non-blocking connect]--> CONNECTING
 *   CONNECTING --[io_connecting: SO_ERROR == 0 and peer known]--> TLS
 *   TLS --[io_tls: SSL_connect == 1, upgrade request queued]--> UPGRADE
 *   UPGRADE --[parse_upgrade: "101", Upgrade/Connection ok, accept key matches]--> OPEN
 *   OPEN --[fv_sim_ws_start_close: close frame queued]--> CLOSING
 *   any --[fv_sim_ws_close]--> CLOSED
 * Any failure makes fv_sim_ws_io return a negative code; the owner then calls
 * fv_sim_ws_close. A close frame from the server is answered and reported as FV_EIO.
 *
 * Frame format (RFC 6455 5.2): byte 0 = FIN(1) RSV(3) opcode(4); byte 1 = MASK(1) len(7);
 * len 126 -> 16-bit big-endian length follows, 127 -> 64-bit (top bit 0); then the 4-byte
 * mask key when MASK; then the payload, XORed with key[i % 4] when masked.
 *
 * Invariants:
 *  I1 out[out_off..out.len) is what remains to be written, in order; SSL_write is always
 *     retried with the same bytes (partial writes and moving buffers are enabled).
 *  I2 in[0..in.len) holds bytes read but not yet consumed (a partial frame or response).
 *  I3 msg holds the fragments of an incomplete data message only while in_msg is set.
 *  I4 tls_dead is set after a fatal TLS error; SSL_shutdown must not be called then.
 *  I5 the OpenSSL error queue is left empty after every failure (it is per thread and
 *     shared by all connections).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "sim/wsclient.h"
#include "util/err.h"

#define WS_GUID           "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_RESPONSE_HEAD 16384 /* an upgrade response larger than this is refused */
#define READ_CHUNK        16384
#define KEEP_BUF_CAP      16384 /* idle send buffers above this are released */

struct fv_sim_ws {
    int fd;
    SSL *ssl;
    enum fv_sim_ws_state state;
    int tls_want;    /* SSL_ERROR_WANT_READ / _WRITE during the handshake */
    int write_block; /* SSL_ERROR_WANT_READ / _WRITE when a write stalled, else 0 */
    int tls_dead;    /* I4 */
    struct fv_buf in, out, msg;
    size_t out_off;
    int in_msg;
    unsigned msg_opcode;
    uint64_t mask_rng;
    char accept[29];
};

int fv_sim_ws_accept_key(const char *key, char out[29])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char cat[128];
    int n = snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);
    if (n < 0 || (size_t)n >= sizeof cat) return FV_EINVAL;
    if (EVP_Digest(cat, (size_t)n, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20) {
        ERR_clear_error();
        return FV_ETLS;
    }
    /* 20 bytes -> 28 base64 characters + NUL. */
    if (EVP_EncodeBlock((unsigned char *)out, md, 20) != 28) return FV_ETLS;
    return FV_OK;
}

/* ---- TLS context --------------------------------------------------------------------------- */

/* The reason of the newest queued OpenSSL error (or "unknown"), then empties the queue (I5). */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown OpenSSL error";
}

int fv_sim_ws_ctx_new(const char *ca_file, const char *host, SSL_CTX **out, char *err,
                      size_t errlen)
{
    int rc = FV_ETLS;
    *out = NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        fv_seterr(err, errlen, "SSL_CTX_new: %s", ssl_reason());
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        fv_seterr(err, errlen, "cannot load CA certificate %s: %s", ca_file, ssl_reason());
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    unsigned char ipbuf[16];
    int is_ip = inet_pton(AF_INET, host, ipbuf) == 1 || inet_pton(AF_INET6, host, ipbuf) == 1;
    if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
               : X509_VERIFY_PARAM_set1_host(param, host, 0)) != 1) {
        fv_seterr(err, errlen, "cannot set the expected server name '%s': %s", host, ssl_reason());
        goto fail;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    *out = ctx;
    return FV_OK;
fail:
    SSL_CTX_free(ctx);
    return rc;
}

/* ---- connection -------------------------------------------------------------------------- */

int fv_sim_ws_new(struct fv_sim_ws **out)
{
    struct fv_sim_ws *ws = calloc(1, sizeof *ws);
    *out = ws;
    if (ws == NULL) return FV_ENOMEM;
    ws->fd = -1;
    return FV_OK;
}

void fv_sim_ws_free(struct fv_sim_ws *ws)
{
    if (ws == NULL) return;
    fv_sim_ws_close(ws);
    free(ws);
}

enum fv_sim_ws_state fv_sim_ws_state(const struct fv_sim_ws *ws)
{
    return ws->state;
}

int fv_sim_ws_fd(const struct fv_sim_ws *ws)
{
    return ws->fd;
}

size_t fv_sim_ws_pending(const struct fv_sim_ws *ws)
{
    return ws->out.len - ws->out_off;
}

uint32_t fv_sim_ws_events(const struct fv_sim_ws *ws)
{
    switch (ws->state) {
    case FV_SIM_WS_CLOSED:
        return 0;
    case FV_SIM_WS_CONNECTING:
        return EPOLLOUT;
    case FV_SIM_WS_TLS:
        return ws->tls_want == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN;
    default:
        return EPOLLIN |
               (fv_sim_ws_pending(ws) > 0 && ws->write_block != SSL_ERROR_WANT_READ ? EPOLLOUT : 0);
    }
}

/* Releases a buffer's memory when it is empty and holds more than keep bytes: an idle
 * connection then costs almost nothing beyond OpenSSL's own state. */
static void trim(struct fv_buf *b, size_t keep)
{
    if (b->len == 0 && b->cap > keep) fv_buf_free(b);
}

void fv_sim_ws_close(struct fv_sim_ws *ws)
{
    if (ws->ssl) {
        if (!ws->tls_dead && ws->state >= FV_SIM_WS_UPGRADE)
            (void)SSL_shutdown(ws->ssl); /* best-effort close_notify; never waits */
        ERR_clear_error();
        SSL_free(ws->ssl);
        ws->ssl = NULL;
    }
    if (ws->fd >= 0) {
        close(ws->fd);
        ws->fd = -1;
    }
    fv_buf_free(&ws->in);
    fv_buf_free(&ws->out);
    fv_buf_free(&ws->msg);
    ws->out_off = 0;
    ws->in_msg = 0;
    ws->tls_want = ws->write_block = ws->tls_dead = 0;
    ws->state = FV_SIM_WS_CLOSED;
}

/* xorshift64* (Marsaglia / Vigna): a mask per frame, unpredictable enough for RFC 6455
 * 10.3 because the stream is seeded from RAND_bytes per connection. */
static void next_mask(struct fv_sim_ws *ws, unsigned char mask[4])
{
    uint64_t x = ws->mask_rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ws->mask_rng = x;
    uint32_t m = (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
    for (int i = 0; i < 4; i++)
        mask[i] = (unsigned char)(m >> (8 * i));
}

static int queue_frame(struct fv_sim_ws *ws, unsigned opcode, const void *p, size_t len)
{
    unsigned char mask[4];
    next_mask(ws, mask);
    return fv_ws_frame_encode(&ws->out, opcode, 1, p, len, mask);
}

int fv_sim_ws_connect(struct fv_sim_ws *ws, SSL_CTX *ctx, const struct fv_sim_ws_target *t,
                      X509 *cert, EVP_PKEY *key, char *err, size_t errlen)
{
    int rc = FV_EIO;
    if (ws->state != FV_SIM_WS_CLOSED) {
        fv_seterr(err, errlen, "connection already in use");
        return FV_ESTATE;
    }
    unsigned char rnd[24];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        fv_seterr(err, errlen, "RAND_bytes: %s", ssl_reason());
        rc = FV_ETLS;
        goto fail;
    }
    memcpy(&ws->mask_rng, rnd + 16, 8);
    ws->mask_rng |= 1; /* xorshift state must not be zero */

    /* Upgrade request, sent once TLS is up. */
    char wskey[25];
    if (EVP_EncodeBlock((unsigned char *)wskey, rnd, 16) != 24 ||
        fv_sim_ws_accept_key(wskey, ws->accept) != FV_OK) {
        fv_seterr(err, errlen, "cannot compute the WebSocket key");
        rc = FV_ETLS;
        goto fail;
    }
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade"
                     "\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     t->path ? t->path : "/", t->host_header, wskey, t->headers ? t->headers : "");
    if (n < 0 || (size_t)n >= sizeof req) {
        fv_seterr(err, errlen, "upgrade request too long");
        rc = FV_EINVAL;
        goto fail;
    }
    rc = fv_buf_append(&ws->out, req, (size_t)n);
    if (rc) {
        fv_seterr(err, errlen, "out of memory");
        goto fail;
    }
    ws->out_off = 0;

    rc = FV_EIO;
    ws->fd = socket(t->addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ws->fd < 0) {
        fv_seterr(err, errlen, "socket: %s", strerror(errno));
        goto fail;
    }
    int one = 1;
    (void)setsockopt(ws->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    rc = FV_ETLS;
    ws->ssl = SSL_new(ctx);
    if (ws->ssl == NULL || SSL_set_fd(ws->ssl, ws->fd) != 1) {
        fv_seterr(err, errlen, "SSL_new: %s", ssl_reason());
        goto fail;
    }
    if (SSL_use_certificate(ws->ssl, cert) != 1 || SSL_use_PrivateKey(ws->ssl, key) != 1) {
        fv_seterr(err, errlen, "cannot use the client certificate: %s", ssl_reason());
        goto fail;
    }
    if (t->sni && SSL_set_tlsext_host_name(ws->ssl, t->sni) != 1) {
        fv_seterr(err, errlen, "SNI: %s", ssl_reason());
        goto fail;
    }
    SSL_set_connect_state(ws->ssl);

    rc = FV_EIO;
    if (connect(ws->fd, t->addr, t->addrlen) == 0) {
        ws->state = FV_SIM_WS_TLS;
    } else if (errno == EINPROGRESS) {
        ws->state = FV_SIM_WS_CONNECTING;
    } else {
        fv_seterr(err, errlen, "connect: %s", strerror(errno));
        goto fail;
    }
    ws->tls_want = SSL_ERROR_WANT_WRITE;
    return FV_OK;
fail:
    ws->tls_dead = 1;
    fv_sim_ws_close(ws);
    return rc;
}

/* Describes the failure of an SSL call that returned ret, during `what`. Returns the code. */
static int tls_fail(struct fv_sim_ws *ws, int ret, int saved_errno, const char *what, char *err,
                    size_t errlen)
{
    int e = SSL_get_error(ws->ssl, ret);
    ws->tls_dead = 1;
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        fv_seterr(err, errlen, "server closed the connection (TLS close_notify) during %s", what);
        return FV_EIO;
    }
    /* With TLS 1.3 the client finishes its handshake before the server has checked the
     * client certificate, so a rejection often shows up as a reset right afterwards. */
    const char *hint = ws->state == FV_SIM_WS_UPGRADE
                           ? " right after the TLS handshake (did the server reject the client "
                             "certificate?)"
                           : "";
    if (e == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0) {
        if (saved_errno)
            fv_seterr(err, errlen, "%s: %s%s", what, strerror(saved_errno), hint);
        else
            fv_seterr(err, errlen, "server closed the connection during %s%s", what, hint);
        return FV_EIO;
    }
    long vr = SSL_get_verify_result(ws->ssl);
    if (ws->state == FV_SIM_WS_TLS && vr != X509_V_OK) {
        ERR_clear_error();
        fv_seterr(err, errlen, "TLS handshake failed: server certificate verify failed: %s",
                  X509_verify_cert_error_string(vr));
        return FV_ETLS;
    }
    const char *reason = ssl_reason();
    if (strstr(reason, "unexpected eof")) {
        fv_seterr(err, errlen, "server closed the connection during %s%s", what, hint);
        return FV_EIO;
    }
    if (strstr(reason, "alert"))
        fv_seterr(err, errlen,
                  "TLS %s failed: the server sent alert '%s' (is the client certificate "
                  "signed by the CA the server trusts?)",
                  what, reason);
    else
        fv_seterr(err, errlen, "TLS %s failed: %s", what, reason);
    return FV_ETLS;
}

static int io_connecting(struct fv_sim_ws *ws, char *err, size_t errlen)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(ws->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) soerr = errno;
    if (soerr != 0) {
        fv_seterr(err, errlen, "connect: %s", strerror(soerr));
        return FV_EIO;
    }
    struct sockaddr_storage ss;
    socklen_t ssl_len = sizeof ss;
    if (getpeername(ws->fd, (struct sockaddr *)&ss, &ssl_len) != 0)
        return FV_OK; /* not connected yet: a spurious wake-up */
    ws->state = FV_SIM_WS_TLS;
    return FV_OK;
}

static int io_tls(struct fv_sim_ws *ws, char *err, size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_connect(ws->ssl);
    if (r == 1) {
        ws->state = FV_SIM_WS_UPGRADE;
        return FV_OK;
    }
    int saved = errno;
    int e = SSL_get_error(ws->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ws->tls_want = e;
        return FV_OK;
    }
    return tls_fail(ws, r, saved, "handshake", err, errlen);
}

static int flush_out(struct fv_sim_ws *ws, char *err, size_t errlen)
{
    ws->write_block = 0;
    while (ws->out_off < ws->out.len) {
        size_t left = ws->out.len - ws->out_off;
        int chunk = left > (1u << 30) ? (1 << 30) : (int)left;
        ERR_clear_error();
        errno = 0;
        int n = SSL_write(ws->ssl, ws->out.data + ws->out_off, chunk);
        if (n > 0) {
            ws->out_off += (size_t)n;
            continue;
        }
        int saved = errno;
        int e = SSL_get_error(ws->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            ws->write_block = e;
            return FV_OK;
        }
        return tls_fail(ws, n, saved, "write", err, errlen);
    }
    ws->out.len = 0;
    ws->out_off = 0;
    trim(&ws->out, KEEP_BUF_CAP);
    return FV_OK;
}

/* Does comma-separated header value v (length n) contain token tok (case-insensitive)? */
static int has_token(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *s = p;
        while (*p && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tl && strncasecmp(s, tok, tl) == 0) return 1;
    }
    return 0;
}

/* Parses the server's upgrade response at the head of `in`, when complete. */
static int parse_upgrade(struct fv_sim_ws *ws, char *err, size_t errlen)
{
    const unsigned char *end = NULL;
    for (size_t i = 3; i < ws->in.len; i++)
        if (memcmp(ws->in.data + i - 3, "\r\n\r\n", 4) == 0) {
            end = ws->in.data + i + 1;
            break;
        }
    if (end == NULL) {
        if (ws->in.len > MAX_RESPONSE_HEAD) {
            fv_seterr(err, errlen, "upgrade response headers exceed %d bytes", MAX_RESPONSE_HEAD);
            return FV_EPROTO;
        }
        return FV_OK; /* need more */
    }
    size_t hlen = (size_t)(end - ws->in.data);
    char *h = malloc(hlen + 1);
    if (h == NULL) {
        fv_seterr(err, errlen, "out of memory");
        return FV_ENOMEM;
    }
    memcpy(h, ws->in.data, hlen);
    h[hlen] = '\0';
    int rc = FV_EPROTO;
    char *save = NULL;
    char *line = strtok_r(h, "\r\n", &save);
    if (line == NULL || strncmp(line, "HTTP/1.1 101", 12) != 0 ||
        (line[12] != ' ' && line[12] != '\0')) {
        fv_seterr(err, errlen, "server refused the WebSocket upgrade: %.200s",
                  line ? line : "(empty response)");
        goto done;
    }
    int upgrade_ok = 0, conn_ok = 0, accept_ok = 0;
    while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
        char *colon = strchr(line, ':');
        if (colon == NULL) continue;
        *colon = '\0';
        char *val = colon + 1;
        while (*val == ' ' || *val == '\t')
            val++;
        size_t vl = strlen(val);
        while (vl > 0 && (val[vl - 1] == ' ' || val[vl - 1] == '\t'))
            val[--vl] = '\0';
        if (strcasecmp(line, "Upgrade") == 0)
            upgrade_ok = has_token(val, "websocket");
        else if (strcasecmp(line, "Connection") == 0)
            conn_ok = has_token(val, "upgrade");
        else if (strcasecmp(line, "Sec-WebSocket-Accept") == 0)
            accept_ok = strcmp(val, ws->accept) == 0;
        else if (strcasecmp(line, "Sec-WebSocket-Extensions") == 0 && vl > 0) {
            fv_seterr(err, errlen, "server chose WebSocket extension '%.100s' not offered", val);
            goto done;
        }
    }
    if (!upgrade_ok || !conn_ok) {
        fv_seterr(err, errlen,
                  "upgrade response lacks 'Upgrade: websocket' or "
                  "'Connection: Upgrade'");
        goto done;
    }
    if (!accept_ok) {
        fv_seterr(err, errlen, "upgrade response has a wrong or missing Sec-WebSocket-Accept");
        goto done;
    }
    /* Bytes after the headers are already frames. */
    memmove(ws->in.data, ws->in.data + hlen, ws->in.len - hlen);
    ws->in.len -= hlen;
    ws->state = FV_SIM_WS_OPEN;
    rc = FV_OK;
done:
    free(h);
    return rc;
}

static int handle_close_frame(struct fv_sim_ws *ws, const unsigned char *p, size_t len, char *err,
                              size_t errlen)
{
    unsigned code = len >= 2 ? ((unsigned)p[0] << 8 | p[1]) : 1005;
    if (ws->state == FV_SIM_WS_OPEN) {
        unsigned char echo[2] = {(unsigned char)(code >> 8), (unsigned char)code};
        /* Answer, then try once to get it out; the owner closes the socket next. */
        if (queue_frame(ws, FV_WS_CLOSE, echo, len >= 2 ? 2 : 0) == FV_OK) {
            char ignore[8];
            (void)flush_out(ws, ignore, sizeof ignore);
        }
        ws->state = FV_SIM_WS_CLOSING;
    }
    int rl = len > 2 ? (int)(len - 2) : 0;
    fv_seterr(err, errlen, "server closed the WebSocket (code %u%s%.*s)", code, rl ? ": " : "", rl,
              rl ? (const char *)p + 2 : "");
    return FV_EIO;
}

/* Dispatches every complete frame in `in` (I2); keeps a trailing partial frame. */
static int parse_frames(struct fv_sim_ws *ws, fv_sim_ws_msg_cb cb, void *ud, char *err,
                        size_t errlen)
{
    int rc = FV_OK;
    size_t off = 0;
    for (;;) {
        struct fv_ws_frame f;
        rc = fv_ws_frame_parse(ws->in.data + off, ws->in.len - off, FV_SIM_WS_MAX_MSG, &f, err,
                               errlen);
        if (rc == FV_EAGAIN) {
            rc = FV_OK;
            break;
        }
        if (rc) break;
        const unsigned char *pl = ws->in.data + off + f.header_len;
        size_t len = (size_t)f.len;
        if (f.masked) {
            fv_seterr(err, errlen, "server sent a masked frame (RFC 6455 5.1)");
            rc = FV_EPROTO;
            break;
        }
        off += f.header_len + len;
        switch (f.opcode) {
        case FV_WS_PING:
            if (ws->state == FV_SIM_WS_OPEN && (rc = queue_frame(ws, FV_WS_PONG, pl, len)))
                fv_seterr(err, errlen, "out of memory");
            break;
        case FV_WS_PONG:
            break;
        case FV_WS_CLOSE:
            rc = handle_close_frame(ws, pl, len, err, errlen);
            break;
        case FV_WS_TEXT:
        case FV_WS_BINARY:
            if (ws->in_msg) {
                fv_seterr(err, errlen, "new WebSocket message inside a fragmented one");
                rc = FV_EPROTO;
            } else if (f.fin) {
                rc = cb ? cb(ud, f.opcode, pl, len) : FV_OK;
            } else {
                ws->in_msg = 1;
                ws->msg_opcode = f.opcode;
                ws->msg.len = 0;
                if ((rc = fv_buf_append(&ws->msg, pl, len)))
                    fv_seterr(err, errlen, "out of memory");
            }
            break;
        case FV_WS_CONT:
        default:
            if (!ws->in_msg) {
                fv_seterr(err, errlen, "WebSocket continuation frame without a message");
                rc = FV_EPROTO;
            } else if (ws->msg.len + len > FV_SIM_WS_MAX_MSG) {
                fv_seterr(err, errlen, "fragmented WebSocket message exceeds %u bytes",
                          FV_SIM_WS_MAX_MSG);
                rc = FV_EPROTO;
            } else if ((rc = fv_buf_append(&ws->msg, pl, len))) {
                fv_seterr(err, errlen, "out of memory");
            } else if (f.fin) {
                ws->in_msg = 0;
                rc = cb ? cb(ud, ws->msg_opcode, ws->msg.data, ws->msg.len) : FV_OK;
                ws->msg.len = 0;
                trim(&ws->msg, KEEP_BUF_CAP);
            }
            break;
        }
        if (rc) break;
    }
    if (off > 0) {
        memmove(ws->in.data, ws->in.data + off, ws->in.len - off);
        ws->in.len -= off;
    }
    trim(&ws->in, 0);
    return rc;
}

/* Reads everything available; processes the upgrade response, then frames. */
static int read_all(struct fv_sim_ws *ws, fv_sim_ws_msg_cb cb, void *ud, char *err, size_t errlen)
{
    for (;;) {
        int rc = fv_buf_reserve(&ws->in, READ_CHUNK);
        if (rc) {
            fv_seterr(err, errlen, "out of memory");
            return rc;
        }
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(ws->ssl, ws->in.data + ws->in.len, READ_CHUNK);
        if (n <= 0) {
            int saved = errno;
            int e = SSL_get_error(ws->ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                trim(&ws->in, 0);
                return FV_OK;
            }
            return tls_fail(ws, n, saved, "read", err, errlen);
        }
        ws->in.len += (size_t)n;
        if (ws->state == FV_SIM_WS_UPGRADE) {
            if ((rc = parse_upgrade(ws, err, errlen))) return rc;
            if (ws->state == FV_SIM_WS_UPGRADE) continue;
        }
        if ((rc = parse_frames(ws, cb, ud, err, errlen))) return rc;
    }
}

int fv_sim_ws_io(struct fv_sim_ws *ws, fv_sim_ws_msg_cb cb, void *ud, char *err, size_t errlen)
{
    int rc = FV_OK;
    if (ws->state == FV_SIM_WS_CONNECTING && (rc = io_connecting(ws, err, errlen))) return rc;
    if (ws->state == FV_SIM_WS_TLS && (rc = io_tls(ws, err, errlen))) return rc;
    if (ws->state < FV_SIM_WS_UPGRADE) return FV_OK;
    if ((rc = flush_out(ws, err, errlen))) return rc;
    if ((rc = read_all(ws, cb, ud, err, errlen))) return rc;
    /* Reading may have queued pongs, and the callback may have queued messages. */
    return flush_out(ws, err, errlen);
}

int fv_sim_ws_handshake(struct fv_sim_ws *ws, char *err, size_t errlen)
{
    int rc = FV_OK;
    if (ws->state == FV_SIM_WS_CONNECTING && (rc = io_connecting(ws, err, errlen))) return rc;
    if (ws->state == FV_SIM_WS_TLS && (rc = io_tls(ws, err, errlen))) return rc;
    return FV_OK;
}

int fv_sim_ws_send(struct fv_sim_ws *ws, unsigned opcode, const void *p, size_t len)
{
    if (ws->state != FV_SIM_WS_OPEN) return FV_ESTATE;
    return queue_frame(ws, opcode, p, len);
}

int fv_sim_ws_flush(struct fv_sim_ws *ws, char *err, size_t errlen)
{
    if (ws->state < FV_SIM_WS_UPGRADE) return FV_OK;
    return flush_out(ws, err, errlen);
}

int fv_sim_ws_start_close(struct fv_sim_ws *ws, unsigned code)
{
    if (ws->state != FV_SIM_WS_OPEN) return FV_ESTATE;
    unsigned char c[2] = {(unsigned char)(code >> 8), (unsigned char)code};
    int rc = queue_frame(ws, FV_WS_CLOSE, c, 2);
    if (rc == FV_OK) ws->state = FV_SIM_WS_CLOSING;
    return rc;
}
