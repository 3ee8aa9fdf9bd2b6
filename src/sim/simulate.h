/*
 * simulate.h - the fleet simulator's run loop (`fleetvault simulate`): N vehicles, each on
 * its own mutually-authenticated WebSocket-over-TLS connection, stream `V` records at R Hz
 * for S seconds, resend until acked, then drain and report.
 *
 * Time: by default a vehicle generates one record per 1/R s of wall-clock time, stamped with
 * the wall clock in milliseconds, each at least 1 ms after the vehicle's previous one (a loop
 * late by nearly a period makes two ticks within a millisecond). In virtual time
 * (opts.virtual_time) record k (0-based) of vehicle i is stamped start + round(k * 1000 / R)
 * ms, the model is stepped exactly 1/R s per record, and records are generated as fast as
 * the in-flight windows allow: the fleet advances in rounds
 * (record k of every vehicle, in vehicle order), a round starting once no vehicle holds
 * max_inflight unfinished records. S is then virtual seconds (round(S * R) records per
 * vehicle) and the run leaves generation once every round is made. Rounds keep the server's
 * input in time order across the fleet, as a real fleet's is, and make the order of
 * generated records a function of the options alone. Either way, opts.jitter_ms adds
 * fv_sim_jitter_ms(seed, i, k, J) to each created_at (clamped at 0).
 *
 * Line protocol (opts.influx_path): every generated record (once; never a resend) becomes
 * one line, in generation order, as fv_sim_influx_line writes it. In virtual time the file
 * is a pure function of the options, so opts.no_server (which needs virtual time) writes the
 * same bytes as a run against a server, without opening any connection.
 *
 * Delivery contract: a record is generated once (txid "<vin>-<run>-<seq>", stable across
 * resends) and kept until the server acks it (message_type 5) or refuses it (an error reply,
 * message_type 4). It is resent, with is_resend set, after every reconnect and when no
 * reply came within the resend timeout. Generation pauses for a vehicle while it holds
 * max_inflight unfinished records.
 *
 * Sites (opts.sites > 0; wall-clock time only, no line protocol): device n of the run is
 * vehicle n for n < vehicles, else site n - vehicles (id site_prefix + index). A site first
 * back-fills site_days days of history: one sample per 5 minutes from the last 5-minute
 * boundary before the start minus site_days days up to the start, stamped in that past and
 * made as fast as acks allow (64 in flight; as virtual time does for vehicles); then it samples
 * live at hz, stamped with the wall clock. GEN lasts S seconds and until every back-fill is
 * done (while any connection is open). Site records (topic `site`, device type energy_device)
 * follow the delivery contract above, except that a refusal for the rate limit is not final: the
 * record is sent again after the resend timeout. Commands (topic site_command) are applied to the
 * site's model (site.h) and answered by a `site_command_ack` record that is itself resent until
 * acked; a site in an outage, or whose window is full, answers nothing (the server resends).
 *
 * Threading: fv_sim_run runs on the calling thread (one epoll loop, non-blocking sockets);
 * the only cross-context input is opts->stop, set from a signal handler. The process must
 * ignore SIGPIPE (`fleetvault` does, in main): a write to a connection the server has just
 * closed would otherwise kill it.
 */
#ifndef FV_SIM_SIMULATE_H
#define FV_SIM_SIMULATE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/buf.h"
#include "wire/payload.h"

#define FV_SIM_SLOW_MS 10 /* --slow-log: acks slower than this are written */

struct fv_sim_opts {
    const char *server;    /* wss://HOST[:PORT][/PATH] */
    const char *certs_dir; /* made by `fleetvault certs init` */
    uint32_t vehicles;
    double seconds;        /* generation time */
    double hz;             /* records per second per vehicle */
    uint32_t signals;      /* datums per record (first K of the model's list) */
    double drain_s;        /* wait for outstanding acks after generation */
    const char *acked_log; /* append "VIN TXID CREATED_MS" / "VIN TXID E" lines, or NULL */
    const char *slow_log;  /* append "SECONDS_SINCE_START ACK_MS VIN" per ack slower than
                              FV_SIM_SLOW_MS (where in a run the slow acks fall), or NULL */
    uint64_t seed;         /* vehicle model seed */
    const char *id_prefix; /* VIN prefix */
    double connect_rate;   /* new connections per second, 0 = unlimited */
    uint32_t max_inflight; /* unfinished records per vehicle before generation pauses */
    double resend_after_s; /* resend a record unanswered this long */
    double handshake_timeout_s;
    int progress;                      /* print a progress line on stderr every second */
    int virtual_time;                  /* nonzero: virtual time (top comment) */
    uint64_t virtual_start_ms;         /* created_at of every vehicle's record 0 */
    uint32_t jitter_ms;                /* created_at offset in [-J, +J] ms, 0 = none */
    const char *influx_path;           /* write generated records as line protocol, or NULL */
    int no_server;                     /* virtual time only: write influx_path, connect nowhere */
    const volatile sig_atomic_t *stop; /* nonzero: stop generating, report, return */
    /* Energy sites (site.h), beside the vehicles; wall-clock runs only (see below). */
    uint32_t sites;           /* homes, each on its own energy_device connection */
    double site_days;         /* back-fill this many days of history first (5-minute samples) */
    const char *site_prefix;  /* site id prefix (default "SITESIM"), padded like a VIN */
    double opt_out_pct;       /* owners who refuse every event (default 5) */
    double offline_pct;       /* days with one outage of 30-180 min (default 3) */
    double site_utc_offset_h; /* the homes' local time = UTC + this (default -8) */
    /* https://HOST:PORT of the clip endpoint: each campaign hit's clip is built and uploaded
     * there by a worker thread (clipworker.h); NULL: hits' clips count as clip_failures. */
    const char *clip_server;
    uint64_t clip_interrupt; /* the first N of those uploads are cut and resumed (clipworker.h) */
};

/* Fills o with the defaults (K 20, drain 30 s, prefix "5YJSIM", seed 1, 1000 conn/s,
 * 1000 in flight, resend after 5 s, handshake timeout 10 s, progress on; no sites, site
 * prefix "SITESIM", 5 % opting out, 3 % outage days, UTC-8). */
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
    uint64_t paused;   /* ticks skipped because a vehicle had max_inflight in flight (wall
                        * clock only: virtual time waits instead of skipping) */
    uint64_t lagged;   /* ticks skipped because the loop fell behind */
    uint64_t dup_acks; /* replies for records already finished */
    uint64_t bad_replies;
    uint32_t vehicles;
    uint32_t connected_peak;
    double ack_p50_ms, ack_p99_ms, ack_max_ms; /* first send -> ack */
    double elapsed_s;
    double peak_rss_mb;
    int interrupted;
    uint64_t datums_sent; /* datums in generated records */
    uint32_t sites;
    uint64_t site_samples;     /* site samples generated (history and live) */
    uint64_t backfilled;       /* of them, history */
    uint64_t commands;         /* site commands received */
    uint64_t commands_refused; /* of them, answered with status 2 */
    uint64_t rate_limited;     /* site records refused for the rate limit, sent again */
    uint64_t campaigns;        /* campaign messages received (start and stop) */
    uint64_t campaign_hits;    /* trigger hits reported */
    uint64_t clip_failures;    /* hits whose clip was not stored (no clip server, refused) */
    uint64_t clips_uploaded;   /* hits whose clip the clip server stored (201) */
    uint64_t clips_resumed;    /* of them, stored after an interruption (clip_interrupt) */
};

/*
 * The created_at offset of record k (0-based) of vehicle `vehicle` in a fleet seeded with
 * `seed`: uniform in [-jitter_ms, +jitter_ms] (a 64-bit hash reduced modulo 2J+1: each
 * value's probability is off by less than 2^-31 relative), a pure function of its arguments
 * (splitmix64's finaliser; no libc rand(), no state). 0 when jitter_ms is 0.
 */
int64_t fv_sim_jitter_ms(uint64_t seed, uint32_t vehicle, uint64_t k, uint32_t jitter_ms);

/* created_at of record k of vehicle `vehicle` in virtual time (o->virtual_start_ms, o->hz,
 * o->seed, o->jitter_ms; see the top comment), in ms since the epoch. */
uint64_t fv_sim_virtual_ms(const struct fv_sim_opts *o, uint32_t vehicle, uint64_t k);

/*
 * Appends one InfluxDB line-protocol line (with its '\n') for a record of vehicle vin:
 *   telemetry,vin=<vin> <Name>=<value>[,<Name>=<value>...] <ts_ms>
 * Name is the signal's name from the Field enum (its number when unnamed); doubles are
 * printed with the fewest of 15..17 significant digits that read back as the same double;
 * integers, enums, door and tire bits with an 'i' suffix (times as seconds of the day);
 * booleans as true/false; strings quoted with '"' and '\\' escaped; a location as two
 * fields <Name>_lat and <Name>_lon. Datums that have no value (invalid, unknown members,
 * non-finite doubles) are left out, and a record left with no field appends nothing.
 * Tag values and field names are escaped as line protocol requires. FV_OK, or FV_ENOMEM
 * with out as it was.
 */
int fv_sim_influx_line(struct fv_buf *out, const char *vin, const struct fv_datum *d, size_t n,
                       uint64_t ts_ms);

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
 * unresolvable host, unreadable certificates, acked log or line-protocol file not writable,
 * no_server without virtual time or influx_path) or hit a fatal error (out of memory, a
 * failed write to the line-protocol file). With no_server, server and certs_dir are not
 * used and nothing is sent or acked: st->sent and st->datums_sent count what was written.
 * st is filled in either case as far as the run got.
 */
int fv_sim_run(const struct fv_sim_opts *o, struct fv_sim_stats *st, char *err, size_t errlen);

/* Prints the final JSON line: sent, acked, errors, datums, ack_p50_ms, ack_p99_ms first, then
 * the other counters. */
void fv_sim_stats_print_json(const struct fv_sim_stats *st, FILE *f);

#endif
