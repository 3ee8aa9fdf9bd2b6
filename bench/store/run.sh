#!/usr/bin/env bash
# bench/store: bytes on disk per datum, server CPU per datum and query latency of
# fleetvault's store, side by side with VictoriaMetrics (Debian's victoria-metrics) fed the
# same data in the same run.
#
#   bench/store/run.sh                        # 1000 vehicles x 20 signals x 500 s at 1 Hz
#   VEHICLES=50 SECONDS=60 bench/store/run.sh # a quick run
#   knobs: JITTERS="0 20" (ms) SEED=1 T0=<epoch ms> MAX_INFLIGHT=64 QUERIES=200 WAL_KEEP=0 (s)
#          CHUNK_LINES=20000 BUILD=build (the build folder holding fleetvault)
#          AUDIT_PREALLOC_KB=<KiB> (the server's "audit_prealloc_kb"; unset: its default)
#          KEEP_STORE=DIR (copy fleetvault's compacted store to DIR/j<jitter>, for
#          `build/store_colbytes --part DIR/j0/*`)
#          RESTART=1 (fleetvault queried right after a restart: a cold store; RESTART_WAIT=S
#          seconds after it, 0 by default; with QUERY_WARMUP=0 QUERIES=1 the one answer
#          measured is the first; QUERY_WARMUP: unmeasured requests first, 10 by default)
#
# The data: `fleetvault simulate --virtual-time T0` makes every vehicle's record k at
# T0 + k*1000 ms (+ a pseudo-random offset in [-JITTER, +JITTER] ms), values a function of
# (seed, vehicle, k) alone. `--no-server --influx FILE` writes those records as InfluxDB line
# protocol (measurement telemetry, tag vin, one field per signal, a location as _lat and
# _lon fields), which VictoriaMetrics ingests over HTTP; fleetvault gets the same records from
# the simulator over mutual TLS (the run checks that the file the simulator writes then is
# byte for byte the one VictoriaMetrics got).
#
# Per system and jitter, on a fresh data directory: server CPU (utime + stime from
# /proc/PID/stat) over the ingest, and again once everything is flushed and fully merged
# (VictoriaMetrics: /internal/force_flush, no rows pending, /internal/force_merge, waiting
# for its merges to end and its directory size to settle, again while a partition has more
# than one part; fleetvault: POST /api/v1/store/compact, which returns when done or answers
# 202 and is then polled on GET /api/v1/store until "compacting" is false); bytes on disk
# (du -sb); query latency, median and p99 of QUERIES
# requests on one keep-alive connection (query_lat.py) for one signal of one vehicle over the
# whole time range, all signals of that vehicle, one signal of every vehicle at one
# instant in the middle of the data, and the same at the data's end ("now": the fleet view's
# common case, which fleetvault answers from the parts' last values, docs/storage.md; in
# the middle it decodes). A datum is one signal value as the simulator counts it (a location is one datum,
# though VictoriaMetrics stores it as two samples). Tables go to stdout, progress to stderr.
set -euo pipefail
# SECONDS is bash's own clock, imported from the environment when set there: read it first.
DUR=$(printenv SECONDS || echo 500)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) BIN=$BUILD/fleetvault ;; *) BIN=$root/$BUILD/fleetvault ;; esac
VM=${VM:-/usr/bin/victoria-metrics}
VEHICLES=${VEHICLES:-1000}
JITTERS=${JITTERS:-"0 20"}
SEED=${SEED:-1}
# Midnight UTC a day ago: inside any retention, never in the future, fixed for a day.
T0=${T0:-$(( ($(date -u +%s) / 86400 - 1) * 86400 * 1000 ))}
MAX_INFLIGHT=${MAX_INFLIGHT:-64}
QUERIES=${QUERIES:-200}
CHUNK_LINES=${CHUNK_LINES:-20000}
HZ=1
SIGNALS=20

log() { echo "bench/store: $*" >&2; }
die() { log "$*"; exit 1; }

[ -x "$BIN" ] || die "no $BIN: build it first (make build, or BUILD=<folder>)"
if [ ! -x "$VM" ]; then
    log "installing victoria-metrics (Debian package)"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq victoria-metrics >&2
    [ -x "$VM" ] || die "victoria-metrics did not install to $VM"
fi
if pgrep -f "^$VM( |\$)" >/dev/null; then
    log "warning: a VictoriaMetrics is already running here (the Debian service?); it shares the CPU"
fi
ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
urlenc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.3f", ms / 1000 }'; }
dusb() { if [ -e "$1" ]; then du -sb "$1" | cut -f1; else echo n/a; fi; }
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
json_get() { python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get(sys.argv[2], "n/a"))' "$1" "$2"; }

# Results, one "KEY VALUE" line each (KEY = system.metric), printed as a table per jitter.
res=$tmp/results
put() { echo "$1 $2" >>"$res"; }

vin=$(printf '5YJSIM%011d' $((VEHICLES / 2)))
from=$T0                                  # the first record's time, less the jitter below
to=$((T0 + DUR * 1000))                   # past the last record's time (jitter < 1000 ms)
at=$((T0 + DUR * 1000 / 2 + 500))         # an instant between two records
now=$to                                   # after the last record: the fleet now
months=$(for t in $T0 $to; do date -u -d "@$((t / 1000))" +%Y_%m; done | sort -u)

$BIN certs init "$tmp/certs" >/dev/null
$BIN keys init "$tmp/master.key" >/dev/null

# ---- VictoriaMetrics ----------------------------------------------------------------------
vm_metric_sum() { # $1 metric, $2 a string its labels must hold (or ""): sum from /metrics
    curl -sf "http://127.0.0.1:$vmport/metrics" | awk -v m="$1" -v f="${2:-}" '
        index($1, m) == 1 && (substr($1, length(m) + 1, 1) == "{" || length($1) == length(m)) &&
        index($1, f) > 0 {s += $2}
        END {printf "%.0f", s}'
}

vm_settle() { # waits for no active merge and the size of $1 steady for 3 s; prints the size
    local prev=-1 same=0 size merges
    for _ in $(seq 1200); do
        sleep 1
        size=$(du -sb "$1" | cut -f1)
        merges=$(( $(vm_metric_sum vm_active_merges) + $(vm_metric_sum vm_active_force_merges) ))
        if [ "$merges" = 0 ] && [ "$size" = "$prev" ]; then
            same=$((same + 1))
            [ $same -ge 3 ] && break
        else
            same=0
        fi
        prev=$size
    done
    echo "$size"
}

run_vm() { # $1 jitter, $2 line-protocol file, $3 datums
    local j=$1 lp=$2 datums=$3
    local data=$tmp/vm-data-$j
    vmport=$(free_port)
    "$VM" -httpListenAddr="127.0.0.1:$vmport" -storageDataPath="$data" -retentionPeriod=100y \
        -search.latencyOffset=0s -loggerOutput=stderr 2>>"$tmp/vm.log" &
    local pid=$!
    pids+=("$pid")
    local up=0
    for _ in $(seq 300); do
        if curl -sf "http://127.0.0.1:$vmport/health" >/dev/null; then up=1; break; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [ $up = 1 ] || { tail -20 "$tmp/vm.log" >&2; die "VictoriaMetrics did not start"; }

    rm -rf "$tmp/chunks" && mkdir "$tmp/chunks"
    split -l "$CHUNK_LINES" -d -a 5 "$lp" "$tmp/chunks/c-"
    log "VictoriaMetrics (jitter $j ms): ingesting $(wc -l <"$lp") lines over HTTP"
    local c0 c1 c2 t0 t1
    c0=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    for f in "$tmp"/chunks/c-*; do
        curl -sS --fail -X POST --data-binary @"$f" \
            "http://127.0.0.1:$vmport/write?precision=ms" >/dev/null ||
            die "VictoriaMetrics refused $f"
    done
    c1=$(cpu_ticks "$pid")
    t1=$(date +%s.%N)
    rm -rf "$tmp/chunks"
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$vmport/internal/force_flush")
    [ "$code" = 200 ] || log "warning: /internal/force_flush answered $code"
    # Rows still buffered would land in a new part after the merge: wait for none.
    for _ in $(seq 600); do
        [ "$(vm_metric_sum vm_pending_rows 'type="storage"')" = 0 ] && break
        sleep 0.1
    done
    # The merge runs in the background: wait for no active merge and a steady size, and merge
    # again while a partition still has more than one part.
    local size nparts nmonths
    nmonths=$(echo "$months" | wc -w)
    for attempt in 1 2 3 4 5; do
        for m in $months; do
            code=$(curl -s -o /dev/null -w '%{http_code}' \
                "http://127.0.0.1:$vmport/internal/force_merge?partition_prefix=$m")
            [ "$code" = 200 ] || log "warning: /internal/force_merge?partition_prefix=$m answered $code"
        done
        size=$(vm_settle "$data")
        nparts=$(vm_metric_sum vm_parts 'type="storage/')
        [ "$nparts" -gt "$nmonths" ] || break
        log "VictoriaMetrics: $nparts data parts after force merge $attempt; merging again"
    done
    c2=$(cpu_ticks "$pid")
    local rows
    rows=$(vm_metric_sum vm_rows 'type="storage/')
    put vm.datums "$datums"
    put vm.samples "$rows"
    put vm.ingest_s "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')"
    put vm.cpu_ingest "$(awk -v c="$((c1 - c0))" -v h="$hz" -v d="$datums" 'BEGIN {printf "%.3f", c / h / (d / 1e6)}')"
    put vm.cpu_total "$(awk -v c="$((c2 - c0))" -v h="$hz" -v d="$datums" 'BEGIN {printf "%.3f", c / h / (d / 1e6)}')"
    put vm.bytes_store "$size"
    put vm.bytes_dir "$size"
    log "VictoriaMetrics (jitter $j ms): $size bytes on disk, $rows samples in $(vm_metric_sum vm_parts 'type="storage/') data parts and $(vm_metric_sum vm_parts 'type="indexdb"') index parts; querying"

    local base="http://127.0.0.1:$vmport" lo=$((from - j)) s e
    s=$(secs $lo)
    e=$(secs $to)
    query vm.q1 "$base/api/v1/export?match%5B%5D=$(urlenc "telemetry_VehicleSpeed{vin=\"$vin\"}")&start=$s&end=$e" "" $lo $to
    query vm.q2 "$base/api/v1/export?match%5B%5D=$(urlenc "{vin=\"$vin\"}")&start=$s&end=$e" "" $lo $to
    query vm.q3 "$base/api/v1/query?query=telemetry_Soc&time=$(secs $at)&nocache=1" "" $((at - 300000)) $at
    query vm.q4 "$base/api/v1/query?query=telemetry_Soc&time=$(secs $now)&nocache=1" "" $((now - 300000)) $now
    stop "$pid"
    rm -rf "$data"
}

query() { # $1 key, $2 url, $3 token file or "", $4 $5 timestamp range of the answer's rows
    local out
    out=$(python3 "$here/query_lat.py" --url "$2" ${3:+--token-file "$3"} --n "$QUERIES" \
        --warmup "${QUERY_WARMUP:-10}" \
        --ts-lo "$4" --ts-hi "$5") || out='{"status": "failed"}'
    local status
    status=$(json_get "$out" status)
    if [ "$status" != 200 ]; then
        log "$1: ${2%%\?*} answered $status: skipped ($(json_get "$out" error))"
        put "$1.p50" "n/a ($status)"
        put "$1.p99" "n/a ($status)"
        put "$1.rows" "n/a ($status)"
        return
    fi
    put "$1.p50" "$(json_get "$out" p50_ms)"
    put "$1.p99" "$(json_get "$out" p99_ms)"
    put "$1.rows" "$(json_get "$out" rows)"
    [ "$(json_get "$out" rows)" != 0 ] || log "warning: $1: ${2%%\?*} answered with no rows"
    [ "$(json_get "$out" reconnects)" = 0 ] || log "note: $1: the server closed the connection $(json_get "$out" reconnects) times"
}

# ---- fleetvault -----------------------------------------------------------------------------
run_fv() { # $1 jitter, $2 line-protocol file the VM side got
    local j=$1 lp=$2
    local data=$tmp/fv-data port api
    rm -rf "$data"
    port=$(free_port)
    api=$(free_port)
    # WAL_KEEP: how long WAL files stay once their records are in parts (the server's
    # default, 10 min, serves de-duplication of late resends; 0 shows the steady state).
    # Reads are purpose-bound (docs/privacy.md): the queries run as principal "bench" of
    # role "ops" (service purpose, fleet-wide, real ids), added to the built-in policy.
    python3 - "$root/docs/policy.example.json" "$tmp/policy.json" <<'PY'
import json, sys
pol = json.load(open(sys.argv[1]))
pol["roles"]["ops"] = {
    "comment": "bench: fleet-wide service reads", "actions": ["read"],
    "purposes": {"service": ["default", "location", "events"]}, "requires_ticket": False,
    "max_subjects_per_request": None, "bulk_subjects_threshold": None,
    "aggregate_only": False, "pseudonymise": False, "consented_only": False,
    "location_privacy": False, "energy_sites_only": False, "approves_bulk": False,
    "quota": {"subjects_per_day": None, "rows_per_day": None, "bytes_per_day": None}}
json.dump(pol, open(sys.argv[2], "w"))
PY
    printf '{"store": {"wal_keep": %s}, "policy": "%s"%s}\n' "${WAL_KEEP:-0}" "$tmp/policy.json" \
        "${AUDIT_PREALLOC_KB:+, \"audit_prealloc_kb\": $AUDIT_PREALLOC_KB}" >"$tmp/fv.json"
    $BIN serve --data "$data" --certs "$tmp/certs" --key-file "$tmp/master.key" \
        --listen "127.0.0.1:$port" --api "127.0.0.1:$api" --no-rate-limit --log-level warn \
        --config "$tmp/fv.json" 2>>"$tmp/server.log" &
    local pid=$!
    pids+=("$pid")
    local up=0
    for _ in $(seq 200); do
        if curl -sf "http://127.0.0.1:$api/status" >/dev/null; then up=1; break; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    [ $up = 1 ] || { tail -20 "$tmp/server.log" >&2; die "fleetvault did not start"; }
    # The admin token is kept beside the master key (DATA/admin.token before issue 9); a
    # principal that reads personal data waits for a privacy officer's approval (issue 9):
    # the installation's first privacy officer, active at once, approves "bench".
    local token=$tmp/master.key.admin.token reader=$tmp/bench.token officer=$tmp/officer.token
    [ -e "$token" ] || token=$data/admin.token
    $BIN principal add bench-officer --role privacy-officer --data "$data" \
        --policy "$tmp/policy.json" >"$officer" 2>/dev/null ||
        die "cannot create the bench's privacy officer"
    $BIN principal add bench --role ops --data "$data" --policy "$tmp/policy.json" \
        >"$reader" 2>/dev/null || die "cannot create the bench principal"
    curl -sf -o /dev/null -X POST -H "Authorization: Bearer $(cat "$officer")" \
        "http://127.0.0.1:$api/api/v1/principals/bench/approve" ||
        die "the privacy officer could not approve the bench principal"
    log "fleetvault (jitter $j ms): streaming $VEHICLES vehicles x $DUR virtual s over mutual TLS"
    local c0 c1 c2 t0 t1 out
    c0=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    out=$($BIN simulate --server "wss://127.0.0.1:$port" --certs "$tmp/certs" --quiet \
        --vehicles "$VEHICLES" --seconds "$DUR" --hz $HZ --signals $SIGNALS --seed "$SEED" \
        --virtual-time "$T0" --jitter-ms "$j" --max-inflight "$MAX_INFLIGHT" --drain 120 \
        --influx "$tmp/fv.lp" 2>"$tmp/sim.log" | tail -1) || true
    c1=$(cpu_ticks "$pid")
    t1=$(date +%s.%N)
    local datums unacked
    [ -n "$out" ] || out='{}'
    datums=$(json_get "$out" datums)
    unacked=$(json_get "$out" unacked)
    if [ "$datums" = n/a ]; then
        tail -5 "$tmp/sim.log" >&2
        log "fleetvault: the simulator failed: fleetvault side skipped"
        stop "$pid"
        return
    fi
    [ "$unacked" = 0 ] || log "warning: $unacked records unacked"
    if cmp -s "$tmp/fv.lp" "$lp"; then
        log "fleetvault got the same records as VictoriaMetrics (line-protocol files identical)"
    else
        log "warning: the simulator's records differ from the file VictoriaMetrics got"
    fi
    rm -f "$tmp/fv.lp"
    put fv.datums "$datums"
    put fv.ingest_s "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')"
    put fv.cpu_ingest "$(awk -v c="$((c1 - c0))" -v h="$hz" -v d="$datums" 'BEGIN {printf "%.3f", c / h / (d / 1e6)}')"

    # Flush and full compaction: done when the POST returns, or, when it answers 202, once
    # GET /api/v1/store says "compacting": false.
    local code auth
    auth="Authorization: Bearer $(cat "$token")"
    code=$(curl -s -o "$tmp/compact.out" -w '%{http_code}' --max-time 3600 -X POST \
        -H "$auth" "http://127.0.0.1:$api/api/v1/store/compact") || code=failed
    if [ "$code" = 202 ]; then
        code=timeout
        for _ in $(seq 36000); do
            curl -sf -H "$auth" "http://127.0.0.1:$api/api/v1/store" >"$tmp/store.json" || true
            if [ "$(json_get "$(cat "$tmp/store.json")" compacting 2>/dev/null)" = False ]; then
                code=200
                break
            fi
            sleep 0.1
        done
    fi
    c2=$(cpu_ticks "$pid")
    if curl -sf -H "$auth" "http://127.0.0.1:$api/api/v1/store" >"$tmp/store.json"; then
        put fv.samples "$(json_get "$(cat "$tmp/store.json")" datums)"
    fi
    if [ "$code" = 200 ] || [ "$code" = 204 ]; then
        put fv.cpu_total "$(awk -v c="$((c2 - c0))" -v h="$hz" -v d="$datums" 'BEGIN {printf "%.3f", c / h / (d / 1e6)}')"
    else
        log "fleetvault: POST /api/v1/store/compact: $code: store not compacted, CPU after it skipped ($(head -c 200 "$tmp/compact.out" 2>/dev/null))"
        put fv.cpu_total "n/a ($code)"
    fi
    put fv.bytes_store "$(dusb "$data/store")"
    put fv.bytes_dir "$(dusb "$data")"
    log "fleetvault (jitter $j ms): store $(dusb "$data/store") bytes, data dir $(dusb "$data") bytes; querying"
    if [ -n "${KEEP_STORE:-}" ]; then
        mkdir -p "$KEEP_STORE/j$j" && cp -r "$data/store/." "$KEEP_STORE/j$j/"
    fi
    if [ "${RESTART:-0}" = 1 ]; then
        # Queries on a store just opened (nothing of it in memory), after RESTART_WAIT s.
        stop "$pid"
        $BIN serve --data "$data" --certs "$tmp/certs" --key-file "$tmp/master.key" \
            --listen "127.0.0.1:$port" --api "127.0.0.1:$api" --no-rate-limit --log-level warn \
            --config "$tmp/fv.json" 2>>"$tmp/server.log" &
        pid=$!
        pids+=("$pid")
        up=0
        for _ in $(seq 200); do
            if curl -sf "http://127.0.0.1:$api/status" >/dev/null; then up=1; break; fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        [ $up = 1 ] || { tail -20 "$tmp/server.log" >&2; die "fleetvault did not restart"; }
        sleep "${RESTART_WAIT:-0}"
        log "fleetvault (jitter $j ms): restarted, ${RESTART_WAIT:-0} s waited; querying"
    fi

    local base="http://127.0.0.1:$api" lo=$((from - j))
    # (after a restart the fleet view at the end goes first: the others would fill memory)
    [ "${RESTART:-0}" = 1 ] &&
        query fv.q4 "$base/api/v1/fleet?signal=Soc&at=$now&purpose=service" "$reader" $((now - 300000)) $now
    query fv.q1 "$base/api/v1/query?device=$vin&signals=VehicleSpeed&from=$lo&to=$to&purpose=service" "$reader" $lo $to
    query fv.q2 "$base/api/v1/query?device=$vin&from=$lo&to=$to&purpose=service" "$reader" $lo $to
    query fv.q3 "$base/api/v1/fleet?signal=Soc&at=$at&purpose=service" "$reader" $((at - 300000)) $at
    [ "${RESTART:-0}" = 1 ] ||
        query fv.q4 "$base/api/v1/fleet?signal=Soc&at=$now&purpose=service" "$reader" $((now - 300000)) $now
    stop "$pid"
    # Erasure: destroy one vehicle's data key (server stopped, as `keys shred` requires);
    # every block and WAL record of it is unreadable from then on, whatever their size.
    local e0 e1
    e0=$(date +%s%N)
    if $BIN keys shred --data "$data" --key-file "$tmp/master.key" "$vin" >/dev/null 2>"$tmp/shred.log"; then
        e1=$(date +%s%N)
        put fv.erase_ms "$(awk -v a="$e0" -v b="$e1" 'BEGIN {printf "%.1f", (b - a) / 1e6}')"
    else
        log "fleetvault: keys shred failed: $(head -c 300 "$tmp/shred.log")"
    fi
    rm -rf "$data"
}

# ---- the runs -------------------------------------------------------------------------------
echo "## bench/store $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(uname -r)"
echo
echo "$VEHICLES vehicles x $SIGNALS signals x $DUR s at $HZ Hz from T0 = $T0 ms (seed $SEED);"
echo "fleetvault $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?'),"
vmver=$("$VM" -version 2>/dev/null | head -1)
[ -n "$vmver" ] || vmver=$(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null || echo '?')
echo "VictoriaMetrics $vmver ($VM)."
echo
for j in $JITTERS; do
    : >"$res"
    lp=$tmp/data-$j.lp
    log "jitter $j ms: writing the line-protocol file"
    gen=$($BIN simulate --no-server --virtual-time "$T0" --jitter-ms "$j" --influx "$lp" --quiet \
        --vehicles "$VEHICLES" --seconds "$DUR" --hz $HZ --signals $SIGNALS --seed "$SEED")
    datums=$(json_get "$gen" datums_sent)
    run_vm "$j" "$lp" "$datums"
    run_fv "$j" "$lp"
    rm -f "$lp"
    python3 - "$res" "$j" <<'PY'
import sys
vals = {}
for line in open(sys.argv[1]):
    k, _, v = line.rstrip("\n").partition(" ")
    vals[k] = v

def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None

def get(sys_, m):
    if m.startswith("bpd_"):
        b, d = num(vals.get(f"{sys_}.bytes_{m[4:]}")), num(vals.get(f"{sys_}.datums"))
        return f"{b / d:.3f}" if b is not None and d else "n/a"
    return vals.get(f"{sys_}.{m}", "n/a")

rows = [
    ("datums (signal values)", "datums"),
    ("datums (VM: samples) stored; a location is 2 samples", "samples"),
    ("ingest wall time, s (client included)", "ingest_s"),
    ("server CPU-s per million datums, ingest", "cpu_ingest"),
    ("server CPU-s per million datums, ingest + flush + full merge", "cpu_total"),
    ("bytes on disk, store (VM: whole data dir)", "bytes_store"),
    ("bytes per datum, store", "bpd_store"),
    ("bytes on disk, whole data dir", "bytes_dir"),
    ("bytes per datum, whole data dir", "bpd_dir"),
    ("erase one vehicle (fleetvault keys shred, whole process), ms", "erase_ms"),
]
for q, what in (("q1", "1 signal of 1 vehicle, whole range"),
                ("q2", "all signals of 1 vehicle, whole range"),
                ("q3", "1 signal of every vehicle at one instant"),
                ("q4", "1 signal of every vehicle at the data's end")):
    rows += [(f"{what}: p50 ms", f"{q}.p50"), (f"{what}: p99 ms", f"{q}.p99"),
             (f"{what}: timestamps in answer (fleetvault: records, VM: samples)", f"{q}.rows")]
print(f"Jitter {sys.argv[2]} ms:")
print()
print("| metric | fleetvault | VictoriaMetrics | fleetvault / VM |")
print("|---|---|---|---|")
for label, m in rows:
    a, b = get("fv", m), get("vm", m)
    ra, rb = num(a), num(b)
    ratio = f"{ra / rb:.2f}" if ra is not None and rb else "-"
    print(f"| {label} | {a} | {b} | {ratio} |")
print()
PY
done
echo "Queries: median and p99 of $QUERIES GETs on one keep-alive connection each; VictoriaMetrics"
echo "answers /api/v1/export (JSON lines) for the ranges and /api/v1/query (nocache=1, 5 min"
echo "lookback) for the instant; fleetvault /api/v1/query and /api/v1/fleet. Server CPU only:"
echo "fleetvault's includes mutual TLS, sealing and the fsync'd WAL; VictoriaMetrics' plain HTTP."
