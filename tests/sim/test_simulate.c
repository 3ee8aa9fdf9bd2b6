/* test_simulate.c - the simulator's run loop (src/sim/simulate.c) against a scripted
 * in-process server: a threaded mutual-TLS WebSocket server that checks what a device sends
 * (upgrade headers, masked frames, envelope fields, certificate CN = device_id = payload vin)
 * and misbehaves on purpose:
 *   - refuses every record whose seq % 7 == 3 (error reply) -> counted in "errors", not resent;
 *   - ignores vehicle 0's record 5 the first time -> resent after the timeout, is_resend set;
 *   - drops vehicle 1's connection once, at its record 4 -> reconnect, resend, all acked.
 * The run must end with sent == acked + errors, nothing unacked, and an acked log that lists
 * exactly the acked ("VIN TXID CREATED_MS") and refused ("VIN TXID E") records. The same server
 * also takes a virtual-time run, whose line-protocol file must match a run without a server byte
 * for byte. Jitter and the line-protocol writer are tested on their own. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
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
#include "util/clock.h"
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
    uint64_t min_created_ms, max_created_ms; /* over the V payloads seen */
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
    int rc = fv_ws_frame_encode(&f, opcode, 1, p, len, NULL);
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
    uint64_t created_ms = bad ? 0 : r.created_at_ms;
    fv_vrecord_free(&r);

    int action = 0; /* 0 ack, 1 refuse, 2 ignore, 3 drop */
    pthread_mutex_lock(&s->mu);
    s->records++;
    if (!bad && (s->min_created_ms == 0 || created_ms < s->min_created_ms))
        s->min_created_ms = created_ms;
    if (!bad && created_ms > s->max_created_ms) s->max_created_ms = created_ms;
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
    if (rc == 0 && out.len) rc = send_frame(ssl, FV_WS_BINARY, out.data, out.len);
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
            struct fv_ws_frame f;
            char err[128];
            int rc = fv_ws_frame_parse(in.data + off, in.len - off, 1u << 20, &f, err, sizeof err);
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
            fv_ws_mask(pl, len, f.mask, 0);
            if (f.opcode == FV_WS_CLOSE) {
                send_frame(ssl, FV_WS_CLOSE, pl, len < 2 ? len : 2);
                quit = 1;
                break;
            }
            if (f.opcode == FV_WS_BINARY && handle_record(s, ssl, cn, pl, len) < 0) {
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
    uint64_t t_start_ms = fv_now_ms();
    int rc = fv_sim_run(&o, &st, err, sizeof err);
    uint64_t t_end_ms = fv_now_ms();
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

    /* The acked log lists every finished record once: "VIN TXID CREATED_MS" when acked
     * (the record's wall-clock time, within this run), "VIN TXID E" when refused. */
    FILE *f = fopen(log_path, "r");
    assert_non_null(f);
    char line[256];
    uint64_t acked = 0, refused = 0;
    while (fgets(line, sizeof line, f)) {
        char vin[64], txid[128], third[32], extra[8];
        int n = sscanf(line, "%63s %127s %31s %7s", vin, txid, third, extra);
        assert_int_equal(n, 3);
        assert_int_equal(strncmp(txid, vin, strlen(vin)), 0);
        if (strcmp(third, "E") == 0) {
            refused++;
            continue;
        }
        char *end;
        unsigned long long ms = strtoull(third, &end, 10);
        assert_true(*end == '\0' && ms >= t_start_ms && ms <= t_end_ms);
        acked++;
    }
    fclose(f);
    assert_int_equal(acked, st.acked);
    assert_int_equal(refused, st.errors);
    rm_rf(root);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Wall-clock stamps are distinct per vehicle (simulate_int.h R7): at 1,000 Hz the loop
 * makes ticks within one millisecond of each other all the time (one late, the next on
 * the grid), which gave two of a vehicle's records the same created_at; test_crash_store
 * counted such a pair as a record stored twice. Every acked time of a vehicle is distinct,
 * and they stay within the run (plus the 1 ms steps taken past the clock). */
static void test_wall_clock_stamps_distinct(void **state)
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
    o.vehicles = 2;
    o.seconds = 0.5;
    o.hz = 1000;
    o.drain_s = 20;
    o.acked_log = log_path;
    o.connect_rate = 0;
    o.resend_after_s = 0.3;
    o.progress = 0;
    struct fv_sim_stats st;
    uint64_t t_start_ms = fv_now_ms();
    int rc = fv_sim_run(&o, &st, err, sizeof err);
    uint64_t t_end_ms = fv_now_ms();
    if (rc) fprintf(stderr, "fv_sim_run: %s\n", err);
    assert_int_equal(rc, FV_OK);
    server_stop(&s);
    assert_int_equal(st.unacked, 0);
    assert_true(st.acked >= 100);

    /* Each vehicle's acked times, sorted: none repeated. */
    char vins[2][64] = {"", ""};
    uint64_t *ms[2] = {calloc(st.sent, sizeof(uint64_t)), calloc(st.sent, sizeof(uint64_t))};
    size_t n[2] = {0, 0};
    assert_non_null(ms[0]);
    assert_non_null(ms[1]);
    FILE *f = fopen(log_path, "r");
    assert_non_null(f);
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char vin[64], txid[128], third[32];
        assert_int_equal(sscanf(line, "%63s %127s %31s", vin, txid, third), 3);
        if (strcmp(third, "E") == 0) continue;
        int k = vins[0][0] == '\0' || strcmp(vins[0], vin) == 0 ? 0 : 1;
        if (vins[k][0] == '\0') snprintf(vins[k], sizeof vins[k], "%s", vin);
        assert_string_equal(vins[k], vin);
        assert_true(n[k] < st.sent);
        ms[k][n[k]++] = strtoull(third, NULL, 10);
    }
    fclose(f);
    assert_int_equal(n[0] + n[1], st.acked);
    size_t same = 0;
    for (int k = 0; k < 2; k++) {
        qsort(ms[k], n[k], sizeof *ms[k], cmp_u64);
        for (size_t i = 1; i < n[k]; i++)
            same += ms[k][i] == ms[k][i - 1];
        if (n[k]) {
            assert_true(ms[k][0] >= t_start_ms);
            assert_true(ms[k][n[k] - 1] <= t_end_ms + n[k]);
        }
        free(ms[k]);
    }
    if (same) fprintf(stderr, "%zu acked records share a vehicle's time\n", same);
    assert_int_equal(same, 0);
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

/* Reads a whole file into a NUL-terminated heap string (*len without the NUL). */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct fv_buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(fv_buf_append(&b, chunk, n), FV_OK);
    assert_int_equal(ferror(f), 0);
    fclose(f);
    assert_int_equal(fv_buf_append(&b, "", 1), FV_OK);
    *len = b.len - 1;
    return (char *)b.data;
}

/* Jitter: a pure function of (seed, vehicle, k), within [-J, +J], reaching both ends, and
 * different for another seed. */
static void test_jitter(void **state)
{
    (void)state;
    static const uint32_t js[] = {1, 20, 1000};
    for (size_t t = 0; t < sizeof js / sizeof js[0]; t++) {
        uint32_t j = js[t];
        int64_t lo = INT64_MAX, hi = INT64_MIN;
        double sum = 0;
        int differs = 0;
        for (uint32_t v = 0; v < 50; v++) {
            for (uint64_t k = 0; k < 400; k++) {
                int64_t a = fv_sim_jitter_ms(7, v, k, j);
                assert_int_equal(a, fv_sim_jitter_ms(7, v, k, j));
                assert_true(a >= -(int64_t)j && a <= (int64_t)j);
                differs |= a != fv_sim_jitter_ms(8, v, k, j);
                lo = a < lo ? a : lo;
                hi = a > hi ? a : hi;
                sum += (double)a;
            }
        }
        assert_int_equal(lo, -(int64_t)j); /* 20,000 draws reach both ends */
        assert_int_equal(hi, (int64_t)j);
        assert_true(differs);
        assert_true(fabs(sum / 20000.0) < 0.05 * j + 0.1); /* centred on 0 */
    }
    for (uint64_t k = 0; k < 100; k++)
        assert_int_equal(fv_sim_jitter_ms(1, 3, k, 0), 0);
    /* Known values pin the hash: a change would silently change every benchmark dataset. */
    assert_int_equal(fv_sim_jitter_ms(1, 0, 0, 20), -16);

    /* Virtual time: start + k * period + jitter, clamped at 0. */
    struct fv_sim_opts o;
    fv_sim_opts_default(&o);
    o.hz = 4;
    o.virtual_time = 1;
    o.virtual_start_ms = 1000000;
    for (uint64_t k = 0; k < 10; k++)
        assert_int_equal(fv_sim_virtual_ms(&o, 2, k), 1000000 + 250 * k);
    o.jitter_ms = 20;
    for (uint64_t k = 0; k < 10; k++)
        assert_int_equal(fv_sim_virtual_ms(&o, 2, k),
                         1000000 + 250 * k + fv_sim_jitter_ms(o.seed, 2, k, 20));
    o.virtual_start_ms = 0;
    for (uint64_t k = 0; k < 50; k++) {
        int64_t want = (int64_t)(250 * k) + fv_sim_jitter_ms(o.seed, 0, k, 20);
        assert_int_equal(fv_sim_virtual_ms(&o, 0, k), (uint64_t)(want < 0 ? 0 : want));
    }
}

/* The line-protocol writer on hand-made datums of every kind. */
static void test_influx_line(void **state)
{
    (void)state;
    struct fv_datum d[12];
    memset(d, 0, sizeof d);
    d[0].field = 4; /* VehicleSpeed */
    d[0].value.kind = FV_VK_DOUBLE;
    d[0].value.u.d = 12.3;
    d[1].field = 8; /* Soc: needs all 17 digits */
    d[1].value.kind = FV_VK_DOUBLE;
    d[1].value.u.d = 0.1 + 0.2;
    d[2].field = 10; /* Gear, an enum */
    d[2].value.kind = FV_VK_ENUM;
    d[2].value.u.i = 2;
    d[3].field = 38; /* ChargeLimitSoc */
    d[3].value.kind = FV_VK_INT;
    d[3].value.u.i = -80;
    d[4].field = 59; /* Locked */
    d[4].value.kind = FV_VK_BOOL;
    d[4].value.u.i = 1;
    d[5].field = 13; /* BrakePedal */
    d[5].value.kind = FV_VK_BOOL;
    d[5].value.u.i = 0;
    d[6].field = 21; /* Location */
    d[6].value.kind = FV_VK_LOCATION;
    d[6].value.u.loc.lat = 37.396443;
    d[6].value.u.loc.lon = -122.23118;
    d[7].field = 2; /* ChargeState, a string with a quote and a backslash */
    d[7].value.kind = FV_VK_STRING;
    d[7].value.u.s = (char *)"Char\"ging\\";
    d[8].field = 11; /* no value: left out */
    d[8].value.kind = FV_VK_INVALID;
    d[9].field = 6; /* not finite: left out */
    d[9].value.kind = FV_VK_DOUBLE;
    d[9].value.u.d = NAN;
    d[10].field = 999999; /* no name in the table: its number; 1e+300 is shortest */
    d[10].value.kind = FV_VK_DOUBLE;
    d[10].value.u.d = 1e300;
    d[11].field = 5; /* Odometer: 15 digits suffice */
    d[11].value.kind = FV_VK_DOUBLE;
    d[11].value.u.d = 76656.006;
    struct fv_buf b = {0};
    assert_int_equal(fv_sim_influx_line(&b, "5YJSIM00000000007", d, 12, 1764000000123ULL), FV_OK);
    const char *want = "telemetry,vin=5YJSIM00000000007 VehicleSpeed=12.3,"
                       "Soc=0.30000000000000004,Gear=2i,ChargeLimitSoc=-80i,Locked=true,"
                       "BrakePedal=false,Location_lat=37.396443,Location_lon=-122.23118,"
                       "ChargeState=\"Char\\\"ging\\\\\",999999=1e+300,"
                       "Odometer=76656.006 1764000000123\n";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    /* Every double printed reads back as itself. */
    assert_true(strtod("0.30000000000000004", NULL) == 0.1 + 0.2);

    /* Tag values are escaped; a record with nothing to print appends nothing. */
    b.len = 0;
    assert_int_equal(fv_sim_influx_line(&b, "A B,C=D", d, 1, 5), FV_OK);
    const char *want2 = "telemetry,vin=A\\ B\\,C\\=D VehicleSpeed=12.3 5\n";
    assert_int_equal(b.len, strlen(want2));
    assert_memory_equal(b.data, want2, b.len);
    b.len = 0;
    assert_int_equal(fv_sim_influx_line(&b, "X", &d[8], 2, 5), FV_OK);
    assert_int_equal(b.len, 0);
    fv_buf_free(&b);
}

/* Without a server: the same options give the same bytes; another seed or jitter does not;
 * one line per record, in rounds (record k of every vehicle), stamped in virtual time. */
static void test_influx_offline(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/fv-test-sim-XXXXXX";
    char *root = mkdtemp(tmpl);
    assert_non_null(root);
    char path[4][256], err[1024];
    for (int i = 0; i < 4; i++)
        snprintf(path[i], sizeof path[i], "%s/out%d.lp", root, i);
    struct fv_sim_opts o;
    fv_sim_opts_default(&o);
    o.vehicles = 4;
    o.seconds = 30;
    o.hz = 2;
    o.progress = 0;
    o.no_server = 1;
    o.virtual_time = 1;
    o.virtual_start_ms = 1764000000000ULL;
    o.jitter_ms = 20;
    o.seed = 42;
    struct fv_sim_stats st;
    /* Needs virtual time and a file. */
    assert_int_equal(fv_sim_run(&o, &st, err, sizeof err), FV_EINVAL);
    for (int i = 0; i < 4; i++) {
        o.influx_path = path[i];
        o.seed = i == 2 ? 43 : 42;
        o.jitter_ms = i == 3 ? 0 : 20;
        assert_int_equal(fv_sim_run(&o, &st, err, sizeof err), FV_OK);
        assert_int_equal(st.sent, 4 * 60);
        assert_int_equal(st.datums_sent, 4 * 60 * 20);
        assert_int_equal(st.acked, 0);
        assert_int_equal(st.unacked, 0);
    }
    size_t len[4];
    char *text[4];
    for (int i = 0; i < 4; i++)
        text[i] = slurp(path[i], &len[i]);
    assert_int_equal(len[0], len[1]);
    assert_memory_equal(text[0], text[1], len[0]);
    assert_true(len[0] != len[2] || memcmp(text[0], text[2], len[0]) != 0);
    assert_true(len[0] != len[3] || memcmp(text[0], text[3], len[0]) != 0);
    /* Line n is record n / 4 of vehicle n % 4; jitter-free times are exact. */
    size_t n = 0;
    for (char *line = text[3], *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1, n++) {
        *nl = '\0';
        char vin[32];
        snprintf(vin, sizeof vin, "telemetry,vin=5YJSIM%011zu VehicleSpeed=", n % 4);
        assert_int_equal(strncmp(line, vin, strlen(vin)), 0);
        assert_non_null(strstr(line, ",Location_lat="));
        uint64_t ts = strtoull(strrchr(line, ' ') + 1, NULL, 10);
        assert_int_equal(ts, 1764000000000ULL + 500 * (n / 4));
    }
    assert_int_equal(n, 240);
    o.jitter_ms = 20; /* as text[0] was written */
    n = 0;
    for (char *line = text[0], *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1, n++) {
        *nl = '\0';
        uint64_t ts = strtoull(strrchr(line, ' ') + 1, NULL, 10);
        assert_int_equal(ts, fv_sim_virtual_ms(&o, (uint32_t)(n % 4), n / 4));
    }
    assert_int_equal(n, 240);
    for (int i = 0; i < 4; i++)
        free(text[i]);
    rm_rf(root);
}

/* Virtual time against the scripted server (refusals, an ignored record, a dropped
 * connection): exactly S*R records per vehicle, stamped in virtual time, all finished, and a
 * line-protocol file identical to the one written without a server. */
static void test_virtual_time_run(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/fv-test-sim-XXXXXX";
    char *root = mkdtemp(tmpl);
    assert_non_null(root);
    char dir[256], real[256], offline[256], err[1024];
    snprintf(dir, sizeof dir, "%s/certs", root);
    snprintf(real, sizeof real, "%s/real.lp", root);
    snprintf(offline, sizeof offline, "%s/offline.lp", root);
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
    o.seconds = 20; /* virtual: 40 records per vehicle, made as fast as the window allows */
    o.hz = 2;
    o.drain_s = 10;
    o.connect_rate = 0;
    o.resend_after_s = 0.3;
    o.progress = 0;
    o.max_inflight = 4;
    o.virtual_time = 1;
    o.virtual_start_ms = 1700000000000ULL;
    o.jitter_ms = 30;
    o.influx_path = real;
    struct fv_sim_stats st;
    int rc = fv_sim_run(&o, &st, err, sizeof err);
    if (rc) fprintf(stderr, "fv_sim_run: %s\n", err);
    assert_int_equal(rc, FV_OK);
    server_stop(&s);
    fv_sim_stats_print_json(&st, stderr);
    assert_int_equal(st.sent, 3 * 40);
    assert_int_equal(st.unacked, 0);
    assert_int_equal(st.sent, st.acked + st.errors);
    /* seq 3, 10, ..., 38 of each vehicle; the server may refuse one twice when the reply
     * was lost with the dropped connection (records go out back to back here). */
    assert_int_equal(st.errors, 3 * 6);
    assert_true(s.refused >= 3 * 6);
    assert_int_equal(s.ignored_once, 1);
    assert_true(s.resend_of_ignored >= 1);
    assert_int_equal(s.dropped_once, 1);
    assert_int_equal(s.bad_envelopes, 0);
    assert_int_equal(s.identity_mismatch, 0);
    assert_true(st.elapsed_s < 15); /* 20 virtual seconds took far less wall time */
    assert_true(s.min_created_ms >= o.virtual_start_ms - 30);
    assert_true(s.min_created_ms <= o.virtual_start_ms + 30);
    assert_true(s.max_created_ms >= o.virtual_start_ms + 39 * 500 - 30);
    assert_true(s.max_created_ms <= o.virtual_start_ms + 39 * 500 + 30);

    o.no_server = 1;
    o.influx_path = offline;
    assert_int_equal(fv_sim_run(&o, &st, err, sizeof err), FV_OK);
    size_t la, lb;
    char *a = slurp(real, &la), *b = slurp(offline, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    free(a);
    free(b);
    rm_rf(root);
}

int main(void)
{
    /* As `fleetvault` does: a write to a connection the server dropped must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_against_scripted_server),
        cmocka_unit_test(test_wall_clock_stamps_distinct),
        cmocka_unit_test(test_unreachable_server),
        cmocka_unit_test(test_jitter),
        cmocka_unit_test(test_influx_line),
        cmocka_unit_test(test_influx_offline),
        cmocka_unit_test(test_virtual_time_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
