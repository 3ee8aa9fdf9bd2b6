#!/usr/bin/env python3
"""e2e: training datasets served to training jobs (api/dataset_api.c, api/filesend.h).

A dataset version laid out as data/dataset.h builds it (shards and manifest under
DATA/datasets/NAME/vN) is listed, its manifest read and its shards fetched whole and by byte
range (200/206/416, Content-Length, Content-Range, Accept-Ranges) by an ml-pipeline
principal for purpose model_training; every fetch is audited with the range; the wrong
purpose or role is refused (403), an unknown or unlisted shard is 404 (a path that climbs out
of the version too), and a version holding a subject who withdrew is 410 naming the versions
to use instead."""
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fvtest as t  # noqa: E402


def make_version(root, name, ver, samples, subjects, withdrawn=None):
    """Writes a version as dataset.h lays it out: one shard, a manifest naming it."""
    d = os.path.join(root, name, f"v{ver}")
    os.makedirs(d)
    shard = f"{name}-train-000000.tar"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for i in range(samples):
            for ext, data in ((".mcap", os.urandom(3000 + i)), (".json", b'{"i": %d}' % i)):
                ti = tarfile.TarInfo(f"s{i}{ext}")
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    body = buf.getvalue()
    with open(os.path.join(d, shard), "wb") as f:
        f.write(body)
    man = {"format": "fleetvault-dataset/1", "name": name, "version": ver,
           "created_ms": 1700000000000, "query": "campaign=c1",
           "counts": {"samples": samples, "per_split": {"train": samples}},
           "shards": [{"file": shard, "split": "train", "samples": samples, "bytes": len(body),
                       "sha256": hashlib.sha256(body).hexdigest()}],
           "samples": [{"key": f"s{i}", "split": "train", "shard": shard,
                        "vehicle": f"veh-{i}", "subject": subjects[i % len(subjects)]}
                       for i in range(samples)]}
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(man, f)
    if withdrawn:
        with open(os.path.join(root, name, f"v{ver}.withdrawn"), "w") as f:
            json.dump({"withdrawn": [{"subject": withdrawn, "at_ms": 1700000001000}]}, f)
    return shard, body


def get(srv, path, token, purpose="model_training", headers=None):
    if purpose:
        path += ("&" if "?" in path else "?") + "purpose=" + purpose
    req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}{path}")
    req.add_header("Authorization", "Bearer " + srv.tokens.get(token, token))
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def audit(srv, action):
    r = t.run("audit", "query", "--data", srv.data, "--action", action)
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def test_serving():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs).start()
        srv.principal("trainer", "ml-pipeline")
        root = os.path.join(srv.data, "datasets")
        shard, body = make_version(root, "drives", 1, 6, ["subj-a", "subj-b"])
        make_version(root, "drives", 2, 4, ["subj-a"], withdrawn="subj-a")
        make_version(root, "drives", 3, 3, ["subj-b"])

        st, _, b = get(srv, "/api/v1/datasets", "trainer")
        assert st == 200, (st, b)
        ds = json.loads(b)["datasets"]
        assert [d["name"] for d in ds] == ["drives"], ds
        vs = {v["version"]: v for v in ds[0]["versions"]}
        assert sorted(vs) == [1, 2, 3], vs
        assert vs[1]["samples"] == 6 and vs[1]["bytes"] == len(body), vs[1]
        assert vs[2]["withdrawn_subjects"] == 1 and vs[1]["withdrawn_subjects"] == 0, vs

        st, _, b = get(srv, "/api/v1/datasets/drives/v1", "trainer")
        assert st == 200 and json.loads(b)["shards"][0]["file"] == shard, (st, b[:200])

        base = f"/api/v1/datasets/drives/v1/shards/{shard}"
        st, h, b = get(srv, base, "trainer")
        assert st == 200 and b == body, (st, len(b))
        assert h.get("Content-Length") == str(len(body)) and h.get("Accept-Ranges") == "bytes", h
        assert hashlib.sha256(b).hexdigest() == hashlib.sha256(body).hexdigest()
        st, h, b = get(srv, base, "trainer", headers={"Range": "bytes=1000-2999"})
        assert st == 206 and b == body[1000:3000], (st, len(b))
        assert h.get("Content-Range") == f"bytes 1000-2999/{len(body)}", h
        st, h, b = get(srv, base, "trainer", headers={"Range": "bytes=-10"})
        assert st == 206 and b == body[-10:], (st, b)
        st, h, b = get(srv, base, "trainer", headers={"Range": f"bytes={len(body)}-"})
        assert st == 416 and h.get("Content-Range") == f"bytes */{len(body)}", (st, h)
        # resume: the tail after a cut at an odd offset completes the file exactly
        cut = 12345
        st, _, tail = get(srv, base, "trainer", headers={"Range": f"bytes={cut}-"})
        assert st == 206 and body[:cut] + tail == body

        # every shard fetch audited, with the range asked
        rows = audit(srv, "dataset.shard")
        ranges = [json.dumps(r) for r in rows]
        assert len(rows) >= 5, rows
        assert any("bytes=1000-2999" in x for x in ranges), ranges

        # refusals: no purpose, another purpose, a role without model_training
        st, _, b = get(srv, base, "trainer", purpose=None)
        assert st == 403, (st, b[:200])
        st, _, b = get(srv, base, "trainer", purpose="service")
        assert st == 403, (st, b[:200])
        st, _, b = get(srv, base, "ops", purpose="service")
        assert st == 403, (st, b[:200])
        # not found: a shard the manifest does not list, a climb out, a bad version
        for path in (f"/api/v1/datasets/drives/v1/shards/other.tar",
                     "/api/v1/datasets/drives/v1/shards/..%2Fmanifest.json",
                     "/api/v1/datasets/drives/v9", "/api/v1/datasets/drives/1",
                     "/api/v1/datasets/Drives/v1", "/api/v1/datasets/drives/v1/x/y"):
            st, _, b = get(srv, path, "trainer")
            assert st == 404, (path, st, b[:200])
        # withdrawn since built: 410 naming v3
        st, _, b = get(srv, f"/api/v1/datasets/drives/v2/shards/drives-train-000000.tar",
                       "trainer")
        assert st == 410 and json.loads(b)["versions_without_withdrawals"] == [3], (st, b)
        srv.stop()


if __name__ == "__main__":
    t.main([test_serving])
