"""End-to-end attacks on the privacy layer (issue 9), each performed over the real CLI and API
against a running server, each asserting the refusal or the protected output. Every test
here failed on the code before its fix.

Sections: test_audit_* (the audit log: history
replaced, tail cut, the tamper matrix), test_consent_* (backdated consent), test_erasure_*
(what an erasure leaves behind)."""
import glob
import hashlib
import json
import os
import sys

import fvtest as t

A = "5YJ3E1EA7KF000901"
T0 = 1795000000000
SOC, LOC = 8, 21


# ---- helpers ----------------------------------------------------------------------------


def audit_files(srv):
    return sorted(glob.glob(os.path.join(srv.data, "audit", "audit-*.jsonl")))


def audit_entries(srv):
    return t.audit_entries(srv)


def audit_line(fields):
    """One audit line as the format says (docs/audit.md): compact JSON in key order, then
    ',"hash":"<sha256 of everything before>"}'."""
    body = json.dumps(fields, separators=(",", ":"))[:-1]
    return body + ',"hash":"' + hashlib.sha256(body.encode()).hexdigest() + '"}'


def verify(srv, *extra):
    pub = srv.key_file + ".audit.pem.pub"
    return t.run("audit", "verify", "--data", srv.data, "--public-key", pub, *extra, check=False)


def witnessed_server(env, witness):
    return t.Server(env.root, env.certs, config={"rate_limits": False, "audit_witness": witness})


def some_reads(srv, n=5):
    for i in range(n):
        st, _ = srv.http(f"/api/v1/vehicles?ticket=T-{i}")
        assert st == 200, st


def send(srv, env, dev, n, t0=T0):
    path = os.path.join(env.certs.dir, "devices", dev + ".crt")
    if not os.path.exists(path):
        env.certs.device(dev)
    ws = t.WS(srv.port, path, path[:-4] + ".key", env.certs.ca)
    for i in range(n):
        d = [(SOC, 50.0 + i), (LOC, (48.1 + i * 1e-3, 11.5))]
        ws.send(t.fb_envelope(f"{dev}-{t0}-{i}".encode(), b"V", t.v_payload(d, t0 + i * 1000)))
    for _ in range(n):
        _, p = ws.recv()
        assert t.fb_decode(p)["message_type"] == 5
    ws.close()


# ---- the audit log (issue 9 items 1 and 2) ----------------------------------------------


def forge_history(srv):
    """Item 1's attack: every audit file removed, a fresh genesis written after the old last
    seq, followed by an unsigned audit.retention entry 'through' that seq."""
    last = audit_entries(srv)[-1]
    n = last["seq"]
    for f in audit_files(srv):
        os.unlink(f)
    g = audit_line({"seq": n + 1, "ts": last["ts"] + 1000, "prev": "0" * 64, "kind": "genesis",
                    "prev_file": "", "last_checkpoint": 0})
    gh = json.loads(g)["hash"]
    r = audit_line({"seq": n + 2, "ts": last["ts"] + 1001, "prev": gh, "kind": "admin",
                    "action": "audit.retention", "principal": "fleetvault", "result": "allow",
                    "reason": "entries older than 600000 ms",
                    "extra": {"files": ["audit-0000000000000001.jsonl"], "through": n,
                              "retention_ms": 600000}})
    with open(os.path.join(srv.data, "audit", "audit-%016x.jsonl" % (n + 1)), "w") as f:
        f.write(g + "\n" + r + "\n")
    return n


def test_audit_history_replaced():
    with t.Env() as env:
        wit = os.path.join(env.root, "witness.jsonl")
        srv = witnessed_server(env, wit).start()
        some_reads(srv)
        srv.stop()
        assert "INTACT" in verify(srv, "--witness", wit, "--strict").stdout
        forge_history(srv)
        # Without a witness the unsigned retention claim is refused already.
        r = verify(srv)
        assert r.returncode == 1 and "BROKEN" in r.stdout and "no signed checkpoint" in r.stdout, (
            r.stdout, r.stderr)
        # The server does not sign the replaced history: it refuses to start.
        assert not srv.try_start(), "the server started on a replaced audit history"
        assert "witness" in srv.log(), srv.log()[-2000:]
        r = verify(srv, "--witness", wit, "--strict")
        assert r.returncode == 1 and "BROKEN" in r.stdout, (r.stdout, r.stderr)


def test_audit_history_replaced_and_signed():
    """The same attack on a server that had no witness configured while the attacker
    restarted it (so the forged retention got signed): the witness, given back to verify,
    still sees that its checkpoints were never retained."""
    with t.Env() as env:
        wit = os.path.join(env.root, "witness.jsonl")
        srv = witnessed_server(env, wit).start()
        some_reads(srv)
        srv.stop()
        forge_history(srv)
        plain = t.Server(env.root, env.certs, config={"rate_limits": False})
        plain.tokens = dict(srv.tokens)
        plain.start()
        plain.stop()
        r = verify(srv, "--witness", wit, "--strict")
        assert r.returncode == 1 and "BROKEN" in r.stdout and "never saw" in r.stdout, (
            r.stdout, r.stderr)


def test_audit_tail_cut_after_kill9():
    with t.Env() as env:
        wit = os.path.join(env.root, "witness.jsonl")
        srv = witnessed_server(env, wit).start()
        some_reads(srv, 8)  # answered: their entries are on disk (and, fixed, witnessed)
        srv.kill9()
        # Cut the log back to its last checkpoint (the one written at start-up).
        f = audit_files(srv)[-1]
        with open(f) as fh:
            lines = fh.read().splitlines()
        k = max(i for i, x in enumerate(lines) if '"kind":"checkpoint"' in x)
        assert k < len(lines) - 8, "expected unsigned entries after the last checkpoint"
        with open(f, "w") as fh:
            fh.write("\n".join(lines[:k + 1]) + "\n")
        r = verify(srv, "--witness", wit, "--strict")
        assert r.returncode == 1 and "INTACT" not in r.stdout, (r.stdout, r.stderr)
        assert "truncated" in r.stdout, r.stdout
        # Nor will the server sign the cut log.
        assert not srv.try_start(), "the server started on a cut audit log"


def test_audit_unwitnessed_tail_is_unverifiable():
    """Entries after the last one the witness holds are reported as unverifiable, never as
    intact."""
    with t.Env() as env:
        wit = os.path.join(env.root, "witness.jsonl")
        srv = witnessed_server(env, wit).start()
        some_reads(srv, 3)
        srv.stop()
        last = audit_entries(srv)[-1]
        extra = audit_line({"seq": last["seq"] + 1, "ts": last["ts"], "prev": last["hash"],
                            "kind": "access", "action": "query", "principal": "ops",
                            "rows": 0, "bytes": 0, "result": "allow"})
        with open(audit_files(srv)[-1], "a") as fh:
            fh.write(extra + "\n")
        r = verify(srv, "--witness", wit)
        assert r.returncode == 0 and r.stdout.startswith("UNVERIFIABLE TAIL"), r.stdout
        assert verify(srv, "--witness", wit, "--strict").returncode == 1


def tamper(kind, path):
    with open(path) as fh:
        lines = fh.read().splitlines()
    k = next(i for i, x in enumerate(lines) if '"kind":"access"' in x and i + 2 < len(lines))
    if kind == "edited":
        lines[k] = lines[k].replace('"result":"allow"', '"result":"deny"')
    elif kind == "edited+rehashed":
        e = json.loads(lines[k])
        body = lines[k][:-75].replace('"result":"allow"', '"result":"deny"')
        lines[k] = body + ',"hash":"' + hashlib.sha256(body.encode()).hexdigest() + '"}'
        assert e["hash"] not in lines[k]
    elif kind == "deleted":
        del lines[k]
    elif kind == "reordered":
        lines[k], lines[k + 1] = lines[k + 1], lines[k]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def test_audit_tamper_matrix():
    """docs/audit.md's table: each change is found with and without a witness."""
    import shutil
    with t.Env() as env:
        wit = os.path.join(env.root, "witness.jsonl")
        srv = witnessed_server(env, wit).start()
        some_reads(srv, 6)
        srv.stop()
        pristine = os.path.join(env.root, "pristine")
        shutil.copytree(os.path.join(srv.data, "audit"), pristine)
        for kind in ("edited", "edited+rehashed", "deleted", "reordered"):
            for w in ((), ("--witness", wit)):
                shutil.rmtree(os.path.join(srv.data, "audit"))
                shutil.copytree(pristine, os.path.join(srv.data, "audit"))
                tamper(kind, audit_files(srv)[-1])
                r = verify(srv, *w)
                assert r.returncode == 1 and "BROKEN" in r.stdout, (kind, w, r.stdout)


# ---- consent (issue 9 item 11) ----------------------------------------------------------


def consent_entries(srv):
    r = t.run("audit", "query", "--data", srv.data, "--action", "subject.consent")
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def test_consent_backdated_grant_refused():
    import time
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}).start()
        t1 = int(time.time() * 1000) - 20000
        send(srv, env, A, 5, t1)  # collected while no consent was given
        po = srv.principal("paula", "privacy-officer")
        ml = srv.principal("trainer", "ml-pipeline")
        base = f"/api/v1/subjects/{A}/consent?purpose=model_training&change=give&ticket=DSR-9"
        for at in ("0", str(t1 - 1000), str(int(time.time() * 1000) - 5000)):
            st, b = srv.http(base + "&at=" + at, token=po, method="POST", purpose=None)
            assert st == 400 and b"before it is recorded" in b, (at, st, b)
        q = f"/api/v1/query?device={A}&signals=Soc&from={t1 - 1000}"
        st, b = srv.http(q, token=ml, purpose="model_training")
        # without consent the vehicle is unknown to the role (G11)
        assert st == 404 and A.encode() not in b, (st, b)
        # The refused attempts are audited as denials, with purpose, change and time.
        ents = consent_entries(srv)
        denied = [e for e in ents if e["result"] == "deny"]
        assert len(denied) == 3, ents
        assert all(e["purpose"] == "model_training" and e["extra"]["change"] == "give"
                   for e in denied), denied
        assert denied[0]["extra"]["at_ms"] == 0, denied[0]
        # A grant now is recorded, and audited in full; what was collected before it stays
        # unserved.
        st, b = srv.http(base, token=po, method="POST", purpose=None)
        assert st == 200, b
        at = json.loads(b)["at_ms"]
        ok = [e for e in consent_entries(srv) if e["result"] == "allow"]
        assert len(ok) == 1 and ok[0]["extra"]["at_ms"] == at and ok[0]["extra"]["recorded_ms"] \
            >= at - 1000 and ok[0]["purpose"] == "model_training", ok
        # (the role names vehicles by their pseudonym for its purpose, G11)
        st, b = srv.http("/api/v1/vehicles", token=ml, purpose="model_training")
        pa = json.loads(b)["vehicles"][0]["id"]
        st, b = srv.http(q.replace(A, pa), token=ml, purpose="model_training")
        assert st == 200 and json.loads(b)["count"] == 0, b
        # A withdrawal stays possible (and may be dated back: it only narrows use).
        st, b = srv.http(base.replace("change=give", "change=withdraw"), token=po,
                         method="POST", purpose=None)
        assert st == 200, b


def test_consent_cli_change_audited():
    import time
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}).start()
        send(srv, env, A, 2)
        args = ("subject", "consent", A, "model_training", "give", "--by", "owner", "--data",
                srv.data, "--key-file", srv.key_file)
        # While the server runs, the CLI cannot audit: it refuses and points at the API.
        r = t.run(*args, check=False)
        assert r.returncode != 0 and "API" in r.stderr, (r.returncode, r.stderr)
        assert not consent_entries(srv)
        shown = json.loads(t.run("subject", "show", A, "--data", srv.data, "--key-file",
                                 srv.key_file).stdout)
        assert "model_training" not in json.dumps(shown["periods"][0].get("consent", [])), shown
        srv.stop()
        # Server stopped: a backdated grant is refused, and the attempt audited.
        r = t.run(*args, "--at", "0", check=False)
        assert r.returncode == 1 and "before it is recorded" in r.stderr, r.stderr
        r = t.run(*args)
        ents = consent_entries(srv)
        assert [e["result"] for e in ents] == ["deny", "allow"], ents
        for e in ents:
            assert e["principal"].startswith("os:") and e["purpose"] == "model_training", e
            assert e["extra"]["change"] == "give" and e["extra"]["by"] == "owner", e
            assert A not in json.dumps(e), e  # the subject by pseudonym only
        assert ents[0]["extra"]["at_ms"] == 0
        assert abs(ents[1]["extra"]["at_ms"] - time.time() * 1000) < 60000
        assert "INTACT" in verify(srv).stdout


# ---- erasure (issue 9 item 13) ----------------------------------------------------------


def erase(srv, dev, token):
    return srv.http(f"/api/v1/subjects/{dev}/erase?ticket=GDPR-9", token=token, method="POST",
                    purpose=None)


def env_key_server(env, tomb_dir=None):
    """A server whose master key comes from FV_MASTER_KEY (no key file; the same key for
    every server of env)."""
    srv = t.Server(env.root, env.certs, config={"rate_limits": False})
    if not hasattr(env, "hexkey"):
        with open(srv.key_file) as f:
            env.hexkey = f.read().strip()
    hexkey = env.hexkey
    os.unlink(srv.key_file)  # nothing beside a key file: there is none
    srv.key_file = ""
    srv.env = {"FV_MASTER_KEY": hexkey}
    if tomb_dir:
        srv.env["FV_TOMBSTONE_DIR"] = tomb_dir
    return srv


def assert_backup_erased_again(srv, backup):
    """DATA replaced by a backup taken before the erasure: the start erases it again."""
    import shutil
    shutil.rmtree(srv.data)
    shutil.copytree(backup, srv.data)
    srv.start()
    st, b = srv.http(f"/api/v1/query?device={A}&signals=Soc")
    assert st == 404 and b"unknown device" in b, (st, b)  # erased reads as unknown (G11)


def test_erasure_master_key_env_needs_tombstone_dir():
    import shutil
    with t.Env() as env:
        srv = env_key_server(env).start()
        send(srv, env, A, 3)
        po = srv.principal("paula", "privacy-officer")
        # No place outside DATA for the tombstone: the erasure is refused, nothing changes.
        st, b = erase(srv, A, po)
        assert st != 200 and b"FV_TOMBSTONE_DIR" in b, (st, b)
        assert srv.json(f"/api/v1/query?device={A}&signals=Soc")["count"] == 3
        srv.stop()
        # FV_TOMBSTONE_DIR inside DATA is refused at start.
        bad = env_key_server(env, os.path.join(srv.data, "tomb"))
        bad.tokens = dict(srv.tokens)
        os.makedirs(os.path.join(srv.data, "tomb"), exist_ok=True)
        assert not bad.try_start() and "FV_TOMBSTONE_DIR" in bad.log()
        # Outside DATA: erased, the tombstone there, and a restored backup is erased again.
        tomb = os.path.join(env.root, "tombstones")
        os.makedirs(tomb)
        backup = os.path.join(env.root, "backup")
        shutil.copytree(srv.data, backup)
        good = env_key_server(env, tomb)
        good.tokens = dict(srv.tokens)
        good.start()
        st, b = erase(good, A, po)
        assert st == 200, b
        assert os.path.getsize(os.path.join(tomb, "tombstones.jsonl")) > 0
        good.stop()
        assert_backup_erased_again(good, backup)


def test_erasure_keys_shred_every_period_with_tombstones():
    import shutil
    import time
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}).start()
        send(srv, env, A, 3)
        t.run("subject", "owner", A, "customer-2", "--data", srv.data, "--key-file",
              srv.key_file)
        time.sleep(2.5)  # the server notices the new owner period (owners.h O2)
        send(srv, env, A, 3, int(time.time() * 1000))  # made in period 2 (O1)
        assert srv.json(f"/api/v1/query?device={A}&signals=Soc")["count"] == 3  # period 2
        srv.stop()
        backup = os.path.join(env.root, "backup")
        shutil.copytree(srv.data, backup)
        t.run("keys", "shred", "--data", srv.data, "--key-file", srv.key_file, A)
        with open(srv.key_file + ".tombstones") as f:
            stones = [json.loads(x) for x in f.read().splitlines() if x.strip()]
        assert len({s["subject"] for s in stones}) == 2, stones  # both owner periods
        assert A not in json.dumps(stones)
        srv.start()
        st, b = srv.http(f"/api/v1/query?device={A}&signals=Soc")
        assert st == 404 and b"unknown device" in b, (st, b)  # the current period too (G11)
        srv.stop()
        assert_backup_erased_again(srv, backup)  # a backup from before the shred


def test_erasure_state_list_and_logs():
    import io
    import tarfile
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}).start()
        send(srv, env, A, 3)
        po = srv.principal("paula", "privacy-officer")
        st, body = srv.http(f"/api/v1/subjects/{A}/export?ticket=DSAR-9", token=po,
                            purpose=None)
        assert st == 200 and tarfile.open(fileobj=io.BytesIO(body)).getmembers()
        assert srv.json(f"/api/v1/vehicles/{A}/state")["state"]
        st, b = erase(srv, A, po)
        assert st == 200, b
        # Nothing of the device is served any more: not its state, not its times.
        st, b = srv.http(f"/api/v1/vehicles/{A}/state")
        assert st != 200 and b"last_received" not in b, (st, b)
        assert A not in [v["id"] for v in srv.json("/api/v1/vehicles")["vehicles"]]
        # The device keeps sending: its records are refused, and no log line names it.
        path = os.path.join(env.certs.dir, "devices", A + ".crt")
        ws = t.WS(srv.port, path, path[:-4] + ".key", env.certs.ca)
        for i in range(3):
            ws.send(t.fb_envelope(f"late-{i}".encode(), b"V", t.v_payload([(SOC, 1.0)], T0)))
            _, p = ws.recv()
            assert t.fb_decode(p)["message_type"] == 4
        ws.close()
        srv.stop()
        assert A not in srv.log(), [x for x in srv.log().splitlines() if A in x][:5]


def test_erasure_pseudonyms_per_owner_period():
    import time
    pol = t.test_policy({"researcher": {
        "comment": "e2e", "actions": ["read"], "purposes": {"location_history": ["default"]},
        "requires_ticket": False, "max_subjects_per_request": None,
        "bulk_subjects_threshold": None, "aggregate_only": False, "pseudonymise": True,
        "consented_only": False, "location_privacy": False, "energy_sites_only": False,
        "approves_bulk": False,
        "quota": {"subjects_per_day": None, "rows_per_day": None, "bytes_per_day": None}}})
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}, policy=pol).start()
        send(srv, env, A, 2)
        res = srv.principal("rita", "researcher")

        def shown():
            st, b = srv.http("/api/v1/vehicles", token=res, purpose="location_history")
            assert st == 200 and A.encode() not in b, (st, b)
            return [v["id"] for v in json.loads(b)["vehicles"]]

        p1 = shown()
        assert len(p1) == 1 and len(p1[0]) == 32, p1
        t.run("subject", "owner", A, "customer-2", "--data", srv.data, "--key-file",
              srv.key_file)
        time.sleep(1.3)
        send(srv, env, A, 2, T0 + 3600000)
        p2 = shown()
        assert len(p2) == 1 and p2 != p1, (p1, p2)  # a new owner: unlinkable to the old one


TESTS = [test_audit_history_replaced, test_audit_history_replaced_and_signed,
         test_audit_tail_cut_after_kill9, test_audit_unwitnessed_tail_is_unverifiable,
         test_audit_tamper_matrix, test_consent_backdated_grant_refused,
         test_consent_cli_change_audited, test_erasure_master_key_env_needs_tombstone_dir,
         test_erasure_keys_shred_every_period_with_tombstones, test_erasure_state_list_and_logs,
         test_erasure_pseudonyms_per_owner_period]

if __name__ == "__main__":
    want = sys.argv[1:]
    t.main([f for f in TESTS if not want or f.__name__ in want])
