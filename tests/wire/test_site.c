/* test_site.c - the `site` payload (wire/site.h): round trip, every check refusing an
 * impossible value with a reason naming it, the stored V record and the signal names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "util/err.h"
#include "wire/payload.h"
#include "wire/signals.h"
#include "wire/site.h"

static struct fv_site_sample good(void)
{
    return (struct fv_site_sample){.created_at_ms = 1795000000123ULL,
                                   .battery_kw = 2.5,
                                   .energy_kwh = 10.0,
                                   .capacity_kwh = 13.5,
                                   .reserve_pct = 20,
                                   .solar_kw = 3.1,
                                   .load_kw = 1.2,
                                   .grid_kw = -4.4,
                                   .mode = FV_SITE_MODE_SELF_POWERED,
                                   .inverter_kw = 5,
                                   .export_limit_kw = 4};
}

static void test_round_trip(void **state)
{
    (void)state;
    struct fv_site_sample s = good(), back;
    struct fv_buf b = {0};
    assert_int_equal(fv_site_encode(&s, "SITE1", &b), FV_OK);
    char err[200] = "";
    assert_int_equal(fv_site_decode(b.data, b.len, &back, err, sizeof err), FV_OK);
    assert_memory_equal(&s, &back, sizeof s);
    /* normalise: the stored V record carries every signal, vin := the certificate's id */
    struct fv_buf v_pl = {0};
    struct fv_vrecord v;
    assert_int_equal(fv_site_normalise(b.data, b.len, "CERT-ID", &v_pl, &v, err, sizeof err),
                     FV_OK);
    assert_string_equal(v.vin, "CERT-ID");
    assert_int_equal(v.n, FV_SITE_SIGNALS);
    assert_int_equal(v.created_at_ms, s.created_at_ms);
    assert_int_equal(v.data[0].field, FV_SIG_SITE_BATTERY_KW);
    assert_true(v.data[0].value.u.d == 2.5);
    struct fv_vrecord dec;
    assert_int_equal(fv_payload_decode_v(v_pl.data, v_pl.len, &dec, err, sizeof err), FV_OK);
    assert_int_equal(dec.n, FV_SITE_SIGNALS);
    for (size_t i = 0; i < dec.n; i++) {
        assert_int_equal(dec.data[i].field, v.data[i].field);
        assert_true(fv_value_equal(&dec.data[i].value, &v.data[i].value));
    }
    fv_vrecord_free(&dec);
    fv_vrecord_free(&v);
    fv_buf_free(&v_pl);
    fv_buf_free(&b);
}

/* Each impossible value is refused, and the reason names the field. */
static void test_checks(void **state)
{
    (void)state;
    char err[200];
    struct fv_site_sample s;
#define REFUSED(stmt, word)                                                                        \
    do {                                                                                           \
        s = good();                                                                                \
        stmt;                                                                                      \
        err[0] = '\0';                                                                             \
        assert_int_equal(fv_site_check(&s, err, sizeof err), FV_EPROTO);                           \
        if (strstr(err, word) == NULL) fail_msg("'%s' does not name %s", err, word);               \
    } while (0)
    REFUSED(s.capacity_kwh = -1, "capacity_kwh");
    REFUSED(s.capacity_kwh = 0, "capacity_kwh");
    REFUSED(s.capacity_kwh = NAN, "capacity_kwh");
    REFUSED(s.reserve_pct = 101, "reserve_pct");
    REFUSED(s.reserve_pct = -0.5, "reserve_pct");
    REFUSED(s.energy_kwh = 20, "energy_kwh"); /* above 13.5 * 1.05 */
    REFUSED(s.energy_kwh = -1, "energy_kwh");
    REFUSED(s.solar_kw = -0.1, "solar_kw");
    REFUSED(s.load_kw = INFINITY, "load_kw");
    REFUSED(s.inverter_kw = 0, "inverter_kw");
    REFUSED(s.battery_kw = 7.6, "battery_kw"); /* above 5 kW * 1.5 */
    REFUSED(s.battery_kw = -7.6, "battery_kw");
    REFUSED(s.export_limit_kw = -1, "export_limit_kw");
    REFUSED(s.grid_kw = NAN, "grid_kw");
    REFUSED(s.mode = 9, "mode");
    REFUSED(s.created_at_ms = 0, "created_at");
#undef REFUSED
    /* at the limits: accepted */
    s = good();
    s.energy_kwh = s.capacity_kwh * 1.05;
    s.battery_kw = -7.5;
    s.reserve_pct = 100;
    assert_int_equal(fv_site_check(&s, err, sizeof err), FV_OK);
}

static void test_garbage_and_names(void **state)
{
    (void)state;
    static const unsigned char junk[] = {0xff, 0xff, 0xff, 0x01};
    struct fv_site_sample s;
    char err[200] = "";
    assert_int_equal(fv_site_decode(junk, sizeof junk, &s, err, sizeof err), FV_EPROTO);
    assert_non_null(strstr(err, "protobuf"));
    assert_string_equal(fv_signal_name(FV_SIG_SITE_BATTERY_KW), "SiteBatteryPower");
    assert_int_equal(fv_signal_lookup("SiteExportLimit"), FV_SIG_SITE_EXPORT_LIMIT_KW);
    assert_null(fv_signal_name(FV_SIG_SITE_END));
    for (unsigned n = FV_SIG_SITE_FIRST; n < FV_SIG_SITE_END; n++)
        assert_int_equal(fv_signal_lookup(fv_signal_name(n)), (long)n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_checks),
        cmocka_unit_test(test_garbage_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
