"""Issue 15's acceptance run on a degraded NATS cluster (docs/cluster.md, "A NATS server
lost"): three `nats-server -js` routed on 127.0.0.1, the stream, its consumers and the KV
buckets with 3 replicas, two gateways (each its own simulated vehicles) and two storage
nodes sharing the shards by lease. Mid-stream the server leading the stream is killed with
SIGKILL (and stays down), then one storage node too: the gateways send unacknowledged
publishes again (cluster/jsreclog.h J3), the survivor takes the dead node's shards over
(rebuilding them from the stream) on the two servers left, and every acked record is then
queryable from it exactly once, once in its WAL. The simulators' slowest ack is reported
(acks pause for the stream leader's election).

Consumer state is read from each consumer's leader: a follower's /jsz view of a consumer
made on the degraded cluster can stay stale (pending and delivered frozen) while the leader
has delivered and acked everything.
FV_NATS3_VEHICLES (default 12) and FV_NATS3_SECONDS (default 12) scale it."""
import json
import os
import random
import shutil
import subprocess
import time
import urllib.request

import fvtest as t
from test_cluster import (Gateway, acked_records, cluster_status, kill_gateways,
                          wal_exactly_once)

VEHICLES = int(os.environ.get("FV_NATS3_VEHICLES", "12"))
SECONDS = int(os.environ.get("FV_NATS3_SECONDS", "12"))
SHARDS = 4
# Issue 15: "acks pause for at most a few seconds". A leader election in nats-server 2.9
# takes 4-9 s (its raft's election timeouts); the gateway resends after 2 s without a PubAck
# and a 100 ms pause (jsreclog.h J3), and the simulator's own resend is after 5 s.
ACK_PAUSE_MAX_MS = 15000


class Nats3:
    """Three routed nats-servers with JetStream; /jsz of the live ones."""

    def __init__(self, root):
        self.bin = shutil.which("nats-server") or "/usr/sbin/nats-server"
        assert os.path.exists(self.bin), "nats-server is not installed (scripts/deps.sh)"
        self.root = root
        self.ports = [t.free_port() for _ in range(3)]
        self.routes = [t.free_port() for _ in range(3)]
        self.mons = [t.free_port() for _ in range(3)]
        self.procs = [None] * 3
        self.logs = []

    def urls(self):
        return [f"nats://127.0.0.1:{p}" for p in self.ports]

    def start(self):
        for attempt in range(3):  # a random port taken meanwhile: all three again, new ports
            if self.launch():
                return self
            self.stop()
            self.logs = []
            self.ports, self.routes, self.mons = ([t.free_port() for _ in range(3)]
                                                  for _ in range(3))
        raise AssertionError("the NATS servers did not start (nats*.log)")

    def spawn(self, i):
        """Starts server i (again: the same ports and store directory)."""
        routes = ",".join(f"nats://127.0.0.1:{r}" for r in self.routes)
        logf = open(os.path.join(self.root, f"nats{i}.log"), "a")
        self.logs.append(logf)
        self.procs[i] = subprocess.Popen(
            [self.bin, "-js", "-a", "127.0.0.1", "-p", str(self.ports[i]), "-m",
             str(self.mons[i]), "-sd", os.path.join(self.root, f"nats{i}"), "-n", f"n{i}",
             "--cluster_name", "fv", "--cluster", f"nats://127.0.0.1:{self.routes[i]}",
             "--routes", routes], stdout=logf, stderr=logf)

    def launch(self):
        for i in range(3):
            self.spawn(i)
        deadline = time.time() + 30
        while time.time() < deadline:
            if any(p.poll() is not None for p in self.procs):
                return False
            if all(self.jsz_of(i, "/jsz") for i in range(3)) and self.meta_leader():
                return True
            time.sleep(0.2)
        return False

    def jsz_of(self, i, path):
        if self.procs[i] is None or self.procs[i].poll() is not None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.mons[i]}{path}",
                                        timeout=2) as r:
                return json.load(r)
        except OSError:
            return None

    def streams(self, i, what="consumers"):
        for a in (self.jsz_of(i, f"/jsz?{what}=true") or {}).get("account_details", []):
            for st in a.get("stream_detail", []):
                if st["name"] == "FLEETVAULT":
                    yield st

    def meta_leader(self):
        for i in range(3):
            j = self.jsz_of(i, "/jsz")
            if j and (j.get("meta_cluster") or {}).get("leader"):
                return True
        return False

    def stream_leader(self):
        """The index of the server leading the stream FLEETVAULT, or None."""
        for i in range(3):
            for st in self.streams(i, "streams"):
                name = (st.get("cluster") or {}).get("leader") or ""
                if name[:1] == "n":
                    return int(name[1:])
        return None

    def consumers(self):
        """{name: (num_pending, num_ack_pending)} as each consumer's leader reports it."""
        out = {}
        for i in range(3):
            for st in self.streams(i):
                for c in st.get("consumer_detail") or []:
                    if (c.get("cluster") or {}).get("leader") == f"n{i}":
                        out[c["name"]] = (c["num_pending"], c["num_ack_pending"])
        return out

    def kill9(self, i):
        self.procs[i].kill()
        self.procs[i].wait()

    def stop(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.terminate()
                p.wait(timeout=10)
        for f in self.logs:
            f.close()


def cfg(nats, **extra):
    c = {"nats": nats.urls(), "replicas": 3, "shards": SHARDS, "lease_renew_ms": 1000,
         "lease_ttl_ms": 5000}
    c.update(extra)
    return c


def storage_node(env, name, nats, first=None):
    root = os.path.join(env.root, name)
    os.makedirs(root)
    srv = t.Server(root, env.certs, config={"cluster": cfg(nats, node=name),
                                            "store": {"flush_interval": "2s"}},
                   extra=["--role", "storage", "--no-rate-limit"])
    if first is not None:  # every node of a cluster has the same master key
        srv.key_file = first.key_file
    return srv


def owners(env, nats):
    """{shard: owner} by `cluster status`; {} while it has no answer (exit 2: the stream's
    info times out during the stream leader's election)."""
    rc, st, err = cluster_status(env.root, cfg(nats))
    assert st is not None or rc == 2, (rc, err)
    return {sh["shard"]: sh["owner"] or "" for sh in st["shards"]} if st else {}


def test_nats_server_and_storage_node_killed():
    with t.Env() as env:
        nats = Nats3(env.root).start()
        try:
            run(env, nats)
        finally:
            kill_gateways()
            nats.stop()


def run(env, nats):
    t0 = time.time()
    a = storage_node(env, "st-a", nats).start(timeout=40)
    b = storage_node(env, "st-b", nats, first=a).start(timeout=40)
    t.wait_until("the two storage nodes to split the shards",
                 lambda: sorted(owners(env, nats).values()) == ["st-a"] * 2 + ["st-b"] * 2,
                 timeout=30, step=0.2)
    gws = [Gateway(os.path.join(env.root, f"gateway{k}"), env.certs, a.key_file,
                   {"cluster": cfg(nats)}).start() for k in range(2)]
    sims = []
    for k, gw in enumerate(gws):
        acked_log = os.path.join(env.root, f"acked{k}.log")
        sim_log = open(os.path.join(env.root, f"sim{k}.log"), "w")
        sims.append((subprocess.Popen(
            [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{gw.port}", "--certs",
             env.certs.dir, "--vehicles", str(VEHICLES // 2), "--seconds", str(SECONDS),
             "--hz", "5", "--drain", "60", "--acked-log", acked_log, "--quiet", "--id-prefix",
             f"5YJN3{k}", "--seed", str(random.randrange(1 << 30))],
            stdout=subprocess.PIPE, stderr=sim_log, text=True), sim_log, acked_log))

    time.sleep(SECONDS / 4)
    k = nats.stream_leader()
    k = random.randrange(3) if k is None else k
    t.log(f"killing NATS server n{k} (the stream's leader)")
    nats.kill9(k)
    time.sleep(SECONDS / 4)
    b.kill9()
    killed = time.time()
    t.log("killed storage node st-b")
    # its own count (`cluster status` may not answer meanwhile: the lease bucket's reads
    # time out while its leader is elected)
    t.wait_until("st-a to take every shard over",
                 lambda: a.metric("fleetvault_cluster_shards_owned") == SHARDS, timeout=30,
                 step=0.1)
    t.log(f"st-a holds all {SHARDS} shards {time.time() - killed:.1f} s after st-b's death")

    acked = {}
    for sim, sim_log, acked_log in sims:
        out, _ = sim.communicate(timeout=SECONDS + 120)
        sim_log.close()
        final = json.loads(out.strip().splitlines()[-1])
        t.log(f"simulator: acked {final['acked']} of {final['sent']}, ack p50 "
              f"{final['ack_p50_ms']:.0f} ms, p99 {final['ack_p99_ms']:.0f} ms, max "
              f"{final['ack_max_ms']:.0f} ms, {final['resent']} sent again")
        assert sim.returncode == 0, f"simulator left records unacked: {final}"
        assert final["acked"] > 0 and final["acked"] + final["errors"] == final["sent"], final
        # The fleet kept streaming: acks paused for the stream leader's election (4-9 s in
        # nats-server 2.9's raft; 4-7 s measured), never longer than ACK_PAUSE_MAX_MS.
        assert final["ack_max_ms"] <= ACK_PAUSE_MAX_MS, (
            f"an ack took {final['ack_max_ms']:.0f} ms (at most {ACK_PAUSE_MAX_MS} allowed)")
        mine = acked_records(acked_log)
        assert len(mine) == final["acked"], (len(mine), final["acked"])
        acked.update(mine)

    names = [f"fv-st-a-shard-{s}" for s in range(SHARDS)]

    def caught_up():
        cs = nats.consumers()
        return all(cs.get(n) == (0, 0) for n in names)
    t.wait_until("st-a to consume every shard", caught_up, timeout=40)
    t.log(f"st-a caught up {time.time() - killed:.1f} s after st-b's death")

    # cluster status: every shard owned by st-a, nothing pending; degraded (exit 1) only by
    # the stream replica on the dead server. It answers every time: the lease bucket is read
    # without an ephemeral consumer, which nats-server 2.9 may place on the dead server (it
    # did not answer 1 time in 3, with "reading lease bucket fv-leases: Timeout").
    got = []
    for _ in range(6):
        t1 = time.time()
        got.append(cluster_status(env.root, cfg(nats)))
        assert got[-1][1] is not None, (
            f"cluster status did not answer (exit {got[-1][0]} after {time.time() - t1:.1f} s): "
            f"{got[-1][2].strip()}")
    rc, st, err = got[-1]
    assert st["shards_unowned"] == 0 and {sh["owner"] for sh in st["shards"]} == {"st-a"}, st
    for sh in st["shards"]:
        mine = [c for c in sh["consumers"] if c["name"] == f"fv-st-a-shard-{sh['shard']}"]
        assert mine and mine[0]["pending"] == 0 and mine[0]["ack_pending"] == 0, sh
    t.log(f"cluster status: exit {rc}, health {st['health']}")

    times = {}
    for (vin, _), ms in acked.items():
        times.setdefault(vin, []).append(ms)
    for vin, want in times.items():
        rows = [r["t"] for r in a.json(f"/api/v1/query?device={vin}&signals=Soc")["rows"]]
        assert len(rows) == len(set(rows)), f"{vin}: records stored twice on st-a"
        missing = set(want) - set(rows)
        assert not missing, f"{vin}: {len(missing)} acked records not queryable on st-a"

    for gw in gws:
        gw.stop()
    a.stop()
    wal_exactly_once(a, acked)
    t.log(f"{len(acked)} acked records of {len(times)} vehicles on st-a exactly once; "
          f"{time.time() - t0:.1f} s in all")


if __name__ == "__main__":
    t.main([test_nats_server_and_storage_node_killed])
