/*
 * trigger.h - the campaigns' trigger language (issue 12; docs/data-engine.md "Campaigns"):
 * a condition over a vehicle's signals, compiled once and evaluated per vehicle on samples
 * fed in time order. The server compiles it to check a campaign (errors name the column);
 * the vehicle (the simulator) evaluates it on its own signals.
 *
 * Language:
 *   expr    := or ;  or := and (("or" | "||") and)* ;  and := for (("and" | "&&") for)*
 *   for     := unary ["for" DURATION]              DURATION: 500ms, 2s, 1.5s, 3m
 *   unary   := ("not" | "!") unary | cmp
 *   cmp     := primary [("<" | "<=" | ">" | ">=" | "==" | "!=") primary]
 *   primary := NUMBER | STRING ("..." or '...') | true | false | SIGNAL
 *            | changed(SIGNAL) | rises_above(SIGNAL, NUMBER) | falls_below(SIGNAL, NUMBER)
 *            | "(" expr ")"
 *   SIGNAL  := a fleet-telemetry signal name (VehicleSpeed, Gear, BatteryLevel ...; the
 *              caller's `known` decides) or alert.NAME (1 while the alert is active).
 * Keywords are lower case; signal names are case-sensitive. Enums (Gear) compare as their
 * wire numbers, booleans as 1 and 0.
 *
 * Meaning (evaluated at every step, on the latest value of each signal):
 *  T1 a comparison with a signal that has no value yet, or of a number with a string, is
 *     false; a bare signal is true when it is a non-zero number or a non-empty string;
 *  T2 changed(x) is true at the step where x got a value different from its value at the
 *     previous step (not at its first value); rises_above(x, v): x was <= v at the previous
 *     step and is > v now; falls_below(x, v): was >= v and is < v now;
 *  T3 `e for D` is true once e has been true at every step for at least D (since the first
 *     step it became true); one false step restarts it;
 *  T4 a trigger fires (fv_trigger_step returns 1) when the whole condition goes from false
 *     to true; it fires again only after being false at a step;
 *  T5 every sub-expression is evaluated at every step (no short-circuit), so `for` and the
 *     edge functions keep their state whatever the other operands are.
 * Limits (FV_EINVAL with the column past them): FV_TRIGGER_MAX_LEN bytes of text,
 * FV_TRIGGER_MAX_DEPTH nested operators or parentheses, FV_TRIGGER_MAX_OPS instructions,
 * FV_TRIGGER_MAX_SIGNALS distinct signals, FV_TRIGGER_MAX_NAME bytes per name or string,
 * durations up to FV_TRIGGER_MAX_FOR_MS.
 *
 * Threads: a compiled trigger is immutable and may be shared by threads; a state belongs to
 * one thread at a time. No global state.
 */
#ifndef FV_DATA_TRIGGER_H
#define FV_DATA_TRIGGER_H

#include <stddef.h>
#include <stdint.h>

#include "wire/payload.h"

#define FV_TRIGGER_MAX_LEN     1024
#define FV_TRIGGER_MAX_DEPTH   32
#define FV_TRIGGER_MAX_OPS     256
#define FV_TRIGGER_MAX_SIGNALS 32
#define FV_TRIGGER_MAX_NAME    63
#define FV_TRIGGER_MAX_FOR_MS  3600000

struct fv_trigger;
struct fv_trigger_state;

/* Is name a signal the trigger may use? 1 yes, 0 no. */
typedef int (*fv_trigger_known_fn)(void *arg, const char *name);

/* The fleet-telemetry signal names (wire/signals.h) and alert.NAME: a fv_trigger_known_fn. */
int fv_trigger_known_signal(void *arg, const char *name);

/* Compiles text. known NULL accepts every name. FV_OK with *out (free it); FV_EINVAL with err
 * "column N: ..." (1-based byte column); FV_ENOMEM. */
int fv_trigger_compile(const char *text, fv_trigger_known_fn known, void *arg,
                       struct fv_trigger **out, char *err, size_t errlen);
void fv_trigger_free(struct fv_trigger *t);

/* The distinct signals the trigger reads, slot 0..n-1 in order of first use. */
size_t fv_trigger_nsignals(const struct fv_trigger *t);
const char *fv_trigger_signal(const struct fv_trigger *t, size_t slot);
/* The slot of a signal name, or -1 when the trigger does not read it. */
int fv_trigger_slot(const struct fv_trigger *t, const char *name);

/* Per-vehicle state: the latest and previous values, the `for` clocks. The trigger must
 * outlive it. FV_OK or FV_ENOMEM. */
int fv_trigger_state_new(const struct fv_trigger *t, struct fv_trigger_state **out);
void fv_trigger_state_free(struct fv_trigger_state *s);

/* A new value of the signal in slot (ignored if slot is out of range); strings are copied
 * (cut at FV_TRIGGER_MAX_NAME bytes). Feed the values of one time, then step. */
void fv_trigger_set_num(struct fv_trigger_state *s, int slot, double v);
void fv_trigger_set_str(struct fv_trigger_state *s, int slot, const char *v);
void fv_trigger_set_none(struct fv_trigger_state *s, int slot);
/* A value of the wire's value model: numbers, enums (their number) and booleans (1, 0) as
 * numbers, strings as strings, anything else (a location, invalid) as no value. */
void fv_trigger_set_value(struct fv_trigger_state *s, int slot, const struct fv_value *v);

/* Evaluates at t_ms (non-decreasing across calls): 1 when the trigger fires (T4), else 0.
 * *level (if not NULL) receives the condition's value now. */
int fv_trigger_step(struct fv_trigger_state *s, int64_t t_ms, int *level);

#endif
