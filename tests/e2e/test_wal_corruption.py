"""WAL damage end to end (issue 8; rules R1-R5 in src/wal/wal.c, docs/formats.md): damage to
acknowledged records makes the real server refuse to start, naming the WAL file and the byte
offset, whether it was stopped or killed, and nothing is cut; a half-written batch that was
never acknowledged (a hole of zeros followed by written pages) does not stop it, and every
acknowledged record is still there."""
import glob
import os

import fvtest as t

DEV = "5YJ3E1EA7KF000201"
HDR, REC = 28, 20  # format 2: file header, record header (src/wal/wal_format.h)


def _table():
    tab = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        tab.append(c)
    return tab


TAB = _table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = TAB[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def u32(b, o):
    return int.from_bytes(b[o:o + 4], "little")


def u64(b, o):
    return int.from_bytes(b[o:o + 8], "little")


def header_crc(salt, h16):
    return crc32c(h16, crc32c(salt.to_bytes(4, "little")))


def records(img):
    """(offset, body length) of each record; sync marks have length 0."""
    out, at = [], HDR
    while at + REC <= len(img):
        n = u32(img, at)
        out.append((at, n))
        at += REC + n
    assert at == len(img), (at, len(img))
    return out


def newest(srv):
    return sorted(glob.glob(os.path.join(srv.data, "wal", "wal-*.log")))[-1]


def send(srv, env, prefix, n):
    """Sends n records one at a time, each acknowledged before the next; returns the txids."""
    path = os.path.join(env.certs.dir, "devices", DEV + ".crt")
    if not os.path.exists(path):
        env.certs.device(DEV)
    ws = t.WS(srv.port, path, path[:-4] + ".key", env.certs.ca)
    txids = []
    for i in range(n):
        txid = f"{prefix}-{i}"
        ws.send(t.fb_envelope(txid.encode(), b"V", t.v_payload([(4, 10.0 + i)], 1795000000000 + i)))
        _, p = ws.recv()
        assert t.fb_decode(p)["message_type"] == 5
        txids.append(txid)
    ws.close()
    return txids


def must_refuse(srv, path, off):
    try:
        srv.start(timeout=30)
    except AssertionError as e:
        msg = str(e).splitlines()
        srv.logf.close()
        srv.proc = None
        line = [m for m in msg if os.path.basename(path) in m and f"offset {off}:" in m]
        assert line, "\n".join(msg[-20:])
        t.log("refused: " + line[-1][-240:])
        return
    raise AssertionError("the server started on a WAL whose acknowledged records are damaged")


def stored_txids(srv):
    r = t.run("inspect", srv.data, "--txids", "--key-file", srv.key_file)
    return [line.split(" ", 1)[1] for line in r.stdout.splitlines()]


def check_all_there(srv, acked):
    stored = stored_txids(srv)
    missing = set(acked) - set(stored)
    assert not missing, f"acked records lost: {sorted(missing)}"
    assert len(stored) == len(set(stored)), "a record is stored twice"


def record_with(img, txid):
    for off, n in records(img):
        if n and txid.encode() in img[off + REC:off + REC + n]:
            return off
    raise AssertionError(f"{txid} not in the WAL file")


def read(path):
    with open(path, "rb") as f:
        return bytearray(f.read())


def write(path, img):
    with open(path, "wb") as f:
        f.write(img)


def damage_refused(srv, path, img, at, mask, off, acked):
    """Flips img[at] with mask in the file: the server refuses to start, naming the file
    and off, and cuts nothing; with the byte restored, it starts and every acked record is
    there."""
    img[at] ^= mask
    write(path, img)
    must_refuse(srv, path, off)
    assert os.path.getsize(path) == len(img), "the damaged file was cut"
    img[at] ^= mask
    write(path, img)
    srv.start()
    srv.stop()
    check_all_there(srv, acked)


def acked_wal(env, prefix, n, kill=False):
    """A server that acknowledged n records, then was stopped (or killed); its newest WAL
    file's path and bytes."""
    srv = t.Server(env.root, env.certs).start()
    acked = send(srv, env, prefix, n)
    if kill:
        srv.kill9()
    else:
        srv.stop()
    path = newest(srv)
    return srv, acked, path, read(path)


def test_length_bit31_of_record_2_refuses():
    """The exact regression: bit 31 of record 2's length in the newest file."""
    with t.Env() as env:
        srv, acked, path, img = acked_wal(env, "stop", 6)
        data = [off for off, n in records(img) if n]
        assert len(data) >= 3, data
        damage_refused(srv, path, img, data[1] + 3, 0x80, data[1], acked)


def test_damage_after_kill9_refuses():
    """kill -9 right after the acks: each acked batch is followed by its sync mark, so a
    flipped byte in the last acknowledged record is damage, not a torn tail."""
    with t.Env() as env:
        srv, acked, path, img = acked_wal(env, "kill", 4, kill=True)
        off = record_with(img, acked[-1])
        damage_refused(srv, path, img, off + REC + 3, 0x01, off, acked)


def unfinished_batch(img, bodies):
    """A batch framed as the writer frames one, written when the file was durable up to its
    end (a cleanly stopped server fsyncs it all) and never fsync'd itself."""
    salt, d, out = u32(img, 12), len(img), bytearray()
    for body in bodies:
        h = bytearray(len(body).to_bytes(4, "little") + crc32c(body).to_bytes(4, "little") +
                      d.to_bytes(8, "little"))
        out += h + header_crc(salt, bytes(h)).to_bytes(4, "little") + body
    return out


def test_zero_hole_in_unacked_batch_starts():
    with t.Env() as env:
        srv, acked, path, img = acked_wal(env, "hole", 3)
        img = bytes(img)
        recs = [(off, n) for off, n in records(img) if n]
        for off, n in recs:  # this helper computes the checksums as the server does
            assert header_crc(u32(img, 12), img[off:off + 16]) == u32(img, off + 16)
        bodies = [img[off + REC:off + REC + n] for off, n in recs[:3]]
        batch = unfinished_batch(img, bodies)
        # The crash wrote the batch's later pages but not its first: zeros, then records.
        torn = bytearray(batch)
        torn[0:REC + 8] = bytes(REC + 8)
        write(path, img + torn)
        srv.start()
        assert "cut the torn tail" in srv.log()
        srv.stop()
        assert os.path.getsize(path) >= len(img)
        check_all_there(srv, acked)
        # The same hole among acknowledged records, with that batch after it: refused.
        img = bytes(read(path))
        off = [o for o, n in records(img) if n][0]
        bad = bytearray(img)
        bad[off:off + REC + 8] = bytes(REC + 8)
        write(path, bad + unfinished_batch(img, bodies))
        must_refuse(srv, path, off)


if __name__ == "__main__":
    t.main([test_length_bit31_of_record_2_refuses, test_damage_after_kill9_refuses,
            test_zero_hole_in_unacked_batch_starts])
