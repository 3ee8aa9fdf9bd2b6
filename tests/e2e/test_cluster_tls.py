"""A cluster whose NATS requires TLS with client certificates (docs/deploy.md; docs/cluster.md
"Configuration": cluster.tls), as the deployment guide sets it up: nats-server's `tls` with
`verify_and_map`, each node's certificate subject its NATS user, in an account of its own.

- A storage node and a gateway with their certificates (tls:// URLs, cluster.tls ca, cert,
  key) stream records end to end: a device's acked records are queryable on the storage node;
  `fleetvault cluster status` reads the cluster over TLS too.
- The gateway's HTTP listener answers /status (role gateway, its log's sequences) and
  /metrics (records published, PubAcks), and a 404 naming its role for any data path.
- Refused, with the reason on standard error and exit status non-zero: a node whose
  certificate the CA signed but whose subject is no NATS user ("Authentication Violation"); a
  node with no client certificate; a vehicle's certificate (another CA: the device PKI never
  opens NATS); a node with no `tls` at all (nats:// to a server that requires TLS)."""
import json
import os
import subprocess

import fvtest as t
from test_cluster import Gateway, Nats

T0 = 1795000000000


class TlsNats(Nats):
    """nats-server with a config file: TLS required, certificates mapped to users."""

    def __init__(self, root, pki, users):
        super().__init__(root)
        self.conf = os.path.join(root, "nats.conf")
        crt, key, ca = (os.path.join(pki, f) for f in ("server.crt", "server.key", "ca.crt"))
        with open(self.conf, "w") as f:
            f.write(f"""listen: 127.0.0.1:{self.port}
http: 127.0.0.1:{self.mon}
jetstream {{ store_dir: "{self.dir}" }}
tls {{ cert_file: "{crt}", key_file: "{key}", ca_file: "{ca}", verify_and_map: true, timeout: 2 }}
accounts {{ FLEETVAULT {{ jetstream: enabled, users: [{", ".join(
                '{user: "CN=%s"}' % u for u in users)}] }} }}
""")

    def start(self):
        r = subprocess.run([self.bin, "-t", "-c", self.conf], capture_output=True, text=True)
        assert r.returncode == 0, "nats-server refused the guide's configuration:\n" + r.stderr
        self.logf = open(self.log_path, "a")
        self.proc = subprocess.Popen([self.bin, "-c", self.conf], stdout=self.logf,
                                     stderr=self.logf)
        t.wait_until("nats-server", lambda: self.jsz() is not None, timeout=15, step=0.1)
        return self


def cfg(nats, pki, name, url="tls", cert=True, node=None):
    tls = {"ca": os.path.join(pki, "ca.crt")}
    if cert:
        tls["cert"] = os.path.join(pki, "devices", f"{name}.crt")
        tls["key"] = os.path.join(pki, "devices", f"{name}.key")
    c = {"nats": [f"{url}://127.0.0.1:{nats.port}"], "replicas": 1, "shards": 4, "tls": tls}
    if node:
        c["node"] = node
    return {"cluster": c}


def refused(env, config, key_file, name):
    """`serve --role storage` with config: must exit non-zero in time; its standard error."""
    path = os.path.join(env.root, f"{name}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    r = subprocess.run(
        [t.BIN, "serve", "--role", "storage", "--config", path, "--data",
         os.path.join(env.root, name), "--certs", env.certs.dir, "--key-file", key_file,
         "--api", f"127.0.0.1:{t.free_port()}"],
        capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, f"{name}: a node NATS should refuse started:\n{r.stderr}"
    return r.stderr


def test_tls_cluster_and_refusals():
    with t.Env() as env:
        # The cluster's own PKI (docs/deploy.md): not the devices' CA.
        pki = os.path.join(env.root, "nats-pki")
        t.run("certs", "init", pki)
        for n in ("st1", "gw1", "intruder"):
            t.run("certs", "device", pki, n)
        nats = TlsNats(env.root, pki, ["st1", "gw1"]).start()
        try:
            os.makedirs(os.path.join(env.root, "storage"))
            storage = t.Server(os.path.join(env.root, "storage"), env.certs,
                               config={**cfg(nats, pki, "st1", node="st1"),
                                       "store": {"flush_interval": "2s"}},
                               extra=["--role", "storage", "--no-rate-limit"]).start()
            gw = Gateway(os.path.join(env.root, "gw1"), env.certs, storage.key_file,
                         cfg(nats, pki, "gw1")).start()
            d = t.Device(env, "5YJTLSNATS0000001", T0)
            assert d.send(gw, 0, 10) == 10 and len(d.acked) == 10 and not d.refused, d.errors

            def stored():
                st, raw = storage.http(f"/api/v1/query?device={d.id}&signals=Soc")
                return st == 200 and {r["t"] for r in json.loads(raw)["rows"]} == d.acked
            t.wait_until("the records on the storage node", stored, timeout=30)

            path = os.path.join(env.root, "status.json")
            with open(path, "w") as f:
                json.dump(cfg(nats, pki, "st1"), f)
            r = t.run("cluster", "status", "--config", path, "--json", check=False, timeout=30)
            assert r.returncode == 0, (r.returncode, r.stderr)
            st = json.loads(r.stdout)
            assert st["health"] == "ok" and [n["name"] for n in st["nodes"]] == ["st1"], st

            e = refused(env, cfg(nats, pki, "intruder", node="x1"), storage.key_file, "x1")
            assert "cannot connect to NATS" in e and "Authentication Violation" in e, e
            e = refused(env, cfg(nats, pki, "st1", cert=False, node="x2"), storage.key_file,
                        "x2")
            assert "cannot connect to NATS" in e, e
            # A vehicle's certificate, from the devices' CA: NATS does not know that CA.
            veh = cfg(nats, pki, "st1", node="x3")
            t.run("certs", "device", env.certs.dir, "5YJTLSNATS0000002")
            veh["cluster"]["tls"]["cert"] = os.path.join(env.certs.dir, "devices",
                                                         "5YJTLSNATS0000002.crt")
            veh["cluster"]["tls"]["key"] = os.path.join(env.certs.dir, "devices",
                                                        "5YJTLSNATS0000002.key")
            e = refused(env, veh, storage.key_file, "x3")
            assert "cannot connect to NATS" in e, e
            plain = cfg(nats, pki, "st1", url="nats", node="x4")
            del plain["cluster"]["tls"]
            e = refused(env, plain, storage.key_file, "x4")
            assert "cannot connect to NATS" in e, e
            # The refused nodes changed nothing: the cluster still streams.
            assert d.send(gw, 10, 5) == 5 and len(d.acked) == 15, d.errors
            t.wait_until("the later records on the storage node", stored, timeout=30)

            # The gateway's own listener: /status for a load balancer, /metrics, no data.
            code, body = gw.http("/status")
            s = json.loads(body)
            assert code == 200 and s["status"] == "ok" and s["role"] == "gateway", (code, s)
            assert s["log_appended_seq"] >= 15 and s["log_durable_seq"] <= s["log_appended_seq"]
            # (the device's disconnect record may still await its PubAck: soon none does)
            m = t.wait_until("the gateway's last PubAcks", lambda: (
                lambda m: m["fleetvault_cluster_publish_outstanding"] == 0 and m)(gw.metrics()),
                timeout=15, step=0.1)
            assert m["fleetvault_cluster_published_total"] >= 15, m
            assert m["fleetvault_cluster_pubacks_total"] == m[
                "fleetvault_cluster_published_total"], m
            assert m["fleetvault_cluster_publish_outstanding"] == 0, m
            code, body = gw.http(f"/api/v1/query?device={d.id}&signals=Soc")
            assert code == 404 and "this node is a gateway" in body, (code, body)
            gw.stop()
            storage.stop()
        finally:
            nats.stop()


if __name__ == "__main__":
    t.main([test_tls_cluster_and_refusals])
