/*
 * server.h - the fleetvault server: fleet-telemetry WebSockets over mutual TLS on one port
 * (gateway/session.h), the HTTP API on another (api/http.h), the store and privacy behind
 * them. This is the composition root, the one module above both api/ and gateway/: it opens
 * the state, wires the ingest/storage seam (wal/reclog.h) and runs the loop.
 *
 * Life of a record (docs/architecture.md): binary frame -> envelope decode -> identity
 * checks -> rate limit -> de-duplication -> payload normalised (vin := certificate id) ->
 * sealed -> logged -> store head -> latest state -> ack queued; the ack is sent only once
 * the WAL's writer has fsync'd the batch holding the record.
 */
#ifndef FV_SERVER_SERVER_H
#define FV_SERVER_SERVER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Runs until *stop becomes non-zero (set it from a signal handler, then call
 * fv_server_wake). Returns 0 on a clean stop, non-zero with err set on failure. */
int fv_server_run(const struct fv_config *c, volatile sig_atomic_t *stop, char *err, size_t errlen);

/* Async-signal-safe: wakes the running server's event loop so it sees *stop. */
void fv_server_wake(void);

#endif
