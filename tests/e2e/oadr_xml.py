"""oadr_xml - OpenADR 2.0b XML for the tests: namespaces, an element builder, xcal duration and
date-time formats, schema validation with `xmllint --schema` (libxml2-utils) against the
repository's copy of the official schema (share/openadr-2.0b/oadr_20b.xsd), and readers for
the messages a VEN sends (event responses, report values, opt schedules).

Used by the test VTN (oadr_vtn.py) and by the tests that drive the VEN; written from the 2.0b
schema, independently of the server's C code. Python standard library only. Every function
here may be called from any thread (the in-process validator has its own lock)."""
import calendar
import ctypes
import ctypes.util
import datetime
import os
import re
import subprocess
import tempfile
import threading
import xml.etree.ElementTree as ET

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCHEMA_DIR = os.path.join(REPO, "share", "openadr-2.0b")
SCHEMA = os.path.join(SCHEMA_DIR, "oadr_20b.xsd")

NS = {
    "oadr": "http://openadr.org/oadr-2.0b/2012/07",
    "ei": "http://docs.oasis-open.org/ns/energyinterop/201110",
    "pyld": "http://docs.oasis-open.org/ns/energyinterop/201110/payloads",
    "emix": "http://docs.oasis-open.org/ns/emix/2011/06",
    "xcal": "urn:ietf:params:xml:ns:icalendar-2.0",
    "strm": "urn:ietf:params:xml:ns:icalendar-2.0:stream",
    "power": "http://docs.oasis-open.org/ns/emix/2011/06/power",
    "scale": "http://docs.oasis-open.org/ns/emix/2011/06/siscale",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
for _p, _u in NS.items():
    ET.register_namespace(_p, _u)


def q(tag):
    """'ei:eventID' -> '{http://...}eventID' (ElementTree's qualified name)."""
    prefix, local = tag.split(":", 1)
    return "{%s}%s" % (NS[prefix], local)


def local(tag):
    """'{http://...}eventID' -> 'eventID'."""
    return tag.rsplit("}", 1)[-1]


def E(tag, *content, attrs=None):
    """Builds an element: `content` items are elements (appended), None (skipped), lists or
    tuples (flattened) or scalars (the element's text; bools become true/false)."""
    el = ET.Element(q(tag), {q(k): str(v) for k, v in (attrs or {}).items()})

    def add(c):
        if c is None:
            return
        if isinstance(c, (list, tuple)):
            for x in c:
                add(x)
        elif isinstance(c, ET.Element):
            el.append(c)
        elif isinstance(c, bool):
            el.text = "true" if c else "false"
        else:
            el.text = str(c)

    add(content)
    return el


def payload(msg):
    """Wraps one message element in oadrPayload/oadrSignedObject; returns UTF-8 bytes."""
    root = E("oadr:oadrPayload",
             E("oadr:oadrSignedObject", msg, attrs={"oadr:Id": "oadrSignedObject"}))
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def message(data):
    """Parses a payload: returns (root, message element or None, message name or None). Raises
    ET.ParseError when `data` is not XML at all."""
    root = ET.fromstring(data)
    if root.tag != q("oadr:oadrPayload"):
        return root, None, None
    so = root.find("oadr:oadrSignedObject", NS)
    if so is None or len(so) == 0:
        return root, None, None
    return root, so[0], local(so[0].tag)


def text(el, path, default=None):
    """The stripped text at `path` (ElementTree path with the NS prefixes) under `el`."""
    if el is None:
        return default
    x = el.find(path, NS)
    if x is None or x.text is None:
        return default
    return x.text.strip()


# -- xcal durations and date-times ------------------------------------------------------------

def fmt_dur(seconds):
    """Seconds -> xcal duration in its usual compact form: 3600 -> PT1H, 90 -> PT1M30S,
    0 -> PT0S, 86400 -> P1D."""
    s = int(round(seconds))
    sign = "-" if s < 0 else ""
    s = abs(s)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    out = sign + "P" + ("%dD" % d if d else "")
    if h or m or s or not d:
        out += "T" + ("%dH" % h if h else "") + ("%dM" % m if m else "") + \
            ("%dS" % s if s or not (h or m) else "")
    return out


_DUR = re.compile(r"^([+-])?P(?:(\d+)W)?(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?"
                  r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_dur(s):
    """xcal duration -> seconds (years and months count 365 and 30 days). ValueError if bad."""
    m = _DUR.match((s or "").strip())
    if not m or s.strip() in ("P", "PT", "+P", "-P"):
        raise ValueError("bad xcal duration %r" % s)
    sign, w, y, mo, d, h, mi, sec = m.groups()
    total = (int(w or 0) * 7 + int(y or 0) * 365 + int(mo or 0) * 30 + int(d or 0)) * 86400 + \
        int(h or 0) * 3600 + int(mi or 0) * 60 + float(sec or 0)
    return -total if sign == "-" else total


def fmt_dt(epoch):
    """Unix seconds -> xcal date-time in UTC, e.g. 2026-12-02T13:20:00Z."""
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def parse_dt(s):
    """xcal date-time -> Unix seconds (float); a value without a zone is UTC."""
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    dt = datetime.datetime.fromisoformat(s)
    if dt.tzinfo is None:
        return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6
    return dt.timestamp()


# -- validation -------------------------------------------------------------------------------

class _Libxml2:
    """libxml2's schema validator (the library xmllint runs), loaded with ctypes, with the
    schema parsed once: validating a message in-process takes a millisecond where running
    xmllint (which parses the 7,500-line schema each time) takes 60 ms or more. xmllint itself
    still produces the error messages of an invalid message, and the self-test checks that both
    agree."""

    _ERR = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
    _OPTS = 32 | 64 | 2048  # XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NONET

    def __init__(self, schema):
        lib = ctypes.CDLL(ctypes.util.find_library("xml2") or "libxml2.so.2")
        vp, err = ctypes.c_void_p, self._ERR
        for name, res, args in (
                ("xmlSchemaNewParserCtxt", ctypes.c_void_p, [ctypes.c_char_p]),
                ("xmlSchemaSetParserStructuredErrors", None, [vp, err, vp]),
                ("xmlSchemaParse", ctypes.c_void_p, [ctypes.c_void_p]),
                ("xmlSchemaFreeParserCtxt", None, [ctypes.c_void_p]),
                ("xmlSchemaNewValidCtxt", ctypes.c_void_p, [ctypes.c_void_p]),
                ("xmlSchemaSetValidStructuredErrors", None, [vp, err, vp]),
                ("xmlSchemaFreeValidCtxt", None, [ctypes.c_void_p]),
                ("xmlReadMemory", ctypes.c_void_p,
                 [ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]),
                ("xmlSchemaValidateDoc", ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p]),
                ("xmlFreeDoc", None, [ctypes.c_void_p])):
            f = getattr(lib, name)
            f.restype, f.argtypes = res, args
        self.lib, self.quiet, self.lock = lib, self._ERR(lambda ctx, err: None), threading.Lock()
        pctx = lib.xmlSchemaNewParserCtxt(schema.encode())
        if not pctx:
            raise OSError("libxml2: cannot read " + schema)
        lib.xmlSchemaSetParserStructuredErrors(pctx, self.quiet, None)
        self.schema = lib.xmlSchemaParse(pctx)
        lib.xmlSchemaFreeParserCtxt(pctx)
        if not self.schema:
            raise OSError("libxml2: cannot parse " + schema)

    def valid(self, data):
        lib = self.lib
        with self.lock:
            doc = lib.xmlReadMemory(data, len(data), b"msg.xml", None, self._OPTS)
            if not doc:
                return False
            v = lib.xmlSchemaNewValidCtxt(self.schema)
            lib.xmlSchemaSetValidStructuredErrors(v, self.quiet, None)
            r = lib.xmlSchemaValidateDoc(v, doc)
            lib.xmlSchemaFreeValidCtxt(v)
            lib.xmlFreeDoc(doc)
            return r == 0


_validators = {}
_validators_lock = threading.Lock()


def xmllint(data, schema=SCHEMA):
    """Validates bytes with `xmllint --noout --schema` (libxml2-utils): (valid, errors)."""
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        f.write(data)
        f.flush()
        r = subprocess.run(["xmllint", "--noout", "--nonet", "--schema", schema, f.name],
                           capture_output=True, text=True, timeout=30)
    errors = [ln.replace(f.name, "msg") for ln in r.stderr.splitlines()
              if ln.strip() and not ln.endswith(" validates")]
    return r.returncode == 0, errors


def validate(data, schema=SCHEMA):
    """Validates bytes against the 2.0b schema. Returns (valid, errors), errors being xmllint's
    messages (empty when valid). libxml2 in-process decides (see _Libxml2) when it can be
    loaded, else xmllint; an invalid message always goes through xmllint too, for its messages.
    Raises FileNotFoundError when xmllint is not installed (scripts/deps.sh installs
    libxml2-utils): a test must not pass unchecked."""
    with _validators_lock:
        if schema not in _validators:
            try:
                _validators[schema] = _Libxml2(schema)
            except (OSError, AttributeError):
                _validators[schema] = None
        v = _validators[schema]
    if v is not None and v.valid(data):
        return True, []
    ok, errors = xmllint(data, schema)
    if ok and v is not None:  # the two disagree: report it rather than pick one
        return False, ["libxml2 (in-process) rejects what xmllint accepts"]
    return ok, errors


# -- pieces of messages -----------------------------------------------------------------------

def ei_response(code=200, description="OK", request_id=""):
    return E("ei:eiResponse", E("ei:responseCode", str(code)),
             E("ei:responseDescription", description) if description else None,
             E("pyld:requestID", request_id or ""))


def duration_prop(tag, seconds):
    """<tag><xcal:duration>PT..</xcal:duration></tag> (xcal:DurationPropType)."""
    return E(tag, E("xcal:duration", fmt_dur(seconds)))


def dtstart(epoch):
    return E("xcal:dtstart", E("xcal:date-time", fmt_dt(epoch)))


def power_real_kw():
    """emix itemBase for a LOAD_DISPATCH setpoint or a report in kW."""
    return E("power:powerReal", E("power:itemDescription", "RealPower"),
             E("power:itemUnits", "W"), E("scale:siScaleCode", "k"),
             E("power:powerAttributes", E("power:hertz", "50"), E("power:voltage", "230"),
                E("power:ac", True)))


# -- readers for what a VEN sends -------------------------------------------------------------

def _msg_el(msg_or_xml):
    """Accepts a Msg (has .xml), bytes or str; returns (message element, name)."""
    data = getattr(msg_or_xml, "xml", msg_or_xml)
    if isinstance(data, str):
        data = data.encode("utf-8")
    _, el, name = message(data)
    return el, name


def event_responses(msg):
    """The eventResponses of an oadrCreatedEvent, as dicts: event_id, mod, opt (optIn/optOut),
    code, description (the VEN's reason, if any), request_id."""
    el, _ = _msg_el(msg)
    out = []
    if el is None:
        return out
    for r in el.iterfind("pyld:eiCreatedEvent/ei:eventResponses/ei:eventResponse", NS):
        mod = text(r, "ei:qualifiedEventID/ei:modificationNumber")
        out.append({"event_id": text(r, "ei:qualifiedEventID/ei:eventID"),
                    "mod": int(mod) if mod is not None and mod.isdigit() else None,
                    "opt": text(r, "ei:optType"), "code": text(r, "ei:responseCode"),
                    "description": text(r, "ei:responseDescription"),
                    "request_id": text(r, "pyld:requestID")})
    return out


def opt_of(msg, event_id):
    """("optIn"|"optOut", reason or None) that an oadrCreatedEvent gives for `event_id` (the
    reason is the eventResponse's responseDescription), or None when it does not answer it."""
    for r in event_responses(msg):
        if r["event_id"] == event_id:
            return r["opt"], r["description"] or None
    return None


def report_intervals(msg):
    """Every data point of an oadrUpdateReport (or a payload-carrying oadrRegisterReport), as
    dicts: report_request_id, report_specifier_id, report_name, rid, dtstart (Unix s or None),
    duration (s or None), value (float for payloadFloat; for oadrPayloadResourceStatus a dict
    online / manual_override), quality."""
    el, _ = _msg_el(msg)
    out = []
    if el is None:
        return out
    for rep in el.iterfind("oadr:oadrReport", NS):
        base = {"report_request_id": text(rep, "ei:reportRequestID"),
                "report_specifier_id": text(rep, "ei:reportSpecifierID"),
                "report_name": text(rep, "ei:reportName")}
        for iv in rep.iterfind("strm:intervals/ei:interval", NS):
            start = text(iv, "xcal:dtstart/xcal:date-time")
            dur = text(iv, "xcal:duration/xcal:duration")
            for p in iv.iterfind("oadr:oadrReportPayload", NS):
                f = text(p, "ei:payloadFloat/ei:value")
                if f is not None:
                    value = float(f)
                else:
                    st = p.find("oadr:oadrPayloadResourceStatus", NS)
                    value = None if st is None else {
                        "online": text(st, "oadr:oadrOnline") == "true",
                        "manual_override": text(st, "oadr:oadrManualOverride") == "true"}
                out.append(dict(base, rid=text(p, "ei:rID"),
                                dtstart=parse_dt(start) if start else None,
                                duration=parse_dur(dur) if dur else None, value=value,
                                quality=text(p, "oadr:oadrDataQuality")))
    return out


def report_values(msg):
    """{rID: [values in the order sent]} of an oadrUpdateReport (see report_intervals)."""
    out = {}
    for p in report_intervals(msg):
        out.setdefault(p["rid"], []).append(p["value"])
    return out


def report_metadata(msg):
    """The reports an oadrRegisterReport describes: {reportSpecifierID: {"name": reportName,
    "rids": {rID: {"type", "reading", "unit" (itemBase element name), "min_period",
    "max_period" (s)}}}}."""
    el, _ = _msg_el(msg)
    out = {}
    if el is None:
        return out
    for rep in el.iterfind("oadr:oadrReport", NS):
        rids = {}
        for d in rep.iterfind("oadr:oadrReportDescription", NS):
            unit = None
            for c in d:
                if local(c.tag) not in ("rID", "reportSubject", "reportDataSource", "reportType",
                                        "readingType", "marketContext", "oadrSamplingRate"):
                    unit = local(c.tag)
            mn = text(d, "oadr:oadrSamplingRate/oadr:oadrMinPeriod")
            mx = text(d, "oadr:oadrSamplingRate/oadr:oadrMaxPeriod")
            rids[text(d, "ei:rID")] = {
                "type": text(d, "ei:reportType"), "reading": text(d, "ei:readingType"),
                "unit": unit, "min_period": parse_dur(mn) if mn else None,
                "max_period": parse_dur(mx) if mx else None}
        out[text(rep, "ei:reportSpecifierID")] = {"name": text(rep, "ei:reportName"), "rids": rids}
    return out


def opt_schedule(msg):
    """An oadrCreateOpt as a dict: opt_id, opt (optIn/optOut), reason, market_context, ven_id,
    periods [(start Unix s, duration s)], event_id, event_mod, request_id, created."""
    el, _ = _msg_el(msg)
    periods = []
    for a in el.iterfind("xcal:vavailability/xcal:components/xcal:available", NS):
        st = text(a, "xcal:properties/xcal:dtstart/xcal:date-time")
        du = text(a, "xcal:properties/xcal:duration/xcal:duration")
        periods.append((parse_dt(st) if st else None, parse_dur(du) if du else None))
    mod = text(el, "ei:qualifiedEventID/ei:modificationNumber")
    created = text(el, "ei:createdDateTime")
    return {"opt_id": text(el, "ei:optID"), "opt": text(el, "ei:optType"),
            "reason": text(el, "ei:optReason"), "market_context": text(el, "emix:marketContext"),
            "ven_id": text(el, "ei:venID"), "periods": periods,
            "event_id": text(el, "ei:qualifiedEventID/ei:eventID"),
            "event_mod": int(mod) if mod and mod.isdigit() else None,
            "request_id": text(el, "pyld:requestID"),
            "created": parse_dt(created) if created else None}
