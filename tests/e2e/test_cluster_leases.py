"""Shard leases and takeover (docs/cluster.md, "Leases"; issue 15 item 3): one nats-server,
one gateway and TWO storage nodes without owned_shards. They split the shards by lease
(`cluster status`, both receive data); a simulated fleet streams through the gateway; one
storage node is frozen (SIGSTOP) past its leases' deadline: the other takes its shards, and
the woken node drops its leases at once, then gets its share back. Then it is killed with
SIGKILL mid-stream and the other takes all its shards over within a few lease TTLs,
rebuilding them from the stream: every acked record is then queryable exactly once from the
survivor. The killed node restarts (restricted by
owned_shards to shards it did not hold before, so that what it may answer for changes): it
takes them from the survivor, which stops answering for them, and it does not answer for
the shards it held before its death though its store still has their records. Across the
two nodes' APIs every acked record is then found exactly once.
FV_LEASE_VEHICLES (default 16) and FV_LEASE_SECONDS (default 18) scale it."""
import json
import os
import random
import signal
import subprocess
import time

import fvtest as t
from test_cluster import Gateway, acked_records, cluster_status, with_nats

VEHICLES = int(os.environ.get("FV_LEASE_VEHICLES", "16"))
SECONDS = int(os.environ.get("FV_LEASE_SECONDS", "18"))
SHARDS = 8
RENEW_MS, TTL_MS = 500, 2500  # short, so that takeover happens within seconds


def cfg(nats, **extra):
    c = {"nats": [f"nats://127.0.0.1:{nats.port}"], "replicas": 1, "shards": SHARDS,
         "lease_renew_ms": RENEW_MS, "lease_ttl_ms": TTL_MS}
    c.update(extra)
    return c


def storage_node(env, name, nats, first=None, **extra):
    """A storage node with its own catalog (its principals made after it started, once it has
    the cluster's pseudonym key from KV); the second one is given the first's master key, as
    every node of a cluster is (docs/cluster.md, "Keys")."""
    root = os.path.join(env.root, name)
    os.makedirs(root)
    srv = t.Server(root, env.certs, config={"cluster": cfg(nats, **extra),
                                            "store": {"flush_interval": "2s"}},
                   extra=["--role", "storage", "--no-rate-limit"])
    if first is not None:
        srv.key_file = first.key_file
    return srv


def status(env, nats):
    rc, st, err = cluster_status(env.root, cfg(nats))
    assert st is not None, (rc, err)
    return rc, st


def owners(st):
    return {sh["shard"]: sh["owner"] for sh in st["shards"]}


def held(st):
    out = {}
    for sh in st["shards"]:
        if sh["owner"]:
            out.setdefault(sh["owner"], set()).add(sh["shard"])
    return out


def rows(srv, vin):
    return [r["t"] for r in srv.json(f"/api/v1/query?device={vin}&signals=Soc")["rows"]]


def caught_up(nats, names):
    """Every consumer of the given owners' shards has delivered and acked everything."""
    cs = nats.consumers()
    return all(cs.get(n, (1, 1)) == (0, 0) for n in names)


def consumer_names(st):
    return [f"fv-{sh['owner']}-shard-{sh['shard']}" for sh in st["shards"] if sh["owner"]]


def test_leases_split_takeover_restart():
    with_nats(run)


def run(env, nats):
    t0 = time.time()
    a = storage_node(env, "a", nats, node="st-a").start()
    b = storage_node(env, "b", nats, first=a)  # its name: the default (host, data dir)
    b.start()

    # Two nodes, 8 shards: 4 leases each (the fair share), every shard owned, health ok.
    def split():
        rc, st = status(env, nats)
        h = held(st)
        return rc == 0 and len(h) == 2 and sorted(len(v) for v in h.values()) == [4, 4]
    t.wait_until("the two storage nodes to split the shards", split, timeout=20, step=0.2)
    rc, st = status(env, nats)
    assert st["health"] == "ok" and st["shards_unowned"] == 0, st
    names = sorted(n["name"] for n in st["nodes"])
    b_name = [n for n in names if n != "st-a"][0]
    assert names == sorted(["st-a", b_name]) and all(n["shards"] == 4 for n in st["nodes"]), st
    assert all(n["last_seen_ms"] > 0 for n in st["nodes"]), st
    b_before = held(st)[b_name]
    human = t.run("cluster", "status", "--config", os.path.join(env.root, "status.json")).stdout
    assert "storage nodes (lease bucket fv-leases):" in human and "lease: st-a" in human, human
    assert f"fv-{b_name}-shard-" in human, human
    t.log(f"leases: st-a {sorted(held(st)['st-a'])}, {b_name} {sorted(b_before)}")
    assert a.wait_metric("fleetvault_cluster_shards_owned", 4) == 4
    assert b.wait_metric("fleetvault_cluster_shards_owned", 4) == 4

    gw = Gateway(os.path.join(env.root, "gateway"), env.certs, a.key_file,
                 {"cluster": cfg(nats)}).start()
    acked_log = os.path.join(env.root, "acked.log")
    sim_log = open(os.path.join(env.root, "sim.log"), "w")
    sim = subprocess.Popen(
        [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{gw.port}", "--certs", env.certs.dir,
         "--vehicles", str(VEHICLES), "--seconds", str(SECONDS), "--hz", "5", "--drain", "60",
         "--acked-log", acked_log, "--quiet", "--id-prefix", "5YJLS",
         "--seed", str(random.randrange(1 << 30))],
        stdout=subprocess.PIPE, stderr=sim_log, text=True)

    # Both nodes receive data (their shards' records reach their stores).
    def both_take():
        return all(s.json("/api/v1/store")["head_records"] + s.json("/api/v1/store")["records"]
                   > 0 for s in (a, b))
    t.wait_until("both storage nodes to take records", both_take, timeout=SECONDS / 2)

    def a_all():
        rc, st = status(env, nats)
        return rc == 0 and set(owners(st).values()) == {"st-a"}

    # A node frozen past its leases' deadline (a long pause: SIGSTOP) loses them: st-a takes
    # its shards; woken, it stops at once (it does not renew what another node holds now),
    # then gets its fair share back from st-a.
    b.proc.send_signal(signal.SIGSTOP)
    try:
        t.wait_until("st-a to take the frozen node's shards", a_all, timeout=4 * TTL_MS / 1000,
                     step=0.1)
    finally:
        b.proc.send_signal(signal.SIGCONT)
    t.wait_until("the woken node to drop its leases",
                 lambda: "lease not renewed before its deadline; no longer taking" in b.log(),
                 timeout=5)
    t.wait_until("the woken node to get its share back", split, timeout=20, step=0.2)
    t.log(f"after the pause: {sorted(held(status(env, nats)[1]).items())}")
    b_before = held(status(env, nats)[1])[b_name]

    time.sleep(random.uniform(0.5, 1.5))
    b.kill9()
    killed = time.time()

    # Within a few lease TTLs the survivor holds every shard (and is the only node left).
    t.wait_until("st-a to take every shard over", a_all, timeout=4 * TTL_MS / 1000, step=0.1)
    t.log(f"st-a holds all {SHARDS} shards {time.time() - killed:.1f} s after the kill")
    assert a.wait_metric("fleetvault_cluster_shards_owned", SHARDS) == SHARDS
    assert a.metric("fleetvault_cluster_takeovers_total") >= SHARDS + 4  # 4, +4, +4

    out, _ = sim.communicate(timeout=SECONDS + 120)
    sim_log.close()
    final = json.loads(out.strip().splitlines()[-1])
    t.log(f"simulator: {final}")
    assert sim.returncode == 0 and final["acked"] > 0, final
    acked = acked_records(acked_log)
    assert len(acked) == final["acked"], (len(acked), final["acked"])
    times = {}
    for (vin, _), ms in acked.items():
        times.setdefault(vin, []).append(ms)

    rc, st = status(env, nats)
    t.wait_until("st-a to consume every shard", lambda: caught_up(nats, consumer_names(st)),
                 timeout=30)
    # Exactly once from the survivor's API: every acked record's time, none twice.
    for vin, want in times.items():
        got = rows(a, vin)
        assert len(got) == len(set(got)), f"{vin}: records stored twice on st-a"
        missing = set(want) - set(got)
        assert not missing, f"{vin}: {len(missing)} acked records not queryable on st-a"
    t.log(f"{len(acked)} acked records of {len(times)} vehicles on st-a exactly once")

    # The killed node restarts, restricted to shards it did not hold before: it takes them
    # from st-a (which stops answering for them) and answers for nothing else.
    b_new = sorted(set(range(SHARDS)) - b_before)
    with open(b.config) as f:
        bc = json.load(f)
    bc["cluster"]["owned_shards"] = b_new
    with open(b.config, "w") as f:
        json.dump(bc, f)
    b.start()

    def resplit():
        rc, st = status(env, nats)
        h = held(st)
        return rc == 0 and h.get(b_name) == set(b_new) and len(h.get("st-a", ())) == 4
    t.wait_until("the restarted node to take its share back", resplit, timeout=8 * TTL_MS / 1000,
                 step=0.2)
    rc, st = status(env, nats)
    t.wait_until("both nodes to consume their shards",
                 lambda: caught_up(nats, consumer_names(st)), timeout=30)
    assert b.wait_metric("fleetvault_cluster_shards_owned", 4) == 4
    assert a.wait_metric("fleetvault_cluster_shards_owned", 4) == 4

    # Across the two APIs every acked record once: each vehicle answered by one node only.
    served = {"st-a": 0, b_name: 0}
    for vin, want in times.items():
        ra, rb = rows(a, vin), rows(b, vin)
        assert not (ra and rb), f"{vin}: answered by both storage nodes"
        got = ra or rb
        served["st-a" if ra else b_name] += 1
        assert len(got) == len(set(got)), f"{vin}: records stored twice"
        missing = set(want) - set(got)
        assert not missing, f"{vin}: {len(missing)} acked records not queryable"
    assert all(served.values()), served
    t.log(f"after the restart: vehicles answered by {served}")

    # The restarted node's WAL still holds records of vehicles it does not answer for (those
    # of the shards it had before its death): the lease, not missing data, keeps them out.
    gw.stop()
    b.stop()
    r = t.run("inspect", b.data, "--txids", "--key-file", b.key_file)
    subjects = {line.split(" ", 1)[0] for line in r.stdout.splitlines() if " " in line}
    assert len(subjects) > served[b_name], (len(subjects), served)
    t.log(f"the restarted node's WAL holds {len(subjects)} vehicles' records, it answers for "
          f"{served[b_name]}; {time.time() - t0:.1f} s in all")
    a.stop()


if __name__ == "__main__":
    t.main([test_leases_split_takeover_restart])
