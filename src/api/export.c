/* export.c - see export.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "api/export.h"
#include "data/clip_labels.h"
#include "api/query.h"
#include "crypto/keys.h"
#include "data/campaign.h"
#include "energy/vpp.h"
#include "privacy/guard.h"
#include "privacy/subjects.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/fmt.h"
#include "util/log.h"
#include "util/urlquery.h"
#include "wire/signals.h"

#define FILE_MAX     (8u << 20) /* telemetry files are split at this size */
#define MAX_PERIODS  64
#define MAX_SIGNALS  256
#define PROGRESS_LOG (64u << 20)

static const char README[] =
    "fleetvault export: everything held about one data subject\n"
    "=========================================================\n\n"
    "A vehicle's history is split into owner periods: each period is its own data subject\n"
    "(a new owner never sees the previous owner's data), with its own encryption key. This\n"
    "archive holds one period: the owner who asked for it (period N of the vehicle).\n\n"
    "subject.json\n"
    "  device, export time, and for the period: epoch, pseudonym (how fleetvault names the\n"
    "  subject internally and in its audit log), owner id, since/until (ms since\n"
    "  1970-01-01 UTC; null = open), erased (true: its data key was destroyed, nothing of\n"
    "  it can be read any more), and its consent history (purpose, given or withdrawn, at,\n"
    "  by). For a home-energy site (the current owner's): energy_programs, its program\n"
    "  enrolment, opt-outs and payments (its settlement row of every completed event, with\n"
    "  the baseline days and kWh they were computed from). Also\n"
    "  the purposes this installation processes data for, the data classes with\n"
    "  their signals and retention, and which roles may read which classes for which\n"
    "  purpose.\n\n"
    "period-N/telemetry-K.csv\n"
    "  The records the vehicle sent during period N (and nothing of other periods), oldest first, "
    "one row per record:\n"
    "  column t is the record's time (ms since 1970-01-01 UTC, the vehicle's clock), then\n"
    "  one column per signal (names from Tesla's fleet-telemetry Field enum; units as the\n"
    "  vehicle reports them). An empty cell: the record has no value for that signal;\n"
    "  'invalid': the vehicle reported it has none. Locations and other composite values\n"
    "  are JSON text. Large periods are split into several files, K = 1, 2, ...\n\n"
    "period-N/telemetry-K.jsonl\n"
    "  The same records as JSON lines: {\"t\": ms, \"Signal\": value, ...}.\n\n"
    "period-N/events.jsonl\n"
    "  Other messages of the period: alerts, errors, connectivity (connect/disconnect):\n"
    "  {\"t\": ms, \"topic\": ..., \"payload_base64\": the message as received (protobuf)}.\n\n"
    "access-log.jsonl\n"
    "  Every entry of fleetvault's tamper-evident audit log that names this subject: who read or "
    "changed what, when, for which purpose and ticket, and the\n"
    "  decision. Format: docs/audit.md of fleetvault.\n";

struct period {
    char name[FV_SUBJECT_NAME_MAX + 1];
    char pseudo[FV_PSEUDONYM_LEN + 1];
    int epoch, erased, current;
    int64_t since, until; /* [since, until): the records of this owner */
};

struct xctx {
    const struct fv_api_view *v;
    struct fv_guard *guard;
    struct fv_guard_ctx ctx;
    char device[80], root[128];
    char log_id[FV_PSEUDONYM_LEN + 5]; /* what logs name the device: "dev-" + its pseudonym */
    struct archive *a;
    struct fv_buf *out; /* where the archive's bytes go during one more() call */
    struct period p[MAX_PERIODS];
    size_t np, k; /* periods (one: the subject exported), the one being written */
    int want;     /* the epoch asked for (period=N), 0: the current one */
    int stage;    /* 0 start, 1 telemetry of period k, 2 access log, 3 close, 4 done */
    struct fv_store_cursor *cur;
    uint32_t fields[MAX_SIGNALS];
    size_t nfields;
    int part;
    struct fv_buf csv, jsonl, events;
    uint64_t rows, bytes, logged;
    uint64_t total_rows; /* counted before serving (quota) */
    int failed;
};

static la_ssize_t on_write(struct archive *a, void *arg, const void *buf, size_t n)
{
    (void)a;
    struct xctx *x = arg;
    if (x->out == NULL || fv_buf_append(x->out, buf, n) != FV_OK) return -1;
    x->bytes += n;
    return (la_ssize_t)n;
}

static int put_file(struct xctx *x, const char *name, const void *data, size_t len)
{
    struct archive_entry *e = archive_entry_new();
    if (e == NULL) return FV_ENOMEM;
    char path[300];
    snprintf(path, sizeof path, "%s/%s", x->root, name);
    archive_entry_set_pathname(e, path);
    archive_entry_set_size(e, (la_int64_t)len);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0600);
    archive_entry_set_mtime(e, time(NULL), 0);
    int rc = archive_write_header(x->a, e) == ARCHIVE_OK ? FV_OK : FV_EIO;
    if (rc == FV_OK && len && archive_write_data(x->a, data, len) != (la_ssize_t)len) rc = FV_EIO;
    archive_entry_free(e);
    if (rc) fv_error("export of %s: %s", x->log_id, archive_error_string(x->a));
    return rc;
}

/* Keeps the one period exported: epoch x->want, or the current one. */
static int collect_period(void *arg, const struct fv_subject_period *p)
{
    struct xctx *x = arg;
    if (x->want ? p->epoch != x->want : !p->current) return 0;
    struct period *q = &x->p[0];
    x->np = 1;
    snprintf(q->name, sizeof q->name, "%s", p->name);
    snprintf(q->pseudo, sizeof q->pseudo, "%s", p->pseudonym);
    q->epoch = p->epoch;
    q->erased = p->erased;
    q->current = p->current;
    q->since = p->since_ms;
    q->until = p->until_ms;
    return 0;
}

struct period_json {
    json_t *periods;
    int epoch; /* only this period: another owner's period is not this subject's data */
};

static int period_to_json(void *arg, const struct fv_subject_period *p)
{
    struct period_json *pj = arg;
    if (p->epoch != pj->epoch) return 0;
    json_t *o = json_pack("{s:i,s:s,s:s,s:b}", "epoch", p->epoch, "subject", p->name, "pseudonym",
                          p->pseudonym, "erased", p->erased);
    if (o == NULL) return FV_ENOMEM;
    json_object_set_new(o, "owner", p->owner[0] ? json_string(p->owner) : json_null());
    json_object_set_new(o, "since_ms",
                        p->since_ms == FV_SUBJECT_ORIGIN ? json_null()
                                                         : json_integer((json_int_t)p->since_ms));
    json_object_set_new(o, "until_ms",
                        p->until_ms == FV_SUBJECT_FOREVER ? json_null()
                                                          : json_integer((json_int_t)p->until_ms));
    json_object_set_new(o, "consent", json_array());
    json_array_append_new(pj->periods, o);
    return 0;
}

static int consent_to_json(void *arg, const struct fv_consent_change *c)
{
    json_t *arr = arg;
    json_array_append_new(arr, json_pack("{s:s,s:s,s:I,s:s}", "purpose", c->purpose, "change",
                                         c->granted ? "given" : "withdrawn", "at_ms",
                                         (json_int_t)c->at_ms, "by", c->by));
    return 0;
}

static int label_to_json(void *arg, const char *clip, const char *labeler, const char *json,
                         int64_t labeled_ms)
{
    json_t *o = json_loads(json, 0, NULL);
    if (o == NULL) o = json_string(json);
    json_array_append_new(arg, json_pack("{s:s,s:s,s:I,s:o}", "clip", clip, "labeler", labeler,
                                         "labeled_ms", (json_int_t)labeled_ms, "labels", o));
    return 0;
}

static json_t *subject_json(struct xctx *x)
{
    const struct fv_api_view *v = x->v;
    json_t *root =
        json_pack("{s:s,s:I}", "device", x->device, "exported_ms", (json_int_t)fv_now_ms());
    struct period_json pj = {json_array(), x->p[0].epoch};
    char err[256];
    if (root == NULL || pj.periods == NULL) goto fail;
    if (fv_subject_periods(v->keys, x->device, period_to_json, &pj, err, sizeof err) != FV_OK)
        goto fail;
    for (size_t i = 0; i < json_array_size(pj.periods); i++) {
        json_t *o = json_array_get(pj.periods, i);
        const char *name = json_string_value(json_object_get(o, "subject"));
        fv_consent_history(v->keys, name, consent_to_json, json_object_get(o, "consent"), err,
                           sizeof err);
        /* the labels given to the exported period's clips (data/clip_labels.h B2) */
        json_t *labels = json_array();
        if (labels && json_integer_value(json_object_get(o, "epoch")) == x->p[0].epoch &&
            fv_clip_labels_of_subject(v->keys, x->p[0].pseudo, label_to_json, labels) == FV_OK)
            json_object_set_new(o, "clip_labels", labels);
        else
            json_decref(labels);
    }
    json_object_set_new(root, "periods", pj.periods);
    pj.periods = NULL;
    /* A site's enrolment, opt-outs and payments: the registry keeps them per site, not per
     * owner period, and payments are read with the current owner's key, so they are the
     * current owner's data only (another owner's are not this subject's, Art. 15(4)). */
    json_t *vpp = v->vpp && x->p[0].current ? fv_vpp_site_json(v->vpp, x->device) : NULL;
    json_t *pay = v->vpp && x->p[0].current ? fv_api_vpp_site_payments(v, x->device) : NULL;
    if (vpp == NULL && pay) vpp = json_pack("{s:n,s:[]}", "program", "opt_outs");
    if (vpp)
        json_object_set_new(vpp, "payments", pay ? pay : json_null());
    else
        json_decref(pay);
    if (vpp) json_object_set_new(root, "energy_programs", vpp); /* enrolment, opt-outs, pay */
    /* The campaigns that targeted the vehicle: kept per device like the VPP's registry, so
     * the current owner's data only. */
    json_t *camps =
        v->campaigns && x->p[0].current ? fv_campaign_device_json(v->campaigns, x->device) : NULL;
    if (camps) json_object_set_new(root, "data_campaigns", camps);
    json_t *purposes = json_array(), *classes = json_array();
    const struct fv_policy *pol = v->guard->policy;
    for (size_t i = 0; purposes && i < fv_policy_npurposes(pol); i++)
        json_array_append_new(purposes, json_string(fv_policy_purpose_name(pol, i)));
    const struct fv_store_config *sc = v->store_cfg;
    for (uint32_t c = 0; classes && sc && c < sc->nclasses; c++) {
        json_t *sigs = json_array();
        for (uint32_t f = 0; sigs && f < FV_STORE_FIELD_TABLE; f++)
            if (sc->class_of[f] == c && c != 0 && fv_signal_name(f))
                json_array_append_new(sigs, json_string(fv_signal_name(f)));
        json_t *cl = json_pack("{s:s,s:o}", "class", sc->class_name[c], "signals", sigs);
        json_object_set_new(cl, "retention_days",
                            sc->retention_ms[c]
                                ? json_real((double)sc->retention_ms[c] / 86400000.0)
                                : json_null());
        if (c == 0)
            json_object_set_new(cl, "note", json_string("every signal not in another class"));
        if (c == sc->events_class)
            json_object_set_new(cl, "note", json_string("alerts, errors, connectivity"));
        json_array_append_new(classes, cl);
    }
    json_object_set_new(root, "purposes", purposes);
    json_object_set_new(root, "data_classes", classes);
    json_object_set_new(root, "policy",
                        json_string("docs/policy.example.json of fleetvault, or "
                                    "the installation's policy file"));
    return root;
fail:
    json_decref(pj.periods);
    json_decref(root);
    return NULL;
}

/* Writes the buffered telemetry of the current period as part files. */
static int flush_parts(struct xctx *x, int last)
{
    if (x->csv.len == 0 && !last) return FV_OK;
    char name[96];
    int rc = FV_OK;
    if (x->csv.len) {
        x->part++;
        snprintf(name, sizeof name, "period-%d/telemetry-%d.csv", x->p[x->k].epoch, x->part);
        rc = put_file(x, name, x->csv.data, x->csv.len);
        snprintf(name, sizeof name, "period-%d/telemetry-%d.jsonl", x->p[x->k].epoch, x->part);
        if (rc == FV_OK) rc = put_file(x, name, x->jsonl.data, x->jsonl.len);
    }
    if (rc == FV_OK && last) {
        snprintf(name, sizeof name, "period-%d/events.jsonl", x->p[x->k].epoch);
        rc = put_file(x, name, x->events.data, x->events.len);
        fv_buf_reset(&x->events);
    }
    fv_buf_reset(&x->csv);
    fv_buf_reset(&x->jsonl);
    return rc;
}

static int csv_header(struct xctx *x)
{
    int rc = fv_buf_append(&x->csv, "t", 1);
    for (size_t j = 0; rc == FV_OK && j < x->nfields; j++) {
        char nm[32];
        fv_signal_label(x->fields[j], nm, sizeof nm);
        rc = fv_buf_append(&x->csv, ",", 1);
        if (rc == FV_OK) rc = fv_buf_append(&x->csv, nm, strlen(nm));
    }
    return rc ? rc : fv_buf_append(&x->csv, "\n", 1);
}

/* Opens period k: the signals it has (first pass), then the cursor for the rows. */
static int open_period(struct xctx *x)
{
    const struct period *p = &x->p[x->k];
    const unsigned char *dek;
    char pseudo[FV_PSEUDONYM_LEN + 1], err[256];
    x->part = 0;
    x->nfields = 0;
    if (fv_keystore_dek(x->v->keys, p->name, 0, &dek, pseudo) != FV_OK) return FV_ENOENT;
    /* The owner's period only: records of the device's subject outside it belong to no
     * owner (privacy/subjects.h). */
    int64_t to = p->until == FV_SUBJECT_FOREVER ? INT64_MAX : p->until - 1;
    struct fv_store_cursor *c;
    int rc =
        fv_store_query(x->v->store, pseudo, dek, p->since, to, NULL, 0, 0, &c, err, sizeof err);
    struct fv_store_chunk ch;
    x->total_rows = 0;
    while (rc == FV_OK && (rc = fv_store_next(c, &ch, err, sizeof err)) == 1) {
        rc = FV_OK;
        x->total_rows += ch.n;
        for (size_t j = 0; j < ch.ncols; j++) {
            size_t at = 0;
            while (at < x->nfields && x->fields[at] < ch.field[j])
                at++;
            if ((at < x->nfields && x->fields[at] == ch.field[j]) || x->nfields == MAX_SIGNALS)
                continue;
            memmove(x->fields + at + 1, x->fields + at, (x->nfields - at) * sizeof *x->fields);
            x->fields[at] = ch.field[j];
            x->nfields++;
        }
    }
    if (rc == 0 || rc == FV_OK) rc = FV_OK;
    if (rc == FV_OK) {
        fv_store_cursor_free(c);
        rc = fv_store_query(x->v->store, pseudo, dek, p->since, to, x->nfields ? x->fields : NULL,
                            x->nfields, 1, &x->cur, err, sizeof err);
    } else {
        fv_error("export of %s: %s", x->log_id, err);
        fv_store_cursor_free(c);
    }
    if (rc == FV_OK) rc = csv_header(x);
    return rc;
}

static int put_events(struct xctx *x, const struct fv_store_chunk *ch)
{
    int rc = FV_OK;
    for (size_t i = 0; rc == FV_OK && i < ch->nev; i++) {
        const struct fv_block_event *e = &ch->ev[i];
        size_t b64 = 4 * ((e->len + 2) / 3) + 1;
        char *enc = malloc(b64);
        if (enc == NULL) return FV_ENOMEM;
        EVP_EncodeBlock((unsigned char *)enc, e->payload, (int)e->len);
        json_t *o = json_pack("{s:I,s:s%,s:s}", "t", (json_int_t)e->t, "topic", e->topic,
                              (size_t)e->topic_len, "payload_base64", enc);
        char *line = o ? json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_decref(o);
        free(enc);
        if (line == NULL) return FV_ENOMEM;
        rc = fv_buf_append(&x->events, line, strlen(line));
        if (rc == FV_OK) rc = fv_buf_append(&x->events, "\n", 1);
        free(line);
    }
    return rc;
}

/* The rows of one chunk, as CSV and JSON lines (query.c's renderings). */
static int put_rows(struct xctx *x, const struct fv_store_chunk *ch)
{
    int rc = FV_OK;
    for (size_t i = 0; rc == FV_OK && i < ch->n; i++) {
        char t[32];
        int n = snprintf(t, sizeof t, "%lld", (long long)ch->t[i]);
        rc = fv_buf_append(&x->csv, t, (size_t)n);
        if (rc == FV_OK) rc = fv_buf_append(&x->jsonl, "{\"t\":", 5);
        if (rc == FV_OK) rc = fv_buf_append(&x->jsonl, t, (size_t)n);
        for (size_t j = 0; rc == FV_OK && j < ch->ncols; j++) {
            const struct fv_value *val = &ch->col[j][i];
            rc = fv_buf_append(&x->csv, ",", 1);
            if (rc == FV_OK) rc = fv_put_value(&x->csv, NULL, 0, 0, val, 1);
            if (rc || val->kind == FV_VK_NONE) continue;
            char nm[32];
            fv_signal_label(ch->field[j], nm, sizeof nm);
            rc = fv_buf_append(&x->jsonl, ",\"", 2);
            if (rc == FV_OK) rc = fv_buf_append(&x->jsonl, nm, strlen(nm));
            if (rc == FV_OK) rc = fv_buf_append(&x->jsonl, "\":", 2);
            if (rc == FV_OK) rc = fv_put_value(&x->jsonl, NULL, 0, 0, val, 0);
        }
        if (rc == FV_OK) rc = fv_buf_append(&x->csv, "\n", 1);
        if (rc == FV_OK) rc = fv_buf_append(&x->jsonl, "}\n", 2);
        x->rows++;
    }
    return rc;
}

struct audit_acc {
    struct fv_buf *b;
};

static int audit_line(void *arg, const char *line, size_t len)
{
    struct audit_acc *acc = arg;
    int rc = fv_buf_append(acc->b, line, len);
    return rc ? rc : fv_buf_append(acc->b, "\n", 1);
}

/* One step: appends the next piece of the archive to b. 1: more to come, 0: done. */
static int x_more(void *arg, struct fv_buf *b)
{
    struct xctx *x = arg;
    x->out = b;
    int rc = FV_OK;
    char err[256];
    if (x->guard && x->stage < 4 &&
        fv_guard_quota_more(x->guard, &x->ctx, x->rows, x->bytes, 1, err, sizeof err) != FV_OK) {
        /* G5: what this export served so far reached the daily quota: stop here. */
        fv_warn("export: stopped at the daily quota of %s (%s)", x->ctx.principal, err);
        x->out = NULL;
        x->failed = 1;
        return FV_ELIMIT;
    }
    while (rc == FV_OK && b->len < FILE_MAX && x->stage < 4) {
        if (x->stage == 0) {
            json_t *sj = subject_json(x);
            struct fv_buf s = {0};
            rc = fv_json_append(&s, sj, 2); /* numbers as the API prints them (util/fmt.h) */
            json_decref(sj);
            if (rc == FV_OK) rc = put_file(x, "README.txt", README, strlen(README));
            if (rc == FV_OK) rc = put_file(x, "subject.json", s.data, s.len);
            fv_buf_free(&s);
            x->stage = 1; /* the period was opened before the answer began */
            x->k = 0;
            continue;
        }
        if (x->stage == 1) {
            if (x->k >= x->np) {
                x->stage = 2;
                continue;
            }
            if (x->p[x->k].erased) {
                x->k++;
                continue;
            }
            if (x->cur == NULL) {
                rc = open_period(x);
                if (rc == FV_ENOENT) { /* erased meanwhile */
                    rc = FV_OK;
                    x->k++;
                }
                continue;
            }
            struct fv_store_chunk ch;
            int n = fv_store_next(x->cur, &ch, err, sizeof err);
            if (n < 0) {
                fv_error("export of %s: %s", x->log_id, err);
                rc = n;
                break;
            }
            if (n == 1) {
                rc = put_rows(x, &ch);
                if (rc == FV_OK) rc = put_events(x, &ch);
                if (rc == FV_OK && x->csv.len >= FILE_MAX) rc = flush_parts(x, 0);
                if (rc == FV_OK && x->csv.len == 0) rc = csv_header(x);
            } else {
                rc = flush_parts(x, 1);
                fv_store_cursor_free(x->cur);
                x->cur = NULL;
                x->k++;
            }
            continue;
        }
        if (x->stage == 2) {
            struct fv_buf log = {0};
            struct audit_acc acc = {&log};
            char dir[600];
            snprintf(dir, sizeof dir, "%s", x->v->audit_dir ? x->v->audit_dir : "");
            for (size_t k = 0; rc == FV_OK && dir[0] && k < x->np; k++) {
                struct fv_audit_filter f = {.subject = x->p[k].pseudo};
                rc = fv_audit_query(dir, &f, audit_line, &acc, err, sizeof err);
            }
            if (rc == FV_OK) rc = put_file(x, "access-log.jsonl", log.data, log.len);
            fv_buf_free(&log);
            x->stage = 3;
            continue;
        }
        if (x->stage == 3) {
            rc = archive_write_close(x->a) == ARCHIVE_OK ? FV_OK : FV_EIO;
            x->stage = 4;
        }
    }
    if (x->bytes - x->logged >= PROGRESS_LOG) {
        x->logged = x->bytes;
        fv_info("export of %s: %llu MB, %llu rows so far", x->log_id,
                (unsigned long long)(x->bytes >> 20), (unsigned long long)x->rows);
    }
    x->out = NULL;
    if (rc) {
        x->failed = 1;
        return rc < 0 ? rc : FV_EIO;
    }
    return x->stage == 4 ? 0 : 1;
}

static void x_free(void *arg)
{
    struct xctx *x = arg;
    if (x == NULL) return;
    if (x->guard) fv_guard_done(x->guard, &x->ctx, x->rows, x->bytes);
    if (!x->failed && x->stage == 4)
        fv_info("export of %s: done, %llu bytes, %llu rows", x->log_id,
                (unsigned long long)x->bytes, (unsigned long long)x->rows);
    fv_store_cursor_free(x->cur);
    if (x->a) archive_write_free(x->a);
    fv_buf_free(&x->csv);
    fv_buf_free(&x->jsonl);
    fv_buf_free(&x->events);
    free(x);
}

static void x_error(struct fv_http_response *out, int status, const char *msg)
{
    out->status = status;
    out->content_type = "application/json";
    json_t *j = json_pack("{s:s}", "error", msg);
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    fv_buf_reset(&out->body);
    if (t) {
        fv_buf_append(&out->body, t, strlen(t));
        fv_buf_append(&out->body, "\n", 1);
    }
    free(t);
    json_decref(j);
}

void fv_api_export(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *device,
                   struct fv_http_response *out)
{
    struct xctx *x = calloc(1, sizeof *x);
    char err[256], per[16], msg[300];
    if (x == NULL) {
        x_error(out, 500, "out of memory");
        return;
    }
    x->v = v;
    snprintf(x->device, sizeof x->device, "%s", device);
    char ps[FV_PSEUDONYM_LEN + 1];
    if (fv_keystore_pseudonym(v->keys, device, ps) != FV_OK) snprintf(ps, sizeof ps, "?");
    snprintf(x->log_id, sizeof x->log_id, "dev-%s", ps); /* never the VIN in a log line */
    snprintf(x->root, sizeof x->root, "fleetvault-export-%s", device);
    /* One data subject: the owner period asked for (period=N), else the current owner's. */
    if (fv_query_param(v->query, "period", per, sizeof per)) {
        char *e;
        long n = strtol(per, &e, 10);
        if (*e || e == per || n < 1 || n > 1000000) {
            x_error(out, 400, "bad period: an owner period's number (1, 2, ...)");
            goto fail;
        }
        x->want = (int)n;
    }
    if (fv_subject_periods(v->keys, device, collect_period, x, err, sizeof err) != FV_OK) {
        fv_error("export of a device: %s", err);
        x_error(out, 500, "the subject registry cannot be read");
        goto fail;
    }
    if (x->np == 0 && x->want <= 1) { /* no owner recorded: the one implicit period */
        snprintf(x->p[0].name, sizeof x->p[0].name, "%s", device);
        fv_keystore_pseudonym(v->keys, device, x->p[0].pseudo);
        x->p[0].epoch = 1;
        x->p[0].current = 1;
        x->p[0].since = FV_SUBJECT_ORIGIN;
        x->p[0].until = FV_SUBJECT_FOREVER;
        x->np = 1;
    }
    if (x->np == 0) {
        snprintf(msg, sizeof msg, "device '%.64s' has no owner period %d", device, x->want);
        x_error(out, 404, msg);
        goto fail;
    }
    /* G6: the audit entries name the period exported, not the current one */
    snprintf(ctx->subject, sizeof ctx->subject, "%.64s#%d", device, x->p[0].epoch);
    int rc = x->p[0].erased ? FV_ENOENT : open_period(x); /* also counts its rows */
    if (rc) {
        x_error(out, rc == FV_ENOENT ? 410 : 500,
                rc == FV_ENOENT ? "this owner period was erased" : "reading the store failed");
        goto fail;
    }
    /* G5: the export's rows against the daily quota, before anything is sent. */
    if (v->guard &&
        (rc = fv_guard_quota_more(v->guard, ctx, x->total_rows, 0, 1, msg, sizeof msg)) != FV_OK) {
        x_error(out, rc == FV_EIO ? 503 : 403, rc == FV_EIO ? "the audit log failed" : msg);
        goto fail;
    }
    x->a = archive_write_new();
    if (x->a == NULL || archive_write_set_format_pax_restricted(x->a) != ARCHIVE_OK ||
        archive_write_open(x->a, x, NULL, on_write, NULL) != ARCHIVE_OK) {
        x_error(out, 500, "the archive cannot be made");
        goto fail;
    }
    x->guard = v->guard;
    x->ctx = *ctx;
    out->status = 200;
    out->content_type = "application/x-tar";
    out->more = x_more;
    out->free_ctx = x_free;
    out->ctx = x;
    return;
fail:
    x_free(x);
}
