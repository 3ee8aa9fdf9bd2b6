#!/usr/bin/env python3
"""bench/store/query_lat.py - latency of one HTTP GET, repeated on a keep-alive connection.

    query_lat.py --url http://127.0.0.1:PORT/PATH?QUERY [--token-file F] [--n 200]
                 [--warmup 10] [--ts-lo MS --ts-hi MS]

Sends the request --warmup times unmeasured, then --n times measured (each from the
request line to the last byte of the body), over one persistent connection (reopened,
and counted, only if the server closes it). Prints one JSON line:

    {"status": 200, "p50_ms": .., "p99_ms": .., "rows": .., "bytes": .., "reconnects": ..}

rows: how many timestamps in [ts-lo, ts-hi] the answer holds inside its lists (numbers in
that range as epoch milliseconds, or as epoch seconds; scalars outside any list, such as an
echoed "from", do not count), a count that does not depend on the JSON shape of either
system's answer: one per row or sample for range answers, one per vehicle for an instant
query. status is the first answer's status; on anything but 200 nothing is measured and
the body's start is given as "error". Standard library only.
"""
import argparse
import http.client
import json
import math
import statistics
import sys
import time
import urllib.parse


def count_ts(text, lo, hi):
    """Timestamps in [lo, hi] ms (or [lo/1000, hi/1000] s) among the answer's numbers."""
    n = 0

    def walk(x, in_list):
        nonlocal n
        if isinstance(x, bool):
            return
        if isinstance(x, (int, float)):
            if in_list and (lo <= x <= hi or lo / 1000.0 <= x <= hi / 1000.0):
                n += 1
        elif isinstance(x, dict):
            for v in x.values():
                walk(v, in_list)
        elif isinstance(x, list):
            for v in x:
                walk(v, True)

    # One JSON document, or JSON lines (VictoriaMetrics' /api/v1/export).
    try:
        walk(json.loads(text), False)
    except ValueError:
        for line in text.splitlines():
            if line.strip():
                walk(json.loads(line), False)
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token-file")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--ts-lo", type=float, default=0)
    ap.add_argument("--ts-hi", type=float, default=0)
    a = ap.parse_args()

    u = urllib.parse.urlsplit(a.url)
    target = u.path + ("?" + u.query if u.query else "")
    headers = {"Connection": "keep-alive"}
    if a.token_file:
        with open(a.token_file) as f:
            headers["Authorization"] = "Bearer " + f.read().strip()

    conn = None
    opened = 0

    def get():
        nonlocal conn, opened
        for attempt in range(2):
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
                opened += 1
            try:
                conn.request("GET", target, headers=headers)
                r = conn.getresponse()
                body = r.read()
                if r.will_close:
                    conn.close()
                    conn = None
                return r.status, body
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    status, body = get()
    if status != 200:
        print(json.dumps({"status": status, "error": body[:200].decode("utf-8", "replace")}))
        return 0
    for _ in range(a.warmup):
        get()
    lat = []
    for _ in range(a.n):
        t0 = time.perf_counter()
        status, body = get()
        lat.append((time.perf_counter() - t0) * 1000.0)
        if status != 200:
            print(json.dumps({"status": status,
                              "error": body[:200].decode("utf-8", "replace")}))
            return 0
    lat.sort()
    p99 = lat[max(0, math.ceil(0.99 * len(lat)) - 1)]
    rows = count_ts(body.decode("utf-8", "replace"), a.ts_lo, a.ts_hi)
    print(json.dumps({"status": 200, "p50_ms": round(statistics.median(lat), 3),
                      "p99_ms": round(p99, 3), "rows": rows, "bytes": len(body),
                      "reconnects": opened - 1}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
