"""The MQTT payload: encoded messages match the documented JSON Schema and round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from daq.model import ChannelMeta, DeviceMeta, Quality, Reading
from daq.payload import PayloadError, decode_data, encode_data, encode_meta

DOCS = Path(__file__).resolve().parents[3] / "docs"


def readings() -> list[Reading]:
    base = {"enterprise": "e1", "gateway": "gw-1", "device": "m1"}
    return [
        Reading(1_700_000_000_123_456_789, channel="voltage_l1", quantity="voltage", unit="V",
                value=230.10000610351562, raw=230.10000610351562, **base),
        Reading(1_700_000_000_123_456_999, channel="energy_import", quantity="active_energy",
                unit="kWh", value=12345.5, raw=123455, u=0.02, k=2.0, **base),
        Reading(1_700_000_000_223_456_789, channel="current_l1", quantity="current", unit="A",
                value=None, raw=None, quality=Quality.BAD, reason="timeout", **base),
    ]


def test_data_message_matches_schema_and_round_trips() -> None:
    schema = json.loads((DOCS / "mqtt-payload.schema.json").read_text())
    payload = encode_data(readings(), seq=7)
    jsonschema.validate(json.loads(payload), schema)
    assert decode_data(payload) == readings()


def test_meta_message_matches_schema() -> None:
    schema = json.loads((DOCS / "mqtt-meta.schema.json").read_text())
    meta = DeviceMeta("e1", "gw-1", "m1", "sdm630", "Eastron", "SDM630", 1000,
                      (ChannelMeta("voltage_l1", "voltage", "V", "L1-N", 0, 300, 0.1),))
    jsonschema.validate(json.loads(encode_meta(meta)), schema)


@pytest.mark.parametrize("payload", [
    b"", b"not json", b"[]", b'{"schema": "daq.data/1"}', b'{"schema": "other"}',
    b'{"schema": "daq.data/1", "enterprise": "e", "gateway": "g", "device": "d", "seq": 1,'
    b' "readings": [{"channel": "c"}]}',
])
def test_garbage_is_a_payload_error(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_data(payload)


def test_a_reading_without_value_must_be_bad() -> None:
    with pytest.raises(ValueError):
        Reading(1, "e", "g", "d", "c", "q", "u", None)
