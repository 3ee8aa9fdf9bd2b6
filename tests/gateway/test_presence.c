/* test_presence.c - presence across gateways (gateway/presence.h): the codec, the newest
 * claim winning (P1, P2), the rate buckets handed over with a debt (P3), a storage node's
 * view of connected devices (P4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "gateway/presence.h"
#include "util/clock.h"
#include "util/err.h"

struct sent {
    struct fv_pres_msg m[8];
    int n;
};

static void capture(void *arg, const struct fv_pres_msg *m)
{
    struct sent *s = arg;
    if (s->n < 8) s->m[s->n++] = *m;
}

static void test_codec(void **state)
{
    (void)state;
    struct fv_pres_msg m = {.kind = FV_PRES_BUCKETS, .stamp = 1767225600123ull, .nlevels = 2};
    strcpy(m.gateway, "gw-a");
    strcpy(m.device, "5YJ3E1EA7KF000001");
    strcpy(m.extra, "gw-b");
    strcpy(m.levels[0].topic, "V");
    m.levels[0].tokens = -2.5;
    strcpy(m.levels[1].topic, "*");
    m.levels[1].tokens = 49.125;
    unsigned char buf[FV_PRES_MSG_MAX];
    long n = fv_pres_encode(&m, buf, sizeof buf);
    assert_true(n > 0);
    struct fv_pres_msg back;
    assert_int_equal(fv_pres_decode(buf, (size_t)n, &back), FV_OK);
    assert_int_equal(back.kind, FV_PRES_BUCKETS);
    assert_string_equal(back.gateway, "gw-a");
    assert_string_equal(back.device, "5YJ3E1EA7KF000001");
    assert_string_equal(back.extra, "gw-b");
    assert_true(back.stamp == m.stamp);
    assert_int_equal(back.nlevels, 2);
    assert_string_equal(back.levels[1].topic, "*");
    assert_true(back.levels[0].tokens == -2.5 && back.levels[1].tokens == 49.125);
    for (long cut = 0; cut < n; cut++) /* every truncation refused */
        assert_int_equal(fv_pres_decode(buf, (size_t)cut, &back), FV_EPROTO);
    buf[0] = 2; /* another version */
    assert_int_equal(fv_pres_decode(buf, (size_t)n, &back), FV_EPROTO);
    buf[0] = FV_PRES_VERSION;
    buf[1] = 9; /* an unknown kind */
    assert_int_equal(fv_pres_decode(buf, (size_t)n, &back), FV_EPROTO);
    memset(m.device, 'x', FV_PRES_NAME_MAX); /* the longest name fits; a buffer too small not */
    assert_true(fv_pres_encode(&m, buf, sizeof buf) > 0);
    assert_int_equal(fv_pres_encode(&m, buf, 40), -1);
}

static const struct fv_rate_rule *rule_v(const struct fv_rate_config *rc)
{
    return &rc->rules[fv_rate_rule_for(rc, "V", 1)];
}

/* Two gateways in one process: a's device hops to b. */
static void test_claim_and_hand_over(void **state)
{
    (void)state;
    struct fv_rate_config rc = {0};
    assert_int_equal(fv_rate_set(&rc, "V", 5, 5), FV_OK);
    struct fv_fleet fa = {0}, fb = {0};
    struct sent sa = {0}, sb = {0};
    struct fv_presence *a, *b;
    struct fv_presence_deps da = {.gateway = 1,
                                  .name = "gw-a",
                                  .fleet = &fa,
                                  .rates = &rc,
                                  .publish = capture,
                                  .publish_arg = &sa};
    struct fv_presence_deps db = da;
    db.name = "gw-b";
    db.fleet = &fb;
    db.publish_arg = &sb;
    assert_int_equal(fv_presence_new(&da, &a), FV_OK);
    assert_int_equal(fv_presence_new(&db, &b), FV_OK);
    int v = fv_rate_rule_for(&rc, "V", 1);

    /* a: the device connects, takes 4 of its 5 tokens, closes */
    struct fv_device *x = fv_fleet_device(&fa, "DEV1", "vehicle_device");
    x->claim_ms = fv_now_ms() + 60000; /* a stamp heard before, ahead of the clock */
    x->sessions = 1;
    fv_presence_connected(a, x);
    assert_int_equal(sa.n, 1);
    assert_int_equal(sa.m[0].kind, FV_PRES_CLAIM);
    assert_true(sa.m[0].stamp == x->claim_ms); /* P1: raised above what it heard */
    assert_string_equal(sa.m[0].extra, "vehicle_device");
    struct fv_bucket *bx = fv_device_bucket(x, v, rc.n);
    uint64_t now = fv_mono_ns();
    for (int i = 0; i < 4; i++)
        assert_true(fv_bucket_take(bx, rule_v(&rc), now));
    x->sessions = 0;
    fv_presence_closed(a, x);
    assert_int_equal(sa.n, 2);
    assert_int_equal(sa.m[1].kind, FV_PRES_GONE);

    /* P7: what a counted goes out with its next tick, once */
    fv_presence_counted(a, x, 0);
    fv_presence_counted(a, x, 0);
    fv_presence_counted(a, x, 1);
    fv_presence_tick(a);
    assert_int_equal(sa.n, 4); /* COUNTS, then ALIVE */
    assert_int_equal(sa.m[2].kind, FV_PRES_COUNTS);
    assert_string_equal(sa.m[2].device, "DEV1");
    assert_true(sa.m[2].levels[0].tokens == 1 && sa.m[2].levels[1].tokens == 2);
    assert_int_equal(sa.m[3].kind, FV_PRES_ALIVE);
    sa.n = 2;
    fv_presence_tick(a); /* within the second: nothing */
    assert_int_equal(sa.n, 2);

    /* an older claim from b changes nothing at a (no connection to defend: silent) */
    struct fv_pres_msg old = sa.m[0];
    strcpy(old.gateway, "gw-b");
    old.stamp = x->claim_ms - 1;
    fv_presence_take(a, &old);
    assert_int_equal(sa.n, 2);
    assert_true(x->claim_here);

    /* b: the device connects there (b heard a's claim: its stamp is newer), takes 3 of its
     * own full bucket before a's levels arrive */
    struct fv_device *y = fv_fleet_device(&fb, "DEV1", "vehicle_device");
    fv_presence_take(b, &sa.m[0]); /* a's claim, heard by b */
    y->sessions = 1;
    fv_presence_connected(b, y);
    assert_true(y->claim_ms > x->claim_ms);
    struct fv_bucket *by = fv_device_bucket(y, v, rc.n);
    for (int i = 0; i < 3; i++)
        assert_true(fv_bucket_take(by, rule_v(&rc), fv_mono_ns()));

    /* a hears b's claim: it stops metering and hands its levels to b */
    fv_presence_take(a, &sb.m[0]);
    assert_false(x->claim_here);
    assert_true(x->claim_ms == y->claim_ms);
    assert_int_equal(sa.n, 3);
    struct fv_pres_msg *h = &sa.m[2];
    assert_int_equal(h->kind, FV_PRES_BUCKETS);
    assert_string_equal(h->extra, "gw-b");
    assert_int_equal(h->nlevels, 1);
    assert_true(h->levels[0].tokens >= 1.0 && h->levels[0].tokens < 1.5);
    /* a second claim of b's (a SYNC) hands nothing over again */
    fv_presence_take(a, &sb.m[0]);
    assert_int_equal(sa.n, 3);

    /* b applies them: 1 token there, minus the 3 it took since its claim: a debt of 2 */
    fv_presence_take(b, h);
    assert_true(by->tokens > -2.01 && by->tokens < -1.5);
    assert_false(fv_bucket_take(by, rule_v(&rc), fv_mono_ns()));
    /* the debt refills at the rule's rate: 5/s, so 0.6 s later one token is there */
    assert_true(fv_bucket_take(by, rule_v(&rc), fv_mono_ns() + 600000000ull));
    /* levels for a claim b never made (newer than its own) or another gateway are ignored */
    double before = by->tokens;
    struct fv_pres_msg stale = *h;
    stale.stamp++;
    stale.levels[0].tokens = -100;
    fv_presence_take(b, &stale);
    strcpy(stale.extra, "gw-c");
    stale.stamp--;
    fv_presence_take(b, &stale);
    assert_true(by->tokens == before);
    fv_presence_free(a);
    fv_presence_free(b);
    fv_fleet_free(&fa);
    fv_fleet_free(&fb);
}

static int wants_none(void *arg, const char *id)
{
    (void)arg;
    return strcmp(id, "OTHER") != 0;
}

/* A storage node: the newest claim, its gateway's GONE, a gateway restarted. */
static void test_storage_view(void **state)
{
    (void)state;
    struct fv_fleet f = {0};
    struct sent s = {0};
    struct fv_presence *p;
    struct fv_presence_deps d = {.gateway = 0,
                                 .name = "st1",
                                 .fleet = &f,
                                 .publish = capture,
                                 .publish_arg = &s,
                                 .wanted = wants_none};
    assert_int_equal(fv_presence_new(&d, &p), FV_OK);
    fv_presence_tick(p); /* P5: it asks once */
    assert_int_equal(s.n, 1);
    assert_int_equal(s.m[0].kind, FV_PRES_SYNC);
    struct fv_pres_msg m = {.kind = FV_PRES_ALIVE, .stamp = 1};
    strcpy(m.gateway, "gw-a");
    fv_presence_take(p, &m);
    m = (struct fv_pres_msg){.kind = FV_PRES_CLAIM, .stamp = 100};
    strcpy(m.gateway, "gw-a");
    strcpy(m.device, "DEV1");
    strcpy(m.extra, "vehicle_device");
    fv_presence_take(p, &m);
    struct fv_device *x = fv_fleet_find(&f, "DEV1");
    assert_non_null(x);
    assert_string_equal(x->client_type, "vehicle_device");
    assert_int_equal(x->sessions, 1);
    strcpy(m.device, "OTHER"); /* not this node's shard: not added */
    fv_presence_take(p, &m);
    assert_null(fv_fleet_find(&f, "OTHER"));
    /* moved to gw-b; gw-a's late GONE does not disconnect it, gw-b's does */
    strcpy(m.device, "DEV1");
    strcpy(m.gateway, "gw-b");
    m.stamp = 200;
    fv_presence_take(p, &m);
    struct fv_pres_msg g = m;
    g.kind = FV_PRES_GONE;
    strcpy(g.gateway, "gw-a");
    g.stamp = 100;
    fv_presence_take(p, &g);
    assert_int_equal(x->sessions, 1);
    strcpy(g.gateway, "gw-b");
    g.stamp = 200;
    fv_presence_take(p, &g);
    assert_int_equal(x->sessions, 0);
    /* back on gw-a, which then restarts (a new boot time): shown disconnected */
    strcpy(m.gateway, "gw-a");
    m.stamp = 300;
    fv_presence_take(p, &m);
    assert_int_equal(x->sessions, 1);
    struct fv_pres_msg al = {.kind = FV_PRES_ALIVE, .stamp = 2};
    strcpy(al.gateway, "gw-a");
    fv_presence_take(p, &al);
    assert_int_equal(x->sessions, 0);
    struct fv_presence_counts c;
    fv_presence_counts(p, &c);
    assert_int_equal(c.gateways_lost, 1);
    /* P7: a gateway's counts are added to the device's */
    struct fv_pres_msg cn = {.kind = FV_PRES_COUNTS, .nlevels = 2};
    strcpy(cn.gateway, "gw-b");
    strcpy(cn.device, "DEV1");
    strcpy(cn.levels[0].topic, FV_PRES_DUPLICATES);
    cn.levels[0].tokens = 2;
    strcpy(cn.levels[1].topic, FV_PRES_RATE_LIMITED);
    cn.levels[1].tokens = 7;
    fv_presence_take(p, &cn);
    fv_presence_take(p, &cn);
    assert_int_equal(x->duplicates, 4);
    assert_int_equal(x->rate_limited, 14);
    fv_presence_free(p);
    fv_fleet_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec),
        cmocka_unit_test(test_claim_and_hand_over),
        cmocka_unit_test(test_storage_view),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
