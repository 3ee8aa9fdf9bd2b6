"""Issue 10's fleet run, end to end: 200 simulated home batteries (`fleetvault simulate
--sites`) back-fill 14 days of history into the real server and stream live; all are
enrolled and an event created through the API; every planned site gets its dispatch over
the real downlink and acks it, and delivered power is tracked; then one site drops out
mid-event (its simulator is killed: the connection is gone and no sample comes) and the
service re-plans the others to cover it. Then the settlement: the event (2 minutes, the
program metering in 1-minute intervals, so it ends within the test) settled as CSV and
JSON, the season through the API and `fleetvault vpp settle --season`, the season total
equal to the sum of its rows, and for two sites (the one that dropped out and a planned
one) baseline, metered and incremental kWh and the payment recomputed here from their raw
samples read through the query API, by the method docs/operations.md documents (hand_row:
none of the C code). Their baselines leave out another program's event day, a DR day
declared for every site and one declared for the lone site only.

It takes about four minutes (the history is 806,400 samples); under ASan (FV_ASAN=1) it is
skipped, with a message: the sanitizer makes the back-fill alone take longer than the test
budget, and the same code paths run there through test_vpp.py and test_sim_sites.py."""
import bisect
import json
import math
import os
import time

import fvtest as t
from test_sim_sites import api, local_noon_offset, start_sim, stop_sim

N = 200
DAYS = 14
DAY = 86400000
LONE = "SITELONE000000000"  # the site that drops out, in a simulator of its own
MINUTE = 60000
PROGRAMS = {"programs": {
    # every day, all day (UTC), short events, metered by the minute: an event of 3 minutes
    # is settled within the test (A.4 by default: the battery's own discharge, $2.00/kWh)
    "test": {"timezone": "UTC", "season": ["01-01", "12-31"], "window": ["00:00", "24:00"],
             "event_length": ["1m", "5h"], "yearly_hours_cap": 60, "interval_minutes": 1},
    # another program: its event's day is left out of the test program's baselines
    "other": {"timezone": "UTC", "season": ["01-01", "12-31"], "window": ["00:00", "24:00"],
              "event_length": ["1m", "5h"]}}}
# The settlement method's documented numbers (docs/operations.md, "Baselines"; the program's
# defaults but interval_minutes): a sample holds for at most 10 minutes, 10 baseline days
# among the 45 before the event, at least 10 needed, a day missing more than 12 intervals is
# an outage day.
HOLD, BASELINE_DAYS, LOOKBACK, OUTAGE_MISSING, RATE = 600000, 10, 45, 12, 2.00


def utc_date(ms):
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


def interval_kwh(ts, kws, a, b):
    """Discharge kWh over [a, b) from samples (ts ascending): each sample's power (discharge
    only) holds until the next sample, for at most HOLD; None when [a, b) is not covered
    whole (missing)."""
    covered = energy = 0.0
    i = max(0, bisect.bisect_right(ts, a) - 1)
    while i < len(ts) and ts[i] < b:
        nxt = ts[i + 1] if i + 1 < len(ts) else math.inf
        lo, hi = max(a, ts[i]), min(b, nxt, ts[i] + HOLD)
        if hi > lo and kws[i] is not None:
            covered += hi - lo
            energy += max(0.0, kws[i]) * (hi - lo) / 3600000.0
        i += 1
    return energy if covered == b - a else None


def hand_row(srv, sid, start, end, excluded):
    """The A.4 settlement row of site sid for the event [start, end), from its raw samples
    (GET /api/v1/query) and the days left out for it (excluded: ISO dates)."""
    day0 = start // DAY * DAY
    q = srv.json(f"/api/v1/query?device={sid}&signals=SiteBatteryPower"
                 f"&from={day0 - (LOOKBACK + 1) * DAY}&to={end}")
    rows = [r for r in q["rows"] if r.get("SiteBatteryPower") is not None]
    ts, kws = [r["t"] for r in rows], [r["SiteBatteryPower"] for r in rows]

    def event_minutes(k):
        return [interval_kwh(ts, kws, m - k * DAY, m - k * DAY + MINUTE)
                for m in range(start, end, MINUTE)]

    def outage(k):  # the whole UTC day k days back
        d = day0 - k * DAY
        miss = sum(interval_kwh(ts, kws, m, m + MINUTE) is None
                   for m in range(d, d + DAY, MINUTE))
        return miss > OUTAGE_MISSING

    days, per_day = [], []
    for k in range(1, LOOKBACK + 1):
        if len(days) == BASELINE_DAYS:
            break
        iso = utc_date(start - k * DAY)
        if iso in excluded or outage(k):
            continue
        v = event_minutes(k)
        if None in v:
            continue
        days.append(iso)
        per_day.append(sum(v))
    assert len(days) == BASELINE_DAYS, (sid, days)  # the program's minimum
    baseline = sum(per_day) / len(per_day)
    metered = sum(x or 0.0 for x in event_minutes(0))  # a missing minute: no discharge

    def wh(kwh):  # half away from zero
        return int(math.floor(abs(kwh) * 1000 + 0.5)) * (1 if kwh >= 0 else -1)

    inc_wh = max(0, wh(metered) - wh(baseline))
    cents = (inc_wh * int(RATE * 10000) + 50000) // 100000
    return {"baseline_days": days, "baseline_kwh": baseline, "metered_kwh": metered,
            "incremental_kwh": inc_wh / 1000, "payment": cents / 100}


def wait(pred, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        r = pred()
        if r:
            return r
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def history_in(srv, sid, start):
    st, body = srv.http(f"/api/v1/query?device={sid}&signals=SiteEnergy"
                        f"&from={start - DAYS * DAY - 600000}&to={start}")
    rows = json.loads(body)["rows"] if st == 200 else []
    return len(rows) >= DAYS * 288 - 2 and rows[-1]["t"] >= start - 600000


def test_fleet_of_200_sites_dispatched_and_covering_a_dropout():
    if os.environ.get("FV_ASAN"):
        t.log("SKIP test_fleet_of_200_sites_dispatched_and_covering_a_dropout under ASan "
              "(see the module docstring)")
        return
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False, "vpp": PROGRAMS}).start()
        start = int(time.time() * 1000)
        off = str(local_noon_offset())
        common = ["--days", str(DAYS), "--seconds", "400", "--opt-out-pct", "0", "--utc-offset",
                  off, "--hz", "0.5"]
        fleet, fleet_log = start_sim(env, srv, "--sites", str(N - 1), *common)
        lone, lone_log = start_sim(env, srv, "--sites", "1", "--site-prefix", "SITELONE",
                                   "--seed", "7", *common)
        try:
            first = "SITESIM%010d" % 0
            wait(lambda: history_in(srv, first, start) and history_in(srv, LONE, start), 240,
                 "14 days of history")
            wait(lambda: all(history_in(srv, "SITESIM%010d" % i, start) for i in (N // 2, N - 2)),
                 120, "every site's history")
            sites = ["SITESIM%010d" % i for i in range(N - 1)] + [LONE]
            for sid in sites:
                st, b = api(srv, "POST", f"/api/v1/vpp/sites/{sid}/enroll?program=test")
                assert st == 200, (sid, st, b)
            # 2 minutes from the next minute: settled in 1-minute intervals once it is over
            ev_start = -(-(int(time.time() * 1000) + 3000) // MINUTE) * MINUTE
            ev_end = ev_start + 2 * MINUTE
            # days left out of baselines: another program's event (2 days back), a DR day of
            # every site (4 days back), one of the lone site only (yesterday)
            other = ev_start // DAY * DAY - 2 * DAY + 12 * 3600000
            st, b = api(srv, "POST", f"/api/v1/vpp/events?program=other&start={other}"
                        f"&end={other + 3600000}&target_kw=1")
            assert st == 201, (st, b)
            fleet_dr, lone_dr = utc_date(ev_start - 4 * DAY), utc_date(ev_start - DAY)
            st, b = api(srv, "POST", f"/api/v1/vpp/dr-days?date={fleet_dr}")
            assert st == 200, (st, b)
            st, b = api(srv, "POST", f"/api/v1/vpp/sites/{LONE}/dr-day?date={lone_dr}")
            assert st == 200, (st, b)
            st, b = api(srv, "POST", f"/api/v1/vpp/sites/{LONE}/dr-day?date=2026-02-30")
            assert st == 422 and "date" in b["error"], (st, b)
            # more than the lone site alone could give, far less than the fleet: feasible
            st, b = api(srv, "POST", f"/api/v1/vpp/events?program=test&start={ev_start}"
                        f"&end={ev_end}&target_kw=100")
            assert st == 201, (st, b)
            ev = b["id"]
            last = [None]

            def all_delivering():
                st, b = api(srv, "GET", f"/api/v1/vpp/events/{ev}")
                planned = [x for x in b.get("sites", []) if x["setpoint_kw"] > 0]
                ok = b["state"] == "active" and planned and all(
                    x["acked"] and x["status"] == "delivering" for x in planned)
                if not ok:
                    hist = {"state": b.get("state")}
                    for x in b.get("sites", []):
                        k = (x["setpoint_kw"] > 0, x["status"], x["acked"], x.get("reason", ""))
                        hist[k] = hist.get(k, 0) + 1
                    last[0] = hist
                return b if ok else None

            try:
                b = wait(all_delivering, ev_start / 1000 - time.time() + 60,
                         "every planned site acked and delivering")
            except AssertionError:
                t.log(f"sites by (planned, status, acked, reason): {last[0]}")
                raise
            planned = {x["site"]: x for x in b["sites"] if x["setpoint_kw"] > 0}
            t.log(f"{len(planned)} sites planned, {b['planned_kw']:.1f} kW of "
                  f"{b['deliverable_kw']:.1f} kW deliverable")
            assert b["feasible"] and abs(b["planned_kw"] - 100.0) < 0.01, b
            assert len(planned) >= N // 2, len(planned)  # at local noon most homes can
            assert LONE in planned, "the lone site has energy above its reserve at noon"
            assert abs(b["delivered_kw"] - 100.0) < 0.05 * len(planned), b
            assert b["tracking"], b  # delivered against target, every 5 s
            before = {s: x["setpoint_kw"] for s, x in planned.items()}

            # The lone site drops out: no connection, no sample. After 30 s without one it
            # is offline, and the others are dispatched to cover its share.
            lone.kill()
            lone.wait(timeout=30)

            def covered():
                st, b = api(srv, "GET", f"/api/v1/vpp/events/{ev}")
                st_ = {x["site"]: x for x in b["sites"]}
                lone_x = st_.get(LONE)
                if lone_x is None or lone_x["status"] != "offline" or lone_x["setpoint_kw"] > 0:
                    return None
                return b if abs(b["planned_kw"] - 100.0) < 0.01 else None

            b = wait(covered, 90, "the dropout re-planned")
            after = {x["site"]: x for x in b["sites"]}
            raised = [s for s, kw in before.items()
                      if s != LONE and after[s]["setpoint_kw"] > kw + 1e-6]
            assert raised, "no other site was raised to cover the dropout"
            # each setpoint is shown rounded to the watt: their sum may miss the target by
            # half a watt a site (a CI rehearsal: 100.01 kW over 180 sites)
            assert abs(sum(x["setpoint_kw"] for x in after.values()) - 100.0) <= \
                0.0005 * len(after) + 1e-9, b
            b = wait(all_delivering, 60, "the re-planned sites acked and delivering")
            assert abs(b["delivered_kw"] - 100.0) < 0.05 * len(after), b
            assert time.time() * 1000 < ev_end, "the event ended before the re-plan was seen"
            wait(lambda: api(srv, "GET", f"/api/v1/vpp/events/{ev}")[1]["state"] == "completed",
                 ev_end / 1000 - time.time() + 10, "the event's end")
            settle(env, srv, ev, ev_start, ev_end, planned, (fleet_dr, lone_dr, other))
        finally:
            if lone.poll() is None:
                lone.kill()
            lone_log.close()
            stop_sim(fleet, fleet_log)
        srv.stop()


def settle(env, srv, ev, start, end, planned, excl):
    fleet_dr, lone_dr, other = excl
    st, body = srv.http(f"/api/v1/vpp/events/{ev}/settlement?format=json", purpose="billing")
    assert st == 200, body
    res = json.loads(body)
    rows = {r["site"]: r for r in res["rows"]}
    assert len(rows) == N, len(rows)
    st, csv = srv.http(f"/api/v1/vpp/events/{ev}/settlement?format=csv", purpose="billing")
    assert st == 200, csv
    lines = csv.decode().splitlines()
    assert lines[0] == ("site,event,method,baseline_days,baseline_kwh,metered_kwh,"
                        "incremental_kwh,rate,payment"), lines[0]
    assert len(lines) == N + 1, len(lines)
    # the season: the test program's one completed event, through the API and the CLI
    year = time.gmtime(start / 1000).tm_year
    st, body = srv.http(f"/api/v1/vpp/settlement?program=test&season={year}&format=json",
                        purpose="billing")
    assert st == 200, body
    season = json.loads(body)
    assert len(season["rows"]) == N, len(season["rows"])
    tot = season["total"]
    assert tot["rows"] == N, tot
    for key in ("baseline_kwh", "metered_kwh", "incremental_kwh", "payment"):
        # printed with 3 (kWh) or 2 (money) decimals: summed in integers, exact
        dec = 100 if key == "payment" else 1000
        assert sum(round(float(r[key] or 0) * dec) for r in season["rows"]) == \
            round(float(tot[key]) * dec), key
        assert tot[key] == res["total"][key], key
    assert tot["payment"] > 0, tot
    tokf = os.path.join(env.root, "ops.token")
    with open(tokf, "w") as f:
        f.write(srv.tokens["ops"])
    r = t.run("vpp", "settle", "--season", str(year), "--program", "test", "--token-file", tokf,
              "--api", f"http://127.0.0.1:{srv.api_port}", "--purpose", "billing")
    st, season_csv = srv.http(f"/api/v1/vpp/settlement?program=test&season={year}&format=csv",
                              purpose="billing")
    assert r.stdout.encode() == season_csv, (r.stdout[:300], season_csv[:300])
    assert season_csv == csv  # one event in the season: the same rows, the same bytes
    # two sites by hand: the one that dropped out and the other one planned highest
    other_iso = utc_date(other)
    other_site = max((x["setpoint_kw"], s) for s, x in planned.items() if s != LONE)[1]
    for sid, excluded in ((LONE, {other_iso, fleet_dr, lone_dr}),
                          (other_site, {other_iso, fleet_dr})):
        want, got = hand_row(srv, sid, start, end, excluded), rows[sid]
        t.log(f"{sid}: by hand {want}, settled {got}")
        assert got["method"] == "a4_discharge" and got["rate"] == RATE, got
        assert got["baseline_days"] == want["baseline_days"], (got, want)
        assert not excluded & set(got["baseline_days"]), got
        # the C figures are rounded to whole Wh; the hand's incremental and payment follow the
        # same rounding rule, so they differ only if a figure sits on a rounding boundary
        for key, tol in (("baseline_kwh", 0.0006), ("metered_kwh", 0.0006),
                         ("incremental_kwh", 0.0011), ("payment", 0.0101)):
            assert abs(float(got[key]) - want[key]) <= tol, (sid, key, got, want)
        # and the payment is the row's own incremental Wh x rate, in cents rounded half up
        inc_wh = round(float(got["incremental_kwh"]) * 1000)
        assert round(float(got["payment"]) * 100) == (inc_wh * 20000 + 50000) // 100000, got
    assert lone_dr in rows[other_site]["baseline_days"], rows[other_site]


if __name__ == "__main__":
    t.main([test_fleet_of_200_sites_dispatched_and_covering_a_dropout])
