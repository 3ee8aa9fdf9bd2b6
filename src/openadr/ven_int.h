/*
 * ven_int.h - internal to src/openadr/ven*.c; not a contract (ven.h is). The VEN's state and
 * the functions its files share (named fv_ven__*):
 *   ven.c          the thread, each VTN's turn (registration, poll, dispatch of what the poll
 *                  returns), the transport (libcurl), saved state, opts, status, metrics, audit;
 *   ven_events.c   oadrDistributeEvent -> VPP events and the oadrCreatedEvent answer (N2-N5);
 *   ven_reports.c  report metadata, report requests and update reports (N6);
 *   ven_push.c     push mode's listener (N10): its own thread and lws context; each POST is
 *                  handed to the VEN's thread as a pushjob and answered with what it built.
 * Locking: the VEN's thread holds mu while it works, releasing it only around network I/O
 * (fv_ven__exchange) and the write of the saved state; other threads never take mu: they
 * read what the thread publishes after each turn and hand over requests under pub.
 */
#ifndef FV_OPENADR_VEN_INT_H
#define FV_OPENADR_VEN_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

struct lws_context;

#include "energy/vpp.h"
#include "openadr/oadr.h"
#include "openadr/ven.h"

#define VEN_BURST    16    /* messages taken from one VTN per turn */
#define VEN_BACKOFF0 1000  /* first retry after a failure (ms), doubling */
#define VEN_BACKOFF1 60000 /* longest wait between retries (ms) */
#define VEN_POLL_MS  10000 /* poll period when the VTN asks none */
#define VEN_EVENTS   256   /* events remembered per VTN (the oldest finished ones go first) */
#define VEN_SAMPLES  720   /* report samples kept per request between two updates */

/* An event as the VEN knows it (saved in DATA/openadr/NAME.json). */
struct vev {
    fv_oadr_id id;
    uint32_t mod;
    char mc[FV_OADR_TEXT_MAX];
    char state[16]; /* the VTN's eventStatus, or "removed" */
    int test, opt_in, seen;
    char reason[FV_OADR_TEXT_MAX];
    char vpp_id[FV_VPP_ID_MAX]; /* "" none (test, level 0, refused) */
    int64_t start_ms, end_ms, received_ms;
    double target_kw; /* what was asked of the VPP (0 with max) */
    int max;
    int64_t rampup_ms, recovery_ms; /* x-eiRampUp (the VPP event starts that much earlier) and
                                     * x-eiRecovery (recorded, not dispatched) */
    char capacity_from[16];         /* SIMPLE: "forecast" or "latest" (the samples now); "" */
};

struct vsample {
    int64_t t;
    double v[5]; /* by rID index (ven_reports.c) */
};

/* A report the VTN asked for (oadrCreateReport). */
struct vrep {
    fv_oadr_id request_id, specifier_id;
    int rids; /* bit mask over the rIDs of the specifier */
    int64_t granularity_ms, report_back_ms, start_ms, end_ms; /* end 0: until cancelled */
    int64_t next_sample_ms, next_send_ms;
    struct vsample *s;
    size_t ns;
    unsigned sent;
    int history; /* N11: a past window, answered once from the store, then dropped */
};

/* An opt schedule (EiOpt). */
struct vopt {
    char id[64];
    int opt_in;
    int64_t start_ms, end_ms;
    char reason[64];
    char mc[FV_OADR_TEXT_MAX];
    int state;     /* OPT_* */
    char last[96]; /* the VTN's last answer */
};
enum { OPT_TO_SEND, OPT_SENT, OPT_TO_CANCEL, OPT_CANCELLED };

struct vtn {
    const struct fv_oadr_cfg_vtn *cfg;
    int registered, reports_registered, dirty;
    fv_oadr_id ven_id, registration_id, vtn_id;
    int64_t poll_ms, next_ms, last_poll_ms, last_ok_ms;
    int fails, reachable;
    char last_error[FV_OADR_TEXT_MAX];
    uint64_t polls, sent, received, invalid, failures, events, reports;
    struct vev *ev;
    size_t nev;
    struct vrep *rep;
    size_t nrep;
    struct vopt *opt;
    size_t nopt;
    CURL *curl;
    unsigned seq;
    struct fv_buf *push_reply; /* non-NULL while a pushed message is handled: the answer */
};

/* A message the VTN pushed (N10), handed by the push thread to the VEN's thread, which
 * handles it at the top of its loop (no pointer into the VTNs' state held) and writes the
 * answer into reply. Owned by the push thread, which waits for done. */
struct pushjob {
    struct pushjob *next;
    char service[32];
    const char *body;
    size_t len;
    struct fv_buf *reply;
    int done;
};

struct auditrec {
    struct auditrec *next;
    char action[32], result[8];
    char reason[FV_OADR_TEXT_MAX];
    char *extra;
};

/* An opt schedule asked for by the API, applied by the VEN's thread at its next turn. */
struct optreq {
    struct optreq *next;
    size_t vtn;
    int cancel;
    struct vopt o;
};

struct fv_ven {
    const struct fv_oadr_cfg *cfg;
    char dir[1024]; /* DATA/openadr */
    struct fv_vpp *vpp;
    struct fv_oadr_schema *schema;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, started;
    pthread_t thread;
    struct vtn vtn[FV_OADR_CFG_VTNS];
    size_t nvtn;
    /* pub: what other threads read or hand over, so that they never wait for the VEN's
     * thread (which holds mu across calls into the VPP): the audit queue, the published
     * status and metrics, opt requests and the ids of the opt schedules. Order: mu, pub. */
    pthread_mutex_t pub;
    struct auditrec *a_head, *a_tail;
    size_t a_count;
    char *status_text;
    struct fv_buf metrics_text;
    struct optreq *oq_head, *oq_tail;
    char (*opt_ids)[64];
    size_t nopt_ids;
    unsigned opt_seq;
    /* push mode (N10): jobs queued under pub; done_cv (with pub) wakes the push thread. */
    struct pushjob *pj_head, *pj_tail;
    pthread_cond_t done_cv;
    struct lws_context *push_ctx;
    pthread_t push_thread;
    int push_started, push_stop;
    int push_listening; /* under mu: the VEN's thread registers only once it is set (N10) */
    uint64_t push_refused, push_received;
    struct fv_ven_store_ops store; /* N11 (under mu) */
};

/* POSTs body to the VTN's service and parses the answer into *reply (free it always).
 * Releases mu during the request. FV_OK: a valid payload; FV_EPROTO: the answer is not a
 * valid payload (err says why; the VTN is reachable); FV_EIO: transport failure (err). */
int fv_ven__exchange(struct fv_ven *v, struct vtn *t, const char *service,
                     const struct fv_buf *body, struct fv_oadr_msg *reply, char *err,
                     size_t errlen);
/* Sends a message whose answer carries only a response code (oadrResponse and the like);
 * FV_OK when the VTN answered 200. */
int fv_ven__send(struct fv_ven *v, struct vtn *t, const char *service, const struct fv_buf *body,
                 const char *what);
/* Queues an audit record (N8): extra is a new jansson object (stolen) or NULL. */
/* ven_state.c: the saved state of t (registration, VEN id, report requests), loaded at open
 * (FV_OK when there is none) and saved after each change of it. */
int fv_ven__load_state(struct fv_ven *v, struct vtn *t, char *err, size_t errlen);
void fv_ven__save_state(struct fv_ven *v, struct vtn *t);
void fv_ven__audit(struct fv_ven *v, const char *action, const char *result, const char *reason,
                   json_t *extra);
/* Publishes the status and metrics other threads read (ven_status.c, N9): the VEN's thread,
 * holding mu. */
void fv_ven__publish(struct fv_ven *v);
/* A VTN's saved state (registration, events, opt schedules) as a new JSON object: what
 * DATA/openadr/NAME.json keeps and the status shows. */
json_t *fv_ven__state_json(const struct vtn *t);
/* A request id unique to this VTN ("fv-NAME-N"). */
void fv_ven__request_id(struct vtn *t, const char *what, char out[FV_OADR_ID_MAX]);

/* N10: starts / stops the push listener (ven_push.c). */
int fv_ven__push_start(struct fv_ven *v, char *err, size_t errlen);
void fv_ven__push_stop(struct fv_ven *v);
/* The VEN's thread (mu held): handles the queued pushed messages, each answered into its
 * job's reply (ven.c). */
void fv_ven__push_take(struct fv_ven *v);

void fv_ven__distribute(struct fv_ven *v, struct vtn *t, const struct fv_oadr_msg *m, int64_t now);

/* oadrRegisterReport; FV_EIO (err) when the VTN cannot be reached. */
int fv_ven__register_reports(struct fv_ven *v, struct vtn *t, int64_t now, char *err,
                             size_t errlen);
void fv_ven__create_report(struct fv_ven *v, struct vtn *t, const struct fv_oadr_msg *m,
                           int64_t now);
void fv_ven__cancel_report(struct fv_ven *v, struct vtn *t, const struct fv_oadr_msg *m);
void fv_ven__reports_tick(struct fv_ven *v, struct vtn *t, int64_t now);

#endif
