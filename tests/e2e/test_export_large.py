"""A data subject's export larger than one piece of its producer (api/export.c makes at most
8 MiB per call; the HTTP transport calls it again on each writable turn, api/http.c): the
whole tar arrives and holds every acked record. Before the request's view lived in the HTTP
session, the producer's second call read the view of a returned stack frame (export.c keeps
a pointer to it): the server crashed mid-answer (SIGSEGV in snprintf of the audit dir; found
exporting a 35 MB history) and the client read a short body. About 30 s (FV_XL_RECORDS,
default 24000 records of one vehicle at 200 Hz, about 14 MB of tar)."""
import io
import os
import subprocess
import tarfile
import time

import fvtest as t

RECORDS = int(os.environ.get("FV_XL_RECORDS", "24000"))
HZ = 200
VIN = "5YJXL000000000000"


def test_export_larger_than_one_piece():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}).start()
        srv.principal("po", "privacy-officer")
        start = (int(time.time()) - 3600) * 1000
        acked_log = os.path.join(env.root, "acked.log")
        r = subprocess.run(
            [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{srv.port}", "--certs",
             env.certs.dir, "--vehicles", "1", "--id-prefix", "5YJXL", "--hz", str(HZ),
             "--seconds", str(RECORDS // HZ), "--virtual-time", str(start), "--drain", "20",
             "--seed", "7", "--quiet", "--acked-log", acked_log],
            capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        with open(acked_log) as f:
            acked = {int(p[2]) for p in map(str.split, f) if len(p) == 3 and p[2] != "E"}
        assert len(acked) >= RECORDS * 0.99, len(acked)
        st, body = srv.http(f"/api/v1/subjects/{VIN}/export?ticket=XL-1", token="po",
                            purpose=None)
        assert st == 200, (st, body[:300])
        assert len(body) > 9 << 20, f"an export of {len(body)} bytes is one producer call"
        tar = tarfile.open(fileobj=io.BytesIO(body))  # whole: a short body fails here
        names = [m.name for m in tar.getmembers()]
        assert any(n.endswith("access-log.jsonl") for n in names), names  # the last file
        rows = set()
        for m in tar.getmembers():
            if m.name.endswith(".csv"):
                for line in tar.extractfile(m).read().splitlines()[1:]:
                    rows.add(int(line.split(b",")[0]))
        assert acked <= rows, f"{len(acked - rows)} acked records missing from the export"
        t.log(f"export of {len(body)} bytes, {len(rows)} records, {len(names)} files")
        srv.stop()


if __name__ == "__main__":
    t.main([test_export_larger_than_one_piece])
