/*
 * session.c - device sessions and the record pipeline (session.h: invariants S1-S6); the
 * replies (queued frames, batched writes, acks released once durable) are session_reply.c's,
 * and what both share is session_int.h.
 *
 * Threads: the ingest loop only. The record log's notify wakes the loop from the writer
 * thread (lws_cancel_service); the loop then runs fv_ingest_flush_durable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "crypto/certs.h"
#include "crypto/keys.h"
#include "gateway/keyfetch.h"
#include "gateway/minimise.h"
#include "gateway/owners.h"
#include "gateway/presence.h"
#include "gateway/session.h"
#include "privacy/policy.h"
#include "privacy/subjects.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "wal/sealed.h"
#include "wal/wal_format.h"
#include "wire/envelope.h"
#include "wire/payload.h"
#include "wire/site.h"
#include "wire/wsframe.h"

#include "gateway/session_int.h"

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

void fv_ingest_registry_changed(struct fv_ingest *ing)
{
    ing->registry_gen++;
    /* O2: a change of owner wipes the device's state now, not at its next record */
    fv_owners_sweep(ing->d.keys, ing->d.fleet, ing->registry_gen, &ing->period_cursor);
}

void fv_ingest_keys_changed(struct fv_ingest *ing)
{
    __atomic_store_n(&ing->keys_stale, 1, __ATOMIC_RELEASE);
}

void fv_ingest_refresh_keys(struct fv_ingest *ing)
{
    if (__atomic_exchange_n(&ing->keys_stale, 0, __ATOMIC_ACQ_REL)) {
        /* Keys were destroyed through another keystore (an erasure on the API thread): read
         * every key and subject from the catalog again, so none is used once destroyed. */
        fv_keystore_forget(ing->d.keys);
        ing->registry_gen++;
    }
}

const char *fv_ingest_subject(struct fv_ingest *ing, struct fv_device *d)
{
    return fv_device_subject(ing->d.keys, ing->d.fleet, ing->registry_gen, d);
}

/* Seals the payload with the data key of subject (the owner period the record belongs to,
 * owners.h O1) and appends the record to the log, then hands it to the storage sink (K1).
 * received_ms is the record's receive time: the WAL keeps it, and it is the time of an event
 * (docs/formats.md: events are stored at receipt). Nothing personal reaches the disk in plaintext:
 * the key is created on a subject's first record. A subject whose key was destroyed gets FV_ESTATE:
 * it is erased, store nothing. Returns the log seq or a negative error. */
static int64_t log_put(struct fv_ingest *ing, const struct session *s, const char *subject,
                       uint8_t flags, const char *topic, size_t topic_len, const void *txid,
                       size_t txid_len, const struct fv_buf *payload, const struct fv_vrecord *v,
                       int64_t t_ms, uint64_t received_ms)
{
    const unsigned char *dek;
    char pseudo[FV_PSEUDONYM_LEN + 1];
    int rc = fv_keystore_dek(ing->d.keys, subject, 1, &dek, pseudo);
    if (rc == FV_EAGAIN && ing->d.keyfetch) {
        /* A cluster gateway: the key is fetched off the loop (keyfetch.h); the device gets
         * the storage error and resends (a new owner period met mid-connection; a device's
         * first subject is fetched before its connection is read: session_established). */
        if (fv_keyfetch_submit(ing->d.keyfetch, 0, pseudo, subject) == FV_OK)
            fv_debug("device %s: fetching its data key; record refused for now",
                     fv_session__log_name(s));
        return FV_EAGAIN;
    }
    if (rc) {
        fv_warn("device %s: no data key (%s); record refused", fv_session__log_name(s),
                rc == FV_ESTATE ? "its data was erased" : fv_strerror(rc));
        return rc;
    }
    struct fv_wal_record r = {
        .type = FV_WAL_REC_DATA,
        .flags = (uint8_t)(flags | FV_WAL_F_SEALED),
        .received_ms = received_ms,
        .device_id = pseudo, /* rule K2: the WAL names devices by pseudonym */
        .device_id_len = FV_PSEUDONYM_LEN,
        .client_type = s->ident.client_type,
        .client_type_len = (uint8_t)strlen(s->ident.client_type),
        .topic = topic,
        .topic_len = (uint8_t)topic_len,
        .txid = txid,
        .txid_len = (uint16_t)txid_len,
    };
    fv_buf_reset(&ing->aad_buf);
    fv_buf_reset(&ing->seal_buf);
    rc = fv_wal_record_aad(&r, &ing->aad_buf);
    if (rc == FV_OK)
        rc = fv_seal(dek, ing->aad_buf.data, ing->aad_buf.len, payload->data, payload->len,
                     &ing->seal_buf);
    if (rc) return rc;
    r.payload = ing->seal_buf.data;
    r.payload_len = (uint32_t)ing->seal_buf.len;
    int64_t seq = ing->d.log.append(ing->d.log.impl, &r);
    if (seq < 0) return seq;
    struct fv_logged lr = {.seq = (uint64_t)seq,
                           .rec = &r,
                           .dek = dek,
                           .t_ms = t_ms ? t_ms : (int64_t)r.received_ms,
                           .v = v,
                           .plain = v ? NULL : payload->data,
                           .plain_len = v ? 0 : payload->len};
    ing->d.sink.put(ing->d.sink.arg, &lr);
    return seq;
}

/* D2: an accepted message of a topic the capability listens to is handed to it too. */
static void listener_message(struct fv_ingest *ing, const struct session *s,
                             const struct fv_bytes *topic, const struct fv_bytes *payload)
{
    const struct fv_downlink_listener *l = ing->listener;
    if (l == NULL || l->on_message == NULL) return;
    for (int i = 0; i < FV_DOWNLINK_MAX_TOPICS && l->topics[i]; i++)
        if (bytes_eq(topic, l->topics[i])) {
            char t[65];
            snprintf(t, sizeof t, "%.*s", (int)topic->len, (const char *)topic->p);
            l->on_message(l->arg, s->ident.device_id, t, payload->p, payload->len);
            return;
        }
}

static void handle_message(struct session *s, const unsigned char *msg, size_t len)
{
    struct fv_ingest *ing = s->ing;
    struct fv_metrics *m = ing->d.metrics;
    struct fv_envelope env;
    char err[256];
    m->messages_total++;
    m->bytes_received += len;
    if (fv_envelope_decode(msg, len, &env, err, sizeof err) != FV_OK) {
        fv_session__send_error(s, FV_REJ_ENVELOPE, NULL, err);
        return;
    }
    if (env.txid.len > FV_TXID_MAX) { /* S6: never echoed, never stored */
        fv_session__send_error(s, FV_REJ_TOPIC, NULL, "txid longer than 1024 bytes");
        return;
    }
    if (env.message_type != FV_MSG_STREAM) {
        /* The reference acks unknown union types so the device does not resend. */
        m->unknown_message_type++;
        fv_session__send_ack(s, env.txid.p, env.txid.len, env.topic.p,
                             env.topic.len > 64 ? 0 : env.topic.len, s->msg_rx_ns);
        return;
    }
    if (!sender_matches(s, &env.sender_id)) {
        fv_session__send_error(s, FV_REJ_SENDER, &env.txid, "sender_id names another device");
        return;
    }
    if (env.topic.len == 0 || env.topic.len > 64 || bytes_eq(&env.topic, FV_TOPIC_CONNECTIVITY)) {
        fv_session__send_error(s, FV_REJ_TOPIC, &env.txid, "topic empty, too long, or reserved");
        return;
    }
    struct fv_device *dev = s->dev;
    const struct fv_config *cfg = ing->d.cfg;
    if (cfg->rate_limit_enabled) {
        int rule = fv_rate_rule_for(&cfg->rates, (const char *)env.topic.p, env.topic.len);
        struct fv_bucket *b = rule >= 0 ? fv_device_bucket(dev, rule, cfg->rates.n) : NULL;
        if (rule >= 0 && b == NULL) {
            fv_session__send_error(s, FV_REJ_STORAGE, &env.txid, "out of memory");
            return;
        }
        if (b && !fv_bucket_take(b, &cfg->rates.rules[rule], fv_mono_ns())) {
            fv_fleet_lock(ing->d.fleet);
            dev->rate_limited++;
            fv_fleet_unlock(ing->d.fleet);
            if (ing->presence) fv_presence_counted(ing->presence, dev, 0); /* P7 */
            fv_session__send_error(s, FV_REJ_RATE, &env.txid, "rate limited");
            return;
        }
    }
    if (env.txid.len && fv_device_has_txid(dev, env.txid.p, env.txid.len)) {
        /* Stored already: ack again once the original is durable (S2), store nothing. */
        m->duplicates++;
        fv_fleet_lock(ing->d.fleet);
        dev->duplicates++;
        fv_fleet_unlock(ing->d.fleet);
        if (ing->presence) fv_presence_counted(ing->presence, dev, 1);
        fv_session__queue_ack(s, ing->d.log.appended(ing->d.log.impl), &env.txid, &env.topic);
        return;
    }
    struct fv_buf norm = {0};
    struct fv_vrecord v = {0};
    /* A site sample (wire/site.h) is stored as the V record of its signals. */
    int is_site = bytes_eq(&env.topic, FV_TOPIC_SITE);
    if (is_site && s->ident.type_code != FV_CT_ENERGY_DEVICE) {
        fv_session__send_error(s, FV_REJ_TOPIC, &env.txid, "topic site is for energy devices");
        return;
    }
    int is_v = is_site || bytes_eq(&env.topic, FV_TOPIC_V);
    const char *topic = is_site ? FV_TOPIC_V : (const char *)env.topic.p;
    size_t topic_len = is_site ? strlen(FV_TOPIC_V) : env.topic.len;
    int rc = is_site ? fv_site_normalise(env.payload.p, env.payload.len, s->ident.device_id, &norm,
                                         &v, err, sizeof err)
                     : fv_payload_normalise(topic, topic_len, env.payload.p, env.payload.len,
                                            s->ident.device_id, &norm, &v, err, sizeof err);
    if (rc != FV_OK) {
        fv_session__send_error(s, FV_REJ_PAYLOAD, &env.txid, err);
        goto done;
    }
    /* O1: the owner period of the record's creation time, not of its upload */
    uint64_t now = fv_now_ms();
    uint64_t t = (is_v && v.created_at_ms) ? v.created_at_ms : now;
    int current = 1;
    fv_ingest_refresh_keys(ing);
    const char *subject = fv_device_record_subject(ing->d.keys, ing->d.fleet, ing->registry_gen,
                                                   dev, (int64_t)t, &current);
    if (subject == NULL) {
        fv_session__send_error(s, FV_REJ_STORAGE, &env.txid, "the owner registry cannot be read");
        goto done;
    }
    if (is_v) {
        uint32_t keep = fv_minimiser_keep(&ing->mz, dev, subject, current, ing->registry_gen);
        if (keep != UINT32_MAX) {
            size_t dropped = fv_minimise(&ing->mz, &v, keep, &norm);
            m->datums_minimised += dropped;
            if (dropped && v.n == 0) {
                /* Nothing left to keep: acknowledged (the device must not resend it), not
                 * stored, counted. */
                if (env.txid.len) fv_device_add_txid(dev, env.txid.p, env.txid.len);
                fv_session__queue_ack(s, ing->d.log.appended(ing->d.log.impl), &env.txid,
                                      &env.topic);
                goto done;
            }
        }
    }
    int64_t seq = log_put(ing, s, subject, v.is_resend ? FV_WAL_F_RESEND : 0, topic, topic_len,
                          env.txid.p, env.txid.len, &norm, is_v ? &v : NULL, (int64_t)t, now);
    if (seq < 0) {
        fv_session__send_error(s, FV_REJ_STORAGE, &env.txid, fv_strerror((int)seq));
        goto done;
    }
    if (env.txid.len) fv_device_add_txid(dev, env.txid.p, env.txid.len);
    if (current) {                   /* O2: an earlier owner's record changes no state */
        fv_fleet_lock(ing->d.fleet); /* F1 */
        fv_device_apply(dev, t, now, is_v ? &v : NULL);
        fv_fleet_unlock(ing->d.fleet);
    }
    m->records_stored[fv_metrics_topic_slot(topic, topic_len)]++;
    m->datums_stored += v.n;
    fv_session__queue_ack(s, (uint64_t)seq, &env.txid, &env.topic);
    listener_message(ing, s, &env.topic, &env.payload);
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
    uint64_t now = fv_now_ms();
    fv_ingest_refresh_keys(s->ing); /* before the subject and its key are looked up */
    if (fv_payload_build_connectivity(s->ident.device_id, s->conn_id, status, now, s->netif, &pl) ==
            FV_OK &&
        log_put(s->ing, s, s->dev ? fv_ingest_subject(s->ing, s->dev) : s->ident.device_id,
                FV_WAL_F_GENERATED, FV_TOPIC_CONNECTIVITY, strlen(FV_TOPIC_CONNECTIVITY), txid,
                strlen(txid), &pl, NULL, (int64_t)now, now) > 0)
        s->ing->d.metrics->records_stored[3]++;
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
        s->ing->d.metrics->identity_rejected++;
        return -1;
    }
    if (fv_identity_from_cert(leaf, &s->ident, err, sizeof err) != FV_OK) {
        fv_warn("connection refused: %s", err);
        s->ing->d.metrics->identity_rejected++;
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

static int await_key(struct fv_ingest *ing, struct session *s);

/* A connection ready to be read: its connect record, then the downlink's listener (D2). */
static void session_ready(struct fv_ingest *ing, struct session *s)
{
    record_connectivity(s, 1);
    if (ing->listener && ing->listener->on_connect)
        ing->listener->on_connect(ing->listener->arg, s->ident.device_id);
}

static int session_established(struct fv_ingest *ing, struct session *s, struct lws *wsi)
{
    char netif[sizeof s->netif], conn[sizeof s->conn_id];
    memcpy(netif, s->netif, sizeof netif);
    memcpy(conn, s->conn_id, sizeof conn);
    memset(s, 0, sizeof *s);
    memcpy(s->netif, netif, sizeof netif);
    memcpy(s->conn_id, conn, sizeof conn);
    s->ing = ing;
    s->wsi = wsi;
    if (identify(s)) return -1;
    char ps[FV_PSEUDONYM_LEN + 1];
    if (fv_keystore_pseudonym(ing->d.keys, s->ident.device_id, ps) == FV_OK)
        snprintf(s->log_id, sizeof s->log_id, "dev-%s", ps);
    s->dev = fv_fleet_device(ing->d.fleet, s->ident.device_id, s->ident.client_type);
    if (s->dev && s->dev->sessions >= FV_SESSIONS_PER_DEVICE) { /* S6 */
        fv_warn("device %s already has %d connections open; refused another",
                fv_session__log_name(s), s->dev->sessions);
        ing->d.metrics->connections_refused++;
        return -1;
    }
    s->id = ++ing->next_session_id;
    if (s->dev == NULL || fv_map_put_u64(&ing->sessions, s->id, s) != FV_OK) {
        fv_error("out of memory accepting %s", fv_session__log_name(s));
        return -1;
    }
    if (s->conn_id[0] == '\0')
        snprintf(s->conn_id, sizeof s->conn_id, "fv-%llu", (unsigned long long)s->id);
    s->established = 1;
    s->last_rx_ns = fv_mono_ns();
    fv_fleet_lock(ing->d.fleet);
    s->dev->sessions++;
    s->dev->session_id = s->id;
    fv_fleet_unlock(ing->d.fleet);
    if (ing->presence) fv_presence_connected(ing->presence, s->dev); /* P1 */
    ing->d.metrics->connections_total++;
    ing->d.metrics->connections_open++;
    if (ing->paused) {
        lws_rx_flow_control(wsi, 0);
        s->paused = 1;
    }
    fv_debug("device %s.%s connected (%s)", s->ident.client_type, fv_session__log_name(s),
             s->netif[0] ? s->netif : "?");
    if (ing->d.keyfetch && await_key(ing, s)) return 0; /* read once the key is here */
    session_ready(ing, s);
    return 0;
}

/* A cluster gateway (keyfetch.h): when the device's subject key is not in the keystore yet,
 * submits its fetch and stops reading the connection until fv_ingest_keys_fetched has it.
 * 1 if the connection waits; 0 when the key is here (or cannot be had: the records are then
 * refused as without a key). */
static int await_key(struct fv_ingest *ing, struct session *s)
{
    fv_ingest_refresh_keys(ing);
    const char *subject = fv_ingest_subject(ing, s->dev);
    const unsigned char *dek;
    char pseudo[FV_PSEUDONYM_LEN + 1];
    if (subject == NULL || fv_keystore_dek(ing->d.keys, subject, 1, &dek, pseudo) != FV_EAGAIN)
        return 0;
    if (fv_keyfetch_submit(ing->d.keyfetch, s->id, pseudo, subject) != FV_OK) return 0;
    s->key_wait = 1;
    lws_rx_flow_control(s->wsi, 0);
    return 1;
}

void fv_ingest_keys_fetched(struct fv_ingest *ing)
{
    if (ing->d.keyfetch == NULL) return;
    struct fv_keyfetch_answer a;
    while (fv_keyfetch_take(ing->d.keyfetch, &a)) {
        fv_ingest_refresh_keys(ing);
        int rc = fv_keystore_adopt(ing->d.keys, a.rc, a.pseudo, a.dek, a.name);
        OPENSSL_cleanse(&a.dek, sizeof a.dek);
        if (rc != FV_OK && rc != FV_ESTATE)
            fv_warn("cluster: the key of subject %s: %s", a.pseudo, fv_strerror(rc));
        struct session *s = a.session_id ? fv_map_get_u64(&ing->sessions, a.session_id) : NULL;
        if (s == NULL || !s->key_wait) continue;
        s->key_wait = 0;
        if (rc != FV_OK && rc != FV_ESTATE) { /* K2: it reconnects and tries again */
            fv_session__close_soon(s);
            continue;
        }
        session_ready(ing, s); /* an erased subject's connect record is refused, as its records */
        if (!s->paused) lws_rx_flow_control(s->wsi, 1);
        s->last_rx_ns = fv_mono_ns(); /* the idle clock runs only while we read */
    }
}

static int session_receive(struct fv_ingest *ing, struct session *s, struct lws *wsi,
                           const void *in, size_t len)
{
    if (!s->in_msg) {
        s->in_msg = 1;
        s->msg_rx_ns = fv_mono_ns();
        s->discarding = 0;
        s->text = !lws_frame_is_binary(wsi);
        fv_buf_reset(&s->rx);
    }
    if (s->text) {
        /* Only binary frames carry data; a text frame closes the socket. */
        ing->d.metrics->rejected[FV_REJ_TEXT_FRAME]++;
        fv_debug("device %s sent a text frame; closing", fv_session__log_name(s));
        return -1;
    }
    if (!s->discarding) {
        if (s->rx.len + len > ing->d.cfg->max_message) {
            s->discarding = 1;
            fv_buf_free(&s->rx);
        } else if (fv_buf_append(&s->rx, in, len) != FV_OK) {
            fv_error("out of memory receiving from %s; closing", fv_session__log_name(s));
            return -1;
        }
    }
    if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
        s->in_msg = 0;
        if (s->discarding)
            fv_session__send_error(s, FV_REJ_TOO_LARGE, NULL, "message over the size limit");
        else
            handle_message(s, s->rx.data, s->rx.len);
        fv_buf_free(&s->rx); /* idle connections hold no receive buffer */
    }
    return 0;
}

static void session_closed(struct fv_ingest *ing, struct session *s)
{
    if (s->established) {
        if (!s->key_wait) record_connectivity(s, 2); /* no key, no connect record either */
        fv_map_del_u64(&ing->sessions, s->id);
        fv_fleet_lock(ing->d.fleet);
        s->dev->sessions--;
        if (s->dev->session_id == s->id) s->dev->session_id = 0;
        fv_fleet_unlock(ing->d.fleet);
        if (ing->presence) fv_presence_closed(ing->presence, s->dev); /* P4 */
        ing->d.metrics->connections_open--;
        s->established = 0;
        fv_debug("device %s disconnected", fv_session__log_name(s));
    }
    while (s->out_head) {
        struct frame *f = s->out_head;
        s->out_head = f->next;
        free(f);
    }
    s->out_tail = NULL;
    s->out_bytes = 0;
    fv_buf_free(&s->rx);
}

static int dev_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    struct session *s = user;
    struct lws_vhost *vh = wsi ? lws_get_vhost(wsi) : NULL;
    struct fv_ingest *ing = vh ? lws_vhost_user(vh) : NULL;
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION: {
        char why[160];
        int depth;
        if (!fv_tls_client_refused(user, len, why, sizeof why, &depth)) return 0;
        /* Not the subject: its CN is the device's VIN (personal data, never logged). */
        fv_warn("client certificate rejected: %s (depth %d)", why, depth);
        if (ing) ing->d.metrics->tls_rejected++;
        return 1; /* tests/e2e/test_gateway.py checks that a bad certificate is refused */
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
        if (ing) fv_ingest_flush_durable(ing);
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
    case LWS_CALLBACK_ESTABLISHED:
        return ing ? session_established(ing, s, wsi) : -1;
    case LWS_CALLBACK_RECEIVE:
        s->last_rx_ns = fv_mono_ns();
        s->pinged = 0;
        return session_receive(ing, s, wsi, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        s->last_rx_ns = fv_mono_ns();
        s->pinged = 0;
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (s->closing) return -1;
        if (s->out_head == NULL) return 0;
        if (fv_session__write_batch(s, wsi) != 0) return -1;
        if (s->out_head) lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (s && ing) session_closed(ing, s);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols dev_protocols[] = {
    /* 1 KB receive chunks: lws keeps this buffer (plus LWS_PRE) for every connection while it
     * is open, and session_receive gathers a message from its chunks anyway. Smaller chunks
     * save memory per connection (256 bytes: ~0.8 KB a vehicle) but cost ingest CPU, one
     * callback and SSL_read per chunk: bench/store/run.sh 300 x 500, server CPU-s per million
     * datums 1.13-1.18 with 256, 1.01-1.12 with 640, 0.93-0.98 with 1024 (bench/README.md). */
    {"fleet-telemetry", dev_cb, sizeof(struct session), 1024, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

const struct lws_protocols *fv_ingest_protocols(void)
{
    return dev_protocols;
}

/* ---- life cycle, backpressure, downlink --------------------------------------------------- */

int fv_ingest_new(const struct fv_ingest_deps *deps, struct fv_ingest **out)
{
    struct fv_ingest *ing = calloc(1, sizeof *ing);
    if (ing == NULL) return FV_ENOMEM;
    ing->d = *deps;
    fv_minimiser_init(&ing->mz, ing->d.policy, ing->d.store_cfg, ing->d.keys);
    ing->period_cursor = -1; /* O2: the periods recorded before the start are known */
    fv_owners_sweep(ing->d.keys, ing->d.fleet, ing->registry_gen, &ing->period_cursor);
    *out = ing;
    return FV_OK;
}

void fv_ingest_free(struct fv_ingest *ing)
{
    if (ing == NULL) return;
    while (ing->pend_head) {
        struct pending *p = ing->pend_head;
        ing->pend_head = p->next;
        free(p);
    }
    fv_map_free(&ing->sessions);
    fv_buf_free(&ing->seal_buf);
    fv_buf_free(&ing->tx_buf);
    fv_buf_free(&ing->aad_buf);
    free(ing);
}

void fv_ingest_pace(struct fv_ingest *ing)
{
    if (ing->d.storage_full == NULL) return;
    uint64_t now = fv_mono_ns();
    if (now - ing->paced_ns < 10000000ull) return; /* every 10 ms at most */
    ing->paced_ns = now;
    int full = ing->d.storage_full(ing->d.storage_full_arg) != 0;
    if (full == ing->paused) return;
    ing->paused = full;
    if (full) {
        ing->d.metrics->ingest_pauses++;
        fv_warn("ingest paused: the store's head is over its memory budget (a flush or merge "
                "is behind); devices wait until it catches up");
    } else {
        fv_info("ingest resumed");
    }
    for (size_t i = 0; i < ing->sessions.cap; i++) {
        struct session *s = ing->sessions.slots[i].hash ? ing->sessions.slots[i].val : NULL;
        if (s && s->paused != full) {
            lws_rx_flow_control(s->wsi, full || s->key_wait ? 0 : 1);
            s->paused = full;
            s->last_rx_ns = now; /* the idle clock runs only while we read */
        }
    }
}

void fv_ingest_sweep(struct fv_ingest *ing)
{
    uint64_t now = fv_mono_ns();
    if (now - ing->swept_ns < 1000000000ull) return;
    ing->swept_ns = now;
    uint64_t idle = ing->d.cfg->device_idle_ms * 1000000ull;
    for (size_t i = 0; i < ing->sessions.cap; i++) {
        struct session *s = ing->sessions.slots[i].hash ? ing->sessions.slots[i].val : NULL;
        if (s == NULL || s->closing || s->paused || s->key_wait)
            continue; /* paused or waiting for its key: we are not reading */
        uint64_t quiet = now - s->last_rx_ns;
        if (quiet >= idle) {
            fv_info("device %s: nothing received for %llu s (not even a pong); closing",
                    fv_session__log_name(s), (unsigned long long)(quiet / 1000000000ull));
            ing->d.metrics->idle_closed++;
            fv_session__close_soon(s);
        } else if (quiet >= idle / 3 && !s->pinged) {
            s->pinged = 1;
            fv_debug("device %s: silent for %llu ms; ping", fv_session__log_name(s),
                     (unsigned long long)(quiet / 1000000));
            fv_session__push_frame(s, "fv", 2, 1, 0);
        }
    }
}

void fv_ingest_set_listener(struct fv_ingest *ing, const struct fv_downlink_listener *l)
{
    ing->listener = l;
}

void fv_ingest_set_presence(struct fv_ingest *ing, struct fv_presence *p)
{
    ing->presence = p;
}

int fv_ingest_close_device(struct fv_ingest *ing, const struct fv_device *d)
{
    int n = 0;
    for (size_t i = 0; i < ing->sessions.cap; i++) {
        struct session *s = ing->sessions.slots[i].hash ? ing->sessions.slots[i].val : NULL;
        if (s && s->dev == d && !s->closing) {
            fv_session__close_soon(s);
            n++;
        }
    }
    ing->d.metrics->connections_moved += (uint64_t)n;
    return n;
}

int fv_ingest_downlink(struct fv_ingest *ing, const char *device_id, const void *msg, size_t len)
{
    struct fv_device *d = fv_fleet_find(ing->d.fleet, device_id);
    struct session *s = d && d->session_id ? fv_map_get_u64(&ing->sessions, d->session_id) : NULL;
    if (s == NULL) return FV_ENOENT;
    return fv_session__push(s, msg, len);
}
