/*
 * simulate_int.h - internal to the simulator's run (src/sim/simulate.c, records.c, stats.c,
 * lineproto.c); not a public contract: callers use simulate.h.
 *
 * The run's state (struct run), its vehicles (struct veh) and their records (struct rec) are
 * shared by the files of the run; names they call across files carry the fv_sim__ prefix.
 *
 * Records of a vehicle are numbered by seq (1, 2, ...). The ring holds the window
 * [lo, hi): seq s lives in slot s & (cap - 1); a slot whose payload is NULL is finished
 * (acked or refused). Invariants:
 *  R1 lo is the oldest unfinished seq (or hi when none); hi - lo <= max_inflight <= cap.
 *  R2 records in [lo, send_next) were queued on the current connection; [send_next, hi)
 *     wait for it to be OPEN and for room in its send queue (pump).
 *  R3 a record's first_send_ns is set once, when first queued; every later transmission is
 *     a resend (is_resend = true in the payload, same txid).
 *  R4 the run's `outstanding` equals the sum over vehicles of unfinished records.
 * In virtual time (simulate.h), besides R1-R4:
 *  R5 vt_full counts the vehicles whose `full` flag is set, and `full` is set exactly when
 *     hi - lo >= max_inflight (updated in generate and finish).
 *  R6 vt_k rounds are made: every vehicle has generated records 0..vt_k-1, no more.
 * In wall-clock time:
 *  R7 a vehicle's (or site's) live records have strictly increasing wall-clock stamps
 *     (before jitter): last_wall_ms is the latest, and the next is at least 1 ms after it.
 *
 * Threading: everything here runs on the thread that called fv_sim_run (one run, one
 * thread); a struct run is never shared between threads.
 */
#ifndef FV_SIM_SIMULATE_INT_H
#define FV_SIM_SIMULATE_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "crypto/certs.h"
#include "sim/campaign.h"
#include "sim/simulate.h"
#include "sim/site.h"
#include "sim/vehicle.h"
#include "sim/connector.h"
#include "sim/wsclient.h"
#include "util/buf.h"
#include "wire/payload.h"

#define NS_PER_MS          1000000ULL
#define NS_PER_S           1000000000ULL
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000
#define SCAN_EVERY_NS      NS_PER_S    /* at most; less when resend_after_s is shorter */
#define SEND_QUEUE_MAX     (64 * 1024) /* bytes queued per connection before pump waits */
#define CLOSE_WAIT_NS      NS_PER_S
#define MAX_EVENTS         1024
#define NEVER              UINT64_MAX
#define ERR_LOG_EVERY_NS   (5 * NS_PER_S)
#define ERR_KINDS          16
#define VT_ROUNDS_PER_TURN 8  /* virtual time: rounds made between two looks at the sockets */
#define BF_PER_TURN        64 /* sites: history samples each between two looks */
#define INFLUX_BUF         (1u << 20) /* line-protocol file written in blocks this large */

/* Latency histogram: log-linear over microseconds, exact below 128 us, then 64 buckets per
 * power of two (<= 1.6 % error). */
#define HIST_EXACT 128
#define HIST_SUB   64
#define HIST_N     (HIST_EXACT + 58 * HIST_SUB)

enum phase { PH_GEN, PH_DRAIN, PH_CLOSE, PH_DONE };

struct rec {
    unsigned char *payload; /* protobuf V payload; NULL = finished slot */
    uint64_t created_ms;
    uint64_t first_send_ns; /* 0 = never sent (R3) */
    uint64_t last_send_ns;
    uint32_t len;
    uint16_t ndatums;
    uint8_t resend_form; /* payload already has is_resend = true */
    uint8_t topic;       /* enum rec_topic */
};

enum rec_topic { REC_V = 0, REC_SITE, REC_ACK, REC_CAMPAIGN_ACK, REC_CAMPAIGN_HIT };
#define CAMPAIGN_HITS_MAX FV_SIM_CAMPAIGNS_MAX /* hits one sample may report */

struct veh {
    char vin[FV_SIM_VIN_LEN + 1];
    struct fv_sim_vehicle *model;  /* a vehicle, or NULL for a site */
    struct fv_sim_site *site;      /* a site (site.h), or NULL for a vehicle */
    struct fv_sim_campaigns *camp; /* a vehicle's campaigns (campaign.h); NULL: none yet */
    uint64_t bf_next_ms;           /* a site's next history sample; >= bf_end_ms once done */
    uint64_t last_wall_ms;         /* the wall-clock stamp of its last live record (R7) */
    struct fv_sim_ws *ws;
    X509 *cert;
    EVP_PKEY *key;
    struct rec *ring;
    uint32_t ring_cap; /* power of two, 0 before the first record */
    uint32_t outstanding;
    uint64_t lo, hi, send_next; /* R1, R2 */
    uint64_t next_tick_ns, reconnect_at_ns, conn_deadline_ns, next_scan_ns, wake_ns;
    uint32_t backoff_ms;
    uint32_t heap_pos;
    uint32_t attempts;
    uint32_t epoll_mask; /* events registered; 0 = not registered */
    uint8_t in_queue;
    uint8_t open;
    uint8_t full; /* R5 */
    uint8_t away; /* the connector holds ws (connector.h C1): touch neither it nor its fd */
    struct fv_sim_conn_job job; /* the connect and TLS handshake on the connector's thread */
};

struct run {
    const struct fv_sim_opts *o;
    struct fv_sim_stats *st;
    SSL_CTX *ctx;
    struct fv_ca *ca;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host[256], port[16], hostport[300], path[512];
    struct fv_sim_ws_target target;
    char runid[24];
    struct veh *v;
    uint32_t n;
    uint32_t *heap; /* vehicle indexes, min-heap on wake_ns */
    uint32_t *cq;   /* FIFO of vehicles waiting for a connection token */
    uint32_t cq_head, cq_len;
    double tokens;
    uint64_t tokens_ns;
    int ep;
    struct fv_sim_connector *conn; /* the TLS handshakes' thread (connector.h) */
    int conn_tag;                  /* its eventfd's epoll tag (the address is the tag) */
    FILE *log;
    FILE *slow; /* --slow-log */
    struct fv_buf pl, env;
    uint64_t period_ns, t0_ns, gen_end_ns, drain_end_ns, close_end_ns;
    uint64_t scan_ns; /* how often open connections look for records to resend */
    enum phase phase;
    uint64_t outstanding; /* R4 */
    uint32_t connected, live_conns;
    uint64_t rng;
    uint64_t hist[HIST_N];
    uint64_t hist_n;
    int fatal;
    char fatal_msg[256];
    char last_err[512];
    uint64_t err_kinds[ERR_KINDS];
    int err_kinds_n;
    uint64_t last_err_ns, err_suppressed;
    uint64_t last_reply_err_ns;
    uint64_t prev_datums;
    FILE *influx;            /* line-protocol output, or NULL */
    char *influx_buf;        /* its stdio buffer (INFLUX_BUF bytes), freed after fclose */
    struct fv_buf line;      /* the line being built */
    struct fv_datum *sample; /* fv_sim_signal_count() datums, for the line */
    uint64_t vt_total, vt_k; /* virtual time: rounds to make, rounds made (R6) */
    uint32_t vt_full;        /* R5 */
    struct fv_sim_ws_target site_target; /* as target, with an energy device's headers */
    uint64_t bf_end_ms;                  /* sites: history ends here (the run's start) */
    uint32_t bf_pending;                 /* sites still back-filling */
    /* Campaigns (campaign.h VC4): the clip hook a hit calls: the clip worker's
     * (clipworker.h) with opts.clip_server, else fv_sim_clip_upload_stub (simulate.c setup). */
    fv_sim_clip_upload_fn clip_upload;
    void *clip_upload_arg;
    struct fv_sim_clipworker *clipw;       /* NULL: no clip server */
    struct fv_buf hits[CAMPAIGN_HITS_MAX]; /* a sample's campaign_hit payloads */
};

/* What fv_sim__on_message is called with: the vehicle whose connection the reply came on. */
struct msg_ctx {
    struct run *r;
    struct veh *v;
    uint64_t now;
};

/* simulate.c: records the first fatal error (rc, "what: reason"); the run then stops. */
void fv_sim__set_fatal(struct run *r, int rc, const char *what);

/* records.c: the delivery window of a vehicle (R1-R6). */
/* Generates v's next record (or counts a pause when its window is full). */
void fv_sim__generate(struct run *r, struct veh *v);
/* Queues waiting records on v's open connection while its send queue has room (R2). */
/* simnet.c: the server's address and the TLS client context; every device's certificate. */
int fv_sim__setup_network(struct run *r, char *err, size_t errlen);
int fv_sim__mint_all(struct run *r, char *err, size_t errlen);
void fv_sim__pump(struct run *r, struct veh *v, uint64_t now);
/* Resends records of v's connection unanswered for resend_after_s. */
void fv_sim__resend_scan(struct run *r, struct veh *v, uint64_t now);
/* fv_sim_ws_io's message callback; ud is a struct msg_ctx. Always 0. */
int fv_sim__on_message(void *ud, unsigned opcode, const unsigned char *p, size_t len);
/* Keeps a record (payload copied) at v's hi, unfinished until answered. FV_OK or FV_ENOMEM. */
int fv_sim__push(struct run *r, struct veh *v, const struct fv_buf *payload, uint32_t ndatums,
                 uint64_t created_ms, enum rec_topic topic);
/* Whether v's window is full (hi - lo >= max_inflight). */
int fv_sim__window_full(const struct run *r, const struct veh *v);

/* sites.c: the run's energy sites (simulate.h "Sites"). */
/* Sets up sites: models, ids, the history's span. FV_OK, or an error with a reason. */
int fv_sim__sites_setup(struct run *r, char *err, size_t errlen);
/* Steps site v's model to t_ms and, when it is online, keeps its sample as a record. */
void fv_sim__site_sample(struct run *r, struct veh *v, uint64_t t_ms);
/* Makes up to `max` history samples per back-filling site while its window has room;
 * returns how many were made. */
uint64_t fv_sim__sites_backfill(struct run *r, uint32_t max);
/* A site_command for site v (a decoded envelope's payload): applied and acked. */
void fv_sim__site_command(struct run *r, struct veh *v, const unsigned char *p, size_t len);
/* campaigns.c: a vehicle's `campaign` message (acked), and its sample fed to its campaigns
 * (hits reported). */
void fv_sim__campaign_message(struct run *r, struct veh *v, const unsigned char *p, size_t len);
void fv_sim__campaign_sample(struct run *r, struct veh *v, uint64_t t_ms);
/* Re-encodes a site sample payload with is_resend set into r->pl. */
int fv_sim__site_resend_form(struct run *r, struct veh *v, const unsigned char *p, size_t len);

/* stats.c: the ack-latency histogram, progress lines, resource use. */
/* Counts one ack latency of us microseconds. */
void fv_sim__hist_add(struct run *r, uint64_t us);
/* The q-quantile (0..1] of the acks counted, in ms (bucket midpoint); 0 when none. */
double fv_sim__hist_quantile_ms(const struct run *r, double q);
/* Flushes the acked log and, with opts.progress, prints a progress line on stderr. */
void fv_sim__progress(struct run *r, uint64_t now);
/* The process's peak resident set, in MiB. */
double fv_sim__peak_rss_mb(void);

/* lineproto.c: base + off, clamped at 0 (|off| < 2^33, so neither side overflows). */
uint64_t fv_sim__add_offset(uint64_t base, int64_t off);

#endif
