/*
 * simulate.h - the fleet simulator's run loop (`fleetvault simulate`): N vehicles, each on
 * its own mutually-authenticated WebSocket-over-TLS connection, stream `V` records at R Hz
 * for S seconds, resend until acked, then drain and report.
 *
 * Delivery contract: a record is generated once (txid "<vin>-<run>-<seq>", stable across
 * resends) and kept until the server acks it (message_type 5) or refuses it (an error reply,
 * message_type 4). It is resent, with is_resend set, after every reconnect and when no
 * reply came within the resend timeout. Generation pauses for a vehicle while it holds
 * max_inflight unfinished records.
 *
 * Threading: fv_sim_run runs on the calling thread (one epoll loop, non-blocking sockets);
 * the only cross-context input is opts->stop, set from a signal handler.
 */
#ifndef FV_SIM_SIMULATE_H
#define FV_SIM_SIMULATE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct fv_sim_opts {
    const char *server;    /* wss://HOST[:PORT][/PATH] */
    const char *certs_dir; /* made by `fleetvault certs init` */
    uint32_t vehicles;
    double seconds;        /* generation time */
    double hz;             /* records per second per vehicle */
    uint32_t signals;      /* datums per record (first K of the model's list) */
    double drain_s;        /* wait for outstanding acks after generation */
    const char *acked_log; /* append "VIN TXID" / "VIN TXID E" lines, or NULL */
    uint64_t seed;         /* vehicle model seed */
    const char *id_prefix; /* VIN prefix */
    double connect_rate;   /* new connections per second, 0 = unlimited */
    uint32_t max_inflight; /* unfinished records per vehicle before generation pauses */
    double resend_after_s; /* resend a record unanswered this long */
    double handshake_timeout_s;
    int progress;                      /* print a progress line on stderr every second */
    const volatile sig_atomic_t *stop; /* nonzero: stop generating, report, return */
};

/* Fills o with the defaults (K 20, drain 30 s, prefix "5YJSIM", seed 1, 1000 conn/s,
 * 1000 in flight, resend after 5 s, handshake timeout 10 s, progress on). */
void fv_sim_opts_default(struct fv_sim_opts *o);

struct fv_sim_stats {
    uint64_t sent;       /* distinct records generated */
    uint64_t acked;      /* distinct records acked */
    uint64_t errors;     /* distinct records refused by the server */
    uint64_t datums;     /* datums in acked records */
    uint64_t unacked;    /* records neither acked nor refused at the end */
    uint64_t resent;     /* retransmissions */
    uint64_t reconnects; /* connection attempts after a vehicle's first */
    uint64_t conn_failures;
    uint64_t paused;   /* ticks skipped because a vehicle had max_inflight in flight */
    uint64_t lagged;   /* ticks skipped because the loop fell behind */
    uint64_t dup_acks; /* replies for records already finished */
    uint64_t bad_replies;
    uint32_t vehicles;
    uint32_t connected_peak;
    double ack_p50_ms, ack_p99_ms, ack_max_ms; /* first send -> ack */
    double elapsed_s;
    double peak_rss_mb;
    int interrupted;
};

/*
 * Splits a wss:// URL. host gets the name or address without IPv6 brackets, hostport the
 * "host:port" form for the Host header, path defaults to "/", port to 443. FV_EINVAL with
 * a reason for anything else.
 */
int fv_sim_parse_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen,
                     char *hostport, size_t hostportlen, char *path, size_t pathlen, char *err,
                     size_t errlen);

/*
 * Runs the simulation. FV_OK when the run happened (whether or not all records were acked:
 * see st->unacked); a negative code with a reason in err when it could not start (bad URL,
 * unresolvable host, unreadable certificates, acked log not writable) or hit a fatal error
 * (out of memory). st is filled in either case as far as the run got.
 */
int fv_sim_run(const struct fv_sim_opts *o, struct fv_sim_stats *st, char *err, size_t errlen);

/* Prints the final JSON line: sent, acked, errors, datums, ack_p50_ms, ack_p99_ms first, then
 * the other counters. */
void fv_sim_stats_print_json(const struct fv_sim_stats *st, FILE *f);

#endif
