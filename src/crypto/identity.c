/*
 * identity.c - the device identity read from a verified client certificate
 * (fv_identity_from_cert), and the client types this server knows.
 *
 * Identity rules (fv_identity_from_cert; the leaf must already be verified by the caller):
 *   I1. The subject holds exactly one CN; it is UTF-8 convertible and has no NUL byte.
 *   I2. Device id = CN with every '.' replaced by '-'; it must pass fv_device_id_valid.
 *   I3. The EKU must not contain 1.3.6.1.4.1.49279.2.5.1.1 (Wi-Fi EAP certificates).
 *   I4. The EKU holds exactly one client-type OID 1.3.6.1.4.1.49279.2.{4|5}.T (repeats of the
 *       same OID are tolerated) and T is in the table below; 5 = production, 4 = engineering.
 *
 * Threading: no shared state besides OpenSSL's own (thread-safe in OpenSSL 3); OpenSSL's error
 * queue is per thread and is cleared before fv_identity_from_cert returns.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "crypto/certs_int.h"
#include "util/err.h"

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

void fv_certs__list_types(char *out, size_t outlen)
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
        fv_certs__escape(cn, (size_t)n, shown, sizeof shown);
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

int fv_tls_client_refused(void *store_ctx, size_t preverify_ok, char *why, size_t whylen,
                          int *depth)
{
    if (depth) *depth = -1;
    if (preverify_ok) return 0;
    X509_STORE_CTX *xs = store_ctx;
    int e = xs ? X509_STORE_CTX_get_error(xs) : X509_V_ERR_UNSPECIFIED;
    if (why && whylen) snprintf(why, whylen, "%s", X509_verify_cert_error_string(e));
    if (depth && xs) *depth = X509_STORE_CTX_get_error_depth(xs);
    return 1;
}
