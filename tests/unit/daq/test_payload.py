"""The MQTT payloads: encoded messages match the documented JSON Schemas and round-trip;
signed batches verify only with the signing key, and only unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from daq.alarms import Alarm, AlarmEvent
from daq.model import ChannelMeta, DeviceMeta, Quality, Reading
from daq.payload import (
    Ack,
    PayloadError,
    check_source,
    decode_ack,
    decode_batch,
    decode_meta,
    decode_unverified,
    encode_ack,
    encode_batch,
    encode_meta,
)
from daq.signing import SignatureError, Signer, new_private_key, verify_signed

EPOCH = "0123456789abcdef"

DOCS = Path(__file__).resolve().parents[3] / "docs"


def readings() -> list[Reading]:
    base = {"enterprise": "e1", "gateway": "gw-1", "device": "m1"}
    return [
        Reading(1_700_000_000_123_456_789, channel="voltage_l1", quantity="voltage", unit="V",
                value=230.10000610351562, raw=230.10000610351562, **base),
        Reading(1_700_000_000_123_456_999, channel="energy_import", quantity="active_energy",
                unit="kWh", value=12345.5, raw=123455, u=0.02, k=2.0, **base),
        Reading(1_700_000_000_223_456_789, channel="current_l1", quantity="current", unit="A",
                value=None, raw=None, quality=Quality.BAD, reason="timeout,stuck", **base),
    ]


def other_device() -> list[Reading]:
    return [Reading(1_700_000_001_000_000_000, "e1", "gw-1", "m2", "p", "active_power", "W",
                    1500.25, 1500.25)]


def event() -> tuple[str, AlarmEvent]:
    alarm = Alarm("stuck", 1_700_000_000_000_000_000, "frozen", channel="voltage_l1")
    return "m1", AlarmEvent("raised", 1_700_000_000_500_000_000, alarm)


def test_batch_matches_schema_and_round_trips() -> None:
    schema = json.loads((DOCS / "mqtt-payload.schema.json").read_text())
    body = encode_batch("e1", "gw-1", EPOCH, 7, [readings(), other_device()], [event()])
    jsonschema.validate(json.loads(body), schema)
    batch = decode_batch(body)
    assert (batch.enterprise, batch.gateway, batch.epoch, batch.seq) == ("e1", "gw-1", EPOCH, 7)
    assert batch.readings == readings() + other_device()
    assert batch.events == [event()]
    assert sorted({r.device for r in batch.readings}) == ["m1", "m2"]
    (alarm,) = batch.event_readings()
    assert (alarm.device, alarm.channel, alarm.quantity, alarm.value) == (
        "m1", "stuck:voltage_l1", "alarm", 1)
    doc = json.loads(body)
    item = doc["polls"][0]["readings"][1]
    assert (item["u_std"], item["k"], item["u_exp"]) == (0.02, 2.0, 0.04)
    assert "u" not in item
    assert "U" not in item  # InfluxDB 3's SQL would fold them into one name
    assert doc["polls"][0]["readings"][2]["reasons"] == ["timeout", "stuck"]


def test_a_signed_batch_verifies_only_with_its_key_and_unchanged() -> None:
    key = new_private_key()
    signed = Signer(key).sign(encode_batch("e1", "gw-1", EPOCH, 1, [readings()]))
    body, kid = verify_signed(signed, lambda k: key.public_key())
    assert decode_batch(body).readings == readings()
    assert kid == Signer(key).key_id
    with pytest.raises(SignatureError):
        verify_signed(signed, lambda k: new_private_key().public_key())
    with pytest.raises(SignatureError):
        verify_signed(signed.replace(b"230.1", b"231.1"), lambda k: key.public_key())
    with pytest.raises(SignatureError):
        verify_signed(signed, lambda k: None)  # not pinned


def test_a_viewer_reads_a_batch_without_the_key_but_checks_the_topic() -> None:
    signed = Signer(new_private_key()).sign(encode_batch("e1", "gw-1", EPOCH, 1, [readings()]))
    assert decode_unverified(signed, "daq/e1/gw-1/data").readings == readings()
    with pytest.raises(PayloadError):
        decode_unverified(signed, "daq/e1/gw-2/data")


def test_ack_matches_schema_and_round_trips() -> None:
    schema = json.loads((DOCS / "mqtt-ack.schema.json").read_text())
    ack = Ack("e1", "gw-1", EPOCH, ((1, 5), (7, 7)))
    jsonschema.validate(json.loads(encode_ack(ack)), schema)
    assert decode_ack(encode_ack(ack)) == ack
    for bad in (b"{}", b'{"schema": "daq.ack/1", "ranges": [[5, 1]]}', b"[]"):
        with pytest.raises(PayloadError):
            decode_ack(bad)


def test_meta_message_matches_schema() -> None:
    schema = json.loads((DOCS / "mqtt-meta.schema.json").read_text())
    meta = DeviceMeta("e1", "gw-1", "m1", "sdm630", "Eastron", "SDM630", 1000,
                      (ChannelMeta("voltage_l1", "voltage", "V", "L1-N", 0, 300, 0.1),))
    jsonschema.validate(json.loads(encode_meta(meta)), schema)


@pytest.mark.parametrize("payload", [
    b"", b"not json", b"[]", b'{"schema": "daq.data/2"}', b'{"schema": "other"}',
    b'{"schema": "daq.data/2", "enterprise": "e", "gateway": "g", "epoch": "0123456789abcdef",'
    b' "seq": 1, "polls": [{"device": "d", "readings": [{"channel": "c"}]}]}',
])
def test_garbage_is_a_payload_error(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_batch(payload)


def test_a_reading_without_value_must_be_bad() -> None:
    with pytest.raises(ValueError):
        Reading(1, "e", "g", "d", "c", "q", "u", None)


def a_meta() -> DeviceMeta:
    return DeviceMeta("e1", "gw-1", "m1", "sdm630", "Eastron", "SDM630", 1000,
                      (ChannelMeta("voltage_l1", "voltage", "V", "L1-N", 0, 300, 0.1,
                                   instrument="vt-1"),), instrument="em-1")


def test_meta_message_round_trips() -> None:
    meta = a_meta()
    assert decode_meta(encode_meta(meta)) == {"schema": "daq.meta/1", **meta.as_dict()}


def test_meta_fields_the_schema_does_not_know_are_left_out() -> None:
    doc = json.loads(encode_meta(a_meta()))
    doc["colour"] = "<b>red</b>"
    doc["channels"][0]["colour"] = "blue"
    out = decode_meta(json.dumps(doc).encode())
    assert "colour" not in out
    assert "colour" not in out["channels"][0]


MARKUP = '"><img src=x onerror="alert(1)">'


@pytest.mark.parametrize(("path", "value"), [
    (("schema",), "daq.meta/0"),
    (("device",), MARKUP),  # an id: what may stand in a topic level
    (("enterprise",), 7),
    (("maker",), None),
    (("model",), "x" * 257),  # bounded
    (("profile",), "line\nbreak"),  # printable only
    (("interval_ms",), 0),
    (("interval_ms",), True),
    (("channels",), {"id": "v"}),
    (("channels", 0), "v"),
    (("channels", 0, "id"), MARKUP),  # a name
    (("channels", 0, "quantity"), "active power"),
    (("channels", 0, "unit"), 1),
    (("channels", 0, "description"), "d" * 300),
    (("channels", 0, "range"), [0, "300"]),
    (("channels", 0, "range"), [0]),
    (("channels", 0, "range"), [0, [300]]),
    (("channels", 0, "resolution"), -0.1),
    (("channels", 0, "instrument"), ["vt-1"]),
    (("instrument",), {"id": "em-1"}),
])
def test_a_meta_field_of_the_wrong_type_or_size_is_refused(path: tuple[str | int, ...],
                                                          value: object) -> None:
    doc = json.loads(encode_meta(a_meta()))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(PayloadError):
        decode_meta(json.dumps(doc).encode())


def test_markup_in_a_free_text_of_meta_is_data_not_an_error() -> None:
    doc = json.loads(encode_meta(a_meta()))
    doc["maker"] = MARKUP
    doc["channels"][0]["description"] = MARKUP
    out = decode_meta(json.dumps(doc).encode())
    assert out["maker"] == MARKUP  # the page escapes it; refusing it would hide a device
    assert out["channels"][0]["description"] == MARKUP


@pytest.mark.parametrize("payload", [b"", b"[1]", b"1e999", b'{"schema": "daq.meta/1"}'])
def test_garbage_meta_is_a_payload_error(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_meta(payload)


def test_the_payload_must_name_its_topics_device() -> None:
    check_source("daq/e1/gw-1/m1/data", "e1", "gw-1", "m1")
    for topic in ("daq/e1/gw-1/m2/data", "daq/e1/gw-2/m1/meta", "daq/e2/gw-1/m1/alarms",
                  "other/e1/gw-1/m1/data", "daq/e1/gw-1/m1", "daq/e1/gw-1/m1/data/x"):
        with pytest.raises(PayloadError, match="payload names e1/gw-1/m1"):
            check_source(topic, "e1", "gw-1", "m1")
