#!/usr/bin/env python3
"""The Prometheus-compatible query API (issue 14 item 3, docs/prometheus.md) with a real
client: Debian's promtool (`promtool query range|instant`) against a real server fed by
`fleetvault simulate --virtual-time`. Acceptance: promtool's values equal /api/v1/query's raw
rows for the same range; a refused purpose is refused there too, and audited."""
import json
import os
import shutil
import subprocess
import time
import urllib.parse

import fvtest as t
import test_privacy as tp

PREFIX = "5YJPROM"
VINS = [f"{PREFIX}{i:010d}" for i in range(3)]
HZ = 1
SECONDS = 240


def promtool(srv, *args, purpose="service", token="ops", check=True):
    """promtool query ... against /prometheus, the token as a Bearer header (Debian 12's
    promtool 2.42 has --header, not yet --http.config.file), purpose as a query parameter of
    the server URL (Grafana's custom query parameters)."""
    url = f"http://127.0.0.1:{srv.api_port}/prometheus?purpose={purpose}"
    cmd = ["promtool", "query", *args[:1], "-o", "json",
           f"--header=Authorization=Bearer {srv.tokens[token]}", url, *args[1:]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check:
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
        return json.loads(r.stdout)
    return r


def prom_get(srv, path, **params):
    q = urllib.parse.urlencode(params)
    st, body = srv.http(f"/prometheus/api/v1/{path}?{q}", purpose=None)
    return st, json.loads(body)


def instant(srv, expr, at):
    st, body = prom_get(srv, "query", query=expr, time=at / 1000, purpose="service")
    assert st == 200 and body["data"]["resultType"] == "vector", (expr, st, body)
    return body["data"]["result"]


def raw_rows(srv, vin, frm, to, signal="Soc"):
    j = srv.json(f"/api/v1/query?device={vin}&signals={signal}&from={frm}&to={to}")
    return [(r["t"], r[signal]) for r in j["rows"] if r.get(signal) is not None]


def feed(env, srv, start_ms):
    r = subprocess.run(
        [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{srv.port}", "--certs", env.certs.dir,
         "--vehicles", str(len(VINS)), "--id-prefix", PREFIX, "--hz", str(HZ), "--seconds",
         str(SECONDS), "--virtual-time", str(start_ms), "--drain", "10", "--seed", "3",
         "--quiet"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_promtool_matches_query_api():
    assert shutil.which("promtool"), "promtool missing: scripts/deps.sh installs prometheus"
    with t.Env() as env:
        for v in VINS:
            env.certs.device(v)
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}).start()
        start = (int(time.time()) - 3600) * 1000  # whole seconds: samples fall on the steps
        feed(env, srv, start)
        frm, to = start + 30000, start + 150000
        vin = VINS[1]
        raw = raw_rows(srv, vin, frm, to)
        assert len(raw) > 100, raw[:5]

        # range: every raw row is the value at its step (1 s steps, 1 Hz samples)
        out = promtool(srv, "range", f'Soc{{device="{vin}"}}', "--start", str(frm / 1000),
                       "--end", str(to / 1000), "--step", "1s")
        assert len(out) == 1, out
        assert out[0]["metric"] == {"__name__": "Soc", "signal": "Soc", "device": vin}, out[0]
        got = {round(float(ts) * 1000): float(v) for ts, v in out[0]["values"]}
        for ts, v in raw:
            assert got.get(ts) == v, (ts, v, got.get(ts))

        # a regular expression over devices: one series each, the same values
        out = promtool(srv, "range", f'{{__name__="Soc", device=~"{PREFIX}.*"}}', "--start",
                       str(frm / 1000), "--end", str(to / 1000), "--step", "1s")
        assert sorted(s["metric"]["device"] for s in out) == VINS, out
        for s in out:
            want = dict(raw_rows(srv, s["metric"]["device"], frm, to))
            vals = {round(float(ts) * 1000): float(v) for ts, v in s["values"]}
            assert all(vals.get(ts) == v for ts, v in want.items()), s["metric"]

        # range functions and aggregations, against the raw rows (instant queries over HTTP as
        # Grafana sends them: Debian 12's promtool sends no header on `query instant`)
        at = start + 120000
        out = instant(srv, f'max_over_time(Soc{{device="{vin}"}}[1m])', at)
        window = [v for ts, v in raw_rows(srv, vin, at - 60000 + 1, at)]
        assert float(out[0]["value"][1]) == max(window), (out, window)
        assert "__name__" not in out[0]["metric"], out
        out = instant(srv, f'count_over_time(Soc{{device="{vin}"}}[1m])', at)
        assert float(out[0]["value"][1]) == len(window), (out, len(window))
        lasts = [raw_rows(srv, v, at - 300000 + 1, at)[-1][1] for v in VINS]
        out = instant(srv, f'sum(Soc{{device=~"{PREFIX}.*"}}) * 2', at)
        assert out[0]["metric"] == {} and abs(float(out[0]["value"][1]) - 2 * sum(lasts)) < 1e-6
        out = instant(srv, f'count by (signal) (Soc{{device=~"{PREFIX}.*"}})', at)
        assert out == [{"metric": {"signal": "Soc"}, "value": out[0]["value"]}], out
        assert out[0]["value"][1] == "3", out

        # series and device names, as Grafana's variables ask for them
        st, body = prom_get(srv, "series", **{"match[]": f'Soc{{device=~"{PREFIX}.*"}}',
                                              "start": frm / 1000, "end": to / 1000,
                                              "purpose": "service"})
        assert st == 200 and sorted(s["device"] for s in body["data"]) == VINS, body
        assert all(s["__name__"] == "Soc" for s in body["data"]), body
        st, body = prom_get(srv, "label/device/values", purpose="service")
        assert st == 200 and set(VINS) <= set(body["data"]), body

        # the shipped dashboards use only what the server answers
        for name in ("fleet.json", "vehicle.json"):
            with open(os.path.join(t.REPO, "docs", "grafana", name)) as f:
                dash = json.load(f)
            exprs = [tg["expr"] for p in dash["panels"] for tg in p["targets"]]
            assert exprs, name
            for e in exprs:
                e = e.replace("$device", vin)
                st, body = prom_get(srv, "query_range", query=e, start=start / 1000,
                                    end=(start + SECONDS * 1000) / 1000, step=60,
                                    purpose="service")
                assert st == 200 and body["data"]["result"], (name, e, st, body)

        # a refused purpose: refused on the Prometheus path too, and audited as denied
        r = promtool(srv, "range", f'Soc{{device="{vin}"}}', "--start", str(frm / 1000),
                     "--end", str(to / 1000), "--step", "10s", purpose="marketing", check=False)
        assert r.returncode != 0 and "marketing" in (r.stderr + r.stdout), (r.stdout, r.stderr)
        st, body = prom_get(srv, "query", query="Soc", purpose="marketing")
        assert st == 403 and body["status"] == "error", (st, body)
        srv.stop()
        denied = [e for e in tp.audit_lines(srv, "--principal", "ops", "--result", "deny")
                  if e.get("action") == "prom.query"]
        assert len(denied) >= 2, denied
        allowed = [e for e in tp.audit_lines(srv, "--principal", "ops", "--result", "allow")
                   if e.get("action") == "prom.query"]
        assert allowed and all(e.get("purpose") == "service" for e in allowed), allowed[:3]


def test_roles():
    """The privacy rules of /api/v1/query on the Prometheus path: a one-vehicle role (support)
    reads one device with its ticket and nothing fleet-wide; a consented-only pseudonymising
    role (ml-pipeline) gets only consented samples, its devices named by pseudonym; an
    aggregate-only role (analyst) is refused; a daily quota of rows is checked before an answer
    is sent."""
    pol = t.test_policy()
    metered = dict(pol["roles"]["ops"], quota={"subjects_per_day": None, "rows_per_day": 30,
                                               "bytes_per_day": None})
    pol = t.test_policy(extra_roles={"metered": metered})
    with t.Env() as env:
        for v in VINS:
            env.certs.device(v)
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}, policy=pol).start()
        srv.principal("meter", "metered")
        srv.principal("alice", "support")
        srv.principal("trainer", "ml-pipeline")
        srv.principal("rita", "analyst")
        past = (int(time.time()) - 3600) * 1000
        feed(env, srv, past)  # the vehicles exist; no consent to model_training yet
        st, body = srv.http(f"/api/v1/subjects/{VINS[0]}/consent?purpose=model_training"
                            "&change=give&ticket=T-7", token=t.APPROVER, method="POST",
                            purpose=None)
        assert st == 200, body
        start = (int(time.time()) + 2) * 1000  # after the consent: collected under it
        feed(env, srv, start)
        frm, to = start, start + 120000
        sel = f'Soc{{device="{VINS[0]}"}}'
        rng = {"start": frm / 1000, "end": to / 1000, "step": 1}
        st, ops = prom_get(srv, "query_range", query=sel, purpose="service", **rng)
        assert st == 200 and len(ops["data"]["result"]) == 1, ops

        def get(token, **kw):
            q = urllib.parse.urlencode({**rng, **kw} if "start" not in kw else kw)
            st, body = srv.http(f"/prometheus/api/v1/query_range?{q}", token=token,
                                purpose=None)
            return st, json.loads(body)

        st, body = get("alice", query=sel, purpose="service", ticket="T-1")
        assert st == 200 and body["data"] == ops["data"], body
        st, body = get("alice", query=sel, purpose="service")
        assert st == 403 and "ticket" in body["error"], body
        st, body = get("alice", query=f'Soc{{device=~"{PREFIX}.*"}}', purpose="service",
                       ticket="T-1")
        assert st == 403 and body["errorType"] == "forbidden", body
        st, body = get("alice", query='Soc{device="NOSUCHDEVICE00000"}', purpose="service",
                       ticket="T-1")
        assert st == 404, body

        st, body = get("trainer", query=f'Soc{{device=~".*"}}', purpose="model_training")
        assert st == 200, body
        res = body["data"]["result"]
        assert len(res) == 1 and res[0]["metric"]["device"] not in VINS, res
        assert res[0]["values"] == ops["data"]["result"][0]["values"], res
        assert not any(v in json.dumps(body) for v in VINS), body

        # collected before the consent: not served for model_training, served for service
        old = {"start": (past + 60000) / 1000, "end": (past + 120000) / 1000, "step": 10}
        st, body = get("trainer", query="Soc", purpose="model_training", **old)
        assert st == 200 and body["data"]["result"] == [], body
        st, body = get("ops", query="Soc", purpose="service", **old)
        assert st == 200 and len(body["data"]["result"]) == 3, body

        st, body = get("rita", query="avg(Soc)", purpose="model_training", ticket="T-2")
        assert st == 403, body

        # G5: 121 rows pass a quota of 30 a day: refused whole, before anything is sent
        st, body = get("meter", query=sel, purpose="service")
        assert st == 403 and body["errorType"] == "forbidden" and "quota" in body["error"], body
        st, body = get("meter", query=sel, purpose="service", start=frm / 1000,
                       end=(frm + 10000) / 1000, step=1)
        assert st == 200 and len(body["data"]["result"][0]["values"]) == 11, body
        srv.stop()  # exit 0: under ASan, no leak


def test_errors_and_metadata():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}).start()
        st, body = prom_get(srv, "query", query="sum(Soc", purpose="service")
        assert st == 400 and body["errorType"] == "bad_data", body
        assert body["error"].startswith("1:8: parse error"), body
        st, body = prom_get(srv, "query", query="Location", purpose="service")
        assert st == 400 and "location" in body["error"], body
        st, body = prom_get(srv, "query_range", query="Soc", start=0, end=100000, step=1,
                            purpose="service")
        assert st == 400 and "11,000 points" in body["error"], body
        # numbers alone read nothing: any principal's connection test works, no decision
        srv.principal("alice", "support")
        st, body = srv.http("/prometheus/api/v1/query?query=1%2B1", token="alice", purpose=None)
        assert st == 200 and json.loads(body)["data"]["result"][1] == "2", body
        st, body = prom_get(srv, "status/buildinfo")
        assert st == 200 and body["data"]["version"], body
        st, body = prom_get(srv, "labels")
        assert body["data"] == ["__name__", "device", "signal"], body
        st, body = prom_get(srv, "label/__name__/values")
        assert "Soc" in body["data"] and "Location" not in body["data"], body
        st, body = srv.http("/prometheus/api/v1/query?query=Soc&purpose=service", token=None)
        assert st == 401 and json.loads(body)["status"] == "error", body
        srv.stop()


if __name__ == "__main__":
    t.main([test_promtool_matches_query_api, test_roles, test_errors_and_metadata])
