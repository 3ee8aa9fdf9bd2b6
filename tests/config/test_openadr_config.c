/* test_openadr_config.c - config/openadr_config.h: the "openadr" object as the contract gives
 * it, its defaults (schema_dir, report_interval_s, simple_levels), and every refusal naming
 * the key (unknown keys, a plain-http VTN, no VTN, bad levels, a bad push address). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "config/openadr_config.h"
#include "util/err.h"

static int parse(const char *text, struct fv_oadr_cfg *c, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    err[0] = '\0';
    int rc = fv_oadr_cfg_parse(c, j, "fv.json", err, errlen);
    json_decref(j);
    return rc;
}

#define VTN                                                                                        \
    "{\"name\": \"utility\", \"url\": \"https://127.0.0.1:9/OpenADR2/Simple/2.0b\", "              \
    "\"cert\": \"ven.crt\", \"key\": \"ven.key\", \"ca\": \"ca.crt\"}"

static void contract_example(void **state)
{
    (void)state;
    struct fv_oadr_cfg c;
    char err[256];
    assert_int_equal(parse("{\"ven_name\": \"fleetvault-ven\", \"vtns\": [" VTN "],"
                           " \"push\": {\"listen\": \"127.0.0.1:8443\", \"cert\": \"a\", \"key\": "
                           "\"b\", \"ca\": \"c\"},"
                           " \"market_contexts\": {\"http://elrp.example/a4\": {\"program\": "
                           "\"elrp\", \"simple_levels\": {\"1\": 0.25, \"3\": 0.9}},"
                           "  \"http://x.example/b\": {\"program\": \"other\"}},"
                           " \"schema_dir\": \"/s\", \"report_interval_s\": 5}",
                           &c, err, sizeof err),
                     FV_OK);
    assert_int_equal(c.enabled, 1);
    assert_string_equal(c.ven_name, "fleetvault-ven");
    assert_int_equal(c.nvtns, 1);
    assert_string_equal(c.vtns[0].name, "utility");
    assert_string_equal(c.vtns[0].ca, "ca.crt");
    assert_int_equal(c.push, 1);
    assert_string_equal(c.push_host, "127.0.0.1");
    assert_int_equal(c.push_port, 8443);
    assert_string_equal(c.push_address, "https://127.0.0.1:8443/OpenADR2/Simple/2.0b");
    assert_int_equal(c.nmcs, 2);
    assert_string_equal(c.mcs[0].program, "elrp");
    assert_true(c.mcs[0].levels[1] == 0.25 && c.mcs[0].levels[2] == 0.66 &&
                c.mcs[0].levels[3] == 0.9);
    assert_true(c.mcs[1].levels[1] == 0.33 && c.mcs[1].levels[3] == 1.0);
    assert_string_equal(c.schema_dir, "/s");
    assert_int_equal(c.report_interval_s, 5);

    assert_int_equal(parse("{\"ven_name\": \"v\", \"vtns\": [" VTN "], \"market_contexts\": "
                           "{\"m\": {\"program\": \"p\"}}}",
                           &c, err, sizeof err),
                     FV_OK);
    assert_int_equal(c.push, 0);
    assert_int_equal(c.report_interval_s, 60);
    assert_string_equal(c.schema_dir, FV_OADR_SCHEMA_DIR);
}

static void refusals(void **state)
{
    (void)state;
    static const struct {
        const char *json, *says;
    } bad[] = {
        {"[]", "openadr: expected an object"},
        {"{\"ven_name\": \"v\", \"vtns\": [" VTN "], \"market_contexts\": {\"m\": {\"program\": "
         "\"p\"}}, \"colour\": 1}",
         "openadr.colour: unknown key"},
        {"{\"vtns\": [" VTN "], \"market_contexts\": {\"m\": {\"program\": \"p\"}}}",
         "openadr.ven_name"},
        {"{\"ven_name\": \"v\", \"vtns\": [], \"market_contexts\": {\"m\": {\"program\": \"p\"}}}",
         "openadr.vtns: expected a list of 1 to 4"},
        {"{\"ven_name\": \"v\", \"vtns\": [{\"name\": \"u\", \"url\": \"http://x/y\", \"cert\": "
         "\"a\", \"key\": \"b\", \"ca\": \"c\"}], \"market_contexts\": {\"m\": {\"program\": "
         "\"p\"}}}",
         "openadr.vtns[0].url: expected https://"},
        {"{\"ven_name\": \"v\", \"vtns\": [{\"name\": \"u\", \"url\": \"https://x/y\", \"cert\": "
         "\"a\", \"key\": \"b\"}], \"market_contexts\": {\"m\": {\"program\": \"p\"}}}",
         "openadr.vtns[0].ca"},
        {"{\"ven_name\": \"v\", \"vtns\": [" VTN ", " VTN "], \"market_contexts\": {\"m\": "
         "{\"program\": \"p\"}}}",
         "'utility' given twice"},
        {"{\"ven_name\": \"v\", \"vtns\": [" VTN "], \"market_contexts\": {}}",
         "openadr.market_contexts: expected an object of 1 to 16"},
        {"{\"ven_name\": \"v\", \"vtns\": [" VTN "], \"market_contexts\": {\"m\": {\"program\": "
         "\"p\", \"simple_levels\": {\"4\": 1}}}}",
         "openadr.market_contexts.m.simple_levels.4"},
        {"{\"ven_name\": \"v\", \"vtns\": [" VTN "], \"market_contexts\": {\"m\": {\"program\": "
         "\"p\", \"simple_levels\": {\"2\": 1.5}}}}",
         "openadr.market_contexts.m.simple_levels.2"},
        {"{\"ven_name\": \"v\", \"vtns\": [" VTN "], \"market_contexts\": {\"m\": {}}}",
         "openadr.market_contexts.m.program"},
        {"{\"ven_name\": \"v\", \"vtns\": [" VTN "], \"market_contexts\": {\"m\": {\"program\": "
         "\"p\"}}, \"report_interval_s\": 0}",
         "openadr.report_interval_s"},
        {"{\"ven_name\": \"v\", \"vtns\": [" VTN "], \"market_contexts\": {\"m\": {\"program\": "
         "\"p\"}}, \"push\": {\"listen\": \"nowhere\", \"cert\": \"a\", \"key\": \"b\", \"ca\": "
         "\"c\"}}",
         "openadr.push.listen"},
        {"{\"ven_name\": \"v\", \"vtns\": [" VTN "], \"market_contexts\": {\"m\": {\"program\": "
         "\"p\"}}, \"push\": {\"listen\": \"127.0.0.1:1\", \"cert\": \"a\", \"key\": \"b\", "
         "\"ca\": \"c\", \"address\": \"http://plain\"}}",
         "openadr.push.address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fv_oadr_cfg c;
        char err[256];
        assert_int_equal(parse(bad[i].json, &c, err, sizeof err), FV_EINVAL);
        if (strstr(err, bad[i].says) == NULL) fprintf(stderr, "case %zu: %s\n", i, err);
        assert_non_null(strstr(err, bad[i].says));
        assert_int_equal(c.enabled, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(contract_example),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
