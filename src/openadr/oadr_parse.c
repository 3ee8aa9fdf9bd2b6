/*
 * oadr_parse.c - the schema, validation and the messages a VEN receives (oadr.h M1-M3, M5).
 *
 * A payload is parsed by libxml2 without network access and without entity substitution;
 * one with a DOCTYPE is refused before validation (no entity can expand, nothing is fetched).
 * Validation runs before any field is read, so the reader below may rely on the schema's
 * structure (required elements present, enumerations valid) and only checks what the
 * schema cannot: lengths (M5), numbers, times.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>

#include "openadr/oadr.h"
#include "util/err.h"

#define NS_OADR "http://openadr.org/oadr-2.0b/2012/07"
#define NS_EI   "http://docs.oasis-open.org/ns/energyinterop/201110"
#define NS_PYLD "http://docs.oasis-open.org/ns/energyinterop/201110/payloads"
#define NS_EMIX "http://docs.oasis-open.org/ns/emix/2011/06"
#define NS_XCAL "urn:ietf:params:xml:ns:icalendar-2.0"
#define NS_STRM "urn:ietf:params:xml:ns:icalendar-2.0:stream"

struct fv_oadr_schema {
    xmlSchemaPtr schema;
};

/* ---- errors ------------------------------------------------------------------------------ */

struct errbuf {
    char *err;
    size_t len;
    int set;
};

static void first_error(void *arg, xmlErrorPtr e)
{
    struct errbuf *eb = arg;
    if (eb->set || e == NULL) return;
    eb->set = 1;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", e->message ? e->message : "error");
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    fv_seterr(eb->err, eb->len, "line %d: %s", e->line, msg);
}

/* ---- the schema -------------------------------------------------------------------------- */

int fv_oadr_schema_open(const char *dir, struct fv_oadr_schema **out, char *err, size_t errlen)
{
    *out = NULL;
    xmlInitParser();
    char path[4096];
    if (snprintf(path, sizeof path, "%s/oadr_20b.xsd", dir) >= (int)sizeof path) {
        fv_seterr(err, errlen, "openadr: schema_dir too long");
        return FV_EINVAL;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fv_seterr(err, errlen, "openadr: cannot read the schema %s: %s", path, strerror(errno));
        return FV_ENOENT;
    }
    fclose(f);
    struct fv_oadr_schema *s = calloc(1, sizeof *s);
    if (s == NULL) return FV_ENOMEM;
    struct errbuf eb = {err, errlen, 0};
    xmlSchemaParserCtxtPtr pc = xmlSchemaNewParserCtxt(path);
    if (pc) {
        xmlSchemaSetParserStructuredErrors(pc, first_error, &eb);
        s->schema = xmlSchemaParse(pc);
        xmlSchemaFreeParserCtxt(pc);
    }
    if (s->schema == NULL) {
        if (!eb.set) fv_seterr(err, errlen, "openadr: %s does not parse as a schema", path);
        free(s);
        return FV_EINVAL;
    }
    *out = s;
    return FV_OK;
}

void fv_oadr_schema_close(struct fv_oadr_schema *s)
{
    if (s == NULL) return;
    xmlSchemaFree(s->schema);
    free(s);
}

/* Parses and validates (M1); the document is the caller's to free. */
static xmlDocPtr load(const struct fv_oadr_schema *s, const char *xml, size_t len, char *err,
                      size_t errlen)
{
    if (len > FV_OADR_MAX_BYTES) {
        fv_seterr(err, errlen, "payload of %zu bytes, over the limit of %u", len,
                  FV_OADR_MAX_BYTES);
        return NULL;
    }
    xmlParserCtxtPtr pc = xmlNewParserCtxt();
    if (pc == NULL) {
        fv_seterr(err, errlen, "out of memory");
        return NULL;
    }
    xmlDocPtr doc = xmlCtxtReadMemory(pc, xml, (int)len, "payload.xml", NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (doc == NULL) {
        xmlErrorPtr e = xmlCtxtGetLastError(pc);
        struct errbuf eb = {err, errlen, 0};
        if (e)
            first_error(&eb, e);
        else
            fv_seterr(err, errlen, "not XML");
        xmlFreeParserCtxt(pc);
        return NULL;
    }
    xmlFreeParserCtxt(pc);
    if (doc->intSubset || doc->extSubset) {
        fv_seterr(err, errlen, "a DOCTYPE is not allowed in an OpenADR payload");
        xmlFreeDoc(doc);
        return NULL;
    }
    xmlSchemaValidCtxtPtr vc = xmlSchemaNewValidCtxt(s->schema);
    struct errbuf eb = {err, errlen, 0};
    int v = -1;
    if (vc) {
        xmlSchemaSetValidStructuredErrors(vc, first_error, &eb);
        v = xmlSchemaValidateDoc(vc, doc);
        xmlSchemaFreeValidCtxt(vc);
    }
    if (v != 0) {
        if (!eb.set) fv_seterr(err, errlen, "does not validate against the 2.0b schema");
        xmlFreeDoc(doc);
        return NULL;
    }
    return doc;
}

int fv_oadr_validate(const struct fv_oadr_schema *s, const char *xml, size_t len, char *err,
                     size_t errlen)
{
    xmlDocPtr doc = load(s, xml, len, err, errlen);
    if (doc == NULL) return FV_EPROTO;
    xmlFreeDoc(doc);
    return FV_OK;
}

/* ---- times (M3) ---------------------------------------------------------------------------- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int fv_oadr_parse_time(const char *s, int64_t *ms)
{
    int y, mo, d, h, mi, se, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &n) != 6 || n != 19)
        return FV_EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return FV_EINVAL;
    const char *p = s + n;
    int64_t frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; isdigit((unsigned char)*p); p++, digits++)
            if (digits < 3) frac = frac * 10 + (*p - '0');
        for (; digits < 3; digits++)
            frac *= 10;
    }
    if (*p == 'Z') p++;
    if (*p) return FV_EINVAL;
    *ms = ((days_from_civil(y, (unsigned)mo, (unsigned)d) * 24 + h) * 60 + mi) * 60000 +
          (int64_t)se * 1000 + frac;
    return FV_OK;
}

void fv_oadr_fmt_time(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int rest = (int)(ms - (int64_t)t * 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    if (rest)
        snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, rest);
    else
        snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int fv_oadr_parse_duration(const char *s, int64_t *ms)
{
    int neg = 0;
    if (*s == '+' || *s == '-') neg = *s++ == '-';
    if (*s++ != 'P' || *s == '\0') return FV_EINVAL;
    int in_time = 0, any = 0;
    double total = 0;
    while (*s) {
        if (*s == 'T') {
            if (in_time) return FV_EINVAL;
            in_time = 1;
            s++;
            continue;
        }
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno || !isfinite(v) || v < 0 || v > 1e9) return FV_EINVAL;
        double unit = 0;
        switch (*end) {
        case 'Y':
            unit = in_time ? 0 : 365 * 86400e3;
            break;
        case 'M':
            unit = in_time ? 60e3 : 30 * 86400e3;
            break;
        case 'W':
            unit = in_time ? 0 : 7 * 86400e3;
            break;
        case 'D':
            unit = in_time ? 0 : 86400e3;
            break;
        case 'H':
            unit = in_time ? 3600e3 : 0;
            break;
        case 'S':
            unit = in_time ? 1000 : 0;
            break;
        default:
            return FV_EINVAL;
        }
        if (unit == 0) return FV_EINVAL;
        total += v * unit;
        any = 1;
        s = end + 1;
    }
    if (!any || total > 9e15) return FV_EINVAL;
    *ms = (int64_t)llround(neg ? -total : total);
    return FV_OK;
}

void fv_oadr_fmt_duration(int64_t ms, char out[40])
{
    const char *sign = ms < 0 ? "-" : "";
    uint64_t a = ms < 0 ? (uint64_t)(-(ms + 1)) + 1 : (uint64_t)ms;
    uint64_t h = a / 3600000, m = a / 60000 % 60, s = a / 1000 % 60, f = a % 1000;
    int n = snprintf(out, 40, "%sPT", sign);
    if (h) n += snprintf(out + n, 40 - (size_t)n, "%" PRIu64 "H", h);
    if (m) n += snprintf(out + n, 40 - (size_t)n, "%" PRIu64 "M", m);
    if (f)
        snprintf(out + n, 40 - (size_t)n, "%" PRIu64 ".%03" PRIu64 "S", s, f);
    else if (s || (!h && !m))
        snprintf(out + n, 40 - (size_t)n, "%" PRIu64 "S", s);
}

const char *fv_oadr_status_name(enum fv_oadr_status s)
{
    static const char *const names[] = {"none", "far", "near", "active", "completed", "cancelled"};
    return (unsigned)s < 6 ? names[s] : "none";
}

/* ---- reading the tree ------------------------------------------------------------------------ */

struct rd {
    char *err;
    size_t errlen;
    int rc;
};

static int is(const xmlNode *n, const char *ns, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
           strcmp((const char *)n->ns->href, ns) == 0 && strcmp((const char *)n->name, name) == 0;
}

static xmlNode *child(const xmlNode *n, const char *ns, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (is(c, ns, name)) return c;
    return NULL;
}

static xmlNode *first_el(const xmlNode *n)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE) return c;
    return NULL;
}

static xmlNode *path(const xmlNode *n, const char *ns1, const char *n1, const char *ns2,
                     const char *n2)
{
    xmlNode *c = child(n, ns1, n1);
    return ns2 ? child(c, ns2, n2) : c;
}

/* The trimmed text of n into out (M5: too long fails the read). Absent: "". */
static void text(struct rd *r, const xmlNode *n, char *out, size_t cap)
{
    out[0] = '\0';
    if (n == NULL || r->rc) return;
    xmlChar *t = xmlNodeGetContent(n);
    if (t == NULL) return;
    const char *s = (const char *)t;
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (len >= cap) {
        fv_seterr(r->err, r->errlen, "<%s> too long: %zu bytes, at most %zu", (const char *)n->name,
                  len, cap - 1);
        r->rc = FV_EPROTO;
    } else {
        memcpy(out, s, len);
        out[len] = '\0';
    }
    xmlFree(t);
}

static int64_t time_of(struct rd *r, const xmlNode *n)
{
    char s[64];
    text(r, n, s, sizeof s);
    int64_t ms = 0;
    if (r->rc == FV_OK && s[0] && fv_oadr_parse_time(s, &ms) != FV_OK) {
        fv_seterr(r->err, r->errlen, "bad date-time '%s'", s);
        r->rc = FV_EPROTO;
    }
    return ms;
}

/* A DurationPropType element (its xcal:duration child). */
static int64_t dur_of(struct rd *r, const xmlNode *prop)
{
    char s[64];
    text(r, child(prop, NS_XCAL, "duration"), s, sizeof s);
    int64_t ms = 0;
    if (r->rc == FV_OK && s[0] && fv_oadr_parse_duration(s, &ms) != FV_OK) {
        fv_seterr(r->err, r->errlen, "bad duration '%s'", s);
        r->rc = FV_EPROTO;
    }
    return ms;
}

static double num_of(struct rd *r, const xmlNode *n)
{
    char s[64];
    text(r, n, s, sizeof s);
    char *end;
    double v = strtod(s, &end);
    if (r->rc == FV_OK && (end == s || *end || !isfinite(v))) {
        fv_seterr(r->err, r->errlen, "bad number '%s'", s);
        r->rc = FV_EPROTO;
    }
    return v;
}

static uint32_t uint_of(struct rd *r, const xmlNode *n)
{
    char s[32];
    text(r, n, s, sizeof s);
    return (uint32_t)strtoul(s, NULL, 10); /* xs:unsignedInt: the schema checked it */
}

static void *grow(struct rd *r, void *p, size_t n, size_t size)
{
    if (r->rc) return NULL;
    void *q = realloc(p, (n + 1) * size);
    if (q == NULL) {
        r->rc = FV_ENOMEM;
        fv_seterr(r->err, r->errlen, "out of memory");
        return NULL;
    }
    memset((char *)q + n * size, 0, size);
    return q;
}

static void id_push(struct rd *r, fv_oadr_id **arr, size_t *n, const xmlNode *node)
{
    fv_oadr_id *q = grow(r, *arr, *n, sizeof **arr);
    if (q == NULL) return;
    *arr = q;
    text(r, node, q[*n], sizeof q[*n]);
    (*n)++;
}

static void read_target(struct rd *r, const xmlNode *t, struct fv_oadr_target *out)
{
    for (xmlNode *c = t ? t->children : NULL; c && r->rc == FV_OK; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (is(c, NS_EI, "venID"))
            id_push(r, &out->ven_ids, &out->nven, c);
        else if (is(c, NS_EI, "resourceID"))
            id_push(r, &out->resource_ids, &out->nresource, c);
        else if (is(c, NS_EI, "groupID"))
            id_push(r, &out->group_ids, &out->ngroup, c);
        else if (is(c, NS_EI, "partyID"))
            id_push(r, &out->party_ids, &out->nparty, c);
        else
            out->nother++;
    }
}

static void read_signal(struct rd *r, const xmlNode *sn, const struct fv_oadr_event *e,
                        struct fv_oadr_signal *s)
{
    text(r, child(sn, NS_EI, "signalName"), s->name, sizeof s->name);
    text(r, child(sn, NS_EI, "signalType"), s->type, sizeof s->type);
    text(r, child(sn, NS_EI, "signalID"), s->id, sizeof s->id);
    xmlNode *item = NULL;
    /* The itemBase (any element substituting for it) sits after signalID. */
    for (xmlNode *c = child(sn, NS_EI, "signalID"); c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && !is(c, NS_EI, "signalID") &&
            !is(c, NS_EI, "currentValue")) {
            item = c;
            break;
        }
    for (xmlNode *c = item ? item->children : NULL; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (strcmp((const char *)c->name, "itemUnits") == 0) text(r, c, s->units, sizeof s->units);
        if (strcmp((const char *)c->name, "siScaleCode") == 0)
            text(r, c, s->scale, sizeof s->scale);
    }
    xmlNode *cv = path(sn, NS_EI, "currentValue", NS_EI, "payloadFloat");
    if (cv) {
        s->has_current = 1;
        s->current = num_of(r, child(cv, NS_EI, "value"));
    }
    int64_t at = e->start_ms;
    xmlNode *ivs = child(sn, NS_STRM, "intervals");
    for (xmlNode *c = ivs ? ivs->children : NULL; c && r->rc == FV_OK; c = c->next) {
        if (!is(c, NS_EI, "interval")) continue;
        struct fv_oadr_interval *q = grow(r, s->iv, s->niv, sizeof *s->iv);
        if (q == NULL) return;
        s->iv = q;
        struct fv_oadr_interval *iv = &q[s->niv++];
        xmlNode *ds = path(c, NS_XCAL, "dtstart", NS_XCAL, "date-time");
        iv->start_ms = ds ? time_of(r, ds) : at;
        xmlNode *du = child(c, NS_XCAL, "duration");
        iv->dur_ms = du ? dur_of(r, du) : 0;
        at = iv->start_ms + iv->dur_ms;
        xmlNode *pf = path(path(c, NS_EI, "signalPayload", NULL, NULL), NS_EI, "payloadFloat",
                           NS_EI, "value");
        if (pf == NULL) {
            fv_seterr(r->err, r->errlen, "signal %s: an interval without a payloadFloat", s->id);
            r->rc = FV_EPROTO;
            return;
        }
        iv->value = num_of(r, pf);
    }
}

static void read_event(struct rd *r, const xmlNode *oe, struct fv_oadr_event *e)
{
    xmlNode *ev = child(oe, NS_EI, "eiEvent");
    char rr[16];
    text(r, child(oe, NS_OADR, "oadrResponseRequired"), rr, sizeof rr);
    e->response_required = strcmp(rr, "never") != 0;
    xmlNode *d = child(ev, NS_EI, "eventDescriptor");
    text(r, child(d, NS_EI, "eventID"), e->id, sizeof e->id);
    e->mod = uint_of(r, child(d, NS_EI, "modificationNumber"));
    e->priority = uint_of(r, child(d, NS_EI, "priority"));
    text(r, path(d, NS_EI, "eiMarketContext", NS_EMIX, "marketContext"), e->market_context,
         sizeof e->market_context);
    e->created_ms = time_of(r, child(d, NS_EI, "createdDateTime"));
    char st[16], test[16];
    text(r, child(d, NS_EI, "eventStatus"), st, sizeof st);
    for (int k = 0; k < 6; k++)
        if (strcmp(st, fv_oadr_status_name((enum fv_oadr_status)k)) == 0)
            e->status = (enum fv_oadr_status)k;
    xmlNode *tn = child(d, NS_EI, "testEvent");
    text(r, tn, test, sizeof test);
    e->test = tn && strcmp(test, "false") != 0 && strcmp(test, "False") != 0;
    xmlNode *pr =
        path(path(ev, NS_EI, "eiActivePeriod", NULL, NULL), NS_XCAL, "properties", NULL, NULL);
    e->start_ms = time_of(r, path(pr, NS_XCAL, "dtstart", NS_XCAL, "date-time"));
    e->dur_ms = dur_of(r, child(pr, NS_XCAL, "duration"));
    xmlNode *x;
    if ((x = child(pr, NS_EI, "x-eiNotification"))) e->notification_ms = dur_of(r, x);
    if ((x = child(pr, NS_EI, "x-eiRampUp"))) e->rampup_ms = dur_of(r, x);
    if ((x = child(pr, NS_EI, "x-eiRecovery"))) e->recovery_ms = dur_of(r, x);
    xmlNode *sigs = child(ev, NS_EI, "eiEventSignals");
    for (xmlNode *c = sigs ? sigs->children : NULL; c && r->rc == FV_OK; c = c->next) {
        if (!is(c, NS_EI, "eiEventSignal")) continue;
        struct fv_oadr_signal *q = grow(r, e->sig, e->nsig, sizeof *e->sig);
        if (q == NULL) return;
        e->sig = q;
        read_signal(r, c, e, &q[e->nsig++]);
    }
    read_target(r, child(ev, NS_EI, "eiTarget"), &e->target);
}

static void read_report_request(struct rd *r, const xmlNode *n, struct fv_oadr_report_request *q)
{
    text(r, child(n, NS_EI, "reportRequestID"), q->request_id, sizeof q->request_id);
    xmlNode *sp = child(n, NS_EI, "reportSpecifier");
    text(r, child(sp, NS_EI, "reportSpecifierID"), q->specifier_id, sizeof q->specifier_id);
    q->granularity_ms = dur_of(r, child(sp, NS_XCAL, "granularity"));
    q->report_back_ms = dur_of(r, child(sp, NS_EI, "reportBackDuration"));
    xmlNode *ri = path(child(sp, NS_EI, "reportInterval"), NS_XCAL, "properties", NULL, NULL);
    if (ri) {
        q->has_interval = 1;
        q->start_ms = time_of(r, path(ri, NS_XCAL, "dtstart", NS_XCAL, "date-time"));
        q->dur_ms = dur_of(r, child(ri, NS_XCAL, "duration"));
    }
    for (xmlNode *c = sp ? sp->children : NULL; c && r->rc == FV_OK; c = c->next)
        if (is(c, NS_EI, "specifierPayload"))
            id_push(r, &q->rids, &q->nrid, child(c, NS_EI, "rID"));
}

static const struct {
    const char *name;
    enum fv_oadr_kind kind;
} kinds[] = {
    {"oadrDistributeEvent", FV_OADR_DISTRIBUTE_EVENT},
    {"oadrCreatedPartyRegistration", FV_OADR_CREATED_PARTY_REGISTRATION},
    {"oadrCancelPartyRegistration", FV_OADR_CANCEL_PARTY_REGISTRATION},
    {"oadrCanceledPartyRegistration", FV_OADR_CANCELED_PARTY_REGISTRATION},
    {"oadrRequestReregistration", FV_OADR_REQUEST_REREGISTRATION},
    {"oadrCreateReport", FV_OADR_CREATE_REPORT},
    {"oadrRegisterReport", FV_OADR_REGISTER_REPORT},
    {"oadrRegisteredReport", FV_OADR_REGISTERED_REPORT},
    {"oadrCancelReport", FV_OADR_CANCEL_REPORT},
    {"oadrUpdatedReport", FV_OADR_UPDATED_REPORT},
    {"oadrCreatedOpt", FV_OADR_CREATED_OPT},
    {"oadrCanceledOpt", FV_OADR_CANCELED_OPT},
    {"oadrResponse", FV_OADR_RESPONSE},
};

int fv_oadr_parse(const struct fv_oadr_schema *s, const char *xml, size_t len,
                  struct fv_oadr_msg *out, int *code, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (code) *code = FV_OADR_OK;
    xmlDocPtr doc = load(s, xml, len, err, errlen);
    if (doc == NULL) {
        if (code) *code = FV_OADR_INVALID_DATA;
        return FV_EPROTO;
    }
    struct rd r = {err, errlen, FV_OK};
    xmlNode *m = first_el(child(xmlDocGetRootElement(doc), NS_OADR, "oadrSignedObject"));
    snprintf(out->name, sizeof out->name, "%s", m ? (const char *)m->name : "");
    out->kind = FV_OADR_OTHER;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(out->name, kinds[i].name) == 0) out->kind = kinds[i].kind;
    xmlNode *resp = child(m, NS_EI, "eiResponse");
    if (resp) {
        char c[8];
        out->has_response = 1;
        text(&r, child(resp, NS_EI, "responseCode"), c, sizeof c);
        out->response_code = atoi(c);
        text(&r, child(resp, NS_EI, "responseDescription"), out->response_desc,
             sizeof out->response_desc);
        text(&r, child(resp, NS_PYLD, "requestID"), out->request_id, sizeof out->request_id);
    }
    if (child(m, NS_PYLD, "requestID"))
        text(&r, child(m, NS_PYLD, "requestID"), out->request_id, sizeof out->request_id);
    text(&r, child(m, NS_EI, "vtnID"), out->vtn_id, sizeof out->vtn_id);
    text(&r, child(m, NS_EI, "venID"), out->ven_id, sizeof out->ven_id);
    text(&r, child(m, NS_EI, "registrationID"), out->registration_id, sizeof out->registration_id);
    text(&r, child(m, NS_EI, "optID"), out->opt_id, sizeof out->opt_id);
    xmlNode *pf = child(m, NS_OADR, "oadrRequestedOadrPollFreq");
    if (pf) out->poll_freq_ms = dur_of(&r, pf);
    for (xmlNode *c = m ? m->children : NULL; c && r.rc == FV_OK; c = c->next) {
        if (out->kind == FV_OADR_DISTRIBUTE_EVENT && is(c, NS_OADR, "oadrEvent")) {
            struct fv_oadr_event *q = grow(&r, out->ev, out->nev, sizeof *out->ev);
            if (q == NULL) break;
            out->ev = q;
            read_event(&r, c, &q[out->nev++]);
        } else if ((out->kind == FV_OADR_CREATE_REPORT || out->kind == FV_OADR_REGISTERED_REPORT) &&
                   is(c, NS_OADR, "oadrReportRequest")) {
            struct fv_oadr_report_request *q = grow(&r, out->rr, out->nrr, sizeof *out->rr);
            if (q == NULL) break;
            out->rr = q;
            read_report_request(&r, c, &q[out->nrr++]);
        } else if (out->kind == FV_OADR_CANCEL_REPORT && is(c, NS_EI, "reportRequestID")) {
            id_push(&r, &out->cancel_rr, &out->ncancel_rr, c);
        } else if (is(c, NS_PYLD, "reportToFollow")) {
            char b[8];
            text(&r, c, b, sizeof b);
            out->report_to_follow = strcmp(b, "true") == 0 || strcmp(b, "1") == 0;
        }
    }
    xmlFreeDoc(doc);
    if (r.rc && code) *code = r.rc == FV_ENOMEM ? FV_OADR_OTHER_ERROR : FV_OADR_INVALID_DATA;
    return r.rc;
}

static void target_free(struct fv_oadr_target *t)
{
    free(t->ven_ids);
    free(t->resource_ids);
    free(t->group_ids);
    free(t->party_ids);
}

void fv_oadr_msg_free(struct fv_oadr_msg *m)
{
    if (m == NULL) return;
    for (size_t i = 0; i < m->nev; i++) {
        for (size_t k = 0; k < m->ev[i].nsig; k++)
            free(m->ev[i].sig[k].iv);
        free(m->ev[i].sig);
        target_free(&m->ev[i].target);
    }
    free(m->ev);
    for (size_t i = 0; i < m->nrr; i++)
        free(m->rr[i].rids);
    free(m->rr);
    free(m->cancel_rr);
    memset(m, 0, sizeof *m);
}
