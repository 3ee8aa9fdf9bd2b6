/*
 * api.h - the HTTP API, independent of the transport: a request (method, path, query,
 * Authorization header) in, a response (status, content type, body) out. The transport
 * (api/http.h) calls it on the API thread (server/apiloop.h); what it reads of the ingest
 * side is shared under that side's rules (gateway/fleet.h F1, store/store.h "Threads").
 *
 * Endpoints (docs/operations.md, "HTTP API"):
 *   GET /status                       liveness and summary (no token)
 *   GET /metrics                      Prometheus text (no token; holds no personal data)
 *   GET /ui/...                       the web console's files (no token; api/static_ui.h)
 *   GET /api/v1/audit                 the access log searched (privacy officer; audit_api.c)
 *   GET /api/v1/stats/history         counters over time (Bearer token; api/stats_hist.h)
 *   GET /api/v1/vehicles              known devices            (Bearer token)
 *   GET /api/v1/vehicles/{id}/state   latest value and time of every signal (Bearer token)
 *   GET /api/v1/signals/{name}/latest one signal's latest value on every vehicle (Bearer token)
 *   GET /api/v1/query, /api/v1/fleet  the store's queries (api/query.h)      (Bearer token)
 *   GET /api/v1/store                 parts, blocks, bytes, head, compaction  (Bearer token)
 *   POST /api/v1/store/compact        flush the head and compact everything  (Bearer token)
 *   POST /api/v1/subjects/{id}/erase  erase a device's data (privacy-officer, ticket)
 *   GET /api/v1/subjects/{id}/export  everything held about it, a tar (api/export.h)
 *   GET /api/v1/clips                 stored clips' metadata, pseudonymised (api/clips_api.c)
 *   POST /api/v1/exports, POST /api/v1/exports/{id}/approve, GET /api/v1/exports/{id}
 *                                     bulk exports with approval and watermark (exports.h)
 * Reads of personal data need a purpose (privacy/guard.h): 403 with the policy's reason.
 * Errors are JSON {"error": "..."} with 400/401/403/404/405.
 */
#ifndef FV_API_API_H
#define FV_API_API_H

#include <stdint.h>

#include "gateway/fleet.h"
#include "gateway/metrics.h"
#include "util/buf.h"
#include "wal/wal.h"

struct fv_reclog;

struct fv_store;
struct fv_store_cursor;
struct fv_keystore;
struct fv_guard;
struct fv_guard_ctx;
struct fv_store_config;
struct fv_exports;
struct fv_vpp;
struct fv_ven;
struct fv_campaign;
struct fv_ds_builds;
struct json_t;

struct fv_label_queue;
struct fv_stats_hist;
struct fv_http_response;

struct fv_api_view {
    const struct fv_fleet *fleet;
    const struct fv_metrics *metrics;
    struct fv_wal *wal;
    const char *admin_token; /* the Bearer token that opens /api/ */
    uint64_t start_ms;
    struct fv_store *store;
    struct fv_keystore *keys;
    const char *query; /* the URL's query string (after '?'), or NULL */
    const char *body;  /* a POST's body (NUL-terminated), or NULL */
    size_t body_len;
    const char *range;      /* the request's Range header, or NULL */
    struct fv_guard *guard; /* purpose-bound access (privacy/guard.h); NULL: admin token only */
    const struct fv_store_config *store_cfg; /* signal classes */
    /* Erasure of a device's subjects (the server does it: keys, tombstones, store, state). */
    int (*erase)(void *arg, const char *device, const struct fv_guard_ctx *ctx, char *err,
                 size_t errlen);
    void *erase_arg;
    const char *audit_dir;             /* DATA/audit (subject exports include their access log) */
    const char *datasets_dir;          /* DATA/datasets (data/dataset.h); NULL: none */
    struct fv_exports *exports;        /* bulk exports (api/exports.h) */
    struct fv_vpp *vpp;                /* the virtual power plant (energy/vpp.h); NULL: none */
    struct fv_ven *ven;                /* the OpenADR VEN (openadr/ven.h); NULL: none */
    struct fv_campaign *campaigns;     /* data-collection campaigns (data/campaign.h); NULL: none */
    const char *clips_dir;             /* DATA/clips (data/clip_store.h); NULL: no clips */
    struct fv_label_queue *labeling;   /* the labelers' leases (data/label_queue.h), owned by
                                          the API thread; NULL: no labeling queue */
    struct fv_ds_builds *ds_builds;    /* dataset builds (data/ds_builds.h); NULL: none */
    const char *ui_dir;                /* the web console's files (static_ui.h); NULL: none */
    const struct fv_stats_hist *stats; /* counters over time (stats_hist.h); NULL: none */
    /* A cluster's gateway (docs/cluster.md): its record log (the stream), NULL elsewhere.
     * Set, it means the node has no WAL, store or data API: /status reads the log instead
     * of the WAL, and every /api/ path answers 404. */
    const struct fv_reclog *log;
    /* A cluster's api node (docs/cluster.md, "Queries through an api node"): called for
     * every authenticated /api/ request; 1 when it answered out (the shards' owners did),
     * 0 to answer here. NULL: every request is answered here. */
    int (*forward)(void *arg, const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                   const char *method, const char *path, struct fv_http_response *out);
    void *forward_arg;
    /* A shard's owner answering for one shard: the fleet reads keep only the devices whose
     * current pseudonym keep() accepts. NULL: every device. */
    int (*keep)(void *arg, const char *pseudo);
    void *keep_arg;
    /* A cluster's api node: called for the Prometheus API's reads (api/promapi.h
     * fv_prom_kind) of an authenticated principal, v the request's view with a POST's form
     * parameters in its query; 1 when it answered out (it asks the shards' owners), 0 to
     * answer here. Its arg is forward_arg. NULL: answered here. */
    int (*prom_forward)(void *arg, const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                        const char *path, struct fv_http_response *out);
};

/* A response is either whole (body) or streamed: when more is set, the transport sends
 * body, then calls more(ctx, buf) for each next piece until it returns 0 (done) or a
 * negative error (the connection is closed), and finally free_ctx(ctx). A streamed response
 * is sent with chunked encoding, unless length_known: then with Content-Length: length, and
 * body plus every piece must add up to exactly length bytes (else the connection is closed
 * when the producer ends: the client sees a short body, never a wrong one). */
#define FV_HTTP_MORE_LATER 2 /* a streamed response's next piece is not here yet (H3) */
struct fv_http_response {
    int status;
    const char *content_type;
    int www_authenticate; /* add WWW-Authenticate: Bearer */
    int length_known;
    uint64_t length;
    int accept_ranges;      /* add Accept-Ranges: bytes */
    char content_range[96]; /* "bytes A-B/N" (206) or "bytes * /N" (416); "": none */
    int ui_headers;         /* the console's headers (static_ui.h U2) */
    const char *location;   /* a redirect's Location, or NULL */
    int retry_after;        /* > 0: add Retry-After: this many seconds (a 503) */
    struct fv_buf body;
    int (*more)(void *ctx, struct fv_buf *out);
    void (*free_ctx)(void *ctx);
    void *ctx;
    /* more may also return FV_HTTP_MORE_LATER: nothing appended, the next piece not here yet;
     * the transport calls it again after its loop is woken (api/http.h H3). */
    /* A response not known yet (an api node's request to the shards' owners, api/http.h H3):
     * the transport sends nothing and calls wait(ctx, out) on its thread whenever its loop is
     * woken, until it returns 1: out is then a response as above (wait cleared, ctx and
     * free_ctx those of its stream or NULL: wait frees its own state). A connection closed
     * while it waits calls free_ctx(ctx). */
    int (*wait)(void *ctx, struct fv_http_response *out);
};

void fv_api_handle(const struct fv_api_view *v, const char *method, const char *path,
                   const char *authorization, struct fv_http_response *out);
/* fv_api_handle for a GET of /api/..., or a POST of /api/v1/subjects/{id}/erase or /consent
 * (their parameters in the query, v->body unused), whose principal and role were
 * authenticated by the cluster's api node (cluster/jsquery.h: the trust boundary is
 * NATS's): no token is checked;
 * everything else - the decision, the audit, the obligations, the quota - is as for a
 * request with that principal's token. */
/* The request of a principal the api node authenticated, answered by this node itself (the
 * api node's forward declined it: server/clusterapi.h Q2's device no shard holds), as
 * fv_api_handle would have after its forward returned 0. */
void fv_api_route_authenticated(const struct fv_api_view *v, const char *method, const char *path,
                                const struct fv_guard_ctx *ctx, struct fv_http_response *out);
void fv_api_handle_as(const struct fv_api_view *v, const char *method, const char *path,
                      const char *principal, const char *role, struct fv_http_response *out);
/* /api/v1/vpp/openadr[/...] (api/openadr_api.c): the OpenADR VEN's status and opt schedules;
 * sub is what follows "/openadr". Decides and audits the call itself. */
void fv_api_openadr(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                    const char *sub, struct fv_http_response *out);
/* /api/v1/datasets[/...] (api/dataset_api.c): training datasets, their manifests and shards;
 * sub is what follows "/datasets". Decides and audits the call itself. */
void fv_api_datasets(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                     const char *sub, struct fv_http_response *out);
/* GET /api/v1/audit (api/audit_api.c): the access log searched, for privacy officers. */
void fv_api_audit_search(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                         struct fv_http_response *out);
/* After a withdrawal of consent to "clips" or "model_training" by subject (a keystore
 * name): marks every dataset version that holds it (data/dataset.h D7; its identifier is
 * data/ds_clips.h S4). A failure is logged (the withdrawal stands; serving still finds
 * the version through the next mark). API thread. */
void fv_api_datasets_withdrawn(const struct fv_api_view *v, const char *subject);
/* The purpose whose settlement rows name the payee by its id (vpp_api.c E1, E2). */
#define FV_API_VPP_BILLING "billing"
struct fv_guard_served;
/* GET /api/v1/vpp/events/ID/settlement (api/vpp_settle.c), after the caller's decision: rows
 * of the sites ctx may see (E3), named as E1 says; the sites answered are added to served
 * (E4). */
void fv_api_vpp_settlement(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *id,
                           struct fv_guard_served *served, struct fv_http_response *out);
/* GET /api/v1/vpp/settlement?program=P&season=YEAR: every completed event of the season. */
void fv_api_vpp_season(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                       struct fv_guard_served *served, struct fv_http_response *out);
/* A site's payments, its owner's data (the subject export): its settlement row in every
 * completed event it is settled in, named by its id, as {"rows": [...], "total": {...}}
 * (settle.h's JSON; a new reference), NULL when there is none or on error. */
struct json_t *fv_api_vpp_site_payments(const struct fv_api_view *v, const char *site);
/* Opens a query of a site's samples of fields with from <= t <= to (store.h), with the data
 * key of the site's current subject (its owner period's, privacy/subjects.h). FV_ENOENT: the
 * site never sent anything (no key), or the view is a shard's (keep) and the site another
 * shard's. The caller decides and audits the read. */
int fv_api_site_query(const struct fv_api_view *v, const char *site, int64_t from, int64_t to,
                      const uint32_t *fields, size_t nfields, struct fv_store_cursor **out,
                      char *err, size_t errlen);
/* The capacity forecast of a program's sites for [from, to) (api/vpp_capacity.c): a JSON
 * answer in *out and the window's average kW in *avg_kw. FV_OK, FV_EINVAL (err), FV_ENOMEM. */
int fv_api_vpp_forecast(const struct fv_api_view *v, const char *program, int64_t from, int64_t to,
                        struct json_t **out, double *avg_kw, char *err, size_t errlen);
/* GET /api/v1/vpp/capacity?program=P&from=T&to=T, after the caller's decision. */
void fv_api_vpp_capacity(const struct fv_api_view *v, struct fv_http_response *out);
/* /api/v1/campaigns[/ID[/stop]] (api/campaign_api.c); sub is the path after "/v1/campaigns". */
void fv_api_campaigns(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                      const char *sub, struct fv_http_response *out);
/* /api/v1/vpp/... (api/vpp_api.c); sub is the path after "/v1/vpp". */
void fv_api_vpp(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                const char *sub, struct fv_http_response *out);

/* The policy class bit of a signal (its store class), and of every signal class. */
uint32_t fv_api_signal_class(const struct fv_api_view *v, uint32_t field);
uint32_t fv_api_all_classes(const struct fv_api_view *v);

/* G11 (privacy/guard.h): the device a read names, as ctx's role names devices: by its
 * pseudonym within the request's purpose for a pseudonymising role, by its id for every
 * other. Call before fv_guard_read, which refuses the read as unknown when this returns NULL:
 * an unknown name, an erased subject, or a device outside the role's scope (ctx->unknown
 * then says which, for the audit log only). */
const struct fv_device *fv_api_find_device(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                                           const char *name);
/* JSON answers: j (its reference taken) with status; {"error": msg}. */
void fv_api_respond_json(struct fv_http_response *r, int status, struct json_t *j);
void fv_api_respond_error(struct fv_http_response *r, int status, const char *msg);

/* Principals (principals_http.c; G13): GET/POST /api/v1/principals, POST .../NAME/revoke
 * (revoke: NAME, else NULL), POST .../NAME/approve. */
void fv_api_principals(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                       const char *revoke, struct fv_http_response *out);
void fv_api_principal_approve(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                              const char *name, struct fv_http_response *out);

/* G11: the one answer for a device that cannot be read (unknown, erased, out of scope, not
 * consented): 404 "unknown device: ...", the same text whatever NAME was. */
void fv_api_unknown_device(struct fv_http_response *out, const char *name);

/* GET /api/v1/clips (api/clips_api.c): decides and audits the read itself. */
void fv_api_clips(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                  struct fv_http_response *out);
/* The role whose principals use the labeling queue (api/labeling_api.c Q1). */
#define FV_LABELING_ROLE "labeler"
/* /api/v1/labeling/... (api/labeling_api.c); sub is the path after "/v1/labeling". Decides
 * and audits each call itself. */
void fv_api_labeling(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                     const char *sub, struct fv_http_response *out);
/* Energy-site scoping (privacy/guard.h): is the device an energy site; may ctx see it. */
int fv_api_is_energy_site(const struct fv_device *d);
int fv_api_in_scope(const struct fv_guard_ctx *ctx, const struct fv_device *d);
/* A shard's owner answering for one shard (keep): is d's current subject in it? 1 when the
 * view has no keep. */
int fv_api_kept(const struct fv_api_view *v, const struct fv_device *d);

/* GET /metrics (api/metrics_api.c): the Prometheus text format. */
void fv_api_metrics(const struct fv_api_view *v, struct fv_http_response *r);

/* Renders a value as JSON text appended to out (used by the API and inspect). */
int fv_api_value_json(const struct fv_value *v, struct fv_buf *out);

/* Formats epoch milliseconds as RFC 3339 UTC with milliseconds into buf (>= 25 bytes). */
void fv_format_time_ms(uint64_t ms, char *buf, size_t len);

#endif
