"""End-to-end tests of the virtual power plant (issue 10): energy sites over the real
mutual-TLS WebSocket, events created through the API (refusals as 422 with a reason),
notices and dispatch commands over the real downlink, acked by the sites, per-site status,
and an opt-out mid-event re-planned so the others cover it."""
import json
import os
import struct
import time

import fvtest as t

SITES = ["SITEVPP00000000%02d" % i for i in range(3)]
PROGRAMS = {"programs": {
    # every day, all day (UTC), short events allowed: a test can run one now
    "test": {"timezone": "UTC", "season": ["01-01", "12-31"], "window": ["00:00", "24:00"],
             "event_length": ["1m", "5h"], "yearly_hours_cap": 60},
    "capped": {"timezone": "UTC", "season": ["01-01", "12-31"], "window": ["00:00", "24:00"],
               "event_length": ["1m", "5h"], "yearly_hours_cap": 0.1},
    # settlement: the battery's own discharge against its prior 10 eligible days
    # (its sites sample an hour a day only: no day counts as an outage day here)
    "hist": {"timezone": "UTC", "season": ["01-01", "12-31"], "window": ["00:00", "24:00"],
             "event_length": ["1m", "5h"], "baseline": "a4_discharge", "rate": 2.0,
             "outage_missing_intervals": 288},
    "elrp": {},
    # only sites with an export permit and 10 kWh of battery may enrol
    "permit": {"eligibility": {"export_permit": True, "min_capacity_kwh": 10}}}}


def pb_fields(b):
    """Decodes a protobuf message into {field: [values]} (varint, 64-bit, bytes)."""
    out, i = {}, 0
    while i < len(b):
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v = struct.unpack_from("<d", b, i)[0]
            i += 8
        elif wt == 2:
            n, i = varint(b, i)
            v = bytes(b[i:i + n])
            i += n
        else:
            raise ValueError(wt)
        out.setdefault(num, []).append(v)
    return out


def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return v, i


def ack_payload(cmd_id, status=1):
    return t.pb_len(2, cmd_id) + t.pb_field(3, 0, t.pb_varint(status))


class Site:
    def __init__(self, env, srv, sid):
        crt, key = env.certs.device(sid, typ="energy_device")
        self.id, self.ws, self.n = sid, t.WS(srv.port, crt, key, env.certs.ca), 0
        self.commands = []

    def sample(self, **kw):
        self.n += 1
        self.ws.send(t.fb_envelope(f"{self.id}-{self.n}".encode(), b"site", t.site_payload(**kw)))
        self.wait_ack()

    def wait_ack(self):
        """Reads until the ack of our last message, keeping commands that arrive meanwhile."""
        while True:
            m = t.fb_decode(self.ws.recv(timeout=10)[1])
            if m["topic"] == b"site_command":
                self.commands.append(pb_fields(m["payload"]))
                continue
            assert m["message_type"] == 5, m
            return

    def read_commands(self, kind, count=1, timeout=10):
        """Waits for count commands of kind, acking each (site_command_ack)."""
        deadline = time.time() + timeout
        got = [c for c in self.commands if c.get(2, [0])[0] == kind]
        while len(got) < count and time.time() < deadline:
            try:
                m = t.fb_decode(self.ws.recv(timeout=max(0.1, deadline - time.time()))[1])
            except Exception:
                break
            if m["topic"] == b"site_command":
                c = pb_fields(m["payload"])
                self.commands.append(c)
                if c.get(2, [0])[0] == kind:
                    got.append(c)
        for c in got:
            if not c.get("acked"):
                c["acked"] = True
                self.n += 1
                self.ws.send(t.fb_envelope(f"{self.id}-{self.n}".encode(), b"site_command_ack",
                                           ack_payload(c[1][0])))
                self.wait_ack()
        self.commands = [c for c in self.commands if c not in got]
        return got


def api(srv, method, path):
    # role "ops" (fvtest: service purpose, real ids); the energy-operator role (pseudonyms,
    # consented sites only) is decided the same way
    st, body = srv.http(path, token="ops", method=method, purpose="service")
    return st, json.loads(body)


def test_events_refused_with_a_reason():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False, "vpp": PROGRAMS}).start()
        now = int(time.time() * 1000)
        st, b = api(srv, "POST", f"/api/v1/vpp/events?program=nope&start={now}&end={now + 3600000}"
                    "&target_kw=5")
        assert st == 422 and "unknown program" in b["error"], (st, b)
        # ELRP's rules: 16:00-21:00 Los Angeles, May-October, 1-5 h
        st, b = api(srv, "POST", "/api/v1/vpp/events?program=elrp&start=2027-07-01T18:00:00Z"
                    "&end=2027-07-01T20:00:00Z&target_kw=5")  # 11:00-13:00 local
        assert st == 422 and "window" in b["error"], (st, b)
        st, b = api(srv, "POST", "/api/v1/vpp/events?program=elrp&start=2027-12-01T00:00:00Z"
                    "&end=2027-12-01T02:00:00Z&target_kw=5")
        assert st == 422 and "season" in b["error"], (st, b)
        st, b = api(srv, "POST", "/api/v1/vpp/events?program=elrp&start=2027-07-01T23:30:00Z"
                    "&end=2027-07-02T00:00:00Z&target_kw=5")
        assert st == 422 and "short" in b["error"], (st, b)
        st, b = api(srv, "POST", "/api/v1/vpp/events?program=elrp&start=2027-07-01T23:00:00Z"
                    "&end=2027-07-02T01:00:00Z&target_kw=5")  # 16:00-18:00 local: fine
        assert st == 201, (st, b)
        # the yearly cap (0.1 h): a 5-minute event fits, a second one does not
        base = t.day_base(700000)  # (none of them crossing midnight UTC: a 422 for that)
        st, b = api(srv, "POST", f"/api/v1/vpp/events?program=capped&start={base + 60000}"
                    f"&end={base + 360000}&max=true")
        assert st == 201, (st, b)
        st, b = api(srv, "POST", f"/api/v1/vpp/events?program=capped&start={base + 400000}"
                    f"&end={base + 700000}&max=true")
        assert st == 422 and "cap" in b["error"], (st, b)
        st, b = api(srv, "POST", f"/api/v1/vpp/events?program=test&start={base + 60000}"
                    f"&end={base + 360000}")
        assert st == 422 and "target_kw" in b["error"], (st, b)
        # the same as a JSON body
        import urllib.request
        def post_json(obj, raw=None):
            req = urllib.request.Request(
                f"http://127.0.0.1:{srv.api_port}/api/v1/vpp/events?purpose=service",
                method="POST", data=raw if raw is not None else json.dumps(obj).encode(),
                headers={"Authorization": "Bearer " + srv.tokens["ops"],
                         "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())
        st, b = post_json({"program": "elrp", "start": "2027-12-01T00:00:00Z",
                           "end": "2027-12-01T02:00:00Z", "target_kw": 5})
        assert st == 422 and "season" in b["error"], (st, b)
        st, b = post_json(None, raw=b"{not json")
        assert st == 400 and "JSON" in b["error"], (st, b)
        st, b = post_json({"program": "elrp", "start": "2027-07-02T23:00:00Z",
                           "end": "2027-07-03T00:00:00Z", "max": True})
        assert st == 201, (st, b)
        st, b = api(srv, "GET", "/api/v1/vpp/events")
        assert len(b["events"]) == 3, b
        # the same from the shell
        tokf = os.path.join(env.root, "ops.token")
        with open(tokf, "w") as f:
            f.write(srv.tokens["ops"])
        cli = ["--token-file", tokf, "--api", f"http://127.0.0.1:{srv.api_port}",
               "--purpose", "service"]
        r = t.run("vpp", "event", "create", "--program", "elrp", "--start",
                  "2027-12-01T00:00:00Z", "--end", "2027-12-01T02:00:00Z", "--target-kw", "5",
                  *cli, check=False)
        assert r.returncode == 1 and "season" in r.stdout + r.stderr, r
        r = t.run("vpp", "event", "create", "--program", "test", "--start", str(now + 60000),
                  "--end", str(now + 360000), "--max", *cli)
        ev = json.loads(r.stdout)["id"]
        r = t.run("vpp", "event", "list", *cli)
        assert len(json.loads(r.stdout)["events"]) == 4, r.stdout
        r = t.run("vpp", "event", "cancel", ev, *cli)
        assert json.loads(r.stdout)["state"] == "cancelled", r.stdout
        r = t.run("vpp", "event", "status", ev, *cli)
        assert json.loads(r.stdout)["state"] == "cancelled", r.stdout
        assert t.run("vpp", "event", "create", "--program", "test", *cli,
                     check=False).returncode == 2
        srv.stop()


def test_dispatch_over_the_downlink_and_opt_out():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False, "vpp": PROGRAMS}).start()
        sites = [Site(env, srv, s) for s in SITES]
        for s in sites:
            s.sample(energy_kwh=10.0, capacity_kwh=13.5, reserve_pct=20.0, battery_kw=0.0)
            st, b = api(srv, "POST", f"/api/v1/vpp/sites/{s.id}/enroll?program=test")
            assert st == 200, (st, b)
        st, b = api(srv, "POST", "/api/v1/vpp/sites/NOSUCHSITE/enroll?program=test")
        assert st == 404, (st, b)
        # eligibility: a site without an export permit is refused with the reason, and stays
        # where it was; with one (its next sample), it may enrol
        sites[0].sample(energy_kwh=10.0, capacity_kwh=13.5, reserve_pct=20.0, battery_kw=0.0,
                        export_limit_kw=0.0)
        st, b = api(srv, "POST", f"/api/v1/vpp/sites/{sites[0].id}/enroll?program=permit")
        assert st == 422 and "not eligible: no export permit" in b["error"], (st, b)
        st, b = api(srv, "GET", "/api/v1/vpp/sites?program=test")
        assert st == 200 and b["count"] == 3, (st, b)
        sites[0].sample(energy_kwh=10.0, capacity_kwh=13.5, reserve_pct=20.0, battery_kw=0.0)
        st, b = api(srv, "POST", f"/api/v1/vpp/sites/{sites[0].id}/enroll?program=permit")
        assert st == 200, (st, b)
        st, b = api(srv, "POST", f"/api/v1/vpp/sites/{sites[0].id}/enroll?program=test")
        assert st == 200, (st, b)
        now = int(time.time() * 1000)
        # the capacity forecast: per site min(inverter 5, export 4 + load 1 - solar 3,
        # (10 - 20 % of 13.5) kWh / 2 h) = 2 kW, three sites
        st, b = api(srv, "GET", f"/api/v1/vpp/capacity?program=test&from={now + 3600000}"
                    f"&to={now + 3 * 3600000}")
        assert st == 200 and b["sites_counted"] == 3, (st, b)
        assert abs(b["avg_mw"] - 0.006) < 1e-9 and len(b["slots"]) == 2, b
        assert abs(b["mwh"] - 0.012) < 1e-9, b
        st, b = api(srv, "GET", f"/api/v1/vpp/capacity?program=test&from={now}"
                    f"&to={now + 2 * 86400000}")
        assert st == 422, (st, b)
        start, end = t.live_event(2000, 598000)
        st, b = api(srv, "POST", f"/api/v1/vpp/events?program=test&start={start}"
                    f"&end={end}&target_kw=6")
        assert st == 201, (st, b)
        ev = b["id"]
        # a notice ahead of the event, then at its start a dispatch, each over the downlink
        for s in sites:
            n = s.read_commands(1)
            assert n and n[0][3][0].decode() == ev, n
        setpoints = {}
        for s in sites:
            d = s.read_commands(2)
            assert d, f"{s.id} got no dispatch"
            setpoints[s.id] = d[-1][4][0]
        assert abs(sum(setpoints.values()) - 6.0) < 0.01, setpoints
        assert all(v <= 4.0 for v in setpoints.values()), setpoints  # the export limit
        # the sites deliver; the status shows every site acked and delivering
        for s in sites:
            s.sample(energy_kwh=9.9, capacity_kwh=13.5, reserve_pct=20.0,
                     battery_kw=setpoints[s.id])
        deadline = time.time() + 10
        while True:
            st, b = api(srv, "GET", f"/api/v1/vpp/events/{ev}")
            assert st == 200, b
            stat = {x["site"]: x for x in b["sites"]}
            if all(x["status"] == "delivering" for x in stat.values()) or time.time() > deadline:
                break
            time.sleep(0.3)
        assert b["state"] == "active" and abs(b["planned_kw"] - 6.0) < 0.01, b
        assert b["forecast_kw"] is not None and b["forecast_kw"] > 0, b  # kept for comparison
        assert all(x["status"] == "delivering" and x["acked"] for x in stat.values()), stat
        assert abs(b["delivered_kw"] - 6.0) < 0.01, b
        # the owner of site 0 opts out mid-event: the others are re-dispatched to cover it
        st, _ = api(srv, "POST", f"/api/v1/vpp/sites/{SITES[0]}/opt-out?event={ev}")
        assert st == 200
        stop = sites[0].read_commands(2)
        # a dispatch to 0 kW (proto3 leaves a zero target_kw out of the message)
        assert stop and stop[-1].get(4, [0.0])[0] == 0.0, stop
        new = {}
        for s in sites[1:]:
            d = s.read_commands(2)
            assert d, f"{s.id} was not re-dispatched"
            new[s.id] = d[-1][4][0]
        assert abs(sum(new.values()) - 6.0) < 0.01, new
        st, b = api(srv, "GET", f"/api/v1/vpp/events/{ev}")
        stat = {x["site"]: x for x in b["sites"]}
        assert stat[SITES[0]]["status"] == "opted_out", stat
        # cancel: the planned sites are told
        st, b = api(srv, "POST", f"/api/v1/vpp/events/{ev}/cancel")
        assert st == 200 and b["state"] == "cancelled", b
        for s in sites[1:]:
            assert s.read_commands(3), f"{s.id} got no cancel"
        st, b = api(srv, "POST", f"/api/v1/vpp/events/{ev}/cancel")
        assert st == 409, b
        for s in sites:
            s.ws.close()
        srv.stop()


def test_site_owner_data_in_export_and_erasure():
    """Opt-outs, enrolment and the site's DR days are the owner's data: in the subject export,
    gone on erasure (a DR day of every site stays)."""
    import io
    import tarfile
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False, "vpp": PROGRAMS}).start()
        site = Site(env, srv, SITES[0])
        site.sample()
        assert api(srv, "POST", f"/api/v1/vpp/sites/{site.id}/enroll?program=test")[0] == 200
        now = t.day_base(1200000)
        st, b = api(srv, "POST", f"/api/v1/vpp/events?program=test&start={now + 600000}"
                    f"&end={now + 1200000}&max=true")
        assert st == 201, b
        ev = b["id"]
        assert api(srv, "POST", f"/api/v1/vpp/sites/{site.id}/opt-out?event={ev}")[0] == 200
        assert api(srv, "POST", f"/api/v1/vpp/sites/{site.id}/dr-day?date=2026-07-04")[0] == 200
        assert api(srv, "POST", "/api/v1/vpp/dr-days?date=2026-07-05")[0] == 200
        for bad in ("2026-13-01", "2026-02-29", "07/04/2026", ""):
            st, b = api(srv, "POST", f"/api/v1/vpp/dr-days?date={bad}")
            assert st == 422 and "YYYY-MM-DD" in b["error"], (bad, st, b)
        st, b = api(srv, "GET", "/api/v1/vpp/dr-days")
        assert b["dr_days"] == [{"date": "2026-07-04", "site": site.id},
                                {"date": "2026-07-05", "site": None}], b
        po = srv.principal("paula", "privacy-officer")
        st, body = srv.http(f"/api/v1/subjects/{site.id}/export?ticket=DSAR-7", token=po,
                            purpose=None)
        assert st == 200, body
        tar = tarfile.open(fileobj=io.BytesIO(body))
        names = {m.name.split("/", 1)[1]: m for m in tar.getmembers()}
        sj = json.load(tar.extractfile(names["subject.json"]))
        vpp = sj["energy_programs"]
        assert vpp["program"] == "test" and [o["event"] for o in vpp["opt_outs"]] == [ev], vpp
        assert vpp["dr_days"] == [{"date": "2026-07-04", "site": site.id}], vpp
        st, body = srv.http(f"/api/v1/subjects/{site.id}/erase?ticket=GDPR-7", token=po,
                            method="POST", purpose=None)
        assert st == 200, body
        st, b = api(srv, "GET", f"/api/v1/vpp/capacity?program=test&from={now + 600000}"
                    f"&to={now + 1200000}")
        assert b["sites_counted"] + b["sites_offline"] == 0, b  # no longer enrolled
        import sqlite3
        con = sqlite3.connect(os.path.join(srv.data, "vpp.db"))
        assert con.execute("SELECT count(*) FROM vpp_sites").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM vpp_optouts").fetchone()[0] == 0
        assert con.execute("SELECT site, date FROM vpp_dr_days").fetchall() == [("", 20260705)]
        st, b = api(srv, "GET", "/api/v1/vpp/dr-days")
        assert b["dr_days"] == [{"date": "2026-07-05", "site": None}], b
        con.close()
        site.ws.close()
        srv.stop()


def enrolled_event(env, srv, ids, target_kw):
    """Sites ids connected, each with a sample (10 kWh of 13.5, 20 % reserve) and enrolled in
    program test, and an event starting in 1.5 s for 15 minutes; returns (sites, event id)."""
    sites = [Site(env, srv, s) for s in ids]
    for s in sites:
        s.sample(energy_kwh=10.0, capacity_kwh=13.5, reserve_pct=20.0, battery_kw=0.0)
        assert api(srv, "POST", f"/api/v1/vpp/sites/{s.id}/enroll?program=test")[0] == 200
    start, end = t.live_event(1500, 898500)
    st, b = api(srv, "POST", f"/api/v1/vpp/events?program=test&start={start}"
                f"&end={end}&target_kw={target_kw}")
    assert st == 201, (st, b)
    return sites, b["id"]


def test_restart_mid_event_plans_again():
    """A server restarted mid-event plans the event again once its sites are back: before,
    the event stayed active with no site planned and no dispatch sent until its end."""
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False, "vpp": PROGRAMS}).start()
        sites, ev = enrolled_event(env, srv, SITES[:2], 4)
        for s in sites:
            assert s.read_commands(1) and s.read_commands(2), f"{s.id}: no dispatch"
            s.ws.close()
        srv.stop()
        srv.start()
        for s in sites:  # back: reconnected and sending
            path = os.path.join(env.certs.dir, "devices", s.id)
            s.ws, s.commands = t.WS(srv.port, path + ".crt", path + ".key", env.certs.ca), []
            s.sample(energy_kwh=9.9, capacity_kwh=13.5, reserve_pct=20.0, battery_kw=2.0)
        deadline = time.time() + 20  # re-planned as each comes back (every 5 s at most)
        while True:
            st, b = api(srv, "GET", f"/api/v1/vpp/events/{ev}")
            sp = {x["site"]: x["setpoint_kw"] for x in b["sites"]}
            if (sorted(sp) == SITES[:2] and all(abs(v - 2.0) < 0.01 for v in sp.values())) or \
                    time.time() > deadline:
                break
            time.sleep(0.3)
        assert b["state"] == "active" and abs(b["planned_kw"] - 4.0) < 0.01, b
        assert sorted(sp) == SITES[:2] and all(abs(v - 2.0) < 0.01 for v in sp.values()), b
        for s in sites:
            assert s.read_commands(2, timeout=5), f"{s.id}: no dispatch after the restart"
        for s in sites:
            s.ws.close()
        srv.stop()


DAY = 86400000


def history_kw(site, k):
    """Site site's discharge (kW) on day k before the event (0: the event day), 10:00-11:00."""
    if site == 0:
        return 4.0 if k == 0 else 1.0
    if k == 3:
        return 5.0  # the program's other event day: excluded from the baseline
    return 3.0 if k == 0 else [0.0, 2.0, 0.5][k % 3]


def test_settlement_from_stored_telemetry():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False, "vpp": PROGRAMS}).start()
        now = int(time.time() * 1000)
        d0 = (now // DAY - 2) * DAY + 10 * 3600000  # 10:00 UTC two days ago
        sites = [Site(env, srv, s) for s in SITES[:2]]
        for i, s in enumerate(sites):
            for k in range(13, -1, -1):
                for m in range(12):  # a sample every 5 minutes, 10:00-10:55
                    kw = history_kw(i, k)
                    s.sample(created_ms=d0 - k * DAY + m * 300000, battery_kw=kw,
                             energy_kwh=12.0, capacity_kwh=13.5)
            st, b = api(srv, "POST", f"/api/v1/vpp/sites/{s.id}/enroll?program=hist")
            assert st == 200, b
        for k in (3, 0):  # the other event first: its day is excluded
            st, b = api(srv, "POST", f"/api/v1/vpp/events?program=hist&start={d0 - k * DAY}"
                        f"&end={d0 - k * DAY + 3600000}&target_kw=5")
            assert st == 201, (st, b)
        ev = b["id"]
        # purpose billing: rows name the payee by id (any other purpose: by pseudonym)
        st, body = srv.http(f"/api/v1/vpp/events/{ev}/settlement?format=json", token="ops",
                            purpose="billing")
        assert st == 200, body
        res = json.loads(body)
        rows = {r["site"]: r for r in res["rows"]}
        assert set(rows) == set(SITES[:2]), rows
        # the season total is the sum of its rows, exactly
        tot = res["total"]
        for key in ("baseline_kwh", "metered_kwh", "incremental_kwh", "payment"):
            assert abs(sum(float(r[key] or 0) for r in res["rows"]) - float(tot[key])) < 1e-9, key
        # by hand, from the raw telemetry read back through the query API
        for i, sid in enumerate(SITES[:2]):
            def day_kwh(k):
                q = srv.json(f"/api/v1/query?device={sid}&signals=SiteBatteryPower"
                             f"&from={d0 - k * DAY}&to={d0 - k * DAY + 3600000 - 1}")
                return sum(max(0.0, r["SiteBatteryPower"]) * 5 / 60 for r in q["rows"])
            prior = [k for k in range(1, 14) if k != 3][:10]
            base = sum(day_kwh(k) for k in prior) / 10
            metered = day_kwh(0)
            inc = max(0.0, round(metered, 3) - round(base, 3))
            r = rows[sid]
            assert abs(float(r["metered_kwh"]) - metered) < 0.0005, (r, metered)
            assert abs(float(r["baseline_kwh"]) - base) < 0.0005, (r, base)
            assert abs(float(r["incremental_kwh"]) - inc) < 0.0005, (r, inc)
            assert abs(float(r["payment"]) - round(inc * 2.0, 2)) < 0.005, r
            days = [time.strftime("%Y-%m-%d", time.gmtime((d0 - k * DAY) / 1000)) for k in prior]
            assert r["baseline_days"] == days, (r["baseline_days"], days)
        # CSV: the documented columns, the same figures
        st, body = srv.http(f"/api/v1/vpp/events/{ev}/settlement?format=csv", token="ops",
                            purpose="billing")
        lines = body.decode().splitlines()
        assert lines[0] == ("site,event,method,baseline_days,baseline_kwh,metered_kwh,"
                            "incremental_kwh,rate,payment"), lines[0]
        assert len(lines) == 3, lines
        # bit for bit the same when asked again
        st, again = srv.http(f"/api/v1/vpp/events/{ev}/settlement?format=csv", token="ops",
                            purpose="billing")
        assert again == body
        event_csv = body
        # the season: both events (over, so completed within a second), four rows, and a
        # total that is the sum of its rows
        year = time.gmtime(d0 / 1000).tm_year
        deadline = time.time() + 5
        while time.time() < deadline:
            st, b = api(srv, "GET", "/api/v1/vpp/events")
            if all(e["state"] == "completed" for e in b["events"]):
                break
            time.sleep(0.2)
        st, body = srv.http(f"/api/v1/vpp/settlement?program=hist&season={year}&format=json",
                            token="ops", purpose="billing")
        assert st == 200, body
        season = json.loads(body)
        assert len(season["rows"]) == 4, season
        for key in ("metered_kwh", "incremental_kwh", "payment"):
            assert abs(sum(float(r[key] or 0) for r in season["rows"]) -
                       float(season["total"][key])) < 1e-9, key
        tokf = os.path.join(env.root, "ops.token")
        with open(tokf, "w") as f:
            f.write(srv.tokens["ops"])
        r = t.run("vpp", "settle", "--season", str(year), "--program", "hist", "--token-file",
                  tokf, "--api", f"http://127.0.0.1:{srv.api_port}", "--purpose", "service")
        assert len(r.stdout.splitlines()) == 5, r.stdout  # header + 4 rows
        # a site that moves to another program after the event is still settled for it: the
        # event's sites are those enrolled when it ran (V5), so the figures never change
        st, b = api(srv, "POST", f"/api/v1/vpp/sites/{SITES[1]}/enroll?program=elrp")
        assert st == 200, b
        st, again = srv.http(f"/api/v1/vpp/events/{ev}/settlement?format=csv", token="ops",
                             purpose="billing")
        assert st == 200 and again == event_csv, (again, event_csv)
        for s in sites:
            s.ws.close()
        srv.stop()


if __name__ == "__main__":
    t.main([test_events_refused_with_a_reason, test_dispatch_over_the_downlink_and_opt_out,
            test_settlement_from_stored_telemetry, test_site_owner_data_in_export_and_erasure,
            test_restart_mid_event_plans_again])
