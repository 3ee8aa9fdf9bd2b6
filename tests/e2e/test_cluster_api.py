"""The query API of a whole cluster through an api node (docs/cluster.md, "Queries through an
api node"; issue 15 item 4): one nats-server, one gateway, two storage nodes splitting the
shards by lease, one node with --role api. A simulated fleet streams through the gateway and
lands on both storage nodes; then, from the api node:
- every vehicle's history (GET /api/v1/query?device=...) equals what its owner answers
  directly, and holds every acked record;
- the fleet view (GET /api/v1/fleet, JSON and CSV) is the two owners' views joined;
- a role with obligations (per-purpose pseudonyms, location privacy) gets from the api node
  exactly what the owners give it: the fleet view, and a vehicle read by its pseudonym;
- a refusal (a purpose the role does not have) and an unknown device get the single node's
  answers, and the refused reads are in the owners' audit logs; the api node's audit log
  records every read it had the owners answer, naming no VIN;
- with one storage node killed (SIGKILL, its leases still live), a read of one of its vehicles
  and the fleet view are answered 504 naming a shard, with Retry-After, never a partial view;
  with no storage node left, 503 at once (NATS has no responders).
FV_CAPI_VEHICLES (default 12) and FV_CAPI_SECONDS (default 6) scale it."""
import json
import os
import random
import subprocess
import time
import urllib.error
import urllib.request

import fvtest as t
from test_cluster import Gateway, acked_records, cluster_status, with_nats

VEHICLES = int(os.environ.get("FV_CAPI_VEHICLES", "12"))
SECONDS = int(os.environ.get("FV_CAPI_SECONDS", "6"))
SHARDS = 8
RENEW_MS, TTL_MS = 1000, 15000  # a killed node's leases outlive the test's last reads
POLICY = t.test_policy({"analyst": t.role({"location_history": ["default", "location"]},
                                          pseudonymise=True, location_privacy=True)})


def cfg(nats, **extra):
    c = {"nats": [f"nats://127.0.0.1:{nats.port}"], "replicas": 1, "shards": SHARDS,
         "lease_renew_ms": RENEW_MS, "lease_ttl_ms": TTL_MS}
    c.update(extra)
    return c


def node(env, name, nats, role, key_file=None, **extra):
    root = os.path.join(env.root, name)
    os.makedirs(root)
    srv = t.Server(root, env.certs, config={"cluster": cfg(nats, **extra),
                                            "store": {"flush_interval": "2s"}},
                   extra=["--role", role, "--no-rate-limit"], policy=POLICY)
    if key_file:
        srv.key_file = key_file  # every node of a cluster has the same master key
    return srv.start()


def get(srv, path, token="ops", purpose="service"):
    """(status, body, Retry-After) of a GET."""
    if purpose and "purpose=" not in path:
        path += ("&" if "?" in path else "?") + "purpose=" + purpose
    req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}{path}")
    req.add_header("Authorization", "Bearer " + srv.tokens[token])
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read(), r.headers.get("Retry-After")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Retry-After")


def ok_json(srv, path, **kw):
    st, body, _ = get(srv, path, **kw)
    assert st == 200, (srv.root, path, st, body)
    return json.loads(body)


def fleet_rows(srv, path, **kw):
    return sorted(ok_json(srv, path, **kw)["vehicles"], key=lambda v: v["device"])


def test_cluster_api():
    with_nats(run)


def run(env, nats):
    t0 = time.time()
    a = node(env, "a", nats, "storage", node="st-a")
    b = node(env, "b", nats, "storage", a.key_file, node="st-b")
    api = node(env, "api", nats, "api", a.key_file, query_timeout_ms=2000)
    for s in (a, b, api):
        s.principal("an", "analyst")

    def split():
        rc, st, _ = cluster_status(env.root, cfg(nats))
        owners = [sh["owner"] for sh in st["shards"]] if st else []
        return rc == 0 and owners.count("st-a") == SHARDS // 2 and owners.count("st-b") == SHARDS // 2
    t.wait_until("the two storage nodes to split the shards", split, timeout=30, step=0.2)

    gw = Gateway(os.path.join(env.root, "gateway"), env.certs, a.key_file,
                 {"cluster": cfg(nats)}).start()
    acked_log = os.path.join(env.root, "acked.log")
    with open(os.path.join(env.root, "sim.log"), "w") as sim_log:
        r = subprocess.run(
            [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{gw.port}", "--certs",
             env.certs.dir, "--vehicles", str(VEHICLES), "--seconds", str(SECONDS), "--hz", "5",
             "--drain", "30", "--acked-log", acked_log, "--quiet", "--id-prefix", "5YJAP",
             "--seed", str(random.randrange(1 << 30))],
            stdout=subprocess.PIPE, stderr=sim_log, text=True, timeout=SECONDS + 60)
    final = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0 and final["acked"] > 0, final
    times = {}
    for (vin, _), ms in acked_records(acked_log).items():
        times.setdefault(vin, []).append(ms)

    def rows(srv, vin):  # a node that does not know the vehicle answers 404 (G11)
        st, body, _ = get(srv, f"/api/v1/query?device={vin}&signals=Soc")
        assert st in (200, 404), (srv.root, vin, st, body)
        return json.loads(body)["rows"] if st == 200 else []

    def owner_of(vin):
        ra, rb = rows(a, vin), rows(b, vin)
        assert not (ra and rb), f"{vin}: answered by both storage nodes"
        return a if ra else b if rb else None

    def all_stored():
        for vin, want in times.items():
            o = owner_of(vin)
            if o is None:
                return False
            got = {row["t"] for row in rows(o, vin)}
            if not set(want) <= got:
                return False
        return True
    t.wait_until("every acked record to be stored", all_stored, timeout=40, step=0.5)
    owner = {vin: owner_of(vin) for vin in times}
    on = {"a": sum(o is a for o in owner.values()), "b": sum(o is b for o in owner.values())}
    assert on["a"] and on["b"], f"every vehicle on one storage node: {on}"
    t.log(f"{len(times)} vehicles, {sum(map(len, times.values()))} acked records: {on}")

    # Every vehicle's history from the api node: the owner's answer, byte for byte.
    for vin in times:
        for q in (f"/api/v1/query?device={vin}",
                  f"/api/v1/query?device={vin}&signals=Soc,VehicleSpeed&format=csv",
                  f"/api/v1/query?device={vin}&signals=VehicleSpeed&step=1s&agg=avg,max"):
            st, body, _ = get(api, q)
            st_o, body_o, _ = get(owner[vin], q)
            assert st == 200 and (st, body) == (st_o, body_o), (vin, q, st, body[:300], body_o[:300])
        got = {row["t"] for row in ok_json(api, f"/api/v1/query?device={vin}&signals=Soc")["rows"]}
        assert set(times[vin]) <= got, f"{vin}: acked records missing through the api node"

    # The fleet view: both owners' joined (JSON and CSV).
    q = "/api/v1/fleet?signal=Soc&lookback=1d"
    view = ok_json(api, q)
    want = fleet_rows(a, q) + fleet_rows(b, q)
    assert sorted(view["vehicles"], key=lambda v: v["device"]) == sorted(
        want, key=lambda v: v["device"]), (view, want)
    assert view["count"] == len(want) == len(times) and view["signal"] == "Soc", view
    st, body, _ = get(api, q + "&format=csv")
    lines = body.decode().splitlines()
    own = [get(o, q + "&format=csv")[1].decode().splitlines() for o in (a, b)]
    assert st == 200 and lines[0] == own[0][0] == "device,t,Soc", (st, lines[:2])
    assert sorted(lines[1:]) == sorted(own[0][1:] + own[1][1:]), (lines, own)
    # The other fleet reads: the owners' lists joined; a vehicle's state: its owner's.
    for q, key in (("/api/v1/vehicles", "id"), ("/api/v1/signals/Soc/latest", "id")):
        via = ok_json(api, q)
        own = [ok_json(o, q) for o in (a, b)]
        assert sorted(via["vehicles"], key=lambda v: v[key]) == sorted(
            own[0]["vehicles"] + own[1]["vehicles"], key=lambda v: v[key]), (q, via, own)
        assert via["count"] == own[0]["count"] + own[1]["count"] == len(times), (q, via, own)
    for vin in list(times)[:4]:
        q = f"/api/v1/vehicles/{vin}/state"
        assert get(api, q)[:2] == get(owner[vin], q)[:2] and get(api, q)[0] == 200, vin
    t.log(f"history of {len(times)} vehicles and the fleet views through the api node")

    # Obligations as on one node: a pseudonymising, location-private role.
    q = "/api/v1/fleet?signal=Location&lookback=1d"
    pv = fleet_rows(api, q, token="an", purpose="location_history")
    assert pv == sorted(fleet_rows(a, q, token="an", purpose="location_history") +
                        fleet_rows(b, q, token="an", purpose="location_history"),
                        key=lambda v: v["device"])
    assert len(pv) == len(times) and not any(v["device"] in times for v in pv), pv
    for row in pv[:4]:
        qq = f"/api/v1/query?device={row['device']}&signals=Location,VehicleSpeed"
        via = get(api, qq, token="an", purpose="location_history")
        direct = [get(o, qq, token="an", purpose="location_history") for o in (a, b)]
        hit = [d for d in direct if d[0] == 200]
        assert len(hit) == 1 and via[:2] == hit[0][:2], (row, via[:2], direct)
        assert json.loads(via[1])["rows"], (row, via[:2])
    # ... and a VIN is unknown to that role, on the api node as on an owner (G11).
    vin = next(iter(times))
    qq = f"/api/v1/query?device={vin}&signals=VehicleSpeed"
    assert get(api, qq, token="an", purpose="location_history")[:2] == \
        get(owner[vin], qq, token="an", purpose="location_history")[:2]

    # A refusal as on one node: a purpose the role does not have (decided by the owner,
    # audited there).
    q = f"/api/v1/query?device={vin}&signals=Soc"
    st, body, _ = get(api, q, purpose="clips")
    st_o, body_o, _ = get(owner[vin], q, purpose="clips")
    assert st == 403 and (st, body) == (st_o, body_o), (st, body, st_o, body_o)
    q = "/api/v1/fleet?signal=Soc"
    st, body, _ = get(api, q, purpose="clips")
    assert st == 403 and body == get(a, q, purpose="clips")[1], (st, body)
    # An unknown device: the single node's answer (404, the same text), audited on the api node.
    q = "/api/v1/query?device=NOSUCHVIN0000000&signals=Soc"
    st, body, _ = get(api, q)
    assert (st, body) == get(a, q)[:2] and st == 404, (st, body)
    # No token: 401 from the api node itself.
    req = urllib.request.Request(f"http://127.0.0.1:{api.api_port}/api/v1/fleet?signal=Soc")
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("a read without a token was answered")
    except urllib.error.HTTPError as e:
        assert e.code == 401, e.code
    # The owner audited the refused read (the api node's request is its record of access).
    st, body, _ = get(owner[vin], "/api/v1/audit?ticket=T-1&principal=ops&result=deny",
                      token=t.APPROVER, purpose=None)
    entries = json.loads(body)["entries"] if st == 200 else []
    assert any(e.get("purpose") == "clips" for e in entries), (st, body[-600:])

    # The api node's own record of the reads it had the owners answer: principal, purpose,
    # status, the shard that answered - and no VIN (G6: the owners' entries name subjects).
    st, body, _ = get(api, "/api/v1/audit?ticket=T-2&kind=cluster&principal=ops&limit=1000",
                      token=t.APPROVER, purpose=None)
    assert st == 200, (st, body)
    entries = json.loads(body)["entries"]
    actions = {e["action"] for e in entries}
    assert {"cluster.query", "cluster.fleet.at", "cluster.vehicles.list",
            "cluster.signals.latest", "cluster.vehicle.state"} <= actions, actions
    assert sum(e["action"] == "cluster.query" for e in entries) >= 3 * len(times), len(entries)
    assert not any(vin in body.decode() for vin in times), "a VIN in the api node's audit log"
    assert any(e["result"] == "deny" and e.get("purpose") == "clips" for e in entries), entries

    # A dead owner: its leases still live, its shards answer nothing: a clear 504 naming a
    # shard, never a partial fleet view.
    gw.stop()
    b.kill9()
    t0k = time.time()
    vin_b = next(v for v, o in owner.items() if o is b)
    st, body, retry = get(api, f"/api/v1/query?device={vin_b}&signals=Soc")
    assert st == 504 and b"shard " in body and b"did not answer within 2000 ms" in body and \
        retry == "5", (st, body, retry)
    st, body, retry = get(api, "/api/v1/fleet?signal=Soc&lookback=1d")
    assert st == 504 and b"shard " in body and retry, (st, body)
    assert time.time() - t0k < TTL_MS / 1000, "the dead node's leases expired during the test"
    # The counters: the api node's reads sent out, and the two that a shard left unanswered;
    # the surviving owner's answers.
    assert api.metric("fleetvault_cluster_queries_unanswered_total") == 2
    assert api.metric("fleetvault_cluster_queries_forwarded_total") > 3 * len(times)
    assert a.metric("fleetvault_cluster_queries_answered_total") > 0
    t.log(f"dead owner: {json.loads(body)['error']}")
    # No storage node left at all: NATS has no responders, 503 at once.
    a.stop()
    t1 = time.time()
    st, body, retry = get(api, "/api/v1/fleet?signal=Soc&lookback=1d")
    assert st == 503 and b"no storage node answers for it" in body and retry, (st, body)
    assert time.time() - t1 < 2, "no responders took the whole timeout"
    t.log(f"no storage node: {json.loads(body)['error']}; {time.time() - t0:.1f} s in all")
    api.stop()


if __name__ == "__main__":
    t.main([test_cluster_api])
