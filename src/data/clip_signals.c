/* clip_signals.c - the store's signals added to a clip as MCAP channels (clip_signals.h,
 * G1-G5). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "data/clip_signals.h"
#include "data/mcap.h"
#include "os/fsio.h"
#include "store/store.h"
#include "util/err.h"
#include "util/fmt.h"
#include "wire/places.h"
#include "wire/signals.h"

/* JSON types a signal's values have (the schema's "type"). */
enum { T_NUMBER = 1, T_INTEGER = 2, T_BOOLEAN = 4, T_STRING = 8 };

struct signal {
    uint32_t field;
    unsigned types;
    size_t n;
    uint16_t channel; /* in the file being written */
};

struct sample {
    int64_t t;
    uint32_t sig; /* index in sigs */
    struct fv_value v;
};

struct fv_clip_signals {
    struct signal *sigs;
    size_t nsigs, capsigs;
    struct sample *smp;
    size_t n, cap, dropped;
};

int fv_clip_signals_new(struct fv_clip_signals **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? FV_OK : FV_ENOMEM;
}

void fv_clip_signals_free(struct fv_clip_signals *s)
{
    if (s == NULL) return;
    for (size_t i = 0; i < s->n; i++)
        fv_value_clear(&s->smp[i].v);
    free(s->smp);
    free(s->sigs);
    free(s);
}

size_t fv_clip_signals_count(const struct fv_clip_signals *s)
{
    return s->nsigs;
}

size_t fv_clip_signals_samples(const struct fv_clip_signals *s)
{
    return s->n;
}

size_t fv_clip_signals_dropped(const struct fv_clip_signals *s)
{
    return s->dropped;
}

/* G2: the JSON type of a value, 0 for no value. */
static unsigned type_of(const struct fv_value *v)
{
    switch (v->kind) {
    case FV_VK_DOUBLE:
        return isfinite(v->u.d) ? T_NUMBER : 0; /* JSON has no NaN, inf */
    case FV_VK_INT:
    case FV_VK_ENUM:
    case FV_VK_DOORS:
    case FV_VK_TIRES:
        return T_INTEGER;
    case FV_VK_BOOL:
        return T_BOOLEAN;
    case FV_VK_STRING:
    case FV_VK_TIME:
        return T_STRING;
    default:
        return 0; /* none, invalid, other; location never gets here (G3) */
    }
}

/* The signal's slot (added when new), or NULL (no memory). */
static struct signal *slot(struct fv_clip_signals *s, uint32_t field)
{
    size_t lo = 0, hi = s->nsigs; /* sigs sorted by field */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->sigs[mid].field < field)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < s->nsigs && s->sigs[lo].field == field) return &s->sigs[lo];
    if (s->nsigs == s->capsigs) {
        size_t nc = s->capsigs ? s->capsigs * 2 : 16;
        struct signal *ns = realloc(s->sigs, nc * sizeof *ns);
        if (ns == NULL) return NULL;
        s->sigs = ns;
        s->capsigs = nc;
    }
    /* Samples name signals by index: those after the new one move up by one. */
    for (size_t i = 0; i < s->n; i++)
        if (s->smp[i].sig >= lo) s->smp[i].sig++;
    memmove(&s->sigs[lo + 1], &s->sigs[lo], (s->nsigs - lo) * sizeof *s->sigs);
    s->sigs[lo] = (struct signal){.field = field};
    s->nsigs++;
    return &s->sigs[lo];
}

int fv_clip_signals_add(struct fv_clip_signals *s, uint32_t field, int64_t t_ms,
                        const struct fv_value *v)
{
    if (fv_signal_place(field) != FV_PLACE_NONE || v->kind == FV_VK_LOCATION) return 0; /* G3 */
    unsigned type = type_of(v);
    if (type == 0) return 0;
    if (s->n == FV_CLIP_SIGNALS_MAX) { /* G5 */
        s->dropped++;
        return 0;
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 256;
        struct sample *ns = realloc(s->smp, nc * sizeof *ns);
        if (ns == NULL) return FV_ENOMEM;
        s->smp = ns;
        s->cap = nc;
    }
    struct signal *g = slot(s, field);
    if (g == NULL) return FV_ENOMEM;
    struct sample *x = &s->smp[s->n];
    if (fv_value_copy(&x->v, v) != FV_OK) return FV_ENOMEM;
    x->t = t_ms;
    x->sig = (uint32_t)(g - s->sigs);
    g->types |= type;
    g->n++;
    s->n++;
    return 1;
}

int fv_clip_signals_read(struct fv_clip_signals *s, struct fv_store *st, const char *pseudo,
                         const unsigned char dek[32], int64_t from, int64_t to, char *err,
                         size_t errlen)
{
    struct fv_store_cursor *c = NULL;
    int rc = fv_store_query(st, pseudo, dek, from, to, NULL, 0, 0, &c, err, errlen);
    if (rc == FV_ENOENT) return FV_OK; /* the subject never sent anything */
    if (rc) return rc;
    struct fv_store_chunk ch;
    while ((rc = fv_store_next(c, &ch, err, errlen)) == 1) {
        for (size_t j = 0; j < ch.ncols && rc == 1; j++)
            for (size_t i = 0; i < ch.n; i++) {
                int a = fv_clip_signals_add(s, ch.field[j], ch.t[i], &ch.col[j][i]);
                if (a < 0) {
                    fv_seterr(err, errlen, "out of memory");
                    rc = a;
                    break;
                }
            }
        if (rc != 1) break;
    }
    fv_store_cursor_free(c);
    return rc < 0 ? rc : FV_OK;
}

/* ---- writing ----------------------------------------------------------------------------- */

static int by_time(const void *a, const void *b)
{
    const struct sample *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->sig < y->sig ? -1 : x->sig > y->sig;
}

static json_t *json_of(const struct fv_value *v)
{
    char buf[16];
    switch (v->kind) {
    case FV_VK_DOUBLE:
        return json_real(v->u.d);
    case FV_VK_INT:
    case FV_VK_ENUM:
        return json_integer((json_int_t)v->u.i);
    case FV_VK_DOORS:
    case FV_VK_TIRES:
        return json_integer((json_int_t)v->u.bits);
    case FV_VK_BOOL:
        return json_boolean(v->u.i);
    case FV_VK_STRING:
        return json_string(v->u.s ? v->u.s : "");
    case FV_VK_TIME:
        snprintf(buf, sizeof buf, "%02d:%02d:%02d", (int)(v->u.time.h % 100),
                 (int)(v->u.time.m % 100), (int)(v->u.time.s % 100));
        return json_string(buf);
    default:
        return NULL;
    }
}

/* G1: the signal's schema and channel. */
static int add_channel(struct fv_mcap_writer *w, struct signal *g, char *err, size_t errlen)
{
    static const char *const type_names[] = {"number", "integer", "boolean", "string"};
    char name[80], schema_name[112], topic[112], field[16];
    fv_signal_label(g->field, name, sizeof name);
    snprintf(schema_name, sizeof schema_name, "fleetvault.signals.%s", name);
    snprintf(topic, sizeof topic, "%s%s", FV_CLIP_SIGNALS_TOPIC, name);
    snprintf(field, sizeof field, "%u", g->field);
    json_t *types = json_array();
    for (unsigned k = 0; types && k < 4; k++)
        if (g->types & (1u << k)) json_array_append_new(types, json_string(type_names[k]));
    json_t *schema =
        types ? json_pack("{s:s,s:s,s:{s:{s:o}},s:[s]}", "title", schema_name, "type", "object",
                          "properties", name, "type",
                          json_array_size(types) == 1 ? json_incref(json_array_get(types, 0))
                                                      : json_incref(types),
                          "required", name)
              : NULL;
    json_decref(types);
    char *text = schema ? json_dumps(schema, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(schema);
    if (text == NULL) {
        fv_seterr(err, errlen, "out of memory");
        return FV_ENOMEM;
    }
    uint16_t sid = 0;
    const char *keys[] = {"source", "signal", "field"}, *vals[] = {"fleetvault-store", name, field};
    int rc =
        fv_mcap_add_schema(w, schema_name, "jsonschema", text, strlen(text), &sid, err, errlen);
    free(text);
    if (rc == FV_OK)
        rc = fv_mcap_add_channel(w, sid, topic, "json", keys, vals, 3, &g->channel, err, errlen);
    return rc;
}

/* G2: the samples, in time order, as messages. */
static int add_messages(struct fv_clip_signals *s, struct fv_mcap_writer *w, char *err,
                        size_t errlen)
{
    qsort(s->smp, s->n, sizeof *s->smp, by_time);
    uint32_t *seq = calloc(s->nsigs ? s->nsigs : 1, sizeof *seq);
    struct fv_buf text = {0};
    int rc = seq ? FV_OK : FV_ENOMEM;
    for (size_t i = 0; rc == FV_OK && i < s->n; i++) {
        const struct sample *x = &s->smp[i];
        char name[80];
        fv_signal_label(s->sigs[x->sig].field, name, sizeof name);
        json_t *o = json_object();
        json_t *v = json_of(&x->v);
        fv_buf_reset(&text);
        int ok = o && v && json_object_set_new(o, name, v) == 0;
        if (ok) v = NULL;
        /* doubles as the API prints them: the fewest digits that read back (util/fmt.h) */
        if (ok) ok = fv_json_append(&text, o, 0) == FV_OK;
        json_decref(v);
        json_decref(o);
        if (!ok) {
            rc = FV_ENOMEM;
            break;
        }
        uint64_t ns = x->t > 0 ? (uint64_t)x->t * 1000000u : 0;
        rc = fv_mcap_add_message(w, s->sigs[x->sig].channel, seq[x->sig]++, ns, ns, text.data,
                                 text.len, err, errlen);
    }
    fv_buf_free(&text);
    if (rc == FV_ENOMEM) fv_seterr(err, errlen, "out of memory");
    free(seq);
    return rc;
}

int fv_clip_signals_write(struct fv_clip_signals *s, const char *in_path, const char *out_path,
                          char *err, size_t errlen)
{
    struct fv_mcap_file f = {.fd = open(in_path, O_RDONLY | O_CLOEXEC), .path = in_path};
    if (f.fd < 0) {
        fv_seterr(err, errlen, "%s: %s", in_path, strerror(errno));
        return FV_EIO;
    }
    struct fv_mcap_source src;
    struct fv_mcap_reader *r = NULL;
    struct fv_mcap_writer *w = NULL;
    int out = -1;
    int rc = fv_mcap_source_file(&src, &f, err, errlen);
    if (rc == FV_OK) rc = fv_mcap_reader_open(&src, &r, err, errlen);
    if (rc == FV_OK)
        rc =
            fv_os_open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600, &out, err, errlen);
    if (rc == FV_OK) rc = fv_mcap_writer_open_fd(out, out_path, NULL, &w, err, errlen);
    if (rc == FV_OK) rc = fv_mcap_copy(r, w, NULL, NULL, NULL, NULL, err, errlen);
    if (rc == FV_OK && fv_mcap_extras(r) > 0) { /* G4: the copy would not be whole */
        fv_seterr(err, errlen, "the clip has %llu attachment or metadata records",
                  (unsigned long long)fv_mcap_extras(r));
        rc = FV_ESTATE;
    }
    for (size_t i = 0; rc == FV_OK && i < s->nsigs; i++)
        rc = add_channel(w, &s->sigs[i], err, errlen);
    if (rc == FV_OK) rc = add_messages(s, w, err, errlen);
    if (rc == FV_OK) {
        rc = fv_mcap_writer_close(w, err, errlen);
        w = NULL;
    }
    fv_mcap_writer_free(w);
    fv_mcap_reader_free(r);
    close(f.fd);
    if (out >= 0) close(out);
    if (rc != FV_OK && out >= 0) fv_os_unlink(out_path, NULL, 0);
    return rc;
}
