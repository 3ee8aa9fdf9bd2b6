#!/usr/bin/env bash
# make demo: the main job on the embedded default. Makes dev certificates (./certs) if
# missing, starts `fleetvault serve` on ./data, streams a simulated fleet to it over mutual
# TLS, next to simulated home batteries (energy sites) that first back-fill two weeks of
# history, and shows a live one-line summary until Ctrl-C. The server reads
# scripts/demo-config.json: the sites' history arrives faster than the default rate limit,
# and a "demo" VPP program allows an event at any hour (docs/operations.md).
#   DEMO_VEHICLES (100), DEMO_SITES (20), DEMO_SITE_DAYS (14), DEMO_HZ (1), DEMO_PORT (4443),
#   DEMO_API_PORT (8080) override.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/fleetvault
VEHICLES=${DEMO_VEHICLES:-100}
SITES=${DEMO_SITES:-20}
SITE_DAYS=${DEMO_SITE_DAYS:-14}
HZ=${DEMO_HZ:-1}
PORT=${DEMO_PORT:-4443}
API=${DEMO_API_PORT:-8080}
LOG=fleetvault-demo.log

[ -f certs/ca.crt ] || $BIN certs init certs
# The master key that wraps every device's data key: outside the data directory.
[ -f keys/master.key ] || { mkdir -p -m 700 keys && $BIN keys init keys/master.key; }
: > "$LOG"
$BIN serve --config scripts/demo-config.json --data data --certs certs --key-file keys/master.key --listen 127.0.0.1:$PORT --api 127.0.0.1:$API >>"$LOG" 2>&1 &
SERVER=$!
SIM=
cleanup() {
    trap - INT TERM EXIT
    echo
    [ -n "$SIM" ] && kill -INT "$SIM" 2>/dev/null && wait "$SIM" 2>/dev/null || true
    kill -TERM "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
    echo "stopped. Data is in ./data (inspect it: $BIN inspect data --key-file keys/master.key); server log: $LOG"
}
trap cleanup INT TERM EXIT

for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$API/status" >/dev/null 2>&1 && break
    kill -0 "$SERVER" 2>/dev/null || { echo "server failed to start:"; cat "$LOG"; exit 1; }
    sleep 0.1
done
# A support technician to read with: reads name a purpose and, for support, a ticket. A
# principal that reads personal data works once a second principal approves it: the
# installation's first privacy officer (active at once) approves the technician.
TOKEN_FILE=keys/demo-support.token
OFFICER_FILE=keys/demo-officer.token
if [ ! -s "$TOKEN_FILE" ]; then
    if [ ! -s "$OFFICER_FILE" ]; then
        $BIN principal add demo-officer --role privacy-officer --data data >"$OFFICER_FILE" 2>/dev/null || true
        chmod 600 "$OFFICER_FILE"
    fi
    $BIN principal add demo-support --role support --data data >"$TOKEN_FILE" 2>/dev/null || true
    chmod 600 "$TOKEN_FILE"
    curl -sf -X POST -H "Authorization: Bearer $(cat "$OFFICER_FILE")" \
        "http://127.0.0.1:$API/api/v1/principals/demo-support/approve" >/dev/null || true
fi
echo "fleetvault serving devices on wss://127.0.0.1:$PORT, API on http://127.0.0.1:$API"
echo "try: curl -H \"Authorization: Bearer \$(cat $TOKEN_FILE)\" \\"
echo "       'http://127.0.0.1:$API/api/v1/query?device=5YJSIM00000000001&signals=Soc,VehicleSpeed&step=1m&agg=avg&purpose=service&ticket=DEMO-1'"
echo "     curl -H \"Authorization: Bearer \$(cat $TOKEN_FILE)\" \\"
echo "       'http://127.0.0.1:$API/api/v1/query?device=SITESIM0000000000&signals=SiteBatteryPower,SiteSolarPower,SiteLoadPower&step=1h&agg=avg&purpose=service&ticket=DEMO-1'"
echo "     $BIN audit query --data data --principal demo-support   # every access, logged"
echo "web console: http://127.0.0.1:$API/ui/ - sign in with the token in $TOKEN_FILE, purpose"
echo "     service, ticket DEMO-1 (the officer's, $OFFICER_FILE, for the privacy page)"
echo "streaming $VEHICLES simulated vehicles and $SITES home batteries ($SITE_DAYS days of history first) at $HZ Hz; Ctrl-C to stop"
SITE_ARGS=()
[ "$SITES" -gt 0 ] && SITE_ARGS=(--sites "$SITES" --days "$SITE_DAYS")

$BIN simulate --server "wss://127.0.0.1:$PORT" --certs certs --vehicles "$VEHICLES" \
    "${SITE_ARGS[@]}" --seconds 86400 --hz "$HZ" >>"$LOG" 2>&1 &
SIM=$!

metric() { awk -v m="$1" '$1 == m {print $2}' <<<"$2"; }
prev=0
prev_t=$(date +%s.%N)
while kill -0 "$SERVER" 2>/dev/null; do
    sleep 1
    m=$(curl -sf "http://127.0.0.1:$API/metrics" || true)
    [ -n "$m" ] || continue
    d=$(metric fleetvault_datums_total "$m")
    now=$(date +%s.%N)
    rate=$(awk -v a="$d" -v b="$prev" -v t1="$now" -v t0="$prev_t" 'BEGIN{printf "%.0f", (a-b)/(t1-t0)}')
    prev=$d
    prev_t=$now
    printf '\rconnected %5s | devices %5s | datums/s %7s | datums %10s | acks %9s | errors %s   ' \
        "$(metric fleetvault_connections "$m")" "$(metric fleetvault_devices "$m")" "$rate" "$d" \
        "$(metric fleetvault_acks_total "$m")" "$(metric fleetvault_error_replies_total "$m")"
done
echo "server exited; see $LOG"
