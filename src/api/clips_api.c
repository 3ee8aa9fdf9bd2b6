/*
 * clips_api.c - GET /api/v1/clips (api.h): the stored clips' metadata for the data engine's
 * roles, purpose-bound and audited like every read of personal data (privacy/guard.h):
 *  - the read is decided for the classes it shows (events: the clip and its trigger;
 *    location: its coarse place) and the number of subjects that hold clips, and audited
 *    before anything is answered (G2, G3); an aggregate-only role gets counts only;
 *  - each clip is named by the vehicle's per-purpose pseudonym for a pseudonymising role
 *    (G10, fv_guard_show_id), never by the keystore's pseudonym or the VIN;
 *  - consented-only roles see only clips whose trigger time lies where the subject's
 *    consent to the purpose held then and holds now (G4, fv_guard_consented);
 *  - under location privacy the coarse place is withheld when it lies within a privacy
 *    zone's radius plus the coarsening grid's half-diagonal of one of the subject's zones, or
 *    when the zones cannot be read (G7, failing closed);
 *  - the subjects answered are in the result entry (G12) and the rows count against the
 *    quota before the answer is sent (G5).
 * Clips of an erased subject are gone (data/clip_store.h C3); a row whose subject's key is
 * destroyed but not yet purged is left out, and so are a previous owner's clips (their
 * pseudonym would be the current owner's: not served, as the API serves no previous
 * owner's state). Query: purpose (required), deid=STATUS,
 * campaign=ID. The API thread only.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "api/api.h"
#include "api/query.h"
#include "data/clip_store.h"
#include "privacy/guard.h"
#include "privacy/location.h"
#include "privacy/subjects.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/urlquery.h"

struct list_ctx {
    const struct fv_api_view *v;
    struct fv_guard_ctx *ctx;
    struct fv_guard_served *served;
    const char *deid, *campaign;
    json_t *arr;
    size_t subjects; /* counting pass: distinct subjects */
    char last_subject[33];
    int counting;
};

static int count_subjects(void *arg, const struct fv_clip_row *r)
{
    struct list_ctx *lc = arg;
    if (strcmp(lc->last_subject, r->subject) != 0) lc->subjects++; /* an upper bound */
    snprintf(lc->last_subject, sizeof lc->last_subject, "%s", r->subject);
    return 0;
}

/* G7 on the stored coarse place. */
static int place_servable(struct list_ctx *lc, const char *device, const struct fv_clip_row *r)
{
    struct fv_guard_ctx *ctx = lc->ctx;
    if (!r->place.have) return 0;
    if (!(ctx->d.obligations & FV_OBLIGE_LOCATION_PRIVACY)) return 1;
    ctx->zones_state = 0;
    fv_guard_load_zones(lc->v->guard, ctx, device);
    if (ctx->zones_state != 1) return 0;
    double grid = ctx->grid_m > 0 ? ctx->grid_m : 1000.0;
    for (size_t i = 0; i < ctx->nzones; i++) {
        double d =
            fv_geo_distance_m(r->place.lat, r->place.lon, ctx->zones[i].lat, ctx->zones[i].lon);
        if (!(d > ctx->zones[i].radius_m + grid * M_SQRT1_2)) return 0;
    }
    return 1;
}

static int add_row(void *arg, const struct fv_clip_row *r)
{
    struct list_ctx *lc = arg;
    char device[FV_SUBJECT_NAME_MAX + 1], shown[65], t[40], rx[40];
    int epoch = 0;
    if (r->subject_name[0] == '\0' || fv_subject_parse(r->subject_name, device, &epoch) != FV_OK)
        return 0; /* erased, purge pending */
    /* A previous owner's clips are not shown under the current owner's pseudonym (G12),
     * and never linked to it. */
    char current[FV_SUBJECT_NAME_MAX + 1];
    if (fv_subject_current(lc->v->keys, device, current, NULL) != FV_OK ||
        strcmp(current, r->subject_name) != 0)
        return 0;
    if (lc->deid && strcmp(lc->deid, r->deid) != 0) return 0;
    if (lc->campaign && strcmp(lc->campaign, r->campaign) != 0) return 0;
    if (!fv_guard_consented(lc->v->guard, lc->ctx, device, r->trigger_ms)) return 0; /* G4 */
    fv_guard_show_id(lc->v->guard, lc->ctx, device, shown);
    fv_format_time_ms((uint64_t)r->trigger_ms, t, sizeof t);
    fv_format_time_ms((uint64_t)r->received_ms, rx, sizeof rx);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:{s:s,s:i,s:s}}", "clip", r->id,
                          "vehicle", shown, "clip_id", r->clip_id, "campaign", r->campaign,
                          "trigger", r->trigger, "trigger_time", t, "received", rx, "size",
                          (json_int_t)r->size, "sha256", r->sha256, "deid", "status", r->deid,
                          "exit", r->deid_exit, "summary", r->deid_summary);
    if (o == NULL) return FV_ENOMEM;
    if (place_servable(lc, device, r))
        json_object_set_new(o, "place",
                            json_pack("{s:f,s:f}", "lat", r->place.lat, "lon", r->place.lon));
    json_array_append_new(lc->arr, o);
    fv_guard_served_add_pseudonym(lc->served, r->subject); /* G12 */
    return 0;
}

static uint32_t class_bit(const struct fv_api_view *v, const char *name)
{
    int id = fv_policy_class_id(v->guard->policy, name);
    return id >= 0 ? 1u << id : 0;
}

void fv_api_clips(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                  struct fv_http_response *out)
{
    if (strcmp(method, "GET") != 0) {
        fv_api_respond_error(out, 405, "GET /api/v1/clips");
        return;
    }
    if (v->clips_dir == NULL || v->guard == NULL) {
        fv_api_respond_error(out, 404, "no clip store on this server");
        return;
    }
    char deid[16] = "", campaign[65] = "", why[256];
    if (v->query) {
        fv_query_param(v->query, "deid", deid, sizeof deid);
        fv_query_param(v->query, "campaign", campaign, sizeof campaign);
    }
    struct fv_guard_served served = {0};
    struct list_ctx lc = {.v = v,
                          .ctx = ctx,
                          .served = &served,
                          .deid = deid[0] ? deid : NULL,
                          .campaign = campaign[0] ? campaign : NULL};
    if (fv_clip_store_list(v->keys, NULL, count_subjects, &lc) != FV_OK) {
        fv_api_respond_error(out, 500, "the clip catalog cannot be read");
        return;
    }
    uint32_t classes = class_bit(v, "events") | class_bit(v, "location");
    if (classes == 0) classes = fv_api_all_classes(v);
    int rc = fv_guard_read(v->guard, ctx, v->query, "clips.list", classes, NULL,
                           lc.subjects ? lc.subjects : 1, 0, NULL, 0, INT64_MIN, INT64_MAX, why,
                           sizeof why);
    if (rc) {
        fv_api_respond_error(out, rc == FV_EIO ? 503 : 403, why);
        return;
    }
    lc.arr = json_array();
    rc = lc.arr ? fv_clip_store_list(v->keys, NULL, add_row, &lc) : FV_ENOMEM;
    if (rc != FV_OK) {
        json_decref(lc.arr);
        fv_guard_served_free(&served);
        fv_api_respond_error(out, 500, "the clip catalog cannot be read");
        return;
    }
    size_t n = json_array_size(lc.arr);
    if (ctx->d.obligations & FV_OBLIGE_AGGREGATE_ONLY) { /* counts only */
        json_t *by = json_object();
        size_t i;
        json_t *o;
        json_array_foreach(lc.arr, i, o)
        {
            const char *st =
                json_string_value(json_object_get(json_object_get(o, "deid"), "status"));
            json_int_t c = json_integer_value(json_object_get(by, st));
            json_object_set_new(by, st, json_integer(c + 1));
        }
        json_decref(lc.arr);
        fv_api_respond_json(out, 200,
                            json_pack("{s:I,s:o}", "count", (json_int_t)n, "by_deid", by));
    } else {
        fv_api_respond_json(out, 200,
                            json_pack("{s:I,s:o}", "count", (json_int_t)n, "clips", lc.arr));
    }
    fv_api_quota_send(v, ctx, n, &served, out);
    fv_guard_served_free(&served);
}
