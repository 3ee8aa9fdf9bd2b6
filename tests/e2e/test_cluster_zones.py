"""Privacy zones shared by every node of a cluster (docs/cluster.md, "Privacy zones";
cluster/jszones.h Z6-Z9).

A real `nats-server -js`, a gateway and storage node st-a holding every shard. A vehicle
drives past its owner's home; a zone around the home is set with the CLI on st-a's catalog.
st-b, started with an empty catalog, learns of the zone from the bucket; st-a stops, st-b
takes its shards over and must withhold the home's points exactly as st-a did - before this,
a zone lived in the catalog where it was set, and st-b served the points inside it. Then the
zone is removed on st-b; st-a, started again with the zone still in its catalog, deletes it
(the removal is newer) and the bucket holds no coordinate in clear."""
import base64
import json
import os

import fvtest as t
from test_cluster import Gateway, Nats, kill_gateways
from test_cluster_keys import NatsClient

SHARDS = 4
VIN = "5YJZONES000000001"
LAT, LON = 48.137154, 11.576124
HOME = 15  # the point the zone is around


def role(purposes):
    return {"comment": "e2e", "actions": ["read"], "purposes": purposes, "requires_ticket": False,
            "max_subjects_per_request": None, "bulk_subjects_threshold": None,
            "aggregate_only": False, "pseudonymise": False, "consented_only": False,
            "location_privacy": True, "energy_sites_only": False, "approves_bulk": False,
            "quota": {"subjects_per_day": None, "rows_per_day": None, "bytes_per_day": None}}


POLICY = t.test_policy({"mapper": role({"location_history": ["default", "location"]})})


def cfg(nats, **extra):
    c = {"nats": [f"nats://127.0.0.1:{nats.port}"], "replicas": 1, "shards": SHARDS,
         "lease_renew_ms": 300, "lease_ttl_ms": 1500}
    c.update(extra)
    return c


def storage_node(env, name, nats, key_file=None):
    root = os.path.join(env.root, name)
    os.makedirs(root)
    srv = t.Server(root, env.certs, config={"cluster": cfg(nats, node=name)},
                   extra=["--role", "storage", "--no-rate-limit"], policy=POLICY)
    if key_file:
        srv.key_file = key_file
    return srv.start()


def locations(srv):
    """The vehicle's locations as the mapper sees them (None: withheld), or None while the
    node cannot answer."""
    tok = srv.principal("zm", "mapper")
    st, raw = srv.http(f"/api/v1/query?device={VIN}&signals=Location", token=tok,
                       purpose="location_history")
    if st != 200:
        return None
    return [r.get("Location") for r in json.loads(raw)["rows"]]


def zones(srv):
    r = t.run("subject", "zone", VIN, "list", "--data", srv.data, "--key-file", srv.key_file)
    return json.loads(r.stdout)


def test_zone_reaches_the_node_that_serves():
    with t.Env() as env:
        nats = Nats(env.root).start()
        try:
            run(env, nats)
        finally:
            kill_gateways()
            nats.stop()


def run(env, nats):
    a = storage_node(env, "st-a", nats)
    pol_path = os.path.join(env.root, "policy.json")
    with open(pol_path, "w") as f:
        json.dump(POLICY, f)
    gw = Gateway(os.path.join(env.root, "gw"), env.certs, a.key_file,
                 {"cluster": cfg(nats), "policy": pol_path}).start()
    t0 = int(__import__("time").time() * 1000) - 60000
    env.certs.device(VIN)
    path = os.path.join(env.certs.dir, "devices", VIN + ".crt")
    ws = t.WS(gw.port, path, path[:-4] + ".key", env.certs.ca)
    for i in range(30):  # about 100 m apart, northwards
        d = [(8, 60.0), (21, (round(LAT + i * 0.0009, 7), LON))]
        ws.send(t.fb_envelope(f"z-{i}".encode(), b"V", t.v_payload(d, t0 + i * 1000)))
        _, p = ws.recv()
        assert t.fb_decode(p)["message_type"] == 5
    ws.close()
    t.wait_until("the 30 records on st-a", lambda: len(locations(a) or []) == 30, timeout=20)
    before = locations(a)
    assert before[HOME] is not None, before  # (location privacy: a 1 km grid, the trip's ends)

    t.run("subject", "zone", VIN, "add", "home", str(round(LAT + HOME * 0.0009, 7)), str(LON),
          "150", "--data", a.data, "--key-file", a.key_file)
    hidden_a = [i for i, x in enumerate(locations(a)) if x is None]
    assert HOME in hidden_a, hidden_a  # the zone works where it was set

    b = storage_node(env, "st-b", nats, key_file=a.key_file)
    t.wait_until("st-b to apply the zone",
                 lambda: b.metric("fleetvault_cluster_zones_applied_total") >= 1, timeout=10)
    a.stop()
    t.wait_until("st-b to own every shard",
                 lambda: b.metric("fleetvault_cluster_shards_owned") == SHARDS, timeout=20)
    t.wait_until("st-b to serve the 30 records", lambda: len(locations(b) or []) == 30,
                 timeout=30)
    hidden_b = [i for i, x in enumerate(locations(b)) if x is None]
    assert hidden_b == hidden_a, (hidden_b, hidden_a)
    assert [z["label"] for z in zones(b)["zones"]] == ["home"], zones(b)

    # The bucket: the zone's entry names the pseudonym and label only, its value wrapped.
    nc = NatsClient(nats.port)
    info = nc.js("STREAM.INFO.KV_fv-zones", {"subjects_filter": ">"})
    subjects = list(info["state"]["subjects"])
    assert len(subjects) == 1 and subjects[0].endswith(".home") and VIN not in subjects[0]
    m = nc.js("STREAM.MSG.GET.KV_fv-zones", {"last_by_subj": subjects[0]})
    v = base64.b64decode(m["message"]["data"])
    assert v[:5] == b"FVKV\x01" and v[5:6] == b"Z", v[:8]
    assert str(LAT)[:6].encode() not in v and VIN.encode() not in v

    # Removed on st-b; st-a, started again with the zone in its catalog, deletes it.
    t.run("subject", "zone", VIN, "remove", "home", "--data", b.data, "--key-file", b.key_file)
    t.wait_until("the removal in the bucket",
                 lambda: b.metric("fleetvault_cluster_zones_published_total") >= 1, timeout=10)
    a.start()
    t.wait_until("st-a to delete the removed zone", lambda: zones(a)["zones"] == [], timeout=10)
    assert zones(b)["zones"] == []


if __name__ == "__main__":
    t.main([test_zone_reaches_the_node_that_serves])
