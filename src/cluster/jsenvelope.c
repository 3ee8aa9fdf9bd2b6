/* jsenvelope.c - core NATS messages sealed under the master key (jsenvelope.h). */
#include <stdio.h>
#include <string.h>

#include "cluster/jsenvelope.h"
#include "cluster/jskeys.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

int fv_jsenv_seal(const struct fv_kek *kek, const char *subject, uint64_t now_ms, const void *body,
                  size_t n, struct fv_buf *out)
{
    struct fv_buf pt = {0};
    unsigned char ts[8];
    for (int i = 0; i < 8; i++)
        ts[i] = (unsigned char)(now_ms >> (8 * i)); /* little-endian */
    int rc = fv_buf_append(&pt, ts, sizeof ts);
    if (rc == FV_OK && n) rc = fv_buf_append(&pt, body, n);
    if (rc == FV_OK) rc = fv_jskeys_wrap(kek, subject, FV_JSENV_KIND, pt.data, pt.len, out);
    fv_buf_free(&pt);
    return rc;
}

int fv_jsenv_open(const struct fv_kek *kek, const char *subject, uint64_t now_ms,
                  const unsigned char *v, size_t n, struct fv_buf *body, char *err, size_t errlen)
{
    fv_buf_reset(body);
    char why[300];
    int rc = fv_jskeys_unwrap(kek, subject, FV_JSENV_KIND, v, n, body, why, sizeof why);
    if (rc) {
        fv_seterr(err, errlen, "sealed envelope: %s", why);
        return rc;
    }
    if (body->len < 8) {
        fv_seterr(err, errlen, "sealed envelope on %s: %zu bytes, no clock", subject, body->len);
        return FV_ECORRUPT;
    }
    uint64_t ts = 0;
    for (int i = 0; i < 8; i++)
        ts |= (uint64_t)body->data[i] << (8 * i);
    uint64_t off = ts > now_ms ? ts - now_ms : now_ms - ts;
    if (off > FV_JSENV_WINDOW_MS) {
        fv_seterr(err, errlen,
                  "sealed envelope on %s: sealed %llu ms %s this node's clock (more than "
                  "%d ms: a replay, or clocks apart)",
                  subject, (unsigned long long)off, ts > now_ms ? "ahead of" : "behind",
                  FV_JSENV_WINDOW_MS);
        return FV_ECORRUPT;
    }
    memmove(body->data, body->data + 8, body->len - 8);
    body->len -= 8;
    return FV_OK;
}

void fv_jsenv_log_refusal(uint64_t *last_ms, const char *err)
{
    uint64_t now = fv_now_ms(), last = __atomic_load_n(last_ms, __ATOMIC_RELAXED);
    if (last && now - last < 60000) return;
    if (!__atomic_compare_exchange_n(last_ms, &last, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        return; /* another thread logs it */
    fv_warn("cluster: %s; dropped (counted malformed; at most one such warning a minute)", err);
}
