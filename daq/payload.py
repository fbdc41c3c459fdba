"""MQTT payloads: one JSON message per device per poll, and the retained meta message.

The format is documented with JSON Schemas in ``docs/mqtt-payload.schema.json`` and
``docs/mqtt-meta.schema.json``. The gateway (encoding), the ingest and the dashboard
(decoding, :func:`check_source`) use this module, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from daq.errors import DaqError
from daq.limits import (
    MAX_ITEMS,
    MAX_PAYLOAD_BYTES,
    WireValueError,
    check_id,
    check_name,
    check_number,
    check_text,
    check_ts,
    ts_limit_ns,
)
from daq.model import DeviceMeta, Quality, Reading

DATA_SCHEMA = "daq.data/1"
META_SCHEMA = "daq.meta/1"


class PayloadError(DaqError, ValueError):
    """A message on a daq topic that is not a valid daq payload."""


def data_topic(enterprise: str, gateway: str, device: str) -> str:
    return f"daq/{enterprise}/{gateway}/{device}/data"


def meta_topic(enterprise: str, gateway: str, device: str) -> str:
    return f"daq/{enterprise}/{gateway}/{device}/meta"


def status_topic(enterprise: str, gateway: str) -> str:
    return f"daq/{enterprise}/{gateway}/status"


def encode_data(readings: Sequence[Reading], seq: int) -> bytes:
    """Encode the readings of one device poll (all from the same device) as one message."""
    if not readings:
        raise ValueError("a data message needs at least one reading")
    first = readings[0]
    items: list[dict[str, Any]] = []
    for r in readings:
        item: dict[str, Any] = {
            "channel": r.channel,
            "quantity": r.quantity,
            "unit": r.unit,
            "ts": r.ts_ns,
            "value": r.value,
            "raw": r.raw,
            "quality": r.quality.value,
        }
        if r.reason is not None:
            item["reason"] = r.reason
        if r.u is not None and r.k is not None:
            item["u"] = r.u
            item["k"] = r.k
            item["U"] = r.u * r.k
        if r.cert is not None:
            item["cert"] = r.cert
        if r.verification is not None:
            item["verification"] = r.verification
        items.append(item)
    return orjson.dumps(
        {
            "schema": DATA_SCHEMA,
            "enterprise": first.enterprise,
            "gateway": first.gateway,
            "device": first.device,
            "seq": seq,
            "readings": items,
        }
    )


_MESSAGE_KEYS = frozenset(("schema", "enterprise", "gateway", "device", "seq", "readings"))
_READING_KEYS = frozenset(("channel", "quantity", "unit", "ts", "value", "raw", "quality",
                           "reason", "u", "k", "U", "cert", "verification"))
_QUALITIES = {q.value: q for q in Quality}
VERIFICATION_STATES = frozenset(("overdue", "service_life_ended", "due_soon", "never_verified"))


def decode_data(payload: bytes, *, now_ns: int | None = None) -> list[Reading]:
    """Decode a data message into readings; raise :class:`PayloadError` if it is not one.

    Everything is checked before a reading is made (``docs/mqtt-payload.schema.json``, plus
    limits the schema cannot state: finite numbers, 64-bit integers, timestamps from 2000 to
    a day ahead of ``now_ns``, bounded strings and sizes — :mod:`daq.limits`), so whatever
    this returns can be written by every storage backend.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"message of {len(payload)} bytes (at most {MAX_PAYLOAD_BYTES})")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"not JSON: {exc}") from exc
    if type(doc) is not dict:
        raise PayloadError("not a JSON object")
    if doc.get("schema") != DATA_SCHEMA:
        raise PayloadError(f"unknown schema {str(doc.get('schema'))[:40]!r}")
    try:
        extra = doc.keys() - _MESSAGE_KEYS
        if extra:
            raise WireValueError(f"unknown fields {sorted(extra)[:5]}")
        ent = check_id(doc.get("enterprise"), "enterprise")
        gw = check_id(doc.get("gateway"), "gateway")
        dev = check_id(doc.get("device"), "device")
        seq = doc.get("seq")
        if type(seq) is not int or not 1 <= seq < 1 << 63:
            raise WireValueError("seq: not a positive 64-bit integer")
        items = doc.get("readings")
        if type(items) is not list or not 1 <= len(items) <= MAX_ITEMS:
            raise WireValueError(f"readings: not a list of 1 to {MAX_ITEMS} readings")
        limit = ts_limit_ns(now_ns)
        return [_reading(it, i, ent, gw, dev, limit) for i, it in enumerate(items)]
    except WireValueError as exc:
        raise PayloadError(str(exc)) from exc


def _reading(it: Any, i: int, ent: str, gw: str, dev: str, ts_limit: int) -> Reading:
    where = f"readings[{i}]"
    if type(it) is not dict:
        raise WireValueError(f"{where}: not an object")
    extra = it.keys() - _READING_KEYS
    if extra:
        raise WireValueError(f"{where}: unknown fields {sorted(extra)[:5]}")
    q = it.get("quality")
    quality = _QUALITIES.get(q) if type(q) is str else None
    if quality is None:
        raise WireValueError(f"{where}.quality: not good, uncertain or bad")
    value = check_number(it.get("value", ...), f"{where}.value", optional=True, text=True)
    if value is None and quality is not Quality.BAD:
        raise WireValueError(f"{where}.value: null in a reading that is not bad")
    u = check_number(it.get("u"), f"{where}.u", optional=True, minimum=0)
    k = check_number(it.get("k"), f"{where}.k", optional=True, minimum=0)
    if (u is None) != (k is None):
        raise WireValueError(f"{where}: u and k come together")
    verification = it.get("verification")
    if verification is not None and (type(verification) is not str
                                     or verification not in VERIFICATION_STATES):
        raise WireValueError(f"{where}.verification: unknown state")
    return Reading(
        ts_ns=check_ts(it.get("ts"), f"{where}.ts", ts_limit),
        enterprise=ent,
        gateway=gw,
        device=dev,
        channel=check_name(it.get("channel"), f"{where}.channel"),
        quantity=check_name(it.get("quantity"), f"{where}.quantity"),
        unit=check_text(it.get("unit"), f"{where}.unit") or "",
        value=value,
        raw=check_number(it.get("raw"), f"{where}.raw", optional=True, text=True),
        quality=quality,
        reason=check_text(it.get("reason"), f"{where}.reason", optional=True),
        u=u,  # type: ignore[arg-type]
        k=k,  # type: ignore[arg-type]
        cert=check_text(it.get("cert"), f"{where}.cert", optional=True),
        verification=verification,
    )


def encode_meta(meta: DeviceMeta) -> bytes:
    return orjson.dumps({"schema": META_SCHEMA, **meta.as_dict()})


def decode_meta(payload: bytes) -> dict[str, Any]:
    """Decode a retained meta message (``docs/mqtt-meta.schema.json``); raise
    :class:`PayloadError` if it is not one.

    Every field a reader shows is checked as the data message's are (:mod:`daq.limits`): ids,
    names, bounded printable texts, a positive ``interval_ms``, ranges and resolutions as
    finite numbers or null. What is returned is a new document of the schema's fields only:
    a field this version does not know is left out (a newer gateway's meta still shows), not
    passed on unchecked.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"message of {len(payload)} bytes (at most {MAX_PAYLOAD_BYTES})")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"not JSON: {exc}") from exc
    if type(doc) is not dict:
        raise PayloadError("not a JSON object")
    if doc.get("schema") != META_SCHEMA:
        raise PayloadError(f"unknown schema {str(doc.get('schema'))[:40]!r}")
    try:
        out: dict[str, Any] = {"schema": META_SCHEMA}
        for name in ("enterprise", "gateway", "device"):
            out[name] = check_id(doc.get(name), name)
        for name in ("profile", "maker", "model"):
            out[name] = check_text(doc.get(name), name)
        interval = doc.get("interval_ms")
        if type(interval) is not int or not 1 <= interval < 1 << 63:
            raise WireValueError("interval_ms: not a positive 64-bit integer")
        out["interval_ms"] = interval
        channels = doc.get("channels")
        if type(channels) is not list or len(channels) > MAX_ITEMS:
            raise WireValueError(f"channels: not a list of at most {MAX_ITEMS}")
        out["channels"] = [_channel_meta(c, f"channels[{i}]") for i, c in enumerate(channels)]
        if doc.get("instrument") is not None:
            out["instrument"] = check_text(doc["instrument"], "instrument")
        return out
    except WireValueError as exc:
        raise PayloadError(str(exc)) from exc


def _channel_meta(c: Any, where: str) -> dict[str, Any]:
    if type(c) is not dict:
        raise WireValueError(f"{where}: not an object")
    rng = c.get("range", [None, None])
    if type(rng) is not list or len(rng) != 2:
        raise WireValueError(f"{where}.range: not a list [min, max]")
    out: dict[str, Any] = {
        "id": check_name(c.get("id"), f"{where}.id"),
        "quantity": check_name(c.get("quantity"), f"{where}.quantity"),
        "unit": check_text(c.get("unit"), f"{where}.unit"),
        "description": check_text(c.get("description", ""), f"{where}.description"),
        "range": [check_number(rng[0], f"{where}.range[0]", optional=True),
                  check_number(rng[1], f"{where}.range[1]", optional=True)],
        "resolution": check_number(c.get("resolution"), f"{where}.resolution", optional=True,
                                   minimum=0),
    }
    if c.get("instrument") is not None:
        out["instrument"] = check_text(c["instrument"], f"{where}.instrument")
    return out


def check_source(topic: str, enterprise: str, gateway: str, device: str) -> None:
    """Raise :class:`PayloadError` unless ``topic`` is ``daq/{enterprise}/{gateway}/{device}/…``
    for the identity the payload names: a client allowed to publish only under its own
    prefix must not speak for another device (the ingest and the dashboard both refuse it)."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "daq" or parts[1:4] != [enterprise, gateway, device]:
        raise PayloadError(f"payload names {enterprise}/{gateway}/{device} but was published "
                           f"on {topic[:120]!r}")
