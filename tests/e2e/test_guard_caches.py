"""End-to-end tests of what the access guard keeps in memory to answer a read without SQL on
its hot path (issue 13 item 2, privacy/guard.h G5): quota counters counted in memory and
written to DATA/quota.db in batches (a crash gives back at most the last batch, never counts
near a limit)."""
import json
import os
import sqlite3
import time

import fvtest as t

A = "5YJ3E1EA7KF000931"
T0 = 1795000000000
SOC = 8

POLICY = t.test_policy({
    "rows100": t.role({"service": ["default"]},
                      quota={"subjects_per_day": None, "rows_per_day": 100,
                             "bytes_per_day": None}),
})


def send(env, srv, dev, n):
    path = os.path.join(env.certs.dir, "devices", dev + ".crt")
    if not os.path.exists(path):
        env.certs.device(dev)
    ws = t.WS(srv.port, path, path[:-4] + ".key", env.certs.ca)
    for k in range(n):
        tm = T0 + k * 1000
        ws.send(t.fb_envelope(f"{dev}-{k}".encode(), b"V", t.v_payload([(SOC, 1.0 + k)], tm)))
        _, p = ws.recv()
        assert t.fb_decode(p)["message_type"] == 5
    ws.close()


def get(srv, path, token):
    st, body = srv.http(path, token=token, purpose="service")
    try:
        return st, json.loads(body)
    except ValueError:
        return st, body


def saved_rows(srv, name):
    """The rows counter of name in DATA/quota.db, as a crash would leave it."""
    db = sqlite3.connect(os.path.join(srv.data, "quota.db"))
    try:
        r = db.execute("SELECT rows FROM quota_usage WHERE name = ?", (name,)).fetchone()
    finally:
        db.close()
    return r[0] if r else 0


def test_quota_batches_survive_a_crash():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False},
                       policy=POLICY).start()
        send(env, srv, A, 50)
        rita = srv.principal("rita", "rows100")
        q20 = f"/api/v1/query?device={A}&signals=Soc&from={T0}&to={T0 + 19000}"
        for _ in range(3):  # 60 of 100 rows: counted in memory, saved in the next batch
            st, b = get(srv, q20, rita)
            assert st == 200 and b["count"] == 20, (st, b)
        deadline = time.time() + 10
        while saved_rows(srv, "rita") != 60 and time.time() < deadline:
            time.sleep(0.1)
        # The batch reached the disk within a second or so, without another request.
        assert saved_rows(srv, "rita") == 60, saved_rows(srv, "rita")
        assert saved_rows(srv, "role:rows100") == 60, saved_rows(srv, "role:rows100")
        srv.kill9()
        srv.start()
        q = f"/api/v1/query?device={A}&signals=Soc"
        st, b = get(srv, q, rita)  # 40 left after the crash, not a fresh 100
        assert st == 200 and b["count"] == 40 and "quota" in b.get("stopped", ""), (st, b)
        # Near a limit a count is saved before the answer: a crash right after it gives
        # nothing back.
        srv.kill9()
        srv.start()
        st, b = get(srv, q, rita)
        assert st == 403 and "quota" in b["error"], (st, b)
        srv.stop()


if __name__ == "__main__":
    t.main([test_quota_batches_survive_a_crash])
