/* location.c - see location.h (rules L1-L4). */
#include <math.h>
#include <stdlib.h>

#include "privacy/location.h"
#include "util/err.h"

#define DEG (M_PI / 180.0)
/* Guards floor() against a quotient that is a whole number in exact arithmetic landing
 * just below it (a grid of exactly one degree must give 180 bands, not 179). */
#define FLOOR_SLACK 1e-9

void fv_loc_params_default(struct fv_loc_params *p)
{
    p->zones = NULL;
    p->nzones = 0;
    p->trim_m = FV_LOC_DEFAULT_TRIM_M;
    p->trip_gap_ms = FV_LOC_DEFAULT_TRIP_GAP_MS;
    p->grid_m = 0;
    p->stop_ms = FV_LOC_DEFAULT_STOP_MS;
    p->stop_speed = FV_LOC_DEFAULT_STOP_SPEED;
}

double fv_geo_distance_m(double lat1, double lon1, double lat2, double lon2)
{
    double s1 = sin((lat2 - lat1) * DEG / 2), s2 = sin((lon2 - lon1) * DEG / 2);
    double a = s1 * s1 + cos(lat1 * DEG) * cos(lat2 * DEG) * s2 * s2;
    /* Rounding can push a a hair outside [0, 1] (antipodes); asin would give NaN. */
    if (a > 1) a = 1;
    if (a < 0) a = 0;
    return 2 * FV_GEO_EARTH_RADIUS_M * asin(sqrt(a));
}

int fv_geo_valid(double lat, double lon)
{
    /* NaN fails every comparison, infinities fail the range. */
    return lat >= -90.0 && lat <= 90.0 && lon >= -180.0 && lon <= 180.0;
}

int fv_loc_drop_invalid(size_t n, const double *lat, const double *lon, unsigned char *keep)
{
    if (n > 0 && (lat == NULL || lon == NULL || keep == NULL)) return FV_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fv_geo_valid(lat[i], lon[i])) keep[i] = 0;
    return FV_OK;
}

static int zones_ok(const struct fv_zone *zones, size_t nzones)
{
    if (nzones > 0 && zones == NULL) return 0;
    for (size_t z = 0; z < nzones; z++)
        if (!fv_geo_valid(zones[z].lat, zones[z].lon) || !(zones[z].radius_m >= 0) ||
            !isfinite(zones[z].radius_m))
            return 0;
    return 1;
}

int fv_loc_zones(size_t n, const double *lat, const double *lon, const struct fv_zone *zones,
                 size_t nzones, unsigned char *keep)
{
    if ((n > 0 && (lat == NULL || lon == NULL || keep == NULL)) || !zones_ok(zones, nzones))
        return FV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!fv_geo_valid(lat[i], lon[i])) continue;
        for (size_t z = 0; z < nzones; z++)
            if (fv_geo_distance_m(lat[i], lon[i], zones[z].lat, zones[z].lon) <=
                zones[z].radius_m) {
                keep[i] = 0;
                break;
            }
    }
    return FV_OK;
}

static int trim_ok(double trim_m, int64_t gap_ms)
{
    return trim_m >= 0 && isfinite(trim_m) && gap_ms > 0;
}

/* Index of the first valid point at or after i, or n. */
static size_t next_valid(size_t n, const double *lat, const double *lon, size_t i)
{
    while (i < n && !fv_geo_valid(lat[i], lon[i]))
        i++;
    return i;
}

/* L3 for the trip of valid points from s to e (both valid, s <= e). */
static void trim_trip(const double *lat, const double *lon, size_t s, size_t e, double trim_m,
                      unsigned char *keep)
{
    /* From the start forwards: distance along the track only grows, so stop at the first
     * point beyond trim_m. */
    double along = 0;
    size_t prev = s;
    for (size_t i = s; i <= e; i++) {
        if (!fv_geo_valid(lat[i], lon[i])) continue;
        along += fv_geo_distance_m(lat[prev], lon[prev], lat[i], lon[i]);
        prev = i;
        if (along > trim_m) break;
        keep[i] = 0;
    }
    along = 0;
    prev = e;
    for (size_t i = e + 1; i-- > s;) {
        if (!fv_geo_valid(lat[i], lon[i])) continue;
        along += fv_geo_distance_m(lat[prev], lon[prev], lat[i], lon[i]);
        prev = i;
        if (along > trim_m) break;
        keep[i] = 0;
    }
}

int fv_loc_trim(size_t n, const int64_t *t_ms, const double *lat, const double *lon, double trim_m,
                int64_t gap_ms, unsigned char *keep)
{
    if ((n > 0 && (t_ms == NULL || lat == NULL || lon == NULL || keep == NULL)) ||
        !trim_ok(trim_m, gap_ms))
        return FV_EINVAL;
    if (trim_m == 0) return FV_OK;
    size_t s = next_valid(n, lat, lon, 0);
    while (s < n) {
        size_t e = s, j = next_valid(n, lat, lon, s + 1);
        /* Differences in uint64_t: t_ms[j] - t_ms[e] may not fit an int64_t. */
        while (j < n && t_ms[j] >= t_ms[e] &&
               (uint64_t)t_ms[j] - (uint64_t)t_ms[e] <= (uint64_t)gap_ms) {
            e = j;
            j = next_valid(n, lat, lon, j + 1);
        }
        trim_trip(lat, lon, s, e, trim_m, keep);
        s = j;
    }
    return FV_OK;
}

/* Index of the first sample at or after i with a valid position, or n. */
static size_t next_valid_sample(const struct fv_loc_sample *s, size_t n, size_t i)
{
    while (i < n && !fv_geo_valid(s[i].lat, s[i].lon))
        i++;
    return i;
}

static int grid_ok(double grid_m)
{
    return grid_m >= FV_LOC_MIN_GRID_M && isfinite(grid_m);
}

int fv_loc_coarsen_point(double grid_m, double *lat, double *lon)
{
    if (!grid_ok(grid_m) || !fv_geo_valid(*lat, *lon)) return FV_EINVAL;
    double dlat0 = grid_m / (FV_GEO_EARTH_RADIUS_M * DEG);
    double nb = floor(180.0 / dlat0 + FLOOR_SLACK);
    if (nb < 1) nb = 1;
    double dlat = 180.0 / nb;
    double b = floor((*lat + 90.0) / dlat);
    if (b > nb - 1) b = nb - 1;
    if (b < 0) b = 0;
    double latc = -90.0 + (b + 0.5) * dlat;
    double nc = floor(360.0 * cos(latc * DEG) / dlat0 + FLOOR_SLACK);
    if (nc < 1) nc = 1;
    double dlon = 360.0 / nc;
    double c = floor((*lon + 180.0) / dlon);
    if (c > nc - 1) c = *lon >= 180.0 ? 0 : nc - 1; /* lon = 180 is lon = -180 */
    if (c < 0) c = 0;
    *lat = latc;
    *lon = nc == 1 ? 0.0 : -180.0 + (c + 0.5) * dlon;
    return FV_OK;
}

int fv_loc_coarsen(size_t n, double *lat, double *lon, double grid_m, const unsigned char *keep)
{
    if ((n > 0 && (lat == NULL || lon == NULL)) || !grid_ok(grid_m)) return FV_EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((keep == NULL || keep[i]) && fv_geo_valid(lat[i], lon[i]))
            fv_loc_coarsen_point(grid_m, &lat[i], &lon[i]);
    return FV_OK;
}

int fv_loc_apply(const struct fv_loc_params *p, size_t n, const int64_t *t_ms, double *lat,
                 double *lon, unsigned char *keep)
{
    if (p == NULL || (n > 0 && (t_ms == NULL || lat == NULL || lon == NULL || keep == NULL)) ||
        !zones_ok(p->zones, p->nzones) || !trim_ok(p->trim_m, p->trip_gap_ms) ||
        !(p->grid_m == 0 || grid_ok(p->grid_m)))
        return FV_EINVAL;
    for (size_t i = 0; i < n; i++)
        keep[i] = 1;
    /* Parameters were checked above, so these cannot fail. */
    fv_loc_drop_invalid(n, lat, lon, keep);
    fv_loc_zones(n, lat, lon, p->zones, p->nzones, keep);
    fv_loc_trim(n, t_ms, lat, lon, p->trim_m, p->trip_gap_ms, keep);
    if (p->grid_m > 0) fv_loc_coarsen(n, lat, lon, p->grid_m, keep);
    for (size_t i = 0; i < n; i++)
        if (!keep[i]) lat[i] = lon[i] = NAN;
    return FV_OK;
}

/* L5: marks in stop[] the samples that are part of a stop. */
static void mark_stops(const struct fv_loc_params *p, const struct fv_loc_sample *s, size_t n,
                       unsigned char *stop)
{
    double speed = NAN;
    int park = -1, run_park = 0;
    size_t a = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        if (!isnan(s[i].speed)) speed = s[i].speed;
        if (s[i].park >= 0) park = s[i].park;
        int st = park == 1 || fabs(speed) < p->stop_speed; /* NaN: not stationary */
        if (st) {
            if (a == SIZE_MAX) {
                a = i;
                run_park = 0;
            }
            run_park |= park == 1;
        }
        if (a == SIZE_MAX || (st && i + 1 < n)) continue;
        /* The run a..b ends: here (the last sample), or just before i (moving again). */
        size_t b = st ? i : i - 1;
        int64_t end = s[i].t;
        int stopped = run_park || (p->stop_ms > 0 && end >= s[a].t &&
                                   (uint64_t)end - (uint64_t)s[a].t >= (uint64_t)p->stop_ms);
        for (size_t k = a; stopped && k <= b; k++)
            stop[k] = 1;
        a = SIZE_MAX;
    }
}

struct withheld {
    const struct fv_loc_params *p;
    const struct fv_loc_sample *s;
    int (*add)(void *, int64_t, int64_t);
    void *arg;
    int64_t from; /* withheld from here until the next kept span */
    int open;     /* from is set (0: past INT64_MAX) */
    double *cum;
};

static int in_zone(const struct fv_loc_params *p, double lat, double lon)
{
    for (size_t z = 0; z < p->nzones; z++)
        if (fv_geo_distance_m(lat, lon, p->zones[z].lat, p->zones[z].lon) <= p->zones[z].radius_m)
            return 1;
    return 0;
}

/* L6 for one trip: the samples idx[0..m-1] (valid positions). */
static int end_span(struct withheld *w, const size_t *idx, size_t m)
{
    if (m == 0) return 0;
    const struct fv_loc_sample *s = w->s;
    double trim = w->p->trim_m;
    w->cum[0] = 0;
    for (size_t q = 1; q < m; q++)
        w->cum[q] = w->cum[q - 1] + fv_geo_distance_m(s[idx[q - 1]].lat, s[idx[q - 1]].lon,
                                                      s[idx[q]].lat, s[idx[q]].lon);
    size_t j = 0, e = m; /* the first and one past the last kept point */
    while (j < m && w->cum[j] <= trim)
        j++;
    while (e > 0 && w->cum[m - 1] - w->cum[e - 1] <= trim)
        e--;
    if (j >= e) return 0; /* nothing kept: withheld from w->from on */
    int64_t a = s[idx[j]].t, b = s[idx[e - 1]].t;
    int rc = w->open && w->from < a ? w->add(w->arg, w->from, a - 1) : 0;
    for (size_t q = j; rc == 0 && q < e; q++)
        if (in_zone(w->p, s[idx[q]].lat, s[idx[q]].lon))
            rc = w->add(w->arg, s[idx[q]].t, q + 1 < e ? s[idx[q + 1]].t - 1 : s[idx[q]].t);
    w->open = b < INT64_MAX;
    w->from = w->open ? b + 1 : b;
    return rc;
}

int fv_loc_withheld(const struct fv_loc_params *p, const struct fv_loc_sample *s, size_t n,
                    int (*add)(void *arg, int64_t from, int64_t to), void *arg)
{
    if (p == NULL || add == NULL || (n > 0 && s == NULL) || !zones_ok(p->zones, p->nzones) ||
        !trim_ok(p->trim_m, p->trip_gap_ms) || p->stop_ms < 0 || !(p->stop_speed >= 0))
        return FV_EINVAL;
    if (p->trim_m == 0) { /* zones only: from a point inside one to the next point */
        for (size_t i = 0; i < n; i++) {
            if (!fv_geo_valid(s[i].lat, s[i].lon) || !in_zone(p, s[i].lat, s[i].lon)) continue;
            size_t k = next_valid_sample(s, n, i + 1);
            int rc = add(arg, s[i].t, k < n && s[k].t > s[i].t ? s[k].t - 1 : s[i].t);
            if (rc) return rc;
        }
        return FV_OK;
    }
    unsigned char *stop = calloc(n ? n : 1, 1);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    double *cum = malloc((n ? n : 1) * sizeof *cum);
    int rc = stop && idx && cum ? FV_OK : FV_ENOMEM;
    struct withheld w = {p, s, add, arg, INT64_MIN, 1, cum};
    size_t m = 0;
    if (rc == FV_OK) mark_stops(p, s, n, stop);
    for (size_t i = 0; rc == FV_OK && i < n; i++) {
        if (stop[i]) { /* L5: a stop ends the trip; its positions are in none */
            rc = end_span(&w, idx, m);
            m = 0;
            continue;
        }
        if (!fv_geo_valid(s[i].lat, s[i].lon)) continue;
        if (m && (s[i].t < s[idx[m - 1]].t ||
                  (uint64_t)s[i].t - (uint64_t)s[idx[m - 1]].t > (uint64_t)p->trip_gap_ms)) {
            rc = end_span(&w, idx, m); /* L3: a gap */
            m = 0;
        }
        idx[m++] = i;
    }
    if (rc == FV_OK) rc = end_span(&w, idx, m);
    if (rc == FV_OK && w.open) rc = add(arg, w.from, INT64_MAX);
    free(stop);
    free(idx);
    free(cum);
    return rc;
}
