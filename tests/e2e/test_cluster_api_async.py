"""An api node that waits for the shards' owners without holding its API thread
(docs/cluster.md, "Queries through an api node", rule 13; server/clusterapi.h Q9, api/http.h
H3). One nats-server, one gateway, two storage nodes splitting the shards, one api node with
query_timeout_ms 3000. A small fleet streams in; then one storage node is stopped with SIGSTOP
(its leases live on, its shards answer nothing) and, while a fleet read through the api node
waits the 3 s for it and ends in 504:
- /status, /metrics and a request the api node answers itself are answered at once;
- a one-device read of a vehicle whose owner is alive is answered at once (its owner says
  "here": no other shard's answer can change it);
- a second fleet read started meanwhile ends 3 s after its own start, not after the first's;
- a client that disconnects while its request waits frees its place;
- past FV_CLUSTER_INFLIGHT_MAX (64) requests waiting, 503 at once with Retry-After.
SIGCONT at the end: the fleet view is whole again; and the api node stopped while a read
waits exits cleanly. Last, an owner played over NATS answers a one-device read's first piece
and never the next: the api node serves /status meanwhile and ends the answer short after
3 s. Before, the API thread waited in each
forwarded request: every other request waited behind it."""
import json
import signal
import socket
import subprocess
import threading
import time

import clustertest
import fvtest as t
from clustertest import get_timed as get
from test_cluster import acked_records, with_nats
from test_cluster_api import PROBE

SHARDS = 8
TIMEOUT_MS = 3000
QUICK = 1.0  # seconds: an answer that did not wait for the silent shard (main: >= 3 s)
INFLIGHT_MAX = 64


def node(env, name, nats, role, key_file=None, **extra):
    # a long lease: the node stopped (SIGSTOP) keeps its shards while the api node waits
    return clustertest.node(env, name, nats, role, key_file, ttl_ms=60000, **extra)


def in_thread(fn, *args, **kw):
    """Starts fn in a thread; returns a function that joins it and gives fn's result."""
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("r", fn(*args, **kw)))
    th.start()
    return lambda: (th.join(), out["r"])[1]


def raw_request(srv, path):
    """A socket that sent GET path (with ops' token) and reads nothing yet."""
    s = socket.create_connection(("127.0.0.1", srv.api_port), timeout=10)
    s.sendall(f"GET {path}&purpose=service HTTP/1.1\r\nHost: x\r\n"
              f"Authorization: Bearer {srv.tokens['ops']}\r\n\r\n".encode())
    return s


def test_cluster_api_async():
    with_nats(run)


def run(env, nats):
    a, b, api = clustertest.owners_and_api(env, nats, node, query_timeout_ms=TIMEOUT_MS)
    gw = clustertest.gateway(env, nats, a.key_file)
    # 12 vehicles: some on each storage node (with 8, all on one is 1 run in 128)
    r, acked_log = clustertest.stream(env, gw, 12, 3, "5YJAS")
    vins = sorted({vin for vin, _ in acked_records(acked_log)})
    gw.stop()

    def stored(srv, vin):
        st, body, _, _ = get(srv, f"/api/v1/query?device={vin}&signals=Soc")
        return st == 200 and json.loads(body)["rows"]
    t.wait_until("every vehicle to be stored", lambda: all(
        stored(a, v) or stored(b, v) for v in vins), timeout=40, step=0.5)
    on_a = [v for v in vins if stored(a, v)]
    assert on_a and len(on_a) < len(vins), f"every vehicle on one storage node: {on_a}"

    q = "/api/v1/fleet?signal=Soc&lookback=1d"
    st, body, _, _ = get(api, q)
    view = json.loads(body)
    assert st == 200 and view["count"] == len(vins), (st, body)

    # One owner silent: SIGSTOP keeps its NATS connection and its leases.
    b.proc.send_signal(signal.SIGSTOP)
    try:
        first = in_thread(get, api, q)
        time.sleep(0.3)  # the fleet read waits for shard of b now
        for path, token in (("/status", None), ("/metrics", None),
                            ("/api/v1/stats/history", "ops")):
            st, body, _, took = get(api, path, token=token, purpose=None)
            assert st == 200 and took < QUICK, (path, st, took, body[:200])
        st, body, _, took = get(api, f"/api/v1/query?device={on_a[0]}&signals=Soc")
        assert st == 200 and json.loads(body)["rows"] and took < QUICK, (st, took, body[:200])
        t.log(f"during a fleet read's wait: /status, /metrics, a local read and a vehicle of "
              f"the live owner each answered within {QUICK} s (this one {took:.3f} s)")
        second = in_thread(get, api, q)
        gone = raw_request(api, q)  # a client that leaves while its request waits
        time.sleep(0.2)
        gone.close()
        st, body, retry, took = first()
        assert st == 504 and b"did not answer within 3000 ms" in body and retry == "5", \
            (st, body, retry)
        assert TIMEOUT_MS / 1000 - 0.1 <= took < TIMEOUT_MS / 1000 + 2, took
        st, body, retry, took2 = second()
        assert st == 504 and took2 < TIMEOUT_MS / 1000 + 2, (st, took2)
        t.log(f"fleet reads with a silent owner: 504 after {took:.2f} s and {took2:.2f} s")

        # At most 64 requests wait; beyond, 503 at once. Those whose clients leave free
        # their places: a request made just after they left waits its turn (504), not 503.
        socks = [raw_request(api, q) for _ in range(INFLIGHT_MAX)]
        time.sleep(0.5)
        st, body, retry, took = get(api, q)
        assert st == 503 and b"wait for the shards' owners already" in body and retry == "5" \
            and took < QUICK, (st, body, took)
        st, body, _, took = get(api, "/status", token=None, purpose=None)
        assert st == 200 and took < QUICK, (st, took)
        assert api.metric("fleetvault_cluster_queries_waiting") == INFLIGHT_MAX
        t_close = time.time()
        for s in socks:
            s.close()
        t.wait_until("the requests of the clients that left to be freed", lambda: api.metric(
            "fleetvault_cluster_queries_waiting") == 0, timeout=2, step=0.05)
        freed = time.time() - t_close
        st, body, _, took = get(api, q)
        assert st == 504, (st, body, took)
        t.log(f"{INFLIGHT_MAX} waiting: the next 503 at once; their clients left: freed within "
              f"{freed:.2f} s; the next request 504 after {took:.2f} s")
    finally:
        b.proc.send_signal(signal.SIGCONT)
    t.wait_until("the fleet view to be whole again", lambda: get(api, q)[0] == 200, timeout=20)
    st, body, _, _ = get(api, q)
    assert json.loads(body)["count"] == len(vins), body
    # The api node stopped while a request waits: a clean stop (exit 0, nothing leaked under
    # ASan), the waiting client's connection closed.
    b.proc.send_signal(signal.SIGSTOP)
    try:
        def waiting_read():
            try:
                return get(api, q)[0]
            except OSError as e:  # the connection closed by the stopping node
                return str(e)
        late = in_thread(waiting_read)
        t.wait_until("a read to wait for the silent owner", lambda: api.metric(
            "fleetvault_cluster_queries_waiting") == 1, timeout=2, step=0.05)
        api.stop()
        t.log(f"api node stopped while a read waited: {late()}")
    finally:
        b.proc.send_signal(signal.SIGCONT)
    for s in (a, b):
        s.stop()

    # A one-device answer in pieces whose owner stops answering after the first piece (an
    # owner played here, over NATS, for shard 0: the storage nodes are stopped): while the
    # api node waits for the next piece, it serves others; after 3 s the answer ends short.
    api = node(env, "api2", nats, "api", a.key_file, query_timeout_ms=TIMEOUT_MS)
    owner = FakeOwner(nats.port, a.key_file)
    try:
        s = raw_request(api, "/api/v1/query?device=5YJASNOSUCH00000&signals=Soc")
        t0 = time.time()
        head = b""
        while b"first piece" not in head:  # the headers and the first piece: one write or two
            chunk = s.recv(65536)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head
        t.wait_until("the api node to ask for the next piece", lambda: owner.pulls, timeout=2)
        st, body, _, took = get(api, "/status", token=None, purpose=None)
        assert st == 200 and took < QUICK, (st, took)
        rest = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        ended = time.time() - t0
        s.close()
        assert not (head + rest).endswith(b"0\r\n\r\n"), (head, rest)  # short, never whole
        assert TIMEOUT_MS / 1000 - 0.1 <= ended < TIMEOUT_MS / 1000 + 2, ended
        t.log(f"a streamed answer's silent owner: /status in {took:.3f} s meanwhile; the "
              f"answer ended short after {ended:.2f} s")
    finally:
        owner.stop()
    api.stop()


class FakeOwner:
    """Plays the storage node of every shard (jsquery.h; tests/support/fvq_probe --owner, which
    seals as the nodes do, J5): shard 0 holds the device and answers its first piece with more
    to come (J1), the others "not here"; a pull of the next piece (J2) is counted and never
    answered."""

    def __init__(self, port, key_file):
        self.pulls = 0
        self.proc = subprocess.Popen(
            [PROBE, "--owner", f"nats://127.0.0.1:{port}", "FLEETVAULT", key_file],
            stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        self.th = threading.Thread(target=self.serve, daemon=True)
        self.th.start()

    def serve(self):
        for line in self.proc.stdout:
            if line.startswith("pull "):
                self.pulls += 1

    def stop(self):
        self.proc.terminate()
        assert self.proc.wait(timeout=10) == 0
        self.th.join()


if __name__ == "__main__":
    t.main([test_cluster_api_async])
