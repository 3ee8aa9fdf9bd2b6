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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import fvtest as t  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.environ.get("FV_BROWSER_OUT", os.path.join(t.REPO, "build", "Testing", "browser"))
VEHICLES = 3
TRACK = "5YJ3E1EA7KF000314"  # a drive of 30 points, 100 m apart, through a privacy zone
LAT, LON = 59.91, 10.75


# "viewer": service reads with a ticket, locations with the location-privacy obligations
POLICY = t.test_policy({"viewer": t.role({"service": ["default", "location"]},
                                       requires_ticket=True, location_privacy=True)})


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
        srv = t.Server(env.root, env.certs, config={"rate_limits": False},
                       policy=POLICY).start()
        now = int(time.time() * 1000)
        srv.principal("viewer", "viewer")
        drive(env, srv, now)
        # an hour of history of the fleet, stamped in the past, sent as fast as acked
        hist, hist_log = start_sim(env, srv, "--vehicles", str(VEHICLES), "--seconds", "3600",
                                   "--hz", "1", "--virtual-time", str(now - 3700 * 1000))
        out, _ = hist.communicate(timeout=120)
        hist_log.close()
        final = json.loads(out.strip().splitlines()[-1])
        assert final["acked"] == VEHICLES * 3600, final
        # then live: the same vehicles connected, sending at 2 Hz
        live, live_log = start_sim(env, srv, "--vehicles", str(VEHICLES), "--seconds", "600",
                                   "--hz", "2")
        try:
            t.wait_until("the live vehicles connected",
                         lambda: srv.metric("fleetvault_connections")
                         >= VEHICLES, timeout=20)
            time.sleep(5)  # a few samples of the counters (api/stats_hist.h: every 2 s)
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
            sc = {"api_port": srv.api_port, "out": OUT, "tokens": dict(srv.tokens),
                  "devices": devices, "connected_min": VEHICLES,
                  "records_min": VEHICLES * 3600,
                  "track": TRACK, "track_withheld": withheld, "vehicles": VEHICLES,
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


if __name__ == "__main__":
    t.main([test_console])
