#!/usr/bin/env bash
# bench/crash: the kill -9 crash test, longer than the test suite runs it.
#   bench/crash/run.sh [ROUNDS (100)] [VEHICLES (40)]
# Every record the simulator saw acked must be on disk after ROUNDS kills and restarts,
# and none stored twice; prints the simulator's totals and exits non-zero otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
FV_CRASH_ROUNDS=${1:-100} FV_CRASH_VEHICLES=${2:-40} FV_BIN=$BUILD/fleetvault \
    PYTHONPATH=tests/e2e python3 tests/e2e/test_crash.py
