/* clipupload.c - the simulator's synthetic clips and their upload (clipupload.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "data/campaign.h"
#include "data/mcap.h"
#include "sim/clipupload.h"
#include "util/err.h"
#include "util/hex.h"

/* ---- the clip ---------------------------------------------------------------------------- */

/* xorshift64*: deterministic from the seed */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* JSON schemas of the sensor channels (docs/data-engine.md "Clip channels"). */
static const char imu_schema[] =
    "{\"type\":\"object\",\"properties\":{\"ax\":{\"type\":\"number\"},"
    "\"ay\":{\"type\":\"number\"},\"az\":{\"type\":\"number\"},"
    "\"gz\":{\"type\":\"number\"}}}";
static const char can_schema[] =
    "{\"type\":\"object\",\"properties\":{\"VehicleSpeed\":{\"type\":\"number\"},"
    "\"BrakePedal\":{\"type\":\"integer\"},\"Gear\":{\"type\":\"string\"}}}";

/* Does the clip record sensor (clipupload.h: the campaign's channels)? */
static int wants(const struct fv_sim_clip *c, const char *sensor)
{
    if (c->nchannels == 0) return 1;
    static const char *const sensors[] = {FV_CAMPAIGN_SENSORS};
    for (size_t i = 0; i < c->nchannels; i++) {
        if (strcmp(c->channels[i], sensor) == 0) return 1;
        if (strcmp(sensor, "can") != 0) continue;
        int is_sensor = 0; /* a signal: recorded on the CAN-like channel */
        for (size_t k = 0; k < sizeof sensors / sizeof sensors[0]; k++)
            is_sensor |= strcmp(c->channels[i], sensors[k]) == 0;
        if (!is_sensor) return 1;
    }
    return 0;
}

/* The clip's channels and messages on w. */
static int clip_messages(const struct fv_sim_clip *c, struct fv_mcap_writer *w, char *err,
                         size_t errlen)
{
    uint64_t s = c->seed * 0x9e3779b97f4a7c15ull + 1;
    double pre = c->pre_s > 0 ? c->pre_s : 1.0, post = c->post_s > 0 ? c->post_s : 1.0;
    size_t frames = c->frames ? c->frames : 5, fbytes = c->frame_bytes ? c->frame_bytes : 98304;
    uint64_t t0 = (uint64_t)(c->trigger_ms - (int64_t)(pre * 1000)) * 1000000ull;
    uint64_t span = (uint64_t)((pre + post) * 1e9);
    char fb[32];
    snprintf(fb, sizeof fb, "%zu", fbytes);
    const char *cam_k[] = {"sensor", "frame_bytes"}, *cam_v[] = {"camera_front", fb};
    const char *imu_k[] = {"sensor", "rate_hz"}, *imu_v[] = {"imu", "100"};
    const char *can_k[] = {"sensor", "rate_hz"}, *can_v[] = {"can", "20"};
    uint16_t s_imu = 0, s_can = 0, cam = 0, imu = 0, can = 0;
    int rc = fv_mcap_add_schema(w, "fleetvault.Imu", "jsonschema", imu_schema,
                                sizeof imu_schema - 1, &s_imu, err, errlen);
    if (rc == FV_OK)
        rc = fv_mcap_add_schema(w, "fleetvault.Can", "jsonschema", can_schema,
                                sizeof can_schema - 1, &s_can, err, errlen);
    int want_cam = wants(c, "camera_front"), want_imu = wants(c, "imu"), want_can = wants(c, "can");
    if (rc == FV_OK && want_cam)
        rc = fv_mcap_add_channel(w, 0, "/camera/front", "x-fleetvault-raw", cam_k, cam_v, 2, &cam,
                                 err, errlen);
    if (rc == FV_OK && want_imu)
        rc = fv_mcap_add_channel(w, s_imu, "/imu", "json", imu_k, imu_v, 2, &imu, err, errlen);
    if (rc == FV_OK && want_can)
        rc = fv_mcap_add_channel(w, s_can, "/can", "json", can_k, can_v, 2, &can, err, errlen);
    if (rc) return rc;
    unsigned char *frame = malloc(fbytes);
    if (frame == NULL) return FV_ENOMEM;
    for (size_t f = 0; rc == FV_OK && want_cam && f < frames; f++) {
        for (size_t i = 0; i + 8 <= fbytes; i += 8) {
            uint64_t v = rnd(&s);
            memcpy(frame + i, &v, 8);
        }
        uint64_t t = t0 + span * f / frames;
        rc = fv_mcap_add_message(w, cam, (uint32_t)f, t, t, frame, fbytes, err, errlen);
    }
    free(frame);
    size_t nimu = (size_t)((pre + post) * 100); /* 100 Hz */
    for (size_t i = 0; rc == FV_OK && want_imu && i < nimu; i++) {
        char j[160];
        double t = (double)i / 100.0;
        int n = snprintf(j, sizeof j, "{\"ax\":%.4f,\"ay\":%.4f,\"az\":%.4f,\"gz\":%.5f}",
                         0.3 * sin(t * 3.1), 0.1 * cos(t * 1.7), 9.81 + 0.02 * sin(t * 9.0),
                         0.01 * sin(t));
        uint64_t ts = t0 + i * 10000000ull;
        rc = fv_mcap_add_message(w, imu, (uint32_t)i, ts, ts, j, (size_t)n, err, errlen);
    }
    size_t ncan = (size_t)((pre + post) * 20); /* 20 Hz */
    for (size_t i = 0; rc == FV_OK && want_can && i < ncan; i++) {
        char j[160];
        int n = snprintf(j, sizeof j, "{\"VehicleSpeed\":%.1f,\"BrakePedal\":%d,\"Gear\":\"D\"}",
                         60.0 - (double)i * 0.5, i * 50 >= pre * 1000 ? 1 : 0);
        uint64_t ts = t0 + i * 50000000ull;
        rc = fv_mcap_add_message(w, can, (uint32_t)i, ts, ts, j, (size_t)n, err, errlen);
    }
    return rc;
}

int fv_sim_clip_build(const struct fv_sim_clip *c, struct fv_buf *out)
{
    struct fv_mcap_write_opts o = {.compression = FV_MCAP_ZSTD, .library = "fleetvault-sim"};
    struct fv_mcap_writer *w = NULL;
    char err[256];
    int rc = fv_mcap_writer_open_mem(out, &o, &w, err, sizeof err);
    if (rc) return rc;
    rc = clip_messages(c, w, err, sizeof err);
    if (rc) {
        fv_mcap_writer_free(w);
        return rc;
    }
    return fv_mcap_writer_close(w, err, sizeof err);
}

/* ---- the upload -------------------------------------------------------------------------- */

struct body {
    char text[512];
    size_t n;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t n = size * nmemb, room = sizeof b->text - 1 - b->n;
    memcpy(b->text + b->n, p, n < room ? n : room);
    b->n += n < room ? n : room;
    while (b->n && (b->text[b->n - 1] == '\n' || b->text[b->n - 1] == '\r'))
        b->n--; /* one line in messages */
    b->text[b->n] = '\0';
    return n;
}

/* A request body read by curl, cut after `cut` bytes (the interruption) when cut > 0. */
struct src {
    const unsigned char *p;
    size_t n, at, cut;
};

static size_t on_read(char *dst, size_t size, size_t nmemb, void *arg)
{
    struct src *s = arg;
    if (s->cut && s->at >= s->cut) return CURL_READFUNC_ABORT;
    size_t room = size * nmemb, left = (s->cut ? s->cut : s->n) - s->at;
    size_t n = left < room ? left : room;
    memcpy(dst, s->p + s->at, n);
    s->at += n;
    return n;
}

struct conn {
    const struct fv_sim_upload *u;
    char cert[1024], key[1024], ca[1024];
};

/* One request; *status is the HTTP status (0: no answer). */
static int request(const struct conn *c, const char *method, const char *path, const void *body,
                   size_t len, const char *chunk_sha, size_t cut, int *status, struct body *b)
{
    CURL *h = curl_easy_init();
    if (h == NULL) return FV_ENOMEM;
    char url[1024], hdr[128];
    snprintf(url, sizeof url, "%s%s", c->u->url, path);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    hl = curl_slist_append(hl, "Expect:"); /* no 100-continue round trip */
    if (chunk_sha) {
        snprintf(hdr, sizeof hdr, "X-Chunk-SHA256: %s", chunk_sha);
        hl = curl_slist_append(hl, hdr);
    }
    struct src s = {.p = body, .n = len, .cut = cut};
    memset(b, 0, sizeof *b);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert);
    curl_easy_setopt(h, CURLOPT_SSLKEY, c->key);
    curl_easy_setopt(h, CURLOPT_CAINFO, c->ca);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &s);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
    }
    CURLcode cc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    *status = cc == CURLE_OK ? (int)code : 0;
    if (cc != CURLE_OK) snprintf(b->text, sizeof b->text, "%s", curl_easy_strerror(cc));
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return FV_OK;
}

static void sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL);
    fv_hex(md, sizeof md, out);
}

static uint64_t answer_offset(const struct body *b)
{
    json_t *j = json_loads(b->text, 0, NULL);
    uint64_t off = (uint64_t)json_integer_value(json_object_get(j, "offset"));
    json_decref(j);
    return off;
}

int fv_sim_clip_upload(const struct fv_sim_upload *u, const void *clip, size_t len,
                       struct fv_sim_upload_result *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    struct conn c = {.u = u};
    snprintf(c.cert, sizeof c.cert, "%s/devices/%s.crt", u->certs_dir, u->device);
    snprintf(c.key, sizeof c.key, "%s/devices/%s.key", u->certs_dir, u->device);
    snprintf(c.ca, sizeof c.ca, "%s/ca.crt", u->certs_dir);
    char sha[65], path[128];
    sha256_hex(clip, len, sha);
    json_t *cj = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s}", "clip_id", u->clip_id, "campaign_id",
                           u->campaign, "trigger", u->trigger ? u->trigger : "", "trigger_ms",
                           (json_int_t)u->trigger_ms, "size", (json_int_t)len, "sha256", sha);
    char *ct = cj ? json_dumps(cj, JSON_COMPACT) : NULL;
    json_decref(cj);
    if (ct == NULL) return FV_ENOMEM;
    struct body b;
    int st = 0;
    request(&c, "POST", "/clips/v1/uploads", ct, strlen(ct), NULL, 0, &st, &b);
    free(ct);
    r->status = st;
    snprintf(r->body, sizeof r->body, "%s", b.text);
    if (st != 201 && st != 200) {
        fv_seterr(err, errlen, "create: %d %s", st, b.text);
        return FV_EPROTO;
    }
    json_t *j = json_loads(b.text, 0, NULL);
    snprintf(r->upload_id, sizeof r->upload_id, "%s",
             json_string_value(json_object_get(j, "upload_id")) ?: "");
    uint64_t off = (uint64_t)json_integer_value(json_object_get(j, "offset"));
    json_decref(j);
    size_t chunk = u->chunk_bytes ? u->chunk_bytes : 262144;
    int interrupt = u->interrupt, nchunk = 0;
    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        char csha[65];
        sha256_hex((const unsigned char *)clip + off, n, csha);
        snprintf(path, sizeof path, "/clips/v1/uploads/%s?offset=%llu", r->upload_id,
                 (unsigned long long)off);
        size_t cut = 0;
        if (interrupt && ++nchunk == 2) cut = n / 2 ? n / 2 : 1; /* the connection dies */
        request(&c, "PUT", path, (const unsigned char *)clip + off, n, csha, cut, &st, &b);
        if (cut) {
            interrupt = 0;
            snprintf(path, sizeof path, "/clips/v1/uploads/%s", r->upload_id);
            request(&c, "GET", path, NULL, 0, NULL, 0, &st, &b);
            if (st != 200) {
                fv_seterr(err, errlen, "status after the interruption: %d %s", st, b.text);
                return FV_EPROTO;
            }
            off = answer_offset(&b);
            r->resumed = 1;
            r->resumed_at = off;
            continue;
        }
        r->status = st;
        snprintf(r->body, sizeof r->body, "%s", b.text);
        if (st != 200) {
            fv_seterr(err, errlen, "chunk at %llu: %d %s", (unsigned long long)off, st, b.text);
            return FV_EPROTO;
        }
        off = answer_offset(&b);
    }
    snprintf(path, sizeof path, "/clips/v1/uploads/%s/finish", r->upload_id);
    request(&c, "POST", path, "", 0, NULL, 0, &st, &b);
    r->status = st;
    snprintf(r->body, sizeof r->body, "%s", b.text);
    if (st != 201) {
        fv_seterr(err, errlen, "finish: %d %s", st, b.text);
        return FV_EPROTO;
    }
    return FV_OK;
}
