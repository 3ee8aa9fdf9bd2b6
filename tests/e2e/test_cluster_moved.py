"""A record re-sealed under a later owner period whose subject is in another storage node's
shard (docs/cluster.md, "Owner periods and consents" P7; cluster/jsconsume.h C13).

A real `nats-server -js`, two storage nodes splitting four shards, an api node, a gateway
and a gateway whose subjects bucket is another one (it never learns of an owner change: the
window P7 describes, held open). Twelve vehicles stream as their first owner; each changes
hands (`fleetvault subject owner` on st-a's catalog while it runs); their next records go
through the lagging gateway, sealed under the first owner's subject. The storage node owning
that subject's shard seals each again under the new owner's subject (P7); where that subject
is in the other node's shard, it must publish the record there (C13) - stored where it is,
the api node, which asks the new subject's owner, never served it. Every new owner's records
must be served through the api node exactly once, and the old owners' periods keep theirs."""
import json
import os
import time

import fvtest as t
from test_cluster import Gateway, Nats, cluster_status, kill_gateways

SHARDS = 4
VEHICLES = 12


def cfg(nats, **extra):
    c = {"nats": [f"nats://127.0.0.1:{nats.port}"], "replicas": 1, "shards": SHARDS,
         "lease_renew_ms": 500, "lease_ttl_ms": 5000}
    c.update(extra)
    return c


def node(env, name, nats, role, key_file=None):
    root = os.path.join(env.root, name)
    os.makedirs(root)
    srv = t.Server(root, env.certs, config={"cluster": cfg(nats, node=name),
                                            "store": {"flush_interval": "2s"}},
                   extra=["--role", role, "--no-rate-limit"])
    if key_file:
        srv.key_file = key_file  # every node of a cluster has the same master key
    return srv.start()


def gateway(env, nats, name, key_file, **extra):
    return Gateway(os.path.join(env.root, name), env.certs, key_file,
                   {"cluster": cfg(nats, **extra)}).start()


def owners(env, nats):
    rc, st, err = cluster_status(env.root, cfg(nats))
    return {sh["shard"]: sh["owner"] or "" for sh in st["shards"]} if st else {}


def shard_of(pseudo):
    return int(pseudo[:8], 16) % SHARDS  # natsconn.h fv_cluster_shard


def rows(srv, vin):
    st, raw = srv.http(f"/api/v1/query?device={vin}&signals=Soc")
    if st == 404:
        return []
    if st in (503, 504):  # a shard's owner not answering yet (a restart)
        return None
    assert st == 200, (st, raw[:300])
    return sorted(r["t"] for r in json.loads(raw)["rows"] if r.get("Soc") is not None)


def test_record_moved_to_new_subjects_shard():
    with t.Env() as env:
        nats = Nats(env.root).start()
        try:
            run(env, nats)
        finally:
            kill_gateways()
            nats.stop()


def run(env, nats):
    a = node(env, "st-a", nats, "storage")
    b = node(env, "st-b", nats, "storage", a.key_file)
    api = node(env, "api", nats, "api", a.key_file)
    t.wait_until("the two storage nodes to split the shards",
                 lambda: sorted(owners(env, nats).values()) == ["st-a"] * 2 + ["st-b"] * 2,
                 timeout=30, step=0.2)
    own = owners(env, nats)
    gw = gateway(env, nats, "gw", a.key_file)
    lag = gateway(env, nats, "gwlag", a.key_file, subjects_bucket="fv-elsewhere")

    vins = [f"5YJMOVED{k:09d}" for k in range(VEHICLES)]
    now = int(time.time() * 1000)
    old = {v: t.Device(env, v, now - 30000) for v in vins}
    for v in vins:
        assert old[v].send(gw, 0, 2) == 2 and len(old[v].acked) == 2, old[v].errors
    t.wait_until("the first owners' records through the api node",
                 lambda: all(rows(api, v) == sorted(old[v].acked) for v in vins), timeout=30)

    at = int(time.time() * 1000)
    for v in vins:
        t.run("subject", "owner", v, "customer-2", "--at", str(at), "--data", a.data,
              "--key-file", a.key_file)
    crossing = []
    for v in vins:
        shown = json.loads(t.run("subject", "show", v, "--data", a.data, "--key-file",
                                 a.key_file).stdout)
        p = {q["epoch"]: q["pseudonym"] for q in shown["periods"]}
        if own[shard_of(p[1])] != own[shard_of(p[2])]:
            crossing.append(v)
    t.log(f"{len(crossing)} of {VEHICLES} vehicles change to a subject of the other node's "
          "shards")
    assert crossing, "no vehicle's new subject is on the other node (1 in 4096): run again"
    # both storage nodes know of every change before the lagging gateway's records come
    t.wait_until("st-b to apply the owner changes",
                 lambda: b.metric("fleetvault_cluster_subjects_applied_total") >= VEHICLES,
                 timeout=20)
    time.sleep(0.3)  # the consumers' registry check (at most 1 ms old) sees the catalog

    new = {v: t.Device(env, v, at + 1000) for v in vins}
    for v in vins:  # txids 2, 3: not the first owner's (the stream de-duplicates by txid)
        assert new[v].send(lag, 2, 2) == 2 and len(new[v].acked) == 2, new[v].errors
    t.wait_until("every new owner's records through the api node",
                 lambda: all(rows(api, v) == sorted(new[v].acked) for v in vins), timeout=30)
    moved = a.metric("fleetvault_cluster_records_moved_total") + \
        b.metric("fleetvault_cluster_records_moved_total")
    resub = a.metric("fleetvault_cluster_records_resubjected_total") + \
        b.metric("fleetvault_cluster_records_resubjected_total")
    t.log(f"{resub:.0f} records sealed again, {moved:.0f} of them moved to the other node")
    assert moved >= 2 * len(crossing), (moved, crossing)
    assert resub >= 2 * VEHICLES, resub
    # the new owners' records are stored once, where the api node asks: still so after the
    # storage nodes flush
    time.sleep(2.5)
    for v in vins:
        assert rows(api, v) == sorted(new[v].acked), v

    # Killed and started again, neither node takes a moved record's message again: its
    # cursor record said the record moved, so the WAL's replay moved the shard's cursor past
    # it (C13) - else it would be published again, and outside the stream's de-duplication
    # window (2 min) stored twice.
    for s in (a, b):
        s.kill9()
    for s in (a, b):
        s.start(timeout=40)
    t.wait_until("the two storage nodes to hold every shard again",
                 lambda: a.metric("fleetvault_cluster_shards_owned") +
                 b.metric("fleetvault_cluster_shards_owned") == SHARDS, timeout=30)
    t.wait_until("every new owner's records through the api node after the restart",
                 lambda: all(rows(api, v) == sorted(new[v].acked) for v in vins), timeout=30)
    assert a.metric("fleetvault_cluster_records_moved_total") + \
        b.metric("fleetvault_cluster_records_moved_total") == 0


if __name__ == "__main__":
    t.main([test_record_moved_to_new_subjects_shard])
