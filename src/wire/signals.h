/*
 * signals.h - signal numbers and names (the protocol's Field enum) and value kinds.
 *
 * The tables are generated from the protocol notes by tools/gen_wire.py. Numbers beyond the
 * table are valid signals from newer firmware: they have no name here and are printed as
 * their number, except fleetvault's own site signals (wire/site.h, 60001 and up). All
 * functions are pure and thread-safe.
 */
#ifndef FV_WIRE_SIGNALS_H
#define FV_WIRE_SIGNALS_H

#include <stddef.h>

extern const char *const fv_signal_names[];
extern const unsigned fv_signal_count;
extern const char *const fv_value_kind_names[];
extern const unsigned fv_value_kind_count;

/* Name of signal number n, or NULL when the table has none. */
const char *fv_signal_name(unsigned n);

/* Looks a signal up by name (case-sensitive) or decimal number; -1 if neither. */
long fv_signal_lookup(const char *name);

/* Writes the signal's name, or its number when unnamed, into buf; returns buf. */
const char *fv_signal_label(unsigned n, char *buf, size_t len);

#endif
