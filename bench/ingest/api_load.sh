#!/usr/bin/env bash
# bench/ingest/api_load.sh: device ack latency while the HTTP API is busy, beside the same
# run with the API idle, in one run (issue 8, "an event loop that nothing blocks").
#
#   bench/ingest/api_load.sh                     # defaults below; results as markdown tables
#   DURATION=10 PHASES="idle busy" bench/ingest/api_load.sh   # a quick run
#   knobs: VEHICLES=200 HZ=2 DURATION=30 (s per phase) PHASES="idle busy unauth" ROUNDS=1
#          API_RATE=0 (requests/s per API client, 0 = as fast as it can) BUILD=build
#          API_NICE= (the server's api_nice, 0-19; empty: its default, 10)
#          ACCEPTS_PER_TURN= (the server's accepts_per_turn, 0-1024; empty: its default, 1;
#          0: libwebsockets' own listener, every waiting connection accepted in one loop turn)
#          ACCEPT_RATE= (the server's accept_rate, connections/s, 0: no limit; empty: its default)
#          INGEST_NICE= (the server's ingest_nice, -20-0; empty: its default, 0; below 0
#          needs root or CAP_SYS_NICE, else the server warns and runs at 0)
#          LOADGEN_NICE=0 (nice of the two API load generators, 0-19: on this one machine they
#          compete for the cores with the simulator that measures the acks; in production
#          neither runs beside the server)
#          SIM_NICE=0 (nice of the measuring simulator, -20-19; below 0 needs root or
#          CAP_SYS_NICE: it stands for vehicles on their own machines, so it may be given the
#          ingest loop's priority to keep the load generators from delaying its clock reads)
#          CONNECT_RATE= (the measured stream's new connections per second, the simulator's
#          --connect-rate; empty: its default, 1000: all 200 TLS handshakes within 0.2 s)
#          PREJOIN=0 (1: the vehicles join in an unmeasured 3 s stream first, so the measured
#          stream has no joins: steady state only, for comparison)
#
# Every phase starts a fresh server on a fresh data directory, so in every phase VEHICLES new
# devices join (each gets its data key on its first record) and then stream at HZ records/s
# of 20 signals for DURATION s (`fleetvault simulate`, one mutual-TLS WebSocket per vehicle,
# every record acked after fdatasync). During the stream, for DURATION s:
#   idle    no API client;
#   busy    a reader (principal "bench", role "ops": service purpose, fleet-wide, real ids)
#           alternating GET /api/v1/fleet?signal=Soc&at=NOW and GET /api/v1/query?device=VIN
#           &signals=VehicleSpeed,Soc&from=START&to=NOW on one keep-alive connection, plus a
#           second client sending GET /api/v1/fleet with a wrong 64-hex-digit token (401);
#   unauth  only the wrong-token client.
# Ack p50/p99/max come from the simulator's summary line; server CPU-seconds are utime +
# stime from /proc/PID/stat over the stream; API requests/s are what the clients achieved,
# by kind. The simulator and the API clients run on the same machine as the server (the
# cores are shared); the load average is printed before and after each phase.
# Tables go to stdout, progress to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) BIN=$BUILD/fleetvault ;; *) BIN=$root/$BUILD/fleetvault ;; esac
VEHICLES=${VEHICLES:-200}
HZ=${HZ:-2}
DURATION=${DURATION:-30}
PHASES=${PHASES:-"idle busy unauth"}
ROUNDS=${ROUNDS:-1}
API_RATE=${API_RATE:-0}
API_NICE=${API_NICE:-}
INGEST_NICE=${INGEST_NICE:-}
PREJOIN=${PREJOIN:-0}
LOADGEN_NICE=${LOADGEN_NICE:-0}
SIM_NICE=${SIM_NICE:-0}
CONNECT_RATE=${CONNECT_RATE:-}
ACCEPTS_PER_TURN=${ACCEPTS_PER_TURN:-}
ACCEPT_RATE=${ACCEPT_RATE:-}

log() { echo "bench/ingest/api_load: $*" >&2; }
die() { log "$*"; exit 1; }
[ -x "$BIN" ] || die "no $BIN: build it first (make build, or BUILD=<folder>)"
for p in $PHASES; do
    case $p in idle | busy | unauth) ;; *) die "unknown phase '$p' (idle, busy, unauth)" ;; esac
done
ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The ingest loop (the server's main thread) in the scheduler's accounts: ns on a CPU, ns
# runnable but waiting for one, times run (/proc/PID/schedstat; zeros where the kernel keeps
# none).
sched_of() { cat "/proc/$1/schedstat" 2>/dev/null || echo 0 0 0; }
hz=$(getconf CLK_TCK)
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# The server's counters and histograms (requests, 401s, WAL fdatasync and ack buckets) as one
# line; delta() subtracts a scrape taken before the measured stream from one taken after, so
# the server's figures cover that stream only (not the start-up, nor a pre-join stream).
scrape() {
    curl -sf "http://127.0.0.1:$1/metrics" | awk '
        $1 == "fleetvault_http_requests_total" {r = $2}
        $1 == "fleetvault_http_unauthorized_total" {u = $2}
        $1 ~ /^fleetvault_wal_fsync_seconds_bucket/ {
            b = $1; sub(/.*le="/, "", b); sub(/".*/, "", b); f = f (f ? "," : "") b ":" $2}
        $1 ~ /^fleetvault_ack_seconds_bucket/ {
            b = $1; sub(/.*le="/, "", b); sub(/".*/, "", b); a = a (a ? "," : "") b ":" $2}
        END {print r + 0, u + 0, (f ? f : "-"), (a ? a : "-")}' || echo "n/a n/a - -"
}
delta() {
    python3 -c 'import sys
a, b = sys.argv[1].split(), sys.argv[2].split()
if len(a) < 4 or len(b) < 4 or "n/a" in a + b:
    print("n/a n/a - -"); sys.exit()
def hist(x, y):
    if x == "-" or y == "-":
        return y
    xs = dict(p.split(":") for p in x.split(","))
    return ",".join(k + ":" + str(int(float(v)) - int(float(xs.get(k, 0))))
                    for k, v in (p.split(":") for p in y.split(",")))
print(int(float(b[0])) - int(float(a[0])), int(float(b[1])) - int(float(a[1])),
      hist(a[2], b[2]), hist(a[3], b[3]))' "$1" "$2"
}

$BIN certs init "$tmp/certs" >/dev/null
$BIN keys init "$tmp/master.key" >/dev/null
# Reads are purpose-bound (docs/privacy.md): the reader is principal "bench" of role "ops"
# (service purpose, fleet-wide, real ids, no ticket): the e2e tests' policy (fvtest.py).
python3 -c 'import json, sys; sys.path.insert(0, sys.argv[1]); import fvtest
json.dump(fvtest.test_policy(), open(sys.argv[2], "w"))' "$root/tests/e2e" "$tmp/policy.json"
python3 -c 'import json, sys
c = {"policy": sys.argv[2]}
if sys.argv[3]: c["api_nice"] = int(sys.argv[3])
if sys.argv[4]: c["ingest_nice"] = int(sys.argv[4])
if sys.argv[5]: c["accepts_per_turn"] = int(sys.argv[5])
if sys.argv[6]: c["accept_rate"] = int(sys.argv[6])
json.dump(c, open(sys.argv[1], "w"))' "$tmp/fv.json" "$tmp/policy.json" "$API_NICE" "$INGEST_NICE" "$ACCEPTS_PER_TURN" "$ACCEPT_RATE"

# The API client: one keep-alive connection, requests in a loop for --seconds, then one
# JSON line: per kind, requests, answers by status, requests/s, latency p50/p99/max (ms),
# plus reconnects and the client's own CPU-seconds. Standard library only.
cat >"$tmp/api_client.py" <<'PY'
import argparse, http.client, json, math, os, statistics, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--mode", choices=["read", "unauth"], required=True)
ap.add_argument("--token-file")
ap.add_argument("--vin")
ap.add_argument("--seconds", type=float, required=True)
ap.add_argument("--rate", type=float, default=0)
a = ap.parse_args()

if a.mode == "read":
    token = open(a.token_file).read().strip()
else:
    token = "0123456789abcdef" * 4  # well-formed (64 hex digits), belongs to no principal
headers = {"Connection": "keep-alive", "Authorization": "Bearer " + token}
conn, opened = None, 0


def get(target):
    """One request; a connection the server closes, or that fails, is reopened on the next
    request (and counted); a failure is returned to the caller, not retried."""
    global conn, opened
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)
        opened += 1
    try:
        conn.request("GET", target, headers=headers)
        r = conn.getresponse()
        body = r.read()
    except (http.client.HTTPException, OSError):
        conn.close()
        conn = None
        raise
    if r.will_close:
        conn.close()
        conn = None
    return r.status, body


start_ms = int(time.time() * 1000)
kinds = {}


def record(kind, status, ms, body):
    k = kinds.setdefault(kind, {"lat": [], "status": {}, "rows": 0})
    k["lat"].append(ms)
    # rows (query) or vehicles (fleet) in a 200 answer: its trailing "count" field
    j = body.rfind(b'"count":') if status == 200 else -1
    if j >= 0:
        k["rows"] += int(body[j + 8:].split(b"}")[0].split(b",")[0])
    k["status"][str(status)] = k["status"].get(str(status), 0) + 1


t_begin = time.monotonic()
deadline = t_begin + a.seconds
i = 0
while True:
    now = time.monotonic()
    if now >= deadline:
        break
    if a.rate > 0:
        due = t_begin + i / a.rate
        if due > now:
            time.sleep(min(due - now, deadline - now))
            continue
    now_ms = int(time.time() * 1000)
    if a.mode == "unauth":
        kind, target = "unauth", f"/api/v1/fleet?signal=Soc&at={now_ms}&purpose=service"
    elif i % 2 == 0:
        kind, target = "fleet", f"/api/v1/fleet?signal=Soc&at={now_ms}&purpose=service"
    else:
        kind, target = "query", (f"/api/v1/query?device={a.vin}&signals=VehicleSpeed,Soc"
                                 f"&from={start_ms}&to={now_ms}&purpose=service")
    t0 = time.perf_counter()
    try:
        status, body = get(target)
    except (http.client.HTTPException, OSError) as e:
        status, body = type(e).__name__, b""
    record(kind, status, (time.perf_counter() - t0) * 1000.0, body)
    i += 1
elapsed = time.monotonic() - t_begin
out = {"elapsed_s": round(elapsed, 3), "reconnects": max(0, opened - 1),
       "cpu_s": round(sum(os.times()[:2]), 2), "kinds": {}}
for kind, k in kinds.items():
    lat = sorted(k["lat"])
    out["kinds"][kind] = {
        "requests": len(lat), "status": k["status"],
        "per_s": round(len(lat) / elapsed, 1),
        "rows_per_200": round(k["rows"] / max(1, k["status"].get("200", 0)), 1),
        "p50_ms": round(statistics.median(lat), 3),
        "p99_ms": round(lat[max(0, math.ceil(0.99 * len(lat)) - 1)], 3),
        "max_ms": round(lat[-1], 3)}
print(json.dumps(out))
PY

res=$tmp/results.jsonl
run_phase() { # $1 phase, $2 round
    local phase=$1 round=$2
    local data=$tmp/data-$phase-$round port api
    port=$(free_port)
    api=$(free_port)
    $BIN serve --data "$data" --certs "$tmp/certs" --key-file "$tmp/master.key" \
        --listen "127.0.0.1:$port" --api "127.0.0.1:$api" --no-rate-limit --log-level warn \
        --config "$tmp/fv.json" 2>>"$tmp/server.log" &
    local srv=$!
    pids+=("$srv")
    local up=0
    for _ in $(seq 200); do
        if curl -sf "http://127.0.0.1:$api/status" >/dev/null; then up=1; break; fi
        kill -0 "$srv" 2>/dev/null || break
        sleep 0.05
    done
    [ $up = 1 ] || { tail -20 "$tmp/server.log" >&2; die "fleetvault did not start"; }
    # A reading principal works once a second principal approves it (docs/privacy.md): the
    # installation's first privacy officer (active at once) approves "bench".
    $BIN principal add bench-officer --role privacy-officer --data "$data" \
        --policy "$tmp/policy.json" >"$tmp/officer.token" 2>/dev/null ||
        die "cannot create the approving officer"
    $BIN principal add bench --role ops --data "$data" --policy "$tmp/policy.json" \
        >"$tmp/bench.token" 2>/dev/null || die "cannot create the bench principal"
    curl -sf -X POST -H "Authorization: Bearer $(cat "$tmp/officer.token")" \
        "http://127.0.0.1:$api/api/v1/principals/bench/approve" >/dev/null ||
        die "cannot approve the bench principal"
    if [ "$PREJOIN" = 1 ]; then
        $BIN simulate --server "wss://127.0.0.1:$port" --certs "$tmp/certs" --quiet \
            --vehicles "$VEHICLES" --hz "$HZ" --seconds 3 --drain 30 >/dev/null 2>>"$tmp/sim.log" ||
            log "warning: the pre-join stream did not end cleanly"
    fi
    # The reader follows the first vehicle: it joins first, so its history exists soonest.
    local vin=5YJSIM00000000000 la0 la1 c0 c1 out
    local clients=()
    la0=$(loadavg)
    log "phase $phase (round $round): $VEHICLES vehicles x $HZ Hz for $DURATION s$([ "$PREJOIN" = 1 ] || echo ", all joining"); load average $la0"
    c0=$(cpu_ticks "$srv")
    local m0 metrics
    m0=$(scrape "$api")
    local s0 s1
    s0=$(sched_of "$srv")
    if [ "$phase" = busy ]; then
        nice -n "$LOADGEN_NICE" python3 "$tmp/api_client.py" --port "$api" --mode read --token-file "$tmp/bench.token" \
            --vin $vin --seconds "$DURATION" --rate "$API_RATE" >"$tmp/read.json" &
        clients+=($!)
    fi
    if [ "$phase" = busy ] || [ "$phase" = unauth ]; then
        nice -n "$LOADGEN_NICE" python3 "$tmp/api_client.py" --port "$api" --mode unauth --seconds "$DURATION" \
            --rate "$API_RATE" >"$tmp/unauth.json" &
        clients+=($!)
    fi
    pids+=("${clients[@]}")
    out=$(nice -n "$SIM_NICE" $BIN simulate --server "wss://127.0.0.1:$port" --certs "$tmp/certs" --quiet \
        --vehicles "$VEHICLES" --hz "$HZ" --seconds "$DURATION" --drain 30 \
        ${CONNECT_RATE:+--connect-rate "$CONNECT_RATE"} --slow-log "$tmp/slow.log" \
        2>"$tmp/sim.log" | tail -1) || true
    for c in "${clients[@]}"; do wait "$c" || log "warning: an API client failed"; done
    c1=$(cpu_ticks "$srv")
    s1=$(sched_of "$srv")
    la1=$(loadavg)
    metrics=$(delta "$m0" "$(scrape "$api")")
    stop "$srv"
    [ -n "$out" ] || { tail -5 "$tmp/sim.log" >&2; die "the simulator printed no summary"; }
    python3 - "$phase" "$round" "$out" "$(( c1 - c0 ))" "$hz" "$la0" "$la1" "$metrics" \
        "$([ -s "$tmp/read.json" ] && cat "$tmp/read.json" || echo null)" \
        "$([ -s "$tmp/unauth.json" ] && cat "$tmp/unauth.json" || echo null)" \
        "$s0" "$s1" "$tmp/slow.log" >>"$res" <<'PY'
import json, sys
phase, rnd, sim, ticks, hz, la0, la1, metrics, rd, ua, s0, s1, slow_path = sys.argv[1:14]
# when in the stream the simulator's acks over 10 ms fell (--slow-log), by window of the stream
edges = [0, 1, 2, 5, 10, 1e9]
slow = [0] * (len(edges) - 1)
try:
    for line in open(slow_path):
        t = float(line.split()[0])
        slow[next(i for i in range(len(edges) - 1) if edges[i] <= t < edges[i + 1])] += 1
except OSError:
    pass
d = [int(b) - int(a) for a, b in zip(s0.split(), s1.split())]
print(json.dumps({"phase": phase, "round": int(rnd), "sim": json.loads(sim),
                  "server_http": metrics,
                  "cpu_s": int(ticks) / int(hz), "load_before": la0, "load_after": la1,
                  "read": json.loads(rd), "unauth": json.loads(ua),
                  "loop_sched": {"run_s": d[0] / 1e9, "wait_s": d[1] / 1e9, "runs": d[2]},
                  "slow_by_window": slow}))
PY
    rm -f "$tmp/read.json" "$tmp/unauth.json" "$tmp/slow.log"
    rm -rf "$data"
}

la_start=$(loadavg)
for round in $(seq "$ROUNDS"); do
    for phase in $PHASES; do run_phase "$phase" "$round"; done
done
la_end=$(loadavg)

echo "## bench/ingest/api_load.sh $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(uname -r)"
echo
echo "Server settings: api_nice ${API_NICE:-10 (default)}, ingest_nice ${INGEST_NICE:-0 (default)}, accepts_per_turn ${ACCEPTS_PER_TURN:-1 (default)}, accept_rate ${ACCEPT_RATE:-its default}/s; API load generators at nice $LOADGEN_NICE; measuring simulator at nice $SIM_NICE, connecting ${CONNECT_RATE:-1000 (default)} vehicles/s."
echo
python3 - "$res" "$VEHICLES" "$HZ" "$DURATION" "$API_RATE" "$la_start" "$la_end" "$(nproc)" "$PREJOIN" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
veh, hz, dur, rate, la0, la1, ncpu, prejoin = sys.argv[2:10]
idle = {}
for r in rows:
    if r["phase"] == "idle":
        idle.setdefault(r["round"], (r["sim"]["ack_p50_ms"], r["sim"]["ack_p99_ms"]))
desc = {"idle": "none", "busy": "reader (fleet + query) and wrong-token client",
        "unauth": "wrong-token client only"}

def kind(r, client, k):
    c = r[client]
    return c["kinds"].get(k) if c else None

def rate_of(r, client, k, status="200"):
    x = kind(r, client, k)
    if not x:
        return "-"
    ok = x["status"].get(status, 0)
    s = f"{ok / r[client]['elapsed_s']:,.0f}"
    other = {st: n for st, n in x["status"].items() if st != status}
    if other:
        s += " (+ " + ", ".join(f"{n} x {st}" for st, n in sorted(other.items())) + ")"
    return s

joining = (f"{veh} new vehicles joining and streaming" if prejoin != "1" else
           f"{veh} vehicles (joined in an unmeasured 3 s stream first) streaming")
print(f"Ack latency of {joining} at {hz} Hz (20 signals, acks "
      f"after fdatasync, rate limits off) for {dur} s per phase, each phase on a fresh data "
      f"directory; API clients on keep-alive connections, "
      + ("as fast as each gets answers" if float(rate) <= 0 else f"at most {rate} requests/s each")
      + f". Server, simulator and API clients share the machine's {ncpu} cores.")
print()
print("| phase | API load | ack p50 ms | ack p99 ms | p99 / p99(idle) | p50 / p50(idle) | ack max ms | "
      "acked | unacked | fleet 200/s | query 200/s | wrong token 401/s | server CPU-s | "
      "load avg before -> after |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    s = r["sim"]
    base = idle.get(r["round"])
    ratio = f"{s['ack_p99_ms'] / base[1]:.2f}" if base and base[1] else "-"
    ratio50 = f"{s['ack_p50_ms'] / base[0]:.2f}" if base and base[0] else "-"
    name = r["phase"] + (f" #{r['round']}" if len(set(x["round"] for x in rows)) > 1 else "")
    print(f"| {name} | {desc[r['phase']]} | {s['ack_p50_ms']:.2f} | {s['ack_p99_ms']:.2f} | "
          f"{ratio} | {ratio50} | {s['ack_max_ms']:.2f} | {s['acked']} | {s['unacked']} | "
          f"{rate_of(r, 'read', 'fleet')} | {rate_of(r, 'read', 'query')} | "
          f"{rate_of(r, 'unauth', 'unauth', '401')} | {r['cpu_s']:.2f} | "
          f"{r['load_before']} -> {r['load_after']} |")
acked = min(r["sim"]["acked"] for r in rows)
if prejoin != "1" and acked and int(veh) / acked > 0.01:
    print()
    print(f"Note: the {veh} first records (one per vehicle, after its TLS handshake, each making "
          f"the vehicle's data key) are {100 * int(veh) / acked:.1f}% of the acks, more than the 1% above the p99: "
          f"the p99 here is mostly the cost of the joins; p50 is the steady state. "
          f"PREJOIN=1 measures without joins (handshakes remain).")
print()
print("API request latency as the clients saw it (ms; client CPU-s is the client's own):")
print()
print("| phase | request | requests | rows or vehicles per 200 | p50 ms | p99 ms | max ms | client CPU-s |")
print("|---|---|---|---|---|---|---|---|")
names = {"fleet": "GET /api/v1/fleet (200)", "query": "GET /api/v1/query (200)",
         "unauth": "GET /api/v1/fleet, wrong token (401)"}
for r in rows:
    name = r["phase"] + (f" #{r['round']}" if len(set(x["round"] for x in rows)) > 1 else "")
    for client in ("read", "unauth"):
        c = r[client]
        if not c:
            continue
        for k, x in c["kinds"].items():
            per = x["rows_per_200"] if x["status"].get("200") else "-"
            print(f"| {name} | {names[k]} | {x['requests']} | {per} | {x['p50_ms']:.2f} | "
                  f"{x['p99_ms']:.2f} | {x['max_ms']:.2f} | {c['cpu_s']:.2f} |")
print()
print("The server's own view over each phase's measured stream (its /metrics histograms "
      "scraped before and after the stream; bounds are the buckets, so a percentile reads "
      "'at most'): fleetvault_ack_seconds, from a record's first "
      "bytes read to its ack handed to the socket (durable by then); fleetvault_wal_fsync_seconds, "
      "the WAL's fdatasync that every ack waits for. What the simulator measures beyond the "
      "server's ack time is the client's and the network stack's share.")
print()
print("| phase | server acks | ack p50 <= ms | ack p99 <= ms | acks over 10 ms | fdatasyncs | "
      "fdatasync p50 <= ms | fdatasync p99 <= ms | fdatasyncs over 10 ms |")
print("|---|---|---|---|---|---|---|---|---|")
def hist(r, field):
    parts = r["server_http"].split()
    f = parts[field] if len(parts) > field else "-"
    if f == "-":
        return None
    b = [(float("inf") if k == "+Inf" else float(k) * 1000, int(v))
         for k, v in (x.split(":") for x in f.split(","))]
    n = b[-1][1]
    if not n:
        return None
    def pct(q):
        return next(le for le, c in b if c >= q * n)
    def over(ms):
        return n - next(c for le, c in b if le >= ms)
    return n, pct(0.5), pct(0.99), over(10)
def cells(x):
    if not x:
        return "- | - | - | -"
    return f"{x[0]} | {x[1]:g} | {x[2]:g} | {x[3]} ({100 * x[3] / x[0]:.2f}%)"
for r in rows:
    name = r["phase"] + (f" #{r['round']}" if len(set(y["round"] for y in rows)) > 1 else "")
    print(f"| {name} | {cells(hist(r, 3))} | {cells(hist(r, 2))} |")
print()
print("The server's own count over each phase's stream (fleetvault_http_requests_total, of "
      "which fleetvault_http_unauthorized_total, from /metrics): "
      + "; ".join(f"{r['phase']} {r['server_http'].split()[0]} ({r['server_http'].split()[1]} 401)"
                  for r in rows) + ".")
print()
print("The ingest loop thread in the kernel's scheduler accounts over each phase "
      "(/proc/PID/schedstat): time on a CPU, time runnable but waiting for a CPU (every ack "
      "waits behind it), and the mean wait per time it was run.")
print()
print("| phase | loop on CPU s | loop waiting for a CPU s | times run | mean wait per run ms |")
print("|---|---|---|---|---|")
for r in rows:
    name = r["phase"] + (f" #{r['round']}" if len(set(y["round"] for y in rows)) > 1 else "")
    ls = r["loop_sched"]
    mean = f"{1000 * ls['wait_s'] / ls['runs']:.3f}" if ls["runs"] else "-"
    print(f"| {name} | {ls['run_s']:.2f} | {ls['wait_s']:.2f} | {ls['runs']} | {mean} |")
print()
print("When the simulator's acks over 10 ms came (`simulate --slow-log`), by seconds since "
      "the simulator started (its connections are made in the first second or so at the "
      "default connect rate):")
print()
print("| phase | 0-1 s | 1-2 s | 2-5 s | 5-10 s | 10 s - end |")
print("|---|---|---|---|---|---|")
for r in rows:
    name = r["phase"] + (f" #{r['round']}" if len(set(y["round"] for y in rows)) > 1 else "")
    print(f"| {name} | " + " | ".join(str(x) for x in r.get("slow_by_window", [])) + " |")
print()
print(f"Load average (1, 5, 15 min) at the start: {la0}; at the end: {la1} "
      f"(above about 1 the machine was busy with other work; the figures are then noisier).")
PY
