/*
 * campaign.c - the campaign service (campaign.h): campaigns and their targets in memory and
 * in DATA/campaigns.db, the downlink messages (C1, C2), acks and hits from the inbox (C3),
 * the schedule (C4), restart (C5).
 *
 * Database (SQLite, its own file like the VPP's vpp.db):
 *   campaigns(id TEXT PRIMARY KEY, spec TEXT (campaign.h JSON), state INTEGER (ST_*),
 *             created_ms, stopped_ms, hits, hits_refused, clips, bytes)
 *   campaign_targets(campaign, device, acked (0 no, 1 yes, 2 refused), stop_acked, hits,
 *             day (UTC days since 1970 of day_hits), day_hits, withdrawn (C6),
 *             PRIMARY KEY(campaign, device))
 *
 * Threads: the service thread runs a turn (tick) every second (and when a device
 * connects) under mu; the API thread's calls take mu; the ingest loop's listener takes only
 * in_mu (an inbox of copies).
 */
#include "data/campaign.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

enum { ST_SCHEDULED, ST_ACTIVE, ST_STOPPED, ST_FINISHED };
static const char *const st_names[] = {"scheduled", "active", "stopped", "finished"};

#define DEV_MAX 65
#define DAY_MS  86400000LL

struct target {
    char dev[DEV_MAX];
    int acked; /* 0 not yet, 1 acked, 2 refused by the vehicle */
    int stop_acked;
    int withdrawn;   /* its owner withdrew consent to clips (C6) */
    int64_t sent_ms; /* last start or stop sent (0: never) */
    int64_t hits, day, day_hits;
};

struct camp {
    char id[FV_CAMPAIGN_ID_MAX];
    struct fv_campaign_spec spec;
    int state;
    int64_t created_ms, stopped_ms;
    int64_t hits, hits_refused, clips, bytes;
    struct target *t;
    size_t nt;
    char *start_msg;
};

struct inmsg {
    struct inmsg *next;
    int kind; /* 1 ack, 2 hit, 3 connect */
    char dev[DEV_MAX];
    char id[FV_CAMPAIGN_ID_MAX];
    int stop, ok;
    int64_t rx_ms;
};

struct fv_campaign {
    pthread_mutex_t mu, in_mu;
    pthread_cond_t cv;
    pthread_t thread;
    int started, stop;
    sqlite3 *db;
    struct fv_downlink dl;
    struct fv_downlink_listener listener;
    struct camp **c;
    size_t nc;
    unsigned seq;
    struct inmsg *in_head, *in_tail;
};

/* ---- the database --------------------------------------------------------------------- */

static int db_exec(struct fv_campaign *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    if (sql == NULL) return FV_ENOMEM;
    char *e = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &e);
    if (rc != SQLITE_OK) fv_warn("campaigns.db: %s", e ? e : sqlite3_errstr(rc));
    sqlite3_free(e);
    sqlite3_free(sql);
    return rc == SQLITE_OK ? FV_OK : FV_EIO;
}

static void save_camp(struct fv_campaign *c, const struct camp *k)
{
    db_exec(c,
            "UPDATE campaigns SET state=%d, stopped_ms=%lld, hits=%lld, hits_refused=%lld, "
            "clips=%lld, bytes=%lld WHERE id=%Q",
            k->state, (long long)k->stopped_ms, (long long)k->hits, (long long)k->hits_refused,
            (long long)k->clips, (long long)k->bytes, k->id);
}

static void save_target(struct fv_campaign *c, const struct camp *k, const struct target *t)
{
    db_exec(c,
            "UPDATE campaign_targets SET acked=%d, stop_acked=%d, hits=%lld, day=%lld, "
            "day_hits=%lld, withdrawn=%d WHERE campaign=%Q AND device=%Q",
            t->acked, t->stop_acked, (long long)t->hits, (long long)t->day, (long long)t->day_hits,
            t->withdrawn, k->id, t->dev);
}

static void camp_free(struct camp *k)
{
    if (k == NULL) return;
    free(k->t);
    free(k->start_msg);
    free(k);
}

static int add_camp(struct fv_campaign *c, struct camp *k)
{
    struct camp **n = realloc(c->c, (c->nc + 1) * sizeof *n);
    if (n == NULL) return FV_ENOMEM;
    c->c = n;
    c->c[c->nc++] = k;
    return FV_OK;
}

static int load(struct fv_campaign *c, char *err, size_t errlen)
{
    if (db_exec(c, "CREATE TABLE IF NOT EXISTS campaigns(id TEXT PRIMARY KEY, spec TEXT NOT "
                   "NULL, state INTEGER, created_ms INTEGER, stopped_ms INTEGER, hits INTEGER, "
                   "hits_refused INTEGER, clips INTEGER, bytes INTEGER);"
                   "CREATE TABLE IF NOT EXISTS campaign_targets(campaign TEXT NOT NULL, device "
                   "TEXT NOT NULL, acked INTEGER, stop_acked INTEGER, hits INTEGER, day INTEGER, "
                   "day_hits INTEGER, withdrawn INTEGER, PRIMARY KEY(campaign, device));")) {
        fv_seterr(err, errlen, "campaigns.db: %s", sqlite3_errmsg(c->db));
        return FV_EIO;
    }
    sqlite3_stmt *st = NULL, *tt = NULL;
    int rc = FV_OK;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT id, spec, state, created_ms, stopped_ms, hits, hits_refused, "
                           "clips, bytes FROM campaigns ORDER BY created_ms, id",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db,
                           "SELECT device, acked, stop_acked, hits, day, day_hits, withdrawn FROM "
                           "campaign_targets WHERE campaign=? ORDER BY device",
                           -1, &tt, NULL) != SQLITE_OK) {
        fv_seterr(err, errlen, "campaigns.db: %s", sqlite3_errmsg(c->db));
        rc = FV_EIO;
    }
    while (rc == FV_OK && sqlite3_step(st) == SQLITE_ROW) {
        struct camp *k = calloc(1, sizeof *k);
        if (k == NULL) {
            rc = FV_ENOMEM;
            break;
        }
        snprintf(k->id, sizeof k->id, "%s", (const char *)sqlite3_column_text(st, 0));
        const char *spec = (const char *)sqlite3_column_text(st, 1);
        char e[200];
        if (fv_campaign_spec_parse(spec, spec ? strlen(spec) : 0, 0, &k->spec, e, sizeof e)) {
            fv_seterr(err, errlen, "campaigns.db: campaign %s: %s", k->id, e);
            camp_free(k);
            rc = FV_ECORRUPT;
            break;
        }
        k->state = sqlite3_column_int(st, 2);
        if (k->state < ST_SCHEDULED || k->state > ST_FINISHED) k->state = ST_FINISHED;
        k->created_ms = sqlite3_column_int64(st, 3);
        k->stopped_ms = sqlite3_column_int64(st, 4);
        k->hits = sqlite3_column_int64(st, 5);
        k->hits_refused = sqlite3_column_int64(st, 6);
        k->clips = sqlite3_column_int64(st, 7);
        k->bytes = sqlite3_column_int64(st, 8);
        k->start_msg = fv_campaign_start_msg(k->id, &k->spec);
        sqlite3_reset(tt);
        sqlite3_bind_text(tt, 1, k->id, -1, SQLITE_STATIC);
        while (k->start_msg && sqlite3_step(tt) == SQLITE_ROW) {
            struct target *n = realloc(k->t, (k->nt + 1) * sizeof *n);
            if (n == NULL) break;
            k->t = n;
            struct target *t = &k->t[k->nt++];
            memset(t, 0, sizeof *t);
            snprintf(t->dev, sizeof t->dev, "%s", (const char *)sqlite3_column_text(tt, 0));
            t->acked = sqlite3_column_int(tt, 1);
            t->stop_acked = sqlite3_column_int(tt, 2);
            t->hits = sqlite3_column_int64(tt, 3);
            t->day = sqlite3_column_int64(tt, 4);
            t->day_hits = sqlite3_column_int64(tt, 5);
            t->withdrawn = sqlite3_column_int(tt, 6);
        }
        if (k->start_msg == NULL || add_camp(c, k)) {
            camp_free(k);
            rc = FV_ENOMEM;
        }
    }
    sqlite3_finalize(st);
    sqlite3_finalize(tt);
    if (rc == FV_ENOMEM) fv_seterr(err, errlen, "out of memory loading campaigns");
    return rc;
}

/* ---- the inbox (ingest loop side, D2) -------------------------------------------------- */

static void inbox_put(struct fv_campaign *c, struct inmsg *m)
{
    m->next = NULL;
    m->rx_ms = (int64_t)fv_now_ms();
    pthread_mutex_lock(&c->in_mu);
    if (c->in_tail)
        c->in_tail->next = m;
    else
        c->in_head = m;
    c->in_tail = m;
    pthread_mutex_unlock(&c->in_mu);
}

static void on_message(void *arg, const char *device, const char *topic,
                       const unsigned char *payload, size_t len)
{
    struct fv_campaign *c = arg;
    if (strlen(device) >= DEV_MAX || len > 4096) return;
    json_t *o = json_loadb((const char *)payload, len, 0, NULL);
    const char *id = json_string_value(json_object_get(o, "id"));
    struct inmsg *m = id && strlen(id) < FV_CAMPAIGN_ID_MAX ? calloc(1, sizeof *m) : NULL;
    if (m) {
        snprintf(m->dev, sizeof m->dev, "%s", device);
        snprintf(m->id, sizeof m->id, "%s", id);
        if (strcmp(topic, FV_TOPIC_CAMPAIGN_ACK) == 0) {
            const char *op = json_string_value(json_object_get(o, "op"));
            const char *status = json_string_value(json_object_get(o, "status"));
            m->kind = 1;
            m->stop = op && strcmp(op, "stop") == 0;
            m->ok = status && strcmp(status, "ok") == 0;
            if (op == NULL || (!m->stop && strcmp(op, "start") != 0)) m->kind = 0;
        } else {
            m->kind = 2;
        }
    }
    json_decref(o);
    if (m && m->kind)
        inbox_put(c, m);
    else
        free(m);
}

static void on_connect(void *arg, const char *device)
{
    struct fv_campaign *c = arg;
    struct inmsg *m = strlen(device) < DEV_MAX ? calloc(1, sizeof *m) : NULL;
    if (m == NULL) return;
    m->kind = 3;
    snprintf(m->dev, sizeof m->dev, "%s", device);
    inbox_put(c, m);
    pthread_cond_signal(&c->cv); /* C1: its campaigns go out at once */
}

/* ---- the service's work (mu held) ----------------------------------------------------- */

static struct camp *find(struct fv_campaign *c, const char *id)
{
    for (size_t i = 0; i < c->nc; i++)
        if (strcmp(c->c[i]->id, id) == 0) return c->c[i];
    return NULL;
}

static struct target *find_target(struct camp *k, const char *dev)
{
    for (size_t i = 0; i < k->nt; i++)
        if (strcmp(k->t[i].dev, dev) == 0) return &k->t[i];
    return NULL;
}

static void end_camp(struct fv_campaign *c, struct camp *k, int state, int64_t now)
{
    k->state = state;
    k->stopped_ms = now;
    for (size_t i = 0; i < k->nt; i++)
        k->t[i].sent_ms = 0; /* C2: the stop goes out at the next turn */
    save_camp(c, k);
    fv_info("campaign %s %s", k->id, st_names[state]);
}

/* Sends what target t of k is owed now (C1, C2); force: whatever the resend timer says. */
static void send_owed(struct fv_campaign *c, struct camp *k, struct target *t, int64_t now,
                      int force)
{
    if (!force && t->sent_ms && now - t->sent_ms < FV_CAMPAIGN_RESEND_MS) return;
    char msg_id[FV_CAMPAIGN_ID_MAX + 8], stop[FV_CAMPAIGN_ID_MAX + 40];
    if (k->state == ST_ACTIVE && t->acked == 0 && !t->withdrawn) {
        snprintf(msg_id, sizeof msg_id, "%s:start", k->id);
        c->dl.send(c->dl.impl, t->dev, FV_TOPIC_CAMPAIGN, msg_id, k->start_msg,
                   strlen(k->start_msg));
        t->sent_ms = now;
    } else if ((k->state >= ST_STOPPED || t->withdrawn) && t->acked == 1 && !t->stop_acked) {
        snprintf(msg_id, sizeof msg_id, "%s:stop", k->id);
        snprintf(stop, sizeof stop, "{\"v\":1,\"op\":\"stop\",\"id\":\"%s\"}", k->id);
        c->dl.send(c->dl.impl, t->dev, FV_TOPIC_CAMPAIGN, msg_id, stop, strlen(stop));
        t->sent_ms = now;
    }
}

static void on_hit(struct fv_campaign *c, struct camp *k, struct target *t, int64_t now)
{
    int live = k->state == ST_ACTIVE ||
               (k->state >= ST_STOPPED && now - k->stopped_ms < FV_CAMPAIGN_GRACE_MS);
    int64_t day = now / DAY_MS;
    if (t && t->day != day) {
        t->day = day;
        t->day_hits = 0;
    }
    if (t == NULL || t->acked != 1 || t->withdrawn || !live ||
        t->day_hits >= k->spec.clips_per_day || k->hits >= k->spec.total_clips) {
        k->hits_refused++;
        save_camp(c, k);
        return;
    }
    t->hits++;
    t->day_hits++;
    k->hits++;
    save_target(c, k, t);
    if (k->hits >= k->spec.total_clips && k->state == ST_ACTIVE)
        end_camp(c, k, ST_FINISHED, now); /* C3 */
    else
        save_camp(c, k);
}

static void drain_inbox(struct fv_campaign *c, int64_t now)
{
    pthread_mutex_lock(&c->in_mu);
    struct inmsg *m = c->in_head;
    c->in_head = c->in_tail = NULL;
    pthread_mutex_unlock(&c->in_mu);
    while (m) {
        struct inmsg *next = m->next;
        if (m->kind == 3) {
            for (size_t i = 0; i < c->nc; i++) {
                struct target *t = find_target(c->c[i], m->dev);
                if (t) send_owed(c, c->c[i], t, now, 1);
            }
        } else {
            struct camp *k = find(c, m->id);
            struct target *t = k ? find_target(k, m->dev) : NULL;
            if (k && m->kind == 2) {
                on_hit(c, k, t, now);
            } else if (t && m->stop) {
                t->stop_acked = 1;
                save_target(c, k, t);
            } else if (t && t->acked == 0) {
                t->acked = m->ok ? 1 : 2;
                save_target(c, k, t);
                /* acked after it ended: it is owed a stop now (C2, C6) */
                if (k->state >= ST_STOPPED || t->withdrawn) t->sent_ms = 0;
            }
        }
        free(m);
        m = next;
    }
}

/* One turn (mu held). */
static void tick(struct fv_campaign *c, int64_t now)
{
    drain_inbox(c, now);
    for (size_t i = 0; i < c->nc; i++) {
        struct camp *k = c->c[i];
        if (k->state == ST_SCHEDULED && now >= k->spec.start_ms) { /* C4 */
            k->state = ST_ACTIVE;
            save_camp(c, k);
        }
        if (k->state == ST_ACTIVE && now >= k->spec.end_ms) end_camp(c, k, ST_FINISHED, now);
        if (k->state == ST_SCHEDULED) continue;
        for (size_t j = 0; j < k->nt; j++)
            send_owed(c, k, &k->t[j], now, 0);
    }
}

void fv_campaign_tick(struct fv_campaign *c, int64_t now)
{
    pthread_mutex_lock(&c->mu);
    tick(c, now);
    pthread_mutex_unlock(&c->mu);
}

static void *campaign_main(void *arg)
{
    struct fv_campaign *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        tick(c, (int64_t)fv_now_ms());
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- open, close, the API's calls ------------------------------------------------------ */

int fv_campaign_open(const char *db_path, struct fv_downlink dl, struct fv_campaign **out,
                     char *err, size_t errlen)
{
    *out = NULL;
    struct fv_campaign *c = calloc(1, sizeof *c);
    if (c == NULL) return FV_ENOMEM;
    c->dl = dl;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->in_mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->listener =
        (struct fv_downlink_listener){.topics = {FV_TOPIC_CAMPAIGN_ACK, FV_TOPIC_CAMPAIGN_HIT},
                                      .on_message = on_message,
                                      .on_connect = on_connect,
                                      .arg = c};
    int rc = FV_OK;
    if (sqlite3_open(db_path, &c->db) != SQLITE_OK) {
        fv_seterr(err, errlen, "%s: %s", db_path, sqlite3_errmsg(c->db));
        rc = FV_EIO;
    }
    if (rc == FV_OK) rc = load(c, err, errlen);
    if (rc == FV_OK) {
        if (pthread_create(&c->thread, NULL, campaign_main, c) != 0) {
            fv_seterr(err, errlen, "cannot start the campaign thread");
            rc = FV_ENOMEM;
        } else {
            c->started = 1;
        }
    }
    if (rc) {
        fv_campaign_close(c);
        return rc;
    }
    *out = c;
    return FV_OK;
}

void fv_campaign_close(struct fv_campaign *c)
{
    if (c == NULL) return;
    if (c->started) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    for (struct inmsg *m = c->in_head, *n; m; m = n) {
        n = m->next;
        free(m);
    }
    for (size_t i = 0; i < c->nc; i++)
        camp_free(c->c[i]);
    free(c->c);
    if (c->db) sqlite3_close(c->db);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->in_mu);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

const struct fv_downlink_listener *fv_campaign_listener(struct fv_campaign *c)
{
    return &c->listener;
}

int fv_campaign_create(struct fv_campaign *c, const struct fv_campaign_spec *s,
                       const char *const *targets, size_t ntargets, int64_t now,
                       char id[FV_CAMPAIGN_ID_MAX], char *err, size_t errlen)
{
    struct camp *k = calloc(1, sizeof *k);
    if (k == NULL || (ntargets && (k->t = calloc(ntargets, sizeof *k->t)) == NULL)) {
        camp_free(k);
        return FV_ENOMEM;
    }
    k->spec = *s;
    k->created_ms = now;
    k->state = now >= s->start_ms ? ST_ACTIVE : ST_SCHEDULED;
    for (size_t i = 0; i < ntargets; i++)
        if (strlen(targets[i]) < DEV_MAX) snprintf(k->t[k->nt++].dev, DEV_MAX, "%s", targets[i]);
    json_t *sj = fv_campaign_spec_json(s);
    char *spec = sj ? json_dumps(sj, JSON_COMPACT) : NULL;
    json_decref(sj);
    pthread_mutex_lock(&c->mu);
    do /* unique among the campaigns loaded too (seq restarts with the service) */
        snprintf(k->id, sizeof k->id, "c%llx-%u", (unsigned long long)now, ++c->seq);
    while (find(c, k->id) != NULL);
    k->start_msg = fv_campaign_start_msg(k->id, s);
    int rc = spec && k->start_msg ? FV_OK : FV_ENOMEM;
    if (rc == FV_OK) rc = db_exec(c, "BEGIN");
    if (rc == FV_OK)
        rc = db_exec(c, "INSERT INTO campaigns VALUES(%Q, %Q, %d, %lld, 0, 0, 0, 0, 0)", k->id,
                     spec, k->state, (long long)now);
    for (size_t i = 0; rc == FV_OK && i < k->nt; i++)
        rc = db_exec(c, "INSERT INTO campaign_targets VALUES(%Q, %Q, 0, 0, 0, 0, 0, 0)", k->id,
                     k->t[i].dev);
    if (rc == FV_OK) rc = db_exec(c, "COMMIT");
    if (rc == FV_OK) rc = add_camp(c, k);
    if (rc != FV_OK) {
        db_exec(c, "ROLLBACK");
        fv_seterr(err, errlen, rc == FV_ENOMEM ? "out of memory" : "campaigns.db: cannot store");
        camp_free(k);
    } else {
        snprintf(id, FV_CAMPAIGN_ID_MAX, "%s", k->id);
        pthread_cond_signal(&c->cv); /* C1: sent at once */
    }
    pthread_mutex_unlock(&c->mu);
    free(spec);
    return rc;
}

int fv_campaign_stop(struct fv_campaign *c, const char *id, int64_t now)
{
    pthread_mutex_lock(&c->mu);
    struct camp *k = find(c, id);
    int rc = k == NULL ? FV_ENOENT : k->state >= ST_STOPPED ? FV_ESTATE : FV_OK;
    if (rc == FV_OK) {
        end_camp(c, k, ST_STOPPED, now);
        pthread_cond_signal(&c->cv); /* C2: the stop goes out at once */
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static json_t *camp_json(const struct camp *k, int full)
{
    size_t delivered = 0, refused = 0, stop_acked = 0, withdrawn = 0;
    for (size_t i = 0; i < k->nt; i++) {
        delivered += k->t[i].acked == 1;
        refused += k->t[i].acked == 2;
        stop_acked += k->t[i].stop_acked != 0;
        withdrawn += k->t[i].withdrawn != 0;
    }
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "id", k->id, "name",
                          k->spec.name, "state", st_names[k->state], "created_ms",
                          (json_int_t)k->created_ms, "targeted", (json_int_t)k->nt, "delivered",
                          (json_int_t)delivered, "refused_by_vehicles", (json_int_t)refused, "hits",
                          (json_int_t)k->hits, "hits_refused", (json_int_t)k->hits_refused,
                          "clips_uploaded", (json_int_t)k->clips, "bytes", (json_int_t)k->bytes,
                          "stop_acked", (json_int_t)stop_acked);
    if (o) json_object_set_new(o, "consent_withdrawn", json_integer((json_int_t)withdrawn));
    if (o && k->stopped_ms) json_object_set_new(o, "stopped_ms", json_integer(k->stopped_ms));
    if (o && full) json_object_set_new(o, "spec", fv_campaign_spec_json(&k->spec));
    return o;
}

json_t *fv_campaign_list_json(struct fv_campaign *c)
{
    json_t *a = json_array();
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; a && i < c->nc; i++)
        json_array_append_new(a, camp_json(c->c[i], 0));
    pthread_mutex_unlock(&c->mu);
    return a ? json_pack("{s:o}", "campaigns", a) : NULL;
}

json_t *fv_campaign_json(struct fv_campaign *c, const char *id)
{
    pthread_mutex_lock(&c->mu);
    tick(c, (int64_t)fv_now_ms()); /* acks and hits that arrived since the turn */
    struct camp *k = find(c, id);
    json_t *o = k ? camp_json(k, 1) : NULL;
    pthread_mutex_unlock(&c->mu);
    return o;
}

int fv_campaign_may_upload(struct fv_campaign *c, const char *id, const char *device, char *why,
                           size_t n)
{
    char tmp[8];
    if (why == NULL || n == 0) {
        why = tmp;
        n = sizeof tmp;
    }
    int64_t now = (int64_t)fv_now_ms();
    pthread_mutex_lock(&c->mu);
    tick(c, now); /* acks and hits that arrived since the turn */
    struct camp *k = find(c, id);
    struct target *t = k ? find_target(k, device) : NULL;
    int ok = 0;
    if (t == NULL || t->acked != 1)
        snprintf(why, n, "campaign %s was not sent to this vehicle", id);
    else if (t->withdrawn)
        snprintf(why, n, "the vehicle's owner withdrew consent to clips for campaign %s", id);
    else if (t->hits == 0)
        snprintf(why, n, "campaign %s has no trigger hit from this vehicle", id);
    else if (k->clips >= k->spec.total_clips || k->bytes >= k->spec.total_bytes)
        snprintf(why, n, "campaign %s: its budget (total_clips, total_bytes) is used up", id);
    else if (k->state != ST_ACTIVE && now - k->stopped_ms >= FV_CAMPAIGN_GRACE_MS)
        snprintf(why, n, "campaign %s is %s", id, st_names[k->state]);
    else
        ok = 1;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

int fv_campaign_exists(struct fv_campaign *c, const char *id)
{
    pthread_mutex_lock(&c->mu);
    int found = find(c, id) != NULL;
    pthread_mutex_unlock(&c->mu);
    return found;
}

int fv_campaign_window(struct fv_campaign *c, const char *id, int64_t *pre_ms, int64_t *post_ms)
{
    pthread_mutex_lock(&c->mu);
    const struct camp *k = find(c, id);
    if (k) {
        *pre_ms = (int64_t)k->spec.pre_s * 1000;
        *post_ms = (int64_t)k->spec.post_s * 1000;
    }
    pthread_mutex_unlock(&c->mu);
    return k != NULL;
}

void fv_campaign_clip_stored(struct fv_campaign *c, const char *id, const char *device,
                             uint64_t bytes)
{
    (void)device;
    pthread_mutex_lock(&c->mu);
    struct camp *k = find(c, id);
    if (k) {
        k->clips++;
        k->bytes += (int64_t)bytes;
        if (k->state == ST_ACTIVE &&
            (k->bytes >= k->spec.total_bytes || k->clips >= k->spec.total_clips))
            end_camp(c, k, ST_FINISHED, (int64_t)fv_now_ms()); /* C3 */
        else
            save_camp(c, k);
    }
    pthread_mutex_unlock(&c->mu);
}

json_t *fv_campaign_device_json(struct fv_campaign *c, const char *device)
{
    static const char *const acked[] = {"no", "yes", "refused"};
    json_t *a = json_array();
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; a && i < c->nc; i++) {
        const struct camp *k = c->c[i];
        const struct target *t = find_target(c->c[i], device);
        if (t)
            json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:s,s:b,s:I,s:b}", "id", k->id, "name",
                                               k->spec.name, "state", st_names[k->state], "acked",
                                               acked[t->acked % 3], "stop_acked", t->stop_acked,
                                               "hits", (json_int_t)t->hits, "consent_withdrawn",
                                               t->withdrawn));
    }
    pthread_mutex_unlock(&c->mu);
    if (a == NULL || json_array_size(a) == 0) {
        json_decref(a);
        return NULL;
    }
    return json_pack("{s:o}", "campaigns", a);
}

int fv_campaign_withdraw(struct fv_campaign *c, const char *device)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nc; i++) {
        struct target *t = find_target(c->c[i], device);
        if (t == NULL || t->withdrawn) continue;
        t->withdrawn = 1;
        t->sent_ms = 0; /* its stop goes out at the next turn */
        save_target(c, c->c[i], t);
    }
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return FV_OK;
}

int fv_campaign_forget_device(struct fv_campaign *c, const char *device)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nc; i++) {
        struct camp *k = c->c[i];
        struct target *t = find_target(k, device);
        if (t) *t = k->t[--k->nt];
    }
    int rc = db_exec(c, "DELETE FROM campaign_targets WHERE device=%Q", device);
    pthread_mutex_unlock(&c->mu);
    return rc;
}
