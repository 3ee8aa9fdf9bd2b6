"""Crash test of the store: kill -9 the server at random moments while simulated vehicles
stream and the store flushes every second, merges parts two at a time, expires location data
after seconds (retention), deletes covered WAL files, and runs requested full compactions.
Afterwards every record the simulator saw acked is readable through the query API exactly
once (counted by time as a multiset: two records of a vehicle may share a time), and every
block of every part verifies (checksum, authentication, decoding).
FV_CRASH_ROUNDS (default 15) and FV_CRASH_VEHICLES (default 12) scale it."""
import collections
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
        dups = same_time = 0
        for vin, times in acked.items():
            body = srv.json(f"/api/v1/query?device={vin}&signals=Soc")
            stored = [r["t"] for r in body["rows"]]
            # By multiset: a vehicle's two records may share a time (t.stored_vs_acked)
            missing, extra = t.stored_vs_acked(times, stored)
            n = sum(missing.values())
            assert not missing, f"{vin}: {n} acked records lost, e.g. {sorted(missing)[:3]}"
            if extra:
                t.log(f"{vin}: stored more often than acked: {sorted(extra.items())[:5]}")
            dups += sum(extra.values())
            same_time += len(times) - len(set(times))
        t.log(f"{same_time} acked records repeat the time of another of their vehicle's")
        assert dups == 0, f"{dups} records stored twice"
        srv.stop()
        ins = srv.inspect("--verify")
        assert ins["store"]["errors"] == [], ins["store"]["errors"]
        assert ins["store"]["blocks_verified"] == ins["store"]["blocks"]
        wal = [f for f in os.listdir(os.path.join(srv.data, "wal"))]
        t.log(f"{final['acked']} acked records all present once; {ins['store']['blocks']} blocks "
              f"verified; {len(wal)} WAL files left")


def test_same_time_records_are_not_duplicates():
    """Two distinct records of one vehicle with the same created time (txids A and B, both
    acked: what `simulate` sent when its loop, late by nearly a period, made two ticks in
    one millisecond) are two rows at one time; a resend of A (same txid) adds nothing. The
    crash test counts by multiset (fvtest.stored_vs_acked): counting repeated times, as it
    did, called such a pair "1 records stored twice" (a run kept on 2026-12-03:
    vehicle 0's records 40 and 41 at one millisecond, 199 acked, 199 stored)."""
    with t.Env() as env:
        srv = t.Server(env.root, env.certs).start()
        vin = "5YJSAME0000000001"
        env.certs.device(vin)
        cert = os.path.join(env.certs.dir, "devices", vin + ".crt")
        ms = int(time.time() * 1000) - 5000
        acked = []
        ws = t.WS(srv.port, cert, cert[:-4] + ".key", env.certs.ca)
        try:
            for txid in (b"same-A", b"same-B", b"same-A"):
                ws.send(t.fb_envelope(txid, b"V", t.v_payload([(8, 50.0)], ms)))
                e = t.fb_decode(ws.recv()[1])
                assert e["message_type"] == 5, e
                acked.append(ms)
        finally:
            ws.close()
        acked = acked[:2]  # the resend of A is acked again, not a third record
        stored = [r["t"] for r in srv.json(f"/api/v1/query?device={vin}&signals=Soc")["rows"]]
        assert stored == [ms, ms], stored
        assert len(stored) - len(set(stored)) == 1  # what the old count called a duplicate
        missing, extra = t.stored_vs_acked(acked, stored)
        assert not missing and not extra, (missing, extra)
        # and a row stored more often than acked, or fewer, is still caught
        assert t.stored_vs_acked(acked, stored + [ms]) == (collections.Counter(),
                                                           collections.Counter({ms: 1}))
        assert t.stored_vs_acked(acked, stored[:1]) == (collections.Counter({ms: 1}),
                                                        collections.Counter())
        srv.stop()


if __name__ == "__main__":
    t.main([test_same_time_records_are_not_duplicates,
            test_kill9_during_flush_compaction_retention])
