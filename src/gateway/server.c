/*
 * server.c - the gateway's event loop (libwebsockets), sessions, and the record pipeline.
 *
 * Threads: everything here runs on the event-loop thread except wal_notify(), which the WAL
 * writer calls after each durable batch and which only wakes the loop (lws_cancel_service,
 * thread-safe). The loop then sends the acks of every record now durable.
 *
 * Invariants:
 *  S1 an ack for a stored record is queued only when its WAL seq <= durable_seq;
 *  S2 an ack for a duplicate is queued no earlier than the original's (it waits for the
 *     WAL's last appended seq at the time the duplicate arrived);
 *  S3 identity comes only from the verified chain's leaf (SSL_get0_verified_chain), never
 *     from the payload or from certificates the client appended;
 *  S4 a message that is refused leaves no trace in the WAL, the fleet state or the dedup
 *     window; only metrics change.
 *  S5 a session's pending acks refer to it by id; a closed session's acks are dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>
#include <sqlite3.h>
#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "api/api.h"
#include "api/exports.h"
#include "crypto/certs.h"
#include "crypto/keys.h"
#include "gateway/fleet.h"
#include "gateway/metrics.h"
#include "gateway/server.h"
#include "os/fsio.h"
#include "store/store.h"
#include "privacy/guard.h"
#include "privacy/principals.h"
#include "privacy/tombstones.h"
#include "privacy/subjects.h"
#include "privacy/zones.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "wal/wal.h"
#include "wal/sealed.h"
#include "wal/wal_format.h"
#include "wire/envelope.h"
#include "wire/payload.h"
#include "wire/signals.h"

#define ERR_TEXT_FORMAT "incorrect message format"
#define ERR_TEXT_RATE   "rate limit exceeded"
#define MAX_OUT_FRAMES  8192 /* a device that never reads its acks is disconnected */

struct frame {
    struct frame *next;
    size_t len;
    unsigned char data[]; /* LWS_PRE bytes of headroom, then len bytes */
};

struct session {
    struct fv_server *srv;
    struct lws *wsi;
    uint64_t id;
    struct fv_identity ident;
    struct fv_device *dev;
    char conn_id[40];
    char netif[16];
    struct fv_buf rx;
    int in_msg, discarding, text;
    struct frame *out_head, *out_tail;
    unsigned out_n;
    int established;
    int http_status; /* GET /status on the device port */
};

struct pending {
    struct pending *next;
    uint64_t seq;
    uint64_t session_id;
    uint16_t txid_len;
    uint8_t topic_len;
    unsigned char data[]; /* txid then topic */
};

struct api_session {
    struct fv_http_response resp;
    size_t sent;
    int chunked, done; /* a streamed response; its producer has finished */
};

struct fv_server {
    const struct fv_server_config *cfg;
    struct lws_context *ctx;
    struct fv_wal *wal;
    struct fv_fleet fleet;
    struct fv_metrics m;
    struct fv_map sessions; /* id -> struct session* */
    uint64_t next_session_id;
    struct pending *pend_head, *pend_tail;
    char admin_token[80];
    struct fv_kek kek;
    struct fv_keystore *keys;
    struct fv_store_config store_cfg;
    struct fv_store *store;
    struct fv_guard guard;
    struct fv_exports *exports;
    /* Minimisation: per store class, the purposes that use it (from the policy); a class
     * that a contract purpose uses is always stored. */
    uint32_t consent_classes; /* store classes that need some consent to be stored */
    char class_purposes[FV_STORE_MAX_CLASSES][FV_POLICY_MAX_PURPOSES][FV_POLICY_NAME_MAX + 1];
    int nclass_purposes[FV_STORE_MAX_CLASSES];
    uint64_t registry_gen; /* bumped when the catalog changed under us (owner changes) */
    uint64_t registry_checked_ns;
    int64_t data_version;
    char tomb_outside[PATH_MAX]; /* the erasure list beside the master key ("" if none) */
    char tomb_inside[PATH_MAX];  /* its mirror in DATA */
    char audit_dir[PATH_MAX];
    struct fv_buf erased;
        /* at start-up: the erasure list's pseudonyms, 32 hex each */ /* DATA/audit */
    uint64_t store_wal_hi;           /* at start-up: WAL files <= this are already in the store */
    int store_degraded;              /* a record reached the WAL but not the head: keep the WAL */
    struct fv_buf seal_buf, aad_buf; /* scratch for sealing on the event loop */
    uint64_t start_ms;
    volatile sig_atomic_t *stop;
    int lock_fd;
};

/* OpenSSL's verify callback and signal handlers get no context pointer: this is the one
 * process-wide reference to the running server (one server per process). */
static struct fv_server *running;

void fv_server_config_defaults(struct fv_server_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->data_dir, sizeof c->data_dir, "./data");
    snprintf(c->certs_dir, sizeof c->certs_dir, "./certs");
    snprintf(c->listen_host, sizeof c->listen_host, "127.0.0.1");
    c->listen_port = 4443;
    snprintf(c->api_host, sizeof c->api_host, "127.0.0.1");
    c->api_port = 8080;
    c->max_message = 1000000;
    c->wal_segment_bytes = 64ull << 20;
    fv_rate_defaults(&c->rates);
    c->rate_limit_enabled = 1;
    fv_store_config_defaults(&c->store, c->data_dir);
    c->loc_trim_m = 500;
    c->loc_grid_m = 1000;
    c->loc_trip_gap_ms = 300000;
}

/* "30d", "12h", "90m", "45s", a number of seconds, or 0 / "forever" (keep forever). */
static int parse_duration_ms(json_t *v, uint64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v) * 1000u;
        return FV_OK;
    }
    if (!json_is_string(v)) return FV_EINVAL;
    const char *t = json_string_value(v);
    if (strcmp(t, "forever") == 0) {
        *out = 0;
        return FV_OK;
    }
    char *end;
    double n = strtod(t, &end);
    uint64_t unit = 1000;
    if (strcmp(end, "d") == 0)
        unit = 86400000u;
    else if (strcmp(end, "h") == 0)
        unit = 3600000u;
    else if (strcmp(end, "m") == 0)
        unit = 60000u;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        unit = 1000u;
    else
        return FV_EINVAL;
    if (end == t || !(n >= 0) || n > 1e6 * 365) return FV_EINVAL;
    *out = (uint64_t)(n * (double)unit);
    return FV_OK;
}

/* The "store" object: flush_interval, flush_datums, wal_keep, compact_fanin,
 * retention {class: duration},
 * classes {class: [signal names or numbers]} (a new class gets retention "forever" unless
 * set). */
static int load_store_config(struct fv_store_config *c, json_t *o, const char *path, char *err,
                             size_t errlen)
{
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val)
    {
        uint64_t ms;
        if (strcmp(key, "flush_interval") == 0 && parse_duration_ms(val, &ms) == FV_OK && ms) {
            c->flush_interval_ms = ms;
        } else if (strcmp(key, "wal_keep") == 0 && parse_duration_ms(val, &ms) == FV_OK) {
            c->wal_keep_ms = ms;
        } else if (strcmp(key, "compact_fanin") == 0 && json_is_integer(val) &&
                   json_integer_value(val) >= 2 && json_integer_value(val) <= 64) {
            c->compact_fanin = (uint32_t)json_integer_value(val);
        } else if (strcmp(key, "flush_datums") == 0 && json_is_integer(val) &&
                   json_integer_value(val) >= 1000) {
            c->flush_datums = (uint64_t)json_integer_value(val);
        } else if (strcmp(key, "classes") == 0 && json_is_object(val)) {
            const char *cname;
            json_t *list;
            json_object_foreach(val, cname, list)
            {
                int id = fv_store_class_id(c, cname);
                if (id < 0) {
                    if (c->nclasses == FV_STORE_MAX_CLASSES || strlen(cname) == 0 ||
                        strlen(cname) > FV_CLASS_NAME_MAX) {
                        fv_seterr(err, errlen, "%s: store.classes.%s: too many or bad name", path,
                                  cname);
                        return FV_EINVAL;
                    }
                    id = (int)c->nclasses++;
                    snprintf(c->class_name[id], sizeof c->class_name[id], "%s", cname);
                    c->retention_ms[id] = 0;
                }
                if (!json_is_array(list) || id == c->events_class) {
                    fv_seterr(err, errlen, "%s: store.classes.%s: expected a list of signals", path,
                              cname);
                    return FV_EINVAL;
                }
                size_t i;
                json_t *sig;
                json_array_foreach(list, i, sig)
                {
                    long f = json_is_string(sig) ? fv_signal_lookup(json_string_value(sig)) : -1;
                    if (f < 0 || f >= FV_STORE_FIELD_TABLE) {
                        fv_seterr(err, errlen, "%s: store.classes.%s[%zu]: unknown signal", path,
                                  cname, i);
                        return FV_EINVAL;
                    }
                    c->class_of[f] = (uint8_t)id;
                }
            }
        } else if (strcmp(key, "retention") == 0 && json_is_object(val)) {
            const char *cname;
            json_t *d;
            json_object_foreach(val, cname, d)
            {
                int id = fv_store_class_id(c, cname);
                if (id < 0 || parse_duration_ms(d, &ms) != FV_OK) {
                    fv_seterr(err, errlen,
                              "%s: store.retention.%s: unknown class or bad duration (e.g. "
                              "\"30d\", \"12h\", \"forever\")",
                              path, cname);
                    return FV_EINVAL;
                }
                c->retention_ms[id] = ms;
            }
        } else {
            fv_seterr(err, errlen, "%s: store: unknown key or wrong value: \"%s\"", path, key);
            return FV_EINVAL;
        }
    }
    return FV_OK;
}

int fv_parse_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || (size_t)(colon - s) >= hostlen) return FV_EINVAL;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535 || colon[1] == '\0') return FV_EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    *port = (int)p;
    return FV_OK;
}

int fv_server_config_load(struct fv_server_config *c, const char *path, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (root == NULL) {
        fv_seterr(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return FV_EINVAL;
    }
    int rc = FV_EINVAL;
    const char *key;
    json_t *val;
    if (!json_is_object(root)) {
        fv_seterr(err, errlen, "%s: the configuration must be a JSON object", path);
        goto done;
    }
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "data") == 0 && json_is_string(val)) {
            snprintf(c->data_dir, sizeof c->data_dir, "%s", json_string_value(val));
        } else if (strcmp(key, "key_file") == 0 && json_is_string(val)) {
            snprintf(c->key_file, sizeof c->key_file, "%s", json_string_value(val));
        } else if (strcmp(key, "certs") == 0 && json_is_string(val)) {
            snprintf(c->certs_dir, sizeof c->certs_dir, "%s", json_string_value(val));
        } else if ((strcmp(key, "listen") == 0 || strcmp(key, "api") == 0) && json_is_string(val)) {
            int l = key[0] == 'l';
            if (fv_parse_hostport(json_string_value(val), l ? c->listen_host : c->api_host,
                                  sizeof c->listen_host, l ? &c->listen_port : &c->api_port)) {
                fv_seterr(err, errlen, "%s: \"%s\": expected \"HOST:PORT\"", path, key);
                goto done;
            }
        } else if (strcmp(key, "max_message") == 0 && json_is_integer(val) &&
                   json_integer_value(val) > 0 && json_integer_value(val) <= 16 * 1000000) {
            c->max_message = (size_t)json_integer_value(val);
        } else if (strcmp(key, "wal_segment_mb") == 0 && json_is_integer(val) &&
                   json_integer_value(val) >= 1 && json_integer_value(val) <= 4096) {
            c->wal_segment_bytes = (uint64_t)json_integer_value(val) << 20;
        } else if ((strcmp(key, "policy") == 0 || strcmp(key, "audit_key") == 0 ||
                    strcmp(key, "audit_witness") == 0) &&
                   json_is_string(val)) {
            char *dst = key[0] == 'p'   ? c->policy_file
                        : key[6] == 'k' ? c->audit_key
                                        : c->audit_witness;
            snprintf(dst, sizeof c->policy_file, "%s", json_string_value(val));
        } else if (strcmp(key, "audit_retention") == 0 &&
                   parse_duration_ms(val, &c->audit_retention_ms) == FV_OK) {
            /* the audit log's own retention (GDPR: as long as needed for accountability) */
        } else if (strcmp(key, "location_privacy") == 0 && json_is_object(val)) {
            json_t *tm = json_object_get(val, "trim_m"), *gm = json_object_get(val, "grid_m");
            json_t *gap = json_object_get(val, "trip_gap");
            if ((tm && (!json_is_number(tm) || json_number_value(tm) < 0 ||
                        json_number_value(tm) > 100000)) ||
                (gm && (!json_is_number(gm) || json_number_value(gm) < 0 ||
                        json_number_value(gm) > 1000000)) ||
                (gap && (parse_duration_ms(gap, &c->loc_trip_gap_ms) != FV_OK ||
                         c->loc_trip_gap_ms == 0))) {
                fv_seterr(err, errlen,
                          "%s: location_privacy: expected {\"trim_m\": 0..100000, "
                          "\"trip_gap\": \"5m\", \"grid_m\": 0..1000000}",
                          path);
                goto done;
            }
            if (tm) c->loc_trim_m = json_number_value(tm);
            if (gm) c->loc_grid_m = json_number_value(gm);
        } else if (strcmp(key, "store") == 0 && json_is_object(val)) {
            if (load_store_config(&c->store, val, path, err, errlen) != FV_OK) goto done;
        } else if (strcmp(key, "rate_limits") == 0 && json_is_false(val)) {
            c->rate_limit_enabled = 0;
        } else if (strcmp(key, "rate_limits") == 0 && json_is_object(val)) {
            const char *topic;
            json_t *rule;
            json_object_foreach(val, topic, rule)
            {
                json_t *ps = json_object_get(rule, "per_second");
                json_t *b = json_object_get(rule, "burst");
                if (!json_is_number(ps) || (b && !json_is_number(b)) ||
                    fv_rate_set(&c->rates, topic, json_number_value(ps),
                                b ? json_number_value(b) : json_number_value(ps)) != FV_OK) {
                    fv_seterr(err, errlen,
                              "%s: rate_limits.%s: expected {\"per_second\": N > 0, "
                              "\"burst\": N >= 1}",
                              path, topic);
                    goto done;
                }
            }
        } else {
            fv_seterr(err, errlen, "%s: unknown key or wrong type: \"%s\"", path, key);
            goto done;
        }
    }
    rc = FV_OK;
done:
    json_decref(root);
    return rc;
}

/* ---- replies ------------------------------------------------------------------------- */

static void session_push(struct session *s, const struct fv_buf *msg)
{
    if (s->out_n >= MAX_OUT_FRAMES) {
        fv_warn("device %s does not read its replies; closing", s->ident.device_id);
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        return;
    }
    struct frame *f = malloc(sizeof *f + LWS_PRE + msg->len);
    if (f == NULL) {
        fv_error("out of memory queueing a reply; closing %s", s->ident.device_id);
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        return;
    }
    f->next = NULL;
    f->len = msg->len;
    memcpy(f->data + LWS_PRE, msg->data, msg->len);
    if (s->out_tail)
        s->out_tail->next = f;
    else
        s->out_head = f;
    s->out_tail = f;
    s->out_n++;
    lws_callback_on_writable(s->wsi);
}

static void send_ack(struct session *s, const void *txid, size_t txid_len, const void *topic,
                     size_t topic_len)
{
    struct fv_buf b = {0};
    if (fv_envelope_build_ack(&b, txid, txid_len, topic, topic_len) == FV_OK) {
        session_push(s, &b);
        s->srv->m.acks_sent++;
    }
    fv_buf_free(&b);
}

static void send_error(struct session *s, enum fv_reject why, const void *txid, size_t txid_len,
                       const char *detail)
{
    struct fv_buf b = {0};
    s->srv->m.rejected[why]++;
    fv_debug("device %s: refused (%s): %s", s->ident.device_id, fv_reject_names[why],
             detail ? detail : "");
    const char *text = why == FV_REJ_RATE ? ERR_TEXT_RATE : ERR_TEXT_FORMAT;
    if (fv_envelope_build_error(&b, txid, txid_len, text) == FV_OK) {
        session_push(s, &b);
        s->srv->m.errors_sent++;
    }
    fv_buf_free(&b);
}

/* Queues an ack to be sent once WAL seq is durable (S1, S2). */
static void queue_ack(struct session *s, uint64_t seq, const struct fv_bytes *txid,
                      const struct fv_bytes *topic)
{
    struct fv_server *srv = s->srv;
    if (seq <= fv_wal_durable_seq(srv->wal)) {
        send_ack(s, txid->p, txid->len, topic->p, topic->len);
        return;
    }
    struct pending *p = malloc(sizeof *p + txid->len + topic->len);
    if (p == NULL) {
        fv_error("out of memory queueing an ack; the device will resend");
        return;
    }
    p->next = NULL;
    p->seq = seq;
    p->session_id = s->id;
    p->txid_len = (uint16_t)txid->len;
    p->topic_len = (uint8_t)topic->len;
    memcpy(p->data, txid->p, txid->len);
    memcpy(p->data + txid->len, topic->p, topic->len);
    if (srv->pend_tail)
        srv->pend_tail->next = p;
    else
        srv->pend_head = p;
    srv->pend_tail = p;
}

static void flush_durable(struct fv_server *srv)
{
    uint64_t durable = fv_wal_durable_seq(srv->wal);
    while (srv->pend_head && srv->pend_head->seq <= durable) {
        struct pending *p = srv->pend_head;
        srv->pend_head = p->next;
        if (srv->pend_head == NULL) srv->pend_tail = NULL;
        struct session *s = fv_map_get_u64(&srv->sessions, p->session_id);
        if (s) /* S5 */
            send_ack(s, p->data, p->txid_len, p->data + p->txid_len, p->topic_len);
        free(p);
    }
}

static void wal_notify(void *arg)
{
    struct fv_server *srv = arg;
    struct lws_context *ctx = __atomic_load_n(&srv->ctx, __ATOMIC_ACQUIRE);
    if (ctx) lws_cancel_service(ctx);
}

/* ---- the record pipeline -------------------------------------------------------------- */

static int bytes_eq(const struct fv_bytes *b, const char *s)
{
    return b->len == strlen(s) && memcmp(b->p, s, b->len) == 0;
}

/* Does the stream's sender_id ("<type>.<device id>") name this session's device? */
static int sender_matches(const struct session *s, const struct fv_bytes *sender)
{
    if (!sender->present || sender->len == 0) return 1;
    const unsigned char *dot = memchr(sender->p, '.', sender->len);
    if (dot == NULL) return 0;
    size_t n = sender->len - (size_t)(dot + 1 - sender->p);
    if (n != strlen(s->ident.device_id)) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = (char)dot[1 + i];
        if ((c == '.' ? '-' : c) != s->ident.device_id[i]) return 0;
    }
    return 1;
}

/* Seals the payload with the device's data key and appends the record. Nothing personal
 * reaches the disk in plaintext: the key is created (and committed) on a device's first
 * record. A device whose key was destroyed gets FV_ESTATE: it is erased, store nothing. */
/* The device's current subject (owner period, privacy/subjects.h), cached per device and
 * looked up again when the catalog changed (another process may record an owner change).
 * A new period wipes the fleet state: the new owner sees nothing of the previous one. */
static const char *current_subject(struct fv_server *srv, struct fv_device *d)
{
    if (d->subject[0] && d->subject_gen == srv->registry_gen) return d->subject;
    char name[FV_SUBJECT_NAME_MAX + 1];
    if (fv_subject_current(srv->keys, d->id, name, NULL) != FV_OK)
        snprintf(name, sizeof name, "%s", d->id);
    if (d->subject[0] && strcmp(d->subject, name) != 0) {
        fv_info("device %s: a new owner period began; its fleet state starts empty", d->id);
        fv_device_wipe(d);
    }
    snprintf(d->subject, sizeof d->subject, "%s", name);
    d->subject_gen = srv->registry_gen;
    return d->subject;
}

static int64_t wal_put(struct fv_server *srv, const struct session *s, uint8_t flags,
                       const char *topic, size_t topic_len, const void *txid, size_t txid_len,
                       const struct fv_buf *payload, const unsigned char **dek_out,
                       char pseudo[FV_PSEUDONYM_LEN + 1])
{
    const unsigned char *dek;
    const char *subject = s->dev ? current_subject(srv, s->dev) : s->ident.device_id;
    int rc = fv_keystore_dek(srv->keys, subject, 1, &dek, pseudo);
    if (rc) {
        fv_warn("device %s: no data key (%s); record refused", s->ident.device_id,
                rc == FV_ESTATE ? "its data was erased" : fv_strerror(rc));
        return rc;
    }
    struct fv_wal_record r = {
        .type = FV_WAL_REC_DATA,
        .flags = (uint8_t)(flags | FV_WAL_F_SEALED),
        .received_ms = fv_now_ms(),
        .device_id = pseudo, /* rule K2: the WAL names devices by pseudonym */
        .device_id_len = FV_PSEUDONYM_LEN,
        .client_type = s->ident.client_type,
        .client_type_len = (uint8_t)strlen(s->ident.client_type),
        .topic = topic,
        .topic_len = (uint8_t)topic_len,
        .txid = txid,
        .txid_len = (uint16_t)txid_len,
    };
    fv_buf_reset(&srv->aad_buf);
    fv_buf_reset(&srv->seal_buf);
    rc = fv_wal_record_aad(&r, &srv->aad_buf);
    if (rc == FV_OK)
        rc = fv_seal(dek, srv->aad_buf.data, srv->aad_buf.len, payload->data, payload->len,
                     &srv->seal_buf);
    if (rc) return rc;
    r.payload = srv->seal_buf.data;
    r.payload_len = (uint32_t)srv->seal_buf.len;
    *dek_out = dek;
    return fv_wal_append(srv->wal, &r);
}

/* Minimisation (issue 4): which store classes need consent, and for which purposes. */
static void minimisation_init(struct fv_server *srv)
{
    const struct fv_policy *pol = srv->guard.policy;
    for (uint32_t c = 0; c < srv->store_cfg.nclasses; c++) {
        if (c == srv->store_cfg.events_class) continue;
        int bit = fv_policy_class_id(pol, srv->store_cfg.class_name[c]);
        if (bit < 0) continue; /* a class the policy does not name: nobody reads it; kept */
        int contract = 0;
        for (size_t pi = 0; pi < fv_policy_npurposes(pol); pi++) {
            const char *purpose = fv_policy_purpose_name(pol, pi);
            int used = 0;
            for (size_t r = 0; r < fv_policy_nroles(pol) && !used; r++)
                used = (fv_policy_classes(pol, fv_policy_role_name(pol, r), purpose) >> bit) & 1;
            if (!used) continue;
            if (strcmp(purpose, FV_SUBJECT_CONTRACT) == 0) contract = 1;
            if (srv->nclass_purposes[c] < FV_POLICY_MAX_PURPOSES)
                snprintf(srv->class_purposes[c][srv->nclass_purposes[c]++],
                         sizeof srv->class_purposes[0][0], "%s", purpose);
        }
        if (!contract) srv->consent_classes |= 1u << c;
    }
}

/* The store classes this device's current subject lets us keep: classes needing consent
 * are kept only while some purpose that uses them has it (cached per registry change). */
static uint32_t keep_classes(struct fv_server *srv, struct fv_device *d)
{
    if (srv->consent_classes == 0) return UINT32_MAX;
    const char *subject = current_subject(srv, d);
    if (d->keep_gen == srv->registry_gen + 1) return d->keep_classes;
    uint32_t keep = UINT32_MAX;
    struct fv_purposes pp = {.policy = srv->guard.policy};
    for (uint32_t c = 0; c < srv->store_cfg.nclasses; c++) {
        if (!(srv->consent_classes >> c & 1)) continue;
        int any = 0;
        for (int k = 0; k < srv->nclass_purposes[c] && !any; k++) {
            int granted = 0;
            if (fv_consent_at(srv->keys, &pp, subject, srv->class_purposes[c][k],
                              (int64_t)fv_now_ms(), &granted) == FV_OK)
                any = granted;
        }
        if (!any) keep &= ~(1u << c);
    }
    d->keep_classes = keep;
    d->keep_gen = srv->registry_gen + 1;
    return keep;
}

/* Drops the datums of classes not kept from v and re-encodes the payload into norm. Returns
 * the number dropped. */
static size_t minimise(struct fv_server *srv, struct fv_vrecord *v, uint32_t keep,
                       struct fv_buf *norm)
{
    size_t w = 0, dropped = 0;
    for (size_t i = 0; i < v->n; i++) {
        uint32_t f = v->data[i].field;
        uint8_t c = f < FV_STORE_FIELD_TABLE ? srv->store_cfg.class_of[f] : 0;
        if (keep >> c & 1) {
            v->data[w++] = v->data[i];
        } else {
            fv_value_clear(&v->data[i].value);
            dropped++;
        }
    }
    v->n = w;
    if (dropped) {
        struct fv_buf b = {0};
        if (fv_payload_encode_v(v, &b) == FV_OK) {
            fv_buf_free(norm);
            *norm = b;
        } else {
            fv_buf_free(&b);
        }
    }
    return dropped;
}

/* Hands a record that is in the WAL to the store's head. Should that fail (out of memory),
 * the record is still safe in the WAL, which then must not be trimmed until a restart
 * replays it into the head (T1). */
static void store_put(struct fv_server *srv, const char *pseudo, const unsigned char *dek,
                      int64_t t, const struct fv_vrecord *v, const char *topic, size_t topic_len,
                      const struct fv_buf *payload)
{
    int rc = v ? fv_store_add_frame(srv->store, pseudo, dek, t, 0, v)
               : fv_store_add_event(srv->store, pseudo, dek, t, 0, topic, topic_len, payload->data,
                                    payload->len);
    if (rc && !srv->store_degraded) {
        srv->store_degraded = 1;
        fv_store_hold_wal(srv->store);
        fv_error("store: cannot add a record to the head (%s); it is safe in the WAL, which is "
                 "now kept whole until a restart replays it",
                 fv_strerror(rc));
    }
}

static void handle_message(struct session *s, const unsigned char *msg, size_t len)
{
    struct fv_server *srv = s->srv;
    struct fv_envelope env;
    char err[256];
    srv->m.messages_total++;
    srv->m.bytes_received += len;
    if (fv_envelope_decode(msg, len, &env, err, sizeof err) != FV_OK) {
        send_error(s, FV_REJ_ENVELOPE, "", 0, err);
        return;
    }
    if (env.message_type != FV_MSG_STREAM) {
        /* The reference acks unknown union types so the device does not resend. */
        srv->m.unknown_message_type++;
        send_ack(s, env.txid.p, env.txid.len, env.topic.p, env.topic.len);
        return;
    }
    if (!sender_matches(s, &env.sender_id)) {
        send_error(s, FV_REJ_SENDER, env.txid.p, env.txid.len, "sender_id names another device");
        return;
    }
    if (env.topic.len == 0 || env.topic.len > 64 || env.txid.len > 1024 ||
        bytes_eq(&env.topic, FV_TOPIC_CONNECTIVITY)) {
        send_error(s, FV_REJ_TOPIC, env.txid.p, env.txid.len, "topic empty, too long, or reserved");
        return;
    }
    struct fv_device *dev = s->dev;
    if (srv->cfg->rate_limit_enabled) {
        int rule = fv_rate_rule_for(&srv->cfg->rates, (const char *)env.topic.p, env.topic.len);
        if (rule >= 0 &&
            !fv_bucket_take(&dev->buckets[rule], &srv->cfg->rates.rules[rule], fv_mono_ns())) {
            dev->rate_limited++;
            send_error(s, FV_REJ_RATE, env.txid.p, env.txid.len, "rate limited");
            return;
        }
    }
    if (env.txid.len && fv_device_has_txid(dev, env.txid.p, env.txid.len)) {
        /* Stored already: ack again once the original is durable (S2), store nothing. */
        srv->m.duplicates++;
        dev->duplicates++;
        queue_ack(s, fv_wal_appended_seq(srv->wal), &env.txid, &env.topic);
        return;
    }
    struct fv_buf norm = {0};
    struct fv_vrecord v = {0};
    int is_v = bytes_eq(&env.topic, FV_TOPIC_V);
    if (fv_payload_normalise((const char *)env.topic.p, env.topic.len, env.payload.p,
                             env.payload.len, s->ident.device_id, &norm, &v, err,
                             sizeof err) != FV_OK) {
        send_error(s, FV_REJ_PAYLOAD, env.txid.p, env.txid.len, err);
        goto done;
    }
    if (is_v) {
        uint32_t keep = keep_classes(srv, dev);
        if (keep != UINT32_MAX) {
            size_t dropped = minimise(srv, &v, keep, &norm);
            srv->m.datums_minimised += dropped;
            if (dropped && v.n == 0) {
                /* Nothing left to keep: acknowledged (the device must not resend it), not
                 * stored, counted. */
                if (env.txid.len) fv_device_add_txid(dev, env.txid.p, env.txid.len);
                queue_ack(s, fv_wal_appended_seq(srv->wal), &env.txid, &env.topic);
                goto done;
            }
        }
    }
    const unsigned char *dek = NULL;
    char pseudo[FV_PSEUDONYM_LEN + 1];
    int64_t seq = wal_put(srv, s, v.is_resend ? FV_WAL_F_RESEND : 0, (const char *)env.topic.p,
                          env.topic.len, env.txid.p, env.txid.len, &norm, &dek, pseudo);
    if (seq < 0) {
        send_error(s, FV_REJ_STORAGE, env.txid.p, env.txid.len, fv_strerror((int)seq));
        goto done;
    }
    if (env.txid.len) fv_device_add_txid(dev, env.txid.p, env.txid.len);
    uint64_t now = fv_now_ms();
    uint64_t t = (is_v && v.created_at_ms) ? v.created_at_ms : now;
    store_put(srv, pseudo, dek, (int64_t)t, is_v ? &v : NULL, (const char *)env.topic.p,
              env.topic.len, &norm);
    fv_device_apply(dev, t, now, is_v ? &v : NULL);
    srv->m.records_stored[fv_metrics_topic_slot((const char *)env.topic.p, env.topic.len)]++;
    srv->m.datums_stored += v.n;
    queue_ack(s, (uint64_t)seq, &env.txid, &env.topic);
done:
    fv_vrecord_free(&v);
    fv_buf_free(&norm);
}

/* Stores a connectivity record (generated by the server; never acked). */
static void record_connectivity(struct session *s, int status)
{
    struct fv_buf pl = {0};
    char txid[64];
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1) memset(rnd, 0, sizeof rnd);
    snprintf(txid, sizeof txid, "conn-%02x%02x%02x%02x%02x%02x%02x%02x-%d", rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], status);
    const unsigned char *dek = NULL;
    char pseudo[FV_PSEUDONYM_LEN + 1];
    uint64_t now = fv_now_ms();
    if (fv_payload_build_connectivity(s->ident.device_id, s->conn_id, status, now, s->netif, &pl) ==
            FV_OK &&
        wal_put(s->srv, s, FV_WAL_F_GENERATED, FV_TOPIC_CONNECTIVITY, strlen(FV_TOPIC_CONNECTIVITY),
                txid, strlen(txid), &pl, &dek, pseudo) > 0) {
        s->srv->m.records_stored[3]++;
        store_put(s->srv, pseudo, dek, (int64_t)now, NULL, FV_TOPIC_CONNECTIVITY,
                  strlen(FV_TOPIC_CONNECTIVITY), &pl);
    }
    fv_buf_free(&pl);
}

/* ---- device protocol callback ---------------------------------------------------------- */

static void copy_header(struct lws *wsi, const char *name, char *out, size_t len)
{
    out[0] = '\0';
    int n = lws_hdr_custom_copy(wsi, out, (int)len, name, (int)strlen(name));
    if (n < 0) out[0] = '\0';
}

static int identify(struct session *s)
{
    char err[256];
    SSL *ssl = lws_get_ssl(s->wsi);
    STACK_OF(X509) *chain = ssl ? SSL_get0_verified_chain(ssl) : NULL;
    X509 *leaf = (chain && sk_X509_num(chain) > 0) ? sk_X509_value(chain, 0) : NULL; /* S3 */
    if (leaf == NULL) {
        fv_warn("connection refused: no verified client certificate");
        s->srv->m.identity_rejected++;
        return -1;
    }
    if (fv_identity_from_cert(leaf, &s->ident, err, sizeof err) != FV_OK) {
        fv_warn("connection refused: %s", err);
        s->srv->m.identity_rejected++;
        return -1;
    }
    return 0;
}

static int dev_http(struct lws *wsi, struct session *s, const char *uri)
{
    if (strcmp(uri, "/status") != 0)
        return lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL) ? -1 : 0;
    unsigned char buf[LWS_PRE + 256], *start = buf + LWS_PRE, *p = start,
                                      *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/plain", 7, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    s->http_status = 1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int dev_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    struct session *s = user;
    struct fv_server *srv = running;
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION: {
        X509_STORE_CTX *xs = user;
        if (len == 0 && xs) { /* preverify failed */
            int e = X509_STORE_CTX_get_error(xs);
            X509 *c = X509_STORE_CTX_get_current_cert(xs);
            char subj[256] = "?";
            if (c) X509_NAME_oneline(X509_get_subject_name(c), subj, sizeof subj);
            fv_warn("client certificate rejected: %s (subject %s, depth %d)",
                    X509_verify_cert_error_string(e), subj, X509_STORE_CTX_get_error_depth(xs));
            if (srv) srv->m.tls_rejected++;
            /* lws turns this callback's 0 into "verified": a failure must return non-zero,
             * or any certificate would be accepted (tests/e2e/test_gateway.py checks). */
            return 1;
        }
        return 0;
    }
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
        /* user is the vhost's SSL_CTX: idle connections give their TLS buffers back
         * (about 9 KB per connection). */
        if (user) {
            SSL_CTX_set_mode((SSL_CTX *)user, SSL_MODE_RELEASE_BUFFERS);
            /* No server-side session cache: each cached session holds the peer's certificate
             * chain, kilobytes per device that connected. Resumption still works through
             * stateless TLS 1.3 tickets. */
            SSL_CTX_set_session_cache_mode((SSL_CTX *)user, SSL_SESS_CACHE_OFF);
        }
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (srv) flush_durable(srv);
        return 0;
    case LWS_CALLBACK_HTTP:
        return dev_http(wsi, s, (const char *)in);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (s && s->http_status) {
            unsigned char buf[LWS_PRE + 16];
            memcpy(buf + LWS_PRE, "mtls ok", 7);
            s->http_status = 0;
            if (lws_write(wsi, buf + LWS_PRE, 7, LWS_WRITE_HTTP_FINAL) != 7) return -1;
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (s) {
            memset(s, 0, sizeof *s);
            copy_header(wsi, "x-network-interface:", s->netif, sizeof s->netif);
            copy_header(wsi, "x-txid:", s->conn_id, sizeof s->conn_id);
        }
        return 0;
    case LWS_CALLBACK_ESTABLISHED: {
        char netif[sizeof s->netif], conn[sizeof s->conn_id];
        memcpy(netif, s->netif, sizeof netif);
        memcpy(conn, s->conn_id, sizeof conn);
        memset(s, 0, sizeof *s);
        memcpy(s->netif, netif, sizeof netif);
        memcpy(s->conn_id, conn, sizeof conn);
        s->srv = srv;
        s->wsi = wsi;
        if (identify(s)) return -1;
        s->dev = fv_fleet_device(&srv->fleet, s->ident.device_id, s->ident.client_type);
        s->id = ++srv->next_session_id;
        if (s->dev == NULL || fv_map_put_u64(&srv->sessions, s->id, s) != FV_OK) {
            fv_error("out of memory accepting %s", s->ident.device_id);
            return -1;
        }
        if (s->conn_id[0] == '\0')
            snprintf(s->conn_id, sizeof s->conn_id, "fv-%llu", (unsigned long long)s->id);
        s->established = 1;
        s->dev->sessions++;
        s->dev->session_id = s->id;
        srv->m.connections_total++;
        srv->m.connections_open++;
        fv_debug("device %s.%s connected (%s)", s->ident.client_type, s->ident.device_id,
                 s->netif[0] ? s->netif : "?");
        record_connectivity(s, 1);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE: {
        if (!s->in_msg) {
            s->in_msg = 1;
            s->discarding = 0;
            s->text = !lws_frame_is_binary(wsi);
            fv_buf_reset(&s->rx);
        }
        if (s->text) {
            /* Only binary frames carry data; a text frame closes the socket. */
            srv->m.rejected[FV_REJ_TEXT_FRAME]++;
            fv_debug("device %s sent a text frame; closing", s->ident.device_id);
            return -1;
        }
        if (!s->discarding) {
            if (s->rx.len + len > srv->cfg->max_message) {
                s->discarding = 1;
                fv_buf_free(&s->rx);
            } else if (fv_buf_append(&s->rx, in, len) != FV_OK) {
                fv_error("out of memory receiving from %s; closing", s->ident.device_id);
                return -1;
            }
        }
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
            s->in_msg = 0;
            if (s->discarding)
                send_error(s, FV_REJ_TOO_LARGE, "", 0, "message over the size limit");
            else
                handle_message(s, s->rx.data, s->rx.len);
            fv_buf_free(&s->rx); /* idle connections hold no receive buffer */
        }
        return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        struct frame *f = s->out_head;
        if (f == NULL) return 0;
        s->out_head = f->next;
        if (s->out_head == NULL) s->out_tail = NULL;
        s->out_n--;
        int n = lws_write(wsi, f->data + LWS_PRE, f->len, LWS_WRITE_BINARY);
        free(f);
        if (n < 0) return -1;
        if (s->out_head) lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLOSED:
        if (s && s->established) {
            record_connectivity(s, 2);
            fv_map_del_u64(&srv->sessions, s->id);
            s->dev->sessions--;
            if (s->dev->session_id == s->id) s->dev->session_id = 0;
            srv->m.connections_open--;
            s->established = 0;
            fv_debug("device %s disconnected", s->ident.device_id);
        }
        /* fall through */
    case LWS_CALLBACK_WSI_DESTROY:
        if (s) {
            while (s->out_head) {
                struct frame *f = s->out_head;
                s->out_head = f->next;
                free(f);
            }
            s->out_tail = NULL;
            s->out_n = 0;
            fv_buf_free(&s->rx);
        }
        return 0;
    default:
        return 0;
    }
}

/* ---- API protocol callback ------------------------------------------------------------- */

static const char *http_method(struct lws *wsi)
{
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI)) return "GET";
    if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI)) return "POST";
    return "OTHER";
}

static void api_session_end(struct api_session *a)
{
    if (a->resp.free_ctx) a->resp.free_ctx(a->resp.ctx);
    a->resp.free_ctx = NULL;
    a->resp.ctx = NULL;
    a->resp.more = NULL;
    fv_buf_free(&a->resp.body);
}

/* Streamed responses use chunked transfer encoding: each piece the producer makes is sent as
 * one or more chunks of at most 16 KB, and the producer runs again only once the previous
 * piece has been written, so a large result never sits in memory whole. */
static int api_write_piece(struct lws *wsi, struct api_session *a)
{
    unsigned char buf[LWS_PRE + 16 + 16384 + 16];
    size_t left = a->resp.body.len - a->sent;
    size_t n = left < 16384 ? left : 16384;
    int last_piece = n == left && (!a->chunked || a->done);
    unsigned char *p = buf + LWS_PRE;
    size_t len = 0;
    if (a->chunked && n) len += (size_t)snprintf((char *)p, 16, "%zx\r\n", n);
    memcpy(p + len, a->resp.body.data + a->sent, n);
    len += n;
    if (a->chunked && n) {
        memcpy(p + len, "\r\n", 2);
        len += 2;
    }
    if (a->chunked && last_piece) {
        memcpy(p + len, "0\r\n\r\n", 5);
        len += 5;
    }
    if (lws_write(wsi, p, len, last_piece ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)len)
        return -1;
    a->sent += n;
    if (!last_piece) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    api_session_end(a);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int erase_device(void *arg, const char *device, const struct fv_guard_ctx *ctx, char *err,
                        size_t errlen);

static int api_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    struct api_session *a = user;
    struct fv_server *srv = running;
    (void)len;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        char auth[256], args[4096] = "";
        int has_auth = lws_hdr_copy(wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION) > 0;
        /* lws keeps the query string as fragments (one per '&'), already URL-decoded. */
        size_t al = 0;
        for (int i = 0; al + 1 < sizeof args; i++) {
            int n = lws_hdr_copy_fragment(wsi, args + al + (al ? 1 : 0),
                                          (int)(sizeof args - al - 1), WSI_TOKEN_HTTP_URI_ARGS, i);
            if (n < 0) break;
            if (al) args[al] = '&';
            al += (size_t)n + (al ? 1 : 0);
        }
        int has_args = al > 0;
        struct fv_api_view v = {
            &srv->fleet,    &srv->m,         srv->wal,     srv->admin_token,
            srv->start_ms,  srv->store,      srv->keys,    has_args ? args : NULL,
            &srv->guard,    &srv->store_cfg, erase_device, srv,
            srv->audit_dir, srv->exports};
        memset(a, 0, sizeof *a);
        srv->m.http_requests++;
        fv_api_handle(&v, http_method(wsi), (const char *)in, has_auth ? auth : NULL, &a->resp);
        if (a->resp.status == 401) srv->m.http_unauthorized++;
        if (a->resp.more) {
            /* The first piece: a small result is complete at once and goes out whole. */
            int rc = a->resp.more(a->resp.ctx, &a->resp.body);
            if (rc < 0) {
                fv_buf_reset(&a->resp.body);
                api_session_end(a);
                a->resp.status = 500;
                a->resp.content_type = "application/json";
                const char *m = rc == FV_ECORRUPT
                                    ? "{\"error\":\"stored data failed verification (corrupt "
                                      "or altered); the server log names the file and "
                                      "offset\"}\n"
                                    : "{\"error\":\"query failed; see the server log\"}\n";
                fv_buf_append(&a->resp.body, m, strlen(m));
            } else if (rc <= 0) {
                a->resp.free_ctx(a->resp.ctx);
                a->resp.more = NULL;
                a->resp.free_ctx = NULL;
                a->resp.ctx = NULL;
            } else {
                a->chunked = 1;
            }
        }
        unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start,
                                          *end = buf + sizeof buf - 1;
        if (lws_add_http_common_headers(
                wsi, (unsigned)a->resp.status, a->resp.content_type,
                a->chunked ? LWS_ILLEGAL_HTTP_CONTENT_LEN : a->resp.body.len, &p, end))
            return 1;
        if (a->chunked &&
            lws_add_http_header_by_name(wsi, (const unsigned char *)"Transfer-Encoding:",
                                        (const unsigned char *)"chunked", 7, &p, end))
            return 1;
        if (a->resp.www_authenticate &&
            lws_add_http_header_by_name(wsi, (const unsigned char *)"WWW-Authenticate:",
                                        (const unsigned char *)"Bearer", 6, &p, end))
            return 1;
        if (lws_finalize_write_http_header(wsi, start, &p, end)) return 1;
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (a == NULL) return -1;
        if (a->chunked && !a->done && a->sent == a->resp.body.len) {
            fv_buf_reset(&a->resp.body);
            a->sent = 0;
            int rc = a->resp.more(a->resp.ctx, &a->resp.body);
            if (rc < 0) {
                fv_warn("api: a streamed response failed (%s); closing it", fv_strerror(rc));
                api_session_end(a);
                return -1;
            }
            if (rc == 0) a->done = 1;
        }
        return api_write_piece(wsi, a);
    }
    case LWS_CALLBACK_CLOSED_HTTP:
        if (a) api_session_end(a);
        return 0;
    default:
        return 0;
    }
}

/* ---- start-up ---------------------------------------------------------------------------- */

static int replay_rec(void *arg, const struct fv_wal_record *r, const char *file, uint64_t off)
{
    (void)off;
    struct fv_server *srv = arg;
    srv->m.replayed_records++;
    char pseudo[FV_DEVICE_ID_MAX + 1], ct[32];
    snprintf(pseudo, sizeof pseudo, "%.*s", (int)r->device_id_len, r->device_id);
    snprintf(ct, sizeof ct, "%.*s", (int)r->client_type_len, r->client_type);
    const unsigned char *dek;
    const char *name;
    int rc = (r->flags & FV_WAL_F_SEALED) ? fv_keystore_subject(srv->keys, pseudo, &dek, &name)
                                          : FV_EPROTO;
    if (rc == FV_ESTATE) {
        srv->m.shredded_records++; /* erased: its key is gone, so is the record */
        return FV_OK;
    }
    if (rc == FV_ENOENT) {
        /* Never erased, yet no key: the catalog was lost or replaced. Starting would hide
         * the device's data as if erased, so refuse. */
        fv_error("no data key for device %s in the catalog (DATA/catalog.db lost or replaced?)",
                 pseudo);
        return rc;
    }
    if (rc == FV_EPROTO) return FV_OK; /* written before sealing existed: not served */
    if (rc) return rc;
    int in_store = fv_wal_file_no(file) <= srv->store_wal_hi;
    if (in_store) {
        /* Already in the store (and in the fleet state rebuilt from it): this file is kept
         * only so that late resends of its records are recognised. */
        char dev_id[FV_SUBJECT_NAME_MAX + 1];
        int ep_;
        if (fv_subject_parse(name, dev_id, &ep_) != FV_OK)
            snprintf(dev_id, sizeof dev_id, "%s", name);
        if (r->txid_len && !(r->flags & FV_WAL_F_GENERATED)) {
            struct fv_device *d = fv_fleet_device(&srv->fleet, dev_id, ct);
            if (d == NULL || fv_device_add_txid(d, r->txid, r->txid_len) != FV_OK) return FV_ENOMEM;
        }
        return FV_OK;
    }
    struct fv_buf plain = {0};
    char id[FV_DEVICE_ID_MAX + 1];
    rc = fv_wal_open_payload(srv->keys, r, &plain, id, sizeof id);
    if (rc) {
        fv_buf_free(&plain);
        return rc; /* FV_ECORRUPT: a sealed payload was altered; replay names the place */
    }
    int is_v = r->topic_len == 1 && r->topic[0] == 'V';
    struct fv_vrecord v = {0};
    if (is_v && fv_payload_decode_v(plain.data, plain.len, &v, NULL, 0) != FV_OK)
        is_v = 0; /* stored before validation existed: kept as an event */
    int64_t t = (int64_t)((is_v && v.created_at_ms) ? v.created_at_ms : r->received_ms);
    rc = is_v ? fv_store_add_frame(srv->store, pseudo, dek, t, r->received_ms, &v)
              : fv_store_add_event(srv->store, pseudo, dek, t, r->received_ms, r->topic,
                                   r->topic_len, plain.data, plain.len);
    fv_buf_free(&plain);
    if (rc == FV_OK && !(r->flags & FV_WAL_F_GENERATED)) {
        /* The record's subject may be an earlier owner period: its txid still counts for
         * de-duplication, its values not for the current owner's state. */
        char dev_id[FV_SUBJECT_NAME_MAX + 1];
        int ep_;
        if (fv_subject_parse(id, dev_id, &ep_) != FV_OK) snprintf(dev_id, sizeof dev_id, "%s", id);
        struct fv_device *d = fv_fleet_device(&srv->fleet, dev_id, ct);
        if (d == NULL) rc = FV_ENOMEM;
        if (rc == FV_OK && r->txid_len) rc = fv_device_add_txid(d, r->txid, r->txid_len);
        if (rc == FV_OK && strcmp(current_subject(srv, d), id) == 0)
            rc = fv_device_apply(d, (uint64_t)t, r->received_ms, is_v ? &v : NULL);
    }
    fv_vrecord_free(&v);
    return rc;
}

/* Rebuilds the fleet state of every device held in the store's parts: counters from the part
 * indexes (nothing decrypted), the latest value of each signal from its newest blocks. */
static int rebuild_subject(void *arg, const struct fv_store_subject *su)
{
    struct fv_server *srv = arg;
    const unsigned char *dek;
    const char *name;
    int rc = fv_keystore_subject(srv->keys, su->pseudo, &dek, &name);
    if (rc == FV_ESTATE) return FV_OK; /* erased; compaction purges its blocks */
    if (rc == FV_ENOENT) {
        fv_error("no data key for subject %s held in the store (DATA/catalog.db lost or "
                 "replaced?)",
                 su->pseudo);
        return rc;
    }
    if (rc) return rc;
    char dev_id[FV_SUBJECT_NAME_MAX + 1];
    int ep_;
    if (fv_subject_parse(name, dev_id, &ep_) != FV_OK) snprintf(dev_id, sizeof dev_id, "%s", name);
    struct fv_device *d = fv_fleet_device(&srv->fleet, dev_id, "");
    if (d == NULL) return FV_ENOMEM;
    if (strcmp(current_subject(srv, d), name) != 0) return FV_OK; /* an earlier owner's */
    struct fv_store_cursor *cur;
    char err[512];
    /* The latest value of most signals is in the newest day of frames. */
    int64_t top = su->max_frame_t;
    int64_t from = top > INT64_MIN + 86400000 ? top - 86400000 : top;
    rc = fv_store_query(srv->store, su->pseudo, dek, from, top, NULL, 0, 0, &cur, err, sizeof err);
    if (rc) return rc;
    uint64_t records = d->records, datums = d->datums;
    struct fv_store_chunk ch;
    struct fv_datum *tmp = NULL;
    while (rc == FV_OK && (rc = fv_store_next(cur, &ch, err, sizeof err)) == 1) {
        rc = FV_OK;
        struct fv_datum *m = realloc(tmp, (ch.ncols ? ch.ncols : 1) * sizeof *m);
        if (m == NULL) {
            rc = FV_ENOMEM;
            break;
        }
        tmp = m;
        for (size_t i = 0; i < ch.n && rc == FV_OK; i++) {
            struct fv_vrecord v = {.created_at_ms = (uint64_t)ch.t[i], .data = tmp};
            for (size_t j = 0; j < ch.ncols; j++)
                if (ch.col[j][i].kind != FV_VK_NONE)
                    tmp[v.n++] = (struct fv_datum){ch.field[j], ch.col[j][i]};
            rc = fv_device_apply(d, (uint64_t)ch.t[i], 0, &v);
        }
    }
    free(tmp);
    fv_store_cursor_free(cur);
    if (rc == FV_ECORRUPT) {
        /* One damaged block must not keep the fleet from being served: say where it is;
         * queries that touch it fail with the same message. */
        fv_error("store: %s (device %s: latest state not rebuilt)", err, name);
        rc = FV_OK;
    } else if (rc < 0) {
        fv_error("store: %s", err);
        return rc;
    }
    d->records = records + su->records;
    d->datums = datums + su->datums;
    if (su->min_t > 0 && (d->first_ms == 0 || (uint64_t)su->min_t < d->first_ms))
        d->first_ms = (uint64_t)su->min_t;
    return FV_OK;
}

static int store_key(void *arg, const char *pseudo, unsigned char key[32])
{
    struct fv_server *srv = arg;
    const unsigned char *dek;
    const char *name;
    int rc = fv_keystore_subject(srv->keys, pseudo, &dek, &name);
    if (rc == FV_OK) memcpy(key, dek, 32);
    return rc;
}

static void store_wake(void *arg)
{
    (void)arg;
    fv_server_wake();
}

/* Is path inside dir (after resolving both)? A path that does not resolve counts as not. */
static int path_inside(const char *path, const char *dir)
{
    char rp[PATH_MAX], rd[PATH_MAX];
    if (realpath(path, rp) == NULL || realpath(dir, rd) == NULL) return 0;
    size_t n = strlen(rd);
    return strncmp(rp, rd, n) == 0 && (rp[n] == '/' || rp[n] == '\0');
}

static int load_admin_token(struct fv_server *srv, char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/admin.token", srv->cfg->data_dir);
    char *text = NULL;
    size_t len = 0;
    int rc = fv_os_read_file(path, 4096, &text, &len, err, errlen);
    if (rc == FV_OK) {
        while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
            text[--len] = '\0';
        if (len < 16 || len >= sizeof srv->admin_token) {
            fv_seterr(err, errlen, "%s: token must be 16..79 characters", path);
            free(text);
            return FV_EINVAL;
        }
        memcpy(srv->admin_token, text, len + 1);
        free(text);
        return FV_OK;
    }
    if (rc != FV_ENOENT) return rc;
    unsigned char rnd[32];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        fv_seterr(err, errlen, "no randomness for the admin token");
        return FV_EIO;
    }
    for (int i = 0; i < 32; i++)
        snprintf(srv->admin_token + 2 * i, 3, "%02x", rnd[i]);
    char line[80];
    snprintf(line, sizeof line, "%s\n", srv->admin_token);
    rc = fv_os_write_file_atomic(path, line, strlen(line), 0600, err, errlen);
    if (rc == FV_OK) fv_info("created the admin API token in %s (mode 0600)", path);
    return rc;
}

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        n--;
    fv_log(level == LLL_ERR ? FV_LOG_WARN : FV_LOG_DEBUG, "lws: %.*s", (int)n, line);
}

static const struct lws_protocols dev_protocols[] = {
    /* 1 KB receive chunks: a typical V record is a few hundred bytes, and this buffer
     * exists for every connection; larger messages arrive in several chunks. */
    {"fleet-telemetry", dev_cb, sizeof(struct session), 1024, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static const struct lws_protocols api_protocols[] = {
    {"http", api_cb, sizeof(struct api_session), 0, 0, NULL, 0}, {NULL, NULL, 0, 0, 0, NULL, 0}};

/* Art. 17 (privacy/tombstones.h): for each subject of the device, the tombstone goes to the
 * erasure list (beside the master key, then DATA) first, then the data key is destroyed,
 * the store forgets the subject and purges its blocks in the background, and the fleet
 * state drops its values. A crash in between is finished by the tombstone replay at start. */
struct period_names {
    char names[64][FV_SUBJECT_NAME_MAX + 1];
    size_t n;
};

static int collect_period(void *arg, const struct fv_subject_period *p)
{
    struct period_names *pn = arg;
    if (pn->n == 64) return FV_ELIMIT;
    snprintf(pn->names[pn->n++], sizeof pn->names[0], "%s", p->name);
    return 0;
}

static int erase_device(void *arg, const char *device, const struct fv_guard_ctx *ctx, char *err,
                        size_t errlen)
{
    struct fv_server *srv = arg;
    struct period_names *pn = calloc(1, sizeof *pn);
    if (pn == NULL) return FV_ENOMEM;
    /* Every owner period of the device is a subject of its own; all of them go. */
    int rc = fv_subject_periods(srv->keys, device, collect_period, pn, err, errlen);
    if (rc == FV_OK && pn->n == 0) snprintf(pn->names[pn->n++], sizeof pn->names[0], "%s", device);
    uint64_t now = fv_now_ms();
    const char *by = ctx ? ctx->principal : NULL, *ticket = ctx ? ctx->ticket : NULL;
    for (size_t k = 0; rc == FV_OK && k < pn->n; k++) {
        char pseudo[FV_PSEUDONYM_LEN + 1];
        rc = fv_keystore_pseudonym(srv->keys, pn->names[k], pseudo);
        if (rc == FV_OK && srv->tomb_outside[0])
            rc = fv_tombstone_append(srv->tomb_outside, pseudo, now, by, ticket, err, errlen);
        if (rc == FV_OK)
            rc = fv_tombstone_append(srv->tomb_inside, pseudo, now, by, ticket, err, errlen);
        if (rc == FV_OK) rc = fv_subjects_forget(srv->keys, pn->names[k], err, errlen);
        if (rc == FV_OK) rc = fv_zones_forget(srv->keys, pn->names[k], err, errlen);
        if (rc == FV_OK) rc = fv_keystore_destroy_pseudo(srv->keys, pseudo, err, errlen);
        if (rc == FV_OK) {
            fv_store_purge(srv->store, pseudo);
            fv_info("erased subject %s (data key destroyed; its blocks are purged in the "
                    "background)",
                    pseudo);
        }
    }
    free(pn);
    if (rc) return rc;
    struct fv_device *d = fv_fleet_find(&srv->fleet, device);
    if (d) fv_device_wipe(d);
    return FV_OK;
}

/* Replays one tombstone into the catalog, and remembers the subject so that, once the store
 * is open, its blocks still in parts are purged (a restored backup brings them back). */
static int replay_tombstone(void *arg, const char *pseudo, uint64_t at_ms)
{
    struct fv_server *srv = arg;
    const unsigned char *dek;
    const char *name;
    if (fv_buf_append(&srv->erased, pseudo, FV_PSEUDONYM_LEN) != FV_OK) return FV_ENOMEM;
    int rc = fv_keystore_subject(srv->keys, pseudo, &dek, &name);
    if (rc == FV_ESTATE) return FV_OK; /* erased already */
    char err[256];
    if (rc == FV_OK)
        fv_warn("erasure list: subject %s was erased at %llu but its key is back (a restored "
                "backup?): destroying it again",
                pseudo, (unsigned long long)at_ms);
    rc = fv_keystore_destroy_pseudo(srv->keys, pseudo, err, sizeof err);
    if (rc == FV_OK) rc = fv_zones_forget_pseudo(srv->keys, pseudo, err, sizeof err);
    if (rc) fv_error("erasure list: %s", err);
    return rc;
}

/* Access control: the policy, principals (in the catalog), the audit log and its signing
 * key (beside the master key file unless configured: never inside DATA by default when a
 * key file is used), quotas, and the per-purpose pseudonym secret. */
static int guard_open(struct fv_server *srv, char *err, size_t errlen)
{
    const struct fv_server_config *cfg = srv->cfg;
    struct fv_guard *g = &srv->guard;
    int rc = fv_policy_load(cfg->policy_file[0] ? cfg->policy_file : NULL, &g->policy, err, errlen);
    if (rc) return rc;
    g->db = fv_keystore_db(srv->keys);
    g->keys = srv->keys;
    rc = fv_principals_init(g->db, err, errlen);
    if (rc == FV_OK) rc = fv_quota_new(&g->quota);
    if (rc == FV_OK)
        rc = fv_keystore_derive(srv->keys, "fleetvault purpose pseudonyms v1", g->pseudo_secret);
    if (rc) return rc;
    g->admin_token = srv->admin_token;
    g->trim_m = cfg->loc_trim_m;
    g->grid_m = cfg->loc_grid_m;
    g->trip_gap_ms = (int64_t)cfg->loc_trip_gap_ms;
    char key[PATH_MAX], pub[PATH_MAX + 8], dir[PATH_MAX];
    if (cfg->audit_key[0]) {
        snprintf(key, sizeof key, "%s", cfg->audit_key);
    } else if (cfg->key_file[0]) {
        snprintf(key, sizeof key, "%s.audit.pem", cfg->key_file);
    } else {
        snprintf(key, sizeof key, "%s/audit-signing.pem", cfg->data_dir);
        fv_warn("audit: the signing key is kept in the data directory (%s): give the master key "
                "as a file, or set audit_key, to keep it apart",
                key);
    }
    snprintf(pub, sizeof pub, "%s.pub", key);
    if (access(key, F_OK) != 0) {
        rc = fv_audit_keygen(key, pub, err, errlen);
        if (rc) return rc;
        fv_info("audit: made the signing key %s; give %s to the witness", key, pub);
    }
    snprintf(dir, sizeof dir, "%s/audit", cfg->data_dir);
    snprintf(srv->audit_dir, sizeof srv->audit_dir, "%s", dir);
    struct fv_audit_opts ao = {.key_path = key,
                               .retention_ms = cfg->audit_retention_ms,
                               .witness_path = cfg->audit_witness[0] ? cfg->audit_witness : NULL};
    return fv_audit_open(dir, &ao, &g->audit, err, errlen);
}

static void guard_close(struct fv_guard *g)
{
    if (g->audit && fv_audit_close(g->audit) != FV_OK)
        fv_warn("audit: closing: the final checkpoint failed");
    g->audit = NULL;
    if (g->quota) fv_quota_free(g->quota);
    if (g->policy) fv_policy_free(g->policy);
    OPENSSL_cleanse(g->pseudo_secret, sizeof g->pseudo_secret);
    memset(g, 0, sizeof *g);
}

/* Another process (fleetvault subject ...) may change the registry: SQLite's data_version
 * changes when another connection commits; then every device's subject is looked up again
 * (at most once a second). */
static void registry_poll(struct fv_server *srv)
{
    static const char sql[] = "PRAGMA data_version";
    if (srv->guard.registry_changed) { /* our own API changed it */
        srv->guard.registry_changed = 0;
        srv->registry_gen++;
    }
    uint64_t now = fv_mono_ns();
    if (now - srv->registry_checked_ns < 1000000000ull) return;
    srv->registry_checked_ns = now;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(fv_keystore_db(srv->keys), sql, -1, &st, NULL) != SQLITE_OK) return;
    if (sqlite3_step(st) == SQLITE_ROW) {
        int64_t v = sqlite3_column_int64(st, 0);
        if (srv->data_version && v != srv->data_version) srv->registry_gen++;
        srv->data_version = v;
    }
    sqlite3_finalize(st);
}

/* Wakes the loop at least once a second so the store's maintenance runs when idle. */
static void tick_cb(struct ev_loop *loop, struct ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int fv_server_run(const struct fv_server_config *cfg, volatile sig_atomic_t *stop, char *err,
                  size_t errlen)
{
    struct fv_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL) return FV_ENOMEM;
    struct ev_loop *loop = NULL;
    int rc;
    srv->cfg = cfg;
    srv->stop = stop;
    srv->lock_fd = -1;
    srv->start_ms = fv_now_ms();
    raise_fd_limit();
    lws_set_log_level(LLL_ERR | (fv_log_get_level() == FV_LOG_DEBUG ? LLL_WARN : 0), lws_log_emit);

    rc = fv_certs_check_server(cfg->certs_dir, err, errlen);
    if (rc) goto out;
    rc = fv_os_mkdirs(cfg->data_dir, 0700, err, errlen);
    if (rc) goto out;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/LOCK", cfg->data_dir);
    srv->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (srv->lock_fd < 0 || flock(srv->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        fv_seterr(err, errlen, "%s: %s", path,
                  errno == EWOULDBLOCK ? "another fleetvault server is using this data directory"
                                       : strerror(errno));
        rc = FV_EIO;
        goto out;
    }
    rc = load_admin_token(srv, err, errlen);
    if (rc) goto out;
    rc = fv_kek_load(cfg->key_file[0] ? cfg->key_file : NULL, &srv->kek, err, errlen);
    if (rc) goto out;
    if (cfg->key_file[0] && path_inside(cfg->key_file, cfg->data_dir)) {
        fv_seterr(err, errlen,
                  "%s: the master key must be kept outside the data directory %s "
                  "(a copy of the data must not carry its key)",
                  cfg->key_file, cfg->data_dir);
        rc = FV_EINVAL;
        goto out;
    }
    snprintf(path, sizeof path, "%s/catalog.db", cfg->data_dir);
    rc = fv_keystore_open(path, &srv->kek, &srv->keys, err, errlen);
    if (rc) goto out;

    rc = fv_subjects_init(srv->keys, err, errlen);
    if (rc == FV_OK) rc = fv_zones_init(srv->keys, err, errlen);
    if (rc) goto out;
    /* The erasure list is replayed before anything is decrypted (tombstones.h). */
    if (cfg->key_file[0])
        snprintf(srv->tomb_outside, sizeof srv->tomb_outside, "%s.tombstones", cfg->key_file);
    snprintf(srv->tomb_inside, sizeof srv->tomb_inside, "%s/tombstones.jsonl", cfg->data_dir);
    if ((srv->tomb_outside[0] &&
         (rc = fv_tombstone_replay(srv->tomb_outside, replay_tombstone, srv, err, errlen))) ||
        (rc = fv_tombstone_replay(srv->tomb_inside, replay_tombstone, srv, err, errlen)))
        goto out;
    rc = guard_open(srv, err, errlen);
    if (rc == FV_OK) rc = fv_exports_new(&srv->exports);
    if (rc == FV_OK) {
        srv->store_cfg = cfg->store; /* for the classes; the store opens below */
        minimisation_init(srv);
    }
    if (rc) goto out;

    srv->store_cfg = cfg->store;
    snprintf(srv->store_cfg.dir, sizeof srv->store_cfg.dir, "%s/store", cfg->data_dir);
    rc = fv_store_open(&srv->store_cfg, 0, &srv->store, err, errlen);
    if (rc) goto out;
    srv->store_wal_hi = fv_store_wal_hi(srv->store);
    for (size_t at = 0; rc == FV_OK && at + FV_PSEUDONYM_LEN <= srv->erased.len;
         at += FV_PSEUDONYM_LEN) {
        char pseudo[FV_PSEUDONYM_LEN + 1];
        memcpy(pseudo, srv->erased.data + at, FV_PSEUDONYM_LEN);
        pseudo[FV_PSEUDONYM_LEN] = '\0';
        rc = fv_store_purge(srv->store, pseudo);
    }
    fv_buf_free(&srv->erased);
    if (rc) goto out;
    uint64_t t_rebuild = fv_mono_ns();
    rc = fv_store_subjects(srv->store, rebuild_subject, srv);
    if (rc) {
        fv_seterr(err, errlen, "rebuilding the fleet state from the store failed: %s",
                  fv_strerror(rc));
        goto out;
    }
    fv_info("store: %zu devices known from %s in %.1f ms", fv_fleet_count(&srv->fleet),
            srv->store_cfg.dir, (double)(fv_mono_ns() - t_rebuild) / 1e6);

    snprintf(path, sizeof path, "%s/wal", cfg->data_dir);
    struct fv_wal_opts wo = {
        .segment_bytes = cfg->wal_segment_bytes, .notify = wal_notify, .notify_arg = srv};
    uint64_t t0 = fv_mono_ns();
    rc = fv_wal_open(path, &wo, replay_rec, srv, &srv->wal, err, errlen);
    if (rc) goto out;
    fv_info("replayed %llu records of %zu devices from %s in %.1f ms",
            (unsigned long long)srv->m.replayed_records, fv_fleet_count(&srv->fleet), path,
            (double)(fv_mono_ns() - t0) / 1e6);

    running = srv;
    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    /* libev (epoll) rather than lws's default poll(): poll() costs O(connections) per
     * wake-up, which dominated CPU at a few hundred devices (measured with perf). The loop
     * is ours, so we can run it one iteration at a time and see *stop. */
    loop = ev_loop_new(EVFLAG_AUTO);
    if (loop == NULL) {
        fv_seterr(err, errlen, "cannot create the event loop");
        rc = FV_ENOMEM;
        goto out;
    }
    void *foreign[1] = {loop};
    ci.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                 LWS_SERVER_OPTION_LIBEV;
    ci.foreign_loops = foreign;
    ci.port = CONTEXT_PORT_NO_LISTEN;
    struct lws_context *ctx = lws_create_context(&ci);
    if (ctx == NULL) {
        fv_seterr(err, errlen, "cannot create the libwebsockets context");
        rc = FV_ENOMEM;
        goto out;
    }
    __atomic_store_n(&srv->ctx, ctx, __ATOMIC_RELEASE);

    char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX];
    snprintf(cert, sizeof cert, "%s/server.crt", cfg->certs_dir);
    snprintf(key, sizeof key, "%s/server.key", cfg->certs_dir);
    snprintf(ca, sizeof ca, "%s/ca.crt", cfg->certs_dir);
    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof vi);
    vi.vhost_name = "devices";
    vi.iface = cfg->listen_host;
    vi.port = cfg->listen_port;
    vi.protocols = dev_protocols;
    vi.ssl_cert_filepath = cert;
    vi.ssl_private_key_filepath = key;
    vi.ssl_ca_filepath = ca;
    vi.alpn = "http/1.1";
    vi.options =
        LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    vi.timeout_secs = 20;
    if (lws_create_vhost(ctx, &vi) == NULL) {
        fv_seterr(err, errlen, "cannot listen for devices on %s:%d (in use, or TLS files bad)",
                  cfg->listen_host, cfg->listen_port);
        rc = FV_EIO;
        goto out;
    }
    memset(&vi, 0, sizeof vi);
    vi.vhost_name = "api";
    vi.iface = cfg->api_host;
    vi.port = cfg->api_port;
    vi.protocols = api_protocols;
    if (lws_create_vhost(ctx, &vi) == NULL) {
        fv_seterr(err, errlen, "cannot listen for the API on %s:%d (in use?)", cfg->api_host,
                  cfg->api_port);
        rc = FV_EIO;
        goto out;
    }
    fv_info("serving devices on wss://%s:%d (mutual TLS, CA %s), API on http://%s:%d",
            cfg->listen_host, cfg->listen_port, ca, cfg->api_host, cfg->api_port);

    uint64_t last_trim = fv_mono_ns();
    unsigned catalog_turns = 0;
    fv_store_set_wake(srv->store, store_wake, srv);
    struct ev_timer tick;
    ev_timer_init(&tick, tick_cb, 1.0, 1.0);
    ev_timer_start(loop, &tick);
    while (!*stop && !fv_wal_failed(srv->wal)) {
        ev_run(loop, EVRUN_ONCE);
        fv_store_tick(srv->store, srv->wal, store_key, srv, fv_now_ms());
        if (srv->guard.audit) fv_audit_tick(srv->guard.audit);
        registry_poll(srv);
        /* TLS handshakes leave freed memory scattered through the heap; handing it back
         * every few seconds keeps idle connections near their true size (measured: 35 ->
         * 30 KB per connection at 1,000 devices). It takes a few ms for a large heap. */
        if (fv_mono_ns() - last_trim > 5000000000ull) {
            malloc_trim(0);
            last_trim = fv_mono_ns();
            /* New devices' keys grow the catalog's SQLite WAL (4 MiB before SQLite's own
             * checkpoint); fold it back into catalog.db once a minute. */
            if (srv->guard.audit && cfg->audit_retention_ms && catalog_turns % 720 == 0) {
                uint64_t gone = 0; /* hourly */
                if (fv_audit_apply_retention(srv->guard.audit, fv_now_ms(), &gone) == FV_OK && gone)
                    fv_info("audit: retention removed %llu old files", (unsigned long long)gone);
            }
            if (++catalog_turns % 12 == 0)
                sqlite3_wal_checkpoint_v2(fv_keystore_db(srv->keys), NULL,
                                          SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        }
    }
    if (fv_wal_failed(srv->wal)) {
        fv_seterr(err, errlen, "the write-ahead log failed (see above); stopped");
        rc = FV_EIO;
    } else {
        fv_info("stopping");
    }
out:
    if (srv->ctx) {
        struct lws_context *c = srv->ctx;
        lws_context_destroy(c); /* closes sessions (connectivity records go to the WAL) */
        __atomic_store_n(&srv->ctx, NULL, __ATOMIC_RELEASE);
    }
    if (loop) ev_loop_destroy(loop);
    running = NULL;
    if (srv->wal) fv_wal_close(srv->wal); /* makes everything appended durable */
    fv_store_close(srv->store); /* waits for a running job; T1 holds whatever it was doing */
    guard_close(&srv->guard);
    fv_exports_free(srv->exports);
    while (srv->pend_head) {
        struct pending *p = srv->pend_head;
        srv->pend_head = p->next;
        free(p);
    }
    fv_map_free(&srv->sessions);
    fv_fleet_free(&srv->fleet);
    fv_keystore_close(srv->keys);
    fv_kek_wipe(&srv->kek);
    fv_buf_free(&srv->seal_buf);
    fv_buf_free(&srv->erased);
    fv_buf_free(&srv->aad_buf);
    if (srv->lock_fd >= 0) close(srv->lock_fd);
    free(srv);
    return rc;
}

int fv_server_downlink(const char *device_id, const void *msg, size_t len)
{
    struct fv_server *srv = running;
    if (srv == NULL) return FV_ESTATE;
    struct fv_device *d = fv_fleet_find(&srv->fleet, device_id);
    struct session *s = d && d->session_id ? fv_map_get_u64(&srv->sessions, d->session_id) : NULL;
    if (s == NULL) return FV_ENOENT;
    struct fv_buf b = {.data = (unsigned char *)msg, .len = len, .cap = len};
    session_push(s, &b);
    return FV_OK;
}

void fv_server_wake(void)
{
    struct fv_server *srv = running;
    if (srv) {
        struct lws_context *ctx = __atomic_load_n(&srv->ctx, __ATOMIC_ACQUIRE);
        if (ctx) lws_cancel_service(ctx);
    }
}
