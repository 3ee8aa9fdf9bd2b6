/*
 * campaign_api.c - data-collection campaigns (api.h; data/campaign.h does the work):
 *
 *   POST /api/v1/campaigns?purpose=clips  JSON spec (data/campaign.h)
 *                                         201 {"id", "state", "targeted"}; 400 with the reason
 *                                         (a trigger's column) and nothing stored
 *   GET  /api/v1/campaigns?purpose=clips  every campaign, counts only
 *   GET  /api/v1/campaigns/ID?purpose=clips   status: targeted, delivered, hits, clips, bytes
 *   POST /api/v1/campaigns/ID/stop?purpose=clips
 *
 * Access (docs/privacy.md):
 *  K1 every call is a purpose-bound decision of the guard (G2-G5) for purpose `clips` only
 *     (another purpose is refused, audited), aggregated (answers hold counts, never a
 *     vehicle), over every data class (a target may name any signal and the place);
 *  K2 a campaign targets a vehicle only if it matches the target condition on its latest
 *     values (data/trigger.h; a signal with no value matches nothing), lies in the region
 *     (its latest Location), and its current subject consents to `clips` now - whatever the
 *     role; energy sites never;
 *  K3 a created or stopped campaign is audited again with its id, name and target count
 *     (kind admin, action campaign.created / campaign.stopped).
 * The latest values are copied under the fleet's lock (F1) and judged outside it; consent is
 * read from the catalog outside it.
 *
 * Threading: the API thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/api.h"
#include "data/campaign.h"
#include "data/trigger.h"
#include "gateway/fleet.h"
#include "privacy/guard.h"
#include "privacy/policy.h"
#include "privacy/subjects.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/urlquery.h"
#include "wire/signals.h"

#define CLIPS_PURPOSE "clips"

/* K2: does device d's latest state match the target and the region? */
static int matches(const struct fv_campaign_spec *s, const struct fv_trigger *target,
                   const struct fv_fleet *fleet, const struct fv_device *d, long loc_field)
{
    size_t n = target ? fv_trigger_nsignals(target) : 0;
    struct fv_value *vals = calloc(n + 1, sizeof *vals);
    if (vals == NULL) return 0;
    fv_fleet_lock(fleet);
    for (size_t i = 0; i < n; i++) {
        const char *name = fv_trigger_signal(target, i);
        long f = fv_signal_lookup(name);
        const struct fv_signal_state *ss = f >= 0 ? fv_device_signal(d, (uint32_t)f) : NULL;
        if (ss && fv_value_copy(&vals[i], &ss->value) != FV_OK) vals[i].kind = FV_VK_NONE;
    }
    const struct fv_signal_state *ls =
        s->have_region && loc_field >= 0 ? fv_device_signal(d, (uint32_t)loc_field) : NULL;
    int have_loc = ls && ls->value.kind == FV_VK_LOCATION;
    double lat = have_loc ? ls->value.u.loc.lat : NAN, lon = have_loc ? ls->value.u.loc.lon : NAN;
    fv_fleet_unlock(fleet);
    int ok = 1;
    if (s->have_region)
        ok = have_loc && lat >= s->min_lat && lat <= s->max_lat && lon >= s->min_lon &&
             lon <= s->max_lon;
    if (ok && target) {
        struct fv_trigger_state *st = NULL;
        ok = fv_trigger_state_new(target, &st) == FV_OK;
        for (size_t i = 0; ok && i < n; i++)
            fv_trigger_set_value(st, (int)i, &vals[i]);
        int level = 0;
        if (ok) fv_trigger_step(st, 0, &level);
        ok = ok && level;
        fv_trigger_state_free(st);
    }
    for (size_t i = 0; i < n; i++)
        fv_value_clear(&vals[i]);
    free(vals);
    return ok;
}

/* K2: consent to clips now, whatever the role. */
static int consents(const struct fv_api_view *v, const char *device, int64_t now)
{
    char subject[FV_SUBJECT_NAME_MAX + 1];
    struct fv_interval iv[1];
    size_t ni = 0;
    struct fv_purposes pp = {.policy = v->guard ? v->guard->policy : NULL};
    if (v->keys == NULL || fv_subject_current(v->keys, device, subject, NULL) != FV_OK) return 0;
    if (fv_consent_servable(v->keys, &pp, subject, CLIPS_PURPOSE, now, now, now, iv, 1, &ni) !=
        FV_OK)
        return 0;
    return ni > 0;
}

static void create(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                   struct fv_http_response *out)
{
    int64_t now = (int64_t)fv_now_ms();
    struct fv_campaign_spec s;
    char err[300] = "";
    if (fv_campaign_spec_parse(v->body, v->body ? v->body_len : 0, now, &s, err, sizeof err)) {
        fv_api_respond_error(out, 400, err);
        return;
    }
    struct fv_trigger *target = NULL;
    if (s.target[0] &&
        fv_trigger_compile(s.target, fv_trigger_known_signal, NULL, &target, err, sizeof err)) {
        fv_api_respond_error(out, 400, err);
        return;
    }
    struct fv_device **devs = NULL;
    size_t ndev = 0, nt = 0;
    const char **ids = NULL;
    if (fv_fleet_list(v->fleet, &devs, &ndev) != FV_OK ||
        (ids = calloc(ndev + 1, sizeof *ids)) == NULL) {
        free(devs);
        fv_trigger_free(target);
        fv_api_respond_error(out, 500, "out of memory");
        return;
    }
    long loc = fv_signal_lookup("Location");
    for (size_t i = 0; i < ndev; i++) {
        const struct fv_device *d = devs[i];
        if (fv_api_is_energy_site(d) || !matches(&s, target, v->fleet, d, loc) ||
            !consents(v, d->id, now))
            continue;
        ids[nt++] = d->id; /* F1: a device's id never changes while the fleet lives */
    }
    char id[FV_CAMPAIGN_ID_MAX];
    int rc = fv_campaign_create(v->campaigns, &s, ids, nt, now, id, err, sizeof err);
    free(ids);
    free(devs);
    fv_trigger_free(target);
    if (rc) {
        fv_api_respond_error(out, 500, err[0] ? err : "the campaign could not be stored");
        return;
    }
    char detail[200];
    snprintf(detail, sizeof detail, "%s: %zu vehicles targeted", s.name, nt);
    if (v->guard && fv_guard_audit_principal(v->guard, ctx, "campaign.created", "allow", NULL, id,
                                             NULL, detail) != FV_OK)
        fv_api_respond_error(out, 503, "the audit log failed: the campaign is stored, not sent");
    else
        fv_api_respond_json(out, 201,
                            json_pack("{s:s,s:s,s:I}", "id", id, "state",
                                      now >= s.start_ms ? "active" : "scheduled", "targeted",
                                      (json_int_t)nt));
}

void fv_api_campaigns(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                      const char *sub, struct fv_http_response *out)
{
    int post = strcmp(method, "POST") == 0;
    char id[FV_CAMPAIGN_ID_MAX] = "";
    const char *action = NULL;
    if (*sub == '\0') {
        action = post ? "campaign.create" : "campaign.list";
    } else if (*sub == '/') {
        const char *s = sub + 1, *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n > 0 && n < sizeof id) {
            memcpy(id, s, n);
            id[n] = '\0';
            if (e == NULL && !post)
                action = "campaign.status";
            else if (e && strcmp(e, "/stop") == 0 && post)
                action = "campaign.stop";
        }
    }
    if (action == NULL) {
        fv_api_respond_error(out, 404, "no such endpoint");
        return;
    }
    if (v->campaigns == NULL) {
        fv_api_respond_error(out, 503, "campaigns are not running");
        return;
    }
    if (v->guard) {
        char purpose[32] = "", why[400];
        fv_query_param(v->query, "purpose", purpose, sizeof purpose);
        if (strcmp(purpose, CLIPS_PURPOSE) != 0) /* K1 */
            snprintf(ctx->refuse, sizeof ctx->refuse, "campaigns are for purpose %s",
                     CLIPS_PURPOSE);
        int rc = fv_guard_read(v->guard, ctx, v->query, action, fv_api_all_classes(v), NULL, 1, 1,
                               NULL, 0, INT64_MIN, INT64_MAX, why, sizeof why);
        if (rc) {
            fv_api_respond_error(out, rc == FV_EIO ? 503 : 403, why);
            return;
        }
    }
    if (strcmp(action, "campaign.create") == 0) {
        create(v, ctx, out);
    } else if (strcmp(action, "campaign.list") == 0) {
        json_t *j = fv_campaign_list_json(v->campaigns);
        if (j)
            fv_api_respond_json(out, 200, j);
        else
            fv_api_respond_error(out, 500, "out of memory");
    } else if (strcmp(action, "campaign.status") == 0) {
        json_t *j = fv_campaign_json(v->campaigns, id);
        if (j)
            fv_api_respond_json(out, 200, j);
        else
            fv_api_respond_error(out, 404, "no such campaign");
    } else {
        int rc = fv_campaign_stop(v->campaigns, id, (int64_t)fv_now_ms());
        if (rc == FV_OK && v->guard &&
            fv_guard_audit_principal(v->guard, ctx, "campaign.stopped", "allow", NULL, id, NULL,
                                     "stopped") != FV_OK)
            fv_api_respond_error(out, 503, "the audit log failed");
        else if (rc == FV_OK)
            fv_api_respond_json(out, 200, json_pack("{s:s,s:s}", "id", id, "state", "stopped"));
        else
            fv_api_respond_error(out, rc == FV_ENOENT ? 404 : 409,
                                 rc == FV_ENOENT ? "no such campaign"
                                                 : "the campaign is over already");
    }
    if (v->guard) fv_guard_done(v->guard, ctx, 1, out->body.len);
}
