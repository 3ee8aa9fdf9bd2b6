/*
 * acceptor.h - the devices' listening socket, accepted at a bounded pace per loop turn.
 *
 * libwebsockets, listening itself, accepts every connection waiting in the kernel's queue in
 * one loop turn, and the TLS handshakes of all of them then run on the ingest loop together:
 * 200 vehicles connecting within 0.2 s make turns of tens of milliseconds (about 0.3-0.5 ms of
 * ECDHE, a signature and two verifications per mutual-TLS handshake), and every connected
 * vehicle's ack waits for the turn to end. Instead fleetvault owns the listening socket: a
 * libev watcher on the ingest loop accepts at most `per_turn` connections each time the loop
 * turns and hands each to libwebsockets (lws_adopt_descriptor_vhost, TLS on, the vhost's
 * certificates and client-certificate rule), so a turn holds a bounded number of new
 * handshakes beside the records and acks of the vehicles already connected. The rest wait in
 * the kernel's queue (backlog FV_ACCEPT_BACKLOG; their TCP connection is already up), and the
 * loop takes them on its next turns, at most `rate` a second (A5): a burst is admitted
 * interleaved with the acks, spread in time, never dropped.
 *
 * Rules:
 *  A1 At most per_turn accept()s per watcher call (one call per loop turn while connections
 *     wait); per_turn 0 is refused (the caller keeps lws's own listener instead).
 *  A2 A connection lws cannot adopt is closed by lws; the acceptor goes on.
 *  A3 Out of descriptors (EMFILE, ENFILE), out of memory (ENOBUFS, ENOMEM), or any error
 *     A4 does not cover: the watcher stops for FV_ACCEPT_PAUSE_MS and tries again, instead of
 *     spinning on a socket it cannot empty; it says so in the log once per pause, and the
 *     waiting connections stay queued.
 *  A4 Errors a connection caused before it was accepted (ECONNABORTED, EPROTO, ...) skip it,
 *     at most FV_ACCEPT_SKIPS in one turn (more is A3).
 *  A5 With a rate (connections per second; 0: none), accepts also draw on a token bucket
 *     that refills at that rate and holds at most per_turn: with no token the watcher stops
 *     until the next one is due (a timer), and the wait is counted. Per turn alone, a loop
 *     that turns often admits a burst within a fraction of a second, and its handshakes' CPU
 *     then competes with the acks of the vehicles already connected wherever the cores are
 *     busy (the API under load: ack p99 15-106 ms for 200 vehicles joining at once on 2
 *     cores, 8.9 ms when they joined at 100 a second; bench/README.md).
 *
 * Thread: the ingest loop only (the watcher runs on it; open and close are called by the
 * server's start-up and shutdown on the thread that runs the loop).
 */
#ifndef FV_SERVER_ACCEPTOR_H
#define FV_SERVER_ACCEPTOR_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct lws_vhost;
struct fv_acceptor;
struct fv_metrics;

#define FV_ACCEPT_BACKLOG  4096
#define FV_ACCEPT_PAUSE_MS 100
#define FV_ACCEPT_SKIPS    16

/* Listens on host:port (a numeric address or a name) and starts the watcher on loop. It
 * counts in m: accept_full_turns (turns that stopped at per_turn with more still waiting),
 * accept_paced (A5 waits for a token) and accept_pauses (A3). Returns FV_OK, or an error
 * with err set (the address in use, a name that does not resolve). */
int fv_acceptor_open(struct ev_loop *loop, struct lws_vhost *vh, const char *host, int port,
                     unsigned per_turn, unsigned rate, struct fv_metrics *m,
                     struct fv_acceptor **out, char *err, size_t errlen);
/* Stops the watcher and closes the listening socket (connections already adopted are
 * libwebsockets'). NULL is a no-op. */
void fv_acceptor_close(struct fv_acceptor *a);

#endif
