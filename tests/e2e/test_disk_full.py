"""A real full disk: the data directory lives on a small filesystem the test mounts (tmpfs,
else a loop-mounted ext4 image; without either the test prints "SKIP: ..." and passes). A
device streams until the disk is full. The server must go on running, refuse records with
the storage error reply ("storage unavailable") and never ack one it did not store; once the
test deletes its filler file, records are acked again. Every acked record is then stored
exactly once, before and after a restart, and every part verifies. FV_DISK_FULL_FS=ext4
uses the loop-mounted ext4 image even where tmpfs works."""
import errno
import os
import shutil
import subprocess
import time

import fvtest as t

SIZE_MB = 32
HEADROOM = 384 << 10  # free bytes left after the filler: the stream fills them
CONFIG = {"rate_limits": False, "store": {"flush_interval": 2, "wal_keep": 0}}
T0 = 1795000000000
ERR_STORE = "storage unavailable"


def mount_small(root):
    """Mounts a SIZE_MB filesystem at root/mnt; returns (path, what, unmount), or (None, why
    not, None)."""
    mnt = os.path.join(root, "mnt")
    os.makedirs(mnt)
    why = []
    if os.geteuid() != 0:
        why.append(f"not root (uid {os.geteuid()})")
    elif os.environ.get("FV_DISK_FULL_FS") == "ext4":
        why.append("tmpfs: not tried (FV_DISK_FULL_FS=ext4)")
    else:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0700", "tmpfs",
                            mnt], capture_output=True, text=True)
        if r.returncode == 0:
            return mnt, "tmpfs", lambda: umount(mnt)
        why.append("tmpfs: " + (r.stderr.strip() or f"exit {r.returncode}"))
    if os.geteuid() == 0 and not shutil.which("mkfs.ext4"):
        why.append("loop ext4: mkfs.ext4 not installed")
    elif os.geteuid() == 0:
        img = os.path.join(root, "disk.img")
        with open(img, "wb") as f:
            f.truncate(SIZE_MB << 20)
        r = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", img], capture_output=True,
                           text=True)
        if r.returncode == 0:
            r = subprocess.run(["mount", "-o", "loop", img, mnt], capture_output=True, text=True)
            if r.returncode == 0:
                return mnt, "loop ext4", lambda: umount(mnt)
        why.append("loop ext4: " + (r.stderr.strip() or f"exit {r.returncode}"))
    return None, "; ".join(why), None


def umount(mnt):
    r = subprocess.run(["umount", mnt], capture_output=True, text=True)
    if r.returncode != 0:
        subprocess.run(["umount", "-l", mnt], capture_output=True)


def fill(path, leave):
    """Writes path until the disk is full, then frees `leave` bytes of it."""
    chunk = b"\0" * (1 << 20)
    with open(path, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as e:
            assert e.errno in (errno.ENOSPC, errno.EDQUOT), e
        size = f.tell()
    with open(path, "r+b") as f:
        f.truncate(max(0, os.path.getsize(path) - leave))
    return size


def test_disk_full_refuses_then_recovers():
    with t.Env() as env:
        mnt, what, unmount = mount_small(env.root)
        if mnt is None:
            print(f"SKIP: cannot mount a small filesystem here ({what})", flush=True)
            return
        srv = None
        try:
            srv = t.Server(env.root, env.certs, config=CONFIG)
            srv.data = os.path.join(mnt, "data")  # the master key stays outside, as it must
            srv.start()
            dev = t.Device(env, "DISKFULL1", T0)
            dev.payload = b"x" * 900  # about 1 KB per record: the disk fills in seconds
            assert dev.send(srv, 0, 1) == 1 and dev.acked, "first record not acked"
            filled = fill(os.path.join(mnt, "filler"), HEADROOM)
            t.log(f"{what} of {SIZE_MB} MB mounted; filler of {filled >> 20} MB leaves "
                  f"{HEADROOM >> 10} KB")

            # Stream until records are refused.
            i, batches = 1, 0
            while not dev.refused and batches < 60:
                dev.send(srv, i, 100)
                i += 100
                batches += 1
                assert srv.proc.poll() is None, "server exited on a full disk:\n" + \
                    srv.log()[-3000:]
            t.log(f"{len(dev.acked)} acked, {len(dev.refused)} refused after {batches} "
                  f"batches; replies {dev.errors}")
            assert dev.refused, "the disk never filled"
            assert set(dev.errors) == {ERR_STORE}, dev.errors
            assert "records are refused until there is space again" in srv.log()
            # Still full: still refused, still running, still answering.
            before = len(dev.acked)
            dev.send(srv, i, 20)
            i += 20
            assert len(dev.acked) == before, "a record was acked on a full disk"
            st, _ = srv.http("/status", token=None)
            assert st == 200 and srv.proc.poll() is None, st
            refused = srv.metric('fleetvault_rejected_total{reason="storage"}')
            assert refused >= len(dev.refused), (refused, len(dev.refused))
            # Reads go on where their audit entry fits, and are refused where it does not
            # (never served unaudited); either way the audit log must not fail for good.
            reads = {}
            for _ in range(30):
                st, _ = srv.http(f"/api/v1/query?device={dev.id}&signals=Soc&limit=1")
                reads[st] = reads.get(st, 0) + 1
            t.log(f"reads while full: {reads}")
            assert set(reads) <= {200, 500, 503}, reads

            # Space again: acked again within seconds.
            os.unlink(os.path.join(mnt, "filler"))
            deadline = time.time() + 20
            while time.time() < deadline:
                n = len(dev.acked)
                dev.send(srv, i, 20)
                i += 20
                if len(dev.acked) - n == 20:
                    break
                time.sleep(0.3)
            else:
                raise AssertionError("records are not acked after space returned:\n" +
                                     srv.log()[-3000:])
            assert "there is space again" in srv.log()
            dev.check_stored(srv)
            n_parts = len([f for f in os.listdir(os.path.join(srv.data, "store"))
                           if f.endswith(".fvp")])
            t.log(f"space again: {len(dev.acked)} acked in all, {n_parts} parts")
            srv.stop()
            srv.start()
            dev.check_stored(srv)
            srv.stop()
            ins = srv.inspect("--verify")
            assert ins["store"]["errors"] == [], ins["store"]["errors"]
            sign = t.crash_signs(srv.log())
            assert sign is None, f"crash marker {sign!r} in the log"
            t.log(f"all {len(dev.acked)} acked records stored once, before and after a "
                  f"restart; {len(dev.refused)} refused with {ERR_STORE!r}")
        finally:
            if srv and srv.proc and srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait()
            unmount()


if __name__ == "__main__":
    t.main([test_disk_full_refuses_then_recovers])
