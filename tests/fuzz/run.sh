#!/usr/bin/env bash
# Replays a fuzz target's committed corpus, then fuzzes it for SECONDS (default 20), in a
# scratch copy so the committed corpus is never modified. Crashes are kept in the build dir.
#   tests/fuzz/run.sh BUILD/fuzz_envelope tests/fuzz/corpus/fuzz_envelope [SECONDS]
set -euo pipefail
bin=$1 corpus=$2 secs=${3:-${FV_FUZZ_SECONDS:-20}}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$corpus"/. "$work"/
cd "$(dirname "$bin")"
"$bin" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 "$work"
