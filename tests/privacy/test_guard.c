/* test_guard.c - privacy/guard.h G12: a fleet read of 10,000 subjects is accounted to every
 * one of them in a bounded set of audit entries (FV_GUARD_SUBJECTS_PER_ENTRY an entry), each
 * found by its subject, the parts pointing at the result entry. H2 (fv_guard_gate_seq): a
 * one-subject read's answer waits for its decision entry, not for its access.result; a fleet
 * read's answer waits for the result that names its subjects; other entries always gate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "privacy/audit.h"
#include "privacy/guard.h"
#include "util/err.h"

#define NSUBJECTS 10000

static char base[64], adir[128], priv[128], pub[128];

struct lines {
    size_t n, longest;
    json_t *entries;
};

static int collect(void *arg, const char *line, size_t len)
{
    struct lines *l = arg;
    l->n++;
    if (len > l->longest) l->longest = len;
    json_array_append_new(l->entries, json_loadb(line, len, 0, NULL));
    return 0;
}

/* A guard with only an audit log, in a new folder base (the log in adir). */
static void open_guard(struct fv_guard *g)
{
    char err[256];
    snprintf(base, sizeof base, "/tmp/fv-guard-XXXXXX");
    assert_non_null(mkdtemp(base));
    snprintf(adir, sizeof adir, "%s/audit", base);
    snprintf(priv, sizeof priv, "%s/audit.key", base);
    snprintf(pub, sizeof pub, "%s/audit.pub", base);
    assert_int_equal(fv_audit_keygen(priv, pub, err, sizeof err), FV_OK);
    memset(g, 0, sizeof *g);
    struct fv_audit_opts ao = {.key_path = priv};
    assert_int_equal(fv_audit_open(adir, &ao, &g->audit, err, sizeof err), FV_OK);
}

static void test_fleet_read_bounded_entries(void **state)
{
    (void)state;
    char err[256];
    struct fv_guard g;
    open_guard(&g);

    struct fv_guard_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    snprintf(ctx.principal, sizeof ctx.principal, "ops");
    snprintf(ctx.role, sizeof ctx.role, "ops");
    snprintf(ctx.purpose, sizeof ctx.purpose, "service");
    snprintf(ctx.action, sizeof ctx.action, "signals.latest");
    struct fv_guard_served s = {0};
    for (int i = 0; i < NSUBJECTS; i++) {
        char ps[33];
        snprintf(ps, sizeof ps, "%032x", i);
        fv_guard_served_add_pseudonym(&s, ps);
    }
    assert_int_equal(s.n, NSUBJECTS);
    fv_guard_done_served(&g, &ctx, &s, NSUBJECTS, 123456);
    fv_guard_served_free(&s);
    assert_int_equal(fv_audit_close(g.audit), FV_OK);

    /* every subject is found, in exactly one entry */
    for (int i = 0; i < NSUBJECTS; i += 997) {
        char ps[33];
        snprintf(ps, sizeof ps, "%032x", i);
        struct lines l = {.entries = json_array()};
        struct fv_audit_filter f = {.subject = ps};
        assert_int_equal(fv_audit_query(adir, &f, collect, &l, err, sizeof err), FV_OK);
        assert_int_equal(l.n, 1);
        json_decref(l.entries);
    }
    /* ten entries of at most FV_GUARD_SUBJECTS_PER_ENTRY subjects, well under the line limit */
    struct lines l = {.entries = json_array()};
    struct fv_audit_filter f = {.action = "signals.latest"};
    assert_int_equal(fv_audit_query(adir, &f, collect, &l, err, sizeof err), FV_OK);
    assert_int_equal(l.n, NSUBJECTS / FV_GUARD_SUBJECTS_PER_ENTRY);
    assert_true(l.longest < 40 * FV_GUARD_SUBJECTS_PER_ENTRY);
    json_t *first = json_array_get(l.entries, 0);
    assert_string_equal(json_string_value(json_object_get(first, "kind")), "access.result");
    assert_int_equal(json_integer_value(json_object_get(first, "rows")), NSUBJECTS);
    json_t *fx = json_object_get(first, "extra");
    assert_int_equal(json_integer_value(json_object_get(fx, "subjects")), NSUBJECTS);
    assert_int_equal(json_integer_value(json_object_get(fx, "parts")), l.n);
    json_int_t seq = json_integer_value(json_object_get(first, "seq"));
    size_t total = 0;
    for (size_t k = 0; k < l.n; k++) {
        json_t *e = json_array_get(l.entries, k);
        total += json_array_size(json_object_get(e, "subjects"));
        assert_string_equal(json_string_value(json_object_get(e, "principal")), "ops");
        assert_string_equal(json_string_value(json_object_get(e, "purpose")), "service");
        if (k == 0) continue;
        assert_string_equal(json_string_value(json_object_get(e, "kind")), "access.subjects");
        json_t *x = json_object_get(e, "extra");
        assert_int_equal(json_integer_value(json_object_get(x, "result_seq")), seq);
        assert_int_equal(json_integer_value(json_object_get(x, "part")), (json_int_t)k + 1);
    }
    assert_int_equal(total, NSUBJECTS);
    json_decref(l.entries);
    struct fv_audit_report rep;
    assert_int_equal(fv_audit_verify(adir, pub, NULL, &rep, err, sizeof err), FV_OK);
    assert_true(rep.ok);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    assert_int_equal(system(cmd), 0);
}

static void test_gate_seq(void **state)
{
    (void)state;
    struct fv_guard g;
    open_guard(&g);
    struct fv_guard_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    snprintf(ctx.principal, sizeof ctx.principal, "ops");
    snprintf(ctx.role, sizeof ctx.role, "ops");
    snprintf(ctx.subject, sizeof ctx.subject, "%032x", 7);
    struct fv_audit_event dec = {.kind = "access", .principal = "ops", .result = "allow"};
    /* without a keystore the guard names no subjects: the results name none */

    /* a one-subject read: decision, then its result; the answer waits for the decision only
     * (the decision recorded as the guard's own decisions record it) */
    uint64_t before = fv_audit_last_seq(g.audit), dseq = 0;
    assert_int_equal(fv_audit_append(g.audit, &dec, &dseq), FV_OK);
    g.decided_seq = dseq;
    fv_guard_done(&g, &ctx, 10, 100);
    uint64_t after = fv_audit_last_seq(g.audit);
    assert_int_equal(after, dseq + 1);
    assert_int_equal(fv_guard_gate_seq(&g, before, after), dseq);

    /* a result with no decision of its own request before it gates its answer */
    before = fv_audit_last_seq(g.audit);
    fv_guard_done(&g, &ctx, 10, 100);
    after = fv_audit_last_seq(g.audit);
    assert_int_equal(fv_guard_gate_seq(&g, before, after), after);

    /* an entry after the result (another decision): everything gates */
    before = fv_audit_last_seq(g.audit);
    assert_int_equal(fv_audit_append(g.audit, &dec, &dseq), FV_OK);
    g.decided_seq = dseq;
    fv_guard_done(&g, &ctx, 10, 100);
    assert_int_equal(fv_audit_append(g.audit, &dec, NULL), FV_OK);
    after = fv_audit_last_seq(g.audit);
    assert_int_equal(fv_guard_gate_seq(&g, before, after), after);

    /* a fleet read: its result names the subjects served (G12) and gates the answer */
    before = fv_audit_last_seq(g.audit);
    assert_int_equal(fv_audit_append(g.audit, &dec, &dseq), FV_OK);
    g.decided_seq = dseq;
    struct fv_guard_served s = {0};
    fv_guard_served_add_pseudonym(&s, ctx.subject);
    fv_guard_done_served(&g, &ctx, &s, 1, 100);
    fv_guard_served_free(&s);
    after = fv_audit_last_seq(g.audit);
    assert_int_equal(after, dseq + 1);
    assert_int_equal(fv_guard_gate_seq(&g, before, after), after);

    /* admin entries and decisions alone gate */
    before = fv_audit_last_seq(g.audit);
    assert_int_equal(fv_audit_append(g.audit, &dec, NULL), FV_OK);
    after = fv_audit_last_seq(g.audit);
    assert_int_equal(fv_guard_gate_seq(&g, before, after), after);

    assert_int_equal(fv_audit_close(g.audit), FV_OK);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fleet_read_bounded_entries),
                                       cmocka_unit_test(test_gate_seq)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
