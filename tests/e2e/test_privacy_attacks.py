"""End-to-end attacks on the privacy layer (issue 9), each performed over the real API or
CLI; every test here failed on the code before its fix. Names say the item: test_aggregate_*
(item 4: aggregate-only bypass), test_quota_* (item 7: quotas enforced before serving,
persisted, per role, on approved bulk exports, bulk thresholds per day), test_export_* (item
8: subject export), test_owner_* (item 12: a change of owner takes effect at once, records go
to the owner period of their creation time), test_location_*
(item 9: signals that reveal a place), test_trip_* (item 10: trip trimming in every output,
stops by speed and gear), test_reads_* (item 3: every read accounted to the subjects whose
data it returned), test_oracle_* (item 5: no existence or pseudonym oracle), test_admin_*
(item 6: the admin token cannot mint readers)."""
import csv
import io
import json
import math
import os
import tarfile
import time

import fvtest as t

A, B = "5YJ3E1EA7KF000901", "5YJ3E1EA7KF000902"
T0 = 1795000000000  # not on an hour boundary: 400 s past one
SPEED, SOC, GEAR, LOC, HEADING = 4, 8, 10, 21, 23
ROUTE, MILES, DEST_LOC, DEST_NAME, HOMELINK, AT_HOME = 108, 109, 112, 163, 195, 229
LAT, LON = 48.137154, 11.576124
STEP = 0.0009  # degrees of latitude: 100.08 m
role = t.role

POLICY = t.test_policy({
    # aggregate-only, built-in limits (step 1 h, 10 records per value)
    "agg-only": role({"service": ["default"]}, aggregate_only=True),
    # aggregate-only with its own limits from the policy
    "agg-minute": role({"service": ["default"]}, aggregate_only=True,
                       aggregate_min_step_s=60, aggregate_min_records=2),
    # location-private rows, by VIN (no pseudonyms, to keep the tests short)
    "mover": role({"location_history": ["default", "location"]}, location_privacy=True),
    # may read the default class only, never the location class
    "noloc": role({"service": ["default"]}),
    # pseudonymised reads for two purposes, bulk exports without approval (items 3, 5)
    "pseudo": role({"service": ["default", "location", "events"], "clips": ["default"]},
                   pseudonymise=True),
    # administers and approves (item 6: approves what others create, never its own)
    "boss": role({}, actions=["admin"], approves_bulk=True),
    # bulk reads above one vehicle need a second principal's approval (item 6)
    "bulk": role({"service": ["default"]}, bulk_subjects_threshold=1),
    # a privacy officer with a small daily quota
    "po-small": role({}, actions=["export", "erase", "audit"], requires_ticket=True,
                     max_subjects_per_request=1, approves_bulk=True,
                     quota={"subjects_per_day": 5, "rows_per_day": 8,
                            "bytes_per_day": None}),
    # item 7: ten rows a day
    "rows10": role({"service": ["default", "location", "events"]},
                   quota={"subjects_per_day": None, "rows_per_day": 10, "bytes_per_day": None}),
    # 2,000 bytes a day
    "bytes2k": role({"service": ["default"]},
                    quota={"subjects_per_day": None, "rows_per_day": None, "bytes_per_day": 2000}),
    # ten rows a day each, fifteen for all its principals together
    "shared": role({"service": ["default"]},
                   quota={"subjects_per_day": None, "rows_per_day": 10, "bytes_per_day": None},
                   role_quota={"subjects_per_day": None, "rows_per_day": 15,
                               "bytes_per_day": None}),
    # bulk exports: more than 2 vehicles (a day) need approval; ten rows a day
    "exporter": role({"service": ["default"]}, bulk_subjects_threshold=2,
                     quota={"subjects_per_day": None, "rows_per_day": 10,
                            "bytes_per_day": None}),
})


def shift(n):
    """A Gear value: the ShiftState enum member (2 = P, 5 = D)."""
    return ("shift", n)


def pb_value(v):
    if isinstance(v, tuple) and v and v[0] == "shift":
        return t.pb_field(9, 0, t.pb_varint(v[1]))
    return t.pb_value(v)


def payload(datums, created_ms):
    out = b""
    for field, value in datums:
        out += t.pb_len(1, t.pb_field(1, 0, t.pb_varint(field)) + t.pb_len(2, pb_value(value)))
    out += t.pb_len(2, t.pb_field(1, 0, t.pb_varint(created_ms // 1000)) +
                    t.pb_field(2, 0, t.pb_varint((created_ms % 1000) * 1000000)))
    return out


def send(srv, env, dev, records):
    """records: [(t_ms, [(field, value), ...]), ...], each acked."""
    path = os.path.join(env.certs.dir, "devices", dev + ".crt")
    if not os.path.exists(path):
        env.certs.device(dev)
    ws = t.WS(srv.port, path, path[:-4] + ".key", env.certs.ca)
    for k, (tm, datums) in enumerate(records):
        ws.send(t.fb_envelope(f"{dev}-{tm}-{k}".encode(), b"V", payload(datums, tm)))
        _, p = ws.recv()
        assert t.fb_decode(p)["message_type"] == 5
    ws.close()


def get(srv, path, token, purpose):
    st, body = srv.http(path, token=token, purpose=purpose)
    try:
        return st, json.loads(body)
    except ValueError:
        return st, body


def subject(srv, *args):
    return t.run("subject", *args, "--data", srv.data, "--key-file", srv.key_file)


def server(env, **config):
    return t.Server(env.root, env.certs, config={"rate_limits": False, **config},
                    policy=POLICY).start()


# ---- item 4: aggregate-only roles ---------------------------------------------------------

def test_aggregate_only_cannot_get_rows_back():
    with t.Env() as env:
        srv = server(env)
        # 12 records in one hour, 3 in the next (T0 is 400 s past an hour boundary).
        recs = [(T0 + i * 1000, [(SOC, 50.0 + i)]) for i in range(12)]
        recs += [(T0 + 3600000 + i * 1000, [(SOC, 90.0 + i)]) for i in range(3)]
        send(srv, env, A, recs)
        agg = srv.principal("anna", "agg-only")
        q = f"/api/v1/query?device={A}&signals=Soc"
        # The attack: one bucket per record gives the raw rows back.
        st, b = get(srv, q + "&step=1ms&agg=first", agg, "service")
        assert st == 403, (st, b)
        assert "aggregate limit" in b["error"] and "first" in b["error"], b
        # first/last/min/max are one subject's own values, whatever the step.
        for f in ("first", "last", "min", "max", "avg,max"):
            st, b = get(srv, q + f"&step=1h&agg={f}", agg, "service")
            assert st == 403 and "aggregate limit" in b["error"], (f, st, b)
        # A step below the minimum (or none) is refused, naming the limit.
        for s in ("&step=1ms", "&step=59m", ""):
            st, b = get(srv, q + s + "&agg=avg", agg, "service")
            assert st == 403 and "step=1h" in b["error"], (s, st, b)
        # At the limits: one bucket of 12 records is served; the 3-record bucket is not.
        st, b = get(srv, q + "&step=1h&agg=avg,count", agg, "service")
        assert st == 200, (st, b)
        assert b["count"] == 1 and b["suppressed"] == 1, b
        assert b["rows"][0]["Soc"]["count"] == 12, b
        assert abs(b["rows"][0]["Soc"]["avg"] - (50 + 5.5)) < 1e-9, b
        # Whole buckets only: cutting the range inside a bucket changes nothing (a range
        # that differs by one record cannot single that record out).
        st, b2 = get(srv, q + f"&step=1h&agg=sum&from={T0 + 5000}&to={T0 + 5999}", agg,
                     "service")
        assert st == 200 and b2["count"] == 1 and b2["rows"][0]["Soc"] == sum(
            50.0 + i for i in range(12)), b2
        # Refusals are audited with the reason.
        r = t.run("audit", "query", "--data", srv.data, "--principal", "anna", "--result",
                  "deny")
        assert "aggregate limit" in r.stdout, r.stdout[-2000:]
        srv.stop()


def test_aggregate_limits_from_the_policy():
    with t.Env() as env:
        srv = server(env)
        send(srv, env, A, [(T0 + i * 10000, [(SOC, 10.0 + i)]) for i in range(20)])
        agg = srv.principal("mina", "agg-minute")
        q = f"/api/v1/query?device={A}&signals=Soc&agg=count"
        st, b = get(srv, q + "&step=30s", agg, "service")
        assert st == 403 and "step=1m" in b["error"], (st, b)
        st, b = get(srv, q + "&step=1m", agg, "service")
        assert st == 200, (st, b)
        # 20 records 10 s apart from 400 s past the hour: buckets of 6 (one of 2), all >= 2
        assert sum(r["Soc"] for r in b["rows"]) == 20 and b["suppressed"] == 0, b
        srv.stop()


# ---- item 8: subject export ---------------------------------------------------------------

def tar_names(body):
    tar = tarfile.open(fileobj=io.BytesIO(body))
    return tar, {m.name.split("/", 1)[1]: m for m in tar.getmembers()}


def two_owners(srv, env, n):
    """A: n records of customer-one's, then 3 of customer-two's; returns an officer's token."""
    now = int(time.time() * 1000)
    send(srv, env, A, [(now - 100000 + i * 1000, [(SOC, 10.0 + i)]) for i in range(n)])
    subject(srv, "owner", A, "customer-one", "--current")
    subject(srv, "owner", A, "customer-two")
    time.sleep(2.5)  # the server notices the registry changed (owners.h O2)
    now = int(time.time() * 1000)
    send(srv, env, A, [(now + i, [(SOC, 90.0 + i)]) for i in range(3)])
    return srv.principal("paula", "privacy-officer")


def test_export_serves_one_owner_period():
    with t.Env() as env:
        srv = server(env)
        now = int(time.time() * 1000)
        sell(srv, env, now)
        time.sleep(2.5)  # the server notices the registry changed (owners.h O2)
        now = int(time.time() * 1000)
        send(srv, env, A, [(now + i, [(SOC, 90.0 + i)]) for i in range(3)])
        po = srv.principal("paula", "privacy-officer")
        # The current owner's request: their period only.
        st, body = srv.http(f"/api/v1/subjects/{A}/export?ticket=DSAR-1", token=po, purpose=None)
        assert st == 200, body
        tar, names = tar_names(body)
        assert not [n for n in names if n.startswith("period-1/")], sorted(names)
        assert "period-2/telemetry-1.csv" in names, sorted(names)
        rows = tar.extractfile(names["period-2/telemetry-1.csv"]).read().decode().splitlines()
        assert len(rows) == 1 + 3, rows
        sj = json.load(tar.extractfile(names["subject.json"]))
        assert [p["epoch"] for p in sj["periods"]] == [2], sj["periods"]
        blob = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
        assert b"customer-one" not in blob, "the previous owner's id is in the new owner's export"
        # The previous owner's request names their period: nothing of the new owner's.
        st, body = srv.http(f"/api/v1/subjects/{A}/export?ticket=DSAR-2&period=1", token=po,
                            purpose=None)
        assert st == 200, body
        tar, names = tar_names(body)
        assert not [n for n in names if n.startswith("period-2/")], sorted(names)
        rows = tar.extractfile(names["period-1/telemetry-1.csv"]).read().decode().splitlines()
        assert len(rows) == 1 + 5, rows
        blob = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
        assert b"customer-two" not in blob
        # No such period: refused.
        st, body = srv.http(f"/api/v1/subjects/{A}/export?ticket=DSAR-3&period=7", token=po,
                            purpose=None)
        assert st == 404, (st, body)
        srv.stop()


def test_export_is_held_to_the_quota():
    with t.Env() as env:
        srv = server(env)
        send(srv, env, A, [(T0 + i * 1000, [(SOC, 10.0 + i)]) for i in range(5)])
        send(srv, env, B, [(T0 + i * 1000, [(SOC, 20.0 + i)]) for i in range(5)])
        po = srv.principal("pete", "po-small")  # 8 rows a day
        st, body = srv.http(f"/api/v1/subjects/{A}/export?ticket=DSAR-1", token=po, purpose=None)
        assert st == 200, body
        # 5 rows served; 5 more would pass 8: refused before anything is sent.
        st, body = srv.http(f"/api/v1/subjects/{B}/export?ticket=DSAR-2", token=po, purpose=None)
        assert st == 403 and b"quota" in body and b"rows_per_day" in body, (st, body[:300])
        r = t.run("audit", "query", "--data", srv.data, "--principal", "pete", "--result",
                  "deny")
        assert "quota" in r.stdout, r.stdout
        srv.stop()


# ---- item 7: quotas -----------------------------------------------------------------------

def data_rows(body):
    """The data lines of a CSV answer: no header, no comment."""
    lines = body.decode().splitlines()
    return [ln for ln in lines[1:] if ln and not ln.startswith("#")]


def test_quota_rows_stop_before_serving():
    with t.Env() as env:
        srv = server(env)
        send(srv, env, A, [(T0 + i * 1000, [(SOC, 1.0 + i)]) for i in range(100)])
        q = f"/api/v1/query?device={A}&signals=Soc"
        # The attack: one query past a 10-row quota returned all 100 rows.
        r1 = srv.principal("rita", "rows10")
        st, b = get(srv, q, r1, "service")
        assert st == 200, b
        assert b["count"] == 10 and len(b["rows"]) == 10, (b["count"], len(b["rows"]))
        assert b.get("truncated") is True and "quota" in b.get("stopped", ""), b
        st, b = get(srv, q, r1, "service")  # nothing left today: refused
        assert st == 403 and "quota" in b["error"] and "rows_per_day" in b["error"], (st, b)
        # CSV stops the same way, with a line that says why.
        r2 = srv.principal("rob", "rows10")
        st, body = srv.http(q + "&format=csv", token=r2, purpose="service")
        assert st == 200, body
        assert len(data_rows(body)) == 10, body.decode()[-300:]
        assert body.decode().rstrip().splitlines()[-1].startswith("# quota:"), body[-200:]
        # Bytes too: the answer stops before the row that would pass them (the marker after).
        st, body = srv.http(q, token=srv.principal("bea", "bytes2k"), purpose="service")
        b = json.loads(body)
        assert st == 200 and 0 < b["count"] < 100 and "bytes_per_day" in b["stopped"], b
        assert len(body) - len(body.split(b'],"count"')[1]) <= 2000, len(body)
        # An answer built whole (the state of 1 signal) is checked before it is sent.
        st, b = get(srv, f"/api/v1/vehicles/{A}/state", r2, "service")
        assert st == 403 and "quota" in b["error"], (st, b)
        # The stop is audited.
        r = t.run("audit", "query", "--data", srv.data, "--principal", "rita", "--result",
                  "deny")
        assert "rows_per_day" in r.stdout, r.stdout[-2000:]
        srv.stop()


def test_quota_survives_restart():
    with t.Env() as env:
        srv = server(env)
        send(srv, env, A, [(T0 + i * 1000, [(SOC, 1.0 + i)]) for i in range(10)])
        r1 = srv.principal("rita", "rows10")
        q = f"/api/v1/query?device={A}&signals=Soc"
        st, b = get(srv, q, r1, "service")
        assert st == 200 and b["count"] == 10, b
        # The attack: a restart gave every principal a fresh day.
        srv.stop()
        srv.start()
        st, b = get(srv, q, r1, "service")
        assert st == 403 and "quota" in b["error"], (st, b)
        srv.kill9()  # counted before the answer ended: a crash resets nothing either
        srv.start()
        st, b = get(srv, q, r1, "service")
        assert st == 403 and "quota" in b["error"], (st, b)
        srv.stop()


def test_quota_new_principal_shares_the_role_budget():
    with t.Env() as env:
        srv = server(env)
        send(srv, env, A, [(T0 + i * 1000, [(SOC, 1.0 + i)]) for i in range(10)])
        q = f"/api/v1/query?device={A}&signals=Soc"
        s1 = srv.principal("sam", "shared")
        st, b = get(srv, q, s1, "service")
        assert st == 200 and b["count"] == 10, b
        # The attack: a new principal of the same role started with a fresh quota.
        s2 = srv.principal("sam2", "shared")
        st, b = get(srv, q, s2, "service")
        assert st == 200 and b["count"] == 5 and "quota" in b.get("stopped", ""), b
        s3 = srv.principal("sam3", "shared")
        st, b = get(srv, q, s3, "service")
        assert st == 403 and "role:shared" in b["error"], (st, b)
        srv.stop()


def export(srv, token, devices):
    st, body = srv.http(f"/api/v1/exports?purpose=service&signals=Soc&devices={devices}",
                        token=token, method="POST", purpose=None)
    return st, json.loads(body)


def test_quota_holds_for_approved_bulk_exports():
    with t.Env() as env:
        srv = server(env)
        C = "5YJ3E1EA7KF000903"
        for dev in (A, B, C):
            send(srv, env, dev, [(T0 + i * 1000, [(SOC, 1.0 + i)]) for i in range(30)])
        ex = srv.principal("xena", "exporter")
        po = srv.principal("paula", "privacy-officer")
        st, b = export(srv, ex, f"{A},{B},{C}")  # 3 vehicles: over the threshold
        assert st == 202, b
        st, _ = srv.http(f"/api/v1/exports/{b['id']}/approve", token=po, method="POST",
                         purpose=None)
        assert st == 200
        # The attack: an approved export skipped the quota (90 rows and 9 canary rows).
        st, body = srv.http(f"/api/v1/exports/{b['id']}", token=ex, purpose=None)
        assert st == 200, body
        assert len(data_rows(body)) == 10, len(data_rows(body))
        assert body.decode().rstrip().splitlines()[-1].startswith("# quota:"), body[-200:]
        srv.stop()


def test_quota_bulk_threshold_counts_per_day():
    with t.Env() as env:
        srv = server(env)
        for dev in (A, B):
            send(srv, env, dev, [(T0, [(SOC, 1.0)])])
        ex = srv.principal("xena", "exporter")
        st, b = export(srv, ex, f"{A},{B}")  # 2 vehicles: at the threshold
        assert st == 201 and b["status"] == "approved", b
        # The attack: every request of just under the threshold was approved automatically.
        st, b = export(srv, ex, f"{A},{B}")
        assert st == 202 and b["status"] == "pending", b
        st, b = export(srv, ex, A)
        assert st == 202 and b["status"] == "pending", b
        srv.stop()


# ---- item 12: a change of owner ------------------------------------------------------------

def sell(srv, env, now):
    """Car A drives for its first owner (Soc 10..14 up to a minute before now), then is sold."""
    send(srv, env, A, [(now - 100000 + i * 1000, [(SOC, 10.0 + i)]) for i in range(5)])
    st, b = get(srv, f"/api/v1/vehicles/{A}/state", "ops", "service")
    assert st == 200 and b["state"]["Soc"]["value"] == 14.0, b
    subject(srv, "owner", A, "customer-one", "--current")
    subject(srv, "owner", A, "customer-two")


def test_owner_change_wipes_state_at_once():
    with t.Env() as env:
        srv = server(env)
        sell(srv, env, int(time.time() * 1000))
        # The attack: the previous owner's latest state was served until the car sent again.
        st, b = get(srv, f"/api/v1/vehicles/{A}/state", "ops", "service")
        assert st == 200 and b["state"] == {} and b["records"] == 0, b
        assert b["last_received"].startswith("1970-"), b
        st, b = get(srv, "/api/v1/signals/Soc/latest", "ops", "service")
        assert st == 200 and b["count"] == 0, b
        st, b = get(srv, "/api/v1/vehicles", "ops", "service")
        assert [v["records"] for v in b["vehicles"] if v["id"] == A] == [0], b
        # The ingest wipes it (not just hides it) when it notices the change, within seconds.
        deadline = time.time() + 5
        while "a new owner period began" not in srv.log() and time.time() < deadline:
            time.sleep(0.1)
        assert "a new owner period began" in srv.log(), srv.log()[-2000:]
        st, b = get(srv, f"/api/v1/vehicles/{A}/state", "ops", "service")
        assert st == 200 and b["state"] == {} and b["records"] == 0, b
        srv.stop()


def test_owner_records_go_to_the_period_they_were_made_in():
    with t.Env() as env:
        srv = server(env)
        now = int(time.time() * 1000)
        sell(srv, env, now)
        time.sleep(2.5)  # the server notices the registry changed (owners.h O2)
        # The car made these before the sale and uploads them after it (it was offline).
        send(srv, env, A, [(now - 50000 + i * 1000, [(SOC, 50.0 + i)]) for i in range(3)])
        # The attack: they were sealed under the new owner and became their latest state.
        st, b = get(srv, f"/api/v1/vehicles/{A}/state", "ops", "service")
        assert st == 200 and b["state"] == {}, b
        later = int(time.time() * 1000)
        send(srv, env, A, [(later + i, [(SOC, 90.0 + i)]) for i in range(2)])
        st, b = get(srv, f"/api/v1/vehicles/{A}/state", "ops", "service")
        assert b["state"]["Soc"]["value"] == 91.0 and b["records"] == 2, b
        po = srv.principal("paula", "privacy-officer")

        def period_rows(n):
            st, body = srv.http(f"/api/v1/subjects/{A}/export?ticket=DSAR-{n}&period={n}",
                                token=po, purpose=None)
            assert st == 200, body
            tar, names = tar_names(body)
            rows = tar.extractfile(names[f"period-{n}/telemetry-1.csv"]).read().decode()
            return rows.splitlines()[1:]

        one = period_rows(1)  # the previous owner's: all 8 records they made
        assert len(one) == 8 and sum(",5" in r for r in one) == 3, one
        two = period_rows(2)  # the new owner's: only what was made after the sale
        assert len(two) == 2 and all(",9" in r for r in two), two
        # A restart rebuilds the same state from the log.
        srv.stop()
        srv.start()
        st, b = get(srv, f"/api/v1/vehicles/{A}/state", "ops", "service")
        assert b["state"]["Soc"]["value"] == 91.0, b
        srv.stop()


# ---- item 9: signals that reveal a place --------------------------------------------------

PLACE_DATUMS = [(DEST_NAME, "Karlstrasse 7"), (AT_HOME, True), (ROUTE, "_p~iF~ps|U_ulLnnqC"),
                (HOMELINK, True), (MILES, 3.25), (DEST_LOC, (LAT + 0.02, LON + 0.01))]


def test_location_signals_need_the_location_class():
    with t.Env() as env:
        srv = server(env)
        send(srv, env, A, [(T0 + i * 1000, [(SOC, 50.0)] + PLACE_DATUMS) for i in range(3)])
        nl = srv.principal("nora", "noloc")  # may read the default class only
        for name in ("DestinationName", "LocatedAtHome", "RouteLine", "HomelinkNearby",
                     "MilesToArrival", "DestinationLocation"):
            st, b = get(srv, f"/api/v1/query?device={A}&signals={name}", nl, "service")
            assert st == 403 and "location" in json.dumps(b), (name, st, b)
            st, b = get(srv, f"/api/v1/signals/{name}/latest", nl, "service")
            assert st == 403, (name, st, b)
        st, b = get(srv, f"/api/v1/query?device={A}&signals=Soc", nl, "service")
        assert st == 200 and b["count"] == 3, b
        # The class holds every one of them (what the store and the export say).
        r = t.run("privacy", "report", "--config", srv.config, "--data", srv.data,
                  "--key-file", srv.key_file, "--format", "json")
        assert "holds signals that reveal places" not in r.stdout, r.stdout[-2000:]
        srv.stop()


def trip(t0, n, lat0=LAT, dt=10000, extra=()):
    """n points 100 m apart northwards, dt apart, moving at 36 km/h in D."""
    return [(t0 + i * dt, [(SPEED, 36.0), (GEAR, shift(5)), (LOC, (round(lat0 + i * STEP, 7), LON)),
                           (HEADING, 0.0)] + list(extra)) for i in range(n)]


def test_location_heading_and_places_withheld_with_location():
    with t.Env() as env:
        srv = server(env)
        send(srv, env, A, trip(T0, 30, extra=PLACE_DATUMS))
        mv = srv.principal("mo", "mover")
        sigs = "Location,GpsHeading,DestinationName,LocatedAtHome,RouteLine,DestinationLocation"
        st, b = get(srv, f"/api/v1/query?device={A}&signals={sigs}", mv, "location_history")
        assert st == 200 and b["count"] == 30, b
        hidden = [i for i, r in enumerate(b["rows"]) if r["Location"] is None]
        assert hidden == [0, 1, 2, 3, 4, 25, 26, 27, 28, 29], hidden
        for i, r in enumerate(b["rows"]):
            # GpsHeading is withheld wherever Location is, served where it is
            assert (r["GpsHeading"] is None) == (i in hidden), (i, r)
            # a place named by itself is never served to a location-private role
            for name in sigs.split(",")[2:]:
                assert r[name] is None, (i, name, r)
        # The same in CSV and in the aggregates.
        st, body = srv.http(f"/api/v1/query?device={A}&signals=GpsHeading,LocatedAtHome"
                            "&format=csv", token=mv, purpose="location_history")
        rows = list(csv.reader(io.StringIO(body.decode())))[1:]
        assert [r[1] not in ("0", "0.0") for r in rows] == [i in hidden for i in range(30)], rows
        assert all(r[2] != "true" for r in rows), rows
        st, b = get(srv, f"/api/v1/query?device={A}&signals=GpsHeading,LocatedAtHome&step=1h"
                    "&agg=count", mv, "location_history")
        assert st == 200 and b["rows"][0]["GpsHeading"] == 20, b
        assert "LocatedAtHome" not in b["rows"][0], b
        srv.stop()


# ---- item 10: trip trimming in every output; stops by speed and gear ---------------------

def test_trip_trimmed_in_latest_state_and_bulk_export():
    with t.Env() as env:
        srv = server(env)
        send(srv, env, A, trip(T0, 30))  # the car ends its trip: its last points are home
        mv = srv.principal("mo", "mover")
        end = (round(LAT + 29 * STEP, 7), LON)
        st, b = get(srv, "/api/v1/signals/Location/latest", mv, "location_history")
        assert st == 200 and b["count"] == 1, b
        assert b["vehicles"][0]["value"] is None, b  # the trip's end, even coarsened
        st, b = get(srv, "/api/v1/signals/GpsHeading/latest", mv, "location_history")
        assert b["vehicles"][0]["value"] is None, b
        st, b = get(srv, f"/api/v1/vehicles/{A}/state", mv, "location_history")
        assert st == 200, b
        assert b["state"]["Location"]["value"] is None, b["state"]["Location"]
        assert b["state"]["GpsHeading"]["value"] is None, b["state"]["GpsHeading"]
        assert b["state"]["VehicleSpeed"]["value"] == 36.0
        # The fleet view agrees (it did before).
        st, b = get(srv, f"/api/v1/fleet?signal=Location&at={T0 + 290000}", mv,
                    "location_history")
        assert b["vehicles"][0]["value"] is None, b
        # Service still sees the exact point.
        st, b = get(srv, f"/api/v1/vehicles/{A}/state", "ops", "service")
        assert b["state"]["Location"]["value"] == {"latitude": end[0], "longitude": end[1]}, b
        # A bulk export: the same rows withheld as in the query API.
        st, body = srv.http("/api/v1/exports?purpose=location_history&signals=Location,"
                            "GpsHeading", token=mv, method="POST", purpose=None)
        assert st == 201, body
        xid = json.loads(body)["id"]
        st, body = srv.http(f"/api/v1/exports/{xid}", token=mv, purpose=None)
        assert st == 200, body
        rows = [r for r in csv.reader(io.StringIO(body.decode())) if r[0] == A]
        assert len(rows) == 30, rows
        shown = [i for i, r in enumerate(rows) if "latitude" in r[2]]
        assert shown == list(range(5, 25)), [r[2] for r in rows]
        assert [i for i, r in enumerate(rows) if r[3] not in ("", "invalid")] == shown, rows
        srv.stop()


def test_trip_parked_car_that_keeps_reporting_is_trimmed():
    with t.Env() as env:
        srv = server(env)
        # Drive 2 km north, park (gear P) for 20 minutes reporting every 30 s with GPS jitter,
        # drive 2 km further: never a 5-minute gap, so gaps alone see one long trip.
        recs = trip(T0, 20)
        park_t0 = T0 + 20 * 10000
        plat = round(LAT + 19 * STEP, 7)
        park = [(park_t0 + i * 30000,
                 [(SPEED, 0.0), (GEAR, shift(2)),
                  (LOC, (round(plat + 0.00005 * math.sin(i), 7),
                         round(LON + 0.00005 * math.cos(i), 7))), (HEADING, 0.0)])
                for i in range(40)]
        recs += park
        recs += trip(park_t0 + 40 * 30000, 20, lat0=plat + STEP)
        send(srv, env, A, recs)
        mv = srv.principal("mo", "mover")
        st, b = get(srv, f"/api/v1/query?device={A}&signals=Location,GpsHeading", mv,
                    "location_history")
        assert st == 200 and b["count"] == 80, b
        loc = [r["Location"] for r in b["rows"]]
        parked = range(20, 60)
        assert all(loc[i] is None for i in parked), [i for i in parked if loc[i] is not None]
        assert all(b["rows"][i]["GpsHeading"] is None for i in parked)
        # Around the stop, the trips' ends are trimmed: 500 m before parking, after leaving.
        assert all(loc[i] is None for i in range(15, 20)), loc[15:20]
        assert all(loc[i] is None for i in range(60, 65)), loc[60:65]
        assert all(loc[i] is not None for i in range(5, 15)), loc[5:15]
        assert all(loc[i] is not None for i in range(65, 75)), loc[65:75]
        srv.stop()


def test_trip_stop_by_speed_without_gear():
    with t.Env() as env:
        srv = server(env)
        # 30 points 100 m apart with speed only (no gear): the car halts 4 minutes at point
        # 10 (a stop) and 60 s at point 20 (a red light, not a stop), reporting every 20 s.
        recs, moving, halted, red, tm = [], {}, [], [], T0
        for i in range(30):
            p = (round(LAT + i * STEP, 7), LON)
            recs.append((tm, [(SPEED, 36.0), (LOC, p)]))
            moving[i] = tm
            halt = 240000 if i == 10 else 60000 if i == 20 else 0
            for k in range(halt // 20000):
                ht = tm + 10000 + k * 20000
                recs.append((ht, [(SPEED, 0.0), (LOC, p)]))
                (halted if i == 10 else red).append(ht)
            tm += 10000 + halt
        send(srv, env, A, recs)
        mv = srv.principal("mo", "mover")
        st, b = get(srv, f"/api/v1/query?device={A}&signals=Location", mv, "location_history")
        assert st == 200 and b["count"] == len(recs), b
        served = {r["t"] for r in b["rows"] if r["Location"] is not None}
        # The 4-minute halt is a stop: its points and 500 m either side are withheld.
        assert not set(halted) & served, sorted(set(halted) & served)
        assert not {moving[i] for i in range(6, 15)} & served, [
            i for i in range(6, 15) if moving[i] in served]
        # The red light is not: the trip goes on through it.
        assert set(red) <= served and {moving[i] for i in range(17, 24)} <= served, [
            i for i in range(17, 24) if moving[i] not in served]
        srv.stop()


# ---- item 3: reads accounted to their subjects --------------------------------------------

def audit(srv, *args):
    r = t.run("audit", "query", "--data", srv.data, *args)
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def export_of(srv, po, dev, ticket, period=None):
    """A subject export: (subject.json's period pseudonym, the access log's entries)."""
    q = f"/api/v1/subjects/{dev}/export?ticket={ticket}" + (f"&period={period}" if period else "")
    st, body = srv.http(q, token=po, purpose=None)
    assert st == 200, (st, body[:300])
    tar, names = tar_names(body)
    sj = json.load(tar.extractfile(names["subject.json"]))
    log = [json.loads(x) for x in tar.extractfile(names["access-log.jsonl"]).read().splitlines()]
    return sj["periods"][0]["pseudonym"], log


def test_reads_fleet_reads_are_accounted_to_their_subjects():
    with t.Env() as env:
        srv = server(env)
        now = int(time.time() * 1000)
        send(srv, env, B, [(now - 100000 + i * 1000, [(SOC, 20.0 + i)]) for i in range(3)])
        # A changes owner: reads of A from now on serve the second owner's period.
        po = two_owners(srv, env, 3)
        ps = srv.principal("pia", "pseudo")
        # Fleet reads: the whole fleet, no subject named in the request.
        for path in ("/api/v1/vehicles", "/api/v1/signals/Soc/latest",
                     "/api/v1/fleet?signal=Soc"):
            st, body = srv.http(path)
            assert st == 200, (path, st, body)
        st, body = srv.http(f"/api/v1/query?device={A}&signals=Soc")
        assert st == 200, body
        # A bulk export by a pseudonymising role: its file shows pseudonyms, canaries too.
        st, body = srv.http("/api/v1/exports?signals=Soc", token=ps, method="POST")
        assert st == 201, body
        xid = json.loads(body)["id"]
        st, body = srv.http(f"/api/v1/exports/{xid}", token=ps, purpose=None)
        assert st == 200, body
        shown = {r["device"] for r in csv.DictReader(io.StringIO(body.decode()))}
        st, body = srv.http("/api/v1/vehicles", token=ps)
        real = {v["id"] for v in json.loads(body)["vehicles"]}
        canaries = shown - real
        assert len(canaries) == 3 and real <= shown, (shown, real)

        # The current owner's access log lists every read that returned their data ...
        p2, log2 = export_of(srv, po, A, "DSAR-1")
        acts = {e.get("action") for e in log2}
        want = {"vehicles.list", "signals.latest", "fleet.at", "query.raw", "export.download"}
        assert want <= acts, (want - acts, log2)
        # ... and so does an audit query by their pseudonym.
        found = {e.get("action") for e in audit(srv, "--subject", p2)}
        assert want <= found, (want - found)
        # The previous owner's log has none of these reads: they returned the new owner's data.
        p1, log1 = export_of(srv, po, A, "DSAR-2", period=1)
        assert p1 != p2
        assert not want & {e.get("action") for e in log1}, log1
        # B, never named in any request, is accounted too.
        pb, logb = export_of(srv, po, B, "DSAR-3")
        assert want - {"query.raw"} <= {e.get("action") for e in logb}, logb
        # A leaked file's canary, as the file shows it, names the export and its requester.
        for c in canaries:
            hits = audit(srv, "--subject", c)
            assert any(e.get("principal") == "pia" and e.get("action") == "export.create"
                       for e in hits), (c, hits)
        srv.stop()


def test_reads_large_fleet_read_is_bounded_entries():
    """A fleet read of many subjects: every subject listed, each entry bounded."""
    with t.Env() as env:
        srv = server(env)
        now = int(time.time() * 1000)
        devs = [f"5YJ3E1EA7KF{n:06d}" for n in range(300, 312)]
        for d in devs:
            send(srv, env, d, [(now - 1000, [(SOC, 42.0)])])
        st, body = srv.http("/api/v1/signals/Soc/latest")
        assert st == 200 and json.loads(body)["count"] == len(devs), body
        res = [e for e in audit(srv, "--action", "signals.latest")
               if e["kind"] in ("access.result", "access.subjects")]
        listed = [s for e in res for s in e.get("subjects", [])]
        assert len(listed) == len(devs) and len(set(listed)) == len(devs), res
        assert res[0]["extra"]["subjects"] == len(devs), res[0]
        srv.stop()


# ---- item 5: no existence or pseudonym oracle ---------------------------------------------

def same_answer(a, b, name_a, name_b):
    """Two answers alike but for the name each request gave."""
    (sa, ba), (sb, bb) = a, b
    return sa == sb and json.dumps(ba).replace(name_a, "X") == json.dumps(bb).replace(name_b, "X")


def test_oracle_unknown_erased_refused_answer_alike():
    with t.Env() as env:
        srv = server(env)
        send(srv, env, A, [(T0 + i * 1000, [(SOC, 10.0 + i)]) for i in range(3)])
        send(srv, env, B, [(T0 + i * 1000, [(SOC, 20.0 + i)]) for i in range(3)])
        nl = srv.principal("nora", "noloc")
        ps = srv.principal("pia", "pseudo")
        po = srv.principal("paula", "privacy-officer")
        U = "5YJ3E1EA7KF999999"  # no such vehicle
        # A role refused a purpose: the same refusal for a known and an unknown VIN, and
        # both attempts audited.
        for path in ("/api/v1/query?signals=Soc&device=", "/api/v1/vehicles/"):
            suffix = "" if "query" in path else "/state"
            known = get(srv, path + A + suffix, nl, "location_history")
            unknown = get(srv, path + U + suffix, nl, "location_history")
            assert known[0] == 403 and same_answer(known, unknown, A, U), (known, unknown)
        denied = audit(srv, "--principal", "nora", "--result", "deny")
        assert len(denied) == 4, denied
        # A pseudonymising role cannot turn a VIN into its pseudonym: a VIN is unknown to it.
        for path in (f"/api/v1/query?signals=Soc&device={B}", f"/api/v1/vehicles/{B}/state"):
            vin = get(srv, path, ps, "service")
            unk = get(srv, path.replace(B, U), ps, "service")
            assert vin[0] == 404 and same_answer(vin, unk, B, U), (vin, unk)
        # ... nor link two purposes' pseudonyms: its pseudonym names B within its purpose only.
        st, b = get(srv, "/api/v1/vehicles", ps, "service")
        pb = [v["id"] for v in b["vehicles"]]
        st, b = get(srv, f"/api/v1/query?signals=Soc&device={pb[0]}", ps, "service")
        assert st == 200, b
        other = get(srv, f"/api/v1/query?signals=Soc&device={pb[0]}", ps, "clips")
        assert same_answer(other, get(srv, f"/api/v1/query?signals=Soc&device={U}", ps, "clips"),
                           pb[0], U), other
        # After an erasure: every token gets what an unknown vehicle gets, not "erased".
        st, body = srv.http(f"/api/v1/subjects/{A}/erase?ticket=GDPR-1", token=po,
                            method="POST", purpose=None)
        assert st == 200, body
        for tok, purpose in (("ops", "service"), (nl, "location_history")):
            gone = get(srv, f"/api/v1/query?signals=Soc&device={A}", tok, purpose)
            unk = get(srv, f"/api/v1/query?signals=Soc&device={U}", tok, purpose)
            assert gone[0] in (403, 404) and same_answer(gone, unk, A, U), (gone, unk)
            assert "erased" not in json.dumps(gone[1]), gone
        # The subject actions of a role without them: refused alike, known or not.
        known = srv.http(f"/api/v1/subjects/{B}/erase?ticket=X", token=nl, method="POST",
                         purpose=None)
        unknown = srv.http(f"/api/v1/subjects/{U}/erase?ticket=X", token=nl, method="POST",
                           purpose=None)
        assert known[0] == 403 and known == unknown, (known, unknown)
        srv.stop()


# ---- item 6: the admin token cannot mint readers ------------------------------------------

def admin_post(srv, path, token="admin"):
    st, body = srv.http(path, token=token, method="POST", purpose=None)
    try:
        return st, json.loads(body)
    except ValueError:
        return st, body


def changes(srv, action):
    return [e for e in audit(srv, "--action", action) if "name" in e.get("extra", {})]


def test_admin_token_cannot_mint_readers():
    with t.Env() as env:
        srv = server(env)
        send(srv, env, A, [(T0 + i * 1000, [(LOC, (LAT, LON))]) for i in range(3)])
        q = f"/api/v1/query?device={A}&signals=Location&ticket=T-1"
        # The attack: the admin token makes a support principal and reads exact locations.
        st, b = admin_post(srv, "/api/v1/principals?name=sam&role=support")
        assert st == 202 and b["status"] == "pending", (st, b)
        srv.tokens["sam"] = b["token"]
        st, body = srv.http(q, token="sam", purpose="service")
        assert st == 401 and b"approval" in body, (st, body)
        # The admin cannot approve it: its role does not approve.
        st, b = admin_post(srv, "/api/v1/principals/sam/approve")
        assert st == 403, (st, b)
        # Nor make a requester and an approver and approve its own bulk export: both wait.
        for name, r in (("rex", "bulk"), ("olga", "privacy-officer")):
            st, b = admin_post(srv, f"/api/v1/principals?name={name}&role={r}")
            assert st == 202 and b["status"] == "pending", (name, st, b)
            srv.tokens[name] = b["token"]
        st, b = admin_post(srv, "/api/v1/exports?signals=Soc&purpose=service", token="rex")
        assert st == 401, (st, b)
        st, b = admin_post(srv, "/api/v1/principals/rex/approve", token="olga")
        assert st == 401, (st, b)
        # An admin-class principal that approves may not approve what it created itself.
        st, b = admin_post(srv, "/api/v1/principals?name=bea&role=boss")
        srv.tokens["bea"] = b["token"]
        assert admin_post(srv, "/api/v1/principals/bea/approve", token=t.APPROVER)[0] == 200
        st, b = admin_post(srv, "/api/v1/principals?name=sue&role=support", token="bea")
        assert st == 202, (st, b)
        srv.tokens["sue"] = b["token"]
        st, b = admin_post(srv, "/api/v1/principals/sue/approve", token="bea")
        assert st == 403 and "second principal" in b["error"], (st, b)
        # A second principal's approval: then, and only then, it reads.
        st, b = admin_post(srv, "/api/v1/principals/sam/approve", token="bea")
        assert st == 200, (st, b)
        st, body = srv.http(q, token="sam", purpose="service")
        assert st == 200, (st, body)
        # Every change is audited with name and role, the refused ones too.
        made = {(e["extra"]["name"], e["extra"]["role"], e["result"])
                for e in changes(srv, "principal.create")}
        assert {("sam", "support", "allow"), ("rex", "bulk", "allow"),
                ("olga", "privacy-officer", "allow"), ("sue", "support", "allow")} <= made, made
        ok = {(e["principal"], e["extra"]["name"], e["extra"]["role"], e["result"])
              for e in changes(srv, "principal.approve")}
        assert {("bea", "sam", "support", "allow"), ("bea", "sue", "support", "deny"),
                ("admin", "sam", "support", "deny")} <= ok, ok
        st, b = admin_post(srv, "/api/v1/principals/rex/revoke")
        assert st == 200, (st, b)
        assert ("rex", "bulk") in {(e["extra"]["name"], e["extra"]["role"])
                                   for e in changes(srv, "principal.revoke")}
        srv.stop()


def test_admin_cli_principal_changes_are_audited():
    with t.Env() as env:
        srv = server(env)
        # While the server runs, the CLI makes and revokes principals: each is audited.
        r = t.run("principal", "add", "tom", "--role", "support", "--data", srv.data,
                  "--policy", srv.policy)
        assert "pending" in r.stderr, r.stderr
        tom = r.stdout.strip()
        st, _ = srv.http(f"/api/v1/query?device={A}&signals=Soc&ticket=T", token=tom)
        assert st == 401  # waits for approval, CLI or not
        t.run("principal", "revoke", "tom", "--data", srv.data)
        deadline = time.time() + 5
        while time.time() < deadline and len(changes(srv, "principal.revoke")) < 1:
            time.sleep(0.2)
        made = [(e["principal"], e["extra"]["name"], e["extra"]["role"])
                for e in changes(srv, "principal.create")]
        gone = [(e["principal"], e["extra"]["name"], e["extra"]["role"])
                for e in changes(srv, "principal.revoke")]
        assert ("fleetvault", "tom", "support") in made, made
        assert gone == [("fleetvault", "tom", "support")], gone
        # Made while the server is stopped: logged at its next start.
        srv.stop()
        srv.principal("ann", "ops", approve=False)
        srv.start()
        made = [(e["extra"]["name"], e["extra"]["role"]) for e in changes(srv, "principal.create")]
        assert ("ann", "ops") in made, made
        srv.stop()


def test_admin_token_lives_outside_data():
    with t.Env() as env:
        srv = server(env)
        beside = srv.key_file + ".admin.token"
        # A copy of DATA is not a live admin token.
        assert not os.path.exists(os.path.join(srv.data, "admin.token"))
        assert os.stat(beside).st_mode & 0o777 == 0o600
        token = srv.token
        assert srv.http("/api/v1/store", token="admin")[0] == 200
        # An older version left it in DATA: moved beside the key at start, with a log line.
        srv.stop()
        os.rename(beside, os.path.join(srv.data, "admin.token"))
        srv.start()
        assert "moved the admin API token" in srv.log(), srv.log()[-2000:]
        assert not os.path.exists(os.path.join(srv.data, "admin.token"))
        assert srv.token == token and srv.http("/api/v1/store", token="admin")[0] == 200
        srv.stop()


if __name__ == "__main__":
    t.main([test_aggregate_only_cannot_get_rows_back, test_aggregate_limits_from_the_policy,
            test_export_serves_one_owner_period, test_export_is_held_to_the_quota,
            test_quota_rows_stop_before_serving, test_quota_survives_restart,
            test_quota_new_principal_shares_the_role_budget,
            test_quota_holds_for_approved_bulk_exports, test_quota_bulk_threshold_counts_per_day,
            test_owner_change_wipes_state_at_once,
            test_owner_records_go_to_the_period_they_were_made_in,
            test_location_signals_need_the_location_class,
            test_location_heading_and_places_withheld_with_location,
            test_trip_trimmed_in_latest_state_and_bulk_export,
            test_trip_parked_car_that_keeps_reporting_is_trimmed,
            test_trip_stop_by_speed_without_gear,
            test_reads_fleet_reads_are_accounted_to_their_subjects,
            test_reads_large_fleet_read_is_bounded_entries,
            test_oracle_unknown_erased_refused_answer_alike,
            test_admin_token_cannot_mint_readers, test_admin_cli_principal_changes_are_audited,
            test_admin_token_lives_outside_data])
