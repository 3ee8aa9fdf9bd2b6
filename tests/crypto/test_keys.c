/* test_keys.c - master key files, AES-256-GCM sealing (any altered byte is detected), the
 * keystore: persistence, wrong master key refused, shredding (rule K1), re-wrapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/keys.h"
#include "util/err.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fv-keys-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static void path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void test_kek_files(void **state)
{
    (void)state;
    char p[128], err[512];
    path(p, sizeof p, "k1");
    assert_int_equal(fv_kek_create(p, err, sizeof err), FV_OK);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(fv_kek_create(p, err, sizeof err), FV_EEXIST); /* never overwritten */
    struct fv_kek a, b;
    assert_int_equal(fv_kek_load(p, &a, err, sizeof err), FV_OK);
    assert_int_equal(strlen(a.id), 16);
    chmod(p, 0644);
    assert_int_equal(fv_kek_load(p, &b, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "chmod 600"));
    FILE *f = fopen(p, "w");
    fputs("not hex\n", f);
    fclose(f);
    chmod(p, 0600);
    assert_int_equal(fv_kek_load(p, &b, err, sizeof err), FV_EINVAL);
    setenv("FV_MASTER_KEY", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 1);
    assert_int_equal(fv_kek_load(NULL, &b, err, sizeof err), FV_OK);
    assert_int_equal(b.key[1], 0x11);
    unsetenv("FV_MASTER_KEY");
    assert_int_equal(fv_kek_load(NULL, &b, err, sizeof err), FV_ENOENT);
    assert_non_null(strstr(err, "keys init"));
}

static void test_seal_detects_every_altered_byte(void **state)
{
    (void)state;
    unsigned char key[FV_KEY_LEN] = {1, 2, 3};
    const char *msg = "Location 48.8566,2.3522";
    struct fv_buf s = {0}, o = {0};
    assert_int_equal(fv_seal(key, "aad", 3, msg, strlen(msg), &s), FV_OK);
    assert_int_equal(s.len, strlen(msg) + FV_SEAL_OVERHEAD);
    assert_null(memmem(s.data, s.len, "48.8566", 7));
    assert_int_equal(fv_open(key, "aad", 3, s.data, s.len, &o), FV_OK);
    assert_memory_equal(o.data, msg, strlen(msg));
    for (size_t i = 0; i < s.len; i++) {
        s.data[i] ^= 0x01;
        fv_buf_reset(&o);
        assert_int_equal(fv_open(key, "aad", 3, s.data, s.len, &o), FV_ECORRUPT);
        s.data[i] ^= 0x01;
    }
    fv_buf_reset(&o);
    assert_int_equal(fv_open(key, "aaX", 3, s.data, s.len, &o), FV_ECORRUPT);
    key[0] ^= 1;
    assert_int_equal(fv_open(key, "aad", 3, s.data, s.len, &o), FV_ECORRUPT);
    assert_int_equal(fv_open(key, "aad", 3, s.data, 27, &o), FV_ECORRUPT);
    fv_buf_free(&s);
    fv_buf_free(&o);
}

static void test_keystore(void **state)
{
    (void)state;
    char k1[128], k2[128], db[128], err[512];
    path(k1, sizeof k1, "m1");
    path(k2, sizeof k2, "m2");
    path(db, sizeof db, "catalog.db");
    fv_kek_create(k1, err, sizeof err);
    fv_kek_create(k2, err, sizeof err);
    struct fv_kek a, b;
    assert_int_equal(fv_kek_load(k1, &a, err, sizeof err), FV_OK);
    assert_int_equal(fv_kek_load(k2, &b, err, sizeof err), FV_OK);
    struct fv_keystore *ks;
    assert_int_equal(fv_keystore_open(db, &a, &ks, err, sizeof err), FV_OK);
    const unsigned char *d1, *d2;
    char ps[FV_PSEUDONYM_LEN + 1], p1[FV_PSEUDONYM_LEN + 1];
    const char *name;
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 0, &d1, ps), FV_ENOENT);
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 1, &d1, ps), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "VIN2", 1, &d2, ps), FV_OK);
    unsigned char saved[FV_KEY_LEN];
    memcpy(saved, d1, FV_KEY_LEN);
    /* K2: subjects are known by pseudonym; the name comes back only with the data key */
    assert_int_equal(fv_keystore_pseudonym(ks, "VIN1", p1), FV_OK);
    assert_int_equal(strlen(p1), FV_PSEUDONYM_LEN);
    assert_null(strstr(p1, "VIN1"));
    const unsigned char *d3;
    assert_int_equal(fv_keystore_subject(ks, p1, &d3, &name), FV_OK);
    assert_string_equal(name, "VIN1");
    assert_memory_equal(d3, saved, FV_KEY_LEN);
    assert_memory_not_equal(d1, d2, FV_KEY_LEN);
    fv_keystore_close(ks);
    /* the wrong master key is refused with both ids named */
    assert_int_equal(fv_keystore_open(db, &b, &ks, err, sizeof err), FV_ETLS);
    assert_non_null(strstr(err, a.id));
    assert_non_null(strstr(err, b.id));
    /* persisted, then re-wrapped under b: same data key, a no longer opens the catalog */
    assert_int_equal(fv_keystore_open(db, &a, &ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 0, &d1, ps), FV_OK);
    assert_memory_equal(d1, saved, FV_KEY_LEN);
    assert_int_equal(fv_keystore_rewrap(ks, &b, err, sizeof err), FV_OK);
    fv_keystore_close(ks);
    assert_int_equal(fv_keystore_open(db, &a, &ks, err, sizeof err), FV_ETLS);
    assert_int_equal(fv_keystore_open(db, &b, &ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 0, &d1, ps), FV_OK);
    assert_memory_equal(d1, saved, FV_KEY_LEN);
    assert_string_equal(ps, p1); /* pseudonyms survive master key rotation */
    /* shredding: gone at once, never re-created (K1), others untouched */
    assert_int_equal(fv_keystore_destroy(ks, "VIN1", err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 0, &d1, ps), FV_ESTATE);
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 1, &d1, ps), FV_ESTATE);
    assert_int_equal(fv_keystore_dek(ks, "VIN2", 0, &d2, ps), FV_OK);
    fv_keystore_close(ks);
    assert_int_equal(fv_keystore_open(db, &b, &ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "VIN1", 1, &d1, ps), FV_ESTATE);
    assert_int_equal(fv_keystore_subject(ks, p1, &d1, &name), FV_ESTATE);
    fv_keystore_close(ks);
    /* no name is anywhere in the catalog's files in plaintext */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "cat '%s'* | grep -c -a VIN >/dev/null", db);
    assert_int_not_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kek_files),
        cmocka_unit_test(test_seal_detects_every_altered_byte),
        cmocka_unit_test(test_keystore),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
