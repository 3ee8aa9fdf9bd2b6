#!/usr/bin/env python3
"""bench/cluster/export.py: one vehicle's subject export (GDPR Art. 15/20) through an api node
against the same export asked of its storage node directly (docs/cluster.md, "Queries through
an api node", rule 9: the api node pulls the owner's answer in pieces of nats-server's
max_payload less 1 KiB, 1 MB by default).

    make build && FV_BIN=build/fleetvault python3 bench/cluster/export.py
    knobs: RECORDS=60000 (one vehicle at 200 Hz in virtual time), ROUNDS=2

One nats-server (default max_payload), one storage node owning every shard, one gateway, one
api node, on 127.0.0.1; prints the bytes and seconds of each export, direct and through the
api node alternately. Every process shares this machine's cores: compare the two within a run.
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "e2e"))
import fvtest as t  # noqa: E402
import test_cluster_api as T  # noqa: E402
from test_cluster import Gateway, with_nats  # noqa: E402

RECORDS = int(os.environ.get("RECORDS", "60000"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
HZ = 200
VIN = "5YJBX000000000000"


def run(env, nats):
    a = T.node(env, "a", nats, "storage", node="st-a")
    api = T.node(env, "api", nats, "api", a.key_file, query_timeout_ms=3000)
    for s in (a, api):
        s.principal("po", "privacy-officer")
    t.wait_until("the storage node to own every shard",
                 lambda: a.metric("fleetvault_cluster_shards_owned") == T.SHARDS, timeout=30)
    gw = Gateway(os.path.join(env.root, "gateway"), env.certs, a.key_file,
                 {"cluster": T.cfg(nats)}).start()
    r = subprocess.run(
        [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{gw.port}", "--certs", env.certs.dir,
         "--vehicles", "1", "--seconds", str(RECORDS // HZ), "--hz", str(HZ), "--drain", "60",
         "--quiet", "--id-prefix", "5YJBX", "--virtual-time",
         str((int(time.time()) - 7200) * 1000)],
        stdout=subprocess.PIPE, text=True, timeout=600)
    acked = json.loads(r.stdout.strip().splitlines()[-1])["acked"]

    def stored():
        st, body = a.http(f"/api/v1/query?device={VIN}&signals=Soc&limit=10000000")
        return st == 200 and len(json.loads(body)["rows"]) >= acked
    t.wait_until("every acked record stored", stored, timeout=180, step=1)
    print(f"{acked} records of {VIN}; shared machine (every process on the same cores)")
    for i in range(2 * ROUNDS):
        name, srv = (("direct", a), ("api node", api))[i % 2]
        t0 = time.time()
        st, body = srv.http(f"/api/v1/subjects/{VIN}/export?ticket=B-{i}", token="po",
                            purpose=None)
        dt = time.time() - t0
        assert st == 200, (st, body[:200])
        n = len(T.tar_files(body))
        print(f"{name:9s} {len(body)} bytes, {n} files, {dt:.2f} s ({len(body) / dt / 1e6:.1f} MB/s)",
              flush=True)
    gw.stop()
    api.stop()
    a.stop()


if __name__ == "__main__":
    with_nats(run)
