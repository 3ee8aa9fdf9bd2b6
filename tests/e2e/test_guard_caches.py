"""End-to-end tests of what the access guard keeps in memory to answer a read without SQL on
its hot path (issue 13 item 2, privacy/guard.h): quota counters counted in memory and
written to DATA/quota.db in batches (G5: a crash gives back at most the last batch, never
counts near a limit); principals' tokens kept by hash while the catalog is unchanged (G1: a
revocation, by the CLI or the API, refuses the very next request); a query's lookups in one
read snapshot taken with the request (G4: a withdrawn consent refuses the very next read)."""
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


def send(env, srv, dev, n, t0=T0, first=0):
    path = os.path.join(env.certs.dir, "devices", dev + ".crt")
    if not os.path.exists(path):
        env.certs.device(dev)
    ws = t.WS(srv.port, path, path[:-4] + ".key", env.certs.ca)
    for k in range(first, first + n):
        tm = t0 + k * 100
        ws.send(t.fb_envelope(f"{dev}-{k}".encode(), b"V", t.v_payload([(SOC, 1.0 + k)], tm)))
        _, p = ws.recv()
        assert t.fb_decode(p)["message_type"] == 5
    ws.close()


def server(env):
    return t.Server(env.root, env.certs, config={"rate_limits": False}, policy=POLICY).start()


def get(srv, path, token, purpose="service"):
    st, body = srv.http(path, token=token, purpose=purpose)
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
        srv = server(env)
        send(env, srv, A, 50)
        rita = srv.principal("rita", "rows100")
        q20 = f"/api/v1/query?device={A}&signals=Soc&from={T0}&to={T0 + 1900}"
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


def test_token_revoked_refused_at_once():
    with t.Env() as env:
        srv = server(env)
        send(env, srv, A, 3)
        q = f"/api/v1/query?device={A}&signals=Soc"
        ann, bob = srv.principal("ann", "ops"), srv.principal("bob", "ops")
        for _ in range(3):  # authenticated from the catalog, then from memory
            assert get(srv, q, ann)[0] == 200 and get(srv, q, bob)[0] == 200
        # Revoked by another process (the CLI): the next request is refused.
        t.run("principal", "revoke", "ann", "--data", srv.data)
        st, b = get(srv, q, ann)
        assert st == 401 and "revoked" in b["error"], (st, b)
        assert get(srv, q, bob)[0] == 200
        # Revoked through the API (the server's own catalog connection): the same.
        st, body = srv.http("/api/v1/principals/bob/revoke", token="admin", method="POST",
                            purpose=None)
        assert st == 200, (st, body)
        st, b = get(srv, q, bob)
        assert st == 401 and "revoked" in b["error"], (st, b)
        srv.stop()


def test_consent_withdrawn_refused_at_once():
    with t.Env() as env:
        srv = server(env)
        po = srv.principal("paula", "privacy-officer")

        def change(what):
            st, b = srv.http(f"/api/v1/subjects/{A}/consent?purpose=model_training"
                             f"&change={what}&by=owner&ticket=DSR-1", token=po, method="POST",
                             purpose=None)
            assert st == 200, (st, b)

        send(env, srv, A, 1, int(time.time() * 1000) - 10000)  # a known device
        change("give")
        t1 = int(time.time() * 1000)
        send(env, srv, A, 3, t1, first=1)  # made after the grant: servable
        ml = srv.principal("trainer", "ml-pipeline")
        st, b = get(srv, "/api/v1/vehicles", ml, "model_training")
        pa = b["vehicles"][0]["id"]
        q = f"/api/v1/query?device={pa}&signals=Soc&from={t1}"
        for _ in range(3):
            st, body = srv.http(q, token=ml, purpose="model_training")
            assert st == 200 and json.loads(body)["count"] == 3, (st, body)
        change("withdraw")
        st, body = srv.http(q, token=ml, purpose="model_training")
        assert st == 404 and b"unknown device" in body, (st, body)
        srv.stop()


if __name__ == "__main__":
    t.main([test_quota_batches_survive_a_crash, test_token_revoked_refused_at_once,
            test_consent_withdrawn_refused_at_once])
