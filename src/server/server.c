/*
 * server.c - the server's composition root: start-up, the event loop, shutdown (server.h).
 * Its state is struct fv_server (server_int.h); the data engine's and the erasure's hooks
 * into it are in server_data.c.
 *
 * It opens, in order: the data directory's lock, the master key, the admin token (beside
 * the key, KEYFILE.admin.token; moved there from DATA if an older version left it), and the
 * catalog (keys, subjects, zones), the erasure list (replayed before anything is decrypted,
 * privacy/erasure.h), access control (privacy/guard.h), the store, recovery (the fleet state
 * from the parts, then the WAL replayed into the head: gateway/recovery.h), then the ingest
 * loop's libwebsockets context with the devices' vhost (gateway/session.h), the MQTT
 * publisher when configured (mqtt/mqtt.h), and last the API's thread with its own loop and
 * context (server/apiloop.h, api/http.h). It wires the
 * two sides of the ingest/storage seam (wal/reclog.h): the WAL is the record log; the sink
 * below puts each logged record into the store's head.
 *
 * Roles (docs/cluster.md): "all" is the above. "gateway" opens no store, WAL or API: its
 * record log is the JetStream stream (cluster/jsreclog.h), its sink does nothing, and the
 * loop runs the devices only. "storage" opens everything but the devices' vhost; its WAL's
 * replay also reads the shards' cursors, and instead of device events the loop fetches the
 * stream (cluster/jsconsume.h) of the shards whose leases it holds (cluster/jslease.h) and
 * hands each record to the store through fv_recovery_take; the store's reads find only the
 * subjects of those shards (storage_visible: the API thread reads the leases' atomics).
 *
 * Threads: the ingest loop (the thread of fv_server_run) decodes, seals, appends and acks,
 * and runs the store's maintenance. The API thread serves every request; it opens the
 * catalog through a keystore of its own (api_keys; the loop's is keys) and reaches the
 * ingest side only through the fleet's lock, the store's own locking, atomic counters and
 * fv_ingest_keys_changed. The WAL writer and the store worker only wake the loop
 * (fv_server__wake_loop), as does a signal handler (fv_server_wake); the audit syncer wakes the API
 * thread, as does the MQTT publisher (its thread and keystore of its own; the fleet read
 * under F1; its audit records written by the API thread). A context is retired on shutdown
 * only once no waker is inside it (fv_loopref).
 */
#include "server/server_int.h"

/* Signal handlers get no context pointer: this is the one process-wide reference to the
 * running server (one server per process). */
static struct fv_server *running;

/* Wakes the ingest loop; any thread (the WAL writer and the store worker are given it as
 * their notify callback, arg being the server). */
void fv_server__wake_loop(void *arg)
{
    struct fv_server *srv = arg;
    fv_loopref_wake(&srv->ref);
}

/* WAL writer thread: the data keys of a batch's records become durable first. */
static int wal_before_sync(void *arg, char *err, size_t errlen)
{
    struct fv_server *srv = arg;
    return fv_keystore_sync(srv->keys, err, errlen);
}

/* ---- the storage side of the seam (wal/reclog.h K1, K2) ------------------------------------ */

static void sink_put(void *arg, const struct fv_logged *lr)
{
    struct fv_server *srv = arg;
    char pseudo[FV_PSEUDONYM_LEN + 1];
    snprintf(pseudo, sizeof pseudo, "%.*s", (int)lr->rec->device_id_len, lr->rec->device_id);
    uint64_t rx = lr->rec->received_ms;
    int rc = lr->v ? fv_store_add_frame(srv->store, pseudo, lr->dek, lr->t_ms, rx, lr->v)
                   : fv_store_add_event(srv->store, pseudo, lr->dek, lr->t_ms, rx, lr->rec->topic,
                                        lr->rec->topic_len, lr->plain, lr->plain_len);
    if (rc && !srv->store_degraded) {
        /* K2: the record is safe in the WAL, which then must not be trimmed until a restart
         * replays it into the head (store.h T1). */
        srv->store_degraded = 1;
        fv_store_hold_wal(srv->store);
        fv_error("store: cannot add a record to the head (%s); it is safe in the WAL, which is "
                 "now kept whole until a restart replays it",
                 fv_strerror(rc));
    }
}

/* A gateway's sink: the storage nodes take the records from the stream. */
static void sink_none(void *arg, const struct fv_logged *lr)
{
    (void)arg;
    (void)lr;
}

/* A storage node: a record from the stream, logged to the local WAL, into the head (K2 as
 * sink_put: a record the head cannot take holds the WAL). */
static int storage_take(void *arg, const struct fv_wal_record *r)
{
    struct fv_server *srv = arg;
    int rc = fv_recovery_take(&srv->rec, r);
    if (rc && rc != FV_ENOENT && rc != FV_ECORRUPT && !srv->store_degraded) {
        srv->store_degraded = 1;
        fv_store_hold_wal(srv->store);
    }
    return rc;
}

/* A storage node answers for a subject only while it holds its shard's lease (jslease.h E2):
 * the store's reads of the other subjects find nothing (store.h fv_store_set_visible). */
static int storage_visible(void *arg, const char *pseudo)
{
    struct fv_server *srv = arg;
    uint32_t shard = fv_cluster_shard(pseudo, srv->cfg->cluster.shards);
    return fv_jslease_holds(fv_jsconsume_leases(srv->consumer), shard, fv_mono_ns());
}

/* Presence (gateway/presence.h): a device this storage node does not know yet is added only
 * when its first period's shard is this node's. */
static int storage_wants(void *arg, const char *device_id)
{
    struct fv_server *srv = arg;
    char ps[FV_PSEUDONYM_LEN + 1];
    return fv_keystore_pseudonym(srv->keys, device_id, ps) == FV_OK && storage_visible(srv, ps);
}

/* The KV watcher's thread (cluster/jskeys.h J3): a subject erased in the cluster is
 * destroyed in this node's catalog; the ingest loop drops its cached keys before its next
 * record, so nothing is sealed or opened with it again. */
static void kv_erased(void *arg)
{
    struct fv_server *srv = arg;
    fv_ingest_keys_changed(srv->ing);
    fv_server__wake_loop(srv);
}

/* The subjects sync's thread (cluster/jssubjects.h P1): periods or consents of the cluster
 * applied to this node's catalog; the ingest looks its owners and consents up again. */
/* Q4 (cluster/jsquotas.h): this node's own published counts raise the guard's. */
static void quota_raise(void *arg, const char *name, const struct fv_quota_usage *u)
{
    fv_guard_quota_raise(arg, name, u);
}

static void subjects_synced(void *arg)
{
    struct fv_server *srv = arg;
    __atomic_store_n(&srv->subjects_changed, 1, __ATOMIC_RELEASE);
    fv_server__wake_loop(srv);
}

static int storage_full(void *arg)
{
    struct fv_server *srv = arg;
    struct fv_store_stats st;
    fv_store_stats(srv->store, &st);
    uint64_t budget = srv->store_cfg.head_max_datums
                          ? srv->store_cfg.head_max_datums
                          : HEAD_BUDGET_FLUSHES * srv->store_cfg.flush_datums;
    return st.head_datums > budget;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static int store_key(void *arg, const char *pseudo, unsigned char key[32])
{
    struct fv_server *srv = arg;
    const unsigned char *dek;
    const char *name;
    int rc = fv_keystore_subject(srv->keys, pseudo, &dek, &name);
    if (rc == FV_OK) memcpy(key, dek, 32);
    return rc;
}

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        n--;
    fv_log(level == LLL_ERR ? FV_LOG_WARN : FV_LOG_DEBUG, "lws: %.*s", (int)n, line);
}

/* Another process (fleetvault subject ...) may change the registry: SQLite's data_version
 * changes when another connection commits; then every device's subject is looked up again
 * (at most once a second). */
static void registry_check(struct fv_server *srv, uint64_t every_ns)
{
    static const char sql[] = "PRAGMA data_version";
    if (srv->ing == NULL) return;
    if (__atomic_exchange_n(&srv->subjects_changed, 0, __ATOMIC_ACQ_REL))
        fv_ingest_registry_changed(srv->ing); /* the cluster's periods or consents, now */
    if (__atomic_exchange_n(&srv->guard.registry_changed, 0, __ATOMIC_ACQ_REL)) {
        /* our own API changed it (its commits would also show in data_version below) */
        fv_ingest_registry_changed(srv->ing);
    }
    uint64_t now = fv_mono_ns();
    if (now - srv->registry_checked_ns < every_ns) return;
    srv->registry_checked_ns = now;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(fv_keystore_db(srv->keys), sql, -1, &st, NULL) != SQLITE_OK) return;
    if (sqlite3_step(st) == SQLITE_ROW) {
        int64_t v = sqlite3_column_int64(st, 0);
        if (srv->data_version && v != srv->data_version) fv_ingest_registry_changed(srv->ing);
        srv->data_version = v;
    }
    sqlite3_finalize(st);
}

static void registry_poll(struct fv_server *srv)
{
    registry_check(srv, 1000000000ull);
}

/* A storage node's record from the stream (cluster/jsconsume.h C11): the registry looked at
 * (at most a millisecond old, a PRAGMA) before the record is put under the owner period of
 * its time, so that a change of owner committed before the record is taken applies to it. */
static int storage_fix(void *arg, struct fv_wal_record *r)
{
    struct fv_server *srv = arg;
    registry_check(srv, 1000000ull);
    return fv_recovery_resubject(&srv->rec, r);
}

/* A synced bucket's counters (cluster/kvsync.h) into the metrics' (zeros: no such sync). */
static void sync_metrics(const struct fv_kvsync_stats *k, struct fv_sync_metrics *m)
{
    m->applied = k->applied;
    m->published = k->published;
    m->conflicts = k->conflicts;
    m->malformed = k->malformed;
}

/* Wakes the loop at least once a second so the store's maintenance runs when idle. */
static void tick_cb(struct ev_loop *loop, struct ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int open_services(struct fv_server *srv, char *err, size_t errlen);

/* The ingest on srv->log, with the given sink and backpressure, and its downlink. */
static int open_ingest(struct fv_server *srv, void (*put)(void *, const struct fv_logged *),
                       int (*full)(void *), void *full_arg)
{
    struct fv_ingest_deps deps = {.cfg = srv->cfg,
                                  .fleet = &srv->fleet,
                                  .metrics = &srv->m,
                                  .log = srv->log,
                                  .sink = {srv, put},
                                  .keys = srv->keys,
                                  .store_cfg = &srv->store_cfg,
                                  .policy = srv->guard.policy,
                                  .storage_full = full,
                                  .storage_full_arg = full_arg,
                                  .keyfetch = srv->keyfetch};
    int rc = fv_ingest_new(&deps, &srv->ing);
    if (rc == FV_OK)
        rc = fv_gw_downlink_new(srv->ing, &srv->m, fv_server__wake_loop, srv, &srv->downlink);
    return rc;
}

/* Role gateway: no store, no WAL; records go to the stream (cluster/jsreclog.h). A device's
 * data key comes from the keys bucket, fetched off the ingest loop (gateway/keyfetch.h): it
 * is durable there before the gateway adopts it, so the catalog (a cache) commits it without
 * fsync. */
static int open_gateway(struct fv_server *srv, char *err, size_t errlen)
{
    const struct fv_config *cfg = srv->cfg;
    struct fv_keysource src = fv_jskeys_source(srv->jskeys);
    int rc = fv_keyfetch_start(&src, fv_server__wake_loop, srv, &srv->keyfetch);
    if (rc) {
        fv_seterr(err, errlen, "cannot start the key fetcher: %s", fv_strerror(rc));
        return rc;
    }
    fv_keystore_set_async(srv->keys, 1);
    rc = fv_jsreclog_open(&cfg->cluster, fv_server__wake_loop, srv, &srv->jslog, err, errlen);
    if (rc) return rc;
    srv->log = fv_jsreclog_log(srv->jslog);
    rc = open_ingest(srv, sink_none, fv_jsreclog_full, srv->jslog);
    if (rc) return rc;
    fv_info("gateway: records go to stream %s (%s.SHARD, %u shards)", cfg->cluster.stream,
            cfg->cluster.subject_prefix, cfg->cluster.shards);
    return open_services(srv, err, errlen);
}

/* Opens everything the loop serves from, in the order of the top comment. */
static int open_state(struct fv_server *srv, char *err, size_t errlen)
{
    const struct fv_config *cfg = srv->cfg;
    int rc = fv_certs_check_server(cfg->certs_dir, err, errlen);
    if (rc) return rc;
    rc = fv_os_mkdirs(cfg->data_dir, 0700, err, errlen);
    if (rc) return rc;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/LOCK", cfg->data_dir);
    rc = fv_os_open(path, O_RDWR | O_CREAT, 0600, &srv->lock_fd, err, errlen);
    if (rc) return rc;
    if (flock(srv->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        fv_seterr(err, errlen, "%s: %s", path,
                  errno == EWOULDBLOCK ? "another fleetvault server is using this data directory"
                                       : strerror(errno));
        return FV_EIO;
    }
    rc = fv_kek_load(cfg->key_file[0] ? cfg->key_file : NULL, &srv->kek, err, errlen);
    if (rc) return rc;
    if (cfg->key_file[0] && fv_path_inside(cfg->key_file, cfg->data_dir)) {
        fv_seterr(err, errlen,
                  "%s: the master key must be kept outside the data directory %s "
                  "(a copy of the data must not carry its key)",
                  cfg->key_file, cfg->data_dir);
        return FV_EINVAL;
    }
    if (cfg->previous_key_file[0])
        rc = fv_kek_load_previous(cfg->previous_key_file, &srv->kek, err, errlen);
    if (rc) return rc;
    rc = fv_admin_token_load(cfg, srv->admin_token, sizeof srv->admin_token, err, errlen);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/catalog.db", cfg->data_dir);
    /* a master key rotation (docs/cluster.md): the catalog moved to the new key first */
    int rotated = 0;
    rc = fv_keystore_rotate_catalog(path, &srv->kek, &rotated, err, errlen);
    if (rc) return rc;
    if (rotated)
        fv_info("catalog %s re-wrapped from master key %s to %s", path, srv->kek.prev_id,
                srv->kek.id);
    if (srv->kek.prev_id[0])
        fv_info("master key %s; values wrapped by the previous master key %s are still read",
                srv->kek.id, srv->kek.prev_id);
    if (cfg->role == FV_ROLE_ALL) {
        rc = fv_keystore_open(path, &srv->kek, &srv->keys, err, errlen);
    } else { /* the catalog caches the cluster's keys (docs/cluster.md, "Keys") */
        rc = fv_jskeys_open(&cfg->cluster, &srv->kek, &srv->jskeys, err, errlen);
        struct fv_keysource src =
            srv->jskeys ? fv_jskeys_source(srv->jskeys) : (struct fv_keysource){0};
        if (rc == FV_OK)
            rc = fv_keystore_open_shared(path, &srv->kek, &src, &srv->keys, err, errlen);
    }
    if (rc == FV_OK) rc = fv_subjects_init(srv->keys, err, errlen);
    if (rc == FV_OK) rc = fv_zones_init(srv->keys, err, errlen);
    /* P2: the cluster's owner periods and consents in this catalog before any record is
     * sealed, taken or served (docs/cluster.md, "Owner periods and consents") */
    if (rc == FV_OK && srv->jskeys)
        rc = fv_jssubjects_open(&cfg->cluster, &srv->kek, path, fv_jskeys_source(srv->jskeys),
                                subjects_synced, srv, &srv->jssubj, err, errlen);
    /* U1: the cluster's principals in this catalog before the API serves (docs/cluster.md,
     * "Principals"); not on a gateway, whose API authenticates no one (/status, /metrics) */
    char node[65];
    snprintf(node, sizeof node, "%s", cfg->cluster.node);
    if (node[0] == '\0') fv_cluster_node_default(cfg->data_dir, node, sizeof node);
    if (rc == FV_OK && srv->jskeys && cfg->role != FV_ROLE_GATEWAY)
        rc = fv_jsprincipals_open(&cfg->cluster, &srv->kek, path, node, &srv->jsprinc, err, errlen);
    /* Z6: the cluster's privacy zones in this catalog before a location is served
     * (docs/cluster.md, "Privacy zones"); a gateway serves none */
    if (rc == FV_OK && srv->jskeys && cfg->role != FV_ROLE_GATEWAY)
        rc = fv_jszones_open(&cfg->cluster, &srv->kek, path, node, &srv->jszones, err, errlen);
    if (rc == FV_OK) rc = fv_keystore_open(path, &srv->kek, &srv->api_keys, err, errlen);
    /* The erasure list is replayed before anything is decrypted (privacy/erasure.h). Erasure
     * and access control belong to the API thread, and use its keystore. */
    if (rc == FV_OK)
        rc = fv_erasure_open(&srv->erasure, srv->api_keys, cfg->key_file, cfg->data_dir, err,
                             errlen);
    snprintf(srv->clips_dir, sizeof srv->clips_dir, "%s/clips", cfg->data_dir);
    snprintf(srv->datasets_dir, sizeof srv->datasets_dir, "%s/datasets", cfg->data_dir);
    if (cfg->ui_dir[0])
        snprintf(srv->ui_dir, sizeof srv->ui_dir, "%s", cfg->ui_dir);
    else if (fv_ui_default_dir(srv->ui_dir, sizeof srv->ui_dir) != FV_OK)
        fv_warn("api: cannot find the executable's directory; the console (/ui/) is off");
    if (rc == FV_OK) rc = fv_clips_config_parse(&srv->clips, cfg->clips_json, err, errlen);
    if (rc == FV_OK) rc = fv_clip_store_init(srv->api_keys, err, errlen);
    srv->erasure.purge = fv_server__purge_clips;
    srv->erasure.purge_arg = srv;
    if (rc == FV_OK)
        rc = fv_guard_open(&srv->guard, cfg, srv->api_keys, srv->admin_token, fv_loopref_wake,
                           &srv->api.ref, err, errlen);
    /* G5 across the cluster: this node's counts read back, then the others' added to every
     * check (docs/cluster.md, "Quotas across the cluster"); a gateway serves no reads */
    if (rc == FV_OK && srv->jskeys && cfg->role != FV_ROLE_GATEWAY)
        rc = fv_jsquotas_open(&cfg->cluster, &srv->kek, node, &srv->jsquota, err, errlen);
    if (rc == FV_OK && srv->jsquota) {
        fv_jsquotas_own(srv->jsquota, (int64_t)(fv_now_ms() / 86400000u), quota_raise, &srv->guard);
        srv->guard.share = (struct fv_guard_share){
            .others = fv_jsquotas_others, .publish = fv_jsquotas_publish, .arg = srv->jsquota};
    }
    if (rc == FV_OK) rc = fv_exports_new(&srv->exports);
    if (rc == FV_OK) rc = fv_label_queue_new((int64_t)cfg->label_lease_ms, &srv->labeling);
    if (rc == FV_OK) /* its own thread and keystore; pseudonyms as the guard's (G10) */
        rc = fv_ds_builds_start(&srv->ds_builds, cfg->data_dir, &srv->kek, srv->guard.pseudo_secret,
                                err, errlen);
    if (rc) return rc;

    srv->store_cfg = cfg->store;
    snprintf(srv->store_cfg.dir, sizeof srv->store_cfg.dir, "%s/store", cfg->data_dir);
    if (cfg->role == FV_ROLE_GATEWAY) return open_gateway(srv, err, errlen);
    rc = fv_store_open(&srv->store_cfg, 0, &srv->store, err, errlen);
    if (rc == FV_OK) rc = fv_erasure_purge_restored(&srv->erasure, srv->store);
    if (rc) return rc;
    srv->rec = (struct fv_recovery){.keys = srv->keys,
                                    .store = srv->store,
                                    .fleet = &srv->fleet,
                                    .metrics = &srv->m,
                                    .store_wal_hi = fv_store_wal_hi(srv->store)};
    uint64_t t0 = fv_mono_ns();
    rc = fv_recovery_rebuild(&srv->rec);
    if (rc) {
        fv_seterr(err, errlen, "rebuilding the fleet state from the store failed: %s",
                  fv_strerror(rc));
        return rc;
    }
    fv_info("store: %zu devices known from %s in %.1f ms", fv_fleet_count(&srv->fleet),
            srv->store_cfg.dir, (double)(fv_mono_ns() - t0) / 1e6);

    snprintf(path, sizeof path, "%s/wal", cfg->data_dir);
    struct fv_wal_opts wo = {.segment_bytes = cfg->wal_segment_bytes,
                             .notify = fv_server__wake_loop,
                             .notify_arg = srv,
                             .before_sync = wal_before_sync,
                             .before_sync_arg = srv,
                             .writer_nice = cfg->ingest_nice};
    t0 = fv_mono_ns();
    if (cfg->role == FV_ROLE_STORAGE) {
        /* The local WAL also holds the shards' cursors (cluster/jsconsume.h C1), and
         * DATA/shard-cursors those of the WAL files deleted (C8). */
        char node[65];
        snprintf(node, sizeof node, "%s", cfg->cluster.node);
        if (node[0] == '\0') fv_cluster_node_default(cfg->data_dir, node, sizeof node);
        rc = fv_jsconsume_new(&cfg->cluster, node, cfg->data_dir, storage_take, srv,
                              fv_recovery_replay, &srv->rec, &srv->consumer, err, errlen);
        if (rc == FV_OK) fv_jsconsume_set_ready(srv->consumer, fv_recovery_ready, &srv->rec);
        if (rc == FV_OK) /* C11: a record stored under the owner period of its time */
            fv_jsconsume_set_fix(srv->consumer, storage_fix, srv);
        wo.before_remove = fv_jsconsume_before_wal_remove; /* C8: cursors outlive the files */
        wo.before_remove_arg = srv->consumer;
        if (rc == FV_OK)
            rc = fv_wal_open(path, &wo, fv_jsconsume_replay, srv->consumer, &srv->wal, err, errlen);
        srv->rec.live = 1;
        if (rc == FV_OK) rc = fv_jsconsume_start(srv->consumer, srv->wal, err, errlen);
        if (rc == FV_OK) fv_store_set_visible(srv->store, storage_visible, srv);
    } else {
        rc = fv_wal_open(path, &wo, fv_recovery_replay, &srv->rec, &srv->wal, err, errlen);
    }
    if (rc) return rc;
    fv_info("replayed %llu records of %zu devices from %s in %.1f ms",
            (unsigned long long)srv->m.replayed_records, fv_fleet_count(&srv->fleet), path,
            (double)(fv_mono_ns() - t0) / 1e6);

    srv->log = fv_wal_reclog(srv->wal);
    /* From here on, a new device's key is committed without waiting for the disk on the
     * ingest loop; the WAL writer makes it durable before the device's first record. */
    fv_keystore_defer_sync(srv->keys, 1);
    rc = open_ingest(srv, sink_put, storage_full, srv);
    if (rc) return rc;
    return open_services(srv, err, errlen);
}

/* The ingest, its downlink, the VPP, the campaigns, the VEN and the API's view: every role. */
static int open_services(struct fv_server *srv, char *err, size_t errlen)
{
    const struct fv_config *cfg = srv->cfg;
    char path[PATH_MAX];
    int rc;
    snprintf(path, sizeof path, "%s/vpp.db", cfg->data_dir);
    rc = fv_downlinks_open(&srv->dls, cfg, &srv->kek, srv->downlink, err, errlen);
    if (rc == FV_OK)
        rc = fv_vpp_open(cfg->vpp_json, path, fv_downlinks_port(&srv->dls), &srv->vpp, err, errlen);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/campaigns.db", cfg->data_dir);
    rc = fv_campaign_open(path, fv_downlinks_port(&srv->dls), &srv->campaigns, err, errlen);
    if (rc == FV_OK)
        rc = fv_downlinks_wire(&srv->dls, srv->ing, srv->vpp, srv->campaigns, err, errlen);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/catalog.db", cfg->data_dir);
    if (srv->jskeys) rc = fv_jskeys_watch(srv->jskeys, path, kv_erased, srv, err, errlen);
    if (rc == FV_OK)
        rc = fv_presences_open(&srv->pres, cfg, &srv->kek, &srv->fleet, srv->ing, storage_wants,
                               srv, fv_server__wake_loop, srv, err, errlen);
    if (rc) return rc;
    if (cfg->openadr.enabled && cfg->role == FV_ROLE_GATEWAY) {
        fv_warn("openadr: the VEN runs on a storage node (it reads stored telemetry), not here");
    } else if (cfg->openadr.enabled) {
        rc = fv_ven_open(&cfg->openadr, cfg->data_dir, srv->vpp, &srv->ven, err, errlen);
        if (rc) return rc;
        /* Its reads of stored telemetry run on its thread, with a keystore of its own. */
        snprintf(path, sizeof path, "%s/catalog.db", cfg->data_dir);
        rc = fv_keystore_open(path, &srv->kek, &srv->ven_keys, err, errlen);
        if (rc == FV_OK)
            rc = fv_oadr_store_new(srv->store, srv->ven_keys, srv->vpp, &srv->ven_store);
        if (rc) return rc;
        struct fv_ven_store_ops ops = fv_oadr_store_ops(srv->ven_store);
        if (cfg->role == FV_ROLE_STORAGE) { /* its store holds its shards only */
            rc = fv_clusterven_open(cfg, &srv->kek, srv->vpp, &srv->ven_js, err, errlen);
            if (rc) return rc;
            ops = fv_clusterven_ops(srv->ven_js, &ops);
        }
        fv_ven_set_store_ops(srv->ven, &ops);
        srv->api.ven = srv->ven; /* its audit records are written on the API thread (N8) */
    }
    srv->http = (struct fv_http_ctx){.view = {.fleet = &srv->fleet,
                                              .metrics = &srv->m,
                                              .wal = srv->wal,
                                              .admin_token = srv->admin_token,
                                              .start_ms = srv->start_ms,
                                              .store = srv->store,
                                              .keys = srv->api_keys,
                                              .guard = &srv->guard,
                                              .store_cfg = &srv->store_cfg,
                                              .erase = fv_server__erase_device,
                                              .erase_arg = srv,
                                              .clips_dir = srv->clips_dir,
                                              .ds_builds = srv->ds_builds,
                                              .audit_dir = srv->guard.audit_dir,
                                              .datasets_dir = srv->datasets_dir,
                                              .exports = srv->exports,
                                              .vpp = srv->vpp,
                                              .ven = srv->ven,
                                              .campaigns = srv->campaigns,
                                              .labeling = srv->labeling,
                                              .ui_dir = srv->ui_dir},
                                     .metrics = &srv->m};
    return FV_OK;
}

/* The MQTT publisher (mqtt/mqtt.h), when the config has an "mqtt" object: its own thread
 * and keystore; its audit records are written by the API thread, which it wakes. */
static int open_mqtt(struct fv_server *srv, char *err, size_t errlen)
{
    if (!srv->cfg->mqtt.enabled) return FV_OK;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/catalog.db", srv->cfg->data_dir);
    struct fv_mqtt_deps d = {.cfg = &srv->cfg->mqtt,
                             .fleet = &srv->fleet,
                             .metrics = &srv->m,
                             .catalog_path = path,
                             .kek = &srv->kek,
                             .pseudo_secret = srv->guard.pseudo_secret,
                             .policy = srv->guard.policy,
                             .wake_audit = fv_loopref_wake,
                             .wake_arg = &srv->api.ref};
    int rc = fv_mqtt_start(&d, &srv->mqtt, err, errlen);
    srv->api.mqtt = srv->mqtt;
    return rc;
}

/* The ingest loop's lws context on the given libev loop: the devices' vhost. */
static int open_listeners(struct fv_server *srv, struct ev_loop *loop, char *err, size_t errlen)
{
    const struct fv_config *cfg = srv->cfg;
    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    void *foreign[1] = {loop};
    ci.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                 LWS_SERVER_OPTION_LIBEV;
    ci.foreign_loops = foreign;
    ci.port = CONTEXT_PORT_NO_LISTEN;
    struct lws_context *ctx = lws_create_context(&ci);
    if (ctx == NULL) {
        fv_seterr(err, errlen, "cannot create the libwebsockets context");
        return FV_ENOMEM;
    }
    fv_loopref_publish(&srv->ref, ctx);
    if (cfg->role == FV_ROLE_STORAGE || cfg->role == FV_ROLE_API) { /* no devices here */
        /* A storage node answers its shards' queries; an api node sends them to the owners. */
        int rc = fv_clusterapi_open(cfg, &srv->kek, &srv->http, srv->consumer, &srv->api,
                                    &srv->capi, err, errlen);
        if (rc == FV_OK)
            rc = fv_apiloop_start(&srv->api, cfg, &srv->http, &srv->guard, srv->api_keys, err,
                                  errlen);
        if (rc == FV_OK)
            fv_info("%s node: API on http://%s:%d", fv_role_name(cfg->role), cfg->api_host,
                    cfg->api_port);
        return rc;
    }

    struct fv_server_files tls;
    fv_certs_server_files(cfg->certs_dir, &tls);
    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof vi);
    vi.vhost_name = "devices";
    /* With accepts_per_turn, fleetvault listens itself (server/acceptor.h) and hands lws each
     * connection; 0 keeps lws's listener. */
    vi.iface = cfg->accepts_per_turn ? NULL : cfg->listen_host;
    vi.port = cfg->accepts_per_turn ? CONTEXT_PORT_NO_LISTEN_SERVER : cfg->listen_port;
    vi.protocols = fv_ingest_protocols();
    vi.user = srv->ing;
    vi.ssl_cert_filepath = tls.cert;
    vi.ssl_private_key_filepath = tls.key;
    vi.ssl_ca_filepath = tls.ca;
    vi.alpn = "http/1.1";
    vi.options =
        LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    vi.timeout_secs = 20;
    struct lws_vhost *vh = lws_create_vhost(ctx, &vi);
    if (vh == NULL) {
        fv_seterr(err, errlen, "cannot listen for devices on %s:%d (in use, or TLS files bad)",
                  cfg->listen_host, cfg->listen_port);
        return FV_EIO;
    }
    if (cfg->accepts_per_turn) {
        int rc =
            fv_acceptor_open(loop, vh, cfg->listen_host, cfg->listen_port, cfg->accepts_per_turn,
                             cfg->accept_rate, &srv->m, &srv->acceptor, err, errlen);
        if (rc) return rc;
    }
    if (cfg->role == FV_ROLE_GATEWAY) {
        /* No store and no data API (the storage nodes have them): /status and /metrics for
         * the load balancer and monitoring, and a 404 naming the role for the rest. */
        srv->http.view.log = &srv->log;
        int rc = fv_apiloop_start(&srv->api, cfg, &srv->http, NULL, NULL, err, errlen);
        if (rc) return rc;
        fv_info("gateway: serving devices on wss://%s:%d (mutual TLS, CA %s); /status and "
                "/metrics on http://%s:%d",
                cfg->listen_host, cfg->listen_port, tls.ca, cfg->api_host, cfg->api_port);
        return FV_OK;
    }
    /* The clip endpoint and the MQTT publisher before the API thread, which reads
     * srv->clip_server (erasure) and drains the publisher's audit records. */
    int rc = fv_server__open_clips(srv, err, errlen);
    if (rc == FV_OK) rc = open_mqtt(srv, err, errlen);
    if (rc == FV_OK)
        rc = fv_apiloop_start(&srv->api, cfg, &srv->http, &srv->guard, srv->api_keys, err, errlen);
    if (rc) return rc;
    fv_info("serving devices on wss://%s:%d (mutual TLS, CA %s), API on http://%s:%d",
            cfg->listen_host, cfg->listen_port, tls.ca, cfg->api_host, cfg->api_port);
    return FV_OK;
}

/* One turn of housekeeping after each loop iteration (the API thread has its own:
 * server/apiloop.c). */
static void housekeeping(struct fv_server *srv, uint64_t *last_trim)
{
    fv_ingest_refresh_keys(srv->ing); /* keys destroyed by the API: compaction purges them */
    fv_ingest_keys_fetched(srv->ing); /* a gateway's: devices waiting for their key go on */
    fv_gw_downlink_drain(srv->downlink);
    fv_presences_turn(&srv->pres, srv->m.cluster_takeovers);
    fv_downlinks_metrics(&srv->dls, &srv->m);
    if (srv->jslog) {
        struct fv_jsreclog_counts c;
        fv_jsreclog_counts(srv->jslog, &c);
        srv->m.cluster_published = c.published;
        srv->m.cluster_pubacks = c.pubacks;
        srv->m.cluster_pubacks_duplicate = c.duplicates;
        srv->m.cluster_publish_retries = c.retries;
        srv->m.cluster_publish_refused = c.refused;
        srv->m.cluster_publish_outstanding = c.outstanding;
    }
    struct fv_kvsync_stats ks = {0};
    if (srv->jssubj) fv_jssubjects_stats(srv->jssubj, &ks);
    sync_metrics(&ks, &srv->m.subj);
    ks = (struct fv_kvsync_stats){0};
    if (srv->jsprinc) fv_jsprincipals_stats(srv->jsprinc, &ks);
    sync_metrics(&ks, &srv->m.princ);
    ks = (struct fv_kvsync_stats){0};
    if (srv->jszones) fv_jszones_stats(srv->jszones, &ks);
    sync_metrics(&ks, &srv->m.zones);
    if (srv->jsquota) {
        struct fv_jsquotas_stats qs;
        fv_jsquotas_stats(srv->jsquota, &qs);
        srv->m.quota_applied = qs.applied;
        srv->m.quota_published = qs.published;
        srv->m.quota_failed = qs.failed;
        srv->m.quota_malformed = qs.malformed;
        srv->m.quota_stale = qs.stale;
        srv->m.quota_pending = qs.pending;
        srv->m.quota_position = qs.position;
    }
    if (srv->store) fv_store_tick(srv->store, srv->wal, store_key, srv, fv_now_ms());
    registry_poll(srv);
    fv_ingest_pace(srv->ing);
    fv_ingest_sweep(srv->ing);
    /* TLS handshakes leave freed memory scattered through the heap; handing it back every
     * few seconds keeps idle connections near their true size (measured: 35 -> 30 KB per
     * connection at 1,000 devices). It takes a few ms for a large heap. */
    if (fv_mono_ns() - *last_trim <= 5000000000ull) return;
    malloc_trim(0);
    *last_trim = fv_mono_ns();
}

/* Shutdown, in the reverse order of start-up: the API thread, then the ingest loop's context
 * (closing sessions writes their connectivity records through the ingest into the WAL and
 * the head), the ingest, the WAL (making everything appended durable), the store (waiting
 * for a running job; T1 holds whatever it was doing), access control, the catalog. */
static void close_all(struct fv_server *srv, struct ev_loop *loop)
{
    fv_clip_server_stop(srv->clip_server); /* before the worker it wakes */
    fv_mqtt_stop(srv->mqtt);               /* its last records, drained below */
    fv_apiloop_stop(&srv->api);
    fv_clusterapi_close(srv->capi); /* after the thread that serves and forwards */
    srv->capi = NULL;
    fv_apiloop_audit_mqtt(&srv->api);
    srv->api.mqtt = NULL;
    fv_mqtt_free(srv->mqtt);
    srv->mqtt = NULL;
    fv_apiloop_audit_ven(&srv->api);   /* the VEN's last audit records, then the VEN */
    fv_clip_deid_stop(srv->clip_deid); /* the worker's last records, then the worker */
    fv_apiloop_audit_clips(&srv->api); /* and the clip endpoint's, then the endpoint */
    srv->api.deid = NULL;
    srv->api.clips = NULL;
    fv_clip_server_free(srv->clip_server);
    srv->clip_server = NULL;
    fv_clip_deid_free(srv->clip_deid);
    srv->clip_deid = NULL;
    fv_ds_builds_stop(srv->ds_builds); /* after the API thread that submits to it */
    srv->ds_builds = NULL;
    fv_ven_close(srv->ven); /* before the VPP it drives and the store it reads */
    fv_clusterven_close(srv->ven_js);
    srv->ven_js = NULL;
    fv_oadr_store_free(srv->ven_store);
    fv_keystore_close(srv->ven_keys);
    fv_acceptor_close(srv->acceptor); /* no new devices; the connected ones close below */
    srv->acceptor = NULL;
    struct lws_context *ctx = fv_loopref_retire(&srv->ref);
    if (ctx) lws_context_destroy(ctx);
    if (loop) ev_loop_destroy(loop);
    __atomic_store_n(&running, NULL, __ATOMIC_SEQ_CST);
    fv_downlinks_close(&srv->dls, &srv->m); /* its threads call the capabilities, the queue */
    fv_presences_close(&srv->pres);         /* after the sessions' GONE */
    fv_vpp_close(srv->vpp); /* after the ingest loop's context: the listener is its */
    fv_campaign_close(srv->campaigns);
    fv_gw_downlink_free(srv->downlink);
    fv_jskeys_unwatch(srv->jskeys);   /* its thread wakes the ingest */
    fv_keyfetch_stop(srv->keyfetch);  /* so does this one's; before the source it asks */
    fv_jssubjects_close(srv->jssubj); /* it wakes the ingest too; it uses the keys bucket */
    srv->jssubj = NULL;
    fv_jsprincipals_close(srv->jsprinc); /* after the API thread, whose guard reads the catalog */
    fv_jszones_close(srv->jszones);      /* likewise */
    srv->jszones = NULL;
    srv->guard.share = (struct fv_guard_share){0};
    fv_jsquotas_close(srv->jsquota); /* after the API thread, whose guard counts through it */
    srv->jsquota = NULL;
    srv->jsprinc = NULL;
    fv_ingest_free(srv->ing);
    fv_http_ctx_free(&srv->http);
    fv_jsreclog_close(srv->jslog, 5000); /* after the sessions' last records */
    fv_jsconsume_free(srv->consumer);    /* acks what the WAL holds durably */
    fv_recovery_free(&srv->rec);
    if (srv->wal) fv_wal_close(srv->wal);
    fv_store_close(srv->store);
    fv_guard_close(&srv->guard);
    fv_exports_free(srv->exports);
    fv_label_queue_free(srv->labeling);
    fv_erasure_close(&srv->erasure);
    fv_fleet_free(&srv->fleet);
    fv_keystore_close(srv->api_keys);
    fv_keystore_close(srv->keys);
    fv_jskeys_close(srv->jskeys); /* after the keystore it serves */
    fv_kek_wipe(&srv->kek);
    if (srv->lock_fd >= 0) close(srv->lock_fd);
}

int fv_server_run(const struct fv_config *cfg, volatile sig_atomic_t *stop, char *err,
                  size_t errlen)
{
    struct fv_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL) return FV_ENOMEM;
    struct ev_loop *loop = NULL;
    srv->cfg = cfg;
    fv_fleet_init(&srv->fleet);
    srv->stop = stop;
    srv->lock_fd = -1;
    srv->start_ms = fv_now_ms();
    raise_fd_limit();
    lws_set_log_level(LLL_ERR | (fv_log_get_level() == FV_LOG_DEBUG ? LLL_WARN : 0), lws_log_emit);

    int rc = fv_cluster_cfg_check(&cfg->cluster, cfg->role, err, errlen);
    if (rc == FV_OK) rc = open_state(srv, err, errlen);
    if (rc) goto out;
    __atomic_store_n(&running, srv, __ATOMIC_SEQ_CST);
    /* libev (epoll) rather than lws's default poll(): poll() costs O(connections) per
     * wake-up, which dominated CPU at a few hundred devices (measured with perf). The loop
     * is ours, so we can run it one iteration at a time and see *stop. */
    loop = ev_loop_new(EVFLAG_AUTO);
    if (loop == NULL) {
        fv_seterr(err, errlen, "cannot create the event loop");
        rc = FV_ENOMEM;
        goto out;
    }
    rc = open_listeners(srv, loop, err, errlen);
    if (rc == FV_OK) rc = fv_ven_listen(srv->ven, err, errlen);
    if (rc) goto out;

    uint64_t last_trim = fv_mono_ns();
    if (srv->store) fv_store_set_wake(srv->store, fv_server__wake_loop, srv);
    struct ev_timer tick;
    ev_timer_init(&tick, tick_cb, 1.0, 1.0);
    ev_timer_start(loop, &tick);
    /* Set here, after every other thread started, so that none inherits it. */
    int e = cfg->ingest_nice ? fv_thread_set_nice(cfg->ingest_nice) : 0;
    if (e)
        fv_warn("ingest: the loop keeps its priority: ingest_nice %d refused (%s; it needs "
                "CAP_SYS_NICE or RLIMIT_NICE)",
                cfg->ingest_nice, strerror(e));
    while (!*stop && !srv->log.failed(srv->log.impl)) {
        if (srv->consumer) { /* storage node: the stream instead of devices */
            ev_run(loop, EVRUN_NOWAIT);
            int n = 0;
            if (storage_full(srv))
                fv_jsconsume_keep_leases(srv->consumer); /* renewed while the head drains */
            else
                n = fv_jsconsume_step(srv->consumer, 20, err, errlen);
            uint32_t held;
            uint64_t takeovers;
            fv_jslease_counts(fv_jsconsume_leases(srv->consumer), &held, &takeovers);
            srv->m.cluster_shards_owned = held;
            srv->m.cluster_takeovers = takeovers;
            srv->m.moved = fv_jsconsume_moved(srv->consumer);
            if (n < 0) {
                rc = n;
                break;
            }
        } else {
            ev_run(loop, EVRUN_ONCE);
        }
        housekeeping(srv, &last_trim);
    }
    if (rc) {
        fv_error("%s; stopped (the record stays in the stream, taken again at the next start)",
                 err);
    } else if (srv->log.failed(srv->log.impl)) {
        fv_seterr(err, errlen, "the %s failed (see above); stopped",
                  srv->jslog ? "record stream" : "write-ahead log");
        rc = FV_EIO;
    } else {
        fv_info("stopping");
    }
out:
    close_all(srv, loop);
    free(srv);
    return rc;
}

void fv_server_wake(void)
{
    struct fv_server *srv = __atomic_load_n(&running, __ATOMIC_SEQ_CST);
    if (srv) fv_server__wake_loop(srv);
}
