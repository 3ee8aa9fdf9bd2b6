/*
 * certcheck.c - reading PEM certificates and keys with messages a person can act on, and the
 * checks `serve` and `fleetvault certs check` run on TLS files (fv_certs_check_*).
 *
 * Checks (fv_certs_check_*) run in the order a person fixing a setup needs them: file present,
 * readable, PEM of the right kind, key matches certificate, valid now, signed by DIR/ca.crt,
 * then the usage (server SAN, device identity). Each message names the file and says what to
 * run to fix it. On success they write a one-line summary, plus "\nwarning: ..." lines for
 * problems that do not stop a server (missing SAN, expiring soon, key readable by others).
 *
 * Threading: no shared state besides OpenSSL's own (thread-safe in OpenSSL 3); OpenSSL's error
 * queue is per thread and is cleared after every failure reported here.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "crypto/certs_int.h"
#include "os/fsio.h"
#include "util/err.h"

#define FV_CERTS_SOON_S (30L * 24 * 3600)
/* A PEM certificate or key is a few KiB; anything far larger is the wrong file. */
#define FV_CERTS_PEM_MAX  (1u << 20)
#define FV_CERTS_PATH_MAX 4096

/* ---- small helpers ------------------------------------------------------------------------ */

/* The reason of the newest OpenSSL error ("no start line"), then clears the thread's queue. */
const char *fv_certs__ossl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r != NULL)
        snprintf(buf, len, "%s", r);
    else if (e != 0)
        snprintf(buf, len, "OpenSSL error 0x%lx", e);
    else
        snprintf(buf, len, "unknown OpenSSL error");
    ERR_clear_error();
    return buf;
}

/* Copies untrusted bytes for a message: printable ASCII kept, the rest as \xNN, '...' if cut. */
void fv_certs__escape(const unsigned char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char tmp[5];
        int w;
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\' && s[i] != '\'')
            w = snprintf(tmp, sizeof tmp, "%c", s[i]);
        else
            w = snprintf(tmp, sizeof tmp, "\\x%02x", s[i]);
        if (o + (size_t)w + 4 > outlen) {
            /* The previous round left room for "...\0" at o. */
            if (outlen >= 4)
                memcpy(out + o, "...", 4);
            else if (outlen > 0)
                out[0] = '\0';
            return;
        }
        memcpy(out + o, tmp, (size_t)w);
        o += (size_t)w;
    }
    if (outlen > 0) out[o] = '\0';
}

int fv_certs__join(char *out, const char *dir, const char *name, char *err, size_t errlen)
{
    int n = snprintf(out, FV_CERTS_PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= FV_CERTS_PATH_MAX) {
        fv_seterr(err, errlen, "path too long: %s/%s", dir, name);
        return FV_EINVAL;
    }
    return FV_OK;
}

static void fmt_time(const ASN1_TIME *t, char *out, size_t outlen)
{
    struct tm tm;
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm) ||
        strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, outlen, "(unreadable time)");
}

static void fmt_now(char *out, size_t outlen)
{
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL || strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, outlen, "(unknown)");
}

/* A distinguished name as "CN=fleetvault dev CA" (RFC 2253 order, non-ASCII as \xNN). */
static void fmt_name(const X509_NAME *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "(unreadable name)");
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL) return;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        if (n >= 0) fv_certs__escape((const unsigned char *)p, (size_t)n, out, outlen);
    }
    BIO_free(b);
    ERR_clear_error();
}

/* Appends "\nwarning: ..." to a warnings buffer (silently truncated: warnings are advisory). */
__attribute__((format(printf, 3, 4))) static void warn(char *buf, size_t len, const char *fmt, ...)
{
    size_t used = strlen(buf);
    if (used + 10 >= len) return;
    memcpy(buf + used, "\nwarning: ", 11);
    used += 10;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

/* The first "-----BEGIN LABEL-----" label of a PEM text, or "" if none. */
static void pem_label(const char *text, char *out, size_t outlen)
{
    out[0] = '\0';
    const char *p = strstr(text, "-----BEGIN ");
    if (p == NULL) return;
    p += 11;
    const char *e = strstr(p, "-----");
    if (e == NULL || (size_t)(e - p) >= outlen || memchr(p, '\n', (size_t)(e - p)) != NULL) return;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
}

/* Reads a PEM file; missing files get "PATH: no such file - HINT". */
static int read_pem(const char *path, const char *hint, char **buf, size_t *len, char *err,
                    size_t errlen)
{
    char oserr[256];
    int rc = fv_os_read_file(path, FV_CERTS_PEM_MAX, buf, len, oserr, sizeof oserr);
    if (rc == FV_ENOENT) {
        fv_seterr(err, errlen, "%s: no such file - %s", path, hint);
    } else if (rc == FV_ELIMIT) {
        fv_seterr(err, errlen, "%s: too large for a PEM certificate or key (over %u bytes)", path,
                  FV_CERTS_PEM_MAX);
    } else if (rc != FV_OK && errno == EISDIR) {
        fv_seterr(err, errlen, "%s: is a directory, expected a PEM file", path);
    } else if (rc != FV_OK) {
        fv_seterr(err, errlen, "%s: cannot read: %s", path, oserr);
    } else if (*len == 0) {
        fv_seterr(err, errlen, "%s: empty file (expected PEM text)", path);
        free(*buf);
        *buf = NULL;
        rc = FV_ETLS;
    }
    return rc;
}

/* Explains why a PEM text held no object of the wanted kind. */
static void explain_pem(const char *path, const char *text, size_t len, int want_key, char *err,
                        size_t errlen)
{
    char label[64], why[160];
    pem_label(text, label, sizeof label);
    const char *want = want_key ? "a private key" : "a certificate";
    if (label[0] == '\0') {
        if (len > 0 && (unsigned char)text[0] == 0x30)
            fv_seterr(err, errlen,
                      "%s: not PEM (looks like binary DER); convert it with 'openssl %s -inform "
                      "der -in %s -out %s.pem'",
                      path, want_key ? "pkey" : "x509", path, path);
        else
            fv_seterr(err, errlen, "%s: not PEM (no '-----BEGIN ...-----' line); expected %s", path,
                      want);
    } else if (want_key && strcmp(label, "ENCRYPTED PRIVATE KEY") == 0) {
        fv_seterr(err, errlen,
                  "%s: the private key is encrypted; fleetvault needs an unencrypted key "
                  "('openssl pkey -in %s -out %s.plain', then keep it mode 0600)",
                  path, path, path);
    } else if (want_key && strstr(label, "PRIVATE KEY") != NULL && strstr(text, "ENCRYPTED")) {
        fv_seterr(err, errlen,
                  "%s: the private key is encrypted; fleetvault needs an unencrypted key", path);
    } else if (want_key && strcmp(label, "CERTIFICATE") == 0) {
        fv_seterr(err, errlen,
                  "%s: holds a certificate, not a private key - are the certificate and key "
                  "arguments swapped?",
                  path);
    } else if (!want_key && strstr(label, "PRIVATE KEY") != NULL) {
        fv_seterr(err, errlen,
                  "%s: holds a private key, not a certificate - are the certificate and key "
                  "arguments swapped?",
                  path);
    } else if ((want_key && strstr(label, "PRIVATE KEY") != NULL) ||
               (!want_key && strcmp(label, "CERTIFICATE") == 0)) {
        fv_seterr(err, errlen, "%s: the PEM %s is damaged (%s) - is the file cut short or edited?",
                  path, want_key ? "private key" : "certificate",
                  fv_certs__ossl_reason(why, sizeof why));
    } else if (want_key && strstr(label, "PUBLIC KEY") != NULL) {
        fv_seterr(err, errlen, "%s: holds a public key; the private key (the .key file) is needed",
                  path);
    } else {
        fv_seterr(err, errlen, "%s: holds a '%s' PEM block, expected %s", path, label, want);
    }
    ERR_clear_error();
}

/* Never prompts on the terminal for a passphrase: encrypted keys are refused. */
int fv_pem_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* Reads one PEM certificate (want_key 0) or private key (want_key 1) from path; the file's
 * bytes are wiped after use (they may hold a key). */
static void *load_pem(const char *path, const char *hint, int want_key, int *rc, char *err,
                      size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    BIO *bio = NULL;
    void *obj = NULL;
    *rc = read_pem(path, hint, &text, &len, err, errlen);
    if (*rc != FV_OK) goto done;
    bio = BIO_new_mem_buf(text, (int)len);
    if (bio == NULL) {
        fv_seterr(err, errlen, "%s: out of memory", path);
        *rc = FV_ENOMEM;
        goto done;
    }
    obj = want_key ? (void *)PEM_read_bio_PrivateKey(bio, NULL, fv_pem_no_passphrase, NULL)
                   : (void *)PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (obj == NULL) {
        explain_pem(path, text, len, want_key, err, errlen);
        *rc = FV_ETLS;
    }
done:
    BIO_free(bio);
    if (text != NULL) {
        OPENSSL_cleanse(text, len);
        free(text);
    }
    return obj;
}

int fv_certs__load_cert(const char *path, const char *hint, X509 **out, char *err, size_t errlen)
{
    int rc;
    *out = load_pem(path, hint, 0, &rc, err, errlen);
    return rc;
}

int fv_certs__load_key(const char *path, const char *hint, EVP_PKEY **out, char *err, size_t errlen)
{
    int rc;
    *out = load_pem(path, hint, 1, &rc, err, errlen);
    return rc;
}

int fv_certs__check_key_matches(X509 *cert, EVP_PKEY *key, const char *cert_path,
                                const char *key_path, char *err, size_t errlen)
{
    if (X509_check_private_key(cert, key) == 1) return FV_OK;
    ERR_clear_error();
    fv_seterr(err, errlen,
              "%s: private key does not match certificate %s (the key belongs to another "
              "certificate; use the .key made together with this .crt)",
              key_path, cert_path);
    return FV_ETLS;
}

/* Valid now? renew says what to run for a new certificate. */
int fv_certs__check_times(X509 *cert, const char *path, const char *renew, char *err, size_t errlen)
{
    char when[40], now[40];
    fmt_now(now, sizeof now);
    int nb = X509_cmp_current_time(X509_get0_notBefore(cert));
    int na = X509_cmp_current_time(X509_get0_notAfter(cert));
    if (nb == 0 || na == 0) {
        ERR_clear_error();
        fv_seterr(err, errlen, "%s: the certificate's validity dates are malformed", path);
        return FV_ETLS;
    }
    if (nb > 0) {
        fmt_time(X509_get0_notBefore(cert), when, sizeof when);
        fv_seterr(err, errlen,
                  "%s: not yet valid: valid from %s, but it is now %s - is this machine's clock "
                  "right?",
                  path, when, now);
        return FV_ETLS;
    }
    if (na < 0) {
        fmt_time(X509_get0_notAfter(cert), when, sizeof when);
        fv_seterr(err, errlen, "%s: expired on %s (it is now %s) - %s", path, when, now, renew);
        return FV_ETLS;
    }
    return FV_OK;
}

static void warn_if_expiring(X509 *cert, const char *path, char *warnings, size_t wlen)
{
    time_t soon = time(NULL) + FV_CERTS_SOON_S;
    if (X509_cmp_time(X509_get0_notAfter(cert), &soon) < 0) {
        char when[40];
        fmt_time(X509_get0_notAfter(cert), when, sizeof when);
        warn(warnings, wlen, "%s expires soon, on %s", path, when);
    }
    ERR_clear_error();
}

static void warn_if_key_exposed(const char *key_path, char *warnings, size_t wlen)
{
    struct stat st;
    if (stat(key_path, &st) == 0 && (st.st_mode & 077) != 0)
        warn(warnings, wlen, "%s is accessible by other users (mode %04o); run 'chmod 600 %s'",
             key_path, (unsigned)(st.st_mode & 07777), key_path);
}

int fv_certs__check_is_ca(X509 *ca, const char *path, const char *dir, char *err, size_t errlen)
{
    if (X509_check_ca(ca) >= 1) return FV_OK;
    fv_seterr(err, errlen,
              "%s: not a CA certificate (no basicConstraints CA:TRUE / keyCertSign); it cannot "
              "sign device certificates - " FV_HINT_INIT_FMT " in an empty directory",
              path, dir);
    return FV_ETLS;
}

/* Verifies cert against the single trusted ca with X509_verify_cert for the given purpose. */
static int verify_with_ca(X509 *ca, X509 *cert, int purpose, const char *path, const char *ca_path,
                          char *err, size_t errlen)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    char ca_name[256], issuer[256];
    int rc = FV_ETLS;
    if (store == NULL || ctx == NULL) {
        fv_seterr(err, errlen, "%s: out of memory verifying against %s", path, ca_path);
        rc = FV_ENOMEM;
        goto done;
    }
    if (X509_STORE_add_cert(store, ca) != 1 || X509_STORE_CTX_init(ctx, store, cert, NULL) != 1 ||
        X509_STORE_CTX_set_purpose(ctx, purpose) != 1) {
        char why[160];
        fv_seterr(err, errlen, "%s: cannot set up verification against %s (%s)", path, ca_path,
                  fv_certs__ossl_reason(why, sizeof why));
        goto done;
    }
    if (X509_verify_cert(ctx) == 1) {
        rc = FV_OK;
        goto done;
    }
    int e = X509_STORE_CTX_get_error(ctx);
    const char *reason = X509_verify_cert_error_string(e);
    fmt_name(X509_get_subject_name(ca), ca_name, sizeof ca_name);
    fmt_name(X509_get_issuer_name(cert), issuer, sizeof issuer);
    switch (e) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        fv_seterr(err, errlen,
                  "%s: not signed by this CA (%s, '%s'): %s; the certificate names issuer '%s'%s",
                  path, ca_path, ca_name, reason, issuer,
                  strcmp(ca_name, issuer) == 0
                      ? " - same name but a different CA key: was the CA re-created after this "
                        "certificate was made?"
                      : " - it was made by another CA");
        break;
    case X509_V_ERR_INVALID_PURPOSE:
        fv_seterr(err, errlen, "%s: not usable as a TLS %s certificate: %s (extended key usage)",
                  path, purpose == X509_PURPOSE_SSL_SERVER ? "server" : "client", reason);
        break;
    default:
        fv_seterr(err, errlen, "%s: does not verify against CA %s ('%s'): %s (at chain depth %d)",
                  path, ca_path, ca_name, reason, X509_STORE_CTX_get_error_depth(ctx));
        break;
    }
done:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return rc;
}

/* ---- checks ------------------------------------------------------------------------------- */

/* Loads and checks DIR/ca.crt (and DIR/ca.key if present); shared by both checks. */
static int check_ca(const char *dir, X509 **ca, char *ca_crt, char *warnings, size_t wlen,
                    char *err, size_t errlen)
{
    char ca_key[FV_CERTS_PATH_MAX], hint[FV_CERTS_PATH_MAX + 64];
    EVP_PKEY *key = NULL;
    struct stat st;
    int rc;
    *ca = NULL;
    if ((rc = fv_certs__join(ca_crt, dir, "ca.crt", err, errlen)) != FV_OK ||
        (rc = fv_certs__join(ca_key, dir, "ca.key", err, errlen)) != FV_OK)
        goto done;
    snprintf(hint, sizeof hint, FV_HINT_INIT_FMT, dir);
    if ((rc = fv_certs__load_cert(ca_crt, hint, ca, err, errlen)) != FV_OK ||
        (rc = fv_certs__check_is_ca(*ca, ca_crt, dir, err, errlen)) != FV_OK)
        goto done;
    /* A server does not need the CA key (better without it); if present it must match. */
    if (stat(ca_key, &st) == 0) {
        if ((rc = fv_certs__load_key(ca_key, hint, &key, err, errlen)) != FV_OK ||
            (rc = fv_certs__check_key_matches(*ca, key, ca_crt, ca_key, err, errlen)) != FV_OK)
            goto done;
        warn_if_key_exposed(ca_key, warnings, wlen);
    }
    snprintf(hint, sizeof hint,
             "remove %s and " FV_HINT_INIT_FMT " again (then re-issue every certificate)", dir,
             dir);
    if ((rc = fv_certs__check_times(*ca, ca_crt, hint, err, errlen)) != FV_OK) goto done;
    warn_if_expiring(*ca, ca_crt, warnings, wlen);
done:
    EVP_PKEY_free(key);
    if (rc != FV_OK) {
        X509_free(*ca);
        *ca = NULL;
    }
    return rc;
}

int fv_certs_check_server(const char *dir, char *err, size_t errlen)
{
    char ca_crt[FV_CERTS_PATH_MAX], crt[FV_CERTS_PATH_MAX], keyp[FV_CERTS_PATH_MAX];
    char hint[FV_CERTS_PATH_MAX + 64], warnings[1024] = "", until[40], ca_name[256];
    X509 *ca = NULL, *cert = NULL;
    EVP_PKEY *key = NULL;
    int rc;
    if ((rc = check_ca(dir, &ca, ca_crt, warnings, sizeof warnings, err, errlen)) != FV_OK ||
        (rc = fv_certs__join(crt, dir, "server.crt", err, errlen)) != FV_OK ||
        (rc = fv_certs__join(keyp, dir, "server.key", err, errlen)) != FV_OK)
        goto done;
    snprintf(hint, sizeof hint, FV_HINT_INIT_FMT, dir);
    if ((rc = fv_certs__load_cert(crt, hint, &cert, err, errlen)) != FV_OK ||
        (rc = fv_certs__load_key(keyp, hint, &key, err, errlen)) != FV_OK ||
        (rc = fv_certs__check_key_matches(cert, key, crt, keyp, err, errlen)) != FV_OK)
        goto done;
    snprintf(hint, sizeof hint,
             "make a new server certificate signed by %s (or, for a development setup, remove %s "
             "and " FV_HINT_INIT_FMT ")",
             ca_crt, dir, dir);
    if ((rc = fv_certs__check_times(cert, crt, hint, err, errlen)) != FV_OK ||
        (rc = verify_with_ca(ca, cert, X509_PURPOSE_SSL_SERVER, crt, ca_crt, err, errlen)) != FV_OK)
        goto done;
    int host_ok = X509_check_host(cert, "localhost", 0, 0, NULL) == 1;
    int ip_ok = X509_check_ip_asc(cert, "127.0.0.1", 0) == 1;
    ERR_clear_error();
    if (!host_ok || !ip_ok)
        warn(warnings, sizeof warnings,
             "%s has no subjectAltName for %s%s%s; local clients (the simulator, tests) that "
             "connect by that name will fail hostname verification",
             crt, host_ok ? "" : "DNS:localhost", !host_ok && !ip_ok ? " or " : "",
             ip_ok ? "" : "IP:127.0.0.1");
    warn_if_expiring(cert, crt, warnings, sizeof warnings);
    warn_if_key_exposed(keyp, warnings, sizeof warnings);
    fmt_time(X509_get0_notAfter(cert), until, sizeof until);
    fmt_name(X509_get_subject_name(ca), ca_name, sizeof ca_name);
    fv_seterr(err, errlen, "%s: key matches, valid until %s, signed by %s ('%s')%s", crt, until,
              ca_crt, ca_name, warnings);
done:
    EVP_PKEY_free(key);
    X509_free(cert);
    X509_free(ca);
    return rc;
}

int fv_certs_check_device(const char *dir, const char *cert_file, const char *key_file, char *err,
                          size_t errlen)
{
    char ca_crt[FV_CERTS_PATH_MAX], warnings[1024] = "", until[40], reason[512];
    char hint[FV_CERTS_PATH_MAX + 64];
    X509 *ca = NULL, *cert = NULL;
    EVP_PKEY *key = NULL;
    struct fv_identity id;
    int rc;
    if (cert_file == NULL) {
        fv_seterr(err, errlen, "no device certificate file given");
        return FV_EINVAL;
    }
    snprintf(hint, sizeof hint, "make one with 'fleetvault certs device %s ID'", dir);
    if ((rc = check_ca(dir, &ca, ca_crt, warnings, sizeof warnings, err, errlen)) != FV_OK ||
        (rc = fv_certs__load_cert(cert_file, hint, &cert, err, errlen)) != FV_OK)
        goto done;
    if (key_file != NULL) {
        if ((rc = fv_certs__load_key(key_file, hint, &key, err, errlen)) != FV_OK ||
            (rc = fv_certs__check_key_matches(cert, key, cert_file, key_file, err, errlen)) !=
                FV_OK)
            goto done;
        warn_if_key_exposed(key_file, warnings, sizeof warnings);
    }
    snprintf(hint, sizeof hint,
             "remove it and its key, then run 'fleetvault certs device %s ID' again", dir);
    if ((rc = fv_certs__check_times(cert, cert_file, hint, err, errlen)) != FV_OK ||
        (rc = verify_with_ca(ca, cert, X509_PURPOSE_SSL_CLIENT, cert_file, ca_crt, err, errlen)) !=
            FV_OK)
        goto done;
    if ((rc = fv_identity_from_cert(cert, &id, reason, sizeof reason)) != FV_OK) {
        fv_seterr(err, errlen, "%s: %s", cert_file, reason);
        goto done;
    }
    warn_if_expiring(cert, cert_file, warnings, sizeof warnings);
    fmt_time(X509_get0_notAfter(cert), until, sizeof until);
    fv_seterr(err, errlen, "%s: device %s.%s (type %d, %s), %s, valid until %s, signed by %s%s",
              cert_file, id.client_type, id.device_id, id.type_code,
              id.production ? "production" : "engineering",
              key_file ? "key matches" : "key not checked", until, ca_crt, warnings);
done:
    EVP_PKEY_free(key);
    X509_free(cert);
    X509_free(ca);
    return rc;
}
