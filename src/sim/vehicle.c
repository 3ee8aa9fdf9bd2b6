/*
 * vehicle.c - the simulated car behind `fleetvault simulate` (contract in vehicle.h).
 *
 * The model is a small state machine with physics just good enough for values to look real:
 *
 *        +-------- stop time over, enough charge: new trip -------+
 *        v                                                        |
 *     DRIVE --- trip done, car halted (step_drive) ---------> STOP
 *                                                               ^  |
 *          charge limit reached + plugged-in wait (step_charge) |  | low SoC, or sometimes
 *                                                               |  v  (step_stop)
 *                                                              CHARGE
 *
 * DRIVE: the trip is a chain of road segments (city / arterial / highway / red light), each
 * with a target speed and a heading change applied as a yaw rate; speed follows the target
 * with bounded acceleration; a trip may start by reversing out of a parking space (gear R).
 * Traction power = inertia (60 % regenerated when braking) + rolling resistance + aero drag
 * + auxiliaries; it drains the pack and sets pack current and voltage sag.
 * CHARGE: AC charging at the car's amp limit on 240 V, ramping up ("Starting") to
 * "Charging", then "Complete" at the charge limit; the car then stays plugged in a while.
 *
 * Invariants (checked by tests/sim/test_vehicle.c): 0 <= SoC <= 100; speed >= 0 and
 * <= 135 km/h; gear is P when not driving; heading in [0, 360); all values finite.
 * Randomness comes only from the vehicle's own splitmix64 stream, seeded from
 * (seed, index), so the model is deterministic (see vehicle.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/vehicle.h"
#include "util/err.h"

/* On-wire members of the Value oneof used here (protocol notes, value kinds table). */
#define MEMBER_INT          2
#define MEMBER_DOUBLE       5
#define MEMBER_BOOL         6
#define MEMBER_LOCATION     7
#define MEMBER_SHIFT_STATE  9
#define MEMBER_DETAILED_CHG 32

/* ShiftState and DetailedChargeStateValue enum numbers (on the wire). */
#define GEAR_P           2
#define GEAR_R           3
#define GEAR_D           5
#define DCS_DISCONNECTED 1
#define DCS_STARTING     3
#define DCS_CHARGING     4
#define DCS_COMPLETE     5

#define PI         3.14159265358979323846
#define M_PER_DEG  111320.0 /* metres per degree of latitude */
#define AC_VOLTS   240.0
#define MAX_STEP_S 1.0 /* larger steps are split so the physics stays stable */

/* Signal numbers (Field enum), in the order records carry them: the first K are sent. */
enum {
    SIG_CHARGE_STATE = 2,
    SIG_DCDC_ENABLE = 9,
    SIG_SPEED = 4,
    SIG_ODOMETER = 5,
    SIG_PACK_VOLTAGE = 6,
    SIG_PACK_CURRENT = 7,
    SIG_SOC = 8,
    SIG_GEAR = 10,
    SIG_PEDAL = 12,
    SIG_BRAKE = 13,
    SIG_LOCATION = 21,
    SIG_HEADING = 23,
    SIG_MODULE_TMAX = 29,
    SIG_MODULE_TMIN = 31,
    SIG_RATED_RANGE = 32,
    SIG_DC_POWER = 35,
    SIG_AC_POWER = 37,
    SIG_CHARGE_LIMIT = 38,
    SIG_FAST_CHARGER = 39,
    SIG_EST_RANGE = 40,
    SIG_IDEAL_RANGE = 41,
    SIG_BATTERY_LEVEL = 42,
    SIG_TIME_TO_FULL = 43,
    SIG_CHARGE_AMPS = 49,
    SIG_PHASES = 51,
    SIG_LOCKED = 59,
    SIG_TPMS_FL = 69,
    SIG_TPMS_FR = 70,
    SIG_TPMS_RL = 71,
    SIG_TPMS_RR = 72,
    SIG_INSIDE_T = 85,
    SIG_OUTSIDE_T = 86,
    SIG_LAT_ACCEL = 98,
    SIG_LON_ACCEL = 99,
    SIG_DETAILED_CHG = 179
};

static const uint32_t signal_list[] = {
    SIG_SPEED,         /* km/h, 0.1 */
    SIG_ODOMETER,      /* km, 0.001 */
    SIG_PACK_VOLTAGE,  /* V, 0.01 */
    SIG_PACK_CURRENT,  /* A, 0.1; positive = discharging */
    SIG_SOC,           /* %, 0.01 */
    SIG_GEAR,          /* ShiftState */
    SIG_LOCATION,      /* degrees, 1e-6 */
    SIG_HEADING,       /* degrees, 0.1 */
    SIG_EST_RANGE,     /* km, 0.01, from recent consumption */
    SIG_BATTERY_LEVEL, /* %, 0.01, usable */
    SIG_CHARGE_AMPS,   /* A, 1 */
    SIG_AC_POWER,      /* kW, 0.01 */
    SIG_LOCKED,        /* bool */
    SIG_TPMS_FL,       /* bar, 0.01 */
    SIG_TPMS_FR,       SIG_TPMS_RL, SIG_TPMS_RR, SIG_INSIDE_T, /* degC, 0.1 */
    SIG_OUTSIDE_T,                                             /* degC, 0.5 */
    SIG_DETAILED_CHG,                                          /* DetailedChargeStateValue */
    SIG_LAT_ACCEL,                                             /* m/s^2, 0.01 */
    SIG_LON_ACCEL,                                             /* m/s^2, 0.01 */
    SIG_RATED_RANGE,  /* km, 0.01, at the rated consumption */
    SIG_IDEAL_RANGE,  /* km, 0.01 */
    SIG_CHARGE_LIMIT, /* %, int */
    SIG_TIME_TO_FULL, /* hours, 0.01 */
    SIG_PHASES,       /* int */
    SIG_DC_POWER,     /* kW (always 0: AC only) */
    SIG_FAST_CHARGER, /* bool */
    SIG_PEDAL,        /* %, 0.1 */
    SIG_BRAKE,        /* bool */
    SIG_MODULE_TMAX,  /* degC, 0.5 */
    SIG_MODULE_TMIN,  /* degC, 0.5 */
    SIG_DCDC_ENABLE,  /* bool */
};
#define NSIGNALS (sizeof signal_list / sizeof signal_list[0])

struct fv_sim_vehicle {
    uint64_t rng;
    enum fv_sim_vstate state;
    double clock_s;   /* model time since creation */
    double state_t;   /* seconds in the current state */
    double state_len; /* STOP: planned duration; CHARGE: plugged-in time after complete */

    /* Traits, fixed at creation. */
    double cap_kwh, v_empty, v_full, r_int_ohm, mass_kg, cda, aux_w, max_amps;
    double rated_wh_km, climate_c, tpms_base[4];
    int charge_limit;

    /* Dynamics. */
    double speed_ms, accel, lat_accel, heading_deg, lat, lon, odo_km, soc;
    double power_w, inside_c, outside_c, module_c, tpms[4], amps, wh_km_avg;
    double trip_left_km, seg_left_m, seg_target_ms, turn_left_deg, hold_s, reverse_left_s;
    int gear, locked, charge_detail;
};

/* ---- randomness: splitmix64 (public-domain algorithm by S. Vigna) ------------------------ */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_range(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * rng_unit(s);
}

static double clampd(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* Rounds to 1/scale (scale a power of ten); round(x*s)/s yields the double nearest the
 * decimal, so 12.3 prints as 12.3. */
static double roundto(double x, double scale)
{
    double r = round(x * scale) / scale;
    return r == 0.0 ? 0.0 : r; /* no -0 */
}

/* Moves x toward target with time constant tau (exact exponential step). */
static double approach(double x, double target, double tau, double dt)
{
    return target + (x - target) * exp(-dt / tau);
}

/* ---- public helpers ---------------------------------------------------------------------- */

size_t fv_sim_signal_count(void)
{
    return NSIGNALS;
}

uint32_t fv_sim_signal_field(size_t i)
{
    return i < NSIGNALS ? signal_list[i] : 0;
}

int fv_sim_vin(const char *prefix, uint32_t index, char out[FV_SIM_VIN_LEN + 1], char *err,
               size_t errlen)
{
    size_t plen = strlen(prefix);
    if (plen == 0 || plen >= FV_SIM_VIN_LEN) {
        fv_seterr(err, errlen, "id prefix '%s' must be 1..%d characters", prefix,
                  FV_SIM_VIN_LEN - 1);
        return FV_EINVAL;
    }
    for (size_t i = 0; i < plen; i++) {
        char c = prefix[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-')) {
            fv_seterr(err, errlen, "id prefix '%s' may hold only A-Z a-z 0-9 _ -", prefix);
            return FV_EINVAL;
        }
    }
    int width = (int)(FV_SIM_VIN_LEN - plen);
    char digits[16];
    int nd = snprintf(digits, sizeof digits, "%u", index);
    if (nd > width) {
        fv_seterr(err, errlen, "vehicle index %u does not fit after id prefix '%s' in %d chars",
                  index, prefix, FV_SIM_VIN_LEN);
        return FV_EINVAL;
    }
    snprintf(out, FV_SIM_VIN_LEN + 1, "%s%0*u", prefix, width, index);
    return FV_OK;
}

/* ---- transitions ------------------------------------------------------------------------- */

static void enter_stop(struct fv_sim_vehicle *v)
{
    v->state = FV_SIM_STOP;
    v->state_t = 0;
    /* Mostly short stops (errands), sometimes long ones (work, night). */
    v->state_len =
        rng_unit(&v->rng) < 0.8 ? rng_range(&v->rng, 30, 900) : rng_range(&v->rng, 900, 4 * 3600);
    v->gear = GEAR_P;
    v->speed_ms = v->accel = v->lat_accel = 0;
    v->amps = 0;
    v->charge_detail = DCS_DISCONNECTED;
}

static void enter_drive(struct fv_sim_vehicle *v)
{
    v->state = FV_SIM_DRIVE;
    v->state_t = 0;
    /* Trip length log-uniform in 2..60 km. */
    v->trip_left_km = 2.0 * exp(rng_unit(&v->rng) * log(30.0));
    v->seg_left_m = 0;
    v->hold_s = 0;
    v->turn_left_deg = 0;
    v->amps = 0;
    v->charge_detail = DCS_DISCONNECTED;
    v->locked = 0; /* the driver just got in; drive-away locking follows */
    if (rng_unit(&v->rng) < 0.25) {
        v->reverse_left_s = rng_range(&v->rng, 4, 8);
        v->gear = GEAR_R;
    } else {
        v->reverse_left_s = 0;
        v->gear = GEAR_D;
    }
}

static void enter_charge(struct fv_sim_vehicle *v)
{
    v->state = FV_SIM_CHARGE;
    v->state_t = 0;
    v->state_len = rng_range(&v->rng, 60, 1800); /* stays plugged in after complete */
    v->gear = GEAR_P;
    v->speed_ms = v->accel = v->lat_accel = 0;
    v->amps = 0;
    v->charge_detail = DCS_STARTING;
}

/* Picks the next road segment: its kind sets target speed, length and the turn into it. */
static void next_segment(struct fv_sim_vehicle *v)
{
    double r = rng_unit(&v->rng);
    if (r < 0.12) { /* red light or stop sign */
        v->hold_s = rng_range(&v->rng, 3, 60);
        v->seg_target_ms = 0;
        v->seg_left_m = 0;
        v->turn_left_deg = rng_unit(&v->rng) < 0.5 ? rng_range(&v->rng, -90, 90) : 0;
        return;
    }
    double kmh, len_m, turn;
    if (r < 0.5) {
        kmh = rng_range(&v->rng, 30, 55);
        len_m = rng_range(&v->rng, 150, 1200);
        turn = rng_unit(&v->rng) < 0.4 ? (rng_unit(&v->rng) < 0.5 ? -90 : 90) : 0;
    } else if (r < 0.8 || v->trip_left_km < 10) {
        kmh = rng_range(&v->rng, 60, 90);
        len_m = rng_range(&v->rng, 500, 3000);
        turn = rng_range(&v->rng, -30, 30);
    } else {
        kmh = rng_range(&v->rng, 100, 130);
        len_m = rng_range(&v->rng, 2000, 12000);
        turn = rng_range(&v->rng, -10, 10);
    }
    v->seg_target_ms = kmh / 3.6;
    v->seg_left_m = len_m;
    v->turn_left_deg += turn;
}

/* ---- per-state physics ------------------------------------------------------------------- */

static void move(struct fv_sim_vehicle *v, double dist_m, int backwards)
{
    double h = v->heading_deg * PI / 180.0;
    double sign = backwards ? -1.0 : 1.0;
    v->lat += sign * dist_m * cos(h) / M_PER_DEG;
    v->lat = clampd(v->lat, -89.0, 89.0);
    v->lon += sign * dist_m * sin(h) / (M_PER_DEG * cos(v->lat * PI / 180.0));
    if (v->lon >= 180.0)
        v->lon -= 360.0;
    else if (v->lon < -180.0)
        v->lon += 360.0;
}

static void step_drive(struct fv_sim_vehicle *v, double dt)
{
    double target;
    if (v->gear == GEAR_R) {
        if (v->reverse_left_s > 0) {
            v->reverse_left_s -= dt;
            target = 1.5;
        } else {
            target = 0;
            if (v->speed_ms < 0.05) v->gear = GEAR_D; /* halted: shift into drive */
        }
    } else if (v->trip_left_km <= 0) {
        target = 0;
    } else if (v->hold_s > 0) {
        target = 0;
        if (v->speed_ms < 0.05) v->hold_s -= dt;
    } else {
        if (v->seg_left_m <= 0) next_segment(v);
        target = v->seg_target_ms;
    }

    /* Bounded acceleration toward the target, with a little driver noise. */
    double a = (target - v->speed_ms) / 2.0 + rng_range(&v->rng, -0.15, 0.15);
    a = clampd(a, -3.5, 2.5);
    double s0 = v->speed_ms;
    double s1 = s0 + a * dt;
    if (s1 < 0 || (target == 0 && s1 < 0.05)) s1 = 0;
    v->accel = (s1 - s0) / dt;
    v->speed_ms = s1;
    double dist = 0.5 * (s0 + s1) * dt;

    /* Turns happen while moving, at most 15 deg/s. */
    double yaw = 0;
    if (v->turn_left_deg != 0 && v->speed_ms > 1.0) {
        double rate = v->speed_ms > 15 ? 2.0 : 15.0;
        double d = clampd(v->turn_left_deg, -rate * dt, rate * dt);
        v->turn_left_deg -= d;
        yaw = d / dt;
        v->heading_deg = fmod(v->heading_deg + d + 360.0, 360.0);
    }
    v->lat_accel = v->speed_ms * yaw * PI / 180.0;

    move(v, dist, v->gear == GEAR_R);
    v->odo_km += dist / 1000.0;
    if (v->gear != GEAR_R) {
        v->trip_left_km -= dist / 1000.0;
        v->seg_left_m -= dist;
    }

    /* Traction power at the pack. */
    double vm = 0.5 * (s0 + s1);
    double inertial = v->mass_kg * v->accel * vm;
    if (inertial < 0) inertial *= 0.6;
    double rolling = 0.011 * v->mass_kg * 9.81 * vm;
    double aero = 0.5 * 1.2 * v->cda * vm * vm * vm;
    v->power_w = inertial + rolling + aero + v->aux_w;
    if (dist > 1.0) {
        double inst = clampd(v->power_w * dt / 3600.0 / (dist / 1000.0), 60, 600);
        double w = clampd(dist / 30000.0, 0, 1); /* averages over ~30 km */
        v->wh_km_avg += w * (inst - v->wh_km_avg);
    }
    v->soc -= v->power_w * dt / (v->cap_kwh * 3.6e6) * 100.0;
    v->soc = clampd(v->soc, 0, 100);
    if (v->soc < 8 && v->trip_left_km > 1)
        v->trip_left_km = 1; /* range anxiety: head for a charger */

    if (v->state_t > 5) v->locked = 1; /* drive-away locking */
    if (v->trip_left_km <= 0 && v->speed_ms == 0 && v->gear == GEAR_D) enter_stop(v);
}

static void step_stop(struct fv_sim_vehicle *v, double dt)
{
    (void)dt;
    v->power_w = 0;
    if (v->state_t > 20) v->locked = 1;
    if (v->state_t < v->state_len) return;
    if (v->soc < 25 || (v->soc < v->charge_limit - 10 && rng_unit(&v->rng) < 0.35))
        enter_charge(v);
    else
        enter_drive(v);
}

static void step_charge(struct fv_sim_vehicle *v, double dt)
{
    if (v->state_t > 20) v->locked = 1;
    if (v->charge_detail == DCS_STARTING || v->charge_detail == DCS_CHARGING) {
        v->amps = fmin(v->max_amps, v->amps + 4.0 * dt);
        if (v->charge_detail == DCS_STARTING && v->state_t >= 5) v->charge_detail = DCS_CHARGING;
        /* Taper above 95 % like a real pack. */
        if (v->soc > 95) v->amps = fmin(v->amps, v->max_amps * (100 - v->soc) / 5.0 + 1);
        double p_ac = v->amps * AC_VOLTS;
        v->power_w = -p_ac * 0.92; /* into the pack, after charger losses */
        v->soc = clampd(v->soc + p_ac * 0.92 * dt / (v->cap_kwh * 3.6e6) * 100.0, 0, 100);
        if (v->soc >= v->charge_limit) {
            v->charge_detail = DCS_COMPLETE;
            v->amps = 0;
            v->power_w = 0;
            v->state_t = 0; /* now counts plugged-in time after completion */
        }
        return;
    }
    v->power_w = 0;
    if (v->state_t >= v->state_len) {
        enter_stop(v);
        v->state_len = rng_range(&v->rng, 60, 3600);
    }
}

static void step1(struct fv_sim_vehicle *v, double dt)
{
    v->clock_s += dt;
    v->state_t += dt;
    switch (v->state) {
    case FV_SIM_DRIVE:
        step_drive(v, dt);
        break;
    case FV_SIM_CHARGE:
        step_charge(v, dt);
        break;
    case FV_SIM_STOP:
    default:
        step_stop(v, dt);
        break;
    }
    /* Daily temperature cycle, coldest at 4 am model time. */
    v->outside_c = v->climate_c + 5.0 * sin(2 * PI * (v->clock_s / 86400.0 - 10.0 / 24.0));
    int hvac = v->state != FV_SIM_STOP;
    v->inside_c = approach(v->inside_c, hvac ? 21.0 : v->outside_c, hvac ? 300 : 1800, dt);
    double heat = fabs(v->power_w) / 1000.0 * 0.15;
    v->module_c = approach(v->module_c, 0.4 * v->outside_c + 15.0 + heat, 1200, dt);
    double warm = v->state == FV_SIM_DRIVE ? 0.15 * fmin(1.0, v->speed_ms / 10.0) : 0;
    for (int i = 0; i < 4; i++)
        v->tpms[i] =
            approach(v->tpms[i], v->tpms_base[i] + warm + 0.004 * (v->outside_c - 20.0), 600, dt);
}

void fv_sim_vehicle_step(struct fv_sim_vehicle *v, double dt)
{
    while (dt > 0) {
        double d = dt > MAX_STEP_S ? MAX_STEP_S : dt;
        step1(v, d);
        dt -= d;
    }
}

enum fv_sim_vstate fv_sim_vehicle_state(const struct fv_sim_vehicle *v)
{
    return v->state;
}

/* ---- creation ---------------------------------------------------------------------------- */

static const struct {
    double lat, lon, climate_c;
} homes[] = {
    {37.4419, -122.1430, 16}, /* Palo Alto */
    {37.4937, -121.9446, 17}, /* Fremont */
    {30.2226, -97.6170, 22},  /* Austin */
    {52.4000, 13.7900, 10},   /* Gruenheide */
    {31.0600, 121.7600, 17},  /* Shanghai */
    {59.9139, 10.7522, 6},    /* Oslo */
    {52.3676, 4.9041, 11},    /* Amsterdam */
    {-33.8688, 151.2093, 18}, /* Sydney */
};

int fv_sim_vehicle_new(uint64_t seed, uint32_t index, struct fv_sim_vehicle **out)
{
    *out = NULL;
    struct fv_sim_vehicle *v = calloc(1, sizeof *v);
    if (v == NULL) return FV_ENOMEM;
    /* Mix seed and index so neighbouring indexes get unrelated streams. */
    uint64_t s = seed ^ 0x5EEDF1EE7ULL;
    v->rng = rng_next(&s) ^ ((uint64_t)index * 0xD1B54A32D192ED03ULL);
    (void)rng_next(&v->rng);

    static const double caps[] = {57.5, 75.0, 82.0, 100.0};
    static const double amps[] = {16, 32, 32, 48};
    v->cap_kwh = caps[rng_next(&v->rng) % 4];
    v->max_amps = amps[rng_next(&v->rng) % 4];
    v->v_empty = rng_range(&v->rng, 320, 335);
    v->v_full = rng_range(&v->rng, 395, 404);
    v->r_int_ohm = rng_range(&v->rng, 0.06, 0.10);
    v->mass_kg = rng_range(&v->rng, 1850, 2300);
    v->cda = rng_range(&v->rng, 0.50, 0.65);
    v->aux_w = rng_range(&v->rng, 300, 900);
    v->rated_wh_km = rng_range(&v->rng, 140, 165);
    v->charge_limit = 80 + (int)(rng_next(&v->rng) % 11);
    for (int i = 0; i < 4; i++)
        v->tpms_base[i] = rng_range(&v->rng, 2.8, 3.0);

    size_t h = rng_next(&v->rng) % (sizeof homes / sizeof homes[0]);
    v->lat = homes[h].lat + rng_range(&v->rng, -0.1, 0.1);
    v->lon = homes[h].lon + rng_range(&v->rng, -0.1, 0.1);
    v->climate_c = homes[h].climate_c + rng_range(&v->rng, -3, 3);
    v->heading_deg = roundto(rng_range(&v->rng, 0, 359.9), 10);
    v->odo_km = rng_range(&v->rng, 500, 90000);
    v->soc = rng_range(&v->rng, 30, 90);
    v->wh_km_avg = v->rated_wh_km * rng_range(&v->rng, 0.95, 1.2);
    v->clock_s = rng_range(&v->rng, 0, 86400); /* fleet members live in different hours */
    v->outside_c = v->climate_c;
    v->inside_c = v->climate_c + rng_range(&v->rng, -2, 4);
    v->module_c = 0.4 * v->climate_c + 15.0;
    for (int i = 0; i < 4; i++)
        v->tpms[i] = v->tpms_base[i];

    /* Start somewhere in the daily cycle: half stopped, a third driving, the rest charging. */
    double r = rng_unit(&v->rng);
    if (r < 0.5) {
        enter_stop(v);
        v->state_t = rng_range(&v->rng, 0, v->state_len);
        v->locked = v->state_t > 20;
    } else if (r < 0.85) {
        enter_drive(v);
        v->gear = GEAR_D;
        v->reverse_left_s = 0;
        next_segment(v);
        v->hold_s = 0;
        v->speed_ms = v->seg_target_ms;
        v->locked = 1;
    } else {
        v->soc = rng_range(&v->rng, 15, (double)v->charge_limit - 5);
        enter_charge(v);
        v->charge_detail = DCS_CHARGING;
        v->amps = v->max_amps;
        v->state_t = 30;
        v->locked = 1;
    }
    *out = v;
    return FV_OK;
}

void fv_sim_vehicle_free(struct fv_sim_vehicle *v)
{
    free(v);
}

/* ---- sampling ---------------------------------------------------------------------------- */

static void set_double(struct fv_datum *d, uint32_t f, double x)
{
    d->field = f;
    d->value.kind = FV_VK_DOUBLE;
    d->value.member = MEMBER_DOUBLE;
    d->value.u.d = x;
}

static void set_int(struct fv_datum *d, uint32_t f, uint8_t kind, uint8_t member, int64_t x)
{
    d->field = f;
    d->value.kind = kind;
    d->value.member = member;
    d->value.u.i = x;
}

/* Open-circuit voltage from SoC, minus sag under load. */
static double pack_voltage(const struct fv_sim_vehicle *v, double current)
{
    double ocv = v->v_empty + (v->v_full - v->v_empty) * v->soc / 100.0;
    return ocv - current * v->r_int_ohm;
}

static void sample_one(const struct fv_sim_vehicle *v, uint32_t f, struct fv_datum *d)
{
    double ocv = v->v_empty + (v->v_full - v->v_empty) * v->soc / 100.0;
    double current = v->power_w / ocv;
    double usable = clampd(v->soc * 0.985, 0, 100);
    double kwh_left = v->cap_kwh * usable / 100.0;
    int charging = v->state == FV_SIM_CHARGE &&
                   (v->charge_detail == DCS_STARTING || v->charge_detail == DCS_CHARGING);
    memset(d, 0, sizeof *d);
    switch (f) {
    case SIG_SPEED:
        set_double(d, f, roundto(v->speed_ms * 3.6, 10));
        break;
    case SIG_ODOMETER:
        set_double(d, f, roundto(v->odo_km, 1000));
        break;
    case SIG_PACK_VOLTAGE:
        set_double(d, f, roundto(pack_voltage(v, current), 100));
        break;
    case SIG_PACK_CURRENT:
        set_double(d, f, roundto(current, 10));
        break;
    case SIG_SOC:
        set_double(d, f, roundto(v->soc, 100));
        break;
    case SIG_GEAR:
        set_int(d, f, FV_VK_ENUM, MEMBER_SHIFT_STATE, v->gear);
        break;
    case SIG_LOCATION:
        d->field = f;
        d->value.kind = FV_VK_LOCATION;
        d->value.member = MEMBER_LOCATION;
        d->value.u.loc.lat = roundto(v->lat, 1e6);
        d->value.u.loc.lon = roundto(v->lon, 1e6);
        break;
    case SIG_HEADING:
        set_double(d, f, fmod(roundto(v->heading_deg, 10), 360.0));
        break;
    case SIG_EST_RANGE:
        set_double(d, f, roundto(kwh_left * 1000.0 / v->wh_km_avg, 100));
        break;
    case SIG_RATED_RANGE:
        set_double(d, f, roundto(kwh_left * 1000.0 / v->rated_wh_km, 100));
        break;
    case SIG_IDEAL_RANGE:
        set_double(d, f, roundto(kwh_left * 1000.0 / (v->rated_wh_km * 0.93), 100));
        break;
    case SIG_BATTERY_LEVEL:
        set_double(d, f, roundto(usable, 100));
        break;
    case SIG_CHARGE_AMPS:
        set_double(d, f, round(v->amps));
        break;
    case SIG_AC_POWER:
        set_double(d, f, roundto(v->amps * AC_VOLTS / 1000.0, 100));
        break;
    case SIG_LOCKED:
        set_int(d, f, FV_VK_BOOL, MEMBER_BOOL, v->locked);
        break;
    case SIG_TPMS_FL:
    case SIG_TPMS_FR:
    case SIG_TPMS_RL:
    case SIG_TPMS_RR:
        set_double(d, f, roundto(v->tpms[f - SIG_TPMS_FL], 100));
        break;
    case SIG_INSIDE_T:
        set_double(d, f, roundto(v->inside_c, 10));
        break;
    case SIG_OUTSIDE_T:
        set_double(d, f, roundto(v->outside_c, 2));
        break;
    case SIG_DETAILED_CHG:
        set_int(d, f, FV_VK_ENUM, MEMBER_DETAILED_CHG, v->charge_detail);
        break;
    case SIG_LAT_ACCEL:
        set_double(d, f, roundto(v->lat_accel, 100));
        break;
    case SIG_LON_ACCEL:
        set_double(d, f, roundto(v->accel, 100));
        break;
    case SIG_CHARGE_LIMIT:
        set_int(d, f, FV_VK_INT, MEMBER_INT, v->charge_limit);
        break;
    case SIG_TIME_TO_FULL: {
        double h = 0;
        if (charging && v->amps > 0 && v->soc < v->charge_limit)
            h = (v->charge_limit - v->soc) / 100.0 * v->cap_kwh /
                (v->amps * AC_VOLTS * 0.92 / 1000.0);
        set_double(d, f, roundto(h, 100));
        break;
    }
    case SIG_PHASES:
        set_int(d, f, FV_VK_INT, MEMBER_INT, charging ? 1 : 0);
        break;
    case SIG_DC_POWER:
        set_double(d, f, 0.0);
        break;
    case SIG_FAST_CHARGER:
        set_int(d, f, FV_VK_BOOL, MEMBER_BOOL, 0);
        break;
    case SIG_PEDAL: {
        double pedal = 0;
        if (v->state == FV_SIM_DRIVE && v->power_w > v->aux_w)
            pedal = clampd((v->power_w - v->aux_w) / 150000.0 * 100.0, 0, 100);
        set_double(d, f, roundto(pedal, 10));
        break;
    }
    case SIG_BRAKE:
        set_int(d, f, FV_VK_BOOL, MEMBER_BOOL, v->accel < -1.0);
        break;
    case SIG_MODULE_TMAX:
        set_double(d, f, roundto(v->module_c + 1.0, 2));
        break;
    case SIG_MODULE_TMIN:
        set_double(d, f, roundto(v->module_c - 1.0, 2));
        break;
    case SIG_DCDC_ENABLE:
    default:
        set_int(d, f, FV_VK_BOOL, MEMBER_BOOL, 1);
        break;
    }
}

size_t fv_sim_vehicle_sample(const struct fv_sim_vehicle *v, size_t k, struct fv_datum *out)
{
    if (k > NSIGNALS) k = NSIGNALS;
    for (size_t i = 0; i < k; i++)
        sample_one(v, signal_list[i], &out[i]);
    return k;
}

int fv_sim_vehicle_encode(const struct fv_sim_vehicle *v, const char *vin, size_t k,
                          uint64_t created_at_ms, struct fv_buf *out, size_t *ndatums)
{
    struct fv_datum data[NSIGNALS];
    struct fv_vrecord r;
    memset(&r, 0, sizeof r);
    r.created_at_ms = created_at_ms;
    r.is_resend = 0;
    r.vin = (char *)vin; /* read-only use by the encoder */
    r.n = fv_sim_vehicle_sample(v, k, data);
    r.data = data;
    *ndatums = r.n;
    return fv_payload_encode_v(&r, out);
}
