"""End-to-end tests of the bounds on device sessions (gateway/session.h, rule S6) and of a
clean shutdown under load (issue 8, defects 5 and 7): txids are never echoed past 1024
bytes, a device has at most 4 connections, a peer that does not read its replies or answer
pings is closed, and SIGTERM while many devices stream stops cleanly (under ASan a use of the
destroyed context after shutdown fails this test)."""
import os
import socket
import threading
import time

import fvtest as t

VIN = "5YJ3E1EA7KF000001"


def connect(env, srv, dev_id=VIN, **kw):
    cert = os.path.join(env.certs.dir, "devices", dev_id + ".crt")
    key = os.path.join(env.certs.dir, "devices", dev_id + ".key")
    if not os.path.exists(cert):
        cert, key = env.certs.device(dev_id)
    return t.WS(srv.port, cert, key, env.certs.ca, **kw)


def test_long_txid_never_echoed():
    """A 200 KB txid (valid envelope, sender of another device) used to come back whole in
    the error reply; now the reply carries an empty txid and nothing is stored."""
    with t.Env() as env:
        srv = t.Server(env.root, env.certs).start()
        ws = connect(env, srv)
        big = b"x" * 200000
        env_bytes = t.fb_envelope(big, b"V", t.v_payload([(4, 12.5)]), sender_id=b"vehicle_device.OTHER")
        ws.send(env_bytes)
        op, raw = ws.recv()
        rep = t.fb_decode(raw)
        assert rep["message_type"] == 4, rep
        assert rep["txid"] == b"", "a txid over 1024 bytes must not be echoed"
        assert len(raw) < 1000, f"error reply of {len(raw)} bytes"
        # The same for a valid record with an over-long txid: refused, not stored.
        ws.send(t.fb_envelope(b"y" * 5000, b"V", t.v_payload([(4, 12.5)])))
        op, raw = ws.recv()
        rep = t.fb_decode(raw)
        assert rep["message_type"] == 4 and rep["txid"] == b"", rep
        # A normal txid still works and is echoed.
        ws.send(t.fb_envelope(b"tx-ok", b"V", t.v_payload([(4, 12.5)])))
        op, raw = ws.recv()
        rep = t.fb_decode(raw)
        assert rep["message_type"] == 5 and rep["txid"] == b"tx-ok", rep
        ws.close()
        vs = srv.json(f"/api/v1/vehicles/{VIN}/state")
        assert vs["records"] == 1, vs
        srv.stop()


def test_connections_per_device_capped():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs).start()
        conns = [connect(env, srv) for _ in range(4)]
        for ws in conns:  # all four work
            ws.send(t.fb_envelope(os.urandom(8).hex().encode(), b"V", t.v_payload([(4, 1.0)])))
            assert t.fb_decode(ws.recv()[1])["message_type"] == 5
        refused = False
        try:
            extra = connect(env, srv)
            extra.send(t.fb_envelope(b"tx-5th", b"V", t.v_payload([(4, 1.0)])))
            extra.recv(timeout=5)
        except (t.WSClosed, OSError):
            refused = True
        assert refused, "a fifth connection of one device must be refused"
        assert srv.metric("fleetvault_connections_refused_total") >= 1
        conns[0].close()
        # A slot is free again once the server has seen the close (allow a slow machine).
        deadline = time.time() + 10
        while srv.metric("fleetvault_connections") > 3 and time.time() < deadline:
            time.sleep(0.1)
        again = connect(env, srv)
        again.send(t.fb_envelope(b"tx-again", b"V", t.v_payload([(4, 1.0)])))
        assert t.fb_decode(again.recv()[1])["message_type"] == 5
        for ws in conns[1:] + [again]:
            ws.close()
        srv.stop()


def test_silent_peer_closed():
    """A peer that completes the handshake and then neither sends nor answers pings is
    closed after device_idle_timeout."""
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"device_idle_timeout": "6s"}).start()
        ws = connect(env, srv)
        t0 = time.time()
        assert srv.wait_metric("fleetvault_connections", 1) == 1
        # Read raw bytes without ever answering a ping.
        ws.sock.settimeout(15)
        closed = False
        try:
            while time.time() - t0 < 15:
                if not ws.sock.recv(4096):
                    closed = True
                    break
        except socket.timeout:
            pass
        except OSError:
            closed = True
        assert closed, "a silent peer must be closed"
        took = time.time() - t0
        assert 5 <= took <= 14, f"closed after {took:.1f}s (timeout 6s)"
        deadline = time.time() + 5
        while srv.metric("fleetvault_connections") != 0 and time.time() < deadline:
            time.sleep(0.1)
        assert srv.metric("fleetvault_connections") == 0
        # A peer that answers pings stays (WS.recv answers them).
        ws2 = connect(env, srv)
        t1 = time.time()
        while time.time() - t1 < 10:  # ten seconds of pings answered, nothing else sent
            try:
                ws2.recv(timeout=1)
            except socket.timeout:
                pass
        ws2.send(t.fb_envelope(b"tx-alive", b"V", t.v_payload([(4, 1.0)])))
        assert t.fb_decode(ws2.recv()[1])["message_type"] == 5
        ws2.close()
        srv.stop()


def test_reader_that_never_reads_is_closed():
    """A device that sends but never reads its replies would make the server queue replies
    without end; its queue is capped in bytes (or, once the server stops reading a peer whose
    socket is full, the idle timeout ends it) and the connection is closed."""
    with t.Env() as env:
        srv = t.Server(env.root, env.certs,
                       config={"rate_limits": False, "device_idle_timeout": "4s"}).start()
        ws = connect(env, srv)
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # Each bad message earns an error reply echoing a 1000-byte txid: about 1 KB a reply.
        msg = t.fb_envelope(b"t" * 1000, b"V", b"\xff\xff\xff", sender_id=b"vehicle_device.OTHER")
        sent = 0
        closed = False
        ws.sock.settimeout(5)
        try:
            for _ in range(20000):
                ws.send(msg)
                sent += 1
        except socket.timeout:
            pass  # the server stopped reading us (its replies to us are stuck): fine
        except OSError:
            closed = True  # closed by the server: its reply queue passed the cap
        # Either way the server must close the connection soon (queue cap, or nothing
        # received for the idle timeout), without us ever reading.
        deadline = time.time() + 15
        while not closed and time.time() < deadline:
            if srv.metric("fleetvault_connections") == 0:
                closed = True
            time.sleep(0.2)
        assert closed, f"connection still open after {sent} unread replies"
        assert srv.json("/status")["devices"] >= 0  # the server is fine
        srv.stop()


def test_sigterm_under_load_stops_cleanly():
    """40 devices streaming; SIGTERM; the server exits 0 (under ASan a late wake of the
    destroyed lws context by the WAL writer or store worker makes it abort)."""
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"store": {"flush_interval": "1s"}}).start()
        stop = threading.Event()
        acked = [0]

        def stream(i):
            try:
                ws = connect(env, srv, dev_id=f"5YJ3E1EA7KF{i:06d}")
                n = 0
                while not stop.is_set():
                    ws.send(t.fb_envelope(f"tx-{i}-{n}".encode(), b"V",
                                          t.v_payload([(4, float(n))])))
                    ws.recv(timeout=10)
                    acked[0] += 1
                    n += 1
            except Exception:  # noqa: BLE001 - the server going away ends the stream
                pass

        for i in range(40):  # certificates first: under a sanitizer each takes a while
            env.certs.device(f"5YJ3E1EA7KF{i:06d}")
        threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(40)]
        for th in threads:
            th.start()
        deadline = time.time() + 20  # under load: every device streaming, then SIGTERM
        while acked[0] < 400 and time.time() < deadline:
            time.sleep(0.1)
        rc = srv.stop()
        stop.set()
        for th in threads:
            th.join(timeout=10)
        assert rc == 0
        assert acked[0] > 40, acked[0]
        assert "AddressSanitizer" not in srv.log() and "runtime error" not in srv.log()


def test_backpressure_pauses_and_resumes():
    """Over the head's budget (store.head_max_datums) the server stops reading from devices
    until a flush drains the head; nothing is refused or lost, every record is acked once."""
    with t.Env() as env:
        cfg = {"rate_limits": False,
               "store": {"flush_interval": "2s", "flush_datums": 100000, "head_max_datums": 300}}
        srv = t.Server(env.root, env.certs, config=cfg).start()
        ws = connect(env, srv)
        datums = [(f, float(f)) for f in range(1, 21)]  # 20 datums a record
        t0 = time.time()
        for n in range(60):  # 1,200 datums: four times the budget
            ws.send(t.fb_envelope(f"bp-{n}".encode(), b"V", t.v_payload(datums)))
            rep = t.fb_decode(ws.recv(timeout=30)[1])
            assert rep["message_type"] == 5 and rep["txid"] == f"bp-{n}".encode(), rep
        took = time.time() - t0
        assert srv.metric("fleetvault_ingest_pauses_total") >= 1
        assert took >= 1.5, f"60 records in {took:.1f}s: the budget did not hold them back"
        assert srv.metric("fleetvault_datums_total") == 1200
        assert "ingest resumed" in srv.log()
        ws.close()
        srv.stop()


if __name__ == "__main__":
    t.main([test_long_txid_never_echoed, test_connections_per_device_capped,
            test_silent_peer_closed, test_reader_that_never_reads_is_closed,
            test_sigterm_under_load_stops_cleanly, test_backpressure_pauses_and_resumes])
