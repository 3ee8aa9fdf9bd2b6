"""`fleetvault vpp event status ID --watch` (issue 10 item 6), end to end: three sites
dispatched over the real downlink, two delivering their setpoint and one short; the watch
prints one plain line per refresh when its output is not a terminal (no ANSI), with the
figures the API gives, and ends by itself when the event is cancelled; on a terminal (a
pty) it redraws in place, the short site first in the site table; Ctrl-C ends it cleanly.
An event's capacity forecast and its average delivered kW are kept after it and a restart."""
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time

import fvtest as t
from test_vpp import PROGRAMS, api, enrolled_event

SITES = ["SITEWATCH000000%02d" % i for i in range(3)]
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (evt-\S+) (active|cancelled) "
                  r"(\S+ left|over) \| target 6\.0 kW \| delivered ([\d.]+) kW(?: \(\d+%\))? \| "
                  r"forecast ([\d.]+|-) kW, delivered on average ([\d.]+|-) kW \| sites 3: (.*)$")


def watch_cmd(srv, tokf, ev, *extra):
    return [t.BIN, "vpp", "event", "status", ev, "--watch", "--interval", "0.3", "--token-file",
            tokf, "--api", f"http://127.0.0.1:{srv.api_port}", "--purpose", "service", *extra]


def start_event(env, srv):
    """Three enrolled sites dispatched to 6 kW: 0 and 1 deliver, 2 delivers a quarter."""
    sites, ev = enrolled_event(env, srv, SITES, 6)
    setpoints = {}
    for s in sites:
        assert s.read_commands(1), f"{s.id}: no notice"
        d = s.read_commands(2)
        assert d, f"{s.id}: no dispatch"
        setpoints[s.id] = d[-1][4][0]
    for i, s in enumerate(sites):
        s.sample(energy_kwh=9.9, capacity_kwh=13.5, reserve_pct=20.0,
                 battery_kw=setpoints[s.id] * (0.25 if i == 2 else 1.0))
    deadline = time.time() + 10
    while True:
        b = api(srv, "GET", f"/api/v1/vpp/events/{ev}")[1]
        stat = {x["site"]: x["status"] for x in b["sites"]}
        if stat.get(SITES[2]) == "short" or time.time() > deadline:
            break
        time.sleep(0.2)
    assert stat[SITES[2]] == "short" and stat[SITES[0]] == "delivering", stat
    return sites, ev, b


def token_file(env, srv):
    tokf = os.path.join(env.root, "ops.token")
    with open(tokf, "w") as f:
        f.write(srv.tokens["ops"])
    return tokf


def test_watch_lines_when_not_a_terminal():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False, "vpp": PROGRAMS}).start()
        sites, ev, status = start_event(env, srv)
        tokf = token_file(env, srv)
        p = subprocess.Popen(watch_cmd(srv, tokf, ev), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        lines = []
        deadline = time.time() + 15
        while len(lines) < 3 and time.time() < deadline:
            lines.append(p.stdout.readline().rstrip("\n"))
        assert len(lines) == 3, lines
        for ln in lines:
            assert "\033" not in ln, repr(ln)
            m = LINE.match(ln)
            assert m and m.group(1) == ev and m.group(2) == "active", ln
            assert abs(float(m.group(4)) - status["delivered_kw"]) < 0.06, (ln, status)
            assert m.group(5) == "%.1f" % status["forecast_kw"], (ln, status)
            assert m.group(7) == "2 delivering, 1 short" or "commanded" not in m.group(7), ln
        assert LINE.match(lines[-1]).group(7) == "1 short, 2 delivering", lines[-1]
        # the event ends (cancelled): the watch prints its last line and exits by itself
        st, b = api(srv, "POST", f"/api/v1/vpp/events/{ev}/cancel")
        assert st == 200, b
        out, err = p.communicate(timeout=10)
        assert p.returncode == 0, (p.returncode, err)
        last = out.splitlines()[-1]
        m = LINE.match(last)
        assert m and m.group(2) == "cancelled" and m.group(3) == "over", last
        assert "\033" not in out and err == "", (out, err)
        # item 5: the forecast beside what was delivered, kept after the event and a restart
        before = api(srv, "GET", f"/api/v1/vpp/events/{ev}")[1]
        assert before["forecast_kw"] > 0 and before["delivered_avg_kw"] is not None, before
        for s in sites:
            s.ws.close()
        srv.stop()
        srv.start()
        after = api(srv, "GET", f"/api/v1/vpp/events/{ev}")[1]
        assert after["state"] == "cancelled" and after["tracking"] == [], after
        for key in ("forecast_kw", "delivered_avg_kw"):
            assert abs(after[key] - before[key]) < 1e-9, (key, before[key], after[key])
        # Ctrl-C ends it cleanly (a scheduled event: it would not end by itself)
        now = int(time.time() * 1000)
        st, b = api(srv, "POST", f"/api/v1/vpp/events?program=test&start={now + 600000}"
                    f"&end={now + 900000}&max=true")
        assert st == 201, b
        p = subprocess.Popen(watch_cmd(srv, tokf, b["id"]), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        first = p.stdout.readline()
        assert " scheduled starts in " in first and "target max" in first, first
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=5)
        assert p.returncode == 0 and err == "", (p.returncode, err)
        # a bad event id: the error, exit 1
        r = t.run(*watch_cmd(srv, tokf, "evt-nope")[1:], check=False)
        assert r.returncode == 1 and "no such event" in r.stderr, r
        srv.stop()


def test_watch_redraws_on_a_terminal():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False, "vpp": PROGRAMS}).start()
        sites, ev, _ = start_event(env, srv)
        tokf = token_file(env, srv)
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 14, 100, 0, 0))
        p = subprocess.Popen(watch_cmd(srv, tokf, ev), stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        buf = b""
        deadline = time.time() + 10
        while buf.count(b"\033[H") < 3 and time.time() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                buf += os.read(master, 65536)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=5)
        try:
            while select.select([master], [], [], 0.5)[0]:
                buf += os.read(master, 65536)
        except OSError:
            pass
        os.close(master)
        assert p.returncode == 0, p.returncode
        text = buf.decode()
        assert text.count("\033[H") >= 3 and text.rstrip("\r\n").endswith("\033[?25h"), \
            repr(text[-200:])
        frame = text.split("\033[H")[-2]  # the last whole frame
        rows = [re.sub(r"\033\[[0-9;?]*[A-Za-z]", "", r) for r in frame.split("\n")]
        rows = [r.rstrip("\r") for r in rows if r.strip("\r")]
        assert len(rows) <= 13 and all(len(r) <= 100 for r in rows), rows
        assert rows[0].startswith(f"Event {ev} | program test | active |"), rows
        assert rows[1].startswith("Target 6.0 kW | delivered now"), rows
        assert rows[2].startswith("Forecast "), rows
        assert rows[3] == "Sites 3: 1 short, 2 delivering", rows
        table = next(i for i, r in enumerate(rows) if r.startswith("SITE "))
        # worst first: the short site, with its reason, then the two delivering
        assert rows[table + 1].split()[:2] == [SITES[2], "short"], rows
        assert "delivering " in rows[table + 1] and " kW of " in rows[table + 1], rows
        assert {rows[table + 2].split()[0], rows[table + 3].split()[0]} == set(SITES[:2]), rows
        for s in sites:
            s.ws.close()
        srv.stop()


if __name__ == "__main__":
    t.main([test_watch_lines_when_not_a_terminal, test_watch_redraws_on_a_terminal])
