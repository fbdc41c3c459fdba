"""Hostile and broken input at the ingest, on a real Mosquitto and a real InfluxDB 1.x:
every invalid message is dead-lettered alone with its reason, the good messages around it
are stored, the writer never dies, and a storage that refuses one message for good (a
field type conflict) does not take the rest of its batch with it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from daq.config import LoadedConfig, load_config
from daq.model import now_ns
from daq.payload import data_topic
from daq.signing import Signer, ensure_private_key, new_private_key
from gateway.ingest.deadletters import DeadLetters
from gateway.ingest.service import Ingest
from gateway.storage import open_storage
from tests.integration.pathrun import pin_keys
from tests.services import InfluxDatabase, http, influx_query

pytestmark = pytest.mark.services


def site(tmp: Path, ent: str, broker: Any, db: InfluxDatabase) -> LoadedConfig:
    p = tmp / "site.yaml"
    p.write_text(f"""
enterprise: {{id: {ent}}}
gateways: [{{id: gw-1, buses: []}}]
mqtt: {{host: {broker.host}, port: {broker.port}}}
ingest: {{subscription: "daq/{ent}/#", spool: spool.sqlite, dead_letter: dead.sqlite,
          batch_size: 500, batch_interval_ms: 300}}
storage: {{kind: influxdb_v1, url: "{db.url}", database: {db.name}}}
""")
    return load_config(p)


def body(ent: str, gw: str, dev: str, channel: str, value: Any = 1.5, *, seq: int = 1,
         quantity: str = "voltage", epoch: str = "00000000000000ab", **extra: Any) -> bytes:
    reading = {"channel": channel, "quantity": quantity, "unit": "V", "ts": now_ns(),
               "value": value, "raw": 15, "quality": "good", **extra}
    return orjson.dumps({"schema": "daq.data/2", "enterprise": ent, "gateway": gw,
                         "epoch": epoch, "seq": seq,
                         "polls": [{"device": dev, "readings": [reading]}], "events": []})


class Site:
    """A site whose gateway gw-1 has a pinned key; ``sign`` signs as that gateway would."""

    def __init__(self, tmp: Path, ent: str, broker: Any, db: InfluxDatabase) -> None:
        self.ent = ent
        self.loaded = site(tmp, ent, broker, db)
        pin_keys(self.loaded)
        key, _ = ensure_private_key(self.loaded.signing_key_path(self.loaded.gateway("gw-1")))
        self.signer = Signer(key)
        self.topic = data_topic(ent, "gw-1")
        self.seq = 0

    def good(self, channel: str, **kw: Any) -> tuple[str, bytes]:
        self.seq += 1
        return self.topic, self.signer.sign(body(self.ent, "gw-1", "m1", channel,
                                                 seq=self.seq, **kw))


def bad_messages(s: Site) -> dict[str, tuple[str, bytes]]:
    """What a broken gateway or an attacker might send: name → (topic, payload)."""
    ent, topic, sign = s.ent, s.topic, s.signer.sign

    def with_reading(**fields: Any) -> bytes:
        doc = orjson.loads(body(ent, "gw-1", "m1", "bad"))
        doc["polls"][0]["readings"][0].update(fields)
        return sign(json.dumps(doc).encode())  # json: orjson refuses integers beyond 64 bits

    def with_top(**fields: Any) -> bytes:
        doc = orjson.loads(body(ent, "gw-1", "m1", "bad"))
        doc.update(fields)
        return sign(json.dumps(doc).encode())

    stranger = Signer(new_private_key())
    good = body(ent, "gw-1", "m1", "bad")
    tampered = bytearray(sign(good))
    tampered[tampered.index(b"1.5")] = ord("9")  # 9.5: the body changed after signing
    return {
        # signed by the gateway, but not a valid message
        "value object": (topic, with_reading(value={"a": 1})),
        "value list": (topic, with_reading(value=[1, 2])),
        "value bool": (topic, with_reading(value=True)),
        "value 1e400": (topic, sign(good.replace(b'"value":1.5', b'"value":1e400'))),
        "channel int": (topic, with_reading(channel=7)),
        "channel markup": (topic, with_reading(channel="<img src=x onerror=alert(1)>")),
        "unit dict": (topic, with_reading(unit={"x": 1})),
        "unit too long": (topic, with_reading(unit="V" * 1000)),
        "ts 2^63": (topic, with_reading(ts=2**63)),
        "ts 2^64": (topic, with_reading(ts=2**64)),
        "ts string": (topic, with_reading(ts="now")),
        "ts zero": (topic, with_reading(ts=0)),
        "ts next year": (topic, with_reading(ts=now_ns() + 365 * 86400 * 10**9)),
        "quality unknown": (topic, with_reading(quality="excellent")),
        "u_std negative": (topic, with_reading(u_std=-1.0, k=2.0)),
        "u_std without k": (topic, with_reading(u_std=0.1)),
        "reasons object": (topic, with_reading(reasons={"x": 1})),
        "reasons with markup": (topic, with_reading(reasons=["<b>"])),
        "unknown field": (topic, with_reading(color="red")),
        "old field name u": (topic, with_reading(u=0.1, k=2.0)),
        "verification unknown": (topic, with_reading(verification="fine")),
        "null value, good quality": (topic, with_reading(value=None)),
        "polls empty, no events": (topic, with_top(polls=[])),
        "polls not a list": (topic, with_top(polls={"a": 1})),
        "gateway with a slash": (topic, with_top(gateway="gw/2")),
        "seq zero": (topic, with_top(seq=0)),
        "epoch not hex": (topic, with_top(epoch="zz")),
        "no schema": (topic, sign(b'{"polls": []}')),
        "old schema": (topic, with_top(schema="daq.data/1")),
        "not JSON": (topic, sign(b"\xff\xfe garbage")),
        "a JSON list": (topic, sign(b"[1, 2, 3]")),
        "oversized": (topic, sign(good.replace(b'"unit":"V"', b'"unit":"V' + b"v" * 200 + b'"')
                                  + b" " * (1 << 20))),
        # identity: a payload naming another gateway than its topic
        "forged gateway": (topic, sign(body(ent, "gw-2", "m1", "forged"))),
        "another gateway's topic": (data_topic(ent, "gw-2"), sign(body(ent, "gw-1", "m1", "x"))),
        # authenticity
        "unsigned": (topic, body(ent, "gw-1", "m1", "unsigned")),
        "signed by an unknown key": (topic, stranger.sign(body(ent, "gw-1", "m1", "stranger"))),
        "body changed after signing": (topic, bytes(tampered)),
        "signature garbage": (topic, good + b"\n#ed25519 0123456789abcdef AAAA"),
    }


@pytest.fixture
def publisher(mqtt_broker: Any) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"poison-{uuid.uuid4().hex}",
                         protocol=mqtt.MQTTv5)
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def publish_all(client: mqtt.Client, messages: list[tuple[str, bytes]]) -> None:
    infos = [client.publish(t, p, qos=1) for t, p in messages]
    for info in infos:
        info.wait_for_publish(timeout=10)


def stored_channels(db: InfluxDatabase) -> dict[str, int]:
    doc = influx_query(db.server, 'SELECT count("quality") FROM "voltage" GROUP BY "channel"',
                       db.name)
    series = doc["results"][0].get("series", [])  # type: ignore[index]
    return {s["tags"]["channel"]: s["values"][0][1] for s in series}


def wait_until(check: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def ingest_all(s: Site, publisher: mqtt.Client, sequence: list[tuple[str, bytes]]) -> Ingest:
    """Run an ingest of the site until it has written or rejected every message published."""
    ing = Ingest(s.loaded, open_storage(s.loaded))
    ing.start()
    try:
        assert ing.wait_subscribed(10)
        publish_all(publisher, sequence)
        wait_until(lambda: ing.stats.written_messages + ing.stats.rejected_messages
                   >= len(sequence))
    finally:
        ing.stop()
    assert not ing.failed.is_set(), ing.failure
    return ing


def dead_letters(tmp: Path) -> list[tuple[int, str, bytes, str]]:
    dead = DeadLetters(tmp / "dead.sqlite")
    try:
        return dead.rows()
    finally:
        dead.close()


def test_every_bad_message_is_dead_lettered_alone_and_the_good_ones_stored(
        tmp_path: Path, mqtt_broker: Any, influx_db: InfluxDatabase,
        publisher: mqtt.Client) -> None:
    s = Site(tmp_path, f"poison-{uuid.uuid4().hex[:8]}", mqtt_broker, influx_db)
    bad = bad_messages(s)
    # good messages before, between and after the bad ones, all in the same batches
    sequence: list[tuple[str, bytes]] = []
    for i, msg in enumerate(bad.values()):
        sequence.append(s.good(f"good{i}"))
        sequence.append(msg)
    sequence.append(s.good("good-last"))
    ing = ingest_all(s, publisher, sequence)
    stored = stored_channels(influx_db)
    assert stored == {f"good{i}": 1 for i in range(len(bad))} | {"good-last": 1}
    rows = dead_letters(tmp_path)
    assert len(rows) == len(bad)
    assert sorted(p for _, _, p, _ in rows) == sorted(p for _, p in bad.values())
    reasons = {p: r for _, _, p, r in rows}
    for name in ("unsigned", "signed by an unknown key", "body changed after signing",
                 "signature garbage", "another gateway's topic"):
        assert reasons[bad[name][1]].startswith("not authentic: "), name
    assert ing.stats.unsigned_messages == 5
    assert "ts" in reasons[bad["ts 2^63"][1]]
    assert "gw-2" in reasons[bad["forged gateway"][1]]
    assert "bytes" in reasons[bad["oversized"][1]]


def test_a_message_the_storage_refuses_for_good_is_dead_lettered_alone(
        tmp_path: Path, mqtt_broker: Any, influx_db: InfluxDatabase,
        publisher: mqtt.Client) -> None:
    """InfluxDB answers 400 for the whole batch when one point's field type conflicts with the
    measurement's (here ``raw`` of ``current`` was written as a string before; the poison
    message is the only one of that measurement): the ingest halves the batch until the
    refused message stands alone, dead-letters it with InfluxDB's reason and stores the
    rest."""
    s = Site(tmp_path, f"conflict-{uuid.uuid4().hex[:8]}", mqtt_broker, influx_db)
    line = (f'current,channel=poison,device=m1,enterprise={s.ent},gateway=gw-1 raw="text" '
            f"{now_ns()}")
    resp = http("POST", f"{influx_db.url}/write?db={influx_db.name}&precision=ns", body=line)
    assert resp.status == 204, resp.data
    sequence = [s.good(f"ok{i}") for i in range(4)]
    sequence.append(s.good("poison", quantity="current"))
    sequence += [s.good(f"ok{i}") for i in range(4, 9)]
    ing = ingest_all(s, publisher, sequence)
    assert ing.stats.rejected_messages == 1
    assert stored_channels(influx_db) == {f"ok{i}": 1 for i in range(9)}
    (row,) = dead_letters(tmp_path)
    assert row[1] == s.topic
    assert b'"poison"' in row[2]
    assert "refused by storage" in row[3]
    assert "conflict" in row[3]
