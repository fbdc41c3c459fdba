"""MQTT payloads: the gateway's signed, sequenced batches (``daq.data/2``), the end-to-end
acknowledgement (``daq.ack/1``) and the retained meta message.

A gateway publishes one **batch** per outbox row on ``daq/{enterprise}/{gateway}/data``: the
polls of its devices that one commit interval gathered, and the alarm events raised or cleared
meanwhile, under one ``(epoch, seq)``: ``epoch`` names the gateway's outbox file, ``seq`` is the
row's id in it, so the sequence survives restarts and the ingest can count gaps and duplicates.
The body is signed (:mod:`daq.signing`); a per-device feed is the batch's ``polls`` filtered by
``device``. Storage confirms what it stored with ``daq.ack/1`` on ``daq-ack/{enterprise}/
{gateway}``; the gateway deletes a row only then.

Field names are the stored ones and survive every backend: ``u_std`` (combined standard
uncertainty), ``k``, ``u_exp`` (expanded, k·u) — never ``u`` and ``U``, which InfluxDB 3's SQL
folds into one name. Several reasons of a reading travel as a list (``reasons``).

The formats are documented with JSON Schemas in ``docs/``. The gateway (encoding) and the
ingest and dashboard (decoding, :func:`check_source`) use this module, so they cannot disagree;
decoding checks every field of untrusted input (:mod:`daq.limits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from daq.alarms import AlarmEvent, event_from_dict
from daq.errors import DaqError
from daq.limits import (
    MAX_ITEMS,
    WireValueError,
    check_id,
    check_name,
    check_number,
    check_text,
    check_ts,
    load_message,
    ts_limit_ns,
)
from daq.model import DeviceMeta, Quality, Reading, Reason, join_reasons, split_reasons
from daq.signing import unsigned_body

DATA_SCHEMA = "daq.data/2"
ACK_SCHEMA = "daq.ack/1"
META_SCHEMA = "daq.meta/1"
_EPOCH_HEX = 16


class PayloadError(DaqError, ValueError):
    """A message on a daq topic that is not a valid daq payload."""


def data_topic(enterprise: str, gateway: str) -> str:
    return f"daq/{enterprise}/{gateway}/data"


def ack_topic(enterprise: str, gateway: str) -> str:
    """Storage's confirmations to one gateway: a root of their own, so that a broker ACL can
    let only the ingest write them and only that gateway read them (under the gateway's own
    ``daq/…`` prefix, the gateway could confirm its own messages)."""
    return f"daq-ack/{enterprise}/{gateway}"


def meta_topic(enterprise: str, gateway: str, device: str) -> str:
    return f"daq/{enterprise}/{gateway}/{device}/meta"


def status_topic(enterprise: str, gateway: str) -> str:
    return f"daq/{enterprise}/{gateway}/status"


def topic_gateway(topic: str, kind: str) -> tuple[str, str] | None:
    """(enterprise, gateway) of a ``daq/{enterprise}/{gateway}/{kind}`` topic, else None."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "daq" and parts[3] == kind:
        return parts[1], parts[2]
    return None


@dataclass(slots=True)
class Batch:
    """A decoded ``daq.data/2`` message."""

    enterprise: str
    gateway: str
    epoch: str
    seq: int
    readings: list[Reading]
    events: list[tuple[str, AlarmEvent]] = field(default_factory=list)  # (device, event)

    def event_readings(self) -> list[Reading]:
        """The alarm events as readings of quantity ``alarm`` (measurement ``alarm``):
        channel = the alarm's key, value 1 when raised and 0 when cleared, reason = the
        alarm's reason, at the event's time."""
        return [Reading(e.ts_ns, self.enterprise, self.gateway, device, e.alarm.key, "alarm",
                        "", 1 if e.action == "raised" else 0, reason=e.alarm.reason)
                for device, e in self.events]


def _item(r: Reading) -> dict[str, Any]:
    item: dict[str, Any] = {
        "channel": r.channel,
        "quantity": r.quantity,
        "unit": r.unit,
        "ts": r.ts_ns,
        "value": r.value,
        "raw": r.raw,
        "quality": r.quality.value,
    }
    if r.reason:
        item["reasons"] = split_reasons(r.reason)
    if r.u is not None and r.k is not None:
        item["u_std"] = r.u
        item["k"] = r.k
        item["u_exp"] = r.u * r.k
    if r.cert is not None:
        item["cert"] = r.cert
    if r.verification is not None:
        item["verification"] = r.verification
    return item


def encode_batch(enterprise: str, gateway: str, epoch: str, seq: int,
                 polls: Sequence[Sequence[Reading]],
                 events: Sequence[tuple[str, AlarmEvent]] = ()) -> bytes:
    """The body of one batch: device polls (each the readings of one device) and alarm
    events, as one line of JSON (to be signed)."""
    if not polls and not events:
        raise ValueError("a batch needs at least one poll or event")
    return orjson.dumps({
        "schema": DATA_SCHEMA, "enterprise": enterprise, "gateway": gateway,
        "epoch": epoch, "seq": seq,
        "polls": [{"device": p[0].device, "readings": [_item(r) for r in p]}
                  for p in polls if p],
        "events": [{"device": d, **e.as_dict()} for d, e in events],
    })


_MESSAGE_KEYS = frozenset(("schema", "enterprise", "gateway", "epoch", "seq", "polls",
                           "events"))
_POLL_KEYS = frozenset(("device", "readings"))
_READING_KEYS = frozenset(("channel", "quantity", "unit", "ts", "value", "raw", "quality",
                           "reasons", "u_std", "k", "u_exp", "cert", "verification"))
_QUALITIES = {q.value: q for q in Quality}
_REASONS = frozenset(r.value for r in Reason)
VERIFICATION_STATES = frozenset(("overdue", "service_life_ended", "due_soon", "never_verified"))


def decode_batch(body: bytes, *, now_ns: int | None = None) -> Batch:
    """Decode a batch body; raise :class:`PayloadError` if it is not one.

    Everything is checked before a reading is made (``docs/mqtt-payload.schema.json``, plus
    limits the schema cannot state: finite numbers, 64-bit integers, timestamps from 2000 to
    a day ahead of ``now_ns``, bounded strings and sizes — :mod:`daq.limits`), so whatever
    this returns can be written by every storage backend.
    """
    try:
        doc = load_message(body, DATA_SCHEMA)
        extra = doc.keys() - _MESSAGE_KEYS
        if extra:
            raise WireValueError(f"unknown fields {sorted(extra)[:5]}")
        ent = check_id(doc.get("enterprise"), "enterprise")
        gw = check_id(doc.get("gateway"), "gateway")
        epoch = _check_epoch(doc.get("epoch"))
        seq = doc.get("seq")
        if type(seq) is not int or not 1 <= seq < 1 << 63:
            raise WireValueError("seq: not a positive 64-bit integer")
        polls, events = doc.get("polls"), doc.get("events", [])
        if type(polls) is not list or type(events) is not list:
            raise WireValueError("polls and events: not lists")
        if not polls and not events:
            raise WireValueError("an empty batch")
        limit = ts_limit_ns(now_ns)
        readings: list[Reading] = []
        for i, poll in enumerate(polls):
            readings.extend(_poll(poll, f"polls[{i}]", ent, gw, limit))
            if len(readings) > MAX_ITEMS:
                raise WireValueError(f"more than {MAX_ITEMS} readings")
        if len(events) > MAX_ITEMS:
            raise WireValueError(f"more than {MAX_ITEMS} events")
        decoded = []
        for i, e in enumerate(events):
            where = f"events[{i}]"
            if type(e) is not dict:
                raise WireValueError(f"{where}: not an object")
            decoded.append((check_id(e.get("device"), f"{where}.device"),
                            event_from_dict(e, where, limit)))
        return Batch(ent, gw, epoch, seq, readings, decoded)
    except WireValueError as exc:
        raise PayloadError(str(exc)) from exc


def decode_batch_on(topic: str, body: bytes, *, now_ns: int | None = None) -> Batch:
    """The batch ``body`` published on ``topic``: every field checked (:func:`decode_batch`),
    and its enterprise and gateway those of the topic (``daq/{enterprise}/{gateway}/data``): a
    gateway allowed to publish only under its own prefix must not speak for another."""
    batch = decode_batch(body, now_ns=now_ns)
    if topic_gateway(topic, "data") != (batch.enterprise, batch.gateway):
        raise PayloadError(f"payload names {batch.enterprise}/{batch.gateway} but was "
                           f"published on {topic[:120]!r}")
    return batch


def decode_unverified(payload: bytes, topic: str, *, now_ns: int | None = None) -> Batch:
    """A batch as a viewer reads it (the dashboard, the terminal table): the signature trailer
    is stripped, not checked — storage checks it (:func:`decode_batch_on` otherwise)."""
    return decode_batch_on(topic, unsigned_body(payload), now_ns=now_ns)


def _check_epoch(value: Any) -> str:
    if (type(value) is not str or len(value) != _EPOCH_HEX
            or value.strip("0123456789abcdef") != ""):
        raise WireValueError(f"epoch: not {_EPOCH_HEX} lower-case hex digits")
    return value


def _poll(poll: Any, where: str, ent: str, gw: str, limit: int) -> list[Reading]:
    if type(poll) is not dict:
        raise WireValueError(f"{where}: not an object")
    extra = poll.keys() - _POLL_KEYS
    if extra:
        raise WireValueError(f"{where}: unknown fields {sorted(extra)[:5]}")
    dev = check_id(poll.get("device"), f"{where}.device")
    items = poll.get("readings")
    if type(items) is not list or not 1 <= len(items) <= MAX_ITEMS:
        raise WireValueError(f"{where}.readings: not a list of 1 to {MAX_ITEMS} readings")
    return [_reading(it, f"{where}.readings[{i}]", ent, gw, dev, limit)
            for i, it in enumerate(items)]


def _reading(it: Any, where: str, ent: str, gw: str, dev: str, ts_limit: int) -> Reading:
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
    u = check_number(it.get("u_std"), f"{where}.u_std", optional=True, minimum=0)
    k = check_number(it.get("k"), f"{where}.k", optional=True, minimum=0)
    if (u is None) != (k is None):
        raise WireValueError(f"{where}: u_std and k come together")
    check_number(it.get("u_exp"), f"{where}.u_exp", optional=True, minimum=0)
    verification = it.get("verification")
    if verification is not None and (type(verification) is not str
                                     or verification not in VERIFICATION_STATES):
        raise WireValueError(f"{where}.verification: unknown state")
    reasons = it.get("reasons")
    reason: str | None = None
    if reasons is not None:
        if type(reasons) is not list or not 1 <= len(reasons) <= 16:
            raise WireValueError(f"{where}.reasons: not a list of 1 to 16 reasons")
        for x in reasons:
            if type(x) is not str or x not in _REASONS:
                raise WireValueError(f"{where}.reasons: not a reason code: {str(x)[:40]!r}")
        reason = join_reasons(reasons)
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
        reason=reason,
        u=u,  # type: ignore[arg-type]
        k=k,  # type: ignore[arg-type]
        cert=check_text(it.get("cert"), f"{where}.cert", optional=True),
        verification=verification,
    )


# -- the end-to-end acknowledgement ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ack:
    """``daq.ack/1``: the ranges of one gateway epoch's sequence that storage holds."""

    enterprise: str
    gateway: str
    epoch: str
    ranges: tuple[tuple[int, int], ...]  # inclusive, ascending, not overlapping


def encode_ack(ack: Ack) -> bytes:
    return orjson.dumps({"schema": ACK_SCHEMA, "enterprise": ack.enterprise,
                         "gateway": ack.gateway, "epoch": ack.epoch,
                         "ranges": [list(r) for r in ack.ranges]})


def decode_ack(payload: bytes) -> Ack:
    try:
        doc = load_message(payload, ACK_SCHEMA)
        ranges = doc.get("ranges")
        if type(ranges) is not list or len(ranges) > MAX_ITEMS:
            raise WireValueError("ranges: not a list")
        out: list[tuple[int, int]] = []
        for r in ranges:
            if (type(r) is not list or len(r) != 2 or type(r[0]) is not int
                    or type(r[1]) is not int or not 1 <= r[0] <= r[1] < 1 << 63):
                raise WireValueError("ranges: not [first, last] pairs of sequence numbers")
            out.append((r[0], r[1]))
        return Ack(check_id(doc.get("enterprise"), "enterprise"),
                   check_id(doc.get("gateway"), "gateway"), _check_epoch(doc.get("epoch")),
                   tuple(out))
    except WireValueError as exc:
        raise PayloadError(str(exc)) from exc


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
    try:
        doc = load_message(payload, META_SCHEMA)
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
