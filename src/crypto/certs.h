/*
 * certs.h - development PKI and device identity (certs.c: the PKI; identity.c: identity and
 * client types; certcheck.c: the checks of TLS files).
 *
 * Files made by `fleetvault certs` in a directory DIR:
 *   DIR/ca.crt, DIR/ca.key            the development CA (key mode 0600)
 *   DIR/server.crt, DIR/server.key    the server certificate, SAN DNS:localhost, IP:127.0.0.1
 *   DIR/devices/ID.crt, ID.key        a device certificate: CN = ID, EKU client-type OID
 * Keys are EC P-256 (small handshakes, small per-connection memory).
 *
 * Identity (docs/protocol.md): device id = leaf Subject CN with '.' -> '-'; client type from
 * the EKU OID 1.3.6.1.4.1.49279.2.{4|5}.T; OID 1.3.6.1.4.1.49279.2.5.1.1 (Wi-Fi EAP) and
 * certificates without a client-type OID are refused.
 *
 * Every function writes a message naming the file and the problem into err on failure
 * (expired, not yet valid, wrong CA, missing file, key does not match, CN not a valid id).
 * Thread-safe: no shared state besides OpenSSL's own.
 */
#ifndef FV_CRYPTO_CERTS_H
#define FV_CRYPTO_CERTS_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* Client types (the T of the OID) this server knows. */
#define FV_CT_VEHICLE_DEVICE       1
#define FV_CT_ENERGY_DEVICE        2
#define FV_CT_VEHICLE_BOARD_DEVICE 11
#define FV_CT_DAS_DEVICE           12
#define FV_CT_VEHICLE_SERVICE      14
#define FV_CT_DAS_SERVICE          15
#define FV_CT_ENERGY_SERVICE       16
#define FV_CT_ROBOTICS_DEVICE      28

#define FV_DEVICE_ID_MAX 64

struct fv_identity {
    char device_id[FV_DEVICE_ID_MAX + 1]; /* CN with '.' replaced by '-' */
    char client_type[32];                 /* e.g. "vehicle_device" */
    int type_code;                        /* T from the OID */
    int production;                       /* 1 for ...2.5.T, 0 for ...2.4.T (engineering) */
};

/* The server's TLS files in a certs directory DIR: DIR/server.crt, DIR/server.key and the
 * CA that signs devices, DIR/ca.crt (every mutual-TLS listener: devices, clip uploads). */
struct fv_server_files {
    char cert[4096], key[4096], ca[4096];
};
void fv_certs_server_files(const char *dir, struct fv_server_files *out);

/* Name of client type code T ("vehicle_device"), or NULL if unknown. */
const char *fv_client_type_name(int type_code);
/* Code of a client type name, or -1 if unknown. */
int fv_client_type_code(const char *name);

/* Is id a valid device id: 1..64 chars of [A-Za-z0-9_-]? */
int fv_device_id_valid(const char *id);

/* Creates DIR (0700) with ca.* and server.* unless they exist (then FV_EEXIST untouched).
 * DIR/ca.crt is written last: if it exists the PKI is complete; FV_EIO if a write fails. */
int fv_certs_init(const char *dir, char *err, size_t errlen);

/* Creates DIR/devices/ID.{crt,key} signed by DIR/ca.*; type_code as above. FV_EINVAL for an
 * invalid id or unknown type (before touching the disk), FV_EEXIST if ID.crt exists. */
int fv_certs_device(const char *dir, const char *id, int type_code, char *err, size_t errlen);

/* Checks DIR's CA and server files (present, readable, key matches, valid now, server chains
 * to the CA); used by `serve` at start-up so a bad setup fails with a clear message.
 * DIR/ca.key is optional (a server does not need it) but must match ca.crt when present.
 * Errors: FV_ENOENT missing file, FV_EIO unreadable, FV_ETLS anything wrong with the contents.
 * On FV_OK, err holds a one-line summary, followed by "\nwarning: ..." lines for problems that
 * do not stop a server (no SAN localhost/127.0.0.1, expiring within 30 days, key mode). */
int fv_certs_check_server(const char *dir, char *err, size_t errlen);

/* Checks a device certificate file (and key file, if not NULL) against DIR's CA, including
 * its identity (fv_identity_from_cert). Errors and the FV_OK summary as for the server. */
int fv_certs_check_device(const char *dir, const char *cert_file, const char *key_file, char *err,
                          size_t errlen);

/* Extracts the identity from a verified leaf certificate. FV_ETLS with a reason if refused.
 * Does not verify the certificate: pass the leaf of a chain the TLS layer verified. */
int fv_identity_from_cert(X509 *leaf, struct fv_identity *out, char *err, size_t errlen);

/* An in-memory CA for minting many device certificates quickly (the simulator). */
struct fv_ca;
/* Loads DIR/ca.{crt,key} (key must match, CA must be valid now); free with fv_ca_free.
 * Use one fv_ca per thread (or a lock): concurrent minting from one is not promised. */
int fv_ca_load(const char *dir, struct fv_ca **out, char *err, size_t errlen);
/* Mints a certificate + fresh key for id; caller owns *cert and *key (X509_free,
 * EVP_PKEY_free). Same extensions as fv_certs_device (production OID). FV_EINVAL for an
 * invalid id or unknown type_code; *cert and *key are NULL on failure. */
int fv_ca_mint(struct fv_ca *ca, const char *id, int type_code, X509 **cert, EVP_PKEY **key,
               char *err, size_t errlen);
void fv_ca_free(struct fv_ca *ca);

/* An OpenSSL PEM passphrase callback that never prompts (encrypted keys are refused). */
int fv_pem_no_passphrase(char *buf, int size, int rwflag, void *u);

/* The answer to libwebsockets' LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION (user:
 * the X509_STORE_CTX, len: OpenSSL's preverify result): lws takes the callback's 0 as
 * "verified", so a failed verification must be answered non-zero, or any certificate would
 * be accepted. Returns 1 (refuse) with OpenSSL's reason in why and the failing certificate's
 * depth in *depth (may be NULL), or 0 (verified). Every mutual-TLS listener answers with it. */
int fv_tls_client_refused(void *store_ctx, size_t preverify_ok, char *why, size_t whylen,
                          int *depth);

#endif
