/* vpp.c - the virtual power plant service (vpp.h). */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "energy/vpp_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/map.h"
#include "wire/site.h"

const char *const fv_vpp__ev_state_names[4] = {"scheduled", "active", "completed", "cancelled"};

/* ---- the inbox (ingest loop side, D2) -------------------------------------------------- */

static void inbox_put(struct fv_vpp *v, struct inmsg *m)
{
    m->next = NULL;
    m->rx_ms = (int64_t)fv_now_ms();
    pthread_mutex_lock(&v->in_mu);
    if (v->in_tail)
        v->in_tail->next = m;
    else
        v->in_head = m;
    v->in_tail = m;
    pthread_mutex_unlock(&v->in_mu);
}

static void on_message(void *arg, const char *device, const char *topic,
                       const unsigned char *payload, size_t len)
{
    struct fv_vpp *v = arg;
    struct inmsg *m = calloc(1, sizeof *m);
    if (m == NULL || strlen(device) >= SITE_ID_MAX) {
        free(m);
        return;
    }
    snprintf(m->site, sizeof m->site, "%s", device);
    char err[160];
    if (strcmp(topic, FV_TOPIC_SITE) == 0) {
        m->kind = 1;
        if (fv_site_decode(payload, len, &m->s, err, sizeof err) != FV_OK) m->kind = 0;
    } else {
        m->kind = 2;
        if (fv_site_ack_decode(payload, len, m->cmd, sizeof m->cmd, &m->status) != FV_OK)
            m->kind = 0;
    }
    if (m->kind == 0) {
        free(m);
        return;
    }
    inbox_put(v, m);
}

static void on_connect(void *arg, const char *device)
{
    struct fv_vpp *v = arg;
    struct inmsg *m = calloc(1, sizeof *m);
    if (m == NULL || strlen(device) >= SITE_ID_MAX) {
        free(m);
        return;
    }
    m->kind = 3;
    snprintf(m->site, sizeof m->site, "%s", device);
    inbox_put(v, m);
    pthread_cond_signal(&v->cv); /* a reconnecting site gets its command at once (V1) */
}

/* ---- sites and events (under mu) ------------------------------------------------------- */

struct vsite *fv_vpp__site_get(struct fv_vpp *v, const char *id, int create)
{
    struct vsite *s = fv_map_get(&v->sites, id, strlen(id));
    if (s || !create || strlen(id) >= SITE_ID_MAX) return s;
    s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    snprintf(s->id, sizeof s->id, "%s", id);
    s->prog = -1;
    if (fv_map_put(&v->sites, id, strlen(id), s) != FV_OK) {
        free(s);
        return NULL;
    }
    return s;
}

struct vevent *fv_vpp__event_find(struct fv_vpp *v, const char *id)
{
    for (size_t i = 0; i < v->nev; i++)
        if (strcmp(v->ev[i]->id, id) == 0) return v->ev[i];
    return NULL;
}

int fv_vpp__opted_out(const struct vevent *e, const char *site)
{
    for (size_t i = 0; i < e->nopt; i++)
        if (strcmp(e->optout[i], site) == 0) return 1;
    return 0;
}

static int add_optout(struct vevent *e, const char *site)
{
    if (fv_vpp__opted_out(e, site)) return FV_OK;
    void *p = realloc(e->optout, (e->nopt + 1) * sizeof *e->optout);
    if (p == NULL) return FV_ENOMEM;
    e->optout = p;
    snprintf(e->optout[e->nopt++], SITE_ID_MAX, "%s", site);
    return FV_OK;
}

static void event_free(struct vevent *e)
{
    if (e == NULL) return;
    free(e->a);
    free(e->optout);
    free(e->tr);
    free(e);
}

static int db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return FV_OK;
    fv_seterr(err, errlen, "vpp.db: %s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return FV_EIO;
}

/* Runs one statement with text (t) and integer/real (i, d) arguments, in the order of fmt:
 * 't', 'i' or 'd' per '?'. */
int fv_vpp__db_run(sqlite3 *db, const char *sql, const char *fmt, ...)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return FV_EIO;
    va_list ap;
    va_start(ap, fmt);
    for (int k = 0; fmt[k]; k++) {
        if (fmt[k] == 't')
            sqlite3_bind_text(st, k + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
        else if (fmt[k] == 'i')
            sqlite3_bind_int64(st, k + 1, va_arg(ap, int64_t));
        else
            sqlite3_bind_double(st, k + 1, va_arg(ap, double));
    }
    va_end(ap);
    int rc = sqlite3_step(st) == SQLITE_DONE ? FV_OK : FV_EIO;
    sqlite3_finalize(st);
    return rc;
}

int fv_vpp__prog_index(const struct fv_vpp *v, const char *name)
{
    for (size_t i = 0; i < v->nprogs; i++)
        if (strcmp(v->progs[i].name, name) == 0) return (int)i;
    return -1;
}

static int events_add(struct fv_vpp *v, struct vevent *e)
{
    void *p = realloc(v->ev, (v->nev + 1) * sizeof *v->ev);
    if (p == NULL) return FV_ENOMEM;
    v->ev = p;
    v->ev[v->nev++] = e;
    return FV_OK;
}

/* Loads enrolments, events and opt-outs (start-up, single-threaded). */
static int load(struct fv_vpp *v, char *err, size_t errlen)
{
    static const char schema[] =
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE IF NOT EXISTS vpp_sites(site TEXT PRIMARY KEY, program TEXT NOT NULL,"
        " enrolled_ms INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS vpp_events(id TEXT PRIMARY KEY, program TEXT NOT NULL,"
        " start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL, target_kw REAL, max INTEGER,"
        " state INTEGER NOT NULL, created_ms INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS vpp_optouts(site TEXT NOT NULL, event TEXT NOT NULL,"
        " at_ms INTEGER NOT NULL, PRIMARY KEY(site, event));"
        "CREATE TABLE IF NOT EXISTS vpp_event_results(event TEXT PRIMARY KEY, forecast_kw REAL,"
        " delivered_avg_kw REAL);"
        /* V5: an event's roster, the sites enrolled in its program when it started (a row
         * with site '' marks it taken); its settlement reads these, not today's enrolment */
        "CREATE TABLE IF NOT EXISTS vpp_event_sites(event TEXT NOT NULL, site TEXT NOT NULL,"
        " PRIMARY KEY(event, site));";
    int rc = db_exec(v->db, schema, err, errlen);
    sqlite3_stmt *st = NULL;
    if (rc == FV_OK && sqlite3_prepare_v2(v->db, "SELECT site, program FROM vpp_sites", -1, &st,
                                          NULL) == SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW) {
            struct vsite *s = fv_vpp__site_get(v, (const char *)sqlite3_column_text(st, 0), 1);
            if (s) s->prog = fv_vpp__prog_index(v, (const char *)sqlite3_column_text(st, 1));
        }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == FV_OK && sqlite3_prepare_v2(v->db,
                                          "SELECT id, program, start_ms, end_ms, target_kw, max, "
                                          "state FROM vpp_events ORDER BY created_ms",
                                          -1, &st, NULL) == SQLITE_OK)
        while (rc == FV_OK && sqlite3_step(st) == SQLITE_ROW) {
            struct vevent *e = calloc(1, sizeof *e);
            if (e == NULL) {
                rc = FV_ENOMEM;
                break;
            }
            snprintf(e->id, sizeof e->id, "%s", (const char *)sqlite3_column_text(st, 0));
            e->prog = fv_vpp__prog_index(v, (const char *)sqlite3_column_text(st, 1));
            e->start_ms = sqlite3_column_int64(st, 2);
            e->end_ms = sqlite3_column_int64(st, 3);
            e->target_kw = sqlite3_column_double(st, 4);
            e->max = sqlite3_column_int(st, 5);
            e->state = sqlite3_column_int(st, 6);
            e->notice_sent = 1; /* sent before the restart; reconnects resend commands */
            e->forecast_kw = e->delivered_avg_kw = NAN;
            if (e->prog < 0) e->state = EV_CANCELLED; /* its program left the configuration */
            rc = events_add(v, e);
            if (rc) event_free(e);
            v->next_event++;
        }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == FV_OK && sqlite3_prepare_v2(v->db, "SELECT site, event FROM vpp_optouts", -1, &st,
                                          NULL) == SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW) {
            struct vevent *e = fv_vpp__event_find(v, (const char *)sqlite3_column_text(st, 1));
            if (e) add_optout(e, (const char *)sqlite3_column_text(st, 0));
        }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == FV_OK &&
        sqlite3_prepare_v2(v->db,
                           "SELECT event, forecast_kw, delivered_avg_kw FROM vpp_event_results", -1,
                           &st, NULL) == SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW) {
            struct vevent *e = fv_vpp__event_find(v, (const char *)sqlite3_column_text(st, 0));
            for (int c = 1; e && c <= 2; c++) /* NULL (NaN was stored): none */
                *(c == 1 ? &e->forecast_kw : &e->delivered_avg_kw) =
                    sqlite3_column_type(st, c) == SQLITE_NULL ? NAN : sqlite3_column_double(st, c);
        }
    sqlite3_finalize(st);
    return rc;
}

/* ---- commands and planning (under mu) -------------------------------------------------- */

static void send_command(struct fv_vpp *v, struct vevent *e, struct vassign *a, int kind,
                         int64_t now)
{
    if (a->cmd[0] == '\0' || kind != FV_SITE_CMD_DISPATCH || !a->resend)
        snprintf(a->cmd, sizeof a->cmd, "%s.%u", e->id, ++e->cmdseq);
    struct fv_site_command c = {.id = a->cmd,
                                .event_id = e->id,
                                .kind = kind,
                                .target_kw = a->setpoint_kw,
                                .start_ms = (uint64_t)e->start_ms,
                                .end_ms = (uint64_t)e->end_ms};
    struct fv_buf b = {0};
    if (fv_site_command_encode(&c, &b) == FV_OK)
        v->dl.send(v->dl.impl, a->site->id, FV_TOPIC_SITE_COMMAND, a->cmd, b.data, b.len);
    fv_buf_free(&b);
    a->sent_ms = now;
    a->acked = a->refused = a->resend = 0;
}

static struct vassign *assign_of(struct vevent *e, const struct vsite *s)
{
    for (size_t i = 0; i < e->na; i++)
        if (e->a[i].site == s) return &e->a[i];
    return NULL;
}

int fv_vpp__site_online(const struct vsite *s, int64_t now)
{
    return s->have && now - s->rx_ms <= FV_VPP_OFFLINE_MS;
}

/* Plans the event over its program's enrolled sites and sends each site whose setpoint
 * changed a dispatch command (V2). */
static int plan(struct fv_vpp *v, struct vevent *e, int64_t now)
{
    size_t n = 0;
    for (size_t i = 0; i < v->sites.cap; i++) {
        struct vsite *s = v->sites.slots[i].val;
        if (v->sites.slots[i].hash && s && s->prog == e->prog) n++;
    }
    struct fv_vpp_site *in = calloc(n ? n : 1, sizeof *in);
    struct vsite **who = calloc(n ? n : 1, sizeof *who);
    double *sp = calloc(n ? n : 1, sizeof *sp);
    struct vassign *na = calloc(n ? n : 1, sizeof *na);
    int rc = in && who && sp && na ? FV_OK : FV_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; rc == FV_OK && i < v->sites.cap; i++) {
        struct vsite *s = v->sites.slots[i].val;
        if (!v->sites.slots[i].hash || s == NULL || s->prog != e->prog) continue;
        who[k] = s;
        const struct vassign *prev = assign_of(e, s);
        in[k] = (struct fv_vpp_site){.online = fv_vpp__site_online(s, now),
                                     .opted_out =
                                         fv_vpp__opted_out(e, s->id) || (prev && prev->declined),
                                     .inverter_kw = s->s.inverter_kw,
                                     .export_limit_kw = s->s.export_limit_kw,
                                     .energy_kwh = s->s.energy_kwh,
                                     .reserve_pct = s->s.reserve_pct,
                                     .capacity_kwh = s->s.capacity_kwh};
        k++;
    }
    double hours = (double)(e->end_ms - (now > e->start_ms ? now : e->start_ms)) / 3.6e6;
    if (rc == FV_OK && hours > 0)
        rc = fv_vpp_dispatch(in, n, hours, e->max ? FV_VPP_MAX : FV_VPP_TARGET,
                             e->max ? 0 : e->target_kw, sp, &e->plan);
    for (size_t i = 0; rc == FV_OK && hours > 0 && i < n; i++) {
        struct vassign *old = assign_of(e, who[i]);
        na[i] = old ? *old : (struct vassign){.site = who[i]};
        double prev = old ? old->setpoint_kw : -1;
        na[i].setpoint_kw = round(sp[i] * 1000) / 1000;
        na[i].offline_at_plan = !in[i].online;
        if (fabs(na[i].setpoint_kw - prev) >= 0.001 && (old || na[i].setpoint_kw > 0))
            send_command(v, e, &na[i], FV_SITE_CMD_DISPATCH, now);
    }
    if (rc == FV_OK && hours > 0) {
        free(e->a);
        e->a = na;
        e->na = n;
        na = NULL;
        e->last_plan_ms = now;
    }
    free(in);
    free(who);
    free(sp);
    free(na);
    return rc;
}

int fv_vpp__replan(struct fv_vpp *v, struct vevent *e, int64_t now)
{
    return plan(v, e, now);
}

/* V2: is a planned site short (offline, opted out, or unable to deliver its setpoint), or
 * one that was offline when planned back (it can take its share)? */
static int shortfall(const struct vevent *e, int64_t now)
{
    double hours = (double)(e->end_ms - now) / 3.6e6;
    for (size_t i = 0; i < e->na; i++) {
        const struct vassign *a = &e->a[i];
        if (a->offline_at_plan && !a->declined && fv_vpp__site_online(a->site, now) &&
            !fv_vpp__opted_out(e, a->site->id))
            return 1;
        if (a->setpoint_kw <= 0) continue;
        const struct vsite *s = a->site;
        if (!fv_vpp__site_online(s, now) || fv_vpp__opted_out(e, s->id) || a->refused) return 1;
        struct fv_vpp_site x = {.online = 1,
                                .inverter_kw = s->s.inverter_kw,
                                .export_limit_kw = s->s.export_limit_kw,
                                .energy_kwh = s->s.energy_kwh,
                                .reserve_pct = s->s.reserve_pct,
                                .capacity_kwh = s->s.capacity_kwh};
        if (hours > 0 && fv_vpp_deliverable_kw(&x, hours) < a->setpoint_kw * 0.95 - 0.01) return 1;
    }
    return 0;
}

double fv_vpp__delivered_kw(const struct vevent *e, int64_t now)
{
    double sum = 0;
    for (size_t i = 0; i < e->na; i++) {
        const struct vsite *s = e->a[i].site;
        if (e->a[i].setpoint_kw > 0 && fv_vpp__site_online(s, now) && s->s.battery_kw > 0)
            sum += s->s.battery_kw;
    }
    return sum;
}

static void notify_enrolled(struct fv_vpp *v, struct vevent *e, int kind, int64_t now)
{
    for (size_t i = 0; i < v->sites.cap; i++) {
        struct vsite *s = v->sites.slots[i].val;
        if (!v->sites.slots[i].hash || s == NULL || s->prog != e->prog) continue;
        struct vassign a = {.site = s};
        send_command(v, e, &a, kind, now);
    }
}

/* V5: the sites enrolled in e's program now become its roster, for its settlement. */
static void take_roster(struct fv_vpp *v, const struct vevent *e)
{
    /* one statement: the roster and its marker are written together or not at all */
    if (fv_vpp__db_run(v->db,
                       "INSERT OR IGNORE INTO vpp_event_sites(event, site) SELECT ?, site "
                       "FROM vpp_sites WHERE program = ? UNION ALL SELECT ?, ''",
                       "ttt", e->id, v->progs[e->prog].name, e->id) != FV_OK) {
        fv_warn("vpp: cannot record the sites of event %s; its settlement will use the "
                "enrolment of the day",
                e->id);
    }
}

static void set_state(struct fv_vpp *v, struct vevent *e, int state)
{
    e->state = state;
    if (fv_vpp__db_run(v->db, "UPDATE vpp_events SET state = ? WHERE id = ?", "it", (int64_t)state,
                       e->id) != FV_OK)
        fv_warn("vpp: cannot record event %s as %s", e->id, fv_vpp__ev_state_names[state]);
}

void fv_vpp__drain_inbox(struct fv_vpp *v)
{
    pthread_mutex_lock(&v->in_mu);
    struct inmsg *m = v->in_head;
    v->in_head = v->in_tail = NULL;
    pthread_mutex_unlock(&v->in_mu);
    while (m) {
        struct inmsg *next = m->next;
        struct vsite *s = fv_vpp__site_get(v, m->site, m->kind == 1);
        if (s && m->kind == 1) {
            s->s = m->s;
            s->have = 1;
            s->rx_ms = m->rx_ms;
        }
        for (size_t i = 0; s && i < v->nev; i++) {
            struct vassign *a = assign_of(v->ev[i], s);
            if (a == NULL) continue;
            if (m->kind == 2 && strcmp(a->cmd, m->cmd) == 0) {
                a->acked = m->status == 1;
                a->refused = m->status != 1;
                if (a->refused && a->setpoint_kw > 0) a->declined = 1;
            } else if (m->kind == 3 && v->ev[i]->state == EV_ACTIVE && a->setpoint_kw > 0) {
                a->resend = 1; /* V1: its current command, as soon as it is back */
                a->sent_ms = 0;
            }
        }
        free(m);
        m = next;
    }
}

void fv_vpp_tick(struct fv_vpp *v, int64_t now)
{
    fv_vpp__drain_inbox(v);
    for (size_t i = 0; i < v->nev; i++) {
        struct vevent *e = v->ev[i];
        if (e->state == EV_SCHEDULED && !e->notice_sent) {
            notify_enrolled(v, e, FV_SITE_CMD_NOTICE, now);
            e->notice_sent = 1;
        }
        if (e->state == EV_SCHEDULED && now >= e->start_ms && now < e->end_ms) {
            set_state(v, e, EV_ACTIVE);
            take_roster(v, e);
            if (plan(v, e, now) != FV_OK) fv_warn("vpp: event %s: planning failed", e->id);
            fv_info("vpp: event %s started: %.1f kW planned of %.1f kW deliverable over %zu sites",
                    e->id, e->plan.planned_kw, e->plan.deliverable_kw, e->na);
        }
        if (e->state == EV_ACTIVE && e->last_plan_ms == 0 && now < e->end_ms &&
            plan(v, e, now) == FV_OK) /* active when the service started: planned again */
            fv_info("vpp: event %s resumed: %.1f kW planned over %zu sites", e->id,
                    e->plan.planned_kw, e->na);
        if ((e->state == EV_SCHEDULED || e->state == EV_ACTIVE) && now >= e->end_ms) {
            if (e->state == EV_SCHEDULED) take_roster(v, e); /* it never ran (in the past) */
            set_state(v, e, EV_COMPLETED); /* V4: sites stop at the end they were sent */
            fv_vpp__keep_result(v, e);
            continue;
        }
        if (e->state != EV_ACTIVE) continue;
        if (now - e->last_plan_ms >= FV_VPP_REPLAN_MS && shortfall(e, now) &&
            plan(v, e, now) == FV_OK)
            fv_info("vpp: event %s re-planned: %.1f kW over %zu sites", e->id, e->plan.planned_kw,
                    e->na);
        for (size_t k = 0; k < e->na; k++) { /* V1 */
            struct vassign *a = &e->a[k];
            if (a->setpoint_kw > 0 && !a->acked && !a->refused &&
                now - a->sent_ms >= FV_VPP_RESEND_MS &&
                (a->resend || a->sent_ms == 0 || fv_vpp__site_online(a->site, now))) {
                a->resend = 1;
                send_command(v, e, a, FV_SITE_CMD_DISPATCH, now);
            }
        }
        if (now - e->last_track_ms >= FV_VPP_TRACK_MS && e->ntr < TRACK_MAX) { /* V3 */
            if (e->tr == NULL) e->tr = calloc(TRACK_MAX, sizeof *e->tr);
            if (e->tr)
                e->tr[e->ntr++] =
                    (struct vtrack){now, e->plan.target_kw, fv_vpp__delivered_kw(e, now)};
            e->last_track_ms = now;
        }
    }
}

static void *vpp_main(void *arg)
{
    struct fv_vpp *v = arg;
    pthread_mutex_lock(&v->mu);
    while (!v->stop) {
        fv_vpp_tick(v, (int64_t)fv_now_ms());
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&v->cv, &v->mu, &ts);
    }
    pthread_mutex_unlock(&v->mu);
    return NULL;
}

/* ---- the API's calls --------------------------------------------------------------------- */

int fv_vpp_open(const char *vpp_json, const char *db_path, struct fv_downlink dl,
                struct fv_vpp **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_vpp *v = calloc(1, sizeof *v);
    if (v == NULL) return FV_ENOMEM;
    v->dl = dl;
    pthread_mutex_init(&v->mu, NULL);
    pthread_mutex_init(&v->in_mu, NULL);
    pthread_cond_init(&v->cv, NULL);
    int rc = FV_OK;
    if (vpp_json && vpp_json[0]) {
        json_error_t je;
        json_t *root = json_loads(vpp_json, 0, &je);
        json_t *progs = root ? json_object_get(root, "programs") : NULL;
        if (progs == NULL) {
            fv_seterr(err, errlen, "vpp: expected {\"programs\": {NAME: {...}}}");
            rc = FV_EINVAL;
        } else {
            rc = fv_vpp_programs_parse(progs, &v->progs, &v->nprogs, err, errlen);
        }
        json_decref(root);
    } else {
        v->progs = calloc(1, sizeof *v->progs);
        if (v->progs == NULL)
            rc = FV_ENOMEM;
        else {
            fv_vpp_program_defaults(v->progs, "elrp");
            v->nprogs = 1;
        }
    }
    if (rc == FV_OK && sqlite3_open(db_path, &v->db) != SQLITE_OK) {
        fv_seterr(err, errlen, "%s: %s", db_path, sqlite3_errmsg(v->db));
        rc = FV_EIO;
    }
    if (rc == FV_OK) rc = load(v, err, errlen);
    if (rc == FV_OK) rc = fv_vpp__dr_load(v, err, errlen);
    v->listener =
        (struct fv_downlink_listener){.topics = {FV_TOPIC_SITE, FV_TOPIC_SITE_COMMAND_ACK},
                                      .on_message = on_message,
                                      .on_connect = on_connect,
                                      .arg = v};
    if (rc == FV_OK) {
        if (pthread_create(&v->thread, NULL, vpp_main, v) != 0) {
            fv_seterr(err, errlen, "cannot start the VPP thread");
            rc = FV_ENOMEM;
        } else {
            v->started = 1;
        }
    }
    if (rc) {
        fv_vpp_close(v);
        return rc;
    }
    *out = v;
    return FV_OK;
}

void fv_vpp_close(struct fv_vpp *v)
{
    if (v == NULL) return;
    if (v->started) {
        pthread_mutex_lock(&v->mu);
        v->stop = 1;
        pthread_cond_signal(&v->cv);
        pthread_mutex_unlock(&v->mu);
        pthread_join(v->thread, NULL);
    }
    for (struct inmsg *m = v->in_head, *n; m; m = n) {
        n = m->next;
        free(m);
    }
    for (size_t i = 0; i < v->nev; i++)
        event_free(v->ev[i]);
    free(v->ev);
    for (size_t i = 0; i < v->sites.cap; i++)
        if (v->sites.slots[i].hash) free(v->sites.slots[i].val);
    fv_map_free(&v->sites);
    if (v->db) sqlite3_close(v->db);
    free(v->progs);
    free(v->dr);
    pthread_cond_destroy(&v->cv);
    pthread_mutex_destroy(&v->in_mu);
    pthread_mutex_destroy(&v->mu);
    free(v);
}

const struct fv_downlink_listener *fv_vpp_listener(struct fv_vpp *v)
{
    return &v->listener;
}

int fv_vpp_enroll(struct fv_vpp *v, const char *site, const char *program, char *err, size_t errlen)
{
    pthread_mutex_lock(&v->mu);
    fv_vpp__drain_inbox(v); /* the site's latest sample, for its eligibility */
    int p = fv_vpp__prog_index(v, program);
    struct vsite *s = p >= 0 ? fv_vpp__site_get(v, site, 1) : NULL;
    int rc = p < 0 ? FV_ENOENT : s == NULL ? FV_EINVAL : FV_OK;
    char why[200] = "";
    if (rc == FV_OK &&
        fv_vpp_site_eligible(&v->progs[p], s->have ? &s->s : NULL, why, sizeof why) != FV_OK)
        rc = FV_ESTATE; /* not eligible: nothing recorded */
    if (rc == FV_OK)
        rc = fv_vpp__db_run(v->db,
                            "INSERT INTO vpp_sites(site, program, enrolled_ms) VALUES (?, ?, ?) "
                            "ON CONFLICT(site) DO UPDATE SET program = excluded.program",
                            "tti", site, program, (int64_t)fv_now_ms());
    if (rc == FV_OK) s->prog = p;
    pthread_mutex_unlock(&v->mu);
    if (rc == FV_ENOENT) fv_seterr(err, errlen, "unknown program '%.64s'", program);
    if (rc == FV_EINVAL) fv_seterr(err, errlen, "bad site id");
    if (rc == FV_ESTATE) {
        fv_seterr(err, errlen, "not eligible: %s", why);
        rc = FV_EINVAL;
    }
    if (rc == FV_EIO) fv_seterr(err, errlen, "vpp.db cannot be written");
    return rc;
}

/* Event hours a program has used in the local year of t (scheduled, active, completed). */
static double hours_used(const struct fv_vpp *v, int prog, int64_t t)
{
    struct fv_vpp_local lt, le;
    if (fv_vpp_local_time(&v->progs[prog], t, &lt) != FV_OK) return 0;
    double h = 0;
    for (size_t i = 0; i < v->nev; i++) {
        const struct vevent *e = v->ev[i];
        if (e->prog != prog || e->state == EV_CANCELLED) continue;
        if (fv_vpp_local_time(&v->progs[prog], e->start_ms, &le) == FV_OK && le.year == lt.year)
            h += (double)(e->end_ms - e->start_ms) / 3.6e6;
    }
    return h;
}

int fv_vpp_event_create(struct fv_vpp *v, const char *program, int64_t start_ms, int64_t end_ms,
                        double target_kw, int max, char id[FV_VPP_ID_MAX], char *reason, size_t len)
{
    if (!max && !(isfinite(target_kw) && target_kw > 0)) {
        fv_seterr(reason, len, "give target_kw > 0, or \"max\": true");
        return FV_EINVAL;
    }
    pthread_mutex_lock(&v->mu);
    int p = fv_vpp__prog_index(v, program);
    int rc = FV_OK;
    if (p < 0) {
        fv_seterr(reason, len, "unknown program '%.64s'", program);
        rc = FV_EINVAL;
    } else {
        rc = fv_vpp_event_check(&v->progs[p], start_ms, end_ms, hours_used(v, p, start_ms), reason,
                                len);
    }
    struct vevent *e = rc == FV_OK ? calloc(1, sizeof *e) : NULL;
    if (rc == FV_OK && e == NULL) rc = FV_ENOMEM;
    if (rc == FV_OK) {
        snprintf(e->id, sizeof e->id, "evt-%lld-%u", (long long)(start_ms / 1000), ++v->next_event);
        e->prog = p;
        e->start_ms = start_ms;
        e->end_ms = end_ms;
        e->target_kw = max ? 0 : target_kw;
        e->max = max != 0;
        e->state = EV_SCHEDULED;
        e->forecast_kw = e->delivered_avg_kw = NAN;
        rc = fv_vpp__db_run(
            v->db,
            "INSERT INTO vpp_events(id, program, start_ms, end_ms, target_kw, max, state,"
            " created_ms) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            "ttiidii", e->id, program, start_ms, end_ms, e->target_kw, (int64_t)e->max,
            (int64_t)fv_now_ms());
        if (rc) fv_seterr(reason, len, "vpp.db cannot be written");
        if (rc == FV_OK) rc = events_add(v, e);
        if (rc == FV_OK) {
            snprintf(id, FV_VPP_ID_MAX, "%s", e->id);
            e = NULL;
            pthread_cond_signal(&v->cv); /* notices go out now */
        }
    }
    event_free(e);
    pthread_mutex_unlock(&v->mu);
    return rc;
}

int fv_vpp_event_cancel(struct fv_vpp *v, const char *id)
{
    pthread_mutex_lock(&v->mu);
    struct vevent *e = fv_vpp__event_find(v, id);
    int rc = e == NULL                                                ? FV_ENOENT
             : (e->state == EV_COMPLETED || e->state == EV_CANCELLED) ? FV_ESTATE
                                                                      : FV_OK;
    if (rc == FV_OK) {
        int64_t now = (int64_t)fv_now_ms();
        for (size_t i = 0; i < e->na; i++) /* V4 */
            if (e->a[i].setpoint_kw > 0) send_command(v, e, &e->a[i], FV_SITE_CMD_CANCEL, now);
        if (e->na == 0) notify_enrolled(v, e, FV_SITE_CMD_CANCEL, now);
        set_state(v, e, EV_CANCELLED);
        fv_vpp__keep_result(v, e);
    }
    pthread_mutex_unlock(&v->mu);
    return rc;
}

int fv_vpp_opt_out(struct fv_vpp *v, const char *site, const char *event, char *err, size_t errlen)
{
    pthread_mutex_lock(&v->mu);
    struct vevent *e = fv_vpp__event_find(v, event);
    struct vsite *s = fv_vpp__site_get(v, site, 0);
    int rc = e && s ? FV_OK : FV_ENOENT;
    if (rc == FV_OK)
        rc = fv_vpp__db_run(
            v->db, "INSERT OR IGNORE INTO vpp_optouts(site, event, at_ms) VALUES (?, ?, ?)", "tti",
            site, event, (int64_t)fv_now_ms());
    if (rc == FV_OK) rc = add_optout(e, site);
    if (rc == FV_OK) {
        e->last_plan_ms = 0; /* V2 at the next turn */
        pthread_cond_signal(&v->cv);
    }
    pthread_mutex_unlock(&v->mu);
    if (rc == FV_ENOENT) fv_seterr(err, errlen, e ? "unknown site" : "unknown event");
    if (rc == FV_EIO) fv_seterr(err, errlen, "vpp.db cannot be written");
    return rc;
}
