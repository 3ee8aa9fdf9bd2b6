/* places.c - see places.h. Field numbers are the protocol's (signals_table.c). */
#include "wire/places.h"

/* The signals that reveal a place; why each is here: docs/privacy.md. */
static const struct {
    unsigned field;
    enum fv_place_kind kind;
} places[] = {
    {21, FV_PLACE_POSITION}, /* Location */
    {23, FV_PLACE_HEADING},  /* GpsHeading */
    {108, FV_PLACE_REVEALS}, /* RouteLine: the planned route's geometry */
    {109, FV_PLACE_REVEALS}, /* MilesToArrival: distance to the destination */
    {110, FV_PLACE_REVEALS}, /* MinutesToArrival: time to the destination */
    {111, FV_PLACE_REVEALS}, /* OriginLocation: where the trip began */
    {112, FV_PLACE_REVEALS}, /* DestinationLocation */
    {163, FV_PLACE_REVEALS}, /* DestinationName */
    {195, FV_PLACE_REVEALS}, /* HomelinkNearby: a programmed garage door is near */
    {229, FV_PLACE_REVEALS}, /* LocatedAtHome */
    {230, FV_PLACE_REVEALS}, /* LocatedAtWork */
    {231, FV_PLACE_REVEALS}, /* LocatedAtFavorite */
};

enum fv_place_kind fv_signal_place(unsigned field)
{
    for (unsigned i = 0; i < sizeof places / sizeof places[0]; i++)
        if (places[i].field == field) return places[i].kind;
    return FV_PLACE_NONE;
}
