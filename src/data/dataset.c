/* dataset.c - versioned WebDataset builds with a manifest (dataset.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "data/dataset.h"
#include "os/fsio.h"
#include "util/err.h"
#include "util/map.h"

#define DEFAULT_SHARD_BYTES (1ull << 30)
#define MANIFEST_MAX        (1u << 30)

struct cand {
    struct fv_ds_item it;
    size_t split;
    uint64_t order; /* keyed hash of the key: D4 choice and the order within a split */
    size_t group;   /* D4 group index within the split */
    int keep;
};

struct build {
    const struct fv_ds_opts *o;
    struct fv_split splits[FV_SPLIT_MAX];
    size_t nsplits;
    struct cand *c;
    size_t n, cap;
    struct fv_map seen; /* content_sha256 -> 1 (D3) */
    size_t duplicates;
    int failed; /* ENOMEM while listing */
};

int fv_ds_check_name(const char *name, char *why, size_t n)
{
    size_t len = strlen(name);
    if (len == 0 || len >= FV_DS_NAME_MAX) {
        fv_seterr(why, n, "a dataset name is 1 to %d characters", FV_DS_NAME_MAX - 1);
        return FV_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            fv_seterr(why, n, "dataset name '%s': character %zu is not one of a-z, 0-9, '_', '-'",
                      name, i + 1);
            return FV_EINVAL;
        }
    }
    return FV_OK;
}

void fv_ds_files_free(struct fv_ds_files *f)
{
    for (size_t i = 0; i < FV_DS_FILES_MAX; i++)
        fv_buf_free(&f->data[i]);
    f->n = 0;
}

static uint64_t keyed64(const struct fv_ds_opts *o, const char *what, const char *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    /* domain-separated from the split hash (wds.h W5): "order\0" + s */
    size_t wl = strlen(what), sl = strlen(s);
    unsigned char *msg = malloc(wl + 1 + sl);
    if (msg == NULL) return fv_hash64(s, sl);
    memcpy(msg, what, wl + 1);
    memcpy(msg + wl + 1, s, sl);
    uint64_t v = 0;
    if (HMAC(EVP_sha256(), o->split_key, (int)o->split_key_len, msg, wl + 1 + sl, md, &mdlen))
        for (int i = 0; i < 8; i++)
            v = (v << 8) | md[i];
    free(msg);
    return v;
}

static int emit(void *ctx, struct fv_ds_item *it)
{
    struct build *b = ctx;
    if (fv_map_get(&b->seen, it->content_sha256, strlen(it->content_sha256))) {
        b->duplicates++;
        json_decref(it->lineage);
        it->lineage = NULL;
        return 0;
    }
    if (b->n == b->cap) {
        size_t nc = b->cap ? 2 * b->cap : 256;
        struct cand *p = realloc(b->c, nc * sizeof *p);
        if (p == NULL) goto nomem;
        b->c = p;
        b->cap = nc;
    }
    if (fv_map_put(&b->seen, it->content_sha256, strlen(it->content_sha256), (void *)1) != FV_OK)
        goto nomem;
    struct cand *c = &b->c[b->n++];
    memset(c, 0, sizeof *c);
    c->it = *it;
    it->lineage = NULL; /* taken over */
    c->split =
        fv_split_pick(b->o->split_key, b->o->split_key_len, c->it.vehicle, b->splits, b->nsplits);
    c->order = keyed64(b->o, "order", c->it.key);
    c->keep = 1;
    return 0;
nomem:
    json_decref(it->lineage);
    it->lineage = NULL;
    b->failed = 1;
    return 1;
}

static void primary_tag(const char *tags, char *out, size_t n)
{
    size_t l = strcspn(tags, ",");
    if (l == 0) {
        snprintf(out, n, "untagged");
        return;
    }
    snprintf(out, n, "%.*s", (int)l, tags);
}

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->split != y->split) return x->split < y->split ? -1 : 1;
    if (x->order != y->order) return x->order < y->order ? -1 : 1;
    return strcmp(x->it.key, y->it.key);
}

/* D4: per split, groups by primary tag and keeps at most the cap of each (sorted by order,
 * so the kept ones are the first by the keyed hash). */
static int balance(struct build *b, size_t *dropped)
{
    *dropped = 0;
    for (size_t s = 0; s < b->nsplits; s++) {
        struct fv_map groups = {0}; /* tag -> count+1 */
        size_t ngroups = 0, smallest = SIZE_MAX;
        for (size_t i = 0; i < b->n; i++) {
            if (b->c[i].split != s) continue;
            char tag[256];
            primary_tag(b->c[i].it.tags, tag, sizeof tag);
            uintptr_t v = (uintptr_t)fv_map_get(&groups, tag, strlen(tag));
            if (v == 0) ngroups++;
            if (fv_map_put(&groups, tag, strlen(tag), (void *)(v ? v + 1 : 2)) != FV_OK) {
                fv_map_free(&groups);
                return FV_ENOMEM;
            }
        }
        for (size_t i = 0; i < groups.cap; i++)
            if (groups.slots[i].hash) {
                size_t cnt = (uintptr_t)groups.slots[i].val - 1;
                if (cnt < smallest) smallest = cnt;
            }
        size_t cap = b->o->per_tag ? b->o->per_tag : smallest;
        fv_map_free(&groups);
        if (ngroups == 0) continue;
        struct fv_map kept = {0};
        for (size_t i = 0; i < b->n; i++) { /* sorted: split, then order */
            if (b->c[i].split != s) continue;
            char tag[256];
            primary_tag(b->c[i].it.tags, tag, sizeof tag);
            uintptr_t v = (uintptr_t)fv_map_get(&kept, tag, strlen(tag));
            size_t have = v ? v - 1 : 0;
            if (have >= cap) {
                b->c[i].keep = 0;
                (*dropped)++;
                continue;
            }
            if (fv_map_put(&kept, tag, strlen(tag), (void *)(uintptr_t)(have + 2)) != FV_OK) {
                fv_map_free(&kept);
                return FV_ENOMEM;
            }
        }
        fv_map_free(&kept);
    }
    return FV_OK;
}

static int rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL) return errno == ENOENT ? 0 : -1;
    struct dirent *e;
    char p[2048];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        unlink(p);
    }
    closedir(d);
    return rmdir(path);
}

/* D2 and the D1 clean-up: removes stale .vN.tmp directories; returns the next version. */
static int next_version(const char *dir, int *out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fv_seterr(err, errlen, "%s: %s", dir, strerror(errno));
        return FV_EIO;
    }
    int max = 0;
    struct dirent *e;
    char stale[64][300];
    size_t nstale = 0;
    while ((e = readdir(d)) != NULL) {
        int v;
        char tail;
        if (sscanf(e->d_name, "v%d%c", &v, &tail) == 1 && v > max) max = v;
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp") && nstale < 64)
            snprintf(stale[nstale++], sizeof stale[0], "%s", e->d_name);
    }
    closedir(d);
    for (size_t i = 0; i < nstale; i++) {
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, stale[i]);
        rm_tree(p);
    }
    *out = max + 1;
    return FV_OK;
}

static json_t *sample_json(const struct cand *c, const struct fv_split *sp, const char *shard)
{
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "key", c->it.key, "split",
                  sp[c->split].name, "shard", shard, "vehicle", c->it.vehicle, "subject",
                  c->it.subject, "tags", c->it.tags, "content_sha256", c->it.content_sha256);
    if (j && c->it.lineage) json_object_set(j, "lineage", c->it.lineage);
    return j;
}

static int close_shard(struct fv_tar **t, const char *file, const char *split, size_t samples,
                       json_t *shards, struct fv_ds_result *res, char *err, size_t errlen)
{
    char hex[65];
    uint64_t bytes = fv_tar_bytes(*t) + 1024; /* with the two end blocks close writes */
    int rc = fv_tar_close(*t, hex, err, errlen);
    *t = NULL;
    if (rc != FV_OK) return rc;
    res->shards++;
    res->bytes += bytes;
    json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:s}", "file", file, "split", split, "samples",
                          (json_int_t)samples, "bytes", (json_int_t)bytes, "sha256", hex);
    if (j == NULL || json_array_append_new(shards, j) != 0) return FV_ENOMEM;
    return FV_OK;
}

/* D5: writes the kept candidates (sorted by split, then order) into shards under tmpdir. */
static int write_shards(struct build *b, const struct fv_ds_source *src, const char *tmpdir,
                        json_t *shards, json_t *samples, struct fv_ds_result *res, char *err,
                        size_t errlen)
{
    const struct fv_ds_opts *o = b->o;
    uint64_t max_bytes = o->shard_max_bytes ? o->shard_max_bytes : DEFAULT_SHARD_BYTES;
    struct fv_ds_files files;
    memset(&files, 0, sizeof files);
    struct fv_tar *t = NULL;
    size_t shard_no = 0, in_shard = 0, cur_split = SIZE_MAX, done = 0, total = 0;
    char file[FV_DS_NAME_MAX + FV_SPLIT_NAME_MAX + 16] = "";
    char path[1400], member[FV_TAR_NAME_MAX + 1];
    int64_t mtime = o->now_ms / 1000;
    int rc = FV_OK;
    for (size_t i = 0; i < b->n; i++)
        total += (size_t)b->c[i].keep;

    for (size_t i = 0; i < b->n && rc == FV_OK; i++) {
        struct cand *c = &b->c[i];
        if (!c->keep) continue;
        files.n = 0;
        for (size_t k = 0; k < FV_DS_FILES_MAX; k++)
            fv_buf_reset(&files.data[k]);
        rc = src->load(src->arg, &c->it, &files, err, errlen);
        if (rc != FV_OK) break;
        if (files.n == 0 || files.n > FV_DS_FILES_MAX) {
            fv_seterr(err, errlen, "sample %s: the source gave %zu files", c->it.key, files.n);
            rc = FV_EINVAL;
            break;
        }
        uint64_t need = 0;
        for (size_t k = 0; k < files.n; k++)
            need += 512 + (files.data[k].len + 511) / 512 * 512;
        if (t && (c->split != cur_split || fv_tar_bytes(t) + need + 1024 > max_bytes ||
                  (o->shard_max_samples && in_shard >= o->shard_max_samples))) {
            rc = close_shard(&t, file, b->splits[cur_split].name, in_shard, shards, res, err,
                             errlen);
            if (rc != FV_OK) break;
        }
        if (t == NULL) {
            if (c->split != cur_split) shard_no = 0;
            cur_split = c->split;
            snprintf(file, sizeof file, "%s-%s-%06zu.tar", o->name, b->splits[c->split].name,
                     shard_no++);
            snprintf(path, sizeof path, "%s/%s", tmpdir, file);
            rc = fv_tar_open(path, &t, err, errlen);
            if (rc != FV_OK) break;
            in_shard = 0;
        }
        for (size_t k = 0; k < files.n && rc == FV_OK; k++) {
            if (snprintf(member, sizeof member, "%s.%s", c->it.key, files.ext[k]) >=
                (int)sizeof member) {
                fv_seterr(err, errlen, "sample %s: member name too long", c->it.key);
                rc = FV_EINVAL;
                break;
            }
            rc = fv_tar_add(t, member, files.data[k].data, files.data[k].len, mtime, err, errlen);
        }
        if (rc != FV_OK) break;
        in_shard++;
        res->per_split[c->split]++;
        res->samples++;
        json_t *sj = sample_json(c, b->splits, file);
        if (sj == NULL || json_array_append_new(samples, sj) != 0) {
            rc = FV_ENOMEM;
            break;
        }
        if (o->progress) o->progress(o->progress_arg, ++done, total);
    }
    if (rc == FV_OK && t)
        rc = close_shard(&t, file, b->splits[cur_split].name, in_shard, shards, res, err, errlen);
    if (t) fv_tar_abort(t);
    fv_ds_files_free(&files);
    return rc;
}

static int make_readonly(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) return -1;
    struct dirent *e;
    char p[2048];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        chmod(p, 0444);
    }
    closedir(d);
    return 0;
}

int fv_ds_build(const struct fv_ds_opts *o, const struct fv_ds_source *src,
                struct fv_ds_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    char why[256];
    if (fv_ds_check_name(o->name, why, sizeof why) != FV_OK) {
        fv_seterr(err, errlen, "%s", why);
        return FV_EINVAL;
    }
    struct build b = {.o = o};
    if (fv_split_parse(o->split_spec, b.splits, &b.nsplits, why, sizeof why) != FV_OK) {
        fv_seterr(err, errlen, "--split: %s", why);
        return FV_EINVAL;
    }
    if (o->split_key == NULL || o->split_key_len < 16) {
        fv_seterr(err, errlen, "a split key of at least 16 bytes is needed");
        return FV_EINVAL;
    }
    char dir[1024], tmpdir[1100];
    if (snprintf(dir, sizeof dir, "%s/%s", o->root, o->name) >= (int)sizeof dir) {
        fv_seterr(err, errlen, "%s: path too long", o->root);
        return FV_EINVAL;
    }
    int rc = fv_os_mkdirs(dir, 0750, err, errlen);
    if (rc != FV_OK) return rc;

    rc = src->list(src->arg, emit, &b, err, errlen);
    if (b.failed) rc = FV_ENOMEM;
    json_t *man = NULL, *shards = NULL, *samples = NULL;
    if (rc != FV_OK) goto out;
    res->candidates = b.n + b.duplicates;
    res->duplicates = b.duplicates;
    if (b.n) qsort(b.c, b.n, sizeof *b.c, cmp_cand);
    if (o->balance && (rc = balance(&b, &res->balanced_out)) != FV_OK) goto out;
    if (b.n == res->balanced_out) {
        fv_seterr(err, errlen, "no sample to put in dataset '%s' (%zu candidates, %zu duplicates)",
                  o->name, res->candidates, res->duplicates);
        rc = FV_ENOENT;
        goto out;
    }
    rc = next_version(dir, &res->version, err, errlen);
    if (rc != FV_OK) goto out;
    snprintf(tmpdir, sizeof tmpdir, "%s/.v%d.tmp", dir, res->version);
    if (mkdir(tmpdir, 0750) != 0) {
        fv_seterr(err, errlen, "%s: %s", tmpdir, strerror(errno));
        rc = FV_EIO;
        goto out;
    }
    shards = json_array();
    samples = json_array();
    if (shards == NULL || samples == NULL) {
        rc = FV_ENOMEM;
        goto fail_tmp;
    }
    rc = write_shards(&b, src, tmpdir, shards, samples, res, err, errlen);
    if (rc != FV_OK) goto fail_tmp;

    json_t *per = json_object();
    json_t *spec = json_array();
    for (size_t s = 0; per && spec && s < b.nsplits; s++) {
        json_object_set_new(per, b.splits[s].name, json_integer((json_int_t)res->per_split[s]));
        json_array_append_new(spec, json_pack("{s:s, s:f}", "name", b.splits[s].name, "fraction",
                                              b.splits[s].fraction));
    }
    man = json_pack(
        "{s:s, s:s, s:i, s:I, s:s, s:o, s:s, s:b, s:I, s:O, s:{s:I, s:I, s:I, s:I, "
        "s:o}, s:o, s:o}",
        "format", "fleetvault-dataset/1", "name", o->name, "version", res->version, "created_ms",
        (json_int_t)o->now_ms, "query", o->query ? o->query : "", "splits",
        spec ? spec : json_null(), "split_by", "HMAC-SHA256(split key, vehicle pseudonym)",
        "balanced", o->balance, "per_tag", (json_int_t)o->per_tag, "consent",
        o->consent ? (json_t *)o->consent : json_null(), "counts", "candidates",
        (json_int_t)res->candidates, "duplicates_removed", (json_int_t)res->duplicates,
        "balanced_out", (json_int_t)res->balanced_out, "samples", (json_int_t)res->samples,
        "per_split", per ? per : json_null(), "shards", shards, "samples", samples);
    shards = samples = NULL; /* owned by man (or freed by json_pack on failure) */
    if (man == NULL) {
        rc = FV_ENOMEM;
        goto fail_tmp;
    }
    char *text = json_dumps(man, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    if (text == NULL) {
        rc = FV_ENOMEM;
        goto fail_tmp;
    }
    char mpath[1200];
    snprintf(mpath, sizeof mpath, "%s/manifest.json", tmpdir);
    rc = fv_os_write_file_atomic(mpath, text, strlen(text), 0444, err, errlen);
    free(text);
    if (rc != FV_OK) goto fail_tmp;
    make_readonly(tmpdir);
    rc = fv_os_fsync_dir(tmpdir, err, errlen);
    if (rc != FV_OK) goto fail_tmp;
    snprintf(res->dir, sizeof res->dir, "%s/v%d", dir, res->version);
    rc = fv_os_rename(tmpdir, res->dir, err, errlen);
    if (rc != FV_OK) goto fail_tmp;
    rc = fv_os_fsync_dir(dir, err, errlen);
    goto out;

fail_tmp:
    rm_tree(tmpdir);
    res->dir[0] = '\0';
out:
    json_decref(man);
    json_decref(shards);
    json_decref(samples);
    for (size_t i = 0; i < b.n; i++)
        json_decref(b.c[i].it.lineage);
    free(b.c);
    fv_map_free(&b.seen);
    return rc;
}

/* D7 for one version directory: appends subject to vN.withdrawn when its manifest holds it. */
/* D8: removes the shards the manifest m lists in namedir/ver (already gone: fine). */
static int delete_shards(const char *namedir, const char *ver, const json_t *m, char *err,
                         size_t errlen)
{
    size_t i;
    json_t *sh;
    int rc = FV_OK;
    json_array_foreach(json_object_get(m, "shards"), i, sh)
    {
        const char *f = json_string_value(json_object_get(sh, "file"));
        char why[128], path[2400];
        if (f == NULL || fv_tar_check_name(f, why, sizeof why) != FV_OK || strchr(f, '/')) continue;
        snprintf(path, sizeof path, "%s/%s/%s", namedir, ver, f);
        int u = fv_os_unlink(path, err, errlen);
        if (u != FV_OK && u != FV_ENOENT) rc = u;
    }
    char vdir[2400];
    snprintf(vdir, sizeof vdir, "%s/%s", namedir, ver);
    if (rc == FV_OK) rc = fv_os_fsync_dir(vdir, err, errlen);
    return rc;
}

/* D7 (and D8 when erase) for one version. */
static int mark_version(const char *namedir, const char *ver, const char *subject, int64_t now_ms,
                        int erase, size_t *marked, char *err, size_t errlen)
{
    char path[2400];
    snprintf(path, sizeof path, "%s/%s/manifest.json", namedir, ver);
    json_error_t je;
    json_t *m = json_load_file(path, 0, &je);
    if (m == NULL) return FV_OK; /* not a finished version */
    json_t *samples = json_object_get(m, "samples");
    int holds = 0;
    size_t i;
    json_t *s;
    json_array_foreach(samples, i, s)
    {
        const char *sub = json_string_value(json_object_get(s, "subject"));
        if (sub && strcmp(sub, subject) == 0) {
            holds = 1;
            break;
        }
    }
    if (!holds) {
        json_decref(m);
        return FV_OK;
    }
    snprintf(path, sizeof path, "%s/%s.withdrawn", namedir, ver);
    json_t *w = json_load_file(path, 0, &je);
    if (w == NULL) w = json_pack("{s:[]}", "withdrawn");
    json_t *arr = w ? json_object_get(w, "withdrawn") : NULL;
    if (arr == NULL || !json_is_array(arr)) {
        json_decref(w);
        json_decref(m);
        fv_seterr(err, errlen, "%s: not a withdrawal list", path);
        return FV_EINVAL;
    }
    json_t *entry = NULL;
    json_array_foreach(arr, i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "subject")) ?: "", subject) == 0) {
            entry = s;
            break;
        }
    }
    int rc = FV_OK, changed = 0;
    if (entry == NULL) {
        entry = json_pack("{s:s, s:I}", "subject", subject, "at_ms", (json_int_t)now_ms);
        if (entry == NULL || json_array_append_new(arr, entry) != 0) rc = FV_ENOMEM;
        changed = 1;
    }
    /* D8: the tombstone note first (durable), then the shards go */
    if (rc == FV_OK && erase && json_object_get(w, "shards_deleted_ms") == NULL) {
        json_object_set_new(entry, "erased", json_true());
        json_object_set_new(w, "shards_deleted_ms", json_integer((json_int_t)now_ms));
        json_object_set_new(w, "note",
                            json_string("a subject of this version was erased: its shards were "
                                        "deleted; the manifest is kept as a record"));
        changed = 1;
    }
    if (rc == FV_OK && changed) {
        char *text = json_dumps(w, JSON_INDENT(1));
        rc =
            text ? fv_os_write_file_atomic(path, text, strlen(text), 0640, err, errlen) : FV_ENOMEM;
        free(text);
    }
    if (rc == FV_OK && erase) rc = delete_shards(namedir, ver, m, err, errlen);
    json_decref(w);
    json_decref(m);
    if (rc == FV_OK) (*marked)++;
    return rc;
}

static int mark_all(const char *root, const char *subject, int64_t now_ms, int erase,
                    size_t *marked, char *err, size_t errlen)
{
    *marked = 0;
    DIR *d = opendir(root);
    if (d == NULL) return errno == ENOENT ? FV_OK : FV_EIO;
    struct dirent *e;
    int rc = FV_OK;
    while (rc == FV_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char namedir[1300];
        snprintf(namedir, sizeof namedir, "%s/%s", root, e->d_name);
        DIR *n = opendir(namedir);
        if (n == NULL) continue;
        struct dirent *v;
        while (rc == FV_OK && (v = readdir(n)) != NULL) {
            int ver;
            char tail;
            if (sscanf(v->d_name, "v%d%c", &ver, &tail) != 1) continue;
            rc = mark_version(namedir, v->d_name, subject, now_ms, erase, marked, err, errlen);
        }
        closedir(n);
    }
    closedir(d);
    return rc;
}

int fv_ds_mark_withdrawn(const char *root, const char *subject, int64_t now_ms, size_t *marked,
                         char *err, size_t errlen)
{
    return mark_all(root, subject, now_ms, 0, marked, err, errlen);
}

int fv_ds_erase_subject(const char *root, const char *subject, int64_t now_ms, size_t *erased,
                        char *err, size_t errlen)
{
    return mark_all(root, subject, now_ms, 1, erased, err, errlen);
}
