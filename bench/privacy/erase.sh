#!/usr/bin/env bash
# bench/privacy/erase.sh: the cost of erasing one data subject (GDPR Art. 17) as its data
# grows. For each size, a fresh server receives one vehicle's records (20 signals each,
# every record acked after fsync) until that many megabytes of payload were sent, then a
# privacy officer erases the vehicle through the API; the script reports the size of the
# data directory and the erase request's time (curl, whole request), and checks that the
# vehicle then answers 410.
#   bench/privacy/erase.sh                 # SIZES_MB="100 1000"
#   SIZES_MB="10 100" bench/privacy/erase.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BUILD:-build}/fleetvault
SIZES_MB=${SIZES_MB:-"100 1000"}
[ -x "$BIN" ] || { echo "no $BIN: make build first" >&2; exit 1; }
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
$BIN certs init "$tmp/certs" >/dev/null
$BIN keys init "$tmp/master.key" >/dev/null
VIN=5YJSIM00000000000
port=$((20000 + RANDOM % 20000))
api=$((port + 1))
echo "| payload sent | records | data dir | erase request (whole HTTP request) | then |"
echo "|---|---|---|---|---|"
for mb in $SIZES_MB; do
    rm -rf "$tmp/data"
    $BIN serve --data "$tmp/data" --certs "$tmp/certs" --key-file "$tmp/master.key" \
        --listen 127.0.0.1:$port --api 127.0.0.1:$api --no-rate-limit --log-level warn \
        2>>"$tmp/server.log" &
    pid=$!
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$api/status" >/dev/null && break; sleep 0.05; done
    # One vehicle; a record's payload is about 330 bytes, so records = MB * 1e6 / 330.
    records=$((mb * 1000000 / 330))
    $BIN simulate --server "wss://127.0.0.1:$port" --certs "$tmp/certs" --vehicles 1 \
        --hz 1 --seconds "$records" --virtual-time 1795000000000 --max-inflight 256 \
        --quiet --drain 600 >"$tmp/sim.json" 2>>"$tmp/sim.log"
    $BIN principal add officer --role privacy-officer --data "$tmp/data" >"$tmp/officer.token"
    size=$(du -sb "$tmp/data" | cut -f1)
    t=$(curl -s -o "$tmp/erase.out" -w '%{time_total}' -X POST \
        -H "Authorization: Bearer $(cat "$tmp/officer.token")" \
        "http://127.0.0.1:$api/api/v1/subjects/$VIN/erase?ticket=BENCH")
    $BIN principal add ops --role support --data "$tmp/data" >"$tmp/ops.token"
    after=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$tmp/ops.token")" \
        "http://127.0.0.1:$api/api/v1/query?device=$VIN&signals=Soc&purpose=service&ticket=B")
    acked=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['acked'])" "$tmp/sim.json")
    printf '| %s MB | %s | %s MB | %.1f ms | %s |\n' "$mb" "$acked" "$((size / 1000000))" \
        "$(awk -v s="$t" 'BEGIN {print s * 1000}')" "$after"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    pid=
done
