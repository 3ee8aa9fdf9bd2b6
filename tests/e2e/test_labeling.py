"""The labelers' work queue (issue 12 item 5, docs/data-engine.md "Labeling"): two labelers
of role labeler claim one clip each, a second claim answers 409 naming the clip held, another
labeler's clip is refused (403), the served MCAP carries a watermark channel whose serve id is
the one in the audit log, labels are stored (and in the subject's export) and release the
clip, a released clip is offered again, an erasure removes the labels, a lease expires (lease_s 5 from the config), a clip
that failed de-identification is never offered, a subject whose consent to model_training was
withdrawn is never served, no VIN in any answer or in the served file."""
import io
import json
import os
import subprocess
import tarfile
import time
import urllib.error
import urllib.request

import fvtest as t
import test_clips as tc

VINS = ["5YJLABEL0A0000000", "5YJLABEL0B0000000", "5YJLABEL0C0000000", "5YJLABEL0D0000000"]
LEASE_S = 5


def mcap_bytes(root, n):
    """A small MCAP clip (one IMU channel, three messages) written by `fleetvault mcap write`."""
    out = os.path.join(root, f"clip{n}.mcap")
    lines = [{"schema": {"name": "imu", "encoding": "jsonschema", "data_hex": "7b7d"}},
             {"channel": {"topic": "/imu", "message_encoding": "json", "schema_id": 1,
                          "metadata": {"sensor": "imu", "hz": "100"}}}]
    for i in range(3):
        lines.append({"message": {"channel": 1, "sequence": i, "log_time": str(1000 + i),
                                  "publish_time": str(1000 + i),
                                  "data_hex": json.dumps({"n": n, "i": i}).encode().hex()}})
    subprocess.run([t.BIN, "mcap", "write", out], input="\n".join(json.dumps(x) for x in lines),
                   text=True, check=True, capture_output=True)
    with open(out, "rb") as f:
        return f.read()


def api(srv, method, path, token, body=None):
    sep = "&" if "?" in path else "?"
    req = urllib.request.Request(
        f"http://127.0.0.1:{srv.api_port}{path}{sep}purpose=model_training", method=method,
        data=(json.dumps(body).encode() if body is not None else
              (b"" if method == "POST" else None)))
    req.add_header("Authorization", "Bearer " + srv.tokens[token])
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            st, data = r.status, r.read()
    except urllib.error.HTTPError as e:
        st, data = e.code, e.read()
    for vin in VINS:  # never a VIN in an answer
        assert vin.encode() not in data, (path, data[:300])
    return st, data


def jbody(data):
    return json.loads(data) if data else {}


def consent(srv, dev, purpose, change):
    st, b = srv.http(f"/api/v1/subjects/{dev}/consent?purpose={purpose}&change={change}"
                     f"&by=owner&ticket=DSR-1", token="po", method="POST", purpose=None)
    assert st == 200, (st, b)


def audit(srv, action):
    r = t.run("audit", "query", "--data", srv.data, "--action", action)
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def test_labeling_queue():
    with t.Env() as env:
        for v in VINS:
            env.certs.device(v)
        port = t.free_port()
        script = os.path.join(env.root, "deid.py")
        with open(script, "w") as f:
            f.write(tc.DEID)
        tc.set_mode(env, "pass")
        srv = t.Server(env.root, env.certs, policy=t.test_policy({"engine": tc.ENGINE}), config={
            "rate_limits": False, "labeling": {"lease_s": LEASE_S},
            "clips": {"listen": f"127.0.0.1:{port}", "campaigns": [tc.CAMPAIGN],
                      "deid_timeout_s": 5, "deid_command": ["python3", script, "{in}", "{out}"]}
        }).start()
        srv.principal("engine", "engine")
        srv.principal("po", "privacy-officer")
        srv.principal("lab1", "labeler")
        srv.principal("lab2", "labeler")
        tok1 = os.path.join(env.root, "lab1.token")
        with open(tok1, "w") as f:
            f.write(srv.tokens["lab1"])
        now = int(time.time() * 1000)
        for v in VINS:
            t.Device(env, v, now - 60000).send(srv, 0, 2)
            consent(srv, v, "clips", "give")
            consent(srv, v, "model_training", "give")
        # clips a (passes), b (passes), c (fails de-identification), d (passes)
        ids = {}
        for n, (vin, mode) in enumerate(zip(VINS, ["pass", "pass", "fail", "pass"])):
            tc.set_mode(env, mode)
            uid, (st, b) = tc.Clip(env, port, vin).upload(f"clip-{n}", mcap_bytes(env.root, n))
            assert st == 201, (st, b)
            tc.wait_deid(srv, uid, "passed" if mode == "pass" else "failed")
            ids["abcd"[n]] = uid

        # a role other than labeler may not use the queue
        srv.principal("ml", "ml-pipeline")
        st, b = api(srv, "POST", "/api/v1/labeling/next", "ml")
        assert st == 403 and b"labeler" in b, (st, b)

        # lab1 gets a, a second claim is 409 naming it; lab2 gets b
        st, b = api(srv, "POST", "/api/v1/labeling/next", "lab1")
        assert st == 200, (st, b)
        c1 = jbody(b)
        assert c1["clip"] == ids["a"] and len(c1["vehicle"]) == 32, c1
        assert "place" not in c1 and "lat" not in b.decode(), c1
        st, b = api(srv, "POST", "/api/v1/labeling/next", "lab1")
        assert st == 409 and jbody(b)["clip"] == ids["a"], (st, b)
        st, b = api(srv, "POST", "/api/v1/labeling/next", "lab2")
        assert st == 200 and jbody(b)["clip"] == ids["b"], (st, b)

        # another's clip: 403 to serve, label or release
        st, b = api(srv, "GET", f"/api/v1/labeling/clips/{ids['a']}", "lab2")
        assert st == 403, (st, b)
        st, b = api(srv, "POST", f"/api/v1/labeling/clips/{ids['a']}/labels", "lab2",
                    {"labels": {"x": 1}})
        assert st == 403, (st, b)
        assert api(srv, "POST", f"/api/v1/labeling/clips/{ids['a']}/release", "lab2")[0] == 403
        # lab2 gives b back (offered again below)
        assert api(srv, "POST", f"/api/v1/labeling/clips/{ids['b']}/release", "lab2")[0] == 200

        # lab1's clip, watermarked; the serve id is the audit entry's
        out = os.path.join(env.root, "served.mcap")
        r = t.run("label", "get", ids["a"], "--out", out, "--token-file", tok1,
                  "--api", f"http://127.0.0.1:{srv.api_port}")
        data = open(out, "rb").read()
        assert data[:8] == tc.MAGIC, data[:16]
        for vin in VINS:
            assert vin.encode() not in data
        # bad labels: 400, nothing changed (still held)
        st, b = api(srv, "POST", f"/api/v1/labeling/clips/{ids['a']}/labels", "lab1",
                    {"labels": {"x": 1}, "colour": "red"})
        assert st == 400 and b"colour" in b, (st, b)
        st, b = api(srv, "POST", f"/api/v1/labeling/clips/{ids['a']}/labels", "lab1",
                    {"labels": {"x": 1}, "tags": [7]})
        assert st == 400, (st, b)
        # labels through the CLI: stored, the clip released
        r = t.run("label", "submit", ids["a"], "--labels", '{"pedestrian": true, "boxes": 2}',
                  "--tags", "night,rain", "--token-file", tok1,
                  "--api", f"http://127.0.0.1:{srv.api_port}")
        assert json.loads(r.stdout)["state"] == "labeled", r.stdout
        assert api(srv, "GET", f"/api/v1/labeling/clips/{ids['a']}", "lab1")[0] == 403
        assert audit(srv, "labeling.labeled")

        # (checked once the clip is labeled: the lease is short) the watermark, read by
        # `mcap info`, names lab1 and a serve id that the audit entry of the serve names too
        t.run("mcap", "verify", out)
        info = json.loads(t.run("mcap", "info", out).stdout)
        marks = [c for c in info["channels"] if c["topic"] == "/fleetvault/watermark"]
        assert len(marks) == 1, info["channels"]
        m = marks[0]["metadata"]
        assert m["labeler"] == "lab1" and m["clip"] == ids["a"], m
        assert m["vehicle"] == c1["vehicle"] and len(m["serve_id"]) == 32, m
        assert [c["topic"] for c in info["channels"]] == ["/imu", "/fleetvault/watermark"]
        msgs = t.run("mcap", "cat", out, "--topic", "/imu").stdout.splitlines()
        assert len(msgs) == 3, msgs
        served = audit(srv, "labeling.served")
        assert [e for e in served if m["serve_id"] in json.dumps(e) and
                e.get("principal") == "lab1"], served
        for action in ("labeling.claimed", "labeling.served"):
            assert not [v for v in VINS if v in json.dumps(audit(srv, action))]

        refused = audit(srv, "labeling.refused")
        assert len([e for e in refused if e.get("principal") == "lab2"]) == 3, refused

        # the released b is offered again: lab2 takes it (a fresh lease, from tb)
        tb = time.time()
        st, b = api(srv, "POST", "/api/v1/labeling/next", "lab2")
        assert st == 200 and jbody(b)["clip"] == ids["b"], (st, b)
        # next for lab1: not a (labeled), not b (lab2's), not c (failed de-id): d
        st, b = api(srv, "POST", "/api/v1/labeling/next", "lab1")
        assert st == 200 and jbody(b)["clip"] == ids["d"], (st, b)
        # D withdraws consent to model_training: its clip is never served again
        consent(srv, VINS[3], "model_training", "withdraw")
        st, b = api(srv, "GET", f"/api/v1/labeling/clips/{ids['d']}", "lab1")
        assert st == 403 and b"consent" in b, (st, b)
        st, b = api(srv, "POST", "/api/v1/labeling/next", "lab1")
        assert st == 404 and b"nothing" in b, (st, b)  # c (failed) never offered
        out2 = os.path.join(env.root, "refused.mcap")  # the CLI: a clear error, no file
        r = t.run("label", "get", ids["d"], "--out", out2, "--token-file", tok1,
                  "--api", f"http://127.0.0.1:{srv.api_port}", check=False)
        assert r.returncode == 1 and "403" in r.stderr, (r.returncode, r.stderr)
        assert not os.path.exists(out2)

        # lab2's lease expires: lab1 may take b, lab2 may no longer fetch it
        time.sleep(max(0.0, tb + LEASE_S + 0.5 - time.time()))
        st, b = api(srv, "POST", "/api/v1/labeling/next", "lab1")
        assert st == 200 and jbody(b)["clip"] == ids["b"], (st, b)
        assert api(srv, "GET", f"/api/v1/labeling/clips/{ids['b']}", "lab2")[0] == 403
        assert api(srv, "GET", f"/api/v1/labeling/clips/{ids['b']}", "lab1")[0] == 200

        # the labels are the subject's: in A's export
        st, body = srv.http(f"/api/v1/subjects/{VINS[0]}/export?ticket=DSAR-1", token="po",
                            purpose=None)
        assert st == 200, body
        tar = tarfile.open(fileobj=io.BytesIO(body))
        sj = [m for m in tar.getmembers() if m.name.endswith("/subject.json")][0]
        sj = json.load(tar.extractfile(sj))
        got = sj["periods"][-1]["clip_labels"]
        assert len(got) == 1 and got[0]["clip"] == ids["a"], got
        assert got[0]["labels"] == {"labels": {"boxes": 2, "pedestrian": True},
                                    "tags": ["night", "rain"]}, got

        # erasing A removes its labels with its clip (b's subject keeps nothing labeled)
        import sqlite3
        con = sqlite3.connect(os.path.join(srv.data, "catalog.db"))
        assert con.execute("SELECT count(*) FROM clip_labels").fetchone()[0] == 1
        st, b = srv.http(f"/api/v1/subjects/{VINS[0]}/erase?ticket=GDPR-8", token="po",
                         method="POST", purpose=None)
        assert st == 200, (st, b)
        assert con.execute("SELECT count(*) FROM clip_labels").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM clips WHERE id = ?",
                           (ids["a"],)).fetchone()[0] == 0
        con.close()
        srv.stop()


if __name__ == "__main__":
    t.main([test_labeling_queue])
