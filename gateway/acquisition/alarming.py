"""The gateway's alarms: what holds for each device after each poll, as retained state.

After every poll of a device the supervisor works out which alarms hold —

* ``communication``: the device is degraded (``failures_before_backoff`` failed polls in a
  row), with the failure's reason code;
* ``stuck`` (device-wide) and ``out_of_range`` (per channel): raised by the poll whose
  readings carry that flag, cleared after ``clear_after`` polls in a row without it (so a
  value hovering at a limit does not raise and clear on every poll);
* the calibration stage's alarms (``calibration_expired``, ``chain_broken``, and the
  mandatory-verification ones) —

and reconciles the device's :class:`~daq.alarms.AlarmBook` with them. When anything changed
(or the device's state was never published by this process) it returns an
:class:`AlarmUpdate`: the retained ``…/alarms`` message to publish, and the transitions as
events for storage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

from daq.alarms import (
    Alarm,
    AlarmBook,
    AlarmEvent,
    AlarmKind,
    Severity,
    alarms_topic,
    encode_alarms,
)
from daq.model import Reading, Reason, split_reasons
from gateway.acquisition.poller import DeviceState

log = logging.getLogger(__name__)

__all__ = ["AlarmSource", "AlarmSupervisor", "AlarmUpdate"]

_READING_FLAGS: dict[str, AlarmKind] = {Reason.STUCK: AlarmKind.STUCK,
                                        Reason.OUT_OF_RANGE: AlarmKind.OUT_OF_RANGE}


class AlarmUpdate(NamedTuple):
    """A device's changed alarm state: the retained message to publish, and the events
    (raised, cleared) that the gateway's next batch carries to storage."""

    topic: str
    payload: bytes
    device: str
    events: list[AlarmEvent]


class AlarmSource(Protocol):
    """Something that knows, per device, which alarms of its kinds hold now."""

    kinds: tuple[str, ...]

    def alarms(self, device: str, now_ns: int) -> list[Alarm]: ...


class AlarmSupervisor:
    def __init__(self, enterprise: str, gateway: str, devices: Iterable[str],
                 sources: Sequence[AlarmSource] = (), *, clear_after: int = 3) -> None:
        self.enterprise, self.gateway = enterprise, gateway
        self.books = {d: AlarmBook() for d in devices}
        self.sources = list(sources)
        self.clear_after = clear_after
        self._clean_polls: dict[tuple[str, str], int] = {}  # (device, key) -> polls without
        self._unpublished = set(self.books)  # state goes out once at start: clears stale ones
        self._kinds: frozenset[str] = frozenset(
            {AlarmKind.COMMUNICATION, *_READING_FLAGS.values()}.union(
                *(source.kinds for source in self.sources)))  # the kinds reconciled here

    def observe(self, device: str, state: DeviceState, readings: Sequence[Reading],
                now_ns: int) -> AlarmUpdate | None:
        """Reconcile ``device``'s alarms after a poll; the update if its state changed."""
        desired: list[Alarm] = []
        if state.degraded:
            desired.append(Alarm(AlarmKind.COMMUNICATION, now_ns,
                                 f"{state.last_reason}: {state.last_error}", Severity.CRITICAL,
                                 details={"reason": state.last_reason}))
        desired += self._from_readings(device, readings, now_ns)
        for source in self.sources:
            desired += source.alarms(device, now_ns)
        book = self.books[device]
        book.reconcile(self._kinds, desired, now_ns)
        if not book.changed() and device not in self._unpublished:
            return None
        return self._update(device, book, now_ns)

    def gateway_wide(self, kinds: Iterable[str], desired: Sequence[Alarm], now_ns: int
                     ) -> list[AlarmUpdate]:
        """Make the active alarms of ``kinds`` exactly ``desired`` on every device (an alarm of
        the gateway as a whole, e.g. its outbox); the updates of the devices whose state
        changed."""
        out: list[AlarmUpdate] = []
        for device, book in self.books.items():
            book.reconcile(kinds, desired, now_ns)
            if book.changed():
                out.append(self._update(device, book, now_ns))
        return out

    def _update(self, device: str, book: AlarmBook, now_ns: int) -> AlarmUpdate:
        """The retained message of ``device``'s state, with the events drained (logged)."""
        self._unpublished.discard(device)
        events = book.drain()
        for e in events:
            log.warning("%s: alarm %s %s: %s", device, e.alarm.key, e.action, e.alarm.reason)
        return AlarmUpdate(alarms_topic(self.enterprise, self.gateway, device),
                           encode_alarms(self.enterprise, self.gateway, device, now_ns,
                                         book.active, events), device, events)

    def _from_readings(self, device: str, readings: Sequence[Reading],
                       now_ns: int) -> list[Alarm]:
        """Stuck / out-of-range alarms: raised by a flagged poll, held until ``clear_after``
        clean polls."""
        flagged: dict[str, Alarm] = {}
        for r in readings:
            for reason in split_reasons(r.reason):
                kind = _READING_FLAGS.get(reason)
                if kind is None:
                    continue
                channel = None if kind is AlarmKind.STUCK else r.channel
                alarm = Alarm(kind, now_ns,
                              "every value identical for stuck_after polls" if channel is None
                              else f"{r.channel} outside the channel's range",
                              Severity.WARNING, channel)
                flagged.setdefault(alarm.key, alarm)
        held: list[Alarm] = list(flagged.values())
        book = self.books[device]
        for active in book.active:
            if active.kind not in _READING_FLAGS.values() or active.key in flagged:
                self._clean_polls.pop((device, active.key), None)
                continue
            n = self._clean_polls.get((device, active.key), 0) + 1
            if n < self.clear_after:
                self._clean_polls[(device, active.key)] = n
                held.append(active)
            else:
                self._clean_polls.pop((device, active.key), None)
        return held
