"""Crash test: kill -9 the server at random moments while 20+ simulated vehicles stream,
restart it, repeat. Afterwards every record the simulator saw acked is on disk, and nothing
is stored twice. FV_CRASH_ROUNDS (default 20) and FV_CRASH_VEHICLES (default 24) scale it;
bench/crash/run.sh runs it longer."""
import json
import os
import random
import subprocess
import time

import fvtest as t

ROUNDS = int(os.environ.get("FV_CRASH_ROUNDS", "20"))
VEHICLES = int(os.environ.get("FV_CRASH_VEHICLES", "24"))


def test_kill9_loses_no_acked_record():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, extra=["--no-rate-limit"]).start()
        acked_log = os.path.join(env.root, "acked.log")
        seconds = max(10, int(ROUNDS * 1.5) + 5)  # a loaded machine restarts slower
        sim_log = open(os.path.join(env.root, "sim.log"), "w")
        sim = subprocess.Popen(
            [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{srv.port}", "--certs",
             env.certs.dir, "--vehicles", str(VEHICLES), "--seconds", str(seconds), "--hz", "5",
             "--drain", "120", "--acked-log", acked_log, "--seed", str(random.randrange(1 << 30))],
            stdout=subprocess.PIPE, stderr=sim_log, text=True)
        start = time.time()
        kills = 0
        while kills < ROUNDS and time.time() - start < seconds - 2:
            time.sleep(random.uniform(0.05, 0.9))
            srv.kill9()
            kills += 1
            time.sleep(random.uniform(0.0, 0.3))
            srv.start()
        out, _ = sim.communicate(timeout=seconds + 300)
        sim_log.close()
        final = json.loads(out.strip().splitlines()[-1])
        t.log(f"killed {kills} times; simulator: {final}")
        assert kills >= min(ROUNDS, 20), kills
        assert sim.returncode == 0, f"simulator left records unacked: {final}"
        assert final["acked"] > 0 and final["acked"] + final["errors"] == final["sent"], final
        srv.stop()
        stored = set()
        r = t.run("inspect", srv.data, "--txids", "--key-file", srv.key_file)
        for line in r.stdout.splitlines():
            dev, txid = line.split(" ", 1)
            stored.add((dev, txid))
        acked = set()
        with open(acked_log) as f:
            for line in f:
                parts = line.split()  # VIN TXID CREATED_MS, or VIN TXID E when refused
                if len(parts) == 3 and parts[2] != "E":
                    acked.add((parts[0], parts[1]))
        missing = acked - stored
        assert not missing, f"{len(missing)} acked records lost, e.g. {sorted(missing)[:5]}"
        assert len(acked) == final["acked"], (len(acked), final["acked"])
        ins = srv.inspect()
        assert ins["totals"]["duplicate_txids"] == 0, ins["totals"]
        assert ins["totals"]["records"] == len(stored)
        t.log(f"{len(acked)} acked records all present; {ins['wal']['torn_bytes']} torn bytes cut")


if __name__ == "__main__":
    t.main([test_kill9_loses_no_acked_record])
