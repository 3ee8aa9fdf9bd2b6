"""Keys across a cluster (docs/cluster.md, "Keys"; cluster/jskeys.h): a real `nats-server -js`,
a storage node and two gateways, each with its OWN catalog (no shared file). The keys they
share are in the KV bucket fv-keys, wrapped by the master key; the test reads the bucket over
NATS's own text protocol (no NATS client in Debian's Python).

- Devices move between the gateways and race on both at once: every record opens on the
  storage node (one data key per subject in KV, none in clear there).
- A record whose key is in no KV entry (its entry removed behind the cluster's back) stays
  unacked on the storage node, counted, and is taken once the entry is back.
- Erasure through the storage node's API: its KV entry is purged, both gateways drop the key
  (their logs say so) and refuse the device's next record as a single node does, a gateway
  started afterwards too, and nothing of it is queryable. An erasure done with `keys shred`
  while the storage node is stopped reaches KV at its next start."""
import base64
import json
import os
import shutil
import socket
import threading
import time

import fvtest as t
from test_cluster import Gateway, Nats, cluster_cfg, kill_gateways

BUCKET = "fv-keys"
STREAM = "KV_" + BUCKET
PREFIX = f"$KV.{BUCKET}."
T0 = 1795000000000


class NatsClient:
    """Requests over NATS's text protocol: enough for JetStream's API."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self._line()  # INFO
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n'
                       b"SUB _INBOX.fvt 1\r\n")
        self.n = 0

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            assert chunk, "NATS closed the connection"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n):
        while len(self.buf) < n + 2:
            chunk = self.s.recv(65536)
            assert chunk, "NATS closed the connection"
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def request(self, subject, payload=b""):
        self.n += 1
        reply = f"_INBOX.fvt.{self.n}"
        self.s.sendall(f"SUB {reply} {self.n + 1}\r\nPUB {subject} {reply} {len(payload)}\r\n"
                       .encode() + payload + b"\r\n")
        while True:
            line = self._line()
            if line == b"PING":
                self.s.sendall(b"PONG\r\n")
                continue
            if line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                parts = line.split()
                data = self._take(int(parts[-1]))
                if parts[1].decode() == reply:
                    if line.startswith(b"HMSG "):
                        data = data[int(parts[-2]):]
                    return json.loads(data) if data else {}

    def js(self, api, body=None):
        return self.request("$JS.API." + api, json.dumps(body or {}).encode())

    def close(self):
        self.s.close()


def kv_subjects(nc):
    """{KV key: messages} of the bucket's stream."""
    info = nc.js(f"STREAM.INFO.{STREAM}", {"subjects_filter": ">"})
    assert "error" not in info, info
    return {s[len(PREFIX):]: n for s, n in (info["state"].get("subjects") or {}).items()}


def kv_last(nc, key):
    """(headers text, value bytes) of the entry's last message, or None when it has none."""
    r = nc.js(f"STREAM.MSG.GET.{STREAM}", {"last_by_subj": PREFIX + key})
    if "error" in r:
        assert r["error"]["err_code"] == 10037, r
        return None
    m = r["message"]
    hdrs = base64.b64decode(m["hdrs"]).decode() if m.get("hdrs") else ""
    return hdrs, base64.b64decode(m.get("data") or "")


def subject_keys(nc):
    return {k for k in kv_subjects(nc) if k.startswith("subject.")}


def gateway(env, storage, nats, name):
    """A gateway with a copy of the master key of its own: nothing shared on disk with the
    storage node (the erasure list beside a key file would be, on one machine)."""
    root = os.path.join(env.root, name)
    os.makedirs(root)
    key = os.path.join(root, "master.key")
    shutil.copy(storage.key_file, key)
    os.chmod(key, 0o600)
    return Gateway(root, env.certs, key, {"cluster": cluster_cfg(nats)}).start()


def stored(storage, d):
    """d's acked records all on the storage node (once each); False while it has none."""
    st, raw = storage.http(f"/api/v1/query?device={d.id}&signals=Soc")
    if st != 200:
        return False
    rows = [r["t"] for r in json.loads(raw)["rows"]]
    assert len(rows) == len(set(rows)), f"{d.id}: records stored twice"
    return set(rows) == d.acked


def dev(env, vin):
    return t.Device(env, vin, T0)


def test_keys_shared_erasure_and_missing_key():
    with t.Env() as env:
        nats = Nats(env.root).start()
        nc = None
        try:
            os.makedirs(os.path.join(env.root, "storage"))
            storage = t.Server(os.path.join(env.root, "storage"), env.certs, config={
                "cluster": cluster_cfg(nats), "store": {"flush_interval": "2s"}},
                extra=["--role", "storage", "--no-rate-limit"]).start()
            gws = [gateway(env, storage, nats, f"gw{k}") for k in range(2)]
            nc = NatsClient(nats.port)
            subjects = kv_subjects(nc)
            assert list(subjects) == ["pseudonym-key"], subjects  # one, whoever made it
            hdrs, pk = kv_last(nc, "pseudonym-key")
            assert pk[:5] == b"FVKV\x01" and pk[5:6] == b"P" and len(pk) == 22 + 28 + 32, pk

            # A: gateway 0, then 1 (the second fetches the key); B: the other way round;
            # C: both at once, each gateway new to it (create-if-absent, one wins).
            A, B, C = "5YJGWKEYS00000001", "5YJGWKEYS00000002", "5YJGWKEYS00000003"
            da, db, dc = dev(env, A), dev(env, B), dev(env, C)
            assert da.send(gws[0], 0, 5) == 5 and da.send(gws[1], 5, 5) == 5
            assert db.send(gws[1], 0, 5) == 5 and db.send(gws[0], 5, 5) == 5
            th = [threading.Thread(target=dc.send, args=(gws[k], 10 * k, 10)) for k in range(2)]
            for x in th:
                x.start()
            for x in th:
                x.join()
            # The newer of C's two connections wins (docs/cluster.md, "Presence" P2): the
            # other gateway closes its own, and C resends what was not acked, as a device does
            # after any lost connection (one at a time, so nothing races any more).
            for i in range(20):
                if dc.time(i) not in dc.acked:
                    dc.send(gws[i // 10], i, 1)
            for d in (da, db, dc):
                assert len(d.acked) == 10 + 10 * (d is dc) and not d.refused, (d.id, d.errors)
            keys = subject_keys(nc)
            assert len(keys) == 3, keys  # one entry per subject, the race's loser adopted it
            for k in keys:
                hdrs, v = kv_last(nc, k)
                assert v[:6] == b"FVKV\x01S" and len(v) == 22 + 28 + 32 + 17, (k, v[:8])
                for vin in (A, B, C):
                    assert vin.encode() not in v
            for d in (da, db, dc):
                t.wait_until(f"{d.id} on the storage node",
                             lambda: stored(storage, d), timeout=30)

            # A key in no KV entry: E streams while the storage node is down, then its entry
            # goes (a stream purge, not the KV's: no marker). The storage node waits.
            storage.stop()
            E = "5YJGWKEYS00000005"
            de = dev(env, E)
            assert de.send(gws[0], 0, 5) == 5 and len(de.acked) == 5, de.errors
            (ke,) = subject_keys(nc) - keys
            _, saved = kv_last(nc, ke)
            r = nc.js(f"STREAM.PURGE.{STREAM}", {"filter": PREFIX + ke})
            assert r.get("success"), r
            assert kv_last(nc, ke) is None
            storage.start()
            t.wait_until("the storage node to count the record it cannot open yet",
                         lambda: storage.metric("fleetvault_cluster_key_waits_total") >= 1,
                         timeout=15)
            assert "its subject's key is in no KV entry yet" in storage.log()
            st, _ = storage.http(f"/api/v1/query?device={E}&signals=Soc")
            assert st == 404, st  # nothing of E taken
            pending = sum(p + a for p, a in nats.consumers().values())
            assert pending >= 1, nats.consumers()  # left unacked on the stream
            # The entry back (as a node would have written it): taken, exactly once.
            r = nc.request(PREFIX + ke, saved)
            assert r.get("seq"), r
            t.wait_until("E's records on the storage node",
                         lambda: stored(storage, de), timeout=20)

            # Erasure through the storage node's API.
            storage.principal("po", "privacy-officer")
            st, b = storage.http(f"/api/v1/subjects/{A}/erase?ticket=GDPR-1", token="po",
                                 method="POST", purpose=None)
            assert st == 200, (st, b)
            erased = [ln.split("erased subject ", 1)[1].split()[0]
                      for ln in storage.log().splitlines() if "erased subject " in ln]
            assert len(erased) == 1, erased
            ka = "subject." + erased[0]
            assert ka in keys, (ka, keys)
            hdrs, v = kv_last(nc, ka)
            assert "KV-Operation: PURGE" in hdrs and v == b"", (hdrs, v)  # the key is gone
            for k in keys - {ka}:  # the others untouched
                assert kv_last(nc, k)[1][:6] == b"FVKV\x01S"
            for g in gws:  # both gateways drop it (the KV watcher)
                t.wait_until("the gateway to drop the erased key",
                             lambda: f"subject {erased[0]} erased in the cluster" in g.log(),
                             timeout=10)
            # A streams again, to either gateway: refused, as on one node after an erasure.
            for k, g in enumerate(gws):
                before = len(da.refused)
                assert da.send(g, 100 + 10 * k, 3) == 3
                assert len(da.refused) == before + 3, (k, da.errors)
                assert "its data was erased" in g.log()
            assert len(da.acked) == 10
            # the single node's answer to an erased device's record (the same code, session.c
            # log_put: FV_ESTATE, answered with the storage error), nothing else
            assert set(da.errors) == {"storage unavailable"}, da.errors
            # Nothing of A is queryable; the others are.
            st, raw = storage.http(f"/api/v1/query?device={A}&signals=Soc")
            assert st == 404 or json.loads(raw)["rows"] == [], (st, raw[:200])
            assert db.check_stored(storage) == db.acked
            # A gateway started after the erasure never had A's key: KV's marker refuses it.
            g3 = gateway(env, storage, nats, "gw3")
            t.wait_until("the new gateway to find the purge marker",
                         lambda: f"subject {erased[0]} erased in the cluster" in g3.log(),
                         timeout=10)
            assert da.send(g3, 200, 2) == 2 and len(da.acked) == 10
            assert db.send(g3, 200, 2) == 2 and len(db.acked) == 12
            for g in gws + [g3]:
                g.stop()
            storage.stop()
            for g in gws + [g3]:
                assert A not in g.log() and B not in g.log()

            # B erased with the storage node stopped (`keys shred`): its next start purges
            # the KV entry too (the erasure list replayed through the same hook).
            t.run("keys", "shred", "--data", storage.data, "--key-file", storage.key_file, B)
            storage.start()
            markers = {k for k in keys | {ke} if "KV-Operation: PURGE" in kv_last(nc, k)[0]}
            assert len(markers) == 2 and ka in markers, (markers, ka)
            st, raw = storage.http(f"/api/v1/query?device={B}&signals=Soc")
            assert st == 404 or json.loads(raw)["rows"] == [], (st, raw[:200])
            assert stored(storage, dc)
            storage.stop()
        finally:
            if nc:
                nc.close()
            kill_gateways()
            nats.stop()


if __name__ == "__main__":
    t.main([test_keys_shared_erasure_and_missing_key])
