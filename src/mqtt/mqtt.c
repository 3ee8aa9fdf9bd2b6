/*
 * mqtt.c - the MQTT publisher (mqtt.h): its thread, the per-device state machine, the audit
 * queue, and the libmosquitto client.
 *
 * Each device the fleet knows has a state here, keyed by its fleet entry (which lives until
 * the fleet is freed, fleet.h F1):
 *
 *   IDLE --consent holds now--> STARTING (mqtt.start queued) --entry written (Q3)--> ON
 *   STARTING, ON --consent gone, or a new owner--> CLEARING (summary and mqtt.stop queued)
 *   CLEARING --every retained topic emptied (Q4)--> IDLE
 *
 * Each cycle (every interval; every 200 ms while a start waits for its audit entry): the
 * fleet is listed, each device's configured signals are copied under the fleet's lock as
 * value texts with their times, the lock released, then consent is looked up through the
 * publisher's own keystore and the values that changed are published (QoS 1, retained).
 * The network thread (net_main: libmosquitto's loop, reconnection with backoff) only sets
 * the connected flag, asks for a resync after each connection (Q5) and hands over the
 * retained topics of ours the broker sends after it (Q7, under omu); it touches no device
 * state.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <openssl/crypto.h>

#include "mqtt/mqtt.h"
#include "mqtt/mqtt_int.h"
#include "os/fsio.h"
#include "privacy/guard.h"
#include "privacy/subjects.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/map.h"

#define QOS                 1
#define KEEPALIVE_S         30
#define BACKOFF_MIN_S       1
#define BACKOFF_MAX_S       60
#define UNREACHABLE_MS      5000 /* not connected this long: say so in the log (once) */
#define CONSENT_RANGES      16
#define ORPHAN_WINDOW_MS    10000 /* after a connection: retained topics of ours are looked for */
#define FV_MQTT_ORPHANS_MAX 1000000

enum { D_IDLE = 0, D_STARTING, D_ON, D_CLEARING };

struct slot {
    char last[FV_MQTT_VALUE_MAX]; /* the value text last published ("" : none since connect) */
    uint8_t state_kept;           /* a retained value of it may be on the broker */
    uint8_t disc_kept;            /* its retained discovery message may be on the broker */
    uint8_t disc_sent;            /* discovery sent since the last connection */
    uint8_t binary;               /* discovered as a binary_sensor */
};

struct pdev {
    const struct fv_device *d;
    int state;
    char subject[FV_SUBJECT_NAME_MAX + 1];   /* the owner period published */
    char subject_ps[FV_PSEUDONYM_LEN + 1];   /* its keyed pseudonym (audit, G6) */
    char name[FV_PURPOSE_PSEUDONYM_LEN + 1]; /* its topic name (Q2) */
    uint64_t start_rec;                      /* the mqtt.start record to be written */
    uint64_t values, summary_from_ms;        /* values sent since the last summary */
    struct slot slot[FV_MQTT_CFG_SIGNALS];
};

/* A device's configured signals as copied under the fleet's lock. */
struct snap {
    int have[FV_MQTT_CFG_SIGNALS];
    int binary[FV_MQTT_CFG_SIGNALS];
    uint64_t t[FV_MQTT_CFG_SIGNALS];
    char text[FV_MQTT_CFG_SIGNALS][FV_MQTT_VALUE_MAX];
};

struct qrec {
    uint64_t id;
    char action[16];
    char subject[FV_PSEUDONYM_LEN + 1];
    char reason[96];
    char extra[192];
};

struct fv_mqtt {
    const struct fv_mqtt_cfg *cfg;
    struct fv_fleet *fleet;
    struct fv_metrics *m;
    const struct fv_policy *policy;
    void (*wake_audit)(void *arg);
    void *wake_arg;
    struct fv_keystore *ks; /* the publisher thread's */
    unsigned char secret[32];
    struct mosquitto *mosq;
    pthread_t net; /* the network thread (net_main) */
    int net_started;
    int net_stop; /* atomic */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu; /* stop and cv */
    pthread_cond_t cv;
    int stop;
    pthread_mutex_t qmu; /* the audit queue */
    struct qrec *q;
    size_t qhead, qn;
    uint64_t next_id;    /* the publisher's (ids of records queued) */
    uint64_t written_id; /* atomic: the last record written */
    int connected;       /* atomic, set by the network thread */
    int resync;          /* atomic: a connection was made, send everything again (Q5) */
    struct fv_map devs;  /* fleet device pointer -> struct pdev * (the publisher's) */
    struct fv_map names; /* topic name -> struct pdev *, STARTING to CLEARING (the publisher's) */
    pthread_mutex_t omu; /* the retained topics seen (Q7), from the network thread */
    char **orphans;
    size_t norphans;
    uint64_t subscribed_ms; /* when the subscription of Q7 began (0: none) */
    uint64_t last_summary_ms, down_since_ms;
    int warned_down, warned_queue;
};

/* ---- the audit queue (Q3) ----------------------------------------------------------------- */

/* Queues one record; returns its id, or 0 when the queue is full (the caller waits). */
static uint64_t queue(struct fv_mqtt *m, const char *action, const struct pdev *p,
                      const char *reason, const char *extra)
{
    uint64_t id = 0;
    pthread_mutex_lock(&m->qmu);
    if (m->qn < FV_MQTT_AUDIT_QUEUE) {
        struct qrec *r = &m->q[(m->qhead + m->qn++) % FV_MQTT_AUDIT_QUEUE];
        id = r->id = ++m->next_id;
        snprintf(r->action, sizeof r->action, "%s", action);
        snprintf(r->subject, sizeof r->subject, "%s", p->subject_ps);
        snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
        snprintf(r->extra, sizeof r->extra, "%s", extra);
    }
    pthread_mutex_unlock(&m->qmu);
    if (id && m->wake_audit) m->wake_audit(m->wake_arg);
    return id;
}

static size_t queue_free(struct fv_mqtt *m)
{
    pthread_mutex_lock(&m->qmu);
    size_t n = FV_MQTT_AUDIT_QUEUE - m->qn;
    pthread_mutex_unlock(&m->qmu);
    return n;
}

size_t fv_mqtt_audit_drain(struct fv_mqtt *m, int (*fn)(void *arg, const struct fv_mqtt_audit *r),
                           void *arg)
{
    if (m == NULL) return 0;
    size_t done = 0;
    pthread_mutex_lock(&m->qmu);
    while (m->qn) {
        const struct qrec *r = &m->q[m->qhead];
        struct fv_mqtt_audit a = {.action = r->action,
                                  .subject = r->subject,
                                  .reason = r->reason[0] ? r->reason : NULL,
                                  .extra_json = r->extra};
        if (fn(arg, &a) != 0) break;
        __atomic_store_n(&m->written_id, r->id, __ATOMIC_RELEASE);
        m->qhead = (m->qhead + 1) % FV_MQTT_AUDIT_QUEUE;
        m->qn--;
        done++;
    }
    pthread_mutex_unlock(&m->qmu);
    return done;
}

/* The summary of what was sent for p since the last one (nothing when nothing was). */
static void queue_summary(struct fv_mqtt *m, struct pdev *p, uint64_t now)
{
    if (p->values == 0) return;
    char extra[192];
    snprintf(extra, sizeof extra,
             "{\"device\":\"%s\",\"values\":%llu,\"from_ms\":%llu,\"to_ms\":%llu}", p->name,
             (unsigned long long)p->values, (unsigned long long)p->summary_from_ms,
             (unsigned long long)now);
    if (queue(m, "mqtt.publish", p, NULL, extra)) {
        p->values = 0;
        p->summary_from_ms = now;
    }
}

/* ---- the client --------------------------------------------------------------------------- */

/* Q7: the device name in one of our topics (PREFIX/NAME/SIGNAL or
 * DISCOVERY/COMPONENT/fleetvault_NAME_SIGNAL/config) into name, or -1. */
static int topic_name(const struct fv_mqtt_cfg *c, const char *topic,
                      char name[FV_PURPOSE_PSEUDONYM_LEN + 1])
{
    size_t tp = strlen(c->topic_prefix), dp = strlen(c->discovery_prefix);
    const char *at = NULL;
    if (strncmp(topic, c->topic_prefix, tp) == 0 && topic[tp] == '/') {
        at = topic + tp + 1;
    } else if (strncmp(topic, c->discovery_prefix, dp) == 0 && topic[dp] == '/') {
        at = strchr(topic + dp + 1, '/');
        if (at == NULL || strncmp(at + 1, "fleetvault_", 11) != 0) return -1;
        at += 12;
    } else {
        return -1;
    }
    size_t n = strspn(at, "0123456789abcdef");
    if (n != FV_PURPOSE_PSEUDONYM_LEN || (at[n] != '/' && at[n] != '_')) return -1;
    memcpy(name, at, n);
    name[n] = '\0';
    return 0;
}

/* Network thread: a retained message of ours from before (Q7), kept for the publisher. */
static void on_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *msg)
{
    (void)mosq;
    struct fv_mqtt *m = arg;
    char name[FV_PURPOSE_PSEUDONYM_LEN + 1];
    if (msg->payloadlen == 0 || !msg->retain || topic_name(m->cfg, msg->topic, name) != 0) return;
    char *t = strdup(msg->topic);
    pthread_mutex_lock(&m->omu);
    char **grown = t && m->norphans < FV_MQTT_ORPHANS_MAX
                       ? realloc(m->orphans, (m->norphans + 1) * sizeof *grown)
                       : NULL;
    if (grown) {
        m->orphans = grown;
        m->orphans[m->norphans++] = t;
        t = NULL;
    }
    pthread_mutex_unlock(&m->omu);
    free(t);
}

static void subscribe_ours(struct fv_mqtt *m, int on)
{
    char t[3][160];
    snprintf(t[0], sizeof t[0], "%s/+/+", m->cfg->topic_prefix);
    snprintf(t[1], sizeof t[1], "%s/sensor/+/config", m->cfg->discovery_prefix);
    snprintf(t[2], sizeof t[2], "%s/binary_sensor/+/config", m->cfg->discovery_prefix);
    for (int i = 0; i < 3; i++) {
        int rc = on ? mosquitto_subscribe(m->mosq, NULL, t[i], QOS)
                    : mosquitto_unsubscribe(m->mosq, NULL, t[i]);
        if (rc != MOSQ_ERR_SUCCESS) m->m->mqtt_errors++;
    }
}

/* Network thread. */
static void on_connect(struct mosquitto *mosq, void *arg, int rc)
{
    (void)mosq;
    struct fv_mqtt *m = arg;
    if (rc != 0) {
        m->m->mqtt_errors++;
        fv_warn("mqtt: the broker at %s:%d refused the connection: %s", m->cfg->host, m->cfg->port,
                mosquitto_connack_string(rc));
        return;
    }
    subscribe_ours(m, 1); /* the broker sends what it retains of ours (Q7) */
    __atomic_store_n(&m->resync, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&m->connected, 1, __ATOMIC_RELEASE);
    m->m->mqtt_connected = 1;
    fv_info("mqtt: connected to the broker at %s:%d%s", m->cfg->host, m->cfg->port,
            m->cfg->ca[0] ? " (TLS)" : "");
}

/* Network thread. */
static void on_disconnect(struct mosquitto *mosq, void *arg, int rc)
{
    (void)mosq;
    struct fv_mqtt *m = arg;
    int was = __atomic_exchange_n(&m->connected, 0, __ATOMIC_ACQ_REL);
    m->m->mqtt_connected = 0;
    if (rc != 0 && was) {
        m->m->mqtt_errors++;
        fv_warn("mqtt: lost the connection to the broker at %s:%d (%s); reconnecting with "
                "backoff",
                m->cfg->host, m->cfg->port, mosquitto_strerror(rc));
    }
}

static int publish(struct fv_mqtt *m, const char *topic, const char *payload)
{
    size_t len = payload ? strlen(payload) : 0;
    int rc = mosquitto_publish(m->mosq, NULL, topic, (int)len, payload, QOS, true);
    if (rc == MOSQ_ERR_SUCCESS) {
        m->m->mqtt_published++;
        return 0;
    }
    m->m->mqtt_errors++;
    fv_debug("mqtt: publish to %s failed: %s", topic, mosquitto_strerror(rc));
    return -1;
}

static int connected(struct fv_mqtt *m)
{
    return __atomic_load_n(&m->connected, __ATOMIC_ACQUIRE);
}

/* ---- one device ----------------------------------------------------------------------------- */

/* Under the fleet's lock: the configured signals as texts with their times. */
static void snapshot(struct fv_mqtt *m, const struct fv_device *d, struct snap *s)
{
    fv_fleet_lock(m->fleet);
    for (size_t i = 0; i < m->cfg->nsignals; i++) {
        const struct fv_signal_state *st = fv_device_signal(d, m->cfg->signals[i]);
        s->have[i] = st && fv_mqtt__value_text(&st->value, s->text[i]) == 0;
        s->binary[i] = st && st->value.kind == FV_VK_BOOL;
        s->t[i] = st ? st->time_ms : 0;
    }
    fv_fleet_unlock(m->fleet);
}

static int is_site(const struct fv_device *d)
{
    return strcmp(d->client_type, "energy_device") == 0; /* crypto/identity.c */
}

/* Q4: empties every retained topic of p; IDLE once the broker took them all. */
static void clear_pass(struct fv_mqtt *m, struct pdev *p)
{
    int left = 0;
    for (size_t i = 0; i < m->cfg->nsignals; i++) {
        struct slot *s = &p->slot[i];
        char topic[512];
        if (s->state_kept && connected(m) &&
            fv_mqtt__state_topic(m->cfg, p->name, m->cfg->signals[i], topic, sizeof topic) == 0 &&
            publish(m, topic, NULL) == 0)
            s->state_kept = 0;
        if (s->disc_kept && connected(m)) {
            char *payload = fv_mqtt__discovery(m->cfg, p->name, m->cfg->signals[i], is_site(p->d),
                                               s->binary, topic, sizeof topic);
            if (payload && publish(m, topic, NULL) == 0) s->disc_kept = 0;
            free(payload);
        }
        left |= s->state_kept | s->disc_kept;
    }
    if (left) return;
    memset(p->slot, 0, sizeof p->slot);
    p->state = D_IDLE;
    fv_map_del(&m->names, p->name, strlen(p->name));
    p->name[0] = '\0';
}

static void begin_stop(struct fv_mqtt *m, struct pdev *p, const char *reason, uint64_t now)
{
    char extra[96];
    queue_summary(m, p, now);
    snprintf(extra, sizeof extra, "{\"device\":\"%s\"}", p->name);
    if (queue(m, "mqtt.stop", p, reason, extra) == 0)
        fv_warn("mqtt: the audit queue is full: the end of publishing subject %s is logged here "
                "only",
                p->subject_ps);
    if (p->state == D_ON) m->m->mqtt_subjects--;
    fv_info("mqtt: stopped publishing subject %s: %s", p->subject_ps, reason);
    p->state = D_CLEARING;
    clear_pass(m, p);
}

/* Q1: the values of p servable now, published where they changed. */
static void publish_values(struct fv_mqtt *m, struct pdev *p, const struct snap *s,
                           struct fv_purposes *pp, uint64_t now)
{
    uint64_t from = UINT64_MAX, to = now;
    for (size_t i = 0; i < m->cfg->nsignals; i++)
        if (s->have[i]) {
            if (s->t[i] < from) from = s->t[i];
            if (s->t[i] > to) to = s->t[i];
        }
    if (from == UINT64_MAX || !connected(m)) return;
    struct fv_interval iv[CONSENT_RANGES];
    size_t ni = 0;
    if (fv_consent_servable(m->ks, pp, p->subject, FV_MQTT_PURPOSE, (int64_t)now, (int64_t)from,
                            (int64_t)to, iv, CONSENT_RANGES, &ni) != FV_OK)
        return; /* FV_ELIMIT too: a value is sent only once its consent is known */
    for (size_t i = 0; i < m->cfg->nsignals; i++) {
        struct slot *sl = &p->slot[i];
        int ok = 0;
        for (size_t k = 0; s->have[i] && k < ni && !ok; k++)
            ok = (int64_t)s->t[i] >= iv[k].from && (int64_t)s->t[i] <= iv[k].to;
        if (!ok) continue;
        char topic[512];
        if (!sl->disc_sent || sl->binary != s->binary[i]) {
            char *payload = fv_mqtt__discovery(m->cfg, p->name, m->cfg->signals[i], is_site(p->d),
                                               s->binary[i], topic, sizeof topic);
            int rc = payload ? publish(m, topic, payload) : -1;
            free(payload);
            if (rc) continue;
            sl->disc_sent = sl->disc_kept = 1;
            sl->binary = (uint8_t)s->binary[i];
        }
        if (strcmp(sl->last, s->text[i]) == 0 ||
            fv_mqtt__state_topic(m->cfg, p->name, m->cfg->signals[i], topic, sizeof topic) != 0 ||
            publish(m, topic, s->text[i]) != 0)
            continue;
        snprintf(sl->last, sizeof sl->last, "%s", s->text[i]);
        sl->state_kept = 1;
        p->values++;
    }
}

/* One device, one cycle (the state machine at the top). Returns 1 while a start waits for
 * its audit entry. */
static int step(struct fv_mqtt *m, struct pdev *p, struct fv_purposes *pp, uint64_t now)
{
    char subject[FV_SUBJECT_NAME_MAX + 1];
    int granted = 0;
    int known = fv_subject_current(m->ks, p->d->id, subject, NULL) == FV_OK;
    if (known &&
        fv_consent_at(m->ks, pp, subject, FV_MQTT_PURPOSE, (int64_t)now, &granted) != FV_OK)
        granted = 0;
    /* a new owner is a new subject: the one published has ended, whatever the new one says */
    int moved = known && strcmp(subject, p->subject) != 0;
    if ((p->state == D_STARTING || p->state == D_ON) && (!granted || moved))
        begin_stop(m, p, moved ? "a new owner period began" : "no consent to home_automation now",
                   now);
    if (p->state == D_CLEARING) clear_pass(m, p);
    if (p->state == D_IDLE && granted) {
        if (queue_free(m) < 8) {
            if (!m->warned_queue++)
                fv_warn("mqtt: the audit log is not keeping up: publishing waits for it");
            return 0;
        }
        snprintf(p->subject, sizeof p->subject, "%s", subject);
        char extra[96];
        if (fv_keystore_pseudonym(m->ks, subject, p->subject_ps) != FV_OK ||
            fv_pseudonym_of_device(m->ks, m->secret, FV_MQTT_PURPOSE, p->d->id, p->name) != FV_OK)
            return 0;
        snprintf(extra, sizeof extra, "{\"device\":\"%s\"}", p->name);
        p->start_rec = queue(m, "mqtt.start", p, "consent to home_automation", extra);
        if (p->start_rec == 0 || fv_map_put(&m->names, p->name, strlen(p->name), p) != FV_OK)
            return 0; /* a start queued without its names entry is written again: harmless */
        p->state = D_STARTING;
    }
    if (p->state == D_STARTING) {
        if (__atomic_load_n(&m->written_id, __ATOMIC_ACQUIRE) < p->start_rec) return 1;
        p->state = D_ON;
        p->values = 0;
        p->summary_from_ms = now;
        m->m->mqtt_subjects++;
        fv_info("mqtt: publishing subject %s as %s/%s", p->subject_ps, m->cfg->topic_prefix,
                p->name);
    }
    if (p->state == D_ON) {
        struct snap s;
        snapshot(m, p->d, &s);
        publish_values(m, p, &s, pp, now);
    }
    return 0;
}

/* Q7: empties each retained topic of ours the broker holds for a device not published now
 * (its owner withdrew, was replaced or erased while the server was stopped or the broker
 * unreachable). After a whole cycle, so every consenting device has its name. */
static void clear_orphans(struct fv_mqtt *m)
{
    pthread_mutex_lock(&m->omu);
    char **o = m->orphans;
    size_t n = m->norphans;
    m->orphans = NULL;
    m->norphans = 0;
    pthread_mutex_unlock(&m->omu);
    size_t cleared = 0;
    for (size_t i = 0; i < n; i++) {
        char name[FV_PURPOSE_PSEUDONYM_LEN + 1];
        if (topic_name(m->cfg, o[i], name) == 0 &&
            fv_map_get(&m->names, name, strlen(name)) == NULL && connected(m) &&
            publish(m, o[i], NULL) == 0)
            cleared++;
        free(o[i]);
    }
    free(o);
    if (cleared)
        fv_info("mqtt: cleared %zu retained topics of devices no longer published", cleared);
}

/* One cycle over the fleet. Returns 1 while a start waits for its audit entry. */
static int cycle(struct fv_mqtt *m)
{
    uint64_t now = fv_now_ms();
    if (connected(m)) {
        m->down_since_ms = 0;
        m->warned_down = 0;
    } else if (m->down_since_ms == 0) {
        m->down_since_ms = now;
    } else if (now - m->down_since_ms >= UNREACHABLE_MS && !m->warned_down) {
        m->warned_down = 1;
        m->m->mqtt_errors++;
        fv_warn("mqtt: the broker at %s:%d is unreachable; retrying with backoff (at most %d s "
                "apart)",
                m->cfg->host, m->cfg->port, BACKOFF_MAX_S);
    }
    int resync = __atomic_exchange_n(&m->resync, 0, __ATOMIC_ACQ_REL);
    if (resync) m->subscribed_ms = now;
    if (m->subscribed_ms && now - m->subscribed_ms >= ORPHAN_WINDOW_MS) {
        subscribe_ours(m, 0); /* the retained ones came at once (Q7) */
        m->subscribed_ms = 0;
    }
    for (size_t i = 0; resync && i < m->devs.cap; i++)
        if (m->devs.slots[i].hash) {
            struct pdev *p = m->devs.slots[i].val;
            for (size_t k = 0; k < FV_MQTT_CFG_SIGNALS; k++) {
                p->slot[k].last[0] = '\0';
                p->slot[k].disc_sent = 0;
            }
        }
    struct fv_device **all = NULL;
    size_t n = 0;
    if (fv_fleet_list(m->fleet, &all, &n) != FV_OK) return 0;
    struct fv_purposes pp = {.policy = m->policy};
    int waiting = 0, summary = now - m->last_summary_ms >= m->cfg->summary_ms;
    for (size_t i = 0; i < n; i++) {
        struct pdev *p = fv_map_get_u64(&m->devs, (uint64_t)(uintptr_t)all[i]);
        if (p == NULL) {
            p = calloc(1, sizeof *p);
            if (p == NULL || fv_map_put_u64(&m->devs, (uint64_t)(uintptr_t)all[i], p) != FV_OK) {
                free(p);
                continue;
            }
            p->d = all[i];
        }
        waiting |= step(m, p, &pp, now);
        if (summary && p->state == D_ON) queue_summary(m, p, now);
    }
    if (summary) m->last_summary_ms = now;
    free(all);
    clear_orphans(m);
    return waiting;
}

static void *publisher_main(void *arg)
{
    struct fv_mqtt *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        pthread_mutex_unlock(&m->mu);
        uint64_t wait_ms = cycle(m) ? 200 : m->cfg->interval_ms;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)(wait_ms / 1000);
        until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&m->mu);
        while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &until) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&m->mu);
    /* Retained values stay on the broker (the last known ones); the audit log says the
     * publishing ended. */
    uint64_t now = fv_now_ms();
    for (size_t i = 0; i < m->devs.cap; i++)
        if (m->devs.slots[i].hash) {
            struct pdev *p = m->devs.slots[i].val;
            if (p->state != D_ON && p->state != D_STARTING) continue;
            queue_summary(m, p, now);
            char extra[96];
            snprintf(extra, sizeof extra, "{\"device\":\"%s\"}", p->name);
            queue(m, "mqtt.stop", p, "the server stops", extra);
        }
    return NULL;
}

/* ---- life ----------------------------------------------------------------------------------- */

/* The password file's first line, or "" without one; never logged. */
static int read_password(const char *path, char **out, char *err, size_t errlen)
{
    size_t len = 0;
    *out = NULL;
    if (path[0] == '\0') return FV_OK;
    int rc = fv_os_read_file(path, 4096, out, &len, err, errlen);
    if (rc) return rc;
    char *nl = strpbrk(*out, "\r\n");
    if (nl) *nl = '\0';
    return FV_OK;
}

/* The network thread: libmosquitto's loop, and reconnection with exponential backoff
 * (BACKOFF_MIN_S doubling to BACKOFF_MAX_S, reset by a connection). Ours rather than
 * mosquitto_loop_start: libmosquitto 2.0.11's thread gives up for good when the first
 * connection fails (a broker down when the server starts was never reached). An unreachable
 * broker is not an error: the publisher says so in the log. */
static void *net_main(void *arg)
{
    struct fv_mqtt *m = arg;
    const struct fv_mqtt_cfg *c = m->cfg;
    unsigned delay_s = BACKOFF_MIN_S;
    int rc = mosquitto_connect_async(m->mosq, c->host, c->port, KEEPALIVE_S);
    while (!__atomic_load_n(&m->net_stop, __ATOMIC_ACQUIRE)) {
        if (rc == MOSQ_ERR_SUCCESS) {
            rc = mosquitto_loop(m->mosq, 500, 1);
            if (connected(m)) delay_s = BACKOFF_MIN_S;
            continue;
        }
        fv_debug("mqtt: no connection to %s:%d (%s); next try in %u s", c->host, c->port,
                 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc), delay_s);
        for (unsigned i = 0; i < delay_s * 10 && !__atomic_load_n(&m->net_stop, __ATOMIC_ACQUIRE);
             i++)
            usleep(100000);
        delay_s = delay_s * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : delay_s * 2;
        rc = mosquitto_reconnect_async(m->mosq);
    }
    return NULL;
}

static int client_new(struct fv_mqtt *m, char *err, size_t errlen)
{
    const struct fv_mqtt_cfg *c = m->cfg;
    mosquitto_lib_init();
    m->mosq = mosquitto_new(c->client_id, true, m);
    if (m->mosq == NULL) {
        fv_seterr(err, errlen, "mqtt: cannot create the client: %s", strerror(errno));
        return FV_ENOMEM;
    }
    mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_connect_callback_set(m->mosq, on_connect);
    mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
    mosquitto_message_callback_set(m->mosq, on_message);
    mosquitto_threaded_set(m->mosq, true); /* published from the publisher thread */
    int rc = MOSQ_ERR_SUCCESS;
    char *pw = NULL;
    if (c->username[0]) {
        int prc = read_password(c->password_file, &pw, err, errlen);
        if (prc) return prc;
        rc = mosquitto_username_pw_set(m->mosq, c->username, pw);
        if (pw) OPENSSL_cleanse(pw, strlen(pw));
        free(pw);
    }
    if (rc == MOSQ_ERR_SUCCESS && c->ca[0])
        rc = mosquitto_tls_set(m->mosq, c->ca, NULL, c->cert[0] ? c->cert : NULL,
                               c->key[0] ? c->key : NULL, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        fv_seterr(err, errlen, "mqtt: cannot set up the client (credentials or TLS files): %s",
                  mosquitto_strerror(rc));
        return FV_EINVAL;
    }
    if (pthread_create(&m->net, NULL, net_main, m) != 0) {
        fv_seterr(err, errlen, "mqtt: cannot start the network thread");
        return FV_ENOMEM;
    }
    m->net_started = 1;
    return FV_OK;
}

int fv_mqtt_start(const struct fv_mqtt_deps *d, struct fv_mqtt **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_mqtt *m = calloc(1, sizeof *m);
    struct qrec *q = calloc(FV_MQTT_AUDIT_QUEUE, sizeof *q);
    if (m == NULL || q == NULL) {
        free(m);
        free(q);
        return FV_ENOMEM;
    }
    m->q = q;
    m->cfg = d->cfg;
    m->fleet = d->fleet;
    m->m = d->metrics;
    m->policy = d->policy;
    m->wake_audit = d->wake_audit;
    m->wake_arg = d->wake_arg;
    memcpy(m->secret, d->pseudo_secret, sizeof m->secret);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    pthread_mutex_init(&m->qmu, NULL);
    pthread_mutex_init(&m->omu, NULL);
    m->last_summary_ms = fv_now_ms();
    int rc = fv_keystore_open(d->catalog_path, d->kek, &m->ks, err, errlen);
    if (rc == FV_OK) {
        if (d->policy && fv_policy_purpose_id(d->policy, FV_MQTT_PURPOSE) < 0)
            fv_warn("mqtt: the policy names no purpose %s: no owner can consent to it, so "
                    "nothing will be published",
                    FV_MQTT_PURPOSE);
        rc = client_new(m, err, errlen);
    }
    if (rc == FV_OK && pthread_create(&m->thread, NULL, publisher_main, m) != 0) {
        fv_seterr(err, errlen, "mqtt: cannot start the publisher thread");
        rc = FV_ENOMEM;
    }
    if (rc) {
        fv_mqtt_free(m);
        return rc;
    }
    m->thread_started = 1;
    fv_info("mqtt: publishing consenting owners' live values to %s:%d every %llu ms (topics "
            "%s/..., discovery %s/...)",
            d->cfg->host, d->cfg->port, (unsigned long long)d->cfg->interval_ms,
            d->cfg->topic_prefix, d->cfg->discovery_prefix);
    *out = m;
    return FV_OK;
}

void fv_mqtt_stop(struct fv_mqtt *m)
{
    if (m == NULL) return;
    if (m->thread_started) {
        pthread_mutex_lock(&m->mu);
        m->stop = 1;
        pthread_cond_signal(&m->cv);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->thread, NULL);
        m->thread_started = 0;
    }
    if (m->net_started) {
        mosquitto_disconnect(m->mosq); /* a clean DISCONNECT: no error logged */
        __atomic_store_n(&m->net_stop, 1, __ATOMIC_RELEASE);
        pthread_join(m->net, NULL);
        m->net_started = 0;
    }
    m->m->mqtt_connected = 0;
}

void fv_mqtt_free(struct fv_mqtt *m)
{
    if (m == NULL) return;
    fv_mqtt_stop(m);
    if (m->mosq) {
        mosquitto_destroy(m->mosq);
        mosquitto_lib_cleanup();
    }
    for (size_t i = 0; i < m->devs.cap; i++)
        if (m->devs.slots[i].hash) free(m->devs.slots[i].val);
    fv_map_free(&m->devs);
    fv_map_free(&m->names);
    for (size_t i = 0; i < m->norphans; i++)
        free(m->orphans[i]);
    free(m->orphans);
    fv_keystore_close(m->ks);
    OPENSSL_cleanse(m->secret, sizeof m->secret);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->qmu);
    pthread_mutex_destroy(&m->omu);
    free(m->q);
    free(m);
}
