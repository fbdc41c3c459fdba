"""The alarms payload and the per-device alarm book."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from daq.alarms import (
    Alarm,
    AlarmBook,
    AlarmKind,
    AlarmPayloadError,
    alarms_topic,
    decode_alarms,
    encode_alarms,
)

SCHEMA = json.loads((Path(__file__).parents[3] / "docs" / "mqtt-alarms.schema.json").read_text())


def test_book_raises_once_keeps_since_and_clears() -> None:
    book = AlarmBook()
    book.raise_(Alarm(AlarmKind.VERIFICATION_OVERDUE, 100, "due 2026-01-01"))
    book.raise_(Alarm(AlarmKind.VERIFICATION_OVERDUE, 200, "due 2026-01-01"))  # same: no event
    book.raise_(Alarm(AlarmKind.STUCK, 150, "frozen", channel="p"))
    events = book.drain()
    assert [(e.action, e.alarm.key) for e in events] == [
        ("raised", "verification_overdue"), ("raised", "stuck:p")]
    assert not book.changed()
    book.raise_(Alarm(AlarmKind.VERIFICATION_OVERDUE, 300, "due 2026-01-01, 3 days over"))
    (ev,) = book.drain()
    assert ev.alarm.since_ns == 100
    assert ev.alarm.reason.endswith("3 days over")
    book.clear_kind(AlarmKind.STUCK, 400, keep=["stuck:q"])
    book.clear("nothing", 400)
    (ev,) = book.drain()
    assert (ev.action, ev.ts_ns, ev.alarm.key) == ("cleared", 400, "stuck:p")
    assert [a.key for a in book.active] == ["verification_overdue"]


def test_payload_round_trip_and_schema() -> None:
    t0 = 1_780_000_000 * 10**9  # a plausible instant (the decoder refuses a clock never set)
    book = AlarmBook()
    book.raise_(Alarm(AlarmKind.DRIFT, t0 + 5, "CUSUM", channel="v",
                      details={"rate_per_day": 1e-4}))
    book.raise_(Alarm(AlarmKind.COMMUNICATION, t0 + 6, "timeout", severity="critical"))
    events = book.drain()
    raw = encode_alarms("ent", "gw", "dev", t0 + 7, book.active, events)
    jsonschema.validate(orjson.loads(raw), SCHEMA)
    state = decode_alarms(raw)
    assert (state.enterprise, state.gateway, state.device, state.ts_ns) == (
        "ent", "gw", "dev", t0 + 7)
    assert {a.key for a in state.alarms} == {"drift:v", "communication"}
    assert [e.alarm for e in state.events] == [e.alarm for e in events]
    cleared = encode_alarms("ent", "gw", "dev", t0 + 8, [])
    jsonschema.validate(orjson.loads(cleared), SCHEMA)
    assert decode_alarms(cleared).alarms == ()
    assert alarms_topic("ent", "gw", "dev") == "daq/ent/gw/dev/alarms"


@pytest.mark.parametrize("payload", [b"", b"{}", b'{"schema":"daq.alarms/1"}', b"[1]",
                                     b'{"schema":"daq.data/1"}'])
def test_garbage_is_a_payload_error(payload: bytes) -> None:
    with pytest.raises(AlarmPayloadError):
        decode_alarms(payload)
