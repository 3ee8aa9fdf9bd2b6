"""Latest state, the connection cap and rate limits whichever gateway a device lands on
(issue 15 item 2; docs/cluster.md, "Presence"): a real `nats-server -js`, one storage node and
two gateways with the same rate limit (V: 5 records/s, burst 5).

1. A device streams through gateway 0, opens a second connection on gateway 1 while the
   first is still open, closes it, comes back to gateway 0; the storage node restarts; then
   gateway 0 is killed with SIGKILL. The storage node's state, vehicle list and fleet view follow it (values, times,
   "connected"), as a single node's do; the older connection on the other gateway is closed
   (one device, one gateway: as on one node, the newest connection is the one that counts).
2. A device hopping between the gateways every 0.4 s, then one connected to both at once,
   sending as fast as it is answered, gets no more than RATE x T + 2 x BURST records acked
   over T seconds (the bound of docs/cluster.md P6), and is not starved either."""
import os
import signal
import socket
import time
from contextlib import contextmanager

import fvtest as t
from test_cluster import Gateway, Nats, cluster_cfg, kill_gateways

RATE, BURST = 5.0, 5
RATES = {"rate_limits": {"V": {"per_second": RATE, "burst": BURST}}}
T0 = 1767225600000  # 2026-01-01, records' times: T0 + i s


@contextmanager
def cluster(env):
    nats = Nats(env.root).start()
    try:
        st_root = os.path.join(env.root, "storage")
        os.makedirs(st_root)
        storage = t.Server(st_root, env.certs, config={"cluster": cluster_cfg(nats)},
                           extra=["--role", "storage"]).start()
        gws = [Gateway(os.path.join(env.root, f"gw{k}"), env.certs, storage.key_file,
                       {"cluster": cluster_cfg(nats), **RATES}, rate_limit=True).start()
               for k in range(2)]
        yield storage, gws
    finally:
        kill_gateways()
        nats.stop()


class Dev:
    """One device's certificate; connections to a gateway; records with txid ID-i."""

    def __init__(self, env, dev_id):
        self.env, self.id = env, dev_id
        env.certs.device(dev_id)
        self.cert = os.path.join(env.certs.dir, "devices", dev_id + ".crt")
        self.i = 0

    def connect(self, gw):
        return t.WS(gw.port, self.cert, self.cert[:-4] + ".key", self.env.certs.ca, timeout=5)

    def resend(self, ws, i):
        """Sends record i again (the same txid); 1 if acked."""
        ws.send(t.fb_envelope(f"{self.id}-{i}".encode(), b"V",
                              t.v_payload([(8, 50.0 + i * 0.01)], T0 + i * 1000)))
        _, p = ws.recv(timeout=5)
        return 1 if t.fb_decode(p)["message_type"] == 5 else 0

    def send(self, ws):
        """Sends the next record (Soc 50 + i/100 at T0 + i s); 1 if acked, 0 if refused."""
        i = self.i
        self.i += 1
        ws.send(t.fb_envelope(f"{self.id}-{i}".encode(), b"V",
                              t.v_payload([(8, 50.0 + i * 0.01)], T0 + i * 1000)))
        _, p = ws.recv(timeout=5)
        e = t.fb_decode(p)
        assert (e["txid"] or b"").rstrip(b"\0") == f"{self.id}-{i}".encode(), e
        return 1 if e["message_type"] == 5 else 0


def closed_by_server(ws, within):
    """Whether the server closes ws within the given seconds (nothing else arrives)."""
    try:
        ws.recv(timeout=within)
    except socket.timeout:
        return False
    except (OSError, t.WSClosed):
        return True
    return False


def state(storage, dev):
    st, _ = storage.http(f"/api/v1/vehicles/{dev}/state")
    return storage.json(f"/api/v1/vehicles/{dev}/state") if st == 200 else None


def wait_state(storage, dev, what, soc, connected, timeout=10):
    last = {}

    def ok():
        s = last["s"] = state(storage, dev)
        return s and s["connected"] == connected and s["state"].get("Soc", {}).get(
            "value") == soc and s
    try:
        return t.wait_until(f"the storage node's state of {dev}: {what}", ok, timeout, step=0.2)
    finally:
        t.log(f"{what}: {last.get('s')}")


def test_latest_state_and_one_gateway_per_device():
    with t.Env() as env, cluster(env) as (storage, gws):
        d = Dev(env, "5YJGWSTATE0000001")
        ws0 = d.connect(gws[0])
        assert sum(d.send(ws0) for _ in range(3)) == 3
        assert d.resend(ws0, 1)  # acked again, not stored again: a duplicate (P7)
        s = wait_state(storage, d.id, "streaming through gateway 0", 50.02, True)
        t.wait_until("the duplicate counted on the storage node",
                     lambda: state(storage, d.id)["duplicates"] == 1, 10)
        time.sleep(1)  # the rate limit's bucket refills (it travels with the device: P3)
        ws1 = d.connect(gws[1])  # the first connection is still open
        assert sum(d.send(ws1) for _ in range(3)) == 3
        # One device, one gateway: the older connection, on the other gateway, is closed.
        assert closed_by_server(ws0, 5), "the connection on gateway 0 stayed open"
        s = wait_state(storage, d.id, "moved to gateway 1", 50.05, True)
        assert s["state"]["Soc"]["time_ms"] == T0 + 5000, s
        assert s["records"] >= 6, s
        ws1.close()
        wait_state(storage, d.id, "disconnected from gateway 1", 50.05, False)
        time.sleep(1)
        ws0 = d.connect(gws[0])
        assert sum(d.send(ws0) for _ in range(3)) == 3
        wait_state(storage, d.id, "back on gateway 0", 50.08, True)
        vs = {v["id"]: v for v in storage.json("/api/v1/vehicles")["vehicles"]}
        assert vs[d.id]["connected"] is True, vs
        fl = storage.json("/api/v1/fleet?signal=Soc")
        row = [v for v in fl["vehicles"] if v["device"] == d.id]
        assert row and row[0]["value"] == 50.08 and row[0]["t"] == T0 + 8000, fl
        # A storage node restarting asks the gateways who is connected (P5).
        storage.stop()
        storage.start()
        wait_state(storage, d.id, "storage node restarted", 50.08, True, timeout=15)
        # A gateway that dies says nothing: its devices stop counting as connected once it
        # is not heard from (P4).
        gws[0].proc.send_signal(signal.SIGKILL)
        gws[0].proc.wait()
        wait_state(storage, d.id, "gateway 0 killed", 50.08, False, timeout=15)
        ws0.close()
        storage.stop()


def stream(d, conns, seconds, hop=None, gws=()):
    """Sends records over the connections (a list of [ws or None, gateway]) for the given
    seconds, about 50 attempts a second, hopping to the next of gws every hop seconds
    (closing the connection first); a connection the server closes is dropped. Returns
    (acked, refused, elapsed seconds, connections the server closed)."""
    acked = refused = dropped = 0
    start = time.time()
    hopped = start
    k = 0
    while time.time() - start < seconds:
        if hop and time.time() - hopped >= hop:
            conns[0][0].close()
            k = (k + 1) % len(gws)
            conns[0] = [d.connect(gws[k]), gws[k]]
            hopped = time.time()
        for c in conns:
            if c[0] is None:
                continue
            try:
                if d.send(c[0]):
                    acked += 1
                else:
                    refused += 1
            except (OSError, t.WSClosed):
                c[0].close()
                c[0] = None
                dropped += 1
        time.sleep(0.02)
    elapsed = time.time() - start
    for c in conns:
        if c[0]:
            c[0].close()
    return acked, refused, elapsed, dropped


def test_rate_limit_across_gateways():
    with t.Env() as env, cluster(env) as (storage, gws):
        d = Dev(env, "5YJGWRATE00000001")
        acked, refused, el, _ = stream(d, [[d.connect(gws[0]), gws[0]]], 8, 0.4, gws)
        bound = RATE * el + 2 * BURST
        t.log(f"hopping: {acked} acked, {refused} refused in {el:.1f} s (bound {bound:.0f})")
        assert acked <= bound + 1, (acked, bound)
        assert acked >= RATE * el * 0.6, ("starved", acked, el)
        time.sleep(2)  # the bucket refills (2 s x 5/s: to the burst)
        d2 = Dev(env, "5YJGWRATE00000002")
        conns = [[d2.connect(gws[0]), gws[0]], [d2.connect(gws[1]), gws[1]]]
        acked, refused, el, dropped = stream(d2, conns, 5)
        bound = RATE * el + 2 * BURST
        t.log(f"on both gateways: {acked} acked, {refused} refused in {el:.1f} s "
              f"(bound {bound:.0f})")
        assert acked <= bound + 1, (acked, bound)
        assert acked >= RATE * el * 0.6, ("starved", acked, el)
        assert dropped == 1, ("one of the two connections closed by its gateway", dropped)
        # The gateways' counts reach the storage node (P7): every refusal, from both.
        t.wait_until("the storage node's rate_limited of the device on both gateways",
                     lambda: (state(storage, d2.id) or {}).get("rate_limited") == refused, 10)
        storage.stop()


if __name__ == "__main__":
    t.main([test_latest_state_and_one_gateway_per_device, test_rate_limit_across_gateways])
