"""The downlink across a cluster (issue 15: "a downlink command reaches a device connected to
the other gateway"; docs/cluster.md, "Downlink"; cluster/jsdownlink.h): a real
`nats-server -js`, one storage node (the VPP and its API) and two gateways; simulated home
batteries connect to BOTH gateways. The storage node hears their samples over NATS (its VPP
learns them), an event made through its API dispatches them: every planned site, whichever
gateway holds it, acks the command and delivers its setpoint (its acks and samples came
back over NATS), and both simulators count the commands they got. The nodes' metrics and
logs count what went each way."""
import json
import os
import re
import subprocess
import time

import fvtest as t
from test_cluster import Gateway, Nats, cluster_cfg, kill_gateways
from test_sim_sites import PROGRAMS, local_noon_offset

SITES = 3  # per gateway


def start_sim(env, gw, k):
    log = open(os.path.join(env.root, f"sim{k}.log"), "a")
    sim = subprocess.Popen(
        [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{gw.port}", "--certs", env.certs.dir,
         "--hz", "1", "--drain", "5", "--seed", str(3 + k), "--offline-pct", "0", "--quiet",
         "--vehicles", "1", "--id-prefix", f"5YJGW{k}", "--sites", str(SITES), "--site-prefix", f"SITEGW{k}",
         "--days", "0", "--seconds", "300", "--opt-out-pct", "0",
         "--utc-offset", str(local_noon_offset())],
        stdout=subprocess.PIPE, stderr=log, text=True)
    return sim, log


def site_ids(k):
    return [f"SITEGW{k}%010d" % i for i in range(SITES)]  # the simulator's 17-character ids


def api(srv, method, path):
    st, body = srv.http(path, token="ops", method=method, purpose="service")
    return st, json.loads(body)


def metric(srv, name):
    st, body = srv.http("/metrics")
    assert st == 200, body
    m = re.search(r"^%s (\d+)$" % name, body.decode() if isinstance(body, bytes) else body, re.M)
    assert m, name
    return int(m.group(1))


def test_vpp_dispatch_reaches_sites_on_both_gateways():
    with t.Env() as env:
        nats = Nats(env.root).start()
        sims = []
        try:
            st_root = os.path.join(env.root, "storage")
            os.makedirs(st_root)
            storage = t.Server(st_root, env.certs, config={
                "cluster": cluster_cfg(nats), "vpp": PROGRAMS},
                extra=["--role", "storage", "--no-rate-limit"]).start()
            gws = [Gateway(os.path.join(env.root, f"gw{k}"), env.certs, storage.key_file,
                           {"cluster": cluster_cfg(nats)}).start() for k in range(2)]
            sims = [start_sim(env, gw, k) for k, gw in enumerate(gws)]
            ids = {k: site_ids(k) for k in range(2)}
            # Enrolment needs the VPP to know the site from its samples: they reach the
            # storage node's VPP over NATS (N3, N4).
            for k in range(2):
                for sid in ids[k]:
                    deadline = time.time() + 30
                    while True:
                        st, b = api(storage, "POST", f"/api/v1/vpp/sites/{sid}/enroll?program=test")
                        if st == 200 or time.time() > deadline:
                            break
                        time.sleep(0.5)
                    assert st == 200, (sid, st, b)
            now = int(time.time() * 1000)
            st, b = api(storage, "POST", f"/api/v1/vpp/events?program=test&start={now + 2000}"
                        f"&end={now + 600000}&max=true")
            assert st == 201, (st, b)
            ev = b["id"]
            deadline = time.time() + 40
            while True:
                st, b = api(storage, "GET", f"/api/v1/vpp/events/{ev}")
                assert st == 200, b
                planned = [x for x in b.get("sites", []) if x["setpoint_kw"] > 0]
                if (b["state"] == "active" and planned and
                        all(x["acked"] and x["status"] == "delivering" for x in planned)) or \
                        time.time() > deadline:
                    break
                time.sleep(0.5)
            t.log(f"event status: {json.dumps(b)}")
            assert b["state"] == "active", b
            for x in planned:
                assert x["acked"] and x["status"] == "delivering", x
                assert abs(x["battery_kw"] - x["setpoint_kw"]) < 0.05, x
            on = {k: [x for x in planned if x["site"] in ids[k]] for k in range(2)}
            assert on[0] and on[1], ("a site on each gateway dispatched", b)
            published = metric(storage, "fleetvault_cluster_downlink_published_total")
            received = metric(storage, "fleetvault_cluster_downlink_received_total")
            assert published >= len(planned), published
            assert received > 0, received
            finals = [t.stop_sim(sim, log) for sim, log in sims]
            sims = []
            for k, final in enumerate(finals):
                assert final["sites"] == SITES and final["errors"] == 0, final
                assert final["commands"] >= len(on[k]) and final["commands_refused"] == 0, \
                    (k, final)
            for gw in gws:
                gw.stop()
            for k, gw in enumerate(gws):
                line = re.search(r"downlink: (\d+) commands from the cluster, (\d+) delivered "
                                 r"here, (\d+) for devices not connected here", gw.log())
                assert line, gw.log()[-2000:]
                got, delivered, not_here = map(int, line.groups())
                # every gateway hears every command; only the holder delivers it
                assert got == delivered + not_here and delivered >= len(on[k]), line.group(0)
                assert not_here >= len(on[1 - k]), line.group(0)
            storage.stop()
        finally:
            for sim, log in sims:
                sim.kill()
                sim.wait()
                log.close()
            kill_gateways()
            nats.stop()


if __name__ == "__main__":
    t.main([test_vpp_dispatch_reaches_sites_on_both_gateways])
