"""A gateway's ingest loop never waits for a key (docs/cluster.md, "Keys", J5;
gateway/keyfetch.h): a device new to the gateway has its data key fetched from the keys
bucket on another thread while its connection is not read, and every other device is
answered meanwhile.

The bucket is made slow (FV_FAULT_KV_DELAY_MS: each subject key request waits 1.5 s first,
as during a NATS leader election). Device A streams one record at a time, each waiting for
its ack, while four devices new to the gateway connect and send: A's acks keep coming within
a fraction of the delay (before J5 each new device held the loop for the whole delay, so A
waited 1.5 s or more at a time), and the four get every record acked once their keys are
here; everything acked is on the storage node once."""
import os
import threading
import time

import fvtest as t
from test_cluster import Gateway, Nats, cluster_cfg, kill_gateways

T0 = 1796000000000
DELAY_MS = 1500


def test_new_devices_do_not_stall_the_others():
    with t.Env() as env:
        nats = Nats(env.root).start()
        try:
            os.makedirs(os.path.join(env.root, "storage"))
            storage = t.Server(os.path.join(env.root, "storage"), env.certs, config={
                "cluster": cluster_cfg(nats), "store": {"flush_interval": "2s"}},
                extra=["--role", "storage", "--no-rate-limit"]).start()
            gw = Gateway(os.path.join(env.root, "gw"), env.certs, storage.key_file,
                         {"cluster": cluster_cfg(nats)},
                         env={"FV_FAULT_KV_DELAY_MS": str(DELAY_MS)}).start()

            a = t.Device(env, "5YJKEYFETCH000001", T0)
            ws = t.WS(gw.port, a.cert, a.cert[:-4] + ".key", env.certs.ca, timeout=20)

            def one(i):
                """Record i of A, then its ack: the seconds it took."""
                d = [(8, 50.0 + i * 0.01), (21, (48.1, 11.5))]
                t0 = time.monotonic()
                ws.send(t.fb_envelope(f"{a.id}-{i}".encode(), b"V", t.v_payload(d, a.time(i))))
                _, p = ws.recv(timeout=20)
                e = t.fb_decode(p)
                assert e["message_type"] == 5, e  # an ack
                a.acked.add(a.time(i))
                return time.monotonic() - t0

            first = one(0)  # A's own key first: read once it is here
            t.log(f"A's first ack after {first * 1000:.0f} ms (its key fetched)")
            assert first >= DELAY_MS / 1000 * 0.9, first

            others = [t.Device(env, f"5YJKEYFETCH00001{k}", T0) for k in range(4)]
            th = [threading.Thread(target=d.send, args=(gw, 0, 3), kwargs={"timeout": 30})
                  for d in others]
            for x in th:
                x.start()
            lat, i = [], 1
            t_end = time.monotonic() + 4 * DELAY_MS / 1000 + 1
            while time.monotonic() < t_end:
                lat.append(one(i))
                i += 1
                time.sleep(0.02)
            for x in th:
                x.join()
            ws.close()
            t.log(f"A: {len(lat)} acks while 4 devices joined; max {max(lat) * 1000:.0f} ms")
            assert max(lat) < DELAY_MS / 1000 / 3, (
                f"A waited {max(lat) * 1000:.0f} ms for an ack while new devices joined")
            for d in others:
                assert len(d.acked) == 3 and not d.refused, (d.id, d.errors)

            def all_stored(d):
                try:
                    return d.check_stored(storage) is not None
                except AssertionError:
                    return False  # not consumed yet
            for d in [a] + others:
                t.wait_until(f"{d.id}'s acked records on the storage node",
                             lambda: all_stored(d), timeout=30)
                d.check_stored(storage)  # and none twice
            assert "FV_FAULT_KV_DELAY_MS" in gw.log()
            gw.stop()
            storage.stop()
        finally:
            kill_gateways()
            nats.stop()


if __name__ == "__main__":
    t.main([test_new_devices_do_not_stall_the_others])
