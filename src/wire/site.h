/*
 * site.h - home-energy sites on the wire: the `site` telemetry payload (site.proto), its
 * checks, and its mapping onto the value model, so that the server stores a site's samples
 * like any vehicle's signals (docs/protocol.md, "Energy sites").
 *
 * A sample is stored as a V record whose signals are fleetvault's own numbers
 * FV_SIG_SITE_* (far above the protocol's Field enum, which ends below 300): queries, the
 * latest state, retention and privacy treat them as any signal, by the names below.
 *
 * Checks (fv_site_check; the device gets the protocol's error reply and nothing is stored):
 * created_at set; every number finite; 0 < capacity_kwh <= FV_SITE_MAX_KWH; 0 <= energy_kwh
 * <= capacity_kwh * (1 + FV_SITE_ENERGY_SLACK); 0 <= reserve_pct <= 100; solar_kw, load_kw,
 * export_limit_kw >= 0; 0 < inverter_kw <= FV_SITE_MAX_KW; |battery_kw| <= inverter_kw *
 * FV_SITE_PEAK_RATIO; |grid_kw|, solar_kw, load_kw <= FV_SITE_MAX_KW; mode 0..4.
 *
 * Pure functions; thread-safe.
 */
#ifndef FV_WIRE_SITE_H
#define FV_WIRE_SITE_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "wire/payload.h"

#define FV_TOPIC_SITE             "site"
#define FV_TOPIC_SITE_COMMAND     "site_command"
#define FV_TOPIC_SITE_COMMAND_ACK "site_command_ack"

/* Site signals (numbers and names; fv_signal_name and fv_signal_lookup know them). */
enum {
    FV_SIG_SITE_BATTERY_KW = 60001, /* SiteBatteryPower: + discharging */
    FV_SIG_SITE_ENERGY_KWH,         /* SiteEnergy */
    FV_SIG_SITE_CAPACITY_KWH,       /* SiteCapacity */
    FV_SIG_SITE_RESERVE_PCT,        /* SiteReserve */
    FV_SIG_SITE_SOLAR_KW,           /* SiteSolarPower */
    FV_SIG_SITE_LOAD_KW,            /* SiteLoadPower */
    FV_SIG_SITE_GRID_KW,            /* SiteGridPower: + import */
    FV_SIG_SITE_MODE,               /* SiteMode */
    FV_SIG_SITE_INVERTER_KW,        /* SiteInverterLimit */
    FV_SIG_SITE_EXPORT_LIMIT_KW,    /* SiteExportLimit */
    FV_SIG_SITE_END
};
#define FV_SIG_SITE_FIRST FV_SIG_SITE_BATTERY_KW
#define FV_SITE_SIGNALS   (FV_SIG_SITE_END - FV_SIG_SITE_FIRST)

/* The name of a site signal number, or NULL. */
const char *fv_site_signal_name(unsigned n);

#define FV_SITE_MAX_KWH      100000.0 /* the largest capacity a site may report */
#define FV_SITE_MAX_KW       100000.0
#define FV_SITE_ENERGY_SLACK 0.05 /* stored energy may read this much above capacity */
#define FV_SITE_PEAK_RATIO   1.5  /* battery power may reach this times the inverter rating */

enum fv_site_mode {
    FV_SITE_MODE_UNKNOWN = 0,
    FV_SITE_MODE_SELF_POWERED,
    FV_SITE_MODE_BACKUP,
    FV_SITE_MODE_TIME_BASED,
    FV_SITE_MODE_VPP
};

struct fv_site_sample {
    uint64_t created_at_ms;
    int is_resend;
    double battery_kw, energy_kwh, capacity_kwh, reserve_pct, solar_kw, load_kw, grid_kw;
    int mode;
    double inverter_kw, export_limit_kw;
};

/* Decodes a `site` payload and checks it. FV_OK, or FV_EPROTO with the reason in err. */
int fv_site_decode(const unsigned char *p, size_t len, struct fv_site_sample *out, char *err,
                   size_t errlen);
/* The checks above alone. */
int fv_site_check(const struct fv_site_sample *s, char *err, size_t errlen);
/* Encodes a sample as a `site` payload (the simulator's side); site_id may be NULL. */
int fv_site_encode(const struct fv_site_sample *s, const char *site_id, struct fv_buf *out);
/* The sample as a V record of FV_SIG_SITE_* signals with vin := id (what the server stores). */
int fv_site_to_vrecord(const struct fv_site_sample *s, const char *id, struct fv_vrecord *out);
/* The server's path: decodes and checks a `site` payload, then appends it to out as the V
 * payload it is stored as (vin := id) and sets *v to that record. FV_EPROTO (err says why),
 * FV_ENOMEM; *v is zeroed on failure. */
int fv_site_normalise(const unsigned char *p, size_t len, const char *id, struct fv_buf *out,
                      struct fv_vrecord *v, char *err, size_t errlen);

/* Commands (topic site_command) and their acks (site_command_ack). */
enum fv_site_cmd_kind { FV_SITE_CMD_NOTICE = 1, FV_SITE_CMD_DISPATCH = 2, FV_SITE_CMD_CANCEL = 3 };
struct fv_site_command {
    const char *id, *event_id;
    int kind;
    double target_kw;
    uint64_t start_ms, end_ms;
};
int fv_site_command_encode(const struct fv_site_command *c, struct fv_buf *out);
/* Decodes a SiteCommand (the site's side): its ids are copied into id and event (at most
 * idlen - 1 and evlen - 1 bytes; longer ones are refused) and out->id, out->event_id point
 * at them. FV_OK, or FV_EPROTO (not protobuf, no command id, an id too long). */
int fv_site_command_decode(const unsigned char *p, size_t len, struct fv_site_command *out,
                           char *id, size_t idlen, char *event, size_t evlen);
/* Decodes a SiteCommandAck: its command id (copied into id, at most idlen - 1 bytes) and
 * status (1 accepted, 2 refused). FV_OK or FV_EPROTO. */
int fv_site_ack_decode(const unsigned char *p, size_t len, char *id, size_t idlen, int *status);
/* Encodes a SiteCommandAck (the simulator's and the tests' side). */
int fv_site_ack_encode(const char *id, int status, const char *reason, struct fv_buf *out);

#endif
