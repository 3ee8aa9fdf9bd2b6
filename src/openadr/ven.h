/*
 * ven.h - fleetvault as an OpenADR 2.0b VEN (issue 11; docs/openadr.md): it registers with
 * each configured VTN, polls it, turns the VTN's events into VPP events (energy/vpp.h), answers
 * them, and reports the fleet's telemetry. Messages are openadr/oadr.h; the transport is
 * simpleHttp over HTTPS with the VEN's client certificate (libcurl).
 *
 * Per VTN, the VEN's life:
 *   unregistered --oadrQueryRegistration, oadrCreatePartyRegistration--> registered
 *     (registrationID and venID kept in DATA/openadr/NAME.json across restarts, with the
 *      events, opt schedules and the VTN's report requests, which resume after a restart; then
 *      oadrRegisterReport: the fleet's TELEMETRY_USAGE and TELEMETRY_STATUS metadata)
 *   registered: oadrPoll every oadrRequestedOadrPollFreq (default 10 s), and each message the
 *     poll returns is handled and answered (N1-N8); the poll repeats at once while the VTN
 *     has messages queued (at most 16 a turn).
 *   oadrCancelPartyRegistration naming our registrationID (or oadrRequestReregistration, or
 *     a 463 answer) -> answered, forgotten, and registered again at the next turn.
 *
 * Rules:
 *  N1 Every received payload is schema-validated before it is acted on (oadr.h M1); one that
 *     is not valid is answered with oadrResponse 454 and changes nothing; a valid message a
 *     VEN does not expect is answered 453 (not recognized) and changes nothing.
 *  N2 oadrDistributeEvent: per event (by eventID): a new one, or a higher modificationNumber,
 *     is mapped (N3) and answered; an equal modificationNumber changes nothing and is not
 *     answered again; a lower one is answered 450 (out of sequence) and changes nothing. An
 *     event whose eiTarget names VENs but not us is answered 462 with optOut. A cancelled
 *     event cancels its VPP event; an event the VTN no longer lists is cancelled too.
 *  N3 Mapping: the event's marketContext names a VPP program (config market_contexts);
 *     SIMPLE level L -> target = simple_levels[L] x the fleet's capacity for the window
 *     (the VPP's capacity forecast, N11; without one fv_vpp_capacity_now; a fraction of 1.0 =
 *     every site at its maximum; level 0 = no dispatch); LOAD_DISPATCH setpoint (kW, or W/MW
 *     by its itemBase) -> target kW. Several intervals: the highest value. The VPP event spans
 * [dtstart - rampUp, dtstart + duration), created when the event is received (notification:
 * scheduled ahead); recovery is recorded, not dispatched. A modification updates the VPP event
 * (vpp_ext.h X1); a refusal (the program's rules, e.g. over the yearly cap, an unknown market
 * context, an unsupported signal, an opt-out schedule covering it) is an optOut whose reason is the
 * refusal's text. N4 Test events (testEvent not "false") are recorded and answered optIn, never
 * dispatched. N5 responseRequired = never: nothing is sent for that event. N6 Reports:
 * oadrCreateReport for our rIDs -> oadrCreatedReport, then an oadrUpdateReport every
 * reportBackDuration with one interval per granularity: delivered kW (what the VPP tracks for the
 * VTN's active events, else the fleet's discharge), stored and available energy, online share.
 * Fleet aggregates only, never a site. Unknown rIDs: 461. A request whose reportInterval is wholly
 * past is a history report: one oadrUpdateReport (HISTORY_USAGE) from the store (N11), then the
 * request is dropped. N7 Opt schedules (EiOpt): fv_ven_opt_create/cancel queue
 * oadrCreateOpt/oadrCancelOpt; an event overlapping an optOut schedule is answered optOut with the
 * schedule's reason. N8 Every event received, answer sent and report sent is written to the audit
 * log (kind "openadr") through fv_ven_audit_drain, which the API thread (the audit log's owner)
 *     calls; the VEN's thread never writes the audit log itself.
 *  N9 An unreachable VTN (connection, TLS, HTTP status) is retried with backoff (1 s doubling
 *     to 60 s); its state, failures and last error are in fv_ven_status_json and /metrics.
 *  N10 Push mode (config openadr.push): a listener on its own thread (ven_push.c) takes the
 *     VTN's POSTs over mutual TLS (client certificate verified against push.ca, none
 *     refused); each body is handled by the VEN's thread exactly as a polled message (N1-N6)
 *     and the answer is the HTTP response's body (oadrResponse 200 when nothing else is
 *     due). Registration offers httpPullModel false and push.address; the VEN does not poll,
 *     and sends nothing to a VTN before that listener is up (fv_ven_listen).
 *
 * Threads: the VEN runs its own thread (all requests to VTNs there; in push mode a second
 * thread of its own serves the push listener and waits for the VEN's thread to handle each POST).
 * fv_ven_status_json, fv_ven_metrics, fv_ven_opt_* and fv_ven_audit_drain may be called from any
 * thread (the API thread) and never wait for the VEN's thread: they read what it published (after
 * each turn and before each request to a VTN, so at most one exchange old) and hand over requests
 * under a short-held mutex of their own. The VPP is called only from the VEN's thread, through
 * vpp.h / vpp_ext.h (which take the VPP's own mutex).
 */
#ifndef FV_OPENADR_VEN_H
#define FV_OPENADR_VEN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config/openadr_config.h"
#include "util/buf.h"

struct fv_ven;
struct fv_vpp;

/* Loads the schema (cfg->schema_dir), each VTN's saved registration from DATA/openadr/, checks
 * the market contexts' programs against the VPP, and starts the thread. FV_OK; FV_EINVAL /
 * FV_ENOENT / FV_EIO with err. cfg and vpp must outlive the VEN. */
int fv_ven_open(const struct fv_oadr_cfg *cfg, const char *data_dir, struct fv_vpp *vpp,
                struct fv_ven **out, char *err, size_t errlen);
/* Opens the push listener (openadr.push; nothing without it) on its own thread. Called once
 * the server's other listeners exist. FV_OK, or FV_EIO / FV_ENOMEM with err. v may be NULL. */
int fv_ven_listen(struct fv_ven *v, char *err, size_t errlen);
/* Stops the thread (a request under way finishes or times out, at most 10 s) and frees. */
void fv_ven_close(struct fv_ven *v);

/* {"ven_name", "vtns": [{"name", "url", "state", "reachable", "ven_id", "registration_id",
 *  "poll_s", "failures", "last_error", "last_poll_ms", "events": [...], "reports": [...],
 *  "opts": [...]}]} (new reference). */
json_t *fv_ven_status_json(struct fv_ven *v);
/* Appends the VEN's Prometheus lines (fleetvault_openadr_*) to out. */
int fv_ven_metrics(struct fv_ven *v, struct fv_buf *out);

/* N7: an opt schedule for VTN vtn (NULL: the first), opt_in 0 = unavailable over
 * [start_ms, end_ms); reason an optReason ("x-schedule", "notParticipating", ...) or NULL;
 * market_context NULL: all. The id is written to id. FV_OK; FV_EINVAL/FV_ENOENT with err. */
int fv_ven_opt_create(struct fv_ven *v, const char *vtn, int opt_in, int64_t start_ms,
                      int64_t end_ms, const char *reason, const char *market_context, char id[64],
                      char *err, size_t errlen);
/* Cancels an opt schedule (oadrCancelOpt). FV_OK; FV_ENOENT. */
int fv_ven_opt_cancel(struct fv_ven *v, const char *id);

/* N11: what the VEN reads from stored telemetry, through the layer that owns the store and
 * a keystore for the VEN's thread (api/oadr_store.h); called on the VEN's thread only.
 *   history: the fleet (every enrolled site) per interval [start + i*step, start + (i+1)*step),
 *     i < n: delivered kW (the mean battery discharge of each site's samples in the
 *     interval, summed), stored and available kWh and deliverable kW for an hour (at each
 *     site's last sample in the interval, summed), online (any site had a sample); *nsites:
 *     the sites read. Aggregates only. FV_OK or an error with err.
 *   forecast: the VPP's capacity forecast (api/vpp_capacity.c) of program over [start,
 *     end): its average kW. FV_OK; FV_EINVAL (window too long) with err.
 * Either may be NULL (not offered). */
struct fv_ven_hist {
    double delivered_kw, stored_kwh, available_kwh, deliverable_kw;
    int online;
};
struct fv_ven_store_ops {
    void *arg;
    int (*history)(void *arg, int64_t start_ms, int64_t step_ms, size_t n, struct fv_ven_hist *out,
                   size_t *nsites, char *err, size_t errlen);
    int (*forecast)(void *arg, const char *program, int64_t start_ms, int64_t end_ms, double *kw,
                    char *err, size_t errlen);
};
/* Gives the VEN its store ops (copied; ops->arg must outlive the VEN). Any thread. */
void fv_ven_set_store_ops(struct fv_ven *v, const struct fv_ven_store_ops *ops);

/* N8: calls fn for each queued audit record, oldest first, and forgets those fn returned 0
 * for (a record whose fn fails stays queued, with the rest). action: "openadr.event",
 * "openadr.answer", "openadr.report", "openadr.registration", "openadr.opt", "openadr.error",
 * "openadr.history";
 * extra_json: a JSON object with the message's facts (ids, codes, fleet aggregates). */
typedef int (*fv_ven_audit_fn)(void *arg, const char *action, const char *result,
                               const char *reason, const char *extra_json);
size_t fv_ven_audit_drain(struct fv_ven *v, fv_ven_audit_fn fn, void *arg);

#endif
