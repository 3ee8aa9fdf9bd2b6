#!/usr/bin/env bash
# tests/layers.sh - the include graph of src/ obeys the layers (docs/architecture.md): a
# module includes only the modules listed for it here, so lower layers never include
# higher ones and there are no circles. Fails naming the file and the include.
set -euo pipefail
cd "$(dirname "$0")/../src"
declare -A allowed=(
    [util]=""
    [os]="util"
    [wire]="util"
    [crypto]="util os"
    [wal]="util os crypto wire"
    [store]="util os crypto wire wal"
    [energy]="util wire"
    [config]="util wire store energy"
    [privacy]="util os crypto wire wal store config"
    [gateway]="util os crypto wire wal store config privacy"
    [data]="util os crypto wire wal store config privacy"
    [openadr]="util os crypto config energy"
    [api]="util os crypto wire wal store config privacy gateway energy openadr data"
    [mqtt]="util os crypto wire wal store config privacy gateway"
    [cluster]="util os crypto wire wal store config privacy gateway"
    [server]="util os crypto wire wal store config privacy gateway api energy openadr data mqtt cluster"
    [sim]="util os crypto wire data"
    [cli]="util os crypto wire wal store config privacy gateway api server sim energy openadr data cluster"
)
bad=0
for dir in */; do
    m=${dir%/}
    if [[ -z ${allowed[$m]+x} ]]; then
        echo "layers: src/$m is not in tests/layers.sh: give it its place in the layers"
        bad=1
        continue
    fi
    while IFS=: read -r file inc; do
        dep=${inc#*\"}
        dep=${dep%%/*}
        [[ $dep == "$m" ]] && continue
        if [[ " ${allowed[$m]} " != *" $dep "* ]]; then
            echo "layers: src/$file includes $dep/ (src/$m may include: ${allowed[$m]:-nothing})"
            bad=1
        fi
    done < <(grep -Ho '#include "[a-z_]*/[a-z_]*\.h"' "$m"/*.c "$m"/*.h 2>/dev/null || true)
done
[[ $bad == 0 ]] && echo "layers: 1 passed, 0 failed" || { echo "layers: 0 passed, 1 failed"; exit 1; }
