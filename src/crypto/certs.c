/*
 * certs.c - the development PKI behind `fleetvault certs`, the checks `serve` runs on its TLS
 * files at start-up, and the device identity read from a verified client certificate.
 *
 * Certificates made here (all keys EC P-256, signatures ECDSA-SHA256, serials 120 random bits,
 * notBefore back-dated FV_CERTS_BACKDATE_S to tolerate clocks slightly behind the CA's):
 *
 *   what      subject               life     extensions
 *   CA        CN=fleetvault dev CA  10 y     basicConstraints critical CA:TRUE,pathlen:0;
 *                                            keyUsage critical keyCertSign,cRLSign; SKI
 *   server    CN=localhost          2 y      basicConstraints critical CA:FALSE; keyUsage
 *                                            critical digitalSignature; EKU serverAuth;
 *                                            SAN DNS:localhost,IP:127.0.0.1; SKI; AKI
 *   device    CN=ID                 2 y      basicConstraints critical CA:FALSE; keyUsage
 *                                            critical digitalSignature; EKU clientAuth +
 *                                            1.3.6.1.4.1.49279.2.5.T; SKI; AKI
 *
 * Durability: every file goes through fv_os_write_file_atomic (temp, fsync, rename, fsync dir).
 * Keys are written 0600 before their certificates; `init` writes DIR/ca.crt last, so ca.crt
 * existing means a complete PKI, and an `init` cut short by a crash simply runs again.
 * `device` likewise writes ID.key before ID.crt.
 *
 * Identity rules (fv_identity_from_cert; the leaf must already be verified by the caller):
 *   I1. The subject holds exactly one CN; it is UTF-8 convertible and has no NUL byte.
 *   I2. Device id = CN with every '.' replaced by '-'; it must pass fv_device_id_valid.
 *   I3. The EKU must not contain 1.3.6.1.4.1.49279.2.5.1.1 (Wi-Fi EAP certificates).
 *   I4. The EKU holds exactly one client-type OID 1.3.6.1.4.1.49279.2.{4|5}.T (repeats of the
 *       same OID are tolerated) and T is in the table below; 5 = production, 4 = engineering.
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

#include "crypto/certs.h"
#include "os/fsio.h"
#include "util/err.h"

#define FV_CERTS_CA_CN       "fleetvault dev CA"
#define FV_CERTS_CA_DAYS     3650
#define FV_CERTS_SERVER_DAYS 730
#define FV_CERTS_DEVICE_DAYS 730
#define FV_CERTS_BACKDATE_S  300
/* Warn when a certificate has less than this left, so renewal is not a surprise outage. */
#define FV_CERTS_SOON_S (30L * 24 * 3600)
/* A PEM certificate or key is a few KiB; anything far larger is the wrong file. */
#define FV_CERTS_PEM_MAX  (1u << 20)
#define FV_CERTS_PATH_MAX 4096

#define FV_OID_CLIENT_PREFIX "1.3.6.1.4.1.49279.2."
#define FV_OID_WIFI_EAP      "1.3.6.1.4.1.49279.2.5.1.1"

#define FV_HINT_INIT_FMT "run 'fleetvault certs init %s'"

static const struct {
    int code;
    const char *name;
} client_types[] = {
    {FV_CT_VEHICLE_DEVICE, "vehicle_device"},
    {FV_CT_ENERGY_DEVICE, "energy_device"},
    {FV_CT_VEHICLE_BOARD_DEVICE, "vehicle_board_device"},
    {FV_CT_DAS_DEVICE, "das_device"},
    {FV_CT_VEHICLE_SERVICE, "vehicle_service"},
    {FV_CT_DAS_SERVICE, "das_service"},
    {FV_CT_ENERGY_SERVICE, "energy_service"},
    {FV_CT_ROBOTICS_DEVICE, "robotics_device"},
};
#define N_CLIENT_TYPES (sizeof client_types / sizeof client_types[0])

struct fv_ca {
    X509 *cert;
    EVP_PKEY *key;
};

/* One extension in nconf syntax ("critical,CA:TRUE"), added in order. */
struct ext {
    int nid;
    const char *value;
};

const char *fv_client_type_name(int type_code)
{
    for (size_t i = 0; i < N_CLIENT_TYPES; i++)
        if (client_types[i].code == type_code) return client_types[i].name;
    return NULL;
}

int fv_client_type_code(const char *name)
{
    if (name == NULL) return -1;
    for (size_t i = 0; i < N_CLIENT_TYPES; i++)
        if (strcmp(client_types[i].name, name) == 0) return client_types[i].code;
    return -1;
}

int fv_device_id_valid(const char *id)
{
    if (id == NULL) return 0;
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        char c = *p;
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_';
        if (!ok || n >= FV_DEVICE_ID_MAX) return 0;
    }
    return n > 0;
}

/* ---- small helpers ------------------------------------------------------------------------ */

/* The reason of the newest OpenSSL error ("no start line"), then clears the thread's queue. */
static const char *ossl_reason(char *buf, size_t len)
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
static void escape(const unsigned char *s, size_t n, char *out, size_t outlen)
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

static int join(char *out, const char *dir, const char *name, char *err, size_t errlen)
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
        if (n >= 0) escape((const unsigned char *)p, (size_t)n, out, outlen);
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
                  path, want_key ? "private key" : "certificate", ossl_reason(why, sizeof why));
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

static int load_cert(const char *path, const char *hint, X509 **out, char *err, size_t errlen)
{
    int rc;
    *out = load_pem(path, hint, 0, &rc, err, errlen);
    return rc;
}

static int load_key(const char *path, const char *hint, EVP_PKEY **out, char *err, size_t errlen)
{
    int rc;
    *out = load_pem(path, hint, 1, &rc, err, errlen);
    return rc;
}

static int check_key_matches(X509 *cert, EVP_PKEY *key, const char *cert_path, const char *key_path,
                             char *err, size_t errlen)
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
static int check_times(X509 *cert, const char *path, const char *renew, char *err, size_t errlen)
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

static int check_is_ca(X509 *ca, const char *path, const char *dir, char *err, size_t errlen)
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
                  ossl_reason(why, sizeof why));
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

/* ---- building certificates ---------------------------------------------------------------- */

static EVP_PKEY *new_key(char *err, size_t errlen)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (key == NULL) {
        char why[160];
        fv_seterr(err, errlen, "EC P-256 key generation failed (%s)", ossl_reason(why, sizeof why));
    }
    return key;
}

/*
 * Builds and signs a certificate for key. issuer == NULL makes it self-signed (signed by key);
 * otherwise it is signed by issuer_key and names issuer's subject. Caller frees *out.
 */
static int build_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, long days,
                      const struct ext *exts, size_t n_exts, X509 **out, char *err, size_t errlen)
{
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    X509_EXTENSION *ex = NULL;
    const char *step = "X509_new";
    char why[160];
    int rc = FV_ETLS;
    *out = NULL;
    if (x == NULL || bn == NULL) {
        rc = FV_ENOMEM;
        goto fail;
    }
    step = "serial";
    if (!X509_set_version(x, X509_VERSION_3) ||
        !BN_rand(bn, 120, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
        goto fail;
    step = "subject";
    X509_NAME *subject = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0) ||
        !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subject))
        goto fail;
    step = "validity";
    if (X509_gmtime_adj(X509_getm_notBefore(x), -FV_CERTS_BACKDATE_S) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) == NULL)
        goto fail;
    step = "public key";
    if (!X509_set_pubkey(x, key)) goto fail;
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    for (size_t i = 0; i < n_exts; i++) {
        step = exts[i].value;
        ex = X509V3_EXT_nconf_nid(NULL, &v3, exts[i].nid, exts[i].value);
        if (ex == NULL || !X509_add_ext(x, ex, -1)) goto fail;
        X509_EXTENSION_free(ex);
        ex = NULL;
    }
    step = "X509_sign";
    if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) <= 0) goto fail;
    BN_free(bn);
    *out = x;
    return FV_OK;
fail:
    fv_seterr(err, errlen, "building certificate for CN '%s' failed at %s (%s)", cn, step,
              rc == FV_ENOMEM ? "out of memory" : ossl_reason(why, sizeof why));
    ERR_clear_error();
    X509_EXTENSION_free(ex);
    BN_free(bn);
    X509_free(x);
    return rc;
}

static int pem_to_file(const char *path, X509 *cert, EVP_PKEY *key, char *err, size_t errlen)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len = 0;
    int rc = FV_ETLS;
    if (b == NULL) {
        fv_seterr(err, errlen, "%s: out of memory", path);
        return FV_ENOMEM;
    }
    int ok = key ? PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_bio_X509(b, cert);
    len = BIO_get_mem_data(b, &data);
    if (!ok || len <= 0) {
        char why[160];
        fv_seterr(err, errlen, "%s: PEM encoding failed (%s)", path, ossl_reason(why, sizeof why));
        goto done;
    }
    rc = fv_os_write_file_atomic(path, data, (size_t)len, key ? 0600 : 0644, err, errlen);
done:
    if (key != NULL) {
        /* The memory BIO held the private key in clear; wipe it before it is freed. */
        if (len > 0) OPENSSL_cleanse(data, (size_t)len);
    }
    BIO_free(b);
    return rc;
}

static void list_types(char *out, size_t outlen)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < N_CLIENT_TYPES && o < outlen; i++) {
        int n = snprintf(out + o, outlen - o, "%s%s (%d)", i ? ", " : "", client_types[i].name,
                         client_types[i].code);
        if (n < 0) break;
        o += (size_t)n;
    }
}

static int check_mint_args(const char *id, int type_code, char *err, size_t errlen)
{
    if (fv_client_type_name(type_code) == NULL) {
        char known[256];
        list_types(known, sizeof known);
        fv_seterr(err, errlen, "unknown client type %d; known types: %s", type_code, known);
        return FV_EINVAL;
    }
    if (!fv_device_id_valid(id)) {
        char shown[160];
        if (id == NULL)
            snprintf(shown, sizeof shown, "(null)");
        else
            escape((const unsigned char *)id, strlen(id), shown, sizeof shown);
        fv_seterr(err, errlen, "'%s' is not a valid device id (1-64 of A-Z a-z 0-9 - _)%s", shown,
                  id != NULL && strchr(id, '.') != NULL
                      ? "; use '-' for '.' (a server maps a certificate CN's '.' to '-')"
                      : "");
        return FV_EINVAL;
    }
    return FV_OK;
}

/* ---- the in-memory CA --------------------------------------------------------------------- */

void fv_ca_free(struct fv_ca *ca)
{
    if (ca == NULL) return;
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    free(ca);
}

int fv_ca_load(const char *dir, struct fv_ca **out, char *err, size_t errlen)
{
    char crt[FV_CERTS_PATH_MAX], keyp[FV_CERTS_PATH_MAX], hint[FV_CERTS_PATH_MAX + 64];
    struct fv_ca *ca = NULL;
    int rc;
    *out = NULL;
    if ((rc = join(crt, dir, "ca.crt", err, errlen)) != FV_OK ||
        (rc = join(keyp, dir, "ca.key", err, errlen)) != FV_OK)
        goto done;
    snprintf(hint, sizeof hint, FV_HINT_INIT_FMT, dir);
    ca = calloc(1, sizeof *ca);
    if (ca == NULL) {
        fv_seterr(err, errlen, "out of memory loading the CA in %s", dir);
        rc = FV_ENOMEM;
        goto done;
    }
    if ((rc = load_cert(crt, hint, &ca->cert, err, errlen)) != FV_OK ||
        (rc = load_key(keyp, hint, &ca->key, err, errlen)) != FV_OK ||
        (rc = check_key_matches(ca->cert, ca->key, crt, keyp, err, errlen)) != FV_OK ||
        (rc = check_is_ca(ca->cert, crt, dir, err, errlen)) != FV_OK)
        goto done;
    snprintf(hint, sizeof hint,
             "the CA can no longer sign; remove %s and " FV_HINT_INIT_FMT
             " again (then re-issue every certificate)",
             dir, dir);
    if ((rc = check_times(ca->cert, crt, hint, err, errlen)) != FV_OK) goto done;
    *out = ca;
    ca = NULL;
done:
    fv_ca_free(ca);
    return rc;
}

int fv_ca_mint(struct fv_ca *ca, const char *id, int type_code, X509 **cert, EVP_PKEY **key,
               char *err, size_t errlen)
{
    char eku[96];
    EVP_PKEY *k = NULL;
    int rc;
    *cert = NULL;
    *key = NULL;
    if (ca == NULL) {
        fv_seterr(err, errlen, "fv_ca_mint: no CA");
        return FV_EINVAL;
    }
    if ((rc = check_mint_args(id, type_code, err, errlen)) != FV_OK) return rc;
    snprintf(eku, sizeof eku, "clientAuth,%s5.%d", FV_OID_CLIENT_PREFIX, type_code);
    const struct ext exts[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, eku},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
    };
    k = new_key(err, errlen);
    if (k == NULL) {
        rc = FV_ETLS;
        goto done;
    }
    rc = build_cert(k, id, ca->cert, ca->key, FV_CERTS_DEVICE_DAYS, exts,
                    sizeof exts / sizeof exts[0], cert, err, errlen);
    if (rc == FV_OK) {
        *key = k;
        k = NULL;
    }
done:
    EVP_PKEY_free(k);
    return rc;
}

/* ---- files ---------------------------------------------------------------------------------- */

int fv_certs_init(const char *dir, char *err, size_t errlen)
{
    char ca_crt[FV_CERTS_PATH_MAX], ca_key[FV_CERTS_PATH_MAX];
    char srv_crt[FV_CERTS_PATH_MAX], srv_key[FV_CERTS_PATH_MAX];
    EVP_PKEY *cak = NULL, *srvk = NULL;
    X509 *cac = NULL, *srvc = NULL;
    struct stat st;
    int rc;
    if ((rc = join(ca_crt, dir, "ca.crt", err, errlen)) != FV_OK ||
        (rc = join(ca_key, dir, "ca.key", err, errlen)) != FV_OK ||
        (rc = join(srv_crt, dir, "server.crt", err, errlen)) != FV_OK ||
        (rc = join(srv_key, dir, "server.key", err, errlen)) != FV_OK)
        goto done;
    if (stat(ca_crt, &st) == 0) {
        fv_seterr(err, errlen,
                  "%s already exists; nothing changed (add devices with 'fleetvault certs device "
                  "%s ID', or remove %s to start over)",
                  ca_crt, dir, dir);
        rc = FV_EEXIST;
        goto done;
    }
    if ((rc = fv_os_mkdirs(dir, 0700, err, errlen)) != FV_OK) goto done;
    const struct ext ca_exts[] = {
        {NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
        {NID_subject_key_identifier, "hash"},
    };
    const struct ext srv_exts[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "serverAuth"},
        {NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
    };
    rc = FV_ETLS;
    if ((cak = new_key(err, errlen)) == NULL || (srvk = new_key(err, errlen)) == NULL) goto done;
    if ((rc = build_cert(cak, FV_CERTS_CA_CN, NULL, NULL, FV_CERTS_CA_DAYS, ca_exts,
                         sizeof ca_exts / sizeof ca_exts[0], &cac, err, errlen)) != FV_OK ||
        (rc = build_cert(srvk, "localhost", cac, cak, FV_CERTS_SERVER_DAYS, srv_exts,
                         sizeof srv_exts / sizeof srv_exts[0], &srvc, err, errlen)) != FV_OK)
        goto done;
    /* ca.crt last: its presence marks a complete PKI (see the top of this file). */
    if ((rc = pem_to_file(ca_key, NULL, cak, err, errlen)) != FV_OK ||
        (rc = pem_to_file(srv_key, NULL, srvk, err, errlen)) != FV_OK ||
        (rc = pem_to_file(srv_crt, srvc, NULL, err, errlen)) != FV_OK ||
        (rc = pem_to_file(ca_crt, cac, NULL, err, errlen)) != FV_OK)
        goto done;
done:
    X509_free(srvc);
    X509_free(cac);
    EVP_PKEY_free(srvk);
    EVP_PKEY_free(cak);
    return rc;
}

int fv_certs_device(const char *dir, const char *id, int type_code, char *err, size_t errlen)
{
    char devdir[FV_CERTS_PATH_MAX], crt[FV_CERTS_PATH_MAX], keyp[FV_CERTS_PATH_MAX];
    char name[FV_DEVICE_ID_MAX + 8];
    struct fv_ca *ca = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    struct stat st;
    int rc;
    /* Refuse bad arguments before touching the disk. */
    if ((rc = check_mint_args(id, type_code, err, errlen)) != FV_OK) goto done;
    if ((rc = join(devdir, dir, "devices", err, errlen)) != FV_OK) goto done;
    snprintf(name, sizeof name, "%s.crt", id);
    if ((rc = join(crt, devdir, name, err, errlen)) != FV_OK) goto done;
    snprintf(name, sizeof name, "%s.key", id);
    if ((rc = join(keyp, devdir, name, err, errlen)) != FV_OK) goto done;
    if (stat(crt, &st) == 0) {
        fv_seterr(err, errlen,
                  "%s already exists; nothing changed (remove it and %s to issue a new one)", crt,
                  keyp);
        rc = FV_EEXIST;
        goto done;
    }
    if ((rc = fv_ca_load(dir, &ca, err, errlen)) != FV_OK ||
        (rc = fv_os_mkdirs(devdir, 0700, err, errlen)) != FV_OK ||
        (rc = fv_ca_mint(ca, id, type_code, &cert, &key, err, errlen)) != FV_OK ||
        (rc = pem_to_file(keyp, NULL, key, err, errlen)) != FV_OK ||
        (rc = pem_to_file(crt, cert, NULL, err, errlen)) != FV_OK)
        goto done;
done:
    X509_free(cert);
    EVP_PKEY_free(key);
    fv_ca_free(ca);
    return rc;
}

/* ---- identity ----------------------------------------------------------------------------- */

/* 1 with *production and *code if oid is 1.3.6.1.4.1.49279.2.{4|5}.T, else 0. */
static int parse_client_oid(const char *oid, int *production, int *code)
{
    size_t plen = strlen(FV_OID_CLIENT_PREFIX);
    if (strncmp(oid, FV_OID_CLIENT_PREFIX, plen) != 0) return 0;
    const char *p = oid + plen;
    if ((p[0] != '4' && p[0] != '5') || p[1] != '.') return 0;
    int prod = p[0] == '5';
    p += 2;
    long t = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits >= 6) return 0;
        t = t * 10 + (*p - '0');
    }
    if (digits == 0 || *p != '\0') return 0;
    *production = prod;
    *code = (int)t;
    return 1;
}

int fv_identity_from_cert(X509 *leaf, struct fv_identity *out, char *err, size_t errlen)
{
    struct fv_identity id;
    EXTENDED_KEY_USAGE *eku = NULL;
    unsigned char *cn = NULL;
    char shown[200];
    int rc = FV_ETLS;
    memset(&id, 0, sizeof id);
    if (leaf == NULL) {
        fv_seterr(err, errlen, "no client certificate");
        goto done;
    }
    /* I1: exactly one CN. */
    X509_NAME *subject = X509_get_subject_name(leaf);
    int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (idx < 0) {
        fv_seterr(err, errlen, "certificate has no subject CN (the device id)");
        goto done;
    }
    if (X509_NAME_get_index_by_NID(subject, NID_commonName, idx) >= 0) {
        fv_seterr(err, errlen, "certificate has more than one subject CN; expected exactly one");
        goto done;
    }
    ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
    int n = ASN1_STRING_to_UTF8(&cn, data);
    if (n < 0) {
        ERR_clear_error();
        fv_seterr(err, errlen, "certificate CN is not a readable string");
        goto done;
    }
    /* I2: '.' -> '-', then the id rules (which also reject embedded NULs and overlong CNs). */
    if ((size_t)n <= FV_DEVICE_ID_MAX && memchr(cn, '\0', (size_t)n) == NULL) {
        for (int i = 0; i < n; i++)
            id.device_id[i] = cn[i] == '.' ? '-' : (char)cn[i];
        id.device_id[n] = '\0';
    }
    if (!fv_device_id_valid(id.device_id)) {
        escape(cn, (size_t)n, shown, sizeof shown);
        fv_seterr(err, errlen,
                  "certificate CN '%s' is not a valid device id (1-64 of A-Z a-z 0-9 - _)", shown);
        goto done;
    }
    /* I3, I4: the client type from the extended key usage. */
    int crit = 0;
    eku = X509_get_ext_d2i(leaf, NID_ext_key_usage, &crit, NULL);
    if (eku == NULL && crit == -2) {
        fv_seterr(err, errlen, "certificate has more than one extended key usage extension");
        goto done;
    }
    int found = 0, unknown = -1;
    for (int i = 0; eku != NULL && i < sk_ASN1_OBJECT_num(eku); i++) {
        char oid[128];
        int len = OBJ_obj2txt(oid, sizeof oid, sk_ASN1_OBJECT_value(eku, i), 1);
        if (len <= 0 || len >= (int)sizeof oid) continue;
        if (strcmp(oid, FV_OID_WIFI_EAP) == 0) {
            fv_seterr(err, errlen,
                      "certificate is a Wi-Fi EAP certificate (extended key usage %s), not a "
                      "fleet telemetry client certificate",
                      FV_OID_WIFI_EAP);
            goto done;
        }
        int prod, code;
        if (!parse_client_oid(oid, &prod, &code)) continue;
        const char *name = fv_client_type_name(code);
        if (name == NULL) {
            unknown = code;
            continue;
        }
        if (found && (code != id.type_code || prod != id.production)) {
            fv_seterr(err, errlen,
                      "certificate names two client types (%s and %s%s) in its extended key "
                      "usage; expected one",
                      id.client_type, name, prod ? "" : " (engineering)");
            goto done;
        }
        found = 1;
        id.type_code = code;
        id.production = prod;
        snprintf(id.client_type, sizeof id.client_type, "%s", name);
    }
    if (!found) {
        if (unknown >= 0)
            fv_seterr(err, errlen,
                      "certificate's extended key usage names unknown client type %d "
                      "(1.3.6.1.4.1.49279.2.{4|5}.%d)",
                      unknown, unknown);
        else
            fv_seterr(err, errlen,
                      "certificate has no fleet client-type extended key usage "
                      "(1.3.6.1.4.1.49279.2.{4|5}.T)");
        goto done;
    }
    *out = id;
    rc = FV_OK;
done:
    EXTENDED_KEY_USAGE_free(eku);
    OPENSSL_free(cn);
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
    if ((rc = join(ca_crt, dir, "ca.crt", err, errlen)) != FV_OK ||
        (rc = join(ca_key, dir, "ca.key", err, errlen)) != FV_OK)
        goto done;
    snprintf(hint, sizeof hint, FV_HINT_INIT_FMT, dir);
    if ((rc = load_cert(ca_crt, hint, ca, err, errlen)) != FV_OK ||
        (rc = check_is_ca(*ca, ca_crt, dir, err, errlen)) != FV_OK)
        goto done;
    /* A server does not need the CA key (better without it); if present it must match. */
    if (stat(ca_key, &st) == 0) {
        if ((rc = load_key(ca_key, hint, &key, err, errlen)) != FV_OK ||
            (rc = check_key_matches(*ca, key, ca_crt, ca_key, err, errlen)) != FV_OK)
            goto done;
        warn_if_key_exposed(ca_key, warnings, wlen);
    }
    snprintf(hint, sizeof hint,
             "remove %s and " FV_HINT_INIT_FMT " again (then re-issue every certificate)", dir,
             dir);
    if ((rc = check_times(*ca, ca_crt, hint, err, errlen)) != FV_OK) goto done;
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
        (rc = join(crt, dir, "server.crt", err, errlen)) != FV_OK ||
        (rc = join(keyp, dir, "server.key", err, errlen)) != FV_OK)
        goto done;
    snprintf(hint, sizeof hint, FV_HINT_INIT_FMT, dir);
    if ((rc = load_cert(crt, hint, &cert, err, errlen)) != FV_OK ||
        (rc = load_key(keyp, hint, &key, err, errlen)) != FV_OK ||
        (rc = check_key_matches(cert, key, crt, keyp, err, errlen)) != FV_OK)
        goto done;
    snprintf(hint, sizeof hint,
             "make a new server certificate signed by %s (or, for a development setup, remove %s "
             "and " FV_HINT_INIT_FMT ")",
             ca_crt, dir, dir);
    if ((rc = check_times(cert, crt, hint, err, errlen)) != FV_OK ||
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
        (rc = load_cert(cert_file, hint, &cert, err, errlen)) != FV_OK)
        goto done;
    if (key_file != NULL) {
        if ((rc = load_key(key_file, hint, &key, err, errlen)) != FV_OK ||
            (rc = check_key_matches(cert, key, cert_file, key_file, err, errlen)) != FV_OK)
            goto done;
        warn_if_key_exposed(key_file, warnings, sizeof warnings);
    }
    snprintf(hint, sizeof hint,
             "remove it and its key, then run 'fleetvault certs device %s ID' again", dir);
    if ((rc = check_times(cert, cert_file, hint, err, errlen)) != FV_OK ||
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
