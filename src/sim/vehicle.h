/*
 * vehicle.h - the simulator's vehicle model: one car that drives, stops and charges, and
 * reports its signals the way a real vehicle's telemetry client does.
 *
 * Determinism: a vehicle is a pure function of (seed, index) and the sequence of step
 * durations it is given. Two vehicles made with the same arguments and stepped alike report
 * bit-identical values; no wall clock, no global state, no libc rand().
 *
 * Signals (field numbers from the protocol's Field enum, docs/protocol.md) come from one
 * fixed list; a record carries its first K entries (fv_sim_signal_field). Units are the
 * simulator's choice and are stated per signal in vehicle.c (km, km/h, V, A, %, kW, degC,
 * bar, m/s^2, degrees); values are rounded to what a car reports (speed 0.1 km/h, SoC
 * 0.01 %, ...). Sampled datums own no memory (no string values), so they need no freeing.
 *
 * Thread-safety: a vehicle belongs to one thread at a time; the functions share no state.
 */
#ifndef FV_SIM_VEHICLE_H
#define FV_SIM_VEHICLE_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "wire/payload.h"

#define FV_SIM_VIN_LEN 17

/* What the car is doing (in-memory only; never on the wire as such). */
enum fv_sim_vstate { FV_SIM_STOP = 0, FV_SIM_DRIVE = 1, FV_SIM_CHARGE = 2 };

struct fv_sim_vehicle;

/* Number of signals the model reports, and the field number of the i-th (i < count). */
size_t fv_sim_signal_count(void);
uint32_t fv_sim_signal_field(size_t i);

/*
 * Writes the VIN of vehicle `index` into out (FV_SIM_VIN_LEN chars + NUL): prefix followed
 * by the index, zero-padded to 17 characters. FV_EINVAL (with a reason) when the prefix is
 * not 1..16 characters of [A-Za-z0-9_-] or the index does not fit beside it.
 */
int fv_sim_vin(const char *prefix, uint32_t index, char out[FV_SIM_VIN_LEN + 1], char *err,
               size_t errlen);

/* Makes vehicle `index` of a fleet seeded with `seed`. FV_OK or FV_ENOMEM; caller frees. */
int fv_sim_vehicle_new(uint64_t seed, uint32_t index, struct fv_sim_vehicle **out);
void fv_sim_vehicle_free(struct fv_sim_vehicle *v);

/* Advances the model by dt seconds (0 < dt; large steps are split internally). */
void fv_sim_vehicle_step(struct fv_sim_vehicle *v, double dt);

enum fv_sim_vstate fv_sim_vehicle_state(const struct fv_sim_vehicle *v);

/* Fills out[0..k) with the current values of the first k signals (k is clamped to
 * fv_sim_signal_count()); returns how many were written. */
size_t fv_sim_vehicle_sample(const struct fv_sim_vehicle *v, size_t k, struct fv_datum *out);

/*
 * Appends to out the protobuf `V` payload of the vehicle's current first-k signals with
 * created_at = created_at_ms, vin = vin, is_resend = 0. *ndatums receives the datum count.
 * FV_OK or FV_ENOMEM.
 */
int fv_sim_vehicle_encode(const struct fv_sim_vehicle *v, const char *vin, size_t k,
                          uint64_t created_at_ms, struct fv_buf *out, size_t *ndatums);

#endif
