"""End-to-end test of an OpenADR history report in a cluster (docs/cluster.md rule 17,
server/clusterven.h): the VEN runs on storage node st-a, whose store holds only the shards it
leases; the report must count every enrolled site, those whose shards st-b holds too.

One nats-server, storage node st-a (VPP programs, the VEN configured for the test VTN) and a
gateway; sixteen simulated home batteries stream through the gateway and enrol on st-a while it
holds every shard. Storage node st-b joins and takes half the shards (the fair share): the
moved sites' later samples are stored on st-b only. The VTN asks for a history report of a
window after that; its intervals must equal the sums computed from each site's raw samples,
read from the node that holds them. Both storage nodes audit their part (openadr.history,
"part").

Before this, st-a's VEN read its own store alone: the moved sites counted 0 (the test checks
that some sites moved and some did not, so that it fails that way)."""
import json
import os
import subprocess
import time

import clustertest
import fvtest as t
from oadr_vtn import TestVTN
from test_cluster import with_nats
from test_openadr import MC, PROGRAMS, ask_history, history_sums, local_noon_offset

SITES = ["SITESIM%010d" % i for i in range(16)]  # the simulator's names


def test_cluster_openadr():
    with_nats(run)


def ven_node(env, nats, vtn):
    """st-a: a storage node with the VPP's programs and the VEN."""
    root = os.path.join(env.root, "a")
    os.makedirs(root)
    ocfg = vtn.ven_config({MC: {"program": "test"}}, report_interval_s=1)
    return t.Server(root, env.certs, config={
        "cluster": clustertest.cfg(nats, node="st-a"), "store": {"flush_interval": "2s"},
        "vpp": PROGRAMS, "openadr": ocfg}, extra=["--role", "storage", "--no-rate-limit"]).start()


def api(srv, method, path):
    st, body = srv.http(path, token="ops", method=method, purpose="service")
    return st, json.loads(body) if body else None


def rows(srv, sid, fields, start, end):
    st, body = srv.http(f"/api/v1/query?device={sid}&signals={fields}&from={start}&to={end}",
                        token="ops", purpose="service")
    return json.loads(body)["rows"] if st == 200 else []


def expected(nodes, start, step, n):
    """Per interval, the sums the report must carry (openadr/ven.h N11), from each site's raw
    samples on the node that holds most of them in the window; and which node that is."""
    site_rows, held = [], {}
    for sid in SITES:
        got = []
        for name, srv in nodes.items():
            rs = rows(srv, sid, "SiteBatteryPower,SiteEnergy,SiteCapacity,SiteReserve", start,
                      start + n * step - 1)
            if len(rs) > len(got):
                got, held[sid] = rs, name
        site_rows.append(got)
    return history_sums(site_rows, start, step, n), held


def run(env, nats):
    t0 = time.time()
    with TestVTN(env.root, poll_s=1) as vtn:
        a = ven_node(env, nats, vtn)
        gw = clustertest.gateway(env, nats, a.key_file)
        slog = open(os.path.join(env.root, "sim.log"), "a")
        sim = subprocess.Popen(
            [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{gw.port}", "--certs",
             env.certs.dir, "--sites", str(len(SITES)), "--days", "0", "--seconds", "120",
             "--hz", "1", "--drain", "5", "--seed", "5", "--offline-pct", "0", "--opt-out-pct",
             "0", "--quiet", "--utc-offset", str(local_noon_offset())],
            stdout=subprocess.PIPE, stderr=slog, text=True)
        b = None
        try:
            b = check(env, nats, a, vtn)
        finally:
            sim.send_signal(2)
            sim.communicate(timeout=60)
            slog.close()
            gw.stop()
        bad = [(m.service, m.name, m.errors) for m in vtn.received if not m.valid]
        assert not bad, bad
        for srv in (a, b):  # each storage node audited its part of the report (H2)
            srv.stop()
            out = t.run("audit", "query", "--data", srv.data).stdout
            parts = [x for x in out.splitlines() if '"openadr.history"' in x and '"part":true' in x]
            assert parts, (srv.data, out[-2000:])
    t.log(f"the run: {time.time() - t0:.1f} s")


def check(env, nats, a, vtn):
    """The sites enrol on st-a while it holds every shard; st-b then takes half of them, and
    the report covers a window after that: the moved sites' samples are on st-b only."""
    t.wait_until("registration", lambda: vtn.registration_id, timeout=40)
    todo = list(SITES)

    def enrolled():  # each once st-a has heard of it (it holds every shard yet)
        todo[:] = [sid for sid in todo
                   if api(a, "POST", f"/api/v1/vpp/sites/{sid}/enroll?program=test")[0] != 200]
        return not todo
    t.wait_until("every site enrolled on st-a's VPP", enrolled, timeout=40, step=0.5)
    b = clustertest.node(env, "b", nats, "storage", a.key_file, node="st-b")
    clustertest.wait_split(env, nats)

    step, n = 5000, 4
    start = (int(time.time() * 1000) + 2000 + step - 1) // step * step
    time.sleep(max(0.0, (start + n * step) / 1000 - time.time()) + 2.5)  # past and stored
    nodes = {"st-a": a, "st-b": b}
    want, held = expected(nodes, start, step, n)
    t.log(f"sites held in the window: {sorted(held.items())}")
    assert len(held) == len(SITES), held
    moved = [sid for sid, name in held.items() if name == "st-b"]
    assert moved and len(moved) < len(SITES), held  # the report needs both nodes
    assert all(w["stored_kwh"] > 0 for w in want), want  # the test has data to check

    ask_history(vtn, "rr-hist", start, step, n, want, timeout=30)
    t.log(f"history report of {n} intervals over both nodes' sites ({len(moved)} moved to "
          f"st-b) matches: {want}")
    return b


if __name__ == "__main__":
    t.main([test_cluster_openadr])
