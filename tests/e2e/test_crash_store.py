"""Crash test of the store: kill -9 the server at random moments while simulated vehicles
stream and the store flushes every second, merges parts two at a time, expires location data
after seconds (retention), deletes covered WAL files, and runs requested full compactions.
Afterwards every record the simulator saw acked is readable through the query API exactly
once, and every block of every part verifies (checksum, authentication, decoding).
FV_CRASH_ROUNDS (default 15) and FV_CRASH_VEHICLES (default 12) scale it."""
import json
import os
import random
import subprocess
import time
import urllib.request

import fvtest as t

ROUNDS = int(os.environ.get("FV_CRASH_ROUNDS", "15"))
VEHICLES = int(os.environ.get("FV_CRASH_VEHICLES", "12"))
CONFIG = {"rate_limits": False,
          "store": {"flush_interval": 1, "compact_fanin": 2, "wal_keep": 10,
                    "retention": {"location": "4s"}}}


def compact(srv):
    req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}/api/v1/store/compact",
                                 method="POST", data=b"")
    req.add_header("Authorization", "Bearer " + srv.token)
    try:
        urllib.request.urlopen(req, timeout=5).read()
    except OSError:
        pass  # the server may be going down: that is the point


def test_kill9_during_flush_compaction_retention():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config=CONFIG).start()
        acked_log = os.path.join(env.root, "acked.log")
        seconds = max(10, ROUNDS + 5)
        sim_log = open(os.path.join(env.root, "sim.log"), "w")
        sim = subprocess.Popen(
            [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{srv.port}", "--certs",
             env.certs.dir, "--vehicles", str(VEHICLES), "--seconds", str(seconds), "--hz", "10",
             "--drain", "120", "--acked-log", acked_log, "--seed", str(random.randrange(1 << 30))],
            stdout=subprocess.PIPE, stderr=sim_log, text=True)
        start = time.time()
        kills = 0
        while kills < ROUNDS and time.time() - start < seconds - 2:
            time.sleep(random.uniform(0.3, 1.5))
            if random.random() < 0.4:
                compact(srv)
                time.sleep(random.uniform(0.0, 0.05))
            srv.kill9()
            kills += 1
            srv.start()
        out, _ = sim.communicate(timeout=seconds + 300)
        sim_log.close()
        final = json.loads(out.strip().splitlines()[-1])
        t.log(f"killed {kills} times; simulator: {final}")
        assert sim.returncode == 0, f"simulator left records unacked: {final}"
        time.sleep(1.5)  # one more flush: the last records go into a part too
        st = srv.json("/api/v1/store")
        t.log(f"store: {st['parts']} parts, {st['flushes']} flushes, "
              f"{st['compactions']} compactions, {st['blocks_expired']} blocks expired")
        acked = {}
        with open(acked_log) as f:
            for line in f:
                p = line.split()
                if len(p) == 3 and p[2] != "E":
                    acked.setdefault(p[0], []).append(int(p[2]))
        assert sum(len(v) for v in acked.values()) == final["acked"]
        lost = dups = 0
        for vin, times in acked.items():
            body = srv.json(f"/api/v1/query?device={vin}&signals=Soc")
            stored = [r["t"] for r in body["rows"]]
            dups += len(stored) - len(set(stored))
            missing = set(times) - set(stored)
            lost += len(missing)
            assert not missing, f"{vin}: {len(missing)} acked records lost, e.g. {sorted(missing)[:3]}"
        assert dups == 0, f"{dups} records stored twice"
        srv.stop()
        ins = srv.inspect("--verify")
        assert ins["store"]["errors"] == [], ins["store"]["errors"]
        assert ins["store"]["blocks_verified"] == ins["store"]["blocks"]
        wal = [f for f in os.listdir(os.path.join(srv.data, "wal"))]
        t.log(f"{final['acked']} acked records all present once; {ins['store']['blocks']} blocks "
              f"verified; {len(wal)} WAL files left")


if __name__ == "__main__":
    t.main([test_kill9_during_flush_compaction_retention])
