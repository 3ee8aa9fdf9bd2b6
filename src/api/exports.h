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

/* The canary id number i (< FV_EXPORT_CANARIES) of an export secret: a VIN-shaped id. */
void fv_export_canary_id(const unsigned char secret[32], int i, char out[18]);

#endif
