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
- a privacy officer's requests for a data subject (Q7) go to the owner of the subject's shard:
  the export (a tar many NATS messages long: nats-server runs with max_payload 8192, so
  every answer over 7 KiB is pulled piece by piece) has the owner's files and every acked
  record; a consent change and an erasure are made on the owner and reach the other storage
  node through the subjects bucket; bad input is a 400 and changes nothing; a dead owner
  makes a change 504 ("may or may not have been made"), no storage node 503.
FV_CAPI_VEHICLES (default 12) and FV_CAPI_SECONDS (default 6) scale it; FV_CAPI_MAX_PAYLOAD
(default 8192) sets nats-server's max_payload: with 2048 and 40 vehicles every shard's
/api/v1/vehicles answer comes in pieces too, and the api node gathers them before the join."""
import io
import json
import os
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request

import clustertest
import fvtest as t
from clustertest import cfg, get  # noqa: F401 (cfg: bench/cluster's T.cfg)
from test_cluster import acked_records, with_nats

VEHICLES = int(os.environ.get("FV_CAPI_VEHICLES", "12"))
SECONDS = int(os.environ.get("FV_CAPI_SECONDS", "6"))
SHARDS = 8
RENEW_MS, TTL_MS = 1000, 15000  # a killed node's leases outlive the test's last reads
MAX_PAYLOAD = int(os.environ.get("FV_CAPI_MAX_PAYLOAD", "8192"))  # nats-server's: pieces of 7 KiB
POLICY = t.test_policy({"analyst": t.role({"location_history": ["default", "location"]},
                                          pseudonymise=True, location_privacy=True),
                        # Q10: fewer subjects per request than the fleet, more than any owner's
                        "few": t.role({"service": ["default"]},
                                      max_subjects_per_request=VEHICLES - 1)})


def node(env, name, nats, role, key_file=None, **extra):
    return clustertest.node(env, name, nats, role, key_file, policy=POLICY, ttl_ms=TTL_MS, **extra)


def ok_json(srv, path, **kw):
    st, body, _ = get(srv, path, **kw)
    assert st == 200, (srv.root, path, st, body)
    return json.loads(body)


def fleet_rows(srv, path, **kw):
    return sorted(ok_json(srv, path, **kw)["vehicles"], key=lambda v: v["device"])


PROBE = os.environ.get("FV_FVQ_PROBE", os.path.abspath("build/tests/fvq_probe"))


def fvq(nats, key_file, shard, headers, query=b""):
    """One request of the api node's protocol (jsquery.h) to fvq.FLEETVAULT.shard.N, sealed with
    the master key (J5) by tests/support/fvq_probe: (the answer's fields as the Fv-* names of
    the protocol's first version, its body), or None when no answer came within 3 s."""
    args = [PROBE, f"nats://127.0.0.1:{nats.port}", "FLEETVAULT", key_file, str(shard),
            headers["Fv-Method"], headers["Fv-Path"], headers["Fv-Principal"],
            headers["Fv-Role"], query.decode()]
    if "Fv-Session" in headers:
        args += [headers["Fv-Session"], headers["Fv-Seq"]]
    out = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    line, _, body = out.stdout.partition(b"\n")
    h = json.loads(line)
    if h["rc"] == "timeout":
        return None
    assert h["rc"] == "ok", h
    fields = {"Fv-Status": str(h["status"]), "Fv-Here": str(h["here"]), "Fv-Type": h["type"]}
    if h["more"]:
        fields["Fv-More"] = h["more"]
    return fields, body


def fvq_clear(nats, shard, headers, query=b""):
    """The protocol's first version by hand, in clear (headers, no seal): the answer's headers
    and body, or None when no answer came within 3 s (J5: none comes)."""
    sock = socket.create_connection(("127.0.0.1", nats.port), timeout=3)
    try:
        f = sock.makefile("rb")
        f.readline()  # INFO
        hdr = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nSUB _INBOX.fvq 1\r\n' +
                     f"HPUB fvq.FLEETVAULT.shard.{shard} _INBOX.fvq {len(hdr)} "
                     f"{len(hdr) + len(query)}\r\n{hdr}".encode() + query + b"\r\nPING\r\n")
        while True:
            line = f.readline().split()
            if line[:1] == [b"PING"]:
                sock.sendall(b"PONG\r\n")
            elif line[:1] == [b"HMSG"]:
                data = f.read(int(line[-1]) + 2)[:-2]
                h, body = data[:int(line[-2])].decode(), data[int(line[-2]):]
                return dict(x.split(": ", 1) for x in h.split("\r\n")[1:] if ": " in x), body
    except socket.timeout:
        return None
    finally:
        sock.close()


def tar_files(body):
    """{name: bytes} of the files in a tar."""
    tar = tarfile.open(fileobj=io.BytesIO(body))
    return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_cluster_api():
    with_nats(run, conf=f"max_payload: {MAX_PAYLOAD}")


def run(env, nats):
    t0 = time.time()
    a, b, api = clustertest.owners_and_api(env, nats, node, query_timeout_ms=2000)
    for s in (a, b, api):
        s.principal("an", "analyst")
        s.principal("po", "privacy-officer")
    gw = clustertest.gateway(env, nats, a.key_file)
    r, acked_log = clustertest.stream(env, gw, VEHICLES, SECONDS, "5YJAP")
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

    # Q10: subjects per request counted on the whole answer. Each owner has fewer vehicles
    # than "few" may read at once and answers it; the api node's joined answer has more.
    api.principal("few1", "few")
    for o in (a, b):
        o.await_principal("few1")
    for q in ("/api/v1/fleet?signal=Soc&lookback=1d", "/api/v1/fleet?signal=Soc&lookback=1d&format=csv",
              "/api/v1/vehicles", "/api/v1/signals/Soc/latest"):
        for o in (a, b):
            assert get(o, q, token="few1")[0] == 200, (o.root, q)
        st, body, _ = get(api, q, token="few1")
        assert st == 403 and f"at most {VEHICLES - 1} subjects per request (asked for " \
            f"{len(times)})".encode() in body, (q, st, body[:300])

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

    # A data subject's rights through the api node (Q7), decided and done by the owner of
    # the subject's shard. Export (Art. 15/20): the owner's tar, many NATS messages long.
    sizes = []
    for i, vin in enumerate((next(v for v, o in owner.items() if o is a),
                             next(v for v, o in owner.items() if o is b))):
        q = f"/api/v1/subjects/{vin}/export?ticket=DSR-1-{i}"  # one subject per ticket
        st, via = api.http(q, token="po", purpose=None)
        st_o, direct = owner[vin].http(q, token="po", purpose=None)
        assert st == st_o == 200, (vin, st, via[:300], st_o)
        sizes.append(len(via))
        assert len(via) > 4 * MAX_PAYLOAD, f"{vin}: an export of {len(via)} bytes tests no pieces"
        fv, fd = tar_files(via), tar_files(direct)
        assert sorted(fv) == sorted(fd), (sorted(fv), sorted(fd))
        for name in fv:  # the access log differs: the second export names the first
            if name.endswith("subject.json"):  # and the time of the export
                jv, jd = json.loads(fv[name]), json.loads(fd[name])
                assert jv.pop("exported_ms") <= jd.pop("exported_ms") and jv == jd, (jv, jd)
            elif not name.endswith("access-log.jsonl"):
                assert fv[name] == fd[name], (vin, name)
        got = {int(line.split(b",")[0]) for name, body in fv.items() if name.endswith(".csv")
               for line in body.splitlines()[1:] if line[:1].isdigit()}
        assert set(times[vin]) <= got, f"{vin}: acked records missing from the export"
        assert b"subject.export" in fv[next(n for n in fv if n.endswith("access-log.jsonl"))]
    t.log(f"exports through the api node: {sizes} bytes, pieces of {MAX_PAYLOAD - 1024}")
    # ... refused as on one node: no ticket (decided by the owner); an unknown device.
    vin = next(v for v, o in owner.items() if o is b)
    for q in (f"/api/v1/subjects/{vin}/export", "/api/v1/subjects/NOSUCHVIN0000000/export?ticket=X"):
        st, body = api.http(q, token="po", purpose=None)
        assert (st, body) == owner[vin].http(q, token="po", purpose=None) and st in (403, 404), \
            (q, st, body)
    # Consent (grant) made on the owner, through the api node; it reaches the other storage
    # node through the subjects bucket (jssubjects.h P1).
    other = a if owner[vin] is b else b
    applied = other.metric("fleetvault_cluster_subjects_applied_total")
    st, body = api.http(f"/api/v1/subjects/{vin}/consent?purpose=location_history&change=give"
                        "&by=owner&ticket=DSR-2", token="po", method="POST", purpose=None)
    assert st == 200 and json.loads(body)["change"] == "give", (st, body)
    def subject(vin):  # the export's subject.json, less the time of the export
        j = t.subject_json(owner[vin], vin, "po", "DSR-3")
        j.pop("exported_ms")
        return j
    subj = subject(vin)
    assert "location_history" in json.dumps(subj["consent"] if "consent" in subj else subj), subj
    t.wait_until("the consent to reach the other storage node", lambda: other.metric(
        "fleetvault_cluster_subjects_applied_total") > applied, timeout=10)
    # Bad input: a clear 400 from the owner's code, and nothing recorded.
    for q in (f"/api/v1/subjects/{vin}/consent?purpose=location_history&change=maybe&ticket=D",
              f"/api/v1/subjects/{vin}/consent?purpose=nosuchpurpose&change=give&ticket=D"):
        st, body = api.http(q, token="po", method="POST", purpose=None)
        assert st == 400, (q, st, body)
    assert subj == subject(vin)
    # A GET of a change: 405 from the api node, as on one node.
    st, body = api.http(f"/api/v1/subjects/{vin}/erase?ticket=D", token="po", purpose=None)
    assert st == 405, (st, body)
    # The pieces' protocol by hand (jsquery.h J1-J3): a piece asked out of sequence ends the
    # answer (409), after which it is unknown (404), as is one pulled by another principal.
    # The last answer stays open on a: its clean stop (exit 0 under ASan) ends it.
    vin = next(v for v, o in owner.items() if o is a)
    req = {"Fv-Method": "GET", "Fv-Path": f"/api/v1/subjects/{vin}/export",
           "Fv-Principal": "po", "Fv-Role": "privacy-officer"}

    def begin(ticket):
        for shard in range(SHARDS):
            h, body = fvq(nats, a.key_file, shard, req, f"ticket={ticket}".encode())
            if h["Fv-Here"] == "1":
                assert h["Fv-Status"] == "200" and len(h["Fv-More"]) == 32, (h, body[:200])
                return shard, h["Fv-More"]
        raise AssertionError(f"no shard holds {vin}")
    shard, sid = begin("DSR-5")
    h, body = fvq(nats, a.key_file, shard, {**req, "Fv-Session": sid, "Fv-Seq": "2"})
    assert h["Fv-Status"] == "409" and "Fv-More" not in h, (h, body)
    h, body = fvq(nats, a.key_file, shard, {**req, "Fv-Session": sid, "Fv-Seq": "1"})
    assert h["Fv-Status"] == "404" and b"no such answer" in body, (h, body)
    shard, sid = begin("DSR-6")
    h, body = fvq(nats, a.key_file, shard,
                  {**req, "Fv-Principal": "an", "Fv-Session": sid, "Fv-Seq": "1"})
    assert h["Fv-Status"] == "404", (h, body)
    h, body = fvq(nats, a.key_file, shard, {**req, "Fv-Session": sid, "Fv-Seq": "1"})
    assert h["Fv-Status"] == "200" and h["Fv-More"] == sid and len(body) == MAX_PAYLOAD - 1024, h
    # J5: the same request in clear (as anyone on NATS without the master key could send it)
    # is answered by no owner, and the owner's log says why.
    assert fvq_clear(nats, shard, req, b"ticket=DSR-7") is None
    t.wait_until("the owner's refusal logged", lambda: "sealed envelope" in a.log(), timeout=5)
    # Erasure (Art. 17) of a vehicle of a, made on its owner; its key purged in the keys
    # bucket, which the other storage node applies (jskeys.h J3); the vehicle is unknown
    # through the api node afterwards.
    gone = [v for v, o in owner.items() if o is a][-1]  # may be the one exported above
    assert "erased in the cluster" not in b.log()
    st, body = api.http(f"/api/v1/subjects/{gone}/erase?ticket=GDPR-1", token="po",
                        method="POST", purpose=None)
    assert st == 200 and json.loads(body)["erased"] is True, (st, body)
    t.wait_until("the erasure to reach the other storage node",
                 lambda: "erased in the cluster: its key here destroyed" in b.log(), timeout=10)
    q = f"/api/v1/query?device={gone}&signals=Soc"
    assert get(api, q)[:2] == get(a, q)[:2] and get(api, q)[0] == 404, get(api, q)[:2]
    q = f"/api/v1/subjects/{gone}/export?ticket=DSR-4"
    st, body = api.http(q, token="po", purpose=None)
    assert (st, body) == a.http(q, token="po", purpose=None) and st >= 400, (st, body)
    t.log(f"export, consent and erasure through the api node; after erasure: {st}")

    # The api node's own record of the reads it had the owners answer: principal, purpose,
    # status, the shard that answered - and no VIN (G6: the owners' entries name subjects).
    st, body, _ = get(api, "/api/v1/audit?ticket=T-2&kind=cluster&principal=ops&limit=1000",
                      token=t.APPROVER, purpose=None)
    assert st == 200, (st, body)
    entries = json.loads(body)["entries"]
    actions = {e["action"] for e in entries}
    assert {"cluster.query", "cluster.fleet.at", "cluster.vehicles.list",
            "cluster.signals.latest", "cluster.vehicle.state"} <= actions, actions
    st, body, _ = get(api, "/api/v1/audit?ticket=T-2&kind=cluster&principal=po&limit=1000",
                   token=t.APPROVER, purpose=None)
    assert st == 200, (st, body)
    po_entries = json.loads(body)["entries"]
    assert {"cluster.subject.export", "cluster.subject.consent", "cluster.subject.erase"} <= {
        e["action"] for e in po_entries}, po_entries
    assert not any(vin in body.decode() for vin in times), "a VIN in the api node's audit log"
    assert sum(e["action"] == "cluster.query" for e in entries) >= 3 * len(times), len(entries)
    assert not any(vin in body.decode() for vin in times), "a VIN in the api node's audit log"
    assert any(e["result"] == "deny" and e.get("purpose") == "clips" for e in entries), entries

    # Q8: an audit search through the api node searches every node's log, each entry
    # tagged with the node whose log holds it: each storage node's entries exactly as its
    # own search gives them, and the api node's own (its refusal of the clips read above).
    q = "/api/v1/audit?ticket=T-3&principal=ops&result=deny&limit=1000"
    st, body, _ = get(api, q, token=t.APPROVER, purpose=None)
    assert st == 200, (st, body)
    j = json.loads(body)
    assert len(set(j["nodes"])) == 3 and len(j["nodes"]) == 3, j["nodes"]
    by_node = {}
    for e in j["entries"]:
        by_node.setdefault(e.pop("node"), []).append(e)
    directs = []
    for srv in (a, b):
        st, direct, _ = get(srv, q, token=t.APPROVER, purpose=None)
        assert st == 200, (st, direct)
        directs.append(json.loads(direct)["entries"])
        assert directs[-1] and directs[-1] in by_node.values(), (directs[-1], by_node.keys())
    own = [v for v in by_node.values() if v not in directs]
    assert len(own) == 1 and any(e["kind"] == "cluster" and e.get("purpose") == "clips"
                                 for e in own[0]), by_node
    assert j["count"] == len(j["entries"]) == j["matched"] and not j["truncated"], j
    ts = [e["ts"] for e in j["entries"]]
    assert ts == sorted(ts), ts
    st, body, _ = get(api, q.replace("limit=1000", "limit=2"), token=t.APPROVER, purpose=None)
    j2 = json.loads(body)
    assert st == 200 and j2["count"] == 2 and j2["truncated"] and j2["matched"] >= j["matched"]
    assert [e["ts"] for e in j2["entries"]] == ts[-2:], (j2, ts[-2:])
    # the search was decided and audited on every node (the api node's decision first)
    for srv in (api, a, b):
        st, body, _ = get(srv, "/api/v1/audit?ticket=T-4&action=audit.query&limit=1000",
                          token=t.APPROVER, purpose=None)
        assert st == 200 and b'"ticket":"T-3"' in body, (srv.root, st, body[-400:])
    # refused or bad input: the api node's own answer, nothing asked of the owners
    st, body, _ = get(api, "/api/v1/audit?ticket=T-3")
    assert st == 403, (st, body)
    st, body, _ = get(api, "/api/v1/audit?ticket=T-3&limit=0", token=t.APPROVER, purpose=None)
    assert st == 400, (st, body)
    t.log(f"audit search through the api node: {len(ts)} entries from {j['nodes']}")

    # A dead owner: its leases still live, its shards answer nothing: a clear 504 naming a
    # shard, never a partial fleet view (nor an audit search without its log).
    gw.stop()
    b.kill9()
    t0k = time.time()
    vin_b = next(v for v, o in owner.items() if o is b)
    st, body, retry = get(api, f"/api/v1/query?device={vin_b}&signals=Soc")
    assert st == 504 and b"shard " in body and b"did not answer within 2000 ms" in body and \
        retry == "5", (st, body, retry)
    st, body, retry = get(api, "/api/v1/fleet?signal=Soc&lookback=1d")
    assert st == 504 and b"shard " in body and retry, (st, body)
    st, body = api.http(f"/api/v1/subjects/{vin_b}/consent?purpose=location_history"
                        "&change=withdraw&ticket=D", token="po", method="POST", purpose=None)
    assert st == 504 and b"may or may not have been made" in body, (st, body)
    st, body, _ = get(api, "/api/v1/audit?ticket=T-5", token=t.APPROVER, purpose=None)
    assert st == 504 and b"shard " in body, (st, body)
    assert time.time() - t0k < TTL_MS / 1000, "the dead node's leases expired during the test"
    # The counters: the api node's reads sent out, and the two that a shard left unanswered;
    # the surviving owner's answers.
    assert api.metric("fleetvault_cluster_queries_unanswered_total") == 4
    assert api.metric("fleetvault_cluster_queries_forwarded_total") > 3 * len(times)
    assert a.metric("fleetvault_cluster_queries_answered_total") > 0
    t.log(f"dead owner: {json.loads(body)['error']}")
    # No storage node left at all: NATS has no responders, 503 at once.
    a.stop()
    t1 = time.time()
    st, body, retry = get(api, "/api/v1/fleet?signal=Soc&lookback=1d")
    assert st == 503 and b"no storage node answers for it" in body and retry, (st, body)
    assert time.time() - t1 < 2, "no responders took the whole timeout"
    st, body = api.http(f"/api/v1/subjects/{vin_b}/export?ticket=D", token="po", purpose=None)
    assert st == 503 and b"no storage node answers for it" in body, (st, body)
    t.log(f"no storage node: {json.loads(body)['error']}; {time.time() - t0:.1f} s in all")
    api.stop()


if __name__ == "__main__":
    t.main([test_cluster_api])
