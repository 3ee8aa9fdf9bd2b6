/*
 * export.h - the data subject's copy of everything held about them (GDPR Art. 15 access,
 * Art. 20 portability): GET /api/v1/subjects/{device}/export?ticket=T[&period=N] (a privacy
 * officer), or `fleetvault subject export DEVICE`.
 *
 * One export serves one data subject: one owner period of the device, the current owner's
 * unless period=N names another (the officer answers that owner's request). Other periods'
 * telemetry, owner ids, consents and access log are other people's data and are not in it;
 * records of the period's subject outside the period's time are not either. An erased
 * period: 410; no such period: 404. Quotas (privacy/guard.h G5): the export counts as one
 * subject, its rows are checked against the principal's daily quota before anything is
 * sent (403 naming the limit), and its bytes as it streams (the stream stops at the limit).
 *
 * The answer is one tar archive (POSIX pax), streamed as it is made; memory stays bounded
 * by splitting telemetry into files of at most 8 MiB. Nothing is written to disk in
 * plaintext. Contents, under fleetvault-export-<device>/ (documented in its README.txt):
 *   README.txt                  what each file is, formats, units, time base
 *   subject.json                the exported owner period (the data subject: its
 *                               pseudonym, owner id, from/until), its consent history,
 *                               the purposes and data classes with their retention, and
 *                               the roles that may read them
 *   period-N/telemetry-K.csv    the period's records, one row per record: t (ms since the
 *                               epoch, UTC) then one column per signal
 *   period-N/telemetry-K.jsonl  the same as JSON lines {"t": ms, "Signal": value, ...}
 *   period-N/events.jsonl       other topics (alerts, errors, connectivity): {"t", "topic",
 *                               "payload_base64"} (the device's protobuf as received)
 *   access-log.jsonl            every audit-log entry that names this subject
 * The export itself is audited (who, ticket, rows, bytes). API thread only.
 */
#ifndef FV_API_EXPORT_H
#define FV_API_EXPORT_H

#include "api/api.h"

void fv_api_export(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *device,
                   struct fv_http_response *out);

#endif
