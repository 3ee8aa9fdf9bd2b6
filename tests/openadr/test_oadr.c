/* test_oadr.c - OpenADR 2.0b messages (openadr/oadr.h): every message the VEN builds
 * validates against the 2.0b schema (M4) and reads back; hand-written payloads a VTN sends
 * parse into the structs (oadrDistributeEvent with SIMPLE and LOAD_DISPATCH signals and
 * targets, registration, reports); payloads that are not XML, carry a DOCTYPE or do not
 * validate are refused with 454 before anything is read (M1); times and durations (M3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/testutil.h"
#include "openadr/oadr.h"
#include "util/buf.h"
#include "util/err.h"

static struct fv_oadr_schema *schema;

static int setup(void **state)
{
    (void)state;
    char err[256];
    int rc = fv_oadr_schema_open(FV_OADR_SCHEMA_DIR, &schema, err, sizeof err);
    if (rc) fprintf(stderr, "schema: %s\n", err);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    fv_oadr_schema_close(schema);
    return 0;
}

static char *fixture(const char *name, size_t *len)
{
    return (char *)fv_test_read_file("FV_OADR_FIXTURES", "tests/openadr", name, len);
}

static int64_t T(const char *s)
{
    int64_t ms;
    assert_int_equal(fv_oadr_parse_time(s, &ms), FV_OK);
    return ms;
}

/* Parses a built message back: valid, the expected element. */
static void check_built(struct fv_buf *b, const char *name, struct fv_oadr_msg *m)
{
    char err[512] = "";
    int rc = fv_oadr_validate(schema, (const char *)b->data, b->len, err, sizeof err);
    if (rc) fprintf(stderr, "%s does not validate: %s\n%.*s\n", name, err, (int)b->len, b->data);
    assert_int_equal(rc, FV_OK);
    int code;
    assert_int_equal(
        fv_oadr_parse(schema, (const char *)b->data, b->len, m, &code, err, sizeof err), FV_OK);
    assert_string_equal(m->name, name);
    fv_buf_reset(b);
}

static void test_built_messages_validate(void **state)
{
    (void)state;
    struct fv_buf b = {0};
    struct fv_oadr_msg m;
    int64_t now = T("2026-07-01T22:59:59.250Z");

    assert_int_equal(fv_oadr_build_query_registration(&b, "q-1"), FV_OK);
    check_built(&b, "oadrQueryRegistration", &m);
    assert_string_equal(m.request_id, "q-1");
    assert_int_equal(m.kind, FV_OADR_OTHER); /* M2: a VEN's own message */
    fv_oadr_msg_free(&m);

    assert_int_equal(
        fv_oadr_build_create_party_registration(&b, "r-1", NULL, NULL, "fleet<&>ven", NULL, 1),
        FV_OK);
    check_built(&b, "oadrCreatePartyRegistration", &m);
    fv_oadr_msg_free(&m);
    assert_int_equal(
        fv_oadr_build_create_party_registration(&b, "r-2", "reg-abc", "ven-1", "v",
                                                "https://127.0.0.1:9/OpenADR2/Simple/2.0b", 0),
        FV_OK);
    check_built(&b, "oadrCreatePartyRegistration", &m);
    assert_string_equal(m.registration_id, "reg-abc");
    assert_string_equal(m.ven_id, "ven-1");
    fv_oadr_msg_free(&m);

    assert_int_equal(
        fv_oadr_build_canceled_party_registration(&b, 200, "OK", "c-1", "reg-abc", "ven-1"), FV_OK);
    check_built(&b, "oadrCanceledPartyRegistration", &m);
    assert_int_equal(m.kind, FV_OADR_CANCELED_PARTY_REGISTRATION);
    assert_int_equal(m.response_code, 200);
    fv_oadr_msg_free(&m);

    assert_int_equal(fv_oadr_build_poll(&b, "ven-1"), FV_OK);
    check_built(&b, "oadrPoll", &m);
    assert_string_equal(m.ven_id, "ven-1");
    fv_oadr_msg_free(&m);

    assert_int_equal(fv_oadr_build_response(&b, 453, "not recognized", "x-9", "ven-1"), FV_OK);
    check_built(&b, "oadrResponse", &m);
    assert_int_equal(m.response_code, 453);
    assert_string_equal(m.response_desc, "not recognized");
    fv_oadr_msg_free(&m);

    struct fv_oadr_event_response er[2] = {
        {.event_id = "ev-1", .mod = 3, .code = 200, .opt_in = 1},
        {.event_id = "ev-2",
         .mod = 0,
         .code = 200,
         .desc = "over the yearly cap: 58.0 h",
         .opt_in = 0},
    };
    assert_int_equal(fv_oadr_build_created_event(&b, 200, "OK", "req-17", "ven-1", er, 2), FV_OK);
    check_built(&b, "oadrCreatedEvent", &m);
    fv_oadr_msg_free(&m);
    assert_int_equal(fv_oadr_build_created_event(&b, 454, "bad", "req-18", "ven-1", NULL, 0),
                     FV_OK);
    check_built(&b, "oadrCreatedEvent", &m);
    fv_oadr_msg_free(&m);

    struct fv_oadr_report_desc d[3] = {
        {"delivered_kw", "usage", "powerReal", "Direct Read", "http://elrp.example/a4", 60000,
         3600000},
        {"stored_kwh", "storedEnergy", "energyReal", "Summed", NULL, 60000, 3600000},
        {"status", "x-resourceStatus", NULL, "x-notApplicable", NULL, 60000, 3600000},
    };
    struct fv_oadr_report_meta meta[2] = {
        {"fleet-usage", "METADATA_TELEMETRY_USAGE", 7200000, d, 2},
        {"fleet-status", "METADATA_TELEMETRY_STATUS", 7200000, d + 2, 1}};
    assert_int_equal(fv_oadr_build_register_report(&b, "rr-1", "ven-1", meta, 2, now), FV_OK);
    check_built(&b, "oadrRegisterReport", &m);
    assert_int_equal(m.kind, FV_OADR_REGISTER_REPORT);
    fv_oadr_msg_free(&m);

    struct fv_oadr_report_point pts[3] = {
        {"delivered_kw", 123.456, 0}, {"stored_kwh", 1e-7, 0}, {"status", 1, 1}};
    struct fv_oadr_report_interval iv[2] = {{now, 60000, pts, 3}, {now + 60000, 60000, pts, 1}};
    assert_int_equal(fv_oadr_build_update_report(&b, "u-1", "ven-1", "rep-1", "rr-1", "fleet-usage",
                                                 "TELEMETRY_USAGE", now, 120000, iv, 2, now),
                     FV_OK);
    check_built(&b, "oadrUpdateReport", &m);
    fv_oadr_msg_free(&m);

    const char *pending[2] = {"rr-1", "rr-2"};
    assert_int_equal(fv_oadr_build_created_report(&b, 200, NULL, "cr-1", "ven-1", pending, 2),
                     FV_OK);
    check_built(&b, "oadrCreatedReport", &m);
    fv_oadr_msg_free(&m);
    assert_int_equal(fv_oadr_build_created_report(&b, 461, "no such rID", "cr-2", "ven-1", NULL, 0),
                     FV_OK);
    check_built(&b, "oadrCreatedReport", &m);
    fv_oadr_msg_free(&m);
    assert_int_equal(fv_oadr_build_canceled_report(&b, 200, NULL, "can-1", "ven-1", pending, 1),
                     FV_OK);
    check_built(&b, "oadrCanceledReport", &m);
    fv_oadr_msg_free(&m);
    assert_int_equal(fv_oadr_build_registered_report(&b, 200, NULL, "reg-r", "ven-1"), FV_OK);
    check_built(&b, "oadrRegisteredReport", &m);
    fv_oadr_msg_free(&m);

    struct fv_oadr_period p[2] = {{now, 3600000}, {now + 86400000, 1800000}};
    assert_int_equal(fv_oadr_build_create_opt(&b, "o-1", "opt-1", 0, "x-schedule",
                                              "http://elrp.example/a4", "ven-1", p, 2, NULL, 0,
                                              now),
                     FV_OK);
    check_built(&b, "oadrCreateOpt", &m);
    assert_string_equal(m.opt_id, "opt-1");
    fv_oadr_msg_free(&m);
    assert_int_equal(fv_oadr_build_create_opt(&b, "o-2", "opt-2", 0, "notParticipating", NULL,
                                              "ven-1", NULL, 0, "ev-1", 4, now),
                     FV_OK);
    check_built(&b, "oadrCreateOpt", &m);
    fv_oadr_msg_free(&m);
    assert_int_equal(fv_oadr_build_cancel_opt(&b, "o-3", "opt-1", "ven-1"), FV_OK);
    check_built(&b, "oadrCancelOpt", &m);
    fv_oadr_msg_free(&m);
    fv_buf_free(&b);
}

static void test_distribute_event(void **state)
{
    (void)state;
    size_t len;
    char *x = fixture("distribute_event.xml", &len);
    struct fv_oadr_msg m;
    char err[256];
    int code;
    assert_int_equal(fv_oadr_parse(schema, x, len, &m, &code, err, sizeof err), FV_OK);
    assert_int_equal(code, 200);
    assert_int_equal(m.kind, FV_OADR_DISTRIBUTE_EVENT);
    assert_string_equal(m.request_id, "req-17");
    assert_string_equal(m.vtn_id, "utility-vtn");
    assert_int_equal(m.nev, 2);
    const struct fv_oadr_event *e = &m.ev[0];
    assert_string_equal(e->id, "ev-simple");
    assert_int_equal(e->mod, 2);
    assert_int_equal(e->priority, 1);
    assert_string_equal(e->market_context, "http://elrp.example/a4");
    assert_int_equal(e->status, FV_OADR_ST_FAR);
    assert_int_equal(e->test, 0);
    assert_int_equal(e->response_required, 1);
    assert_true(e->created_ms == T("2026-07-01T15:00:00Z"));
    assert_true(e->start_ms == T("2026-07-01T23:00:00Z"));
    assert_true(e->dur_ms == 7200000);
    assert_true(e->notification_ms == 3600000);
    assert_true(e->rampup_ms == 300000);
    assert_true(e->recovery_ms == 600000);
    assert_int_equal(e->nsig, 1);
    assert_string_equal(e->sig[0].name, "SIMPLE");
    assert_string_equal(e->sig[0].type, "level");
    assert_string_equal(e->sig[0].id, "sig-1");
    assert_int_equal(e->sig[0].has_current, 1);
    assert_true(e->sig[0].current == 0);
    assert_int_equal(e->sig[0].niv, 2);
    assert_true(e->sig[0].iv[0].start_ms == T("2026-07-01T23:00:00Z"));
    assert_true(e->sig[0].iv[1].start_ms == T("2026-07-02T00:00:00Z"));
    assert_true(e->sig[0].iv[1].dur_ms == 3600000);
    assert_true(e->sig[0].iv[0].value == 1 && e->sig[0].iv[1].value == 3);
    assert_int_equal(e->target.ngroup, 1);
    assert_string_equal(e->target.group_ids[0], "south");
    assert_int_equal(e->target.nven, 1);
    assert_string_equal(e->target.ven_ids[0], "ven-1");
    e = &m.ev[1];
    assert_string_equal(e->id, "ev-dispatch");
    assert_int_equal(e->status, FV_OADR_ST_ACTIVE);
    assert_int_equal(e->test, 1);
    assert_int_equal(e->response_required, 0);
    assert_true(e->created_ms == T("2026-07-01T15:00:00.500Z"));
    assert_string_equal(e->sig[0].name, "LOAD_DISPATCH");
    assert_string_equal(e->sig[0].type, "setpoint");
    assert_string_equal(e->sig[0].units, "W");
    assert_string_equal(e->sig[0].scale, "k");
    assert_true(e->sig[0].iv[0].value == 250.5);
    assert_int_equal(e->target.nven + e->target.ngroup + e->target.nother, 0);
    fv_oadr_msg_free(&m);
    free(x);
}

static void test_other_messages(void **state)
{
    (void)state;
    size_t len;
    struct fv_oadr_msg m;
    char err[256];
    char *x = fixture("created_party_registration.xml", &len);
    assert_int_equal(fv_oadr_parse(schema, x, len, &m, NULL, err, sizeof err), FV_OK);
    assert_int_equal(m.kind, FV_OADR_CREATED_PARTY_REGISTRATION);
    assert_int_equal(m.response_code, 200);
    assert_string_equal(m.request_id, "reg-1");
    assert_string_equal(m.registration_id, "reg-abc");
    assert_string_equal(m.ven_id, "ven-1");
    assert_string_equal(m.vtn_id, "utility-vtn");
    assert_true(m.poll_freq_ms == 10000);
    fv_oadr_msg_free(&m);
    free(x);

    x = fixture("cancel_party_registration.xml", &len);
    assert_int_equal(fv_oadr_parse(schema, x, len, &m, NULL, err, sizeof err), FV_OK);
    assert_int_equal(m.kind, FV_OADR_CANCEL_PARTY_REGISTRATION);
    assert_string_equal(m.request_id, "cancel-9");
    assert_string_equal(m.registration_id, "reg-abc");
    fv_oadr_msg_free(&m);
    free(x);

    x = fixture("create_report.xml", &len);
    assert_int_equal(fv_oadr_parse(schema, x, len, &m, NULL, err, sizeof err), FV_OK);
    assert_int_equal(m.kind, FV_OADR_CREATE_REPORT);
    assert_int_equal(m.nrr, 1);
    assert_string_equal(m.rr[0].request_id, "rr-1");
    assert_string_equal(m.rr[0].specifier_id, "fleet-telemetry");
    assert_true(m.rr[0].granularity_ms == 60000);
    assert_true(m.rr[0].report_back_ms == 300000);
    assert_int_equal(m.rr[0].has_interval, 1);
    assert_true(m.rr[0].start_ms == T("2026-07-01T23:00:00Z"));
    assert_true(m.rr[0].dur_ms == 7200000);
    assert_int_equal(m.rr[0].nrid, 2);
    assert_string_equal(m.rr[0].rids[1], "stored_kwh");
    fv_oadr_msg_free(&m);
    free(x);

    x = fixture("cancel_report.xml", &len);
    assert_int_equal(fv_oadr_parse(schema, x, len, &m, NULL, err, sizeof err), FV_OK);
    assert_int_equal(m.kind, FV_OADR_CANCEL_REPORT);
    assert_int_equal(m.ncancel_rr, 1);
    assert_string_equal(m.cancel_rr[0], "rr-1");
    assert_int_equal(m.report_to_follow, 0);
    fv_oadr_msg_free(&m);
    free(x);

    x = fixture("response.xml", &len);
    assert_int_equal(fv_oadr_parse(schema, x, len, &m, NULL, err, sizeof err), FV_OK);
    assert_int_equal(m.kind, FV_OADR_RESPONSE);
    assert_int_equal(m.response_code, 200);
    fv_oadr_msg_free(&m);
    free(x);

    x = fixture("poll.xml", &len); /* valid, but a VEN's message (M2) */
    assert_int_equal(fv_oadr_parse(schema, x, len, &m, NULL, err, sizeof err), FV_OK);
    assert_int_equal(m.kind, FV_OADR_OTHER);
    assert_string_equal(m.name, "oadrPoll");
    fv_oadr_msg_free(&m);
    free(x);
}

static void test_invalid_refused(void **state)
{
    (void)state;
    static const struct {
        const char *file, *why;
    } bad[] = {
        {"invalid_missing_registration_id.xml", "registrationID"},
        {"invalid_status.xml", "eventStatus"},
        {"invalid_code.xml", "responseCode"},
        {"invalid_doctype.xml", "DOCTYPE"},
        {"invalid_truncated.xml", "line"},
        {"invalid_not_xml.xml", "line"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len;
        char *x = fixture(bad[i].file, &len);
        struct fv_oadr_msg m;
        char err[512] = "";
        int code = 0;
        assert_int_equal(fv_oadr_parse(schema, x, len, &m, &code, err, sizeof err), FV_EPROTO);
        assert_int_equal(code, FV_OADR_INVALID_DATA);
        if (strstr(err, bad[i].why) == NULL) fprintf(stderr, "%s: %s\n", bad[i].file, err);
        assert_non_null(strstr(err, bad[i].why));
        assert_int_equal(m.nev, 0);
        fv_oadr_msg_free(&m);
        free(x);
    }
    struct fv_oadr_msg m;
    char err[128];
    assert_int_equal(fv_oadr_parse(schema, "", 0, &m, NULL, err, sizeof err), FV_EPROTO);
    fv_oadr_msg_free(&m);
}

static void test_times(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(fv_oadr_parse_time("1970-01-01T00:00:01Z", &ms), FV_OK);
    assert_true(ms == 1000);
    assert_int_equal(fv_oadr_parse_time("2026-12-02T13:30:00.25", &ms), FV_OK);
    char t[32];
    fv_oadr_fmt_time(ms, t);
    assert_string_equal(t, "2026-12-02T13:30:00.250Z");
    assert_int_equal(fv_oadr_parse_time("2026-12-02 13:30:00Z", &ms), FV_EINVAL);
    assert_int_equal(fv_oadr_parse_time("2026-13-02T13:30:00Z", &ms), FV_EINVAL);
    assert_int_equal(fv_oadr_parse_duration("PT1H30M", &ms), FV_OK);
    assert_true(ms == 5400000);
    assert_int_equal(fv_oadr_parse_duration("P1DT0.5S", &ms), FV_OK);
    assert_true(ms == 86400500);
    assert_int_equal(fv_oadr_parse_duration("P2W", &ms), FV_OK);
    assert_true(ms == 14 * 86400000LL);
    assert_int_equal(fv_oadr_parse_duration("-PT5M", &ms), FV_OK);
    assert_true(ms == -300000);
    assert_int_equal(fv_oadr_parse_duration("PT", &ms), FV_EINVAL);
    assert_int_equal(fv_oadr_parse_duration("P1H", &ms), FV_EINVAL);
    assert_int_equal(fv_oadr_parse_duration("PT1D", &ms), FV_EINVAL);
    char d[40];
    fv_oadr_fmt_duration(5400000, d);
    assert_string_equal(d, "PT1H30M");
    fv_oadr_fmt_duration(0, d);
    assert_string_equal(d, "PT0S");
    fv_oadr_fmt_duration(1500, d);
    assert_string_equal(d, "PT1.500S");
    fv_oadr_fmt_duration(-60000, d);
    assert_string_equal(d, "-PT1M");
    int64_t back;
    assert_int_equal(fv_oadr_parse_duration("PT1.500S", &back), FV_OK);
    assert_true(back == 1500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_built_messages_validate),
        cmocka_unit_test(test_distribute_event),
        cmocka_unit_test(test_other_messages),
        cmocka_unit_test(test_invalid_refused),
        cmocka_unit_test(test_times),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
