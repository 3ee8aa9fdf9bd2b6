"""The web console in a real browser (issue 14, items 1-2; docs/console.md): a real server
with simulated vehicles (an hour of history, then live) and energy sites, a vehicle whose
track crosses a privacy zone, and principals of several roles; then tests/browser/console.mjs
(playwright-core driving Debian's chromium headless) signs in, opens every page, checks what
it shows against what is known here, and saves a screenshot of each page under
FV_BROWSER_OUT (build/Testing/browser/)."""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import fvtest as t  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.environ.get("FV_BROWSER_OUT", os.path.join(t.REPO, "build", "Testing", "browser"))
VEHICLES = 3
SITES = ["SITESIM%010d" % i for i in range(3)]
DAY = 86400000
PROGRAMS = {"programs": {  # every day, all day (UTC), short events: one can run now
    "test": {"timezone": "UTC", "season": ["01-01", "12-31"], "window": ["00:00", "24:00"],
             "event_length": ["1m", "5h"], "yearly_hours_cap": 60}}}
TRACK = "5YJ3E1EA7KF000314"  # a drive of 30 points, 100 m apart, through a privacy zone
LAT, LON = 59.91, 10.75


# "viewer": service reads with a ticket, locations with the location-privacy obligations
POLICY = t.test_policy({"viewer": t.role({"service": ["default", "location"]},
                                         requires_ticket=True, location_privacy=True),
                        # "exporter": bulk exports of more than one vehicle need approval
                        "exporter": t.role({"service": ["default"]},
                                           bulk_subjects_threshold=1)})


def drive(env, srv, now):
    """TRACK drives 30 points north, one every 10 s, ending 5 minutes ago; a privacy zone of
    its owner lies around point 15."""
    crt, key = env.certs.device(TRACK)
    ws = t.WS(srv.port, crt, key, env.certs.ca)
    t0 = now - 300000 - 29 * 10000
    for i in range(30):
        d = [(4, 40.0), (8, 70.0 - i * 0.1), (21, (round(LAT + i * 0.0009, 7), LON))]
        ws.send(t.fb_envelope(f"d-{i}".encode(), b"V", t.v_payload(d, t0 + i * 10000)))
        assert t.fb_decode(ws.recv()[1])["message_type"] == 5
    ws.close()
    t.run("subject", "zone", TRACK, "add", "home", str(round(LAT + 15 * 0.0009, 7)), str(LON),
          "150", "--data", srv.data, "--key-file", srv.key_file)


def api(srv, method, path, purpose="service"):
    st, body = srv.http(path, token="ops", method=method, purpose=purpose)
    return st, body if path.endswith("csv") else json.loads(body)


def vpp(srv, now):
    """The sites' history in, they are enrolled; an event yesterday (completed: settled) and
    one running now. Returns what the energy page must show."""
    t.wait_until("the sites' history", lambda: len(srv.json(
        f"/api/v1/query?device={SITES[-1]}&signals=SiteEnergy&from={now - 2 * DAY}"
        f"&to={now}")["rows"]) >= 2 * 288 - 2, timeout=60)
    for sid in SITES:
        st, b = api(srv, "POST", f"/api/v1/vpp/sites/{sid}/enroll?program=test")
        assert st == 200, (sid, st, b)
    # yesterday evening at the homes (their local time is about noon now): batteries discharge
    # (an hour that would cross midnight UTC, the program's, ends at it: 422 otherwise)
    past = (now - 17 * 3600000) // 300000 * 300000
    past = min(past, (past // DAY + 1) * DAY - 3600000)
    st, b = api(srv, "POST", f"/api/v1/vpp/events?program=test&start={past}"
                f"&end={past + 3600000}&target_kw=4")
    assert st == 201, (st, b)
    done = b["id"]
    start, end = t.live_event(1000, 599000)
    st, b = api(srv, "POST", f"/api/v1/vpp/events?program=test&start={start}"
                f"&end={end}&target_kw=6")
    assert st == 201, (st, b)
    live = b["id"]
    t.wait_until("the live event delivering", lambda: api(
        srv, "GET", f"/api/v1/vpp/events/{live}")[1]["delivered_kw"] > 0, timeout=30)
    st, settled = api(srv, "GET", f"/api/v1/vpp/events/{done}/settlement?format=json")
    assert st == 200 and len(settled["rows"]) == len(SITES), (st, settled)
    st, csv = api(srv, "GET", f"/api/v1/vpp/events/{done}/settlement?format=csv")
    assert st == 200, csv
    st, b = api(srv, "GET", f"/api/v1/vpp/events/{live}", purpose="billing")
    assert st == 403, (st, b)
    return {"sites": SITES, "done": done, "live": live, "total": settled["total"],
            "notes": [r.get("note") for r in settled["rows"]],
            "csv": csv.decode(), "refusal_billing": b["error"]}


def campaign(srv, devices):
    """A campaign made by a data engineer (purpose clips), targeting the two vehicles whose
    owners consent to clips; what the catalog page must show."""
    for dev in devices[:2]:
        st, body = srv.http(f"/api/v1/subjects/{dev}/consent?purpose=clips&change=give"
                            f"&ticket=DSR-1", token=t.APPROVER, method="POST", purpose=None)
        assert st == 200, (dev, st, body)
    spec = {"name": "hard-braking", "trigger": "VehicleSpeed > 200 for 2s", "pre_s": 10,
            "post_s": 5, "channels": ["VehicleSpeed", "camera_front"],
            "budgets": {"clips_per_vehicle_per_day": 1, "total_clips": 100,
                        "total_bytes": 1 << 30}}
    port = srv.api_port
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/campaigns?purpose=clips",
                                 method="POST", data=json.dumps(spec).encode())
    req.add_header("Authorization", "Bearer " + srv.tokens["dee"])
    with urllib.request.urlopen(req, timeout=10) as r:
        cid = json.loads(r.read())["id"]
    st, body = srv.http(f"/api/v1/campaigns/{cid}", token="dee", purpose="clips")
    assert st == 200, (st, body)
    status = json.loads(body)
    assert status["targeted"] == 2, status
    st, body = srv.http("/api/v1/datasets", token="dee", purpose="model_training")
    assert st == 403, (st, body)
    return {"id": cid, "status": status, "refusal_datasets": json.loads(body)["error"]}


def start_sim(env, srv, *args):
    log = open(os.path.join(env.root, "sim.log"), "a")
    return subprocess.Popen(
        [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{srv.port}", "--certs", env.certs.dir,
         "--drain", "5", "--seed", "3", "--quiet", *args],
        stdout=subprocess.PIPE, stderr=log, text=True), log


def test_console():
    if not os.path.exists("/usr/bin/chromium"):
        raise AssertionError("/usr/bin/chromium is missing: run scripts/deps.sh")
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False, "vpp": PROGRAMS},
                       policy=POLICY).start()
        now = int(time.time() * 1000)
        srv.principal("viewer", "viewer")
        srv.principal("exporter", "exporter")
        srv.principal("dee", "data-engineer")
        srv.principal("trainer", "ml-pipeline")
        drive(env, srv, now)
        # an hour of history of the fleet, stamped in the past, sent as fast as acked
        hist, hist_log = start_sim(env, srv, "--vehicles", str(VEHICLES), "--seconds", "3600",
                                   "--hz", "1", "--virtual-time", str(now - 3700 * 1000))
        out, _ = hist.communicate(timeout=120)
        hist_log.close()
        final = json.loads(out.strip().splitlines()[-1])
        assert final["acked"] == VEHICLES * 3600, final
        # then live: the same vehicles connected, sending at 2 Hz, and home batteries with two
        # days of history, at about noon local time (energy to deliver)
        h = time.gmtime().tm_hour
        noon = 12 - h if 12 - h <= 12 else -12 - h
        live, live_log = start_sim(env, srv, "--vehicles", str(VEHICLES), "--seconds", "600",
                                   "--hz", "2", "--sites", str(len(SITES)), "--days", "2",
                                   "--opt-out-pct", "0", "--offline-pct", "0",
                                   "--utc-offset", str(noon))
        try:
            t.wait_until("the live vehicles connected",
                         lambda: srv.metric("fleetvault_connections")
                         >= VEHICLES, timeout=20)
            energy = vpp(srv, now)
            time.sleep(3)  # a few samples of the counters (api/stats_hist.h: every 2 s)
            st, body = srv.http("/api/v1/vehicles", purpose="model_training")
            assert st == 403, (st, body)
            refused_purpose = json.loads(body)["error"]
            devices = [v["id"] for v in srv.json("/api/v1/vehicles")["vehicles"]]
            # what the server serves the viewer of the track (the page must show the same)
            q = f"/api/v1/query?device={TRACK}&signals=Location&from={now - 3600000}"
            st, body = srv.http(q, token="viewer", purpose="service")
            assert st == 403, (st, body)
            no_ticket = json.loads(body)["error"]
            st, body = srv.http(q + "&ticket=T-1", token="viewer", purpose="service")
            rows = json.loads(body)["rows"]
            withheld = sum(1 for r in rows if r["Location"] is None)
            assert len(rows) == 30 and 5 <= withheld < 30, rows
            st, body = srv.http("/api/v1/exports?signals=Soc", token="exporter", method="POST")
            pend = json.loads(body)
            assert st in (200, 201, 202) and pend["status"] == "pending", (st, body)
            st, body = srv.http("/api/v1/audit?principal=ops", token=t.APPROVER, purpose=None)
            assert st == 403, (st, body)
            catalog = campaign(srv, [d for d in devices if d != TRACK])
            sc = {"api_port": srv.api_port, "out": OUT, "tokens": dict(srv.tokens),
                  "devices": devices, "connected_min": VEHICLES,
                  "records_min": VEHICLES * 3600,
                  "energy": energy, "catalog": catalog, "track": TRACK, "officer": t.APPROVER,
                  "privacy": {"pending": pend["id"], "no_ticket": json.loads(body)["error"]}, "track_withheld": withheld, "vehicles": VEHICLES,
                  "refusals": {"vehicles_model_training": refused_purpose,
                               "query_no_ticket": no_ticket}}
            path = os.path.join(env.root, "scenario.json")
            with open(path, "w") as f:
                json.dump(sc, f)
            shutil.rmtree(OUT, ignore_errors=True)
            r = subprocess.run(["node", os.path.join(HERE, "console.mjs"), path],
                               capture_output=True, text=True, timeout=120)
            t.log(r.stdout + r.stderr)
            assert r.returncode == 0, "browser checks failed:\n" + r.stdout + r.stderr
        finally:
            t.stop_sim(live, live_log)
        srv.stop()  # a clean exit (under ASan: no leak)


if __name__ == "__main__":
    t.main([test_console])
