/*
 * jsenvelope.h - core NATS messages sealed under the cluster's master key: the downlink's
 * commands and replies (jsdownlink.h) and the presence announcements (jspresence.h), which
 * carry device ids and payloads (docs/formats.md, "Sealed envelopes on core NATS").
 *
 *  E1 fv_jsenv_seal: the body, with the sender's wall clock (ms) in front, sealed as a KV
 *     value of kind FV_JSENV_KIND whose key is the NATS subject (jskeys.h fv_jskeys_wrap):
 *     AES-256-GCM under the master key, bound to the subject, naming the key's id.
 *  E2 fv_jsenv_open refuses (FV_ECORRUPT, err says why) what is not sealed by this node's
 *     master key or the previous one (a rotation, jskeys.h J6), was sealed for another
 *     subject, was altered, or was sealed more than FV_JSENV_WINDOW_MS away from this node's
 *     clock (a replay of an old message). So a NATS account that can read or publish on
 *     these subjects, without the master key, learns no device id and can make no command.
 *
 * Pure (no state); any thread.
 */
#ifndef FV_CLUSTER_JSENVELOPE_H
#define FV_CLUSTER_JSENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/keys.h"
#include "util/buf.h"

#define FV_JSENV_KIND      'E'
#define FV_JSENV_WINDOW_MS 60000 /* E2: the clocks of a cluster's nodes agree within this */

/* E1: appends the sealed envelope to out. FV_OK or FV_ENOMEM. */
int fv_jsenv_seal(const struct fv_kek *kek, const char *subject, uint64_t now_ms, const void *body,
                  size_t n, struct fv_buf *out);
/* E2: the body into body (reset first; wiped and freed by the caller). FV_OK, FV_ENOMEM or
 * FV_ECORRUPT (err). */
int fv_jsenv_open(const struct fv_kek *kek, const char *subject, uint64_t now_ms,
                  const unsigned char *v, size_t n, struct fv_buf *body, char *err, size_t errlen);

/* Logs err as a warning unless one was logged in the last minute (*last_ms: the caller's
 * atomic of when). Any thread. */
void fv_jsenv_log_refusal(uint64_t *last_ms, const char *err);

#endif
