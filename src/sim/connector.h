/*
 * connector.h - the simulator's TLS handshakes on a thread of their own.
 *
 * The simulator stands for vehicles that each do their own TLS handshake on their own
 * machine. On its one event loop, a burst of connections (200 vehicles within 0.2 s) would
 * put a few hundred milliseconds of client handshakes (key exchange, the server's chain
 * verified, the client's signature) between reading one ack and the next, and that wait
 * would be counted as the server's ack latency. So the connect and the TLS handshake of a
 * connection run here, on a thread with its own epoll set; the simulator's loop gets the
 * connection back in state UPGRADE (fv_sim_ws_handshake) and goes on with the WebSocket
 * upgrade and the records, on the loop, as before.
 *
 * Rules:
 *  C1 A submitted job's connection belongs to the connector until the job comes back from
 *     fv_sim_connector_take; the owner must not touch it (nor its fd) meanwhile.
 *  C2 A job comes back exactly once: done (state UPGRADE, rc FV_OK), failed (rc < 0, err
 *     set; the connection is left for the owner to close), timed out (its deadline passed:
 *     rc FV_EIO, "timed out connecting (TCP or TLS)"), or cancelled by
 *     fv_sim_connector_stop (rc FV_ESTATE, "closing").
 *  C3 The connector never reads application data and never calls the owner's callbacks.
 *  C4 Its thread runs FV_SIM_CONNECTOR_NICE nice levels below the process (lower priority):
 *     on a machine shared with the server, the handshakes - which real vehicles do on their
 *     own machines - yield the cores to the loop that reads and times the acks.
 *
 * Threads: submit, take, fd and stop from the owner's thread (the simulator's loop); the
 * connector's own thread runs the handshakes. OpenSSL objects move between the two only
 * through the job queues (under their mutex).
 */
#ifndef FV_SIM_CONNECTOR_H
#define FV_SIM_CONNECTOR_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "sim/wsclient.h"

struct fv_sim_connector;

#define FV_SIM_CONNECTOR_NICE 10

struct fv_sim_conn_job {
    /* set by the owner */
    void *owner;
    struct fv_sim_ws *ws; /* CLOSED */
    SSL_CTX *ctx;
    const struct fv_sim_ws_target *target; /* must outlive the job */
    X509 *cert;
    EVP_PKEY *key;
    uint64_t deadline_ns; /* fv_mono_ns() clock */
    /* set by the connector (C2) */
    int rc;
    char err[256];
    struct fv_sim_conn_job *next, *prev; /* the connector's (prev: in its active list) */
};

/* Starts the thread. FV_OK, or an error with err set. */
int fv_sim_connector_start(struct fv_sim_connector **out, char *err, size_t errlen);
/* An eventfd, readable while finished jobs wait to be taken (for the owner's epoll set). */
int fv_sim_connector_fd(const struct fv_sim_connector *c);
/* Hands a job over (C1). FV_OK, or FV_ESTATE once stopped. */
int fv_sim_connector_submit(struct fv_sim_connector *c, struct fv_sim_conn_job *job);
/* Takes the finished jobs (a list through ->next, oldest first), or NULL. */
struct fv_sim_conn_job *fv_sim_connector_take(struct fv_sim_connector *c);
/* Cancels every job in progress (C2) and stops the thread; their jobs are then taken with
 * fv_sim_connector_take. Idempotent. */
void fv_sim_connector_stop(struct fv_sim_connector *c);
/* Stops (if needed) and frees; jobs not taken are dropped (their connections untouched).
 * NULL is a no-op. */
void fv_sim_connector_free(struct fv_sim_connector *c);

#endif
