/*
 * places.h - which of the protocol's signals reveal a place, and how (a privacy judgement on
 * the Field enum of signals.h; the reasons are in docs/privacy.md, "Signals that reveal a
 * place").
 *
 *   FV_PLACE_POSITION  the vehicle's own position (Location): served to location-private
 *                      roles only where no privacy rule withholds it, and coarsened;
 *   FV_PLACE_HEADING   follows the position (GpsHeading): withheld wherever the position at
 *                      that time is, since heading plus a coarse or earlier point
 *                      dead-reckons the hidden one;
 *   FV_PLACE_REVEALS   names or points at a place by itself (origin, destination, route,
 *                      "at home / work / favourite", a garage door nearby, distance and time
 *                      to the destination): never served to location-private roles.
 * Every signal of the three kinds is in the store's "location" data class by default
 * (store.h), so a role must be allowed that class to read any of them at all.
 * Pure and thread-safe.
 */
#ifndef FV_WIRE_PLACES_H
#define FV_WIRE_PLACES_H

enum fv_place_kind { FV_PLACE_NONE = 0, FV_PLACE_POSITION, FV_PLACE_HEADING, FV_PLACE_REVEALS };

/* How signal number field reveals a place (FV_PLACE_NONE for most). */
enum fv_place_kind fv_signal_place(unsigned field);

#endif
