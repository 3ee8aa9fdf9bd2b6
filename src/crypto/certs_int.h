/*
 * certs_int.h - internal to the certificate code (src/crypto/certs.c, identity.c,
 * certcheck.c); not a public contract: callers use certs.h.
 *
 * Every helper here writes a message naming the file and the problem into err on failure, and
 * clears the thread's OpenSSL error queue after a failure it reports.
 *
 * Threading: no shared state besides OpenSSL's own (thread-safe in OpenSSL 3).
 */
#ifndef FV_CRYPTO_CERTS_INT_H
#define FV_CRYPTO_CERTS_INT_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "crypto/certs.h"

#define FV_CERTS_PATH_MAX 4096

#define FV_OID_CLIENT_PREFIX "1.3.6.1.4.1.49279.2."
#define FV_OID_WIFI_EAP      "1.3.6.1.4.1.49279.2.5.1.1"

#define FV_HINT_INIT_FMT "run 'fleetvault certs init %s'"

/* identity.c: "vehicle_device (1), energy_device (2), ..." for messages. */
void fv_certs__list_types(char *out, size_t outlen);

/* certcheck.c: reading files and checking what they hold. */
/* The reason of the newest OpenSSL error ("no start line"), then clears the thread's queue. */
const char *fv_certs__ossl_reason(char *buf, size_t len);
/* Copies untrusted bytes for a message: printable ASCII kept, the rest as \xNN, '...' if cut. */
void fv_certs__escape(const unsigned char *s, size_t n, char *out, size_t outlen);
/* out (FV_CERTS_PATH_MAX bytes) = "dir/name"; FV_EINVAL if too long. */
int fv_certs__join(char *out, const char *dir, const char *name, char *err, size_t errlen);
/* Load one PEM certificate / unencrypted private key; a missing file's message ends with hint.
 * The caller frees *out. */
int fv_certs__load_cert(const char *path, const char *hint, X509 **out, char *err, size_t errlen);
int fv_certs__load_key(const char *path, const char *hint, EVP_PKEY **out, char *err,
                       size_t errlen);
/* FV_ETLS unless key is cert's private key. */
int fv_certs__check_key_matches(X509 *cert, EVP_PKEY *key, const char *cert_path,
                                const char *key_path, char *err, size_t errlen);
/* FV_ETLS unless ca is a CA certificate (dir: for the hint). */
int fv_certs__check_is_ca(X509 *ca, const char *path, const char *dir, char *err, size_t errlen);
/* Valid now? renew says what to run for a new certificate. */
int fv_certs__check_times(X509 *cert, const char *path, const char *renew, char *err,
                          size_t errlen);

#endif
