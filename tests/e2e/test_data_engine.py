#!/usr/bin/env python3
"""The acceptance chain of issue 12 (docs/data-engine.md "Testing the chain"), in one run over
the real paths: a data engineer creates a campaign with the CLI; simulated vehicles (`fleetvault
simulate` streaming, with --clip-server) receive it over the downlink, ack it, trigger and upload
their clips through the clip endpoint (the first upload cut halfway through its second chunk
and resumed: --clip-interrupt 1); the configured de-identification command runs on each; a
labeler labels one clip through the work queue; `fleetvault dataset build --wait` builds a
dataset from that campaign's clips, whose labeled sample carries its labels and the others
`[]`; a shard is fetched with Range requests and its bytes match the manifest's SHA-256; a
subject withdraws consent to model_training: the version answers 410 and `dataset rebuild`
makes a new version without that subject."""
import hashlib
import json
import os
import time

import fvtest as t
import test_campaigns as tca
import test_clips as tc
import test_dataset_build as tdb
import test_datasets as td

PREFIX = "5YJCHAIN"
VINS = [f"{PREFIX}{i:09d}" for i in range(3)]


def principal_token(env, srv, name, role):
    path = os.path.join(env.root, name + ".token")
    with open(path, "w") as f:
        f.write(srv.principal(name, role))
    return path


def fetch_ranges(srv, path, size, piece):
    """The file at path, fetched in Range requests of piece bytes (206 each)."""
    body = b""
    for start in range(0, size, piece):
        end = min(start + piece, size) - 1
        st, h, b = td.get(srv, path, "trainer", headers={"Range": f"bytes={start}-{end}"})
        assert st == 206 and len(b) == end - start + 1, (st, h, len(b))
        assert h.get("Content-Range") == f"bytes {start}-{end}/{size}", h
        body += b
    return body


def test_campaign_to_dataset_chain():
    with t.Env() as env:
        for v in VINS:
            env.certs.device(v)
        srv = tc.start(env)  # the clip endpoint, the de-identification command ("pass")
        api = f"http://127.0.0.1:{srv.api_port}"
        dee = principal_token(env, srv, "dee", "data-engineer")
        lab = principal_token(env, srv, "annika", "labeler")
        trainer = principal_token(env, srv, "trainer", "ml-pipeline")
        sim, log = tca.start_sim(env, srv, PREFIX, len(VINS), 40, "--clip-server",
                                 f"https://127.0.0.1:{srv.clip_port}", "--clip-interrupt", "1")
        try:
            tca.wait("the vehicles' data", lambda: all(
                d in {v["device"] for v in srv.json("/api/v1/fleet?signal=Odometer")[
                    "vehicles"]} for d in VINS))
            for v in VINS:  # clips for the campaign, model_training for labels and datasets
                tdb.consent(srv, v, "clips", "give")
                tdb.consent(srv, v, "model_training", "give")

            # 1. the campaign, created with the CLI (the API underneath)
            r = t.run("campaign", "create", "--api", api, "--token-file", dee, "--name",
                      "chain", "--trigger", "VehicleSpeed >= 0", "--channels",
                      "camera_front,imu,VehicleSpeed", "--pre", "2", "--post", "1",
                      "--clips-per-day", "1", "--total-clips", "10",
                      "--total-bytes", str(1 << 30))
            c = json.loads(r.stdout)
            assert c["targeted"] == len(VINS) and c["state"] == "active", c
            cid = c["id"]

            def status():
                return json.loads(t.run("campaign", "status", cid, "--api", api,
                                        "--token-file", dee).stdout)

            # 2. delivered over the downlink, triggered, each hit's clip uploaded
            s = tca.wait("delivery, hits and clips", lambda: (
                lambda s: s if s["delivered"] == 3 and s["hits"] == 3 and
                s["clips_uploaded"] == 3 else None)(status()), timeout=40)
            assert s["hits_refused"] == 0 and s["bytes"] > 3 * 5 * 96 * 1024, s
        finally:
            stats = tca.stop_sim(sim, log)
        assert stats["campaign_hits"] == 3 and stats["clips_uploaded"] == 3, stats
        assert stats["clips_resumed"] == 1 and stats["clip_failures"] == 0, stats

        # 3. de-identification ran on every clip (the configured command's summary)
        rows = tdb.wait_all_deid(srv)
        assert len(rows) == 3 and all(r["campaign"] == cid for r in rows), rows
        for row in rows:
            assert row["deid"]["status"] == "passed", row
            assert "blurred 0 faces" in row["deid"]["summary"], row

        # 4. one clip labeled through the queue
        st, b = srv.http("/api/v1/labeling/next?purpose=model_training", token="annika",
                         method="POST", purpose=None)
        assert st == 200, (st, b)
        claimed = json.loads(b)
        assert claimed["campaign"] == cid, claimed
        r = t.run("label", "submit", claimed["clip"], "--labels",
                  '{"pedestrian": true, "boxes": 2}', "--tags", "night,rain",
                  "--token-file", lab, "--api", api)
        assert json.loads(r.stdout)["state"] == "labeled", r.stdout

        # 5. the dataset of the campaign's clips, on the server's build worker
        r = tdb.cli(srv, trainer, "build", "--name", "chain", "--query", f"campaign={cid}",
                    "--split", "train=0.5,val=0.5", "--wait")
        res = json.loads(r.stdout)
        assert res["state"] == "done" and res["result"]["version"] == 1, res
        assert res["result"]["samples"] == 3, res
        man, members = tdb.read_version(srv, "chain", 1)  # shard hashes checked
        assert {s["key"] for s in man["samples"]} == {row["clip"] for row in rows}, man
        text = json.dumps(man)
        assert all(v not in text for v in VINS) and "annika" not in text, text
        for s in man["samples"]:
            raw = members[s["key"] + ".json"]
            assert b"annika" not in raw and not [v for v in VINS if v.encode() in raw], raw
            meta = json.loads(raw)
            assert meta["campaign"] == cid and meta["deid"]["status"] == "passed", meta
            tdb.check_npy(members[s["key"] + ".VehicleSpeed.npy"])
            if s["key"] == claimed["clip"]:  # the labels, the labeler by a pseudonym
                assert s["vehicle"] == claimed["vehicle"], (s, claimed)  # one pseudonym
                assert meta["labels"] == [{"name": "boxes", "value": 2},
                                          {"name": "pedestrian", "value": True}], meta
                assert meta["tags"] == ["campaign", "night", "rain"], meta
                assert s["tags"] == "campaign,night,rain", s
                lab_id = meta["labeling"]["labeler"]
                assert len(lab_id) == 32, meta
                assert meta["labeling"]["labeled_ms"] > 0, meta
            else:
                assert meta["labels"] == [] and meta["labeling"] is None, meta
                assert meta["tags"] == ["campaign"], meta

        # 6. a shard served with Range requests: the bytes are those the manifest hashed
        sh = man["shards"][0]
        path = f"/api/v1/datasets/chain/v1/shards/{sh['file']}"
        body = fetch_ranges(srv, path, sh["bytes"], 64 * 1024)
        assert hashlib.sha256(body).hexdigest() == sh["sha256"], sh

        # 7. one subject withdraws consent to model_training: v1 answers 410, the rebuild v2
        # holds the other two
        before = {s["subject"] for s in man["samples"]}
        assert len(before) == 3, man["samples"]
        tdb.consent(srv, VINS[0], "model_training", "withdraw")
        st, _, b = td.get(srv, "/api/v1/datasets/chain/v1", "trainer")
        assert st == 410 and b"rebuild" in b, (st, b)
        st, _, _ = td.get(srv, path, "trainer", headers={"Range": "bytes=0-99"})
        assert st == 410, st
        r = tdb.cli(srv, trainer, "rebuild", "--name", "chain", "--wait")
        res = json.loads(r.stdout)
        assert res["result"]["version"] == 2 and res["result"]["samples"] == 2, res
        man2, _ = tdb.read_version(srv, "chain", 2)
        after = {s["subject"] for s in man2["samples"]}
        assert len(after) == 2 and after < before, (before, after)
        w = json.load(open(os.path.join(srv.data, "datasets", "chain", "v1.withdrawn")))
        assert [x["subject"] for x in w["withdrawn"]] == list(before - after), w
        assert td.get(srv, "/api/v1/datasets/chain/v2", "trainer")[0] == 200
        srv.stop()


if __name__ == "__main__":
    t.main([test_campaign_to_dataset_chain])
