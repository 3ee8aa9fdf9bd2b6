"""Self-test of the test VTN (oadr_vtn.py) that issue 11's acceptance drives the VEN with:
a well-behaved VEN played here with canned 2.0b messages, over real mutual TLS, goes through
registration, a poll that returns events, oadrCreatedEvent, a modification and a cancellation,
a report registration, oadrCreateReport / oadrCreatedReport / oadrUpdateReport, an opt schedule,
the VTN cancelling the registration and the VEN registering again, and a push; each invalid or
out-of-order message gets the 2.0b response code (463, 452, 450, 451, 454, 453, HTTP 400) and
changes nothing; clients without a certificate, or with one from another CA, are refused.
Every message in both directions is checked against the schema (xmllint)."""
import contextlib
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
import http.server

import fvtest as t
from oadr_vtn import TestVTN, make_pki, opt_of, post, report_values
from oadr_xml import (E, NS, dtstart, duration_prop, fmt_dt, message, payload, text, validate,
                      xmllint)

MC = "http://elrp.example/a4"
V = {"ei:schemaVersion": "2.0b"}


def created_event(answers, ven_id, req):
    """A canned oadrCreatedEvent: answers = [(eventID, modificationNumber, opt, reason)]."""
    return E("oadr:oadrCreatedEvent", E(
        "pyld:eiCreatedEvent", E("ei:eiResponse", E("ei:responseCode", "200"),
                                 E("pyld:requestID", req)),
        E("ei:eventResponses", [E("ei:eventResponse", E("ei:responseCode", "200"),
                                  E("ei:responseDescription", reason) if reason else None,
                                  E("pyld:requestID", req),
                                  E("ei:qualifiedEventID", E("ei:eventID", eid),
                                    E("ei:modificationNumber", mod)),
                                  E("ei:optType", opt))
                                for eid, mod, opt, reason in answers]),
        E("ei:venID", ven_id)), attrs=V)


@contextlib.contextmanager
def running_vtn(**kw):
    """A started TestVTN in a temporary directory, removed afterwards."""
    d = tempfile.mkdtemp(prefix="fv-vtn-")
    try:
        with TestVTN(d, **kw) as vtn:
            yield vtn
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Ven:
    """A canned VEN: posts payloads to the VTN with the VEN's client certificate."""

    def __init__(self, vtn):
        self.vtn, self.ven_id, self.n = vtn, None, 0

    def req(self):
        self.n += 1
        return "ven-req-%d" % self.n

    def post(self, service, el):
        # Not validated here: the VTN validates every message both ways (vtn.received, vtn.sent)
        # and the test checks those records at the end.
        return self.raw(service, payload(el))

    def raw(self, service, data):
        st, body = post(self.vtn.url + "/" + service, data, self.vtn.ca, self.vtn.ven_cert,
                        self.vtn.ven_key)
        if st != 200:
            return st, None, None
        _, el, name = message(body)
        return st, el, name

    def code(self, el, path="ei:eiResponse"):
        return text(el, path + "/ei:responseCode")

    def poll(self, ven_id=None):
        return self.post("OadrPoll",
                         E("oadr:oadrPoll", E("ei:venID", ven_id or self.ven_id), attrs=V))

    def register(self, reg_id=None, push_url=None):
        return self.post("EiRegisterParty", E(
            "oadr:oadrCreatePartyRegistration", E("pyld:requestID", self.req()),
            E("ei:registrationID", reg_id) if reg_id else None,
            E("ei:venID", self.ven_id) if self.ven_id else None,
            E("oadr:oadrProfileName", "2.0b"), E("oadr:oadrTransportName", "simpleHttp"),
            E("oadr:oadrTransportAddress", push_url) if push_url else None,
            E("oadr:oadrReportOnly", False), E("oadr:oadrXmlSignature", False),
            E("oadr:oadrVenName", "fleetvault-ven"),
            E("oadr:oadrHttpPullModel", push_url is None), attrs=V))

    def created_event(self, answers, ven_id=None, req="vtn-req"):
        return self.post("EiEvent", created_event(answers, ven_id or self.ven_id, req))

    def register_report(self):
        def desc(rid, rtype, item):
            return E("oadr:oadrReportDescription", E("ei:rID", rid),
                     E("ei:reportDataSource", E("ei:resourceID", "fleet")),
                     E("ei:reportType", rtype), item, E("ei:readingType", "Direct Read"),
                     E("oadr:oadrSamplingRate", E("oadr:oadrMinPeriod", "PT1M"),
                       E("oadr:oadrMaxPeriod", "PT1H"), E("oadr:oadrOnChange", False)))
        kw = E("power:powerReal", E("power:itemDescription", "RealPower"),
               E("power:itemUnits", "W"), E("scale:siScaleCode", "k"),
               E("power:powerAttributes", E("power:hertz", 50), E("power:voltage", 230),
                 E("power:ac", True)))
        report = E("oadr:oadrReport", duration_prop("xcal:duration", 3600),
                   E("ei:eiReportID", "rep-telemetry"),
                   desc("delivered_kw", "usage", kw), desc("available_kw", "usage", kw),
                   E("ei:reportRequestID", "0"), E("ei:reportSpecifierID", "TELEMETRY_USAGE"),
                   E("ei:reportName", "METADATA_TELEMETRY_USAGE"),
                   E("ei:createdDateTime", fmt_dt(time.time())))
        return self.post("EiReport", E("oadr:oadrRegisterReport", E("pyld:requestID", self.req()),
                                       report, E("ei:venID", self.ven_id), attrs=V))

    def update_report(self, rr_id, spec, points):
        t0 = int(time.time()) - 60
        ivs = [E("ei:interval", dtstart(t0), duration_prop("xcal:duration", 60),
                 E("oadr:oadrReportPayload", E("ei:rID", rid),
                   E("ei:payloadFloat", E("ei:value", value)),
                   E("oadr:oadrDataQuality", "Quality Good - Non Specific")))
               for rid, value in points]
        report = E("oadr:oadrReport", dtstart(t0), duration_prop("xcal:duration", 60),
                   E("strm:intervals", ivs), E("ei:eiReportID", "rep-1"),
                   E("ei:reportRequestID", rr_id), E("ei:reportSpecifierID", spec),
                   E("ei:reportName", "TELEMETRY_USAGE"),
                   E("ei:createdDateTime", fmt_dt(time.time())))
        return self.post("EiReport", E("oadr:oadrUpdateReport", E("pyld:requestID", self.req()),
                                       report, E("ei:venID", self.ven_id), attrs=V))


def events_of(el):
    """{eventID: (mod, status, test, responseRequired, [(signalName, [values])])} of an
    oadrDistributeEvent."""
    out = {}
    for ev in el.iterfind("oadr:oadrEvent", NS):
        d = ev.find("ei:eiEvent/ei:eventDescriptor", NS)
        sigs = [(text(s, "ei:signalName"),
                 [float(v.text) for v in s.iterfind("strm:intervals/ei:interval/ei:signalPayload/"
                                                    "ei:payloadFloat/ei:value", NS)])
                for s in ev.iterfind("ei:eiEvent/ei:eiEventSignals/ei:eiEventSignal", NS)]
        out[text(d, "ei:eventID")] = (int(text(d, "ei:modificationNumber")),
                                      text(d, "ei:eventStatus"), text(d, "ei:testEvent"),
                                      text(ev, "oadr:oadrResponseRequired"), sigs)
    return out


def test_registration_events_reports_opts():
    with running_vtn(poll_s=1) as vtn:
        ven = Ven(vtn)
        # Out of order: a poll before registering -> 463.
        st, el, name = ven.poll("nobody")
        assert (name, ven.code(el)) == ("oadrResponse", "463"), (name, el)
        # Query, then register.
        st, el, name = ven.post("EiRegisterParty", E("oadr:oadrQueryRegistration",
                                                     E("pyld:requestID", "q1"), attrs=V))
        assert name == "oadrCreatedPartyRegistration" and ven.code(el) == "200"
        assert text(el, "ei:vtnID") == vtn.vtn_id and text(el, "ei:registrationID") is None
        assert text(el, "oadr:oadrRequestedOadrPollFreq/xcal:duration") == "PT1S"
        assert text(el, "oadr:oadrProfiles/oadr:oadrProfile/oadr:oadrProfileName") == "2.0b"
        st, el, name = ven.register()
        assert name == "oadrCreatedPartyRegistration" and ven.code(el) == "200", name
        ven.ven_id, reg = text(el, "ei:venID"), text(el, "ei:registrationID")
        assert (ven.ven_id, reg) == (vtn.ven_id, vtn.registration_id) and reg
        assert vtn.registration["ven_name"] == "fleetvault-ven"
        # Nothing queued: oadrResponse 200.
        st, el, name = ven.poll()
        assert (name, ven.code(el)) == ("oadrResponse", "200")
        # A poll with another venID -> 452.
        st, el, name = ven.poll("ven-other")
        assert (name, ven.code(el)) == ("oadrResponse", "452")

        # A query once registered names the registration.
        st, el, name = ven.post("EiRegisterParty", E("oadr:oadrQueryRegistration",
                                                     E("pyld:requestID", "q2"), attrs=V))
        assert (text(el, "ei:registrationID"), text(el, "ei:venID")) == (reg, ven.ven_id)

        # Report registration.
        st, el, name = ven.register_report()
        assert (name, ven.code(el)) == ("oadrRegisteredReport", "200")
        assert set(vtn.ven_reports["TELEMETRY_USAGE"]["rids"]) == {"delivered_kw", "available_kw"}

        # Events: SIMPLE level 2; LOAD_DISPATCH 500 kW test event; one never to answer.
        start = time.time() + 120
        vtn.queue_event("ev1", MC, start, 3600, level=2, notification_s=600, ramp_s=60)
        vtn.queue_event("ev2", MC, 300, 1800, signal="LOAD_DISPATCH", test=True, recovery_s=300,
                        intervals=[(900, 500), (900, 250)], targets={"groupID": ["fleet-a"]})
        vtn.queue_event("ev3", MC, 600, 900, level=1, response_required="never")
        st, el, name = ven.poll()
        assert name == "oadrDistributeEvent", name
        evs = events_of(el)
        assert evs["ev1"] == (0, "far", "false", "always", [("SIMPLE", [2.0])]), evs["ev1"]
        assert evs["ev2"] == (0, "far", "true", "always",
                              [("LOAD_DISPATCH", [500.0, 250.0])]), evs["ev2"]
        assert evs["ev3"][3] == "never"
        assert text(el, "oadr:oadrEvent/ei:eiEvent/ei:eiTarget/ei:venID") == ven.ven_id
        req = text(el, "pyld:requestID")
        st, el, name = ven.poll()  # the three went in one oadrDistributeEvent
        assert name == "oadrResponse"
        st, el, name = ven.created_event([("ev1", 0, "optIn", None),
                                          ("ev2", 0, "optOut", "over the yearly cap")], req=req)
        assert (name, ven.code(el)) == ("oadrResponse", "200")
        m = vtn.wait_for("oadrCreatedEvent", timeout=5)
        cap = "over the yearly cap"
        assert opt_of(m, "ev1") == ("optIn", None) and opt_of(m, "ev2") == ("optOut", cap)
        assert (vtn.opts["ev2"]["opt"], vtn.opts["ev2"]["reason"]) == ("optOut", cap)

        # Errors: each answered with its code, none changes the recorded opts.
        before = dict(vtn.opts)
        for answers, code in (([("nope", 0, "optIn", None)], "452"),      # unknown event
                              ([("ev1", 5, "optOut", None)], "450"),      # mod never sent
                              ([("ev3", 0, "optIn", None)], "451"),       # responseRequired never
                              ([("ev1", 0, "optOut", None), ("nope", 0, "optIn", None)], "452")):
            st, el, name = ven.created_event(answers)
            assert (name, ven.code(el)) == ("oadrResponse", code), (answers, name, ven.code(el))
        st, el, name = ven.created_event([("ev1", 0, "optOut", None)], ven_id="ven-other")
        assert ven.code(el) == "452"
        assert vtn.opts == before, (vtn.opts, before)
        # Schema-invalid (oadrPoll without venID) -> 454; not XML -> HTTP 400; a message
        # on the wrong service -> 453.
        n_recv = len(vtn.received)
        bad = payload(E("oadr:oadrPoll", attrs=V))
        st, el, name = ven.raw("OadrPoll", bad)
        assert (name, ven.code(el)) == ("oadrResponse", "454"), (name, el)
        st, el, name = ven.raw("EiEvent", b"this is not xml")
        assert st == 400
        st, el, name = ven.post("EiEvent", E("oadr:oadrPoll", E("ei:venID", ven.ven_id), attrs=V))
        assert (name, ven.code(el)) == ("oadrResponse", "453")
        assert [m.valid for m in vtn.received[n_recv:]] == [False, False, True]

        # Modification then cancellation.
        vtn.modify_event("ev1", level=3)
        st, el, name = ven.poll()
        ev1 = events_of(el)["ev1"]
        assert ev1[:2] == (1, "far") and ev1[4] == [("SIMPLE", [3.0])], ev1
        st, el, name = ven.created_event([("ev1", 1, "optIn", None)])
        assert ven.code(el) == "200" and vtn.opts["ev1"]["mod"] == 1
        vtn.cancel_event("ev1")
        st, el, name = ven.poll()
        assert events_of(el)["ev1"][:2] == (2, "cancelled")
        st, el, name = ven.created_event([("ev1", 0, "optOut", None)])  # a late answer is fine
        assert ven.code(el) == "200"
        assert (vtn.opts["ev1"]["mod"], vtn.opts["ev1"]["opt"]) == (1, "optIn")  # not replaced

        # status="auto" follows the clock; a removed event disappears from the distribution.
        vtn.queue_event("ev4", MC, -10, 3600, level=1, status="auto")
        vtn.queue_event("ev5", MC, 100, 60, level=1, status="auto", notification_s=300)
        vtn.queue_event("ev6", MC, -120, 60, level=1, status="auto")
        vtn.remove_event("ev3")
        st, el, name = ven.poll()
        evs = events_of(el)
        assert [evs[e][1] for e in ("ev4", "ev5", "ev6")] == ["active", "near", "completed"], evs
        assert "ev3" not in evs and evs["ev1"][1] == "cancelled", evs
        cur = el.find("oadr:oadrEvent[3]/ei:eiEvent/ei:eiEventSignals/ei:eiEventSignal/"
                      "ei:currentValue/ei:payloadFloat/ei:value", NS)
        assert float(cur.text) == 1.0  # ev4 is the third event, and under way

        # Reports: request, an update before the acknowledgement (450), acknowledge, update.
        vtn.request_report("rr1", "TELEMETRY_USAGE", ["delivered_kw", "available_kw"], 60, 60)
        st, el, name = ven.poll()
        assert name == "oadrCreateReport"
        assert text(el, "oadr:oadrReportRequest/ei:reportRequestID") == "rr1"
        spec = el.find("oadr:oadrReportRequest/ei:reportSpecifier", NS)
        assert text(spec, "xcal:granularity/xcal:duration") == "PT1M"
        assert [r.text for r in spec.iterfind("ei:specifierPayload/ei:rID", NS)] == \
            ["delivered_kw", "available_kw"]
        st, el, name = ven.update_report("rr1", "TELEMETRY_USAGE", [("delivered_kw", 120.5)])
        assert (name, ven.code(el)) == ("oadrUpdatedReport", "450")
        st, el, name = ven.post("EiReport", E(
            "oadr:oadrCreatedReport", E("ei:eiResponse", E("ei:responseCode", "200"),
                                        E("pyld:requestID", "x")),
            E("oadr:oadrPendingReports", E("ei:reportRequestID", "rr1")),
            E("ei:venID", ven.ven_id), attrs=V))
        assert (name, ven.code(el)) == ("oadrResponse", "200")
        st, el, name = ven.update_report("rr1", "TELEMETRY_USAGE",
                                         [("delivered_kw", 120.5), ("available_kw", 300.0)])
        assert (name, ven.code(el)) == ("oadrUpdatedReport", "200")
        m = vtn.wait_for("oadrUpdateReport", lambda m: report_values(m).get("available_kw"),
                         timeout=5)
        assert report_values(m) == {"delivered_kw": [120.5], "available_kw": [300.0]}
        assert len(vtn.report_updates) == 1
        for rr, spec, points, code in (("nope", "TELEMETRY_USAGE", [("delivered_kw", 1.0)], "452"),
                                       ("rr1", "TELEMETRY_STATUS", [("delivered_kw", 1.0)], "452"),
                                       ("rr1", "TELEMETRY_USAGE", [("soc", 1.0)], "454")):
            st, el, name = ven.update_report(rr, spec, points)
            assert (name, ven.code(el)) == ("oadrUpdatedReport", code), (rr, spec, ven.code(el))
        assert len(vtn.report_updates) == 1

        # The VTN registers its own (empty) report set; the VEN acknowledges.
        vtn.register_report()
        st, el, name = ven.poll()
        assert name == "oadrRegisterReport" and el.find("oadr:oadrReport", NS) is None
        st, el, name = ven.post("EiReport", E(
            "oadr:oadrRegisteredReport", E("ei:eiResponse", E("ei:responseCode", "200"),
                                           E("pyld:requestID", text(el, "pyld:requestID"))),
            E("ei:venID", ven.ven_id), attrs=V))
        assert (name, ven.code(el)) == ("oadrResponse", "200")

        # Opt schedule: create, cancel, cancel again (452).
        t0 = int(time.time()) + 3600
        st, el, name = ven.post("EiOpt", E(
            "oadr:oadrCreateOpt", E("ei:optID", "opt1"), E("ei:optType", "optOut"),
            E("ei:optReason", "outageRunStatus"), E("emix:marketContext", MC),
            E("ei:venID", ven.ven_id),
            E("xcal:vavailability", E("xcal:components", E("xcal:available", E(
                "xcal:properties", dtstart(t0), duration_prop("xcal:duration", 7200))))),
            E("ei:createdDateTime", fmt_dt(time.time())), E("pyld:requestID", "o1"),
            E("ei:eiTarget", E("ei:venID", ven.ven_id)), attrs=V))
        assert (name, ven.code(el), text(el, "ei:optID")) == ("oadrCreatedOpt", "200", "opt1")
        assert vtn.opt_schedules["opt1"]["periods"] == [(t0, 7200)]
        assert vtn.opt_schedules["opt1"]["reason"] == "outageRunStatus"
        cancel = E("oadr:oadrCancelOpt", E("pyld:requestID", "o2"), E("ei:optID", "opt1"),
                   E("ei:venID", ven.ven_id), attrs=V)
        st, el, name = ven.post("EiOpt", cancel)
        assert (name, ven.code(el)) == ("oadrCanceledOpt", "200") and not vtn.opt_schedules
        st, el, name = ven.post("EiOpt", cancel)
        assert (name, ven.code(el)) == ("oadrCanceledOpt", "452")

        # oadrRequestEvent: every event, with an eiResponse.
        st, el, name = ven.post("EiEvent", E("oadr:oadrRequestEvent", E(
            "pyld:eiRequestEvent", E("pyld:requestID", "re1"), E("ei:venID", ven.ven_id)), attrs=V))
        assert name == "oadrDistributeEvent" and ven.code(el) == "200"
        assert set(events_of(el)) == {"ev1", "ev2", "ev4", "ev5", "ev6"}

        # The VTN cancels the registration; the VEN acknowledges, polls (463), registers again.
        vtn.cancel_registration()
        st, el, name = ven.poll()
        assert name == "oadrCancelPartyRegistration" and text(el, "ei:registrationID") == reg
        ack = E("ei:eiResponse", E("ei:responseCode", "200"),
                E("pyld:requestID", text(el, "pyld:requestID")))
        st, el, name = ven.post("EiRegisterParty", E(
            "oadr:oadrCanceledPartyRegistration", ack, E("ei:registrationID", reg),
            E("ei:venID", ven.ven_id), attrs=V))
        assert (name, ven.code(el)) == ("oadrResponse", "200")
        st, el, name = ven.poll()
        assert ven.code(el) == "463"
        st, el, name = ven.register(reg_id=reg)  # the old registration is gone
        assert (name, ven.code(el)) == ("oadrCreatedPartyRegistration", "452")
        st, el, name = ven.register()
        assert ven.code(el) == "200" and text(el, "ei:registrationID") not in (None, reg)
        assert text(el, "ei:venID") == ven.ven_id
        st, el, name = ven.poll()
        assert (name, ven.code(el)) == ("oadrResponse", "200")
        # The VEN cancels its registration (a wrong registrationID first: 452).
        reg2 = vtn.registration_id
        for rid, code in (("reg-bogus", "452"), (reg2, "200")):
            st, el, name = ven.post("EiRegisterParty", E(
                "oadr:oadrCancelPartyRegistration", E("pyld:requestID", "c"),
                E("ei:registrationID", rid), E("ei:venID", ven.ven_id), attrs=V))
            assert (name, ven.code(el)) == ("oadrCanceledPartyRegistration", code)
        assert vtn.registration_id is None and ven.code(ven.poll()[1]) == "463"

        # Every message: the deliberately invalid two were the only invalid ones received,
        # and everything the VTN sent validates.
        bad_recv = [m for m in vtn.received if not m.valid]
        assert len(bad_recv) == 2, [(m.name, m.errors) for m in bad_recv]
        bad_sent = [(m.name, m.errors) for m in vtn.sent if not m.valid]
        assert vtn.sent and not bad_sent, bad_sent
        assert not vtn.refused, vtn.refused
        cfg = vtn.ven_config({MC: {"program": "elrp"}}, report_interval_s=60)
        assert cfg["vtns"][0]["url"] == vtn.url and cfg["report_interval_s"] == 60
        assert all(os.path.exists(cfg["vtns"][0][k]) for k in ("cert", "key", "ca"))


def test_tls_client_certificate_required():
    with running_vtn() as vtn:
        poll = payload(E("oadr:oadrPoll", E("ei:venID", "x"), attrs=V))
        rogue = make_pki(os.path.join(vtn.dir, "rogue"), names=("ven",), ca_name="rogue CA")
        for cert, key in ((None, None),
                          (os.path.join(rogue, "ven.crt"), os.path.join(rogue, "ven.key"))):
            n = len(vtn.refused)
            try:
                st, body = post(vtn.url + "/OadrPoll", poll, vtn.ca, cert, key, timeout=5)
                raise AssertionError("client without a valid certificate was answered %d" % st)
            except (ssl.SSLError, ConnectionError, OSError) as e:
                if isinstance(e, AssertionError):
                    raise
            deadline = time.monotonic() + 5
            while len(vtn.refused) == n and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(vtn.refused) == n + 1, vtn.refused
        assert not vtn.received
        # The VEN's certificate is accepted (the same request gets an oadrPayload).
        st, body = post(vtn.url + "/OadrPoll", poll, vtn.ca, vtn.ven_cert, vtn.ven_key)
        assert st == 200 and message(body)[2] == "oadrResponse"
        # Stopped, the VTN is unreachable; started again, same port and state.
        port = vtn.port
        vtn.stop()
        s = socket.socket()
        assert s.connect_ex(("127.0.0.1", port)) != 0
        s.close()
        vtn.start()
        assert vtn.port == port
        st, body = post(vtn.url + "/OadrPoll", poll, vtn.ca, vtn.ven_cert, vtn.ven_key)
        assert st == 200 and len(vtn.received) == 2


def test_push():
    """vtn.push delivers to a VEN's push endpoint over mutual TLS and processes its answer."""
    with running_vtn() as vtn:
        ven = Ven(vtn)
        ven.ven_id = vtn.ven_id
        seen = []

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                _, el, name = message(body)
                seen.append((self.path, name, self.connection.getpeercert()["subject"]))
                reply = payload(created_event([("p1", 0, "optIn", None)], ven.ven_id,
                                              text(el, "pyld:requestID")))
                self.send_response(200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(vtn.ven_cert, vtn.ven_key)
        ctx.load_verify_locations(vtn.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        th = threading.Thread(target=srv.serve_forever, daemon=True)
        th.start()
        push_url = "https://127.0.0.1:%d/OpenADR2/Simple/2.0b" % srv.server_address[1]
        # Push mode needs a transport address (454 without one), then registers with it.
        st, el, _ = ven.post("EiRegisterParty", E(
            "oadr:oadrCreatePartyRegistration", E("pyld:requestID", "r"),
            E("oadr:oadrProfileName", "2.0b"), E("oadr:oadrTransportName", "simpleHttp"),
            E("oadr:oadrReportOnly", False), E("oadr:oadrXmlSignature", False),
            E("oadr:oadrHttpPullModel", False), attrs=V))
        assert ven.code(el) == "454" and vtn.registration_id is None
        st, el, _ = ven.register(push_url=push_url)
        assert ven.code(el) == "200" and vtn.registration["address"] == push_url
        assert vtn.registration["pull"] is False
        try:
            vtn.queue_event("p1", MC, 60, 600, level=3)
            body = vtn.push(None, vtn.next_payload())  # None: the registered address
            assert vtn.last_push_status == 200 and message(body)[2] == "oadrCreatedEvent"
            assert seen[0][:2] == ("/OpenADR2/Simple/2.0b/EiEvent", "oadrDistributeEvent"), seen
            assert vtn.opts["p1"]["opt"] == "optIn"
            assert vtn.next_payload() is None  # the push took it off the poll queue
            assert all(m.valid for m in vtn.sent + vtn.received)
        finally:
            srv.shutdown()
            srv.server_close()


def test_validator_agrees_with_xmllint():
    """oadr_xml.validate decides in-process with libxml2 (fast); xmllint --schema must agree on
    valid and invalid messages alike."""
    with running_vtn() as vtn:
        vtn.registration_id = "reg-x"
        vtn.queue_event("a", MC, 60, 600, signal=["SIMPLE", "LOAD_DISPATCH"], kw=50, level=2)
        vtn.request_report("rr", "TELEMETRY_USAGE", ["x"], 60, 60, start_s=-3600, duration_s=3600)
        good = [vtn.next_payload(), vtn.next_payload(),
                payload(created_event([("a", 0, "optIn", None)], "v", "r"))]
        bad = [payload(E("oadr:oadrPoll", attrs=V)),
               good[0].replace(b"<ei:signalType>level<", b"<ei:signalType>loudness<"),
               good[2].replace(b"optIn", b"optMaybe"), b"<oadrPayload/>", b"not xml"]
        for data in good + bad:
            want = xmllint(data)[0]
            assert validate(data)[0] == want == (data in good), data
        assert validate(bad[1])[1] and "loudness" in " ".join(validate(bad[1])[1])


if __name__ == "__main__":
    t.main([test_registration_events_reports_opts, test_tls_client_certificate_required, test_push,
            test_validator_agrees_with_xmllint])
