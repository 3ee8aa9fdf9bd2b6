/* ven_push.c - push mode (ven.h N10; shared state in ven_int.h): the VEN listens for the
 * VTN's POSTs on openadr.push.listen, HTTPS with the VTN's client certificate verified
 * against openadr.push.ca (a VTN without one, or with one the CA did not sign, fails the
 * handshake). Its own thread runs its own lws context (lws_service), apart from the ingest
 * loop and the API thread. Each POST to BASE/EiEvent, /EiReport, /EiRegisterParty or /EiOpt
 * (BASE = /OpenADR2/Simple/2.0b) is handed to the VEN's thread as a pushjob; the push thread
 * waits for it (one message at a time) and answers HTTP 200 with the payload the VEN built
 * (oadrCreatedEvent, oadrCreatedReport, oadrResponse with an error code, ...). Other paths:
 * 404; other methods: 405; a body over FV_OADR_MAX_BYTES: 413. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

#include "crypto/certs.h"
#include "openadr/ven_int.h"
#include "util/err.h"
#include "util/log.h"

#define PUSH_BASE     "/OpenADR2/Simple/2.0b/"
#define PUSH_QUEUED_S 10 /* how long a message may wait for the VEN's thread to take it */

struct psess {
    char service[32];
    int status, awaiting, too_large;
    struct fv_buf body, reply;
    size_t sent;
};

static void psess_end(struct psess *s)
{
    fv_buf_free(&s->body);
    fv_buf_free(&s->reply);
    s->status = 0; /* answered: a later WRITEABLE writes nothing */
    s->sent = 0;
}

/* Hands the body to the VEN's thread and waits for its answer (the push thread). A message
 * the VEN's thread has not taken within PUSH_QUEUED_S (or when the VEN stops) is withdrawn:
 * FV_EIO, nothing changed. */
static int run_job(struct fv_ven *v, struct psess *s)
{
    struct pushjob j = {.body = s->body.data ? (const char *)s->body.data : "",
                        .len = s->body.len,
                        .reply = &s->reply};
    snprintf(j.service, sizeof j.service, "%s", s->service);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += PUSH_QUEUED_S;
    pthread_mutex_lock(&v->pub);
    if (v->pj_tail)
        v->pj_tail->next = &j;
    else
        v->pj_head = &j;
    v->pj_tail = &j;
    __atomic_add_fetch(&v->push_received, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&v->pub);
    pthread_cond_signal(&v->cv);
    pthread_mutex_lock(&v->pub);
    int rc = FV_OK, late = 0;
    while (!j.done) {
        if (late || __atomic_load_n(&v->push_stop, __ATOMIC_ACQUIRE)) {
            struct pushjob **pp = &v->pj_head, *prev = NULL;
            while (*pp && *pp != &j) {
                prev = *pp;
                pp = &(*pp)->next;
            }
            if (*pp) { /* still queued: withdrawn, nothing changed */
                *pp = j.next;
                if (v->pj_tail == &j) v->pj_tail = prev;
                rc = FV_EIO;
                break;
            }
            pthread_cond_wait(&v->done_cv, &v->pub); /* taken: the VEN's thread finishes it */
            continue;
        }
        late = pthread_cond_timedwait(&v->done_cv, &v->pub, &until) == ETIMEDOUT;
    }
    pthread_mutex_unlock(&v->pub);
    return rc;
}

static int write_piece(struct lws *wsi, struct psess *s)
{
    unsigned char buf[LWS_PRE + 16384];
    size_t left = s->reply.len - s->sent, n = left < 16384 ? left : 16384;
    if (n) memcpy(buf + LWS_PRE, s->reply.data + s->sent, n);
    int last = n == left;
    if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    s->sent += n;
    if (!last) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    psess_end(s);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int send_headers(struct lws *wsi, struct psess *s)
{
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start,
                                      *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(wsi, (unsigned)s->status, "application/xml", s->reply.len, &p,
                                    end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int serve(struct lws *wsi, struct fv_ven *v, struct psess *s)
{
    if (s->too_large) {
        s->status = 413;
    } else if (run_job(v, s) != FV_OK) {
        fv_buf_reset(&s->reply);
        s->status = 503;
    } else {
        s->status = 200;
    }
    return send_headers(wsi, s);
}

static int push_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    struct psess *s = user;
    struct lws_context *ctx = wsi ? lws_get_context(wsi) : NULL;
    struct fv_ven *v = ctx ? lws_context_user(ctx) : NULL;
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION: {
        char why[160];
        if (!fv_tls_client_refused(user, len, why, sizeof why, NULL)) return 0;
        fv_warn("openadr: push: a VTN's client certificate refused: %s", why);
        if (v) __atomic_add_fetch(&v->push_refused, 1, __ATOMIC_RELAXED);
        return 1;
    }
    case LWS_CALLBACK_HTTP: {
        if (v == NULL || s == NULL) return -1;
        memset(s, 0, sizeof *s);
        const char *path = in ? (const char *)in : "";
        if (!lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI)) {
            if (lws_return_http_status(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, NULL)) return -1;
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        const char *svc = strncmp(path, PUSH_BASE, strlen(PUSH_BASE)) == 0
                              ? path + strlen(PUSH_BASE)
                              : (strncmp(path, &PUSH_BASE[1], strlen(PUSH_BASE) - 1) == 0
                                     ? path + strlen(PUSH_BASE) - 1
                                     : "");
        if (strcmp(svc, "EiEvent") != 0 && strcmp(svc, "EiReport") != 0 &&
            strcmp(svc, "EiRegisterParty") != 0 && strcmp(svc, "EiOpt") != 0) {
            if (lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL)) return -1;
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        snprintf(s->service, sizeof s->service, "%s", svc);
        char cl[24] = "";
        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
            lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH);
        unsigned long long n = strtoull(cl, NULL, 10);
        if (n > 0) {
            s->too_large = n > FV_OADR_MAX_BYTES;
            s->awaiting = 1;
            return 0;
        }
        return serve(wsi, v, s); /* no body: answered 454 by the VEN */
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (s == NULL) return -1;
        if (!s->awaiting || s->too_large) return 0;
        if (s->body.len + len > FV_OADR_MAX_BYTES)
            s->too_large = 1;
        else if (fv_buf_append(&s->body, in, len) != FV_OK)
            return -1;
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (s == NULL || v == NULL) return -1;
        if (!s->awaiting) return 0;
        s->awaiting = 0;
        return serve(wsi, v, s);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (s == NULL || s->status == 0) return 0;
        return write_piece(wsi, s);
    case LWS_CALLBACK_CLOSED_HTTP:
        if (s) psess_end(s);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols push_protocols[] = {
    {"http", push_cb, sizeof(struct psess), 0, 0, NULL, 0}, {NULL, NULL, 0, 0, 0, NULL, 0}};

static void *push_main(void *arg)
{
    struct fv_ven *v = arg;
    while (!__atomic_load_n(&v->push_stop, __ATOMIC_ACQUIRE))
        if (lws_service(v->push_ctx, 0) < 0) break;
    /* Destroyed on the thread that ran it (as the API loop does). */
    lws_context_destroy(v->push_ctx);
    return NULL;
}

int fv_ven__push_start(struct fv_ven *v, char *err, size_t errlen)
{
    const struct fv_oadr_cfg *c = v->cfg;
    /* No LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT on this context: libwebsockets 4.1 keeps its
     * SSL_CTX ex_data index in a global that each context's global init allocates anew, and
     * a vhost made before a later init cannot find its client SSL_CTX's record when it is
     * destroyed (leaked; seen with ASan). The devices' context does the global init, first
     * (fv_ven_listen runs after the server's listeners), as the clip endpoint relies on. */
    const char *late = getenv("FV_FAULT_PUSH_LISTEN_DELAY_MS");
    if (late && *late) {
        unsigned ms = (unsigned)strtoul(late, NULL, 10) % 10001u;
        fv_warn("openadr: FV_FAULT_PUSH_LISTEN_DELAY_MS: the push listener starts %u ms late "
                "(a test setting)",
                ms);
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    ci.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    ci.port = CONTEXT_PORT_NO_LISTEN;
    ci.user = v;
    v->push_ctx = lws_create_context(&ci);
    if (v->push_ctx == NULL) {
        fv_seterr(err, errlen, "openadr.push: cannot create its libwebsockets context");
        return FV_ENOMEM;
    }
    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof vi);
    vi.vhost_name = "openadr-push";
    vi.iface = c->push_host;
    vi.port = c->push_port;
    vi.protocols = push_protocols;
    vi.ssl_cert_filepath = c->push_cert;
    vi.ssl_private_key_filepath = c->push_key;
    vi.ssl_ca_filepath = c->push_ca;
    vi.alpn = "http/1.1";
    vi.timeout_secs = 20;
    vi.options =
        LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    if (lws_create_vhost(v->push_ctx, &vi) == NULL) {
        lws_context_destroy(v->push_ctx);
        v->push_ctx = NULL;
        fv_seterr(err, errlen,
                  "openadr.push: cannot listen on %s:%d (in use, or its TLS files bad: cert %s, "
                  "key %s, ca %s)",
                  c->push_host, c->push_port, c->push_cert, c->push_key, c->push_ca);
        return FV_EIO;
    }
    if (pthread_create(&v->push_thread, NULL, push_main, v) != 0) {
        lws_context_destroy(v->push_ctx);
        v->push_ctx = NULL;
        fv_seterr(err, errlen, "cannot start the OpenADR push thread");
        return FV_ENOMEM;
    }
    v->push_started = 1;
    pthread_mutex_lock(&v->mu);
    v->push_listening = 1; /* the VEN's thread may register now */
    pthread_cond_signal(&v->cv);
    pthread_mutex_unlock(&v->mu);
    fv_info("openadr: push: listening on https://%s:%d (VTN client certificates from %s), "
            "registering %s",
            c->push_host, c->push_port, c->push_ca, c->push_address);
    return FV_OK;
}

void fv_ven__push_stop(struct fv_ven *v)
{
    if (v->push_started) {
        __atomic_store_n(&v->push_stop, 1, __ATOMIC_RELEASE);
        pthread_mutex_lock(&v->pub);
        pthread_cond_broadcast(&v->done_cv);
        pthread_mutex_unlock(&v->pub);
        lws_cancel_service(v->push_ctx);
        pthread_join(v->push_thread, NULL);
        v->push_started = 0;
        v->push_ctx = NULL; /* destroyed by the push thread */
    }
    if (v->push_ctx) lws_context_destroy(v->push_ctx);
    v->push_ctx = NULL;
}
