/* ven.c - the VEN's thread, each VTN's turn, transport, saved state, opts and the audit
 * queue (ven.h; shared state in ven_int.h; status and metrics in ven_status.c). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "openadr/ven_int.h"
#include "os/fsio.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

/* ---- audit queue (N8) ------------------------------------------------------------------ */

void fv_ven__audit(struct fv_ven *v, const char *action, const char *result, const char *reason,
                   json_t *extra)
{
    struct auditrec *a = calloc(1, sizeof *a);
    if (a && extra) a->extra = json_dumps(extra, JSON_COMPACT);
    json_decref(extra);
    if (a == NULL) return;
    snprintf(a->action, sizeof a->action, "%s", action);
    snprintf(a->result, sizeof a->result, "%s", result);
    snprintf(a->reason, sizeof a->reason, "%s", reason ? reason : "");
    pthread_mutex_lock(&v->pub);
    if (v->a_count >= 100000) { /* the API thread is gone: keep the newest */
        struct auditrec *old = v->a_head;
        v->a_head = old->next;
        free(old->extra);
        free(old);
        v->a_count--;
        if (v->a_head == NULL) v->a_tail = NULL;
    }
    if (v->a_tail)
        v->a_tail->next = a;
    else
        v->a_head = a;
    v->a_tail = a;
    v->a_count++;
    pthread_mutex_unlock(&v->pub);
}

size_t fv_ven_audit_drain(struct fv_ven *v, fv_ven_audit_fn fn, void *arg)
{
    pthread_mutex_lock(&v->pub);
    struct auditrec *a = v->a_head;
    v->a_head = v->a_tail = NULL;
    v->a_count = 0;
    pthread_mutex_unlock(&v->pub);
    size_t n = 0;
    struct auditrec *keep = NULL, *keep_tail = NULL;
    while (a) {
        struct auditrec *next = a->next;
        if (keep == NULL &&
            fn(arg, a->action, a->result, a->reason[0] ? a->reason : NULL, a->extra) == 0) {
            free(a->extra);
            free(a);
            n++;
        } else { /* keep it and everything after it, in order */
            a->next = NULL;
            if (keep_tail)
                keep_tail->next = a;
            else
                keep = a;
            keep_tail = a;
        }
        a = next;
    }
    if (keep) {
        pthread_mutex_lock(&v->pub);
        size_t k = 0;
        for (struct auditrec *p = keep; p; p = p->next)
            k++;
        keep_tail->next = v->a_head;
        if (v->a_head == NULL) v->a_tail = keep_tail;
        v->a_head = keep;
        v->a_count += k;
        pthread_mutex_unlock(&v->pub);
    }
    return n;
}

/* ---- transport ----------------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct fv_buf *b = arg;
    size_t len = size * n;
    if (b->len + len > FV_OADR_MAX_BYTES || fv_buf_append(b, p, len) != FV_OK) return 0;
    return len;
}

void fv_ven__request_id(struct vtn *t, const char *what, char out[FV_OADR_ID_MAX])
{
    snprintf(out, FV_OADR_ID_MAX, "fv-%s-%" PRIu64 "-%u", what, fv_now_ms(), ++t->seq);
}

static void failed(struct vtn *t, const char *why, int64_t now)
{
    t->fails++;
    t->failures++;
    t->reachable = 0;
    snprintf(t->last_error, sizeof t->last_error, "%s", why);
    int64_t wait = VEN_BACKOFF0;
    for (int i = 1; i < t->fails && wait < VEN_BACKOFF1; i++)
        wait *= 2;
    t->next_ms = now + (wait < VEN_BACKOFF1 ? wait : VEN_BACKOFF1);
}

int fv_ven__exchange(struct fv_ven *v, struct vtn *t, const char *service,
                     const struct fv_buf *body, struct fv_oadr_msg *reply, char *err, size_t errlen)
{
    memset(reply, 0, sizeof *reply);
    char url[1200];
    snprintf(url, sizeof url, "%s/%s", t->cfg->url, service);
    struct fv_buf resp = {0};
    long status = 0;
    char cerr[CURL_ERROR_SIZE] = "";
    CURL *c = t->curl;
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/xml");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)body->data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body->len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    t->sent++;
    fv_ven__publish(v);           /* what others read is current while we wait for the VTN */
    pthread_mutex_unlock(&v->mu); /* no lock across the network */
    CURLcode cc = curl_easy_perform(c);
    pthread_mutex_lock(&v->mu);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdr);
    int rc = FV_OK;
    if (cc != CURLE_OK) {
        fv_seterr(err, errlen, "%s: %s", service, cerr[0] ? cerr : curl_easy_strerror(cc));
        rc = FV_EIO;
    } else if (status != 200) {
        fv_seterr(err, errlen, "%s: HTTP %ld", service, status);
        rc = FV_EIO;
    }
    if (rc == FV_OK) {
        t->reachable = 1;
        t->fails = 0;
        t->last_ok_ms = (int64_t)fv_now_ms();
        t->received++;
        char perr[FV_OADR_TEXT_MAX];
        if (fv_oadr_parse(v->schema, (const char *)resp.data, resp.len, reply, NULL, perr,
                          sizeof perr) != FV_OK) {
            t->invalid++;
            fv_seterr(err, errlen, "%s: the VTN's answer is not a valid 2.0b payload: %s", service,
                      perr);
            rc = FV_EPROTO;
        }
    }
    fv_buf_free(&resp);
    return rc;
}

int fv_ven__send(struct fv_ven *v, struct vtn *t, const char *service, const struct fv_buf *body,
                 const char *what)
{
    if (t->push_reply) { /* N10: the answer to a pushed message goes in the HTTP response */
        if (t->push_reply->len) {
            fv_warn("openadr: %s: %s: a second answer to one pushed message dropped", t->cfg->name,
                    what);
            return FV_EINVAL;
        }
        t->sent++;
        return fv_buf_append(t->push_reply, body->data, body->len);
    }
    struct fv_oadr_msg r;
    char err[FV_OADR_TEXT_MAX];
    int rc = fv_ven__exchange(v, t, service, body, &r, err, sizeof err);
    if (rc == FV_EIO) failed(t, err, (int64_t)fv_now_ms());
    if (rc == FV_OK && r.has_response && r.response_code != 200) {
        snprintf(err, sizeof err, "%s: the VTN answered %d %s", what, r.response_code,
                 r.response_desc);
        rc = FV_EPROTO;
    }
    if (rc) fv_warn("openadr: %s: %s", t->cfg->name, err);
    fv_oadr_msg_free(&r);
    return rc;
}

/* ---- registration ---------------------------------------------------------------------------- */

static void forget_registration(struct vtn *t)
{
    t->registered = t->reports_registered = 0;
    t->registration_id[0] = t->ven_id[0] = '\0';
    for (size_t k = 0; k < t->nrep; k++)
        free(t->rep[k].s); /* each report's samples, then the reports */
    free(t->rep);
    t->rep = NULL;
    t->nrep = 0;
    t->dirty = 1;
}

static int do_register(struct fv_ven *v, struct vtn *t, int64_t now)
{
    char rid[FV_OADR_ID_MAX], err[FV_OADR_TEXT_MAX];
    struct fv_buf b = {0};
    struct fv_oadr_msg r;
    fv_ven__request_id(t, "query", rid);
    int rc = fv_oadr_build_query_registration(&b, rid);
    if (rc == FV_OK) rc = fv_ven__exchange(v, t, "EiRegisterParty", &b, &r, err, sizeof err);
    if (rc == FV_OK && r.kind == FV_OADR_CREATED_PARTY_REGISTRATION) {
        snprintf(t->vtn_id, sizeof t->vtn_id, "%s", r.vtn_id);
        if (r.poll_freq_ms >= 1000) t->poll_ms = r.poll_freq_ms;
    }
    fv_oadr_msg_free(&r);
    fv_buf_reset(&b);
    fv_ven__request_id(t, "register", rid);
    if (rc == FV_OK)
        rc = fv_oadr_build_create_party_registration(
            &b, rid, t->registration_id, t->ven_id, v->cfg->ven_name,
            v->cfg->push ? v->cfg->push_address : NULL, !v->cfg->push);
    if (rc == FV_OK) rc = fv_ven__exchange(v, t, "EiRegisterParty", &b, &r, err, sizeof err);
    fv_buf_free(&b);
    if (rc == FV_OK && (r.kind != FV_OADR_CREATED_PARTY_REGISTRATION || r.response_code != 200 ||
                        !r.registration_id[0] || !r.ven_id[0])) {
        snprintf(err, sizeof err, "registration refused: %s %d %s", r.name, r.response_code,
                 r.response_desc);
        rc = FV_EPROTO;
    }
    if (rc == FV_OK) {
        snprintf(t->registration_id, sizeof t->registration_id, "%s", r.registration_id);
        snprintf(t->ven_id, sizeof t->ven_id, "%s", r.ven_id);
        if (r.vtn_id[0]) snprintf(t->vtn_id, sizeof t->vtn_id, "%s", r.vtn_id);
        if (r.poll_freq_ms >= 1000) t->poll_ms = r.poll_freq_ms;
        t->registered = 1;
        t->reports_registered = 0;
        t->dirty = 1;
        t->next_ms = now;
        fv_info("openadr: %s: registered as %s (registration %s), polling every %lld s",
                t->cfg->name, t->ven_id, t->registration_id, (long long)(t->poll_ms / 1000));
        fv_ven__audit(v, "openadr.registration", "allow", NULL,
                      json_pack("{s:s,s:s,s:s,s:s}", "vtn", t->cfg->name, "ven_id", t->ven_id,
                                "registration_id", t->registration_id, "vtn_id", t->vtn_id));
    } else {
        failed(t, err, now);
        fv_warn("openadr: %s: %s", t->cfg->name, err);
    }
    fv_oadr_msg_free(&r);
    return rc;
}

/* oadrCancelPartyRegistration (the VTN's): ours -> answered 200 and forgotten (registered
 * again at the next turn); another registration -> 452, nothing changes. */
static void cancel_registration(struct fv_ven *v, struct vtn *t, const struct fv_oadr_msg *m)
{
    int ours = strcmp(m->registration_id, t->registration_id) == 0;
    struct fv_buf b = {0};
    if (fv_oadr_build_canceled_party_registration(
            &b, ours ? 200 : FV_OADR_INVALID_ID, ours ? NULL : "not this VEN's registrationID",
            m->request_id, m->registration_id, t->ven_id) == FV_OK)
        fv_ven__send(v, t, "EiRegisterParty", &b, "oadrCanceledPartyRegistration");
    fv_buf_free(&b);
    fv_ven__audit(
        v, "openadr.registration", ours ? "allow" : "deny",
        ours ? "cancelled by the VTN" : "a cancellation naming another registration",
        json_pack("{s:s,s:s}", "vtn", t->cfg->name, "registration_id", m->registration_id));
    if (ours) {
        fv_info("openadr: %s: the VTN cancelled registration %s; registering again", t->cfg->name,
                t->registration_id);
        forget_registration(t);
    }
}

/* N1: a message we cannot act on: the protocol's code, nothing changed. */
static void refuse(struct fv_ven *v, struct vtn *t, int code, const char *request_id,
                   const char *why)
{
    struct fv_buf b = {0};
    if (fv_oadr_build_response(&b, code, why, request_id ? request_id : "", t->ven_id) == FV_OK)
        fv_ven__send(v, t, "OadrPoll", &b, "oadrResponse");
    fv_buf_free(&b);
    fv_ven__audit(v, "openadr.error", "deny", why,
                  json_pack("{s:s,s:i}", "vtn", t->cfg->name, "code", code));
}

/* What a poll returned. Returns 1 when the VTN had nothing more (an oadrResponse). */
static int handle(struct fv_ven *v, struct vtn *t, const struct fv_oadr_msg *m, int64_t now)
{
    switch (m->kind) {
    case FV_OADR_RESPONSE:
        if (m->response_code == FV_OADR_NOT_REGISTERED) {
            fv_warn("openadr: %s: the VTN does not know us (463); registering again", t->cfg->name);
            forget_registration(t);
        }
        return 1;
    case FV_OADR_DISTRIBUTE_EVENT:
        fv_ven__distribute(v, t, m, now);
        return 0;
    case FV_OADR_CANCEL_PARTY_REGISTRATION:
        cancel_registration(v, t, m);
        return 1;
    case FV_OADR_REQUEST_REREGISTRATION: {
        struct fv_buf b = {0};
        if (fv_oadr_build_response(&b, 200, NULL, m->request_id, t->ven_id) == FV_OK)
            fv_ven__send(v, t, "OadrPoll", &b, "oadrResponse");
        fv_buf_free(&b);
        t->registered = 0; /* again, with the ids we have */
        return 1;
    }
    case FV_OADR_CREATE_REPORT:
        fv_ven__create_report(v, t, m, now);
        return 0;
    case FV_OADR_CANCEL_REPORT:
        fv_ven__cancel_report(v, t, m);
        return 0;
    case FV_OADR_REGISTER_REPORT: {
        struct fv_buf b = {0};
        if (fv_oadr_build_registered_report(&b, 200, NULL, m->request_id, t->ven_id) == FV_OK)
            fv_ven__send(v, t, "EiReport", &b, "oadrRegisteredReport");
        fv_buf_free(&b);
        return 0;
    }
    default: {
        char why[160];
        snprintf(why, sizeof why, "%s is not a message a VEN receives", m->name);
        refuse(v, t, FV_OADR_NOT_RECOGNIZED, m->request_id, why);
        return 0;
    }
    }
}

/* ---- push mode (N10) --------------------------------------------------------------------------
 */

/* The service each message a VTN pushes is posted to. */
static const char *push_service(enum fv_oadr_kind k)
{
    switch (k) {
    case FV_OADR_DISTRIBUTE_EVENT:
        return "EiEvent";
    case FV_OADR_CREATE_REPORT:
    case FV_OADR_REGISTER_REPORT:
    case FV_OADR_CANCEL_REPORT:
        return "EiReport";
    case FV_OADR_CANCEL_PARTY_REGISTRATION:
    case FV_OADR_REQUEST_REREGISTRATION:
        return "EiRegisterParty";
    default:
        return NULL;
    }
}

/* The VTN a pushed message is from: the only one, or the one whose vtnID (or our venID with
 * it) the message names. NULL: none. */
static struct vtn *push_vtn(struct fv_ven *v, const struct fv_oadr_msg *m)
{
    if (v->nvtn == 1) return &v->vtn[0];
    for (size_t i = 0; i < v->nvtn; i++)
        if ((m->vtn_id[0] && strcmp(m->vtn_id, v->vtn[i].vtn_id) == 0) ||
            (!m->vtn_id[0] && m->ven_id[0] && strcmp(m->ven_id, v->vtn[i].ven_id) == 0))
            return &v->vtn[i];
    return NULL;
}

/* One pushed message: validated (N1), then handled as a polled one would be, every answer
 * written into the job's reply instead of posted. */
static void push_one(struct fv_ven *v, struct pushjob *j)
{
    struct fv_oadr_msg m;
    char err[FV_OADR_TEXT_MAX];
    int64_t now = (int64_t)fv_now_ms();
    int rc = fv_oadr_parse(v->schema, j->body, j->len, &m, NULL, err, sizeof err);
    struct vtn *t = rc == FV_OK ? push_vtn(v, &m) : NULL;
    struct vtn *to = t ? t : &v->vtn[0]; /* who answers a message we cannot place */
    const char *svc = rc == FV_OK ? push_service(m.kind) : NULL;
    to->received++;
    to->push_reply = j->reply;
    if (rc != FV_OK) {
        to->invalid++;
        refuse(v, to, rc == FV_EPROTO ? FV_OADR_INVALID_DATA : FV_OADR_OTHER_ERROR, NULL, err);
    } else if (t == NULL) {
        snprintf(err, sizeof err, "pushed %s names no VTN of ours (vtnID %.60s)", m.name, m.vtn_id);
        refuse(v, to, FV_OADR_INVALID_ID, m.request_id, err);
    } else if (svc == NULL || strcmp(svc, j->service) != 0) {
        snprintf(err, sizeof err, "%s is not a message a VEN takes on %s", m.name, j->service);
        refuse(v, t, FV_OADR_NOT_RECOGNIZED, m.request_id, err);
    } else if (!t->registered) {
        refuse(v, t, FV_OADR_NOT_REGISTERED, m.request_id, "this VEN is not registered");
    } else {
        handle(v, t, &m, now);
        if (!t->registered) t->next_ms = 0; /* registered again at once */
    }
    if (j->reply->len == 0) { /* nothing to answer (e.g. responseRequired never): OK */
        struct fv_buf b = {0};
        if (fv_oadr_build_response(&b, 200, NULL, rc == FV_OK ? m.request_id : "", to->ven_id) ==
            FV_OK)
            fv_ven__send(v, to, "EiEvent", &b, "oadrResponse");
        fv_buf_free(&b);
    }
    to->push_reply = NULL;
    fv_oadr_msg_free(&m);
}

void fv_ven__push_take(struct fv_ven *v)
{
    for (;;) {
        pthread_mutex_lock(&v->pub);
        struct pushjob *j = v->pj_head;
        if (j) {
            v->pj_head = j->next;
            if (v->pj_head == NULL) v->pj_tail = NULL;
        }
        pthread_mutex_unlock(&v->pub);
        if (j == NULL) return;
        push_one(v, j);
        fv_ven__publish(v);
        pthread_mutex_lock(&v->pub);
        j->done = 1;
        pthread_cond_broadcast(&v->done_cv);
        pthread_mutex_unlock(&v->pub);
    }
}

/* N7: queued opt schedules go out. */
static void send_opts(struct fv_ven *v, struct vtn *t, int64_t now)
{
    for (size_t i = 0; i < t->nopt && t->reachable; i++) {
        struct vopt *o = &t->opt[i];
        if (o->state != OPT_TO_SEND && o->state != OPT_TO_CANCEL) continue;
        char rid[FV_OADR_ID_MAX];
        fv_ven__request_id(t, "opt", rid);
        struct fv_buf b = {0};
        struct fv_oadr_period p = {o->start_ms, o->end_ms - o->start_ms};
        int cancel = o->state == OPT_TO_CANCEL;
        int rc = cancel ? fv_oadr_build_cancel_opt(&b, rid, o->id, t->ven_id)
                        : fv_oadr_build_create_opt(&b, rid, o->id, o->opt_in, o->reason, o->mc,
                                                   t->ven_id, &p, 1, NULL, 0, now);
        struct fv_oadr_msg r;
        char err[FV_OADR_TEXT_MAX];
        if (rc == FV_OK) rc = fv_ven__exchange(v, t, "EiOpt", &b, &r, err, sizeof err);
        fv_buf_free(&b);
        if (rc == FV_EIO) {
            failed(t, err, now);
        } else if (rc == FV_OK) {
            snprintf(o->last, sizeof o->last, "%s %d", r.name, r.response_code);
            o->state = cancel ? OPT_CANCELLED : OPT_SENT;
            t->dirty = 1;
            fv_ven__audit(v, "openadr.opt", r.response_code == 200 ? "allow" : "deny",
                          r.response_desc[0] ? r.response_desc : NULL,
                          json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:i}", "vtn", t->cfg->name, "opt",
                                    o->id, "message", cancel ? "oadrCancelOpt" : "oadrCreateOpt",
                                    "opt_type", o->opt_in ? "optIn" : "optOut", "start_ms",
                                    (json_int_t)o->start_ms, "end_ms", (json_int_t)o->end_ms,
                                    "code", r.response_code));
        }
        fv_oadr_msg_free(&r);
    }
}

/* One VTN's turn (mu held). */
static void turn(struct fv_ven *v, struct vtn *t, int64_t now)
{
    if (now < t->next_ms) {
        fv_ven__reports_tick(v, t, now); /* samples between polls */
        return;
    }
    if (!t->registered && do_register(v, t, now) != FV_OK) return;
    if (!t->reports_registered) {
        char err[FV_OADR_TEXT_MAX];
        int rc = fv_ven__register_reports(v, t, now, err, sizeof err);
        if (rc == FV_EIO) {
            failed(t, err, now);
            return;
        }
        t->reports_registered = rc == FV_OK;
    }
    /* N10: in push mode the VTN posts its messages; the VEN does not poll. */
    for (int k = 0; k < VEN_BURST && t->registered && !v->cfg->push; k++) {
        struct fv_buf b = {0};
        struct fv_oadr_msg m;
        char err[FV_OADR_TEXT_MAX];
        int rc = fv_oadr_build_poll(&b, t->ven_id);
        t->polls++;
        t->last_poll_ms = now;
        if (rc == FV_OK) rc = fv_ven__exchange(v, t, "OadrPoll", &b, &m, err, sizeof err);
        fv_buf_free(&b);
        int done = 1;
        if (rc == FV_EIO) {
            failed(t, err, now);
            fv_warn("openadr: %s: %s (retrying)", t->cfg->name, err);
        } else if (rc == FV_EPROTO) {
            refuse(v, t, FV_OADR_INVALID_DATA, NULL, err);
        } else if (rc == FV_OK) {
            done = handle(v, t, &m, now);
        }
        fv_oadr_msg_free(&m);
        if (done || rc) break;
    }
    if (t->fails) return;
    fv_ven__reports_tick(v, t, now);
    send_opts(v, t, now);
    if (t->fails == 0) t->next_ms = now + t->poll_ms;
}

static void take_opt_requests(struct fv_ven *v);

static void *ven_main(void *arg)
{
    struct fv_ven *v = arg;
    pthread_mutex_lock(&v->mu);
    fv_ven__publish(v);
    /* Push mode: our address goes to the VTN in the registration, so nothing is sent before
     * the listener at that address is up (a VTN pushing at once was refused; seen in CI). */
    while (v->cfg->push && !v->push_listening && !v->stop)
        pthread_cond_wait(&v->cv, &v->mu);
    while (!v->stop) {
        take_opt_requests(v);
        fv_ven__push_take(v);
        for (size_t i = 0; i < v->nvtn && !v->stop; i++) {
            fv_ven__push_take(v);
            turn(v, &v->vtn[i], (int64_t)fv_now_ms());
            fv_ven__publish(v);
            fv_ven__save_state(v, &v->vtn[i]);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_mutex_lock(&v->pub);
        int pushed = v->pj_head != NULL;
        pthread_mutex_unlock(&v->pub);
        if (!pushed) pthread_cond_timedwait(&v->cv, &v->mu, &ts);
    }
    pthread_mutex_unlock(&v->mu);
    return NULL;
}

/* ---- open, close ----------------------------------------------------------------------------- */

int fv_ven_open(const struct fv_oadr_cfg *cfg, const char *data_dir, struct fv_vpp *vpp,
                struct fv_ven **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_ven *v = calloc(1, sizeof *v);
    if (v == NULL) return FV_ENOMEM;
    v->cfg = cfg;
    v->vpp = vpp;
    pthread_mutex_init(&v->mu, NULL);
    pthread_mutex_init(&v->pub, NULL);
    pthread_cond_init(&v->cv, NULL);
    pthread_cond_init(&v->done_cv, NULL);
    snprintf(v->dir, sizeof v->dir, "%s/openadr", data_dir);
    int rc = fv_oadr_schema_open(cfg->schema_dir, &v->schema, err, errlen);
    if (rc == FV_OK) rc = fv_os_mkdirs(v->dir, 0700, err, errlen);
    for (size_t i = 0; rc == FV_OK && i < cfg->nmcs; i++) {
        struct fv_vpp_site_now *sites = NULL;
        size_t n = 0;
        if (fv_vpp_sites(vpp, cfg->mcs[i].program, &sites, &n) == FV_ENOENT) {
            fv_seterr(err, errlen,
                      "openadr.market_contexts.%s.program: no VPP program '%s' (vpp.programs)",
                      cfg->mcs[i].context, cfg->mcs[i].program);
            rc = FV_EINVAL;
        }
        free(sites);
    }
    for (size_t i = 0; rc == FV_OK && i < cfg->nvtns; i++) {
        struct vtn *t = &v->vtn[v->nvtn++];
        t->cfg = &cfg->vtns[i];
        t->poll_ms = VEN_POLL_MS;
        rc = fv_ven__load_state(v, t, err, errlen);
        t->curl = rc == FV_OK ? curl_easy_init() : NULL;
        if (rc == FV_OK && t->curl == NULL) rc = FV_ENOMEM;
        if (rc == FV_OK) {
            CURL *c = t->curl;
            curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(c, CURLOPT_SSLCERT, t->cfg->cert);
            curl_easy_setopt(c, CURLOPT_SSLKEY, t->cfg->key);
            curl_easy_setopt(c, CURLOPT_CAINFO, t->cfg->ca);
            curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
            curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
            curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
            curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
            curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
        }
    }
    if (rc == FV_OK) {
        if (pthread_create(&v->thread, NULL, ven_main, v) != 0) {
            fv_seterr(err, errlen, "cannot start the OpenADR VEN's thread");
            rc = FV_ENOMEM;
        } else {
            v->started = 1;
        }
    }
    if (rc) {
        fv_ven_close(v);
        return rc;
    }
    *out = v;
    return FV_OK;
}

int fv_ven_listen(struct fv_ven *v, char *err, size_t errlen)
{
    if (v == NULL || !v->cfg->push || v->push_started) return FV_OK;
    return fv_ven__push_start(v, err, errlen);
}

void fv_ven_close(struct fv_ven *v)
{
    if (v == NULL) return;
    fv_ven__push_stop(v); /* first: a message it handed over is finished by the VEN's thread */
    if (v->started) {
        pthread_mutex_lock(&v->mu);
        v->stop = 1;
        pthread_cond_signal(&v->cv);
        pthread_mutex_unlock(&v->mu);
        pthread_join(v->thread, NULL);
    }
    for (size_t i = 0; i < v->nvtn; i++) {
        struct vtn *t = &v->vtn[i];
        if (t->curl) curl_easy_cleanup(t->curl);
        free(t->ev);
        for (size_t k = 0; k < t->nrep; k++)
            free(t->rep[k].s);
        free(t->rep);
        free(t->opt);
    }
    for (struct auditrec *a = v->a_head, *n; a; a = n) {
        n = a->next;
        free(a->extra);
        free(a);
    }
    for (struct optreq *r = v->oq_head, *n; r; r = n) {
        n = r->next;
        free(r);
    }
    free(v->status_text);
    fv_buf_free(&v->metrics_text);
    free(v->opt_ids);
    fv_oadr_schema_close(v->schema);
    pthread_cond_destroy(&v->cv);
    pthread_cond_destroy(&v->done_cv);
    pthread_mutex_destroy(&v->pub);
    pthread_mutex_destroy(&v->mu);
    free(v);
}

void fv_ven_set_store_ops(struct fv_ven *v, const struct fv_ven_store_ops *ops)
{
    pthread_mutex_lock(&v->mu);
    v->store = *ops;
    pthread_mutex_unlock(&v->mu);
}

/* ---- opts (N7) ---------------------------------------------------------------------------------
 */

/* Appends an opt request for the VEN's thread (pub held). */
static void queue_request(struct fv_ven *v, struct optreq *r)
{
    if (v->oq_tail)
        v->oq_tail->next = r;
    else
        v->oq_head = r;
    v->oq_tail = r;
}

int fv_ven_opt_create(struct fv_ven *v, const char *vtn, int opt_in, int64_t start_ms,
                      int64_t end_ms, const char *reason, const char *market_context, char id[64],
                      char *err, size_t errlen)
{
    if (end_ms <= start_ms) {
        fv_seterr(err, errlen, "the schedule must end after it starts");
        return FV_EINVAL;
    }
    if (reason && (strlen(reason) == 0 || strlen(reason) >= 64)) {
        fv_seterr(err, errlen, "reason: 1 to 63 bytes (an optReason: x-schedule, ...)");
        return FV_EINVAL;
    }
    if (market_context && strlen(market_context) >= FV_OADR_TEXT_MAX) {
        fv_seterr(err, errlen, "market_context too long");
        return FV_EINVAL;
    }
    size_t k = 0; /* the configuration is read-only: no lock */
    while (k < v->nvtn && vtn && strcmp(v->vtn[k].cfg->name, vtn) != 0)
        k++;
    if (k == v->nvtn) {
        fv_seterr(err, errlen, "no VTN named '%s'", vtn ? vtn : "");
        return FV_ENOENT;
    }
    struct optreq *r = calloc(1, sizeof *r);
    if (r == NULL) return FV_ENOMEM;
    r->vtn = k;
    struct vopt *o = &r->o;
    o->opt_in = opt_in != 0;
    o->start_ms = start_ms;
    o->end_ms = end_ms;
    snprintf(o->reason, sizeof o->reason, "%s",
             reason   ? reason
             : opt_in ? "participating"
                      : "x-schedule");
    snprintf(o->mc, sizeof o->mc, "%s", market_context ? market_context : "");
    o->state = OPT_TO_SEND;
    pthread_mutex_lock(&v->pub);
    snprintf(o->id, sizeof o->id, "fv-opt-%" PRIu64 "-%u", fv_now_ms() / 1000, ++v->opt_seq);
    snprintf(id, 64, "%s", o->id);
    queue_request(v, r);
    pthread_mutex_unlock(&v->pub);
    pthread_cond_signal(&v->cv);
    return FV_OK;
}

int fv_ven_opt_cancel(struct fv_ven *v, const char *id)
{
    if (strlen(id) >= 64) return FV_ENOENT;
    struct optreq *r = calloc(1, sizeof *r);
    if (r == NULL) return FV_ENOMEM;
    r->cancel = 1;
    snprintf(r->o.id, sizeof r->o.id, "%s", id);
    pthread_mutex_lock(&v->pub);
    int known = 0;
    for (size_t i = 0; i < v->nopt_ids && !known; i++)
        known = strcmp(v->opt_ids[i], id) == 0;
    for (struct optreq *q = v->oq_head; q && !known; q = q->next)
        known = strcmp(q->o.id, id) == 0 && !q->cancel;
    if (known) queue_request(v, r);
    pthread_mutex_unlock(&v->pub);
    if (!known) {
        free(r);
        return FV_ENOENT;
    }
    pthread_cond_signal(&v->cv);
    return FV_OK;
}

/* The API's opt requests become the VTNs' opt schedules (the VEN's thread, mu held). */
static void take_opt_requests(struct fv_ven *v)
{
    pthread_mutex_lock(&v->pub);
    struct optreq *r = v->oq_head;
    v->oq_head = v->oq_tail = NULL;
    pthread_mutex_unlock(&v->pub);
    while (r) {
        struct optreq *next = r->next;
        struct vtn *t = &v->vtn[r->vtn];
        if (r->cancel) {
            for (size_t i = 0; i < v->nvtn; i++)
                for (size_t k = 0; k < v->vtn[i].nopt; k++) {
                    struct vopt *o = &v->vtn[i].opt[k];
                    if (strcmp(o->id, r->o.id) != 0 || o->state == OPT_CANCELLED) continue;
                    o->state = o->state == OPT_TO_SEND ? OPT_CANCELLED : OPT_TO_CANCEL;
                    v->vtn[i].dirty = 1;
                    v->vtn[i].next_ms = 0;
                }
        } else {
            struct vopt *q = realloc(t->opt, (t->nopt + 1) * sizeof *q);
            if (q) {
                t->opt = q;
                q[t->nopt++] = r->o;
                t->dirty = 1;
                t->next_ms = 0; /* sent at this turn */
            }
        }
        free(r);
        r = next;
    }
}
