/* clip_upload.c - the clip upload state machine and the "clips" configuration
 * (clip_upload.h, rules U1-U6). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "data/clip_upload.h"
#include "data/mcap.h"
#include "os/fsio.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"

#define MAX_UPLOADS 1024 /* open uploads, all devices */

struct upload {
    struct fv_clip_meta m;
    uint64_t offset; /* committed (U2) */
    int64_t active_ms;
};

struct fv_clip_up {
    char dir[PATH_MAX]; /* DIR/partial */
    const struct fv_clips_config *cfg;
    const struct fv_clip_up_hooks *hooks;
    struct upload *ups[MAX_UPLOADS];
    size_t n;
};

/* ---- configuration --------------------------------------------------------------------- */

void fv_clips_config_defaults(struct fv_clips_config *c)
{
    memset(c, 0, sizeof *c);
    c->max_clip_bytes = 256ull << 20;
    c->max_device_bytes = 2048ull << 20;
    c->max_concurrent = 2;
    c->max_chunk_bytes = 8ull << 20;
    c->expire_ms = 86400000;
    c->deid_timeout_ms = 60000;
    c->deid_mem_bytes = 2048ull << 20;
    c->signals_pre_ms = 10000;
    c->signals_post_ms = 10000;
}

static int valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > FV_CLIP_ID_MAX) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.' || *p == ':'))
            return 0;
    return 1;
}

/* A positive integer key scaled by mult into *out; absent: unchanged. */
static int pos_int(json_t *o, const char *key, uint64_t mult, uint64_t *out, char *err,
                   size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL) return FV_OK;
    if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
        (uint64_t)json_integer_value(v) > UINT64_MAX / mult) {
        fv_seterr(err, errlen, "clips.%s: expected a positive integer", key);
        return FV_EINVAL;
    }
    *out = (uint64_t)json_integer_value(v) * mult;
    return FV_OK;
}

static const char *const known_keys[] = {"listen",
                                         "max_clip_mb",
                                         "max_device_mb",
                                         "max_concurrent",
                                         "max_chunk_mb",
                                         "expire_after_s",
                                         "deid_command",
                                         "deid_timeout_s",
                                         "deid_mem_mb",
                                         "campaigns",
                                         "signals_pre_s",
                                         "signals_post_s",
                                         NULL};

int fv_clips_config_parse(struct fv_clips_config *c, const char *json, char *err, size_t errlen)
{
    fv_clips_config_defaults(c);
    if (json == NULL || json[0] == '\0') return FV_OK;
    json_error_t je;
    json_t *o = json_loads(json, 0, &je);
    int rc = FV_EINVAL;
    if (!json_is_object(o)) {
        fv_seterr(err, errlen, "clips: expected an object");
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val)
    {
        size_t k = 0;
        while (known_keys[k] && strcmp(known_keys[k], key) != 0)
            k++;
        if (known_keys[k] == NULL) {
            fv_seterr(err, errlen, "clips.%s: unknown key", key);
            goto done;
        }
    }
    json_t *l = json_object_get(o, "listen");
    if (l) {
        const char *s = json_string_value(l);
        const char *colon = s ? strrchr(s, ':') : NULL;
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || colon == s || (size_t)(colon - s) >= sizeof c->host || *end || port <= 0 ||
            port > 65535) {
            fv_seterr(err, errlen, "clips.listen: expected \"HOST:PORT\"");
            goto done;
        }
        snprintf(c->host, sizeof c->host, "%.*s", (int)(colon - s), s);
        c->port = (int)port;
        c->enabled = 1;
    }
    uint64_t conc = (uint64_t)c->max_concurrent, tmo = c->deid_timeout_ms / 1000;
    uint64_t pre = (uint64_t)c->signals_pre_ms / 1000, post = (uint64_t)c->signals_post_ms / 1000;
    if (pos_int(o, "max_clip_mb", 1ull << 20, &c->max_clip_bytes, err, errlen) ||
        pos_int(o, "max_device_mb", 1ull << 20, &c->max_device_bytes, err, errlen) ||
        pos_int(o, "max_chunk_mb", 1ull << 20, &c->max_chunk_bytes, err, errlen) ||
        pos_int(o, "deid_mem_mb", 1ull << 20, &c->deid_mem_bytes, err, errlen) ||
        pos_int(o, "max_concurrent", 1, &conc, err, errlen) ||
        pos_int(o, "expire_after_s", 1000, &c->expire_ms, err, errlen) ||
        pos_int(o, "deid_timeout_s", 1, &tmo, err, errlen) ||
        pos_int(o, "signals_pre_s", 1, &pre, err, errlen) ||
        pos_int(o, "signals_post_s", 1, &post, err, errlen))
        goto done;
    if (conc > 1000 || tmo > 86400) {
        fv_seterr(err, errlen, "clips: max_concurrent at most 1000, deid_timeout_s at most 86400");
        goto done;
    }
    if (pre > 3600 || post > 3600) {
        fv_seterr(err, errlen, "clips: signals_pre_s and signals_post_s at most 3600");
        goto done;
    }
    c->signals_pre_ms = (int64_t)pre * 1000;
    c->signals_post_ms = (int64_t)post * 1000;
    c->max_concurrent = (int)conc;
    c->deid_timeout_ms = tmo * 1000;
    json_t *cmd = json_object_get(o, "deid_command");
    if (cmd) {
        size_t n = json_is_array(cmd) ? json_array_size(cmd) : 0;
        if (n == 0 || n > FV_CLIPS_DEID_ARGS) {
            fv_seterr(err, errlen, "clips.deid_command: expected an array of 1 to %d strings",
                      FV_CLIPS_DEID_ARGS);
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            const char *s = json_string_value(json_array_get(cmd, i));
            if (s == NULL || s[0] == '\0' || strlen(s) >= sizeof c->deid_argv[0]) {
                fv_seterr(err, errlen,
                          "clips.deid_command[%zu]: expected a string of 1 to %zu "
                          "bytes",
                          i, sizeof c->deid_argv[0] - 1);
                goto done;
            }
            snprintf(c->deid_argv[i], sizeof c->deid_argv[i], "%s", s);
        }
        c->deid_argc = (int)n;
    }
    json_t *camps = json_object_get(o, "campaigns");
    if (camps) {
        size_t n = json_is_array(camps) ? json_array_size(camps) : SIZE_MAX;
        if (n > FV_CLIPS_CAMPAIGNS) {
            fv_seterr(err, errlen, "clips.campaigns: expected an array of at most %d ids",
                      FV_CLIPS_CAMPAIGNS);
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            const char *s = json_string_value(json_array_get(camps, i));
            if (s == NULL || !valid_id(s)) {
                fv_seterr(err, errlen,
                          "clips.campaigns[%zu]: expected an id ([A-Za-z0-9_.:-], "
                          "1 to %d characters)",
                          i, FV_CLIP_ID_MAX);
                goto done;
            }
            snprintf(c->campaigns[i], sizeof c->campaigns[i], "%s", s);
        }
        c->ncampaigns = n;
    }
    rc = FV_OK;
done:
    json_decref(o);
    return rc;
}

int fv_clips_campaign_listed(void *arg, const char *device, const char *campaign_id, char *why,
                             size_t n)
{
    const struct fv_clips_config *c = arg;
    (void)device;
    for (size_t i = 0; i < c->ncampaigns; i++)
        if (strcmp(c->campaigns[i], campaign_id) == 0) return 1;
    snprintf(why, n, "campaign %s was not sent to this vehicle", campaign_id);
    return 0;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static void answer(struct fv_clip_answer *a, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void answer(struct fv_clip_answer *a, int status, const char *fmt, ...)
{
    a->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->why, sizeof a->why, fmt, ap);
    va_end(ap);
}

static void answer_upload(struct fv_clip_answer *a, int status, const struct upload *up)
{
    a->status = status;
    a->why[0] = '\0';
    snprintf(a->upload_id, sizeof a->upload_id, "%s", up->m.upload_id);
    snprintf(a->clip_id, sizeof a->clip_id, "%s", up->m.clip_id);
    a->offset = up->offset;
    a->size = up->m.size;
}

/* An error answer that still tells the client where its upload stands (U3). */
static void at_upload(struct fv_clip_answer *a, const struct upload *up)
{
    snprintf(a->upload_id, sizeof a->upload_id, "%s", up->m.upload_id);
    a->offset = up->offset;
    a->size = up->m.size;
}

static int valid_sha_hex(const char *s)
{
    if (s == NULL || strlen(s) != 64) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

static void path_of(const struct fv_clip_up *u, const char *id, const char *ext, char *out,
                    size_t n)
{
    snprintf(out, n, "%s/%s.%s", u->dir, id, ext);
}

static struct upload *find(struct fv_clip_up *u, const char *device, const char *id, size_t *at)
{
    for (size_t i = 0; i < u->n; i++)
        if (strcmp(u->ups[i]->m.upload_id, id) == 0) {
            if (strcmp(u->ups[i]->m.device, device) != 0) return NULL; /* U5 */
            if (at) *at = i;
            return u->ups[i];
        }
    return NULL;
}

/* Removes the upload's files and forgets it. */
static void discard(struct fv_clip_up *u, size_t at)
{
    char p[PATH_MAX + 80];
    path_of(u, u->ups[at]->m.upload_id, "data", p, sizeof p);
    fv_os_unlink(p, NULL, 0);
    path_of(u, u->ups[at]->m.upload_id, "json", p, sizeof p);
    fv_os_unlink(p, NULL, 0);
    free(u->ups[at]);
    u->ups[at] = u->ups[--u->n];
}

static json_t *meta_json(const struct fv_clip_meta *m)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:I}", "upload_id", m->upload_id, "device",
                     m->device, "clip_id", m->clip_id, "campaign_id", m->campaign, "trigger",
                     m->trigger, "trigger_ms", (json_int_t)m->trigger_ms, "size",
                     (json_int_t)m->size, "sha256", m->sha256, "created_ms",
                     (json_int_t)m->created_ms);
}

/* Reads the create fields (and, from a saved upload, the others) into m. */
static int meta_read(json_t *o, struct fv_clip_meta *m, int saved, char *why, size_t n)
{
    const char *clip = json_string_value(json_object_get(o, "clip_id"));
    const char *camp = json_string_value(json_object_get(o, "campaign_id"));
    json_t *trig = json_object_get(o, "trigger");
    json_t *tms = json_object_get(o, "trigger_ms"), *size = json_object_get(o, "size");
    const char *sha = json_string_value(json_object_get(o, "sha256"));
    if (!clip || !valid_id(clip)) {
        snprintf(why, n, "clip_id: expected an id ([A-Za-z0-9_.:-], 1 to %d characters)",
                 FV_CLIP_ID_MAX);
        return FV_EINVAL;
    }
    if (!camp || !valid_id(camp)) {
        snprintf(why, n, "campaign_id: expected an id ([A-Za-z0-9_.:-], 1 to %d characters)",
                 FV_CLIP_ID_MAX);
        return FV_EINVAL;
    }
    if (trig && (!json_is_string(trig) ||
                 (json_string_length(trig) && !valid_id(json_string_value(trig))))) {
        snprintf(why, n, "trigger: expected an id ([A-Za-z0-9_.:-], at most %d characters)",
                 FV_CLIP_ID_MAX);
        return FV_EINVAL;
    }
    if (!json_is_integer(tms) || json_integer_value(tms) <= 0) {
        snprintf(why, n, "trigger_ms: expected the trigger's time, epoch milliseconds");
        return FV_EINVAL;
    }
    if (!json_is_integer(size) || json_integer_value(size) <= 0) {
        snprintf(why, n, "size: expected the clip's size in bytes (> 0)");
        return FV_EINVAL;
    }
    if (!valid_sha_hex(sha)) {
        snprintf(why, n, "sha256: expected the whole clip's SHA-256, 64 lower-case hex digits");
        return FV_EINVAL;
    }
    snprintf(m->clip_id, sizeof m->clip_id, "%s", clip);
    snprintf(m->campaign, sizeof m->campaign, "%s", camp);
    snprintf(m->trigger, sizeof m->trigger, "%s", trig ? json_string_value(trig) : "");
    m->trigger_ms = json_integer_value(tms);
    m->size = (uint64_t)json_integer_value(size);
    snprintf(m->sha256, sizeof m->sha256, "%s", sha);
    if (!saved) return FV_OK;
    const char *id = json_string_value(json_object_get(o, "upload_id"));
    const char *dev = json_string_value(json_object_get(o, "device"));
    if (!id || strlen(id) != FV_CLIP_UPLOAD_LEN || !dev || strlen(dev) >= sizeof m->device) {
        snprintf(why, n, "upload_id or device missing");
        return FV_EINVAL;
    }
    snprintf(m->upload_id, sizeof m->upload_id, "%s", id);
    snprintf(m->device, sizeof m->device, "%s", dev);
    m->created_ms = json_integer_value(json_object_get(o, "created_ms"));
    return FV_OK;
}

/* ---- open / close ------------------------------------------------------------------------ */

static void reload(struct fv_clip_up *u)
{
    DIR *d = opendir(u->dir);
    if (d == NULL) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && u->n < MAX_UPLOADS) {
        size_t len = strlen(e->d_name);
        if (len != FV_CLIP_UPLOAD_LEN + 5 || strcmp(e->d_name + FV_CLIP_UPLOAD_LEN, ".json") != 0)
            continue;
        char p[PATH_MAX + 80], why[256];
        snprintf(p, sizeof p, "%s/%s", u->dir, e->d_name);
        json_error_t je;
        json_t *o = json_load_file(p, 0, &je);
        struct upload *up = calloc(1, sizeof *up);
        struct stat st;
        if (o && up && meta_read(o, &up->m, 1, why, sizeof why) == FV_OK &&
            strncmp(up->m.upload_id, e->d_name, FV_CLIP_UPLOAD_LEN) == 0) {
            path_of(u, up->m.upload_id, "data", p, sizeof p);
            up->offset = stat(p, &st) == 0 ? (uint64_t)st.st_size : 0; /* U2 */
            if (up->offset > up->m.size) up->offset = 0;               /* cannot be: restart it */
            up->active_ms = up->m.created_ms;
            u->ups[u->n++] = up;
            up = NULL;
        } else {
            fv_warn("clips: partial upload %s unreadable; removed", e->d_name);
            fv_os_unlink(p, NULL, 0);
        }
        free(up);
        json_decref(o);
    }
    closedir(d);
}

int fv_clip_up_open(const char *dir, const struct fv_clips_config *cfg,
                    const struct fv_clip_up_hooks *hooks, struct fv_clip_up **out, char *err,
                    size_t errlen)
{
    struct fv_clip_up *u = calloc(1, sizeof *u);
    if (u == NULL) return FV_ENOMEM;
    snprintf(u->dir, sizeof u->dir, "%s/partial", dir);
    u->cfg = cfg;
    u->hooks = hooks;
    int rc = fv_os_mkdirs(u->dir, 0700, err, errlen);
    if (rc) {
        free(u);
        return rc;
    }
    reload(u);
    *out = u;
    return FV_OK;
}

void fv_clip_up_close(struct fv_clip_up *u)
{
    if (u == NULL) return;
    for (size_t i = 0; i < u->n; i++)
        free(u->ups[i]);
    free(u);
}

size_t fv_clip_up_count(const struct fv_clip_up *u)
{
    return u->n;
}

/* ---- the requests ------------------------------------------------------------------------ */

void fv_clip_up_create(struct fv_clip_up *u, const char *device, const char *json, size_t len,
                       int64_t now_ms, struct fv_clip_answer *a)
{
    memset(a, 0, sizeof *a);
    json_error_t je;
    json_t *o = json_loadb(json ? json : "", len, 0, &je);
    struct fv_clip_meta m;
    memset(&m, 0, sizeof m);
    char why[256];
    if (!json_is_object(o)) {
        answer(a, 400,
               "expected a JSON object {clip_id, campaign_id, trigger, trigger_ms, size, "
               "sha256}");
        goto done;
    }
    if (meta_read(o, &m, 0, why, sizeof why) != FV_OK) {
        answer(a, 400, "%s", why);
        goto done;
    }
    snprintf(m.device, sizeof m.device, "%s", device);
    if (m.trigger_ms > now_ms + FV_CLIP_FUTURE_MS) {
        answer(a, 400, "trigger_ms: %lld ms ahead of the server's clock (at most %d)",
               (long long)(m.trigger_ms - now_ms), FV_CLIP_FUTURE_MS);
        goto done;
    }
    const struct fv_clips_config *c = u->cfg;
    if (m.size > c->max_clip_bytes) {
        answer(a, 413, "clip of %llu bytes is over the limit of %llu bytes per clip",
               (unsigned long long)m.size, (unsigned long long)c->max_clip_bytes);
        goto done;
    }
    /* U6, U4: the device's uploads in progress. */
    uint64_t open_bytes = 0;
    int nopen = 0;
    for (size_t i = 0; i < u->n; i++) {
        const struct upload *up = u->ups[i];
        if (strcmp(up->m.device, device) != 0) continue;
        if (strcmp(up->m.clip_id, m.clip_id) == 0) {
            if (up->m.size == m.size && strcmp(up->m.sha256, m.sha256) == 0 &&
                strcmp(up->m.campaign, m.campaign) == 0) {
                answer_upload(a, 200, up);
                goto done;
            }
            answer(a, 409,
                   "clip %s is being uploaded with another size, hash or campaign "
                   "(upload %s)",
                   m.clip_id, up->m.upload_id);
            goto done;
        }
        open_bytes += up->m.size;
        nopen++;
    }
    /* U2's refusals: consent and campaign (item 2 of issue 12). */
    if (!u->hooks->consent_ok(u->hooks->arg, device, m.trigger_ms, why, sizeof why)) {
        answer(a, 422, "%s", why);
        goto done;
    }
    if (!u->hooks->campaign_ok(u->hooks->campaign_arg, device, m.campaign, why, sizeof why)) {
        answer(a, 422, "%s", why);
        goto done;
    }
    uint64_t stored = 0;
    int exists = 0;
    if (u->hooks->stored(u->hooks->arg, device, m.clip_id, &stored, &exists) != FV_OK) {
        answer(a, 500, "the clip catalog cannot be read; try again later");
        goto done;
    }
    if (exists) {
        answer(a, 409, "clip %s is stored already", m.clip_id);
        goto done;
    }
    if (nopen >= c->max_concurrent) {
        answer(a, 409,
               "%d uploads are open for this device (the limit); finish or let one "
               "expire first",
               nopen);
        goto done;
    }
    if (stored + open_bytes + m.size > c->max_device_bytes) {
        answer(a, 413, "the device's clips would take %llu bytes, over its limit of %llu",
               (unsigned long long)(stored + open_bytes + m.size),
               (unsigned long long)c->max_device_bytes);
        goto done;
    }
    if (u->n == MAX_UPLOADS) {
        answer(a, 409, "the server has %d uploads open; try again later", MAX_UPLOADS);
        goto done;
    }
    unsigned char rnd[FV_CLIP_UPLOAD_LEN / 2];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        answer(a, 500, "no random upload id");
        goto done;
    }
    fv_hex(rnd, sizeof rnd, m.upload_id);
    m.created_ms = now_ms;
    /* The data file first (empty), then the metadata that makes the upload exist. */
    char p[PATH_MAX + 80], err[256];
    int fd = -1;
    path_of(u, m.upload_id, "data", p, sizeof p);
    int rc = fv_os_open(p, O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, err, sizeof err);
    if (fd >= 0) close(fd);
    json_t *mj = rc == FV_OK ? meta_json(&m) : NULL;
    char *text = mj ? json_dumps(mj, JSON_COMPACT) : NULL;
    json_decref(mj);
    char jp[PATH_MAX + 80];
    path_of(u, m.upload_id, "json", jp, sizeof jp);
    if (rc == FV_OK && text == NULL) rc = FV_ENOMEM;
    if (rc == FV_OK) rc = fv_os_write_file_atomic(jp, text, strlen(text), 0600, err, sizeof err);
    free(text);
    struct upload *up = rc == FV_OK ? calloc(1, sizeof *up) : NULL;
    if (up == NULL) {
        if (rc == FV_OK) fv_os_unlink(jp, NULL, 0);
        fv_os_unlink(p, NULL, 0);
        fv_error("clips: cannot create an upload: %s", rc ? err : "out of memory");
        answer(a, 500, "the upload cannot be created (storage); try again later");
        goto done;
    }
    up->m = m;
    up->active_ms = now_ms;
    u->ups[u->n++] = up;
    answer_upload(a, 201, up);
done:
    json_decref(o);
}

void fv_clip_up_chunk(struct fv_clip_up *u, const char *device, const char *upload_id,
                      uint64_t offset, const void *data, size_t len, const char *sha256_hex,
                      int64_t now_ms, struct fv_clip_answer *a)
{
    memset(a, 0, sizeof *a);
    struct upload *up = find(u, device, upload_id, NULL);
    if (up == NULL) {
        answer(a, 404, "unknown upload %s (expired, finished, or never created)", upload_id);
        return;
    }
    if (!valid_sha_hex(sha256_hex)) {
        answer(a, 400, "X-Chunk-SHA256: expected the chunk's SHA-256, 64 lower-case hex digits");
        return;
    }
    if (len == 0) {
        answer(a, 400, "empty chunk");
        return;
    }
    if (len > u->cfg->max_chunk_bytes) {
        answer(a, 413, "chunk of %zu bytes is over the limit of %llu", len,
               (unsigned long long)u->cfg->max_chunk_bytes);
        return;
    }
    unsigned char md[32];
    char got[65];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        answer(a, 500, "SHA-256 failed");
        return;
    }
    fv_hex(md, sizeof md, got);
    if (strcmp(got, sha256_hex) != 0) {
        answer(a, 422,
               "chunk at offset %llu: SHA-256 mismatch (got %s); nothing written, the "
               "committed offset stays %llu",
               (unsigned long long)offset, got, (unsigned long long)up->offset);
        at_upload(a, up);
        return;
    }
    if (offset < up->offset && offset + len <= up->offset) { /* U3: a resend */
        up->active_ms = now_ms;
        answer_upload(a, 200, up);
        return;
    }
    if (offset != up->offset) {
        answer(a, 409, "chunk at offset %llu, but the committed offset is %llu",
               (unsigned long long)offset, (unsigned long long)up->offset);
        at_upload(a, up);
        return;
    }
    if (offset + len > up->m.size) {
        answer(a, 400, "chunk ends at %llu, past the clip's declared size %llu",
               (unsigned long long)(offset + len), (unsigned long long)up->m.size);
        return;
    }
    char p[PATH_MAX + 80], err[256];
    int fd = -1;
    path_of(u, up->m.upload_id, "data", p, sizeof p);
    int rc = fv_os_open(p, O_WRONLY, 0600, &fd, err, sizeof err);
    if (rc == FV_OK) rc = fv_os_pwrite_all(fd, data, len, (off_t)offset, p, err, sizeof err);
    if (rc == FV_OK) rc = fv_os_fdatasync(fd, p, err, sizeof err);
    if (rc != FV_OK && fd >= 0) /* U1: the offset stays; cut what may have been written */
        fv_os_ftruncate(fd, (off_t)up->offset, p, NULL, 0);
    if (fd >= 0) close(fd);
    if (rc != FV_OK) {
        fv_error("clips: %s", err);
        answer(a, 500, "the chunk could not be written (storage); resend it later");
        at_upload(a, up);
        return;
    }
    up->offset += len;
    up->active_ms = now_ms;
    answer_upload(a, 200, up);
}

void fv_clip_up_status(struct fv_clip_up *u, const char *device, const char *upload_id,
                       struct fv_clip_answer *a)
{
    memset(a, 0, sizeof *a);
    struct upload *up = find(u, device, upload_id, NULL);
    if (up == NULL)
        answer(a, 404, "unknown upload %s (expired, finished, or never created)", upload_id);
    else
        answer_upload(a, 200, up);
}

int fv_clip_file_sha256(const char *path, char out[65])
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return FV_EIO;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;
    static __thread unsigned char buf[1 << 16];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0)
        ok = EVP_DigestUpdate(c, buf, n) == 1;
    unsigned char md[32];
    unsigned int mdlen = 0;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(c, md, &mdlen) == 1;
    EVP_MD_CTX_free(c);
    fclose(f);
    if (!ok) return FV_EIO;
    fv_hex(md, sizeof md, out);
    return FV_OK;
}

int fv_clip_check_mcap(const char *path, char *err, size_t errlen)
{
    struct fv_mcap_file f = {.fd = open(path, O_RDONLY | O_CLOEXEC), .path = path};
    if (f.fd < 0) {
        fv_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return FV_EIO;
    }
    struct fv_mcap_source src;
    struct fv_mcap_reader *r = NULL;
    char why[384] = "";
    int rc = fv_mcap_source_file(&src, &f, why, sizeof why);
    if (rc == FV_OK) rc = fv_mcap_reader_open(&src, &r, why, sizeof why);
    if (rc == FV_OK) rc = fv_mcap_scan(r, NULL, NULL, NULL, why, sizeof why);
    fv_mcap_reader_free(r);
    close(f.fd);
    if (rc == FV_EIO)
        fv_seterr(err, errlen, "%s: read failed (%s)", path, why);
    else if (rc != FV_OK)
        fv_seterr(err, errlen, "not MCAP (%s)", why);
    return rc == FV_EIO || rc == FV_ENOMEM || rc == FV_OK ? rc : FV_ECORRUPT;
}

void fv_clip_up_finish(struct fv_clip_up *u, const char *device, const char *upload_id,
                       struct fv_clip_answer *a)
{
    memset(a, 0, sizeof *a);
    size_t at = 0;
    struct upload *up = find(u, device, upload_id, &at);
    if (up == NULL) {
        answer(a, 404, "unknown upload %s (expired, finished, or never created)", upload_id);
        return;
    }
    if (up->offset != up->m.size) {
        answer(a, 409, "%llu of %llu bytes are in; send the rest first",
               (unsigned long long)up->offset, (unsigned long long)up->m.size);
        at_upload(a, up);
        return;
    }
    char p[PATH_MAX + 80], got[65], err[256];
    path_of(u, up->m.upload_id, "data", p, sizeof p);
    if (fv_clip_file_sha256(p, got) != FV_OK) {
        answer(a, 500, "the upload cannot be read back (storage); try finish again later");
        return;
    }
    if (strcmp(got, up->m.sha256) != 0) {
        answer(a, 422,
               "the clip's SHA-256 is %s, not the %s declared; the upload is discarded, "
               "nothing stored",
               got, up->m.sha256);
        discard(u, at);
        return;
    }
    /* The whole file is read and checked (data/mcap.h fv_mcap_scan): a damaged one is refused
     * with the offset of the damage. The store hook adds the store's signals around
     * trigger_ms as channels before sealing (data/clip_server.h X1-X4). */
    if (fv_clip_check_mcap(p, err, sizeof err) != FV_OK) {
        answer(a, 422, "%s; the upload is discarded, nothing stored", err);
        discard(u, at);
        return;
    }
    char why[256] = "";
    int rc = u->hooks->store(u->hooks->arg, &up->m, p, why, sizeof why);
    if (rc == FV_EINVAL) {
        answer(a, 422, "%s; the upload is discarded, nothing stored", why);
        discard(u, at);
        return;
    }
    if (rc != FV_OK) {
        answer(a, 500, "the clip could not be stored (%s); try finish again later", why);
        return;
    }
    answer_upload(a, 201, up);
    discard(u, at);
}

size_t fv_clip_up_forget(struct fv_clip_up *u, const char *device)
{
    size_t gone = 0;
    for (size_t i = 0; i < u->n;) {
        if (strcmp(u->ups[i]->m.device, device) == 0) {
            discard(u, i);
            gone++;
        } else {
            i++;
        }
    }
    return gone;
}

size_t fv_clip_up_expire(struct fv_clip_up *u, int64_t now_ms)
{
    size_t gone = 0;
    for (size_t i = 0; i < u->n;) {
        if (now_ms - u->ups[i]->active_ms > (int64_t)u->cfg->expire_ms) {
            discard(u, i);
            gone++;
        } else {
            i++;
        }
    }
    return gone;
}
