"""Live values over MQTT for Home Assistant (issue 14 item 4; docs/mqtt.md, src/mqtt/mqtt.h).

A real Mosquitto broker on 127.0.0.1 (a config file in the test directory), the real server
with an "mqtt" section, `fleetvault simulate` with three vehicles, and `mosquitto_sub` as the
subscriber. Only the vehicle whose owner consents to home_automation is published: discovery
and state messages, retained, named by its per-purpose pseudonym; the others publish nothing;
a withdrawal stops it and empties its retained topics; every start, stop and summary is in the
audit log. Then an unreachable broker: a clear log line without the password, and the
connection made once the broker comes up; and mutual TLS to a broker that requires a client
certificate. Skipped, saying so, only if Mosquitto is not
installed (scripts/deps.sh installs it)."""
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time

import fvtest as t

VINS = ["5YJMQTT%010d" % i for i in range(3)]  # the owners of 0 and 1 opt in, not 2
SITE = "SITEMQTT%09d" % 0  # a home battery whose owner opts in
SECRET = "hunter2-not-in-any-log"


def broker(env, port, name="mosquitto", tls=""):
    """A mosquitto on 127.0.0.1:port (tls: extra config lines for a TLS listener)."""
    conf = os.path.join(env.root, name + ".conf")
    with open(conf, "w") as f:
        # started as root, mosquitto drops to its own user, who cannot read the test's 0600
        # key files: it stays whoever runs the test
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                f"user {pwd.getpwuid(os.getuid()).pw_name}\n{tls}")
    logf = open(os.path.join(env.root, name + ".log"), "a")
    p = subprocess.Popen(["mosquitto", "-c", conf], stdout=logf, stderr=logf)
    deadline = time.time() + 10
    while time.time() < deadline:
        if p.poll() is not None:
            raise AssertionError("mosquitto exited: " + open(logf.name).read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.1)
    p.kill()
    raise AssertionError("mosquitto did not start")


class Sub:
    """mosquitto_sub on fleetvault/# and homeassistant/#: (retained, topic, payload) lines."""

    def __init__(self, env, port):
        self.path = os.path.join(env.root, "sub.out")
        self.f = open(self.path, "w")
        self.p = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", "fleetvault/#",
             "-t", "homeassistant/#", "-F", "%r|%t|%p"], stdout=self.f, stderr=subprocess.STDOUT)

    def messages(self):
        with open(self.path) as f:
            out = []
            for line in f.read().splitlines():
                parts = line.split("|", 2)
                if len(parts) == 3:
                    out.append((parts[0] == "1", parts[1], parts[2]))
            return out

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=5)
        self.f.close()


def retained(port):
    """Every retained message on the broker now: {topic: payload}."""
    r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "fleetvault/#",
                        "-t", "homeassistant/#", "--retained-only", "-F", "%t|%p", "-W", "2"],
                       capture_output=True, text=True)
    return dict(line.split("|", 1) for line in r.stdout.splitlines() if "|" in line)


wait = t.wait_until


def audit(srv):
    return t.audit_entries(srv)


def consent(srv, vin, change):
    if "po" not in srv.tokens:
        srv.principal("po", "privacy-officer")
    st, b = srv.http(f"/api/v1/subjects/{vin}/consent?purpose=home_automation&change={change}"
                     "&by=owner&ticket=HA-1", token="po", method="POST", purpose=None)
    assert st == 200, b


def devices(msgs):
    return {topic.split("/")[1] for _, topic, payload in msgs
            if topic.startswith("fleetvault/") and payload}


def test_consenting_owners_published_withdrawals_clear():
    with t.Env() as env:
        port = t.free_port()
        mq = broker(env, port)
        sub = None
        sim = None
        try:
            srv = t.Server(env.root, env.certs, config={
                "rate_limits": False,
                "mqtt": {"broker": f"127.0.0.1:{port}", "interval": "1s",
                         "audit_summary": "10s"}}).start()
            sub = Sub(env, port)
            simlog = open(os.path.join(env.root, "sim.log"), "a")
            sim = subprocess.Popen(
                [t.BIN, "simulate", "--server", f"wss://127.0.0.1:{srv.port}", "--certs",
                 env.certs.dir, "--vehicles", "3", "--id-prefix", "5YJMQTT", "--sites", "1",
                 "--site-prefix", "SITEMQTT", "--hz", "2",
                 "--seconds", "60", "--drain", "2", "--seed", "5", "--quiet"],
                stdout=subprocess.PIPE, stderr=simlog, text=True)
            wait("3 vehicles and a site",
                 lambda: len(srv.json("/api/v1/vehicles")["vehicles"]) == 4)
            time.sleep(2.5)  # two publish cycles: nobody consents yet, nothing is published
            assert sub.messages() == [], sub.messages()
            assert srv.metric("fleetvault_mqtt_connected") == 1

            consent(srv, VINS[0], "give")
            consent(srv, VINS[1], "give")
            consent(srv, SITE, "give")
            wait("three devices", lambda: len(devices(sub.messages())) == 3)
            time.sleep(2.5)  # more cycles: values change, the third still publishes nothing
            msgs = sub.messages()
            devs = devices(msgs)
            assert len(devs) == 3, devs  # only the consenting owners' devices
            assert not any(v in m[1] + m[2] for v in VINS + [SITE] for m in msgs), "an id on MQTT"
            assert not any("Location" in tp or "Heading" in tp for _, tp, _ in msgs)
            # which is which: the audit log's mqtt.start names the subject that consented
            ents = audit(srv)
            given = [e for e in ents if e.get("action") == "subject.consent" and
                     e.get("purpose") == "home_automation"]
            starts = [e for e in ents if e.get("action") == "mqtt.start"]
            assert len(given) == 3 and len(starts) == 3, (given, starts)
            assert all(e["purpose"] == "home_automation" and e["kind"] == "mqtt" for e in starts)
            name = {e["extra"]["device"]: e["subjects"] for e in starts}
            assert set(name) == devs, (name, devs)
            dev0 = next(d for d, subj in name.items() if subj == given[0]["subjects"])
            dev1 = next(d for d, subj in name.items() if subj == given[1]["subjects"])
            dev2 = next(d for d, subj in name.items() if subj == given[2]["subjects"])
            assert len(dev0) == 32 and dev0 != dev1, (dev0, dev1)  # per-purpose pseudonyms (Q2)

            disc = {tp: json.loads(pl) for _, tp, pl in msgs
                    if tp.startswith("homeassistant/") and pl}
            soc = disc.get(f"homeassistant/sensor/fleetvault_{dev0}_Soc/config")
            assert soc, sorted(disc)
            assert soc["state_topic"] == f"fleetvault/{dev0}/Soc", soc
            assert soc["unique_id"] == f"fleetvault_{dev0}_Soc"
            assert soc["unit_of_measurement"] == "%" and soc["device_class"] == "battery", soc
            assert soc["device"]["identifiers"] == [f"fleetvault_{dev0}"], soc
            speed = disc[f"homeassistant/sensor/fleetvault_{dev0}_VehicleSpeed/config"]
            assert speed["device_class"] == "speed", speed
            bat = disc[f"homeassistant/sensor/fleetvault_{dev2}_SiteBatteryPower/config"]
            assert bat["device"]["model"] == "energy site" and bat["device_class"] == "power", bat
            assert bat["unit_of_measurement"] == "kW", bat
            assert [pl for _, tp, pl in msgs if tp == f"fleetvault/{dev2}/SiteEnergy" and pl]
            assert all(d["state_topic"].split("/")[1] in devs for d in disc.values())
            states = [pl for _, tp, pl in msgs if tp == f"fleetvault/{dev0}/Soc"]
            assert states and 0 <= float(states[-1]) <= 100, states
            by_topic = {}
            for _, tp, pl in msgs:
                if tp.startswith("fleetvault/"):
                    by_topic.setdefault(tp, []).append(pl)
            for tp, pls in by_topic.items():  # only changed values are sent (Q5)
                assert all(a != b for a, b in zip(pls, pls[1:])), (tp, pls)
            # retained on the broker: a Home Assistant that connects later sees them at once
            kept = retained(port)
            for d in (dev0, dev1):
                assert f"fleetvault/{d}/Soc" in kept and \
                    f"homeassistant/sensor/fleetvault_{d}_Soc/config" in kept, sorted(kept)
            assert srv.metric("fleetvault_mqtt_subjects") == 3
            assert srv.metric("fleetvault_mqtt_published_total") >= len(msgs)

            # a withdrawal while the server runs: its topics emptied within a cycle (Q4)
            consent(srv, VINS[1], "withdraw")
            topics1 = {tp for _, tp, pl in msgs if pl and dev1 in tp}
            wait("every retained topic of the withdrawn owner emptied",
                 lambda: topics1 <= {tp for _, tp, pl in sub.messages() if not pl})
            n = len(sub.messages())
            time.sleep(2.5)
            later = sub.messages()[n:]
            assert not [m for m in later if m[2] and dev1 in m[1]], later
            assert [m for m in later if m[2] and (dev0 in m[1] or dev2 in m[1])], \
                "the other owners go on"
            kept = retained(port)
            assert not [tp for tp in kept if dev1 in tp], sorted(kept)
            assert srv.metric("fleetvault_mqtt_subjects") == 2
            ents = audit(srv)
            stops = [e for e in ents if e.get("action") == "mqtt.stop"]
            sums = [e for e in ents if e.get("action") == "mqtt.publish" and
                    e["subjects"] == given[1]["subjects"]]
            assert len(stops) == 1 and stops[0]["subjects"] == given[1]["subjects"], stops
            assert stops[0]["reason"] == "no consent to home_automation now", stops
            sent1 = sum(len(v) for tp, v in by_topic.items() if dev1 in tp)
            assert sums and sum(e["extra"]["values"] for e in sums) >= sent1, (sums, sent1)

            # a new owner of the site: a new subject without consent, the old one's topics go
            t.run("subject", "owner", SITE, "owner-2", "--data", srv.data, "--key-file",
                  srv.key_file)
            wait("the site's topics emptied",
                 lambda: not [tp for tp in retained(port) if dev2 in tp], timeout=15)
            stops = [e for e in audit(srv) if e.get("action") == "mqtt.stop" and
                     e["subjects"] == given[2]["subjects"]]
            assert stops and stops[0]["reason"] == "a new owner period began", stops
            assert srv.metric("fleetvault_mqtt_subjects") == 1

            # a withdrawal while the server is stopped: cleared at the next start (Q7)
            t.stop_sim(sim, simlog)
            sim = None
            srv.stop()
            assert [tp for tp in retained(port) if dev0 in tp], "last values kept on stop"
            t.run("subject", "consent", VINS[0], "home_automation", "withdraw", "--by", "owner",
                  "--data", srv.data, "--key-file", srv.key_file, "--policy", srv.policy)
            srv.start()
            wait("the stopped owner's topics emptied", lambda: retained(port) == {}, timeout=15)
            assert "cleared" in srv.log()
            assert srv.metric("fleetvault_mqtt_subjects") == 0
            srv.stop()
            ents = audit(srv)
            assert [e for e in ents if e.get("action") == "mqtt.stop" and
                    e["subjects"] == given[0]["subjects"] and e["reason"] == "the server stops"]
        finally:
            if sim:
                sim.kill()
            if sub:
                sub.stop()
            mq.kill()
            mq.wait()


def test_unreachable_broker_logged_without_secret_then_connects():
    with t.Env() as env:
        port = t.free_port()
        pw = os.path.join(env.root, "mqtt.pass")
        with open(pw, "w") as f:
            f.write(SECRET + "\n")
        srv = t.Server(env.root, env.certs, config={
            "mqtt": {"broker": f"127.0.0.1:{port}", "interval": "1s", "username": "fv",
                     "password_file": pw}}).start()
        wait("the unreachable line", lambda: "is unreachable" in srv.log(), timeout=15)
        assert srv.metric("fleetvault_mqtt_connected") == 0
        assert srv.metric("fleetvault_mqtt_errors_total") >= 1
        mq = broker(env, port)
        try:
            wait("the connection", lambda: srv.metric("fleetvault_mqtt_connected") == 1,
                 timeout=40)
            srv.stop()
        finally:
            mq.kill()
            mq.wait()
        text = srv.log()
        assert f"127.0.0.1:{port} is unreachable" in text and "connected to the broker" in text
        assert SECRET not in text


def test_mutual_tls_to_the_broker():
    with t.Env() as env:
        port = t.free_port()
        ca, d = env.certs.ca, env.certs.dir
        mq = broker(env, port, tls=f"cafile {ca}\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
                    "require_certificate true\n")
        try:
            cert, key = env.certs.device("fleetvault-mqtt")
            srv = t.Server(env.root, env.certs, config={"mqtt": {
                "broker": f"127.0.0.1:{port}", "interval": "1s",
                "tls": {"ca": ca, "cert": cert, "key": key}}}).start()
            # the broker requires a client certificate: connected means ours was presented
            wait("the TLS connection", lambda: srv.metric("fleetvault_mqtt_connected") == 1)
            srv.stop()
            assert f"connected to the broker at 127.0.0.1:{port} (TLS)" in srv.log()
        finally:
            mq.kill()
            mq.wait()


def test_config_refuses_location_and_bad_values():
    with t.Env() as env:
        for bad, key in (({"broker": "127.0.0.1:1883", "signals": ["Soc", "Location"]},
                          "mqtt.signals"),
                         ({"signals": ["Soc"]}, "mqtt.broker"),
                         ({"broker": "127.0.0.1:1883", "topic_prefix": "a/#"}, "mqtt.topic_prefix"),
                         ({"broker": "127.0.0.1:1883", "interval": "0s"}, "mqtt.interval")):
            srv = t.Server(env.root, env.certs, config={"mqtt": bad})
            assert not srv.try_start(), bad
            assert key in srv.log(), (key, srv.log()[-500:])


if __name__ == "__main__":
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_sub") is None:
        print("SKIP: mosquitto / mosquitto_sub not installed (scripts/deps.sh installs them)",
              flush=True)
        sys.exit(0)
    t.main([test_config_refuses_location_and_bad_values,
            test_consenting_owners_published_withdrawals_clear,
            test_unreachable_broker_logged_without_secret_then_connects,
            test_mutual_tls_to_the_broker])
