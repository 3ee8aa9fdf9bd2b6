#!/usr/bin/env bash
# tests/js/run_interop.sh FLEETVAULT - the MCAP interoperability test (interop.mjs) against the
# official TypeScript library, as ctest runs it. Skips (exit 77, shown as skipped) only when
# node is not installed; fails when the npm packages are missing (scripts/deps.sh runs
# `npm ci` here), so CI never passes without having run it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: run_interop.sh FLEETVAULT_BINARY}
if ! command -v node >/dev/null 2>&1; then
    echo "SKIP: node is not installed: the MCAP interop test with @mcap/core did not run"
    exit 77
fi
for m in @mcap/core @foxglove/wasm-zstd; do
    if [[ ! -f $here/node_modules/$m/package.json ]]; then
        echo "FAIL: tests/js/node_modules/$m is missing: run 'npm ci' in tests/js (make deps does)"
        exit 1
    fi
done
exec node "$here/interop.mjs" "$bin"
