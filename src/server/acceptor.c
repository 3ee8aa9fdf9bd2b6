/*
 * acceptor.c - the devices' listening socket, accepted at a bounded pace per loop turn
 * (contract and rules A1-A4 in acceptor.h). Thread: the ingest loop only.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <libwebsockets.h>

#include "gateway/metrics.h"
#include "server/acceptor.h"
#include "util/err.h"
#include "util/log.h"

struct fv_acceptor {
    struct ev_loop *loop;
    struct lws_vhost *vh;
    int fd;
    unsigned per_turn;
    unsigned rate;  /* A5: connections per second, 0 none */
    double tokens;  /* A5: accepts allowed now (at most per_turn) */
    ev_tstamp last; /* A5: when tokens was last refilled (the loop's clock) */
    struct fv_metrics *m;
    ev_io io;
    ev_timer pause; /* A3, and A5's wait for a token */
};

static void hand_over(struct fv_acceptor *a, int cfd)
{
    int one = 1;
    /* acks are small writes that must leave at once (lws sets the same on its own accepts) */
    (void)setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    lws_sock_file_fd_type fd;
    fd.sockfd = cfd;
    /* NULL: lws could not take it and closed it (A2) */
    (void)lws_adopt_descriptor_vhost(a->vh, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | LWS_ADOPT_ALLOW_SSL,
                                     fd, NULL, NULL);
}

static void on_pause_end(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct fv_acceptor *a = t->data;
    ev_io_start(loop, &a->io);
}

static void on_listen(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct fv_acceptor *a = w->data;
    unsigned n = 0, failed = 0, allow = a->per_turn;
    if (a->rate) { /* A5 */
        ev_tstamp now = ev_now(loop);
        a->tokens += (now - a->last) * a->rate;
        if (a->tokens > a->per_turn) a->tokens = a->per_turn;
        a->last = now;
        allow = (unsigned)(a->tokens + 1e-6); /* (a timer due at 1.0 may read 0.99999) */
        if (allow == 0) {
            a->m->accept_paced++;
            ev_io_stop(loop, &a->io);
            ev_timer_set(&a->pause, (1.0 - a->tokens) / a->rate, 0.0);
            ev_timer_start(loop, &a->pause);
            return;
        }
        if (allow > a->per_turn) allow = a->per_turn;
    }
    while (n < allow) { /* A1 */
        int cfd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            /* A4: a connection's own failure (ECONNABORTED, EPROTO, ...) skips it, at most
             * FV_ACCEPT_SKIPS a turn; any other error (or too many) pauses, as A3 does,
             * rather than spinning on a socket that cannot be emptied */
            int own = errno == EINTR || errno == ECONNABORTED || errno == EPROTO ||
                      errno == EPERM || errno == ENETDOWN || errno == ENETUNREACH ||
                      errno == EHOSTDOWN || errno == EHOSTUNREACH || errno == ENOPROTOOPT ||
                      errno == EOPNOTSUPP || errno == ETIMEDOUT;
            if (own && ++failed <= FV_ACCEPT_SKIPS) continue;
            /* A3 */
            fv_warn("devices' listener: cannot accept (%s); pausing %d ms, connections stay "
                    "queued",
                    strerror(errno), FV_ACCEPT_PAUSE_MS);
            a->m->accept_pauses++;
            ev_io_stop(loop, &a->io);
            ev_timer_set(&a->pause, FV_ACCEPT_PAUSE_MS / 1000.0, 0.0);
            ev_timer_start(loop, &a->pause);
            break;
        }
        n++;
        hand_over(a, cfd);
    }
    a->tokens -= n;
    if (n == a->per_turn) { /* more waiting? (one poll, only when the turn was full) */
        struct pollfd p = {.fd = a->fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1) a->m->accept_full_turns++;
    }
}

int fv_acceptor_open(struct ev_loop *loop, struct lws_vhost *vh, const char *host, int port,
                     unsigned per_turn, unsigned rate, struct fv_metrics *m,
                     struct fv_acceptor **out, char *err, size_t errlen)
{
    *out = NULL;
    if (per_turn == 0 || port < 0 || port > 65535) {
        fv_seterr(err, errlen, "devices' listener: bad arguments (port %d, %u per turn)", port,
                  per_turn);
        return FV_EINVAL;
    }
    char svc[16];
    snprintf(svc, sizeof svc, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gr = getaddrinfo(host && *host ? host : NULL, svc, &hints, &res);
    if (gr != 0) {
        fv_seterr(err, errlen, "cannot listen for devices on %s:%d: %s", host, port,
                  gai_strerror(gr));
        return FV_EINVAL;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, FV_ACCEPT_BACKLOG) == 0) break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fv_seterr(err, errlen, "cannot listen for devices on %s:%d: %s", host, port,
                  strerror(saved ? saved : EADDRNOTAVAIL));
        return FV_EIO;
    }
    struct fv_acceptor *a = calloc(1, sizeof *a);
    if (a == NULL) {
        close(fd);
        fv_seterr(err, errlen, "out of memory");
        return FV_ENOMEM;
    }
    a->loop = loop;
    a->vh = vh;
    a->fd = fd;
    a->per_turn = per_turn;
    a->rate = rate;
    a->tokens = per_turn;
    a->last = ev_now(loop);
    a->m = m;
    ev_io_init(&a->io, on_listen, fd, EV_READ);
    a->io.data = a;
    ev_timer_init(&a->pause, on_pause_end, 0.0, 0.0);
    a->pause.data = a;
    ev_io_start(loop, &a->io);
    *out = a;
    return FV_OK;
}

void fv_acceptor_close(struct fv_acceptor *a)
{
    if (a == NULL) return;
    ev_io_stop(a->loop, &a->io);
    ev_timer_stop(a->loop, &a->pause);
    close(a->fd);
    free(a);
}
