/* ds_clips.c - the dataset source over the clip store (ds_clips.h, rules S1-S7). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "crypto/keys.h"
#include "data/clip_labels.h"
#include "data/ds_clips.h"
#include "data/mcap.h"
#include "data/wds.h"
#include "privacy/subjects.h"
#include "util/err.h"
#include "util/hex.h"

#define PURPOSE_TRAIN "model_training"
#define PURPOSE_CLIPS "clips"

/* ---- the query (S3) ------------------------------------------------------------------ */

static int parse_ms(const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno) return FV_EINVAL;
    *out = (int64_t)x;
    return FV_OK;
}

static int id_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > FV_CLIP_ID_MAX) return 0;
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_.:-", *p)) return 0;
    return 1;
}

int fv_ds_query_parse(const char *text, struct fv_ds_query *q, char *why, size_t whylen)
{
    memset(q, 0, sizeof *q);
    q->from_ms = INT64_MIN;
    q->to_ms = INT64_MAX;
    int have_from = 0, have_to = 0;
    const char *p = text ? text : "";
    while (*p) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0') break;
        size_t n = strcspn(p, " \t\r\n");
        char term[160];
        if (n >= sizeof term) {
            fv_seterr(why, whylen, "query: term at column %zu too long", (size_t)(p - text) + 1);
            return FV_EINVAL;
        }
        memcpy(term, p, n);
        term[n] = '\0';
        size_t col = (size_t)(p - text) + 1;
        p += n;
        char *eq = strchr(term, '=');
        if (eq == NULL) {
            fv_seterr(why, whylen,
                      "query: '%s' at column %zu: expected KEY=VALUE (campaign, from, to, tag)",
                      term, col);
            return FV_EINVAL;
        }
        *eq = '\0';
        const char *k = term, *v = eq + 1;
        int bad = 0, dup = 0;
        if (strcmp(k, "campaign") == 0) {
            dup = q->campaign[0] != '\0';
            bad = !id_ok(v);
            if (!bad && !dup) snprintf(q->campaign, sizeof q->campaign, "%s", v);
        } else if (strcmp(k, "from") == 0) {
            dup = have_from++;
            bad = parse_ms(v, &q->from_ms) != FV_OK;
        } else if (strcmp(k, "to") == 0) {
            dup = have_to++;
            bad = parse_ms(v, &q->to_ms) != FV_OK;
        } else if (strcmp(k, "tag") == 0) {
            bad = !id_ok(v);
            if (!bad && q->ntags == FV_DS_QUERY_TAGS) {
                fv_seterr(why, whylen, "query: column %zu: at most %d tags", col, FV_DS_QUERY_TAGS);
                return FV_EINVAL;
            }
            if (!bad) snprintf(q->tags[q->ntags++], sizeof q->tags[0], "%s", v);
        } else {
            fv_seterr(why, whylen,
                      "query: unknown key '%s' at column %zu (campaign, from, to, tag)", k, col);
            return FV_EINVAL;
        }
        if (dup) {
            fv_seterr(why, whylen, "query: '%s' given twice (column %zu)", k, col);
            return FV_EINVAL;
        }
        if (bad) {
            fv_seterr(why, whylen, "query: bad value for '%s' at column %zu: '%s'", k, col, v);
            return FV_EINVAL;
        }
    }
    if (q->from_ms > q->to_ms) {
        fv_seterr(why, whylen, "query: from is after to");
        return FV_EINVAL;
    }
    return FV_OK;
}

/* ---- the subject and labeler identifiers (S4, S7) --------------------------------------- */

static int keyed_id(const unsigned char key[32], const char *text, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (HMAC(EVP_sha256(), key, 32, (const unsigned char *)text, strlen(text), md, &mdlen) == NULL)
        return FV_EIO;
    fv_hex(md, 16, out);
    return FV_OK;
}

static int derived_id(struct fv_keystore *ks, const char *label, const char *text, char out[33])
{
    unsigned char key[32];
    int rc = fv_keystore_derive(ks, label, key);
    if (rc == FV_OK) rc = keyed_id(key, text, out);
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

int fv_ds_clips_subject(struct fv_keystore *ks, const char *subject_pseudo, char out[33])
{
    return derived_id(ks, "fleetvault dataset subject", subject_pseudo, out);
}

int fv_ds_clips_labeler(struct fv_keystore *ks, const char *principal, char out[33])
{
    return derived_id(ks, "fleetvault dataset labeler", principal, out);
}

/* ---- a clip's labels (S7) --------------------------------------------------------------- */

struct row_labels {
    json_t *labels; /* the object of name -> value; NULL: not labeled */
    json_t *tags;   /* the label tags (an array of strings); NULL: not labeled */
    char labeler[33];
    int64_t labeled_ms;
};

static void labels_free(struct row_labels *l)
{
    json_decref(l->labels);
    json_decref(l->tags);
    memset(l, 0, sizeof *l);
}

/* Reads the labels of the clip with upload id `upload` into l (empty when it has none). */
static int labels_load(struct fv_ds_clips *c, const char *upload, struct row_labels *l)
{
    memset(l, 0, sizeof *l);
    char *text = NULL, *labeler = NULL;
    int rc = fv_clip_labels_get(c->ks, upload, &text, &labeler, &l->labeled_ms);
    if (rc == FV_ENOENT) return FV_OK;
    json_t *j = rc == FV_OK ? json_loads(text, 0, NULL) : NULL;
    json_t *labels = json_object_get(j, "labels"), *tags = json_object_get(j, "tags");
    if (rc == FV_OK && (!json_is_object(labels) || (tags && !json_is_array(tags))))
        rc = FV_EIO; /* the labeling API stores only {"labels": {...}, "tags": [...]} */
    for (size_t i = 0; rc == FV_OK && i < json_array_size(tags); i++)
        if (!json_is_string(json_array_get(tags, i))) rc = FV_EIO;
    if (rc == FV_OK) {
        l->labels = json_incref(labels);
        l->tags = tags ? json_incref(tags) : json_array();
        rc = l->tags ? keyed_id(c->labeler_key, labeler, l->labeler) : FV_ENOMEM;
    }
    json_decref(j);
    free(text);
    free(labeler);
    if (rc) labels_free(l);
    return rc;
}

static int has_tag(const struct fv_clip_row *r, const struct row_labels *l, const char *tag)
{
    if (strcmp(tag, r->trigger) == 0) return 1;
    for (size_t i = 0; i < json_array_size(l->tags); i++)
        if (strcmp(json_string_value(json_array_get(l->tags, i)), tag) == 0) return 1;
    return 0;
}

/* The item's comma-separated tags: the trigger, then the label tags without a comma that
 * fit in n - 1 bytes. */
static void tags_line(const struct fv_clip_row *r, const struct row_labels *l, char *out, size_t n)
{
    size_t len = (size_t)snprintf(out, n, "%s", r->trigger);
    if (len >= n) len = n - 1;
    for (size_t i = 0; i < json_array_size(l->tags); i++) {
        const char *t = json_string_value(json_array_get(l->tags, i));
        size_t k = strlen(t);
        if (strchr(t, ',') || len + 1 + k >= n) continue;
        out[len++] = ',';
        memcpy(out + len, t, k + 1);
        len += k;
    }
}

static int query_match(const struct fv_ds_query *q, const struct fv_clip_row *r,
                       const struct row_labels *l)
{
    if (q->campaign[0] && strcmp(q->campaign, r->campaign) != 0) return 0;
    if (r->trigger_ms < q->from_ms || r->trigger_ms > q->to_ms) return 0;
    for (size_t i = 0; i < q->ntags; i++) /* S5, S7: the trigger and the label tags */
        if (!has_tag(r, l, q->tags[i])) return 0;
    return 1;
}

/* ---- the rules of a candidate (S1, S2, S4) -------------------------------------------- */

enum { OK = 0, LEFT_DEID, LEFT_OWNER, LEFT_CONSENT, LEFT_QUERY };

/* Whether r (labels l) is a candidate now; device and vehicle receive its device and
 * pseudonym. */
static int eligible(struct fv_ds_clips *c, const struct fv_clip_row *r, const struct row_labels *l,
                    char device[FV_SUBJECT_NAME_MAX + 1], char vehicle[80])
{
    if (strcmp(r->deid, "passed") != 0 || !fv_clip_store_passed(c->ks, r->id)) return LEFT_DEID;
    int epoch = 0;
    char current[FV_SUBJECT_NAME_MAX + 1];
    if (r->subject_name[0] == '\0' || fv_subject_parse(r->subject_name, device, &epoch) != FV_OK ||
        fv_subject_current(c->ks, device, current, NULL) != FV_OK ||
        strcmp(current, r->subject_name) != 0)
        return LEFT_OWNER;
    if (!query_match(&c->query, r, l)) return LEFT_QUERY;
    int at_capture = 0, now = 0;
    if (fv_consent_at(c->ks, c->purposes, r->subject_name, PURPOSE_CLIPS, r->trigger_ms,
                      &at_capture) != FV_OK ||
        fv_consent_at(c->ks, c->purposes, r->subject_name, PURPOSE_TRAIN, c->now_ms, &now) !=
            FV_OK ||
        !at_capture || !now)
        return LEFT_CONSENT;
    if (c->pseudonym == NULL || c->pseudonym(c->cb_arg, PURPOSE_TRAIN, device, vehicle) != FV_OK)
        return LEFT_OWNER;
    return OK;
}

/* ---- listing --------------------------------------------------------------------------- */

struct list_ctx {
    struct fv_ds_clips *c;
    int (*emit)(void *ctx, struct fv_ds_item *it);
    void *ctx;
};

static json_t *lineage_of(const struct fv_clip_row *r)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:{s:s,s:i,s:s}}", "clip_id", r->clip_id, "upload",
                     r->id, "campaign", r->campaign, "trigger", r->trigger, "trigger_ms",
                     (json_int_t)r->trigger_ms, "sha256", r->sha256, "deid", "status", r->deid,
                     "exit", r->deid_exit, "summary", r->deid_summary);
}

static int list_row(void *arg, const struct fv_clip_row *r)
{
    struct list_ctx *lc = arg;
    struct fv_ds_clips *c = lc->c;
    char device[FV_SUBJECT_NAME_MAX + 1];
    struct fv_ds_item it;
    memset(&it, 0, sizeof it);
    struct row_labels l;
    int rc = labels_load(c, r->id, &l);
    if (rc) return rc;
    c->listed++;
    int why = eligible(c, r, &l, device, it.vehicle);
    if (why == OK) tags_line(r, &l, it.tags, sizeof it.tags);
    labels_free(&l);
    switch (why) {
    case LEFT_DEID:
        c->left_deid++;
        return 0;
    case LEFT_OWNER:
        c->left_owner++;
        return 0;
    case LEFT_CONSENT:
        c->left_consent++;
        return 0;
    case LEFT_QUERY:
        c->left_query++;
        return 0;
    default:
        break;
    }
    snprintf(it.key, sizeof it.key, "%s", r->id);
    if (keyed_id(c->subject_key, r->subject, it.subject) != FV_OK) return FV_EIO;
    snprintf(it.content_sha256, sizeof it.content_sha256, "%s", r->sha256);
    it.lineage = lineage_of(r);
    if (it.lineage == NULL) return FV_ENOMEM;
    return lc->emit(lc->ctx, &it); /* the builder takes the lineage over */
}

static int src_list(void *arg, int (*emit)(void *ctx, struct fv_ds_item *it), void *ctx, char *err,
                    size_t errlen)
{
    struct fv_ds_clips *c = arg;
    struct list_ctx lc = {.c = c, .emit = emit, .ctx = ctx};
    c->listed = c->left_deid = c->left_owner = c->left_consent = c->left_query = 0;
    /* every row, not only "passed": the counts of what was left out are the manifest's */
    int rc = fv_clip_store_list(c->ks, NULL, list_row, &lc);
    if (rc == FV_OK && c->consent) {
        json_t *st = fv_ds_clips_consent(c);
        rc = st && json_object_update(c->consent, st) == 0 ? FV_OK : FV_ENOMEM;
        json_decref(st);
    }
    if (rc != FV_OK && err && err[0] == '\0')
        fv_seterr(err, errlen, "listing the clips: %s", fv_strerror(rc));
    return rc;
}

/* ---- loading (S6) ---------------------------------------------------------------------- */

struct signal {
    char name[FV_DS_EXT_MAX];
    double *v; /* rows x 2 */
    size_t rows, cap;
};

struct sig_ctx {
    const struct fv_mcap_reader *r;
    struct signal sig[FV_DS_FILES_MAX - 2];
    size_t n;
    int64_t trigger_ms;
    int rc;
};

static struct signal *signal_slot(struct sig_ctx *s, const char *field)
{
    char name[FV_DS_EXT_MAX];
    size_t j = 0;
    for (const char *p = field; *p && j < sizeof name - 5; p++) /* room for ".npy" */
        name[j++] = isalnum((unsigned char)*p) ? *p : '_';
    name[j] = '\0';
    if (j == 0) return NULL;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->sig[i].name, name) == 0) return &s->sig[i];
    if (s->n == sizeof s->sig / sizeof s->sig[0]) return NULL;
    struct signal *g = &s->sig[s->n++];
    memcpy(g->name, name, j + 1);
    return g;
}

static int on_msg(void *arg, const struct fv_mcap_msg *m)
{
    struct sig_ctx *s = arg;
    const struct fv_mcap_channel *ch = fv_mcap_channel_by_id(s->r, m->channel_id);
    if (ch == NULL || strcmp(ch->message_encoding.p, "json") != 0) return 0;
    json_t *o = json_loadb((const char *)m->data, m->len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return 0;
    }
    double t = ((double)m->log_time / 1e6 - (double)s->trigger_ms) / 1000.0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (!json_is_number(v)) continue;
        struct signal *g = signal_slot(s, k);
        if (g == NULL) continue;
        if (g->rows == g->cap) {
            size_t nc = g->cap ? g->cap * 2 : 64;
            double *nv = realloc(g->v, nc * 2 * sizeof *nv);
            if (nv == NULL) {
                json_decref(o);
                s->rc = FV_ENOMEM;
                return FV_ENOMEM;
            }
            g->v = nv;
            g->cap = nc;
        }
        g->v[2 * g->rows] = t;
        g->v[2 * g->rows + 1] = json_number_value(v);
        g->rows++;
    }
    json_decref(o);
    return 0;
}

/* Rows [t, value] by time (a signal may come from several channels: the clip's own and the
 * store's, clip_signals.h). */
static int by_row_time(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The signals of the clip into out (KEY.SIGNAL.npy); *note gets why none, if so. */
static int add_signals(const struct fv_buf *clip, int64_t trigger_ms, struct fv_ds_files *out,
                       const char **note)
{
    struct fv_mcap_source src;
    struct fv_mcap_reader *r = NULL;
    char err[256];
    fv_mcap_source_mem(&src, clip->data, clip->len);
    if (fv_mcap_reader_open(&src, &r, err, sizeof err) != FV_OK) {
        *note = "the clip's MCAP could not be read: no signals";
        return FV_OK;
    }
    struct sig_ctx s = {.r = r, .trigger_ms = trigger_ms};
    int rc = fv_mcap_read(r, NULL, on_msg, &s, err, sizeof err);
    if (rc != FV_OK && s.rc == FV_OK) {
        *note = "the clip's MCAP could not be read: no signals";
        rc = FV_OK;
        s.n = 0;
    } else if (rc == FV_OK) {
        rc = s.rc;
    }
    for (size_t i = 0; rc == FV_OK && i < s.n && out->n < FV_DS_FILES_MAX; i++) {
        if (s.sig[i].rows == 0) continue;
        qsort(s.sig[i].v, s.sig[i].rows, 2 * sizeof *s.sig[i].v, by_row_time);
        snprintf(out->ext[out->n], FV_DS_EXT_MAX, "%s.npy", s.sig[i].name);
        fv_buf_reset(&out->data[out->n]);
        rc = fv_npy_append(&out->data[out->n], "<f8", s.sig[i].v, s.sig[i].rows, 2);
        if (rc == FV_OK) out->n++;
    }
    for (size_t i = 0; i < sizeof s.sig / sizeof s.sig[0]; i++)
        free(s.sig[i].v);
    fv_mcap_reader_free(r);
    return rc;
}

/* ms since the epoch as ISO 8601 UTC with milliseconds ("" if out of range). */
static void iso_ms(int64_t ms, char out[32])
{
    out[0] = '\0';
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm))
        snprintf(out + strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm), 10, ".%03dZ",
                 (int)(ms % 1000 + 1000) % 1000);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* S7: "labels" [{"name", "value"}, ...] by name, "tags", "labeling" into j. */
static int meta_labels(json_t *j, const struct fv_clip_row *r, const struct row_labels *l)
{
    size_t n = json_object_size(l->labels), k = 0;
    const char **names = n ? malloc(n * sizeof *names) : NULL;
    json_t *labels = json_array(), *tags = json_pack("[s]", r->trigger), *labeling = json_null();
    int rc = (n && names == NULL) || labels == NULL || tags == NULL ? FV_ENOMEM : FV_OK;
    const char *name;
    json_t *v;
    json_object_foreach(rc == FV_OK ? l->labels : NULL, name, v) names[k++] = name;
    if (k) qsort(names, k, sizeof *names, cmp_str);
    for (size_t i = 0; rc == FV_OK && i < k; i++)
        if (json_array_append_new(labels, json_pack("{s:s,s:O}", "name", names[i], "value",
                                                    json_object_get(l->labels, names[i]))))
            rc = FV_ENOMEM;
    if (rc == FV_OK && l->tags && json_array_extend(tags, l->tags) != 0) rc = FV_ENOMEM;
    if (rc == FV_OK && l->labels) {
        char when[32];
        iso_ms(l->labeled_ms, when);
        labeling = json_pack("{s:s,s:I,s:s}", "labeler", l->labeler, "labeled_ms",
                             (json_int_t)l->labeled_ms, "time", when);
        if (labeling == NULL) rc = FV_ENOMEM;
    }
    free(names);
    if (rc == FV_OK && (json_object_set(j, "labels", labels) || json_object_set(j, "tags", tags) ||
                        json_object_set(j, "labeling", labeling)))
        rc = FV_ENOMEM;
    json_decref(labels);
    json_decref(tags);
    json_decref(labeling);
    return rc;
}

static json_t *meta_of(struct fv_ds_clips *c, const struct fv_ds_item *it,
                       const struct fv_clip_row *r, const struct row_labels *l, const char *device)
{
    char when[32];
    iso_ms(r->trigger_ms, when);
    json_t *j = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:{s:s,s:i,s:s}}", "key", it->key, "vehicle",
                          it->vehicle, "time", when, "trigger_ms", (json_int_t)r->trigger_ms,
                          "campaign", r->campaign, "trigger", r->trigger, "deid", "status", r->deid,
                          "exit", r->deid_exit, "summary", r->deid_summary);
    if (j && meta_labels(j, r, l) != FV_OK) {
        json_decref(j);
        return NULL;
    }
    if (j && r->place.have && c->place_ok && c->place_ok(c->cb_arg, device, &r->place))
        json_object_set_new(j, "place",
                            json_pack("{s:f,s:f}", "lat", r->place.lat, "lon", r->place.lon));
    return j;
}

static int add_file(struct fv_ds_files *out, const char *ext, const void *p, size_t n)
{
    if (out->n == FV_DS_FILES_MAX) return FV_ELIMIT;
    snprintf(out->ext[out->n], FV_DS_EXT_MAX, "%s", ext);
    fv_buf_reset(&out->data[out->n]);
    int rc = fv_buf_append(&out->data[out->n], p, n);
    if (rc == FV_OK) out->n++;
    return rc;
}

static int src_load(void *arg, const struct fv_ds_item *it, struct fv_ds_files *out, char *err,
                    size_t errlen)
{
    struct fv_ds_clips *c = arg;
    struct fv_clip_row r;
    struct row_labels l;
    char device[FV_SUBJECT_NAME_MAX + 1], vehicle[80];
    out->n = 0;
    int rc = fv_clip_store_get(c->ks, it->key, &r);
    if (rc == FV_OK) rc = labels_load(c, it->key, &l);
    if (rc) {
        fv_seterr(err, errlen, "clip %s: %s", it->key, fv_strerror(rc));
        return rc;
    }
    if (eligible(c, &r, &l, device, vehicle) != OK || strcmp(vehicle, it->vehicle) != 0) {
        labels_free(&l);
        fv_seterr(err, errlen,
                  "clip %s: no longer a candidate (consent or de-identification "
                  "changed during the build)",
                  it->key);
        return FV_ESTATE;
    }
    struct fv_buf clip = {0};
    rc = fv_clip_store_read(c->ks, c->clips_dir, it->key, &clip, err, errlen);
    if (rc == FV_OK) rc = add_file(out, "mcap", clip.data, clip.len);
    json_t *meta = rc == FV_OK ? meta_of(c, it, &r, &l, device) : NULL;
    labels_free(&l);
    if (rc == FV_OK && meta == NULL) rc = FV_ENOMEM;
    const char *note = NULL;
    size_t json_at = out->n;
    if (rc == FV_OK) rc = add_file(out, "json", "", 0); /* filled below */
    if (rc == FV_OK) rc = add_signals(&clip, r.trigger_ms, out, &note);
    if (rc == FV_OK && note) json_object_set_new(meta, "signals_note", json_string(note));
    char *text = rc == FV_OK ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (rc == FV_OK && text == NULL) rc = FV_ENOMEM;
    if (rc == FV_OK) rc = fv_buf_append(&out->data[json_at], text, strlen(text));
    free(text);
    json_decref(meta);
    if (clip.data) OPENSSL_cleanse(clip.data, clip.len);
    fv_buf_free(&clip);
    if (rc && err && err[0] == '\0')
        fv_seterr(err, errlen, "clip %s: %s", it->key, fv_strerror(rc));
    return rc;
}

int fv_ds_clips_source(struct fv_ds_clips *c, struct fv_ds_source *src)
{
    if (fv_keystore_derive(c->ks, "fleetvault dataset subject", c->subject_key) != FV_OK ||
        fv_keystore_derive(c->ks, "fleetvault dataset labeler", c->labeler_key) != FV_OK)
        return FV_EIO;
    src->list = src_list;
    src->load = src_load;
    src->arg = c;
    return FV_OK;
}

json_t *fv_ds_clips_consent(const struct fv_ds_clips *c)
{
    return json_pack("{s:s,s:s,s:I,s:I,s:{s:I,s:I,s:I,s:I}}", "purpose", PURPOSE_TRAIN,
                     "capture_purpose", PURPOSE_CLIPS, "checked_ms", (json_int_t)c->now_ms,
                     "clips_listed", (json_int_t)c->listed, "left_out", "deid_not_passed",
                     (json_int_t)c->left_deid, "no_consent", (json_int_t)c->left_consent,
                     "erased_or_previous_owner", (json_int_t)c->left_owner, "query",
                     (json_int_t)c->left_query);
}
