#!/usr/bin/env python3
"""mcap_seeds.py FLEETVAULT OUTDIR - the seed corpus of tests/fuzz/fuzz_mcap.c: small MCAP files
written by `fleetvault mcap write` (zstd and uncompressed chunks, no summary, no messages), each
also with its CRCs set to 0 (chunk CRC, Data End CRC, summary CRC: "not available" in MCAP) so
that mutations reach the record parsers rather than stop at a checksum. The seed ts-zstd.mcap is
written by the official TypeScript library: `node tests/js/fuzz_seed.mjs OUT`."""
import json
import os
import struct
import subprocess
import sys

binary, out = sys.argv[1], sys.argv[2]
T0 = 1700000000000000000


def lines(n):
    yield {"schema": {"name": "fv.Imu", "encoding": "jsonschema", "data_hex": b"{}".hex()}}
    yield {"channel": {"topic": "/imu", "message_encoding": "json", "schema_id": 1,
                       "metadata": {"hz": "100"}}}
    yield {"channel": {"topic": "/can", "message_encoding": "cbor", "schema_id": 0}}
    for i in range(n):
        yield {"message": {"channel": 1 + i % 2, "sequence": i, "log_time": T0 + i * 10**7,
                           "data_hex": (b"m%d" % i).hex()}}


def zero_crcs(b):
    b = bytearray(b)
    pos, end = 8, len(b) - 37
    while pos + 9 <= end:
        op, n = b[pos], struct.unpack_from("<Q", b, pos + 1)[0]
        if op == 0x06:
            b[pos + 9 + 24:pos + 9 + 28] = bytes(4)
        elif op == 0x0F:
            b[pos + 9:pos + 13] = bytes(4)
        pos += 9 + n
    b[len(b) - 8 - 4:len(b) - 8] = bytes(4)  # the footer's summary CRC
    return bytes(b)


for name, n, args in [("zstd", 12, ["--chunk-size", "120"]),
                      ("none", 12, ["--compression", "none", "--chunk-size", "120"]),
                      ("nosummary", 6, ["--no-summary", "--compression", "none"]),
                      ("empty", 0, [])]:
    path = os.path.join(out, name + ".mcap")
    data = "".join(json.dumps(l) + "\n" for l in lines(n))
    subprocess.run([binary, "mcap", "write", path] + args, input=data.encode(), check=True)
    with open(path, "rb") as f:
        raw = f.read()
    with open(os.path.join(out, name + "-nocrc.mcap"), "wb") as f:
        f.write(zero_crcs(raw))
