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

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from daq.alarms import AlarmPayloadError, decode_alarms
from daq.config import LoadedConfig
from daq.model import Reading
from daq.payload import PayloadError, decode_data
from gateway.mqtt import connect_async, make_client, unique_client_id
from gateway.outbox import Outbox
from gateway.storage.base import Storage, StorageError

log = logging.getLogger(__name__)


def stored_topic(topic: str) -> bool:
    """Data and alarm messages are stored; meta and status are retained state only."""
    return topic.endswith(("/data", "/alarms"))


def readings_of(topic: str, payload: bytes) -> list[Reading]:
    """The readings a stored message becomes. An alarms message becomes its events, as
    readings of quantity ``alarm`` (measurement ``alarm`` in InfluxDB): channel = the alarm's
    key (``kind`` or ``kind:channel``), value 1 when raised and 0 when cleared, reason = the
    alarm's reason, at the event's time. Raises PayloadError for a malformed message."""
    if not topic.endswith("/alarms"):
        return decode_data(payload)
    try:
        state = decode_alarms(payload)
    except AlarmPayloadError as exc:
        raise PayloadError(str(exc)) from exc
    return [Reading(e.ts_ns, state.enterprise, state.gateway, state.device, e.alarm.key,
                    "alarm", "", 1 if e.action == "raised" else 0, reason=e.alarm.reason)
            for e in state.events]


@dataclass(slots=True)
class _Message:
    mid: int
    qos: int
    topic: str
    payload: bytes


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
        self._lock = threading.Condition()
        self._inbox: list[_Message] = []
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = IngestStats()
        self._spool: Outbox | None = None
        self._dead: Outbox | None = None

    # paho thread ---------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: object,
                    _p: object = None) -> None:
        if getattr(rc, "is_failure", False):
            log.warning("ingest: MQTT connection refused: %s", rc)
            return
        client.subscribe(self.cfg.subscription, qos=1)
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
        self._spool = Outbox(self.loaded.resolve(self.cfg.spool))
        self._dead = Outbox(self.loaded.resolve(self.cfg.dead_letter))
        interval = self.cfg.batch_interval_ms / 1000
        backoff = 0.5
        outage_until = 0.0
        try:
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
        finally:
            self._spool.close()
            self._dead.close()
            self.storage.close()

    def _handle(self, batch: list[_Message], *, write: bool) -> bool:
        """Write (or spool) one batch and acknowledge it; False if the storage is down."""
        ok = True
        readings: list[Reading] = []
        events = 0  # of the readings, alarm events (not counted as readings)
        data: list[_Message] = []
        for m in batch:
            if not stored_topic(m.topic):
                continue  # meta and status: retained, nothing to store
            try:
                got = readings_of(m.topic, m.payload)
                readings.extend(got)
                if m.topic.endswith("/alarms"):
                    events += len(got)
                data.append(m)
            except PayloadError as exc:
                assert self._dead is not None
                self._dead.put_many([(m.topic, m.payload)])
                self.stats.rejected_messages += 1
                log.warning("ingest: malformed message on %s (%s); kept in %s", m.topic, exc,
                            self._dead.path)
        if readings and write:
            try:
                self.storage.write(readings)
                self.stats.written_readings += len(readings) - events
                self.stats.written_alarm_events += events
                self.stats.written_messages += len(data)
                if self.on_written is not None:
                    self.on_written(readings)
            except StorageError as exc:
                self.stats.write_errors += 1
                self._keep([(m.topic, m.payload) for m in data], exc)
                ok = not exc.retryable
        elif readings:
            assert self._spool is not None
            self._spool.put_many([(m.topic, m.payload) for m in data])
            self.stats.spooled_messages += len(data)
        for m in batch:  # acknowledged in arrival order, once written or spooled
            if m.qos > 0:
                self.client.ack(m.mid, m.qos)
        return ok

    def _keep(self, messages: list[tuple[str, bytes]], exc: StorageError) -> None:
        """A batch the storage did not take: spool it (to retry) or dead-letter it."""
        assert self._spool is not None
        assert self._dead is not None
        if exc.retryable:
            log.warning("ingest: storage write failed (%s); spooling %d messages to disk",
                        exc, len(messages))
            self._spool.put_many(messages)
            self.stats.spooled_messages += len(messages)
        else:
            log.error("ingest: storage refused %d messages for good (%s); kept in %s",
                      len(messages), exc, self._dead.path)
            self._dead.put_many(messages)
            self.stats.rejected_messages += len(messages)

    def _replay(self) -> bool:
        """Write spooled messages to storage; False if the storage is still down."""
        assert self._spool is not None
        while True:
            rows = self._spool.pending(0, 500)
            if not rows:
                log.info("ingest: spool replayed; storage is back")
                return True
            readings: list[Reading] = []
            events = 0
            for _, topic, payload, _ in rows:
                got = readings_of(topic, payload)
                readings.extend(got)
                events += len(got) if topic.endswith("/alarms") else 0
            try:
                self.storage.write(readings)
            except StorageError as exc:
                if exc.retryable:
                    log.debug("ingest: storage still unavailable: %s", exc)
                    return False
                self._keep([(topic, payload) for _, topic, payload, _ in rows], exc)
            else:
                self.stats.written_readings += len(readings) - events
                self.stats.written_alarm_events += events
                self.stats.written_messages += len(rows)
            self._spool.ack(row[0] for row in rows)
