#!/usr/bin/env bash
# bench/ingest: ingest throughput, CPU cost and ack latency with durable acks, and server
# memory per connected vehicle, side by side with a bare mutual-TLS server (tls_floor.c,
# the least any server can hold per connection) in the same run.
#   bench/ingest/run.sh                      # defaults below; results as a markdown table
#   TP_LOADS="200x10 500x20" TP_SECONDS=20 MEM_COUNTS="1000 10000" bench/ingest/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BIN=$BUILD/fleetvault
FLOOR=$BUILD/tls_floor
TP_LOADS=${TP_LOADS:-"200x10 500x20"}   # vehicles x Hz
TP_SECONDS=${TP_SECONDS:-20}
MEM_COUNTS=${MEM_COUNTS:-"1000 10000"}
ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
$BIN certs init "$tmp/certs" >/dev/null
$BIN keys init "$tmp/master.key" >/dev/null
port=$((20000 + RANDOM % 20000))
api=$((port + 1))

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
# The simulator's --connect-rate paces the connections here, as it does for the bare server
# beside it: the server's own pace (accept_rate, 50 a second per CPU by default) is off, or
# 10,000 vehicles would take minutes to connect on 2 cores.
echo '{"accept_rate": 0}' >"$tmp/fv.json"
start_server() {
    rm -rf "$tmp/data"
    $BIN serve --data "$tmp/data" --certs "$tmp/certs" --key-file "$tmp/master.key" \
        --listen 127.0.0.1:$port --config "$tmp/fv.json" \
        --api 127.0.0.1:$api --no-rate-limit --log-level warn 2>>"$tmp/server.log" &
    srv=$!
    pids+=("$srv")
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$api/status" >/dev/null && return; sleep 0.05; done
    echo "server did not start"; cat "$tmp/server.log"; exit 1
}
start_floor() {
    $FLOOR "$tmp/certs" $port 2>>"$tmp/floor.log" &
    srv=$!
    pids+=("$srv")
    sleep 0.3
}
stop() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }

echo "## bench/ingest $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(uname -r)"
echo
# ---- 1. throughput, CPU, ack latency --------------------------------------------------
echo "Throughput: V records of 20 signals from simulated vehicles over mutual TLS, durable"
echo "acks (fdatasync before every ack), rate limits off; simulator on the same 2 cores:"
echo
echo "| vehicles x Hz | datums acked | datums/s | server CPU-s per million datums | fsyncs per record | ack p50 ms | ack p99 ms | unacked |"
echo "|---|---|---|---|---|---|---|---|"
for load in $TP_LOADS; do
    veh=${load%x*} rate=${load#*x}
    start_server
    c0=$(cpu_ticks "$srv")
    out=$($BIN simulate --server wss://127.0.0.1:$port --certs "$tmp/certs" --quiet \
        --vehicles "$veh" --hz "$rate" --seconds "$TP_SECONDS" --drain 30 2>"$tmp/sim.log" | tail -1)
    c1=$(cpu_ticks "$srv")
    fs=$(curl -sf "http://127.0.0.1:$api/metrics" | awk '$1 == "fleetvault_wal_fsyncs_total" {print $2}')
    stop "$srv"
    python3 - "$out" "$c0" "$c1" "$(getconf CLK_TCK)" "$load" "$fs" <<'PY'
import json, sys
s = json.loads(sys.argv[1]); c0, c1, hz = map(int, sys.argv[2:5])
cpu = (c1 - c0) / hz
d = s["datums"]
print(f"| {sys.argv[5]} | {d} | {d / s['elapsed_s']:,.0f} | {cpu / (d / 1e6):.2f} | "
      f"{float(sys.argv[6]) / max(1, s['acked']):.2f} | {s['ack_p50_ms']:.2f} | "
      f"{s['ack_p99_ms']:.2f} | {s['unacked']} |")
PY
done
echo

# ---- 2. memory per connected vehicle ----------------------------------------------------
echo "Server RSS per connected vehicle (vehicles at 0.1 Hz, all connected, minus the RSS before):"
echo
echo "| vehicles | fleetvault KB/vehicle | bare mTLS server KB/vehicle | ratio |"
echo "|---|---|---|---|"
for n in $MEM_COUNTS; do
    declare -A per
    for target in fleetvault floor; do
        if [ $target = fleetvault ]; then start_server; else start_floor; fi
        sleep 0.5
        base=$(rss_kb "$srv")
        f0=$(fds "$srv")
        $BIN simulate --server wss://127.0.0.1:$port --certs "$tmp/certs" --vehicles "$n" \
            --hz 0.1 --seconds 600 --drain 1 --connect-rate 500 --quiet >/dev/null 2>"$tmp/sim-$n.log" &
        sim=$!
        pids+=("$sim")
        for _ in $(seq 1200); do
            [ "$(( $(fds "$srv") - f0 ))" -ge "$n" ] && break
            sleep 0.1
        done
        sleep 8 # let handshakes and first records settle
        got=$(( $(fds "$srv") - f0 ))
        rss=$(rss_kb "$srv")
        per[$target]=$(awk -v a="$rss" -v b="$base" -v n="$got" 'BEGIN{printf "%.1f", (a-b)/n}')
        kill -9 "$sim" 2>/dev/null; wait "$sim" 2>/dev/null || true
        stop "$srv"
        [ "$got" -ge "$n" ] || echo "warning: only $got of $n connected to $target" >&2
    done
    echo "| $n | ${per[fleetvault]} | ${per[floor]} | $(awk -v a="${per[fleetvault]}" -v b="${per[floor]}" 'BEGIN{printf "%.2f", a/b}') |"
done
echo
echo "The reference receiver (Go, teslamotors/fleet-telemetry) is reported by its users at about"
echo "200 KB per vehicle; it cannot be built here (no Go toolchain or modules offline)."
