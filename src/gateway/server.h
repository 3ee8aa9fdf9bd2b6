/*
 * server.h - the ingestion gateway: fleet-telemetry WebSockets over mutual TLS on one
 * port, the HTTP API on another, one event-loop thread (libwebsockets) plus the WAL writer.
 *
 * Life of a record (docs/architecture.md): binary frame -> envelope decode -> identity
 * checks -> rate limit -> de-duplication -> payload normalised (vin := certificate id) ->
 * WAL append -> latest state updated -> ack queued; the ack is sent only once the WAL's
 * writer has fsync'd the batch holding the record.
 */
#ifndef FV_GATEWAY_SERVER_H
#define FV_GATEWAY_SERVER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/ratelimit.h"
#include "store/store.h"

struct fv_server_config {
    char data_dir[1024];
    char certs_dir[1024];
    char key_file[1024]; /* master key file; empty: the FV_MASTER_KEY environment variable */
    char listen_host[256];
    int listen_port;
    char api_host[256];
    int api_port;
    size_t max_message; /* bytes; default 1,000,000 (the protocol's limit) */
    uint64_t wal_segment_bytes;
    struct fv_rate_config rates;
    int rate_limit_enabled;
    struct fv_store_config store; /* its dir is set to DATA/store at start */
    char policy_file[1024];       /* access policy (privacy/policy.h); empty: built-in */
    char audit_key[1024];         /* audit signing key; empty: beside the master key file */
    char audit_witness[1024];     /* optional file outside DATA receiving every checkpoint */
    uint64_t audit_retention_ms;  /* delete audit files older than this (0: keep all) */
    double loc_trim_m, loc_grid_m; /* location privacy: trip trimming, coarsening (metres) */
    uint64_t loc_trip_gap_ms;
};

/* Defaults: data ./data, certs ./certs, devices on 127.0.0.1:4443, API on 127.0.0.1:8080. */
void fv_server_config_defaults(struct fv_server_config *c);

/* Loads a JSON config file over c (keys: data, certs, key_file, listen, api, max_message,
 * wal_segment_mb, rate_limits: {TOPIC: {per_second, burst}} or false, store: {flush_interval,
 * flush_datums, wal_keep, retention: {CLASS: "30d"}, classes: {CLASS: [SIGNAL, ...]}},
 * policy, audit_key, audit_witness: paths; audit_retention: a duration; location_privacy:
 * {trim_m, trip_gap, grid_m}). */
int fv_server_config_load(struct fv_server_config *c, const char *path, char *err, size_t errlen);

/* Parses "HOST:PORT" into host/port. */
int fv_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

/* Runs until *stop becomes non-zero (set it from a signal handler, then call
 * fv_server_wake). Returns 0 on a clean stop, non-zero with err set on failure. */
int fv_server_run(const struct fv_server_config *c, volatile sig_atomic_t *stop, char *err,
                  size_t errlen);

/* Downlink: queues one binary frame to a connected device (its newest session); it is
 * sent when the socket is writable. Event-loop thread only. FV_ENOENT if not connected. */
int fv_server_downlink(const char *device_id, const void *msg, size_t len);

/* Async-signal-safe: wakes the running server's event loop so it sees *stop. */
void fv_server_wake(void);

#endif
