"""Untrusted messages: whatever a field holds, ``decode_batch`` either returns readings that
every storage formatter can write, or raises PayloadError — never anything else."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from daq.alarms import AlarmPayloadError, decode_alarms, encode_alarms
from daq.model import now_ns
from daq.payload import PayloadError, decode_batch
from gateway.storage.lineproto import to_line

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                   max_size=3),
    max_leaves=8,
)
READING_FIELDS = ("channel", "quantity", "unit", "ts", "value", "raw", "quality", "reasons",
                  "u_std", "k", "u_exp", "cert", "verification", "extra")
TOP_FIELDS = ("schema", "enterprise", "gateway", "epoch", "seq", "polls", "events", "extra")


def good() -> dict[str, Any]:
    return {"schema": "daq.data/2", "enterprise": "e", "gateway": "g",
            "epoch": "0123456789abcdef", "seq": 1,
            "polls": [{"device": "d", "readings": [
                {"channel": "c", "quantity": "voltage", "unit": "V", "ts": now_ns(),
                 "value": 1.0, "raw": 1, "quality": "good"}]}]}


@settings(max_examples=400, deadline=None)
@given(field=st.sampled_from(READING_FIELDS), value=JSON)
def test_any_reading_field_value_is_decoded_or_refused(field: str, value: Any) -> None:
    doc = good()
    doc["polls"][0]["readings"][0][field] = value
    try:
        batch = decode_batch(json.dumps(doc).encode())
    except PayloadError:
        return
    for r in batch.readings:
        to_line(r)  # whatever is accepted can be formatted for storage


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(TOP_FIELDS), value=JSON)
def test_any_message_field_value_is_decoded_or_refused(field: str, value: Any) -> None:
    doc = good()
    doc[field] = value
    try:
        batch = decode_batch(json.dumps(doc).encode())
    except PayloadError:
        return
    for r in batch.readings + batch.event_readings():
        to_line(r)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_any_bytes_are_decoded_or_refused(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_batch(data)
    with contextlib.suppress(AlarmPayloadError):
        decode_alarms(data)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(("kind", "since", "reason", "severity", "channel", "details",
                              "action", "ts")), value=JSON)
def test_any_alarm_field_value_is_decoded_or_refused(field: str, value: Any) -> None:
    doc = json.loads(encode_alarms("e", "g", "d", now_ns(), []))
    event = {"action": "raised", "ts": now_ns(), "key": "drift:c", "kind": "drift",
             "since": now_ns(), "reason": "cusum", "severity": "warning", "channel": "c"}
    event[field] = value
    doc["events"] = [event]
    with contextlib.suppress(AlarmPayloadError):
        decode_alarms(json.dumps(doc).encode())
