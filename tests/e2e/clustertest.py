"""Helpers of the api node's end-to-end tests (test_cluster_api*.py; docs/cluster.md, "Queries
through an api node"): a cluster's config, a node of a role started with the cluster's master
key, and the HTTP API's GET with its Retry-After and time."""
import os
import random
import subprocess
import time
import urllib.error
import urllib.request

import fvtest as t

SHARDS = 8


def cfg(nats, shards=SHARDS, renew_ms=1000, ttl_ms=15000, **extra):
    """The "cluster" object: one nats-server, replicas 1, leases renewed each renew_ms."""
    c = {"nats": [f"nats://127.0.0.1:{nats.port}"], "replicas": 1, "shards": shards,
         "lease_renew_ms": renew_ms, "lease_ttl_ms": ttl_ms}
    c.update(extra)
    return c


def node(env, name, nats, role, key_file=None, policy=None, ttl_ms=15000, **extra):
    """A started node of role in env.root/name (store flushed every 2 s, rate limits off);
    key_file: the master key of the cluster's first node (every node has the same)."""
    root = os.path.join(env.root, name)
    os.makedirs(root)
    srv = t.Server(root, env.certs, config={"cluster": cfg(nats, ttl_ms=ttl_ms, **extra),
                                            "store": {"flush_interval": "2s"}},
                   extra=["--role", role, "--no-rate-limit"], policy=policy)
    if key_file:
        srv.key_file = key_file
    return srv.start()


def get_timed(srv, path, token="ops", purpose="service"):
    """(status, body, Retry-After, seconds) of a GET of the HTTP API (token None: none)."""
    if purpose and "purpose=" not in path:
        path += ("&" if "?" in path else "?") + "purpose=" + purpose
    req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}{path}")
    if token:
        req.add_header("Authorization", "Bearer " + srv.tokens[token])
    t0 = time.time()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), r.headers.get("Retry-After"), time.time() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Retry-After"), time.time() - t0


def get(srv, path, token="ops", purpose="service"):
    """(status, body, Retry-After) of a GET of the HTTP API."""
    return get_timed(srv, path, token, purpose)[:3]


def owners_and_api(env, nats, node, query_timeout_ms=2000):
    """Storage nodes st-a and st-b and an api node, made with node (the test's own: its policy
    and leases); returns them once the two storage nodes hold half the shards each."""
    a = node(env, "a", nats, "storage", node="st-a")
    b = node(env, "b", nats, "storage", a.key_file, node="st-b")
    api = node(env, "api", nats, "api", a.key_file, query_timeout_ms=query_timeout_ms)
    wait_split(env, nats)
    return a, b, api


def wait_split(env, nats):
    """Until storage nodes st-a and st-b hold half the shards each."""
    from test_cluster import cluster_status

    def split():
        rc, st, _ = cluster_status(env.root, cfg(nats))
        owners = [sh["owner"] for sh in st["shards"]] if st else []
        return rc == 0 and owners.count("st-a") == owners.count("st-b") == SHARDS // 2
    t.wait_until("the two storage nodes to split the shards", split, timeout=30, step=0.2)


def gateway(env, nats, key_file):
    """A started gateway of the cluster."""
    from test_cluster import Gateway
    return Gateway(os.path.join(env.root, "gateway"), env.certs, key_file,
                   {"cluster": cfg(nats)}).start()


def stream(env, gw, vehicles, seconds, prefix, hz=5):
    """Simulated vehicles (ids prefix...) through gw for seconds at hz, each record logged
    once acked; returns (the simulator's process, the acked log's path)."""
    acked_log = os.path.join(env.root, "acked.log")
    with open(os.path.join(env.root, "sim.log"), "w") as sim_log:
        r = subprocess.run(
            [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{gw.port}", "--certs",
             env.certs.dir, "--vehicles", str(vehicles), "--seconds", str(seconds), "--hz",
             str(hz), "--drain", "30", "--acked-log", acked_log, "--quiet", "--id-prefix",
             prefix, "--seed", str(random.randrange(1 << 30))],
            stdout=subprocess.PIPE, stderr=sim_log, text=True, timeout=seconds + 60)
    assert r.returncode == 0, r.stdout
    return r, acked_log
