/* test_oadr_part.c - api/oadr_store.h H1: a shard owner's part of a cluster's history report
 * refuses bad parameters with a 400 naming them, before reading anything (the view here has
 * no store, keystore or audit log: a request that got past the checks would crash). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/oadr_store.h"
#include "util/buf.h"

static void refused(const char *query, const char *says)
{
    struct fv_api_view v;
    memset(&v, 0, sizeof v);
    v.query = query;
    struct fv_http_response r;
    memset(&r, 0, sizeof r);
    fv_api_oadr_history_part(&v, "openadr-ven", &r);
    char body[512];
    snprintf(body, sizeof body, "%.*s", (int)r.body.len, r.body.data ? (char *)r.body.data : "");
    if (r.status != 400 || strstr(body, says) == NULL)
        fail_msg("%s: %d %s (wanted 400 saying '%s')", query ? query : "(none)", r.status, body,
                 says);
    fv_buf_free(&r.body);
}

static void test_bad_parameters(void **state)
{
    (void)state;
    refused(NULL, "from, step and n are required");
    refused("", "from, step and n are required");
    refused("from=0&step=1000&sites=A", "from, step and n are required");
    refused("from=x&step=1000&n=4&sites=A", "must be integers");
    refused("from=0&step=0&n=4&sites=A", "step > 0");
    refused("from=0&step=-5&n=4&sites=A", "step > 0");
    refused("from=0&step=1000&n=0&sites=A", "n 1-1440");
    refused("from=0&step=1000&n=1441&sites=A", "n 1-1440");
    refused("from=0&step=1000&n=4x&sites=A", "must be integers");
    refused("from=0&step=9223372036854775807&n=4&sites=A", "must be integers");
    refused("from=9223372036854775807&step=1000&n=4&sites=A", "must be integers");
    refused("from=0&step=1000&n=4", "sites is required");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_bad_parameters)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
