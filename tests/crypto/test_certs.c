/* test_certs.c - the development PKI (files, modes, refusal to overwrite), device identity rules
 * I1-I4 of src/crypto/certs.c, and the messages of the certificate checks. Odd certificates
 * (expired, Wi-Fi EAP, no client-type OID, bad CN) are built here with OpenSSL directly, so the
 * code under test is not used to make its own test inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "crypto/certs.h"
#include "util/err.h"

#define DAY (24L * 3600)
#define VIN "5YJ3E1EA7KF000001"

struct fixture {
    char tmp[64];  /* the mkdtemp directory, removed afterwards */
    char pki[128]; /* tmp/pki, made by fv_certs_init in most tests */
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL) return -1;
    snprintf(f->tmp, sizeof f->tmp, "/tmp/fv-certs-XXXXXX");
    if (mkdtemp(f->tmp) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->pki, sizeof f->pki, "%s/pki", f->tmp);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void path_in(char *out, size_t len, const char *dir, const char *name)
{
    assert_true(snprintf(out, len, "%s/%s", dir, name) < (int)len);
}

static void init_pki(const struct fixture *f)
{
    char err[512];
    int rc = fv_certs_init(f->pki, err, sizeof err);
    if (rc != FV_OK) fail_msg("fv_certs_init: %s", err);
}

static X509 *read_cert(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    EVP_PKEY *k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(k);
    return k;
}

static void write_cert(const char *path, X509 *x)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_X509(fp, x), 1);
    assert_int_equal(fclose(fp), 0);
}

static void write_key(const char *path, EVP_PKEY *k)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(fclose(fp), 0);
}

static EVP_PKEY *new_key(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(k);
    return k;
}

/* A certificate for key with subject CN cn and, if eku is not NULL, an extended key usage in
 * nconf syntax; valid from now+nb_s to now+na_s; signed by issuer_key (self-signed if NULL).
 * san, if not NULL, adds a subjectAltName. The CN is set as a raw UTF8String, bypassing
 * OpenSSL's 64-character upper bound, so that overlong CNs can be tested. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *eku, const char *san, long nb_s,
                       long na_s, X509 *issuer, EVP_PKEY *issuer_key)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_true(X509_set_version(x, X509_VERSION_3));
    assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), 4242));
    X509_NAME *name = X509_get_subject_name(x);
    assert_true(X509_NAME_add_entry_by_txt(name, "CN", V_ASN1_UTF8STRING, (const unsigned char *)cn,
                                           -1, -1, 0));
    assert_true(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name));
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), nb_s));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), na_s));
    assert_true(X509_set_pubkey(x, key));
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    const struct {
        int nid;
        const char *value;
    } exts[] = {{NID_basic_constraints, "critical,CA:FALSE"},
                {NID_ext_key_usage, eku},
                {NID_subject_alt_name, san}};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        if (exts[i].value == NULL) continue;
        X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &ctx, exts[i].nid, exts[i].value);
        assert_non_null(e);
        assert_true(X509_add_ext(x, e, -1));
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

/* Runs fv_identity_from_cert on a self-signed certificate with the given CN and EKU. */
static int identity_of(const char *cn, const char *eku, struct fv_identity *id, char *err,
                       size_t errlen)
{
    EVP_PKEY *k = new_key();
    X509 *x = make_cert(k, cn, eku, NULL, -60, DAY, NULL, NULL);
    int rc = fv_identity_from_cert(x, id, err, errlen);
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

static void assert_mode(const char *path, unsigned mode)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, mode);
}

static void test_client_types_and_ids(void **state)
{
    (void)state;
    assert_string_equal(fv_client_type_name(FV_CT_VEHICLE_DEVICE), "vehicle_device");
    assert_string_equal(fv_client_type_name(FV_CT_ROBOTICS_DEVICE), "robotics_device");
    assert_null(fv_client_type_name(3));
    assert_int_equal(fv_client_type_code("das_service"), FV_CT_DAS_SERVICE);
    assert_int_equal(fv_client_type_code("energy_device"), FV_CT_ENERGY_DEVICE);
    assert_int_equal(fv_client_type_code("nope"), -1);
    assert_int_equal(fv_client_type_code(NULL), -1);

    char id64[66];
    memset(id64, 'a', 64);
    id64[64] = '\0';
    assert_true(fv_device_id_valid(VIN));
    assert_true(fv_device_id_valid("a-b_C9"));
    assert_true(fv_device_id_valid(id64));
    id64[64] = 'a';
    id64[65] = '\0';
    assert_false(fv_device_id_valid(id64));
    assert_false(fv_device_id_valid(""));
    assert_false(fv_device_id_valid(NULL));
    assert_false(fv_device_id_valid("a.b"));
    assert_false(fv_device_id_valid("x y"));
    assert_false(fv_device_id_valid("../etc"));
}

static void test_init_creates_files(void **state)
{
    struct fixture *f = *state;
    char p[256], err[1024];
    init_pki(f);
    assert_mode(f->pki, 0700);
    path_in(p, sizeof p, f->pki, "ca.key");
    assert_mode(p, 0600);
    path_in(p, sizeof p, f->pki, "server.key");
    assert_mode(p, 0600);
    path_in(p, sizeof p, f->pki, "ca.crt");
    X509 *ca = read_cert(p);
    assert_true(X509_check_ca(ca) >= 1);
    path_in(p, sizeof p, f->pki, "server.crt");
    X509 *srv = read_cert(p);
    assert_int_equal(X509_check_host(srv, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(srv, "127.0.0.1", 0), 1);
    X509_free(srv);
    X509_free(ca);
    /* No temp files left behind. */
    path_in(p, sizeof p, f->pki, "ca.crt.tmp");
    assert_int_not_equal(access(p, F_OK), 0);

    assert_int_equal(fv_certs_check_server(f->pki, err, sizeof err), FV_OK);
    assert_non_null(strstr(err, "server.crt"));
    assert_null(strstr(err, "warning"));
}

static void test_init_twice_is_eexist(void **state)
{
    struct fixture *f = *state;
    char p[256], err[1024];
    init_pki(f);
    path_in(p, sizeof p, f->pki, "ca.crt");
    X509 *before = read_cert(p);
    assert_int_equal(fv_certs_init(f->pki, err, sizeof err), FV_EEXIST);
    assert_non_null(strstr(err, "already exists"));
    X509 *after = read_cert(p);
    assert_int_equal(X509_cmp(before, after), 0);
    X509_free(before);
    X509_free(after);
}

static void test_device_roundtrip(void **state)
{
    struct fixture *f = *state;
    char devdir[256], crt[320], key[320], err[1024];
    init_pki(f);
    assert_int_equal(fv_certs_device(f->pki, VIN, FV_CT_VEHICLE_DEVICE, err, sizeof err), FV_OK);
    path_in(devdir, sizeof devdir, f->pki, "devices");
    path_in(crt, sizeof crt, devdir, VIN ".crt");
    path_in(key, sizeof key, devdir, VIN ".key");
    assert_mode(key, 0600);

    X509 *x = read_cert(crt);
    struct fv_identity id;
    assert_int_equal(fv_identity_from_cert(x, &id, err, sizeof err), FV_OK);
    assert_string_equal(id.device_id, VIN);
    assert_string_equal(id.client_type, "vehicle_device");
    assert_int_equal(id.type_code, FV_CT_VEHICLE_DEVICE);
    assert_int_equal(id.production, 1);
    X509_free(x);

    assert_int_equal(fv_certs_check_device(f->pki, crt, key, err, sizeof err), FV_OK);
    assert_non_null(strstr(err, "vehicle_device." VIN));
    assert_non_null(strstr(err, "key matches"));

    /* Issuing the same id again changes nothing. */
    assert_int_equal(fv_certs_device(f->pki, VIN, FV_CT_VEHICLE_DEVICE, err, sizeof err),
                     FV_EEXIST);
    /* Bad arguments are refused before anything is written. */
    assert_int_equal(fv_certs_device(f->pki, "CAR2", 99, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "unknown client type 99"));
    assert_int_equal(fv_certs_device(f->pki, "bad id", 1, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "not a valid device id"));
    path_in(crt, sizeof crt, devdir, "CAR2.key");
    assert_int_not_equal(access(crt, F_OK), 0);
}

static void test_mint_energy_device(void **state)
{
    struct fixture *f = *state;
    char err[1024];
    struct fv_ca *ca = NULL;
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    init_pki(f);
    assert_int_equal(fv_ca_load(f->pki, &ca, err, sizeof err), FV_OK);
    assert_int_equal(fv_ca_mint(ca, "site-42", FV_CT_ENERGY_DEVICE, &x, &k, err, sizeof err),
                     FV_OK);
    assert_int_equal(X509_check_private_key(x, k), 1);
    struct fv_identity id;
    assert_int_equal(fv_identity_from_cert(x, &id, err, sizeof err), FV_OK);
    assert_string_equal(id.device_id, "site-42");
    assert_string_equal(id.client_type, "energy_device");
    assert_int_equal(id.type_code, FV_CT_ENERGY_DEVICE);
    X509_free(x);
    EVP_PKEY_free(k);

    assert_int_equal(fv_ca_mint(ca, "site-43", 3, &x, &k, err, sizeof err), FV_EINVAL);
    assert_null(x);
    assert_null(k);
    fv_ca_free(ca);

    /* No CA yet in another directory: the message says how to make one. */
    char empty[128];
    path_in(empty, sizeof empty, f->tmp, "none");
    assert_int_equal(fv_ca_load(empty, &ca, err, sizeof err), FV_ENOENT);
    assert_null(ca);
    assert_non_null(strstr(err, "no such file - run 'fleetvault certs init"));
}

static void test_cn_dots_become_dashes(void **state)
{
    (void)state;
    struct fv_identity id;
    char err[512];
    assert_int_equal(
        identity_of("my.device.7", "clientAuth,1.3.6.1.4.1.49279.2.4.1", &id, err, sizeof err),
        FV_OK);
    assert_string_equal(id.device_id, "my-device-7");
    assert_string_equal(id.client_type, "vehicle_device");
    assert_int_equal(id.production, 0); /* ...2.4.T: engineering */
}

static void test_wifi_eap_rejected(void **state)
{
    (void)state;
    struct fv_identity id;
    char err[512];
    assert_int_equal(identity_of(VIN, "clientAuth,1.3.6.1.4.1.49279.2.5.1.1", &id, err, sizeof err),
                     FV_ETLS);
    assert_non_null(strstr(err, "Wi-Fi EAP"));
    /* Also when a valid client-type OID sits next to it. */
    assert_int_equal(
        identity_of(VIN, "1.3.6.1.4.1.49279.2.5.1,1.3.6.1.4.1.49279.2.5.1.1", &id, err, sizeof err),
        FV_ETLS);
    assert_non_null(strstr(err, "Wi-Fi EAP"));
}

static void test_no_client_type_rejected(void **state)
{
    (void)state;
    struct fv_identity id;
    char err[512];
    const char *want = "certificate has no fleet client-type extended key usage "
                       "(1.3.6.1.4.1.49279.2.{4|5}.T)";
    assert_int_equal(identity_of(VIN, "clientAuth", &id, err, sizeof err), FV_ETLS);
    assert_string_equal(err, want);
    assert_int_equal(identity_of(VIN, NULL, &id, err, sizeof err), FV_ETLS);
    assert_string_equal(err, want);
    assert_int_equal(identity_of(VIN, "1.3.6.1.4.1.49279.2.5.99", &id, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, "unknown client type 99"));
    assert_int_equal(
        identity_of(VIN, "1.3.6.1.4.1.49279.2.5.1,1.3.6.1.4.1.49279.2.5.2", &id, err, sizeof err),
        FV_ETLS);
    assert_non_null(strstr(err, "two client types"));
}

static void test_invalid_cn_rejected(void **state)
{
    (void)state;
    struct fv_identity id;
    char err[512], cn[80];
    assert_int_equal(identity_of("x y", "1.3.6.1.4.1.49279.2.5.1", &id, err, sizeof err), FV_ETLS);
    assert_string_equal(err,
                        "certificate CN 'x y' is not a valid device id (1-64 of A-Z a-z 0-9 - _)");
    memset(cn, 'A', 65);
    cn[65] = '\0';
    assert_int_equal(identity_of(cn, "1.3.6.1.4.1.49279.2.5.1", &id, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, "is not a valid device id"));
    cn[64] = '\0';
    assert_int_equal(identity_of(cn, "1.3.6.1.4.1.49279.2.5.1", &id, err, sizeof err), FV_OK);
    /* Control characters are escaped in the message, never printed raw. */
    assert_int_equal(identity_of("a\nb", "1.3.6.1.4.1.49279.2.5.1", &id, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, "'a\\x0ab'"));
}

static void test_other_ca_detected(void **state)
{
    struct fixture *f = *state;
    char other[128], crt[320], key[320], err[1024];
    init_pki(f);
    path_in(other, sizeof other, f->tmp, "other");
    assert_int_equal(fv_certs_init(other, err, sizeof err), FV_OK);
    assert_int_equal(fv_certs_device(other, "OTHER1", FV_CT_VEHICLE_DEVICE, err, sizeof err),
                     FV_OK);
    path_in(crt, sizeof crt, other, "devices/OTHER1.crt");
    path_in(key, sizeof key, other, "devices/OTHER1.key");
    assert_int_equal(fv_certs_check_device(other, crt, key, err, sizeof err), FV_OK);
    assert_int_equal(fv_certs_check_device(f->pki, crt, key, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, "not signed by this CA"));
    assert_non_null(strstr(err, "OTHER1.crt"));

    /* A server certificate from another CA is refused the same way. */
    char p[256];
    path_in(p, sizeof p, f->pki, "server.crt");
    path_in(crt, sizeof crt, other, "server.crt");
    X509 *x = read_cert(crt);
    write_cert(p, x);
    X509_free(x);
    path_in(p, sizeof p, f->pki, "server.key");
    path_in(key, sizeof key, other, "server.key");
    EVP_PKEY *k = read_key(key);
    write_key(p, k);
    EVP_PKEY_free(k);
    assert_int_equal(fv_certs_check_server(f->pki, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, "not signed by this CA"));
}

static void test_mismatched_key_detected(void **state)
{
    struct fixture *f = *state;
    char crt[320], key[320], err[1024];
    init_pki(f);
    assert_int_equal(fv_certs_device(f->pki, "A1", 1, err, sizeof err), FV_OK);
    assert_int_equal(fv_certs_device(f->pki, "B2", 1, err, sizeof err), FV_OK);
    path_in(crt, sizeof crt, f->pki, "devices/A1.crt");
    path_in(key, sizeof key, f->pki, "devices/B2.key");
    assert_int_equal(fv_certs_check_device(f->pki, crt, key, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, "does not match"));
    assert_non_null(strstr(err, "B2.key"));
    /* Certificate and key given the wrong way round. */
    path_in(key, sizeof key, f->pki, "devices/A1.key");
    assert_int_equal(fv_certs_check_device(f->pki, key, crt, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, "swapped"));
    /* The server's key replaced by another one. */
    char p[256];
    path_in(p, sizeof p, f->pki, "server.key");
    EVP_PKEY *k = new_key();
    write_key(p, k);
    EVP_PKEY_free(k);
    assert_int_equal(fv_certs_check_server(f->pki, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, "server.key: private key does not match"));
}

static void test_expired_and_not_yet_valid(void **state)
{
    struct fixture *f = *state;
    char p[256], crt[256], err[1024];
    init_pki(f);
    path_in(p, sizeof p, f->pki, "ca.crt");
    X509 *ca = read_cert(p);
    path_in(p, sizeof p, f->pki, "ca.key");
    EVP_PKEY *cak = read_key(p);
    EVP_PKEY *k = new_key();
    const char *eku = "clientAuth,1.3.6.1.4.1.49279.2.5.1";

    X509 *old = make_cert(k, "OLD1", eku, NULL, -400 * DAY, -DAY, ca, cak);
    path_in(crt, sizeof crt, f->tmp, "old.crt");
    write_cert(crt, old);
    assert_int_equal(fv_certs_check_device(f->pki, crt, NULL, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, "old.crt: expired on 20"));
    assert_non_null(strstr(err, "Z (it is now"));

    X509 *future = make_cert(k, "NEW1", eku, NULL, DAY, 400 * DAY, ca, cak);
    path_in(crt, sizeof crt, f->tmp, "future.crt");
    write_cert(crt, future);
    assert_int_equal(fv_certs_check_device(f->pki, crt, NULL, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, "not yet valid"));

    /* Signed by the CA and current, but without a client-type OID: identity refused. */
    X509 *plain = make_cert(k, "PLAIN1", "clientAuth", NULL, -60, DAY, ca, cak);
    path_in(crt, sizeof crt, f->tmp, "plain.crt");
    write_cert(crt, plain);
    assert_int_equal(fv_certs_check_device(f->pki, crt, NULL, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, "plain.crt: certificate has no fleet client-type"));

    X509_free(plain);
    X509_free(future);
    X509_free(old);
    EVP_PKEY_free(k);
    EVP_PKEY_free(cak);
    X509_free(ca);
}

static void test_server_check_messages(void **state)
{
    struct fixture *f = *state;
    char p[256], err[1024];
    /* Nothing there yet. */
    assert_int_equal(fv_certs_check_server(f->pki, err, sizeof err), FV_ENOENT);
    assert_non_null(strstr(err, "/pki/ca.crt: no such file - run 'fleetvault certs init "));

    init_pki(f);
    path_in(p, sizeof p, f->pki, "server.key");
    assert_int_equal(unlink(p), 0);
    assert_int_equal(fv_certs_check_server(f->pki, err, sizeof err), FV_ENOENT);
    assert_non_null(strstr(err, "/pki/server.key: no such file - run 'fleetvault certs init"));

    /* Not PEM at all. */
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs("hello\n", fp);
    fclose(fp);
    assert_int_equal(fv_certs_check_server(f->pki, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, "server.key: not PEM"));

    /* A server certificate without SAN localhost is accepted, with a warning. */
    EVP_PKEY *sk = new_key();
    write_key(p, sk);
    assert_int_equal(chmod(p, 0600), 0);
    path_in(p, sizeof p, f->pki, "ca.crt");
    X509 *ca = read_cert(p);
    path_in(p, sizeof p, f->pki, "ca.key");
    EVP_PKEY *cak = read_key(p);
    X509 *srv =
        make_cert(sk, "fleet.example", "serverAuth", "DNS:fleet.example", -60, 100 * DAY, ca, cak);
    path_in(p, sizeof p, f->pki, "server.crt");
    write_cert(p, srv);
    assert_int_equal(fv_certs_check_server(f->pki, err, sizeof err), FV_OK);
    assert_non_null(strstr(err, "\nwarning: "));
    assert_non_null(strstr(err, "DNS:localhost or IP:127.0.0.1"));
    X509_free(srv);
    X509_free(ca);
    EVP_PKEY_free(cak);
    EVP_PKEY_free(sk);
}

/* The command itself, when ctest says where the binary is (FV_BIN). */
static int run(const char *fmt, const char *a, const char *b)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, fmt, getenv("FV_BIN"), a, b);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void **state)
{
    struct fixture *f = *state;
    if (getenv("FV_BIN") == NULL) skip();
    const char *q = " >/dev/null 2>&1";
    char fmt[256];
    snprintf(fmt, sizeof fmt, "%%s certs init %%s%%s%s", q);
    assert_int_equal(run(fmt, f->pki, ""), 0);
    assert_int_equal(run(fmt, f->pki, ""), 1);
    snprintf(fmt, sizeof fmt, "%%s certs device %%s %%s --type energy_device%s", q);
    assert_int_equal(run(fmt, f->pki, "site-1"), 0);
    assert_int_equal(run(fmt, f->pki, "bad.id"), 1);
    snprintf(fmt, sizeof fmt, "%%s certs check %%s %%s%s", q);
    assert_int_equal(run(fmt, f->pki, ""), 0);
    assert_int_equal(run(fmt, f->pki, "site-1"), 0);
    assert_int_equal(run(fmt, f->pki, "/nonexistent.crt"), 1);
    snprintf(fmt, sizeof fmt, "%%s certs device %%s %%s --type toaster%s", q);
    assert_int_equal(run(fmt, f->pki, "x"), 2);
    snprintf(fmt, sizeof fmt, "%%s certs %%s%%s --help%s", q);
    assert_int_equal(run(fmt, "check", ""), 0);
    snprintf(fmt, sizeof fmt, "%%s certs %%s%%s%s", q);
    assert_int_equal(run(fmt, "frobnicate", ""), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_types_and_ids),
        cmocka_unit_test_setup_teardown(test_init_creates_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_twice_is_eexist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mint_energy_device, setup, teardown),
        cmocka_unit_test(test_cn_dots_become_dashes),
        cmocka_unit_test(test_wifi_eap_rejected),
        cmocka_unit_test(test_no_client_type_rejected),
        cmocka_unit_test(test_invalid_cn_rejected),
        cmocka_unit_test_setup_teardown(test_other_ca_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mismatched_key_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_and_not_yet_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_check_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
