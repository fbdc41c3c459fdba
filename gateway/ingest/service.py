"""The ingest: MQTT → storage, acknowledging each message only once it is safe.

Subscribes (MQTT v5, QoS 1, manual acknowledgement) to ``daq/#`` or a shared subscription,
batches the gateways' signed batches (``daq.data/2``) by size and time, verifies each against
the gateway's pinned key, checks every field, and writes them to the configured storage. A
message is acknowledged to the broker only after its batch was written — or, while the
storage is down, after it was committed to the local spool (SQLite), from which a replayer
writes it once the storage answers again. Once written, the ingest confirms the stored
sequence numbers to the gateway (``daq.ack/1`` on ``daq-ack/{enterprise}/{gateway}``), and
only then does the gateway delete them: a broker that loses messages loses nothing.

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

import orjson
import paho.mqtt.client as mqtt

from daq.config import LoadedConfig
from daq.model import Reading
from daq.payload import (
    Ack,
    Batch,
    PayloadError,
    ack_topic,
    decode_batch_on,
    encode_ack,
    topic_gateway,
)
from daq.signing import SignatureError, unsigned_body, verify_signed
from gateway.ingest.deadletters import DeadLetters
from gateway.ingest.evidence import EvidenceStore
from gateway.ingest.keyring import KeyRing
from gateway.mqtt import LinkLog, connect_async, make_client, unique_client_id
from gateway.outbox import Outbox
from gateway.sequence import RangeSet
from gateway.storage.base import Storage, StorageError

log = logging.getLogger(__name__)

_BYTES_PER_READING = 150  # about, in a batch: the writer wakes at ~batch_size readings


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
    batch: Batch
    readings: list[Reading]  # the batch's readings, then its alarm events as readings
    events: int  # how many of the readings are alarm events

    @property
    def stream(self) -> tuple[str, str, str]:
        return self.batch.enterprise, self.batch.gateway, self.batch.epoch


@dataclass
class IngestStats:
    received: int = 0
    written_readings: int = 0  # readings of data messages
    written_alarm_events: int = 0  # raised/cleared events of alarms messages
    written_messages: int = 0
    spooled_messages: int = 0
    rejected_messages: int = 0  # dead-lettered, for any reason
    unsigned_messages: int = 0  # of those: no valid signature by a pinned key
    duplicates: int = 0  # messages stored again (the same gateway, epoch and sequence)
    gaps: int = 0  # sequence ranges missing for longer than gap_report_s
    write_errors: int = 0
    acks_sent: int = 0
    resends_not_spooled: int = 0  # resends while storage is down, held or stored already


class _Stream:
    """What the ingest stored of one gateway epoch's sequence, and what it has confirmed."""

    __slots__ = ("gaps_seen", "spooled", "stored", "unacked")

    def __init__(self) -> None:
        self.stored = RangeSet()
        self.spooled = RangeSet()  # put in the spool by this process (replayed or not)
        self.unacked = RangeSet()
        self.gaps_seen: dict[tuple[int, int], float] = {}  # gap -> first seen (monotonic)


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
            login=self.cfg.mqtt_login,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.keys: KeyRing | None = None
        if self.cfg.require_signatures:
            self.keys = KeyRing(loaded.keys_registry())
        self.shared = self.cfg.subscription.startswith("$share/")
        self.gap_report_s = 60.0
        self._streams: dict[tuple[str, str, str], _Stream] = {}
        self._evidence: EvidenceStore | None = None
        self.link = LinkLog("ingest", loaded)
        self.link.watch(self.client)
        self._lock = threading.Condition()
        self._inbox: list[_Message] = []
        self._inbox_bytes = 0
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = IngestStats()
        self._spool: Outbox | None = None
        self._dead: DeadLetters | None = None
        self.failure: BaseException | None = None  # why the writer stopped, if it did
        self.storage_down = False  # the last write found the storage unreachable
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
            self._inbox_bytes += len(msg.payload)
            self.stats.received += 1
            if self._inbox_bytes >= self.cfg.batch_size * _BYTES_PER_READING:
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
            if self.cfg.evidence != "none":
                self._evidence = EvidenceStore(self.loaded.resolve(self.cfg.evidence_store))
            self._write_loop()
        except BaseException as exc:  # supervised boundary: record, log, let the owner exit
            self.failure = exc
            log.critical("ingest: the writer stopped: %s; nothing more is acknowledged",
                         exc, exc_info=True)
        finally:
            if self.failure is not None:
                self.failed.set()
            for closable in (self._spool, self._dead, self._evidence, self.storage):
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
                self._inbox_bytes = 0
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
        with its reason. A message signed by its gateway's pinned key but invalid is
        confirmed to the gateway (it is kept here, and sending it again would not help); one
        without a valid signature is never confirmed (it could name a real message's
        sequence number)."""
        now = time.time_ns()
        parsed: list[_Parsed] = []
        for m in messages:
            where = topic_gateway(m.topic, "data")
            if where is None:
                continue  # meta, status, alarm state, acknowledgements: nothing to store
            try:
                body = self._authentic(m.payload, where)
            except SignatureError as exc:
                self.stats.unsigned_messages += 1
                self._reject(m.topic, m.payload, f"not authentic: {exc}")
                continue
            try:
                batch = decode_batch_on(m.topic, body, now_ns=now)
            except PayloadError as exc:
                self._reject(m.topic, m.payload, f"invalid: {exc}")
                if self.keys is not None:
                    self._confirm_invalid(where, body)
                continue
            events = batch.event_readings()
            parsed.append(_Parsed(m.topic, m.payload, batch, batch.readings + events,
                                  len(events)))
        return parsed

    def _authentic(self, payload: bytes, where: tuple[str, str]) -> bytes:
        """The body of a message signed by a pinned, unrevoked key of the gateway its topic
        names (SignatureError otherwise); with signatures not required, the body unchecked."""
        if self.keys is None:
            return unsigned_body(payload)
        keys = self.keys
        body, _ = verify_signed(payload, lambda kid: keys.lookup(kid, *where))
        return body

    def _reject(self, topic: str, payload: bytes, reason: str) -> None:
        assert self._dead is not None
        self._dead.put_many([(topic, payload)], reason)
        self.stats.rejected_messages += 1
        log.warning("ingest: message on %s kept in %s: %s", topic[:120], self._dead.path,
                    reason)

    def _confirm_invalid(self, where: tuple[str, str], body: bytes) -> None:
        """Confirm an authentic message that cannot be stored, its sequence number read
        leniently (the body did not decode as a whole)."""
        try:
            doc = orjson.loads(body)
            epoch, seq = doc["epoch"], doc["seq"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if type(epoch) is str and type(seq) is int and 1 <= seq < 1 << 63:
            self._streams.setdefault((*where, epoch), _Stream()).unacked.add(seq)

    def _handle(self, batch: list[_Message], *, write: bool) -> bool:
        """Write (or spool) one batch and acknowledge it; False if the storage is down."""
        parsed = self._parse(batch)
        ok = True
        if parsed and write:
            for part in self._parts(parsed):
                rest = self._store(part) if ok else part
                if rest:
                    self._spool_parsed(rest)
                    ok = False
        elif parsed:
            self._spool_parsed(parsed)
        for m in batch:  # acknowledged in arrival order, once written, spooled or dead-lettered
            if m.qos > 0:
                self.client.ack(m.mid, m.qos)
        self._send_acks()
        return ok

    def _parts(self, parsed: list[_Parsed]) -> list[list[_Parsed]]:
        """Writes of at most ``batch_size`` readings (a message is never split)."""
        parts: list[list[_Parsed]] = [[]]
        size = 0
        for p in parsed:
            if parts[-1] and size + len(p.readings) > self.cfg.batch_size:
                parts.append([])
                size = 0
            parts[-1].append(p)
            size += len(p.readings)
        return parts

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
                if not self.storage_down:  # one line when the outage starts, one when it ends
                    self.storage_down = True
                    log.warning("ingest: storage unreachable (%s); spooling to disk until it "
                                "answers again", exc)
                else:
                    log.debug("ingest: storage still unreachable: %s", exc)
                return parsed
            reason = f"refused by storage: {exc}"
        except Exception as exc:  # a backend's bug on some input: isolate it, never die of it
            self.stats.write_errors += 1
            log.error("ingest: storage raised %s on %d messages", type(exc).__name__,
                      len(parsed), exc_info=len(parsed) == 1)
            reason = f"storage failed: {type(exc).__name__}: {exc}"
        else:
            if self.storage_down:
                self.storage_down = False
                log.warning("ingest: storage reachable again; replaying the spool")
            self._count_written(parsed, readings)
            return []
        if len(parsed) > 1:
            half = len(parsed) // 2
            rest = self._store(parsed[:half])
            if rest:  # the storage went down meanwhile: spool the second half unwritten
                return rest + parsed[half:]
            return self._store(parsed[half:])
        (p,) = parsed
        self._reject(p.topic, p.payload, reason)
        # the gateway's own message, kept here: sending it again would not help
        self._streams.setdefault(p.stream, _Stream()).unacked.add(p.batch.seq)
        return []

    def _count_written(self, parsed: list[_Parsed], readings: list[Reading]) -> None:
        events = sum(p.events for p in parsed)
        self.stats.written_readings += len(readings) - events
        self.stats.written_alarm_events += events
        self.stats.written_messages += len(parsed)
        evidence = []
        for p in parsed:
            stream = self._streams.setdefault(p.stream, _Stream())
            if not stream.stored.add(p.batch.seq):
                self.stats.duplicates += 1
                log.info("ingest: %s/%s epoch %s seq %d stored again (a resend)", *p.stream,
                         p.batch.seq)
            stream.unacked.add(p.batch.seq)
            if self._evidence is not None and (self.cfg.evidence == "all" or any(
                    r.cert is not None or r.verification is not None for r in p.readings)):
                evidence.append((*p.stream, p.batch.seq, p.payload))
        if self._evidence is not None:
            self._evidence.put_many(evidence)
        if self.on_written is not None:
            self.on_written(readings)

    def _send_acks(self) -> None:
        """Confirm to each gateway what was stored since the last confirmation, and report
        sequence ranges that stay missing (not with a shared subscription: there the other
        members store what this one does not see)."""
        now = time.monotonic()
        for (ent, gw, epoch), stream in self._streams.items():
            if stream.unacked:
                ack = Ack(ent, gw, epoch, tuple(stream.unacked.ranges()))
                self.client.publish(ack_topic(ent, gw), encode_ack(ack), qos=1)
                self.stats.acks_sent += 1
                stream.unacked = RangeSet()
            if self.shared:
                continue
            gaps = set(stream.stored.gaps())
            for gap in gaps - stream.gaps_seen.keys():
                stream.gaps_seen[gap] = now
            for gap in list(stream.gaps_seen):
                if gap not in gaps:
                    del stream.gaps_seen[gap]
                elif now - stream.gaps_seen[gap] >= self.gap_report_s:
                    self.stats.gaps += 1
                    log.warning("ingest: %s/%s epoch %s: seq %d–%d missing for %.0f s "
                                "(the gateway sends what is not confirmed again)", ent, gw,
                                epoch, gap[0], gap[1], now - stream.gaps_seen[gap])
                    stream.gaps_seen[gap] = float("inf")  # reported once

    def _spool_parsed(self, parsed: list[_Parsed]) -> None:
        """Keep messages for the replay, each once. While storage is down the gateway sends
        what it has not confirmed again (every ``ack_timeout_s``, backing off): a resend of a
        message this process has spooled already is not kept again, and a resend of one
        stored already is confirmed again at once (its confirmation was lost). Without this
        the spool filled with copies, all written again on replay (the chaos suite:
        tests/integration/chaos/test_influxdb.py)."""
        assert self._spool is not None
        fresh: list[_Parsed] = []
        for p in parsed:
            stream = self._streams.setdefault(p.stream, _Stream())
            if p.batch.seq in stream.stored:
                stream.unacked.add(p.batch.seq)
                self.stats.resends_not_spooled += 1
            elif not stream.spooled.add(p.batch.seq):
                self.stats.resends_not_spooled += 1
            else:
                fresh.append(p)
        self._spool.put_many([(p.topic, p.payload) for p in fresh])
        self.stats.spooled_messages += len(fresh)

    def _replay(self) -> bool:
        """Write spooled messages to storage; False if the storage is still down."""
        assert self._spool is not None
        while True:
            rows = self._spool.pending(0, 500)
            if not rows:
                log.info("ingest: spool replayed")
                return True
            parsed = self._parse([_Message(0, 0, topic, payload) for _, topic, payload, _ in rows])
            rest = self._store(parsed)
            if rest:
                log.debug("ingest: storage still unavailable")
                return False
            self._spool.ack(row[0] for row in rows)
            self._send_acks()
