/*
 * clusterapi.h - the query API across a cluster (docs/cluster.md, "Queries through an api
 * node"): a storage node answers the reads of the shards it holds for the api node
 * (cluster/jsquery.h), and an api node sends each read to the shards' owners and merges.
 *
 *  Q1 the api node authenticates (its catalog's principals, its admin token); the one-device
 *     and fleet reads (GET /api/v1/query?device=D, /vehicles/D/state, /fleet, /vehicles,
 *     /signals/S/latest), a data subject's rights (Q7), the audit search (Q8), the
 *     Prometheus API's reads (Q11) and a bulk export's count and rows (Q12) go to the owners.
 *     Answered by the api node itself, being true there: /status, /metrics, /ui,
 *     /api/v1/stats/history (its own), principals (the cluster's), the bulk exports' table
 *     (the pending list, approvals: Q12), the Prometheus API's labels, metadata and
 *     number-only queries. Refused 501 naming the path (it has no data for them, and an
 *     empty answer would mislead): /api/v1/vpp..., /campaigns..., /clips, /datasets...,
 *     /labeling/..., /store, /store/compact (docs/cluster.md rule 2 has the table).
 *  Q2 one device: every shard's owner is asked at once; the owner whose shard holds the
 *     device's current subject (by pseudonym, natsconn.h fv_cluster_shard) answers, the
 *     others say "not here" without deciding or auditing anything. Its answer is the
 *     answer as soon as it comes (no other shard's can change it). When no shard holds it
 *     and every shard answered, the api node answers itself: the single node's decision and
 *     its G11 answer (404 unknown device, or the policy's 403), audited there.
 *  Q3 the fleet view: every shard's owner answers its shard's devices; the answers are
 *     joined in shard order ("count" summed). The first owner's answer that is not 200
 *     (a refusal: every owner decides alike) is the answer.
 *  Q4 an owner decides, audits and applies the obligations with the single node's code
 *     (api.h fv_api_handle_as) for the principal and role the request names, and sends the
 *     answer only once the audit entries that gate it are durable (api/http.h H2); if its
 *     audit log fails, the answer is a 500.
 *  Q5 a shard whose owner does not answer within cluster.query_timeout_ms (its owner
 *     died and its lease has not expired), or that no storage node listens for: the whole
 *     request is answered 504 or 503 naming the shard, with Retry-After; never a partial
 *     fleet view.
 *  Q6 every read the owners answered is an entry of the api node's audit log (kind
 *     "cluster"; principal, purpose, status, the shard that answered; no subject: G6),
 *     written before the answer leaves; an answer whose entry cannot be written is a 503.
 *  Q7 GET /api/v1/subjects/D/export, POST .../erase and .../consent go to every shard like a
 *     one-device read; the owner of the shard of the subject acted on (the period an export
 *     names, else the current one) answers, the device looked up by id as the single node
 *     does; it decides (action, ticket, quota), audits and acts with the single node's code.
 *     A 504 to an erasure or consent change says it may or may not have been made.
 *  Q8 GET /api/v1/audit (a privacy officer's search) is the api node's own search (its
 *     decision, audited there, and its log) joined with every storage node's: each decides
 *     and audits as the single node does and answers for the lowest shard it holds only
 *     ("not here" for the others), its entries tagged with its name (server/clusteraudit.h).
 *     A shard whose owner does not answer is Q5's 503/504; a node that holds no shard is
 *     not asked (its log is searched on it).
 *  Q9 the api node never waits for the owners on its API thread: fv_clusterapi_forward sends
 *     the request to every shard (jsquery.h A1-A4) and answers with a response that waits
 *     (api/http.h H3); the owners' answers arrive on nats.c's thread and wake the API
 *     thread, as does a timer at the request's deadline; then the answer is made as above
 *     (Q2-Q8). Meanwhile the API thread serves every other request. At most
 *     FV_CLUSTER_INFLIGHT_MAX requests wait for their first answers at once (answers being
 *     streamed not counted; jsquery.h A4 bounds both); the next is answered 503 with
 *     Retry-After. A client that leaves while its request waits frees it (H3).
 *  Q10 the role's subjects per request (policy P5, and the bulk threshold) are decided again
 *     on a joined fleet read's count (Q3): each owner decided on its own shards' vehicles,
 *     so the whole answer may break a limit no owner's part did; it is then refused 403 with
 *     the policy's reason, as one node refuses it, and nothing of it leaves. A read under a
 *     bulk approval is left to the owners.
 *  Q11 the Prometheus API's reads (api/promapi.h fv_prom_kind: query, query_range, series,
 *     label/device/values) are checked by the api node as one node checks them (its 400,
 *     nothing sent), their times taken once and sent first; every owner answers the raw
 *     series of the expression's selectors for its shard's devices (api/promraw.h), decided,
 *     obliged and audited as Q4 (fv_api_prometheus_shard); the api node joins them (a fleet
 *     read's gathering, Q3) and evaluates the expression over the whole (api/promeval.h), so
 *     aggregations are the cluster's. One device (device="ID" in every selector) as Q2;
 *     Q5, Q6 (cluster.prom.*), Q9, Q10 as for the fleet reads; every error in Prometheus's
 *     shape.
 *  Q12 bulk exports (api/exports.h; server/clusterexport.c): the exports table - requests,
 *     approvals, the list, the canaries' secret, the one download - and its audit entries
 *     are the api node's. POST /api/v1/exports asks every owner for its shard's vehicles the
 *     export covers (FV_CLUSTER_XCOUNT: nothing read, decided or audited) and decides on the
 *     sum (pending above the bulk threshold; G11's 404 for a listed name no shard holds).
 *     GET /api/v1/exports/ID asks every owner whether it answers (FV_CLUSTER_XREADY: Q5's
 *     503/504 before the first byte, the export kept), decides again and takes the export,
 *     then streams the header, and each shard's rows in turn (FV_CLUSTER_XROWS: vehicles
 *     lo..hi-1 of the owner's numbering, decided, obliged, metered and audited by the owner
 *     as one node's download), in pieces pulled as the client takes them, segments cut where
 *     a canary goes (the api node writes the canaries as one node places them). A request
 *     or pull not answered within query_timeout_ms cuts the download short (the chunked body
 *     without its last chunk, as a one-device answer's failed pull) and the api node's
 *     export.download entry says "error" and why.
 *  Answers larger than one NATS message go in pieces (cluster/jsquery.h J1-J4): a one-device
 *  answer is streamed to the client as the api node pulls it (each next piece asked for when
 *  the client took the last, and awaited as Q9 does: api.h FV_HTTP_MORE_LATER), a fleet
 *  read's gathered whole (at most 64 MiB per shard, else 507), from every shard at once
 *  (Q9), before it is joined.
 *
 * Threads: fv_clusterapi_open/close on the server's thread (before the API thread starts /
 * after it stopped); fv_clusterapi_serve and fv_clusterapi_forward (and the waits of the
 * responses it makes) on the API thread.
 */
#ifndef FV_SERVER_CLUSTERAPI_H
#define FV_SERVER_CLUSTERAPI_H

#include <stddef.h>

#include "api/api.h"
#include "cluster/jsquery.h"
#include "config/config.h"

#define FV_CLUSTER_RETRY_AFTER_S 5
#define FV_CLUSTER_INFLIGHT_MAX  64 /* Q9: requests waiting for the owners */

struct fv_clusterapi;
struct fv_http_ctx;
struct fv_jsconsume;
struct fv_apiloop;

/* kek: the master key, which seals the requests and answers (jsquery.h J5). consumer: a storage
 * node's (its leases say which shards it answers for: it serves, from al's thread: al->serve), or
 * NULL: an api node (it forwards: http->view.forward). Call before fv_apiloop_start(al). */
int fv_clusterapi_open(const struct fv_config *cfg, const struct fv_kek *kek,
                       struct fv_http_ctx *http, struct fv_jsconsume *consumer,
                       struct fv_apiloop *al, struct fv_clusterapi **out, char *err, size_t errlen);
/* A storage node: answers the queued requests, and those parked whose audit entries became
 * durable (Q4). arg: the struct fv_clusterapi. */
void fv_clusterapi_serve(void *arg);
/* An api node: fv_api_view.forward (Q1-Q3, Q5, Q6, Q8); the response it makes waits for
 * the owners (Q9: out->wait), freed with its connection if the client leaves. */
int fv_clusterapi_forward(void *arg, const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                          const char *method, const char *path, struct fv_http_response *out);
/* An api node: fv_api_view.prom_forward (Q11): the Prometheus API's reads. */
int fv_clusterapi_forward_prom(void *arg, const struct fv_api_view *v,
                               const struct fv_guard_ctx *ctx, const char *path,
                               struct fv_http_response *out);
/* Answers nothing more; parked answers are dropped (their askers time out), answers in
 * progress ended (their producers freed: call before the store and the guard close). NULL
 * is fine. */
void fv_clusterapi_close(struct fv_clusterapi *c);

#endif
