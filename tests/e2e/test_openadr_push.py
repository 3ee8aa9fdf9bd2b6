"""End-to-end test of the OpenADR VEN's push mode (issue 11 item 1; docs/openadr.md): the
real server with `openadr.push` configured, against the test VTN (oadr_vtn.py) posting to the
VEN's EiEvent / EiReport / EiRegisterParty endpoints over mutual TLS.

  registration: httpPullModel false and the push address as oadrTransportAddress; the VEN
    does not poll;
  an event pushed (oadrDistributeEvent to BASE/EiEvent) -> the HTTP response is the
    oadrCreatedEvent (optIn) and the event is a VPP event, scheduled ahead of its start, from
    dtstart - rampUp to dtstart + duration;
  a report request pushed (oadrCreateReport) -> oadrCreatedReport in the response, then the
    VEN's oadrUpdateReports posted to the VTN;
  a client certificate from another CA, and none at all: the handshake is refused, nothing
    changes (counted in /metrics);
  a malformed push (not XML; schema-invalid): oadrResponse 454, nothing changes; a message
    posted to the wrong service: 453;
  the VTN cancels the registration by push: oadrCanceledPartyRegistration in the response,
    the VEN registers again (still push);
  every message the VEN sent or answered validates against the 2.0b schema."""
import json
import os
import ssl
import time

import fvtest as t
from oadr_vtn import TestVTN, event_responses, make_pki, message, post, text
from test_openadr import api, wait

MC = "http://elrp.example/a4"
PROGRAMS = {"programs": {
    "test": {"timezone": t.noon_tz(), "season": ["01-01", "12-31"], "window": ["00:00", "24:00"],
             "event_length": ["1m", "5h"], "yearly_hours_cap": 60}}}


def ven_events(srv):
    st, b = api(srv, "GET", "/api/v1/vpp/openadr")
    assert st == 200, (st, b)
    return b["vtns"][0]["events"]


def code_of(xml_bytes):
    _, el, name = message(xml_bytes)
    return name, text(el, ".//ei:responseCode")


def test_push_mode():
    with t.Env() as env, TestVTN(env.root, poll_s=1) as vtn:
        port = t.free_port()
        base = f"https://127.0.0.1:{port}/OpenADR2/Simple/2.0b"
        push = {"listen": f"127.0.0.1:{port}", "cert": vtn.ven_cert, "key": vtn.ven_key,
                "ca": vtn.ca}
        ocfg = vtn.ven_config({MC: {"program": "test"}}, push=push, report_interval_s=1)
        srv = t.Server(env.root, env.certs, config={"rate_limits": False, "vpp": PROGRAMS,
                                                    "openadr": ocfg})
        # The listener starts late: the VEN must still not register before it is up, or the
        # first push below is refused (as once in CI, under ASan).
        srv.env["FV_FAULT_PUSH_LISTEN_DELAY_MS"] = "800"
        srv.start()
        t0 = time.time()
        # -- registration: push, with our address; no polling
        wait("registration", lambda: vtn.registration_id)
        assert vtn.registration["pull"] is False, vtn.registration
        assert vtn.registration["address"] == base, vtn.registration
        wait("oadrRegisterReport", lambda: "fleetvault-usage" in vtn.ven_reports)
        wait("registered", lambda: api(srv, "GET", "/api/v1/vpp/openadr")[1]["vtns"][0]["state"]
             == "registered")

        # -- an event pushed: the answer is the HTTP response; a VPP event exists
        qe = vtn.queue_event("ev1", MC, start_s=60, duration_s=600, signal="LOAD_DISPATCH", kw=5,
                             notification_s=60, ramp_s=30, recovery_s=120)
        reply = vtn.push(None, vtn.next_payload())
        assert vtn.last_push_status == 200
        name, _ = code_of(reply)
        assert name == "oadrCreatedEvent", reply
        r = [x for x in event_responses(reply) if x["event_id"] == "ev1"]
        assert r and r[0]["opt"] == "optIn" and r[0]["code"] == "200", r
        ev = wait("ev1 at the VEN", lambda: [e for e in ven_events(srv) if e["id"] == "ev1"])[0]
        assert ev["vpp_event"] and abs(ev["target_kw"] - 5) < 1e-9, ev
        st, vpp = api(srv, "GET", f"/api/v1/vpp/events/{ev['vpp_event']}")
        assert st == 200 and abs(vpp["target_kw"] - 5) < 1e-9, (st, vpp)
        # the active period: known ahead (notification), the VPP event is scheduled now;
        # dispatch begins rampUp before dtstart, ends at dtstart + duration (recovery: recorded)
        dtstart = qe["start"] * 1000
        assert vpp["state"] == "scheduled", vpp
        assert abs(vpp["start"] - (dtstart - 30000)) < 1000, (vpp["start"], dtstart)
        assert abs(vpp["end"] - (dtstart + 600000)) < 1000, (vpp["end"], dtstart)
        assert (ev["ramp_up_ms"], ev["recovery_ms"]) == (30000, 120000), ev
        nvpp = len(api(srv, "GET", "/api/v1/vpp/events")[1]["events"])

        # -- a report request pushed: oadrCreatedReport answers; updates are posted
        vtn.request_report("rr1", "fleetvault-usage", ["stored_kwh"], 1, 1)
        reply = vtn.push(None, vtn.next_payload())
        assert code_of(reply) == ("oadrCreatedReport", "200"), reply
        vtn.wait_for("oadrUpdateReport", timeout=15)

        # -- a VTN with a certificate from another CA, or none: refused in the handshake
        other = make_pki(os.path.join(env.root, "other-pki"), names=("vtn",),
                         ca_name="not the VTN's CA")
        bad = vtn.distribute_event_payload()
        for cert, key in ((os.path.join(other, "vtn.crt"), os.path.join(other, "vtn.key")),
                          (None, None)):
            try:
                post(base + "/EiEvent", bad, vtn.ca, cert, key)
                raise AssertionError("a push without a valid client certificate was served")
            except (ssl.SSLError, ConnectionError, OSError) as e:
                t.log(f"refused as it should be: {type(e).__name__}: {e}")
        wait("the refusal counted", lambda: srv.metric("fleetvault_openadr_push_refused_total") >= 1)

        # -- malformed pushes: 454 (not XML, not valid) and 453 (wrong service); nothing changes
        before = ven_events(srv)
        for body, want in ((b"<not xml", "454"),
                           (bad.replace(b"ei:eventID", b"ei:eventIdent"), "454"),
                           (b"", "454")):
            st, reply = post(base + "/EiEvent", body, vtn.ca, vtn.cert, vtn.key)
            assert st == 200 and code_of(reply) == ("oadrResponse", want), (st, reply)
        st, reply = post(base + "/EiReport", bad, vtn.ca, vtn.cert, vtn.key)
        assert st == 200 and code_of(reply) == ("oadrResponse", "453"), (st, reply)
        st, _ = post(base + "/Nowhere", bad, vtn.ca, vtn.cert, vtn.key)
        assert st == 404, st
        assert ven_events(srv) == before
        assert len(api(srv, "GET", "/api/v1/vpp/events")[1]["events"]) == nvpp

        # -- the VTN cancels the registration by push: answered, registered again (push)
        old = vtn.registration_id
        vtn.cancel_registration()
        reply = vtn.push(None, vtn.next_payload())
        assert code_of(reply) == ("oadrCanceledPartyRegistration", "200"), reply
        wait("a new registration", lambda: vtn.registration_id and vtn.registration_id != old)
        assert vtn.registration["pull"] is False

        assert not [m for m in vtn.received if m.name == "oadrPoll"], "polled in push mode"
        bad_msgs = [(m.service, m.name, m.errors) for m in vtn.received if not m.valid]
        assert not bad_msgs, bad_msgs
        t.log(f"push mode: {time.time() - t0:.1f} s, {len(vtn.received)} messages, all valid")
        srv.stop()
        out = t.run("audit", "query", "--data", srv.data).stdout
        acts = [json.loads(x) for x in out.splitlines()]
        acts = [a.get("action") for a in acts if a.get("kind") == "openadr"]
        for a in ("openadr.event", "openadr.answer", "openadr.error", "openadr.registration"):
            assert a in acts, (a, sorted(set(acts)))


if __name__ == "__main__":
    t.main([test_push_mode])
