"""The web console's files (/ui/, api/static_ui.h U1-U3) and the fleet page's counters over
time (GET /api/v1/stats/history, api/stats_hist.h): only regular files under the console's
directory are served - no "..", no symbolic link (out of the directory or not), no absolute
path - with the console's headers, no token needed; the history needs a token; the access log
over HTTP (GET /api/v1/audit) is for privacy officers only."""
import json
import os
import socket
import time

import fvtest as t


def raw_get(port, target):
    """GET target sent as is (no client-side normalisation of '..' or '%2e')."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    if not data:
        return 0, {}, b""  # the connection closed without an answer (lws refused the URL)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_static_files_and_their_limits():
    with t.Env() as env:
        ui = os.path.join(env.root, "ui")
        os.makedirs(os.path.join(ui, "pages"))
        with open(os.path.join(ui, "index.html"), "w") as f:
            f.write("<!doctype html><title>console</title>")
        with open(os.path.join(ui, "pages", "a.js"), "w") as f:
            f.write("export default 1;\n")
        secret = os.path.join(env.root, "secret.txt")
        with open(secret, "w") as f:
            f.write("SECRET-OUTSIDE")
        os.symlink(secret, os.path.join(ui, "link.txt"))  # a link out of the directory
        os.symlink(os.path.join(ui, "index.html"), os.path.join(ui, "inside.html"))
        os.symlink(env.root, os.path.join(ui, "up"))  # a directory link out
        srv = t.Server(env.root, env.certs, config={"ui_dir": ui}).start()
        p = srv.api_port
        st, h, body = raw_get(p, "/ui")
        assert st == 301 and h["location"] == "/ui/", (st, h)
        st, h, body = raw_get(p, "/ui/")
        assert st == 200 and body.startswith(b"<!doctype html>"), (st, body)
        assert h["content-type"].startswith("text/html"), h
        assert "default-src 'self'" in h["content-security-policy"], h
        assert h["x-content-type-options"] == "nosniff" and h["cache-control"] == "no-cache", h
        st, h, body = raw_get(p, "/ui/pages/a.js")
        assert st == 200 and h["content-type"].startswith("text/javascript"), (st, h)
        assert body == b"export default 1;\n", body
        for bad in ("/ui/link.txt", "/ui/inside.html", "/ui/up/secret.txt", "/ui/../secret.txt",
                    "/ui/pages/../../secret.txt", "/ui/%2e%2e/secret.txt", "/ui//etc/passwd",
                    "/ui/" + secret, "/ui/pages/", "/ui/pages", "/ui/missing.js",
                    "/ui/a%00.js", "/ui/.\\secret.txt"):
            st, h, body = raw_get(p, bad)
            assert st in (0, 400, 403, 404), (bad, st, body)
            assert b"SECRET-OUTSIDE" not in body, bad
        # the console's files need no token; POST is refused
        st, body = srv.http("/ui/index.html", token=None, method="POST")
        assert st == 405, (st, body)
        srv.stop()


def test_counters_over_time():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"ui_dir": env.root}).start()
        st, body = srv.http("/api/v1/stats/history", token=None, purpose=None)
        assert st == 401, (st, body)
        dev = "5YJ3E1EA7KF000777"
        crt, key = env.certs.device(dev)
        ws = t.WS(srv.port, crt, key, env.certs.ca)
        now = int(time.time() * 1000)
        for i in range(5):
            ws.send(t.fb_envelope(f"r-{i}".encode(), b"V",
                                  t.v_payload([(8, 50.0 + i)], now - 5000 + i)))
            assert t.fb_decode(ws.recv()[1])["message_type"] == 5
        time.sleep(4.5)  # two more samples (every 2 s)
        st, body = srv.http("/api/v1/stats/history", purpose=None)
        assert st == 200, (st, body)
        h = json.loads(body)
        assert h["interval_ms"] == 2000, h
        s = h["samples"]
        assert len(s) >= 2 and all(b["t"] - a["t"] >= 2000 for a, b in zip(s, s[1:])), s
        last = s[-1]
        assert last["connections"] == 1 and last["devices"] == 1, last
        assert last["records"] >= 5 and last["acks"] == 5 and last["errors"] == 0, last
        since = s[-2]["t"]
        st, body = srv.http(f"/api/v1/stats/history?since={since}", purpose=None)
        assert [x["t"] for x in json.loads(body)["samples"]] == [x["t"] for x in s[-1:]] or \
            json.loads(body)["samples"][0]["t"] > since, body
        ws.close()
        # the access log over HTTP (api/audit_api.c A1): privacy officers with a ticket only
        st, body = srv.http("/api/v1/audit?ticket=X-1", purpose=None)
        assert st == 403, (st, body)  # ops: no audit action
        st, body = srv.http("/api/v1/audit?principal=ops&ticket=X-1", token=t.APPROVER,
                            purpose=None)
        assert st == 200, (st, body)
        a = json.loads(body)
        assert a["count"] >= 1 and all(e["principal"] == "ops" for e in a["entries"]), a
        assert any(e["action"] == "audit.query" and e["result"] == "deny" for e in a["entries"]), a
        st, body = srv.http("/api/v1/audit?limit=0&ticket=X-1", token=t.APPROVER, purpose=None)
        assert st == 400, (st, body)
        srv.stop()


if __name__ == "__main__":
    t.main([test_static_files_and_their_limits, test_counters_over_time])
