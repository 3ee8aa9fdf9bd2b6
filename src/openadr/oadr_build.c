/*
 * oadr_build.c - the messages a VEN sends (oadr.h M4). Each builder writes one oadrPayload
 * with every namespace declared on the root, elements in the schema's sequence order, text
 * escaped. The tests validate every builder's output against the schema.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "openadr/oadr.h"
#include "util/err.h"
#include "util/fmt.h"

#define NS_DECLS                                                                                   \
    " xmlns:oadr=\"http://openadr.org/oadr-2.0b/2012/07\""                                         \
    " xmlns:ei=\"http://docs.oasis-open.org/ns/energyinterop/201110\""                             \
    " xmlns:pyld=\"http://docs.oasis-open.org/ns/energyinterop/201110/payloads\""                  \
    " xmlns:emix=\"http://docs.oasis-open.org/ns/emix/2011/06\""                                   \
    " xmlns:xcal=\"urn:ietf:params:xml:ns:icalendar-2.0\""                                         \
    " xmlns:strm=\"urn:ietf:params:xml:ns:icalendar-2.0:stream\""                                  \
    " xmlns:power=\"http://docs.oasis-open.org/ns/emix/2011/06/power\""                            \
    " xmlns:scale=\"http://docs.oasis-open.org/ns/emix/2011/06/siscale\""

/* A writer that remembers the first failure, so builders read as straight-line XML. */
struct w {
    struct fv_buf *b;
    int rc;
};

static void raw(struct w *w, const char *s)
{
    if (w->rc == FV_OK) w->rc = fv_buf_append(w->b, s, strlen(s));
}

static void rawf(struct w *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rawf(struct w *w, const char *fmt, ...)
{
    if (w->rc != FV_OK) return;
    va_list ap;
    va_start(ap, fmt);
    w->rc = fv_buf_vappendf(w->b, fmt, ap);
    va_end(ap);
}

static void esc(struct w *w, const char *s)
{
    for (const char *p = s ? s : ""; *p; p++) {
        const char *r = *p == '<'   ? "&lt;"
                        : *p == '>' ? "&gt;"
                        : *p == '&' ? "&amp;"
                        : *p == '"' ? "&quot;"
                                    : NULL;
        if (r)
            raw(w, r);
        else if (w->rc == FV_OK && ((unsigned char)*p >= 0x20 || *p == '\t' || *p == '\n'))
            w->rc = fv_buf_append(w->b, p, 1);
    }
}

/* <tag>escaped text</tag> */
static void el(struct w *w, const char *tag, const char *text)
{
    rawf(w, "<%s>", tag);
    esc(w, text);
    rawf(w, "</%s>", tag);
}

static void el_num(struct w *w, const char *tag, double v)
{
    char d[FV_FMT_DOUBLE_MAX];
    fv_fmt_double(d, v);
    rawf(w, "<%s>%s</%s>", tag, d, tag);
}

static void begin(struct w *w, struct fv_buf *out, const char *msg)
{
    w->b = out;
    w->rc = FV_OK;
    raw(w, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<oadr:oadrPayload" NS_DECLS
           "><oadr:oadrSignedObject>");
    rawf(w, "<oadr:%s ei:schemaVersion=\"2.0b\">", msg);
}

static int end(struct w *w, const char *msg)
{
    rawf(w, "</oadr:%s></oadr:oadrSignedObject></oadr:oadrPayload>\n", msg);
    return w->rc;
}

static void ei_response(struct w *w, int code, const char *desc, const char *request_id)
{
    raw(w, "<ei:eiResponse>");
    rawf(w, "<ei:responseCode>%03d</ei:responseCode>", code);
    if (desc && desc[0]) el(w, "ei:responseDescription", desc);
    el(w, "pyld:requestID", request_id);
    raw(w, "</ei:eiResponse>");
}

static void ven_id_opt(struct w *w, const char *ven_id)
{
    if (ven_id && ven_id[0]) el(w, "ei:venID", ven_id);
}

static void dtstart(struct w *w, int64_t ms)
{
    char t[32];
    fv_oadr_fmt_time(ms, t);
    rawf(w, "<xcal:dtstart><xcal:date-time>%s</xcal:date-time></xcal:dtstart>", t);
}

static void duration(struct w *w, const char *tag, int64_t ms)
{
    char d[40];
    fv_oadr_fmt_duration(ms, d);
    rawf(w, "<%s><xcal:duration>%s</xcal:duration></%s>", tag, d, tag);
}

int fv_oadr_build_query_registration(struct fv_buf *out, const char *request_id)
{
    struct w w;
    begin(&w, out, "oadrQueryRegistration");
    el(&w, "pyld:requestID", request_id);
    return end(&w, "oadrQueryRegistration");
}

int fv_oadr_build_create_party_registration(struct fv_buf *out, const char *request_id,
                                            const char *registration_id, const char *ven_id,
                                            const char *ven_name, const char *transport_address,
                                            int pull)
{
    struct w w;
    begin(&w, out, "oadrCreatePartyRegistration");
    el(&w, "pyld:requestID", request_id);
    if (registration_id && registration_id[0]) el(&w, "ei:registrationID", registration_id);
    ven_id_opt(&w, ven_id);
    raw(&w, "<oadr:oadrProfileName>2.0b</oadr:oadrProfileName>"
            "<oadr:oadrTransportName>simpleHttp</oadr:oadrTransportName>");
    if (transport_address && transport_address[0])
        el(&w, "oadr:oadrTransportAddress", transport_address);
    raw(&w, "<oadr:oadrReportOnly>false</oadr:oadrReportOnly>"
            "<oadr:oadrXmlSignature>false</oadr:oadrXmlSignature>");
    el(&w, "oadr:oadrVenName", ven_name);
    rawf(&w, "<oadr:oadrHttpPullModel>%s</oadr:oadrHttpPullModel>", pull ? "true" : "false");
    return end(&w, "oadrCreatePartyRegistration");
}

int fv_oadr_build_canceled_party_registration(struct fv_buf *out, int code, const char *desc,
                                              const char *request_id, const char *registration_id,
                                              const char *ven_id)
{
    struct w w;
    begin(&w, out, "oadrCanceledPartyRegistration");
    ei_response(&w, code, desc, request_id);
    if (registration_id && registration_id[0]) el(&w, "ei:registrationID", registration_id);
    ven_id_opt(&w, ven_id);
    return end(&w, "oadrCanceledPartyRegistration");
}

int fv_oadr_build_poll(struct fv_buf *out, const char *ven_id)
{
    struct w w;
    begin(&w, out, "oadrPoll");
    el(&w, "ei:venID", ven_id);
    return end(&w, "oadrPoll");
}

int fv_oadr_build_response(struct fv_buf *out, int code, const char *desc, const char *request_id,
                           const char *ven_id)
{
    struct w w;
    begin(&w, out, "oadrResponse");
    ei_response(&w, code, desc, request_id);
    ven_id_opt(&w, ven_id);
    return end(&w, "oadrResponse");
}

int fv_oadr_build_created_event(struct fv_buf *out, int code, const char *desc,
                                const char *request_id, const char *ven_id,
                                const struct fv_oadr_event_response *r, size_t n)
{
    struct w w;
    begin(&w, out, "oadrCreatedEvent");
    raw(&w, "<pyld:eiCreatedEvent>");
    ei_response(&w, code, desc, request_id);
    if (n) {
        raw(&w, "<ei:eventResponses>");
        for (size_t i = 0; i < n; i++) {
            raw(&w, "<ei:eventResponse>");
            rawf(&w, "<ei:responseCode>%03d</ei:responseCode>", r[i].code);
            if (r[i].desc && r[i].desc[0]) el(&w, "ei:responseDescription", r[i].desc);
            el(&w, "pyld:requestID", request_id);
            raw(&w, "<ei:qualifiedEventID>");
            el(&w, "ei:eventID", r[i].event_id);
            rawf(&w, "<ei:modificationNumber>%" PRIu32 "</ei:modificationNumber>", r[i].mod);
            raw(&w, "</ei:qualifiedEventID>");
            rawf(&w, "<ei:optType>%s</ei:optType>", r[i].opt_in ? "optIn" : "optOut");
            raw(&w, "</ei:eventResponse>");
        }
        raw(&w, "</ei:eventResponses>");
    }
    el(&w, "ei:venID", ven_id);
    raw(&w, "</pyld:eiCreatedEvent>");
    return end(&w, "oadrCreatedEvent");
}

static void item_base(struct w *w, const char *item)
{
    if (item == NULL) return;
    if (strcmp(item, "powerReal") == 0)
        raw(w, "<power:powerReal><power:itemDescription>RealPower</power:itemDescription>"
               "<power:itemUnits>W</power:itemUnits><scale:siScaleCode>k</scale:siScaleCode>"
               "<power:powerAttributes><power:hertz>60</power:hertz>"
               "<power:voltage>240</power:voltage><power:ac>true</power:ac>"
               "</power:powerAttributes></power:powerReal>");
    else if (strcmp(item, "energyReal") == 0)
        raw(w, "<power:energyReal><power:itemDescription>RealEnergy</power:itemDescription>"
               "<power:itemUnits>Wh</power:itemUnits><scale:siScaleCode>k</scale:siScaleCode>"
               "</power:energyReal>");
}

int fv_oadr_build_register_report(struct fv_buf *out, const char *request_id, const char *ven_id,
                                  const struct fv_oadr_report_meta *r, size_t n, int64_t now_ms)
{
    struct w w;
    char t[32], d1[40], d2[40];
    fv_oadr_fmt_time(now_ms, t);
    begin(&w, out, "oadrRegisterReport");
    el(&w, "pyld:requestID", request_id);
    for (size_t i = 0; i < n; i++) {
        raw(&w, "<oadr:oadrReport>");
        duration(&w, "xcal:duration", r[i].duration_ms);
        for (size_t k = 0; k < r[i].nd; k++) {
            const struct fv_oadr_report_desc *d = &r[i].d[k];
            raw(&w, "<oadr:oadrReportDescription>");
            el(&w, "ei:rID", d->rid);
            el(&w, "ei:reportType", d->report_type);
            item_base(&w, d->item);
            el(&w, "ei:readingType", d->reading_type);
            if (d->market_context) el(&w, "emix:marketContext", d->market_context);
            fv_oadr_fmt_duration(d->min_period_ms, d1);
            fv_oadr_fmt_duration(d->max_period_ms, d2);
            rawf(&w,
                 "<oadr:oadrSamplingRate><oadr:oadrMinPeriod>%s</oadr:oadrMinPeriod>"
                 "<oadr:oadrMaxPeriod>%s</oadr:oadrMaxPeriod>"
                 "<oadr:oadrOnChange>false</oadr:oadrOnChange></oadr:oadrSamplingRate>",
                 d1, d2);
            raw(&w, "</oadr:oadrReportDescription>");
        }
        raw(&w, "<ei:reportRequestID>0</ei:reportRequestID>");
        el(&w, "ei:reportSpecifierID", r[i].specifier_id);
        el(&w, "ei:reportName", r[i].name);
        el(&w, "ei:createdDateTime", t);
        raw(&w, "</oadr:oadrReport>");
    }
    ven_id_opt(&w, ven_id);
    return end(&w, "oadrRegisterReport");
}

int fv_oadr_build_update_report(struct fv_buf *out, const char *request_id, const char *ven_id,
                                const char *report_id, const char *report_request_id,
                                const char *specifier_id, const char *name, int64_t start_ms,
                                int64_t dur_ms, const struct fv_oadr_report_interval *iv, size_t n,
                                int64_t now_ms)
{
    struct w w;
    char t[32];
    fv_oadr_fmt_time(now_ms, t);
    begin(&w, out, "oadrUpdateReport");
    el(&w, "pyld:requestID", request_id);
    raw(&w, "<oadr:oadrReport>");
    dtstart(&w, start_ms);
    duration(&w, "xcal:duration", dur_ms);
    if (n) {
        raw(&w, "<strm:intervals>");
        for (size_t i = 0; i < n; i++) {
            raw(&w, "<ei:interval>");
            dtstart(&w, iv[i].start_ms);
            duration(&w, "xcal:duration", iv[i].dur_ms);
            for (size_t k = 0; k < iv[i].np; k++) {
                const struct fv_oadr_report_point *p = &iv[i].p[k];
                raw(&w, "<oadr:oadrReportPayload>");
                el(&w, "ei:rID", p->rid);
                if (p->status)
                    rawf(&w,
                         "<oadr:oadrPayloadResourceStatus><oadr:oadrOnline>%s</oadr:oadrOnline>"
                         "<oadr:oadrManualOverride>false</oadr:oadrManualOverride>"
                         "</oadr:oadrPayloadResourceStatus>",
                         p->value != 0 ? "true" : "false");
                else {
                    raw(&w, "<ei:payloadFloat>");
                    el_num(&w, "ei:value", p->value);
                    raw(&w, "</ei:payloadFloat>");
                }
                raw(&w, "<oadr:oadrDataQuality>Quality Good - Non Specific</oadr:oadrDataQuality>"
                        "</oadr:oadrReportPayload>");
            }
            raw(&w, "</ei:interval>");
        }
        raw(&w, "</strm:intervals>");
    }
    el(&w, "ei:eiReportID", report_id);
    el(&w, "ei:reportRequestID", report_request_id);
    el(&w, "ei:reportSpecifierID", specifier_id);
    el(&w, "ei:reportName", name);
    el(&w, "ei:createdDateTime", t);
    raw(&w, "</oadr:oadrReport>");
    ven_id_opt(&w, ven_id);
    return end(&w, "oadrUpdateReport");
}

static int pending_reports(const char *msg, struct fv_buf *out, int code, const char *desc,
                           const char *request_id, const char *ven_id, const char *const *pending,
                           size_t npending)
{
    struct w w;
    begin(&w, out, msg);
    ei_response(&w, code, desc, request_id);
    raw(&w, "<oadr:oadrPendingReports>");
    for (size_t i = 0; i < npending; i++)
        el(&w, "ei:reportRequestID", pending[i]);
    raw(&w, "</oadr:oadrPendingReports>");
    ven_id_opt(&w, ven_id);
    return end(&w, msg);
}

int fv_oadr_build_created_report(struct fv_buf *out, int code, const char *desc,
                                 const char *request_id, const char *ven_id,
                                 const char *const *pending, size_t npending)
{
    return pending_reports("oadrCreatedReport", out, code, desc, request_id, ven_id, pending,
                           npending);
}

int fv_oadr_build_canceled_report(struct fv_buf *out, int code, const char *desc,
                                  const char *request_id, const char *ven_id,
                                  const char *const *pending, size_t npending)
{
    return pending_reports("oadrCanceledReport", out, code, desc, request_id, ven_id, pending,
                           npending);
}

int fv_oadr_build_registered_report(struct fv_buf *out, int code, const char *desc,
                                    const char *request_id, const char *ven_id)
{
    struct w w;
    begin(&w, out, "oadrRegisteredReport");
    ei_response(&w, code, desc, request_id);
    ven_id_opt(&w, ven_id);
    return end(&w, "oadrRegisteredReport");
}

int fv_oadr_build_create_opt(struct fv_buf *out, const char *request_id, const char *opt_id,
                             int opt_in, const char *reason, const char *market_context,
                             const char *ven_id, const struct fv_oadr_period *p, size_t n,
                             const char *event_id, uint32_t mod, int64_t now_ms)
{
    struct w w;
    char t[32];
    fv_oadr_fmt_time(now_ms, t);
    begin(&w, out, "oadrCreateOpt");
    el(&w, "ei:optID", opt_id);
    rawf(&w, "<ei:optType>%s</ei:optType>", opt_in ? "optIn" : "optOut");
    el(&w, "ei:optReason", reason);
    if (market_context && market_context[0]) el(&w, "emix:marketContext", market_context);
    el(&w, "ei:venID", ven_id);
    if (n) {
        raw(&w, "<xcal:vavailability><xcal:components>");
        for (size_t i = 0; i < n; i++) {
            raw(&w, "<xcal:available><xcal:properties>");
            dtstart(&w, p[i].start_ms);
            duration(&w, "xcal:duration", p[i].dur_ms);
            raw(&w, "</xcal:properties></xcal:available>");
        }
        raw(&w, "</xcal:components></xcal:vavailability>");
    }
    el(&w, "ei:createdDateTime", t);
    el(&w, "pyld:requestID", request_id);
    if (event_id && event_id[0]) {
        raw(&w, "<ei:qualifiedEventID>");
        el(&w, "ei:eventID", event_id);
        rawf(&w, "<ei:modificationNumber>%" PRIu32 "</ei:modificationNumber>", mod);
        raw(&w, "</ei:qualifiedEventID>");
    }
    raw(&w, "<ei:eiTarget>");
    el(&w, "ei:venID", ven_id);
    raw(&w, "</ei:eiTarget>");
    return end(&w, "oadrCreateOpt");
}

int fv_oadr_build_cancel_opt(struct fv_buf *out, const char *request_id, const char *opt_id,
                             const char *ven_id)
{
    struct w w;
    begin(&w, out, "oadrCancelOpt");
    el(&w, "pyld:requestID", request_id);
    el(&w, "ei:optID", opt_id);
    el(&w, "ei:venID", ven_id);
    return end(&w, "oadrCancelOpt");
}
