"""Daily quotas counted for the whole cluster (docs/cluster.md, "Quotas across the cluster";
cluster/jsquotas.h): one nats-server (R1), two storage nodes and an api node, the same policy
file on every node, in which role "metered" may read a small number of bytes a day.

- Principal "reader" (role metered) reads directly on storage node A (under half its quota),
  and once through the api node (its owners count what they answered).
- Then directly on B until refused: B refuses after fewer reads than one node's quota allows
  (on one node alone B would allow the whole quota), with the single node's quota answer (403
  naming the quota).
- A and the api node refuse too, within a batch (a bounded wait, at most one more read).
- A restarted without its DATA/quota.db (so its own counts can only come from the bucket)
  still refuses: its published counts are read back.
- Values in the bucket are wrapped (FVKV version 1, kind 'Q'); keys name no principal.
- NATS lost: A says so (log, metric fleetvault_cluster_quotas_stale 1) and keeps deciding on
  its own counts and the others' last seen: still refused."""
import base64
import datetime
import glob
import hashlib
import json
import os
import time

import fvtest as t
from test_cluster import with_nats
from test_cluster_keys import NatsClient

SHARDS = 4
READ = "/api/v1/vehicles"
BUCKET = "fv-quotas"


def cfg(nats, **extra):
    c = {"nats": [f"nats://127.0.0.1:{nats.port}"], "replicas": 1, "shards": SHARDS,
         "lease_renew_ms": 500, "lease_ttl_ms": 5000}
    c.update(extra)
    return c


def node(env, name, nats, role, policy, key_file=None):
    root = os.path.join(env.root, name)
    os.makedirs(root)
    srv = t.Server(root, env.certs, config={"cluster": cfg(nats, node=name)},
                   extra=["--role", role, "--no-rate-limit"], policy=policy)
    if key_file:
        srv.key_file = key_file  # every node of a cluster has the same master key
    return srv.start()


def read(srv):
    st, body = srv.http(READ, token="reader")
    return st, body


def refused(st, body):
    return st == 403 and b"quota" in body


def bucket_values(nats):
    nc = NatsClient(nats.port)
    info = nc.request(f"$JS.API.STREAM.INFO.KV_{BUCKET}",
                      json.dumps({"subjects_filter": ">"}).encode())
    out = {}
    for subj in info["state"]["subjects"]:
        m = nc.request(f"$JS.API.STREAM.MSG.GET.KV_{BUCKET}",
                       json.dumps({"last_by_subj": subj}).encode())
        out[subj[len(f"$KV.{BUCKET}."):]] = base64.b64decode(m["message"]["data"])
    return out


def quota_key(name, node):
    """The KV key of node's counts of name today (cluster/jsquotas.h)."""
    day = int(time.time() * 1000) // 86400000
    return f"{day}.{hashlib.sha256(name.encode()).hexdigest()[:16]}.{node}"


def put_time(nats, key):
    """When the bucket's entry key was last written (epoch seconds), or None."""
    nc = NatsClient(nats.port)
    m = nc.request(f"$JS.API.STREAM.MSG.GET.KV_{BUCKET}",
                   json.dumps({"last_by_subj": f"$KV.{BUCKET}.{key}"}).encode())
    if "message" not in m:
        return None
    ts = m["message"]["time"]  # RFC 3339, nanoseconds, UTC
    whole, _, frac = ts.rstrip("Z").partition(".")
    dt = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    return dt.timestamp() + float("0." + (frac or "0"))


def last_seq(nats):
    nc = NatsClient(nats.port)
    return nc.request(f"$JS.API.STREAM.INFO.KV_{BUCKET}", b"")["state"]["last_seq"]


def test_cluster_quotas():
    with_nats(run)


def run(env, nats):
    t0 = time.time()
    # The size of one answer decides the quota: measured on a node of the same build first
    # (an empty fleet's list: the same bytes on every storage node).
    pol = t.test_policy({"metered": t.role({"service": ["default"]}, quota={
        "subjects_per_day": None, "rows_per_day": None, "bytes_per_day": 10 ** 9})})
    a = node(env, "st-a", nats, "storage", pol)
    st, body = a.http(READ, token="ops")  # role ops: no quota
    assert st == 200, (st, body)
    size = len(body)
    # the test's policy: 20 answers a day (the same file on every node)
    per_day = 20
    pol["roles"]["metered"]["quota"]["bytes_per_day"] = per_day * size
    with open(a.policy, "w") as f:
        json.dump(pol, f)
    a.stop()
    a.start()
    b = node(env, "st-b", nats, "storage", pol, a.key_file)
    api = node(env, "api", nats, "api", pol, a.key_file)
    nodes = (a, b, api)
    a.principal("reader", "metered")
    for s in nodes:
        s.await_principal("reader")
    # the api node asks every shard's owner: the shards split first (no lease moving)
    t.wait_until("the two storage nodes to split the shards",
                 lambda: [s.metric("fleetvault_cluster_shards_owned") for s in (a, b)] ==
                 [SHARDS // 2] * 2, timeout=30, step=0.2)

    # A: 8 of the 20 answers (not near the limit: published in the batch).
    first_a = 8
    for i in range(first_a):
        st, body = read(a)
        assert st == 200 and len(body) == size, (i, st, body)
    # Through the api node: its owners (A, B) answer for their shards and count them.
    st, body = read(api)
    assert st == 200, (st, body)
    done = time.time()
    # Within a batch: A has published its counts of reader after its last read (a put after
    # it carries every count made before it), and B has read the bucket up to there.
    key = quota_key("reader", "st-a")
    t.wait_until("A to publish its counts",
                 lambda: (put_time(nats, key) or 0) > done, timeout=5, step=0.05)
    last = last_seq(nats)
    t.wait_until("B to read them",
                 lambda: b.metric("fleetvault_cluster_quotas_followed_seq") >= last, timeout=5,
                 step=0.05)

    # B until refused: fewer than the 20 a node alone would allow, and fewer than 20 - 8.
    b_ok = 0
    for _ in range(per_day + 2):
        st, body = read(b)
        if refused(st, body):
            break
        assert st == 200, (st, body)
        b_ok += 1
    assert refused(st, body), (b_ok, st, body)
    t.log(f"B refused after {b_ok} reads (A read {first_a}, the api node 1; {per_day} a day)")
    assert b_ok <= per_day - first_a - 1, b_ok
    assert b"daily quota of reader" in body or b"daily quota of role:metered" in body, body
    assert b.metric("fleetvault_cluster_quotas_applied_total") >= 1

    # A and the api node refuse within a batch: at most one more read allowed meanwhile.
    extra = {"a": 0, "api": 0}

    def refuses(name, srv):
        st, body = read(srv)
        if st == 200:
            extra[name] += 1
            return False
        assert refused(st, body), (name, st, body)
        return True

    t.wait_until("A to refuse", lambda: refuses("a", a), timeout=3, step=0.1)
    t.wait_until("the api node to refuse", lambda: refuses("api", api), timeout=3, step=0.1)
    assert extra["a"] <= 1 and extra["api"] <= 1, extra
    assert read(b)[0] == 403

    # A restarted without its own counts on disk: read back from the bucket (Q4).
    a.stop()
    for p in glob.glob(os.path.join(a.data, "quota.db*")):
        os.remove(p)
    a.start()
    st, body = read(a)
    assert refused(st, body), (st, body)

    # The bucket: wrapped values, keys naming no principal.
    values = bucket_values(nats)
    assert len(values) >= 4, values  # reader and role:metered, on A and on B at least
    for k, v in values.items():
        assert v[:6] == b"FVKV\x01Q", (k, v[:8])
        assert "reader" not in k and "metered" not in k
        assert b"reader" not in v and b"metered" not in v
    for s in nodes:
        assert s.metric("fleetvault_cluster_quotas_malformed_total") == 0
    assert b.metric("fleetvault_cluster_quotas_published_total") >= 1

    # NATS lost: stale said, decisions go on locally (still refused).
    nats.stop()
    t.wait_until("A to say its quota counts are stale",
                 lambda: a.metric("fleetvault_cluster_quotas_stale") == 1, timeout=10, step=0.2)
    assert "quota counts are stale" in a.log() or "quota counts not published" in a.log()
    st, body = read(a)
    assert refused(st, body), (st, body)
    t.log(f"test_cluster_quotas: {time.time() - t0:.1f} s")


if __name__ == "__main__":
    t.main([test_cluster_quotas])
