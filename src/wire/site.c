/* site.c - site telemetry on the wire (site.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "site.pb-c.h"
#include "util/err.h"
#include "wire/pbtime.h"
#include "wire/site.h"

static const char *const site_names[FV_SITE_SIGNALS] = {
    "SiteBatteryPower", "SiteEnergy",    "SiteCapacity", "SiteReserve",       "SiteSolarPower",
    "SiteLoadPower",    "SiteGridPower", "SiteMode",     "SiteInverterLimit", "SiteExportLimit"};

const char *fv_site_signal_name(unsigned n)
{
    return n >= FV_SIG_SITE_FIRST && n < FV_SIG_SITE_END ? site_names[n - FV_SIG_SITE_FIRST] : NULL;
}

/* Checks one number; names it in err when it is out of [lo, hi] or not finite. */
static int in_range(const char *name, double v, double lo, double hi, char *err, size_t errlen)
{
    if (isfinite(v) && v >= lo && v <= hi) return FV_OK;
    fv_seterr(err, errlen, "site: %s = %g is impossible (allowed %g..%g)", name, v, lo, hi);
    return FV_EPROTO;
}

int fv_site_check(const struct fv_site_sample *s, char *err, size_t errlen)
{
    if (s->created_at_ms == 0) {
        fv_seterr(err, errlen, "site: created_at is missing");
        return FV_EPROTO;
    }
    if (!isfinite(s->capacity_kwh) || s->capacity_kwh <= 0) {
        fv_seterr(err, errlen, "site: capacity_kwh = %g is impossible (must be > 0)",
                  s->capacity_kwh);
        return FV_EPROTO;
    }
    if (!isfinite(s->inverter_kw) || s->inverter_kw <= 0) {
        fv_seterr(err, errlen, "site: inverter_kw = %g is impossible (must be > 0)",
                  s->inverter_kw);
        return FV_EPROTO;
    }
    double peak = s->inverter_kw * FV_SITE_PEAK_RATIO;
    int rc = in_range("capacity_kwh", s->capacity_kwh, 0, FV_SITE_MAX_KWH, err, errlen);
    if (rc == FV_OK)
        rc = in_range("energy_kwh", s->energy_kwh, 0, s->capacity_kwh * (1 + FV_SITE_ENERGY_SLACK),
                      err, errlen);
    if (rc == FV_OK) rc = in_range("reserve_pct", s->reserve_pct, 0, 100, err, errlen);
    if (rc == FV_OK) rc = in_range("inverter_kw", s->inverter_kw, 0, FV_SITE_MAX_KW, err, errlen);
    if (rc == FV_OK) rc = in_range("battery_kw", s->battery_kw, -peak, peak, err, errlen);
    if (rc == FV_OK) rc = in_range("solar_kw", s->solar_kw, 0, FV_SITE_MAX_KW, err, errlen);
    if (rc == FV_OK) rc = in_range("load_kw", s->load_kw, 0, FV_SITE_MAX_KW, err, errlen);
    if (rc == FV_OK)
        rc = in_range("grid_kw", s->grid_kw, -FV_SITE_MAX_KW, FV_SITE_MAX_KW, err, errlen);
    if (rc == FV_OK)
        rc = in_range("export_limit_kw", s->export_limit_kw, 0, FV_SITE_MAX_KW, err, errlen);
    if (rc == FV_OK && (s->mode < FV_SITE_MODE_UNKNOWN || s->mode > FV_SITE_MODE_VPP)) {
        fv_seterr(err, errlen, "site: mode = %d is unknown (0..4)", s->mode);
        rc = FV_EPROTO;
    }
    return rc;
}

int fv_site_decode(const unsigned char *p, size_t len, struct fv_site_sample *out, char *err,
                   size_t errlen)
{
    memset(out, 0, sizeof *out);
    Fvpb__SiteTelemetry *m = fvpb__site_telemetry__unpack(NULL, len, p);
    if (m == NULL) {
        fv_seterr(err, errlen, "site payload of %zu bytes is not valid protobuf", len);
        return FV_EPROTO;
    }
    if (m->created_at && m->created_at->seconds > 0)
        out->created_at_ms = fv_pbtime_ms(m->created_at);
    out->is_resend = m->is_resend ? 1 : 0;
    out->battery_kw = m->battery_kw;
    out->energy_kwh = m->energy_kwh;
    out->capacity_kwh = m->capacity_kwh;
    out->reserve_pct = m->reserve_pct;
    out->solar_kw = m->solar_kw;
    out->load_kw = m->load_kw;
    out->grid_kw = m->grid_kw;
    out->mode = m->mode;
    out->inverter_kw = m->inverter_kw;
    out->export_limit_kw = m->export_limit_kw;
    fvpb__site_telemetry__free_unpacked(m, NULL);
    return fv_site_check(out, err, errlen);
}

int fv_site_encode(const struct fv_site_sample *s, const char *site_id, struct fv_buf *out)
{
    Fvpb__SiteTelemetry m = FVPB__SITE_TELEMETRY__INIT;
    Fvpb__Timestamp ts = FVPB__TIMESTAMP__INIT;
    fv_pbtime_set(&ts, s->created_at_ms);
    m.site_id = (char *)(site_id ? site_id : "");
    m.created_at = &ts;
    m.battery_kw = s->battery_kw;
    m.energy_kwh = s->energy_kwh;
    m.capacity_kwh = s->capacity_kwh;
    m.reserve_pct = s->reserve_pct;
    m.solar_kw = s->solar_kw;
    m.load_kw = s->load_kw;
    m.grid_kw = s->grid_kw;
    m.mode = s->mode;
    m.inverter_kw = s->inverter_kw;
    m.export_limit_kw = s->export_limit_kw;
    m.is_resend = s->is_resend != 0;
    size_t n = fvpb__site_telemetry__get_packed_size(&m);
    int rc = fv_buf_reserve(out, n);
    if (rc) return rc;
    out->len += fvpb__site_telemetry__pack(&m, out->data + out->len);
    return FV_OK;
}

int fv_site_to_vrecord(const struct fv_site_sample *s, const char *id, struct fv_vrecord *out)
{
    memset(out, 0, sizeof *out);
    out->created_at_ms = s->created_at_ms;
    out->is_resend = s->is_resend;
    out->vin = strdup(id ? id : "");
    out->data = calloc(FV_SITE_SIGNALS, sizeof *out->data);
    if (out->vin == NULL || out->data == NULL) {
        fv_vrecord_free(out);
        return FV_ENOMEM;
    }
    const double d[] = {s->battery_kw,  s->energy_kwh,     s->capacity_kwh, s->reserve_pct,
                        s->solar_kw,    s->load_kw,        s->grid_kw,      (double)s->mode,
                        s->inverter_kw, s->export_limit_kw};
    for (size_t i = 0; i < FV_SITE_SIGNALS; i++) {
        struct fv_datum *x = &out->data[out->n++];
        x->field = (uint32_t)(FV_SIG_SITE_FIRST + i);
        if (x->field == FV_SIG_SITE_MODE) {
            x->value.kind = FV_VK_INT;
            x->value.member = 2; /* int_value */
            x->value.u.i = s->mode;
        } else {
            x->value.kind = FV_VK_DOUBLE;
            x->value.member = 5; /* double_value */
            x->value.u.d = d[i];
        }
    }
    return FV_OK;
}

int fv_site_normalise(const unsigned char *p, size_t len, const char *id, struct fv_buf *out,
                      struct fv_vrecord *v, char *err, size_t errlen)
{
    memset(v, 0, sizeof *v);
    struct fv_site_sample smp;
    int rc = fv_site_decode(p, len, &smp, err, errlen);
    if (rc == FV_OK) rc = fv_site_to_vrecord(&smp, id, v);
    if (rc == FV_OK) rc = fv_payload_encode_v(v, out);
    if (rc != FV_OK) fv_vrecord_free(v);
    return rc;
}

int fv_site_command_encode(const struct fv_site_command *c, struct fv_buf *out)
{
    Fvpb__SiteCommand m = FVPB__SITE_COMMAND__INIT;
    Fvpb__Timestamp a = FVPB__TIMESTAMP__INIT, b = FVPB__TIMESTAMP__INIT;
    fv_pbtime_set(&a, c->start_ms);
    fv_pbtime_set(&b, c->end_ms);
    m.command_id = (char *)c->id;
    m.kind = c->kind;
    m.event_id = (char *)c->event_id;
    m.target_kw = c->target_kw;
    m.start = &a;
    m.end = &b;
    size_t n = fvpb__site_command__get_packed_size(&m);
    int rc = fv_buf_reserve(out, n);
    if (rc) return rc;
    out->len += fvpb__site_command__pack(&m, out->data + out->len);
    return FV_OK;
}

/* A command's window: 0 for a time before 1970-01-01T00:00:01 (not a window). */
static uint64_t window_ms(const Fvpb__Timestamp *ts)
{
    return ts && ts->seconds > 0 ? fv_pbtime_ms(ts) : 0;
}

int fv_site_command_decode(const unsigned char *p, size_t len, struct fv_site_command *out,
                           char *id, size_t idlen, char *event, size_t evlen)
{
    memset(out, 0, sizeof *out);
    Fvpb__SiteCommand *m = fvpb__site_command__unpack(NULL, len, p);
    if (m == NULL) return FV_EPROTO;
    const char *ev = m->event_id ? m->event_id : "";
    int ok =
        m->command_id && m->command_id[0] && strlen(m->command_id) < idlen && strlen(ev) < evlen;
    if (ok) {
        snprintf(id, idlen, "%s", m->command_id);
        snprintf(event, evlen, "%s", ev);
        out->id = id;
        out->event_id = event;
        out->kind = m->kind;
        out->target_kw = m->target_kw;
        out->start_ms = window_ms(m->start);
        out->end_ms = window_ms(m->end);
    }
    fvpb__site_command__free_unpacked(m, NULL);
    return ok ? FV_OK : FV_EPROTO;
}

int fv_site_ack_decode(const unsigned char *p, size_t len, char *id, size_t idlen, int *status)
{
    Fvpb__SiteCommandAck *m = fvpb__site_command_ack__unpack(NULL, len, p);
    if (m == NULL) return FV_EPROTO;
    int ok = m->command_id && m->command_id[0] && strlen(m->command_id) < idlen;
    if (ok) {
        snprintf(id, idlen, "%s", m->command_id);
        *status = m->status;
    }
    fvpb__site_command_ack__free_unpacked(m, NULL);
    return ok ? FV_OK : FV_EPROTO;
}

int fv_site_ack_encode(const char *id, int status, const char *reason, struct fv_buf *out)
{
    Fvpb__SiteCommandAck m = FVPB__SITE_COMMAND_ACK__INIT;
    m.command_id = (char *)id;
    m.status = status;
    m.reason = (char *)(reason ? reason : "");
    size_t n = fvpb__site_command_ack__get_packed_size(&m);
    int rc = fv_buf_reserve(out, n);
    if (rc) return rc;
    out->len += fvpb__site_command_ack__pack(&m, out->data + out->len);
    return FV_OK;
}
