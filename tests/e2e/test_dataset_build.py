#!/usr/bin/env python3
"""e2e acceptance of issue 12's datasets (items 6, 7): simulated vehicles upload clips over the
real clip endpoint (one upload interrupted and resumed), the configured de-identification
command runs (one clip fails it), a dataset is built by `fleetvault dataset build --wait` on
the server's build worker; its shards are read with Python's tarfile, the .npy headers
checked against NumPy's format rules, the manifest's hashes matched, a shard served with a
Range request; the clip that failed de-identification and the vehicle without consent to
model_training are in no dataset; a consent withdrawal marks the version (410) and a rebuild
makes a new version without the subject; splits are stable when clips are added."""
import ast
import hashlib
import io
import json
import os
import tarfile
import time

import fvtest as t
import test_clips as tc
import test_datasets as td

PREFIX = "5YJSIMDSET"
VINS = [f"{PREFIX}{i:07d}" for i in range(4)]  # VINS[3]: no consent to model_training


def consent(srv, dev, purpose, change):
    if "po" not in srv.tokens:
        srv.principal("po", "privacy-officer")
    st, b = srv.http(f"/api/v1/subjects/{dev}/consent?purpose={purpose}&change={change}"
                     f"&by=owner&ticket=DSR-9", token="po", method="POST", purpose=None)
    assert st == 200, (st, b)


def simulate(env, srv, n, vehicles, seed, extra=()):
    r = t.run("simulate", "--clips", str(n), "--vehicles", str(vehicles), "--clip-server",
              f"https://127.0.0.1:{srv.clip_port}", "--certs", env.certs.dir, "--campaign",
              tc.CAMPAIGN, "--id-prefix", PREFIX, "--frames", "2", "--frame-kb", "16",
              "--seed", str(seed), *extra, check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r.stdout.splitlines()


def wait_all_deid(srv, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = tc.clips(srv)["clips"]
        if all(c["deid"]["status"] != "pending" for c in rows):
            return rows
        time.sleep(0.1)
    raise AssertionError(tc.clips(srv))


def cli(srv, tok, *args, check=True):
    return t.run("dataset", *args, "--api", f"http://127.0.0.1:{srv.api_port}",
                 "--token-file", tok, check=check)


def check_npy(data):
    """NumPy format 1.0: magic, version, header length, a dict literal, 64-byte aligned."""
    assert data[:6] == b"\x93NUMPY" and data[6:8] == b"\x01\x00", data[:10]
    hl = data[8] | data[9] << 8
    assert (10 + hl) % 64 == 0 and data[10 + hl - 1:10 + hl] == b"\n"
    hdr = ast.literal_eval(data[10:10 + hl].decode("latin1"))
    assert set(hdr) == {"descr", "fortran_order", "shape"}, hdr
    assert hdr["descr"] == "<f8" and hdr["fortran_order"] is False
    rows, cols = hdr["shape"]
    assert cols == 2 and len(data) == 10 + hl + rows * cols * 8, (hdr, len(data))


def read_version(srv, name, ver):
    d = os.path.join(srv.data, "datasets", name, f"v{ver}")
    man = json.load(open(os.path.join(d, "manifest.json")))
    members = {}
    for sh in man["shards"]:
        body = open(os.path.join(d, sh["file"]), "rb").read()
        assert hashlib.sha256(body).hexdigest() == sh["sha256"], sh
        assert len(body) == sh["bytes"], sh
        with tarfile.open(fileobj=io.BytesIO(body)) as tf:
            for m in tf.getmembers():
                members[m.name] = tf.extractfile(m).read()
    return man, members


def start_fleet(env, vins, training):
    """A clip server, an ml-pipeline principal (its token file returned), vins connected and
    consenting to clips, those in training to model_training as well."""
    for v in vins:
        env.certs.device(v)
    srv = tc.start(env)
    tok = os.path.join(env.root, "trainer.token")
    with open(tok, "w") as f:
        f.write(srv.principal("trainer", "ml-pipeline"))
    now = int(time.time() * 1000) - 60000
    for v in vins:
        t.Device(env, v, now).send(srv, 0, 2)
        consent(srv, v, "clips", "give")
        if v in training:
            consent(srv, v, "model_training", "give")
    return srv, tok


def test_build_withdraw_rebuild_split_stability():
    with t.Env() as env:
        srv, tok = start_fleet(env, VINS, VINS[:3])
        # 4 vehicles, 8 clips, the first upload interrupted and resumed
        lines = simulate(env, srv, 8, 4, 1, ("--interrupt", "--chunk-kb", "16"))
        assert len(lines) == 8 and "resumed at" in lines[0], lines
        rows = wait_all_deid(srv)
        assert len(rows) == 8 and all(r["deid"]["status"] == "passed" for r in rows), rows
        # a clip that fails de-identification
        tc.set_mode(env, "fail")
        simulate(env, srv, 1, 1, 99)
        rows = wait_all_deid(srv)
        failed = [r["clip"] for r in rows if r["deid"]["status"] == "failed"]
        assert len(failed) == 1, rows

        # the build, over the CLI, on the server's worker
        r = cli(srv, tok, "build", "--name", "drives", "--query", f"campaign={tc.CAMPAIGN}",
                "--split", "train=0.5,val=0.5", "--wait")
        res = json.loads(r.stdout)
        assert res["state"] == "done" and res["result"]["version"] == 1, res
        assert res["result"]["samples"] == 6, res  # VINS[3]'s two and the failed one left out
        man, members = read_version(srv, "drives", 1)
        keys = {s["key"] for s in man["samples"]}
        assert failed[0] not in keys
        assert man["consent"]["purpose"] == "model_training", man["consent"]
        assert man["consent"]["left_out"]["deid_not_passed"] == 1, man["consent"]
        assert man["consent"]["left_out"]["no_consent"] == 2, man["consent"]
        text = json.dumps(man)
        assert all(v not in text for v in VINS)  # pseudonyms only
        for s in man["samples"]:
            k = s["key"]
            assert hashlib.sha256(members[k + ".mcap"]).hexdigest() == s["content_sha256"]
            meta = json.loads(members[k + ".json"])
            assert meta["vehicle"] == s["vehicle"] and meta["deid"]["status"] == "passed"
            check_npy(members[k + ".VehicleSpeed.npy"])
            check_npy(members[k + ".ax.npy"])
            assert s["lineage"]["upload"] == k and s["lineage"]["campaign"] == tc.CAMPAIGN
        split_of = {s["vehicle"]: s["split"] for s in man["samples"]}
        assert len(split_of) == 3
        # served with a Range request
        sh = man["shards"][0]
        st, h, b = td.get(srv, f"/api/v1/datasets/drives/v1/shards/{sh['file']}", "trainer",
                          headers={"Range": "bytes=0-511"})
        assert st == 206 and len(b) == 512 and h.get("Content-Range").endswith(
            f"/{sh['bytes']}"), (st, h)
        # a bad request: a clear error, nothing queued
        r = cli(srv, tok, "build", "--name", "drives", "--query", "vin=X", check=False)
        assert r.returncode != 0 and "unknown key 'vin'" in r.stderr, r.stderr
        r = cli(srv, tok, "build", "--name", "builds", check=False)
        assert r.returncode != 0 and "reserved" in r.stderr, r.stderr
        # purpose-bound and audited: a role that may not read for model_training is refused
        st, b = srv.http("/api/v1/datasets?purpose=model_training", token="ops", method="POST",
                         purpose=None)
        assert st == 403, (st, b)
        st, b = srv.http("/api/v1/datasets?purpose=clips", token="trainer", method="POST",
                         purpose=None)
        assert st == 403, (st, b)
        acts = {(e.get("principal"), e.get("result")) for e in td.audit(srv, "dataset.build")}
        assert ("trainer", "allow") in acts and ("ops", "deny") in acts, acts
        assert not os.path.exists(os.path.join(srv.data, "datasets", "drives", "v2"))

        # split stability: more clips, a rebuild: the same vehicles in the same splits
        tc.set_mode(env, "pass")
        simulate(env, srv, 4, 4, 7)
        wait_all_deid(srv)
        r = cli(srv, tok, "rebuild", "--name", "drives", "--wait")
        res = json.loads(r.stdout)
        assert res["result"]["version"] == 2 and res["result"]["samples"] == 9, res
        man2, _ = read_version(srv, "drives", 2)
        for s in man2["samples"]:
            assert split_of[s["vehicle"]] == s["split"], (s, split_of)

        # withdrawal: the versions holding the subject are marked (410); the rebuild v3
        # holds none of its clips
        before = {s["subject"] for s in man2["samples"]}
        consent(srv, VINS[0], "model_training", "withdraw")
        ds = json.loads(td.get(srv, "/api/v1/datasets", "trainer")[2])["datasets"][0]["versions"]
        marked = {v["version"] for v in ds if v["withdrawn_subjects"]}
        assert marked == {1, 2}, ds  # VINS[0] has clips in both
        for v in (1, 2):
            st, _, b = td.get(srv, f"/api/v1/datasets/drives/v{v}", "trainer")
            assert st == 410 and b"rebuild" in b, (st, b)
        r = cli(srv, tok, "rebuild", "--name", "drives", "--wait")
        assert json.loads(r.stdout)["result"]["version"] == 3, r.stdout
        man3, _ = read_version(srv, "drives", 3)
        after = {s["subject"] for s in man3["samples"]}
        assert len(after) == 2 and after < before, (before, after)
        gone = (before - after).pop()
        w = json.load(open(os.path.join(srv.data, "datasets", "drives", "v1.withdrawn")))
        assert [x["subject"] for x in w["withdrawn"]] == [gone], w
        st, _, _ = td.get(srv, "/api/v1/datasets/drives/v3", "trainer")
        assert st == 200

        # erasure of VINS[1]: the shards of every version holding it are deleted, the
        # manifests stay with a tombstone note, serving answers 410
        st, b = srv.http(f"/api/v1/subjects/{VINS[1]}/erase?ticket=GDPR-9", token="po",
                         method="POST", purpose=None)
        assert st == 200, (st, b)
        d3 = os.path.join(srv.data, "datasets", "drives", "v3")
        assert not [f for f in os.listdir(d3) if f.endswith(".tar")], os.listdir(d3)
        assert os.path.exists(os.path.join(d3, "manifest.json"))
        w = json.load(open(os.path.join(srv.data, "datasets", "drives", "v3.withdrawn")))
        assert w["shards_deleted_ms"] > 0 and w["withdrawn"][0]["erased"] is True, w
        st, _, _ = td.get(srv, "/api/v1/datasets/drives/v3", "trainer")
        assert st == 410
        r = cli(srv, tok, "list")
        assert json.loads(r.stdout)["datasets"][0]["name"] == "drives"
        srv.stop()


if __name__ == "__main__":
    t.main([test_build_withdraw_rebuild_split_stability])
