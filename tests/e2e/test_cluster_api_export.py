"""Bulk exports through an api node (docs/cluster.md rule 16, clusterapi.h Q12; issue 15): one
nats-server (max_payload 8192: answers over 7 KiB come in pieces), two storage nodes splitting
the shards, a gateway and an api node. A simulated fleet streams onto both storage nodes; then
on the api node:
- an export of every vehicle is pending (its subjects the cluster's count), listed to the
  privacy officer, approved by them (a second principal), and downloaded once: every vehicle
  of both storage nodes with exactly the rows each storage node's own export has, plus three
  canaries of three rows each (named in the api node's audit log);
- a pseudonymising role's export the same, vehicles named by their per-purpose pseudonyms;
- a purpose the role lacks is refused; a devices= list counts its names, an unknown name 404;
- a storage node stopped (SIGSTOP, its leases live): the download is 504 before its first
  byte and stays downloadable; with a stand-in answering only "ready" for the stopped node,
  the download starts and is cut (the client sees a short chunked body), audited "error".
Before Q11 the api node made every export from its own empty fleet (0 vehicles)."""
import csv
import http.client
import io
import json
import os
import signal
import subprocess
import time

import clustertest
import fvtest as t
from test_cluster import acked_records, with_nats
from test_cluster_api import PROBE

# 12 vehicles: the test needs some on each storage node (a shard is a pseudonym's hash: with 8,
# all on one node is 1 run in 128).
VEHICLES, SECONDS = 12, 4
TTL_MS = 15000  # a stopped node's leases outlive the test's last reads
POLICY = t.test_policy({
    "exporter": t.role({"service": ["default", "location"]}, bulk_subjects_threshold=1),
    "pexporter": t.role({"service": ["default"]}, pseudonymise=True, bulk_subjects_threshold=1),
    "metered": t.role({"service": ["default"]},
                      quota={"subjects_per_day": None, "rows_per_day": 30, "bytes_per_day": None})})
SIGNALS = "Soc,VehicleSpeed"


def node(env, name, nats, role, key_file=None, **extra):
    return clustertest.node(env, name, nats, role, key_file, policy=POLICY, ttl_ms=TTL_MS, **extra)


def post(srv, path, tok):
    return srv.http(path, token=tok, method="POST", purpose=None)


def make(srv, tok, query, pending=True):
    """A bulk export asked for and approved by the privacy officer: its creation answer."""
    st, b = post(srv, "/api/v1/exports?" + query, tok)
    assert st == (202 if pending else 201), (srv.root, st, b)
    j = json.loads(b)
    if st == 202:
        st, b = post(srv, f"/api/v1/exports/{j['id']}/approve", "po")
        assert st == 200 and json.loads(b)["approved_by"] == "po", (st, b)
    return j


def download(srv, tok, xid):
    st, body = srv.http(f"/api/v1/exports/{xid}", token=tok, purpose=None)
    assert st == 200, (srv.root, st, body)
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0] == ["device", "t"] + SIGNALS.split(","), rows[0]
    return rows[1:]


def own_rows(srv, tok, query):
    """A storage node's own export of its vehicles (the single node's code): its rows."""
    st, b = post(srv, "/api/v1/exports?" + query, tok)
    assert st in (201, 202), (srv.root, st, b)
    xid = json.loads(b)["id"]
    if st == 202:
        assert post(srv, f"/api/v1/exports/{xid}/approve", "po")[0] == 200
    canaries = canaries_of(srv, xid)
    assert len(canaries) == 3, canaries
    return [r for r in download(srv, tok, xid) if r[0] not in canaries]


def canaries_of(srv, xid):
    """The canaries an export's export.create entry names (as its file shows them)."""
    found = set()

    def named():
        found.clear()
        found.update(c for e in audit(srv) if e.get("action") == "export.create" and
                     xid in json.dumps(e) for c in e.get("subjects", []))
        return found
    t.wait_until("the export's canaries in the audit log", named, timeout=10, step=0.2)
    return set(found)


def ready_standin(nats, key_file):
    """Answers every shard's "ready" (Q12's first look) as an owner would, and nothing else: a
    stopped node's rows are then never answered (tests/support/fvq_probe --ready-owner, which
    seals as the nodes do: jsquery.h J5). Returns the process once it listens."""
    p = subprocess.Popen([PROBE, "--ready-owner", f"nats://127.0.0.1:{nats.port}", "FLEETVAULT",
                          key_file], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def audit(srv):
    """The node's export entries; [] while the CLI finds the log mid-write (callers wait)."""
    r = t.run("audit", "query", "--data", srv.data, "--kind", "export", check=False)
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()] if r.returncode == 0 else []


def test_cluster_api_export():
    with_nats(run, conf="max_payload: 8192")


def run(env, nats):
    t0 = time.time()
    a, b, api = clustertest.owners_and_api(env, nats, node, query_timeout_ms=2000)
    for s in (a, b, api):
        s.principal("ex", "exporter")
        s.principal("px", "pexporter")
        s.principal("po", "privacy-officer")
        s.principal("mq", "metered")
    gw = clustertest.gateway(env, nats, a.key_file)
    r, acked_log = clustertest.stream(env, gw, VEHICLES, SECONDS, "5YJAX")
    gw.stop()
    vins = {vin for (vin, _) in acked_records(acked_log)}

    def times(srv, vin):
        st, body = srv.http(f"/api/v1/query?device={vin}&signals={SIGNALS}")
        return {row["t"] for row in json.loads(body)["rows"]} if st == 200 else set()

    def on(srv):
        return {v for v in vins if times(srv, v)}
    t.wait_until("every vehicle stored", lambda: on(a) | on(b) == vins, timeout=40, step=0.5)
    t.wait_until("every acked record stored", lambda: all(
        {ms for (v, _), ms in acked_records(acked_log).items() if v == vin} <=
        times(a, vin) | times(b, vin) for vin in vins), timeout=40, step=0.5)
    held = {"a": on(a), "b": on(b)}
    assert held["a"] and held["b"] and not held["a"] & held["b"], held
    t.log(f"{len(vins)} vehicles: {len(held['a'])} on a, {len(held['b'])} on b")

    for tok in ("ex", "px"):
        q = f"purpose=service&signals={SIGNALS}&ticket=EXP-{tok}"
        want = sorted(map(tuple, own_rows(a, tok, q) + own_rows(b, tok, q)))
        real = {r[0] for r in want}
        # Through the api node: pending for the cluster's count, listed, approved, once.
        st, body = post(api, "/api/v1/exports?" + q, tok)
        assert st == 202, (st, body)
        x = json.loads(body)
        assert x["status"] == "pending" and x["subjects"] == len(vins), x
        st, body = api.http("/api/v1/exports", token="po", purpose=None)
        listed = [e for e in json.loads(body)["exports"] if e["id"] == x["id"]]
        assert st == 200 and listed and listed[0]["vehicles"] == len(vins), body
        assert post(api, f"/api/v1/exports/{x['id']}/approve", tok)[0] == 403  # not themselves
        st, body = api.http(f"/api/v1/exports/{x['id']}", token=tok, purpose=None)
        assert st == 403 and b"approval" in body, (st, body)
        assert post(api, f"/api/v1/exports/{x['id']}/approve", "po")[0] == 200
        got = download(api, tok, x["id"])
        assert api.http(f"/api/v1/exports/{x['id']}", token=tok, purpose=None)[0] == 404
        # Every vehicle of both storage nodes, with exactly their own exports' rows.
        mine = sorted(tuple(r) for r in got if r[0] in real)
        assert mine == want, (tok, len(mine), len(want), sorted(set(mine) ^ set(want))[:6])
        assert len(real) == len(vins), (tok, real)
        assert (real == vins) == (tok == "ex"), "pseudonyms for the pseudonymising role"
        per = {}
        for r in got:
            per.setdefault(r[0], []).append(r)
        canaries = [d for d in per if d not in real]
        assert len(canaries) == 3 and all(len(per[c]) == 3 for c in canaries), per.keys()
        # The watermark: the api node's audit names the canaries, the exporter and approver.
        named = canaries_of(api, x["id"])
        assert set(canaries) == named, (canaries, named)
        def done():  # written once the last piece went out
            return [e for e in audit(api) if e.get("action") == "export.download" and
                    x["id"] in json.dumps(e) and e.get("result") == "allow"]
        t.wait_until("the download's audit entry", done, timeout=10, step=0.2)
        entry = done()[-1]
        assert entry.get("rows") == len(got), (entry, len(got))
        # Each owner audited the rows it sent for this export (durable before they left).
        owned = [e for s in (a, b) for e in audit(s) if e.get("action") == "export.download"
                 and x["id"] in json.dumps(e)]
        assert owned and all(e["result"] == "allow" for e in owned), owned
        assert sum(e.get("rows", 0) for e in owned) == len(got) - 9, (owned, len(got))
        t.log(f"{tok}: {len(got)} rows, {len(real)} vehicles, canaries {canaries}")

    # A purpose the role lacks: refused by the api node's decision; the list's names counted.
    st, body = post(api, f"/api/v1/exports?purpose=location_history&signals=Soc", "ex")
    assert st == 403, (st, body)
    two = f"{sorted(held['a'])[0]},{sorted(held['b'])[0]}"
    st, body = post(api, f"/api/v1/exports?purpose=service&signals=Soc&devices={two}", "ex")
    assert st == 202 and json.loads(body)["subjects"] == 2, (st, body)
    st, body = post(api, f"/api/v1/exports?purpose=service&signals=Soc&devices={two},5YJAX0NOSUCHCAR",
                    "ex")
    assert st == 404 and b"unknown device" in body, (st, body)

    # G5: the owners meter the rows against the quota; the one that reaches it ends its rows
    # with the single node's "# quota" line, and the api node ends the file there.
    x = make(api, "mq", f"purpose=service&signals={SIGNALS}", pending=False)
    st, body = api.http(f"/api/v1/exports/{x['id']}", token="mq", purpose=None)
    lines = body.decode().splitlines()
    assert st == 200 and lines[-1].startswith("# quota") and \
        30 <= len(lines) - 2 < len(vins) * 10, (st, lines[-3:], len(lines))
    assert sum(line.startswith("#") for line in lines) == 1, lines
    t.log(f"metered: {len(lines) - 2} rows, then {lines[-1]!r}")

    # A stopped owner: 504 before the first byte (the export stays downloadable); then, the
    # download begun, cut where the stopped node's rows should come.
    x = make(api, "ex", f"purpose=service&signals={SIGNALS}")
    os.kill(b.proc.pid, signal.SIGSTOP)
    standin = None
    try:
        st, body = api.http(f"/api/v1/exports/{x['id']}", token="ex", purpose=None)
        assert st == 504 and b"shard " in body, (st, body)
        standin = ready_standin(nats, a.key_file)
        c = http.client.HTTPConnection("127.0.0.1", api.api_port, timeout=20)
        c.request("GET", f"/api/v1/exports/{x['id']}",
                  headers={"Authorization": "Bearer " + api.tokens["ex"]})
        resp = c.getresponse()
        assert resp.status == 200, resp.status
        try:
            body = resp.read()
            assert False, f"the download was not cut: {len(body)} bytes"
        except http.client.IncompleteRead as e:  # the chunked body without its last chunk
            t.log(f"cut after {len(e.partial)} bytes")
        except ConnectionError as e:  # the same, the close seen as a reset
            t.log(f"cut: {e!r}")
        c.close()
    finally:
        if standin:
            standin.terminate()
            assert standin.wait(timeout=10) == 0
        os.kill(b.proc.pid, signal.SIGCONT)
    def cut():
        return [e for e in audit(api) if e.get("action") == "export.download" and
                x["id"] in json.dumps(e)]
    t.wait_until("the cut download's audit entry", cut, timeout=10, step=0.2)
    entry = cut()[-1]
    assert entry["result"] == "error" and "was cut after" in entry["reason"], entry
    t.log(f"{time.time() - t0:.1f} s in all")
    for s in (api, a, b):
        s.stop()


if __name__ == "__main__":
    t.main([test_cluster_api_export])
