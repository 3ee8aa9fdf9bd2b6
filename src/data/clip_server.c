/* clip_server.c - the clip upload endpoint on its own thread (clip_server.h). */
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <openssl/ssl.h>

#include "crypto/certs.h"
#include "crypto/keys.h"
#include "data/clip_server.h"
#include "data/clip_signals.h"
#include "data/clip_store.h"
#include "os/fsio.h"
#include "privacy/location.h"
#include "privacy/subjects.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define SMALL_BODY_MAX 65536 /* a create's JSON */

struct fv_clip_server {
    struct fv_clip_server_cfg c;
    char dir[PATH_MAX]; /* DATA/clips */
    struct fv_keystore *ks;
    struct fv_clip_up *up;
    struct fv_clip_up_hooks hooks;
    struct lws_context *ctx;
    lws_sorted_usec_list_t sul; /* the expiry tick */
    /* The request being handled: the device id from its certificate (the state machine
     * names devices by keystore pseudonym; the hooks need the id). */
    const char *req_device;
    /* Erasures to apply to the open uploads (fv_clip_server_forget, any thread). */
    pthread_mutex_t mu;
    char forget[16][FV_DEVICE_ID_MAX + 1];
    size_t nforget;
    struct fv_clip_audit audit[FV_CLIP_AUDIT_QUEUE]; /* X3, under mu */
    size_t naudit;
    pthread_t thread;
    int started;
    int stop;    /* atomic */
    int stopped; /* under mu: fv_clip_server_stop ran (no context any more) */
};

/* One request on a connection. */
struct clip_req {
    char method[8], path[160], chunk_sha[80], offset[24];
    struct fv_identity ident;
    int have_ident;
    struct fv_buf body;
    size_t body_max;
    int awaiting, too_large;
    struct fv_buf resp;
    int status;
    size_t sent;
};

/* ---- the hooks --------------------------------------------------------------------------- */

static int consent_ok(void *arg, const char *device_pseudo, int64_t trigger_ms, char *why, size_t n)
{
    struct fv_clip_server *s = arg;
    const char *device = s->req_device;
    (void)device_pseudo;
    char subject[FV_SUBJECT_NAME_MAX + 1];
    int then = 0, now = 0;
    /* S5: collected only where consent held when it was recorded, and still holds. */
    if (fv_subject_for_time(s->ks, device, trigger_ms, subject, NULL) != FV_OK ||
        fv_consent_at(s->ks, NULL, subject, "clips", trigger_ms, &then) != FV_OK ||
        fv_consent_at(s->ks, NULL, subject, "clips", fv_now_ms(), &now) != FV_OK)
        then = now = 0;
    if (!now)
        snprintf(why, n, "the vehicle's owner has not consented to purpose clips");
    else if (!then)
        snprintf(why, n,
                 "the vehicle's owner had not consented to purpose clips at the "
                 "trigger time");
    return then && now;
}

static int stored_bytes(void *arg, const char *device, const char *clip_id, uint64_t *bytes,
                        int *exists)
{
    struct fv_clip_server *s = arg;
    return fv_clip_store_device(s->ks, device, clip_id, bytes, exists);
}

/* X3: 1 if the queue has room for a record (only the clip thread queues, so it still has
 * after the read). */
static int audit_room(struct fv_clip_server *s)
{
    pthread_mutex_lock(&s->mu);
    int room = s->naudit < FV_CLIP_AUDIT_QUEUE;
    pthread_mutex_unlock(&s->mu);
    return room;
}

static void audit_push(struct fv_clip_server *s, const struct fv_clip_audit *a)
{
    pthread_mutex_lock(&s->mu);
    if (s->naudit < FV_CLIP_AUDIT_QUEUE) s->audit[s->naudit++] = *a;
    pthread_mutex_unlock(&s->mu);
}

size_t fv_clip_server_audit_drain(struct fv_clip_server *s,
                                  int (*fn)(void *arg, const struct fv_clip_audit *r), void *arg)
{
    if (s == NULL) return 0;
    size_t done = 0;
    pthread_mutex_lock(&s->mu);
    while (done < s->naudit && fn(arg, &s->audit[done]) == 0)
        done++;
    memmove(s->audit, s->audit + done, (s->naudit - done) * sizeof s->audit[0]);
    s->naudit -= done;
    pthread_mutex_unlock(&s->mu);
    return done;
}

static void count_outcome(struct fv_clip_server *s, int outcome)
{
    if (s->c.signal_counts) s->c.signal_counts[outcome]++;
}

/* X1-X4: the subject's stored signals around the trigger added to the clip at path, written
 * to out (the path to store then, *wm its metadata with the new size and SHA-256); *use_out
 * 0: store the clip as uploaded. */
static void add_signals(struct fv_clip_server *s, const char *subject, const struct fv_clip_meta *m,
                        const char *path, const char *out, struct fv_clip_meta *wm, int *use_out)
{
    *use_out = 0;
    *wm = *m;
    if (s->c.store == NULL) return;
    int64_t pre = s->c.clips->signals_pre_ms, post = s->c.clips->signals_post_ms;
    if (s->c.window) s->c.window(s->c.campaign_arg, m->campaign, &pre, &post);
    struct fv_clip_audit a = {.from_ms = m->trigger_ms - pre, .to_ms = m->trigger_ms + post};
    snprintf(a.clip, sizeof a.clip, "%s", m->upload_id);
    snprintf(a.result, sizeof a.result, "allow");
    if (!audit_room(s)) { /* X3: nothing read unaudited */
        fv_warn("clips: audit queue full: upload %s stored without signals", m->upload_id);
        count_outcome(s, FV_CLIP_SIGNALS_FAILED);
        return;
    }
    const unsigned char *dek = NULL;
    char err[384] = "";
    struct fv_clip_signals *sig = NULL;
    int rc = fv_keystore_dek(s->ks, subject, 0, &dek, a.subject);
    if (rc == FV_ENOENT) { /* no data key: the subject never sent anything */
        count_outcome(s, FV_CLIP_SIGNALS_NONE);
        return;
    }
    if (rc == FV_OK) rc = fv_clip_signals_new(&sig);
    int read = rc == FV_OK;
    if (read)
        rc = fv_clip_signals_read(sig, s->c.store, a.subject, dek, a.from_ms, a.to_ms, err,
                                  sizeof err);
    if (read) { /* the store was read (or a read began): X3's record */
        a.signals = sig && rc == FV_OK ? fv_clip_signals_count(sig) : 0;
        a.samples = sig && rc == FV_OK ? fv_clip_signals_samples(sig) : 0;
        if (rc != FV_OK) snprintf(a.result, sizeof a.result, "error");
        audit_push(s, &a);
    }
    if (rc == FV_OK && fv_clip_signals_count(sig) == 0) {
        count_outcome(s, FV_CLIP_SIGNALS_NONE);
    } else {
        struct stat st;
        if (rc == FV_OK) rc = fv_clip_signals_write(sig, path, out, err, sizeof err);
        if (rc == FV_OK && (stat(out, &st) != 0 || fv_clip_file_sha256(out, wm->sha256) != FV_OK)) {
            fv_seterr(err, sizeof err, "%s cannot be read back", out);
            fv_os_unlink(out, NULL, 0);
            rc = FV_EIO;
        }
        if (rc == FV_OK) {
            wm->size = (uint64_t)st.st_size;
            *use_out = 1;
            count_outcome(s, FV_CLIP_SIGNALS_ADDED);
            if (fv_clip_signals_dropped(sig))
                fv_warn("clips: upload %s: %zu signal samples over the limit left out",
                        m->upload_id, fv_clip_signals_dropped(sig));
        } else {
            fv_warn("clips: upload %s stored without signals: %s", m->upload_id,
                    err[0] ? err : fv_strerror(rc));
            count_outcome(s, FV_CLIP_SIGNALS_FAILED);
        }
    }
    fv_clip_signals_free(sig);
}

static int store_clip(void *arg, const struct fv_clip_meta *m, const char *path, char *why,
                      size_t n)
{
    struct fv_clip_server *s = arg;
    char subject[FV_SUBJECT_NAME_MAX + 1];
    /* The clip belongs to the owner period of its trigger time, like a record of its time. */
    int rc = fv_subject_for_time(s->ks, s->req_device, m->trigger_ms, subject, NULL);
    if (rc) {
        snprintf(why, n, "the vehicle's subject cannot be read");
        return rc;
    }
    /* Consent may have been withdrawn while the clip was uploading. */
    if (!consent_ok(s, m->device, m->trigger_ms, why, n)) return FV_EINVAL;
    struct fv_clip_place place = {0};
    if (s->c.place && s->c.place(s->c.place_arg, s->req_device, &place.lat, &place.lon) == 1)
        place.have = fv_loc_coarsen_point(s->c.grid_m > 0 ? s->c.grid_m : 1000.0, &place.lat,
                                          &place.lon) == FV_OK;
    char err[256] = "", with[PATH_MAX + 80];
    struct fv_clip_meta wm;
    int use = 0;
    snprintf(with, sizeof with, "%s/tmp/signals-%s.mcap", s->dir, m->upload_id);
    add_signals(s, subject, m, path, with, &wm, &use);
    rc = fv_clip_store_put(s->ks, s->dir, subject, use ? &wm : m, use ? with : path, &place,
                           fv_now_ms(), err, sizeof err);
    if (use) fv_os_unlink(with, NULL, 0);
    if (rc) {
        fv_error("clips: storing upload %s failed: %s", m->upload_id, err);
        snprintf(why, n, "storage");
        return rc;
    }
    if (s->c.clip_stored) s->c.clip_stored(s->c.campaign_arg, s->req_device, m->campaign, m->size);
    if (s->c.stored) s->c.stored(s->c.stored_arg);
    return FV_OK;
}

/* The campaign side's check, with the device's id. */
static int campaign_ok(void *arg, const char *device_pseudo, const char *campaign_id, char *why,
                       size_t n)
{
    struct fv_clip_server *s = arg;
    (void)device_pseudo;
    return s->c.campaign_ok(s->c.campaign_arg, s->req_device, campaign_id, why, n);
}

/* Erasures queued by fv_clip_server_forget: the devices' open uploads are discarded. */
static void drain_forget(struct fv_clip_server *s)
{
    char ids[16][FV_DEVICE_ID_MAX + 1];
    pthread_mutex_lock(&s->mu);
    size_t n = s->nforget;
    memcpy(ids, s->forget, n * sizeof ids[0]);
    s->nforget = 0;
    pthread_mutex_unlock(&s->mu);
    if (n) fv_keystore_forget(s->ks); /* keys the erasure destroyed are seen as destroyed */
    for (size_t i = 0; i < n; i++) {
        char pseudo[FV_PSEUDONYM_LEN + 1];
        if (fv_keystore_pseudonym(s->ks, ids[i], pseudo) == FV_OK) fv_clip_up_forget(s->up, pseudo);
    }
}

/* ---- HTTP -------------------------------------------------------------------------------- */

static void respond(struct clip_req *r, const struct fv_clip_answer *a, const char *clip_id)
{
    json_t *j;
    if (a->status >= 400) {
        j = json_pack("{s:s}", "error", a->why);
        if (j && a->upload_id[0]) {
            json_object_set_new(j, "upload_id", json_string(a->upload_id));
            json_object_set_new(j, "offset", json_integer((json_int_t)a->offset));
        }
    } else {
        j = json_pack("{s:s,s:I,s:I}", "upload_id", a->upload_id, "offset", (json_int_t)a->offset,
                      "size", (json_int_t)a->size);
        if (j && clip_id) {
            json_object_set_new(j, "clip_id", json_string(clip_id));
            json_object_set_new(j, "deid", json_string("pending"));
        }
    }
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    fv_buf_reset(&r->resp);
    r->status = a->status;
    if (text == NULL || fv_buf_appendf(&r->resp, "%s\n", text) != FV_OK) {
        r->status = 500;
        fv_buf_reset(&r->resp);
    }
    free(text);
}

static void respond_error(struct clip_req *r, int status, const char *why)
{
    struct fv_clip_answer a;
    memset(&a, 0, sizeof a);
    a.status = status;
    snprintf(a.why, sizeof a.why, "%s", why);
    respond(r, &a, NULL);
}

/* The upload id after /clips/v1/uploads/ and what follows it ("", "/finish"). */
static int split_path(const char *path, char id[FV_CLIP_UPLOAD_LEN + 1], const char **rest)
{
    static const char pre[] = "/clips/v1/uploads/";
    if (strncmp(path, pre, sizeof pre - 1) != 0) return 0;
    const char *p = path + sizeof pre - 1;
    size_t n = strcspn(p, "/");
    if (n != FV_CLIP_UPLOAD_LEN) return 0;
    memcpy(id, p, n);
    id[n] = '\0';
    *rest = p + n;
    return 1;
}

static void handle(struct fv_clip_server *s, struct clip_req *r)
{
    struct fv_clip_answer a;
    char dev[FV_PSEUDONYM_LEN + 1];
    if (fv_keystore_pseudonym(s->ks, r->ident.device_id, dev) != FV_OK) {
        respond_error(r, 500, "the catalog cannot be read; try again later");
        return;
    }
    s->req_device = r->ident.device_id;
    drain_forget(s);
    char id[FV_CLIP_UPLOAD_LEN + 1];
    const char *rest = "";
    int64_t now = fv_now_ms();
    fv_clip_up_expire(s->up, now);
    if (r->too_large) {
        respond_error(r, 413, "request body over the limit (a chunk at most clips.max_chunk_mb)");
        return;
    }
    if (strcmp(r->path, "/clips/v1/uploads") == 0) {
        if (strcmp(r->method, "POST") != 0) {
            respond_error(r, 405, "POST to create an upload");
            return;
        }
        fv_clip_up_create(s->up, dev, (const char *)r->body.data, r->body.len, now, &a);
        respond(r, &a, NULL);
        return;
    }
    if (!split_path(r->path, id, &rest)) {
        respond_error(r, 404, "no such resource (see docs/protocol.md, Clip upload)");
        return;
    }
    if (rest[0] == '\0' && (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0)) {
        fv_clip_up_status(s->up, dev, id, &a);
    } else if (rest[0] == '\0' && strcmp(r->method, "PUT") == 0) {
        char *end = NULL;
        unsigned long long off = strtoull(r->offset, &end, 10);
        if (r->offset[0] < '0' || r->offset[0] > '9' || *end) {
            respond_error(r, 400, "offset: expected ?offset=N, the chunk's first byte");
            return;
        }
        fv_clip_up_chunk(s->up, dev, id, off, r->body.data ? r->body.data : (const void *)"",
                         r->body.len, r->chunk_sha, now, &a);
    } else if (strcmp(rest, "/finish") == 0 && strcmp(r->method, "POST") == 0) {
        fv_clip_up_finish(s->up, dev, id, &a);
        respond(r, &a, a.status == 201 ? a.clip_id : NULL);
        return;
    } else {
        respond_error(r, 405, "GET or HEAD an upload's status, PUT a chunk, POST .../finish");
        return;
    }
    respond(r, &a, NULL);
}

static int identify(struct lws *wsi, struct clip_req *r)
{
    char err[256];
    SSL *ssl = lws_get_ssl(wsi);
    STACK_OF(X509) *chain = ssl ? SSL_get0_verified_chain(ssl) : NULL;
    X509 *leaf = (chain && sk_X509_num(chain) > 0) ? sk_X509_value(chain, 0) : NULL;
    if (leaf == NULL || fv_identity_from_cert(leaf, &r->ident, err, sizeof err) != FV_OK) {
        fv_warn("clips: request refused: %s", leaf ? err : "no verified client certificate");
        return -1;
    }
    r->have_ident = 1;
    return 0;
}

static const char *method_of(struct lws *wsi)
{
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI)) return "GET";
    if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI)) return "POST";
    if (lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI)) return "PUT";
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI)) return "HEAD";
    return "OTHER";
}

static void req_end(struct clip_req *r)
{
    fv_buf_free(&r->body);
    fv_buf_free(&r->resp);
}

static int send_answer(struct lws *wsi, struct clip_req *r)
{
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start,
                                      *end = buf + sizeof buf - 1;
    int head = strcmp(r->method, "HEAD") == 0;
    if (head) fv_buf_reset(&r->resp);
    if (lws_add_http_common_headers(wsi, (unsigned)r->status, "application/json", r->resp.len, &p,
                                    end))
        return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end)) return -1;
    r->sent = 0;
    if (r->resp.len == 0) {
        req_end(r);
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    lws_callback_on_writable(wsi);
    return 0;
}

static int clip_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    struct clip_req *r = user;
    struct lws_vhost *vh = wsi ? lws_get_vhost(wsi) : NULL;
    struct fv_clip_server *s = vh ? lws_vhost_user(vh) : NULL;
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
        return fv_tls_client_refused(user, len, NULL, 0, NULL);
    case LWS_CALLBACK_HTTP: {
        if (s == NULL || r == NULL) return -1;
        req_end(r);
        memset(r, 0, sizeof *r);
        if (identify(wsi, r) != 0) return -1;
        snprintf(r->path, sizeof r->path, "%s", (const char *)in);
        snprintf(r->method, sizeof r->method, "%s", method_of(wsi));
        if (lws_hdr_custom_copy(wsi, r->chunk_sha, sizeof r->chunk_sha, "x-chunk-sha256:", 15) < 0)
            r->chunk_sha[0] = '\0';
        const char *off = lws_get_urlarg_by_name(wsi, "offset=", r->offset, sizeof r->offset);
        if (off == NULL)
            r->offset[0] = '\0';
        else
            memmove(r->offset, off, strlen(off) + 1);
        r->body_max = strcmp(r->method, "PUT") == 0 ? s->c.clips->max_chunk_bytes : SMALL_BODY_MAX;
        if ((strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0) &&
            lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
            char cl[24] = "";
            lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH);
            unsigned long long n = strtoull(cl, NULL, 10);
            if (n > r->body_max) r->too_large = 1;
            if (n > 0) {
                r->awaiting = 1;
                return 0;
            }
        }
        handle(s, r);
        fv_buf_free(&r->body);
        return send_answer(wsi, r);
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (r == NULL || !r->awaiting) return 0;
        if (r->body.len + len > r->body_max)
            r->too_large = 1;
        else if (!r->too_large && fv_buf_append(&r->body, in, len) != FV_OK)
            return -1;
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (r == NULL || s == NULL || !r->awaiting) return 0;
        r->awaiting = 0;
        handle(s, r);
        fv_buf_free(&r->body); /* the answer is all that is left of the request */
        return send_answer(wsi, r);
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (r == NULL || r->sent >= r->resp.len) return 0;
        unsigned char buf[LWS_PRE + 4096];
        size_t n = r->resp.len - r->sent;
        if (n > sizeof buf - LWS_PRE) n = sizeof buf - LWS_PRE;
        memcpy(buf + LWS_PRE, r->resp.data + r->sent, n);
        int last = r->sent + n == r->resp.len;
        if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) !=
            (int)n)
            return -1;
        r->sent += n;
        if (!last) {
            lws_callback_on_writable(wsi);
            return 0;
        }
        req_end(r); /* nothing of the request outlives its answer */
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (r) req_end(r);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (s) drain_forget(s);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols clip_protocols[] = {
    {"http", clip_cb, sizeof(struct clip_req), 0, 0, NULL, 0}, {NULL, NULL, 0, 0, 0, NULL, 0}};

/* ---- the thread -------------------------------------------------------------------------- */

static void tick(lws_sorted_usec_list_t *sul)
{
    struct fv_clip_server *s = lws_container_of(sul, struct fv_clip_server, sul);
    drain_forget(s);
    size_t gone = fv_clip_up_expire(s->up, fv_now_ms());
    if (gone) fv_info("clips: %zu partial uploads expired and were removed", gone);
    lws_sul_schedule(s->ctx, 0, &s->sul, tick, 10 * LWS_US_PER_SEC);
}

static void *clip_main(void *arg)
{
    struct fv_clip_server *s = arg;
    lws_sul_schedule(s->ctx, 0, &s->sul, tick, 10 * LWS_US_PER_SEC);
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE))
        if (lws_service(s->ctx, 0) < 0) break;
    return NULL;
}

static void server_free(struct fv_clip_server *s)
{
    if (s->ctx) lws_context_destroy(s->ctx);
    pthread_mutex_destroy(&s->mu);
    fv_clip_up_close(s->up);
    if (s->ks) fv_keystore_close(s->ks);
    free(s);
}

/* DATA/clips/tmp for the clips with signals (X1-X4) while they are sealed, created; the
 * clear copies a crash left there are removed. */
static int signals_tmp(struct fv_clip_server *s, char *err, size_t errlen)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s/tmp", s->dir);
    int rc = fv_os_mkdirs(tmp, 0700, err, errlen);
    DIR *d = rc == FV_OK ? opendir(tmp) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "signals-", 8) != 0) continue;
        char p[PATH_MAX + 300];
        snprintf(p, sizeof p, "%s/%s", tmp, e->d_name);
        fv_os_unlink(p, NULL, 0);
    }
    if (d) closedir(d);
    return rc;
}

int fv_clip_server_start(struct fv_clip_server **out, const struct fv_clip_server_cfg *c, char *err,
                         size_t errlen)
{
    *out = NULL;
    struct fv_clip_server *s = calloc(1, sizeof *s);
    if (s == NULL) return FV_ENOMEM;
    s->c = *c;
    pthread_mutex_init(&s->mu, NULL);
    if (s->c.campaign_ok == NULL) {
        s->c.campaign_ok = fv_clips_campaign_listed;
        s->c.campaign_arg = (void *)c->clips;
    }
    snprintf(s->dir, sizeof s->dir, "%s/clips", c->data_dir);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/catalog.db", c->data_dir);
    int rc = fv_keystore_open(path, c->kek, &s->ks, err, errlen);
    if (rc == FV_OK) rc = fv_subjects_init(s->ks, err, errlen);
    if (rc == FV_OK) rc = fv_clip_store_init(s->ks, err, errlen);
    s->hooks = (struct fv_clip_up_hooks){.campaign_ok = campaign_ok,
                                         .campaign_arg = s,
                                         .consent_ok = consent_ok,
                                         .stored = stored_bytes,
                                         .store = store_clip,
                                         .arg = s};
    if (rc == FV_OK) rc = fv_clip_up_open(s->dir, c->clips, &s->hooks, &s->up, err, errlen);
    if (rc == FV_OK) rc = signals_tmp(s, err, errlen);
    if (rc) {
        server_free(s);
        return rc;
    }
    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    ci.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    ci.port = CONTEXT_PORT_NO_LISTEN;
    s->ctx = lws_create_context(&ci);
    if (s->ctx == NULL) {
        server_free(s);
        fv_seterr(err, errlen, "cannot create the clip endpoint's libwebsockets context");
        return FV_ENOMEM;
    }
    struct fv_server_files tls;
    fv_certs_server_files(c->certs_dir, &tls);
    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof vi);
    vi.vhost_name = "clips";
    vi.iface = c->clips->host;
    vi.port = c->clips->port;
    vi.protocols = clip_protocols;
    vi.user = s;
    vi.ssl_cert_filepath = tls.cert;
    vi.ssl_private_key_filepath = tls.key;
    vi.ssl_ca_filepath = tls.ca;
    vi.alpn = "http/1.1";
    vi.options =
        LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    vi.timeout_secs = 60;
    if (lws_create_vhost(s->ctx, &vi) == NULL) {
        fv_seterr(err, errlen, "cannot listen for clip uploads on %s:%d (in use, or TLS files bad)",
                  c->clips->host, c->clips->port);
        server_free(s);
        return FV_EIO;
    }
    if (pthread_create(&s->thread, NULL, clip_main, s) != 0) {
        server_free(s);
        fv_seterr(err, errlen, "cannot start the clip endpoint's thread");
        return FV_ENOMEM;
    }
    s->started = 1;
    fv_info("clip uploads on https://%s:%d (mutual TLS, CA %s)", c->clips->host, c->clips->port,
            tls.ca);
    *out = s;
    return FV_OK;
}

void fv_clip_server_forget(struct fv_clip_server *s, const char *device)
{
    if (s == NULL) return;
    pthread_mutex_lock(&s->mu);
    if (s->nforget < 16) snprintf(s->forget[s->nforget++], sizeof s->forget[0], "%s", device);
    if (!s->stopped) lws_cancel_service(s->ctx);
    pthread_mutex_unlock(&s->mu);
}

void fv_clip_server_stop(struct fv_clip_server *s)
{
    if (s == NULL) return;
    pthread_mutex_lock(&s->mu);
    int was = s->stopped;
    s->stopped = 1;
    pthread_mutex_unlock(&s->mu);
    if (was) return;
    if (s->started) {
        __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
        lws_cancel_service(s->ctx);
        pthread_join(s->thread, NULL);
    }
    lws_context_destroy(s->ctx);
    s->ctx = NULL;
}

void fv_clip_server_free(struct fv_clip_server *s)
{
    if (s == NULL) return;
    fv_clip_server_stop(s);
    server_free(s);
}
