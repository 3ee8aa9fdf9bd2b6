/*
 * certs.c - the development PKI behind `fleetvault certs`: the CA, server and device
 * certificates and their files, and the in-memory CA the simulator mints certificates with.
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
 * Identity (fv_identity_from_cert, client types) is in identity.c; reading PEM files and the
 * checks `serve` runs (fv_certs_check_*) are in certcheck.c; their shared helpers in
 * certs_int.h.
 *
 * Threading: no shared state besides OpenSSL's own (thread-safe in OpenSSL 3); OpenSSL's error
 * queue is per thread and is cleared after every failure reported here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "crypto/certs_int.h"
#include "os/fsio.h"
#include "util/err.h"

#define FV_CERTS_CA_CN       "fleetvault dev CA"
#define FV_CERTS_CA_DAYS     3650
#define FV_CERTS_SERVER_DAYS 730
#define FV_CERTS_DEVICE_DAYS 730
#define FV_CERTS_BACKDATE_S  300
/* Warn when a certificate has less than this left, so renewal is not a surprise outage. */

struct fv_ca {
    X509 *cert;
    EVP_PKEY *key;
};

/* One extension in nconf syntax ("critical,CA:TRUE"), added in order. */
struct ext {
    int nid;
    const char *value;
};

/* ---- building certificates ---------------------------------------------------------------- */

static EVP_PKEY *new_key(char *err, size_t errlen)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (key == NULL) {
        char why[160];
        fv_seterr(err, errlen, "EC P-256 key generation failed (%s)",
                  fv_certs__ossl_reason(why, sizeof why));
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
              rc == FV_ENOMEM ? "out of memory" : fv_certs__ossl_reason(why, sizeof why));
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
        fv_seterr(err, errlen, "%s: PEM encoding failed (%s)", path,
                  fv_certs__ossl_reason(why, sizeof why));
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

static int check_mint_args(const char *id, int type_code, char *err, size_t errlen)
{
    if (fv_client_type_name(type_code) == NULL) {
        char known[256];
        fv_certs__list_types(known, sizeof known);
        fv_seterr(err, errlen, "unknown client type %d; known types: %s", type_code, known);
        return FV_EINVAL;
    }
    if (!fv_device_id_valid(id)) {
        char shown[160];
        if (id == NULL)
            snprintf(shown, sizeof shown, "(null)");
        else
            fv_certs__escape((const unsigned char *)id, strlen(id), shown, sizeof shown);
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
    if ((rc = fv_certs__join(crt, dir, "ca.crt", err, errlen)) != FV_OK ||
        (rc = fv_certs__join(keyp, dir, "ca.key", err, errlen)) != FV_OK)
        goto done;
    snprintf(hint, sizeof hint, FV_HINT_INIT_FMT, dir);
    ca = calloc(1, sizeof *ca);
    if (ca == NULL) {
        fv_seterr(err, errlen, "out of memory loading the CA in %s", dir);
        rc = FV_ENOMEM;
        goto done;
    }
    if ((rc = fv_certs__load_cert(crt, hint, &ca->cert, err, errlen)) != FV_OK ||
        (rc = fv_certs__load_key(keyp, hint, &ca->key, err, errlen)) != FV_OK ||
        (rc = fv_certs__check_key_matches(ca->cert, ca->key, crt, keyp, err, errlen)) != FV_OK ||
        (rc = fv_certs__check_is_ca(ca->cert, crt, dir, err, errlen)) != FV_OK)
        goto done;
    snprintf(hint, sizeof hint,
             "the CA can no longer sign; remove %s and " FV_HINT_INIT_FMT
             " again (then re-issue every certificate)",
             dir, dir);
    if ((rc = fv_certs__check_times(ca->cert, crt, hint, err, errlen)) != FV_OK) goto done;
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
    if ((rc = fv_certs__join(ca_crt, dir, "ca.crt", err, errlen)) != FV_OK ||
        (rc = fv_certs__join(ca_key, dir, "ca.key", err, errlen)) != FV_OK ||
        (rc = fv_certs__join(srv_crt, dir, "server.crt", err, errlen)) != FV_OK ||
        (rc = fv_certs__join(srv_key, dir, "server.key", err, errlen)) != FV_OK)
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
    if ((rc = fv_certs__join(devdir, dir, "devices", err, errlen)) != FV_OK) goto done;
    snprintf(name, sizeof name, "%s.crt", id);
    if ((rc = fv_certs__join(crt, devdir, name, err, errlen)) != FV_OK) goto done;
    snprintf(name, sizeof name, "%s.key", id);
    if ((rc = fv_certs__join(keyp, devdir, name, err, errlen)) != FV_OK) goto done;
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

void fv_certs_server_files(const char *dir, struct fv_server_files *out)
{
    snprintf(out->cert, sizeof out->cert, "%s/server.crt", dir);
    snprintf(out->key, sizeof out->key, "%s/server.key", dir);
    snprintf(out->ca, sizeof out->ca, "%s/ca.crt", dir);
}
