/* test_simulate.c - the simulator's run loop (src/sim/simulate.c) against a scripted
 * in-process server: a threaded mutual-TLS WebSocket server that checks what a device sends
 * (upgrade headers, masked frames, envelope fields, certificate CN = device_id = payload vin)
 * and misbehaves on purpose:
 *   - refuses every record whose seq % 7 == 3 (error reply) -> counted in "errors", not resent;
 *   - ignores vehicle 0's record 5 the first time -> resent after the timeout, is_resend set;
 *   - drops vehicle 1's connection once, at its record 4 -> reconnect, resend, all acked.
 * The run must end with sent == acked + errors, nothing unacked, and an acked log that lists
 * exactly the acked ("VIN TXID") and refused ("VIN TXID E") records. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "crypto/certs.h"
#include "sim/simulate.h"
#include "sim/wsclient.h"
#include "util/err.h"
#include "wire/envelope.h"
#include "wire/payload.h"

#define MAX_CONNS 64

struct server {
    SSL_CTX *ctx;
    int lfd;
    int port;
    volatile int stop;
    pthread_t accept_th;
    pthread_t conn_th[MAX_CONNS];
    int nconn;
    pthread_mutex_t mu;
    /* Observations, under mu. */
    int conns, bad_headers, unmasked, bad_envelopes, identity_mismatch;
    int ignored_once, dropped_once, resend_of_ignored, resend_flag_on_first;
    int refused, acked_replies, records;
};

struct conn {
    struct server *s;
    int fd;
};

/* Reads until "\r\n\r\n"; returns the header block (NUL-terminated) or NULL. */
static char *read_request(SSL *ssl)
{
    static const size_t cap = 8192;
    char *buf = calloc(1, cap + 1);
    size_t len = 0;
    while (buf && len < cap) {
        int n = SSL_read(ssl, buf + len, (int)(cap - len));
        if (n <= 0) {
            if (SSL_get_error(ssl, n) == SSL_ERROR_WANT_READ) continue;
            break;
        }
        len += (size_t)n;
        if (strstr(buf, "\r\n\r\n")) return buf;
    }
    free(buf);
    return NULL;
}

/* Value of request header `name` (matched at a line start, case-insensitively). */
static const char *header(const char *req, const char *name, char *out, size_t outlen)
{
    char pat[96];
    snprintf(pat, sizeof pat, "\r\n%s:", name);
    const char *p = strcasestr(req, pat);
    if (p == NULL) return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    size_t n = strcspn(p, "\r\n");
    if (n >= outlen) return NULL;
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

static int write_all(SSL *ssl, const void *p, size_t len)
{
    while (len > 0) {
        int n = SSL_write(ssl, p, (int)len);
        if (n <= 0) {
            if (SSL_get_error(ssl, n) == SSL_ERROR_WANT_WRITE) continue;
            return -1;
        }
        p = (const char *)p + n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_frame(SSL *ssl, unsigned opcode, const void *p, size_t len)
{
    struct fv_buf f = {0};
    int rc = fv_sim_ws_frame_encode(&f, opcode, 1, p, len, NULL);
    if (rc == 0) rc = write_all(ssl, f.data, f.len);
    fv_buf_free(&f);
    return rc;
}

/* Handles one device message; returns -1 to drop the connection without a reply. */
static int handle_record(struct server *s, SSL *ssl, const char *cn, const unsigned char *p,
                         size_t len)
{
    struct fv_envelope env;
    char err[128];
    if (fv_envelope_decode(p, len, &env, err, sizeof err) || env.message_type != FV_MSG_STREAM ||
        !env.payload.present) {
        pthread_mutex_lock(&s->mu);
        s->bad_envelopes++;
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    struct fv_vrecord r;
    int bad = fv_payload_decode_v(env.payload.p, env.payload.len, &r, err, sizeof err) != 0;
    char txid[96];
    snprintf(txid, sizeof txid, "%.*s", (int)env.txid.len, (const char *)env.txid.p);
    const char *dash = strrchr(txid, '-');
    unsigned long seq = dash ? strtoul(dash + 1, NULL, 10) : 0;
    int vehicle = (int)strtol(cn + 6, NULL, 10); /* "5YJSIM" + index */
    int identity_ok = !bad && strcmp(r.vin, cn) == 0 && env.device_id.len == strlen(cn) &&
                      memcmp(env.device_id.p, cn, strlen(cn)) == 0 && env.topic.len == 1 &&
                      env.topic.p[0] == 'V' && strncmp(txid, cn, strlen(cn)) == 0;
    int is_resend = !bad && r.is_resend;
    fv_vrecord_free(&r);

    int action = 0; /* 0 ack, 1 refuse, 2 ignore, 3 drop */
    pthread_mutex_lock(&s->mu);
    s->records++;
    if (bad) s->bad_envelopes++;
    if (!identity_ok) s->identity_mismatch++;
    if (vehicle == 0 && seq == 5) {
        if (!s->ignored_once) {
            s->ignored_once = 1;
            if (is_resend) s->resend_flag_on_first++;
            action = 2;
        } else if (is_resend) {
            s->resend_of_ignored++;
        }
    } else if (vehicle == 1 && seq == 4 && !s->dropped_once) {
        s->dropped_once = 1;
        action = 3;
    } else if (seq % 7 == 3) {
        action = 1;
    }
    if (action == 1) s->refused++;
    if (action == 0) s->acked_replies++;
    pthread_mutex_unlock(&s->mu);

    struct fv_buf out = {0};
    int rc = 0;
    if (action == 0)
        rc = fv_envelope_build_ack(&out, env.txid.p, env.txid.len, "V", 1);
    else if (action == 1)
        rc = fv_envelope_build_error(&out, env.txid.p, env.txid.len, "incorrect message format");
    if (rc == 0 && out.len) rc = send_frame(ssl, FV_SIM_WS_BINARY, out.data, out.len);
    fv_buf_free(&out);
    return action == 3 ? -1 : rc;
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct server *s = c->s;
    SSL *ssl = SSL_new(s->ctx);
    char *req = NULL;
    struct fv_buf in = {0};
    char cn[80] = "";
    if (ssl == NULL || SSL_set_fd(ssl, c->fd) != 1 || SSL_accept(ssl) != 1) goto done;
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer == NULL) goto done;
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    req = read_request(ssl);
    if (req == NULL) goto done;
    char key[64], v[128];
    int headers_ok = header(req, "Sec-WebSocket-Key", key, sizeof key) != NULL &&
                     header(req, "X-Network-Interface", v, sizeof v) && strcmp(v, "wifi") == 0 &&
                     header(req, "User-Agent", v, sizeof v) &&
                     strcmp(v, "Hermes/1.16.2 (vehicle_device)") == 0 &&
                     header(req, "Version", v, sizeof v) && strcmp(v, "2025.20") == 0 &&
                     header(req, "Sec-WebSocket-Version", v, sizeof v) && strcmp(v, "13") == 0 &&
                     strncmp(req, "GET / HTTP/1.1\r\n", 16) == 0;
    pthread_mutex_lock(&s->mu);
    s->conns++;
    if (!headers_ok) s->bad_headers++;
    pthread_mutex_unlock(&s->mu);
    if (!headers_ok) goto done;
    char accept[29], resp[256];
    fv_sim_ws_accept_key(key, accept);
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    if (write_all(ssl, resp, (size_t)n)) goto done;
    unsigned char chunk[16384];
    while (!s->stop) {
        int r = SSL_read(ssl, chunk, sizeof chunk);
        if (r <= 0) {
            int e = SSL_get_error(ssl, r);
            if (e == SSL_ERROR_WANT_READ || (e == SSL_ERROR_SYSCALL && errno == EAGAIN)) {
                ERR_clear_error();
                continue; /* receive timeout: look at the stop flag */
            }
            break;
        }
        if (fv_buf_append(&in, chunk, (size_t)r)) break;
        size_t off = 0;
        int quit = 0;
        for (;;) {
            struct fv_sim_ws_frame f;
            char err[128];
            int rc =
                fv_sim_ws_frame_parse(in.data + off, in.len - off, 1u << 20, &f, err, sizeof err);
            if (rc == FV_EAGAIN) break;
            if (rc) {
                quit = 1;
                break;
            }
            unsigned char *pl = in.data + off + f.header_len;
            size_t len = (size_t)f.len;
            off += f.header_len + len;
            if (!f.masked) {
                pthread_mutex_lock(&s->mu);
                s->unmasked++;
                pthread_mutex_unlock(&s->mu);
            }
            fv_sim_ws_mask(pl, len, f.mask, 0);
            if (f.opcode == FV_SIM_WS_CLOSE) {
                send_frame(ssl, FV_SIM_WS_CLOSE, pl, len < 2 ? len : 2);
                quit = 1;
                break;
            }
            if (f.opcode == FV_SIM_WS_BINARY && handle_record(s, ssl, cn, pl, len) < 0) {
                quit = 1;
                break;
            }
        }
        memmove(in.data, in.data + off, in.len - off);
        in.len -= off;
        if (quit) break;
    }
done:
    free(req);
    fv_buf_free(&in);
    SSL_free(ssl);
    close(c->fd);
    free(c);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct server *s = arg;
    while (!s->stop) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) continue;
        struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        struct conn *c = malloc(sizeof *c);
        if (c == NULL || s->nconn >= MAX_CONNS) {
            free(c);
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        if (pthread_create(&s->conn_th[s->nconn], NULL, conn_main, c) == 0)
            s->nconn++;
        else {
            close(fd);
            free(c);
        }
    }
    return NULL;
}

static void server_start(struct server *s, const char *dir)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    char crt[512], key[512], ca[512];
    snprintf(crt, sizeof crt, "%s/server.crt", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    s->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(s->ctx);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(s->ctx, crt), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(s->ctx, key, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_load_verify_locations(s->ctx, ca, NULL), 1);
    SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(listen(s->lfd, 64), 0);
    assert_int_equal(pthread_create(&s->accept_th, NULL, accept_main, s), 0);
}

static void server_stop(struct server *s)
{
    s->stop = 1;
    pthread_join(s->accept_th, NULL);
    for (int i = 0; i < s->nconn; i++)
        pthread_join(s->conn_th[i], NULL);
    close(s->lfd);
    SSL_CTX_free(s->ctx);
    pthread_mutex_destroy(&s->mu);
}

static void rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static void test_run_against_scripted_server(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/fv-test-sim-XXXXXX";
    char *root = mkdtemp(tmpl);
    assert_non_null(root);
    char dir[256], log_path[256], err[1024];
    snprintf(dir, sizeof dir, "%s/certs", root);
    snprintf(log_path, sizeof log_path, "%s/acked.log", root);
    assert_int_equal(fv_certs_init(dir, err, sizeof err), FV_OK);

    struct server s;
    server_start(&s, dir);
    char url[64];
    snprintf(url, sizeof url, "wss://127.0.0.1:%d", s.port);

    struct fv_sim_opts o;
    fv_sim_opts_default(&o);
    o.server = url;
    o.certs_dir = dir;
    o.vehicles = 3;
    o.seconds = 2.0;
    o.hz = 5;
    o.drain_s = 10;
    o.acked_log = log_path;
    o.connect_rate = 0;
    o.resend_after_s = 0.3;
    o.progress = 0;
    struct fv_sim_stats st;
    int rc = fv_sim_run(&o, &st, err, sizeof err);
    if (rc) fprintf(stderr, "fv_sim_run: %s\n", err);
    assert_int_equal(rc, FV_OK);
    server_stop(&s);
    fv_sim_stats_print_json(&st, stderr);

    /* The server saw well-formed device traffic. */
    assert_int_equal(s.bad_headers, 0);
    assert_int_equal(s.unmasked, 0);
    assert_int_equal(s.bad_envelopes, 0);
    assert_int_equal(s.identity_mismatch, 0);
    /* Ignored record: resent with is_resend, and not flagged the first time. */
    assert_int_equal(s.ignored_once, 1);
    assert_true(s.resend_of_ignored >= 1);
    assert_int_equal(s.resend_flag_on_first, 0);
    /* Dropped connection: the vehicle came back. */
    assert_int_equal(s.dropped_once, 1);
    assert_true(s.conns >= 4);
    assert_true(st.reconnects >= 1);
    assert_true(st.resent >= 2);

    /* Accounting. */
    assert_true(st.sent >= 3 * 9 && st.sent <= 3 * 11);
    assert_int_equal(st.unacked, 0);
    assert_int_equal(st.sent, st.acked + st.errors);
    assert_true(st.errors >= 3); /* seq 3 of every vehicle at least */
    assert_int_equal(st.datums, st.acked * 20);
    assert_true(st.ack_p50_ms > 0 && st.ack_p50_ms <= st.ack_p99_ms);
    assert_true((int)st.errors <= s.refused); /* a refused record is never resent */
    assert_int_equal((int)st.errors, s.refused);

    /* The acked log lists every finished record once. */
    FILE *f = fopen(log_path, "r");
    assert_non_null(f);
    char line[256];
    uint64_t acked = 0, refused = 0;
    while (fgets(line, sizeof line, f)) {
        char vin[64], txid[128], flag[8];
        int n = sscanf(line, "%63s %127s %7s", vin, txid, flag);
        assert_true(n == 2 || (n == 3 && strcmp(flag, "E") == 0));
        assert_int_equal(strncmp(txid, vin, strlen(vin)), 0);
        if (n == 2)
            acked++;
        else
            refused++;
    }
    fclose(f);
    assert_int_equal(acked, st.acked);
    assert_int_equal(refused, st.errors);
    rm_rf(root);
}

/* No server: the run ends after the drain with everything unacked, generation paused at
 * max_inflight, and a reason logged. */
static void test_unreachable_server(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/fv-test-sim-XXXXXX";
    char *root = mkdtemp(tmpl);
    assert_non_null(root);
    char dir[256], err[1024];
    snprintf(dir, sizeof dir, "%s/certs", root);
    assert_int_equal(fv_certs_init(dir, err, sizeof err), FV_OK);
    /* A port that is closed: bind, read the port, close. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    char url[64];
    snprintf(url, sizeof url, "wss://127.0.0.1:%d", ntohs(a.sin_port));
    struct fv_sim_opts o;
    fv_sim_opts_default(&o);
    o.server = url;
    o.certs_dir = dir;
    o.vehicles = 2;
    o.seconds = 0.5;
    o.hz = 4;
    o.drain_s = 0.5;
    o.progress = 0;
    o.max_inflight = 1; /* generation pauses at one unacked record per vehicle */
    struct fv_sim_stats st;
    assert_int_equal(fv_sim_run(&o, &st, err, sizeof err), FV_OK);
    assert_int_equal(st.sent, 2);
    assert_true(st.paused >= 1);
    assert_int_equal(st.acked, 0);
    assert_int_equal(st.unacked, st.sent);
    assert_true(st.conn_failures >= 2);
    assert_int_equal(st.connected_peak, 0);
    /* Bad setups fail before running, with a reason. */
    o.certs_dir = root; /* no ca.crt there */
    assert_int_not_equal(fv_sim_run(&o, &st, err, sizeof err), FV_OK);
    assert_non_null(strstr(err, "certs init"));
    o.certs_dir = dir;
    o.server = "wss://host.invalid:1";
    assert_int_not_equal(fv_sim_run(&o, &st, err, sizeof err), FV_OK);
    assert_non_null(strstr(err, "resolve"));
    rm_rf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_against_scripted_server),
        cmocka_unit_test(test_unreachable_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
