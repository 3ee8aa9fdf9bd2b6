/* test_stats_hist.c - api/stats_hist.h: a sample at most every FV_STATS_INTERVAL_MS, the
 * counters summed as documented, the ring keeping the newest FV_STATS_SAMPLES oldest first
 * once it wraps, and "since" leaving out what the page already has. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/stats_hist.h"

static json_t *samples(const struct fv_stats_hist *h, uint64_t since)
{
    json_t *j = fv_stats_hist_json(h, since);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "interval_ms")), FV_STATS_INTERVAL_MS);
    json_t *s = json_incref(json_object_get(j, "samples"));
    json_decref(j);
    return s;
}

static uint64_t field(json_t *s, size_t i, const char *k)
{
    return (uint64_t)json_integer_value(json_object_get(json_array_get(s, i), k));
}

static void interval_and_sums(void **state)
{
    (void)state;
    struct fv_fleet fleet;
    fv_fleet_init(&fleet);
    static struct fv_metrics m;
    static struct fv_stats_hist h;
    m.connections_open = 3;
    m.records_stored[0] = 10;
    m.records_stored[2] = 5;
    m.rejected[0] = 1;
    m.rejected[FV_REJ_RATE] = 2;
    m.acks_sent = 15;
    m.errors_sent = 3;
    fv_stats_hist_tick(&h, &m, &fleet, 100000);
    fv_stats_hist_tick(&h, &m, &fleet, 100000 + FV_STATS_INTERVAL_MS - 1); /* too soon */
    m.acks_sent = 20;
    fv_stats_hist_tick(&h, &m, &fleet, 100000 + FV_STATS_INTERVAL_MS);
    json_t *s = samples(&h, 0);
    assert_int_equal(json_array_size(s), 2);
    assert_int_equal(field(s, 0, "t"), 100000);
    assert_int_equal(field(s, 0, "connections"), 3);
    assert_int_equal(field(s, 0, "devices"), 0);
    assert_int_equal(field(s, 0, "records"), 15);
    assert_int_equal(field(s, 0, "rejected"), 3);
    assert_int_equal(field(s, 0, "acks"), 15);
    assert_int_equal(field(s, 0, "errors"), 3);
    assert_int_equal(field(s, 1, "acks"), 20);
    json_decref(s);
    s = samples(&h, 100000); /* since: strictly after */
    assert_int_equal(json_array_size(s), 1);
    assert_int_equal(field(s, 0, "t"), 100000 + FV_STATS_INTERVAL_MS);
    json_decref(s);
    fv_fleet_free(&fleet);
}

static void ring_wraps_oldest_first(void **state)
{
    (void)state;
    struct fv_fleet fleet;
    fv_fleet_init(&fleet);
    static struct fv_metrics m;
    static struct fv_stats_hist h;
    const size_t n = FV_STATS_SAMPLES + 250;
    for (size_t i = 0; i < n; i++) {
        m.acks_sent = i;
        fv_stats_hist_tick(&h, &m, &fleet, 1000 + i * FV_STATS_INTERVAL_MS);
    }
    json_t *s = samples(&h, 0);
    assert_int_equal(json_array_size(s), FV_STATS_SAMPLES);
    for (size_t i = 0; i < FV_STATS_SAMPLES; i++) {
        assert_int_equal(field(s, i, "acks"), n - FV_STATS_SAMPLES + i);
        assert_int_equal(field(s, i, "t"),
                         1000 + (n - FV_STATS_SAMPLES + i) * FV_STATS_INTERVAL_MS);
    }
    json_decref(s);
    fv_fleet_free(&fleet);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(interval_and_sums),
                                       cmocka_unit_test(ring_wraps_oldest_first)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
