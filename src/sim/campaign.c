/*
 * campaign.c - a simulated vehicle's campaigns (campaign.h, rules VC1-VC4): the messages of
 * docs/protocol.md "Campaigns" parsed and answered, triggers evaluated with data/trigger.h.
 *
 * Threading: the run's thread (campaign.h).
 */
#include "sim/campaign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "data/campaign.h"
#include "data/trigger.h"
#include "util/err.h"
#include "wire/signals.h"

#define DAY_MS 86400000LL

struct run_camp {
    char id[FV_CAMPAIGN_ID_MAX];
    struct fv_trigger *trig;
    struct fv_trigger_state *st;
    long field[FV_TRIGGER_MAX_SIGNALS]; /* slot -> signal number (-1: none) */
    int pre_s, post_s;
    char channels[FV_CAMPAIGN_CHANNELS_MAX][FV_CAMPAIGN_CHANNEL_MAX + 1];
    const char *chp[FV_CAMPAIGN_CHANNELS_MAX];
    size_t nchannels;
    int64_t per_day, total, end_ms;
    int64_t hits, day, day_hits, last_hit_ms;
};

struct fv_sim_campaigns {
    struct run_camp *c[FV_SIM_CAMPAIGNS_MAX];
    size_t n;
    unsigned clipseq;
};

int fv_sim_clip_upload_stub(void *arg, const struct fv_sim_clip_req *req, char *err, size_t errlen)
{
    (void)arg;
    (void)req;
    fv_seterr(err, errlen, "clip upload not built");
    return FV_ESTATE;
}

int fv_sim_campaigns_new(struct fv_sim_campaigns **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? FV_OK : FV_ENOMEM;
}

static void camp_free(struct run_camp *k)
{
    if (k == NULL) return;
    fv_trigger_state_free(k->st);
    fv_trigger_free(k->trig);
    free(k);
}

void fv_sim_campaigns_free(struct fv_sim_campaigns *cs)
{
    if (cs == NULL) return;
    for (size_t i = 0; i < cs->n; i++)
        camp_free(cs->c[i]);
    free(cs);
}

size_t fv_sim_campaigns_count(const struct fv_sim_campaigns *cs)
{
    return cs ? cs->n : 0;
}

static int find(const struct fv_sim_campaigns *cs, const char *id)
{
    for (size_t i = 0; i < cs->n; i++)
        if (strcmp(cs->c[i]->id, id) == 0) return (int)i;
    return -1;
}

static int put_ack(struct fv_buf *ack, const char *id, const char *op, const char *reason)
{
    json_t *o = json_pack("{s:s,s:s,s:s}", "id", id, "op", op, "status", reason ? "refused" : "ok");
    if (o && reason) json_object_set_new(o, "reason", json_string(reason));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    int rc = s ? fv_buf_append(ack, s, strlen(s)) : FV_ENOMEM;
    free(s);
    return rc;
}

/* VC1: a start message's campaign, or NULL with why (or out of memory: *oom). */
static struct run_camp *make_camp(const json_t *o, const char *id, char *why, size_t whylen,
                                  int *oom)
{
    struct run_camp *k = calloc(1, sizeof *k);
    if (k == NULL) {
        *oom = 1;
        return NULL;
    }
    snprintf(k->id, sizeof k->id, "%s", id);
    const json_t *b = json_object_get(o, "budgets");
    k->pre_s = (int)json_integer_value(json_object_get(o, "pre_s"));
    k->post_s = (int)json_integer_value(json_object_get(o, "post_s"));
    k->per_day = json_integer_value(json_object_get(b, "clips_per_day"));
    k->total = json_integer_value(json_object_get(b, "total_clips"));
    k->end_ms = json_integer_value(json_object_get(o, "end_ms"));
    k->last_hit_ms = INT64_MIN / 2;
    const json_t *ch = json_object_get(o, "channels"), *x;
    size_t i;
    json_array_foreach(ch, i, x)
    {
        if (k->nchannels >= FV_CAMPAIGN_CHANNELS_MAX || !json_is_string(x)) break;
        snprintf(k->channels[k->nchannels], sizeof k->channels[0], "%s", json_string_value(x));
        k->chp[k->nchannels] = k->channels[k->nchannels];
        k->nchannels++;
    }
    const char *text = json_string_value(json_object_get(o, "trigger"));
    char e[200];
    int rc = fv_trigger_compile(text, fv_trigger_known_signal, NULL, &k->trig, e, sizeof e);
    if (rc == FV_OK) rc = fv_trigger_state_new(k->trig, &k->st);
    if (rc != FV_OK || k->per_day <= 0 || k->total <= 0) {
        *oom = rc == FV_ENOMEM;
        snprintf(why, whylen, "%s",
                 rc == FV_EINVAL ? e
                 : rc            ? "out of memory"
                                 : "budgets missing or not positive");
        camp_free(k);
        return NULL;
    }
    for (size_t s = 0; s < fv_trigger_nsignals(k->trig); s++)
        k->field[s] = fv_signal_lookup(fv_trigger_signal(k->trig, s));
    return k;
}

int fv_sim_campaigns_message(struct fv_sim_campaigns *cs, const unsigned char *p, size_t len,
                             struct fv_buf *ack)
{
    json_t *o = json_loadb((const char *)p, len, 0, NULL);
    const char *op = json_string_value(json_object_get(o, "op"));
    const char *id = json_string_value(json_object_get(o, "id"));
    int rc = FV_EPROTO;
    if (op == NULL || id == NULL || strlen(id) >= FV_CAMPAIGN_ID_MAX) goto out;
    int at = find(cs, id);
    if (strcmp(op, "stop") == 0) { /* VC2 */
        if (at >= 0) {
            camp_free(cs->c[at]);
            cs->c[at] = cs->c[--cs->n];
        }
        rc = put_ack(ack, id, "stop", NULL);
    } else if (strcmp(op, "start") == 0) {
        if (at >= 0) {
            rc = put_ack(ack, id, "start", NULL); /* VC1: a resend */
            goto out;
        }
        char why[200] = "";
        int oom = 0;
        struct run_camp *k =
            cs->n < FV_SIM_CAMPAIGNS_MAX ? make_camp(o, id, why, sizeof why, &oom) : NULL;
        if (cs->n >= FV_SIM_CAMPAIGNS_MAX) snprintf(why, sizeof why, "too many campaigns");
        if (oom) {
            rc = FV_ENOMEM;
            goto out;
        }
        if (k) cs->c[cs->n++] = k;
        rc = put_ack(ack, id, "start", k ? NULL : why);
    }
out:
    json_decref(o);
    return rc;
}

int fv_sim_campaigns_sample(struct fv_sim_campaigns *cs, const char *vin, const struct fv_datum *d,
                            size_t n, int64_t t_ms, fv_sim_clip_upload_fn upload, void *upload_arg,
                            struct fv_buf *hits, size_t max_hits, size_t *nhits,
                            uint64_t *clip_failures)
{
    *nhits = 0;
    for (size_t i = 0; cs && i < cs->n; i++) {
        struct run_camp *k = cs->c[i];
        for (size_t s = 0; s < fv_trigger_nsignals(k->trig); s++)
            for (size_t j = 0; j < n; j++)
                if (k->field[s] >= 0 && d[j].field == (uint32_t)k->field[s])
                    fv_trigger_set_value(k->st, (int)s, &d[j].value);
        if (!fv_trigger_step(k->st, t_ms, NULL)) continue;
        int64_t day = t_ms / DAY_MS;
        if (k->day != day) {
            k->day = day;
            k->day_hits = 0;
        }
        /* VC3 */
        if (t_ms - k->last_hit_ms < (int64_t)k->post_s * 1000 || k->day_hits >= k->per_day ||
            k->hits >= k->total || t_ms >= k->end_ms || *nhits >= max_hits)
            continue;
        k->hits++;
        k->day_hits++;
        k->last_hit_ms = t_ms;
        char clip[FV_CAMPAIGN_ID_MAX + 48];
        snprintf(clip, sizeof clip, "%s-%lld-%u", k->id, (long long)t_ms, ++cs->clipseq);
        json_t *o =
            json_pack("{s:s,s:I,s:s}", "id", k->id, "trigger_ms", (json_int_t)t_ms, "clip", clip);
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        hits[*nhits].len = 0;
        int rc = text ? fv_buf_append(&hits[*nhits], text, strlen(text)) : FV_ENOMEM;
        free(text);
        if (rc) return rc;
        (*nhits)++;
        struct fv_sim_clip_req req = {.vin = vin,
                                      .campaign = k->id,
                                      .clip_id = clip,
                                      .trigger_ms = t_ms,
                                      .pre_s = k->pre_s,
                                      .post_s = k->post_s,
                                      .channels = k->chp,
                                      .nchannels = k->nchannels};
        char err[160];
        if (upload && upload(upload_arg, &req, err, sizeof err) != FV_OK) (*clip_failures)++;
    }
    return FV_OK;
}
