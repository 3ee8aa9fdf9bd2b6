"""Cluster on a 3-node NATS JetStream cluster (docs/cluster.md, issue 15): three
`nats-server -js` routed on 127.0.0.1, the stream and its consumers with 3 replicas, a storage
node and two gateways given all three URLs. Mid-stream one NATS server is killed with SIGKILL
(and stays down), the stream's leader: the gateways send unacknowledged publishes again (cluster/jsreclog.h J3),
nats.c reconnects both sides to the others, and every acked record is on the storage node
exactly once afterwards. The storage node is killed with SIGKILL once too.

Not in CI (named manual_*, outside the test_*.py glob): run it by hand,
  FV_BIN=build/fleetvault PYTHONPATH=tests/e2e python3 tests/e2e/manual_cluster_nats3.py
What it showed on this machine (docs/cluster.md, "A NATS server lost"): acks pause about as
long as the stream's leader election (6-8 s); the storage node restarted into the degraded
cluster took 10-30 s to make its consumers again, and six of seven runs failed (mostly not
caught up within the time the test waits, FV_CLUSTER_CATCHUP, default 30 s) - so it fails, which is
the next slice's work, not something to hide in CI.
"""
import json
import os
import random
import shutil
import subprocess
import time
import urllib.request

import fvtest as t
import test_cluster as tc


class Nats3:
    """Three routed nats-servers with JetStream; the URL list and jsz of a live one."""

    def __init__(self, root):
        self.bin = shutil.which("nats-server") or "/usr/sbin/nats-server"
        assert os.path.exists(self.bin), "nats-server is not installed (scripts/deps.sh)"
        self.root = root
        self.ports = [t.free_port() for _ in range(3)]
        self.routes = [t.free_port() for _ in range(3)]
        self.mons = [t.free_port() for _ in range(3)]
        self.port = self.ports[0]  # for tc.cluster_cfg; urls() gives all three
        self.procs = [None] * 3
        self.logs = []

    def urls(self):
        return [f"nats://127.0.0.1:{p}" for p in self.ports]

    def start(self):
        routes = ",".join(f"nats://127.0.0.1:{r}" for r in self.routes)
        for i in range(3):
            logf = open(os.path.join(self.root, f"nats{i}.log"), "a")
            self.logs.append(logf)
            self.procs[i] = subprocess.Popen(
                [self.bin, "-js", "-a", "127.0.0.1", "-p", str(self.ports[i]), "-m",
                 str(self.mons[i]), "-sd", os.path.join(self.root, f"nats{i}"), "-n", f"n{i}",
                 "--cluster_name", "fv", "--cluster", f"nats://127.0.0.1:{self.routes[i]}",
                 "--routes", routes], stdout=logf, stderr=logf)
        t.wait_until("the NATS cluster's meta leader", self.meta_leader, timeout=30, step=0.2)
        return self

    def jsz(self, path="/jsz?consumers=true"):
        for i in range(3):
            if self.procs[i] and self.procs[i].poll() is None:
                try:
                    with urllib.request.urlopen(
                            f"http://127.0.0.1:{self.mons[i]}{path}", timeout=2) as r:
                        return json.load(r)
                except OSError:
                    pass
        return None

    def meta_leader(self):
        j = self.jsz("/jsz")
        return j and (j.get("meta_cluster") or {}).get("leader")

    def consumers(self):
        return tc.Nats.consumers(self)

    def stream_leader(self):
        """The index of the server leading the stream FLEETVAULT, or None."""
        for a in (self.jsz("/jsz?streams=true") or {}).get("account_details", []):
            for st in a.get("stream_detail", []):
                name = (st.get("cluster") or {}).get("leader") or ""
                if st["name"] == "FLEETVAULT" and name[:1] == "n":
                    return int(name[1:])
        return None

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


def test_nats_server_killed_exactly_once():
    with t.Env() as env:
        nats = Nats3(env.root).start()
        killed = []

        def disturb(storage):
            time.sleep(tc.SECONDS / 4)
            k = nats.stream_leader()  # the stream's leader: publishes must wait for a new one
            k = random.randrange(3) if k is None else k
            t.log(f"killing NATS server n{k} (the stream's leader: {nats.stream_leader()})")
            nats.kill9(k)
            killed.append(k)
            time.sleep(tc.SECONDS / 4)
            storage.kill9()
            time.sleep(0.5)
            storage.start(timeout=40)
        try:
            tc.run_cluster(env, disturb, gateways=2, nats=nats, replicas=3)
        finally:
            nats.stop()
        assert killed


if __name__ == "__main__":
    t.main([test_nats_server_killed_exactly_once])
