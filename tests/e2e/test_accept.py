"""End-to-end tests of the devices' listener (src/server/acceptor.h, issue 8 "an event loop
that nothing blocks"): the ingest loop accepts at most accepts_per_turn new connections per
turn, so a burst of TLS handshakes is spread over turns instead of delaying the acks of the
vehicles already connected. Here: a burst of vehicles connecting at once (the simulator's
connect rate unbounded) is admitted in full over several turns (the full-turn counter moves),
none lost or refused, while connections that never speak TLS hold nothing up; out of file
descriptors, the listener pauses instead of spinning and serves again once they are back
(A3); accept_rate paces a burst over time (A5); the old listener (accepts_per_turn 0) still
serves; bad values and a port in use are refused with a clear message."""
import json
import os
import shutil
import socket
import subprocess
import time

import fvtest as t

BURST = 120


def simulate(env, srv, n, prefix, seconds=3):
    r = subprocess.run(
        [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{srv.port}", "--certs", env.certs.dir,
         "--vehicles", str(n), "--id-prefix", prefix, "--hz", "2", "--seconds", str(seconds),
         "--drain", "20", "--seed", "3", "--quiet", "--connect-rate", "100000"],
        capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_burst_admitted_over_turns():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}).start()
        # Connections that never send a byte (a scanner, a dead client): lws times them out;
        # they must not hold the listener.
        silent = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(8)]
        s = simulate(env, srv, BURST, "5YJACC")
        assert s["connected_peak"] == BURST, s
        assert s["conn_failures"] == 0 and s["reconnects"] == 0, s
        assert s["unacked"] == 0 and s["acked"] == s["sent"] > 0, s
        # The burst did not fit in one turn: turns took accepts_per_turn (1) and left the
        # rest queued for the next ones.
        assert srv.metric("fleetvault_accept_full_turns_total") > 0
        assert srv.metric("fleetvault_accept_pauses_total") == 0
        # every one of them reached a session: the simulator's, plus none of the silent ones
        assert srv.metric("fleetvault_connections_total") == BURST, srv.metric(
            "fleetvault_connections_total")
        for c in silent:
            c.close()


def test_out_of_descriptors_pauses():
    if shutil.which("prlimit") is None:
        t.log("SKIP test_out_of_descriptors_pauses: no prlimit (util-linux)")
        return
    with t.Env() as env:
        # the server under a limit of 96 descriptors (about 31 in use when idle)
        wrapper = os.path.join(env.root, "limited.sh")
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec prlimit --nofile=96:96 "{t.BIN}" "$@"\n')
        os.chmod(wrapper, 0o755)
        real, t.BIN = t.BIN, wrapper
        try:
            srv = t.Server(env.root, env.certs, config={"rate_limits": False}).start()
        finally:
            t.BIN = real
        silent = []
        for _ in range(100):  # more than the descriptors left: the kernel queues the rest
            silent.append(socket.create_connection(("127.0.0.1", srv.port)))
        time.sleep(1.0)  # the listener hits EMFILE and pauses (A3); it must not spin
        assert srv.proc.poll() is None, srv.log()
        assert "devices' listener: cannot accept" in srv.log(), srv.log()
        for c in silent:
            c.close()
        time.sleep(0.5)
        assert srv.metric("fleetvault_accept_pauses_total") > 0
        s = simulate(env, srv, 5, "5YJFDS")  # served again once descriptors are back
        assert s["connected_peak"] == 5 and s["unacked"] == 0 and s["acked"] > 0, s


def test_accept_rate_paces_a_burst():
    """A5: with accept_rate 20/s, 30 vehicles connecting at once are admitted over about 1.5 s
    (all of them, none refused), the waits counted; unpaced they are in within a fraction of
    a second."""
    n, rate = 30, 20
    with t.Env() as env:
        srv = t.Server(env.root, env.certs,
                       config={"rate_limits": False, "accept_rate": rate}).start()
        sim = subprocess.Popen(
            [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{srv.port}", "--certs",
             env.certs.dir, "--vehicles", str(n), "--id-prefix", "5YJRAT", "--hz", "2",
             "--seconds", "4", "--drain", "20", "--seed", "3", "--quiet", "--connect-rate",
             "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0, first, last = time.time(), None, None
        while time.time() - t0 < 30 and last is None:
            c = srv.metric("fleetvault_connections_total")
            if c and first is None:
                first = time.time()
            if c >= n:
                last = time.time()
            time.sleep(0.02)
        out, err = sim.communicate(timeout=120)
        assert sim.returncode == 0, err[-2000:]
        s = json.loads(out.strip().splitlines()[-1])
        assert last is not None, "not every vehicle was admitted"
        took = last - first
        t.log(f"{n} vehicles admitted over {took:.2f} s at accept_rate {rate}/s")
        # the bucket holds one: n - 1 tokens to wait for, (n - 1) / rate = 1.45 s
        assert took >= 0.8 * (n - 1) / rate, took
        assert s["connected_peak"] == n and s["conn_failures"] == 0, s
        assert s["unacked"] == 0 and s["acked"] == s["sent"] > 0, s
        assert srv.metric("fleetvault_accept_paced_total") > 0


def test_lws_listener_still_serves():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs,
                       config={"rate_limits": False, "accepts_per_turn": 0}).start()
        s = simulate(env, srv, 30, "5YJLWS")
        assert s["connected_peak"] == 30 and s["conn_failures"] == 0, s
        assert s["unacked"] == 0 and s["acked"] == s["sent"] > 0, s
        assert srv.metric("fleetvault_accept_full_turns_total") == 0


def test_bad_value_and_port_in_use_refused():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"accepts_per_turn": 5000})
        assert not srv.try_start()
        assert "accepts_per_turn: expected an integer from 0 to 1024" in srv.log(), srv.log()
    for bad in (-1, 1000001, "fast"):
        with t.Env() as env:
            srv = t.Server(env.root, env.certs, config={"accept_rate": bad})
            assert not srv.try_start()
            assert "accept_rate: expected connections per second" in srv.log(), srv.log()
    with t.Env() as env:
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        srv = t.Server(env.root, env.certs)
        srv.port = busy.getsockname()[1]
        assert not srv.try_start()
        assert f"cannot listen for devices on 127.0.0.1:{srv.port}" in srv.log(), srv.log()
        assert "in use" in srv.log(), srv.log()
        busy.close()


if __name__ == "__main__":
    t.main([test_burst_admitted_over_turns, test_out_of_descriptors_pauses,
            test_accept_rate_paces_a_burst, test_lws_listener_still_serves,
            test_bad_value_and_port_in_use_refused])
