/*
 * server_int.h - the server's state (struct fv_server), shared by the files of the
 * composition root: server.c (start-up, the loop, shutdown) and server_data.c (the data
 * engine's and the erasure's hooks into it). Not for other modules.
 *
 * Threads: as server.c's top comment says for each member.
 */
#ifndef FV_SERVER_SERVER_INT_H
#define FV_SERVER_SERVER_INT_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <ev.h>
#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sqlite3.h>

#include "api/exports.h"
#include "api/http.h"
#include "api/static_ui.h"
#include "api/oadr_store.h"
#include "cluster/jsconsume.h"
#include "cluster/jskeys.h"
#include "cluster/jsprincipals.h"
#include "cluster/jszones.h"
#include "cluster/jsquotas.h"
#include "cluster/jssubjects.h"
#include "cluster/jslease.h"
#include "cluster/natsconn.h"
#include "cluster/jsreclog.h"
#include "crypto/certs.h"
#include "crypto/keys.h"
#include "data/campaign.h"
#include "data/clip_deid.h"
#include "data/clip_server.h"
#include "data/clip_store.h"
#include "data/label_queue.h"
#include "data/dataset.h"
#include "data/ds_builds.h"
#include "data/ds_clips.h"
#include "energy/vpp.h"
#include "gateway/downlink.h"
#include "gateway/fleet.h"
#include "gateway/keyfetch.h"
#include "gateway/metrics.h"
#include "gateway/recovery.h"
#include "openadr/ven.h"
#include "server/acceptor.h"
#include "server/admintoken.h"
#include "server/apiloop.h"
#include "server/clusterapi.h"
#include "server/clusterven.h"
#include "server/downlinks.h"
#include "server/presences.h"
#include "server/server.h"
#include "gateway/session.h"
#include "mqtt/mqtt.h"
#include "os/fsio.h"
#include "privacy/erasure.h"
#include "privacy/guard.h"
#include "privacy/subjects.h"
#include "privacy/zones.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/prio.h"
#include "wal/reclog.h"
#include "wal/wal.h"

/* Backpressure: ingest stops reading from devices while the store's head (the live head and
 * the one being flushed) holds more than store.head_max_datums (default this many flushes'
 * worth), e.g. while a long merge keeps the worker busy. */
#define HEAD_BUDGET_FLUSHES 4

struct fv_server {
    const struct fv_config *cfg;
    struct fv_loopref ref;           /* the ingest loop's context, for wake_loop */
    struct fv_acceptor *acceptor;    /* the devices' listener (NULL: lws's own, or no devices) */
    struct fv_apiloop api;           /* the API thread */
    struct fv_wal *wal;              /* NULL on a gateway */
    struct fv_reclog log;            /* the gateway's record log: the WAL, or the stream */
    struct fv_jsreclog *jslog;       /* role gateway: the stream (cluster/jsreclog.h) */
    struct fv_jsconsume *consumer;   /* role storage: the shards (cluster/jsconsume.h) */
    struct fv_clusterapi *capi;      /* storage, api: the cluster's queries (server/clusterapi.h) */
    struct fv_recovery rec;          /* role storage: what takes the stream's records */
    struct fv_jskeys *jskeys;        /* gateway, storage: the shared keys (cluster/jskeys.h) */
    struct fv_keyfetch *keyfetch;    /* gateway: keys fetched off the loop (gateway/keyfetch.h) */
    struct fv_jssubjects *jssubj;    /* gateway, storage: periods and consents (jssubjects.h) */
    struct fv_jsprincipals *jsprinc; /* cluster roles: principals (jsprincipals.h) */
    struct fv_jszones *jszones;      /* storage and api nodes: privacy zones (jszones.h) */
    struct fv_jsquotas *jsquota;     /* cluster roles: quotas for the cluster (jsquotas.h) */
    int subjects_changed;            /* atomic: the sync changed the catalog (registry_poll) */
    struct fv_fleet fleet;
    struct fv_metrics m;
    struct fv_ingest *ing;
    struct fv_gw_downlink *downlink; /* the downlink seam's in-process side (wire/downlink.h) */
    struct fv_vpp *vpp;              /* the virtual power plant (energy/vpp.h) */
    struct fv_ven *ven;              /* the OpenADR VEN (openadr/ven.h); NULL: not configured */
    struct fv_keystore *ven_keys;    /* the VEN's thread's (its history reports, forecasts) */
    struct fv_oadr_store *ven_store; /* what the VEN reads from the store (api/oadr_store.h) */
    struct fv_clusterven *ven_js;    /* a storage node's: history across the shards */
    char datasets_dir[1100];         /* DATA/datasets (data/dataset.h) */
    char ui_dir[PATH_MAX];           /* the web console's files (api/static_ui.h) */
    struct fv_campaign *campaigns;   /* data-collection campaigns (data/campaign.h) */
    struct fv_downlinks dls;         /* the capabilities' downlink per role */
    struct fv_presences pres;        /* gateway, storage: devices' presence (presences.h) */
    struct fv_http_ctx http;
    char admin_token[80];
    struct fv_kek kek;
    struct fv_keystore *keys;     /* the ingest loop's (and, before threads start, start-up's) */
    struct fv_keystore *api_keys; /* the API thread's */
    struct fv_store_config store_cfg;
    struct fv_store *store;
    struct fv_guard guard;
    struct fv_exports *exports;
    struct fv_erasure erasure;
    struct fv_clips_config clips;       /* the "clips" object (data/clip_upload.h) */
    char clips_dir[PATH_MAX];           /* DATA/clips */
    struct fv_clip_server *clip_server; /* the clip upload endpoint's thread, or NULL */
    struct fv_clip_deid *clip_deid;     /* the de-identification worker, or NULL */
    struct fv_label_queue *labeling;    /* the labelers' leases (the API thread's) */
    struct fv_ds_builds *ds_builds;     /* the dataset build worker (data/ds_builds.h) */
    struct fv_mqtt *mqtt;               /* the MQTT publisher (mqtt/mqtt.h), or NULL */
    uint64_t registry_checked_ns;
    int64_t data_version;
    int store_degraded; /* a record reached the WAL but not the head: keep the WAL */
    uint64_t start_ms;
    volatile sig_atomic_t *stop;
    int lock_fd;
};

/* Wakes the ingest loop; any thread (arg: the server). */
void fv_server__wake_loop(void *arg);

/* server_data.c. API thread: the erasure of a device (api/api.h erase hook). */
int fv_server__erase_device(void *arg, const char *device, const struct fv_guard_ctx *ctx,
                            char *err, size_t errlen);
/* server_data.c. Erasure's purge hook (privacy/erasure.h): clips, dataset shards, the key in
 * the cluster's bucket. */
int fv_server__purge_clips(void *arg, const char *pseudo, char *err, size_t errlen);
/* server_data.c. The clip endpoint and the de-identification worker, when clips.listen is
 * set (start-up). */
int fv_server__open_clips(struct fv_server *srv, char *err, size_t errlen);

#endif
