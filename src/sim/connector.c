/*
 * connector.c - the simulator's TLS handshakes on a thread of their own (contract and rules
 * C1-C3 in connector.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sim/connector.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/prio.h"

#define MAX_EVENTS 64
#define TICK_MS    20 /* how often deadlines are looked at while handshakes are in progress */

struct fv_sim_connector {
    pthread_t th;
    int started;
    int ep;      /* the thread's epoll set: the handshakes' fds and wake */
    int wake;    /* eventfd: a job was submitted, or stop */
    int done_fd; /* eventfd: finished jobs wait (the owner's) */
    pthread_mutex_t mu;
    struct fv_sim_conn_job *in_head, *in_tail;     /* submitted, under mu */
    struct fv_sim_conn_job *done_head, *done_tail; /* finished, under mu */
    int stopping;                                  /* under mu */
    struct fv_sim_conn_job *active;                /* the thread's own list */
};

static void push(struct fv_sim_conn_job **head, struct fv_sim_conn_job **tail,
                 struct fv_sim_conn_job *j)
{
    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

static void bump(int fd)
{
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(fd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
}

/* C2: hands a job back. The caller has unlinked it from the active list. */
static void finish(struct fv_sim_connector *c, struct fv_sim_conn_job *j, int rc, const char *why)
{
    int fd = fv_sim_ws_fd(j->ws);
    if (fd >= 0) (void)epoll_ctl(c->ep, EPOLL_CTL_DEL, fd, NULL);
    j->rc = rc;
    if (why) snprintf(j->err, sizeof j->err, "%s", why);
    pthread_mutex_lock(&c->mu);
    push(&c->done_head, &c->done_tail, j);
    pthread_mutex_unlock(&c->mu);
    bump(c->done_fd);
}

/* The active list is doubly linked: a finished handshake leaves it in O(1). */
static void unlink_active(struct fv_sim_connector *c, struct fv_sim_conn_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        c->active = j->next;
    if (j->next) j->next->prev = j->prev;
}

static int watch(struct fv_sim_connector *c, struct fv_sim_conn_job *j, int op)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = fv_sim_ws_events(j->ws);
    ev.data.ptr = j;
    return epoll_ctl(c->ep, op, fv_sim_ws_fd(j->ws), &ev);
}

/* One step of a job's handshake after an event on its fd. */
static void drive(struct fv_sim_connector *c, struct fv_sim_conn_job *j)
{
    int rc = fv_sim_ws_handshake(j->ws, j->err, sizeof j->err);
    if (rc == FV_OK && fv_sim_ws_state(j->ws) < FV_SIM_WS_UPGRADE &&
        watch(c, j, EPOLL_CTL_MOD) != 0) {
        rc = FV_EIO;
        snprintf(j->err, sizeof j->err, "epoll_ctl: %s", strerror(errno));
    }
    if (rc == FV_OK && fv_sim_ws_state(j->ws) < FV_SIM_WS_UPGRADE) return;
    unlink_active(c, j);
    finish(c, j, rc, NULL);
}

/* Starts the jobs submitted since the last turn; returns 1 when asked to stop. */
static int take_submitted(struct fv_sim_connector *c)
{
    pthread_mutex_lock(&c->mu);
    struct fv_sim_conn_job *j = c->in_head;
    c->in_head = c->in_tail = NULL;
    int stopping = c->stopping;
    pthread_mutex_unlock(&c->mu);
    while (j) {
        struct fv_sim_conn_job *next = j->next;
        if (stopping) {
            finish(c, j, FV_ESTATE, "closing");
        } else {
            int rc =
                fv_sim_ws_connect(j->ws, j->ctx, j->target, j->cert, j->key, j->err, sizeof j->err);
            if (rc == FV_OK && watch(c, j, EPOLL_CTL_ADD) != 0) {
                rc = FV_EIO;
                snprintf(j->err, sizeof j->err, "epoll_ctl: %s", strerror(errno));
            }
            if (rc) {
                finish(c, j, rc, NULL);
            } else {
                j->prev = NULL;
                j->next = c->active;
                if (c->active) c->active->prev = j;
                c->active = j;
            }
        }
        j = next;
    }
    return stopping;
}

static void *main_loop(void *arg)
{
    struct fv_sim_connector *c = arg;
    struct epoll_event evs[MAX_EVENTS];
    /* C4: below the loop that reads the acks (on the same cores the handshakes, which
     * vehicles do on their own machines, must not delay the clock reads). */
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);
    if (errno == 0)
        (void)fv_thread_set_nice(nice + FV_SIM_CONNECTOR_NICE > 19 ? 19
                                                                   : nice + FV_SIM_CONNECTOR_NICE);
    for (;;) {
        int stopping = take_submitted(c);
        if (stopping) {
            while (c->active) {
                struct fv_sim_conn_job *j = c->active;
                c->active = j->next;
                finish(c, j, FV_ESTATE, "closing");
            }
            return NULL;
        }
        int n = epoll_wait(c->ep, evs, MAX_EVENTS, c->active ? TICK_MS : -1);
        if (n < 0 && errno != EINTR) n = 0; /* nothing to do but look at deadlines */
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                uint64_t v;
                (void)!read(c->wake, &v, sizeof v);
                continue;
            }
            drive(c, evs[i].data.ptr);
        }
        uint64_t now = fv_mono_ns();
        for (struct fv_sim_conn_job *j = c->active, *next; j; j = next) {
            next = j->next;
            if (now < j->deadline_ns) continue;
            unlink_active(c, j);
            finish(c, j, FV_EIO, "timed out connecting (TCP or TLS)");
        }
    }
}

int fv_sim_connector_start(struct fv_sim_connector **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_sim_connector *c = calloc(1, sizeof *c);
    if (c == NULL) {
        fv_seterr(err, errlen, "out of memory");
        return FV_ENOMEM;
    }
    c->ep = c->wake = c->done_fd = -1;
    pthread_mutex_init(&c->mu, NULL);
    c->ep = epoll_create1(EPOLL_CLOEXEC);
    c->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (c->ep < 0 || c->wake < 0 || c->done_fd < 0 ||
        epoll_ctl(c->ep, EPOLL_CTL_ADD, c->wake, &ev) != 0) {
        fv_seterr(err, errlen, "connector: %s", strerror(errno));
        fv_sim_connector_free(c);
        return FV_EIO;
    }
    int e = pthread_create(&c->th, NULL, main_loop, c);
    if (e != 0) {
        fv_seterr(err, errlen, "connector thread: %s", strerror(e));
        fv_sim_connector_free(c);
        return FV_EIO;
    }
    c->started = 1;
    *out = c;
    return FV_OK;
}

int fv_sim_connector_fd(const struct fv_sim_connector *c)
{
    return c->done_fd;
}

int fv_sim_connector_submit(struct fv_sim_connector *c, struct fv_sim_conn_job *job)
{
    job->rc = 0;
    job->err[0] = 0;
    pthread_mutex_lock(&c->mu);
    int stopping = c->stopping;
    if (!stopping) push(&c->in_head, &c->in_tail, job);
    pthread_mutex_unlock(&c->mu);
    if (stopping) return FV_ESTATE;
    bump(c->wake);
    return FV_OK;
}

struct fv_sim_conn_job *fv_sim_connector_take(struct fv_sim_connector *c)
{
    uint64_t v;
    (void)!read(c->done_fd, &v, sizeof v); /* reset before taking: a later push bumps again */
    pthread_mutex_lock(&c->mu);
    struct fv_sim_conn_job *j = c->done_head;
    c->done_head = c->done_tail = NULL;
    pthread_mutex_unlock(&c->mu);
    return j;
}

void fv_sim_connector_stop(struct fv_sim_connector *c)
{
    if (c == NULL || !c->started) return;
    pthread_mutex_lock(&c->mu);
    c->stopping = 1;
    pthread_mutex_unlock(&c->mu);
    bump(c->wake);
    pthread_join(c->th, NULL);
    c->started = 0;
}

void fv_sim_connector_free(struct fv_sim_connector *c)
{
    if (c == NULL) return;
    fv_sim_connector_stop(c);
    if (c->ep >= 0) close(c->ep);
    if (c->wake >= 0) close(c->wake);
    if (c->done_fd >= 0) close(c->done_fd);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
