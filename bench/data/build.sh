#!/usr/bin/env bash
# bench/data/build.sh: dataset build throughput (issue 12, bench/data: "dataset build
# throughput"): samples/s and MB/s of `fleetvault dataset build` on the server's build worker
# (data/ds_builds.h) over clips in the encrypted clip store.
#
#   bench/data/build.sh                      # defaults below; a markdown table on stdout
#   knobs: CLIPS=200 VEHICLES=20 FRAME_KB=96 FRAMES=5 ROUNDS=3 BUILD=build
#
# Setup (not timed): a server with the clip endpoint and a de-identification command that
# passes every clip unchanged, VEHICLES simulated vehicles consenting to clips and
# model_training, CLIPS synthetic clips (FRAMES camera frames of FRAME_KB each, IMU at 100 Hz,
# CAN at 20 Hz) uploaded over the real mutual-TLS path. Timed: each round one build of every
# clip (train=0.8,val=0.1,test=0.1), from the worker's start of the build to its end as the
# build's status reports it (listing with consent checks, decrypting each clip, reading its
# signals with the MCAP reader, .npy encoding, tar writing, SHA-256, fsync, manifest); MB/s
# is the bytes of the shards written. The harness is the e2e helper module (tests/e2e).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) BIN=$BUILD/fleetvault ;; *) BIN=$root/$BUILD/fleetvault ;; esac
[ -x "$BIN" ] || { echo "bench/data/build: no $BIN: build it first" >&2; exit 1; }
export FV_BIN=$BIN PYTHONPATH=$root/tests/e2e
export CLIPS=${CLIPS:-200} VEHICLES=${VEHICLES:-20} FRAME_KB=${FRAME_KB:-96} FRAMES=${FRAMES:-5}
export ROUNDS=${ROUNDS:-3}
python3 - <<'PY'
import json, os, time
import fvtest as t
import test_clips as tc
import test_dataset_build as tb

n, nv = int(os.environ["CLIPS"]), int(os.environ["VEHICLES"])
rounds = int(os.environ["ROUNDS"])
with t.Env() as env:
    vins = [f"{tb.PREFIX}{i:07d}" for i in range(nv)]
    srv, tok = tb.start_fleet(env, vins, vins)
    r = t.run("simulate", "--clips", str(n), "--vehicles", str(nv), "--clip-server",
              f"https://127.0.0.1:{srv.clip_port}", "--certs", env.certs.dir, "--campaign",
              tc.CAMPAIGN, "--id-prefix", tb.PREFIX, "--frames", os.environ["FRAMES"],
              "--frame-kb", os.environ["FRAME_KB"])
    rows = tb.wait_all_deid(srv, timeout=600)
    passed = sum(1 for x in rows if x["deid"]["status"] == "passed")
    clip_mb = sum(x["size"] for x in rows) / 1e6
    out = []
    for i in range(rounds):
        r = tb.cli(srv, tok, "build", "--name", "bench", "--wait")
        res = json.loads(r.stdout)
        assert res["state"] == "done", res
        secs = (res["result"]["finished_ms"] - res["submitted_ms"]) / 1000
        out.append((i + 1, res["result"]["samples"], res["result"]["bytes"],
                    res["result"]["shards"], secs))
    srv.stop()
print(f"## bench/data/build.sh {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())} on "
      f"{os.cpu_count()} cores, {os.uname().release}")
print()
print(f"{passed} de-identified clips ({clip_mb:.1f} MB stored) of {nv} vehicles, each "
      f"{os.environ['FRAMES']} frames of {os.environ['FRAME_KB']} KB plus IMU and CAN "
      "channels; one build of all of them per round on the build worker (consent checks, "
      "decrypt, MCAP signals to .npy, tar, SHA-256, fsync, manifest).")
print()
print("| round | samples | shards | MB written | seconds | samples/s | MB/s |")
print("|---|---|---|---|---|---|---|")
for i, s, b, sh, secs in out:
    print(f"| {i} | {s} | {sh} | {b / 1e6:.1f} | {secs:.2f} | {s / secs:,.0f} | "
          f"{b / 1e6 / secs:,.0f} |")
PY
