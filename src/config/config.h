/*
 * config.h - the server's configuration: defaults, the JSON config file, and "HOST:PORT".
 *
 * One struct read by `fleetvault serve` (which runs the server with it), by the records of
 * processing (privacy/report.h: what the configuration says the system does) and by the CLI.
 * It fills in the settings of lower layers (the store's classes and retention, rate limits),
 * so it sits above store/, wire/ and util/ and below privacy/ and gateway/.
 *
 * Thread-safety: no shared state; a loaded config is read-only while a server runs.
 */
#ifndef FV_CONFIG_CONFIG_H
#define FV_CONFIG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "config/cluster_config.h"
#include "config/mqtt_config.h"
#include "config/openadr_config.h"
#include "store/store.h"
#include "util/ratelimit.h"

#define FV_CONFIG_VPP_MAX   16384 /* the "vpp" object's JSON text, at most */
#define FV_CONFIG_CLIPS_MAX 4096  /* the "clips" object's JSON text, at most */
/* accept_rate by default, per online CPU (server/acceptor.h A5; a mutual-TLS handshake takes
 * about 0.5 ms of a core: 2.5 % of each; bench/README.md "A burst of connections") */
#define FV_ACCEPT_RATE_PER_CPU 50

struct fv_config {
    char data_dir[1024];
    char certs_dir[1024];
    char key_file[1024]; /* master key file; empty: the FV_MASTER_KEY environment variable */
    /* a cluster's master key rotation: the previous master key, whose KV values are still
     * read (docs/cluster.md, "Master key rotation"); empty: none */
    char previous_key_file[1024];
    char listen_host[256];
    int listen_port;
    char api_host[256];
    int api_port;
    int api_nice; /* the API thread's nice value, 0-19 (default 10: devices first) */
    /* The nice value of the ingest loop and the WAL writer, -20-0 (default 0). Below 0 the
     * scheduler serves device acks before other processes' work; it needs CAP_SYS_NICE (or
     * RLIMIT_NICE), and without it the server says so once and runs at 0. */
    int ingest_nice;
    /* New device connections the ingest loop accepts per turn (server/acceptor.h), 0-1024
     * (default 1: bench/README.md "A burst of connections"). Each costs a TLS handshake on the
     * loop; a burst beyond it waits in the kernel's queue for the next turns instead of delaying
     * the acks of the vehicles already connected. 0: libwebsockets' own listener, which accepts
     * every waiting connection in one turn. */
    unsigned accepts_per_turn;
    /* Device connections accepted per second at most (server/acceptor.h A5; default
     * FV_ACCEPT_RATE_PER_CPU per online CPU; 0: no limit beyond accepts_per_turn; with
     * accepts_per_turn 0 it does not apply). */
    unsigned accept_rate;
    size_t max_message; /* bytes; default 1,000,000 (the protocol's limit) */
    /* A device connection silent this long is closed; it is pinged after a third of it
     * (default 3 minutes; a dead peer or a half-open TCP connection holds nothing longer). */
    uint64_t device_idle_ms;
    uint64_t wal_segment_bytes;
    struct fv_rate_config rates;
    int rate_limit_enabled;
    struct fv_store_config store; /* its dir is set to DATA/store at start */
    char policy_file[1024];       /* access policy (privacy/policy.h); empty: built-in */
    char ui_dir[1024]; /* the web console's files (api/static_ui.h); empty: ui beside the binary */
    /* The "vpp" object as JSON text ("": none), parsed by the energy side (energy/vpp.h): the
     * configuration layer does not know programs. */
    char vpp_json[FV_CONFIG_VPP_MAX];
    /* The "clips" object as JSON text ("": clip upload off), parsed by the data engine
     * (data/clip_upload.h fv_clips_config_parse). */
    char clips_json[FV_CONFIG_CLIPS_MAX];
    uint64_t label_lease_ms;       /* "labeling": {"lease_s"}: a labeler's lease (30 min) */
    struct fv_oadr_cfg openadr;    /* the OpenADR VEN (openadr_config.h); enabled 0: none */
    struct fv_mqtt_cfg mqtt;       /* live values over MQTT (mqtt_config.h); enabled 0: none */
    struct fv_cluster_cfg cluster; /* NATS JetStream (cluster_config.h); enabled 0: none */
    enum fv_role role;             /* serve --role (default all: the single node) */
    char audit_key[1024];          /* audit signing key; empty: beside the master key file */
    char audit_witness[1024];      /* optional file outside DATA receiving every checkpoint */
    uint64_t audit_retention_ms;   /* delete audit files older than this (0: keep all) */
    uint64_t audit_prealloc_bytes; /* zeros written ahead of the audit log's entries (0: none) */
    double loc_trim_m, loc_grid_m; /* location privacy: trip trimming, coarsening (metres) */
    uint64_t loc_trip_gap_ms;
    uint64_t loc_stop_ms; /* location privacy: stationary this long is a stop (L5) */
};

/* Defaults: data ./data, certs ./certs, devices on 127.0.0.1:4443, API on 127.0.0.1:8080. */
void fv_config_defaults(struct fv_config *c);

/* Loads a JSON config file over c. Keys: data, certs, key_file, previous_key_file, listen, api,
 * max_message, device_idle_timeout, api_nice, ingest_nice, wal_segment_mb, rate_limits ({TOPIC:
 * {per_second, burst}} or false), store ({flush_interval, flush_datums, head_max_datums, wal_keep,
 * compact_fanin, retention: {CLASS: "30d"}, classes: {CLASS: [SIGNAL, ...]}}), policy, audit_key,
 * audit_witness, ui_dir (paths), audit_retention (a duration), audit_prealloc_kb, vpp ({programs:
 * {NAME: {...}}}: energy/program.h), clips (data/clip_upload.h), labeling ({lease_s}), openadr
 * (config/openadr_config.h), mqtt (config/mqtt_config.h), cluster (config/cluster_config.h),
 * role ("all", "gateway", "storage", "api"), location_privacy ({trim_m, trip_gap,
 * stop_after, grid_m}).
 */
int fv_config_load(struct fv_config *c, const char *path, char *err, size_t errlen);

/* The admin API token's file: beside the master key (KEYFILE.admin.token) when it is a file,
 * so a copy of DATA is never a live admin token; DATA/admin.token only when the master key
 * comes from the environment (FV_MASTER_KEY). Returns 1 when that file is outside DATA. */
int fv_config_admin_token_path(const struct fv_config *c, char *out, size_t len);

/* Parses "HOST:PORT" into host/port. */
int fv_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

/* A duration: "30d", "12h", "90m", "45s", a number of seconds, or 0 / "forever" (0: keep
 * forever). FV_OK or FV_EINVAL. */
struct json_t;
int fv_config_duration_ms(struct json_t *v, uint64_t *out);
/* A JSON string of 1 to cap-1 bytes copied into dst; FV_EINVAL otherwise. */
int fv_config_copy_str(struct json_t *v, char *dst, size_t cap);
/* A "tls" object {"ca": FILE[, "cert": FILE, "key": FILE]} into ca, cert, key (each cap
 * bytes): ca required, cert and key together or neither; FV_EINVAL otherwise. */
int fv_config_tls(struct json_t *o, char *ca, char *cert, char *key, size_t cap);

#endif
