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

#endif
