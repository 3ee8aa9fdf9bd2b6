#!/usr/bin/env python3
"""bench/cluster/keyrot.py: how long `fleetvault cluster keys-rotate` takes on a keys bucket of
N subjects (docs/cluster.md, "Master key rotation").

    make build && FV_BIN=build/fleetvault python3 bench/cluster/keyrot.py
    knobs: VEHICLES=1000

One nats-server, one gateway on key A, `fleetvault simulate` connecting VEHICLES vehicles
(each new subject's key made in the bucket by the gateway); then the gateway rolled to B
with A as previous, `keys-rotate --dry-run` and `keys-rotate` timed (A -> B), and a second
`keys-rotate` (nothing left). Every process shares this machine's cores.
"""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "e2e"))
import fvtest as t  # noqa: E402
from test_cluster import Gateway, Nats, kill_gateways  # noqa: E402
from test_cluster_keys import NatsClient  # noqa: E402

VEHICLES = int(os.environ.get("VEHICLES", "1000"))


def entries(nc):
    info = nc.js("STREAM.INFO.KV_fv-keys", {"subjects_filter": ">"})
    return len((info.get("state") or {}).get("subjects") or {})


def timed(*args):
    t0 = time.time()
    r = t.run(*args, timeout=600)
    return time.time() - t0, r.stdout.strip()


def main():
    with t.Env() as env:
        nats = Nats(env.root).start()
        nc = None
        try:
            cfg = {"cluster": {"nats": [f"nats://127.0.0.1:{nats.port}"], "replicas": 1}}
            groot = os.path.join(env.root, "gw")
            os.makedirs(groot)
            key = os.path.join(groot, "master.key")
            t.run("keys", "init", key)
            gw = Gateway(groot, env.certs, key, cfg).start()
            sim = subprocess.run(
                [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{gw.port}", "--certs",
                 env.certs.dir, "--vehicles", str(VEHICLES), "--seconds",
                 str(5 + VEHICLES // 80), "--hz", "0.2", "--connect-rate", "80", "--quiet",
                 "--id-prefix", "5YJKR"], capture_output=True, text=True,
                timeout=900)
            assert sim.returncode == 0, sim.stderr[-2000:]
            nc = NatsClient(nats.port)
            n = entries(nc)
            assert n >= VEHICLES + 1, n
            old = os.path.join(env.root, "A.key")
            shutil.copy(key, old)
            new = os.path.join(env.root, "B.key")
            t.run("keys", "init", new)
            gw.stop()
            shutil.copy(new, key)
            cfg["previous_key_file"] = old
            with open(gw.config, "w") as f:
                json.dump(cfg, f)
            gw.start()
            path = os.path.join(env.root, "cluster.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            for what, extra in (("dry run", ["--dry-run"]), ("rotation", []),
                                ("again", [])):
                s, out = timed("cluster", "keys-rotate", "--config", path, "--key-file", old,
                               "--new-key-file", new, *extra)
                print(f"{what}: {n} entries, {s:.2f} s ({n / s:.0f} entries/s): {out}")
            gw.stop()
        finally:
            if nc:
                nc.close()
            kill_gateways()
            nats.stop()


if __name__ == "__main__":
    main()
