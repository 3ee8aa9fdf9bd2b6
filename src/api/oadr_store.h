/*
 * oadr_store.h - the OpenADR VEN's reads of stored telemetry (openadr/ven.h N11): the fleet's
 * aggregates per interval of a past window (history reports) and the VPP's capacity forecast
 * for an event's window (SIMPLE levels), served from the store with a keystore of the VEN's
 * own. The VEN's layer never includes the store; this module gives it fv_ven_store_ops.
 *
 * Privacy: every site's samples are read for the purpose energy_programs, and only sums over
 * the enrolled sites leave this module (never a site, a sample or an owner); the VEN audits
 * each read (openadr.history) and each report.
 *
 * Threads: the ops run on the VEN's thread only (the keystore given is used by nothing else;
 * store queries may run on any thread, store.h).
 */
#ifndef FV_API_OADR_STORE_H
#define FV_API_OADR_STORE_H

#include "openadr/ven.h"

struct fv_api_view;

struct fv_store;
struct fv_keystore;
struct fv_vpp;
struct fv_oadr_store;

/* store, keys and vpp must outlive it. FV_OK or FV_ENOMEM. */
int fv_oadr_store_new(struct fv_store *store, struct fv_keystore *keys, struct fv_vpp *vpp,
                      struct fv_oadr_store **out);
void fv_oadr_store_free(struct fv_oadr_store *s);
/* The ops to give fv_ven_set_store_ops (arg = s). */
struct fv_ven_store_ops fv_oadr_store_ops(struct fv_oadr_store *s);

/* A shard's owner's part of a cluster's history report (docs/cluster.md rule 17; the VEN's
 * side is server/clusterven.h). API thread (the owner's view, its keep naming the shard).
 *  H1 the view's query: from (ms), step (ms, > 0), n (1 to FV_OADR_PART_MAX intervals) and
 *     sites (the VEN's enrolled sites, comma-separated); the sums over those of them the shard
 *     holds (v->keep), read from v's store as the single node's history report reads them:
 *     200 {"sites": K, "intervals": [[delivered_kw, stored_kwh, available_kwh,
 *     deliverable_kw, online 0|1], ...]} (n of them). Bad parameters: 400 naming them.
 *  H2 the read is audited (kind openadr, action openadr.history, the principal given, purpose
 *     energy_programs, the window and the number of sites read, "part": true) before the
 *     answer is released (the caller parks it until the entry is durable); only sums leave. */
#define FV_OADR_PART_MAX 1440
struct fv_http_response;
void fv_api_oadr_history_part(const struct fv_api_view *v, const char *principal,
                              struct fv_http_response *out);

#endif
