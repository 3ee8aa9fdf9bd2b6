"""End-to-end tests of encryption at rest: no payload byte and no VIN in plaintext on disk
(devices are named by pseudonym in the WAL and the catalog), any altered
sealed byte detected, crypto-shredding one device leaves others intact, master key rotation
without rewriting data, wrong or misplaced master keys refused."""
import glob
import os
import shutil
import struct
import time

import fvtest as t

A, B = "5YJ3E1EA7KF000001", "5YJ3E1EA7KF000002"
SECRET = "SECRET-NAME-4711"


def connect(srv, env, dev):
    path = os.path.join(env.certs.dir, "devices", dev + ".crt")
    if not os.path.exists(path):
        env.certs.device(dev)
    return t.WS(srv.port, path, path[:-4] + ".key", env.certs.ca)


def send(srv, env, dev, txid, datums):
    ws = connect(srv, env, dev)
    ws.send(t.fb_envelope(txid.encode(), b"V", t.v_payload(datums, 1795000000000)))
    _, p = ws.recv()
    assert t.fb_decode(p)["message_type"] == 5
    ws.close()


def data_bytes(data):
    out = b""
    for f in glob.glob(os.path.join(data, "**"), recursive=True):
        if os.path.isfile(f):
            with open(f, "rb") as fh:
                out += fh.read()
    return out


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_no_plaintext_and_tamper_detected():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs).start()
        send(srv, env, A, "tx-1", [(64, SECRET), (21, (48.85661234, 2.35221234))])
        assert srv.json(f"/api/v1/vehicles/{A}/state")["state"]["VehicleName"]["value"] == SECRET
        srv.stop()
        blob = data_bytes(srv.data)
        assert SECRET.encode() not in blob, "a payload value is on disk in plaintext"
        assert A.encode() not in blob, "the VIN is on disk in plaintext (WAL or catalog)"
        assert struct.pack("<d", 48.85661234) not in blob
        # Flip one byte inside the sealed payload and fix the record's CRCs (body, then the
        # salted header CRC that covers it; WAL format 2, docs/formats.md), so only the
        # AES-GCM tag can notice: the server must refuse to start, naming file and offset.
        wal = sorted(glob.glob(os.path.join(srv.data, "wal", "*.log")))[0]
        img = bytearray(open(wal, "rb").read())
        at, salt = 28, img[12:16]
        while at < len(img):
            n = struct.unpack_from("<I", img, at)[0]
            body = img[at + 20: at + 20 + n]
            if b"tx-1" in body:
                img[at + 20 + n - 20] ^= 0x01  # inside the ciphertext
                struct.pack_into("<I", img, at + 4, crc32c(img[at + 20: at + 20 + n]))
                struct.pack_into("<I", img, at + 16, crc32c(salt + img[at: at + 16]))
                break
            at += 20 + n
        open(wal, "wb").write(bytes(img))
        try:
            srv.start(timeout=10)
            raise AssertionError("server started on an altered record")
        except AssertionError as e:
            if "altered" in str(e):
                raise
            assert "wal-0000000000000001.log" in srv.log() and f"offset {at}" in srv.log(), \
                srv.log()[-800:]


def test_shred_one_device():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs).start()
        send(srv, env, A, "a1", [(8, 50.0)])
        send(srv, env, B, "b1", [(8, 60.0)])
        srv.stop()
        t0 = time.time()
        t.run("keys", "shred", "--data", srv.data, "--key-file", srv.key_file, A)
        took = time.time() - t0
        srv.start()
        ids = {v["id"] for v in srv.json("/api/v1/vehicles")["vehicles"]}
        assert ids == {B}, ids
        assert srv.json(f"/api/v1/vehicles/{B}/state")["state"]["Soc"]["value"] == 60.0
        # The erased device reconnecting cannot store again under the destroyed key.
        ws = connect(srv, env, A)
        ws.send(t.fb_envelope(b"a2", b"V", t.v_payload([(8, 1.0)])))
        _, p = ws.recv()
        assert t.fb_decode(p)["message_type"] == 4
        ws.close()
        srv.stop()
        ins = srv.inspect()
        assert ins["totals"]["erased"] >= 1 and A not in [
            d for d, v in ins["devices"].items() if v["datums"]], ins
        t.log(f"keys shred took {took * 1000:.0f} ms (process start included)")


def test_master_key_rotation_and_refusals():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs).start()
        send(srv, env, A, "a1", [(8, 42.0)])
        srv.stop()
        other = os.path.join(env.root, "other.key")
        t.run("keys", "init", other)
        # wrong master key: refused, naming both key ids
        r = t.run("inspect", srv.data, "--key-file", other, check=False)
        assert r.returncode != 0 and "wrapped by master key" in r.stderr, r.stderr
        t.run("keys", "rotate", "--data", srv.data, "--key-file", srv.key_file,
              "--new-key-file", other)
        shutil.move(other, srv.key_file)
        srv.start()
        assert srv.json(f"/api/v1/vehicles/{A}/state")["state"]["Soc"]["value"] == 42.0
        srv.stop()
        # a master key inside the data directory is refused
        inside = os.path.join(srv.data, "master.key")
        shutil.copy(srv.key_file, inside)
        os.chmod(inside, 0o600)
        srv.key_file = inside
        try:
            srv.start(timeout=10)
            raise AssertionError("started with the key inside the data directory")
        except AssertionError as e:
            assert "outside the data directory" in str(e), e


def test_lost_catalog_is_not_taken_for_erasure():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs).start()
        send(srv, env, A, "a1", [(8, 42.0)])
        srv.stop()
        os.rename(os.path.join(srv.data, "catalog.db"), os.path.join(env.root, "catalog.bak"))
        for f in glob.glob(os.path.join(srv.data, "catalog.db-*")):
            os.remove(f)
        try:
            srv.start(timeout=10)
            raise AssertionError("started without the data keys, hiding the data")
        except AssertionError as e:
            assert "no data key for device" in str(e), e


if __name__ == "__main__":
    t.main([test_no_plaintext_and_tamper_detected, test_shred_one_device,
            test_master_key_rotation_and_refusals, test_lost_catalog_is_not_taken_for_erasure])
