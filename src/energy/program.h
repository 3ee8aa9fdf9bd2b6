/*
 * program.h - a virtual-power-plant program (ELRP A.4 by default): its rules from the config
 * file, whether an event obeys them, and local time in the program's zone.
 *
 * Every number of a program is configuration (the config file's "vpp": {"programs": {NAME:
 * {...}}}, docs/operations.md "Virtual power plant"); the defaults are ELRP sub-group A.4's:
 * America/Los_Angeles, season 05-01..10-31, window 16:00-21:00 local, events of 1 h to 5 h, at
 * most 60 event hours a year, 2.00 USD per incremental kWh, baseline "a4_discharge" over the
 * 10 prior eligible days (at least 10 needed, looked for in the 45 days before the event),
 * day-of adjustment (Group A) over the 3 hours before the event bounded to [1.00, 1.40],
 * metering in 5-minute intervals aligned to the clock, a day with more than 12 missing
 * intervals an outage day.
 *
 * Local time comes from ICU's time-zone data (ucal_*), so the window and the season follow
 * the program's zone through daylight-saving changes; event lengths are real elapsed time.
 *
 * Thread-safety: no shared state. A parsed program is read-only; every function may be
 * called from any thread (each ICU call opens its own calendar). No I/O.
 */
#ifndef FV_ENERGY_PROGRAM_H
#define FV_ENERGY_PROGRAM_H

#include <stddef.h>
#include <stdint.h>

#define FV_VPP_NAME_MAX          64
#define FV_VPP_TZ_MAX            64
#define FV_VPP_MAX_EVENT_HOURS   24  /* an event never crosses local midnight */
#define FV_VPP_MAX_BASELINE_DAYS 30  /* baseline_days and min_eligible_days: 1..30 */
#define FV_VPP_MAX_LOOKBACK      120 /* baseline_lookback_days: days..120 */
#define FV_VPP_MAX_ADJ_HOURS     12  /* adjustment_hours: 0..12 (0: no day-of adjustment) */

enum fv_vpp_method {
    FV_VPP_GROUP_A,      /* "group_a": the site's net load, hourly average, day-of adjustment */
    FV_VPP_A4_DISCHARGE, /* "a4_discharge": the battery's own discharge against its habit */
};

struct fv_vpp_program {
    char name[FV_VPP_NAME_MAX];
    char tz[FV_VPP_TZ_MAX];             /* IANA zone id, checked with ICU */
    int season_from, season_to;         /* month * 100 + day, inclusive; from > to wraps the year */
    int window_from_min, window_to_min; /* minutes after local midnight, from < to <= 1440 */
    int64_t min_len_ms, max_len_ms;
    double yearly_cap_h;
    double rate;      /* currency units per incremental kWh, >= 0 */
    char currency[8]; /* ISO 4217 code, 3 capital letters */
    enum fv_vpp_method method;
    int baseline_days;       /* days averaged (10) */
    int min_eligible_days;   /* fewer eligible days: no baseline (10) */
    int lookback_days;       /* how far back eligible days are looked for (45) */
    double adj_min, adj_max; /* day-of adjustment bounds (1.00, 1.40) */
    int adj_hours;           /* hours before the event the adjustment reads (3) */
    int interval_min;        /* metering interval, minutes, a divisor of 60 (5) */
    int outage_missing;      /* a day missing more intervals than this: outage (12) */
    /* Eligibility of a site to enrol (none by default): an export permit (its export limit
     * above 0 kW), at least this much battery capacity and inverter power (0: any). */
    int elig_export_permit;
    double elig_min_capacity_kwh, elig_min_inverter_kw;
};

/* The ELRP A.4 defaults above, under the given name (truncated to FV_VPP_NAME_MAX - 1). */
void fv_vpp_program_defaults(struct fv_vpp_program *p, const char *name);

/* Parses the config file's "programs" object (the value of "vpp": {"programs": ...}) into a
 * new array of *n programs, in the object's key order, each starting from the defaults.
 * Keys of a program (all optional): timezone "America/Los_Angeles", season ["05-01",
 * "10-31"], window ["16:00", "21:00"], event_length ["1h", "5h"], yearly_hours_cap 60,
 * rate 2.00, currency "USD", baseline "group_a" | "a4_discharge", baseline_days 10,
 * min_eligible_days 10, baseline_lookback_days 45, adjustment_bounds [1.00, 1.40],
 * adjustment_hours 3, interval_minutes 5 (a divisor of 60), outage_missing_intervals 12 (at
 * most the intervals of a day), eligibility {"export_permit": true, "min_capacity_kwh": N,
 * "min_inverter_kw": N} (each optional; none by default). A name has 1-63 of [A-Za-z0-9._-].
 * An unknown key, a bad value or an empty programs object fails with FV_EINVAL and a message in err
 * naming the program and the key
 * ("vpp.programs.elrp.window: ..."); FV_ENOMEM. On success the caller frees *out with free().
 * programs is a jansson json_t *. */
struct json_t;
int fv_vpp_programs_parse(const struct json_t *programs, struct fv_vpp_program **out, size_t *n,
                          char *err, size_t errlen);

/* The program named name in progs[0..n), or NULL. */
/* Whether a site may enrol in p, judged from its latest sample (NULL: none yet): FV_OK, or
 * FV_EINVAL with the reason in why ("no export permit: the site's export limit is 0 kW").
 * A program without eligibility rules takes every site. */
struct fv_site_sample;
int fv_vpp_site_eligible(const struct fv_vpp_program *p, const struct fv_site_sample *s, char *why,
                         size_t whylen);

const struct fv_vpp_program *fv_vpp_program_find(const struct fv_vpp_program *progs, size_t n,
                                                 const char *name);

/* Whether an event [start_ms, end_ms) (UTC ms) obeys the program, given the event hours the
 * program has already used this (local) year: FV_OK, or FV_EINVAL with a human reason in
 * reason ("starts 15:00 local, before the program's window 16:00-21:00", "over the yearly
 * cap: 58.0 h used + 3.0 h > 60 h", "outside the season 05-01..10-31 (2026-04-30 local)",
 * "too short: 0.5 h, the program's events last 1h to 5h", ...). Length is elapsed time. */
int fv_vpp_event_check(const struct fv_vpp_program *p, int64_t start_ms, int64_t end_ms,
                       double hours_used_this_year, char *reason, size_t len);

/* A moment in the program's zone. */
struct fv_vpp_local {
    int year, month, day; /* month 1-12 */
    int hour, minute;
    int ms_in_day; /* milliseconds since local midnight (wall clock) */
    int32_t date;  /* year * 10000 + month * 100 + day */
};

/* The local calendar date and time of utc_ms in the program's zone. FV_OK, or FV_EINVAL
 * when ICU cannot open the zone. */
int fv_vpp_local_time(const struct fv_vpp_program *p, int64_t utc_ms, struct fv_vpp_local *out);

/* The UTC ms of local date (yyyymmdd) at hour:minute in the program's zone. A wall time that
 * does not exist (skipped by a daylight-saving change) is read as ICU's lenient calendar
 * reads it: moved forward by the change; a repeated one is its first occurrence. FV_OK,
 * FV_EINVAL for a bad date or zone. */
int fv_vpp_utc_of_local(const struct fv_vpp_program *p, int32_t date, int hour, int minute,
                        int64_t *utc_ms);

/* The same wall-clock time as utc_ms, days_back calendar days earlier in the program's zone
 * (what "the same hour on a prior day" means for baselines), and that day's date. */
int fv_vpp_days_back(const struct fv_vpp_program *p, int64_t utc_ms, int days_back, int64_t *out_ms,
                     int32_t *out_date);

/* The baseline method's config name ("group_a", "a4_discharge"). */
const char *fv_vpp_method_name(enum fv_vpp_method m);

#endif
