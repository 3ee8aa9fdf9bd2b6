"""End-to-end: an answer is never released before its audit entry is durable (api/http.h H2,
privacy/audit.h A13). The server is restarted with the fault layer (FV_FAULT, src/os/fsio.h)
failing every fsync from the first one after start-up: the decision entry of the next read is
written but cannot be synced, so the read must be answered 500 without a row of data - not
with the data its decision allowed. A read just before, without the fault, is served (the
store holds what is asked for); lazy result entries (A13) change nothing about this.

The zeros written ahead of the audit log's entries (A17, "audit_prealloc_kb"): present while
the server runs, gone after a clean stop, cut at start after a kill -9 with every entry kept;
0 writes none; a bad value is refused at start with a message naming the key."""
import json
import os
import time

import fvtest as t

A = "5YJ3E1EA7KF000301"
T0 = 1795000000000
SOC = 8


def send(srv, env, dev, n):
    path = os.path.join(env.certs.dir, "devices", dev + ".crt")
    if not os.path.exists(path):
        env.certs.device(dev)
    ws = t.WS(srv.port, path, path[:-4] + ".key", env.certs.ca)
    for i in range(n):
        ws.send(t.fb_envelope(f"{dev}-{i}".encode(), b"V",
                              t.v_payload([(SOC, 50.0 + i)], T0 + i * 1000)))
    for _ in range(n):
        _, p = ws.recv()
        assert t.fb_decode(p)["message_type"] == 5
    ws.close()


QUERY = f"/api/v1/query?device={A}&signals=Soc&from={T0}&to={T0 + 60000}"


def fsyncs_at_start(srv):
    """fsync calls of a start-up and its first seconds, not its stop (FV_FAULT_LOG=all)."""
    srv.env = {"FV_FAULT_LOG": "all"}
    mark = len(srv.log())
    srv.start()
    time.sleep(2.5)  # the first ticks (principal events, checkpoints) included
    srv.stop()
    seg = srv.log()[mark:]
    seg = seg[:seg.index("info  stopping")]  # not the close's own syncs
    return sum(1 for what, op, _, _ in t.fault_lines(seg) if what == "call" and op == "fsync")


def test_failed_audit_sync_withholds_the_answer():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs).start()
        send(srv, env, A, 20)
        st, body = srv.http(QUERY)
        assert st == 200, (st, body)
        assert json.loads(body)["count"] == 20
        srv.stop()
        # start-up is the same from here on: count its fsyncs twice to be sure
        n1 = fsyncs_at_start(srv)
        n2 = fsyncs_at_start(srv)
        assert n1 == n2, (n1, n2)
        srv.env = {"FV_FAULT": f"fsync:{n2 + 1}+:EIO", "FV_FAULT_LOG": "1"}
        mark = len(srv.log())
        srv.start()
        time.sleep(2.5)
        st, body = srv.http(QUERY)
        assert st >= 500, (st, body[:300])
        assert b"VehicleSpeed" not in body and b'"Soc"' not in body and b'"rows"' not in body, body
        log = srv.log()[mark:]
        assert any(what == "inject" and op == "fsync" for what, op, _, _ in t.fault_lines(log)), \
            log[-2000:]
        srv.kill9()  # its audit log has failed: a clean stop is not expected


def newest_audit(srv):
    d = os.path.join(srv.data, "audit")
    name = sorted(n for n in os.listdir(d) if n.endswith(".jsonl"))[-1]
    with open(os.path.join(d, name), "rb") as f:
        return f.read()


def entries(img):
    """The entries' lines, as a reader takes them: up to the first NUL byte."""
    body = img.split(b"\0", 1)[0]
    assert body.endswith(b"\n"), body[-200:]
    return body.splitlines()


def test_audit_zeros_written_ahead():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs).start()
        send(srv, env, A, 5)
        for _ in range(3):
            st, _ = srv.http(QUERY)
            assert st == 200
        img = newest_audit(srv)
        lines = entries(img)
        assert len(img) >= len(b"".join(lines)) + 512 * 1024, len(img)  # 1 MiB ahead by default
        assert img[len(img) - 4096:] == bytes(4096)
        srv.stop()
        img = newest_audit(srv)
        assert b"\0" not in img and img.endswith(b"\n"), len(img)  # a clean stop cuts them
        closed = entries(img)
        assert closed[:len(lines)] == lines
        srv.start()
        st, _ = srv.http(QUERY)
        assert st == 200
        before = entries(newest_audit(srv))
        srv.kill9()
        assert b"\0" in newest_audit(srv)  # a crash leaves them
        srv.start()  # and open cuts them, keeping every entry
        after = entries(newest_audit(srv))
        assert after[:len(before)] == before, (len(before), len(after))
        srv.stop()
        r = t.run("audit", "verify", "--data", srv.data, "--public-key",
                  srv.key_file + ".audit.pem.pub", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        # none written ahead
        with open(srv.config) as f:
            cfg = json.load(f)
        cfg["audit_prealloc_kb"] = 0
        with open(srv.config, "w") as f:
            json.dump(cfg, f)
        srv.start()
        st, _ = srv.http(QUERY)
        assert st == 200
        assert b"\0" not in newest_audit(srv)
        srv.stop()
        # a bad value: refused at start, naming the key
        for bad in (-1, 65537, "1M"):
            cfg["audit_prealloc_kb"] = bad
            with open(srv.config, "w") as f:
                json.dump(cfg, f)
            mark = len(srv.log())
            assert not srv.try_start(), bad
            assert "audit_prealloc_kb" in srv.log()[mark:], srv.log()[mark:]


if __name__ == "__main__":
    t.main([test_failed_audit_sync_withholds_the_answer, test_audit_zeros_written_ahead])
