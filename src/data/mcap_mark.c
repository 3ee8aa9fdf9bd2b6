/* mcap_mark.c - a watermarked copy of an MCAP file (mcap_mark.h): read through the reader,
 * written again by the writer, one channel added. */
#include "data/mcap_mark.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "data/mcap.h"
#include "util/err.h"

struct copy {
    struct fv_mcap_writer *w;
    uint16_t *chan; /* old channel id -> new one */
    uint64_t first; /* the first message's log time */
    int any;
    char *err;
    size_t errlen;
};

static int copy_msg(void *arg, const struct fv_mcap_msg *m)
{
    struct copy *c = arg;
    if (!c->any || m->log_time < c->first) c->first = m->log_time;
    c->any = 1;
    return fv_mcap_add_message(c->w, c->chan[m->channel_id], m->sequence, m->log_time,
                               m->publish_time, m->data, m->len, c->err, c->errlen);
}

/* The schemas and channels of r into c->w, ids mapped. */
static int copy_defs(struct fv_mcap_reader *r, struct copy *c, uint16_t *schema)
{
    int rc = FV_OK;
    for (size_t i = 0; rc == FV_OK && i < fv_mcap_schema_count(r); i++) {
        const struct fv_mcap_schema *s = fv_mcap_schema_at(r, i);
        rc = fv_mcap_add_schema(c->w, s->name.p, s->encoding.p, s->data, s->len, &schema[s->id],
                                c->err, c->errlen);
    }
    for (size_t i = 0; rc == FV_OK && i < fv_mcap_channel_count(r); i++) {
        const struct fv_mcap_channel *ch = fv_mcap_channel_at(r, i);
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
    return rc;
}

int fv_mcap_mark(const void *in, size_t len, const char *const *keys, const char *const *vals,
                 size_t n, struct fv_buf *out, char *err, size_t errlen)
{
    struct fv_mcap_source src;
    struct fv_mcap_reader *r = NULL;
    struct copy c = {.err = err, .errlen = errlen};
    uint16_t *schema = calloc(65536, sizeof *schema);
    c.chan = calloc(65536, sizeof *c.chan);
    json_t *j = json_object();
    char *text = NULL;
    int rc = schema && c.chan && j ? FV_OK : FV_ENOMEM;
    fv_mcap_source_mem(&src, in, len);
    if (rc == FV_OK) rc = fv_mcap_reader_open(&src, &r, err, errlen);
    if (rc == FV_OK) rc = fv_mcap_writer_open_mem(out, NULL, &c.w, err, errlen);
    if (rc == FV_OK) rc = copy_defs(r, &c, schema);
    if (rc == FV_OK) rc = fv_mcap_read(r, NULL, copy_msg, &c, err, errlen);
    uint16_t mark = 0;
    if (rc == FV_OK)
        rc = fv_mcap_add_channel(c.w, 0, FV_MCAP_MARK_TOPIC, "json", (const char *const *)keys,
                                 (const char *const *)vals, n, &mark, err, errlen);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        if (json_object_set_new(j, keys[i], json_string(vals[i]))) rc = FV_ENOMEM;
    if (rc == FV_OK && (text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
        rc = FV_ENOMEM;
    if (rc == FV_OK)
        rc = fv_mcap_add_message(c.w, mark, 0, c.any ? c.first : 0, c.any ? c.first : 0, text,
                                 strlen(text), err, errlen);
    if (rc == FV_OK) {
        rc = fv_mcap_writer_close(c.w, err, errlen);
        c.w = NULL;
    }
    fv_mcap_writer_free(c.w);
    fv_mcap_reader_free(r);
    free(text);
    json_decref(j);
    free(schema);
    free(c.chan);
    return rc;
}
