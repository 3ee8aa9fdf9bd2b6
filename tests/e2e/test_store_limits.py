"""End-to-end tests of issue 8 ("never lose an acked record") through the real protocol:
a V record beyond the payload limits (70,000 distinct signals, as in the issue) gets the
error reply, is counted as a payload rejection and never reaches the store, while a record
at the limit is acked, stored, compacted and read back; the store's health fields
(compaction_failures, compaction_errors, wal_held) and the compaction-failure counter are
served; a far-future device time does not freeze a signal's latest value; a damaged block
does not stop a full compaction."""
import glob
import json
import os
import time
import urllib.parse

import fvtest as t

A = "5YJ3E1EA7KF000201"
SPEED = 4
NOLIMIT = {"rate_limits": False}


def connect(srv, env, dev):
    path = os.path.join(env.certs.dir, "devices", dev + ".crt")
    if not os.path.exists(path):
        env.certs.device(dev)
    return t.WS(srv.port, path, path[:-4] + ".key", env.certs.ca)


def send_one(ws, txid, payload):
    """Sends one V record; returns the reply's message_type (5 ack, 4 error)."""
    ws.send(t.fb_envelope(txid, b"V", payload))
    _, p = ws.recv(timeout=30)
    return t.fb_decode(p)["message_type"]


def test_oversized_record_refused():
    now = int(time.time() * 1000)
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config=NOLIMIT).start()
        ws = connect(srv, env, A)
        wide = t.v_payload([(70000 - i, i) for i in range(70000)], now - 5000)
        assert len(wide) < 1000000, len(wide)
        assert send_one(ws, b"wide", wide) == 4  # error reply: not stored, not acked
        neg = t.v_payload([(-3, 1)], now - 4000)
        assert send_one(ws, b"negative", neg) == 4
        at_limit = t.v_payload([(i + 1, i) for i in range(4096)], now - 3000)
        assert send_one(ws, b"at-limit", at_limit) == 5
        assert send_one(ws, b"small", t.v_payload([(SPEED, 42.5)], now - 2000)) == 5
        ws.close()
        assert srv.metric('fleetvault_rejected_total{reason="payload"}') == 2
        s = srv.compact()
        assert s["datums"] == 4096 + 1, s
        assert s["records"] == 2 + 2, s  # and the connect and disconnect events
        assert s["compaction_failures"] == 0 and s["compaction_errors"] == [], s
        assert s["wal_held"] is False, s
        assert srv.metric("fleetvault_store_compaction_failures_total") == 0
        st, body = srv.http("/api/v1/query?" + urllib.parse.urlencode({"device": A}))
        assert st == 200, body
        rows = json.loads(body)["rows"]
        assert len(rows) == 2, rows[:1]
        assert len(rows[0]) == 4096 + 1, len(rows[0])  # t and every signal
        assert rows[1]["VehicleSpeed"] == 42.5, rows[1]
        srv.stop()
        srv.start()  # the store reopens cleanly: nothing unreadable was written
        st, body = srv.http("/api/v1/query?" + urllib.parse.urlencode({"device": A}))
        assert st == 200 and json.loads(body)["count"] == 2, body[:200]
        srv.stop()


def test_far_future_time_does_not_freeze_latest():
    now = int(time.time() * 1000)
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config=NOLIMIT).start()
        ws = connect(srv, env, A)
        assert send_one(ws, b"f1", t.v_payload([(SPEED, 1.0)], now - 2000)) == 5
        assert send_one(ws, b"f2", t.v_payload([(SPEED, 999.0)], 4102444800000)) == 5  # 2100
        assert send_one(ws, b"f3", t.v_payload([(SPEED, 2.0)], now - 1000)) == 5
        ws.close()
        state = srv.json(f"/api/v1/vehicles/{A}/state")["state"]
        assert state["VehicleSpeed"]["value"] == 2.0, state["VehicleSpeed"]
        # the far-future value is stored and queryable all the same
        st, body = srv.http("/api/v1/query?" + urllib.parse.urlencode(
            {"device": A, "signals": "VehicleSpeed", "to": 4102444800000}))
        assert st == 200, body
        assert [r["VehicleSpeed"] for r in json.loads(body)["rows"]] == [1.0, 2.0, 999.0], body
        srv.stop()


def test_damaged_block_does_not_stop_compaction():
    """A flipped byte in a part's block: a full compaction still finishes (compacting goes
    back to false), the block is kept as it was and reported with its part, the counter says
    so, and other devices' data is served. Before the fix: compacting stayed true for ever."""
    now = int(time.time() * 1000)
    B = "5YJ3E1EA7KF000202"
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config=NOLIMIT).start()
        for dev in (A, B):
            ws = connect(srv, env, dev)
            for i in range(20):
                assert send_one(ws, f"{dev}-{i}".encode(),
                                t.v_payload([(SPEED, float(i))], now - 60000 + i)) == 5
            ws.close()
        srv.compact()
        srv.stop()
        parts = glob.glob(os.path.join(srv.data, "store", "part-*.fvp"))
        assert len(parts) == 1, parts
        with open(parts[0], "r+b") as f:
            f.seek(36 + 40)  # inside the first block (after the 36-byte header)
            b = f.read(1)
            f.seek(36 + 40)
            f.write(bytes([b[0] ^ 0x01]))
        srv.start()
        s = srv.compact()
        assert s["compaction_failures"] >= 1, s
        assert s["compaction_errors"][0]["part"] == os.path.basename(parts[0]), s
        assert "checksum mismatch" in s["compaction_errors"][0]["error"], s
        assert srv.metric("fleetvault_store_compaction_failures_total") >= 1
        ok = 0
        for dev in (A, B):  # one device's block is damaged, the other's is served
            st, body = srv.http("/api/v1/query?" + urllib.parse.urlencode(
                {"device": dev, "signals": "VehicleSpeed"}))
            if st == 200:
                assert json.loads(body)["count"] == 20, body[:200]
                ok += 1
            else:
                assert st == 500, (st, body)
        assert ok == 1, ok
        srv.stop()


if __name__ == "__main__":
    t.main([test_oversized_record_refused, test_far_future_time_does_not_freeze_latest,
            test_damaged_block_does_not_stop_compaction])
