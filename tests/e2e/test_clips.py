"""Clip upload, the clip store and de-identification (issue 12, items 2-4, the upload half of
8): uploads over the clip endpoint's mutual TLS with the vehicle's certificate, resumed after
an interruption; every refusal (a wrong chunk or clip hash, over the size limit, not MCAP, no
consent, a campaign not sent, a wrong offset, no certificate) answers a clear JSON error and
stores nothing; the de-identification command passes, fails and times out; erasure removes
the clips; GET /api/v1/clips is pseudonymised and purpose-bound."""
import glob
import hashlib
import http.client
import json
import os
import ssl
import struct
import time

import fvtest as t

A = "5YJSIMCLIP0000000"  # consents to purpose clips (the simulator's first VIN)
B = "5YJSIMNOCL0000000"  # does not
CAMPAIGN = "camp-1"

DEID = r'''
import os, sys, time
mode = open(os.path.join(os.path.dirname(sys.argv[0]), "deid_mode")).read().strip()
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89MCAP0\r\n"
if mode == "pass":
    open(sys.argv[2], "wb").write(data)  # "blurred": the same clip
    print("blurred 0 faces, 0 plates in", len(data), "bytes")
elif mode == "fail":
    print("detector crashed on frame 3", file=sys.stderr)
    sys.exit(3)
else:
    print("thinking...", flush=True)
    time.sleep(30)
'''

ENGINE = {  # a data-engine role: pseudonymised clips of consenting subjects
    "comment": "e2e: clip metadata", "actions": ["read"],
    "purposes": {"clips": ["events", "location"]},
    "requires_ticket": False, "max_subjects_per_request": None,
    "bulk_subjects_threshold": None, "aggregate_only": False, "pseudonymise": True,
    "consented_only": True, "location_privacy": True, "energy_sites_only": False,
    "approves_bulk": False,
    "quota": {"subjects_per_day": None, "rows_per_day": None, "bytes_per_day": None}}

MAGIC = b"\x89MCAP0\r\n"


def rec(op, content):
    return bytes([op]) + struct.pack("<Q", len(content)) + content


def big_mcap(n):
    """An MCAP file of about n bytes: the padding inside a metadata record's value."""
    s = lambda x: struct.pack("<I", len(x)) + x  # noqa: E731
    pad = os.urandom(n)
    meta = s(b"pad") + struct.pack("<I", len(s(b"k") + s(pad))) + s(b"k") + s(pad)
    return (MAGIC + rec(0x01, s(b"") + s(b"e2e")) + rec(0x0C, meta) +
            rec(0x0F, struct.pack("<I", 0)) + rec(0x02, struct.pack("<QQI", 0, 0, 0)) + MAGIC)


class Clip:
    """The upload protocol over mutual TLS, with a device's certificate (or none)."""

    def __init__(self, env, port, dev):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=env.certs.ca)
        if dev:
            d = os.path.join(env.certs.dir, "devices", dev)
            self.ctx.load_cert_chain(d + ".crt", d + ".key")

    def req(self, method, path, body=None, headers=None):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=20)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
        finally:
            c.close()
        return r.status, (json.loads(data) if data else {})

    def create(self, clip_id, data, campaign=CAMPAIGN, sha=None, size=None):
        body = json.dumps({"clip_id": clip_id, "campaign_id": campaign, "trigger": "hard_brake",
                           "trigger_ms": int(time.time() * 1000),
                           "size": len(data) if size is None else size,
                           "sha256": sha or hashlib.sha256(data).hexdigest()})
        return self.req("POST", "/clips/v1/uploads", body, {"Content-Type": "application/json"})

    def chunk(self, uid, off, data, sha=None):
        return self.req("PUT", f"/clips/v1/uploads/{uid}?offset={off}", data,
                        {"X-Chunk-SHA256": sha or hashlib.sha256(data).hexdigest()})

    def status(self, uid):
        return self.req("GET", f"/clips/v1/uploads/{uid}")

    def finish(self, uid):
        return self.req("POST", f"/clips/v1/uploads/{uid}/finish", b"")

    def upload(self, clip_id, data, step=300000):
        st, b = self.create(clip_id, data)
        assert st == 201, (st, b)
        uid = b["upload_id"]
        for off in range(0, len(data), step):
            st, b = self.chunk(uid, off, data[off:off + step])
            assert st == 200 and b["offset"] == min(off + step, len(data)), (st, b)
        return uid, self.finish(uid)


def stored_files(srv):
    return sorted(glob.glob(os.path.join(srv.data, "clips", "store", "*", "*.clip")))


def partial_files(srv):
    return sorted(glob.glob(os.path.join(srv.data, "clips", "partial", "*")))


def clips(srv, q=""):
    st, b = srv.http("/api/v1/clips?purpose=clips" + q, token="engine", purpose=None)
    assert st == 200, (st, b)
    return json.loads(b)


def consent(srv, dev, change):
    if "po" not in srv.tokens:
        srv.principal("po", "privacy-officer")
    st, b = srv.http(f"/api/v1/subjects/{dev}/consent?purpose=clips&change={change}"
                     f"&by=owner&ticket=DSR-1", token="po", method="POST", purpose=None)
    assert st == 200, (st, b)


def wait_deid(srv, clip, want, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        row = [c for c in clips(srv)["clips"] if c["clip"] == clip]
        if row and row[0]["deid"]["status"] != "pending":
            assert row[0]["deid"]["status"] == want, row
            return row[0]["deid"]
        time.sleep(0.1)
    raise AssertionError(f"de-identification of {clip} still pending: {clips(srv)}")


def start(env):
    port = t.free_port()
    script = os.path.join(env.root, "deid.py")
    with open(script, "w") as f:
        f.write(DEID)
    with open(os.path.join(env.root, "deid_mode"), "w") as f:
        f.write("pass")
    srv = t.Server(env.root, env.certs, policy=t.test_policy({"engine": ENGINE}), config={
        "rate_limits": False,
        "clips": {"listen": f"127.0.0.1:{port}", "campaigns": [CAMPAIGN], "max_clip_mb": 2,
                  "max_chunk_mb": 1, "max_concurrent": 2, "deid_timeout_s": 2,
                  "deid_command": ["python3", script, "{in}", "{out}"]}}).start()
    srv.clip_port = port
    srv.principal("engine", "engine")
    return srv


def set_mode(env, mode):
    with open(os.path.join(env.root, "deid_mode"), "w") as f:
        f.write(mode)


def test_upload_resume_refusals_deid_erasure():
    with t.Env() as env:
        env.certs.device(A)
        env.certs.device(B)
        srv = start(env)
        dev = t.Device(env, A, int(time.time() * 1000) - 60000)
        dev.send(srv, 0, 3)  # a position for the coarse place
        consent(srv, A, "give")
        a = Clip(env, srv.clip_port, A)

        # 1. the simulator's clip, interrupted halfway through its second chunk and resumed
        r = t.run("simulate", "--clips", "1", "--interrupt", "--clip-server",
                  f"https://127.0.0.1:{srv.clip_port}", "--certs", env.certs.dir,
                  "--campaign", CAMPAIGN, "--id-prefix", "5YJSIMCLIP", "--chunk-kb", "128",
                  check=False)
        line = r.stdout.strip()
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert line.startswith(A) and " 201 " in line and "resumed at 131072" in line, line
        got = clips(srv)
        assert got["count"] == 1, got
        c0 = got["clips"][0]
        assert c0["vehicle"] != A and len(c0["vehicle"]) >= 16, c0  # a pseudonym
        assert c0["campaign"] == CAMPAIGN and c0["trigger"] == "hard_brake", c0
        assert c0["size"] > 5 * 96 * 1024, c0
        # the coarse place: the latest position (48.10002, 11.5) snapped to the 1 km grid
        lat, lon = c0["place"]["lat"], c0["place"]["lon"]
        assert abs(lat - 48.1) < 0.01 and abs(lon - 11.5) < 0.02, c0
        assert (lat, lon) != (48.10002, 11.5), c0
        # purpose-bound: a role without the purpose is refused (and audited)
        st, b = srv.http("/api/v1/clips?purpose=clips", token="ops", purpose=None)
        assert st == 403, (st, b)
        st, b = srv.http("/api/v1/clips", token="engine", purpose=None)
        assert st == 403 and b"purpose" in b, (st, b)
        r = t.run("audit", "query", "--data", srv.data, "--action", "clips.list")
        entries = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
        by = {(e.get("principal"), e.get("result")) for e in entries}
        assert ("engine", "allow") in by and ("ops", "deny") in by, entries
        assert A not in r.stdout  # subjects by pseudonym in the audit log
        files = stored_files(srv)
        assert len(files) == 1, files
        assert A not in files[0]
        sealed = open(files[0], "rb").read()
        assert MAGIC not in sealed and b"VehicleSpeed" not in sealed  # encrypted at rest
        assert partial_files(srv) == []
        d = wait_deid(srv, c0["clip"], "passed")
        assert d["exit"] == 0 and "blurred 0 faces" in d["summary"], d

        # 2. refusals: a clear JSON error, nothing stored, the committed offset unchanged
        data = big_mcap(700000)
        st, b = a.create("clip-x", data)
        assert st == 201, (st, b)
        uid = b["upload_id"]
        st, b = a.chunk(uid, 0, data[:300000], sha="0" * 64)
        assert st == 422 and "SHA-256" in b["error"] and b["offset"] == 0, (st, b)
        assert a.status(uid) == (200, {"upload_id": uid, "offset": 0, "size": len(data)})
        assert a.req("HEAD", f"/clips/v1/uploads/{uid}")[0] == 200
        st, b = a.chunk(uid, 0, data[:300000])
        assert st == 200 and b["offset"] == 300000, (st, b)
        st, b = a.chunk(uid, 600000, data[600000:])  # a gap
        assert st == 409 and b["offset"] == 300000, (st, b)
        st, b = a.chunk(uid, 0, data[:300000])  # a resend: nothing written
        assert st == 200 and b["offset"] == 300000, (st, b)
        st, b = a.finish(uid)
        assert st == 409 and "300000 of" in b["error"], (st, b)
        st, b = a.chunk(uid, 300000, data[300000:])
        assert st == 200 and b["offset"] == len(data), (st, b)
        assert a.finish(uid)[0] == 201
        assert len(stored_files(srv)) == 2

        # a wrong whole-clip hash: every chunk good, the finish refused, nothing stored
        other = big_mcap(1000)
        st, b = a.create("clip-badsha", other, sha=hashlib.sha256(b"x").hexdigest())
        assert st == 201, b
        assert a.chunk(b["upload_id"], 0, other)[0] == 200
        st, b2 = a.finish(b["upload_id"])
        assert st == 422 and "SHA-256" in b2["error"] and "nothing stored" in b2["error"], b2
        assert a.status(b["upload_id"])[0] == 404  # discarded
        # not MCAP
        junk = os.urandom(4000)
        uid, (st, b) = a.upload("clip-junk", junk)
        assert st == 422 and "not MCAP" in b["error"], (st, b)
        # a damaged MCAP (its shape - magics, footer - intact): the record at byte 28 turned
        # into a message of a channel never defined; refused with that offset, nothing stored
        bad = bytearray(big_mcap(3000))
        assert bad[28] == 0x0C
        bad[28] = 0x05
        n = len(stored_files(srv))
        uid, (st, b) = a.upload("clip-damaged", bytes(bad))
        assert st == 422 and "byte 28" in b["error"] and "nothing stored" in b["error"], (st, b)
        assert a.status(uid)[0] == 404 and len(stored_files(srv)) == n
        # over the size limit (2 MiB per clip)
        st, b = a.create("clip-big", b"", sha=hashlib.sha256(b"").hexdigest(), size=3 << 20)
        assert st == 413 and "limit" in b["error"], (st, b)
        # malformed create
        st, b = a.req("POST", "/clips/v1/uploads", "{\"clip_id\": \"a b\"}")
        assert st == 400 and "clip_id" in b["error"], (st, b)
        # a campaign the vehicle was not sent
        st, b = a.create("clip-camp", other, campaign="camp-unknown")
        assert st == 422 and "camp-unknown" in b["error"], (st, b)
        # no consent
        st, b = Clip(env, srv.clip_port, B).create("clip-b", other)
        assert st == 422 and "consent" in b["error"], (st, b)
        # a clip id stored already
        st, b = a.create("clip-x", data)
        assert st == 409 and "stored already" in b["error"], (st, b)
        # no client certificate: no TLS session at all
        try:
            Clip(env, srv.clip_port, None).create("clip-nocert", other)
            raise AssertionError("served without a client certificate")
        except (ssl.SSLError, ConnectionError, OSError):
            pass
        # another device's upload is unknown to this one
        st, b = a.create("clip-open", other)
        assert st == 201
        assert Clip(env, srv.clip_port, B).status(b["upload_id"])[0] == 404
        assert len(stored_files(srv)) == 2 and clips(srv)["count"] == 2
        # the partial files left are the open upload's only
        assert [os.path.basename(p)[:32] for p in partial_files(srv)] == [b["upload_id"]] * 2

        # 3. de-identification: failed, timed out; neither is "passed"
        wait_deid(srv, [c for c in clips(srv)["clips"] if c["clip_id"] == "clip-x"][0]["clip"],
                  "passed")
        set_mode(env, "fail")
        uid, (st, b) = a.upload("clip-fail", big_mcap(5000))
        assert st == 201, b
        d = wait_deid(srv, uid, "failed")
        assert d["exit"] == 3 and "detector crashed" in d["summary"], d
        set_mode(env, "sleep")
        t0 = time.time()
        uid, (st, b) = a.upload("clip-slow", big_mcap(5000))
        assert st == 201, b
        d = wait_deid(srv, uid, "timeout")
        assert time.time() - t0 < 10 and "killed after the timeout" in d["summary"], d
        passed = clips(srv, "&deid=passed")
        assert passed["count"] == 2, passed
        # the vehicle's samples are a minute old: no signal in any clip's window, each clip
        # stored as uploaded (no empty channels) and counted
        assert srv.metric('fleetvault_clip_signals_total{outcome="none"}') == 4
        assert srv.metric('fleetvault_clip_signals_total{outcome="added"}') == 0
        # every run is audited (D6): before the clip is read, and its outcome
        time.sleep(1.5)  # the API thread writes the worker's records each turn
        r = t.run("audit", "query", "--data", srv.data, "--principal", "clips-deid")
        runs = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
        acts = sorted((e["action"], e.get("result")) for e in runs)
        assert acts.count(("clips.deid", "allow")) == 4, acts
        assert acts.count(("clips.deid.result", "allow")) == 2, acts
        assert acts.count(("clips.deid.result", "error")) == 2, acts
        assert A not in r.stdout

        # 4. erasure removes the clips (files and rows); B's nothing is untouched
        st, b = srv.http(f"/api/v1/subjects/{A}/erase?ticket=GDPR-7", token="po", method="POST",
                         purpose=None)
        assert st == 200, (st, b)
        assert stored_files(srv) == [], stored_files(srv)
        assert clips(srv)["count"] == 0
        deadline = time.time() + 5  # its upload in progress too (the clip thread's next turn)
        while partial_files(srv) and time.time() < deadline:
            time.sleep(0.05)
        assert partial_files(srv) == [], partial_files(srv)
        for p in glob.glob(os.path.join(srv.data, "clips", "**"), recursive=True):
            assert A not in p
        srv.stop()
        assert A not in srv.log()  # VINs never in logs


def test_erasure_reaches_restored_clips():
    """A backup taken before an erasure and restored after it brings the clips' files and rows
    back: the start replays the erasure list and purges them again (their key is gone)."""
    import shutil
    with t.Env() as env:
        env.certs.device(A)
        srv = start(env)
        t.Device(env, A, int(time.time() * 1000) - 60000).send(srv, 0, 2)
        consent(srv, A, "give")
        t.run("simulate", "--clips", "2", "--clip-server", f"https://127.0.0.1:{srv.clip_port}",
              "--certs", env.certs.dir, "--campaign", CAMPAIGN, "--id-prefix", "5YJSIMCLIP",
              "--frames", "2", "--frame-kb", "8")
        assert clips(srv)["count"] == 2 and len(stored_files(srv)) == 2
        srv.stop()
        backup = os.path.join(env.root, "backup")
        shutil.copytree(srv.data, backup)
        srv.start()
        st, b = srv.http(f"/api/v1/subjects/{A}/erase?ticket=GDPR-8", token="po", method="POST",
                         purpose=None)
        assert st == 200, (st, b)
        assert stored_files(srv) == []
        srv.stop()
        shutil.rmtree(srv.data)
        shutil.copytree(backup, srv.data)
        assert len(stored_files(srv)) == 2  # the restored backup has them
        srv.start()
        assert stored_files(srv) == [], stored_files(srv)
        assert clips(srv)["count"] == 0


def small_mcap(root):
    """A small clip (one /imu channel, three messages) written by `fleetvault mcap write`."""
    out = os.path.join(root, "small.mcap")
    lines = [{"schema": {"name": "imu", "encoding": "jsonschema", "data_hex": "7b7d"}},
             {"channel": {"topic": "/imu", "message_encoding": "json", "schema_id": 1,
                          "metadata": {"sensor": "imu"}}}]
    for i in range(3):
        lines.append({"message": {"channel": 1, "sequence": i, "log_time": str(1000 + i),
                                  "publish_time": str(1000 + i),
                                  "data_hex": json.dumps({"ax": i}).encode().hex()}})
    t.run("mcap", "write", out, input="\n".join(json.dumps(x) for x in lines))
    with open(out, "rb") as f:
        return f.read()


def test_signal_channels():
    """Issue 12 item 3: the store's signals around the trigger are added to the stored clip as
    channels (docs/data-engine.md "Signal channels"): one per signal, JSON messages at the
    samples' times, the location signal left out, samples outside the window left out; one
    audit record per clip; a clip with a metadata record is stored as uploaded; each outcome
    counted. Read back as a labeler is served the clip: without the signals for the default
    labeler (class events only), with them for a labeler role given class default."""
    with t.Env() as env:
        env.certs.device(A)
        srv = start(env)
        now = int(time.time() * 1000)
        # Soc 50.00 .. 50.04 and Location at now-5 s .. now-1 s; Soc 51.00 at now-60 s (outside)
        t.Device(env, A, now - 5000).send(srv, 0, 5)
        t.Device(env, A, now - 160000).send(srv, 100, 1)
        consent(srv, A, "give")
        st, b = srv.http(f"/api/v1/subjects/{A}/consent?purpose=model_training&change=give"
                         f"&by=owner&ticket=DSR-2", token="po", method="POST", purpose=None)
        assert st == 200, (st, b)  # for the labeler below
        a = Clip(env, srv.clip_port, A)
        data = small_mcap(env.root)
        uid, (st, b) = a.upload("clip-sig", data)  # trigger: now (+ the time the sends took)
        assert st == 201, (st, b)
        row = [c for c in clips(srv)["clips"] if c["clip"] == uid][0]
        assert row["size"] > len(data), row  # the stored clip is the rewritten one
        # a clip with a metadata record (the copy would drop it): stored as uploaded
        big = big_mcap(2000)
        uid2, (st, b) = a.upload("clip-meta", big)
        assert st == 201, (st, b)
        row2 = [c for c in clips(srv)["clips"] if c["clip"] == uid2][0]
        assert row2["size"] == len(big), row2
        assert srv.metric('fleetvault_clip_signals_total{outcome="added"}') == 1
        assert srv.metric('fleetvault_clip_signals_total{outcome="failed"}') == 1
        assert srv.metric('fleetvault_clip_signals_total{outcome="none"}') == 0

        # read back as a labeler is served it (de-identification passed, model_training).
        # The default policy's labeler reads class events only: the signals (class default)
        # are not in the copy it is served (labeling_api.c Q4).
        wait_deid(srv, uid, "passed")
        srv.principal("lab", "labeler")
        out = os.path.join(env.root, "served.mcap")

        def serve():
            st, b = srv.http("/api/v1/labeling/next?purpose=model_training", token="lab",
                             method="POST", purpose=None)
            assert st == 200 and json.loads(b)["clip"] == uid, (st, b)
            st, served = srv.http(f"/api/v1/labeling/clips/{uid}?purpose=model_training",
                                  token="lab", purpose=None)
            assert st == 200 and served[:8] == MAGIC, (st, served[:40])
            with open(out, "wb") as f:
                f.write(served)
            t.run("mcap", "verify", out)
            assert A.encode() not in served and b"48.1" not in served  # no VIN, no location
            return json.loads(t.run("mcap", "info", out).stdout)
        info = serve()
        assert [c["topic"] for c in info["channels"]] == ["/imu", "/fleetvault/watermark"], info
        assert not [x for x in info["schemas"] if "signals" in x["name"]], info["schemas"]
        st, b = srv.http(f"/api/v1/labeling/clips/{uid}/release?purpose=model_training",
                         token="lab", method="POST", purpose=None)
        assert st == 200, (st, b)
        # a labeler role given class default for model_training is served them
        srv.stop()
        pol = t.test_policy({"engine": ENGINE})
        pol["roles"]["labeler"]["purposes"]["model_training"] = ["default", "events"]
        with open(srv.policy, "w") as f:
            json.dump(pol, f)
        srv.start()
        info = serve()
        topics = [c["topic"] for c in info["channels"]]
        assert topics == ["/imu", "/fleetvault/signals/Soc", "/fleetvault/watermark"], topics
        soc = info["channels"][1]
        assert soc["message_encoding"] == "json", soc
        assert soc["metadata"] == {"source": "fleetvault-store", "signal": "Soc",
                                   "field": "8"}, soc
        schema = [x for x in info["schemas"] if x["id"] == soc["schema_id"]][0]
        assert schema["name"] == "fleetvault.signals.Soc" and schema["encoding"] == "jsonschema"
        assert json.loads(bytes.fromhex(schema["data_hex"]))["properties"] == {
            "Soc": {"type": "number"}}, schema
        msgs = [json.loads(x) for x in t.run("mcap", "cat", out, "--topic",
                                             "/fleetvault/signals/Soc").stdout.splitlines()]
        got = [(int(m["log_time"]), json.loads(bytes.fromhex(m["data_hex"]))) for m in msgs]
        assert [x[0] for x in got] == [(now - 5000 + i * 1000) * 1000000 for i in range(5)], got
        assert [list(x[1]) for x in got] == [["Soc"]] * 5, got
        assert all(abs(x[1]["Soc"] - (50.0 + i * 0.01)) < 1e-9 for i, x in enumerate(got)), got
        imu = t.run("mcap", "cat", out, "--topic", "/imu").stdout.splitlines()
        assert len(imu) == 3, imu  # the original's messages kept

        # one audit record per clip read (both clips), the subject by pseudonym
        deadline = time.time() + 5
        while time.time() < deadline:
            r = t.run("audit", "query", "--data", srv.data, "--action", "clips.signals")
            recs = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
            if len(recs) >= 2:
                break
            time.sleep(0.2)
        assert len(recs) == 2, recs
        assert A not in r.stdout, r.stdout
        rec = [x for x in recs if uid in json.dumps(x)][0]
        assert rec["principal"] == "clips-server" and rec["purpose"] == "clips", rec
        assert rec["result"] == "allow", rec
        assert '"signals": 1' in json.dumps(rec) and '"samples": 5' in json.dumps(rec), rec
        srv.stop()
        assert A not in srv.log()


if __name__ == "__main__":
    t.main([test_upload_resume_refusals_deid_erasure, test_erasure_reaches_restored_clips,
            test_signal_channels])
