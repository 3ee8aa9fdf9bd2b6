"""End-to-end tests of what docs/formats.md and docs/operations.md promise about times and
numbers, through the real protocol and the real API:
- an event's stored time is the server's receive time, not its payload's created_at (issue 16
  item 7), in the head, after a flush into parts and after a WAL replay;
- numbers in API JSON are printed with the fewest digits that read back (issue 8: the state
  endpoint printed 37.399999999999999 for a latitude sent as 37.4);
- a downsampling query whose span overflows 64-bit arithmetic is refused (issue 8)."""
import io
import json
import os
import tarfile
import time
import urllib.parse

import fvtest as t

VIN = "5YJ3E1EA7KF000001"  # the vectors' device
T2001 = 1000000000  # 2001-09-09T01:46:40Z: a created_at far from any receive time


def now_ms():
    return int(time.time() * 1000)


def connect(srv, env, dev_id=VIN):
    crt = os.path.join(env.certs.dir, "devices", dev_id + ".crt")
    if not os.path.exists(crt):
        env.certs.device(dev_id)
    return t.WS(srv.port, crt, crt[:-4] + ".key", env.certs.ca)


def send_ack(ws, data):
    ws.send(data)
    _, p = ws.recv()
    rep = t.fb_decode(p)
    assert rep["message_type"] == 5, rep
    return rep


def pb_ts(num, sec, nanos=0):
    return t.pb_len(num, t.pb_field(1, 0, t.pb_varint(sec)) + t.pb_field(2, 0, t.pb_varint(nanos)))


def alert_payload(name, created_s):
    """VehicleAlerts{alerts: [{name, started_at}], created_at} (src/wire/telemetry.proto)."""
    alert = t.pb_len(1, name.encode()) + pb_ts(3, created_s)
    return t.pb_len(1, alert) + pb_ts(2, created_s, 250000000)


def exported_events(srv, po):
    """The subject's events as the export (Art. 15) shows them: [(topic, t)]."""
    st, body = srv.http(f"/api/v1/subjects/{VIN}/export?ticket=T-16", token=po, purpose=None)
    assert st == 200, body
    tar = tarfile.open(fileobj=io.BytesIO(body))
    out = []
    for m in tar.getmembers():
        if m.name.endswith("/events.jsonl"):
            for line in tar.extractfile(m).read().decode().splitlines():
                e = json.loads(line)
                out.append((e["topic"], e["t"]))
    return sorted(out)


def wal_records(data):
    """Every record of DATA/wal, read as docs/formats.md ("WAL file") describes it:
    [(received_ms, subject field, topic, txid, flags)]."""
    import glob
    import struct
    out = []
    for path in sorted(glob.glob(os.path.join(data, "wal", "wal-*.log"))):
        with open(path, "rb") as f:
            img = f.read()
        assert img[:8] == b"FVWAL\r\n\x1a", path
        assert struct.unpack_from("<I", img, 8)[0] == 2, path  # format 2: 28-byte header
        at = 28
        while at + 20 <= len(img):
            n = struct.unpack_from("<I", img, at)[0]
            if n == 0:  # a sync mark: a record header without a body
                at += 20
                continue
            if at + 20 + n > len(img):
                break
            b = img[at + 20:at + 20 + n]
            typ, flags, recv = b[0], b[1], struct.unpack_from("<Q", b, 2)[0]
            o = 10
            fields = []
            for width in (1, 1, 1, 2, 4):  # subject, client type, topic, txid, payload
                ln = int.from_bytes(b[o:o + width], "little")
                fields.append(b[o + width:o + width + ln])
                o += width + ln
            assert o == n and typ == 1, (path, at)
            out.append((recv, fields[0].decode(), fields[2].decode(), fields[3], flags))
            at += 20 + n
    return out


def check_receive_times(events, windows, what):
    """Every event of each topic lies in that topic's receive window [lo, hi] (ms)."""
    seen = {}
    for topic, ts in events:
        seen[topic] = seen.get(topic, 0) + 1
        lo, hi = windows[topic]
        assert lo <= ts <= hi, f"{what}: {topic} event stored at {ts}, received in [{lo}, {hi}]"
    return seen


def test_event_time_is_receive_time():
    """Issue 16 item 7: alerts, errors and connectivity are stored with the server's receive
    time (the WAL record's received_ms); a payload's created_at (here 2001, and the vectors'
    2026-11-18) is kept inside the payload only."""
    with t.Env() as env:
        cfg = {"store": {"flush_interval": 3600}, "rate_limits": False}
        srv = t.Server(env.root, env.certs, config=cfg).start()
        po = srv.principal("paula", "privacy-officer")
        w = {}
        lo = now_ms()
        ws = connect(srv, env)
        t0 = now_ms()
        send_ack(ws, t.fb_envelope(b"tx-a2001", b"alerts", alert_payload("Old", T2001),
                                   created_at=T2001))
        send_ack(ws, t.vector("alerts.bin"))
        send_ack(ws, t.vector("errors.bin"))
        t1 = now_ms()
        ws.close()
        time.sleep(0.3)  # the disconnect is recorded when the server sees the close
        hi = now_ms()
        w = {"alerts": (t0, t1), "errors": (t0, t1), "connectivity": (lo, hi)}
        want = {"alerts": 2, "errors": 1, "connectivity": 2}
        head = exported_events(srv, po)
        assert check_receive_times(head, w, "head") == want, head
        # The WAL (items 6, 7): the subject field holds a 32-hex pseudonym, never the VIN, and
        # the old alert's received_ms is the time its event has.
        recs = wal_records(srv.data)
        assert recs and all(len(r[1]) == 32 and int(r[1], 16) >= 0 and r[4] & 0x04
                            for r in recs), recs
        old = [r for r in recs if r[3] == b"tx-a2001"]
        assert len(old) == 1 and t0 <= old[0][0] <= t1, (old, t0, t1)
        # Live, the head has exactly the time the WAL record has.
        assert ("alerts", old[0][0]) in head, (old, head)
        # In parts: the flush keeps the time the head had.
        st, body = srv.http("/api/v1/store/compact", token="admin", method="POST")
        assert st == 202, body
        deadline = time.time() + 30
        while srv.json("/api/v1/store")["compacting"] or srv.json("/api/v1/store")["parts"] < 1:
            assert time.time() < deadline, "compaction did not finish"
            time.sleep(0.1)
        parts = exported_events(srv, po)
        assert parts == head, (parts, head)
        # A WAL replay (no flush: the server is killed) uses the record's received_ms.
        lo = now_ms()
        ws = connect(srv, env)
        t0 = now_ms()
        send_ack(ws, t.fb_envelope(b"tx-a2001-2", b"alerts", alert_payload("Old2", T2001),
                                   created_at=T2001))
        t1 = now_ms()
        srv.kill9()
        hi = now_ms()
        ws.close()
        srv.start()
        replayed = exported_events(srv, po)
        new = [e for e in replayed if e not in parts]
        # Replayed from the WAL: exactly the record's received_ms.
        rec = [r for r in wal_records(srv.data) if r[3] == b"tx-a2001-2"]
        assert len(rec) == 1 and ("alerts", rec[0][0]) in new, (rec, new)
        w = {"alerts": (t0, t1), "connectivity": (lo, hi)}
        assert check_receive_times(new, w, "replayed") == {"alerts": 1, "connectivity": 1}, new
        assert all(ts > T2001 * 1000 + 86400000 for _, ts in replayed), replayed
        srv.stop()


def test_numbers_print_shortest():
    """Issue 8: a latitude sent as 37.4 is "37.4" in every JSON answer, not
    37.399999999999999 (jansson's %.17g)."""
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}).start()
        ws = connect(srv, env)
        send_ack(ws, t.vector("v-quirks.bin"))
        send_ack(ws, t.fb_envelope(b"tx-tiny", b"V", t.v_payload(
            [(8, 5e-324), (4, 0.1 + 0.2)], 1795000001000)))
        ws.close()
        for path in (f"/api/v1/vehicles/{VIN}/state", "/api/v1/signals/Location/latest",
                     f"/api/v1/query?device={VIN}&signals=Location,Soc,VehicleSpeed"):
            st, body = srv.http(path)
            assert st == 200, (path, body)
            text = body.decode()
            assert '"latitude":37.4,"longitude":-122.1' in text, (path, text)
            assert "37.39999" not in text and "122.09999" not in text, (path, text)
        st, body = srv.http(f"/api/v1/vehicles/{VIN}/state")
        text = body.decode()
        # Soc: the smallest subnormal; VehicleSpeed: a value that needs all 17 digits
        assert '"value":5e-324' in text, text
        assert '"value":0.30000000000000004' in text, text
        state = json.loads(text)["state"]
        assert state["Soc"]["value"] == 5e-324 and state["VehicleSpeed"]["value"] == 0.1 + 0.2
        srv.stop()


def test_bucket_count_overflow_refused():
    """Issue 8: (to - from) / step overflowed for far-apart times, letting a query of
    1.8e19 one-millisecond buckets through; it is refused like any other too-fine step."""
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}).start()
        ws = connect(srv, env)
        send_ack(ws, t.vector("v-basic.bin"))
        ws.close()
        for lo, hi, step in [(-9000000000000000000, 9000000000000000000, "1ms"),
                             (-9223372036854775807, 9223372036854775806, "1ms"),
                             (-9000000000000000000, 9000000000000000000, "1d")]:
            q = urllib.parse.urlencode({"device": VIN, "from": lo, "to": hi, "step": step})
            st, body = srv.http("/api/v1/query?" + q)
            assert st == 400 and "too many buckets" in json.loads(body)["error"], (lo, hi, st,
                                                                                  body)
        # A span that fits is still answered.
        q = urllib.parse.urlencode({"device": VIN, "from": 1795000000000, "to": 1795000060000,
                                    "step": "1s", "agg": "last", "signals": "Soc"})
        st, body = srv.http("/api/v1/query?" + q)
        assert st == 200 and json.loads(body)["count"] == 1, body
        srv.stop()


if __name__ == "__main__":
    t.main([test_event_time_is_receive_time, test_numbers_print_shortest,
            test_bucket_count_overflow_refused])
