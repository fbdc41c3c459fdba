"""Alarms: the active alarms of a device, published retained, and the transitions between them.

A gateway publishes, retained, on ``daq/{enterprise}/{gateway}/{device}/alarms`` the whole
list of the device's active alarms each time it changes (an empty list clears them), so a
dashboard that connects later sees the current state at once. The same message carries the
``events`` that caused it (raised or cleared), which the ingest writes to storage
(measurement ``alarm``). Schema: ``docs/mqtt-alarms.schema.json``.

An alarm is identified on its device by ``key`` = ``kind`` + ``channel`` (or ``kind`` alone
for a device-wide alarm): raising an alarm that is active keeps its ``since``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from daq.errors import DaqError
from daq.limits import (
    MAX_ITEMS,
    MAX_TEXT,
    WireValueError,
    check_id,
    check_name,
    check_text,
    check_ts,
    load_message,
    ts_limit_ns,
)

ALARMS_SCHEMA = "daq.alarms/1"


class AlarmKind(StrEnum):
    """What an alarm is about. Stable codes: dashboards filter and count on them."""

    COMMUNICATION = "communication"  # the device does not answer or answers garbage
    CALIBRATION_EXPIRED = "calibration_expired"
    CHAIN_BROKEN = "chain_broken"  # traceability chain does not reach a national standard
    VERIFICATION_OVERDUE = "verification_overdue"  # 强制检定 overdue or never done
    VERIFICATION_DUE_SOON = "verification_due_soon"
    SERVICE_LIFE_ENDED = "service_life_ended"
    DRIFT = "drift"  # a drift detector fired on a channel against its check standard
    STUCK = "stuck"
    OUT_OF_RANGE = "out_of_range"
    # the gateway's outbox refuses writes (disk full, read-only, I/O error): polls are held in
    # memory, then lost; raised on every device of the gateway (docs/durability.md)
    OUTBOX_UNWRITABLE = "outbox_unwritable"
    # the outbox reached its configured cap: the oldest rows without legal readings dropped
    OUTBOX_FULL = "outbox_full"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


_SEVERITIES = frozenset(s.value for s in Severity)


class AlarmPayloadError(DaqError, ValueError):
    """A message on an alarms topic that is not a valid alarms payload."""


@dataclass(frozen=True, slots=True)
class Alarm:
    """One active alarm of one device (or one of its channels)."""

    kind: str
    since_ns: int
    reason: str
    severity: str = Severity.WARNING
    channel: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.kind if self.channel is None else f"{self.kind}:{self.channel}"

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "kind": self.kind, "since": self.since_ns,
                             "reason": self.reason, "severity": str(self.severity)}
        if self.channel is not None:
            d["channel"] = self.channel
        if self.details:
            d["details"] = self.details
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alarm:
        return cls(kind=str(d["kind"]), since_ns=int(d["since"]), reason=str(d["reason"]),
                   severity=str(d.get("severity", Severity.WARNING)),
                   channel=d.get("channel"), details=dict(d.get("details") or {}))


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """A transition: ``raised`` or ``cleared`` at ``ts_ns``."""

    action: str  # "raised" | "cleared"
    ts_ns: int
    alarm: Alarm

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "ts": self.ts_ns, **self.alarm.as_dict()}


@dataclass(frozen=True, slots=True)
class AlarmState:
    """The decoded content of an alarms message."""

    enterprise: str
    gateway: str
    device: str
    ts_ns: int
    alarms: tuple[Alarm, ...]
    events: tuple[AlarmEvent, ...] = ()


def alarms_topic(enterprise: str, gateway: str, device: str) -> str:
    return f"daq/{enterprise}/{gateway}/{device}/alarms"


def encode_alarms(enterprise: str, gateway: str, device: str, ts_ns: int,
                  alarms: Iterable[Alarm], events: Sequence[AlarmEvent] = ()) -> bytes:
    return orjson.dumps({
        "schema": ALARMS_SCHEMA, "enterprise": enterprise, "gateway": gateway,
        "device": device, "ts": ts_ns,
        "alarms": [a.as_dict() for a in sorted(alarms, key=lambda a: a.key)],
        "events": [e.as_dict() for e in events],
    })


def decode_alarms(payload: bytes, *, now_ns: int | None = None) -> AlarmState:
    """Decode an alarms message; raise :class:`AlarmPayloadError` if it is not one. Every
    field is checked (types, ids, timestamps, bounded texts and sizes: :mod:`daq.limits`)."""
    try:
        doc = load_message(payload, ALARMS_SCHEMA)
        limit = ts_limit_ns(now_ns)
        alarms, events = doc.get("alarms"), doc.get("events", [])
        if type(alarms) is not list or len(alarms) > MAX_ITEMS:
            raise WireValueError(f"alarms: not a list of at most {MAX_ITEMS}")
        if type(events) is not list or len(events) > MAX_ITEMS:
            raise WireValueError(f"events: not a list of at most {MAX_ITEMS}")
        return AlarmState(
            enterprise=check_id(doc.get("enterprise"), "enterprise"),
            gateway=check_id(doc.get("gateway"), "gateway"),
            device=check_id(doc.get("device"), "device"),
            ts_ns=check_ts(doc.get("ts"), "ts", limit),
            alarms=tuple(_alarm(a, f"alarms[{i}]", limit) for i, a in enumerate(alarms)),
            events=tuple(event_from_dict(e, f"events[{i}]", limit) for i, e in enumerate(events)),
        )
    except WireValueError as exc:
        raise AlarmPayloadError(str(exc)) from exc


def _alarm(d: Any, where: str, limit: int) -> Alarm:
    if type(d) is not dict:
        raise WireValueError(f"{where}: not an object")
    severity = d.get("severity", Severity.WARNING)
    if type(severity) is not str or severity not in _SEVERITIES:
        raise WireValueError(f"{where}.severity: not info, warning or critical")
    channel = d.get("channel")
    details = d.get("details") or {}
    if type(details) is not dict or not all(
            type(k) is str and len(k) <= MAX_TEXT for k in details):
        raise WireValueError(f"{where}.details: not an object")
    return Alarm(
        kind=check_name(d.get("kind"), f"{where}.kind"),
        since_ns=check_ts(d.get("since"), f"{where}.since", limit),
        reason=check_text(d.get("reason"), f"{where}.reason") or "",
        severity=str(severity),
        channel=None if channel is None else check_name(channel, f"{where}.channel"),
        details=dict(details),
    )


def event_from_dict(e: Any, where: str, limit: int) -> AlarmEvent:
    """An alarm event from its dict form (:meth:`AlarmEvent.as_dict`), every field checked;
    WireValueError naming ``where`` otherwise. ``limit``: the latest timestamp accepted."""
    if type(e) is not dict:
        raise WireValueError(f"{where}: not an object")
    action = e.get("action")
    if type(action) is not str or action not in ("raised", "cleared"):
        raise WireValueError(f"{where}.action: not raised or cleared")
    return AlarmEvent(action=action, ts_ns=check_ts(e.get("ts"), f"{where}.ts", limit),
                      alarm=_alarm(e, where, limit))


class AlarmBook:
    """The active alarms of one device, with the transitions since the last :meth:`drain`.

    Pure state: the gateway raises and clears; when :meth:`changed` it publishes
    :func:`encode_alarms` of :attr:`active` with the drained events.
    """

    def __init__(self) -> None:
        self._active: dict[str, Alarm] = {}
        self._events: list[AlarmEvent] = []

    @property
    def active(self) -> list[Alarm]:
        return list(self._active.values())

    def changed(self) -> bool:
        return bool(self._events)

    def raise_(self, alarm: Alarm) -> None:
        """Raise ``alarm``; if an alarm with its key is active, update its reason and
        details but keep its ``since`` (no new event unless the reason changed)."""
        old = self._active.get(alarm.key)
        if old is None:
            self._active[alarm.key] = alarm
            self._events.append(AlarmEvent("raised", alarm.since_ns, alarm))
        elif (old.reason, old.severity, old.details) != (alarm.reason, alarm.severity,
                                                          alarm.details):
            kept = Alarm(alarm.kind, old.since_ns, alarm.reason, alarm.severity,
                         alarm.channel, alarm.details)
            self._active[alarm.key] = kept
            self._events.append(AlarmEvent("raised", alarm.since_ns, kept))

    def clear(self, key: str, ts_ns: int) -> None:
        old = self._active.pop(key, None)
        if old is not None:
            self._events.append(AlarmEvent("cleared", ts_ns, old))

    def clear_kind(self, kind: str, ts_ns: int, keep: Iterable[str] = ()) -> None:
        """Clear every active alarm of ``kind`` whose key is not in ``keep``."""
        keep_set = set(keep)
        for key in [k for k, a in self._active.items() if a.kind == kind and k not in keep_set]:
            self.clear(key, ts_ns)

    def reconcile(self, kinds: Iterable[str], desired: Iterable[Alarm], ts_ns: int) -> None:
        """Make the active alarms of ``kinds`` exactly ``desired``: raise the new ones, keep
        the ``since`` of those still active, clear the rest."""
        want = list(desired)
        for alarm in want:
            self.raise_(alarm)
        keep = {a.key for a in want}
        managed = set(kinds)
        for key in [k for k, a in self._active.items() if a.kind in managed and k not in keep]:
            self.clear(key, ts_ns)

    def drain(self) -> list[AlarmEvent]:
        events, self._events = self._events, []
        return events
