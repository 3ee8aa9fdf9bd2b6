/* test_trigger.c - the trigger language (data/trigger.h): parse errors naming the column,
 * unknown signals, limits, and the evaluator's rules T1-T5 on hand-made sample sequences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/trigger.h"
#include "util/err.h"

static struct fv_trigger *compile_ok(const char *text)
{
    struct fv_trigger *t = NULL;
    char err[200] = "";
    int rc = fv_trigger_compile(text, fv_trigger_known_signal, NULL, &t, err, sizeof err);
    if (rc != FV_OK) fprintf(stderr, "%s: %s\n", text, err);
    assert_int_equal(rc, FV_OK);
    return t;
}

/* Compiles text, expects FV_EINVAL with err starting with want. */
static void compile_bad(const char *text, const char *want)
{
    struct fv_trigger *t = (struct fv_trigger *)1;
    char err[200] = "";
    int rc = fv_trigger_compile(text, fv_trigger_known_signal, NULL, &t, err, sizeof err);
    if (rc != FV_EINVAL) fail_msg("%s: compiled (rc %d), want \"%s\"", text, rc, want);
    assert_null(t);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", text, err, want);
}

static void test_errors_name_the_column(void **state)
{
    (void)state;
    compile_bad("(VehicleSpeed > 30", "column 19: expected ')'");
    compile_bad("VehicleSpeed > 30 and (Gear == 5", "column 33: expected ')'");
    compile_bad("VehicleSpeed >", "column 15: expected a signal");
    compile_bad("", "column 1: empty trigger");
    compile_bad("Speedy > 3", "column 1: unknown signal 'Speedy'");
    compile_bad("VehicleSpeed > 3 and Foo < 1", "column 22: unknown signal 'Foo'");
    compile_bad("VehicleSpeed = 3", "column 14: '=' is not an operator");
    compile_bad("VehicleSpeed > 3 for 2", "column 22: expected a duration");
    compile_bad("VehicleSpeed > 3 for 2h", "column 22: expected a duration");
    compile_bad("VehicleSpeed > 3 for 2s for 1s", "column 25: one 'for'");
    compile_bad("VehicleSpeed > 3s", "column 16: unexpected letters");
    compile_bad("VehicleSpeed > \"fast\"", "column 14: '<', '<=', '>', '>=' compare numbers");
    compile_bad("3 == \"x\"", "column 3: compares a number with a string");
    compile_bad("1 < VehicleSpeed < 3", "column 18: comparisons do not chain");
    compile_bad("VehicleSpeed > 3)", "column 17: unexpected ')'");
    compile_bad("VehicleSpeed > 3 Gear", "column 18: expected 'and', 'or'");
    compile_bad("wobble(Gear)", "column 1: unknown function 'wobble'");
    compile_bad("rises_above(VehicleSpeed)", "column 25: expected ','");
    compile_bad("rises_above(3, 4)", "column 13: rises_above() takes a signal");
    compile_bad("changed(Nope)", "column 9: unknown signal 'Nope'");
    compile_bad("Gear == 'D", "column 9: unterminated string");
    compile_bad("VehicleSpeed # 3", "column 14: unexpected character '#'");
    compile_bad("3", "column 1: the trigger is a value");
    fv_trigger_free(compile_ok("Locked or not DCDCEnable")); /* T1: bare signals */
    compile_bad("VehicleSpeed + 1 > 3", "column 14: unexpected character '+'");
    compile_bad("not 3", "column 1: 'not' takes a condition");
    compile_bad("VehicleSpeed > 1 & Gear == 5", "column 18: use '&&'");
    compile_bad("VehicleSpeed > 0x10", "column 16: malformed number");
    compile_bad("VehicleSpeed > 3 for 2s and 4", "column 25: 'and' joins conditions");
}

static void test_limits(void **state)
{
    (void)state;
    char big[FV_TRIGGER_MAX_LEN + 8];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "Gear == 1", 9);
    compile_bad(big, "column 1025: the trigger is longer than 1024 bytes");
    char deep[200] = "";
    for (int i = 0; i < 33; i++)
        strcat(deep, "(");
    strcat(deep, "Gear == 1");
    compile_bad(deep, "column 33: nested deeper than 32");
    /* 32 levels are fine */
    char ok[300] = "";
    for (int i = 0; i < 32; i++)
        strcat(ok, "(");
    strcat(ok, "Gear == 1");
    for (int i = 0; i < 32; i++)
        strcat(ok, ")");
    fv_trigger_free(compile_ok(ok));
    char many[FV_TRIGGER_MAX_LEN + 1] = "Gear == 1";
    while (strlen(many) + 12 < sizeof many)
        strcat(many, " or Gear==1");
    compile_bad(many, "column ");
    compile_bad("VehicleSpeed > 3 for 61m", "column 22: duration longer than 1 hour");
    char name[100];
    memset(name, 'a', 70);
    name[70] = '\0';
    compile_bad(name, "column 1: name longer than 63 bytes");
}

static void test_signals_and_slots(void **state)
{
    (void)state;
    struct fv_trigger *t =
        compile_ok("VehicleSpeed > 30 and (Gear == 5 or changed(VehicleSpeed)) and alert.BrakeLow");
    assert_int_equal(fv_trigger_nsignals(t), 3);
    assert_string_equal(fv_trigger_signal(t, 0), "VehicleSpeed");
    assert_string_equal(fv_trigger_signal(t, 1), "Gear");
    assert_string_equal(fv_trigger_signal(t, 2), "alert.BrakeLow");
    assert_int_equal(fv_trigger_slot(t, "Gear"), 1);
    assert_int_equal(fv_trigger_slot(t, "Odometer"), -1);
    assert_null(fv_trigger_signal(t, 3));
    fv_trigger_free(t);
    /* known NULL accepts any name */
    struct fv_trigger *u = NULL;
    char err[100];
    assert_int_equal(fv_trigger_compile("Whatever >= -2.5e1", NULL, NULL, &u, err, sizeof err),
                     FV_OK);
    fv_trigger_free(u);
}

static void test_compare_and_edge(void **state)
{
    (void)state;
    struct fv_trigger *t = compile_ok("VehicleSpeed > 30 && Gear == 5");
    struct fv_trigger_state *s;
    assert_int_equal(fv_trigger_state_new(t, &s), FV_OK);
    int level;
    /* T1: no value yet -> false */
    assert_int_equal(fv_trigger_step(s, 0, &level), 0);
    assert_int_equal(level, 0);
    fv_trigger_set_num(s, 0, 40);
    assert_int_equal(fv_trigger_step(s, 1000, &level), 0); /* Gear missing */
    fv_trigger_set_num(s, 1, 5);
    assert_int_equal(fv_trigger_step(s, 2000, &level), 1); /* T4: fires on the edge */
    assert_int_equal(fv_trigger_step(s, 3000, &level), 0); /* still true: no second fire */
    assert_int_equal(level, 1);
    fv_trigger_set_num(s, 0, 20);
    assert_int_equal(fv_trigger_step(s, 4000, &level), 0);
    assert_int_equal(level, 0);
    fv_trigger_set_num(s, 0, 31);
    assert_int_equal(fv_trigger_step(s, 5000, NULL), 1); /* again after false */
    fv_trigger_set_str(s, 1, "D");                       /* T1: a string vs a number */
    assert_int_equal(fv_trigger_step(s, 6000, &level), 0);
    assert_int_equal(level, 0);
    fv_trigger_state_free(s);
    fv_trigger_free(t);

    t = compile_ok("not (Gear == 'D') or VehicleSpeed <= -1");
    assert_int_equal(fv_trigger_state_new(t, &s), FV_OK);
    fv_trigger_set_str(s, 0, "D");
    assert_int_equal(fv_trigger_step(s, 0, &level), 0);
    fv_trigger_set_num(s, 1, -1);
    assert_int_equal(fv_trigger_step(s, 1, &level), 1);
    fv_trigger_set_none(s, 1);
    fv_trigger_set_str(s, 0, "P");
    assert_int_equal(fv_trigger_step(s, 2, &level), 0);
    assert_int_equal(level, 1);
    fv_trigger_state_free(s);
    fv_trigger_free(t);
}

static void test_changed_rises_falls(void **state)
{
    (void)state;
    struct fv_trigger *t = compile_ok("changed(Gear)");
    struct fv_trigger_state *s;
    assert_int_equal(fv_trigger_state_new(t, &s), FV_OK);
    int level;
    fv_trigger_set_num(s, 0, 2);
    assert_int_equal(fv_trigger_step(s, 0, &level), 0); /* T2: not at the first value */
    fv_trigger_set_num(s, 0, 2);
    assert_int_equal(fv_trigger_step(s, 1, &level), 0); /* same value */
    fv_trigger_set_num(s, 0, 3);
    fv_trigger_set_num(s, 0, 2); /* changed and back within one step: compares to the step */
    assert_int_equal(fv_trigger_step(s, 2, &level), 0);
    fv_trigger_set_num(s, 0, 5);
    assert_int_equal(fv_trigger_step(s, 3, &level), 1);
    assert_int_equal(fv_trigger_step(s, 4, &level), 0); /* no new value: not changed */
    assert_int_equal(level, 0);
    fv_trigger_state_free(s);
    fv_trigger_free(t);

    t = compile_ok("rises_above(BatteryLevel, 80) or falls_below(BatteryLevel, -0.5)");
    assert_int_equal(fv_trigger_state_new(t, &s), FV_OK);
    fv_trigger_set_num(s, 0, 90);
    assert_int_equal(fv_trigger_step(s, 0, NULL), 0); /* first value: no crossing */
    fv_trigger_set_num(s, 0, 70);
    assert_int_equal(fv_trigger_step(s, 1, NULL), 0);
    fv_trigger_set_num(s, 0, 80);
    assert_int_equal(fv_trigger_step(s, 2, NULL), 0); /* == v is not above */
    fv_trigger_set_num(s, 0, 80.5);
    assert_int_equal(fv_trigger_step(s, 3, NULL), 1);
    fv_trigger_set_num(s, 0, 99);
    assert_int_equal(fv_trigger_step(s, 4, NULL), 0);
    fv_trigger_set_num(s, 0, -0.5);
    assert_int_equal(fv_trigger_step(s, 5, NULL), 0);
    fv_trigger_set_num(s, 0, -1);
    assert_int_equal(fv_trigger_step(s, 6, NULL), 1);
    fv_trigger_state_free(s);
    fv_trigger_free(t);
}

static void test_for(void **state)
{
    (void)state;
    /* T3, T5: the clock runs even when the other operand is false */
    struct fv_trigger *t = compile_ok("Gear == 5 and VehicleSpeed > 100 for 2s");
    struct fv_trigger_state *s;
    assert_int_equal(fv_trigger_state_new(t, &s), FV_OK);
    int level;
    fv_trigger_set_num(s, 1, 120);
    assert_int_equal(fv_trigger_step(s, 1000, &level), 0);
    assert_int_equal(fv_trigger_step(s, 2500, &level), 0);
    fv_trigger_set_num(s, 0, 5);
    assert_int_equal(fv_trigger_step(s, 2900, &level), 0); /* 1.9 s */
    assert_int_equal(fv_trigger_step(s, 3000, &level), 1); /* 2 s since 1000 */
    fv_trigger_set_num(s, 1, 90);
    assert_int_equal(fv_trigger_step(s, 3100, &level), 0); /* one false step restarts */
    fv_trigger_set_num(s, 1, 130);
    assert_int_equal(fv_trigger_step(s, 3200, &level), 0);
    assert_int_equal(fv_trigger_step(s, 5100, &level), 0);
    assert_int_equal(fv_trigger_step(s, 5200, &level), 1);
    fv_trigger_state_free(s);
    fv_trigger_free(t);

    t = compile_ok("(VehicleSpeed > 1 for 500ms) or (Gear == 4 for 1.5s)");
    assert_int_equal(fv_trigger_state_new(t, &s), FV_OK);
    fv_trigger_set_num(s, 1, 4);
    assert_int_equal(fv_trigger_step(s, 0, &level), 0);
    assert_int_equal(fv_trigger_step(s, 1499, &level), 0);
    assert_int_equal(fv_trigger_step(s, 1500, &level), 1);
    fv_trigger_state_free(s);
    fv_trigger_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_name_the_column), cmocka_unit_test(test_limits),
        cmocka_unit_test(test_signals_and_slots),      cmocka_unit_test(test_compare_and_edge),
        cmocka_unit_test(test_changed_rises_falls),    cmocka_unit_test(test_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
