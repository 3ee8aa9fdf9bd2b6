/* apiloop.c - the HTTP API's own thread (apiloop.h). */
#include <errno.h>
#include <sched.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

#include <ev.h>
#include <libwebsockets.h>
#include <sqlite3.h>

#include "api/http.h"
#include "crypto/keys.h"
#include "data/clip_deid.h"
#include "data/clip_server.h"
#include "mqtt/mqtt.h"
#include "openadr/ven.h"
#include "privacy/audit.h"
#include "privacy/guard.h"
#include "server/apiloop.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/prio.h"

void fv_loopref_publish(struct fv_loopref *r, struct lws_context *ctx)
{
    __atomic_store_n(&r->ctx, ctx, __ATOMIC_SEQ_CST);
}

void fv_loopref_wake(void *arg)
{
    struct fv_loopref *r = arg;
    __atomic_add_fetch(&r->wakers, 1, __ATOMIC_SEQ_CST);
    struct lws_context *ctx = __atomic_load_n(&r->ctx, __ATOMIC_SEQ_CST);
    if (ctx) lws_cancel_service(ctx);
    __atomic_sub_fetch(&r->wakers, 1, __ATOMIC_SEQ_CST);
}

struct lws_context *fv_loopref_retire(struct fv_loopref *r)
{
    struct lws_context *ctx = __atomic_exchange_n(&r->ctx, NULL, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&r->wakers, __ATOMIC_SEQ_CST) != 0)
        sched_yield();
    return ctx;
}

/* Wakes the loop at least once a second so housekeeping runs when no request comes. */
static void tick_cb(struct ev_loop *loop, struct ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

/* The OpenADR VEN's audit records (ven.h N8): the VEN's thread queues them, the audit log's
 * owner writes them. A record that cannot be written stays queued. */
static int ven_audit(void *arg, const char *action, const char *result, const char *reason,
                     const char *extra_json)
{
    struct fv_audit *a = arg;
    struct fv_audit_event ev = {.kind = "openadr",
                                .action = action,
                                .principal = "openadr-ven",
                                .purpose = "energy_programs",
                                .result = result,
                                .reason = reason,
                                .extra_json = extra_json};
    if (fv_audit_append(a, &ev, NULL) == FV_OK) return 0;
    fv_error("audit: %s", fv_audit_last_error(a));
    return -1;
}

void fv_apiloop_audit_ven(struct fv_apiloop *al)
{
    if (al->guard && al->guard->audit && al->ven)
        fv_ven_audit_drain(al->ven, ven_audit, al->guard->audit);
}

/* The de-identification worker's records (clip_deid.h D6), its subject by pseudonym. */
static int deid_audit(void *arg, const struct fv_deid_audit *r)
{
    struct fv_audit *a = arg;
    char extra[64];
    snprintf(extra, sizeof extra, "{\"clip\":\"%s\"}", r->clip);
    const char *subjects[1] = {r->subject};
    struct fv_audit_event ev = {.kind = "clips",
                                .action = r->action,
                                .principal = "clips-deid",
                                .purpose = "clips",
                                .subjects = subjects,
                                .nsubjects = 1,
                                .result = r->result,
                                .reason = r->reason,
                                .extra_json = extra};
    if (fv_audit_append(a, &ev, NULL) == FV_OK) return 0;
    fv_error("audit: %s", fv_audit_last_error(a));
    return -1;
}

/* The clip endpoint's signal reads (clip_server.h X3), the subject by pseudonym. */
static int signals_audit(void *arg, const struct fv_clip_audit *r)
{
    struct fv_audit *a = arg;
    char extra[192], reason[64];
    snprintf(extra, sizeof extra,
             "{\"clip\":\"%s\",\"from_ms\":%lld,\"to_ms\":%lld,\"signals\":%llu,"
             "\"samples\":%llu}",
             r->clip, (long long)r->from_ms, (long long)r->to_ms, (unsigned long long)r->signals,
             (unsigned long long)r->samples);
    snprintf(reason, sizeof reason, "%s",
             strcmp(r->result, "allow") != 0 ? "the store could not be read"
             : r->signals                    ? "signals around the trigger added to the clip"
                                             : "no signal samples around the trigger");
    const char *subjects[1] = {r->subject};
    struct fv_audit_event ev = {.kind = "clips",
                                .action = "clips.signals",
                                .principal = "clips-server",
                                .purpose = "clips",
                                .subjects = subjects,
                                .nsubjects = 1,
                                .result = r->result,
                                .reason = reason,
                                .extra_json = extra};
    if (fv_audit_append(a, &ev, NULL) == FV_OK) return 0;
    fv_error("audit: %s", fv_audit_last_error(a));
    return -1;
}

void fv_apiloop_audit_clips(struct fv_apiloop *al)
{
    if (al->guard && al->guard->audit && al->deid)
        fv_clip_deid_audit_drain(al->deid, deid_audit, al->guard->audit);
    if (al->guard && al->guard->audit && al->clips)
        fv_clip_server_audit_drain(al->clips, signals_audit, al->guard->audit);
}

/* The MQTT publisher's records (mqtt.h Q3): its subject by pseudonym, purpose
 * home_automation. A record that cannot be written stays queued, and the publisher waits. */
static int mqtt_audit(void *arg, const struct fv_mqtt_audit *r)
{
    struct fv_audit *a = arg;
    const char *subjects[1] = {r->subject};
    struct fv_audit_event ev = {.kind = "mqtt",
                                .action = r->action,
                                .principal = "mqtt-publisher",
                                .purpose = FV_MQTT_PURPOSE,
                                .subjects = subjects,
                                .nsubjects = 1,
                                .result = "allow",
                                .reason = r->reason,
                                .extra_json = r->extra_json};
    if (fv_audit_append(a, &ev, NULL) == FV_OK) return 0;
    fv_error("audit: %s", fv_audit_last_error(a));
    return -1;
}

void fv_apiloop_audit_mqtt(struct fv_apiloop *al)
{
    if (al->guard && al->guard->audit && al->mqtt)
        fv_mqtt_audit_drain(al->mqtt, mqtt_audit, al->guard->audit);
}

/* The guard's and the audit log's timed work: sampled failures (G9), checkpoints, and once
 * an hour the audit log's retention. */
static void housekeeping(struct fv_apiloop *al, uint64_t *last_retention_ns)
{
    struct fv_guard *g = al->guard;
    /* the fleet page's counters over time (api/stats_hist.h) */
    fv_stats_hist_tick(&al->http->stats, al->http->view.metrics, al->http->view.fleet, fv_now_ms());
    if (g == NULL) return;
    fv_apiloop_audit_ven(al);
    fv_apiloop_audit_clips(al);
    fv_apiloop_audit_mqtt(al);
    if (g->audit) fv_audit_tick(g->audit);
    fv_guard_tick(g);
    uint64_t now = fv_mono_ns();
    /* New devices' keys grow the catalog's SQLite WAL (4 MiB before SQLite's own
     * checkpoint); fold it back into catalog.db once a minute. Here, not on the ingest loop:
     * a truncating checkpoint waits for other connections' readers. */
    if (al->keys && now - al->checkpoint_ns >= 60000000000ull) {
        al->checkpoint_ns = now;
        sqlite3_wal_checkpoint_v2(fv_keystore_db(al->keys), NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL,
                                  NULL);
    }
    if (g->audit && al->cfg->audit_retention_ms && now - *last_retention_ns >= 3600000000000ull) {
        *last_retention_ns = now;
        uint64_t gone = 0;
        if (fv_audit_apply_retention(g->audit, fv_now_ms(), &gone) == FV_OK && gone)
            fv_info("audit: retention removed %llu old files", (unsigned long long)gone);
    }
}

static void *api_main(void *arg)
{
    struct fv_apiloop *al = arg;
    /* Devices first: when the cores are all busy, the scheduler gives the ingest loop the
     * larger share (a thread's nice value is its own on Linux; raising it needs no
     * privilege). The API is served with what is left, which an idle ingest leaves whole. */
    int e = al->cfg->api_nice > 0 ? fv_thread_set_nice(al->cfg->api_nice) : 0;
    if (e) fv_warn("api: cannot lower the API thread's priority (%s)", strerror(e));
    struct ev_timer tick;
    ev_timer_init(&tick, tick_cb, 1.0, 1.0);
    ev_timer_start(al->loop, &tick);
    uint64_t last_retention = fv_mono_ns() - 3600000000000ull + 60000000000ull; /* first: 1 min */
    while (!__atomic_load_n(&al->stop, __ATOMIC_ACQUIRE)) {
        ev_run(al->loop, EVRUN_ONCE);
        housekeeping(al, &last_retention);
        if (al->serve) al->serve(al->serve_arg);
    }
    ev_timer_stop(al->loop, &tick);
    /* The context is destroyed on the thread that ran it, after no waker can touch it. */
    struct lws_context *ctx = fv_loopref_retire(&al->ref);
    if (ctx) lws_context_destroy(ctx);
    return NULL;
}

int fv_apiloop_start(struct fv_apiloop *al, const struct fv_config *cfg, struct fv_http_ctx *http,
                     struct fv_guard *guard, struct fv_keystore *keys, char *err, size_t errlen)
{
    al->cfg = cfg;
    al->keys = keys;
    al->checkpoint_ns = fv_mono_ns();
    al->http = http;
    al->guard = guard;
    al->loop = ev_loop_new(EVFLAG_AUTO);
    if (al->loop == NULL) {
        fv_seterr(err, errlen, "cannot create the API's event loop");
        return FV_ENOMEM;
    }
    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    void *foreign[1] = {al->loop};
    ci.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_LIBEV;
    ci.foreign_loops = foreign;
    ci.port = CONTEXT_PORT_NO_LISTEN;
    struct lws_context *ctx = lws_create_context(&ci);
    if (ctx == NULL) {
        fv_seterr(err, errlen, "cannot create the API's libwebsockets context");
        return FV_ENOMEM;
    }
    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof vi);
    vi.vhost_name = "api";
    vi.iface = cfg->api_host;
    vi.port = cfg->api_port;
    vi.protocols = fv_http_protocols();
    vi.user = http;
    if (lws_create_vhost(ctx, &vi) == NULL) {
        lws_context_destroy(ctx);
        fv_seterr(err, errlen, "cannot listen for the API on %s:%d (in use?)", cfg->api_host,
                  cfg->api_port);
        return FV_EIO;
    }
    fv_loopref_publish(&al->ref, ctx);
    if (pthread_create(&al->thread, NULL, api_main, al) != 0) {
        lws_context_destroy(fv_loopref_retire(&al->ref));
        fv_seterr(err, errlen, "cannot start the API thread");
        return FV_ENOMEM;
    }
    al->started = 1;
    return FV_OK;
}

void fv_apiloop_stop(struct fv_apiloop *al)
{
    if (al->started) {
        __atomic_store_n(&al->stop, 1, __ATOMIC_RELEASE);
        fv_loopref_wake(&al->ref);
        pthread_join(al->thread, NULL);
        al->started = 0;
    }
    if (al->loop) ev_loop_destroy(al->loop);
    al->loop = NULL;
}
