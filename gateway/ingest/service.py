"""The ingest: MQTT → storage, acknowledging each message only once it is safe.

Subscribes (MQTT v5, QoS 1, manual acknowledgement) to ``daq/#`` or a shared subscription,
batches data messages by size and time, and writes them to the configured storage. A
message is acknowledged to the broker only after its batch was written — or, while the
storage is down, after it was committed to the local spool (SQLite), from which a replayer
writes it once the storage answers again. So a storage outage costs disk, never readings,
and the broker's per-client queue limit (``max_queued_messages``) is never what decides.

Threads: paho's network thread receives and hands messages over; one writer thread owns
the storage connection and the spool. Storage backends are synchronous.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from daq.alarms import AlarmPayloadError, decode_alarms
from daq.config import LoadedConfig
from daq.model import Reading
from daq.payload import PayloadError, decode_data
from gateway.ingest.deadletters import DeadLetters
from gateway.mqtt import LinkLog, connect_async, make_client, unique_client_id
from gateway.outbox import Outbox
from gateway.storage.base import Storage, StorageError

log = logging.getLogger(__name__)


def stored_topic(topic: str) -> bool:
    """Data and alarm messages are stored; meta and status are retained state only."""
    return topic.endswith(("/data", "/alarms"))


def readings_of(topic: str, payload: bytes, *, now_ns: int | None = None) -> list[Reading]:
    """The readings a stored message becomes. An alarms message becomes its events, as
    readings of quantity ``alarm`` (measurement ``alarm`` in InfluxDB): channel = the alarm's
    key (``kind`` or ``kind:channel``), value 1 when raised and 0 when cleared, reason = the
    alarm's reason, at the event's time.

    Raises PayloadError for a malformed message, and for one whose enterprise, gateway or
    device differ from its topic's (``daq/{enterprise}/{gateway}/{device}/data``): a
    gateway allowed to publish only under its own prefix could otherwise store readings
    under another's name."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "daq" or parts[4] not in ("data", "alarms"):
        raise PayloadError(f"not a daq data or alarms topic: {topic[:120]!r}")
    if parts[4] == "data":
        readings = decode_data(payload, now_ns=now_ns)
        first = readings[0]
        said = (first.enterprise, first.gateway, first.device)
    else:
        try:
            state = decode_alarms(payload, now_ns=now_ns)
        except AlarmPayloadError as exc:
            raise PayloadError(str(exc)) from exc
        said = (state.enterprise, state.gateway, state.device)
        readings = [Reading(e.ts_ns, state.enterprise, state.gateway, state.device,
                            e.alarm.key, "alarm", "", 1 if e.action == "raised" else 0,
                            reason=e.alarm.reason)
                    for e in state.events]
    if said != tuple(parts[1:4]):
        raise PayloadError(f"payload names {'/'.join(said)} but was published on {topic!r}")
    return readings


@dataclass(slots=True)
class _Message:
    mid: int
    qos: int
    topic: str
    payload: bytes


@dataclass(slots=True)
class _Parsed:
    """A valid stored message and the readings it becomes."""

    topic: str
    payload: bytes
    readings: list[Reading]
    alarms: bool  # an alarms message: its readings are alarm events


@dataclass
class IngestStats:
    received: int = 0
    written_readings: int = 0  # readings of data messages
    written_alarm_events: int = 0  # raised/cleared events of alarms messages
    written_messages: int = 0
    spooled_messages: int = 0
    rejected_messages: int = 0
    write_errors: int = 0


class Ingest:
    def __init__(
        self,
        loaded: LoadedConfig,
        storage: Storage,
        *,
        client_id: str | None = None,
        on_written: Callable[[list[Reading]], None] | None = None,
    ) -> None:
        self.loaded = loaded
        self.cfg = loaded.config.ingest
        self.storage = storage
        self.on_written = on_written
        fixed = client_id or self.cfg.client_id
        self.client_id = fixed or unique_client_id(loaded.config.mqtt.client_id_prefix,
                                                   "ingest")
        # a fixed client id means a persistent session: the broker keeps what we have not
        # acknowledged across our restarts
        self.persistent = fixed is not None
        self.client, self._props = make_client(
            loaded,
            self.client_id,
            session_expiry_s=7 * 24 * 3600 if self.persistent else 0,
            receive_maximum=min(65_535, max(100, self.cfg.batch_size * 2)),
            manual_ack=True,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.link = LinkLog("ingest", loaded)
        self.link.watch(self.client)
        self._lock = threading.Condition()
        self._inbox: list[_Message] = []
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = IngestStats()
        self._spool: Outbox | None = None
        self._dead: DeadLetters | None = None
        self.failure: BaseException | None = None  # why the writer stopped, if it did
        self.failed = threading.Event()

    # paho thread ---------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: object,
                    _p: object = None) -> None:
        if getattr(rc, "is_failure", False):
            self.link.down(f"refused: {rc}")
            return
        self.link.up()
        client.subscribe(self.cfg.subscription, qos=1)

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: object,
                       _p: object = None) -> None:
        if not self._stop.is_set():
            self.link.down(f"disconnected: {rc}")

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, codes: list[Any],
                      _p: object = None) -> None:
        # subscribed once the broker's SUBACK grants it, not when SUBSCRIBE was sent: a
        # message published in between would not reach us
        if any(getattr(c, "is_failure", False) for c in codes):
            log.error("ingest: the broker refused the subscription to %s: %s",
                      self.cfg.subscription, codes)
            return
        self._subscribed.set()
        log.info("ingest: subscribed to %s as %s", self.cfg.subscription, self.client_id)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._inbox.append(_Message(msg.mid, msg.qos, msg.topic, bytes(msg.payload)))
            self.stats.received += 1
            if len(self._inbox) >= self.cfg.batch_size:
                self._lock.notify()

    # lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._writer, name="ingest-writer", daemon=True)
        self._thread.start()
        connect_async(self.loaded, self.client, self._props, clean_start=not self.persistent)

    def wait_subscribed(self, timeout_s: float = 10.0) -> bool:
        return self._subscribed.wait(timeout_s)

    def stop(self, drain_s: float = 2.0) -> None:
        """Write what has arrived, then disconnect (unacknowledged messages stay at the broker
        for a persistent session)."""
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._inbox:
                    break
                self._lock.notify()
            time.sleep(0.01)
        self._stop.set()
        with self._lock:
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout=drain_s + 10)
        self.client.disconnect()
        self.client.loop_stop()

    # writer thread -------------------------------------------------------------------------
    def _writer(self) -> None:
        """The writer thread, supervised: a failure it cannot handle (the spool or the dead
        letters cannot be written) is logged with its traceback and kept in
        :attr:`failure`, and :attr:`failed` is set so the process can exit non-zero and be
        restarted; what was not acknowledged is redelivered by the broker."""
        try:
            self._spool = Outbox(self.loaded.resolve(self.cfg.spool))
            self._dead = DeadLetters(self.loaded.resolve(self.cfg.dead_letter))
            self._write_loop()
        except BaseException as exc:  # supervised boundary: record, log, let the owner exit
            self.failure = exc
            log.critical("ingest: the writer stopped: %s; nothing more is acknowledged",
                         exc, exc_info=True)
        finally:
            if self.failure is not None:
                self.failed.set()
            for closable in (self._spool, self._dead, self.storage):
                if closable is not None:
                    with contextlib.suppress(sqlite3.Error, StorageError, OSError):
                        closable.close()

    def _write_loop(self) -> None:
        assert self._spool is not None
        interval = self.cfg.batch_interval_ms / 1000
        backoff = 0.5
        outage_until = 0.0
        while True:
            with self._lock:
                if not self._inbox and not self._stop.is_set():
                    self._lock.wait(interval)
                batch, self._inbox = self._inbox, []
            if batch and not self._handle(batch, write=time.monotonic() >= outage_until):
                outage_until = time.monotonic() + backoff
                backoff = min(backoff * 2, 30.0)
            if self._spool.count() and time.monotonic() >= outage_until:
                if self._replay():
                    backoff = 0.5
                else:
                    outage_until = time.monotonic() + backoff
                    backoff = min(backoff * 2, 30.0)
            if self._stop.is_set():
                with self._lock:
                    if not self._inbox:
                        return

    def _parse(self, messages: list[_Message]) -> list[_Parsed]:
        """The stored messages of a batch as readings; each invalid one dead-lettered alone,
        with its reason."""
        assert self._dead is not None
        now = time.time_ns()
        parsed: list[_Parsed] = []
        for m in messages:
            if not stored_topic(m.topic):
                continue  # meta and status: retained, nothing to store
            try:
                got = readings_of(m.topic, m.payload, now_ns=now)
            except PayloadError as exc:
                self._dead.put_many([(m.topic, m.payload)], f"invalid: {exc}")
                self.stats.rejected_messages += 1
                log.warning("ingest: invalid message on %s (%s); kept in %s",
                            m.topic[:120], exc, self._dead.path)
                continue
            parsed.append(_Parsed(m.topic, m.payload, got, m.topic.endswith("/alarms")))
        return parsed

    def _handle(self, batch: list[_Message], *, write: bool) -> bool:
        """Write (or spool) one batch and acknowledge it; False if the storage is down."""
        parsed = self._parse(batch)
        ok = True
        if parsed and write:
            rest = self._store(parsed)
            if rest:
                self._spool_parsed(rest)
                ok = False
        elif parsed:
            self._spool_parsed(parsed)
        for m in batch:  # acknowledged in arrival order, once written, spooled or dead-lettered
            if m.qos > 0:
                self.client.ack(m.mid, m.qos)
        return ok

    def _store(self, parsed: list[_Parsed]) -> list[_Parsed]:
        """Write messages; return those not written because the storage is down (to spool).

        A batch the storage refuses for good is halved until the refused messages stand
        alone: they are dead-lettered with the storage's reason, the rest written. An
        unexpected exception from a backend is handled the same way (logged with its
        traceback), so one poison message can neither stop the writer nor take good
        messages with it."""
        assert self._dead is not None
        readings = [r for p in parsed for r in p.readings]
        try:
            self.storage.write(readings)
        except StorageError as exc:
            self.stats.write_errors += 1
            if exc.retryable:
                log.warning("ingest: storage write failed (%s); spooling %d messages to disk",
                            exc, len(parsed))
                return parsed
            reason = f"refused by storage: {exc}"
        except Exception as exc:  # a backend's bug on some input: isolate it, never die of it
            self.stats.write_errors += 1
            log.error("ingest: storage raised %s on %d messages", type(exc).__name__,
                      len(parsed), exc_info=len(parsed) == 1)
            reason = f"storage failed: {type(exc).__name__}: {exc}"
        else:
            self._count_written(parsed, readings)
            return []
        if len(parsed) > 1:
            half = len(parsed) // 2
            rest = self._store(parsed[:half])
            if rest:  # the storage went down meanwhile: spool the second half unwritten
                return rest + parsed[half:]
            return self._store(parsed[half:])
        (p,) = parsed
        log.error("ingest: message on %s kept in %s: %s", p.topic[:120], self._dead.path, reason)
        self._dead.put_many([(p.topic, p.payload)], reason)
        self.stats.rejected_messages += 1
        return []

    def _count_written(self, parsed: list[_Parsed], readings: list[Reading]) -> None:
        events = sum(len(p.readings) for p in parsed if p.alarms)
        self.stats.written_readings += len(readings) - events
        self.stats.written_alarm_events += events
        self.stats.written_messages += len(parsed)
        if self.on_written is not None:
            self.on_written(readings)

    def _spool_parsed(self, parsed: list[_Parsed]) -> None:
        assert self._spool is not None
        self._spool.put_many([(p.topic, p.payload) for p in parsed])
        self.stats.spooled_messages += len(parsed)

    def _replay(self) -> bool:
        """Write spooled messages to storage; False if the storage is still down."""
        assert self._spool is not None
        while True:
            rows = self._spool.pending(0, 500)
            if not rows:
                log.info("ingest: spool replayed; storage is back")
                return True
            parsed = self._parse([_Message(0, 0, topic, payload) for _, topic, payload, _ in rows])
            rest = self._store(parsed)
            if rest:
                log.debug("ingest: storage still unavailable")
                return False
            self._spool.ack(row[0] for row in rows)
