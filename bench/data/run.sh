#!/usr/bin/env bash
# bench/data: MCAP write and read throughput on one core, fleetvault's C writer and reader
# (bench/data/mcap_bench.c) next to the official TypeScript library (bench/data/mcap_bench.mjs)
# on the same clip, in the same run, pinned to the same core.
#
#   bench/data/run.sh                 # a 60 s clip (about 30 MB of messages), best of 3
#   SECONDS_OF_CLIP=120 ROUNDS=5 bench/data/run.sh
#   knobs: BUILD=build (the build folder holding mcap_bench), CPU=0, TURNS=3
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
# C and TypeScript alternate, TURNS times each, so that a busy machine slows both alike; the
# best turn of each is kept.
TURNS=${TURNS:-3}
c="" ts=""
for _ in $(seq "$TURNS"); do
    c+=$(taskset -c "$CPU" "$BIN" "$CLIP" "$ROUNDS")$'\n'
    ts+=$(taskset -c "$CPU" node "$here/mcap_bench.mjs" "$CLIP" "$ROUNDS")$'\n'
done
printf '%s%s' "$c" "$ts"
python3 - "$c" "$ts" <<'PY'
import json, sys
best = lambda text, k: max((json.loads(l) for l in text.split("\n") if l), key=lambda r: r[k])
c, t = sys.argv[1], sys.argv[2]
cw, cr, tw, tr = best(c, "write_mb_s"), best(c, "read_mb_s"), best(t, "write_mb_s"), best(t, "read_mb_s")
print()
print(f"| MCAP, {cw['messages']:,} messages, {cw['payload_bytes']/1e6:.1f} MB, zstd 3, one core | fleetvault (C) | @mcap/core (TS) | ratio |")
print("|---|---|---|---|")
print(f"| write MB/s | {cw['write_mb_s']:.0f} | {tw['write_mb_s']:.0f} | {cw['write_mb_s']/tw['write_mb_s']:.1f}x |")
print(f"| read MB/s (all messages, indexed) | {cr['read_mb_s']:.0f} | {tr['read_mb_s']:.0f} | {cr['read_mb_s']/tr['read_mb_s']:.1f}x |")
print(f"| file bytes | {cw['file_bytes']:,} | {tw['file_bytes']:,} | |")
PY
