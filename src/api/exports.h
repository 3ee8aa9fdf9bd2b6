/*
 * exports.h - bulk exports of many vehicles' data, guarded against insider leaks.
 *
 *   POST /api/v1/exports?purpose=P&signals=A,B[&from=T][&to=T][&devices=ID,ID][&ticket=T]
 *        asks for an export (all vehicles, or the listed ones). Decided by the policy like
 *        any read; above the role's bulk threshold it is created "pending" and needs
 *        POST /api/v1/exports/{id}/approve by a second, different principal whose role may
 *        approve bulk exports (privacy-officer). Answers {"id", "status", "subjects"}.
 *   GET  /api/v1/exports  the exports waiting for approval, for a role that approves them
 *        (requester, role, purpose, ticket, vehicles, signals, range: no vehicle's data),
 *        audited as export.list.
 *   GET  /api/v1/exports/{id}  the requester downloads an approved export: CSV
 *        "device,t,Signal,..." streamed vehicle by vehicle, obligations applied
 *        (pseudonyms per purpose, coarsened locations, consent).
 *
 * Watermark: every export carries canary rows - a few rows of vehicles that do not exist,
 * whose ids are derived from a secret drawn for this export (HMAC), placed among the real
 * vehicles. The audit log records the export's id, requester, approver and canary ids, so
 * a leaked file names the export it came from and who took it (fleetvault audit query
 * --subject CANARY_ID). Each export may be downloaded once.
 *
 * Alerts: when a principal's rows served today pass 80% of its daily quota, a warning is
 * logged and fleetvault_privacy_alerts_total counts it (also on every refused bulk export).
 * API thread only; exports live in memory (a restart cancels pending ones).
 */
#ifndef FV_API_EXPORTS_H
#define FV_API_EXPORTS_H

#include <stdint.h>

#include "api/api.h"
#include "util/buf.h"

#define FV_EXPORT_CANARIES 3

struct fv_exports;

int fv_exports_new(struct fv_exports **out);
void fv_exports_free(struct fv_exports *e);
uint64_t fv_exports_alerts(const struct fv_exports *e);

/* The three endpoints; ctx is the authenticated requester. */
void fv_api_export_create(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                          struct fv_http_response *out);
void fv_api_export_list(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                        struct fv_http_response *out);
void fv_api_export_approve(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *id,
                           struct fv_http_response *out);
void fv_api_export_get(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *id,
                       struct fv_http_response *out);

/* ---- across a cluster (server/clusterapi.h Q12, docs/cluster.md "Bulk exports") ----------
 * The api node keeps the exports table (requests, approvals, the list, its audit entries and
 * the canaries' secret); the shards' owners count the vehicles and send their rows. */

/* What the shards' owners counted for a request (fv_api_export_count's answers): each
 * shard's vehicles, and for a devices= list whether some shard holds each name. */
struct fv_export_counted {
    uint32_t nshards;
    const uint64_t *vehicles;  /* nshards */
    const unsigned char *held; /* nnames: 1 when a shard holds the name (NULL: no list) */
    size_t nnames;
};
/* POST /api/v1/exports on an api node: as fv_api_export_create, the vehicles being cnt's. */
void fv_api_export_create_counted(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                                  const struct fv_export_counted *cnt,
                                  struct fv_http_response *out);

/* An export taken for its one download. */
struct fv_export;
/* GET /api/v1/exports/{id}'s checks and decision (the requester, approved, the policy again,
 * the quota's subjects): the export, out from the table (downloaded once), ctx holding the
 * decision; or NULL with out the refusal (audited). */
struct fv_export *fv_api_export_take(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                                     const char *id, struct fv_http_response *out);
/* Its vehicles in all and per shard (at creation), and before which of them canary i goes
 * (0..vehicles: after the last). */
uint64_t fv_export_vehicles(const struct fv_export *x);
uint64_t fv_export_shard_vehicles(const struct fv_export *x, uint32_t shard);
uint64_t fv_export_canary_at(const struct fv_export *x, int i);
/* The CSV's header line, and canary i's rows (as a single node's download writes them),
 * appended to b. FV_OK or FV_ENOMEM. */
int fv_export_put_header(const struct fv_export *x, struct fv_buf *b);
int fv_export_put_canary(const struct fv_api_view *v, const struct fv_export *x, int i,
                         struct fv_buf *b);
/* The query string of a shard owner's request for its vehicles lo..hi-1 (fv_api_export_rows)
 * into q (NUL-terminated). FV_OK or FV_ENOMEM. */
int fv_export_owner_query(const struct fv_export *x, uint64_t lo, uint64_t hi, struct fv_buf *q);
/* The download's end: its "export.download" entry (result, reason, the rows and bytes sent,
 * the canaries), and x freed. */
void fv_export_finish(const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                      struct fv_export *x, const char *result, const char *reason, uint64_t rows,
                      uint64_t bytes);

/* A shard's owner (its v->keep says which vehicles are its shard's; principal and role as
 * the api node authenticated them). Both number the shard's vehicles alike: the devices=
 * list's names the role may read, or every vehicle, held by the shard, ordered by their
 * first record, then id.
 *   fv_api_export_count: {"vehicles": N, "held": [i, ...]} (held: the list's positions it
 *     holds); decides and audits nothing (no data is read).
 *   fv_api_export_rows: the CSV rows (no header) of vehicles lo..hi-1 (query: export,
 *     purpose, ticket, signals, from, to, devices, approver, approver_role, subjects, lo,
 *     hi), decided again (the policy with the approval for that many subjects: 403 and a
 *     "deny" entry), each vehicle as the single node's download (owner period, consent,
 *     zones, obligations), rows and bytes metered (G5: a quota reached ends the rows with a
 *     "# quota..." line), audited at the end ("export.download": the export, the segment,
 *     rows, bytes; the subjects served, G12). */
void fv_api_export_count(const struct fv_api_view *v, const char *principal, const char *role,
                         struct fv_http_response *out);
void fv_api_export_rows(const struct fv_api_view *v, const char *principal, const char *role,
                        struct fv_http_response *out);

/* The canary id number i (< FV_EXPORT_CANARIES) of an export secret: a VIN-shaped id. */
void fv_export_canary_id(const unsigned char secret[32], int i, char out[18]);

#endif
