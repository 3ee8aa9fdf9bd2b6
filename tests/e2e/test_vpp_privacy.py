"""Issue 10 item 9, end to end: the virtual power plant under the access policy.

- The energy-operator role reads sites, events, capacity and settlement (sites named by
  pseudonym, consenting sites only) and gets no vehicle from any vehicle endpoint.
- Settlement rows name a site by its id only for purpose billing (the payee), by its
  pseudonym in the request's purpose otherwise, whatever the role; purpose billing reads
  settlements and nothing else of the VPP; every read is audited with its purpose and the
  sites it answered.
- Payments are the owner's data: the subject export holds the site's settlement rows, and
  after erasure no settlement has a row of the site."""
import json
import time

import fvtest as t
from test_vpp import Site, api

DAY = 86400000
SITES = ["SITEPRIV0000000%02d" % i for i in range(2)]
VIN = "5YJ3E1EA7KF000311"
PROGRAMS = {"programs": {
    # every day, all day (UTC); baselines from the 2 prior days, so a test needs 3 of history
    "short": {"timezone": "UTC", "season": ["01-01", "12-31"], "window": ["00:00", "24:00"],
              "event_length": ["1m", "5h"], "baseline": "a4_discharge", "baseline_days": 2,
              "min_eligible_days": 2, "baseline_lookback_days": 5, "rate": 2.0,
              # the history below is an hour of samples a day: no day is an outage day
              "outage_missing_intervals": 288}}}


def event_start():
    """The first 5-minute boundary two minutes from now (settlement needs whole intervals),
    moved to 00:10 UTC tomorrow if a 5-minute event would cross midnight (refused)."""
    start = -(-(int(time.time() * 1000) + 120000) // 300000) * 300000
    if start % DAY > DAY - 900000:
        start = (start // DAY + 1) * DAY + 600000
    return start


def feed(site, start, kw_of_day):
    """Samples every minute from 2 minutes before to 6 after the event's time of day, on the
    event day (k = 0, in the future: the device clock) and the 3 days before it."""
    for k in range(3, -1, -1):
        for m in range(-2, 7):
            site.sample(created_ms=start - k * DAY + m * 60000, battery_kw=kw_of_day(k),
                        energy_kwh=12.0, capacity_kwh=13.5)


def consent(srv, dev, purpose):
    if "po" not in srv.tokens:
        srv.principal("po", "privacy-officer")
    st, b = srv.http(f"/api/v1/subjects/{dev}/consent?purpose={purpose}&change=give&by=owner"
                     "&ticket=DSR-1", token="po", method="POST", purpose=None)
    assert st == 200, b


def get(srv, path, token, purpose, method="GET"):
    st, body = srv.http(path, token=token, method=method, purpose=purpose)
    try:
        return st, json.loads(body)
    except ValueError:
        return st, body


def setup(env, srv):
    """Two enrolled sites with history, a vehicle, an event; returns (sites, event id)."""
    start = event_start()
    sites = [Site(env, srv, s) for s in SITES]
    for i, s in enumerate(sites):
        feed(s, start, lambda k, i=i: [3.0, 1.0, 2.0, 0.5][k] + i)
        st, b = api(srv, "POST", f"/api/v1/vpp/sites/{s.id}/enroll?program=short")
        assert st == 200, b
    crt, key = env.certs.device(VIN)
    ws = t.WS(srv.port, crt, key, env.certs.ca)
    ws.send(t.fb_envelope(b"v-1", b"V", t.v_payload([(8, 55.0)])))  # Soc
    assert t.fb_decode(ws.recv()[1])["message_type"] == 5
    ws.close()
    return sites, start


def audit(srv, *args):
    r = t.run("audit", "query", "--data", srv.data, *args)
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def test_energy_operator_and_billing():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False, "vpp": PROGRAMS}).start()
        sites, start = setup(env, srv)
        for s in SITES:
            consent(srv, s, "energy_programs")
        consent(srv, SITES[0], "billing")  # only site 0's owner agreed to be billed by name
        op = srv.principal("otto", "energy-operator")
        bill = srv.principal("bea", "energy-billing")
        ep = "energy_programs"

        # the operator creates an event and reads events, capacity, sites and settlement
        st, b = get(srv, f"/api/v1/vpp/events?program=short&start={start}"
                    f"&end={start + 300000}&target_kw=5", op, ep, method="POST")
        assert st == 201, (st, b)
        ev = b["id"]
        st, b = get(srv, "/api/v1/vpp/events", op, ep)
        assert st == 200 and [e["id"] for e in b["events"]] == [ev], (st, b)
        st, b = get(srv, f"/api/v1/vpp/capacity?program=short&from={start}"
                    f"&to={start + 3600000}", op, ep)
        assert st == 200 and b["sites_counted"] == 2, (st, b)
        st, b = get(srv, "/api/v1/vpp/sites?program=short", op, ep)
        assert st == 200 and b["count"] == 2 and b["sites_withheld"] == 0, (st, b)
        pseudo = {x["site"] for x in b["sites"]}
        assert not pseudo & set(SITES) and all(len(p) == 32 for p in pseudo), pseudo
        assert all(x["latest"]["capacity_kwh"] == 13.5 for x in b["sites"]), b
        st, b = get(srv, f"/api/v1/vpp/events/{ev}", op, ep)
        assert st == 200 and {x["site"] for x in b["sites"]} <= pseudo, (st, b)
        st, b = get(srv, f"/api/v1/vpp/events/{ev}/settlement?format=json", op, ep)
        assert st == 200 and {r["site"] for r in b["rows"]} == pseudo, (st, b)
        op_rows = {r["site"]: r for r in b["rows"]}
        # the same pseudonyms as the query API's, which reads the site's telemetry by them
        st, q = get(srv, "/api/v1/vehicles", op, ep)
        assert st == 200 and {x["id"] for x in q["vehicles"]} == pseudo, q  # no vehicle
        some = sorted(pseudo)[0]
        st, q = get(srv, f"/api/v1/query?device={some}&signals=SiteBatteryPower", op, ep)
        assert st == 200 and q["count"] > 0, (st, q)
        # a change the operator makes by pseudonym is answered by pseudonym, never the id
        st, b = get(srv, f"/api/v1/vpp/sites/{some}/dr-day?date=2026-01-05", op, ep, method="POST")
        assert st == 200 and b["site"] == some, (st, b)
        st, b = get(srv, "/api/v1/vpp/dr-days", op, ep)
        assert st == 200 and [d["site"] for d in b["dr_days"]] == [some], (st, b)

        # ... and gets no vehicle anywhere
        st, b = get(srv, f"/api/v1/vehicles/{VIN}/state", op, ep)  # (asks every class)
        assert st in (403, 404) and set(b) == {"error"}, (st, b)
        st, b = get(srv, f"/api/v1/query?device={VIN}&signals=Soc", op, ep)
        assert st == 404 and "unknown device" in b["error"], (st, b)
        st, b = get(srv, "/api/v1/signals/Soc/latest", op, ep)
        assert st == 200 and b["count"] == 0, (st, b)
        st, b = get(srv, f"/api/v1/fleet?signal=Soc&at={int(time.time() * 1000)}", op, ep)
        assert st == 200 and b["count"] == 0, (st, b)
        st, b = get(srv, "/api/v1/exports?signals=Soc", op, ep, method="POST")
        assert st == 403 and "energy sites only" in b["error"], (st, b)
        st, b = get(srv, f"/api/v1/vpp/sites/{VIN}/enroll?program=short", op, ep, method="POST")
        assert st == 404, (st, b)
        # billing is not the operator's purpose
        st, b = get(srv, f"/api/v1/vpp/events/{ev}/settlement", op, "billing")
        assert st == 403 and "billing" in b["error"], (st, b)

        # billing: the payee by id, consenting owners only, a ticket, settlements only
        st, b = get(srv, f"/api/v1/vpp/events/{ev}/settlement?format=json&ticket=PAY-7", bill,
                    "billing")
        assert st == 200 and [r["site"] for r in b["rows"]] == [SITES[0]], (st, b)
        billed = b["rows"][0]
        assert any(billed["payment"] == r["payment"] and billed["metered_kwh"] ==
                   r["metered_kwh"] for r in op_rows.values()), (billed, op_rows)
        assert float(billed["incremental_kwh"]) > 0, billed
        st, b = get(srv, f"/api/v1/vpp/events/{ev}/settlement", bill, "billing")
        assert st == 403 and "ticket" in b["error"], (st, b)
        for path in (f"/api/v1/vpp/events/{ev}", "/api/v1/vpp/events",
                     "/api/v1/vpp/sites?program=short"):
            st, b = get(srv, path + ("&" if "?" in path else "?") + "ticket=PAY-7", bill,
                        "billing")
            assert st == 403 and "settlements only" in b["error"], (path, st, b)
        # a role that sees ids (ops) gets pseudonyms in settlement unless it bills
        st, b = get(srv, f"/api/v1/vpp/events/{ev}/settlement?format=json", "ops", "service")
        assert st == 200 and not {r["site"] for r in b["rows"]} & set(SITES), b
        st, b = get(srv, f"/api/v1/vpp/events/{ev}/settlement?format=json", "ops", "billing")
        assert st == 200 and {r["site"] for r in b["rows"]} == set(SITES), b

        # every settlement read audited with its purpose, and the sites it answered
        entries = audit(srv, "--action", "vpp.settlement")
        decided = [(e["principal"], e.get("purpose"), e["result"]) for e in entries
                   if e["kind"] == "access"]
        for want in (("otto", "energy_programs", "allow"), ("otto", "billing", "deny"),
                     ("bea", "billing", "allow"), ("bea", "billing", "deny"),
                     ("ops", "service", "allow"), ("ops", "billing", "allow")):
            assert want in decided, (want, decided)
        results = {(e["principal"], e.get("purpose")): len(e.get("subjects") or [])
                   for e in entries if e["kind"] == "access.result"}
        assert results[("otto", "energy_programs")] == 2, results
        assert results[("bea", "billing")] == 1, results
        assert any(e["kind"] == "access" and e["result"] == "deny" and e["principal"] == "bea"
                   and "settlements only" in e.get("reason", "")
                   for e in audit(srv, "--action", "vpp.event.status")), "E2 not audited"

        # consent withdrawn: the operator no longer sees the site, and is told how many
        st, _ = srv.http(f"/api/v1/subjects/{SITES[1]}/consent?purpose=energy_programs"
                         "&change=withdraw&by=owner&ticket=DSR-2", token="po", method="POST",
                         purpose=None)
        assert st == 200
        st, b = get(srv, "/api/v1/vpp/sites?program=short", op, ep)
        assert b["count"] == 1 and b["sites_withheld"] == 1, b
        st, b = get(srv, f"/api/v1/vpp/events/{ev}/settlement?format=json", op, ep)
        assert len(b["rows"]) == 1, b
        for s in sites:
            s.ws.close()
        srv.stop()


def test_payments_in_export_and_gone_on_erasure():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False, "vpp": PROGRAMS}).start()
        sites, start = setup(env, srv)
        st, b = api(srv, "POST", f"/api/v1/vpp/events?program=short&start={start - 3 * DAY}"
                    f"&end={start - 3 * DAY + 300000}&target_kw=5")
        assert st == 201, b  # an event three days ago: completed at once
        old = b["id"]
        st, b = api(srv, "POST", f"/api/v1/vpp/events?program=short&start={start}"
                    f"&end={start + 300000}&target_kw=5")
        assert st == 201, b
        deadline = time.time() + 5
        while api(srv, "GET", f"/api/v1/vpp/events/{old}")[1]["state"] != "completed":
            assert time.time() < deadline, "the past event did not complete"
            time.sleep(0.2)
        st, body = srv.http(f"/api/v1/vpp/events/{old}/settlement?format=json", purpose="billing")
        assert st == 200, body
        billed = {r["site"]: r for r in json.loads(body)["rows"]}
        assert set(billed) == set(SITES), billed

        po = srv.principal("paula", "privacy-officer")
        sj = t.subject_json(srv, SITES[0], po, "DSAR-9")
        pay = sj["energy_programs"]["payments"]
        # only completed events are paid; the row is the billing row, named by the site's id
        assert [r["event"] for r in pay["rows"]] == [old], pay
        assert pay["rows"][0] == billed[SITES[0]], (pay["rows"][0], billed[SITES[0]])
        assert pay["total"]["payment"] == billed[SITES[0]]["payment"], pay

        st, body = srv.http(f"/api/v1/subjects/{SITES[0]}/erase?ticket=GDPR-9", token=po,
                            method="POST", purpose=None)
        assert st == 200, body
        st, body = srv.http(f"/api/v1/vpp/events/{old}/settlement?format=json", purpose="billing")
        assert st == 200, body
        rows = json.loads(body)["rows"]
        assert [r["site"] for r in rows] == [SITES[1]], rows
        for s in sites:
            s.ws.close()
        srv.stop()


if __name__ == "__main__":
    t.main([test_energy_operator_and_billing, test_payments_in_export_and_gone_on_erasure])
