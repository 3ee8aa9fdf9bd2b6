/* test_jscursor.c - cluster/jscursor.h: the storage node's shard cursors file (K1, K2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/jscursor.h"
#include "util/err.h"

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void roundtrip_and_damage(void **state)
{
    (void)state;
    char dir[] = "/tmp/fv-jscursor-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, FV_JSCURSOR_FILE);
    char err[512];
    uint64_t c[8], back[8];
    memset(back, 0xaa, sizeof back);

    /* K1: no file is no cursor */
    assert_int_equal(fv_jscursor_load(path, back, 8, err, sizeof err), FV_OK);
    for (int i = 0; i < 8; i++)
        assert_true(back[i] == 0);

    /* K2 then K1: the same values, zeros left out of the file */
    memset(c, 0, sizeof c);
    c[0] = 17;
    c[3] = 18446744073709551615ull;
    c[7] = 1;
    assert_int_equal(fv_jscursor_save(path, c, 8, err, sizeof err), FV_OK);
    char *text = read_text(path);
    assert_non_null(strstr(text, "fv-shard-cursors 1\n0 17\n3 18446744073709551615\n7 1\ncrc32c "));
    assert_int_equal(fv_jscursor_load(path, back, 8, err, sizeof err), FV_OK);
    assert_memory_equal(back, c, sizeof c);

    /* K1: a shard beyond the node's count, a changed digit, a cut file, garbage: corrupt */
    assert_int_equal(fv_jscursor_load(path, back, 4, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "line 4: shard out of range"));
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", text);
    char *d = strstr(copy, "0 17");
    d[3] = '8';
    write_text(path, copy);
    assert_int_equal(fv_jscursor_load(path, back, 8, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "checksum mismatch"));
    write_text(path, "fv-shard-cursors 1\n0 17\n");
    assert_int_equal(fv_jscursor_load(path, back, 8, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "no checksum line"));
    write_text(path, "hello\n");
    assert_int_equal(fv_jscursor_load(path, back, 8, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "not a shard cursors file"));
    write_text(path, "fv-shard-cursors 1\nx 1\ncrc32c 00000000\n");
    assert_int_equal(fv_jscursor_load(path, back, 8, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "line 2: expected SHARD SEQ"));
    for (int i = 0; i < 8; i++) /* nothing half-loaded */
        assert_true(back[i] == 0);

    /* K2 replaces a damaged file whole */
    assert_int_equal(fv_jscursor_save(path, c, 8, err, sizeof err), FV_OK);
    assert_int_equal(fv_jscursor_load(path, back, 8, err, sizeof err), FV_OK);
    assert_memory_equal(back, c, sizeof c);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip_and_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
