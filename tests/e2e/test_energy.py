"""End-to-end tests of the energy side (issue 10): home-energy sites streaming the `site`
topic over the real mutual-TLS WebSocket, stored and queried like any signal; impossible
values refused with the protocol's error reply and nothing stored."""
import json

import fvtest as t

SITE = "SITE0000000000001"
CAR = "5YJ3E1EA7KF000777"


def connect(env, srv, dev, typ):
    crt, key = env.certs.device(dev, typ=typ)
    return t.WS(srv.port, crt, key, env.certs.ca)


def reply(ws):
    return t.fb_decode(ws.recv()[1])


def test_site_samples_stored_and_queried():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}).start()
        ws = connect(env, srv, SITE, "energy_device")
        t0 = 1795000000000
        for i in range(5):
            p = t.site_payload(t0 + i * 1000, battery_kw=1.0 + i, energy_kwh=10.0 - 0.1 * i,
                               site_id="someone-else")
            ws.send(t.fb_envelope(f"s-{i}".encode(), b"site", p))
            r = reply(ws)
            assert r["message_type"] == 5, r
        ws.close()
        b = srv.json(f"/api/v1/query?device={SITE}&signals=SiteBatteryPower,SiteEnergy,SiteMode"
                     f"&from={t0}&to={t0 + 10000}")
        rows = b["rows"]
        assert [r["t"] for r in rows] == [t0 + i * 1000 for i in range(5)], b
        assert [r["SiteBatteryPower"] for r in rows] == [1.0, 2.0, 3.0, 4.0, 5.0], b
        assert rows[0]["SiteEnergy"] == 10.0 and rows[0]["SiteMode"] == 1, rows[0]
        st = srv.json(f"/api/v1/vehicles/{SITE}/state")
        assert st["client_type"] == "energy_device", st
        assert st["state"]["SiteExportLimit"]["value"] == 4.0, st["state"]
        assert st["state"]["SiteBatteryPower"]["value"] == 5.0, st["state"]
        # the stored record names the site by its certificate, never by what it claimed
        assert "someone-else" not in json.dumps(st)
        srv.stop()


def test_impossible_site_values_refused():
    with t.Env() as env:
        srv = t.Server(env.root, env.certs, config={"rate_limits": False}).start()
        ws = connect(env, srv, SITE, "energy_device")
        bad = [dict(capacity_kwh=-1.0), dict(reserve_pct=120.0), dict(energy_kwh=30.0),
               dict(solar_kw=-2.0), dict(battery_kw=50.0), dict(mode=9)]
        for i, kw in enumerate(bad):
            ws.send(t.fb_envelope(f"bad-{i}".encode(), b"site", t.site_payload(**kw)))
            r = reply(ws)
            assert r["message_type"] != 5, (kw, r)  # the error reply, not an ack
        ws.send(t.fb_envelope(b"junk", b"site", b"\xff\xff\xff"))
        assert reply(ws)["message_type"] != 5
        ws.send(t.fb_envelope(b"ok", b"site", t.site_payload()))
        assert reply(ws)["message_type"] == 5
        ws.close()
        assert srv.metric('fleetvault_rejected_total{reason="payload"}') == len(bad) + 1
        b = srv.json(f"/api/v1/query?device={SITE}&signals=SiteCapacity")
        assert [r["SiteCapacity"] for r in b["rows"]] == [13.5], b  # only the good one
        # a vehicle may not pose as a site
        car = connect(env, srv, CAR, "vehicle_device")
        car.send(t.fb_envelope(b"c1", b"site", t.site_payload()))
        assert reply(car)["message_type"] != 5
        car.close()
        assert srv.metric('fleetvault_rejected_total{reason="topic"}') == 1
        srv.stop()


if __name__ == "__main__":
    t.main([test_site_samples_stored_and_queried, test_impossible_site_values_refused])
