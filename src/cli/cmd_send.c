/*
 * cmd_send.c - `fleetvault send`: sends files as WebSocket messages over one mutual-TLS
 * connection and prints each reply as a JSON line. A debugging and test tool: it reuses the
 * simulator's WebSocket client (sim/wsclient.h) and mints the client certificate for --id in
 * memory from the development CA (crypto/certs.h), so no device files are needed.
 *
 * Output: one line per file on stdout: the decoded reply envelope
 *   {"message_type":5,"txid":"...","topic":"...","payload":"..."}
 * (strings JSON-escaped byte by byte; bytes >= 0x80 as \u00XX), or {"reply_hex":"..."}
 * when the reply is not an envelope, or {"timeout":true} when none came within 5 s.
 * Exit status: 0 every file got a reply, 1 otherwise (or connection failure), 2 usage.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <arpa/inet.h>

#include "cli/commands.h"
#include "crypto/certs.h"
#include "sim/simulate.h"
#include "sim/wsclient.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "wire/envelope.h"

#define REPLY_WAIT_MS   5000
#define CONNECT_WAIT_MS 10000
#define MAX_FILE        (16u << 20)

struct reply {
    struct fv_buf data;
    int have;
    unsigned opcode;
};

static int on_reply(void *ud, unsigned opcode, const unsigned char *p, size_t len)
{
    struct reply *r = ud;
    if (r->have) return 0; /* one reply per message sent; later ones are ignored */
    r->have = 1;
    r->opcode = opcode;
    r->data.len = 0;
    return fv_buf_append(&r->data, p, len);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetvault send --server wss://HOST:PORT --certs DIR --id ID [--type T]\n"
               "                       [--text] FILE...\n\n"
               "Sends each FILE as one binary WebSocket message (text with --text) over a\n"
               "connection authenticated as device ID (certificate minted from DIR's CA, type\n"
               "T, default vehicle_device), and prints each reply as one JSON line:\n"
               "  {\"message_type\":5,\"txid\":\"...\",\"topic\":\"...\",\"payload\":\"...\"}\n"
               "Waits up to 5 s per reply. Exit status: 0 all replied, 1 otherwise, 2 usage.\n");
}

static void json_str(FILE *f, const unsigned char *p, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void print_reply(const struct reply *r)
{
    struct fv_envelope env;
    char err[128];
    if (r->opcode != FV_WS_BINARY ||
        fv_envelope_decode(r->data.data, r->data.len, &env, err, sizeof err) != FV_OK) {
        printf("{\"reply_hex\":\"");
        for (size_t i = 0; i < r->data.len; i++)
            printf("%02x", r->data.data[i]);
        printf("\"}\n");
        return;
    }
    printf("{\"message_type\":%u,\"txid\":", env.message_type);
    json_str(stdout, env.txid.p, env.txid.present ? env.txid.len : 0);
    printf(",\"topic\":");
    json_str(stdout, env.topic.p, env.topic.present ? env.topic.len : 0);
    printf(",\"payload\":");
    int pl = env.message_type == FV_MSG_STREAM && env.has_message && env.payload.present;
    json_str(stdout, env.payload.p, pl ? env.payload.len : 0);
    printf("}\n");
}

/* Drives the connection until done(r) or the deadline; FV_EAGAIN on timeout. */
static int wait_for(struct fv_sim_ws *ws, struct reply *r, int want_reply, uint64_t deadline_ms,
                    char *err, size_t errlen)
{
    for (;;) {
        if (want_reply ? r->have : fv_sim_ws_state(ws) == FV_SIM_WS_OPEN) return FV_OK;
        uint64_t now = fv_mono_ns() / 1000000u;
        if (now >= deadline_ms) return FV_EAGAIN;
        uint32_t ev = fv_sim_ws_events(ws);
        struct pollfd pfd = {
            .fd = fv_sim_ws_fd(ws),
            .events = (short)(((ev & EPOLLIN) ? POLLIN : 0) | ((ev & EPOLLOUT) ? POLLOUT : 0))};
        int n = poll(&pfd, 1, (int)(deadline_ms - now));
        if (n < 0 && errno != EINTR) {
            fv_seterr(err, errlen, "poll: %s", strerror(errno));
            return FV_EIO;
        }
        int rc = fv_sim_ws_io(ws, on_reply, r, err, errlen);
        if (rc) return rc;
    }
}

static int read_file(const char *path, struct fv_buf *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fv_seterr(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return FV_EIO;
    }
    int rc = FV_OK;
    out->len = 0;
    unsigned char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > MAX_FILE) {
            fv_seterr(err, errlen, "%s is larger than %u bytes", path, MAX_FILE);
            rc = FV_ELIMIT;
            goto done;
        }
        if ((rc = fv_buf_append(out, chunk, n))) {
            fv_seterr(err, errlen, "out of memory reading %s", path);
            goto done;
        }
    }
    if (ferror(f)) {
        fv_seterr(err, errlen, "cannot read %s: %s", path, strerror(errno));
        rc = FV_EIO;
    }
done:
    fclose(f);
    return rc;
}

int fv_cmd_send(int argc, char **argv)
{
    const char *server = NULL, *certs = NULL, *id = NULL, *type = "vehicle_device";
    int text = 0, nfiles = 0, status = 2;
    struct fv_ca *ca = NULL;
    SSL_CTX *ctx = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    struct fv_sim_ws *ws = NULL;
    struct reply rep = {0};
    struct fv_buf body = {0};
    struct addrinfo *ai = NULL;
    char **files = calloc((size_t)argc + 1, sizeof *files);
    if (files == NULL) {
        fprintf(stderr, "fleetvault send: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            status = 0;
            goto out;
        } else if (strcmp(a, "--text") == 0) {
            text = 1;
        } else if (strcmp(a, "--server") == 0 || strcmp(a, "--certs") == 0 ||
                   strcmp(a, "--id") == 0 || strcmp(a, "--type") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "fleetvault send: %s needs a value\n", a);
                goto out;
            }
            const char *v = argv[++i];
            if (a[2] == 's')
                server = v;
            else if (a[2] == 'c')
                certs = v;
            else if (a[2] == 'i')
                id = v;
            else
                type = v;
        } else if (strncmp(a, "--", 2) == 0) {
            fprintf(stderr, "fleetvault send: unknown option '%s' (see --help)\n", a);
            goto out;
        } else {
            files[nfiles++] = argv[i];
        }
    }
    if (!server || !certs || !id || nfiles == 0) {
        fprintf(stderr, "fleetvault send: --server, --certs, --id and a FILE are required\n\n");
        usage(stderr);
        goto out;
    }
    int type_code = fv_client_type_code(type);
    if (type_code < 0) {
        fprintf(stderr,
                "fleetvault send: unknown client type '%s' (e.g. vehicle_device, "
                "energy_device)\n",
                type);
        goto out;
    }
    if (!fv_device_id_valid(id)) {
        fprintf(stderr, "fleetvault send: invalid id '%s' (1..64 of A-Z a-z 0-9 _ -)\n", id);
        goto out;
    }
    char host[256], port[16], hostport[300], path[512], err[1024];
    if (fv_sim_parse_url(server, host, sizeof host, port, sizeof port, hostport, sizeof hostport,
                         path, sizeof path, err, sizeof err)) {
        fprintf(stderr, "fleetvault send: %s\n", err);
        goto out;
    }

    status = 1;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g != 0 || ai == NULL) {
        fprintf(stderr, "fleetvault send: cannot resolve '%s': %s\n", host,
                g ? gai_strerror(g) : "no address");
        goto out;
    }
    char ca_file[4096];
    snprintf(ca_file, sizeof ca_file, "%s/ca.crt", certs);
    if (fv_ca_load(certs, &ca, err, sizeof err) ||
        fv_ca_mint(ca, id, type_code, &cert, &key, err, sizeof err) ||
        fv_sim_ws_ctx_new(ca_file, host, &ctx, err, sizeof err)) {
        fprintf(stderr, "fleetvault send: %s\n", err);
        goto out;
    }
    if (fv_sim_ws_new(&ws)) {
        fprintf(stderr, "fleetvault send: out of memory\n");
        goto out;
    }
    unsigned char ipbuf[16];
    int is_ip = inet_pton(AF_INET, host, ipbuf) == 1 || inet_pton(AF_INET6, host, ipbuf) == 1;
    char headers[256];
    snprintf(headers, sizeof headers,
             "X-Network-Interface: wifi\r\nUser-Agent: Hermes/1.16.2 (%s)\r\n"
             "Version: 2025.20\r\n",
             type);
    struct fv_sim_ws_target t = {ai->ai_addr,         ai->ai_addrlen, hostport,
                                 is_ip ? NULL : host, path,           headers};
    uint64_t deadline = fv_mono_ns() / 1000000u + CONNECT_WAIT_MS;
    int rc = fv_sim_ws_connect(ws, ctx, &t, cert, key, err, sizeof err);
    if (rc == FV_OK) rc = wait_for(ws, &rep, 0, deadline, err, sizeof err);
    if (rc) {
        fprintf(stderr, "fleetvault send: %s: %s\n", hostport,
                rc == FV_EAGAIN ? "timed out connecting" : err);
        goto out;
    }
    int replied = 0;
    for (int i = 0; i < nfiles; i++) {
        if (read_file(files[i], &body, err, sizeof err)) {
            fprintf(stderr, "fleetvault send: %s\n", err);
            goto out;
        }
        rep.have = 0;
        if (fv_sim_ws_send(ws, text ? FV_WS_TEXT : FV_WS_BINARY, body.data, body.len)) {
            fprintf(stderr, "fleetvault send: out of memory\n");
            goto out;
        }
        rc = wait_for(ws, &rep, 1, fv_mono_ns() / 1000000u + REPLY_WAIT_MS, err, sizeof err);
        if (rep.have) {
            print_reply(&rep);
            replied++;
        } else if (rc == FV_EAGAIN) {
            printf("{\"timeout\":true}\n");
        }
        fflush(stdout);
        if (rc && rc != FV_EAGAIN) {
            fprintf(stderr, "fleetvault send: %s: %s (after %s)\n", hostport, err, files[i]);
            goto out;
        }
    }
    if (fv_sim_ws_start_close(ws, 1000) == FV_OK)
        (void)wait_for(ws, &rep, 1, fv_mono_ns() / 1000000u + 500, err, sizeof err);
    status = replied == nfiles ? 0 : 1;
out:
    fv_sim_ws_free(ws);
    fv_buf_free(&rep.data);
    fv_buf_free(&body);
    X509_free(cert);
    EVP_PKEY_free(key);
    SSL_CTX_free(ctx);
    fv_ca_free(ca);
    if (ai) freeaddrinfo(ai);
    free(files);
    return status;
}
