#!/usr/bin/env bash
# bench/data/serve.sh: a dataset shard served over GET /api/v1/datasets/N/V/shards/F (as a
# training job fetches it: purpose model_training, audited) against dd reading the same file,
# in one run (issue 12, item 7: "at close to disk bandwidth").
#
#   bench/data/serve.sh                      # defaults below; a markdown table on stdout
#   knobs: SIZE_MB=1024 (shard size) ROUNDS=3 BUILD=build
#
# The shard is a plain file of random bytes laid out as data/dataset.h lays out a version
# (DATA/datasets/bench/v1/bench-train-000000.tar plus its manifest); both readers run with
# the file in the page cache (a first dd warms it): the server's HTTP path against the disk's
# bandwidth (dd with O_DIRECT, which bypasses the cache) and against the cheapest read of
# the same bytes (dd from the cache). Each round: dd iflag=direct, dd (bs=1M, to /dev/null),
# then curl of the whole shard to /dev/null, then curl of a 64 MiB Range from its middle. Throughput is bytes / wall time; server CPU-s from /proc/PID/stat.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) BIN=$BUILD/fleetvault ;; *) BIN=$root/$BUILD/fleetvault ;; esac
SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-3}

log() { echo "bench/data/serve: $*" >&2; }
die() { log "$*"; exit 1; }
[ -x "$BIN" ] || die "no $BIN: build it first (make build, or BUILD=<folder>)"
command -v curl >/dev/null || die "curl is needed"

tmp=$(mktemp -d)
srv=
cleanup() {
    [ -n "$srv" ] && { kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null || true; }
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

data=$tmp/data
ver=$data/datasets/bench/v1
shard=bench-train-000000.tar
mkdir -p "$ver"
log "writing a ${SIZE_MB} MiB shard"
head -c $((SIZE_MB << 20)) /dev/urandom >"$ver/$shard"
size=$(stat -c %s "$ver/$shard")
python3 - "$ver" "$shard" "$size" <<'PY'
import json, sys
ver, shard, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
json.dump({"format": "fleetvault-dataset/1", "name": "bench", "version": 1,
           "created_ms": 0, "query": "", "counts": {"samples": 1, "per_split": {"train": 1}},
           "shards": [{"file": shard, "split": "train", "samples": 1, "bytes": size,
                       "sha256": ""}],
           "samples": [{"key": "s0", "split": "train", "shard": shard, "vehicle": "v0",
                        "subject": "s0"}]}, open(ver + "/manifest.json", "w"))
PY

$BIN certs init "$tmp/certs" >/dev/null
$BIN keys init "$tmp/master.key" >/dev/null
port=$(free_port)
api=$(free_port)
$BIN serve --data "$data" --certs "$tmp/certs" --key-file "$tmp/master.key" \
    --listen "127.0.0.1:$port" --api "127.0.0.1:$api" --log-level warn 2>"$tmp/server.log" &
srv=$!
for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$api/status" >/dev/null && break
    sleep 0.05
done
$BIN principal add officer --role privacy-officer --data "$data" >"$tmp/officer.token" 2>/dev/null
$BIN principal add trainer --role ml-pipeline --data "$data" >"$tmp/trainer.token" 2>/dev/null
curl -sf -X POST -H "Authorization: Bearer $(cat "$tmp/officer.token")" \
    "http://127.0.0.1:$api/api/v1/principals/trainer/approve" >/dev/null ||
    die "cannot approve the trainer principal"
url="http://127.0.0.1:$api/api/v1/datasets/bench/v1/shards/$shard?purpose=model_training"
auth="Authorization: Bearer $(cat "$tmp/trainer.token")"

dd if="$ver/$shard" of=/dev/null bs=1M status=none # warm the page cache
rows=()
for r in $(seq "$ROUNDS"); do
    d0=$(now)
    dd if="$ver/$shard" of=/dev/null bs=1M iflag=direct status=none
    t0=$(now)
    dd if="$ver/$shard" of=/dev/null bs=1M status=none
    t1=$(now)
    c0=$(ticks "$srv")
    got=$(curl -sf -H "$auth" -o /dev/null -w '%{size_download}' "$url")
    t2=$(now)
    c1=$(ticks "$srv")
    [ "$got" = "$size" ] || die "the server sent $got bytes of $size"
    mid=$((size / 2))
    rsize=$((64 << 20))
    [ $rsize -gt $size ] && rsize=$size && mid=0
    got=$(curl -sf -H "$auth" -H "Range: bytes=$mid-$((mid + rsize - 1))" -o /dev/null \
        -w '%{http_code} %{size_download}' "$url")
    t3=$(now)
    [ "$got" = "206 $rsize" ] || die "the range answer was '$got'"
    rows+=("$r $t0 $t1 $t2 $t3 $c0 $c1 $d0")
    log "round $r done"
done

echo "## bench/data/serve.sh $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(uname -r)"
echo
echo "A ${SIZE_MB} MiB shard: dd to /dev/null (bs=1M) from the disk (O_DIRECT) and from the"
echo "page cache, against the server's HTTP answer to a training job (curl to /dev/null over"
echo "127.0.0.1, purpose model_training, audited; file in the page cache), same file, same run."
echo
echo "| round | disk (dd iflag=direct) MB/s | page cache (dd) MB/s | served MB/s | served / disk | served / page cache | server CPU-s per GB | 64 MiB range MB/s |"
echo "|---|---|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
    python3 - $row "$size" "$hz" <<'PY'
import sys
r, t0, t1, t2, t3, c0, c1, d0, size, hz = sys.argv[1:11]
d0, t0, t1, t2, t3 = map(float, (d0, t0, t1, t2, t3))
size = int(size)
dd = size / (t1 - t0) / 1e6
disk = size / (t0 - d0) / 1e6
served = size / (t2 - t1) / 1e6
rng = min(64 << 20, size) / (t3 - t2) / 1e6
cpu = (int(c1) - int(c0)) / int(hz) / (size / 1e9)
print(f"| {r} | {disk:,.0f} | {dd:,.0f} | {served:,.0f} | {served / disk:.2f} | {served / dd:.2f} | "
      f"{cpu:.2f} | {rng:,.0f} |")
PY
done
