/* test_config.c - config/config.h: the scheduling keys (api_nice, ingest_nice), the
 * labelers' lease (labeling.lease_s), the audit log's zeros written ahead (audit_prealloc_kb)
 * and the merges' zstd level (store.compact_zstd_level) as the contract gives them: defaults,
 * accepted ranges, and every refusal naming the key with nothing changed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "util/err.h"

/* Loads text as a config file over defaults into c; returns fv_config_load's result. */
static int load(const char *text, struct fv_config *c, char *err, size_t errlen)
{
    char path[] = "/tmp/fv-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    fv_config_defaults(c);
    err[0] = '\0';
    int rc = fv_config_load(c, path, err, errlen);
    unlink(path);
    return rc;
}

static void defaults(void **state)
{
    (void)state;
    struct fv_config c;
    char err[256];
    assert_int_equal(load("{}", &c, err, sizeof err), FV_OK);
    assert_int_equal(c.api_nice, 10);
    assert_int_equal(c.ingest_nice, 0);
    assert_true(c.label_lease_ms == 30 * 60 * 1000);
    assert_string_equal(c.previous_key_file, ""); /* no rotation under way */
    assert_true(c.audit_prealloc_bytes == 1u << 20);
    assert_int_equal(c.store.zlevel_compact, 19);
}

static void accepted(void **state)
{
    (void)state;
    struct fv_config c;
    char err[256];
    assert_int_equal(load("{\"ingest_nice\": -5, \"api_nice\": 19}", &c, err, sizeof err), FV_OK);
    assert_int_equal(c.ingest_nice, -5);
    assert_int_equal(c.api_nice, 19);
    assert_int_equal(load("{\"ingest_nice\": -20}", &c, err, sizeof err), FV_OK);
    assert_int_equal(c.ingest_nice, -20);
    assert_int_equal(load("{\"labeling\": {\"lease_s\": 3}}", &c, err, sizeof err), FV_OK);
    assert_true(c.label_lease_ms == 3000);
    /* a cluster's master key rotation (docs/cluster.md): the previous key beside the key */
    assert_int_equal(load("{\"key_file\": \"/k/new.key\", \"previous_key_file\": \"/k/old.key\"}",
                          &c, err, sizeof err),
                     FV_OK);
    assert_string_equal(c.key_file, "/k/new.key");
    assert_string_equal(c.previous_key_file, "/k/old.key");
    assert_int_equal(load("{\"audit_prealloc_kb\": 0}", &c, err, sizeof err), FV_OK);
    assert_true(c.audit_prealloc_bytes == 0);
    assert_int_equal(load("{\"audit_prealloc_kb\": 65536}", &c, err, sizeof err), FV_OK);
    assert_true(c.audit_prealloc_bytes == 64ull << 20);
    assert_int_equal(load("{\"store\": {\"compact_zstd_level\": 9}}", &c, err, sizeof err), FV_OK);
    assert_int_equal(c.store.zlevel_compact, 9);
}

static void refused(void **state)
{
    (void)state;
    static const char *bad[] = {"{\"ingest_nice\": 1}",
                                "{\"ingest_nice\": -21}",
                                "{\"ingest_nice\": \"-5\"}",
                                "{\"ingest_nice\": -2.5}",
                                "{\"api_nice\": -1}",
                                "{\"api_nice\": 20}",
                                "{\"labeling\": {\"lease_s\": 0}}",
                                "{\"labeling\": {\"lease_s\": 86401}}",
                                "{\"labeling\": {\"lease_s\": 60, \"x\": 1}}",
                                "{\"labeling\": 60}",
                                "{\"audit_prealloc_kb\": -1}",
                                "{\"audit_prealloc_kb\": 65537}",
                                "{\"audit_prealloc_kb\": \"1M\"}",
                                "{\"store\": {\"compact_zstd_level\": 0}}",
                                "{\"store\": {\"compact_zstd_level\": 23}}",
                                "{\"store\": {\"compact_zstd_level\": \"19\"}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fv_config c;
        char err[256];
        assert_int_not_equal(load(bad[i], &c, err, sizeof err), FV_OK);
        assert_true(c.label_lease_ms == 30 * 60 * 1000); /* nothing changed */
        assert_true(c.audit_prealloc_bytes == 1u << 20);
        assert_int_equal(c.store.zlevel_compact, 19);
        const char *key = strstr(bad[i], "ingest")       ? "ingest_nice"
                          : strstr(bad[i], "labeling")   ? "labeling"
                          : strstr(bad[i], "prealloc")   ? "audit_prealloc_kb"
                          : strstr(bad[i], "zstd_level") ? "compact_zstd_level"
                                                         : "api_nice";
        if (strstr(err, key) == NULL) fail_msg("%s: error does not name %s: %s", bad[i], key, err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(accepted),
        cmocka_unit_test(refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
