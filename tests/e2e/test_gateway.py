"""End-to-end tests of the ingestion gateway over real TLS WebSockets and HTTP
(issue: ack/error formats, identity from the certificate, foreign CA refused, de-duplication,
rate limiting, latest state via the API, token required, bad input never stored)."""
import json
import os
import ssl
import struct

import fvtest as t

VIN = "5YJ3E1EA7KF000001"


def connect(srv, env, dev_id=VIN, **kw):
    cert, key = env.certs.device(dev_id) if not os.path.exists(
        os.path.join(env.certs.dir, "devices", dev_id + ".crt")) else (
        os.path.join(env.certs.dir, "devices", dev_id + ".crt"),
        os.path.join(env.certs.dir, "devices", dev_id + ".key"))
    return t.WS(srv.port, cert, key, env.certs.ca, **kw)


def roundtrip(ws, data):
    ws.send(data)
    op, payload = ws.recv()
    assert op == 2, f"reply must be a binary frame, got opcode {op}"
    return t.fb_decode(payload), payload


def inspect(srv):
    return srv.inspect()


def test_vectors_acks_and_errors():
    with t.Env() as env:
        srv = Server(env).start()
        ws = connect(srv, env)
        for name, txid, topic in [("v-basic.bin", b"tx-v-basic", b"V"),
                                  ("v-quirks.bin", b"tx-v-quirks", b"V"),
                                  ("alerts.bin", b"tx-alerts", b"alerts"),
                                  ("errors.bin", b"tx-errors", b"errors")]:
            rep, raw = roundtrip(ws, t.vector(name))
            assert rep["message_type"] == 5, (name, rep)
            assert rep["txid"] == txid and rep["topic"] == topic, (name, rep)
            # Go builder layout: message_id written as an empty vector.
            assert rep["message_id"] == b"", rep
        for name, txid in [("v-bad-payload.bin", b"tx-v-bad-payload"),
                           ("v-sender-mismatch.bin", b"tx-v-sender-mismatch")]:
            rep, _ = roundtrip(ws, t.vector(name))
            assert rep["message_type"] == 4, (name, rep)
            assert rep["txid"] == txid and rep["topic"] == b"", rep
            assert rep["payload"] == b"incorrect message format", rep
        ws.close()
        # The server's own ack latency: one observation per ack (4), none for the 2 error
        # replies; cumulative buckets ending in +Inf = count.
        assert srv.wait_metric("fleetvault_ack_seconds_count", 4) == 4
        assert srv.metric("fleetvault_acks_total") == 4
        st, body = srv.http("/metrics", token=None)
        buckets = [float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                   if line.startswith("fleetvault_ack_seconds_bucket{")]
        assert len(buckets) == 13 and buckets == sorted(buckets) and buckets[-1] == 4, buckets
        assert 0 < srv.metric("fleetvault_ack_seconds_sum") < 60
        state = srv.json(f"/api/v1/vehicles/{VIN}/state")
        s = state["state"]
        assert s["Location"]["value"] == {"latitude": 37.4, "longitude": -122.1}, s["Location"]
        assert s["VehicleSpeed"]["value"] == 88.0
        assert s["OutsideTemp"]["kind"] == "invalid" and s["OutsideTemp"]["value"] is None
        assert s["DoorState"]["value"]["DriverFront"] is True
        assert s["ScheduledDepartureTime"]["value"] == "07:30:00"
        assert s["300"]["value"] == 7, "unknown field numbers are kept"
        assert s["Soc"]["value"] == 77.25 and s["Gear"]["value"] == 5
        assert s["Soc"]["time_ms"] == 1795000000250
        assert state["records"] == 4, state
        srv.stop()
        ins = inspect(srv)
        dev = ins["devices"][VIN]
        assert dev["records"] == 4 and dev["topics"]["alerts"] == 1
        assert dev["topics"]["connectivity"] == 2, "connect and disconnect are recorded"
        assert ins["totals"]["duplicate_txids"] == 0


def Server(env, **kw):
    return t.Server(env.root, env.certs, **kw)


def test_identity_from_certificate():
    """A payload claiming another VIN is stored under the certificate's id."""
    with t.Env() as env:
        srv = Server(env).start()
        other = "5YJ3E1EA7KF000777"
        ws = connect(srv, env, other)
        rep, _ = roundtrip(ws, t.vector("v-basic.bin"))  # payload vin ...000001
        assert rep["message_type"] == 5
        ws.close()
        vehicles = {v["id"] for v in srv.json("/api/v1/vehicles")["vehicles"]}
        assert vehicles == {other}, vehicles
        st, _ = srv.http(f"/api/v1/vehicles/{VIN}/state")
        assert st == 404
        srv.stop()


def test_foreign_ca_and_no_certificate_refused():
    with t.Env() as env:
        srv = Server(env).start()
        other = t.Certs(os.path.join(env.root, "other"))
        cert, key = other.device(VIN)
        for c, k in [(cert, key), (None, None)]:
            try:
                ws = t.WS(srv.port, c, k, env.certs.ca)
                # TLS 1.3: the server's refusal may arrive only on first read.
                ws.send(t.vector("v-basic.bin"))
                ws.recv(timeout=5)
                raise AssertionError("connection with a bad certificate was accepted")
            except (ssl.SSLError, t.WSClosed, ConnectionResetError, BrokenPipeError, OSError):
                pass
        assert srv.metric("fleetvault_tls_rejected_total") >= 1
        assert srv.json("/api/v1/vehicles")["count"] == 0
        srv.stop()


def test_deduplication():
    with t.Env() as env:
        srv = Server(env).start()
        ws = connect(srv, env)
        pl = t.v_payload([(8, 50.5)], created_ms=1795000001000, vin=VIN)
        first = t.fb_envelope(b"tx-dup", b"V", pl)
        resend = t.fb_envelope(b"tx-dup", b"V", t.v_payload([(8, 50.5)], 1795000001000, VIN,
                                                            is_resend=True))
        for msg in (first, first, resend):
            rep, _ = roundtrip(ws, msg)
            assert rep["message_type"] == 5 and rep["txid"] == b"tx-dup"
        ws.close()
        assert srv.metric("fleetvault_duplicates_total") == 2
        srv.stop()
        # After a restart the window is rebuilt from the WAL: still stored once.
        srv.start()
        ws = connect(srv, env)
        rep, _ = roundtrip(ws, resend)
        assert rep["message_type"] == 5
        ws.close()
        srv.stop()
        ins = inspect(srv)
        assert ins["devices"][VIN]["records"] == 1, ins
        assert ins["totals"]["duplicate_txids"] == 0


def test_rate_limit():
    with t.Env() as env:
        srv = Server(env, config={"rate_limits": {"V": {"per_second": 0.5, "burst": 3}}}).start()
        ws = connect(srv, env)
        kinds = []
        for i in range(6):
            msg = t.fb_envelope(f"tx-rl-{i}".encode(), b"V", t.v_payload([(4, float(i))]))
            rep, _ = roundtrip(ws, msg)
            kinds.append(rep["message_type"])
            if rep["message_type"] == 4:
                assert rep["payload"] == b"rate limit exceeded", rep
        assert kinds == [5, 5, 5, 4, 4, 4], kinds
        # Other record types have their own bucket.
        rep, _ = roundtrip(ws, t.vector("alerts.bin"))
        assert rep["message_type"] == 5
        ws.close()
        assert srv.metric("fleetvault_rate_limited_total") == 3
        srv.stop()
        assert inspect(srv)["devices"][VIN]["topics"]["V"] == 3


def test_api_token_and_state():
    with t.Env() as env:
        srv = Server(env).start()
        mode = os.stat(srv.token_path).st_mode & 0o777
        assert mode == 0o600, oct(mode)
        for token in (None, "wrong-token-wrong-token"):
            st, body = srv.http("/api/v1/vehicles", token=token)
            assert st == 401, (st, body)
            assert "error" in json.loads(body)
        st, _ = srv.http("/api/v1/nothing")
        assert st == 404
        ws = connect(srv, env)
        roundtrip(ws, t.fb_envelope(b"a1", b"V", t.v_payload([(4, 10.0), (8, 80.0)], 1795000000000)))
        roundtrip(ws, t.fb_envelope(b"a2", b"V", t.v_payload([(4, 20.0)], 1795000005000)))
        # an older record arriving late does not roll the state back
        roundtrip(ws, t.fb_envelope(b"a0", b"V", t.v_payload([(4, 5.0)], 1794999990000)))
        s = srv.json(f"/api/v1/vehicles/{VIN}/state")
        assert s["connected"] is True
        assert s["state"]["VehicleSpeed"]["value"] == 20.0
        assert s["state"]["Soc"]["value"] == 80.0
        assert s["state"]["Soc"]["time"] == "2026-11-18T11:06:40.000Z"
        # the fleet view of one signal, by name or number; unknown names are a clear 400
        send_other = connect(srv, env, "5YJ3E1EA7KF000002")
        roundtrip(send_other, t.fb_envelope(b"b1", b"V", t.v_payload([(8, 33.5)], 1795000001000)))
        send_other.close()
        for sig in ("Soc", "8"):
            fleet = srv.json(f"/api/v1/signals/{sig}/latest")
            assert fleet["signal"] == "Soc" and fleet["count"] == 2, fleet
            assert {v["id"]: v["value"] for v in fleet["vehicles"]} == {
                VIN: 80.0, "5YJ3E1EA7KF000002": 33.5}, fleet
        st, body = srv.http("/api/v1/signals/NoSuchSignal/latest")
        assert st == 400 and b"unknown signal" in body, body
        ws.close()
        srv.stop()
        srv.start()  # state is rebuilt from the WAL
        s = srv.json(f"/api/v1/vehicles/{VIN}/state")
        assert s["state"]["VehicleSpeed"]["value"] == 20.0 and s["connected"] is False
        srv.stop()


def test_bad_input_never_stored():
    with t.Env() as env:
        srv = Server(env, config={"max_message": 1000000}).start()
        ws = connect(srv, env)
        garbage = [b"", b"\x00", b"\xff" * 3, b"\x04\x00\x00\x00", os.urandom(64),
                   struct.pack("<I", 0x7fffffff) + b"\x00" * 12,
                   t.vector("v-basic.bin")[:40],
                   t.fb_envelope(b"tx-bad", b"V", b"\xff\xff\xff"),
                   t.fb_envelope(b"tx-conn", b"connectivity", b"")]
        for g in garbage:
            rep, _ = roundtrip(ws, g)
            assert rep["message_type"] == 4, (g[:16], rep)
            assert rep["payload"] == b"incorrect message format"
        big = t.fb_envelope(b"tx-big", b"V", b"\x00" * 1000001)
        rep, _ = roundtrip(ws, big)
        assert rep["message_type"] == 4
        # still usable after all that
        rep, _ = roundtrip(ws, t.vector("v-basic.bin"))
        assert rep["message_type"] == 5
        # a text frame closes the socket
        ws.send(b"hello", opcode=1)
        try:
            ws.recv(timeout=5)
            raise AssertionError("text frame did not close the socket")
        except (t.WSClosed, OSError):
            pass
        assert srv.metric('fleetvault_rejected_total{reason="too_large"}') == 1
        assert srv.metric('fleetvault_rejected_total{reason="text_frame"}') == 1
        srv.stop()
        ins = inspect(srv)
        assert ins["devices"][VIN]["records"] == 1, ins


def test_status_on_device_port_and_unknown_message_type():
    with t.Env() as env:
        srv = Server(env).start()
        cert, key = env.certs.device(VIN)
        ctx = ssl.create_default_context(cafile=env.certs.ca)
        ctx.load_cert_chain(cert, key)
        import http.client
        c = http.client.HTTPSConnection("localhost", srv.port, context=ctx, timeout=10)
        c.request("GET", "/status")
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"mtls ok"
        ws = connect(srv, env)
        rep, _ = roundtrip(ws, t.fb_envelope(b"tx-u", b"V", b"", message_type=0))
        assert rep["message_type"] == 5 and rep["txid"] == b"tx-u"
        ws.close()
        srv.stop()
        assert inspect(srv)["totals"]["records"] == 0


def test_pipelined_replies_leave_together():
    """Replies queued together leave in one write (gateway/session.c write_batch: framed as
    WebSocket messages, one TLS record): 300 records sent in one burst, every fifth one
    malformed, each answered once with a well-formed frame, in fewer writes than replies."""
    with t.Env() as env:
        srv = Server(env, config={"rate_limits": False}).start()
        ws = connect(srv, env)
        long_text = "x" * 300  # a VehicleName long enough that no reply frame is tiny
        for i in range(300):
            if i % 5 == 4:
                pl = b"\xff\xff\xff"  # not protobuf: an error reply
            else:
                pl = t.v_payload([(8, 50.0 + i * 0.01), (64, long_text)], 1795000001000 + i * 1000,
                                 VIN)
            ws.send(t.fb_envelope(f"tx-{i}".encode(), b"V", pl))
        seen = []
        for _ in range(300):
            op, payload = ws.recv()
            assert op == 2, op
            rep = t.fb_decode(payload)
            seen.append((rep["txid"].rstrip(b"\0").decode(), rep["message_type"]))
        ws.close()
        # (error replies leave at once, acks after their records are durable: the order of
        # the two kinds may differ from the records')
        kinds = dict(seen)
        assert len(seen) == 300 and sorted(kinds) == sorted(f"tx-{i}" for i in range(300)), seen
        assert all((kinds[f"tx-{i}"] == 5) == (i % 5 != 4) for i in range(300)), seen[:10]
        frames = srv.metric("fleetvault_reply_frames_total")
        writes = srv.metric("fleetvault_reply_writes_total")
        t.log(f"300 replies: {frames} frames in {writes} writes")
        assert frames >= 300 and writes < frames, (frames, writes)
        srv.stop()
        assert inspect(srv)["totals"]["records"] == 240


if __name__ == "__main__":
    t.main([test_vectors_acks_and_errors, test_identity_from_certificate,
            test_foreign_ca_and_no_certificate_refused, test_deduplication, test_rate_limit,
            test_api_token_and_state, test_bad_input_never_stored,
            test_status_on_device_port_and_unknown_message_type,
            test_pipelined_replies_leave_together])
