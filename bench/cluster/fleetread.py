#!/usr/bin/env python3
"""bench/cluster/fleetread.py: the fleet view (GET /api/v1/fleet) through an api node, two
binaries side by side in one cluster (docs/cluster.md, "Queries through an api node", rule
13): an api node of FV_BIN_BEFORE (the API thread waits for the owners) and one of FV_BIN
(it does not), both asking the same two storage nodes (of FV_BIN), requests alternating.

    make build && FV_BIN=build/fleetvault FV_BIN_BEFORE=/path/to/old/fleetvault \
        python3 bench/cluster/fleetread.py
    knobs: VEHICLES=40, REQUESTS=300 (sequential, per api node), CLIENTS=4 (then that many
    at once, REQUESTS/CLIENTS each)

One nats-server, one gateway, two storage nodes splitting 8 shards, two api nodes, on
127.0.0.1. Prints p50/p99/max in ms per api node; then, with one storage node stopped
(SIGSTOP), /status's latency on each api node while two fleet reads wait for it. Every process shares this machine's cores:
compare the two within a run.
"""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "e2e"))
import fvtest as t  # noqa: E402
import test_cluster_api as T  # noqa: E402
from test_cluster import Gateway, cluster_status, with_nats  # noqa: E402

VEHICLES = int(os.environ.get("VEHICLES", "40"))
REQUESTS = int(os.environ.get("REQUESTS", "300"))
CLIENTS = int(os.environ.get("CLIENTS", "4"))
BEFORE = os.environ.get("FV_BIN_BEFORE")
Q = "/api/v1/fleet?signal=Soc&lookback=1d&purpose=service"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


def one(srv, token):
    req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}{Q}")
    req.add_header("Authorization", "Bearer " + token)
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
        assert r.status == 200
    return time.perf_counter() - t0, body


def run(env, nats):
    a = T.node(env, "a", nats, "storage", node="st-a")
    b = T.node(env, "b", nats, "storage", a.key_file, node="st-b")
    apis = {"after": T.node(env, "api", nats, "api", a.key_file, query_timeout_ms=3000)}
    if BEFORE:
        bin_now, t.BIN = t.BIN, BEFORE
        try:
            apis["before"] = T.node(env, "api-before", nats, "api", a.key_file,
                                    query_timeout_ms=3000)
        finally:
            t.BIN = bin_now

    def split():
        rc, st, _ = cluster_status(env.root, T.cfg(nats))
        owners = [sh["owner"] for sh in st["shards"]] if st else []
        return rc == 0 and owners.count("st-a") == owners.count("st-b") == T.SHARDS // 2
    t.wait_until("the two storage nodes to split the shards", split, timeout=30, step=0.2)
    gw = Gateway(os.path.join(env.root, "gateway"), env.certs, a.key_file,
                 {"cluster": T.cfg(nats)}).start()
    subprocess.run(
        [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{gw.port}", "--certs", env.certs.dir,
         "--vehicles", str(VEHICLES), "--seconds", "3", "--hz", "5", "--drain", "30", "--quiet",
         "--id-prefix", "5YJFR", "--seed", str(random.randrange(1 << 30))],
        stdout=subprocess.PIPE, text=True, timeout=120, check=True)
    gw.stop()
    tok = a.tokens["ops"]
    t.wait_until("the fleet view to hold every vehicle", lambda: json.loads(
        one(apis["after"], tok)[1])["count"] == VEHICLES, timeout=40, step=0.5)
    bodies = {name: one(srv, tok)[1] for name, srv in apis.items()}
    assert len(set(bodies.values())) == 1, "the two api nodes answer differently"
    print(f"{VEHICLES} vehicles, fleet answer {len(bodies['after'])} bytes; shared machine "
          "(every process on the same cores)")
    for name, srv in apis.items():  # warm up
        for _ in range(10):
            one(srv, tok)
    seq = {name: [] for name in apis}
    for _ in range(REQUESTS):
        for name, srv in apis.items():
            seq[name].append(one(srv, tok)[0])
    for name in apis:
        xs = seq[name]
        print(f"sequential {name:6}: {len(xs)} requests p50 {pct(xs, .5):.2f} ms  "
              f"p99 {pct(xs, .99):.2f} ms  max {max(xs) * 1000:.2f} ms")
    for name, srv in apis.items():
        lat = []
        lock = threading.Lock()

        def client():
            for _ in range(REQUESTS // CLIENTS):
                dt = one(srv, tok)[0]
                with lock:
                    lat.append(dt)
        t0 = time.perf_counter()
        ths = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        wall = time.perf_counter() - t0
        print(f"{CLIENTS} clients {name:6}: {len(lat)} requests in {wall:.2f} s "
              f"({len(lat) / wall:.0f}/s) p50 {pct(lat, .5):.2f} ms  p99 {pct(lat, .99):.2f} ms")
    # One owner silent (SIGSTOP: its leases live on): fleet reads wait query_timeout_ms for
    # it (then 504); meanwhile /status is asked 20 times, 0.1 s apart, of the same api node.
    b.proc.send_signal(signal.SIGSTOP)
    try:
        for name, srv in apis.items():
            def status():
                req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}/status")
                t0 = time.perf_counter()
                with urllib.request.urlopen(req, timeout=30) as r:
                    r.read()
                return time.perf_counter() - t0

            def blocked():
                try:
                    one(srv, tok)
                except urllib.error.HTTPError as e:
                    assert e.code == 504, e.code
            readers = [threading.Thread(target=blocked) for _ in range(2)]
            for th in readers:
                th.start()
            time.sleep(0.05)
            lat = []
            for _ in range(20):
                lat.append(status())
                time.sleep(0.1)
            for th in readers:
                th.join()
            print(f"silent owner {name:6}: /status x{len(lat)} during 2 waiting fleet reads: "
                  f"p50 {pct(lat, .5):.2f} ms  max {max(lat) * 1000:.2f} ms  over 100 ms: "
                  f"{sum(x > 0.1 for x in lat)}")
    finally:
        b.proc.send_signal(signal.SIGCONT)
    for srv in list(apis.values()) + [a, b]:
        srv.stop()


if __name__ == "__main__":
    with_nats(run)
