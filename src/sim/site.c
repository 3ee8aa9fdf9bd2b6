/*
 * site.c - the simulator's home-energy site (model and numbers in site.h).
 *
 * Randomness: u01(s, tag, k) hashes (seed, index, tag, k) with splitmix64's finaliser into
 * [0, 1); tags separate the uses (parameters, clouds per day and per 15 minutes, load per
 * day and per 5 minutes, outages per day), so a value never depends on the step sizes.
 *
 * Threading: a site belongs to one thread at a time; no shared state.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sim/site.h"

#define MS_PER_MIN         60000ULL
#define MS_PER_HOUR        3600000ULL
#define MS_PER_DAY         86400000ULL
#define MAX_STEP_MS        MS_PER_MIN
#define ETA                0.9486832980505138 /* sqrt(0.9): each way of a 90 % round trip */
#define RESERVE_MARGIN_KWH 0.05               /* at the reserve, for refusing a dispatch */
#define PI                 3.14159265358979323846

enum { T_PARAM, T_CLOUD_DAY, T_CLOUD_SLOT, T_LOAD_DAY, T_LOAD_SLOT, T_OUTAGE };

static uint64_t mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double u01(const struct fv_sim_site *s, unsigned tag, uint64_t k)
{
    uint64_t h = mix(mix(mix(s->seed) ^ s->index) ^ ((uint64_t)tag << 56) ^ k);
    return (double)(h >> 11) / 9007199254740992.0;
}

static double round3(double x)
{
    return round(x * 1000.0) / 1000.0;
}

static double clampd(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* Local time: ms since the epoch shifted by the UTC offset (never negative here). */
static uint64_t local_ms(const struct fv_sim_site *s, uint64_t t_ms)
{
    double off = s->cfg.utc_offset_h * (double)MS_PER_HOUR;
    double l = (double)t_ms + off;
    return l > 0 ? (uint64_t)l : 0;
}

void fv_sim_site_init(struct fv_sim_site *s, uint64_t seed, uint32_t index,
                      const struct fv_sim_site_cfg *cfg, uint64_t start_ms)
{
    memset(s, 0, sizeof *s);
    s->seed = seed;
    s->index = index;
    s->cfg = *cfg;
    struct fv_sim_site_params *p = &s->p;
    int twin = u01(s, T_PARAM, 0) < 0.2;
    p->capacity_kwh = twin ? 27.0 : 13.5;
    p->inverter_kw = twin ? 10.0 : 5.0;
    p->export_limit_kw = 4.0 + 0.5 * floor(u01(s, T_PARAM, 1) * 3); /* 4, 4.5 or 5 */
    p->reserve_pct = 10.0 + 5.0 * floor(u01(s, T_PARAM, 2) * 5);    /* 10..30 */
    p->solar_kwp = round(30.0 + u01(s, T_PARAM, 3) * 50.0) / 10.0;  /* 3..8 */
    p->base_kw = 0.3 + u01(s, T_PARAM, 4) * 0.5;
    p->morning_kw = 0.8 + u01(s, T_PARAM, 5) * 1.2;
    p->evening_kw = 1.5 + u01(s, T_PARAM, 6) * 1.5;
    double m = u01(s, T_PARAM, 7);
    p->mode = m < 0.65   ? FV_SITE_MODE_SELF_POWERED
              : m < 0.90 ? FV_SITE_MODE_TIME_BASED
                         : FV_SITE_MODE_BACKUP;
    p->evening_discharge_kw = round(20.0 + u01(s, T_PARAM, 8) * 20.0) / 10.0; /* 2..4 */
    p->opts_out = u01(s, T_PARAM, 9) * 100.0 < cfg->opt_out_pct;
    double res = p->capacity_kwh * p->reserve_pct / 100.0;
    s->energy_kwh = round3(res + (p->capacity_kwh - res) * (0.3 + 0.6 * u01(s, T_PARAM, 10)));
    s->t_ms = start_ms;
    s->mode = p->mode;
    s->solar_kw = round3(fv_sim_site_solar_kw(s, start_ms));
    s->load_kw = round3(fv_sim_site_load_kw(s, start_ms));
}

double fv_sim_site_solar_kw(const struct fv_sim_site *s, uint64_t t_ms)
{
    uint64_t l = local_ms(s, t_ms);
    uint64_t day = l / MS_PER_DAY;
    double h = (double)(l % MS_PER_DAY) / (double)MS_PER_HOUR;
    /* day of the year (0 = 1 January) of the civil day: days since the epoch, leap years
     * ignored beyond a quarter day a year - a season, not an ephemeris */
    double doy = fmod((double)day, 365.2425);
    double season = cos(2 * PI * (doy - 171.0) / 365.2425); /* 1 on 21 June, -1 in December */
    double len = 12.0 + 2.5 * season;                       /* hours of daylight */
    double rise = 12.0 - len / 2;
    if (h <= rise || h >= rise + len) return 0;
    double sun = pow(sin(PI * (h - rise) / len), 1.3) * (0.75 + 0.25 * season);
    double cloud = 0.9 + 0.1 * u01(s, T_CLOUD_DAY, day);
    if (u01(s, T_CLOUD_DAY, day ^ 0x5A5A5A5AULL) < 0.3) /* a cloudy day, varying by 15 min */
        cloud = (0.2 + 0.5 * u01(s, T_CLOUD_DAY, day ^ 0xA5A5ULL)) *
                (0.6 + 0.4 * u01(s, T_CLOUD_SLOT, l / (15 * MS_PER_MIN)));
    return s->p.solar_kwp * sun * cloud;
}

double fv_sim_site_load_kw(const struct fv_sim_site *s, uint64_t t_ms)
{
    uint64_t l = local_ms(s, t_ms);
    double h = (double)(l % MS_PER_DAY) / (double)MS_PER_HOUR;
    double dm = (h - 7.5) / 1.0, de = (h - 19.0) / 1.5;
    double day = 0.85 + 0.3 * u01(s, T_LOAD_DAY, l / MS_PER_DAY);
    double noise = 0.8 + 0.4 * u01(s, T_LOAD_SLOT, l / (5 * MS_PER_MIN));
    double kw = s->p.base_kw * noise + s->p.morning_kw * exp(-dm * dm / 2) * day +
                s->p.evening_kw * exp(-de * de / 2) * day;
    return kw > 0 ? kw : 0;
}

/* The outage of the local day `day`, if it has one: [*from, *to) in local ms. */
static int outage_of(const struct fv_sim_site *s, uint64_t day, uint64_t *from, uint64_t *to)
{
    if (!(u01(s, T_OUTAGE, day * 3) * 100.0 < s->cfg.offline_pct)) return 0;
    *from = day * MS_PER_DAY + (uint64_t)(u01(s, T_OUTAGE, day * 3 + 1) * (double)MS_PER_DAY);
    *to = *from + (uint64_t)((30.0 + 150.0 * u01(s, T_OUTAGE, day * 3 + 2)) * (double)MS_PER_MIN);
    return 1;
}

int fv_sim_site_online(const struct fv_sim_site *s, uint64_t t_ms)
{
    uint64_t l = local_ms(s, t_ms), day = l / MS_PER_DAY, a, b;
    for (uint64_t d = day > 0 ? day - 1 : 0; d <= day; d++) /* an outage may cross midnight */
        if (outage_of(s, d, &a, &b) && l >= a && l < b) return 0;
    return 1;
}

/* One physics step of dt_h hours at time t (the end of the step). */
static void physics(struct fv_sim_site *s, uint64_t t, double dt_h)
{
    const struct fv_sim_site_params *p = &s->p;
    double solar = round3(fv_sim_site_solar_kw(s, t)), load = round3(fv_sim_site_load_kw(s, t));
    double reserve = p->capacity_kwh * p->reserve_pct / 100.0;
    double can_dis = s->energy_kwh > reserve ? (s->energy_kwh - reserve) * ETA / dt_h : 0;
    double can_chg =
        s->energy_kwh < p->capacity_kwh ? (p->capacity_kwh - s->energy_kwh) / ETA / dt_h : 0;
    can_dis = can_dis < p->inverter_kw ? can_dis : p->inverter_kw;
    can_chg = can_chg < p->inverter_kw ? can_chg : p->inverter_kw;
    double surplus = solar - load, bat;
    double h = (double)(local_ms(s, t) % MS_PER_DAY) / (double)MS_PER_HOUR;
    int vpp = s->dispatch_kw > 0 && t > s->dispatch_start_ms && t <= s->dispatch_end_ms;
    if (vpp) {
        bat = s->dispatch_kw < p->export_limit_kw ? s->dispatch_kw : p->export_limit_kw;
        bat = bat < can_dis ? bat : can_dis;
        s->mode = FV_SITE_MODE_VPP;
    } else {
        if (s->dispatch_kw > 0 && t > s->dispatch_end_ms) s->dispatch_kw = 0; /* it ended */
        s->mode = p->mode;
        if (surplus > 0) {
            bat = -(surplus < can_chg ? surplus : can_chg);
        } else if (p->mode == FV_SITE_MODE_SELF_POWERED) {
            bat = -surplus < can_dis ? -surplus : can_dis;
        } else {
            bat = 0;
        }
        if (p->mode == FV_SITE_MODE_TIME_BASED && h >= 17.0 && h < 21.0) {
            bat = p->evening_discharge_kw < can_dis ? p->evening_discharge_kw : can_dis;
            double most = load - solar + p->export_limit_kw; /* the export limit */
            bat = bat < most ? bat : most > 0 ? most : 0;
        }
    }
    bat = round3(bat);
    if (bat != bat || bat < -p->inverter_kw) bat = 0; /* cannot happen; keeps the checks */
    /* curtail solar so the export (-grid) stays within the limit */
    double most_solar = load - bat + p->export_limit_kw;
    if (solar > most_solar) solar = round3(most_solar > 0 ? most_solar : 0);
    double e = s->energy_kwh - (bat > 0 ? bat / ETA : bat * ETA) * dt_h;
    s->energy_kwh = clampd(e, 0, p->capacity_kwh);
    s->battery_kw = bat;
    s->solar_kw = solar;
    s->load_kw = load;
}

void fv_sim_site_step(struct fv_sim_site *s, uint64_t t_ms)
{
    while (s->t_ms < t_ms) {
        uint64_t step = t_ms - s->t_ms < MAX_STEP_MS ? t_ms - s->t_ms : MAX_STEP_MS;
        s->t_ms += step;
        physics(s, s->t_ms, (double)step / (double)MS_PER_HOUR);
    }
}

void fv_sim_site_sample(const struct fv_sim_site *s, struct fv_site_sample *out)
{
    memset(out, 0, sizeof *out);
    out->created_at_ms = s->t_ms;
    out->battery_kw = s->battery_kw;
    out->energy_kwh = round3(s->energy_kwh);
    out->capacity_kwh = s->p.capacity_kwh;
    out->reserve_pct = s->p.reserve_pct;
    out->solar_kw = s->solar_kw;
    out->load_kw = s->load_kw;
    out->grid_kw = round3(s->load_kw - s->solar_kw - s->battery_kw);
    out->mode = s->mode;
    out->inverter_kw = s->p.inverter_kw;
    out->export_limit_kw = s->p.export_limit_kw;
}

static int refuse(char *reason, size_t len, const char *why)
{
    snprintf(reason, len, "%s", why);
    return 2;
}

int fv_sim_site_command(struct fv_sim_site *s, const struct fv_site_command *c, char *reason,
                        size_t len)
{
    snprintf(reason, len, "%s", "");
    const char *ev = c->event_id ? c->event_id : "";
    switch (c->kind) {
    case FV_SITE_CMD_NOTICE:
        return s->p.opts_out ? refuse(reason, len, "the owner opts out of events") : 1;
    case FV_SITE_CMD_CANCEL:
        if (s->dispatch_kw > 0 && strcmp(s->event, ev) == 0) s->dispatch_kw = 0;
        return 1;
    case FV_SITE_CMD_DISPATCH:
        break;
    default:
        snprintf(reason, len, "unknown command kind %d", c->kind);
        return 2;
    }
    if (s->p.opts_out) return refuse(reason, len, "the owner opts out of events");
    if (!(c->target_kw > 0)) { /* 0: stop delivering for this event */
        if (strcmp(s->event, ev) == 0) s->dispatch_kw = 0;
        return 1;
    }
    if (c->end_ms <= s->t_ms) return refuse(reason, len, "the event is over");
    if (strlen(ev) >= sizeof s->event) return refuse(reason, len, "event id too long");
    double reserve = s->p.capacity_kwh * s->p.reserve_pct / 100.0;
    if (s->energy_kwh <= reserve + RESERVE_MARGIN_KWH)
        return refuse(reason, len, "the battery is at its backup reserve");
    snprintf(s->event, sizeof s->event, "%s", ev);
    s->dispatch_kw = isfinite(c->target_kw) ? c->target_kw : 0;
    s->dispatch_start_ms = c->start_ms;
    s->dispatch_end_ms = c->end_ms;
    return 1;
}
