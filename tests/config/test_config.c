/* test_config.c - config/config.h: the scheduling keys (api_nice, ingest_slice_us) take
 * their documented defaults, accept their ranges and refuse anything else with a message
 * naming the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "util/err.h"
#include "../support/testutil.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    return fv_test_mkdtemp(dir, sizeof dir, "fv-config");
}

static int teardown(void **state)
{
    (void)state;
    return fv_test_rmtree(dir);
}

/* Loads JSON text over the defaults: the return code, the message in err. */
static int load(const char *json, struct fv_config *c, char *err, size_t errlen)
{
    char path[128];
    snprintf(path, sizeof path, "%s/fv.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    fv_config_defaults(c);
    err[0] = '\0';
    return fv_config_load(c, path, err, errlen);
}

static void scheduling_defaults(void **state)
{
    (void)state;
    struct fv_config c;
    fv_config_defaults(&c);
    assert_int_equal(c.api_nice, 10);
    assert_int_equal(c.ingest_slice_us, 300);
}

static void scheduling_keys(void **state)
{
    (void)state;
    struct fv_config c;
    char err[512];
    assert_int_equal(load("{\"ingest_slice_us\": 0, \"api_nice\": 0}", &c, err, sizeof err), FV_OK);
    assert_int_equal(c.ingest_slice_us, 0);
    assert_int_equal(c.api_nice, 0);
    assert_int_equal(load("{\"ingest_slice_us\": 100000, \"api_nice\": 19}", &c, err, sizeof err),
                     FV_OK);
    assert_int_equal(c.ingest_slice_us, 100000);
    assert_int_equal(c.api_nice, 19);

    const char *bad[] = {"{\"ingest_slice_us\": -1}", "{\"ingest_slice_us\": 100001}",
                         "{\"ingest_slice_us\": \"300\"}", "{\"ingest_slice_us\": 1.5}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_not_equal(load(bad[i], &c, err, sizeof err), FV_OK);
        assert_non_null(strstr(err, "ingest_slice_us"));
    }
    assert_int_not_equal(load("{\"api_nice\": 20}", &c, err, sizeof err), FV_OK);
    assert_non_null(strstr(err, "api_nice"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scheduling_defaults),
        cmocka_unit_test(scheduling_keys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
