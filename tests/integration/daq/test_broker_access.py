"""`daq broker access` on a real Mosquitto (2.0): the files and the mosquitto.conf lines it
writes for a site with two gateways, shown with real paho clients — each gateway publishes
only under its own prefix, the dashboard only reads, anonymous clients are refused at
CONNECT, and no password is written anywhere but as a hash."""

from __future__ import annotations

import base64
import grp
import os
import pwd
import queue
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from daq.config.broker_access import PBKDF2_ITERATIONS, hash_password
from simulators.broker import Broker, free_port, private_mosquitto
from tests.services import mosquitto_readable_dir

pytestmark = pytest.mark.services

NOT_AUTHORIZED = 0x87  # MQTT v5 reason code 135, in CONNACK and in PUBACK
ENT = "acme-" + uuid.uuid4().hex[:8]
PASSWORDS = {u: f"pw-{u}-{uuid.uuid4().hex}" for u in ("gw-1", "gw-2", "ingest", "dash")}

SITE = f"""\
enterprise: {{id: {ENT}}}
gateways:
  - id: gw-1
    mqtt_login:
      username: gw-1
      password: ${{T_GW1_PW}}
    buses: []
  - id: gw-2
    mqtt_login: {{username: gw-2, password: "${{T_GW2_PW}}"}}
    buses: []
ingest:
  mqtt_login: {{username: ingest, password: "${{T_INGEST_PW}}"}}
dashboard:
  mqtt_login: {{username: dash, password_file: dash.secret}}
"""
ENV = {"T_GW1_PW": PASSWORDS["gw-1"], "T_GW2_PW": PASSWORDS["gw-2"],
       "T_INGEST_PW": PASSWORDS["ingest"]}


@dataclass
class Generated:
    dir: Path
    stdout: str
    stderr: str
    broker: Broker


def daq(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daq.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env={**os.environ, **ENV},
                          check=False)


@pytest.fixture(scope="module")
def generated() -> Iterator[Generated]:
    with mosquitto_readable_dir("daq-test-access-", "mosquitto", "mosquitto_passwd") as d:
        yield from _generated(d)


def _generated(d: Path) -> Iterator[Generated]:
    (d / "site.yaml").write_text(SITE)
    (d / "dash.secret").write_text(PASSWORDS["dash"] + "\n")
    persist = d / "persist"
    persist.mkdir()
    out = daq("broker", "access", "site.yaml", "--out", "access",
              "--persistence-location", str(persist), cwd=d)
    assert out.returncode == 0, out.stderr
    # what an operator does once: let the broker's user read the files and write persistence
    for f in (d / "access" / "passwords", d / "access" / "acl"):
        assert f.stat().st_mode & 0o777 == 0o640
        if _has_mosquitto_user():
            os.chown(f, -1, grp.getgrnam("mosquitto").gr_gid)
    if _has_mosquitto_user():
        os.chown(persist, pwd.getpwnam("mosquitto").pw_uid, -1)
    (d / "access").chmod(0o755)
    conf = ("listener {port} 127.0.0.1\nlog_dest stderr\n"
            + out.stdout.replace("{", "{{").replace("}", "}}"))
    with private_mosquitto(port=free_port(), conf_template=conf) as broker:
        yield Generated(d, out.stdout, out.stderr, broker)
    # the broker saved its state where the printed lines said, on a clean stop
    assert (persist / "mosquitto.db").exists()


def _has_mosquitto_user() -> bool:
    try:
        pwd.getpwnam("mosquitto")
        grp.getgrnam("mosquitto")
    except KeyError:
        return False
    return os.geteuid() == 0


class Client:
    """A real paho client with what the tests look at: the CONNACK's reason code, the
    PUBACKs' reason codes, and the messages received."""

    def __init__(self, broker: Broker, user: str | None, *, password: str | None = None,
                 protocol: int = mqtt.MQTTv5) -> None:
        self.protocol = protocol
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"t-{user}-{uuid.uuid4().hex[:8]}", protocol=protocol)
        if user is not None:
            self.client.username_pw_set(user, password or PASSWORDS[user])
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.pubacks: dict[int, ReasonCode] = {}
        self._puback = threading.Condition()
        self._connack: queue.Queue[ReasonCode] = queue.Queue()
        self._suback: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self._connack.put(rc)
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: self._suback.put(codes)
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.client.on_publish = self._on_publish
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.connack = self._connack.get(timeout=5)

    def _on_publish(self, _c: object, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        with self._puback:
            self.pubacks[mid] = rc
            self._puback.notify_all()

    def subscribe(self, topic: str) -> list[ReasonCode]:
        self.client.subscribe(topic, qos=1)
        return self._suback.get(timeout=5)

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        """QoS 1; the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        with self._puback:
            assert self._puback.wait_for(lambda: info.mid in self.pubacks, timeout=5)
            return self.pubacks[info.mid]

    def received_until(self, marker: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and with ``marker`` (a later message of the same
        publisher: MQTT keeps one publisher's order, so what did not come before the marker
        was not delivered)."""
        got = []
        while True:
            topic, payload = self.messages.get(timeout=5)
            got.append((topic, payload))
            if payload == marker:
                return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(generated: Generated) -> Iterator[dict[str, Client]]:
    made = {u: Client(generated.broker, u) for u in ("gw-1", "gw-2", "ingest", "dash")}
    try:
        assert {u: c.connack.value for u, c in made.items()} == dict.fromkeys(made, 0)
        yield made
    finally:
        for c in made.values():
            c.close()


def test_gateway_publishes_under_its_prefix_and_the_ingest_receives_it(
        clients: dict[str, Client]) -> None:
    # the ingest's default subscription is daq/#; the broker grants it and delivers what the
    # ACL lets the ingest read
    assert [c.value for c in clients["ingest"].subscribe("daq/#")] == [1]
    assert [c.value for c in clients["dash"].subscribe(f"daq/{ENT}/#")] == [1]
    topic = f"daq/{ENT}/gw-1/meter/data"
    assert clients["gw-1"].publish(topic, b"reading").value == 0
    assert clients["ingest"].received_until(b"reading") == [(topic, b"reading")]
    assert clients["dash"].received_until(b"reading") == [(topic, b"reading")]


def test_gateway_publishing_under_another_gateways_prefix_is_refused(
        generated: Generated, clients: dict[str, Client]) -> None:
    clients["ingest"].subscribe("daq/#")
    forged = f"daq/{ENT}/gw-2/meter/data"
    # MQTT v5: Mosquitto 2.0 answers the PUBACK with 0x87 "not authorized"
    assert clients["gw-1"].publish(forged, b"forged-v5").value == NOT_AUTHORIZED
    assert clients["gw-1"].publish(f"daq/{ENT}/other", b"forged-v5b").value == NOT_AUTHORIZED
    # MQTT 3.1.1 has no reason code in PUBACK: the publish looks accepted but is dropped
    v311 = Client(generated.broker, "gw-1", protocol=mqtt.MQTTv311)
    try:
        assert v311.connack.value == 0
        assert v311.publish(forged, b"forged-v311").value == 0
        own = f"daq/{ENT}/gw-1/meter/data"
        assert v311.publish(own, b"marker").value == 0
    finally:
        v311.close()
    assert clients["ingest"].received_until(b"marker") == [(own, b"marker")]


def test_anonymous_and_wrong_passwords_are_refused_at_connect(generated: Generated) -> None:
    for user, password in ((None, None), ("gw-1", "wrong"), ("nobody", "x")):
        c = Client(generated.broker, user, password=password)
        try:
            assert c.connack.value == NOT_AUTHORIZED, (user, c.connack)
        finally:
            c.close()
    old = Client(generated.broker, None, protocol=mqtt.MQTTv311)
    try:
        # MQTT 3.1.1's CONNACK return code 5 "not authorised", as paho 2 reports it
        assert old.connack.value == NOT_AUTHORIZED
    finally:
        old.close()


def test_the_dashboard_and_the_ingest_cannot_publish_readings(
        clients: dict[str, Client]) -> None:
    clients["ingest"].subscribe("daq/#")
    topic = f"daq/{ENT}/gw-1/meter/data"
    assert clients["dash"].publish(topic, b"from-dash").value == NOT_AUTHORIZED
    assert clients["ingest"].publish(topic, b"from-ingest").value == NOT_AUTHORIZED
    assert clients["gw-1"].publish(topic, b"marker").value == 0
    assert clients["ingest"].received_until(b"marker") == [(topic, b"marker")]


def test_acknowledgements_written_by_the_ingest_only_for_their_gateway(
        clients: dict[str, Client]) -> None:
    for gw in ("gw-1", "gw-2"):
        clients[gw].subscribe("daq-ack/#")  # granted, delivered only what the ACL allows
    ack1, ack2 = f"daq-ack/{ENT}/gw-1/stored", f"daq-ack/{ENT}/gw-2/stored"
    assert clients["gw-1"].publish(ack1, b"self-ack").value == NOT_AUTHORIZED  # no forging
    assert clients["dash"].publish(ack1, b"dash-ack").value == NOT_AUTHORIZED
    assert clients["ingest"].publish(ack1, b"ack-1").value == 0
    assert clients["ingest"].publish(ack2, b"ack-2").value == 0
    assert clients["gw-1"].received_until(b"ack-1") == [(ack1, b"ack-1")]
    assert clients["gw-2"].received_until(b"ack-2") == [(ack2, b"ack-2")]
    assert clients["gw-1"].messages.empty()  # gw-2's acknowledgement did not reach gw-1
    # and a gateway reads no readings, not even its own
    clients["gw-2"].subscribe(f"daq/{ENT}/#")
    assert clients["gw-2"].publish(f"daq/{ENT}/gw-2/m/data", b"own").value == 0
    assert clients["ingest"].publish(ack2, b"ack-2b").value == 0
    assert clients["gw-2"].received_until(b"ack-2b") == [(ack2, b"ack-2b")]


def test_passwords_are_only_hashes_in_the_password_file(generated: Generated) -> None:
    files = {p.name: p.read_text() for p in (generated.dir / "access").iterdir()}
    assert set(files) == {"passwords", "acl"}  # no temporary file left behind
    for secret in PASSWORDS.values():
        assert secret not in generated.stdout + generated.stderr
        assert all(secret not in text for text in files.values())
    lines = files["passwords"].splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["gw-1", "gw-2", "ingest", "dash"]
    assert all(re.fullmatch(rf"[^:]+:\$7\${PBKDF2_ITERATIONS}\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+",
                            ln) for ln in lines)
    assert "allow_anonymous false" in generated.stdout.splitlines()


def test_hashes_are_what_mosquitto_passwd_makes(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(f), "u", "s3cret"], check=True,
                   capture_output=True)
    _user, stored = f.read_text().strip().split(":", 1)
    _, seven, iterations, salt, _digest = stored.split("$")
    assert seven == "7"
    assert hash_password("s3cret", iterations=int(iterations),
                         salt=base64.b64decode(salt)) == stored


def test_a_site_without_the_ingests_login_is_a_located_error(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE.replace("ingest:\n  mqtt_login:", "ingest:\n  spool: s.sqlite\n"
                                 "  x_login:"))
    out = daq("broker", "access", str(site), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith(f"{site}:13: ingest.x_login: unknown field"), out.stderr
    site.write_text(SITE.replace("ingest:\n  mqtt_login:", "ingest:\n  spool: s.sqlite\n#"))
    out = daq("broker", "access", str(site), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr == (  # every problem at once, by line
        f"{site}:11: ingest: the ingest has no `mqtt_login: {{username, password | "
        "password_file}` (its broker account)\n"
        f"{site}:15: dashboard.mqtt_login.password_file: cannot read dash.secret: No such "
        "file or directory\n")
    assert not (tmp_path / "out").exists()

