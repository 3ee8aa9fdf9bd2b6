/* api.c - see api.h. JSON is built with jansson; the Prometheus text by hand (its format is
 * line-oriented: "# TYPE name kind" then "name{labels} value"). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "api/api.h"
#include "api/export.h"
#include "api/exports.h"
#include "api/promapi.h"
#include "api/query.h"
#include "api/static_ui.h"
#include "api/stats_hist.h"
#include "data/campaign.h"
#include "crypto/keys.h"
#include "openadr/ven.h"
#include "privacy/guard.h"
#include "privacy/principals.h"
#include "privacy/subjects.h"
#include "privacy/location.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/urlquery.h"
#include "util/fmt.h"
#include "wal/reclog.h"
#include "wire/places.h"
#include "wire/signals.h"

void fv_format_time_ms(uint64_t ms, char *buf, size_t len)
{
    time_t s = (time_t)(ms / 1000u);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000u));
}

static const char *const door_names[] = {"DriverFront",   "DriverRear", "PassengerFront",
                                         "PassengerRear", "TrunkFront", "TrunkRear"};
static const char *const tire_names[] = {"front_left", "front_right", "rear_left", "rear_right"};

static json_t *bits_json(uint32_t bits, const char *const *names, int n)
{
    json_t *o = json_object();
    for (int i = 0; o && i < n; i++)
        json_object_set_new(o, names[i], json_boolean(bits & (1u << i)));
    return o;
}

static json_t *value_json(const struct fv_value *v)
{
    switch (v->kind) {
    case FV_VK_STRING:
        return json_string(v->u.s);
    case FV_VK_INT:
    case FV_VK_ENUM:
        return json_integer((json_int_t)v->u.i);
    case FV_VK_DOUBLE:
        return isfinite(v->u.d) ? json_real(v->u.d) : json_null();
    case FV_VK_BOOL:
        return json_boolean(v->u.i);
    case FV_VK_LOCATION:
        return json_pack("{s:f,s:f}", "latitude", v->u.loc.lat, "longitude", v->u.loc.lon);
    case FV_VK_DOORS:
        return bits_json(v->u.bits, door_names, 6);
    case FV_VK_TIRES:
        return bits_json(v->u.bits, tire_names, 4);
    case FV_VK_TIME: {
        char t[32];
        snprintf(t, sizeof t, "%02d:%02d:%02d", (int)v->u.time.h % 100, (int)v->u.time.m % 100,
                 (int)v->u.time.s % 100);
        return json_string(t);
    }
    default:
        return json_null();
    }
}

static const char *kind_name(uint8_t k)
{
    static const char *const names[] = {"none", "string",  "int",   "double", "bool",  "location",
                                        "enum", "invalid", "doors", "time",   "tires", "other"};
    return k < sizeof names / sizeof names[0] ? names[k] : "other";
}

/* Appends j compactly, doubles with the fewest digits that read back (util/fmt.h: jansson's
 * own dump prints %.17g, 37.4 as 37.399999999999999); takes the reference. */
static int dump_json(json_t *j, struct fv_buf *out)
{
    int rc = fv_json_append(out, j, 0);
    json_decref(j);
    return rc;
}

int fv_api_value_json(const struct fv_value *v, struct fv_buf *out)
{
    json_t *j = value_json(v);
    return dump_json(j ? j : json_null(), out);
}

void fv_api_respond_json(struct fv_http_response *r, int status, json_t *j)
{
    r->status = status;
    r->content_type = "application/json";
    fv_buf_reset(&r->body);
    if (dump_json(j, &r->body) != FV_OK) {
        r->status = 500;
        fv_buf_reset(&r->body);
    }
    fv_buf_append(&r->body, "\n", 1);
}

void fv_api_respond_error(struct fv_http_response *r, int status, const char *msg)
{
    fv_api_respond_json(r, status, json_pack("{s:s}", "error", msg));
}

uint32_t fv_api_signal_class(const struct fv_api_view *v, uint32_t field)
{
    if (v->store_cfg == NULL || v->guard == NULL) return 1;
    uint8_t c = field < FV_STORE_FIELD_TABLE ? v->store_cfg->class_of[field] : 0;
    int id = fv_policy_class_id(v->guard->policy, v->store_cfg->class_name[c]);
    return id >= 0 ? 1u << id : 1u;
}

uint32_t fv_api_all_classes(const struct fv_api_view *v)
{
    if (v->store_cfg == NULL || v->guard == NULL) return 1;
    uint32_t m = 0;
    for (uint32_t c = 0; c < v->store_cfg->nclasses; c++) {
        if (c == v->store_cfg->events_class) continue;
        int id = fv_policy_class_id(v->guard->policy, v->store_cfg->class_name[c]);
        if (id >= 0) m |= 1u << id;
    }
    return m ? m : 1;
}

static json_t *device_summary_as(const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                                 const struct fv_device *d, int current);

/* Energy-site scoping: a device is an energy site when its certificate says so. */
int fv_api_is_energy_site(const struct fv_device *d)
{
    return strcmp(d->client_type, "energy_device") == 0;
}

/* For roles limited to energy sites, fleet answers leave other devices out. */
int fv_api_in_scope(const struct fv_guard_ctx *ctx, const struct fv_device *d)
{
    return !ctx || !(ctx->d.obligations & FV_OBLIGE_ENERGY_SITES_ONLY) || fv_api_is_energy_site(d);
}

/* Art. 17: a device whose subjects were erased is not named, nor its state or times served,
 * by any fleet answer (the fleet keeps its entry only for its rate limits and dedup). */
static int erased(const struct fv_api_view *v, const struct fv_device *d)
{
    const unsigned char *dk;
    char ps[FV_PSEUDONYM_LEN + 1];
    return v->keys && fv_keystore_dek(v->keys, d->id, 0, &dk, ps) == FV_ESTATE;
}

static json_t *device_summary(const struct fv_device *d)
{
    char first[40], last[40], recv[40];
    fv_format_time_ms(d->first_ms, first, sizeof first);
    fv_format_time_ms(d->last_ms, last, sizeof last);
    fv_format_time_ms(d->last_received_ms, recv, sizeof recv);
    return json_pack("{s:s,s:s,s:b,s:I,s:I,s:I,s:I,s:s,s:s,s:s,s:I}", "id", d->id, "client_type",
                     d->client_type, "connected", d->sessions > 0, "records",
                     (json_int_t)d->records, "datums", (json_int_t)d->datums, "duplicates",
                     (json_int_t)d->duplicates, "rate_limited", (json_int_t)d->rate_limited,
                     "first_time", first, "last_time", last, "last_received", recv, "signals",
                     (json_int_t)d->nsignals);
}

/* Owners O2 (gateway/owners.h): is the device's state the current owner period's? At a
 * change of owner the ingest wipes it (within a second when another process made the
 * change); until then the previous owner's state is not served. */
static int state_is_current(const struct fv_api_view *v, const struct fv_device *d)
{
    char held[sizeof d->subject], cur[FV_SUBJECT_NAME_MAX + 1];
    fv_fleet_lock(v->fleet); /* F1 */
    memcpy(held, d->subject, sizeof held);
    fv_fleet_unlock(v->fleet);
    if (held[0] == '\0' || v->keys == NULL) return 1; /* never looked up: no state yet */
    if (fv_subject_current(v->keys, d->id, cur, NULL) != FV_OK) return 0; /* fail closed */
    return strcmp(held, cur) == 0;
}

/* current 0: the state is an earlier owner's (state_is_current): only what names the device
 * is shown, no counter or time of theirs. */
static json_t *device_summary_as(const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                                 const struct fv_device *d, int current)
{
    static const struct fv_device none; /* counters and times zero */
    struct fv_device *shell = current ? NULL : malloc(sizeof *shell);
    if (!current && shell == NULL) return NULL;
    fv_fleet_lock(v->fleet); /* fleet.h F1 */
    if (shell) {
        *shell = none;
        memcpy(shell->id, d->id, sizeof shell->id);
        memcpy(shell->client_type, d->client_type, sizeof shell->client_type);
        shell->sessions = d->sessions;
    }
    json_t *j = device_summary(shell ? shell : d);
    fv_fleet_unlock(v->fleet);
    free(shell);
    if (j && v->guard && ctx) {
        char shown[65];
        fv_guard_show_id(v->guard, ctx, d->id, shown);
        json_object_set_new(j, "id", json_string(shown));
    }
    return j;
}

/* A shard's owner answering for one shard (api.h keep): is d's current subject in it? */
int fv_api_kept(const struct fv_api_view *v, const struct fv_device *d)
{
    if (v->keep == NULL) return 1;
    char subject[FV_SUBJECT_NAME_MAX + 1], ps[FV_PSEUDONYM_LEN + 1];
    const unsigned char *dek;
    if (fv_subject_current(v->keys, d->id, subject, NULL) != FV_OK)
        snprintf(subject, sizeof subject, "%s", d->id);
    return fv_keystore_dek(v->keys, subject, 0, &dek, ps) == FV_OK && v->keep(v->keep_arg, ps);
}

static void get_vehicles(const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                         struct fv_guard_served *served, struct fv_http_response *r)
{
    struct fv_device **all = NULL;
    size_t n = 0;
    json_t *arr = fv_fleet_list(v->fleet, &all, &n) == FV_OK ? json_array() : NULL;
    size_t count = 0; /* the devices known (in this shard, for its owner: api.h keep) */
    for (size_t i = 0; arr && i < n; i++) {
        const struct fv_device *d = all[i];
        if (!fv_api_kept(v, d)) continue;
        count++;
        if (fv_api_in_scope(ctx, d) && !erased(v, d) &&
            fv_guard_consented(v->guard, ctx, d->id, (int64_t)fv_now_ms())) {
            json_array_append_new(arr, device_summary_as(v, ctx, d, state_is_current(v, d)));
            fv_guard_served_add(v->guard, served, d->id); /* G12 */
        }
    }
    free(all);
    fv_api_respond_json(r, 200,
                        json_pack("{s:I,s:o}", "count", (json_int_t)count, "vehicles", arr));
}

static void get_state(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                      const struct fv_device *d, struct fv_http_response *r)
{
    /* G8: the withheld times around the place signals' times (one scan of the track). */
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    int current = state_is_current(v, d); /* O2: not a previous owner's state */
    uint32_t nsig = 0;
    fv_fleet_lock(v->fleet); /* F1 */
    if (current) nsig = d->nsignals;
    for (uint32_t i = 0; i < nsig; i++)
        if (fv_signal_place(d->signals[i].field) != FV_PLACE_NONE ||
            d->signals[i].value.kind == FV_VK_LOCATION) {
            int64_t t = (int64_t)d->signals[i].time_ms;
            lo = t < lo ? t : lo;
            hi = t > hi ? t : hi;
        }
    fv_fleet_unlock(v->fleet);
    if (lo <= hi) fv_api_load_withheld(v, ctx, d->id, lo, hi);
    json_t *sig = json_object();
    fv_fleet_lock(v->fleet); /* F1: in-memory work only below */
    for (uint32_t i = 0; sig && current && i < d->nsignals; i++) {
        const struct fv_signal_state *s = &d->signals[i];
        if (!fv_guard_in_consent(ctx, (int64_t)s->time_ms)) continue; /* G4 */
        char name[32], t[40];
        fv_signal_label(s->field, name, sizeof name);
        fv_format_time_ms(s->time_ms, t, sizeof t);
        struct fv_value tmp;
        json_t *val =
            value_json(fv_guard_oblige(ctx, s->field, (int64_t)s->time_ms, &s->value, &tmp));
        json_object_set_new(sig, name,
                            json_pack("{s:o,s:s,s:I,s:s}", "value", val ? val : json_null(), "time",
                                      t, "time_ms", (json_int_t)s->time_ms, "kind",
                                      kind_name(s->value.kind)));
    }
    fv_fleet_unlock(v->fleet);
    json_t *j = device_summary_as(v, ctx, d, current);
    if (j) json_object_set_new(j, "state", sig);
    fv_api_respond_json(r, 200, j);
    fv_guard_ctx_clear(ctx);
}

/* The fleet view of one signal: every device's latest value and its time. */
static void get_signal_latest(const struct fv_api_view *v, struct fv_guard_ctx *ctx, long field,
                              struct fv_guard_served *served, struct fv_http_response *r)
{
    struct fv_device **all = NULL;
    size_t n = 0;
    json_t *arr = fv_fleet_list(v->fleet, &all, &n) == FV_OK ? json_array() : NULL;
    for (size_t i = 0; arr && i < n; i++) {
        const struct fv_device *d = all[i];
        if (!fv_api_in_scope(ctx, d) || erased(v, d) || !state_is_current(v, d) ||
            !fv_api_kept(v, d))
            continue; /* O2; another shard's */
        /* F1: the value is copied under the fleet's lock, then checked and rendered. */
        struct fv_signal_state s = {0};
        fv_fleet_lock(v->fleet);
        const struct fv_signal_state *cur = fv_device_signal(d, (uint32_t)field);
        int have = cur && fv_value_copy(&s.value, &cur->value) == FV_OK;
        if (have) s.time_ms = cur->time_ms;
        fv_fleet_unlock(v->fleet);
        if (!have) continue;
        if (!fv_guard_consented(v->guard, ctx, d->id, (int64_t)s.time_ms)) {
            fv_value_clear(&s.value);
            continue;
        }
        char t[40];
        fv_format_time_ms(s.time_ms, t, sizeof t);
        if (v->guard) fv_guard_load_zones(v->guard, ctx, d->id);
        /* G8: the same withheld times as every other output */
        if (fv_signal_place((unsigned)field) != FV_PLACE_NONE || s.value.kind == FV_VK_LOCATION)
            fv_api_load_withheld(v, ctx, d->id, (int64_t)s.time_ms, (int64_t)s.time_ms);
        struct fv_value tmp;
        json_t *val =
            value_json(fv_guard_oblige(ctx, (uint32_t)field, (int64_t)s.time_ms, &s.value, &tmp));
        fv_guard_ctx_clear(ctx);
        fv_value_clear(&s.value);
        char shown[65];
        if (v->guard)
            fv_guard_show_id(v->guard, ctx, d->id, shown);
        else
            snprintf(shown, sizeof shown, "%s", d->id);
        json_array_append_new(arr, json_pack("{s:s,s:o,s:s,s:I}", "id", shown, "value",
                                             val ? val : json_null(), "time", t, "time_ms",
                                             (json_int_t)s.time_ms));
        if (v->guard) fv_guard_served_add(v->guard, served, d->id); /* G12 */
    }
    free(all);
    char label[32];
    fv_signal_label((unsigned)field, label, sizeof label);
    fv_api_respond_json(r, 200,
                        json_pack("{s:s,s:I,s:I,s:o}", "signal", label, "number", (json_int_t)field,
                                  "count", (json_int_t)(arr ? json_array_size(arr) : 0), "vehicles",
                                  arr));
}

static void get_store(const struct fv_api_view *v, struct fv_http_response *r)
{
    struct fv_store_stats st;
    fv_store_stats(v->store, &st);
    json_t *parts = json_array();
    struct fv_part **pp = NULL;
    size_t n = 0;
    if (fv_store_parts(v->store, &pp, &n) != FV_OK) {
        json_decref(parts);
        parts = NULL;
    }
    for (size_t i = 0; parts && i < n; i++) {
        const char *base = strrchr(pp[i]->path, '/');
        json_array_append_new(
            parts, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:f}", "file", base ? base + 1 : pp[i]->path,
                             "level", (json_int_t)pp[i]->level, "blocks", (json_int_t)pp[i]->n,
                             "bytes", (json_int_t)pp[i]->size, "datums", (json_int_t)pp[i]->datums,
                             "records", (json_int_t)pp[i]->records, "bytes_per_datum",
                             pp[i]->datums ? (double)pp[i]->size / (double)pp[i]->datums : 0.0));
    }
    json_t *j = json_pack(
        "{s:b,s:I,s:I,s:I,s:I,s:I,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:I,s:o}",
        "compacting", st.compacting, "parts", (json_int_t)st.parts, "blocks", (json_int_t)st.blocks,
        "bytes", (json_int_t)st.bytes, "datums", (json_int_t)st.datums, "records",
        (json_int_t)st.records, "bytes_per_datum",
        st.datums ? (double)st.bytes / (double)st.datums : 0.0, "head_datums",
        (json_int_t)st.head_datums, "head_records", (json_int_t)st.head_records, "head_subjects",
        (json_int_t)st.head_subjects, "flushes", (json_int_t)st.flushes, "compactions",
        (json_int_t)st.compactions, "retention_runs", (json_int_t)st.retention_runs,
        "blocks_expired", (json_int_t)st.blocks_expired, "blocks_purged",
        (json_int_t)st.blocks_purged, "wal_file_watermark", (json_int_t)st.wal_hi, "last_flush_ms",
        st.last_flush_ms, "job_errors", (json_int_t)st.job_errors, "part_files", parts);
    json_t *fails = json_array();
    fv_store_parts_free(pp, n);
    struct fv_store_failure f[FV_STORE_MAX_FAILURES];
    size_t nf = fv_store_failures(v->store, f);
    for (size_t i = 0; fails && i < nf; i++)
        json_array_append_new(fails, json_pack("{s:s,s:s,s:I}", "part", f[i].part, "error",
                                               f[i].error, "at_ms", (json_int_t)f[i].at_ms));
    if (j) {
        json_object_set_new(j, "compaction_failures",
                            json_integer((json_int_t)st.compaction_failures));
        json_object_set_new(j, "compaction_errors", fails); /* NULL: left out */
        json_object_set_new(j, "wal_held", json_boolean(st.wal_held));
        json_object_set_new(j, "cache_hits", json_integer((json_int_t)st.cache_hits));
        json_object_set_new(j, "cache_misses", json_integer((json_int_t)st.cache_misses));
        json_object_set_new(j, "cache_bytes", json_integer((json_int_t)st.cache_bytes));
        json_object_set_new(j, "last_indexed", json_integer((json_int_t)st.last_indexed));
        json_object_set_new(j, "last_scanned", json_integer((json_int_t)st.last_scanned));
        json_object_set_new(j, "last_decoded", json_integer((json_int_t)st.last_decoded));
    } else {
        json_decref(fails);
    }
    fv_api_respond_json(r, 200, j);
}

/* A gateway's /status: its record log is the stream (docs/cluster.md); 503 once the log
 * has failed (L5), so that a load balancer's health check takes it out. */
static void get_gateway_status(const struct fv_api_view *v, struct fv_http_response *r)
{
    int failed = v->log->failed(v->log->impl);
    fv_api_respond_json(r, failed ? 503 : 200,
                        json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I}", "status",
                                  failed ? "stream_failed" : "ok", "role", "gateway", "uptime_s",
                                  (json_int_t)((fv_now_ms() - v->start_ms) / 1000u), "connections",
                                  (json_int_t)v->metrics->connections_open, "devices",
                                  (json_int_t)fv_fleet_count(v->fleet), "log_appended_seq",
                                  (json_int_t)v->log->appended(v->log->impl), "log_durable_seq",
                                  (json_int_t)v->log->durable(v->log->impl)));
}

static void get_status(const struct fv_api_view *v, struct fv_http_response *r)
{
    if (v->log) {
        get_gateway_status(v, r);
        return;
    }
    struct fv_wal_stats ws;
    fv_wal_stats(v->wal, &ws);
    fv_api_respond_json(r, 200,
                        json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "status",
                                  fv_wal_failed(v->wal) ? "wal_failed" : "ok", "uptime_s",
                                  (json_int_t)((fv_now_ms() - v->start_ms) / 1000u), "connections",
                                  (json_int_t)v->metrics->connections_open, "devices",
                                  (json_int_t)fv_fleet_count(v->fleet), "wal_bytes",
                                  (json_int_t)ws.bytes_on_disk, "wal_appended_seq",
                                  (json_int_t)ws.appended_seq, "wal_durable_seq",
                                  (json_int_t)ws.durable_seq));
    if (fv_wal_failed(v->wal)) r->status = 503;
}

void fv_api_unknown_device(struct fv_http_response *out, const char *name)
{
    (void)name; /* not echoed: the answer is the same whatever was named */
    fv_api_respond_error(out, 404, "unknown device: none of that name may be read by this request");
}

/* The device whose per-purpose pseudonym is name, or NULL. */
static const struct fv_device *find_by_pseudonym(const struct fv_api_view *v, const char *purpose,
                                                 const char *name)
{
    if (strlen(name) != FV_PURPOSE_PSEUDONYM_LEN || purpose[0] == '\0') return NULL;
    struct fv_device **all = NULL, *found = NULL;
    size_t n = 0;
    if (fv_fleet_list(v->fleet, &all, &n) != FV_OK) return NULL;
    for (size_t i = 0; i < n && found == NULL; i++) {
        char ps[FV_PURPOSE_PSEUDONYM_LEN + 1];
        if (fv_guard_pseudonym(v->guard, purpose, all[i]->id, ps) == FV_OK && strcmp(ps, name) == 0)
            found = all[i];
    }
    free(all);
    return found;
}

const struct fv_device *fv_api_find_device(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                                           const char *name)
{
    if (v->guard == NULL || ctx == NULL) return fv_fleet_find(v->fleet, name);
    /* Decided on the role alone: how the role names devices cannot depend on the device. */
    unsigned ob = fv_policy_role_obligations(v->guard->policy, ctx->role);
    const struct fv_device *d;
    if (ob & FV_OBLIGE_PSEUDONYMISE) {
        char purpose[32] = "";
        fv_query_param(v->query, "purpose", purpose, sizeof purpose);
        d = find_by_pseudonym(v, purpose, name);
    } else {
        d = fv_fleet_find(v->fleet, name);
    }
    ctx->energy_sites = 1; /* scope is checked here, against the device, as unknown */
    const char *why = NULL;
    char subject[FV_SUBJECT_NAME_MAX + 1], ps[FV_PSEUDONYM_LEN + 1];
    const unsigned char *dek;
    if (d == NULL)
        why = ob & FV_OBLIGE_PSEUDONYMISE ? "no device has this pseudonym in this purpose"
                                          : "no such device";
    else if ((ob & FV_OBLIGE_ENERGY_SITES_ONLY) && !fv_api_is_energy_site(d))
        why = "not an energy site (the role reads energy sites only)";
    else if (fv_subject_current(v->keys, d->id, subject, NULL) == FV_OK &&
             fv_keystore_dek(v->keys, subject, 0, &dek, ps) == FV_ESTATE)
        why = "the subject's data was erased";
    if (why) snprintf(ctx->unknown, sizeof ctx->unknown, "%s", why);
    return why ? NULL : d;
}

/* Matches p against PREFIX x SUFFIX, x being 1..64 characters without '/'; copies x. */
static int match_path(const char *p, const char *prefix, const char *suffix, char x[65])
{
    size_t pl = strlen(prefix);
    if (strncmp(p, prefix, pl) != 0) return 0;
    const char *start = p + pl, *slash = strchr(start, '/');
    if (slash == NULL || slash == start || slash - start > 64 || strcmp(slash, suffix) != 0)
        return 0;
    memcpy(x, start, (size_t)(slash - start));
    x[slash - start] = '\0';
    return 1;
}

static void api_part(const struct fv_api_view *v, const char *method, const char *path,
                     const char *authorization, const char *principal, const char *role,
                     struct fv_http_response *out);
static void route_as(const struct fv_api_view *v, const char *method, const char *path,
                     struct fv_guard_ctx *ctxp, struct fv_http_response *out);

void fv_api_handle(const struct fv_api_view *v, const char *method, const char *path,
                   const char *authorization, struct fv_http_response *out)
{
    out->www_authenticate = 0;
    if (strncmp(path, "/prometheus/", 12) == 0) { /* api/promapi.h: its own answers' shapes */
        fv_api_prometheus(v, method, path + 11, authorization, out);
        return;
    }
    if (strcmp(path, "/ui") == 0 || strncmp(path, "/ui/", 4) == 0) { /* no token: no data */
        fv_api_static_ui(v->ui_dir, method, path, out);
        return;
    }
    char idbuf[65];
    int post_ok = strcmp(path, "/api/v1/store/compact") == 0 ||
                  match_path(path, "/api/v1/subjects/", "/erase", idbuf) ||
                  strcmp(path, "/api/v1/exports") == 0 || strcmp(path, "/api/v1/principals") == 0 ||
                  match_path(path, "/api/v1/principals/", "/revoke", idbuf) ||
                  match_path(path, "/api/v1/principals/", "/approve", idbuf) ||
                  match_path(path, "/api/v1/subjects/", "/consent", idbuf) ||
                  match_path(path, "/api/v1/exports/", "/approve", idbuf) ||
                  strncmp(path, "/api/v1/vpp/", 12) == 0 || /* vpp_api.c says which */
                  strcmp(path, "/api/v1/campaigns") == 0 ||
                  strncmp(path, "/api/v1/campaigns/", 18) == 0 || /* campaign_api.c says which */
                  strncmp(path, "/api/v1/labeling/", 17) == 0 ||  /* labeling_api.c says which */
                  strcmp(path, "/api/v1/datasets") == 0 ||
                  strncmp(path, "/api/v1/datasets/", 17) == 0; /* dataset_api.c says which */
    if (strcmp(method, "GET") != 0 && !(post_ok && strcmp(method, "POST") == 0)) {
        fv_api_respond_error(out, 405,
                             post_ok ? "method not allowed: use POST"
                                     : "method not allowed: this endpoint is read-only (GET)");
        return;
    }
    if (post_ok && strcmp(method, "POST") != 0 && strcmp(path, "/api/v1/principals") != 0 &&
        strcmp(path, "/api/v1/exports") != 0 && /* GET: the pending ones (exports.h) */
        strncmp(path, "/api/v1/vpp/", 12) != 0 && strncmp(path, "/api/v1/campaigns", 17) != 0 &&
        strncmp(path, "/api/v1/labeling/", 17) != 0 && strncmp(path, "/api/v1/datasets", 16) != 0) {
        fv_api_respond_error(out, 405, "method not allowed: use POST");
        return;
    }
    if (strcmp(path, "/status") == 0) {
        get_status(v, out);
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        fv_api_metrics(v, out);
        return;
    }
    api_part(v, method, path, authorization, NULL, NULL, out);
}

/* /api/...: the token's principal (authorization), or the one the cluster's api node
 * authenticated (principal, role; authorization NULL); then routed. */
static void api_part(const struct fv_api_view *v, const char *method, const char *path,
                     const char *authorization, const char *principal, const char *role,
                     struct fv_http_response *out)
{
    if (strncmp(path, "/api/", 5) != 0) {
        fv_api_respond_error(out, 404, "no such endpoint");
        return;
    }
    if (v->log) {
        fv_api_respond_error(out, 404,
                             "this node is a gateway: it stores nothing and answers no queries "
                             "(only /status and /metrics); ask a storage node (docs/cluster.md)");
        return;
    }
    if (v->guard == NULL) {
        fv_api_respond_error(out, 503, "access control is not set up");
        return;
    }
    /* A query's catalog lookups (its token, the subject's periods and key, consent) share one
     * read snapshot: SQLite takes its locks and checks its WAL once, not per lookup (keys.h
     * fv_keystore_read_begin). It begins with the request, so it sees every change made
     * before it (a revoked principal, a withdrawn consent). */
    int snap = strcmp(method, "GET") == 0 && strcmp(path, "/api/v1/query") == 0 && v->keys &&
               fv_keystore_read_begin(v->keys) == FV_OK;
    struct fv_guard_ctx ctx;
    char why[400];
    if (principal) {
        memset(&ctx, 0, sizeof ctx);
        snprintf(ctx.principal, sizeof ctx.principal, "%s", principal);
        snprintf(ctx.role, sizeof ctx.role, "%s", role);
        route_as(v, method, path, &ctx, out);
    } else if (fv_guard_auth(v->guard, authorization, &ctx, why, sizeof why) != FV_OK) {
        out->www_authenticate = 1;
        fv_api_respond_error(out, 401, why);
    } else if (!(v->forward && v->forward(v->forward_arg, v, &ctx, method, path, out))) {
        route_as(v, method, path, &ctx, out);
    }
    if (snap) fv_keystore_read_end(v->keys);
}

void fv_api_route_authenticated(const struct fv_api_view *v, const char *method, const char *path,
                                const struct fv_guard_ctx *ctx, struct fv_http_response *out)
{
    int snap = strcmp(method, "GET") == 0 && strcmp(path, "/api/v1/query") == 0 && v->keys &&
               fv_keystore_read_begin(v->keys) == FV_OK;
    struct fv_guard_ctx c = *ctx;
    route_as(v, method, path, &c, out);
    if (snap) fv_keystore_read_end(v->keys);
}

void fv_api_handle_as(const struct fv_api_view *v, const char *method, const char *path,
                      const char *principal, const char *role, struct fv_http_response *out)
{
    out->www_authenticate = 0;
    char x[65]; /* a data subject's erasure or consent change is a POST (its query holds all) */
    if (strcmp(method, "GET") != 0 &&
        !(strcmp(method, "POST") == 0 && (match_path(path, "/api/v1/subjects/", "/erase", x) ||
                                          match_path(path, "/api/v1/subjects/", "/consent", x)))) {
        fv_api_respond_error(out, 405,
                             "method not allowed: a cluster request is a GET, or a POST of a "
                             "subject's erasure or consent");
        return;
    }
    api_part(v, method, path, NULL, principal, role, out);
}

/* The request of an authenticated principal (ctxp), routed. */
static void route_as(const struct fv_api_view *v, const char *method, const char *path,
                     struct fv_guard_ctx *ctxp, struct fv_http_response *out)
{
    struct fv_guard_ctx ctx = *ctxp;
    char why[400];
    const char *p = path + 4;
    if (strcmp(p, "/v1/stats/history") == 0) { /* server counters: no personal data */
        fv_api_stats_history(v, out);
        return;
    }
    /* Store maintenance: admin actions, no personal data. */
    if ((strcmp(p, "/v1/store") == 0 || strcmp(p, "/v1/store/compact") == 0) && v->store) {
        int compact = strcmp(p, "/v1/store/compact") == 0;
        int rc = fv_guard_admin(v->guard, &ctx, compact ? "store.compact" : "store.stats", why,
                                sizeof why);
        if (rc) {
            fv_api_respond_error(out, rc == FV_EIO ? 503 : 403, why);
            return;
        }
        if (!compact) {
            get_store(v, out);
            return;
        }
        fv_store_compact_all(v->store);
        struct fv_store_stats st;
        fv_store_stats(v->store, &st);
        fv_api_respond_json(out, 202,
                            json_pack("{s:b,s:I,s:s}", "compacting", 1, "parts",
                                      (json_int_t)st.parts, "poll",
                                      "GET /api/v1/store until compacting is false"));
        return;
    }
    char name[65];
    if (match_path(p, "/v1/subjects/", "/erase", name)) {
        /* Art. 17: a privacy officer, for a ticket; the device id is the subject's. */
        int rc = fv_guard_subject_action(v->guard, &ctx, v->query, FV_ACTION_ERASE, "subject.erase",
                                         name, why, sizeof why);
        if (rc) {
            fv_api_respond_error(out, rc == FV_EIO ? 503 : 403, why);
            return;
        }
        if (fv_fleet_find(v->fleet, name) == NULL) { /* G11: looked up once decided */
            fv_api_unknown_device(out, name);
            return;
        }
        char err[300] = "";
        rc = v->erase ? v->erase(v->erase_arg, name, &ctx, err, sizeof err) : FV_ESTATE;
        if (rc) {
            fv_api_respond_error(out, 500, err[0] ? err : "erasure failed");
            return;
        }
        fv_api_respond_json(
            out, 200,
            json_pack("{s:b,s:s}", "erased", 1, "purge",
                      "blocks are rewritten in the background (GET /api/v1/store)"));
        return;
    }
    if (strcmp(p, "/v1/audit") == 0) {
        fv_api_audit_search(v, &ctx, out);
        return;
    }
    if (strcmp(p, "/v1/datasets") == 0 || strncmp(p, "/v1/datasets/", 13) == 0) {
        fv_api_datasets(v, &ctx, method, p + 12, out);
        return;
    }
    if (match_path(p, "/v1/principals/", "/approve", name)) {
        fv_api_principal_approve(v, &ctx, name, out);
        return;
    }
    if (strcmp(p, "/v1/principals") == 0 || match_path(p, "/v1/principals/", "/revoke", name)) {
        fv_api_principals(v, &ctx, method, strcmp(p, "/v1/principals") == 0 ? NULL : name, out);
        return;
    }
    if (strcmp(p, "/v1/exports") == 0) {
        if (strcmp(method, "POST") == 0)
            fv_api_export_create(v, &ctx, out);
        else
            fv_api_export_list(v, &ctx, out);
        return;
    }
    if (match_path(p, "/v1/exports/", "/approve", name)) {
        fv_api_export_approve(v, &ctx, name, out);
        return;
    }
    if (strncmp(p, "/v1/exports/", 12) == 0 && strlen(p + 12) == 32 && !strchr(p + 12, '/')) {
        fv_api_export_get(v, &ctx, p + 12, out);
        return;
    }
    if (match_path(p, "/v1/subjects/", "/consent", name)) {
        /* Consent, given or withdrawn for the current owner: recorded by whoever handles
         * data subjects' rights (a role with the erase action: privacy-officer), for a
         * ticket, audited. purpose=P&change=give|withdraw[&at=T][&by=owner]. */
        char purpose[40] = "", change[16] = "", at_s[64] = "", by[80] = "owner";
        char subject[FV_SUBJECT_NAME_MAX + 1], err[300] = "", extra[256] = "";
        int64_t now = (int64_t)fv_now_ms(), at = now;
        fv_query_param(v->query, "purpose", purpose, sizeof purpose);
        fv_query_param(v->query, "change", change, sizeof change);
        fv_query_param(v->query, "by", by, sizeof by);
        if ((fv_query_param(v->query, "at", at_s, sizeof at_s) && fv_parse_time_ms(at_s, &at)) ||
            (strcmp(change, "give") != 0 && strcmp(change, "withdraw") != 0)) {
            fv_api_respond_error(out, 400,
                                 "purpose=P&change=give|withdraw[&at=T][&by=owner] expected");
            return;
        }
        int give = strcmp(change, "give") == 0;
        /* S7: a grant is not dated before it is recorded; S8: audited in full, first; G11:
         * decided before the device is looked up. */
        int bad = fv_consent_check_time(give, at, now, err, sizeof err);
        int rc = fv_consent_audit_extra(give, at, now, by, extra, sizeof extra);
        if (rc) {
            fv_api_respond_error(out, 400, "'by' too long");
            return;
        }
        rc = fv_guard_consent(v->guard, &ctx, v->query, name, purpose, extra, bad ? err : NULL, why,
                              sizeof why);
        if (rc) {
            fv_api_respond_error(out, rc == FV_EIO ? 503 : ctx.d.allow ? 400 : 403, why);
            return;
        }
        if (fv_fleet_find(v->fleet, name) == NULL) { /* G11: looked up once decided */
            fv_api_unknown_device(out, name);
            return;
        }
        struct fv_purposes pp = {.policy = v->guard->policy};
        rc = fv_subject_current(v->keys, name, subject, NULL);
        if (rc == FV_OK)
            rc = fv_consent_set(v->keys, &pp, subject, purpose, give, at, by, err, sizeof err);
        if (rc) {
            fv_guard_consent_failed(v->guard, &ctx, name, extra,
                                    err[0] ? err : "consent not recorded");
            fv_api_respond_error(out,
                                 rc == FV_EINVAL   ? 400
                                 : rc == FV_ESTATE ? 410
                                                   : 500,
                                 err[0] ? err : "consent not recorded");
            return;
        }
        __atomic_store_n(&v->guard->registry_changed, 1, __ATOMIC_RELEASE); /* read by the loop */
        if (!give && v->campaigns && strcmp(purpose, "clips") == 0)
            fv_campaign_withdraw(v->campaigns, name); /* data/campaign.h C6 */
        if (!give && (strcmp(purpose, "clips") == 0 || strcmp(purpose, "model_training") == 0))
            fv_api_datasets_withdrawn(v, subject); /* data/dataset.h D7 */
        fv_api_respond_json(out, 200,
                            json_pack("{s:s,s:s,s:I}", "purpose", purpose, "change", change,
                                      "at_ms", (json_int_t)at));
        return;
    }
    if (strncmp(p, "/v1/campaigns/", 14) == 0 || strcmp(p, "/v1/campaigns") == 0) {
        fv_api_campaigns(v, &ctx, method, p + 13, out);
        return;
    }
    if (strncmp(p, "/v1/vpp/", 8) == 0 || strcmp(p, "/v1/vpp") == 0) {
        fv_api_vpp(v, &ctx, method, p + 7, out);
        return;
    }
    if (match_path(p, "/v1/subjects/", "/export", name)) {
        /* Art. 15/20: a privacy officer, for a ticket (the subject's request). */
        /* G6: the decision names the period asked for (period=N), else the current one */
        char subj[96], per[16];
        snprintf(subj, sizeof subj, "%s", name);
        if (fv_query_param(v->query, "period", per, sizeof per) && atoi(per) >= 1)
            snprintf(subj, sizeof subj, "%.64s#%d", name, atoi(per));
        int rc = fv_guard_subject_action(v->guard, &ctx, v->query, FV_ACTION_EXPORT,
                                         "subject.export", subj, why, sizeof why);
        if (rc) {
            fv_api_respond_error(out, rc == FV_EIO ? 503 : 403, why);
            return;
        }
        if (fv_fleet_find(v->fleet, name) == NULL) { /* G11: looked up once decided */
            fv_api_unknown_device(out, name);
            return;
        }
        fv_api_export(v, &ctx, name, out);
        return;
    }
    /* Everything else reads personal data: purpose-bound (privacy/guard.h). */
    if (strcmp(p, "/v1/clips") == 0) {
        fv_api_clips(v, &ctx, method, out);
        return;
    }
    if (strncmp(p, "/v1/labeling/", 13) == 0) {
        fv_api_labeling(v, &ctx, method, p + 12, out);
        return;
    }
    if (strcmp(p, "/v1/query") == 0 && v->store) {
        fv_api_query(v, &ctx, out);
        return;
    }
    if (strcmp(p, "/v1/fleet") == 0 && v->store) {
        fv_api_fleet(v, &ctx, out);
        return;
    }
    size_t nfleet = fv_fleet_count(v->fleet);
    if (nfleet == 0) nfleet = 1; /* an empty fleet: decided like one vehicle */
    if (strcmp(p, "/v1/vehicles") == 0 || strcmp(p, "/v1/vehicles/") == 0) {
        ctx.energy_sites = 1; /* an energy-site role gets energy sites only */
        int rc = fv_guard_read(v->guard, &ctx, v->query, "vehicles.list", fv_api_signal_class(v, 0),
                               NULL, nfleet, 0, NULL, 0, INT64_MIN, INT64_MAX, why, sizeof why);
        if (rc) {
            fv_api_respond_error(out, rc == FV_EIO ? 503 : 403, why);
            return;
        }
        struct fv_guard_served served = {0};
        get_vehicles(v, &ctx, &served, out);
        fv_api_quota_send(v, &ctx, served.n, &served, out); /* G5 before it is sent; G12 */
        fv_guard_served_free(&served);
        return;
    }
    if (match_path(p, "/v1/signals/", "/latest", name)) {
        long field = fv_signal_lookup(name);
        if (field < 0) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "unknown signal '%.64s': use a name from the field table (e.g. Soc) or a "
                     "number",
                     name);
            fv_api_respond_error(out, 400, msg);
            return;
        }
        const char *sigs[1] = {name};
        ctx.energy_sites = 1;
        int rc = fv_guard_read(v->guard, &ctx, v->query, "signals.latest",
                               fv_api_signal_class(v, (uint32_t)field), NULL, nfleet, 0, sigs, 1,
                               INT64_MIN, INT64_MAX, why, sizeof why);
        if (rc) {
            fv_api_respond_error(out, rc == FV_EIO ? 503 : 403, why);
            return;
        }
        struct fv_guard_served served = {0};
        get_signal_latest(v, &ctx, field, &served, out);
        fv_api_quota_send(v, &ctx, served.n, &served, out); /* G5 before it is sent; G12 */
        fv_guard_served_free(&served);
        return;
    }
    if (match_path(p, "/v1/vehicles/", "/state", name)) {
        /* G11: decided and audited whatever is named; one answer for what cannot be read */
        const struct fv_device *d = fv_api_find_device(v, &ctx, name);
        const char *subj[1] = {d ? d->id : name};
        int rc = fv_guard_read(v->guard, &ctx, v->query, "vehicle.state", fv_api_all_classes(v),
                               subj, 1, 0, NULL, 0, INT64_MIN, INT64_MAX, why, sizeof why);
        if (rc == FV_ENOENT || (rc == FV_OK && d == NULL)) {
            fv_api_unknown_device(out, name);
            return;
        }
        if (rc) {
            fv_api_respond_error(out, rc == FV_EIO ? 503 : 403, why);
            return;
        }
        fv_guard_load_zones(v->guard, &ctx, d->id);
        get_state(v, &ctx, d, out);
        fv_fleet_lock(v->fleet);
        uint32_t nsig = d->nsignals;
        fv_fleet_unlock(v->fleet);
        fv_api_quota_send(v, &ctx, nsig, NULL, out); /* G5: before it is sent */
        return;
    }
    fv_api_respond_error(out, 404, "no such endpoint");
}
