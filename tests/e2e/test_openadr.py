"""End-to-end test of fleetvault's OpenADR 2.0b VEN (issue 11) against the test VTN
(oadr_vtn.py: HTTPS with client certificates, schema validation of every message): the
issue's acceptance run as far as it is built.

One server with five simulated home batteries (`fleetvault simulate --sites 5`) enrolled in a
program, and the VEN configured for the VTN:
  registration (query, create; the registration report's metadata), then
  a SIMPLE level-1 event polled -> optIn -> a VPP event that dispatches the simulated sites,
    which ack and deliver; a report request -> oadrUpdateReport with the delivered kW the VPP
    tracks; a modification (level 2) -> the VPP event's target raised; a lower
    modificationNumber -> 450, nothing changes; a test event -> optIn, never dispatched; an
    event marked responseRequired=never -> recorded, not answered; an event over the yearly
    cap -> optOut with the program's reason; an opt schedule (CLI) -> oadrCreateOpt, an event
    in its window -> optOut naming it, its cancellation (API) -> oadrCancelOpt; the cancellation of
    the first event -> its VPP event cancelled;
  the VTN cancels the registration -> answered, registered again;
  the VTN goes away -> retried with backoff, shown in /metrics and `fleetvault vpp openadr
    status`; back -> registered and polling again; a restart keeps the registration;
  every message the VEN sent validates against the 2.0b schema (xmllint, in the VTN), and the
  audit log holds the events, answers and reports."""
import json
import os
import subprocess
import time

import fvtest as t
from oadr_vtn import TestVTN, event_responses, opt_of, report_intervals, report_values

SITES = ["SITESIM%010d" % i for i in range(5)]  # the simulator's names
MC = "http://elrp.example/a4"
MC_CAP = "http://elrp.example/capped"
PROGRAMS = {"programs": {
    # every day, all day, short events allowed: the test runs its events now (local time
    # about noon: an event never crosses local midnight, fvtest.noon_tz)
    "test": {"timezone": t.noon_tz(), "season": ["01-01", "12-31"], "window": ["00:00", "24:00"],
             "event_length": ["1m", "5h"], "yearly_hours_cap": 60},
    "capped": {"timezone": t.noon_tz(), "season": ["01-01", "12-31"], "window": ["00:00", "24:00"],
               "event_length": ["1m", "5h"], "yearly_hours_cap": 0.1}}}


def api(srv, method, path):
    st, body = srv.http(path, token="ops", method=method, purpose="service")
    return st, json.loads(body) if body else None


def wait(what, fn, timeout=40, step=0.25):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(step)


def answer(vtn, event_id, mod, after=None, timeout=40):
    """The VEN's eventResponse for (event_id, mod) in an oadrCreatedEvent."""
    def find(m):
        return any(r["event_id"] == event_id and r["mod"] == mod for r in event_responses(m))
    m = vtn.wait_for("oadrCreatedEvent", find, timeout=timeout, after=after)
    return [r for r in event_responses(m) if r["event_id"] == event_id and r["mod"] == mod][0]


def ven_event(srv, event_id):
    st, b = api(srv, "GET", "/api/v1/vpp/openadr")
    assert st == 200, (st, b)
    for e in b["vtns"][0]["events"]:
        if e["id"] == event_id:
            return e
    return None


def expected_history(srv, start_ms, step_ms, n):
    """What the VEN's history report must say (openadr/ven.h N11), from each site's raw samples
    read through the query API: per interval, the sum over the sites of the mean battery
    discharge of their samples in it, and of stored / available energy at their last one."""
    return history_sums(
        [srv.json(f"/api/v1/query?device={sid}&signals=SiteBatteryPower,SiteEnergy,"
                  f"SiteCapacity,SiteReserve&from={start_ms}&to={start_ms + n * step_ms - 1}")["rows"]
         for sid in SITES], start_ms, step_ms, n)


def history_sums(site_rows, start_ms, step_ms, n):
    """The history report's intervals from each site's rows (a list of row lists)."""
    out = [{"delivered_kw": 0.0, "stored_kwh": 0.0, "available_kwh": 0.0} for _ in range(n)]
    for rows in site_rows:
        per = {}
        for r in rows:
            k = (r["t"] - start_ms) // step_ms
            if 0 <= k < n and r.get("SiteBatteryPower") is not None:
                per.setdefault(k, []).append(r)
        for k, rs in per.items():
            out[k]["delivered_kw"] += sum(max(0.0, r["SiteBatteryPower"]) for r in rs) / len(rs)
            last = rs[-1]
            out[k]["stored_kwh"] += last["SiteEnergy"]
            out[k]["available_kwh"] += max(0.0, last["SiteEnergy"] -
                                           last["SiteReserve"] / 100 * last["SiteCapacity"])
    return out


def ask_history(vtn, request_id, start, step, n, want, timeout=20):
    """The VTN asks for a history report of n intervals of step ms from start; its
    oadrUpdateReport must carry want's values (delivered, stored, available)."""
    rids = ["delivered_kw", "stored_kwh", "available_kwh"]
    vtn.request_report(request_id, "fleetvault-usage", rids, step // 1000, 3600,
                       start_s=start / 1000, duration_s=n * step / 1000)
    m = vtn.wait_for("oadrUpdateReport", lambda m: any(
        p["report_request_id"] == request_id for p in report_intervals(m)), timeout=timeout)
    pts = [p for p in report_intervals(m) if p["report_request_id"] == request_id]
    assert {p["report_name"] for p in pts} == {"HISTORY_USAGE"}, pts[:1]
    got = [{} for _ in range(n)]
    for p in pts:
        k = int(round((p["dtstart"] * 1000 - start) / step))
        assert 0 <= k < n and abs(p["duration"] * 1000 - step) < 1, p
        got[k][p["rid"]] = p["value"]
    for k in range(n):
        for rid in rids:
            assert abs(got[k][rid] - want[k][rid]) < 1e-6, (k, rid, got[k], want[k])


def history_report(srv, vtn, began):
    step, n = 900000, 4
    start = (int(began * 1000) - 2 * 3600000) // step * step  # inside the simulator's backfill
    def backfilled():
        return all(srv.json(f"/api/v1/query?device={sid}&signals=SiteEnergy&from={start}"
                            f"&to={start + n * step - 1}")["rows"] for sid in SITES)
    wait("the sites' history stored", backfilled, timeout=30)
    want = expected_history(srv, start, step, n)
    assert sum(w["stored_kwh"] > 0 for w in want) == n, want  # the test has data to check
    ask_history(vtn, "rr-hist", start, step, n, want)
    wait("the history request done", lambda: not [  # answered once, then dropped
        r for r in api(srv, "GET", "/api/v1/vpp/openadr")[1]["vtns"][0]["reports"]
        if r["report_request_id"] == "rr-hist"], timeout=5)
    t.log(f"history report of {n} intervals matches the raw samples: {want}")


def local_noon_offset():
    h = time.gmtime().tm_hour
    off = 12 - h
    return off - 24 if off > 12 else off


def test_ven_against_the_test_vtn():
    with t.Env() as env, TestVTN(env.root, poll_s=1) as vtn:
        ocfg = vtn.ven_config({MC: {"program": "test",
                                    "simple_levels": {"1": 0.3, "2": 0.6, "3": 1.0}},
                               MC_CAP: {"program": "capped"}}, report_interval_s=1)
        srv = t.Server(env.root, env.certs, config={"rate_limits": False, "vpp": PROGRAMS,
                                                    "openadr": ocfg}).start()
        slog = open(os.path.join(env.root, "sim.log"), "a")
        sim = subprocess.Popen(
            [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{srv.port}", "--certs",
             env.certs.dir, "--sites", str(len(SITES)), "--days", "1", "--seconds", "75", "--hz", "1",
             "--drain", "5", "--seed", "5", "--offline-pct", "0", "--opt-out-pct", "0", "--quiet",
             "--utc-offset", str(local_noon_offset())],
            stdout=subprocess.PIPE, stderr=slog, text=True)
        t0 = time.time()
        try:
            run(env, srv, vtn)
        finally:
            t.log(f"the run: {time.time() - t0:.1f} s")
            sim.send_signal(2)
            sim.communicate(timeout=60)
            slog.close()
        bad = [(m.service, m.name, m.errors) for m in vtn.received if not m.valid]
        assert not bad, bad
        t.log(f"{len(vtn.received)} messages from the VEN, every one valid against the schema")


def run(env, srv, vtn):
    began = time.time()
    # -- registration, and the fleet's report metadata
    wait("registration", lambda: vtn.registration_id)
    assert vtn.registration["ven_name"] == "fleetvault-ven" and vtn.registration["pull"]
    wait("oadrRegisterReport", lambda: "fleetvault-usage" in vtn.ven_reports)
    def registered():
        st, b = api(srv, "GET", "/api/v1/vpp/openadr")
        return st == 200 and b["vtns"][0]["state"] == "registered" and b
    b = wait("the VEN's status: registered", registered)
    assert b["vtns"][0]["ven_id"] == vtn.ven_id, b
    # the simulated homes enrol and report
    def enrolled():
        st, _ = api(srv, "POST", f"/api/v1/vpp/sites/{SITES[-1]}/enroll?program=test")
        return st == 200
    wait("the sites' first samples", enrolled, timeout=20)
    for sid in SITES:
        st, b = api(srv, "POST", f"/api/v1/vpp/sites/{sid}/enroll?program=test")
        assert st == 200, (sid, st, b)
    time.sleep(1.5)  # a sample of each after enrolment

    # -- a SIMPLE event -> optIn -> a VPP event dispatching the sites
    vtn.queue_event("ev1", MC, start_s=2, duration_s=600, level=1)
    r = answer(vtn, "ev1", 0)
    assert (r["opt"], r["code"]) == ("optIn", "200"), r
    ve = ven_event(srv, "ev1")
    assert ve and ve["vpp_event"] and ve["target_kw"] > 0, ve
    vpp_id, target1 = ve["vpp_event"], ve["target_kw"]
    # SIMPLE level 1 = 0.3 x the VPP's capacity forecast for the window (not latest samples)
    assert ve["capacity_from"] == "forecast", ve
    st, fc = api(srv, "GET", f"/api/v1/vpp/capacity?program=test&from={ve['start_ms']}"
                 f"&to={ve['end_ms']}")
    assert st == 200, (st, fc)
    assert abs(target1 - 0.3 * fc["avg_mw"] * 1000) <= 0.1 * target1 + 0.01, (target1, fc)

    def delivering():
        st, b = api(srv, "GET", f"/api/v1/vpp/events/{vpp_id}")
        planned = [x for x in b.get("sites", []) if x["setpoint_kw"] > 0]
        ok = b["state"] == "active" and planned and all(x["acked"] for x in planned) and \
            b["delivered_kw"] > 0
        return b if ok else None
    ev = wait("the sites delivering", delivering, timeout=20)
    assert abs(ev["target_kw"] - target1) < 0.01, (ev["target_kw"], target1)
    t.log(f"ev1 -> {vpp_id}: target {target1} kW, delivered {ev['delivered_kw']} kW")

    # -- reports: the delivered kW the VPP tracks
    vtn.request_report("rr1", "fleetvault-usage", ["delivered_kw", "stored_kwh"], 1, 2)
    m = vtn.wait_for("oadrUpdateReport",
                     lambda m: any(v > 0 for v in report_values(m).get("delivered_kw", [])))
    vals = report_values(m)
    st, now = api(srv, "GET", f"/api/v1/vpp/events/{vpp_id}")
    assert abs(max(vals["delivered_kw"]) - now["delivered_kw"]) < 0.5 * now["target_kw"] + 1, \
        (vals, now["delivered_kw"])
    assert all(v > 0 for v in vals["stored_kwh"]), vals

    # -- a history report: a past hour from the store, against the raw samples (query API)
    history_report(srv, vtn, began)

    # -- a modification raises the target; a lower modificationNumber changes nothing
    t0 = time.time()
    vtn.modify_event("ev1", level=2)
    r = answer(vtn, "ev1", 1, after=t0)
    assert r["opt"] == "optIn", r
    def raised():
        kw = api(srv, "GET", f"/api/v1/vpp/events/{vpp_id}")[1]["target_kw"]
        return kw > target1 and kw
    target2 = wait("a higher target", raised)
    t.log(f"ev1 modified: target {target1} -> {target2} kW")
    t0 = time.time()
    vtn.modify_event("ev1", level=3, mod=0)
    r = answer(vtn, "ev1", 0, after=t0)
    assert r["code"] == "450", r
    assert ven_event(srv, "ev1")["mod"] == 1
    assert api(srv, "GET", f"/api/v1/vpp/events/{vpp_id}")[1]["target_kw"] == target2
    vtn.modify_event("ev1", level=2, mod=1)  # the VTN back in step: equal, not answered

    # -- a test event: answered, recorded, never dispatched
    nvpp = len(api(srv, "GET", "/api/v1/vpp/events")[1]["events"])
    vtn.queue_event("ev-test", MC, start_s=2, duration_s=300, level=3, test=True)
    r = answer(vtn, "ev-test", 0)
    assert r["opt"] == "optIn", r
    assert ven_event(srv, "ev-test")["vpp_event"] == ""
    # -- responseRequired=never: recorded, not answered
    t0 = time.time()
    vtn.queue_event("ev-quiet", MC, start_s=2, duration_s=300, level=1, test=True,
                    response_required="never")
    wait("ev-quiet recorded", lambda: ven_event(srv, "ev-quiet"))
    # -- over the program's yearly cap: optOut with the program's reason
    vtn.queue_event("ev-cap", MC_CAP, start_s=2, duration_s=900, signal="LOAD_DISPATCH", kw=5)
    r = answer(vtn, "ev-cap", 0)
    assert r["opt"] == "optOut" and "yearly cap" in (r["description"] or ""), r
    assert not any(x["event_id"] == "ev-quiet" for m in vtn.received
                   if m.name == "oadrCreatedEvent" for x in event_responses(m))
    assert len(api(srv, "GET", "/api/v1/vpp/events")[1]["events"]) == nvpp

    # -- an opt schedule from the CLI: oadrCreateOpt; an event in its window is refused
    tok = os.path.join(env.root, "ops.token")
    with open(tok, "w") as f:
        f.write(srv.tokens["ops"])
    cli = ["--token-file", tok, "--purpose", "service", "--api", f"http://127.0.0.1:{srv.api_port}"]
    start = int(time.time() * 1000) + 60000
    out = t.run("vpp", "openadr", "opt", "create", "--start", str(start), "--end",
                str(start + 3600000), "--reason", "x-schedule", "--market-context", MC, *cli).stdout
    opt_id = json.loads(out)["id"]
    wait("oadrCreateOpt", lambda: opt_id in vtn.opt_schedules)
    vtn.queue_event("ev-busy", MC, start_s=120, duration_s=600, level=1)
    r = answer(vtn, "ev-busy", 0)
    assert r["opt"] == "optOut" and opt_id in (r["description"] or ""), r
    st, b = api(srv, "POST", f"/api/v1/vpp/openadr/opts/{opt_id}/cancel")
    assert st == 200, (st, b)
    wait("oadrCancelOpt", lambda: opt_id not in vtn.opt_schedules)

    # -- the VTN cancels ev1: its VPP event is cancelled
    t0 = time.time()
    vtn.cancel_event("ev1")
    r = answer(vtn, "ev1", 2, after=t0)
    assert r["opt"] == "optIn", r
    wait("the VPP event cancelled",
         lambda: api(srv, "GET", f"/api/v1/vpp/events/{vpp_id}")[1]["state"] == "cancelled")

    # -- the VTN cancels the registration: answered, then registered again
    old = vtn.registration_id
    t0 = time.time()
    vtn.cancel_registration()
    vtn.wait_for("oadrCanceledPartyRegistration", after=t0)
    vtn.wait_for("oadrCreatePartyRegistration", after=t0)
    wait("a new registration", lambda: vtn.registration_id and vtn.registration_id != old)

    t.log(f"events, reports, opts and re-registration: {time.time() - began:.1f} s")
    # -- the VTN goes away: retried with backoff, in /metrics and the CLI; then back
    vtn.stop()
    wait("vtn_up 0", lambda: srv.metric('fleetvault_openadr_vtn_up{vtn="utility"}') == 0)
    out = t.run("vpp", "openadr", "status", *cli).stdout
    st = json.loads(out)["vtns"][0]
    assert st["state"] == "unreachable" and st["consecutive_failures"] >= 1, st
    assert st["last_error"], st
    t.log(f"unreachable: {st['last_error']}")
    t0 = time.time()
    vtn.start()
    vtn.wait_for("oadrPoll", after=t0, timeout=30)
    wait("vtn_up 1", lambda: srv.metric('fleetvault_openadr_vtn_up{vtn="utility"}') == 1)

    t.log(f"unreachable and back: {time.time() - began:.1f} s")
    # -- a restart keeps the registration: the VEN polls with it, registers nothing again;
    # and the report requests: their updates resume without the VTN asking again
    t0 = time.time()
    vtn.request_report("rr-status", "fleetvault-status", ["online"], 1, 1)
    vtn.wait_for("oadrCreatedReport", after=t0)
    def rr_update(m):
        return any(p["report_request_id"] == "rr-status" for p in report_intervals(m))
    vtn.wait_for("oadrUpdateReport", rr_update, after=t0)
    reg = vtn.registration_id
    srv.stop()
    t0 = time.time()
    srv.start()
    vtn.wait_for("oadrPoll", after=t0, timeout=30)
    assert vtn.registration_id == reg
    assert not [m for m in vtn.received if m.t >= t0 and m.name == "oadrCreatePartyRegistration"]
    vtn.wait_for("oadrUpdateReport", rr_update, after=t0, timeout=15)
    assert not [m for m in vtn.sent if m.t >= t0 and m.name == "oadrCreateReport"]

    # -- the audit log: events received, answers sent, reports written
    srv.stop()
    out = t.run("audit", "query", "--data", srv.data).stdout
    kinds = [json.loads(x).get("action") for x in out.splitlines()
             if json.loads(x).get("kind") == "openadr"]
    for a in ("openadr.registration", "openadr.event", "openadr.answer", "openadr.report",
              "openadr.opt", "openadr.history"):
        assert a in kinds, (a, sorted(set(kinds)))


if __name__ == "__main__":
    t.main([test_ven_against_the_test_vtn])
