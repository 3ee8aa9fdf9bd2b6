#!/usr/bin/env bash
# bench/data: MCAP write and read throughput on one core, fleetvault's C writer and reader
# (bench/data/mcap_bench.c) next to the official TypeScript library (bench/data/mcap_bench.mjs)
# on the same clip, in the same run, pinned to the same core.
#
#   bench/data/run.sh                 # a 60 s clip (about 30 MB of messages), best of 3
#   SECONDS_OF_CLIP=120 ROUNDS=5 bench/data/run.sh
#   knobs: BUILD=build (the build folder holding mcap_bench), CPU=0
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) BIN=$BUILD/mcap_bench ;; *) BIN=$root/$BUILD/mcap_bench ;; esac
CLIP=${SECONDS_OF_CLIP:-60}
ROUNDS=${ROUNDS:-3}
CPU=${CPU:-0}
[ -x "$BIN" ] || { echo "bench/data: no $BIN: build it first (make build)" >&2; exit 1; }
[ -d "$root/tests/js/node_modules/@mcap/core" ] ||
    { echo "bench/data: tests/js/node_modules missing: run scripts/deps.sh (npm ci)" >&2; exit 1; }
echo "bench/data: a ${CLIP} s clip, best of $ROUNDS, core $CPU (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
c=$(taskset -c "$CPU" "$BIN" "$CLIP" "$ROUNDS")
ts=$(taskset -c "$CPU" node "$here/mcap_bench.mjs" "$CLIP" "$ROUNDS")
echo "$c"
echo "$ts"
python3 - "$c" "$ts" <<'PY'
import json, sys
c, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print()
print(f"| MCAP, {c['messages']:,} messages, {c['payload_bytes']/1e6:.1f} MB, zstd 3, one core | fleetvault (C) | @mcap/core (TS) | ratio |")
print("|---|---|---|---|")
print(f"| write MB/s | {c['write_mb_s']:.0f} | {t['write_mb_s']:.0f} | {c['write_mb_s']/t['write_mb_s']:.1f}x |")
print(f"| read MB/s (all messages, indexed) | {c['read_mb_s']:.0f} | {t['read_mb_s']:.0f} | {c['read_mb_s']/t['read_mb_s']:.1f}x |")
print(f"| file bytes | {c['file_bytes']:,} | {t['file_bytes']:,} | |")
PY
