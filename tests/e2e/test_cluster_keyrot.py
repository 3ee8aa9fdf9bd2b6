"""A cluster's master key rotation (docs/cluster.md, "Master key rotation"; cluster/jsrotate.h,
jskeys.h J6): a real `nats-server -js`, a storage node and a gateway on master key A, a fleet
streaming through them the whole time.

- The nodes are rolled to key B one at a time (`--key-file B --previous-key-file A`; the
  gateway by its config's previous_key_file, the storage node by flag): each re-wraps its
  catalog at start. In the mixed state (gateway on B, storage node on A alone) a device new
  to the cluster gets a key under B: the storage node waits for it (counted, logged naming
  both ids), does not stop, and stores the device's records once rolled.
- `cluster keys-rotate` with a wrong old key refuses, naming the entry's key id, and changes
  nothing (the raw buckets byte for byte); --dry-run changes nothing; the real run (fleet
  streaming) re-wraps every value of both buckets from A to B with progress on stderr; a second
  run re-wraps nothing.
- Read raw over NATS's protocol: every value of fv-keys and fv-subjects names B's key id, the
  erased device's purge marker is still a marker; no VIN in any value.
- After it: a device new to the cluster works; the erased device stays refused; a node
  started with only key A refuses, naming both ids; the nodes restarted with B alone work;
  every acked record of the fleet is queryable exactly once."""
import hashlib
import json
import os
import shutil
import threading
import time

import fvtest as t
from test_cluster import Gateway, Nats, kill_gateways
from test_cluster_keys import NatsClient

SHARDS = 4
BUCKETS = ("fv-keys", "fv-subjects")
FLEET = ["5YJKEYROT0000000%d" % i for i in range(4)]
ERASED, OWNED, MIXED, AFTER = ("5YJKEYROTERASED01", "5YJKEYROTOWNER001", "5YJKEYROTMIXED001",
                               "5YJKEYROTAFTER001")


def cfg(nats):
    return {"nats": [f"nats://127.0.0.1:{nats.port}"], "replicas": 1, "shards": SHARDS,
            "lease_renew_ms": 300, "lease_ttl_ms": 1500}


def key_id(path):
    """A master key's id as docs/formats.md defines it: SHA-256 of the key, 8 bytes in hex."""
    with open(path) as f:
        return hashlib.sha256(bytes.fromhex(f.read().strip())).hexdigest()[:16]


def new_key(env, name):
    path = os.path.join(env.root, name)
    t.run("keys", "init", path)
    return path


def install_key(src, dst):
    shutil.copy(src, dst)
    os.chmod(dst, 0o600)


def raw(nc):
    """{(bucket, KV key): (headers text, value bytes)} of both buckets, read over NATS."""
    import base64
    out = {}
    for b in BUCKETS:
        info = nc.js(f"STREAM.INFO.KV_{b}", {"subjects_filter": ">"})
        assert "error" not in info, info
        for s in (info["state"].get("subjects") or {}):
            m = nc.js(f"STREAM.MSG.GET.KV_{b}", {"last_by_subj": s})["message"]
            hdrs = base64.b64decode(m["hdrs"]).decode() if m.get("hdrs") else ""
            out[(b, s[len(f"$KV.{b}."):])] = (hdrs, base64.b64decode(m.get("data") or ""))
    return out


def ids_of(entries):
    """{key id: how many values} of the non-marker values."""
    ids = {}
    for hdrs, v in entries.values():
        if "KV-Operation" not in hdrs:
            assert v[:5] == b"FVKV\x01", v[:8]
            ids[v[6:22].decode()] = ids.get(v[6:22].decode(), 0) + 1
    return ids


def rotate(cfg_path, old, new, *extra, check=True):
    return t.run("cluster", "keys-rotate", "--config", cfg_path, "--key-file", old,
                 "--new-key-file", new, *extra, check=check, timeout=60)


class Fleet:
    """Devices streaming through the gateway on a thread until stopped: a batch of 5 records
    per device per turn; a batch the gateway does not ack (restarting) is simply not acked."""

    def __init__(self, env, gw):
        now = int(time.time() * 1000)
        self.devs = [t.Device(env, vin, now - 3600 * 1000) for vin in FLEET]
        self.gw, self.i, self.stop_ev = gw, 0, threading.Event()
        self.th = threading.Thread(target=self.run)

    def run(self):
        while not self.stop_ev.is_set():
            for d in self.devs:
                d.send(self.gw, self.i, 5, timeout=3)
            self.i += 5
            time.sleep(0.05)

    def acked(self):
        return sum(len(d.acked) for d in self.devs)

    def wait_more(self, what, n=20):
        want = self.acked() + n
        t.wait_until(f"the fleet acked {n} more records ({what})",
                     lambda: self.acked() >= want, timeout=20)


def all_stored(storage, devs):
    for d in devs:
        st, body = storage.http(f"/api/v1/query?device={d.id}&signals=Soc")
        if st != 200:
            return False
        if not d.acked <= {r["t"] for r in json.loads(body)["rows"]}:
            return False
    return True


def test_rotate_a_running_cluster():
    with t.Env() as env:
        nats = Nats(env.root).start()
        nc = None
        try:
            root = os.path.join(env.root, "storage")
            os.makedirs(root)
            storage = t.Server(root, env.certs, config={
                "cluster": cfg(nats), "store": {"flush_interval": "2s"}},
                extra=["--role", "storage", "--no-rate-limit"]).start()
            key_a = os.path.join(env.root, "A.key")
            install_key(storage.key_file, key_a)
            groot = os.path.join(env.root, "gw")
            os.makedirs(groot)
            install_key(key_a, os.path.join(groot, "master.key"))
            gw_cfg = {"cluster": cfg(nats)}
            gw = Gateway(groot, env.certs, os.path.join(groot, "master.key"), gw_cfg).start()
            ida = key_id(key_a)
            cluster_path = os.path.join(env.root, "cluster.json")
            with open(cluster_path, "w") as f:
                json.dump({"cluster": cfg(nats)}, f)

            fleet = Fleet(env, gw)
            fleet.th.start()
            # an owner change (a periods entry in fv-subjects) and an erasure (a purge marker
            # in fv-keys, forgotten rows in fv-subjects)
            now = int(time.time() * 1000)
            owned, erased = t.Device(env, OWNED, now - 60000), t.Device(env, ERASED, now - 60000)
            assert owned.send(gw, 0, 3) == 3 and erased.send(gw, 0, 3) == 3
            assert len(owned.acked) == 3 and len(erased.acked) == 3
            t.wait_until("the erased device's records on the storage node",
                         lambda: all_stored(storage, [erased, owned]), timeout=20)
            r = t.run("subject", "owner", OWNED, "customer-2", "--at", str(now), "--data",
                      storage.data, "--key-file", storage.key_file)
            assert "owner period 2" in r.stdout, r.stdout
            po = storage.principal("po", "privacy-officer")
            st, b = storage.http(f"/api/v1/subjects/{ERASED}/erase?ticket=GDPR-9", token=po,
                                 method="POST", purpose=None)
            assert st == 200, (st, b)
            nc = NatsClient(nats.port)
            t.wait_until("the periods entry published",
                         lambda: any(k[0] == "fv-subjects" and k[1].startswith("periods.")
                                     for k in raw(nc)), timeout=10)
            before = raw(nc)
            markers = {k for k, (h, _) in before.items() if "KV-Operation: PURGE" in h}
            assert len(markers) == 1, markers
            assert set(ids_of(before)) == {ida}, ids_of(before)
            fleet.wait_more("on key A")

            # Roll the gateway first (previous_key_file in its config): B in its key file.
            key_b = new_key(env, "B.key")
            idb = key_id(key_b)
            gw.stop()
            install_key(gw.key_file, os.path.join(groot, "previous.key"))
            install_key(key_b, gw.key_file)
            gw_cfg["previous_key_file"] = os.path.join(groot, "previous.key")
            with open(gw.config, "w") as f:
                json.dump(gw_cfg, f)
            gw.start()
            assert f"re-wrapped from master key {ida} to {idb}" in gw.log()
            fleet.wait_more("gateway on B, storage node on A")
            # Mixed: a device new to the cluster gets its key from the gateway, under B; the
            # storage node on A alone cannot open it: it waits (J6, C9), never stops, and
            # nothing acked is lost.
            waits = storage.metric("fleetvault_cluster_key_waits_total")
            mixed = t.Device(env, MIXED, int(time.time() * 1000) - 10000)
            assert mixed.send(gw, 0, 5) == 5 and len(mixed.acked) == 5, mixed.errors
            t.wait_until("the storage node on A to wait for the key under B", lambda: storage.metric(
                "fleetvault_cluster_key_waits_total") > waits, timeout=15)
            assert f"wrapped by master key {idb}, but this node's is {ida}: restart it" in \
                storage.log()
            assert storage.proc.poll() is None

            # Roll the storage node (the flag): it re-wraps its catalog and takes the record.
            storage.stop()
            install_key(storage.key_file, os.path.join(root, "previous.key"))
            install_key(key_b, storage.key_file)
            storage.extra += ["--previous-key-file", os.path.join(root, "previous.key")]
            storage.start()
            assert f"re-wrapped from master key {ida} to {idb}" in storage.log()
            fleet.wait_more("both nodes on B, A read")
            t.wait_until("the mixed state's new device stored",
                         lambda: all_stored(storage, [mixed]), timeout=20)

            # A wrong old key: refused naming the entry's key id; nothing changed.
            key_c = new_key(env, "C.key")
            snap = raw(nc)
            r = rotate(cluster_path, key_c, key_b, check=False)
            assert r.returncode == 1, (r.returncode, r.stderr)
            assert f"wrapped by master key {ida}, which is neither the old key given" in r.stderr
            assert "nothing was changed" in r.stderr, r.stderr
            assert raw(nc) == snap

            # A dry run changes nothing; then the rotation, with the fleet streaming.
            snap = raw(nc)
            r = rotate(cluster_path, key_a, key_b, "--dry-run")
            assert "dry run" in r.stdout and "nothing changed" in r.stdout, r.stdout
            assert raw(nc) == snap
            t0 = time.time()
            r = rotate(cluster_path, key_a, key_b)
            took = time.time() - t0
            t.log(f"keys-rotate: {took:.2f}s: {r.stdout.strip()}")
            assert "round 1" in r.stderr, r.stderr  # progress
            assert f"Every value is wrapped by {idb} now" in r.stdout, r.stdout
            after = raw(nc)
            assert set(ids_of(after)) == {idb}, ids_of(after)
            assert sum(ids_of(after).values()) >= 8, after.keys()  # pseudonym key, subjects,
            # periods, consents: both buckets
            assert {k for k in after if k[0] == "fv-subjects"}, after.keys()
            for k in markers:  # the erased subject: still a marker, no value
                assert "KV-Operation: PURGE" in after[k][0] and after[k][1] == b"", after[k]
            for _, v in after.values():
                for vin in FLEET + [ERASED, OWNED, MIXED]:
                    assert vin.encode() not in v
            assert "customer-2".encode() not in b"".join(v for _, v in after.values())
            # Run again: nothing left to do.
            r = rotate(cluster_path, key_a, key_b)
            assert " 0 re-wrapped" in r.stdout, r.stdout
            assert raw(nc) == after
            fleet.wait_more("after the rotation")

            # A device new to the cluster after the rotation; the erased one stays refused.
            new = t.Device(env, AFTER, int(time.time() * 1000) - 10000)
            assert new.send(gw, 0, 5) == 5 and len(new.acked) == 5, new.errors
            before_refused = len(erased.refused)
            assert erased.send(gw, 100, 2) == 2
            assert len(erased.refused) == before_refused + 2 and len(erased.acked) == 3

            # A node given only the old key refuses, naming both ids.
            oroot = os.path.join(env.root, "gwold")
            os.makedirs(oroot)
            install_key(key_a, os.path.join(oroot, "master.key"))
            old = Gateway(oroot, env.certs, os.path.join(oroot, "master.key"), {"cluster": cfg(nats)})
            try:
                old.start()
                raise AssertionError("a gateway on the old key alone started")
            except AssertionError as e:
                assert "gateway exited" in str(e), e
            assert f"wrapped by master key {idb}, but this node's is {ida}" in old.log(), \
                old.log()[-2000:]

            # The previous key dropped: both nodes on B alone.
            storage.stop()
            storage.extra = storage.extra[:-2]
            storage.start()
            gw.stop()
            del gw_cfg["previous_key_file"]
            with open(gw.config, "w") as f:
                json.dump(gw_cfg, f)
            gw.start()
            fleet.wait_more("on B alone")
            fleet.stop_ev.set()
            fleet.th.join()

            # Every acked record queryable, exactly once.
            devs = fleet.devs + [mixed, new]
            t.wait_until("every acked record on the storage node",
                         lambda: all_stored(storage, devs), timeout=30)
            for d in fleet.devs + [mixed, new]:
                d.check_stored(storage)
            t.log(f"fleet: {fleet.acked()} records acked and stored")
            st, _ = storage.http(f"/api/v1/query?device={ERASED}&signals=Soc")
            assert st in (404, 410), st
            secrets = [open(k).read().strip() for k in (key_a, key_b)]
            for log in (storage.log(), gw.log(), old.log()):
                for s in secrets:  # no master key in any log, in either case
                    assert s.lower() not in log.lower()
            assert all(vin not in gw.log() for vin in FLEET)
            gw.stop()
            storage.stop()
        finally:
            if nc:
                nc.close()
            kill_gateways()
            nats.stop()


if __name__ == "__main__":
    t.main([test_rotate_a_running_cluster])
