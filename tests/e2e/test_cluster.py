"""Cluster on NATS JetStream (docs/cluster.md, issue 15): a real `nats-server -js` on
127.0.0.1, gateways (--role gateway: records published to the stream, devices acked on
the PubAck) and one storage node (--role storage: durable pull consumers per shard into its
store). Simulated vehicles stream through two gateways; the storage node is killed with
SIGKILL mid-stream and restarted. Afterwards every record the simulator saw acked is on the
storage node exactly once (its WAL, read by `inspect --txids`, and its query API), and the
stream's consumers have nothing left to deliver, which `fleetvault cluster status` reports
too (and lag while the storage node is down, an unowned shard, NATS down, no stream). Also:
the role and "cluster" config errors.
FV_CLUSTER_VEHICLES (default 12) and FV_CLUSTER_SECONDS (default 12) scale it."""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import fvtest as t

VEHICLES = int(os.environ.get("FV_CLUSTER_VEHICLES", "12"))
SECONDS = int(os.environ.get("FV_CLUSTER_SECONDS", "12"))
SHARDS = 4
NODE = "st1"  # the storage node's name: its consumers are fv-st1-shard-N
CATCHUP = float(os.environ.get("FV_CLUSTER_CATCHUP", "30"))  # seconds


class Nats:
    """One nats-server with JetStream, its own store directory, random ports."""

    def __init__(self, root, conf=None):
        self.bin = shutil.which("nats-server") or "/usr/sbin/nats-server"
        assert os.path.exists(self.bin), "nats-server is not installed (scripts/deps.sh)"
        self.conf = None  # conf: nats-server configuration text (e.g. "max_payload: 8192")
        if conf:
            self.conf = os.path.join(root, "nats.conf")
            with open(self.conf, "w") as f:
                f.write(conf + "\n")
        self.dir = os.path.join(root, "nats")
        self.port = t.free_port()
        self.mon = t.free_port()
        self.log_path = os.path.join(root, "nats.log")
        self.proc = None

    def start(self):
        self.logf = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [self.bin, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.mon),
             "-sd", self.dir] + (["-c", self.conf] if self.conf else []),
            stdout=self.logf, stderr=self.logf)
        t.wait_until("nats-server", lambda: self.jsz() is not None, timeout=15, step=0.1)
        return self

    def jsz(self):
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.mon}/jsz?consumers=true", timeout=2) as r:
                return json.load(r)
        except OSError:
            return None

    def consumers(self):
        """{name: (num_pending, num_ack_pending)} of the stream FLEETVAULT."""
        out = {}
        for a in (self.jsz() or {}).get("account_details", []):
            for s in a.get("stream_detail", []):
                if s["name"] == "FLEETVAULT":
                    for c in s.get("consumer_detail", []):
                        out[c["name"]] = (c["num_pending"], c["num_ack_pending"])
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.logf.close()


_gateways = []  # every Gateway started: killed when a test ends, whatever happened


def kill_gateways():
    for g in _gateways:
        if g.proc and g.proc.poll() is None:
            g.proc.kill()
            g.proc.wait()
    _gateways.clear()


def with_nats(run, conf=None):
    """run(env, nats) with a fresh test directory and one nats-server (conf: its configuration
    text, or None); the gateways and the server stopped whatever happens."""
    with t.Env() as env:
        nats = Nats(env.root, conf).start()
        try:
            run(env, nats)
        finally:
            kill_gateways()
            nats.stop()


class Gateway:
    """fleetvault serve --role gateway: no API, no store; ready when it accepts TCP."""

    def __init__(self, root, certs, key_file, config, env=None, rate_limit=False):
        self.root = root
        self.env = env  # more environment for the process (FV_FAULT_KV_DELAY_MS, ...)
        self.rate_limit = rate_limit  # False: --no-rate-limit
        os.makedirs(root, exist_ok=True)
        self.certs = certs
        self.key_file = key_file
        self.port = t.free_port()
        self.api_port = t.free_port()
        self.config = os.path.join(root, "config.json")
        with open(self.config, "w") as f:
            json.dump(config, f)
        self.log_path = os.path.join(root, "gateway.log")
        self.proc = None

    def start(self):
        self.logf = open(self.log_path, "a")
        _gateways.append(self)
        self.proc = subprocess.Popen(
            [t.BIN, "serve", "--role", "gateway", "--config", self.config, "--data",
             os.path.join(self.root, "data"), "--certs", self.certs.dir, "--key-file",
             self.key_file, "--listen", f"127.0.0.1:{self.port}", "--api",
             f"127.0.0.1:{self.api_port}"] + ([] if self.rate_limit else ["--no-rate-limit"]),
            stdout=self.logf, stderr=self.logf,
            env={**os.environ, **self.env} if self.env else None)

        def up():
            assert self.proc.poll() is None, "gateway exited:\n" + self.log()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        t.wait_until("the gateway's device port", up, timeout=20, step=0.1)
        return self

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def http(self, path):
        """(status, body) of GET path on the gateway's /status and /metrics listener."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}{path}",
                                        timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self):
        st, body = self.http("/metrics")
        assert st == 200, (st, body)
        return {k: float(v) for k, v in (line.split(" ", 1) for line in body.splitlines()
                                          if line and not line.startswith("#") and "{" not in line)}

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.logf.close()


def cluster_cfg(nats, **extra):
    urls = nats.urls() if hasattr(nats, "urls") else [f"nats://127.0.0.1:{nats.port}"]
    c = {"nats": urls, "replicas": 1, "shards": SHARDS}
    c.update(extra)
    return c


def cluster_status(root, cluster, name="status.json"):
    """`fleetvault cluster status --json` with a config holding cluster: (exit status, the
    parsed JSON or None, stderr)."""
    path = os.path.join(root, name)
    with open(path, "w") as f:
        json.dump({"cluster": cluster}, f)
    r = t.run("cluster", "status", "--config", path, "--json", check=False, timeout=30)
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None, r.stderr


def total_lag(st):
    return sum(c["pending"] for s in st["shards"] for c in s["consumers"])


def acked_records(path):
    """{(VIN, TXID): CREATED_MS} of the simulator's acked log (refused records left out)."""
    acked = {}
    with open(path) as f:
        for line in f:
            parts = line.split()  # VIN TXID CREATED_MS, or VIN TXID E when refused
            if len(parts) == 3 and parts[2] != "E":
                acked[(parts[0], parts[1])] = int(parts[2])
    return acked


def wal_exactly_once(storage, acked):
    """Every acked (VIN, TXID) once in the stopped storage node's WAL (`inspect --txids`)."""
    stored = {}
    r = t.run("inspect", storage.data, "--txids", "--key-file", storage.key_file)
    for line in r.stdout.splitlines():
        dev, txid = line.split(" ", 1)
        if txid:
            stored[(dev, txid)] = stored.get((dev, txid), 0) + 1
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acked records lost, e.g. {sorted(missing)[:5]}"
    twice = [k for k, n in stored.items() if n > 1]
    assert not twice, f"{len(twice)} records stored twice, e.g. {twice[:5]}"


def run_cluster(env, disturb, gateways=1, nats=None, replicas=1, store=None, after=None,
                storage_env=None):
    """nats-server, a storage node and gateways; simulated vehicles stream through each
    gateway while disturb(storage) runs, then after(storage, nats) (when given) once they
    are done; then every acked record must be on the storage node exactly once: queryable
    through its API, once in its WAL (or its parts, when store deletes WAL files).
    store: more of the storage node's "store" config; storage_env: more of its environment."""
    own = nats is None
    if own:
        nats = Nats(env.root).start()
    try:
        st_root = os.path.join(env.root, "storage")
        os.makedirs(st_root)
        # Every node its own catalog: the keys they share are in the KV bucket
        # (docs/cluster.md, "Keys"); the flush interval makes parts during the run.
        # Its leases (jslease.h) renewed every second and expiring after 5 s: a node restarted
        # after SIGKILL waits for its previous run's node key to expire (E5).
        storage = t.Server(st_root, env.certs, config={
            "cluster": cluster_cfg(nats, replicas=replicas, node=NODE, lease_renew_ms=1000,
                                   lease_ttl_ms=5000),
            "store": {"flush_interval": "2s", **(store or {})}},
            extra=["--role", "storage", "--no-rate-limit"])
        storage.env = dict(storage_env or {})
        storage.start()
        gws = [Gateway(os.path.join(env.root, f"gateway{k}"), env.certs, storage.key_file,
                       {"cluster": cluster_cfg(nats, replicas=replicas)}).start()
               for k in range(gateways)]
        for gw in gws:  # no shared file: each its own DATA/catalog.db
            assert os.path.exists(os.path.join(gw.root, "data", "catalog.db"))
        sims = []
        for k, gw in enumerate(gws):  # each gateway its own vehicles
            acked_log = os.path.join(env.root, f"acked{k}.log")
            sim_log = open(os.path.join(env.root, f"sim{k}.log"), "w")
            sims.append((subprocess.Popen(
                [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{gw.port}", "--certs",
                 env.certs.dir, "--vehicles", str(VEHICLES // gateways), "--seconds",
                 str(SECONDS), "--hz", "5", "--drain", "60", "--acked-log", acked_log,
                 "--quiet", "--id-prefix", f"5YJGW{k}", "--seed",
                 str(random.randrange(1 << 30))],
                stdout=subprocess.PIPE, stderr=sim_log, text=True), sim_log, acked_log))
        disturb(storage)
        acked = {}
        for (sim, sim_log, acked_log), gw in zip(sims, gws):
            out, _ = sim.communicate(timeout=SECONDS + 120)
            sim_log.close()
            final = json.loads(out.strip().splitlines()[-1])
            t.log(f"simulator: {final}")
            assert sim.returncode == 0, f"simulator left records unacked: {final}"
            assert final["acked"] > 0 and final["acked"] + final["errors"] == final["sent"], final
            mine = acked_records(acked_log)
            assert len(mine) == final["acked"], (len(mine), final["acked"])
            acked.update(mine)
            # The gateway's own view (its /metrics): every acked record was published and
            # PubAcked (its connectivity records too: at least as many), and soon none is
            # awaited (the disconnect records of the simulator's close are published after
            # its last ack: their PubAcks may still be on their way).
            def settled():
                m = gw.metrics()
                return m["fleetvault_cluster_publish_outstanding"] == 0 and m
            m = t.wait_until("the gateway's last PubAcks", settled, timeout=15, step=0.1)
            assert m["fleetvault_cluster_published_total"] >= final["acked"], m
            assert m["fleetvault_cluster_pubacks_total"] >= final["acked"], m
            assert m["fleetvault_acks_total"] >= final["acked"], m
            # U1: a gateway authenticates no one, so it keeps no principals in sync
            assert "principals in sync" not in gw.log(), gw.log()[-2000:]
        if after:
            after(storage, nats)

        # The storage node catches up: every shard's consumer delivered and acked all.
        def caught_up():
            cs = nats.consumers()
            return len(cs) == SHARDS and all(p == (0, 0) for p in cs.values())
        t.wait_until("the storage node to consume the stream", caught_up, timeout=CATCHUP)

        # `cluster status` says the same: every shard owned, nothing left to deliver.
        rc, st, err = cluster_status(env.root, cluster_cfg(nats, replicas=replicas))
        assert rc == 0 and st, (rc, err)
        s = st["stream"]
        assert st["health"] == "ok" and s["name"] == "FLEETVAULT", st
        assert s["subjects"] == ["fv.rec.>"] and s["replicas"] == replicas, s
        assert s["messages"] >= len(acked) and s["last_seq"] >= s["messages"], (s, len(acked))
        assert st["shards_unowned"] == 0 and len(st["shards"]) == SHARDS, st
        assert [(n["name"], n["shards"]) for n in st["nodes"]] == [(NODE, SHARDS)], st
        for sh in st["shards"]:
            assert sh["owned"] and sh["owner"] == NODE and [
                c["name"] for c in sh["consumers"]] == [f"fv-{NODE}-shard-{sh['shard']}"], sh
            c = sh["consumers"][0]
            assert c["pending"] == 0 and c["ack_pending"] == 0, sh
            # stream sequences: the last acked of the shard's (0 for a consumer made again past
            # everything, test_consumers_deleted_midstream), the last the server looked at
            assert c["ack_floor_seq"] <= c["delivered_seq"] <= s["last_seq"], (sh, s)
        # One shard more than the storage node consumes: unowned, degraded (exit 1).
        rc, st, err = cluster_status(env.root, cluster_cfg(nats, replicas=replicas,
                                                           shards=SHARDS + 1))
        assert rc == 1 and st["health"] == "degraded" and st["shards_unowned"] == 1, (rc, st)
        assert not st["shards"][SHARDS]["owned"] and not st["shards"][SHARDS]["consumers"], st

        # Queryable on the storage node, once each: every acked record's time appears in its
        # vehicle's rows (head and parts, through the query API), no time twice.
        times = {}
        for (vin, _), ms in acked.items():
            times.setdefault(vin, []).append(ms)
        st = storage.json("/api/v1/store")
        t.log(f"storage node's store: {st['parts']} parts, {st['flushes']} flushes")
        for vin, want in times.items():
            rows = [r["t"] for r in storage.json(
                f"/api/v1/query?device={vin}&signals=Soc")["rows"]]
            assert len(rows) == len(set(rows)), f"{vin}: records stored twice"
            missing = set(want) - set(rows)
            assert not missing, f"{vin}: {len(missing)} acked records not queryable"

        for gw in gws:
            gw.stop()
        storage.stop()
        if store and "wal_keep" in store:
            return  # the WAL no longer holds every record: the query API checked them
        wal_exactly_once(storage, acked)
        ins = storage.inspect()
        assert ins["totals"]["duplicate_txids"] == 0, ins["totals"]
        t.log(f"{len(acked)} acked records on the storage node exactly once "
              f"({ins['totals']['records']} records in its WAL)")
    finally:
        kill_gateways()
        if own:
            nats.stop()


def test_stream_kill9_storage_exactly_once():
    """Two gateways; the storage node killed with SIGKILL twice mid-stream and restarted.
    While it is down, `cluster status` shows its consumers' lag growing."""
    def disturb(storage):
        for k in range(2):
            time.sleep(random.uniform(SECONDS / 5, SECONDS / 3))
            storage.kill9()
            if k == 0:
                root = os.path.dirname(storage.root)
                cfg = json.load(open(storage.config))["cluster"]
                lagging = []

                def lag():
                    rc, st, err = cluster_status(root, cfg)
                    # the durable consumers outlive the node; its leases too, until they
                    # expire (then the health is degraded: exit 1)
                    assert rc in (0, 1), (rc, err)
                    lagging[:] = [total_lag(st)]
                    return lagging[0] > 0
                t.wait_until("cluster status to show the dead node's lag", lag, timeout=5,
                             step=0.1)
                t.log(f"cluster status: lag {lagging[0]} with the storage node down")
            time.sleep(random.uniform(0.2, 1.0))
            storage.start()
    with t.Env() as env:
        run_cluster(env, disturb, gateways=2)


def test_storage_stops_with_records_fetched_not_logged():
    """The storage node's WAL fails (every write from the 6th of a restart on): it stops with
    records fetched from the stream but in no file, never acked. Restarted, it must take those
    before newer ones (cluster/jsconsume.h C4): a cursor or an ack "all" past them would lose
    them for good."""
    def disturb(storage):
        time.sleep(SECONDS / 5)
        storage.kill9()
        storage.env = {"FV_FAULT": "write:6+:EIO", "FV_FAULT_LOG": "1"}
        if storage.try_start():  # it may fail while catching up, before it answers
            t.wait_until("the storage node to stop on the failed WAL",
                         lambda: storage.proc.poll() is not None, timeout=SECONDS)
            storage.logf.close()
        assert "fv-fault: inject write" in storage.log(), storage.log()[-2000:]
        assert storage.proc.returncode != 0
        time.sleep(1.0)  # newer records reach the stream meanwhile
        storage.env = {}
        storage.start()
    with t.Env() as env:
        run_cluster(env, disturb)


def test_restart_after_wal_trimmed_exactly_once():
    """The storage node's WAL files deleted as soon as parts cover them (wal_keep 0), so its
    cursor records go with them (cluster/jsconsume.h C8). Once it has taken everything and
    flushed, it is killed with SIGKILL and its consumers are deleted (lost with their server,
    or an operator's mistake): the consumers' ack floors are gone, and the WAL names no
    position. Restarted, the node must resume from the position it stored (DATA/shard-cursors)
    and not take the stream's records again: each acked record once in its store."""
    def disturb(storage):
        time.sleep(SECONDS / 3)
        storage.kill9()  # mid-stream too: some of the WAL's files held a dead run's records
        storage.start()

    def after(storage, nats):
        def trimmed():
            cs = nats.consumers()
            st = storage.json("/api/v1/store")
            return (len(cs) == SHARDS and all(p == (0, 0) for p in cs.values()) and
                    st["head_records"] == 0 and storage.metric("fleetvault_wal_files") == 1)
        t.wait_until("the storage node to flush everything and delete its WAL files", trimmed,
                     timeout=CATCHUP)
        storage.kill9()
        for k in range(SHARDS):
            js_request(nats.port, f"$JS.API.CONSUMER.DELETE.FLEETVAULT.fv-{NODE}-shard-{k}")
        t.wait_until("the consumers to be deleted", lambda: not nats.consumers(), timeout=10)
        storage.start()
        t.wait_until("the storage node to take its shards again",
                     lambda: storage.metric("fleetvault_cluster_shards_owned") == SHARDS,
                     timeout=CATCHUP)
    with t.Env() as env:
        run_cluster(env, disturb, store={"wal_keep": "0s"}, after=after)


def js_request(port, subject):
    """Publishes an empty JetStream API request over NATS's text protocol (no reply read)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.recv(4096)  # INFO
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        s.sendall(f"PUB {subject} _INBOX.fvtest 0\r\n\r\nPING\r\n".encode())
        buf = b""
        while b"PONG" not in buf:
            chunk = s.recv(4096)
            assert chunk, "NATS closed the connection"
            buf += chunk


def test_consumers_deleted_midstream():
    """Every shard's consumer deleted under the running storage node (an operator's mistake,
    or a consumer lost with its server): the node notices (cluster/jsconsume.h C6), makes them
    again from its cursors, and still has every acked record exactly once."""
    nats_box = []

    def disturb(storage):
        time.sleep(SECONDS / 3)
        for k in range(SHARDS):
            js_request(nats_box[0].port,
                       f"$JS.API.CONSUMER.DELETE.FLEETVAULT.fv-{NODE}-shard-{k}")
        t.wait_until("the storage node to make its consumers again",
                     lambda: "consumer made again" in storage.log(), timeout=15)
    with t.Env() as env:
        nats = Nats(env.root).start()
        nats_box.append(nats)
        try:
            # No node has made the stream yet: `cluster status` says so (exit 2) and, being
            # read-only, does not make it.
            rc, st, err = cluster_status(env.root, cluster_cfg(nats))
            assert rc == 2 and st is None, (rc, st, err)
            assert "no stream FLEETVAULT on NATS at nats://127.0.0.1:" in err, err
            assert nats.jsz()["streams"] == 0, nats.jsz()
            run_cluster(env, disturb, nats=nats)
        finally:
            nats.stop()


def test_gap_while_nats_does_not_answer():
    """A delivery lost on its way (the consumer's delivery sequence jumps, cluster/jsconsume.h
    C5) while NATS does not answer the consumer's delete (its server lost, a leader being
    elected: FV_FAULT_JS_GAP drops the 40th message fetched and makes the delete after it time
    out). The node must not stop (it did: the CI run of 2026-12-03 lost a storage node this
    way after a NATS server's death); the shard waits for C6 and is made again from its
    cursor, and every acked record is stored exactly once."""
    def disturb(storage):
        t.wait_until("the lost delivery and the delete that timed out",
                     lambda: "trying again in" in storage.log(), timeout=SECONDS + 30)
        assert storage.proc.poll() is None, storage.log()[-3000:]
        t.wait_until("the shard's consumer made again after it",
                     lambda: storage.log().count("consumer made again") >= 2, timeout=20)
    with t.Env() as env:
        run_cluster(env, disturb, storage_env={"FV_FAULT_JS_GAP": "40"})


def serve_fails(env, config, *args):
    path = os.path.join(env.root, "bad.json")
    with open(path, "w") as f:
        json.dump(config, f)
    r = t.run("serve", "--config", path, "--data", os.path.join(env.root, "bad"), "--certs",
              env.certs.dir, *args, check=False, timeout=20)
    assert r.returncode != 0, r
    return r.stderr


def test_role_and_config_errors():
    with t.Env() as env:
        e = serve_fails(env, {}, "--role", "gateway")
        assert 'needs a "cluster" object' in e, e
        e = serve_fails(env, {}, "--role", "router")
        assert "--role 'router': use all|gateway|storage|api" in e, e
        e = serve_fails(env, {}, "--role", "api")
        assert 'role api needs a "cluster" object' in e, e
        e = serve_fails(env, {"cluster": {"nats": ["nats://127.0.0.1:1"]}})
        assert "run each node with --role gateway, storage or api" in e, e
        e = serve_fails(env, {"cluster": {"replicas": 3}}, "--role", "storage")
        assert "cluster.nats: required" in e, e
        e = serve_fails(env, {"cluster": {"nats": "http://x:1"}}, "--role", "storage")
        assert "cluster.nats: expected" in e, e
        e = serve_fails(env, {"cluster": {"nats": "nats://x:1", "replicas": 7}}, "--role",
                        "storage")
        assert "cluster.replicas: expected an integer from 1 to 5" in e, e
        e = serve_fails(env, {"cluster": {"nats": "nats://x:1", "shards": 4,
                                          "owned_shards": [1, 4]}}, "--role", "storage")
        assert "cluster.owned_shards: shard 4, but there are 4" in e, e
        e = serve_fails(env, {"cluster": {"nats": "nats://x:1", "stream": "a.b"}}, "--role",
                        "gateway")
        assert "cluster.stream: expected" in e, e
        e = serve_fails(env, {"cluster": {"nats": "nats://x:1", "colour": 1}}, "--role",
                        "gateway")
        assert 'cluster: unknown key "colour"' in e, e
        e = serve_fails(env, {"cluster": {"nats": "nats://x:1", "lease_renew_ms": 2000,
                                          "lease_ttl_ms": 5000}}, "--role", "storage")
        assert ("cluster.lease_ttl_ms: 5000, but it must be at least 3 times "
                "cluster.lease_renew_ms (2000)") in e, e
        e = serve_fails(env, {"cluster": {"nats": "nats://x:1", "lease_renew_ms": 50}},
                        "--role", "storage")
        assert "cluster.lease_renew_ms: expected an integer from 100 to 60000" in e, e
        e = serve_fails(env, {"cluster": {"nats": "nats://x:1", "node": "a.b"}}, "--role",
                        "storage")
        assert "cluster.node: expected 1 to 64 of A-Z a-z 0-9 _ -" in e, e
        e = serve_fails(env, {"cluster": {"nats": "nats://x:1", "stream_max_age_days": 0}},
                        "--role", "storage")
        assert "cluster.stream_max_age_days: expected an integer from 1 to 3650" in e, e

        # cluster status: NATS not reachable, a config without "cluster", bad usage.
        rc, st, err = cluster_status(env.root, {"nats": f"nats://127.0.0.1:{t.free_port()}"})
        assert rc == 2 and st is None, (rc, st, err)
        assert "fleetvault cluster status: cluster: cannot connect to NATS at nats://127.0.0.1:" \
            in err, err
        path = os.path.join(env.root, "single.json")
        with open(path, "w") as f:
            json.dump({"store": {"flush_interval": "2s"}}, f)
        r = t.run("cluster", "status", "--config", path, check=False)
        assert r.returncode == 2 and 'single.json has no "cluster" object' in r.stderr, r
        r = t.run("cluster", "status", check=False)
        assert r.returncode == 2 and "--config FILE is required" in r.stderr, r
        r = t.run("cluster", "--help")
        assert "fleetvault cluster status --config FILE [--json]" in r.stdout, r
        assert "cluster " in t.run("--help").stdout


if __name__ == "__main__":
    t.main([test_role_and_config_errors, test_stream_kill9_storage_exactly_once,
            test_storage_stops_with_records_fetched_not_logged, test_consumers_deleted_midstream,
            test_restart_after_wal_trimmed_exactly_once, test_gap_while_nats_does_not_answer])
