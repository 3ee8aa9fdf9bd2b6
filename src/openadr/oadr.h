/*
 * oadr.h - OpenADR 2.0b messages: the schema, parsing what a VTN sends into C structs, and
 * building what a VEN sends (issue 11; docs/openadr.md). libxml2 underneath.
 *
 * Every payload is an oadrPayload holding one oadrSignedObject holding one message
 * (share/openadr-2.0b/oadr_20b.xsd). Rules:
 *  M1 A received payload is validated against the 2.0b schema (xmlSchemaValidateDoc) before
 *     anything is read from it: fv_oadr_parse refuses a payload that is not well-formed XML,
 *     carries a DOCTYPE (no entities, no external references: nothing is fetched), or does not
 *     validate, with FV_EPROTO, a reason, and FV_OADR_INVALID_DATA as the code to answer with.
 *  M2 A valid message the VEN does not act on (one a VEN sends, e.g. oadrPoll) parses as kind
 *     FV_OADR_OTHER, named; the caller answers FV_OADR_NOT_RECOGNIZED.
 *  M3 Times are UTC milliseconds: xcal date-times without a zone are read as UTC; durations
 *     (P..W, P..D T..H..M..S; a year read as 365 days and a month as 30) as milliseconds;
 *     fractions of a second are kept to the millisecond.
 *  M4 Every message built here validates against the schema (tests/openadr/test_oadr.c
 *     checks each); text is XML-escaped; numbers are printed so they read back exactly.
 *  M5 Limits: FV_OADR_MAX_BYTES per payload, FV_OADR_ID_MAX per identifier (longer ones are
 *     refused with FV_OADR_INVALID_DATA rather than cut).
 *
 * Thread-safety: a schema (fv_oadr_schema_open) is read-only once opened and may be shared by
 * threads (each validation uses its own context); parse and build functions have no shared
 * state. fv_oadr_schema_open must first run on one thread before others use libxml2 (it calls
 * xmlInitParser).
 */
#ifndef FV_OPENADR_OADR_H
#define FV_OPENADR_OADR_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define FV_OADR_MAX_BYTES (4u << 20)
#define FV_OADR_ID_MAX    128
#define FV_OADR_TEXT_MAX  256

/* Response codes (OpenADR 2.0b profile specification, error codes). */
enum {
    FV_OADR_OK = 200,
    FV_OADR_BAD_REQUEST = 400,
    FV_OADR_OUT_OF_SEQUENCE = 450,
    FV_OADR_NOT_ALLOWED = 451,
    FV_OADR_INVALID_ID = 452,
    FV_OADR_NOT_RECOGNIZED = 453,
    FV_OADR_INVALID_DATA = 454,
    FV_OADR_SIGNAL_NOT_SUPPORTED = 460,
    FV_OADR_REPORT_NOT_SUPPORTED = 461,
    FV_OADR_TARGET_MISMATCH = 462,
    FV_OADR_NOT_REGISTERED = 463,
    FV_OADR_OTHER_ERROR = 469,
};

enum fv_oadr_kind {
    FV_OADR_OTHER, /* valid, but not one a VEN receives (M2) */
    FV_OADR_DISTRIBUTE_EVENT,
    FV_OADR_CREATED_PARTY_REGISTRATION,
    FV_OADR_CANCEL_PARTY_REGISTRATION,
    FV_OADR_CANCELED_PARTY_REGISTRATION,
    FV_OADR_REQUEST_REREGISTRATION,
    FV_OADR_CREATE_REPORT,
    FV_OADR_REGISTER_REPORT,
    FV_OADR_REGISTERED_REPORT,
    FV_OADR_CANCEL_REPORT,
    FV_OADR_UPDATED_REPORT,
    FV_OADR_CREATED_OPT,
    FV_OADR_CANCELED_OPT,
    FV_OADR_RESPONSE,
};

enum fv_oadr_status {
    FV_OADR_ST_NONE,
    FV_OADR_ST_FAR,
    FV_OADR_ST_NEAR,
    FV_OADR_ST_ACTIVE,
    FV_OADR_ST_COMPLETED,
    FV_OADR_ST_CANCELLED,
};

typedef char fv_oadr_id[FV_OADR_ID_MAX];

/* An eiTarget (or reportSubject): the identifiers it names; other kinds (pnodes, service
 * areas, ...) are counted in nother. */
struct fv_oadr_target {
    fv_oadr_id *ven_ids, *resource_ids, *group_ids, *party_ids;
    size_t nven, nresource, ngroup, nparty, nother;
};

struct fv_oadr_interval {
    int64_t start_ms; /* from the event's dtstart and the durations before it (or its own) */
    int64_t dur_ms;
    double value; /* signalPayload payloadFloat */
};

struct fv_oadr_signal {
    char name[64]; /* SIMPLE, LOAD_DISPATCH, ELECTRICITY_PRICE, x-... */
    char type[32]; /* level, setpoint, delta, ... */
    fv_oadr_id id;
    char units[16]; /* the itemBase's itemUnits ("W"), "" when absent */
    char scale[8];  /* its siScaleCode ("k"), "" when absent */
    int has_current;
    double current;
    struct fv_oadr_interval *iv;
    size_t niv;
};

struct fv_oadr_event {
    fv_oadr_id id;
    uint32_t mod;
    uint32_t priority; /* 0 when absent */
    char market_context[FV_OADR_TEXT_MAX];
    enum fv_oadr_status status;
    int test; /* testEvent present and not "false" */
    int64_t created_ms;
    int64_t start_ms, dur_ms; /* eiActivePeriod */
    int64_t notification_ms, rampup_ms, recovery_ms;
    int response_required; /* 1 always, 0 never */
    struct fv_oadr_signal *sig;
    size_t nsig;
    struct fv_oadr_target target;
};

struct fv_oadr_report_request {
    fv_oadr_id request_id, specifier_id;
    int64_t granularity_ms, report_back_ms;
    int has_interval;
    int64_t start_ms, dur_ms; /* reportInterval: dur 0 = open-ended */
    fv_oadr_id *rids;
    size_t nrid;
};

struct fv_oadr_msg {
    enum fv_oadr_kind kind;
    char name[64];         /* the message element's local name */
    fv_oadr_id request_id; /* pyld:requestID of the message (or of its eiResponse) */
    int has_response;      /* an eiResponse was present */
    int response_code;
    char response_desc[FV_OADR_TEXT_MAX];
    fv_oadr_id vtn_id, ven_id, registration_id, opt_id;
    int64_t poll_freq_ms; /* oadrRequestedOadrPollFreq, 0 when absent */
    struct fv_oadr_event *ev;
    size_t nev;
    struct fv_oadr_report_request *rr; /* oadrCreateReport, oadrRegisteredReport */
    size_t nrr;
    fv_oadr_id *cancel_rr; /* oadrCancelReport's reportRequestIDs */
    size_t ncancel_rr;
    int report_to_follow;
};

struct fv_oadr_schema;

/* Loads DIR/oadr_20b.xsd (and what it imports). FV_OK; FV_ENOENT / FV_EINVAL with the reason.
 * Free with fv_oadr_schema_close (NULL ignored). */
int fv_oadr_schema_open(const char *dir, struct fv_oadr_schema **out, char *err, size_t errlen);
void fv_oadr_schema_close(struct fv_oadr_schema *s);

/* Whether xml[0..len) is a well-formed oadrPayload without DOCTYPE that validates (M1).
 * FV_OK, or FV_EPROTO with the first problem (line and message) in err. */
int fv_oadr_validate(const struct fv_oadr_schema *s, const char *xml, size_t len, char *err,
                     size_t errlen);

/* Validates (M1), then reads the message into *out (zeroed first; free it with
 * fv_oadr_msg_free even on failure). FV_OK; FV_EPROTO (not XML, not valid: *code =
 * FV_OADR_INVALID_DATA) with the reason; FV_ENOMEM. code may be NULL. */
int fv_oadr_parse(const struct fv_oadr_schema *s, const char *xml, size_t len,
                  struct fv_oadr_msg *out, int *code, char *err, size_t errlen);
void fv_oadr_msg_free(struct fv_oadr_msg *m);

/* The status names of the schema ("far", ...). */
const char *fv_oadr_status_name(enum fv_oadr_status s);
/* xcal date-time text of utc ms ("2026-12-02T13:30:00.250Z"; out: 32 bytes) and ISO 8601
 * duration text of ms ("PT1H30M", "PT0.5S", "PT0S"; out: 40 bytes). */
void fv_oadr_fmt_time(int64_t ms, char out[32]);
void fv_oadr_fmt_duration(int64_t ms, char out[40]);
/* Reads them back (M3). FV_OK or FV_EINVAL. */
int fv_oadr_parse_time(const char *s, int64_t *ms);
int fv_oadr_parse_duration(const char *s, int64_t *ms);

/* ---- building (M4): each appends one complete oadrPayload to out; FV_OK or FV_ENOMEM ---- */

int fv_oadr_build_query_registration(struct fv_buf *out, const char *request_id);
/* registration_id / ven_id: NULL or "" for a first registration. transport_address: the push
 * base URL, or NULL in pull mode. */
int fv_oadr_build_create_party_registration(struct fv_buf *out, const char *request_id,
                                            const char *registration_id, const char *ven_id,
                                            const char *ven_name, const char *transport_address,
                                            int pull);
int fv_oadr_build_canceled_party_registration(struct fv_buf *out, int code, const char *desc,
                                              const char *request_id, const char *registration_id,
                                              const char *ven_id);
int fv_oadr_build_poll(struct fv_buf *out, const char *ven_id);
int fv_oadr_build_response(struct fv_buf *out, int code, const char *desc, const char *request_id,
                           const char *ven_id);

struct fv_oadr_event_response {
    const char *event_id;
    uint32_t mod;
    int code;
    const char *desc; /* NULL: none; an optOut's reason */
    int opt_in;       /* 1 optIn, 0 optOut */
};
/* oadrCreatedEvent answering the oadrDistributeEvent request_id, one eventResponse each. */
int fv_oadr_build_created_event(struct fv_buf *out, int code, const char *desc,
                                const char *request_id, const char *ven_id,
                                const struct fv_oadr_event_response *r, size_t n);

/* A data point a report describes (oadrReportDescription). */
struct fv_oadr_report_desc {
    const char *rid;
    const char *report_type;              /* "usage", "storedEnergy", "x-resourceStatus", ... */
    const char *item;                     /* "powerReal" (kW), "energyReal" (kWh) or NULL */
    const char *reading_type;             /* "Direct Read", "Summed", ... */
    const char *market_context;           /* NULL: none */
    int64_t min_period_ms, max_period_ms; /* sampling rate */
};
struct fv_oadr_report_meta {
    const char *specifier_id;
    const char *name; /* METADATA_TELEMETRY_USAGE, ... */
    int64_t duration_ms;
    const struct fv_oadr_report_desc *d;
    size_t nd;
};
int fv_oadr_build_register_report(struct fv_buf *out, const char *request_id, const char *ven_id,
                                  const struct fv_oadr_report_meta *r, size_t n, int64_t now_ms);

/* One interval of an update report: its start, duration and one value per rID. */
struct fv_oadr_report_point {
    const char *rid;
    double value;
    int status; /* 1: an oadrPayloadResourceStatus (value = online 0/1) instead of a float */
};
struct fv_oadr_report_interval {
    int64_t start_ms, dur_ms;
    const struct fv_oadr_report_point *p;
    size_t np;
};
int fv_oadr_build_update_report(struct fv_buf *out, const char *request_id, const char *ven_id,
                                const char *report_id, const char *report_request_id,
                                const char *specifier_id, const char *name, int64_t start_ms,
                                int64_t dur_ms, const struct fv_oadr_report_interval *iv, size_t n,
                                int64_t now_ms);
/* oadrCreatedReport / oadrCanceledReport: the report requests still pending. */
int fv_oadr_build_created_report(struct fv_buf *out, int code, const char *desc,
                                 const char *request_id, const char *ven_id,
                                 const char *const *pending, size_t npending);
int fv_oadr_build_canceled_report(struct fv_buf *out, int code, const char *desc,
                                  const char *request_id, const char *ven_id,
                                  const char *const *pending, size_t npending);
/* oadrRegisteredReport is the VTN's; a VEN answers the VTN's oadrRegisterReport with it. */
int fv_oadr_build_registered_report(struct fv_buf *out, int code, const char *desc,
                                    const char *request_id, const char *ven_id);

/* An opt schedule: the fleet (opt_in 0: unavailable) over periods, for a market context, or
 * for one event (event_id non-NULL). reason: "notParticipating", "x-schedule", ... */
struct fv_oadr_period {
    int64_t start_ms, dur_ms;
};
int fv_oadr_build_create_opt(struct fv_buf *out, const char *request_id, const char *opt_id,
                             int opt_in, const char *reason, const char *market_context,
                             const char *ven_id, const struct fv_oadr_period *p, size_t n,
                             const char *event_id, uint32_t mod, int64_t now_ms);
int fv_oadr_build_cancel_opt(struct fv_buf *out, const char *request_id, const char *opt_id,
                             const char *ven_id);

#endif
