"""fvtest - end-to-end test harness: runs the real `fleetvault` binary and talks to it over
its real protocols (WebSocket over mutual TLS, HTTP). Python standard library only.

The WebSocket client, FlatBuffers envelope encoder and protobuf encoder here are written
independently of the server's C code, so the tests check the server against the protocol
notes rather than against itself."""
import base64
import collections
import fcntl
import glob
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BIN = os.environ.get("FV_BIN", os.path.abspath("build/fleetvault"))
VECTORS = os.environ.get(
    "FV_VECTORS", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vectors"))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


_PORT_DIR = os.path.join(tempfile.gettempdir(), "fv-e2e-ports")
_PORT_LO, _PORT_HI = 20000, 32000  # below Linux's ephemeral range (32768-60999)
_held_ports = []  # this process's port reservations, held until it exits
_port_rng = random.SystemRandom()  # not the seeded generator: FV_SEED repeats a test as before


def free_port():
    """A port for a server this test starts, that no other test on the machine draws while
    this one runs. A port the kernel handed out for bind(("127.0.0.1", 0)) and closed again
    can be handed to a concurrent test too (ctest -j): one test's /status was answered by
    another test's server, whose principals did not know its token (401 "invalid token" in an
    ASan run). So: a port below the ephemeral range (no bind to port 0 and no outgoing
    connection takes it), reserved by an flock on TMPDIR/fv-e2e-ports/PORT that this process
    holds until it exits."""
    os.makedirs(_PORT_DIR, exist_ok=True)
    for _ in range(2000):
        p = _port_rng.randrange(_PORT_LO, _PORT_HI)
        f = open(os.path.join(_PORT_DIR, str(p)), "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another test holds it
            f.close()
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:  # in use by something else
            f.close()
            continue
        finally:
            s.close()
        _held_ports.append(f)
        return p
    raise AssertionError(f"no free port in {_PORT_LO}-{_PORT_HI} ({_PORT_DIR})")


def live_event(offset_ms, length_ms, min_ms=60000):
    """(start, end) of a demand response event that starts offset_ms from now and lasts
    length_ms, kept within one UTC day: the tests' programs are in UTC and an event never
    crosses local midnight (energy/program.h; an event made in the minutes before 00:00 UTC
    was refused, 422). An end past the next midnight is cut to it; when that would leave
    under min_ms, this waits for midnight (at most about a minute) and starts after it."""
    day = 86400000
    start = int(time.time() * 1000) + offset_ms
    midnight = (start // day + 1) * day
    if midnight - start < min_ms:
        time.sleep((midnight - start + offset_ms) / 1000 + 0.5)
        start = int(time.time() * 1000) + offset_ms
        midnight = (start // day + 1) * day
    return start, min(start + length_ms, midnight)


def day_base(span_ms):
    """A time from which span_ms fit in one UTC day: now, or just after the next midnight
    when it is nearer than that (for events planned ahead: see live_event)."""
    day = 86400000
    now = int(time.time() * 1000)
    return now if now % day + span_ms < day else (now // day + 1) * day + 1000


def noon_tz():
    """A fixed-offset time zone (IANA Etc/GMT...) whose local time is now 12:00-13:00, for a
    program whose events are queued relative to now by a test VTN (their times are not the
    test's to move, as live_event does): an event of up to 10 h then never crosses local
    midnight (energy/program.h refuses that), whenever the test runs."""
    hour = time.gmtime().tm_hour
    n = (12 - hour + 12) % 24 - 12  # the offset that makes it about noon: -12 .. 11
    if n == 0:
        return "UTC"
    return f"Etc/GMT-{n}" if n > 0 else f"Etc/GMT+{-n}"  # (POSIX signs: Etc/GMT-3 is UTC+3)


def run(*args, check=True, **kw):
    r = subprocess.run([BIN, *args], capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"fleetvault {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r


class Certs:
    """A dev PKI made by `fleetvault certs`."""

    def __init__(self, root):
        self.dir = os.path.join(root, "certs")
        run("certs", "init", self.dir)

    def device(self, dev_id, typ="vehicle_device"):
        run("certs", "device", self.dir, dev_id, "--type", typ)
        return (os.path.join(self.dir, "devices", dev_id + ".crt"),
                os.path.join(self.dir, "devices", dev_id + ".key"))

    @property
    def ca(self):
        return os.path.join(self.dir, "ca.crt")


_servers = []  # every Server started, so a failed test cannot leave one running
_cluster_tokens = {}  # a cluster's shared principals' tokens, by _cluster_key


def _cluster_key(c):
    """Nodes configured with the same NATS servers (the lowest port named) and principals
    bucket share their principals; None for a single node."""
    if not c or not c.get("nats"):
        return None
    urls = c["nats"] if isinstance(c["nats"], list) else [c["nats"]]
    ports = [int(u.rsplit(":", 1)[1]) for u in urls if u.rsplit(":", 1)[-1].isdigit()]
    return (min(ports) if ports else tuple(urls), c.get("principals_bucket", "fv-principals"))


REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_policy(extra_roles=None):
    """The built-in policy plus role "ops": service purpose, every class, any number of
    vehicles, no ticket - what the store and gateway tests read with - and purpose billing
    (VPP settlements naming sites by id)."""
    with open(os.path.join(REPO, "docs", "policy.example.json")) as f:
        pol = json.load(f)
    pol["roles"]["ops"] = {
        "comment": "e2e tests: fleet-wide service reads", "actions": ["read"],
        "purposes": {"service": ["default", "location", "events"], "billing": ["default"]},
        "requires_ticket": False, "max_subjects_per_request": None,
        "bulk_subjects_threshold": None, "aggregate_only": False, "pseudonymise": False,
        "consented_only": False, "location_privacy": False, "energy_sites_only": False,
        "approves_bulk": False,
        "quota": {"subjects_per_day": None, "rows_per_day": None, "bytes_per_day": None}}
    for name, role in (extra_roles or {}).items():
        pol["roles"][name] = role
    return pol


def role(purposes, **kw):
    """A policy role for test_policy(extra_roles): reads for purposes ({purpose: [classes]}),
    no ticket, no limit and no obligation unless kw sets them."""
    r = {"comment": "e2e tests", "actions": ["read"], "purposes": purposes,
         "requires_ticket": False, "max_subjects_per_request": None,
         "bulk_subjects_threshold": None, "aggregate_only": False, "pseudonymise": False,
         "consented_only": False, "location_privacy": False, "energy_sites_only": False,
         "approves_bulk": False,
         "quota": {"subjects_per_day": None, "rows_per_day": None, "bytes_per_day": None}}
    r.update(kw)
    return r


APPROVER = "fv-approver"  # the privacy officer that approves the tests' principals


class Server:
    def __init__(self, root, certs, config=None, extra=(), policy=None):
        self.root = root
        self.data = os.path.join(root, "data")
        # The master key lives outside the data directory, as operators must keep it.
        self.key_file = os.path.join(root, "master.key")
        if not os.path.exists(self.key_file):
            run("keys", "init", self.key_file)
        self.certs = certs
        self.port = free_port()
        self.api_port = free_port()
        # Every server gets a policy file (the built-in one plus role "ops") and, once its
        # catalog exists, a principal "ops" whose token the helpers below read with.
        self.policy = os.path.join(root, "policy.json")
        with open(self.policy, "w") as f:
            json.dump(policy or test_policy(), f)
        config = dict(config or {})
        config.setdefault("policy", self.policy)
        self.config = os.path.join(root, "config.json")
        with open(self.config, "w") as f:
            json.dump(config, f)
        self.tokens = {}
        # Nodes of one cluster share their principals (docs/cluster.md, "Principals"): a name
        # made on one node is every node's, so they share one token table, and a principal
        # another node made is waited for here instead of made again (which would be a second
        # principal of that name: cluster/jsprincipals.h M1).
        self.cluster_key = _cluster_key(config.get("cluster"))
        if self.cluster_key:
            self.tokens, self.unapproved = _cluster_tokens.setdefault(self.cluster_key,
                                                                      ({}, set()))
        else:
            self.unapproved = set()  # principals made with approve=False
        self.pending = set()  # principals whose approval a failing server refused
        self.env = {}  # extra environment for the server process (FV_FAULT, ...)
        self.extra = list(extra)
        self.proc = None
        self.log_path = os.path.join(root, "server.log")

    def start(self, timeout=20):
        args = [BIN, "serve", "--data", self.data, "--certs", self.certs.dir,
                "--listen", f"127.0.0.1:{self.port}", "--api", f"127.0.0.1:{self.api_port}",
                "--key-file", self.key_file]
        if self.config:
            args += ["--config", self.config]
        args += self.extra
        self.logf = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=self.logf,
                                     env={**os.environ, **self.env} if self.env else None)
        _servers.append(self)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                st, _ = self.http("/status", token=None)
                if st == 200:
                    if self.cluster_key:  # the cluster's principals, applied at start
                        for name in sorted(self.tokens):
                            self.await_principal(name)
                    if APPROVER not in self.tokens:
                        # the installation's first privacy officer: active at once, it
                        # approves every principal the tests make (issue 9 item 6)
                        self.principal(APPROVER, "privacy-officer")
                    if "ops" not in self.tokens:
                        self.tokens["ops"] = self.principal("ops", "ops")
                    for name in sorted(self.pending):  # approvals a fault refused
                        self.approve(name)
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not start:\n" + self.log())

    def try_start(self, timeout=20):
        """start(), but a server that exits while starting returns False instead of raising
        (a fault test expects that); one that neither starts nor exits still raises."""
        try:
            self.start(timeout)
            return True
        except AssertionError:
            if self.proc and self.proc.poll() is not None:
                self.logf.close()
                return False
            raise

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def inspect(self, *args):
        return json.loads(run("inspect", self.data, "--key-file", self.key_file, *args).stdout)

    @property
    def token_path(self):
        """The admin token's file: beside the master key (DATA/admin.token before issue 9)."""
        beside = self.key_file + ".admin.token"
        return beside if os.path.exists(beside) else os.path.join(self.data, "admin.token")

    @property
    def token(self):
        with open(self.token_path) as f:
            return f.read().strip()

    def principal(self, name, role, approve=True):
        """Creates a principal through the CLI; one that waits for approval (a role that reads
        personal data) is approved by the test approver, unless approve is False. Returns its
        token."""
        if self.cluster_key and name in self.tokens:  # another node of the cluster made it
            self.await_principal(name)
            return self.tokens[name]
        r = run("principal", "add", name, "--role", role, "--data", self.data, "--policy",
                self.policy)
        self.tokens[name] = r.stdout.strip()
        if not approve:
            self.unapproved.add(name)
        if approve and "pending:" in r.stderr:
            self.pending.add(name)
            self.approve(name)
        return self.tokens[name]

    def principal_state(self, name):
        """"active", "pending", "revoked" or None (unknown) in this node's catalog."""
        out = run("principal", "list", "--data", self.data).stdout
        for line in out.splitlines():
            if line.split()[:1] == [name]:
                return ("revoked" if "REVOKED" in line else
                        "pending" if "PENDING APPROVAL" in line else "active")
        return None

    def await_principal(self, name, timeout=10):
        """Waits until this node's catalog has principal name from the cluster, and its
        approval unless it is pending here."""
        want = (("pending", "active", "revoked") if name in self.pending | self.unapproved
                else ("active", "revoked"))
        wait_until(f"principal {name} on {self.root}",
                   lambda: self.principal_state(name) in want, timeout=timeout, step=0.1)

    def approve(self, name):
        """The test approver approves a pending principal. A server that cannot (a fault test
        failed its audit log: 5xx) leaves it pending; the next start() tries again."""
        st, body = self.http(f"/api/v1/principals/{name}/approve", token=APPROVER,
                             method="POST", purpose=None)
        if st >= 500:
            return
        assert st == 200 or (st == 409 and b"not waiting" in body), (name, st, body)
        self.pending.discard(name)

    def http(self, path, token="ops", method="GET", purpose="service"):
        """token: "admin" (the admin token), a principal's name, a literal token, or None.
        Reads of /api/v1/ get purpose=service unless the path names one (purpose=None: not)."""
        if (purpose and path.startswith("/api/v1/") and "purpose=" not in path and
                not path.startswith("/api/v1/store")):
            path += ("&" if "?" in path else "?") + "purpose=" + purpose
        req = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}", method=method,
                                     data=b"" if method == "POST" else None)
        if token == "admin" or (token == "ops" and path.startswith("/api/v1/store")):
            token = self.token
        elif token in self.tokens:
            token = self.tokens[token]
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, path):
        st, body = self.http(path)
        assert st == 200, (path, st, body)
        return json.loads(body)

    def compact(self, timeout=60):
        """Flushes the head and merges every part into one (POST /api/v1/store/compact), then
        waits until the store says it is done; returns GET /api/v1/store."""
        st, body = self.http("/api/v1/store/compact", token="admin", method="POST")
        assert st == 202, (st, body)
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.json("/api/v1/store")
            if not s["compacting"]:
                return s
            time.sleep(0.1)
        raise AssertionError("compaction did not finish: " + json.dumps(self.json("/api/v1/store")))

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        if self.proc:
            self.logf.close()
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        if sig == signal.SIGTERM and rc != 0:
            # A clean stop exits 0; under ASan a leak or memory error makes it non-zero.
            raise AssertionError(f"server exited with {rc} on SIGTERM:\n{self.log()[-4000:]}")
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def metric(self, name):
        st, body = self.http("/metrics", token=None)
        assert st == 200
        for line in body.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                if line.split(" ")[0] == name or line.startswith(name + "{"):
                    pass
            parts = line.rsplit(" ", 1)
            if len(parts) == 2 and parts[0] == name:
                return float(parts[1])
        raise KeyError(name)

    def wait_metric(self, name, want, timeout=5.0):
        """Waits until a metric reads want (the API runs on its own thread, so a counter
        the ingest loop bumps may be read a moment before it is bumped); returns it."""
        deadline = time.time() + timeout
        v = self.metric(name)
        while v != want and time.time() < deadline:
            time.sleep(0.02)
            v = self.metric(name)
        return v


# Signs of a crash rather than a clean error exit, in a server's log.
CRASH_SIGNS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Assertion `",
               "Segmentation fault", "core dumped", "double free", "stack smashing")


def crash_signs(text):
    """The first crash marker found in a log, or None."""
    return next((m for m in CRASH_SIGNS if m in text), None)


def fault_lines(text):
    """The fault layer's lines in a log (FV_FAULT_LOG, src/os/fsio.h), as tuples
    (what, op, n, rest): what is "inject" or "call"; rest is "ERRNO PATH" or "PATH"."""
    out = []
    for line in text.splitlines():
        if line.startswith("fv-fault: "):
            p = line.split(" ", 4)
            if len(p) == 5 and p[3].startswith("#"):
                out.append((p[1], p[2], int(p[3][1:]), p[4]))
            elif len(p) == 4 and p[3].startswith("#"):
                out.append((p[1], p[2], int(p[3][1:]), ""))
    return out


def stored_vs_acked(acked_times, stored_times):
    """(missing, extra): Counters of the times that have fewer stored rows than acked records
    (records lost) and of those with more (records stored twice). Compared as multisets, not
    sets: two distinct records (two txids, both acked) may carry the same time - a device may
    stamp two records within one millisecond, as `simulate` did when its loop ran late by
    nearly a period (before simulate_int.h R7) - so a repeated time is a duplicate only when
    it is stored more often than it was acked, and a record lost behind its twin's time
    shows as missing."""
    want = collections.Counter(acked_times)
    got = collections.Counter(stored_times)
    return want - got, got - want


class Device:
    """A device that sends V records (Soc and Location at time T0 + i s, txid DEV-i) and
    remembers which were acked and which refused; a dead server ends a batch quietly."""

    def __init__(self, env, dev_id, t0):
        self.env, self.id, self.t0 = env, dev_id, t0
        self.cert = os.path.join(env.certs.dir, "devices", dev_id + ".crt")
        if not os.path.exists(self.cert):
            env.certs.device(dev_id)
        self.acked, self.refused = set(), set()
        self.errors = {}  # error reply text -> how many
        self.payload = b""  # extra bytes per record (a VehicleName string) to fill a disk

    def time(self, i):
        return self.t0 + i * 1000

    def send(self, srv, first, n, timeout=5):
        """Sends records first..first+n-1 in one burst, then reads the replies. Returns the
        number of replies read (acks and error replies)."""
        got = 0
        try:
            ws = WS(srv.port, self.cert, self.cert[:-4] + ".key", self.env.certs.ca,
                    timeout=timeout)
        except (OSError, WSClosed):
            return 0
        try:
            for i in range(first, first + n):
                d = [(8, 50.0 + i * 0.01), (21, (48.1 + i * 1e-5, 11.5))]
                if self.payload:
                    d.append((64, self.payload.decode()))
                ws.send(fb_envelope(f"{self.id}-{i}".encode(), b"V", v_payload(d, self.time(i))))
            while got < n:
                _, p = ws.recv(timeout=timeout)
                e = fb_decode(p)
                txid = (e["txid"] or b"").rstrip(b"\0").decode(errors="replace")
                i = int(txid.rsplit("-", 1)[1]) if "-" in txid else -1
                if e["message_type"] == 5:
                    self.acked.add(self.time(i))
                else:
                    self.refused.add(self.time(i))
                    text = (e.get("payload") or b"").rstrip(b"\0").decode(errors="replace")
                    self.errors[text] = self.errors.get(text, 0) + 1
                got += 1
        except (OSError, WSClosed, ValueError):
            pass
        finally:
            ws.close()
        return got

    def check_stored(self, srv):
        """Every acked record is stored exactly once (by its time), through the query API.
        Returns the stored times; a device the server does not know must have no acks."""
        st, raw = srv.http(f"/api/v1/query?device={self.id}&signals=Soc")
        if st == 404 and not self.acked:
            return set()
        assert st == 200, (self.id, st, raw[:300])
        body = json.loads(raw)
        stored = [r["t"] for r in body["rows"]]
        dups = len(stored) - len(set(stored))
        missing = self.acked - set(stored)
        assert not missing, (f"{self.id}: {len(missing)} acked records lost, e.g. "
                             f"{sorted(missing)[:3]}")
        assert dups == 0, f"{self.id}: {dups} records stored twice"
        return set(stored)


# ---- WebSocket client (RFC 6455) ---------------------------------------------------------

class WSClosed(Exception):
    pass


class WS:
    def __init__(self, port, cert, key, ca, path="/", headers=None, timeout=10):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ca)
        if cert:
            ctx.load_cert_chain(cert, key)
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        k = base64.b64encode(os.urandom(16)).decode()
        hdrs = {"Host": f"localhost:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": k, "Sec-WebSocket-Version": "13",
                "User-Agent": "Hermes/1.16.2 (vehicle_device)", "X-Network-Interface": "wifi"}
        hdrs.update(headers or {})
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{a}: {b}\r\n" for a, b in hdrs.items())
        self.sock.sendall((req + "\r\n").encode())
        resp = b""
        while b"\r\n\r\n" not in resp:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise WSClosed("closed during handshake: " + resp.decode(errors="replace"))
            resp += chunk
        head, self.buf = resp.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n")[0]
        if b" 101 " not in status:
            raise WSClosed("handshake refused: " + head.decode(errors="replace"))
        want = base64.b64encode(hashlib.sha1((k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                             .encode()).digest())
        assert want in head, "bad Sec-WebSocket-Accept"

    def send(self, data, opcode=2):
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            h = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            h = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            h = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if n < 65536 else \
            (int.from_bytes(data, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")
             ).to_bytes(n, "big")
        self.sock.sendall(h + mask + body)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise WSClosed("connection closed")
            self.buf += chunk

    def recv(self, timeout=10):
        self.sock.settimeout(timeout)
        while True:
            self._need(2)
            b0, b1 = self.buf[0], self.buf[1]
            n = b1 & 0x7F
            off = 2
            if n == 126:
                self._need(4)
                n = struct.unpack("!H", self.buf[2:4])[0]
                off = 4
            elif n == 127:
                self._need(10)
                n = struct.unpack("!Q", self.buf[2:10])[0]
                off = 10
            self._need(off + n)
            payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
            op = b0 & 0x0F
            if op == 8:
                raise WSClosed("close frame")
            if op == 9:
                self.send(payload, opcode=10)
                continue
            return op, payload

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- FlatBuffers envelope (independent encoder/decoder) -----------------------------------

def fb_decode(buf):
    """Decodes an Envelope into a dict (txid, topic, message_type, payload, ...)."""
    def u16(o): return struct.unpack_from("<H", buf, o)[0]
    def u32(o): return struct.unpack_from("<I", buf, o)[0]
    def table(pos):
        vt = pos - struct.unpack_from("<i", buf, pos)[0]
        vlen = u16(vt)
        return lambda slot: (u16(vt + 4 + 2 * slot) if 4 + 2 * slot < vlen else 0), pos
    def vec(fo, pos):
        if not fo:
            return None
        at = pos + fo
        v = at + u32(at)
        return bytes(buf[v + 4: v + 4 + u32(v)])
    f, pos = table(u32(0))
    out = {"txid": vec(f(0), pos), "topic": vec(f(1), pos),
           "message_type": buf[pos + f(2)] if f(2) else 0, "message_id": vec(f(4), pos)}
    if out["message_type"] == 4 and f(3):
        at = pos + f(3)
        g, spos = table(at + u32(at))
        out["payload"] = vec(g(2), spos)
        out["sender_id"] = vec(g(1), spos)
    return out


def fb_envelope(txid, topic, payload, sender_id=None, created_at=None, message_type=4):
    """Builds Envelope{txid, topic, message_type, message: Stream{created_at, sender_id,
    payload}} with a simple forward layout (valid FlatBuffers, unlike any builder's)."""
    created_at = int(time.time()) if created_at is None else created_at
    out = bytearray(4)
    def align(n=4):
        while len(out) % n:
            out.append(0)
    # Envelope vtable (5 slots) + table
    align()
    evt = len(out)
    # table layout: soffset(4) txid(4) topic(4) message(4) msgtype(1)+pad(3)
    out += struct.pack("<HHHHHHH", 14, 20, 4, 8, 16 if message_type else 0,
                       12 if message_type else 0, 0)
    align()
    et = len(out)
    out += struct.pack("<i", et - evt) + bytes(16)
    out[et + 16] = message_type
    struct.pack_into("<I", out, 0, et)
    # Stream vtable (6 slots) + table: soffset created_at sender payload
    align()
    svt = len(out)
    out += struct.pack("<HHHHHHHH", 16, 16, 4, 8 if sender_id is not None else 0, 12, 0, 0, 0)
    align()
    st = len(out)
    out += struct.pack("<iI", st - svt, created_at) + bytes(8)
    if message_type:
        struct.pack_into("<I", out, et + 12, st - (et + 12))
    def put_vec(field_at, data):
        align()
        v = len(out)
        out.extend(struct.pack("<I", len(data)) + data)
        struct.pack_into("<I", out, field_at, v - field_at)
    put_vec(et + 4, txid)
    put_vec(et + 8, topic)
    if sender_id is not None:
        put_vec(st + 8, sender_id)
    put_vec(st + 12, payload)
    align()
    return bytes(out)


# ---- protobuf (independent encoder for V payloads) -----------------------------------------

def pb_varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_field(num, wire, data):
    return pb_varint(num << 3 | wire) + data


def pb_len(num, data):
    return pb_field(num, 2, pb_varint(len(data)) + data)


def pb_value(v):
    if isinstance(v, bool):
        return pb_field(6, 0, pb_varint(int(v)))
    if isinstance(v, int):
        return pb_field(2, 0, pb_varint(v))
    if isinstance(v, float):
        return pb_field(5, 1, struct.pack("<d", v))
    if isinstance(v, str):
        return pb_len(1, v.encode())
    if isinstance(v, tuple):  # location
        return pb_len(7, pb_field(1, 1, struct.pack("<d", v[0])) +
                      pb_field(2, 1, struct.pack("<d", v[1])))
    raise TypeError(v)


def site_payload(created_ms=None, battery_kw=2.0, energy_kwh=10.0, capacity_kwh=13.5,
                 reserve_pct=20.0, solar_kw=3.0, load_kw=1.0, grid_kw=-4.0, mode=1,
                 inverter_kw=5.0, export_limit_kw=4.0, site_id=""):
    """A SiteTelemetry payload (src/wire/site.proto), encoded by hand."""
    created_ms = int(time.time() * 1000) if created_ms is None else created_ms
    d = lambda num, v: pb_field(num, 1, struct.pack("<d", v))
    out = pb_len(1, site_id.encode()) if site_id else b""
    out += pb_len(2, pb_field(1, 0, pb_varint(created_ms // 1000)) +
                  pb_field(2, 0, pb_varint((created_ms % 1000) * 1000000)))
    out += d(3, battery_kw) + d(4, energy_kwh) + d(5, capacity_kwh) + d(6, reserve_pct)
    out += d(7, solar_kw) + d(8, load_kw) + d(9, grid_kw)
    out += pb_field(10, 0, pb_varint(mode)) + d(11, inverter_kw) + d(12, export_limit_kw)
    return out


def v_payload(datums, created_ms=None, vin="", is_resend=False):
    created_ms = int(time.time() * 1000) if created_ms is None else created_ms
    out = [pb_len(1, pb_field(1, 0, pb_varint(field)) + pb_len(2, pb_value(value)))
           for field, value in datums]  # joined once: += on bytes is quadratic
    out.append(pb_len(2, pb_field(1, 0, pb_varint(created_ms // 1000)) +
                      pb_field(2, 0, pb_varint((created_ms % 1000) * 1000000))))
    if vin:
        out.append(pb_len(3, vin.encode()))
    if is_resend:
        out.append(pb_field(4, 0, pb_varint(1)))
    return b"".join(out)


def vector(name):
    with open(os.path.join(VECTORS, name), "rb") as f:
        return f.read()


def subject_json(srv, device, token, ticket):
    """The subject.json of device's export (Art. 15), asked for by token (a privacy
    officer's) with ticket."""
    import io
    import tarfile
    st, body = srv.http(f"/api/v1/subjects/{device}/export?ticket={ticket}", token=token,
                        purpose=None)
    assert st == 200, body
    tar = tarfile.open(fileobj=io.BytesIO(body))
    return next(json.load(tar.extractfile(m)) for m in tar.getmembers()
                if m.name.endswith("/subject.json"))


def audit_entries(srv):
    """Every entry of the server's audit log, oldest first, read as the format says: each
    file's lines up to its first NUL byte (while the server runs, the newest file ends in
    zeros written ahead of its entries: docs/audit.md A17)."""
    out = []
    for path in sorted(glob.glob(os.path.join(srv.data, "audit", "audit-*.jsonl"))):
        with open(path, "rb") as f:
            body = f.read().split(b"\0", 1)[0]
        out += [json.loads(x) for x in body.decode().splitlines() if x.strip()]
    return out


def wait_until(what, fn, timeout=20, step=0.2):
    """Polls fn until it returns something true (returned) or timeout seconds pass (fails
    naming what)."""
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > deadline:
            assert v, "timed out waiting for " + what
            return v
        time.sleep(step)


def stop_sim(sim, log_file):
    """Stops a `fleetvault simulate` started with stdout=PIPE (SIGINT), closes its log and
    returns its final JSON line (the run's counters)."""
    sim.send_signal(2)
    out, _ = sim.communicate(timeout=60)
    log_file.close()
    final = json.loads(out.strip().splitlines()[-1])
    log(f"simulator: {final}")
    return final


class Env:
    """A temporary directory with certs, removed at the end unless FV_KEEP is set."""

    def __enter__(self):
        self.root = tempfile.mkdtemp(prefix="fv-e2e-")
        self.certs = Certs(self.root)
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            log(f"(test directory kept: {self.root})")
            return False
        if not os.environ.get("FV_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)


def main(tests):
    """Runs test functions in order; prints a summary line and exits non-zero on failure."""
    passed = failed = 0
    seed = int(os.environ.get("FV_SEED", str(int(time.time()))))
    random.seed(seed)
    log(f"seed {seed} (set FV_SEED to repeat)")
    for t in tests:
        t0 = time.time()
        try:
            t()
            passed += 1
            log(f"PASS {t.__name__} ({time.time() - t0:.1f}s)")
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            failed += 1
            import traceback
            traceback.print_exc()
            log(f"FAIL {t.__name__}: {e}")
            for srv in _servers:  # a server that died: say how, and its log's last lines
                if srv.proc and srv.proc.poll() is not None:
                    log(f"server {srv.data} had exited with {srv.proc.returncode}; its log ends:")
                    try:
                        log("".join(srv.log().splitlines(True)[-30:]))
                    except OSError as err:
                        log(f"(its log could not be read: {err})")
        for srv in _servers:
            if srv.proc and srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait()
        _servers.clear()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
