/* test_jskeys.c - cluster/jskeys.h's value encoding (docs/formats.md, "Keys in the KV
 * bucket"): a value opens only with the master key that wrapped it, under the entry it was
 * written for, as the kind it was written as; anything short, of another format or version,
 * or altered in any byte is refused with a message saying which (J4). The layout is checked
 * byte by byte against the documentation, with OpenSSL alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "cluster/jskeys.h"
#include "util/err.h"

static void kek_of(struct fv_kek *k, unsigned char fill)
{
    memset(k, 0, sizeof *k);
    memset(k->key, fill, FV_KEY_LEN);
    snprintf(k->id, sizeof k->id, "%02x%02x%02x%02x%02x%02x%02x%02x", fill, fill, fill, fill, 1, 2,
             3, 4);
}

static const char PSEUDO[] = "0123456789abcdef0123456789abcdef";

static void subject_round_trip(void **state)
{
    (void)state;
    struct fv_kek kek;
    kek_of(&kek, 7);
    unsigned char dek[FV_KEY_LEN], got[FV_KEY_LEN];
    for (int i = 0; i < FV_KEY_LEN; i++)
        dek[i] = (unsigned char)(i * 3);
    struct fv_buf v = {0};
    assert_int_equal(fv_jskeys_encode_subject(&kek, PSEUDO, dek, "5YJ3E1EA7KF000001#2", &v), FV_OK);
    assert_int_equal(v.len, FV_JSKEYS_HEAD + FV_SEAL_OVERHEAD + FV_KEY_LEN + 19);
    assert_memory_equal(v.data, "FVKV\x01S", 6);
    assert_memory_equal(v.data + 6, kek.id, 16);
    assert_null(memmem(v.data, v.len, "5YJ3E1EA7KF", 11)); /* the name never in clear */
    char name[FV_NAME_MAX + 1], err[256];
    assert_int_equal(
        fv_jskeys_decode_subject(&kek, PSEUDO, v.data, v.len, got, name, err, sizeof err), FV_OK);
    assert_memory_equal(got, dek, FV_KEY_LEN);
    assert_string_equal(name, "5YJ3E1EA7KF000001#2");

    /* As documented: AES-256-GCM under the master key, nonce = bytes 22..33, tag = the last
     * 16, associated data = the 22-byte head || "subject." || the pseudonym. */
    unsigned char aad[FV_JSKEYS_HEAD + 64], pt[128];
    size_t an = 0;
    memcpy(aad, v.data, FV_JSKEYS_HEAD);
    an = FV_JSKEYS_HEAD;
    an += (size_t)sprintf((char *)aad + an, "subject.%s", PSEUDO);
    size_t ctn = v.len - FV_JSKEYS_HEAD - FV_SEAL_OVERHEAD;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l = 0, l2 = 0;
    assert_int_equal(EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, kek.key, v.data + 22), 1);
    assert_int_equal(EVP_DecryptUpdate(c, NULL, &l, aad, (int)an), 1);
    assert_int_equal(EVP_DecryptUpdate(c, pt, &l, v.data + 34, (int)ctn), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, v.data + v.len - 16), 1);
    assert_int_equal(EVP_DecryptFinal_ex(c, pt + l, &l2), 1);
    EVP_CIPHER_CTX_free(c);
    assert_int_equal(l + l2, FV_KEY_LEN + 19);
    assert_memory_equal(pt, dek, FV_KEY_LEN);
    assert_memory_equal(pt + FV_KEY_LEN, "5YJ3E1EA7KF000001#2", 19);
    fv_buf_free(&v);

    /* names: empty and too long refused before anything is written */
    char longname[FV_NAME_MAX + 2];
    memset(longname, 'A', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(fv_jskeys_encode_subject(&kek, PSEUDO, dek, "", &v), FV_EINVAL);
    assert_int_equal(fv_jskeys_encode_subject(&kek, PSEUDO, dek, longname, &v), FV_EINVAL);
    assert_int_equal(v.len, 0);
    fv_buf_free(&v);
}

static void expect_refused(const struct fv_kek *kek, const char *pseudo, const unsigned char *v,
                           size_t n, const char *says)
{
    unsigned char dek[FV_KEY_LEN];
    char name[FV_NAME_MAX + 1], err[256] = "";
    assert_int_equal(fv_jskeys_decode_subject(kek, pseudo, v, n, dek, name, err, sizeof err),
                     FV_ECORRUPT);
    if (strstr(err, says) == NULL) fail_msg("expected \"%s\", got \"%s\"", says, err);
    assert_non_null(strstr(err, pseudo)); /* names the entry (by pseudonym) */
}

static void bad_values_refused(void **state)
{
    (void)state;
    struct fv_kek kek, other;
    kek_of(&kek, 7);
    kek_of(&other, 9);
    unsigned char dek[FV_KEY_LEN] = {1};
    struct fv_buf v = {0};
    assert_int_equal(fv_jskeys_encode_subject(&kek, PSEUDO, dek, "VIN1", &v), FV_OK);
    unsigned char w[256];
    assert_true(v.len <= sizeof w);

    expect_refused(&kek, PSEUDO, v.data, 0, "not a fleetvault key value");
    expect_refused(&kek, PSEUDO, v.data, FV_JSKEYS_HEAD + FV_SEAL_OVERHEAD - 1,
                   "not a fleetvault key value");
    expect_refused(&kek, PSEUDO, (const unsigned char *)"{\"json\": \"value from someone\"}",
                   31 + 22, "not a fleetvault key value");
    memcpy(w, v.data, v.len);
    w[4] = 2;
    expect_refused(&kek, PSEUDO, w, v.len, "value format version 2; this build reads 1");
    memcpy(w, v.data, v.len);
    w[5] = 'P';
    expect_refused(&kek, PSEUDO, w, v.len, "a value of kind 'P' where 'S' belongs");
    expect_refused(&other, PSEUDO, v.data, v.len, "every node of a cluster must be given");
    /* moved to another subject's entry */
    expect_refused(&kek, "fedcba9876543210fedcba9876543210", v.data, v.len, "does not open");
    /* the master key id in the head rewritten to the reader's: the seal still refuses */
    struct fv_kek same_id = other;
    memcpy(same_id.id, kek.id, sizeof kek.id);
    expect_refused(&same_id, PSEUDO, v.data, v.len, "does not open");
    /* every byte after the head altered, each alone */
    for (size_t i = FV_JSKEYS_HEAD; i < v.len; i++) {
        memcpy(w, v.data, v.len);
        w[i] ^= 0x40;
        expect_refused(&kek, PSEUDO, w, v.len, "does not open");
    }
    /* cut short anywhere */
    for (size_t n = FV_JSKEYS_HEAD + FV_SEAL_OVERHEAD; n < v.len; n++)
        expect_refused(&kek, PSEUDO, v.data, n, "does not open");
    fv_buf_free(&v);

    /* a well-sealed value whose content is not a key and a name */
    unsigned char shortpt[FV_KEY_LEN] = {0};
    char key[80];
    snprintf(key, sizeof key, "subject.%s", PSEUDO);
    assert_int_equal(fv_jskeys_wrap(&kek, key, FV_JSKEYS_KIND_SUBJ, shortpt, sizeof shortpt, &v),
                     FV_OK);
    expect_refused(&kek, PSEUDO, v.data, v.len, "a key and a name expected");
    fv_buf_free(&v);

    /* the pseudonym key's value opens only as its own kind and entry */
    struct fv_buf pt = {0};
    char err[256];
    assert_int_equal(
        fv_jskeys_wrap(&kek, FV_JSKEYS_PKEY_NAME, FV_JSKEYS_KIND_PKEY, dek, FV_KEY_LEN, &v), FV_OK);
    assert_int_equal(fv_jskeys_unwrap(&kek, FV_JSKEYS_PKEY_NAME, FV_JSKEYS_KIND_PKEY, v.data, v.len,
                                      &pt, err, sizeof err),
                     FV_OK);
    assert_int_equal(pt.len, FV_KEY_LEN);
    assert_memory_equal(pt.data, dek, FV_KEY_LEN);
    fv_buf_free(&pt);
    assert_int_equal(fv_jskeys_unwrap(&kek, FV_JSKEYS_PKEY_NAME, FV_JSKEYS_KIND_SUBJ, v.data, v.len,
                                      &pt, err, sizeof err),
                     FV_ECORRUPT);
    assert_int_equal(fv_jskeys_unwrap(&kek, "pseudonym-key2", FV_JSKEYS_KIND_PKEY, v.data, v.len,
                                      &pt, err, sizeof err),
                     FV_ECORRUPT);
    fv_buf_free(&pt);
    fv_buf_free(&v);
}

/* J6: a node given a previous master key opens values under either key (the head names
 * which) and wraps with its own; fv_jskeys_rewrap moves a value to another key with its kind,
 * entry and plaintext unchanged; a value under neither key is refused naming both ids. */
static void previous_key_and_rewrap(void **state)
{
    (void)state;
    struct fv_kek a, b, ab, third;
    kek_of(&a, 7);
    kek_of(&b, 9);
    kek_of(&third, 11);
    ab = b; /* the node during a rotation: key B, previous A */
    memcpy(ab.prev_key, a.key, FV_KEY_LEN);
    memcpy(ab.prev_id, a.id, sizeof ab.prev_id);
    assert_ptr_equal(fv_kek_by_id(&ab, a.id), ab.prev_key);
    assert_ptr_equal(fv_kek_by_id(&ab, b.id), ab.key);
    assert_null(fv_kek_by_id(&ab, third.id));
    assert_null(fv_kek_by_id(&b, a.id)); /* no previous key: B alone */

    unsigned char dek[FV_KEY_LEN], got[FV_KEY_LEN];
    for (int i = 0; i < FV_KEY_LEN; i++)
        dek[i] = (unsigned char)(100 + i);
    struct fv_buf va = {0}, vb = {0}, vab = {0}, again = {0};
    char name[FV_NAME_MAX + 1], err[512], id[17];
    assert_int_equal(fv_jskeys_encode_subject(&a, PSEUDO, dek, "5YJROT000000001", &va), FV_OK);
    /* the node on B with previous A opens A's value, and wraps its own with B */
    assert_int_equal(
        fv_jskeys_decode_subject(&ab, PSEUDO, va.data, va.len, got, name, err, sizeof err), FV_OK);
    assert_memory_equal(got, dek, FV_KEY_LEN);
    assert_string_equal(name, "5YJROT000000001");
    assert_int_equal(fv_jskeys_encode_subject(&ab, PSEUDO, dek, "5YJROT000000001", &vab), FV_OK);
    assert_int_equal(fv_jskeys_value_kek(vab.data, vab.len, id), FV_OK);
    assert_string_equal(id, b.id);
    /* re-wrapped A -> B: the same plaintext, B's id, opens with B alone, not with A */
    char key[80];
    snprintf(key, sizeof key, "subject.%s", PSEUDO);
    assert_int_equal(fv_jskeys_rewrap(&a, &b, key, va.data, va.len, &vb, err, sizeof err), FV_OK);
    assert_int_equal(vb.len, va.len);
    assert_memory_equal(vb.data, "FVKV\x01S", 6);
    assert_int_equal(fv_jskeys_value_kek(vb.data, vb.len, id), FV_OK);
    assert_string_equal(id, b.id);
    assert_null(memmem(vb.data, vb.len, dek, 8)); /* the key never in clear */
    memset(got, 0, sizeof got);
    assert_int_equal(
        fv_jskeys_decode_subject(&b, PSEUDO, vb.data, vb.len, got, name, err, sizeof err), FV_OK);
    assert_memory_equal(got, dek, FV_KEY_LEN);
    assert_int_equal(
        fv_jskeys_decode_subject(&a, PSEUDO, vb.data, vb.len, got, name, err, sizeof err),
        FV_ECORRUPT);
    assert_non_null(strstr(err, b.id));
    assert_non_null(strstr(err, a.id));
    /* a value under a third key: refused by the rotating node, naming all three ids */
    struct fv_buf vt = {0};
    assert_int_equal(fv_jskeys_encode_subject(&third, PSEUDO, dek, "5YJROT000000001", &vt), FV_OK);
    assert_int_equal(
        fv_jskeys_decode_subject(&ab, PSEUDO, vt.data, vt.len, got, name, err, sizeof err),
        FV_ECORRUPT);
    assert_non_null(strstr(err, third.id));
    assert_non_null(strstr(err, a.id));
    assert_non_null(strstr(err, b.id));
    /* re-wrapping needs the key the value names: B's value is not A's to move */
    assert_int_equal(fv_jskeys_rewrap(&a, &b, key, vb.data, vb.len, &again, err, sizeof err),
                     FV_ECORRUPT);
    assert_int_equal(again.len, 0);
    /* nor does it move a value to another entry: the seal binds the KV key */
    assert_int_equal(fv_jskeys_rewrap(&a, &b, "subject.fedcba9876543210fedcba9876543210", va.data,
                                      va.len, &again, err, sizeof err),
                     FV_ECORRUPT);
    /* an altered value is not re-wrapped (so it could never be laundered under B) */
    unsigned char w[256];
    memcpy(w, va.data, va.len);
    w[va.len - 1] ^= 1;
    assert_int_equal(fv_jskeys_rewrap(&a, &b, key, w, va.len, &again, err, sizeof err),
                     FV_ECORRUPT);
    assert_int_equal(again.len, 0);
    /* a consents value (another kind) keeps its kind */
    unsigned char pt[5] = {0, 0, 0, 0, 0};
    struct fv_buf vc = {0}, vc2 = {0}, out = {0};
    assert_int_equal(fv_jskeys_wrap(&a, "consents.x", 'C', pt, sizeof pt, &vc), FV_OK);
    assert_int_equal(fv_jskeys_rewrap(&a, &b, "consents.x", vc.data, vc.len, &vc2, err, sizeof err),
                     FV_OK);
    assert_int_equal(vc2.data[5], 'C');
    assert_int_equal(
        fv_jskeys_unwrap(&ab, "consents.x", 'C', vc2.data, vc2.len, &out, err, sizeof err), FV_OK);
    assert_int_equal(out.len, sizeof pt);
    /* not a value of this format: no id */
    assert_int_equal(fv_jskeys_value_kek((const unsigned char *)"garbage", 7, id), FV_ECORRUPT);
    assert_string_equal(id, "");
    fv_buf_free(&va);
    fv_buf_free(&vb);
    fv_buf_free(&vab);
    fv_buf_free(&vt);
    fv_buf_free(&again);
    fv_buf_free(&vc);
    fv_buf_free(&vc2);
    fv_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(subject_round_trip),
        cmocka_unit_test(bad_values_refused),
        cmocka_unit_test(previous_key_and_rewrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
