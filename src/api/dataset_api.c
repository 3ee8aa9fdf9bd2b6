/*
 * dataset_api.c - training datasets over HTTP (api.h; data/dataset.h builds them):
 *
 *   GET /api/v1/datasets                          every dataset and version: samples, shards,
 *                                                 bytes, created_ms, withdrawn subjects
 *   GET /api/v1/datasets/NAME/vN                  the version's manifest (JSON)
 *   GET /api/v1/datasets/NAME/vN/shards/FILE      one shard, whole or a byte range (Range:
 *                                                 api/filesend.h F1-F3), for training jobs
 *   POST /api/v1/datasets                         a build: {name, query, split, balance,
 *                                                 per_tag} -> 202 {build}; run on the build
 *                                                 worker (data/ds_builds.h), never here
 *   POST /api/v1/datasets/NAME/rebuild            a build with the newest version's query,
 *                                                 split, balance and per_tag -> 202 {build}
 *   GET /api/v1/datasets/builds/ID                a build's state, progress and result
 *
 * A build reads the subjects' clips for purpose model_training: it is decided by the guard
 * as such a read (the policy says which roles may: ml-pipeline and whoever else it lets
 * read for model_training) and audited with the dataset's name, before it is queued.
 *
 * Decided by the guard like any read of personal data (the samples are the subjects' clips
 * and signals): purpose model_training only (any other is refused, whatever the role), the
 * subjects touched counted from the manifest (the version's for the manifest, the shard's
 * for a shard), audited with the dataset, version, shard and range. A version holding a
 * subject who withdrew since it was built (NAME/vN.withdrawn, dataset.h D7) is refused with
 * 410 and the versions to use instead: training goes on from a rebuild, never from data a
 * subject took back.
 *
 * Threading: the API thread; a shard streams from disk as the socket takes it.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "api/api.h"
#include "api/filesend.h"
#include "util/urlquery.h"
#include "crypto/keys.h"
#include "data/dataset.h"
#include "data/ds_builds.h"
#include "data/ds_clips.h"
#include "privacy/guard.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define FV_DATASET_PURPOSE "model_training"
#define ACTION_LIST        "dataset.list"
#define ACTION_MANIFEST    "dataset.manifest"
#define ACTION_SHARD       "dataset.shard"
#define ACTION_BUILD       "dataset.build"
#define ACTION_BUILD_STATE "dataset.build_status"

static void error(struct fv_http_response *out, int status, const char *msg)
{
    fv_api_respond_json(out, status, json_pack("{s:s}", "error", msg));
}

/* "vN" with N >= 1 and nothing after: N, else 0. */
static int version_of(const char *s)
{
    if (s[0] != 'v' || s[1] < '1' || s[1] > '9') return 0;
    char *end;
    long v = strtol(s + 1, &end, 10);
    return *end == '\0' && v > 0 && v < 1000000000 ? (int)v : 0;
}

static json_t *load_manifest(const char *root, const char *name, int ver)
{
    char p[1400];
    snprintf(p, sizeof p, "%s/%s/v%d/manifest.json", root, name, ver);
    json_error_t je;
    return json_load_file(p, 0, &je);
}

/* Subjects withdrawn since the version was built (D7), 0 when none. */
static size_t withdrawn(const char *root, const char *name, int ver)
{
    char p[1400];
    snprintf(p, sizeof p, "%s/%s/v%d.withdrawn", root, name, ver);
    json_error_t je;
    json_t *w = json_load_file(p, 0, &je);
    size_t n = json_array_size(json_object_get(w, "withdrawn"));
    json_decref(w);
    return n;
}

/* Distinct subjects among the manifest's samples (those in shard when it is not NULL). */
static size_t subjects_in(const json_t *m, const char *shard)
{
    json_t *seen = json_object();
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(m, "samples"), i, s)
    {
        const char *sh = json_string_value(json_object_get(s, "shard"));
        const char *sub = json_string_value(json_object_get(s, "subject"));
        if (sub && (shard == NULL || (sh && strcmp(sh, shard) == 0)))
            json_object_set_new(seen, sub, json_true());
    }
    size_t n = json_object_size(seen);
    json_decref(seen);
    return n;
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* The versions of dataset name, ascending (at most max). */
static size_t versions(const char *root, const char *name, int *out, size_t max)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", root, name);
    DIR *d = opendir(p);
    if (d == NULL) return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        int v = version_of(e->d_name);
        if (v) out[n++] = v;
    }
    closedir(d);
    qsort(out, n, sizeof *out, cmp_int);
    return n;
}

static json_t *list_all(const char *root)
{
    json_t *arr = json_array();
    DIR *d = opendir(root);
    if (d == NULL) return arr;
    struct dirent *e;
    char why[128];
    while ((e = readdir(d)) != NULL) {
        if (fv_ds_check_name(e->d_name, why, sizeof why) != FV_OK) continue;
        int vs[256];
        size_t nv = versions(root, e->d_name, vs, 256);
        if (nv == 0) continue;
        json_t *jv = json_array();
        for (size_t i = 0; i < nv; i++) {
            json_t *m = load_manifest(root, e->d_name, vs[i]);
            if (m == NULL) continue;
            json_t *counts = json_object_get(m, "counts");
            json_int_t bytes = 0;
            size_t k;
            json_t *sh;
            json_array_foreach(json_object_get(m, "shards"), k, sh) bytes +=
                json_integer_value(json_object_get(sh, "bytes"));
            json_array_append_new(
                jv,
                json_pack("{s:i, s:O, s:O, s:I, s:I, s:O, s:I}", "version", vs[i], "created_ms",
                          json_object_get(m, "created_ms"), "query", json_object_get(m, "query"),
                          "samples", json_integer_value(json_object_get(counts, "samples")),
                          "shards", (json_int_t)json_array_size(json_object_get(m, "shards")),
                          "per_split", json_object_get(counts, "per_split"), "bytes", bytes));
            json_t *last = json_array_get(jv, json_array_size(jv) - 1);
            size_t w = withdrawn(root, e->d_name, vs[i]);
            if (last) json_object_set_new(last, "withdrawn_subjects", json_integer((json_int_t)w));
            json_decref(m);
        }
        json_array_append_new(arr, json_pack("{s:s, s:o}", "name", e->d_name, "versions", jv));
    }
    closedir(d);
    return arr;
}

/* 410 for a version with withdrawn subjects: names the versions without any. */
static void gone(const char *root, const char *name, int ver, struct fv_http_response *out)
{
    int vs[256];
    size_t nv = versions(root, name, vs, 256);
    json_t *ok = json_array();
    for (size_t i = 0; i < nv; i++)
        if (vs[i] > ver && withdrawn(root, name, vs[i]) == 0)
            json_array_append_new(ok, json_integer(vs[i]));
    fv_api_respond_json(
        out, 410,
        json_pack("{s:s, s:o}", "error",
                  "a subject in this version withdrew consent since it was built: use a newer "
                  "version, or rebuild (fleetvault dataset rebuild)",
                  "versions_without_withdrawals", ok));
}

/* The classes a dataset holds: signals (default) and coarse places. */
static uint32_t dataset_classes(const struct fv_api_view *v)
{
    uint32_t classes = 0;
    static const char *const cls[] = {"default", "location"};
    for (size_t i = 0; i < 2; i++) {
        int id = fv_policy_class_id(v->guard->policy, cls[i]);
        if (id >= 0) classes |= 1u << id;
    }
    return classes;
}

/* Decides (purpose model_training only) and audits an action naming what; FV_OK or
 * answered. */
static int decide(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *action,
                  const char *what, size_t nsub, struct fv_http_response *out)
{
    char purpose[32] = "", why[400];
    fv_query_param(v->query, "purpose", purpose, sizeof purpose);
    if (purpose[0] && strcmp(purpose, FV_DATASET_PURPOSE) != 0)
        snprintf(ctx->refuse, sizeof ctx->refuse, "datasets are read for purpose %s only",
                 FV_DATASET_PURPOSE);
    const char *signals[1] = {what};
    int rc = fv_guard_read(v->guard, ctx, v->query, action, dataset_classes(v), NULL,
                           nsub ? nsub : 1, 0, signals, 1, INT64_MIN, INT64_MAX, why, sizeof why);
    if (rc) error(out, rc == FV_EIO ? 503 : 403, why);
    return rc;
}

static int newest_version(const char *root, const char *name);

/* The request of a build from a POST body, or (rebuild) from the newest manifest of name. */
static int build_request(const struct fv_api_view *v, const char *rebuild,
                         struct fv_ds_build_req *r, char *why, size_t n)
{
    memset(r, 0, sizeof *r);
    json_t *src = NULL;
    const char *name = rebuild;
    if (rebuild) {
        int ver = newest_version(v->datasets_dir, rebuild);
        src = ver ? load_manifest(v->datasets_dir, rebuild, ver) : NULL;
        if (src == NULL) {
            snprintf(why, n, "no version of dataset '%s' to rebuild", rebuild);
            return FV_ENOENT;
        }
        /* the split spec back from the manifest's list */
        size_t i, k = 0;
        json_t *sp;
        json_array_foreach(json_object_get(src, "splits"), i, sp)
        {
            int w = snprintf(r->split + k, sizeof r->split - k, "%s%s=%.17g", i ? "," : "",
                             json_string_value(json_object_get(sp, "name")) ?: "",
                             json_number_value(json_object_get(sp, "fraction")));
            if (w < 0 || (size_t)w >= sizeof r->split - k) break;
            k += (size_t)w;
        }
        r->balance = json_is_true(json_object_get(src, "balanced"));
    } else {
        json_error_t je;
        src = v->body ? json_loadb(v->body, v->body_len, 0, &je) : NULL;
        if (!json_is_object(src)) {
            json_decref(src);
            snprintf(why, n,
                     "the body must be a JSON object {name, query, split, balance, "
                     "per_tag}");
            return FV_EINVAL;
        }
        name = json_string_value(json_object_get(src, "name"));
        const char *split = json_string_value(json_object_get(src, "split"));
        snprintf(r->split, sizeof r->split, "%s", split ? split : "train=0.8,val=0.1,test=0.1");
        json_t *b = json_object_get(src, "balance");
        if (b && !json_is_boolean(b)) {
            json_decref(src);
            snprintf(why, n, "'balance' must be true or false");
            return FV_EINVAL;
        }
        r->balance = json_is_true(b);
    }
    json_t *q = json_object_get(src, "query"), *pt = json_object_get(src, "per_tag");
    int rc = FV_OK;
    if (name == NULL || strlen(name) >= sizeof r->name) {
        snprintf(why, n, "'name' is missing or too long");
        rc = FV_EINVAL;
    } else if (q && (!json_is_string(q) || strlen(json_string_value(q)) >= sizeof r->query)) {
        snprintf(why, n, "'query' must be a string under %zu bytes", sizeof r->query);
        rc = FV_EINVAL;
    } else if (pt && (!json_is_integer(pt) || json_integer_value(pt) < 0)) {
        snprintf(why, n, "'per_tag' must be a non-negative integer");
        rc = FV_EINVAL;
    } else {
        snprintf(r->name, sizeof r->name, "%s", name);
        snprintf(r->query, sizeof r->query, "%s", q ? json_string_value(q) : "");
        r->per_tag = pt ? (size_t)json_integer_value(pt) : 0;
    }
    json_decref(src);
    return rc;
}

static void builds(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                   const char *sub, struct fv_http_response *out)
{
    char why[400], what[200];
    if (v->ds_builds == NULL) {
        error(out, 404, "dataset builds are not set up on this server");
        return;
    }
    if (strncmp(sub, "/builds/", 8) == 0) {
        if (strcmp(method, "GET") != 0) {
            error(out, 405, "GET /api/v1/datasets/builds/ID");
            return;
        }
        snprintf(what, sizeof what, "%s %.40s", ACTION_BUILD_STATE, sub + 8);
        if (decide(v, ctx, ACTION_BUILD_STATE, what, 1, out)) return;
        json_t *j = fv_ds_builds_get(v->ds_builds, sub + 8);
        if (j)
            fv_api_respond_json(out, 200, j);
        else
            error(out, 404, "no such build");
    } else {
        char name[FV_DS_NAME_MAX] = "";
        const char *rb = NULL;
        if (*sub) { /* "/NAME/rebuild" */
            size_t nl = strlen(sub + 1) - strlen("/rebuild");
            if (nl == 0 || nl >= sizeof name) {
                error(out, 404, "no such endpoint: POST /api/v1/datasets/NAME/rebuild");
                return;
            }
            memcpy(name, sub + 1, nl);
            rb = name;
        }
        struct fv_ds_build_req r;
        int rc = build_request(v, rb, &r, why, sizeof why);
        snprintf(what, sizeof what, "%s %s", ACTION_BUILD, rc == FV_OK ? r.name : "(bad request)");
        if (decide(v, ctx, ACTION_BUILD, what, 1, out)) return;
        char id[17];
        if (rc == FV_OK) rc = fv_ds_builds_submit(v->ds_builds, &r, id, why, sizeof why);
        if (rc)
            error(out, rc == FV_ENOENT ? 404 : rc == FV_ELIMIT ? 503 : 400, why);
        else {
            char st[64];
            snprintf(st, sizeof st, "/api/v1/datasets/builds/%s", id);
            fv_api_respond_json(
                out, 202, json_pack("{s:s,s:s,s:s}", "build", id, "name", r.name, "status", st));
        }
    }
    fv_guard_done(v->guard, ctx, out->status < 300 ? 1 : 0, out->body.len);
    fv_guard_ctx_clear(ctx);
}

static int newest_version(const char *root, const char *name)
{
    int vs[256];
    size_t nv = versions(root, name, vs, 256);
    return nv ? vs[nv - 1] : 0;
}

void fv_api_datasets(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *method,
                     const char *sub, struct fv_http_response *out)
{
    char why[400];
    const char *root = v->datasets_dir;
    if (root == NULL) {
        error(out, 404, "datasets are not set up on this server");
        return;
    }
    size_t sl = strlen(sub);
    if (strcmp(method, "POST") == 0 || strncmp(sub, "/builds/", 8) == 0) {
        if (strcmp(method, "POST") == 0 && *sub &&
            (sl <= 8 || strcmp(sub + sl - 8, "/rebuild") != 0)) {
            error(out, 405, "POST /api/v1/datasets or /api/v1/datasets/NAME/rebuild");
            return;
        }
        builds(v, ctx, method, sub, out);
        return;
    }
    if (strcmp(method, "GET") != 0) {
        error(out, 405, "GET or POST");
        return;
    }
    /* sub: "" | "/NAME/vN" | "/NAME/vN/shards/FILE" */
    char name[FV_DS_NAME_MAX] = "", ver_s[16] = "", file[160] = "";
    enum { LIST, MANIFEST, SHARD } kind = LIST;
    if (*sub) {
        const char *p = sub + 1, *slash = strchr(p, '/');
        size_t nl = slash ? (size_t)(slash - p) : strlen(p);
        if (slash == NULL || nl == 0 || nl >= sizeof name) {
            error(out, 404, "no such endpoint: /api/v1/datasets/NAME/vN[/shards/FILE]");
            return;
        }
        memcpy(name, p, nl);
        p = slash + 1;
        slash = strchr(p, '/');
        nl = slash ? (size_t)(slash - p) : strlen(p);
        if (nl == 0 || nl >= sizeof ver_s) {
            error(out, 404, "no such version");
            return;
        }
        memcpy(ver_s, p, nl);
        kind = MANIFEST;
        if (slash) {
            if (strncmp(slash, "/shards/", 8) != 0 || slash[8] == '\0' ||
                strlen(slash + 8) >= sizeof file || strchr(slash + 8, '/')) {
                error(out, 404, "no such endpoint: /api/v1/datasets/NAME/vN/shards/FILE");
                return;
            }
            snprintf(file, sizeof file, "%s", slash + 8);
            kind = SHARD;
        }
    }
    const char *action = kind == LIST       ? ACTION_LIST
                         : kind == MANIFEST ? ACTION_MANIFEST
                                            : ACTION_SHARD;
    int ver = ver_s[0] ? version_of(ver_s) : 0;
    json_t *m = NULL;
    size_t nsub = 1;
    if (kind != LIST) {
        if (fv_ds_check_name(name, why, sizeof why) != FV_OK || ver == 0 ||
            (m = load_manifest(root, name, ver)) == NULL) {
            /* decided first (so a probe is audited), then answered as unknown */
            nsub = 0;
        } else {
            nsub = subjects_in(m, kind == SHARD ? file : NULL);
        }
    }
    /* The audit names what was asked; the guard decides for the subjects it touches. */
    char what[300];
    snprintf(what, sizeof what, "%s%s%s%s%s%s%s", action, name[0] ? " " : "", name,
             ver_s[0] ? "/" : "", ver_s, file[0] ? "/" : "", file);
    if (v->range && kind == SHARD) {
        size_t l = strlen(what);
        snprintf(what + l, sizeof what - l, " range %.60s", v->range);
    }
    const char *signals[1] = {what};
    uint32_t classes = dataset_classes(v); /* samples hold signals and coarse places */
    /* Datasets are built for training: no other purpose reads them, whatever the role. */
    char purpose[32] = "";
    fv_query_param(v->query, "purpose", purpose, sizeof purpose);
    if (purpose[0] && strcmp(purpose, FV_DATASET_PURPOSE) != 0)
        snprintf(ctx->refuse, sizeof ctx->refuse, "datasets are read for purpose %s only",
                 FV_DATASET_PURPOSE);
    int rc = fv_guard_read(v->guard, ctx, v->query, action, classes, NULL, nsub ? nsub : 1, 0,
                           signals, 1, INT64_MIN, INT64_MAX, why, sizeof why);
    if (rc) {
        json_decref(m);
        error(out, rc == FV_EIO ? 503 : 403, why);
        return;
    }
    if (kind == LIST) {
        fv_api_respond_json(out, 200, json_pack("{s:o}", "datasets", list_all(root)));
    } else if (m == NULL) {
        error(out, 404, "no such dataset version");
    } else if (withdrawn(root, name, ver)) {
        gone(root, name, ver, out);
    } else if (kind == MANIFEST) {
        char p[1400];
        snprintf(p, sizeof p, "%s/%s/v%d/manifest.json", root, name, ver);
        fv_api_send_file(out, p, NULL, "application/json");
    } else {
        int listed = 0;
        size_t i;
        json_t *sh;
        json_array_foreach(json_object_get(m, "shards"), i, sh)
        {
            const char *f = json_string_value(json_object_get(sh, "file"));
            if (f && strcmp(f, file) == 0) listed = 1;
        }
        if (!listed) {
            error(out, 404, "no such shard in this version (see its manifest)");
        } else {
            char p[1400];
            snprintf(p, sizeof p, "%s/%s/v%d/%s", root, name, ver, file);
            fv_api_send_file(out, p, v->range, "application/x-tar");
        }
    }
    json_decref(m);
    fv_guard_done(v->guard, ctx, out->status < 300 ? nsub : 0,
                  out->length_known ? out->length : out->body.len);
    fv_guard_ctx_clear(ctx);
}

void fv_api_datasets_withdrawn(const struct fv_api_view *v, const char *subject)
{
    if (v->datasets_dir == NULL || v->keys == NULL) return;
    char pseudo[FV_PSEUDONYM_LEN + 1], sid[33], err[256] = "";
    size_t n = 0;
    int rc = fv_keystore_pseudonym(v->keys, subject, pseudo);
    if (rc == FV_OK) rc = fv_ds_clips_subject(v->keys, pseudo, sid);
    if (rc == FV_OK)
        rc = fv_ds_mark_withdrawn(v->datasets_dir, sid, (int64_t)fv_now_ms(), &n, err, sizeof err);
    if (rc)
        fv_warn("consent withdrawal: dataset versions not marked: %s",
                err[0] ? err : fv_strerror(rc));
    else if (n)
        fv_info("consent withdrawal: %zu dataset version(s) marked", n);
}
