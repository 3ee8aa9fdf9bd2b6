"""The downlink across a cluster (issue 15: "a downlink command reaches a device connected to
the other gateway"; docs/cluster.md, "Downlink"; cluster/jsdownlink.h): a real
`nats-server -js`, one storage node (the VPP and its API) and two gateways; simulated home
batteries connect to BOTH gateways. The storage node hears their samples over NATS (its VPP
learns them), an event made through its API dispatches them: every planned site, whichever
gateway holds it, acks the command and delivers its setpoint (its acks and samples came
back over NATS), and both simulators count the commands they got. The nodes' metrics and
logs count what went each way. Second: a data-collection campaign made on the storage node
reaches vehicles on both gateways, their acks and hits come back, and so does the stop; a
NATS client without the master key, subscribed to every downlink and presence subject
meanwhile, sees no vehicle's id in any message, and a command it forges in the old clear
envelope is refused by both gateways (cluster/jsenvelope.h E1-E2)."""
import json
import os
import re
import socket
import subprocess
import threading
import time
from contextlib import contextmanager

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


class Eavesdropper:
    """A plain NATS client (the text protocol) subscribed to fvdl.>: every downlink and
    presence message any node publishes, as (subject, payload)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.recv(4096)  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB fvdl.> 1\r\n'
                          b'PING\r\n')
        self.msgs, self.buf, self.stop = [], b"", False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        self.sock.settimeout(0.5)
        while not self.stop:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            self.buf += chunk
            while True:
                line, sep, rest = self.buf.partition(b"\r\n")
                if not sep:
                    break
                if line.startswith(b"MSG "):
                    parts = line.split()
                    n = int(parts[-1])
                    if len(rest) < n + 2:
                        break  # the payload is not all here yet
                    self.msgs.append((parts[1].decode(), rest[:n]))
                    self.buf = rest[n + 2:]
                    continue
                if line == b"PING":
                    self.sock.sendall(b"PONG\r\n")
                self.buf = rest

    def publish(self, subject, payload):
        self.sock.sendall(f"PUB {subject} {len(payload)}\r\n".encode() + payload + b"\r\n")

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


@contextmanager
def cluster(env, storage_config):
    """nats-server, a storage node (API, VPP, campaigns) and two gateways; yields (storage,
    gateways, sims: a list of (process, log) the test appends to, killed at the end)."""
    nats = Nats(env.root).start()
    env.nats = nats
    sims = []
    try:
        st_root = os.path.join(env.root, "storage")
        os.makedirs(st_root)
        storage = t.Server(st_root, env.certs, config={"cluster": cluster_cfg(nats),
                                                       **storage_config},
                           extra=["--role", "storage", "--no-rate-limit"]).start()
        gws = [Gateway(os.path.join(env.root, f"gw{k}"), env.certs, storage.key_file,
                       {"cluster": cluster_cfg(nats)}).start() for k in range(2)]
        yield storage, gws, sims
    finally:
        for sim, log in sims:
            if sim.poll() is None:
                sim.kill()
            sim.wait()
            log.close()
        kill_gateways()
        nats.stop()


def test_vpp_dispatch_reaches_sites_on_both_gateways():
    with t.Env() as env, cluster(env, {"vpp": PROGRAMS}) as (storage, gws, sims):
        sims += [start_sim(env, gw, k) for k, gw in enumerate(gws)]
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
        start, end = t.live_event(2000, 598000)
        st, b = api(storage, "POST", f"/api/v1/vpp/events?program=test&start={start}"
                    f"&end={end}&max=true")
        assert st == 201, (st, b)
        ev = b["id"]
        last = {}

        def delivering():  # every planned site acked and delivering its setpoint
            st, last["b"] = api(storage, "GET", f"/api/v1/vpp/events/{ev}")
            assert st == 200, last
            p = [x for x in last["b"].get("sites", []) if x["setpoint_kw"] > 0]
            return last["b"]["state"] == "active" and p and all(
                x["acked"] and x["status"] == "delivering" for x in p)
        try:
            t.wait_until("the planned sites delivering", delivering, 40, step=0.5)
        finally:
            b = last.get("b")
            t.log(f"event status: {json.dumps(b)}")
        planned = [x for x in b["sites"] if x["setpoint_kw"] > 0]
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
        del sims[:]
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


def test_campaign_reaches_vehicles_on_both_gateways():
    from test_campaigns import call, spec
    vins = ["5YJCMG%d%010d" % (k, 0) for k in range(2)]
    with t.Env() as env, cluster(env, {}) as (storage, gws, sims):
        spy = Eavesdropper(env.nats.port)
        storage.principal("dee", "data-engineer")
        po = storage.principal("paula", "privacy-officer")
        for k, gw in enumerate(gws):
            log = open(os.path.join(env.root, f"sim{k}.log"), "a")
            sims.append((subprocess.Popen(
                [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{gw.port}", "--certs",
                 env.certs.dir, "--vehicles", "1", "--id-prefix", f"5YJCMG{k}", "--hz", "2",
                 "--seconds", "120", "--drain", "5", "--seed", "7", "--quiet"],
                stdout=subprocess.PIPE, stderr=log, text=True), log))

        def known():  # the storage node's fleet, from the stream
            fl = storage.json("/api/v1/fleet?signal=VehicleSpeed")
            return all(d in {v["device"] for v in fl["vehicles"]} for d in vins)
        t.wait_until("both vehicles on the storage node", known, 30, step=0.3)
        for d in vins:
            st, b = storage.http(f"/api/v1/subjects/{d}/consent?purpose=clips&change=give"
                                 f"&ticket=DSR-1", token=po, method="POST", purpose=None)
            assert st == 200, (st, b)
        st, c = call(storage, "POST", "/api/v1/campaigns", "dee", spec())
        assert st == 201 and c["targeted"] == 2, (st, c)
        cid = c["id"]

        def status(ok):
            st, s = call(storage, "GET", f"/api/v1/campaigns/{cid}", "dee")
            assert st == 200, (st, s)
            return s if ok(s) else None
        t.wait_until("the start acked and a hit from each vehicle", lambda: status(
            lambda s: s["delivered"] == 2 and s["hits"] == 2), 30, step=0.3)
        st, x = call(storage, "POST", f"/api/v1/campaigns/{cid}/stop", "dee")
        assert st == 200 and x["state"] == "stopped", (st, x)
        t.wait_until("both stops acked", lambda: status(lambda s: s["stop_acked"] == 2), 30,
                     step=0.3)
        # A command forged by the NATS client, in the old envelope (version 1, in clear): a
        # "start" of this campaign for vehicle 0 under a new message id. Both gateways refuse
        # it (it is not sealed) and the vehicle gets nothing more.
        subjects = {subj for subj, _ in spy.msgs}
        cmd = [x for x in subjects if x.endswith(".cmd")]
        assert cmd and any(x.endswith(".up") for x in subjects) and \
            any(x.endswith(".presence") for x in subjects), subjects
        malformed = [gw.metrics()["fleetvault_cluster_downlink_malformed_total"] for gw in gws]
        forged = bytes([1, 1, len(vins[0])]) + vins[0].encode() + bytes([8]) + b"campaign" + \
            bytes([6]) + b"forged" + b"{}"
        spy.publish(cmd[0], forged)
        t.wait_until("both gateways refusing the forged command", lambda: all(
            gw.metrics()["fleetvault_cluster_downlink_malformed_total"] > malformed[k]
            for k, gw in enumerate(gws)), 10, step=0.2)
        finals = [t.stop_sim(sim, log) for sim, log in sims]
        del sims[:]
        for final in finals:  # the start and the stop; one hit each
            assert final["campaigns"] >= 2 and final["campaign_hits"] == 1, final
        spy.close()
        # What the NATS client saw: commands, replies, connects and presence, none with a
        # vehicle's id in it.
        assert len(spy.msgs) >= 6, len(spy.msgs)
        for subj, payload in spy.msgs:
            if payload == forged:
                continue
            for v in vins:
                assert v.encode() not in payload, (subj, payload[:80])
        for gw in gws:
            assert "sealed envelope" in gw.log(), gw.log()[-2000:]  # the refusal, logged
        storage.stop()


if __name__ == "__main__":
    t.main([test_vpp_dispatch_reaches_sites_on_both_gateways,
            test_campaign_reaches_vehicles_on_both_gateways])
