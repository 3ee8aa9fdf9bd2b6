/* program.c - VPP programs: config parsing, event checks, local time through ICU (program.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <unicode/ucal.h>
#include <unicode/ustring.h>

#include "energy/program.h"
#include "wire/site.h"
#include "util/err.h"

void fv_vpp_program_defaults(struct fv_vpp_program *p, const char *name)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name ? name : "");
    snprintf(p->tz, sizeof p->tz, "America/Los_Angeles");
    p->season_from = 501;
    p->season_to = 1031;
    p->window_from_min = 16 * 60;
    p->window_to_min = 21 * 60;
    p->min_len_ms = 3600000;
    p->max_len_ms = 5 * 3600000;
    p->yearly_cap_h = 60;
    p->rate = 2.00;
    snprintf(p->currency, sizeof p->currency, "USD");
    p->method = FV_VPP_A4_DISCHARGE;
    p->baseline_days = 10;
    p->min_eligible_days = 10;
    p->lookback_days = 45;
    p->adj_min = 1.00;
    p->adj_max = 1.40;
    p->adj_hours = 3;
    p->interval_min = 5;
    p->outage_missing = 12;
}

const char *fv_vpp_method_name(enum fv_vpp_method m)
{
    return m == FV_VPP_GROUP_A ? "group_a" : "a4_discharge";
}

/* ---- ICU ------------------------------------------------------------------------------- */

/* Opens a Gregorian calendar in zone tz; NULL if ICU does not know the zone. The id is
 * checked against ICU's list first: ucal_open itself falls back to GMT for unknown ids. */
static UCalendar *cal_open(const char *tz)
{
    size_t n = strlen(tz);
    if (n == 0 || n >= FV_VPP_TZ_MAX) return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = tz[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '_' || c == '-' || c == '+'))
            return NULL;
    }
    UChar z[FV_VPP_TZ_MAX], canon[128];
    u_charsToUChars(tz, z, (int32_t)n);
    UErrorCode st = U_ZERO_ERROR;
    UBool system = 0;
    ucal_getCanonicalTimeZoneID(z, (int32_t)n, canon, 128, &system, &st);
    if (U_FAILURE(st) || !system) return NULL;
    st = U_ZERO_ERROR;
    UCalendar *c = ucal_open(z, (int32_t)n, "en_US_POSIX", UCAL_GREGORIAN, &st);
    if (U_FAILURE(st)) {
        if (c) ucal_close(c);
        return NULL;
    }
    return c;
}

static int cal_read(UCalendar *c, struct fv_vpp_local *out)
{
    UErrorCode st = U_ZERO_ERROR;
    out->year = ucal_get(c, UCAL_EXTENDED_YEAR, &st);
    out->month = ucal_get(c, UCAL_MONTH, &st) + 1;
    out->day = ucal_get(c, UCAL_DATE, &st);
    out->hour = ucal_get(c, UCAL_HOUR_OF_DAY, &st);
    out->minute = ucal_get(c, UCAL_MINUTE, &st);
    int sec = ucal_get(c, UCAL_SECOND, &st);
    int ms = ucal_get(c, UCAL_MILLISECOND, &st);
    if (U_FAILURE(st)) return FV_EINVAL;
    out->ms_in_day = ((out->hour * 60 + out->minute) * 60 + sec) * 1000 + ms;
    out->date = out->year * 10000 + out->month * 100 + out->day;
    return FV_OK;
}

int fv_vpp_local_time(const struct fv_vpp_program *p, int64_t utc_ms, struct fv_vpp_local *out)
{
    UCalendar *c = cal_open(p->tz);
    if (!c) return FV_EINVAL;
    UErrorCode st = U_ZERO_ERROR;
    ucal_setMillis(c, (UDate)utc_ms, &st);
    int rc = U_FAILURE(st) ? FV_EINVAL : cal_read(c, out);
    ucal_close(c);
    return rc;
}

int fv_vpp_utc_of_local(const struct fv_vpp_program *p, int32_t date, int hour, int minute,
                        int64_t *utc_ms)
{
    int y = date / 10000, m = date / 100 % 100, d = date % 100;
    if (date <= 0 || m < 1 || m > 12 || d < 1 || d > 31 || hour < 0 || hour > 23 || minute < 0 ||
        minute > 59)
        return FV_EINVAL;
    UCalendar *c = cal_open(p->tz);
    if (!c) return FV_EINVAL;
    UErrorCode st = U_ZERO_ERROR;
    ucal_setDateTime(c, y, m - 1, d, hour, minute, 0, &st);
    ucal_set(c, UCAL_MILLISECOND, 0);
    UDate t = ucal_getMillis(c, &st);
    /* The lenient calendar would read 02-31 as 03-03: a date that does not read back is bad. */
    struct fv_vpp_local l;
    int rc = U_FAILURE(st) || cal_read(c, &l) != FV_OK || l.date != date ? FV_EINVAL : FV_OK;
    ucal_close(c);
    if (rc == FV_OK) *utc_ms = (int64_t)t;
    return rc;
}

int fv_vpp_days_back(const struct fv_vpp_program *p, int64_t utc_ms, int days_back, int64_t *out_ms,
                     int32_t *out_date)
{
    UCalendar *c = cal_open(p->tz);
    if (!c) return FV_EINVAL;
    UErrorCode st = U_ZERO_ERROR;
    ucal_setMillis(c, (UDate)utc_ms, &st);
    /* Adding days keeps the wall-clock time across a daylight-saving change. */
    ucal_add(c, UCAL_DATE, -days_back, &st);
    struct fv_vpp_local l;
    int rc = U_FAILURE(st) ? FV_EINVAL : cal_read(c, &l);
    if (rc == FV_OK) {
        *out_ms = (int64_t)ucal_getMillis(c, &st);
        *out_date = l.date;
        if (U_FAILURE(st)) rc = FV_EINVAL;
    }
    ucal_close(c);
    return rc;
}

/* ---- parsing --------------------------------------------------------------------------- */

static int two_digits(const char *s)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') return -1;
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* "MM-DD" -> month * 100 + day; -1 if malformed. Feb 29 is a valid season bound. */
static int parse_md(const char *s)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (strlen(s) != 5 || s[2] != '-') return -1;
    int m = two_digits(s), d = two_digits(s + 3);
    if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) return -1;
    return m * 100 + d;
}

/* "HH:MM" (00:00-24:00) -> minutes after midnight; -1 if malformed. */
static int parse_hm(const char *s)
{
    if (strlen(s) != 5 || s[2] != ':') return -1;
    int h = two_digits(s), m = two_digits(s + 3);
    if (h < 0 || h > 24 || m < 0 || m > 59 || (h == 24 && m != 0)) return -1;
    return h * 60 + m;
}

/* "1h", "90m", "3600s" -> ms (> 0); -1 if malformed. */
static int64_t parse_len(const char *s)
{
    char *end;
    double n = strtod(s, &end);
    double unit;
    if (end == s || !(n > 0) || n > 1e6) return -1;
    if (strcmp(end, "h") == 0)
        unit = 3600000.0;
    else if (strcmp(end, "m") == 0)
        unit = 60000.0;
    else if (strcmp(end, "s") == 0)
        unit = 1000.0;
    else
        return -1;
    return (int64_t)llround(n * unit);
}

/* A two-string array ["a", "b"]; NULL strings when v is not one. */
static int pair_str(const json_t *v, const char **a, const char **b)
{
    if (!json_is_array(v) || json_array_size(v) != 2) return FV_EINVAL;
    const json_t *x = json_array_get(v, 0), *y = json_array_get(v, 1);
    if (!json_is_string(x) || !json_is_string(y)) return FV_EINVAL;
    *a = json_string_value(x);
    *b = json_string_value(y);
    return FV_OK;
}

static int get_int(const json_t *v, int lo, int hi, int *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return FV_EINVAL;
    *out = (int)json_integer_value(v);
    return FV_OK;
}

static int get_num(const json_t *v, double lo, double hi, double *out)
{
    if (!json_is_number(v)) return FV_EINVAL;
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi) return FV_EINVAL;
    *out = d;
    return FV_OK;
}

/* One key of a program; on a bad value writes what was expected into want. */
static int parse_key(struct fv_vpp_program *p, const char *key, const json_t *v, char *want,
                     size_t wantlen)
{
    const char *a, *b;
#define WANT(...) (fv_seterr(want, wantlen, __VA_ARGS__), FV_EINVAL)
    if (strcmp(key, "timezone") == 0) {
        UCalendar *c = json_is_string(v) ? cal_open(json_string_value(v)) : NULL;
        if (!c)
            return WANT("expected an IANA time zone known to ICU, e.g. \"America/Los_Angeles\"");
        ucal_close(c);
        snprintf(p->tz, sizeof p->tz, "%s", json_string_value(v));
    } else if (strcmp(key, "season") == 0) {
        if (pair_str(v, &a, &b) != FV_OK || parse_md(a) < 0 || parse_md(b) < 0)
            return WANT("expected [\"MM-DD\", \"MM-DD\"], the first and last day, e.g. "
                        "[\"05-01\", \"10-31\"]");
        p->season_from = parse_md(a);
        p->season_to = parse_md(b);
    } else if (strcmp(key, "window") == 0) {
        if (pair_str(v, &a, &b) != FV_OK || parse_hm(a) < 0 || parse_hm(b) <= parse_hm(a))
            return WANT("expected [\"HH:MM\", \"HH:MM\"] in local time, start before end, e.g. "
                        "[\"16:00\", \"21:00\"]");
        p->window_from_min = parse_hm(a);
        p->window_to_min = parse_hm(b);
    } else if (strcmp(key, "event_length") == 0) {
        int64_t lo, hi;
        if (pair_str(v, &a, &b) != FV_OK || (lo = parse_len(a)) < 0 || (hi = parse_len(b)) < lo ||
            hi > FV_VPP_MAX_EVENT_HOURS * 3600000ll)
            return WANT(
                "expected [MIN, MAX] durations such as [\"1h\", \"5h\"], MIN <= MAX <= 24h");
        p->min_len_ms = lo;
        p->max_len_ms = hi;
    } else if (strcmp(key, "yearly_hours_cap") == 0) {
        if (get_num(v, 0, 8784, &p->yearly_cap_h) != FV_OK)
            return WANT("expected a number of hours from 0 to 8784");
    } else if (strcmp(key, "rate") == 0) {
        if (get_num(v, 0, 10000, &p->rate) != FV_OK)
            return WANT("expected the payment per incremental kWh, a number from 0 to 10000");
    } else if (strcmp(key, "currency") == 0) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        if (strlen(s) != 3 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' || s[2] < 'A' ||
            s[2] > 'Z')
            return WANT("expected an ISO 4217 code such as \"USD\"");
        snprintf(p->currency, sizeof p->currency, "%s", s);
    } else if (strcmp(key, "baseline") == 0) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(s, "group_a") == 0)
            p->method = FV_VPP_GROUP_A;
        else if (strcmp(s, "a4_discharge") == 0)
            p->method = FV_VPP_A4_DISCHARGE;
        else
            return WANT("expected \"group_a\" or \"a4_discharge\"");
    } else if (strcmp(key, "baseline_days") == 0) {
        if (get_int(v, 1, FV_VPP_MAX_BASELINE_DAYS, &p->baseline_days) != FV_OK)
            return WANT("expected a whole number of days from 1 to %d", FV_VPP_MAX_BASELINE_DAYS);
    } else if (strcmp(key, "min_eligible_days") == 0) {
        if (get_int(v, 1, FV_VPP_MAX_BASELINE_DAYS, &p->min_eligible_days) != FV_OK)
            return WANT("expected a whole number of days from 1 to %d", FV_VPP_MAX_BASELINE_DAYS);
    } else if (strcmp(key, "baseline_lookback_days") == 0) {
        if (get_int(v, 1, FV_VPP_MAX_LOOKBACK, &p->lookback_days) != FV_OK)
            return WANT("expected a whole number of days from 1 to %d", FV_VPP_MAX_LOOKBACK);
    } else if (strcmp(key, "adjustment_bounds") == 0) {
        double lo, hi;
        if (!json_is_array(v) || json_array_size(v) != 2 ||
            get_num(json_array_get(v, 0), 0.01, 100, &lo) != FV_OK ||
            get_num(json_array_get(v, 1), lo, 100, &hi) != FV_OK)
            return WANT(
                "expected [MIN, MAX] factors, 0.01 <= MIN <= MAX <= 100, e.g. [1.00, 1.40]");
        p->adj_min = lo;
        p->adj_max = hi;
    } else if (strcmp(key, "adjustment_hours") == 0) {
        if (get_int(v, 0, FV_VPP_MAX_ADJ_HOURS, &p->adj_hours) != FV_OK)
            return WANT("expected a whole number of hours from 0 to %d", FV_VPP_MAX_ADJ_HOURS);
    } else if (strcmp(key, "interval_minutes") == 0) {
        if (get_int(v, 1, 60, &p->interval_min) != FV_OK || 60 % p->interval_min != 0)
            return WANT("expected the metering interval in minutes, a divisor of 60 (1, 2, 3, "
                        "4, 5, 6, 10, 12, 15, 20, 30, 60)");
    } else if (strcmp(key, "eligibility") == 0) {
        const char *k;
        const json_t *x;
        if (!json_is_object(v))
            return WANT("expected an object: {\"export_permit\": true, \"min_capacity_kwh\": N, "
                        "\"min_inverter_kw\": N}");
        json_object_foreach((json_t *)v, k, x)
        {
            if (strcmp(k, "export_permit") == 0 && json_is_boolean(x))
                p->elig_export_permit = json_is_true(x);
            else if (strcmp(k, "min_capacity_kwh") == 0 &&
                     get_num(x, 0, 10000, &p->elig_min_capacity_kwh) == FV_OK)
                ;
            else if (strcmp(k, "min_inverter_kw") == 0 &&
                     get_num(x, 0, 10000, &p->elig_min_inverter_kw) == FV_OK)
                ;
            else
                return WANT("%.32s: expected export_permit (true or false), min_capacity_kwh or "
                            "min_inverter_kw (a number from 0 to 10000)",
                            k);
        }
    } else if (strcmp(key, "outage_missing_intervals") == 0) {
        /* Checked against the day's intervals once interval_minutes is known. */
        if (get_int(v, 0, 1440, &p->outage_missing) != FV_OK)
            return WANT("expected a whole number of intervals from 0 to a day's");
    } else {
        return WANT("unknown key (known: timezone, season, window, event_length, "
                    "yearly_hours_cap, rate, currency, baseline, baseline_days, "
                    "min_eligible_days, baseline_lookback_days, adjustment_bounds, "
                    "adjustment_hours, interval_minutes, outage_missing_intervals, "
                    "eligibility)");
    }
#undef WANT
    return FV_OK;
}

int fv_vpp_programs_parse(const struct json_t *programs, struct fv_vpp_program **out, size_t *n,
                          char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (!json_is_object(programs) || json_object_size(programs) == 0) {
        fv_seterr(err, errlen, "vpp.programs: expected an object of programs by name");
        return FV_EINVAL;
    }
    size_t cnt = json_object_size(programs);
    struct fv_vpp_program *arr = calloc(cnt, sizeof *arr);
    if (!arr) return FV_ENOMEM;
    size_t i = 0;
    const char *name;
    json_t *prog;
    char want[256];
    json_object_foreach((json_t *)programs, name, prog)
    {
        /* Names travel in URLs, CSV and logs: a plain word. */
        if (strlen(name) == 0 || strlen(name) >= FV_VPP_NAME_MAX ||
            strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
                strlen(name)) {
            fv_seterr(err, errlen,
                      "vpp.programs: a program's name has 1 to %d letters, digits, '.', '_' or "
                      "'-'",
                      FV_VPP_NAME_MAX - 1);
            goto fail;
        }
        if (!json_is_object(prog)) {
            fv_seterr(err, errlen, "vpp.programs.%s: expected an object", name);
            goto fail;
        }
        struct fv_vpp_program *p = &arr[i++];
        fv_vpp_program_defaults(p, name);
        const char *key;
        json_t *v;
        json_object_foreach(prog, key, v)
        {
            if (parse_key(p, key, v, want, sizeof want) != FV_OK) {
                fv_seterr(err, errlen, "vpp.programs.%s.%s: %s", name, key, want);
                goto fail;
            }
        }
        if (p->min_eligible_days > p->baseline_days || p->lookback_days < p->baseline_days) {
            fv_seterr(err, errlen,
                      "vpp.programs.%s.min_eligible_days: need min_eligible_days (%d) <= "
                      "baseline_days (%d) <= baseline_lookback_days (%d)",
                      name, p->min_eligible_days, p->baseline_days, p->lookback_days);
            goto fail;
        }
        if (p->outage_missing > 1440 / p->interval_min) {
            fv_seterr(err, errlen,
                      "vpp.programs.%s.outage_missing_intervals: %d is more than the %d "
                      "intervals of %d minutes in a day",
                      name, p->outage_missing, 1440 / p->interval_min, p->interval_min);
            goto fail;
        }
        if (p->max_len_ms > (int64_t)(p->window_to_min - p->window_from_min) * 60000) {
            fv_seterr(err, errlen,
                      "vpp.programs.%s.event_length: the longest event is longer than the "
                      "window",
                      name);
            goto fail;
        }
    }
    *out = arr;
    *n = i;
    return FV_OK;
fail:
    free(arr);
    return FV_EINVAL;
}

const struct fv_vpp_program *fv_vpp_program_find(const struct fv_vpp_program *progs, size_t n,
                                                 const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(progs[i].name, name) == 0) return &progs[i];
    return NULL;
}

/* ---- event checks ---------------------------------------------------------------------- */

static void fmt_hm(char out[8], int min)
{
    snprintf(out, 8, "%02d:%02d", min / 60 % 100, min % 60);
}

static void fmt_len(char *out, size_t len, int64_t ms)
{
    if (ms % 3600000 == 0)
        snprintf(out, len, "%lldh", (long long)(ms / 3600000));
    else if (ms % 60000 == 0)
        snprintf(out, len, "%lldm", (long long)(ms / 60000));
    else
        snprintf(out, len, "%.3fs", (double)ms / 1000.0);
}

static int in_season(const struct fv_vpp_program *p, int md)
{
    if (p->season_from <= p->season_to) return md >= p->season_from && md <= p->season_to;
    return md >= p->season_from || md <= p->season_to;
}

int fv_vpp_event_check(const struct fv_vpp_program *p, int64_t start_ms, int64_t end_ms,
                       double hours_used_this_year, char *reason, size_t len)
{
    char w0[8], w1[8], at[8], lo[16], hi[16];
    fmt_hm(w0, p->window_from_min);
    fmt_hm(w1, p->window_to_min);
    fmt_len(lo, sizeof lo, p->min_len_ms);
    fmt_len(hi, sizeof hi, p->max_len_ms);
    if (end_ms <= start_ms) {
        fv_seterr(reason, len, "ends before it starts");
        return FV_EINVAL;
    }
    double hours = (double)(end_ms - start_ms) / 3600000.0;
    if (end_ms - start_ms < p->min_len_ms) {
        fv_seterr(reason, len, "too short: %.2f h, the program's events last %s to %s", hours, lo,
                  hi);
        return FV_EINVAL;
    }
    if (end_ms - start_ms > p->max_len_ms) {
        fv_seterr(reason, len, "too long: %.2f h, the program's events last %s to %s", hours, lo,
                  hi);
        return FV_EINVAL;
    }
    struct fv_vpp_local s, e;
    if (fv_vpp_local_time(p, start_ms, &s) != FV_OK || fv_vpp_local_time(p, end_ms, &e) != FV_OK) {
        fv_seterr(reason, len, "the program's time zone %s is unknown", p->tz);
        return FV_EINVAL;
    }
    /* An end at the next local midnight is 24:00 of the start's day. */
    int64_t end_in_day = e.ms_in_day;
    if (e.date != s.date) {
        struct fv_vpp_local before;
        if (e.ms_in_day != 0 || fv_vpp_local_time(p, end_ms - 1, &before) != FV_OK ||
            before.date != s.date) {
            fv_seterr(reason, len, "crosses local midnight (%04d-%02d-%02d to %04d-%02d-%02d)",
                      s.year, s.month, s.day, e.year, e.month, e.day);
            return FV_EINVAL;
        }
        end_in_day = 86400000;
    }
    if (s.ms_in_day < (int64_t)p->window_from_min * 60000) {
        fmt_hm(at, s.hour * 60 + s.minute);
        fv_seterr(reason, len, "starts %s local, before the program's window %s-%s", at, w0, w1);
        return FV_EINVAL;
    }
    if (end_in_day > (int64_t)p->window_to_min * 60000) {
        fmt_hm(at, e.date != s.date ? 1440 : e.hour * 60 + e.minute);
        fv_seterr(reason, len, "ends %s local, after the program's window %s-%s", at, w0, w1);
        return FV_EINVAL;
    }
    if (!in_season(p, s.month * 100 + s.day)) {
        fv_seterr(reason, len, "outside the season %02d-%02d..%02d-%02d (%04d-%02d-%02d local)",
                  p->season_from / 100, p->season_from % 100, p->season_to / 100,
                  p->season_to % 100, s.year, s.month, s.day);
        return FV_EINVAL;
    }
    /* A millisecond of slack: hours are sums of elapsed ms, not exact in binary. */
    if (!(hours_used_this_year >= 0) || hours_used_this_year + hours > p->yearly_cap_h + 1e-9) {
        fv_seterr(reason, len, "over the yearly cap: %.1f h used + %.1f h > %g h",
                  hours_used_this_year, hours, p->yearly_cap_h);
        return FV_EINVAL;
    }
    return FV_OK;
}

int fv_vpp_site_eligible(const struct fv_vpp_program *p, const struct fv_site_sample *s, char *why,
                         size_t whylen)
{
    if (!p->elig_export_permit && p->elig_min_capacity_kwh <= 0 && p->elig_min_inverter_kw <= 0)
        return FV_OK;
    if (s == NULL) {
        fv_seterr(why, whylen,
                  "no sample from the site yet: program %s's eligibility (export permit, "
                  "capacity, inverter) cannot be checked",
                  p->name);
        return FV_EINVAL;
    }
    if (p->elig_export_permit && !(s->export_limit_kw > 0)) {
        fv_seterr(why, whylen, "no export permit: the site's export limit is 0 kW (program %s)",
                  p->name);
        return FV_EINVAL;
    }
    if (s->capacity_kwh < p->elig_min_capacity_kwh) {
        fv_seterr(why, whylen, "battery capacity %.1f kWh below program %s's minimum %.1f kWh",
                  s->capacity_kwh, p->name, p->elig_min_capacity_kwh);
        return FV_EINVAL;
    }
    if (s->inverter_kw < p->elig_min_inverter_kw) {
        fv_seterr(why, whylen, "inverter %.1f kW below program %s's minimum %.1f kW",
                  s->inverter_kw, p->name, p->elig_min_inverter_kw);
        return FV_EINVAL;
    }
    return FV_OK;
}
