/*
 * location.h - location privacy for tracks served to non-service purposes: privacy zones,
 * trip start/end trimming, coarsening (GDPR issue 4; shared/ref/privacy-gdpr.md, "Location
 * privacy": trimming alone is not enough, so these are meant to be combined).
 *
 * A track is n points in time order: t_ms[i], lat[i], lon[i] (degrees, WGS84 treated as a
 * sphere of radius FV_GEO_EARTH_RADIUS_M; distances are haversine great-circle metres).
 * The result is a mask keep[i] (1 keep, 0 drop) and, for coarsening, changed coordinates.
 *
 * Rules:
 *   L1 a point whose lat or lon is NaN, infinite, or out of range (|lat| > 90,
 *      |lon| > 180) is invalid: dropped, and ignored by every other rule.
 *   L2 zones: a point within radius_m of any zone's centre (distance <= radius) is dropped.
 *   L3 trips: consecutive valid points belong to one trip unless more than gap_ms apart
 *      (or time goes backwards, which only a track out of order does). In each trip, a point
 *      is dropped if its distance along the track (the sum of the legs between consecutive
 *      valid points) from the trip's first point, or to its last, is at most trim_m. So a
 *      trip shorter than 2 * trim_m disappears, and a lone point always does. Trimming is
 *      computed on the valid points whatever the zones drop, so it hides the true start.
 *   L4 coarsening to a grid of about grid_m metres replaces a kept point by the centre of
 *      its grid cell, so all points of one cell come out identical (points on either side
 *      of a cell border still differ: that is in the nature of a grid). The grid:
 *        - latitude is cut into nb = max(1, floor(180 / dlat0)) bands of equal height
 *          dlat = 180 / nb degrees, where dlat0 = grid_m / (pi R / 180) is grid_m in degrees
 *          of latitude; band b = floor((lat + 90) / dlat), clamped to nb - 1 (lat = 90);
 *        - each band is cut into nc = max(1, floor(360 cos(latc) / dlat0)) cells of equal
 *          width dlon = 360 / nc degrees, latc = -90 + (b + 0.5) dlat being the band's
 *          central latitude: cells are about grid_m wide there, and a whole number of them
 *          goes round, so there is no seam or sliver at +-180 degrees and a polar band is a
 *          few wide cells (its centre gets longitude 0 when nc = 1);
 *        - cell c = floor((lon + 180) / dlon), clamped to nc - 1 (lon = 180 is lon = -180);
 *          the point becomes (latc, -180 + (c + 0.5) dlon).
 *      The result depends only on (lat, lon, grid_m): the same place gives the same cell in
 *      every dataset and request, so coarse points do not average back to a precise one.
 *
 *   L5 stops: speed and gear carry forward from the sample that last gave them; a sample is
 *      stationary while the gear is P or |speed| < stop_speed. A run of stationary samples is
 *      a stop if the gear is P anywhere in it (a car in park is parked), or it lasts at
 *      least stop_ms (from its first sample to the first sample after it, or to its last
 *      when none follows; stop_ms 0: gear P only). A stop ends a trip (L3) as a gap does,
 *      and its positions belong to no trip: a car that goes on reporting while parked is
 *      parked all the same.
 *   L6 withheld times (fv_loc_withheld): a trip's kept span runs from its first to its last
 *      point kept by L3. Withheld are every time outside all kept spans (stops, gaps,
 *      trimmed ends, before the first trip and after the last; no trip at all: always), and
 *      inside a span, from a point inside a zone (L2) to just before the next point. A
 *      signal that follows the position (GpsHeading) is withheld at exactly these times, a
 *      position too; trim_m 0 turns off the span part (zones only).
 *
 * fv_loc_apply runs L1-L4 and also sets the coordinates of every dropped point to NaN, so a
 * caller that forgot the mask would still serve no location. The other functions only
 * clear keep[i] (never set it), so they compose in any order on one mask.
 * All functions are pure (no allocation, no global state) and thread-safe. They return
 * FV_OK or FV_EINVAL (bad parameters; nothing changed then); n = 0 is fine.
 */
#ifndef FV_PRIVACY_LOCATION_H
#define FV_PRIVACY_LOCATION_H

#include <stddef.h>
#include <stdint.h>

#define FV_GEO_EARTH_RADIUS_M      6371008.8 /* mean radius (IUGG) */
#define FV_LOC_DEFAULT_TRIM_M      500.0
#define FV_LOC_DEFAULT_TRIP_GAP_MS 300000 /* 300 s */
#define FV_LOC_MIN_GRID_M          1.0
#define FV_LOC_DEFAULT_STOP_MS     180000 /* 3 min at speed 0 (gear P: at once) */
#define FV_LOC_DEFAULT_STOP_SPEED  1.0    /* below walking pace, km/h or mph alike */

/* A privacy zone (home, work): a circle on the sphere. */
struct fv_zone {
    double lat, lon;
    double radius_m; /* >= 0 */
};

struct fv_loc_params {
    const struct fv_zone *zones; /* the subject's zones (may be NULL when nzones is 0) */
    size_t nzones;
    double trim_m;       /* L3: 0 = no trimming */
    int64_t trip_gap_ms; /* L3: > 0 */
    double grid_m;       /* L4: 0 = no coarsening, else >= FV_LOC_MIN_GRID_M */
    int64_t stop_ms;     /* L5: >= 0 */
    double stop_speed;   /* L5: >= 0 */
};

/* One sample of a vehicle's track (L5, L6): a position, its motion, or both. */
struct fv_loc_sample {
    int64_t t;
    double lat, lon;  /* an invalid point (L1, e.g. NaN): no position in this sample */
    double speed;     /* NaN: no speed in this sample */
    signed char park; /* 1: gear P, 0: another gear, -1: no gear in this sample */
};

/* No zones, trim 500 m, gap 300 s, no coarsening, stops after 180 s below 1 (or gear P). */
void fv_loc_params_default(struct fv_loc_params *p);

/* Great-circle distance in metres (haversine); NaN if an input is NaN. */
double fv_geo_distance_m(double lat1, double lon1, double lat2, double lon2);
/* 1 if (lat, lon) is a valid point (L1), else 0. */
int fv_geo_valid(double lat, double lon);

/* L1: clears keep[i] of invalid points. */
int fv_loc_drop_invalid(size_t n, const double *lat, const double *lon, unsigned char *keep);
/* L2: clears keep[i] of points inside a zone. FV_EINVAL for a zone with an invalid centre
 * or a radius that is negative or not finite. */
int fv_loc_zones(size_t n, const double *lat, const double *lon, const struct fv_zone *zones,
                 size_t nzones, unsigned char *keep);
/* L3: clears keep[i] of points near trip starts and ends (trim_m 0: nothing). FV_EINVAL
 * for trim_m < 0 or not finite, gap_ms <= 0. */
int fv_loc_trim(size_t n, const int64_t *t_ms, const double *lat, const double *lon, double trim_m,
                int64_t gap_ms, unsigned char *keep);
/* L4 on one point, in place; FV_EINVAL for an invalid point or grid_m < 1 or not finite. */
int fv_loc_coarsen_point(double grid_m, double *lat, double *lon);
/* L4 on every point with keep[i] set (keep may be NULL: all valid points), in place. */
int fv_loc_coarsen(size_t n, double *lat, double *lon, double grid_m, const unsigned char *keep);

/* All of it: sets keep[] from scratch (L1-L3), coarsens kept points (L4) when
 * p->grid_m > 0, sets dropped points' lat and lon to NaN. t_ms, lat, lon, keep: n each. */
int fv_loc_apply(const struct fv_loc_params *p, size_t n, const int64_t *t_ms, double *lat,
                 double *lon, unsigned char *keep);

/* L5, L6: the withheld times of a track of n samples in time order (a sample out of order
 * splits trips, as in L3), given to add(arg, from, to) as inclusive ranges in increasing
 * order of from (they may touch or overlap); add's non-zero result stops and is returned.
 * Uses p's zones, trim_m, trip_gap_ms, stop_ms and stop_speed. FV_EINVAL (bad parameters),
 * FV_ENOMEM. */
int fv_loc_withheld(const struct fv_loc_params *p, const struct fv_loc_sample *s, size_t n,
                    int (*add)(void *arg, int64_t from, int64_t to), void *arg);

#endif
