/*
 * vpp_int.h - internal to src/energy/vpp*.c; not a contract (vpp.h is). The service's state
 * and the few functions its two files share (named fv_vpp__*), all called with the
 * service's mutex mu held:
 *   vpp.c        the inbox, events' lives, planning, commands, the thread, the API's calls;
 *   vpp_views.c  what the API reads (event and site views, settlement facts, the season,
 *                a site's own data), an event's kept forecast and delivery, and a site's
 *                erasure;
 *   vpp_ext.c    events from outside (an update of an event), capacity and fleet aggregates
 *                (vpp_ext.h);
 *   vpp_drdays.c other demand-response days an operator declares.
 */
#ifndef FV_ENERGY_VPP_INT_H
#define FV_ENERGY_VPP_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "energy/dispatch.h"
#include "energy/vpp.h"
#include "util/map.h"
#include "wire/site.h"

#define SITE_ID_MAX 65
#define TRACK_MAX   4096 /* points kept per event (5 s each: more than 5 hours) */

enum { EV_SCHEDULED, EV_ACTIVE, EV_COMPLETED, EV_CANCELLED };
extern const char *const fv_vpp__ev_state_names[4]; /* by EV_* */

struct vsite {
    char id[SITE_ID_MAX];
    int prog; /* enrolled in programs[prog]; -1: not enrolled */
    struct fv_site_sample s;
    int have;      /* s holds a sample */
    int64_t rx_ms; /* when it arrived (server clock) */
};

struct vassign {
    struct vsite *site;
    double setpoint_kw;
    char cmd[FV_VPP_ID_MAX];
    int64_t sent_ms;
    int acked, refused, resend;
    int declined;        /* it refused a dispatch of this event: not planned again (V2) */
    int offline_at_plan; /* offline when last planned: planned again once it is back (V2) */
};

struct vtrack {
    int64_t t;
    double target_kw, delivered_kw;
};

struct vevent {
    char id[FV_VPP_ID_MAX];
    int prog;
    int64_t start_ms, end_ms;
    double target_kw;
    int max, state, notice_sent;
    struct vassign *a;
    size_t na;
    char (*optout)[SITE_ID_MAX];
    size_t nopt;
    struct fv_vpp_plan plan;
    int64_t last_plan_ms, last_track_ms;
    struct vtrack *tr;
    size_t ntr;
    unsigned cmdseq;
    double forecast_kw;      /* the capacity forecast when it was created (NaN: none) */
    double delivered_avg_kw; /* kept when it ended (vpp_event_results), for after a restart */
};

struct vdrday {
    char site[SITE_ID_MAX]; /* "": every site */
    int32_t date;           /* yyyymmdd */
};

struct inmsg {
    struct inmsg *next;
    int kind; /* 1 sample, 2 ack, 3 connect */
    char site[SITE_ID_MAX];
    struct fv_site_sample s;
    char cmd[FV_VPP_ID_MAX];
    int status;
    int64_t rx_ms;
};

struct fv_vpp {
    struct fv_vpp_program *progs;
    size_t nprogs;
    struct fv_downlink dl;
    struct fv_downlink_listener listener;
    sqlite3 *db;
    pthread_mutex_t mu; /* everything below but the inbox */
    pthread_cond_t cv;
    int stop;
    pthread_t thread;
    int started;
    struct fv_map sites; /* id -> struct vsite* */
    struct vevent **ev;
    size_t nev;
    unsigned next_event;
    struct vdrday *dr; /* declared DR days (vpp_drdays.c) */
    size_t ndr, drcap;
    pthread_mutex_t in_mu; /* the inbox: the ingest loop appends, the service drains */
    struct inmsg *in_head, *in_tail;
};

struct vsite *fv_vpp__site_get(struct fv_vpp *v, const char *id, int create);
struct vevent *fv_vpp__event_find(struct fv_vpp *v, const char *id);
int fv_vpp__opted_out(const struct vevent *e, const char *site);
/* Runs one statement with text (t), integer (i) and real (d) arguments in the order of fmt. */
int fv_vpp__db_run(sqlite3 *db, const char *sql, const char *fmt, ...);
int fv_vpp__site_online(const struct vsite *s, int64_t now);
double fv_vpp__delivered_kw(const struct vevent *e, int64_t now);
/* The event's average delivered kW: over its tracked points, else as kept (NaN: none). */
double fv_vpp__delivered_avg(const struct vevent *e);
/* Keeps the event's forecast and average delivered kW in vpp.db (vpp_event_results), so its
 * status shows both after a restart; called when it is forecast and when it ends. */
void fv_vpp__keep_result(struct fv_vpp *v, const struct vevent *e);
/* Applies what the ingest loop queued (samples, acks, connections). */
void fv_vpp__drain_inbox(struct fv_vpp *v);
int fv_vpp__prog_index(const struct fv_vpp *v, const char *name);
/* Plans an active event again now (V2), sending changed setpoints (vpp_ext.c X1). */
int fv_vpp__replan(struct fv_vpp *v, struct vevent *e, int64_t now);
/* DR days: creates their table and loads them (start-up, no mutex); site's as a JSON array
 * (NULL site: all; new reference); forgets site's (memory and vpp.db). */
int fv_vpp__dr_load(struct fv_vpp *v, char *err, size_t errlen);
json_t *fv_vpp__dr_json(const struct fv_vpp *v, const char *site);
int fv_vpp__dr_forget(struct fv_vpp *v, const char *site);

#endif
