/* mcap_copy.c - a copy of an MCAP file through the reader into a writer (mcap.h,
 * fv_mcap_copy): the base of the watermarked copy (mcap_mark.h) and of a clip with the
 * store's signals added (clip_signals.h). */
#include <stdint.h>
#include <stdlib.h>

#include "data/mcap.h"
#include "data/mcap_int.h"
#include "util/err.h"

struct copy {
    struct fv_mcap_writer *w;
    uint16_t *chan; /* old channel id -> new one */
    uint64_t first, last;
    int any;
    char *err;
    size_t errlen;
};

static int copy_msg(void *arg, const struct fv_mcap_msg *m)
{
    struct copy *c = arg;
    if (c->chan[m->channel_id] == 0) return 0; /* a channel left out (ids are 1, 2, ...) */
    if (!c->any || m->log_time < c->first) c->first = m->log_time;
    if (!c->any || m->log_time > c->last) c->last = m->log_time;
    c->any = 1;
    return fv_mcap_add_message(c->w, c->chan[m->channel_id], m->sequence, m->log_time,
                               m->publish_time, m->data, m->len, c->err, c->errlen);
}

/* The schemas and channels of r into c->w (those keep keeps, and their schemas), ids mapped. */
static int copy_defs(struct fv_mcap_reader *r, struct copy *c, uint16_t *schema,
                     fv_mcap_keep_fn keep, void *keep_arg)
{
    int rc = FV_OK;
    unsigned char *kept = calloc(fv_mcap_channel_count(r) + 1, 1);
    unsigned char *used = calloc(65536, 1); /* schema ids a kept channel names */
    if (kept == NULL || used == NULL) rc = FV_ENOMEM;
    for (size_t i = 0; rc == FV_OK && i < fv_mcap_channel_count(r); i++) {
        const struct fv_mcap_channel *ch = fv_mcap_channel_at(r, i);
        kept[i] = keep == NULL || keep(keep_arg, ch);
        if (kept[i]) used[ch->schema_id] = 1;
    }
    for (size_t i = 0; rc == FV_OK && i < fv_mcap_schema_count(r); i++) {
        const struct fv_mcap_schema *s = fv_mcap_schema_at(r, i);
        if (keep && !used[s->id]) continue;
        rc = fv_mcap_add_schema(c->w, s->name.p, s->encoding.p, s->data, s->len, &schema[s->id],
                                c->err, c->errlen);
    }
    for (size_t i = 0; rc == FV_OK && i < fv_mcap_channel_count(r); i++) {
        const struct fv_mcap_channel *ch = fv_mcap_channel_at(r, i);
        if (!kept[i]) continue;
        const char **k = calloc(ch->nmeta + 1, sizeof *k), **v = calloc(ch->nmeta + 1, sizeof *v);
        if (k == NULL || v == NULL) rc = FV_ENOMEM;
        for (size_t j = 0; rc == FV_OK && j < ch->nmeta; j++) {
            k[j] = ch->keys[j].p;
            v[j] = ch->vals[j].p;
        }
        if (rc == FV_OK)
            rc = fv_mcap_add_channel(c->w, ch->schema_id ? schema[ch->schema_id] : 0, ch->topic.p,
                                     ch->message_encoding.p, k, v, ch->nmeta, &c->chan[ch->id],
                                     c->err, c->errlen);
        free(k);
        free(v);
    }
    free(kept);
    free(used);
    if (rc == FV_ENOMEM) fv_seterr(c->err, c->errlen, "mcap: out of memory");
    return rc;
}

int fv_mcap_copy(struct fv_mcap_reader *r, struct fv_mcap_writer *w, fv_mcap_keep_fn keep,
                 void *keep_arg, uint64_t *first, uint64_t *last, char *err, size_t errlen)
{
    struct copy c = {.w = w, .err = err, .errlen = errlen};
    uint16_t *schema = calloc(65536, sizeof *schema);
    c.chan = calloc(65536, sizeof *c.chan);
    int rc = schema && c.chan ? FV_OK : FV_ENOMEM;
    if (rc == FV_ENOMEM) fv_seterr(err, errlen, "mcap: out of memory");
    /* The definitions of the whole data section first (a file without a summary lists them
     * only after a scan), then the messages in file order. */
    if (rc == FV_OK) rc = fv_mcap_scan(r, NULL, NULL, NULL, err, errlen);
    if (rc == FV_OK) rc = copy_defs(r, &c, schema, keep, keep_arg);
    if (rc == FV_OK) rc = fv_mcap_scan(r, NULL, copy_msg, &c, err, errlen);
    if (first) *first = c.any ? c.first : 0;
    if (last) *last = c.any ? c.last : 0;
    free(schema);
    free(c.chan);
    return rc;
}

uint64_t fv_mcap_extras(const struct fv_mcap_reader *r)
{
    return r->scan_extras;
}
