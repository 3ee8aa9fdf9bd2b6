"""End-to-end tests of the store through the real protocol and the real API: what is sent
comes back exactly (raw ranges in JSON and CSV, downsampling, the fleet view), from the head,
after flushes into parts, after compaction and after a restart; WAL files covered by parts
are deleted; bad queries get clear errors; a flipped byte in a part is detected on read."""
import csv
import glob
import io
import json
import math
import os
import random
import time
import urllib.parse

import fvtest as t

A, B = "5YJ3E1EA7KF000101", "5YJ3E1EA7KF000102"
T0 = 1795000000000  # 2026-11-18T11:06:40Z, fixed so the expected rows do not depend on the clock
SPEED, SOC, ODO, LOC, NAME, LOCKED, GEAR = 4, 8, 5, 21, 64, 59, 10


def frames(seed, n, jitter=20):
    rnd = random.Random(seed)
    out, speed, soc, odo = [], 50.0, 80.0, 12000.0
    for i in range(n):
        ts = T0 + i * 1000 + rnd.randint(-jitter, jitter)
        speed = round(max(0.0, speed + rnd.uniform(-3, 3)), 1)
        soc = round(soc - rnd.uniform(0, 0.05), 2)
        odo = round(odo + speed / 3600, 3)
        d = [(SPEED, speed), (SOC, soc), (ODO, odo), (LOCKED, i % 7 == 0)]
        if i % 3 == 0:
            d.append((LOC, (round(48.1 + i * 1e-4, 6), round(11.5 - i * 1e-4, 6))))
        if i % 50 == 0:
            d.append((NAME, f"car \"{i}\", ok"))
        if i % 10 == 5:
            d.append((GEAR, i))  # an int value
        if i == 17:
            d.append((SPEED, float("nan")))  # a repeated signal: the last value wins
            d = [x for x in d if not (x[0] == SPEED and not isinstance(x[1], float))]
        out.append((ts, d))
    return out


def send_all(srv, env, dev, fr, prefix):
    path = os.path.join(env.certs.dir, "devices", dev + ".crt")
    if not os.path.exists(path):
        env.certs.device(dev)
    ws = t.WS(srv.port, path, path[:-4] + ".key", env.certs.ca)
    for i, (ts, d) in enumerate(fr):
        ws.send(t.fb_envelope(f"{prefix}-{i}".encode(), b"V", t.v_payload(d, ts)))
    acks = 0
    while acks < len(fr):
        _, p = ws.recv()
        assert t.fb_decode(p)["message_type"] == 5
        acks += 1
    ws.close()


def expected_rows(fr, fields, lo=None, hi=None):
    """One row per frame that carries a wanted field; the last value of a repeated signal."""
    rows = []
    for ts, d in sorted(fr, key=lambda x: x[0]):
        if (lo is not None and ts < lo) or (hi is not None and ts > hi):
            continue
        vals = {}
        for f, v in d:
            if f in fields:
                vals[f] = v
        if vals:
            rows.append((ts, vals))
    return rows


NAMES = {SPEED: "VehicleSpeed", SOC: "Soc", ODO: "Odometer", LOC: "Location", NAME: "VehicleName",
         LOCKED: "Locked", GEAR: "Gear"}


def as_json_value(v):
    if isinstance(v, tuple):
        return {"latitude": v[0], "longitude": v[1]}
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def query(srv, dev, **params):
    params["device"] = dev
    st, body = srv.http("/api/v1/query?" + urllib.parse.urlencode(params, safe=",:"))
    return st, body


def check_raw(srv, dev, fr, fields, lo=None, hi=None):
    params = {"signals": ",".join(NAMES[f] for f in fields)}
    if lo is not None:
        params["from"] = lo
    if hi is not None:
        params["to"] = hi
    st, body = query(srv, dev, **params)
    assert st == 200, body
    got = json.loads(body)
    exp = expected_rows(fr, set(fields), lo, hi)
    assert got["count"] == len(exp), (got["count"], len(exp))
    for row, (ts, vals) in zip(got["rows"], exp):
        assert row["t"] == ts, (row, ts)
        want = {NAMES[f]: as_json_value(v) for f, v in vals.items()}
        have = {k: v for k, v in row.items() if k != "t"}
        assert have == want, (ts, have, want)


def check_downsample(srv, dev, fr, lo, hi, step_ms):
    st, body = query(srv, dev, signals="VehicleSpeed,Soc", **{"from": lo, "to": hi},
                     step=f"{step_ms}ms", agg="min,max,avg,sum,count,first,last")
    assert st == 200, body
    got = json.loads(body)["rows"]
    buckets = {}
    for ts, vals in expected_rows(fr, {SPEED, SOC}, lo, hi):
        b = ts - ts % step_ms
        for f, v in vals.items():
            buckets.setdefault(b, {}).setdefault(NAMES[f], []).append(v)
    assert [r["t"] for r in got] == sorted(buckets), "bucket starts differ"
    for row in got:
        for name, vs in buckets[row["t"]].items():
            num = [v for v in vs if not (isinstance(v, float) and math.isnan(v))]
            a = row[name]
            assert a["count"] == len(vs), (name, a, vs)
            if num:
                assert a["min"] == min(num) and a["max"] == max(num), (a, num)
                s = 0.0
                for v in num:
                    s += v
                assert a["sum"] == s and a["avg"] == s / len(num), (a, s, len(num))
            assert a["first"] == as_json_value(vs[0]) or (vs[0] != vs[0]), (a, vs)
            assert a["last"] == as_json_value(vs[-1]) or (vs[-1] != vs[-1]), (a, vs)


def check_csv(srv, dev, fr):
    st, body = query(srv, dev, signals="VehicleSpeed,Soc,VehicleName", format="csv")
    assert st == 200, body
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0] == ["t", "VehicleSpeed", "Soc", "VehicleName"], rows[0]
    exp = expected_rows(fr, {SPEED, SOC, NAME})
    assert len(rows) - 1 == len(exp)
    for r, (ts, vals) in zip(rows[1:], exp):
        assert int(r[0]) == ts
        sp = vals.get(SPEED)
        if isinstance(sp, float) and not math.isnan(sp):
            assert float(r[1]) == sp, (r, sp)
        assert float(r[2]) == vals[SOC]
        assert r[3] == vals.get(NAME, ""), (r, vals.get(NAME))


def check_all(srv, fa, fb, where):
    t.log(f"  checking queries ({where})")
    every = [SPEED, SOC, ODO, LOC, NAME, LOCKED, GEAR]
    check_raw(srv, A, fa, every)
    check_raw(srv, B, fb, [SOC, LOC])
    check_raw(srv, A, fa, [LOC], T0 + 30000, T0 + 90000)
    check_raw(srv, A, fa, [SPEED], T0 + 10 * 1000, T0 + 10 * 1000 + 20)
    check_downsample(srv, A, fa, T0, T0 + 600000, 10000)
    check_downsample(srv, B, fb, T0 + 5000, T0 + 100000, 7000)
    check_csv(srv, A, fa)
    # Fleet view: every device's last Soc at an instant.
    at = T0 + 100000
    fl = srv.json(f"/api/v1/fleet?signal=Soc&at={at}")
    got = {v["device"]: (v["t"], v["value"]) for v in fl["vehicles"]}
    for dev, fr in ((A, fa), (B, fb)):
        rows = expected_rows(fr, {SOC}, None, at)
        assert got[dev] == (rows[-1][0], rows[-1][1][SOC]), (dev, got.get(dev), rows[-1])
    # ... now, and at an instant after the data (from memory: the parts' last values), of
    # a signal only some frames carry, and with a lookback that leaves devices out.
    last = max(fa[-1][0], fb[-1][0])
    mem = srv.json("/api/v1/store")["last_indexed"]
    for sig, field in (("Soc", SOC), ("Location", LOC), ("Gear", GEAR)):
        for q, hi, lb in ((f"signal={sig}", None, None),
                          (f"signal={sig}&at={last + 5000}", last + 5000, 3600000),
                          (f"signal={sig}&at={last + 5000}&lookback=8s", last + 5000, 8000)):
            fl = srv.json("/api/v1/fleet?" + q)
            got = {v["device"]: (v["t"], v["value"]) for v in fl["vehicles"]}
            want = {}
            for dev, fr in ((A, fa), (B, fb)):
                rows = expected_rows(fr, {field}, None if lb is None else hi - lb, hi)
                if rows:
                    want[dev] = (rows[-1][0], as_json_value(rows[-1][1][field]))
            assert got == want, (q, where, got, want)
    # after the data, nothing needs decoding (frames of one time are unique here)
    assert srv.json("/api/v1/store")["last_indexed"] - mem == 2 * 9, where


def test_exact_through_head_parts_compaction_restart():
    fa, fb = frames(1, 400), frames(2, 150)
    with t.Env() as env:
        cfg = {"store": {"flush_interval": 3600, "wal_keep": 0}, "rate_limits": False}
        srv = t.Server(env.root, env.certs, config=cfg).start()
        send_all(srv, env, A, fa[:200], "a1")
        send_all(srv, env, B, fb, "b")
        check_all(srv, fa[:200], fb, "head only")
        s = srv.compact()  # flush + compact: everything in one part
        assert s["parts"] == 1 and s["head_records"] == 0, s
        send_all(srv, env, A, fa[200:], "a2")  # newer data in the head, older in a part
        check_all(srv, fa, fb, "part + head")
        s = srv.compact()
        assert s["parts"] == 1 and s["datums"] > 0, s
        check_all(srv, fa, fb, "after compaction")
        srv.stop()
        # Covered WAL files are gone (wal_keep 0); the store alone holds the data now.
        wal = sorted(glob.glob(os.path.join(srv.data, "wal", "wal-*.log")))
        assert len(wal) <= 1, wal
        srv.start()
        check_all(srv, fa, fb, "after restart")
        st = srv.json(f"/api/v1/vehicles/{A}/state")
        # Rebuilt from part indexes: the 400 frames plus the connect/disconnect events of its
        # two sessions (live counters count device records only; the store holds both).
        assert st["records"] == len(fa) + 4, st["records"]
        assert st["state"]["Soc"]["value"] == sorted(fa)[-1][1][1][1]
        srv.stop()


def test_flushes_merge_and_resends_stay_single():
    fa = frames(3, 300, jitter=0)
    with t.Env() as env:
        cfg = {"store": {"flush_interval": 1, "wal_keep": 3600}, "rate_limits": False}
        srv = t.Server(env.root, env.certs, config=cfg).start()
        for k in range(3):
            send_all(srv, env, A, fa[k * 100:(k + 1) * 100], f"m{k}")
            time.sleep(1.3)  # let a flush happen between batches
        s = srv.json("/api/v1/store")
        assert s["flushes"] >= 2, s
        # A resend of an early record after its flush is recognised, not stored again.
        send_all(srv, env, A, fa[:5], "m0")
        time.sleep(1.5)
        srv.stop()
        srv.start()  # the kept WAL files rebuild the de-duplication window
        send_all(srv, env, A, fa[5:10], "m0")
        check_raw(srv, A, fa, [SPEED, SOC, ODO, LOC, NAME, LOCKED, GEAR])
        s = srv.compact()
        assert s["parts"] == 1, s
        check_raw(srv, A, fa, [SPEED, SOC, ODO, LOC, NAME, LOCKED, GEAR])
        srv.stop()


NOLIMIT = {"rate_limits": False}


def test_query_errors():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config=NOLIMIT).start()
        send_all(srv, env, A, frames(4, 5), "e")
        cases = [
            ({"signals": "Soc"}, 400, "missing device"),
            ({"device": "NOPE", "signals": "Soc"}, 404, "unknown device"),
            ({"device": A, "signals": "NoSuchSignal"}, 400, "unknown signal"),
            ({"device": A, "from": "yesterday"}, 400, "bad from"),
            ({"device": A, "from": T0 + 10, "to": T0}, 400, "empty range"),
            ({"device": A, "step": "0s"}, 400, "bad step"),
            ({"device": A, "agg": "median"}, 400, "bad agg"),
            ({"device": A, "format": "xml"}, 400, "bad format"),
            ({"device": A, "from": 0, "to": 10 ** 15, "step": "1ms"}, 400, "too many buckets"),
        ]
        for params, status, text in cases:
            st, body = srv.http("/api/v1/query?" + urllib.parse.urlencode(params))
            assert st == status and text in json.loads(body)["error"], (params, st, body)
        st, _ = srv.http(f"/api/v1/query?device={A}", token=None)
        assert st == 401
        st, body = srv.http("/api/v1/fleet?signal=Nope")
        assert st == 400, body
        # RFC 3339 and epoch milliseconds name the same instants.
        st, b1 = srv.http(f"/api/v1/query?device={A}&from=2026-11-18T11:06:40Z&to={T0 + 3000}")
        st2, b2 = srv.http(f"/api/v1/query?device={A}&from={T0}&to=2026-11-18T12:06:43%2B01:00")
        assert st == st2 == 200 and json.loads(b1)["rows"] == json.loads(b2)["rows"]
        assert json.loads(b1)["count"] >= 3
        srv.stop()


def test_large_range_streams():
    fa = frames(5, 3000, jitter=0)
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config=NOLIMIT).start()
        send_all(srv, env, A, fa, "big")
        srv.compact()
        st, body = query(srv, A)  # all signals, ~300 KB of JSON: sent in chunks
        assert st == 200
        got = json.loads(body)
        assert got["count"] == 3000
        st, body = query(srv, A, limit=10)
        assert json.loads(body)["count"] == 10 and json.loads(body)["truncated"] is True
        srv.stop()


def test_tampered_part_detected():
    fa = frames(6, 100)
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config=NOLIMIT).start()
        send_all(srv, env, A, fa, "x")
        srv.compact()
        check_raw(srv, A, fa, [SOC])
        srv.stop()
        parts = glob.glob(os.path.join(srv.data, "store", "part-*.fvp"))
        assert len(parts) == 1
        with open(parts[0], "r+b") as f:
            f.seek(36 + 40)  # inside the first block (after the 36-byte header)
            b = f.read(1)
            f.seek(36 + 40)
            f.write(bytes([b[0] ^ 0x01]))
        srv.start()
        st, body = query(srv, A, signals="Soc")
        assert st == 500 and b"failed verification" in body, (st, body)
        assert "checksum mismatch" in srv.log() and parts[0] in srv.log(), srv.log()[-2000:]
        srv.stop()


if __name__ == "__main__":
    t.main([test_exact_through_head_parts_compaction_restart,
            test_flushes_merge_and_resends_stay_single, test_query_errors,
            test_large_range_streams, test_tampered_part_detected])
