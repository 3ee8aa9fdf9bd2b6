#!/usr/bin/env bash
# bench/cluster: one node against gateway + storage over NATS JetStream, in one run (issue 15).
#
#   make build && bench/cluster/run.sh          # defaults below; markdown tables on stdout
#   knobs: VEHICLES=200 HZ=5 DURATION=30 (the paced feed: ack latency and CPU per datum)
#          TP_VEHICLES=200 TP_SECONDS=60 TP_INFLIGHT=16 (the saturating feed: throughput)
#          PHASES="single cluster1 cluster2" REPLICAS=1 SHARDS=16 BUILD=build
#
# Phases, each on fresh data directories and a fresh nats-server (-js, 127.0.0.1):
#   single    fleetvault serve (role all, no NATS): today's single node;
#   cluster1  nats-server, one storage node, one gateway: every vehicle on the gateway;
#   cluster2  the same with two gateways, each half of the vehicles.
# In each phase two feeds run one after the other:
#   paced     VEHICLES vehicles x HZ records/s of 20 signals for DURATION s (real time): ack
#             p50/p99 as the simulator sees them, and CPU-seconds per million datums of each
#             process (utime + stime from /proc/PID/stat), the storage node's counted until it
#             has consumed and acknowledged every message (its consumers' pending and
#             ack-pending 0 in nats-server's /jsz);
#   saturate  TP_VEHICLES vehicles in virtual time (`simulate --virtual-time`: records made as
#             fast as the acks come back, TP_INFLIGHT unacked per vehicle) for TP_SECONDS
#             virtual s: acked datums per wall-clock second, the ingest throughput.
# Every process, the simulators included, shares this machine's cores: on 2 cores a second
# gateway cannot add throughput (the figures say how the work divides, not how it scales out).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) BIN=$BUILD/fleetvault ;; *) BIN=$root/$BUILD/fleetvault ;; esac
VEHICLES=${VEHICLES:-200}
HZ=${HZ:-5}
DURATION=${DURATION:-30}
TP_VEHICLES=${TP_VEHICLES:-200}
TP_SECONDS=${TP_SECONDS:-60}
TP_INFLIGHT=${TP_INFLIGHT:-16}
PHASES=${PHASES:-"single cluster1 cluster2"}
REPLICAS=${REPLICAS:-1}
SHARDS=${SHARDS:-16}

log() { echo "bench/cluster: $*" >&2; }
die() { log "$*"; exit 1; }
[ -x "$BIN" ] || die "no $BIN: build it first (make build, or BUILD=<folder>)"
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$NATS" ] || die "nats-server is not installed (apt-get install nats-server)"
for p in $PHASES; do
    case $p in single | cluster1 | cluster2) ;; *) die "unknown phase '$p' (single, cluster1, cluster2)" ;; esac
done
[ "$REPLICAS" = 1 ] || die "REPLICAS=$REPLICAS: this script starts one nats-server (replicas 1)"
ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
$BIN certs init "$tmp/certs" >/dev/null
$BIN keys init "$tmp/master.key" >/dev/null
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
wait_tcp() { # PORT PID WHAT
    for _ in $(seq 400); do
        kill -0 "$2" 2>/dev/null || { tail -20 "$tmp"/*.log >&2; die "$3 exited"; }
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return
        sleep 0.05
    done
    die "$3 did not open port $1"
}

start_nats() {
    nport=$(free_port)
    nmon=$(free_port)
    rm -rf "$tmp/nats"
    $NATS -js -a 127.0.0.1 -p "$nport" -m "$nmon" -sd "$tmp/nats" >>"$tmp/nats.log" 2>&1 &
    natspid=$!
    pids+=("$natspid")
    wait_tcp "$nmon" "$natspid" nats-server
}
cluster_json() { # FILE NODE
    printf '{"cluster": {"nats": ["nats://127.0.0.1:%s"], "replicas": %s, "shards": %s%s}}\n' \
        "$nport" "$REPLICAS" "$SHARDS" "${2:+, \"node\": \"$2\"}" >"$1"
}
start_storage() {
    cluster_json "$tmp/storage.json" st1
    stapi=$(free_port)
    rm -rf "$tmp/st"
    $BIN serve --role storage --config "$tmp/storage.json" --data "$tmp/st" --certs "$tmp/certs" \
        --key-file "$tmp/master.key" --api "127.0.0.1:$stapi" --no-rate-limit --log-level warn \
        >>"$tmp/storage.log" 2>&1 &
    stpid=$!
    pids+=("$stpid")
    wait_tcp "$stapi" "$stpid" "the storage node"
}
start_gateway() { # K: sets gwport[K], gwpid[K]
    cluster_json "$tmp/gateway.json"
    gwport[$1]=$(free_port)
    rm -rf "$tmp/gw$1"
    $BIN serve --role gateway --config "$tmp/gateway.json" --data "$tmp/gw$1" --certs "$tmp/certs" \
        --key-file "$tmp/master.key" --listen "127.0.0.1:${gwport[$1]}" --api "127.0.0.1:$(free_port)" \
        --no-rate-limit --log-level warn >>"$tmp/gateway$1.log" 2>&1 &
    gwpid[$1]=$!
    pids+=("${gwpid[$1]}")
    wait_tcp "${gwport[$1]}" "${gwpid[$1]}" "gateway $1"
}
start_single() {
    sport=$(free_port)
    sapi=$(free_port)
    rm -rf "$tmp/single"
    $BIN serve --data "$tmp/single" --certs "$tmp/certs" --key-file "$tmp/master.key" \
        --listen "127.0.0.1:$sport" --api "127.0.0.1:$sapi" --no-rate-limit --log-level warn \
        >>"$tmp/single.log" 2>&1 &
    spid=$!
    pids+=("$spid")
    wait_tcp "$sport" "$spid" "the single node"
}
# Every consumer of the stream has delivered and had acked everything (the storage node is done).
caught_up() {
    curl -sf "http://127.0.0.1:$nmon/jsz?consumers=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)
cs = [c for a in d.get("account_details", []) for s in a.get("stream_detail", [])
      for c in s.get("consumer_detail", [])]
sys.exit(0 if cs and all(c["num_pending"] == 0 and c["num_ack_pending"] == 0 for c in cs) else 1)'
}

# simulate PORTS... with the feed's options in SIMOPTS; prints one JSON summary per simulator
feed() {
    local n=$# k=0 per out=()
    for p in "$@"; do
        per=$(( FEED_VEHICLES / n ))
        $BIN simulate --server "wss://127.0.0.1:$p" --certs "$tmp/certs" --quiet --vehicles "$per" \
            --id-prefix "5YJB$k" --drain 60 "${SIMOPTS[@]}" >"$tmp/sim$k.out" 2>>"$tmp/sim.log" &
        out+=($!)
        k=$((k + 1))
    done
    for p in "${out[@]}"; do wait "$p" || log "warning: a simulator left records unacked"; done
    for k in $(seq 0 $((n - 1))); do tail -1 "$tmp/sim$k.out"; done
}

res=$tmp/results.jsonl
run_phase() { # PHASE
    local phase=$1 ports=() procs=() names=()
    gwport=() gwpid=()
    case $phase in
    single)
        start_single
        ports=("$sport"); procs=("$spid"); names=(node) ;;
    cluster1 | cluster2)
        start_nats
        start_storage
        start_gateway 0
        ports=("${gwport[0]}"); procs=("${gwpid[0]}"); names=(gateway0)
        if [ "$phase" = cluster2 ]; then
            start_gateway 1
            ports+=("${gwport[1]}"); procs+=("${gwpid[1]}"); names+=(gateway1)
        fi
        procs+=("$stpid" "$natspid"); names+=(storage nats-server) ;;
    esac
    for feedkind in paced saturate; do
        local c0=() c1=() t0 t1 sims
        for p in "${procs[@]}"; do c0+=("$(cpu_ticks "$p")"); done
        t0=$(date +%s.%N)
        if [ "$feedkind" = paced ]; then
            FEED_VEHICLES=$VEHICLES
            SIMOPTS=(--hz "$HZ" --seconds "$DURATION")
        else
            FEED_VEHICLES=$TP_VEHICLES
            SIMOPTS=(--hz 1 --seconds "$TP_SECONDS" --virtual-time 1767225600000 --max-inflight "$TP_INFLIGHT"
                     --seed 7)
        fi
        log "$phase, $feedkind feed: $FEED_VEHICLES vehicles through ${#ports[@]} endpoint(s)"
        sims=$(feed "${ports[@]}")
        t1=$(date +%s.%N)
        local lag_s=0
        if [ "$phase" != single ]; then
            local w0 w1
            w0=$(date +%s.%N)
            for _ in $(seq 1200); do caught_up && break; sleep 0.1; done
            caught_up || log "warning: the storage node did not catch up within 120 s"
            w1=$(date +%s.%N)
            lag_s=$(python3 -c "print(round($w1 - $w0, 2))")
        fi
        for p in "${procs[@]}"; do c1+=("$(cpu_ticks "$p")"); done
        python3 - "$phase" "$feedkind" "$hz" "$t0" "$t1" "$lag_s" "${names[*]}" "${c0[*]}" "${c1[*]}" \
            "$sims" >>"$res" <<'PY'
import json, sys
phase, feed, hz, t0, t1, lag, names, c0, c1, sims = sys.argv[1:11]
s = [json.loads(l) for l in sims.splitlines() if l.strip()]
cpu = {n: (int(b) - int(a)) / int(hz) for n, a, b in zip(names.split(), c0.split(), c1.split())}
print(json.dumps({"phase": phase, "feed": feed, "wall_s": float(t1) - float(t0),
                  "catchup_s": float(lag), "cpu_s": cpu, "sims": s}))
PY
    done
    for p in "${procs[@]}"; do stop "$p"; done
}

la0=$(cut -d' ' -f1-3 /proc/loadavg)
for phase in $PHASES; do run_phase "$phase"; done
la1=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$res" "$VEHICLES" "$HZ" "$DURATION" "$TP_VEHICLES" "$TP_SECONDS" "$TP_INFLIGHT" "$la0" "$la1" \
    "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo ?)" "$(nproc)" <<'PY'
import json, sys
path, v, hz, secs, tpv, tps, tpi, la0, la1, commit, cores = sys.argv[1:12]
rows = [json.loads(l) for l in open(path)]
def agg(r):
    s = r["sims"]
    acked = sum(x["acked"] for x in s)
    datums = sum(x["datums"] for x in s)
    unacked = sum(x["unacked"] for x in s)
    refused = sum(x["errors"] for x in s)
    p50 = max(x["ack_p50_ms"] for x in s)
    p99 = max(x["ack_p99_ms"] for x in s)
    el = max(x["elapsed_s"] for x in s)
    return acked, datums, unacked, refused, p50, p99, el
print(f"## bench/cluster {commit}, {cores} cores; load average {la0} -> {la1}")
print()
print(f"Paced feed: {v} vehicles x {hz} Hz x {secs} s, 20 signals per record; one nats-server "
      "(JetStream, file storage, replicas 1) on 127.0.0.1; everything on this machine's cores.")
print()
print("| phase | acked records | refused | unacked | ack p50 ms | ack p99 ms | CPU-s per million datums, by process | total | total / single |")
print("|---|---|---|---|---|---|---|---|---|")
base = None
for r in rows:
    if r["feed"] != "paced":
        continue
    acked, datums, unacked, refused, p50, p99, _ = agg(r)
    per = {n: c / datums * 1e6 for n, c in r["cpu_s"].items()} if datums else {}
    tot = sum(per.values())
    if r["phase"] == "single":
        base = tot
    ratio = f"{tot / base:.2f}" if base else "-"
    parts = ", ".join(f"{n} {x:.2f}" for n, x in per.items())
    print(f"| {r['phase']} | {acked} | {refused} | {unacked} | {p50:.2f} | {p99:.2f} | {parts} | {tot:.2f} | {ratio} |")
print()
print(f"Saturating feed: {tpv} vehicles in virtual time ({tps} virtual s each, up to {tpi} unacked "
      "records per vehicle): acked datums per wall-clock second of the feed; the storage node's "
      "catch-up after the last ack, and CPU-s per million datums per process.")
print()
print("| phase | acked datums | feed s | datums/s | / single | storage catch-up s | CPU-s per million datums, by process |")
print("|---|---|---|---|---|---|---|")
base = None
for r in rows:
    if r["feed"] != "saturate":
        continue
    acked, datums, unacked, refused, p50, p99, el = agg(r)
    rate = datums / el if el else 0
    if r["phase"] == "single":
        base = rate
    ratio = f"{rate / base:.2f}" if base else "-"
    per = ", ".join(f"{n} {c / datums * 1e6:.2f}" for n, c in r["cpu_s"].items()) if datums else "-"
    print(f"| {r['phase']} | {datums} | {el:.1f} | {rate:,.0f} | {ratio} | {r['catchup_s']:.1f} | {per} |")
PY
