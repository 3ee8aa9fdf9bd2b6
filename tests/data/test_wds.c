/* test_wds.c - data/wds.h: ustar shards (headers, long names split at '/', refusals, the
 * hash of the whole file, read back by Python's tarfile and by tar(1)), .npy files (NumPy's
 * format 1.0 rules: magic, header alignment, dict, little-endian data) and keyed-hash splits
 * (parse errors with their column, proportions, stability as the vehicle set grows). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "data/wds.h"
#include "util/err.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fv-test-wds-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static unsigned header_sum(const unsigned char *h)
{
    unsigned s = 0;
    for (int i = 0; i < 512; i++)
        s += (i >= 148 && i < 156) ? ' ' : h[i];
    return s;
}

static void tar_members(void **state)
{
    (void)state;
    char path[128], err[256], hex[65];
    snprintf(path, sizeof path, "%s/s-000000.tar", dir);
    struct fv_tar *t;
    assert_int_equal(fv_tar_open(path, &t, err, sizeof err), FV_OK);
    const char *body = "{\"clip\": \"c1\"}";
    assert_int_equal(fv_tar_add(t, "c1.json", body, strlen(body), 1700000000, err, sizeof err),
                     FV_OK);
    unsigned char big[1000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i * 7);
    char longname[200];
    memset(longname, 'a', 120);
    memcpy(longname + 120, "/sample.speed.npy", 18); /* 137 bytes: prefix 120, name 16 */
    assert_int_equal(fv_tar_add(t, longname, big, sizeof big, 1700000000, err, sizeof err), FV_OK);
    assert_int_equal(fv_tar_add(t, "empty.txt", "", 0, 0, err, sizeof err), FV_OK);
    assert_int_equal(fv_tar_bytes(t), 512 + 512 + 512 + 1024 + 512);
    assert_int_equal(fv_tar_close(t, hex, err, sizeof err), FV_OK);

    size_t len;
    unsigned char *f = slurp(path, &len);
    assert_int_equal(len, 512 * 8);
    /* first header: name, size in octal, ustar magic, checksum over the header */
    assert_string_equal((char *)f, "c1.json");
    assert_memory_equal(f + 124, "00000000016", 12); /* 14 bytes, with the NUL */
    assert_memory_equal(f + 257,
                        "ustar\0"
                        "00",
                        8);
    assert_int_equal(strtoul((char *)f + 148, NULL, 8), header_sum(f));
    assert_memory_equal(f + 512, body, strlen(body));
    /* second: the long name split at its '/' */
    assert_string_equal((char *)f + 1024, "sample.speed.npy");
    assert_int_equal(strnlen((char *)f + 1024 + 345, 155), 120);
    assert_int_equal(strtoul((char *)f + 1024 + 148, NULL, 8), header_sum(f + 1024));
    assert_memory_equal(f + 1536, big, sizeof big);
    /* the end: two zero blocks */
    for (size_t i = len - 1024; i < len; i++)
        assert_int_equal(f[i], 0);
    /* the hash is the file's */
    unsigned char md[32];
    unsigned mdlen;
    EVP_Digest(f, len, md, &mdlen, EVP_sha256(), NULL);
    char want[65];
    for (int i = 0; i < 32; i++)
        snprintf(want + 2 * i, 3, "%02x", md[i]);
    assert_string_equal(hex, want);
    free(f);

    /* read back by Python's tarfile (every member's name, size and bytes) and by tar(1) */
    char cmd[1024];
    snprintf(
        cmd, sizeof cmd,
        "python3 -c 'import tarfile,sys; t=tarfile.open(sys.argv[1]); m=t.getmembers(); "
        "assert [x.name for x in m]==[\"c1.json\",sys.argv[2],\"empty.txt\"], m; "
        "assert t.extractfile(m[0]).read()==b\"{\\\"clip\\\": \\\"c1\\\"}\"; "
        "b=t.extractfile(m[1]).read(); assert len(b)==1000 and b[1]==7 and b[999]==(999*7)%%256; "
        "assert m[0].mtime==1700000000 and m[0].mode==0o644' %s %s",
        path, longname);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "tar -tf %s >/dev/null", path);
    assert_int_equal(system(cmd), 0);
}

static void tar_refusals(void **state)
{
    (void)state;
    char path[128], err[256], hex[65];
    snprintf(path, sizeof path, "%s/r.tar", dir);
    struct fv_tar *t;
    assert_int_equal(fv_tar_open(path, &t, err, sizeof err), FV_OK);
    static const char *bad[] = {"", "/abs", "a/../b", "dir/", "sp ace", "back\\slash", "tab\t"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(fv_tar_add(t, bad[i], "x", 1, 0, err, sizeof err), FV_EINVAL);
    char nosplit[160];
    memset(nosplit, 'b', 150);
    nosplit[150] = '\0'; /* 150 bytes, no '/' */
    assert_int_equal(fv_tar_add(t, nosplit, "x", 1, 0, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "ustar"));
    assert_int_equal(fv_tar_bytes(t), 0); /* nothing written by a refusal */
    assert_int_equal(fv_tar_close(t, hex, err, sizeof err), FV_OK);
    /* an existing file is never overwritten */
    assert_int_not_equal(fv_tar_open(path, &t, err, sizeof err), FV_OK);
    /* abort removes the partial shard */
    snprintf(path, sizeof path, "%s/aborted.tar", dir);
    assert_int_equal(fv_tar_open(path, &t, err, sizeof err), FV_OK);
    assert_int_equal(fv_tar_add(t, "a.json", "{}", 2, 0, err, sizeof err), FV_OK);
    fv_tar_abort(t);
    assert_int_not_equal(access(path, F_OK), 0);
}

static void npy_format(void **state)
{
    (void)state;
    struct fv_buf b = {0};
    double v[3] = {1.5, -2.0, 1e300};
    assert_int_equal(fv_npy_append(&b, "<f8", v, 3, 0), FV_OK);
    assert_memory_equal(b.data, "\x93NUMPY\x01\x00", 8);
    size_t hlen = fv_get_u16(b.data + 8);
    assert_int_equal((10 + hlen) % 64, 0);
    assert_int_equal(b.data[10 + hlen - 1], '\n');
    char dict[128];
    snprintf(dict, sizeof dict, "%.*s", (int)hlen, (char *)b.data + 10);
    assert_non_null(strstr(dict, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"));
    assert_int_equal(b.len, 10 + hlen + 24);
    uint64_t x = fv_get_u64(b.data + 10 + hlen + 8);
    double d;
    memcpy(&d, &x, 8);
    assert_true(d == -2.0);

    fv_buf_reset(&b);
    int32_t m[2][3] = {{1, 2, 3}, {4, 5, -6}};
    assert_int_equal(fv_npy_append(&b, "<i4", m, 2, 3), FV_OK);
    hlen = fv_get_u16(b.data + 8);
    assert_int_equal((10 + hlen) % 64, 0);
    snprintf(dict, sizeof dict, "%.*s", (int)hlen, (char *)b.data + 10);
    assert_non_null(strstr(dict, "'shape': (2, 3)"));
    assert_int_equal((int32_t)fv_get_u32(b.data + 10 + hlen + 20), -6);
    /* refusals: unknown dtype, overflowing shape; the buffer unchanged */
    size_t before = b.len;
    assert_int_equal(fv_npy_append(&b, "<c16", m, 1, 0), FV_EINVAL);
    assert_int_equal(fv_npy_append(&b, "<f8", m, SIZE_MAX / 2, 4), FV_EINVAL);
    assert_int_equal(b.len, before);
    /* empty array */
    fv_buf_reset(&b);
    assert_int_equal(fv_npy_append(&b, "<f8", NULL, 0, 0), FV_OK);
    hlen = fv_get_u16(b.data + 8);
    assert_int_equal(b.len, 10 + hlen);
    fv_buf_free(&b);
}

static void split_parse(void **state)
{
    (void)state;
    struct fv_split s[FV_SPLIT_MAX];
    size_t n;
    char why[200];
    assert_int_equal(fv_split_parse("train=0.8,val=0.1,test=0.1", s, &n, why, sizeof why), FV_OK);
    assert_int_equal(n, 3);
    assert_string_equal(s[1].name, "val");
    assert_true(s[0].fraction == 0.8);
    assert_int_equal(fv_split_parse("all=1", s, &n, why, sizeof why), FV_OK);
    static const struct {
        const char *spec, *want;
    } bad[] = {
        {"", "empty"},
        {"train=0.8,val", "column 11"},
        {"train=0.8,val=0.3", "sum"},
        {"train=0.5,train=0.5", "twice"},
        {"Train=1", "column 1"},
        {"train=x", "column 7"},
        {"train=0,val=1", "column 7"},
        {"train=1,", "column 9"},
        {"=1", "column 1"},
        {"a=.1,b=.1,c=.1,d=.1,e=.1,f=.1,g=.1,h=.1,i=.2", "at most"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert_int_equal(fv_split_parse(bad[i].spec, s, &n, why, sizeof why), FV_EINVAL);
        if (strstr(why, bad[i].want) == NULL)
            fail_msg("'%s': '%s' does not say '%s'", bad[i].spec, why, bad[i].want);
    }
}

static void split_pick(void **state)
{
    (void)state;
    struct fv_split s[FV_SPLIT_MAX];
    size_t n;
    char why[200];
    assert_int_equal(fv_split_parse("train=0.8,val=0.1,test=0.1", s, &n, why, sizeof why), FV_OK);
    const unsigned char key[] = "dataset key of 32 bytes, exactly";
    enum { V = 20000 };
    static unsigned char first[V];
    size_t count[3] = {0};
    for (int i = 0; i < V; i++) {
        char veh[32];
        snprintf(veh, sizeof veh, "pseudo-%08d", i);
        first[i] = (unsigned char)fv_split_pick(key, 32, veh, s, n);
        assert_true(first[i] < 3);
        count[first[i]]++;
    }
    /* proportions: within 2 percentage points of the fractions for 20,000 vehicles */
    assert_true(count[0] > V * 0.78 && count[0] < V * 0.82);
    assert_true(count[1] > V * 0.08 && count[1] < V * 0.12);
    assert_true(count[2] > V * 0.08 && count[2] < V * 0.12);
    /* stable: the same vehicles, asked again after others were added, answer the same */
    for (int i = V - 1; i >= 0; i--) {
        char veh[32];
        snprintf(veh, sizeof veh, "pseudo-%08d", i);
        assert_int_equal(fv_split_pick(key, 32, veh, s, n), first[i]);
    }
    /* another key gives another assignment */
    const unsigned char key2[] = "another key of 32 bytes, exactly";
    int moved = 0;
    for (int i = 0; i < 1000; i++) {
        char veh[32];
        snprintf(veh, sizeof veh, "pseudo-%08d", i);
        moved += fv_split_pick(key2, 32, veh, s, n) != first[i];
    }
    assert_true(moved > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tar_members), cmocka_unit_test(tar_refusals), cmocka_unit_test(npy_format),
        cmocka_unit_test(split_parse), cmocka_unit_test(split_pick),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
