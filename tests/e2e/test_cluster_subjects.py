"""Owner periods and consents across a cluster (docs/cluster.md, "Owner periods and
consents"; cluster/jssubjects.h): a real `nats-server -js`, a storage node and three
gateways, each node with its own catalog. What one node's catalog records of owners and
consents reaches every other node through the KV bucket fv-subjects.

- An owner change made on the storage node (`fleetvault subject owner` on its catalog while
  it runs): a gateway that never talked to the storage node learns of it, seals the new
  owner's records under the new subject, and the new owner's query returns them; the old
  owner's period keeps only its own records.
- A gateway that cannot learn of it (another subjects bucket: the window before its watcher
  delivers, held open) seals under the old subject; the storage node stores those records
  under the period of their time all the same (re-sealed, counted).
- A consent given through the storage node's API: the gateway keeps the location it dropped
  before (minimisation), and it is served for the purpose.
- A second storage node with an empty catalog takes the shards over: it serves the same
  periods and consents, from the bucket.
- An erasure there forgets the owner and the consent in the bucket; the first storage node,
  started again with both still in its catalog, drops them and writes nothing back.
- The bucket's values are wrapped: no VIN, no owner id in them."""
import base64
import json
import os
import shutil
import time

import fvtest as t
from test_cluster import Gateway, Nats, kill_gateways
from test_cluster_keys import NatsClient

SHARDS = 4
BUCKET = "fv-subjects"
A = "5YJSUBJECTS000001"


def cfg(nats, **extra):
    c = {"nats": [f"nats://127.0.0.1:{nats.port}"], "replicas": 1, "shards": SHARDS,
         "lease_renew_ms": 300, "lease_ttl_ms": 1500}
    c.update(extra)
    return c


def policy():
    """Location used by location_history only (a class that needs consent at ingest), and a
    role that reads it for that purpose."""
    pol = t.test_policy({"locreader": {
        "comment": "e2e", "actions": ["read"],
        "purposes": {"location_history": ["default", "location"]}, "requires_ticket": False,
        "max_subjects_per_request": None, "bulk_subjects_threshold": None,
        "aggregate_only": False, "pseudonymise": False, "consented_only": False,
        "location_privacy": False, "energy_sites_only": False, "approves_bulk": False,
        "quota": {"subjects_per_day": None, "rows_per_day": None, "bytes_per_day": None}}})
    for r in pol["roles"].values():
        for purpose, classes in list(r["purposes"].items()):
            if purpose != "location_history" and "location" in classes:
                classes.remove("location")
    return pol


def storage_node(env, name, nats, pol, key_file=None):
    root = os.path.join(env.root, name)
    os.makedirs(root)
    srv = t.Server(root, env.certs, config={"cluster": cfg(nats),
                                            "store": {"flush_interval": "2s"}},
                   extra=["--role", "storage", "--no-rate-limit"], policy=pol)
    if key_file:
        srv.key_file = key_file
    return srv.start()


def gateway(env, storage, nats, name, pol_path, **extra):
    root = os.path.join(env.root, name)
    os.makedirs(root)
    key = os.path.join(root, "master.key")
    shutil.copy(storage.key_file, key)
    os.chmod(key, 0o600)
    return Gateway(root, env.certs, key, {"cluster": cfg(nats, **extra),
                                          "policy": pol_path}).start()


def rows(srv, signal, token="ops", purpose="service"):
    st, raw = srv.http(f"/api/v1/query?device={A}&signals={signal}", token=token,
                       purpose=purpose)
    if st == 404:
        return []
    assert st == 200, (st, raw[:300])
    return sorted(r["t"] for r in json.loads(raw)["rows"] if r.get(signal) is not None)


def period_rows(srv, po, period):
    """The telemetry times in the export of A's owner period (Art. 15: one subject)."""
    import io
    import tarfile
    st, body = srv.http(f"/api/v1/subjects/{A}/export?ticket=DSAR-1&period={period}",
                        token=po, purpose=None)
    assert st == 200, body
    tar = tarfile.open(fileobj=io.BytesIO(body))
    out = []
    for m in tar.getmembers():
        text = tar.extractfile(m).read().decode() if "/telemetry" in m.name else ""
        if m.name.endswith(".csv"):
            out += [int(ln.split(",")[0]) for ln in text.splitlines()[1:]]
    return sorted(out)


def kv_revisions(nc):
    """{KV key: its last message's stream sequence} of the bucket."""
    out = {}
    info = nc.js(f"STREAM.INFO.KV_{BUCKET}", {"subjects_filter": ">"})
    for subj in info["state"]["subjects"]:
        m = nc.js(f"STREAM.MSG.GET.KV_{BUCKET}", {"last_by_subj": subj})
        out[subj[len(f"$KV.{BUCKET}."):]] = m["message"]["seq"]
    return out


def applied(g, kind):
    return f"cluster: KV entry {kind}." in g.log()


def test_owner_change_and_consent_across_nodes():
    with t.Env() as env:
        nats = Nats(env.root).start()
        nc = None
        try:
            pol = policy()
            pol_path = os.path.join(env.root, "policy.json")
            with open(pol_path, "w") as f:
                json.dump(pol, f)
            st1 = storage_node(env, "st1", nats, pol)
            gw0 = gateway(env, st1, nats, "gw0", pol_path)
            gw1 = gateway(env, st1, nats, "gw1", pol_path)
            # a gateway whose watcher never delivers the change: the window, held open
            lag = gateway(env, st1, nats, "gwlag", pol_path, subjects_bucket="fv-elsewhere")
            po = st1.principal("po", "privacy-officer")

            # The first owner's records, through gateway 0.
            now = int(time.time() * 1000)
            old = t.Device(env, A, now - 20000)
            assert old.send(gw0, 0, 3) == 3 and len(old.acked) == 3, old.errors
            t.wait_until("the first owner's records", lambda: rows(st1, "Soc") == sorted(
                old.acked), timeout=20)

            # A change of owner on the storage node's catalog, while it runs.
            at = int(time.time() * 1000)
            r = t.run("subject", "owner", A, "customer-2", "--at", str(at), "--data", st1.data,
                      "--key-file", st1.key_file)
            assert "owner period 2" in r.stdout, r.stdout
            t.wait_until("gateway 1 to learn of the owner change",
                         lambda: applied(gw1, "periods"), timeout=10)
            time.sleep(0.3)  # the ingest loop's registry poll, woken by the sync

            # The new owner's records through gateway 1 (it never saw the change made) and
            # through the lagging gateway (sealed under the old subject).
            new = t.Device(env, A, at + 1000)
            assert new.send(gw1, 0, 3) == 3 and len(new.acked) == 3, new.errors
            assert new.send(lag, 3, 3) == 3 and len(new.acked) == 6, new.errors
            assert not applied(lag, "periods")
            t.wait_until("the new owner's records served as theirs",
                         lambda: rows(st1, "Soc") == sorted(new.acked), timeout=20)
            # (its 3 records, and the connection's own events it logged under the old subject)
            assert st1.metric("fleetvault_cluster_records_resubjected_total") >= 3
            assert period_rows(st1, po, 1) == sorted(old.acked)  # none of the new owner's
            assert period_rows(st1, po, 2) == sorted(new.acked)
            assert st1.metric("fleetvault_cluster_subjects_published_total") >= 1
            assert st1.metric("fleetvault_cluster_subjects_malformed_total") == 0

            # No location before consent (minimised at gateway 1); consent given through the
            # storage node's API; gateway 1 keeps the location of the records after it.
            reader = st1.principal("lr", "locreader")
            assert rows(st1, "Location", reader, "location_history") == []
            st, b = st1.http(f"/api/v1/subjects/{A}/consent?purpose=location_history"
                             "&change=give&by=owner&ticket=DSR-1", token=po, method="POST",
                             purpose=None)
            assert st == 200, b
            t.wait_until("gateway 1 to learn of the consent",
                         lambda: applied(gw1, "consents"), timeout=10)
            time.sleep(0.3)
            later = t.Device(env, A, int(time.time() * 1000) - 8000)  # txids A-10.. are new
            assert later.send(gw1, 10, 3) == 3 and len(later.acked) == 3, later.errors
            want_loc = sorted(later.acked)
            t.wait_until("the consented locations stored and served",
                         lambda: rows(st1, "Location", reader, "location_history") == want_loc,
                         timeout=20)

            # The bucket: wrapped values, pseudonyms in keys, no VIN, no owner id.
            nc = NatsClient(nats.port)
            info = nc.js(f"STREAM.INFO.KV_{BUCKET}", {"subjects_filter": ">"})
            keys = sorted(s[len(f"$KV.{BUCKET}."):] for s in info["state"]["subjects"])
            assert [k.split(".")[0] for k in keys] == ["consents", "periods"], keys
            for k in keys:
                m = nc.js(f"STREAM.MSG.GET.KV_{BUCKET}", {"last_by_subj": f"$KV.{BUCKET}.{k}"})
                v = base64.b64decode(m["message"]["data"])
                assert v[:5] == b"FVKV\x01" and v[5:6] in (b"R", b"C"), v[:8]
                assert A.encode() not in v and b"customer-2" not in v

            # A second storage node, empty catalog, takes the shards over from the stream.
            st1.stop()
            st2 = storage_node(env, "st2", nats, pol, key_file=st1.key_file)
            t.wait_until("st2 to own every shard", lambda: st2.metric(
                "fleetvault_cluster_shards_owned") == SHARDS, timeout=20)
            assert st2.metric("fleetvault_cluster_subjects_applied_total") >= 2  # P2
            po2 = st2.principal("po", "privacy-officer")
            reader2 = st2.principal("lr", "locreader")
            t.wait_until("st2 to serve the new owner's records",
                         lambda: rows(st2, "Soc") == sorted(new.acked | later.acked),
                         timeout=30)
            assert period_rows(st2, po2, 1) == sorted(old.acked)
            assert rows(st2, "Location", reader2, "location_history") == want_loc
            shown = t.run("subject", "show", A, "--data", st2.data, "--key-file",
                          st2.key_file).stdout
            assert "customer-2" in shown and "location_history" in shown, shown

            # Erasure on st2: every period of A forgotten there, and in the bucket; st1, whose
            # catalog still holds A's owner and consent, starts again and resurrects nothing.
            revs = kv_revisions(nc)
            st, b = st2.http(f"/api/v1/subjects/{A}/erase?ticket=GDPR-1", token=po2,
                             method="POST", purpose=None)
            assert st == 200, (st, b)
            t.wait_until("the erasure published to the bucket",
                         lambda: all(kv_revisions(nc)[k] > revs[k] for k in revs), timeout=10)
            for g in (gw0, gw1, lag):
                g.stop()
                assert A not in g.log() and "customer-2" not in g.log()
            st2.stop()
            assert A not in st2.log()
            st1.start()
            t.wait_until("st1 to own every shard", lambda: st1.metric(
                "fleetvault_cluster_shards_owned") == SHARDS, timeout=20)
            after = kv_revisions(nc)
            st1.stop()
            assert kv_revisions(nc) == after  # nothing of st1's old rows written back
            shown = json.loads(t.run("subject", "show", A, "--data", st1.data, "--key-file",
                                     st1.key_file).stdout)
            assert [(p["epoch"], p["owner"], p["consent_history"], bool(p["forgotten"]))
                    for p in shown["periods"]] == [(1, None, [], True), (2, None, [], True)], shown
        finally:
            if nc:
                nc.close()
            kill_gateways()
            nats.stop()


if __name__ == "__main__":
    t.main([test_owner_change_and_consent_across_nodes])
