/* test_connector.c - the simulator's handshakes on their own thread (src/sim/connector.h):
 * a handshake done comes back in state UPGRADE with the upgrade request still queued (C3);
 * a refused connect, a server that never speaks TLS (the deadline) and a stop while a
 * handshake is in progress each come back exactly once with their reason (C2); nothing is
 * submitted after a stop. */
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "sim/connector.h"
#include "util/clock.h"
#include "util/err.h"

static EVP_PKEY *key;
static X509 *cert; /* self-signed: the test's client and server both present it */

static void make_identity(void)
{
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(key);
    cert = X509_new();
    assert_non_null(cert);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME *n = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(cert, n);
    assert_true(X509_sign(cert, key, EVP_sha256()) > 0);
}

/* A listening socket on 127.0.0.1 (TCP connects complete in the kernel's queue). */
static int listener(struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)sa, sizeof *sa), 0);
    socklen_t l = sizeof *sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)sa, &l), 0);
    assert_int_equal(listen(fd, 16), 0);
    return fd;
}

struct fixture {
    SSL_CTX *ctx;
    struct fv_sim_connector *c;
    struct fv_sim_ws *ws;
    struct sockaddr_in sa;
    struct fv_sim_ws_target t;
    struct fv_sim_conn_job job;
};

static void fixture_init(struct fixture *f, uint64_t timeout_ms)
{
    memset(f, 0, sizeof *f);
    f->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(f->ctx);
    SSL_CTX_set_verify(f->ctx, SSL_VERIFY_NONE, NULL);
    char err[256];
    assert_int_equal(fv_sim_connector_start(&f->c, err, sizeof err), FV_OK);
    assert_int_equal(fv_sim_ws_new(&f->ws), FV_OK);
    f->t = (struct fv_sim_ws_target){.addr = (struct sockaddr *)&f->sa,
                                     .addrlen = sizeof f->sa,
                                     .host_header = "127.0.0.1",
                                     .path = "/"};
    f->job = (struct fv_sim_conn_job){.owner = f,
                                      .ws = f->ws,
                                      .ctx = f->ctx,
                                      .target = &f->t,
                                      .cert = cert,
                                      .key = key,
                                      .deadline_ns = fv_mono_ns() + timeout_ms * 1000000ull};
}

static void fixture_free(struct fixture *f)
{
    fv_sim_connector_free(f->c);
    fv_sim_ws_free(f->ws);
    SSL_CTX_free(f->ctx);
}

/* Waits (at most 10 s) for the one job to come back, and checks it is the only one. */
static struct fv_sim_conn_job *wait_job(struct fixture *f)
{
    struct pollfd p = {.fd = fv_sim_connector_fd(f->c), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 10000), 1);
    struct fv_sim_conn_job *j = fv_sim_connector_take(f->c);
    assert_ptr_equal(j, &f->job);
    assert_null(j->next);
    assert_ptr_equal(j->owner, f);
    return j;
}

static void test_refused(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f, 5000);
    close(listener(&f.sa)); /* the port is free again: nothing listens */
    assert_int_equal(fv_sim_connector_submit(f.c, &f.job), FV_OK);
    struct fv_sim_conn_job *j = wait_job(&f);
    assert_true(j->rc < 0);
    assert_non_null(strstr(j->err, "connect"));
    fixture_free(&f);
}

static void test_deadline(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f, 200);
    int l = listener(&f.sa); /* accepts TCP (in the kernel), never speaks TLS */
    uint64_t t0 = fv_mono_ns();
    assert_int_equal(fv_sim_connector_submit(f.c, &f.job), FV_OK);
    struct fv_sim_conn_job *j = wait_job(&f);
    assert_int_equal(j->rc, FV_EIO);
    assert_string_equal(j->err, "timed out connecting (TCP or TLS)");
    assert_true(fv_mono_ns() - t0 >= 200000000ull);
    assert_int_equal(fv_sim_ws_state(f.ws), FV_SIM_WS_TLS); /* the owner closes it (C2) */
    fixture_free(&f);
    close(l);
}

static void test_stop_cancels(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f, 10000);
    int l = listener(&f.sa);
    assert_int_equal(fv_sim_connector_submit(f.c, &f.job), FV_OK);
    fv_sim_connector_stop(f.c);
    struct fv_sim_conn_job *j = fv_sim_connector_take(f.c);
    assert_ptr_equal(j, &f.job);
    assert_null(j->next);
    assert_int_equal(j->rc, FV_ESTATE);
    assert_string_equal(j->err, "closing");
    assert_null(fv_sim_connector_take(f.c)); /* exactly once */
    assert_int_equal(fv_sim_connector_submit(f.c, &f.job), FV_ESTATE);
    fixture_free(&f);
    close(l);
}

struct tls_server {
    int l;
    int got; /* bytes of application data read after the handshake (C3: none) */
};

static void *serve_one(void *arg)
{
    struct tls_server *s = arg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(ctx, cert);
    SSL_CTX_use_PrivateKey(ctx, key);
    int fd = accept(s->l, NULL, NULL);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char buf[64];
        if (poll(&p, 1, 300) == 1 && SSL_read(ssl, buf, sizeof buf) > 0) s->got = 1;
    } else {
        s->got = -1;
    }
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    return NULL;
}

static void test_handshake_done(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f, 10000);
    struct tls_server s = {.l = listener(&f.sa)};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, serve_one, &s), 0);
    assert_int_equal(fv_sim_connector_submit(f.c, &f.job), FV_OK);
    struct fv_sim_conn_job *j = wait_job(&f);
    assert_int_equal(j->rc, FV_OK);
    assert_int_equal(fv_sim_ws_state(f.ws), FV_SIM_WS_UPGRADE);
    assert_true(fv_sim_ws_pending(f.ws) > 0); /* the upgrade request: the owner sends it */
    pthread_join(th, NULL);
    assert_int_equal(s.got, 0);
    fixture_free(&f);
    close(s.l);
}

int main(void)
{
    make_identity();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_stop_cancels),
        cmocka_unit_test(test_handshake_done),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}
