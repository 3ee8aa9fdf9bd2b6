/*
 * labeling_api.c - the labelers' work queue (issue 12 item 5; docs/data-engine.md
 * "Labeling"): /api/v1/labeling/...
 *
 *   POST next                  claims the next clip on offer (Q2), 200 {clip, vehicle, ...}
 *                              or 204-like 404 "nothing to label"; 409 naming the clip held
 *   GET  clips/ID              the clip's MCAP, watermarked (Q4), to its holder only
 *   POST clips/ID/labels       {"labels": {...}, "tags": [...]}: stored, the clip released
 *   POST clips/ID/release      the clip given back unlabeled
 *
 * Rules:
 *  Q1 only principals of the role FV_LABELING_ROLE use the queue; every call is a decision
 *     of the access policy for the request's purpose (the role's policy: model_training,
 *     class events), audited like any read, before anything is looked up;
 *  Q2 a clip is offered only if its de-identification passed (clip_store.h C2,
 *     fv_clip_store_passed), it belongs to its vehicle's current owner, whose consent to the
 *     purpose held at its trigger time and holds now (G4), it has no labels yet
 *     (clip_labels.h B3) and no one holds it (label_queue.h L1-L3); a labeler holds at most
 *     one clip: a second claim answers 409 with the clip held;
 *  Q3 serving, labeling and releasing need the lease of the caller (403 otherwise); consent
 *     is checked again at serve and at labeling: a withdrawn subject's clip is never served
 *     (403 "consent withdrawn", the lease ended);
 *  Q4 a served clip is a watermarked copy (data/mcap_mark.h): labeler, time, clip and a
 *     random serve id, which the audit entry labeling.served names too; the store's signal
 *     channels added at upload (data/clip_signals.h) are in it only for the signals whose
 *     data class the role's policy gives the request's purpose (the default policy's
 *     labeler has class events only: none);
 *  Q5 answers name the vehicle by the purpose's pseudonym only: no VIN, no place, no keystore
 *     pseudonym; claim, serve, labels and release are each audited (kind admin, action
 *     labeling.claimed / .served / .labeled / .released, the clip's id and the subject's
 *     purpose pseudonym; labeling.refused for a clip the caller does not hold, .revoked for
 *     one whose consent or row went away while held), and each claim and serve counts against the
 * role's quota (G5) with the subject named in the result entry (G12).
 *
 * Threading: the API thread (it owns the lease table, v->labeling).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "api/api.h"
#include "api/query.h"
#include "data/clip_labels.h"
#include "data/clip_signals.h"
#include "data/clip_store.h"
#include "data/label_queue.h"
#include "data/mcap_mark.h"
#include "privacy/guard.h"
#include "privacy/subjects.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/hex.h"

#define MAX_TAGS 64
#define TAG_MAX  64

/* One clip looked up for the queue. */
struct pick {
    const struct fv_api_view *v;
    struct fv_guard_ctx *ctx;
    const char *want; /* a given clip id; NULL: the first on offer */
    int64_t now;
    int found;
    struct fv_clip_row row;
    char device[FV_SUBJECT_NAME_MAX + 1];
};

/* The clip's device if the row belongs to its vehicle's current owner (else 0). */
static int current_device(const struct fv_api_view *v, const struct fv_clip_row *r, char *device)
{
    char current[FV_SUBJECT_NAME_MAX + 1];
    int epoch = 0;
    return r->subject_name[0] != '\0' &&
           fv_subject_parse(r->subject_name, device, &epoch) == FV_OK &&
           fv_subject_current(v->keys, device, current, NULL) == FV_OK &&
           strcmp(current, r->subject_name) == 0;
}

static int pick_row(void *arg, const struct fv_clip_row *r)
{
    struct pick *p = arg;
    char device[FV_SUBJECT_NAME_MAX + 1];
    if (p->want && strcmp(p->want, r->id) != 0) return 0;
    if (p->want == NULL) { /* Q2 */
        if (strcmp(r->deid, "passed") != 0 ||
            fv_label_holder(p->v->labeling, r->id, p->now, NULL) ||
            fv_clip_labels_has(p->v->keys, r->id))
            return 0;
    }
    if (!current_device(p->v, r, device)) return p->want ? 1 : 0;
    if (p->want == NULL && !fv_guard_consented(p->v->guard, p->ctx, device, r->trigger_ms))
        return 0;
    p->row = *r;
    snprintf(p->device, sizeof p->device, "%s", device);
    p->found = 1;
    return 1;
}

/* G4 now and at the trigger, and C2, for a held clip. */
static int still_servable(const struct pick *p)
{
    return fv_clip_store_passed(p->v->keys, p->row.id) &&
           fv_guard_consented(p->v->guard, p->ctx, p->device, p->row.trigger_ms);
}

/* Q1: the decision and its audit entry. */
static int decide(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *action,
                  struct fv_http_response *out)
{
    char why[256];
    if (strcmp(ctx->role, FV_LABELING_ROLE) != 0) {
        snprintf(why, sizeof why, "the labeling queue is for principals of role %s",
                 FV_LABELING_ROLE);
        fv_api_respond_error(out, 403, why);
        return -1;
    }
    uint32_t classes = 0;
    int id = fv_policy_class_id(v->guard->policy, "events");
    classes = id >= 0 ? 1u << id : fv_api_all_classes(v);
    int rc = fv_guard_read(v->guard, ctx, v->query, action, classes, NULL, 1, 0, NULL, 0, INT64_MIN,
                           INT64_MAX, why, sizeof why);
    if (rc) {
        fv_api_respond_error(out, rc == FV_EIO ? 503 : 403, why);
        return -1;
    }
    return 0;
}

/* Q5: audits a queue event; 503 when the log fails. */
static int audit(const struct fv_api_view *v, const struct fv_guard_ctx *ctx, const char *action,
                 const char *clip, const char *detail, struct fv_http_response *out)
{
    if (fv_guard_audit_principal(v->guard, ctx, action, "allow", NULL, clip, NULL, detail) == FV_OK)
        return 0;
    fv_api_respond_error(out, 503, "the audit log failed");
    return -1;
}

static void answer_done(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const struct pick *p,
                        struct fv_http_response *out)
{
    struct fv_guard_served served = {0};
    fv_guard_served_add_pseudonym(&served, p->row.subject); /* G12 */
    fv_api_quota_send(v, ctx, 1, &served, out);             /* G5 */
    fv_guard_served_free(&served);
}

static json_t *clip_json(const struct fv_api_view *v, const struct fv_guard_ctx *ctx,
                         const struct pick *p, int64_t until)
{
    char shown[65], t[40], u[40];
    fv_guard_show_id(v->guard, ctx, p->device, shown);
    fv_format_time_ms((uint64_t)p->row.trigger_ms, t, sizeof t);
    fv_format_time_ms((uint64_t)until, u, sizeof u);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:s}", "clip", p->row.id, "vehicle", shown,
                     "campaign", p->row.campaign, "trigger", p->row.trigger, "trigger_time", t,
                     "size", (json_int_t)p->row.size, "lease_until", u);
}

static void claim_next(const struct fv_api_view *v, struct fv_guard_ctx *ctx,
                       struct fv_http_response *out)
{
    int64_t now = (int64_t)fv_now_ms(), until = 0;
    char held[FV_LABEL_NAME_MAX + 1];
    if (decide(v, ctx, "labeling.claim", out)) return;
    if (fv_label_held(v->labeling, ctx->principal, now, held, &until)) { /* L1 */
        char msg[160];
        snprintf(msg, sizeof msg, "you hold clip %s: label or release it first", held);
        fv_api_respond_json(out, 409, json_pack("{s:s,s:s}", "error", msg, "clip", held));
        return;
    }
    struct pick p = {.v = v, .ctx = ctx, .now = now};
    if (fv_clip_store_list(v->keys, "passed", pick_row, &p) < 0) {
        fv_api_respond_error(out, 500, "the clip catalog cannot be read");
        return;
    }
    if (!p.found) {
        fv_api_respond_error(out, 404, "nothing to label");
        return;
    }
    int rc = fv_label_claim(v->labeling, ctx->principal, p.row.id, now, &until, held);
    if (rc) {
        fv_api_respond_error(out, rc == FV_ENOMEM ? 500 : 409, "the clip could not be claimed");
        return;
    }
    json_t *j = clip_json(v, ctx, &p, until);
    const char *shown = json_string_value(json_object_get(j, "vehicle"));
    char detail[160];
    snprintf(detail, sizeof detail, "vehicle %s", shown ? shown : "?");
    if (j == NULL || audit(v, ctx, "labeling.claimed", p.row.id, detail, out)) {
        fv_label_release(v->labeling, ctx->principal, p.row.id, now);
        if (j == NULL) fv_api_respond_error(out, 500, "out of memory");
        json_decref(j);
        return;
    }
    fv_api_respond_json(out, 200, j);
    answer_done(v, ctx, &p, out);
}

/* The held clip named id, checked (Q3); 0 with p filled, or -1 answered. */
static int held_clip(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *id,
                     int64_t now, struct pick *p, struct fv_http_response *out)
{
    char holder[FV_LABEL_NAME_MAX + 1];
    if (strlen(id) > FV_LABEL_NAME_MAX || !fv_label_holder(v->labeling, id, now, holder) ||
        strcmp(holder, ctx->principal) != 0) {
        /* audited too: the decision allowed the call, not this clip */
        fv_guard_audit_principal(v->guard, ctx, "labeling.refused", "deny",
                                 "not held by the caller", id, NULL, NULL);
        fv_api_respond_error(out, 403,
                             "you do not hold this clip (claim one with POST "
                             "/api/v1/labeling/next)");
        return -1;
    }
    *p = (struct pick){.v = v, .ctx = ctx, .want = id, .now = now};
    if (fv_clip_store_list(v->keys, NULL, pick_row, p) < 0) {
        fv_api_respond_error(out, 500, "the clip catalog cannot be read");
        return -1;
    }
    if (!p->found || !still_servable(p)) { /* erased, owner changed, consent withdrawn */
        fv_label_drop(v->labeling, id);
        audit(v, ctx, "labeling.revoked", id, "consent withdrawn or clip gone", out);
        fv_api_respond_error(out, 403,
                             "this clip may no longer be served (consent withdrawn "
                             "or the clip erased); claim another");
        return -1;
    }
    return 0;
}

/* Q4: the channels a served clip keeps: the clip's own, and the store's signals of the classes
 * the role may read for the purpose. */
struct keep_ctx {
    const struct fv_api_view *v;
    uint32_t classes;
};

static int keep_channel(void *arg, const struct fv_mcap_channel *ch)
{
    const struct keep_ctx *k = arg;
    size_t plen = strlen(FV_CLIP_SIGNALS_TOPIC);
    if (ch->topic.len < plen || memcmp(ch->topic.p, FV_CLIP_SIGNALS_TOPIC, plen) != 0) return 1;
    for (size_t i = 0; i < ch->nmeta; i++) {
        if (strcmp(ch->keys[i].p, "field") != 0) continue;
        char *end = NULL;
        unsigned long f = strtoul(ch->vals[i].p, &end, 10);
        if (end == ch->vals[i].p || *end || f > 65535) return 0;
        return (k->classes & fv_api_signal_class(k->v, (uint32_t)f)) != 0;
    }
    return 0; /* a signal channel without its number: left out */
}

static void serve(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *id,
                  struct fv_http_response *out)
{
    int64_t now = (int64_t)fv_now_ms();
    struct pick p;
    if (decide(v, ctx, "labeling.serve", out) || held_clip(v, ctx, id, now, &p, out)) return;
    struct fv_buf clip = {0}, marked = {0};
    char err[256] = "", sid[33], when[40];
    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        fv_api_respond_error(out, 500, "no randomness for the watermark");
        return;
    }
    fv_hex(rnd, sizeof rnd, sid);
    fv_format_time_ms((uint64_t)now, when, sizeof when);
    char shown[65];
    fv_guard_show_id(v->guard, ctx, p.device, shown);
    const char *keys[] = {"labeler", "served_at", "serve_id", "clip", "vehicle", "purpose"};
    const char *vals[] = {ctx->principal, when, sid, p.row.id, shown, ctx->purpose};
    int rc = fv_clip_store_read(v->keys, v->clips_dir, id, &clip, err, sizeof err);
    struct keep_ctx kc = {v, fv_policy_classes(v->guard->policy, ctx->role, ctx->purpose)};
    if (rc == FV_OK)
        rc = fv_mcap_mark(clip.data, clip.len, keys, vals, 6, keep_channel, &kc, &marked, err,
                          sizeof err);
    fv_buf_free(&clip);
    if (rc) {
        fv_buf_free(&marked);
        fv_api_respond_error(out, rc == FV_ESTATE ? 403 : 500, "the clip cannot be served");
        return;
    }
    char detail[200];
    snprintf(detail, sizeof detail, "watermark %s, vehicle %s", sid, shown);
    if (audit(v, ctx, "labeling.served", id, detail, out)) { /* Q4: logged before sent */
        fv_buf_free(&marked);
        return;
    }
    out->status = 200;
    out->content_type = "application/x-mcap";
    fv_buf_free(&out->body);
    out->body = marked;
    answer_done(v, ctx, &p, out);
}

/* {"labels": {...}, "tags": [...]}: checked and made canonical in *text. */
static int parse_labels(const struct fv_api_view *v, char **text, char *why, size_t n)
{
    json_error_t je;
    json_t *j = v->body ? json_loadb(v->body, v->body_len, 0, &je) : NULL;
    const char *k;
    json_t *x;
    int ok = json_is_object(j) && json_is_object(json_object_get(j, "labels"));
    json_t *tags = json_object_get(j, "tags");
    if (!ok) snprintf(why, n, "body: {\"labels\": {...}, \"tags\": [...]} expected");
    json_object_foreach(ok ? j : NULL, k, x)
    {
        if (strcmp(k, "labels") != 0 && strcmp(k, "tags") != 0) {
            snprintf(why, n, "body: unknown member '%.40s'", k);
            ok = 0;
        }
    }
    if (ok && tags && (!json_is_array(tags) || json_array_size(tags) > MAX_TAGS)) {
        snprintf(why, n, "tags: an array of at most %d strings expected", MAX_TAGS);
        ok = 0;
    }
    for (size_t i = 0; ok && tags && i < json_array_size(tags); i++) {
        json_t *t = json_array_get(tags, i);
        if (!json_is_string(t) || json_string_length(t) == 0 || json_string_length(t) > TAG_MAX) {
            snprintf(why, n, "tags[%zu]: a string of 1 to %d bytes expected", i, TAG_MAX);
            ok = 0;
        }
    }
    if (ok && tags == NULL) json_object_set_new(j, "tags", json_array());
    *text = ok ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    if (ok && *text == NULL) snprintf(why, n, "out of memory");
    return *text ? 0 : -1;
}

static void finish(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *id, int label,
                   struct fv_http_response *out)
{
    int64_t now = (int64_t)fv_now_ms();
    struct pick p;
    char why[256] = "", *text = NULL, detail[200];
    if (decide(v, ctx, label ? "labeling.label" : "labeling.release", out)) return;
    if (label && parse_labels(v, &text, why, sizeof why)) { /* bad input: nothing changed */
        fv_api_respond_error(out, 400, why);
        return;
    }
    if (held_clip(v, ctx, id, now, &p, out)) {
        free(text);
        return;
    }
    int rc = label ? fv_clip_labels_put(v->keys, id, p.row.subject, ctx->principal, text, now, why,
                                        sizeof why)
                   : FV_OK;
    free(text);
    if (rc) { /* still held: nothing changed */
        fv_api_respond_error(out, rc == FV_ELIMIT ? 400 : 500,
                             rc == FV_ELIMIT ? why : "the labels could not be stored");
        return;
    }
    fv_label_release(v->labeling, ctx->principal, id, now);
    char shown[65];
    fv_guard_show_id(v->guard, ctx, p.device, shown);
    snprintf(detail, sizeof detail, "vehicle %s", shown);
    if (audit(v, ctx, label ? "labeling.labeled" : "labeling.released", id, detail, out)) return;
    fv_api_respond_json(
        out, 200, json_pack("{s:s,s:s}", "clip", id, "state", label ? "labeled" : "released"));
    fv_guard_done(v->guard, ctx, 0, out->body.len);
}

void fv_api_labeling(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                     const char *sub, struct fv_http_response *out)
{
    if (v->clips_dir == NULL || v->guard == NULL || v->labeling == NULL) {
        fv_api_respond_error(out, 404, "no clip store on this server");
        return;
    }
    int post = strcmp(method, "POST") == 0;
    char id[FV_LABEL_NAME_MAX + 2] = "";
    const char *rest = NULL;
    if (strncmp(sub, "/clips/", 7) == 0) {
        const char *s = sub + 7, *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (n == 0 || n > FV_LABEL_NAME_MAX) {
            fv_api_respond_error(out, 404, "no such clip");
            return;
        }
        memcpy(id, s, n);
        id[n] = '\0';
        rest = slash ? slash : "";
    }
    if (strcmp(sub, "/next") == 0 && post)
        claim_next(v, ctx, out);
    else if (rest && rest[0] == '\0' && !post)
        serve(v, ctx, id, out);
    else if (rest && strcmp(rest, "/labels") == 0 && post)
        finish(v, ctx, id, 1, out);
    else if (rest && strcmp(rest, "/release") == 0 && post)
        finish(v, ctx, id, 0, out);
    else if (strcmp(sub, "/next") == 0 ||
             (rest && (rest[0] == '\0' || !strcmp(rest, "/labels") || !strcmp(rest, "/release"))))
        fv_api_respond_error(out, 405, rest && rest[0] == '\0' ? "use GET" : "use POST");
    else
        fv_api_respond_error(out, 404, "no such endpoint");
}
