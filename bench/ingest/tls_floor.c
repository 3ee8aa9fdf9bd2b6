/*
 * tls_floor.c - the memory peer for bench/ingest: the least a server can hold per connected
 * device. A bare OpenSSL 3 server (epoll, non-blocking) that requires and verifies client
 * certificates, uses SSL_MODE_RELEASE_BUFFERS, answers the WebSocket upgrade, then reads and
 * discards frames. No protocol, no storage: whatever fleetvault uses beyond this per
 * connection is its own overhead.
 *   tls_floor CERTS_DIR PORT
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

struct conn {
    SSL *ssl;
    int fd;
    int upgraded;
    char req[2048];
    size_t reqlen;
};

static void upgrade(struct conn *c)
{
    c->req[c->reqlen] = '\0';
    char *k = strcasestr(c->req, "Sec-WebSocket-Key:");
    if (k == NULL) return;
    k += 18;
    while (*k == ' ')
        k++;
    char key[128];
    size_t n = strcspn(k, "\r\n");
    if (n > 64) return;
    snprintf(key, sizeof key, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)n, k);
    unsigned char sha[SHA_DIGEST_LENGTH];
    SHA1((unsigned char *)key, strlen(key), sha);
    unsigned char acc[64];
    EVP_EncodeBlock(acc, sha, sizeof sha);
    char resp[256];
    int len = snprintf(resp, sizeof resp,
                       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                       acc);
    SSL_write(c->ssl, resp, len);
    c->upgraded = 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: tls_floor CERTS_DIR PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    char p[4096];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    snprintf(p, sizeof p, "%s/server.crt", argv[1]);
    if (SSL_CTX_use_certificate_chain_file(ctx, p) != 1) return 1;
    snprintf(p, sizeof p, "%s/server.key", argv[1]);
    if (SSL_CTX_use_PrivateKey_file(ctx, p, SSL_FILETYPE_PEM) != 1) return 1;
    snprintf(p, sizeof p, "%s/ca.crt", argv[1]);
    if (SSL_CTX_load_verify_locations(ctx, p, NULL) != 1) return 1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(argv[2])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 4096) != 0) {
        perror("bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    fprintf(stderr, "tls_floor listening on 127.0.0.1:%s\n", argv[2]);
    struct epoll_event evs[256];
    char buf[16384];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    c->ssl = SSL_new(ctx);
                    SSL_set_fd(c->ssl, fd);
                    SSL_set_accept_state(c->ssl);
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            for (;;) {
                int r = SSL_read(c->ssl, buf, sizeof buf);
                if (r > 0) {
                    if (!c->upgraded && c->reqlen + (size_t)r < sizeof c->req) {
                        memcpy(c->req + c->reqlen, buf, (size_t)r);
                        c->reqlen += (size_t)r;
                        c->req[c->reqlen] = '\0';
                        if (strstr(c->req, "\r\n\r\n")) upgrade(c);
                    }
                    continue;
                }
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                SSL_free(c->ssl);
                close(c->fd);
                free(c);
                break;
            }
        }
    }
}
