"""What the gateway does when its outbox cannot take what it acquires.

* **The disk refuses a write** (full, read-only, I/O error: :class:`OutboxWriteError`): the
  batches of the commit interval are held in memory, in order, and written first at the next
  try (at most once every ``retry_s``). At most ``hold_readings`` readings are held; beyond,
  the oldest batches are lost — counted (``lost_readings``, ``lost_legal``) and logged, never
  silently. While the outbox refuses writes :meth:`OutboxGuard.alarms` holds an
  ``outbox_unwritable`` alarm; the first write that succeeds clears it and logs the recovery.
* **The cap** (``outbox_max_mb`` after every commit, ``outbox_max_age_h`` every ``check_s``):
  beyond it the oldest rows holding no legal reading are dropped (an outage's oldest backlog
  goes, the newest stays; docs/durability.md says why), counted and logged, and ``outbox_full`` is
  raised until the backlog is back under half the cap. Rows holding legal readings are never
  dropped: if only they are left the cap is exceeded, said once in the log and in the alarm.
* **Space after an outage**: when more than half the file is free pages (and at least
  ``shrink_min_bytes``) the pages go back to the file system and the WAL is truncated.

Pure bookkeeping around an :class:`~gateway.outbox.Outbox` and a ``write`` callable; the
service turns :meth:`OutboxGuard.alarms` into retained alarm state.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from daq.alarms import Alarm, AlarmEvent, AlarmKind, Severity
from daq.model import Reading
from gateway.outbox import Outbox, OutboxError, OutboxWriteError

log = logging.getLogger(__name__)

__all__ = ["OUTBOX_KINDS", "Chunk", "OutboxGuard"]

OUTBOX_KINDS = (AlarmKind.OUTBOX_UNWRITABLE, AlarmKind.OUTBOX_FULL)


@dataclass(slots=True)
class Chunk:
    """One outbox row to be: polls and alarm events, and whether it holds legal readings."""

    polls: list[list[Reading]]
    events: list[tuple[str, AlarmEvent]]
    legal: bool

    @property
    def readings(self) -> int:
        return sum(len(p) for p in self.polls)


class OutboxGuard:
    def __init__(self, outbox: Outbox, write: Callable[[Chunk], None], *,
                 hold_readings: int = 200_000, max_bytes: int | None = None,
                 max_age_s: float | None = None, retry_s: float = 1.0, check_s: float = 1.0,
                 shrink_min_bytes: int = 1 << 20,
                 legal_devices: frozenset[str] = frozenset()) -> None:
        self.legal_devices = legal_devices
        self.outbox, self._write = outbox, write
        self.hold_readings, self.max_bytes, self.max_age_s = hold_readings, max_bytes, max_age_s
        self.retry_s, self.check_s, self.shrink_min_bytes = retry_s, check_s, shrink_min_bytes
        self.held: collections.deque[Chunk] = collections.deque()
        self.held_readings = 0
        self.unwritable: str | None = None  # why the outbox refuses writes, while it does
        self.unwritable_since_ns = 0
        self.lost_readings = 0  # held in memory, then given up (the bound, or a stop)
        self.lost_legal = 0  # of them, legal readings
        self.dropped_rows = 0  # dropped by the cap
        self.dropped_readings = 0
        self.over_cap_legal = False  # over the cap with nothing left to drop but legal rows
        self._full_since_ns = 0  # outbox_full held since (0: not raised)
        self._retry_at = 0.0
        self._check_at = 0.0
        self._lost_logged_at = 0.0
        self._upkeep_failing = False
        self._drop_logged_at = 0.0

    # writes --------------------------------------------------------------------------------
    def commit(self, chunks: Sequence[Chunk]) -> int:
        """Write ``chunks`` after whatever is held; hold what the outbox refuses. Returns
        the readings committed now."""
        for chunk in chunks:
            if chunk.polls or chunk.events:
                self.held.append(chunk)
                self.held_readings += chunk.readings
        now = time.monotonic()
        committed = 0
        if self.held and (self.unwritable is None or now >= self._retry_at):
            committed = self._write_held(now)
        self._bound(now)
        if self.unwritable is None:
            if now >= self._check_at:  # the age cap and the shrink: once every check_s
                self._check_at = now + self.check_s
                self.maintain(age=True)
            elif committed and self.max_bytes is not None:
                self.maintain(age=False)  # the byte cap at every commit: three PRAGMAs
        return committed

    def _write_held(self, now: float) -> int:
        committed = 0
        if self.unwritable is not None:  # give the WAL's space back before writing again
            with contextlib.suppress(OutboxWriteError):
                self.outbox.checkpoint()
        while self.held:
            chunk = self.held[0]
            try:
                self._write(chunk)
            except OutboxWriteError as exc:
                if self.unwritable is None:
                    self.unwritable_since_ns = time.time_ns()
                    log.error("gateway: %s; holding polls in memory (at most %d readings) and "
                              "trying again every %.0f s", exc, self.hold_readings, self.retry_s)
                self.unwritable = str(exc)
                self._retry_at = now + self.retry_s
                return committed
            self.held.popleft()
            self.held_readings -= chunk.readings
            committed += chunk.readings
        if self.unwritable is not None:
            log.warning("gateway: the outbox takes writes again; what was held is committed "
                        "(%d readings lost meanwhile)", self.lost_readings)
            self.unwritable = None
        return committed

    def _bound(self, now: float) -> None:
        lost = legal = 0
        while self.held_readings > self.hold_readings and self.held:
            chunk = self.held.popleft()
            n = chunk.readings
            self.held_readings -= n
            lost += n
            if chunk.legal:
                legal += sum(1 for p in chunk.polls for r in p if self.is_legal(r))
        if lost:
            first = self.lost_readings == 0
            self.lost_readings += lost
            self.lost_legal += legal
            if first or now - self._lost_logged_at >= 10.0:
                self._lost_logged_at = now
                log.error("gateway: the outbox cannot be written and %d readings are held in "
                          "memory: the oldest are lost (%d so far, %d of them legal)",
                          self.held_readings, self.lost_readings, self.lost_legal)

    def lose_held(self) -> int:
        """At a stop while the outbox refuses writes: what is held is lost (logged)."""
        n = self.held_readings
        if n:
            legal = sum(1 for c in self.held if c.legal for p in c.polls for r in p
                        if self.is_legal(r))
            self.lost_readings += n
            self.lost_legal += legal
            log.error("gateway: stopping with %d readings (%d legal) held in memory that the "
                      "outbox would not take: lost", n, legal)
        self.held.clear()
        self.held_readings = 0
        return n

    # the cap and the space -----------------------------------------------------------------
    def maintain(self, *, age: bool = True) -> None:
        """Apply the cap and (with ``age``: the age cap and) give free space back; a refused
        write here is tried next time."""
        try:
            self._cap(age=age)
            if not age:
                return
            free = self.outbox.free_bytes()
            if free >= self.shrink_min_bytes and free > self.outbox.used_bytes():
                released = self.outbox.shrink()
                log.info("gateway: the outbox gave %.1f MB back to the file system",
                         released / 1e6)
        except OutboxError as exc:  # a refused write or read: next time (said once)
            if not self._upkeep_failing:
                log.warning("gateway: outbox upkeep postponed: %s", exc)
            self._upkeep_failing = True
        else:
            self._upkeep_failing = False

    def _cap(self, *, age: bool) -> None:
        rows = readings = 0
        low = True  # under half the cap (of bytes and of age): the outbox_full alarm clears
        if self.max_age_s is not None and not age:
            low = False  # not looked at now
        elif self.max_age_s is not None:
            now = time.time_ns()
            cutoff = now - int(self.max_age_s * 1e9)
            oldest = self.outbox.oldest_created_ns(legal=False)
            if oldest is not None and oldest < cutoff:
                n, r = self.outbox.drop_oldest(older_than_ns=cutoff)
                rows, readings = rows + n, readings + r
            oldest = self.outbox.oldest_created_ns(legal=False)
            low = oldest is None or oldest > now - int(self.max_age_s * 0.5e9)
        over = False
        if self.max_bytes is not None:
            target = int(self.max_bytes * 0.9)  # room for a while: not at every check
            used = self.outbox.used_bytes()
            legal_only = False
            for _ in range(8):  # pages are not freed row by row: estimate, drop, look again
                if used <= (target if rows else self.max_bytes):
                    break
                per_row = used / max(1, self.outbox.count())
                n, r = self.outbox.drop_oldest(rows=max(1, int((used - target) / per_row) + 1))
                if not n:
                    legal_only = True
                    break
                rows, readings = rows + n, readings + r
                used = self.outbox.used_bytes()
            over = legal_only and used > self.max_bytes  # else: dropped in the next pass
            low = low and self.outbox.used_bytes() < self.max_bytes // 2
        if rows:
            self.dropped_rows += rows
            self.dropped_readings += readings
            mono = time.monotonic()
            if not self._full_since_ns or mono - self._drop_logged_at >= 60.0:
                self._drop_logged_at = mono  # at the start of an episode, then once a minute
                log.error("gateway: outbox at its cap: dropping its oldest rows without legal "
                          "readings (%d rows, %d readings dropped so far)", self.dropped_rows,
                          self.dropped_readings)
            if not self._full_since_ns:
                self._full_since_ns = time.time_ns()
        if over and not self.over_cap_legal:
            log.error("gateway: outbox over its cap of %.1f MB with rows of legal readings "
                      "only: they are kept", (self.max_bytes or 0) / 1e6)
            if not self._full_since_ns:
                self._full_since_ns = time.time_ns()
        self.over_cap_legal = over
        if self._full_since_ns and low and not over and not rows:
            self._full_since_ns = 0  # the backlog is under half the cap: the outage is over

    def is_legal(self, reading: Reading) -> bool:
        """A reading of a revenue or verified instrument: under a certificate or a verification
        record, or of a device whose channels name an instrument of the registry."""
        return (reading.cert is not None or reading.verification is not None
                or reading.device in self.legal_devices)

    # alarms --------------------------------------------------------------------------------
    def alarms(self) -> list[Alarm]:
        """The gateway-wide outbox alarms that hold now (raised on each of its devices)."""
        out: list[Alarm] = []
        if self.unwritable is not None:
            # the reason changes with the state only (not with every count: each change is
            # an event and a retained message); the counts are in the log every 10 s
            lost = ("; the oldest polls held in memory are being lost" if self.lost_readings
                    else "; polls held in memory")
            out.append(Alarm(AlarmKind.OUTBOX_UNWRITABLE, self.unwritable_since_ns,
                             f"{self.unwritable[:160]}{lost}", Severity.CRITICAL))
        if self._full_since_ns:
            why = ("over its cap with legal readings only: kept" if self.over_cap_legal else
                   "at its cap: the oldest readings without legal status are dropped")
            out.append(Alarm(AlarmKind.OUTBOX_FULL, self._full_since_ns, why,
                             Severity.WARNING))
        return out

