"""oadr_vtn - a test VTN (the utility's server) speaking OpenADR 2.0b simpleHttp, for the
end-to-end tests of fleetvault's VEN (issue 11). Python standard library only, plus the
`openssl` CLI (its PKI) and libxml2 / `xmllint` from libxml2-utils (schema validation).

    with TestVTN(workdir, poll_s=1) as vtn:        # CA, VTN server cert, VEN client cert
        cfg = {"url": vtn.url, "cert": vtn.ven_cert, "key": vtn.ven_key, "ca": vtn.ca}
        vtn.queue_event("ev1", "http://elrp.example/a4", time.time() + 60, 3600, level=2)
        m = vtn.wait_for("oadrCreatedEvent", lambda m: opt_of(m, "ev1"))

Transport. HTTPS on 127.0.0.1 (a free port), TLS 1.2+ with the client certificate REQUIRED
and verified against the test CA (a client without one, or with one from another CA, fails
the handshake and is counted in `vtn.refused`). The base URL is
https://127.0.0.1:PORT/OpenADR2/Simple/2.0b; the VEN POSTs (application/xml) to BASE/
EiRegisterParty, OadrPoll, EiEvent, EiReport and EiOpt. Every POST is answered HTTP 200 with
an oadrPayload, except a body that is not XML at all (HTTP 400, empty body) and an unknown
path (HTTP 404). Push: `vtn.push(ven_base_url, xml)` POSTs to the VEN's BASE/EiEvent or
BASE/EiReport (chosen from the message) over mutual TLS with the VTN's certificate and
processes the VEN's answer as if it had been posted.

What it implements (the VTN side of the 2.0b profile; one VEN per TestVTN):
  EiRegisterParty  oadrQueryRegistration -> oadrCreatedPartyRegistration (vtnID, profiles 2.0b
                   simpleHttp, oadrRequestedOadrPollFreq; registrationID/venID if registered);
                   oadrCreatePartyRegistration -> oadrCreatedPartyRegistration with a new
                   registrationID, or the same one when the VEN re-registers with it (the
                   venID stays the same for the life of the TestVTN: a VTN knows a VEN by its
                   certificate); oadrCancelPartyRegistration ->
                   oadrCanceledPartyRegistration; oadrCanceledPartyRegistration (the VEN's
                   answer to cancel_registration()) -> oadrResponse.
  OadrPoll         oadrPoll -> the next queued message, else oadrResponse 200. Queued:
                   oadrDistributeEvent (carrying every event the VTN knows, cancelled ones
                   included, built when delivered), oadrCreateReport, oadrRegisterReport (the
                   VTN's own, empty), oadrCancelPartyRegistration (the registration ends when
                   it is delivered).
  EiEvent          oadrCreatedEvent -> oadrResponse; records optIn/optOut per event and
                   modification (vtn.opts); oadrRequestEvent -> oadrDistributeEvent.
  EiReport         oadrRegisterReport -> oadrRegisteredReport (metadata kept in
                   vtn.ven_reports); oadrCreatedReport -> oadrResponse (acknowledges the
                   delivered report requests); oadrUpdateReport -> oadrUpdatedReport;
                   oadrCanceledReport and oadrRegisteredReport -> oadrResponse.
  EiOpt            oadrCreateOpt -> oadrCreatedOpt (vtn.opt_schedules[optID]);
                   oadrCancelOpt -> oadrCanceledOpt.
  oadrResponse     accepted on every service (an acknowledgement) -> oadrResponse.

Response codes (OpenADR 2.0b, eiResponse/responseCode; the same table as openleadr-python's
STATUS_CODES): 200 OK; 400 bad request; 450 OUT_OF_SEQUENCE; 451 NOT_ALLOWED; 452 INVALID_ID;
453 NOT_RECOGNIZED; 454 INVALID_DATA; 459 COMPLIANCE_ERROR; 460 SIGNAL_NOT_SUPPORTED;
461 REPORT_NOT_SUPPORTED; 462 TARGET_MISMATCH; 463 NOT_REGISTERED_OR_AUTHORIZED;
469 DEPLOYMENT_ERROR_OR_OTHER_ERROR. This VTN answers:
  454  the payload does not validate against oadr_20b.xsd; a registration for a profile
       other than 2.0b, a transport other than simpleHttp, or push without a transport
       address; an oadrUpdateReport with a data point (rID) the request did not ask for
  463  any message but oadrQueryRegistration / oadrCreatePartyRegistration (and the
       oadrCanceledPartyRegistration acknowledging a cancellation) while the VEN is not
       registered (before registering, or after a cancellation)
  452  a venID other than the registered VEN's; an unknown registrationID, eventID,
       reportRequestID or optID; an oadrUpdateReport whose reportSpecifierID is not the
       request's
  450  an oadrCreatedEvent answering a modificationNumber the VTN never sent (higher than the
       event's); an oadrUpdateReport before the VEN acknowledged the request
       (oadrCreatedReport)
  451  an answer (oadrCreatedEvent) to an event sent with oadrResponseRequired=never
  453  a message the VTN does not take on that service (e.g. oadrPoll posted to EiEvent, or a
       VTN-to-VEN message such as oadrDistributeEvent)
The error goes in the response that matches the request (oadrCreatedPartyRegistration,
oadrCanceledPartyRegistration, oadrRegisteredReport, oadrUpdatedReport, oadrCreatedOpt,
oadrCanceledOpt, oadrDistributeEvent for oadrRequestEvent) or in an oadrResponse; an
erroneous message changes nothing in the VTN's state.

Records: vtn.received / vtn.sent are lists of Msg(service, name, xml, valid, errors, t): every
message in both directions (polled, pushed and answered), `name` its message element (None
when the body is not an oadrPayload), `xml` the text, valid/errors from validation against
share/openadr-2.0b/oadr_20b.xsd (libxml2's validator in-process, the schema parsed once;
xmllint --schema's messages for an invalid one: oadr_xml.validate). A test can assert
`all(m.valid for m in vtn.received)`.

Times: start_s (queue_event, request_report) is a Unix time; a value below 10**9 is taken as
an offset from now (start_s=30 means "in 30 s", start_s=-3600 "an hour ago").

Beyond the contract's API (docs of each method below): status="auto", targets=, comment= on
queue_event; remove_event(); register_report(); ven_config(); next_payload() and
distribute_event_payload() for push; wait_for(..., after=t); the state a test can read:
vtn.opts, vtn.ven_reports, vtn.report_requests, vtn.report_updates, vtn.opt_schedules,
vtn.registration, vtn.refused.
oadr_xml's readers are re-exported: opt_of, event_responses, report_values, report_intervals,
report_metadata, opt_schedule.

Threads: the HTTPS server runs on its own threads (one per connection); every public method
may be called from any thread (one lock guards the state; wait_for sleeps on its condition).
"""
import collections
import http.client
import http.server
import itertools
import os
import socket
import ssl
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

from oadr_xml import (E, NS, SCHEMA, dtstart, duration_prop, ei_response,  # noqa: F401
                      event_responses, fmt_dt, message, opt_of, opt_schedule, payload,
                      power_real_kw, report_intervals, report_metadata, report_values, text,
                      validate)

BASE_PATH = "/OpenADR2/Simple/2.0b"
SERVICES = ("EiRegisterParty", "OadrPoll", "EiEvent", "EiReport", "EiOpt")
MAX_BODY = 4 << 20

OK, OUT_OF_SEQUENCE, NOT_ALLOWED, INVALID_ID = 200, 450, 451, 452
NOT_RECOGNIZED, INVALID_DATA, NOT_REGISTERED = 453, 454, 463

Msg = collections.namedtuple("Msg", "service name xml valid errors t")

# Which service a VTN-to-VEN message is pushed to.
PUSH_SERVICE = {"oadrDistributeEvent": "EiEvent", "oadrCreateReport": "EiReport",
                "oadrRegisterReport": "EiReport", "oadrCancelReport": "EiReport",
                "oadrCancelPartyRegistration": "EiRegisterParty",
                "oadrRequestReregistration": "EiRegisterParty"}


class VtnError(Exception):
    """A protocol error found in a VEN's message: becomes the response code."""

    def __init__(self, code, description):
        super().__init__("%d %s" % (code, description))
        self.code, self.description = code, description


# -- PKI ----------------------------------------------------------------------------------------

def _openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr))


def make_pki(d, names=("vtn", "ven"), ca_name="fleetvault test VTN CA"):
    """A CA (ca.crt/ca.key) and, for each name, NAME.crt/NAME.key: P-256 keys, SAN 127.0.0.1 and
    localhost, usable as TLS server AND client certificates. Returns d."""
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3",
             "-subj", "/CN=" + ca_name, "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    with open(os.path.join(d, "leaf.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\n"
                "extendedKeyUsage=serverAuth,clientAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for n in names:
        _openssl("req", *ec, "-keyout", n + ".key", "-out", n + ".csr", "-subj", "/CN=" + n, cwd=d)
        _openssl("x509", "-req", "-in", n + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3",
                 "-extfile", "leaf.ext", "-out", n + ".crt", cwd=d)
    return d


def client_context(ca, cert=None, key=None):
    """A TLS client context that verifies the server against `ca`, with a client cert if given."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def post(url, xml, ca, cert=None, key=None, timeout=10):
    """POSTs application/xml to an https URL; returns (HTTP status, body bytes)."""
    assert url.startswith("https://"), url
    hostport, _, path = url[len("https://"):].partition("/")
    host, _, port = hostport.rpartition(":")
    conn = http.client.HTTPSConnection(host, int(port), timeout=timeout,
                                       context=client_context(ca, cert, key))
    try:
        conn.request("POST", "/" + path, body=xml, headers={"Content-Type": "application/xml"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# -- HTTPS server -------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the records are in vtn.received / vtn.sent
        pass

    def _answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - http.server's name
        vtn = self.server.vtn
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY:
            self.close_connection = True
            return self._answer(413 if n > MAX_BODY else 411)
        body = self.rfile.read(n)
        path = self.path.split("?", 1)[0].rstrip("/")
        service = path[len(BASE_PATH) + 1:] if path.startswith(BASE_PATH + "/") else None
        if service not in SERVICES:
            return self._answer(404)
        status, reply = vtn._serve(service, body)
        self._answer(status, reply)

    def do_GET(self):  # noqa: N802
        self._answer(405)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, on the connection's thread, so that a client that
        # stalls or fails it never holds up accept().
        vtn = self.vtn
        try:
            request.settimeout(30)
            tls = vtn._server_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with vtn._cond:
                vtn.refused.append((time.time(), client_address, str(e)))
            return
        with vtn._cond:
            vtn._conns.add(tls)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            with vtn._cond:
                vtn._conns.discard(tls)
            try:
                tls.close()
            except OSError:
                pass


# -- the VTN ------------------------------------------------------------------------------------

class TestVTN:
    __test__ = False  # not a pytest test class

    def __init__(self, workdir, poll_s=1, vtn_id="fleetvault-test-vtn", port=0,
                 schema=SCHEMA):
        self.dir = make_pki(os.path.join(workdir, "vtn-pki"))
        self.ca = os.path.join(self.dir, "ca.crt")
        self.cert, self.key = os.path.join(self.dir, "vtn.crt"), os.path.join(self.dir, "vtn.key")
        self.ven_cert = os.path.join(self.dir, "ven.crt")
        self.ven_key = os.path.join(self.dir, "ven.key")
        self.poll_s, self.vtn_id, self.port, self.schema = poll_s, vtn_id, port, schema
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(self.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        self._server_ctx = ctx
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._server = self._thread = None
        self._conns = set()
        # State (guarded by self._cond).
        self.received, self.sent, self.refused = [], [], []
        self.ven_id = "ven-" + os.urandom(4).hex()
        self.registration_id = None
        self.registration = {}          # what the VEN registered with (name, pull, address)
        self.cancelled_registration_id = None
        self.events = collections.OrderedDict()   # event_id -> dict (see queue_event)
        self.opts = {}                  # event_id -> {"opt", "reason", "mod", "t"}: the answer to
        #                                 the highest modificationNumber answered
        self.ven_reports = {}           # reportSpecifierID -> report_metadata() entry
        self.report_requests = {}       # reportRequestID -> dict (see request_report)
        self.report_updates = []        # (reportRequestID, report_intervals() of one oadrReport)
        self.opt_schedules = {}         # optID -> opt_schedule() dict
        self.queue = collections.deque()
        self.last_push_status = None

    # -- lifecycle
    def start(self):
        """Listens on 127.0.0.1 (the port of the previous start, if any: a test may stop the VTN
        to make it unreachable and start it again; the state is kept)."""
        srv = _Server(("127.0.0.1", self.port), _Handler)
        srv.vtn = self
        self.port = srv.server_address[1]
        self._server = srv
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="test-vtn", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops listening and closes every open connection (a keep-alive connection must not
        keep answering a VEN that should find the VTN unreachable)."""
        if not self._server:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._cond:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def url(self):
        return "https://127.0.0.1:%d%s" % (self.port, BASE_PATH)

    def ven_config(self, market_contexts=None, name="utility", **extra):
        """The "openadr" section of a fleetvault config for a VEN talking to this VTN (the
        contract's format); extra keys (push, schema_dir, report_interval_s, ...) are added."""
        cfg = {"ven_name": "fleetvault-ven",
               "vtns": [{"name": name, "url": self.url, "cert": self.ven_cert,
                         "key": self.ven_key, "ca": self.ca}],
               "market_contexts": market_contexts or {}}
        cfg.update(extra)
        return cfg

    # -- what a test does
    def queue_event(self, event_id, market_context, start_s, duration_s, signal="SIMPLE", level=1,
                    kw=None, mod=0, status="far", test=False, response_required="always",
                    priority=0, intervals=None, notification_s=0, ramp_s=0, recovery_s=0,
                    targets=None, comment=None):
        """Adds an event and queues an oadrDistributeEvent. signal: "SIMPLE" (signalType level,
        payload `level`), "LOAD_DISPATCH" (signalType setpoint in kW, payload `kw`) or a list of
        both. intervals: [(duration_s, value), ...] for the signal (a dict {signal: [...]} when
        there are two); by default one interval of the whole event with level / kw. targets:
        extra eiTarget entries {"groupID": [...], "resourceID": [...], ...}; the eiTarget always
        names the registered venID. status: the eventStatus sent (none, far, near, active,
        completed, cancelled) or "auto" (from the clock each time the event is sent). Queuing
        an event_id again replaces the event as given (mod included)."""
        ev = {"event_id": event_id, "market_context": market_context, "duration_s": duration_s,
              "signal": signal, "level": level, "kw": kw, "mod": mod, "status": status,
              "test": test, "response_required": response_required, "priority": priority,
              "intervals": intervals, "notification_s": notification_s, "ramp_s": ramp_s,
              "recovery_s": recovery_s, "targets": targets, "comment": comment,
              "start": self._abs(start_s), "created": time.time(), "modified": None}
        self._signals(ev)  # checks signal / level / kw / intervals now, not at delivery
        with self._cond:
            self.events[event_id] = ev
            self._queue_distribute()
        return ev

    def modify_event(self, event_id, **changes):
        """Changes an event (any queue_event argument but event_id; start_s for the start),
        modificationNumber + 1 unless `mod` is given, and queues it again."""
        with self._cond:
            ev = dict(self.events[event_id])
            if "start_s" in changes:
                ev["start"] = self._abs(changes.pop("start_s"))
            unknown = set(changes) - set(ev) - {"mod"}
            if unknown or "event_id" in changes:
                raise TypeError("modify_event: unknown fields %s" % sorted(unknown or {"event_id"}))
            mod = changes.pop("mod", ev["mod"] + 1)
            ev.update(changes, mod=mod, modified=time.time())
            self._signals(ev)
            self.events[event_id] = ev
            self._queue_distribute()
        return ev

    def cancel_event(self, event_id):
        """eventStatus cancelled, modificationNumber + 1, queued again."""
        return self.modify_event(event_id, status="cancelled")

    def remove_event(self, event_id):
        """Drops an event from the VTN and queues an oadrDistributeEvent without it (for 2.0b an
        event missing from oadrDistributeEvent is cancelled)."""
        with self._cond:
            del self.events[event_id]
            self._queue_distribute()

    def request_report(self, report_request_id, report_specifier_id, r_ids, granularity_s,
                       report_back_s, start_s=None, duration_s=None):
        """Queues an oadrCreateReport asking for the rIDs of a report the VEN registered: every
        granularity_s, sent every report_back_s; start_s/duration_s give the reportInterval
        (a past window = a history report; duration 0 = until cancelled)."""
        with self._cond:
            self.report_requests[report_request_id] = {
                "id": report_request_id, "specifier": report_specifier_id, "rids": list(r_ids),
                "granularity_s": granularity_s, "report_back_s": report_back_s,
                "start": None if start_s is None else self._abs(start_s),
                "duration_s": duration_s, "delivered": False, "acked": False}
            self.queue.append(("oadrCreateReport", report_request_id))
            self._cond.notify_all()

    def register_report(self):
        """Queues the VTN's own (empty) oadrRegisterReport; the VEN answers oadrRegisteredReport."""
        with self._cond:
            self.queue.append(("oadrRegisterReport", None))
            self._cond.notify_all()

    def cancel_registration(self):
        """Queues oadrCancelPartyRegistration; the registration ends when the VEN receives it."""
        with self._cond:
            self.queue.append(("oadrCancelPartyRegistration", None))
            self._cond.notify_all()

    def next_payload(self):
        """Takes the next queued message off the queue and returns its payload bytes (what the
        next poll would have returned), or None. For push mode:
        vtn.push(url, vtn.next_payload())."""
        with self._cond:
            el = self._dequeue()
        return None if el is None else payload(el)

    def distribute_event_payload(self):
        """An oadrDistributeEvent with every event, without touching the queue."""
        with self._cond:
            return payload(self._distribute(self._req()))

    def push(self, ven_base_url, xml_bytes, client_cert=None, client_key=None, timeout=10):
        """POSTs a VTN-to-VEN message to the VEN's push endpoint (BASE/EiEvent or BASE/EiReport
        ...) over mutual TLS (the VTN's certificate by default; the VEN's server certificate is
        verified against vtn.ca). Records both messages and processes the VEN's answer (e.g. the
        opts of an oadrCreatedEvent). Returns the response bytes; the HTTP status is in
        vtn.last_push_status. ven_base_url None: the oadrTransportAddress the VEN registered."""
        ven_base_url = ven_base_url or self.registration.get("address")
        try:
            name = message(xml_bytes)[2]
        except ET.ParseError:
            name = None
        service = PUSH_SERVICE.get(name, "EiEvent")
        self._record(self.sent, service, xml_bytes)
        status, body = post(ven_base_url.rstrip("/") + "/" + service, xml_bytes, self.ca,
                            client_cert or self.cert, client_key or self.key, timeout)
        self.last_push_status = status
        if status == 200 and body:
            self._serve(service, body, pushed=True)
        return body

    def wait_for(self, name, pred=None, timeout=30, after=None):
        """The first received message called `name` for which pred(msg) is true (only those
        received at or after time `after`, when given); raises AssertionError after `timeout`
        seconds, listing what was received."""
        deadline = time.monotonic() + timeout  # immune to wall-clock steps
        with self._cond:
            while True:
                for m in self.received:
                    if m.name == name and (after is None or m.t >= after) and \
                            (pred is None or pred(m)):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = ["%s/%s%s" % (m.service, m.name, "" if m.valid else " (invalid)")
                            for m in self.received]
                    raise AssertionError("test VTN: no %s within %ss; received: %s"
                                         % (name, timeout, seen))
                self._cond.wait(min(left, 0.5))

    # -- internals (called with or without the lock as noted)
    @staticmethod
    def _abs(t):
        return None if t is None else (time.time() + t if t < 10**9 else t)

    def _req(self):
        return "vtn-req-%d" % next(self._ids)

    def _check(self, service, data):  # without the lock: runs the validator
        try:
            name = message(data)[2]
        except ET.ParseError:
            name = None
        valid, errors = validate(data, self.schema)
        return Msg(service, name, data.decode("utf-8", "replace"), valid, errors, time.time())

    def _record(self, lst, service, data):
        m = self._check(service, data)
        with self._cond:
            lst.append(m)
            self._cond.notify_all()
        return m

    def _queue_distribute(self):  # with the lock
        if ("oadrDistributeEvent", None) not in self.queue:
            self.queue.append(("oadrDistributeEvent", None))
        self._cond.notify_all()

    def _serve(self, service, body, pushed=False):
        """One message from the VEN -> (HTTP status, response bytes). Validates, records,
        dispatches; the response is validated and recorded too. The message is recorded and
        acted on under one hold of the lock, so that when wait_for returns it, the state (opts,
        reports, ...) already reflects it."""
        m = self._check(service, body)
        try:
            _, el, name = message(body)
        except ET.ParseError:
            with self._cond:
                self.received.append(m)
                self._cond.notify_all()
            return 400, b""
        req_id = text(el, ".//pyld:requestID", "") if el is not None else ""
        with self._cond:
            self.received.append(m)
            self._cond.notify_all()  # waiters wake once the lock is released, after the handler
            try:
                if not m.valid or el is None:
                    raise VtnError(INVALID_DATA, "payload does not validate against the 2.0b "
                                   "schema: " + "; ".join(m.errors[:3]))
                handler = getattr(self, "_on_" + name, None)
                if name == "oadrResponse":
                    reply = self._response(OK, "OK", req_id)
                elif handler is None or service not in handler.services:
                    raise VtnError(NOT_RECOGNIZED, "%s is not taken on %s" % (name, service))
                else:
                    reply = handler(el)
            except VtnError as e:
                reply = self._error(name, el, e, req_id)
        if pushed:
            return 200, b""
        data = payload(reply)
        self._record(self.sent, service, data)
        return 200, data

    def _response(self, code, description, req_id=""):
        return E("oadr:oadrResponse", ei_response(code, description, req_id),
                 E("ei:venID", self.ven_id) if self.registration_id else None,
                 attrs={"ei:schemaVersion": "2.0b"})

    def _error(self, name, el, e, req_id):
        """The response matching request `name` (element el), carrying error e."""
        r = ei_response(e.code, e.description, req_id)
        v = {"ei:schemaVersion": "2.0b"}
        if name in ("oadrQueryRegistration", "oadrCreatePartyRegistration"):
            return E("oadr:oadrCreatedPartyRegistration", r, E("ei:vtnID", self.vtn_id),
                     self._profiles(), attrs=v)
        simple = {"oadrCancelPartyRegistration": "oadrCanceledPartyRegistration",
                  "oadrRegisterReport": "oadrRegisteredReport",
                  "oadrUpdateReport": "oadrUpdatedReport"}
        if name in simple:
            return E("oadr:" + simple[name], r, attrs=v)
        if name in ("oadrCreateOpt", "oadrCancelOpt"):
            return E("oadr:" + ("oadrCreatedOpt" if name == "oadrCreateOpt" else "oadrCanceledOpt"),
                     r, E("ei:optID", text(el, "ei:optID", "")), attrs=v)
        if name == "oadrRequestEvent":
            return E("oadr:oadrDistributeEvent", r, E("pyld:requestID", req_id),
                     E("ei:vtnID", self.vtn_id), attrs=v)
        return self._response(e.code, e.description, req_id)

    def _profiles(self):
        return E("oadr:oadrProfiles", E("oadr:oadrProfile", E("oadr:oadrProfileName", "2.0b"),
                                        E("oadr:oadrTransports", E("oadr:oadrTransport",
                                          E("oadr:oadrTransportName", "simpleHttp")))))

    def _check_ven(self, el, required=True):  # with the lock
        if not self.registration_id:
            raise VtnError(NOT_REGISTERED, "VEN not registered")
        ven = text(el, "ei:venID")
        if (ven is None and required) or (ven is not None and ven != self.ven_id):
            raise VtnError(INVALID_ID, "unknown venID %r" % ven)

    def _dequeue(self):  # with the lock: next queued message element, or None
        while self.queue:
            kind, arg = self.queue.popleft()
            if kind == "oadrDistributeEvent":
                return self._distribute(self._req())
            if kind == "oadrCreateReport":
                self.report_requests[arg]["delivered"] = True
                return E("oadr:oadrCreateReport", E("pyld:requestID", self._req()),
                         self._report_request(self.report_requests[arg]),
                         E("ei:venID", self.ven_id), attrs={"ei:schemaVersion": "2.0b"})
            if kind == "oadrRegisterReport":
                return E("oadr:oadrRegisterReport", E("pyld:requestID", self._req()),
                         E("ei:venID", self.ven_id), attrs={"ei:schemaVersion": "2.0b"})
            if kind == "oadrCancelPartyRegistration" and self.registration_id:
                el = E("oadr:oadrCancelPartyRegistration", E("pyld:requestID", self._req()),
                       E("ei:registrationID", self.registration_id), E("ei:venID", self.ven_id),
                       attrs={"ei:schemaVersion": "2.0b"})
                self.cancelled_registration_id, self.registration_id = self.registration_id, None
                return el
        return None

    # -- building events
    def _signals(self, ev):
        """[(signalName, signalType, [(duration_s, value)], itemBase or None)] of an event."""
        names = [ev["signal"]] if isinstance(ev["signal"], str) else list(ev["signal"])
        out = []
        for n in names:
            if n == "SIMPLE":
                typ, value, item = "level", ev["level"], None
            elif n == "LOAD_DISPATCH":
                typ, value, item = "setpoint", ev["kw"], power_real_kw()
                if value is None and not ev["intervals"]:
                    raise ValueError("LOAD_DISPATCH needs kw= or intervals=")
            else:
                raise ValueError("signal %r: SIMPLE or LOAD_DISPATCH" % n)
            iv = ev["intervals"]
            if isinstance(iv, dict):
                iv = iv.get(n)
            out.append((n, typ, list(iv) if iv else [(ev["duration_s"], value)], item))
        return out

    @staticmethod
    def _status(ev, now):
        """eventStatus: as given, or for status="auto" from the clock (near = within the
        notification period before the start)."""
        if ev["status"] != "auto":
            return ev["status"]
        start, dur = ev["start"], ev["duration_s"]
        if dur and now >= start + dur:
            return "completed"
        if now >= start:
            return "active"
        return "near" if ev["notification_s"] and now >= start - ev["notification_s"] else "far"

    def _event(self, ev, now):
        start, status = ev["start"], self._status(ev, now)
        d = ev["notification_s"], ev["ramp_s"], ev["recovery_s"]
        props = E("xcal:properties", dtstart(start),
                  duration_prop("xcal:duration", ev["duration_s"]),
                  duration_prop("ei:x-eiNotification", d[0]) if d[0] else None,
                  duration_prop("ei:x-eiRampUp", d[1]) if d[1] else None,
                  duration_prop("ei:x-eiRecovery", d[2]) if d[2] else None)
        signals = []
        for n, typ, ivs, item in self._signals(ev):
            current, t = 0.0, start
            xml_ivs = []
            for i, (dur, value) in enumerate(ivs):
                if t <= now < t + dur and status != "cancelled":
                    current = float(value)
                t += dur
                xml_ivs.append(E("ei:interval", duration_prop("xcal:duration", dur),
                                 E("xcal:uid", E("xcal:text", str(i))),
                                 E("ei:signalPayload", E("ei:payloadFloat",
                                                         E("ei:value", float(value))))))
            signals.append(E("ei:eiEventSignal", E("strm:intervals", xml_ivs),
                             E("ei:signalName", n), E("ei:signalType", typ),
                             E("ei:signalID", "%s-%s" % (ev["event_id"], n.lower())), item,
                             E("ei:currentValue", E("ei:payloadFloat", E("ei:value", current)))))
        targets = ev["targets"] or {}
        order = ("groupID", "groupName", "resourceID", "venID", "partyID")
        tgt = []
        for k in order:
            vals = list(targets.get(k, []))
            if k == "venID" and self.registration_id and self.ven_id not in vals:
                vals.append(self.ven_id)
            tgt += [E("ei:" + k, v) for v in vals]
        desc = E("ei:eventDescriptor", E("ei:eventID", ev["event_id"]),
                 E("ei:modificationNumber", ev["mod"]),
                 E("ei:modificationDateTime", fmt_dt(ev["modified"])) if ev["modified"] else None,
                 E("ei:priority", ev["priority"]),
                 E("ei:eiMarketContext", E("emix:marketContext", ev["market_context"])),
                 E("ei:createdDateTime", fmt_dt(ev["created"])), E("ei:eventStatus", status),
                 E("ei:testEvent", bool(ev["test"])),
                 E("ei:vtnComment", ev["comment"]) if ev["comment"] else None)
        return E("oadr:oadrEvent",
                 E("ei:eiEvent", desc,
                   E("ei:eiActivePeriod", props,
                     E("xcal:components", attrs={"xsi:nil": "true"})),
                   E("ei:eiEventSignals", signals), E("ei:eiTarget", tgt)),
                 E("oadr:oadrResponseRequired", ev["response_required"]))

    def _distribute(self, req_id, response=None):  # with the lock
        now = time.time()
        return E("oadr:oadrDistributeEvent", response, E("pyld:requestID", req_id),
                 E("ei:vtnID", self.vtn_id), [self._event(ev, now) for ev in self.events.values()],
                 attrs={"ei:schemaVersion": "2.0b"})

    def _report_request(self, rr):
        interval = None
        if rr["start"] is not None:
            interval = E("ei:reportInterval",
                         E("xcal:properties", dtstart(rr["start"]),
                           duration_prop("xcal:duration", rr["duration_s"] or 0)))
        return E("oadr:oadrReportRequest", E("ei:reportRequestID", rr["id"]),
                 E("ei:reportSpecifier", E("ei:reportSpecifierID", rr["specifier"]),
                   duration_prop("xcal:granularity", rr["granularity_s"]),
                   duration_prop("ei:reportBackDuration", rr["report_back_s"]), interval,
                   [E("ei:specifierPayload", E("ei:rID", r), E("ei:readingType", "x-notApplicable"))
                    for r in rr["rids"]]))

    # -- message handlers: each runs with the lock held, returns the reply element or raises
    # VtnError; `services` lists where the message is taken.
    def _on_oadrQueryRegistration(self, el):
        reg = self.registration_id
        return E("oadr:oadrCreatedPartyRegistration",
                 ei_response(OK, "OK", text(el, "pyld:requestID", "")),
                 E("ei:registrationID", reg) if reg else None,
                 E("ei:venID", self.ven_id) if reg else None,
                 E("ei:vtnID", self.vtn_id), self._profiles(),
                 duration_prop("oadr:oadrRequestedOadrPollFreq", self.poll_s),
                 attrs={"ei:schemaVersion": "2.0b"})
    _on_oadrQueryRegistration.services = ("EiRegisterParty",)

    def _on_oadrCreatePartyRegistration(self, el):
        reg, ven = text(el, "ei:registrationID"), text(el, "ei:venID")
        if reg is not None and reg != self.registration_id:
            raise VtnError(INVALID_ID, "unknown registrationID %r" % reg)
        if ven is not None and ven != self.ven_id:
            raise VtnError(INVALID_ID, "unknown venID %r" % ven)
        if text(el, "oadr:oadrProfileName") != "2.0b":
            raise VtnError(INVALID_DATA, "this VTN speaks profile 2.0b only")
        if text(el, "oadr:oadrTransportName") != "simpleHttp":
            raise VtnError(INVALID_DATA, "this VTN speaks simpleHttp only")
        pull = text(el, "oadr:oadrHttpPullModel", "true") == "true"
        address = text(el, "oadr:oadrTransportAddress")
        if not pull and not address:
            raise VtnError(INVALID_DATA,
                           "push (oadrHttpPullModel false) needs oadrTransportAddress")
        self.registration_id = reg or "reg-" + os.urandom(4).hex()
        self.registration = {"ven_name": text(el, "oadr:oadrVenName"), "pull": pull,
                             "address": address, "report_only": text(el, "oadr:oadrReportOnly"),
                             "xml_signature": text(el, "oadr:oadrXmlSignature"), "t": time.time()}
        return self._on_oadrQueryRegistration(el)
    _on_oadrCreatePartyRegistration.services = ("EiRegisterParty",)

    def _on_oadrCancelPartyRegistration(self, el):
        self._check_ven(el, required=False)
        reg = text(el, "ei:registrationID")
        if reg != self.registration_id:
            raise VtnError(INVALID_ID, "unknown registrationID %r" % reg)
        self.cancelled_registration_id, self.registration_id = reg, None
        return E("oadr:oadrCanceledPartyRegistration",
                 ei_response(OK, "OK", text(el, "pyld:requestID", "")),
                 E("ei:registrationID", reg), E("ei:venID", self.ven_id),
                 attrs={"ei:schemaVersion": "2.0b"})
    _on_oadrCancelPartyRegistration.services = ("EiRegisterParty",)

    def _on_oadrCanceledPartyRegistration(self, el):
        reg = text(el, "ei:registrationID")
        if reg is None or reg != self.cancelled_registration_id:
            raise VtnError(INVALID_ID, "no cancellation of registrationID %r pending" % reg)
        ven = text(el, "ei:venID")
        if ven is not None and ven != self.ven_id:
            raise VtnError(INVALID_ID, "unknown venID %r" % ven)
        return self._response(OK, "OK", text(el, "ei:eiResponse/pyld:requestID", ""))
    _on_oadrCanceledPartyRegistration.services = ("EiRegisterParty",)

    def _on_oadrPoll(self, el):
        self._check_ven(el)
        return self._dequeue() or self._response(OK, "OK")
    _on_oadrPoll.services = ("OadrPoll",)

    def _on_oadrRequestEvent(self, el):
        self._check_ven(el.find("pyld:eiRequestEvent", NS))
        req = text(el, "pyld:eiRequestEvent/pyld:requestID", "")
        return self._distribute(req, ei_response(OK, "OK", req))
    _on_oadrRequestEvent.services = ("EiEvent",)

    def _on_oadrCreatedEvent(self, el):
        ce = el.find("pyld:eiCreatedEvent", NS)
        self._check_ven(ce)
        answers = event_responses(payload(el))
        for a in answers:  # check all first: an erroneous message changes nothing
            ev = self.events.get(a["event_id"])
            if ev is None:
                raise VtnError(INVALID_ID, "unknown eventID %r" % a["event_id"])
            if a["mod"] is None or a["mod"] > ev["mod"]:
                raise VtnError(OUT_OF_SEQUENCE, "event %s has modificationNumber %d, not %d"
                               % (a["event_id"], ev["mod"], a["mod"]))
            if ev["response_required"] == "never":
                raise VtnError(NOT_ALLOWED, "event %s was sent with oadrResponseRequired never"
                               % a["event_id"])
        now = time.time()
        for a in answers:  # a late answer to an older modification does not replace a newer one
            prev = self.opts.get(a["event_id"])
            if prev is None or a["mod"] >= prev["mod"]:
                self.opts[a["event_id"]] = {"opt": a["opt"], "reason": a["description"],
                                            "mod": a["mod"], "t": now}
        return self._response(OK, "OK", text(ce, "ei:eiResponse/pyld:requestID", ""))
    _on_oadrCreatedEvent.services = ("EiEvent",)

    def _on_oadrRegisterReport(self, el):
        self._check_ven(el, required=False)
        self.ven_reports.update(report_metadata(payload(el)))
        return E("oadr:oadrRegisteredReport", ei_response(OK, "OK", text(el, "pyld:requestID", "")),
                 E("ei:venID", self.ven_id), attrs={"ei:schemaVersion": "2.0b"})
    _on_oadrRegisterReport.services = ("EiReport",)

    def _on_oadrCreatedReport(self, el):
        self._check_ven(el, required=False)
        if text(el, "ei:eiResponse/ei:responseCode") == "200":
            for rr in self.report_requests.values():
                if rr["delivered"]:
                    rr["acked"] = True
        return self._response(OK, "OK", text(el, "ei:eiResponse/pyld:requestID", ""))
    _on_oadrCreatedReport.services = ("EiReport",)

    def _on_oadrUpdateReport(self, el):
        self._check_ven(el, required=False)
        points = report_intervals(payload(el))
        for rep in el.iterfind("oadr:oadrReport", NS):
            rid, spec = text(rep, "ei:reportRequestID"), text(rep, "ei:reportSpecifierID")
            rr = self.report_requests.get(rid)
            if rr is None:
                raise VtnError(INVALID_ID, "unknown reportRequestID %r" % rid)
            if not rr["acked"]:
                raise VtnError(OUT_OF_SEQUENCE, "report request %s not acknowledged "
                               "(oadrCreatedReport) yet" % rid)
            if spec != rr["specifier"]:
                raise VtnError(INVALID_ID, "report request %s is for reportSpecifierID %s, not %s"
                               % (rid, rr["specifier"], spec))
        for p in points:
            if p["rid"] not in self.report_requests[p["report_request_id"]]["rids"]:
                raise VtnError(INVALID_DATA, "rID %r was not requested in %s"
                               % (p["rid"], p["report_request_id"]))
        for rid in {p["report_request_id"] for p in points}:
            self.report_updates.append((rid, [p for p in points if p["report_request_id"] == rid]))
        return E("oadr:oadrUpdatedReport", ei_response(OK, "OK", text(el, "pyld:requestID", "")),
                 E("ei:venID", self.ven_id), attrs={"ei:schemaVersion": "2.0b"})
    _on_oadrUpdateReport.services = ("EiReport",)

    def _on_oadrCanceledReport(self, el):
        self._check_ven(el, required=False)
        return self._response(OK, "OK", text(el, "ei:eiResponse/pyld:requestID", ""))
    _on_oadrCanceledReport.services = ("EiReport",)
    _on_oadrRegisteredReport = _on_oadrCanceledReport

    def _on_oadrCreateOpt(self, el):
        self._check_ven(el)
        o = opt_schedule(payload(el))
        if o["event_id"] is not None and o["event_id"] not in self.events:
            raise VtnError(INVALID_ID, "unknown eventID %r" % o["event_id"])
        self.opt_schedules[o["opt_id"]] = o
        return E("oadr:oadrCreatedOpt", ei_response(OK, "OK", o["request_id"] or ""),
                 E("ei:optID", o["opt_id"]), attrs={"ei:schemaVersion": "2.0b"})
    _on_oadrCreateOpt.services = ("EiOpt",)

    def _on_oadrCancelOpt(self, el):
        self._check_ven(el)
        opt_id = text(el, "ei:optID")
        if opt_id not in self.opt_schedules:
            raise VtnError(INVALID_ID, "unknown optID %r" % opt_id)
        del self.opt_schedules[opt_id]
        return E("oadr:oadrCanceledOpt", ei_response(OK, "OK", text(el, "pyld:requestID", "")),
                 E("ei:optID", opt_id), attrs={"ei:schemaVersion": "2.0b"})
    _on_oadrCancelOpt.services = ("EiOpt",)
