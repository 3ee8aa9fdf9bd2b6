/* http.c - the API's HTTP transport (http.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "api/http.h"
#include "privacy/audit.h"
#include "privacy/guard.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/ratelimit.h"

static const struct fv_rate_rule auth_rule = {"auth", FV_HTTP_AUTH_FAIL_RATE,
                                              FV_HTTP_AUTH_FAIL_BURST};

void fv_http_ctx_free(struct fv_http_ctx *hc)
{
    for (size_t i = 0; i < hc->auth_failures.cap; i++)
        if (hc->auth_failures.slots[i].hash) free(hc->auth_failures.slots[i].val);
    fv_map_free(&hc->auth_failures);
}

/* H1: may this address try again? */
static int auth_allowed(struct fv_http_ctx *hc, const char *addr)
{
    struct fv_bucket *b = fv_map_get(&hc->auth_failures, addr, strlen(addr));
    return b == NULL || fv_bucket_peek(b, &auth_rule, fv_mono_ns());
}

/* H1: one more failed authentication from addr. */
static void auth_failed(struct fv_http_ctx *hc, const char *addr)
{
    struct fv_bucket *b = fv_map_get(&hc->auth_failures, addr, strlen(addr));
    if (b == NULL) {
        if (hc->auth_failures.n >= FV_HTTP_AUTH_ADDRS) {
            fv_http_ctx_free(hc);
            memset(&hc->auth_failures, 0, sizeof hc->auth_failures);
        }
        b = calloc(1, sizeof *b);
        if (b == NULL || fv_map_put(&hc->auth_failures, addr, strlen(addr), b) != FV_OK) {
            free(b);
            return; /* out of memory: not limited, still answered 401 */
        }
    }
    fv_bucket_take(b, &auth_rule, fv_mono_ns());
}

struct api_session {
    struct fv_http_response resp;
    size_t sent;
    int streamed, done;  /* a streamed response (more); its producer has finished */
    int chunked;         /* streamed without a known length: chunked encoding */
    uint64_t sent_total; /* body bytes written (checked against a known length) */
    unsigned char *wbuf; /* LWS_PRE + a large piece, for answers not chunked */
    uint64_t audit_need; /* H2: the response waits until this audit seq is durable */
    int parked;
    int waiting;          /* H3: resp.wait is set: the response is not known yet */
    int more_later;       /* H3: its producer's next piece is not here yet */
    uint64_t wait_before; /* H3: the audit log's last entry before the request was handled */
    /* The request's view of the API: a streamed answer's producer keeps a pointer to it
     * (export.c, exports.c) and runs again on every writable turn, long after serve()
     * returned, so it lives here, as long as the response. */
    struct fv_api_view view;
    /* the request, kept until its body is in */
    char auth[256], args[4096], path[512], method[8], range[128];
    struct fv_buf req_body;
    int body_too_large, awaiting_body;
};

static struct fv_audit *audit_of(const struct fv_http_ctx *hc)
{
    return hc->view.guard ? hc->view.guard->audit : NULL;
}

static const char *http_method(struct lws *wsi)
{
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI)) return "GET";
    if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI)) return "POST";
    return "OTHER";
}

static void api_session_end(struct api_session *a)
{
    free(a->wbuf);
    a->wbuf = NULL;
    fv_buf_free(&a->req_body);
    if (a->resp.free_ctx) a->resp.free_ctx(a->resp.ctx);
    a->resp.free_ctx = NULL;
    a->resp.ctx = NULL;
    a->resp.more = NULL;
    fv_buf_free(&a->resp.body);
}

/* Streamed responses use chunked transfer encoding: each piece the producer makes is sent as
 * one or more chunks of at most 16 KB, and the producer runs again only once the previous
 * piece has been written, so a large result never sits in memory whole. Answers of a known
 * length (whole, or streamed from a file) go out in writes of up to WRITE_BIG bytes: one
 * turn of the loop per 16 KB held a file download to about 100 MB/s (bench/data/serve.sh). */
#define WRITE_SMALL 16384
#define WRITE_BIG   (256u << 10)
static int api_write_piece(struct lws *wsi, struct api_session *a)
{
    unsigned char small[LWS_PRE + 16 + WRITE_SMALL + 16], *buf = small;
    size_t left = a->resp.body.len - a->sent;
    size_t cap = WRITE_SMALL;
    if (!a->chunked && left > WRITE_SMALL) {
        if (a->wbuf == NULL) a->wbuf = malloc(LWS_PRE + WRITE_BIG);
        if (a->wbuf) {
            buf = a->wbuf;
            cap = WRITE_BIG;
        }
    }
    size_t n = left < cap ? left : cap;
    int last_piece = n == left && (!a->streamed || a->done);
    if (last_piece && a->resp.length_known && a->sent_total + n != a->resp.length) {
        fv_warn("api: a response of %llu bytes ended after %llu; closing it",
                (unsigned long long)a->resp.length, (unsigned long long)(a->sent_total + n));
        api_session_end(a);
        return -1;
    }
    unsigned char *p = buf + LWS_PRE;
    size_t len = 0;
    if (a->chunked && n) len += (size_t)snprintf((char *)p, 16, "%zx\r\n", n);
    memcpy(p + len, a->resp.body.data + a->sent, n);
    len += n;
    if (a->chunked && n) {
        memcpy(p + len, "\r\n", 2);
        len += 2;
    }
    if (a->chunked && last_piece) {
        memcpy(p + len, "0\r\n\r\n", 5);
        len += 5;
    }
    if (lws_write(wsi, p, len, last_piece ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)len)
        return -1;
    a->sent += n;
    a->sent_total += n;
    if (!last_piece) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    api_session_end(a);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* The console's headers (api/static_ui.h U2). */
static int add_ui_headers(struct lws *wsi, unsigned char **p, unsigned char *end)
{
    static const char *const h[][2] = {
        {"Content-Security-Policy:", "default-src 'self'; img-src 'self' data: blob:; "
                                     "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"},
        {"X-Content-Type-Options:", "nosniff"},
        {"Cache-Control:", "no-cache"},
        {"Referrer-Policy:", "no-referrer"}};
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++)
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)h[i][0],
                                        (const unsigned char *)h[i][1], (int)strlen(h[i][1]), p,
                                        end))
            return 1;
    return 0;
}

/* Writes the response's status and headers, then asks to write its body. */
static int send_headers(struct lws *wsi, struct api_session *a)
{
    unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start,
                                       *end = buf + sizeof buf - 1;
    lws_filepos_t clen = a->resp.length_known ? a->resp.length
                         : a->chunked         ? LWS_ILLEGAL_HTTP_CONTENT_LEN
                                              : a->resp.body.len;
    if (lws_add_http_common_headers(wsi, (unsigned)a->resp.status, a->resp.content_type, clen, &p,
                                    end))
        return 1;
    if (a->resp.accept_ranges &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"Accept-Ranges:",
                                    (const unsigned char *)"bytes", 5, &p, end))
        return 1;
    if (a->resp.content_range[0] &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"Content-Range:",
                                    (const unsigned char *)a->resp.content_range,
                                    (int)strlen(a->resp.content_range), &p, end))
        return 1;
    if (a->chunked && lws_add_http_header_by_name(wsi, (const unsigned char *)"Transfer-Encoding:",
                                                  (const unsigned char *)"chunked", 7, &p, end))
        return 1;
    if (a->resp.www_authenticate &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"WWW-Authenticate:",
                                    (const unsigned char *)"Bearer", 6, &p, end))
        return 1;
    if (a->resp.location && lws_add_http_header_by_name(wsi, (const unsigned char *)"Location:",
                                                        (const unsigned char *)a->resp.location,
                                                        (int)strlen(a->resp.location), &p, end))
        return 1;
    if (a->resp.ui_headers && add_ui_headers(wsi, &p, end)) return 1;
    char ra[16];
    int ran = snprintf(ra, sizeof ra, "%d", a->resp.retry_after);
    if (a->resp.retry_after > 0 &&
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"Retry-After:", (const unsigned char *)ra, ran, &p, end))
        return 1;
    /* An answer whole in memory goes out with its headers in one write: one system call and
     * one turn of the loop less than headers first and the body on the next writable. */
    if (!a->streamed && !a->chunked && !a->resp.length_known && a->resp.body.len > 0 &&
        a->resp.body.len <= WRITE_BIG) {
        if (lws_finalize_http_header(wsi, &p, end)) return 1;
        size_t hlen = (size_t)(p - start), n = a->resp.body.len;
        unsigned char *whole = malloc(LWS_PRE + hlen + n);
        if (whole) {
            memcpy(whole + LWS_PRE, start, hlen);
            memcpy(whole + LWS_PRE + hlen, a->resp.body.data, n);
            int w = lws_write(wsi, whole + LWS_PRE, hlen + n, LWS_WRITE_HTTP_FINAL);
            free(whole);
            if (w != (int)(hlen + n)) return 1;
            api_session_end(a);
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        /* no memory for the copy: headers now, the body when writable */
        if (lws_write(wsi, start, hlen, LWS_WRITE_HTTP_HEADERS) != (int)hlen) return 1;
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (lws_finalize_write_http_header(wsi, start, &p, end)) return 1;
    lws_callback_on_writable(wsi);
    return 0;
}

/* H2: a parked response goes out once its audit entries are durable; if the audit log failed
 * meanwhile, it is replaced by an error (nothing personal is released unaudited). */
static int unpark(struct lws *wsi, struct fv_http_ctx *hc, struct api_session *a)
{
    struct fv_audit *audit = audit_of(hc);
    int failed = audit && fv_audit_failed(audit);
    if (!failed && audit && fv_audit_durable_seq(audit) < a->audit_need) return 0;
    a->parked = 0;
    hc->parked--;
    if (failed) {
        api_session_end(a);
        a->streamed = a->chunked = a->done = 0;
        a->sent = 0;
        a->resp.length_known = a->resp.accept_ranges = 0;
        a->resp.content_range[0] = '\0';
        a->resp.status = 500;
        a->resp.content_type = "application/json";
        a->resp.www_authenticate = a->resp.ui_headers = 0;
        a->resp.location = NULL;
        static const char m[] = "{\"error\":\"the audit log cannot be written; refused\"}\n";
        fv_buf_append(&a->resp.body, m, sizeof m - 1);
    }
    return send_headers(wsi, a);
}

static int respond(struct lws *wsi, struct fv_http_ctx *hc, struct api_session *a, uint64_t before);

/* H3: has the client of a waiting response closed its connection? lws reads nothing from
 * it while the response is made, so it would notice only when the response is written. */
static int client_gone(struct lws *wsi)
{
    char c;
    ssize_t n = recv(lws_get_socket_fd(wsi), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Answers the request held in a (headers read; its body too, if it had one). */
static int serve(struct lws *wsi, struct fv_http_ctx *hc, struct api_session *a)
{
    struct fv_api_view *v = &a->view;
    *v = hc->view;
    v->stats = &hc->stats;
    v->query = a->args[0] ? a->args : NULL;
    v->body = a->req_body.data ? (const char *)a->req_body.data : NULL;
    v->body_len = a->req_body.len;
    v->range = a->range[0] ? a->range : NULL;
    struct fv_audit *audit = audit_of(hc);
    uint64_t before = audit ? fv_audit_last_seq(audit) : 0;
    hc->metrics->http_requests++;
    char addr[64] = "";
    lws_get_peer_simple(wsi, addr, sizeof addr);
    /* H1: a throttled address is answered 429 unless its token is valid (checking
     * costs a hash and a lookup; nothing is logged), so clients that share an address
     * with a guesser - behind a NAT or a proxy - are still served. */
    if (!auth_allowed(hc, addr) &&
        !(v->guard && a->auth[0] && fv_guard_token_valid(v->guard, a->auth))) {
        hc->metrics->http_auth_throttled++;
        a->resp.status = 429;
        a->resp.content_type = "application/json";
        static const char m[] = "{\"error\":\"too many failed authentications from this "
                                "address; try again in a few seconds\"}\n";
        fv_buf_append(&a->resp.body, m, sizeof m - 1);
    } else {
        if (a->body_too_large) {
            a->resp.status = 413;
            a->resp.content_type = "application/json";
            static const char m[] = "{\"error\":\"request body over 64 KiB\"}\n";
            fv_buf_append(&a->resp.body, m, sizeof m - 1);
        } else {
            fv_api_handle(v, a->method, a->path, a->auth[0] ? a->auth : NULL, &a->resp);
        }
        if (a->resp.status == 401) {
            hc->metrics->http_unauthorized++;
            auth_failed(hc, addr);
        }
    }
    if (a->resp.wait) { /* H3: nothing to send yet; the loop's wakes look again */
        a->waiting = 1;
        a->wait_before = before; /* the entries it wrote already gate its answer too */
        hc->waiting++;
        lws_set_timer_usecs(wsi, FV_HTTP_WAIT_CHECK_MS * 1000); /* has its client left? */
        return 0;
    }
    return respond(wsi, hc, a, before);
}

/* H3: a response not known yet looks again (the loop was woken); once it is, it goes out as
 * any other, parked first if its audit entries written now are not durable (H2). */
static int await(struct lws *wsi, struct fv_http_ctx *hc, struct api_session *a)
{
    if (!a->resp.wait(a->resp.ctx, &a->resp)) {
        if (client_gone(wsi)) return -1; /* closed: CLOSED_HTTP frees its state */
        lws_set_timer_usecs(wsi, FV_HTTP_WAIT_CHECK_MS * 1000);
        return 0;
    }
    a->resp.wait = NULL;
    a->waiting = 0;
    hc->waiting--;
    lws_set_timer_usecs(wsi, LWS_SET_TIMER_USEC_CANCEL);
    return respond(wsi, hc, a, a->wait_before);
}

/* The response in a, made: its first piece if streamed, parked until the audit entries
 * written since before are durable (H2), else its headers sent. */
static int respond(struct lws *wsi, struct fv_http_ctx *hc, struct api_session *a, uint64_t before)
{
    struct fv_audit *audit = audit_of(hc);
    if (a->resp.more) {
        /* The first piece: a small result is complete at once and goes out whole. */
        int rc = a->resp.more(a->resp.ctx, &a->resp.body);
        if (rc < 0) {
            fv_buf_reset(&a->resp.body);
            api_session_end(a);
            a->resp.length_known = a->resp.accept_ranges = 0;
            a->resp.content_range[0] = '\0';
            a->resp.status = 500;
            a->resp.content_type = "application/json";
            const char *m = rc == FV_ECORRUPT
                                ? "{\"error\":\"stored data failed verification (corrupt "
                                  "or altered); the server log names the file and "
                                  "offset\"}\n"
                                : "{\"error\":\"query failed; see the server log\"}\n";
            fv_buf_append(&a->resp.body, m, strlen(m));
        } else if (rc <= 0) {
            a->resp.free_ctx(a->resp.ctx);
            a->resp.more = NULL;
            a->resp.free_ctx = NULL;
            a->resp.ctx = NULL;
        } else {
            a->streamed = 1;
            a->chunked = !a->resp.length_known;
        }
    }
    uint64_t after = audit ? fv_audit_last_seq(audit) : 0;
    if (after > before) after = fv_guard_gate_seq(hc->view.guard, before, after);
    if (after > before && fv_audit_durable_seq(audit) < after) {
        /* H2: the request wrote audit entries; its answer waits until those that gate it
         * are durable (the syncer wakes the loop; EVENT_WAIT_CANCELLED below). The decision
         * entry was written before the query ran, so its sync overlapped the query. */
        a->audit_need = after;
        fv_audit_need(audit, after); /* a lazy entry among them is synced now (A13) */
        a->parked = 1;
        hc->parked++;
        return 0;
    }
    return send_headers(wsi, a);
}

static int api_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    struct api_session *a = user;
    struct lws_vhost *vh = wsi ? lws_get_vhost(wsi) : NULL;
    struct fv_http_ctx *hc = vh ? lws_vhost_user(vh) : NULL;
    (void)len;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        if (hc == NULL) return -1;
        memset(a, 0, sizeof *a);
        char *args = a->args;
        const size_t args_size = sizeof a->args;
        lws_hdr_copy(wsi, a->auth, sizeof a->auth, WSI_TOKEN_HTTP_AUTHORIZATION);
        lws_hdr_copy(wsi, a->range, sizeof a->range, WSI_TOKEN_HTTP_RANGE);
        snprintf(a->path, sizeof a->path, "%s", (const char *)in);
        snprintf(a->method, sizeof a->method, "%s", http_method(wsi));
        /* lws keeps the query string as fragments (one per '&'), already URL-decoded. */
        size_t al = 0;
        for (int i = 0; al + 1 < args_size; i++) {
            int n = lws_hdr_copy_fragment(wsi, args + al + (al ? 1 : 0), (int)(args_size - al - 1),
                                          WSI_TOKEN_HTTP_URI_ARGS, i);
            if (n < 0) break;
            if (al) args[al] = '&';
            al += (size_t)n + (al ? 1 : 0);
        }
        /* A POST with a body is answered once the body is in (HTTP_BODY_COMPLETION). */
        if (strcmp(a->method, "POST") == 0 &&
            lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
            char cl[24] = "";
            lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH);
            if (strtoull(cl, NULL, 10) > 0) {
                a->awaiting_body = 1;
                return 0;
            }
        }
        return serve(wsi, hc, a);
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (a == NULL) return -1;
        if (!a->awaiting_body) return 0; /* answered already (lws may still pass a body) */
        if (a->req_body.len + len > FV_HTTP_BODY_MAX)
            a->body_too_large = 1;
        else if (!a->body_too_large && fv_buf_append(&a->req_body, in, len) != FV_OK)
            return -1;
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (a == NULL || hc == NULL) return -1;
        if (!a->awaiting_body) return 0; /* no body was awaited: answered at HTTP */
        a->awaiting_body = 0;
        if (fv_buf_append(&a->req_body, "", 1) != FV_OK) return -1; /* NUL-terminated */
        a->req_body.len--;
        return serve(wsi, hc, a);
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* H2: audit entries may have become durable: let parked responses look. H3: the
         * answers a waiting response needs may have come. */
        if (hc && (hc->parked || hc->waiting))
            lws_callback_on_writable_all_protocol_vhost(vh, lws_get_protocol(wsi));
        return 0;
    case LWS_CALLBACK_TIMER: /* H3: a waiting response looks at its client (await) */
        if (a && (a->waiting || a->more_later)) lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (a == NULL) return -1;
        if (a->waiting) return await(wsi, hc, a);
        if (a->parked) return unpark(wsi, hc, a);
        if (a->streamed && !a->done && a->sent == a->resp.body.len) {
            fv_buf_reset(&a->resp.body);
            a->sent = 0;
            int rc = a->resp.more(a->resp.ctx, &a->resp.body);
            if (rc == FV_HTTP_MORE_LATER && a->resp.body.len == 0) { /* H3: woken again */
                if (!a->more_later) hc->waiting++;
                a->more_later = 1;
                if (client_gone(wsi)) return -1; /* closed: CLOSED_HTTP frees its state */
                lws_set_timer_usecs(wsi, FV_HTTP_WAIT_CHECK_MS * 1000);
                return 0;
            }
            if (a->more_later) {
                a->more_later = 0;
                hc->waiting--;
                lws_set_timer_usecs(wsi, LWS_SET_TIMER_USEC_CANCEL);
            }
            if (rc < 0) {
                fv_warn("api: a streamed response failed (%s); closing it", fv_strerror(rc));
                api_session_end(a);
                return -1;
            }
            if (rc == 0) a->done = 1;
        }
        return api_write_piece(wsi, a);
    }
    case LWS_CALLBACK_CLOSED_HTTP:
        if (a && a->parked) {
            a->parked = 0;
            hc->parked--;
        }
        if (a && a->waiting) { /* H3: its state is freed below (free_ctx) */
            a->waiting = 0;
            a->resp.wait = NULL;
            hc->waiting--;
        }
        if (a && a->more_later) {
            a->more_later = 0;
            hc->waiting--;
        }
        if (a) api_session_end(a);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols api_protocols[] = {
    /* tx_packet_size: lws sends at most this much per write (its default, 4 KiB, made a
     * dataset shard one send() and one loop turn per 4 KiB) */
    {"http", api_cb, sizeof(struct api_session), 0, 0, NULL, WRITE_BIG},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

const struct lws_protocols *fv_http_protocols(void)
{
    return api_protocols;
}
